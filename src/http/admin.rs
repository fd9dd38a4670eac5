//! The admin API, behind `Authorization: Bearer ADMIN_TOKEN` (disabled when no token is set):
//! resetting a sale for a repeat load test, and reloading the Lua scripts.

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::domain::GoodsId;
use crate::error::AppError;
use crate::sale::{self, Window};
use crate::state::AppState;

fn check_admin<B>(req: &Request<B>, state: &AppState) -> Result<(), AppError> {
    let want = state.settings.admin_token.as_bytes();
    let got = respond::token(req).unwrap_or_default().as_bytes();
    if want.is_empty() || !crate::password::constant_time_eq(want, got) {
        return Err(AppError::Forbidden);
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResetBody {
    /// Optionally a new window: starts this many seconds from now…
    starts_in: Option<i64>,
    /// …and lasts this long.
    lasts: Option<i64>,
}

/// `POST /api/admin/sales/{goodsId}/reset`, with an optional `{startsIn, lasts}` body.
pub async fn reset(req: Request<Incoming>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    let has_body = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0");
    let body: ResetBody = if has_body {
        respond::json_body(req).await?
    } else {
        ResetBody::default()
    };
    let window = match (body.starts_in, body.lasts) {
        (None, None) => None,
        (Some(s), Some(l)) if s >= 0 && l > 0 => Some(Window {
            starts_in_secs: s,
            lasts_secs: l,
        }),
        _ => {
            return Err(AppError::BadParam(
                "startsIn >= 0 and lasts > 0 go together".into(),
            ));
        }
    };
    sale::reset(state, goods, window).await?;
    Ok(respond::ok(()))
}

/// `POST /api/admin/scripts/reload`: re-reads `lua_dir` and answers each script's SHA-1.
pub async fn reload_scripts(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let set = state.scripts.reload()?;
    state.scripts.preload(&mut state.redis.clone()).await?;
    let shas: serde_json::Map<String, serde_json::Value> = set
        .all()
        .iter()
        .map(|s| (s.name.to_string(), s.sha.clone().into()))
        .collect();
    Ok(respond::ok(shas))
}
