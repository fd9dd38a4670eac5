//! The scripts' contract suite: what `flashgate lua check` runs, what `release` requires, and
//! what the project's own tests run (one source: the cases are data, `lua/cases/*.json`,
//! embedded in the binary, so a tuned set is held to the same cases as the shipped one and an
//! SRE cannot weaken them by editing a directory).
//!
//! A case sets keys up (`given`), calls one script in steps with the clock pinned (each script
//! takes `now` as an argument), checks each reply, and then every key the case knows: those in
//! `then` as stated, the others as `given` left them (a refusal writes nothing) or absent. Each
//! call runs with `redis.call` observed (a wrapper in front of the script records every command;
//! Redis's `COMMAND GETKEYS` says which of its arguments are keys): a script that touches a key
//! it was not given fails, since on a Redis Cluster it could not run. Every case's keys share
//! one hash tag, in a scratch namespace (`fgcheck:{RUN-N}:`) deleted afterwards.
//!
//! An `admit.lua` case with a step of several shoppers runs twice, in one call and one call a
//! shopper, and both runs must meet the case and leave the same keys: a coalesced call decides
//! exactly as the same shoppers one by one.
//!
//! The case format (`lua/cases/README.md` explains it to SREs): a file per script with its
//! default `keys` and `given`, and `cases`, each `{name, given, steps, then}`; a step is
//! `{"given": {…}}` (keys written mid-case), `{"args": […], "reply": …}` (one call; `keys` may
//! override the file's), or for admit.lua `{"now": ms, "shoppers": [[user, path, again?, quantity?, key?]…],
//! "expect": [code or [code, detail]…]}`. A value is a string, `{"hash": {…}}`, `{"set": […]}`,
//! `{"zset": [[member, score]…]}` or `{"queue": [[user, request, time, quantity?, key?]…]}` (a stream read as the
//! shoppers its entries hold), with `ttl_ms` (given) or `ttl` (then: has one or not); `null` in
//! `then` is "absent"; `"*"` matches anything.

use std::collections::{BTreeMap, BTreeSet};

use redis::Value;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::admission::scripts::{CODES, Code, Files, SetError, check_contracts, library_text};
use crate::plumbing::redis_conn::RedisConn;

/// The cases, one file per script, embedded in the binary.
pub const CASES: [(&str, &str); 6] = [
    ("admit.lua", include_str!("../../lua/cases/admit.json")),
    (
        "issue_path.lua",
        include_str!("../../lua/cases/issue_path.json"),
    ),
    ("restore.lua", include_str!("../../lua/cases/restore.json")),
    ("take.lua", include_str!("../../lua/cases/take.json")),
    ("mend.lua", include_str!("../../lua/cases/mend.json")),
    ("room.lua", include_str!("../../lua/cases/room.json")),
];

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    given: BTreeMap<String, Json>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize, Clone)]
struct Case {
    name: String,
    #[serde(default)]
    given: BTreeMap<String, Json>,
    steps: Vec<Json>,
    #[serde(default)]
    then: BTreeMap<String, Json>,
}

/// One case's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub script: String,
    pub case: String,
    /// What differed; empty when the case passed.
    pub failures: Vec<String>,
}

/// Every case's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.failures.is_empty())
    }

    pub fn failed(&self) -> Vec<&CaseResult> {
        self.cases
            .iter()
            .filter(|c| !c.failures.is_empty())
            .collect()
    }

    /// One line a case, and what differed under a failed one.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let verdict = if c.failures.is_empty() {
                "ok  "
            } else {
                "FAIL"
            };
            out.push_str(&format!("{verdict} {:<15} {}\n", c.script, c.case));
            for f in &c.failures {
                out.push_str(&format!("       {f}\n"));
            }
        }
        let failed = self.failed().len();
        out.push_str(&format!(
            "{} cases, {} passed, {failed} failed\n",
            self.cases.len(),
            self.cases.len() - failed
        ));
        out
    }
}

