//! Every metric seawall exports, in one place. Names carry the `seawall_` prefix; ALB's CloudWatch
//! names are given beside each for users coming from ALB.

use std::sync::{Arc, OnceLock};

use crate::server::framing::Reason;
use http::{StatusCode, Version};
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
    /// `http2_connection_errors_total{reason}`: why seawall closed a client's HTTP/2 connection.
    ///
    /// Beside seawall's own rapid-reset bound, these are the GOAWAY codes h2 closed the connection
    /// with: h2 keeps no finer cause once the connection ends (the debug data naming the flood is
    /// not handed back), so its flood bounds share `enhance_your_calm`.
    Http2ConnError {
        /// The client cancelled streams before their answers began faster than
        /// `runtime.http2_max_resets_per_second` (CVE-2023-44487).
        RapidReset => "rapid_reset",
        /// One of h2's flood bounds: streams reset before they were accepted, CONTINUATION frames
        /// beyond what a header list of the allowed size needs, a header list decoding to far
        /// more than the allowed size (an HPACK bomb), floods of tiny DATA frames, too many
        /// stream errors.
        EnhanceYourCalm => "enhance_your_calm",
        /// A header block HPACK could not decode, or one that went on growing after it was
        /// already too large.
        CompressionError => "compression_error",
        ProtocolError => "protocol_error",
        FlowControlError => "flow_control_error",
        FrameSizeError => "frame_size_error",
        /// Any other code h2 closed the connection with.
        Other => "other",
    }
);

label_values!(
    /// `requests_by_version_total{version}`: the HTTP versions hyper serves.
    HttpVersion {
        Http10 => "HTTP/1.0",
        Http11 => "HTTP/1.1",
        Http2 => "HTTP/2",
    }
);

impl HttpVersion {
    /// The label of a request's version; `None` for versions hyper's server never hands over
    /// (HTTP/0.9, HTTP/3).
    pub fn of(version: Version) -> Option<Self> {
        match version {
            Version::HTTP_10 => Some(HttpVersion::Http10),
            Version::HTTP_11 => Some(HttpVersion::Http11),
            Version::HTTP_2 => Some(HttpVersion::Http2),
            _ => None,
        }
    }
}

label_values!(
    /// `rejected_connections_total{reason}`: why a listener refused a client connection.
    Rejection {
        /// The process's cap on client connections (`descriptors::Budget`) was reached: accepted
        /// and closed at once.
        FdLimit => "fd_limit",
        /// Accepting failed for want of a descriptor (`EMFILE`, `ENFILE`): accepted through the
        /// reserve descriptors and closed at once.
        FdExhausted => "fd_exhausted",
        /// Accepting failed otherwise (out of memory or buffers): the listener pauses.
        AcceptError => "accept_error",
    }
);

