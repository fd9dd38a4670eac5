//! The HTTP edge: a lean hyper 1.x server and its router.
//!
//! Every route is one row of the table in [`routes`] and one arm in [`route`]; each family of
//! routes lives in its own module. Two listeners may run: the public one (shoppers) and the
//! admin one (operators), each serving its own [`Surface`]. Slow and greedy clients are cut off
//! by [`conn`].
//! Handlers return `Result<Response, AppError>`; [`respond::error`] turns an error into its status
//! and envelope, in one place. Shutdown is a parameter of [`serve`], so tests start and stop it.

pub mod admin;
pub mod auth;
pub mod body;
pub mod conn;
pub mod draws;
pub mod events;
pub mod goods;
pub mod grants;
pub mod ops;
pub mod orders;
pub mod proxy;
pub mod respond;
pub mod routes;
pub mod scripts;
pub mod seckill;
pub mod static_files;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{AppError, Dependency};
use crate::state::AppState;
pub use respond::Resp;
use routes::{Found, Route, Surface};

/// The address the request's connection came from (the proxy's, behind nginx).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// How long a handler may wait for the request's body (`body_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts connections on `listener` until `shutdown` completes, serving the routes of `surface`,
/// then lets open requests finish (up to 5 s). Each connection is held to the limits of
/// [`conn`]; past `max_connections` open ones, a new one is closed at once.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    surface: Surface,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let limits = conn::Limits {
        header: Duration::from_millis(state.settings.header_timeout_ms),
        idle: Duration::from_millis(state.settings.idle_timeout_ms),
        body: Duration::from_millis(state.settings.body_timeout_ms),
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(state.settings.max_connections));
    // one shared copy: a request clones a pointer, not the state's strings and handles
    let state = Arc::new(state);
    loop {
        let (stream, peer) = tokio::select! {
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state.metrics.cut_off("too_many");
            drop(stream); // closed at once: the cap is what keeps the rest served
            continue;
        };
        let _ = stream.set_nodelay(true);
        let phase = conn::Phase::new();
        let service = {
            let (state, phase) = (state.clone(), phase.clone());
            service_fn(move |req| {
                let (state, phase) = (state.clone(), phase.clone());
                phase.request_started();
                async move {
                    // boxed: hyper keeps the allocation of a connection's in-flight future for
                    // the connection's life, and an open event stream's connection would keep
                    // the largest route's future (~11 KiB, measured by loadtest/push-hold.sh)
                    let mut resp =
                        Box::pin(handle(req, state, surface, peer.ip(), limits.body)).await;
                    match resp.body_mut() {
                        // an event stream keeps the connection busy until it ends
                        body::Body::Events(events) => events.hold(phase),
                        body::Body::Full(_) => phase.request_done(),
                    }
                    Ok::<_, Infallible>(resp)
                }
            })
        };
        let conn = http1::Builder::new().keep_alive(true).serve_connection(
            TokioIo::new(conn::Watched::new(stream, phase.clone())),
            service,
        );
        let conn = graceful.watch(conn);
        let state = state.clone();
        tokio::spawn(async move {
            state.metrics.connections.inc();
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                reason = phase.watch(limits) => {
                    state.metrics.cut_off(reason);
                    tracing::debug!(%peer, reason, "cut a connection off");
                }
            }
            state.metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    // open event streams would never finish by themselves: end them (browsers reconnect, to
    // another edge) so the graceful shutdown waits only for requests
    state.push.close_all();
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
async fn handle(
    mut req: Request<Incoming>,
    state: Arc<AppState>,
    surface: Surface,
    peer: IpAddr,
    body_timeout: Duration,
) -> Resp {
    let started = Instant::now();
    let rid = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(RequestId::from_client)
        .unwrap_or_default();
    req.extensions_mut().insert(rid.clone());
    req.extensions_mut().insert(Peer(peer));
    req.extensions_mut().insert(BodyTimeout(body_timeout));
    // the route is looked up once: for the metrics label here, and to dispatch
    let (found, family) = match routes::find(surface, req.method(), req.uri().path()) {
        Found::Route(route, param) => (Some((route, param.map(str::to_owned))), route.family()),
        Found::WrongMethod => (None, "other"),
        Found::None if req.uri().path().starts_with("/api/") => (None, "other"),
        Found::None => (None, "static"),
    };
    let needs_redis = req.uri().path().starts_with("/api/");
    // the breaker itself hears every Redis command's outcome (see `RedisConn`); here it only
    // keeps requests that would need Redis from trying while it is open
    let result = if needs_redis && !state.redis_breaker.allow() {
        Err(AppError::Unavailable(Dependency::Redis))
    } else {
        route(req, &state, surface, found).await
    };
    if let Err(AppError::BodyTimeout) = result {
        state.metrics.cut_off("body_timeout"); // answered 408 with `Connection: close`
    }
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

/// Routes one request of `surface` to its handler: `found` is its row of the table (see
/// [`routes`]) with the path parameter, or `None` if no route of this surface has that method
/// and path.
async fn route(
    req: Request<Incoming>,
    state: &AppState,
    surface: Surface,
    found: Option<(Route, Option<String>)>,
) -> Result<Resp, AppError> {
    let Some((route, param)) = found else {
        let path = req.uri().path();
        return match routes::find(surface, req.method(), path) {
            Found::WrongMethod => Err(AppError::MethodNotAllowed),
            // pages on the public and admin listeners, not on a worker's ops listener
            _ if path.starts_with("/api/") || surface == Surface::Ops => Err(AppError::NotFound),
            // the console's pages only where its API is: on the admin listener
            _ if surface == Surface::Public && static_files::is_console(path) => {
                Err(AppError::NotFound)
            }
            _ => static_files::serve(req, &state.assets).await,
        };
    };
    let param = param.as_deref().unwrap_or_default();
    match route {
        Route::Login => auth::login(req, state).await,
        Route::Logout => auth::logout(req, state).await,
        Route::GoodsList => goods::list(&req, state).await,
        Route::GoodsDetail => goods::detail(state, param).await,
        Route::Captcha => seckill::captcha(req, state).await,
        Route::Path => seckill::path(req, state).await,
        Route::Buy => seckill::buy(req, state, param).await,
        Route::RoomJoin => seckill::room_join(req, state).await,
        Route::RoomLook => seckill::room_look(req, state).await,
        Route::Events => events::open(req, state).await,
        Route::Result => seckill::result(req, state).await,
        Route::Order => orders::get(req, state, param).await,
        Route::Pay => orders::pay(req, state, param).await,
        Route::GrantKeys => grants::keys(state),
        Route::GrantRedeem => grants::redeem(req, state).await,
        Route::DrawShow => draws::show(req, state, param).await,
        Route::DrawChallenge => draws::challenge(req, state, param).await,
        Route::DrawEnter => draws::enter(req, state, param).await,
        Route::DrawPublished => draws::published(state, param).await,
        Route::AdminListSales => admin::list(req, state).await,
        Route::AdminCreateSale => admin::create(req, state).await,
        Route::AdminShowSale => admin::show(req, state, param).await,
        Route::AdminUpdateSale => admin::update(req, state, param).await,
        Route::AdminCancelSale => admin::cancel(req, state, param).await,
        Route::AdminAuditSale => admin::audit(req, state, param).await,
        Route::AdminSaleSeries => admin::series(req, state, param).await,
        Route::AdminResetSale => admin::reset(req, state, param).await,
        Route::AdminReloadScripts => scripts::reload(req, state).await,
        Route::AdminLuaStatus => scripts::status(req, state).await,
        Route::AdminLuaCheck => scripts::check(req, state).await,
        Route::AdminLuaRelease => scripts::release(req, state).await,
        Route::AdminLuaPromote => scripts::promote(req, state).await,
        Route::AdminLuaRollback => scripts::rollback(req, state).await,
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(state).await),
        Route::Metrics => Ok(ops::metrics(state).await),
    }
}
