//! Per-connection timing: which requests are in flight, since when the connection has been idle, and
//! the request-head deadline.
//!
//! hyper's own `header_read_timeout` also bounds the idle gap between keep-alive requests, which
//! would close idle connections after `header_timeout` instead of `idle_timeout`. So seawall tracks
//! the two separately: the head deadline starts at the first byte of a request head (seen here, in
//! the IO wrapper) and ends when hyper hands the parsed request to the service.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::framing::{self, Lookalike, RawHead};
use super::h2_limits::HeaderBlockScan;

/// Where a connection is between requests; kept in an `AtomicU8`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A request head is arriving (HTTP/1 only).
    Head,
    /// A request is being served.
    Busy,
}

// Only ever stored as `Phase as u8` (likewise `Park`), so the catch-all arm is exact.
impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Idle,
            1 => Phase::Head,
            _ => Phase::Busy,
        }
    }
}

/// Where a connection is in being parked (see `HeadGuard`); kept in an `AtomicU8`.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Park {
    None,
    /// The driver wants hyper's connection ended at the next idle read.
    Asked,
    /// The IO wrapper ended it.
    Parked,
}

impl Park {
    fn from_u8(v: u8) -> Park {
        match v {
            0 => Park::None,
            1 => Park::Asked,
            _ => Park::Parked,
        }
    }
}

/// A [`RawHead`] in one atomic word, so that the service can take it without a lock. 0 means no
/// head was scanned; a scanned one sets `SCANNED` even if it saw nothing of note.
fn pack(raw: RawHead) -> u64 {
    const SCANNED: u64 = 1 << 32;
    SCANNED
        | u64::from(raw.lookalike) << 25
        | u64::from(raw.bare_lf) << 24
        | u64::from(raw.host) << 16
        | u64::from(raw.content_length) << 8
        | u64::from(raw.transfer_encoding)
}

fn unpack(bits: u64) -> Option<RawHead> {
    (bits != 0).then_some(RawHead {
        content_length: (bits >> 8) as u8,
        transfer_encoding: bits as u8,
        host: (bits >> 16) as u8,
        bare_lf: bits & 1 << 24 != 0,
        lookalike: bits & 1 << 25 != 0,
    })
}

