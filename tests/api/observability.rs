//! The observability kit (`deploy/prometheus`, `deploy/grafana`) matches what runs: every metric
//! the Grafana dashboard queries is exposed by a live edge + worker after a sale, and Prometheus
//! scrapes the edges and the worker that `compose.yaml` starts, on the ports they listen on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::spawn_app_with_worker;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `flashgate_…` name in the dashboard's queries.
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("deploy/grafana/flashgate.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("flashgate_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    names
}

/// The sample names of a text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exposed_by_a_live_edge_and_worker() {
    let wanted = dashboard_metrics();
    assert!(wanted.len() >= 15, "the dashboard queries only {wanted:?}");
    let app = spawn_app_with_worker().await;
    let goods = app.sale(2).await;
    // and a sale with a waiting room, whose size the edge reports
    let start = chrono::Utc::now().timestamp_millis() + 600_000;
    let room_sale = serde_json::json!({
        "name": "Room", "title": "Room", "price": 2, "salePrice": 1, "stock": 5,
        "startAt": start, "endAt": start + 3_600_000, "roomOpensBefore": 3600,
    });
    let (s, r) = app
        .admin("POST", "/api/admin/sales", Some(&room_sale))
        .await;
    assert_eq!(s, 201, "{r}");
    let users = app.users(2).await;
    for u in &users {
        let path = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);
    }
    // drained: the drift gauge is reported only at rest
    let deadline = Instant::now() + Duration::from_secs(15);
    let missing = loop {
        let (status, _) = app.get("/healthz", "").await;
        assert_eq!(status, 200);
        let text = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let have = exposed(&text);
        let missing: Vec<&String> = wanted.iter().filter(|m| !have.contains(*m)).collect();
        if missing.is_empty() {
            assert!(
                text.contains(&format!("flashgate_stock_drift{{goods=\"{goods}\"}} 0")),
                "a drained, untouched sale drifts: {text}"
            );
            break missing.len();
        }
        if Instant::now() > deadline {
            panic!("the dashboard queries metrics /metrics does not have: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(missing, 0);
}

#[test]
fn prometheus_scrapes_the_edges_and_workers_compose_starts() {
    let prom: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap(),
    )
    .unwrap();
    let compose: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("compose.yaml")).unwrap())
            .unwrap();
    let services = compose["services"].as_object().unwrap();
    let env = &compose["x-flashgate-env"];
    let edge_port = env["FLASHGATE_LISTEN"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let worker_port = env["FLASHGATE_WORKER_LISTEN"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let mut scraped = BTreeSet::new();
    for job in prom["scrape_configs"].as_array().unwrap() {
        for sc in job["static_configs"].as_array().unwrap() {
            for t in sc["targets"].as_array().unwrap() {
                let (host, port) = t.as_str().unwrap().split_once(':').unwrap();
                let command = services[host]["command"][0].as_str().unwrap();
                let want = if command == "worker" {
                    worker_port
                } else {
                    edge_port
                };
                assert_eq!(port, want, "{host} is scraped on the wrong port");
                scraped.insert(host.to_string());
            }
        }
    }
    // every edge and worker compose starts is scraped
    for (name, svc) in services {
        if matches!(svc["command"][0].as_str(), Some("serve" | "worker")) {
            assert!(scraped.contains(name), "{name} is not scraped");
        }
    }
    // and the kit is an opt-in profile
    for name in ["prometheus", "grafana"] {
        assert_eq!(services[name]["profiles"][0], "observability", "{name}");
    }
}
