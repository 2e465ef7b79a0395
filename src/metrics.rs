//! Every metric seawall exports, in one place. Names carry the `seawall_` prefix; ALB's CloudWatch
//! names are given beside each for users coming from ALB.

use std::sync::{Arc, OnceLock};

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Declares a label's values as an enum, with their text and the list of all of them, so that a
/// label's values are written in one place and a misspelt one does not compile.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

label_values!(
    /// `tls_handshakes_total{kind}`.
    HandshakeKind {
        Full => "full",
        /// A resumed session: no certificate was sent.
        Resumed => "resumed",
    }
);

label_values!(
    /// `tls_handshake_errors_total{reason}`.
    HandshakeFailure {
        /// The client's bytes were not TLS we accept (rustls sent an alert).
        Alert => "alert",
        /// The connection failed under the handshake.
        Io => "io",
        /// `handshake_timeout` passed.
        Timeout => "timeout",
    }
);

label_values!(
    /// `config_reloads_total{result}`.
    ReloadOutcome {
        Success => "success",
        Failure => "failure",
    }
);

label_values!(
    /// `health_checks_total{result}`.
    CheckResult {
        Success => "success",
        Failure => "failure",
    }
);

/// One counter per status code of a labelled family, each resolved from the family the first time
/// its code is counted and read lock-free after that. Resolving every code up front would publish
/// hundreds of series that stay at zero; resolving per request costs a hash of every label and a
/// lock in prometheus each time.
///
/// Codes are grouped by class (1xx to 9xx), each class's hundred slots allocated when its first
/// code is seen: a few hundred bytes for a pair that sees nothing, 1.6 KiB per class in use.
#[derive(Debug, Default)]
pub struct CodeCounters {
    classes: [OnceLock<Box<[OnceLock<IntCounter>; 100]>>; 9],
}

impl CodeCounters {
    /// The counter for `code`, made with `resolve(code's text)` on first use.
    pub fn get(&self, code: StatusCode, resolve: impl FnOnce(&str) -> IntCounter) -> &IntCounter {
        // `StatusCode` holds 100..=999 only.
        let code16 = code.as_u16();
        let class = self.classes[usize::from(code16 / 100) - 1]
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        class[usize::from(code16 % 100)].get_or_init(|| resolve(code.as_str()))
    }
}

/// What one request is counted under, for one listener and target group pair ("" for answers
/// that no group gave): resolved when a snapshot is attached, so a request counts with an
/// `Arc` clone instead of a lookup by label values.
#[derive(Debug)]
pub struct RequestMetrics {
    /// The listener's name, for the `listener` label.
    listener: Arc<str>,
    /// The group's name, for the `target_group` label; `None` for `""`.
    group: Option<Arc<str>>,
    /// `requests_total` (a handle on the family, which the codes resolve from).
    requests_total: IntCounterVec,
    /// `requests_total` for this pair, by code.
    codes: CodeCounters,
    /// The group's `target_response_seconds`.
    response_seconds: Option<Histogram>,
}

impl RequestMetrics {
    /// The pair's handles; `group` with its resolved histogram.
    pub fn new(
        metrics: &Metrics,
        listener: Arc<str>,
        group: Option<(Arc<str>, Histogram)>,
    ) -> Self {
        let (group, response_seconds) = group.unzip();
        RequestMetrics {
            listener,
            group,
            requests_total: metrics.requests_total.clone(),
            codes: CodeCounters::default(),
            response_seconds,
        }
    }

    /// The target group's name, if a group answered.
    pub fn group(&self) -> Option<&Arc<str>> {
        self.group.as_ref()
    }

    /// Counts a request answered with `code`.
    pub fn count(&self, code: StatusCode) {
        self.codes
            .get(code, |c| {
                self.requests_total.with_label_values(&[
                    &*self.listener,
                    self.group.as_deref().unwrap_or(""),
                    c,
                ])
            })
            .inc();
    }

    /// Observes the time from sending a request to the target's response head.
    pub fn observe_target_response(&self, seconds: f64) {
        if let Some(h) = &self.response_seconds {
            h.observe(seconds);
        }
    }
}

