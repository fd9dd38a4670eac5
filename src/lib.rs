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
//! (`docs/architecture.md` has the same map with every module; a test holds them equal.)
//!
//! - [`http`]: the edge: the hyper server, the route table, connection guards, one module per route
//!   family.
//! - [`admission`]: the buy path: coalesced `lua/admit.lua` calls, the scripts, the captcha, the
//!   sold-out flags, split sales and the waiting room.
//! - [`accounts`]: shoppers' passwords, sessions and failed-login limits.
//! - [`draws`]: draw sales: entries paid for with a proof of work, a draw anyone can check,
//!   claims through the ordinary buy, the waitlist.
//! - [`events`]: orders out: the transactional outbox and its relay (Standard Webhooks,
//!   RabbitMQ), CloudEvents bodies, what operators see and steer.
//! - [`identity`]: a shop in front: its JWTs at the door, its subjects as user ids, the grant
//!   flashgate signs for the shop's checkout.
//! - [`sales`]: sales as records: loading them into Redis, the rules of a change, the catalogue.
//! - [`operators`]: the operators' side: a sale's live view, the per-second tally, the audit.
//! - [`worker`]: the stream drain into MySQL, the fence, the unpaid-order closer, RabbitMQ.
//! - [`plumbing`]: settings, key names, the Redis connection (one server, Sentinel or cluster) and
//!   its replica confirmation, the MySQL pool, breaker, retry, metrics.
//! - [`domain`]: newtypes (`GoodsId`, `UserId`, `Shard`, `OrderStatus`, …) that validate on parse.
//! - [`error`]: the one error type and its mapping to HTTP status + envelope code.
//! - [`state`]: `AppState`, what handlers and worker tasks share.
//! - [`startup`]: `Application::build` (binds, port 0 allowed) and `run` with a shutdown future.
//! - [`cli`]: the `flashgate` subcommands (`serve`, `worker`, `all`, `migrate`, `seed`, `users`,
//!   `sale`, `audit`, `draw`, `reset`) and the demo data they write.

pub mod accounts;
pub mod admission;
pub mod cli;
pub mod domain;
pub mod draws;
pub mod error;
pub mod events;
pub mod http;
pub mod identity;
pub mod operators;
pub mod plumbing;
pub mod sales;
pub mod startup;
pub mod state;
pub mod worker;
