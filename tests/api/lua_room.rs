//! `lua/room.lua` on its own: EVALSHA with keys and arguments, no HTTP, the clock pinned by
//! ARGV[5] and the draw given by the test. A room that opens at t=0 for a sale from t=10000 to
//! t=100000 (ms), letting 2 tickets through per second, with a path cap of 6.

use flashgate::admission::scripts::{RoomAnswer, Scripts};
use flashgate::domain::GoodsId;
use flashgate::plumbing::keys::Keys;
use flashgate::plumbing::redis_conn::RedisConn;
use redis::AsyncCommands;

struct Room {
    con: RedisConn,
    keys: Keys,
    goods: GoodsId,
    scripts: Scripts,
}

const START: i64 = 10_000;

impl Room {
    async fn new(stock: i64) -> Self {
        let (mut con, keys) = crate::helpers::script_redis("r").await;
        let goods = GoodsId::new(1).unwrap();
        let k = keys.sale(goods);
        let _: () = redis::pipe()
            .hset_multiple(
                k.meta(),
                &[
                    ("start_ms", START.to_string()),
                    ("end_ms", "100000".to_string()),
                    ("path_cap", "6".to_string()),
                    ("room_opens_ms", "0".to_string()),
                    ("room_rate", "2".to_string()),
                ],
            )
            .set(k.stock(), stock)
            .query_async(&mut con)
            .await
            .unwrap();
        Self {
            con,
            keys,
            goods,
            scripts: Scripts::load(None).unwrap(),
        }
    }

    /// `join` (with this draw) or look, as `user` at `now`, split or not.
    async fn call(
        &mut self,
        join: bool,
        user: i64,
        draw: u64,
        now: i64,
        split: bool,
    ) -> RoomAnswer {
        let keys = self.keys.sale(self.goods).room();
        let reply = self
            .scripts
            .get()
            .room
            .invoke(
                &mut self.con,
                &keys.each_ref().map(String::as_str),
                &[
                    if join { "join" } else { "look" },
                    &user.to_string(),
                    &draw.to_string(),
                    if split { "1" } else { "0" },
                    &now.to_string(),
                ],
            )
            .await
            .unwrap();
        RoomAnswer::from_reply(reply).unwrap()
    }

    async fn join(&mut self, user: i64, draw: u64, now: i64) -> RoomAnswer {
        self.call(true, user, draw, now, false).await
    }

    async fn look(&mut self, user: i64, now: i64) -> RoomAnswer {
        self.call(false, user, 0, now, false).await
    }

    async fn done(mut self) {
        let _ = self.con.delete_matching(&self.keys.everything()).await;
    }
}

fn waiting(a: &RoomAnswer) -> (i64, i64) {
    match a {
        RoomAnswer::Waiting {
            position, wait_ms, ..
        } => (*position, *wait_ms),
        other => panic!("not waiting: {other:?}"),
    }
}

#[tokio::test]
async fn before_the_start_a_ticket_has_no_position_and_a_second_join_keeps_it() {
    let mut r = Room::new(3).await;
    assert_eq!(r.look(1, 500).await, RoomAnswer::NoTicket);
    assert_eq!(
        r.join(1, 42, 500).await,
        RoomAnswer::InRoom {
            starts_in_ms: 9_500,
            size: 1
        }
    );
    r.join(1, 7, 600).await; // again, with another draw: the first ticket stays
    let score: f64 = r
        .con
        .zscore(r.keys.sale(r.goods).room_line(), 1)
        .await
        .unwrap();
    assert_eq!(score, 42.0);
    let meta = r.keys.sale(r.goods).meta();
    let _: () = r.con.hset(&meta, "room_opens_ms", 1000).await.unwrap();
    assert_eq!(
        r.join(2, 1, 400).await,
        RoomAnswer::NotOpen { opens_in_ms: 600 }
    );
    assert_eq!(r.join(2, 1, 100_000).await, RoomAnswer::Ended);
    let _: () = r.con.hset(&meta, "room_opens_ms", -1).await.unwrap();
    assert_eq!(r.join(2, 1, 500).await, RoomAnswer::NoRoom);
    r.done().await;
}

