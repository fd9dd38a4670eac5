//! Script releases: one version of the Lua scripts on every edge at once, kept in Redis.
//!
//! A release is a complete set of files that passed the contract suite
//! ([`super::script_check`]), numbered (`lua:versions`), recorded with its content hash and a
//! note (`lua:release:N`), and loaded as a Redis Functions library (`FUNCTION LOAD`, one
//! function a script, on every primary). Unlike the `EVALSHA` cache, a library is replicated and
//! persisted: a restart from the AOF or a failover keeps it. Which release is live, and which is
//! a canary deciding a share of the admission calls, is one small JSON value (`lua:state`),
//! changed only by compare-and-set, with a generation number; each change is announced on
//! `lua:changed`, which every edge subscribes to (and it reads the state every [`POLL_EVERY`]
//! too, in case a message was lost, and after every resubscription): a change reaches every
//! edge within a second, and each edge swaps whole sets ([`Scripts::adopt`]), so one call never
//! runs a mixture of two versions.
//!
//! An edge that cannot use a released set (its contract differs from the edge's, its record is
//! unreadable, the library does not load) says so in its report and keeps the last set it
//! could use. Each edge writes a report (`lua:edges`) when it changes, at most each second, and
//! every [`HEARTBEAT_EVERY`] at least: the versions it runs and what each decided on it
//! (outcomes, latency), so an idle edge costs Redis a command every few seconds, which `flashgate lua status`, the admin API and
//! the console's Scripts view read. Version 0 is the built-in set (embedded, or `lua_dir`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::admission::script_check::{self, Report};
use crate::admission::scripts::{
    Canary, Files, LATENCY_US, ScriptSet, Scripts, SetError, check_contracts, content_hash,
    library_text,
};
use crate::plumbing::clock::now_ms;
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::{RedisConn, Target};
use futures_util::StreamExt;

/// How often an edge reads `lua:state` besides the announcements (a message lost in a
/// reconnection is caught up with within this).
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// How often an edge looks whether its report changed (and writes it if so).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);
/// An edge writes its report at least this often, changed or not.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// An edge whose report is older than this is shown as gone.
pub const EDGE_GONE_AFTER: Duration = Duration::from_secs(25);
/// A report older than this is removed.
pub const EDGE_FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// Which release is live, the canary, and the live versions a rollback goes back through.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// bumped by every change; edges compare it
    pub generation: u64,
    pub live: u64,
    pub canary: Option<u64>,
    /// the canary's share of admission calls, 1-99
    pub pct: u8,
    pub history: Vec<u64>,
}

/// One release as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub version: u64,
    pub hash: String,
    pub note: String,
    pub at_ms: i64,
    pub files: Files,
}

/// Why a release, promote or rollback was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0}")]
    Set(#[from] SetError),
    #[error("the set fails the contract suite: {}", failed(.0))]
    Failed(Report),
    #[error("a canary share is 1-99 (%), not {0}")]
    BadShare(i64),
    #[error("no canary is out: nothing to promote")]
    NoCanary,
    #[error("version {0} was never released (0 is the built-in set)")]
    NoVersion(u64),
    #[error("version {0} is live already")]
    AlreadyLive(u64),
    #[error("no earlier version to roll back to")]
    NoHistory,
    #[error("the release state changed while this ran; try again")]
    Raced,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Other(String),
}

