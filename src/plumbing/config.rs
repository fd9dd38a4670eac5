//! Configuration: one typed struct, layered as defaults, then an optional `flashgate.toml`, then
//! `FLASHGATE_*` environment variables.
//!
//! Every setting is one field of [`Settings`]; its environment name is the field name upper-cased
//! behind `FLASHGATE_` (`redis_url` is `FLASHGATE_REDIS_URL`), its default is in
//! `Settings::default`, and its doc comment says what it does.

use std::path::PathBuf;
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use serde::{Deserialize, Serialize};

/// Where admitted requests travel from the Redis stream to the order writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Workers read the stream with a consumer group and write MySQL directly.
    Redis,
    /// A relay moves stream entries into a durable RabbitMQ queue; consumers write MySQL.
    #[serde(alias = "amqp")]
    Rabbitmq,
}

impl FromStr for QueueKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "redis" => Ok(Self::Redis),
            "rabbitmq" | "amqp" => Ok(Self::Rabbitmq),
            other => anyhow::bail!("unknown queue kind {other:?} (redis or rabbitmq)"),
        }
    }
}

/// Who a shopper is (`crate::identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// flashgate's own login and sessions (the seeds' `users`): the default.
    Session,
    /// The shop's JWT only.
    Jwt,
    /// Either: a bearer or cookie shaped like a JWT is the shop's, else a session.
    Both,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the edge listens on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Redis the sales live in: one server, a Sentinel set (`redis+sentinel://…/SERVICE`) or a
    /// cluster (`plumbing::redis_conn`).
    pub redis_url: String,
    /// Replicas that must hold an admission before the shopper is told "queued", and a queue
    /// entry before the worker writes its order (`WAIT`); unset or `auto`: 1 on a Sentinel set
    /// or a cluster whose primaries have replicas, else 0.
    #[serde(deserialize_with = "optional_count")]
    pub redis_ack_replicas: Option<u32>,
    /// How long a confirmation may take (ms) before the shopper is told the outcome is being
    /// confirmed instead.
    pub redis_ack_timeout_ms: u64,
    /// MySQL/MariaDB the orders are written to.
    pub database_url: String,
    /// RabbitMQ, used when `queue = "rabbitmq"`.
    pub amqp_url: String,
    /// `redis` or `rabbitmq`: how admitted requests reach the order writer.
    pub queue: QueueKind,
    /// Prepended to every Redis key and channel (empty by default): lets tests share one Redis.
    pub namespace: String,
    /// `on` or `off`: off skips the captcha (for load tests) and says so loudly in the log.
    #[serde(deserialize_with = "switch")]
    pub captcha: bool,
    /// Bearer token for `/api/admin/*`; empty disables the admin API.
    pub admin_token: String,
    /// A directory whose `*.lua` files replace the embedded scripts of the same name.
    #[serde(deserialize_with = "optional_path")]
    pub lua_dir: Option<PathBuf>,
    /// The shopper's static pages.
    pub public_dir: PathBuf,
    /// Per-user token bucket: tokens per second, and burst (bucket size).
    pub user_rate: f64,
    pub user_burst: u32,
    /// Per-sale gate bucket: admissions per second for the whole sale, and burst.
    pub gate_rate: f64,
    pub gate_burst: u32,
    /// A sale issues at most `path_factor × stock` hidden paths.
    pub path_factor: u32,
    /// A waiting room's let-through rate (tickets per second) for sales that set none.
    pub room_rate: f64,
    /// A draw entry's proof of work: the most hashes a challenge takes (ALTCHA `maxnumber`;
    /// on average half of it).
    pub draw_pow_max: u64,
    /// Entries one address (an IPv6 /64) brings to a draw before its challenges double in
    /// work, and again for every as many more (0: never raised).
    pub draw_pow_per_address: u64,
    /// `on`: joining a waiting room takes a proof of work too (a challenge of
    /// `GET /api/seckill/room/challenge`, sized and raised per address as a draw entry's).
    #[serde(deserialize_with = "switch")]
    pub room_pow: bool,
    /// Entries a worker takes from a stream in one read (and writes in one transaction).
    pub batch_size: usize,
    /// A pending entry idle this long (ms) is claimed by another worker.
    pub claim_idle_ms: u64,
    /// After this many deliveries an entry goes to the dead-letter stream and its unit back.
    pub max_deliveries: u64,
    /// Unpaid orders older than this (seconds) are closed and their unit sold again.
    pub unpaid_timeout_secs: u64,
    /// How often (ms) the closer looks for unpaid orders past their time.
    pub closer_interval_ms: u64,
    /// How often the worker's background audit visits the unsettled sales, in milliseconds.
    pub audit_interval_ms: u64,
    /// `on`: the worker's audit mends a sale at rest that it finds drifted twice running (after
    /// a Redis failover lost writes), as `flashgate audit ID --fix` would; `off`: it only
    /// reports.
    #[serde(deserialize_with = "switch")]
    pub audit_repair: bool,
    /// Order-writer tasks per process (RabbitMQ consumers).
    pub consumers: usize,
    /// MySQL batches of one sale a worker writes at once (each on its own connection).
    pub writers: usize,
    /// Where the admin API (`/api/admin/*`, plus `/healthz`, `/readyz`, `/metrics`) listens:
    /// its own address, loopback by default, never the public one; `off` turns it off. It is
    /// also off while `admin_token` is empty.
    pub admin_listen: String,
    /// A client must send a whole request header within this many ms of its first byte.
    pub header_timeout_ms: u64,
    /// A connection with no request in progress is closed after this many ms.
    pub idle_timeout_ms: u64,
    /// A request body must arrive within this many ms (else 408 and the connection is closed).
    pub body_timeout_ms: u64,
    /// Open connections per listener; past this a new connection is closed at once.
    pub max_connections: usize,
    /// Addresses (or CIDR ranges) of proxies whose `X-Forwarded-For` is believed, comma
    /// separated (nginx's address, e.g. `127.0.0.1`); empty trusts no one.
    pub trusted_proxies: String,
    /// Failed logins allowed per mobile within `login_window_secs`; then 429 until it passes.
    pub login_fails_per_mobile: u32,
    /// Failed logins allowed per client address within `login_window_secs`.
    pub login_fails_per_address: u32,
    /// The window failed logins are counted over, in seconds.
    pub login_window_secs: u64,
    /// Argon2id memory cost of new password hashes, in KiB (at or above OWASP's minimum).
    pub password_memory_kib: u32,
    /// Argon2id iterations of new password hashes.
    pub password_iterations: u32,
    /// Argon2id lanes of new password hashes.
    pub password_lanes: u32,
    /// Threads that compute password hashes, off the async workers (`accounts::login_pool`).
    pub login_threads: usize,
    /// Logins that may wait for a hashing thread; past that, 503 with `Retry-After`.
    pub login_queue: usize,
    /// The hashing threads' nice value (0..=19): higher yields the CPU to the buy path first.
    pub login_nice: i32,
    /// How long an edge uses a session it read from Redis before reading it again, in ms (0: no
    /// caching). A logout reaches every edge by pub/sub at once; this bounds how late an
    /// expired or hand-deleted session is noticed (`accounts::session`).
    pub session_cache_ms: u64,
    /// Most sessions one edge keeps copies of.
    pub session_cache_entries: usize,
    /// Most event streams (`GET /api/seckill/events`) one edge holds open; past it a new one is
    /// refused (503) and the page polls instead. Never more than four fifths of
    /// `max_connections`, whatever this says: the rest are kept for ordinary requests.
    pub push_max_connections: usize,
    /// Wrong captcha answers a shopper may give in one sale within 10 minutes; past them the
    /// path request is refused (429, code 500514) until the 10 minutes end.
    pub captcha_wrong_max: u32,
    /// Open connections one client address (IPv6: one /64) may hold on one listener; past it a
    /// new one is closed at once. The trusted proxies are not held to it (every shopper comes
    /// through them).
    pub max_connections_per_address: usize,
    /// Serve `/metrics` on the public listener too (it is always on the admin listener and a
    /// worker's ops listener). Off by default: a scrape costs MySQL and Redis work and names the
    /// Redis primary. The shipped compose and Kubernetes files turn it on, because there the
    /// public port is reached only through nginx or the ingress, which never pass `/metrics`.
    #[serde(deserialize_with = "switch")]
    pub metrics_public: bool,
    /// Host names the admin listener answers to besides addresses and `localhost`
    /// (comma-separated, e.g. `flashgate-admin,edge1`): any other name in `Host` is refused
    /// (421), so DNS rebinding cannot turn a browser against it.
    pub admin_hosts: String,
    /// Most event streams one client address (IPv6: one /64) holds open on one edge; past it
    /// 429 (code 500511) and the page polls.
    pub push_per_address: usize,
    /// Most buys of one sale shard decided in one `lua/admit.lua` call: buys that arrive while a
    /// call for their shard is in flight go together in the next (see `admission`); 1 sends
    /// every buy alone.
    pub admit_batch: usize,
    /// Where `flashgate worker` serves `/healthz`, `/readyz` and `/metrics` (for Prometheus);
    /// `off` (the default) serves nothing. (`serve` and `all` serve them on `listen`.)
    pub worker_listen: String,
    /// Set when the edge is served over TLS (by a proxy in front): the session cookie then
    /// carries `Secure`, so a browser never sends it over plain HTTP.
    pub cookie_secure: bool,
    /// `session`, `jwt` or `both`: whose login a shopper comes with (`crate::identity`).
    pub auth: AuthMode,
    /// The cookie a shop's JWT may come in (besides `Authorization: Bearer`); empty: none.
    pub jwt_cookie: String,
    /// The shop's key set (JWKS), http(s); fetched at start, again for an unknown `kid` (at
    /// most once per `jwt_jwks_refetch_s`) and every 5 minutes.
    pub jwt_jwks_url: String,
    /// A fixed key instead of (or besides) the JWKS: a PEM or a JWK; an HS256 secret only when
    /// `jwt_algorithms` names HS256.
    pub jwt_key: String,
    /// The algorithms a shop token may use, comma separated (never `none`).
    pub jwt_algorithms: String,
    /// The shop's `iss`, and the `aud` its tokens must contain (both required with `jwt`/`both`).
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub jwt_leeway_s: u64,
    /// The claim naming the shopper (a string up to 255 bytes).
    pub jwt_user_claim: String,
    /// An unknown `kid` fetches the key set again at most this often, seconds.
    pub jwt_jwks_refetch_s: u64,
    /// Most shop tokens one edge keeps verified copies of (each until its `exp`).
    pub jwt_cache_entries: usize,
    /// flashgate's Ed25519 grant key: the 32-byte private seed in base64url (or standard
    /// base64); empty: no grants. `flashgate grant-key` makes one.
    pub grant_key: String,
    /// Public keys (base64url, 32 bytes) of grant keys rotated out, still published at
    /// `/.well-known/jwks.json` and taken by `redeem` until their grants have expired.
    pub grant_retired_keys: String,
    /// The grant's `iss` and `aud`.
    pub grant_issuer: String,
    pub grant_audience: String,
    /// A grant is valid this long, seconds (1..=120).
    pub grant_ttl_s: u64,
    /// The bearer token the shop's server sends to the admin listener: `POST /api/grants/redeem`
    /// and paying or closing an order. Required with `grant_key` (the shop never gets the admin
    /// token), and not the admin token.
    pub grant_redeem_token: String,
    /// The shop's checkout, with `{grant}` where the grant goes
    /// (`https://shop.example/checkout?grant={grant}`); empty: the page shows the order as today.
    pub checkout_url: String,
    /// Webhook endpoints the order events go to, comma separated (http(s)); empty: none
    /// (`crate::events`).
    pub webhook_url: String,
    /// The Standard Webhooks secret(s), `whsec_` + base64; two (comma separated) while one is
    /// rotated: each request is signed with both.
    pub webhook_secret: String,
    /// Events per second sent to each endpoint, at most.
    pub webhook_rate: f64,
    /// Requests in flight to each endpoint, at most.
    pub webhook_in_flight: usize,
    /// A webhook request gives up after this long, ms (then it is retried).
    pub webhook_timeout_ms: u64,
    /// The RabbitMQ topic exchange the order events are published to (`amqp_url`); empty: none.
    pub events_exchange: String,
    /// An event failing this long (seconds since its first attempt) is parked, not retried.
    pub events_retry_horizon_s: u64,
    /// While the worker's order writing is behind (a sale's opening burst), its relays give way
    /// this long at most before a pass, ms; 0: never (events go out beside the orders).
    pub events_give_way_ms: u64,
    /// The CloudEvents `source` of every event.
    pub events_source: String,
    /// The currency of every price flashgate hands the shop, in grants and in events (ISO 4217,
    /// `EUR`): no default, a shop's prices are in its own currency; required once grants or an
    /// event sink are on (it was `events_currency`, CNY by default, for events only).
    pub currency: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            redis_url: "redis://127.0.0.1:6379/".into(),
            redis_ack_replicas: None,
            redis_ack_timeout_ms: 250,
            database_url: "mysql://root@127.0.0.1:3306/flashgate".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            queue: QueueKind::Redis,
            namespace: String::new(),
            captcha: true,
            admin_token: String::new(),
            lua_dir: None,
            public_dir: PathBuf::from("public"),
            user_rate: 2.0,
            user_burst: 5,
            gate_rate: 50_000.0,
            gate_burst: 50_000,
            path_factor: 10,
            room_rate: 200.0,
            draw_pow_max: 300_000,
            draw_pow_per_address: 5,
            room_pow: false,
            batch_size: 1000,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            unpaid_timeout_secs: 30 * 60,
            closer_interval_ms: 5_000,
            audit_interval_ms: 5_000,
            audit_repair: true,
            consumers: 2,
            writers: 4,
            admin_listen: "127.0.0.1:9180".into(),
            header_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            body_timeout_ms: 10_000,
            max_connections: 25_000,
            trusted_proxies: String::new(),
            login_fails_per_mobile: 5,
            login_fails_per_address: 50,
            login_window_secs: 900,
            password_memory_kib: 19_456,
            password_iterations: 2,
            password_lanes: 1,
            login_threads: 1,
            login_queue: 64,
            login_nice: 10,
            session_cache_ms: 30_000,
            session_cache_entries: 1_000_000,
            cookie_secure: false,
            worker_listen: "off".into(),
            admit_batch: 32,
            push_max_connections: 100_000,
            push_per_address: 256,
            admin_hosts: String::new(),
            metrics_public: false,
            max_connections_per_address: 1_000,
            captcha_wrong_max: 5,
            auth: AuthMode::Session,
            jwt_cookie: String::new(),
            jwt_jwks_url: String::new(),
            jwt_key: String::new(),
            jwt_algorithms: "EdDSA,ES256,RS256".into(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            jwt_leeway_s: 30,
            jwt_user_claim: "sub".into(),
            jwt_jwks_refetch_s: 30,
            jwt_cache_entries: 1_000_000,
            grant_key: String::new(),
            grant_retired_keys: String::new(),
            grant_issuer: "flashgate".into(),
            grant_audience: "shop".into(),
            grant_ttl_s: 120,
            grant_redeem_token: String::new(),
            checkout_url: String::new(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_rate: 1000.0,
            webhook_in_flight: 16,
            webhook_timeout_ms: 10_000,
            events_exchange: String::new(),
            events_retry_horizon_s: 24 * 3600,
            events_give_way_ms: 2000,
            events_source: "/flashgate".into(),
            currency: String::new(),
        }
    }
}

