//! A shop's subject (its user id, a string) becomes a flashgate user id: a `users` row with the
//! subject and no mobile or password, made by the first request that needs it (a path, a room
//! join, a result look; never a buy: a buy's path is bound to its token, which proves the user).
//!
//! Why a row and not a hash of the subject: buyer sets, results, orders and the stream entry
//! all carry a numeric user id, and a row gives ids that never collide (with each other or with
//! flashgate's own users), stay the same across edges and restarts, and name the subject back
//! for the orders and events. One `INSERT … ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)`
//! makes or finds the row in one statement, race-free across edges (the unique key decides).
//! Each edge remembers the mapping (bounded, lock-free), so a shopper costs MySQL one statement
//! per edge, ever.

use std::sync::Arc;

use sqlx::MySqlPool;

use crate::domain::UserId;
use crate::error::AppError;

/// A subject as stored (`users.subject`, bytes) as the text it was.
pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The mappings one edge keeps.
pub struct Subjects {
    ids: papaya::HashMap<Arc<str>, UserId>,
    cap: usize,
}

impl Subjects {
    pub fn new(cap: usize) -> Self {
        Self {
            ids: papaya::HashMap::new(),
            cap,
        }
    }

    /// The user id of `subject`, making its row the first time.
    pub async fn user_id(&self, db: &MySqlPool, subject: &str) -> Result<UserId, AppError> {
        if let Some(id) = self.ids.pin().get(subject) {
            return Ok(*id);
        }
        let nickname: String = subject.chars().take(64).collect();
        let id = sqlx::query(
            "INSERT INTO users (mobile, nickname, password, salt, subject) \
             VALUES (NULL, ?, '', '', ?) ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
        )
        .bind(nickname)
        .bind(subject)
        .execute(db)
        .await?
        .last_insert_id();
        let id = UserId::new(id as i64)?;
        if self.ids.len() < self.cap {
            self.ids.pin().insert(Arc::from(subject), id);
        }
        Ok(id)
    }

    /// The subject of `user`, if it is a shop's shopper (for orders and events).
    pub async fn subject_of(db: &MySqlPool, user: UserId) -> Result<Option<String>, AppError> {
        // the column is bytes (VARBINARY: compared byte for byte); a subject was UTF-8 text
        let s: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT subject FROM users WHERE id = ?")
                .bind(user.get())
                .fetch_optional(db)
                .await?;
        Ok(s.flatten().map(text))
    }
}
