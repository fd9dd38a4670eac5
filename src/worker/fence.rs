//! The worker fence: a stalled worker and the worker that takes over its entries can never both
//! act on one entry.
//!
//! The race it closes: worker A reads a batch and stalls (a long GC-like pause, a slow commit)
//! past `claim_idle_ms`; worker B claims A's entries and, finding them delivered too often,
//! dead-letters them and gives their units back; then A wakes and commits orders for the same
//! entries. Both outcomes would stand: an order *and* a unit sold again.
//!
//! Each consumer has a row in `worker_fence` with an *epoch*. A's batch transaction begins by
//! reading A's epoch under a shared lock ([`check`]) and commits only if it is the epoch A held
//! when it read the batch; else it rolls back ([`Checked::Fenced`]) and leaves the entries to
//! whoever owns them now. Before B claims entries pending under A, it bumps A's epoch
//! ([`bump`]): that `UPDATE` waits for A's open transactions (they hold the shared lock), so
//! once it returns, every transaction A has committed is visible and none A starts later can
//! commit an older batch. If A is inside a transaction that long, the bump gives up after
//! [`BUMP_WAIT_SECS`] and B leaves A's entries alone this round: A is alive and working.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use sqlx::{MySql, MySqlPool, Transaction};

/// How long a bump waits for the owner's open transactions before giving up for this round.
pub const BUMP_WAIT_SECS: u32 = 2; // written into `bump`'s SQL

/// MySQL's and MariaDB's error number for "Lock wait timeout exceeded".
const LOCK_WAIT_TIMEOUT: u16 = 1205;

/// This consumer's row, and the epoch it last saw.
#[derive(Debug)]
pub struct Fence {
    pub consumer: String,
    epoch: AtomicI64,
}

impl Fence {
    /// Makes sure `consumer` has a row and learns its epoch.
    pub async fn register(db: &MySqlPool, consumer: &str) -> Result<Self, sqlx::Error> {
        sqlx::query(
            "INSERT INTO worker_fence (consumer, epoch) VALUES (?, 0) \
             ON DUPLICATE KEY UPDATE consumer = consumer",
        )
        .bind(consumer)
        .execute(db)
        .await?;
        let fence = Self {
            consumer: consumer.to_string(),
            epoch: AtomicI64::new(0),
        };
        fence.refresh(db).await?;
        Ok(fence)
    }

    /// The epoch to hold while reading a batch.
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Relaxed)
    }

    /// Reads the epoch again (after finding it bumped).
    pub async fn refresh(&self, db: &MySqlPool) -> Result<i64, sqlx::Error> {
        let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM worker_fence WHERE consumer = ?")
            .bind(&self.consumer)
            .fetch_one(db)
            .await?;
        self.epoch.store(epoch, Relaxed);
        Ok(epoch)
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The epoch is the one held: this transaction may commit.
    Owner,
    /// Another worker has bumped it: the batch is no longer this worker's.
    Fenced,
}

/// The first statement of a batch transaction: this consumer's epoch, under a shared lock held
/// until the transaction ends.
pub async fn check(
    tx: &mut Transaction<'_, MySql>,
    consumer: &str,
    held: i64,
) -> Result<Checked, sqlx::Error> {
    let now: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM worker_fence WHERE consumer = ? LOCK IN SHARE MODE")
            .bind(consumer)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(if now == Some(held) {
        Checked::Owner
    } else {
        Checked::Fenced
    })
}

/// Bumps `owner`'s epoch before taking over its entries; false if `owner` stayed inside a
/// transaction longer than [`BUMP_WAIT_SECS`] (then its entries are left alone this round).
///
/// It runs to its end even if the caller is dropped ([`crate::plumbing::db::uncancelled`]): cut between
/// its two `SET SESSION`s, it would lend the pool a connection with a 2 s lock wait.
pub async fn bump(db: &MySqlPool, owner: &str) -> Result<bool, sqlx::Error> {
    let (db, owner) = (db.clone(), owner.to_string());
    crate::plumbing::db::uncancelled(async move { bump_now(&db, &owner).await }).await
}

async fn bump_now(db: &MySqlPool, owner: &str) -> Result<bool, sqlx::Error> {
    let mut con = db.acquire().await?;
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 2") // BUMP_WAIT_SECS
        .execute(&mut *con)
        .await?;
    let bumped = sqlx::query(
        "INSERT INTO worker_fence (consumer, epoch) VALUES (?, 1) \
         ON DUPLICATE KEY UPDATE epoch = epoch + 1, updated_at = NOW(3)",
    )
    .bind(owner)
    .execute(&mut *con)
    .await;
    // the connection goes back to the pool: give it back its usual patience
    sqlx::query("SET SESSION innodb_lock_wait_timeout = DEFAULT")
        .execute(&mut *con)
        .await?;
    match bumped {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(e))
            if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|m| m.number() == LOCK_WAIT_TIMEOUT) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}