/// Reads `captcha`: a boolean, or `on`/`off` (and the usual spellings) from a variable.
fn switch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        B(bool),
        S(String),
    }
    match Repr::deserialize(d)? {
        Repr::B(b) => Ok(b),
        Repr::S(s) => match s.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok(true),
            "off" | "false" | "0" | "no" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected on or off, got {other:?}"
            ))),
        },
    }
}

/// Reads an optional count: empty or `auto` means none (chosen at start-up).
fn optional_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        N(u32),
        S(String),
    }
    match Option::<Repr>::deserialize(d)? {
        None => Ok(None),
        Some(Repr::N(n)) => Ok(Some(n)),
        Some(Repr::S(s)) => match s.trim() {
            "" | "auto" => Ok(None),
            n => n.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("expected a count or auto, got {n:?}"))
            }),
        },
    }
}

/// Reads an optional path: an empty value means none.
fn optional_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(PathBuf::from))
}

/// Tokens that are somebody's example, not a secret.
const PLACEHOLDER_TOKENS: [&str; 9] = [
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "admin",
    "password",
    "token",
    "example",
    "replace-me",
];

/// The currency setting (`FLASHGATE_CURRENCY`): an ISO 4217 code (three capitals) when set,
/// and set when `needed` (by `what`: grants, an event sink), since a price without its
/// currency is a guess.
pub fn check_currency(currency: &str, needed: bool, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !currency.is_empty() || !needed,
        "{what} is on: set FLASHGATE_CURRENCY to the shop's currency (ISO 4217, as EUR); there \
         is no default (FLASHGATE_EVENTS_CURRENCY is now FLASHGATE_CURRENCY)"
    );
    anyhow::ensure!(
        currency.is_empty()
            || (currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())),
        "FLASHGATE_CURRENCY must be an ISO 4217 code (three capitals, as EUR), not {currency:?}"
    );
    Ok(())
}

