//! Sale management: what an operator does to a sale (create it, change it, cancel it) and the
//! rules that keep every change from breaking an invariant.
//!
//! MySQL is the source: each operation writes MySQL first, in one transaction whose `UPDATE` is
//! guarded by the phase the change was checked against (so a sale that goes live meanwhile is
//! not changed as if it were still scheduled), then brings Redis in line, then drops the cached
//! catalogue entries and announces the goods id on the restock channel, so every edge clears its
//! sold-out flag and forgets the sale's shard count. Edges and workers need no restart: edges
//! read a sale's window and limits from its Redis meta, workers find new sales every 2 s.
//!
//! What may change when (the phase is `crate::sales::store::Phase`):
//! - scheduled: anything; the sale's stock is laid out again in Redis if its stock or shards
//!   change (a waiting room's tickets stay).
//! - live or sold out: only what cannot break an invariant: a later end, more stock
//!   (`addStock`, a restock: the units go to the shards, a sold-out sale reopens), the rates and
//!   path factor, and the words and picture. Name and prices are copied into orders, the start
//!   has passed, shoppers are spread over the shards, and what an account holds was counted
//!   under the sale's rules (`perBuy`, `perAccount`), so those are fixed
//!   ([`Refusal::FixedOnceLive`]).
//! - ended or cancelled: nothing ([`Refusal::SaleOver`]).
//!
//! Cancelling stops admissions at once on every edge (they all read the same meta) and keeps
//! the orders already admitted: the worker still writes every queued entry.

use chrono::{DateTime, NaiveDateTime};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::domain::{Campaign, GoodsId, MAX_SHARDS};
use crate::error::{AppError, Refusal, SaleRule};
use crate::plumbing::clock::now_ms;
use crate::sales::store::Phase;
use crate::sales::store::{self, SaleRow, share};
use crate::sales::stores::Stores;

/// The most units one sale may have.
pub const MAX_STOCK: i64 = 1_000_000;

/// Everything that defines a sale: the body of `POST /api/admin/sales`, and a sale as it stands.
/// Times are epoch milliseconds; the optional limits fall back to the configured defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaleSpec {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub detail: String,
    /// A site path or an http(s) URL; the demo picture when left out.
    #[serde(default = "default_image")]
    pub image_url: String,
    pub price: f64,
    pub sale_price: f64,
    pub stock: i64,
    pub start_at: i64,
    pub end_at: i64,
    /// Stock shards (hot items): 1 = not split.
    #[serde(default = "one")]
    pub shards: i64,
    pub user_rate: Option<f64>,
    pub user_burst: Option<i64>,
    pub gate_rate: Option<f64>,
    pub gate_burst: Option<i64>,
    pub path_factor: Option<i64>,
    /// A waiting room opens this many seconds before the start (absent: no room).
    pub room_opens_before: Option<i64>,
    /// The room's let-through rate per second (absent: the setting).
    pub room_rate: Option<f64>,
    /// The shop's own reference for the product (its SKU), carried in the grant and the order
    /// events (`identity::grant`); absent: the shop has none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::present"
    )]
    pub external_ref: Option<String>,
    /// First come, first served (the default), or a draw (`crate::draws`, docs/draws.md).
    #[serde(default, skip_serializing_if = "SaleMode::is_first_come")]
    pub mode: SaleMode,
    /// A draw: registration opens (epoch ms)…
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::present"
    )]
    pub register_from: Option<i64>,
    /// …and closes, and the draw runs (epoch ms).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::present"
    )]
    pub register_until: Option<i64>,
    /// A draw: seconds each entry given a unit has to buy it before it passes down the waitlist.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::present"
    )]
    pub claim_for: Option<i64>,
    /// The most units one buy may take (absent: 1).
    #[serde(default = "one")]
    pub per_buy: i64,
    /// The most units one account may hold in this sale, over all its buys (absent: 1, the one
    /// rule there was before: one unit per account).
    #[serde(default = "one")]
    pub per_account: i64,
    /// The campaign the sale is in (`domain::Campaign`: the sizes of one shoe), absent: none.
    /// Set when the sale is made, never changed ([`SaleRule::CampaignFixed`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The most units one account may hold across all of the campaign's sales; given with
    /// `campaign` (and only with it), the same in every sale of the campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_per_account: Option<i64>,
}

