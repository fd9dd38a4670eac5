//! Sales in Redis: loading them from MySQL (warm-up), resetting one for a repeat run, and giving a
//! unit back through `lua/restore.lua`.
//!
//! Warm-up writes a sale's `meta` every time (window and limits may have changed) but its `stock`
//! only when the key is absent (`SET NX`): a restarted edge must not add back units that are
//! admitted and still in the queue. When the stock key was absent (a new sale, or a Redis that
//! lost its data) the buyers set is rebuilt from the live orders in MySQL, so nobody buys twice.

use chrono::NaiveDateTime;
use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::Serialize;
use sqlx::MySqlPool;

use crate::admission::scripts::Scripts;
use crate::domain::{Campaign, GoodsId, MAX_SHARDS, Shard, UserId};
use crate::error::AppError;
use crate::plumbing::config::Settings;
use crate::plumbing::keys::{self, Keys};
use crate::sales::stores::Stores;

/// One sale as MySQL has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleRow {
    pub goods_id: i64,
    pub name: String,
    pub title: String,
    pub img: String,
    pub detail: String,
    pub price: f64,
    pub seckill_price: f64,
    pub stock: i32,
    pub initial_stock: i32,
    pub start_at: NaiveDateTime,
    pub end_at: NaiveDateTime,
    pub user_rate: Option<f64>,
    pub user_burst: Option<i32>,
    pub gate_rate: Option<f64>,
    pub gate_burst: Option<i32>,
    pub path_factor: Option<i32>,
    /// How many stock shards the sale is split into (1: not split).
    pub stock_shards: i16,
    /// When an operator cancelled the sale (`None`: not cancelled).
    pub cancelled_at: Option<NaiveDateTime>,
    /// The waiting room opens this many seconds before the start (`None`: no room).
    pub room_opens_secs: Option<i32>,
    /// The room's let-through rate per second (`None`: the setting).
    pub room_rate: Option<f64>,
    /// When the audit found the sale over, drained and clean (`None`: not settled; see
    /// [`settle`]).
    pub settled_at: Option<NaiveDateTime>,
    /// Bumped by every change that can move the sale's units (see [`unsettle`]).
    pub change_seq: i64,
    /// The shop's product reference (`externalRef`), if the sale has one.
    pub external_ref: Option<String>,
    /// A draw sale's registration window and claim window (`crate::draws`; `None`: first come).
    pub register_from: Option<NaiveDateTime>,
    pub register_until: Option<NaiveDateTime>,
    pub claim_for_secs: Option<i32>,
    /// The most units one buy may take (`perBuy`; 1 before the rule existed).
    pub per_buy: i32,
    /// The most units one account may hold in this sale (`perAccount`; 1 before the rule existed).
    pub per_account: i32,
    /// The campaign the sale is in (`campaign`; `None`: none), and the campaign's limit per
    /// account across its sales (`campaignPerAccount`, from `sale_campaign`).
    pub campaign: Option<String>,
    pub campaign_per_account: Option<i32>,
}

macro_rules! select_sales {
    ($tail:literal) => {
        concat!(
            "SELECT g.id AS goods_id, g.name, g.title, g.img, g.detail, \
     CAST(g.price AS DOUBLE) AS price, CAST(sg.seckill_price AS DOUBLE) AS seckill_price, \
     sg.stock, sg.initial_stock, sg.start_at, sg.end_at, sg.user_rate, sg.user_burst, \
     sg.gate_rate, sg.gate_burst, sg.path_factor, sg.stock_shards, sg.cancelled_at, \
     sg.room_opens_secs, sg.room_rate, sg.settled_at, sg.change_seq, sg.external_ref, \
     sd.register_from, sd.register_until, sd.claim_for_secs, sg.per_buy, sg.per_account, \
     sg.campaign, sc.per_account AS campaign_per_account \
     FROM seckill_goods sg JOIN goods g ON g.id = sg.goods_id \
     LEFT JOIN sale_draw sd ON sd.goods_id = sg.goods_id \
     LEFT JOIN sale_campaign sc ON sc.name = sg.campaign ",
            $tail
        )
    };
}

