//! Orders out: the shop's order system hears of every order, exactly once per event (at least
//! once on the wire, deduplicated by the event id), at a pace it sets. `docs/events.md` is the
//! receiver's side; the runbook has the operator's.
//!
//! - [`outbox`]: the events (`flashgate.order.created`, `.paid`, `.closed`, `.failed`) written in
//!   the same MySQL transaction as the change they report: a worker batch's created events as one
//!   batch row per sink, the others with one delivery row per sink. Nothing is written while no
//!   sink is configured.
//! - [`relay`]: in the worker process, per sink: claims due deliveries and pending batches with
//!   `FOR UPDATE SKIP LOCKED` (several workers share one outbox, none sends what another is
//!   sending), never an order's later event while an earlier one is pending, sends them (bounded
//!   in flight, at the sink's rate), and records what happened in the same transaction; a crash
//!   redelivers.
//! - [`webhook`]: Standard Webhooks: the signature, the request, what each answer means.
//! - [`cloud`]: the CloudEvents 1.0 body.
//! - [`ops`]: what operators see and steer (`flashgate events status|replay|enable`, metrics).
//!
//! The worker's order writing never waits for a sink: the backlog waits in MySQL, not in memory.

pub mod cloud;
pub mod ops;
pub mod outbox;
pub mod relay;
pub mod webhook;

use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::plumbing::config::Settings;

/// The kinds of order events, as stored (`order_event.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Created = 0,
    Paid = 1,
    Closed = 2,
    Failed = 3,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Created,
        EventType::Paid,
        EventType::Closed,
        EventType::Failed,
    ];

    /// The CloudEvents `type` (and the RabbitMQ routing key).
    pub fn name(self) -> &'static str {
        match self {
            EventType::Created => "flashgate.order.created",
            EventType::Paid => "flashgate.order.paid",
            EventType::Closed => "flashgate.order.closed",
            EventType::Failed => "flashgate.order.failed",
        }
    }

    pub fn from_i8(v: i8) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| *t as i8 == v)
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// An HTTP endpoint (Standard Webhooks).
    Webhook { url: String },
    /// A RabbitMQ topic exchange.
    Rabbit { exchange: String },
}

/// One configured sink, named for the operators (`webhook-1a2b3c4d`: the URL's hash, so the
/// name stays when the list is reordered; `rabbitmq-EXCHANGE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
}

impl Sink {
    pub fn target(&self) -> &str {
        match &self.kind {
            SinkKind::Webhook { url } => url,
            SinkKind::Rabbit { exchange } => exchange,
        }
    }
}

/// Everything the settings say about orders out, checked.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub sinks: Vec<Sink>,
    /// The webhook secrets' keys (decoded), the first the current one.
    pub secrets: Vec<Vec<u8>>,
    pub rate: f64,
    pub in_flight: usize,
    pub timeout: Duration,
    pub horizon: Duration,
    /// How long a relay gives way to order writing that is behind, at most (`relay`).
    pub give_way: Duration,
    pub source: String,
    pub currency: String,
}

