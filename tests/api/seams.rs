//! The seams a shop trusts (issue #41), on the real services: a grant is signed only from the
//! order of record (a forged results message, from this db or another, signs nothing; two
//! deployments on one Redis server never hear each other; redeem checks the order); an order is
//! paid or closed by the shop's server, never by a shopper's shop token; RabbitMQ's exchange
//! exists from the worker's start and an event no queue takes is not delivered; an edge that
//! has none of the shop's keys is not ready.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, SHOP_TOKEN, TestApp, spawn_with, test_settings};
use crate::push::Stream;
use crate::shop_identity::{JwksServer, ShopKey, shop_settings};
use flashgate::cli::seed::TestUser;
use flashgate::domain::GoodsId;
use flashgate::identity::grant::{GrantClaims, SaleFacts};
use flashgate::plumbing::config::{AuthMode, Settings};

pub(crate) const GRANT_KEY: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(0)
}

fn with_grants() -> Settings {
    Settings {
        grant_key: GRANT_KEY.into(),
        ..test_settings()
    }
}

/// The test's Redis on database `db`.
async fn redis_on(db: u8) -> redis::aio::MultiplexedConnection {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let url = format!("{}/{db}", url.trim_end_matches('/'));
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn publish(db: u8, channel: &str, message: String) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async(&mut redis_on(db).await)
        .await
        .unwrap();
}