fn failed(r: &Report) -> String {
    r.failed()
        .iter()
        .map(|c| {
            format!(
                "{} / {}: {}",
                c.script,
                c.case,
                c.failures.first().cloned().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads `lua:state` (the default when no release was ever made).
pub async fn state(con: &mut RedisConn, keys: &Keys) -> Result<State, ReleaseError> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(keys.lua_state())
        .query_async(con)
        .await?;
    Ok(match raw {
        Some(s) => serde_json::from_str(&s).map_err(|e| ReleaseError::Other(e.to_string()))?,
        None => State::default(),
    })
}

/// Reads release `version`'s record.
pub async fn record(
    con: &mut RedisConn,
    keys: &Keys,
    version: u64,
) -> Result<Option<Record>, ReleaseError> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(keys.lua_release(version))
        .query_async(con)
        .await?;
    raw.map(|s| serde_json::from_str(&s).map_err(|e| ReleaseError::Other(e.to_string())))
        .transpose()
}

/// Writes `next` (its generation one past `prev`'s) only if `lua:state` still holds `prev`.
async fn swap(
    con: &mut RedisConn,
    keys: &Keys,
    prev: &State,
    mut next: State,
) -> Result<State, ReleaseError> {
    next.generation = prev.generation + 1;
    // written only if the generation is still the one read (0: no state yet)
    const CAS: &str = "local v = redis.call('GET', KEYS[1]) \
        local g = 0 if v then g = cjson.decode(v)['generation'] end \
        if g == tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";
    let done: i64 = redis::cmd("EVAL")
        .arg(CAS)
        .arg(1)
        .arg(keys.lua_state())
        .arg(prev.generation)
        .arg(serde_json::to_string(&next).expect("state"))
        .query_async(con)
        .await?;
    if done == 1 {
        let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(keys.lua_channel())
            .arg(next.generation)
            .query_async(con)
            .await;
        Ok(next)
    } else {
        Err(ReleaseError::Raced)
    }
}

/// Loads release `version`'s library on every primary (a cluster routes `FUNCTION LOAD` to
/// each; replicas get it by replication).
async fn load_library(
    con: &mut RedisConn,
    keys: &Keys,
    version: u64,
    files: &Files,
) -> Result<String, ReleaseError> {
    let lib = keys.lua_library(version);
    let text = library_text(&lib, files);
    let _: redis::Value = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&text)
        .query_async(con)
        .await?;
    Ok(text)
}

/// What a release made.
#[derive(Debug, Clone, Serialize)]
pub struct Released {
    pub version: u64,
    pub hash: String,
    pub canary: Option<u8>,
    pub report: Report,
}

/// Releases `files`: refused unless every case of the contract suite passes; otherwise a new
/// version, live at once, or a canary deciding `canary` % of admission calls.
pub async fn release(
    con: &mut RedisConn,
    keys: &Keys,
    files: Files,
    note: &str,
    canary: Option<i64>,
) -> Result<Released, ReleaseError> {
    if let Some(p) = canary
        && !(1..=99).contains(&p)
    {
        return Err(ReleaseError::BadShare(p));
    }
    let report = script_check::run(con, &files).await?;
    if !report.passed() {
        return Err(ReleaseError::Failed(report));
    }
    let prev = state(con, keys).await?;
    let version: u64 = redis::cmd("INCR")
        .arg(keys.lua_versions())
        .query_async(con)
        .await?;
    load_library(con, keys, version, &files).await?;
    let rec = Record {
        version,
        hash: content_hash(&files),
        note: note.to_string(),
        at_ms: now_ms(),
        files,
    };
    let _: () = redis::cmd("SET")
        .arg(keys.lua_release(version))
        .arg(serde_json::to_string(&rec).expect("record"))
        .query_async(con)
        .await?;
    let mut next = prev.clone();
    match canary {
        Some(p) => {
            next.canary = Some(version);
            next.pct = p as u8;
        }
        None => {
            next.history.push(prev.live);
            next.live = version;
            next.canary = None;
            next.pct = 0;
        }
    }
    swap(con, keys, &prev, next).await?;
    tracing::info!(version, hash = %rec.hash, canary = ?canary, note, "lua scripts released");
    Ok(Released {
        version,
        hash: rec.hash,
        canary: canary.map(|p| p as u8),
        report,
    })
}

/// Makes the canary the live version on every edge.
pub async fn promote(con: &mut RedisConn, keys: &Keys) -> Result<State, ReleaseError> {
    let prev = state(con, keys).await?;
    let Some(c) = prev.canary else {
        return Err(ReleaseError::NoCanary);
    };
    let mut next = prev.clone();
    next.history.push(prev.live);
    next.live = c;
    next.canary = None;
    next.pct = 0;
    swap(con, keys, &prev, next).await
}

/// Returns every edge to the previous live version (or to `to`); a canary that is out is
/// withdrawn first (a rollback with a canary out and no `to` only withdraws it).
pub async fn rollback(
    con: &mut RedisConn,
    keys: &Keys,
    to: Option<u64>,
) -> Result<State, ReleaseError> {
    let prev = state(con, keys).await?;
    let mut next = prev.clone();
    next.canary = None;
    next.pct = 0;
    match to {
        None if prev.canary.is_some() => {}
        None => {
            next.live = next.history.pop().ok_or(ReleaseError::NoHistory)?;
        }
        Some(v) => {
            if v == prev.live {
                return Err(ReleaseError::AlreadyLive(v));
            }
            if v != 0 && record(con, keys, v).await?.is_none() {
                return Err(ReleaseError::NoVersion(v));
            }
            if let Some(i) = next.history.iter().rposition(|h| *h == v) {
                next.history.truncate(i);
            }
            next.live = v;
        }
    }
    swap(con, keys, &prev, next).await
}

/// What one edge reports of one version it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionCounts {
    pub calls: u64,
    /// shoppers by outcome (`queued`, `sold_out`, … as in `flashgate_admissions_total`)
    pub outcomes: BTreeMap<String, u64>,
    pub micros: u64,
    /// calls by latency, the buckets of `scripts::LATENCY_US` and one more
    pub latency: Vec<u64>,
}

