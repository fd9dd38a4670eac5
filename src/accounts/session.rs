//! Sessions: `sess:TOKEN` holds the user as JSON, with a sliding TTL ([`keys::SESSION_TTL`]).
//!
//! A token is a UUID handed out at login (HttpOnly cookie `token`, or `Authorization: Bearer`
//! for load tools). Looking a session up is one `GETEX … EX`, which reads it and slides its TTL
//! in one round trip. A token that is not shaped like one of ours is refused before Redis.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::error::AppError;
use crate::plumbing::keys::{self, Keys};

/// The user a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: UserId,
    pub mobile: String,
    pub nickname: String,
}

/// Tokens are UUIDs in simple form: 32 lowercase hex digits.
pub fn valid_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Stores a new session for `user` and returns its token.
pub async fn create<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    user: &SessionUser,
) -> Result<String, AppError> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let json = serde_json::to_string(user).map_err(anyhow::Error::from)?;
    let _: () = redis::cmd("SET")
        .arg(keys.session(&token))
        .arg(json)
        .arg("EX")
        .arg(keys::SESSION_TTL.as_secs())
        .query_async(con)
        .await?;
    Ok(token)
}

/// The session's user, sliding its TTL; `SessionMissing` if there is none.
pub async fn get<C: ConnectionLike + Send>(
    con: &mut C,
    keys: &Keys,
    token: &str,
) -> Result<SessionUser, AppError> {
    if !valid_token(token) {
        return Err(AppError::SessionMissing);
    }
    let json: Option<String> = redis::cmd("GETEX")
        .arg(keys.session(token))
        .arg("EX")
        .arg(keys::SESSION_TTL.as_secs())
        .query_async(con)
        .await?;
    let json = json.ok_or(AppError::SessionMissing)?;
    serde_json::from_str(&json).map_err(|e| AppError::Internal(anyhow::Error::new(e)))
}

/// Ends a session.
pub async fn delete<C: ConnectionLike + Send + AsyncCommands>(
    con: &mut C,
    keys: &Keys,
    token: &str,
) -> Result<(), AppError> {
    if valid_token(token) {
        let _: () = con.del(keys.session(token)).await?;
    }
    Ok(())
}
