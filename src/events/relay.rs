//! The relay: in the worker process, one task per sink (two for RabbitMQ), delivering what the
//! outbox holds.
//!
//! A pass, in one MySQL transaction (READ COMMITTED: the claims lock the rows they take and no
//! gaps, so a worker's batch never waits to insert its rows behind a pass):
//! 1. claims up to [`CLAIM`] due events with `SELECT … FOR UPDATE SKIP LOCKED`: delivery rows of
//!    their own (`state` pending, `next_at` past: paid, closed, failed, retries) and, in the room
//!    left, the oldest pending batches of created events (`event_batch`, a row per worker batch
//!    and sink). Another worker's relay skips what this one holds, so no event is sent by two at
//!    the same time, and a relay that dies (its connection gone) lets go of its claim by itself;
//! 2. keeps back an order's paid or closed event while its created event is pending (in a
//!    delivery row or a batch not yet done, whichever worker holds it);
//! 3. sends them, at most `webhook_in_flight` at a time and `webhook_rate` a second (the pace is
//!    the sink's, kept across passes), to the webhook or RabbitMQ (publisher confirms: an event
//!    counts as delivered only once the broker confirmed it);
//! 4. records what happened and commits: a batch is done, and each of its events the sink did
//!    not take gets a delivery row of its own; a delivery row is delivered, retried at `next_at`
//!    with exponential backoff and jitter (or after a 429's `Retry-After`), or parked past
//!    `events_retry_horizon_s` of failing or at once for an answer that will not change. A
//!    crash before the commit leaves every claimed event pending: it is sent again (at least
//!    once; receivers deduplicate by id).
//!
//! Between passes: a pass that delivered nothing and has something to retry (the endpoint is
//! down) backs the whole sink off, 1 s doubling to 8 s, so the events wait in their batches
//! rather than each failing on its own; and while the worker's order writing is behind (a full
//! batch or more of entries in hand: a sale's opening burst) the relay gives way, up to
//! `events_give_way_ms` (2 s) at a time, so that shoppers' orders are written before the shop
//! hears of them.
//!
//! A 410 disables the endpoint (`event_sink.disabled_at`) until an operator enables it; its
//! events stay pending meanwhile.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::Confirmation;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use sqlx::MySqlPool;
use tokio::sync::watch;

use super::webhook::{self, Outcome};
use super::{EventSettings, EventType, Sink, SinkKind};
use crate::plumbing::metrics::Metrics;

/// Deliveries claimed per pass, at most.
pub const CLAIM: usize = 2000;
/// Batches of created events a pass claims, at most (it takes as many as fit in [`CLAIM`]).
pub const BATCH_CLAIM: usize = 16;
/// RabbitMQ publishes handed to the connection together.
pub const PUBLISH_WINDOW: usize = 256;
/// Relay tasks per RabbitMQ sink in one worker.
pub const RABBIT_PASSES: usize = 2;
/// A pass that found nothing due waits this long before the next.
pub const IDLE: Duration = Duration::from_millis(200);
/// The longest wait between two attempts of one event.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before attempt `attempts + 1` of an event: 1 s doubled per attempt, at most
/// [`MAX_BACKOFF`], give or take 20%.
pub fn backoff(attempts: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempts.min(9)).min(MAX_BACKOFF);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Whether the worker's order writing is behind (it holds a full batch or more of entries).
pub type Behind = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the relays of one worker need.
#[derive(Clone)]
pub struct Relays {
    pub db: MySqlPool,
    pub settings: Arc<EventSettings>,
    pub metrics: Arc<Metrics>,
    pub amqp_url: String,
    pub behind: Behind,
}