/// How a sale's units are handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SaleMode {
    /// First come, first served: the buy path races (the default).
    #[default]
    FirstCome,
    /// Entries during a registration window, a verifiable draw, claims, a waitlist.
    Draw,
}

impl SaleMode {
    fn is_first_come(&self) -> bool {
        *self == SaleMode::FirstCome
    }
}

/// The most units one buy may take (`perBuy`'s upper bound; the edge refuses more at once).
pub const MAX_PER_BUY: i64 = crate::domain::Quantity::MAX as i64;

fn one() -> i64 {
    1
}

fn default_image() -> String {
    "/img/goods.svg".into()
}

/// The body of `PATCH /api/admin/sales/{id}`: the fields to change, and `addStock` to restock.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SalePatch {
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub detail: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub image_url: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub price: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub sale_price: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub stock: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub add_stock: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub start_at: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub end_at: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub shards: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub user_rate: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub user_burst: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub gate_rate: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub gate_burst: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub path_factor: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub room_opens_before: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub room_rate: Option<f64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub external_ref: Option<String>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub per_buy: Option<i64>,
    #[serde(default, deserialize_with = "crate::domain::present")]
    pub per_account: Option<i64>,
    /// Taken only to refuse a change of it ([`SaleRule::CampaignFixed`]).
    pub campaign: Option<String>,
    pub campaign_per_account: Option<i64>,
}

/// Epoch ms of 2000-01-01 and 2100-01-01: the range a sale's times must be in.
pub(crate) const TIME_RANGE: std::ops::Range<i64> = 946_684_800_000..4_102_444_800_000;

fn money_ok(v: f64) -> bool {
    v.is_finite() && v > 0.0 && v <= 99_999_999.99 && ((v * 100.0).round() - v * 100.0).abs() < 1e-6
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn image_ok(url: &str) -> bool {
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "\"'<>\\`".contains(c));
    let shape = url.is_empty()
        || (url.starts_with('/') && !url.starts_with("//"))
        || url.starts_with("https://")
        || url.starts_with("http://");
    chars(url) <= 255 && clean && shape
}

impl SaleSpec {
    /// Checks every rule, in the order of [`SaleRule`] (but `perAccount` before `perBuy`, which
    /// is held to it); the first broken one is the answer.
    /// `now_ms` is for "the end is in the future".
    pub fn check(&self, now_ms: i64) -> Result<(), SaleRule> {
        let room_ok = self
            .room_opens_before
            .is_none_or(|s| (1..=86_400).contains(&s))
            && self
                .room_rate
                .is_none_or(|r| r.is_finite() && r > 0.0 && r <= 1e6);
        let ref_ok = self.external_ref.as_ref().is_none_or(|r| {
            (1..=255).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        });
        let campaign_limit_ok = match (&self.campaign, self.campaign_per_account) {
            (None, None) => true,
            (Some(_), Some(limit)) => (1..=MAX_STOCK).contains(&limit) && limit >= self.per_account,
            _ => false,
        };
        let rules: [(bool, SaleRule); 23] = [
            ((1..=64).contains(&chars(self.name.trim())), SaleRule::Name),
            (
                (1..=255).contains(&chars(self.title.trim())),
                SaleRule::Title,
            ),
            (chars(&self.detail) <= 10_000, SaleRule::Detail),
            (image_ok(&self.image_url), SaleRule::ImageUrl),
            (money_ok(self.price), SaleRule::Price),
            (money_ok(self.sale_price), SaleRule::SalePrice),
            (self.sale_price <= self.price, SaleRule::SalePriceAbovePrice),
            ((1..=MAX_STOCK).contains(&self.stock), SaleRule::Stock),
            (
                TIME_RANGE.contains(&self.start_at) && TIME_RANGE.contains(&self.end_at),
                SaleRule::Time,
            ),
            (self.end_at > self.start_at, SaleRule::EndBeforeStart),
            (self.end_at > now_ms, SaleRule::EndInPast),
            (
                (1..=i64::from(MAX_SHARDS)).contains(&self.shards) && self.shards <= self.stock,
                SaleRule::Shards,
            ),
            (
                [self.user_rate, self.gate_rate]
                    .iter()
                    .flatten()
                    .all(|r| r.is_finite() && *r > 0.0 && *r <= 1e6),
                SaleRule::Rate,
            ),
            (
                [self.user_burst, self.gate_burst]
                    .iter()
                    .flatten()
                    .all(|b| (1..=1_000_000).contains(b)),
                SaleRule::Burst,
            ),
            (
                self.path_factor.is_none_or(|f| (1..=100).contains(&f)),
                SaleRule::PathFactor,
            ),
            (room_ok, SaleRule::Room),
            (ref_ok, SaleRule::ExternalRef),
            (
                (1..=MAX_STOCK).contains(&self.per_account),
                SaleRule::PerAccount,
            ),
            (
                (1..=MAX_PER_BUY).contains(&self.per_buy) && self.per_buy <= self.per_account,
                SaleRule::PerBuy,
            ),
            // a buy takes its units from one shard: a split sale moves one unit at a time
            (self.per_buy == 1 || self.shards == 1, SaleRule::PerBuySplit),
            (
                self.campaign
                    .as_deref()
                    .is_none_or(|c| Campaign::parse(c).is_some()),
                SaleRule::Campaign,
            ),
            (campaign_limit_ok, SaleRule::CampaignPerAccount),
            // a campaign's sales share its hash tag; a split sale's shards each have their own
            (
                self.campaign.is_none() || self.shards == 1,
                SaleRule::CampaignSplit,
            ),
        ];
        if let Some((_, rule)) = rules.iter().find(|(ok, _)| !ok) {
            return Err(*rule);
        }
        self.check_draw()
    }

