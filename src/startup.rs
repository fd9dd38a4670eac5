//! Start-up: connect to Redis and MySQL, load the scripts and the sales, bind the listener.
//!
//! `Application::build` binds (port 0 allowed) and exposes `port()`, so tests can start the real
//! server on a random port; `run` serves until the shutdown channel turns true.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::login_pool::LoginPool;
use crate::admission::coalesce::Admitter;
use crate::admission::room::Room;
use crate::admission::scripts::Scripts;
use crate::admission::soldout::{self, LocalAnswers};
use crate::http;
use crate::http::routes::Surface;
use crate::http::static_files::Assets;
use crate::plumbing::breaker::Breaker;
use crate::plumbing::config::{self, Settings};
use crate::plumbing::db;
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::Target;
use crate::sales::store;
use crate::state::AppState;

/// How often an edge drops the per-sale things it remembers that have gone stale.
pub const TIDY_EVERY: Duration = Duration::from_secs(30);

/// Every `every`, drops stale sold-out flags, buyer marks, session copies, old logouts, shard
/// counts, room checks and idle admission lanes: what an edge keeps follows the sales being
/// bought and the shoppers buying, not every sale and shopper it has seen.
async fn tidy_every(every: Duration, state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // the per-shopper maps are walked whole: on a blocking thread, never an async worker
        // (requests go on meanwhile: the maps take no lock)
        let (local, sessions, logouts, identity) = (
            state.local.clone(),
            state.sessions.clone(),
            state.logouts.clone(),
            state.identity.clone(),
        );
        let _ = tokio::task::spawn_blocking(move || {
            local.tidy();
            sessions.tidy();
            logouts.tidy();
            if let Some(shop) = &identity.shop {
                shop.tidy();
            }
        })
        .await;
        state.shapes.tidy();
        state.room.tidy();
        state.admitter.tidy();
        if let Err(e) = state.path_seal.refresh(&state.redis, &state.keys).await {
            tracing::debug!(error = %e, "reading the hidden paths' key failed; the one held stays");
        }
    }
}

