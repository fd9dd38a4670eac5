//! `/healthz` (the process answers), `/readyz` (Redis and MySQL answer, and why not) and
//! `/metrics` (Prometheus text, with per-sale queue gauges read from Redis).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::respond::{self, Resp};
use crate::domain::Shard;
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
    let ready = redis == "ok" && mysql == "ok";
    let mut resp =
        respond::ok(serde_json::json!({ "ready": ready, "redis": redis, "mysql": mysql }));
    if !ready {
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    resp
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

pub async fn metrics(state: &AppState) -> Resp {
    // the breaker's state as of this scrape
    state
        .metrics
        .breaker_open
        .set(i64::from(state.redis_breaker.is_open()));
    let text = state.metrics.render(&sale_gauges(state).await);
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
