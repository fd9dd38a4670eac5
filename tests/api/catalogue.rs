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
    let (s, r) = app.get("/api/goods/987654", "").await;
    assert_eq!((s, r["code"].as_i64()), (404, Some(500404)));
    let cached: Option<String> = app
        .redis()
        .get(
            app.state
                .keys
                .goods(flashgate::domain::GoodsId::new(987654).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(cached.as_deref(), Some("null"));
    let (s, r) = app.get("/api/goods/abc", "").await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500101)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let (s, _) = app.get("/healthz", "").await;
    assert_eq!(s, 200);
    let (s, r) = app.get("/readyz", "").await;
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
