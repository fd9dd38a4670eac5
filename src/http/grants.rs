//! The shop's side of the grant (`identity::grant`): flashgate's public keys, and redeeming a
//! grant once.
//!
//! - `GET /.well-known/jwks.json` (public): the grant keys as a JWK Set, so the shop verifies
//!   grants offline; 404 while grants are off.
//! - `POST /api/grants/redeem` `{grant}` (admin listener; `Authorization: Bearer` the
//!   `grant_redeem_token`, never the admin token: the shop does not hold that): verifies the
//!   grant, checks it against the order of record (the order exists, is the grant's `sub`'s, is
//!   in its `sale` and is not closed: a genuine signature over a wrong order is still refused),
//!   and marks its `jti` spent in one `SET NX`, answering the claims the first time and 409 after.

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::domain::OrderStatus;
use crate::error::{AppError, GrantFault};
use crate::identity::grant::GrantClaims;
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

/// Whether `req` comes from the shop's server: `Authorization: Bearer` the
/// `grant_redeem_token` (redeem, and paying or closing an order on the admin listener).
pub fn check_shop<B>(req: &Request<B>, state: &AppState) -> Result<(), AppError> {
    respond::require_bearer(req, &state.settings.grant_redeem_token)
}

/// The grant's order as MySQL has it: it exists, is the grant's subject's (the shop's subject,
/// or flashgate's user id for a session shopper: `User::shop_subject`; compared byte for byte,
/// whatever the column's collation), is in its sale and is not closed. `Some` the fault, if not.
async fn order_fault(
    state: &AppState,
    claims: &GrantClaims,
) -> Result<Option<GrantFault>, AppError> {
    let row: Option<(i64, i64, OrderStatus, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT o.user_id, o.goods_id, o.status, u.subject FROM order_info o \
         LEFT JOIN users u ON u.id = o.user_id WHERE o.id = ?",
    )
    .bind(claims.order)
    .fetch_optional(&state.db)
    .await?;
    let Some((user, goods, status, subject)) = row else {
        return Ok(Some(GrantFault::NoSuchOrder));
    };
    let owner = subject.unwrap_or_else(|| user.to_string().into_bytes());
    if owner != claims.sub.as_bytes() || goods != claims.sale {
        return Ok(Some(GrantFault::NoSuchOrder));
    }
    Ok((status == OrderStatus::Closed).then_some(GrantFault::OrderClosed))
}

pub async fn redeem(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    check_shop(&req, state)?;
    let grants = state.identity.grants.clone().ok_or(AppError::NotFound)?;
    let Redeem { grant } = respond::json_body(req).await?;
    let refused = |f| {
        state.metrics.grants_refused.inc();
        AppError::Grant(f)
    };
    let claims = grants.verify(&grant).map_err(refused)?;
    if let Some(fault) = order_fault(state, &claims).await? {
        return Err(refused(fault));
    }
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