/// Checks a complete set of files: its contracts against this edge's, that each script
/// compiles (as a script and as a function of a library), then every case. A set-level fault
/// is an error; a case that fails is in the report.
pub async fn run(con: &mut RedisConn, files: &Files) -> Result<Report, SetError> {
    check_contracts(files)?;
    compile(con, files).await?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let mut results = Vec::new();
    let mut n = 0;
    for (script, text) in CASES {
        let file: CaseFile = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("lua/cases for {script} do not parse: {e}"));
        for case in &file.cases {
            n += 1;
            let mut failures = Vec::new();
            let batched = script == "admit.lua"
                && case.steps.iter().any(|s| {
                    s.get("shoppers")
                        .and_then(Json::as_array)
                        .is_some_and(|a| a.len() > 1)
                });
            let ns = format!("fgcheck:{{{run}-{n}}}:");
            let first = Runner::new(con, files, script, &file, &ns, false)
                .go(case, &mut failures)
                .await;
            if batched {
                let ns1 = format!("fgcheck:{{{run}-{n}s}}:");
                let mut singles = Vec::new();
                let second = Runner::new(con, files, script, &file, &ns1, true)
                    .go(case, &mut singles)
                    .await;
                failures.extend(singles.into_iter().map(|f| format!("one by one: {f}")));
                if let (Some(a), Some(b)) = (&first, &second) {
                    for (key, va) in a {
                        let vb = b.get(key);
                        if Some(va) != vb {
                            failures.push(format!(
                                "{key}: in one call {va}, one by one {}",
                                vb.map(String::as_str).unwrap_or("absent")
                            ));
                        }
                    }
                }
            }
            results.push(CaseResult {
                script: script.to_string(),
                case: case.name.clone(),
                failures,
            });
        }
    }
    Ok(Report { cases: results })
}

/// Each script compiles as a script (`SCRIPT LOAD`, naming the script that does not) and the
/// set as a library of functions (loaded under a scratch name, then deleted).
async fn compile(con: &mut RedisConn, files: &Files) -> Result<(), SetError> {
    let codes = files.get(CODES.0).cloned().unwrap_or_default();
    for (name, text) in files.iter().filter(|(n, _)| n.as_str() != CODES.0) {
        let r: redis::RedisResult<String> = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(format!("{codes}\n{text}"))
            .query_async(con)
            .await;
        if let Err(e) = r {
            return Err(SetError::Contract(format!(
                "{name} does not compile: {}",
                e.detail().unwrap_or(&e.to_string())
            )));
        }
    }
    let lib = format!(
        "fgcheck_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let r: redis::RedisResult<Value> = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library_text(&lib, files))
        .query_async(con)
        .await;
    if let Err(e) = r {
        return Err(SetError::Contract(format!(
            "the set does not load as a library of functions: {}",
            e.detail().unwrap_or(&e.to_string())
        )));
    }
    let _: redis::RedisResult<Value> = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(&lib)
        .query_async(con)
        .await;
    Ok(())
}

/// The wrapped text a case calls: the code table, a `redis` that records each command, the
/// script as a function, and `{reply, commands}` back.
fn observed(codes: &str, body: &str) -> String {
    format!(
        "{codes}\nlocal __fg_redis = redis\nlocal __fg_log = {{}}\n\
         local redis = setmetatable({{\n\
           call = function(...) __fg_log[#__fg_log + 1] = {{...}}; return __fg_redis.call(...) end,\n\
           pcall = function(...) __fg_log[#__fg_log + 1] = {{...}}; return __fg_redis.pcall(...) end,\n\
         }}, {{__index = __fg_redis}})\n\
         local __fg_reply = (function()\n{body}\nend)()\n\
         return {{__fg_reply, __fg_log}}\n"
    )
}

/// A key's state, read back to compare.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Absent,
    Str(String),
    Hash(BTreeMap<String, String>),
    Set(BTreeSet<String>),
    Zset(Vec<(String, f64)>),
    /// Shoppers as entries hold them: user, request, time, quantity, key (`1` and `-` when the
    /// entry has no `q`/`k`, as a keyless single unit's and an older version's have not).
    Queue(Vec<(String, String, String, String, String)>),
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Absent => write!(f, "absent"),
            State::Str(s) => write!(f, "{s:?}"),
            State::Hash(h) => write!(f, "hash {h:?}"),
            State::Set(s) => write!(f, "set {s:?}"),
            State::Zset(z) => write!(f, "zset {z:?}"),
            State::Queue(q) => write!(f, "queue {q:?}"),
        }
    }
}