    /// The rules of a draw sale (and that a first-come sale has no draw fields).
    fn check_draw(&self) -> Result<(), SaleRule> {
        let fields = [self.register_from, self.register_until, self.claim_for];
        let (Some(from), Some(until), Some(claim)) =
            (self.register_from, self.register_until, self.claim_for)
        else {
            return match self.mode == SaleMode::Draw || fields.iter().any(Option::is_some) {
                true => Err(SaleRule::DrawFields),
                false => Ok(()),
            };
        };
        let rules = [
            (self.mode == SaleMode::Draw, SaleRule::DrawFields),
            (
                TIME_RANGE.contains(&from)
                    && TIME_RANGE.contains(&until)
                    && from < until
                    && until <= self.start_at,
                SaleRule::DrawWindows,
            ),
            ((1..=604_800).contains(&claim), SaleRule::ClaimFor),
            // one unit a claim: a draw hands out a claim per unit, so a winner who could take
            // more would take the units of the winners after them
            (
                self.shards == 1
                    && self.room_opens_before.is_none()
                    && self.per_buy == 1
                    && self.per_account == 1
                    && self.campaign.is_none(),
                SaleRule::DrawShape,
            ),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, rule)) => Err(*rule),
            None => Ok(()),
        }
    }

    /// The sale as MySQL has it.
    pub fn from_row(row: &SaleRow) -> Self {
        Self {
            name: row.name.clone(),
            title: row.title.clone(),
            detail: row.detail.clone(),
            image_url: row.img.clone(),
            price: row.price,
            sale_price: row.seckill_price,
            stock: i64::from(row.initial_stock),
            start_at: row.start_at.and_utc().timestamp_millis(),
            end_at: row.end_at.and_utc().timestamp_millis(),
            shards: i64::from(row.stock_shards),
            user_rate: row.user_rate,
            user_burst: row.user_burst.map(i64::from),
            gate_rate: row.gate_rate,
            gate_burst: row.gate_burst.map(i64::from),
            path_factor: row.path_factor.map(i64::from),
            room_opens_before: row.room_opens_secs.map(i64::from),
            room_rate: row.room_rate,
            external_ref: row.external_ref.clone(),
            mode: match row.register_until {
                Some(_) => SaleMode::Draw,
                None => SaleMode::FirstCome,
            },
            register_from: row.register_from.map(|t| t.and_utc().timestamp_millis()),
            register_until: row.register_until.map(|t| t.and_utc().timestamp_millis()),
            claim_for: row.claim_for_secs.map(i64::from),
            per_buy: i64::from(row.per_buy),
            per_account: i64::from(row.per_account),
            campaign: row.campaign.clone(),
            campaign_per_account: row.campaign_per_account.map(i64::from),
        }
    }
}

