//! What operators see and steer of orders out: each sink's state (`flashgate events status`,
//! `/readyz`, `/metrics`), replaying events (`flashgate events replay`), enabling an endpoint a
//! 410 disabled (`flashgate events enable`).

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::MySqlPool;

/// One sink as it stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SinkState {
    pub sink: String,
    pub target: String,
    /// Why it is disabled (a 410), if it is.
    pub disabled: Option<String>,
    /// Events waiting to be delivered, and how old the oldest is (seconds).
    pub backlog: i64,
    pub oldest_seconds: i64,
    /// Of those, how many have failed at least once (the endpoint is failing).
    pub failing: i64,
    /// Events given up on (replay them with `flashgate events replay --parked`).
    pub parked: i64,
    /// The last error of a failing or parked event.
    pub last_error: Option<String>,
}

/// Every sink the outbox has rows or a registration for. Counts only what is pending or parked
/// (an index range per sink), never the delivered history.
pub async fn status(db: &MySqlPool) -> Result<Vec<SinkState>, sqlx::Error> {
    /// sink, target, disabled at, why
    type Registered = (
        String,
        Option<String>,
        Option<NaiveDateTime>,
        Option<String>,
    );
    let rows: Vec<Registered> = sqlx::query_as(
        "SELECT s.sink, s.target, s.disabled_at, s.disabled_why FROM event_sink s \
             UNION SELECT DISTINCT d.sink, NULL, NULL, NULL FROM event_delivery d \
             WHERE d.state IN (0, 2) AND d.sink NOT IN (SELECT sink FROM event_sink) \
             UNION SELECT DISTINCT b.sink, NULL, NULL, NULL FROM event_batch b \
             WHERE b.state = 0 AND b.sink NOT IN (SELECT sink FROM event_sink)",
    )
    .fetch_all(db)
    .await?;
    let mut out = Vec::new();
    for (sink, target, disabled_at, why) in rows {
        let (backlog, oldest, failing, parked, last_error): (
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<String>,
        ) = sqlx::query_as(
            "SELECT COUNT(*), TIMESTAMPDIFF(SECOND, MIN(CASE WHEN state = 0 THEN created_at END), \
             NOW(3)), CAST(SUM(state = 0 AND failing_since IS NOT NULL) AS SIGNED), \
             CAST(SUM(state = 2) AS SIGNED), MAX(last_error) \
             FROM event_delivery WHERE sink = ? AND state IN (0, 2)",
        )
        .bind(&sink)
        .fetch_one(db)
        .await?;
        // and the created events in batches not sent yet
        let (batched, batched_oldest): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT CAST(SUM(events) AS SIGNED), TIMESTAMPDIFF(SECOND, MIN(created_at), NOW(3)) \
             FROM event_batch WHERE sink = ? AND state = 0",
        )
        .bind(&sink)
        .fetch_one(db)
        .await?;
        let backlog = backlog + batched.unwrap_or(0);
        let oldest = oldest.max(batched_oldest);
        let parked = parked.unwrap_or(0);
        out.push(SinkState {
            disabled: disabled_at.map(|at| {
                format!(
                    "{} (since {})",
                    why.unwrap_or_else(|| "disabled".into()),
                    at.and_utc().to_rfc3339()
                )
            }),
            sink,
            target: target.unwrap_or_default(),
            backlog: backlog - parked,
            oldest_seconds: oldest.unwrap_or(0),
            failing: failing.unwrap_or(0),
            parked,
            last_error,
        });
    }
    Ok(out)
}

/// Which events to send again (the same ids: receivers that have them deduplicate).
#[derive(Debug, Clone)]
pub enum Replay {
    /// Every event of one order, delivered or not.
    Order(i64),
    /// Every event written since this time.
    Since(NaiveDateTime),
    /// Every parked event.
    Parked,
}

/// Makes the events `what` names pending again (now, attempts and failures forgotten), on
/// `sink` or every sink; returns how many deliveries. A created event sent from a batch has no
/// delivery row: one is made for it first (as delivered, so that the update counts it with the
/// rest): for `--order`, from the order row on every registered sink; for `--since`, from the
/// batches done since then. (Created events in batches not sent yet are left to them.)
pub async fn replay(db: &MySqlPool, what: &Replay, sink: Option<&str>) -> Result<u64, sqlx::Error> {
    let mut tx = crate::plumbing::db::begin(db).await?;
    let rows = match what {
        Replay::Order(o) => Some(
            sqlx::query(
                "INSERT INTO event_delivery (sink, event_id, type, order_id, state, next_at, created_at) \
                 SELECT s.sink, CONCAT('created-', o.id), 0, o.id, 1, NOW(3), o.created_at \
                 FROM order_info o JOIN event_sink s ON (? IS NULL OR s.sink = ?) WHERE o.id = ? \
                 ON DUPLICATE KEY UPDATE event_id = event_delivery.event_id",
            )
            .bind(sink)
            .bind(sink)
            .bind(*o),
        ),
        Replay::Since(t) => Some(
            sqlx::query(
                "INSERT INTO event_delivery (sink, event_id, type, order_id, state, next_at, created_at) \
                 SELECT b.sink, CONCAT('created-', j.o), 0, j.o, 1, NOW(3), b.created_at \
                 FROM event_batch b CROSS JOIN JSON_TABLE(b.orders, '$[*]' COLUMNS(o BIGINT PATH '$')) j \
                 WHERE (? IS NULL OR b.sink = ?) AND b.created_at >= ? AND b.state = 1 \
                 ON DUPLICATE KEY UPDATE event_id = event_delivery.event_id",
            )
            .bind(sink)
            .bind(sink)
            .bind(*t),
        ),
        Replay::Parked => None,
    };
    if let Some(rows) = rows {
        rows.execute(&mut *tx).await?;
    }
    let q = match what {
        Replay::Order(_) => {
            "UPDATE event_delivery SET state = 0, attempts = 0, failing_since = NULL, \
             last_error = NULL, next_at = NOW(3), done_at = NULL \
             WHERE (? IS NULL OR sink = ?) AND order_id = ?"
        }
        Replay::Since(_) => {
            "UPDATE event_delivery SET state = 0, attempts = 0, failing_since = NULL, \
             last_error = NULL, next_at = NOW(3), done_at = NULL \
             WHERE (? IS NULL OR sink = ?) AND created_at >= ?"
        }
        Replay::Parked => {
            "UPDATE event_delivery SET state = 0, attempts = 0, failing_since = NULL, \
             last_error = NULL, next_at = NOW(3), done_at = NULL \
             WHERE (? IS NULL OR sink = ?) AND state = 2"
        }
    };
    let mut query = sqlx::query(q).bind(sink).bind(sink);
    query = match what {
        Replay::Order(o) => query.bind(*o),
        Replay::Since(t) => query.bind(*t),
        Replay::Parked => query,
    };
    let n = query.execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(n)
}

/// Enables `sink` again; false if no such sink is registered.
pub async fn enable(db: &MySqlPool, sink: &str) -> Result<bool, sqlx::Error> {
    let known: Option<String> = sqlx::query_scalar("SELECT sink FROM event_sink WHERE sink = ?")
        .bind(sink)
        .fetch_optional(db)
        .await?;
    if known.is_none() {
        return Ok(false);
    }
    sqlx::query("UPDATE event_sink SET disabled_at = NULL, disabled_why = NULL WHERE sink = ?")
        .bind(sink)
        .execute(db)
        .await?;
    Ok(true)
}
