//! Prometheus metrics, kept by `prometheus-client` and served at `GET /metrics` in the
//! OpenMetrics text format.
//!
//! The buy path touches only handles taken once at start-up: a [`Counter`] is one relaxed atomic
//! add, a [`Histogram`] one uncontended lock around a few adds. Per-label handles (one per
//! admission outcome, one per route) are looked up in a fixed array, never in a map. The per-sale
//! gauges (queue backlog, stock, drift) are read from Redis and MySQL when scraped (see
//! `http::ops`) and rendered with [`SaleGauges`].
//!
//! Every name below is one the Grafana dashboard (`deploy/grafana/`) may query; a test checks the
//! dashboard against a live `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency histogram bounds, in seconds.
const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Shoppers-per-admission-call histogram bounds.
const ADMIT_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Waiting-room wait histogram bounds, seconds.
const ROOM_WAIT_BOUNDS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Entries-per-batch histogram bounds.
const BATCH_BOUNDS: [f64; 8] = [1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 750.0, 1000.0];

/// The route families latency is kept for.
pub const ROUTES: [&str; 9] = [
    "buy", "path", "room", "events", "result", "goods", "auth", "static", "other",
];
/// The admission outcomes, in the order of `lua/admit.lua`'s codes, plus the edge's local
/// answers (the sold-out flag, the buyer marks) and the unconfirmed; then the sale rules'
/// (issue #42: `limit_reached`, `too_many_units`, `not_enough`, and a retried key's `again` and
/// `key_reused`).
pub const OUTCOMES: [&str; 16] = [
    "queued",
    "bad_path",
    "not_started",
    "ended",
    "rate_limited",
    "duplicate",
    "sold_out",
    "no_sale",
    "sold_out_local",
    "confirming",
    "duplicate_local",
    "limit_reached",
    "too_many_units",
    "not_enough",
    "again",
    "key_reused",
];
/// Why the edge cut a client off (issue: slow and greedy clients).
pub const CUTOFFS: [&str; 6] = [
    "header_timeout",
    "idle_timeout",
    "body_timeout",
    "too_many",
    "write_stalled",
    "too_many_from_address",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrimaryLabels {
    pub mode: &'static str,
    pub primary: String,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Every process-wide metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admissions: [Counter; OUTCOMES.len()],
    latency: [Histogram; ROUTES.len()],
    cutoffs: [Counter; CUTOFFS.len()],
    /// Redis commands that failed (the buy path's script calls, the worker's stream reads).
    pub redis_errors: Counter,
    /// 1 while the breaker in front of Redis is open (answering 503 without trying).
    pub breaker_open: Gauge,
    /// Failed logins refused because a mobile or an address is over its limit.
    pub logins_throttled: Counter,
    /// Logins refused at once because the login pool was full (503).
    pub logins_busy: Counter,
    /// Password checks run (one Argon2id hash each; an unknown mobile's against a stand-in).
    pub logins_verified: Counter,
    /// Sales audited by this worker's background audit, one per sale and pass.
    pub audits: Counter,
    /// Sales this worker's audit found over, drained and clean, and settled.
    pub sales_settled: Counter,
    /// Stream readers this worker runs now: one per shard of each unsettled sale.
    pub worker_readers: Gauge,
    /// Stored passwords rewritten at login (old MD5 form, or weaker than the current cost).
    pub passwords_rehashed: Counter,
    /// Sessions answered from the edge's copy, and sessions read from Redis.
    pub sessions_cached: Counter,
    pub sessions_read: Counter,
    /// Buys that had to read the session (the edge's list of logouts was not trusted: not
    /// subscribed); every other buy reads none.
    pub buy_sessions_read: Counter,
    /// Shop tokens whose signature this edge checked, tokens answered from its verified copies,
    /// and tokens refused (`identity::shop_token`).
    pub shop_tokens_verified: Counter,
    pub shop_tokens_cached: Counter,
    pub shop_tokens_refused: Counter,
    /// Fetches of the shop's key set (JWKS), and those that failed (the last good set is kept).
    pub jwks_fetches: Counter,
    pub jwks_fetch_failures: Counter,
    /// Grants signed, redeemed, and refused at redemption (`identity::grant`).
    pub grants_issued: Counter,
    pub grants_redeemed: Counter,
    pub grants_refused: Counter,
    /// Order events written to the outbox (`events::outbox`), and per sink: delivered, tried
    /// again later, parked (given up).
    pub events_written: Counter,
    events_delivered: Family<SinkLabel, Counter>,
    events_retried: Family<SinkLabel, Counter>,
    events_parked: Family<SinkLabel, Counter>,
    /// Connections open on the edge now.
    pub connections: Gauge,
    /// Shoppers decided per `lua/admit.lua` call (coalesced admission).
    pub admit_batch_size: Histogram,
    pub batches: Counter,
    pub batch_entries: Histogram,
    pub commit_seconds: Histogram,
    pub orders: Counter,
    pub failed: Counter,
    pub replays: Counter,
    pub dead_letters: Counter,
    /// Writes a worker gave up because another worker had claimed the entries (the fence).
    pub fenced: Counter,
    pub closed_unpaid: Counter,
    /// Units the admitted buys took (a buy's quantity; `admissions{outcome="queued"}` counts
    /// the buys).
    pub admitted_units: Counter,
    /// Units moved between the shards of split sales.
    pub stock_moves: Counter,
    /// Waiting-room tickets seen through, each once (`crate::admission::room`).
    pub room_let_through: Counter,
    /// Their wait: from the start (from joining, for a latecomer) to their turn.
    pub room_wait: Histogram,
    /// Each sale's stock drift, as the worker's audit last found it at rest (`crate::operators::audit`).
    drift: Family<GoodsLabels, Gauge>,
    /// Writes (admission calls, worker batches) waiting for replicas to confirm them now.
    pub confirm_waiting: Gauge,
    /// Confirmations that did not come within `redis_ack_timeout_ms`.
    pub confirm_timeouts: Counter,
    /// Primary changes this process followed (Sentinel failovers), set when scraped.
    pub failovers: Gauge,
    /// 1 for the Redis deployment and primary this process uses, set when scraped.
    pub primary: Family<PrimaryLabels, Gauge>,
    /// Sales the worker's audit mended by itself (`audit_repair`).
    pub audit_repairs: Counter,
    /// Event streams open on the edge now (`admission::push`).
    pub push_connections: Gauge,
    /// Events sent on them.
    pub push_events: Counter,
    /// Queue entries a worker took over from a dead worker, or picked up again from its own
    /// failed batch, without waiting for the claim timer.
    pub takeovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flashgate");
        let admissions = Family::<Outcome, Counter>::default();
        registry.register(
            "admissions",
            "Buy requests decided, by outcome",
            admissions.clone(),
        );
        let latency =
            Family::<Route, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BOUNDS));
        registry.register(
            "request_seconds",
            "Time to answer a request, by route family",
            latency.clone(),
        );
        let cutoffs = Family::<Reason, Counter>::default();
        registry.register(
            "connections_cut",
            "Connections the edge closed on a slow or greedy client, by reason",
            cutoffs.clone(),
        );
        let m = Self {
            admissions: OUTCOMES
                .map(|outcome| admissions.get_or_create(&Outcome { outcome }).clone()),
            latency: ROUTES.map(|route| latency.get_or_create(&Route { route }).clone()),
            cutoffs: CUTOFFS.map(|reason| cutoffs.get_or_create(&Reason { reason }).clone()),
            redis_errors: Counter::default(),
            breaker_open: Gauge::default(),
            logins_throttled: Counter::default(),
            logins_busy: Counter::default(),
            logins_verified: Counter::default(),
            audits: Counter::default(),
            sales_settled: Counter::default(),
            worker_readers: Gauge::default(),
            passwords_rehashed: Counter::default(),
            sessions_cached: Counter::default(),
            sessions_read: Counter::default(),
            buy_sessions_read: Counter::default(),
            shop_tokens_verified: Counter::default(),
            shop_tokens_cached: Counter::default(),
            shop_tokens_refused: Counter::default(),
            jwks_fetches: Counter::default(),
            jwks_fetch_failures: Counter::default(),
            grants_issued: Counter::default(),
            grants_redeemed: Counter::default(),
            grants_refused: Counter::default(),
            events_written: Counter::default(),
            events_delivered: Family::default(),
            events_retried: Family::default(),
            events_parked: Family::default(),
            connections: Gauge::default(),
            admit_batch_size: Histogram::new(ADMIT_BOUNDS),
            batches: Counter::default(),
            batch_entries: Histogram::new(BATCH_BOUNDS),
            commit_seconds: Histogram::new(LATENCY_BOUNDS),
            orders: Counter::default(),
            failed: Counter::default(),
            replays: Counter::default(),
            dead_letters: Counter::default(),
            fenced: Counter::default(),
            closed_unpaid: Counter::default(),
            admitted_units: Counter::default(),
            stock_moves: Counter::default(),
            drift: Family::default(),
            room_let_through: Counter::default(),
            room_wait: Histogram::new(ROOM_WAIT_BOUNDS),
            confirm_waiting: Gauge::default(),
            confirm_timeouts: Counter::default(),
            failovers: Gauge::default(),
            primary: Family::default(),
            audit_repairs: Counter::default(),
            takeovers: Counter::default(),
            push_connections: Gauge::default(),
            push_events: Counter::default(),
            registry,
        };
        m.register_the_rest()
    }

    fn register_the_rest(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "redis_errors",
            "Redis commands that failed",
            self.redis_errors.clone(),
        );
        r.register(
            "redis_breaker_open",
            "1 while the circuit breaker in front of Redis is open",
            self.breaker_open.clone(),
        );
        r.register(
            "logins_throttled",
            "Logins refused because the mobile or the address is over its failure limit",
            self.logins_throttled.clone(),
        );
        r.register(
            "audits",
            "Sales audited by the worker's background audit (one per sale and pass)",
            self.audits.clone(),
        );
        r.register(
            "sales_settled",
            "Sales the audit found over, drained and clean, and left alone from then on",
            self.sales_settled.clone(),
        );
        r.register(
            "worker_readers",
            "Stream readers this worker runs: one per shard of each sale not settled",
            self.worker_readers.clone(),
        );
        r.register(
            "logins_verified",
            "Password checks run at login (an unknown mobile's against a stand-in hash)",
            self.logins_verified.clone(),
        );
        r.register(
            "logins_busy",
            "Logins refused with 503 because the login pool was full",
            self.logins_busy.clone(),
        );
        r.register(
            "sessions_cached",
            "Requests whose session the edge answered from its copy (no Redis read)",
            self.sessions_cached.clone(),
        );
        r.register(
            "sessions_read",
            "Requests whose session the edge read from Redis (GETEX)",
            self.sessions_read.clone(),
        );
        r.register(
            "buy_sessions_read",
            "Buys that read the session because this edge's list of logouts was not trusted (not subscribed)",
            self.buy_sessions_read.clone(),
        );
        for (name, help, c) in [
            (
                "shop_tokens_verified",
                "Shop tokens (JWTs) whose signature this edge checked",
                &self.shop_tokens_verified,
            ),
            (
                "shop_tokens_cached",
                "Requests whose shop token this edge had verified before (no crypto)",
                &self.shop_tokens_cached,
            ),
            (
                "shop_tokens_refused",
                "Requests refused for their shop token (401)",
                &self.shop_tokens_refused,
            ),
            (
                "jwks_fetches",
                "Fetches of the shop's key set (JWKS)",
                &self.jwks_fetches,
            ),
            (
                "jwks_fetch_failures",
                "Fetches of the shop's key set that failed (the last good set was kept)",
                &self.jwks_fetch_failures,
            ),
            (
                "grants_issued",
                "Grants signed for shoppers with a written order",
                &self.grants_issued,
            ),
            (
                "grants_redeemed",
                "Grants redeemed (their jti marked spent)",
                &self.grants_redeemed,
            ),
            (
                "grants_refused",
                "Grants refused at redemption (tampered, expired, other audience, spent)",
                &self.grants_refused,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "events_written",
            "Order events written to the outbox",
            self.events_written.clone(),
        );
        r.register(
            "events_delivered",
            "Order events a sink took (2xx, or the broker's confirm)",
            self.events_delivered.clone(),
        );
        r.register(
            "events_retried",
            "Order event attempts that failed and will be tried again",
            self.events_retried.clone(),
        );
        r.register(
            "events_parked",
            "Order events given up on (an answer that will not change, or past the retry horizon)",
            self.events_parked.clone(),
        );
        r.register(
            "passwords_rehashed",
            "Stored passwords rewritten as Argon2id at the cost now set, at a successful login",
            self.passwords_rehashed.clone(),
        );
        r.register(
            "connections_open",
            "Connections open on the edge",
            self.connections.clone(),
        );
        r.register(
            "admit_batch_size",
            "Shoppers decided per admit.lua call (coalesced admission)",
            self.admit_batch_size.clone(),
        );
        r.register(
            "stock_drift",
            "At rest (queues drained), Redis stock minus what the audit's equation says it \
             should be (initial - in flight - orders + units given back); 0 when every unit is \
             accounted for. Set by the worker's audit every few seconds",
            self.drift.clone(),
        );
        r.register(
            "redis_confirm_waiting",
            "Admission calls and worker batches waiting now for replicas to confirm their writes",
            self.confirm_waiting.clone(),
        );
        r.register(
            "redis_confirm_timeouts",
            "Confirmations (WAIT) that did not come within redis_ack_timeout_ms: the shoppers \
             were told their buy is being confirmed, or the worker waited before writing",
            self.confirm_timeouts.clone(),
        );
        r.register(
            "redis_failovers",
            "Redis primary changes this process followed (Sentinel failovers)",
            self.failovers.clone(),
        );
        r.register(
            "redis_primary",
            "1 for the Redis deployment (mode) and primary address this process writes to",
            self.primary.clone(),
        );
        r.register(
            "audit_repairs",
            "Sales the worker's audit mended by itself at rest (audit_repair on)",
            self.audit_repairs.clone(),
        );
        r.register(
            "push_connections",
            "Event streams (GET /api/seckill/events) open on the edge",
            self.push_connections.clone(),
        );
        r.register(
            "push_events",
            "Events sent on the edge's event streams (room positions, results)",
            self.push_events.clone(),
        );
        r.register(
            "worker_takeovers",
            "Queue entries taken over from a dead worker, or from this worker's own failed \
             batch, before the claim timer",
            self.takeovers.clone(),
        );
        r.register(
            "room_let_through",
            "Waiting-room tickets let through (each counted once, when first seen through)",
            self.room_let_through.clone(),
        );
        r.register(
            "room_wait_seconds",
            "Waiting-room wait of the tickets let through: from the start, or from joining for a \
             latecomer, to their turn",
            self.room_wait.clone(),
        );
        r.register(
            "worker_batches",
            "Batches committed to MySQL",
            self.batches.clone(),
        );
        r.register(
            "worker_batch_entries",
            "Queue entries per committed batch",
            self.batch_entries.clone(),
        );
        r.register(
            "worker_commit_seconds",
            "Time to write and commit one batch",
            self.commit_seconds.clone(),
        );
        r.register("worker_orders", "Orders written", self.orders.clone());
        r.register(
            "worker_failed",
            "Admitted requests that ended failed (unit given back)",
            self.failed.clone(),
        );
        r.register(
            "worker_replays",
            "Queue entries that already had their order (a replay after a crash)",
            self.replays.clone(),
        );
        r.register(
            "worker_dead_letters",
            "Queue entries given up on (dead-lettered, unit given back)",
            self.dead_letters.clone(),
        );
        r.register(
            "worker_fenced",
            "Batches not committed because another worker had claimed their entries",
            self.fenced.clone(),
        );
        r.register(
            "unpaid_closed",
            "Unpaid orders closed past their time (unit sold again)",
            self.closed_unpaid.clone(),
        );
        r.register(
            "admitted_units",
            "Units the admitted buys took (a buy's quantity)",
            self.admitted_units.clone(),
        );
        r.register(
            "stock_moves",
            "Units moved between the shards of split sales",
            self.stock_moves.clone(),
        );
        self
    }

    pub fn event_delivered(&self, sink: &str, n: u64) {
        self.events_delivered
            .get_or_create(&SinkLabel { sink: sink.into() })
            .inc_by(n);
    }
    pub fn event_retried(&self, sink: &str, n: u64) {
        self.events_retried
            .get_or_create(&SinkLabel { sink: sink.into() })
            .inc_by(n);
    }
    pub fn event_parked(&self, sink: &str, n: u64) {
        self.events_parked
            .get_or_create(&SinkLabel { sink: sink.into() })
            .inc_by(n);
    }
    /// Events delivered to `sink` so far (tests, benchmarks).
    pub fn events_delivered_to(&self, sink: &str) -> u64 {
        self.events_delivered
            .get_or_create(&SinkLabel { sink: sink.into() })
            .get()
    }

    pub fn admission(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.admissions[i].inc();
        }
    }

    /// How many buys ended with `outcome` so far (tests and the console read it).
    pub fn admissions_of(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.admissions[i].get())
    }

    /// How many buys were decided so far, whatever the outcome.
    pub fn admissions_all(&self) -> u64 {
        self.admissions.iter().map(Counter::get).sum()
    }

    pub fn route_latency(&self, route: &str, seconds: f64) {
        let i = ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(ROUTES.len() - 1);
        self.latency[i].observe(seconds);
    }

    /// Counts a connection cut off for `reason` (one of [`CUTOFFS`]).
    pub fn cut_off(&self, reason: &str) {
        if let Some(i) = CUTOFFS.iter().position(|r| *r == reason) {
            self.cutoffs[i].inc();
        }
    }

    /// One sale's stock drift at rest, as the audit found it.
    pub fn drift(&self, goods: i64, drift: i64) {
        self.drift.get_or_create(&GoodsLabels { goods }).set(drift);
    }

    /// Drops a settled sale's drift gauge: nothing per sale is kept for sales that are over.
    pub fn forget_sale(&self, goods: i64) {
        self.drift.remove(&GoodsLabels { goods });
    }

    /// The text exposition: these metrics, then the per-sale gauges given.
    pub fn render(&self, sales: &SaleGauges) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String");
        encode_registry(&mut out, &sales.registry).expect("writing to a String");
        encode_eof(&mut out).expect("writing to a String");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    goods: i64,
    shard: u16,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GoodsLabels {
    goods: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: u64,
}
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionOutcomeLabels {
    version: u64,
    outcome: &'static str,
}

