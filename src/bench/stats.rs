//! What one load-generating thread counts, merged into one [`Stats`] at the end of a run.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest latency a histogram holds, in microseconds (an hour); longer values are clamped,
/// which `--timeout` makes impossible in practice.
const MAX_MICROS: u64 = 3_600_000_000;
/// Three significant figures: 0.1% resolution at every magnitude.
const SIGFIGS: u8 = 3;

/// Why a request (or the connection it needed) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connect failed (refused, unreachable).
    Connect,
    /// The TLS handshake failed: an alert from the server, a certificate the client refused, or the
    /// connection closing mid-handshake.
    Tls,
    /// A connect, handshake or request outlived `--timeout`.
    Timeout,
    /// The server reset or closed the connection under a request.
    Reset,
    /// Anything else: an HTTP protocol error, an ALPN the mode cannot use.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Other => "other",
        }
    }
}

/// The TLS parameters a connection ended up with (the first successful handshake's).
#[derive(Debug, Clone, Serialize)]
pub struct Negotiated {
    pub version: String,
    pub cipher_suite: String,
    pub alpn: Option<String>,
}

/// Counters and histograms of one thread (and, merged, of the run).
pub struct Stats {
    /// Request latency in microseconds: from the intended send time (`--rate`) or the send, to
    /// the last byte of the response body. In `--new-connection` mode it includes connect and
    /// handshake.
    pub latency: Histogram<u64>,
    /// TLS handshake time in microseconds, from TCP connected to handshake done.
    pub handshake: Histogram<u64>,
    /// Responses by status code, indexed by the code (100..=999), so counting never allocates.
    pub status: Vec<u64>,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub full_handshakes: u64,
    pub resumed_handshakes: u64,
    /// Response body bytes received.
    pub body_bytes: u64,
    /// Bytes read from and written to the sockets (TLS records and HTTP framing included).
    pub wire_read: u64,
    pub wire_written: u64,
    pub negotiated: Option<Negotiated>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let hist = || {
            Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS)
                .expect("constant histogram bounds are valid")
        };
        Stats {
            latency: hist(),
            handshake: hist(),
            status: vec![0; 1000],
            errors: [0; ErrorKind::ALL.len()],
            full_handshakes: 0,
            resumed_handshakes: 0,
            body_bytes: 0,
            wire_read: 0,
            wire_written: 0,
            negotiated: None,
        }
    }

    pub fn response(&mut self, status: u16, micros: u64, body_bytes: u64) {
        self.latency.saturating_record(micros.max(1));
        if let Some(n) = self.status.get_mut(usize::from(status)) {
            *n += 1;
        }
        self.body_bytes += body_bytes;
    }

    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    pub fn handshake(&mut self, resumed: bool, micros: u64) {
        self.handshake.saturating_record(micros.max(1));
        if resumed {
            self.resumed_handshakes += 1;
        } else {
            self.full_handshakes += 1;
        }
    }

    pub fn responses(&self) -> u64 {
        self.status.iter().sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.handshake.add(&other.handshake);
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.full_handshakes += other.full_handshakes;
        self.resumed_handshakes += other.resumed_handshakes;
        self.body_bytes += other.body_bytes;
        self.wire_read += other.wire_read;
        self.wire_written += other.wire_written;
        if self.negotiated.is_none() {
            self.negotiated = other.negotiated.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = Stats::new();
        a.response(200, 100, 10);
        a.handshake(false, 50);
        a.error(ErrorKind::Reset);
        let mut b = Stats::new();
        b.response(200, 300, 5);
        b.response(503, 1, 0);
        b.handshake(true, 20);
        b.error(ErrorKind::Reset);
        b.error(ErrorKind::Connect);
        a.merge(&b);
        assert_eq!(a.responses(), 3);
        assert_eq!(a.status[200], 2);
        assert_eq!(a.status[503], 1);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.body_bytes, 15);
        assert_eq!((a.full_handshakes, a.resumed_handshakes), (1, 1));
        assert_eq!(a.errors[ErrorKind::Reset as usize], 2);
        assert_eq!(a.error_count(), 3);
    }
}