impl VersionCounts {
    fn of(set: &ScriptSet) -> Self {
        let s = &set.stats;
        Self {
            calls: s.calls.load(Ordering::Relaxed),
            outcomes: s
                .by_outcome()
                .filter(|(_, n)| *n > 0)
                .map(|(o, n)| (o.to_string(), n))
                .collect(),
            micros: s.micros.load(Ordering::Relaxed),
            latency: s
                .latency
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect(),
        }
    }

    fn add(&mut self, o: &VersionCounts) {
        self.calls += o.calls;
        for (k, v) in &o.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.micros += o.micros;
        self.latency
            .resize(o.latency.len().max(self.latency.len()), 0);
        for (i, v) in o.latency.iter().enumerate() {
            self.latency[i] += v;
        }
    }

    /// Mean call time, ms.
    pub fn mean_ms(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.micros as f64 / self.calls as f64 / 1000.0
        }
    }

    /// The latency bucket bound below which 99% of calls fell, ms (`None` past the last).
    pub fn p99_ms(&self) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return Some(0.0);
        }
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen * 100 >= total * 99 {
                return LATENCY_US.get(i).map(|us| *us as f64 / 1000.0);
            }
        }
        None
    }
}

/// One edge's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeReport {
    pub edge: String,
    pub live: u64,
    pub live_hash: String,
    pub canary: Option<u64>,
    pub pct: u8,
    /// the state generation this edge runs
    pub generation: u64,
    /// a release this edge could not use, and why
    pub error: Option<String>,
    pub at_ms: i64,
    pub versions: BTreeMap<u64, VersionCounts>,
}

/// A version as `status` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub version: u64,
    pub hash: String,
    pub note: String,
    pub at_ms: i64,
    pub live: bool,
    pub canary: bool,
    /// every running edge's counts for it, summed
    pub counts: VersionCounts,
    pub mean_ms: f64,
    pub p99_ms: Option<f64>,
}

/// Everything `flashgate lua status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub state: State,
    pub versions: Vec<VersionView>,
    pub edges: Vec<EdgeView>,
}

/// A running edge as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    #[serde(flatten)]
    pub report: EdgeReport,
    /// its report is recent
    pub up: bool,
    /// it runs what `lua:state` says
    pub current: bool,
}