impl Relays {
    /// Runs one relay per sink until `shutdown`.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for sink in self.settings.sinks.clone() {
            // a broker sink gets two passes at once (each its own channel; `SKIP LOCKED` keeps
            // them apart, as it does two workers): one publishes while the other's MySQL work
            // runs. A webhook sink keeps one, whose pace is the endpoint's rate.
            let passes = match sink.kind {
                SinkKind::Rabbit { .. } => RABBIT_PASSES,
                SinkKind::Webhook { .. } => 1,
            };
            for _ in 0..passes {
                let (me, shutdown, sink) = (self.clone(), shutdown.clone(), sink.clone());
                tasks.push(tokio::spawn(
                    async move { me.run_sink(sink, shutdown).await },
                ));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn run_sink(self, sink: Sink, mut shutdown: watch::Receiver<bool>) {
        let mut out = Out::new(&sink, &self);
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            // orders first: while the worker is behind (a sale's opening burst), the relay gives
            // way, up to `events_give_way_ms` at a time, so that shoppers' orders are written
            // before the shop hears of them; then it runs a pass anyway (it always progresses)
            let yielding = Instant::now();
            while yielding.elapsed() < self.settings.give_way && (self.behind)() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
            let wait = match self.pass(&sink, &mut out).await {
                Ok(Pass::Sent) => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(Pass::Idle) => IDLE,
                Ok(Pass::Pause(d)) => d,
                // the endpoint took nothing: the sink backs off as a whole (1 s doubling to
                // 8 s: short, as one event that keeps failing alone also lands here), so an
                // endpoint that is down is tried with a pass now and then, and the new events
                // wait in their batches meanwhile rather than each failing on its own
                Ok(Pass::Failing) => {
                    failures += 1;
                    backoff((failures - 1).min(3))
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(sink = %sink.name, error = %e, "the relay's pass failed; trying again");
                    backoff(failures.min(5))
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }

    /// One pass (see the module comment).
    async fn pass(&self, sink: &Sink, out: &mut Out) -> anyhow::Result<Pass> {
        let disabled: Option<Option<NaiveDateTime>> =
            sqlx::query_scalar("SELECT disabled_at FROM event_sink WHERE sink = ?")
                .bind(&sink.name)
                .fetch_optional(&self.db)
                .await?;
        match disabled {
            None => {
                sqlx::query(
                    "INSERT INTO event_sink (sink, target) VALUES (?, ?) \
                     ON DUPLICATE KEY UPDATE target = VALUES(target)",
                )
                .bind(&sink.name)
                .bind(sink.target())
                .execute(&self.db)
                .await?;
            }
            Some(Some(_)) => return Ok(Pass::Pause(Duration::from_secs(1))),
            Some(None) => {}
        }
        // READ COMMITTED: the claims below lock the rows they take and nothing else, where
        // REPEATABLE READ would also lock the gaps of the index they scan, and a worker's batch
        // inserting its batch row there would wait for this pass to end
        let mut conn = self.db.acquire().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *conn)
            .await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // events one by one: retries, paid, closed, failed (and created ones an older version
        // wrote this way)
        let claimed: Vec<(String, i8, i64)> = sqlx::query_as(
            "SELECT event_id, type, order_id FROM event_delivery WHERE sink = ? AND state = 0 \
             AND next_at <= NOW(3) ORDER BY next_at LIMIT ? FOR UPDATE SKIP LOCKED",
        )
        .bind(&sink.name)
        .bind(CLAIM as i64)
        .fetch_all(&mut *tx)
        .await?;
        // and the batches of created events, oldest first, while the pass has room
        let batches = if claimed.len() < CLAIM {
            claim_batches(&mut tx, &sink.name, CLAIM - claimed.len()).await?
        } else {
            Vec::new()
        };
        if claimed.is_empty() && batches.is_empty() {
            tx.rollback().await?;
            return Ok(Pass::Idle);
        }
        // an order's paid or closed event waits while its created one is pending (held by this
        // pass or another worker's: a snapshot read sees it pending either way)
        let later: Vec<i64> = claimed
            .iter()
            .filter(|(_, t, o)| *t != EventType::Created as i8 && *o != 0)
            .map(|c| c.2)
            .collect();
        let waiting = created_pending(&mut tx, &sink.name, &later).await?;
        let due: Vec<&(String, i8, i64)> = claimed
            .iter()
            .filter(|(_, t, o)| *t == EventType::Created as i8 || !waiting.contains(o))
            .collect();
        /// event id, type, order, data, written at, a failed buy's request id
        type EventRow = (String, i8, i64, String, NaiveDateTime, Option<String>);
        let others: Vec<&str> = due
            .iter()
            .filter(|(_, t, _)| *t != EventType::Created as i8)
            .map(|c| c.0.as_str())
            .collect();
        let mut events: Vec<EventRow> = Vec::with_capacity(due.len());
        if !others.is_empty() {
            events.extend(
                sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT event_id, type, order_id, data, created_at, \
                     JSON_UNQUOTE(JSON_EXTRACT(data, '$.requestId')) FROM order_event \
                     WHERE event_id IN ({})",
                    ids(&others)
                )))
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        // created events, one by one and from the batches (an order in both, after a replay, is
        // sent once): a created event's record is its order row
        let mut created: Vec<i64> = due
            .iter()
            .filter(|(_, t, _)| *t == EventType::Created as i8)
            .map(|c| c.2)
            .collect();
        let singles: HashSet<i64> = created.iter().copied().collect();
        created.extend(
            batches
                .iter()
                .flat_map(|b| b.orders.iter().copied())
                .filter(|o| !singles.contains(o)),
        );
        if !created.is_empty() {
            events.extend(
                super::outbox::from_orders(
                    &mut tx,
                    &self.settings,
                    EventType::Created,
                    &created,
                    None,
                )
                .await?
                .into_iter()
                .map(|e| {
                    (
                        e.event_id,
                        e.kind as i8,
                        e.order,
                        e.data.to_string(),
                        e.at,
                        None,
                    )
                }),
            );
        }
        let bodies: Vec<(String, EventType, Vec<u8>)> = events
            .into_iter()
            .filter_map(|(event_id, t, order, data, at, request)| {
                let kind = EventType::from_i8(t)?;
                let subject = match order {
                    0 => request.unwrap_or_default(),
                    o => o.to_string(),
                };
                let body =
                    super::cloud::body(&event_id, &self.settings.source, kind, subject, at, &data);
                Some((event_id, kind, body))
            })
            .collect();
        if due.is_empty() && batches.is_empty() {
            tx.rollback().await?;
            return Ok(Pass::Idle);
        }
        // a due event with nothing to send (its record deleted since) is parked, not claimed
        // again and again
        let built: HashSet<&str> = bodies.iter().map(|b| b.0.as_str()).collect();
        let gone: Vec<(String, Outcome)> = due
            .iter()
            .filter(|c| !built.contains(c.0.as_str()))
            .map(|c| (c.0.clone(), Outcome::Park { why: GONE.into() }))
            .collect();
        let mut outcomes = out.send(bodies).await;
        outcomes.extend(gone);
        let outcomes = Outcomes::sort(outcomes, &batches, &singles);
        // recorded in the claim's transaction; if MySQL gives up on it (a deadlock with a
        // worker's batch writing delivery rows beside it), recorded again in a fresh one rather
        // than sending every event of the pass a second time
        let rec = match self.record(sink, &mut tx, &outcomes).await {
            Ok(r) => {
                tx.commit().await?;
                r
            }
            Err(e) => {
                let _ = tx.rollback().await;
                tracing::warn!(sink = %sink.name, error = %e, "recording a pass's outcomes failed; recording them again");
                let mut again = None;
                for _ in 0..3 {
                    let mut tx = crate::plumbing::db::begin(&self.db).await?;
                    match self.record(sink, &mut tx, &outcomes).await {
                        Ok(r) => {
                            tx.commit().await?;
                            again = Some(r);
                            break;
                        }
                        Err(_) => {
                            let _ = tx.rollback().await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                again.ok_or(e)?
            }
        };
        let label = sink.name.as_str();
        if rec.delivered > 0 {
            self.metrics.event_delivered(label, rec.delivered);
        }
        if rec.retried > 0 {
            self.metrics.event_retried(label, rec.retried);
        }
        if rec.parked > 0 {
            self.metrics.event_parked(label, rec.parked);
        }
        Ok(match rec.pause {
            Some(d) => Pass::Pause(d),
            None if rec.delivered == 0 && rec.retried > 0 => Pass::Failing,
            None if rec.delivered == 0 => Pass::Pause(IDLE),
            None => Pass::Sent,
        })
    }

    /// Records what became of a pass's events in `tx` (see the module comment); the counts, for
    /// the metrics once it is committed. A batch is marked done, and those of its events the
    /// sink did not take get a delivery row of their own first (retried, parked and replayed
    /// from there like any other).
    async fn record(
        &self,
        sink: &Sink,
        tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
        outcomes: &Outcomes,
    ) -> Result<Recorded, sqlx::Error> {
        let mut rec = Recorded::default();
        for b in &outcomes.batches {
            if !b.left.is_empty() {
                sqlx::query(
                    "INSERT INTO event_delivery (sink, event_id, type, order_id, next_at, created_at) \
                     SELECT ?, CONCAT('created-', j.o), 0, j.o, NOW(3), ? \
                     FROM JSON_TABLE(?, '$[*]' COLUMNS(o BIGINT PATH '$')) j \
                     WHERE 1 = 1 ON DUPLICATE KEY UPDATE event_id = event_delivery.event_id",
                )
                .bind(&sink.name)
                .bind(b.created_at)
                .bind(serde_json::to_string(&b.left).expect("ids serialise"))
                .execute(&mut **tx)
                .await?;
            }
            sqlx::query(
                "UPDATE event_batch SET state = 1, done_at = NOW(3), delivered = ? \
                 WHERE id = ? AND state = 0",
            )
            .bind(b.delivered as i64)
            .bind(b.id)
            .execute(&mut **tx)
            .await?;
            rec.delivered += b.delivered;
        }
        let (mut pause, mut disabled) = (None, false);
        let (mut delivered, mut retry, mut park) = (Vec::new(), Vec::new(), Vec::new());
        for (id, outcome) in &outcomes.rows {
            let id = id.clone();
            match outcome.clone() {
                Outcome::Delivered => delivered.push(id),
                Outcome::Retry { why, after } => {
                    if let Some(a) = after {
                        pause = Some(pause.map_or(a, |p: Duration| p.max(a)));
                    }
                    retry.push((id, why, after));
                }
                Outcome::Park { why } => park.push((id, why)),
                Outcome::Disable { .. } if disabled => {}
                Outcome::Disable { why } => {
                    disabled = true;
                    sqlx::query(
                        "UPDATE event_sink SET disabled_at = NOW(3), disabled_why = ? WHERE sink = ?",
                    )
                    .bind(&why)
                    .bind(&sink.name)
                    .execute(&mut **tx)
                    .await?;
                    tracing::error!(sink = %sink.name, target = sink.target(), why, "the endpoint is gone: disabled until an operator enables it (flashgate events enable)");
                    pause = Some(Duration::from_secs(1));
                }
            }
        }
        if !delivered.is_empty() {
            let list: Vec<&str> = delivered.iter().map(String::as_str).collect();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE event_delivery SET state = 1, done_at = NOW(3), attempts = attempts + 1 \
                 WHERE sink = ? AND event_id IN ({})",
                ids(&list)
            )))
            .bind(&sink.name)
            .execute(&mut **tx)
            .await?;
            rec.delivered += delivered.len() as u64;
        }
        // failures, grouped by what went wrong (an endpoint that is down fails a whole pass
        // alike): one statement a group, each row's wait from its own attempt count (1 s doubled
        // per attempt, at most 5 minutes, give or take 20%) or the endpoint's Retry-After, and
        // parked once it has been failing past the horizon
        let horizon = self.settings.horizon.as_secs() as i64;
        let mut groups: HashMap<(String, Option<Duration>), Vec<&str>> = HashMap::new();
        for (id, why, after) in &retry {
            groups.entry((why.clone(), *after)).or_default().push(id);
        }
        let mut parked_late = 0u64;
        for ((why, after), list) in &groups {
            let list = ids(list);
            let late: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM event_delivery WHERE sink = ? AND event_id IN ({list}) \
                 AND failing_since IS NOT NULL AND failing_since <= NOW(3) - INTERVAL ? SECOND"
            )))
            .bind(&sink.name)
            .bind(horizon)
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE event_delivery SET \
                 state = IF(failing_since IS NOT NULL \
                     AND failing_since <= NOW(3) - INTERVAL ? SECOND, 2, 0), \
                 next_at = NOW(3) + INTERVAL COALESCE(?, \
                     LEAST(POW(2, LEAST(attempts, 9)), {max}) * (0.8 + RAND() * 0.4) * 1000000) \
                     MICROSECOND, \
                 attempts = attempts + 1, last_error = ?, \
                 failing_since = COALESCE(failing_since, NOW(3)) \
                 WHERE sink = ? AND event_id IN ({list})",
                max = MAX_BACKOFF.as_secs()
            )))
            .bind(horizon)
            .bind(after.map(|a| a.as_micros() as i64))
            .bind(why)
            .bind(&sink.name)
            .execute(&mut **tx)
            .await?;
            parked_late += late as u64;
        }
        if !retry.is_empty() {
            rec.retried = retry.len() as u64 - parked_late;
        }
        if parked_late > 0 {
            rec.parked += parked_late;
            tracing::error!(sink = %sink.name, events = parked_late, "events failing past the retry horizon were parked (flashgate events replay --parked)");
        }
        for (id, why) in &park {
            sqlx::query(
                "UPDATE event_delivery SET state = 2, attempts = attempts + 1, last_error = ?, \
                 failing_since = COALESCE(failing_since, NOW(3)) WHERE sink = ? AND event_id = ?",
            )
            .bind(why)
            .bind(&sink.name)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        }
        if !park.is_empty() {
            rec.parked += park.len() as u64;
            tracing::error!(sink = %sink.name, events = park.len(), first = %park[0].1, "events parked: the endpoint refused them for good (flashgate events replay --parked)");
        }
        rec.pause = pause;
        Ok(rec)
    }
}

