//! The shop's JWT at the door: verified once per edge, remembered until its `exp`.
//!
//! A token is judged at the edge and never reaches Redis or MySQL unless it is good. In order:
//! its size (8 KiB at most) and shape (three base64url parts, a JSON header and claims); its
//! algorithm (`none` never; only those `jwt_algorithms` names: EdDSA, ES256, RS256 by default);
//! its key, by `kid`, from the shop's key set (JWKS) or the fixed key, used only with the
//! algorithm of its own family and the JWK's own `alg` if it names one (no RS/HS confusion); the
//! signature; `exp` (required), `nbf`, `iss`, `aud` with `jwt_leeway_s`; the user claim (a
//! string of 1 to 255 bytes). Each failure has its own code (`TokenFault`).
//!
//! **Verified once.** A good token's subject and `exp` are kept in a lock-free map keyed by the
//! token's SHA-256 (32 bytes, whatever the token's length), so the next request with it costs a
//! hash and a lookup, no signature check. The map is bounded (`jwt_cache_entries`; past it a
//! token is verified every time) and tidied of expired entries off the async workers. A key that
//! leaves the shop's set takes the tokens verified with it out of the map.
//!
//! **The key set** is fetched at start, every [`REFRESH`], and when a token names a `kid` it does
//! not have: at most once per `jwt_jwks_refetch_s` (30 s) and one fetch at a time, so a flood of
//! made-up `kid`s costs the shop one request per 30 s. A failed fetch keeps the last good set;
//! while there never was one (the shop's key set unreachable at start), the edge is not ready
//! (`/readyz` 503, saying why) and fetches again every `jwt_jwks_refetch_s`.
//! Fetches follow no redirect, give up after [`FETCH_TIMEOUT`] and read at most [`MAX_JWKS`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use crate::error::{AppError, TokenFault};
use crate::plumbing::config::Settings;
use crate::plumbing::metrics::Metrics;

/// A token longer than this is refused unread.
pub const MAX_TOKEN: usize = 8 * 1024;
/// The longest user claim taken, in bytes.
pub const MAX_SUBJECT: usize = 255;

/// A subject is taken only in one spelling: no whitespace at either end and no control
/// character anywhere. MySQL stores it byte for byte (`users.subject` is VARBINARY), but a shop
/// that trims, or a log that hides a trailing tab, would still see two shoppers as one.
pub fn subject_is_safe(subject: &str) -> bool {
    subject.trim() == subject && !subject.chars().any(char::is_control)
}
/// The key set is fetched again this often even when no token asks for it (a key that left the
/// set is noticed by then).
pub const REFRESH: Duration = Duration::from_secs(300);
/// A key-set fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// A key set larger than this is refused (the last good one is kept).
pub const MAX_JWKS: usize = 1024 * 1024;

/// What the settings say a token must be.
#[derive(Debug, Clone)]
pub struct Rules {
    pub algorithms: Vec<Algorithm>,
    pub issuer: String,
    pub audience: String,
    pub leeway: u64,
    pub user_claim: String,
}

impl Rules {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Rules> {
        let mut algorithms = Vec::new();
        for name in s
            .jwt_algorithms
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            anyhow::ensure!(
                !name.eq_ignore_ascii_case("none"),
                "jwt_algorithms must not name none (an unsigned token)"
            );
            let alg = Algorithm::from_str(name)
                .map_err(|_| anyhow::anyhow!("jwt_algorithms: unknown algorithm {name:?}"))?;
            algorithms.push(alg);
        }
        anyhow::ensure!(!algorithms.is_empty(), "jwt_algorithms names no algorithm");
        if s.auth != crate::plumbing::config::AuthMode::Session {
            anyhow::ensure!(
                !s.jwt_issuer.is_empty() && !s.jwt_audience.is_empty(),
                "auth = {:?} needs jwt_issuer and jwt_audience (the shop's iss and the aud its \
                 tokens carry for flashgate)",
                s.auth
            );
            anyhow::ensure!(
                !s.jwt_user_claim.is_empty(),
                "jwt_user_claim must not be empty"
            );
            anyhow::ensure!(s.jwt_leeway_s <= 300, "jwt_leeway_s must be at most 300");
        }
        if !s.jwt_jwks_url.is_empty() {
            let url = reqwest::Url::parse(&s.jwt_jwks_url)
                .map_err(|e| anyhow::anyhow!("jwt_jwks_url is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && url.host().is_some(),
                "jwt_jwks_url must be an http(s) URL, got {:?}",
                s.jwt_jwks_url
            );
        }
        Ok(Rules {
            algorithms,
            issuer: s.jwt_issuer.clone(),
            audience: s.jwt_audience.clone(),
            leeway: s.jwt_leeway_s,
            user_claim: s.jwt_user_claim.clone(),
        })
    }
}