/// Shared between a connection's IO wrapper, its service and its driver.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// A [`Phase`]. Only HTTP/1 uses `Head`; its requests never overlap, so the phase is exact
    /// there.
    phase: AtomicU8,
    /// Milliseconds after `epoch` at which the connection last became idle.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// What the IO wrapper saw of the raw HTTP/1 request head being served (packed, see [`pack`]):
    /// hyper repairs some framings before seawall sees the request (it drops the Content-Length
    /// of a head that also has Transfer-Encoding), so only the raw bytes tell.
    raw_head: AtomicU64,
    /// The connection was handed over to a protocol upgrade (WebSocket): its bytes are no longer
    /// HTTP, so no head limits apply.
    upgraded: AtomicBool,
    /// The connection is draining: the next HTTP/1 response says `Connection: close`.
    closing: AtomicBool,
    /// A [`Park`].
    park: AtomicU8,
    /// Response bodies that have chunks ready for the client: from the first chunk a body
    /// hands hyper until it waits for its target again (or ends). While one does, the socket's
    /// writes are the client's progress.
    handed: AtomicUsize,
    /// Milliseconds after `epoch` at which `handed` last rose from zero.
    handed_since_ms: AtomicU64,
    /// Milliseconds after `epoch` at which bytes last went to the client's socket.
    written_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            phase: AtomicU8::new(Phase::Idle as u8),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            raw_head: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            park: AtomicU8::new(Park::None as u8),
            handed: AtomicUsize::new(0),
            handed_since_ms: AtomicU64::new(0),
            written_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_millis() as u64
    }

    /// A response body handed hyper a chunk after waiting for its target (or at its start);
    /// [`Activity::taken`] once it waits again, ends or is dropped.
    pub fn handed(&self) {
        if self.handed.fetch_add(1, Ordering::AcqRel) == 0 {
            self.handed_since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// See [`Activity::handed`].
    pub fn taken(&self) {
        self.handed.fetch_sub(1, Ordering::AcqRel);
    }

    /// Since when the client has been holding up a response: a body has chunks ready, and
    /// nothing has gone to the client's socket since. `None` while every response is waiting
    /// on its target, or none is under way.
    ///
    /// A client that stops reading (or, over HTTP/2, stops granting flow-control window) is
    /// what this catches, whatever it sends meanwhile: what it has asked for no longer moves.
    pub fn stalled_since(&self) -> Option<Instant> {
        if self.handed.load(Ordering::Acquire) == 0 {
            return None;
        }
        let since = self
            .handed_since_ms
            .load(Ordering::Acquire)
            .max(self.written_ms.load(Ordering::Acquire));
        Some(self.epoch + Duration::from_millis(since))
    }

    /// Bytes went to the client's socket.
    pub fn wrote(&self) {
        self.written_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Marks a request as in flight until the guard drops (when its response body is done or
    /// abandoned).
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.begin_unguarded();
        RequestGuard(self.clone())
    }

    /// [`Activity::begin_request`] for what cannot hold the guard: a request body inside the
    /// target exchange, which outlives its response when the target answers before reading all
    /// of it, and whose type the server does not know. Each call is matched by one
    /// [`Activity::end_unguarded`].
    pub fn begin_unguarded(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.phase.store(Phase::Busy as u8, Ordering::Release);
    }

    /// See [`Activity::begin_unguarded`].
    pub fn end_unguarded(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.phase.store(Phase::Idle as u8, Ordering::Release);
        }
    }

    /// When the connection last became idle; `None` while a request is in flight.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.epoch + since)
    }

    /// Asks that the connection close after its next (or current) HTTP/1 response.
    pub fn ask_to_close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// What the scan of the current request's raw head saw; `None` when it was not scanned
    /// (HTTP/2, or an HTTP/1 head hyper had already buffered). Reading clears it, so that a
    /// request whose head was not scanned never gets the previous request's.
    pub fn take_raw_head(&self) -> Option<RawHead> {
        unpack(self.raw_head.swap(0, Ordering::AcqRel))
    }

    /// Called before a 101 answer goes out, so that the bytes after it are left alone.
    pub fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Asks the IO wrapper to end hyper's HTTP/1 connection, without closing the socket, the next
    /// time hyper waits for a request on it with nothing unsent (see [`HeadGuard`]).
    pub fn ask_to_park(&self) {
        let _ = self.park.compare_exchange(
            Park::None as u8,
            Park::Asked as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether hyper's connection ended because the IO wrapper parked it.
    pub fn parked(&self) -> bool {
        Park::from_u8(self.park.load(Ordering::Acquire)) == Park::Parked
    }

    /// Called by the IO wrapper when hyper would wait for the next request: parks the connection
    /// if that was asked for.
    fn park_now(&self) -> bool {
        self.park
            .compare_exchange(
                Park::Asked as u8,
                Park::Parked as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Clears the park state once the parked connection's IO is back with the driver.
    pub fn unpark(&self) {
        self.park.store(Park::None as u8, Ordering::Release);
    }
}

/// See [`Activity::begin_request`].
#[derive(Debug)]
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_unguarded();
    }
}

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 Request Timeout\n";
const TOO_LARGE_RESPONSE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\n\r\n431 Request Header Fields Too Large\n";
const URI_TOO_LONG_RESPONSE: &[u8] = b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain\r\ncontent-length: 17\r\nconnection: close\r\n\r\n414 URI Too Long\n";

/// ALB's limit on the request line (method, target and version, without the line end); past it,
/// 414. A fixed limit, as ALB's: unlike the head size, it is not a setting.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// Why the IO wrapper answered a request head itself. It reaches hyper, and the server's logs, as
/// the read error that ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum HeadRejection {
    #[error("request head not received within header_timeout")]
    Timeout,
    #[error("request head larger than max_header_bytes")]
    TooLarge,
    #[error("request line longer than {MAX_REQUEST_LINE} bytes")]
    LineTooLong,
}

impl HeadRejection {
    fn answer(self) -> &'static [u8] {
        match self {
            HeadRejection::Timeout => TIMEOUT_RESPONSE,
            HeadRejection::TooLarge => TOO_LARGE_RESPONSE,
            HeadRejection::LineTooLong => URI_TOO_LONG_RESPONSE,
        }
    }
}

