//! RabbitMQ, the optional bus (`queue = "rabbitmq"`).
//!
//! The Redis stream stays the atomic hand-off from the admission script (Lua cannot publish to
//! RabbitMQ): it is the outbox. The **relay** ([`Publisher`], used by the stream reader) moves
//! stream entries into the durable queue with publisher confirms and acks the stream only after
//! the broker confirmed every message (`mandatory`, so an unroutable message comes back as an
//! error instead of vanishing). The **consumers** ([`consume`]) take messages with a prefetch,
//! write them to MySQL in batches, write results back to Redis, and ack only after the commit.
//! A consumer that dies leaves its messages unacked; the broker redelivers them, and the writer
//! recognises a replay of a committed one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::writer::{self, Admitted, Written};
use super::{WorkerCtx, commit, pause, results};
use crate::domain::{GoodsId, Shard, UserId};
use crate::plumbing::retry::Backoff;
use crate::state::AppState;

/// One admitted request on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// goods id
    g: i64,
    /// the stock shard (0 unless the sale is split), where the user's result goes
    #[serde(default)]
    b: u16,
    /// user id
    u: i64,
    /// the stream entry id it came from
    e: String,
    /// units bought (absent, as a version before quantities wrote it: 1)
    #[serde(default = "one", skip_serializing_if = "is_one")]
    q: u32,
    /// the buy's Idempotency-Key digest (absent: none)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
}

fn one() -> u32 {
    1
}

fn is_one(q: &u32) -> bool {
    *q == 1
}

/// The queue's name: namespaced like the Redis keys, so parallel tests do not share it.
pub fn queue_name(state: &AppState) -> String {
    format!("{}flashgate.orders", state.keys.namespace())
}

async fn open_channel(url: &str, queue: &str) -> lapin::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok((conn, channel))
}

/// The relay's side: publishes a batch and waits for the broker's confirms.
pub struct Publisher {
    url: String,
    queue: String,
    open: Option<(Connection, Channel)>,
}

impl Publisher {
    pub fn new(state: &AppState) -> Self {
        Self {
            url: state.settings.amqp_url.clone(),
            queue: queue_name(state),
            open: None,
        }
    }

    async fn channel(&mut self) -> anyhow::Result<&Channel> {
        let usable = self
            .open
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            let (conn, channel) = open_channel(&self.url, &self.queue).await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            self.open = Some((conn, channel));
        }
        Ok(&self.open.as_ref().expect("just opened").1)
    }

    /// Publishes every entry persistently; `Ok` only once the broker confirmed them all.
    pub async fn publish(&mut self, shard: Shard, batch: &[Admitted]) -> anyhow::Result<()> {
        let result = self.try_publish(shard, batch).await;
        if result.is_err() {
            self.open = None; // start over on a fresh channel next time
        }
        result
    }

    async fn try_publish(&mut self, shard: Shard, batch: &[Admitted]) -> anyhow::Result<()> {
        let queue = self.queue.clone();
        let channel = self.channel().await?;
        let mut confirms = Vec::with_capacity(batch.len());
        for a in batch {
            let body = serde_json::to_vec(&Message {
                g: shard.goods.get(),
                b: shard.index,
                u: a.user.get(),
                e: a.entry_id.clone(),
                q: a.quantity,
                k: a.key.clone(),
            })?;
            let confirm = channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            let confirmation = confirm.await?;
            anyhow::ensure!(confirmation.is_ack(), "the broker refused a message");
            anyhow::ensure!(
                confirmation.take_message().is_none(),
                "the broker returned a message as unroutable"
            );
        }
        Ok(())
    }
}

/// A consumer: until shutdown, takes batches from the queue and writes them; reconnects on error.
pub async fn consume(ctx: Arc<WorkerCtx>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::worker();
    loop {
        match consume_once(&ctx, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %format!("{e:#}"), ?wait, "RabbitMQ consumer failed; reconnecting");
                if pause(wait, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// How long a consumer waits for more messages to fill a batch once it has one.
const FILL_WINDOW: Duration = Duration::from_millis(5);

async fn consume_once(ctx: &WorkerCtx, shutdown: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
    let state = &ctx.state;
    let queue = queue_name(state);
    let (_conn, channel) = open_channel(&state.settings.amqp_url, &queue).await?;
    let batch_size = state.settings.batch_size;
    channel
        .basic_qos(batch_size as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            format!("{}-{}", ctx.consumer, uuid::Uuid::new_v4().simple()).into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(%queue, "RabbitMQ consumer started");
    loop {
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        };
        let Some(first) = first else {
            anyhow::bail!("the broker cancelled the consumer");
        };
        let mut deliveries = vec![first?];
        let deadline = Instant::now() + FILL_WINDOW;
        while deliveries.len() < batch_size {
            match tokio::time::timeout_at(deadline.into(), consumer.next()).await {
                Ok(Some(d)) => deliveries.push(d?),
                Ok(None) | Err(_) => break,
            }
        }
        // Group by sale; a malformed message is logged and dropped (acked with the rest).
        let mut by_sale: BTreeMap<Shard, Vec<Admitted>> = BTreeMap::new();
        for d in &deliveries {
            let parsed = serde_json::from_slice::<Message>(&d.data)
                .ok()
                .and_then(|m| {
                    let goods = GoodsId::new(m.g).ok()?;
                    let shard = Shard { goods, index: m.b };
                    let key = m.k.filter(|k| crate::domain::lower_hex(k, 32));
                    (m.q >= 1).then_some(())?;
                    Some((shard, UserId::new(m.u).ok()?, m.e, m.q, key))
                });
            match parsed {
                Some((shard, user, entry_id, quantity, key)) => {
                    by_sale.entry(shard).or_default().push(Admitted {
                        entry_id,
                        user,
                        quantity,
                        key,
                    })
                }
                None => {
                    state.metrics.dead_letters.inc();
                    tracing::error!(payload = %String::from_utf8_lossy(&d.data), "dropping a malformed RabbitMQ message");
                }
            }
        }
        let last_tag = deliveries.last().expect("at least one").delivery_tag;
        for (shard, batch) in by_sale {
            for chunk in batch.chunks(writer::IDS_PER_BLOCK as usize) {
                let Some(written) =
                    commit::write_with_retry(ctx, shard, chunk, None, shutdown).await?
                else {
                    // shutting down before commit: hand the messages back to the broker
                    channel
                        .basic_nack(
                            last_tag,
                            BasicNackOptions {
                                multiple: true,
                                requeue: true,
                            },
                        )
                        .await?;
                    return Ok(());
                };
                settle(ctx, shard, chunk, &written, shutdown).await?;
            }
        }
        channel
            .basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await?;
    }
}

/// Writes the results of a committed batch to Redis, retrying while Redis is away.
async fn settle(
    ctx: &WorkerCtx,
    shard: Shard,
    batch: &[Admitted],
    written: &[Written],
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::worker();
    loop {
        match results::finish(&ctx.state, shard, batch, written, &[]).await {
            Ok(()) => {
                commit::record(&ctx.state, shard.goods, written);
                return Ok(());
            }
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, ?wait, "writing results to Redis failed; retrying");
                if pause(wait, shutdown).await {
                    anyhow::bail!("shutdown while writing results");
                }
            }
        }
    }
}
