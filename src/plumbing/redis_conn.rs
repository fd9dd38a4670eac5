//! The Redis connection: one server, a Sentinel-managed primary or a Redis Cluster, behind one
//! type.
//!
//! `FLASHGATE_REDIS_URL` names one server (`redis://host:port/db`), a Sentinel set and the name
//! of the primary it watches (`redis+sentinel://h1:26379,h2:26379,h3:26379/mymaster`, optionally
//! `/mymaster/DB`; see [`Sentinels`]) or a cluster, as `redis+cluster://host1:port1,host2:port2/`
//! or as several `redis://` seed nodes (the nodes the client first asks for the cluster's
//! layout) separated by commas.
//! [`RedisConn`] implements redis-rs's `ConnectionLike`, so every command and script call in
//! flashgate is written once and runs on all three. That works because every multi-key command,
//! script and `MULTI` flashgate sends stays inside one hash tag (a sale's `{g:ID}`, see
//! [`crate::plumbing::keys`]): the cluster client routes it by its first key. What cannot be routed by a
//! key lives here: [`RedisConn::scan_match`] visits every primary.
//!
//! Pub/sub needs no cluster client: a `PUBLISH` on any node of a cluster reaches the subscribers
//! of every node, so [`Target::pubsub_client`] opens a plain client on the first seed (on a
//! Sentinel set, on the primary of the moment).
//!
//! Replica confirmation ([`RedisConn::then_wait`]): `WAIT n ms` answers how many replicas hold
//! every write *the connection it is sent on* made before it. So the script and its `WAIT` go
//! as one pipeline, on one socket, to one node; and on a connection of their own (a pool of
//! them, `plumbing::replicas`), because a blocking `WAIT` would hold up every command behind it on a
//! shared multiplexed connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::{Notify, watch};

