//! `GET /api/orders/{id}` and `POST /api/orders/{id}/pay`: the shopper's own orders; and paying
//! or closing any order from the shop's server.
//!
//! Someone else's order is answered 404, exactly like a missing one, so ids cannot be probed.
//!
//! **Who pays.** On the public listener only a flashgate session pays (the seeds' demo and its pay
//! button, `auth = session` or `both`); a shopper holding the shop's token never pays nor closes
//! (403, 500261): a browser is no proof of payment. The shop's server does, on the admin listener
//! with `FLASHGATE_GRANT_REDEEM_TOKEN`: `POST /api/orders/{id}/pay` and `/close`, idempotent,
//! each answering the order.

use chrono::NaiveDateTime;
use hyper::Request;
use serde::Serialize;

use super::respond::{self, Resp};
use crate::domain::{OrderId, OrderStatus};
use crate::error::AppError;
use crate::events::{EventType, outbox};
use crate::identity::Credential;
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

/// The order `id`, if it is `user`'s (any user's: `None`, for the shop's server).
async fn order(state: &AppState, id: OrderId, user: Option<i64>) -> Result<OrderView, AppError> {
    sqlx::query_as(
        "SELECT id, user_id, goods_id, goods_name, goods_count, \
         CAST(goods_price AS DOUBLE) AS goods_price, status, created_at, paid_at \
         FROM order_info WHERE id = ? AND (? IS NULL OR user_id = ?)",
    )
    .bind(id.get())
    .bind(user)
    .bind(user)
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound)
}

async fn own_order(state: &AppState, id: OrderId, user: i64) -> Result<OrderView, AppError> {
    order(state, id, Some(user)).await
}

pub async fn get<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    let id = OrderId::parse(id)?;
    let user = respond::user(&req, state).await?;
    Ok(respond::ok(own_order(state, id, user.id.get()).await?))
}

/// Marks the shopper's unpaid order paid (simulated payment: the demo's pay button). Paying twice
/// is fine; a closed order is 409. The shop's token never pays (403, 500261).
pub async fn pay<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    respond::require_json(&req)?;
    let id = OrderId::parse(id)?;
    let credential = respond::credential(&req, state)?;
    if matches!(credential, Credential::Shop(_)) {
        return Err(AppError::ShopServerOnly);
    }
    let user = respond::user_of(&credential, state).await?;
    mark_paid(state, id, Some(user.id.get())).await?;
    let order = own_order(state, id, user.id.get()).await?;
    if order.status != OrderStatus::Paid {
        return Err(AppError::OrderClosed);
    }
    Ok(respond::ok(order))
}

/// Marks order `id` paid if it is unpaid (and `user`'s, when given), with its event (orders out)
/// in the same transaction.
async fn mark_paid(state: &AppState, id: OrderId, user: Option<i64>) -> Result<(), AppError> {
    let mut tx = crate::plumbing::db::begin(&state.db).await?;
    let at = outbox::now();
    let paid = sqlx::query(
        "UPDATE order_info SET status = ?, paid_at = ? \
         WHERE id = ? AND (? IS NULL OR user_id = ?) AND status = ?",
    )
    .bind(OrderStatus::Paid)
    .bind(at)
    .bind(id.get())
    .bind(user)
    .bind(user)
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
    Ok(())
}

/// `POST /api/orders/{id}/pay` on the admin listener: the shop's server says the order is paid
/// (bearer `FLASHGATE_GRANT_REDEEM_TOKEN`). Idempotent: a paid order is answered as it is; a
/// closed one is 409 (500506).
pub async fn shop_pay<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    super::grants::check_shop(&req, state)?;
    respond::require_json(&req)?;
    let id = OrderId::parse(id)?;
    mark_paid(state, id, None).await?;
    let order = order(state, id, None).await?;
    if order.status != OrderStatus::Paid {
        return Err(AppError::OrderClosed);
    }
    Ok(respond::ok(order))
}

/// `POST /api/orders/{id}/close` on the admin listener: the shop's server gives up an unpaid
/// order (its unit goes back on sale: in MySQL now, in Redis on the worker's next closer pass).
/// Idempotent: a closed order is answered as it is; a paid one is 409 (500262).
pub async fn shop_close<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    super::grants::check_shop(&req, state)?;
    respond::require_json(&req)?;
    let id = OrderId::parse(id)?;
    let found = order(state, id, None).await?;
    let goods = crate::domain::GoodsId::new(found.goods_id)?;
    crate::worker::closer::close(state, id.get(), goods).await?;
    let order = order(state, id, None).await?;
    if order.status == OrderStatus::Paid {
        return Err(AppError::OrderPaid);
    }
    Ok(respond::ok(order))
}
