//! `/healthz` (the process answers), `/readyz` (Redis and MySQL answer, in `auth = jwt` the
//! shop's key set was fetched, and why not) and
//! `/metrics` (Prometheus text, with per-sale queue gauges read from Redis).

use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::respond::{self, Resp};
use crate::domain::Shard;
use crate::plumbing::config::AuthMode;
use crate::plumbing::metrics::SaleGauges;
use crate::sales::store;
use crate::state::AppState;

pub fn healthz() -> Resp {
    respond::ok("ok")
}

pub async fn readyz(state: &AppState) -> Resp {
    let bound = Duration::from_secs(1);
    let redis = tokio::time::timeout(bound, async {
        redis::cmd("PING")
            .query_async::<String>(&mut state.redis.clone())
            .await
    });
    let mysql = tokio::time::timeout(bound, sqlx::query("SELECT 1").execute(&state.db));
    let (redis, mysql) = tokio::join!(redis, mysql);
    let why = |r: Result<Result<(), String>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
    };
    let redis = why(redis.map(|r| r.map(drop).map_err(|e| e.to_string())));
    let mysql = why(mysql.map(|r| r.map(drop).map_err(|e| e.to_string())));
    // `auth = jwt` with no key set of the shop's: every shopper would be refused (`both` still
    // serves sessions: shown, not unready)
    let shop_keys = state.identity.shop.as_ref().and_then(|s| s.unready());
    let keys_block = shop_keys.is_some() && state.settings.auth == AuthMode::Jwt;
    let ready = redis == "ok" && mysql == "ok" && !keys_block;
    let mut body = serde_json::json!({ "ready": ready, "redis": redis, "mysql": mysql });
    if let (serde_json::Value::Object(o), Some(why)) = (&mut body, shop_keys) {
        o.insert("shopKeys".into(), why.into());
    }
    if let (serde_json::Value::Object(o), serde_json::Value::Object(h)) =
        (&mut body, serde_json::json!(redis_health(state).await))
    {
        o.extend(h);
    }
    // orders out: a sink failing or disabled is shown (it does not make the process unready:
    // orders are still written, their events wait in the outbox)
    if let (serde_json::Value::Object(o), Some(sinks)) = (&mut body, event_sinks(state).await) {
        o.insert("eventSinks".into(), serde_json::json!(sinks));
    }
    let mut resp = respond::ok(body);
    if !ready {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    resp
}

/// Where this process writes in Redis and how replica confirmation stands: `/readyz`, and the
/// console's live view (a failover, buys waiting for a replica).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisHealth {
    pub redis_mode: &'static str,
    /// `host:port`, or none on a cluster (a primary per slot range).
    pub redis_primary: Option<String>,
    pub redis_failovers: u64,
    pub replicas_required: u32,
    pub replicas_why: String,
    /// `off`, `ok: …`, `waiting: …` (fewer replicas connected than required) or `unknown: …`.
    pub replica_confirmation: String,
    pub confirm_waiting: i64,
    pub confirm_timeouts: u64,
}

pub async fn redis_health(state: &AppState) -> RedisHealth {
    let target = &state.redis_target;
    let replica_confirmation = match &state.confirm {
        None => "off".to_string(),
        Some(c) => {
            let connected = tokio::time::timeout(
                Duration::from_secs(1),
                target.replicas(&mut state.redis.clone()),
            )
            .await
            .ok()
            .and_then(Result::ok);
            match connected {
                Some(n) if n >= c.replicas as usize => {
                    format!("ok: {n} replica(s) connected, {} required", c.replicas)
                }
                Some(n) => format!(
                    "waiting: {n} replica(s) connected, {} required; buys are answered \
                     \"being confirmed\" (500509) until one is back",
                    c.replicas
                ),
                None => "unknown: the replicas could not be counted".to_string(),
            }
        }
    };
    let m = &state.metrics;
    RedisHealth {
        redis_mode: target.mode().as_str(),
        redis_primary: target.primary(),
        redis_failovers: target.failovers(),
        replicas_required: state.confirm.as_ref().map_or(0, |c| c.replicas),
        replicas_why: state.confirm_why.to_string(),
        replica_confirmation,
        confirm_waiting: m.confirm_waiting.get(),
        confirm_timeouts: m.confirm_timeouts.get(),
    }
}

