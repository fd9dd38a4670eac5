//! `docs/openapi.yaml` is held against the router: every route of the table (src/http/routes.rs)
//! is documented with its method, nothing else is, and every documented operation, called on a
//! live edge, answers with a status the document lists for it. (That the document is valid
//! OpenAPI 3 is checked by a real validator in scripts/check-docs.)

use std::collections::BTreeSet;

use flashgate::http::routes::{Route, Surface};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, spawn_with, test_settings};

fn document() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            // the path item's other keys (`servers`) are not operations
            if METHODS.contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    let routed: BTreeSet<(String, String)> = Route::ALL
        .iter()
        .map(|r| (r.method().to_string(), r.template().to_string()))
        .collect();
    let documented = documented(&doc);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // each path says which listeners serve it (its `servers`), as the table does
    for r in Route::ALL {
        let servers: BTreeSet<&str> = doc["paths"][r.template()]["servers"]
            .as_array()
            .unwrap_or_else(|| panic!("{} has no servers", r.template()))
            .iter()
            .map(|s| {
                let d = s["description"].as_str().unwrap();
                d.split(' ').next().unwrap()
            })
            .collect();
        let want: BTreeSet<&str> = match r.surface() {
            Surface::Public => ["public"].into(),
            Surface::Admin => ["admin"].into(),
            Surface::PublicAndAdmin | Surface::Ops => ["public", "admin"].into(),
        };
        assert_eq!(servers, want, "{r:?}: the listeners of {}", r.template());
    }
    // and the admin routes say they need the admin token, or the shop server's
    for r in Route::ALL.iter().filter(|r| r.surface() == Surface::Admin) {
        let op = &doc["paths"][r.template()][r.method().as_str().to_lowercase()];
        let scheme = &op["security"][0];
        assert!(
            scheme["admin"] == json!([]) || scheme["shopServer"] == json!([]),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_answers_with_a_documented_status() {
    let doc = document();
    let app = spawn_with(test_settings(), false).await;
    let goods = app.sale(5).await;
    let user = &app.users(1).await[0];
    let hidden = app.path_for(&user.token, goods).await;
    let login = json!({
        "mobile": user.mobile,
        "password": flashgate::accounts::password::client_hash(flashgate::cli::seed::TEST_PASSWORD),
    });
    for route in Route::ALL {
        let template = route.template();
        let method = route.method();
        let op = &doc["paths"][template][method.as_str().to_lowercase()];
        let statuses: BTreeSet<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let path = template
            .replace("{id}", &goods.to_string())
            .replace("{goodsId}", &goods.to_string())
            .replace("{path}", &hidden);
        let query = match route {
            Route::Captcha | Route::Result => format!("?goodsId={goods}"),
            Route::Path => format!("?goodsId={goods}&verifyCode=0"),
            _ => String::new(),
        };
        let (base, token) = match route.surface() {
            Surface::Admin => (app.admin_address.clone().unwrap(), ADMIN_TOKEN.to_string()),
            _ => (app.address.clone(), user.token.clone()),
        };
        let body = match route {
            Route::Login => login.clone(),
            Route::Buy => json!({ "goodsId": goods.get() }),
            _ => json!({}),
        };
        let mut req = app
            .http
            .request(method.clone(), format!("{base}{path}{query}"))
            .bearer_auth(&token);
        if method != hyper::Method::GET {
            req = req.json(&body);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!(
            statuses.contains(&status),
            "{method} {template} answered {status}, documented: {statuses:?}"
        );
    }
}
