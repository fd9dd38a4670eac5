//! The Redis-stream consumer of one sale: read a batch through the consumer group, write it to
//! MySQL in one transaction, write the results back, then ack. Never ack before commit.
//!
//! Faults:
//! - MySQL down: the batch is retried with backoff and nothing is acked; meanwhile the worker
//!   re-claims its own entries (`XCLAIM … JUSTID`, which resets their idle time without counting a
//!   delivery) so no other worker takes them over while it is alive.
//! - A worker that dies mid-batch: its entries stay pending; its heartbeat
//!   (`worker:alive:CONSUMER`) expires within [`keys::HEARTBEAT_TTL`], and a live worker then
//!   `XCLAIM`s them once idle [`TAKEOVER_IDLE`] (the writer recognises a replay of an entry the
//!   dead worker had committed). A worker that is alive but slow keeps its entries until
//!   `claim_idle_ms`. Entries pending under this worker that none of its tasks holds (a batch
//!   that failed) are picked up again the same way.
//! - Redis failing over: the post-commit step (results and acks) is retried by the batch's own
//!   task until the new primary answers; a batch is written to MySQL only once the replicas
//!   hold its entries (`plumbing::replicas`), and entries the new primary does not hold (lost
//!   with the old one) are not written at all.
//! - An entry delivered `max_deliveries` times (it keeps killing workers), or one that cannot be
//!   parsed, goes to the dead-letter stream `sk:{g:ID}:dead` and its unit is given back.
//! - Redis gone: reads fail, the reader backs off and reconnects; the stream and its pending
//!   entries are where they were (with persistence on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, ErrorKind, RedisResult};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::writer::{Admitted, Holder, Written};
use super::{WorkerCtx, blocking, commit, fence, pause, rabbit, results};
use crate::domain::{Shard, UserId};
use crate::plumbing::keys;
use crate::plumbing::retry::Backoff;
use crate::sales::store;

/// Where a reader sends the entries it takes from the stream.
pub enum Sink {
    /// Straight into MySQL (the default).
    Mysql,
    /// Into RabbitMQ (the relay of `queue = "rabbitmq"`); the channel is opened on first use.
    Rabbit(Box<rabbit::Publisher>),
}

