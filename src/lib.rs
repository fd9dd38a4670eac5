//! flashgate: a flash-sale ("seckill") admission edge.
//!
//! Thousands of shoppers press "buy" in the same second for a few hundred items. The edge answers
//! each in about a millisecond by sending every admission decision through **one** atomic Redis
//! Lua script; a worker drains the admitted requests from a Redis stream into MySQL and writes each
//! result back to Redis, where the shopper's page polls for it. The design is in `docs/`
//! (`docs/architecture.md` first).
//!
//! # Layout
//!
//! (`docs/architecture.md` has the same map with the submodules; a test holds them equal.)
//!
//! - [`config`]: the one typed `Settings` struct (defaults < `flashgate.toml` < `FLASHGATE_*`).
//! - [`keys`]: every Redis key name, channel and TTL, declared once.
//! - [`redis_conn`]: the Redis connection, one server or a cluster, behind one type.
//! - [`domain`]: newtypes (`GoodsId`, `UserId`, `Shard`, `OrderStatus`, …) that validate on parse.
//! - [`error`]: the one error type and its mapping to HTTP status + envelope code.
//! - [`scripts`]: the Lua scripts in `lua/`, their SHA-1s, EVALSHA with NOSCRIPT reload, and the
//!   one table of return codes every script shares (`Code`).
//! - [`admission`]: coalesced admission: the buys of one shard share `lua/admit.lua` calls.
//! - [`breaker`]: the circuit breaker in front of Redis (503 at once while it is down).
//! - [`retry`]: the backoff policies of the retry loops.
//! - [`password`]: the login's double MD5 (a client round, then a salted server round).
//! - [`session`]: sessions in Redis with a sliding TTL.
//! - [`login_guard`]: failed-login limits per mobile and per client address.
//! - [`captcha`]: the math-expression captcha, rendered as a noisy PNG.
//! - [`catalogue`]: cache-aside reads of the goods in sale.
//! - [`sale`]: loading sales into Redis (warm-up), resetting them, giving a unit back.
//! - [`split`]: hot items: a sale's stock split over shards, and moving units between them.
//! - [`soldout`]: the local sold-out flags and the pub/sub listener that clears them.
//! - [`manage`]: sale management: create, change, cancel, and the rules a change must keep.
//! - [`live`]: a sale's phase and live state for the operators (Redis and MySQL, now).
//! - [`tally`]: per-sale, per-second counts for the console's chart.
//! - [`room`]: the waiting room: a fair draw at the start, then a line let through at a rate.
//! - [`audit`]: the reconciliation of Redis against MySQL, its repair, the worker's drift gauge.
//! - [`db`]: the MySQL pool and the embedded migrations.
//! - [`http`]: the hyper server, the route table, connection guards, one module per route family.
//! - [`worker`]: the stream drain into MySQL, the fence, the unpaid-order closer, RabbitMQ.
//! - [`state`]: `AppState`, what handlers and worker tasks share.
//! - [`startup`]: `Application::build` (binds, port 0 allowed) and `run` with a shutdown future.
//! - [`cli`]: the `flashgate` subcommands (`serve`, `worker`, `all`, `migrate`, `seed`, `users`,
//!   `sale`, `audit`, `reset`).
//! - [`seed`]: demo goods, test users and their sessions.
//! - [`metrics`]: Prometheus counters and histograms served at `/metrics`.

pub mod admission;
pub mod audit;
pub mod breaker;
pub mod captcha;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod keys;
pub mod live;
pub mod login_guard;
pub mod manage;
pub mod metrics;
pub mod password;
pub mod redis_conn;
pub mod retry;
pub mod room;
pub mod sale;
pub mod scripts;
pub mod seed;
pub mod session;
pub mod soldout;
pub mod split;
pub mod startup;
pub mod state;
pub mod tally;
pub mod worker;