impl SalePatch {
    /// `spec` with this patch applied (`addStock` added to the stock), and whether anything
    /// changed. The fields fixed once a sale is live are listed in `fixed_changed`.
    fn apply(&self, spec: &SaleSpec) -> Result<Applied, SaleRule> {
        let campaign_changed = self
            .campaign
            .as_ref()
            .is_some_and(|c| Some(c) != spec.campaign.as_ref())
            || self
                .campaign_per_account
                .is_some_and(|l| Some(l) != spec.campaign_per_account);
        if campaign_changed {
            return Err(SaleRule::CampaignFixed);
        }
        let mut next = spec.clone();
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = &self.$field {
                    next.$field = v.clone();
                }
            )*};
        }
        macro_rules! set_some {
            ($($field:ident),*) => {$(
                if let Some(v) = self.$field {
                    next.$field = Some(v);
                }
            )*};
        }
        set!(
            name,
            title,
            detail,
            image_url,
            price,
            sale_price,
            stock,
            start_at,
            end_at,
            shards,
            per_buy,
            per_account
        );
        set_some!(
            user_rate,
            user_burst,
            gate_rate,
            gate_burst,
            path_factor,
            room_opens_before,
            room_rate
        );
        if let Some(r) = &self.external_ref {
            next.external_ref = Some(r.clone());
        }
        let add = self.add_stock.unwrap_or(0);
        if self.add_stock.is_some() {
            if !(1..=MAX_STOCK).contains(&add) || next.stock + add > MAX_STOCK {
                return Err(SaleRule::AddStock);
            }
            next.stock += add;
        }
        if next == *spec {
            return Err(SaleRule::NothingToChange);
        }
        let fixed_changed = next.name != spec.name
            || next.price != spec.price
            || next.sale_price != spec.sale_price
            || next.start_at != spec.start_at
            || next.shards != spec.shards
            || next.room_opens_before != spec.room_opens_before
            || next.room_rate != spec.room_rate
            || next.per_buy != spec.per_buy
            || next.per_account != spec.per_account;
        Ok(Applied {
            stock_set: self.stock.is_some_and(|s| s != spec.stock),
            fixed_changed,
            add,
            next,
        })
    }
}

/// A patch applied to a sale's spec.
struct Applied {
    next: SaleSpec,
    /// `addStock`: units to add to a live sale.
    add: i64,
    /// `stock` was sent, with a new value.
    stock_set: bool,
    /// A field fixed once live changed.
    fixed_changed: bool,
}

fn datetime(ms: i64) -> NaiveDateTime {
    DateTime::from_timestamp_millis(ms)
        .expect("checked against TIME_RANGE")
        .naive_utc()
}

