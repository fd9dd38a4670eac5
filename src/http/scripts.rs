//! The admin API for the Lua scripts: what `flashgate lua …` does, for the console's Scripts
//! view and for tools (`admission::script_release` does the work; this maps it to HTTP).

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;

use super::admin::check_admin;
use super::respond::{self, Resp};
use crate::admission::script_release::{self as rel, ReleaseError};
use crate::admission::{script_check, scripts};
use crate::error::AppError;
use crate::state::AppState;

/// The largest release body: a set's files are tens of KiB.
const MAX_RELEASE_BODY: usize = 1024 * 1024;

impl From<ReleaseError> for AppError {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::Redis(e) => e.into(),
            ReleaseError::Other(m) => AppError::Internal(anyhow::anyhow!(m)),
            e => AppError::BadParam(format!("{e}; nothing was changed")),
        }
    }
}

/// `POST /api/admin/scripts/reload`: re-reads `lua_dir` and answers each script's SHA-1.
pub async fn reload<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    respond::require_json(&req)?;
    let set = state.scripts.reload()?;
    state.scripts.preload(&mut state.redis.clone()).await?;
    let shas: serde_json::Map<String, serde_json::Value> = set
        .all()
        .iter()
        .map(|s| (s.name.to_string(), s.sha.clone().into()))
        .collect();
    Ok(respond::ok(shas))
}

/// `GET /api/admin/lua`: versions, live and canary, per-version counts, every edge's report.
pub async fn status<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let builtin = state.scripts.builtin().hash.clone();
    let st = rel::status(&mut state.redis.clone(), &state.keys, &builtin).await?;
    Ok(respond::ok(st))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    /// The set's files by name; left out: the shipped set.
    #[serde(default, deserialize_with = "crate::domain::present")]
    files: Option<scripts::Files>,
}

fn complete(files: scripts::Files) -> Result<scripts::Files, AppError> {
    for name in scripts::file_names() {
        if !files.contains_key(name) {
            return Err(scripts::SetError::Missing(
                name.to_string(),
                scripts::file_names().join(", "),
            )
            .into());
        }
    }
    if let Some(extra) = files
        .keys()
        .find(|k| !scripts::file_names().contains(&k.as_str()))
    {
        return Err(AppError::BadParam(format!(
            "{extra} is not a file of the set ({})",
            scripts::file_names().join(", ")
        )));
    }
    Ok(files)
}

impl From<scripts::SetError> for AppError {
    fn from(e: scripts::SetError) -> Self {
        AppError::BadParam(e.to_string())
    }
}

/// `POST /api/admin/lua/check`: the contract suite's report for the given set (or the shipped
/// one); a set-level fault (a missing file, a contract that differs, a script that does not
/// compile) is a 400.
pub async fn check(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let body: CheckBody = respond::json_body_up_to(req, MAX_RELEASE_BODY).await?;
    let files = match body.files {
        Some(f) => complete(f)?,
        None => scripts::builtin_files(None)?,
    };
    let report = script_check::run(&mut state.redis.clone(), &files).await?;
    Ok(respond::ok(serde_json::json!({
        "passed": report.passed(),
        "cases": report.cases,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    files: scripts::Files,
    #[serde(default)]
    note: String,
    /// 1-99: the share of admission calls the new version decides until promoted
    canary: Option<i64>,
}

/// `POST /api/admin/lua/releases`: releases a set that passes every case (400 naming the
/// failing cases otherwise).
pub async fn release(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let body: ReleaseBody = respond::json_body_up_to(req, MAX_RELEASE_BODY).await?;
    let files = complete(body.files)?;
    let r = rel::release(
        &mut state.redis.clone(),
        &state.keys,
        files,
        &body.note,
        body.canary,
    )
    .await?;
    Ok(respond::ok(serde_json::json!({
        "version": r.version,
        "hash": r.hash,
        "canary": r.canary,
    })))
}

/// `POST /api/admin/lua/promote`: the canary becomes the live version.
pub async fn promote<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    respond::require_json(&req)?;
    Ok(respond::ok(
        rel::promote(&mut state.redis.clone(), &state.keys).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default, deserialize_with = "crate::domain::present")]
    version: Option<u64>,
}

/// `POST /api/admin/lua/rollback` (`{"version": N}` optional): back to the previous version.
pub async fn rollback(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let body: RollbackBody = respond::optional_json_body(req).await?;
    Ok(respond::ok(
        rel::rollback(&mut state.redis.clone(), &state.keys, body.version).await?,
    ))
}
