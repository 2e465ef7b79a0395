//! The application log: what seawall says about itself (config loads, listeners, target health,
//! discovery), on stderr, as text for a person or as one JSON object per line for a collector.
//! Requests are not logged here at info level: the access log and the metrics count them.

use std::str::FromStr;

use crate::protocol::UnknownValue;

/// How application log lines are written (`--log-format`, `runtime.log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2025-01-01T00:00:00.000000Z  INFO seawall::listener: listening listener=web ...`
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target` (the module), `fields` (the
    /// message and the line's fields) and `span` when the line was logged inside one.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownValue::new(
                "log format",
                other,
                "\"text\" or \"json\"",
            )),
        }
    }
}

/// Installs the process's log subscriber: stderr, filtered by `RUST_LOG` (default `info`).
/// Call once; a second call changes nothing (the first subscriber stays).
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        // Colour only for a person at a terminal (and never with NO_COLOR set): escape codes in a
        // piped or collected log break parsing.
        LogFormat::Text => builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            )
            .try_init(),
        // The fields stay in their own object rather than flattened beside `timestamp`, `level`
        // and `target`: a target's address is logged as a field named `target` (as ALB names
        // it), which would collide with the line's module `target`.
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_two_words_and_names_them_otherwise() {
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        let e = "xml".parse::<LogFormat>().unwrap_err();
        assert_eq!(e.expected, "\"text\" or \"json\"");
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.as_str().parse::<LogFormat>().unwrap(), f);
        }
    }
}