/// What [`Relays::record`] wrote.
#[derive(Debug, Default)]
struct Recorded {
    pause: Option<Duration>,
    delivered: u64,
    retried: u64,
    parked: u64,
}

/// A list of event ids for `IN (…)`, quoted. Event ids are flashgate's own
/// (`created-1048577`, `failed-1765000000000-0-42`: letters, digits, dashes); anything else is
/// left out, so nothing can be injected.
fn ids(list: &[&str]) -> String {
    list.iter()
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why an event with no record left to send is parked.
const GONE: &str = "nothing to send: the event's order or event row is gone";

/// A batch of created events a pass holds (`event_batch`).
struct BatchClaim {
    id: i64,
    orders: Vec<i64>,
    created_at: NaiveDateTime,
}

/// Claims a sink's oldest pending batches, up to `room` events (at least one batch, however
/// large: a worker batch is at most `FLASHGATE_BATCH_SIZE` orders). A few more rows than are
/// taken are locked until the pass ends; other relays skip them meanwhile.
async fn claim_batches(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    sink: &str,
    room: usize,
) -> Result<Vec<BatchClaim>, sqlx::Error> {
    let rows: Vec<(i64, String, i32, NaiveDateTime)> = sqlx::query_as(
        "SELECT id, orders, events, created_at FROM event_batch WHERE sink = ? AND state = 0 \
         ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED",
    )
    .bind(sink)
    .bind(BATCH_CLAIM as i64)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::new();
    let mut taken = 0usize;
    for (id, orders, events, created_at) in rows {
        if !out.is_empty() && taken + events.max(0) as usize > room {
            break;
        }
        taken += events.max(0) as usize;
        // (written by the worker as a JSON array of numbers; anything else is a batch of none)
        let orders: Vec<i64> = serde_json::from_str(&orders).unwrap_or_default();
        out.push(BatchClaim {
            id,
            orders,
            created_at,
        });
    }
    Ok(out)
}

/// Of `orders`, those whose created event is still pending on `sink`: as a delivery row of its
/// own, or in a batch not yet done (this pass's included: its events are sent together).
async fn created_pending(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    sink: &str,
    orders: &[i64],
) -> Result<HashSet<i64>, sqlx::Error> {
    let mut pending = HashSet::new();
    if orders.is_empty() {
        return Ok(pending);
    }
    let list = super::outbox::numbers(orders);
    pending.extend(
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
            "SELECT order_id FROM event_delivery WHERE sink = ? AND state = 0 AND type = 0 \
             AND order_id IN ({list})"
        )))
        .bind(sink)
        .fetch_all(&mut **tx)
        .await?,
    );
    let (lo, hi) = orders
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &o| (lo.min(o), hi.max(o)));
    let batches: Vec<String> = sqlx::query_scalar(
        "SELECT orders FROM event_batch WHERE sink = ? AND state = 0 \
         AND first_order <= ? AND last_order >= ?",
    )
    .bind(sink)
    .bind(hi)
    .bind(lo)
    .fetch_all(&mut **tx)
    .await?;
    let wanted: HashSet<i64> = orders.iter().copied().collect();
    for b in batches {
        let held: Vec<i64> = serde_json::from_str(&b).unwrap_or_default();
        pending.extend(held.into_iter().filter(|o| wanted.contains(o)));
    }
    Ok(pending)
}

