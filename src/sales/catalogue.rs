//! Catalogue reads, cache-aside: Redis first (`cache:goods:list`, `cache:goods:ID`), MySQL on a
//! miss, the copy stored with a TTL plus random jitter so copies do not expire together. An id
//! that does not exist is cached as absent for a short time, so a flood of bad ids stays off MySQL.
//!
//! The cached copy carries the sale's window; `status` and `remainSeconds` are computed per request
//! from it, and a detail's `stock` is the live Redis stock.

use rand::Rng;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::domain::{GoodsId, Shard};
use crate::error::AppError;
use crate::plumbing::keys;
use crate::sales::store::{self, SaleRow};
use crate::state::AppState;

/// One sale as the API shows it (camelCase field names, docs/api.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GoodsView {
    pub id: i64,
    pub name: String,
    pub title: String,
    pub img: String,
    pub detail: String,
    pub price: f64,
    pub seckill_price: f64,
    pub stock: i64,
    /// Epoch milliseconds.
    pub start_at: i64,
    pub end_at: i64,
    /// When the sale's waiting room opens (epoch ms); absent: the sale has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_opens_at: Option<i64>,
    /// The sale's rules: the most units one buy may take, and one account may hold (a copy
    /// cached before they existed reads as 1 and 1, which every sale then was).
    #[serde(default = "one")]
    pub per_buy: i64,
    #[serde(default = "one")]
    pub per_account: i64,
    /// The sale is in a campaign (the sizes of one shoe): its name, and the most units one
    /// account may hold across the campaign's sales; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_per_account: Option<i64>,
}

fn one() -> i64 {
    1
}

impl From<&SaleRow> for GoodsView {
    fn from(s: &SaleRow) -> Self {
        Self {
            id: s.goods_id,
            name: s.name.clone(),
            title: s.title.clone(),
            img: s.img.clone(),
            detail: s.detail.clone(),
            price: s.price,
            seckill_price: s.seckill_price,
            stock: s.stock as i64,
            start_at: s.start_ms(),
            end_at: s.end_ms(),
            room_opens_at: s
                .room_opens_secs
                .map(|secs| s.start_ms() - i64::from(secs.max(0)) * 1000),
            per_buy: i64::from(s.per_buy.max(1)),
            per_account: i64::from(s.per_account.max(1)),
            campaign: s.campaign.clone(),
            campaign_per_account: s
                .campaign
                .as_ref()
                .and(s.campaign_per_account.map(i64::from)),
        }
    }
}

/// A detail: the sale plus where it stands now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GoodsDetail {
    #[serde(flatten)]
    pub goods: GoodsView,
    /// 0 not started, 1 running, 2 ended.
    pub status: u8,
    /// Seconds until the start while not started, 0 while running, -1 once ended.
    pub remain_seconds: i64,
    /// Seconds until the end while running (0 otherwise).
    pub end_seconds: i64,
}

impl GoodsDetail {
    pub fn at(goods: GoodsView, now_ms: i64) -> Self {
        let (status, remain_seconds, end_seconds) = if now_ms < goods.start_at {
            (0, (goods.start_at - now_ms + 999) / 1000, 0)
        } else if now_ms < goods.end_at {
            (1, 0, (goods.end_at - now_ms) / 1000)
        } else {
            (2, -1, 0)
        };
        Self {
            goods,
            status,
            remain_seconds,
            end_seconds,
        }
    }
}

fn ttl_with_jitter() -> u64 {
    keys::CACHE_TTL.as_secs() + rand::rng().random_range(0..=keys::CACHE_JITTER.as_secs())
}

/// How many past sales one page of the catalogue's history holds.
pub const PAST_PAGE: usize = 50;

/// The sales that are over, a page at a time (page 1: the latest [`PAST_PAGE`]); read from
/// MySQL by index, not cached: only a shopper browsing history asks.
pub async fn past(state: &AppState, page: usize) -> Result<Vec<GoodsView>, AppError> {
    let rows = store::past(&state.db, PAST_PAGE, (page.max(1) - 1) * PAST_PAGE).await?;
    Ok(rows.iter().map(GoodsView::from).collect())
}

