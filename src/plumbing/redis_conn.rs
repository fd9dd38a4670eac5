//! The Redis connection: one server or a Redis Cluster, behind one type.
//!
//! `FLASHGATE_REDIS_URL` names either one server (`redis://host:port/db`) or a cluster, as
//! `redis+cluster://host1:port1,host2:port2/` or as several `redis://` seed nodes (the nodes
//! the client first asks for the cluster's layout) separated by commas.
//! [`RedisConn`] implements redis-rs's `ConnectionLike`, so every command and script call in
//! flashgate is written once and runs on both. That works because every multi-key command,
//! script and `MULTI` flashgate sends stays inside one hash tag (a sale's `{g:ID}`, see
//! [`crate::plumbing::keys`]): the cluster client routes it by its first key. What cannot be routed by a
//! key lives here: [`RedisConn::scan_match`] visits every primary.
//!
//! Pub/sub needs no cluster client: a `PUBLISH` on any node of a cluster reaches the subscribers
//! of every node, so [`Target::pubsub_client`] opens a plain client on the first seed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::plumbing::breaker::Breaker;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where Redis is: the parsed form of `FLASHGATE_REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server.
    Single(String),
    /// A cluster, known by one or more seed nodes (`redis://host:port` each).
    Cluster(Vec<String>),
}

impl Target {
    /// Parses `redis://…` (one server), `redis+cluster://h1:p1,h2:p2/` or `redis://h1:p1,redis://h2:p2`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let hosts = rest.trim_end_matches('/');
            let seeds: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}/"))
                .collect();
            anyhow::ensure!(!seeds.is_empty(), "redis+cluster:// names no node: {url:?}");
            return Ok(Self::Cluster(seeds));
        }
        if url.contains(',') {
            let seeds: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
            for s in &seeds {
                redis::parse_redis_url(s)
                    .with_context(|| format!("cluster seed {s:?} is not a redis:// URL"))?;
            }
            return Ok(Self::Cluster(seeds));
        }
        redis::parse_redis_url(url).with_context(|| format!("{url:?} is not a redis:// URL"))?;
        Ok(Self::Single(url.to_string()))
    }

    /// A self-reconnecting connection whose commands give up after `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            Self::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let client = redis::Client::open(url.as_str())?;
                Ok(RedisConn::new(Inner::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                )))
            }
            Self::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .retries(2)
                    .build()?;
                Ok(RedisConn::new(Inner::Cluster(
                    client.get_async_connection().await?,
                )))
            }
        }
    }

    /// A plain client for pub/sub (the first seed of a cluster: publishes reach every node).
    pub fn pubsub_client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Single(url) => redis::Client::open(url.as_str()),
            Self::Cluster(seeds) => redis::Client::open(seeds[0].as_str()),
        }
    }
}

/// A connection to one server or to a cluster; cheap to clone, multiplexed either way.
///
/// With a [`Breaker`] attached ([`RedisConn::with_breaker`]) every command's outcome is reported
/// to it: an answer from Redis (even an error answer such as NOSCRIPT) is a success, an I/O
/// error, a timeout or a server that cannot serve (LOADING, CLUSTERDOWN…) a failure. So the
/// breaker hears real Redis outcomes only, never a request that did not reach Redis.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    breaker: Option<Arc<Breaker>>,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Whether a Redis error means Redis cannot serve now (rather than an answer it gave).
pub fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        // a server that is loading its data, or a cluster that is failing over
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN")
        )
}

impl RedisConn {
    fn new(inner: Inner) -> Self {
        Self {
            inner,
            breaker: None,
        }
    }

    /// The same connection, reporting every outcome to `breaker`.
    pub fn with_breaker(mut self, breaker: Arc<Breaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    fn heard<T>(breaker: &Option<Arc<Breaker>>, result: &RedisResult<T>) {
        if let Some(b) = breaker {
            match result {
                Err(e) if is_unavailable(e) => b.failure(),
                _ => b.success(),
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let breaker = self.breaker.clone();
        let sent = match &mut self.inner {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        };
        Box::pin(async move {
            let result = sent.await;
            Self::heard(&breaker, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let breaker = self.breaker.clone();
        let sent = match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(cmd, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        };
        Box::pin(async move {
            let result = sent.await;
            Self::heard(&breaker, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisConn {
    /// Every key matching `pattern`, on one server or on every primary of a cluster (`SCAN`, so
    /// Redis keeps serving while it runs).
    pub async fn scan_match(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let scan = |cursor: u64| {
            let mut c = redis::cmd("SCAN");
            c.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            c
        };
        let mut found = Vec::new();
        match &mut self.inner {
            Inner::Single(con) => {
                let mut cursor = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = scan(cursor).query_async(con).await?;
                    found.extend(batch);
                    if next == 0 {
                        return Ok(found);
                    }
                    cursor = next;
                }
            }
            Inner::Cluster(con) => {
                // The first SCAN goes to every primary and answers per node address; each node
                // is then followed on its own cursor.
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let first = con.route_command(scan(0), all).await?;
                let Value::Map(per_node) = first else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "SCAN on every primary did not answer per node",
                    )));
                };
                for (addr, reply) in per_node {
                    let addr: String = redis::from_redis_value(addr)?;
                    let (mut next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                    found.extend(batch);
                    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                        redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "a node address without a port",
                            addr.clone(),
                        ))
                    })?;
                    let node = SingleNodeRoutingInfo::ByAddress {
                        host: host.to_string(),
                        port: port.parse().unwrap_or(6379),
                    };
                    while next != 0 {
                        let reply = con
                            .route_command(scan(next), RoutingInfo::SingleNode(node.clone()))
                            .await?;
                        let batch: Vec<String>;
                        (next, batch) = redis::from_redis_value(reply)?;
                        found.extend(batch);
                    }
                }
                Ok(found)
            }
        }
    }

    /// Deletes every key matching `pattern`; answers how many there were.
    pub async fn delete_matching(&mut self, pattern: &str) -> RedisResult<usize> {
        let keys = self.scan_match(pattern).await?;
        // one key per DEL: keys of several slots cannot share a command on a cluster
        for chunk in keys.chunks(500) {
            let mut pipe_futures = Vec::with_capacity(chunk.len());
            for key in chunk {
                let mut con = self.clone();
                pipe_futures.push(async move {
                    redis::cmd("DEL")
                        .arg(key)
                        .query_async::<i64>(&mut con)
                        .await
                });
            }
            for r in futures_util::future::join_all(pipe_futures).await {
                r?;
            }
        }
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_server_and_both_cluster_forms() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Single("redis://127.0.0.1:6379/2".into())
        );
        let want = Target::Cluster(vec![
            "redis://127.0.0.1:7001/".into(),
            "redis://127.0.0.1:7002/".into(),
        ]);
        assert_eq!(
            Target::parse("redis+cluster://127.0.0.1:7001,127.0.0.1:7002/").unwrap(),
            want
        );
        assert_eq!(
            Target::parse("redis://127.0.0.1:7001/, redis://127.0.0.1:7002/").unwrap(),
            want
        );
        assert!(Target::parse("http://nope").is_err());
        assert!(Target::parse("redis+cluster:///").is_err());
    }
}
