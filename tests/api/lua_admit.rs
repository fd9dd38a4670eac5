//! `lua/admit.lua` on its own: EVALSHA with keys and arguments, no HTTP, the clock pinned by
//! ARGV[1]. Each case sets a sale up in its own namespace and checks the answer and what the
//! script left in Redis. The batch cases run the same shoppers one call each on one sale and in
//! one call on a twin sale, and compare outcomes and every key.

use flashgate::admission::scripts::{Admission, Code, Scripts, decode_done};
use flashgate::domain::{GoodsId, UserId};
use flashgate::plumbing::keys::Keys;
use flashgate::plumbing::redis_conn::RedisConn;
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
        let (mut con, keys) = crate::helpers::script_redis("l").await;
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
        let key = self.keys.sale(self.goods).user(UserId::new(user).unwrap());
        let _: () = self.con.set_ex(key, PATH, 60).await.unwrap();
    }

    async fn admit(&mut self, user: i64, path: &str, now: i64) -> Admission {
        self.admit_run(user, path, now, "").await
    }

    /// `again` is a shopper's fourth argument: "1" when the edge runs a request again after
    /// moving a unit in.
    async fn admit_run(&mut self, user: i64, path: &str, now: i64, again: &str) -> Admission {
        let mut one = self.admit_batch(&[(user, path, again)], now).await;
        one.remove(0)
    }

    /// One call deciding `shoppers` (user, path sent, again) in order; `now` < 0 means Redis TIME.
    async fn admit_batch(&mut self, shoppers: &[(i64, &str, &str)], now: i64) -> Vec<Admission> {
        let users = shoppers.iter().map(|s| UserId::new(s.0).unwrap());
        let keys = self.keys.sale(self.goods).admit(users);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut args = vec![if now < 0 {
            String::new()
        } else {
            now.to_string()
        }];
        for (user, path, again) in shoppers {
            args.extend([
                user.to_string(),
                path.to_string(),
                format!("req-{user}"),
                again.to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self
            .scripts
            .get()
            .admit
            .invoke(&mut self.con, &keys, &args)
            .await
            .unwrap();
        Admission::from_batch_reply(reply, shoppers.len()).unwrap()
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
    assert_eq!(e.get::<String>("r").as_deref(), Some("req-9"));
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
    // the bucket rides on the user's key beside the path, and keeps the path's TTL
    let key = sale.keys.sale(sale.goods).user(UserId::new(3).unwrap());
    let ttl: i64 = sale.con.pttl(&key).await.unwrap();
    assert!(ttl > 55_000 && ttl <= 60_000, "the path's TTL, kept: {ttl}");
    let held: String = sale.con.get(&key).await.unwrap();
    assert!(held.starts_with(&format!("{PATH} ")), "{held}");
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
    let held_2: String = sale
        .con
        .get(sale.keys.sale(sale.goods).user(UserId::new(2).unwrap()))
        .await
        .unwrap();
    assert_eq!(
        held_2, PATH,
        "a gate refusal must not spend the user's token"
    );
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
    let reply = sale.admit_batch(&[(6, PATH, "")], -1).await;
    assert_eq!(reply, vec![Admission::Ended]);
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
    let user = k.user(UserId::new(4).unwrap());
    let before: String = sale.con.get(&user).await.unwrap();
    let _: () = sale.con.incr(k.stock(), 1).await.unwrap();
    // a run again skips step 3: the empty bucket does not refuse it, and it spends nothing
    assert!(queued(&sale.admit_run(4, PATH, 2000, "1").await));
    let after: String = sale.con.get(&user).await.unwrap();
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

/// Every key of a sale's namespace as text, to compare two sales key by key: strings, hashes and
/// sets by content, a key's TTL as present or not, and a stream by the shoppers its entries
/// hold, in order, with their request ids and times (the entry ids are Redis's clock, not the
/// script's; one call's shoppers share an entry, so a batch writes fewer entries than the same
/// shoppers one call each, and the entry count is compared by the tests that mean it).
async fn dump(sale: &mut Sale) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let prefix = sale.keys.namespace().to_string();
    let keys = sale.con.scan_match(&sale.keys.everything()).await.unwrap();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut sale.con)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => sale.con.get::<_, String>(&key).await.unwrap(),
            "hash" => {
                let h: std::collections::BTreeMap<String, String> =
                    sale.con.hgetall(&key).await.unwrap();
                format!("{h:?}")
            }
            "set" => {
                let m: std::collections::BTreeSet<String> = sale.con.smembers(&key).await.unwrap();
                format!("{m:?}")
            }
            "stream" => {
                let r: redis::streams::StreamRangeReply = sale.con.xrange_all(&key).await.unwrap();
                let mut fields: Vec<(String, String, String)> = Vec::new();
                for e in &r.ids {
                    let (u, q, t): (String, String, String) = (
                        e.get("u").unwrap(),
                        e.get("r").unwrap(),
                        e.get("t").unwrap(),
                    );
                    let (u, q): (Vec<&str>, Vec<&str>) =
                        (u.split(',').collect(), q.split(',').collect());
                    assert_eq!(u.len(), q.len(), "one request id per shopper in {key}");
                    for (u, q) in u.into_iter().zip(q) {
                        fields.push((u.to_string(), q.to_string(), t.clone()));
                    }
                }
                format!("{fields:?}")
            }
            other => panic!("unexpected key type {other} for {key}"),
        };
        let ttl: i64 = sale.con.pttl(&key).await.unwrap();
        let key = key.trim_start_matches(&prefix).to_string();
        out.insert(key, format!("{value} ttl={}", ttl > 0));
    }
    out
}

