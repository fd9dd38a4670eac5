//! Writing order events into the outbox, inside the caller's transaction. A worker batch's created
//! events are one `event_batch` row per configured sink listing the orders (the order rows are
//! their record); a paid, closed or failed event is an `order_event` row and one delivery row per
//! sink (`event_delivery`): two statements whatever the number of events (the rows travel as one
//! JSON document through `JSON_TABLE`, as the worker's orders do).
//!
//! An event's `data` is written as it is at the time (the order, the shopper and the shop's
//! subject, the sale's product reference, the price in minor units), so an event says what was
//! true when it happened. An event's id names what it reports: `created-ORDER`, `paid-ORDER`,
//! `closed-ORDER` (an order is written, paid and closed at most once each), `failed-ENTRY-USER`
//! (so a dead-lettering run again after a crash between the outbox and the dead-letter stream
//! writes nothing twice). Ids that grow with the order ids also keep the unique index's inserts
//! in order, where random UUIDs would scatter them.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::json;
use sqlx::{MySql, Transaction};

use super::{EventSettings, EventType};
use crate::domain::{GoodsId, UserId};

/// One event to write.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub kind: EventType,
    /// 0 for a failed buy (no order).
    pub order: i64,
    pub goods: GoodsId,
    pub user: UserId,
    pub data: serde_json::Value,
    pub at: NaiveDateTime,
}

#[derive(Serialize)]
struct Row<'a> {
    ev: &'a str,
    t: i8,
    o: i64,
    g: i64,
    u: i64,
    d: String,
    at: String,
}

const INSERT_EVENTS: &str = "INSERT INTO order_event \
     (event_id, type, order_id, goods_id, user_id, data, created_at) \
     SELECT j.ev, j.t, j.o, j.g, j.u, j.d, j.at FROM JSON_TABLE(?, '$[*]' COLUMNS(\
     ev VARCHAR(64) PATH '$.ev', t INT PATH '$.t', o BIGINT PATH '$.o', g BIGINT PATH '$.g', \
     u BIGINT PATH '$.u', d TEXT PATH '$.d', at DATETIME(3) PATH '$.at')) j \
     WHERE 1 = 1 ON DUPLICATE KEY UPDATE event_id = order_event.event_id";
const INSERT_DELIVERIES: &str = "INSERT INTO event_delivery \
     (sink, event_id, type, order_id, next_at, created_at) \
     SELECT s.sink, j.ev, j.t, j.o, NOW(3), NOW(3) FROM JSON_TABLE(?, '$[*]' COLUMNS(\
     ev VARCHAR(64) PATH '$.ev', t INT PATH '$.t', o BIGINT PATH '$.o')) j \
     CROSS JOIN JSON_TABLE(?, '$[*]' COLUMNS(sink VARCHAR(64) PATH '$')) s \
     WHERE 1 = 1 ON DUPLICATE KEY UPDATE event_id = event_delivery.event_id";
/// A batch's created events: one `event_batch` row per sink, listing the orders (the order rows
/// are the events' record; the relay builds their bodies from them).
const INSERT_CREATED: &str = "INSERT INTO event_batch \
     (sink, orders, events, first_order, last_order, created_at) \
     SELECT s.sink, ?, ?, ?, ?, NOW(3) \
     FROM JSON_TABLE(?, '$[*]' COLUMNS(sink VARCHAR(64) PATH '$')) s";

