//! The configuration file: raw serde types, loading, and errors that name the file, the line and the
//! key path.
//!
//! Loading runs in three steps, each of which collects every error it finds rather than stopping at
//! the first: parse (TOML syntax and shape, unknown keys), [`validate`] (values and cross-references),
//! and [`compile`] (certificates read from disk, rules turned into matchers).

pub mod compile;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use validate::Config;

/// The configuration `seawall` runs when it is given none: HTTPS with a self-signed certificate, an
/// HTTP listener that redirects to it, and a fixed response that says how to go further.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line of the offending key or value, when the file has it.
    pub line: Option<usize>,
    /// Key path such as `listeners[0].rules[1].priority`; empty for file-level problems.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found in one load; never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The text of a configuration and what is needed to point at a place in it.
pub struct Source {
    /// Shown in errors.
    pub file: PathBuf,
    /// Relative certificate paths are resolved against this folder.
    pub base_dir: PathBuf,
    pub text: String,
    /// The embedded default rather than a file on disk (there is nothing to watch or re-read).
    pub embedded: bool,
    /// A span-keeping parse of the same text, used only to turn key paths into line numbers.
    doc: Option<toml_edit::Document<String>>,
}

impl Source {
    pub fn new(file: impl Into<PathBuf>, base_dir: impl Into<PathBuf>, text: String) -> Self {
        let doc = toml_edit::Document::parse(text.clone()).ok();
        Source {
            file: file.into(),
            base_dir: base_dir.into(),
            text,
            embedded: false,
            doc,
        }
    }

    /// Reads a file from disk; its folder becomes the base for relative paths.
    pub fn read(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                path: String::new(),
                reason: format!("cannot read the file: {e}"),
            }])
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok(Source::new(path, base, text))
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Self {
        Source {
            embedded: true,
            ..Source::new("<embedded default>", ".", EMBEDDED_DEFAULT.to_string())
        }
    }

    /// Resolves a path written in the file against the file's folder.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// An error at a key path; the line is looked up from the path.
    pub fn error(&self, path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        let path = path.into();
        ConfigError {
            file: self.file.clone(),
            line: self.line_of_path(&path),
            path,
            reason: reason.into(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest item of `path` that the document has (a missing key points at the
    /// table that should hold it).
    fn line_of_path(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut best = None;
        for seg in split_path(path) {
            let next = match seg {
                Seg::Key(k) => item.get(k),
                Seg::Index(i) => item.get(i),
            };
            match next {
                Some(n) => {
                    item = n;
                    if let Some(span) = item.span() {
                        best = Some(span.start);
                    }
                }
                None => break,
            }
        }
        best.map(|o| self.line_at(o))
    }

    /// Parses the text into the raw types; every shape error carries its line and key path.
    pub fn parse(&self) -> Result<RawConfig, ConfigErrors> {
        let de = toml::Deserializer::parse(&self.text).map_err(|e| self.toml_error(&e, ""))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            self.toml_error(e.inner(), &path)
        })
    }

    fn toml_error(&self, e: &toml::de::Error, path: &str) -> ConfigErrors {
        let line = e
            .span()
            .map(|s| self.line_at(s.start))
            .or_else(|| self.line_of_path(path));
        ConfigErrors(vec![ConfigError {
            file: self.file.clone(),
            line,
            path: path.to_string(),
            reason: e.message().trim().to_string(),
        }])
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` into its segments.
fn split_path(path: &str) -> impl Iterator<Item = Seg<'_>> {
    path.split('.').filter(|s| !s.is_empty()).flat_map(|part| {
        let mut segs = Vec::new();
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                segs.push(Seg::Index(i));
            }
            rest = &rest[end + 1..];
        }
        segs
    })
}

/// Parses and validates a configuration file into a [`Config`], reading from the process's
/// environment what the file refers to (see [`Environment::read`]).
pub fn load(source: &Source) -> Result<Config, ConfigErrors> {
    let raw = source.parse()?;
    let env = Environment::read(&raw);
    validate::validate(source, raw, &env)
}

/// What a configuration's values may depend on outside its text, read once per load, so that
/// [`validate`](validate::validate) is a function of its arguments and tests can give it any
/// environment they like.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The variables that `env:NAME` values name; one that is not set is not here.
    vars: HashMap<String, OsString>,
    /// `runtime.binary` when the file does not say.
    startup_exe: PathBuf,
}

/// The prefix of a value read from an environment variable: `token = "env:NAME"`.
pub(crate) const ENV_PREFIX: &str = "env:";

impl Environment {
    /// An environment with no variables set and `startup_exe` as the running binary.
    pub fn new(startup_exe: impl Into<PathBuf>) -> Self {
        Environment {
            vars: HashMap::new(),
            startup_exe: startup_exe.into(),
        }
    }

    /// Sets a variable (as `std::env::set_var` would, without touching the process).
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Reads the variables that `raw` refers to, and the path this process was started from.
    pub fn read(raw: &RawConfig) -> Self {
        let mut env = Environment::new(startup_exe());
        let token = raw.admin.as_ref().and_then(|a| a.token.as_deref());
        let secrets = [token, raw.runtime.cookie_key.as_deref()];
        // `env:` with no name is validation's to report; there is nothing to read.
        let names = secrets
            .into_iter()
            .flatten()
            .filter_map(|t| t.strip_prefix(ENV_PREFIX))
            .filter(|n| !n.is_empty());
        for name in names {
            if let Some(value) = std::env::var_os(name) {
                env.vars.insert(name.to_string(), value);
            }
        }
        env
    }

    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(name).map(OsString::as_os_str)
    }

    pub fn startup_exe(&self) -> &Path {
        &self.startup_exe
    }
}

/// The path this process was started from, read once: after a binary is replaced on disk,
/// `current_exe()` names the deleted file, while the path itself now holds the new binary.
fn startup_exe() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().unwrap_or_else(|_| PathBuf::from("seawall")))
        .clone()
}

/// A duration written as a string with a unit: `"250ms"`, `"5s"`, `"2m"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(DurationStr)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {s:?} ({e}); write a number with a unit, like \"250ms\", \"5s\" or \"2m\""
                ))
            })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub runtime: RawRuntime,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub target_groups: Vec<RawTargetGroup>,
    pub access_log: Option<RawAccessLog>,
}

