//! The Lua scripts of `lua/`, how they are called, and what their answers mean.
//!
//! Each script is a plain file an SRE can read, tune and test. The files are embedded in the
//! binary as defaults; `lua_dir` may name a directory whose files of the same name replace them,
//! and [`Scripts::reload`] (on `SIGHUP` or `POST /api/admin/scripts/reload`) reads them again.
//!
//! The edge computes each script's SHA-1 itself and calls `EVALSHA`; when Redis answers NOSCRIPT
//! (its script cache is per node and is lost on restart, flush or failover) it sends `SCRIPT LOAD`
//! and tries once more.
//!
//! Every script answers with the codes of one table, `lua/codes.lua`, which is put in front of
//! each script when it is loaded (so a script's SHA-1 is that of the two together). The same
//! table is [`Code`] here; a test holds them equal. Each script's answer is decoded in one place:
//! [`Admission`], [`PathIssue`], [`decode_done`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use arc_swap::ArcSwap;
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use sha1::{Digest, Sha1};

/// How the edge calls a script: `EVALSHA` of its text (the built-in set), or `FCALL` of a
/// function of a released library (`admission::script_release`), which Redis keeps through
/// restarts and failovers.
#[derive(Debug, Clone)]
pub enum Call {
    Eval,
    Function { name: String, library: Arc<String> },
}

/// One script: its file name, the text sent to Redis (the code table in front of the script's
/// own text), the SHA-1 Redis knows that text by, and how it is called.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: &'static str,
    pub source: String,
    pub sha: String,
    pub call: Call,
}

impl Script {
    pub fn new(name: &'static str, codes: &str, body: &str) -> Self {
        let source = format!("{codes}\n{body}");
        let sha = hex::encode(Sha1::digest(source.as_bytes()));
        Self {
            name,
            source,
            sha,
            call: Call::Eval,
        }
    }

    /// The `EVALSHA` (or `FCALL`) of this script with these keys and arguments.
    pub fn cmd(&self, keys: &[&str], args: &[&str]) -> redis::Cmd {
        let mut cmd = match &self.call {
            Call::Eval => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(&self.sha);
                c
            }
            Call::Function { name, .. } => {
                let mut c = redis::cmd("FCALL");
                c.arg(name);
                c
            }
        };
        cmd.arg(keys.len()).arg(keys).arg(args);
        cmd
    }

    /// `SCRIPT LOAD` (or `FUNCTION LOAD REPLACE` of its library), after an answer that the node
    /// does not hold it (it restarted, or a failover promoted a replica whose script cache is
    /// empty; a released library survives both, but a node added later may lack it).
    pub async fn load<C: ConnectionLike>(&self, con: &mut C) -> RedisResult<()> {
        match &self.call {
            Call::Eval => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(&self.source)
                    .query_async(con)
                    .await?;
            }
            Call::Function { library, .. } => {
                let _: Value = redis::cmd("FUNCTION")
                    .arg("LOAD")
                    .arg("REPLACE")
                    .arg(library.as_str())
                    .query_async(con)
                    .await?;
            }
        }
        Ok(())
    }

    /// The call, loading the script and trying once more when the node does not hold it.
    pub async fn invoke<C: ConnectionLike>(
        &self,
        con: &mut C,
        keys: &[&str],
        args: &[&str],
    ) -> RedisResult<Value> {
        let cmd = self.cmd(keys, args);
        match cmd.query_async(con).await {
            Err(e) if is_not_loaded(&e) => {
                tracing::info!(script = self.name, sha = %self.sha, "not loaded on this node: loading it");
                self.load(con).await?;
                cmd.query_async(con).await
            }
            other => other,
        }
    }
}

/// Whether Redis answered that it does not hold a script (NOSCRIPT) or a released function.
pub fn is_not_loaded(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
        || e.to_string().contains("Function not found")
}

/// The shared table of return codes, put in front of every script.
pub const CODES: (&str, &str) = ("codes.lua", include_str!("../../lua/codes.lua"));

/// The embedded defaults: `(file name, source)`.
pub const EMBEDDED: [(&str, &str); 6] = [
    ("admit.lua", include_str!("../../lua/admit.lua")),
    ("restore.lua", include_str!("../../lua/restore.lua")),
    ("issue_path.lua", include_str!("../../lua/issue_path.lua")),
    ("take.lua", include_str!("../../lua/take.lua")),
    ("mend.lua", include_str!("../../lua/mend.lua")),
    ("room.lua", include_str!("../../lua/room.lua")),
];

