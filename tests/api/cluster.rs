//! flashgate on a Redis Cluster of three primaries (`scripts/cluster` starts it on
//! 127.0.0.1:7101-7103; `TEST_CLUSTER_URL` names another). The admission, worker and script
//! suites also run whole on it (`scripts/test` runs them a second time with `TEST_REDIS_URL` set
//! to the cluster); the tests here check what only a cluster has: sales on different nodes,
//! scripts loaded on every primary, a NOSCRIPT from one node.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use flashgate::domain::GoodsId;
use redis::AsyncCommands;

use crate::helpers::{TestApp, concurrently, spawn_with, test_settings};

pub fn cluster_url() -> String {
    std::env::var("TEST_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103/".into())
}

/// A plain connection to every node of the cluster, by `host:port`.
pub async fn nodes() -> HashMap<String, redis::aio::MultiplexedConnection> {
    let url = cluster_url();
    let seed = url
        .trim_start_matches("redis+cluster://")
        .split(',')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let client = redis::Client::open(format!("redis://{seed}/")).unwrap();
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("no Redis Cluster at {seed} (run scripts/cluster): {e}"));
    let listing: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut out = HashMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 2 && fields[2].contains("master") {
            let addr = fields[1].split('@').next().unwrap().to_string();
            let c = redis::Client::open(format!("redis://{addr}/"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            out.insert(addr, c);
        }
    }
    assert_eq!(out.len(), 3, "expected 3 primaries: {listing}");
    out
}

/// The node that holds `key`, found by asking each node for it directly.
pub async fn holder(
    nodes: &mut HashMap<String, redis::aio::MultiplexedConnection>,
    key: &str,
) -> String {
    let mut found = Vec::new();
    for (addr, con) in nodes.iter_mut() {
        // a plain connection gets MOVED for keys of other nodes' slots: that is an error here
        if let Ok(1) = con.exists::<_, i64>(key).await {
            found.push(addr.clone());
        }
    }
    assert_eq!(found.len(), 1, "{key} held by {found:?}");
    found.pop().unwrap()
}

async fn cluster_app() -> TestApp {
    let mut settings = test_settings();
    settings.redis_url = cluster_url();
    spawn_with(settings, true).await
}

#[tokio::test]
async fn sales_on_different_nodes_each_sell_exactly_their_stock() {
    let app = cluster_app().await;
    let mut nodes = nodes().await;
    // sales until they sit on at least two nodes (ids hash to slots; 8 is plenty)
    let mut sales: Vec<GoodsId> = Vec::new();
    let mut on: BTreeSet<String> = BTreeSet::new();
    for _ in 0..8 {
        let goods = app.sale(20).await;
        on.insert(holder(&mut nodes, &app.state.keys.sale(goods).stock()).await);
        sales.push(goods);
    }
    assert!(on.len() >= 2, "every sale landed on one node: {on:?}");

    // 60 shoppers try every sale, concurrently
    let users = app.users(60).await;
    let mut jobs = Vec::new();
    for &g in &sales {
        for u in &users {
            jobs.push((g, u.clone()));
        }
    }
    let app = std::sync::Arc::new(app);
    let statuses = concurrently(jobs, 64, |(g, u)| {
        let app = app.clone();
        async move {
            // once a sale is sold out, even the path is refused (410)
            let (s, body) = app
                .get(&format!("/api/seckill/path?goodsId={g}"), &u.token)
                .await;
            match body["data"].as_str() {
                Some(path) if s == 200 => app.buy(&u.token, path, g).await.0,
                _ => s,
            }
        }
    })
    .await;
    let queued = statuses.iter().filter(|&&s| s == 202).count();
    assert_eq!(queued, 20 * sales.len(), "statuses: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [202, 410].contains(s)),
        "{statuses:?}"
    );
    for &g in &sales {
        app.drained(g, Duration::from_secs(30)).await;
        assert_eq!(app.orders(g).await, 20);
        app.assert_invariants(g, 20).await;
    }
}

#[tokio::test]
async fn scripts_are_loaded_on_every_primary_and_a_flushed_node_reloads() {
    let app = cluster_app().await;
    let mut nodes = nodes().await;
    let scripts = app.state.scripts.get();
    for (addr, con) in nodes.iter_mut() {
        for s in scripts.all() {
            let exists: Vec<bool> = redis::cmd("SCRIPT")
                .arg("EXISTS")
                .arg(&s.sha)
                .query_async(con)
                .await
                .unwrap();
            assert_eq!(exists, vec![true], "{} not loaded on {addr}", s.name);
        }
    }

    // flush the scripts of the node that holds a sale, behind the edge's back: the next buy
    // meets NOSCRIPT there, loads the script again and is admitted
    let goods = app.sale(3).await;
    let addr = holder(&mut nodes, &app.state.keys.sale(goods).stock()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(nodes.get_mut(&addr).unwrap())
        .await
        .unwrap();
    let users = app.users(1).await;
    let path = app.path_for(&users[0].token, goods).await;
    let (status, body) = app.buy(&users[0].token, &path, goods).await;
    assert_eq!(status, 202, "{body}");
    app.drained(goods, Duration::from_secs(10)).await;
    assert!(app.result(&users[0].token, goods).await > 0);
}
