//! HTTP/2 under hostile clients: seawall's own rapid-reset bound, a deadline on header blocks,
//! and the naming of the connection errors h2 closes a connection with.
//!
//! h2 bounds most floods by itself (see README, "Limits"): streams reset before hyper accepts
//! them (20), CONTINUATION frames beyond what a header list of `max_header_bytes` needs, header
//! lists decoding to far more than that, tiny DATA frames, stream errors. What it cannot see is a
//! client that lets each stream be accepted, so that a request task starts (routing, a target
//! connection), and then cancels it: that is CVE-2023-44487's cost, and what [`ResetBudget`]
//! bounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::metrics::Http2ConnError;

/// How many streams one connection may cancel before their answers begin: a token bucket that
/// holds `burst` and refills at `per_second`.
#[derive(Debug)]
pub struct ResetBudget {
    bucket: Mutex<Bucket>,
    burst: f64,
    per_second: f64,
    spent: AtomicBool,
    notify: Notify,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ResetBudget {
    /// `burst` is what a client may cancel at once: the streams it may have open, all of which a
    /// browser navigating away cancels together.
    pub fn new(burst: u32, per_second: u32) -> Arc<Self> {
        Arc::new(ResetBudget {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                at: Instant::now(),
            }),
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            spent: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// Takes one cancelled stream from the budget; once it is spent, [`ResetBudget::spent`]
    /// resolves.
    fn cancelled(&self) {
        let now = Instant::now();
        let over = {
            // A poisoned lock only means another stream's task panicked mid-update of two
            // numbers; the budget stays usable.
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.per_second;
            b.tokens = (b.tokens + refill).min(self.burst);
            b.at = now;
            b.tokens -= 1.0;
            b.tokens < 0.0
        };
        if over && !self.spent.swap(true, Ordering::AcqRel) {
            // Keeps a permit when the driver is not waiting at this moment.
            self.notify.notify_one();
        }
    }

    /// Resolves once the client has cancelled streams faster than the budget allows.
    pub async fn spent(&self) {
        if self.spent.load(Ordering::Acquire) {
            return;
        }
        self.notify.notified().await;
    }

    /// Watches one stream's request: unless [`StreamWatch::answered`] is called, dropping the
    /// watch counts the stream as cancelled.
    pub fn watch(self: &Arc<Self>) -> StreamWatch {
        StreamWatch(Some(self.clone()))
    }
}

/// See [`ResetBudget::watch`]. hyper drops a stream's request future when the client resets the
/// stream (or the connection ends, when nobody is left to act on the count).
#[derive(Debug)]
pub struct StreamWatch(Option<Arc<ResetBudget>>);

impl StreamWatch {
    /// The response head is ready: a reset from here on cancels a transfer, not a request that
    /// cost a task for nothing.
    pub fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if let Some(budget) = self.0.take() {
            budget.cancelled();
        }
    }
}

/// The reason to count a connection hyper's HTTP/2 server ended with `err` under: `Some` when h2
/// itself closed it with an error code (a GOAWAY it sent), `None` for I/O errors, the client's
/// own GOAWAY and anything else that is not seawall closing the connection.
pub fn closed_with(err: &(dyn std::error::Error + 'static)) -> Option<Http2ConnError> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if !(h2.is_go_away() && h2.is_library()) {
                return None;
            }
            return h2.reason().map(reason_label);
        }
        cause = e.source();
    }
    None
}

fn reason_label(reason: h2::Reason) -> Http2ConnError {
    match reason {
        h2::Reason::ENHANCE_YOUR_CALM => Http2ConnError::EnhanceYourCalm,
        h2::Reason::COMPRESSION_ERROR => Http2ConnError::CompressionError,
        h2::Reason::PROTOCOL_ERROR => Http2ConnError::ProtocolError,
        h2::Reason::FLOW_CONTROL_ERROR => Http2ConnError::FlowControlError,
        h2::Reason::FRAME_SIZE_ERROR => Http2ConnError::FrameSizeError,
        _ => Http2ConnError::Other,
    }
}

/// Follows the frames an HTTP/2 client sends, as far as needed to tell whether a header block
/// is under way: from the first byte of a frame to the end of the HEADERS or CONTINUATION frame
/// that carries END_HEADERS. h2 has no deadline of its own there, so a client trickling a header
/// block (slowloris) would hold its connection until `idle_timeout`; with this the connection
/// gets `header_timeout`, as an HTTP/1 request head does.
#[derive(Debug)]
pub struct HeaderBlockScan {
    /// Bytes of the client's connection preface still to come.
    preface: usize,
    /// The frame header being read, and how much of it is in.
    head: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: usize,
    /// A HEADERS frame has begun its block and no frame has ended it yet.
    in_block: bool,
    /// The current frame carries END_HEADERS: its last byte ends the block.
    ends_block: bool,
}

