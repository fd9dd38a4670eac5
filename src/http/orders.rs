//! `GET /api/orders/{id}` and `POST /api/orders/{id}/pay`: the shopper's own orders.
//!
//! Someone else's order is answered 404, exactly like a missing one, so ids cannot be probed.

use chrono::NaiveDateTime;
use hyper::Request;
use hyper::body::Incoming;
use serde::Serialize;

use super::respond::{self, Resp};
use crate::domain::{OrderId, OrderStatus};
use crate::error::AppError;
use crate::events::{EventType, outbox};
use crate::state::AppState;

#[derive(Debug, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: i64,
    pub user_id: i64,
    pub goods_id: i64,
    pub goods_name: String,
    pub goods_count: i32,
    pub goods_price: f64,
    /// 0 unpaid, 1 paid, 2 closed ([`OrderStatus`]).
    pub status: OrderStatus,
    #[serde(serialize_with = "epoch_ms")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "opt_epoch_ms")]
    pub paid_at: Option<NaiveDateTime>,
}

fn epoch_ms<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(t.and_utc().timestamp_millis())
}

fn opt_epoch_ms<S: serde::Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => epoch_ms(t, s),
        None => s.serialize_none(),
    }
}

async fn own_order(state: &AppState, id: OrderId, user: i64) -> Result<OrderView, AppError> {
    sqlx::query_as(
        "SELECT id, user_id, goods_id, goods_name, goods_count, \
         CAST(goods_price AS DOUBLE) AS goods_price, status, created_at, paid_at \
         FROM order_info WHERE id = ? AND user_id = ?",
    )
    .bind(id.get())
    .bind(user)
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound)
}

pub async fn get(req: Request<Incoming>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    let id = OrderId::parse(id)?;
    let user = respond::user(&req, state).await?;
    Ok(respond::ok(own_order(state, id, user.id.get()).await?))
}

/// Marks an unpaid order paid (simulated payment). Paying twice is fine; a closed order is 409.
pub async fn pay(req: Request<Incoming>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    respond::require_json(&req)?;
    let id = OrderId::parse(id)?;
    let user = respond::user(&req, state).await?;
    // the payment and its event (orders out) in one transaction
    let mut tx = crate::plumbing::db::begin(&state.db).await?;
    let at = outbox::now();
    let paid = sqlx::query(
        "UPDATE order_info SET status = ?, paid_at = ? WHERE id = ? AND user_id = ? AND status = ?",
    )
    .bind(OrderStatus::Paid)
    .bind(at)
    .bind(id.get())
    .bind(user.id.get())
    .bind(OrderStatus::Unpaid)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if paid == 1
        && outbox::order_changed(&mut tx, &state.events, EventType::Paid, id.get(), at).await?
    {
        state.metrics.events_written.inc();
    }
    tx.commit().await?;
    let order = own_order(state, id, user.id.get()).await?;
    if order.status != OrderStatus::Paid {
        return Err(AppError::OrderClosed);
    }
    Ok(respond::ok(order))
}