/// How long one Redis command may take before the edge answers 503 instead of hanging.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// Opens every connection the edge and the worker need.
pub async fn connect(settings: Settings) -> anyhow::Result<AppState> {
    // a refusal names the variables an operator sets (`FLASHGATE_CHECKOUT_URL`), not fields
    let named = |e: anyhow::Error| anyhow::anyhow!("{}", config::name_variables(&format!("{e:#}")));
    settings.validate().map_err(named)?;
    // the shop's side (its keys, the grant key, the checkout) is checked by its own module
    crate::identity::check(&settings).map_err(named)?;
    // orders out: a sink that cannot work refuses to start, saying which
    let events = Arc::new(crate::events::EventSettings::from_settings(&settings).map_err(named)?);
    let target = Target::parse(&settings.redis_url).context("parsing FLASHGATE_REDIS_URL")?;
    let breaker = Arc::new(Breaker::default());
    // every command on the shared connection reports its outcome to the breaker
    let redis = target
        .connect(REDIS_TIMEOUT)
        .await
        .with_context(|| format!("connecting to Redis at {}", db::redact(&settings.redis_url)))?
        .with_breaker(breaker.clone());
    let (replicas, confirm_why) =
        crate::plumbing::replicas::choose(&target, &mut redis.clone(), settings.redis_ack_replicas)
            .await
            .context("choosing how many replicas confirm a write (FLASHGATE_REDIS_ACK_REPLICAS)")?;
    tracing::info!(
        mode = target.mode().as_str(),
        primary = target.primary().unwrap_or_else(|| "per slot".into()),
        replicas,
        "replica confirmation: {confirm_why}"
    );
    let confirm = (replicas > 0).then(|| {
        Arc::new(crate::plumbing::replicas::Confirm::new(
            target.clone(),
            breaker.clone(),
            replicas,
            settings.redis_ack_timeout_ms,
        ))
    });
    let db = db::connect(&settings.database_url, 16).await?;
    let scripts = Scripts::load(settings.lua_dir.clone())?;
    scripts.preload(&mut redis.clone()).await?;
    let assets = Assets::load(&settings.public_dir)?;
    if !settings.captcha {
        tracing::warn!(
            "!!! CAPTCHA IS OFF: anyone with a session can fetch a hidden path. For load tests only. !!!"
        );
    }
    let settings_proxies = settings.trusted_proxies.clone();
    let (settings_session_cache_ms, settings_session_cache_entries) =
        (settings.session_cache_ms, settings.session_cache_entries);
    let scripts = Arc::new(scripts);
    // a released version of the scripts (kept in Redis) is used from the first request on
    // channels and script libraries are per server, not per db: they carry the db (`Keys`)
    let keys = Keys::new(&settings.namespace).on_db(redis::aio::ConnectionLike::get_db(&redis));
    let mut watcher = crate::admission::script_release::Watcher::new(
        redis.clone(),
        keys.clone(),
        scripts.clone(),
    );
    watcher.follow().await;
    let metrics = Arc::new(Metrics::default());
    let admitter = Arc::new(Admitter::new(
        redis.clone(),
        confirm.clone(),
        keys.clone(),
        scripts.clone(),
        metrics.clone(),
        settings.admit_batch,
    ));
    let room = Arc::new(Room::new(
        redis.clone(),
        keys.clone(),
        scripts.clone(),
        metrics.clone(),
    ));
    let identity = Arc::new(crate::identity::Identity::from_settings(
        &settings,
        metrics.clone(),
    )?);
    if let Some(shop) = &identity.shop {
        shop.start().await;
    }
    let push = Arc::new(crate::admission::push::Hub::new(
        redis.clone(),
        keys.clone(),
        metrics.clone(),
        // streams never take the last fifth of the connections: ordinary requests keep them
        settings
            .push_max_connections
            .min(settings.max_connections - settings.max_connections / 5),
        settings.push_per_address,
    ));
    // the paths' key, shared through Redis; with Redis down at start, a key of this edge's own
    // until the refresh finds the shared one (paths it sealed meanwhile still open after)
    let path_seal = match crate::admission::path_seal::PathSeal::load(&redis, &keys).await {
        Ok(seal) => seal,
        Err(e) => {
            tracing::warn!(error = %e, "the hidden paths' key could not be read: one of this edge's own for now");
            crate::admission::path_seal::PathSeal::with_key(rand::random())
        }
    };
    let login_pool = Arc::new(LoginPool::new(
        settings.login_threads,
        settings.login_queue,
        settings.login_nice,
    ));
    Ok(AppState {
        login_pool,
        admitter,
        keys,
        settings: Arc::new(settings),
        redis,
        redis_target: target,
        confirm,
        confirm_why: Arc::new(confirm_why),
        db,
        scripts,
        local: Arc::new(LocalAnswers::default()),
        sessions: Arc::new(crate::accounts::session::SessionCache::new(
            Duration::from_millis(settings_session_cache_ms),
            settings_session_cache_entries,
        )),
        logouts: Arc::default(),
        identity,
        events,
        shapes: Arc::default(),
        room,
        push,
        path_seal: Arc::new(path_seal),
        metrics,
        tally: Arc::default(),
        assets: Arc::new(assets),
        draws: Arc::default(),
        redis_breaker: breaker,
        proxies: Arc::new(crate::http::proxy::Trusted::parse(&settings_proxies)?),
    })
}

/// The edge, bound and warmed up, not yet serving.
pub struct Application {
    listener: TcpListener,
    port: u16,
    /// The admin API's own listener (never the public one), if it is on.
    admin: Option<(TcpListener, u16)>,
    state: AppState,
}

