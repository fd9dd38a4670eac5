//! The worker: turns every admitted request into exactly one order or one explicit failure.
//!
//! - [`stream`]: per sale, a consumer-group reader of `sk:{g:ID}:queue` that writes batches to
//!   MySQL, writes results back, then acks; stale entries of dead workers are claimed, entries
//!   that keep failing go to the dead-letter stream with their unit given back.
//! - [`writer`]: the MySQL transaction for one batch.
//! - [`results`]: writing results to Redis and giving units back for failed entries.
//! - [`closer`]: closes unpaid orders past their time and sells their unit again.
//! - [`rabbit`]: with `queue = "rabbitmq"`, the relay (stream → RabbitMQ, with confirms) and the
//!   consumers (RabbitMQ → MySQL, ack after commit).
//! - [`blocking`]: the bb8 pool of connections for blocking reads.
//!
//! Sales are discovered from MySQL every couple of seconds (one seen for the first time is
//! loaded into Redis); a reader task runs per sale (per stock shard of a split sale: each shard
//! has its own queue). Only unsettled sales are looked at: once the audit settles a sale (over,
//! drained, clean), its readers stop and the worker forgets it, so what the worker does and holds
//! grows with the sales that are live, not with the shop's history; a change unsettles it and
//! its readers start again. The audit (`crate::operators::audit`) and the per-second counts (`crate::operators::tally`)
//! run alongside.

pub mod blocking;
pub mod closer;
pub mod commit;
pub mod fence;
pub mod rabbit;
pub mod results;
pub mod stream;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::domain::Shard;
use crate::plumbing::config::QueueKind;
use crate::state::AppState;

/// How often the worker looks for new sales.
const DISCOVER_EVERY: Duration = Duration::from_secs(2);

/// How long after a sale's end its queue is trusted to stay empty (clocks differ a little).
const OVER_GRACE_MS: i64 = 5_000;

/// What every worker task of this process shares.
pub struct WorkerCtx {
    pub state: AppState,
    /// This process's consumer name in every sale's group.
    pub consumer: String,
    /// This consumer's fence (see [`fence`]): the epoch its batches are read under.
    pub fence: fence::Fence,
    /// Stream entries a task of this process has read and not settled yet: the claimer leaves
    /// them alone (any other entry pending under this consumer is an orphan of a failed batch).
    pub writing: Arc<std::sync::Mutex<HashSet<String>>>,
    pub blocking: blocking::Pool,
}

