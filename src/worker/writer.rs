//! The order writer: one MySQL transaction for a batch of admitted requests of one sale.
//!
//! Per batch, whatever its size, the same six statements (so each is prepared once per
//! connection and reused; a batch's rows travel as one JSON document through `JSON_TABLE`):
//! 1. find the requests whose (user, goods, buy key) already has an order: a replayed stream
//!    entry is "already done" and answers with the existing order id, it does not fail the batch
//!    (the buy key is the digest of the buy's `Idempotency-Key`, `''` without one: a buy without
//!    a key is one per (user, goods), as before quantities);
//! 2. the goods' name and price (a plain read); the batch's 1024 order ids come from a block taken
//!    before the transaction (`order_block`, bumped with `LAST_INSERT_ID(expr)`: portable to MySQL 8
//!    and MariaDB, and its row lock lasts one autocommit statement, not a batch);
//! 3. `INSERT … order_info` (`goods_count` the buy's quantity) and 4. `INSERT … seckill_order`,
//!    all rows at once;
//! 5. `UPDATE seckill_goods SET stock = stock - n WHERE goods_id = ? AND stock >= n` (n: the
//!    units of the batch's new orders), last, so the row lock every writer of the sale queues on
//!    is held only for the commit. If MySQL has fewer than n left, the transaction is rolled back
//!    and run again locking the row first: the entries, in order, get their units while enough
//!    are left for the whole buy, and the others fail (a buy is all or nothing).
//!
//! Before all of it, the fence ([`super::fence`]): the transaction reads this worker's epoch under a
//! shared lock and commits only if no other worker has taken the batch over.
//!
//! The unique index on `seckill_order (user_id, goods_id, buy_key)` is the last line against duplicates:
//! if two workers race on the same entry, one commit fails with a unique violation, and the
//! caller runs the batch again, which then finds the other's order in step 1.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::MySqlPool;

use super::fence::{self, Checked};
use crate::domain::{GoodsId, OrderStatus, UserId};
use crate::events::{EventSettings, outbox};

/// One admitted request, as the edge put it in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The stream entry id (also the order's request id: what a replay is recognised by).
    pub entry_id: String,
    pub user: UserId,
    /// Units bought (`q` in the entry; 1 in an entry of a version before quantities).
    pub quantity: u32,
    /// The digest of the buy's `Idempotency-Key` (`k` in the entry), if it had one: one order
    /// per (user, sale, key), where a buy without a key is one per (user, sale) as before.
    pub key: Option<String>,
}

impl Admitted {
    /// An entry's buy of one unit without a key (the only kind before quantities).
    pub fn one(entry_id: String, user: UserId) -> Self {
        Self {
            entry_id,
            user,
            quantity: 1,
            key: None,
        }
    }

    /// The buy as its failed event names it (`events::outbox::failed`).
    pub fn given_up(&self) -> outbox::GivenUp<'_> {
        outbox::GivenUp {
            user: self.user,
            entry: &self.entry_id,
            quantity: self.quantity,
            key: self.key_column(),
        }
    }

    /// The buy's key as the `buy_key` column holds it (`''` for none).
    pub fn key_column(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }
}

/// What became of one admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A new order.
    Order(i64),
    /// The (user, goods) had an order already: this entry was a replay.
    Existing(i64),
    /// No unit left in MySQL: the unit must be given back in Redis and the user told -1.
    Failed,
}

impl Written {
    /// The value the shopper's page polls for.
    pub fn result(self) -> i64 {
        match self {
            Written::Order(id) | Written::Existing(id) => id,
            Written::Failed => -1,
        }
    }
}

pub const FIND_EXISTING: &str = "SELECT so.user_id, so.buy_key, so.order_id FROM seckill_order so \
     JOIN JSON_TABLE(?, '$[*]' COLUMNS(u BIGINT PATH '$.u', k VARCHAR(32) PATH '$.k')) j \
     ON so.user_id = j.u AND so.buy_key = j.k WHERE so.goods_id = ?";
pub const TAKE_STOCK: &str =
    "UPDATE seckill_goods SET stock = stock - ? WHERE goods_id = ? AND stock >= ?";
