//! After a batch is committed: each shopper's result goes to `sk:{g:ID}:result:UID` (the order id,
//! or -1), each failed entry's unit goes back through `lua/restore.lua`, and only then are the
//! stream entries acked (and deleted: an acked entry is done, and the stream stays small).
//! Every step is idempotent, so a crash anywhere here is repaired by running it again.
//! The results are then announced on `sk:results` (one message a batch), so the edges push them
//! to the shoppers' open streams at once (`admission::push`).

use redis::RedisResult;

use super::writer::{Admitted, Written};
use crate::domain::Shard;
use crate::plumbing::keys;
use crate::sales::store;
use crate::state::AppState;

/// Writes results and gives back failed units; then, if `ack` names the stream ids to settle,
/// `XACK`s and `XDEL`s them in the same `MULTI`.
pub async fn finish(
    state: &AppState,
    shard: Shard,
    batch: &[Admitted],
    written: &[Written],
    ack: &[&str],
) -> RedisResult<()> {
    let mut con = state.redis.clone();
    for (a, w) in batch.iter().zip(written) {
        if *w == Written::Failed {
            store::give_back(
                &mut con,
                &state.keys,
                &state.scripts,
                shard,
                a.user,
                store::GiveBack::Failed,
                store::Units {
                    quantity: a.quantity,
                    key: a.key_column(),
                },
            )
            .await?;
        }
    }
    let k = state.keys.shard(shard);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (a, w) in batch.iter().zip(written) {
        if *w != Written::Failed {
            let result = crate::domain::BuyResult::new(w.result(), a.quantity);
            pipe.set_ex(
                k.result(a.user),
                result.encode(),
                keys::RESULT_TTL.as_secs(),
            )
            .ignore();
        }
    }
    if !ack.is_empty() {
        pipe.xack(k.queue(), keys::GROUP, ack).ignore();
        pipe.xdel(k.queue(), ack).ignore();
    }
    pipe.query_async::<()>(&mut con).await?;
    announce(state, shard, batch, written, &mut con).await;
    Ok(())
}

/// Announces the results just written on `sk:results`, for the edges to push. Best effort and
/// after the `MULTI`, not in it (on a cluster a keyless `PUBLISH` cannot share a slot's
/// transaction): a lost message costs a page one slow poll of the result, never a result.
async fn announce(
    state: &AppState,
    shard: Shard,
    batch: &[Admitted],
    written: &[Written],
    con: &mut crate::plumbing::redis_conn::RedisConn,
) {
    let announced: Vec<String> = batch
        .iter()
        .zip(written)
        .map(|(a, w)| format!("{}={}", a.user.get(), w.result()))
        .collect();
    if announced.is_empty() {
        return;
    }
    let sent: RedisResult<i64> = redis::cmd("PUBLISH")
        .arg(state.keys.results_channel())
        .arg(format!("{} {}", shard.goods.get(), announced.join(",")))
        .query_async(con)
        .await;
    if let Err(e) = sent {
        tracing::debug!(error = %e, "results written but not announced; pages will poll for them");
    }
}