/// Writes `spec` as a new sale (its `goods` and `seckill_goods` rows) in `tx`, unchecked;
/// returns the goods id. `create` checks it first; the demo seeder (`crate::cli::seed`) checks less
/// (an empty or already started sale is fine there), but its times are in [`TIME_RANGE`].
pub(crate) async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
    spec: &SaleSpec,
) -> Result<i64, sqlx::Error> {
    let id = sqlx::query(
        "INSERT INTO goods (name, title, img, detail, price, stock) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(spec.name.trim())
    .bind(spec.title.trim())
    .bind(&spec.image_url)
    .bind(&spec.detail)
    .bind(spec.price)
    .bind(spec.stock)
    .execute(&mut **tx)
    .await?
    .last_insert_id() as i64;
    sqlx::query(
        "INSERT INTO seckill_goods (goods_id, seckill_price, stock, initial_stock, start_at, \
         end_at, stock_shards, user_rate, user_burst, gate_rate, gate_burst, path_factor, \
         room_opens_secs, room_rate, external_ref, per_buy, per_account, campaign) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(spec.sale_price)
    .bind(spec.stock)
    .bind(spec.stock)
    .bind(datetime(spec.start_at))
    .bind(datetime(spec.end_at))
    .bind(spec.shards)
    .bind(spec.user_rate)
    .bind(spec.user_burst)
    .bind(spec.gate_rate)
    .bind(spec.gate_burst)
    .bind(spec.path_factor)
    .bind(spec.room_opens_before)
    .bind(spec.room_rate)
    .bind(&spec.external_ref)
    .bind(spec.per_buy)
    .bind(spec.per_account)
    .bind(&spec.campaign)
    .execute(&mut **tx)
    .await?;
    if let (Some(from), Some(until), Some(claim)) =
        (spec.register_from, spec.register_until, spec.claim_for)
    {
        crate::draws::record::insert(tx, id, datetime(from), datetime(until), claim).await?;
    }
    Ok(id)
}

/// Puts the sale `spec` makes into its campaign, in `tx` (before [`insert`]): the first sale of a
/// campaign writes the campaign's limit; every later one must state the same
/// ([`SaleRule::CampaignDisagrees`]; `tx` is then to be dropped, nothing written). Two sales
/// made at once meet on the campaign row's key: the second waits for the first's transaction.
pub(crate) async fn join_campaign(
    tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
    spec: &SaleSpec,
) -> Result<(), AppError> {
    let (Some(name), Some(limit)) = (&spec.campaign, spec.campaign_per_account) else {
        return Ok(());
    };
    sqlx::query("INSERT IGNORE INTO sale_campaign (name, per_account) VALUES (?, ?)")
        .bind(name)
        .bind(limit)
        .execute(&mut **tx)
        .await?;
    let have: i32 =
        sqlx::query_scalar("SELECT per_account FROM sale_campaign WHERE name = ? FOR UPDATE")
            .bind(name)
            .fetch_one(&mut **tx)
            .await?;
    match i64::from(have) == limit {
        true => Ok(()),
        false => Err(AppError::Invalid(SaleRule::CampaignDisagrees)),
    }
}

/// Creates a sale from `spec`: checked, written to MySQL, loaded into Redis.
pub async fn create(stores: &Stores, spec: &SaleSpec) -> Result<GoodsId, AppError> {
    let now = now_ms();
    spec.check(now).map_err(AppError::Invalid)?;
    if spec.register_from.is_some_and(|from| from <= now) {
        return Err(AppError::Invalid(SaleRule::RegisterInPast));
    }
    let mut tx = crate::plumbing::db::begin(&stores.db).await?;
    join_campaign(&mut tx, spec).await?;
    let id = insert(&mut tx, spec).await?;
    tx.commit().await?;
    let goods = GoodsId::new(id)?;
    let row = store::existing(&stores.db, goods).await?;
    let con = &mut stores.redis.clone();
    store::load(con, &stores.db, &stores.keys, &stores.settings, &row).await?;
    crate::draws::record::load_one(&stores.db, con, &stores.keys, goods).await?;
    announce(stores, goods).await?;
    tracing::info!(goods = id, stock = spec.stock, name = %spec.name, "sale created");
    Ok(goods)
}

/// Changes a sale as `patch` says, if its phase allows it (see the module comment).
pub async fn update(stores: &Stores, goods: GoodsId, patch: &SalePatch) -> Result<(), AppError> {
    let row = store::existing(&stores.db, goods).await?;
    let spec = SaleSpec::from_row(&row);
    let applied = patch.apply(&spec).map_err(AppError::Invalid)?;
    let now = now_ms();
    let phase = crate::sales::store::phase_of(&row, None, now);
    let scheduled = allowed_in(phase, &spec, &applied).map_err(AppError::Refused)?;
    let next = &applied.next;
    next.check(now).map_err(AppError::Invalid)?;

    let mut tx = crate::plumbing::db::begin(&stores.db).await?;
    // the guard: the phase this change was checked against still holds (scheduled: not
    // started yet; live: not ended yet), so a sale that went live meanwhile is left alone
    let changed = sqlx::query(
        "UPDATE seckill_goods SET seckill_price = ?, stock = stock + ?, initial_stock = ?, \
         start_at = ?, end_at = ?, stock_shards = ?, user_rate = ?, user_burst = ?, \
         gate_rate = ?, gate_burst = ?, path_factor = ?, room_opens_secs = ?, room_rate = ?, \
         external_ref = ?, per_buy = ?, per_account = ? WHERE goods_id = ? \
         AND cancelled_at IS NULL AND ((? AND start_at > NOW(3)) OR (NOT ? AND end_at > NOW(3)))",
    )
    .bind(next.sale_price)
    .bind(next.stock - spec.stock)
    .bind(next.stock)
    .bind(datetime(next.start_at))
    .bind(datetime(next.end_at))
    .bind(next.shards)
    .bind(next.user_rate)
    .bind(next.user_burst)
    .bind(next.gate_rate)
    .bind(next.gate_burst)
    .bind(next.path_factor)
    .bind(next.room_opens_before)
    .bind(next.room_rate)
    .bind(&next.external_ref)
    .bind(next.per_buy)
    .bind(next.per_account)
    .bind(goods.get())
    .bind(scheduled)
    .bind(scheduled)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        let why = if scheduled {
            Refusal::WentLive
        } else {
            Refusal::SaleOver
        };
        return Err(AppError::Refused(why));
    }
    sqlx::query(
        "UPDATE goods SET name = ?, title = ?, img = ?, detail = ?, price = ? WHERE id = ?",
    )
    .bind(next.name.trim())
    .bind(next.title.trim())
    .bind(&next.image_url)
    .bind(&next.detail)
    .bind(next.price)
    .bind(goods.get())
    .execute(&mut *tx)
    .await?;
    // a changed sale is audited again, and its readers run again if it had settled
    store::unsettle(&mut *tx, goods).await?;
    tx.commit().await?;

    let row = store::existing(&stores.db, goods).await?;
    let con = &mut stores.redis.clone();
    if scheduled && (next.stock != spec.stock || next.shards != spec.shards) {
        // before the start nothing is admitted: the stock is laid out again from MySQL (shard
        // 0's stock key goes, and every other shard whole); shard 0's other keys stay, among
        // them a waiting room's line of tickets
        let _: () = con.del(stores.keys.sale(goods).stock()).await?;
        con.delete_matching(&stores.keys.split_shards(goods))
            .await?;
    } else if applied.add > 0 {
        restock(stores, &row, applied.add).await?;
    }
    store::load(con, &stores.db, &stores.keys, &stores.settings, &row).await?;
    announce(stores, goods).await?;
    tracing::info!(goods = goods.get(), ?phase, "sale changed");
    Ok(())
}

/// Whether `applied` may be made to `spec` in `phase`; `Ok(true)` if the sale is scheduled
/// (anything goes), `Ok(false)` if it is live (the change keeps to what a live sale takes).
fn allowed_in(phase: Phase, spec: &SaleSpec, applied: &Applied) -> Result<bool, Refusal> {
    match phase {
        Phase::Ended | Phase::Cancelled => Err(Refusal::SaleOver),
        Phase::Scheduled => Ok(true),
        Phase::Live | Phase::SoldOut if applied.fixed_changed => Err(Refusal::FixedOnceLive),
        Phase::Live | Phase::SoldOut if applied.stock_set => Err(Refusal::StockOnceLive),
        Phase::Live | Phase::SoldOut if applied.next.end_at < spec.end_at => {
            Err(Refusal::EndEarlierOnceLive)
        }
        Phase::Live | Phase::SoldOut => Ok(false),
    }
}

/// Puts `add` new units into a live sale's shards, each its share.
async fn restock(stores: &Stores, row: &SaleRow, add: i64) -> Result<(), AppError> {
    let n = row.shards();
    let con = &mut stores.redis.clone();
    for shard in crate::domain::Shard::all(row.goods(), n) {
        let units = share(add, n, shard.index);
        if units > 0 {
            let _: i64 = con.incr(stores.keys.shard(shard).stock(), units).await?;
        }
    }
    tracing::info!(goods = row.goods_id, add, "sale restocked");
    Ok(())
}

/// Cancels a scheduled or live sale: admissions stop at once on every edge; admitted orders are
/// kept. Cancelling a cancelled sale again applies it to Redis again (a retry after Redis was
/// away); an ended sale is refused.
pub async fn cancel(stores: &Stores, goods: GoodsId) -> Result<(), AppError> {
    let row = store::existing(&stores.db, goods).await?;
    if row.cancelled_at.is_none() {
        let changed = sqlx::query(
            "UPDATE seckill_goods SET cancelled_at = NOW(3) \
             WHERE goods_id = ? AND cancelled_at IS NULL AND end_at > NOW(3)",
        )
        .bind(goods.get())
        .execute(&stores.db)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(AppError::Refused(Refusal::SaleOver));
        }
    }
    store::unsettle(&stores.db, goods).await?;
    let row = store::existing(&stores.db, goods).await?;
    let con = &mut stores.redis.clone();
    // the meta's window now ends at the cancellation: admit.lua answers ENDED from here on
    store::load(con, &stores.db, &stores.keys, &stores.settings, &row).await?;
    announce(stores, goods).await?;
    tracing::info!(goods = goods.get(), "sale cancelled");
    Ok(())
}

