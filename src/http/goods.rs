//! `GET /api/goods` and `GET /api/goods/{id}`: the catalogue, through [`crate::sales::catalogue`].

use super::respond::{self, Resp};
use crate::domain::GoodsId;
use crate::error::AppError;
use crate::sales::catalogue;
use crate::state::AppState;

pub async fn list(state: &AppState) -> Result<Resp, AppError> {
    Ok(respond::ok(catalogue::list(state).await?))
}

pub async fn detail(state: &AppState, id: &str) -> Result<Resp, AppError> {
    let goods = GoodsId::parse(id)?;
    Ok(respond::ok(catalogue::detail(state, goods).await?))
}
