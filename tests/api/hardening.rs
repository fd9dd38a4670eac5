//! The edge on a hostile internet: slow and greedy clients are cut off (and counted) while others
//! are served; failed logins are throttled per mobile and per address across edges; the admin API
//! is not on the public port; state-changing requests that are not JSON (what a cross-site form
//! can send) are refused and change nothing; the session cookie is `Secure` behind TLS.

use std::time::{Duration, Instant};

use flashgate::accounts::password;
use flashgate::cli::seed::TEST_PASSWORD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ADMIN_TOKEN, spawn_with, test_settings};

fn code(body: &Value) -> i64 {
    body["code"].as_i64().unwrap_or(-1)
}

/// Reads until the server closes the socket; the bytes it sent, or None if still open at `limit`.
async fn read_until_closed(sock: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn cut(app: &crate::helpers::TestApp, reason: &str) -> u64 {
    let text = app.state.metrics.render(&Default::default());
    let line = format!("flashgate_connections_cut_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// `cut(app, reason)` once it reaches `at_least`, or what it is after a second: the edge counts
/// a cut just after closing the socket, so a client can see the close first.
async fn cut_reaches(app: &crate::helpers::TestApp, reason: &str, at_least: u64) -> u64 {
    for _ in 0..50 {
        if cut(app, reason) >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cut(app, reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_idle_connections_and_slow_bodies_are_cut_off_while_others_are_served() {
    let mut settings = test_settings();
    settings.header_timeout_ms = 600;
    settings.idle_timeout_ms = 1500;
    settings.body_timeout_ms = 600;
    let app = spawn_with(settings, false).await;
    let host = app.address.trim_start_matches("http://").to_string();

    // half a request header, then nothing
    let mut slow = TcpStream::connect(&host).await.unwrap();
    slow.write_all(b"GET /api/goods HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // a connection that never says anything
    let mut silent = TcpStream::connect(&host).await.unwrap();
    // a body promised and not sent
    let mut slow_body = TcpStream::connect(&host).await.unwrap();
    slow_body
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"mob",
        )
        .await
        .unwrap();

    // meanwhile everyone else is served
    for _ in 0..5 {
        assert_eq!(app.get("/healthz", "").await.0, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // each is cut off: well past its limit, but long before anyone would notice otherwise
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a half header kept its connection"
    );
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(5))
        .await
        .expect("a half body kept its connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(8))
            .await
            .is_some(),
        "an idle connection was kept"
    );
    assert_eq!(cut_reaches(&app, "header_timeout", 1).await, 1);
    assert_eq!(cut_reaches(&app, "body_timeout", 1).await, 1);
    assert!(cut_reaches(&app, "idle_timeout", 1).await >= 1);
    // and the edge still serves
    assert_eq!(app.get("/healthz", "").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_new_connections_are_closed_and_the_rest_still_served() {
    let mut settings = test_settings();
    settings.max_connections = 4;
    let app = spawn_with(settings, false).await;
    let host = app.address.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(&host).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        assert!(s.read(&mut buf).await.unwrap() > 0);
        held.push(s); // keep-alive: each holds a slot
    }
    let mut extra = TcpStream::connect(&host).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("a connection past the cap was kept open");
    assert!(answer.is_empty(), "past the cap it was served");
    assert_eq!(cut(&app, "too_many"), 1);
    // the held connections still work
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = held[0].read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // one goes away: its slot is free again
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::Client::new().get(app.url("/healthz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(
    base: &str,
    mobile: &str,
    password: &str,
    forwarded: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({ "mobile": mobile, "password": password }));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_mobile_across_two_edges_and_the_right_password_waits() {
    let mut settings = test_settings();
    settings.login_fails_per_mobile = 5;
    // long enough for five wrong tries, each an Argon2id check, on a loaded machine
    settings.login_window_secs = 5;
    let mut app = spawn_with(settings, false).await;
    let (second, _) = app.add_edge().await;
    let second = format!("http://{second}");
    let user = &app.users(1).await[0];
    let wrong = password::client_hash("not the password");
    let right = password::client_hash(TEST_PASSWORD);

    // five wrong tries, spread over both edges
    for i in 0..5 {
        let base = if i % 2 == 0 {
            app.address.as_str()
        } else {
            second.as_str()
        };
        let (s, b, _) = login(base, &user.mobile, &wrong, None).await;
        assert_eq!((s, code(&b)), (401, 500215), "try {i}");
    }
    // now both edges refuse, even the right password, with Retry-After and the envelope
    for base in [app.address.as_str(), second.as_str()] {
        let (s, b, retry) = login(base, &user.mobile, &right, None).await;
        assert_eq!((s, code(&b)), (429, 500505), "{b}");
        assert!(b["msg"].as_str().unwrap().contains("failed logins"), "{b}");
        assert!(b["data"]["retryAfterMs"].as_u64().unwrap() > 0);
        let secs: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=5).contains(&secs), "Retry-After {secs}");
    }
    let throttled = app.state.metrics.render(&Default::default());
    assert!(
        throttled.contains("flashgate_logins_throttled_total 1"),
        "one edge counted one"
    );
    // once the window passes, the right password gets in, and the count starts over
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b, _) = login(&second, &user.mobile, &right, None).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 429, "{b}");
        assert!(Instant::now() < deadline, "never let in again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _, _) = login(&app.address, &user.mobile, &wrong, None).await;
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address_and_forwarded_for_counts_only_from_a_trusted_proxy()
 {
    let mut settings = test_settings();
    settings.login_fails_per_address = 3;
    settings.login_fails_per_mobile = 100;
    settings.trusted_proxies = "127.0.0.1".into();
    let app = spawn_with(settings.clone(), false).await;
    let users = app.users(6).await;
    let wrong = password::client_hash("guess");
    // three accounts tried from one address behind the trusted proxy
    for u in &users[..3] {
        let (s, _, _) = login(&app.address, &u.mobile, &wrong, Some("198.51.100.7")).await;
        assert_eq!(s, 401);
    }
    let right = password::client_hash(TEST_PASSWORD);
    let (s, b, _) = login(&app.address, &users[3].mobile, &right, Some("198.51.100.7")).await;
    assert_eq!(
        (s, code(&b)),
        (429, 500505),
        "that address is over its limit"
    );
    // another address through the same proxy is not
    let (s, _, _) = login(&app.address, &users[3].mobile, &right, Some("198.51.100.8")).await;
    assert_eq!(s, 200);

    // an edge that trusts no proxy ignores the header: every try is the peer's, 127.0.0.1
    let mut untrusting = test_settings();
    untrusting.login_fails_per_address = 3;
    untrusting.trusted_proxies = String::new();
    let other = spawn_with(untrusting, false).await;
    let users = other.users(4).await;
    for (i, u) in users[..3].iter().enumerate() {
        let forged = format!("203.0.113.{i}");
        let (s, _, _) = login(&other.address, &u.mobile, &wrong, Some(&forged)).await;
        assert_eq!(s, 401);
    }
    let (s, _, _) = login(
        &other.address,
        &users[3].mobile,
        &right,
        Some("203.0.113.99"),
    )
    .await;
    assert_eq!(s, 429, "a forged X-Forwarded-For dodged the address limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_on_its_own_listener_only() {
    let app = spawn_with(test_settings(), false).await;
    let (s, b) = app
        .post("/api/admin/scripts/reload", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!((s, code(&b)), (404, 500404), "admin API on the public port");
    let (s, _) = app
        .admin_post("/api/admin/scripts/reload", ADMIN_TOKEN, &json!({}))
        .await;
    assert_eq!(s, 200);
    // the admin listener serves nothing of the shoppers' API
    let admin = app.admin_address.clone().unwrap();
    let r = app
        .http
        .get(format!("{admin}/api/goods"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // by default it is on loopback, and without a token it is off
    assert!(
        flashgate::plumbing::config::Settings::default()
            .admin_listen
            .starts_with("127.0.0.1:")
    );
    let mut off = test_settings();
    off.admin_token = String::new();
    let app = spawn_with(off, false).await;
    assert!(app.admin_address.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_and_text_posts_are_refused_and_change_nothing() {
    let app = spawn_with(test_settings(), false).await;
    let user = &app.users(1).await[0];
    let goods = app.sale(5).await;
    let path = app.path_for(&user.token, goods).await;
    let before = app.redis_state(goods).await;
    let cookie = format!("token={}", user.token);
    let routes = [
        format!("/api/seckill/{path}/orders"),
        "/api/logout".to_string(),
        "/api/orders/1024/pay".to_string(),
    ];
    for route in &routes {
        for (ctype, body) in [
            (
                "application/x-www-form-urlencoded",
                format!("goodsId={goods}"),
            ),
            ("text/plain", format!("{{\"goodsId\":{goods}}}")),
            ("multipart/form-data; boundary=x", "--x--".to_string()),
        ] {
            let r = app
                .http
                .post(app.url(route))
                .header("cookie", &cookie)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let b: Value = r.json().await.unwrap();
            assert_eq!((status, code(&b)), (415, 500101), "{route} as {ctype}: {b}");
        }
    }
    // nothing was bought, and the session is still there
    assert_eq!(app.redis_state(goods).await, before);
    let (s, _) = app
        .get(&format!("/api/seckill/result?goodsId={goods}"), &user.token)
        .await;
    assert_eq!(s, 200, "the form post logged the shopper out");
    // the same buy as JSON goes through
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_behind_tls() {
    let mut settings = test_settings();
    settings.cookie_secure = true;
    let app = spawn_with(settings, false).await;
    let user = &app.users(1).await[0];
    let r = app
        .http
        .post(app.url("/api/login"))
        .json(&json!({ "mobile": user.mobile, "password": password::client_hash(TEST_PASSWORD) }))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // and not without it
    let plain = spawn_with(test_settings(), false).await;
    let user = &plain.users(1).await[0];
    let r = plain
        .http
        .post(plain.url("/api/login"))
        .json(&json!({ "mobile": user.mobile, "password": password::client_hash(TEST_PASSWORD) }))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(!cookie.contains("Secure"), "{cookie}");
}