/// Versions (the built-in one and every release), which is live and canary, and each edge.
pub async fn status(
    con: &mut RedisConn,
    keys: &Keys,
    builtin_hash: &str,
) -> Result<Status, ReleaseError> {
    let st = state(con, keys).await?;
    let last: Option<u64> = redis::cmd("GET")
        .arg(keys.lua_versions())
        .query_async(con)
        .await?;
    let raw: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.lua_edges())
        .query_async(con)
        .await?;
    let now = now_ms();
    let mut edges = Vec::new();
    for (field, json) in raw {
        let Ok(r) = serde_json::from_str::<EdgeReport>(&json) else {
            continue;
        };
        if now - r.at_ms > EDGE_FORGOTTEN_AFTER.as_millis() as i64 {
            let _: redis::RedisResult<i64> = redis::cmd("HDEL")
                .arg(keys.lua_edges())
                .arg(&field)
                .query_async(con)
                .await;
            continue;
        }
        let up = now - r.at_ms <= EDGE_GONE_AFTER.as_millis() as i64;
        let current = r.live == st.live && r.canary == st.canary && r.error.is_none();
        edges.push(EdgeView {
            report: r,
            up,
            current,
        });
    }
    let mut versions = Vec::new();
    let view = |version: u64, hash: String, note: String, at_ms: i64| {
        let mut counts = VersionCounts::default();
        for e in edges.iter().filter(|e| e.up) {
            if let Some(c) = e.report.versions.get(&version) {
                counts.add(c);
            }
        }
        VersionView {
            version,
            hash,
            note,
            at_ms,
            live: st.live == version,
            canary: st.canary == Some(version),
            mean_ms: counts.mean_ms(),
            p99_ms: counts.p99_ms(),
            counts,
        }
    };
    versions.push(view(
        0,
        builtin_hash.to_string(),
        "built in (embedded, or FLASHGATE_LUA_DIR)".into(),
        0,
    ));
    for v in 1..=last.unwrap_or(0) {
        if let Some(r) = record(con, keys, v).await? {
            versions.push(view(v, r.hash, r.note, r.at_ms));
        }
    }
    Ok(Status {
        state: st,
        versions,
        edges,
    })
}

/// The edge's side: follows `lua:state`, swaps sets, reports.
pub struct Watcher {
    con: RedisConn,
    keys: Keys,
    scripts: Arc<Scripts>,
    edge: String,
    generation: Option<u64>,
    /// every set this edge has run, by version (their counts live in them)
    sets: BTreeMap<u64, Arc<ScriptSet>>,
    error: Option<String>,
    /// the last report written (without its time), and when
    written: Option<(String, tokio::time::Instant)>,
}

