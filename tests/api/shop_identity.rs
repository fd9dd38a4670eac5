//! A shop in front (`identity`): its shoppers come with the shop's JWT, verified against a key
//! set served by a real HTTP server inside the test (a pretend shop on a free port), and leave
//! with a grant flashgate signs, which the test verifies against `/.well-known/jwks.json` and
//! redeems once. Bad tokens get their own 401 codes and reach neither Redis nor MySQL.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::helpers::{Monitor, SHOP_TOKEN, TestApp, spawn_with, test_settings};
use flashgate::domain::GoodsId;
use flashgate::plumbing::config::{AuthMode, Settings};

const ISSUER: &str = "https://shop.test";
const AUDIENCE: &str = "flashgate";
/// flashgate's grant key in these tests (an Ed25519 seed, base64url).
const GRANT_KEY: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/shop-keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// One of the pretend shop's signing keys.
#[derive(Clone)]
pub struct ShopKey {
    pub kid: String,
    pub alg: Algorithm,
    enc: EncodingKey,
}

impl ShopKey {
    pub fn load(file: &str, alg: Algorithm, kid: &str) -> ShopKey {
        let pem = fixture(file);
        let enc = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_rsa_pem(&pem),
        }
        .unwrap();
        ShopKey {
            kid: kid.into(),
            alg,
            enc,
        }
    }

    /// The public half, as the shop's JWKS lists it.
    pub fn jwk(&self) -> Value {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&self.enc, self.alg).unwrap()).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    /// A token with `claims` over the usual good ones.
    pub fn sign(&self, sub: &str, extra: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": ISSUER, "aud": [AUDIENCE, "another"], "sub": sub,
            "iat": now, "exp": now + 600,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.enc).unwrap()
    }
}

