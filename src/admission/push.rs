//! Push: each shopper's live updates on one open response (`GET /api/seckill/events`,
//! Server-Sent Events), so pages stop polling.
//!
//! What a shopper is told: their waiting-room ticket (`room`, the same JSON as
//! `GET /api/seckill/room`), their buy's result once a worker writes it (`result`), and that the
//! sale sold out (`room` with state `sold_out`). Each edge keeps a *feed* per sale with at least
//! one open stream, and serves all of that sale's shoppers on this edge from:
//!
//! - **the room's clock**, read every [`CLOCK_EVERY`] (the sale's start, rate, cap and end, the
//!   room's size, and Redis's `TIME`, one pipeline): positions only move because tickets go
//!   through at a known rate from a known start, and a ticket's rank never changes once drawn,
//!   so every position is computed here, exactly as `lua/room.lua` computes it, on every edge
//!   alike;
//! - **one read of the stock per second** (a `GET`; a split sale reads each shard's): sold out
//!   reaches every waiting shopper within a second;
//! - **the ranks**, read once: a shopper who connects after the start has theirs from the look
//!   at connect; those waiting from before the start get theirs from one `ZRANGE` of the line
//!   at the draw;
//! - **results by pub/sub**: a worker publishes each batch's results on `sk:results` as it writes
//!   them (`worker::results`); each edge reads each of its shoppers' results back from their
//!   result key (the message is a hint, not a fact: see [`Hub::results_message`]) and hands it to
//!   the shopper's stream.
//!
//! A connection costs one bounded channel ([`QUEUE`] events): a shopper who does not read is
//! dropped when it is full, so memory stays bounded; past `push_max_connections` an edge
//! refuses a new stream (503, the page polls instead). A feed ends when its last stream does.
//!
//! Streams are held for minutes, so one client must not be able to take them all (security
//! review, row 2): a shopper has **one stream per sale** (a new one replaces the old, which ends:
//! a reloaded page, a second tab) and at most [`PER_USER`] in all; one address (IPv6 by /64)
//! holds at most `push_per_address`; the edge's stream cap always leaves a fifth of its
//! connections to ordinary requests (`startup`); and a client that stops reading is cut by the
//! connection's watchdog when its socket refuses bytes for a while (`http::conn`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::admission::room::View;
use crate::admission::scripts::RoomAnswer;
use crate::domain::{GoodsId, Shard, UserId};
use crate::error::AppError;
use crate::plumbing::clock::now_ms;
use crate::plumbing::keys::Keys;
use crate::plumbing::metrics::Metrics;
use crate::plumbing::redis_conn::RedisConn;

/// Events waiting for one shopper at most; past it the shopper is dropped (not reading).
pub const QUEUE: usize = 16;
/// Most streams one shopper holds on one edge (one per sale).
pub const PER_USER: usize = 4;
/// How often a feed moves its shoppers' positions (and reads the stock).
pub const TICK: Duration = Duration::from_secs(1);
/// How often a feed reads the room's clock and size.
pub const CLOCK_EVERY: Duration = Duration::from_secs(10);

/// One event, formatted for the wire (`id`, `event`, `data`).
fn event(id: u64, name: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"))
}

/// A stream just opened: its events, and what to run when the response carrying them ends.
pub struct Opened {
    pub events: mpsc::Receiver<Bytes>,
    pub on_end: Box<dyn FnOnce() + Send + Sync>,
}

/// The open streams of this edge, by sale.
pub struct Hub {
    redis: RedisConn,
    keys: Keys,
    metrics: Arc<Metrics>,
    cap: usize,
    open: AtomicUsize,
    next: AtomicU64,
    feeds: Mutex<HashMap<GoodsId, Arc<Feed>>>,
    /// Most streams from one address (`push_per_address`).
    per_address: usize,
    /// Who holds which streams: a shopper's by sale, an address's count.
    holders: Mutex<Holders>,
}

