//! The edge's local answers: the sold-out flags and the buyer marks (in-memory maps per edge),
//! and the pub/sub listener that clears them (and drops the cached sessions of logouts,
//! `accounts::session`).
//!
//! Once a sale's stock is gone, every further buy would be one more Redis round trip answering
//! SOLD_OUT. The edge remembers "sold out" per sale in process memory and answers from there.
//! When a unit comes back (`lua/restore.lua` publishes the goods id on the restock channel) every
//! edge clears its flag, so the unit can be sold again.
//!
//! Likewise a shopper Redis has admitted (or called a duplicate) who presses "buy" again, or
//! whose page sends the buy again, would cost the sale's one Redis primary a script run to hear
//! DUPLICATE: the edge marks them, with the hidden path they bought with, and answers DUPLICATE
//! itself. A restock message of the sale (a unit given back: the buyer may buy again) drops the
//! sale's marks with its flag; both are [`LocalAnswers`], under the same guards.
//!
//! Two guards keep a flag from outliving the stock it describes:
//! - a *generation*, shared by all sales and bumped by every restock message: a SOLD_OUT reply
//!   only sets the flag if no restock arrived while the script ran (the reply and the message
//!   travel on different connections and may arrive in either order);
//! - a flag older than [`RECHECK`] lets one request through to Redis, which re-sets it if the sale
//!   is still gone: a missed message costs at most that long. Reconnecting the listener clears all.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::domain::{GoodsId, HiddenPath, UserId};

/// How long a flag is trusted before one request re-checks Redis.
pub const RECHECK: Duration = Duration::from_secs(1);

/// How long a sale's buyer marks are trusted: after that the sale's marks start afresh, so a
/// restock message missed without the listener noticing costs at most this long.
pub const MARKS_TRUSTED: Duration = Duration::from_secs(30);

/// The edge's local answers: when each sale was last seen sold out (the flags), and the shoppers
/// this edge has seen admitted, per sale, each with a hash of the hidden path they bought with
/// (the buyer marks; a repeat with another path goes to Redis, which answers as it would:
/// BAD_PATH). One generation counter, shared by all sales and both kinds, moves on every clear,
/// so neither is ever set by a script answer that raced a restock; as it is shared, an entry can
/// be dropped at any time ([`LocalAnswers::tidy`]), and the edge keeps nothing for a sale nobody
/// asks about: memory follows what is live (a sale's marks are at most [`MARKS_TRUSTED`] old,
/// and at most one per shopper this edge admitted in that time).
#[derive(Debug, Default)]
pub struct LocalAnswers {
    flags: RwLock<HashMap<GoodsId, Instant>>,
    marks: RwLock<HashMap<GoodsId, Marks>>,
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Marks {
    since: Instant,
    users: HashMap<UserId, u64>,
}

fn path_hash(path: &HiddenPath) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.as_str().hash(&mut h);
    h.finish()
}

impl LocalAnswers {
    /// True if the sale is known to be sold out (and the knowledge is fresh).
    pub fn is_sold_out(&self, goods: GoodsId) -> bool {
        let flags = self.flags.read().expect("sold-out lock");
        matches!(flags.get(&goods), Some(t) if t.elapsed() < RECHECK)
    }

    /// True if `user` was seen admitted to this sale with this path (and the mark is trusted).
    pub fn is_buyer(&self, goods: GoodsId, user: UserId, path: &HiddenPath) -> bool {
        let marks = self.marks.read().expect("marks lock");
        matches!(marks.get(&goods), Some(m) if m.since.elapsed() < MARKS_TRUSTED
            && m.users.get(&user).is_some_and(|h| *h == path_hash(path)))
    }

    /// The generation to pass to [`Self::mark`] or [`Self::mark_buyer`] after the script
    /// answers.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records SOLD_OUT, unless a restock (of any sale) arrived since `generation` was read.
    pub fn mark(&self, goods: GoodsId, generation: u64) {
        let mut flags = self.flags.write().expect("sold-out lock");
        if self.generation() == generation {
            flags.insert(goods, Instant::now());
        }
    }

    /// Records that Redis holds `user` as a buyer of this sale, unless a restock (of any sale)
    /// arrived since `generation` was read: the buyer may have been given back meanwhile.
    pub fn mark_buyer(&self, goods: GoodsId, user: UserId, path: &HiddenPath, generation: u64) {
        let mut marks = self.marks.write().expect("marks lock");
        if self.generation() != generation {
            return;
        }
        let sale = marks.entry(goods).or_insert_with(|| Marks {
            since: Instant::now(),
            users: HashMap::new(),
        });
        if sale.since.elapsed() >= MARKS_TRUSTED {
            sale.since = Instant::now();
            sale.users.clear();
        }
        sale.users.insert(user, path_hash(path));
    }

    /// A unit of this sale came back (or an operator changed it): clear its flag and forget its
    /// buyers, and start a new generation. Both locks are held while the generation moves, so a
    /// mark either lands before (and is cleared here) or sees the new generation.
    pub fn clear(&self, goods: GoodsId) {
        self.forget(|flags, marks| {
            flags.remove(&goods);
            marks.remove(&goods);
        });
    }

    /// Forget every flag and mark (the listener reconnected and may have missed messages).
    pub fn clear_all(&self) {
        self.forget(|flags, marks| {
            flags.clear();
            marks.clear();
        });
    }