impl EventSettings {
    /// Reads and checks the settings; refuses (saying which and why) what cannot work.
    pub fn from_settings(s: &Settings) -> anyhow::Result<EventSettings> {
        let mut sinks = Vec::new();
        for url in s
            .webhook_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("webhook_url {url:?} is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some(),
                "webhook_url {url:?} must be an http(s) URL"
            );
            let hash = hex::encode(Sha1::digest(url.as_bytes()));
            sinks.push(Sink {
                name: format!("webhook-{}", &hash[..8]),
                kind: SinkKind::Webhook { url: url.into() },
            });
        }
        let secrets = webhook::parse_secrets(&s.webhook_secret)?;
        anyhow::ensure!(
            sinks.is_empty() || !secrets.is_empty(),
            "webhook_url needs webhook_secret (whsec_ + base64: the receiver checks the signature)"
        );
        let exchange = s.events_exchange.trim();
        if !exchange.is_empty() {
            anyhow::ensure!(
                exchange.len() <= 255
                    && exchange
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                    && !exchange.starts_with("amq."),
                "events_exchange {exchange:?}: RabbitMQ takes up to 255 of [A-Za-z0-9-_.:], not \
                 starting with amq."
            );
            sinks.push(Sink {
                name: format!("rabbitmq-{exchange}"),
                kind: SinkKind::Rabbit {
                    exchange: exchange.into(),
                },
            });
        }
        anyhow::ensure!(
            s.webhook_rate.is_finite() && s.webhook_rate > 0.0,
            "webhook_rate must be more than 0 events per second"
        );
        anyhow::ensure!(
            (1..=1024).contains(&s.webhook_in_flight),
            "webhook_in_flight must be 1..=1024"
        );
        anyhow::ensure!(
            (100..=120_000).contains(&s.webhook_timeout_ms),
            "webhook_timeout_ms must be 100..=120000"
        );
        anyhow::ensure!(
            s.events_retry_horizon_s >= 1,
            "events_retry_horizon_s must be at least 1"
        );
        anyhow::ensure!(
            s.events_give_way_ms <= 60_000,
            "events_give_way_ms must be 0..=60000"
        );
        anyhow::ensure!(
            !s.events_source.is_empty(),
            "events_source must not be empty"
        );
        crate::plumbing::config::check_currency(&s.currency, !sinks.is_empty(), "an event sink")?;
        Ok(EventSettings {
            sinks,
            secrets,
            rate: s.webhook_rate,
            in_flight: s.webhook_in_flight,
            timeout: Duration::from_millis(s.webhook_timeout_ms),
            horizon: Duration::from_secs(s.events_retry_horizon_s),
            give_way: Duration::from_millis(s.events_give_way_ms),
            source: s.events_source.clone(),
            currency: s.currency.clone(),
        })
    }

    /// Whether any sink is configured (else nothing is written).
    pub fn on(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// The sinks' names, for the delivery rows.
    pub fn sink_names(&self) -> Vec<&str> {
        self.sinks.iter().map(|s| s.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl Fn(&mut Settings)) -> Result<EventSettings, String> {
        let mut s = Settings {
            currency: "EUR".into(),
            ..Settings::default()
        };
        f(&mut s);
        EventSettings::from_settings(&s).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_that_cannot_work_refuse_to_start_saying_which() {
        assert!(!with(|_| {}).unwrap().on(), "off by default");
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let ok = with(|s| {
            s.webhook_url = "http://127.0.0.1:9/hook".into();
            s.webhook_secret = secret.into();
        })
        .unwrap();
        assert_eq!(ok.sinks.len(), 1);
        assert!(ok.sinks[0].name.starts_with("webhook-"));
        let err = |f: &dyn Fn(&mut Settings)| {
            with(|s| {
                s.webhook_url = "http://127.0.0.1:9/hook".into();
                s.webhook_secret = secret.into();
                f(s)
            })
            .unwrap_err()
        };
        assert!(err(&|s| s.webhook_url = "ftp://x/y".into()).contains("http(s)"));
        assert!(err(&|s| s.webhook_url = "not a url".into()).contains("not a URL"));
        assert!(err(&|s| s.webhook_secret = "hunter2".into()).contains("whsec_"));
        assert!(err(&|s| s.webhook_secret = "whsec_!!!".into()).contains("base64"));
        assert!(err(&|s| s.webhook_secret = String::new()).contains("webhook_secret"));
        assert!(err(&|s| s.webhook_rate = 0.0).contains("webhook_rate"));
        assert!(err(&|s| s.webhook_rate = -5.0).contains("webhook_rate"));
        assert!(err(&|s| s.events_exchange = "amq.topic".into()).contains("events_exchange"));
        assert!(err(&|s| s.events_exchange = "bad name!".into()).contains("events_exchange"));
        // no currency by default: a sink without one refuses, naming the variable
        assert!(err(&|s| s.currency.clear()).contains("FLASHGATE_CURRENCY"));
        assert!(err(&|s| s.currency = "eur".into()).contains("FLASHGATE_CURRENCY"));
        let two = with(|s| {
            s.webhook_url = "http://127.0.0.1:9/a, https://shop.example/b".into();
            s.webhook_secret = format!("{secret}, whsec_dGVzdHNlY3JldC10ZXN0c2VjcmV0LTIwMjY=");
            s.events_exchange = "shop.orders".into();
        })
        .unwrap();
        assert_eq!(two.sinks.len(), 3);
        assert_eq!(two.secrets.len(), 2);
        assert_eq!(two.sinks[2].name, "rabbitmq-shop.orders");
    }
}