/// What an HTTP/1 connection's request heads are held to.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// From a head's first byte to its end; then 408.
    pub timeout: Duration,
    /// The whole head, request line included; past it, 431.
    pub max_bytes: usize,
}

/// Watches the raw bytes of HTTP/1 request heads as they are read, before hyper parses them:
///
/// - the head deadline (`header_timeout`, from the first byte of a head to its end);
/// - the head size (`max_header_bytes`; hyper's own buffer limit is only approximate);
/// - the request line's length ([`MAX_REQUEST_LINE`]): hyper has no limit of its own on it, and
///   answers 431 only once an unfinished head fills its buffer;
/// - what `server::framing` weighs against what hyper parsed (recorded in [`Activity`]): the
///   Content-Length and Transfer-Encoding lines (hyper accepts both together by silently
///   dropping the Content-Length, so the request handler could not see it), the Host lines,
///   names that resemble a framing header, and lines ended by a bare LF.
///
/// When the deadline or a size is exceeded, the wrapper writes the 408, 431 or 414 answer itself
/// and then fails the read, which makes hyper close the connection.
///
/// Heads that hyper already holds in its buffer when the previous request ends (pipelining) are
/// not scanned. Such a request is still forwarded unambiguously: hyper decodes it as chunked only
/// and closes the connection after it.
///
/// It also parks idle keep-alive connections. hyper's HTTP/1 connection holds two 8 KiB buffers
/// for as long as it lives, idle or not, which would make an idle client connection cost about
/// three times what nginx or HAProxy spend on one. Asked to park ([`Activity::ask_to_park`]), the
/// wrapper answers hyper's next read with end-of-file, but only when no request is under way,
/// nothing written is waiting to be flushed and the socket has nothing to read. hyper takes that
/// for the client closing between requests and ends the connection; its shutdown is not passed
/// on, so the socket stays open. The driver then waits on the bare socket and starts a new hyper
/// connection when the client's next bytes arrive, which are handed to hyper first
/// ([`HeadGuard::unread`]).
pub struct HeadGuard<S> {
    inner: S,
    activity: Arc<Activity>,
    /// `None` for HTTP/2 connections, where none of this applies.
    limits: Option<HeadLimits>,
    /// HTTP/2 only: where header blocks begin and end, and how long one may take
    /// (`header_timeout`), the deadline in `deadline`.
    h2_heads: Option<(HeaderBlockScan, Duration)>,
    deadline: Option<Pin<Box<Sleep>>>,
    scan: HeadScan,
    /// The limit exceeded, and how much of its canned answer is out.
    rejecting: Option<(HeadRejection, usize)>,
    /// Bytes already taken from the socket that hyper has not read yet: what the last hyper
    /// connection had buffered, and the first bytes read while the connection was parked.
    unread: Bytes,
    /// Something was written and not flushed since: hyper may still hold bytes of its own.
    unflushed: bool,
}

impl<S> HeadGuard<S> {
    pub fn new(inner: S, activity: Arc<Activity>, limits: Option<HeadLimits>) -> Self {
        HeadGuard {
            inner,
            activity,
            limits,
            h2_heads: None,
            deadline: None,
            scan: HeadScan::default(),
            rejecting: None,
            unread: Bytes::new(),
            unflushed: false,
        }
    }

    /// For an HTTP/2 connection: a header block that takes longer than `timeout` from its first
    /// byte fails the read, which makes hyper close the connection.
    pub fn watch_h2_headers(&mut self, timeout: Duration) {
        self.h2_heads = Some((HeaderBlockScan::default(), timeout));
    }

    /// Puts bytes back in front of the socket's: the next reads return them first.
    pub fn unread(&mut self, bytes: Bytes) {
        debug_assert!(self.unread.is_empty());
        self.unread = bytes;
    }

    /// Whether bytes put back are waiting for hyper.
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }
}