/// Drops the cached catalogue entries of `goods` and tells every edge the sale changed.
async fn announce(stores: &Stores, goods: GoodsId) -> Result<(), AppError> {
    let con = &mut stores.redis.clone();
    // one DEL per key: on a cluster the two keys may live on different nodes
    let _: () = con.del(stores.keys.goods(goods)).await?;
    let _: () = con.del(stores.keys.goods_list()).await?;
    // a restock reopens a split sale's waiting room too
    let _: () = con.del(stores.keys.sale(goods).room_soldout()).await?;
    let _: () = con
        .publish(stores.keys.restock_channel(), goods.get().to_string())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn spec() -> SaleSpec {
        SaleSpec {
            name: "Phone".into(),
            title: "A phone".into(),
            detail: String::new(),
            image_url: "/img/goods.svg".into(),
            price: 100.0,
            sale_price: 1.0,
            stock: 10,
            start_at: NOW + 60_000,
            end_at: NOW + 3_600_000,
            shards: 1,
            user_rate: None,
            user_burst: None,
            gate_rate: None,
            gate_burst: None,
            path_factor: None,
            room_opens_before: None,
            room_rate: None,
            external_ref: None,
            mode: SaleMode::FirstCome,
            register_from: None,
            register_until: None,
            claim_for: None,
            per_buy: 1,
            per_account: 1,
            campaign: None,
            campaign_per_account: None,
        }
    }

    #[test]
    fn each_rule_is_caught_by_its_own_code() {
        assert_eq!(spec().check(NOW), Ok(()));
        type Breaker = fn(&mut SaleSpec);
        let cases: Vec<(Breaker, SaleRule)> = vec![
            (|s| s.name = " ".into(), SaleRule::Name),
            (|s| s.name = "x".repeat(65), SaleRule::Name),
            (|s| s.title = String::new(), SaleRule::Title),
            (|s| s.detail = "x".repeat(10_001), SaleRule::Detail),
            (
                |s| s.image_url = "javascript:alert(1)".into(),
                SaleRule::ImageUrl,
            ),
            (|s| s.image_url = "/a b.png".into(), SaleRule::ImageUrl),
            (
                |s| s.image_url = "//evil.example/x.png".into(),
                SaleRule::ImageUrl,
            ),
            (|s| s.price = 0.0, SaleRule::Price),
            (|s| s.price = 1.001, SaleRule::Price),
            (|s| s.sale_price = f64::NAN, SaleRule::SalePrice),
            (|s| s.sale_price = 101.0, SaleRule::SalePriceAbovePrice),
            (|s| s.stock = 0, SaleRule::Stock),
            (|s| s.stock = MAX_STOCK + 1, SaleRule::Stock),
            (|s| s.start_at = 5, SaleRule::Time),
            (|s| s.end_at = s.start_at, SaleRule::EndBeforeStart),
            (
                |s| {
                    s.start_at = NOW - 20;
                    s.end_at = NOW - 10
                },
                SaleRule::EndInPast,
            ),
            (|s| s.shards = 0, SaleRule::Shards),
            (|s| s.shards = 11, SaleRule::Shards),
            (|s| s.user_rate = Some(0.0), SaleRule::Rate),
            (|s| s.gate_rate = Some(f64::INFINITY), SaleRule::Rate),
            (|s| s.gate_burst = Some(0), SaleRule::Burst),
            (|s| s.path_factor = Some(101), SaleRule::PathFactor),
            (|s| s.room_opens_before = Some(0), SaleRule::Room),
            (|s| s.room_rate = Some(-1.0), SaleRule::Room),
            (
                |s| s.external_ref = Some("a\nb".into()),
                SaleRule::ExternalRef,
            ),
            (|s| s.mode = SaleMode::Draw, SaleRule::DrawFields),
            (|s| s.claim_for = Some(60), SaleRule::DrawFields),
            (|s| s.per_account = 0, SaleRule::PerAccount),
            (|s| s.per_account = MAX_STOCK + 1, SaleRule::PerAccount),
            (|s| s.per_buy = 0, SaleRule::PerBuy),
            (|s| s.per_buy = 2, SaleRule::PerBuy),
            (
                |s| {
                    s.per_account = 2000;
                    s.per_buy = MAX_PER_BUY + 1
                },
                SaleRule::PerBuy,
            ),
            (
                |s| {
                    s.shards = 2;
                    s.per_buy = 2;
                    s.per_account = 2
                },
                SaleRule::PerBuySplit,
            ),
            (
                |s| {
                    s.campaign = Some("Shoe".into());
                    s.campaign_per_account = Some(1)
                },
                SaleRule::Campaign,
            ),
            (
                |s| s.campaign = Some("shoe".into()),
                SaleRule::CampaignPerAccount,
            ),
            (
                |s| s.campaign_per_account = Some(1),
                SaleRule::CampaignPerAccount,
            ),
            (
                |s| {
                    s.per_account = 3;
                    s.campaign = Some("shoe".into());
                    s.campaign_per_account = Some(2)
                },
                SaleRule::CampaignPerAccount,
            ),
            (
                |s| {
                    s.shards = 2;
                    s.campaign = Some("shoe".into());
                    s.campaign_per_account = Some(2)
                },
                SaleRule::CampaignSplit,
            ),
        ];
        let draw: Breaker = |s| {
            s.mode = SaleMode::Draw;
            s.register_from = Some(NOW + 1_000);
            s.register_until = Some(NOW + 30_000);
            s.claim_for = Some(1800);
        };
        let mut ok = spec();
        draw(&mut ok);
        assert_eq!(ok.check(NOW), Ok(()));
        let more: Vec<(Breaker, SaleRule)> = vec![
            (|s| s.register_from = None, SaleRule::DrawFields),
            (
                |s| s.register_until = s.register_from,
                SaleRule::DrawWindows,
            ),
            (
                |s| s.register_until = Some(s.start_at + 1),
                SaleRule::DrawWindows,
            ),
            (|s| s.claim_for = Some(0), SaleRule::ClaimFor),
            (|s| s.shards = 2, SaleRule::DrawShape),
            (|s| s.room_opens_before = Some(60), SaleRule::DrawShape),
            (
                |s| {
                    s.campaign = Some("shoe".into());
                    s.campaign_per_account = Some(1)
                },
                SaleRule::DrawShape,
            ),
        ];
        for (break_it, rule) in more {
            let mut s = ok.clone();
            break_it(&mut s);
            assert_eq!(s.check(NOW), Err(rule), "{s:?}");
        }
        for (break_it, rule) in cases {
            let mut s = spec();
            break_it(&mut s);
            assert_eq!(s.check(NOW), Err(rule), "{s:?}");
        }
    }

    #[test]
    fn a_patch_knows_what_it_changes() {
        let base = spec();
        let empty = SalePatch::default();
        assert!(matches!(empty.apply(&base), Err(SaleRule::NothingToChange)));
        let same = SalePatch {
            stock: Some(10),
            ..Default::default()
        };
        assert!(matches!(same.apply(&base), Err(SaleRule::NothingToChange)));
        let restock = SalePatch {
            add_stock: Some(5),
            ..Default::default()
        };
        let a = restock.apply(&base).unwrap();
        assert_eq!(
            (a.next.stock, a.add, a.stock_set, a.fixed_changed),
            (15, 5, false, false)
        );
        let price = SalePatch {
            price: Some(90.0),
            ..Default::default()
        };
        assert!(price.apply(&base).unwrap().fixed_changed);
        let too_much = SalePatch {
            add_stock: Some(MAX_STOCK),
            ..Default::default()
        };
        assert!(matches!(too_much.apply(&base), Err(SaleRule::AddStock)));
        let mut in_one = base.clone();
        in_one.campaign = Some("shoe".into());
        in_one.campaign_per_account = Some(2);
        for patch in [
            SalePatch {
                campaign: Some("boot".into()),
                ..Default::default()
            },
            SalePatch {
                campaign_per_account: Some(3),
                ..Default::default()
            },
            SalePatch {
                campaign: Some("shoe".into()),
                ..Default::default()
            },
        ] {
            let on_plain = patch.apply(&base);
            assert!(
                matches!(on_plain, Err(SaleRule::CampaignFixed)),
                "{patch:?}"
            );
        }
        let same = SalePatch {
            campaign: Some("shoe".into()),
            campaign_per_account: Some(2),
            ..Default::default()
        };
        assert!(matches!(
            same.apply(&in_one),
            Err(SaleRule::NothingToChange)
        ));
    }
}
