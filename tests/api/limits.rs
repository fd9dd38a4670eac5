//! A sale's rules (issue #42): `perBuy`, `perAccount`, a buy's `quantity` and its
//! `Idempotency-Key`, decided in the one admission call and counted in units downstream: the
//! limit refused whole with what is left, a buy larger than what is left refused with nothing
//! moved, a retried key one order and another key a second, bad input refused with its code and
//! nothing spent, a closed order and a dead letter giving back units and allowance once, the
//! rules through the admin API; and a property test of random buys, retries and give-backs on
//! the scripts. All on the real services (and on the cluster, with TEST_REDIS_URL set to it).

use std::collections::HashMap;
use std::time::Duration;

use flashgate::domain::{GoodsId, Shard, UserId};
use flashgate::sales::store::{self as sale, GiveBack, Units};
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with, test_settings};

fn code(body: &Value) -> i64 {
    body["code"].as_i64().unwrap_or(-1)
}

/// A sale of `stock` units running now, with its rules.
async fn sale(app: &TestApp, stock: i32, per_buy: i64, per_account: i64) -> GoodsId {
    let mut new = flashgate::cli::seed::NewSale::new(stock, -1, 3600);
    new.per_buy = per_buy;
    new.per_account = per_account;
    app.create_sale(&new).await
}

/// An app whose shoppers' buckets let a test's few buys of one user through at once.
async fn app(worker: bool) -> TestApp {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.unpaid_timeout_secs = 3600;
    spawn_with(settings, worker).await
}

/// One buy through HTTP with this body's `quantity` (absent when `None`) and key.
async fn buy(
    app: &TestApp,
    token: &str,
    path: &str,
    goods: GoodsId,
    quantity: Option<Value>,
    key: Option<&[u8]>,
) -> (u16, Value) {
    let mut body = json!({ "goodsId": goods.get() });
    if let Some(q) = quantity {
        body["quantity"] = q;
    }
    let mut req = app
        .http
        .post(app.url(&format!("/api/seckill/{path}/orders")))
        .bearer_auth(token)
        .json(&body);
    if let Some(k) = key {
        req = req.header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes(k).unwrap(),
        );
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Everything of the sale in Redis a buy may move: stock, buyers, held, buys, queue length.
async fn redis_snapshot(app: &TestApp, goods: GoodsId) -> (i64, Vec<String>, Vec<String>, i64) {
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    let stock: Option<i64> = con.get(k.stock()).await.unwrap();
    let mut buyers: Vec<String> = con.smembers(k.buyers()).await.unwrap();
    buyers.sort();
    let mut counted: Vec<String> = Vec::new();
    for key in [k.held(), k.buys()] {
        let h: HashMap<String, String> = con.hgetall(key).await.unwrap();
        let mut h: Vec<String> = h.into_iter().map(|(f, v)| format!("{f}={v}")).collect();
        h.sort();
        counted.extend(h);
    }
    let queued: i64 = con.xlen(k.queue()).await.unwrap();
    (stock.unwrap_or(0), buyers, counted, queued)
}

/// The units each user holds in live orders (MySQL), and the sale's MySQL stock.
async fn mysql_units(app: &TestApp, goods: GoodsId) -> (HashMap<i64, i64>, i64) {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT o.user_id, CAST(SUM(o.goods_count) AS SIGNED) FROM seckill_order s \
         JOIN order_info o ON o.id = s.order_id WHERE s.goods_id = ? GROUP BY o.user_id",
    )
    .bind(goods.get())
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    (rows.into_iter().collect(), app.mysql_stock(goods).await)
}

