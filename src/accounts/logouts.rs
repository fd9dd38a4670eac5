//! Recent logouts: the fingerprints of the tokens logged out within [`LOGOUT_KEEP`], so that a
//! buy, which reads no session, still refuses a token logged out after its path was issued.
//!
//! Why a buy reads no session: the path request (which does read it) binds the hidden path to
//! the session's token (`domain::HiddenPath::bound_to`), and `lua/admit.lua` checks the binding
//! in the call it makes anyway, so holding the token *and* the path issued to it is what a buy
//! proves, on whichever edge it lands, without a `GETEX` first. What a session read also told
//! (that the session still exists) comes from here:
//! - a logout records the token's fingerprint in a Redis sorted set ([`Keys::logouts`], scored by
//!   time) and announces the token on the logout channel; every edge adds it to its [`Logouts`]
//!   as the message arrives (milliseconds), and an edge that (re)subscribes reads the set back
//!   after subscribing, so a logout made while it was away or starting is not missed;
//! - while an edge is not subscribed (starting, or its subscription broke) its list is not
//!   trusted ([`Logouts::logged_out`] answers `None`) and the buy reads the session as before;
//!   likewise if the list ever held [`CAPACITY`] logouts;
//! - [`LOGOUT_KEEP`] is enough: a logged-out token gets no new path (the path request reads the
//!   session), and a path lives [`crate::plumbing::keys::PATH_TTL`] from its issue.
//!
//! A session that expires, or is deleted by hand rather than by logout, stops buys when the
//! paths bound to it expire: within `PATH_TTL` (60 s).

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;

use crate::domain::TokenPrint;
use crate::error::AppError;
use crate::plumbing::clock::now_ms;
use crate::plumbing::keys::{Keys, LOGOUT_KEEP};

/// Most logouts an edge remembers; past that it stops trusting the list (buys read the session)
/// until the tidy-up brings it under. About 50 bytes each.
pub const CAPACITY: usize = 1_000_000;

/// Records a logout in Redis, so edges that subscribe later learn of it (the announcement on
/// the logout channel is `accounts::session::delete`'s). Trims what is past [`LOGOUT_KEEP`].
pub async fn record<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    print: TokenPrint,
) -> Result<(), AppError> {
    let (key, now) = (keys.logouts(), now_ms());
    let keep = LOGOUT_KEEP.as_millis() as i64;
    let _: () = redis::pipe()
        .zadd(&key, print.to_string(), now)
        .ignore()
        .zrembyscore(&key, "-inf", now - keep)
        .ignore()
        .pexpire(&key, keep)
        .ignore()
        .query_async(con)
        .await?;
    Ok(())
}

/// The logouts Redis remembers, each with how long ago it was.
pub async fn recent<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
) -> redis::RedisResult<Vec<(TokenPrint, Duration)>> {
    let now = now_ms();
    let held: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(keys.logouts())
        .arg(now - LOGOUT_KEEP.as_millis() as i64)
        .arg("+inf")
        .arg("WITHSCORES")
        .query_async(con)
        .await?;
    Ok(held
        .into_iter()
        .filter_map(|(p, at)| {
            let ago = Duration::from_millis(now.saturating_sub(at).max(0) as u64);
            TokenPrint::parse(&p).map(|p| (p, ago))
        })
        .collect())
}

/// This edge's copy of the recent logouts (see the module comment). A lock-free map: a buy
/// looks a token up without waiting for anything.
#[derive(Debug, Default)]
pub struct Logouts {
    prints: papaya::HashMap<TokenPrint, Instant>,
    /// True only while this edge is subscribed to the logouts (and has read the set back).
    live: AtomicBool,
}

impl Logouts {
    /// `Some(true)` if this token logged out lately, `Some(false)` if not, `None` when the list
    /// cannot be trusted (not subscribed, or full): then the session must be read.
    pub fn logged_out(&self, print: TokenPrint) -> Option<bool> {
        self.trusted()
            .then(|| self.prints.pin().contains_key(&print))
    }

    /// True while this edge trusts its list (subscribed, and not full).
    pub fn trusted(&self) -> bool {
        self.live.load(SeqCst) && self.prints.len() < CAPACITY
    }

    /// A logout heard (or made) on this edge.
    pub fn add(&self, print: TokenPrint) {
        self.prints.pin().insert(print, Instant::now());
    }

    /// The subscription is up and `recent` was read after it: trust the list from now on.
    pub fn subscribed(&self, recent: Vec<(TokenPrint, Duration)>) {
        let prints = self.prints.pin();
        for (print, ago) in recent {
            let at = Instant::now().checked_sub(ago).unwrap_or_else(Instant::now);
            prints.insert(print, at);
        }
        self.live.store(true, SeqCst);
    }

    /// The subscription broke (or is not up yet): messages may be missed, so stop trusting.
    pub fn unsubscribed(&self) {
        self.live.store(false, SeqCst);
    }

    /// Drops the logouts past [`LOGOUT_KEEP`]. Walks every entry: run it off the async workers.
    pub fn tidy(&self) {
        self.prints.pin().retain(|_, at| at.elapsed() < LOGOUT_KEEP);
    }

    /// How many logouts are held.
    pub fn len(&self) -> usize {
        self.prints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_trusted_only_while_subscribed() {
        let l = Logouts::default();
        let (a, b) = (TokenPrint::of("a"), TokenPrint::of("b"));
        l.add(a);
        assert_eq!(
            l.logged_out(a),
            None,
            "not subscribed yet: read the session"
        );
        l.subscribed(vec![(b, Duration::from_secs(5))]);
        assert_eq!(l.logged_out(a), Some(true));
        assert_eq!(l.logged_out(b), Some(true), "read back from Redis");
        assert_eq!(l.logged_out(TokenPrint::of("c")), Some(false));
        l.unsubscribed();
        assert_eq!(l.logged_out(a), None);
    }

    #[test]
    fn old_logouts_go_at_the_tidy_up() {
        let l = Logouts::default();
        let (a, b) = (TokenPrint::of("a"), TokenPrint::of("b"));
        l.subscribed(vec![
            (a, LOGOUT_KEEP + Duration::from_secs(1)),
            (b, Duration::ZERO),
        ]);
        assert_eq!(l.len(), 2);
        l.tidy();
        assert_eq!(l.len(), 1);
        assert_eq!(l.logged_out(a), Some(false));
        assert_eq!(l.logged_out(b), Some(true));
    }
}