/// What became of a pass's events: those sent from their own delivery rows, and per batch how
/// many the sink took and which it did not.
struct Outcomes {
    rows: Vec<(String, Outcome)>,
    batches: Vec<BatchDone>,
}

struct BatchDone {
    id: i64,
    created_at: NaiveDateTime,
    delivered: u64,
    /// orders whose created event the sink did not take (they move to `event_delivery`)
    left: Vec<i64>,
}

impl Outcomes {
    /// Sorts the outcomes of a send by where each event came from. `singles`: orders whose
    /// created event the pass sent from its own delivery row (an order also in a batch, after a
    /// replay, counts there only).
    fn sort(
        sent: Vec<(String, Outcome)>,
        batches: &[BatchClaim],
        singles: &HashSet<i64>,
    ) -> Outcomes {
        let mut by_order: HashMap<i64, Outcome> = HashMap::new();
        let mut rows = Vec::with_capacity(sent.len());
        for (id, outcome) in sent {
            match id
                .strip_prefix("created-")
                .and_then(|o| o.parse::<i64>().ok())
            {
                Some(o) if !singles.contains(&o) => {
                    by_order.insert(o, outcome);
                }
                _ => rows.push((id, outcome)),
            }
        }
        let batches = batches
            .iter()
            .map(|b| {
                let mut done = BatchDone {
                    id: b.id,
                    created_at: b.created_at,
                    delivered: 0,
                    left: Vec::new(),
                };
                for o in &b.orders {
                    if singles.contains(o) {
                        continue;
                    }
                    match by_order.get(o) {
                        Some(Outcome::Delivered) => done.delivered += 1,
                        // not taken: retried one by one from its own row, the outcome recorded
                        // there
                        Some(outcome) => {
                            done.left.push(*o);
                            rows.push((format!("created-{o}"), outcome.clone()));
                        }
                        // no order row to build it from (the batch row was written with the
                        // orders, so only a row deleted since): parked, for an operator to see
                        None => {
                            done.left.push(*o);
                            rows.push((format!("created-{o}"), Outcome::Park { why: GONE.into() }));
                        }
                    }
                }
                done
            })
            .collect();
        Outcomes { rows, batches }
    }
}

