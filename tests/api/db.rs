//! The MySQL pool under cancellation: a caller dropped half-way through beginning a transaction
//! must not lend the pool a connection stuck inside one (see `flashgate::plumbing::db::begin`).

use std::time::Duration;

use crate::helpers::spawn_app;
use crate::proxy::Proxy;

/// Whether the pool's one connection is inside a transaction (MariaDB's `@@in_transaction`).
async fn in_transaction(pool: &sqlx::MySqlPool) -> bool {
    let open: i64 = sqlx::query_scalar("SELECT CAST(@@in_transaction AS SIGNED)")
        .fetch_one(pool)
        .await
        .unwrap();
    open == 1
}

#[tokio::test]
async fn a_begin_dropped_before_mysql_answered_leaves_no_transaction_open() {
    let app = spawn_app().await;
    let proxy = Proxy::start("127.0.0.1:3306").await;
    let url = app
        .state
        .settings
        .database_url
        .replace("127.0.0.1:3306", &format!("127.0.0.1:{}", proxy.port));
    // one connection, so the check below runs on the very one the dropped begin used; not pinged
    // when lent, so BEGIN is the first thing the held proxy catches
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    assert!(!in_transaction(&pool).await);
    // back in the pool (it is pinged on the way back: that must not be what the proxy holds)
    while pool.num_idle() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    proxy.hold(); // BEGIN leaves, but neither it nor its answer gets through
    let begin = tokio::time::timeout(
        Duration::from_millis(300),
        flashgate::plumbing::db::begin(&pool),
    );
    assert!(begin.await.is_err(), "the begin finished while held");
    proxy.release(); // MySQL now runs the BEGIN; nobody waits for its answer

    assert!(
        !in_transaction(&pool).await,
        "the pooled connection was left inside the dropped begin's transaction"
    );
}

#[test]
fn every_transaction_in_src_begins_through_db_begin() {
    fn walk(dir: &std::path::Path, hits: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, hits);
            } else if p.ends_with("src/plumbing/db.rs") {
                continue; // the one place sqlx's begin is called, in a task of its own
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                for (i, line) in text.lines().enumerate() {
                    if line.contains(".begin()") && !line.trim_start().starts_with("//") {
                        hits.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
    let mut hits = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut hits,
    );
    assert!(
        hits.is_empty(),
        "use flashgate::plumbing::db::begin: {hits:#?}"
    );
}
