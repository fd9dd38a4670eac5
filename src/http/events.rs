//! `GET /api/seckill/events?goodsId=`: the shopper's live updates as Server-Sent Events
//! (`text/event-stream`), served by the push hub (`admission::push`).
//!
//! Everything that can be refused is refused before the stream starts, with the usual status and
//! envelope: no session (401), no such sale (404), the edge's stream cap reached (503, code
//! 500510: the page polls instead). A stream starts with the shopper's state now (their ticket,
//! for a sale with a waiting room; their result, if one is written), so a page that reconnects
//! (browsers do by themselves, a second after a break) loses nothing it needs.

use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use redis::AsyncCommands;

use super::body::{Body, Events};
use super::respond::{self, Resp};
use crate::admission::room::View;
use crate::admission::scripts::RoomAnswer;
use crate::domain::{GoodsId, Shard};
use crate::error::AppError;
use crate::identity::Granter;
use crate::state::AppState;

pub async fn open<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    let user = respond::user(&req, state).await?;
    let shape = state.shape(goods).await?;
    if !shape.loaded {
        return Err(AppError::NotFound);
    }
    let mut first = Vec::new();
    let room = match shape.room {
        true => {
            let answer = state.room.call(goods, shape, user.id, false).await?;
            if answer == RoomAnswer::NoSale {
                return Err(AppError::NotFound);
            }
            let view = serde_json::to_string(&View::from(answer.clone()))
                .map_err(|e| AppError::Internal(e.into()))?;
            first.push(("room", view));
            Some(answer)
        }
        false => None,
    };
    let home = state.keys.shard(Shard::home(goods, user.id, shape.shards));
    let result: Option<String> = state.redis.clone().get(home.result(user.id)).await?;
    let result = result.as_deref().and_then(crate::domain::BuyResult::decode);
    let granter = state
        .identity
        .granter(
            &state.db,
            &state.metrics,
            &user.shop_subject(),
            user.id,
            goods,
        )
        .await?;
    if let Some(r) = result {
        first.push(("result", Granter::result_event(granter.as_ref(), r)));
    }
    let address = crate::http::proxy::counted(respond::client_address(&req, state));
    let opened = state
        .push
        .open(goods, shape.shards, user.id, address, granter, room, first)?;
    let mut resp = Response::new(Body::Events(Events::new(opened.events, opened.on_end)));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx: pass each event on as it comes (deploy/nginx turns buffering off here too)
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}
