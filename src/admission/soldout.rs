//! The edge's local answers: the sold-out flags and the buyer marks (in-memory maps per edge),
//! and the pub/sub listener that clears them (and, for logouts, drops the cached sessions,
//! `accounts::session`, and records the token among the recent logouts, `accounts::logouts`).
//!
//! Once a sale's stock is gone, every further buy would be one more Redis round trip answering
//! SOLD_OUT. The edge remembers "sold out" per sale in process memory and answers from there.
//! When a unit comes back (`lua/restore.lua` publishes the goods id on the restock channel) every
//! edge clears its flag, so the unit can be sold again.
//!
//! Likewise a shopper Redis has admitted (or called a duplicate) who presses "buy" again, or
//! whose page sends the buy again, would cost the sale's one Redis primary a script run to hear
//! DUPLICATE: the edge marks them, with a hash of the path binding they bought with (their path
//! and their token's fingerprint), and answers DUPLICATE itself. A restock message of the sale
//! (a unit given back: the buyer may buy again) drops the sale's marks with its flag; both are
//! [`LocalAnswers`], under the same guards.
//!
//! The guards are *epochs*, not locks. Each sale has one, a number never used before, replaced
//! on every restock message of the sale; one more, global, moves when the listener reconnects
//! (messages may have been missed). A buy reads the sale's epoch *before* its script runs and
//! tags what it learns with it; a flag or mark counts only while its tag is the current epoch.
//! So an answer that raced a restock (the reply and the message travel on different
//! connections and may arrive in either order) is never believed, and clearing a sale is one
//! insert however many marks it has: the stale ones are left for the tidy-up, which runs off the
//! async workers. What bounds a missed message:
//! - a flag older than [`RECHECK`] lets one request through to Redis, which re-sets it if the
//!   sale is still gone;
//! - a sale's marks are trusted [`MARKS_TRUSTED`] at most: then its epoch is replaced and its
//!   marks start afresh.
//!
//! The maps are `papaya` hash maps: lock-free reads, and a map that outgrows its table moves to a
//! bigger one a few entries per write (incremental resizing), so no request ever waits for work
//! that grows with the map (the edge-wide stall of a `Mutex<HashMap>` rehashing a million
//! entries under its lock). Memory: at most [`MARKS_CAPACITY`] marks (about 60 bytes each), one
//! epoch per sale bought, one flag per sale.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::domain::{GoodsId, UserId};

/// How long a flag is trusted before one request re-checks Redis.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long a sale's buyer marks are trusted: after that the sale's marks start afresh, so a
/// restock message missed without the listener noticing costs at most this long.
pub const MARKS_TRUSTED: Duration = Duration::from_secs(30);

/// Most buyer marks an edge holds (all sales together): past that, a buyer is not marked until
/// the tidy-up drops stale marks, and their repeat goes to Redis.
pub const MARKS_CAPACITY: usize = 1_000_000;

/// A sale's epoch: the global part in the high 24 bits, the sale's own in the low 40 (drawn from
/// one counter, so never reused; 2^40 restock messages outlast any edge).
pub type Epoch = u64;

/// A sale's own epoch and when it began (its marks are trusted [`MARKS_TRUSTED`] from then).
#[derive(Debug, Clone, Copy)]
struct SaleEpoch {
    own: u64,
    since: Instant,
}

/// A buyer mark: the hash of the binding bought with, and the epoch it was learnt in.
#[derive(Debug, Clone, Copy)]
struct Mark {
    binding: u64,
    epoch: Epoch,
}

/// The edge's local answers: when each sale was last seen sold out (the flags), and the shoppers
/// this edge has seen admitted, per sale, each with a hash of the path binding they bought with
/// (the buyer marks; a repeat with another binding goes to Redis, which answers as it would:
/// BAD_PATH). See the module comment for the epochs that guard both.
#[derive(Debug, Default)]
pub struct LocalAnswers {
    flags: papaya::HashMap<GoodsId, (Instant, Epoch)>,
    marks: papaya::HashMap<(GoodsId, UserId), Mark>,
    sales: papaya::HashMap<GoodsId, SaleEpoch>,
    /// Where sales' own epochs are drawn from.
    counter: AtomicU64,
    /// Moves when every flag and mark must go (the listener reconnected).
    global: AtomicU64,
}

