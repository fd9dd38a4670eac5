//! The audit (reconciliation, 对账): proves, at rest, that every unit of a sale is accounted
//! for across Redis and MySQL, names every difference with the keys and rows involved, and
//! mends Redis from MySQL when that is safe.
//!
//! At rest (every shard's queue empty) these hold for a sale (docs/invariants.md, 4):
//! - **stock**: initial stock = Redis stock (all shards) + units in flight (queue entries) +
//!   orders in MySQL (every `order_info` row) − units given back (closed orders whose unit went
//!   back to Redis: `stock_returned = 1`, or listed in the shard's `given_back` set).
//!   `stockDrift` is Redis stock minus what the equation says it should be: positive, Redis
//!   would sell units MySQL has no room for; negative, units are lost (never sold).
//! - **MySQL stock**: `seckill_goods.stock` = initial stock − live orders (`seckill_order` rows).
//! - **buyers**: Redis buyers = MySQL buyers (`seckill_order`, plus closed orders whose unit is
//!   not back yet) + buyers in flight. A buyer in Redis with no order holds a unit nobody will
//!   get; an order whose buyer is not in Redis lets that shopper buy twice.
//! - **one order each**: no shopper has two live orders of the sale.
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
//! (`flashgate_stock_drift{goods}`), logging a non-zero drift once per new value.

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

/// How often the worker audits the sales at rest.
pub const AUDIT_EVERY: Duration = Duration::from_secs(5);

/// One difference the audit found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// `stock_drift`, `mysql_stock_drift`, `buyer_without_order`, `order_without_buyer`,
    /// `double_order`, `marker_without_order`.
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
    buyers: BTreeSet<i64>,
    in_flight: Vec<i64>,
    /// Closed orders whose unit `restore.lua` has given back to this shard.
    given_back: BTreeSet<i64>,
}

impl ShardReading {
    /// The part two readings must agree on.
    fn moved(&self, other: &ShardReading) -> bool {
        (self.stock, &self.admitted, self.backlog) != (other.stock, &other.admitted, other.backlog)
    }
}

async fn read_shard(stores: &Stores, shard: Shard, full: bool) -> redis::RedisResult<ShardReading> {
    let k = stores.keys.shard(shard);
    let con = &mut stores.redis.clone();
    let (stock, admitted, backlog): (Option<i64>, Option<String>, i64) = redis::pipe()
        .get(k.stock())
        .hget(k.meta(), "admitted")
        .xlen(k.queue())
        .query_async(con)
        .await?;
    let (mut buyers, mut in_flight, mut given_back) =
        (BTreeSet::new(), Vec::new(), BTreeSet::new());
    if full {
        buyers = con.smembers(k.buyers()).await?;
        given_back = con.smembers(k.given_back()).await?;
        if backlog > 0 {
            let entries: redis::streams::StreamRangeReply = con.xrange_all(k.queue()).await?;
            in_flight = entries
                .ids
                .iter()
                .filter_map(|e| e.get::<i64>("u"))
                .collect();
        }
    }
    Ok(ShardReading {
        shard,
        stock: stock.unwrap_or(0),
        admitted: admitted.unwrap_or_else(|| "0".into()),
        backlog,
        buyers,
        in_flight,
        given_back,
    })
}

/// Whether `order` is closed and its unit back in Redis: noted in MySQL (`stock_returned`), or
/// given back and not noted yet (the closer gives back first, then notes it).
fn unit_back(order: &(i64, i64, i8, bool), given_back: &BTreeSet<i64>) -> bool {
    order.2 == OrderStatus::Closed as i8 && (order.3 || given_back.contains(&order.0))
}

/// Every shard's `given_back` set, together.
fn given_back(redis: &[ShardReading]) -> BTreeSet<i64> {
    redis
        .iter()
        .flat_map(|s| s.given_back.iter().copied())
        .collect()
}

async fn read_redis(
    stores: &Stores,
    row: &SaleRow,
    full: bool,
) -> redis::RedisResult<Vec<ShardReading>> {
    let mut shards = Vec::new();
    for shard in Shard::all(row.goods(), row.shards()) {
        shards.push(read_shard(stores, shard, full).await?);
    }
    Ok(shards)
}