    fn forget(
        &self,
        forget: impl FnOnce(&mut HashMap<GoodsId, Instant>, &mut HashMap<GoodsId, Marks>),
    ) {
        let mut flags = self.flags.write().expect("sold-out lock");
        let mut marks = self.marks.write().expect("marks lock");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        forget(&mut flags, &mut marks);
    }

    /// Drops the flags and the sales' marks too old to be trusted (they would be re-checked
    /// anyway).
    pub fn tidy(&self) {
        self.flags
            .write()
            .expect("sold-out lock")
            .retain(|_, t| t.elapsed() < RECHECK);
        self.marks
            .write()
            .expect("marks lock")
            .retain(|_, m| m.since.elapsed() < MARKS_TRUSTED);
    }
}

/// What the pub/sub listener keeps up to date.
pub struct Listeners {
    /// Restocks: a goods id whose sold-out flag, buyer marks and shard count go.
    pub restock_channel: String,
    /// Logouts: a token whose cached session goes (see [`crate::accounts::session`]).
    pub session_channel: String,
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
            tracing::debug!(channel = %to.restock_channel, "listening for restocks and logouts");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let payload: String = msg.get_payload().unwrap_or_default();
                if msg.get_channel_name() == to.session_channel {
                    to.sessions.revoke(&payload);
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
            }
            // a Sentinel failover: what the old primary publishes now is not what the edges
            // hear from the new one; subscribe there (messages in between may be missed, so
            // flags and sessions start afresh, as after any break)
            _ = target.primary_changed() => {
                tracing::warn!("the Redis primary moved; subscribing again on the new one");
                to.local.clear_all();
                to.sessions.set_live(false);
                continue;
            }
            _ = shutdown.changed() => {
                to.sessions.set_live(false);
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

    #[test]
    fn a_restock_during_the_script_keeps_the_flag_down() {
        let flags = LocalAnswers::default();
        let before = flags.generation();
        flags.clear(g(1)); // the restock message arrives while the script runs
        flags.mark(g(1), before); // then the SOLD_OUT reply
        assert!(!flags.is_sold_out(g(1)));
        let now = flags.generation();
        flags.mark(g(1), now);
        assert!(flags.is_sold_out(g(1)));
        assert!(!flags.is_sold_out(g(2)));
        flags.clear_all();
        assert!(!flags.is_sold_out(g(1)));
    }

    #[test]
    fn tidy_keeps_only_fresh_flags() {
        let flags = LocalAnswers::default();
        flags.mark(g(1), flags.generation());
        flags.tidy();
        assert_eq!(flags.flags.read().unwrap().len(), 1, "a fresh flag stays");
        flags
            .flags
            .write()
            .unwrap()
            .insert(g(2), Instant::now() - RECHECK * 2);
        flags.tidy();
        assert!(flags.is_sold_out(g(1)));
        assert_eq!(flags.flags.read().unwrap().len(), 1, "a stale flag goes");
    }

    fn u(n: i64) -> UserId {
        UserId::new(n).unwrap()
    }

    #[test]
    fn a_buyer_is_known_with_the_path_they_bought_with_until_their_sale_is_restocked() {
        let marks = LocalAnswers::default();
        let p = HiddenPath::parse("0123456789abcdef0123456789abcdef").unwrap();
        let q = HiddenPath::parse("fedcba9876543210fedcba9876543210").unwrap();
        marks.mark_buyer(g(1), u(7), &p, marks.generation());
        assert!(marks.is_buyer(g(1), u(7), &p));
        assert!(
            !marks.is_buyer(g(1), u(7), &q),
            "another path goes to Redis"
        );
        assert!(!marks.is_buyer(g(1), u(8), &p));
        assert!(!marks.is_buyer(g(2), u(7), &p));
        // a restock of another sale leaves this one's marks
        marks.clear(g(2));
        assert!(marks.is_buyer(g(1), u(7), &p));
        marks.clear(g(1));
        assert!(!marks.is_buyer(g(1), u(7), &p));
        // an answer that raced a restock marks nothing
        let before = marks.generation();
        marks.clear(g(3));
        marks.mark_buyer(g(1), u(7), &p, before);
        assert!(!marks.is_buyer(g(1), u(7), &p));
        marks.mark_buyer(g(1), u(7), &p, marks.generation());
        marks.clear_all();
        assert!(!marks.is_buyer(g(1), u(7), &p));
    }

    #[test]
    fn marks_too_old_are_not_trusted_and_go() {
        let marks = LocalAnswers::default();
        let p = HiddenPath::parse("0123456789abcdef0123456789abcdef").unwrap();
        marks.mark_buyer(g(1), u(7), &p, marks.generation());
        marks.mark_buyer(g(2), u(7), &p, marks.generation());
        marks.marks.write().unwrap().get_mut(&g(2)).unwrap().since =
            Instant::now() - MARKS_TRUSTED * 2;
        assert!(marks.is_buyer(g(1), u(7), &p));
        assert!(
            !marks.is_buyer(g(2), u(7), &p),
            "a stale mark is not an answer"
        );
        marks.tidy();
        assert_eq!(
            marks.marks.read().unwrap().len(),
            1,
            "a stale sale's marks go"
        );
        // a mark on a stale sale starts it afresh: only the new shopper is known
        marks.mark_buyer(g(1), u(8), &p, marks.generation());
        marks.marks.write().unwrap().get_mut(&g(1)).unwrap().since =
            Instant::now() - MARKS_TRUSTED * 2;
        marks.mark_buyer(g(1), u(9), &p, marks.generation());
        assert!(marks.is_buyer(g(1), u(9), &p));
        assert!(!marks.is_buyer(g(1), u(8), &p));
    }
}
