//! A buy is one Redis round trip on whichever edge it lands: the hidden path is bound to the
//! token that asked for it (`HiddenPath::bound_to`), so the edge that takes the buy reads no
//! session; a logout stops buys on every edge through the recent logouts
//! (`accounts::logouts`). These run on one Redis and, in `scripts/test`, on the cluster.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{Monitor, TestApp, spawn_app};
use flashgate::domain::GoodsId;
use flashgate::state::AppState;

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(0)
}

async fn buy_at(app: &TestApp, edge: &str, token: &str, path: &str, goods: GoodsId) -> (u16, i64) {
    let (s, r) = app
        .post_at(
            &format!("http://{edge}"),
            &format!("/api/seckill/{path}/orders"),
            token,
            &json!({ "goodsId": goods.get() }),
        )
        .await;
    (s, code(&r))
}

/// Waits until `state`'s edge is subscribed and trusts its list of logouts.
async fn subscribed(state: &AppState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.logouts.trusted() {
        assert!(Instant::now() < deadline, "the edge never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn edge_of(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

/// An app and a second edge on the same data, both subscribed to the logouts.
async fn two_edges() -> (TestApp, String, AppState) {
    let mut app = spawn_app().await;
    let (b, edge_b) = app.add_edge().await;
    subscribed(&app.state).await;
    subscribed(&edge_b).await;
    (app, b, edge_b)
}

/// Waits until `monitor` has seen a command naming `key`.
async fn seen(monitor: &Monitor, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !monitor.lines().iter().any(|l| l.contains(key)) {
        assert!(Instant::now() < deadline, "MONITOR never saw {key}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_on_an_edge_that_never_saw_the_session_reads_none_and_sends_one_command() {
    let mut app = spawn_app().await;
    let (b, edge_b) = app.add_edge().await;
    subscribed(&edge_b).await;
    let users = app.users(2).await;
    let goods = app.sale(5).await;
    // edge B learns the sale's shape with a first buy (once per sale and SHAPE_TTL, not per
    // shopper); each path comes from edge A
    let first = app.path_for(&users[0].token, goods).await;
    assert_eq!(
        buy_at(&app, &b, &users[0].token, &first, goods).await,
        (202, 0)
    );
    let path = app.path_for(&users[1].token, goods).await;

    let ns = app.state.settings.namespace.clone();
    let monitor = Monitor::start(&app.state.settings.redis_url, &ns).await;
    let read_before = (
        edge_b.metrics.sessions_read.get(),
        edge_b.metrics.sessions_cached.get(),
    );
    assert_eq!(
        buy_at(&app, &b, &users[1].token, &path, goods).await,
        (202, 0)
    );
    let user_key = app.state.keys.sale(goods).user(users[1].id);
    seen(&monitor, &user_key).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = monitor.lines();
    let sessions: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("{ns}sess:")))
        .collect();
    assert!(
        sessions.is_empty(),
        "a session read for the buy: {sessions:?}"
    );
    let calls: Vec<&String> = lines.iter().filter(|l| l.contains(&user_key)).collect();
    assert_eq!(calls.len(), 1, "one command for the buy: {calls:?}");
    assert!(
        calls[0].contains("\"EVALSHA\"") || calls[0].contains("\"FCALL\""),
        "the admission call: {}",
        calls[0]
    );
    assert_eq!(
        (
            edge_b.metrics.sessions_read.get(),
            edge_b.metrics.sessions_cached.get()
        ),
        read_before,
        "edge B looked no session up"
    );
    assert_eq!(edge_b.metrics.buy_sessions_read.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_stops_buys_on_every_edge_and_on_one_started_after_it() {
    let (mut app, b, _edge_b) = two_edges().await;
    let users = app.users(2).await;
    let goods = app.sale(5).await;
    let path = app.path_for(&users[0].token, goods).await;
    let before = app.redis_state(goods).await;

    let (s, _) = app.post("/api/logout", &users[0].token, &json!({})).await;
    assert_eq!(s, 200);
    let a = edge_of(&app);
    // the edge that logged them out knows at once
    assert_eq!(
        buy_at(&app, &a, &users[0].token, &path, goods).await,
        (401, 500210)
    );
    // the other hears it by pub/sub: the runbook's bound is the message's delivery
    let t0 = Instant::now();
    loop {
        match buy_at(&app, &b, &users[0].token, &path, goods).await {
            (401, 500210) => break,
            other => assert!(
                t0.elapsed() < Duration::from_secs(1),
                "edge B still takes a logged-out token's buy: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // an edge started after the logout reads the recent logouts back when it subscribes
    let (c, edge_c) = app.add_edge().await;
    subscribed(&edge_c).await;
    assert_eq!(
        buy_at(&app, &c, &users[0].token, &path, goods).await,
        (401, 500210)
    );
    assert_eq!(app.redis_state(goods).await, before, "nothing spent");
    assert_eq!(edge_c.metrics.buy_sessions_read.get(), 0);
    // a shopper still logged in buys there
    let other = app.path_for(&users[1].token, goods).await;
    assert_eq!(
        buy_at(&app, &c, &users[1].token, &other, goods).await,
        (202, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_another_shoppers_token_is_refused_and_spends_nothing() {
    let (app, b, _edge_b) = two_edges().await;
    let users = app.users(2).await;
    let (owner, thief) = (&users[0], &users[1]);
    let goods = app.sale(5).await;
    let path = app.path_for(&owner.token, goods).await;
    let key = app.state.keys.sale(goods).user(owner.id);
    let held: String = app.redis().get(&key).await.unwrap();
    let before = app.redis_state(goods).await;
    for edge in [edge_of(&app), b.clone()] {
        assert_eq!(
            buy_at(&app, &edge, &thief.token, &path, goods).await,
            (403, 500503),
            "on {edge}"
        );
    }
    // the owner's key (path and bucket) and the sale are as they were
    assert_eq!(app.redis().get::<_, String>(&key).await.unwrap(), held);
    assert_eq!(app.redis_state(goods).await, before);
    // the thief's own path request does not hand them the owner's path
    let theirs = app.path_for(&thief.token, goods).await;
    assert_ne!(theirs, path);
    assert_eq!(buy_at(&app, &b, &owner.token, &path, goods).await, (202, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_of_the_form_before_gets_one_bad_path_and_the_next_path_buys() {
    let app = spawn_app().await;
    subscribed(&app.state).await;
    let user = &app.users(1).await[0];
    let goods = app.sale(5).await;
    // what the version before left: the digest alone in the user's key, with a spent bucket
    let digest = "0123456789abcdef0123456789abcdef";
    let key = app.state.keys.sale(goods).user(user.id);
    let _: () = app
        .redis()
        .set_ex(&key, format!("{digest} 1 1000"), 60)
        .await
        .unwrap();
    let before = app.redis_state(goods).await;
    let (s, r) = app.buy(&user.token, digest, goods).await;
    assert_eq!((s, code(&r)), (403, 500503), "the old form is refused");
    assert_eq!(app.redis_state(goods).await, before);
    // the page asks for a path again: the one held was not sealed (`admission::path_seal`), so a
    // sealed one takes its place, bound to this token
    let path = app.path_for(&user.token, goods).await;
    assert_ne!(path, format!("{}-{digest}", user.id));
    let held: String = app.redis().get(&key).await.unwrap();
    let print = flashgate::domain::TokenPrint::of(&user.token);
    let sealed = path.split_once('-').unwrap().1;
    assert_eq!(held, format!("{sealed}.{print}"));
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_path_or_token_is_refused_before_redis() {
    let app = spawn_app().await;
    subscribed(&app.state).await;
    let user = &app.users(1).await[0];
    let goods = app.sale(5).await;
    let path = app.path_for(&user.token, goods).await;
    let digest = path.split_once('-').unwrap().1.to_string();
    let ns = app.state.settings.namespace.clone();
    let monitor = Monitor::start(&app.state.settings.redis_url, &ns).await;
    let edge = edge_of(&app);
    let cases = [
        (digest.clone(), user.token.clone(), (403, 500503)), // the form before: no user
        (format!("0-{digest}"), user.token.clone(), (403, 500503)),
        (
            format!("0{}-{digest}", user.id),
            user.token.clone(),
            (403, 500503),
        ),
        (
            format!("{}-{}", user.id, &digest[1..]),
            user.token.clone(),
            (403, 500503),
        ),
        (
            format!("{}-{}", user.id, digest.to_uppercase()),
            user.token.clone(),
            (403, 500503),
        ),
        (path.clone(), "not-a-token".to_string(), (401, 500210)),
        (path.clone(), user.token.to_uppercase(), (401, 500210)),
        (path.clone(), String::new(), (401, 500210)),
    ];
    for (p, token, want) in &cases {
        assert_eq!(
            buy_at(&app, &edge, token, p, goods).await,
            *want,
            "{p} {token}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = monitor.lines();
    assert!(lines.is_empty(), "malformed buys reached Redis: {lines:?}");
    // the well-formed buy after them is the one Redis hears of (and the monitor sees it)
    assert_eq!(
        buy_at(&app, &edge, &user.token, &path, goods).await,
        (202, 0)
    );
    let user_key = app.state.keys.sale(goods).user(user.id);
    seen(&monitor, &user_key).await;
}