/// At rest: Redis and MySQL agree on units (stock + units held = initial on both sides), every
/// account within `per_account`, and the audit finds nothing.
async fn assert_units(app: &TestApp, goods: GoodsId, initial: i64, per_account: i64) {
    app.drained(goods, Duration::from_secs(20)).await;
    let (held, mysql_stock) = mysql_units(app, goods).await;
    let sold: i64 = held.values().sum();
    assert!(sold <= initial, "oversold: {sold} units of {initial}");
    assert_eq!(mysql_stock + sold, initial, "MySQL stock + units held");
    assert_eq!(
        app.redis_state(goods).await.0 + sold,
        initial,
        "Redis stock + units held"
    );
    for (user, units) in &held {
        assert!(
            *units <= per_account,
            "user {user} holds {units} > {per_account}"
        );
    }
    let report = flashgate::operators::audit::audit(&app.state.stores(), goods)
        .await
        .unwrap();
    assert!(report.clean, "the audit: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_3_takes_buys_of_1_and_2_and_refuses_a_third_of_2_whole_with_what_is_left() {
    let app = app(true).await;
    let goods = sale(&app, 10, 2, 3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let one = buy(&app, &user.token, &path, goods, Some(json!(1)), Some(b"a")).await;
    assert_eq!(one.0, 202, "{}", one.1);
    let two = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"b")).await;
    assert_eq!(two.0, 202, "{}", two.1);
    let before = redis_snapshot(&app, goods).await;
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"c")).await;
    assert_eq!((s, code(&r)), (409, 500520), "{r}");
    assert_eq!(r["data"]["allowanceLeft"], 0, "{r}");
    // (the worker drains the queue meanwhile: what the buy could move is the rest)
    let after = redis_snapshot(&app, goods).await;
    assert_eq!(
        (after.0, after.1, after.2),
        (before.0, before.1, before.2),
        "a refusal moves nothing"
    );

    assert_units(&app, goods, 10, 3).await;
    let counts: Vec<i32> = sqlx::query_scalar(
        "SELECT goods_count FROM order_info WHERE goods_id = ? ORDER BY goods_count",
    )
    .bind(goods.get())
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(counts, [1, 2], "one order per buy, with its quantity");
    assert_eq!(app.mysql_stock(goods).await, 7);
    // the live view counts buys and units
    let (s, view) = app
        .admin("GET", &format!("/api/admin/sales/{goods}"), None)
        .await;
    assert_eq!(s, 200, "{view}");
    let live = &view["data"]["live"];
    assert_eq!(
        (live["admitted"].as_i64(), live["admittedUnits"].as_i64()),
        (Some(2), Some(3))
    );
    assert_eq!(
        (
            view["data"]["perBuy"].as_i64(),
            view["data"]["perAccount"].as_i64()
        ),
        (Some(2), Some(3))
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flashgate_admitted_units_total 3"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_of_q_with_q_minus_1_left_is_refused_and_moves_nothing() {
    let app = app(false).await;
    let goods = sale(&app, 2, 3, 3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let before = redis_snapshot(&app, goods).await;
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(3)), Some(b"k")).await;
    assert_eq!((s, code(&r)), (409, 500522), "{r}");
    assert_eq!(r["data"]["unitsLeft"], 2, "{r}");
    assert_eq!(redis_snapshot(&app, goods).await, before);
    // the two left are still for sale, and not marked sold out on the edge
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"k2")).await;
    assert_eq!(s, 202, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_idempotency_key_is_one_order_and_another_key_a_second_within_the_limit() {
    let app = app(true).await;
    let goods = sale(&app, 10, 2, 4).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let key = b"8e03978e-40d5-43e8-bc93-6894a57f9324";
    for _ in 0..3 {
        let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(key)).await;
        assert_eq!(s, 202, "a retry is answered as the buy was: {r}");
    }
    // the same key for another request
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(1)), Some(key)).await;
    assert_eq!((s, code(&r)), (422, 500525), "{r}");
    let (s, r) = buy(&app, &user.token, &path, goods, None, Some(key)).await;
    assert_eq!((s, code(&r)), (422, 500525), "{r}");
    // another key: a second order, within the limit; a third would pass it
    let (s, r) = buy(
        &app,
        &user.token,
        &path,
        goods,
        Some(json!(2)),
        Some(b"second"),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    let (s, r) = buy(
        &app,
        &user.token,
        &path,
        goods,
        Some(json!(1)),
        Some(b"third"),
    )
    .await;
    assert_eq!(
        (s, code(&r), r["data"]["allowanceLeft"].as_i64()),
        (409, 500520, Some(0))
    );
    // without a key, an account that holds units is a duplicate, as before
    let (s, r) = buy(&app, &user.token, &path, goods, None, None).await;
    assert_eq!((s, code(&r)), (409, 500501), "{r}");

    assert_units(&app, goods, 10, 4).await;
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_info WHERE goods_id = ?")
        .bind(goods.get())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(orders, 2, "three sends of one key are one order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_quantities_and_keys_are_refused_with_their_codes_and_change_nothing() {
    let app = app(false).await;
    let goods = sale(&app, 10, 2, 2).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let user_key = app.state.keys.sale(goods).user(user.id);
    let bucket: String = app.redis().get(&user_key).await.unwrap();
    let before = redis_snapshot(&app, goods).await;
    for q in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!(2.0),
        json!("2"),
        json!(null),
        json!(1001),
    ] {
        let (s, r) = buy(&app, &user.token, &path, goods, Some(q.clone()), None).await;
        assert_eq!((s, code(&r)), (400, 500523), "quantity {q}: {r}");
    }
    let long = vec![b'k'; 256];
    for key in [&b""[..], &long, "clé".as_bytes(), b"a\tb"] {
        let (s, r) = buy(&app, &user.token, &path, goods, None, Some(key)).await;
        assert_eq!((s, code(&r)), (400, 500524), "key {key:?}: {r}");
    }
    // above perBuy: refused by the script, before the buckets
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(3)), Some(b"k")).await;
    assert_eq!(
        (s, code(&r), r["data"]["perBuy"].as_i64()),
        (400, 500521, Some(2))
    );
    assert_eq!(redis_snapshot(&app, goods).await, before);
    let after: String = app.redis().get(&user_key).await.unwrap();
    assert_eq!(after, bucket, "no token spent");
}

/// Waits until `cond` holds (polled every 100 ms, 20 s at most).
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_order_gives_back_its_units_and_allowance_once_however_often_the_close_runs() {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.unpaid_timeout_secs = 1;
    let app = spawn_with(settings, true).await;
    let goods = sale(&app, 5, 2, 2).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let (s, _) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"a")).await;
    assert_eq!(s, 202);
    until("the order is written", || async {
        app.result(&user.token, goods).await > 0
    })
    .await;
    let order = app.result(&user.token, goods).await;
    until("the order is closed and its units are back", || async {
        let returned: Option<i8> =
            sqlx::query_scalar("SELECT stock_returned FROM order_info WHERE id = ?")
                .bind(order)
                .fetch_optional(&app.state.db)
                .await
                .unwrap();
        returned == Some(1)
    })
    .await;
    assert_eq!(app.redis_state(goods).await.0, 5);
    assert_eq!(app.mysql_stock(goods).await, 5);
    let k = app.state.keys.sale(goods);
    let held: Option<i64> = app.redis().hget(k.held(), user.id.get()).await.unwrap();
    assert_eq!(held, None, "the allowance is back");

    // the same user buys 2 again with a new key; then the close runs again for the first
    // order (as after a crash between giving back and noting it): nothing comes back twice
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"b")).await;
    assert_eq!(s, 202, "{r}");
    // paid at once, so the closer (1 s) leaves the second order alone
    let mut second = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while second <= 0 || second == order {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second order is never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        second = app.result(&user.token, goods).await;
    }
    let paid = sqlx::query("UPDATE order_info SET status = 1 WHERE id = ? AND status = 0")
        .bind(second)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        paid.rows_affected(),
        1,
        "the second order closed before it was paid"
    );
    sqlx::query("UPDATE order_info SET stock_returned = 0 WHERE id = ?")
        .bind(order)
        .execute(&app.state.db)
        .await
        .unwrap();
    for _ in 0..2 {
        let came_back = give_back_units(
            &app,
            goods,
            user.id,
            GiveBack::Closed { order },
            2,
            &key_digest(b"a"),
        )
        .await;
        assert!(!came_back, "a closed order's units came back twice");
    }
    until("the closer notes it again", || async {
        let returned: i8 = sqlx::query_scalar("SELECT stock_returned FROM order_info WHERE id = ?")
            .bind(order)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        returned == 1
    })
    .await;
    let held: Option<i64> = app.redis().hget(k.held(), user.id.get()).await.unwrap();
    assert_eq!(held, Some(2), "the second buy's allowance is still spent");
    assert_eq!(app.redis_state(goods).await.0, 3);
    assert_units(&app, goods, 5, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_buy_gives_back_its_units_and_allowance_once() {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.max_deliveries = 2;
    let app = spawn_with(settings, false).await;
    let goods = sale(&app, 5, 3, 3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let (s, _) = buy(&app, &user.token, &path, goods, Some(json!(3)), Some(b"a")).await;
    assert_eq!(s, 202);
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    assert_eq!(app.redis_state(goods).await.0, 2);
    // the entry is delivered to consumers that die with it, until it is given up on
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
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(k.queue())
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut con)
        .await
        .unwrap();
    for ghost in ["ghost-1", "ghost-2"] {
        let _: redis::Value = redis::cmd("XCLAIM")
            .arg(k.queue())
            .arg(flashgate::plumbing::keys::GROUP)
            .arg(ghost)
            .arg(0)
            .arg(&pending[0].0)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let mut app = app;
    app.start_worker();
    app.drained(goods, Duration::from_secs(20)).await;
    let dead: i64 = con.xlen(k.dead()).await.unwrap();
    assert_eq!(dead, 1);
    assert_eq!(
        app.redis_state(goods).await.0,
        5,
        "all three units are back"
    );
    let held: Option<i64> = con.hget(k.held(), user.id.get()).await.unwrap();
    assert_eq!(held, None, "and the allowance");
    // given back again (a retry): nothing moves
    let again = give_back_units(
        &app,
        goods,
        user.id,
        GiveBack::DeadLettered,
        3,
        &key_digest(b"a"),
    )
    .await;
    assert!(!again);
    assert_eq!(app.redis_state(goods).await.0, 5);
    // the allowance is whole: the same key buys 3 again
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(3)), Some(b"a")).await;
    assert_eq!(s, 202, "{r}");
    assert_units(&app, goods, 5, 3).await;
}

