//! The wall clock in the one form the Redis records and the admin views use: milliseconds since
//! the Unix epoch. Decisions about a sale's window never use it (the scripts read Redis `TIME`);
//! records stamped by an edge do (a release, a logout, a sale's phase, a push event).

/// Milliseconds since the Unix epoch, by this process's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