#[derive(Default)]
struct Holders {
    users: HashMap<UserId, Vec<(GoodsId, u64)>>,
    addresses: HashMap<std::net::IpAddr, usize>,
}

/// One sale's streams on this edge, and what its positions are computed from.
struct Feed {
    goods: GoodsId,
    shards: u16,
    streams: Mutex<HashMap<u64, Stream>>,
}

struct Stream {
    user: UserId,
    /// Signs the shopper's grant into their result, when grants are on (`identity`).
    granter: Option<crate::identity::Granter>,
    tx: mpsc::Sender<Bytes>,
    /// Place in the line (0-based), once known; `None` before the draw.
    rank: Option<i64>,
    /// Whether the room still moves for this shopper (waiting, or in the room before the start).
    waiting: bool,
    /// The last room view sent, to send only what changed.
    last: Option<String>,
}

/// What a ticket's position is computed from (as `lua/room.lua` does).
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: i64,
    stop: i64,
    cap: i64,
    rate: f64,
    size: i64,
    /// Redis's time minus this edge's, in ms.
    offset: i64,
}

impl Clock {
    /// The answer `lua/room.lua` gives a ticket of `rank` (after the room opened).
    fn answer(&self, rank: Option<i64>, sold_out: bool) -> RoomAnswer {
        let now = now_ms() + self.offset;
        if now >= self.stop {
            return RoomAnswer::Ended;
        }
        if now < self.start {
            return RoomAnswer::InRoom {
                starts_in_ms: self.start - now,
                size: self.size,
            };
        }
        if sold_out {
            return RoomAnswer::SoldOut;
        }
        let Some(rank) = rank else {
            return RoomAnswer::NoTicket;
        };
        let through = self
            .cap
            .min(((now - self.start) as f64 * self.rate / 1000.0).floor() as i64);
        let turn = ((rank + 1) as f64 * 1000.0 / self.rate).ceil() as i64;
        if rank < through {
            return RoomAnswer::Through {
                wait_ms: 0,
                first: false,
            };
        }
        if rank >= self.cap {
            return RoomAnswer::Full;
        }
        RoomAnswer::Waiting {
            position: rank - through + 1,
            wait_ms: (self.start + turn - now).max(0),
            size: self.size,
            through,
        }
    }
}

impl Hub {
    pub fn new(
        redis: RedisConn,
        keys: Keys,
        metrics: Arc<Metrics>,
        cap: usize,
        per_address: usize,
    ) -> Self {
        Self {
            redis,
            keys,
            metrics,
            cap,
            open: AtomicUsize::new(0),
            next: AtomicU64::new(1),
            feeds: Mutex::default(),
            per_address,
            holders: Mutex::default(),
        }
    }

    /// Takes a place for a new stream of `user` in `goods` from `address` (already cut to its
    /// /64 for IPv6): ends the shopper's earlier stream of the same sale, then refuses past the
    /// shopper's or the address's share. The place is given back by [`Hub::release`].
    fn hold(
        &self,
        goods: GoodsId,
        user: UserId,
        address: std::net::IpAddr,
        id: u64,
    ) -> Result<(), AppError> {
        let mut h = self.holders.lock().expect("holders lock");
        let mine = h.users.entry(user).or_default();
        if let Some(at) = mine.iter().position(|(g, _)| *g == goods) {
            let (_, old) = mine.swap_remove(at);
            // its sender dropped: the old response ends (and gives its address place back)
            if let Some(feed) = self.feeds.lock().expect("feeds lock").get(&goods) {
                feed.streams.lock().expect("streams lock").remove(&old);
            }
        }
        if mine.len() >= PER_USER {
            return Err(AppError::TooManyStreams);
        }
        let from = h.addresses.entry(address).or_default();
        if *from >= self.per_address {
            return Err(AppError::TooManyStreams);
        }
        *from += 1;
        h.users.entry(user).or_default().push((goods, id));
        Ok(())
    }

