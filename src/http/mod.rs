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
    let per_address = Arc::new(conn::PerAddress::new(
        state.settings.max_connections_per_address,
    ));
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
        // one address holds at most its share (a trusted proxy carries everyone's)
        let address_slot = if state.proxies.trusts(peer.ip()) {
            None
        } else {
            match per_address.take(crate::domain::counted(peer.ip())) {
                Some(held) => Some(held),
                None => {
                    state.metrics.cut_off("too_many_from_address");
                    drop(stream);
                    continue;
                }
            }
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
        // A request's head is at most MAX_HEAD bytes and MAX_HEADERS fields (431 past them):
        // hyper's own bound is ~400 KiB a connection, ~9.5 GiB at the connection cap before
        // anyone logs in (security review, row 6). The longest honest head is a shop's JWT
        // (8 KiB at most), in a cookie or in Authorization.
        let conn = http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            .serve_connection(
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
            drop(address_slot);
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

/// The most bytes of one request's head an edge buffers (hyper's read buffer).
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header fields one request may have.
pub const MAX_HEADERS: usize = 64;

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
        Found::WrongMethod(_) => (None, "other"),
        Found::None if req.uri().path().starts_with("/api/") => (None, "other"),
        Found::None => (None, "static"),
    };
    let needs_redis = req.uri().path().starts_with("/api/");
    // the breaker itself hears every Redis command's outcome (see `RedisConn`); here it only
    // keeps requests that would need Redis from trying while it is open
    let result = if let Err(refused) = guard_origin(&req, surface, &state.settings.admin_hosts) {
        Err(refused)
    } else if needs_redis && !state.redis_breaker.allow() {
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
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(rid.as_str()) {
        h.insert(X_REQUEST_ID, v);
    }
    // no answer of the edge is ever to be read as another type than it says
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    state
        .metrics
        .route_latency(family, started.elapsed().as_secs_f64());
    response
}

/// Refusals that depend only on where a request comes from, before anything is routed:
///
/// - on the public listener, an API request a browser marks `Sec-Fetch-Site: cross-site` (a
///   link or a form on another site, which would carry the shopper's Lax cookie: the path and
///   captcha requests are GETs that change state). Clients that are not browsers send no such
///   header and are not concerned.
/// - on the admin listener, a `Host` that is a name not listed in `admin_hosts`: DNS rebinding
///   (a page whose name is made to resolve to 127.0.0.1) would otherwise let a browser read the
///   console and the unauthenticated ops routes. An address (`127.0.0.1:9180`, `[::1]:9180`) or
///   `localhost` is always taken: rebinding needs a name.
fn guard_origin<B>(req: &Request<B>, surface: Surface, admin_hosts: &str) -> Result<(), AppError> {
    let headers = req.headers();
    match surface {
        Surface::Public => {
            let cross = headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
            if cross && req.uri().path().starts_with("/api/") {
                return Err(AppError::CrossSite);
            }
        }
        Surface::Admin => {
            let host = headers
                .get(hyper::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !admin_host_taken(host, admin_hosts) {
                return Err(AppError::WrongHost);
            }
        }
        Surface::Ops | Surface::PublicAndAdmin => {}
    }
    Ok(())
}

/// Whether `host` (a `Host` header: `name[:port]`, `address[:port]`, `[v6][:port]`) may reach the
/// admin listener: an address, `localhost`, or a name in `allowed` (comma-separated).
fn admin_host_taken(host: &str, allowed: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<IpAddr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed
            .split(',')
            .map(str::trim)
            .any(|a| !a.is_empty() && a.eq_ignore_ascii_case(name))
}

/// Routes one request of `surface` to its handler: `found` is its row of the table (see
/// [`routes`]) with the path parameter, or `None` if no route of this surface has that method
/// and path. A route that reads no body gets its request with the body judged and gone
/// ([`respond::no_body`]).
async fn route(
    req: Request<Incoming>,
    state: &AppState,
    surface: Surface,
    found: Option<(Route, Option<String>)>,
) -> Result<Resp, AppError> {
    let Some((route, param)) = found else {
        let path = req.uri().path();
        return match routes::find(surface, req.method(), path) {
            Found::WrongMethod(methods) => Err(AppError::MethodNotAllowed {
                allow: methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            // pages on the public and admin listeners, not on a worker's ops listener
            _ if path.starts_with("/api/") || surface == Surface::Ops => Err(AppError::NotFound),
            // the console's files only where its API is: on the admin listener (judged on the
            // decoded path of the file found, so no spelling of its name gets it in public)
            _ => static_files::serve(req, &state.assets, surface == Surface::Admin).await,
        };
    };
    let param = param.as_deref().unwrap_or_default();
    if !route.takes_body() {
        let req = respond::no_body(req).await?;
        return route_bodiless(req, state, surface, route, param).await;
    }
    match route {
        Route::Login => auth::login(req, state).await,
        Route::Buy => seckill::buy(req, state, param).await,
        Route::RoomJoin => seckill::room_join(req, state).await,
        Route::GrantRedeem => grants::redeem(req, state).await,
        Route::DrawEnter => draws::enter(req, state, param).await,
        Route::AdminCreateSale => admin::create(req, state).await,
        Route::AdminUpdateSale => admin::update(req, state, param).await,
        Route::AdminResetSale => admin::reset(req, state, param).await,
        Route::AdminLuaCheck => scripts::check(req, state).await,
        Route::AdminLuaRelease => scripts::release(req, state).await,
        Route::AdminLuaRollback => scripts::rollback(req, state).await,
        _ => unreachable!("{route:?} takes no body"),
    }
}

/// The routes that read no body ([`Route::takes_body`]).
async fn route_bodiless(
    req: Request<()>,
    state: &AppState,
    surface: Surface,
    route: Route,
    param: &str,
) -> Result<Resp, AppError> {
    match route {
        Route::Logout => auth::logout(req, state).await,
        Route::GoodsList => goods::list(&req, state).await,
        Route::GoodsDetail => goods::detail(state, param).await,
        Route::Captcha => seckill::captcha(req, state).await,
        Route::Path => seckill::path(req, state).await,
        Route::RoomLook => seckill::room_look(req, state).await,
        Route::RoomChallenge => seckill::room_challenge(req, state).await,
        Route::Events => events::open(req, state).await,
        Route::Result => seckill::result(req, state).await,
        Route::Order => orders::get(req, state, param).await,
        Route::Pay if surface == Surface::Admin => orders::shop_pay(req, state, param).await,
        Route::Pay => orders::pay(req, state, param).await,
        Route::Close => orders::shop_close(req, state, param).await,
        Route::GrantKeys => grants::keys(state),
        Route::DrawShow => draws::show(req, state, param).await,
        Route::DrawChallenge => draws::challenge(req, state, param).await,
        Route::DrawPublished => draws::published(state, param).await,
        Route::AdminListSales => admin::list(req, state).await,
        Route::AdminShowSale => admin::show(req, state, param).await,
        Route::AdminCancelSale => admin::cancel(req, state, param).await,
        Route::AdminAuditSale => admin::audit(req, state, param).await,
        Route::AdminSaleSeries => admin::series(req, state, param).await,
        Route::AdminReloadScripts => scripts::reload(req, state).await,
        Route::AdminLuaStatus => scripts::status(req, state).await,
        Route::AdminLuaPromote => scripts::promote(req, state).await,
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => {
            let full = ops::readyz(state).await;
            Ok(match surface {
                // in public, only the verdict: what is down, the primary's address and raw
                // errors are for the operators' listeners (security review, row 15)
                Surface::Public => {
                    let mut r = respond::ok(serde_json::json!({
                        "ready": full.status().is_success()
                    }));
                    *r.status_mut() = full.status();
                    r
                }
                _ => full,
            })
        }
        // in public only where the deployment says a proxy keeps it from the internet: a scrape
        // costs MySQL and Redis work and names the Redis primary (security review, row 15)
        Route::Metrics if surface == Surface::Public && !state.settings.metrics_public => {
            Err(AppError::NotFound)
        }
        Route::Metrics => Ok(ops::metrics(state).await),
        _ => unreachable!("{route:?} takes a body"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_hosts_are_addresses_localhost_or_named() {
        for ok in [
            "127.0.0.1:9180",
            "127.0.0.1",
            "[::1]:9180",
            "localhost:9180",
            "10.1.2.3:9180",
            "flashgate-admin:9180",
        ] {
            assert!(admin_host_taken(ok, "flashgate-admin"), "{ok}");
        }
        for bad in [
            "evil.example:9180",
            "evil.example",
            "",
            "[evil]:1",
            "127.0.0.1.evil.example",
        ] {
            assert!(!admin_host_taken(bad, "flashgate-admin"), "{bad}");
        }
    }
}
