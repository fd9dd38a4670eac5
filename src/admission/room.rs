//! The waiting room: a fair first second (`lua/room.lua` holds the whole rule).
//!
//! A sale may open a room some seconds before its start (`roomOpensBefore`). Shoppers who open
//! the sale page then join it (`POST /api/seckill/room`) and get one ticket each; at the start
//! the early joiners' order is a random draw (the edge draws each ticket's number when it is
//! made, and nobody sees an order before the start), latecomers queue behind in arrival order.
//! Tickets go through at the sale's room rate and only as many as its path cap; the page polls
//! `GET /api/seckill/room` for its position and wait, which only ever go down, and the answer
//! says when to poll next. Only a ticket that is through gets a hidden path ([`require_turn`]).
//!
//! Every edge computes the same line from Redis alone: the room's keys sit under the sale's
//! shard 0 hash tag (also for a split sale), and how many tickets are through is a function of
//! Redis time, so there is nothing to coordinate. A sale that is not split tells its line it is
//! sold out from shard 0's stock, in the script; a split one from a key the edges keep in step
//! with the sum of its shards ([`SplitStock`]).
//!
//! With `FLASHGATE_ROOM_POW=on` a ticket costs a proof of work, as a draw entry does
//! (`crate::draws::proof`, the ALTCHA form): [`Pow::challenge`] issues one bound to the sale and the
//! asking address, signed with a key every edge derives from the shared path key, its work
//! raised per address as joins come from it; [`Pow::spend`] checks one (one hash, one HMAC),
//! refuses a replay (`SET NX` of the challenge) and counts the address. Only a join that would
//! make a ticket pays: the route answers a shopper holding one (or a room not open) as a look.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::AsyncCommands;
use serde::Serialize;

use crate::admission::scripts::{RoomAnswer, Scripts};
use crate::admission::split::Shape;
use crate::domain::{GoodsId, Shard, UserId};
use crate::draws::order::Keyed;
use crate::draws::proof;
use crate::error::{AppError, DrawFault};
use crate::plumbing::clock::now_ms;
use crate::plumbing::config::Settings;
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::RedisConn;

/// Scores of early joiners are drawn below this (2^52: exact in a double, as Redis stores it).
const DRAW_BELOW: u64 = 1 << 52;

/// How soon a waiting page polls again at most: a sale that sells out tells its line within
/// this time.
pub const POLL_WAITING_MS: i64 = 1000;
/// How soon a page in the room before the start polls again at most (it polls at the start).
pub const POLL_BEFORE_START_MS: i64 = 5000;

/// How often an edge adds up a split sale's stock for its room (see [`SplitStock`]).
pub const SPLIT_CHECK_EVERY: Duration = Duration::from_millis(250);

/// A split sale's room cannot see the other shards' stock (they are other Redis slots), so
/// each edge adds them up at most every [`SPLIT_CHECK_EVERY`] per sale, while someone asks,
/// and sets or clears the room's sold-out key (`room:soldout`) to match.
#[derive(Debug, Default)]
struct SplitStock {
    checked: Mutex<HashMap<GoodsId, Instant>>,
}

impl SplitStock {
    async fn refresh(
        &self,
        redis: &RedisConn,
        keys: &Keys,
        goods: GoodsId,
        shards: u16,
    ) -> Result<(), AppError> {
        {
            let mut checked = self.checked.lock().expect("split stock lock");
            match checked.get(&goods) {
                Some(at) if at.elapsed() < SPLIT_CHECK_EVERY => return Ok(()),
                _ => checked.insert(goods, Instant::now()),
            };
        }
        let con = &mut redis.clone();
        let mut total = 0;
        for shard in Shard::all(goods, shards) {
            let left: Option<i64> = con.get(keys.shard(shard).stock()).await?;
            total += left.unwrap_or(0).max(0);
        }
        let key = keys.sale(goods).room_soldout();
        if total == 0 {
            let _: () = con.set(&key, 1).await?;
        } else {
            let _: () = con.del(&key).await?;
        }
        Ok(())
    }
}

/// The rooms of every sale, as one edge sees them: what a join or a look needs, and nothing else.
pub struct Room {
    redis: RedisConn,
    keys: Keys,
    scripts: Arc<Scripts>,
    metrics: Arc<Metrics>,
    split_stock: SplitStock,
}

impl Room {
    /// Forgets the split sales not checked lately (a check is made again when asked).
    pub fn tidy(&self) {
        self.split_stock
            .checked
            .lock()
            .expect("split stock lock")
            .retain(|_, at| at.elapsed() < SPLIT_CHECK_EVERY * 4);
    }

    pub fn new(redis: RedisConn, keys: Keys, scripts: Arc<Scripts>, metrics: Arc<Metrics>) -> Self {
        Self {
            redis,
            keys,
            scripts,
            metrics,
            split_stock: SplitStock::default(),
        }
    }

