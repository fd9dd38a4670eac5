//! The envelope every JSON answer is wrapped in (`{"code": 0, "msg": "success", "data": …}`),
//! the one place an [`AppError`] becomes a response, and the request helpers handlers share:
//! reading a bounded JSON body, query parameters, the session token.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::session::{self, SessionUser};
use crate::error::{AppError, TokenFault};
use crate::identity::Credential;
use crate::plumbing::config::AuthMode;
use crate::state::AppState;

pub type Resp = Response<super::body::Body>;

/// A JSON body is at most this large; anything bigger is refused unread.
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: i64,
    msg: &'a str,
    data: T,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut resp = Response::new(super::body::Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `200` with `data`.
pub fn ok<T: Serialize>(data: T) -> Resp {
    with_status(StatusCode::OK, data)
}

/// What is left of a shopper's allowance in a sale that counts it (`GET /api/seckill/result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Units the shopper may still buy in this sale (the sale's limit and the campaign's).
    pub left: i64,
    /// Units left of the campaign's limit, in a sale of a campaign.
    pub campaign_left: Option<i64>,
}

/// `200` with a shopper's result: `data` the order id (or 0, -1), and beside it (not inside,
/// so clients that read `data` as before still do) the order's `quantity` once it is written,
/// and the grant and the checkout it goes to, when there is one (`identity::grant`).
pub fn ok_result(
    result: crate::domain::BuyResult,
    allowance: Option<Allowance>,
    granted: Option<crate::identity::Granted>,
) -> Resp {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct WithGrant<'a> {
        code: i64,
        msg: &'a str,
        data: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        quantity: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        allowance_left: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        campaign_allowance_left: Option<i64>,
        #[serde(flatten, skip_serializing_if = "Option::is_none")]
        granted: Option<crate::identity::Granted>,
    }
    let body = serde_json::to_vec(&WithGrant {
        code: 0,
        msg: "success",
        data: result.order,
        quantity: (result.order > 0).then_some(result.quantity),
        allowance_left: allowance.map(|a| a.left),
        campaign_allowance_left: allowance.and_then(|a| a.campaign_left),
        granted,
    })
    .expect("serialising an envelope");
    json_response(StatusCode::OK, body)
}

/// `status` with `data` in a success envelope.
pub fn with_status<T: Serialize>(status: StatusCode, data: T) -> Resp {
    let body = serde_json::to_vec(&Envelope {
        code: 0,
        msg: "success",
        data,
    })
    .expect("serialising an envelope");
    json_response(status, body)
}