/// What a case expects of a key: a state (with `*` wildcards) and whether it has a TTL.
#[derive(Debug, Clone)]
struct Spec {
    state: State,
    ttl_ms: Option<i64>,
    has_ttl: Option<bool>,
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn spec(v: &Json) -> Result<Spec, String> {
    let mut s = Spec {
        state: State::Absent,
        ttl_ms: None,
        has_ttl: None,
    };
    match v {
        Json::Null => {}
        Json::String(_) | Json::Number(_) => s.state = State::Str(text(v)),
        Json::Object(o) => {
            s.ttl_ms = o.get("ttl_ms").and_then(Json::as_i64);
            s.has_ttl = o.get("ttl").and_then(Json::as_bool);
            s.state = if let Some(x) = o.get("string") {
                State::Str(text(x))
            } else if let Some(Json::Object(h)) = o.get("hash") {
                State::Hash(h.iter().map(|(k, v)| (k.clone(), text(v))).collect())
            } else if let Some(Json::Array(m)) = o.get("set") {
                State::Set(m.iter().map(text).collect())
            } else if let Some(Json::Array(m)) = o.get("zset") {
                let mut z = Vec::new();
                for pair in m {
                    let p = pair.as_array().ok_or("a zset member is [member, score]")?;
                    let score = p.get(1).and_then(Json::as_f64).ok_or("a zset score")?;
                    z.push((text(&p[0]), score));
                }
                State::Zset(z)
            } else if let Some(Json::Array(m)) = o.get("queue") {
                let mut q = Vec::new();
                for e in m {
                    let e = e
                        .as_array()
                        .ok_or("a queue shopper is [user, request, time, quantity?, key?]")?;
                    let f = |i: usize, or: &str| e.get(i).map(text).unwrap_or_else(|| or.into());
                    q.push((f(0, ""), f(1, ""), f(2, ""), f(3, "1"), f(4, "-")));
                }
                State::Queue(q)
            } else {
                return Err(format!("a value the suite does not know: {v}"));
            };
        }
        other => return Err(format!("a value the suite does not know: {other}")),
    }
    Ok(s)
}

fn wild_eq(want: &str, got: &str) -> bool {
    want == "*" || want == got
}

fn matches(want: &State, got: &State) -> bool {
    match (want, got) {
        (State::Str(w), State::Str(g)) => wild_eq(w, g),
        (State::Hash(w), State::Hash(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| wild_eq(v, gv)))
        }
        (State::Queue(w), State::Queue(g)) => {
            w.len() == g.len()
                && w.iter().zip(g).all(|(a, b)| {
                    wild_eq(&a.0, &b.0)
                        && wild_eq(&a.1, &b.1)
                        && wild_eq(&a.2, &b.2)
                        && wild_eq(&a.3, &b.3)
                        && wild_eq(&a.4, &b.4)
                })
        }
        (w, g) => w == g,
    }
}

/// Runs one case's steps in one namespace.
struct Runner<'a> {
    con: &'a mut RedisConn,
    files: &'a Files,
    script: &'a str,
    file: &'a CaseFile,
    ns: String,
    /// admit.lua's steps split into one call a shopper
    one_by_one: bool,
    /// every key name the case has used
    names: BTreeSet<String>,
    /// what `given` last wrote, per key name
    given: BTreeMap<String, Json>,
}