/// One key a token may be verified with.
#[derive(Clone)]
pub struct ShopKey {
    key: DecodingKey,
    /// The JWK's own `alg`, if it names one: the only algorithm the key is used with.
    alg: Option<Algorithm>,
}

impl ShopKey {
    /// Whether `alg` may be verified with this key (its own algorithm, or its family's).
    fn takes(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|a| a == alg) && self.key.family() == alg.family()
    }
}

/// The fixed key (`jwt_key`).
pub struct FixedKey;

impl FixedKey {
    /// A PEM (RSA, EC or Ed25519 public key), a JWK, or, only when `jwt_algorithms` names HS256,
    /// an HS256 secret; `None` when empty.
    pub fn parse(raw: &str, rules: &Rules) -> anyhow::Result<Option<ShopKey>> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.starts_with("-----BEGIN") {
            let pem = raw.as_bytes();
            let key = DecodingKey::from_ed_pem(pem)
                .or_else(|_| DecodingKey::from_ec_pem(pem))
                .or_else(|_| DecodingKey::from_rsa_pem(pem))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "jwt_key: the PEM does not parse as an Ed25519, EC (P-256) or RSA public key"
                    )
                })?;
            return Ok(Some(ShopKey { key, alg: None }));
        }
        if raw.starts_with('{') {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_str(raw)
                .map_err(|e| anyhow::anyhow!("jwt_key: the JWK does not parse: {e}"))?;
            return key_of(&jwk)
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("jwt_key: the JWK is not a key flashgate can use"));
        }
        anyhow::ensure!(
            rules.algorithms.contains(&Algorithm::HS256),
            "jwt_key is neither a PEM nor a JWK; a shared secret is taken only when \
             jwt_algorithms names HS256"
        );
        anyhow::ensure!(
            raw.len() >= 32,
            "jwt_key: an HS256 secret must be at least 32 bytes"
        );
        Ok(Some(ShopKey {
            key: DecodingKey::from_secret(raw.as_bytes())?,
            alg: Some(Algorithm::HS256),
        }))
    }
}

/// The key of one JWK, if flashgate can use it for signatures.
fn key_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<ShopKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(Algorithm::from_str(&a.to_string()).ok()?),
        None => None,
    };
    Some(ShopKey { key, alg })
}

/// A verified token, as remembered.
#[derive(Debug, Clone)]
pub struct Verified {
    pub subject: Arc<str>,
    /// `exp`, unix seconds.
    pub exp: i64,
    /// The key it was verified with (dropped from the map if the key leaves the set).
    kid: Option<Arc<str>>,
}

/// The shop's key set, as last fetched.
struct Jwks {
    url: String,
    client: reqwest::Client,
    keys: ArcSwap<HashMap<String, ShopKey>>,
    /// Held by the one fetch under way; holds when the last fetch started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    min_gap: Duration,
    /// Why the last fetch failed, while no set was ever fetched (`None` once one was): until
    /// then no shop token can verify, so the edge is not ready ([`ShopTokens::unready`]).
    never: std::sync::Mutex<Option<String>>,
}

/// The verifier an edge keeps (`AppState::shop_tokens`).
pub struct ShopTokens {
    rules: Rules,
    fixed: Option<ShopKey>,
    jwks: Option<Jwks>,
    verified: papaya::HashMap<[u8; 32], Verified>,
    cap: usize,
    metrics: Arc<Metrics>,
}

/// Seconds since the epoch.
fn now_s() -> i64 {
    crate::plumbing::clock::now_ms() / 1000
}

fn fault(f: TokenFault) -> AppError {
    AppError::ShopToken(f)
}

