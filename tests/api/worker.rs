//! The worker: every admitted request ends as exactly one order or one explicit failure, with
//! nothing lost when a worker dies, MySQL goes away, or an entry comes twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flashgate::cli::seed::TestUser;
use flashgate::domain::{GoodsId, UserId};
use flashgate::plumbing::config::QueueKind;
use flashgate::worker::writer::{self, Admitted, Batch, Holder, Written};
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::{
    TestApp, concurrently, spawn_app, spawn_app_with_worker, spawn_with, test_settings,
};
use crate::proxy::Proxy;

/// Everyone fetches a path and buys once, all at once; returns how many were queued.
async fn everyone_buys(app: &Arc<TestApp>, goods: GoodsId, users: &[TestUser]) -> usize {
    let answers = concurrently(users.to_vec(), 128, |u| {
        let app = app.clone();
        async move {
            // a sold-out sale issues no path: that is a sold-out answer too
            let (status, body) = app
                .get(&format!("/api/seckill/path?goodsId={goods}"), &u.token)
                .await;
            match body["data"].as_str() {
                Some(path) if status == 200 => app.buy(&u.token, path, goods).await,
                _ => (status, body),
            }
        }
    })
    .await;
    answers
        .iter()
        .filter(|(status, body)| {
            assert!(
                *status == 202 || (*status == 410 && body["code"] == 500500),
                "{status} {body}"
            );
            *status == 202
        })
        .count()
}

