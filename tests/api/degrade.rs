//! Degrading instead of failing: Redis unreachable (cut through a proxy, for this test's edge
//! only) gives 503s within a bounded time, static pages and /healthz keep answering, /readyz says
//! why, nothing admitted before is lost, and buying resumes by itself when Redis is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::{concurrently, spawn_with, test_settings};
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_gives_fast_503s_and_service_resumes_when_it_returns() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut settings = test_settings();
    settings.redis_url = format!("redis://127.0.0.1:{}/", proxy.port);
    let app = Arc::new(spawn_with(settings, false).await);
    let goods = app.sale(10).await;
    let users = app.users(30).await;
    let early = app.path_for(&users[0].token, goods).await;
    assert_eq!(app.buy(&users[0].token, &early, goods).await.0, 202);
    let paths = concurrently(users[1..].to_vec(), 8, |u| {
        let app = app.clone();
        async move { (u.clone(), app.path_for(&u.token, goods).await) }
    })
    .await;

    proxy.cut().await;
    let answers = concurrently(paths.clone(), 29, |(u, p)| {
        let app = app.clone();
        async move {
            let started = Instant::now();
            let (status, body) = app.buy(&u.token, &p, goods).await;
            (status, body, started.elapsed())
        }
    })
    .await;
    for (status, body, took) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(body["code"], 500100);
        assert!(*took < Duration::from_secs(2), "a 503 took {took:?}");
    }
    assert!(
        app.state.redis_breaker.is_open(),
        "the breaker did not open"
    );
    // what does not need Redis still answers
    assert_eq!(app.get("/healthz", "").await.0, 200);
    assert_eq!(
        app.http
            .get(app.url("/login.html"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (status, body) = app.ops_get("/readyz").await;
    assert_eq!(status, 503);
    assert_ne!(body["data"]["redis"], "ok");
    assert_eq!(body["data"]["mysql"], "ok");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (u, p) = &paths[0];
    loop {
        let (status, body) = app.buy(&u.token, p, goods).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "service never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the buy admitted before the outage is still queued, next to the one after it
    assert_eq!(app.redis_state(goods).await, (8, 2, 2));
    assert_eq!(app.get("/readyz", "").await.0, 200);
}

/// The breaker counts Redis's own outcomes, not answers that never touched Redis: bad requests
/// (400) between failing buys must not reset its count, or an attacker's junk would keep a dead
/// Redis's breaker shut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_never_reach_redis_do_not_keep_the_breaker_closed() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut settings = test_settings();
    settings.redis_url = format!("redis://127.0.0.1:{}/", proxy.port);
    let app = spawn_with(settings, false).await;
    let goods = app.sale(10).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;

    proxy.cut().await;
    for round in 0..flashgate::plumbing::breaker::TRIP_AFTER {
        assert!(
            !app.state.redis_breaker.is_open(),
            "open after {round} failures"
        );
        let (status, body) = app.buy(&user.token, &path, goods).await;
        assert_eq!(status, 503, "{body}");
        // a malformed hidden path: refused (403) before any Redis call
        let (status, body) = app.buy(&user.token, "not-a-path", goods).await;
        assert!(
            status == 403 || (status == 503 && app.state.redis_breaker.is_open()),
            "{status} {body}"
        );
    }
    assert!(
        app.state.redis_breaker.is_open(),
        "bad requests between the failures kept the breaker closed"
    );
    proxy.restore();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_order_closed_while_redis_is_away_gets_its_unit_back_once_it_returns() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let mut settings = test_settings();
    settings.redis_url = format!("redis://127.0.0.1:{}/", proxy.port);
    settings.unpaid_timeout_secs = 3;
    let app = spawn_with(settings, true).await;
    let goods = app.sale(1).await;
    let users = app.users(1).await;
    let u = &users[0];
    let path = app.path_for(&u.token, goods).await;
    assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);
    app.drained(goods, Duration::from_secs(20)).await;
    let order = app.result(&u.token, goods).await;
    assert!(order > 0);

    proxy.cut().await; // the worker's closer closes the order in MySQL but cannot reach Redis
    let row = |order: i64| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_as::<_, (i8, i8)>(
                "SELECT status, stock_returned FROM order_info WHERE id = ?",
            )
            .bind(order)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while row(order).await.0 != 2 {
        assert!(Instant::now() < deadline, "the order was never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // several closer passes
    assert_eq!(
        row(order).await,
        (2, 0),
        "noted as given back while Redis could not take it"
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while row(order).await.1 != 1 {
        assert!(Instant::now() < deadline, "the unit never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // more passes give nothing back again
    let (stock, buyers, _) = app.redis_state(goods).await;
    assert_eq!((stock, buyers), (1, 0), "the unit is back, once");
    let closed: i64 = redis::cmd("HGET")
        .arg(app.state.keys.sale(goods).meta())
        .arg("closed")
        .query_async(&mut app.redis())
        .await
        .unwrap();
    assert_eq!(closed, 1);
    assert_eq!(app.mysql_stock(goods).await, 1);
}
