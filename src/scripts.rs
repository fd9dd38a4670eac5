//! The Lua scripts of `lua/`, how they are called, and what their answers mean.
//!
//! Each script is a plain file an SRE can read, tune and test. The files are embedded in the
//! binary as defaults; `lua_dir` may name a directory whose files of the same name replace them,
//! and [`Scripts::reload`] (on `SIGHUP` or `POST /api/admin/scripts/reload`) reads them again.
//!
//! The edge computes each script's SHA-1 itself and calls `EVALSHA`; when Redis answers NOSCRIPT
//! (its script cache is per node and is lost on restart, flush or failover) it sends `SCRIPT LOAD`
//! and tries once more. A script's return codes are one enum here ([`Admission`], [`PathIssue`]),
//! decoded in one place each.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use sha1::{Digest, Sha1};

/// One script: its file name, its source and the SHA-1 Redis knows it by.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: &'static str,
    pub source: String,
    pub sha: String,
}

impl Script {
    pub fn new(name: &'static str, source: String) -> Self {
        let sha = hex::encode(Sha1::digest(source.as_bytes()));
        Self { name, source, sha }
    }

    /// `EVALSHA`, falling back to `SCRIPT LOAD` + `EVALSHA` on NOSCRIPT.
    pub async fn invoke<C: ConnectionLike>(
        &self,
        con: &mut C,
        keys: &[&str],
        args: &[&str],
    ) -> RedisResult<Value> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len()).arg(keys).arg(args);
        match cmd.query_async(con).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::info!(script = self.name, sha = %self.sha, "NOSCRIPT: loading the script");
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(&self.source)
                    .query_async(con)
                    .await?;
                cmd.query_async(con).await
            }
            other => other,
        }
    }
}

/// The embedded defaults: `(file name, source)`.
const EMBEDDED: [(&str, &str); 4] = [
    ("admit.lua", include_str!("../lua/admit.lua")),
    ("restore.lua", include_str!("../lua/restore.lua")),
    ("issue_path.lua", include_str!("../lua/issue_path.lua")),
    ("take.lua", include_str!("../lua/take.lua")),
];

/// One consistent set of scripts (swapped as a whole on reload).
#[derive(Debug)]
pub struct ScriptSet {
    pub admit: Script,
    pub restore: Script,
    pub issue_path: Script,
    pub take: Script,
}

impl ScriptSet {
    fn read(dir: Option<&Path>) -> anyhow::Result<Self> {
        let read = |(name, embedded): (&'static str, &str)| -> anyhow::Result<Script> {
            let source = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                _ => embedded.to_string(),
            };
            Ok(Script::new(name, source))
        };
        let [admit, restore, issue_path, take] = EMBEDDED;
        Ok(Self {
            admit: read(admit)?,
            restore: read(restore)?,
            issue_path: read(issue_path)?,
            take: read(take)?,
        })
    }

    pub fn all(&self) -> [&Script; 4] {
        [&self.admit, &self.restore, &self.issue_path, &self.take]
    }
}

/// The scripts in use, reloadable while requests run.
#[derive(Debug)]
pub struct Scripts {
    dir: Option<PathBuf>,
    current: ArcSwap<ScriptSet>,
}

impl Scripts {
    pub fn load(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let set = ScriptSet::read(dir.as_deref())?;
        log_set(&set, dir.as_deref());
        Ok(Self {
            dir,
            current: ArcSwap::from_pointee(set),
        })
    }

    /// The scripts in use now.
    pub fn get(&self) -> Arc<ScriptSet> {
        self.current.load_full()
    }

    /// Reads the scripts again (a bad file keeps the old set) and logs each SHA-1.
    pub fn reload(&self) -> anyhow::Result<Arc<ScriptSet>> {
        let set = ScriptSet::read(self.dir.as_deref())?;
        log_set(&set, self.dir.as_deref());
        self.current.store(Arc::new(set));
        Ok(self.get())
    }