    /// Gives back the place [`Hub::hold`] took.
    fn release(&self, goods: GoodsId, user: UserId, address: std::net::IpAddr, id: u64) {
        let mut h = self.holders.lock().expect("holders lock");
        if let Some(mine) = h.users.get_mut(&user) {
            mine.retain(|&(g, i)| !(g == goods && i == id));
            if mine.is_empty() {
                h.users.remove(&user);
            }
        }
        if let Some(n) = h.addresses.get_mut(&address) {
            *n -= 1;
            if *n == 0 {
                h.addresses.remove(&address);
            }
        }
    }

    /// Opens a stream for `user` in `goods` (`shards` stock shards) from `address`, starting
    /// with `first` (the events of the shopper's state now); `room` the ticket's state from the
    /// look at connect, for a sale with a room. Refused past the edge's cap, the shopper's or
    /// the address's share; the shopper's earlier stream of this sale ends.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        self: &Arc<Self>,
        goods: GoodsId,
        shards: u16,
        user: UserId,
        address: std::net::IpAddr,
        granter: Option<crate::identity::Granter>,
        room: Option<RoomAnswer>,
        first: Vec<(&'static str, String)>,
    ) -> Result<Opened, AppError> {
        let id = self.next.fetch_add(1, Relaxed);
        self.hold(goods, user, address, id)?;
        if self.open.fetch_add(1, Relaxed) >= self.cap {
            self.open.fetch_sub(1, Relaxed);
            self.release(goods, user, address, id);
            return Err(AppError::PushFull);
        }
        self.metrics.push_connections.inc();
        let (tx, rx) = mpsc::channel(QUEUE);
        // the browser reconnects a second after a break (and gets the state afresh)
        let _ = tx.try_send(Bytes::from_static(b"retry: 1000\n\n"));
        for (name, data) in &first {
            self.send(&tx, name, data);
        }
        let (rank, waiting) = match room {
            Some(RoomAnswer::Waiting {
                position, through, ..
            }) => (Some(position - 1 + through), true),
            Some(RoomAnswer::InRoom { .. }) => (None, true),
            _ => (None, false),
        };
        let last = first
            .iter()
            .find(|(n, _)| *n == "room")
            .map(|(_, d)| d.clone());
        let (feed, new) = {
            let mut feeds = self.feeds.lock().expect("feeds lock");
            let mut new = false;
            let feed = feeds
                .entry(goods)
                .or_insert_with(|| {
                    new = true;
                    Arc::new(Feed {
                        goods,
                        shards,
                        streams: Mutex::default(),
                    })
                })
                .clone();
            feed.streams.lock().expect("streams lock").insert(
                id,
                Stream {
                    user,
                    granter,
                    tx,
                    rank,
                    waiting,
                    last,
                },
            );
            (feed, new)
        };
        if new {
            tokio::spawn(self.clone().run(Arc::downgrade(&feed)));
        }
        let (hub, feed) = (Arc::downgrade(self), Arc::downgrade(&feed));
        let on_end = Box::new(move || {
            if let Some(f) = feed.upgrade() {
                f.streams.lock().expect("streams lock").remove(&id);
            }
            if let Some(h) = hub.upgrade() {
                h.open.fetch_sub(1, Relaxed);
                h.metrics.push_connections.dec();
                h.release(goods, user, address, id);
            }
        });
        Ok(Opened { events: rx, on_end })
    }

    /// Ends every stream (the edge is shutting down): their responses end, browsers reconnect.
    pub fn close_all(&self) {
        for feed in self.feeds.lock().expect("feeds lock").values() {
            feed.streams.lock().expect("streams lock").clear();
        }
    }

