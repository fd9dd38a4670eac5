//! What every request handler and worker task shares: settings, connections, scripts, flags.

use std::sync::Arc;

use sqlx::MySqlPool;

use crate::admission::scripts::Scripts;
use crate::admission::soldout::LocalAnswers;
use crate::admission::split::Shapes;
use crate::http::static_files::Assets;
use crate::plumbing::breaker::Breaker;
use crate::plumbing::config::Settings;
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::{RedisConn, Target};

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub keys: Keys,
    /// One multiplexed, self-reconnecting connection shared by every request (to one server or
    /// a cluster): cheap to clone, and it pipelines concurrent commands on one socket (a pool of
    /// connections was measured at half its throughput). Blocking reads never go on it.
    pub redis: RedisConn,
    /// Where Redis is: pub/sub and blocking readers open connections of their own from it.
    pub redis_target: Target,
    /// Replica confirmation of admissions and of the worker's batches; `None` when
    /// `redis_ack_replicas` is 0 (see [`crate::plumbing::replicas`]).
    pub confirm: Option<Arc<crate::plumbing::replicas::Confirm>>,
    /// Why that many replicas (for `/readyz`).
    pub confirm_why: Arc<String>,
    pub db: MySqlPool,
    pub scripts: Arc<Scripts>,
    /// The sold-out flags and the buyer marks: buys answered without Redis (see
    /// [`crate::admission::soldout`]).
    pub local: Arc<LocalAnswers>,
    /// Copies of the sessions this edge read lately (see [`crate::accounts::session`]).
    pub sessions: Arc<crate::accounts::session::SessionCache>,
    /// The tokens logged out lately: a buy reads no session, so it asks these (see
    /// [`crate::accounts::logouts`]).
    pub logouts: Arc<crate::accounts::logouts::Logouts>,
    /// The shop's side: its tokens, its subjects, flashgate's grants (see [`crate::identity`]).
    pub identity: Arc<crate::identity::Identity>,
    /// Orders out: the sinks and how events reach them (see [`crate::events`]); off when none.
    pub events: Arc<crate::events::EventSettings>,
    /// How many stock shards each sale has (hot items are split).
    pub shapes: Arc<Shapes>,
    /// The waiting rooms: joins and looks (see [`crate::admission::room`]).
    pub room: Arc<crate::admission::room::Room>,
    /// The shoppers' event streams on this edge (see [`crate::admission::push`]).
    pub push: Arc<crate::admission::push::Hub>,
    /// Seals hidden paths and opens them at the buy, before Redis (`admission::path_seal`).
    pub path_seal: Arc<crate::admission::path_seal::PathSeal>,
    pub metrics: Arc<Metrics>,
    /// Per-sale, per-second counts for the operators' live view, flushed to Redis each second.
    pub tally: Arc<crate::operators::tally::Tally>,
    /// Opens after repeated Redis failures, so requests fail fast instead of piling up.
    pub redis_breaker: Arc<Breaker>,
    /// The static pages, read once at start-up.
    pub assets: Arc<Assets>,
    /// What this edge remembers of draw sales (see [`crate::draws::Cache`]).
    pub draws: Arc<crate::draws::Cache>,
    /// Decides buys through `lua/admit.lua`, coalescing those of one shard.
    pub admitter: Arc<crate::admission::coalesce::Admitter>,
    /// Where password hashes are computed, a bounded number at a time, off the async workers.
    pub login_pool: Arc<crate::accounts::login_pool::LoginPool>,
    /// The proxies whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub proxies: Arc<crate::http::proxy::Trusted>,
}

impl AppState {
    /// How many stock shards `goods` has (see [`crate::admission::split`]).
    pub async fn shards(
        &self,
        goods: crate::domain::GoodsId,
    ) -> Result<u16, crate::error::AppError> {
        self.shapes.shards(&self.redis, &self.keys, goods).await
    }

    /// The shape of `goods`: shards and waiting room (see [`crate::admission::split::Shape`]).
    pub async fn shape(
        &self,
        goods: crate::domain::GoodsId,
    ) -> Result<crate::admission::split::Shape, crate::error::AppError> {
        self.shapes.shape(&self.redis, &self.keys, goods).await
    }

    /// What sale code (management, the audit, the live view) is given: the stores, not the edge.
    pub fn stores(&self) -> crate::sales::stores::Stores {
        crate::sales::stores::Stores {
            db: self.db.clone(),
            redis: self.redis.clone(),
            keys: self.keys.clone(),
            scripts: self.scripts.clone(),
            settings: self.settings.clone(),
        }
    }

    /// What moving units between a split sale's shards needs.
    pub fn mover(&self) -> crate::admission::split::Mover {
        crate::admission::split::Mover {
            redis: self.redis.clone(),
            keys: self.keys.clone(),
            scripts: self.scripts.clone(),
            metrics: self.metrics.clone(),
        }
    }
}
