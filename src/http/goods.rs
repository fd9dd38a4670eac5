//! `GET /api/goods` and `GET /api/goods/{id}`: the catalogue, through [`crate::sales::catalogue`].

use super::respond::{self, Resp};
use crate::domain::GoodsId;
use crate::error::AppError;
use crate::sales::catalogue;
use crate::state::AppState;

/// The sales running or coming; `?past=N` instead: page N of the sales that are over.
pub async fn list<B>(req: &hyper::Request<B>, state: &AppState) -> Result<Resp, AppError> {
    match respond::query(req, "past") {
        None => Ok(respond::ok(catalogue::list(state).await?)),
        Some(_) => {
            let page = respond::count_or(req, "past", 1, 1..=10_000)?;
            Ok(respond::ok(catalogue::past(state, page).await?))
        }
    }
}

pub async fn detail(state: &AppState, id: &str) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(id)?;
    Ok(respond::ok(catalogue::detail(state, goods).await?))
}
