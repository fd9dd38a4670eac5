//! The audit (reconciliation, 对账): proves, at rest, that every unit of a sale is accounted
//! for across Redis and MySQL, names every difference with the keys and rows involved, and
//! mends Redis from MySQL when that is safe.
//!
//! At rest (every shard's queue empty) these hold for a sale (docs/invariants.md, 4):
//! - **stock**: initial stock = Redis stock (all shards) + units in flight (in queue entries) +
//!   units ordered in MySQL (every `order_info` row's `goods_count`, its buy's quantity) − units
//!   given back (closed orders whose units went back to Redis: `stock_returned = 1`, or listed in
//!   the shard's `given_back` set).
//!   `stockDrift` is Redis stock minus what the equation says it should be: positive, Redis
//!   would sell units MySQL has no room for; negative, units are lost (never sold).
//! - **MySQL stock**: `seckill_goods.stock` = initial stock − the units of the live orders
//!   (`seckill_order` rows).
//! - **buyers**: Redis buyers = MySQL buyers (`seckill_order`, plus closed orders whose unit is
//!   not back yet) + buyers in flight. A buyer in Redis with no order holds a unit nobody will
//!   get; an order whose buyer is not in Redis lets that shopper buy twice.
//! - **within the limit**: no shopper holds more units in live orders than the sale's
//!   `perAccount` (1 unless the sale says more: then no two live orders).
//!
//! Consistency of the snapshot: Redis is read (stock, counters, buyers, queue), then MySQL,
//! then Redis again; if a shard's stock, admitted count or queue moved in between, the reading
//! is thrown away and taken again (3 tries), else the sale is reported as not at rest. Between
//! two equal Redis readings with empty queues no order can have been written (the worker only
//! writes queued entries, and queueing counts `admitted`).
//!
//! `fix` acts only at rest and only when MySQL agrees with itself (no MySQL-side finding):
//! buyers without an order get their unit back (`restore.lua`, as a failed order would),
//! orders without a buyer mark get it back, and each shard's stock is moved to what the
//! equation says through `mend.lua`, which writes nothing if the shard moved since it was read.
//! The worker audits every sale at rest every few seconds and exports the drift
//! (`flashgate_stock_drift{goods}`), logging a non-zero drift once per new value. With
//! `audit_repair` on (the default) it also runs `fix` itself when two passes in a row find the
//! same thing wrong: what a Redis failover can leave (a buyer mark or a unit the new primary
//! never received) is mended without an operator, and the drift is shown until then.
//!
//! What it costs, and why it never stalls Redis: the background audit compares **counts**
//! first: per shard one pipeline of `GET`, `HGET`, `XLEN` and `SCARD` (O(1) each), the small
//! `given_back` set by `SSCAN`, and MySQL's counts by index (live orders against markers; the
//! rows of a marker without its order or of a double order are looked for only when those
//! counts differ). Only when the buyer counts
//! disagree, and always when an operator asks (`flashgate audit ID`, the admin API, `--fix`),
//! does it read the **members**: the buyer sets by `SSCAN` in chunks of [`CHUNK`] with a pause
//! between chunks, so no command runs long and buys interleave with the reading. A chunked
//! reading is still a snapshot: the shard's stock, admitted count and queue length are compared
//! before and after, and every change to a buyer set moves one of them. A sale that is over,
//! drained and audited clean is *settled* (`sales::store::settle`) and not audited again until a
//! change (a closed order, a unit given back, a restock, a fix) unsettles it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::Serialize;

use crate::admission::scripts::Code;
use crate::domain::{GoodsId, OrderStatus, Shard, UserId};
use crate::error::{AppError, Refusal};
use crate::plumbing::metrics::Metrics;
use crate::sales::store::{self, GiveBack, SaleRow};
use crate::sales::stores::Stores;

/// Members read per `SSCAN` call, and the pause between two calls.
pub const CHUNK: usize = 250;
const CHUNK_PAUSE: Duration = Duration::from_millis(1);

/// How deep an audit reads: the counts only (the background audit, unless they disagree), or
/// every member (on demand, and for a fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    Counts,
    Members,
}