/// `[access_log]`: present means on.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    /// `"-"` (stdout, the default) or a file.
    pub path: Option<String>,
    pub format: Option<String>,
    pub connections_path: Option<String>,
    pub buffer_lines: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: String,
    /// `"env:NAME"` or the token itself.
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub workers: Option<usize>,
    pub idle_timeout: Option<DurationStr>,
    pub header_timeout: Option<DurationStr>,
    pub handshake_timeout: Option<DurationStr>,
    pub drain_timeout: Option<DurationStr>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub http2_max_concurrent_streams: Option<u32>,
    pub http2_max_resets_per_second: Option<u32>,
    pub binary: Option<String>,
    /// `"env:NAME"` or the secret itself: the key stickiness cookies are sealed under.
    pub cookie_key: Option<String>,
    pub max_rules_per_listener: Option<usize>,
    /// `"text"` or `"json"`: how the application log is written (read at start only).
    pub log_format: Option<String>,
    /// ALB's HTTP desync mitigation mode: `"monitor"`, `"defensive"` or `"strictest"`.
    pub desync_mitigation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub name: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub self_signed: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub bind: String,
    pub protocol: String,
    #[serde(default)]
    pub certificates: Vec<String>,
    pub tls_policy: Option<String>,
    pub alpn: Option<Vec<String>>,
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The largest request body a forward takes, in bytes; above it, 413.
    pub max_body_bytes: Option<u64>,
    /// Overrides `runtime.desync_mitigation` for this listener.
    pub desync_mitigation: Option<String>,
    pub client_auth: Option<RawClientAuth>,
    pub default_action: RawAction,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// A listener's `client_auth` (ALB's mutual TLS): `mode` is `"verify"` (with `ca`, and `crl`
/// optionally) or `"passthrough"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub mode: String,
    pub ca: Option<String>,
    pub crl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub priority: i64,
    #[serde(rename = "match")]
    pub conditions: RawMatch,
    pub action: RawAction,
}

/// A rule's conditions (CONFIG.md "Matching rules"). The tables are ordered by key so that errors
/// and `seawall route` list them the same way every time.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub host: Option<Vec<String>>,
    pub path: Option<Vec<String>>,
    /// Header name → values; each name is one condition.
    pub header: Option<BTreeMap<String, Vec<String>>>,
    pub method: Option<Vec<String>>,
    /// Key → values; `""` is ALB's key-less entry. All pairs make one condition.
    pub query: Option<BTreeMap<String, Vec<String>>>,
    pub source_ip: Option<Vec<String>>,
}

