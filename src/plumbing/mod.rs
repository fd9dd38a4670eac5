//! The plumbing every part stands on: settings ([`config`]), Redis key names and TTLs ([`keys`]),
//! the wall clock in milliseconds ([`clock`]), the Redis connection ([`redis_conn`]), replica confirmation of writes ([`replicas`]) and the
//! circuit breaker in front of Redis ([`breaker`]), the
//! MySQL pool and migrations ([`db`]), retry policies ([`retry`]) and Prometheus metrics
//! ([`metrics`]). None of it decides anything about a sale. It imports the domain types and the
//! error type, and [`config`] checks two settings with the parsers of the modules that use them
//! (the trusted proxy list, the password cost); nothing here imports what imports it.

pub mod breaker;
pub mod clock;
pub mod config;
pub mod db;
pub mod keys;
pub mod metrics;
pub mod redis_conn;
pub mod replicas;
pub mod retry;