impl SaleRow {
    /// When admissions open, as enforced: a sale cancelled before its start opens and closes at
    /// the cancellation (so it reads as over, not as coming).
    pub fn start_ms(&self) -> i64 {
        self.start_at
            .and_utc()
            .timestamp_millis()
            .min(self.end_ms())
    }
    /// When admissions close, as enforced: the end, or the cancellation if that came first.
    pub fn end_ms(&self) -> i64 {
        let end = self.end_at.and_utc().timestamp_millis();
        self.cancelled_ms().map_or(end, |c| end.min(c))
    }
    /// When the sale was cancelled, in epoch ms.
    pub fn cancelled_ms(&self) -> Option<i64> {
        self.cancelled_at.map(|c| c.and_utc().timestamp_millis())
    }
    pub fn goods(&self) -> GoodsId {
        GoodsId::new(self.goods_id).expect("ids in MySQL are positive")
    }
    pub fn shards(&self) -> u16 {
        self.stock_shards.clamp(1, MAX_SHARDS as i16) as u16
    }
    /// The sale's campaign, if it is in one (a name MySQL holds was checked when it was written).
    pub fn campaign(&self) -> Option<Campaign> {
        self.campaign.as_deref().and_then(Campaign::parse)
    }
    /// Tells `keys` this sale's campaign, so its keys are named as they are in Redis; returns
    /// the keys of its shard 0 (see [`Keys::shard`]).
    pub fn teach(&self, keys: &Keys) -> crate::plumbing::keys::SaleKeys {
        keys.learn(self.goods(), self.campaign().as_ref());
        keys.sale(self.goods())
    }
}

/// Makes sure `keys` knows `goods`'s campaign before its keys are named: a process that has not
/// met the sale (an edge, the closer) reads the sale's campaign pointer once. A sale is learnt
/// as in no campaign only once its meta is there under its own tag (a sale not loaded yet is
/// left unlearnt: it may be made in a campaign still).
pub async fn know<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    goods: GoodsId,
) -> redis::RedisResult<()> {
    if keys.known(goods).is_some() {
        return Ok(());
    }
    let (pointer, meta): (Option<String>, bool) = redis::pipe()
        .get(keys.campaign_pointer(goods))
        .exists(keys.sale(goods).meta())
        .query_async(con)
        .await?;
    match pointer.as_deref().and_then(Campaign::parse) {
        Some(c) => keys.learn(goods, Some(&c)),
        None if meta => keys.learn(goods, None),
        None => {}
    }
    Ok(())
}

/// Shard `index`'s part of `total` units split over `shards`: equal parts, the first
/// `total % shards` shards one more.
pub fn share(total: i64, shards: u16, index: u16) -> i64 {
    let n = i64::from(shards.max(1));
    total / n + i64::from(i64::from(index) < total % n)
}

/// Every sale, by goods id.
pub async fn all(db: &MySqlPool) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!("ORDER BY g.id"))
        .fetch_all(db)
        .await
}

/// The sales background work looks at: every sale not settled (running, coming, or over but
/// not yet drained and audited clean). Settled sales are history: nothing polls them.
pub async fn unsettled(db: &MySqlPool) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!("WHERE sg.settled_at IS NULL ORDER BY g.id"))
        .fetch_all(db)
        .await
}

/// The `limit` newest sales, newest first (the console's list).
pub async fn newest(db: &MySqlPool, limit: usize) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!("ORDER BY g.id DESC LIMIT ?"))
        .bind(limit as i64)
        .fetch_all(db)
        .await
}

/// Sales not over (running or coming), soonest end first: the shoppers' catalogue.
pub async fn current(db: &MySqlPool) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!(
        "WHERE sg.end_at > NOW(3) AND sg.cancelled_at IS NULL ORDER BY sg.start_at, g.id"
    ))
    .fetch_all(db)
    .await
}

/// Sales that are over (ended or cancelled), the latest first, a page of `limit` after
/// `offset`: the catalogue's history, one page at a time.
pub async fn past(
    db: &MySqlPool,
    limit: usize,
    offset: usize,
) -> Result<Vec<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!(
        "WHERE sg.end_at <= NOW(3) OR sg.cancelled_at IS NOT NULL \
         ORDER BY sg.end_at DESC, g.id DESC LIMIT ? OFFSET ?"
    ))
    .bind(limit as i64)
    .bind(offset as i64)
    .fetch_all(db)
    .await
}

