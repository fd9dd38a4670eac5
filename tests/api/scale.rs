//! Several edges and workers at once, behind nginx, sharing one Redis and one MySQL with no
//! coordination beyond them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{concurrently, spawn_with, test_settings};
use crate::nginx::Nginx;

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_two_workers_behind_nginx_sell_exactly_the_stock() {
    let mut settings = test_settings();
    settings.path_factor = 20;
    let mut app = spawn_with(settings, true).await;
    let (edge2, state2) = app.add_edge().await;
    app.add_worker().await;
    let edge1 = app.address.trim_start_matches("http://").to_string();
    let nginx = Nginx::start(&[edge1.clone(), edge2.clone()]).await;
    let goods = app.sale(300).await;
    let users = app.users(3000).await;
    let app = Arc::new(app);

    // static pages come from nginx, the API from the edges
    let page = app
        .http
        .get(format!("{}/goods.html", nginx.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()
            .get("server")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("nginx")
    );
    // nginx's public port gives out neither the operators' API and console nor the metrics
    for (method, path) in [
        (reqwest::Method::POST, "/api/admin/scripts/reload"),
        (reqwest::Method::POST, "/api/admin/sales/1/reset"),
        (reqwest::Method::GET, "/api/admin/sales"),
        (reqwest::Method::GET, "/admin.html"),
        (reqwest::Method::GET, "/admin"),
        (reqwest::Method::GET, "/js/admin.js"),
        (reqwest::Method::GET, "/metrics"),
        (reqwest::Method::GET, "/readyz"),
    ] {
        let r = app
            .http
            .request(method, format!("{}{path}", nginx.address))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path} through nginx");
    }
    let r = app
        .http
        .get(format!("{}/healthz", nginx.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let base = nginx.address.clone();
    let answers = concurrently(users.clone(), 128, |u| {
        let (app, base) = (app.clone(), base.clone());
        async move {
            let http = &app.http;
            let (s, body) = send(
                http.get(format!("{base}/api/seckill/path?goodsId={goods}"))
                    .bearer_auth(&u.token),
            )
            .await;
            let Some(path) = body["data"].as_str().filter(|_| s == 200) else {
                return (s, body);
            };
            send(
                http.post(format!("{base}/api/seckill/{path}/orders"))
                    .bearer_auth(&u.token)
                    .json(&json!({ "goodsId": goods.get() })),
            )
            .await
        }
    })
    .await;
    let queued = answers.iter().filter(|(s, _)| *s == 202).count();
    for (s, body) in &answers {
        assert!(
            *s == 202 || (*s == 410 && body["code"] == 500500),
            "{s} {body}"
        );
    }
    assert_eq!(queued, 300);
    // both edges took part
    let served = |m: &flashgate::plumbing::metrics::Metrics| m.admissions_all();
    assert!(
        served(&app.state.metrics) > 0 && served(&state2.metrics) > 0,
        "one edge got nothing"
    );

    app.drained(goods, Duration::from_secs(60)).await;
    assert_eq!(app.orders(goods).await, 300);
    app.assert_invariants(goods, 300).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT user_id FROM seckill_order WHERE goods_id = ?")
        .bind(goods.get())
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 300);

    // each edge answers a shopper who holds a path SOLD_OUT from Redis and raises its flag
    let buyers: HashSet<i64> = ids.iter().copied().collect();
    let late = users
        .iter()
        .find(|u| !buyers.contains(&u.id.get()))
        .unwrap();
    let path = app.path_by_hand(goods, late).await;
    for edge in [&edge1, &edge2] {
        let (s, body) = send(
            app.http
                .post(format!("http://{edge}/api/seckill/{path}/orders"))
                .bearer_auth(&late.token)
                .json(&json!({ "goodsId": goods.get() })),
        )
        .await;
        assert_eq!((s, body["code"].as_i64()), (410, Some(500500)));
    }
    assert!(app.state.local.is_sold_out(goods) && state2.local.is_sold_out(goods));
    // one unit comes back (as when an order fails): restore.lua publishes, both flags clear
    let buyer = flashgate::domain::UserId::new(ids[0]).unwrap();
    assert!(
        app.give_back(goods, buyer, flashgate::sales::store::GiveBack::Failed)
            .await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.local.is_sold_out(goods) || state2.local.is_sold_out(goods) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a sold-out flag was not cleared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(nginx);
}