/// Gives one buy's units of an unsplit sale back, as the worker does; whether they came back.
async fn give_back_units(
    app: &TestApp,
    goods: GoodsId,
    user: UserId,
    why: GiveBack,
    quantity: u32,
    key: &str,
) -> bool {
    let units = Units { quantity, key };
    let (keys, scripts) = (&app.state.keys, &app.state.scripts);
    sale::give_back(
        &mut app.redis(),
        keys,
        scripts,
        Shard::whole(goods),
        user,
        why,
        units,
    )
    .await
    .unwrap()
}

fn key_digest(key: &[u8]) -> String {
    flashgate::domain::BuyKey::parse(key)
        .unwrap()
        .digest()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_are_set_and_checked_by_sale_management() {
    let app = app(false).await;
    let start = chrono::Utc::now().timestamp_millis() + 60_000;
    let body = |extra: Value| {
        let mut b = json!({
            "name": "Shoe", "title": "A shoe", "price": 99.0, "salePrice": 9.0, "stock": 10,
            "startAt": start, "endAt": start + 3_600_000,
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let sales_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM seckill_goods")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    for (extra, want) in [
        (json!({"perBuy": 3, "perAccount": 2}), 500719),
        (json!({"perBuy": 0}), 500719),
        (json!({"perAccount": 0}), 500720),
        (json!({"perBuy": 2, "perAccount": 2, "shards": 2}), 500721),
        (json!({"perBuy": "2"}), 500101),
    ] {
        let (s, r) = app
            .admin("POST", "/api/admin/sales", Some(&body(extra.clone())))
            .await;
        assert_eq!((s, code(&r)), (400, want), "{extra}: {r}");
    }
    let sales_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM seckill_goods")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(sales_after, sales_before, "nothing written");

    let (s, r) = app
        .admin(
            "POST",
            "/api/admin/sales",
            Some(&body(json!({"perBuy": 2, "perAccount": 4}))),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let goods = GoodsId::new(r["data"]["goodsId"].as_i64().unwrap()).unwrap();
    let meta: HashMap<String, String> = app
        .redis()
        .hgetall(app.state.keys.sale(goods).meta())
        .await
        .unwrap();
    assert_eq!(
        (meta["per_buy"].as_str(), meta["per_account"].as_str()),
        ("2", "4")
    );
    // before the start the rules may change, within the rules
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({"perBuy": 5})),
        )
        .await;
    assert_eq!((s, code(&r)), (400, 500719), "{r}");
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({"perAccount": 6})),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // once live, they are fixed: what an account holds was counted under them
    let live = sale(&app, 10, 1, 2).await;
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{live}"),
            Some(&json!({"perAccount": 3})),
        )
        .await;
    assert_eq!((s, code(&r)), (409, 500751), "{r}");
}

/// Scripts only (no edge): random buys with random quantities, keys and retries by a few
/// accounts, and random give-backs (failed, closed, dead-lettered, some asked twice), on one
/// sale. After every step: nothing oversold, every account within its limit, and stock + units
/// held = initial (units given back are stock again); the buys each account holds add up to
/// what it holds.
#[tokio::test]
async fn property_random_buys_retries_and_give_backs_keep_limits_and_conserve_units() {
    for seed in 0..12u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (stock, per_buy, per_account) = (rng.random_range(1..30), rng.random_range(1..4), 0);
        let per_account = per_account + per_buy + rng.random_range(0..4);
        run_property(seed, &mut rng, stock, per_buy, per_account).await;
    }
}

/// A sale's rules in its meta, as a load writes them (the window open, buckets that never run
/// dry), and its stock: what the property tests drive `lua/admit.lua` against.
async fn write_rules(
    con: &mut flashgate::plumbing::redis_conn::RedisConn,
    k: &flashgate::plumbing::keys::SaleKeys,
    stock: i64,
    per_buy: i64,
    per_account: i64,
    campaign_limit: Option<i64>,
) {
    let mut meta = vec![
        ("start_ms", "0".to_string()),
        ("end_ms", "99999999999999".to_string()),
        ("user_rate", "1000".to_string()),
        ("user_burst", "1000".to_string()),
        ("gate_rate", "1000000".to_string()),
        ("gate_burst", "1000000".to_string()),
        ("per_buy", per_buy.to_string()),
        ("per_account", per_account.to_string()),
    ];
    if let Some(limit) = campaign_limit {
        meta.push(("campaign_per_account", limit.to_string()));
    }
    let _: () = redis::pipe()
        .hset_multiple(k.meta(), &meta)
        .set(k.stock(), stock)
        .query_async(con)
        .await
        .unwrap();
}

/// An Idempotency-Key's digest, or none ("") one time in five.
fn random_key(rng: &mut impl Rng) -> String {
    match rng.random_range(0..5) {
        0 => String::new(),
        n => format!("{n:032x}"),
    }
}

/// One buy of `uid` (given the path "P.x" first) for `q` units with `key` ("": none), decided
/// by the shipped `lua/admit.lua` alone.
async fn admit_one(
    con: &mut flashgate::plumbing::redis_conn::RedisConn,
    scripts: &flashgate::admission::scripts::Scripts,
    k: &flashgate::plumbing::keys::SaleKeys,
    uid: UserId,
    q: i64,
    key: &str,
) -> flashgate::admission::scripts::Admission {
    let _: () = con.set_ex(k.user(uid), "P.x", 60).await.unwrap();
    let keys = k.admit([uid]);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (u, qs) = (uid.get().to_string(), q.to_string());
    let args = ["", &u, "P.x", "r", "", &qs, key];
    let reply = scripts.get().admit.invoke(con, &keys, &args).await.unwrap();
    flashgate::admission::scripts::Admission::from_batch_reply(reply, 1)
        .unwrap()
        .remove(0)
}