/// How many sales are settled (for the audit's summary).
pub async fn settled_count(db: &MySqlPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM seckill_goods WHERE settled_at IS NOT NULL")
        .fetch_one(db)
        .await
}

/// Marks the sale of `row` settled, if it is over and nothing changed it since `row` was read
/// (its `change_seq`); true if it is now settled.
pub async fn settle(db: &MySqlPool, row: &SaleRow) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE seckill_goods SET settled_at = NOW(3) WHERE goods_id = ? AND change_seq = ? \
         AND settled_at IS NULL AND (end_at <= NOW(3) OR cancelled_at IS NOT NULL)",
    )
    .bind(row.goods_id)
    .bind(row.change_seq)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a change to `goods` that can move its units: it is no longer settled, and an audit
/// running now will not settle it. Run it in the transaction of the change where there is one.
pub async fn unsettle<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
    goods: GoodsId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE seckill_goods SET settled_at = NULL, change_seq = change_seq + 1 WHERE goods_id = ?",
    )
    .bind(goods.get())
    .execute(db)
    .await?;
    Ok(())
}

/// One sale, if it exists.
pub async fn one(db: &MySqlPool, goods: GoodsId) -> Result<Option<SaleRow>, sqlx::Error> {
    sqlx::query_as(select_sales!("WHERE g.id = ?"))
        .bind(goods.get())
        .fetch_optional(db)
        .await
}

/// One sale that must exist: `NotFound` (404) if it does not.
pub async fn existing(db: &MySqlPool, goods: GoodsId) -> Result<SaleRow, AppError> {
    one(db, goods).await?.ok_or(AppError::NotFound)
}

/// The `meta` hash of every shard of `sale`: its window, its limits (the sale's own where set,
/// else the configured defaults), its path cap, its initial stock and its shard count. Each
/// shard's gate lets its share of the sale's rate through.
fn meta_fields(settings: &Settings, sale: &SaleRow) -> Vec<(&'static str, String)> {
    let n = sale.shards();
    let factor = sale
        .path_factor
        .map_or(settings.path_factor as i64, i64::from);
    let gate_rate = sale.gate_rate.unwrap_or(settings.gate_rate) / f64::from(n);
    let gate_burst = sale
        .gate_burst
        .map_or(settings.gate_burst as i64, i64::from)
        .div_euclid(i64::from(n))
        .max(1);
    let user_rate = sale.user_rate.unwrap_or(settings.user_rate);
    let user_burst = sale
        .user_burst
        .map_or(settings.user_burst as i64, i64::from);
    let mut fields = vec![
        ("start_ms", sale.start_ms().to_string()),
        ("end_ms", sale.end_ms().to_string()),
        ("user_rate", user_rate.to_string()),
        ("user_burst", user_burst.to_string()),
        ("gate_rate", gate_rate.to_string()),
        ("gate_burst", gate_burst.to_string()),
        // every shard may issue paths up to the whole sale's cap: shoppers need not spread
        // evenly over the shards
        (
            "path_cap",
            (factor * sale.initial_stock as i64).max(1).to_string(),
        ),
        ("stock", sale.initial_stock.to_string()),
        ("shards", n.to_string()),
        // the waiting room (lua/room.lua): when it opens (-1: no room) and its rate
        (
            "room_opens_ms",
            sale.room_opens_secs
                .map_or(-1, |s| sale.start_ms() - i64::from(s.max(0)) * 1000)
                .to_string(),
        ),
        (
            "room_rate",
            sale.room_rate.unwrap_or(settings.room_rate).to_string(),
        ),
        // a draw sale (`crate::draws`): paths only for entries holding a claim
        ("draw", u8::from(sale.register_until.is_some()).to_string()),
        // the sale's rules (lua/admit.lua; a meta without them reads as 1 and 1)
        ("per_buy", sale.per_buy.max(1).to_string()),
        ("per_account", sale.per_account.max(1).to_string()),
    ];
    // a sale in a campaign: the campaign's limit per account across its sales (admit.lua)
    if let (Some(_), Some(limit)) = (sale.campaign(), sale.campaign_per_account) {
        fields.push(("campaign_per_account", limit.max(1).to_string()));
    }
    fields
}