    /// `SCRIPT LOAD`s every script, so the first buy does not pay for it.
    pub async fn preload<C: ConnectionLike>(&self, con: &mut C) -> RedisResult<()> {
        for script in self.get().all() {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(&script.source)
                .query_async(con)
                .await?;
        }
        Ok(())
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

/// Reads `{code, detail?}` from a script's reply.
fn code_and_detail(reply: Value) -> anyhow::Result<(i64, Option<Value>)> {
    let Value::Array(mut items) = reply else {
        anyhow::bail!("script reply is not an array: {reply:?}");
    };
    anyhow::ensure!(!items.is_empty(), "script reply is empty");
    let detail = (items.len() > 1).then(|| items.remove(1));
    let code = match items.remove(0) {
        Value::Int(c) => c,
        other => anyhow::bail!("script code is not an integer: {other:?}"),
    };
    Ok((code, detail))
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
    /// 0: admitted; the request is in the queue under this stream id.
    Queued { entry_id: String },
    /// 1: the hidden path is missing, expired or not this user's.
    BadPath,
    /// 2: the sale starts in this many ms.
    NotStarted { starts_in_ms: i64 },
    /// 3: the sale is over.
    Ended,
    /// 4: a token bucket is empty; one token comes back in this many ms.
    RateLimited { retry_after_ms: u64 },
    /// 5: this user was admitted already.
    Duplicate,
    /// 6: no stock left.
    SoldOut,
    /// 7: the sale was never loaded into Redis.
    NoSale,
}

impl Admission {
    pub fn from_reply(reply: Value) -> anyhow::Result<Self> {
        let (code, detail) = code_and_detail(reply)?;
        Ok(match code {
            0 => Self::Queued {
                entry_id: detail_string(detail)?,
            },
            1 => Self::BadPath,
            2 => Self::NotStarted {
                starts_in_ms: detail_int(detail),
            },
            3 => Self::Ended,
            4 => Self::RateLimited {
                retry_after_ms: detail_int(detail).max(1) as u64,
            },
            5 => Self::Duplicate,
            6 => Self::SoldOut,
            7 => Self::NoSale,
            other => anyhow::bail!("admit.lua returned unknown code {other}"),
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
        }
    }
}

/// What `lua/issue_path.lua` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathIssue {
    /// 0: this path is the user's for [`crate::keys::PATH_TTL`].
    Issued(String),
    /// 1: the captcha answer is wrong, or there was none.
    WrongCaptcha,
    /// 2: the sale was never loaded.
    NoSale,
    /// 3: the sale is over.
    Ended,
    /// 4: no stock left.
    SoldOut,
    /// 5: the sale has issued as many paths as its cap allows.
    TooMany,
    /// 6: the sale starts in this many ms.
    NotStarted { starts_in_ms: i64 },
}

impl PathIssue {
    pub fn from_reply(reply: Value) -> anyhow::Result<Self> {
        let (code, detail) = code_and_detail(reply)?;
        Ok(match code {
            0 => Self::Issued(detail_string(detail)?),
            1 => Self::WrongCaptcha,
            2 => Self::NoSale,
            3 => Self::Ended,
            4 => Self::SoldOut,
            5 => Self::TooMany,
            6 => Self::NotStarted {
                starts_in_ms: detail_int(detail),
            },
            other => anyhow::bail!("issue_path.lua returned unknown code {other}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_is_the_sha1_of_the_source() {
        // SHA-1 of "return 1", as `redis-cli SCRIPT LOAD "return 1"` prints it.
        let s = Script::new("x.lua", "return 1".into());
        assert_eq!(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn replies_decode_to_outcomes() {
        let q = Value::Array(vec![Value::Int(0), Value::BulkString(b"1-0".to_vec())]);
        assert_eq!(
            Admission::from_reply(q).unwrap(),
            Admission::Queued {
                entry_id: "1-0".into()
            }
        );
        let r = Value::Array(vec![Value::Int(4), Value::Int(250)]);
        assert_eq!(
            Admission::from_reply(r).unwrap(),
            Admission::RateLimited {
                retry_after_ms: 250
            }
        );
        assert!(Admission::from_reply(Value::Array(vec![Value::Int(99)])).is_err());
        assert!(Admission::from_reply(Value::Nil).is_err());
    }

    #[test]
    fn a_directory_overrides_one_script_and_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("fg-lua-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("restore.lua"), "return 0").unwrap();
        let scripts = Scripts::load(Some(dir.clone())).unwrap();
        assert_eq!(scripts.get().restore.source, "return 0");
        assert_eq!(scripts.get().admit.source, EMBEDDED[0].1);
        std::fs::write(dir.join("restore.lua"), "return 2").unwrap();
        scripts.reload().unwrap();
        assert_eq!(scripts.get().restore.source, "return 2");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