/// One of `live`'s buys at random, taken in sorted order so a seed replays; none if it is empty.
fn pick<K: Ord + Clone, V>(rng: &mut impl Rng, live: &HashMap<K, V>) -> Option<K> {
    let mut all: Vec<&K> = live.keys().collect();
    all.sort();
    (!all.is_empty()).then(|| all[rng.random_range(0..all.len())].clone())
}

/// Why a buy's units come back, at random: failed, dead-lettered or closed (as order `order`).
fn random_why(rng: &mut impl Rng, order: i64) -> GiveBack {
    match rng.random_range(0..3) {
        0 => GiveBack::Failed,
        1 => GiveBack::DeadLettered,
        _ => GiveBack::Closed { order },
    }
}

async fn run_property(seed: u64, rng: &mut impl Rng, initial: i64, per_buy: i64, per_account: i64) {
    let (mut con, keys) = crate::helpers::script_redis("p").await;
    let scripts = flashgate::admission::scripts::Scripts::load(None).unwrap();
    let goods = GoodsId::new(1).unwrap();
    let k = keys.sale(goods);
    write_rules(&mut con, &k, initial, per_buy, per_account, None).await;
    let ctx = format!("seed {seed}: stock {initial}, perBuy {per_buy}, perAccount {per_account}");
    // what the test knows is admitted and not given back: (user, key) -> quantity
    let mut live: HashMap<(i64, String), i64> = HashMap::new();
    let mut given_back: Vec<((i64, String), i64)> = Vec::new();
    let mut order = 0;
    for step in 0..120 {
        let user = rng.random_range(1..=4i64);
        let uid = UserId::new(user).unwrap();
        if rng.random_bool(0.7) {
            let q = rng.random_range(1..=per_buy + 1);
            let key = random_key(rng);
            let outcome = admit_one(&mut con, &scripts, &k, uid, q, &key).await;
            use flashgate::admission::scripts::Admission::*;
            let held: i64 = live
                .iter()
                .filter(|(b, _)| b.0 == user)
                .map(|(_, q)| q)
                .sum();
            let stock_left: i64 = initial - live.values().sum::<i64>();
            let before = live.get(&(user, key.clone())).copied();
            let expected = if q > per_buy {
                "too_many_units"
            } else if !key.is_empty() && before == Some(q) {
                "again"
            } else if !key.is_empty() && before.is_some() {
                "key_reused"
            } else if per_account == 1 {
                if held > 0 {
                    "duplicate"
                } else if stock_left <= 0 {
                    "sold_out"
                } else {
                    "queued"
                }
            } else if key.is_empty() && held > 0 {
                "duplicate"
            } else if held + q > per_account {
                "limit_reached"
            } else if stock_left <= 0 {
                "sold_out"
            } else if stock_left < q {
                "not_enough"
            } else {
                "queued"
            };
            assert_eq!(
                outcome.label(),
                expected,
                "{ctx}, step {step}: user {user} q {q} key {key:?}"
            );
            if matches!(outcome, Queued { .. }) {
                live.insert((user, key), q);
            }
        } else if let Some(buy) = pick(rng, &live) {
            let q = live[&buy];
            order += 1;
            let why = random_why(rng, order);
            let units = Units {
                quantity: q as u32,
                key: &buy.1,
            };
            let shard = Shard::whole(goods);
            let uid = UserId::new(buy.0).unwrap();
            let back = sale::give_back(&mut con, &keys, &scripts, shard, uid, why, units)
                .await
                .unwrap();
            assert!(back, "{ctx}, step {step}: {buy:?} not given back");
            // asked again (a retry): nothing moves
            let twice = sale::give_back(&mut con, &keys, &scripts, shard, uid, why, units)
                .await
                .unwrap();
            assert!(!twice, "{ctx}, step {step}: {buy:?} given back twice");
            live.remove(&buy);
            given_back.push((buy, q));
        }
        // the invariants, from Redis
        let stock: i64 = con.get(k.stock()).await.unwrap();
        let held: HashMap<String, i64> = con.hgetall(k.held()).await.unwrap();
        let sold: i64 = live.values().sum();
        assert!(stock >= 0, "{ctx}, step {step}: oversold, stock {stock}");
        assert_eq!(
            stock + sold,
            initial,
            "{ctx}, step {step}: units not conserved"
        );
        let mut by_user: HashMap<i64, i64> = HashMap::new();
        for ((u, _), q) in &live {
            *by_user.entry(*u).or_default() += q;
        }
        for (u, units) in &by_user {
            assert!(
                *units <= per_account,
                "{ctx}, step {step}: user {u} holds {units}"
            );
            if per_account > 1 {
                assert_eq!(
                    held.get(&u.to_string()),
                    Some(units),
                    "{ctx}, step {step}: held of {u}"
                );
            }
        }
        let buyers: i64 = con.scard(k.buyers()).await.unwrap();
        assert_eq!(buyers, by_user.len() as i64, "{ctx}, step {step}: buyers");
    }
    let returned: i64 = given_back.iter().map(|(_, q)| q).sum();
    let counters: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(k.meta())
        .arg(&["failed", "dead_lettered", "closed"])
        .query_async(&mut con)
        .await
        .unwrap();
    let counted: i64 = counters.into_iter().flatten().sum();
    assert_eq!(
        counted, returned,
        "{ctx}: units given back, counted by reason"
    );
    let _ = con.delete_matching(&keys.sale(goods).everything()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_loaded_again_from_mysql_keeps_what_each_account_holds_and_its_keys() {
    let app = app(true).await;
    let goods = sale(&app, 10, 2, 3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let (s, _) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"a")).await;
    assert_eq!(s, 202);
    app.drained(goods, Duration::from_secs(20)).await;
    // Redis loses the sale (a flush, a primary lost without replicas): loaded again from MySQL
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    let _: () = redis::pipe()
        .del(k.stock())
        .del(k.buyers())
        .del(k.held())
        .del(k.buys())
        .query_async(&mut con)
        .await
        .unwrap();
    let row = sale::one(&app.state.db, goods).await.unwrap().unwrap();
    let settings = &app.state.settings;
    sale::load(&mut con, &app.state.db, &app.state.keys, settings, &row)
        .await
        .unwrap();
    let held: Option<i64> = con.hget(k.held(), user.id.get()).await.unwrap();
    assert_eq!(held, Some(2));
    let path = app.path_for(&user.token, goods).await;
    // the retry is still the same buy, and the limit still counts the 2 held
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"a")).await;
    assert_eq!(s, 202, "{r}");
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(2)), Some(b"b")).await;
    assert_eq!(
        (s, code(&r), r["data"]["allowanceLeft"].as_i64()),
        (409, 500520, Some(1))
    );
    assert_units(&app, goods, 10, 3).await;
}

