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

    /// The `EVALSHA` of this script with these keys and arguments.
    pub fn cmd(&self, keys: &[&str], args: &[&str]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len()).arg(keys).arg(args);
        cmd
    }

    /// `SCRIPT LOAD`, after a NOSCRIPT answer (the node restarted, or a failover promoted a
    /// replica whose script cache is empty).
    pub async fn load<C: ConnectionLike>(&self, con: &mut C) -> RedisResult<()> {
        tracing::info!(script = self.name, sha = %self.sha, "NOSCRIPT: loading the script");
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&self.source)
            .query_async(con)
            .await?;
        Ok(())
    }

    /// `EVALSHA`, falling back to `SCRIPT LOAD` + `EVALSHA` on NOSCRIPT.
    pub async fn invoke<C: ConnectionLike>(
        &self,
        con: &mut C,
        keys: &[&str],
        args: &[&str],
    ) -> RedisResult<Value> {
        let cmd = self.cmd(keys, args);
        match cmd.query_async(con).await {
            Err(e) if is_noscript(&e) => {
                self.load(con).await?;
                cmd.query_async(con).await
            }
            other => other,
        }
    }
}

/// Whether Redis answered that it does not hold a script (NOSCRIPT).
pub fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// The shared table of return codes, put in front of every script.
const CODES: (&str, &str) = ("codes.lua", include_str!("../../lua/codes.lua"));

/// The embedded defaults: `(file name, source)`.
const EMBEDDED: [(&str, &str); 6] = [
    ("admit.lua", include_str!("../../lua/admit.lua")),
    ("restore.lua", include_str!("../../lua/restore.lua")),
    ("issue_path.lua", include_str!("../../lua/issue_path.lua")),
    ("take.lua", include_str!("../../lua/take.lua")),
    ("mend.lua", include_str!("../../lua/mend.lua")),
    ("room.lua", include_str!("../../lua/room.lua")),
];

/// One consistent set of scripts (swapped as a whole on reload).
#[derive(Debug)]
pub struct ScriptSet {
    pub admit: Script,
    pub restore: Script,
    pub issue_path: Script,
    pub take: Script,
    pub mend: Script,
    pub room: Script,
}

impl ScriptSet {
    fn read(dir: Option<&Path>) -> anyhow::Result<Self> {
        let text = |(name, embedded): (&'static str, &str)| -> anyhow::Result<String> {
            match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display())),
                _ => Ok(embedded.to_string()),
            }
        };
        let codes = text(CODES)?;
        let read = |file: (&'static str, &str)| -> anyhow::Result<Script> {
            Ok(Script::new(file.0, format!("{codes}\n{}", text(file)?)))
        };
        let [admit, restore, issue_path, take, mend, room] = EMBEDDED;
        Ok(Self {
            admit: read(admit)?,
            restore: read(restore)?,
            issue_path: read(issue_path)?,
            take: read(take)?,
            mend: read(mend)?,
            room: read(room)?,
        })
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
}

impl Code {
    /// Every code with its name in `lua/codes.lua`.
    pub const ALL: [(Code, &'static str); 16] = [
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
    ];

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
    /// NO_SALE: the sale was never loaded.
    NoSale,
    /// ENDED: the sale is over.
    Ended,
    /// SOLD_OUT: no stock left.
    SoldOut,
    /// TOO_MANY_PATHS: the sale has issued as many paths as its cap allows.
    TooMany,
    /// NOT_STARTED: the sale starts in this many ms.
    NotStarted { starts_in_ms: i64 },
}

impl PathIssue {
    pub fn from_reply(reply: Value) -> anyhow::Result<Self> {
        let (code, detail) = code_and_detail(reply)?;
        Ok(match code {
            Code::Ok => Self::Issued(detail_string(detail)?),
            Code::WrongCaptcha => Self::WrongCaptcha,
            Code::NoSale => Self::NoSale,
            Code::Ended => Self::Ended,
            Code::SoldOut => Self::SoldOut,
            Code::TooManyPaths => Self::TooMany,
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
        // SHA-1 of "return 1", as `redis-cli SCRIPT LOAD "return 1"` prints it.
        let s = Script::new("x.lua", "return 1".into());
        assert_eq!(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
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
        let lua: Vec<(String, i64)> = CODES
            .1
            .lines()
            .filter_map(|l| l.strip_prefix("local "))
            .map(|l| {
                let (name, rest) = l.split_once(" = ").expect("local NAME = N");
                let n = rest.split_whitespace().next().unwrap().parse().unwrap();
                (name.trim().to_string(), n)
            })
            .collect();
        let rust: Vec<(String, i64)> = Code::ALL
            .iter()
            .map(|(c, name)| (name.to_string(), *c as i64))
            .collect();
        assert_eq!(lua, rust);
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
}