/// A sale as MySQL has it, for the audit.
#[derive(Debug, Default)]
struct MysqlReading {
    initial_stock: i64,
    stock: i64,
    /// Every order row: (order id, user, status, stock returned).
    orders: Vec<(i64, i64, i8, bool)>,
    /// `seckill_order` rows: (order id, user).
    markers: Vec<(i64, i64)>,
}

async fn read_mysql(stores: &Stores, goods: GoodsId) -> Result<MysqlReading, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    let orders: Vec<(i64, i64, i8, i8)> = sqlx::query_as(
        "SELECT id, user_id, status, stock_returned FROM order_info WHERE goods_id = ? ORDER BY id",
    )
    .bind(goods.get())
    .fetch_all(&stores.db)
    .await?;
    let markers: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT order_id, user_id FROM seckill_order WHERE goods_id = ? ORDER BY order_id",
    )
    .bind(goods.get())
    .fetch_all(&stores.db)
    .await?;
    Ok(MysqlReading {
        initial_stock: i64::from(row.initial_stock),
        stock: i64::from(row.stock),
        orders: orders
            .into_iter()
            .map(|(id, u, s, r)| (id, u, s, r != 0))
            .collect(),
        markers,
    })
}

/// Audits one sale (see the module comment).
pub async fn audit(stores: &Stores, goods: GoodsId) -> Result<Report, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    audit_row(stores, &row).await
}