/// Records the created events of `orders`, just written in `tx`: one row per sink whatever the
/// number of orders (`event_batch`); nothing when no sink is configured.
pub async fn created(
    tx: &mut Transaction<'_, MySql>,
    settings: &EventSettings,
    orders: &[i64],
) -> Result<(), sqlx::Error> {
    if !settings.on() || orders.is_empty() {
        return Ok(());
    }
    let (first, last) = orders
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &o| (lo.min(o), hi.max(o)));
    sqlx::query(INSERT_CREATED)
        .bind(serde_json::to_string(orders).expect("ids serialise"))
        .bind(orders.len() as i64)
        .bind(first)
        .bind(last)
        .bind(serde_json::to_string(&settings.sink_names()).expect("names serialise"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// (`WHERE 1 = 1`: without a WHERE, the parser takes `ON DUPLICATE` for a join condition.)
/// Writes `events` and their deliveries in `tx`; nothing when no sink is configured.
pub async fn write(
    tx: &mut Transaction<'_, MySql>,
    settings: &EventSettings,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    if !settings.on() || events.is_empty() {
        return Ok(());
    }
    let rows: Vec<Row> = events
        .iter()
        .map(|e| Row {
            ev: &e.event_id,
            t: e.kind as i8,
            o: e.order,
            g: e.goods.get(),
            u: e.user.get(),
            d: e.data.to_string(),
            at: e.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        })
        .collect();
    let json = serde_json::to_string(&rows).expect("rows serialise");
    sqlx::query(INSERT_EVENTS)
        .bind(&json)
        .execute(&mut **tx)
        .await?;
    sqlx::query(INSERT_DELIVERIES)
        .bind(&json)
        .bind(serde_json::to_string(&settings.sink_names()).expect("names serialise"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A price as MySQL gives it (`"12.30"`) in minor units (1230).
pub fn minor_units(price: &str) -> i64 {
    let (whole, frac) = price.trim().split_once('.').unwrap_or((price.trim(), ""));
    let frac: String = frac.chars().chain("00".chars()).take(2).collect();
    whole.parse::<i64>().unwrap_or(0) * 100 + frac.parse::<i64>().unwrap_or(0)
}

/// What an event says about its order's sale and shopper.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub price: String,
    pub product: Option<String>,
    pub shop_user: Option<String>,
    /// The units of the order (its `goods_count`) or of the buy given up on.
    pub quantity: i64,
}

/// The `data` of an event: the order, its sale and shopper, and `extra` (the time of the change).
pub fn data(
    settings: &EventSettings,
    order: Option<i64>,
    goods: GoodsId,
    user: UserId,
    facts: &Facts,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut d = json!({
        "orderId": order,
        "goodsId": goods.get(),
        "userId": user.get(),
        "price": minor_units(&facts.price),
        "currency": settings.currency,
        "quantity": facts.quantity.max(1),
    });
    if let Some(s) = &facts.shop_user {
        d["shopUser"] = json!(s);
    }
    if let Some(p) = &facts.product {
        d["product"] = json!(p);
    }
    for (k, v) in extra.as_object().into_iter().flatten() {
        d[k] = v.clone();
    }
    d
}

/// The shop subjects of `users` (those that have one), read in `tx` without locking. (An `IN`
/// list of numbers, not a join with `JSON_TABLE`, which MariaDB would answer by scanning
/// `users`.)
pub async fn subjects(
    tx: &mut Transaction<'_, MySql>,
    users: &[i64],
) -> Result<std::collections::HashMap<i64, String>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, subject FROM users WHERE id IN ({}) AND subject IS NOT NULL",
        numbers(users)
    )))
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, s)| (id, crate::identity::subjects::text(s)))
        .collect())
}

/// Writes the event of an order's change of state (paid, closed) in `tx`, built from the order
/// (after the change): its sale, shopper and price as the order has them. Whether one was
/// written (none while no sink is configured).
pub async fn order_changed(
    tx: &mut Transaction<'_, MySql>,
    settings: &EventSettings,
    kind: EventType,
    order: i64,
    at: NaiveDateTime,
) -> Result<bool, sqlx::Error> {
    if !settings.on() {
        return Ok(false);
    }
    let events = from_orders(tx, settings, kind, &[order], Some(at)).await?;
    write(tx, settings, &events).await?;
    Ok(!events.is_empty())
}

/// The events of `kind` for `orders`, built from their order rows in `tx`: the sale, shopper and
/// price as each order has them. A created event's record is its order row (the relay builds
/// its body here); a paid or closed one is written from it. `at`: when the change happened
/// (`None` for created: the order's own time).
pub async fn from_orders(
    tx: &mut Transaction<'_, MySql>,
    settings: &EventSettings,
    kind: EventType,
    orders: &[i64],
    at: Option<NaiveDateTime>,
) -> Result<Vec<NewEvent>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    /// order, goods, user, price, created at, shop subject, product reference, units, and for
    /// an order bought under a draw's claim: the sale's secret, the entry's place, the claim's end
    type OrderRow = (
        i64,
        i64,
        i64,
        String,
        NaiveDateTime,
        Option<Vec<u8>>,
        Option<String>,
        i32,
        Option<Vec<u8>>,
        Option<i32>,
        Option<NaiveDateTime>,
    );
    let rows: Vec<OrderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id, o.goods_id, o.user_id, CAST(o.goods_price AS CHAR), o.created_at, \
         u.subject, sg.external_ref, o.goods_count, d.secret, c.place, c.claim_until \
         FROM order_info o \
         LEFT JOIN users u ON u.id = o.user_id \
         LEFT JOIN seckill_goods sg ON sg.goods_id = o.goods_id \
         LEFT JOIN sale_draw_claim c ON c.goods_id = o.goods_id AND c.user_id = o.user_id \
         LEFT JOIN sale_draw d ON d.goods_id = c.goods_id WHERE o.id IN ({})",
        numbers(orders)
    )))
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (order, goods, user, price, created, shop_user, product, quantity) =
            (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
        let (Ok(goods), Ok(user)) = (GoodsId::new(goods), UserId::new(user)) else {
            continue;
        };
        let facts = Facts {
            price,
            product,
            shop_user: shop_user.map(crate::identity::subjects::text),
            quantity: i64::from(quantity),
        };
        let at = at.unwrap_or(created);
        let mut extra = json!({ "createdAt": created.and_utc().timestamp_millis() });
        match kind {
            EventType::Paid => extra["paidAt"] = json!(at.and_utc().timestamp_millis()),
            EventType::Closed => extra["closedAt"] = json!(at.and_utc().timestamp_millis()),
            EventType::Created | EventType::Failed => {}
        }
        // bought under a draw's claim: the entry's digest (as published), place and claim
        if let (Some(secret), Some(place), Some(until)) = (row.8, row.9, row.10) {
            let keyed = crate::draws::order::Keyed::new(&secret);
            let part = crate::draws::record::part(&keyed, goods.get(), user.get(), place, until);
            extra["draw"] = json!(part);
        }
        out.push(NewEvent {
            event_id: event_id(kind, order),
            kind,
            order,
            goods,
            user,
            data: data(settings, Some(order), goods, user, &facts, extra),
            at,
        });
    }
    Ok(out)
}