/// Writes one sale's meta, and its stock and buyers if Redis does not have them yet; a split
/// sale gets this in every shard, each with its share of the stock and the buyers whose home it
/// is. With the buyers come what `lua/admit.lua` counts for the sale's rules: the units each
/// holds (`held`, a sale of `perAccount` > 1) and their buys (`buys`: each buy with a key, and
/// every buy of such a sale), from the live orders.
pub async fn load<C: ConnectionLike + Send>(
    con: &mut C,
    db: &MySqlPool,
    keys: &Keys,
    settings: &Settings,
    sale: &SaleRow,
) -> anyhow::Result<()> {
    let n = sale.shards();
    let meta = meta_fields(settings, sale);
    sale.teach(keys);
    if let Some(c) = sale.campaign() {
        // the pointer first: an edge that finds the meta finds it under the campaign's tag
        let _: () = redis::cmd("SET")
            .arg(keys.campaign_pointer(sale.goods()))
            .arg(c.as_str())
            .query_async(con)
            .await?;
    }
    // read from MySQL only if some shard's stock was absent, and then once for all shards
    let mut buyers: Option<Vec<(i64, String, i32)>> = None;
    for shard in Shard::all(sale.goods(), n) {
        let k = keys.shard(shard);
        let stock = share(i64::from(sale.stock), n, shard.index);
        let (_, fresh): ((), Option<String>) = redis::pipe()
            .hset_multiple(k.meta(), &meta)
            .cmd("SET")
            .arg(k.stock())
            .arg(stock)
            .arg("NX")
            .query_async(con)
            .await?;
        if fresh.is_none() {
            continue;
        }
        if buyers.is_none() {
            buyers = Some(
                sqlx::query_as(
                    "SELECT s.user_id, s.buy_key, COALESCE(o.goods_count, 1) FROM seckill_order s \
                     LEFT JOIN order_info o ON o.id = s.order_id WHERE s.goods_id = ?",
                )
                .bind(sale.goods_id)
                .fetch_all(db)
                .await?,
            );
        }
        let mine: Vec<&(i64, String, i32)> = buyers
            .iter()
            .flatten()
            .filter(|b| UserId::new(b.0).is_ok_and(|u| Shard::home(shard.goods, u, n) == shard))
            .collect();
        let mut home: Vec<i64> = mine.iter().map(|b| b.0).collect();
        home.sort_unstable();
        home.dedup();
        for chunk in home.chunks(1000) {
            let _: () = redis::cmd("SADD")
                .arg(k.buyers())
                .arg(chunk)
                .query_async(con)
                .await?;
        }
        let counted = sale.per_account > 1;
        // in a campaign, the units come back into the campaign's count with the sale's stock
        // (Redis lost the sale's keys, and so the campaign's with them: each of its sales
        // loaded again adds its own)
        let across = sale.campaign().is_some();
        for chunk in mine.chunks(1000) {
            let mut p = redis::pipe();
            for (user, key, units) in chunk {
                if counted {
                    p.hincr(k.held(), user, *units).ignore();
                }
                if across {
                    p.hincr(k.campaign_held(), user, *units).ignore();
                }
                if counted || !key.is_empty() {
                    let key = if key.is_empty() { "-" } else { key };
                    p.hset(k.buys(), format!("{user} {key}"), units).ignore();
                }
            }
            let _: () = p.query_async(con).await?;
        }
        tracing::info!(
            goods = sale.goods_id,
            shard = shard.index,
            stock,
            buyers = home.len(),
            "sale loaded into Redis"
        );
    }
    Ok(())
}

/// Loads every sale (start-up warm-up).
pub async fn warm_up<C: ConnectionLike + Send>(
    con: &mut C,
    db: &MySqlPool,
    keys: &Keys,
    settings: &Settings,
) -> anyhow::Result<usize> {
    let sales = all(db).await?;
    for sale in &sales {
        load(con, db, keys, settings, sale).await?;
    }
    Ok(sales.len())
}

