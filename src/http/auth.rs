//! `POST /api/login` and `POST /api/logout`.
//!
//! The page hashes the password once with the client salt; the server hashes that again with the
//! user's own salt and compares ([`crate::password`]). A session token goes back both in the body
//! (for load tools) and as an HttpOnly cookie (for the pages).

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::domain::{Mobile, UserId};
use crate::error::AppError;
use crate::keys;
use crate::password;
use crate::session::{self, SessionUser};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    mobile: String,
    /// The client hash: 32 hex digits.
    password: String,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    nickname: String,
    password: String,
    salt: String,
}

pub async fn login(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    let body: Login = respond::json_body(req).await?;
    let mobile = Mobile::parse(&body.mobile)?;
    if body.password.len() != 32 || !body.password.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::BadParam(
            "password must be the page's 32-hex-digit hash".into(),
        ));
    }
    let row: UserRow =
        sqlx::query_as("SELECT id, nickname, password, salt FROM users WHERE mobile = ?")
            .bind(mobile.as_str())
            .fetch_optional(&state.db)
            .await?
            .ok_or(AppError::MobileNotFound)?;
    if !password::verify(
        &body.password.to_ascii_lowercase(),
        &row.salt,
        &row.password,
    ) {
        return Err(AppError::WrongPassword);
    }
    let user = SessionUser {
        id: UserId::new(row.id)?,
        mobile: mobile.as_str().to_string(),
        nickname: row.nickname,
    };
    let token = session::create(&mut state.redis.clone(), &state.keys, &user).await?;
    let mut resp = respond::ok(&token);
    let cookie = format!(
        "token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
        keys::SESSION_TTL.as_secs()
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(resp)
}

pub async fn logout(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    if let Some(token) = respond::token(&req) {
        session::delete(&mut state.redis.clone(), &state.keys, token).await?;
    }
    let mut resp = respond::ok(());
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    );
    Ok(resp)
}