/// What each script must take and answer for this edge to call it: the keys and arguments the
/// edge passes and the codes it reads (`…` repeats per shopper, `?` may be left out). Each file's
/// first line states its own (`-- contract: …`); an edge refuses a set whose lines differ.
pub const CONTRACTS: [(&str, &str); 6] = [
    (
        "admit.lua",
        "keys meta stock buyers gate queue held buys campaign user... | args now (user path request again quantity key)... | codes OK BAD_PATH NOT_STARTED ENDED RATE_LIMITED DUPLICATE SOLD_OUT NO_SALE LIMIT_REACHED TOO_MANY_UNITS NOT_ENOUGH AGAIN KEY_REUSED CAMPAIGN_LIMIT",
    ),
    (
        "restore.lua",
        "keys stock buyers result meta given_back held buys campaign | args user result ttl_s channel goods counter order quantity key | codes OK NOT_A_BUYER",
    ),
    (
        "issue_path.lua",
        "keys captcha user paths meta stock fails taken | args answer checked path print ttl_ms split member max_wrong lock_ms per_user now? | codes OK WRONG_CAPTCHA CAPTCHA_LOCKED NO_SALE NOT_STARTED ENDED SOLD_OUT TOO_MANY_PATHS",
    ),
    ("take.lua", "keys stock | args | codes OK SOLD_OUT"),
    (
        "mend.lua",
        "keys stock queue meta | args stock admitted delta | codes OK CHANGED",
    ),
    (
        "room.lua",
        "keys meta line seq stock soldout through | args op user draw split now? | codes OK WAITING IN_ROOM TOO_MANY_PATHS SOLD_OUT NOT_STARTED ENDED NO_TICKET NO_ROOM NO_SALE",
    ),
];

/// A set's files by name (`codes.lua` and the six scripts), as read from a directory or a
/// release record.
pub type Files = BTreeMap<String, String>;

/// Why a set of files cannot be a script set: named for the SRE who wrote it.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{0}: no such directory")]
    NoDir(String),
    #[error("the set lacks {0} (a set is codes.lua and the six scripts: {1})")]
    Missing(String, String),
    #[error("{name}: reading it failed: {why}")]
    Unreadable { name: String, why: String },
    #[error("{0}")]
    Contract(String),
}

/// Every file name a complete set holds.
pub fn file_names() -> Vec<&'static str> {
    std::iter::once(CODES.0)
        .chain(EMBEDDED.iter().map(|(n, _)| *n))
        .collect()
}

/// The built-in files: the embedded ones, each replaced by `dir`'s file of the same name if any.
pub fn builtin_files(dir: Option<&Path>) -> anyhow::Result<Files> {
    let mut files = Files::new();
    for (name, embedded) in std::iter::once(CODES).chain(EMBEDDED) {
        let text = match dir.map(|d| d.join(name)) {
            Some(path) if path.exists() => std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
            _ => embedded.to_string(),
        };
        files.insert(name.to_string(), text);
    }
    Ok(files)
}

