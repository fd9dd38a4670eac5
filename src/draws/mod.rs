//! Draw sales (issue #43, docs/draws.md): a sale whose units go to entries drawn at random, in a
//! draw anyone can check, instead of to the fastest buyers.
//!
//! A draw sale (`mode: "draw"` in sale management) takes entries between `registerFrom` and
//! `registerUntil`, one per account, each paid for with a proof of work; at `registerUntil` a
//! worker draws; each of the first `units` entries in the draw's order gets a claim of `claimFor`
//! seconds to buy through the ordinary buy (the edge issues a buy path for a draw sale only to an
//! entry holding a claim); units not claimed in time, or given back by a failed or unpaid
//! order, go to the next entries in the order, each with a claim of its own.
//!
//! What this folder owns:
//! - [`order`]: the verifiable part: seed and commitment, entry digests, the order, the
//!   publication and its check (no I/O).
//! - [`proof`]: the proof of work in the ALTCHA v1 form: challenges, their check, difficulty by
//!   address (no I/O).
//! - [`record`]: the `sale_draw` row, the draw's Redis keys and scripts (`lua/draw_enter.lua`,
//!   `lua/draw_move.lua`), the draw run, the waitlist's step, the views.
//!
//! Here too: [`Cache`], what an edge remembers of draws, and [`run`], the worker's task.

pub mod order;
pub mod proof;
pub mod record;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::MySqlPool;
use tokio::sync::watch;

use crate::domain::GoodsId;
use crate::error::{AppError, DrawFault};
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::RedisConn;

/// How long an edge trusts a draw's row (its windows and secret never change; `drawn_at` does,
/// once).
const ROW_TTL: Duration = Duration::from_secs(2);
/// How often the worker looks after draws (the draw at its time, the waitlist's moves).
pub const STEP_EVERY: Duration = Duration::from_millis(250);

/// A draw's row as last read (`None`: not a draw sale), and when.
type RowSeen = (Option<Arc<record::DrawRow>>, Instant);

/// What an edge remembers of draws: rows for a moment, and once drawn, places and the
/// publication (neither changes after the draw).
#[derive(Default)]
pub struct Cache {
    rows: Mutex<HashMap<GoodsId, RowSeen>>,
    places: Mutex<HashMap<GoodsId, Arc<HashMap<i64, i64>>>>,
    published: Mutex<HashMap<GoodsId, Arc<bytes::Bytes>>>,
}

impl Cache {
    /// The draw of `goods`, or `NotADraw`.
    pub async fn row(
        &self,
        db: &MySqlPool,
        goods: GoodsId,
    ) -> Result<Arc<record::DrawRow>, AppError> {
        let hit = self.rows.lock().expect("rows lock").get(&goods).cloned();
        let row = match hit {
            Some((row, at)) if at.elapsed() < ROW_TTL => row,
            _ => {
                let row = record::row(db, goods).await?.map(Arc::new);
                self.rows
                    .lock()
                    .expect("rows lock")
                    .insert(goods, (row.clone(), Instant::now()));
                row
            }
        };
        row.ok_or(AppError::Draw(DrawFault::NotADraw))
    }

    /// Every entry's place in a drawn sale's order.
    pub async fn places(
        &self,
        redis: &RedisConn,
        keys: &Keys,
        goods: GoodsId,
    ) -> Result<Arc<HashMap<i64, i64>>, AppError> {
        // only once drawn whole (the callers check `DrawRow::drawn`): cached for good
        if let Some(p) = self.places.lock().expect("places lock").get(&goods) {
            return Ok(p.clone());
        }
        let p = Arc::new(record::places(&mut redis.clone(), keys, goods).await?);
        self.places
            .lock()
            .expect("places lock")
            .insert(goods, p.clone());
        Ok(p)
    }

    /// A drawn sale's publication, as JSON.
    pub async fn published(
        &self,
        redis: &RedisConn,
        keys: &Keys,
        row: &record::DrawRow,
    ) -> Result<Arc<bytes::Bytes>, AppError> {
        let goods = row.goods();
        if let Some(p) = self.published.lock().expect("published lock").get(&goods) {
            return Ok(p.clone());
        }
        let p = record::publication(&mut redis.clone(), keys, row).await?;
        let json = Arc::new(bytes::Bytes::from(
            serde_json::to_vec(&p).map_err(anyhow::Error::from)?,
        ));
        self.published
            .lock()
            .expect("published lock")
            .insert(goods, json.clone());
        Ok(json)
    }
}

/// The worker's task: every [`STEP_EVERY`], each draw not drawn is loaded into Redis (again,
/// after a Redis that lost it) and drawn once its registration has closed; each drawn sale still
/// running takes a waitlist step. Several workers may run it: the draw is claimed in MySQL, the
/// step is one script.
pub async fn run(db: MySqlPool, redis: RedisConn, keys: Keys, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = look_after(&db, &redis, &keys).await {
            tracing::warn!(error = %e, "draws: a pass failed; trying again");
        }
    }
}

async fn look_after(db: &MySqlPool, redis: &RedisConn, keys: &Keys) -> anyhow::Result<()> {
    let now = crate::plumbing::clock::now_ms();
    let con = &mut redis.clone();
    for row in record::active(db).await? {
        if row.drawn_at.is_some() && row.entries.is_none() {
            // claimed by a runner and not finished: after a minute, someone else's to finish
            if record::release_stale(db, row.goods()).await? {
                tracing::warn!(
                    goods = row.goods_id,
                    "a draw left unfinished is drawn again"
                );
            }
        } else if row.drawn_at.is_none() {
            record::load(con, keys, &row).await?;
            if now >= row.until_ms() && row.cancelled_at.is_none() {
                match record::draw(db, con, keys, row.goods(), now).await {
                    Ok(_) | Err(AppError::Draw(DrawFault::AlreadyDrawn)) => {}
                    Err(e) => tracing::warn!(goods = row.goods_id, error = %e, "draw failed"),
                }
            }
        } else if now < row.end_ms() {
            record::step(db, con, keys, &row).await?;
        }
    }
    Ok(())
}