/// One table case: the sale, who holds a path, who bought before, and the shoppers in order.
struct Batch {
    name: &'static str,
    stock: i64,
    gate: (f64, i64),
    /// users holding the hidden path
    paths: &'static [i64],
    /// users already among the buyers
    buyers: &'static [i64],
    /// (user, path sent is the right one, again)
    shoppers: &'static [(i64, bool, bool)],
    now: i64,
    /// false: the sale's meta is removed (never loaded)
    loaded: bool,
}

async fn run_case(
    case: &Batch,
    batched: bool,
) -> (Vec<String>, std::collections::BTreeMap<String, String>) {
    let mut sale = Sale::new(case.stock, case.gate.0, case.gate.1).await;
    for u in case.paths {
        sale.give_path(*u).await;
    }
    let k = sale.keys.sale(sale.goods);
    for u in case.buyers {
        let _: () = sale.con.sadd(k.buyers(), *u).await.unwrap();
    }
    if !case.loaded {
        let _: () = sale.con.del(k.meta()).await.unwrap();
    }
    const WRONG: &str = "ffffffffffffffffffffffffffffffff";
    let shoppers: Vec<(i64, &str, &str)> = case
        .shoppers
        .iter()
        .map(|&(u, right, again)| {
            (
                u,
                if right { PATH } else { WRONG },
                if again { "1" } else { "" },
            )
        })
        .collect();
    let outcomes = if batched {
        sale.admit_batch(&shoppers, case.now).await
    } else {
        let mut all = Vec::new();
        for s in &shoppers {
            all.extend(sale.admit_batch(std::slice::from_ref(s), case.now).await);
        }
        all
    };
    // a queued outcome's stream id is Redis's clock: compare what it says, not the id
    let outcomes = outcomes.iter().map(|o| o.label().to_string()).collect();
    let keys = dump(&mut sale).await;
    sale.cleanup().await;
    (outcomes, keys)
}