/// Audits the sale of `row`, already read (its shard count says which keys to read; the
/// figures themselves are read afresh, inside the snapshot).
async fn audit_row(stores: &Stores, row: &SaleRow) -> Result<Report, AppError> {
    let goods = row.goods();
    let mut tries = 0;
    loop {
        tries += 1;
        let before = read_redis(stores, row, true).await?;
        let mysql = read_mysql(stores, goods).await?;
        let after = read_redis(stores, row, false).await?;
        let steady = before.iter().zip(&after).all(|(a, b)| !a.moved(b));
        let drained = before.iter().all(|s| s.backlog == 0);
        if (steady && drained) || tries == 3 {
            return Ok(compare(stores, goods, &before, &mysql, steady && drained));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let returned = mysql.orders.iter().filter(|o| unit_back(o, &back)).count() as i64;
    let orders = mysql.orders.len() as i64;
    let expected = mysql.initial_stock - in_flight - orders + returned;
    let live_orders = mysql.markers.len() as i64;
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
        mysql_stock_drift: mysql.stock - (mysql.initial_stock - live_orders),
        redis_buyers: redis.iter().map(|s| s.buyers.len()).sum(),
        mysql_buyers: mysql.markers.len(),
        in_flight_buyers: redis.iter().map(|s| s.in_flight.len()).sum(),
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

/// The buyer and order findings: markers against orders, Redis buyers against MySQL's.
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
    let by_id: HashMap<i64, &(i64, i64, i8, bool)> =
        mysql.orders.iter().map(|o| (o.0, o)).collect();
    // buyers MySQL accounts for: live markers, and closed orders whose unit is not back yet
    let mut expected: BTreeSet<i64> = mysql.markers.iter().map(|m| m.1).collect();
    let back = given_back(redis);
    for o in &mysql.orders {
        if o.2 == OrderStatus::Closed as i8 && !unit_back(o, &back) {
            expected.insert(o.1);
        }
    }
    expected.extend(redis.iter().flat_map(|s| s.in_flight.iter().copied()));
    let in_redis: BTreeSet<i64> = redis
        .iter()
        .flat_map(|s| s.buyers.iter().copied())
        .collect();
    for user in in_redis.difference(&expected) {
        f.push(Finding {
            kind: "buyer_without_order",
            message: format!("user {user} is a buyer in Redis but has no order and no queued entry: a unit nobody gets"),
            keys: vec![buyers_key(*user)],
            rows: vec![],
            user: Some(*user),
        });
    }
    for (order, user) in &mysql.markers {
        if !in_redis.contains(user) {
            f.push(Finding {
                kind: "order_without_buyer",
                message: format!("user {user} has order {order} but is not a buyer in Redis: they could buy again"),
                keys: vec![buyers_key(*user)],
                rows: vec![format!("seckill_order order_id={order} user_id={user}")],
                user: Some(*user),
            });
        }
        if !by_id.contains_key(order) {
            f.push(Finding {
                kind: "marker_without_order",
                message: format!("seckill_order names order {order} of user {user}, which order_info does not have"),
                keys: vec![],
                rows: vec![format!("seckill_order order_id={order} user_id={user}")],
                user: Some(*user),
            });
        }
    }
    let mut live: HashMap<i64, Vec<i64>> = HashMap::new();
    for o in &mysql.orders {
        if o.2 == OrderStatus::Unpaid as i8 || o.2 == OrderStatus::Paid as i8 {
            live.entry(o.1).or_default().push(o.0);
        }
    }
    let mut doubles: Vec<_> = live.into_iter().filter(|(_, ids)| ids.len() > 1).collect();
    doubles.sort();
    for (user, ids) in doubles {
        f.push(Finding {
            kind: "double_order",
            message: format!("user {user} has {} live orders of this sale", ids.len()),
            keys: vec![],
            rows: ids
                .iter()
                .map(|id| format!("order_info id={id} user_id={user}"))
                .collect(),
            user: Some(user),
        });
    }
}

/// The findings only MySQL can settle: `fix` will not touch Redis while any is there.
const MYSQL_SIDE: [&str; 3] = ["mysql_stock_drift", "marker_without_order", "double_order"];

/// Audits `goods`, mends Redis from MySQL if that is safe, and audits again: the report after,
/// with what was changed in `repairs`. Refused while the sale is not at rest.
pub async fn fix(stores: &Stores, goods: GoodsId) -> Result<Report, AppError> {
    let row = store::existing(&stores.db, goods).await?;
    let before = audit_row(stores, &row).await?;
    if !before.at_rest {
        return Err(AppError::Refused(Refusal::NotAtRest));
    }
    if before.findings.iter().any(|f| MYSQL_SIDE.contains(&f.kind)) {
        return Err(AppError::Refused(Refusal::MysqlDisagrees));
    }
    let n = row.shards();
    let mut repairs = Vec::new();
    let con = &mut stores.redis.clone();
    for f in &before.findings {
        match (f.kind, f.user.and_then(|u| UserId::new(u).ok())) {
            ("buyer_without_order", Some(u)) => {
                let home = Shard::home(goods, u, n);
                if store::give_back(
                    con,
                    &stores.keys,
                    &stores.scripts,
                    home,
                    u,
                    GiveBack::Mended,
                )
                .await?
                {
                    repairs.push(format!(
                        "gave user {u}'s unit back to {} (result -1)",
                        stores.keys.shard(home).stock()
                    ));
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
    let now = audit_row(stores, &row).await?;
    if now.at_rest && now.stock_drift != 0 {
        mend_stock(stores, &row, -now.stock_drift, &mut repairs).await?;
    }
    let mut after = audit_row(stores, &row).await?;
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
    let shards = read_redis(stores, row, false).await?;
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

/// For the worker: every [`AUDIT_EVERY`], audits each sale whose queues are empty and exports
/// its drift; a non-zero drift is logged once per new value.
pub async fn run(
    stores: Stores,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut logged: HashMap<GoodsId, i64> = HashMap::new();
    loop {
        if let Ok(sales) = store::all(&stores.db).await {
            for row in &sales {
                let Ok(light) = read_redis(&stores, row, false).await else {
                    continue;
                };
                if light.iter().any(|s| s.backlog > 0) {
                    continue;
                }
                let Ok(report) = audit_row(&stores, row).await else {
                    continue;
                };
                if !report.at_rest {
                    continue;
                }
                let drift = report.stock_drift;
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
            _ = tokio::time::sleep(AUDIT_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