/// A complete set read from `dir`: every file must be there (what `flashgate lua check` and
/// `release` take).
pub fn files_from_dir(dir: &Path) -> Result<Files, SetError> {
    if !dir.is_dir() {
        return Err(SetError::NoDir(dir.display().to_string()));
    }
    let names = file_names();
    let mut files = Files::new();
    for name in &names {
        let path = dir.join(name);
        if !path.exists() {
            return Err(SetError::Missing(name.to_string(), names.join(", ")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SetError::Unreadable {
            name: path.display().to_string(),
            why: e.to_string(),
        })?;
        files.insert(name.to_string(), text);
    }
    Ok(files)
}

/// The content hash of a set: SHA-1 over each file's name and text, in name order.
pub fn content_hash(files: &Files) -> String {
    let mut h = Sha1::new();
    for (name, text) in files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The contract line a script's text states (its first `-- contract:` line), if any.
pub fn stated_contract(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("-- contract:"))
        .map(str::trim)
}

/// Holds each script's stated contract, and the code table, to what this edge passes and reads;
/// the message names the script and the part that differs.
pub fn check_contracts(files: &Files) -> Result<(), SetError> {
    let mut wrong = Vec::new();
    for (name, ours) in CONTRACTS {
        let Some(text) = files.get(name) else {
            wrong.push(format!("{name}: missing from the set"));
            continue;
        };
        let Some(theirs) = stated_contract(text) else {
            wrong.push(format!(
                "{name}: states no contract (its first line must be `-- contract: {ours}`)"
            ));
            continue;
        };
        let parts = |s: &str| -> Vec<String> {
            s.split('|')
                .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        let (ours_p, theirs_p) = (parts(ours), parts(theirs));
        for (i, label) in ["keys", "args", "codes"].iter().enumerate() {
            let (a, b) = (ours_p.get(i), theirs_p.get(i));
            if a != b {
                wrong.push(format!(
                    "{name}: its {label} differ: this edge has `{}`, the script states `{}`",
                    a.map(String::as_str).unwrap_or(""),
                    b.map(String::as_str).unwrap_or("")
                ));
            }
        }
    }
    match files.get(CODES.0) {
        Some(codes) if code_table(codes) == Code::table() => {}
        Some(codes) => wrong.push(format!(
            "codes.lua: its table differs from this edge's: it has {:?}, the edge reads {:?}",
            code_table(codes),
            Code::table()
        )),
        None => wrong.push("codes.lua: missing from the set".into()),
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(SetError::Contract(wrong.join("; ")))
    }
}

/// `local NAME = N` lines of a code table.
fn code_table(codes: &str) -> Vec<(String, i64)> {
    codes
        .lines()
        .filter_map(|l| l.strip_prefix("local "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(" = ")?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_string(), n))
        })
        .collect()
}

/// Outcomes and latency of the admission calls one set decided on this edge (lock-free: the
/// call that picked the set counts into it).
#[derive(Debug, Default)]
pub struct SetStats {
    pub calls: AtomicU64,
    pub shoppers: [AtomicU64; crate::plumbing::metrics::OUTCOMES.len()],
    pub micros: AtomicU64,
    /// calls by latency: ≤0.5, ≤1, ≤2, ≤5, ≤10, ≤25, ≤100 ms, more
    pub latency: [AtomicU64; 8],
}

/// The upper bounds of [`SetStats::latency`], in microseconds.
pub const LATENCY_US: [u64; 7] = [500, 1_000, 2_000, 5_000, 10_000, 25_000, 100_000];

impl SetStats {
    /// One admission call: its shoppers' outcomes (labels of `metrics::OUTCOMES`) and its time.
    pub fn record<'a>(&self, outcomes: impl Iterator<Item = &'a str>, took: std::time::Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        for o in outcomes {
            if let Some(i) = crate::plumbing::metrics::OUTCOMES
                .iter()
                .position(|x| *x == o)
            {
                self.shoppers[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        let us = took.as_micros() as u64;
        self.micros.fetch_add(us, Ordering::Relaxed);
        let b = LATENCY_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_US.len());
        self.latency[b].fetch_add(1, Ordering::Relaxed);
    }

    /// Shoppers decided so far, by outcome (every label of `metrics::OUTCOMES`, zeros too).
    pub fn by_outcome(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        crate::plumbing::metrics::OUTCOMES
            .iter()
            .zip(&self.shoppers)
            .map(|(o, n)| (*o, n.load(Ordering::Relaxed)))
    }
}

/// One consistent set of scripts, swapped as a whole: a call runs every script it needs from
/// one set, never a mixture.
#[derive(Debug)]
pub struct ScriptSet {
    /// 0 for the built-in set (embedded, or `lua_dir`); else the release's version number.
    pub version: u64,
    /// [`content_hash`] of its files.
    pub hash: String,
    pub admit: Script,
    pub restore: Script,
    pub issue_path: Script,
    pub take: Script,
    pub mend: Script,
    pub room: Script,
    pub stats: SetStats,
}

impl ScriptSet {
    /// A set from its files (which must be complete), called by `EVALSHA`.
    pub fn from_files(version: u64, files: &Files) -> Result<Self, SetError> {
        let names = file_names();
        let get = |name: &str| -> Result<String, SetError> {
            files
                .get(name)
                .cloned()
                .ok_or_else(|| SetError::Missing(name.to_string(), names.join(", ")))
        };
        let codes = get(CODES.0)?;
        let script = |name: &'static str| -> Result<Script, SetError> {
            Ok(Script::new(name, &codes, &get(name)?))
        };
        Ok(Self {
            version,
            hash: content_hash(files),
            admit: script("admit.lua")?,
            restore: script("restore.lua")?,
            issue_path: script("issue_path.lua")?,
            take: script("take.lua")?,
            mend: script("mend.lua")?,
            room: script("room.lua")?,
            stats: SetStats::default(),
        })
    }

    /// The same set called as the functions of the library `library` (named `lib`), each
    /// script's function `lib_<stem>`.
    pub fn as_functions(mut self, lib: &str, library: Arc<String>) -> Self {
        for s in self.all_mut() {
            s.call = Call::Function {
                name: function_name(lib, s.name),
                library: library.clone(),
            };
        }
        self
    }

    fn all_mut(&mut self) -> [&mut Script; 6] {
        [
            &mut self.admit,
            &mut self.restore,
            &mut self.issue_path,
            &mut self.take,
            &mut self.mend,
            &mut self.room,
        ]
    }

    pub fn all(&self) -> [&Script; 6] {
        [
            &self.admit,
            &self.restore,
            &self.issue_path,
            &self.take,
            &self.mend,
            &self.room,
        ]
    }
}

/// A script's function name in a library: `lib_admit` for `admit.lua`.
pub fn function_name(lib: &str, script: &str) -> String {
    format!("{lib}_{}", script.trim_end_matches(".lua"))
}

/// The text of a Redis Functions library holding every script of a set as one function each
/// (`FUNCTION LOAD`): the code table and the script's text become the function's body, with
/// `KEYS` and `ARGV` its arguments, so each runs exactly as under `EVALSHA`.
pub fn library_text(lib: &str, files: &Files) -> String {
    let codes = files.get(CODES.0).map(String::as_str).unwrap_or("");
    let mut out = format!("#!lua name={lib}\n");
    for (name, _) in EMBEDDED {
        let body = files.get(name).map(String::as_str).unwrap_or("");
        out.push_str(&format!(
            "redis.register_function('{}', function(KEYS, ARGV)\n{codes}\n{body}\nend)\n",
            function_name(lib, name)
        ));
    }
    out
}

/// A canary: a second set deciding `pct` % of admission calls.
#[derive(Debug, Clone)]
pub struct Canary {
    pub set: Arc<ScriptSet>,
    pub pct: u8,
}

/// The scripts in use, swapped while requests run: the live set, and a canary if one is out.
#[derive(Debug)]
pub struct Scripts {
    dir: Option<PathBuf>,
    builtin: ArcSwap<ScriptSet>,
    live: ArcSwap<ScriptSet>,
    canary: ArcSwap<Option<Canary>>,
}

impl Scripts {
    pub fn load(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let set = Arc::new(ScriptSet::from_files(0, &builtin_files(dir.as_deref())?)?);
        log_set(&set, dir.as_deref());
        Ok(Self {
            dir,
            builtin: ArcSwap::new(set.clone()),
            live: ArcSwap::new(set),
            canary: ArcSwap::from_pointee(None),
        })
    }

    /// The live set (every script but the admission calls a canary takes).
    pub fn get(&self) -> Arc<ScriptSet> {
        self.live.load_full()
    }

    /// The set for one admission call: the canary's for its share of calls, else the live one.
    pub fn pick(&self) -> Arc<ScriptSet> {
        if let Some(c) = self.canary.load().as_ref()
            && rand::random_range(0..100u8) < c.pct
        {
            return c.set.clone();
        }
        self.get()
    }

    /// The canary, if one is out.
    pub fn canary(&self) -> Option<Canary> {
        self.canary.load_full().as_ref().clone()
    }

    /// The built-in set (version 0).
    pub fn builtin(&self) -> Arc<ScriptSet> {
        self.builtin.load_full()
    }

    /// Makes `live` the live set and `canary` the canary (a release, a promote, a rollback).
    pub fn adopt(&self, live: Arc<ScriptSet>, canary: Option<Canary>) {
        self.live.store(live);
        self.canary.store(Arc::new(canary));
    }

    /// Reads the built-in files again (a bad file keeps the old set) and logs each SHA-1; the
    /// live set follows when no release is live.
    pub fn reload(&self) -> anyhow::Result<Arc<ScriptSet>> {
        let set = Arc::new(ScriptSet::from_files(
            0,
            &builtin_files(self.dir.as_deref())?,
        )?);
        log_set(&set, self.dir.as_deref());
        self.builtin.store(set.clone());
        if self.get().version == 0 {
            self.live.store(set);
        }
        Ok(self.get())
    }

    /// Loads every script of the live set, so the first buy does not pay for it.
    pub async fn preload<C: ConnectionLike>(&self, con: &mut C) -> RedisResult<()> {
        let set = self.get();
        match &set.admit.call {
            Call::Function { .. } => set.admit.load(con).await,
            Call::Eval => {
                for script in set.all() {
                    script.load(con).await?;
                }
                Ok(())
            }
        }
    }
}

fn log_set(set: &ScriptSet, dir: Option<&Path>) {
    for s in set.all() {
        let from = match dir.map(|d| d.join(s.name)) {
            Some(p) if p.exists() => p.display().to_string(),
            _ => "embedded".to_string(),
        };
        tracing::info!(script = s.name, sha = %s.sha, from = %from, "lua script ready");
    }
}

/// The return codes of every script: `lua/codes.lua`, the same names and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum Code {
    Ok = 0,
    BadPath = 1,
    NotStarted = 2,
    Ended = 3,
    RateLimited = 4,
    Duplicate = 5,
    SoldOut = 6,
    NoSale = 7,
    WrongCaptcha = 8,
    TooManyPaths = 9,
    NotABuyer = 10,
    Changed = 11,
    NoRoom = 12,
    InRoom = 13,
    Waiting = 14,
    NoTicket = 15,
    LimitReached = 16,
    TooManyUnits = 17,
    NotEnough = 18,
    Again = 19,
    KeyReused = 20,
    CampaignLimit = 21,
    CaptchaLocked = 30,
}

