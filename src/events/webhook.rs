//! Webhooks by the Standard Webhooks specification: each event is one `POST` of its CloudEvents
//! body with `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix
//! seconds) and `webhook-signature` (`v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`
//! keyed with the secret's bytes; one such signature per secret, space separated, while a secret
//! is rotated).
//!
//! What an answer means ([`Outcome`]): 2xx delivered; 408, 429 (its `Retry-After` honoured),
//! 5xx, a timeout or a refused connection: try again later; 410 Gone: the endpoint is disabled
//! until an operator enables it; any other answer (another 4xx, a redirect, which is never
//! followed): parked at once. The answer's body is read up to [`MAX_ANSWER`] and dropped.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// At most this much of an endpoint's answer is read.
pub const MAX_ANSWER: usize = 64 * 1024;
/// A `Retry-After` longer than this is taken as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The secrets of `webhook_secret`: `whsec_` + base64, comma separated (two while rotating).
pub fn parse_secrets(raw: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for s in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let b64 = s.strip_prefix("whsec_").ok_or_else(|| {
            anyhow::anyhow!("webhook_secret must be whsec_ followed by base64 (Standard Webhooks)")
        })?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| anyhow::anyhow!("webhook_secret: what follows whsec_ is not base64"))?;
        anyhow::ensure!(
            (24..=64).contains(&key.len()),
            "webhook_secret: the key must be 24 to 64 bytes, got {}",
            key.len()
        );
        out.push(key);
    }
    anyhow::ensure!(
        out.len() <= 2,
        "webhook_secret holds at most two secrets (while rotating)"
    );
    Ok(out)
}

/// The `webhook-signature` header for one message: a `v1,SIG` per secret, space separated.
pub fn signature(secrets: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key size");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again, not before `after` if the endpoint said so (429's `Retry-After`).
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// Never again (an operator may replay it).
    Park {
        why: String,
    },
    /// 410 Gone: the endpoint is disabled; the event stays pending for when it is enabled.
    Disable {
        why: String,
    },
}

/// An HTTP client for webhooks: keep-alive, no redirects followed, the timeout given.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .pool_max_idle_per_host(1024)
        .build()
        .expect("a reqwest client without TLS settings builds")
}

/// Sends one event to `url`.
pub async fn send(
    client: &reqwest::Client,
    url: reqwest::Url,
    secrets: &[Vec<u8>],
    id: &str,
    body: Vec<u8>,
) -> Outcome {
    let timestamp = crate::plumbing::clock::now_ms() / 1000;
    let sig = signature(secrets, id, timestamp, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                "could not connect".to_string()
            } else {
                format!("request failed: {e}")
            };
            return Outcome::Retry { why, after: None };
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    // read (a bounded part of) the answer, so the connection can be kept
    let mut read = 0;
    while read < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(c)) => read += c.len(),
            _ => break,
        }
    }
    classify(status.as_u16(), retry_after)
}

/// What an endpoint's status means.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        410 => Outcome::Disable {
            why: "410 Gone".into(),
        },
        429 => Outcome::Retry {
            why: "429 Too Many Requests".into(),
            after: Some(retry_after.unwrap_or(Duration::from_secs(1))),
        },
        408 | 500..=599 => Outcome::Retry {
            why: format!("answered {status}"),
            after: retry_after.filter(|_| status == 503),
        },
        _ => Outcome::Park {
            why: format!("answered {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of `docs/events.md`, read from the doc: a fixed secret, id, timestamp and
    /// body, and the signature they give.
    #[test]
    fn the_documented_signature_vector_holds() {
        let doc = include_str!("../../docs/events.md");
        let field = |name: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("docs/events.md has no `{name}:` line"))
                .trim()
                .trim_matches('`')
                .to_string()
        };
        let secrets = parse_secrets(&field("secret")).unwrap();
        let ts: i64 = field("timestamp").parse().unwrap();
        let sig = signature(&secrets, &field("webhook-id"), ts, field("body").as_bytes());
        assert_eq!(sig, field("webhook-signature"));
    }

    #[test]
    fn two_secrets_sign_side_by_side() {
        let a = parse_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let both = parse_secrets(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_dGVzdHNlY3JldC10ZXN0c2VjcmV0LTIwMjY=",
        )
        .unwrap();
        let one = signature(&a, "id", 1, b"{}");
        let two = signature(&both, "id", 1, b"{}");
        assert!(
            two.starts_with(&one) && two.split(' ').count() == 2,
            "{two}"
        );
    }

    #[test]
    fn answers_mean_what_the_spec_says() {
        assert_eq!(classify(204, None), Outcome::Delivered);
        assert!(matches!(classify(410, None), Outcome::Disable { .. }));
        assert!(matches!(classify(404, None), Outcome::Park { .. }));
        assert!(matches!(classify(301, None), Outcome::Park { .. }));
        assert!(matches!(
            classify(500, None),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(classify(408, None), Outcome::Retry { .. }));
        assert_eq!(
            classify(429, Some(Duration::from_secs(7))),
            Outcome::Retry {
                why: "429 Too Many Requests".into(),
                after: Some(Duration::from_secs(7))
            }
        );
    }
}