/// The per-sale gauges of one scrape, read from Redis and MySQL at that moment; and the Lua
/// script versions this process runs with their counts (`admission::scripts`), read from it.
#[derive(Debug)]
pub struct SaleGauges {
    registry: Registry,
    queue_length: Family<ShardLabels, Gauge>,
    queue_pending: Family<ShardLabels, Gauge>,
    stock: Family<ShardLabels, Gauge>,
    room_size: Family<GoodsLabels, Gauge>,
    lua_version: Family<RoleLabels, Gauge>,
    lua_canary_percent: Gauge,
    lua_calls: Family<VersionLabels, Counter>,
    lua_call_seconds: Family<VersionLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    lua_shoppers: Family<VersionOutcomeLabels, Counter>,
    events_backlog: Family<SinkLabel, Gauge>,
    events_oldest_seconds: Family<SinkLabel, Gauge>,
    events_failing: Family<SinkLabel, Gauge>,
    events_parked_now: Family<SinkLabel, Gauge>,
    events_sink_disabled: Family<SinkLabel, Gauge>,
}

impl Default for SaleGauges {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flashgate");
        let (queue_length, queue_pending, stock, room_size) = Default::default();
        let families: [(&str, &str, &Family<ShardLabels, Gauge>); 3] = [
            (
                "queue_length",
                "Entries in a shard's queue (unread + pending)",
                &queue_length,
            ),
            (
                "queue_pending",
                "Entries read by a worker and not yet acked",
                &queue_pending,
            ),
            ("stock", "Units left in a shard's Redis stock", &stock),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "room_size",
            "Tickets in a sale's waiting room",
            Family::<GoodsLabels, Gauge>::clone(&room_size),
        );
        let lua_version = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "lua_version",
            "The Lua script version this process runs, by role (live, canary; 0 is the built-in set)",
            lua_version.clone(),
        );
        let lua_canary_percent = Gauge::default();
        registry.register(
            "lua_canary_percent",
            "The share of admission calls the canary version decides (0: no canary)",
            lua_canary_percent.clone(),
        );
        let lua_calls = Family::<VersionLabels, Counter>::default();
        registry.register(
            "lua_calls",
            "admit.lua calls this process made with each script version",
            lua_calls.clone(),
        );
        let lua_call_seconds =
            Family::<VersionLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "lua_call_seconds",
            "Time those calls took, seconds, summed by version (divide by the calls for a mean)",
            lua_call_seconds.clone(),
        );
        let lua_shoppers = Family::<VersionOutcomeLabels, Counter>::default();
        registry.register(
            "lua_shoppers",
            "Shoppers those calls decided, by version and outcome",
            lua_shoppers.clone(),
        );
        let sink_families: [(&str, &str); 5] = [
            (
                "events_backlog",
                "Order events waiting in the outbox for a sink",
            ),
            (
                "events_oldest_seconds",
                "Age of a sink's oldest undelivered order event, seconds",
            ),
            (
                "events_failing",
                "A sink's waiting events that have failed at least once (the sink is failing)",
            ),
            ("events_parked_now", "A sink's parked (given up) events"),
            (
                "events_sink_disabled",
                "1 while a sink is disabled (its endpoint answered 410)",
            ),
        ];
        let sinks: Vec<Family<SinkLabel, Gauge>> = (0..sink_families.len())
            .map(|_| Family::default())
            .collect();
        for ((name, help), f) in sink_families.iter().zip(&sinks) {
            registry.register(*name, *help, f.clone());
        }
        let mut sinks = sinks.into_iter();
        let mut next = || sinks.next().expect("one family a name");
        let (events_backlog, events_oldest_seconds, events_failing, events_parked_now) =
            (next(), next(), next(), next());
        let events_sink_disabled = next();
        Self {
            events_backlog,
            events_oldest_seconds,
            events_failing,
            events_parked_now,
            events_sink_disabled,
            registry,
            queue_length,
            queue_pending,
            stock,
            room_size,
            lua_version,
            lua_canary_percent,
            lua_calls,
            lua_call_seconds,
            lua_shoppers,
        }
    }
}