/// Many accounts at once, random quantities and keys, every buy sent twice (a retry racing its
/// first send, coalesced into the same admission calls): afterwards every order row agrees with
/// Redis on units, nobody is over the limit, nothing is oversold, the audit is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_accounts_with_random_quantities_and_retries_agree_on_units_and_limits() {
    let app = app(true).await;
    let (stock, per_buy, per_account) = (150, 3, 4);
    let goods = sale(&app, stock, per_buy, per_account).await;
    let users = app.users(80).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut buys = Vec::new();
    for u in &users {
        let path = app.path_for(&u.token, goods).await;
        for b in 0..3 {
            let q: i64 = rng.random_range(1..=per_buy);
            let key = format!("{}-{b}", u.id);
            // the buy and its retry, sent together
            buys.push((u.token.clone(), path.clone(), q, key.clone()));
            buys.push((u.token.clone(), path.clone(), q, key));
        }
    }
    let answers = crate::helpers::concurrently(buys, 64, |(token, path, q, key)| {
        let app = &app;
        async move {
            let (s, r) = buy(
                app,
                &token,
                &path,
                goods,
                Some(json!(q)),
                Some(key.as_bytes()),
            )
            .await;
            (s, code(&r))
        }
    })
    .await;
    for (s, c) in &answers {
        assert!(
            matches!(
                (s, c),
                (202, 0) | (409, 500520) | (409, 500522) | (410, 500500)
            ),
            "unexpected answer {s} {c}"
        );
    }
    assert_units(&app, goods, i64::from(stock), per_account).await;
    // one order per key however often it was sent: the queued answers of distinct keys
    let keys: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT user_id, buy_key) FROM order_info WHERE goods_id = ?",
    )
    .bind(goods.get())
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_info WHERE goods_id = ?")
        .bind(goods.get())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(orders, keys, "a retried key made a second order");
}

/// Upgrading: a sale loaded by the version before (a meta without the rules) and queue entries
/// it wrote (no `q`, no `k`) drain and count as one unit each, keyless; its shoppers buy as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_and_keys_of_the_version_before_drain_and_count_as_one_unit() {
    let mut app = app(false).await;
    let goods = app.sale(5).await;
    let k = app.state.keys.sale(goods);
    let _: () = app
        .redis()
        .hdel(k.meta(), &["per_buy", "per_account"])
        .await
        .unwrap();
    let users = app.users(3).await;
    let ids: Vec<i64> = users[..2].iter().map(|u| u.id.get()).collect();
    app.queue_by_hand(goods, &[&ids[..1], &ids[1..2]]).await;
    // a shopper of the old meta: one unit, a second buy a duplicate, even with a quantity of 1
    let path = app.path_for(&users[2].token, goods).await;
    let (s, _) = buy(&app, &users[2].token, &path, goods, None, None).await;
    assert_eq!(s, 202);
    let (s, r) = buy(&app, &users[2].token, &path, goods, Some(json!(1)), None).await;
    assert_eq!((s, code(&r)), (409, 500501));
    let (s, r) = buy(
        &app,
        &users[2].token,
        &path,
        goods,
        Some(json!(2)),
        Some(b"k"),
    )
    .await;
    assert_eq!(
        (s, code(&r), r["data"]["perBuy"].as_i64()),
        (400, 500521, Some(1))
    );
    app.start_worker();
    assert_units(&app, goods, 5, 1).await;
    let rows: Vec<(i32, String)> =
        sqlx::query_as("SELECT goods_count, buy_key FROM order_info WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| *r == (1, String::new())), "{rows:?}");
    let held: i64 = app.redis().exists(k.held()).await.unwrap();
    assert_eq!(
        held, 0,
        "a sale of one unit per account keeps no held counts"
    );
}

/// The audit in units: a buyer of a sale of perAccount > 1 holding two buys in Redis (3 units)
/// with no order (as a failover can leave it) is found, and the fix gives back both buys' units
/// and allowance; the audit is clean after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_fix_gives_back_every_buy_of_a_buyer_without_orders() {
    let app = app(false).await;
    let goods = sale(&app, 10, 2, 4).await;
    let k = app.state.keys.sale(goods);
    let _: () = redis::pipe()
        .sadd(k.buyers(), 9)
        .hincr(k.held(), 9, 3)
        .hset(k.buys(), "9 -", 1)
        .hset(k.buys(), format!("9 {}", key_digest(b"x")), 2)
        .decr(k.stock(), 3)
        .hincr(k.meta(), "admitted", 2)
        .hincr(k.meta(), "extra_units", 1)
        .query_async(&mut app.redis())
        .await
        .unwrap();
    let stores = app.state.stores();
    let before = flashgate::operators::audit::audit(&stores, goods)
        .await
        .unwrap();
    assert!(!before.clean);
    assert_eq!(before.stock_drift, -3, "{before:?}");
    let kinds: Vec<&str> = before.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&"buyer_without_order"), "{kinds:?}");
    let fixed = flashgate::operators::audit::fix(&stores, goods)
        .await
        .unwrap();
    assert!(fixed.clean, "{fixed:?}");
    assert_eq!(app.redis_state(goods).await.0, 10);
    let held: Option<i64> = app.redis().hget(k.held(), 9).await.unwrap();
    assert_eq!(held, None, "the allowance is back");
}

// ---- campaigns: one limit across several sales (the sizes of one shoe) ----

/// `sizes` sales of one campaign, each of `stock` units running now, with these rules.
async fn campaign_sales(
    app: &TestApp,
    campaign: &str,
    sizes: usize,
    stock: i32,
    (per_buy, per_account, campaign_per_account): (i64, i64, i64),
) -> Vec<GoodsId> {
    let mut out = Vec::new();
    for size in 0..sizes {
        let mut new = flashgate::cli::seed::NewSale::new(stock, -1, 3600);
        new.name = format!("Shoe, size {}", 40 + size);
        new.per_buy = per_buy;
        new.per_account = per_account;
        new.campaign = Some(campaign.into());
        new.campaign_per_account = Some(campaign_per_account);
        out.push(app.create_sale(&new).await);
    }
    out
}

/// The units `user` holds across `campaign` as Redis counts them.
async fn campaign_held(app: &TestApp, goods: GoodsId, user: UserId) -> Option<i64> {
    let k = app.state.keys.sale(goods);
    app.redis()
        .hget(k.campaign_held(), user.get())
        .await
        .unwrap()
}