/// Exactly one of the fields must be set; [`validate`] checks that.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub forward: Option<RawForward>,
    pub fixed_response: Option<RawFixedResponse>,
    pub redirect: Option<RawRedirect>,
}

/// `forward = "name"`, or ALB's weighted forward:
/// `forward = { groups = [{ name = "blue", weight = 90 }, ...], stickiness = "1h" }`.
#[derive(Debug)]
pub enum RawForward {
    Group(String),
    Weighted(RawWeightedForward),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedForward {
    pub groups: Vec<RawWeightedGroup>,
    pub stickiness: Option<DurationStr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedGroup {
    pub name: String,
    /// Wide, so that an out-of-range weight is validation's to explain.
    pub weight: i64,
}

/// By hand rather than `#[serde(untagged)]`, whose error for a value of neither shape ("did not
/// match any variant") says nothing of what to write, and which would hide the error of a table
/// that is almost right (an unknown key, a missing weight) behind that same sentence.
impl<'de> Deserialize<'de> for RawForward {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawForward;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a target group's name (forward = \"web\") or a weighted forward \
                     (forward = { groups = [{ name = \"blue\", weight = 90 }, \
                     { name = \"green\", weight = 10 }], stickiness = \"1h\" })",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawForward, E> {
                Ok(RawForward::Group(v.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawForward, A::Error> {
                RawWeightedForward::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawForward::Weighted)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `stickiness = { type = "lb_cookie", duration = "1d" }` or
/// `{ type = "app_cookie", cookie_name = "SESSION", duration = "1h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStickiness {
    #[serde(rename = "type")]
    pub kind: String,
    pub duration: Option<DurationStr>,
    pub cookie_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixedResponse {
    pub status: u16,
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetGroup {
    pub name: String,
    pub protocol: Option<String>,
    pub protocol_version: Option<String>,
    pub algorithm: Option<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    pub deregistration_delay: Option<DurationStr>,
    pub slow_start: Option<DurationStr>,
    pub connect_timeout: Option<DurationStr>,
    pub response_timeout: Option<DurationStr>,
    pub stickiness: Option<RawStickiness>,
    pub health_check: Option<RawHealthCheck>,
    pub discovery: Option<RawDiscovery>,
}

/// `[target_groups.discovery]`: where else the group's targets come from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub ecs: Option<RawEcs>,
}

/// `[target_groups.discovery.ecs]`: the running tasks of an ECS service (or task family).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcs {
    pub cluster: String,
    pub service: Option<String>,
    pub family: Option<String>,
    pub container: String,
    pub container_port: i64,
    pub refresh: Option<DurationStr>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub healthy_tasks_only: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub path: Option<String>,
    /// `"traffic-port"` or a port number (as a number or a string).
    pub port: Option<toml::Value>,
    pub protocol: Option<String>,
    pub interval: Option<DurationStr>,
    pub timeout: Option<DurationStr>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub matcher: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source::new("test.toml", ".", text.to_string())
    }

    /// The one error the parse of `text` gives.
    fn parse_error(text: &str) -> ConfigError {
        let mut errs = src(text).parse().unwrap_err().0;
        assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs));
        errs.remove(0)
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse_error(
            r#"[runtime]
idle_timeout = "5s"

[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
colour = "blue"
default_action = { fixed_response = { status = 200 } }
"#,
        );
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(8), "listeners[0].colour")
        );
        assert!(err.reason.contains("unknown field `colour`"), "{err}");
    }

    /// Found by fuzz/ (corpus/config/toml-edit-spans.toml): toml_edit 0.23's parse, which only
    /// finds lines for errors, panicked on a dotted key with empty parts after an empty one
    /// ("all items have spans"), so such a file took `seawall check` or a reload down with it.
    #[test]
    fn a_malformed_file_is_an_error_not_a_panic() {
        let err = parse_error("==\n.=");
        assert_eq!(err.line, Some(1), "{err}");
    }