pub const STOCK_LEFT: &str = "SELECT stock FROM seckill_goods WHERE goods_id = ? FOR UPDATE";
/// One statement, autocommitted: the new block number becomes this connection's
/// `LAST_INSERT_ID()`, which the driver returns with the result (no second round trip).
pub const ID_BLOCK: &str =
    "UPDATE order_block SET next_block = LAST_INSERT_ID(next_block + 1) WHERE id = 1";
/// A plain (consistent, non-locking) read: an `INSERT … SELECT` joining `seckill_goods` would take
/// a shared lock on the stock row, and concurrent batches would then deadlock on the UPDATE.
pub const SALE_INFO: &str = "SELECT g.name, CAST(sg.seckill_price AS CHAR), sg.external_ref \
     FROM goods g JOIN seckill_goods sg ON sg.goods_id = g.id WHERE g.id = ?";
pub const INSERT_ORDERS: &str = "INSERT INTO order_info \
     (id, user_id, goods_id, goods_name, goods_count, goods_price, status, request_id, buy_key, \
      created_at) \
     SELECT j.id, j.u, ?, ?, j.q, ?, ?, j.r, j.k, NOW(3) \
     FROM JSON_TABLE(?, '$[*]' COLUMNS(id BIGINT PATH '$.id', u BIGINT PATH '$.u', \
          q INT PATH '$.q', r VARCHAR(64) PATH '$.r', k VARCHAR(32) PATH '$.k')) j";
pub const INSERT_SECKILL: &str = "INSERT INTO seckill_order (user_id, order_id, goods_id, buy_key) \
     SELECT j.u, j.id, ?, j.k FROM JSON_TABLE(?, '$[*]' COLUMNS(id BIGINT PATH '$.id', \
          u BIGINT PATH '$.u', k VARCHAR(32) PATH '$.k')) j";

/// Order ids per block: `block * IDS_PER_BLOCK + i`.
pub const IDS_PER_BLOCK: i64 = 1024;

#[derive(Serialize)]
struct Row<'a> {
    id: i64,
    u: i64,
    r: &'a str,
    q: u32,
    k: &'a str,
}

/// A buy as the unique index knows it: (user, buy key); `''` for a buy without a key.
type BuyId = (UserId, String);

fn buy_id(a: &Admitted) -> BuyId {
    (a.user, a.key_column().to_string())
}

/// Who may commit a batch: the consumer that read it, with the fence epoch it held then
/// (see [`super::fence`]). `None` writes unfenced (RabbitMQ consumers, whose broker redelivers
/// only after the consumer's channel is gone).
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub consumer: &'a str,
    pub epoch: i64,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    /// Committed: each entry's outcome, in order.
    Written(Vec<Written>),
    /// Not committed: another worker had taken the entries over (the fence moved).
    Fenced,
}

/// Writes a batch (at most [`IDS_PER_BLOCK`] entries) in one transaction; returns what became of
/// each entry, in order. An `Err` means nothing was committed.
pub async fn write_batch(
    db: &MySqlPool,
    events: &EventSettings,
    goods: GoodsId,
    batch: &[Admitted],
    holder: Option<Holder<'_>>,
) -> Result<Batch, sqlx::Error> {
    assert!(
        batch.len() as i64 <= IDS_PER_BLOCK,
        "batch larger than an id block"
    );
    match write(db, events, goods, batch, holder, Stock::TakeLast).await? {
        Pass::Done(batch) => Ok(batch),
        // MySQL had fewer units than the batch wanted: run it again, locking the row first
        Pass::NotEnoughStock => {
            match write(db, events, goods, batch, holder, Stock::LockFirst).await? {
                Pass::Done(batch) => Ok(batch),
                Pass::NotEnoughStock => unreachable!("the lock-first pass always decides"),
            }
        }
    }
}

/// One pass of the transaction.
enum Pass {
    Done(Batch),
    /// `TakeLast` found fewer units than it needed, and rolled back.
    NotEnoughStock,
}

/// When the transaction touches the sale's stock row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stock {
    /// Insert the orders, then take all units at once just before COMMIT: the row lock, which
    /// serialises every writer of the sale, is held only for the UPDATE and the commit, so
    /// concurrent batches overlap their inserts. Gives up (rolls back, `None`) if MySQL has
    /// fewer units than asked.
    TakeLast,
    /// Lock the row first, see how many units are left, order that many, fail the rest.
    LockFirst,
}

