//! Sale management through the admin API (`src/sales/manage.rs`, `src/operators/live.rs`): every validation
//! rule refused with its code and nothing written; a sale created through the API sold out
//! by 2,000 shoppers with the edge and worker already running; what a patch may change before
//! and during a sale; a cancel that stops two edges at once; the per-second counts.

use std::time::Duration;

use flashgate::domain::GoodsId;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, concurrently, spawn_app, spawn_app_with_worker};

fn code(body: &Value) -> i64 {
    body["code"].as_i64().unwrap_or(-1)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A valid body for `POST /api/admin/sales`: `stock` units, from `starts_in` s for an hour.
fn body(stock: i64, starts_in: i64) -> Value {
    let start = now_ms() + starts_in * 1000;
    json!({
        "name": "Console phone", "title": "A phone from the console", "detail": "One each.",
        "imageUrl": "/img/goods.svg", "price": 999.0, "salePrice": 1.0, "stock": stock,
        "startAt": start, "endAt": start + 3_600_000,
    })
}

async fn create(app: &TestApp, body: &Value) -> GoodsId {
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(body)).await;
    assert_eq!(s, 201, "{r}");
    GoodsId::new(r["data"]["goodsId"].as_i64().unwrap()).unwrap()
}

async fn count_rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_rule_is_refused_with_its_code_and_nothing_written() {
    let app = spawn_app().await;
    let start = now_ms() + 60_000;
    // (field, value, code, field named in the answer)
    let cases: Vec<(&str, Value, i64, &str)> = vec![
        ("name", json!(""), 500700, "name"),
        ("name", json!("x".repeat(65)), 500700, "name"),
        ("title", json!("   "), 500701, "title"),
        ("detail", json!("d".repeat(10_001)), 500702, "detail"),
        ("imageUrl", json!("javascript:alert(1)"), 500703, "imageUrl"),
        (
            "imageUrl",
            json!("/img/a\"onerror=x.png"),
            500703,
            "imageUrl",
        ),
        ("price", json!(0), 500704, "price"),
        ("price", json!(10.005), 500704, "price"),
        ("salePrice", json!(-1), 500705, "salePrice"),
        ("salePrice", json!(1000.0), 500706, "salePrice"),
        ("stock", json!(0), 500707, "stock"),
        ("stock", json!(1_000_001), 500707, "stock"),
        ("endAt", json!(start), 500708, "endAt"),
        ("startAt", json!(12), 500715, "endAt"),
        ("shards", json!(65), 500710, "shards"),
        ("shards", json!(11), 500710, "shards"),
        ("userRate", json!(0), 500711, "userRate"),
        ("gateBurst", json!(0), 500712, "userBurst"),
        ("pathFactor", json!(0), 500713, "pathFactor"),
    ];
    for (field, value, want, named) in cases {
        let mut b = body(10, 60);
        b[field] = value.clone();
        let (s, r) = app.admin("POST", "/api/admin/sales", Some(&b)).await;
        assert_eq!((s, code(&r)), (400, want), "{field}={value}: {r}");
        assert_eq!(r["data"]["field"], named, "{r}");
        assert!(!r["msg"].as_str().unwrap().is_empty());
    }
    // a window wholly in the past
    let mut b = body(10, -7200);
    b["endAt"] = json!(now_ms() - 3_600_000);
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(&b)).await;
    assert_eq!((s, code(&r)), (400, 500709), "{r}");
    // malformed bodies: a missing field, an unknown one, not JSON, no token
    let mut b = body(10, 60);
    b.as_object_mut().unwrap().remove("price");
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(&b)).await;
    assert_eq!((s, code(&r)), (400, 500101), "{r}");
    let mut b = body(10, 60);
    b["colour"] = json!("red");
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(&b)).await;
    assert_eq!((s, code(&r)), (400, 500101), "{r}");
    let base = app.admin_address.clone().unwrap();
    let r = app
        .http
        .post(format!("{base}/api/admin/sales"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .body(body(10, 60).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .http
        .post(format!("{base}/api/admin/sales"))
        .json(&body(10, 60))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token");
    // and nothing was written anywhere
    assert_eq!(count_rows(&app, "goods").await, 0);
    assert_eq!(count_rows(&app, "seckill_goods").await, 0);
    let keys: Vec<String> = app
        .redis()
        .keys(format!("{}sk:*", app.state.keys.namespace()))
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_created_through_the_api_is_bought_out_by_2000_shoppers_without_a_restart() {
    let app = spawn_app_with_worker().await;
    let users = app.users(2000).await;
    // the edge and the worker run already; the sale is made now, through the API
    let mut b = body(300, -1);
    b["shards"] = json!(3);
    let goods = create(&app, &b).await;
    let (s, v) = app
        .admin("GET", &format!("/api/admin/sales/{goods}"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["phase"], "live");
    assert_eq!(v["data"]["live"]["stockLeft"], 300);
    assert_eq!(v["data"]["live"]["shards"].as_array().unwrap().len(), 3);
    // the shoppers' side sees it too
    let (s, d) = app.get(&format!("/api/goods/{goods}"), "").await;
    assert_eq!((s, d["data"]["status"].as_i64()), (200, Some(1)), "{d}");

    let outcomes = concurrently(users.clone(), 64, |u| {
        let app = &app;
        async move {
            let (s, r) = app
                .get(&format!("/api/seckill/path?goodsId={goods}"), &u.token)
                .await;
            if s != 200 {
                return None; // no path: sold out already (or rate limited)
            }
            Some(
                app.buy(&u.token, r["data"].as_str().unwrap(), goods)
                    .await
                    .0,
            )
        }
    })
    .await;
    let queued = outcomes.iter().filter(|s| **s == Some(202)).count();
    assert_eq!(queued, 300, "exactly the stock is admitted");
    // drained: every shard's queue
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = app
            .admin("GET", &format!("/api/admin/sales/{goods}"), None)
            .await;
        if v["data"]["live"]["backlog"] == 0 && v["data"]["live"]["orders"]["written"] == 300 {
            assert_eq!(v["data"]["phase"], "sold_out", "{v}");
            assert_eq!(v["data"]["live"]["admitted"], 300);
            assert_eq!(v["data"]["live"]["stockLeft"], 0);
            assert_eq!(v["data"]["live"]["mysqlStock"], 0);
            assert_eq!(v["data"]["live"]["orders"]["unpaid"], 300);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not drained: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.orders(goods).await, 300);
    let (s, a) = app
        .admin("GET", &format!("/api/admin/sales/{goods}/audit"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(a["data"]["clean"], true, "{a}");

    // the per-second counts: every admission and every order, once (flushed each second)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, t) = app
            .admin(
                "GET",
                &format!("/api/admin/sales/{goods}/series?seconds=120"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{t}");
        let sum = |name: &str| -> u64 {
            t["data"]["series"][name]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        };
        let answered: u64 = ["queued", "sold_out", "sold_out_local", "rate_limited"]
            .iter()
            .map(|n| sum(n))
            .sum();
        let buys = outcomes.iter().filter(|s| s.is_some()).count() as u64;
        if sum("queued") == 300 && sum("written") == 300 && answered == buys {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "series: queued {} written {} answered {answered} of {buys}",
            sum("queued"),
            sum("written")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_rules_hold_before_and_during_a_sale() {
    let app = spawn_app().await;
    let goods = create(&app, &body(10, 3600)).await;
    let path = format!("/api/admin/sales/{goods}");
    let patch = |b: Value| {
        let (app, path) = (&app, path.clone());
        async move { app.admin("PATCH", &path, Some(&b)).await }
    };
    // scheduled: anything may change, and Redis follows (shards rebuilt with the new stock)
    let (s, v) =
        patch(json!({ "name": "Renamed", "price": 500.0, "stock": 40, "shards": 4 })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            &v["data"]["name"],
            &v["data"]["stock"],
            &v["data"]["live"]["stockLeft"]
        ),
        (&json!("Renamed"), &json!(40), &json!(40))
    );
    let shards: Vec<i64> = v["data"]["live"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stock"].as_i64().unwrap())
        .collect();
    assert_eq!(shards, [10, 10, 10, 10]);
    assert_eq!(app.mysql_stock(goods).await, 40);
    // nothing to change, an unknown field, a broken rule: refused, nothing written
    let (s, r) = patch(json!({ "stock": 40 })).await;
    assert_eq!((s, code(&r)), (400, 500716), "{r}");
    let (s, r) = patch(json!({ "colour": "red" })).await;
    assert_eq!((s, code(&r)), (400, 500101), "{r}");
    let (s, r) = patch(json!({ "salePrice": 600.0 })).await;
    assert_eq!((s, code(&r)), (400, 500706), "{r}");
    // open it now
    let (s, v) = patch(json!({ "startAt": now_ms() - 1000 })).await;
    assert_eq!((s, &v["data"]["phase"]), (200, &json!("live")), "{v}");

    // live: what could break an invariant is refused, with why
    for (b, want) in [
        (json!({ "price": 1.5 }), 500751),
        (json!({ "name": "Other" }), 500751),
        (json!({ "shards": 2 }), 500751),
        (json!({ "startAt": now_ms() + 5000 }), 500751),
        (json!({ "stock": 5 }), 500753),
        (json!({ "endAt": now_ms() + 60_000 }), 500752),
    ] {
        let (s, r) = patch(b.clone()).await;
        assert_eq!((s, code(&r)), (409, want), "{b}: {r}");
    }
    assert_eq!(
        app.mysql_stock(goods).await,
        40,
        "a refusal changes nothing"
    );
    // live: a later end, a restock, rates, words
    let end = v["data"]["endAt"].as_i64().unwrap() + 600_000;
    let (s, v) =
        patch(json!({ "endAt": end, "addStock": 6, "userRate": 2.5, "title": "Now 46" })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["live"]["stockLeft"], 46);
    assert_eq!(v["data"]["stock"], 46);
    assert_eq!(v["data"]["endAt"], end);
    assert_eq!(app.mysql_stock(goods).await, 46);
    let meta = app.state.keys.sale(goods).meta();
    let (end_ms, rate, initial): (i64, f64, i64) = redis::pipe()
        .hget(&meta, "end_ms")
        .hget(&meta, "user_rate")
        .hget(&meta, "stock")
        .query_async(&mut app.redis())
        .await
        .unwrap();
    assert_eq!((end_ms, rate, initial), (end, 2.5, 46));
}

/// A hidden path from the edge at `base` (`http://127.0.0.1:PORT`).
async fn path_through(app: &TestApp, base: &str, token: &str, goods: GoodsId) -> String {
    let (s, r) = app
        .get_at(base, &format!("/api/seckill/path?goodsId={goods}"), token)
        .await;
    assert_eq!(s, 200, "{r}");
    r["data"].as_str().unwrap().to_string()
}

/// A buy through the edge at `base`: (status, JSON body).
async fn buy_through(
    app: &TestApp,
    base: &str,
    token: &str,
    path: &str,
    goods: GoodsId,
) -> (u16, Value) {
    let body = json!({ "goodsId": goods.get() });
    app.post_at(base, &format!("/api/seckill/{path}/orders"), token, &body)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restock_reopens_a_sold_out_sale_on_every_edge() {
    let mut app = spawn_app().await;
    let (edge2, state2) = app.add_edge().await;
    let edges = [app.address.clone(), format!("http://{edge2}")];
    let users = app.users(4).await;
    let goods = create(&app, &body(2, -1)).await;
    // everyone holds a path while there is stock; shopper i uses edge i % 2
    let mut paths = Vec::new();
    for (i, u) in users.iter().enumerate() {
        paths.push(path_through(&app, &edges[i % 2], &u.token, goods).await);
    }
    let buy = |i: usize| {
        let (app, edges, users, paths) = (&app, &edges, &users, &paths);
        async move {
            buy_through(app, &edges[i % 2], &users[i].token, &paths[i], goods)
                .await
                .0
        }
    };
    assert_eq!((buy(0).await, buy(1).await), (202, 202));
    // sold out: the script says so on both edges, and both set their local flag
    assert_eq!((buy(2).await, buy(3).await), (410, 410));
    assert!(app.state.local.is_sold_out(goods) && state2.local.is_sold_out(goods));
    let (_, v) = app
        .admin("GET", &format!("/api/admin/sales/{goods}"), None)
        .await;
    assert_eq!(v["data"]["phase"], "sold_out");

    let (s, v) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({ "addStock": 2 })),
        )
        .await;
    assert_eq!((s, &v["data"]["phase"]), (200, &json!("live")), "{v}");
    // the restock message clears both flags: the two are admitted, each on their edge
    let mut statuses = (0, 0);
    for _ in 0..50 {
        if statuses.0 != 202 {
            statuses.0 = buy(2).await;
        }
        if statuses.1 != 202 {
            statuses.1 = buy(3).await;
        }
        if statuses == (202, 202) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        statuses,
        (202, 202),
        "a restocked sale admits again on both edges"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_admissions_on_two_edges_at_once_and_keeps_the_orders() {
    let mut app = spawn_app_with_worker().await;
    let (edge2, _) = app.add_edge().await;
    let users = app.users(6).await;
    let goods = create(&app, &body(100, -1)).await;
    // two buy before the cancel, one through each edge
    let paths: Vec<String> = concurrently(users.clone(), 6, |u| {
        let app = &app;
        async move { app.path_for(&u.token, goods).await }
    })
    .await;
    let buy_on = |edge: String, i: usize| {
        let (app, users, paths) = (&app, &users, &paths);
        async move { buy_through(app, &edge, &users[i].token, &paths[i], goods).await }
    };
    let one = app.address.clone();
    let two = format!("http://{edge2}");
    assert_eq!(buy_on(one.clone(), 0).await.0, 202);
    assert_eq!(buy_on(two.clone(), 1).await.0, 202);

    let (s, v) = app
        .admin("POST", &format!("/api/admin/sales/{goods}/cancel"), None)
        .await;
    assert_eq!((s, &v["data"]["phase"]), (200, &json!("cancelled")), "{v}");
    // at once, on both edges: no waiting, no retry
    let (s1, r1) = buy_on(one.clone(), 2).await;
    let (s2, r2) = buy_on(two.clone(), 3).await;
    assert_eq!((s1, code(&r1)), (410, 500502), "{r1}");
    assert_eq!((s2, code(&r2)), (410, 500502), "{r2}");
    let (s, r) = app
        .get(
            &format!("/api/seckill/path?goodsId={goods}"),
            &users[4].token,
        )
        .await;
    assert_eq!((s, code(&r)), (410, 500502), "no new paths either: {r}");
    // the shoppers' page shows the sale over
    let (_, d) = app.get(&format!("/api/goods/{goods}"), "").await;
    assert_eq!(d["data"]["status"], 2, "{d}");
    // the two admitted before the cancel get their orders
    app.drained(goods, Duration::from_secs(20)).await;
    assert_eq!(app.orders(goods).await, 2);
    assert!(app.result(&users[0].token, goods).await > 0);
    // cancelling again re-applies it (a retry), a change is refused
    let (s, _) = app
        .admin("POST", &format!("/api/admin/sales/{goods}/cancel"), None)
        .await;
    assert_eq!(s, 200);
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({ "addStock": 5 })),
        )
        .await;
    assert_eq!((s, code(&r)), (409, 500750), "{r}");
    // a scheduled sale can be cancelled too; unknown sales are 404
    let later = create(&app, &body(5, 3600)).await;
    let (s, v) = app
        .admin("POST", &format!("/api/admin/sales/{later}/cancel"), None)
        .await;
    assert_eq!((s, &v["data"]["phase"]), (200, &json!("cancelled")), "{v}");
    let (s, _) = app.admin("GET", "/api/admin/sales/999999", None).await;
    assert_eq!(s, 404);
    let (s, l) = app.admin("GET", "/api/admin/sales", None).await;
    assert_eq!(s, 200);
    let ids: Vec<i64> = l["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["goodsId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [later.get(), goods.get()], "newest first");
    // bad counts in the query are refused
    for path in [
        "/api/admin/sales?limit=0".to_string(),
        format!("/api/admin/sales/{goods}/series?seconds=99999"),
        format!("/api/admin/sales/{goods}/series?seconds=x"),
    ] {
        let (s, r) = app.admin("GET", &path, None).await;
        assert_eq!((s, code(&r)), (400, 500101), "{path}: {r}");
    }
}