impl<'a> Runner<'a> {
    fn new(
        con: &'a mut RedisConn,
        files: &'a Files,
        script: &'a str,
        file: &'a CaseFile,
        ns: &str,
        one_by_one: bool,
    ) -> Self {
        Self {
            con,
            files,
            script,
            file,
            ns: ns.to_string(),
            one_by_one,
            names: BTreeSet::new(),
            given: BTreeMap::new(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.ns)
    }

    /// Runs the case, noting what differed; answers the keys afterwards (name -> state and TTL)
    /// unless the case could not run.
    async fn go(
        mut self,
        case: &Case,
        failures: &mut Vec<String>,
    ) -> Option<BTreeMap<String, String>> {
        let out = self.steps(case, failures).await;
        let dump = match out {
            Ok(()) => self.check_then(case, failures).await.ok(),
            Err(e) => {
                failures.push(e);
                None
            }
        };
        let keys: Vec<String> = self.names.iter().map(|n| self.key(n)).collect();
        for k in keys {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(k).query_async(self.con).await;
        }
        dump
    }

    async fn steps(&mut self, case: &Case, failures: &mut Vec<String>) -> Result<(), String> {
        self.write(&self.file.given.clone()).await?;
        self.write(&case.given.clone()).await?;
        for (i, step) in case.steps.iter().enumerate() {
            let at = format!("step {}", i + 1);
            if let Some(Json::Object(g)) = step.get("given") {
                let g: BTreeMap<String, Json> =
                    g.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                self.write(&g).await?;
            } else if step.get("shoppers").is_some() {
                self.admit_step(step, &at, failures).await?;
            } else {
                let keys: Vec<String> = match step.get("keys").and_then(Json::as_array) {
                    Some(k) => k.iter().map(text).collect(),
                    None => self.file.keys.clone(),
                };
                let args: Vec<String> = step
                    .get("args")
                    .and_then(Json::as_array)
                    .map(|a| a.iter().map(text).collect())
                    .unwrap_or_default();
                let reply = self.call(&keys, &args).await?;
                let want = step.get("reply").cloned().unwrap_or(Json::Null);
                if !reply_matches(&want, &reply) {
                    failures.push(format!("{at}: expected {}, got {}", want, show(&reply)));
                }
            }
        }
        Ok(())
    }

    /// An admit.lua step: its shoppers in one call (or one call each), each outcome checked.
    async fn admit_step(
        &mut self,
        step: &Json,
        at: &str,
        failures: &mut Vec<String>,
    ) -> Result<(), String> {
        let now = step.get("now").map(text).unwrap_or_default();
        let shoppers: Vec<Vec<String>> = step["shoppers"]
            .as_array()
            .ok_or("shoppers: a list")?
            .iter()
            .map(|s| s.as_array().map(|a| a.iter().map(text).collect()))
            .collect::<Option<_>>()
            .ok_or("a shopper is [user, path, again?, quantity?, key?]")?;
        let expect = step
            .get("expect")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        let groups: Vec<&[Vec<String>]> = if self.one_by_one {
            shoppers.chunks(1).collect()
        } else {
            vec![&shoppers[..]]
        };
        let mut got: Vec<(i64, Value)> = Vec::new();
        for group in groups {
            let mut keys: Vec<String> = self.file.keys.clone();
            let mut args = vec![now.clone()];
            for s in group {
                let user = s.first().cloned().unwrap_or_default();
                keys.push(format!("user:{user}"));
                args.extend([
                    user.clone(),
                    s.get(1).cloned().unwrap_or_default(),
                    format!("req-{user}"),
                    s.get(2).cloned().unwrap_or_default(),
                    s.get(3).cloned().unwrap_or_else(|| "1".into()),
                    s.get(4).cloned().unwrap_or_default(),
                ]);
            }
            let reply = self.call(&keys, &args).await?;
            let Value::Array(items) = reply else {
                return Err(format!("{at}: admit.lua answered {}", show(&reply)));
            };
            if items.len() != 1 + 2 * group.len() {
                return Err(format!(
                    "{at}: admit.lua answered {} elements for {} shoppers",
                    items.len(),
                    group.len()
                ));
            }
            let entry = match &items[0] {
                Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
                other => show(other),
            };
            let mut queued = false;
            for pair in items[1..].chunks(2) {
                let code = match pair[0] {
                    Value::Int(c) => c,
                    _ => -1,
                };
                queued |= code == Code::Ok as i64;
                got.push((code, pair[1].clone()));
            }
            if queued == entry.is_empty() {
                failures.push(format!(
                    "{at}: the entry id is {entry:?} though {} shopper was admitted",
                    if queued { "a" } else { "no" }
                ));
            }
        }
        for (i, (code, detail)) in got.iter().enumerate() {
            let want = expect.get(i).cloned().unwrap_or(Json::Null);
            let (wcode, wdetail) = match &want {
                Json::Array(a) => (a.first().cloned().unwrap_or(Json::Null), a.get(1).cloned()),
                other => (other.clone(), Some(Json::from(0))),
            };
            let ok = reply_matches(&wcode, &Value::Int(*code))
                && wdetail.is_none_or(|d| reply_matches(&d, detail));
            if !ok {
                failures.push(format!(
                    "{at}, shopper {} (user {}): expected {}, got {}",
                    i + 1,
                    shoppers
                        .get(i)
                        .and_then(|s| s.first())
                        .cloned()
                        .unwrap_or_default(),
                    want,
                    show_outcome(*code, detail)
                ));
            }
        }
        if expect.len() != got.len() {
            failures.push(format!(
                "{at}: the case expects {} outcomes for {} shoppers",
                expect.len(),
                got.len()
            ));
        }
        Ok(())
    }

    /// One observed call of the script: its reply, after checking every key it touched.
    async fn call(&mut self, names: &[String], args: &[String]) -> Result<Value, String> {
        self.names.extend(names.iter().cloned());
        let keys: Vec<String> = names.iter().map(|n| self.key(n)).collect();
        let codes = self.files.get(CODES.0).cloned().unwrap_or_default();
        let body = self.files.get(self.script).cloned().unwrap_or_default();
        let reply: Value = redis::cmd("EVAL")
            .arg(observed(&codes, &body))
            .arg(keys.len())
            .arg(&keys)
            .arg(args)
            .query_async(self.con)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("non local key") || text.contains("CROSSSLOT") {
                    // on a cluster, a key in another slot is refused before the suite sees it
                    format!(
                        "{} touched a key it was not given (the cluster refused it: {text})",
                        self.script
                    )
                } else {
                    format!("{} raised an error: {text}", self.script)
                }
            })?;
        let Value::Array(mut both) = reply else {
            return Err(format!("{} answered {}", self.script, show(&reply)));
        };
        let log = both.pop().unwrap_or(Value::Nil);
        let reply = both.pop().unwrap_or(Value::Nil);
        let Value::Array(commands) = log else {
            return Ok(reply);
        };
        for c in commands {
            let Value::Array(parts) = c else { continue };
            let mut getkeys = redis::cmd("COMMAND");
            getkeys.arg("GETKEYS");
            for p in &parts {
                match p {
                    Value::BulkString(b) => getkeys.arg(b.as_slice()),
                    Value::Int(n) => getkeys.arg(*n),
                    other => getkeys.arg(show(other)),
                };
            }
            // a command with no key (TIME, PUBLISH) is answered with an error: no keys
            let touched: Vec<String> = getkeys.query_async(self.con).await.unwrap_or_default();
            for k in touched {
                if !keys.contains(&k) {
                    return Err(format!(
                        "{} touched {k}, a key it was not given (on a Redis Cluster it could not run): {}",
                        self.script,
                        show(&Value::Array(parts.clone()))
                    ));
                }
            }
        }
        Ok(reply)
    }

    /// A value as written: `{"fields": {…}}` is the hash `given` last wrote to this key with
    /// these fields set.
    fn resolve(&self, name: &str, v: &Json) -> Result<Json, String> {
        let Some(fields) = v.get("fields").and_then(Json::as_object) else {
            return Ok(v.clone());
        };
        let mut base = match self.given.get(name).and_then(|g| g.get("hash")) {
            Some(Json::Object(h)) => h.clone(),
            _ => return Err(format!("{name}: `fields` needs a hash given before")),
        };
        for (k, val) in fields {
            base.insert(k.clone(), val.clone());
        }
        Ok(serde_json::json!({ "hash": base }))
    }

    async fn write(&mut self, given: &BTreeMap<String, Json>) -> Result<(), String> {
        for (name, v) in given {
            let v = &self.resolve(name, v)?;
            self.names.insert(name.clone());
            self.given.insert(name.clone(), v.clone());
            let key = self.key(name);
            let s = spec(v).map_err(|e| format!("given {name}: {e}"))?;
            let mut p = redis::pipe();
            p.del(&key).ignore();
            match &s.state {
                State::Absent => {}
                State::Str(x) => {
                    p.set(&key, x).ignore();
                }
                State::Hash(h) => {
                    let pairs: Vec<(&String, &String)> = h.iter().collect();
                    p.hset_multiple(&key, &pairs).ignore();
                }
                State::Set(m) => {
                    p.sadd(&key, m.iter().collect::<Vec<_>>()).ignore();
                }
                State::Zset(z) => {
                    for (m, score) in z {
                        p.zadd(&key, m, *score).ignore();
                    }
                }
                State::Queue(q) => {
                    for (u, r, t, n, k) in q {
                        if n == "1" && k == "-" {
                            p.xadd(&key, "*", &[("u", u), ("r", r), ("t", t)]).ignore();
                        } else {
                            let fields = [("u", u), ("r", r), ("t", t), ("q", n), ("k", k)];
                            p.xadd(&key, "*", &fields).ignore();
                        }
                    }
                }
            }
            if let (Some(ms), false) = (s.ttl_ms, s.state == State::Absent) {
                p.pexpire(&key, ms).ignore();
            }
            p.query_async::<()>(self.con)
                .await
                .map_err(|e| format!("writing {name}: {e}"))?;
        }
        Ok(())
    }

    async fn read(&mut self, name: &str) -> Result<(State, bool), String> {
        let key = self.key(name);
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(self.con)
            .await
            .map_err(|e| e.to_string())?;
        let c = &mut *self.con;
        let err = |e: redis::RedisError| e.to_string();
        let state = match kind.as_str() {
            "none" => State::Absent,
            "string" => State::Str(
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(c)
                    .await
                    .map_err(err)?,
            ),
            "hash" => State::Hash(
                redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(c)
                    .await
                    .map_err(err)?,
            ),
            "set" => State::Set(
                redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(c)
                    .await
                    .map_err(err)?,
            ),
            "zset" => State::Zset(
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(c)
                    .await
                    .map_err(err)?,
            ),
            "stream" => {
                let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&key)
                    .arg("-")
                    .arg("+")
                    .query_async(c)
                    .await
                    .map_err(err)?;
                let mut q = Vec::new();
                for e in &r.ids {
                    let f = |n: &str| e.get::<String>(n).unwrap_or_default();
                    let (u, r, t, n, k) = (f("u"), f("r"), f("t"), f("q"), f("k"));
                    let us: Vec<&str> = u.split(',').collect();
                    let rs: Vec<&str> = r.split(',').collect();
                    let ns: Vec<&str> = n.split(',').collect();
                    let ks: Vec<&str> = k.split(',').collect();
                    for (i, u) in us.iter().enumerate() {
                        let r = rs.get(i).copied().unwrap_or("");
                        let n = ns.get(i).copied().filter(|n| !n.is_empty()).unwrap_or("1");
                        let k = ks.get(i).copied().filter(|k| !k.is_empty()).unwrap_or("-");
                        let (n, k) = (n.to_string(), k.to_string());
                        q.push((u.to_string(), r.to_string(), t.clone(), n, k));
                    }
                }
                State::Queue(q)
            }
            other => {
                return Err(format!(
                    "{name} is a {other}, which the suite does not read"
                ));
            }
        };
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(c)
            .await
            .map_err(err)?;
        Ok((state, ttl > 0))
    }

    /// Every key the case knows, against `then` (or what `given` left, or absent).
    async fn check_then(
        &mut self,
        case: &Case,
        failures: &mut Vec<String>,
    ) -> Result<BTreeMap<String, String>, ()> {
        let mut dump = BTreeMap::new();
        let names: Vec<String> = self
            .names
            .iter()
            .cloned()
            .chain(case.then.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in names {
            self.names.insert(name.clone());
            let (state, has_ttl) = match self.read(&name).await {
                Ok(x) => x,
                Err(e) => {
                    failures.push(e);
                    return Err(());
                }
            };
            dump.insert(name.clone(), format!("{state} ttl={has_ttl}"));
            let (want, why) = match (case.then.get(&name), self.given.get(&name)) {
                (Some(v), _) => (v.clone(), "then"),
                (None, Some(v)) => (v.clone(), "unchanged from given"),
                (None, None) => (Json::Null, "never written"),
            };
            let want = match self.resolve(&name, &want).and_then(|w| spec(&w)) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("then {name}: {e}"));
                    continue;
                }
            };
            if !matches(&want.state, &state) {
                failures.push(format!(
                    "afterwards {name} is {state}, expected {} ({why})",
                    want.state
                ));
            }
            let want_ttl = want
                .has_ttl
                .or(want.ttl_ms.map(|_| true))
                .filter(|_| want.state != State::Absent);
            if let Some(t) = want_ttl
                && t != has_ttl
            {
                failures.push(format!(
                    "afterwards {name} {} a TTL, expected {}",
                    if has_ttl { "has" } else { "has no" },
                    if t { "one" } else { "none" }
                ));
            }
        }
        Ok(dump)
    }
}

