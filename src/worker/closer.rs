//! Closes unpaid orders past their time (`unpaid_timeout_secs`, default 30 min) and sells their
//! unit again.
//!
//! Two steps, each safe to repeat and to run on several workers at once:
//! 1. in one MySQL transaction: mark the order closed (only if still unpaid), delete its
//!    `seckill_order` row (so the unique index lets the unit be sold again) and put its units
//!    (`goods_count`, the buy's quantity) back into `seckill_goods.stock`;
//! 2. for closed orders whose unit is not back in Redis yet: `lua/restore.lua` gives the units
//!    and the account's allowance back in Redis (every edge clears its sold-out flag), then the order is flagged
//!    `stock_returned`. The script notes the order id and gives each closed order's unit back
//!    once, however often it is asked (even if the buyer has bought again meanwhile), so a crash
//!    or a Redis error between the two is simply retried on the next pass: nothing is lost and
//!    nothing is given back twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{WorkerCtx, pause};
use crate::domain::{GoodsId, OrderStatus, Shard, UserId};
use crate::sales::store;

pub async fn run(ctx: Arc<WorkerCtx>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_millis(ctx.state.settings.closer_interval_ms.max(50));
    loop {
        if let Err(e) = close_once(&ctx).await {
            tracing::warn!(error = %format!("{e:#}"), "closing unpaid orders failed; will retry");
        }
        if pause(every, &mut shutdown).await {
            return;
        }
    }
}

/// Step 1 for one order of `goods`, if it is still unpaid: closed, its `seckill_order` row
/// deleted, its units back in MySQL's stock, its event written, all in one transaction. Whether
/// it was closed now (false: it was paid or closed already). Step 2 (the unit back in Redis)
/// follows on the closer's next pass. The closer and the shop's server
/// (`POST /api/orders/{id}/close`) both close through here.
pub async fn close(
    state: &crate::state::AppState,
    id: i64,
    goods: GoodsId,
) -> Result<bool, sqlx::Error> {
    let mut tx = crate::plumbing::db::begin(&state.db).await?;
    let done = sqlx::query(
        "UPDATE order_info SET status = ?, closed_at = NOW(3) WHERE id = ? AND status = ?",
    )
    .bind(OrderStatus::Closed)
    .bind(id)
    .bind(OrderStatus::Unpaid)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 1 {
        // the event in the same transaction as the close (`events::outbox`)
        let at = crate::events::outbox::now();
        if crate::events::outbox::order_changed(
            &mut tx,
            &state.events,
            crate::events::EventType::Closed,
            id,
            at,
        )
        .await?
        {
            state.metrics.events_written.inc();
        }
        sqlx::query("DELETE FROM seckill_order WHERE order_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // all the order's units (goods_count: its quantity)
        let units: i32 = sqlx::query_scalar("SELECT goods_count FROM order_info WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE seckill_goods SET stock = stock + ? WHERE goods_id = ?")
            .bind(units.max(1))
            .bind(goods.get())
            .execute(&mut *tx)
            .await?;
        // a closed order moves the sale's units: it is audited again
        store::unsettle(&mut *tx, goods).await?;
    }
    tx.commit().await?;
    Ok(done == 1)
}

/// One pass of both steps; returns how many orders were closed.
pub async fn close_once(ctx: &WorkerCtx) -> anyhow::Result<usize> {
    let state = &ctx.state;
    let db = &state.db;
    let due: Vec<(i64, i64, i32)> = sqlx::query_as(
        "SELECT id, goods_id, goods_count FROM order_info WHERE status = ? \
         AND created_at < NOW(3) - INTERVAL ? SECOND ORDER BY created_at LIMIT 500",
    )
    .bind(OrderStatus::Unpaid)
    .bind(state.settings.unpaid_timeout_secs as i64)
    .fetch_all(db)
    .await?;
    let mut closed = 0;
    for (id, goods, _units) in due {
        if close(state, id, GoodsId::new(goods)?).await? {
            closed += 1;
        }
    }

    let to_return: Vec<(i64, i64, i64, i16, i32, String)> = sqlx::query_as(
        "SELECT o.id, o.user_id, o.goods_id, sg.stock_shards, o.goods_count, o.buy_key \
         FROM order_info o \
         JOIN seckill_goods sg ON sg.goods_id = o.goods_id \
         WHERE o.status = ? AND o.stock_returned = 0 LIMIT 500",
    )
    .bind(OrderStatus::Closed)
    .fetch_all(db)
    .await?;
    let mut con = state.redis.clone();
    for (id, user, goods, shards, quantity, key) in to_return {
        let (goods, user) = (GoodsId::new(goods)?, UserId::new(user)?);
        let home = Shard::home(goods, user, shards.max(1) as u16);
        let came_back = store::give_back(
            &mut con,
            &state.keys,
            &state.scripts,
            home,
            user,
            store::GiveBack::Closed { order: id },
            store::Units {
                quantity: quantity.max(1) as u32,
                key: &key,
            },
        )
        .await?;
        let noted = sqlx::query(
            "UPDATE order_info SET stock_returned = 1 WHERE id = ? AND stock_returned = 0",
        )
        .bind(id)
        .execute(db)
        .await?;
        if noted.rows_affected() == 1 {
            store::unsettle(db, goods).await?;
        }
        if came_back {
            state.metrics.closed_unpaid.inc();
            tracing::info!(
                order = id,
                user = user.get(),
                goods = goods.get(),
                "closed an unpaid order; its unit is for sale again"
            );
        }
    }
    Ok(closed)
}
