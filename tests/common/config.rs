//! seawall.toml text for the tests, built from typed pieces. Every listener binds 127.0.0.1:0 and
//! `[admin]` too, so tests run side by side; anything the pieces do not model goes in as raw TOML
//! lines (`line`, `raw`), which keeps the builder small while each test still says exactly which
//! keys it sets. Lines given to `admin`, `runtime` and `line` are trimmed and empty ones dropped,
//! so a test may pass `""` or an indented block.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

/// A whole seawall.toml: `[admin]`, `[runtime]`, `[[certificates]]`, `[[listeners]]` and
/// `[[target_groups]]`, written in that order, then any raw text.
#[derive(Clone, Default)]
pub struct ConfigBuilder {
    /// `Some` writes `[admin]` with `bind = "127.0.0.1:0"` and these lines.
    admin: Option<Vec<String>>,
    /// `Some` writes `[runtime]` with these lines (possibly none).
    runtime: Option<Vec<String>>,
    certificates: Vec<(String, Vec<String>)>,
    listeners: Vec<Listener>,
    target_groups: Vec<TargetGroup>,
    /// Appended last, as given.
    raw: Vec<String>,
}

impl ConfigBuilder {
    pub fn new() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// An admin server on port 0; `extra` lines (token, ...) go in `[admin]`. Empty lines are
    /// left out.
    pub fn admin(mut self, extra: &str) -> Self {
        self.admin = Some(lines(extra));
        self
    }

    /// Lines for `[runtime]`; called again, adds to them.
    pub fn runtime(mut self, extra: &str) -> Self {
        self.runtime
            .get_or_insert_with(Vec::new)
            .extend(lines(extra));
        self
    }

    /// A `[[certificates]]` entry named `name`, self-signed for `names`.
    pub fn self_signed(mut self, name: &str, names: &[&str]) -> Self {
        let names = names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>();
        self.certificates.push((
            name.to_string(),
            vec![format!("self_signed = [{}]", names.join(", "))],
        ));
        self
    }

    pub fn listener(mut self, l: Listener) -> Self {
        self.listeners.push(l);
        self
    }

    pub fn target_group(mut self, g: TargetGroup) -> Self {
        self.target_groups.push(g);
        self
    }

    pub fn target_groups(mut self, gs: impl IntoIterator<Item = TargetGroup>) -> Self {
        self.target_groups.extend(gs);
        self
    }

    /// Raw TOML appended after everything else.
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push(text.to_string());
        self
    }

    pub fn build(&self) -> String {
        let mut out = String::new();
        if let Some(admin) = &self.admin {
            out += "[admin]\nbind = \"127.0.0.1:0\"\n";
            push_lines(&mut out, admin, "");
            out += "\n";
        }
        if let Some(runtime) = &self.runtime {
            out += "[runtime]\n";
            push_lines(&mut out, runtime, "");
            out += "\n";
        }
        for (name, body) in &self.certificates {
            let _ = writeln!(out, "[[certificates]]\nname = \"{name}\"");
            push_lines(&mut out, body, "");
            out += "\n";
        }
        for l in &self.listeners {
            out += &l.build();
        }
        for g in &self.target_groups {
            out += &g.build();
        }
        for r in &self.raw {
            out += r;
            out += "\n";
        }
        out
    }
}

/// One `[[listeners]]` table on 127.0.0.1:0.
#[derive(Clone)]
pub struct Listener {
    name: String,
    protocol: &'static str,
    certificates: Vec<String>,
    default_action: String,
    lines: Vec<String>,
    rules: Vec<Rule>,
}

#[derive(Clone)]
struct Rule {
    priority: u32,
    condition: String,
    action: String,
}

