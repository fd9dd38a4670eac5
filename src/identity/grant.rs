//! The grant: what a shopper takes to the shop's checkout once their order is written.
//!
//! A compact JWT signed by flashgate with Ed25519 (`alg: EdDSA`), claims `iss`, `aud`, `sub`
//! (the shop's subject, or flashgate's user id for a session shopper), `order`, `sale`,
//! `product` (the sale's `externalRef`, when it has one), `price` (minor units), `currency`
//! (ISO 4217, `FLASHGATE_CURRENCY`), `jti`, `iat`,
//! `exp` (`grant_ttl_s` after `iat`, at most 120 s). Because admission *is* the reservation,
//! the grant names the order: the shop's checkout needs nothing else.
//!
//! **`jti` names the order** (`order-ID`): the result can be asked again and a grant signed
//! again, but every grant of one order is one pass. `POST /api/grants/redeem` marks it spent
//! with `SET NX` (kept [`GRANT_SPENT_TTL`](crate::plumbing::keys::GRANT_SPENT_TTL), longer than
//! any grant of the order can be signed), so it answers the claims once and 409 after; a shop
//! that verifies offline marks the `jti` in its own store.
//!
//! **Only from the order of record.** An edge signs a grant for the order its shopper's own
//! result key holds (`GET /api/seckill/result`, and the push stream, which reads the key back when
//! a worker's message names the shopper: `admission::push`), never for a number a message
//! carries; `redeem` checks the order in MySQL (it exists, is the `sub`'s, is in the `sale`, is
//! not closed) before it answers.
//!
//! **Keys.** `grant_key` is the Ed25519 private seed (32 bytes); its `kid` is the RFC 7638
//! thumbprint of its public JWK, so every edge with the same seed names it alike. Keys rotated
//! out stay in `grant_retired_keys` (public halves only) while their grants may be in flight:
//! `/.well-known/jwks.json` lists them all, and `redeem` takes them.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GrantFault;
use crate::plumbing::config::Settings;

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), before its 32-byte seed.
const PKCS8_ED25519: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The claims of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub order: i64,
    pub sale: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The sale price, in minor units (cents, fen), of one unit.
    pub price: i64,
    /// The units of the order (its buy's `quantity`); a grant signed before there were
    /// quantities has none, and is for one.
    #[serde(default = "one_unit")]
    pub quantity: u32,
    /// The currency of `price` (ISO 4217, `FLASHGATE_CURRENCY`).
    pub currency: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// An order bought under a draw sale's claim: the entry's digest, place and claim
    /// (docs/draws.md); absent for a first-come sale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<crate::draws::record::DrawPart>,
}

fn one_unit() -> u32 {
    1
}

/// What a grant says about the sale (the edge keeps these per sale: see `SaleFacts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleFacts {
    pub price_minor: i64,
    pub product: Option<String>,
    /// A draw sale: its grants carry the shopper's claim (`Identity::granter` reads it).
    pub draw_sale: bool,
    /// The shopper's draw claim, set per shopper by `Identity::granter` (never cached).
    pub draw: Option<crate::draws::record::DrawPart>,
}

/// The sale facts a grant carries, per sale, read from MySQL at most once per [`FACTS_TTL`] on
/// each edge (a sale's price is fixed once it is live).
#[derive(Default)]
pub struct FactsCache {
    map: papaya::HashMap<crate::domain::GoodsId, (SaleFacts, std::time::Instant)>,
}

/// How long an edge uses a sale's facts before reading them again.
pub const FACTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl FactsCache {
    /// The facts of `goods`, if the sale exists.
    pub async fn get(
        &self,
        db: &sqlx::MySqlPool,
        goods: crate::domain::GoodsId,
    ) -> Result<Option<SaleFacts>, crate::error::AppError> {
        if let Some((f, at)) = self.map.pin().get(&goods)
            && at.elapsed() < FACTS_TTL
        {
            return Ok(Some(f.clone()));
        }
        let row: Option<(i64, Option<String>, bool)> = sqlx::query_as(
            "SELECT CAST(ROUND(seckill_price * 100) AS SIGNED), external_ref, \
             EXISTS(SELECT 1 FROM sale_draw d WHERE d.goods_id = sg.goods_id) \
             FROM seckill_goods sg WHERE goods_id = ?",
        )
        .bind(goods.get())
        .fetch_optional(db)
        .await?;
        let Some((price_minor, product, draw_sale)) = row else {
            return Ok(None);
        };
        let facts = SaleFacts {
            price_minor,
            product,
            draw_sale,
            draw: None,
        };
        self.map
            .pin()
            .insert(goods, (facts.clone(), std::time::Instant::now()));
        Ok(Some(facts))
    }
}

