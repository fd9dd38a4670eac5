//! MySQL: the connection pool, the migrations of `sql/` (embedded at build time), creating the
//! database itself when it is missing, and [`begin`], where every transaction starts.

use std::time::Duration;

use anyhow::Context;
use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, Transaction};

/// The embedded migrations (`sql/*.sql`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./sql");

/// A pool on `url`; connects lazily-tolerant: the first connection is made now.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<MySqlPool> {
    MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .with_context(|| format!("connecting to MySQL at {}", redact(url)))
}

/// Begins a transaction that a cancelled caller cannot leave open.
///
/// sqlx counts a transaction as open only once MySQL has answered its `BEGIN`. A caller dropped
/// while waiting for that answer (an aborted task, a client that hung up, a `select!` that took
/// the other branch) leaves the session inside a transaction nothing rolls back, and the pool
/// lends that connection to the next borrower: its autocommit statements then keep their row
/// locks until the connection happens to begin a transaction again. One such connection held
/// `order_block`'s row for every other worker until MySQL's 50 s lock wait ran out. Here `BEGIN`
/// runs in a task of its own ([`uncancelled`]): it finishes even if the caller is gone, and the
/// transaction it hands to nobody is dropped, which sqlx does roll back. Every transaction in
/// `src/` starts here.
pub async fn begin(db: &MySqlPool) -> Result<Transaction<'static, MySql>, sqlx::Error> {
    let db = db.clone();
    uncancelled(async move { db.begin().await }).await
}

/// Runs `work` to its end on a task of its own, even if the caller is dropped meanwhile: for a
/// few statements that must not be cut half-way on a pooled connection (see [`begin`]).
pub async fn uncancelled<T, F>(work: F) -> Result<T, sqlx::Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, sqlx::Error>> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(done) => done,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(sqlx::Error::PoolClosed), // the runtime is shutting down
    }
}

/// Splits `mysql://user@host:port/db?x` into (`mysql://user@host:port`, `db`).
fn split_database(url: &str) -> anyhow::Result<(&str, &str)> {
    let (base, rest) = url
        .rsplit_once('/')
        .filter(|(base, _)| base.contains("://") && !base.ends_with('/'))
        .context("the database URL names no database")?;
    let db = rest.split('?').next().unwrap_or_default();
    anyhow::ensure!(
        !db.is_empty() && db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database name {db:?} must be letters, digits and _"
    );
    Ok((base, db))
}

/// `CREATE DATABASE IF NOT EXISTS` for the database `url` names.
pub async fn create_database(url: &str) -> anyhow::Result<()> {
    let (base, db) = split_database(url)?;
    let pool = connect(base, 1).await?;
    // `db` was checked to be letters, digits and _ by split_database.
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

/// `DROP DATABASE IF EXISTS` (tests clean up with it).
pub async fn drop_database(url: &str) -> anyhow::Result<()> {
    let (base, db) = split_database(url)?;
    let pool = connect(base, 1).await?;
    // End every other session still in it first: one left inside a transaction (a test's worker
    // stopped mid-batch) holds metadata locks that DROP DATABASE would wait on for good.
    let others: Vec<i64> = sqlx::query_scalar(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
    )
    .bind(db)
    .fetch_all(&pool)
    .await
    .unwrap_or_default(); // best effort: the DROP below is what matters
    for id in others {
        // it may have ended meanwhile
        let _ = sqlx::query(AssertSqlSafe(format!("KILL {id}")))
            .execute(&pool)
            .await;
    }
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{db}`")))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Creates the database if needed and applies every pending migration.
pub async fn migrate(url: &str) -> anyhow::Result<MySqlPool> {
    create_database(url).await?;
    let pool = connect(url, 4).await?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_split_and_checked() {
        let (base, db) =
            split_database("mysql://root@127.0.0.1:3306/fg_1?ssl-mode=disabled").unwrap();
        assert_eq!((base, db), ("mysql://root@127.0.0.1:3306", "fg_1"));
        assert!(split_database("mysql://root@127.0.0.1:3306/").is_err());
        assert!(split_database("mysql://root@127.0.0.1:3306/a;drop").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("mysql://u:pw@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
    }
}