/// One pass of the transaction described in the module comment.
async fn write(
    db: &MySqlPool,
    events: &EventSettings,
    goods: GoodsId,
    batch: &[Admitted],
    holder: Option<Holder<'_>>,
    mode: Stock,
) -> Result<Pass, sqlx::Error> {
    // a block taken and then rolled back is simply skipped: ids need not be dense
    let block = allocate_block(db).await?;
    let mut tx = crate::plumbing::db::begin(db).await?;
    if let Some(h) = holder
        && fence::check(&mut tx, h.consumer, h.epoch).await? == Checked::Fenced
    {
        tx.rollback().await?;
        return Ok(Pass::Done(Batch::Fenced));
    }
    let existing = find_existing(&mut tx, goods, batch).await?;
    let (mut results, fresh) = plan(batch, &existing);

    let units = |entries: &[usize]| entries.iter().map(|&i| i64::from(batch[i].quantity)).sum();
    let (ordered, failed): (Vec<usize>, Vec<usize>) = match mode {
        Stock::TakeLast => (fresh, Vec::new()),
        Stock::LockFirst => grant_what_is_left(&mut tx, goods, batch, &fresh).await?,
    };
    let (ordered, failed) = (&ordered[..], &failed[..]);
    for &i in failed {
        results[i] = Some(Written::Failed);
    }
    let (mut created, mut sale) = (Vec::new(), None);
    if !ordered.is_empty() {
        let (ids, info) = insert_orders(&mut tx, goods, block, batch, ordered).await?;
        for (&id, &i) in ids.iter().zip(ordered) {
            results[i] = Some(Written::Order(id));
        }
        (created, sale) = (ids, Some(info));
        if mode == Stock::TakeLast && !take_stock(&mut tx, goods, units(ordered)).await? {
            tx.rollback().await?;
            return Ok(Pass::NotEnoughStock);
        }
    }
    if events.on() {
        // the orders' events, and the failures', in this same transaction (`events::outbox`)
        record_events(&mut tx, events, goods, batch, &created, failed, sale).await?;
    }
    tx.commit().await?;
    Ok(Pass::Done(Batch::Written(settle(batch, results))))
}

/// The outbox rows of a batch: its new orders' created events (a batch row per sink: the order
/// rows are their record), a failed event per entry MySQL had no unit for (its id names the entry
/// and user, so a replay of the batch writes it once).
async fn record_events(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    events: &EventSettings,
    goods: GoodsId,
    batch: &[Admitted],
    created: &[i64],
    failed: &[usize],
    sale: Option<(String, Option<String>)>,
) -> Result<(), sqlx::Error> {
    outbox::created(tx, events, created).await?;
    let failures: Vec<outbox::GivenUp> = failed.iter().map(|&i| batch[i].given_up()).collect();
    outbox::write_failed(tx, events, goods, &failures, "sold out in MySQL", sale).await
}

/// A fresh block of [`IDS_PER_BLOCK`] order ids (its number; ids are `block * 1024 + i`).
pub async fn allocate_block(db: &MySqlPool) -> Result<i64, sqlx::Error> {
    let done = sqlx::query(ID_BLOCK).execute(db).await?;
    if done.rows_affected() != 1 {
        return Err(sqlx::Error::RowNotFound); // the one row of order_block is missing
    }
    Ok(done.last_insert_id() as i64)
}

/// The order id of every buy of the batch that has one for this sale already.
async fn find_existing(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    goods: GoodsId,
    batch: &[Admitted],
) -> Result<HashMap<BuyId, i64>, sqlx::Error> {
    let buys: Vec<serde_json::Value> = batch
        .iter()
        .map(|a| serde_json::json!({ "u": a.user.get(), "k": a.key_column() }))
        .collect();
    let mut found = HashMap::new();
    for (user, key, order) in sqlx::query_as::<_, (i64, String, i64)>(FIND_EXISTING)
        .bind(serde_json::to_string(&buys).expect("ids serialise"))
        .bind(goods.get())
        .fetch_all(&mut **tx)
        .await?
    {
        if let Ok(user) = UserId::new(user) {
            found.insert((user, key), order);
        }
    }
    Ok(found)
}

