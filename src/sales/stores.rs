//! [`Stores`]: the handles that sale code is given instead of the whole `AppState`.
//!
//! Managing, auditing and viewing a sale read and write MySQL and Redis by the key names of one
//! namespace, run the Lua scripts, and fill a new sale's limits from the settings. That is all
//! they get: no pages, no admission lanes, no edge flags, so what they touch is plain from their
//! signatures and a test or a command-line tool builds one without an edge.

use std::sync::Arc;

use sqlx::MySqlPool;

use crate::admission::scripts::Scripts;
use crate::plumbing::config::Settings;
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::RedisConn;

#[derive(Clone)]
pub struct Stores {
    pub db: MySqlPool,
    pub redis: RedisConn,
    pub keys: Keys,
    pub scripts: Arc<Scripts>,
    /// A sale that sets no limits of its own takes these (`sales::store::load`).
    pub settings: Arc<Settings>,
}