    /// Streams open on this edge now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Queues one event on a stream, numbered and counted; false if the stream cannot take it
    /// (its queue is full: the client is not reading; or it is gone), and is then to be dropped.
    fn send(&self, tx: &mpsc::Sender<Bytes>, name: &str, data: &str) -> bool {
        let taken = tx
            .try_send(event(self.next.fetch_add(1, Relaxed), name, data))
            .is_ok();
        if taken {
            self.metrics.push_events.inc();
        }
        taken
    }

    /// Hands a written result, as read from the shopper's result key (never a message's word
    /// for it: see [`Hub::results_message`]), to their streams on this edge.
    pub fn result(&self, goods: GoodsId, user: UserId, result: crate::domain::BuyResult) {
        let Some(feed) = self.feeds.lock().expect("feeds lock").get(&goods).cloned() else {
            return;
        };
        let mut streams = feed.streams.lock().expect("streams lock");
        let mut gone = Vec::new();
        for (id, s) in streams.iter().filter(|(_, s)| s.user == user) {
            let data = crate::identity::Granter::result_event(s.granter.as_ref(), result);
            if !self.send(&s.tx, "result", &data) {
                gone.push(*id);
            }
        }
        for id in gone {
            streams.remove(&id); // not reading: dropped (its stream ends)
        }
    }