use crate::plumbing::breaker::Breaker;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where Redis is: the parsed form of `FLASHGATE_REDIS_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server.
    Single(String),
    /// A primary found through a Sentinel set; every clone shares one watch on it.
    Sentinel(Arc<Sentinels>),
    /// A cluster, known by one or more seed nodes; every clone shares one watch on its layout.
    Cluster(Arc<Cluster>),
}

/// What kind of deployment a [`Target`] is, for logs, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Sentinel,
    Cluster,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Sentinel => "sentinel",
            Self::Cluster => "cluster",
        }
    }
}

impl Target {
    /// Parses `redis://…` (one server), `redis+sentinel://h1:p1,h2:p2/SERVICE[/DB]`,
    /// `redis+cluster://h1:p1,h2:p2/` or `redis://h1:p1,redis://h2:p2`.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return Ok(Self::Sentinel(Arc::new(Sentinels::parse(rest)?)));
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let hosts = rest.trim_end_matches('/');
            let seeds: Vec<String> = hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}/"))
                .collect();
            anyhow::ensure!(!seeds.is_empty(), "redis+cluster:// names no node: {url:?}");
            return Ok(Self::Cluster(Arc::new(Cluster::new(seeds))));
        }
        if url.contains(',') {
            let seeds: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
            for s in &seeds {
                redis::parse_redis_url(s)
                    .with_context(|| format!("cluster seed {s:?} is not a redis:// URL"))?;
            }
            return Ok(Self::Cluster(Arc::new(Cluster::new(seeds))));
        }
        redis::parse_redis_url(url).with_context(|| format!("{url:?} is not a redis:// URL"))?;
        Ok(Self::Single(url.to_string()))
    }

    pub fn mode(&self) -> Mode {
        match self {
            Self::Single(_) => Mode::Single,
            Self::Sentinel(_) => Mode::Sentinel,
            Self::Cluster(_) => Mode::Cluster,
        }
    }

    /// The primary's address as this process sees it now (`host:port`): the one server, the
    /// Sentinel set's primary of the moment; a cluster's primaries, comma-separated.
    pub fn primary(&self) -> Option<String> {
        match self {
            Self::Single(url) => redis::parse_redis_url(url)
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(6379)))),
            Self::Sentinel(s) => s.primary(),
            Self::Cluster(c) => {
                let p = c.primaries.lock().expect("primaries lock");
                (!p.is_empty()).then(|| p.iter().cloned().collect::<Vec<_>>().join(","))
            }
        }
    }

    /// Primary changes this process has seen since it started (a Sentinel set's failovers, a
    /// cluster's primaries replaced).
    pub fn failovers(&self) -> u64 {
        match self {
            Self::Sentinel(s) => s.failovers.load(Relaxed),
            Self::Cluster(c) => c.failovers.load(Relaxed),
            Self::Single(_) => 0,
        }
    }

    /// Resolves when the primary changes (a Sentinel failover); never for the other kinds.
    /// Long-lived connections that do not follow by themselves (pub/sub) start again on it.
    pub async fn primary_changed(&self) {
        match self {
            Self::Sentinel(s) => {
                let mut rx = s.primary.subscribe();
                rx.borrow_and_update();
                let _ = rx.changed().await;
            }
            _ => std::future::pending().await,
        }
    }

    /// A self-reconnecting connection whose commands give up after `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<RedisConn> {
        match self {
            Self::Single(url) => Ok(RedisConn::new(Inner::Single(
                manager(url, response_timeout).await?,
            ))),
            Self::Sentinel(set) => {
                set.watch();
                let follow = Follow {
                    set: set.clone(),
                    current: Arc::new(ArcSwapOption::empty()),
                    switching: Arc::new(tokio::sync::Mutex::new(())),
                    response_timeout,
                };
                follow.conn().await?;
                Ok(RedisConn::new(Inner::Sentinel(follow)))
            }
            Self::Cluster(cluster) => {
                cluster.watch();
                let client = ClusterClient::builder(cluster.seeds.iter().map(String::as_str))
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

    /// A plain client for pub/sub (the first seed of a cluster: publishes reach every node; the
    /// primary of the moment of a Sentinel set).
    pub async fn pubsub_client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Single(url) => redis::Client::open(url.as_str()),
            Self::Sentinel(set) => {
                set.watch();
                redis::Client::open(set.url_of(&set.current_or_ask().await?))
            }
            Self::Cluster(cluster) => cluster.answering_seed().await,
        }
    }

    /// How many replicas the primary has now (on a cluster: the fewest any primary has). Read
    /// at start-up to choose and check `FLASHGATE_REDIS_ACK_REPLICAS`.
    pub async fn replicas(&self, con: &mut RedisConn) -> RedisResult<usize> {
        match self {
            Self::Cluster(_) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(con).await?;
                Ok(fewest_replicas(&nodes))
            }
            _ => {
                // ROLE on a primary: ["master", offset, [[ip, port, offset], ...]]
                let role: Vec<Value> = redis::cmd("ROLE").query_async(con).await?;
                match role.as_slice() {
                    [Value::BulkString(r), _, Value::Array(replicas)] if r == b"master" => {
                        Ok(replicas.len())
                    }
                    _ => Err(RedisError::from((
                        ErrorKind::Client,
                        "the Redis flashgate writes to is not a primary (ROLE)",
                    ))),
                }
            }
        }
    }
}

/// Runs `step` over and over in a task of its own for as long as anything else holds what
/// `weak` points to (a watch must not keep its target alive).
fn watch_while_held<T, F, Fut>(weak: Weak<T>, step: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        while let Some(target) = weak.upgrade() {
            step(target).await;
        }
    });
}

/// How often a cluster's layout is read to notice primaries being replaced.
const CLUSTER_POLL: Duration = Duration::from_secs(1);

/// A cluster's seed nodes, and the primaries this process last saw (for `/readyz` and the
/// failover count; the cluster client follows a failover by itself, on `MOVED`).
#[derive(Debug)]
pub struct Cluster {
    seeds: Vec<String>,
    primaries: std::sync::Mutex<std::collections::BTreeSet<String>>,
    failovers: AtomicU64,
    watching: AtomicBool,
}