/// The response for an error: its status, its code, a human message; `Retry-After` when it has
/// one. Server errors are answered generically (the caller logs their context).
pub fn error(e: AppError) -> Resp {
    let data = match &e {
        AppError::TooManyRequests { retry_after_ms }
        | AppError::TooManyLogins { retry_after_ms }
        | AppError::CaptchaLocked { retry_after_ms }
        | AppError::TooManyCaptchas { retry_after_ms }
        | AppError::LoginBusy { retry_after_ms } => {
            serde_json::json!({ "retryAfterMs": retry_after_ms })
        }
        AppError::NotStarted { starts_in_ms } => serde_json::json!({ "startsInMs": starts_in_ms }),
        AppError::Invalid(rule) => serde_json::json!({ "field": rule.field() }),
        AppError::NotYourTurn { position } => serde_json::json!({ "position": position }),
        AppError::LimitReached { left, campaign } => serde_json::json!({
            "allowanceLeft": left,
            "limit": if *campaign { "campaign" } else { "sale" },
        }),
        AppError::NotEnough { left } => serde_json::json!({ "unitsLeft": left }),
        AppError::TooManyUnits { per_buy } => serde_json::json!({ "perBuy": per_buy }),
        _ => serde_json::Value::Null,
    };
    let body = serde_json::to_vec(&Envelope {
        code: e.code(),
        msg: &e.to_string(),
        data,
    })
    .expect("serialising an envelope");
    let mut resp = json_response(e.status(), body);
    if let AppError::TooManyRequests { retry_after_ms }
    | AppError::TooManyLogins { retry_after_ms }
    | AppError::CaptchaLocked { retry_after_ms }
    | AppError::TooManyCaptchas { retry_after_ms }
    | AppError::LoginBusy { retry_after_ms } = e
    {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let AppError::TokenMissing = e {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let AppError::MethodNotAllowed { allow } = &e
        && let Ok(v) = HeaderValue::from_str(allow)
    {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    if let AppError::TooLarge | AppError::BodyTimeout = e {
        // the body was left unread, so this connection cannot carry another request: say so,
        // or a client may reuse it and see it cut
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Refuses (415) a request not declared `Content-Type: application/json`: every state-changing
/// route calls this (through [`json_body`] when it has a body), see there why.
pub fn require_json<B>(req: &Request<B>) -> Result<(), AppError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(AppError::NotJson)
    }
}

/// The client's address: the connection's peer, or what a trusted proxy says it saw.
pub fn client_address<B>(req: &Request<B>, state: &AppState) -> std::net::IpAddr {
    let peer = req
        .extensions()
        .get::<super::Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0);
    state.proxies.client(peer, req.headers())
}

/// Reads a JSON object body of at most [`MAX_BODY`] bytes into `T`, within the request's
/// [`BodyTimeout`](super::BodyTimeout).
///
/// The body must be declared `Content-Type: application/json`. This is the edge's defence
/// against cross-site request forgery: a page on another site can make a browser post a form
/// (`application/x-www-form-urlencoded`, `multipart/form-data`) or `text/plain` with the
/// shopper's cookie, but not `application/json`, which needs a CORS preflight this edge never
/// grants. So a state-changing request that is not JSON is refused (415) before anything else.
pub async fn json_body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, AppError> {
    json_body_up_to(req, MAX_BODY).await
}

/// [`json_body`] when the request has a body, else `T::default()` (an optional body). A body
/// sent chunked, without `Content-Length`, is a body too.
pub async fn optional_json_body<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, AppError> {
    if hyper::body::Body::is_end_stream(req.body()) {
        require_json(&req)?;
        Ok(T::default())
    } else {
        json_body(req).await
    }
}

/// [`json_body`] with another size limit (a release of the Lua scripts is bigger).
pub async fn json_body_up_to<T: DeserializeOwned>(
    req: Request<Incoming>,
    max: usize,
) -> Result<T, AppError> {
    require_json(&req)?;
    let (_, bytes) = read_body(req, max).await?;
    // Every body of this API is an object; serde would also read a struct from an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AppError::BadParam("the body must be a JSON object".into()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadParam(format!("invalid JSON body: {e}")))
}

/// The request of a route that takes no body ([`super::routes::Route::takes_body`]), its body
/// read and judged: none, an empty one, or `{}` on a method other than `GET` (the pages send
/// `{}` with every `POST`, declared JSON: [`require_json`] first) is taken; anything else is
/// refused (400, `UnexpectedBody`) rather than ignored, and so is more than [`MAX_BODY`] of it
/// (413).
pub async fn no_body(req: Request<Incoming>) -> Result<Request<()>, AppError> {
    // a state-changing request is JSON first (the forgery defence, see `json_body`): a form is
    // refused as a form (415), whatever it carries
    if req.method() != hyper::Method::GET {
        require_json(&req)?;
    }
    if hyper::body::Body::is_end_stream(req.body()) {
        return Ok(req.map(|_| ()));
    }
    let (parts, bytes) = read_body(req, MAX_BODY).await?;
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    let empty_object = parts.method != hyper::Method::GET
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
            .is_ok_and(|o| o.is_empty());
    if empty || empty_object {
        Ok(Request::from_parts(parts, ()))
    } else {
        Err(AppError::UnexpectedBody)
    }
}

/// Reads a request's body, at most `max` bytes (413 past it, judged first by `Content-Length`),
/// within the request's [`BodyTimeout`](super::BodyTimeout) (408).
async fn read_body(
    req: Request<Incoming>,
    max: usize,
) -> Result<(hyper::http::request::Parts, bytes::Bytes), AppError> {
    let limit = req
        .extensions()
        .get::<super::BodyTimeout>()
        .map_or(std::time::Duration::from_secs(10), |t| t.0);
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        if len > max {
            return Err(AppError::TooLarge);
        }
    }
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, max).collect();
    let bytes = tokio::time::timeout(limit, read)
        .await
        .map_err(|_| AppError::BodyTimeout)?
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                AppError::TooLarge
            } else {
                AppError::BadParam("could not read the request body".into())
            }
        })?
        .to_bytes();
    Ok((parts, bytes))
}

