//! After a batch is committed: each shopper's result goes to `sk:{g:ID}:result:UID` (the order id,
//! or -1), each failed entry's unit goes back through `lua/restore.lua`, and only then are the
//! stream entries acked (and deleted: an acked entry is done, and the stream stays small).
//! Every step is idempotent, so a crash anywhere here is repaired by running it again.
//! The results are also announced on `sk:results` (one message a batch, in the same `MULTI`), so
//! the edges push them to the shoppers' open streams at once (`admission::push`).

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
            )
            .await?;
        }
    }
    let k = state.keys.shard(shard);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (a, w) in batch.iter().zip(written) {
        if *w != Written::Failed {
            pipe.set_ex(k.result(a.user), w.result(), keys::RESULT_TTL.as_secs())
                .ignore();
        }
    }
    let announced: Vec<String> = batch
        .iter()
        .zip(written)
        .map(|(a, w)| format!("{}={}", a.user.get(), w.result()))
        .collect();
    if !announced.is_empty() {
        pipe.publish(
            state.keys.results_channel(),
            format!("{} {}", shard.goods.get(), announced.join(",")),
        )
        .ignore();
    }
    if !ack.is_empty() {
        pipe.xack(k.queue(), keys::GROUP, ack).ignore();
        pipe.xdel(k.queue(), ack).ignore();
    }
    pipe.query_async::<()>(&mut con).await
}