/// The admin token, if set, must be a real secret: 32 characters or more, not a placeholder
/// (nor one padded out with repeats of itself), not one character repeated.
fn check_admin_token(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        return Ok(()); // admin API off
    }
    let lower = token.to_ascii_lowercase();
    anyhow::ensure!(
        token.chars().count() >= 32,
        "admin_token is shorter than 32 characters: generate one (openssl rand -hex 32)"
    );
    let placeholder = PLACEHOLDER_TOKENS.iter().any(|p| {
        lower.contains(p)
            && lower
                .replace(p, "")
                .trim_matches(['-', '_', '0', '1'])
                .is_empty()
    });
    let one_char = lower.chars().all(|c| lower.starts_with(c));
    anyhow::ensure!(
        !placeholder && !one_char,
        "admin_token is a placeholder, not a secret: generate one (openssl rand -hex 32)"
    );
    Ok(())
}

/// The prefix of every setting's environment variable.
pub const ENV_PREFIX: &str = "FLASHGATE_";

/// `message` with every setting it names (`checkout_url`) written as the variable an operator
/// sets (`FLASHGATE_CHECKOUT_URL`): start-up refusals speak the operator's language. Only names
/// with an underscore are taken (a bare `listen` or `currency` is also an English word).
pub fn name_variables(message: &str) -> String {
    let mut out = message.to_string();
    for field in Settings::field_names().iter().filter(|f| f.contains('_')) {
        let var = format!("{ENV_PREFIX}{}", field.to_uppercase());
        let mut done = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(field.as_str()) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + field.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            done.push_str(&rest[..at]);
            done.push_str(if word(before) || word(after) {
                field
            } else {
                &var
            });
            rest = &rest[at + field.len()..];
        }
        done.push_str(rest);
        out = done;
    }
    out
}

