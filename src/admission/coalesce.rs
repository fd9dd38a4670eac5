//! Coalesced admission: the buys of one sale shard that arrive while a call for that shard is in
//! flight go together in the next `lua/admit.lua` call.
//!
//! Redis spends most of an admission's CPU on what every call pays once (the call itself, the
//! sale's meta, `TIME`, the gate bucket), so deciding several shoppers per call multiplies what
//! one Redis core can admit (docs/capacity.md). The batching is *natural*: no timer, no waiting
//! when the sale is quiet. Per shard there is a *lane*: a list of waiting buys and whether a call
//! is running. A buy joins the list; if no call is running it starts a driver task, which takes
//! up to `admit_batch` waiting buys, makes one call, hands each buy its outcome, and repeats while
//! buys are waiting. A lone buy goes alone, at once; under load each call carries the buys that
//! arrived during the previous one.
//!
//! The driver is a task of its own, so a shopper who hangs up mid-batch does not cancel anyone's
//! decision: theirs is still made, and simply not read. A Redis error fails every buy of that
//! call as a single call's error would (503 when Redis cannot serve); a reply that does not hold
//! one outcome per shopper fails them all loudly, never passing for "queued". `admit_batch = 1`
//! sends every buy alone, without lanes.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::admission::scripts::{Admission, ScriptSet, Scripts, is_not_loaded};
use crate::domain::{Shard, UserId};
use crate::error::{AppError, Dependency};
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::{RedisConn, is_unavailable};
use crate::plumbing::replicas::Confirm;

/// Admitted shoppers whose call replicas have not confirmed are told so, not "queued".
fn unconfirmed(outcomes: &mut [Admission]) {
    for o in outcomes {
        if matches!(o, Admission::Queued { .. }) {
            *o = Admission::Unconfirmed;
        }
    }
}

/// One shopper to decide.
#[derive(Debug, Clone)]
pub struct Shopper {
    pub user: UserId,
    /// The hidden path bound to the buy's token (`PATH.PRINT`: `HiddenPath::bound_to`), as
    /// `lua/admit.lua` checks it.
    pub binding: String,
    /// Carried into the queue entry (field `r`).
    pub request_id: String,
    /// A run again after a unit was moved into this shard (its tokens were spent already).
    pub again: bool,
    /// Units asked for (1 unless the sale's `perBuy` allows more).
    pub quantity: u32,
    /// The digest of the buy's `Idempotency-Key` (`domain::BuyKey`), empty without one.
    pub key: String,
}

/// Why a whole call failed; every buy of it gets the same answer.
#[derive(Debug, Clone)]
enum Failure {
    /// Redis could not serve: 503, as for a single call.
    Unavailable,
    /// Anything else (an error answer, a malformed reply): 500, logged with its cause.
    Internal(Arc<String>),
}

impl From<Failure> for AppError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable => AppError::Unavailable(Dependency::Redis),
            Failure::Internal(why) => AppError::Internal(anyhow::anyhow!("admission: {why}")),
        }
    }
}

struct Job {
    shopper: Shopper,
    answer: oneshot::Sender<Result<Admission, Failure>>,
}

/// One shard's waiting buys, and whether a driver is running for it.
#[derive(Default)]
struct Lane {
    waiting: Vec<Job>,
    running: bool,
}

/// Decides buys through `lua/admit.lua`, coalescing those of one shard.
pub struct Admitter {
    redis: RedisConn,
    /// Replica confirmation: each call then goes with its `WAIT` on a connection of its own.
    confirm: Option<Arc<Confirm>>,
    keys: Keys,
    scripts: Arc<Scripts>,
    metrics: Arc<Metrics>,
    /// Most shoppers in one call (`admit_batch`); 1 sends each buy alone.
    cap: usize,
    /// The lanes by shard: a lock-free map (every buy looks its lane up); each lane has its own
    /// small lock, held only to push or take buys.
    lanes: papaya::HashMap<Shard, Arc<Mutex<Lane>>>,
}

impl Admitter {
    pub fn new(
        redis: RedisConn,
        confirm: Option<Arc<Confirm>>,
        keys: Keys,
        scripts: Arc<Scripts>,
        metrics: Arc<Metrics>,
        cap: usize,
    ) -> Self {
        Self {
            redis,
            confirm,
            keys,
            scripts,
            metrics,
            cap: cap.max(1),
            lanes: papaya::HashMap::new(),
        }
    }

