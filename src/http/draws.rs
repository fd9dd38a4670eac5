//! Draw sales' routes (`crate::draws`, docs/draws.md): the proof-of-work challenge, the entry,
//! the draw as a shopper sees it, and the publication anyone can check.
//!
//! An entry costs the edge one hash and one HMAC (the proof) and Redis one script call, which
//! spends the proof and records the entry together; a bad proof never reaches Redis.

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};

use super::respond::{self, Resp};
use crate::domain::GoodsId;
use crate::draws::{proof, record};
use crate::error::{AppError, DrawFault};
use crate::plumbing::clock::now_ms;
use crate::state::AppState;

/// The most bytes of an entry's body (a proof is ~300 characters).
const MAX_ENTRY_BODY: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The solved challenge: base64 of the ALTCHA solution's JSON.
    #[serde(default)]
    proof: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    /// The entry's number (1 for the sale's first).
    entry: i64,
    /// This account had entered before: this is its first entry.
    again: bool,
}

fn address_of<B>(req: &Request<B>, state: &AppState, row: &record::DrawRow) -> String {
    proof::address_digest(&row.secret(), respond::client_address(req, state))
}

/// The work an entry from `address` must do now: raised for an address that brought many.
async fn work_for(state: &AppState, goods: GoodsId, address: &str) -> Result<u64, AppError> {
    let brought: Option<u64> = redis::cmd("HGET")
        .arg(state.keys.sale(goods).draw_addresses())
        .arg(address)
        .query_async(&mut state.redis.clone())
        .await?;
    let s = &state.settings;
    Ok(proof::difficulty(
        s.draw_pow_max.max(1),
        s.draw_pow_per_address,
        brought.unwrap_or(0),
    ))
}

/// `GET /api/draws/{goodsId}/challenge`: a proof-of-work challenge for this sale and this
/// address, its work raised for an address that brought many entries.
pub async fn challenge<B>(
    req: Request<B>,
    state: &AppState,
    goods: &str,
) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(goods)?;
    let row = state.draws.row(&state.db, goods).await?;
    let address = address_of(&req, state, &row);
    let max = work_for(state, goods, &address).await?;
    let scope = proof::Scope {
        goods: goods.get(),
        address: &address,
    };
    let mut resp = respond::ok(proof::issue(&row.secret(), scope, max, now_ms()));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `POST /api/draws/{goodsId}/entries` `{proof}`: enters the signed-in shopper (one entry per
/// account: a second is answered with the first).
pub async fn enter(
    req: Request<Incoming>,
    state: &AppState,
    goods: &str,
) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(goods)?;
    let credential = respond::credential(&req, state);
    let row = state.draws.row(&state.db, goods).await?;
    let address = address_of(&req, state, &row);
    let Entry { proof: given } = respond::json_body_up_to(req, MAX_ENTRY_BODY).await?;
    let user = respond::user_of(&credential?, state).await?;
    let now = now_ms();
    if now < row.from_ms() {
        return Err(AppError::Draw(DrawFault::NotOpen));
    }
    if now >= row.until_ms() || row.drawn_at.is_some() || row.cancelled_at.is_some() {
        return Err(AppError::Draw(DrawFault::Closed));
    }
    let scope = proof::Scope {
        goods: goods.get(),
        address: &address,
    };
    let (challenge, expires, work) =
        proof::verify(&row.secret(), &given, scope, now).map_err(|f| {
            AppError::Draw(match f {
                proof::Fault::Malformed => DrawFault::ProofMalformed,
                proof::Fault::Forged => DrawFault::ProofForged,
                proof::Fault::Expired => DrawFault::ProofExpired,
                proof::Fault::Elsewhere => DrawFault::ProofElsewhere,
            })
        })?;
    // a challenge fetched before the address brought its many entries carries the work of then:
    // it must carry the work the address owes now (challenges fetched ahead are no way around).
    // This read refuses early, with no write; lua/draw_enter.lua decides, counting the address
    // in the same call that records the entry, so proofs sent together are not all priced at
    // the count before any of them (an outside attack entered 60 at once at the base work).
    // A proof spent already is told as a replay first.
    if work < work_for(state, goods, &address).await? {
        let spent: bool = redis::AsyncCommands::exists(
            &mut state.redis.clone(),
            state.keys.sale(goods).draw_spent(&challenge),
        )
        .await?;
        return Err(AppError::Draw(match spent {
            true => DrawFault::ProofReplayed,
            false => DrawFault::ProofTooEasy,
        }));
    }
    let entered = record::enter(
        &mut state.redis.clone(),
        &state.keys,
        goods,
        user.id,
        &address,
        &challenge,
        expires - now,
        record::Work {
            given: work,
            base: state.settings.draw_pow_max.max(1),
            per_address: state.settings.draw_pow_per_address,
        },
    )
    .await?;
    Ok(respond::ok(EntryView {
        entry: entered.number,
        again: entered.again,
    }))
}

/// `GET /api/draws/{goodsId}`: the draw's phase, its entries, the commitment (and the seed once
/// drawn), and the signed-in shopper's own entry, place and claim.
pub async fn show<B>(req: Request<B>, state: &AppState, goods: &str) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(goods)?;
    let row = state.draws.row(&state.db, goods).await?;
    // signed in or not: the draw is public, the shopper's part only for them
    let user = match respond::credential(&req, state) {
        Ok(credential) => Some(respond::user_of(&credential, state).await?.id),
        Err(_) => None,
    };
    let places = match (user, row.drawn()) {
        (Some(_), true) => Some(state.draws.places(&state.redis, &state.keys, goods).await?),
        _ => None,
    };
    let view = record::view(
        &mut state.redis.clone(),
        &state.keys,
        &row,
        user,
        now_ms(),
        |u| places.as_ref().and_then(|p| p.get(&u.get()).copied()),
    )
    .await?;
    Ok(respond::ok(view))
}

/// `GET /api/draws/{goodsId}/published`: once drawn, every entry's digest and the winners, with
/// the seed and the commitment (`draws::order::Publication`): what `flashgate draw verify` and
/// docs/draws.md's Python lines check.
pub async fn published(state: &AppState, goods: &str) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(goods)?;
    let row = state.draws.row(&state.db, goods).await?;
    let json = state
        .draws
        .published(&state.redis, &state.keys, &row)
        .await?;
    let mut resp = hyper::Response::new(super::body::Body::full((*json).clone()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(resp)
}