/// A list of numbers for `IN (…)`: numbers only, so nothing can be injected. (`IN` lists, not a
/// join with `JSON_TABLE`, which MariaDB answers by scanning the joined table.)
pub fn numbers(list: &[i64]) -> String {
    list.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The id of an order's event of `kind` (created, paid, closed).
pub fn event_id(kind: EventType, order: i64) -> String {
    let what = kind.name().rsplit('.').next().unwrap_or("event");
    format!("{what}-{order}")
}

/// A buy given up on: its shopper, its queue entry, its units and its `Idempotency-Key` digest
/// (`""`: none).
#[derive(Debug, Clone, Copy)]
pub struct GivenUp<'a> {
    pub user: UserId,
    pub entry: &'a str,
    pub quantity: u32,
    pub key: &'a str,
}

/// The event of a buy given up on: a shopper told "queued" whose entry could not be written
/// (dead-lettered, or MySQL had no unit left). No order; its id names the entry and the user
/// (and the buy's key digest, for a buy with one: an entry may hold two buys of one shopper).
pub fn failed(
    settings: &EventSettings,
    goods: GoodsId,
    buy: &GivenUp<'_>,
    reason: &str,
    facts: &Facts,
    at: NaiveDateTime,
) -> NewEvent {
    let (user, entry) = (buy.user, buy.entry);
    let extra = json!({
        "requestId": entry,
        "reason": reason,
        "failedAt": at.and_utc().timestamp_millis(),
    });
    NewEvent {
        event_id: match buy.key {
            "" => format!("failed-{entry}-{}", user.get()),
            key => format!("failed-{entry}-{}-{key}", user.get()),
        },
        kind: EventType::Failed,
        order: 0,
        goods,
        user,
        data: data(settings, None, goods, user, facts, extra),
        at,
    }
}

/// Records the failed events of a dead-lettered entry's `buys`, in a transaction of its own
/// (the change it reports is in Redis); written again by a dead-lettering run again, it is the
/// same event (its id names the entry).
pub async fn failed_buys(
    db: &sqlx::MySqlPool,
    settings: &EventSettings,
    goods: GoodsId,
    buys: &[GivenUp<'_>],
    reason: &str,
) -> Result<(), sqlx::Error> {
    if !settings.on() || buys.is_empty() {
        return Ok(());
    }
    let mut tx = crate::plumbing::db::begin(db).await?;
    write_failed(&mut tx, settings, goods, buys, reason, None).await?;
    tx.commit().await
}

/// Writes in `tx` the failed events of buys given up on (see
/// [`failed`]), with each shopper's shop subject; `sale`: the sale's price and product reference
/// when the caller has them (else read here).
pub async fn write_failed(
    tx: &mut Transaction<'_, MySql>,
    settings: &EventSettings,
    goods: GoodsId,
    failures: &[GivenUp<'_>],
    reason: &str,
    sale: Option<(String, Option<String>)>,
) -> Result<(), sqlx::Error> {
    if !settings.on() || failures.is_empty() {
        return Ok(());
    }
    let (price, product) = match sale {
        Some(s) => s,
        None => sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT CAST(seckill_price AS CHAR), external_ref FROM seckill_goods WHERE goods_id = ?",
        )
        .bind(goods.get())
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or_default(),
    };
    let users: Vec<i64> = failures.iter().map(|f| f.user.get()).collect();
    let subjects = subjects(tx, &users).await?;
    let at = now();
    let rows: Vec<NewEvent> = failures
        .iter()
        .map(|buy| {
            let facts = Facts {
                price: price.clone(),
                product: product.clone(),
                shop_user: subjects.get(&buy.user.get()).cloned(),
                quantity: i64::from(buy.quantity),
            };
            failed(settings, goods, buy, reason, &facts, at)
        })
        .collect();
    write(tx, settings, &rows).await
}

/// The time now, as MySQL's `DATETIME(3)` holds it (UTC).
pub fn now() -> NaiveDateTime {
    let ms = crate::plumbing::clock::now_ms();
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("now is a valid time")
        .naive_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_become_minor_units() {
        assert_eq!(minor_units("12.30"), 1230);
        assert_eq!(minor_units("1.00"), 100);
        assert_eq!(minor_units("7999"), 799900);
        assert_eq!(minor_units("0.5"), 50);
    }
}