/// One difference the audit found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `stock_drift`, `mysql_stock_drift`, `buyer_without_order`, `order_without_buyer`,
    /// `double_order`, `marker_without_order`, `campaign_drift` (reported, not fixed).
    pub kind: &'static str,
    pub message: String,
    /// The Redis keys involved.
    pub keys: Vec<String>,
    /// The MySQL rows involved (`table id=… user=…`).
    pub rows: Vec<String>,
    /// The shopper concerned, for the findings about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<i64>,
}

/// What the audit found for one sale.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub goods_id: GoodsId,
    /// Every shard's queue was empty and nothing moved while the audit read.
    pub at_rest: bool,
    /// At rest and nothing found.
    pub clean: bool,
    pub initial_stock: i64,
    pub redis_stock: i64,
    /// Queue entries not written yet (`XLEN`, all shards): 0 at rest, where the equations are
    /// checked. An entry holds every shopper one admit.lua call admitted, so away from rest this
    /// counts entries, not units (counting units would mean reading every entry).
    pub in_flight: i64,
    pub orders: i64,
    pub units_returned: i64,
    pub expected_redis_stock: i64,
    pub stock_drift: i64,
    pub mysql_stock: i64,
    pub live_orders: i64,
    pub mysql_stock_drift: i64,
    pub redis_buyers: usize,
    pub mysql_buyers: usize,
    pub in_flight_buyers: usize,
    pub findings: Vec<Finding>,
    /// What `fix` changed, in order.
    pub repairs: Vec<String>,
}

/// One shard as Redis had it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ShardReading {
    shard: Shard,
    stock: i64,
    admitted: String,
    backlog: i64,
    /// `SCARD` of the buyer set.
    buyer_count: i64,
    /// The buyer set's members, when read ([`Depth::Members`]).
    buyers: Option<BTreeSet<i64>>,
    /// Closed orders whose unit `restore.lua` has given back to this shard.
    given_back: BTreeSet<i64>,
}

impl ShardReading {
    /// The part two readings must agree on.
    fn moved(&self, other: &ShardReading) -> bool {
        (self.stock, &self.admitted, self.backlog) != (other.stock, &other.admitted, other.backlog)
    }
}

/// Every member of the set at `key`, by `SSCAN` in chunks of [`CHUNK`], pausing between them.
async fn scan_set(
    con: &mut crate::plumbing::redis_conn::RedisConn,
    key: &str,
) -> redis::RedisResult<BTreeSet<i64>> {
    let mut members = BTreeSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, chunk): (u64, Vec<i64>) = redis::cmd("SSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(con)
            .await?;
        members.extend(chunk);
        if next == 0 {
            return Ok(members);
        }
        cursor = next;
        tokio::time::sleep(CHUNK_PAUSE).await;
    }
}

async fn read_shard(
    stores: &Stores,
    shard: Shard,
    depth: Option<Depth>,
) -> redis::RedisResult<ShardReading> {
    let k = stores.keys.shard(shard);
    let con = &mut stores.redis.clone();
    let (stock, admitted, backlog, buyer_count): (Option<i64>, Option<String>, i64, i64) =
        redis::pipe()
            .get(k.stock())
            .hget(k.meta(), "admitted")
            .xlen(k.queue())
            .scard(k.buyers())
            .query_async(con)
            .await?;
    let (mut buyers, mut given_back) = (None, BTreeSet::new());
    if let Some(depth) = depth {
        given_back = scan_set(con, &k.given_back()).await?;
        if depth == Depth::Members {
            buyers = Some(scan_set(con, &k.buyers()).await?);
        }
    }
    Ok(ShardReading {
        shard,
        stock: stock.unwrap_or(0),
        admitted: admitted.unwrap_or_else(|| "0".into()),
        backlog,
        buyer_count,
        buyers,
        given_back,
    })
}

/// Every shard's `given_back` set, together.
fn given_back(redis: &[ShardReading]) -> BTreeSet<i64> {
    redis
        .iter()
        .flat_map(|s| s.given_back.iter().copied())
        .collect()
}