/// How many bytes a parked connection reads to learn that its client is sending again; hyper
/// reads the rest of the request itself.
const WAKE_READ: usize = 64;

impl<S: AsyncRead + Unpin> HeadGuard<S> {
    /// While parked: waits for the client's next bytes and keeps them for hyper (at once when
    /// some are already waiting). `Ok(false)` when the client closed the connection instead.
    pub async fn wait_for_request(&mut self) -> io::Result<bool> {
        if self.has_unread() {
            return Ok(true);
        }
        let mut buf = [0u8; WAKE_READ];
        let n = tokio::io::AsyncReadExt::read(&mut self.inner, &mut buf).await?;
        self.unread = Bytes::copy_from_slice(&buf[..n]);
        Ok(n > 0)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> HeadGuard<S> {
    fn poll_reject(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let (rejection, written) = self.rejecting.as_mut().expect("set before rejecting");
        let (rejection, answer) = (*rejection, rejection.answer());
        while *written < answer.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..])) {
                Ok(0) | Err(_) => break,
                Ok(n) => *written += n,
            }
        }
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::InvalidData, rejection))
    }

    fn reject(&mut self, cx: &mut Context<'_>, rejection: HeadRejection) -> Poll<io::Result<()>> {
        self.deadline = None;
        self.rejecting = Some((rejection, 0));
        self.poll_reject(cx).map(Err)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rejecting.is_some() {
            return this.poll_reject(cx).map(Err);
        }
        if this.h2_heads.is_some() {
            return this.poll_read_h2(cx, buf);
        }
        let upgraded = this.activity.upgraded.load(Ordering::Acquire);
        let Some(limits) = this.limits.filter(|_| !upgraded) else {
            return this.poll_read_inner(cx, buf);
        };
        let before = buf.filled().len();
        match this.poll_read_inner(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    // The client is sending: a park asked for before this no longer applies.
                    let _ = this.activity.park.compare_exchange(
                        Park::Asked as u8,
                        Park::None as u8,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                match this.activity.phase() {
                    Phase::Idle if !new.is_empty() => {
                        // First bytes of a new request head: start its clock and its scan.
                        this.activity
                            .phase
                            .store(Phase::Head as u8, Ordering::Release);
                        this.activity.raw_head.store(0, Ordering::Release);
                        this.deadline = Some(Box::pin(tokio::time::sleep(limits.timeout)));
                        this.scan = HeadScan::default();
                    }
                    Phase::Busy => this.deadline = None,
                    _ => {}
                }
                if this.deadline.is_some() {
                    match this.scan.feed(new, limits.max_bytes) {
                        Scan::Incomplete => {}
                        Scan::End(raw) => {
                            this.activity.raw_head.store(pack(raw), Ordering::Release);
                        }
                        Scan::TooLarge => return this.reject(cx, HeadRejection::TooLarge),
                        Scan::LineTooLong => return this.reject(cx, HeadRejection::LineTooLong),
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let phase = this.activity.phase();
                // hyper may hold the start of a pipelined request it has not parsed: the
                // end-of-file makes it give up on that one without answering, and the bytes
                // come back to the driver with the connection (`into_parts`), which hands them
                // to the next hyper connection at once.
                if phase == Phase::Idle && !this.unflushed && this.activity.park_now() {
                    // End of file for hyper; the socket stays open (see the type's comment).
                    return Poll::Ready(Ok(()));
                }
                if phase != Phase::Head {
                    this.deadline = None;
                }
                if let Some(d) = &mut this.deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        return this.reject(cx, HeadRejection::Timeout);
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> HeadGuard<S> {
    /// An HTTP/2 connection's read: the header-block deadline, and nothing else of HTTP/1's.
    fn poll_read_h2(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some((scan, timeout)) = &mut self.h2_heads else {
            unreachable!("only called for HTTP/2 connections");
        };
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    if !scan.feed(new) {
                        self.deadline = None;
                    } else if self.deadline.is_none() {
                        self.deadline = Some(Box::pin(tokio::time::sleep(*timeout)));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(d) = &mut self.deadline {
                    if d.as_mut().poll(cx).is_ready() {
                        self.deadline = None;
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            HeadRejection::Timeout,
                        )));
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }

    /// Reads what was put back first, then the socket. Once parked, hyper gets end-of-file.
    fn poll_read_inner(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.activity.parked() {
            return Poll::Ready(Ok(()));
        }
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// The result of feeding bytes to a [`HeadScan`].
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Incomplete,
    /// The empty line that ends the head has been read (bytes after it are not looked at).
    End(RawHead),
    TooLarge,
    /// The request line is longer than [`MAX_REQUEST_LINE`].
    LineTooLong,
}

/// An incremental, allocation-free scan of one request head: where it ends, how long it is, and
/// the facts of [`RawHead`]. It does not parse HTTP (hyper does); it only needs line boundaries
/// and the first bytes of header names, which it matches as they go by, so that most lines are
/// skipped from their first byte on. Lines may end in LF alone, as hyper accepts.
#[derive(Debug)]
pub struct HeadScan {
    /// Past the empty lines a client may send before a request line (hyper skips them).
    started: bool,
    len: usize,
    /// Lines finished so far; line 0 is the request line.
    lines: usize,
    /// Bytes of the current line, CR not counted (except in the request line and past the
    /// names, where only `column == 0` matters, and the request line's length).
    column: usize,
    /// The request line's last byte so far was a CR, which its length does not count when the
    /// line ends right after it.
    line_cr: bool,
    /// The last byte was a CR (for the bare LF check).
    cr: bool,
    /// Still in the current header line's name, which may still be one the scan counts.
    naming: bool,
    /// The name so far is, or resembles, Content-Length / Transfer-Encoding.
    cl: Lookalike,
    te: Lookalike,
    /// The name so far is a prefix of `host`.
    maybe_host: bool,
    seen: RawHead,
}

const HOST: &[u8] = b"host";

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            started: false,
            len: 0,
            lines: 0,
            column: 0,
            line_cr: false,
            cr: false,
            naming: false,
            cl: Lookalike::new(framing::CONTENT_LENGTH),
            te: Lookalike::new(framing::TRANSFER_ENCODING),
            maybe_host: false,
            seen: RawHead::default(),
        }
    }
}

impl HeadScan {
    pub fn feed(&mut self, bytes: &[u8], max_bytes: usize) -> Scan {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if !self.started {
                if b == b'\r' || b == b'\n' {
                    i += 1;
                    continue;
                }
                self.started = true;
            }
            // Inside a line that can no longer be either name (the request line included): jump
            // to its end instead of looking at every byte.
            if self.column > 0 && !self.naming {
                let rest = &bytes[i..];
                let n = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                if n > 0 {
                    // CRs are counted here too; only `column == 0` matters once past the names.
                    self.column += n;
                    self.cr = rest[n - 1] == b'\r';
                    if self.lines == 0 {
                        self.line_cr = self.cr;
                        // Checked before the head size, so that a long URI gets the answer
                        // that names it (414), not 431. The line end's CR may be in `column`.
                        if self.column > MAX_REQUEST_LINE + 1 {
                            return Scan::LineTooLong;
                        }
                    }
                    self.len += n;
                    if self.len > max_bytes {
                        return Scan::TooLarge;
                    }
                    i += n;
                    continue;
                }
            }
            i += 1;
            self.len += 1;
            if self.len > max_bytes {
                return Scan::TooLarge;
            }
            match b {
                b'\n' => {
                    self.seen.bare_lf |= !self.cr;
                    self.cr = false;
                    if self.column == 0 && self.lines > 0 {
                        return Scan::End(self.seen);
                    }
                    if self.lines == 0 && self.column - usize::from(self.line_cr) > MAX_REQUEST_LINE
                    {
                        return Scan::LineTooLong;
                    }
                    self.lines += 1;
                    self.column = 0;
                    self.naming = true;
                    self.cl = Lookalike::new(framing::CONTENT_LENGTH);
                    self.te = Lookalike::new(framing::TRANSFER_ENCODING);
                    self.maybe_host = true;
                }
                b'\r' => self.cr = true,
                _ => {
                    self.cr = false;
                    if self.naming {
                        self.name_byte(b);
                    }
                    self.column += 1;
                }
            }
        }
        Scan::Incomplete
    }

    /// A byte of a header line while its name may still be one that counts.
    fn name_byte(&mut self, b: u8) {
        // Most names (Accept, User-Agent, X-...) are told apart by their first byte: a letter or
        // digit other than c, t or h starts none of the three, nor anything that resembles one
        // (a lookalike may only lead with bytes that are neither). Leaving here spares the two
        // lookalike matchers a call per byte of every header.
        if self.column == 0 && b.is_ascii_alphanumeric() && !matches!(b | 0x20, b'c' | b't' | b'h')
        {
            self.naming = false;
            return;
        }
        if b == b':' {
            // The name is `column` bytes long (hyper refuses names with a CR in them).
            let (len, seen) = (self.column, &mut self.seen);
            if self.cl.is_exact(len) {
                seen.content_length = seen.content_length.saturating_add(1);
            }
            if self.te.is_exact(len) {
                seen.transfer_encoding = seen.transfer_encoding.saturating_add(1);
            }
            seen.lookalike |= self.cl.resembles(len) || self.te.resembles(len);
            if self.maybe_host && len == HOST.len() {
                seen.host = seen.host.saturating_add(1);
            }
            self.naming = false;
            return;
        }
        self.cl.feed(b);
        self.te.feed(b);
        self.maybe_host &= HOST.get(self.column) == Some(&b.to_ascii_lowercase());
        self.naming = self.cl.alive() || self.te.alive() || self.maybe_host;
    }
}

// hyper writes its buffered bytes and only then flushes the socket, so a flush that completes
// after the last write means hyper holds nothing unsent: only then may the connection be parked.
impl<S: AsyncWrite + Unpin> AsyncWrite for HeadGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.unflushed = false;
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parked() {
            // hyper ending a parked connection: the socket is not its to close.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stall_runs_from_the_first_chunk_ready_or_the_last_write_to_the_client() {
        let a = Activity::new();
        assert_eq!(a.stalled_since(), None, "nothing under way");
        a.wrote();
        tokio::time::advance(Duration::from_secs(5)).await;
        // A chunk after a long wait for the target: the client has not held anything up yet.
        a.handed();
        assert_eq!(a.stalled_since(), Some(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        a.wrote();
        let wrote_at = Instant::now();
        assert_eq!(a.stalled_since(), Some(wrote_at));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Another response with chunks ready does not restart the clock.
        a.handed();
        assert_eq!(a.stalled_since(), Some(wrote_at));
        a.taken();
        assert_eq!(a.stalled_since(), Some(wrote_at));
        a.taken();
        assert_eq!(a.stalled_since(), None, "both wait for their targets");
    }

    fn scan_all(chunks: &[&[u8]], max: usize) -> Scan {
        let mut scan = HeadScan::default();
        for c in chunks {
            match scan.feed(c, max) {
                Scan::Incomplete => {}
                done => return done,
            }
        }
        Scan::Incomplete
    }

    #[test]
    fn framing_headers_are_counted_in_raw_heads() {
        let both =
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        let body_only =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nContent-Length: 5\r\n\r\n";
        let lf = b"\r\nPOST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 5\n\n";
        let lookalike =
            b"POST / HTTP/1.1\r\nContent-Lengthy: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let seen = |content_length, transfer_encoding| {
            Scan::End(RawHead {
                content_length,
                transfer_encoding,
                ..RawHead::default()
            })
        };
        let conflict = seen(1, 1);
        let clean = seen(0, 1);
        assert_eq!(scan_all(&[both], 1024), conflict);
        assert_eq!(
            scan_all(&[body_only], 1024),
            clean,
            "body bytes are not the head"
        );
        let lf_conflict = Scan::End(RawHead {
            content_length: 1,
            transfer_encoding: 1,
            bare_lf: true,
            ..RawHead::default()
        });
        assert_eq!(scan_all(&[lf], 1024), lf_conflict);
        assert_eq!(scan_all(&[lookalike], 1024), clean);
        assert_eq!(scan_all(&[&both[..30]], 1024), Scan::Incomplete);
        let repeated = b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(scan_all(&[repeated], 1024), seen(2, 0));
        // Every way of cutting the head into chunks gives the same answer (the scanner skips the
        // rest of a line in one jump, so line ends inside and across chunks both matter).
        let long = b"POST /a-long-path?q=1 HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaa\r\nContent-Length: 5\r\nX-Other: transfer-encoding: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (head, want) in [
            (&both[..], &conflict),
            (&lookalike[..], &clean),
            (&long[..], &conflict),
        ] {
            for size in 1..head.len() {
                let chunks: Vec<&[u8]> = head.chunks(size).collect();
                assert_eq!(&scan_all(&chunks, 1024), want, "chunks of {size}");
            }
        }
        // Hosts, bare LFs and names that resemble a framing header, whichever way the head is cut.
        let odd =
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\nTransfer_Encoding: chunked\r\nhost: b\r\n\r\n";
        let odd_seen = Scan::End(RawHead {
            host: 2,
            bare_lf: true,
            lookalike: true,
            ..RawHead::default()
        });
        let plain =
            b"GET / HTTP/1.1\r\nHost: a\r\nHosts: b\r\nContent-Type: x\r\nX-Host: c\r\n\r\n";
        let plain_seen = Scan::End(RawHead {
            host: 1,
            ..RawHead::default()
        });
        let bare_end = b"GET / HTTP/1.1\r\nHost: a\r\n\n";
        let bare_end_seen = Scan::End(RawHead {
            host: 1,
            bare_lf: true,
            ..RawHead::default()
        });
        for (head, want) in [
            (&odd[..], &odd_seen),
            (&plain[..], &plain_seen),
            (&bare_end[..], &bare_end_seen),
        ] {
            for size in 1..=head.len() {
                let chunks: Vec<&[u8]> = head.chunks(size).collect();
                assert_eq!(&scan_all(&chunks, 1024), want, "chunks of {size}");
            }
        }
        let head_len = long.len() - 2;
        assert_eq!(scan_all(&[long], head_len - 1), Scan::TooLarge);
    }

    #[test]
    fn request_line_is_bounded_before_the_head() {
        let head = |uri_len: usize, eol: &str| {
            // `GET ` + `/aaa...` + ` HTTP/1.1`: 13 bytes around the target.
            let uri = format!("/{}", "a".repeat(uri_len - 1));
            format!("GET {uri} HTTP/1.1{eol}Host: a{eol}{eol}").into_bytes()
        };
        let line = |total: usize| total - 13;
        for eol in ["\r\n", "\n"] {
            let fits = head(line(MAX_REQUEST_LINE), eol);
            let over = head(line(MAX_REQUEST_LINE + 1), eol);
            for size in [1, 7, 4096, usize::MAX] {
                let chunks = |h: &[u8]| -> Vec<Vec<u8>> {
                    h.chunks(size.min(h.len())).map(<[u8]>::to_vec).collect()
                };
                let fed = |h: &[u8], max| {
                    let owned = chunks(h);
                    let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                    scan_all(&refs, max)
                };
                assert!(
                    matches!(fed(&fits, 1 << 20), Scan::End(_)),
                    "{eol:?} chunks of {size}"
                );
                assert_eq!(
                    fed(&over, 1 << 20),
                    Scan::LineTooLong,
                    "{eol:?} chunks of {size}"
                );
            }
        }
        // A line far over both limits names the line, not the head.
        let huge = head(100 * 1024, "\r\n");
        assert_eq!(scan_all(&[&huge], 64 * 1024), Scan::LineTooLong);
        // Long header lines are the head limit's business only.
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(matches!(
            scan_all(&[long_header.as_bytes()], 1 << 20),
            Scan::End(_)
        ));
    }

    #[test]
    fn head_size_is_bounded() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(scan_all(&[head], head.len()), Scan::End(_)));
        assert_eq!(scan_all(&[head], head.len() - 1), Scan::TooLarge);
        // Leading empty lines do not count.
        assert!(matches!(
            scan_all(&[b"\r\n\r\n", head], head.len()),
            Scan::End(_)
        ));
    }
}