#[tokio::test]
async fn the_draw_orders_the_line_and_positions_and_waits_only_go_down() {
    let mut r = Room::new(100).await;
    // joined in order 1..=8, drawn in another order: 8 first, 1 last
    for user in 1..=8 {
        r.join(user, (100 - user) as u64, 1000 + user).await;
    }
    // at the start nobody is through; user 1 (drawn last of 8) is 8th, and behind the cap of 6
    assert_eq!(r.look(8, START).await, waiting_answer(1, 500, 8, 0));
    assert_eq!(r.look(1, START).await, RoomAnswer::Full);
    // 2 per second: user 7 (2nd) is through at +1 s, user 6 (3rd) waits 0.5 s more
    let mut last = (i64::MAX, i64::MAX);
    for t in (START..START + 3_000).step_by(250) {
        match r.look(5, t).await {
            RoomAnswer::Through { wait_ms, .. } => {
                assert_eq!(wait_ms, 2_000, "the 4th ticket's turn is at +2 s");
                assert!(t >= START + 2_000);
                break;
            }
            a => {
                let now = waiting(&a);
                assert!(now.0 <= last.0 && now.1 <= last.1, "{last:?} then {now:?}");
                last = now;
            }
        }
    }
    // the first time a ticket is seen through is told once
    assert!(matches!(
        r.look(8, START + 600).await,
        RoomAnswer::Through { first: true, .. }
    ));
    assert!(matches!(
        r.look(8, START + 700).await,
        RoomAnswer::Through { first: false, .. }
    ));
    // never more than the cap: at +60 s, 6 through, the 7th and 8th are full
    assert!(matches!(
        r.look(3, START + 60_000).await,
        RoomAnswer::Through { .. }
    ));
    assert_eq!(r.look(2, START + 60_000).await, RoomAnswer::Full);
    r.done().await;
}

fn waiting_answer(position: i64, wait_ms: i64, size: i64, through: i64) -> RoomAnswer {
    RoomAnswer::Waiting {
        position,
        wait_ms,
        size,
        through,
    }
}

#[tokio::test]
async fn latecomers_queue_behind_the_draw_in_arrival_order_and_wait_from_joining() {
    let mut r = Room::new(100).await;
    r.join(1, 4_000_000_000_000_000, 500).await; // the highest draw there can be, nearly
    r.join(2, 3, 600).await;
    // after the start: behind both early joiners, in the order they come
    assert_eq!(
        r.join(3, 0, START + 100).await,
        waiting_answer(3, 1_400, 3, 0)
    );
    assert_eq!(
        r.join(4, 0, START + 100).await,
        waiting_answer(4, 1_900, 4, 0)
    );
    assert_eq!(
        r.join(5, 0, START + 200).await,
        waiting_answer(5, 2_300, 5, 0)
    );
    // a latecomer's wait counts from their joining: user 3's turn is at +1.5 s, joined at +0.1
    assert_eq!(
        r.look(3, START + 1_500).await,
        RoomAnswer::Through {
            wait_ms: 1_400,
            first: true
        }
    );
    r.done().await;
}

#[tokio::test]
async fn a_sold_out_sale_tells_every_ticket_and_a_split_one_by_its_key() {
    let mut r = Room::new(1).await;
    for user in 1..=8 {
        r.join(user, user as u64, 500).await;
    }
    // user 1 (first) is through at +0.5 s, user 2 waits, user 8 is behind the cap of 6
    assert!(matches!(
        r.look(1, START + 500).await,
        RoomAnswer::Through { .. }
    ));
    assert!(matches!(
        r.look(2, START + 500).await,
        RoomAnswer::Waiting { .. }
    ));
    assert_eq!(r.look(8, START + 500).await, RoomAnswer::Full);
    // the last unit goes: everyone in line is told, through, waiting or behind the cap
    let _: () = r.con.set(r.keys.sale(r.goods).stock(), 0).await.unwrap();
    for user in [1, 2, 8] {
        assert_eq!(r.look(user, START + 600).await, RoomAnswer::SoldOut);
    }
    // a split sale does not read shard 0's stock but the edges' sold-out key
    assert!(matches!(
        r.call(false, 2, 0, START + 500, true).await,
        RoomAnswer::Waiting { .. }
    ));
    let _: () = r
        .con
        .set(r.keys.sale(r.goods).room_soldout(), 1)
        .await
        .unwrap();
    assert_eq!(
        r.call(false, 2, 0, START + 500, true).await,
        RoomAnswer::SoldOut
    );
    r.done().await;
}
