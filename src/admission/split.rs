//! Hot items: a sale whose stock is split over several shards ([`Shard`]).
//!
//! On a Redis Cluster all of a sale's keys share one hash tag, hence one slot, hence one node: a
//! single hot item would load one node while the others idle. Split into N shards, each under a
//! hash tag of its own (`sk:{g:ID}`, `sk:{g:ID/1}`, …), the item's load spreads over N slots.
//! Everything about one shopper (path, token bucket, duplicate marker, queue entry, result) lives
//! in their *home* shard, `user id mod N`, so `lua/admit.lua` still runs on one slot and a
//! shopper still cannot buy twice.
//!
//! Shoppers need not spread evenly, so a home shard may run dry while others still hold units.
//! Then the edge *moves* a unit: `lua/take.lua` takes one from another shard, an `INCR` puts it
//! in the home shard, and admit.lua runs again there (without charging the rate limits twice).
//! Only when every other shard is empty is the answer SOLD_OUT, so no unit stays unsold while
//! anyone still asks. A move spans two slots, so it is two steps; it runs in a task of its own,
//! which a shopper hanging up cannot cancel half-way. Only an edge process dying between the two
//! steps can lose a unit (never sell one twice); it is logged if Redis fails between them.
//!
//! How many shards a sale has is in its meta (`shards`), remembered here for [`SHAPE_TTL`]
//! (with whether it has a waiting room: [`Shape`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ConstantBuilder};
use redis::AsyncCommands;

use crate::admission::scripts::{Code, Scripts, decode_done};
use crate::domain::{GoodsId, MAX_SHARDS, Shard};
use crate::error::AppError;
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::RedisConn;

/// How long the edge trusts the shard count it read for a sale.
pub const SHAPE_TTL: Duration = Duration::from_secs(10);

/// What the edge remembers of a sale's shape: its shard count and whether it has a waiting
/// room (`crate::admission::room`), read from its meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub shards: u16,
    pub room: bool,
    /// A draw sale (`crate::draws`): a path only for an entry holding a claim.
    pub draw: bool,
    /// The sale is loaded (its meta exists).
    pub loaded: bool,
    /// The sale counts each account's units (`perAccount` > 1, or in a campaign): a shopper's
    /// result says what is left of their allowance.
    pub counted: bool,
}

/// Each sale's shape, as last read from Redis (a lock-free map: every buy reads it).
#[derive(Debug, Default)]
pub struct Shapes {
    known: papaya::HashMap<GoodsId, (Shape, Instant)>,
}

impl Shapes {
    /// Forgets the shapes past [`SHAPE_TTL`] (they would be read again anyway).
    pub fn tidy(&self) {
        self.known
            .pin()
            .retain(|_, (_, at)| at.elapsed() < SHAPE_TTL);
    }

    /// The shape of `goods` (1 shard and no room for a sale that is not loaded).
    pub async fn shape(
        &self,
        redis: &RedisConn,
        keys: &Keys,
        goods: GoodsId,
    ) -> Result<Shape, AppError> {
        if let Some(&(shape, at)) = self.known.pin().get(&goods)
            && at.elapsed() < SHAPE_TTL
        {
            return Ok(shape);
        }
        // a campaign sale's meta is under the campaign's tag: learnt once per process
        crate::sales::store::know(&mut redis.clone(), keys, goods).await?;
        let meta = keys.sale(goods).meta();
        type Read = (
            Option<u16>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let (shards, room, draw, per_account, campaign): Read = redis::cmd("HMGET")
            .arg(&meta)
            .arg(&[
                "shards",
                "room_opens_ms",
                "draw",
                "per_account",
                "campaign_per_account",
            ])
            .query_async(&mut redis.clone())
            .await?;
        let Some(n) = shards else {
            // not loaded: the scripts answer NO_SALE; nothing to remember
            return Ok(Shape {
                shards: 1,
                room: false,
                draw: false,
                loaded: false,
                counted: false,
            });
        };
        let shape = Shape {
            shards: n.clamp(1, MAX_SHARDS),
            room: room.is_some_and(|r| r >= 0),
            draw: draw == Some(1),
            loaded: true,
            counted: per_account.is_some_and(|n| n > 1) || campaign.is_some(),
        };
        self.known.pin().insert(goods, (shape, Instant::now()));
        Ok(shape)
    }

    /// How many shards `goods` has (1 for a sale that is not split, or not loaded).
    pub async fn shards(
        &self,
        redis: &RedisConn,
        keys: &Keys,
        goods: GoodsId,
    ) -> Result<u16, AppError> {
        Ok(self.shape(redis, keys, goods).await?.shards)
    }

    /// Forgets what was read for `goods` (its sale changed: see `crate::sales::manage`).
    pub fn forget(&self, goods: GoodsId) {
        self.known.pin().remove(&goods);
    }
}

/// What moving a unit needs: a Redis connection, the key names, the scripts, the metrics.
#[derive(Clone)]
pub struct Mover {
    pub redis: RedisConn,
    pub keys: Keys,
    pub scripts: Arc<Scripts>,
    pub metrics: Arc<Metrics>,
}

impl Mover {
    /// Moves one unit from shard `from` to shard `to`; false if `from` had none.
    pub async fn move_unit(&self, from: Shard, to: Shard) -> Result<bool, AppError> {
        let this = self.clone();
        // a task of its own: dropping the request must not stop a move between its two steps
        tokio::spawn(async move { this.move_now(from, to).await })
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("moving a unit: {e}")))?
    }

    async fn move_now(&self, from: Shard, to: Shard) -> Result<bool, AppError> {
        let (from_stock, to_stock) = (self.keys.shard(from).stock(), self.keys.shard(to).stock());
        let mut con = self.redis.clone();
        let taken = self
            .scripts
            .get()
            .take
            .invoke(&mut con, &[&from_stock], &[])
            .await?;
        if !decode_done("take.lua", taken, Code::SoldOut)? {
            return Ok(false);
        }
        // three tries to put it in `to`, then one to put it back where it came from
        let mut pauses = ConstantBuilder::default()
            .with_delay(Duration::from_millis(50))
            .with_max_times(3)
            .build();
        let mut last = None;
        for key in [&to_stock, &to_stock, &to_stock, &from_stock] {
            match con.incr::<_, _, i64>(key, 1).await {
                Ok(_) if key == &to_stock => {
                    self.metrics.stock_moves.inc();
                    return Ok(true);
                }
                Ok(_) => return Ok(false), // put back where it came from
                Err(e) => last = Some(e),
            }
            if let Some(pause) = pauses.next() {
                tokio::time::sleep(pause).await;
            }
        }
        let e = last.expect("an error");
        tracing::error!(
            goods = from.goods.get(),
            from = from.index,
            to = to.index,
            error = %e,
            "a unit taken from one shard could be put in neither: INCR {to_stock} by hand"
        );
        Err(AppError::from(e))
    }
}