impl PartialEq for Cluster {
    fn eq(&self, o: &Self) -> bool {
        self.seeds == o.seeds
    }
}
impl Eq for Cluster {}

impl Cluster {
    fn new(seeds: Vec<String>) -> Self {
        Self {
            seeds,
            primaries: Default::default(),
            failovers: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }

    /// The seed URLs (`redis://host:port/`).
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// A plain client on the first seed that answers (a dead seed is passed over: pub/sub
    /// reaches every node from any of them).
    async fn answering_seed(&self) -> RedisResult<redis::Client> {
        let mut last = None;
        for seed in &self.seeds {
            let client = redis::Client::open(seed.as_str())?;
            let ping = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut c).await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
                Ok(Ok(())) => return Ok(client),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(RedisError::from((ErrorKind::Io, "seed timed out"))),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Io, "no cluster seed"))))
    }

    /// The primaries serving slots, from `CLUSTER NODES` of the first seed that answers.
    async fn read_primaries(&self) -> RedisResult<std::collections::BTreeSet<String>> {
        let client = self.answering_seed().await?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await?;
        Ok(live_nodes(&nodes)
            .filter(|n| n.primary && n.serves_slots)
            .map(|n| n.addr.to_string())
            .collect())
    }

    /// Starts this cluster's watch task once; it ends when the last holder is gone.
    fn watch(self: &Arc<Self>) {
        if !self.watching.swap(true, Relaxed) {
            watch_while_held(Arc::downgrade(self), |cluster| async move {
                if let Ok(now) = cluster.read_primaries().await {
                    let mut seen = cluster.primaries.lock().expect("primaries lock");
                    // a primary gone and another serving: a replica took over
                    if !seen.is_empty() && now.difference(&seen).next().is_some() {
                        cluster.failovers.fetch_add(1, Relaxed);
                        tracing::warn!(before = ?*seen, now = ?now, "Redis Cluster primaries changed (failover)");
                    }
                    if !now.is_empty() {
                        *seen = now;
                    }
                }
                tokio::time::sleep(CLUSTER_POLL).await;
            });
        }
    }
}

/// The fewest replicas any primary of a cluster has, from `CLUSTER NODES` (one line per node:
/// `id addr flags primary-id ...`; a replica's fourth field is its primary's id).
fn fewest_replicas(nodes: &str) -> usize {
    let mut per_primary: std::collections::HashMap<&str, usize> = live_nodes(nodes)
        .filter(|n| n.primary)
        .map(|n| (n.id, 0))
        .collect();
    for n in live_nodes(nodes) {
        if let Some(count) = n.replica_of.and_then(|p| per_primary.get_mut(p)) {
            *count += 1;
        }
    }
    per_primary.values().copied().min().unwrap_or(0)
}

/// A node of `CLUSTER NODES` that is not failing (a line: `id host:port@bus flags primary-id ping
/// pong epoch state slots...`).
struct NodeLine<'a> {
    id: &'a str,
    /// `host:port`
    addr: &'a str,
    primary: bool,
    /// A replica's primary (its id).
    replica_of: Option<&'a str>,
    serves_slots: bool,
}

fn live_nodes(text: &str) -> impl Iterator<Item = NodeLine<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[2].contains("fail") {
            return None;
        }
        Some(NodeLine {
            id: f[0],
            addr: f[1].split('@').next().unwrap_or(f[1]),
            primary: f[2].contains("master"),
            replica_of: f[2].contains("slave").then_some(f[3]),
            serves_slots: f.len() > 8,
        })
    })
}

/// A `ConnectionManager` to one server: reconnects by itself, gives up a command after
/// `response_timeout`.
async fn manager(url: &str, response_timeout: Duration) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let client = redis::Client::open(url)?;
    ConnectionManager::new_with_config(client, config).await
}

/// How often the sentinels are asked where the primary is (and at once after a command to it
/// fails).
const SENTINEL_POLL: Duration = Duration::from_millis(500);

