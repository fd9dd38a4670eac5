//! Configuration: one typed struct, layered as defaults, then an optional `flashgate.toml`, then
//! `FLASHGATE_*` environment variables.
//!
//! Every setting is one field of [`Settings`]; its environment name is the field name upper-cased
//! behind `FLASHGATE_` (`redis_url` is `FLASHGATE_REDIS_URL`), its default is in
//! `Settings::default`, and its doc comment says what it does.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where admitted requests travel from the Redis stream to the order writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Workers read the stream with a consumer group and write MySQL directly.
    Redis,
    /// A relay moves stream entries into a durable RabbitMQ queue; consumers write MySQL.
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the edge listens on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Redis the sales live in.
    pub redis_url: String,
    /// MySQL/MariaDB the orders are written to.
    pub database_url: String,
    /// RabbitMQ, used when `queue = "rabbitmq"`.
    pub amqp_url: String,
    /// `redis` or `rabbitmq`: how admitted requests reach the order writer.
    pub queue: QueueKind,
    /// Prepended to every Redis key and channel (empty by default): lets tests share one Redis.
    pub namespace: String,
    /// `on` or `off`: off skips the captcha (for load tests) and says so loudly in the log.
    pub captcha: bool,
    /// Bearer token for `/api/admin/*`; empty disables the admin API.
    pub admin_token: String,
    /// A directory whose `*.lua` files replace the embedded scripts of the same name.
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
    /// Order-writer tasks per process (RabbitMQ consumers).
    pub consumers: usize,
    /// MySQL batches of one sale a worker writes at once (each on its own connection).
    pub writers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            redis_url: "redis://127.0.0.1:6379/".into(),
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
            batch_size: 1000,
            claim_idle_ms: 30_000,
            max_deliveries: 5,
            unpaid_timeout_secs: 30 * 60,
            closer_interval_ms: 5_000,
            consumers: 2,
            writers: 4,
        }
    }
}

/// Parses `on`/`off` (and the usual true/false spellings).
fn parse_switch(s: &str) -> anyhow::Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => anyhow::bail!("expected on or off, got {other:?}"),
    }
}

impl Settings {
    /// Defaults, then `flashgate.toml` (or the file `FLASHGATE_CONFIG` names), then the environment.
    pub fn load() -> anyhow::Result<Self> {
        let path = std::env::var("FLASHGATE_CONFIG").unwrap_or_else(|_| "flashgate.toml".into());
        let mut settings = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {path}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        settings.apply_env(|name| std::env::var(name).ok())?;
        Ok(settings)
    }

    /// Overrides each field whose `FLASHGATE_*` variable `get` returns.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn set<T: FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &str,
            field: &mut T,
        ) -> anyhow::Result<()>
        where
            T::Err: std::fmt::Display,
        {
            let var = format!("FLASHGATE_{name}");
            if let Some(v) = get(&var) {
                *field = v.parse().map_err(|e| anyhow::anyhow!("{var}={v:?}: {e}"))?;
            }
            Ok(())
        }
        set(&get, "LISTEN", &mut self.listen)?;
        set(&get, "REDIS_URL", &mut self.redis_url)?;
        set(&get, "DATABASE_URL", &mut self.database_url)?;
        set(&get, "AMQP_URL", &mut self.amqp_url)?;
        set(&get, "QUEUE", &mut self.queue)?;
        set(&get, "NAMESPACE", &mut self.namespace)?;
        if let Some(v) = get("FLASHGATE_CAPTCHA") {
            self.captcha = parse_switch(&v).context("FLASHGATE_CAPTCHA")?;
        }
        set(&get, "ADMIN_TOKEN", &mut self.admin_token)?;
        if let Some(v) = get("FLASHGATE_LUA_DIR") {
            self.lua_dir = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        set(&get, "PUBLIC_DIR", &mut self.public_dir)?;
        set(&get, "USER_RATE", &mut self.user_rate)?;
        set(&get, "USER_BURST", &mut self.user_burst)?;
        set(&get, "GATE_RATE", &mut self.gate_rate)?;
        set(&get, "GATE_BURST", &mut self.gate_burst)?;
        set(&get, "PATH_FACTOR", &mut self.path_factor)?;
        set(&get, "BATCH_SIZE", &mut self.batch_size)?;
        set(&get, "CLAIM_IDLE_MS", &mut self.claim_idle_ms)?;
        set(&get, "MAX_DELIVERIES", &mut self.max_deliveries)?;
        set(&get, "UNPAID_TIMEOUT_SECS", &mut self.unpaid_timeout_secs)?;
        set(&get, "CLOSER_INTERVAL_MS", &mut self.closer_interval_ms)?;
        set(&get, "CONSUMERS", &mut self.consumers)?;
        set(&get, "WRITERS", &mut self.writers)?;
        self.validate()
    }

    /// Refuses settings that would make the scripts divide by zero or the worker spin.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.user_rate > 0.0, "user_rate must be > 0");
        anyhow::ensure!(self.gate_rate > 0.0, "gate_rate must be > 0");
        anyhow::ensure!(self.user_burst >= 1, "user_burst must be >= 1");
        anyhow::ensure!(self.gate_burst >= 1, "gate_burst must be >= 1");
        anyhow::ensure!(
            (1..=1000).contains(&self.batch_size),
            "batch_size must be 1..=1000"
        );
        anyhow::ensure!(
            !self.namespace.contains(['{', '}']),
            "namespace must not contain braces (they would break the hash tags)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults() {
        let mut s = Settings::default();
        s.apply_env(|k| match k {
            "FLASHGATE_CAPTCHA" => Some("off".into()),
            "FLASHGATE_QUEUE" => Some("rabbitmq".into()),
            "FLASHGATE_BATCH_SIZE" => Some("250".into()),
            _ => None,
        })
        .unwrap();
        assert!(!s.captcha);
        assert_eq!(s.queue, QueueKind::Rabbitmq);
        assert_eq!(s.batch_size, 250);
        assert_eq!(s.listen, "127.0.0.1:8080");
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_name() {
        let mut s = Settings::default();
        let err = s
            .apply_env(|k| (k == "FLASHGATE_BATCH_SIZE").then(|| "lots".into()))
            .unwrap_err();
        assert!(err.to_string().contains("FLASHGATE_BATCH_SIZE"), "{err}");
        let err = s
            .apply_env(|k| (k == "FLASHGATE_USER_RATE").then(|| "0".into()))
            .unwrap_err();
        assert!(err.to_string().contains("user_rate"), "{err}");
    }

    #[test]
    fn toml_file_fields_match_the_struct() {
        let s: Settings = toml::from_str("captcha = false\nnamespace = \"x:\"").unwrap();
        assert!(!s.captcha);
        assert_eq!(s.namespace, "x:");
        assert!(toml::from_str::<Settings>("nonsense = 1").is_err());
    }
}
