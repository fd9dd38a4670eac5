//! Orders out (`events`): a real HTTP receiver inside the test (a pretend shop on a free port)
//! that checks every request's Standard Webhooks signature and every event's `data` against the
//! JSON Schema of `docs/events.md`; RabbitMQ with a queue the test binds to the exchange.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{TestApp, spawn_with, test_settings};
use flashgate::domain::GoodsId;
use flashgate::plumbing::config::Settings;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Got {
    pub id: String,
    pub event: Value,
    pub at: Instant,
    pub status: u16,
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    /// This status (with `Retry-After` if given) until the time, then 200.
    Until(Instant, u16, Option<u64>),
    /// This status for the first N requests, then 200.
    FirstN(usize, u16, Option<u64>),
}

/// A pretend shop's webhook endpoint.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Got>>>,
    pub answer: Arc<Mutex<Answer>>,
    /// Requests for a `webhook-id` that came while another for it was being answered.
    pub overlaps: Arc<Mutex<Vec<String>>>,
    pub bad_signatures: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

fn signed_ok(headers: &hyper::HeaderMap, body: &[u8]) -> bool {
    let key = STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    mac.update(body);
    let want = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = h("webhook-timestamp")
        .parse::<i64>()
        .is_ok_and(|t| (t - chrono::Utc::now().timestamp()).abs() < 300);
    fresh && h("webhook-signature").split(' ').any(|s| s == want)
}