/// A Sentinel set and the primary it watches: where every connection of this process to that
/// primary should point.
///
/// One task per process ([`Sentinels::watch`]) asks the sentinels every [`SENTINEL_POLL`] (and
/// at once when a command fails: [`Sentinels::nudge`]) for the primary's address
/// (`SENTINEL get-master-addr-by-name`). The connections ([`Follow`]) compare the address they
/// hold with it before every command and reconnect when it moved, so after a failover every
/// connection, the pools' and pub/sub's included, goes to the new primary by itself.
pub struct Sentinels {
    /// `host:port` of each sentinel.
    nodes: Vec<String>,
    service: String,
    db: i64,
    primary: watch::Sender<Option<String>>,
    failovers: AtomicU64,
    nudge: Notify,
    watching: AtomicBool,
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sentinels({:?}, {:?}, db {})",
            self.nodes, self.service, self.db
        )
    }
}

impl PartialEq for Sentinels {
    fn eq(&self, o: &Self) -> bool {
        (&self.nodes, &self.service, self.db) == (&o.nodes, &o.service, o.db)
    }
}
impl Eq for Sentinels {}

impl Sentinels {
    /// `h1:p1,h2:p2/SERVICE[/DB]` (what follows `redis+sentinel://`).
    fn parse(rest: &str) -> anyhow::Result<Self> {
        let (hosts, path) = rest
            .split_once('/')
            .with_context(|| format!("redis+sentinel://{rest} names no service (…/mymaster)"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:26379")
                }
            })
            .collect();
        anyhow::ensure!(!nodes.is_empty(), "redis+sentinel:// names no sentinel");
        let mut parts = path.trim_end_matches('/').split('/');
        let service = parts.next().unwrap_or_default().to_string();
        anyhow::ensure!(
            !service.is_empty(),
            "redis+sentinel://{rest} names no service (…/mymaster)"
        );
        let db = match parts.next() {
            Some(d) => d
                .parse()
                .with_context(|| format!("redis+sentinel:// database {d:?} is not a number"))?,
            None => 0,
        };
        Ok(Self {
            nodes,
            service,
            db,
            primary: watch::Sender::new(None),
            failovers: AtomicU64::new(0),
            nudge: Notify::new(),
            watching: AtomicBool::new(false),
        })
    }

    fn url_of(&self, addr: &str) -> String {
        format!("redis://{addr}/{}", self.db)
    }

    /// The primary's address as last heard from the sentinels.
    pub fn primary(&self) -> Option<String> {
        self.primary.borrow().clone()
    }

    /// Asks the sentinels now (a command to the primary failed).
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    async fn current_or_ask(&self) -> RedisResult<String> {
        match self.primary() {
            Some(p) => Ok(p),
            None => {
                let p = self.ask().await?;
                self.learn(p.clone());
                Ok(p)
            }
        }
    }

    fn learn(&self, addr: String) {
        let mut before = None;
        // only a change wakes those waiting on one (`Target::primary_changed`)
        let moved = self.primary.send_if_modified(|p| {
            if p.as_deref() == Some(addr.as_str()) {
                return false;
            }
            before = p.replace(addr.clone());
            true
        });
        match (moved, before) {
            (true, Some(old)) => {
                self.failovers.fetch_add(1, Relaxed);
                tracing::warn!(service = %self.service, from = %old, to = %addr, "Redis primary moved (Sentinel failover); reconnecting");
            }
            (true, None) => {
                tracing::info!(service = %self.service, primary = %addr, "Redis primary found through Sentinel")
            }
            _ => {}
        }
    }

    /// The primary's address, from the first sentinel that knows it. Says which sentinels did
    /// not answer, or that none knows the service.
    pub async fn ask(&self) -> RedisResult<String> {
        let mut failed = Vec::new();
        let mut unknown = 0;
        for node in &self.nodes {
            let asked = async {
                let client = redis::Client::open(format!("redis://{node}/"))?;
                let mut con = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    client.get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| RedisError::from((ErrorKind::Io, "connect timed out")))??;
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.service)
                        .query_async::<Option<(String, u16)>>(&mut con),
                )
                .await
                .map_err(|_| RedisError::from((ErrorKind::Io, "no answer")))?
            };
            match asked.await {
                Ok(Some((host, port))) => return Ok(format!("{host}:{port}")),
                Ok(None) => unknown += 1,
                Err(e) => failed.push(format!("{node}: {e}")),
            }
        }
        if unknown > 0 {
            return Err(RedisError::from((
                ErrorKind::Client,
                "the sentinels do not know this service",
                format!(
                    "{:?} (asked {} that answered; check the name after the hosts in FLASHGATE_REDIS_URL)",
                    self.service, unknown
                ),
            )));
        }
        Err(RedisError::from((
            ErrorKind::Io,
            "no sentinel answered",
            failed.join("; "),
        )))
    }

    /// Starts this set's watch task once; it ends when the last holder of the set is gone.
    fn watch(self: &Arc<Self>) {
        if !self.watching.swap(true, Relaxed) {
            watch_while_held(Arc::downgrade(self), |set| async move {
                match set.ask().await {
                    Ok(addr) => set.learn(addr),
                    Err(e) => {
                        tracing::warn!(error = %e, "asking the sentinels for the primary failed")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(SENTINEL_POLL) => {}
                    // a failed command: ask again almost at once
                    _ = set.nudge.notified() => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            });
        }
    }
}

/// One connection to a Sentinel set's primary that follows it when it moves.
#[derive(Clone)]
struct Follow {
    set: Arc<Sentinels>,
    current: Arc<ArcSwapOption<(String, ConnectionManager)>>,
    switching: Arc<tokio::sync::Mutex<()>>,
    response_timeout: Duration,
}

impl Follow {
    /// The connection to the primary of the moment, made anew when the primary moved.
    async fn conn(&self) -> RedisResult<ConnectionManager> {
        // every command passes here: the usual case compares in place, allocating nothing
        if let Some(cur) = self.current.load_full()
            && self.set.primary.borrow().as_deref() == Some(cur.0.as_str())
        {
            return Ok(cur.1.clone());
        }
        let want = self.set.current_or_ask().await?;
        let _one = self.switching.lock().await;
        if let Some(cur) = self.current.load_full()
            && cur.0 == want
        {
            return Ok(cur.1.clone());
        }
        let con = manager(&self.set.url_of(&want), self.response_timeout).await?;
        self.current.store(Some(Arc::new((want, con.clone()))));
        Ok(con)
    }

    /// A failed command may mean the primary moved: ask the sentinels at once.
    fn heard<T>(&self, result: &RedisResult<T>) {
        if let Err(e) = result
            && is_unavailable(e)
        {
            self.set.nudge();
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
    Sentinel(Follow),
    Cluster(ClusterConnection),
}

/// Whether a Redis error means Redis cannot serve now (rather than an answer it gave).
pub fn is_unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        // a server that is loading its data, a cluster that is failing over, a primary that
        // was turned into a replica (a Sentinel failover this process has not followed yet)
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY")
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

    /// The same connection, its outcomes not reported to the breaker: for background work
    /// whose retries, while Redis is away, would otherwise count as failed requests.
    pub fn without_breaker(mut self) -> Self {
        self.breaker = None;
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
            Inner::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let result = f.conn().await?.req_packed_command(cmd).await;
                    f.heard(&result);
                    result
                })
            }
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
            Inner::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let result = f
                        .conn()
                        .await?
                        .req_packed_commands(cmd, offset, count)
                        .await;
                    f.heard(&result);
                    result
                })
            }
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
            Inner::Sentinel(f) => f.set.db,
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

