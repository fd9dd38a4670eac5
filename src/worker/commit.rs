//! Committing one batch: the MySQL write with its retries, the entries kept claimed while MySQL
//! is away, and the batch counted in the metrics. Shared by the stream reader (`stream`) and the
//! RabbitMQ consumers (`rabbit`), which both end in the same transaction.

use std::time::Instant;

use redis::RedisResult;
use tokio::sync::watch;

use super::writer::{self, Admitted, Batch, Holder, Written};
use super::{WorkerCtx, pause};
use crate::domain::Shard;
use crate::plumbing::keys;
use crate::plumbing::retry::Backoff;

/// Counts a settled batch of `goods` in the metrics, and its new orders in the sale's tally.
pub fn record(state: &crate::state::AppState, goods: crate::domain::GoodsId, written: &[Written]) {
    let m = &state.metrics;
    let new = written
        .iter()
        .filter(|w| matches!(w, Written::Order(_)))
        .count();
    if new > 0 {
        state
            .tally
            .count(goods, crate::operators::tally::WRITTEN, new as u64);
    }
    m.batches.inc();
    m.batch_entries.observe(written.len() as f64);
    for w in written {
        let c = match w {
            Written::Order(_) => &m.orders,
            Written::Existing(_) => &m.replays,
            Written::Failed => &m.failed,
        };
        c.inc();
    }
}

/// Commits the batch, retrying with backoff while MySQL fails. `None` if it must be left as it
/// is: shutdown came first, or another worker took the batch over (the fence moved: then this
/// worker learns its new epoch, and the entries are the other worker's to settle).
pub async fn write_with_retry(
    ctx: &WorkerCtx,
    shard: Shard,
    batch: &[Admitted],
    holder: Option<Holder<'_>>,
    shutdown: &mut watch::Receiver<bool>,
) -> RedisResult<Option<Vec<Written>>> {
    let mut backoff = Backoff::worker();
    loop {
        let started = Instant::now();
        match writer::write_batch(&ctx.state.db, &ctx.state.events, shard.goods, batch, holder)
            .await
        {
            Ok(Batch::Written(written)) => {
                if ctx.state.events.on() {
                    // each new order's created event, each failure's failed event (`writer`)
                    let new = written
                        .iter()
                        .filter(|w| matches!(w, Written::Order(_) | Written::Failed))
                        .count();
                    ctx.state.metrics.events_written.inc_by(new as u64);
                }
                ctx.state
                    .metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                return Ok(Some(written));
            }
            Ok(Batch::Fenced) => {
                ctx.state.metrics.fenced.inc();
                let epoch = ctx.fence.refresh(&ctx.state.db).await.ok();
                tracing::warn!(
                    goods = shard.goods.get(),
                    shard = shard.index,
                    entries = batch.len(),
                    ?epoch,
                    "another worker took this batch over while it waited; not committed"
                );
                return Ok(None);
            }
            Err(e) if writer::is_unique_violation(&e) => {
                tracing::info!(
                    goods = shard.goods.get(),
                    shard = shard.index,
                    "another writer committed part of this batch; re-running it"
                );
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(goods = shard.goods.get(), shard = shard.index, error = %e, ?wait, entries = batch.len(), "MySQL write failed; nothing acked, retrying");
                if ctx.state.settings.queue == crate::plumbing::config::QueueKind::Redis {
                    keep_claimed(ctx, shard, batch).await;
                }
                if pause(wait, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Resets the idle time of entries this worker is still working on, so no one claims them.
async fn keep_claimed(ctx: &WorkerCtx, shard: Shard, batch: &[Admitted]) {
    let queue = ctx.state.keys.shard(shard).queue();
    let mut ids: Vec<&str> = batch.iter().map(|a| a.entry_id.as_str()).collect();
    ids.dedup(); // the shoppers of one entry are next to each other
    let touched: RedisResult<Vec<String>> = redis::cmd("XCLAIM")
        .arg(&queue)
        .arg(keys::GROUP)
        .arg(&ctx.consumer)
        .arg(0)
        .arg(&ids)
        .arg("JUSTID")
        .query_async(&mut ctx.state.redis.clone())
        .await;
    if let Err(e) = touched {
        tracing::debug!(error = %e, "could not refresh claimed entries");
    }
}
