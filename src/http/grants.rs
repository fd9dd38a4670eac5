//! The shop's side of the grant (`identity::grant`): flashgate's public keys, and redeeming a
//! grant once.
//!
//! - `GET /.well-known/jwks.json` (public): the grant keys as a JWK Set, so the shop verifies
//!   grants offline; 404 while grants are off.
//! - `POST /api/grants/redeem` `{grant}` (admin listener; `Authorization: Bearer` the
//!   `grant_redeem_token`, or the admin token when that is empty): verifies the grant and marks
//!   its `jti` spent in one `SET NX`, answering the claims the first time and 409 after.

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::error::{AppError, GrantFault};
use crate::plumbing::keys;
use crate::state::AppState;

pub fn keys(state: &AppState) -> Result<Resp, AppError> {
    let grants = state.identity.grants.as_ref().ok_or(AppError::NotFound)?;
    let body = serde_json::to_vec(&grants.jwks()).map_err(anyhow::Error::from)?;
    let mut resp = hyper::Response::new(super::body::Body::full(body));
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/jwk-set+json"),
    );
    // shops may cache it briefly; a rotation publishes the new key before it signs
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("public, max-age=60"),
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Redeem {
    grant: String,
}

pub async fn redeem(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    let want = match state.settings.grant_redeem_token.as_str() {
        "" => state.settings.admin_token.as_bytes(),
        t => t.as_bytes(),
    };
    let got = respond::token(&req).unwrap_or_default().as_bytes();
    if want.is_empty() || !crate::accounts::password::constant_time_eq(want, got) {
        return Err(AppError::Forbidden);
    }
    let grants = state.identity.grants.clone().ok_or(AppError::NotFound)?;
    let Redeem { grant } = respond::json_body(req).await?;
    let claims = grants.verify(&grant).map_err(|f| {
        state.metrics.grants_refused.inc();
        AppError::Grant(f)
    })?;
    let first: bool = redis::cmd("SET")
        .arg(state.keys.grant_spent(&claims.jti))
        .arg(claims.exp)
        .arg("NX")
        .arg("EX")
        .arg(keys::GRANT_SPENT_TTL.as_secs())
        .query_async::<Option<String>>(&mut state.redis.clone())
        .await?
        .is_some();
    if !first {
        state.metrics.grants_refused.inc();
        return Err(AppError::Grant(GrantFault::Spent));
    }
    state.metrics.grants_redeemed.inc();
    Ok(respond::ok(claims))
}