/// A hash of a path binding (`HiddenPath::bound_to`), as a mark keeps it.
pub fn binding_hash(binding: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    binding.hash(&mut h);
    h.finish()
}

impl LocalAnswers {
    fn combine(&self, own: u64) -> Epoch {
        (self.global.load(SeqCst) << 40) | (own & ((1 << 40) - 1))
    }

    fn current(&self, goods: GoodsId) -> Option<Epoch> {
        let sales = self.sales.pin();
        let sale = sales.get(&goods)?;
        (sale.since.elapsed() < MARKS_TRUSTED).then(|| self.combine(sale.own))
    }

    fn renew(&self, goods: GoodsId) -> Epoch {
        let own = self.counter.fetch_add(1, SeqCst) + 1;
        self.sales.pin().insert(
            goods,
            SaleEpoch {
                own,
                since: Instant::now(),
            },
        );
        self.combine(own)
    }

    /// The epoch to tag what a script answers about `goods` with ([`Self::mark`],
    /// [`Self::mark_buyer`]); read before the script runs. A sale first seen, or whose marks
    /// are past [`MARKS_TRUSTED`], starts a new epoch here.
    pub fn epoch(&self, goods: GoodsId) -> Epoch {
        self.current(goods).unwrap_or_else(|| self.renew(goods))
    }

    /// True if the sale is known to be sold out (and the knowledge is fresh).
    pub fn is_sold_out(&self, goods: GoodsId) -> bool {
        let flags = self.flags.pin();
        matches!(flags.get(&goods), Some((at, epoch)) if at.elapsed() < RECHECK
            && self.current(goods) == Some(*epoch))
    }

    /// True if `user` was seen admitted to this sale with this binding (and the mark is
    /// trusted).
    pub fn is_buyer(&self, goods: GoodsId, user: UserId, binding: u64) -> bool {
        let marks = self.marks.pin();
        matches!(marks.get(&(goods, user)), Some(m) if m.binding == binding
            && self.current(goods) == Some(m.epoch))
    }

    /// Records SOLD_OUT, learnt in `epoch`.
    pub fn mark(&self, goods: GoodsId, epoch: Epoch) {
        if self.current(goods) == Some(epoch) {
            self.flags.pin().insert(goods, (Instant::now(), epoch));
        }
    }

    /// Records that Redis holds `user` as a buyer of this sale, learnt in `epoch`.
    pub fn mark_buyer(&self, goods: GoodsId, user: UserId, binding: u64, epoch: Epoch) {
        if self.current(goods) == Some(epoch) && self.marks.len() < MARKS_CAPACITY {
            self.marks
                .pin()
                .insert((goods, user), Mark { binding, epoch });
        }
    }

    /// A unit of this sale came back (or an operator changed it): its flag and its buyers'
    /// marks stop counting at once (a new epoch); the tidy-up frees them.
    pub fn clear(&self, goods: GoodsId) {
        self.renew(goods);
    }

    /// Every flag and mark stops counting (the listener reconnected and may have missed
    /// messages).
    pub fn clear_all(&self) {
        self.global.fetch_add(1, SeqCst);
    }

    /// How many buyer marks are held now (counting those not yet tidied away).
    pub fn marks_held(&self) -> usize {
        self.marks.len()
    }

    /// Drops the flags and marks that no longer count, and the epochs of sales not bought for a
    /// while. Walks every mark: run it off the async workers ([`tokio::task::spawn_blocking`]);
    /// requests go on meanwhile (the maps take no lock).
    pub fn tidy(&self) {
        let live = |goods: &GoodsId, epoch: Epoch| self.current(*goods) == Some(epoch);
        self.flags
            .pin()
            .retain(|g, (at, e)| at.elapsed() < RECHECK && live(g, *e));
        self.marks.pin().retain(|(g, _), m| live(g, m.epoch));
        // A sale's epoch may go once its marks are untrusted: a sale seen again starts a new
        // one, never an old one (the counter only moves forward).
        self.sales
            .pin()
            .retain(|_, s| s.since.elapsed() < MARKS_TRUSTED * 2);
    }
}