#[tokio::test]
async fn a_batch_decides_exactly_as_the_same_shoppers_one_call_each() {
    let cases = [
        Batch {
            name: "duplicates inside one batch",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1, 2],
            buyers: &[],
            shoppers: &[
                (1, true, false),
                (2, true, false),
                (1, true, false),
                (2, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "the stock runs out mid-batch, then a buyer comes back",
            stock: 2,
            gate: (1000.0, 1000),
            paths: &[1, 2, 3, 4],
            buyers: &[],
            shoppers: &[
                (1, true, false),
                (2, true, false),
                (3, true, false),
                (1, true, false),
                (4, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "a user runs out of tokens mid-batch",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[7],
            buyers: &[],
            shoppers: &[
                (7, true, false),
                (7, true, false),
                (7, true, false),
                (7, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "the sale gate runs out mid-batch",
            stock: 10,
            gate: (0.001, 3),
            paths: &[1, 2, 3, 4, 5],
            buyers: &[],
            shoppers: &[
                (1, true, false),
                (2, true, false),
                (3, true, false),
                (4, true, false),
                (5, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "bad paths among good ones",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1, 3],
            buyers: &[],
            shoppers: &[
                (1, false, false),
                (2, true, false),
                (3, true, false),
                (1, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "before the window",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1, 2],
            buyers: &[],
            shoppers: &[(1, true, false), (2, false, false)],
            now: 999,
            loaded: true,
        },
        Batch {
            name: "the window's first ms",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1, 2],
            buyers: &[],
            shoppers: &[(1, true, false), (2, true, false)],
            now: 1000,
            loaded: true,
        },
        Batch {
            name: "the window's last ms and its end",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1],
            buyers: &[],
            shoppers: &[(1, true, false)],
            now: 99_999,
            loaded: true,
        },
        Batch {
            name: "after the window",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1],
            buyers: &[],
            shoppers: &[(1, true, false), (1, false, false)],
            now: 100_000,
            loaded: true,
        },
        Batch {
            name: "a sale that does not exist",
            stock: 10,
            gate: (1000.0, 1000),
            paths: &[1, 2],
            buyers: &[],
            shoppers: &[(1, true, false), (2, false, false)],
            now: 5000,
            loaded: false,
        },
        Batch {
            name: "sold out already, earlier buyers and new ones",
            stock: 0,
            gate: (1000.0, 1000),
            paths: &[1, 2, 3],
            buyers: &[2],
            shoppers: &[
                (1, true, false),
                (2, true, false),
                (3, true, false),
                (1, true, false),
            ],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "a run again after a move skips the buckets",
            stock: 1,
            gate: (0.001, 1),
            paths: &[1, 2],
            buyers: &[],
            shoppers: &[(1, true, false), (2, true, false), (2, true, true)],
            now: 5000,
            loaded: true,
        },
        Batch {
            name: "a rate-limited user and a bad path between admissions",
            stock: 3,
            gate: (1000.0, 1000),
            paths: &[1, 2, 3],
            buyers: &[],
            shoppers: &[
                (1, true, false),
                (1, true, false),
                (1, true, false),
                (2, false, false),
                (3, true, false),
                (2, true, false),
            ],
            now: 5000,
            loaded: true,
        },
    ];
    for case in &cases {
        let (one_by_one, singles) = run_case(case, false).await;
        let (together, batch) = run_case(case, true).await;
        assert_eq!(together, one_by_one, "{}: outcomes", case.name);
        assert_eq!(batch, singles, "{}: Redis afterwards", case.name);
    }
}

#[tokio::test]
async fn a_batch_answers_one_outcome_per_shopper_in_order() {
    let mut sale = Sale::new(1, 1000.0, 1000).await;
    for u in [1, 2] {
        sale.give_path(u).await;
    }
    let out = sale
        .admit_batch(
            &[(1, PATH, ""), (2, PATH, ""), (3, PATH, ""), (1, PATH, "")],
            5000,
        )
        .await;
    assert!(queued(&out[0]));
    assert_eq!(
        &out[1..],
        &[Admission::SoldOut, Admission::BadPath, Admission::Duplicate]
    );
    assert_eq!(sale.state().await, (0, 1, 1));
    sale.cleanup().await;
}

#[tokio::test]
async fn one_call_writes_one_queue_entry_holding_its_shoppers_in_order() {
    let mut sale = Sale::new(10, 1000.0, 1000).await;
    for u in [5, 3, 9] {
        sale.give_path(u).await;
    }
    let out = sale
        .admit_batch(
            &[(5, PATH, ""), (4, PATH, ""), (3, PATH, ""), (9, PATH, "")],
            5000,
        )
        .await;
    let ids: Vec<&str> = out
        .iter()
        .filter_map(|a| match a {
            Admission::Queued { entry_id } => Some(entry_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| *id == ids[0]), "one entry: {ids:?}");
    let k = sale.keys.sale(sale.goods);
    let r: redis::streams::StreamRangeReply = sale.con.xrange_all(k.queue()).await.unwrap();
    assert_eq!(r.ids.len(), 1);
    let e = &r.ids[0];
    assert_eq!(e.id, ids[0]);
    assert_eq!(e.get::<String>("u").unwrap(), "5,3,9");
    assert_eq!(e.get::<String>("r").unwrap(), "req-5,req-3,req-9");
    assert_eq!(e.get::<String>("t").unwrap(), "5000");
    let admitted: i64 = sale.con.hget(k.meta(), "admitted").await.unwrap();
    assert_eq!(admitted, 3);
    assert_eq!(sale.state().await, (7, 3, 1));
    // a call that admits no one writes no entry
    let out = sale
        .admit_batch(&[(5, PATH, ""), (4, PATH, "")], 5000)
        .await;
    assert_eq!(out, vec![Admission::Duplicate, Admission::BadPath]);
    assert_eq!(sale.state().await, (7, 3, 1));
    sale.cleanup().await;
}