impl Code {
    /// Every code with its name in `lua/codes.lua`.
    pub const ALL: [(Code, &'static str); 23] = [
        (Code::Ok, "OK"),
        (Code::BadPath, "BAD_PATH"),
        (Code::NotStarted, "NOT_STARTED"),
        (Code::Ended, "ENDED"),
        (Code::RateLimited, "RATE_LIMITED"),
        (Code::Duplicate, "DUPLICATE"),
        (Code::SoldOut, "SOLD_OUT"),
        (Code::NoSale, "NO_SALE"),
        (Code::WrongCaptcha, "WRONG_CAPTCHA"),
        (Code::TooManyPaths, "TOO_MANY_PATHS"),
        (Code::NotABuyer, "NOT_A_BUYER"),
        (Code::Changed, "CHANGED"),
        (Code::NoRoom, "NO_ROOM"),
        (Code::InRoom, "IN_ROOM"),
        (Code::Waiting, "WAITING"),
        (Code::NoTicket, "NO_TICKET"),
        (Code::LimitReached, "LIMIT_REACHED"),
        (Code::TooManyUnits, "TOO_MANY_UNITS"),
        (Code::NotEnough, "NOT_ENOUGH"),
        (Code::Again, "AGAIN"),
        (Code::KeyReused, "KEY_REUSED"),
        (Code::CampaignLimit, "CAMPAIGN_LIMIT"),
        (Code::CaptchaLocked, "CAPTCHA_LOCKED"),
    ];

    /// The table as `(name, number)` pairs, as `lua/codes.lua` states it.
    pub fn table() -> Vec<(String, i64)> {
        Self::ALL
            .iter()
            .map(|(c, name)| (name.to_string(), *c as i64))
            .collect()
    }

    fn from_i64(n: i64) -> Option<Code> {
        Self::ALL.iter().map(|(c, _)| *c).find(|c| *c as i64 == n)
    }
}

/// Reads `{code, detail?}` from a script's reply.
fn code_and_detail(reply: Value) -> anyhow::Result<(Code, Option<Value>)> {
    let Value::Array(mut items) = reply else {
        anyhow::bail!("script reply is not an array: {reply:?}");
    };
    anyhow::ensure!(!items.is_empty(), "script reply is empty");
    let detail = (items.len() > 1).then(|| items.remove(1));
    let code = match items.remove(0) {
        Value::Int(c) => Code::from_i64(c).ok_or_else(|| anyhow::anyhow!("unknown code {c}"))?,
        other => anyhow::bail!("script code is not an integer: {other:?}"),
    };
    Ok((code, detail))
}

/// Decodes a yes/no script (`restore.lua`, `take.lua`): `{OK}` is true, `{no}` false, anything
/// else an error (a malformed reply never passes for an answer).
pub fn decode_done(script: &str, reply: Value, no: Code) -> anyhow::Result<bool> {
    match code_and_detail(reply).with_context(|| format!("{script} answered"))? {
        (Code::Ok, _) => Ok(true),
        (c, _) if c == no => Ok(false),
        (c, _) => anyhow::bail!("{script} answered {c:?}"),
    }
}

fn detail_int(detail: Option<Value>) -> i64 {
    match detail {
        Some(Value::Int(v)) => v,
        Some(Value::BulkString(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn detail_string(detail: Option<Value>) -> anyhow::Result<String> {
    match detail {
        Some(Value::BulkString(b)) => Ok(String::from_utf8(b)?),
        Some(Value::SimpleString(s)) => Ok(s),
        other => anyhow::bail!("expected a string detail, got {other:?}"),
    }
}

/// What `lua/admit.lua` answered: one variant per return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// OK: admitted; the request is in the queue under this stream id.
    Queued { entry_id: String },
    /// BAD_PATH: the hidden path is missing, expired or not this user's.
    BadPath,
    /// NOT_STARTED: the sale starts in this many ms.
    NotStarted { starts_in_ms: i64 },
    /// ENDED: the sale is over.
    Ended,
    /// RATE_LIMITED: a token bucket is empty; one token comes back in this many ms.
    RateLimited { retry_after_ms: u64 },
    /// DUPLICATE: this user was admitted already.
    Duplicate,
    /// SOLD_OUT: no stock left.
    SoldOut,
    /// NO_SALE: the sale was never loaded into Redis.
    NoSale,
    /// LIMIT_REACHED: the buy would take the account past the sale's `perAccount`, or
    /// (CAMPAIGN_LIMIT, `campaign`) past its campaign's `campaignPerAccount`; it may still take
    /// this many units here.
    LimitReached { left: i64, campaign: bool },
    /// TOO_MANY_UNITS: the buy asked for more than the sale's `perBuy`.
    TooManyUnits { per_buy: i64 },
    /// NOT_ENOUGH: fewer units left than asked (a buy is all or nothing).
    NotEnough { left: i64 },
    /// AGAIN: the same buy (user, Idempotency-Key, quantity) was admitted before: nothing moved.
    Again,
    /// KEY_REUSED: the Idempotency-Key was first used with this other quantity.
    KeyReused { quantity: i64 },
    /// OK, but the replicas did not confirm the call in time (`plumbing::replicas`): the
    /// shopper is told it is being confirmed, not "queued". Never a reply of the script itself.
    Unconfirmed,
}

impl Admission {
    /// The answer to a call for `n` shoppers, as `lua/admit.lua` gives it: one flat array,
    /// `{entry id or '', code 1, detail 1, ...}`. Anything else (another count, a malformed
    /// element, a shopper queued with no entry id) is an error: never taken for an answer.
    pub fn from_batch_reply(reply: Value, n: usize) -> anyhow::Result<Vec<Self>> {
        let Value::Array(items) = reply else {
            anyhow::bail!("admit.lua reply is not an array: {reply:?}");
        };
        anyhow::ensure!(
            items.len() == 1 + 2 * n,
            "admit.lua answered {} elements for {n} shoppers (expected {})",
            items.len(),
            1 + 2 * n
        );
        let mut it = items.into_iter();
        let entry_id = detail_string(it.next())?;
        let mut out = Vec::with_capacity(n);
        while let (Some(code), Some(detail)) = (it.next(), it.next()) {
            let code = match code {
                Value::Int(c) => {
                    Code::from_i64(c).ok_or_else(|| anyhow::anyhow!("unknown code {c}"))?
                }
                other => anyhow::bail!("admit.lua code is not an integer: {other:?}"),
            };
            out.push(Self::from_code(code, detail, &entry_id)?);
        }
        Ok(out)
    }

    /// One shopper's outcome from its code and detail; `entry_id` is the call's entry.
    fn from_code(code: Code, detail: Value, entry_id: &str) -> anyhow::Result<Self> {
        let detail = Some(detail);
        Ok(match code {
            Code::Ok => {
                anyhow::ensure!(
                    !entry_id.is_empty(),
                    "admit.lua queued a shopper in no entry"
                );
                Self::Queued {
                    entry_id: entry_id.to_string(),
                }
            }
            Code::BadPath => Self::BadPath,
            Code::NotStarted => Self::NotStarted {
                starts_in_ms: detail_int(detail),
            },
            Code::Ended => Self::Ended,
            Code::RateLimited => Self::RateLimited {
                retry_after_ms: detail_int(detail).max(1) as u64,
            },
            Code::Duplicate => Self::Duplicate,
            Code::SoldOut => Self::SoldOut,
            Code::NoSale => Self::NoSale,
            Code::LimitReached | Code::CampaignLimit => Self::LimitReached {
                left: detail_int(detail),
                campaign: code == Code::CampaignLimit,
            },
            Code::TooManyUnits => Self::TooManyUnits {
                per_buy: detail_int(detail),
            },
            Code::NotEnough => Self::NotEnough {
                left: detail_int(detail),
            },
            Code::Again => Self::Again,
            Code::KeyReused => Self::KeyReused {
                quantity: detail_int(detail),
            },
            other => anyhow::bail!("admit.lua returned {other:?}, not one of its codes"),
        })
    }

    /// A short name for logs and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Queued { .. } => "queued",
            Self::BadPath => "bad_path",
            Self::NotStarted { .. } => "not_started",
            Self::Ended => "ended",
            Self::RateLimited { .. } => "rate_limited",
            Self::Duplicate => "duplicate",
            Self::SoldOut => "sold_out",
            Self::NoSale => "no_sale",
            Self::LimitReached { .. } => "limit_reached",
            Self::TooManyUnits { .. } => "too_many_units",
            Self::NotEnough { .. } => "not_enough",
            Self::Again => "again",
            Self::KeyReused { .. } => "key_reused",
            Self::Unconfirmed => "confirming",
        }
    }
}

/// What `lua/issue_path.lua` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathIssue {
    /// OK: this path is the user's for [`crate::plumbing::keys::PATH_TTL`].
    Issued(String),
    /// WRONG_CAPTCHA: the captcha answer is wrong, or there was none.
    WrongCaptcha,
    /// CAPTCHA_LOCKED: too many wrong answers lately; the lock ends in this many ms.
    CaptchaLocked { retry_after_ms: i64 },
    /// NO_SALE: the sale was never loaded.
    NoSale,
    /// ENDED: the sale is over.
    Ended,
    /// SOLD_OUT: no stock left.
    SoldOut,
    /// TOO_MANY_PATHS: as many paths are live as the sale's cap allows (no detail), or this user
    /// took as many of this sale's paths as an hour allows (the ms until the count ends).
    TooMany { retry_after_ms: Option<i64> },
    /// NOT_STARTED: the sale starts in this many ms.
    NotStarted { starts_in_ms: i64 },
}

impl PathIssue {
    pub fn from_reply(reply: Value) -> anyhow::Result<Self> {
        let (code, detail) = code_and_detail(reply)?;
        Ok(match code {
            Code::Ok => Self::Issued(detail_string(detail)?),
            Code::WrongCaptcha => Self::WrongCaptcha,
            Code::CaptchaLocked => Self::CaptchaLocked {
                retry_after_ms: detail_int(detail),
            },
            Code::NoSale => Self::NoSale,
            Code::Ended => Self::Ended,
            Code::SoldOut => Self::SoldOut,
            Code::TooManyPaths => Self::TooMany {
                retry_after_ms: detail.map(|d| detail_int(Some(d))),
            },
            Code::NotStarted => Self::NotStarted {
                starts_in_ms: detail_int(detail),
            },
            other => anyhow::bail!("issue_path.lua returned {other:?}, not one of its codes"),
        })
    }
}

/// What `lua/room.lua` answered about one ticket: one variant per return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAnswer {
    /// OK: let through; `wait_ms` from the start (or from joining, for a latecomer) to its
    /// turn; `first` the first time this ticket is seen through.
    Through { wait_ms: i64, first: bool },
    /// WAITING: in line, `position` (1 = next), `wait_ms` to its turn, of `size`, with
    /// `through` let through so far.
    Waiting {
        position: i64,
        wait_ms: i64,
        size: i64,
        through: i64,
    },
    /// IN_ROOM: joined before the start; the draw is at the start.
    InRoom { starts_in_ms: i64, size: i64 },
    /// TOO_MANY_PATHS: behind the sale's path cap: this ticket will not get through.
    Full,
    /// SOLD_OUT: the sale sold out while this ticket waited.
    SoldOut,
    /// NOT_STARTED: the room opens in this many ms.
    NotOpen { opens_in_ms: i64 },
    /// ENDED: the sale is over.
    Ended,
    /// NO_TICKET: this shopper has not joined.
    NoTicket,
    /// NO_ROOM: the sale has no waiting room.
    NoRoom,
    /// NO_SALE: the sale was never loaded.
    NoSale,
}