/// Runs the reader of one sale's queue until shutdown.
pub async fn run(
    ctx: Arc<WorkerCtx>,
    shard: Shard,
    mut sink: Sink,
    mut shutdown: watch::Receiver<bool>,
) {
    // Redis errors here: back quickly after a failover (100 ms doubling up to 2 s)
    let mut backoff = Backoff::listener();
    let mut last_claim = Instant::now() - Duration::from_secs(3600);
    // MySQL batches of this sale being written now: several overlap, each on its own connection
    let mut in_flight: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let writers = ctx.state.settings.writers.max(1);
    // with MySQL as the sink, claims run in a task of their own, so waiting on another worker's
    // fence never slows this reader down; it ends with the reader (see `Claimer`)
    let mut claimer: Option<Claimer> = None;
    loop {
        while let Some(done) = in_flight.try_join_next() {
            report(shard, done);
        }
        if *shutdown.borrow() {
            while let Some(done) = in_flight.join_next().await {
                report(shard, done);
            }
            if let Some(mut c) = claimer.take() {
                let _ = (&mut c.0).await; // it finishes the batch it is writing, as the rest do
            }
            return;
        }
        let claim_every = Duration::from_millis(ctx.state.settings.claim_idle_ms / 2)
            .clamp(Duration::from_millis(100), CLAIM_EVERY);
        let step = async {
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                match sink {
                    Sink::Mysql => {
                        if claimer.as_ref().is_none_or(|c| c.0.is_finished()) {
                            let (ctx, mut shutdown) = (ctx.clone(), shutdown.clone());
                            claimer = Some(Claimer(tokio::spawn(async move {
                                let mut sink = Sink::Mysql;
                                if let Err(e) =
                                    claim_stale(&ctx, shard, &mut sink, &mut shutdown).await
                                {
                                    tracing::warn!(goods = shard.goods.get(), shard = shard.index, error = %format!("{e:#}"), "claiming stale entries failed; trying again later");
                                }
                            })));
                        }
                    }
                    Sink::Rabbit(_) => claim_stale(&ctx, shard, &mut sink, &mut shutdown).await?,
                }
            }
            // the fence epoch held while these entries are ours (see `fence`)
            let epoch = ctx.fence.epoch();
            let entries = read(&ctx, shard).await?;
            if entries.is_empty() {
                return anyhow::Ok(());
            }
            // these entries are this process's from now until settled (the claimer leaves them)
            let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
            let writing = Writing::new(&ctx, &ids);
            if let Sink::Mysql = sink {
                while in_flight.len() >= writers {
                    if let Some(done) = in_flight.join_next().await {
                        report(shard, done);
                    }
                }
                let (ctx, mut shutdown) = (ctx.clone(), shutdown.clone());
                in_flight.spawn(async move {
                    let _writing = writing;
                    process(&ctx, shard, entries, epoch, &mut Sink::Mysql, &mut shutdown).await
                });
            } else {
                process(&ctx, shard, entries, epoch, &mut sink, &mut shutdown).await?;
                drop(writing);
            }
            anyhow::Ok(())
        };
        match step.await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                // only Redis's own errors count as such (a RabbitMQ publish can fail here too)
                if e.chain().any(|c| c.is::<redis::RedisError>()) {
                    ctx.state.metrics.redis_errors.inc();
                }
                let wait = backoff.next_delay();
                tracing::warn!(goods = shard.goods.get(), shard = shard.index, error = %format!("{e:#}"), ?wait, "stream reader failed; retrying");
                if pause(wait, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The reader's claim task, stopped when the reader is: a worker that is killed (its tasks
/// aborted) leaves no claimer behind working under its name.
struct Claimer(tokio::task::JoinHandle<()>);

impl Drop for Claimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Logs a batch task that failed: its entries stay pending and are claimed again once idle.
fn report(shard: Shard, done: Result<anyhow::Result<()>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(goods = shard.goods.get(), shard = shard.index, error = %format!("{e:#}"), "a batch failed; its entries will be claimed again")
        }
        Err(e) => {
            tracing::error!(goods = shard.goods.get(), shard = shard.index, error = %e, "a batch task panicked; its entries will be claimed again")
        }
    }
}