    /// Joins the room of `goods` (or looks, with `join` false) as `user`; `shape` is the sale's,
    /// as the caller read it.
    pub async fn call(
        &self,
        goods: GoodsId,
        shape: Shape,
        user: UserId,
        join: bool,
    ) -> Result<RoomAnswer, AppError> {
        if shape.room && shape.shards > 1 {
            self.split_stock
                .refresh(&self.redis, &self.keys, goods, shape.shards)
                .await?;
        }
        let keys = self.keys.sale(goods).room();
        // a look draws nothing: the script reads its ARGV[3] only for a new ticket
        let (mode, draw) = match join {
            true => ("join", rand::rng().random_range(0..DRAW_BELOW).to_string()),
            false => ("look", String::new()),
        };
        let split = if shape.shards > 1 { "1" } else { "0" };
        let reply = self
            .scripts
            .get()
            .room
            .invoke(
                &mut self.redis.clone(),
                &keys.each_ref().map(String::as_str),
                &[mode, &user.get().to_string(), &draw, split, ""],
            )
            .await?;
        let answer = RoomAnswer::from_reply(reply)?;
        if let RoomAnswer::Through {
            wait_ms,
            first: true,
        } = answer
        {
            self.metrics.room_let_through.inc();
            self.metrics.room_wait.observe(wait_ms as f64 / 1000.0);
        }
        Ok(answer)
    }

    /// For the hidden path: refuses a shopper of a sale with a room whose ticket is not through.
    pub async fn require_turn(
        &self,
        goods: GoodsId,
        shape: Shape,
        user: UserId,
    ) -> Result<(), AppError> {
        match self.call(goods, shape, user, false).await? {
            RoomAnswer::Through { .. } | RoomAnswer::NoRoom => Ok(()),
            RoomAnswer::Waiting { position, .. } => Err(AppError::NotYourTurn {
                position: Some(position),
            }),
            RoomAnswer::InRoom { .. } | RoomAnswer::NoTicket | RoomAnswer::NotOpen { .. } => {
                Err(AppError::NotYourTurn { position: None })
            }
            RoomAnswer::Full => Err(AppError::RoomFull),
            RoomAnswer::SoldOut => Err(AppError::SoldOut),
            RoomAnswer::Ended => Err(AppError::Ended),
            RoomAnswer::NoSale => Err(AppError::NotFound),
        }
    }
}

/// The label of the key room challenges are signed with (`PathSeal::derived`).
const POW_LABEL: &str = "flashgate-room-pow";
static SPEND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    crate::draws::record::with_codes(include_str!("../../lua/pow_spend.lua"))
});

/// What the room's proof of work needs: the stores, the settings (its size) and the shared key.
pub struct Pow<'a> {
    pub redis: &'a RedisConn,
    pub keys: &'a Keys,
    pub settings: &'a Settings,
    pub seal: &'a crate::admission::path_seal::PathSeal,
}

impl Pow<'_> {
    fn key(&self) -> Keyed {
        Keyed::new(&self.seal.derived(POW_LABEL))
    }

    /// The work a join from `address` owes now: raised for an address that brought many joins.
    async fn work_for(&self, goods: GoodsId, address: &str) -> Result<u64, AppError> {
        let brought: Option<u64> = self
            .redis
            .clone()
            .hget(self.keys.sale(goods).room_addresses(), address)
            .await?;
        Ok(proof::difficulty(
            self.settings.draw_pow_max.max(1),
            self.settings.draw_pow_per_address,
            brought.unwrap_or(0),
        ))
    }

    /// A proof-of-work challenge for joining `goods`'s room from `ip`.
    pub async fn challenge(
        &self,
        goods: GoodsId,
        ip: std::net::IpAddr,
    ) -> Result<proof::Challenge, AppError> {
        let key = self.key();
        let address = proof::address_digest(&key, ip);
        let max = self.work_for(goods, &address).await?;
        let scope = proof::Scope {
            goods: goods.get(),
            address: &address,
        };
        Ok(proof::issue(&key, scope, max, now_ms()))
    }

    /// Checks a join's `given` proof for `goods` from `ip` and spends it (refused, with the
    /// draw's proof codes, if missing, forged, expired, from elsewhere, too easy or used before).
    pub async fn spend(
        &self,
        goods: GoodsId,
        ip: std::net::IpAddr,
        given: &str,
    ) -> Result<(), AppError> {
        let key = self.key();
        let address = proof::address_digest(&key, ip);
        let scope = proof::Scope {
            goods: goods.get(),
            address: &address,
        };
        let now = now_ms();
        let (challenge, expires, work) = proof::verify(&key, given, scope, now).map_err(|f| {
            AppError::Draw(match f {
                proof::Fault::Malformed => DrawFault::ProofMalformed,
                proof::Fault::Forged => DrawFault::ProofForged,
                proof::Fault::Expired => DrawFault::ProofExpired,
                proof::Fault::Elsewhere => DrawFault::ProofElsewhere,
            })
        })?;
        // lua/pow_spend.lua spends the proof and counts the address in one call: proofs sent
        // together were all priced at the count before any of them (an outside attack took 57
        // tickets at the base work when the count was read, then written, apart)
        let k = self.keys.sale(goods);
        let (code, _owed): (i64, f64) = SPEND
            .key(k.room_spent(&challenge))
            .key(k.room_addresses())
            .arg(&address)
            .arg((expires - now).max(1))
            .arg(work)
            .arg(self.settings.draw_pow_max.max(1))
            .arg(self.settings.draw_pow_per_address)
            .invoke_async(&mut self.redis.clone())
            .await?;
        match code {
            0 => Ok(()),
            40 => Err(AppError::Draw(DrawFault::ProofReplayed)),
            41 => Err(AppError::Draw(DrawFault::ProofTooEasy)),
            other => Err(AppError::Internal(anyhow::anyhow!(
                "pow_spend.lua answered {other}"
            ))),
        }
    }
}