impl RoomAnswer {
    pub fn from_reply(reply: Value) -> anyhow::Result<Self> {
        let Value::Array(items) = reply else {
            anyhow::bail!("room.lua reply is not an array: {reply:?}");
        };
        let mut it = items.into_iter();
        let (code, _) = code_and_detail(Value::Array(it.next().into_iter().collect()))?;
        let mut int = || detail_int(it.next());
        Ok(match code {
            Code::Ok => Self::Through {
                wait_ms: int(),
                first: int() == 1,
            },
            Code::Waiting => Self::Waiting {
                position: int(),
                wait_ms: int(),
                size: int(),
                through: int(),
            },
            Code::InRoom => Self::InRoom {
                starts_in_ms: int(),
                size: int(),
            },
            Code::TooManyPaths => Self::Full,
            Code::SoldOut => Self::SoldOut,
            Code::NotStarted => Self::NotOpen { opens_in_ms: int() },
            Code::Ended => Self::Ended,
            Code::NoTicket => Self::NoTicket,
            Code::NoRoom => Self::NoRoom,
            Code::NoSale => Self::NoSale,
            other => anyhow::bail!("room.lua returned {other:?}, not one of its codes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_is_the_sha1_of_the_source() {
        let s = Script::new("x.lua", "", "return 1");
        // SHA-1 of "\nreturn 1" (an empty code table, then the script)
        assert_eq!(s.sha, hex::encode(Sha1::digest(b"\nreturn 1")));
        assert_eq!(s.source, "\nreturn 1");
    }

    #[test]
    fn replies_decode_to_outcomes() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("1-0"),
            Value::Int(0),
            Value::Int(0),
            Value::Int(4),
            Value::Int(250),
            Value::Int(0),
            Value::Int(0),
        ]);
        let queued = Admission::Queued {
            entry_id: "1-0".into(),
        };
        assert_eq!(
            Admission::from_batch_reply(reply, 3).unwrap(),
            vec![
                queued.clone(),
                Admission::RateLimited {
                    retry_after_ms: 250
                },
                queued
            ]
        );
        let none = Value::Array(vec![
            bulk(""),
            Value::Int(Code::Duplicate as i64),
            Value::Int(0),
        ]);
        assert_eq!(
            Admission::from_batch_reply(none.clone(), 1).unwrap(),
            vec![Admission::Duplicate]
        );
        assert!(
            Admission::from_batch_reply(none, 2).is_err(),
            "a count that differs"
        );
        let no_entry = Value::Array(vec![bulk(""), Value::Int(0), Value::Int(0)]);
        assert!(
            Admission::from_batch_reply(no_entry, 1).is_err(),
            "queued with no entry"
        );
        let unknown = Value::Array(vec![bulk(""), Value::Int(99), Value::Int(0)]);
        assert!(Admission::from_batch_reply(unknown, 1).is_err());
        assert!(Admission::from_batch_reply(Value::Nil, 0).is_err());
    }