/// `token` buys one unit of `goods`; the order id once written.
async fn bought(app: &TestApp, token: &str, goods: GoodsId) -> i64 {
    let path = app.path_for(token, goods).await;
    let (status, body) = app.buy(token, &path, goods).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.result(token, goods).await;
        if r != 0 {
            assert!(r > 0, "the buy failed");
            return r;
        }
        assert!(Instant::now() < deadline, "no order was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn claims(app: &TestApp, grant: &Value) -> GrantClaims {
    let grants = app.state.identity.grants.as_ref().unwrap();
    grants.verify(grant.as_str().expect("a grant")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_results_message_from_this_db_or_another_pushes_no_grant() {
    let app = spawn_with(with_grants(), true).await;
    let goods = app.sale(3).await;
    let users = app.users(2).await;
    let (shopper, other) = (&users[0], &users[1]);
    let mut stream = Stream::open(&app, &app.address, &shopper.token, goods).await;
    let channel = app.state.keys.results_channel();
    let me = shopper.id.get();
    // an order that does not exist, announced on the deployment's own db and from db 1
    // (pub/sub ignores db numbers)
    for db in [0, 1] {
        publish(db, &channel, format!("{goods} {me}=777777")).await;
    }
    assert_eq!(
        stream.until("result", Duration::from_secs(2)).await,
        None,
        "a forged result was pushed"
    );
    // another shopper's real order, announced as this shopper's
    let theirs = bought(&app, &other.token, goods).await;
    publish(0, &channel, format!("{goods} {me}={theirs}")).await;
    assert_eq!(stream.until("result", Duration::from_secs(2)).await, None);
    // the shopper's own order is pushed, and a message lying about its number pushes the
    // order of record
    let mine = bought(&app, &shopper.token, goods).await;
    let event = stream
        .until("result", Duration::from_secs(10))
        .await
        .expect("the shopper's own result");
    assert_eq!(event["result"], mine);
    let c = claims(&app, &event["grant"]);
    assert_eq!((c.order, c.sub.as_str()), (mine, me.to_string().as_str()));
    publish(1, &channel, format!("{goods} {me}=777777")).await;
    publish(0, &channel, format!("{goods} {me}={theirs}")).await;
    while let Some(event) = stream.until("result", Duration::from_secs(2)).await {
        assert_eq!(event["result"], mine, "{event}");
        assert_eq!(claims(&app, &event["grant"]).order, mine);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_on_dbs_1_and_2_of_one_redis_sell_side_by_side_unheard() {
    // one namespace, two dbs: the same keys, sale ids and user ids in each
    let ns = format!("t{}:", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let on = |db: u8| {
        let base = test_settings();
        let url = format!("{}/{db}", base.redis_url.trim_end_matches('/'));
        Settings {
            redis_url: url,
            namespace: ns.clone(),
            grant_key: GRANT_KEY.into(),
            ..base
        }
    };
    let a = spawn_with(on(1), true).await;
    let b = spawn_with(on(2), true).await;
    assert_ne!(
        a.state.keys.results_channel(),
        b.state.keys.results_channel()
    );
    assert_ne!(a.state.keys.lua_libraries(), b.state.keys.lua_libraries());
    let (ga, gb) = (a.sale(3).await, b.sale(3).await);
    let (ua, ub): (Vec<TestUser>, Vec<TestUser>) = (a.users(3).await, b.users(3).await);
    assert_eq!(ga, gb, "the same sale id in both");
    assert_eq!(ua[0].id, ub[0].id, "the same user ids in both");
    let mut streams = Vec::new();
    for u in &ub {
        streams.push(Stream::open(&b, &b.address, &u.token, gb).await);
    }
    // a sells out; b's shoppers hear nothing of it
    for u in &ua {
        bought(&a, &u.token, ga).await;
    }
    for s in &mut streams {
        assert_eq!(s.until("result", Duration::from_millis(1500)).await, None);
    }
    // b sells: each of its shoppers hears their own order, granted
    for (u, s) in ub.iter().zip(&mut streams) {
        let order = bought(&b, &u.token, gb).await;
        let event = s.until("result", Duration::from_secs(10)).await.unwrap();
        assert_eq!(event["result"], order);
        assert_eq!(claims(&b, &event["grant"]).order, order);
    }
    a.assert_invariants(ga, 3).await;
    b.assert_invariants(gb, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_refuses_a_well_signed_grant_for_no_order_anothers_or_a_closed_one() {
    let app = spawn_with(with_grants(), true).await;
    let goods = app.sale(3).await;
    let users = app.users(2).await;
    let (mine, theirs) = (
        bought(&app, &users[0].token, goods).await,
        bought(&app, &users[1].token, goods).await,
    );
    let grants = app.state.identity.grants.clone().unwrap();
    let facts = SaleFacts {
        price_minor: 100,
        product: None,
        draw_sale: false,
        draw: None,
    };
    let now = chrono::Utc::now().timestamp();
    let me = users[0].id.get().to_string();
    let redeem = |grant: String| {
        let app = &app;
        async move {
            app.admin_post("/api/grants/redeem", SHOP_TOKEN, &json!({ "grant": grant }))
                .await
        }
    };
    for (grant, why) in [
        (
            grants.sign(&me, 777777, goods.get(), &facts, now),
            "no such order",
        ),
        (
            grants.sign(&me, theirs, goods.get(), &facts, now),
            "another's order",
        ),
        (
            grants.sign(&me, mine, goods.get() + 1, &facts, now),
            "another sale",
        ),
        (
            grants.sign("someone", mine, goods.get(), &facts, now),
            "another sub",
        ),
    ] {
        let (status, body) = redeem(grant).await;
        assert_eq!((status, code(&body)), (409, 500245), "{why}: {body}");
    }
    // closed by the shop: refused as closed
    let (status, body) = app
        .admin_post(
            &format!("/api/orders/{theirs}/close"),
            SHOP_TOKEN,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let theirs_sub = users[1].id.get().to_string();
    let (status, body) = redeem(grants.sign(&theirs_sub, theirs, goods.get(), &facts, now)).await;
    assert_eq!((status, code(&body)), (409, 500246), "{body}");
    // the real one, once; nothing refused above spent it
    let (status, body) = redeem(grants.sign(&me, mine, goods.get(), &facts, now)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["order"], mine);
    assert_eq!(body["data"]["currency"], "CNY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_jwt_mode_a_shoppers_token_reads_its_order_and_only_the_shops_server_pays_or_closes() {
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_with(shop_settings(&jwks.url, AuthMode::Jwt), true).await;
    let goods = app.sale(3).await;
    let (alice, bob) = (key.sign("alice", json!({})), key.sign("bob", json!({})));
    let (paid, closed) = (
        bought(&app, &alice, goods).await,
        bought(&app, &bob, goods).await,
    );
    let admin = app.admin_address.clone().unwrap();

    // the shopper: reads, never pays nor closes
    let (status, body) = app
        .post(&format!("/api/orders/{paid}/pay"), &alice, &json!({}))
        .await;
    assert_eq!((status, code(&body)), (403, 500261), "{body}");
    let (status, _) = app
        .post(&format!("/api/orders/{paid}/close"), &alice, &json!({}))
        .await;
    assert_eq!(status, 404, "no close on the public listener");
    for token in [alice.as_str(), ADMIN_TOKEN, "wrong"] {
        for what in ["pay", "close"] {
            let (status, body) = app
                .post_at(
                    &admin,
                    &format!("/api/orders/{paid}/{what}"),
                    token,
                    &json!({}),
                )
                .await;
            assert_eq!(status, 403, "{what} with {token}: {body}");
        }
    }
    let (status, body) = app.get(&format!("/api/orders/{paid}"), &alice).await;
    assert_eq!((status, body["data"]["status"].as_i64()), (200, Some(0)));
    // and flashgate's own login is not here
    let (status, body) = app
        .post(
            "/api/login",
            "",
            &json!({"mobile": "13800000000", "password": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, 500260), "{body}");

    // the shop's server: pays, twice is once
    let pay = |id: i64| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.post_at(
                &admin,
                &format!("/api/orders/{id}/pay"),
                SHOP_TOKEN,
                &json!({}),
            )
            .await
        }
    };
    let close = |id: i64| {
        let (app, admin) = (&app, admin.clone());
        async move {
            app.post_at(
                &admin,
                &format!("/api/orders/{id}/close"),
                SHOP_TOKEN,
                &json!({}),
            )
            .await
        }
    };
    let (status, first) = pay(paid).await;
    assert_eq!(
        (status, first["data"]["status"].as_i64()),
        (200, Some(1)),
        "{first}"
    );
    let (status, again) = pay(paid).await;
    assert_eq!(status, 200);
    assert_eq!(again["data"], first["data"], "paying twice is paying once");
    // closes, twice is once; the unit is for sale again
    let (status, body) = close(closed).await;
    assert_eq!(
        (status, body["data"]["status"].as_i64()),
        (200, Some(2)),
        "{body}"
    );
    assert_eq!(close(closed).await.1["data"], body["data"]);
    // and neither undoes the other
    let (status, body) = pay(closed).await;
    assert_eq!((status, code(&body)), (409, 500506), "{body}");
    let (status, body) = close(paid).await;
    assert_eq!((status, code(&body)), (409, 500262), "{body}");
    let (status, _) = pay(999_999).await;
    assert_eq!(status, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i8>("SELECT stock_returned FROM order_info WHERE id = ?")
        .bind(closed)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "the closed order's unit never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.assert_invariants(goods, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_key_set_of_the_shops_at_start_a_jwt_edge_is_not_ready_and_says_why() {
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_down(true);
    let app = spawn_with(
        Settings {
            jwt_jwks_refetch_s: 1,
            ..shop_settings(&jwks.url, AuthMode::Jwt)
        },
        false,
    )
    .await;
    // (the reason on the admin listener: the public one says only ready or not)
    let admin = app.admin_address.clone().unwrap();
    let (status, body) = app.get_at(&admin, "/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    let why = body["data"]["shopKeys"].as_str().unwrap_or_default();
    assert!(
        why.contains("503") && why.contains("FLASHGATE_JWT_JWKS_URL"),
        "{body}"
    );
    assert_eq!(
        app.get("/readyz", "").await.0,
        503,
        "the public listener too"
    );
    // and a shopper's token is not refused as if it named a key the shop does not have: it
    // cannot be judged yet (503, try again), not "log in again" (401)
    let token = key.sign("alice", json!({}));
    let (status, body) = app.get("/api/orders/1", &token).await;
    assert_eq!((status, code(&body)), (503, 500100), "{body}");
    // a key set answering garbage (nothing usable) is no better
    jwks.serve(&[]);
    jwks.set_down(false);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body) = app.get_at(&admin, "/readyz", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["data"]["shopKeys"]
            .as_str()
            .unwrap_or_default()
            .contains("no key"),
        "{body}"
    );
    // the shop's keys come: ready, without a restart
    jwks.serve(&[&key]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.get_at(&admin, "/readyz", "").await;
        if status == 200 {
            assert!(body["data"]["shopKeys"].is_null(), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A RabbitMQ channel of the test's own (the shop's side).
async fn amqp(settings: &Settings) -> (lapin::Connection, lapin::Channel) {
    let conn =
        lapin::Connection::connect(&settings.amqp_url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Whether `exchange` exists (a passive declare, on a channel of its own: a refusal closes it).
async fn exchange_exists(conn: &lapin::Connection, exchange: &str) -> bool {
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.into(),
        lapin::ExchangeKind::Topic,
        lapin::options::ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .is_ok()
}

/// A queue of the shop's, bound to every order event of `exchange`, and its consumer.
async fn bind_queue(ch: &lapin::Channel, exchange: &str) -> lapin::Consumer {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        exchange.into(),
        "flashgate.order.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_consume(
        q.name().clone(),
        "shop".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
}

fn exchange_name() -> String {
    format!(
        "fgtest.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_is_there_from_the_workers_start_and_a_queue_bound_before_the_sale_gets_every_event()
 {
    use futures_util::StreamExt;
    let exchange = exchange_name();
    let settings = Settings {
        events_exchange: exchange.clone(),
        ..test_settings()
    };
    let (conn, ch) = amqp(&settings).await;
    let app = spawn_with(settings, true).await;
    // the integrator binds a queue before the sale: the worker declared the exchange at start
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exchange_exists(&conn, &exchange).await {
        assert!(
            Instant::now() < deadline,
            "the worker never declared {exchange}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut consumer = bind_queue(&ch, &exchange).await;
    let goods = app.sale(3).await;
    let users = app.users(3).await;
    let mut orders = Vec::new();
    for u in &users {
        orders.push(bought(&app, &u.token, goods).await);
    }
    let (status, _) = app
        .post(
            &format!("/api/orders/{}/pay", orders[0]),
            &users[0].token,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 4 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("every event within 20 s")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_slice(&d.data).unwrap();
        assert_eq!(event["data"]["currency"], "CNY");
        seen.insert(event["id"].as_str().unwrap().to_string());
    }
    let want: std::collections::BTreeSet<String> = orders
        .iter()
        .map(|o| format!("created-{o}"))
        .chain([format!("paid-{}", orders[0])])
        .collect();
    assert_eq!(seen, want);
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_queue_takes_is_not_delivered_shows_as_failing_and_goes_once_one_is_bound() {
    use futures_util::StreamExt;
    let exchange = exchange_name();
    let settings = Settings {
        events_exchange: exchange.clone(),
        ..test_settings()
    };
    let (_conn, ch) = amqp(&settings).await;
    let app = spawn_with(settings, true).await;
    let sink = format!("rabbitmq-{exchange}");
    let goods = app.sale(1).await;
    let user = &app.users(1).await[0];
    let order = bought(&app, &user.token, goods).await;
    // no queue is bound: the broker returns it; it is failing, not delivered
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
        let s = status.into_iter().find(|s| s.sink == sink).unwrap();
        if s.failing > 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "never shown as failing: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(state.backlog, 1, "{state:?}");
    let why = state.last_error.unwrap_or_default();
    assert!(
        why.contains("unroutable") && why.contains("bind a queue"),
        "{why}"
    );
    assert_eq!(app.state.metrics.events_delivered_to(&sink), 0);
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("flashgate_events_retried_total") && l.contains(&sink)),
        "no retries counted in /metrics"
    );
    // the console's sale view flags it
    let (_, view) = app
        .admin("GET", &format!("/api/admin/sales/{goods}"), None)
        .await;
    assert!(
        view["data"]["eventSinks"][0]["failing"]
            .as_i64()
            .unwrap_or(0)
            >= 1,
        "{view}"
    );
    // bound now: the retry reaches it
    let mut consumer = bind_queue(&ch, &exchange).await;
    let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the event, retried, within 30 s")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(event["id"], format!("created-{order}"));
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_exchange_the_broker_refuses_does_not_start() {
    let exchange = exchange_name();
    let settings = Settings {
        events_exchange: exchange.clone(),
        ..test_settings()
    };
    // the name is taken by an exchange of another kind: RabbitMQ refuses the topic declare
    let (_conn, ch) = amqp(&settings).await;
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Direct,
        lapin::options::ExchangeDeclareOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap();
    let app = spawn_with(settings, false).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        flashgate::worker::run(app.state.clone(), rx),
    )
    .await
    .expect("the worker stopped at once");
    let err = format!("{:#}", ended.expect_err("the worker started"));
    assert!(err.contains("FLASHGATE_EVENTS_EXCHANGE"), "{err}");
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[test]
fn start_up_refusals_name_the_variables_an_operator_sets() {
    let redeem = ("FLASHGATE_GRANT_REDEEM_TOKEN", SHOP_TOKEN);
    let currency = ("FLASHGATE_CURRENCY", "CNY");
    for (env, says) in [
        (vec![], "FLASHGATE_GRANT_REDEEM_TOKEN"),
        (vec![redeem], "FLASHGATE_CURRENCY"),
        (
            vec![redeem, currency, ("FLASHGATE_ADMIN_TOKEN", SHOP_TOKEN)],
            "admin token",
        ),
        (
            vec![
                redeem,
                currency,
                ("FLASHGATE_CHECKOUT_URL", "https://shop.test/c"),
            ],
            "FLASHGATE_CHECKOUT_URL",
        ),
        (
            vec![redeem, currency, ("FLASHGATE_GRANT_TTL_S", "500")],
            "FLASHGATE_GRANT_TTL_S",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("serve")
            .env("FLASHGATE_GRANT_KEY", GRANT_KEY)
            .envs(env.iter().copied())
            .env("FLASHGATE_DATABASE_URL", "mysql://root@127.0.0.1:1/none")
            .env("FLASHGATE_LOG", "error")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} started");
        assert!(err.contains(says), "{env:?}: {err}");
    }
}

/// A server answering every request with `body` (JSON), counting them: flashgate's key set as a
/// checkout would fetch it, where the test can see how often it is asked.
async fn counting_server(body: String) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut con, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = con.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = con.write_all(answer.as_bytes()).await;
            let _ = con.shutdown().await;
        }
    });
    (url, hits, task)
}

/// The first block of `lang` in docs/integration.md, as printed.
fn documented(lang: &str) -> String {
    documented_nth(lang, 1)
}

/// The `n`th block (from 1) of `lang` in docs/integration.md, as printed.
fn documented_nth(lang: &str, n: usize) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/integration.md"))
        .unwrap();
    doc.split(&format!("```{lang}\n"))
        .nth(n)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("docs/integration.md has no {lang} block"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_verifiers_take_a_real_grant_with_the_checkouts_clock_5_s_off_and_fetch_the_keys_once()
 {
    let app = spawn_with(with_grants(), true).await;
    let goods = app.sale(2).await;
    let users = app.users(2).await;
    let mut grants = Vec::new();
    for u in &users {
        bought(&app, &u.token, goods).await;
        let (_, body) = app
            .get(&format!("/api/seckill/result?goodsId={goods}"), &u.token)
            .await;
        grants.push(body["grant"].as_str().expect("a grant").to_string());
    }
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (url, hits, _server) = counting_server(jwks).await;
    // each verifier: every grant with the checkout's clock 5 s behind and 5 s ahead (taken),
    // then 10 s behind (not yet valid); it prints one line per check
    let python = format!(
        "{}\nimport sys, time\nfor g in sys.argv[2:]:\n    for off in (-5, 5, -10):\n        \
         try:\n            c = verify_grant(g, sys.argv[1], now=time.time() + off)\n            \
         print('ok', c['order'], c['currency'])\n        except Exception as e:\n            \
         print('refused', e)\n",
        documented("python")
    );
    let node = format!(
        "{}\n(async () => {{\n  const [url, ...grants] = process.argv.slice(1);\n  for (const g of \
         grants) for (const off of [-5, 5, -10]) {{\n    try {{\n      const c = verifyGrant(g, \
         await keysFor(g, url), {{ audience: \"shop\", issuer: \"flashgate\" }}, Date.now() / 1000 \
         + off);\n      console.log(\"ok\", c.order, c.currency);\n    }} catch (e) {{ \
         console.log(\"refused\", e.message); }}\n  }}\n}})();\n",
        documented("js")
    );
    let has_crypto = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    let mut runs = vec![("node", vec!["-e".to_string(), node, url.clone()])];
    if has_crypto {
        runs.push(("python3", vec!["-c".to_string(), python, url.clone()]));
    } else {
        eprintln!("python3 has no `cryptography`: the Python verifier is not run here");
    }
    for (program, mut args) in runs {
        args.extend(grants.iter().cloned());
        let before = hits.load(Ordering::SeqCst);
        let out = tokio::process::Command::new(program)
            .args(&args)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{program}: {text}");
        for chunk in lines.chunks(3) {
            assert!(
                chunk[0].starts_with("ok ") && chunk[0].ends_with(" CNY"),
                "{program}: {text}"
            );
            assert_eq!(chunk[0], chunk[1], "{program}: 5 s ahead: {text}");
            assert!(
                chunk[2].contains("not yet valid"),
                "{program}: 10 s behind: {text}"
            );
        }
        assert_eq!(
            hits.load(Ordering::SeqCst) - before,
            1,
            "{program} fetched the keys once"
        );
    }
}

/// A command of docs/integration.md run as printed (bash), against this app's admin listener
/// (the doc's `127.0.0.1:9180`), with `env`; its answer.
async fn run_documented(app: &TestApp, command: &str, env: &[(&str, &str)]) -> Value {
    let admin = app.admin_address.clone().unwrap();
    let command = command.replace("http://127.0.0.1:9180", &admin);
    let out = tokio::process::Command::new("bash")
        .args(["-c", &command])
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The walk of docs/integration.md, as a shop's developer takes it: the shop's identity provider
/// (a JWKS), its checkout (the documented verifier, the documented redeem and pay commands), its
/// webhook receiver and its RabbitMQ queue bound before the sale; one sale bought end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integration_walk_as_docs_integration_md_tells_it() {
    use crate::events::{Answer, Receiver, SECRET};
    use futures_util::StreamExt;
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let jwks = JwksServer::start(&[&key]).await;
    let receiver = Receiver::start(Answer::Ok, Duration::ZERO).await;
    let exchange = exchange_name();
    let settings = Settings {
        webhook_url: receiver.url.clone(),
        webhook_secret: SECRET.into(),
        events_exchange: exchange.clone(),
        ..shop_settings(&jwks.url, AuthMode::Jwt)
    };
    let (conn, ch) = amqp(&settings).await;
    let app = spawn_with(settings, true).await;
    // orders out: a queue bound before the sale
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exchange_exists(&conn, &exchange).await {
        assert!(Instant::now() < deadline, "no exchange to bind to");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut queue = bind_queue(&ch, &exchange).await;
    let goods = app
        .create_sale(&{
            let mut s = flashgate::cli::seed::NewSale::new(2, -1, 3600);
            s.external_ref = Some("SKU-PHONE-1".into());
            s
        })
        .await;

    // identity in: the shop's token; the grant out: beside the result, with the checkout
    let token = key.sign("customer-42", json!({}));
    let order = bought(&app, &token, goods).await;
    let (_, result) = app
        .get(&format!("/api/seckill/result?goodsId={goods}"), &token)
        .await;
    let grant = result["grant"].as_str().expect("a grant").to_string();
    let checkout = result["checkout"].as_str().unwrap();
    assert!(
        checkout.starts_with("https://shop.test/checkout?grant="),
        "{checkout}"
    );

    // the checkout verifies it with the documented Node.js verifier...
    let node = format!(
        "{}\n(async () => {{\n  const [url, g] = process.argv.slice(1);\n  const c = verifyGrant(g, \
         await keysFor(g, url), {{ audience: \"shop\", issuer: \"flashgate\" }});\n  \
         console.log(JSON.stringify(c));\n}})();\n",
        documented("js")
    );
    let out = tokio::process::Command::new("node")
        .args(["-e", &node, &app.url("/.well-known/jwks.json"), &grant])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &claims["sub"],
            &claims["order"],
            &claims["product"],
            &claims["currency"]
        ),
        (
            &json!("customer-42"),
            &json!(order),
            &json!("SKU-PHONE-1"),
            &json!("CNY")
        )
    );
    // ...and redeems it with the documented command: once
    let redeem = documented_nth("sh", 1);
    let env = [
        ("FLASHGATE_GRANT_REDEEM_TOKEN", SHOP_TOKEN),
        ("GRANT", grant.as_str()),
    ];
    let first = run_documented(&app, &redeem, &env).await;
    assert_eq!(
        (code(&first), &first["data"]["order"]),
        (0, &json!(order)),
        "{first}"
    );
    let again = run_documented(&app, &redeem, &env).await;
    assert_eq!(code(&again), 500244, "{again}");

    // the shop took the money: its server says so, with the documented command
    let pay = documented_nth("sh", 2)
        .split("\n# or")
        .next()
        .unwrap()
        .replace("1048577", &order.to_string());
    let paid = run_documented(&app, &pay, &env).await;
    assert_eq!(paid["data"]["status"], 1, "{paid}");

    // orders out: the receiver (signatures checked) and the queue get created and paid
    receiver.wait_for(2, Duration::from_secs(20)).await;
    let delivered = receiver.delivered();
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    for id in [format!("created-{order}"), format!("paid-{order}")] {
        let event = &delivered[&id];
        assert_eq!(event["data"]["currency"], "CNY", "{event}");
    }
    let mut queued = std::collections::BTreeSet::new();
    while queued.len() < 2 {
        let d = tokio::time::timeout(Duration::from_secs(20), queue.next())
            .await
            .expect("both events on the queue")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_slice(&d.data).unwrap();
        queued.insert(event["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        queued,
        [format!("created-{order}"), format!("paid-{order}")].into()
    );
    app.assert_invariants(goods, 2).await;
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_queue_takes_past_the_horizon_is_parked_and_replayed_once_one_is_bound() {
    use futures_util::StreamExt;
    let exchange = exchange_name();
    let settings = Settings {
        events_exchange: exchange.clone(),
        events_retry_horizon_s: 1,
        ..test_settings()
    };
    let (_conn, ch) = amqp(&settings).await;
    let app = spawn_with(settings, true).await;
    let sink = format!("rabbitmq-{exchange}");
    let goods = app.sale(1).await;
    let user = &app.users(1).await[0];
    let order = bought(&app, &user.token, goods).await;
    // retried, then parked: `flashgate events status` says so (and exits 1)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, _) = app.cli(&["events", "status"]);
        if code == Some(1) && out.contains("\"parked\": 1") {
            assert!(out.contains("unroutable"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "never parked: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(app.state.metrics.events_delivered_to(&sink), 0);
    // bound now, and replayed: it arrives
    let mut consumer = bind_queue(&ch, &exchange).await;
    let (code, _, err) = app.cli(&["events", "replay", "--parked", "--sink", &sink]);
    assert_eq!(code, Some(0), "{err}");
    let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("the parked event, replayed")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(event["id"], format!("created-{order}"));
    let _ = ch
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
}
