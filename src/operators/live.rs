//! A sale as operators see it: its settings, its phase, and its live state read from Redis and
//! MySQL at the moment of asking (`GET /api/admin/sales[/{id}]`, `flashgate sale list|show`).
//!
//! Where each figure comes from:
//! - stock left per shard: each shard's `stock` key;
//! - admitted, failed, dead-lettered, closed: counters in each shard's `meta`, counted by the
//!   scripts themselves (`admit.lua` counts admissions, the buys, and the units they took beyond
//!   one a buy, `extra_units`; `restore.lua` counts units given back by reason), so they are
//!   exact and survive any process;
//! - backlog and pending: each shard's queue (`XLEN`, `XPENDING`); dead letters: `XLEN` of the
//!   dead-letter stream;
//! - orders written, unpaid, paid, closed: MySQL, by status;
//! - the phase: the window and cancellation from MySQL, "sold out" from Redis.

use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::domain::{GoodsId, OrderStatus, Shard};
use crate::error::AppError;
use crate::plumbing::keys::{self, Keys};
use crate::sales::manage::SaleSpec;
use crate::sales::store::{self, Phase, SaleRow, phase_of};
use crate::sales::stores::Stores;

/// One shard's live figures from Redis.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShardState {
    pub stock: i64,
    /// Buys admitted.
    pub admitted: i64,
    /// The units those buys took (`admitted` while every buy is of one unit).
    pub admitted_units: i64,
    pub failed: i64,
    pub dead_lettered: i64,
    pub closed: i64,
    /// Queue entries not yet acked (pending included).
    pub backlog: i64,
    /// Entries delivered to a worker and not yet acked.
    pub pending: i64,
    pub dead_letters: i64,
}

/// Reads one shard's figures.
pub async fn shard_state<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    shard: Shard,
) -> redis::RedisResult<ShardState> {
    let k = keys.shard(shard);
    let (stock, counters, backlog, dead_letters): (Option<i64>, [Option<i64>; 5], i64, i64) =
        redis::pipe()
            .get(k.stock())
            .cmd("HMGET")
            .arg(k.meta())
            .arg(&[
                "admitted",
                "failed",
                "dead_lettered",
                "closed",
                "extra_units",
            ])
            .xlen(k.queue())
            .xlen(k.dead())
            .query_async(con)
            .await?;
    // no group yet (no worker has read the queue): nothing is pending
    let pending = redis::cmd("XPENDING")
        .arg(k.queue())
        .arg(keys::GROUP)
        .query_async::<(i64, redis::Value, redis::Value, redis::Value)>(con)
        .await
        .map_or(0, |p| p.0);
    let [admitted, failed, dead_lettered, closed, extra] = counters.map(Option::unwrap_or_default);
    Ok(ShardState {
        stock: stock.unwrap_or(0),
        admitted,
        admitted_units: admitted + extra,
        failed,
        dead_lettered,
        closed,
        backlog,
        pending,
        dead_letters,
    })
}

/// A sale's orders in MySQL, by status.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrderCounts {
    /// Every order written for the sale, whatever became of it.
    pub written: i64,
    pub unpaid: i64,
    pub paid: i64,
    pub closed: i64,
    pub refunded: i64,
}

pub async fn order_counts(db: &sqlx::MySqlPool, goods: GoodsId) -> sqlx::Result<OrderCounts> {
    let rows: Vec<(i8, i64)> = sqlx::query_as(
        "SELECT status, COUNT(*) FROM order_info WHERE goods_id = ? GROUP BY status",
    )
    .bind(goods.get())
    .fetch_all(db)
    .await?;
    let mut c = OrderCounts::default();
    for (status, n) in rows {
        c.written += n;
        match OrderStatus::try_from(status) {
            Ok(OrderStatus::Unpaid) => c.unpaid += n,
            Ok(OrderStatus::Paid) => c.paid += n,
            Ok(OrderStatus::Closed) => c.closed += n,
            Ok(OrderStatus::Refunded) => c.refunded += n,
            Err(_) => {}
        }
    }
    Ok(c)
}

/// A sale's live state: Redis per shard and summed, MySQL's orders and stock.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    pub stock_left: i64,
    pub shards: Vec<ShardState>,
    pub admitted: i64,
    pub admitted_units: i64,
    pub failed: i64,
    pub dead_lettered: i64,
    pub backlog: i64,
    pub pending: i64,
    pub dead_letters: i64,
    pub orders: OrderCounts,
    /// MySQL's `seckill_goods.stock`: units not in a live order, as the worker counts them.
    pub mysql_stock: i64,
    /// The waiting room, if the sale has one.
    pub room: Option<RoomState>,
    /// The draw, if it is a draw sale.
    pub draw: Option<DrawState>,
}

/// A draw sale's draw now (docs/draws.md).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrawState {
    /// `scheduled`, `registering`, `drawing`, `claiming`, `over` (`GET /api/draws/{goodsId}`).
    pub phase: &'static str,
    pub entries: i64,
    /// SHA-256 of the seed, public from the sale's making.
    pub commitment: String,
    /// Once drawn.
    pub seed: Option<String>,
    /// Claims held now (winners, and entries moved up, not bought yet).
    pub claiming: i64,
    /// Claims used: bought in time.
    pub claimed: i64,
    /// Claims that passed unused.
    pub lapsed: i64,
    /// Claims given in all (the waitlist's place in the draw's order): above the units, the
    /// waitlist moved.
    pub given: i64,
}

