//! `lua/admit.lua` on its own: EVALSHA with keys and arguments, no HTTP, the clock pinned by
//! ARGV[4]. Each case sets a sale up in its own namespace and checks the answer and what the
//! script left in Redis.

use flashgate::domain::{GoodsId, UserId};
use flashgate::keys::Keys;
use flashgate::redis_conn::{RedisConn, Target};
use flashgate::scripts::{Admission, Code, Scripts, decode_done};
use redis::AsyncCommands;

struct Sale {
    con: RedisConn,
    keys: Keys,
    goods: GoodsId,
    scripts: Scripts,
}

const PATH: &str = "0123456789abcdef0123456789abcdef";

impl Sale {
    /// A sale from t=1000 to t=100000 (ms), user bucket 1/s burst 2, gate as given.
    async fn new(stock: i64, gate_rate: f64, gate_burst: i64) -> Self {
        // one server, or the test cluster when TEST_REDIS_URL names one
        let url = std::env::var("TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379/".into());
        let target = Target::parse(&url).unwrap();
        let mut con = target
            .connect(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let keys = Keys::new(&format!(
            "l{}:",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        let goods = GoodsId::new(1).unwrap();
        let k = keys.sale(goods);
        let _: () = redis::pipe()
            .hset_multiple(
                k.meta(),
                &[
                    ("start_ms", "1000".to_string()),
                    ("end_ms", "100000".to_string()),
                    ("user_rate", "1".to_string()),
                    ("user_burst", "2".to_string()),
                    ("gate_rate", gate_rate.to_string()),
                    ("gate_burst", gate_burst.to_string()),
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

    async fn give_path(&mut self, user: i64) {
        let key = self.keys.sale(self.goods).path(UserId::new(user).unwrap());
        let _: () = self.con.set_ex(key, PATH, 60).await.unwrap();
    }

    async fn admit(&mut self, user: i64, path: &str, now: i64) -> Admission {
        self.admit_run(user, path, now, "").await
    }

    /// `again` is ARGV[5]: "1" when the edge runs a request again after moving a unit in.
    async fn admit_run(&mut self, user: i64, path: &str, now: i64, again: &str) -> Admission {
        let keys = self.keys.sale(self.goods).admit(UserId::new(user).unwrap());
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = self
            .scripts
            .get()
            .admit
            .invoke(
                &mut self.con,
                &keys,
                &[&user.to_string(), path, "req-1", &now.to_string(), again],
            )
            .await
            .unwrap();
        Admission::from_reply(reply).unwrap()
    }

    /// (stock, buyers, queue length)
    async fn state(&mut self) -> (i64, i64, i64) {
        let k = self.keys.sale(self.goods);
        redis::pipe()
            .get(k.stock())
            .scard(k.buyers())
            .xlen(k.queue())
            .query_async(&mut self.con)
            .await
            .unwrap()
    }

    async fn cleanup(mut self) {
        self.con
            .delete_matching(&self.keys.everything())
            .await
            .unwrap();
    }
}

fn queued(a: &Admission) -> bool {
    matches!(a, Admission::Queued { .. })
}

#[tokio::test]
async fn each_step_refuses_in_order_and_refusals_write_nothing() {
    struct Case {
        name: &'static str,
        stock: i64,
        path_given: bool,
        path_sent: &'static str,
        now: i64,
        already_buyer: bool,
        expect: fn(&Admission) -> bool,
        after: (i64, i64, i64),
    }
    let cases = [
        Case {
            name: "no path issued",
            stock: 5,
            path_given: false,
            path_sent: PATH,
            now: 2000,
            already_buyer: false,
            expect: |a| *a == Admission::BadPath,
            after: (5, 0, 0),
        },
        Case {
            name: "wrong path",
            stock: 5,
            path_given: true,
            path_sent: "ffffffffffffffffffffffffffffffff",
            now: 2000,
            already_buyer: false,
            expect: |a| *a == Admission::BadPath,
            after: (5, 0, 0),
        },
        Case {
            name: "not started",
            stock: 5,
            path_given: true,
            path_sent: PATH,
            now: 400,
            already_buyer: false,
            expect: |a| *a == Admission::NotStarted { starts_in_ms: 600 },
            after: (5, 0, 0),
        },
        Case {
            name: "ended",
            stock: 5,
            path_given: true,
            path_sent: PATH,
            now: 100000,
            already_buyer: false,
            expect: |a| *a == Admission::Ended,
            after: (5, 0, 0),
        },
        Case {
            name: "duplicate",
            stock: 5,
            path_given: true,
            path_sent: PATH,
            now: 2000,
            already_buyer: true,
            expect: |a| *a == Admission::Duplicate,
            after: (5, 1, 0),
        },
        Case {
            name: "sold out",
            stock: 0,
            path_given: true,
            path_sent: PATH,
            now: 2000,
            already_buyer: false,
            expect: |a| *a == Admission::SoldOut,
            after: (0, 0, 0),
        },
        Case {
            name: "queued",
            stock: 5,
            path_given: true,
            path_sent: PATH,
            now: 2000,
            already_buyer: false,
            expect: queued,
            after: (4, 1, 1),
        },
    ];
    for c in cases {
        let mut sale = Sale::new(c.stock, 1000.0, 1000).await;
        if c.path_given {
            sale.give_path(7).await;
        }
        if c.already_buyer {
            let _: () = sale
                .con
                .sadd(sale.keys.sale(sale.goods).buyers(), 7)
                .await
                .unwrap();
        }
        let got = sale.admit(7, c.path_sent, c.now).await;
        assert!((c.expect)(&got), "{}: got {got:?}", c.name);
        assert_eq!(sale.state().await, c.after, "{}: state after", c.name);
        sale.cleanup().await;
    }
}

#[tokio::test]
async fn a_queued_entry_carries_user_request_and_time() {
    let mut sale = Sale::new(3, 1000.0, 1000).await;
    sale.give_path(9).await;
    let Admission::Queued { entry_id } = sale.admit(9, PATH, 5000).await else {
        panic!("not queued");
    };
    let k = sale.keys.sale(sale.goods);
    let entries: redis::streams::StreamRangeReply = sale.con.xrange_all(k.queue()).await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    let e = &entries.ids[0];
    assert_eq!(e.id, entry_id);
    assert_eq!(e.get::<String>("u").as_deref(), Some("9"));
    assert_eq!(e.get::<String>("r").as_deref(), Some("req-1"));
    assert_eq!(e.get::<String>("t").as_deref(), Some("5000"));
    sale.cleanup().await;
}

#[tokio::test]
async fn the_user_bucket_refills_over_time() {
    // rate 1/s, burst 2: two requests pass at t=2000, the third waits 1000 ms,
    // half a second later it still waits 500 ms, a second later one more passes.
    let mut sale = Sale::new(10, 1000.0, 1000).await;
    sale.give_path(3).await;
    assert!(queued(&sale.admit(3, PATH, 2000).await));
    assert_eq!(sale.admit(3, PATH, 2000).await, Admission::Duplicate);
    assert_eq!(
        sale.admit(3, PATH, 2000).await,
        Admission::RateLimited {
            retry_after_ms: 1000
        }
    );
    assert_eq!(
        sale.admit(3, PATH, 2500).await,
        Admission::RateLimited {
            retry_after_ms: 500
        }
    );
    assert_eq!(sale.admit(3, PATH, 3000).await, Admission::Duplicate);
    assert_eq!(
        sale.admit(3, PATH, 3000).await,
        Admission::RateLimited {
            retry_after_ms: 1000
        }
    );
    // a long pause refills only up to the burst
    assert_eq!(sale.admit(3, PATH, 60000).await, Admission::Duplicate);
    assert_eq!(sale.admit(3, PATH, 60000).await, Admission::Duplicate);
    assert!(matches!(
        sale.admit(3, PATH, 60000).await,
        Admission::RateLimited { .. }
    ));
    // the bucket key expires once it would be full again
    let ttl: i64 = sale
        .con
        .pttl(sale.keys.sale(sale.goods).bucket(UserId::new(3).unwrap()))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 3000, "bucket TTL {ttl}");
    sale.cleanup().await;
}

#[tokio::test]
async fn the_sale_gate_limits_everyone_and_spends_no_user_token_when_it_refuses() {
    let mut sale = Sale::new(10, 1.0, 1).await; // one admission a second for the whole sale
    sale.give_path(1).await;
    sale.give_path(2).await;
    assert!(queued(&sale.admit(1, PATH, 2000).await));
    assert_eq!(
        sale.admit(2, PATH, 2000).await,
        Admission::RateLimited {
            retry_after_ms: 1000
        }
    );
    let bucket_2: bool = sale
        .con
        .exists(sale.keys.sale(sale.goods).bucket(UserId::new(2).unwrap()))
        .await
        .unwrap();
    assert!(!bucket_2, "a gate refusal must not spend the user's token");
    assert!(queued(&sale.admit(2, PATH, 3000).await));
    assert_eq!(sale.state().await, (8, 2, 2));
    sale.cleanup().await;
}

#[tokio::test]
async fn a_missing_sale_is_no_sale() {
    let mut sale = Sale::new(1, 1000.0, 1000).await;
    sale.give_path(4).await;
    let _: () = sale
        .con
        .del(sale.keys.sale(sale.goods).meta())
        .await
        .unwrap();
    assert_eq!(sale.admit(4, PATH, 2000).await, Admission::NoSale);
    sale.cleanup().await;
}

#[tokio::test]
async fn script_flush_is_survived_by_reloading_on_noscript() {
    let mut sale = Sale::new(2, 1000.0, 1000).await;
    sale.give_path(5).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut sale.con)
        .await
        .unwrap();
    let exists: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sale.scripts.get().admit.sha)
        .query_async(&mut sale.con)
        .await
        .unwrap();
    assert_eq!(exists, vec![false]);
    assert!(queued(&sale.admit(5, PATH, 2000).await));
    sale.cleanup().await;
}

#[tokio::test]
async fn without_a_pinned_clock_the_script_uses_redis_time() {
    let mut sale = Sale::new(2, 1000.0, 1000).await;
    sale.give_path(6).await;
    // the window is t=1000..100000 ms: Redis TIME today is long after it
    assert_eq!(
        sale.admit(6, PATH, 0).await,
        Admission::NotStarted { starts_in_ms: 1000 }
    );
    let keys = sale.keys.sale(sale.goods).admit(UserId::new(6).unwrap());
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let reply = sale
        .scripts
        .get()
        .admit
        .invoke(&mut sale.con, &keys, &["6", PATH, "r", ""])
        .await
        .unwrap();
    assert_eq!(Admission::from_reply(reply).unwrap(), Admission::Ended);
    sale.cleanup().await;
}

#[tokio::test]
async fn a_run_again_after_a_move_is_not_charged_to_the_buckets_twice() {
    // burst 2 for the user: spend both tokens on refusals (no stock), then move a unit in
    let mut sale = Sale::new(0, 1000.0, 1000).await;
    sale.give_path(4).await;
    assert_eq!(sale.admit(4, PATH, 2000).await, Admission::SoldOut);
    assert_eq!(sale.admit(4, PATH, 2000).await, Admission::SoldOut);
    assert!(matches!(
        sale.admit(4, PATH, 2000).await,
        Admission::RateLimited { .. }
    ));
    let k = sale.keys.sale(sale.goods);
    let bucket = k.bucket(UserId::new(4).unwrap());
    let before: Vec<Option<String>> = sale.con.hmget(&bucket, &["tokens", "ts"]).await.unwrap();
    let _: () = sale.con.incr(k.stock(), 1).await.unwrap();
    // a run again skips step 3: the empty bucket does not refuse it, and it spends nothing
    assert!(queued(&sale.admit_run(4, PATH, 2000, "1").await));
    let after: Vec<Option<String>> = sale.con.hmget(&bucket, &["tokens", "ts"]).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(sale.state().await, (0, 1, 1));
    // every other step still holds: a second run again is a duplicate
    assert_eq!(
        sale.admit_run(4, PATH, 2000, "1").await,
        Admission::Duplicate
    );
    sale.cleanup().await;
}

#[tokio::test]
async fn take_moves_one_unit_out_of_a_shard_and_never_below_zero() {
    let mut sale = Sale::new(2, 1000.0, 1000).await;
    let stock = sale.keys.sale(sale.goods).stock();
    let take = sale.scripts.get().take.clone();
    let mut taken = Vec::new();
    for _ in 0..3 {
        let reply = take.invoke(&mut sale.con, &[&stock], &[]).await.unwrap();
        taken.push(decode_done("take.lua", reply, Code::SoldOut).unwrap());
    }
    assert_eq!(taken, vec![true, true, false]);
    let left: i64 = sale.con.get(&stock).await.unwrap();
    assert_eq!(left, 0);
    // a shard that was never loaded has nothing to give
    let missing = sale.keys.sale(GoodsId::new(99).unwrap()).stock();
    let reply = take.invoke(&mut sale.con, &[&missing], &[]).await.unwrap();
    assert!(!decode_done("take.lua", reply, Code::SoldOut).unwrap());
    let exists: bool = sale.con.exists(&missing).await.unwrap();
    assert!(!exists);
    sale.cleanup().await;
}