    /// A key that `[access_log]` does not have is named, not ignored.
    #[test]
    fn an_unknown_access_log_key_is_rejected() {
        let err = parse_error(
            r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = "app" }

[access_log]
path = "-"
rotate = "daily"
"#,
        );
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(9), "access_log.rotate")
        );
        assert!(err.reason.contains("unknown field `rotate`"), "{err}");
    }

    #[test]
    fn a_forward_of_neither_shape_says_what_to_write() {
        let err = parse_error(
            r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = 7 }
"#,
        );
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(5), "listeners[0].default_action.forward")
        );
        assert!(err.reason.contains("a target group's name"), "{err}");
        assert!(err.reason.contains("weighted forward"), "{err}");
    }

    #[test]
    fn a_weighted_forward_names_its_own_unknown_keys() {
        let err = parse_error(
            r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { forward = { groups = [{ name = "a", weight = 1, colour = "blue" }] } }
"#,
        );
        assert_eq!(err.line, Some(5));
        assert!(
            err.path
                .starts_with("listeners[0].default_action.forward.groups[0]"),
            "{err}"
        );
        assert!(err.reason.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn invalid_toml_syntax_has_a_line_but_no_key_path() {
        let err = parse_error(
            r#"[[listeners]]
name = "web"
bind = "127.0.0.1:0"
protocol = "http"
default_action = { fixed_response = { status = 200 }
"#,
        );
        // A syntax error comes before there are keys to name.
        assert_eq!((err.line, err.path.as_str()), (Some(5), ""));
        assert!(err.reason.contains("inline table"), "{err}");
        assert_eq!(err.to_string(), format!("test.toml:5: {}", err.reason));
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = parse_error(
            r#"[runtime]
workers = 1
idle_timeout = "5 parsecs"
"#,
        );
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(3), "runtime.idle_timeout")
        );
        assert!(
            err.reason.contains(r#"invalid duration "5 parsecs""#),
            "{err}"
        );
        assert!(
            err.reason.contains(r#"like "250ms", "5s" or "2m""#),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_the_key() {
        let err = parse_error("[runtime]\nworkers = \"four\"\n");
        assert_eq!((err.line, err.path.as_str()), (Some(2), "runtime.workers"));
        assert!(err.reason.contains("invalid type"), "{err}");
    }

    #[test]
    fn log_format_of_the_wrong_type_names_the_key() {
        let err = parse_error("[runtime]\nworkers = 1\nlog_format = true\n");
        assert_eq!(
            (err.line, err.path.as_str()),
            (Some(3), "runtime.log_format")
        );
        assert!(err.reason.contains("invalid type"), "{err}");
    }

    /// What `seawall check` prints, one line per error: `file:line: key.path: reason`.
    #[test]
    fn errors_print_as_file_line_key_path_reason() {
        let e = |line, path: &str| ConfigError {
            file: "conf/seawall.toml".into(),
            line,
            path: path.into(),
            reason: "why".into(),
        };
        let errs = ConfigErrors(vec![
            e(Some(3), "runtime.workers"),
            e(None, "listeners"),
            e(Some(7), ""),
        ]);
        assert_eq!(
            errs.to_string(),
            "conf/seawall.toml:3: runtime.workers: why\n\
             conf/seawall.toml: listeners: why\n\
             conf/seawall.toml:7: why"
        );
    }

    #[test]
    fn the_environment_holds_only_the_variables_the_file_names() {
        let raw = |token: &str| {
            src(&format!(
                "[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{token}\"\n"
            ))
            .parse()
            .unwrap()
        };
        // PATH is set wherever tests run; reading it changes nothing.
        let path = std::env::var_os("PATH").expect("PATH is set");
        let env = Environment::read(&raw("env:PATH"));
        assert_eq!(env.var("PATH"), Some(path.as_os_str()));
        assert_eq!(env.var("HOME"), None, "not named by the file");
        let env = Environment::read(&raw("PATH"));
        assert_eq!(env.var("PATH"), None, "a literal token names no variable");
        let env = Environment::read(&raw("env:"));
        assert!(env.vars.is_empty());
        let cookie_key = src("[runtime]\ncookie_key = \"env:PATH\"\n")
            .parse()
            .unwrap();
        assert_eq!(
            Environment::read(&cookie_key).var("PATH"),
            Some(path.as_os_str())
        );
        assert_eq!(env.startup_exe(), std::env::current_exe().unwrap());
    }

    #[test]
    fn key_paths_resolve_to_lines() {
        let s = src("[[listeners]]\nname = \"a\"\n\n  [[listeners.rules]]\n  priority = 1\n\n  [[listeners.rules]]\n  priority = 2\n");
        assert_eq!(s.line_of_path("listeners[0].rules[1].priority"), Some(8));
        assert_eq!(s.line_of_path("listeners[0].name"), Some(2));
        // A key that is not there points at the table that should hold it.
        assert_eq!(s.line_of_path("listeners[0].rules[0].missing"), Some(4));
    }
}