label_values!(
    /// `processed_bytes_total{direction}`, as seen from seawall's client socket.
    Direction {
        /// Read from the client.
        In => "in",
        /// Written to the client.
        Out => "out",
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

/// Counts itself in a gauge while it lives, so that a task dropped mid-wait (the runtime shutting
/// down) does not leave the gauge counting it.
#[derive(Debug)]
pub struct Counted(IntGauge);

impl Counted {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `request_duration_seconds`'s buckets: 1 ms to 60 s (a request is at least one round trip
/// of seawall's own; `target_response_seconds` starts lower, for targets on the same host).
pub const REQUEST_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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
    /// `request_duration_seconds` (the family, which the pair's histogram resolves from).
    request_duration: HistogramVec,
    /// `request_duration_seconds` for this pair, resolved with the first request counted, so
    /// that pairs no request takes (a listener and a group it never forwards to) publish no
    /// series; counted beside `requests_total`, so its `_count` is always that pair's sum.
    duration: OnceLock<Histogram>,
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
            request_duration: metrics.request_duration_seconds.clone(),
            duration: OnceLock::new(),
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

    /// Observes a counted request's whole time, from its head's arrival to the end of its
    /// response (or the client leaving).
    pub fn observe_duration(&self, seconds: f64) {
        self.duration
            .get_or_init(|| {
                self.request_duration
                    .with_label_values(&[&*self.listener, self.group.as_deref().unwrap_or("")])
            })
            .observe(seconds);
    }

    /// Observes the time from sending a request to the target's response head.
    pub fn observe_target_response(&self, seconds: f64) {
        if let Some(h) = &self.response_seconds {
            h.observe(seconds);
        }
    }
}

/// What one listener counts whatever the configuration says: resolved when the listener starts
/// and kept with it (`server::ListenerContext`) across snapshots, each series present from zero.
#[derive(Debug, Clone)]
pub struct ListenerCounters {
    /// `processed_bytes_total{direction="in"}`: read from client sockets, TLS included.
    pub bytes_in: IntCounter,
    /// `processed_bytes_total{direction="out"}`: written to client sockets, TLS included.
    pub bytes_out: IntCounter,
    /// `rule_evaluations_total`.
    pub rule_evaluations: IntCounter,
    /// `redirects_total`.
    pub redirects: IntCounter,
    /// `fixed_responses_total`.
    pub fixed_responses: IntCounter,
    /// `proxy_protocol_errors_total`.
    pub proxy_protocol_errors: IntCounter,
    /// `requests_by_version_total` by [`HttpVersion`].
    by_version: [IntCounter; 3],
    /// `rejected_connections_total` by [`Rejection`].
    rejected: [IntCounter; 3],
    /// `http2_connection_errors_total` by [`Http2ConnError`].
    http2_errors: Box<[IntCounter]>,
}

impl ListenerCounters {
    /// The counters of listener `name`.
    pub fn new(metrics: &Metrics, name: &str) -> Self {
        let bytes = |d: Direction| {
            metrics
                .processed_bytes_total
                .with_label_values(&[name, d.as_str()])
        };
        ListenerCounters {
            bytes_in: bytes(Direction::In),
            bytes_out: bytes(Direction::Out),
            rule_evaluations: metrics.rule_evaluations_total.with_label_values(&[name]),
            redirects: metrics.redirects_total.with_label_values(&[name]),
            fixed_responses: metrics.fixed_responses_total.with_label_values(&[name]),
            proxy_protocol_errors: metrics
                .proxy_protocol_errors_total
                .with_label_values(&[name]),
            by_version: std::array::from_fn(|i| {
                metrics
                    .requests_by_version_total
                    .with_label_values(&[name, HttpVersion::ALL[i].as_str()])
            }),
            rejected: std::array::from_fn(|i| {
                metrics
                    .rejected_connections_total
                    .with_label_values(&[name, Rejection::ALL[i].as_str()])
            }),
            http2_errors: Http2ConnError::ALL
                .iter()
                .map(|r| {
                    metrics
                        .http2_connection_errors_total
                        .with_label_values(&[name, r.as_str()])
                })
                .collect(),
        }
    }

    /// Counts `n` client connections refused for `why`.
    pub fn rejected(&self, why: Rejection, n: u64) {
        self.rejected[why as usize].inc_by(n);
    }

    /// Counts an HTTP/2 connection seawall closed on the client.
    pub fn http2_connection_error(&self, reason: Http2ConnError) {
        self.http2_errors[reason as usize].inc();
    }

    /// Counts a request by its HTTP version.
    pub fn request_version(&self, version: Version) {
        if let Some(v) = HttpVersion::of(version) {
            self.by_version[v as usize].inc();
        }
    }
}

/// Where a target group counts failed connections to its targets, resolved per group when a
/// snapshot is attached (health-check probes count in `health_checks_total` instead).
#[derive(Debug, Clone)]
pub struct TargetErrors {
    /// `target_connection_errors_total`: refused, timed out, reset or closed before an answer.
    pub connection: IntCounter,
    /// `target_tls_errors_total`: the TLS handshake with an HTTPS target failed.
    pub tls: IntCounter,
}

impl TargetErrors {
    /// The counters of target group `group`.
    pub fn new(metrics: &Metrics, group: &str) -> Self {
        TargetErrors {
            connection: metrics
                .target_connection_errors_total
                .with_label_values(&[group]),
            tls: metrics.target_tls_errors_total.with_label_values(&[group]),
        }
    }

    /// Counters that count nowhere: for pools used outside a snapshot (tests).
    pub fn detached() -> Self {
        let counter = || IntCounter::new("detached", "Counted nowhere.").expect("valid metric");
        TargetErrors {
            connection: counter(),
            tls: counter(),
        }
    }
}

/// `tls_negotiations_total{protocol,cipher}`'s `protocol`: ALB's `ssl_protocol` spelling.
pub fn tls_protocol_label(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        rustls::ProtocolVersion::TLSv1_1 => "TLSv1.1",
        rustls::ProtocolVersion::TLSv1_0 => "TLSv1",
        _ => "unknown",
    }
}

/// `tls_negotiations_total{protocol,cipher}`'s `cipher`: the suite's IANA name
/// (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`). rustls names its suites
/// after IANA's, except that TLS 1.3's carry `TLS13_` where IANA writes `TLS_`.
pub fn tls_cipher_label(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_string(),
        },
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

/// How many (version, suite) pairs [`Negotiations`] keeps resolved: more than rustls's
/// providers offer (aws-lc-rs: three TLS 1.3 suites, six TLS 1.2 ones).
const NEGOTIATION_SLOTS: usize = 16;

/// `tls_negotiations_total` by (version, suite): each pair resolved from the family the first
/// time a handshake settles it, and found after that by a scan of a few slots, without hashing
/// labels per handshake.
#[derive(Debug)]
pub struct Negotiations {
    family: IntCounterVec,
    /// Filled in order; a pair is in one slot at most (a scan stops at the first slot that is
    /// empty or holds it, and filling a slot waits for a concurrent fill of the same slot).
    slots: [OnceLock<(u16, u16, IntCounter)>; NEGOTIATION_SLOTS],
}

impl Negotiations {
    fn new(family: IntCounterVec) -> Self {
        Negotiations {
            family,
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn resolve(&self, version: rustls::ProtocolVersion, suite: rustls::CipherSuite) -> IntCounter {
        self.family
            .with_label_values(&[tls_protocol_label(version), &tls_cipher_label(suite)])
    }

    /// Counts a handshake that settled `version` and `suite`.
    pub fn count(&self, version: rustls::ProtocolVersion, suite: rustls::CipherSuite) {
        let key = (u16::from(version), u16::from(suite));
        for slot in &self.slots {
            let (v, s, counter) = slot.get_or_init(|| (key.0, key.1, self.resolve(version, suite)));
            if (*v, *s) == key {
                counter.inc();
                return;
            }
        }
        // More pairs than slots: counted, at the price of a lookup.
        self.resolve(version, suite).inc();
    }
}

/// One instance per running seawall (tests run several in one process, so nothing is global).
pub struct Metrics {
    registry: Registry,
    /// The process collector's, without the `seawall_` prefix: `process_*` are standard names.
    process: Registry,
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
    /// Client connections each data-plane worker serves, by worker (`spread::Workers`).
    pub worker_connections: IntGaugeVec,
    /// \[NewConnectionCount\]
    pub new_connections_total: IntCounter,
    /// \[RejectedConnectionCount\] client connections refused, by listener and [`Rejection`].
    pub rejected_connections_total: IntCounterVec,
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
    /// \[RequestCount\]'s time: from a request head's arrival to the end of its response, by
    /// listener and target group ("" as in `requests_total`); its `_count` is `requests_total`'s.
    pub request_duration_seconds: HistogramVec,
    /// \[ProcessedBytes\] bytes read from (`in`) and written to (`out`) client connections, TLS
    /// records and handshakes included, by listener.
    pub processed_bytes_total: IntCounterVec,
    /// Completed TLS handshakes by negotiated protocol (`TLSv1.2`, `TLSv1.3`) and cipher suite
    /// (its IANA name).
    pub tls_negotiations_total: IntCounterVec,
    /// \[TargetConnectionErrorCount\] connections to targets that failed (refused, timed out,
    /// reset or closed before an answer), by target group; health checks not included.
    pub target_connection_errors_total: IntCounterVec,
    /// \[TargetTLSNegotiationErrorCount\] TLS handshakes with HTTPS targets that failed, by target
    /// group; health checks not included.
    pub target_tls_errors_total: IntCounterVec,
    /// \[RuleEvaluations\] rules whose conditions were tested, by listener.
    pub rule_evaluations_total: IntCounterVec,
    /// \[HTTP_Redirect_Count\] redirect actions answered, by listener.
    pub redirects_total: IntCounterVec,
    /// \[HTTP_Fixed_Response_Count\] fixed-response actions answered, by listener.
    pub fixed_responses_total: IntCounterVec,
    /// Requests by listener and HTTP version (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`).
    pub requests_by_version_total: IntCounterVec,
    /// Connections to a `proxy_protocol` listener closed because they did not begin with a valid
    /// PROXY protocol header (none, garbage, truncated, or too slow), by listener.
    pub proxy_protocol_errors_total: IntCounterVec,
    /// HTTP/2 client connections seawall closed because the client broke the protocol or one of
    /// its flood bounds (GOAWAY with an error code), by listener and [`Http2ConnError`].
    pub http2_connection_errors_total: IntCounterVec,
    /// Access and connection log lines dropped because the log writer fell behind.
    pub access_log_dropped_total: IntCounter,
    /// \[DesyncMitigationMode_NonCompliant_Request_Count\] HTTP requests that were not
    /// compliant, by ALB's classification and reason code, whatever was done with them.
    pub desync_mitigation_total: IntCounterVec,
    /// `tls_negotiations_total` by (version, suite), resolved on first use of each.
    tls_negotiations: Negotiations,
    /// `tls_handshakes_total` by [`HandshakeKind`], resolved once.
    handshakes: Box<[IntCounter]>,
    /// `tls_handshake_errors_total` by [`HandshakeFailure`], resolved once.
    handshake_errors: Box<[IntCounter]>,
    /// `config_reloads_total` by [`ReloadOutcome`], resolved once.
    reloads: Box<[IntCounter]>,
    /// `desync_mitigation_total` by [`Reason`] (which decides the classification), resolved
    /// once.
    desync: Box<[IntCounter]>,
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
        let worker_connections = IntGaugeVec::new(
            Opts::new(
                "worker_connections",
                "Open client connections, by the data-plane worker serving them.",
            ),
            &["worker"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(worker_connections.clone()))
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
        let request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time from a request head's arrival to the end of its response, by listener and \
                 target group (empty for answers no group gave).",
            )
            .buckets(REQUEST_DURATION_BUCKETS.to_vec()),
            &["listener", "target_group"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(request_duration_seconds.clone()))
            .expect("unique");
        let processed_bytes_total = counter_vec(
            "processed_bytes_total",
            "Bytes read from (in) and written to (out) client connections, TLS included, by \
             listener.",
            &["listener", "direction"],
        );
        let tls_negotiations_total = counter_vec(
            "tls_negotiations_total",
            "Completed TLS handshakes, by negotiated protocol version and cipher suite (IANA name).",
            &["protocol", "cipher"],
        );
        let target_connection_errors_total = counter_vec(
            "target_connection_errors_total",
            "Connections to targets that failed (refused, timed out, reset or closed before an \
             answer), by target group; health checks not included.",
            &["target_group"],
        );
        let target_tls_errors_total = counter_vec(
            "target_tls_errors_total",
            "TLS handshakes with HTTPS targets that failed, by target group; health checks not \
             included.",
            &["target_group"],
        );
        let rule_evaluations_total = counter_vec(
            "rule_evaluations_total",
            "Listener rules whose conditions were tested against requests, by listener.",
            &["listener"],
        );
        let redirects_total = counter_vec(
            "redirects_total",
            "Redirect actions answered, by listener.",
            &["listener"],
        );
        let fixed_responses_total = counter_vec(
            "fixed_responses_total",
            "Fixed-response actions answered, by listener.",
            &["listener"],
        );
        let requests_by_version_total = counter_vec(
            "requests_by_version_total",
            "Requests answered, by listener and HTTP version.",
            &["listener", "version"],
        );
        let proxy_protocol_errors_total = counter_vec(
            "proxy_protocol_errors_total",
            "Connections closed for want of a valid PROXY protocol header, by listener.",
            &["listener"],
        );
        let rejected_connections_total = counter_vec(
            "rejected_connections_total",
            "Client connections refused at accept, by listener and reason.",
            &["listener", "reason"],
        );
        let desync_mitigation_total = counter_vec(
            "desync_mitigation_total",
            "HTTP requests that were not compliant, by ALB's desync classification and reason.",
            &["classification", "reason"],
        );
        let desync = Reason::ALL
            .iter()
            .map(|&r| {
                desync_mitigation_total.with_label_values(&[r.verdict().alb_tier(), r.alb_code()])
            })
            .collect();
        let http2_connection_errors_total = counter_vec(
            "http2_connection_errors_total",
            "HTTP/2 client connections closed for breaking the protocol or a flood bound, by listener and reason.",
            &["listener", "reason"],
        );
        let access_log_dropped_total = counter(
            "access_log_dropped_total",
            "Access and connection log lines dropped because the log writer fell behind.",
        );
        // A registry of its own: the prefix would turn the standard names into
        // seawall_process_*, which no dashboard looks for.
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique");
        Metrics {
            process,
            tls_negotiations: Negotiations::new(tls_negotiations_total.clone()),
            request_duration_seconds,
            processed_bytes_total,
            tls_negotiations_total,
            target_connection_errors_total,
            target_tls_errors_total,
            rule_evaluations_total,
            redirects_total,
            fixed_responses_total,
            requests_by_version_total,
            proxy_protocol_errors_total,
            http2_connection_errors_total,
            access_log_dropped_total,
            desync_mitigation_total,
            desync,
            active_connections: gauge("active_connections", "Open client connections."),
            worker_connections,
            parked_connections: gauge(
                "parked_connections",
                "Idle HTTP/1 keep-alive client connections parked (open, holding no HTTP buffers).",
            ),
            new_connections_total: counter("new_connections_total", "Accepted client connections."),
            rejected_connections_total,
            config_generation: gauge(
                "config_generation",
                "Generation of the configuration in force.",
            ),
            config_last_reload_success_timestamp_seconds: gauge(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration in force was loaded, in Unix seconds.",
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

    /// Counts the protocol version and cipher suite a completed TLS handshake settled.
    pub fn tls_negotiation(&self, version: rustls::ProtocolVersion, suite: rustls::CipherSuite) {
        self.tls_negotiations.count(version, suite);
    }

    /// Counts a failed TLS handshake.
    pub fn tls_handshake_error(&self, reason: HandshakeFailure) {
        self.handshake_errors[reason as usize].inc();
    }

    /// Counts a configuration reload.
    pub fn config_reload(&self, result: ReloadOutcome) {
        self.reloads[result as usize].inc();
    }

    /// Counts a request that was not compliant.
    pub fn desync(&self, reason: Reason) {
        self.desync[reason as usize].inc();
    }

    /// Counts an answer seawall made itself.
    pub fn elb_response(&self, code: StatusCode) {
        self.elb_responses
            .get(code, |c| self.elb_responses_total.with_label_values(&[c]))
            .inc();
    }

    /// The Prometheus text exposition of every metric: seawall's, then the process's.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        for registry in [&self.registry, &self.process] {
            encoder
                .encode(&registry.gather(), &mut out)
                .expect("writing to a Vec cannot fail");
        }
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

    #[test]
    fn tls_labels_are_albs_protocols_and_iana_suites() {
        use rustls::{CipherSuite, ProtocolVersion};
        assert_eq!(tls_protocol_label(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(tls_protocol_label(ProtocolVersion::TLSv1_2), "TLSv1.2");
        assert_eq!(
            tls_cipher_label(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            tls_cipher_label(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            "TLS_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(
            tls_cipher_label(CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(tls_cipher_label(CipherSuite::Unknown(0xabcd)), "0xABCD");
    }

    #[test]
    fn negotiations_count_each_pair_in_one_series_past_the_slots_too() {
        use rustls::{CipherSuite, ProtocolVersion};
        let m = Metrics::new();
        let v13 = ProtocolVersion::TLSv1_3;
        let v12 = ProtocolVersion::TLSv1_2;
        m.tls_negotiation(v13, CipherSuite::TLS13_AES_256_GCM_SHA384);
        m.tls_negotiation(v12, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        m.tls_negotiation(v13, CipherSuite::TLS13_AES_256_GCM_SHA384);
        // More pairs than slots: the ones past them are counted all the same.
        let many = NEGOTIATION_SLOTS as u16 + 4;
        for _ in 0..2 {
            for code in 0..many {
                m.tls_negotiation(v12, CipherSuite::Unknown(0xff00 + code));
            }
        }
        let get = |p: &str, c: &str| m.tls_negotiations_total.with_label_values(&[p, c]).get();
        assert_eq!(get("TLSv1.3", "TLS_AES_256_GCM_SHA384"), 2);
        assert_eq!(get("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), 1);
        for code in 0..many {
            assert_eq!(get("TLSv1.2", &format!("0x{:04X}", 0xff00 + code)), 2);
        }
        let slots: Vec<_> = m
            .tls_negotiations
            .slots
            .iter()
            .filter_map(|s| s.get().map(|(v, c, _)| (*v, *c)))
            .collect();
        let mut unique = slots.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(slots.len(), NEGOTIATION_SLOTS);
        assert_eq!(unique.len(), slots.len(), "a pair in one slot only");
    }

    #[test]
    fn listener_counters_start_at_zero_and_count_versions() {
        let m = Metrics::new();
        let l = ListenerCounters::new(&m, "web");
        for v in [
            Version::HTTP_11,
            Version::HTTP_2,
            Version::HTTP_11,
            Version::HTTP_10,
        ] {
            l.request_version(v);
        }
        // Never handed over by hyper's server: not counted under another version's name.
        l.request_version(Version::HTTP_3);
        l.redirects.inc();
        l.rejected(Rejection::FdLimit, 3);
        l.http2_connection_error(Http2ConnError::RapidReset);
        let text = m.render();
        for line in [
            r#"seawall_requests_by_version_total{listener="web",version="HTTP/1.0"} 1"#,
            r#"seawall_requests_by_version_total{listener="web",version="HTTP/1.1"} 2"#,
            r#"seawall_requests_by_version_total{listener="web",version="HTTP/2"} 1"#,
            r#"seawall_processed_bytes_total{direction="in",listener="web"} 0"#,
            r#"seawall_processed_bytes_total{direction="out",listener="web"} 0"#,
            r#"seawall_rule_evaluations_total{listener="web"} 0"#,
            r#"seawall_redirects_total{listener="web"} 1"#,
            r#"seawall_fixed_responses_total{listener="web"} 0"#,
            r#"seawall_proxy_protocol_errors_total{listener="web"} 0"#,
            r#"seawall_rejected_connections_total{listener="web",reason="fd_limit"} 3"#,
            r#"seawall_rejected_connections_total{listener="web",reason="fd_exhausted"} 0"#,
            r#"seawall_rejected_connections_total{listener="web",reason="accept_error"} 0"#,
            r#"seawall_http2_connection_errors_total{listener="web",reason="rapid_reset"} 1"#,
            r#"seawall_http2_connection_errors_total{listener="web",reason="enhance_your_calm"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(
            HttpVersion::ALL
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["HTTP/1.0", "HTTP/1.1", "HTTP/2"]
        );
    }

    #[test]
    fn request_duration_counts_beside_requests_total_per_pair() {
        let m = Metrics::new();
        let direct = RequestMetrics::new(&m, "web".into(), None);
        let group = RequestMetrics::new(
            &m,
            "web".into(),
            Some((
                "app".into(),
                m.target_response_seconds.with_label_values(&["app"]),
            )),
        );
        let unused = RequestMetrics::new(
            &m,
            "web".into(),
            Some((
                "idle".into(),
                m.target_response_seconds.with_label_values(&["idle"]),
            )),
        );
        let _ = unused.group();
        for (pair, code, seconds) in [
            (&direct, 404, 0.0004),
            (&group, 200, 0.02),
            (&group, 502, 3.0),
            (&direct, 301, 100.0),
        ] {
            pair.count(StatusCode::from_u16(code).unwrap());
            pair.observe_duration(seconds);
        }
        let text = m.render();
        for line in [
            r#"seawall_request_duration_seconds_count{listener="web",target_group=""} 2"#,
            r#"seawall_request_duration_seconds_count{listener="web",target_group="app"} 2"#,
            r#"seawall_request_duration_seconds_bucket{listener="web",target_group="",le="0.001"} 1"#,
            r#"seawall_request_duration_seconds_bucket{listener="web",target_group="",le="60"} 1"#,
            r#"seawall_request_duration_seconds_bucket{listener="web",target_group="",le="+Inf"} 2"#,
            r#"seawall_request_duration_seconds_bucket{listener="web",target_group="app",le="0.025"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // A pair no request took publishes nothing.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("seawall_request_duration") && l.contains("idle")),
            "{text}"
        );
        assert_eq!(REQUEST_DURATION_BUCKETS.first(), Some(&0.001));
        assert_eq!(REQUEST_DURATION_BUCKETS.last(), Some(&60.0));
    }

    #[test]
    fn target_errors_are_per_group_and_present_from_zero() {
        let m = Metrics::new();
        let app = TargetErrors::new(&m, "app");
        let _other = TargetErrors::new(&m, "other");
        app.connection.inc();
        app.tls.inc_by(2);
        let text = m.render();
        for line in [
            r#"seawall_target_connection_errors_total{target_group="app"} 1"#,
            r#"seawall_target_tls_errors_total{target_group="app"} 2"#,
            r#"seawall_target_connection_errors_total{target_group="other"} 0"#,
            r#"seawall_target_tls_errors_total{target_group="other"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Detached counters count nowhere.
        TargetErrors::detached().connection.inc();
        assert!(!m.render().contains("detached"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_keep_their_standard_names_once_per_instance() {
        // Two instances in one process, as in the tests: each renders the process's metrics.
        let (a, b) = (Metrics::new(), Metrics::new());
        a.access_log_dropped_total.inc();
        for m in [&a, &b] {
            let text = m.render();
            for name in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_virtual_memory_bytes",
                "process_open_fds",
                "process_max_fds",
                "process_start_time_seconds",
            ] {
                assert!(text.contains(&format!("\n{name} ")), "{name} in {text}");
                assert!(!text.contains(&format!("seawall_{name}")), "{text}");
            }
            // Every family once.
            let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
            let n = types.len();
            types.sort_unstable();
            types.dedup();
            assert_eq!(types.len(), n, "{text}");
        }
        assert!(a.render().contains("seawall_access_log_dropped_total 1"));
        assert!(b.render().contains("seawall_access_log_dropped_total 0"));
    }
}
