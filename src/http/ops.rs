//! `/healthz` (the process answers), `/readyz` (Redis and MySQL answer, and why not) and
//! `/metrics` (Prometheus text, with per-sale queue gauges read from Redis).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::respond::{self, Resp};
use crate::domain::Shard;
use crate::keys;
use crate::sale;
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

/// Per-sale (per-bucket) stream length, pending count and stock, best effort (Redis or MySQL down leaves them out).
async fn queue_gauges(state: &AppState) -> String {
    let Ok(Ok(sales)) = tokio::time::timeout(Duration::from_secs(1), sale::all(&state.db)).await
    else {
        return String::new();
    };
    let mut out = String::from(
        "# TYPE flashgate_queue_length gauge\n# TYPE flashgate_queue_pending gauge\n# TYPE flashgate_stock gauge\n",
    );
    let mut con = state.redis.clone();
    for shard in sales
        .iter()
        .flat_map(|s| Shard::all(s.goods(), s.buckets()))
    {
        let k = state.keys.shard(shard);
        let reply: redis::RedisResult<(i64, Option<i64>)> = redis::pipe()
            .xlen(k.queue())
            .get(k.stock())
            .query_async(&mut con)
            .await;
        let pending: i64 = redis::cmd("XPENDING")
            .arg(k.queue())
            .arg(keys::GROUP)
            .query_async::<(i64, redis::Value, redis::Value, redis::Value)>(&mut con)
            .await
            .map(|p| p.0)
            .unwrap_or(0);
        if let Ok((len, stock)) = reply {
            let (g, b) = (shard.goods, shard.bucket);
            out.push_str(&format!(
                "flashgate_queue_length{{goods=\"{g}\",bucket=\"{b}\"}} {len}\nflashgate_queue_pending{{goods=\"{g}\",bucket=\"{b}\"}} {pending}\nflashgate_stock{{goods=\"{g}\",bucket=\"{b}\"}} {}\n",
                stock.unwrap_or(0)
            ));
        }
    }
    out
}

pub async fn metrics(state: &AppState) -> Resp {
    let text = state.metrics.render(&queue_gauges(state).await);
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
