//! Draw sales (`src/draws/`, docs/draws.md) on the real services: entries with a proof of work,
//! one per account; the draw by itself at `registerUntil`, checked from its publication by
//! `flashgate draw verify` and refused a second time; claims through the ordinary buy; the
//! waitlist moving on an unclaimed win (pushed) and on an unpaid close; bad input refused with
//! nothing recorded. Run on a Redis Cluster too with `TEST_REDIS_URL` (every key of a draw
//! shares the sale's hash tag).

use std::time::Duration;

use flashgate::cli::seed::TestUser;
use flashgate::domain::GoodsId;
use flashgate::draws::order::Publication;
use flashgate::draws::proof::{self, Challenge};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_with, test_settings};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A draw sale's body: registration from `opens_in` ms for `open_for` ms, then the sale (and
/// the draw) at once, for an hour; `claim_for` seconds to claim.
fn draw_body(stock: i64, opens_in: i64, open_for: i64, claim_for: i64) -> Value {
    let from = now_ms() + opens_in;
    let until = from + open_for;
    json!({
        "name": "Draw phone", "title": "A phone by draw", "imageUrl": "/img/goods.svg",
        "price": 999.0, "salePrice": 1.0, "stock": stock, "startAt": until,
        "endAt": until + 3_600_000, "mode": "draw", "registerFrom": from,
        "registerUntil": until, "claimFor": claim_for,
    })
}

async fn create(app: &TestApp, body: &Value) -> GoodsId {
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(body)).await;
    assert_eq!(s, 201, "{r}");
    GoodsId::new(r["data"]["goodsId"].as_i64().unwrap()).unwrap()
}

async fn challenge(app: &TestApp, goods: GoodsId) -> Challenge {
    let (s, r) = app.get(&format!("/api/draws/{goods}/challenge"), "").await;
    assert_eq!(s, 200, "{r}");
    serde_json::from_value(r["data"].clone()).unwrap()
}

async fn solved(app: &TestApp, goods: GoodsId) -> String {
    proof::solve(&challenge(app, goods).await).expect("solvable")
}

async fn enter(app: &TestApp, goods: GoodsId, token: &str, proof: &str) -> (u16, Value) {
    app.post(
        &format!("/api/draws/{goods}/entries"),
        token,
        &json!({ "proof": proof }),
    )
    .await
}

async fn view(app: &TestApp, goods: GoodsId, token: &str) -> Value {
    let (s, r) = app.get(&format!("/api/draws/{goods}"), token).await;
    assert_eq!(s, 200, "{r}");
    r["data"].clone()
}

/// Polls the shopper's view until `f` holds (or panics after `within`).
async fn view_until(
    app: &TestApp,
    goods: GoodsId,
    token: &str,
    within: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = view(app, goods, token).await;
        if f(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never came: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until(ms: i64) {
    let left = ms - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64 + 50)).await;
    }
}

/// A draw sale of `stock` units with `users` entered in order, drawn by the worker.
async fn drawn_sale(app: &TestApp, stock: i64, users: &[TestUser], claim_for: i64) -> GoodsId {
    let body = draw_body(stock, 700, 2500, claim_for);
    let goods = create(app, &body).await;
    wait_until(body["registerFrom"].as_i64().unwrap()).await;
    for u in users {
        let (s, r) = enter(app, goods, &u.token, &solved(app, goods).await).await;
        assert_eq!(s, 200, "{r}");
    }
    view_until(app, goods, &users[0].token, Duration::from_secs(15), |v| {
        v["phase"] == "claiming" && v["you"]["state"] != "entered"
    })
    .await;
    goods
}

