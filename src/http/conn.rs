//! Guarding connections against slow and greedy clients.
//!
//! A client that opens a connection and sends half a request header, or nothing at all, holds a
//! socket, a task and some memory for as long as the server lets it; a few thousand such
//! clients are a cheap denial of service ("slowloris"). Each connection is therefore served next
//! to a *watchdog* that knows which phase the connection is in and cuts it off when the phase
//! lasts too long:
//!
//! - **idle**: between requests (or after accepting, before the first byte): at most
//!   `idle_timeout_ms`;
//! - **head**: from the first byte of a request until its header is complete (hyper calls the
//!   service): at most `header_timeout_ms`;
//! - **busy**: a request is being answered. Its body is read under `body_timeout_ms` by the
//!   handler (`respond::json_body`), which answers 408 and closes the connection.
//! - **stalled**, in any phase: the socket has refused our bytes (its send buffer is full: the
//!   client stopped reading) for [`WRITE_STALL`]. An event stream is busy for as long as it is
//!   open, so without this a client that opens streams and never reads would hold each one
//!   forever; a stream writes a ping every 15 s, so a reader that stops is noticed within a
//!   minute.
//!
//! The phase is kept in a few atomics shared by the socket wrapper ([`Watched`], which sees bytes
//! arrive), the service (which sees a request start and end) and the watchdog. The watchdog is
//! never woken by a request (that would cost every request a task wake-up): it looks every half
//! of the shortest limit, so a client is cut at most half a limit late. Open connections are capped (`max_connections`): past the cap a
//! new connection is closed at once. Every cut is counted in `flashgate_connections_cut_total`
//! by reason.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits one connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

/// What the socket, the service and the watchdog of one connection share.
#[derive(Debug)]
pub struct Phase {
    born: Instant,
    /// ms since `born` when the connection last became idle (accepted, or a response done).
    idle_since: AtomicU64,
    /// ms since `born` + 1 when the first byte of the current request arrived; 0 if none yet.
    head_since: AtomicU64,
    /// A request is being answered.
    busy: AtomicBool,
    /// ms since `born` + 1 when a write was first refused (the socket's buffer full); 0 while
    /// writes go through.
    write_blocked_since: AtomicU64,
}

/// How long a socket may refuse our bytes before the connection is cut (`write_stalled`).
pub const WRITE_STALL: Duration = Duration::from_secs(45);

impl Phase {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            write_blocked_since: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Bytes arrived: if the connection was idle, a request's head has begun.
    fn bytes_arrived(&self) {
        if !self.busy.load(Relaxed) && self.head_since.load(Relaxed) == 0 {
            self.head_since.store(self.now_ms() + 1, Relaxed);
        }
    }

    /// A write was refused (`blocked`) or went through.
    fn wrote(&self, blocked: bool) {
        let since = self.write_blocked_since.load(Relaxed);
        match (blocked, since) {
            (true, 0) => self.write_blocked_since.store(self.now_ms() + 1, Relaxed),
            (false, s) if s != 0 => self.write_blocked_since.store(0, Relaxed),
            _ => {}
        }
    }

    /// hyper parsed a request's head and called the service.
    pub fn request_started(&self) {
        self.busy.store(true, Relaxed);
        self.head_since.store(0, Relaxed);
    }

    /// The service answered; the connection waits for the next request.
    pub fn request_done(&self) {
        self.idle_since.store(self.now_ms(), Relaxed);
        self.busy.store(false, Relaxed);
    }