/// Every shard of the sale of `row`; `depth` `None` reads the light figures only (stock,
/// admitted, backlog, buyer count), for the snapshot's second reading.
async fn read_redis(
    stores: &Stores,
    row: &SaleRow,
    depth: Option<Depth>,
) -> redis::RedisResult<Vec<ShardReading>> {
    let mut shards = Vec::new();
    for shard in Shard::all(row.goods(), row.shards()) {
        shards.push(read_shard(stores, shard, depth).await?);
    }
    Ok(shards)
}

/// A sale as MySQL has it, for the audit: counts by index, and the few rows that name a
/// problem; the buyers' rows only at [`Depth::Members`].
#[derive(Debug, Default)]
struct MysqlReading {
    initial_stock: i64,
    stock: i64,
    /// The units of every `order_info` row of the sale (`goods_count`: a buy's quantity).
    orders: i64,
    /// Units of closed orders MySQL notes as back in Redis (`stock_returned = 1`).
    returned_noted: i64,
    /// Closed orders not noted yet: (order id, user); the closer's next pass notes them.
    closed_unnoted: Vec<(i64, i64)>,
    /// The units of each order of `closed_unnoted`.
    closed_units: HashMap<i64, i64>,
    /// `seckill_order` rows (live orders).
    markers: i64,
    /// The accounts holding live orders (one per marker while a sale is one unit per account).
    marker_users: i64,
    /// The units of the live orders (of the `seckill_order` rows).
    live_units: i64,
    /// `seckill_order` rows whose order `order_info` does not have: (order id, user).
    markers_without_order: Vec<(i64, i64)>,
    /// Shoppers with more than one live order: (user, order ids).
    doubles: Vec<(i64, Vec<i64>)>,
    /// `seckill_order` rows: (order id, user), at [`Depth::Members`].
    marker_rows: Option<Vec<(i64, i64)>>,
}

async fn read_mysql(
    stores: &Stores,
    goods: GoodsId,
    depth: Depth,
) -> Result<MysqlReading, AppError> {
    let db = &stores.db;
    let g = goods.get();
    let row = store::existing(db, goods).await?;
    let (orders, returned_noted): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(goods_count), 0) AS SIGNED), \
         CAST(COALESCE(SUM(CASE WHEN status = ? AND stock_returned = 1 THEN goods_count ELSE 0 END), 0) \
         AS SIGNED) FROM order_info WHERE goods_id = ?",
    )
    .bind(OrderStatus::Closed)
    .bind(g)
    .fetch_one(db)
    .await?;
    let closed: Vec<(i64, i64, i32)> = sqlx::query_as(
        "SELECT id, user_id, goods_count FROM order_info \
         WHERE goods_id = ? AND status = ? AND stock_returned = 0 ORDER BY id",
    )
    .bind(g)
    .bind(OrderStatus::Closed)
    .fetch_all(db)
    .await?;
    let closed_units = closed.iter().map(|c| (c.0, i64::from(c.2))).collect();
    let closed_unnoted: Vec<(i64, i64)> = closed.into_iter().map(|c| (c.0, c.1)).collect();
    // the markers' units: their orders' quantities (1 for a marker whose order row is gone)
    let (markers, marker_users, live_units): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT s.user_id), \
         CAST(COALESCE(SUM(COALESCE(o.goods_count, 1)), 0) AS SIGNED) FROM seckill_order s \
         LEFT JOIN order_info o ON o.id = s.order_id WHERE s.goods_id = ?",
    )
    .bind(g)
    .fetch_one(db)
    .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_info WHERE goods_id = ? AND status IN (?, ?)",
    )
    .bind(g)
    .bind(OrderStatus::Unpaid)
    .bind(OrderStatus::Paid)
    .fetch_one(db)
    .await?;
    // one marker per live order: a marker without its order or a shopper over the sale's
    // perAccount makes the counts differ, and only then (or when asked, or when an account may
    // hold several orders) are the rows looked for, as those two queries read every order of
    // the sale
    let (markers_without_order, doubles) =
        if depth == Depth::Members || markers != live || row.per_account > 1 {
            let lost: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT s.order_id, s.user_id FROM seckill_order s \
             LEFT JOIN order_info o ON o.id = s.order_id \
             WHERE s.goods_id = ? AND o.id IS NULL ORDER BY s.order_id",
            )
            .bind(g)
            .fetch_all(db)
            .await?;
            let doubles: Vec<(i64, String)> = sqlx::query_as(
                "SELECT user_id, GROUP_CONCAT(id ORDER BY id) FROM order_info \
             WHERE goods_id = ? AND status IN (?, ?) GROUP BY user_id \
             HAVING SUM(goods_count) > ? ORDER BY user_id",
            )
            .bind(g)
            .bind(OrderStatus::Unpaid)
            .bind(OrderStatus::Paid)
            .bind(row.per_account.max(1))
            .fetch_all(db)
            .await?;
            (lost, doubles)
        } else {
            (Vec::new(), Vec::new())
        };
    let marker_rows = match depth {
        Depth::Counts => None,
        Depth::Members => Some(
            sqlx::query_as(
                "SELECT order_id, user_id FROM seckill_order WHERE goods_id = ? ORDER BY order_id",
            )
            .bind(g)
            .fetch_all(db)
            .await?,
        ),
    };
    Ok(MysqlReading {
        initial_stock: i64::from(row.initial_stock),
        stock: i64::from(row.stock),
        orders,
        returned_noted,
        closed_unnoted,
        closed_units,
        markers,
        marker_users,
        live_units,
        markers_without_order,
        doubles: doubles
            .into_iter()
            .map(|(u, ids)| (u, ids.split(',').filter_map(|s| s.parse().ok()).collect()))
            .collect(),
        marker_rows,
    })
}