    /// Decides `shopper` in `shard`. A run again after a move goes alone: it is rare, and its
    /// shard has just run dry.
    pub async fn admit(
        self: &Arc<Self>,
        shard: Shard,
        shopper: Shopper,
    ) -> Result<Admission, AppError> {
        if self.cap == 1 || shopper.again {
            let mut outcome = self.call(shard, std::slice::from_ref(&shopper)).await?;
            return Ok(outcome.remove(0));
        }
        let lane = self.lane(shard);
        let (answer, outcome) = oneshot::channel();
        let start = {
            let mut l = lane.lock().expect("lane lock");
            l.waiting.push(Job { shopper, answer });
            !std::mem::replace(&mut l.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive(shard, lane));
        }
        match outcome.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(AppError::Internal(anyhow::anyhow!(
                "the admission task ended without an answer"
            ))),
        }
    }

    fn lane(&self, shard: Shard) -> Arc<Mutex<Lane>> {
        self.lanes
            .pin()
            .get_or_insert_with(shard, Arc::default)
            .clone()
    }

    /// Drops the lanes nothing holds but the map (no buy waiting, no driver running), so lanes
    /// follow the shards being bought, not every shard ever bought. Run by the edge's tidy-up,
    /// off the buy path. A buy that took a lane just as it was dropped still has it: its buy
    /// is decided by a driver of that lane, beside the new lane's (two calls for one shard at
    /// once: each atomic in Redis, only the coalescing is lost for that moment).
    pub fn tidy(&self) {
        self.lanes.pin().retain(|_, lane| {
            Arc::strong_count(lane) > 1
                || lane
                    .lock()
                    .map(|l| l.running || !l.waiting.is_empty())
                    .unwrap_or(true)
        });
    }

    /// Runs calls for `shard` while buys are waiting, up to `cap` a call.
    async fn drive(self: Arc<Self>, shard: Shard, lane: Arc<Mutex<Lane>>) {
        loop {
            let jobs: Vec<Job> = {
                let mut l = lane.lock().expect("lane lock");
                if l.waiting.is_empty() {
                    l.running = false;
                    return;
                }
                let take = l.waiting.len().min(self.cap);
                l.waiting.drain(..take).collect()
            };
            let shoppers: Vec<Shopper> = jobs.iter().map(|j| j.shopper.clone()).collect();
            match self.call(shard, &shoppers).await {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.answer.send(Ok(outcome)); // a shopper who left: no one reads it
                    }
                }
                Err(failure) => {
                    for job in jobs {
                        let _ = job.answer.send(Err(failure.clone()));
                    }
                }
            }
        }
    }

    /// One call of admit.lua for `shoppers` of `shard`: one outcome each, in order. The call
    /// runs one set's script (the canary's for its share of calls, see `Scripts::pick`) and is
    /// counted in that set's outcomes and latency.
    async fn call(&self, shard: Shard, shoppers: &[Shopper]) -> Result<Vec<Admission>, Failure> {
        let set = self.scripts.pick();
        let started = std::time::Instant::now();
        let outcomes = self.call_with(&set, shard, shoppers).await?;
        set.stats
            .record(outcomes.iter().map(Admission::label), started.elapsed());
        Ok(outcomes)
    }

    async fn call_with(
        &self,
        set: &ScriptSet,
        shard: Shard,
        shoppers: &[Shopper],
    ) -> Result<Vec<Admission>, Failure> {
        let keys = self
            .keys
            .shard(shard)
            .admit(shoppers.iter().map(|s| s.user));
        let mut args: Vec<String> = Vec::with_capacity(1 + 6 * shoppers.len());
        args.push(String::new()); // now: Redis TIME
        for s in shoppers {
            args.push(s.user.get().to_string());
            args.push(s.binding.clone());
            args.push(s.request_id.clone());
            args.push(if s.again { "1" } else { "" }.to_string());
            args.push(s.quantity.to_string());
            args.push(s.key.clone());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.metrics.admit_batch_size.observe(shoppers.len() as f64);
        let confirm = match &self.confirm {
            // replicas away a moment ago: no WAIT, and no "queued" (see `plumbing::replicas`)
            Some(c) if c.degraded() => Some(c),
            Some(c) => {
                return self
                    .call_confirmed(set, c, shard, &keys, &args, shoppers.len())
                    .await;
            }
            None => None,
        };
        let reply = set
            .admit
            .invoke(&mut self.redis.clone(), &keys, &args)
            .await
            .map_err(|e| self.failed(e))?;
        let mut outcomes = Admission::from_batch_reply(reply, shoppers.len())
            .map_err(|e| Failure::Internal(Arc::new(format!("{e:#}"))))?;
        if confirm.is_some() {
            unconfirmed(&mut outcomes);
        }
        Ok(outcomes)
    }

    /// A call's Redis error, counted and logged: 503 when Redis cannot serve, else 500.
    fn failed(&self, e: redis::RedisError) -> Failure {
        self.metrics.redis_errors.inc();
        if is_unavailable(&e) {
            tracing::warn!(error = %e, "redis unavailable");
            Failure::Unavailable
        } else {
            Failure::Internal(Arc::new(e.to_string()))
        }
    }

    /// The call and its `WAIT`, on a connection of their own: "queued" only once replicas hold
    /// what the call wrote (see `plumbing::replicas`).
    async fn call_confirmed(
        &self,
        set: &ScriptSet,
        confirm: &Confirm,
        shard: Shard,
        keys: &[&str],
        args: &[&str],
        n: usize,
    ) -> Result<Vec<Admission>, Failure> {
        let mut pipe = redis::pipe();
        pipe.add_command(set.admit.cmd(keys, args));
        self.metrics.confirm_waiting.inc();
        let mut run = confirm.run(&pipe, keys[0]).await;
        if matches!(&run, Err(e) if is_not_loaded(e)) {
            run = match set.admit.load(&mut self.redis.clone()).await {
                Ok(()) => confirm.run(&pipe, keys[0]).await,
                Err(e) => Err(e),
            };
        }
        self.metrics.confirm_waiting.dec();
        let (mut replies, confirmed) = run.map_err(|e| self.failed(e))?;
        let reply = replies.pop().unwrap_or(redis::Value::Nil);
        let mut outcomes = Admission::from_batch_reply(reply, n)
            .map_err(|e| Failure::Internal(Arc::new(format!("{e:#}"))))?;
        if !confirmed
            && outcomes
                .iter()
                .any(|o| matches!(o, Admission::Queued { .. }))
        {
            self.metrics.confirm_timeouts.inc();
            tracing::warn!(
                goods = shard.goods.get(),
                shard = shard.index,
                replicas = confirm.replicas,
                timeout_ms = confirm.timeout_ms,
                "replicas did not confirm an admission in time: its shoppers are told it is being confirmed"
            );
            unconfirmed(&mut outcomes);
        }
        Ok(outcomes)
    }
}