/// The first value of query parameter `name`, if present.
pub fn query<B>(req: &Request<B>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A required query parameter, parsed by `parse`.
pub fn required<B, T>(
    req: &Request<B>,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, AppError>,
) -> Result<T, AppError> {
    let raw = query(req, name).ok_or_else(|| AppError::BadParam(format!("{name} is required")))?;
    parse(&raw)
}

/// An optional count in the query: `default` when absent, a 400 unless it is in `range`.
pub fn count_or<B>(
    req: &Request<B>,
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, AppError> {
    match query(req, name) {
        None => Ok(default),
        Some(v) => (v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0'))
            .then(|| v.parse::<usize>().ok())
            .flatten()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                AppError::BadParam(format!(
                    "{name} must be {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

/// The session token: `Authorization: Bearer TOKEN`, else the `token` cookie.
pub fn token<B>(req: &Request<B>) -> Option<&str> {
    let headers = req.headers();
    crate::identity::bearer(headers)
        .or_else(|| crate::identity::cookie(headers, crate::identity::SESSION_COOKIE))
}

/// `Authorization: Bearer TOKEN` only: the admin and redeem tokens never come from a cookie
/// (a cookie is sent by the browser to whoever it likes, a header only by the caller).
pub fn bearer<B>(req: &Request<B>) -> Option<&str> {
    crate::identity::bearer(req.headers())
}

/// `TokenMissing` (401) without a bearer token, `Forbidden` (403) unless it is `want` (compared
/// in constant time); an empty `want` (the token not set) lets no one in. The admin and the
/// shop's server's checks.
pub fn require_bearer<B>(req: &Request<B>, want: &str) -> Result<(), AppError> {
    let Some(got) = bearer(req) else {
        return Err(AppError::TokenMissing);
    };
    if want.is_empty()
        || !crate::accounts::password::constant_time_eq(want.as_bytes(), got.as_bytes())
    {
        return Err(AppError::Forbidden);
    }
    Ok(())
}

/// The request's credential under `auth` (`identity::Credential`), or the refusal for none:
/// `SessionMissing`, or the shop token's `Missing` when only shop tokens are taken.
pub fn credential<B>(req: &Request<B>, state: &AppState) -> Result<Credential, AppError> {
    Credential::of(req, &state.settings).ok_or(match state.settings.auth {
        AuthMode::Jwt => AppError::ShopToken(TokenFault::Missing),
        _ => AppError::SessionMissing,
    })
}

/// The logged-in user, or why not.
pub async fn user<B>(req: &Request<B>, state: &AppState) -> Result<SessionUser, AppError> {
    user_of(&credential(req, state)?, state).await
}

/// The user of `credential` (taken from a request before its body was read): a session from
/// this edge's copy or Redis (`accounts::session`); a shop token verified (once per edge) and
/// its subject mapped to a user id (`identity`).
pub async fn user_of(credential: &Credential, state: &AppState) -> Result<SessionUser, AppError> {
    match credential {
        Credential::Session(token) => {
            session::get_cached(
                &mut state.redis.clone(),
                &state.keys,
                &state.sessions,
                &state.metrics,
                token,
            )
            .await
        }
        Credential::Shop(jwt) => {
            let shop = shop_tokens(state)?;
            let verified = shop.verify(jwt).await?;
            let id = state
                .identity
                .subjects
                .user_id(&state.db, &verified.subject)
                .await?;
            Ok(SessionUser {
                id,
                mobile: String::new(),
                nickname: verified.subject.chars().take(64).collect(),
                subject: Some(verified.subject.to_string()),
            })
        }
    }
}

/// The verifier of shop tokens (a shop token where none are taken is refused as missing).
fn shop_tokens(state: &AppState) -> Result<&crate::identity::shop_token::ShopTokens, AppError> {
    state
        .identity
        .shop
        .as_deref()
        .ok_or(AppError::SessionMissing)
}

/// The fingerprint of the credential a buy came with, once it is known good. A buy reads no
/// session and maps no subject (its path is bound to the token: see `accounts::logouts`): a
/// shop token is verified (from this edge's verified copies after the first time); a session
/// token is checked against the edge's list of logouts, and only while that list cannot be
/// trusted (not subscribed) is the session read, and must be the path's user's (else
/// `BadPath`: someone else's path).
pub async fn buyer(
    credential: &Credential,
    path: &crate::domain::HiddenPath,
    state: &AppState,
) -> Result<crate::domain::TokenPrint, AppError> {
    let token = match credential {
        Credential::Shop(jwt) => {
            shop_tokens(state)?.verify(jwt).await?;
            return Ok(crate::domain::TokenPrint::of(jwt));
        }
        Credential::Session(token) => token,
    };
    if !session::valid_token(token) {
        return Err(AppError::SessionMissing);
    }
    let print = crate::domain::TokenPrint::of(token);
    match state.logouts.logged_out(print) {
        Some(true) => Err(AppError::SessionMissing),
        Some(false) => Ok(print),
        None => {
            state.metrics.buy_sessions_read.inc();
            match user_of(credential, state).await? {
                user if user.id == path.user() => Ok(print),
                _ => Err(AppError::BadPath),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_bearer_or_cookie() {
        let r = Request::builder()
            .header("Cookie", "a=b; token=abc; c=d")
            .body(())
            .unwrap();
        assert_eq!(token(&r), Some("abc"));
        let r = Request::builder()
            .header("Authorization", "Bearer xyz")
            .header("Cookie", "token=abc")
            .body(())
            .unwrap();
        assert_eq!(token(&r), Some("xyz"));
        assert_eq!(token(&Request::builder().body(()).unwrap()), None);
        // a second, different `token` (planted by a sibling subdomain) makes it ambiguous: none
        let r = Request::builder()
            .header("Cookie", "token=planted; token=abc")
            .body(())
            .unwrap();
        assert_eq!(token(&r), None);
        let r = Request::builder()
            .header("Cookie", "token=abc")
            .header("Cookie", "token=abc")
            .body(())
            .unwrap();
        assert_eq!(token(&r), Some("abc"));
    }

    #[test]
    fn the_admin_token_comes_only_from_the_authorization_header() {
        let r = Request::builder()
            .header("Cookie", "token=abc")
            .body(())
            .unwrap();
        assert_eq!(bearer(&r), None);
        let r = Request::builder()
            .header("Authorization", "Bearer abc")
            .body(())
            .unwrap();
        assert_eq!(bearer(&r), Some("abc"));
    }

    #[test]
    fn query_params_are_decoded() {
        let r = Request::builder()
            .uri("/x?goodsId=5&verifyCode=-3&e=a%20b")
            .body(())
            .unwrap();
        assert_eq!(query(&r, "goodsId").as_deref(), Some("5"));
        assert_eq!(query(&r, "verifyCode").as_deref(), Some("-3"));
        assert_eq!(query(&r, "e").as_deref(), Some("a b"));
        assert_eq!(query(&r, "nope"), None);
    }
}