/// One public key as published.
struct Published {
    kid: String,
    x: String,
}

/// flashgate's grant keys and settings.
pub struct Grants {
    signing: EncodingKey,
    kid: String,
    published: Vec<Published>,
    verifying: HashMap<String, DecodingKey>,
    issuer: String,
    audience: String,
    ttl_s: i64,
    currency: String,
    /// The shop's checkout with `{grant}`, if set.
    checkout: Option<String>,
}

/// Reads a 32-byte key in base64url (or standard base64), saying which setting was wrong.
fn key_bytes(name: &str, raw: &str) -> anyhow::Result<[u8; 32]> {
    let raw = raw.trim();
    let bytes = URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(raw))
        .map_err(|_| anyhow::anyhow!("{name} is not base64 (32 bytes expected)"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow::anyhow!(
            "{name} must be an Ed25519 key of 32 bytes, got {} bytes (flashgate grant-key makes one)",
            bytes.len()
        )
    })
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The public key (base64url) and `kid` of a grant key's seed.
pub fn public_of(seed: &str) -> anyhow::Result<(String, String)> {
    let seed = key_bytes("grant_key", seed)?;
    let x = URL_SAFE_NO_PAD.encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
    );
    let kid = thumbprint(&x);
    Ok((x, kid))
}

/// A new grant key (the seed, base64url), for `flashgate grant-key`.
pub fn new_key() -> String {
    let seed: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(seed)
}

