//! Who a shopper is, when flashgate stands in front of a shop that has its own accounts, and the
//! grant it hands them back to the shop's checkout with. The three seams are walked through in
//! `docs/integration.md`.
//!
//! - [`shop_token`]: the shop's JWT at the door (`auth = jwt` or `both`): verified once per edge
//!   (keys from the shop's JWKS or a fixed key) and remembered until its `exp`, so a buy with a
//!   verified token costs no crypto and no round trip beyond the admission call.
//! - [`subjects`]: a shop's subject becomes a flashgate user id (a `users` row of its own, made
//!   the first time the shopper asks for a path, joins a room or looks at a result; each edge keeps
//!   the mapping). The buy needs none of it: its path is bound to the token's fingerprint, exactly
//!   as for a session (`accounts::logouts`), so the binding proves the user.
//! - [`grant`]: once the order is written, the result carries an Ed25519-signed JWT naming the
//!   order; the shop verifies it offline against `/.well-known/jwks.json` or redeems it once.
//!
//! `auth = session` (the default) leaves all of this off: the demo is as it was.

pub mod grant;
pub mod shop_token;
pub mod subjects;

use std::sync::Arc;

use hyper::Request;
use hyper::header;

use crate::domain::{BuyResult, GoodsId, UserId};
use crate::error::AppError;
use crate::plumbing::config::{AuthMode, Settings};
use crate::plumbing::metrics::Metrics;

/// What an edge keeps for the shop's side (`AppState::identity`).
pub struct Identity {
    /// The shop's tokens, when `auth` takes them.
    pub shop: Option<Arc<shop_token::ShopTokens>>,
    pub subjects: subjects::Subjects,
    /// flashgate's grant keys, when `grant_key` is set.
    pub grants: Option<Arc<grant::Grants>>,
    pub facts: grant::FactsCache,
}

/// A signed grant and where the shopper takes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Granted {
    pub grant: String,
    /// The shop's checkout with the grant in it, when `checkout_url` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkout: Option<String>,
}

impl Identity {
    pub fn from_settings(s: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Identity> {
        Ok(Identity {
            shop: shop_token::ShopTokens::from_settings(s, metrics)?.map(Arc::new),
            subjects: subjects::Subjects::new(s.jwt_cache_entries),
            grants: grant::Grants::from_settings(s)?.map(Arc::new),
            facts: grant::FactsCache::default(),
        })
    }

    /// The grant for `order` in `goods`, to `sub`, if grants are on and the sale exists.
    pub async fn grant_for(
        &self,
        db: &sqlx::MySqlPool,
        metrics: &Arc<Metrics>,
        sub: &str,
        user: UserId,
        goods: GoodsId,
        result: BuyResult,
    ) -> Result<Option<Granted>, AppError> {
        Ok(self
            .granter(db, metrics, sub, user, goods)
            .await?
            .map(|g| g.grant(result)))
    }

    /// What signs `sub`'s (flashgate's `user`'s) grants in `goods` without any more I/O (for
    /// the push stream, which hands results on as they come), if grants are on and the sale
    /// exists. In a draw sale it carries the shopper's claim as it stands now (a stream opened
    /// before the claim was given carries none: the page opens its stream again when told).
    pub async fn granter(
        &self,
        db: &sqlx::MySqlPool,
        metrics: &Arc<Metrics>,
        sub: &str,
        user: UserId,
        goods: GoodsId,
    ) -> Result<Option<Granter>, AppError> {
        let Some(grants) = &self.grants else {
            return Ok(None);
        };
        let Some(mut facts) = self.facts.get(db, goods).await? else {
            return Ok(None);
        };
        if facts.draw_sale {
            facts.draw = crate::draws::record::claim_of(db, goods, user).await?;
        }
        Ok(Some(Granter {
            grants: grants.clone(),
            metrics: metrics.clone(),
            sub: sub.to_string(),
            goods,
            facts,
        }))
    }
}

/// Signs one shopper's grants in one sale.
pub struct Granter {
    grants: Arc<grant::Grants>,
    metrics: Arc<Metrics>,
    sub: String,
    goods: GoodsId,
    facts: grant::SaleFacts,
}

impl Granter {
    pub fn grant(&self, result: BuyResult) -> Granted {
        let now = crate::plumbing::clock::now_ms() / 1000;
        let grant = self.grants.sign_units(
            &self.sub,
            result.order,
            result.quantity,
            self.goods.get(),
            &self.facts,
            now,
        );
        self.metrics.grants_issued.inc();
        Granted {
            checkout: self.grants.checkout_for(&grant),
            grant,
        }
    }

    /// The push stream's `result` event for `result`: `{"result":R}`, and once the order is
    /// written its `quantity` (units), with the grant and the checkout beside them.
    pub fn result_event(granter: Option<&Granter>, result: BuyResult) -> String {
        let order = result.order;
        match granter {
            Some(g) if order > 0 => {
                let granted = g.grant(result);
                serde_json::json!({
                    "result": order, "quantity": result.quantity,
                    "grant": granted.grant, "checkout": granted.checkout
                })
                .to_string()
            }
            _ if order > 0 => {
                serde_json::json!({ "result": order, "quantity": result.quantity }).to_string()
            }
            _ => format!("{{\"result\":{order}}}"),
        }
    }
}

/// What a request says its shopper is: a flashgate session token, or the shop's JWT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Session(String),
    Shop(String),
}