    /// A worker's message on the results channel: `GOODS UID=RESULT,UID=RESULT,...`. It only
    /// says *whose* results to look at: what a stream is told, and any grant signed into it, is
    /// the result read back from the shopper's own result key (the worker writes it, after the
    /// order's commit, before it announces), never the message's number: anyone who can
    /// `PUBLISH` on the server (another deployment, another db) could have sent that.
    pub fn results_message(self: &Arc<Self>, payload: &str) {
        if let Some(claims) = payload.strip_prefix("draw ") {
            return self.draw_message(claims);
        }
        let Some((goods, list)) = payload.split_once(' ') else {
            return;
        };
        let Ok(goods) = GoodsId::parse(goods) else {
            return;
        };
        let Some(feed) = self.feeds.lock().expect("feeds lock").get(&goods).cloned() else {
            return;
        };
        let users: Vec<UserId> = {
            let streams = feed.streams.lock().expect("streams lock");
            list.split(',')
                .filter_map(|pair| UserId::parse(pair.split_once('=')?.0).ok())
                .filter(|u| streams.values().any(|s| s.user == *u))
                .collect()
        };
        if users.is_empty() {
            return;
        }
        let hub = self.clone();
        // one round trip for the whole message (a worker's batch is one shard: one hash tag)
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            for user in &users {
                let home = hub.keys.shard(Shard::home(goods, *user, feed.shards));
                pipe.get(home.result(*user));
            }
            let read: redis::RedisResult<Vec<Option<String>>> =
                pipe.query_async(&mut hub.redis.clone()).await;
            match read {
                Ok(results) => {
                    for (user, result) in users.into_iter().zip(results) {
                        // nothing written: not a result (the page polls as before)
                        let result = result.as_deref().and_then(crate::domain::BuyResult::decode);
                        if let Some(result) = result {
                            hub.result(goods, user, result);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "push: reading results back failed; pages poll")
                }
            }
        });
    }

    /// A draw's claims given (`crate::draws::record::step`): `GOODS UNTIL UID,UID,...`; each
    /// shopper's streams on this edge get a `draw` event `{"goodsId","won":true,"claimUntil"}`.
    fn draw_message(self: &Arc<Self>, payload: &str) {
        // like a result, the message only says whose claims to look at: what a stream is told is
        // the claim read back from the draw's own keys (anyone who can PUBLISH on the server
        // could have sent the message)
        let mut parts = payload.splitn(3, ' ');
        let (Some(goods), Some(_until), Some(users)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let Ok(goods) = GoodsId::parse(goods) else {
            return;
        };
        let Some(feed) = self.feeds.lock().expect("feeds lock").get(&goods).cloned() else {
            return;
        };
        let users: Vec<UserId> = {
            let streams = feed.streams.lock().expect("streams lock");
            users
                .split(',')
                .filter_map(|u| UserId::parse(u).ok())
                .filter(|u| streams.values().any(|s| s.user == *u))
                .collect()
        };
        if users.is_empty() {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            let mut con = hub.redis.clone();
            for user in users {
                let until =
                    match crate::draws::record::claim_until(&mut con, &hub.keys, goods, user).await
                    {
                        Ok(Some(until)) if until > now_ms() => until,
                        _ => continue, // no claim of record: nothing to tell
                    };
                let data = format!(
                    "{{\"goodsId\":{},\"won\":true,\"claimUntil\":{until}}}",
                    goods.get()
                );
                let mut streams = feed.streams.lock().expect("streams lock");
                let mut gone = Vec::new();
                for (id, s) in streams.iter().filter(|(_, s)| s.user == user) {
                    if !hub.send(&s.tx, "draw", &data) {
                        gone.push(*id);
                    }
                }
                for id in gone {
                    streams.remove(&id); // not reading: dropped (its stream ends)
                }
            }
        });
    }

    /// A feed's task: every [`TICK`], the stock; every [`CLOCK_EVERY`], the clock; then each
    /// waiting shopper's view, sent if it changed. Ends with the feed's last stream.
    async fn run(self: Arc<Self>, feed: Weak<Feed>) {
        let mut clock: Option<(Clock, tokio::time::Instant)> = None;
        let mut ranked = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(feed) = feed.upgrade() else { return };
            if feed.streams.lock().expect("streams lock").is_empty() {
                let mut feeds = self.feeds.lock().expect("feeds lock");
                if feed.streams.lock().expect("streams lock").is_empty() {
                    feeds.remove(&feed.goods);
                    return;
                }
            }
            let waiting = feed
                .streams
                .lock()
                .expect("streams lock")
                .values()
                .any(|s| s.waiting);
            if !waiting {
                continue; // only results to hand on: they come by pub/sub
            }
            if clock.is_none_or(|(_, at)| at.elapsed() >= CLOCK_EVERY) {
                match self.read_clock(feed.goods).await {
                    Ok(Some(c)) => clock = Some((c, tokio::time::Instant::now())),
                    Ok(None) => continue, // no room (any more)
                    Err(e) => {
                        tracing::debug!(goods = feed.goods.get(), error = %e, "push: reading the room's clock failed");
                        continue;
                    }
                }
            }
            let Some((c, _)) = clock else { continue };
            let sold_out = match self.sold_out(&feed).await {
                Ok(s) => s,
                Err(_) => continue,
            };
            // at the draw: the ranks of those who joined before the start, with one read
            if !ranked && now_ms() + c.offset >= c.start && self.rank_everyone(&feed).await.is_ok()
            {
                ranked = true;
            }
            self.move_line(&feed, &c, sold_out);
        }
    }

    /// Tells each waiting shopper where they stand now, if that changed.
    fn move_line(&self, feed: &Feed, c: &Clock, sold_out: bool) {
        let mut streams = feed.streams.lock().expect("streams lock");
        let mut gone = Vec::new();
        for (id, s) in streams.iter_mut().filter(|(_, s)| s.waiting) {
            let answer = c.answer(s.rank, sold_out);
            if matches!(answer, RoomAnswer::NoTicket) {
                continue; // rank not read yet
            }
            s.waiting = matches!(
                answer,
                RoomAnswer::Waiting { .. } | RoomAnswer::InRoom { .. }
            );
            let data = serde_json::to_string(&View::from(answer)).expect("a view serialises");
            if s.last.as_deref() == Some(data.as_str()) {
                continue;
            }
            if self.send(&s.tx, "room", &data) {
                s.last = Some(data);
            } else {
                gone.push(*id);
            }
        }
        for id in gone {
            streams.remove(&id);
        }
    }

    /// The room's start, end, cap, rate and size, and Redis's time: one pipeline.
    async fn read_clock(&self, goods: GoodsId) -> redis::RedisResult<Option<Clock>> {
        let k = self.keys.sale(goods);
        let asked = now_ms();
        #[allow(clippy::type_complexity)]
        let ((start, stop, cap, opens, rate), size, (secs, micros)): (
            (
                Option<i64>,
                Option<i64>,
                Option<i64>,
                Option<i64>,
                Option<f64>,
            ),
            i64,
            (i64, i64),
        ) = redis::pipe()
            .cmd("HMGET")
            .arg(k.meta())
            .arg(&[
                "start_ms",
                "end_ms",
                "path_cap",
                "room_opens_ms",
                "room_rate",
            ])
            .zcard(k.room_line())
            .cmd("TIME")
            .query_async(&mut self.redis.clone())
            .await?;
        let (Some(start), Some(stop), Some(cap), Some(rate)) = (start, stop, cap, rate) else {
            return Ok(None);
        };
        if opens.unwrap_or(-1) < 0 || rate <= 0.0 {
            return Ok(None);
        }
        let redis_now = secs * 1000 + micros / 1000;
        Ok(Some(Clock {
            start,
            stop,
            cap,
            rate,
            size,
            offset: redis_now - (asked + now_ms()) / 2,
        }))
    }

    /// Whether the sale has nothing left: its stock, or the sum of its shards'.
    async fn sold_out(&self, feed: &Feed) -> redis::RedisResult<bool> {
        let mut con = self.redis.clone();
        let mut left = 0;
        for shard in Shard::all(feed.goods, feed.shards) {
            let s: Option<i64> = redis::cmd("GET")
                .arg(self.keys.shard(shard).stock())
                .query_async(&mut con)
                .await?;
            left += s.unwrap_or(0).max(0);
        }
        Ok(left == 0)
    }

    /// The ranks of the streams that have none: one read of the whole line, at the draw.
    async fn rank_everyone(&self, feed: &Feed) -> redis::RedisResult<()> {
        let unranked = feed
            .streams
            .lock()
            .expect("streams lock")
            .values()
            .any(|s| s.waiting && s.rank.is_none());
        if !unranked {
            return Ok(());
        }
        let line: Vec<i64> = redis::cmd("ZRANGE")
            .arg(self.keys.sale(feed.goods).room_line())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.redis.clone())
            .await?;
        let ranks: HashMap<i64, i64> = line
            .into_iter()
            .enumerate()
            .map(|(r, u)| (u, r as i64))
            .collect();
        for s in feed.streams.lock().expect("streams lock").values_mut() {
            if s.rank.is_none() {
                s.rank = ranks.get(&s.user.get()).copied();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(start_in: i64) -> Clock {
        Clock {
            start: now_ms() + start_in,
            stop: now_ms() + 3_600_000,
            cap: 100,
            rate: 10.0,
            size: 50,
            offset: 0,
        }
    }

    #[test]
    fn positions_follow_the_rooms_rule_and_never_go_back() {
        // 2.05 s after the start at 10 tickets a second: 20 through
        let c = clock(-2050);
        match c.answer(Some(25), false) {
            RoomAnswer::Waiting {
                position, through, ..
            } => assert_eq!((position, through), (6, 20)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.answer(Some(19), false),
            RoomAnswer::Through { .. }
        ));
        assert!(matches!(c.answer(Some(100), false), RoomAnswer::Full));
        assert!(matches!(c.answer(Some(25), true), RoomAnswer::SoldOut));
        assert!(matches!(
            clock(5000).answer(None, false),
            RoomAnswer::InRoom { .. }
        ));
        let later = clock(-3050);
        let (RoomAnswer::Waiting { position: a, .. }, RoomAnswer::Waiting { position: b, .. }) =
            (c.answer(Some(40), false), later.answer(Some(40), false))
        else {
            panic!("waiting")
        };
        assert!(b < a, "a position only goes down: {a} then {b}");
    }
}
