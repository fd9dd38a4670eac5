//! The admin API, behind `Authorization: Bearer ADMIN_TOKEN` (disabled when no token is set),
//! served on the admin listener only: sale management (`crate::sales::manage`), the live view
//! (`crate::operators::live`), the per-second counts (`crate::operators::tally`), the audit (`crate::operators::audit`),
//! resetting a sale for a repeat load test. The Lua scripts' operations are in `http::scripts`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::domain::GoodsId;
use crate::error::AppError;
use crate::sales::store::{self, Window};
use crate::state::AppState;

pub(super) fn check_admin<B>(req: &Request<B>, state: &AppState) -> Result<(), AppError> {
    respond::require_bearer(req, &state.settings.admin_token)
}

/// The longest a reset may put a sale's start off, or make it last: a year (seconds); a sale's
/// times stay within the years `sales::manage` takes.
const MAX_WINDOW_SECS: i64 = 365 * 86_400;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResetBody {
    /// Optionally a new window: starts this many seconds from now…
    #[serde(default, deserialize_with = "crate::domain::present")]
    starts_in: Option<i64>,
    /// …and lasts this long.
    #[serde(default, deserialize_with = "crate::domain::present")]
    lasts: Option<i64>,
}

/// `POST /api/admin/sales/{goodsId}/reset`, with an optional `{startsIn, lasts}` body.
pub async fn reset(req: Request<Incoming>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    let body: ResetBody = respond::optional_json_body(req).await?;
    let window = match (body.starts_in, body.lasts) {
        (None, None) => None,
        (Some(s), Some(l))
            if (0..=MAX_WINDOW_SECS).contains(&s) && (1..=MAX_WINDOW_SECS).contains(&l) =>
        {
            Some(Window {
                starts_in_secs: s,
                lasts_secs: l,
            })
        }
        _ => {
            return Err(AppError::BadParam(format!(
                "startsIn (0 to {MAX_WINDOW_SECS}) and lasts (1 to {MAX_WINDOW_SECS}) go together"
            )));
        }
    };
    store::reset(&state.stores(), goods, window).await?;
    Ok(respond::ok(()))
}

/// `GET /api/admin/sales[?limit=N]`: every sale with its phase and live state, newest first
/// (at most `limit`, default 100).
pub async fn list<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let limit = respond::count_or(&req, "limit", 100, 1..=1000)?;
    Ok(respond::ok(
        crate::operators::live::list(&state.stores(), limit).await?,
    ))
}

/// `POST /api/admin/sales`: creates a sale; `201` with its view.
pub async fn create(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let spec: crate::sales::manage::SaleSpec = respond::json_body(req).await?;
    let goods = crate::sales::manage::create(&state.stores(), &spec).await?;
    let view = crate::operators::live::view(&state.stores(), goods).await?;
    Ok(respond::with_status(StatusCode::CREATED, view))
}

/// `GET /api/admin/sales/{id}`: one sale with its phase and live state, and how Redis stands
/// (`redis`: the primary, failovers seen, replica confirmation; see `ops::redis_health`).
pub async fn show<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    let view = crate::operators::live::view(&state.stores(), goods).await?;
    let mut body = serde_json::to_value(view).map_err(|e| AppError::Internal(e.into()))?;
    if let serde_json::Value::Object(o) = &mut body {
        let health = super::ops::redis_health(state).await;
        o.insert(
            "redis".into(),
            serde_json::to_value(health).map_err(|e| AppError::Internal(e.into()))?,
        );
        // orders out: each sink's state, when any is configured (the console flags a sink that
        // is failing, has parked events, or is disabled)
        if let Some(sinks) = super::ops::event_sinks(state).await {
            o.insert("eventSinks".into(), serde_json::json!(sinks));
        }
    }
    Ok(respond::ok(body))
}

/// `PATCH /api/admin/sales/{id}`: changes what the sale's phase allows; the view after.
pub async fn update(req: Request<Incoming>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    let patch: crate::sales::manage::SalePatch = respond::json_body(req).await?;
    crate::sales::manage::update(&state.stores(), goods, &patch).await?;
    Ok(respond::ok(
        crate::operators::live::view(&state.stores(), goods).await?,
    ))
}

/// `POST /api/admin/sales/{id}/cancel`: stops the sale on every edge; the view after.
pub async fn cancel<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    respond::require_json(&req)?;
    let goods = GoodsId::parse(id)?;
    crate::sales::manage::cancel(&state.stores(), goods).await?;
    Ok(respond::ok(
        crate::operators::live::view(&state.stores(), goods).await?,
    ))
}

/// `GET /api/admin/sales/{id}/audit`: the audit's report (`crate::operators::audit`); it changes nothing.
pub async fn audit<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    Ok(respond::ok(
        crate::operators::audit::audit(&state.stores(), goods).await?,
    ))
}

/// `GET /api/admin/sales/{id}/series[?seconds=N]`: the last N seconds (default 300, at most
/// 3600) of admissions by outcome and orders written, one number per second.
pub async fn series<B>(req: Request<B>, state: &AppState, id: &str) -> Result<Resp, AppError> {
    check_admin(&req, state)?;
    let goods = GoodsId::parse(id)?;
    let seconds = respond::count_or(&req, "seconds", 300, 1..=3600)?;
    let con = &mut state.redis.clone();
    Ok(respond::ok(
        crate::operators::tally::read(con, &state.keys, goods, seconds).await?,
    ))
}