    #[test]
    fn the_lua_code_table_and_the_rust_one_are_the_same() {
        assert_eq!(code_table(CODES.1).len(), Code::ALL.len());
        assert_eq!(code_table(CODES.1), Code::table());
        // and every script is sent with the table in front of it
        for s in Scripts::load(None).unwrap().get().all() {
            assert!(s.source.starts_with(CODES.1), "{}", s.name);
        }
    }

    #[test]
    fn yes_no_replies_decode_and_nothing_else_passes() {
        let ok = Value::Array(vec![Value::Int(0)]);
        let no = Value::Array(vec![Value::Int(Code::NotABuyer as i64)]);
        assert!(decode_done("restore.lua", ok, Code::NotABuyer).unwrap());
        assert!(!decode_done("restore.lua", no, Code::NotABuyer).unwrap());
        assert!(decode_done("restore.lua", Value::Int(1), Code::NotABuyer).is_err());
        let other = Value::Array(vec![Value::Int(Code::SoldOut as i64)]);
        assert!(decode_done("restore.lua", other, Code::NotABuyer).is_err());
    }

    #[test]
    fn a_directory_overrides_one_script_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("fg-lua-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("restore.lua"), "return 0").unwrap();
        let scripts = Scripts::load(Some(dir.clone())).unwrap();
        assert!(scripts.get().restore.source.ends_with("\nreturn 0"));
        assert!(scripts.get().admit.source.ends_with(EMBEDDED[0].1));
        std::fs::write(dir.join("restore.lua"), "return 2").unwrap();
        scripts.reload().unwrap();
        assert!(scripts.get().restore.source.ends_with("\nreturn 2"));
        assert!(scripts.get().restore.source.starts_with(CODES.1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_shipped_set_states_the_contracts_this_edge_has_and_a_changed_one_is_named() {
        let files = builtin_files(None).unwrap();
        check_contracts(&files).unwrap();
        let mut changed = files.clone();
        let admit = changed.get_mut("admit.lua").unwrap();
        *admit = admit.replacen("campaign user...", "campaign", 1);
        let err = check_contracts(&changed).unwrap_err().to_string();
        assert!(err.contains("admit.lua: its keys differ"), "{err}");
        let mut codes = files.clone();
        codes.insert("codes.lua".into(), "local OK = 1\n".into());
        let err = check_contracts(&codes).unwrap_err().to_string();
        assert!(err.starts_with("codes.lua: its table differs"), "{err}");
        let mut none = files;
        none.insert("take.lua".into(), "return {0}".into());
        let err = check_contracts(&none).unwrap_err().to_string();
        assert!(err.contains("take.lua: states no contract"), "{err}");
    }

    #[test]
    fn a_library_holds_one_function_per_script_with_the_code_table_inside() {
        let files = builtin_files(None).unwrap();
        let text = library_text("fg_x_v1", &files);
        assert!(text.starts_with("#!lua name=fg_x_v1\n"));
        for (name, _) in EMBEDDED {
            assert!(text.contains(&format!("'{}'", function_name("fg_x_v1", name))));
        }
        assert_eq!(text.matches("local OK = 0").count(), EMBEDDED.len());
        let set = ScriptSet::from_files(1, &files)
            .unwrap()
            .as_functions("fg_x_v1", Arc::new(text));
        let cmd = set.admit.cmd(&["k"], &["a"]);
        assert_eq!(
            cmd.args_iter()
                .map(|a| match a {
                    redis::Arg::Simple(b) => String::from_utf8_lossy(b).to_string(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>(),
            ["FCALL", "fg_x_v1_admit", "1", "k", "a"]
        );
    }
}
