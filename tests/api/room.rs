//! The waiting room (`src/admission/room.rs`, `lua/room.lua`): 10,000 shoppers join before the start of
//! a 100-unit sale with path factor 3, on two edges: exactly 300 are let through, in an order
//! uncorrelated with the order they joined in (Spearman's rank correlation, |rho| < 0.2: for a
//! fair draw its standard deviation is 1/sqrt(299) = 0.058, so this fails a fair draw about once
//! in 1,500 runs, and a draw in join order, rho = 1, always); nobody gets a hidden path before
//! their turn; nobody's position or wait goes backwards; latecomers come after every early
//! joiner, in arrival order; on sell-out every waiting shopper is told at once.

use std::time::{Duration, Instant};

use flashgate::cli::seed::TestUser;
use flashgate::domain::GoodsId;
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::helpers::{TestApp, concurrently, spawn_app, spawn_app_with_worker};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A sale with a room open an hour before a start `starts_in` s from now.
async fn room_sale(app: &TestApp, stock: i64, shards: i64, rate: f64, starts_in: i64) -> GoodsId {
    let start = now_ms() + starts_in * 1000;
    let body = json!({
        "name": "Fair phone", "title": "A phone, fairly", "price": 999, "salePrice": 1,
        "stock": stock, "shards": shards, "startAt": start, "endAt": start + 3_600_000,
        "pathFactor": 3, "roomOpensBefore": 3600, "roomRate": rate,
        // the room is what is tested here, not the rate limits
        "userRate": 1000, "userBurst": 1000,
    });
    let (s, r) = app.admin("POST", "/api/admin/sales", Some(&body)).await;
    assert_eq!(s, 201, "{r}");
    GoodsId::new(r["data"]["goodsId"].as_i64().unwrap()).unwrap()
}

/// Opens the sale now (a scheduled sale's start may change).
async fn open_now(app: &TestApp, goods: GoodsId) {
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({ "startAt": now_ms() })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
}

async fn room(app: &TestApp, base: &str, token: &str, goods: GoodsId, join: bool) -> Value {
    let (s, r) = if join {
        let body = json!({ "goodsId": goods.get() });
        app.post_at(base, "/api/seckill/room", token, &body).await
    } else {
        app.get_at(base, &format!("/api/seckill/room?goodsId={goods}"), token)
            .await
    };
    assert_eq!(s, 200, "{r}");
    r["data"].clone()
}

/// A hidden path through the edge at `base`: (status, code).
async fn path(app: &TestApp, base: &str, token: &str, goods: GoodsId) -> (u16, i64) {
    let (s, r) = app
        .get_at(base, &format!("/api/seckill/path?goodsId={goods}"), token)
        .await;
    (s, r["code"].as_i64().unwrap())
}