impl Receiver {
    pub async fn start(answer: Answer, delay: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/flashgate", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let bad = Arc::new(Mutex::new(0));
        let busy = Arc::new(Mutex::new(HashSet::<String>::new()));
        let count = Arc::new(Mutex::new(0usize));
        let (g, a, o, b) = (got.clone(), answer.clone(), overlaps.clone(), bad.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (g, a, o, b, busy, count) = (
                    g.clone(),
                    a.clone(),
                    o.clone(),
                    b.clone(),
                    busy.clone(),
                    count.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (g, a, o, b, busy, count) = (
                                g.clone(),
                                a.clone(),
                                o.clone(),
                                b.clone(),
                                busy.clone(),
                                count.clone(),
                            );
                            async move {
                                use http_body_util::BodyExt;
                                let headers = req.headers().clone();
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let id = headers
                                    .get("webhook-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string();
                                if !busy.lock().unwrap().insert(id.clone()) {
                                    o.lock().unwrap().push(id.clone());
                                }
                                if !signed_ok(&headers, &body) {
                                    *b.lock().unwrap() += 1;
                                }
                                tokio::time::sleep(delay).await;
                                let n = {
                                    let mut c = count.lock().unwrap();
                                    *c += 1;
                                    *c
                                };
                                let (status, retry) = match a.lock().unwrap().clone() {
                                    Answer::Ok => (200, None),
                                    Answer::Until(t, s, r) if Instant::now() < t => (s, r),
                                    Answer::FirstN(k, s, r) if n <= k => (s, r),
                                    _ => (200, None),
                                };
                                g.lock().unwrap().push(Got {
                                    id: id.clone(),
                                    event: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                    at: Instant::now(),
                                    status,
                                });
                                busy.lock().unwrap().remove(&id);
                                let mut resp = hyper::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from_static(b"ok"),
                                ));
                                *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                                if let Some(r) = retry {
                                    resp.headers_mut()
                                        .insert("retry-after", r.to_string().parse().unwrap());
                                }
                                Ok::<_, Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            url,
            got,
            answer,
            overlaps,
            bad_signatures: bad,
            task,
        }
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The events taken (2xx), by id.
    pub fn delivered(&self) -> HashMap<String, Value> {
        self.got()
            .into_iter()
            .filter(|g| g.status < 300)
            .map(|g| (g.id, g.event))
            .collect()
    }

    /// Waits until `n` distinct events were taken.
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let until = Instant::now() + within;
        while self.delivered().len() < n {
            assert!(
                Instant::now() < until,
                "{} of {n} events delivered: {:?}",
                self.delivered().len(),
                self.got()
                    .iter()
                    .map(|g| (&g.id, g.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn events_settings(urls: &str) -> Settings {
    Settings {
        webhook_url: urls.into(),
        webhook_secret: SECRET.into(),
        ..test_settings()
    }
}

/// `data` against the JSON Schema printed in docs/events.md (the subset it uses: type,
/// required, additionalProperties, the properties' types).
pub fn check_schema(data: &Value) {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
    let block = doc
        .split("```json\n")
        .find(|b| b.contains("\"$schema\""))
        .and_then(|b| b.split("```").next())
        .expect("docs/events.md has the schema");
    let schema: Value = serde_json::from_str(block).unwrap();
    let obj = data
        .as_object()
        .unwrap_or_else(|| panic!("data is not an object: {data}"));
    for r in schema["required"].as_array().unwrap() {
        assert!(
            obj.contains_key(r.as_str().unwrap()),
            "{r} missing from {data}"
        );
    }
    let props = schema["properties"].as_object().unwrap();
    for (k, v) in obj {
        let p = props
            .get(k)
            .unwrap_or_else(|| panic!("{k} is not in the schema: {data}"));
        let types: Vec<&str> = match &p["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("schema type"),
        };
        let ok = types.iter().any(|t| match *t {
            "integer" => v.is_i64(),
            "string" => v.is_string(),
            "null" => v.is_null(),
            _ => false,
        });
        assert!(ok, "{k} = {v} is not {types:?}");
    }
}

/// `n` shoppers buy one unit each; their order ids once written.
async fn orders(app: &TestApp, goods: GoodsId, n: usize) -> Vec<(String, i64)> {
    let users = app.users(n).await;
    for u in &users {
        let path = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &path, goods).await.0, 202);
    }
    let mut out = Vec::new();
    for u in &users {
        let mut r = 0;
        for _ in 0..200 {
            r = app.result(&u.token, goods).await;
            if r != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out.push((u.token.clone(), r));
    }
    out
}

fn of_type<'a>(events: &'a HashMap<String, Value>, t: &str) -> Vec<&'a Value> {
    events.values().filter(|e| e["type"] == t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_has_one_created_event_and_paid_and_closed_follow_it() {
    let rx = Receiver::start(Answer::Ok, Duration::ZERO).await;
    let app = spawn_with(
        Settings {
            unpaid_timeout_secs: 3,
            ..events_settings(&rx.url)
        },
        true,
    )
    .await;
    let goods = app.sale(3).await;
    let bought = orders(&app, goods, 3).await;
    let (payer, paid_order) = bought[0].clone();
    let (s, body) = app
        .post(&format!("/api/orders/{paid_order}/pay"), &payer, &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    // 3 created, 1 paid, 2 closed (the unpaid ones, after 3 s)
    rx.wait_for(6, Duration::from_secs(20)).await;
    let events = rx.delivered();
    assert_eq!(*rx.bad_signatures.lock().unwrap(), 0);
    let created = of_type(&events, "flashgate.order.created");
    assert_eq!(created.len(), 3, "{events:?}");
    let mut ids: Vec<i64> = created
        .iter()
        .map(|e| e["data"]["orderId"].as_i64().unwrap())
        .collect();
    ids.sort();
    let mut want: Vec<i64> = bought.iter().map(|b| b.1).collect();
    want.sort();
    assert_eq!(ids, want, "one created event per order");
    for e in events.values() {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/flashgate");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(
            e["subject"],
            e["data"]["orderId"].as_i64().unwrap().to_string()
        );
        assert_eq!(e["data"]["goodsId"], goods.get());
        assert_eq!(e["data"]["price"], 100);
        check_schema(&e["data"]);
    }
    let paid = of_type(&events, "flashgate.order.paid");
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["data"]["orderId"], paid_order);
    let closed = of_type(&events, "flashgate.order.closed");
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|e| e["data"]["orderId"] != paid_order));
    // each order's created came before its paid or closed
    let got = rx.got();
    let first_at = |order: i64, t: &str| {
        got.iter()
            .filter(|g| {
                g.status < 300 && g.event["type"] == t && g.event["data"]["orderId"] == order
            })
            .map(|g| g.at)
            .min()
            .unwrap()
    };
    for e in paid.iter().chain(&closed) {
        let o = e["data"]["orderId"].as_i64().unwrap();
        assert!(first_at(o, "flashgate.order.created") < first_at(o, e["type"].as_str().unwrap()));
    }
    // nothing pending, nothing parked
    let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].backlog, status[0].parked), (0, 0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_a_while_gets_every_event_once_it_recovers_with_the_same_ids() {
    // failing for 15 s from now: long enough that the first tries fall in it however slowly a
    // loaded machine starts the app and writes the orders
    let rx = Receiver::start(
        Answer::Until(Instant::now() + Duration::from_secs(15), 500, None),
        Duration::ZERO,
    )
    .await;
    let app = spawn_with(events_settings(&rx.url), true).await;
    let goods = app.sale(5).await;
    orders(&app, goods, 5).await;
    rx.wait_for(5, Duration::from_secs(60)).await;
    let got = rx.got();
    let failed: HashSet<&String> = got
        .iter()
        .filter(|g| g.status == 500)
        .map(|g| &g.id)
        .collect();
    assert!(!failed.is_empty(), "the receiver failed nothing");
    let delivered = rx.delivered();
    for id in &failed {
        assert!(
            delivered.contains_key(*id),
            "an event answered 500 came back with another id"
        );
    }
    assert_eq!(of_type(&delivered, "flashgate.order.created").len(), 5);
    let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
    assert_eq!((status[0].backlog, status[0].parked), (0, 0), "{status:?}");
    assert!(app.state.metrics.events_delivered_to(&status[0].sink) >= 5);
}

/// The sink the worker's relay registered (it does at its first pass).
async fn registered_sink(app: &TestApp) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let sink: Option<String> = sqlx::query_scalar("SELECT sink FROM event_sink")
            .fetch_optional(&app.state.db)
            .await
            .unwrap();
        if let Some(s) = sink {
            return s;
        }
        assert!(Instant::now() < until, "the relay registered no sink");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_event_waits_while_its_created_event_is_held_in_a_batch_and_both_replay() {
    // every answer takes 300 ms: sent in one window, the two would arrive together
    let rx = Receiver::start(Answer::Ok, Duration::from_millis(300)).await;
    let app = spawn_with(events_settings(&rx.url), true).await;
    // the endpoint disabled before the order is written: its created event waits in its batch
    let sink = registered_sink(&app).await;
    sqlx::query("UPDATE event_sink SET disabled_at = NOW(3), disabled_why = 'test' WHERE sink = ?")
        .bind(&sink)
        .execute(&app.state.db)
        .await
        .unwrap();
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let goods = app.sale(1).await;
    let (payer, order) = orders(&app, goods, 1).await[0].clone();
    let (s, body) = app
        .post(&format!("/api/orders/{order}/pay"), &payer, &json!({}))
        .await;
    assert_eq!(s, 200, "{body}");
    let batched: Vec<String> =
        sqlx::query_scalar("SELECT orders FROM event_batch WHERE sink = ? AND state = 0")
            .bind(&sink)
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(
        batched,
        vec![format!("[{order}]")],
        "the created event is in its batch"
    );
    let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
    assert_eq!(
        status[0].backlog, 2,
        "the batch's event and the paid one: {status:?}"
    );
    assert!(rx.got().is_empty());
    // enabled: one pass holds both; the paid event goes only once the created one was taken
    assert!(
        flashgate::events::ops::enable(&app.state.db, &sink)
            .await
            .unwrap()
    );
    rx.wait_for(2, Duration::from_secs(10)).await;
    let at = |id: String| rx.got().iter().find(|g| g.id == id).unwrap().at;
    let (created, paid) = (at(format!("created-{order}")), at(format!("paid-{order}")));
    assert!(
        paid >= created + Duration::from_millis(300),
        "the paid event was sent before its created one was answered ({:?} after)",
        paid.saturating_duration_since(created)
    );
    let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
    assert_eq!((status[0].backlog, status[0].parked), (0, 0), "{status:?}");
    // replays: the order's two events (the created one sent from its batch has no delivery row
    // of its own until the replay makes one), then everything since before the sale
    let (code, out, err) = app.cli(&["events", "replay", "--order", &order.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 deliveries"), "{out}");
    // until the order's created and paid events were each sent `times` times
    let rx = &rx;
    let sent_times = |times: usize| async move {
        let sent = |id: String| rx.got().iter().filter(|g| g.id == id).count();
        let until = Instant::now() + Duration::from_secs(10);
        while sent(format!("created-{order}")) < times || sent(format!("paid-{order}")) < times {
            assert!(
                Instant::now() < until,
                "not sent again: {:?}",
                rx.got().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    sent_times(2).await;
    let (code, out, err) = app.cli(&["events", "replay", "--since", &before.to_rfc3339()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 deliveries"), "{out}");
    sent_times(3).await;
    assert_eq!(*rx.bad_signatures.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buys_given_up_on_are_written_as_failed_events_with_their_entry() {
    use flashgate::domain::UserId;
    use flashgate::worker::writer::{self, Admitted, Batch, Written};
    // no worker: the events stay in the outbox, where this test reads them
    let app = spawn_with(events_settings("http://127.0.0.1:9/hook"), false).await;
    let goods = app.sale(2).await;
    // MySQL has a unit fewer than the batch wants: the third shopper's buy fails in the batch
    let batch: Vec<Admitted> = (1..=3)
        .map(|i| Admitted::one(format!("1-{i}"), UserId::new(100 + i).unwrap()))
        .collect();
    let Batch::Written(written) =
        writer::write_batch(&app.state.db, &app.state.events, goods, &batch, None)
            .await
            .unwrap()
    else {
        panic!("an unfenced write is never fenced")
    };
    assert_eq!(written[2], Written::Failed);
    // and a dead-lettered entry of two shoppers
    let users = [UserId::new(201).unwrap(), UserId::new(202).unwrap()];
    let buys = users.map(|user| flashgate::events::outbox::GivenUp {
        user,
        entry: "9-0",
        quantity: 1,
        key: "",
    });
    flashgate::events::outbox::failed_buys(
        &app.state.db,
        &app.state.events,
        goods,
        &buys,
        "delivered too often",
    )
    .await
    .unwrap();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT e.event_id, e.data, (SELECT COUNT(*) FROM event_delivery d \
         WHERE d.event_id = e.event_id AND d.state = 0) FROM order_event e \
         WHERE e.type = 3 ORDER BY e.event_id",
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["failed-1-3-103", "failed-9-0-201", "failed-9-0-202"]);
    for (id, data, pending) in &rows {
        let data: Value = serde_json::from_str(data).unwrap();
        check_schema(&data);
        assert_eq!(*pending, 1, "{id}: one delivery row, pending");
        assert_eq!(data["orderId"], Value::Null);
        assert_eq!(data["goodsId"], goods.get());
        assert_eq!(data["price"], 100);
        let (entry, reason) = if id.starts_with("failed-1-3") {
            ("1-3", "sold out in MySQL")
        } else {
            ("9-0", "delivered too often")
        };
        assert_eq!(
            (data["requestId"].as_str(), data["reason"].as_str()),
            (Some(entry), Some(reason))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let rx = Receiver::start(Answer::FirstN(1, 429, Some(2)), Duration::ZERO).await;
    let app = spawn_with(events_settings(&rx.url), true).await;
    let goods = app.sale(1).await;
    orders(&app, goods, 1).await;
    rx.wait_for(1, Duration::from_secs(20)).await;
    let got = rx.got();
    assert_eq!(got[0].status, 429);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "tried again after {waited:?}"
    );
    assert_eq!(got[0].id, got[1].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_endpoint_until_an_operator_enables_it() {
    let rx = Receiver::start(Answer::FirstN(1, 410, None), Duration::ZERO).await;
    let app = spawn_with(events_settings(&rx.url), true).await;
    let goods = app.sale(2).await;
    orders(&app, goods, 2).await;
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = flashgate::events::ops::status(&app.state.db).await.unwrap();
        if s.first().is_some_and(|s| s.disabled.is_some()) {
            break s;
        }
        assert!(Instant::now() < until, "not disabled: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status[0].disabled.as_ref().unwrap().contains("410"));
    // the event answered 410 waits (one sent beside it in the same window may have gone)
    assert!(status[0].backlog >= 1, "its events wait: {status:?}");
    let sent = rx.got().len();
    // /readyz shows it
    let (_, ready) = app.ops_get("/readyz").await;
    assert!(
        ready["data"]["eventSinks"][0]["disabled"].is_string(),
        "{ready}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rx.got().len(),
        sent,
        "nothing is sent to a disabled endpoint"
    );
    assert!(
        flashgate::events::ops::enable(&app.state.db, &status[0].sink)
            .await
            .unwrap()
    );
    rx.wait_for(2, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_outbox_never_send_an_event_at_the_same_time() {
    let rx = Receiver::start(Answer::Ok, Duration::from_millis(30)).await;
    let mut app = spawn_with(events_settings(&rx.url), true).await;
    app.add_worker().await;
    let goods = app.sale(40).await;
    orders(&app, goods, 40).await;
    rx.wait_for(40, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.overlaps.lock().unwrap().is_empty(),
        "sent twice at once: {:?}",
        rx.overlaps.lock().unwrap()
    );
    let per_id = rx.got().iter().fold(HashMap::new(), |mut m, g| {
        *m.entry(g.id.clone()).or_insert(0) += 1;
        m
    });
    assert!(
        per_id.values().all(|n| *n == 1),
        "an event sent twice: {per_id:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_gets_every_event_confirmed_on_its_topic_exchange() {
    use futures_util::StreamExt;
    use lapin::options::*;
    use lapin::types::FieldTable;
    let exchange = format!(
        "fgtest.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let settings = Settings {
        events_exchange: exchange.clone(),
        ..test_settings()
    };
    // the shop's side: a queue bound to every order event, before any is published
    let conn =
        lapin::Connection::connect(&settings.amqp_url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        exchange.as_str().into(),
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().clone(),
        exchange.as_str().into(),
        "flashgate.order.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let app = spawn_with(settings, true).await;
    let goods = app.sale(3).await;
    orders(&app, goods, 3).await;
    let mut seen = HashMap::new();
    while seen.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("three events within 20 s")
            .unwrap()
            .unwrap();
        assert_eq!(d.routing_key.as_str(), "flashgate.order.created");
        assert_eq!(d.properties.delivery_mode(), &Some(2));
        let event: Value = serde_json::from_slice(&d.data).unwrap();
        assert_eq!(
            d.properties.message_id().as_ref().map(|m| m.as_str()),
            event["id"].as_str()
        );
        check_schema(&event["data"]);
        seen.insert(event["id"].as_str().unwrap().to_string(), event);
    }
    let status = flashgate::events::ops::status(&app.state.db).await.unwrap();
    assert_eq!(status[0].sink, format!("rabbitmq-{exchange}"));
    assert_eq!(status[0].backlog, 0);
    let _ = ch
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await;
}

#[test]
fn settings_that_cannot_work_stop_the_worker_saying_which() {
    for (var, value, says) in [
        ("FLASHGATE_WEBHOOK_SECRET", "hunter2", "whsec_"),
        (
            "FLASHGATE_WEBHOOK_URL",
            "ftp://shop.example/hook",
            "http(s)",
        ),
        ("FLASHGATE_WEBHOOK_RATE", "0", "FLASHGATE_WEBHOOK_RATE"),
        (
            "FLASHGATE_EVENTS_EXCHANGE",
            "amq.orders",
            "FLASHGATE_EVENTS_EXCHANGE",
        ),
        ("FLASHGATE_CURRENCY", "eur", "FLASHGATE_CURRENCY"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("worker")
            .env("FLASHGATE_WEBHOOK_URL", "http://127.0.0.1:9/hook")
            .env("FLASHGATE_WEBHOOK_SECRET", SECRET)
            .env(var, value)
            .env("FLASHGATE_DATABASE_URL", "mysql://root@127.0.0.1:1/none")
            .env("FLASHGATE_LOG", "error")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} started");
        assert!(err.contains(says), "{var}={value}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_replay_and_enable_from_the_command_line() {
    // an endpoint that refuses everything for good (a 4xx): its events are parked at once
    let rx = Receiver::start(Answer::FirstN(1_000, 422, None), Duration::ZERO).await;
    let app = spawn_with(events_settings(&rx.url), true).await;
    let goods = app.sale(2).await;
    orders(&app, goods, 2).await;
    let until = Instant::now() + Duration::from_secs(15);
    while flashgate::events::ops::status(&app.state.db)
        .await
        .unwrap()
        .first()
        .is_none_or(|s| s.parked < 2)
    {
        assert!(Instant::now() < until, "nothing parked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = app.cli(&["events", "status"]);
    assert_eq!(
        code,
        Some(1),
        "parked events make status exit 1: {out} {err}"
    );
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status[0]["parked"], 2, "{out}");
    assert!(status[0]["lastError"].as_str().unwrap().contains("422"));
    let sink = status[0]["sink"].as_str().unwrap().to_string();
    // the shop fixed its endpoint: replay the parked ones, with their ids
    *rx.answer.lock().unwrap() = Answer::Ok;
    let parked_ids: HashSet<String> = rx.got().into_iter().map(|g| g.id).collect();
    let (code, out, _) = app.cli(&["events", "replay", "--parked", "--sink", &sink]);
    assert_eq!(code, Some(0));
    assert!(out.contains("2 deliveries"), "{out}");
    rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        rx.delivered().keys().cloned().collect::<HashSet<_>>(),
        parked_ids
    );
    let (code, _, _) = app.cli(&["events", "status"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = app.cli(&["events", "enable", "no-such-sink"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no sink named"), "{err}");
    let (code, _, err) = app.cli(&["events", "replay", "--since", "yesterday"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("RFC 3339"), "{err}");
}

/// The Python verifier printed in docs/events.md, run on the documented test vector (python3's
/// standard library only): it accepts it, and refuses it with the body changed.
#[test]
fn the_documented_python_verifier_takes_the_test_vector() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md")).unwrap();
    let code = doc
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/events.md has a Python verifier");
    let field = |name: &str| {
        doc.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .trim()
            .trim_matches('`')
            .to_string()
    };
    let run = |body: &str| {
        let script = format!(
            "{code}\nheaders = {{'webhook-id': {id:?}, 'webhook-timestamp': {ts:?}, 'webhook-signature': {sig:?}}}\nprint(verify({secret:?}, headers, {body:?}.encode(), tolerance=10**10))\n",
            id = field("webhook-id"),
            ts = field("timestamp"),
            sig = field("webhook-signature"),
            secret = field("secret"),
        );
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    };
    let ok = run(&field("body"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        field("webhook-id")
    );
    let bad = run("{\"test\": 1}");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad signature"));
}