/// Three sizes, one pair per customer across them: a shopper's first size is taken, a second
/// size is refused whole with LIMIT_REACHED (the campaign's, nothing left to them) and moves
/// nothing; another shopper still buys that size; MySQL and Redis agree afterwards.
async fn three_sizes_one_pair_per_customer(app: &TestApp) -> Vec<GoodsId> {
    let sizes = campaign_sales(app, "shoe-aj1", 3, 5, (1, 1, 1)).await;
    let users = app.users(2).await;
    let (a, b) = (&users[0], &users[1]);
    let path = app.path_for(&a.token, sizes[0]).await;
    let (s, r) = buy(app, &a.token, &path, sizes[0], None, None).await;
    assert_eq!(s, 202, "the first size: {r}");
    assert_eq!(campaign_held(app, sizes[0], a.id).await, Some(1));
    // the result says what is left of the allowance before a buy is refused: nothing, in any size
    for size in &sizes {
        let (s, env) = app
            .get(&format!("/api/seckill/result?goodsId={size}"), &a.token)
            .await;
        assert_eq!(s, 200, "{env}");
        assert_eq!(
            (
                env["allowanceLeft"].as_i64(),
                env["campaignAllowanceLeft"].as_i64()
            ),
            (Some(0), Some(0)),
            "{env}"
        );
    }
    let (_, env) = app
        .get(
            &format!("/api/seckill/result?goodsId={}", sizes[2]),
            &b.token,
        )
        .await;
    assert_eq!(
        (env["data"].as_i64(), env["allowanceLeft"].as_i64()),
        (Some(-1), Some(1)),
        "{env}"
    );
    for size in &sizes[1..] {
        let before = redis_snapshot(app, *size).await;
        let path = app.path_for(&a.token, *size).await;
        let (s, r) = buy(app, &a.token, &path, *size, Some(json!(1)), Some(b"other")).await;
        assert_eq!((s, code(&r)), (409, 500520), "a second size: {r}");
        assert_eq!(r["data"]["allowanceLeft"], 0, "{r}");
        assert_eq!(r["data"]["limit"], "campaign", "{r}");
        assert_eq!(redis_snapshot(app, *size).await, before, "nothing moved");
    }
    assert_eq!(campaign_held(app, sizes[0], a.id).await, Some(1));
    // the refusal was the account's, not the size's
    let path = app.path_for(&b.token, sizes[1]).await;
    let (s, r) = buy(app, &b.token, &path, sizes[1], None, None).await;
    assert_eq!(s, 202, "{r}");
    for (size, sold) in sizes.iter().zip([1, 1, 0]) {
        assert_units(app, *size, 5, 1).await;
        assert_eq!(app.mysql_stock(*size).await, 5 - sold);
    }
    // the audit holds the campaign's count to its sales' counts: a unit counted too many is found
    let key = app.state.keys.sale(sizes[2]).campaign_held();
    let _: () = app.redis().hincr(&key, b.id.get(), 1).await.unwrap();
    let report = flashgate::operators::audit::audit(&app.state.stores(), sizes[2])
        .await
        .unwrap();
    assert!(!report.clean, "{report:?}");
    let drift: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == "campaign_drift")
        .map(|f| f.user)
        .collect();
    assert_eq!(drift, [Some(b.id.get())], "{report:?}");
    let _: () = app.redis().hincr(&key, b.id.get(), -1).await.unwrap();
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_three_sizes_with_one_per_account_refuses_the_second_size() {
    let app = app(true).await;
    three_sizes_one_pair_per_customer(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_of_three_sizes_on_the_cluster_is_decided_on_one_slot() {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.redis_url = crate::cluster::cluster_url();
    let app = spawn_with(settings, true).await;
    let sizes = three_sizes_one_pair_per_customer(&app).await;
    // every size's keys and the campaign's counter hash to the campaign's one slot
    let mut nodes = crate::cluster::nodes().await;
    let home =
        crate::cluster::holder(&mut nodes, &app.state.keys.sale(sizes[0]).campaign_held()).await;
    for size in &sizes {
        let k = app.state.keys.sale(*size);
        assert_eq!(crate::cluster::holder(&mut nodes, &k.stock()).await, home);
        assert_eq!(crate::cluster::holder(&mut nodes, &k.meta()).await, home);
    }
    // and a sale outside the campaign keeps its own tag
    let plain = app.sale(3).await;
    assert!(app.state.keys.sale(plain).stock().contains("{g:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_campaign_order_gives_back_its_campaign_allowance_once_however_often_the_close_runs()
 {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.unpaid_timeout_secs = 1;
    let app = spawn_with(settings, true).await;
    let sizes = campaign_sales(&app, "boot", 2, 5, (2, 2, 2)).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, sizes[0]).await;
    let (s, r) = buy(
        &app,
        &user.token,
        &path,
        sizes[0],
        Some(json!(2)),
        Some(b"a"),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(campaign_held(&app, sizes[0], user.id).await, Some(2));
    until("the order is written", || async {
        app.result(&user.token, sizes[0]).await > 0
    })
    .await;
    let order = app.result(&user.token, sizes[0]).await;
    until("the order is closed and its units are back", || async {
        let returned: Option<i8> =
            sqlx::query_scalar("SELECT stock_returned FROM order_info WHERE id = ?")
                .bind(order)
                .fetch_optional(&app.state.db)
                .await
                .unwrap();
        returned == Some(1)
    })
    .await;
    assert_eq!(
        campaign_held(&app, sizes[0], user.id).await,
        None,
        "the campaign allowance is back"
    );
    // the other size takes the whole allowance again (paid at once: the closer leaves it)
    let path = app.path_for(&user.token, sizes[1]).await;
    let (s, r) = buy(
        &app,
        &user.token,
        &path,
        sizes[1],
        Some(json!(2)),
        Some(b"b"),
    )
    .await;
    assert_eq!(s, 202, "{r}");
    until("the second order is written", || async {
        app.result(&user.token, sizes[1]).await > 0
    })
    .await;
    let second = app.result(&user.token, sizes[1]).await;
    let paid = sqlx::query("UPDATE order_info SET status = 1 WHERE id = ? AND status = 0")
        .bind(second)
        .execute(&app.state.db)
        .await
        .unwrap();
    assert_eq!(
        paid.rows_affected(),
        1,
        "the second order closed before it was paid"
    );
    // the close of the first order runs again, twice (a crash between giving back and noting
    // it): the campaign's counter does not go down a second time
    for _ in 0..2 {
        let came_back = give_back_units(
            &app,
            sizes[0],
            user.id,
            GiveBack::Closed { order },
            2,
            &key_digest(b"a"),
        )
        .await;
        assert!(!came_back, "a closed order's units came back twice");
    }
    assert_eq!(campaign_held(&app, sizes[0], user.id).await, Some(2));
    let path = app.path_for(&user.token, sizes[0]).await;
    let (s, r) = buy(
        &app,
        &user.token,
        &path,
        sizes[0],
        Some(json!(1)),
        Some(b"c"),
    )
    .await;
    assert_eq!(
        (s, code(&r), r["data"]["allowanceLeft"].as_i64()),
        (409, 500520, Some(0)),
        "{r}"
    );
    assert_units(&app, sizes[0], 5, 2).await;
    assert_units(&app, sizes[1], 5, 2).await;
    assert_eq!(app.mysql_stock(sizes[0]).await, 5);
    assert_eq!(app.mysql_stock(sizes[1]).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_campaign_rules_are_refused_each_with_its_code_and_nothing_written() {
    let app = app(false).await;
    let start = chrono::Utc::now().timestamp_millis() + 60_000;
    let body = |extra: Value| {
        let mut b = json!({
            "name": "Shoe", "title": "A shoe", "price": 100, "salePrice": 1, "stock": 10,
            "startAt": start, "endAt": start + 3_600_000,
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (s, r) = app
        .admin(
            "POST",
            "/api/admin/sales",
            Some(&body(
                json!({ "campaign": "run-1", "campaignPerAccount": 2, "perAccount": 2 }),
            )),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let first = r["data"]["goodsId"].as_i64().unwrap();
    let count = || async {
        let sales: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM seckill_goods")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        let campaigns: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sale_campaign")
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        (sales, campaigns)
    };
    let before = count().await;
    let cases = [
        (
            json!({ "campaign": "Run 1!", "campaignPerAccount": 2 }),
            500722,
            "campaign",
        ),
        (
            json!({ "campaign": "x".repeat(33), "campaignPerAccount": 2 }),
            500722,
            "campaign",
        ),
        (
            json!({ "campaign": "a{b}", "campaignPerAccount": 2 }),
            500722,
            "campaign",
        ),
        (json!({ "campaign": "run-2" }), 500723, "campaignPerAccount"),
        (
            json!({ "campaignPerAccount": 2 }),
            500723,
            "campaignPerAccount",
        ),
        (
            json!({ "campaign": "run-2", "campaignPerAccount": 0 }),
            500723,
            "campaignPerAccount",
        ),
        // a campaign limit below the sale's own (and so possibly below perBuy)
        (
            json!({ "campaign": "run-2", "campaignPerAccount": 1, "perAccount": 2 }),
            500723,
            "campaignPerAccount",
        ),
        (
            json!({ "campaign": "run-1", "campaignPerAccount": 3, "perAccount": 2 }),
            500724,
            "campaignPerAccount",
        ),
        (
            json!({ "campaign": "run-2", "campaignPerAccount": 2, "shards": 2 }),
            500725,
            "campaign",
        ),
    ];
    for (extra, want, field) in cases {
        let (s, r) = app
            .admin("POST", "/api/admin/sales", Some(&body(extra.clone())))
            .await;
        assert_eq!((s, code(&r)), (400, want), "{extra}: {r}");
        assert_eq!(r["data"]["field"], field, "{extra}: {r}");
        assert_eq!(count().await, before, "{extra}: nothing written");
    }
    // a campaign is set when the sale is made: a change of it, or of its limit, is refused
    for patch in [
        json!({ "campaign": "run-9" }),
        json!({ "campaignPerAccount": 5 }),
    ] {
        let (s, r) = app
            .admin("PATCH", &format!("/api/admin/sales/{first}"), Some(&patch))
            .await;
        assert_eq!((s, code(&r)), (400, 500726), "{patch}: {r}");
    }
    let (s, view) = app
        .admin("GET", &format!("/api/admin/sales/{first}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            view["data"]["campaign"].as_str(),
            view["data"]["campaignPerAccount"].as_i64()
        ),
        (Some("run-1"), Some(2)),
        "{view}"
    );
    // the CLI refuses the same, with the code
    let (status, _, err) = app.cli(&[
        "seed",
        "--campaign",
        "run-1",
        "--campaign-per-account",
        "5",
        "--per-account",
        "2",
        "--per-buy",
        "1",
    ]);
    assert_ne!(status, Some(0));
    assert!(err.contains("500724"), "{err}");
    assert_eq!(count().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_carries_the_quantity_claim_and_the_order_event_data_quantity() {
    let mut settings = test_settings();
    settings.user_burst = 100;
    settings.grant_key = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into();
    settings.webhook_url = "http://127.0.0.1:9/hook".into();
    settings.webhook_secret = crate::events::SECRET.into();
    let app = spawn_with(settings, true).await;
    let goods = sale(&app, 10, 3, 3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let (s, r) = buy(&app, &user.token, &path, goods, Some(json!(3)), Some(b"k")).await;
    assert_eq!(s, 202, "{r}");
    until("the order is written", || async {
        app.result(&user.token, goods).await > 0
    })
    .await;
    let (s, env) = app
        .get(&format!("/api/seckill/result?goodsId={goods}"), &user.token)
        .await;
    assert_eq!(s, 200);
    let order = env["data"].as_i64().unwrap();
    assert_eq!(env["quantity"], 3, "the result says the units: {env}");
    assert_eq!(env["allowanceLeft"], 0, "{env}");
    let grant = env["grant"].as_str().expect("a grant");
    let grants = app.state.identity.grants.as_ref().unwrap();
    let claims = grants.verify(grant).unwrap();
    assert_eq!((claims.order, claims.quantity), (order, 3));
    // the created event as the relay sends it (built from the order row), and the closed one
    // as the outbox keeps it
    let mut tx = app.state.db.begin().await.unwrap();
    let created = flashgate::events::outbox::from_orders(
        &mut tx,
        &app.state.events,
        flashgate::events::EventType::Created,
        &[order],
        None,
    )
    .await
    .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].data["quantity"], 3, "{:?}", created[0].data);
    assert_eq!(created[0].data["orderId"], order);
    let closed = flashgate::events::outbox::from_orders(
        &mut tx,
        &app.state.events,
        flashgate::events::EventType::Closed,
        &[order],
        Some(chrono::Utc::now().naive_utc()),
    )
    .await
    .unwrap();
    assert_eq!(closed[0].data["quantity"], 3, "{:?}", closed[0].data);
}

/// Random buys, retries and give-backs over a campaign of three sales, on the scripts: every
/// answer is the one the rules give, nothing is oversold, no account is past the sale's limit
/// or the campaign's, and stock + units held + units given back is the initial stock, in every
/// sale and across the campaign.
#[tokio::test]
async fn property_random_buys_retries_and_closes_over_a_campaign_keep_every_limit() {
    for seed in 0..10u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + seed);
        let per_buy = rng.random_range(1..4);
        let per_account = per_buy + rng.random_range(0..3);
        let campaign = per_account + rng.random_range(0..4);
        let stocks: Vec<i64> = (0..3).map(|_| rng.random_range(1..15)).collect();
        run_campaign_property(seed, &mut rng, &stocks, per_buy, per_account, campaign).await;
    }
}

async fn run_campaign_property(
    seed: u64,
    rng: &mut impl Rng,
    stocks: &[i64],
    per_buy: i64,
    per_account: i64,
    campaign_limit: i64,
) {
    let (mut con, keys) = crate::helpers::script_redis("pc").await;
    let scripts = flashgate::admission::scripts::Scripts::load(None).unwrap();
    let campaign = flashgate::domain::Campaign::parse("prop").unwrap();
    let sales: Vec<GoodsId> = (1..=stocks.len() as i64)
        .map(|g| GoodsId::new(g).unwrap())
        .collect();
    for (goods, stock) in sales.iter().zip(stocks) {
        keys.learn(*goods, Some(&campaign));
        let k = keys.sale(*goods);
        let limit = Some(campaign_limit);
        write_rules(&mut con, &k, *stock, per_buy, per_account, limit).await;
    }
    let ctx = format!(
        "seed {seed}: stocks {stocks:?}, perBuy {per_buy}, perAccount {per_account}, \
         campaignPerAccount {campaign_limit}"
    );
    // admitted and not given back: (sale index, user, key) -> quantity
    let mut live: HashMap<(usize, i64, String), i64> = HashMap::new();
    let mut returned = vec![0i64; sales.len()];
    let mut order = 0;
    for step in 0..150 {
        let user = rng.random_range(1..=4i64);
        let uid = UserId::new(user).unwrap();
        if rng.random_bool(0.7) {
            let s = rng.random_range(0..sales.len());
            let k = keys.sale(sales[s]);
            let q = rng.random_range(1..=per_buy + 1);
            let key = random_key(rng);
            let outcome = admit_one(&mut con, &scripts, &k, uid, q, &key).await;
            use flashgate::admission::scripts::Admission::*;
            let held: i64 = live
                .iter()
                .filter(|(b, _)| b.0 == s && b.1 == user)
                .map(|(_, q)| q)
                .sum();
            let across: i64 = live
                .iter()
                .filter(|(b, _)| b.1 == user)
                .map(|(_, q)| q)
                .sum();
            let stock_left = stocks[s]
                - live
                    .iter()
                    .filter(|(b, _)| b.0 == s)
                    .map(|(_, q)| q)
                    .sum::<i64>();
            let before = live.get(&(s, user, key.clone())).copied();
            let expected = if q > per_buy {
                "too_many_units"
            } else if !key.is_empty() && before == Some(q) {
                "again"
            } else if !key.is_empty() && before.is_some() {
                "key_reused"
            } else if (per_account == 1 || key.is_empty()) && held > 0 {
                "duplicate"
            } else if held + q > per_account || across + q > campaign_limit {
                "limit_reached"
            } else if stock_left <= 0 {
                "sold_out"
            } else if stock_left < q {
                "not_enough"
            } else {
                "queued"
            };
            assert_eq!(
                outcome.label(),
                expected,
                "{ctx}, step {step}: sale {s} user {user} q {q} key {key:?}"
            );
            if let LimitReached { left, .. } = outcome {
                let want = (per_account - held).min(campaign_limit - across).max(0);
                assert_eq!(left, want, "{ctx}, step {step}: the allowance left");
            }
            if matches!(outcome, Queued { .. }) {
                live.insert((s, user, key), q);
            }
        } else if let Some(buy) = pick(rng, &live) {
            let q = live[&buy];
            order += 1;
            let why = random_why(rng, order);
            let units = Units {
                quantity: q as u32,
                key: &buy.2,
            };
            let shard = Shard::whole(sales[buy.0]);
            let uid = UserId::new(buy.1).unwrap();
            for attempt in 0..2 {
                let back = sale::give_back(&mut con, &keys, &scripts, shard, uid, why, units)
                    .await
                    .unwrap();
                assert_eq!(
                    back,
                    attempt == 0,
                    "{ctx}, step {step}: {buy:?}, give-back {attempt}"
                );
            }
            live.remove(&buy);
            returned[buy.0] += q;
        }
        // the invariants, from Redis
        let campaign_key = keys.sale(sales[0]).campaign_held();
        let across: HashMap<String, i64> = con.hgetall(&campaign_key).await.unwrap();
        for (s, goods) in sales.iter().enumerate() {
            let stock: i64 = con.get(keys.sale(*goods).stock()).await.unwrap();
            let sold: i64 = live.iter().filter(|(b, _)| b.0 == s).map(|(_, q)| q).sum();
            assert!(stock >= 0, "{ctx}, step {step}: sale {s} oversold");
            assert_eq!(
                stock + sold,
                stocks[s],
                "{ctx}, step {step}: sale {s} units"
            );
        }
        for user in 1..=4i64 {
            let mine: i64 = live
                .iter()
                .filter(|(b, _)| b.1 == user)
                .map(|(_, q)| q)
                .sum();
            assert!(
                mine <= campaign_limit,
                "{ctx}, step {step}: user {user} holds {mine}"
            );
            for s in 0..sales.len() {
                let here: i64 = live
                    .iter()
                    .filter(|(b, _)| b.0 == s && b.1 == user)
                    .map(|(_, q)| q)
                    .sum();
                assert!(
                    here <= per_account,
                    "{ctx}, step {step}: user {user} in sale {s}"
                );
            }
            assert_eq!(
                across.get(&user.to_string()).copied().unwrap_or(0),
                mine,
                "{ctx}, step {step}: the campaign's count of user {user}"
            );
        }
    }
    for (s, goods) in sales.iter().enumerate() {
        let counters: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(keys.sale(*goods).meta())
            .arg(&["failed", "dead_lettered", "closed"])
            .query_async(&mut con)
            .await
            .unwrap();
        let counted: i64 = counters.into_iter().flatten().sum();
        assert_eq!(
            counted, returned[s],
            "{ctx}: sale {s}: units given back, counted"
        );
        let stock: i64 = con.get(keys.sale(*goods).stock()).await.unwrap();
        let held: i64 = live.iter().filter(|(b, _)| b.0 == s).map(|(_, q)| q).sum();
        assert_eq!(stock + held, stocks[s], "{ctx}: sale {s}: stock + held");
        let _ = con.delete_matching(&keys.sale(*goods).everything()).await;
    }
    let _: () = con.del(keys.sale(sales[0]).campaign_held()).await.unwrap();
}