/// Spearman's rank correlation of two rankings of the same items (no ties).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let rank = |v: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (pos, i) in idx.into_iter().enumerate() {
            r[i] = pos as f64;
        }
        r
    };
    let (ra, rb) = (rank(a), rank(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[test]
fn spearman_is_one_for_the_same_order_and_minus_one_for_the_reverse() {
    let a: Vec<f64> = (0..50).map(f64::from).collect();
    let rev: Vec<f64> = a.iter().rev().copied().collect();
    assert!((spearman(&a, &a) - 1.0).abs() < 1e-9);
    assert!((spearman(&a, &rev) + 1.0).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_early_joiners_exactly_300_through_in_a_fair_order_on_two_edges() {
    let mut app = spawn_app().await;
    let (edge2, state2) = app.add_edge().await;
    let edges = [app.address.clone(), format!("http://{edge2}")];
    let users = app.users(10_000).await;
    let goods = room_sale(&app, 100, 1, 100.0, 600).await;

    // everyone joins before the start, half on each edge; the join order is recorded
    let order = std::sync::atomic::AtomicUsize::new(0);
    let joined: Vec<(usize, Value)> =
        concurrently(users.iter().enumerate().collect(), 64, |(i, u)| {
            let (app, edges, order) = (&app, &edges, &order);
            async move {
                let v = room(app, &edges[i % 2], &u.token, goods, true).await;
                (order.fetch_add(1, std::sync::atomic::Ordering::SeqCst), v)
            }
        })
        .await;
    for (_, v) in &joined {
        assert_eq!(v["state"], "in_room", "{v}");
        assert!(v["position"].is_null(), "no position before the draw: {v}");
    }
    // joining again keeps the ticket; before the start nobody gets a path
    let line = app.state.keys.sale(goods).room_line();
    let score: f64 = app.redis().zscore(&line, users[7].id.get()).await.unwrap();
    let again = room(&app, &edges[1], &users[7].token, goods, true).await;
    assert_eq!(again["state"], "in_room");
    let same: f64 = app.redis().zscore(&line, users[7].id.get()).await.unwrap();
    assert_eq!(score, same, "a second join keeps the first ticket");
    assert_eq!(app.redis().zcard::<_, i64>(&line).await.unwrap(), 10_000);
    for u in &users[..20] {
        assert_eq!(path(&app, &edges[0], &u.token, goods).await, (425, 500507));
    }

    open_now(&app, goods).await;
    let started = Instant::now();
    // the let-through order is the line's order: the first 300 of it
    let ranked: Vec<i64> = app.redis().zrange(&line, 0, 299).await.unwrap();
    let id_of: std::collections::HashMap<i64, usize> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.id.get(), i))
        .collect();
    // the last tickets of the 300 are not through yet (3 s at 100/s): no path for them
    for id in &ranked[280..290] {
        let u = &users[id_of[id]];
        let (s, c) = path(&app, &edges[1], &u.token, goods).await;
        assert_eq!(
            (s, c),
            (425, 500507),
            "a path before its turn ({:?})",
            started.elapsed()
        );
    }
    // positions and waits only go down, while the line moves (sampled, on both edges)
    let sample: Vec<&TestUser> = ranked[150..300]
        .iter()
        .step_by(3)
        .map(|id| &users[id_of[id]])
        .collect();
    let mut last: Vec<(i64, i64)> = vec![(i64::MAX, i64::MAX); sample.len()];
    let mut seen_moving = 0;
    loop {
        let mut all_through = true;
        for (j, u) in sample.iter().enumerate() {
            let v = room(&app, &edges[j % 2], &u.token, goods, false).await;
            if v["state"] == "through" {
                last[j] = (0, 0);
                continue;
            }
            all_through = false;
            assert_eq!(v["state"], "waiting", "{v}");
            assert!(v["nextPollMs"].as_i64().unwrap() <= 1000, "{v}");
            let now = (
                v["position"].as_i64().unwrap(),
                v["waitMs"].as_i64().unwrap(),
            );
            assert!(
                now.0 <= last[j].0 && now.1 <= last[j].1,
                "went backwards: {:?} then {now:?}",
                last[j]
            );
            if now.0 < last[j].0 && last[j].0 != i64::MAX {
                seen_moving += 1;
            }
            last[j] = now;
        }
        if all_through {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the line did not move"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(seen_moving > 0, "no position was seen moving");

    // exactly 300 through, everyone else told the sale cannot serve them
    let looks: Vec<Value> = concurrently(users.iter().enumerate().collect(), 64, |(i, u)| {
        let (app, edges) = (&app, &edges);
        async move { room(app, &edges[i % 2], &u.token, goods, false).await }
    })
    .await;
    let count = |s: &str| looks.iter().filter(|v| v["state"] == s).count();
    assert_eq!((count("through"), count("full")), (300, 9_700));
    // those 300 get hidden paths, and the others (every 20th of them asked) do not
    let through: std::collections::HashSet<i64> = ranked.iter().copied().collect();
    let asked: Vec<(bool, &TestUser)> = users
        .iter()
        .enumerate()
        .filter(|(i, u)| through.contains(&u.id.get()) || i % 20 == 0)
        .map(|(_, u)| (through.contains(&u.id.get()), u))
        .collect();
    let paths: Vec<(bool, (u16, i64))> = concurrently(asked, 64, |(is_through, u)| {
        let (app, edges) = (&app, &edges);
        async move {
            (
                is_through,
                path(app, &edges[(u.id.get() % 2) as usize], &u.token, goods).await,
            )
        }
    })
    .await;
    for (is_through, answer) in &paths {
        let want = if *is_through { 200 } else { 410 };
        assert_eq!(answer.0, want, "{answer:?}");
    }
    assert!(paths.iter().filter(|(t, _)| !t).all(|(_, a)| a.1 == 500508));

    // fair: the let-through order does not follow the join order
    let join_order: std::collections::HashMap<i64, usize> = joined
        .iter()
        .zip(&users)
        .map(|((o, _), u)| (u.id.get(), *o))
        .collect();
    let joins: Vec<f64> = ranked.iter().map(|id| join_order[id] as f64).collect();
    let turns: Vec<f64> = (0..ranked.len()).map(|r| r as f64).collect();
    let rho = spearman(&joins, &turns);
    assert!(
        rho.abs() < 0.2,
        "let-through order follows the join order: rho = {rho}"
    );
    // the room's metrics: 300 seen through, each once, over the two edges
    let seen = app.state.metrics.room_let_through.get() + state2.metrics.room_let_through.get();
    assert_eq!(seen, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latecomers_queue_behind_every_early_joiner_in_arrival_order() {
    let app = spawn_app().await;
    let users = app.users(50).await;
    let goods = room_sale(&app, 20, 1, 5.0, 600).await;
    for u in &users[..30] {
        assert_eq!(
            room(&app, &app.address, &u.token, goods, true).await["state"],
            "in_room"
        );
    }
    open_now(&app, goods).await;
    let mut first_positions = Vec::new();
    for u in &users[30..] {
        let v = room(&app, &app.address, &u.token, goods, true).await;
        assert_eq!(v["state"], "waiting", "{v}");
        first_positions.push(v["position"].as_i64().unwrap() + v["through"].as_i64().unwrap());
    }
    let line: Vec<i64> = app
        .redis()
        .zrange(app.state.keys.sale(goods).room_line(), 0, -1)
        .await
        .unwrap();
    let early: std::collections::HashSet<i64> = users[..30].iter().map(|u| u.id.get()).collect();
    assert!(
        line[..30].iter().all(|id| early.contains(id)),
        "an early joiner behind a latecomer"
    );
    let late: Vec<i64> = users[30..].iter().map(|u| u.id.get()).collect();
    assert_eq!(&line[30..], &late[..], "latecomers in arrival order");
    // their places (rank + 1) are 31, 32, … in the order they came
    assert_eq!(first_positions, (31..=50).collect::<Vec<i64>>());
}

async fn sold_out_tells_the_line(shards: i64) {
    let app = spawn_app_with_worker().await;
    let users = app.users(40).await;
    let goods = room_sale(&app, 5, shards, 5.0, 600).await;
    for u in &users {
        room(&app, &app.address, &u.token, goods, true).await;
    }
    open_now(&app, goods).await;
    let line: Vec<i64> = app
        .redis()
        .zrange(app.state.keys.sale(goods).room_line(), 0, -1)
        .await
        .unwrap();
    let by_id = |id: i64| users.iter().find(|u| u.id.get() == id).unwrap();
    // the first five through buy the five units as their turns come
    for id in &line[..5] {
        let u = by_id(*id);
        let deadline = Instant::now() + Duration::from_secs(10);
        while room(&app, &app.address, &u.token, goods, false).await["state"] != "through" {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let p = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &p, goods).await.0, 202);
    }
    // sold out: every ticket still in line is told within a second (each polls at least once
    // a second while waiting); those behind the cap knew already they would not get through
    let sold_at = Instant::now();
    loop {
        let looks: Vec<Value> = concurrently(line[5..].to_vec(), 16, |id| {
            let app = &app;
            let u = by_id(id);
            async move { room(app, &app.address, &u.token, goods, false).await }
        })
        .await;
        let states: Vec<&str> = looks.iter().map(|v| v["state"].as_str().unwrap()).collect();
        if states.iter().all(|s| *s == "sold_out") {
            break;
        }
        assert!(
            sold_at.elapsed() < Duration::from_secs(1),
            "waiting tickets not told within a second: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sell_out_every_waiting_shopper_is_told_at_once() {
    sold_out_tells_the_line(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_sale_with_a_room_tells_its_line_when_sold_out_everywhere() {
    sold_out_tells_the_line(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_without_a_room_says_so_and_sells_as_before() {
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(3).await;
    let v = room(&app, &app.address, &user.token, goods, true).await;
    assert_eq!(v["state"], "no_room");
    let p = app.path_for(&user.token, goods).await;
    assert_eq!(app.buy(&user.token, &p, goods).await.0, 202);
    // an unknown sale is 404
    let r = app
        .get(
            &format!("/api/seckill/room?goodsId={}", 999_999),
            &user.token,
        )
        .await;
    assert_eq!(r.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_scheduled_sales_stock_keeps_its_rooms_tickets() {
    let app = spawn_app().await;
    let users = app.users(3).await;
    let goods = room_sale(&app, 10, 1, 5.0, 600).await;
    for u in &users {
        room(&app, &app.address, &u.token, goods, true).await;
    }
    let (s, r) = app
        .admin(
            "PATCH",
            &format!("/api/admin/sales/{goods}"),
            Some(&json!({ "stock": 20, "shards": 2 })),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["data"]["live"]["stockLeft"], 20);
    let v = room(&app, &app.address, &users[0].token, goods, false).await;
    assert_eq!(
        (&v["state"], &v["roomSize"]),
        (&json!("in_room"), &json!(3)),
        "{v}"
    );
}

/// With `FLASHGATE_ROOM_POW=on` a ticket costs a proof of work (the draw's ALTCHA form): a join
/// with none, a forged one, one for another sale, or one used before is refused with its code
/// and makes no ticket; a solved one makes the ticket; a second join of a ticket holder pays
/// nothing (it keeps the first ticket); work rises for an address that brought many joins, and
/// a challenge fetched before that is refused as too easy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_proof_of_work_refuses_a_missing_forged_elsewhere_or_replayed_proof() {
    use flashgate::draws::proof::{self, Challenge};
    let settings = flashgate::plumbing::config::Settings {
        room_pow: true,
        draw_pow_max: 500,
        draw_pow_per_address: 2,
        ..crate::helpers::test_settings()
    };
    let app = crate::helpers::spawn_with(settings, false).await;
    let goods = room_sale(&app, 10, 1, 100.0, 600).await;
    let other = room_sale(&app, 10, 1, 100.0, 600).await;
    let users = app.users(5).await;
    let challenge = |goods: GoodsId| {
        let app = &app;
        async move {
            let (s, r) = app
                .get(&format!("/api/seckill/room/challenge?goodsId={goods}"), "")
                .await;
            assert_eq!(s, 200, "{r}");
            serde_json::from_value::<Challenge>(r["data"].clone()).unwrap()
        }
    };
    let join = |token: String, proof: Option<String>| {
        let app = &app;
        async move {
            let mut body = json!({ "goodsId": goods.get() });
            if let Some(p) = proof {
                body["proof"] = json!(p);
            }
            app.post("/api/seckill/room", &token, &body).await
        }
    };
    let line = |app: &TestApp| {
        let key = app.state.keys.sale(goods).room_line();
        let mut con = app.redis();
        async move { con.zcard::<_, i64>(key).await.unwrap() }
    };
    let code = |r: &Value| r["code"].as_i64().unwrap();
    let u = &users[0].token;

    let (s, r) = join(u.clone(), None).await;
    assert_eq!((s, code(&r)), (400, 500543), "no proof: {r}");
    let mut c = challenge(goods).await;
    c.signature = "00".repeat(32);
    let (s, r) = join(u.clone(), proof::solve(&c)).await;
    assert_eq!((s, code(&r)), (400, 500544), "forged: {r}");
    let (s, r) = join(u.clone(), proof::solve(&challenge(other).await)).await;
    assert_eq!((s, code(&r)), (400, 500546), "another sale's: {r}");
    assert_eq!(line(&app).await, 0, "a refused join made a ticket");

    let good = proof::solve(&challenge(goods).await).unwrap();
    let (s, r) = join(u.clone(), Some(good.clone())).await;
    assert_eq!(
        (s, r["data"]["state"].as_str()),
        (200, Some("in_room")),
        "{r}"
    );
    // the holder joins again without a proof: the same ticket, nothing paid
    let (s, r) = join(u.clone(), None).await;
    assert_eq!(
        (s, r["data"]["state"].as_str()),
        (200, Some("in_room")),
        "{r}"
    );
    // the same proof for another shopper: a replay
    let (s, r) = join(users[1].token.clone(), Some(good)).await;
    assert_eq!((s, code(&r)), (409, 500547), "replayed: {r}");
    assert_eq!(line(&app).await, 1);

    // two joins from this address: the work doubles; a challenge fetched before is too easy
    let early = challenge(goods).await;
    assert_eq!(early.maxnumber, 500);
    let p = proof::solve(&challenge(goods).await);
    assert_eq!(join(users[2].token.clone(), p).await.0, 200);
    let raised = challenge(goods).await;
    assert_eq!(raised.maxnumber, 1000);
    let (s, r) = join(users[3].token.clone(), proof::solve(&early)).await;
    assert_eq!((s, code(&r)), (400, 500551), "too easy: {r}");
    assert_eq!(
        join(users[3].token.clone(), proof::solve(&raised)).await.0,
        200
    );
    assert_eq!(line(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_with_a_proof_too_long_to_be_one_is_refused_with_the_room_asking_none() {
    // FLASHGATE_ROOM_POW off and a sale without a room: a proof past 2,048 characters is still
    // bad input (the spec bounds it), not a join answered "no room"
    let app = spawn_app().await;
    let user = &app.users(1).await[0];
    let goods = app.sale(3).await;
    let body = json!({ "goodsId": goods.get(), "proof": "0".repeat(2049) });
    let (s, r) = app.post("/api/seckill/room", &user.token, &body).await;
    assert_eq!((s, r["code"].as_i64()), (400, Some(500543)), "{r}");
    let fine = json!({ "goodsId": goods.get(), "proof": "0".repeat(2048) });
    let (s, r) = app.post("/api/seckill/room", &user.token, &fine).await;
    assert_eq!(
        (s, r["data"]["state"].as_str()),
        (200, Some("no_room")),
        "{r}"
    );
}

/// Attack on the room's proof of work (outside test): proofs fetched at the base work and sent
/// together were all priced at the address's count before any of them (57 tickets of 60), as
/// the count was read, then written, apart. lua/pow_spend.lua reads and writes it in one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_proofs_sent_together_are_each_priced_at_the_count_the_ones_before_left() {
    use flashgate::draws::proof::{self, Challenge};
    const N: usize = 12;
    let settings = flashgate::plumbing::config::Settings {
        room_pow: true,
        draw_pow_max: 300,
        draw_pow_per_address: 2,
        ..crate::helpers::test_settings()
    };
    let app = crate::helpers::spawn_with(settings, false).await;
    let goods = room_sale(&app, 10, 1, 100.0, 600).await;
    let users = app.users(N).await;
    let mut proofs = Vec::new();
    for _ in 0..N {
        let (s, r) = app
            .get(&format!("/api/seckill/room/challenge?goodsId={goods}"), "")
            .await;
        assert_eq!(s, 200, "{r}");
        let c: Challenge = serde_json::from_value(r["data"].clone()).unwrap();
        proofs.push(proof::solve(&c).expect("solvable"));
    }
    let answers = futures_util::future::join_all(users.iter().zip(&proofs).map(|(u, p)| {
        let body = json!({ "goodsId": goods.get(), "proof": p });
        let app = &app;
        async move { app.post("/api/seckill/room", &u.token, &body).await }
    }))
    .await;
    let joined = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        joined, 2,
        "two at the base work, then it doubles: {answers:?}"
    );
    for (s, r) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*s, r["code"].as_i64()), (400, Some(500551)), "{r}");
    }
    let mut con = app.redis();
    let line: i64 = con
        .zcard(app.state.keys.sale(goods).room_line())
        .await
        .unwrap();
    assert_eq!(line, 2);
}
