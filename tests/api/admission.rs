//! The shopper flow through HTTP up to "queued": login, sessions, captcha, hidden path, the buy
//! and every refusal, with the documented status and code, and nothing changed in Redis.

use std::collections::HashSet;

use flashgate::accounts::password;
use flashgate::cli::seed::TEST_PASSWORD;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, concurrently, spawn_app, spawn_with, test_settings};

fn code(body: &Value) -> i64 {
    body["code"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_an_http_only_cookie_and_refuses_bad_credentials() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let good = password::client_hash(TEST_PASSWORD);

    let r = app
        .http
        .post(app.url("/api/login"))
        .json(&json!({ "mobile": user.mobile, "password": good }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.starts_with("token="),
        "{cookie}"
    );
    let body: Value = r.json().await.unwrap();
    let token = body["data"].as_str().unwrap().to_string();
    // the cookie alone authenticates
    let cookie_pair = cookie.split(';').next().unwrap().to_string();
    let r = app
        .http
        .get(app.url("/api/seckill/result?goodsId=1"))
        .header("Cookie", cookie_pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let cases = [
        (
            json!({ "mobile": user.mobile, "password": password::client_hash("nope") }),
            401,
            500215,
        ),
        (
            json!({ "mobile": "17999999999", "password": good }),
            401,
            500215,
        ),
        (json!({ "mobile": "12345", "password": good }), 400, 500213),
        (
            json!({ "mobile": user.mobile, "password": "short" }),
            400,
            500101,
        ),
        (json!({ "mobile": user.mobile }), 400, 500101),
        (json!("not an object"), 400, 500101),
    ];
    for (body, status, want) in cases {
        let (s, b) = app.post("/api/login", "", &body).await;
        assert_eq!((s, code(&b)), (status, want), "{body}");
        assert!(b["msg"].as_str().is_some_and(|m| !m.is_empty()));
    }

    // logout ends the session
    let (s, _) = app.post("/api/logout", &token, &json!({})).await;
    assert_eq!(s, 200);
    let (s, b) = app.get("/api/seckill/result?goodsId=1", &token).await;
    assert_eq!((s, code(&b)), (401, 500210));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_slide_their_ttl() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let key = app.state.keys.session(&user.token);
    let _: () = app.redis().expire(&key, 10).await.unwrap();
    app.get("/api/seckill/result?goodsId=1", &user.token).await;
    let ttl: i64 = app.redis().ttl(&key).await.unwrap();
    assert!(ttl > 1700, "session TTL was not slid: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_reuses_a_session_it_read_until_a_logout_anywhere_or_its_bound() {
    let mut settings = test_settings();
    settings.session_cache_ms = 2_000;
    let mut app = spawn_with(settings, false).await;
    let users = app.users(2).await;
    let (b, edge_b) = app.add_edge().await;
    let b = format!("http://{b}");
    let look = "/api/seckill/result?goodsId=1";
    // edge B reads each session once and keeps it (once its subscription is up)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for u in &users {
        loop {
            assert_eq!(app.get_at(&b, look, &u.token).await.0, 200);
            if edge_b.sessions.len() == users.iter().position(|x| x.id == u.id).unwrap() + 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "edge B never cached a session"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // proof it is B's copy that answers: the key deleted by hand (no message), B still knows it
    let key = app.state.keys.session(&users[0].token);
    let _: () = app.redis().del(&key).await.unwrap();
    let cached = edge_b.metrics.sessions_cached.get();
    assert_eq!(app.get_at(&b, look, &users[0].token).await.0, 200);
    assert_eq!(
        edge_b.metrics.sessions_cached.get(),
        cached + 1,
        "counted as a cached answer"
    );
    // a logout on edge A reaches B by pub/sub at once
    let t0 = std::time::Instant::now();
    let (s, _) = app.post("/api/logout", &users[1].token, &json!({})).await;
    assert_eq!(s, 200);
    loop {
        let (s, body) = app.get_at(&b, look, &users[1].token).await;
        if s == 401 {
            assert_eq!(code(&body), 500210);
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(1_000),
            "edge B still serves a logged-out session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // the session deleted by hand is gone from B within session_cache_ms of B's read
    loop {
        let (s, _) = app.get_at(&b, look, &users[0].token).await;
        if s == 401 {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_millis(4_000),
            "edge B kept a deleted session past its bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_asked_for_again_after_a_buy_is_the_same_path_not_the_key_beside_it() {
    // after a buy the user's key holds "PATH.PRINT TOKENS TS": issue_path.lua hands back the
    // path only (and the edge hands the shopper USER-PATH)
    let app = spawn_app().await;
    let goods = app.sale(5).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
    let held: String = app
        .redis()
        .get(app.state.keys.sale(goods).user(user.id))
        .await
        .unwrap();
    let issued = flashgate::domain::HiddenPath::parse(&path).unwrap();
    let print = flashgate::domain::TokenPrint::of(&user.token);
    assert!(
        held.starts_with(&format!("{} ", issued.bound_to(print))),
        "the path bound to the token, the bucket beside it: {held}"
    );
    assert_eq!(app.path_for(&user.token, goods).await, path);
    let (s, r) = app.buy(&user.token, &path, goods).await;
    assert_eq!((s, code(&r)), (409, 500501), "the same path, a duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_code_and_changes_nothing() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let (a, b) = (&users[0], &users[1]);
    let goods = app.sale(5).await;
    let before = app.redis_state(goods).await;
    let buy_url = |path: &str| format!("/api/seckill/{path}/orders");
    let body = json!({ "goodsId": goods.get() });

    // no session
    let path = app.path_for(&a.token, goods).await;
    let (s, r) = app.post(&buy_url(&path), "", &body).await;
    assert_eq!((s, code(&r)), (401, 500210));
    let (s, r) = app.post(&buy_url(&path), "not-a-token", &body).await;
    assert_eq!((s, code(&r)), (401, 500210));
    // a token of the right shape that is not the one the path was issued to (this one has no
    // session at all): the buy reads no session, the script finds the path bound to another
    // token
    let (s, r) = app
        .post(&buy_url(&path), "ffffffffffffffffffffffffffffffff", &body)
        .await;
    assert_eq!((s, code(&r)), (403, 500503));
    // a path that is not this user's, or not one at all
    let (s, r) = app.buy(&b.token, &path, goods).await;
    assert_eq!((s, code(&r)), (403, 500503));
    let (s, r) = app.post(&buy_url("..%2F..%2Fetc"), &a.token, &body).await;
    assert_eq!((s, code(&r)), (403, 500503));
    // malformed bodies
    for bad in [
        json!({}),
        json!({ "goodsId": -3 }),
        json!({ "goodsId": "x" }),
        json!({ "goodsId": 1, "extra": 1 }),
        json!([1]),
    ] {
        let (s, r) = app.post(&buy_url(&path), &a.token, &bad).await;
        assert_eq!((s, code(&r)), (400, 500101), "{bad}");
    }
    let r = app
        .http
        .post(app.url(&buy_url(&path)))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .http
        .post(app.url(&buy_url(&path)))
        .bearer_auth(&a.token)
        .header("content-type", "application/json")
        .body(vec![b' '; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // its body is unread: the connection must not be reused
    assert_eq!(r.headers().get("connection").unwrap(), "close");
    // wrong method, unknown route
    let (s, r) = app.get(&buy_url(&path), &a.token).await;
    assert_eq!((s, code(&r)), (405, 500101));
    let (s, r) = app.get("/api/nothing-here", &a.token).await;
    assert_eq!((s, code(&r)), (404, 500404));
    // a sale that does not exist
    let (s, r) = app
        .post(&buy_url(&path), &a.token, &json!({ "goodsId": 999999 }))
        .await;
    assert_eq!((s, code(&r)), (403, 500503));
    assert_eq!(
        app.redis_state(goods).await,
        before,
        "refusals changed Redis"
    );
    // not even the per-second counts (flushed each second) for the sale that does not exist
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let stray: Vec<String> = app
        .redis()
        .keys(format!("{}sk:{{g:999999}}*", app.state.keys.namespace()))
        .await
        .unwrap();
    assert!(stray.is_empty(), "{stray:?}");

    // duplicate: the first buy queues, the second is refused
    let (s, r) = app.buy(&a.token, &path, goods).await;
    assert_eq!((s, code(&r)), (202, 0));
    let after_first = app.redis_state(goods).await;
    assert_eq!(after_first, (4, 1, 1));
    let (s, r) = app.buy(&a.token, &path, goods).await;
    assert_eq!((s, code(&r)), (409, 500501));
    // rate limited: the default bucket has a burst of 5. The edge answers a buyer's repeats
    // from its marks; cleared (as a restock message clears them), the repeats reach Redis,
    // whose bucket refuses them
    let mut limited = None;
    for _ in 0..6 {
        app.state.local.clear_all();
        let r = app
            .http
            .post(app.url(&buy_url(&path)))
            .bearer_auth(&a.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some((
                r.headers().get("retry-after").cloned(),
                r.json::<Value>().await.unwrap(),
            ));
            break;
        }
    }
    let (retry_after, r) = limited.expect("never rate limited");
    assert_eq!(code(&r), 500505);
    assert!(retry_after.is_some(), "429 without Retry-After");
    assert!(r["data"]["retryAfterMs"].as_u64().unwrap() > 0);
    assert_eq!(
        app.redis_state(goods).await,
        after_first,
        "refusals changed Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_started_and_ended_sales_are_refused() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let later = app.sale_window(5, 3600, 3600).await;
    let over = app.sale_window(5, -7200, 3600).await;
    for (goods, status) in [(later, 425), (over, 410)] {
        let (s, r) = app
            .get(&format!("/api/seckill/path?goodsId={goods}"), &user.token)
            .await;
        assert_eq!((s, code(&r)), (status, 500502), "path for {goods}");
        // even holding a path (issued by hand here), the window is checked at the buy
        let path = app.path_by_hand(goods, user).await;
        let before = app.redis_state(goods).await;
        let (s, r) = app.buy(&user.token, &path, goods).await;
        assert_eq!((s, code(&r)), (status, 500502), "buy of {goods}");
        assert_eq!(app.redis_state(goods).await, before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_answered_locally_until_a_unit_comes_back() {
    let app = spawn_app().await;
    let users = app.users(4).await;
    let goods = app.sale(1).await;
    let paths = [
        app.path_for(&users[0].token, goods).await,
        app.path_for(&users[1].token, goods).await,
        app.path_for(&users[2].token, goods).await,
    ];
    assert_eq!(app.buy(&users[0].token, &paths[0], goods).await.0, 202);
    let (s, r) = app.buy(&users[1].token, &paths[1], goods).await;
    assert_eq!((s, code(&r)), (410, 500500));
    // now the flag answers: Redis is not asked (the refusal is counted as local)
    let local_before = app.state.metrics.admissions_of("sold_out_local");
    let (s, r) = app.buy(&users[2].token, &paths[2], goods).await;
    assert_eq!((s, code(&r)), (410, 500500));
    let local_after = app.state.metrics.admissions_of("sold_out_local");
    assert_eq!(local_after, local_before + 1);
    // a path is not issued for a sold-out sale either (to a shopper who holds none yet; one
    // who holds a path gets it back, and the buy is refused as above)
    let (s, r) = app
        .get(
            &format!("/api/seckill/path?goodsId={goods}"),
            &users[3].token,
        )
        .await;
    assert_eq!((s, code(&r)), (410, 500500), "{r}");

    // the first buyer's unit comes back: the restock message clears the flag on this edge
    assert!(
        app.give_back(
            goods,
            users[0].id,
            flashgate::sales::store::GiveBack::Failed
        )
        .await
    );
    let mut queued = false;
    for _ in 0..50 {
        let (s, _) = app.buy(&users[2].token, &paths[2], goods).await;
        if s == 202 {
            queued = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(queued, "the unit given back was never sold again");
    assert_eq!(app.result(&users[0].token, goods).await, -1);
    assert_eq!(app.result(&users[2].token, goods).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_pressing_again_is_answered_by_the_edge_until_their_unit_comes_back() {
    let mut app = spawn_app().await;
    let (edge2, state2) = app.add_edge().await;
    let users = app.users(1).await;
    let u = &users[0];
    let goods = app.sale(5).await;
    let path = app.path_for(&u.token, goods).await;
    let buy2 = |path: String| {
        let (http, token, edge2) = (app.http.clone(), u.token.clone(), edge2.clone());
        async move {
            let r = http
                .post(format!("http://{edge2}/api/seckill/{path}/orders"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "goodsId": goods.get() }))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let local = |state: &flashgate::state::AppState| state.metrics.admissions_of("duplicate_local");
    let asked = |state: &flashgate::state::AppState| state.metrics.admissions_of("duplicate");
    assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);

    // the edge that admitted them answers the repeat itself: Redis is not asked (a DUPLICATE
    // from admit.lua would have spent a token from the bucket in the user's key)
    let key = app.state.keys.sale(goods).user(u.id);
    let held = |app: &crate::helpers::TestApp| {
        let (mut con, key) = (app.redis(), key.clone());
        async move { con.get::<_, String>(key).await.unwrap() }
    };
    let (before, state_before) = (held(&app).await, app.redis_state(goods).await);
    let (s, r) = app.buy(&u.token, &path, goods).await;
    assert_eq!((s, code(&r)), (409, 500501));
    assert_eq!((local(&app.state), asked(&app.state)), (1, 0));
    assert_eq!(held(&app).await, before, "a local answer writes nothing");
    assert_eq!(app.redis_state(goods).await, state_before);
    // another path is not the one they bought with: refused at the edge (it is not sealed)
    let other = format!("{}-0123456789abcdef0123456789abcdef", u.id);
    let (s, r) = app.buy(&u.token, &other, goods).await;
    assert_eq!((s, code(&r)), (403, 500503), "{r}");
    assert_eq!(local(&app.state), 1);

    // another edge asks Redis the first time, then knows them too
    let (s, r) = buy2(path.clone()).await;
    assert_eq!((s, code(&r)), (409, 500501));
    assert_eq!((local(&state2), asked(&state2)), (0, 1));
    let (s, r) = buy2(path.clone()).await;
    assert_eq!((s, code(&r)), (409, 500501));
    assert_eq!((local(&state2), asked(&state2)), (1, 1));

    // their unit comes back (the order failed): the restock message drops the marks on both
    // edges, and they can buy again on either
    assert!(
        app.give_back(goods, u.id, flashgate::sales::store::GiveBack::Failed)
            .await
    );
    let mut queued = false;
    for _ in 0..50 {
        let (s, _) = buy2(path.clone()).await;
        if s == 202 {
            queued = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(queued, "the buyer given back could not buy again");
    let (s, r) = app.buy(&u.token, &path, goods).await;
    assert_eq!(
        (s, code(&r)),
        (409, 500501),
        "bought again: a duplicate once more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_captcha_is_checked_once_and_the_path_cap_holds() {
    let mut settings = test_settings();
    settings.captcha = true;
    settings.path_factor = 1;
    let app = spawn_with(settings, false).await;
    let users = app.users(3).await;
    let goods = app.sale(2).await; // cap: 1 × 2 paths
    let u = &users[0];

    let r = app
        .http
        .get(app.url(&format!("/api/seckill/captcha?goodsId={goods}")))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let answer: i64 = app
        .redis()
        .get(app.state.keys.sale(goods).captcha(u.id))
        .await
        .unwrap();

    // a wrong answer is refused and uses the captcha up: the right one no longer works
    let path_url = |code: i64| format!("/api/seckill/path?goodsId={goods}&verifyCode={code}");
    let (s, r) = app.get(&path_url(answer + 1), &u.token).await;
    assert_eq!((s, code(&r)), (400, 500504));
    let (s, r) = app.get(&path_url(answer), &u.token).await;
    assert_eq!((s, code(&r)), (400, 500504));
    let (s, r) = app
        .get(
            &format!("/api/seckill/path?goodsId={goods}&verifyCode=abc"),
            &u.token,
        )
        .await;
    assert_eq!((s, code(&r)), (400, 500101));

    // a fresh captcha, answered right, gives a path: the user, a dash, 32 hex digits
    let mut paths = Vec::new();
    for user in &users {
        app.http
            .get(app.url(&format!("/api/seckill/captcha?goodsId={goods}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap();
        let answer: i64 = app
            .redis()
            .get(app.state.keys.sale(goods).captcha(user.id))
            .await
            .unwrap();
        paths.push(app.get(&path_url(answer), &user.token).await);
    }
    let p = paths[0].1["data"].as_str().unwrap();
    let p = flashgate::domain::HiddenPath::parse(p).expect("USER-DIGEST");
    assert_eq!(p.user(), users[0].id);
    assert_eq!(paths[1].0, 200);
    // the third shopper is over the cap of 2 paths
    assert_eq!((paths[2].0, code(&paths[2].1)), (429, 500505));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_shoppers_three_buys_each_exactly_the_stock_is_queued() {
    let batches =
        three_buys_each(flashgate::plumbing::config::Settings::default().admit_batch).await;
    assert!(
        batches.1 > batches.0,
        "no buys were coalesced: {batches:?} (calls, shoppers)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_shoppers_three_buys_each_without_coalescing() {
    let (calls, shoppers) = three_buys_each(1).await;
    assert_eq!(calls, shoppers, "admit_batch 1 sends every buy alone");
}

/// 2,000 shoppers, three buys each, 100 units, with `admit_batch` as given: exactly the stock is
/// queued, to distinct shoppers, and the stream holds them. Returns (admit.lua calls, shoppers
/// decided in them), from `flashgate_admit_batch_size`.
async fn three_buys_each(admit_batch: usize) -> (u64, u64) {
    let mut settings = test_settings();
    settings.path_factor = 30; // 2,000 shoppers for 100 units: let every one get a path
    settings.admit_batch = admit_batch;
    let app = spawn_with(settings, false).await;
    let goods = app.sale(100).await;
    let users = app.users(2000).await;
    let app = std::sync::Arc::new(app);

    let with_paths = concurrently(users, 64, |u| {
        let app = app.clone();
        async move {
            let path = app.path_for(&u.token, goods).await;
            (u, path)
        }
    })
    .await;
    let attempts: Vec<_> = with_paths
        .iter()
        .flat_map(|(u, p)| std::iter::repeat_n((u.clone(), p.clone()), 3))
        .collect();
    let answers = concurrently(attempts, 256, |(u, path)| {
        let app = app.clone();
        async move { (u.id, app.buy(&u.token, &path, goods).await) }
    })
    .await;

    let mut queued = Vec::new();
    for (user, (status, body)) in &answers {
        match status {
            202 => queued.push(*user),
            409 | 410 => assert!([500501, 500500].contains(&code(body)), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(queued.len(), 100, "queued");
    let distinct: HashSet<_> = queued.iter().collect();
    assert_eq!(distinct.len(), 100, "a user was queued twice");
    assert_eq!(app.redis_state(goods).await, (0, 100, 100));
    // the stream holds exactly the queued users
    let entries: redis::streams::StreamRangeReply = app
        .redis()
        .xrange_all(app.state.keys.sale(goods).queue())
        .await
        .unwrap();
    let in_stream: HashSet<i64> = entries
        .ids
        .iter()
        .flat_map(|e| {
            let u: String = e.get("u").unwrap();
            u.split(',')
                .map(|u| u.parse().unwrap())
                .collect::<Vec<i64>>()
        })
        .collect();
    assert_eq!(in_stream, queued.iter().map(|u| u.get()).collect());
    let text = app.state.metrics.render(&Default::default());
    let read = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap()
    };
    (
        read("flashgate_admit_batch_size_count "),
        read("flashgate_admit_batch_size_sum "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_restores_a_sale_and_needs_the_admin_token() {
    let app = spawn_app().await;
    let users = app.users(2).await;
    let goods = app.sale(1).await;
    let path = app.path_for(&users[0].token, goods).await;
    assert_eq!(app.buy(&users[0].token, &path, goods).await.0, 202);
    assert_eq!(app.redis_state(goods).await, (0, 1, 1));

    let url = format!("/api/admin/sales/{goods}/reset");
    let (s, r) = app.admin_post(&url, &users[0].token, &json!({})).await;
    assert_eq!((s, code(&r)), (403, 500403));
    let (s, r) = app
        .admin_post("/api/admin/sales/abc/reset", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!((s, code(&r)), (400, 500101));
    let (s, r) = app
        .admin_post("/api/admin/sales/424242/reset", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!((s, code(&r)), (404, 500404));
    let (s, r) = app
        .admin_post(&url, ADMIN_TOKEN, &json!({ "startsIn": 0, "lasts": 600 }))
        .await;
    assert_eq!((s, code(&r)), (200, 0), "{r}");
    assert_eq!(app.redis_state(goods).await, (1, 0, 0));
    let path = app.path_for(&users[1].token, goods).await;
    assert_eq!(app.buy(&users[1].token, &path, goods).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_flush_does_not_break_buying() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(3).await;
    let path = app.path_for(&user.token, goods).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut app.redis())
        .await
        .unwrap();
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_from_a_directory_through_the_admin_api() {
    let dir = std::env::temp_dir().join(format!("fg-lua-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = test_settings();
    settings.lua_dir = Some(dir.clone());
    let app = spawn_with(settings, false).await;
    let (s, r) = app
        .admin_post("/api/admin/scripts/reload", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!(s, 200);
    let embedded_sha = r["data"]["admit.lua"].as_str().unwrap().to_string();
    // an SRE's edit: the same script, but each queue entry also carries `tuned 1`
    let embedded = include_str!("../../lua/admit.lua");
    let tuned = embedded.replace("'t', now)", "'t', now, 'tuned', '1')");
    assert_ne!(tuned, embedded, "the edit must change the script");
    std::fs::write(dir.join("admit.lua"), &tuned).unwrap();
    let (_, r) = app
        .admin_post("/api/admin/scripts/reload", ADMIN_TOKEN, &json!({}))
        .await;
    let tuned_sha = r["data"]["admit.lua"].as_str().unwrap();
    assert_ne!(tuned_sha, embedded_sha);
    let codes = include_str!("../../lua/codes.lua");
    assert_eq!(
        tuned_sha,
        flashgate::admission::scripts::Script::new("admit.lua", codes, &tuned).sha
    );
    // the tuned script is the one buys now run: the queue entry carries its mark
    let user = &app.users(1).await[0];
    let goods = app.sale(1).await;
    let path = app.path_for(&user.token, goods).await;
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
    let queue = app.state.keys.sale(goods).queue();
    let entries: redis::streams::StreamRangeReply = app.redis().xrange_all(&queue).await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    let mark: Option<String> = entries.ids[0].get("tuned");
    assert_eq!(
        mark.as_deref(),
        Some("1"),
        "the entry was not written by the tuned script"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_can_be_followed_by_its_request_id_into_the_queue() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(2).await;
    let path = app.path_for(&user.token, goods).await;
    let r = app
        .http
        .post(app.url(&format!("/api/seckill/{path}/orders")))
        .bearer_auth(&user.token)
        .header("X-Request-Id", "lb-7f3a.42")
        .json(&json!({ "goodsId": goods.get() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a.42");
    let entries: redis::streams::StreamRangeReply = app
        .redis()
        .xrange_all(app.state.keys.sale(goods).queue())
        .await
        .unwrap();
    assert_eq!(
        entries.ids[0].get::<String>("r").as_deref(),
        Some("lb-7f3a.42")
    );

    // an id that is not sane is replaced by one of ours; every answer carries one
    let r = app
        .http
        .get(app.url("/healthz"))
        .header("X-Request-Id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let ours = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(ours, "bad id with spaces");
    assert!(!ours.is_empty());
    let again = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(again.headers()["x-request-id"].to_str().unwrap(), ours);
}

/// A shopper who hangs up while their buy waits in a coalesced batch is still decided, in full:
/// the call runs in a task of its own. Here many shoppers send and drop at once; every unit the
/// script handed out is in the stream with its buyer, and Redis stock + buyers = the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_who_hang_up_mid_batch_are_still_decided_whole() {
    let mut settings = test_settings();
    settings.path_factor = 30;
    let app = spawn_with(settings, false).await;
    let goods = app.sale(50).await;
    let users = app.users(200).await;
    let app = std::sync::Arc::new(app);
    let with_paths = concurrently(users, 64, |u| {
        let app = app.clone();
        async move {
            let path = app.path_for(&u.token, goods).await;
            (u, path)
        }
    })
    .await;
    // each request is abandoned a moment after it is sent
    let hasty = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(2))
        .build()
        .unwrap();
    concurrently(with_paths.clone(), 200, |(u, path)| {
        let (app, hasty) = (app.clone(), hasty.clone());
        async move {
            let _ = hasty
                .post(app.url(&format!("/api/seckill/{path}/orders")))
                .bearer_auth(&u.token)
                .json(&json!({ "goodsId": goods.get() }))
                .send()
                .await;
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (stock, buyers, queued) = app.redis_state(goods).await;
    assert_eq!(
        stock + buyers,
        50,
        "a unit or a buyer mark was left half done"
    );
    assert_eq!(buyers, queued, "every buyer's entry is in the queue");
    // and those who asked again get a real answer: admitted earlier (409) or not (a decision)
    for (u, path) in with_paths.iter().take(20) {
        let (s, _) = app.buy(&u.token, path, goods).await;
        assert!([202, 409, 410].contains(&s), "{s}");
    }
}