impl Watcher {
    pub fn new(con: RedisConn, keys: Keys, scripts: Arc<Scripts>) -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "edge".into());
        let edge = format!(
            "{host}/{}/{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..4]
        );
        // the sets this process already runs (adopted at start-up by another watcher): a
        // release is read and its library loaded once, and its counts go on
        let sets = std::iter::once(scripts.get())
            .chain(scripts.canary().map(|c| c.set))
            .map(|set| (set.version, set))
            .collect();
        Self {
            con,
            keys,
            scripts,
            edge,
            generation: None,
            sets,
            error: None,
            written: None,
        }
    }

    /// Reads `lua:state` and, if it changed, adopts what it names (or keeps the last good
    /// set and notes why). Answers whether the edge runs the state's generation.
    pub async fn follow(&mut self) -> bool {
        let st = match state(&mut self.con, &self.keys).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "reading the script release state");
                return false;
            }
        };
        if self.generation == Some(st.generation) {
            return true;
        }
        match self.sets_for(&st).await {
            Ok((live, canary)) => {
                let canary = canary.map(|set| Canary { set, pct: st.pct });
                tracing::info!(
                    live = live.version,
                    hash = %live.hash,
                    canary = ?canary.as_ref().map(|c| (c.set.version, c.pct)),
                    "lua scripts: running the released version"
                );
                self.scripts.adopt(live, canary);
                self.generation = Some(st.generation);
                self.error = None;
                true
            }
            Err(e) => {
                let msg = format!("cannot use release state {}: {e}", st.generation);
                if self.error.as_deref() != Some(msg.as_str()) {
                    tracing::error!(error = %msg, "lua scripts: keeping the last good version");
                }
                self.error = Some(msg);
                false
            }
        }
    }

    async fn sets_for(
        &mut self,
        st: &State,
    ) -> Result<(Arc<ScriptSet>, Option<Arc<ScriptSet>>), ReleaseError> {
        let live = self.set(st.live).await?;
        let canary = match st.canary {
            Some(v) => Some(self.set(v).await?),
            None => None,
        };
        Ok((live, canary))
    }

    /// The set of `version`, read, checked and loaded once (and kept, for its counts).
    async fn set(&mut self, version: u64) -> Result<Arc<ScriptSet>, ReleaseError> {
        if version == 0 {
            let b = self.scripts.builtin();
            self.sets.insert(0, b.clone());
            return Ok(b);
        }
        if let Some(s) = self.sets.get(&version) {
            return Ok(s.clone());
        }
        let rec = record(&mut self.con, &self.keys, version)
            .await?
            .ok_or(ReleaseError::NoVersion(version))?;
        check_contracts(&rec.files).map_err(|e| {
            ReleaseError::Other(format!(
                "version {version}'s contract is not this edge's: {e}"
            ))
        })?;
        let text = load_library(&mut self.con, &self.keys, version, &rec.files).await?;
        let lib = self.keys.lua_library(version);
        let set = Arc::new(
            ScriptSet::from_files(version, &rec.files)?.as_functions(&lib, Arc::new(text)),
        );
        self.sets.insert(version, set.clone());
        Ok(set)
    }

    /// Writes this edge's report if it changed since the last (or that is
    /// [`HEARTBEAT_EVERY`] old).
    pub async fn report(&mut self) {
        let live = self.scripts.get();
        let canary = self.scripts.canary();
        let mut r = EdgeReport {
            edge: self.edge.clone(),
            live: live.version,
            live_hash: live.hash.clone(),
            canary: canary.as_ref().map(|c| c.set.version),
            pct: canary.as_ref().map_or(0, |c| c.pct),
            generation: self.generation.unwrap_or(0),
            error: self.error.clone(),
            at_ms: 0,
            versions: self
                .sets
                .iter()
                .map(|(v, s)| (*v, VersionCounts::of(s)))
                .chain(std::iter::once((live.version, VersionCounts::of(&live))))
                .collect(),
        };
        let unchanged = serde_json::to_string(&r).expect("report");
        if let Some((last, at)) = &self.written
            && *last == unchanged
            && at.elapsed() < HEARTBEAT_EVERY
        {
            return;
        }
        r.at_ms = now_ms();
        let written: redis::RedisResult<i64> = redis::cmd("HSET")
            .arg(self.keys.lua_edges())
            .arg(&self.edge)
            .arg(serde_json::to_string(&r).expect("report"))
            .query_async(&mut self.con)
            .await;
        if written.is_ok() {
            self.written = Some((unchanged, tokio::time::Instant::now()));
        }
    }

    /// Follows the announcements (and polls) and reports until `shutdown`; the report goes
    /// when the process stops.
    pub async fn run(mut self, target: Target, mut shutdown: watch::Receiver<bool>) {
        let channel = self.keys.lua_channel();
        let mut poll = tokio::time::interval(POLL_EVERY);
        let mut report = tokio::time::interval(REPORT_EVERY);
        let mut backoff = crate::plumbing::retry::Backoff::listener();
        'subscribe: loop {
            let sub = async {
                let mut p = target.pubsub_client().await?.get_async_pubsub().await?;
                p.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(p)
            }
            .await;
            let mut pubsub = match sub {
                Ok(p) => {
                    backoff.reset();
                    Some(p)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "subscribing to script releases; polling meanwhile");
                    None
                }
            };
            let retry_at = tokio::time::Instant::now() + backoff.next_delay();
            // whatever was announced while not subscribed
            self.follow().await;
            let mut messages = pubsub.as_mut().map(|p| p.on_message());
            loop {
                let next = async {
                    match messages.as_mut() {
                        Some(m) => m.next().await.map(|_| ()),
                        None => {
                            tokio::time::sleep_until(retry_at).await;
                            None
                        }
                    }
                };
                tokio::select! {
                    got = next => match got {
                        Some(()) => {
                            self.follow().await;
                        }
                        None => continue 'subscribe,
                    },
                    _ = poll.tick() => {
                        self.follow().await;
                    }
                    _ = report.tick() => self.report().await,
                    _ = target.primary_changed() => continue 'subscribe,
                    _ = shutdown.changed() => break 'subscribe,
                }
            }
        }
        let _: redis::RedisResult<i64> = redis::cmd("HDEL")
            .arg(self.keys.lua_edges())
            .arg(&self.edge)
            .query_async(&mut self.con)
            .await;
    }
}