/// Each entry's result where it is known already (a replay), and the entries that need a new
/// order: not ordered before, and the first of their buy (user and key) in this batch.
fn plan(batch: &[Admitted], existing: &HashMap<BuyId, i64>) -> (Vec<Option<Written>>, Vec<usize>) {
    let results: Vec<Option<Written>> = batch
        .iter()
        .map(|a| existing.get(&buy_id(a)).map(|&id| Written::Existing(id)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let fresh = (0..batch.len())
        .filter(|&i| results[i].is_none() && seen.insert(buy_id(&batch[i])))
        .collect();
    (results, fresh)
}

/// Locks the stock row and, in the batch's order, orders each fresh entry whose units are all
/// still left (all or nothing); takes the units of those it ordered. Returns the entries
/// ordered and the entries failed.
async fn grant_what_is_left(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    goods: GoodsId,
    batch: &[Admitted],
    fresh: &[usize],
) -> Result<(Vec<usize>, Vec<usize>), sqlx::Error> {
    if fresh.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let left = sqlx::query_scalar::<_, i32>(STOCK_LEFT)
        .bind(goods.get())
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or(0)
        .max(0) as i64;
    let (mut ordered, mut failed, mut remaining) = (Vec::new(), Vec::new(), left);
    for &i in fresh {
        let q = i64::from(batch[i].quantity);
        if q <= remaining {
            remaining -= q;
            ordered.push(i);
        } else {
            failed.push(i);
        }
    }
    if left > remaining {
        take_stock(tx, goods, left - remaining).await?;
    }
    if !failed.is_empty() {
        tracing::warn!(
            goods = goods.get(),
            left,
            failed = failed.len(),
            "MySQL has less stock than Redis admitted"
        );
    }
    Ok((ordered, failed))
}

/// Inserts one order per entry of `ordered` (indexes into `batch`); returns their ids in order,
/// and the sale's price and product reference (for the events).
async fn insert_orders(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    goods: GoodsId,
    block: i64,
    batch: &[Admitted],
    ordered: &[usize],
) -> Result<(Vec<i64>, (String, Option<String>)), sqlx::Error> {
    let (name, price, product): (String, String, Option<String>) = sqlx::query_as(SALE_INFO)
        .bind(goods.get())
        .fetch_one(&mut **tx)
        .await?;
    let rows: Vec<Row> = ordered
        .iter()
        .enumerate()
        .map(|(n, &i)| Row {
            id: block * IDS_PER_BLOCK + n as i64,
            u: batch[i].user.get(),
            r: &batch[i].entry_id,
            q: batch[i].quantity,
            k: batch[i].key_column(),
        })
        .collect();
    let json = serde_json::to_string(&rows).expect("rows serialise");
    sqlx::query(INSERT_ORDERS)
        .bind(goods.get())
        .bind(&name)
        .bind(&price)
        .bind(OrderStatus::Unpaid)
        .bind(&json)
        .execute(&mut **tx)
        .await?;
    sqlx::query(INSERT_SECKILL)
        .bind(goods.get())
        .bind(&json)
        .execute(&mut **tx)
        .await?;
    Ok((rows.iter().map(|r| r.id).collect(), (price, product)))
}

/// Every entry's final result: a second entry of a buy (user and key) within the batch
/// answers with that buy's order.
fn settle(batch: &[Admitted], results: Vec<Option<Written>>) -> Vec<Written> {
    let by_buy: HashMap<BuyId, Written> = batch
        .iter()
        .zip(&results)
        .filter_map(|(a, r)| r.map(|r| (buy_id(a), r)))
        .collect();
    batch
        .iter()
        .zip(results)
        .map(|(a, r)| {
            r.unwrap_or_else(|| match by_buy.get(&buy_id(a)) {
                Some(Written::Order(id) | Written::Existing(id)) => Written::Existing(*id),
                _ => Written::Failed,
            })
        })
        .collect()
}

/// `stock = stock - n` if at least n are left; false if not.
async fn take_stock(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    goods: GoodsId,
    n: i64,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query(TAKE_STOCK)
        .bind(n)
        .bind(goods.get())
        .bind(n)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(taken == 1)
}

/// True for MySQL's duplicate-key error: another writer committed the same order first.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
