//! Sessions: `sess:TOKEN` holds the user as JSON, with a sliding TTL ([`keys::SESSION_TTL`]).
//!
//! A token is a UUID handed out at login (HttpOnly cookie `token`, or `Authorization: Bearer`
//! for load tools). Looking a session up is one `GETEX … EX`, which reads it and slides its TTL
//! in one round trip. A token that is not shaped like one of ours is refused before Redis.
//!
//! A buy reads no session at all (its path is bound to the token: see [`super::logouts`]). For
//! the other requests (the path, the result polls, the room), Redis stays the source of truth,
//! but an edge keeps what it read in a [`SessionCache`] for up to `session_cache_ms` (30 s by
//! default), so a shopper's polls cost no session round trip. What bounds a stale answer:
//! - **logout** deletes the key, records the token's fingerprint among the recent logouts and
//!   publishes the token on [`Keys::session_channel`]; every edge drops it as the message
//!   arrives (milliseconds). An edge trusts its cache only while its
//!   subscription is up: it starts empty and unused, and is emptied whenever the subscription
//!   breaks, so a missed message can never keep a logged-out session alive.
//! - a revocation that arrives while a `GETEX` is in flight keeps that answer out of the cache
//!   (a generation counter, as for the sold-out flags);
//! - **expiry**: a session in use is read from Redis (and its TTL slid) at least once per
//!   `session_cache_ms`, so one that expired or was deleted by hand is seen within that bound.
//!
//! The cache is a lock-free map (`papaya`, resized a few entries per write), so filling it with
//! a crowd's sessions never stalls a request; the tidy-up that drops old copies walks it off the
//! async workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::domain::{TokenPrint, UserId};
use crate::error::AppError;
use crate::plumbing::keys::{self, Keys};
use crate::plumbing::metrics::Metrics;

/// The user a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: UserId,
    pub mobile: String,
    pub nickname: String,
    /// The shop's subject, for a shopper who came with the shop's token (`identity`); never
    /// stored in a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl SessionUser {
    /// Who the shopper is to the shop: its subject, or flashgate's user id.
    pub fn shop_subject(&self) -> String {
        self.subject.clone().unwrap_or_else(|| self.id.to_string())
    }
}

/// Tokens are UUIDs in simple form: 32 lowercase hex digits.
pub fn valid_token(token: &str) -> bool {
    crate::domain::lower_hex(token, 32)
}

/// Stores a new session for `user` and returns its token.
pub async fn create<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    user: &SessionUser,
) -> Result<String, AppError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let json = serde_json::to_string(user).map_err(anyhow::Error::from)?;
    let _: () = redis::cmd("SET")
        .arg(keys.session(&token))
        .arg(json)
        .arg("EX")
        .arg(keys::SESSION_TTL.as_secs())
        .query_async(con)
        .await?;
    Ok(token)
}

/// The session's user, sliding its TTL; `SessionMissing` if there is none.
pub async fn get<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    token: &str,
) -> Result<SessionUser, AppError> {
    if !valid_token(token) {
        return Err(AppError::SessionMissing);
    }
    let json: Option<String> = redis::cmd("GETEX")
        .arg(keys.session(token))
        .arg("EX")
        .arg(keys::SESSION_TTL.as_secs())
        .query_async(con)
        .await?;
    let json = json.ok_or(AppError::SessionMissing)?;
    serde_json::from_str(&json).map_err(|e| AppError::Internal(anyhow::Error::new(e)))
}

/// The session's user from `cache` when it holds a fresh copy, else from Redis ([`get`]),
/// remembered for the next request; each counted in `metrics`.
pub async fn get_cached<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    cache: &SessionCache,
    metrics: &Metrics,
    token: &str,
) -> Result<SessionUser, AppError> {
    if !valid_token(token) {
        return Err(AppError::SessionMissing);
    }
    if let Some(user) = cache.lookup(token) {
        metrics.sessions_cached.inc();
        return Ok(user);
    }
    metrics.sessions_read.inc();
    let generation = cache.generation();
    let user = get(con, keys, token).await?;
    cache.insert(token, &user, generation);
    Ok(user)
}

/// Ends a session, if there is one (whether there was): records the logout (for the buys, which
/// read no session: see [`super::logouts`]), deletes it, and tells every edge. In that order, so an edge that reads
/// the recent logouts back after subscribing either finds this one or hears the message.
pub async fn delete<C: ConnectionLike + Send + AsyncCommands>(
    con: &mut C,
    keys: &Keys,
    token: &str,
) -> Result<bool, AppError> {
    if !valid_token(token) {
        return Ok(false);
    }
    // only a session that was there is recorded and told to every edge: a logout of an invented
    // token writes nothing (security review, row 10: a million of them made edges stop trusting
    // their logout list)
    let there: bool = con.exists(keys.session(token)).await?;
    if !there {
        return Ok(false);
    }
    super::logouts::record(con, keys, TokenPrint::of(token)).await?;
    let _: () = con.del(keys.session(token)).await?;
    let _: () = con.publish(keys.session_channel(), token).await?;
    Ok(true)
}