/// Audits one sale in full (see the module comment): what an operator asks for.
pub async fn audit(stores: &Stores, goods: GoodsId) -> Result<Report, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    audit_row(stores, &row, Depth::Members).await
}

/// Audits the sale of `row`, already read (its shard count says which keys to read; the
/// figures themselves are read afresh, inside the snapshot). At [`Depth::Counts`], a sale
/// whose buyer counts disagree is read again at [`Depth::Members`], to name who.
async fn audit_row(stores: &Stores, row: &SaleRow, depth: Depth) -> Result<Report, AppError> {
    let goods = row.goods();
    row.teach(&stores.keys);
    let mut tries = 0;
    loop {
        tries += 1;
        let before = read_redis(stores, row, Some(depth)).await?;
        let mysql = read_mysql(stores, goods, depth).await?;
        let after = read_redis(stores, row, None).await?;
        let steady = before.iter().zip(&after).all(|(a, b)| !a.moved(b));
        let drained = before.iter().all(|s| s.backlog == 0);
        if (steady && drained) || tries == 3 {
            let mut report = compare(stores, goods, &before, &mysql, steady && drained);
            if report.at_rest
                && let Some(campaign) = row.campaign()
            {
                let drift = campaign_findings(stores, &campaign).await?;
                report.clean &= drift.is_empty();
                report.findings.extend(drift);
            }
            if depth == Depth::Counts
                && report.at_rest
                && report.redis_buyers != report.mysql_buyers
            {
                return Box::pin(audit_row(stores, row, Depth::Members)).await;
            }
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A campaign's count of each account's units (`sk:{c:NAME}:held`) against what its sales count
/// (each sale's `held`, or its buyers in a sale of one unit per account): equal at every moment
/// (admit.lua and restore.lua move both in one call), so a difference is a `campaign_drift`
/// finding per account. Read twice around the sales: a campaign whose count moved meanwhile
/// (another of its sales is selling) is not judged.
async fn campaign_findings(
    stores: &Stores,
    campaign: &crate::domain::Campaign,
) -> Result<Vec<Finding>, AppError> {
    let sales: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT goods_id, per_account FROM seckill_goods WHERE campaign = ? ORDER BY goods_id",
    )
    .bind(campaign.as_str())
    .fetch_all(&stores.db)
    .await?;
    let con = &mut stores.redis.clone();
    let mut key = None;
    let mut counted: HashMap<String, i64> = HashMap::new();
    let mut read_keys = Vec::new();
    for (goods, per_account) in &sales {
        let goods = GoodsId::new(*goods)?;
        stores.keys.learn(goods, Some(campaign));
        let k = stores.keys.sale(goods);
        key.get_or_insert_with(|| k.campaign_held());
        if *per_account > 1 {
            let held: HashMap<String, i64> = con.hgetall(k.held()).await?;
            for (user, units) in held {
                *counted.entry(user).or_default() += units;
            }
            read_keys.push(k.held());
        } else {
            let buyers: Vec<String> = con.smembers(k.buyers()).await?;
            for user in buyers {
                *counted.entry(user).or_default() += 1;
            }
            read_keys.push(k.buyers());
        }
    }
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let before: HashMap<String, i64> = con.hgetall(&key).await?;
    let after: HashMap<String, i64> = con.hgetall(&key).await?;
    if before != after {
        return Ok(Vec::new());
    }
    let mut users: BTreeSet<&String> = before.keys().collect();
    users.extend(counted.keys());
    let mut findings = Vec::new();
    for user in users {
        let (held, sales_count) = (
            before.get(user).copied().unwrap_or(0),
            counted.get(user).copied().unwrap_or(0),
        );
        if held != sales_count {
            let mut keys = vec![key.clone()];
            keys.extend(read_keys.iter().cloned());
            findings.push(Finding {
                kind: "campaign_drift",
                message: format!(
                    "campaign {campaign} counts {held} units for user {user}, its sales {sales_count}"
                ),
                keys,
                rows: Vec::new(),
                user: user.parse().ok(),
            });
        }
    }
    Ok(findings)
}

/// The equations of the module comment over one reading.
fn compare(
    stores: &Stores,
    goods: GoodsId,
    redis: &[ShardReading],
    mysql: &MysqlReading,
    at_rest: bool,
) -> Report {
    let keys = |f: fn(&crate::plumbing::keys::SaleKeys) -> String| -> Vec<String> {
        redis
            .iter()
            .map(|s| f(&stores.keys.shard(s.shard)))
            .collect()
    };
    let redis_stock: i64 = redis.iter().map(|s| s.stock).sum();
    let in_flight: i64 = redis.iter().map(|s| s.backlog).sum();
    let back = given_back(redis);
    // closed orders whose unit is back: noted in MySQL, or given back and not noted yet (the
    // closer gives back first, then notes it)
    let returned = mysql.returned_noted
        + mysql
            .closed_unnoted
            .iter()
            .filter(|(id, _)| back.contains(id))
            .map(|(id, _)| mysql.closed_units.get(id).copied().unwrap_or(1))
            .sum::<i64>();
    let orders = mysql.orders;
    let expected = mysql.initial_stock - in_flight - orders + returned;
    let live_orders = mysql.markers;
    // buyers MySQL accounts for: live markers, and closed orders whose unit is not back yet
    let mysql_buyers = mysql.marker_users
        + mysql
            .closed_unnoted
            .iter()
            .filter(|(id, _)| !back.contains(id))
            .count() as i64;
    let mut r = Report {
        goods_id: goods,
        at_rest,
        clean: false,
        initial_stock: mysql.initial_stock,
        redis_stock,
        in_flight,
        orders,
        units_returned: returned,
        expected_redis_stock: expected,
        stock_drift: redis_stock - expected,
        mysql_stock: mysql.stock,
        live_orders,
        mysql_stock_drift: mysql.stock - (mysql.initial_stock - mysql.live_units),
        redis_buyers: redis.iter().map(|s| s.buyer_count).sum::<i64>() as usize,
        mysql_buyers: mysql_buyers as usize,
        in_flight_buyers: in_flight as usize,
        findings: Vec::new(),
        repairs: Vec::new(),
    };
    if !at_rest {
        return r; // the equations hold only at rest: no findings from a moving picture
    }
    stock_findings(&mut r, keys(crate::plumbing::keys::SaleKeys::stock));
    buyer_findings(stores, goods, redis, mysql, &mut r.findings);
    r.clean = r.findings.is_empty();
    r
}

/// The two stock equations' findings, from the report's figures; `stock_keys` are the shards'
/// stock keys.
fn stock_findings(r: &mut Report, stock_keys: Vec<String>) {
    let goods = r.goods_id;
    if r.stock_drift != 0 {
        r.findings.push(Finding {
            kind: "stock_drift",
            message: format!(
                "Redis holds {} units; initial {} - in flight {} - orders {} + given back {} = \
                 {}: drift {:+}",
                r.redis_stock,
                r.initial_stock,
                r.in_flight,
                r.orders,
                r.units_returned,
                r.expected_redis_stock,
                r.stock_drift
            ),
            keys: stock_keys,
            rows: vec![format!(
                "seckill_goods goods_id={goods} initial_stock={}",
                r.initial_stock
            )],
            user: None,
        });
    }
    if r.mysql_stock_drift != 0 {
        r.findings.push(Finding {
            kind: "mysql_stock_drift",
            message: format!(
                "seckill_goods.stock is {}; initial {} - live orders {} = {}: drift {:+}",
                r.mysql_stock,
                r.initial_stock,
                r.live_orders,
                r.initial_stock - r.live_orders,
                r.mysql_stock_drift
            ),
            keys: vec![],
            rows: vec![format!(
                "seckill_goods goods_id={goods} stock={}",
                r.mysql_stock
            )],
            user: None,
        });
    }
}

/// The buyer and order findings: markers against orders, and, when the members were read,
/// Redis buyers against MySQL's, by name.
fn buyer_findings(
    stores: &Stores,
    goods: GoodsId,
    redis: &[ShardReading],
    mysql: &MysqlReading,
    f: &mut Vec<Finding>,
) {
    let n = redis.len() as u16;
    let buyers_key = |user: i64| match UserId::new(user) {
        Ok(u) => stores.keys.shard(Shard::home(goods, u, n)).buyers(),
        Err(_) => String::new(),
    };
    let members: Option<BTreeSet<i64>> = redis
        .iter()
        .map(|s| s.buyers.as_ref())
        .collect::<Option<Vec<_>>>()
        .map(|sets| sets.into_iter().flatten().copied().collect());
    if let (Some(in_redis), Some(marker_rows)) = (members, &mysql.marker_rows) {
        let back = given_back(redis);
        let mut expected: BTreeSet<i64> = marker_rows.iter().map(|m| m.1).collect();
        for (id, user) in &mysql.closed_unnoted {
            if !back.contains(id) {
                expected.insert(*user);
            }
        }
        for user in in_redis.difference(&expected) {
            f.push(Finding {
                kind: "buyer_without_order",
                message: format!("user {user} is a buyer in Redis but has no order and no queued entry: a unit nobody gets"),
                keys: vec![buyers_key(*user)],
                rows: vec![],
                user: Some(*user),
            });
        }
        for (order, user) in marker_rows {
            if !in_redis.contains(user) {
                f.push(Finding {
                    kind: "order_without_buyer",
                    message: format!("user {user} has order {order} but is not a buyer in Redis: they could buy again"),
                    keys: vec![buyers_key(*user)],
                    rows: vec![format!("seckill_order order_id={order} user_id={user}")],
                    user: Some(*user),
                });
            }
        }
    }
    for (order, user) in &mysql.markers_without_order {
        f.push(Finding {
            kind: "marker_without_order",
            message: format!(
                "seckill_order names order {order} of user {user}, which order_info does not have"
            ),
            keys: vec![],
            rows: vec![format!("seckill_order order_id={order} user_id={user}")],
            user: Some(*user),
        });
    }
    for (user, ids) in &mysql.doubles {
        f.push(Finding {
            kind: "double_order",
            message: format!(
                "user {user} holds more units than the sale's perAccount, in {} live orders",
                ids.len()
            ),
            keys: vec![],
            rows: ids
                .iter()
                .map(|id| format!("order_info id={id} user_id={user}"))
                .collect(),
            user: Some(*user),
        });
    }
}

/// The buys `user` holds in `shard` as Redis has them, (quantity, key digest or `""`): one unit
/// without a key in a sale of one unit per account, else their fields of the shard's `buys`.
async fn buys_of(
    con: &mut crate::plumbing::redis_conn::RedisConn,
    stores: &Stores,
    shard: Shard,
    user: UserId,
    per_account: i32,
) -> Result<Vec<(u32, String)>, AppError> {
    if per_account <= 1 {
        return Ok(vec![(1, String::new())]);
    }
    // HSCAN in chunks (a sale's buys may be many; no command runs long), their fields only
    let (key, prefix) = (stores.keys.shard(shard).buys(), format!("{user} "));
    let (mut cursor, mut out) = (0u64, Vec::new());
    loop {
        let (next, pairs): (u64, Vec<(String, u32)>) = redis::cmd("HSCAN")
            .arg(&key)
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(con)
            .await?;
        for (field, q) in pairs {
            if let Some(k) = field.strip_prefix(&prefix) {
                out.push((
                    q,
                    if k == "-" {
                        String::new()
                    } else {
                        k.to_string()
                    },
                ));
            }
        }
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// The findings only MySQL can settle: `fix` will not touch Redis while any is there.
const MYSQL_SIDE: [&str; 3] = ["mysql_stock_drift", "marker_without_order", "double_order"];

/// Audits `goods`, mends Redis from MySQL if that is safe, and audits again: the report after,
/// with what was changed in `repairs`. Refused while the sale is not at rest.
pub async fn fix(stores: &Stores, goods: GoodsId) -> Result<Report, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    let before = audit_row(stores, &row, Depth::Members).await?;
    if !before.at_rest {
        return Err(AppError::Refused(Refusal::NotAtRest));
    }
    if before.findings.iter().any(|f| MYSQL_SIDE.contains(&f.kind)) {
        return Err(AppError::Refused(Refusal::MysqlDisagrees));
    }
    let n = row.shards();
    let mut repairs = Vec::new();
    // a fix changes the sale: it is audited again by the worker afterwards
    store::unsettle(&stores.db, goods).await?;
    let con = &mut stores.redis.clone();
    for f in &before.findings {
        match (f.kind, f.user.and_then(|u| UserId::new(u).ok())) {
            ("buyer_without_order", Some(u)) => {
                let home = Shard::home(goods, u, n);
                // what the buyer holds in Redis: one unit, or (a sale of perAccount > 1) each of
                // their buys, with its quantity and key
                for (quantity, key) in buys_of(con, stores, home, u, row.per_account).await? {
                    let units = store::Units {
                        quantity,
                        key: &key,
                    };
                    let (keys, scripts) = (&stores.keys, &stores.scripts);
                    if store::give_back(con, keys, scripts, home, u, GiveBack::Mended, units)
                        .await?
                    {
                        repairs.push(format!(
                            "gave user {u}'s {quantity} unit(s) back to {} (result -1)",
                            stores.keys.shard(home).stock()
                        ));
                    }
                }
            }
            ("order_without_buyer", Some(u)) => {
                let key = stores.keys.shard(Shard::home(goods, u, n)).buyers();
                let _: i64 = con.sadd(&key, u.get()).await?;
                repairs.push(format!("SADD {key} {u}"));
            }
            _ => {}
        }
    }
    let now = audit_row(stores, &row, Depth::Members).await?;
    if now.at_rest && now.stock_drift != 0 {
        mend_stock(stores, &row, -now.stock_drift, &mut repairs).await?;
    }
    let mut after = audit_row(stores, &row, Depth::Members).await?;
    after.repairs = repairs;
    tracing::info!(goods = goods.get(), repairs = ?after.repairs, clean = after.clean, "audit fix");
    Ok(after)
}

/// Moves the sale's Redis stock by `delta` units through `mend.lua`: added to shard 0, or taken
/// from the shards that have units, in order.
async fn mend_stock(
    stores: &Stores,
    row: &SaleRow,
    delta: i64,
    repairs: &mut Vec<String>,
) -> Result<(), AppError> {
    let shards = read_redis(stores, row, None).await?;
    let mut left = delta;
    for s in &shards {
        let step = if left > 0 {
            left
        } else {
            -(s.stock.min(-left))
        };
        if step == 0 {
            continue;
        }
        let k = stores.keys.shard(s.shard);
        let reply = stores
            .scripts
            .get()
            .mend
            .invoke(
                &mut stores.redis.clone(),
                &[&k.stock(), &k.queue(), &k.meta()],
                &[&s.stock.to_string(), &s.admitted, &step.to_string()],
            )
            .await?;
        if !crate::admission::scripts::decode_done("mend.lua", reply, Code::Changed)? {
            return Err(AppError::Refused(Refusal::NotAtRest));
        }
        repairs.push(format!("INCRBY {} {step} (was {})", k.stock(), s.stock));
        left -= step;
        if left == 0 {
            break;
        }
    }
    Ok(())
}

/// For the worker: every `every`, audits each unsettled sale whose queues are empty (counts
/// first, see the module comment) and exports its drift; a non-zero drift is logged once per new
/// value. A sale found over, at rest and clean is settled and forgotten here (its gauge too),
/// until a change unsettles it.
pub async fn run(
    stores: Stores,
    metrics: Arc<Metrics>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut logged: HashMap<GoodsId, i64> = HashMap::new();
    // what each sale's last pass found wrong (drift, findings): mended only when a second pass
    // finds the same, so a reading taken mid-change is never acted on
    let mut suspect: HashMap<GoodsId, (i64, usize)> = HashMap::new();
    loop {
        if let Ok(sales) = store::unsettled(&stores.db).await {
            let live: BTreeSet<GoodsId> = sales.iter().map(|s| s.goods()).collect();
            // settled or removed since the last pass: nothing of theirs is kept
            logged.retain(|g, _| live.contains(g));
            suspect.retain(|g, _| live.contains(g));
            for row in &sales {
                let Ok(light) = read_redis(&stores, row, None).await else {
                    continue;
                };
                if light.iter().any(|s| s.backlog > 0) {
                    continue;
                }
                let Ok(report) = audit_row(&stores, row, Depth::Counts).await else {
                    continue;
                };
                metrics.audits.inc();
                if !report.at_rest {
                    continue;
                }
                let over = chrono::Utc::now().timestamp_millis() >= row.end_ms();
                if over && report.clean && store::settle(&stores.db, row).await.unwrap_or(false) {
                    metrics.sales_settled.inc();
                    metrics.forget_sale(row.goods_id);
                    logged.remove(&row.goods());
                    tracing::info!(
                        goods = row.goods_id,
                        "sale settled: over, drained and clean; not audited again until it changes"
                    );
                    continue;
                }
                let drift = report.stock_drift;
                let wrong = (drift, report.findings.len());
                if report.clean {
                    suspect.remove(&row.goods());
                } else if stores.settings.audit_repair
                    && suspect.insert(row.goods(), wrong) == Some(wrong)
                {
                    // e.g. a Redis failover lost writes the replica never had: MySQL is the
                    // record, and `fix` acts only at rest and on what MySQL agrees with
                    match fix(&stores, row.goods()).await {
                        Ok(after) => {
                            metrics.audit_repairs.inc();
                            suspect.remove(&row.goods());
                            tracing::warn!(
                                goods = row.goods_id,
                                drift_before = drift,
                                findings_before = wrong.1,
                                drift_after = after.stock_drift,
                                clean_after = after.clean,
                                "the audit found the sale drifted twice running at rest and mended Redis from MySQL"
                            );
                            metrics.drift(row.goods_id, after.stock_drift);
                            logged.insert(row.goods(), after.stock_drift);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(goods = row.goods_id, error = %e, "the audit could not mend the sale; run `flashgate audit {} --fix`", row.goods_id)
                        }
                    }
                }
                metrics.drift(row.goods_id, drift);
                let last = logged.insert(row.goods(), drift);
                if drift != 0 && last != Some(drift) {
                    tracing::warn!(
                        goods = row.goods_id,
                        drift,
                        redis_stock = report.redis_stock,
                        expected = report.expected_redis_stock,
                        orders = report.orders,
                        returned = report.units_returned,
                        findings = report.findings.len(),
                        "stock drift at rest: run `flashgate audit {}`",
                        row.goods_id
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