/// `XGROUP CREATE … 0 MKSTREAM`, tolerating an existing group.
pub async fn ensure_group<C: redis::aio::ConnectionLike + Send>(
    con: &mut C,
    queue: &str,
) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(queue)
        .arg(keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// New entries for this consumer, blocking up to [`blocking::BLOCK`].
async fn read(ctx: &WorkerCtx, shard: Shard) -> RedisResult<Vec<StreamId>> {
    let queue = ctx.state.keys.shard(shard).queue();
    let mut con =
        ctx.blocking.get().await.map_err(|e| {
            redis::RedisError::from((ErrorKind::Io, "blocking pool", e.to_string()))
        })?;
    let opts = StreamReadOptions::default()
        .group(keys::GROUP, &ctx.consumer)
        .count(ctx.state.settings.batch_size)
        .block(blocking::BLOCK.as_millis() as usize);
    let reply: RedisResult<Option<StreamReadReply>> =
        con.xread_options(&[&queue], &[">"], &opts).await;
    match reply {
        Ok(r) => Ok(r
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default()),
        Err(e) if e.code() == Some("NOGROUP") => {
            ensure_group(&mut *con, &queue).await?;
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}

/// How often a reader looks for entries to take over.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// A dead worker's entries (its heartbeat gone), and this worker's own orphans, are taken once
/// idle this long.
pub const TAKEOVER_IDLE: Duration = Duration::from_secs(2);

/// Takes over entries left pending: a dead worker's (no heartbeat) and this worker's own that
/// no task holds, once idle [`TAKEOVER_IDLE`]; a living worker's once idle `claim_idle_ms`.
/// Dead-letters those delivered too often.
async fn claim_stale(
    ctx: &WorkerCtx,
    shard: Shard,
    sink: &mut Sink,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let s = &ctx.state.settings;
    let queue = ctx.state.keys.shard(shard).queue();
    let mut con = ctx.state.redis.clone();
    loop {
        // [id, consumer, idle ms, deliveries] of entries idle at least TAKEOVER_IDLE
        let quick = (TAKEOVER_IDLE.as_millis() as u64).min(s.claim_idle_ms);
        let pending: Vec<Pending> = redis::cmd("XPENDING")
            .arg(&queue)
            .arg(keys::GROUP)
            .arg("IDLE")
            .arg(quick)
            .arg("-")
            .arg("+")
            .arg(s.batch_size)
            .query_async(&mut con)
            .await
            .or_else(|e| {
                if e.code() == Some("NOGROUP") {
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            })?;
        // entries this process is writing now are not stale, only slow: leave them to their
        // task; another living worker's are taken only past claim_idle_ms
        let dead = dead_owners(ctx, &pending).await?;
        let pending: Vec<Pending> = {
            let busy = ctx.writing.lock().expect("writing lock");
            pending
                .into_iter()
                .filter(|p| !busy.contains(&p.0))
                .filter(|p| p.2 >= s.claim_idle_ms || p.1 == ctx.consumer || dead.contains(&p.1))
                .collect()
        };
        let early = pending.iter().filter(|p| p.2 < s.claim_idle_ms).count();
        // fence off every other owner first; an owner still inside a transaction keeps its
        // entries this round (it is alive and working)
        let pending = fence_owners(ctx, pending).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let epoch = ctx.fence.epoch();
        let ids: Vec<&str> = pending.iter().map(|p| p.0.as_str()).collect();
        let _writing = Writing::new(ctx, &ids);
        let claimed: StreamClaim = con
            .xclaim(&queue, keys::GROUP, &ctx.consumer, quick, &ids)
            .await?;
        ctx.state.metrics.takeovers.inc_by(early as u64);
        let deliveries: std::collections::HashMap<&str, u64> =
            pending.iter().map(|p| (p.0.as_str(), p.3 + 1)).collect();
        let (dead, live): (Vec<StreamId>, Vec<StreamId>) = claimed
            .ids
            .into_iter()
            .partition(|e| deliveries.get(e.id.as_str()).copied().unwrap_or(0) > s.max_deliveries);
        tracing::info!(
            goods = shard.goods.get(),
            shard = shard.index,
            claimed = live.len(),
            before_claim_idle = early,
            dead = dead.len(),
            "claimed stale entries"
        );
        for entry in dead {
            give_up_on(ctx, shard, &entry).await?;
        }
        if !live.is_empty() {
            process(ctx, shard, live, epoch, sink, shutdown).await?;
        }
        if *shutdown.borrow() {
            return Ok(());
        }
    }
}

type StreamClaim = redis::streams::StreamClaimReply;

/// The other owners among `pending` whose heartbeat is gone.
async fn dead_owners(
    ctx: &WorkerCtx,
    pending: &[Pending],
) -> RedisResult<std::collections::BTreeSet<String>> {
    let owners: std::collections::BTreeSet<&str> = pending
        .iter()
        .map(|p| p.1.as_str())
        .filter(|o| *o != ctx.consumer)
        .collect();
    let mut dead = std::collections::BTreeSet::new();
    for owner in owners {
        let alive: bool = redis::cmd("EXISTS")
            .arg(ctx.state.keys.worker_alive(owner))
            .query_async(&mut ctx.state.redis.clone())
            .await?;
        if !alive {
            dead.insert(owner.to_string());
        }
    }
    Ok(dead)
}

/// Marks entries as held by a task of this process for as long as it lives (dropped on
/// return, error or panic alike).
struct Writing {
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    ids: Vec<String>,
}

impl Writing {
    fn new(ctx: &WorkerCtx, ids: &[&str]) -> Self {
        let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        ctx.writing
            .lock()
            .expect("writing lock")
            .extend(ids.iter().cloned());
        Self {
            set: ctx.writing.clone(),
            ids,
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut w = self.set.lock().expect("writing lock");
        for id in &self.ids {
            w.remove(id);
        }
    }
}

/// `(entry id, owner, idle ms, deliveries)`, as XPENDING lists them.
type Pending = (String, String, u64, u64);

/// Bumps the fence of every other owner of `pending`; keeps the entries of the owners it could
/// fence, all of them unless one is still inside a transaction. This worker's own entries need no
/// fence: none of its tasks is writing them (those were left out before).
async fn fence_owners(ctx: &WorkerCtx, pending: Vec<Pending>) -> anyhow::Result<Vec<Pending>> {
    if ctx.state.settings.queue != crate::plumbing::config::QueueKind::Redis {
        return Ok(pending); // the relay writes no MySQL: nothing to fence
    }
    let owners: std::collections::BTreeSet<&str> = pending
        .iter()
        .map(|p| p.1.as_str())
        .filter(|o| *o != ctx.consumer)
        .collect();
    let mut busy = std::collections::BTreeSet::new();
    for owner in owners {
        if !fence::bump(&ctx.state.db, owner).await? {
            tracing::info!(%owner, "a worker is still inside a transaction; its entries wait");
            busy.insert(owner.to_string());
        }
    }
    Ok(pending
        .into_iter()
        .filter(|p| !busy.contains(&p.1))
        .collect())
}

/// The buys an entry holds: `u` is one user id, or several comma-separated (one entry per
/// `lua/admit.lua` call; an entry of the single-shopper form an older edge wrote reads the
/// same); `q` their quantities and `k` their key digests (`-`: none), in the same order, when
/// some buy was not a keyless single unit (absent, as every entry before quantities: 1 each,
/// no keys). `None` if anything is malformed (the whole entry is then dead-lettered).
fn parse(entry: &StreamId) -> Option<Vec<Admitted>> {
    let uids: String = entry.get("u")?;
    let quantities: Option<String> = entry.get("q");
    let keys: Option<String> = entry.get("k");
    let n = uids.split(',').count();
    let quantities: Vec<u32> = match &quantities {
        None => vec![1; n],
        Some(q) => q
            .split(',')
            .map(|q| q.parse().ok().filter(|&q| q >= 1))
            .collect::<Option<_>>()?,
    };
    let keys: Vec<Option<String>> = match &keys {
        None => vec![None; n],
        Some(k) => k
            .split(',')
            .map(|k| match k {
                "-" => Some(None),
                k if crate::domain::lower_hex(k, 32) => Some(Some(k.to_string())),
                _ => None,
            })
            .collect::<Option<_>>()?,
    };
    if quantities.len() != n || keys.len() != n {
        return None;
    }
    uids.split(',')
        .zip(quantities)
        .zip(keys)
        .map(|((u, quantity), key)| {
            Some(Admitted {
                entry_id: entry.id.clone(),
                user: UserId::parse(u).ok()?,
                quantity,
                key,
            })
        })
        .collect()
}

/// An entry delivered too often: the shoppers whose order was committed after all (its worker
/// stalled between commit and ack, and is fenced off now) are settled as those orders; the
/// rest are dead-lettered and their units given back.
async fn give_up_on(ctx: &WorkerCtx, shard: Shard, entry: &StreamId) -> anyhow::Result<()> {
    let Some(admitted) = parse(entry) else {
        dead_letter(ctx, shard, entry, &[], "too many deliveries").await?;
        return Ok(());
    };
    let (mut settled, mut written, mut lost) = (Vec::new(), Vec::new(), Vec::new());
    for a in admitted {
        let order: Option<i64> = sqlx::query_scalar(
            "SELECT order_id FROM seckill_order WHERE user_id = ? AND goods_id = ? AND buy_key = ?",
        )
        .bind(a.user.get())
        .bind(shard.goods.get())
        .bind(a.key_column())
        .fetch_optional(&ctx.state.db)
        .await?;
        match order {
            Some(order) => {
                settled.push(a);
                written.push(Written::Existing(order));
            }
            None => lost.push(a),
        }
    }
    if lost.is_empty() {
        results::finish(&ctx.state, shard, &settled, &written, &[&entry.id]).await?;
    } else {
        results::finish(&ctx.state, shard, &settled, &written, &[]).await?;
        dead_letter(ctx, shard, entry, &lost, "too many deliveries").await?;
    }
    commit::record(&ctx.state, shard.goods, &written);
    Ok(())
}

/// Moves an entry to the dead-letter stream, gives back the units and allowance of `buys` (none
/// for an entry that cannot be read: its ids are kept as they were, for a person to look at),
/// acks it.
async fn dead_letter(
    ctx: &WorkerCtx,
    shard: Shard,
    entry: &StreamId,
    buys: &[Admitted],
    reason: &str,
) -> anyhow::Result<()> {
    let users: Vec<UserId> = buys.iter().map(|a| a.user).collect();
    let users = &users[..];
    let state = &ctx.state;
    let k = state.keys.shard(shard);
    let mut con = state.redis.clone();
    let listed: String = if users.is_empty() {
        entry.get("u").unwrap_or_default()
    } else {
        let ids: Vec<String> = users.iter().map(|u| u.get().to_string()).collect();
        ids.join(",")
    };
    let request: String = entry.get("r").unwrap_or_default();
    tracing::error!(goods = shard.goods.get(), shard = shard.index, entry = %entry.id, request_id = %request, user = %listed, reason, "dead-lettering a queue entry");
    // the shoppers told "queued" hear it failed (orders out), before the entry leaves the queue:
    // a crash in between writes the same event again (its id names the entry), nothing is lost
    let given_up: Vec<_> = buys.iter().map(Admitted::given_up).collect();
    crate::events::outbox::failed_buys(&state.db, &state.events, shard.goods, &given_up, reason)
        .await?;
    let _: String = con
        .xadd(
            k.dead(),
            "*",
            &[
                ("entry", entry.id.as_str()),
                ("u", listed.as_str()),
                ("reason", reason),
            ],
        )
        .await?;
    for a in buys {
        store::give_back(
            &mut con,
            &state.keys,
            &state.scripts,
            shard,
            a.user,
            store::GiveBack::DeadLettered,
            store::Units {
                quantity: a.quantity,
                key: a.key_column(),
            },
        )
        .await?;
    }
    results::finish(state, shard, &[], &[], &[&entry.id]).await?;
    state.metrics.dead_letters.inc();
    Ok(())
}

/// Hands one batch to the sink, then settles it in the stream. For MySQL: write it in one
/// transaction (retrying until it commits or shutdown), write the results, ack. For RabbitMQ:
/// publish it and wait for the broker's confirms, then ack.
async fn process(
    ctx: &WorkerCtx,
    shard: Shard,
    entries: Vec<StreamId>,
    epoch: i64,
    sink: &mut Sink,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut batch: Vec<Admitted> = Vec::with_capacity(entries.len());
    let mut ids: Vec<&str> = Vec::with_capacity(entries.len());
    for entry in &entries {
        match parse(entry) {
            Some(a) => {
                batch.extend(a);
                ids.push(entry.id.as_str());
            }
            None => dead_letter(ctx, shard, entry, &[], "malformed entry").await?,
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    // written only once replicas hold the entries, and only those this primary holds
    if let Some(confirm) = &ctx.state.confirm {
        let Some(held) = confirm_entries(ctx, confirm, shard, &ids, shutdown).await? else {
            return Ok(()); // shutting down: the entries stay pending
        };
        if held.len() < ids.len() {
            tracing::warn!(
                goods = shard.goods.get(),
                shard = shard.index,
                lost = ids.len() - held.len(),
                "queue entries read before a failover are not on the new primary: not written (their buys were lost with the old primary, before any replica confirmed them)"
            );
            batch.retain(|a| held.contains(&a.entry_id));
            ids.retain(|id| held.contains(*id));
            if batch.is_empty() {
                return Ok(());
            }
        }
    }
    match sink {
        Sink::Mysql => {
            let holder = Holder {
                consumer: &ctx.consumer,
                epoch,
            };
            // an entry holds every shopper one admit.lua call admitted, so a read of
            // `batch_size` entries can hold more orders than one transaction writes: they go in
            // transactions of at most IDS_PER_BLOCK, and the entries are acked once all commit
            // (a crash between two leaves them pending; the orders already written are
            // recognised when they come again)
            let chunks: Vec<&[Admitted]> = batch
                .chunks(super::writer::IDS_PER_BLOCK as usize)
                .collect();
            for (n, chunk) in chunks.iter().enumerate() {
                let Some(written) =
                    commit::write_with_retry(ctx, shard, chunk, Some(holder), shutdown).await?
                else {
                    // shutting down, or taken over: the entries stay pending for their owner
                    return Ok(());
                };
                // the last chunk's results and the acks go in one MULTI, as for a small batch
                let ack: &[&str] = if n + 1 == chunks.len() { &ids } else { &[] };
                if !finish_with_retry(ctx, shard, chunk, &written, ack, shutdown).await {
                    return Ok(()); // shutdown: the entries stay pending, found again as written
                }
                commit::record(&ctx.state, shard.goods, &written);
            }
        }
        Sink::Rabbit(publisher) => {
            publisher.publish(shard, &batch).await?;
            finish_with_retry(ctx, shard, &[], &[], &ids, shutdown).await;
        }
    }
    Ok(())
}

/// The post-commit step (results, acks), tried again until Redis answers: after a failover
/// the batch's own task finishes it as soon as the new primary serves, instead of leaving it
/// for a claim. False if shutdown came first.
async fn finish_with_retry(
    ctx: &WorkerCtx,
    shard: Shard,
    batch: &[Admitted],
    written: &[Written],
    ack: &[&str],
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Backoff::listener();
    loop {
        match results::finish(&ctx.state, shard, batch, written, ack).await {
            Ok(()) => return true,
            Err(e) => {
                ctx.state.metrics.redis_errors.inc();
                let wait = backoff.next_delay();
                tracing::warn!(goods = shard.goods.get(), shard = shard.index, error = %e, ?wait, "writing results after the commit failed; retrying");
                if pause(wait, shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Waits until the replicas hold `ids` (`WAIT` after a write on the same socket, see
/// `plumbing::replicas`); answers the ids the primary holds (an entry read from an old primary
/// that died before replicating it is not there). `None` at shutdown.
async fn confirm_entries(
    ctx: &WorkerCtx,
    confirm: &crate::plumbing::replicas::Confirm,
    shard: Shard,
    ids: &[&str],
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Option<std::collections::HashSet<String>>> {
    let k = ctx.state.keys.shard(shard);
    let queue = k.queue();
    // each entry looked up, then one write (so the WAIT covers this connection's offset, which
    // is past every entry the primary holds)
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("XRANGE").arg(&queue).arg(*id).arg(*id);
    }
    pipe.cmd("HINCRBY").arg(k.meta()).arg("confirms").arg(1);
    let mut backoff = Backoff::listener();
    loop {
        ctx.state.metrics.confirm_waiting.inc();
        let run = confirm.run(&pipe, &queue).await;
        ctx.state.metrics.confirm_waiting.dec();
        let problem = match run {
            Ok((replies, true)) => {
                let held = ids
                    .iter()
                    .zip(&replies)
                    .filter(|(_, r)| matches!(r, redis::Value::Array(a) if !a.is_empty()))
                    .map(|(id, _)| id.to_string())
                    .collect();
                return Ok(Some(held));
            }
            Ok((_, false)) => {
                ctx.state.metrics.confirm_timeouts.inc();
                "replicas did not confirm the batch's entries in time".to_string()
            }
            Err(e) => {
                ctx.state.metrics.redis_errors.inc();
                e.to_string()
            }
        };
        let wait = backoff.next_delay();
        tracing::warn!(goods = shard.goods.get(), shard = shard.index, %problem, ?wait, "not writing a batch until replicas hold it");
        if pause(wait, shutdown).await {
            return Ok(None);
        }
    }
}
