//! The plumbing every part stands on: settings ([`config`]), Redis key names and TTLs ([`keys`]),
//! the Redis connection ([`redis_conn`]) and the circuit breaker in front of it ([`breaker`]), the
//! MySQL pool and migrations ([`db`]), retry policies ([`retry`]) and Prometheus metrics
//! ([`metrics`]). None of it decides anything about a sale; nothing here imports the rest of the
//! crate except the domain types and the error type.

pub mod breaker;
pub mod config;
pub mod db;
pub mod keys;
pub mod metrics;
pub mod redis_conn;
pub mod retry;