fn app_settings() -> flashgate::plumbing::config::Settings {
    let mut s = test_settings();
    s.draw_pow_max = 2000;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_of_3_units_and_10_entries_is_verifiable_runs_once_and_sells_to_its_winners() {
    let app = spawn_with(app_settings(), true).await;
    let users = app.users(11).await;
    let body = draw_body(3, 1500, 4000, 600);
    let goods = create(&app, &body).await;

    let before = view(&app, goods, &users[0].token).await;
    assert_eq!(before["phase"], "scheduled");
    assert_eq!(before["seed"], Value::Null);
    let commitment = before["commitment"].as_str().unwrap().to_string();
    assert_eq!(commitment.len(), 64);

    // not open yet: refused, nothing recorded
    let early = solved(&app, goods).await;
    let (s, r) = enter(&app, goods, &users[0].token, &early).await;
    assert_eq!((s, r["code"].as_i64()), (425, Some(500541)), "{r}");

    wait_until(body["registerFrom"].as_i64().unwrap()).await;
    let mut first_proof = String::new();
    for (i, u) in users[..10].iter().enumerate() {
        let p = solved(&app, goods).await;
        let (s, r) = enter(&app, goods, &u.token, &p).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["data"]["entry"], i as i64 + 1);
        if i == 1 {
            first_proof = p;
        }
    }
    // one account entering twice is answered with its first entry, counted once
    let (s, r) = enter(&app, goods, &users[0].token, &solved(&app, goods).await).await;
    assert_eq!((s, &r["data"]), (200, &json!({"entry": 1, "again": true})));
    // ten entries from one address: its challenges cost four times the work now (5 per step)
    assert_eq!(challenge(&app, goods).await.maxnumber, 4 * 2000);

    // bad proofs: refused, nothing recorded, no counter moved
    let t = &users[10].token;
    let (s, r) = enter(&app, goods, t, &first_proof).await;
    assert_eq!(
        (s, r["code"].as_i64()),
        (409, Some(500547)),
        "replayed: {r}"
    );
    let (s, r) = enter(&app, goods, t, "").await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500543)), "missing: {r}");
    let c = challenge(&app, goods).await;
    let forged = proof::solve(&Challenge {
        signature: "00".repeat(32),
        ..c
    })
    .unwrap();
    let (s, r) = enter(&app, goods, t, &forged).await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500544)), "forged: {r}");
    let huge = "A".repeat(20_000);
    let (s, _) = enter(&app, goods, t, &huge).await;
    assert_eq!(s, 413, "a huge body");
    let other = create(&app, &draw_body(1, 200, 60_000, 60)).await;
    wait_until(now_ms() + 250).await;
    let (s, r) = enter(&app, other, t, &solved(&app, goods).await).await;
    // each sale signs with its own secret: another sale's proof is not this one's
    assert_eq!(
        (s, r["code"].as_i64()),
        (400, Some(500544)),
        "another sale's: {r}"
    );
    assert_eq!(view(&app, goods, t).await["entries"], 10);
    assert_eq!(view(&app, goods, t).await["you"], Value::Null);

    // the draw, by itself at registerUntil
    let drawn = view_until(&app, goods, t, Duration::from_secs(15), |v| {
        v["phase"] == "claiming"
    })
    .await;
    assert_eq!(drawn["commitment"], commitment.as_str());
    let (s, r) = enter(&app, goods, t, &solved(&app, goods).await).await;
    assert_eq!((s, r["code"].as_i64()), (410, Some(500542)), "closed: {r}");

    // the publication: the winners are the first 3 in the seed's order, and it checks
    let published: Publication = app
        .http
        .get(app.url(&format!("/api/draws/{goods}/published")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(published.verify(), Ok(()));
    assert_eq!((published.entries.len(), published.winners.len()), (10, 3));
    assert_eq!(published.commitment, commitment);
    let mut winners = Vec::new();
    for u in &users[..10] {
        let v = view_until(&app, goods, &u.token, Duration::from_secs(5), |v| {
            v["you"]["state"] != "waitlist" || v["you"]["place"].as_i64() > Some(3)
        })
        .await;
        let me = &v["you"];
        let place = me["place"].as_i64().unwrap();
        let digest = me["digest"].as_str().unwrap();
        assert!(published.entries.iter().any(|e| e == digest));
        if place <= 3 {
            assert_eq!(published.winners[place as usize - 1], digest);
            assert_eq!(
                (me["won"].as_bool(), me["state"].as_str()),
                (Some(true), Some("claiming"))
            );
            assert!(me["claimUntil"].as_i64().unwrap() > now_ms());
            winners.push(u);
        } else {
            assert_eq!(
                (me["won"].as_bool(), me["state"].as_str()),
                (Some(false), Some("waitlist"))
            );
            // a loser gets no buy path
            let (s, r) = app
                .get(&format!("/api/seckill/path?goodsId={goods}"), &u.token)
                .await;
            assert_eq!((s, r["code"].as_i64()), (403, Some(500550)), "{r}");
        }
    }
    assert_eq!(winners.len(), 3);

    // the CLI agrees; a changed seed does not match the commitment; a second draw is refused
    let python = python_of_the_docs();
    let raw = serde_json::to_vec(&published).unwrap();
    let (ok, out) = run_python(&python, &raw);
    assert!(ok && out.starts_with("ok 10 entries, 3 winners"), "{out}");
    let (code, out, err) = app.cli(&["draw", "verify", &goods.to_string()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok:"), "{out}");
    let file = std::env::temp_dir().join(format!("fg-draw-{}.json", uuid::Uuid::new_v4()));
    let mut changed = published.clone();
    changed.seed = hex::encode([9u8; 32]);
    std::fs::write(&file, serde_json::to_vec(&changed).unwrap()).unwrap();
    let (code, out, _) = app.cli(&[
        "draw",
        "verify",
        &goods.to_string(),
        "--file",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, Some(1));
    assert!(out.contains("does not match the commitment"), "{out}");
    let (ok, out) = run_python(&python, &serde_json::to_vec(&changed).unwrap());
    assert!(
        !ok && out.contains("does not match the commitment"),
        "{out}"
    );
    let (code, _, err) = app.cli(&["draw", "run", &goods.to_string()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("500548"), "{err}");

    // a winner buys through the ordinary buy, and the order is written
    let w = winners[0];
    let path = app.path_for(&w.token, goods).await;
    let (s, r) = app.buy(&w.token, &path, goods).await;
    assert_eq!(s, 202, "{r}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.result(&w.token, goods).await <= 0 {
        assert!(tokio::time::Instant::now() < deadline, "never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    view_until(&app, goods, &w.token, Duration::from_secs(5), |v| {
        v["you"]["state"] == "claimed"
    })
    .await;
}

/// The Python check of docs/draws.md, as written there.
fn python_of_the_docs() -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/draws.md")).unwrap();
    let start = doc.find("```python\n").expect("a python block") + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_string()
}

/// Runs `script` with a publication's JSON in a file as its argument: (exit 0, output).
fn run_python(script: &str, publication: &[u8]) -> (bool, String) {
    let dir = std::env::temp_dir();
    let id = uuid::Uuid::new_v4();
    let (py, json) = (
        dir.join(format!("fg-{id}.py")),
        dir.join(format!("fg-{id}.json")),
    );
    std::fs::write(&py, script).unwrap();
    std::fs::write(&json, publication).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&py)
        .arg(&json)
        .output()
        .unwrap();
    let _ = (std::fs::remove_file(&py), std::fs::remove_file(&json));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Reads `draw` events from a shopper's event stream.
async fn draw_event(app: &TestApp, goods: GoodsId, token: &str, within: Duration) -> Option<Value> {
    let mut resp = app
        .http
        .get(app.url(&format!("/api/seckill/events?goodsId={goods}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = String::new();
    loop {
        if let Some(at) = buf.find("event: draw\ndata: ") {
            let rest = &buf[at + "event: draw\ndata: ".len()..];
            if let Some(end) = rest.find('\n') {
                return serde_json::from_str(&rest[..end]).ok();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.ok()?;
        buf.push_str(&String::from_utf8_lossy(&chunk.ok()??));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclaimed_win_passes_to_the_next_entry_with_a_push() {
    let app = spawn_with(app_settings(), true).await;
    let users = app.users(4).await;
    // 3 units, 4 entries, 2 s to claim
    let goods = drawn_sale(&app, 3, &users, 2).await;
    let mut places = Vec::new();
    for u in &users {
        let v = view_until(&app, goods, &u.token, Duration::from_secs(5), |v| {
            v["you"]["place"].is_i64()
        })
        .await;
        places.push((v["you"]["place"].as_i64().unwrap(), u));
    }
    places.sort_by_key(|(p, _)| *p);
    let (first, fourth) = (places[0].1, places[3].1);
    // the first winner buys in time; the other two let their claims pass
    let path = app.path_for(&first.token, goods).await;
    assert_eq!(app.buy(&first.token, &path, goods).await.0, 202);
    let pushed = draw_event(&app, goods, &fourth.token, Duration::from_secs(15))
        .await
        .expect("the fourth entry is told it moved up");
    assert_eq!(pushed["won"], true);
    let v = view(&app, goods, &fourth.token).await;
    assert_eq!(v["you"]["state"], "claiming", "{v}");
    assert_eq!(pushed["claimUntil"], v["you"]["claimUntil"]);
    for (_, u) in &places[1..3] {
        assert_eq!(view(&app, goods, &u.token).await["you"]["state"], "lapsed");
    }
    view_until(&app, goods, &first.token, Duration::from_secs(5), |v| {
        v["you"]["state"] == "claimed"
    })
    .await;
    // the moved-up entry buys through the same buy
    let path = app.path_for(&fourth.token, goods).await;
    assert_eq!(app.buy(&fourth.token, &path, goods).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_close_moves_the_waitlist() {
    let mut settings = app_settings();
    settings.unpaid_timeout_secs = 1;
    let app = spawn_with(settings, true).await;
    let users = app.users(2).await;
    let goods = drawn_sale(&app, 1, &users, 600).await;
    let mut winner = None;
    for u in &users {
        if view(&app, goods, &u.token).await["you"]["state"] == "claiming" {
            winner = Some(u);
        }
    }
    let winner = winner.expect("one winner");
    let other = users.iter().find(|u| u.id != winner.id).unwrap();
    let path = app.path_for(&winner.token, goods).await;
    assert_eq!(app.buy(&winner.token, &path, goods).await.0, 202);
    // never paid: the closer closes the order, the unit comes back, the waitlist moves
    view_until(&app, goods, &other.token, Duration::from_secs(20), |v| {
        v["you"]["state"] == "claiming"
    })
    .await;
    assert_eq!(
        view(&app, goods, &winner.token).await["you"]["state"],
        "claimed"
    );
    // the winner's claim is used: the path it gave does not buy again once the unit came back
    // (an outside attack bought a second time with it, taking the unit the waitlist moved on)
    let (s, r) = app.buy(&winner.token, &path, goods).await;
    assert_eq!((s, r["code"].as_i64()), (403, Some(500550)), "{r}");
    let moved_up = app.path_for(&other.token, goods).await;
    assert_eq!(app.buy(&other.token, &moved_up, goods).await.0, 202);
}

/// The order's result, polled (> 0 once written), with the envelope (its grant).
async fn written(app: &TestApp, token: &str, goods: GoodsId) -> (i64, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, r) = app
            .get(&format!("/api/seckill/result?goodsId={goods}"), token)
            .await;
        assert_eq!(s, 200, "{r}");
        let order = r["data"].as_i64().unwrap();
        if order > 0 {
            return (order, r);
        }
        assert!(order == 0, "the buy failed: {r}");
        assert!(tokio::time::Instant::now() < deadline, "no order written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `data` of `kind` events built for `order` (as the relay and the outbox build them).
async fn event_data(app: &TestApp, kind: flashgate::events::EventType, order: i64) -> Value {
    let events =
        flashgate::events::EventSettings::from_settings(&flashgate::plumbing::config::Settings {
            webhook_url: "http://127.0.0.1:9/never-sent".into(),
            webhook_secret: crate::events::SECRET.into(),
            ..test_settings()
        })
        .unwrap();
    let mut tx = app.state.db.begin().await.unwrap();
    let built = flashgate::events::outbox::from_orders(&mut tx, &events, kind, &[order], None)
        .await
        .unwrap();
    assert_eq!(built.len(), 1);
    built[0].data.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draw_order_carries_its_entry_in_the_grant_and_the_events_a_first_come_one_does_not() {
    let mut settings = app_settings();
    settings.grant_key = crate::seams::GRANT_KEY.into();
    let app = spawn_with(settings, true).await;
    let users = app.users(3).await;
    // 1 unit, 2 entries, 2 s to claim: the winner lets it pass, the second moves up and buys
    let goods = drawn_sale(&app, 1, &users[..2], 2).await;
    let mut by_place = Vec::new();
    for u in &users[..2] {
        let v = view(&app, goods, &u.token).await;
        by_place.push((v["you"]["place"].as_i64().unwrap(), u, v));
    }
    by_place.sort_by_key(|(p, _, _)| *p);
    let (_, second, seen) = &by_place[1];
    view_until(&app, goods, &second.token, Duration::from_secs(15), |v| {
        v["you"]["state"] == "claiming"
    })
    .await;
    let until = view(&app, goods, &second.token).await["you"]["claimUntil"].clone();
    let path = app.path_for(&second.token, goods).await;
    assert_eq!(app.buy(&second.token, &path, goods).await.0, 202);
    let (order, envelope) = written(&app, &second.token, goods).await;
    let expected = json!({
        "digest": seen["you"]["digest"], "place": 2, "claimUntil": until,
    });
    let grants = app.state.identity.grants.as_ref().unwrap();
    let claims = grants
        .verify(envelope["grant"].as_str().expect("a grant"))
        .unwrap();
    assert_eq!(serde_json::to_value(&claims.draw).unwrap(), expected);
    for kind in [
        flashgate::events::EventType::Created,
        flashgate::events::EventType::Paid,
    ] {
        assert_eq!(event_data(&app, kind, order).await["draw"], expected);
    }

    // a first-come sale's order carries none
    let first_come = app.sale(5).await;
    let buyer = &users[2];
    let path = app.path_for(&buyer.token, first_come).await;
    assert_eq!(app.buy(&buyer.token, &path, first_come).await.0, 202);
    let (order, envelope) = written(&app, &buyer.token, first_come).await;
    let claims = grants.verify(envelope["grant"].as_str().unwrap()).unwrap();
    assert_eq!(claims.draw, None);
    let data = event_data(&app, flashgate::events::EventType::Created, order).await;
    assert!(data.get("draw").is_none(), "{data}");
}

#[tokio::test]
async fn a_draw_sale_with_bad_settings_or_an_entry_to_a_first_come_sale_is_refused() {
    let app = spawn_with(app_settings(), false).await;
    let now = now_ms();
    let good = draw_body(3, 60_000, 60_000, 600);
    let cases: Vec<(Value, i64)> = vec![
        (json!({"registerUntil": now + 30_000}), 500731), // until before from
        (json!({"claimFor": 0}), 500733),
        (json!({"registerFrom": now - 1_000}), 500732),
        (json!({"mode": "firstCome"}), 500730),
        (json!({"shards": 2}), 500734),
        // a winner takes one unit: a claim is one unit (an outside test took three with one win)
        (json!({"perBuy": 3, "perAccount": 3}), 500734),
        (json!({"perAccount": 2}), 500734),
    ];
    for (change, code) in cases {
        let mut b = good.clone();
        for (k, v) in change.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (s, r) = app.admin("POST", "/api/admin/sales", Some(&b)).await;
        assert_eq!((s, r["code"].as_i64()), (400, Some(code)), "{change}: {r}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sale_draw")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows, 0, "nothing recorded");
    let first_come = app.sale(5).await;
    let users = app.users(1).await;
    let (s, r) = enter(&app, first_come, &users[0].token, "x").await;
    assert_eq!((s, r["code"].as_i64()), (409, Some(500540)), "{r}");
    let (s, r) = app.get(&format!("/api/draws/{first_come}"), "").await;
    assert_eq!((s, r["code"].as_i64()), (409, Some(500540)), "{r}");
}

/// A measurement, not a check of behaviour (docs/capacity.md, "Draws"): a million entries put in
/// Redis as `lua/draw_enter.lua` leaves them (the hash, the log), their bytes, and one draw's
/// time. `cargo test --test api -- --ignored --nocapture draws::a_million` (a debug build hashes
/// slowly: the ordering's figure in release comes from the bench in docs/capacity.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn a_million_entries_are_drawn() {
    use redis::AsyncCommands;
    const N: i64 = 1_000_000;
    let app = spawn_with(app_settings(), false).await;
    let body = draw_body(1000, 500, 1000, 600);
    let goods = create(&app, &body).await;
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    let ids: Vec<i64> = (1..=N).collect();
    for chunk in ids.chunks(10_000) {
        let mut pipe = redis::pipe();
        for &u in chunk {
            pipe.hset(k.draw_entries(), u, u).ignore();
        }
        let text = flashgate::draws::order::ids_text(chunk.iter().copied());
        pipe.append(k.draw_log(), text).ignore();
        let _: () = pipe.query_async(&mut con).await.unwrap();
    }
    let mem = |key: String| {
        let mut con = app.redis();
        async move {
            let n: i64 = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            n
        }
    };
    let (entries, log) = (mem(k.draw_entries()).await, mem(k.draw_log()).await);
    wait_until(body["registerUntil"].as_i64().unwrap()).await;
    let drawn =
        flashgate::draws::record::draw(&app.state.db, &mut con, &app.state.keys, goods, now_ms())
            .await
            .unwrap();
    let order = mem(k.draw_order()).await;
    let len: usize = con.strlen(k.draw_order()).await.unwrap();
    assert_eq!(len, N as usize * 16);
    println!(
        "{N} entries: bytes per entry: entries hash {:.1}, log {:.1}, order {:.1}, total {:.1}; \
         draw {} ms (ordering {} ms, debug build)",
        entries as f64 / N as f64,
        log as f64 / N as f64,
        order as f64 / N as f64,
        (entries + log + order) as f64 / N as f64,
        drawn.took_ms,
        drawn.order_ms
    );
}

/// A measurement (docs/capacity.md, "Draws"): what an entry costs Redis, `lua/draw_enter.lua`
/// called as the edge calls it (the proof checked before, not here), N entries from 8 tasks.
/// Run against a Redis of its own so `INFO commandstats` counts only these calls:
/// `TEST_REDIS_URL=redis://127.0.0.1:6390/ cargo test --test api -- --ignored --nocapture
/// draws::what_an_entry`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
async fn what_an_entry_costs_redis() {
    const N: i64 = 20_000;
    let app = spawn_with(app_settings(), false).await;
    let body = draw_body(10, 300, 600_000, 600);
    let goods = create(&app, &body).await;
    wait_until(body["registerFrom"].as_i64().unwrap()).await;
    let stats = |app: &TestApp| {
        let mut con = app.redis();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut con)
                .await
                .unwrap();
            let line = info
                .lines()
                .find(|l| l.starts_with("cmdstat_evalsha:"))
                .unwrap_or("")
                .to_string();
            let field = |name: &str| -> f64 {
                line.split([',', ':'])
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            (field("calls"), field("usec"))
        }
    };
    let (calls0, usec0) = stats(&app).await;
    let began = std::time::Instant::now();
    let ids: Vec<i64> = (1..=N).collect();
    crate::helpers::concurrently(ids, 8, |u| {
        let (state, keys) = (app.state.clone(), app.state.keys.clone());
        async move {
            let user = flashgate::domain::UserId::new(u).unwrap();
            flashgate::draws::record::enter(
                &mut state.redis.clone(),
                &keys,
                goods,
                user,
                "addr",
                &format!("c{u}"),
                600_000,
                flashgate::draws::record::Work {
                    given: 1,
                    base: 1,
                    per_address: 0,
                },
            )
            .await
            .unwrap()
        }
    })
    .await;
    let wall = began.elapsed();
    let (calls1, usec1) = stats(&app).await;
    println!(
        "{N} entries in {wall:?} ({:.0}/s from one test process, 8 at a time); Redis: {} EVALSHA, \
         {:.1} µs of Redis CPU per entry",
        N as f64 / wall.as_secs_f64(),
        calls1 - calls0,
        (usec1 - usec0) / N as f64
    );
}

/// Attack on the draws (outside test): challenges fetched before an address brought its many
/// entries carried the easy work of then, and entered accounts at that price. An entry now
/// carries the work its address owes at entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_fetched_ahead_do_not_escape_the_addresss_raised_work() {
    let mut settings = app_settings();
    settings.draw_pow_per_address = 1;
    let app = spawn_with(settings, false).await;
    let goods = create(&app, &draw_body(3, 1_500, 60_000, 600)).await;
    let users = app.users(3).await;
    // fetched ahead, at the base work
    let early = challenge(&app, goods).await;
    wait_until(now_ms() + 1_600).await;
    let (s, r) = enter(&app, goods, &users[0].token, &solved(&app, goods).await).await;
    assert_eq!(s, 200, "{r}");
    // the address brought one entry: its work doubled, and the early challenge is refused
    let (s, r) = enter(
        &app,
        goods,
        &users[1].token,
        &proof::solve(&early).expect("solvable"),
    )
    .await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500551)), "{r}");
    // a challenge fetched now carries the raised work, and enters
    let (s, r) = enter(&app, goods, &users[1].token, &solved(&app, goods).await).await;
    assert_eq!(s, 200, "{r}");
}

/// Attack on the draws (outside test): the admin reset of a drawn sale wiped its entries, draw
/// and claims, and `draw verify` then agreed with an empty draw. A drawn draw is never reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drawn_sale_is_never_reset() {
    let app = spawn_with(app_settings(), true).await;
    let users = app.users(4).await;
    let goods = drawn_sale(&app, 2, &users, 600).await;
    let (s, r) = app
        .admin("POST", &format!("/api/admin/sales/{goods}/reset"), None)
        .await;
    assert_eq!((s, r["code"].as_i64()), (409, Some(500757)), "{r}");
    let v = view(&app, goods, &users[0].token).await;
    assert_eq!(v["entries"], 4, "{v}");
}

/// Attack on the draws (outside test, the second): proofs fetched at the base work and sent
/// together were all priced at the address's count before any of them (60 of 60 entered), as
/// the edge read the count and the script wrote it apart. The count is now read and written in
/// the call that records the entry: of proofs at the base work sent at once, only as many enter
/// as the address may bring at that work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_sent_together_are_each_priced_at_the_count_the_ones_before_left() {
    const N: usize = 12;
    let mut settings = app_settings();
    settings.draw_pow_per_address = 2;
    let app = spawn_with(settings, false).await;
    let goods = create(&app, &draw_body(3, 1_500, 60_000, 600)).await;
    let users = app.users(N).await;
    let mut proofs = Vec::new();
    for _ in 0..N {
        proofs.push(proof::solve(&challenge(&app, goods).await).expect("solvable"));
    }
    wait_until(now_ms() + 1_600).await;
    let answers = futures_util::future::join_all(
        users
            .iter()
            .zip(&proofs)
            .map(|(u, p)| enter(&app, goods, &u.token, p)),
    )
    .await;
    let entered = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        entered, 2,
        "two at the base work, then it doubles: {answers:?}"
    );
    for (s, r) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*s, r["code"].as_i64()), (400, Some(500551)), "{r}");
    }
    assert_eq!(view(&app, goods, &users[0].token).await["entries"], 2);
}