/// Why a unit goes back to Redis; each reason has its counter in the shard's meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// The worker could not make the order (the shopper's result becomes -1).
    Failed,
    /// The entry kept failing and went to the dead-letter stream (result -1).
    DeadLettered,
    /// This order was closed unpaid (result -1: the page shows it as lost). Given back once per
    /// order, even if its buyer has bought again since (the order id is noted in `given_back`).
    Closed { order: i64 },
    /// The audit found the unit held by a buyer with no order (`crate::operators::audit::fix`).
    Mended,
}

impl GiveBack {
    /// The meta field that counts units given back for this reason.
    pub fn counter(self) -> &'static str {
        match self {
            GiveBack::Failed => "failed",
            GiveBack::DeadLettered => "dead_lettered",
            GiveBack::Closed { .. } => "closed",
            GiveBack::Mended => "mended",
        }
    }
}

/// The buy whose units go back: its quantity and its `Idempotency-Key` digest (`""`: none).
#[derive(Debug, Clone, Copy)]
pub struct Units<'a> {
    pub quantity: u32,
    pub key: &'a str,
}

impl Units<'_> {
    /// One unit of a buy without a key (every buy before quantities).
    pub const ONE: Units<'static> = Units {
        quantity: 1,
        key: "",
    };
}

/// Gives one buy's units back to `user`'s home shard `shard`, with the account's allowance
/// (idempotent: once per buy, and once per order for a closed one), writing -1 as the user's
/// result and counting the units under `why`. Returns whether they came back.
pub async fn give_back<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    scripts: &Scripts,
    shard: Shard,
    user: UserId,
    why: GiveBack,
    units: Units<'_>,
) -> redis::RedisResult<bool> {
    know(con, keys, shard.goods).await?;
    let k = keys.shard(shard);
    let script_keys = [
        k.stock(),
        k.buyers(),
        k.result(user),
        k.meta(),
        k.given_back(),
        k.held(),
        k.buys(),
        k.campaign_held(),
    ];
    let order = match why {
        GiveBack::Closed { order } => order.to_string(),
        _ => String::new(),
    };
    let args = [
        user.get().to_string(),
        "-1".into(),
        keys::RESULT_TTL.as_secs().to_string(),
        keys.restock_channel(),
        shard.goods.get().to_string(),
        why.counter().into(),
        order,
        units.quantity.to_string(),
        units.key.to_string(),
    ];
    let script_keys: Vec<&str> = script_keys.iter().map(String::as_str).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = scripts
        .get()
        .restore
        .invoke(con, &script_keys, &args)
        .await?;
    crate::admission::scripts::decode_done(
        "restore.lua",
        reply,
        crate::admission::scripts::Code::NotABuyer,
    )
    .map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "restore.lua",
            format!("{e:#}"),
        ))
    })
}

/// A new window for a reset sale: starts this many seconds from now and lasts this long.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub starts_in_secs: i64,
    pub lasts_secs: i64,
}

