//! A scripted HTTP/1 target on raw TCP: the test's script reads the request bytes and writes the
//! exact response bytes, so that answers no real server library would produce (trailers, 1xx,
//! close-delimited bodies, bytes after the end, malformed heads, a close at the wrong moment)
//! reach seawall's client side as they would from a buggy or hostile target.
//!
//! Health checks (ALB's health-checker User-Agent) come on connections of their own: they are
//! answered `200` and closed before any script runs, and are neither numbered nor recorded, so a
//! script sees seawall's forwarded traffic only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request head a script read.
#[derive(Debug, Clone)]
pub struct Head {
    /// Which proxied connection carried it, numbered from 0 in the order their first head came.
    pub conn: usize,
    pub method: String,
    /// The request target, as sent.
    pub path: String,
    /// The head's text, request line to the blank line.
    pub text: String,
}

impl Head {
    /// The value of the first header `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

/// What a scripted target recorded: every proxied request head, and notes its scripts left.
#[derive(Default)]
struct Log {
    heads: Mutex<Vec<Head>>,
    notes: Mutex<Vec<String>>,
}

/// A target on 127.0.0.1:0 that runs a script on each proxied connection. Stopped, with its
/// connections, when dropped.
pub struct Scripted {
    pub addr: SocketAddr,
    log: Arc<Log>,
    task: tokio::task::JoinHandle<()>,
}

/// One proxied connection, as a script drives it.
pub struct Conn {
    /// Numbered from 0, in the order the connections' first heads came.
    pub id: usize,
    tcp: TcpStream,
    /// Read and not yet consumed by the script.
    buf: Vec<u8>,
    log: Arc<Log>,
}

const PROBE_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

impl Scripted {
    /// A target running `script` on each connection seawall opens for proxied requests.
    pub async fn start<F, Fut>(script: F) -> Scripted
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let log2 = log.clone();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            let next_id = Arc::new(AtomicUsize::new(0));
            // Owned by the accept task, so that dropping the target closes its connections too.
            let mut open = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                while open.try_join_next().is_some() {}
                let (script, log, next_id) = (script.clone(), log2.clone(), next_id.clone());
                open.spawn(async move {
                    let mut c = Conn {
                        id: usize::MAX,
                        tcp,
                        buf: Vec::new(),
                        log,
                    };
                    // The first head says whose connection it is; it stays in the buffer for the
                    // script to read.
                    if !c.fill_until_head().await {
                        return;
                    }
                    let head = String::from_utf8_lossy(&c.buf).to_ascii_lowercase();
                    if head.contains("\r\nuser-agent: elb-healthchecker") {
                        let _ = c.tcp.write_all(PROBE_ANSWER).await;
                        return;
                    }
                    c.id = next_id.fetch_add(1, Ordering::SeqCst);
                    script(c).await;
                });
            }
        });
        Scripted { addr, log, task }
    }

    /// Every proxied request head the scripts read, in order.
    pub fn heads(&self) -> Vec<Head> {
        self.log.heads.lock().unwrap().clone()
    }

    /// (connection, request target) of every proxied request, in order: which connection each
    /// request came on is what shows whether seawall reused one.
    pub fn seen(&self) -> Vec<(usize, String)> {
        self.heads().into_iter().map(|h| (h.conn, h.path)).collect()
    }

    /// The notes the scripts left, in order.
    pub fn notes(&self) -> Vec<String> {
        self.log.notes.lock().unwrap().clone()
    }

    /// Whether a script has left `note`.
    pub fn noted(&self, note: &str) -> bool {
        self.notes().iter().any(|n| n == note)
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// Reads until the buffer holds a whole head; false when the connection ended first.
    async fn fill_until_head(&mut self) -> bool {
        while !self.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if !self.fill().await {
                return false;
            }
        }
        true
    }

    /// Reads more into the buffer; false at the end of the connection (or an error).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next request head (recorded), its body left unread; `None` when the connection ends
    /// first.
    pub async fn request(&mut self) -> Option<Head> {
        if !self.fill_until_head().await {
            return None;
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let mut line = text.lines().next().unwrap_or("").split(' ');
        let head = Head {
            conn: self.id,
            method: line.next().unwrap_or("").to_string(),
            path: line.next().unwrap_or("").to_string(),
            text,
        };
        self.log.heads.lock().unwrap().push(head.clone());
        Some(head)
    }

    /// The request body `head` announces (by Content-Length, or chunked, decoded; trailers
    /// skipped), read whole; `None` when the connection ends first or the chunks are malformed.
    pub async fn body(&mut self, head: &Head) -> Option<Vec<u8>> {
        if head.chunked() {
            return self.chunked_body().await.map(|(body, _)| body);
        }
        let len = head.content_length().unwrap_or(0);
        while self.buf.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..len).collect())
    }

    /// A chunked body, decoded, and its trailer lines as sent; `None` when the connection ends
    /// first or the chunks are malformed.
    pub async fn chunked_body(&mut self) -> Option<(Vec<u8>, Vec<String>)> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).ok()?;
            if size == 0 {
                // Trailer lines, up to the blank one.
                let mut trailers = Vec::new();
                loop {
                    let line = self.line().await?;
                    if line.is_empty() {
                        return Some((body, trailers));
                    }
                    trailers.push(line);
                }
            }
            while self.buf.len() < size + 2 {
                if !self.fill().await {
                    return None;
                }
            }
            body.extend(self.buf.drain(..size));
            if self.buf.drain(..2).as_slice() != b"\r\n" {
                return None;
            }
        }
    }

    /// One CRLF-ended line, without its end.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads exactly `n` more bytes (what a tunnel carries, say); `None` if the connection ends
    /// first.
    pub async fn read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Writes `bytes` as one write (one segment on loopback, for what fits); false if the
    /// connection is gone.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// Reads and throws away whatever comes until the peer closes the connection (true) or
    /// `wait` passes (false): a server's lingering close, or a check that seawall let go of it.
    /// What was read is kept, for [`Conn::drained`].
    pub async fn until_closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return false,
                Ok(false) => return true,
                Ok(true) => {}
            }
        }
    }

    /// The bytes read and not consumed as a head or body.
    pub fn drained(&self) -> &[u8] {
        &self.buf
    }

    /// Leaves a note the test reads with [`Scripted::notes`].
    pub fn note(&self, note: impl Into<String>) {
        self.log.notes.lock().unwrap().push(note.into());
    }
}
