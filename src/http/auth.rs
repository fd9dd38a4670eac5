//! `POST /api/login` and `POST /api/logout`.
//!
//! The page hashes the password once with the client salt; the server checks that against the
//! stored Argon2id hash ([`crate::accounts::password`]) on the login pool, off the async workers
//! ([`crate::accounts::login_pool`]), and rewrites a stored hash of the old form or a lower cost.
//! A session token goes back both in the body (for load tools) and as an HttpOnly cookie (for
//! the pages). Failed logins are limited per mobile and per client address
//! ([`crate::accounts::login_guard`]).

use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use serde::Deserialize;

use super::respond::{self, Resp};
use crate::accounts::login_guard;
use crate::accounts::password;
use crate::accounts::session::{self, SessionUser};
use crate::domain::{Mobile, UserId};
use crate::error::AppError;
use crate::plumbing::keys;
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
    /// A load-test user: their rows share one hash of the demo password and are never rewritten
    /// (see `cli::seed`).
    test_user: bool,
}

pub async fn login(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    // an edge taking only the shop's tokens has no logins: refused at once, nothing hashed
    if state.settings.auth == crate::plumbing::config::AuthMode::Jwt {
        return Err(AppError::LoginAtShop);
    }
    let client = respond::client_address(&req, state);
    let device = crate::identity::cookie(req.headers(), DEVICE_COOKIE).map(str::to_string);
    let body: Login = respond::json_body(req).await?;
    let mobile = Mobile::parse(&body.mobile)?;
    if !password::is_client_hash(&body.password) {
        return Err(AppError::BadParam(
            "password must be the page's 32-hex-digit hash".into(),
        ));
    }
    // a place in the login pool first: past its bound a login is refused before any I/O
    let slot = match state.login_pool.reserve() {
        Ok(slot) => slot,
        Err(e) => {
            state.metrics.logins_busy.inc();
            return Err(e);
        }
    };
    let s = &state.settings;
    let limits = login_guard::Limits {
        per_mobile: s.login_fails_per_mobile,
        per_address: s.login_fails_per_address,
        window: Duration::from_secs(s.login_window_secs),
    };
    let guard = login_guard::Guard::new(
        &state.redis,
        &state.keys,
        limits,
        &mobile,
        client,
        device.as_deref(),
    );
    if let Err(e) = guard.attempt().await {
        if let AppError::TooManyLogins { .. } = e {
            state.metrics.logins_throttled.inc();
        }
        return Err(e);
    }
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT id, nickname, password, salt, test_user FROM users WHERE mobile = ?",
    )
    .bind(mobile.as_str())
    .fetch_optional(&state.db)
    .await?;
    // An unknown mobile is checked against a stand-in hash of the same cost, and answered with
    // the wrong password's code: neither the answer nor its time tells whether a mobile is
    // registered (security review, row 11).
    let (stored, test_user) = match &row {
        Some(r) => (
            Some(password::Stored::parse(&r.password, &r.salt)),
            r.test_user,
        ),
        None => (None, true),
    };
    let (client_hash, cost) = (body.password, state.settings.password_cost());
    let checked = state
        .login_pool
        .run_in(slot, move || {
            let stored = stored.unwrap_or_else(|| password::Stored::parse(stand_in(cost), ""));
            let verdict = password::verify(&client_hash, &stored, cost);
            let rehashed = match verdict {
                password::Verdict::Right { rehash: true } if !test_user => {
                    password::hash(&client_hash, cost).ok()
                }
                _ => None,
            };
            (verdict, rehashed)
        })
        .await;
    let (verdict, rehashed) = checked?;
    state.metrics.logins_verified.inc();
    let row = match (verdict, row) {
        (password::Verdict::Right { .. }, Some(row)) => row,
        (password::Verdict::Unreadable(why), Some(row)) => {
            tracing::warn!(
                user = row.id,
                why,
                "a stored password is unreadable: it cannot log in"
            );
            return Err(AppError::WrongPassword);
        }
        _ => return Err(AppError::WrongPassword),
    };
    if let Some(new) = rehashed {
        // only if the row still holds what was checked: a concurrent change wins
        let done =
            sqlx::query("UPDATE users SET password = ?, salt = '' WHERE id = ? AND password = ?")
                .bind(&new)
                .bind(row.id)
                .bind(&row.password)
                .execute(&state.db)
                .await;
        match done {
            Ok(r) if r.rows_affected() == 1 => {
                state.metrics.passwords_rehashed.inc();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(user = row.id, error = %e, "rewriting a stored password failed; it stays as it was")
            }
        }
    }
    let device = guard.succeeded().await?;
    let user = SessionUser {
        id: UserId::new(row.id)?,
        mobile: mobile.as_str().to_string(),
        nickname: row.nickname,
        subject: None,
    };
    let token = session::create(&mut state.redis.clone(), &state.keys, &user).await?;
    let mut resp = respond::ok(&token);
    let cookie = format!(
        "token={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        keys::SESSION_TTL.as_secs(),
        secure(state)
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    // this browser is known as this mobile's: its attempts are counted apart from a guesser's
    let known = format!(
        "{DEVICE_COOKIE}={device}; Path=/api/login; HttpOnly; SameSite=Strict; Max-Age={}{}",
        keys::DEVICE_TTL.as_secs(),
        secure(state)
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&known).expect("cookie is ASCII"),
    );
    Ok(resp)
}

/// The cookie that marks a browser that logged in (`accounts::login_guard`).
const DEVICE_COOKIE: &str = "fg_device";

/// The stand-in an unknown mobile's password is checked against: an Argon2id hash of the
/// settings' cost, made once per process (on the login pool, like every hash).
fn stand_in(cost: password::Cost) -> &'static str {
    static STAND_IN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STAND_IN.get_or_init(|| {
        password::hash(&"0".repeat(32), cost).expect("the settings' password cost was checked")
    })
}

/// `; Secure` when the edge is served over TLS (`cookie_secure`): the browser then never sends
/// the session over plain HTTP.
fn secure(state: &AppState) -> &'static str {
    if state.settings.cookie_secure {
        "; Secure"
    } else {
        ""
    }
}

/// Ends the session. State-changing, so JSON only (see `respond::json_body` on forgery).
pub async fn logout<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    respond::require_json(&req)?;
    if let Some(token) = respond::token(&req)
        && session::delete(&mut state.redis.clone(), &state.keys, token).await?
    {
        // at once here; the other edges hear it by pub/sub
        session::logout_heard(token, &state.sessions, &state.logouts);
    }
    let mut resp = respond::ok(());
    let cookie = format!(
        "token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(state)
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(resp)
}
