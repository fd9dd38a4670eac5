//! Stored passwords (src/accounts/password.rs) and the login pool (src/accounts/login_pool.rs),
//! through the real login route on MariaDB and Redis.

use std::time::Duration;

use flashgate::accounts::password;
use flashgate::cli::seed::{self, TEST_PASSWORD};
use flashgate::domain::Mobile;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_with, test_settings};

async fn row(app: &crate::helpers::TestApp, mobile: &str) -> (String, String, bool) {
    sqlx::query_as("SELECT password, salt, test_user FROM users WHERE mobile = ?")
        .bind(mobile)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

async fn login(app: &crate::helpers::TestApp, mobile: &str, hash: &str) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url("/api/login"))
        .json(&json!({ "mobile": mobile, "password": hash }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn a_new_users_row_is_argon2id_in_phc_form_with_the_configured_cost() {
    let mut settings = test_settings();
    settings.password_memory_kib = 24_576;
    settings.password_iterations = 3;
    let app = spawn_with(settings, false).await;
    let cost = app.state.settings.password_cost();
    let mobile = Mobile::parse("13900000001").unwrap();
    seed::create_user(&app.state.db, &mobile, "ann", "correct horse", cost)
        .await
        .unwrap();
    let (stored, salt, test_user) = row(&app, mobile.as_str()).await;
    assert!(
        stored.starts_with("$argon2id$v=19$m=24576,t=3,p=1$"),
        "stored: {stored}"
    );
    assert_eq!(salt, "", "the PHC string carries its own salt");
    assert!(!test_user);
    let (status, body) = login(
        &app,
        mobile.as_str(),
        &password::client_hash("correct horse"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // a second real user with the same password gets a different salt and hash
    let other = Mobile::parse("13900000002").unwrap();
    seed::create_user(&app.state.db, &other, "bob", "correct horse", cost)
        .await
        .unwrap();
    assert_ne!(row(&app, other.as_str()).await.0, stored);
}

#[tokio::test]
async fn test_users_share_one_hash_of_the_demo_password_and_are_marked() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let rows: Vec<(String, String, bool)> =
        futures_util::future::join_all(users.iter().map(|u| row(&app, &u.mobile))).await;
    assert!(rows.iter().all(|r| r.2), "every test user is marked");
    assert!(rows.iter().all(|r| r.0 == rows[0].0), "one shared hash");
    assert!(rows[0].0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    let (status, body) = login(
        &app,
        &users[1].mobile,
        &password::client_hash(TEST_PASSWORD),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_legacy_md5_row_logs_in_once_and_is_rewritten_as_argon2id() {
    let app = spawn_app().await;
    let (mobile, salt) = ("13800000042", "k3Jq9xLm");
    let legacy = password::legacy_md5(&password::client_hash("old secret"), salt).unwrap();
    sqlx::query("INSERT INTO users (mobile, nickname, password, salt) VALUES (?, 'old', ?, ?)")
        .bind(mobile)
        .bind(&legacy)
        .bind(salt)
        .execute(&app.state.db)
        .await
        .unwrap();

    // a wrong password changes nothing
    let (status, body) = login(&app, mobile, &password::client_hash("guess")).await;
    assert_eq!((status, body["code"].as_i64()), (401, Some(500215)));
    assert_eq!(row(&app, mobile).await.0, legacy);

    let (status, body) = login(&app, mobile, &password::client_hash("old secret")).await;
    assert_eq!(status, 200, "{body}");
    let (stored, salt_after, _) = row(&app, mobile).await;
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert_eq!(salt_after, "");
    // the new form logs in, the old hash no longer is the stored one, a wrong password fails
    let (status, _) = login(&app, mobile, &password::client_hash("old secret")).await;
    assert_eq!(status, 200);
    let (status, _) = login(&app, mobile, &password::client_hash("old secreT")).await;
    assert_eq!(status, 401);
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
        metrics.contains("flashgate_passwords_rehashed_total 1"),
        "one rewrite counted"
    );
}

#[tokio::test]
async fn a_raised_cost_rewrites_a_real_users_hash_at_login_but_never_a_test_users() {
    let app = spawn_app().await;
    let mobile = Mobile::parse("13700000007").unwrap();
    seed::create_user(
        &app.state.db,
        &mobile,
        "cat",
        "s3cret!!",
        app.state.settings.password_cost(),
    )
    .await
    .unwrap();
    let tester = &app.users(1).await[0];
    let before_tester = row(&app, &tester.mobile).await.0;

    // an edge started with a higher cost, on the same database
    let mut raised = (*app.state.settings).clone();
    raised.password_memory_kib = 32_768;
    raised.listen = "127.0.0.1:0".into();
    raised.admin_listen = "off".into();
    let state = flashgate::startup::connect(raised).await.unwrap();
    let edge = flashgate::startup::Application::build(state).await.unwrap();
    let base = format!("http://127.0.0.1:{}", edge.port());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(edge.run(rx));
    for (m, pw) in [
        (mobile.as_str(), password::client_hash("s3cret!!")),
        (tester.mobile.as_str(), password::client_hash(TEST_PASSWORD)),
    ] {
        let resp = app
            .http
            .post(format!("{base}/api/login"))
            .json(&json!({ "mobile": m, "password": pw }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(
        row(&app, mobile.as_str())
            .await
            .0
            .contains("$m=32768,t=2,p=1$")
    );
    assert_eq!(row(&app, &tester.mobile).await.0, before_tester);
}

#[tokio::test]
async fn bad_passwords_and_unreadable_stored_strings_fail_cleanly() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    for bad in [
        json!(""),
        json!("x".repeat(100_000)),
        json!("zz".repeat(16)),
        json!(password::client_hash(TEST_PASSWORD) + "0"),
        json!(12345),
        json!(null),
    ] {
        let resp = app
            .http
            .post(app.url("/api/login"))
            .json(&json!({ "mobile": user.mobile, "password": bad }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert!(
            status == 400 || status == 413,
            "{status} for a bad password: {body}"
        );
        assert!(body["code"].as_i64().is_some() && body["msg"].is_string());
    }
    // rows whose stored string is neither form: 401, never a 500
    for (i, stored) in [
        "not a hash",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$abcdefghijklmnopqrstuuJx8GJ3m4b9bD1X8ZfC1Lk2",
    ]
    .iter()
    .enumerate()
    {
        let mobile = format!("1360000000{i}");
        sqlx::query(
            "INSERT INTO users (mobile, nickname, password, salt) VALUES (?, 'x', ?, 'ab')",
        )
        .bind(&mobile)
        .bind(stored)
        .execute(&app.state.db)
        .await
        .unwrap();
        let (status, body) = login(&app, &mobile, &password::client_hash(TEST_PASSWORD)).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (401, Some(500215)),
            "{stored}"
        );
    }
}

/// A storm bigger than the pool: the logins past its bound are refused at once with 503,
/// `Retry-After` and the envelope; the rest log in; a result poll answers meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_storm_past_the_pools_bound_gets_503_with_retry_after_and_buys_still_answer() {
    let mut settings = test_settings();
    settings.login_threads = 1;
    settings.login_queue = 2;
    // a costly hash, so the storm is still in the pool when the last login arrives
    settings.password_memory_kib = 131_072;
    settings.password_iterations = 4;
    let app = spawn_with(settings, false).await;
    let goods = app.sale(10).await;
    let users = app.users(12).await;
    let shopper = users[0].token.clone();
    let hash = password::client_hash(TEST_PASSWORD);
    let storm = futures_util::future::join_all(users.iter().map(|u| {
        let (http, url, body) = (
            app.http.clone(),
            app.url("/api/login"),
            json!({ "mobile": u.mobile, "password": hash }),
        );
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            let retry = resp.headers().get("retry-after").cloned();
            (
                resp.status().as_u16(),
                retry,
                resp.json::<Value>().await.unwrap(),
            )
        }
    }));
    let poll = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        app.result(&shopper, goods).await
    };
    let (outcomes, polled) = tokio::join!(storm, poll);
    assert_eq!(
        polled, -1,
        "a result poll answers during the storm (no buy yet)"
    );
    let ok = outcomes.iter().filter(|o| o.0 == 200).count();
    let busy: Vec<_> = outcomes.iter().filter(|o| o.0 == 503).collect();
    assert!(
        ok >= 3,
        "the pool's 1 + 2 logins went through: {outcomes:?}"
    );
    assert!(
        !busy.is_empty(),
        "none refused past the bound: {outcomes:?}"
    );
    assert_eq!(ok + busy.len(), users.len(), "{outcomes:?}");
    for (_, retry, body) in busy {
        assert_eq!(body["code"].as_i64(), Some(500216), "{body}");
        assert!(body["data"]["retryAfterMs"].as_u64().unwrap() > 0);
        assert!(retry.is_some(), "503 without Retry-After");
    }
}