/// The header fields read before any key is chosen.
#[derive(serde::Deserialize)]
struct Head {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl ShopTokens {
    /// The verifier `settings` describe, if `auth` takes shop tokens. The key set is not fetched
    /// yet: [`ShopTokens::start`] does that.
    pub fn from_settings(
        s: &Settings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<ShopTokens>> {
        if s.auth == crate::plumbing::config::AuthMode::Session {
            return Ok(None);
        }
        let rules = Rules::from_settings(s)?;
        let fixed = FixedKey::parse(&s.jwt_key, &rules)?;
        let jwks = match s.jwt_jwks_url.is_empty() {
            true => None,
            false => Some(Jwks {
                url: s.jwt_jwks_url.clone(),
                client: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(FETCH_TIMEOUT)
                    .build()?,
                keys: ArcSwap::from_pointee(HashMap::new()),
                fetching: tokio::sync::Mutex::new(None),
                min_gap: Duration::from_secs(s.jwt_jwks_refetch_s),
                never: std::sync::Mutex::new(Some("not fetched yet".into())),
            }),
        };
        Ok(Some(ShopTokens {
            rules,
            fixed,
            jwks,
            verified: papaya::HashMap::new(),
            cap: s.jwt_cache_entries,
            metrics,
        }))
    }

    /// Fetches the key set (a failure is logged: the first token naming a key fetches again),
    /// then every [`REFRESH`] for as long as the verifier lives; every `jwt_jwks_refetch_s`
    /// while no set was ever fetched (the edge is not ready until one is).
    pub async fn start(self: &Arc<Self>) {
        let Some(jwks) = &self.jwks else {
            return;
        };
        self.fetch_now().await;
        let weak = Arc::downgrade(self);
        let soon = jwks.min_gap.max(Duration::from_secs(1));
        tokio::spawn(async move {
            let mut since = Instant::now();
            loop {
                tokio::time::sleep(soon).await;
                let Some(me) = weak.upgrade() else { return };
                if me.unready().is_some() || since.elapsed() >= REFRESH {
                    me.fetch_now().await;
                    since = Instant::now();
                }
            }
        });
    }

    /// Why this edge cannot verify any shop token yet, if it cannot: the key set
    /// (`jwt_jwks_url`, and no fixed `jwt_key`) was never fetched. `/readyz` answers 503 with it.
    pub fn unready(&self) -> Option<String> {
        let jwks = self.jwks.as_ref()?;
        if self.fixed.is_some() {
            return None;
        }
        let never = jwks.never.lock().expect("never lock").clone()?;
        Some(format!(
            "the shop's key set (FLASHGATE_JWT_JWKS_URL {}) was never fetched: {never}",
            jwks.url
        ))
    }

    /// Fetches the key set now, one fetch at a time.
    async fn fetch_now(&self) {
        let Some(jwks) = &self.jwks else { return };
        let mut last = jwks.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch(jwks).await;
    }

    /// One fetch: the new set replaces the old if it parses; tokens verified with a key that
    /// left are forgotten.
    async fn fetch(&self, jwks: &Jwks) {
        self.metrics.jwks_fetches.inc();
        match read_jwks(&jwks.client, &jwks.url).await {
            Ok(keys) => {
                let gone: Vec<String> = jwks
                    .keys
                    .load()
                    .keys()
                    .filter(|k| !keys.contains_key(*k))
                    .cloned()
                    .collect();
                tracing::info!(keys = keys.len(), url = %jwks.url, "the shop's key set fetched");
                jwks.keys.store(Arc::new(keys));
                *jwks.never.lock().expect("never lock") = None;
                if !gone.is_empty() {
                    let pinned = self.verified.pin();
                    pinned.retain(|_, v| {
                        v.kid
                            .as_ref()
                            .is_none_or(|k| !gone.iter().any(|g| g.as_str() == &**k))
                    });
                }
            }
            Err(e) => {
                self.metrics.jwks_fetch_failures.inc();
                let mut never = jwks.never.lock().expect("never lock");
                match never.as_mut() {
                    Some(why) => {
                        *why = format!("{e:#}");
                        tracing::warn!(error = %format!("{e:#}"), url = %jwks.url, "fetching the shop's key set failed and there is no earlier one: every shop token is refused and /readyz answers 503 until a fetch succeeds");
                    }
                    None => {
                        tracing::warn!(error = %format!("{e:#}"), url = %jwks.url, "fetching the shop's key set failed; the last good set is kept");
                    }
                }
            }
        }
    }

    /// The key named `kid`, fetching the set again if it is unknown and the last fetch is at
    /// least `jwt_jwks_refetch_s` old (one fetch at a time: the others wait for it, then look).
    async fn key_for(&self, kid: &str) -> Option<ShopKey> {
        let jwks = self.jwks.as_ref()?;
        if let Some(k) = jwks.keys.load().get(kid) {
            return Some(k.clone());
        }
        let mut last = jwks.fetching.lock().await;
        if let Some(k) = jwks.keys.load().get(kid) {
            return Some(k.clone());
        }
        if last.is_some_and(|t| t.elapsed() < jwks.min_gap) {
            return None;
        }
        *last = Some(Instant::now());
        self.fetch(jwks).await;
        jwks.keys.load().get(kid).cloned()
    }

    /// Verified tokens remembered now.
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }

    /// Drops remembered tokens past their `exp` (called off the async workers).
    pub fn tidy(&self) {
        let now = now_s() - self.rules.leeway as i64;
        self.verified.pin().retain(|_, v| v.exp >= now);
    }

    /// The shopper `token` names, if it is good (see the module comment for the order of
    /// checks); from this edge's verified copies when it has one.
    pub async fn verify(&self, token: &str) -> Result<Verified, AppError> {
        let r = self.verify_inner(token).await;
        if r.is_err() {
            self.metrics.shop_tokens_refused.inc();
        }
        r
    }

    async fn verify_inner(&self, token: &str) -> Result<Verified, AppError> {
        if token.len() > MAX_TOKEN || token.is_empty() {
            return Err(fault(TokenFault::Malformed));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_s();
        if let Some(v) = self.verified.pin().get(&digest) {
            if v.exp + self.rules.leeway as i64 >= now {
                self.metrics.shop_tokens_cached.inc();
                return Ok(v.clone());
            }
            return Err(fault(TokenFault::Expired));
        }
        let (alg, kid) = self.judge_shape(token)?;
        let key = match &kid {
            // no key set ever fetched: the token cannot be judged (503, try again), not refused
            Some(kid) if self.jwks.is_some() => {
                self.key_for(kid)
                    .await
                    .ok_or_else(|| match self.unready() {
                        Some(_) => AppError::Unavailable(crate::error::Dependency::ShopKeys),
                        None => fault(TokenFault::UnknownKey),
                    })?
            }
            _ => match &self.fixed {
                Some(k) => k.clone(),
                None => self.only_key_for(alg)?,
            },
        };
        if !key.takes(alg) {
            return Err(fault(TokenFault::KeyMismatch));
        }
        let mut v = Validation::new(alg);
        v.leeway = self.rules.leeway;
        v.validate_nbf = true;
        v.validate_exp = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[&self.rules.issuer]);
        v.set_audience(&[&self.rules.audience]);
        self.metrics.shop_tokens_verified.inc();
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map_err(|e| fault(fault_of(e.kind())))?;
        let claims = data.claims;
        let subject = match claims.get(&self.rules.user_claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            _ => return Err(fault(TokenFault::NoSubject)),
        };
        if subject.len() > MAX_SUBJECT {
            return Err(fault(TokenFault::SubjectTooLong));
        }
        if !subject_is_safe(subject) {
            return Err(fault(TokenFault::SubjectUnsafe));
        }
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or(fault(TokenFault::Expired))?;
        let verified = Verified {
            subject: Arc::from(subject.as_str()),
            exp,
            kid: kid.map(Arc::from),
        };
        if self.verified.len() < self.cap {
            self.verified.pin().insert(digest, verified.clone());
        }
        Ok(verified)
    }

