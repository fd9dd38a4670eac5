//! Replica confirmation: no shopper is told "queued", and no order is written to MySQL, before
//! `FLASHGATE_REDIS_ACK_REPLICAS` replicas hold what Redis wrote for it.
//!
//! Why: between the 202 and the MySQL commit Redis is the only record of a buy. Redis
//! replicates asynchronously, so a primary that dies can take its last writes with it, and the
//! replica promoted in its place never saw them. `WAIT n ms` after a write answers how many
//! replicas have acknowledged everything the *same connection* wrote; so a write and its `WAIT`
//! go as one pipeline on one socket ([`RedisConn::then_wait`]), on connections kept for that
//! ([`Confirm`], [`CONFIRM_CONNECTIONS`] of them, each used by one caller at a time): a `WAIT`
//! blocks the socket it is sent on, and would hold up every request on the shared one. One
//! confirmation covers a whole `admit.lua` call, every shopper it decided.
//!
//! What `WAIT` does not promise (Redis's own caveat): it makes a lost write unlikely, not
//! impossible: a replica acknowledges what it received, not what it wrote to disk, and a
//! failover may still promote a replica that had not received it (docs/runbook.md says what can
//! be lost where).
//!
//! While the replicas are away (a confirmation just timed out) the edge does not make every
//! call wait out the timeout, which would leave each sale shard a few calls a second: for
//! [`DEGRADED_FOR`] its calls go without `WAIT` and their shoppers are told "being confirmed"
//! at once ([`Confirm::degraded`]); then one call tries `WAIT` again. The worker still writes
//! nothing a replica does not hold, so nothing is promised that a failover could take back.
//!
//! The count is chosen at start-up ([`choose`]): unset, 1 where a Sentinel set's primary or
//! every cluster primary has a replica, else 0; a count the deployment cannot meet refuses to
//! start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use redis::{Pipeline, RedisResult, Value};

use crate::plumbing::breaker::Breaker;
use crate::plumbing::redis_conn::{Mode, RedisConn, Target};

/// How many connections of its own each process keeps for confirmed writes.
pub const CONFIRM_CONNECTIONS: usize = 8;
/// After a confirmation timed out, calls skip `WAIT` for this long (see the module comment).
pub const DEGRADED_FOR: Duration = Duration::from_millis(500);

/// Replicas that must confirm, and why that number (for the start-up log and `/readyz`).
pub async fn choose(
    target: &Target,
    redis: &mut RedisConn,
    asked: Option<u32>,
) -> anyhow::Result<(u32, String)> {
    let have = target.replicas(redis).await?;
    let mode = target.mode().as_str();
    match asked {
        Some(n) => {
            anyhow::ensure!(
                n as usize <= have,
                "FLASHGATE_REDIS_ACK_REPLICAS={n}, but the Redis primary ({mode}) has {have} \
                 replica(s) connected: no admission could ever be confirmed. Add replicas, or \
                 set it to at most {have}"
            );
            Ok((
                n,
                format!("FLASHGATE_REDIS_ACK_REPLICAS={n} ({mode}, {have} replica(s))"),
            ))
        }
        None => {
            let n = match target.mode() {
                Mode::Single => 0,
                Mode::Sentinel | Mode::Cluster => u32::from(have > 0),
            };
            Ok((
                n,
                format!(
                    "chosen: {n} ({mode} with {have} replica(s); set FLASHGATE_REDIS_ACK_REPLICAS to change)"
                ),
            ))
        }
    }
}

/// The confirmation of this process: how many replicas, how long to wait, and the connections.
pub struct Confirm {
    pub replicas: u32,
    pub timeout_ms: u64,
    target: Target,
    breaker: Arc<Breaker>,
    slots: Vec<tokio::sync::Mutex<Option<RedisConn>>>,
    next: AtomicUsize,
    /// Until when (ms since `started`) calls skip `WAIT`: the replicas were just found away.
    degraded_until: AtomicU64,
    started: Instant,
}

impl Confirm {
    pub fn new(target: Target, breaker: Arc<Breaker>, replicas: u32, timeout_ms: u64) -> Self {
        Self {
            replicas,
            timeout_ms,
            target,
            breaker,
            slots: (0..CONFIRM_CONNECTIONS)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
            degraded_until: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// True while a confirmation timed out less than [`DEGRADED_FOR`] ago: callers do not wait
    /// for one (and promise nothing that needs one).
    pub fn degraded(&self) -> bool {
        self.now_ms() < self.degraded_until.load(Relaxed)
    }

    /// Runs `pipe` (writes to the node holding `key`) and then `WAIT` on a connection no one
    /// else is using; answers the replies and whether enough replicas hold what they wrote.
    pub async fn run(&self, pipe: &Pipeline, key: &str) -> RedisResult<(Vec<Value>, bool)> {
        // the first free connection from a rotating start, else wait for the rotation's own
        let start = self.next.fetch_add(1, Relaxed);
        let n = self.slots.len();
        let free = (0..n).find_map(|i| self.slots[(start + i) % n].try_lock().ok());
        let mut slot = match free {
            Some(g) => g,
            None => self.slots[start % n].lock().await,
        };
        if slot.is_none() {
            // its commands may wait as long as the WAIT, and then some
            let timeout = Duration::from_millis(self.timeout_ms) + Duration::from_secs(1);
            let con = self.target.connect(timeout).await?;
            *slot = Some(con.with_breaker(self.breaker.clone()));
        }
        let con = slot.as_mut().expect("made above");
        let result = con
            .then_wait(pipe, key, self.replicas, self.timeout_ms)
            .await;
        if let Err(e) = &result
            && crate::plumbing::redis_conn::is_unavailable(e)
        {
            *slot = None; // a broken socket: the next caller makes a new one
        }
        let (replies, acked) = result?;
        let confirmed = acked >= i64::from(self.replicas);
        // a timeout starts a degraded spell; a confirmation (the worker's too) ends it
        let until = match confirmed {
            true => 0,
            false => self.now_ms() + DEGRADED_FOR.as_millis() as u64,
        };
        self.degraded_until.store(until, Relaxed);
        Ok((replies, confirmed))
    }
}