impl Listener {
    /// A plain-HTTP listener. It needs a default action: [`Listener::forward`] or
    /// [`Listener::default_action`].
    pub fn http(name: &str) -> Listener {
        Listener {
            name: name.to_string(),
            protocol: "http",
            certificates: Vec::new(),
            default_action: String::new(),
            lines: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// An https listener serving `certificates` (none: set them with `line`).
    pub fn https(name: &str, certificates: &[&str]) -> Listener {
        Listener {
            protocol: "https",
            certificates: certificates.iter().map(|c| c.to_string()).collect(),
            ..Listener::http(name)
        }
    }

    /// Forwards what no rule takes to `group`.
    pub fn forward(self, group: &str) -> Self {
        self.default_action(&forward(group))
    }

    /// The default action, as an inline table (see [`forward`] and [`fixed`]).
    pub fn default_action(mut self, action: &str) -> Self {
        self.default_action = action.to_string();
        self
    }

    /// Raw lines for the listener's table (written before its default action).
    pub fn line(mut self, extra: &str) -> Self {
        self.lines.extend(lines(extra));
        self
    }

    /// A `[[listeners.rules]]` entry: `condition` is the `match` inline table (see [`path`]),
    /// `action` an action's inline table.
    pub fn rule(mut self, priority: u32, condition: &str, action: &str) -> Self {
        self.rules.push(Rule {
            priority,
            condition: condition.to_string(),
            action: action.to_string(),
        });
        self
    }

    fn build(&self) -> String {
        assert!(
            !self.default_action.is_empty(),
            "listener {} has no default action",
            self.name
        );
        let mut out = format!(
            "[[listeners]]\nname = \"{}\"\nbind = \"127.0.0.1:0\"\nprotocol = \"{}\"\n",
            self.name, self.protocol
        );
        if !self.certificates.is_empty() {
            let certs = self.certificates.iter().map(|c| format!("\"{c}\""));
            let _ = writeln!(
                out,
                "certificates = [{}]",
                certs.collect::<Vec<_>>().join(", ")
            );
        }
        push_lines(&mut out, &self.lines, "");
        let _ = writeln!(out, "default_action = {}\n", self.default_action);
        for r in &self.rules {
            let _ = writeln!(
                out,
                "  [[listeners.rules]]\n  priority = {}\n  match = {}\n  action = {}\n",
                r.priority, r.condition, r.action
            );
        }
        out
    }
}

/// One `[[target_groups]]` table.
#[derive(Clone)]
pub struct TargetGroup {
    name: String,
    targets: Vec<SocketAddr>,
    lines: Vec<String>,
    /// `Some` writes a `[target_groups.health_check]` table with these lines.
    health: Option<Vec<String>>,
}

impl TargetGroup {
    pub fn new(name: &str, targets: &[SocketAddr]) -> TargetGroup {
        TargetGroup {
            name: name.to_string(),
            targets: targets.to_vec(),
            lines: Vec::new(),
            health: None,
        }
    }

    /// Raw lines for the group's table (`protocol_version = "http2"`, ...).
    pub fn line(mut self, extra: &str) -> Self {
        self.lines.extend(lines(extra));
        self
    }

    /// Lines for a `[target_groups.health_check]` table of its own.
    pub fn health_check(mut self, extra: &str) -> Self {
        self.health = Some(lines(extra));
        self
    }

    fn build(&self) -> String {
        let targets = self.targets.iter().map(|a| format!("\"{a}\""));
        let mut out = format!(
            "[[target_groups]]\nname = \"{}\"\ntargets = [{}]\n",
            self.name,
            targets.collect::<Vec<_>>().join(", ")
        );
        push_lines(&mut out, &self.lines, "");
        if let Some(health) = &self.health {
            out += "  [target_groups.health_check]\n";
            push_lines(&mut out, health, "  ");
        }
        out + "\n"
    }
}

// For the configs written out whole, with their groups spliced in by `format!`.
impl fmt::Display for TargetGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.build())
    }
}

/// `{ forward = "group" }`
pub fn forward(group: &str) -> String {
    format!("{{ forward = \"{group}\" }}")
}

/// `{ fixed_response = { status = 200, content_type = "text/plain", body = "..." } }`
pub fn fixed(body: &str) -> String {
    format!(
        "{{ fixed_response = {{ status = 200, content_type = \"text/plain\", body = \"{body}\" }} }}"
    )
}

/// `{ path = ["..."] }`, a rule's condition.
pub fn path(pattern: &str) -> String {
    format!("{{ path = [\"{pattern}\"] }}")
}

/// The non-empty lines of `text`, trimmed at their ends (a section's indentation is the
/// builder's business).
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn push_lines(out: &mut String, lines: &[String], indent: &str) {
    for l in lines {
        let _ = writeln!(out, "{indent}{l}");
    }
}
