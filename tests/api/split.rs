//! A hot item split into stock shards (`src/admission/split.rs`): shoppers crowd one shard, units move
//! over from the others, and the whole stock sells, exactly, on one Redis and on the cluster.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flashgate::cli::seed::NewSale;
use flashgate::domain::{GoodsId, Shard};
use flashgate::plumbing::config::QueueKind;
use redis::AsyncCommands;

use crate::cluster::{cluster_url, holder, nodes};
use crate::helpers::{TestApp, concurrently, spawn_with, test_settings};

const STOCK: i32 = 1000;
const SHARDS: u16 = 4;

async fn split_sale(app: &TestApp) -> GoodsId {
    let mut new = NewSale::new(STOCK, -1, 3600);
    new.shards = SHARDS;
    app.create_sale(&new).await
}

async fn shard_stocks(app: &TestApp, goods: GoodsId, shards: u16) -> Vec<i64> {
    let mut out = Vec::new();
    for shard in Shard::all(goods, shards) {
        let s: Option<i64> = app
            .redis()
            .get(app.state.keys.shard(shard).stock())
            .await
            .unwrap();
        out.push(s.unwrap_or(0));
    }
    out
}

/// 1,000 units over 4 shards of 250; 1,200 shoppers, 1,000 of them at home in shard 0,
/// 150 in shard 1, none in shard 2, 50 in shard 3; every tenth one presses twice.
async fn skewed_shoppers_buy_exactly_the_whole_stock(
    redis_url: String,
    queue: QueueKind,
) -> (TestApp, GoodsId) {
    let mut settings = test_settings();
    settings.redis_url = redis_url;
    settings.queue = queue;
    let app = spawn_with(settings, true).await;
    let goods = split_sale(&app).await;
    assert_eq!(shard_stocks(&app, goods, SHARDS).await, vec![250; 4]);

    let users = app.users(4000).await;
    let home = |u: &flashgate::cli::seed::TestUser| Shard::home(goods, u.id, SHARDS).index;
    let mut shoppers = Vec::new();
    for (shard, count) in [(0, 1000), (1, 150), (2, 0), (3, 50)] {
        shoppers.extend(
            users
                .iter()
                .filter(|u| home(u) == shard)
                .take(count)
                .cloned(),
        );
    }
    assert_eq!(shoppers.len(), 1200);

    let app = Arc::new(app);
    let answers = concurrently(
        shoppers.iter().cloned().enumerate().collect(),
        96,
        |(i, u)| {
            let app = app.clone();
            async move {
                let (s, body) = app
                    .get(&format!("/api/seckill/path?goodsId={goods}"), &u.token)
                    .await;
                let Some(path) = body["data"].as_str().filter(|_| s == 200) else {
                    return vec![s];
                };
                let presses = if i % 10 == 0 { 2 } else { 1 };
                let mut got = Vec::new();
                for _ in 0..presses {
                    got.push(app.buy(&u.token, path, goods).await.0);
                }
                got
            }
        },
    )
    .await;
    let all: Vec<u16> = answers.iter().flatten().copied().collect();
    let mut by_status = std::collections::BTreeMap::new();
    for s in &all {
        *by_status.entry(*s).or_insert(0) += 1;
    }
    let queued = all.iter().filter(|&&s| s == 202).count();
    assert_eq!(queued, STOCK as usize, "answers by status: {by_status:?}");
    assert!(
        all.iter().all(|s| [202, 409, 410].contains(s)),
        "answers by status: {by_status:?}"
    );
    // nobody was admitted twice
    for a in &answers {
        assert!(a.iter().filter(|&&s| s == 202).count() <= 1);
    }
    assert_eq!(
        shard_stocks(&app, goods, SHARDS).await,
        vec![0; 4],
        "stock left unsold"
    );
    assert!(
        app.state.metrics.stock_moves.get() >= 550,
        "shard 0's shoppers bought at least 550 units moved in from elsewhere"
    );

    for shard in Shard::all(goods, SHARDS) {
        let queue = app.state.keys.shard(shard).queue();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while app.redis().xlen::<_, i64>(&queue).await.unwrap() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} not drained"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // through RabbitMQ the stream empties before the consumers commit: wait for MySQL too
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.orders(goods).await < STOCK as i64 {
        assert!(tokio::time::Instant::now() < deadline, "orders not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.orders(goods).await, STOCK as i64);
    assert_eq!(app.mysql_stock(goods).await, 0);
    let dups: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) - COUNT(DISTINCT user_id) FROM order_info WHERE goods_id = ?",
    )
    .bind(goods.get())
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(dups, 0);
    // a shard-0 shopper who got a moved unit sees their order, as anyone does
    let buyer = shoppers
        .iter()
        .zip(&answers)
        .filter(|(u, a)| home(u) == 0 && a.contains(&202))
        .map(|(u, _)| u)
        .next_back()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.result(&buyer.token, goods).await <= 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result for a buyer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and the detail page shows the sum of the shards
    let (s, body) = app.get(&format!("/api/goods/{goods}"), "").await;
    assert_eq!((s, body["data"]["stock"].as_i64()), (200, Some(0)));

    // a reset for a repeat run gives every shard its share again
    let (s, body) = app
        .admin_post(
            &format!("/api/admin/sales/{goods}/reset"),
            crate::helpers::ADMIN_TOKEN,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(shard_stocks(&app, goods, SHARDS).await, vec![250; 4]);
    assert_eq!(app.orders(goods).await, 0);
    (Arc::try_unwrap(app).ok().unwrap(), goods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sale_sells_its_whole_stock_to_skewed_shoppers() {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379/".into());
    skewed_shoppers_buy_exactly_the_whole_stock(url, QueueKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sale_sells_out_through_rabbitmq_too() {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or("redis://127.0.0.1:6379/".into());
    skewed_shoppers_buy_exactly_the_whole_stock(url, QueueKind::Rabbitmq).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_split_sale_spreads_over_nodes_and_sells_out() {
    let (app, goods) =
        skewed_shoppers_buy_exactly_the_whole_stock(cluster_url(), QueueKind::Redis).await;
    // its shards sit on more than one node
    let mut nodes = nodes().await;
    let mut on = BTreeSet::new();
    for shard in Shard::all(goods, SHARDS) {
        on.insert(holder(&mut nodes, &app.state.keys.shard(shard).meta()).await);
    }
    assert!(on.len() >= 2, "all shards on one node: {on:?}");
}

#[tokio::test]
async fn an_unpaid_order_of_a_split_sale_gives_its_unit_back_to_the_buyers_home_shard() {
    let mut settings = test_settings();
    settings.unpaid_timeout_secs = 1;
    let app = spawn_with(settings, true).await;
    let mut new = NewSale::new(2, -1, 3600);
    new.shards = 2;
    let goods = app.create_sale(&new).await;
    let users = app.users(4).await;
    // a shopper at home in shard 1 buys both its unit and, moved over, shard 0's
    let home1: Vec<_> = users
        .iter()
        .filter(|u| Shard::home(goods, u.id, 2).index == 1)
        .take(2)
        .collect();
    assert_eq!(home1.len(), 2);
    for u in &home1 {
        let path = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);
    }
    assert_eq!(shard_stocks(&app, goods, 2).await, vec![0, 0]);
    // nobody pays: both close, both units go back to shard 1, where their buyers live,
    // and the buyers may buy again
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while shard_stocks(&app, goods, 2).await != vec![0, 2] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "units never came back: {:?}",
            shard_stocks(&app, goods, 2).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let path = app.path_for(&home1[0].token, goods).await;
    assert_eq!(app.buy(&home1[0].token, &path, goods).await.0, 202);
}