impl Grants {
    /// The grants `settings` describe; `None` when no `grant_key` is set.
    pub fn from_settings(s: &Settings) -> anyhow::Result<Option<Grants>> {
        if !s.checkout_url.is_empty() {
            let url = reqwest::Url::parse(&s.checkout_url)
                .map_err(|e| anyhow::anyhow!("FLASHGATE_CHECKOUT_URL is not a URL: {e}"))?;
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https") && s.checkout_url.contains("{grant}"),
                "FLASHGATE_CHECKOUT_URL must be an http(s) URL with {{grant}} where the grant goes"
            );
            anyhow::ensure!(
                !s.grant_key.is_empty(),
                "FLASHGATE_CHECKOUT_URL needs FLASHGATE_GRANT_KEY (the grant is what the checkout \
                 is sent; flashgate grant-key makes one)"
            );
        }
        if s.grant_key.is_empty() {
            anyhow::ensure!(
                s.grant_retired_keys.is_empty(),
                "FLASHGATE_GRANT_RETIRED_KEYS without FLASHGATE_GRANT_KEY"
            );
            return Ok(None);
        }
        anyhow::ensure!(
            (1..=120).contains(&s.grant_ttl_s),
            "FLASHGATE_GRANT_TTL_S must be 1..=120"
        );
        anyhow::ensure!(
            !s.grant_issuer.is_empty() && !s.grant_audience.is_empty(),
            "FLASHGATE_GRANT_ISSUER and FLASHGATE_GRANT_AUDIENCE must not be empty"
        );
        // the shop's server redeems (and pays, closes) with a token of its own, never the admin's
        anyhow::ensure!(
            !s.grant_redeem_token.is_empty(),
            "FLASHGATE_GRANT_KEY is set: set FLASHGATE_GRANT_REDEEM_TOKEN too (the shop's server \
             redeems grants with it; openssl rand -hex 32), the admin token is never the shop's"
        );
        anyhow::ensure!(
            s.grant_redeem_token != s.admin_token,
            "FLASHGATE_GRANT_REDEEM_TOKEN must not be the admin token (the shop holds it)"
        );
        crate::plumbing::config::check_currency(&s.currency, true, "FLASHGATE_GRANT_KEY")?;
        let seed = key_bytes("FLASHGATE_GRANT_KEY", &s.grant_key)?;
        let (x, kid) = public_of(&s.grant_key)?;
        let mut published = vec![Published {
            kid: kid.clone(),
            x,
        }];
        for old in s
            .grant_retired_keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            let bytes = key_bytes("FLASHGATE_GRANT_RETIRED_KEYS", old)?;
            let x = URL_SAFE_NO_PAD.encode(bytes);
            published.push(Published {
                kid: thumbprint(&x),
                x,
            });
        }
        let mut verifying = HashMap::new();
        for p in &published {
            verifying.insert(p.kid.clone(), DecodingKey::from_ed_components(&p.x)?);
        }
        let mut der = PKCS8_ED25519.to_vec();
        der.extend_from_slice(&seed);
        Ok(Some(Grants {
            signing: EncodingKey::from_ed_der(&der),
            kid,
            published,
            verifying,
            issuer: s.grant_issuer.clone(),
            audience: s.grant_audience.clone(),
            ttl_s: s.grant_ttl_s as i64,
            currency: s.currency.clone(),
            checkout: (!s.checkout_url.is_empty()).then(|| s.checkout_url.clone()),
        }))
    }

    /// The signing key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A grant for `order` of `sale` (one unit), to `sub`, signed now (`now_s`, unix seconds).
    pub fn sign(&self, sub: &str, order: i64, sale: i64, facts: &SaleFacts, now_s: i64) -> String {
        self.sign_units(sub, order, 1, sale, facts, now_s)
    }

    /// A grant for `order` of `quantity` units of `sale`, to `sub`, signed now.
    pub fn sign_units(
        &self,
        sub: &str,
        order: i64,
        quantity: u32,
        sale: i64,
        facts: &SaleFacts,
        now_s: i64,
    ) -> String {
        let claims = GrantClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: sub.to_string(),
            order,
            sale,
            product: facts.product.clone(),
            price: facts.price_minor,
            quantity: quantity.max(1),
            currency: self.currency.clone(),
            jti: format!("order-{order}"),
            iat: now_s,
            exp: now_s + self.ttl_s,
            draw: facts.draw.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing).expect("an Ed25519 key always signs")
    }

    /// Where the shopper is sent with `grant`, if a checkout is set.
    pub fn checkout_for(&self, grant: &str) -> Option<String> {
        let encoded: String = form_urlencoded::byte_serialize(grant.as_bytes()).collect();
        self.checkout
            .as_ref()
            .map(|c| c.replace("{grant}", &encoded))
    }

    /// The public keys, as a JWK Set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .published
            .iter()
            .map(|p| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": p.x, "kid": p.kid,
                    "alg": "EdDSA", "use": "sig"
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// A grant's claims, if it is one of ours, untouched, unexpired and for our audience
    /// (`redeem`; no leeway: flashgate signed it with its own clock).
    pub fn verify(&self, grant: &str) -> Result<GrantClaims, GrantFault> {
        let header = jsonwebtoken::decode_header(grant).map_err(|_| GrantFault::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(GrantFault::Malformed);
        }
        let key = header
            .kid
            .as_ref()
            .and_then(|k| self.verifying.get(k))
            .ok_or(GrantFault::Malformed)?;
        let mut v = Validation::new(Algorithm::EdDSA);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        jsonwebtoken::decode::<GrantClaims>(grant, key, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => GrantFault::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience
                | jsonwebtoken::errors::ErrorKind::InvalidIssuer => GrantFault::WrongAudience,
                jsonwebtoken::errors::ErrorKind::InvalidSignature => GrantFault::Tampered,
                _ => GrantFault::Malformed,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(f: impl Fn(&mut Settings)) -> anyhow::Result<Option<Grants>> {
        let mut s = Settings {
            grant_key: "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into(),
            grant_redeem_token: "a-shop-token-of-its-own-0123456789abcdef".into(),
            currency: "CNY".into(),
            ..Settings::default()
        };
        f(&mut s);
        Grants::from_settings(&s)
    }

    #[test]
    fn a_grant_verifies_and_a_changed_one_does_not() {
        let g = grants(|_| {}).unwrap().unwrap();
        let facts = SaleFacts {
            price_minor: 199,
            product: Some("SKU-1".into()),
            draw_sale: false,
            draw: None,
        };
        let now = crate::plumbing::clock::now_ms() / 1000;
        let t = g.sign("alice", 42, 7, &facts, now);
        let c = g.verify(&t).unwrap();
        assert_eq!(
            (c.order, c.sale, c.price, c.jti.as_str()),
            (42, 7, 199, "order-42")
        );
        assert_eq!(c.product.as_deref(), Some("SKU-1"));
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["price"] = 1.into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(g.verify(&parts.join(".")), Err(GrantFault::Tampered));
        assert_eq!(
            g.verify(&g.sign("a", 1, 1, &facts, now - 500)),
            Err(GrantFault::Expired)
        );
        assert_eq!(g.verify("junk"), Err(GrantFault::Malformed));
        let other = grants(|s| s.grant_audience = "another-shop".into())
            .unwrap()
            .unwrap();
        assert_eq!(
            other.verify(&g.sign("a", 1, 1, &facts, now)),
            Err(GrantFault::WrongAudience)
        );
    }

    #[test]
    fn wrong_keys_and_checkouts_refuse_to_start() {
        assert!(grants(|_| {}).unwrap().is_some());
        assert!(grants(|s| s.grant_key.clear()).unwrap().is_none());
        let short = grants(|s| s.grant_key = URL_SAFE_NO_PAD.encode([1u8; 31]))
            .err()
            .unwrap()
            .to_string();
        assert!(
            short.contains("32 bytes") && short.contains("31"),
            "{short}"
        );
        assert!(grants(|s| s.grant_key = "!!!".into()).is_err());
        assert!(grants(|s| s.checkout_url = "https://shop.example/checkout".into()).is_err());
        assert!(grants(|s| s.checkout_url = "javascript:alert({grant})".into()).is_err());
        assert!(
            grants(|s| s.checkout_url = "https://shop.example/c?grant={grant}".into())
                .unwrap()
                .is_some()
        );
        assert!(grants(|s| s.grant_ttl_s = 121).is_err());
        // refusals name the variables an operator sets
        let no_token = grants(|s| s.grant_redeem_token.clear())
            .err()
            .unwrap()
            .to_string();
        assert!(
            no_token.contains("FLASHGATE_GRANT_REDEEM_TOKEN"),
            "{no_token}"
        );
        let admin = grants(|s| s.admin_token = s.grant_redeem_token.clone())
            .err()
            .unwrap()
            .to_string();
        assert!(admin.contains("admin token"), "{admin}");
        let currency = grants(|s| s.currency.clear()).err().unwrap().to_string();
        assert!(currency.contains("FLASHGATE_CURRENCY"), "{currency}");
        let checkout = grants(|s| s.checkout_url = "https://x/c".into())
            .err()
            .unwrap()
            .to_string();
        assert!(checkout.contains("FLASHGATE_CHECKOUT_URL"), "{checkout}");
    }

    /// The test vector of `docs/integration.md`: a fixed key and claims, and the grant they give
    /// (Ed25519 signatures are deterministic), read from the doc.
    #[test]
    fn the_documented_test_vector_holds() {
        let doc = include_str!("../../docs/integration.md");
        let field = |name: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("docs/integration.md has no `{name}:` line"))
                .trim()
                .trim_matches('`')
                .to_string()
        };
        let g = grants(|s| s.grant_key = field("grant key"))
            .unwrap()
            .unwrap();
        let facts = SaleFacts {
            price_minor: 199,
            product: Some("SKU-PHONE-1".into()),
            draw_sale: false,
            draw: None,
        };
        let token = g.sign("customer-42", 1048577, 7, &facts, 1796000000);
        assert_eq!(g.kid(), field("kid"));
        assert_eq!(token, field("grant"));
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