/// What the pub/sub listener keeps up to date.
pub struct Listeners {
    /// Restocks: a goods id whose sold-out flag, buyer marks and shard count go.
    pub restock_channel: String,
    /// Logouts: a token whose cached session goes (see [`crate::accounts::session`]) and whose
    /// fingerprint joins the recent logouts (see [`crate::accounts::logouts`]).
    pub session_channel: String,
    /// The recent logouts, and where to read them back after subscribing.
    pub logouts: Arc<crate::accounts::logouts::Logouts>,
    pub redis: crate::plumbing::redis_conn::RedisConn,
    pub keys: crate::plumbing::keys::Keys,
    /// The sold-out flags and buyer marks a restock clears.
    pub local: Arc<LocalAnswers>,
    pub shapes: Arc<crate::admission::split::Shapes>,
    pub sessions: Arc<crate::accounts::session::SessionCache>,
    /// Where the workers announce results (`Keys::results_channel`), for the push hub.
    pub results_channel: String,
    pub push: Arc<crate::admission::push::Hub>,
}

/// Subscribes to the restock and logout channels and, for each goods id heard (a unit came
/// back, or an operator changed the sale), clears its flag and forgets its shard count; for each
/// token heard, forgets its session. Until `shutdown` fires; reconnects with a short backoff
/// when Redis goes away or the primary moves, and while it is not subscribed the session cache
/// is not used.
pub async fn listen(
    target: crate::plumbing::redis_conn::Target,
    to: Listeners,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = crate::plumbing::retry::Backoff::listener();
    loop {
        let session = async {
            let mut pubsub = target.pubsub_client().await?.get_async_pubsub().await?;
            pubsub
                .subscribe(&[
                    &to.restock_channel,
                    &to.session_channel,
                    &to.results_channel,
                ])
                .await?;
            to.local.clear_all();
            to.sessions.set_live(true);
            // read back after subscribing: a logout made before is in the set, one made after
            // is heard (a logout writes the set before it publishes)
            let recent = crate::accounts::logouts::recent(&mut to.redis.clone(), &to.keys).await?;
            to.logouts.subscribed(recent);
            tracing::debug!(channel = %to.restock_channel, "listening for restocks and logouts");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let payload: String = msg.get_payload().unwrap_or_default();
                if msg.get_channel_name() == to.session_channel {
                    crate::accounts::session::logout_heard(&payload, &to.sessions, &to.logouts);
                    continue;
                }
                if msg.get_channel_name() == to.results_channel {
                    to.push.results_message(&payload);
                    continue;
                }
                match GoodsId::parse(&payload) {
                    Ok(goods) => {
                        to.local.clear(goods);
                        to.shapes.forget(goods);
                    }
                    Err(_) => tracing::warn!(%payload, "ignoring a malformed restock message"),
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            result = session => {
                match result {
                    Ok(()) => tracing::warn!("restock subscription closed; reconnecting"),
                    Err(e) => tracing::warn!(error = %e, "restock subscription failed; reconnecting"),
                }
                to.local.clear_all();
                to.sessions.set_live(false);
                to.logouts.unsubscribed();
            }
            // a Sentinel failover: what the old primary publishes now is not what the edges
            // hear from the new one; subscribe there (messages in between may be missed, so
            // flags and sessions start afresh, as after any break)
            _ = target.primary_changed() => {
                tracing::warn!("the Redis primary moved; subscribing again on the new one");
                to.local.clear_all();
                to.sessions.set_live(false);
                to.logouts.unsubscribed();
                continue;
            }
            _ = shutdown.changed() => {
                to.sessions.set_live(false);
                to.logouts.unsubscribed();
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: i64) -> GoodsId {
        GoodsId::new(n).unwrap()
    }

    fn u(n: i64) -> UserId {
        UserId::new(n).unwrap()
    }

    /// Ages a sale's epoch as if it began `by` ago.
    fn age(a: &LocalAnswers, goods: GoodsId, by: Duration) {
        let sales = a.sales.pin();
        let mut e = *sales.get(&goods).unwrap();
        e.since = Instant::now() - by;
        sales.insert(goods, e);
    }

    #[test]
    fn a_restock_during_the_script_keeps_the_flag_down() {
        let flags = LocalAnswers::default();
        let before = flags.epoch(g(1));
        flags.clear(g(1)); // the restock message arrives while the script runs
        flags.mark(g(1), before); // then the SOLD_OUT reply
        assert!(!flags.is_sold_out(g(1)));
        let now = flags.epoch(g(1));
        flags.mark(g(1), now);
        assert!(flags.is_sold_out(g(1)));
        assert!(!flags.is_sold_out(g(2)));
        flags.clear_all();
        assert!(!flags.is_sold_out(g(1)));
    }

    #[test]
    fn tidy_keeps_only_fresh_flags() {
        let flags = LocalAnswers::default();
        flags.mark(g(1), flags.epoch(g(1)));
        flags.mark(g(2), flags.epoch(g(2)));
        flags.tidy();
        assert_eq!(flags.flags.len(), 2, "fresh flags stay");
        flags
            .flags
            .pin()
            .insert(g(2), (Instant::now() - RECHECK * 2, flags.epoch(g(2))));
        flags.tidy();
        assert!(flags.is_sold_out(g(1)));
        assert_eq!(flags.flags.len(), 1, "a stale flag goes");
    }

    #[test]
    fn a_buyer_is_known_with_the_binding_they_bought_with_until_their_sale_is_restocked() {
        let marks = LocalAnswers::default();
        let (p, q) = (binding_hash("p.t"), binding_hash("p.other"));
        marks.mark_buyer(g(1), u(7), p, marks.epoch(g(1)));
        assert!(marks.is_buyer(g(1), u(7), p));
        assert!(
            !marks.is_buyer(g(1), u(7), q),
            "another binding (path or token) goes to Redis"
        );
        assert!(!marks.is_buyer(g(1), u(8), p));
        assert!(!marks.is_buyer(g(2), u(7), p));
        // a restock of another sale leaves this one's marks
        marks.clear(g(2));
        assert!(marks.is_buyer(g(1), u(7), p));
        marks.clear(g(1));
        assert!(!marks.is_buyer(g(1), u(7), p));
        // an answer that raced a restock marks nothing
        let before = marks.epoch(g(1));
        marks.clear(g(1));
        marks.mark_buyer(g(1), u(7), p, before);
        assert!(!marks.is_buyer(g(1), u(7), p));
        marks.mark_buyer(g(1), u(7), p, marks.epoch(g(1)));
        assert!(marks.is_buyer(g(1), u(7), p));
        marks.clear_all();
        assert!(!marks.is_buyer(g(1), u(7), p));
        // the tidy-up frees what no longer counts
        marks.tidy();
        assert_eq!(marks.marks_held(), 0);
    }

    #[test]
    fn marks_too_old_are_not_trusted_and_go() {
        let marks = LocalAnswers::default();
        let p = binding_hash("p.t");
        marks.mark_buyer(g(1), u(7), p, marks.epoch(g(1)));
        marks.mark_buyer(g(2), u(7), p, marks.epoch(g(2)));
        age(&marks, g(2), MARKS_TRUSTED * 2);
        assert!(marks.is_buyer(g(1), u(7), p));
        assert!(
            !marks.is_buyer(g(2), u(7), p),
            "a stale mark is not an answer"
        );
        marks.tidy();
        assert_eq!(marks.marks_held(), 1, "a stale sale's marks go");
        // the stale sale starts afresh: only a shopper marked since is known
        marks.mark_buyer(g(2), u(9), p, marks.epoch(g(2)));
        assert!(marks.is_buyer(g(2), u(9), p));
        assert!(!marks.is_buyer(g(2), u(7), p));
    }

    #[test]
    fn a_sale_forgotten_by_the_tidy_up_never_gets_an_old_epoch_back() {
        let marks = LocalAnswers::default();
        let p = binding_hash("p.t");
        let first = marks.epoch(g(1));
        marks.mark_buyer(g(1), u(7), p, first);
        age(&marks, g(1), MARKS_TRUSTED * 3);
        marks.tidy();
        assert_ne!(marks.epoch(g(1)), first);
        assert!(!marks.is_buyer(g(1), u(7), p));
    }
}