/// What a pass asks of the loop.
enum Pass {
    /// Something was sent: go on at once.
    Sent,
    /// Nothing due.
    Idle,
    /// Wait this long (a 429's `Retry-After`, a disabled endpoint, nothing sent).
    Pause(Duration),
    /// Nothing was delivered and something is to be tried again: the endpoint is failing.
    Failing,
}

/// A sink's way out: a webhook endpoint with its client and pace, or a RabbitMQ channel.
struct Out {
    kind: SinkKind,
    settings: Arc<EventSettings>,
    client: reqwest::Client,
    /// When the next request may start (the sink's rate).
    next_slot: Instant,
    amqp_url: String,
    amqp: Option<(Connection, Channel)>,
}

impl Out {
    fn new(sink: &Sink, relays: &Relays) -> Out {
        Out {
            kind: sink.kind.clone(),
            settings: relays.settings.clone(),
            client: webhook::client(relays.settings.timeout),
            next_slot: Instant::now(),
            amqp_url: relays.amqp_url.clone(),
            amqp: None,
        }
    }

    /// Sends every event; what became of each (by outbox id).
    async fn send(&mut self, events: Vec<(String, EventType, Vec<u8>)>) -> Vec<(String, Outcome)> {
        match self.kind.clone() {
            SinkKind::Webhook { url } => self.send_webhooks(&url, events).await,
            SinkKind::Rabbit { exchange } => match self.publish(&exchange, &events).await {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    self.amqp = None; // a fresh connection next time
                    let why = format!("RabbitMQ: {e}");
                    events
                        .into_iter()
                        .map(|(id, ..)| {
                            (
                                id,
                                Outcome::Retry {
                                    why: why.clone(),
                                    after: None,
                                },
                            )
                        })
                        .collect()
                }
            },
        }
    }

    async fn send_webhooks(
        &mut self,
        url: &str,
        events: Vec<(String, EventType, Vec<u8>)>,
    ) -> Vec<(String, Outcome)> {
        // (parsed once a pass, not per request; it was checked at start)
        let endpoint = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => {
                let why = format!("webhook_url {url:?} is not a URL: {e}");
                return events
                    .into_iter()
                    .map(|(id, ..)| (id, Outcome::Park { why: why.clone() }))
                    .collect();
            }
        };
        let gap = Duration::from_secs_f64(1.0 / self.settings.rate);
        let mut in_flight = FuturesUnordered::new();
        let mut done = Vec::with_capacity(events.len());
        for (event_id, _, body) in events {
            while in_flight.len() >= self.settings.in_flight {
                if let Some(r) = in_flight.next().await {
                    done.push(r);
                }
            }
            // the pace: one request per `gap`, kept across passes (no burst after an idle spell
            // beyond one in-flight window)
            let now = Instant::now();
            if self.next_slot > now {
                tokio::time::sleep_until(self.next_slot.into()).await;
            }
            self.next_slot = self.next_slot.max(now) + gap;
            let (client, settings, url) =
                (self.client.clone(), self.settings.clone(), endpoint.clone());
            in_flight.push(async move {
                let outcome = webhook::send(&client, url, &settings.secrets, &event_id, body).await;
                (event_id, outcome)
            });
        }
        while let Some(r) = in_flight.next().await {
            done.push(r);
        }
        done
    }

    async fn channel(&mut self, exchange: &str) -> anyhow::Result<&Channel> {
        let usable = self
            .amqp
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            self.amqp = Some(open_exchange(&self.amqp_url, exchange).await?);
        }
        Ok(&self.amqp.as_ref().expect("just opened").1)
    }

    /// Publishes every event persistently and `mandatory`; each is delivered once the broker
    /// confirmed it *and* routed it to a queue. One no queue took comes back (`basic.return`,
    /// then its confirm): it is not delivered but retried (bind a queue, and it goes), and
    /// parked past the horizon, as any failure.
    async fn publish(
        &mut self,
        exchange: &str,
        events: &[(String, EventType, Vec<u8>)],
    ) -> anyhow::Result<Vec<(String, Outcome)>> {
        let channel = self.channel(exchange).await?.clone();
        // many at once: each publish queues its frames and waits until the connection's I/O
        // thread has written them, so awaiting them one by one costs a thread hand-off and a
        // socket write per event; PUBLISH_WINDOW together, the I/O thread writes them in a few
        // large writes. (The first poll of each queues its frames, in this order, so the broker
        // gets them in the pass's order. A window, not the whole pass: a pass's worth of
        // publish futures at once is megabytes, fresh memory every pass.)
        let mut confirms = Vec::with_capacity(events.len());
        for window in events.chunks(PUBLISH_WINDOW) {
            let published =
                futures_util::future::join_all(window.iter().map(|(event_id, kind, body)| {
                    channel.basic_publish(
                        exchange.into(),
                        kind.name().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        body,
                        BasicProperties::default()
                            .with_delivery_mode(2)
                            .with_content_type("application/cloudevents+json".into())
                            .with_message_id(event_id.as_str().into()),
                    )
                }))
                .await;
            for ((event_id, ..), confirm) in window.iter().zip(published) {
                confirms.push((event_id.clone(), confirm?));
            }
        }
        let mut out = Vec::with_capacity(confirms.len());
        for (id, confirm) in confirms {
            let outcome = match confirm.await {
                Ok(Confirmation::Ack(Some(back)) | Confirmation::Nack(Some(back))) => {
                    Outcome::Retry {
                        why: format!(
                            "unroutable: no queue is bound to the exchange {exchange} for {} \
                             (the broker returned it: {} {}); bind a queue before the sale",
                            back.delivery.routing_key, back.reply_code, back.reply_text
                        ),
                        after: None,
                    }
                }
                Ok(c) if c.is_ack() => Outcome::Delivered,
                Ok(_) => Outcome::Retry {
                    why: "the broker did not confirm it (nack)".into(),
                    after: None,
                },
                Err(e) => Outcome::Retry {
                    why: format!("RabbitMQ: {e}"),
                    after: None,
                },
            };
            out.push((id, outcome));
        }
        Ok(out)
    }
}