/// The pretend shop's key set, on a free port: what it serves can be changed, it can be taken
/// down (503), and it counts the requests it gets.
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&ShopKey]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let set = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk()).collect()));
        let down = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, d, h) = (set.clone(), down.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, d, h) = (s.clone(), d.clone(), h.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        let (s, d, h) = (s.clone(), d.clone(), h.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let mut resp = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(
                                    json!({ "keys": *s.lock().unwrap() }).to_string(),
                                ),
                            ));
                            if d.load(Ordering::SeqCst) {
                                *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer {
            url,
            keys: set,
            down,
            hits,
            task,
        }
    }

    pub fn serve(&self, keys: &[&ShopKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings for a shop in front: its keys at `jwks`, flashgate's grant key set.
pub fn shop_settings(jwks: &str, auth: AuthMode) -> Settings {
    Settings {
        auth,
        jwt_jwks_url: jwks.into(),
        jwt_issuer: ISSUER.into(),
        jwt_audience: AUDIENCE.into(),
        jwt_cookie: "shop_jwt".into(),
        grant_key: GRANT_KEY.into(),
        checkout_url: "https://shop.test/checkout?grant={grant}".into(),
        ..test_settings()
    }
}

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap_or(0)
}

/// Polls the result until the order is written; the whole envelope.
async fn written(app: &TestApp, token: &str, goods: GoodsId) -> Value {
    for _ in 0..200 {
        let (status, body) = app
            .get(&format!("/api/seckill/result?goodsId={goods}"), token)
            .await;
        assert_eq!(status, 200, "{body}");
        if body["data"].as_i64().unwrap() > 0 {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no order was written");
}

/// The claims of `grant`, verified the way a shop would: against flashgate's published keys.
async fn verify_grant(app: &TestApp, grant: &str) -> Value {
    let set: jsonwebtoken::jwk::JwkSet = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(grant).unwrap().kid.unwrap();
    let jwk = set.find(&kid).expect("the grant's key is published");
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&["flashgate"]);
    v.set_audience(&["shop"]);
    jsonwebtoken::decode::<Value>(grant, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_sale_bought_with_shop_tokens_end_to_end() {
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_with(shop_settings(&jwks.url, AuthMode::Jwt), true).await;
    let goods = app
        .create_sale(&{
            let mut s = flashgate::cli::seed::NewSale::new(5, -1, 3600);
            s.external_ref = Some("SKU-PHONE-1".into());
            s
        })
        .await;
    let token = key.sign("customer-42", json!({}));

    let path = app.path_for(&token, goods).await;
    let (status, body) = app.buy(&token, &path, goods).await;
    assert_eq!(status, 202, "{body}");
    let env = written(&app, &token, goods).await;
    let order = env["data"].as_i64().unwrap();
    let grant = env["grant"].as_str().expect("a grant beside the result");
    let checkout = env["checkout"].as_str().unwrap();
    assert!(
        checkout.starts_with("https://shop.test/checkout?grant=eyJ"),
        "{checkout}"
    );

    let claims = verify_grant(&app, grant).await;
    assert_eq!(claims["sub"], "customer-42");
    assert_eq!(claims["order"], order);
    assert_eq!(claims["sale"], goods.get());
    assert_eq!(claims["product"], "SKU-PHONE-1");
    assert_eq!(claims["jti"], format!("order-{order}"));
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=120).contains(&ttl), "{claims}");
    let price: i64 = sqlx::query_scalar(
        "SELECT CAST(ROUND(seckill_price * 100) AS SIGNED) FROM seckill_goods WHERE goods_id = ?",
    )
    .bind(goods.get())
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(claims["price"], price);
    assert_eq!(claims["currency"], "CNY");

    // the order is the subject's: a users row of its own, made at the path request
    let subject: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT u.subject FROM order_info o JOIN users u ON u.id = o.user_id WHERE o.id = ?",
    )
    .bind(order)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(subject.as_deref(), Some(&b"customer-42"[..]));

    // redeemed once, 409 after; a second grant of the same order is the same pass
    let (status, body) = app
        .admin_post("/api/grants/redeem", SHOP_TOKEN, &json!({ "grant": grant }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["order"], order);
    let (status, body) = app
        .admin_post("/api/grants/redeem", SHOP_TOKEN, &json!({ "grant": grant }))
        .await;
    assert_eq!((status, code(&body)), (409, 500244), "{body}");
    let again = written(&app, &token, goods).await;
    let (status, body) = app
        .admin_post(
            "/api/grants/redeem",
            SHOP_TOKEN,
            &json!({ "grant": again["grant"] }),
        )
        .await;
    assert_eq!((status, code(&body)), (409, 500244), "{body}");
    // not without the redeem token (the admin token is not it), and a tampered grant is refused
    for wrong in ["wrong", crate::helpers::ADMIN_TOKEN] {
        let (status, _) = app
            .admin_post("/api/grants/redeem", wrong, &json!({ "grant": grant }))
            .await;
        assert_eq!(status, 403);
    }
    let mut parts: Vec<String> = grant.split('.').map(str::to_string).collect();
    let mut c: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    c["order"] = json!(order + 1);
    parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
    let (status, body) = app
        .admin_post(
            "/api/grants/redeem",
            SHOP_TOKEN,
            &json!({ "grant": parts.join(".") }),
        )
        .await;
    assert_eq!((status, code(&body)), (400, 500241), "{body}");

    // the second buy of the same shopper is a duplicate; the token was verified once
    let (status, body) = app.buy(&token, &path, goods).await;
    assert_eq!((status, code(&body)), (409, 500501), "{body}");
    assert_eq!(app.state.metrics.shop_tokens_verified.get(), 1);
    app.assert_invariants(goods, 5).await;
}

#[tokio::test]
async fn keys_rotated_mid_sale_are_fetched_and_a_key_that_leaves_stops_its_tokens() {
    let k1 = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "k1");
    let k2 = ShopKey::load("es256.pem", Algorithm::ES256, "k2");
    let k3 = ShopKey::load("rs256.pem", Algorithm::RS256, "k3");
    let jwks = JwksServer::start(&[&k1]).await;
    let app = spawn_with(
        Settings {
            jwt_jwks_refetch_s: 1,
            ..shop_settings(&jwks.url, AuthMode::Jwt)
        },
        false,
    )
    .await;
    let goods = app.sale(10).await;
    let at_start = jwks.hits();
    assert_eq!(at_start, 1, "fetched once at start");
    let old = k1.sign("alice", json!({}));
    assert_eq!(
        app.get(&format!("/api/seckill/result?goodsId={goods}"), &old)
            .await
            .0,
        200
    );

    // the shop rotates: k2 joins the set; a token naming it makes the edge fetch again
    jwks.serve(&[&k1, &k2]);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the refetch gap
    let new = k2.sign("bob", json!({}));
    let path = app.path_for(&new, goods).await;
    assert_eq!(app.buy(&new, &path, goods).await.0, 202);
    assert_eq!(jwks.hits(), at_start + 1);
    // old tokens still verify (k1 is still in the set), a new one signed with k1 as well
    assert_eq!(
        app.get(&format!("/api/seckill/result?goodsId={goods}"), &old)
            .await
            .0,
        200
    );
    let old2 = k1.sign("carol", json!({}));
    assert!(!app.path_for(&old2, goods).await.is_empty());

    // k1 leaves the set: the next fetch (a token naming k3, past the refetch gap) drops it, and
    // with it the tokens verified with it
    jwks.serve(&[&k2, &k3]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = k3.sign("dave", json!({}));
    assert_eq!(
        app.get(&format!("/api/seckill/result?goodsId={goods}"), &third)
            .await
            .0,
        200
    );
    for t in [&old, &k1.sign("erin", json!({}))] {
        let (status, body) = app
            .get(&format!("/api/seckill/result?goodsId={goods}"), t)
            .await;
        assert_eq!((status, code(&body)), (401, 500226), "{body}");
    }
    // bob's token (k2) was not touched
    assert_eq!(
        app.get(&format!("/api/seckill/result?goodsId={goods}"), &new)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn with_the_key_set_down_known_keys_verify_and_unknown_ones_are_fetched_at_most_once_per_window()
 {
    let k1 = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "k1");
    let stranger = ShopKey::load("eddsa-2.pem", Algorithm::EdDSA, "k9");
    let jwks = JwksServer::start(&[&k1]).await;
    let app = spawn_with(
        Settings {
            jwt_jwks_refetch_s: 2,
            ..shop_settings(&jwks.url, AuthMode::Jwt)
        },
        false,
    )
    .await;
    let goods = app.sale(10).await;
    jwks.set_down(true);
    // past the refetch gap, so the first unknown kid below does ask the shop (and fails)
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = jwks.hits();
    // a token with a known key verifies without the shop
    let t = k1.sign("alice", json!({}));
    let path = app.path_for(&t, goods).await;
    assert_eq!(app.buy(&t, &path, goods).await.0, 202);
    // twenty tokens naming an unknown key: 401, and the shop is asked once at most
    for i in 0..20 {
        let (status, body) = app
            .get(
                &format!("/api/seckill/result?goodsId={goods}"),
                &stranger.sign(&format!("u{i}"), json!({})),
            )
            .await;
        assert_eq!((status, code(&body)), (401, 500226), "{body}");
    }
    assert_eq!(jwks.hits() - before, 1, "one fetch for twenty unknown kids");
    assert_eq!(app.state.metrics.jwks_fetch_failures.get(), 1);
    // the failed fetch kept the last good set
    assert_eq!(
        app.get(
            &format!("/api/seckill/result?goodsId={goods}"),
            &k1.sign("bob", json!({}))
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn session_and_shop_shoppers_buy_in_one_sale_under_both() {
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let jwks = JwksServer::start(&[&key]).await;
    let app = spawn_with(shop_settings(&jwks.url, AuthMode::Both), true).await;
    let goods = app.sale(5).await;
    let users = app.users(1).await;
    let shop = key.sign("shop-customer", json!({}));
    for token in [&users[0].token, &shop] {
        let path = app.path_for(token, goods).await;
        assert_eq!(app.buy(token, &path, goods).await.0, 202);
    }
    let session_order = written(&app, &users[0].token, goods).await;
    let shop_order = written(&app, &shop, goods).await;
    assert_ne!(session_order["data"], shop_order["data"]);
    // a session shopper's grant names flashgate's user id
    let claims = verify_grant(&app, session_order["grant"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], users[0].id.to_string());
    let claims = verify_grant(&app, shop_order["grant"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], "shop-customer");
    // the shop's token in its cookie works as well as a bearer
    let r = app
        .http
        .get(app.url(&format!("/api/seckill/result?goodsId={goods}")))
        .header("Cookie", format!("shop_jwt={shop}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.orders(goods).await, 2);
    app.assert_invariants(goods, 5).await;
}

#[tokio::test]
async fn bad_shop_tokens_are_refused_with_their_codes_and_reach_neither_redis_nor_mysql() {
    let key = ShopKey::load("eddsa-1.pem", Algorithm::EdDSA, "shop-1");
    let rsa = ShopKey::load("rs256.pem", Algorithm::RS256, "shop-rsa");
    let jwks = JwksServer::start(&[&key, &rsa]).await;
    let app = spawn_with(shop_settings(&jwks.url, AuthMode::Jwt), false).await;
    let goods = app.sale(5).await;
    let now = chrono::Utc::now().timestamp();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let good = key.sign("alice", json!({}));
    let (h, c, _) = {
        let p: Vec<&str> = good.split('.').collect();
        (p[0].to_string(), p[1].to_string(), p[2].to_string())
    };
    // HS256 signed with the RSA public key (PEM) as the secret: the old confusion attack
    let hs_confused = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("shop-rsa".into());
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600});
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(&fixture("rs256.pub.pem")).unwrap(),
        )
        .unwrap()
    };
    // an RS256 header on the Ed25519 key's kid
    let mismatched = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("shop-1".into());
        let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 600});
        jsonwebtoken::encode(&header, &claims, &rsa.enc).unwrap()
    };
    let signature_of_another = {
        let other = key.sign("bob", json!({}));
        format!("{h}.{c}.{}", other.rsplit('.').next().unwrap())
    };
    let cases: Vec<(&str, String, i64)> = vec![
        ("no token", String::new(), 500220),
        ("two parts", format!("{h}.{c}"), 500221),
        ("bad base64", format!("{h}.!!!.sig"), 500221),
        (
            "bad JSON",
            format!("{}.{c}.sig", URL_SAFE_NO_PAD.encode("{not json")),
            500221,
        ),
        ("12 KiB of junk", "x".repeat(12 * 1024), 500221),
        (
            "alg none",
            format!("{}.{c}.", b64(&json!({"alg": "none", "typ": "JWT"}))),
            500222,
        ),
        (
            "alg none, signed",
            format!("{}.{c}.c2ln", b64(&json!({"alg": "None"}))),
            500222,
        ),
        (
            "an algorithm not allowed",
            format!(
                "{}.{c}.c2ln",
                b64(&json!({"alg": "HS512", "kid": "shop-1"}))
            ),
            500223,
        ),
        ("HS256 with the public key as secret", hs_confused, 500223),
        ("another key's algorithm", mismatched, 500224),
        ("bad signature", signature_of_another, 500225),
        (
            "unknown kid",
            ShopKey::load("eddsa-2.pem", Algorithm::EdDSA, "nobody").sign("a", json!({})),
            500226,
        ),
        ("expired", key.sign("a", json!({"exp": now - 120})), 500227),
        ("no exp", key.sign("a", json!({"exp": null})), 500227),
        (
            "not yet valid",
            key.sign("a", json!({"nbf": now + 600})),
            500228,
        ),
        (
            "wrong issuer",
            key.sign("a", json!({"iss": "https://evil.test"})),
            500229,
        ),
        (
            "wrong audience",
            key.sign("a", json!({"aud": "someone-else"})),
            500230,
        ),
        ("no user claim", key.sign("a", json!({"sub": null})), 500231),
        ("empty user claim", key.sign("", json!({})), 500231),
        (
            "user claim over 255 bytes",
            key.sign(&"s".repeat(256), json!({})),
            500232,
        ),
        // one subject, one spelling (security review, row 1)
        ("a trailing space", key.sign("alice ", json!({})), 500233),
        ("a leading space", key.sign(" alice", json!({})), 500233),
        ("a trailing tab", key.sign("alice\t", json!({})), 500233),
        (
            "a control character",
            key.sign("al\u{1}ice", json!({})),
            500233,
        ),
        (
            "a no-break space",
            key.sign("alice\u{a0}", json!({})),
            500233,
        ),
    ];
    let ns = app.state.settings.namespace.clone();
    let monitor = Monitor::start(&app.state.settings.redis_url, &ns).await;
    let users_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let path = format!("1-{}", "0".repeat(32));
    for (what, token, want) in &cases {
        for (status, body) in [
            app.get(&format!("/api/seckill/path?goodsId={goods}"), token)
                .await,
            app.buy(token, &path, goods).await,
        ] {
            assert_eq!((status, code(&body)), (401, *want), "{what}: {body}");
            assert!(!body["msg"].as_str().unwrap().is_empty());
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // (each edge reads the scripts' release and reports its own every few seconds, `lua:state`
    // and `lua:edges`: not the requests' doing)
    let lines: Vec<String> = monitor
        .lines()
        .into_iter()
        .filter(|l| !l.contains(&format!("{ns}lua:")))
        .collect();
    assert!(lines.is_empty(), "bad tokens reached Redis: {lines:?}");
    let users_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(users_before, users_after, "a bad token made a user");
    // the good token after them is taken
    assert!(!app.path_for(&good, goods).await.is_empty());
}

/// Security review, row 1: `alice` and `alice ` were one user under MySQL's PAD SPACE collation,
/// so the second read and paid the first's order. Subjects are now stored byte for byte, and the
/// door refuses the padded spelling outright (tested with the other refusals above).
#[tokio::test]
async fn subjects_that_differ_only_by_trailing_spaces_are_never_one_user() {
    let app = crate::helpers::spawn_app().await;
    let subjects = flashgate::identity::subjects::Subjects::new(16);
    let alice = subjects.user_id(&app.state.db, "alice").await.unwrap();
    // a second edge (no shared map): the row is found again by its bytes
    let again = flashgate::identity::subjects::Subjects::new(16)
        .user_id(&app.state.db, "alice")
        .await
        .unwrap();
    assert_eq!(alice, again);
    for other in ["alice ", "alice  ", "ALICE", "alice\u{a0}"] {
        let id = flashgate::identity::subjects::Subjects::new(16)
            .user_id(&app.state.db, other)
            .await
            .unwrap();
        assert_ne!(id, alice, "{other:?} became alice's user");
        let back = flashgate::identity::subjects::Subjects::subject_of(&app.state.db, id)
            .await
            .unwrap();
        assert_eq!(back.as_deref(), Some(other));
    }
}
