//! The body of every response: a whole one (`Full`, almost all of them) or a stream of
//! Server-Sent Events ([`Events`], `GET /api/seckill/events`).
//!
//! An enum rather than a boxed body, so the common answer costs no allocation more than it did.
//! An event stream sends what its channel brings, a comment line (`: ping`) every
//! [`PING_EVERY`] so proxies and the client notice a dead connection, and ends when the channel's
//! sender is dropped (the push hub dropped the shopper: gone, or not reading). While it is open
//! the connection counts as busy: the slow-client watchdog (`http::conn`) does not take it for
//! an idle one, and is told the request is done when the stream ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::conn::Phase;

/// How often an open event stream sends a comment line when nothing else happens.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// The longest an event stream lives (plus up to a minute, at random, so streams opened together
/// do not end together). A browser reconnects by itself a second later and gets the state
/// afresh; a client that opened streams and stopped reading loses them. A stalled reader is not
/// seen by the socket's watchdog when only pings are sent: 15 bytes every 15 s never fill the
/// kernel's buffers, so the stream's age is what bounds it (security review, row 2).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(600);

/// A response body.
pub enum Body {
    Full(Full<Bytes>),
    Events(Events),
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Full::new(bytes.into()))
    }
}

/// An open event stream: what the hub sends, pings in between; `on_end` runs when it is
/// dropped (the connection's watchdog is told the request is done, the hub forgets it).
pub struct Events {
    rx: mpsc::Receiver<Bytes>,
    ping: tokio::time::Interval,
    /// When the stream ends by itself ([`STREAM_MAX_AGE`]), looked at on each ping.
    ends_at: tokio::time::Instant,
    phase: Option<Arc<Phase>>,
    on_end: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Events {
    pub fn new(rx: mpsc::Receiver<Bytes>, on_end: Box<dyn FnOnce() + Send + Sync>) -> Self {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let jitter = Duration::from_millis(rand::random_range(0..60_000));
        Self {
            rx,
            ping,
            ends_at: tokio::time::Instant::now() + STREAM_MAX_AGE + jitter,
            phase: None,
            on_end: Some(on_end),
        }
    }

    /// Keeps the connection busy while the stream is open (see the module comment).
    pub fn hold(&mut self, phase: Arc<Phase>) {
        phase.request_started();
        self.phase = Some(phase);
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(p) = self.phase.take() {
            p.request_done();
        }
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Events(e) => {
                if let Poll::Ready(next) = e.rx.poll_recv(cx) {
                    return Poll::Ready(next.map(|b| Ok(Frame::data(b))));
                }
                match e.ping.poll_tick(cx) {
                    Poll::Ready(now) if now >= e.ends_at => Poll::Ready(None),
                    Poll::Ready(_) => {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Events(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn an_event_stream_ends_by_itself_after_its_longest_life() {
        let (_tx, rx) = mpsc::channel(4);
        let mut body = Body::Events(Events::new(rx, Box::new(|| {})));
        let started = tokio::time::Instant::now();
        let mut pings = 0;
        while let Some(frame) = body.frame().await {
            assert_eq!(frame.unwrap().into_data().unwrap(), ": ping\n\n");
            pings += 1;
            assert!(pings < 100, "the stream never ended");
        }
        let lived = started.elapsed();
        assert!(lived >= STREAM_MAX_AGE, "{lived:?}");
        assert!(lived <= STREAM_MAX_AGE + Duration::from_secs(60) + PING_EVERY);
    }
}