/// Whether a reply is what a case expects: numbers, strings, code names (as their numbers),
/// `"*"` for anything, arrays element by element, `null` for nil.
fn reply_matches(want: &Json, got: &Value) -> bool {
    match (want, got) {
        (Json::String(s), _) if s == "*" => true,
        (Json::Null, Value::Nil) => true,
        (Json::Number(n), Value::Int(g)) => n.as_i64() == Some(*g),
        (Json::String(s), Value::Int(g)) => code_number(s) == Some(*g),
        (Json::String(s), Value::BulkString(b)) => s.as_bytes() == b.as_slice(),
        (Json::String(s), Value::SimpleString(g)) => s == g,
        (Json::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(w, g)| reply_matches(w, g))
        }
        _ => false,
    }
}

fn code_number(name: &str) -> Option<i64> {
    Code::ALL
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(c, _)| *c as i64)
}

fn code_name(n: i64) -> String {
    Code::ALL
        .iter()
        .find(|(c, _)| *c as i64 == n)
        .map_or_else(|| n.to_string(), |(_, name)| name.to_string())
}

fn show_outcome(code: i64, detail: &Value) -> String {
    match detail {
        Value::Int(0) => code_name(code),
        d => format!("[{}, {}]", code_name(code), show(d)),
    }
}