/// Restores a sale for a repeat run: its orders are deleted, MySQL stock goes back to the initial
/// stock, every Redis key of the sale is dropped and loaded anew, and every edge clears its flag.
/// Meant for load-test reruns while no buys for this sale are in flight.
pub async fn reset(
    stores: &Stores,
    goods: GoodsId,
    window: Option<Window>,
) -> Result<(), AppError> {
    let (db, keys, settings) = (&stores.db, &stores.keys, &*stores.settings);
    let con = &mut stores.redis.clone();
    // a drawn draw is a published record (its entries, seed, winners): never wiped for a rerun
    let drawn: Option<bool> =
        sqlx::query_scalar("SELECT drawn_at IS NOT NULL FROM sale_draw WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_optional(db)
            .await?;
    if drawn == Some(true) {
        return Err(AppError::Refused(crate::error::Refusal::Drawn));
    }
    let mut tx = crate::plumbing::db::begin(db).await?;
    let updated = match window {
        Some(w) => sqlx::query(
            "UPDATE seckill_goods SET stock = initial_stock, \
             start_at = NOW(3) + INTERVAL ? SECOND, end_at = NOW(3) + INTERVAL ? SECOND \
             WHERE goods_id = ?",
        )
        .bind(w.starts_in_secs)
        .bind(w.starts_in_secs + w.lasts_secs)
        .bind(goods.get()),
        None => sqlx::query("UPDATE seckill_goods SET stock = initial_stock WHERE goods_id = ?")
            .bind(goods.get()),
    }
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0
        && sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM seckill_goods WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_one(&mut *tx)
            .await?
            == 0
    {
        return Err(AppError::NotFound);
    }
    sqlx::query("DELETE FROM seckill_order WHERE goods_id = ?")
        .bind(goods.get())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM order_info WHERE goods_id = ?")
        .bind(goods.get())
        .execute(&mut *tx)
        .await?;
    unsettle(&mut *tx, goods).await?;
    tx.commit().await?;

    existing(db, goods).await?.teach(keys);
    con.delete_matching(&keys.sale(goods).everything()).await?;
    con.delete_matching(&keys.split_shards(goods)).await?;
    // one DEL per key: on a cluster the two keys may live on different nodes
    let _: () = con.del(keys.goods(goods)).await?;
    let _: () = con.del(keys.goods_list()).await?;
    let sale = existing(db, goods).await?;
    load(con, db, keys, settings, &sale).await?;
    if let Some(campaign) = sale.campaign() {
        // the campaign's count held this sale's old orders too: counted again from MySQL
        recount_campaign(con, db, keys, &campaign, goods).await?;
    }
    let _: () = con
        .publish(keys.restock_channel(), goods.get().to_string())
        .await?;
    tracing::info!(
        goods = goods.get(),
        stock = sale.initial_stock,
        "sale reset"
    );
    Ok(())
}

/// Sets the campaign's count of units held per account (`campaign_held`) to what the live orders
/// of its sales in MySQL say. For a reset (no buys in flight: an admitted buy not yet written
/// would not be counted); `any` is one of the campaign's sales (whose keys name the count).
async fn recount_campaign<C: ConnectionLike + Send>(
    con: &mut C,
    db: &MySqlPool,
    keys: &Keys,
    campaign: &Campaign,
    any: GoodsId,
) -> anyhow::Result<()> {
    let held: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT s.user_id, CAST(SUM(COALESCE(o.goods_count, 1)) AS SIGNED) FROM seckill_order s \
         JOIN seckill_goods sg ON sg.goods_id = s.goods_id \
         LEFT JOIN order_info o ON o.id = s.order_id WHERE sg.campaign = ? GROUP BY s.user_id",
    )
    .bind(campaign.as_str())
    .fetch_all(db)
    .await?;
    let key = keys.sale(any).campaign_held();
    let mut p = redis::pipe();
    p.atomic().del(&key).ignore();
    for chunk in held.chunks(1000) {
        p.hset_multiple(&key, chunk).ignore();
    }
    let _: () = p.query_async(con).await?;
    Ok(())
}

/// Where a sale is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before its start.
    Scheduled,
    /// Admitting shoppers.
    Live,
    /// In its window, no stock left in any shard (a restock reopens it).
    SoldOut,
    /// Past its end.
    Ended,
    /// Stopped by an operator.
    Cancelled,
}

/// The phase of `row` at `now_ms`; `stock_left` (all shards, from Redis) tells sold out from
/// live, `None` when unknown (then a sale in its window reads as live).
pub fn phase_of(row: &SaleRow, stock_left: Option<i64>, now_ms: i64) -> Phase {
    if row.cancelled_at.is_some() {
        Phase::Cancelled
    } else if now_ms >= row.end_ms() {
        Phase::Ended
    } else if now_ms < row.start_ms() {
        Phase::Scheduled
    } else if stock_left == Some(0) {
        Phase::SoldOut
    } else {
        Phase::Live
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        assert_eq!(
            (0..4).map(|b| share(10, 4, b)).collect::<Vec<_>>(),
            [3, 3, 2, 2]
        );
        assert_eq!((0..1).map(|b| share(7, 1, b)).collect::<Vec<_>>(), [7]);
        assert_eq!(
            (0..3).map(|b| share(2, 3, b)).collect::<Vec<_>>(),
            [1, 1, 0]
        );
    }
}
