//! Hot items: a sale whose stock is split over several buckets ([`Shard`]).
//!
//! On a Redis Cluster all of a sale's keys share one hash tag, hence one slot, hence one node: a
//! single hot item would load one shard while the others idle. Split into N buckets, each under a
//! hash tag of its own (`sk:{g:ID}`, `sk:{g:ID/1}`, …), the item's load spreads over N slots.
//! Everything about one shopper (path, rate bucket, duplicate marker, queue entry, result) lives
//! in their *home* bucket, `user id mod N`, so `lua/admit.lua` still runs on one slot and a
//! shopper still cannot buy twice.
//!
//! Shoppers need not spread evenly, so a home bucket may run dry while others still hold units.
//! Then the edge *moves* a unit: `lua/take.lua` takes one from another bucket, an `INCR` puts it
//! in the home bucket, and admit.lua runs again there (without charging the rate limits twice).
//! Only when every other bucket is empty is the answer SOLD_OUT, so no unit stays unsold while
//! anyone still asks. A move spans two slots, so it is two steps; it runs in a task of its own,
//! which a shopper hanging up cannot cancel half-way. Only an edge process dying between the two
//! steps can lose a unit (never sell one twice); it is logged if Redis fails between them.
//!
//! How many buckets a sale has is in its meta (`buckets`), remembered here for [`SHAPE_TTL`].

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::domain::{GoodsId, MAX_BUCKETS, Shard};
use crate::error::AppError;
use crate::state::AppState;

/// How long the edge trusts the bucket count it read for a sale.
pub const SHAPE_TTL: Duration = Duration::from_secs(10);

/// Each sale's bucket count, as last read from Redis.
#[derive(Debug, Default)]
pub struct Shapes {
    known: RwLock<HashMap<GoodsId, (u16, Instant)>>,
}

impl Shapes {
    /// How many buckets `goods` has (1 for a sale that is not split, or not loaded).
    pub async fn buckets(&self, state: &AppState, goods: GoodsId) -> Result<u16, AppError> {
        if let Some(&(n, at)) = self.known.read().expect("shapes lock").get(&goods)
            && at.elapsed() < SHAPE_TTL
        {
            return Ok(n);
        }
        let meta = state.keys.sale(goods).meta();
        let read: Option<u16> = state.redis.clone().hget(&meta, "buckets").await?;
        let Some(n) = read else {
            return Ok(1); // not loaded: admit.lua answers NO_SALE; nothing to remember
        };
        let n = n.clamp(1, MAX_BUCKETS);
        self.known
            .write()
            .expect("shapes lock")
            .insert(goods, (n, Instant::now()));
        Ok(n)
    }
}

/// Moves one unit from bucket `from` to bucket `to`; false if `from` had none.
pub async fn move_unit(state: &AppState, from: Shard, to: Shard) -> Result<bool, AppError> {
    let state = state.clone();
    // a task of its own: dropping the request must not stop a move between its two steps
    let task = tokio::spawn(async move {
        let (from_stock, to_stock) = (state.keys.shard(from).stock(), state.keys.shard(to).stock());
        let mut con = state.redis.clone();
        let taken = state
            .scripts
            .get()
            .take
            .invoke(&mut con, &[&from_stock], &[])
            .await?;
        if !matches!(taken, redis::Value::Int(1)) {
            return Ok(false);
        }
        let mut last = None;
        for (attempt, key) in [&to_stock, &to_stock, &to_stock, &from_stock]
            .into_iter()
            .enumerate()
        {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
            }
            match con.incr::<_, _, i64>(key, 1).await {
                Ok(_) if key == &to_stock => {
                    state.metrics.stock_moves.fetch_add(1, Relaxed);
                    return Ok(true);
                }
                Ok(_) => return Ok(false), // put back where it came from
                Err(e) => last = Some(e),
            }
        }
        let e = last.expect("an error");
        tracing::error!(
            goods = from.goods.get(),
            from = from.bucket,
            to = to.bucket,
            error = %e,
            "a unit taken from one bucket could be put in neither: INCR {to_stock} by hand"
        );
        Err(AppError::from(e))
    });
    task.await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("moving a unit: {e}")))?
}