/// What the page is told about its ticket (`GET`/`POST /api/seckill/room`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct View {
    /// `no_room`, `not_open`, `no_ticket`, `in_room` (before the draw), `waiting`, `through`,
    /// `full` (behind the sale's cap: will not get through), `sold_out`, `ended`.
    pub state: &'static str,
    /// 1 = next; only while waiting.
    pub position: Option<i64>,
    /// Until this ticket's turn (ms), while waiting.
    pub wait_ms: Option<i64>,
    /// Tickets in the room.
    pub room_size: Option<i64>,
    /// Tickets let through so far.
    pub through: Option<i64>,
    /// Until the start (ms), in the room before it; until the room opens, before that.
    pub starts_in_ms: Option<i64>,
    pub opens_in_ms: Option<i64>,
    /// When to ask again (ms); absent when there is nothing more to wait for.
    pub next_poll_ms: Option<i64>,
}

impl From<RoomAnswer> for View {
    fn from(a: RoomAnswer) -> Self {
        let mut v = View {
            state: "",
            position: None,
            wait_ms: None,
            room_size: None,
            through: None,
            starts_in_ms: None,
            opens_in_ms: None,
            next_poll_ms: None,
        };
        match a {
            RoomAnswer::Through { .. } => v.state = "through",
            RoomAnswer::Waiting {
                position,
                wait_ms,
                size,
                through,
            } => {
                v.state = "waiting";
                (v.position, v.wait_ms) = (Some(position), Some(wait_ms));
                (v.room_size, v.through) = (Some(size), Some(through));
                v.next_poll_ms = Some(wait_ms.clamp(100, POLL_WAITING_MS));
            }
            RoomAnswer::InRoom { starts_in_ms, size } => {
                v.state = "in_room";
                (v.starts_in_ms, v.room_size) = (Some(starts_in_ms), Some(size));
                v.next_poll_ms = Some(starts_in_ms.clamp(100, POLL_BEFORE_START_MS));
            }
            RoomAnswer::NotOpen { opens_in_ms } => {
                v.state = "not_open";
                v.opens_in_ms = Some(opens_in_ms);
                v.next_poll_ms = Some(opens_in_ms.clamp(100, 10 * POLL_BEFORE_START_MS));
            }
            RoomAnswer::Full => v.state = "full",
            RoomAnswer::SoldOut => v.state = "sold_out",
            RoomAnswer::Ended => v.state = "ended",
            RoomAnswer::NoTicket => v.state = "no_ticket",
            RoomAnswer::NoRoom => v.state = "no_room",
            RoomAnswer::NoSale => v.state = "no_sale",
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_page_polls_within_a_second_and_at_its_turn() {
        let v = View::from(RoomAnswer::Waiting {
            position: 40,
            wait_ms: 9000,
            size: 100,
            through: 3,
        });
        assert_eq!((v.state, v.next_poll_ms), ("waiting", Some(1000)));
        let soon = View::from(RoomAnswer::Waiting {
            position: 1,
            wait_ms: 250,
            size: 100,
            through: 3,
        });
        assert_eq!(soon.next_poll_ms, Some(250));
        let before = View::from(RoomAnswer::InRoom {
            starts_in_ms: 60_000,
            size: 7,
        });
        assert_eq!(
            (before.state, before.position, before.next_poll_ms),
            ("in_room", None, Some(5000))
        );
        assert_eq!(View::from(RoomAnswer::SoldOut).next_poll_ms, None);
    }
}
