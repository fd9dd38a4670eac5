//! The edge refuses what `docs/openapi.yaml` says is not a request of a route, with a 4xx
//! envelope and a code, and changes nothing (issue #44; `scripts/contract` runs a contract
//! tester, schemathesis, against a whole instance):
//!
//! - a method a known path does not take: 405 with `Allow` naming the methods it does;
//! - a body on a route that takes none (a `POST` without one may send `{}`, as the pages do):
//!   400, code 500102;
//! - a body that is not JSON, or not declared JSON, on a route that reads one: 400 or 415.

use reqwest::header::{ALLOW, CONTENT_TYPE};
use serde_json::Value;

use crate::helpers::{ADMIN_TOKEN, SHOP_TOKEN, spawn_app};

/// The methods of an `Allow` header, sorted.
fn allowed(resp: &reqwest::Response) -> Vec<String> {
    let mut methods: Vec<String> = resp
        .headers()
        .get(ALLOW)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    methods.sort();
    methods
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_with_allow_in_the_envelope() {
    let app = spawn_app().await;
    let admin = app.admin_address.clone().unwrap();
    let cases = [
        (app.address.clone(), "TRACE", "/api/goods", vec!["GET"]),
        (app.address.clone(), "DELETE", "/api/goods/7", vec!["GET"]),
        (
            app.address.clone(),
            "PUT",
            "/api/seckill/room",
            vec!["GET", "POST"],
        ),
        (app.address.clone(), "GET", "/api/login", vec!["POST"]),
        (app.address.clone(), "PATCH", "/healthz", vec!["GET"]),
        (
            admin.clone(),
            "DELETE",
            "/api/admin/sales/7",
            vec!["GET", "PATCH"],
        ),
        (
            admin.clone(),
            "PUT",
            "/api/admin/sales",
            vec!["GET", "POST"],
        ),
        (admin.clone(), "GET", "/api/orders/7/close", vec!["POST"]),
    ];
    for (base, method, path, allow) in cases {
        let resp = app
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}{path}"),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(allowed(&resp), allow, "{method} {path}");
        assert!(
            resp.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{method} {path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], 500101, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn a_body_on_a_route_that_takes_none_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(5).await;
    let admin = app.admin_address.clone().unwrap();
    // (listener, method, path, token, body): each route takes no body
    let cases = [
        (
            &app.address,
            "POST",
            "/api/logout".to_string(),
            user.token.as_str(),
        ),
        (
            &app.address,
            "GET",
            "/api/goods".to_string(),
            user.token.as_str(),
        ),
        (
            &app.address,
            "GET",
            format!("/api/seckill/result?goodsId={goods}"),
            user.token.as_str(),
        ),
        (
            &admin,
            "POST",
            format!("/api/admin/sales/{goods}/cancel"),
            ADMIN_TOKEN,
        ),
        (&admin, "POST", "/api/admin/lua/promote".into(), ADMIN_TOKEN),
        (&admin, "POST", "/api/orders/1/close".into(), SHOP_TOKEN),
    ];
    for body in ["\u{1}\u{2}garbage", "[]", "{\"a\": 1}", "null", "{"] {
        for (base, method, path, token) in &cases {
            let resp = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{base}{path}"),
                )
                .bearer_auth(token)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let got: Value = resp.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 400, "{method} {path} with {body:?}: {got}");
            assert_eq!(got["code"], 500102, "{method} {path} with {body:?}: {got}");
        }
    }
    // nothing changed: the shopper is still logged in, the sale not cancelled
    let (status, _) = app
        .get(&format!("/api/seckill/result?goodsId={goods}"), &user.token)
        .await;
    assert_eq!(status, 200);
    let (_, view) = app
        .admin("GET", &format!("/api/admin/sales/{goods}"), None)
        .await;
    assert_eq!(view["data"]["phase"], "live", "{view}");
    // and what the pages send, nothing or `{}`, is taken
    for body in ["", "{}", " { } "] {
        let resp = app
            .http
            .post(app.url("/api/logout"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "logout with {body:?}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_on_a_json_route_is_refused() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(5).await;
    let admin = app.admin_address.clone().unwrap();
    // a JSON route: refused as not JSON whatever it is declared as
    for (content_type, status) in [
        ("application/json", 400),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/octet-stream", 415),
    ] {
        for (base, path, token) in [
            (
                &app.address,
                "/api/seckill/room".to_string(),
                user.token.as_str(),
            ),
            (&admin, "/api/admin/sales".into(), ADMIN_TOKEN),
            (
                &admin,
                format!("/api/admin/sales/{goods}/reset"),
                ADMIN_TOKEN,
            ),
            (&admin, "/api/admin/lua/rollback".into(), ADMIN_TOKEN),
        ] {
            let resp = app
                .http
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .header(CONTENT_TYPE, content_type)
                .body("\u{1}not json")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), status, "{path} as {content_type}");
            let got: Value = resp.json().await.unwrap();
            assert_eq!(got["code"], 500101, "{path} as {content_type}: {got}");
        }
    }
    // an optional body sent chunked (no Content-Length) is read too, not taken for none
    let raw = format!(
        "POST /api/admin/sales/{goods}/reset HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\nnot json\r\n0\r\n\r\n"
    );
    let answer = raw_request(admin.trim_start_matches("http://"), &raw).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("500101"), "{answer}");
}

/// Sends `raw` to `address` as it is and reads the answer until the server closes.
async fn raw_request(address: &str, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
