//! The catalogue (cache-aside), static pages and the operational endpoints.

use redis::AsyncCommands;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goods_are_listed_and_detailed_with_status() {
    let app = spawn_app().await;
    let running = app.sale(7).await;
    let later = app.sale_window(3, 120, 60).await;
    let (s, r) = app.get("/api/goods", "").await;
    assert_eq!(s, 200);
    let list = r["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    for field in [
        "id",
        "name",
        "title",
        "img",
        "price",
        "seckillPrice",
        "stock",
        "startAt",
        "endAt",
    ] {
        assert!(list[0].get(field).is_some(), "missing {field}");
    }
    // the list is now cached
    let cached: Option<String> = app.redis().get(app.state.keys.goods_list()).await.unwrap();
    assert!(cached.is_some());
    let ttl: i64 = app.redis().ttl(app.state.keys.goods_list()).await.unwrap();
    assert!((50..=80).contains(&ttl), "ttl {ttl}");

    let (s, r) = app.get(&format!("/api/goods/{running}"), "").await;
    assert_eq!(s, 200);
    assert_eq!(r["data"]["status"], 1);
    assert_eq!(r["data"]["remainSeconds"], 0);
    assert_eq!(r["data"]["stock"], 7);
    let (_, r) = app.get(&format!("/api/goods/{later}"), "").await;
    assert_eq!(r["data"]["status"], 0);
    let remain = r["data"]["remainSeconds"].as_i64().unwrap();
    assert!((118..=120).contains(&remain), "{remain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_goods_is_cached_as_absent() {
    let app = spawn_app().await;
    let cached = |id: i64| {
        let key = app
            .state
            .keys
            .goods(flashgate::domain::GoodsId::new(id).unwrap());
        let mut con = app.redis();
        async move { con.get::<_, Option<String>>(key).await.unwrap() }
    };
    // an id above the highest there is: 404, and nothing cached for it (security review, row 12)
    let (s, r) = app.get("/api/goods/987654", "").await;
    assert_eq!((s, r["code"].as_i64()), (404, Some(500404)));
    assert_eq!(cached(987654).await, None);
    // an id below the highest that is no sale (a goods row without one): cached as absent
    sqlx::query(
        "INSERT INTO goods (id, name, title, detail, price) VALUES (987700, 'n', 't', '', 1)",
    )
    .execute(&app.state.db)
    .await
    .unwrap();
    let _: () = app
        .redis()
        .del(app.state.keys.goods_highest())
        .await
        .unwrap();
    let (s, r) = app.get("/api/goods/987654", "").await;
    assert_eq!((s, r["code"].as_i64()), (404, Some(500404)));
    assert_eq!(cached(987654).await.as_deref(), Some("null"));
    let (s, r) = app.get("/api/goods/abc", "").await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500101)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let (s, _) = app.get("/healthz", "").await;
    assert_eq!(s, 200);
    let (s, r) = app.ops_get("/readyz").await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"]["redis"], "ok");
    app.sale(1).await;
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("flashgate_admissions_total{outcome=\"queued\"}"));
    assert!(text.contains("flashgate_queue_length{goods="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_cached_revalidated_compressed_and_confined_to_public() {
    let app = spawn_app().await;
    // HTML: no-cache, an ETag, and 304 on a second load that sends it back
    let r = app.http.get(app.url("/login.html")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert!(body.contains("<form"));
    let r = app
        .http
        .get(app.url("/login.html"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    // "/" is the index; a versioned asset is cached for a year, gzip when asked for
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(app.url("/js/api.js?v=1"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=31536000")
    );
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    let plain = app.http.get(app.url("/js/api.js")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.bytes().await.unwrap().len() > gz.len());

    // nothing outside public/: raw, encoded and backslash traversals are refused
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/js/..%2f..%2fCargo.toml",
        "/..%5cCargo.toml",
        "/js/%2e%2e/%2e%2e/src/main.rs",
    ] {
        let status = raw_get(&app.address, path).await;
        assert!(status == 400 || status == 404, "{path} answered {status}");
    }
    let r = app.http.get(app.url("/nope.html")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app.http.post(app.url("/login.html")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

/// Sends a GET with the path exactly as given (HTTP clients normalise `..` away).
async fn raw_get(address: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}