/// The draw of the sale in `row`, if it is a draw sale.
async fn draw_state(
    stores: &Stores,
    row: &SaleRow,
    now_ms: i64,
) -> Result<Option<DrawState>, AppError> {
    if row.register_until.is_none() {
        return Ok(None);
    }
    let Some(d) = crate::draws::record::row(&stores.db, row.goods()).await? else {
        return Ok(None);
    };
    let k = stores.keys.sale(row.goods());
    let (entries, claiming, claimed, lapsed, given): (i64, i64, i64, i64, Option<i64>) =
        redis::pipe()
            .hlen(k.draw_entries())
            .zcard(k.draw_claims())
            .scard(k.draw_claimed())
            .scard(k.draw_lapsed())
            .hget(k.draw(), "next")
            .query_async(&mut stores.redis.clone())
            .await?;
    Ok(Some(DrawState {
        phase: d.phase(now_ms),
        entries,
        commitment: d.commitment.clone(),
        seed: d.drawn().then(|| hex::encode(&d.seed)),
        claiming,
        claimed,
        lapsed,
        given: given.unwrap_or(0),
    }))
}

/// A sale's waiting room now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomState {
    /// Tickets in it.
    pub size: i64,
    /// Tickets let through so far: min(path cap, size, (now − start) × rate).
    pub through: i64,
}

/// The room of the sale in `row` now (`lua/room.lua` computes the same `through`).
async fn room_state(
    stores: &Stores,
    row: &SaleRow,
    now_ms: i64,
) -> redis::RedisResult<Option<RoomState>> {
    if row.room_opens_secs.is_none() {
        return Ok(None);
    }
    let k = stores.keys.sale(row.goods());
    let (size, cap, rate): (i64, Option<i64>, Option<f64>) = redis::pipe()
        .zcard(k.room_line())
        .hget(k.meta(), "path_cap")
        .hget(k.meta(), "room_rate")
        .query_async(&mut stores.redis.clone())
        .await?;
    let elapsed = (now_ms - row.start_ms()).max(0) as f64;
    let by_time = (elapsed * rate.unwrap_or(0.0) / 1000.0).floor() as i64;
    Ok(Some(RoomState {
        size,
        through: by_time.min(cap.unwrap_or(0)).min(size),
    }))
}

/// One sale for the operators: its settings, phase and live state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleView {
    pub goods_id: GoodsId,
    #[serde(flatten)]
    pub spec: SaleSpec,
    pub cancelled_at: Option<i64>,
    pub phase: Phase,
    pub live: LiveState,
}

/// Reads the live state of the sale in `row`.
pub async fn view_of(stores: &Stores, row: &SaleRow) -> Result<SaleView, AppError> {
    let con = &mut stores.redis.clone();
    row.teach(&stores.keys);
    let mut shards = Vec::new();
    for shard in Shard::all(row.goods(), row.shards()) {
        shards.push(shard_state(con, &stores.keys, shard).await?);
    }
    let sum = |f: fn(&ShardState) -> i64| shards.iter().map(f).sum::<i64>();
    let live = LiveState {
        stock_left: sum(|s| s.stock),
        admitted: sum(|s| s.admitted),
        admitted_units: sum(|s| s.admitted_units),
        failed: sum(|s| s.failed),
        dead_lettered: sum(|s| s.dead_lettered),
        backlog: sum(|s| s.backlog),
        pending: sum(|s| s.pending),
        dead_letters: sum(|s| s.dead_letters),
        orders: order_counts(&stores.db, row.goods()).await?,
        mysql_stock: i64::from(row.stock),
        room: room_state(stores, row, chrono::Utc::now().timestamp_millis()).await?,
        draw: draw_state(stores, row, chrono::Utc::now().timestamp_millis()).await?,
        shards,
    };
    Ok(SaleView {
        goods_id: row.goods(),
        spec: SaleSpec::from_row(row),
        cancelled_at: row.cancelled_ms(),
        phase: phase_of(
            row,
            Some(live.stock_left),
            chrono::Utc::now().timestamp_millis(),
        ),
        live,
    })
}

/// One sale's view; `NotFound` if there is none.
pub async fn view(stores: &Stores, goods: GoodsId) -> Result<SaleView, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    view_of(stores, &row).await
}

/// Every sale's view, newest first, at most `limit`.
pub async fn list(stores: &Stores, limit: usize) -> Result<Vec<SaleView>, AppError> {
    let rows = tokio::time::timeout(Duration::from_secs(5), store::newest(&stores.db, limit))
        .await
        .map_err(|_| AppError::Unavailable(crate::error::Dependency::Mysql))??;
    let mut views = Vec::new();
    for row in &rows {
        views.push(view_of(stores, row).await?);
    }
    Ok(views)
}