impl Application {
    /// Loads every sale into Redis and binds `settings.listen`.
    pub async fn build(state: AppState) -> anyhow::Result<Self> {
        let sales = store::warm_up(
            &mut state.redis.clone(),
            &state.db,
            &state.keys,
            &state.settings,
        )
        .await?;
        tracing::info!(sales, "warm-up done");
        let listener = TcpListener::bind(&state.settings.listen)
            .await
            .with_context(|| format!("binding {}", state.settings.listen))?;
        let port = listener.local_addr()?.port();
        let admin = match state.settings.admin_address() {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the admin listener {addr}"))?;
                let p = l.local_addr()?.port();
                Some((l, p))
            }
            None => None,
        };
        Ok(Self {
            listener,
            port,
            admin,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port, if the admin API is on.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|(_, p)| *p)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` turns true; the restock listener runs alongside, and a tidy-up
    /// that drops what the edge remembers of sales nobody asks about.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let state = self.state;
        tokio::spawn(tidy_every(TIDY_EVERY, state.clone(), shutdown.clone()));
        let scripts =
            tokio::spawn(watch_scripts(&state).run(state.redis_target.clone(), shutdown.clone()));
        tracing::info!(port = self.port, "flashgate edge listening");
        let listener = tokio::spawn(soldout::listen(
            state.redis_target.clone(),
            soldout::Listeners {
                restock_channel: state.keys.restock_channel(),
                session_channel: state.keys.session_channel(),
                local: state.local.clone(),
                shapes: state.shapes.clone(),
                sessions: state.sessions.clone(),
                logouts: state.logouts.clone(),
                redis: state.redis.clone(),
                keys: state.keys.clone(),
                results_channel: state.keys.results_channel(),
                push: state.push.clone(),
            },
            shutdown.clone(),
        ));
        let tally = tokio::spawn(crate::operators::tally::flush_every_second(
            state.tally.clone(),
            state.redis.clone(),
            state.keys.clone(),
            shutdown.clone(),
        ));
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let admin = self.admin.map(|(admin, port)| {
            tracing::info!(port, "flashgate admin API listening");
            tokio::spawn(http::serve(
                admin,
                state.clone(),
                Surface::Admin,
                stopped(shutdown.clone()),
            ))
        });
        http::serve(
            self.listener,
            state,
            Surface::Public,
            stopped(shutdown.clone()),
        )
        .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        let _ = listener.await;
        let _ = tally.await;
        let _ = scripts.await;
    }
}

/// The task that keeps this process on the released version of the Lua scripts and reports
/// what it runs (`admission::script_release`); `run` it until shutdown.
pub fn watch_scripts(state: &AppState) -> crate::admission::script_release::Watcher {
    crate::admission::script_release::Watcher::new(
        // its polls and retries while Redis is away are not requests: the breaker counts those
        state.redis.clone().without_breaker(),
        state.keys.clone(),
        state.scripts.clone(),
    )
}

/// For `flashgate worker`: `/healthz`, `/readyz` and `/metrics` on `worker_listen`, unless it
/// is `off`, so Prometheus can scrape a worker that runs on its own.
pub async fn serve_worker_ops(
    state: &AppState,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let addr = state.settings.worker_listen.clone();
    if addr.is_empty() || addr.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding worker_listen {addr}"))?;
    tracing::info!(%addr, "worker metrics listening");
    let mut stop = shutdown;
    Ok(Some(tokio::spawn(http::serve(
        listener,
        state.clone(),
        Surface::Ops,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ))))
}

/// A shutdown channel that turns true on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

/// Reloads the Lua scripts on every SIGHUP.
pub fn reload_scripts_on_hup(state: AppState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match state.scripts.reload() {
                Ok(_) => {
                    if let Err(e) = state.scripts.preload(&mut state.redis.clone()).await {
                        tracing::warn!(error = %e, "scripts reloaded but SCRIPT LOAD failed (EVALSHA will retry)");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "script reload failed; keeping the old scripts")
                }
            }
        }
    });
}