/// Runs the worker until `shutdown` turns true, then lets each task finish its batch.
pub async fn run(state: AppState, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let consumer = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // orders out to RabbitMQ: the exchange exists before any event (a queue can be bound before
    // the sale), and a broker that refuses it stops the worker here, saying why
    crate::events::relay::declare_exchanges(&state.events, &state.settings.amqp_url).await?;
    let blocking = blocking::pool(state.redis_target.clone());
    let fence = fence::Fence::register(&state.db, &consumer).await?;
    let ctx = Arc::new(WorkerCtx {
        state,
        consumer,
        fence,
        writing: Default::default(),
        blocking,
    });
    tracing::info!(consumer = %ctx.consumer, queue = ?ctx.state.settings.queue, "worker started");

    let mut tasks = JoinSet::new();
    tasks.spawn(heartbeat(ctx.clone(), shutdown.clone()));
    tasks.spawn(closer::run(ctx.clone(), shutdown.clone()));
    // draw sales: the draw at its time, the waitlist's moves (`crate::draws`)
    tasks.spawn(crate::draws::run(
        ctx.state.db.clone(),
        ctx.state.redis.clone(),
        ctx.state.keys.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::operators::tally::flush_every_second(
        ctx.state.tally.clone(),
        ctx.state.redis.clone(),
        ctx.state.keys.clone(),
        shutdown.clone(),
    ));
    if ctx.state.events.on() {
        // orders out: the relays deliver what the outbox holds (`events::relay`)
        let relays = crate::events::relay::Relays {
            db: ctx.state.db.clone(),
            settings: ctx.state.events.clone(),
            metrics: ctx.state.metrics.clone(),
            amqp_url: ctx.state.settings.amqp_url.clone(),
            // behind: a full batch or more of entries in hand (read, not yet settled)
            behind: {
                let (writing, full) = (ctx.writing.clone(), ctx.state.settings.batch_size);
                Arc::new(move || writing.lock().is_ok_and(|w| w.len() >= full))
            },
        };
        tasks.spawn(relays.run(shutdown.clone()));
    }
    let rabbit = ctx.state.settings.queue == QueueKind::Rabbitmq;
    if !rabbit {
        // in rabbitmq mode units in flight sit in the broker too, where the audit cannot see
        // them per sale: the audit is left to the operator (docs/operations.md)
        tasks.spawn(crate::operators::audit::run(
            ctx.state.stores(),
            ctx.state.metrics.clone(),
            Duration::from_millis(ctx.state.settings.audit_interval_ms.max(100)),
            shutdown.clone(),
        ));
    }
    if rabbit {
        for _ in 0..ctx.state.settings.consumers.max(1) {
            tasks.spawn(rabbit::consume(ctx.clone(), shutdown.clone()));
        }
    }

    // each reader's own stop signal: set when its sale settles, or for all at shutdown
    let mut readers: HashMap<Shard, watch::Sender<bool>> = HashMap::new();
    let mut loaded: HashSet<crate::domain::GoodsId> = HashSet::new();
    let mut shutdown_rx = shutdown.clone();
    loop {
        match crate::sales::store::unsettled(&ctx.state.db).await {
            Ok(sales) => {
                // a sale seen for the first time is loaded into Redis (as an edge does at
                // start-up): one created while Redis was away is served once it is back
                for sale in &sales {
                    if loaded.contains(&sale.goods()) {
                        continue;
                    }
                    let st = &ctx.state;
                    let con = &mut st.redis.clone();
                    match crate::sales::store::load(con, &st.db, &st.keys, &st.settings, sale).await
                    {
                        Ok(()) => {
                            loaded.insert(sale.goods());
                        }
                        Err(e) => {
                            tracing::warn!(goods = sale.goods_id, error = %e, "cannot load a sale; retrying")
                        }
                    }
                }
                let wanted: HashSet<Shard> = sales
                    .iter()
                    .flat_map(|s| Shard::all(s.goods(), s.shards()))
                    .collect();
                // settled (or gone) since the last look: stop their readers, forget them
                readers.retain(|shard, stop| {
                    let keep = wanted.contains(shard);
                    if !keep {
                        let _ = stop.send(true);
                    }
                    keep
                });
                let live: HashSet<_> = sales.iter().map(|s| s.goods()).collect();
                loaded.retain(|g| live.contains(g));
                let now = chrono::Utc::now().timestamp_millis();
                for sale in &sales {
                    // a sale over for a while whose queue is empty needs no reader (nothing can
                    // be added to it): the audit settles it; asked again on every pass, so an
                    // entry that does arrive (a clock ahead of Redis's) still gets one
                    let over = now >= sale.end_ms() + OVER_GRACE_MS;
                    for shard in Shard::all(sale.goods(), sale.shards()) {
                        if readers.contains_key(&shard) {
                            continue;
                        }
                        if over {
                            let queue = ctx.state.keys.shard(shard).queue();
                            let len: redis::RedisResult<i64> = redis::cmd("XLEN")
                                .arg(&queue)
                                .query_async(&mut ctx.state.redis.clone())
                                .await;
                            if matches!(len, Ok(0)) {
                                continue;
                            }
                        }
                        let sink = match rabbit {
                            true => {
                                stream::Sink::Rabbit(Box::new(rabbit::Publisher::new(&ctx.state)))
                            }
                            false => stream::Sink::Mysql,
                        };
                        let (stop, stopped) = watch::channel(false);
                        readers.insert(shard, stop);
                        tasks.spawn(stream::run(ctx.clone(), shard, sink, stopped));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list sales (MySQL down?); retrying"),
        }
        ctx.state.metrics.worker_readers.set(readers.len() as i64);
        // finished readers (a settled sale's) are reaped as they go
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
            _ = shutdown_rx.wait_for(|stop| *stop) => break,
        }
    }
    for stop in readers.values() {
        let _ = stop.send(true);
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!("worker stopped");
    Ok(())
}

/// Keeps `worker:alive:CONSUMER` while this worker runs, so the others can tell a dead worker
/// (its entries are taken over within seconds) from a slow one (left alone until
/// `claim_idle_ms`).
async fn heartbeat(ctx: Arc<WorkerCtx>, mut shutdown: watch::Receiver<bool>) {
    let key = ctx.state.keys.worker_alive(&ctx.consumer);
    loop {
        let beat: redis::RedisResult<()> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("PX")
            .arg(crate::plumbing::keys::HEARTBEAT_TTL.as_millis() as u64)
            .query_async(&mut ctx.state.redis.clone())
            .await;
        if let Err(e) = beat {
            tracing::debug!(error = %e, "heartbeat not written");
        }
        // at shutdown the key is left to expire: the batches still finishing stay this
        // worker's until then
        if pause(crate::plumbing::keys::HEARTBEAT_EVERY, &mut shutdown).await {
            return;
        }
    }
}

/// Sleeps for `d`, or less if shutdown comes first; true if shutting down.
pub(crate) async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|stop| *stop) => true,
    }
}
