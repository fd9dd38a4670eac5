//! The local sold-out flags (an in-memory map per edge), and the pub/sub listener that clears
//! them (and drops the cached sessions of logouts, `accounts::session`).
//!
//! Once a sale's stock is gone, every further buy would be one more Redis round trip answering
//! SOLD_OUT. The edge remembers "sold out" per sale in process memory and answers from there.
//! When a unit comes back (`lua/restore.lua` publishes the goods id on the restock channel) every
//! edge clears its flag, so the unit can be sold again.
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

use crate::domain::GoodsId;

/// How long a flag is trusted before one request re-checks Redis.
pub const RECHECK: Duration = Duration::from_secs(1);

/// The flags: when each sale was last seen sold out. A generation counter, shared by all sales,
/// moves on every clear, so a flag is never raised by a script answer that raced a restock; as
/// it is shared, an entry can be dropped at any time ([`SoldOutFlags::tidy`]), and the edge
/// keeps no entry for a sale nobody asks about: memory follows what is live.
#[derive(Debug, Default)]
pub struct SoldOutFlags {
    flags: RwLock<HashMap<GoodsId, Instant>>,
    generation: std::sync::atomic::AtomicU64,
}

impl SoldOutFlags {
    /// True if the sale is known to be sold out (and the knowledge is fresh).
    pub fn is_sold_out(&self, goods: GoodsId) -> bool {
        let flags = self.flags.read().expect("sold-out lock");
        matches!(flags.get(&goods), Some(t) if t.elapsed() < RECHECK)
    }

    /// The generation to pass to [`Self::mark`] after the script answers.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records SOLD_OUT, unless a restock (of any sale) arrived since `generation` was read.
    pub fn mark(&self, goods: GoodsId, generation: u64) {
        let mut flags = self.flags.write().expect("sold-out lock");
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            flags.insert(goods, Instant::now());
        }
    }

    /// A unit of this sale came back: clear the flag and start a new generation.
    pub fn clear(&self, goods: GoodsId) {
        let mut flags = self.flags.write().expect("sold-out lock");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        flags.remove(&goods);
    }

    /// Forget every flag (the listener reconnected and may have missed messages).
    pub fn clear_all(&self) {
        let mut flags = self.flags.write().expect("sold-out lock");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        flags.clear();
    }

    /// Drops the flags too old to be trusted (they would be re-checked anyway).
    pub fn tidy(&self) {
        let mut flags = self.flags.write().expect("sold-out lock");
        flags.retain(|_, t| t.elapsed() < RECHECK);
    }
}

/// What the pub/sub listener keeps up to date.
pub struct Listeners {
    /// Restocks: a goods id whose sold-out flag and shard count go.
    pub restock_channel: String,
    /// Logouts: a token whose cached session goes (see [`crate::accounts::session`]).
    pub session_channel: String,
    pub flags: Arc<SoldOutFlags>,
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
            to.flags.clear_all();
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
                        to.flags.clear(goods);
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
                to.flags.clear_all();
                to.sessions.set_live(false);
            }
            // a Sentinel failover: what the old primary publishes now is not what the edges
            // hear from the new one; subscribe there (messages in between may be missed, so
            // flags and sessions start afresh, as after any break)
            _ = target.primary_changed() => {
                tracing::warn!("the Redis primary moved; subscribing again on the new one");
                to.flags.clear_all();
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
        let flags = SoldOutFlags::default();
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
        let flags = SoldOutFlags::default();
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
}