/// The hash slot of `key` (CRC16/XMODEM of its hash tag, modulo 16384), as Redis Cluster
/// computes it.
fn slot_of(key: &[u8]) -> u16 {
    let tagged = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

impl RedisConn {
    /// Sends the commands of `pipe` and then `WAIT replicas timeout_ms`, as one pipeline, to
    /// the primary that holds `key`; answers their replies and how many replicas hold everything
    /// they wrote. An error answer to any of them is returned as the error. Meant for a
    /// connection of its own (`plumbing::replicas`): the `WAIT` blocks the socket until it
    /// returns.
    pub async fn then_wait(
        &mut self,
        pipe: &Pipeline,
        key: &str,
        replicas: u32,
        timeout_ms: u64,
    ) -> RedisResult<(Vec<Value>, i64)> {
        let mut pipe = pipe.clone();
        let n = pipe.len();
        pipe.cmd("WAIT").arg(replicas).arg(timeout_ms);
        let breaker = self.breaker.clone();
        let result = match &mut self.inner {
            Inner::Single(c) => c.req_packed_commands(&pipe, 0, n + 1).await,
            Inner::Sentinel(f) => {
                let r = f.conn().await?.req_packed_commands(&pipe, 0, n + 1).await;
                f.heard(&r);
                r
            }
            Inner::Cluster(c) => {
                let route = Route::new(slot_of(key.as_bytes()), SlotAddr::Master);
                c.route_pipeline(pipe, 0, n + 1, SingleNodeRoutingInfo::SpecificNode(route))
                    .await
            }
        };
        Self::heard(&breaker, &result);
        let mut values = result?;
        if values.len() != n + 1 {
            return Err(RedisError::from((
                ErrorKind::Client,
                "a pipeline and its WAIT answered the wrong number of replies",
            )));
        }
        let acked: i64 = redis::from_redis_value(values.pop().expect("n + 1 replies"))?;
        if let Some(e) = values.iter().find_map(|v| match v {
            Value::ServerError(e) => Some(e.clone()),
            _ => None,
        }) {
            return Err(e.into());
        }
        Ok((values, acked))
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
        let mut one = self.clone(); // one server: any connection of this kind
        match &mut self.inner {
            Inner::Single(_) | Inner::Sentinel(_) => {
                let mut cursor = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) =
                        scan(cursor).query_async(&mut one).await?;
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

/// One count in a fixed window: `key` goes up by one, its window (`window_secs`) starting at the
/// first count, in one atomic `MULTI` (`SET 0 EX window NX`, `INCR`, `PTTL`); the count now and
/// the ms left in the window. What the login limits and the captcha's rate are counted with.
pub async fn count_in_window(
    con: &mut RedisConn,
    key: &str,
    window_secs: u64,
) -> redis::RedisResult<(i64, i64)> {
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(key)
        .arg(0)
        .arg("EX")
        .arg(window_secs.max(1))
        .arg("NX")
        .ignore()
        .incr(key, 1)
        .pttl(key)
        .query_async(con)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_read_once_for_replicas_and_primaries() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-16383
b1 127.0.0.1:7004@17004 slave a1 0 0 1 connected
b2 127.0.0.1:7005@17005 slave,fail a2 0 0 2 disconnected
c9 127.0.0.1:7009@17009 master,fail - 0 0 9 disconnected 100-200
";
        // a2's only replica is failing: the fewest any live primary has is 0
        assert_eq!(fewest_replicas(nodes), 0);
        assert_eq!(fewest_replicas(&nodes.replace("slave,fail", "slave")), 1);
        let primaries: Vec<&str> = live_nodes(nodes)
            .filter(|n| n.primary && n.serves_slots)
            .map(|n| n.addr)
            .collect();
        assert_eq!(primaries, ["127.0.0.1:7001", "127.0.0.1:7002"]);
    }

    #[test]
    fn parses_one_server_and_both_cluster_forms() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Single("redis://127.0.0.1:6379/2".into())
        );
        let want = Target::Cluster(Arc::new(Cluster::new(vec![
            "redis://127.0.0.1:7001/".into(),
            "redis://127.0.0.1:7002/".into(),
        ])));
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