impl SaleGauges {
    /// One sink of orders out, as `events::ops::status` read it.
    pub fn event_sink(
        &self,
        sink: &str,
        backlog: i64,
        oldest_seconds: i64,
        failing: i64,
        parked: i64,
        disabled: bool,
    ) {
        let l = SinkLabel { sink: sink.into() };
        self.events_backlog.get_or_create(&l).set(backlog);
        self.events_oldest_seconds
            .get_or_create(&l)
            .set(oldest_seconds);
        self.events_failing.get_or_create(&l).set(failing);
        self.events_parked_now.get_or_create(&l).set(parked);
        self.events_sink_disabled
            .get_or_create(&l)
            .set(i64::from(disabled));
    }

    /// One shard's queue length, pending count and stock.
    pub fn shard(&self, goods: i64, shard: u16, length: i64, pending: i64, stock: i64) {
        let l = ShardLabels { goods, shard };
        self.queue_length.get_or_create(&l).set(length);
        self.queue_pending.get_or_create(&l).set(pending);
        self.stock.get_or_create(&l).set(stock);
    }

    /// A script version this process runs, in `role` (`live` or `canary`, with its share).
    pub fn script_version(&self, role: &'static str, version: u64, canary_percent: u8) {
        self.lua_version
            .get_or_create(&RoleLabels { role })
            .set(version as i64);
        if role == "canary" {
            self.lua_canary_percent.set(i64::from(canary_percent));
        }
    }