/// A connection and a confirming channel on which `exchange` is declared (a durable topic
/// exchange): what each RabbitMQ relay publishes on, and what the worker opens once at start
/// ([`declare_exchanges`]), so a queue can be bound before the first event.
async fn open_exchange(amqp_url: &str, exchange: &str) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok((conn, channel))
}

/// `flashgate events bind QUEUE`: declares the events exchange and a durable queue bound to it
/// with `key` (`#`: every event), so an integrator can bind before the sale without a
/// management plugin, and the fault drill's exchange has a queue to route to.
/// `expires_ms`: the broker deletes the queue once it has gone unused that long (drills).
pub async fn bind_queue(
    amqp_url: &str,
    exchange: &str,
    queue: &str,
    key: &str,
    expires_ms: Option<u32>,
) -> anyhow::Result<()> {
    let (conn, channel) = open_exchange(amqp_url, exchange).await?;
    let mut args = FieldTable::default();
    if let Some(ms) = expires_ms {
        args.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongInt(ms.min(i32::MAX as u32) as i32),
        );
    }
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = conn.close(200, "bound".into()).await;
    Ok(())
}

/// Declares every RabbitMQ sink's exchange, at the worker's start: a broker that is down or
/// refuses the exchange (a name it will not take, a type it has already as another kind, no
/// rights) stops the worker from starting, saying which. Then an integrator can bind a queue
/// before the sale, and one that is not bound shows as failing (see `Out::publish`).
pub async fn declare_exchanges(settings: &EventSettings, amqp_url: &str) -> anyhow::Result<()> {
    for sink in &settings.sinks {
        if let SinkKind::Rabbit { exchange } = &sink.kind {
            let (conn, _) = open_exchange(amqp_url, exchange).await.map_err(|e| {
                anyhow::anyhow!(
                    "RabbitMQ refused the events exchange {exchange:?} \
                     (FLASHGATE_EVENTS_EXCHANGE, at FLASHGATE_AMQP_URL): {e}"
                )
            })?;
            let _ = conn.close(200, "declared".into()).await;
            tracing::info!(exchange = %exchange, "events exchange declared; bind a queue to it before the sale");
        }
    }
    Ok(())
}