/// The token of `Authorization: Bearer TOKEN`, if the request has one.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "token";

/// The value of the cookie `name`, if the request carries it exactly once (or several times
/// with one value). A second, different value is a cookie planted by a sibling subdomain
/// (`Domain=.shop.example`), which the browser may well send first: an ambiguous credential is
/// no credential.
pub fn cookie<'h>(headers: &'h hyper::HeaderMap, name: &str) -> Option<&'h str> {
    if name.is_empty() {
        return None;
    }
    let mut found: Option<&str> = None;
    for c in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
    {
        let Some((k, v)) = c.trim().split_once('=') else {
            continue;
        };
        if k != name || v.is_empty() {
            continue;
        }
        match found {
            Some(seen) if seen != v => return None,
            _ => found = Some(v),
        }
    }
    found
}

impl Credential {
    /// The token itself (what a path is bound to: `TokenPrint::of`).
    pub fn token(&self) -> &str {
        match self {
            Credential::Session(t) | Credential::Shop(t) => t,
        }
    }

    /// The credential of `req` under `settings.auth`: `Authorization: Bearer`, else the shop's
    /// cookie (`jwt_cookie`), else the session cookie `token`. Under `both` a bearer shaped like
    /// a JWT (it has dots; a session token never does) is the shop's.
    pub fn of<B>(req: &Request<B>, settings: &Settings) -> Option<Credential> {
        let headers = req.headers();
        let bearer = bearer(headers).filter(|t| !t.is_empty());
        let cookie = |name: &str| cookie(headers, name);
        let shop = || cookie(&settings.jwt_cookie);
        let session = || cookie(SESSION_COOKIE);
        let owned = |s: &str| s.to_string();
        match settings.auth {
            AuthMode::Session => bearer.or_else(session).map(owned).map(Credential::Session),
            AuthMode::Jwt => bearer.or_else(shop).map(owned).map(Credential::Shop),
            AuthMode::Both => match bearer {
                Some(b) if b.contains('.') => Some(Credential::Shop(b.into())),
                Some(b) => Some(Credential::Session(b.into())),
                None => shop()
                    .map(|t| Credential::Shop(t.into()))
                    .or_else(|| session().map(|t| Credential::Session(t.into()))),
            },
        }
    }
}

/// Refuses settings that cannot work, saying which (called by `Settings::validate`).
pub fn check(s: &Settings) -> anyhow::Result<()> {
    shop_token::Rules::from_settings(s)?;
    if s.auth != AuthMode::Session {
        anyhow::ensure!(
            !s.jwt_jwks_url.is_empty() || !s.jwt_key.is_empty(),
            "auth = {:?} needs the shop's keys: jwt_jwks_url or jwt_key",
            s.auth
        );
        shop_token::FixedKey::parse(&s.jwt_key, &shop_token::Rules::from_settings(s)?)?;
    }
    grant::Grants::from_settings(s)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(auth: AuthMode) -> Settings {
        Settings {
            auth,
            jwt_cookie: "shop_jwt".into(),
            ..Settings::default()
        }
    }

    #[test]
    fn a_pushed_result_carries_the_orders_units_once_it_is_written() {
        let event = |r| serde_json::from_str::<serde_json::Value>(&Granter::result_event(None, r));
        assert_eq!(
            event(BuyResult::new(42, 3)).unwrap(),
            serde_json::json!({"result": 42, "quantity": 3})
        );
        assert_eq!(
            event(BuyResult::new(-1, 1)).unwrap(),
            serde_json::json!({"result": -1})
        );
    }

    #[test]
    fn the_credential_follows_the_mode() {
        let req = |h: &[(&str, &str)]| {
            let mut b = Request::builder();
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        let jwt = "a.b.c";
        let sess = "0123456789abcdef0123456789abcdef";
        let both = settings(AuthMode::Both);
        let only_jwt = settings(AuthMode::Jwt);
        let only_sess = settings(AuthMode::Session);
        let bearer_jwt = req(&[("Authorization", "Bearer a.b.c")]);
        let cookies = req(&[(
            "Cookie",
            "token=0123456789abcdef0123456789abcdef; shop_jwt=a.b.c",
        )]);
        assert_eq!(
            Credential::of(&bearer_jwt, &both),
            Some(Credential::Shop(jwt.into()))
        );
        assert_eq!(
            Credential::of(&cookies, &both),
            Some(Credential::Shop(jwt.into()))
        );
        assert_eq!(
            Credential::of(&cookies, &only_sess),
            Some(Credential::Session(sess.into()))
        );
        assert_eq!(
            Credential::of(&cookies, &only_jwt),
            Some(Credential::Shop(jwt.into()))
        );
        let session_bearer = req(&[("Authorization", &format!("Bearer {sess}"))]);
        assert_eq!(
            Credential::of(&session_bearer, &both),
            Some(Credential::Session(sess.into()))
        );
        assert_eq!(Credential::of(&req(&[]), &only_jwt), None);
        // a cookie named like the shop's but empty-named settings never match
        let s = Settings {
            auth: AuthMode::Jwt,
            ..Settings::default()
        };
        assert_eq!(Credential::of(&req(&[("Cookie", "=a.b.c")]), &s), None);
    }
}