const FRAME_HEADER: usize = 9;
const PREFACE: usize = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

impl Default for HeaderBlockScan {
    fn default() -> Self {
        HeaderBlockScan {
            preface: PREFACE,
            head: [0; FRAME_HEADER],
            have: 0,
            payload: 0,
            in_block: false,
            ends_block: false,
        }
    }
}

impl HeaderBlockScan {
    /// Takes bytes the client sent; whether a header block (or a frame's header) is unfinished
    /// after them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
                if self.payload == 0 {
                    self.frame_done();
                }
            } else {
                let n = (FRAME_HEADER - self.have).min(bytes.len());
                self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == FRAME_HEADER {
                    self.have = 0;
                    let h = self.head;
                    self.payload = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                    let (kind, flags) = (h[3], h[4]);
                    self.ends_block = false;
                    if kind == HEADERS || kind == CONTINUATION {
                        self.in_block = true;
                        self.ends_block = flags & END_HEADERS != 0;
                    }
                    if self.payload == 0 {
                        self.frame_done();
                    }
                }
            }
        }
        self.in_block || self.have > 0
    }

    fn frame_done(&mut self) {
        if self.ends_block {
            self.in_block = false;
            self.ends_block = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(kind: u8, flags: u8, len: usize) -> Vec<u8> {
        let mut f = (len as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags, 0, 0, 0, 1]);
        f.extend(vec![0u8; len]);
        f
    }

    #[test]
    fn a_header_block_is_open_from_its_first_frame_to_end_headers() {
        let mut scan = HeaderBlockScan::default();
        assert!(!scan.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        // SETTINGS, whole: nothing open.
        assert!(!scan.feed(&frame(0x4, 0, 6)));
        // A frame's header a byte at a time is open until it is in.
        let settings = frame(0x4, 0, 0);
        for b in &settings[..8] {
            assert!(scan.feed(&[*b]));
        }
        assert!(!scan.feed(&settings[8..]));
        // HEADERS with END_HEADERS: open only while its payload comes.
        let headers = frame(HEADERS, END_HEADERS, 20);
        assert!(scan.feed(&headers[..15]));
        assert!(!scan.feed(&headers[15..]));
        // HEADERS without it, then CONTINUATIONs: open until the one that ends it.
        assert!(scan.feed(&frame(HEADERS, 0, 10)));
        assert!(scan.feed(&frame(CONTINUATION, 0, 10)));
        // A frame of another type in the middle would be a protocol error for h2 to answer.
        assert!(!scan.feed(&frame(CONTINUATION, END_HEADERS, 0)));
        // DATA, however slow, is not a header block.
        let data = frame(0x0, 0, 100);
        assert!(!scan.feed(&data[..50]));
        assert!(!scan.feed(&data[50..]));
    }

    #[tokio::test]
    async fn a_burst_within_the_budget_passes_and_one_more_spends_it() {
        let budget = ResetBudget::new(3, 1);
        for _ in 0..3 {
            drop(budget.watch());
        }
        assert!(!budget.spent.load(Ordering::Acquire));
        // Answered streams cost nothing.
        for _ in 0..10 {
            budget.watch().answered();
        }
        assert!(!budget.spent.load(Ordering::Acquire));
        drop(budget.watch());
        tokio::time::timeout(Duration::from_secs(5), budget.spent())
            .await
            .expect("spent after one more cancelled stream than the burst");
        // Once spent, it stays spent for whoever asks again.
        tokio::time::timeout(Duration::from_secs(5), budget.spent())
            .await
            .unwrap();
    }

    #[test]
    fn the_budget_refills_with_time_up_to_the_burst() {
        let budget = ResetBudget::new(2, 10);
        {
            let mut b = budget.bucket.lock().unwrap();
            b.tokens = 0.0;
            // A second ago at 10 per second: 10 back, capped at the burst of 2.
            b.at = Instant::now() - Duration::from_secs(1);
        }
        drop(budget.watch());
        drop(budget.watch());
        assert!(!budget.spent.load(Ordering::Acquire));
        drop(budget.watch());
        assert!(budget.spent.load(Ordering::Acquire));
    }

    #[test]
    fn only_goaways_h2_sent_are_named() {
        let ours = h2::Error::from(h2::Reason::ENHANCE_YOUR_CALM);
        // A bare reason is how h2 reports a stream's error, not a GOAWAY it sent.
        assert_eq!(closed_with(&ours), None);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(closed_with(&io), None);
        for (reason, label) in [
            (
                h2::Reason::ENHANCE_YOUR_CALM,
                Http2ConnError::EnhanceYourCalm,
            ),
            (
                h2::Reason::COMPRESSION_ERROR,
                Http2ConnError::CompressionError,
            ),
            (h2::Reason::INTERNAL_ERROR, Http2ConnError::Other),
        ] {
            assert_eq!(reason_label(reason), label);
        }
    }
}