    /// Returns when the connection has overstayed a phase, with the reason to count.
    pub async fn watch(&self, limits: Limits) -> &'static str {
        let every = limits.header.min(limits.idle) / 2;
        loop {
            tokio::time::sleep(every).await;
            if let Some(reason) = self.overstayed(limits) {
                return reason;
            }
        }
    }

    /// The phase the connection has overstayed now, if any.
    fn overstayed(&self, limits: Limits) -> Option<&'static str> {
        let now = self.now_ms();
        let blocked = self.write_blocked_since.load(Relaxed);
        if blocked != 0 && now >= blocked - 1 + WRITE_STALL.as_millis() as u64 {
            return Some("write_stalled");
        }
        if self.busy.load(Relaxed) {
            return None; // the handler bounds the body; the rest is our own work
        }
        match self.head_since.load(Relaxed) {
            0 => (now >= self.idle_since.load(Relaxed) + limits.idle.as_millis() as u64)
                .then_some("idle_timeout"),
            since => {
                (now >= since - 1 + limits.header.as_millis() as u64).then_some("header_timeout")
            }
        }
    }
}

/// A socket that tells its [`Phase`] when bytes arrive.
pub struct Watched<S> {
    inner: S,
    phase: Arc<Phase>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, phase: Arc<Phase>) -> Self {
        Self { inner, phase }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.phase.wrote(polled.is_pending());
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.phase.wrote(polled.is_pending());
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// How many connections each client address holds on one listener, capped: one address cannot
/// take the listener's connections (and the memory of their unfinished heads) from the rest.
pub struct PerAddress {
    cap: usize,
    held: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place in its address's share; given back when dropped.
pub struct AddressSlot {
    of: Arc<PerAddress>,
    address: std::net::IpAddr,
}

impl PerAddress {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            held: Default::default(),
        }
    }

    /// A place for one more connection of `address`, if its share is not all taken.
    pub fn take(self: &Arc<Self>, address: std::net::IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock().expect("per-address lock");
        let n = held.entry(address).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            of: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.of.held.lock().expect("per-address lock");
        if let Some(n) = held.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header: Duration::from_millis(1000),
        idle: Duration::from_millis(3000),
        body: Duration::from_millis(1000),
    };

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_cut_after_the_idle_limit() {
        let phase = Phase::new();
        let started = tokio::time::Instant::now();
        assert_eq!(phase.watch(LIMITS).await, "idle_timeout");
        assert!(started.elapsed() >= Duration::from_millis(3000));
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_header_is_cut_after_the_header_limit() {
        let phase = Phase::new();
        let watch = {
            let p = phase.clone();
            tokio::spawn(async move { p.watch(LIMITS).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        phase.bytes_arrived();
        assert_eq!(watch.await.unwrap(), "header_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_left_alone_and_idles_again_after() {
        let phase = Phase::new();
        phase.bytes_arrived();
        phase.request_started();
        let watch = {
            let p = phase.clone();
            tokio::spawn(async move { p.watch(LIMITS).await })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watch.is_finished(), "a request being answered was cut");
        phase.request_done();
        assert_eq!(watch.await.unwrap(), "idle_timeout");
    }

    #[test]
    fn one_address_holds_at_most_its_share_and_gets_it_back() {
        let per = Arc::new(PerAddress::new(2));
        let a: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        let b: std::net::IpAddr = "198.51.100.8".parse().unwrap();
        let (x, y) = (per.take(a).unwrap(), per.take(a).unwrap());
        assert!(per.take(a).is_none());
        assert!(
            per.take(b).is_some(),
            "another address is not held to a's share"
        );
        drop(x);
        assert!(per.take(a).is_some());
        drop(y);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_whose_client_stopped_reading_is_cut() {
        let phase = Phase::new();
        phase.request_started(); // an event stream: busy for as long as it is open
        let watch = {
            let p = phase.clone();
            tokio::spawn(async move { p.watch(LIMITS).await })
        };
        // writes refused, then through again: not cut
        phase.wrote(true);
        tokio::time::sleep(WRITE_STALL / 2).await;
        phase.wrote(false);
        tokio::time::sleep(WRITE_STALL).await;
        assert!(!watch.is_finished(), "a reader that caught up was cut");
        phase.wrote(true);
        tokio::time::sleep(WRITE_STALL + Duration::from_secs(1)).await;
        assert_eq!(watch.await.unwrap(), "write_stalled");
    }
}