/// A logout, made on this edge or heard from another: its cached session goes, and its token
/// joins the recent logouts. The logout route and the pub/sub listener both call this.
pub fn logout_heard(token: &str, cache: &SessionCache, logouts: &super::logouts::Logouts) {
    cache.revoke(token);
    logouts.add(TokenPrint::of(token));
}

/// An edge's copies of the sessions it read lately (see the module comment for what bounds
/// them). At most `capacity` entries: past that, new sessions are simply not cached until the
/// tidy-up drops the old ones.
#[derive(Debug)]
pub struct SessionCache {
    entries: papaya::HashMap<String, (SessionUser, Instant)>,
    ttl: Duration,
    capacity: usize,
    /// Moves on every revocation, so an answer read before one is not cached after it.
    generation: AtomicU64,
    /// True only while this edge is subscribed to the revocations.
    live: AtomicBool,
}

impl SessionCache {
    /// A cache keeping each session `ttl` (zero: no caching), at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: papaya::HashMap::new(),
            ttl,
            capacity,
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
        }
    }

    fn lookup(&self, token: &str) -> Option<SessionUser> {
        if !self.live.load(SeqCst) {
            return None;
        }
        match self.entries.pin().get(token) {
            Some((user, at)) if at.elapsed() < self.ttl => Some(user.clone()),
            _ => None,
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(SeqCst)
    }

    fn insert(&self, token: &str, user: &SessionUser, generation: u64) {
        if self.ttl.is_zero() || !self.live.load(SeqCst) {
            return;
        }
        if self.generation.load(SeqCst) != generation || self.entries.len() >= self.capacity {
            return;
        }
        let entries = self.entries.pin();
        entries.insert(token.to_string(), (user.clone(), Instant::now()));
        // Insert, then look again: a revocation moves the generation *before* it removes the
        // token, so either it removed what was just inserted, or its move is seen here.
        if self.generation.load(SeqCst) != generation {
            entries.remove(token);
        }
    }

    /// A logout somewhere: forget this token.
    pub fn revoke(&self, token: &str) {
        self.generation.fetch_add(1, SeqCst);
        self.entries.pin().remove(token);
    }

    /// The subscription is up (`true`: start trusting the cache) or broke (`false`: forget
    /// everything and stop trusting it, as messages may be missed).
    pub fn set_live(&self, live: bool) {
        self.generation.fetch_add(1, SeqCst);
        self.live.store(false, SeqCst);
        self.entries.pin().clear();
        self.live.store(live, SeqCst);
    }

    /// Drops the copies too old to be used. Walks every entry: run it off the async workers.
    pub fn tidy(&self) {
        self.entries
            .pin()
            .retain(|_, (_, at)| at.elapsed() < self.ttl);
    }

    /// How many sessions are held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn user(id: i64) -> SessionUser {
        SessionUser {
            id: UserId::new(id).unwrap(),
            mobile: format!("1380000{id:04}"),
            nickname: "n".into(),
            subject: None,
        }
    }

    const T: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn nothing_is_cached_while_the_subscription_is_down() {
        let c = SessionCache::new(Duration::from_secs(30), 10);
        c.insert(T, &user(1), c.generation());
        assert_eq!(c.lookup(T), None);
        c.set_live(true);
        c.insert(T, &user(1), c.generation());
        assert_eq!(c.lookup(T), Some(user(1)));
        c.set_live(false);
        assert_eq!(
            c.lookup(T),
            None,
            "a broken subscription forgets everything"
        );
        c.set_live(true);
        assert_eq!(c.lookup(T), None);
    }

    #[test]
    fn a_revocation_during_the_read_keeps_the_answer_out() {
        let c = SessionCache::new(Duration::from_secs(30), 10);
        c.set_live(true);
        let before = c.generation();
        c.revoke(T); // the logout message arrives while GETEX is in flight
        c.insert(T, &user(1), before);
        assert_eq!(c.lookup(T), None);
        c.insert(T, &user(1), c.generation());
        assert_eq!(c.lookup(T), Some(user(1)));
        c.revoke(T);
        assert_eq!(c.lookup(T), None);
    }

    #[test]
    fn copies_expire_and_the_cache_stays_within_its_capacity() {
        let c = SessionCache::new(Duration::from_millis(30), 2);
        c.set_live(true);
        let tokens = [
            T.replace('0', "1"),
            T.replace('0', "2"),
            T.replace('0', "3"),
        ];
        for (i, t) in tokens.iter().enumerate() {
            c.insert(t, &user(i as i64 + 1), c.generation());
        }
        assert_eq!(c.len(), 2, "the third is not cached");
        assert_eq!(c.lookup(&tokens[2]), None);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.lookup(&tokens[0]), None, "an old copy is not used");
        c.tidy();
        assert!(c.is_empty());
        let off = SessionCache::new(Duration::ZERO, 10);
        off.set_live(true);
        off.insert(T, &user(1), off.generation());
        assert_eq!(off.lookup(T), None, "a zero TTL caches nothing");
    }
}