    /// What one version's admission calls did in this process so far.
    pub fn script_counts(
        &self,
        version: u64,
        calls: u64,
        seconds: f64,
        shoppers: impl Iterator<Item = (&'static str, u64)>,
    ) {
        let v = VersionLabels { version };
        self.lua_calls.get_or_create(&v).inc_by(calls);
        self.lua_call_seconds.get_or_create(&v).inc_by(seconds);
        for (outcome, n) in shoppers.filter(|(_, n)| *n > 0) {
            self.lua_shoppers
                .get_or_create(&VersionOutcomeLabels { version, outcome })
                .inc_by(n);
        }
    }

    /// How many tickets a sale's waiting room holds.
    pub fn room(&self, goods: i64, size: i64) {
        self.room_size
            .get_or_create(&GoodsLabels { goods })
            .set(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_end_in_total() {
        let m = Metrics::default();
        m.route_latency("buy", 0.0004);
        m.route_latency("buy", 0.003);
        m.admission("queued");
        m.batch_entries.observe(40.0);
        let text = m.render(&SaleGauges::default());
        assert!(
            text.contains("flashgate_request_seconds_bucket{le=\"0.0005\",route=\"buy\"} 1"),
            "{text}"
        );
        assert!(text.contains("flashgate_request_seconds_bucket{le=\"0.005\",route=\"buy\"} 2"));
        assert!(text.contains("flashgate_request_seconds_count{route=\"buy\"} 2"));
        assert!(text.contains("flashgate_admissions_total{outcome=\"queued\"} 1"));
        assert!(text.contains("flashgate_worker_batch_entries_bucket{le=\"50.0\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn sale_gauges_carry_goods_and_shard() {
        let g = SaleGauges::default();
        g.shard(7, 1, 3, 2, 40);
        let m = Metrics::default();
        m.drift(7, -2);
        let text = m.render(&g);
        assert!(
            text.contains("flashgate_queue_length{goods=\"7\",shard=\"1\"} 3"),
            "{text}"
        );
        assert!(text.contains("flashgate_stock{goods=\"7\",shard=\"1\"} 40"));
        assert!(text.contains("flashgate_stock_drift{goods=\"7\"} -2"));
    }
}