/// A reply as the cases write it: code numbers stay numbers (their meaning depends on place).
fn show(v: &Value) -> String {
    match v {
        Value::Nil => "null".into(),
        Value::Int(n) => n.to_string(),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(", ")),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_file_parses_and_names_its_cases() {
        for (script, text) in CASES {
            let f: CaseFile =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{script}: {e}"));
            assert!(!f.cases.is_empty(), "{script}");
            let names: BTreeSet<&str> = f.cases.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names.len(), f.cases.len(), "{script}: case names repeat");
            for c in &f.cases {
                for v in c.given.values().chain(c.then.values()) {
                    if v.get("fields").is_some() {
                        continue;
                    }
                    spec(v).unwrap_or_else(|e| panic!("{script} / {}: {e}", c.name));
                }
            }
        }
    }

    #[test]
    fn replies_match_by_number_code_name_string_and_wildcard() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let got = Value::Array(vec![bulk("1-0"), Value::Int(5), Value::Int(0)]);
        assert!(reply_matches(
            &serde_json::json!(["*", "DUPLICATE", 0]),
            &got
        ));
        assert!(!reply_matches(
            &serde_json::json!(["*", "SOLD_OUT", 0]),
            &got
        ));
        assert!(!reply_matches(&serde_json::json!(["*", "DUPLICATE"]), &got));
        assert!(reply_matches(&serde_json::json!("p"), &bulk("p")));
        assert!(!reply_matches(&serde_json::json!(1), &bulk("1")));
    }
}