impl Settings {
    /// Defaults, then `flashgate.toml` (or the file `FLASHGATE_CONFIG` names), then the environment.
    pub fn load() -> anyhow::Result<Self> {
        let path = std::env::var("FLASHGATE_CONFIG").unwrap_or_else(|_| "flashgate.toml".into());
        Self::from_figment(
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(&path)),
        )
    }

    /// The fields' names, as in `flashgate.toml`; each one's variable is `FLASHGATE_` + it in
    /// capitals. Derived from the struct, so a new field is a new variable with nothing to add.
    pub fn field_names() -> Vec<String> {
        match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => unreachable!("Settings serialises to an object"),
        }
    }

    /// `base` (defaults and file), then the `FLASHGATE_*` variables of the fields, checked.
    /// Other `FLASHGATE_*` variables (`FLASHGATE_LOG`, `FLASHGATE_THREADS`, …) are not settings
    /// of this struct and are left to whoever reads them. A variable set to the empty string is
    /// taken as not set (what a compose file passes for an unset `${VAR:-}`), so the setting
    /// keeps its default or the file's value.
    pub fn from_figment(base: Figment) -> anyhow::Result<Self> {
        let fields = Self::field_names();
        let empty: Vec<String> = std::env::vars_os()
            .filter(|(_, v)| v.is_empty())
            .filter_map(|(k, _)| {
                let k = k.to_str()?.to_ascii_uppercase();
                k.strip_prefix(ENV_PREFIX).map(str::to_owned)
            })
            .collect();
        let env = Env::prefixed(ENV_PREFIX).filter(move |key| {
            fields.iter().any(|f| key.as_str().eq_ignore_ascii_case(f))
                && !empty.iter().any(|e| key.as_str().eq_ignore_ascii_case(e))
        });
        let settings: Settings = base.merge(env).extract().map_err(|e| {
            // figment's message names the field and where its value came from
            anyhow::anyhow!("{}", e.to_string().replace("\n", "; "))
        })?;
        settings
            .validate()
            .map_err(|e| anyhow::anyhow!("{}", name_variables(&format!("{e:#}"))))?;
        Ok(settings)
    }

    /// Where the admin API listens, if it is on (a token is set and `admin_listen` is not `off`).
    pub fn admin_address(&self) -> Option<&str> {
        let off = self.admin_token.is_empty()
            || self.admin_listen.is_empty()
            || self.admin_listen.eq_ignore_ascii_case("off");
        (!off).then_some(self.admin_listen.as_str())
    }

    /// Refuses settings that would make the scripts divide by zero or the worker spin.
    /// The Argon2id cost new password hashes are made with.
    pub fn password_cost(&self) -> crate::accounts::password::Cost {
        crate::accounts::password::Cost {
            memory_kib: self.password_memory_kib,
            iterations: self.password_iterations,
            lanes: self.password_lanes,
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.user_rate > 0.0, "user_rate must be > 0");
        anyhow::ensure!(self.gate_rate > 0.0, "gate_rate must be > 0");
        anyhow::ensure!(self.user_burst >= 1, "user_burst must be >= 1");
        anyhow::ensure!(self.gate_burst >= 1, "gate_burst must be >= 1");
        anyhow::ensure!(
            (1..=1000).contains(&self.batch_size),
            "batch_size must be 1..=1000"
        );
        for (name, ms) in [
            ("header_timeout_ms", self.header_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
        ] {
            anyhow::ensure!(ms >= 100, "{name} must be >= 100");
        }
        anyhow::ensure!(self.max_connections >= 1, "max_connections must be >= 1");
        anyhow::ensure!(
            (1..=100).contains(&self.captcha_wrong_max),
            "captcha_wrong_max must be 1..=100 (FLASHGATE_CAPTCHA_WRONG_MAX)"
        );
        anyhow::ensure!(
            self.max_connections_per_address >= 1,
            "max_connections_per_address must be >= 1 (FLASHGATE_MAX_CONNECTIONS_PER_ADDRESS)"
        );
        anyhow::ensure!(
            self.push_per_address >= 1,
            "push_per_address must be >= 1 (FLASHGATE_PUSH_PER_ADDRESS)"
        );
        anyhow::ensure!(
            (10..=10_000).contains(&self.redis_ack_timeout_ms),
            "redis_ack_timeout_ms must be within 10..=10000"
        );
        anyhow::ensure!(
            (1..=256).contains(&self.admit_batch),
            "admit_batch must be 1..=256"
        );
        anyhow::ensure!(
            self.login_fails_per_mobile >= 1 && self.login_fails_per_address >= 1,
            "login_fails_per_mobile and login_fails_per_address must be >= 1"
        );
        self.password_cost().check().map_err(|e| {
            anyhow::anyhow!("{e} (FLASHGATE_PASSWORD_MEMORY_KIB, _ITERATIONS, _LANES)")
        })?;
        anyhow::ensure!(
            (1..=64).contains(&self.login_threads),
            "login_threads must be 1..=64"
        );
        anyhow::ensure!(
            (0..=19).contains(&self.login_nice),
            "login_nice must be 0..=19"
        );
        crate::http::proxy::Trusted::parse(&self.trusted_proxies)?;
        check_admin_token(&self.admin_token)?;
        if !self.grant_redeem_token.is_empty() {
            check_admin_token(&self.grant_redeem_token).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string().replace("admin_token", "grant_redeem_token")
                )
            })?;
        }
        if let Some(admin) = self.admin_address() {
            // (two `:0` addresses are two different free ports)
            anyhow::ensure!(
                admin != self.listen || admin.ends_with(":0"),
                "admin_listen must not be the public address {}",
                self.listen
            );
        }
        anyhow::ensure!(
            !self.namespace.contains(['{', '}']),
            "namespace must not contain braces (they would break the hash tags)"
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    fn defaults() -> Figment {
        Figment::from(Serialized::defaults(Settings::default()))
    }

    #[test]
    fn env_overrides_defaults_and_other_flashgate_variables_are_left_alone() {
        Jail::expect_with(|jail| {
            jail.set_env("FLASHGATE_CAPTCHA", "off");
            jail.set_env("FLASHGATE_QUEUE", "rabbitmq");
            jail.set_env("FLASHGATE_BATCH_SIZE", "250");
            jail.set_env("FLASHGATE_LUA_DIR", "");
            jail.set_env("FLASHGATE_THREADS", "3"); // read by main, not a setting
            let s = Settings::from_figment(defaults()).unwrap();
            assert!(!s.captcha);
            assert_eq!(s.queue, QueueKind::Rabbitmq);
            assert_eq!(s.batch_size, 250);
            assert_eq!(s.lua_dir, None);
            assert_eq!(s.listen, "127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn an_empty_variable_means_not_set() {
        Jail::expect_with(|jail| {
            jail.create_file("flashgate.toml", "batch_size = 300")?;
            jail.set_env("FLASHGATE_ADMIT_BATCH", "");
            jail.set_env("FLASHGATE_BATCH_SIZE", "");
            jail.set_env("FLASHGATE_CAPTCHA", "");
            jail.set_env("FLASHGATE_ADMIN_TOKEN", "");
            let base = defaults().merge(Toml::file("flashgate.toml"));
            let s = Settings::from_figment(base).unwrap();
            let d = Settings::default();
            assert_eq!(s.admit_batch, d.admit_batch);
            assert_eq!(s.batch_size, 300, "the file's value stays");
            assert_eq!(s.captcha, d.captcha);
            assert_eq!(s.admin_token, d.admin_token);
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_or_setting_named() {
        Jail::expect_with(|jail| {
            jail.set_env("FLASHGATE_BATCH_SIZE", "lots");
            let err = Settings::from_figment(defaults()).unwrap_err().to_string();
            assert!(
                err.contains("BATCH_SIZE") && err.contains("FLASHGATE_"),
                "{err}"
            );
            jail.set_env("FLASHGATE_BATCH_SIZE", "100");
            jail.set_env("FLASHGATE_USER_RATE", "0");
            let err = Settings::from_figment(defaults()).unwrap_err().to_string();
            assert!(err.contains("FLASHGATE_USER_RATE"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn refusals_name_the_variables_not_the_fields() {
        assert_eq!(
            name_variables("checkout_url needs grant_key; admin_listen, not listen"),
            "FLASHGATE_CHECKOUT_URL needs FLASHGATE_GRANT_KEY; FLASHGATE_ADMIN_LISTEN, not listen"
        );
        // a variable already named stays as it is
        assert_eq!(
            name_variables("FLASHGATE_GRANT_KEY is set"),
            "FLASHGATE_GRANT_KEY is set"
        );
    }

    #[test]
    fn the_file_comes_between_defaults_and_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "flashgate.toml",
                "captcha = false\nnamespace = \"x:\"\nwriters = 2",
            )?;
            jail.set_env("FLASHGATE_WRITERS", "3");
            let s = Settings::from_figment(defaults().merge(Toml::file("flashgate.toml"))).unwrap();
            assert!(!s.captcha);
            assert_eq!(s.namespace, "x:");
            assert_eq!(s.writers, 3);
            jail.create_file("bad.toml", "nonsense = 1")?;
            assert!(Settings::from_figment(defaults().merge(Toml::file("bad.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn weak_admin_tokens_refuse_to_start() {
        let with = |token: &str| {
            let s = Settings {
                admin_token: token.into(),
                ..Settings::default()
            };
            s.validate()
        };
        assert!(with("").is_ok(), "no token: admin API off");
        assert!(with("change-me").is_err());
        assert!(with("short-but-random-9f8e7d").is_err());
        assert!(with("change-me-change-me-change-me-change-me").is_err());
        assert!(with(&"a".repeat(40)).is_err());
        assert!(with("8f14e45fceea167a5a36dedd4bea2543f2a8d6c1").is_ok());
        let same = Settings {
            admin_token: "8f14e45fceea167a5a36dedd4bea2543f2a8d6c1".into(),
            admin_listen: "127.0.0.1:8080".into(),
            ..Settings::default()
        };
        assert!(same.validate().is_err(), "admin on the public address");
    }

    #[test]
    fn every_field_has_a_variable() {
        let names = Settings::field_names();
        assert!(names.contains(&"redis_url".to_string()));
        assert!(names.contains(&"lua_dir".to_string()));
        assert_eq!(names.len(), 84);
    }
}