/// The sinks of orders out as they stand (`events::ops::status`), when any is configured; best
/// effort, within a second.
pub async fn event_sinks(state: &AppState) -> Option<Vec<crate::events::ops::SinkState>> {
    if !state.events.on() {
        return None;
    }
    tokio::time::timeout(
        Duration::from_secs(1),
        crate::events::ops::status(&state.db),
    )
    .await
    .ok()?
    .ok()
}

/// Per-shard queue length, pending count and stock of every unsettled sale (settled ones are
/// history: their figures no longer move), best effort (Redis or MySQL down leaves
/// them out). The stock drift is not read here: the worker's audit sets it (`crate::operators::audit`).
async fn sale_gauges(state: &AppState) -> SaleGauges {
    let gauges = SaleGauges::default();
    let Ok(Ok(sales)) =
        tokio::time::timeout(Duration::from_secs(1), store::unsettled(&state.db)).await
    else {
        return gauges;
    };
    let mut con = state.redis.clone();
    for sale in &sales {
        sale.teach(&state.keys);
        if sale.room_opens_secs.is_some()
            && let Ok(size) = redis::cmd("ZCARD")
                .arg(state.keys.sale(sale.goods()).room_line())
                .query_async::<i64>(&mut con)
                .await
        {
            gauges.room(sale.goods_id, size);
        }
        for shard in Shard::all(sale.goods(), sale.shards()) {
            if let Ok(s) = crate::operators::live::shard_state(&mut con, &state.keys, shard).await {
                gauges.shard(sale.goods_id, shard.index, s.backlog, s.pending, s.stock);
            }
        }
    }
    gauges
}

/// The script versions this process runs and what each decided here (see
/// `admission::scripts::SetStats`), as of this scrape.
fn script_gauges(state: &AppState, gauges: &SaleGauges) {
    use std::sync::atomic::Ordering::Relaxed;
    let live = state.scripts.get();
    gauges.script_version("live", live.version, 0);
    let canary = state.scripts.canary();
    if let Some(c) = &canary {
        gauges.script_version("canary", c.set.version, c.pct);
    }
    for set in std::iter::once(live).chain(canary.map(|c| c.set)) {
        let s = &set.stats;
        gauges.script_counts(
            set.version,
            s.calls.load(Relaxed),
            s.micros.load(Relaxed) as f64 / 1e6,
            s.by_outcome(),
        );
    }
}

pub async fn metrics(state: &AppState) -> Resp {
    // the breaker's state as of this scrape
    state
        .metrics
        .breaker_open
        .set(i64::from(state.redis_breaker.is_open()));
    // where this process writes now, and how many times that moved
    let target = &state.redis_target;
    state.metrics.failovers.set(target.failovers() as i64);
    state.metrics.primary.clear();
    state
        .metrics
        .primary
        .get_or_create(&crate::plumbing::metrics::PrimaryLabels {
            mode: target.mode().as_str(),
            primary: target.primary().unwrap_or_else(|| "per-slot".into()),
        })
        .set(1);
    let gauges = sale_gauges(state).await;
    script_gauges(state, &gauges);
    for s in event_sinks(state).await.unwrap_or_default() {
        gauges.event_sink(
            &s.sink,
            s.backlog,
            s.oldest_seconds,
            s.failing,
            s.parked,
            s.disabled.is_some(),
        );
    }
    let text = state.metrics.render(&gauges);
    let mut resp = Response::new(super::body::Body::full(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