/// Polls every shopper's result until none is 0 (queued); returns (order ids, failures).
/// Polls every shopper's result until none is "queued": `(user id, order id)` of those who see
/// an order, and how many see a failure.
async fn poll_results(
    app: &Arc<TestApp>,
    goods: GoodsId,
    users: &[TestUser],
) -> (Vec<(i64, i64)>, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let results = concurrently(users.to_vec(), 128, |u| {
            let app = app.clone();
            async move { app.result(&u.token, goods).await }
        })
        .await;
        if results.iter().all(|r| *r != 0) {
            let orders: Vec<(i64, i64)> = users
                .iter()
                .zip(&results)
                .filter(|(_, r)| **r > 0)
                .map(|(u, r)| (u.id.get(), *r))
                .collect();
            let failed = results.iter().filter(|r| **r == -1).count();
            return (orders, failed);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "results still queued after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn five_thousand_shoppers_for_five_hundred_units(queue: QueueKind, admit_batch: usize) {
    let mut settings = test_settings();
    settings.queue = queue;
    settings.admit_batch = admit_batch;
    settings.path_factor = 20;
    let app = Arc::new(spawn_with(settings, true).await);
    let goods = app.sale(500).await;
    let users = app.users(5000).await;

    let queued = everyone_buys(&app, goods, &users).await;
    assert_eq!(queued, 500);
    let (orders, failed) = poll_results(&app, goods, &users).await;
    assert_eq!(orders.len(), 500, "shoppers who see an order id");
    assert_eq!(failed, 4500);
    assert_eq!(
        orders.iter().map(|(_, o)| o).collect::<HashSet<_>>().len(),
        500,
        "order ids are distinct"
    );
    app.drained(goods, Duration::from_secs(30)).await;
    assert_eq!(app.orders(goods).await, 500);
    app.assert_invariants(goods, 500).await;
    // every order id a shopper sees is theirs in MySQL
    let owners: std::collections::HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, user_id FROM order_info WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_all(&app.state.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(owners.len(), 500);
    for (user, order) in &orders {
        assert_eq!(
            owners.get(order),
            Some(user),
            "user {user} was shown order {order}, which is not theirs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_shoppers_five_hundred_orders_through_the_stream() {
    five_thousand_shoppers_for_five_hundred_units(QueueKind::Redis, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_shoppers_five_hundred_orders_without_coalescing() {
    five_thousand_shoppers_for_five_hundred_units(QueueKind::Redis, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_shoppers_five_hundred_orders_through_rabbitmq() {
    five_thousand_shoppers_for_five_hundred_units(QueueKind::Rabbitmq, 32).await;
}

/// Queues one buy per user with no worker running.
async fn queue_buys(app: &TestApp, goods: GoodsId, users: &[TestUser]) {
    for u in users {
        let path = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_drain_loses_nothing() {
    let mut settings = test_settings();
    settings.batch_size = 5;
    settings.path_factor = 20;
    let mut app = spawn_with(settings, false).await;
    let goods = app.sale(300).await;
    let users = app.users(300).await;
    queue_buys(&app, goods, &users).await;

    app.start_worker();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = app.orders(goods).await;
        if n >= 20 {
            assert!(
                n < 300,
                "drained before it could be killed; make batches smaller"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.kill_worker().await;
    let pending: (i64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(app.state.keys.sale(goods).queue())
        .arg(flashgate::plumbing::keys::GROUP)
        .query_async(&mut app.redis())
        .await
        .unwrap();
    let left = app.redis_state(goods).await.2;
    assert!(left > 0, "nothing left to recover");
    eprintln!(
        "killed with {} orders, {left} entries left, {} pending",
        app.orders(goods).await,
        pending.0
    );

    app.start_worker(); // a new consumer: it claims the dead one's entries once idle
    app.drained(goods, Duration::from_secs(60)).await;
    assert_eq!(app.orders(goods).await, 300);
    app.assert_invariants(goods, 300).await;
    for u in &users {
        assert!(
            app.result(&u.token, goods).await > 0,
            "user {} has no order id",
            u.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_unreachable_for_a_while_then_back_loses_nothing() {
    let proxy = Proxy::start("127.0.0.1:3306").await;
    let mut settings = test_settings();
    let direct = settings.database_url.clone();
    settings.database_url = direct.replace("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port));
    settings.path_factor = 20;
    let app = spawn_with(settings, true).await;
    let goods = app.sale(50).await;
    let users = app.users(50).await;
    let direct = flashgate::plumbing::db::connect(&direct, 2).await.unwrap();

    proxy.cut().await;
    // admission goes on: Redis is the gate
    queue_buys(&app, goods, &users).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM seckill_order")
        .fetch_one(&direct)
        .await
        .unwrap();
    assert_eq!(orders, 0, "orders written while MySQL was unreachable?");
    assert_eq!(
        app.redis_state(goods).await.2,
        50,
        "entries acked while MySQL was down"
    );
    assert_eq!(app.result(&users[0].token, goods).await, 0);

    proxy.restore();
    app.drained(goods, Duration::from_secs(60)).await;
    assert_eq!(app.orders(goods).await, 50);
    app.assert_invariants(goods, 50).await;
    direct.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_entry_delivered_twice_makes_one_order() {
    let app = spawn_app_with_worker().await;
    let goods = app.sale(5).await;
    let users = app.users(1).await;
    let user = &users[0];
    queue_buys(&app, goods, &users).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let order = app.result(&user.token, goods).await;
    assert!(order > 0);

    // the entry comes again (a replay after a crash between commit and ack)
    let queue = app.state.keys.sale(goods).queue();
    let _: String = app
        .redis()
        .xadd(
            &queue,
            "*",
            &[
                ("u", user.id.to_string()),
                ("r", "again".into()),
                ("t", "0".into()),
            ],
        )
        .await
        .unwrap();
    app.drained(goods, Duration::from_secs(20)).await;
    assert_eq!(app.orders(goods).await, 1);
    assert_eq!(
        app.result(&user.token, goods).await,
        order,
        "the replay answers with the same order"
    );
    // and it did not give a unit back
    app.assert_invariants(goods, 5).await;

    // the writer on its own: a batch written twice
    let batch = [Admitted::one("1-1".into(), user.id)];
    let again = writer::write_batch(&app.state.db, &app.state.events, goods, &batch, None)
        .await
        .unwrap();
    assert_eq!(again, Batch::Written(vec![Written::Existing(order)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_gives_the_first_units_and_fails_the_rest_when_mysql_has_fewer() {
    let app = spawn_app().await;
    let goods = app.sale(2).await;
    let batch: Vec<Admitted> = (1..=3)
        .map(|i| Admitted::one(format!("1-{i}"), UserId::new(100 + i).unwrap()))
        .collect();
    let Batch::Written(written) =
        writer::write_batch(&app.state.db, &app.state.events, goods, &batch, None)
            .await
            .unwrap()
    else {
        panic!("an unfenced write is never fenced")
    };
    assert!(matches!(written[0], Written::Order(_)));
    assert!(matches!(written[1], Written::Order(_)));
    assert_eq!(written[2], Written::Failed);
    assert_eq!(app.mysql_stock(goods).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_undeliverable_entries_are_dead_lettered_with_their_unit_back() {
    let mut settings = test_settings();
    settings.max_deliveries = 3;
    let app = spawn_with(settings, false).await;
    let goods = app.sale(5).await;
    let users = app.users(1).await;
    let user = &users[0];
    queue_buys(&app, goods, &users).await; // stock 4, user a buyer, one entry
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    flashgate::worker::stream::ensure_group(&mut con, &k.queue())
        .await
        .unwrap();
    // the entry keeps getting delivered to consumers that die with it
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("ghost-0")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(k.queue())
        .arg(">")
        .query_async(&mut con)
        .await
        .unwrap();
    let ids: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(k.queue())
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut con)
        .await
        .unwrap();
    for n in 1..=3 {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(k.queue())
            .arg(flashgate::plumbing::keys::GROUP)
            .arg(format!("ghost-{n}"))
            .arg(0)
            .arg(&ids[0].0)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // and a malformed one arrives
    let _: String = con
        .xadd(k.queue(), "*", &[("u", "not-a-user")])
        .await
        .unwrap();

    let mut app = app;
    app.start_worker();
    app.drained(goods, Duration::from_secs(20)).await;
    let dead: i64 = con.xlen(k.dead()).await.unwrap();
    assert_eq!(dead, 2);
    assert_eq!(app.orders(goods).await, 0);
    assert_eq!(app.result(&user.token, goods).await, -1);
    assert_eq!(app.redis_state(goods).await.0, 5, "the unit came back");
    app.assert_invariants(goods, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_private_payable_and_unpaid_ones_close_and_sell_again() {
    let mut settings = test_settings();
    settings.unpaid_timeout_secs = 1;
    let app = spawn_with(settings, true).await;
    let goods = app.sale(2).await;
    let users = app.users(4).await;
    queue_buys(&app, goods, &users[..2]).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let paid = app.result(&users[0].token, goods).await;
    let unpaid = app.result(&users[1].token, goods).await;
    assert!(paid > 0 && unpaid > 0);

    // own order visible, someone else's is 404, junk ids 400
    let (s, r) = app
        .get(&format!("/api/orders/{paid}"), &users[0].token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(r["data"]["status"], 0);
    assert_eq!(r["data"]["goodsId"], goods.get());
    let (s, r) = app
        .get(&format!("/api/orders/{paid}"), &users[1].token)
        .await;
    assert_eq!((s, r["code"].as_i64()), (404, Some(500404)));
    let (s, _) = app.get("/api/orders/abc", &users[0].token).await;
    assert_eq!(s, 400);
    let (s, r) = app
        .post(
            &format!("/api/orders/{paid}/pay"),
            &users[0].token,
            &json!({}),
        )
        .await;
    assert_eq!((s, r["data"]["status"].as_i64()), (200, Some(1)));
    let (s, _) = app
        .post(
            &format!("/api/orders/{paid}/pay"),
            &users[1].token,
            &json!({}),
        )
        .await;
    assert_eq!(s, 404);

    // the unpaid one closes after its second and its unit is sold again
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, r) = app
            .get(&format!("/api/orders/{unpaid}"), &users[1].token)
            .await;
        if r["data"]["status"] == 2 && app.redis_state(goods).await.0 == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "unpaid order never closed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, r) = app
        .post(
            &format!("/api/orders/{unpaid}/pay"),
            &users[1].token,
            &json!({}),
        )
        .await;
    assert_eq!((s, r["code"].as_i64()), (409, Some(500506)));
    let (_, r) = app
        .get(&format!("/api/orders/{paid}"), &users[0].token)
        .await;
    assert_eq!(r["data"]["status"], 1, "a paid order is never closed");
    assert_eq!(app.mysql_stock(goods).await, 1);

    queue_buys(&app, goods, &users[2..3]).await;
    app.drained(goods, Duration::from_secs(20)).await;
    assert!(app.result(&users[2].token, goods).await > 0);
    assert_eq!(app.orders(goods).await, 2);
    app.assert_invariants(goods, 2).await;
}

/// The fence: two workers whose batches stall inside their transactions (the test holds the sale's
/// stock row locked) far past the claim time, with `max_deliveries` 1 so that any claim would
/// dead-letter. Each entry must end with exactly one outcome: an order, or a unit given back,
/// never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stalled_inside_a_batch_past_the_claim_time_is_fenced_one_outcome_per_entry() {
    let mut settings = test_settings();
    settings.claim_idle_ms = 300;
    settings.max_deliveries = 1;
    settings.batch_size = 5;
    let mut app = spawn_with(settings, false).await;
    let goods = app.sale(20).await;
    let users = app.users(20).await;

    // stall every writer of this sale: hold its stock row in a transaction of our own
    let mut blocker = app.state.db.begin().await.unwrap();
    sqlx::query("SELECT stock FROM seckill_goods WHERE goods_id = ? FOR UPDATE")
        .bind(goods.get())
        .execute(&mut *blocker)
        .await
        .unwrap();
    queue_buys(&app, goods, &users).await;
    app.add_worker().await;
    app.add_worker().await;
    // long past the claim time: the claimers run, and find owners inside transactions
    tokio::time::sleep(Duration::from_secs(4)).await;
    let dead: i64 = app
        .redis()
        .xlen(app.state.keys.sale(goods).dead())
        .await
        .unwrap();
    assert_eq!(
        dead, 0,
        "entries of a live, stalled worker were dead-lettered"
    );
    blocker.rollback().await.unwrap();

    app.drained(goods, Duration::from_secs(20)).await;
    let orders = app.orders(goods).await;
    let dead: i64 = app
        .redis()
        .xlen(app.state.keys.sale(goods).dead())
        .await
        .unwrap();
    assert_eq!(orders + dead, 20, "every entry has an outcome");
    // one outcome each: an order's buyer got no unit back, a dead letter's buyer has no order
    app.assert_invariants(goods, 20).await;
    let app = Arc::new(app);
    let (shown, _) = poll_results(&app, goods, &users).await;
    assert_eq!(
        shown.len() as i64,
        orders,
        "results {shown:?} disagree with {orders} orders"
    );
}

/// The writer on its own: a batch held under an epoch that has since been bumped (another worker
/// took it over) is not committed; under the current epoch it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_read_before_a_takeover_is_not_committed() {
    use flashgate::worker::fence::{self, Fence};
    let app = spawn_app().await;
    let goods = app.sale(3).await;
    let fence = Fence::register(&app.state.db, "stalled-worker")
        .await
        .unwrap();
    let held = fence.epoch();
    let batch = [Admitted::one("1-1".into(), UserId::new(7).unwrap())];
    // another worker takes the entries over
    assert!(fence::bump(&app.state.db, "stalled-worker").await.unwrap());
    let stale = Holder {
        consumer: "stalled-worker",
        epoch: held,
    };
    let r = writer::write_batch(&app.state.db, &app.state.events, goods, &batch, Some(stale))
        .await
        .unwrap();
    assert_eq!(r, Batch::Fenced);
    assert_eq!(app.orders(goods).await, 0);
    assert_eq!(app.mysql_stock(goods).await, 3);
    // after learning its new epoch, its next batches commit
    let now = fence.refresh(&app.state.db).await.unwrap();
    assert_eq!(now, held + 1);
    let fresh = Holder {
        consumer: "stalled-worker",
        epoch: now,
    };
    let r = writer::write_batch(&app.state.db, &app.state.events, goods, &batch, Some(fresh))
        .await
        .unwrap();
    assert!(matches!(r, Batch::Written(ref w) if matches!(w[0], Written::Order(_))));
}

/// `order_info.stock_returned` of an order: whether the closer has noted its unit as back.
async fn stock_returned(app: &TestApp, order: i64) -> bool {
    let noted: i8 = sqlx::query_scalar("SELECT stock_returned FROM order_info WHERE id = ?")
        .bind(order)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    noted == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_orders_unit_comes_back_once_even_if_its_buyer_bought_again_before_it_was_noted() {
    // the default unpaid timeout (30 min): only the order closed by hand below is closed
    let mut app = spawn_with(test_settings(), false).await;
    let goods = app.sale(1).await;
    let users = app.users(1).await;
    let u = &users[0];
    app.start_worker();
    queue_buys(&app, goods, &users).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let first = app.result(&u.token, goods).await;
    assert!(first > 0);
    app.kill_worker().await;

    // a closer closed the order and gave its unit back, then died before noting it in MySQL
    let mut tx = flashgate::plumbing::db::begin(&app.state.db).await.unwrap();
    for (sql, id) in [
        (
            "UPDATE order_info SET status = 2, closed_at = NOW(3) WHERE id = ?",
            first,
        ),
        ("DELETE FROM seckill_order WHERE order_id = ?", first),
        (
            "UPDATE seckill_goods SET stock = stock + 1 WHERE goods_id = ?",
            goods.get(),
        ),
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let give_back = || {
        app.give_back(
            goods,
            u.id,
            flashgate::sales::store::GiveBack::Closed { order: first },
        )
    };
    assert!(give_back().await, "the unit came back");
    assert!(!give_back().await, "a second give-back of one order");
    assert_eq!(app.redis_state(goods).await.0, 1);
    // given back and not noted yet: the audit counts the unit as back all the same
    let report = flashgate::operators::audit::audit(&app.state.stores(), goods)
        .await
        .unwrap();
    assert!(report.clean, "{report:#?}");

    // the same shopper buys the unit again, then a closer runs again over the closed order
    queue_buys(&app, goods, &users).await;
    app.start_worker();
    app.drained(goods, Duration::from_secs(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !stock_returned(&app, first).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closer never noted the closed order"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = app.result(&u.token, goods).await;
    assert!(second > 0 && second != first, "the new order: {second}");
    let (stock, buyers, _) = app.redis_state(goods).await;
    assert_eq!(
        (stock, buyers),
        (0, 1),
        "the unit went back a second time, under the new order"
    );
    assert_eq!(app.orders(goods).await, 1);
    app.assert_invariants(goods, 1).await;
    let report = flashgate::operators::audit::audit(&app.state.stores(), goods)
        .await
        .unwrap();
    assert!(report.clean, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_old_single_entries_and_new_shared_ones_drains_to_one_order_each() {
    // an upgrade: the old edge wrote one entry per shopper (`u` one id), the new one writes one
    // entry per admit.lua call (`u`, `r` comma-separated); the worker drains both alike
    let app = spawn_with(test_settings(), false).await;
    let goods = app.sale(10).await;
    let users = app.users(5).await;
    let ids: Vec<i64> = users.iter().map(|u| u.id.get()).collect();
    app.queue_by_hand(goods, &[&ids[..1], &ids[1..2], &ids[2..]])
        .await;

    let mut app = app;
    app.start_worker();
    app.drained(goods, Duration::from_secs(20)).await;
    assert_eq!(app.orders(goods).await, 5);
    let mut seen = std::collections::BTreeSet::new();
    for u in &users {
        let order = app.result(&u.token, goods).await;
        assert!(order > 0, "user {} sees order {order}", u.id.get());
        assert!(seen.insert(order), "one order each");
    }
    app.assert_invariants(goods, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_entry_delivered_too_often_settles_the_written_orders_and_gives_back_the_rest() {
    let mut settings = test_settings();
    settings.max_deliveries = 1;
    settings.claim_idle_ms = 200;
    let app = spawn_with(settings, false).await;
    let goods = app.sale(10).await;
    let users = app.users(2).await;
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    // both admitted in one call; user 0's order was written by a worker that died before its
    // ack, user 1's never was
    let entry = app
        .queue_by_hand(goods, &[&[users[0].id.get(), users[1].id.get()]])
        .await
        .remove(0);
    let written = writer::write_batch(
        &app.state.db,
        &app.state.events,
        goods,
        &[Admitted::one(entry.clone(), users[0].id)],
        None,
    )
    .await
    .unwrap();
    let Batch::Written(w) = written else {
        panic!("an unfenced write is never fenced")
    };
    let Written::Order(order) = w[0] else {
        panic!("{w:?}")
    };
    // delivered to a consumer that died with it, then to another: past max_deliveries
    flashgate::worker::stream::ensure_group(&mut con, &k.queue())
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("ghost-0")
        .arg("STREAMS")
        .arg(k.queue())
        .arg(">")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(k.queue())
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("ghost-1")
        .arg(0)
        .arg(&entry)
        .query_async(&mut con)
        .await
        .unwrap();

    let mut app = app;
    app.start_worker();
    app.drained(goods, Duration::from_secs(30)).await;
    assert_eq!(
        app.result(&users[0].token, goods).await,
        order,
        "the written order stands"
    );
    assert_eq!(
        app.result(&users[1].token, goods).await,
        -1,
        "given up on: failed"
    );
    assert_eq!(app.orders(goods).await, 1);
    assert_eq!(app.redis_state(goods).await.0, 9, "user 1's unit came back");
    let dead: redis::streams::StreamRangeReply = con.xrange_all(k.dead()).await.unwrap();
    assert_eq!(dead.ids.len(), 1);
    assert_eq!(
        dead.ids[0].get::<String>("u").unwrap(),
        users[1].id.get().to_string(),
        "only the unwritten shopper is dead-lettered"
    );
    app.assert_invariants(goods, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_holding_more_shoppers_than_one_transaction_writes_drains_in_several() {
    // two entries of 600 and 500 shoppers (as a wide coalesced call would write): one read,
    // more orders than an id block (IDS_PER_BLOCK = 1024) holds, so several transactions
    let app = spawn_with(test_settings(), false).await;
    let goods = app.sale(1200).await;
    let users = app.users(1100).await;
    let ids: Vec<i64> = users.iter().map(|u| u.id.get()).collect();
    app.queue_by_hand(goods, &[&ids[..600], &ids[600..]]).await;
    let mut app = app;
    app.start_worker();
    app.drained(goods, Duration::from_secs(60)).await;
    assert_eq!(app.orders(goods).await, 1100);
    let k = app.state.keys.sale(goods);
    let results: Vec<Option<i64>> = app
        .redis()
        .mget(users.iter().map(|u| k.result(u.id)).collect::<Vec<_>>())
        .await
        .unwrap();
    let orders: std::collections::BTreeSet<i64> = results.iter().map(|r| r.unwrap()).collect();
    assert_eq!(orders.len(), 1100, "one order each, every result written");
    assert!(orders.iter().all(|o| *o > 0));
    app.assert_invariants(goods, 1200).await;
}
