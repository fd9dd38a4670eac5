//! The HTTP edge: a lean hyper 1.x server and its router.
//!
//! Every route is one match arm in [`route`]; each family of routes lives in its own module.
//! Handlers return `Result<Response, AppError>`; [`respond::error`] turns an error into its status
//! and envelope, in one place. Shutdown is a parameter of [`serve`], so tests start and stop it.

pub mod admin;
pub mod auth;
pub mod goods;
pub mod ops;
pub mod orders;
pub mod respond;
pub mod seckill;
pub mod static_files;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{AppError, Dependency};
use crate::state::AppState;
pub use respond::Resp;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts connections until `shutdown` completes, then lets open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    // one shared copy: a request clones a pointer, not the state's strings and handles
    let state = Arc::new(state);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(req, state).await) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after 5 s");
    }
}

/// A request's id: the client's `X-Request-Id` if it sent a sane one (nginx can set it), else
/// this process's random prefix and a counter (unique, and cheaper than a UUID). Every response
/// carries it back, server errors are logged with it, and a buy stores it in its stream entry.
#[derive(Debug, Clone)]
pub struct RequestId(String);

impl RequestId {
    pub fn new() -> Self {
        static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let prefix =
            PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_string());
        Self(format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// The client's id, if it is 1..=64 characters of `[A-Za-z0-9._-]`.
    fn from_client(v: &HeaderValue) -> Option<Self> {
        let s = v.to_str().ok()?;
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

/// Routes one request, times it, and turns an error into its envelope.
async fn handle(mut req: Request<Incoming>, state: Arc<AppState>) -> Resp {
    let started = Instant::now();
    let rid = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(RequestId::from_client)
        .unwrap_or_default();
    req.extensions_mut().insert(rid.clone());
    let family = family(req.uri().path());
    let needs_redis = req.uri().path().starts_with("/api/");
    // the breaker itself hears every Redis command's outcome (see `RedisConn`); here it only
    // keeps requests that would need Redis from trying while it is open
    let result = if needs_redis && !state.redis_breaker.allow() {
        Err(AppError::Unavailable(Dependency::Redis))
    } else {
        route(req, &state).await
    };
    let mut response = match result {
        Ok(resp) => resp,
        Err(e) => {
            if let AppError::Internal(inner) = &e {
                tracing::error!(request_id = rid.as_str(), error = ?inner, "request failed");
            }
            respond::error(e)
        }
    };
    if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    state
        .metrics
        .route_latency(family, started.elapsed().as_secs_f64());
    response
}

/// The metrics label of a path.
fn family(path: &str) -> &'static str {
    if path.starts_with("/api/seckill/") {
        if path.ends_with("/orders") {
            "buy"
        } else if path.starts_with("/api/seckill/result") {
            "result"
        } else {
            "path"
        }
    } else if path.starts_with("/api/goods") {
        "goods"
    } else if path.starts_with("/api/log") {
        "auth"
    } else if path.starts_with("/api/")
        || path.starts_with("/healthz")
        || path.starts_with("/readyz")
        || path.starts_with("/metrics")
    {
        "other"
    } else {
        "static"
    }
}

async fn route(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let m = &method;
    match segments.as_slice() {
        ["api", "seckill", hidden, "orders"] => {
            only(m, Method::POST)
                .map(|_| seckill::buy(req, state, hidden))?
                .await
        }
        ["api", "seckill", "result"] => {
            only(m, Method::GET)
                .map(|_| seckill::result(req, state))?
                .await
        }
        ["api", "seckill", "path"] => {
            only(m, Method::GET)
                .map(|_| seckill::path(req, state))?
                .await
        }
        ["api", "seckill", "captcha"] => {
            only(m, Method::GET)
                .map(|_| seckill::captcha(req, state))?
                .await
        }
        ["api", "login"] => {
            only(m, Method::POST)
                .map(|_| auth::login(req, state))?
                .await
        }
        ["api", "logout"] => {
            only(m, Method::POST)
                .map(|_| auth::logout(req, state))?
                .await
        }
        ["api", "goods"] => only(m, Method::GET).map(|_| goods::list(state))?.await,
        ["api", "goods", id] => {
            only(m, Method::GET)
                .map(|_| goods::detail(state, id))?
                .await
        }
        ["api", "orders", id] => {
            only(m, Method::GET)
                .map(|_| orders::get(req, state, id))?
                .await
        }
        ["api", "orders", id, "pay"] => {
            only(m, Method::POST)
                .map(|_| orders::pay(req, state, id))?
                .await
        }
        ["api", "admin", "sales", id, "reset"] => {
            only(m, Method::POST)
                .map(|_| admin::reset(req, state, id))?
                .await
        }
        ["api", "admin", "scripts", "reload"] => {
            only(m, Method::POST)
                .map(|_| admin::reload_scripts(req, state))?
                .await
        }
        ["healthz"] => Ok(ops::healthz()),
        ["readyz"] => Ok(ops::readyz(state).await),
        ["metrics"] => Ok(ops::metrics(state).await),
        ["api", ..] => Err(AppError::NotFound),
        _ => static_files::serve(req, &state.assets).await,
    }
}

/// Refuses any method but `want` with 405.
fn only(got: &Method, want: Method) -> Result<(), AppError> {
    if *got == want {
        Ok(())
    } else {
        Err(AppError::MethodNotAllowed)
    }
}