/// The sale list: the sales running or coming, not those that are over (see [`past`]), so it
/// does not grow with the shop's history.
pub async fn list(state: &AppState) -> Result<Vec<GoodsView>, AppError> {
    let mut con = state.redis.clone();
    let key = state.keys.goods_list();
    if let Some(json) = con.get::<_, Option<String>>(&key).await?
        && let Ok(list) = serde_json::from_str(&json)
    {
        return Ok(list);
    }
    let list: Vec<GoodsView> = store::current(&state.db)
        .await?
        .iter()
        .map(GoodsView::from)
        .collect();
    let json = serde_json::to_string(&list).map_err(anyhow::Error::from)?;
    let _: () = con.set_ex(&key, json, ttl_with_jitter()).await?;
    Ok(list)
}

/// One sale with its status; `NotFound` if there is none (remembered for [`keys::ABSENT_TTL`]).
pub async fn detail(state: &AppState, goods: GoodsId) -> Result<GoodsDetail, AppError> {
    let mut con = state.redis.clone();
    let key = state.keys.goods(goods);
    // the cached view and the stock of every shard live in different slots (on a cluster,
    // maybe on different nodes): one command each, sent together on the multiplexed connection
    let shards = state.shards(goods).await?;
    let stocks = Shard::all(goods, shards).map(|shard| {
        let (mut con, key) = (con.clone(), state.keys.shard(shard).stock());
        async move { con.get::<_, Option<i64>>(key).await }
    });
    let mut con2 = con.clone();
    let (cached, stocks) = tokio::join!(
        con2.get::<_, Option<String>>(&key),
        futures_util::future::try_join_all(stocks)
    );
    let (cached, stocks) = (cached?, stocks?);
    let stock: Option<i64> = stocks.iter().copied().sum();
    let mut view: GoodsView = match cached.as_deref() {
        Some(keys::ABSENT) => return Err(AppError::NotFound),
        Some(json) => serde_json::from_str(json).map_err(anyhow::Error::from)?,
        // an id above the highest there is: no MySQL read, nothing cached for it (a flood of
        // invented ids costs one shared read a second, not one each)
        None if goods.get() > highest(state).await? => return Err(AppError::NotFound),
        None => match store::one(&state.db, goods).await? {
            Some(row) => {
                let view = GoodsView::from(&row);
                let json = serde_json::to_string(&view).map_err(anyhow::Error::from)?;
                let _: () = con.set_ex(&key, json, ttl_with_jitter()).await?;
                view
            }
            None => {
                let _: () = con
                    .set_ex(&key, keys::ABSENT, keys::ABSENT_TTL.as_secs())
                    .await?;
                return Err(AppError::NotFound);
            }
        },
    };
    if let Some(stock) = stock {
        view.stock = stock.max(0);
    }
    Ok(GoodsDetail::at(view, chrono::Utc::now().timestamp_millis()))
}

/// The highest sale id MySQL has, through [`keys::HIGHEST_TTL`] of cache.
async fn highest(state: &AppState) -> Result<i64, AppError> {
    let mut con = state.redis.clone();
    let key = state.keys.goods_highest();
    if let Some(max) = con.get::<_, Option<i64>>(&key).await? {
        return Ok(max);
    }
    let max: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM goods")
        .fetch_one(&state.db)
        .await?;
    let _: () = con.set_ex(&key, max, keys::HIGHEST_TTL.as_secs()).await?;
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(start_at: i64, end_at: i64) -> GoodsView {
        GoodsView {
            id: 1,
            name: "n".into(),
            title: "t".into(),
            img: String::new(),
            detail: String::new(),
            price: 1.0,
            seckill_price: 0.5,
            stock: 1,
            start_at,
            end_at,
            room_opens_at: None,
            per_buy: 1,
            per_account: 1,
            campaign: None,
            campaign_per_account: None,
        }
    }

    #[test]
    fn status_and_remaining_seconds() {
        let d = GoodsDetail::at(view(10_000, 20_000), 8_500);
        assert_eq!((d.status, d.remain_seconds), (0, 2));
        let d = GoodsDetail::at(view(10_000, 20_000), 10_000);
        assert_eq!((d.status, d.remain_seconds, d.end_seconds), (1, 0, 10));
        let d = GoodsDetail::at(view(10_000, 20_000), 20_000);
        assert_eq!((d.status, d.remain_seconds), (2, -1));
    }
}