    /// The header's algorithm and key id, once the token is shaped like a JWT whose algorithm
    /// is allowed.
    fn judge_shape(&self, token: &str) -> Result<(Algorithm, Option<String>), AppError> {
        let mut parts = token.split('.');
        let (Some(head), Some(claims), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fault(TokenFault::Malformed));
        };
        let decode = |p: &str| {
            URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| fault(TokenFault::Malformed))
        };
        let head: Head =
            serde_json::from_slice(&decode(head)?).map_err(|_| fault(TokenFault::Malformed))?;
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(claims)?).map_err(|_| fault(TokenFault::Malformed))?;
        if !claims.is_object() {
            return Err(fault(TokenFault::Malformed));
        }
        if head.alg.eq_ignore_ascii_case("none") {
            return Err(fault(TokenFault::AlgNone));
        }
        if sig.is_empty() {
            return Err(fault(TokenFault::Malformed));
        }
        let alg = Algorithm::from_str(&head.alg).map_err(|_| fault(TokenFault::AlgNotAllowed))?;
        if !self.rules.algorithms.contains(&alg) {
            return Err(fault(TokenFault::AlgNotAllowed));
        }
        Ok((alg, head.kid))
    }

    /// A token without a `kid`, and no fixed key: the set's only key that takes `alg`.
    fn only_key_for(&self, alg: Algorithm) -> Result<ShopKey, AppError> {
        let keys = self
            .jwks
            .as_ref()
            .map(|j| j.keys.load_full())
            .unwrap_or_default();
        let mut fitting = keys.values().filter(|k| k.takes(alg));
        match (fitting.next(), fitting.next()) {
            (Some(k), None) => Ok(k.clone()),
            _ => Err(fault(TokenFault::UnknownKey)),
        }
    }
}

/// The fault a failed `decode` stands for.
fn fault_of(kind: &ErrorKind) -> TokenFault {
    match kind {
        ErrorKind::ExpiredSignature => TokenFault::Expired,
        ErrorKind::ImmatureSignature => TokenFault::NotYetValid,
        ErrorKind::InvalidIssuer => TokenFault::WrongIssuer,
        ErrorKind::InvalidAudience => TokenFault::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => TokenFault::Expired,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => TokenFault::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenFault::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => TokenFault::KeyMismatch,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::MissingRequiredClaim(_) => TokenFault::Malformed,
        _ => TokenFault::BadSignature,
    }
}

/// Fetches and parses a key set: keys without a `kid`, for encryption, or of a kind flashgate
/// cannot use are left out.
async fn read_jwks(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<HashMap<String, ShopKey>> {
    let mut resp = client.get(url).send().await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "the key set answered {}",
        resp.status()
    );
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
        anyhow::ensure!(body.len() <= MAX_JWKS, "the key set is larger than 1 MiB");
    }
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&body)
        .map_err(|e| anyhow::anyhow!("the key set is not a JWK Set: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        if let (Some(kid), Some(key)) = (&jwk.common.key_id, key_of(jwk)) {
            keys.insert(kid.clone(), key);
        }
    }
    // a set with nothing usable in it is no better than none (the last good one is kept)
    anyhow::ensure!(
        !keys.is_empty(),
        "the key set has no key flashgate can use (each needs a kid, a signing kind it takes)"
    );
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let jwt = |f: &dyn Fn(&mut Settings)| {
            let mut s = Settings {
                auth: crate::plumbing::config::AuthMode::Jwt,
                jwt_issuer: "https://shop.example".into(),
                jwt_audience: "flashgate".into(),
                jwt_jwks_url: "http://127.0.0.1:1/jwks.json".into(),
                ..Settings::default()
            };
            f(&mut s);
            crate::identity::check(&s).map_err(|e| e.to_string())
        };
        assert!(jwt(&|_| {}).is_ok());
        assert!(
            jwt(&|s| s.jwt_jwks_url = "ftp://x/jwks".into())
                .unwrap_err()
                .contains("http(s)")
        );
        assert!(jwt(&|s| s.jwt_jwks_url = "file:///etc/passwd".into()).is_err());
        assert!(
            jwt(&|s| s.jwt_issuer.clear())
                .unwrap_err()
                .contains("jwt_issuer")
        );
        assert!(
            jwt(&|s| s.jwt_audience.clear())
                .unwrap_err()
                .contains("jwt_audience")
        );
        assert!(
            jwt(&|s| s.jwt_algorithms = "none".into())
                .unwrap_err()
                .contains("none")
        );
        let pem = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----";
        assert!(
            jwt(&|s| s.jwt_key = pem.into())
                .unwrap_err()
                .contains("PEM")
        );
        let secret = "0123456789abcdef0123456789abcdef";
        assert!(
            jwt(&|s| s.jwt_key = secret.into())
                .unwrap_err()
                .contains("HS256")
        );
        assert!(
            jwt(&|s| {
                s.jwt_key = secret.into();
                s.jwt_algorithms = "HS256".into();
            })
            .is_ok()
        );
        assert!(
            jwt(&|s| {
                s.jwt_jwks_url.clear();
            })
            .unwrap_err()
            .contains("jwt_jwks_url or jwt_key")
        );
    }
}