/// One instance per running seawall (tests run several in one process, so nothing is global).
pub struct Metrics {
    registry: Registry,
    /// \[RequestCount, HTTPCode_Target_*\] by listener, target group ("" for fixed and redirect
    /// actions) and status code.
    pub requests_total: IntCounterVec,
    /// \[HTTPCode_ELB_*\] answers generated by seawall itself: errors, redirects, fixed responses.
    pub elb_responses_total: IntCounterVec,
    /// \[TargetResponseTime\] from sending the request to the target's response head.
    pub target_response_seconds: HistogramVec,
    /// \[ActiveConnectionCount\]
    pub active_connections: IntGauge,
    /// Idle HTTP/1 keep-alive client connections parked: open, but holding no HTTP buffers.
    pub parked_connections: IntGauge,
    /// \[NewConnectionCount\]
    pub new_connections_total: IntCounter,
    /// \[RejectedConnectionCount\] connections refused at the limit or by accept errors.
    pub rejected_connections_total: IntCounter,
    /// Completed TLS handshakes by kind (`full` or `resumed`).
    pub tls_handshakes_total: IntCounterVec,
    /// \[ClientTLSNegotiationErrorCount\] by reason (`timeout`, `alert`, `io`).
    pub tls_handshake_errors_total: IntCounterVec,
    /// Generation of the configuration in force (1 for the first load).
    pub config_generation: IntGauge,
    /// Reloads by result (`success` or `failure`).
    pub config_reloads_total: IntCounterVec,
    /// When the configuration in force was loaded (Unix seconds).
    pub config_last_reload_success_timestamp_seconds: IntGauge,
    /// \[HealthyHostCount\] targets in state healthy, by target group.
    pub healthy_targets: IntGaugeVec,
    /// \[UnHealthyHostCount\] targets in state unhealthy, by target group.
    pub unhealthy_targets: IntGaugeVec,
    /// Active health-check probes by target group and result (`success` or `failure`).
    pub health_checks_total: IntCounterVec,
    /// Targets the last successful discovery refresh found, by target group.
    pub discovery_targets: IntGaugeVec,
    /// Failed discovery refreshes and partial answers, by target group and reason.
    pub discovery_errors_total: IntCounterVec,
    /// When a group's discovery last refreshed successfully (Unix seconds).
    pub discovery_last_success_timestamp_seconds: IntGaugeVec,
    /// Calls to the ECS and EC2 APIs, by API (`ListTasks`, `DescribeTasks`, ...).
    pub discovery_api_calls_total: IntCounterVec,
    /// How long one discovery refresh took (listing, describing, resolving), by target group.
    pub discovery_refresh_seconds: HistogramVec,
    /// Access and connection log lines dropped because the writer was behind.
    pub access_log_dropped_total: IntCounter,
    /// `tls_handshakes_total` by [`HandshakeKind`], resolved once.
    handshakes: Box<[IntCounter]>,
    /// `tls_handshake_errors_total` by [`HandshakeFailure`], resolved once.
    handshake_errors: Box<[IntCounter]>,
    /// `config_reloads_total` by [`ReloadOutcome`], resolved once.
    reloads: Box<[IntCounter]>,
    /// `elb_responses_total` by code, resolved on first use of each.
    elb_responses: CodeCounters,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("seawall".into()), None)
            .expect("the prefix is a valid metric name");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let requests_total = counter_vec(
            "requests_total",
            "Requests answered, by listener, target group and status code.",
            &["listener", "target_group", "code"],
        );
        let elb_responses_total = counter_vec(
            "elb_responses_total",
            "Responses generated by seawall itself (errors, redirects, fixed responses), by code.",
            &["code"],
        );
        let tls_handshakes_total = counter_vec(
            "tls_handshakes_total",
            "Completed TLS handshakes, by kind (full or resumed).",
            &["kind"],
        );
        let tls_handshake_errors_total = counter_vec(
            "tls_handshake_errors_total",
            "Failed TLS handshakes, by reason.",
            &["reason"],
        );
        let target_response_seconds = HistogramVec::new(
            HistogramOpts::new(
                "target_response_seconds",
                "Time from sending a request to a target to its response head.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0,
            ]),
            &["target_group"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(target_response_seconds.clone()))
            .expect("unique");
        // Known label values start at zero, so dashboards and alerts see the series before the
        // first event.
        let handshakes = HandshakeKind::ALL
            .iter()
            .map(|k| tls_handshakes_total.with_label_values(&[k.as_str()]))
            .collect();
        let handshake_errors = HandshakeFailure::ALL
            .iter()
            .map(|r| tls_handshake_errors_total.with_label_values(&[r.as_str()]))
            .collect();
        let config_reloads_total = counter_vec(
            "config_reloads_total",
            "Configuration reloads, by result (success or failure).",
            &["result"],
        );
        let reloads = ReloadOutcome::ALL
            .iter()
            .map(|r| config_reloads_total.with_label_values(&[r.as_str()]))
            .collect();
        let health_checks_total = counter_vec(
            "health_checks_total",
            "Active health-check probes, by target group and result (success or failure).",
            &["target_group", "result"],
        );
        let gauge_vec = |name: &str, help: &str| {
            let g =
                IntGaugeVec::new(Opts::new(name, help), &["target_group"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let healthy_targets = gauge_vec("healthy_targets", "Healthy targets, by target group.");
        let unhealthy_targets =
            gauge_vec("unhealthy_targets", "Unhealthy targets, by target group.");
        let discovery_targets = gauge_vec(
            "discovery_targets",
            "Targets found by the last successful discovery refresh, by target group.",
        );
        let discovery_last_success_timestamp_seconds = gauge_vec(
            "discovery_last_success_timestamp_seconds",
            "When discovery last refreshed a target group successfully, in Unix seconds.",
        );
        let discovery_errors_total = counter_vec(
            "discovery_errors_total",
            "Failed discovery refreshes and partial answers, by target group and reason.",
            &["target_group", "reason"],
        );
        let discovery_api_calls_total = counter_vec(
            "discovery_api_calls_total",
            "Calls to the ECS and EC2 APIs made by discovery, by API.",
            &["api"],
        );
        let discovery_refresh_seconds = HistogramVec::new(
            HistogramOpts::new(
                "discovery_refresh_seconds",
                "Time one discovery refresh took (listing, describing and resolving tasks).",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["target_group"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(discovery_refresh_seconds.clone()))
            .expect("unique");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        Metrics {
            active_connections: gauge("active_connections", "Open client connections."),
            parked_connections: gauge(
                "parked_connections",
                "Idle HTTP/1 keep-alive client connections parked (open, holding no HTTP buffers).",
            ),
            new_connections_total: counter("new_connections_total", "Accepted client connections."),
            rejected_connections_total: counter(
                "rejected_connections_total",
                "Client connections refused or dropped at accept.",
            ),
            config_generation: gauge(
                "config_generation",
                "Generation of the configuration in force.",
            ),
            config_last_reload_success_timestamp_seconds: gauge(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration in force was loaded, in Unix seconds.",
            ),
            access_log_dropped_total: counter(
                "access_log_dropped_total",
                "Access and connection log lines dropped because the log writer was behind.",
            ),
            config_reloads_total,
            registry,
            requests_total,
            elb_responses_total,
            target_response_seconds,
            tls_handshakes_total,
            tls_handshake_errors_total,
            healthy_targets,
            unhealthy_targets,
            health_checks_total,
            discovery_targets,
            discovery_errors_total,
            discovery_last_success_timestamp_seconds,
            discovery_api_calls_total,
            discovery_refresh_seconds,
            handshakes,
            handshake_errors,
            reloads,
            elb_responses: CodeCounters::default(),
        }
    }

    /// Counts a completed TLS handshake.
    pub fn tls_handshake(&self, kind: HandshakeKind) {
        self.handshakes[kind as usize].inc();
    }

    /// Counts a failed TLS handshake.
    pub fn tls_handshake_error(&self, reason: HandshakeFailure) {
        self.handshake_errors[reason as usize].inc();
    }

    /// Counts a configuration reload.
    pub fn config_reload(&self, result: ReloadOutcome) {
        self.reloads[result as usize].inc();
    }

    /// Counts an answer seawall made itself.
    pub fn elb_response(&self, code: StatusCode) {
        self.elb_responses
            .get(code, |c| self.elb_responses_total.with_label_values(&[c]))
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_counters_resolve_each_code_once_and_only_when_counted() {
        let m = Metrics::new();
        let family = &m.requests_total;
        let cache = CodeCounters::default();
        let mut resolved = Vec::new();
        for code in [200, 200, 404, 999, 100, 200, 464] {
            let code = StatusCode::from_u16(code).unwrap();
            cache
                .get(code, |c| {
                    resolved.push(c.to_string());
                    family.with_label_values(&["l", "g", c])
                })
                .inc();
        }
        assert_eq!(resolved, ["200", "404", "999", "100", "464"]);
        let text = m.render();
        assert!(
            text.contains(r#"seawall_requests_total{code="200",listener="l",target_group="g"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"seawall_requests_total{code="464",listener="l",target_group="g"} 1"#),
            "{text}"
        );
        // No series for codes never counted.
        assert!(!text.contains(r#"code="201""#), "{text}");
    }

    #[test]
    fn typed_label_values_keep_the_published_series() {
        let m = Metrics::new();
        m.tls_handshake(HandshakeKind::Resumed);
        m.tls_handshake_error(HandshakeFailure::Timeout);
        m.config_reload(ReloadOutcome::Failure);
        let text = m.render();
        for line in [
            r#"seawall_tls_handshakes_total{kind="full"} 0"#,
            r#"seawall_tls_handshakes_total{kind="resumed"} 1"#,
            r#"seawall_tls_handshake_errors_total{reason="alert"} 0"#,
            r#"seawall_tls_handshake_errors_total{reason="io"} 0"#,
            r#"seawall_tls_handshake_errors_total{reason="timeout"} 1"#,
            r#"seawall_config_reloads_total{result="failure"} 1"#,
            r#"seawall_config_reloads_total{result="success"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(
            m.config_reloads_total.with_label_values(&["failure"]).get(),
            1
        );
    }
}
