//! Releases of the Lua scripts on real services (`admission::script_release`): refused when
//! the contract suite fails, on every edge within a second while shoppers buy, a canary's
//! share of calls, promote, rollback, the bad input of each, and a Redis restart from its AOF.
//! (A Sentinel failover keeping the release is in `ha.rs`, with the Sentinel set-up.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashgate::admission::scripts::{self, Files};
use flashgate::state::AppState;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, concurrently, spawn_app, spawn_app_with_worker, spawn_with, test_settings,
};
use crate::lua_contract::{admit_without_duplicate_marker, tuned};

/// A good tuned set: admit.lua's queue entry also carries `v tuned` (the worker reads only the
/// fields it knows).
pub fn good_tuned() -> Files {
    tuned("admit.lua", |t| {
        t.replace("'t', now)", "'t', now, 'v', 'tuned')")
    })
}

fn body(files: &Files, note: &str, canary: Option<i64>) -> Value {
    let mut b = json!({ "files": files, "note": note });
    if let Some(c) = canary {
        b["canary"] = json!(c);
    }
    b
}

pub async fn release(app: &TestApp, files: &Files, note: &str, canary: Option<i64>) -> u64 {
    let (s, r) = app
        .admin(
            "POST",
            "/api/admin/lua/releases",
            Some(&body(files, note, canary)),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    r["data"]["version"].as_u64().unwrap()
}

/// Waits until every edge runs `live` (and `canary`); answers how long that took.
pub async fn on_every_edge(edges: &[&AppState], live: u64, canary: Option<u64>) -> Duration {
    let started = Instant::now();
    loop {
        let here = |s: &&AppState| {
            s.scripts.get().version == live && s.scripts.canary().map(|c| c.set.version) == canary
        };
        if edges.iter().all(here) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "edges still on {:?}, want live {live} canary {canary:?}",
            edges
                .iter()
                .map(|s| (
                    s.scripts.get().version,
                    s.scripts.canary().map(|c| c.set.version)
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_release_failing_the_suite_or_malformed_is_refused_by_name_and_changes_nothing() {
    let app = spawn_app().await;
    let refused = |b: Value| {
        let app = &app;
        async move {
            let (s, r) = app.admin("POST", "/api/admin/lua/releases", Some(&b)).await;
            assert_eq!(s, 400, "{r}");
            assert_eq!(r["code"], 500101);
            r["msg"].as_str().unwrap().to_string()
        }
    };
    let m = refused(body(&admit_without_duplicate_marker(), "buggy", None)).await;
    assert!(m.contains("fails the contract suite"), "{m}");
    assert!(
        m.contains("admit.lua / duplicate: the buckets are spent, nothing else"),
        "{m}"
    );
    for share in [0, 100, -5] {
        let m = refused(body(&good_tuned(), "", Some(share))).await;
        assert!(m.contains("a canary share is 1-99"), "{m}");
    }
    let mut missing = good_tuned();
    missing.remove("mend.lua");
    let m = refused(body(&missing, "", None)).await;
    assert!(m.contains("the set lacks mend.lua"), "{m}");
    let mut extra = good_tuned();
    extra.insert("evil.lua".into(), "return 1".into());
    let m = refused(body(&extra, "", None)).await;
    assert!(m.contains("evil.lua is not a file of the set"), "{m}");
    let broken = tuned("admit.lua", |t| format!("{t}\nend end"));
    let m = refused(body(&broken, "", None)).await;
    assert!(m.contains("admit.lua does not compile"), "{m}");
    let (s, r) = app.admin("POST", "/api/admin/lua/promote", None).await;
    assert_eq!(s, 400);
    assert!(r["msg"].as_str().unwrap().contains("no canary is out"));
    let (s, r) = app
        .admin(
            "POST",
            "/api/admin/lua/rollback",
            Some(&json!({"version": 7})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        r["msg"]
            .as_str()
            .unwrap()
            .contains("version 7 was never released")
    );
    let (s, r) = app.admin("POST", "/api/admin/lua/rollback", None).await;
    assert_eq!(s, 400);
    assert!(r["msg"].as_str().unwrap().contains("no earlier version"));
    // nothing changed: no version handed out, the built-in set live, no library loaded
    let (s, st) = app.admin("GET", "/api/admin/lua", None).await;
    assert_eq!(s, 200);
    assert_eq!(st["data"]["state"]["generation"], 0, "{st}");
    assert_eq!(st["data"]["versions"].as_array().unwrap().len(), 1);
    let mut con = app.redis();
    let versions: Option<u64> = redis::cmd("GET")
        .arg(app.state.keys.lua_versions())
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(versions, None);
    assert_eq!(app.state.scripts.get().version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_reaches_both_edges_within_a_second_while_shoppers_buy_and_the_sale_holds() {
    let mut app = spawn_app_with_worker().await;
    let (edge2, state2) = app.add_edge().await;
    let app = Arc::new(app);
    let stock = 60;
    let goods = app.sale(stock).await;
    let users = app.users(120).await;
    let paths = concurrently(users.clone(), 16, |u| {
        let app = app.clone();
        async move { app.path_for(&u.token, goods).await }
    })
    .await;
    let shoppers: Vec<_> = users.into_iter().zip(paths).enumerate().collect();
    let bases = [app.address.clone(), format!("http://{edge2}")];
    let buying = {
        let (app, bases) = (app.clone(), bases.clone());
        tokio::spawn(async move {
            concurrently(shoppers, 8, |(i, (u, path))| {
                let (app, base) = (app.clone(), bases[i % 2].clone());
                async move {
                    // paced, so the buys straddle the release
                    tokio::time::sleep(Duration::from_millis(25 * i as u64)).await;
                    let (s, _) = app
                        .post_at(
                            &base,
                            &format!("/api/seckill/{path}/orders"),
                            &u.token,
                            &json!({ "goodsId": goods.get() }),
                        )
                        .await;
                    s
                }
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let v = release(&app, &good_tuned(), "entries carry v", None).await;
    let took = on_every_edge(&[&app.state, &state2], v, None).await;
    println!("release {v} on both edges after {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let answers = buying.await.unwrap();
    assert!(
        answers.iter().all(|s| [202, 409, 410].contains(s)),
        "{answers:?}"
    );
    // both versions decided buys on both edges, each call wholly one set's
    for s in [&app.state, &state2] {
        let (builtin, released) = (s.scripts.builtin(), s.scripts.get());
        assert_eq!(released.version, v);
        assert!(
            builtin
                .stats
                .calls
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        assert!(
            released
                .stats
                .calls
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
    }
    app.drained(goods, Duration::from_secs(20)).await;
    app.assert_invariants(goods, stock as i64).await;
    assert_eq!(app.orders(goods).await, stock as i64, "sold out exactly");
    // the edges say so too, within a report or two
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, st) = app.admin("GET", "/api/admin/lua", None).await;
    let edges = st["data"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{st}");
    assert!(
        edges.iter().all(|e| e["live"] == v && e["current"] == true),
        "{st}"
    );
    let versions = st["data"]["versions"].as_array().unwrap();
    assert_eq!(versions[1]["note"], "entries carry v");
    assert_eq!(versions[1]["hash"], scripts::content_hash(&good_tuned()));
    assert!(versions[1]["live"].as_bool().unwrap());
    assert!(versions[1]["counts"]["calls"].as_u64().unwrap() > 0, "{st}");
}

#[tokio::test]
async fn a_canary_of_20_percent_decides_about_20_percent_of_calls_until_promoted() {
    let app = spawn_app().await;
    let goods = app.sale(5).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    let v = release(&app, &good_tuned(), "canary", Some(20)).await;
    on_every_edge(&[&app.state], 0, Some(v)).await;
    let (live, canary) = (
        app.state.scripts.get(),
        app.state.scripts.canary().unwrap().set,
    );
    let calls = |s: &flashgate::admission::scripts::ScriptSet| {
        s.stats.calls.load(std::sync::atomic::Ordering::Relaxed)
    };
    let (live0, canary0) = (calls(&live), calls(&canary));
    // one shopper pressing buy again and again: every press is one admission call (queued,
    // then duplicate or rate limited: each decided by whichever set the call picked), the
    // edge's buyer marks cleared before each (else it answers the repeats itself)
    for _ in 0..1000 {
        app.state.local.clear_all();
        let (s, _) = app.buy(&user.token, &path, goods).await;
        assert!([202, 409, 429].contains(&s), "{s}");
    }
    let (l, c) = (calls(&live) - live0, calls(&canary) - canary0);
    assert_eq!(l + c, 1000);
    // binomial, n = 1000, p = 0.2: one standard deviation is 1.3 points; 7 points is 5.5 sd
    let share = c as f64 / 1000.0;
    println!("canary share {share:.3} ({c} of 1000 calls)");
    assert!((0.13..=0.27).contains(&share), "canary decided {share}");
    // the console's numbers: both versions' counts, the canary marked
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, st) = app.admin("GET", "/api/admin/lua", None).await;
    let vs = st["data"]["versions"].as_array().unwrap();
    assert!(vs[0]["live"].as_bool().unwrap() && vs[1]["canary"].as_bool().unwrap());
    assert_eq!(
        vs[0]["counts"]["calls"].as_u64().unwrap() + vs[1]["counts"]["calls"].as_u64().unwrap(),
        1000,
        "{st}"
    );
    assert_eq!(st["data"]["state"]["pct"], 20);
    let (s, r) = app.admin("POST", "/api/admin/lua/promote", None).await;
    assert_eq!(s, 200, "{r}");
    on_every_edge(&[&app.state], v, None).await;
    let (s, _) = app.buy(&user.token, &path, goods).await;
    assert!([409, 429].contains(&s));
}

#[tokio::test]
async fn rollback_returns_both_edges_to_the_previous_version_and_to_a_named_one() {
    let mut app = spawn_app().await;
    let (_, state2) = app.add_edge().await;
    let edges = [&app.state, &state2];
    let v1 = release(&app, &good_tuned(), "one", None).await;
    let v2 = release(&app, &good_tuned(), "two", None).await;
    on_every_edge(&edges, v2, None).await;
    let rollback = |b: Option<Value>| {
        let app = &app;
        async move {
            let (s, r) = app
                .admin("POST", "/api/admin/lua/rollback", b.as_ref())
                .await;
            (s, r)
        }
    };
    let (s, r) = rollback(None).await;
    assert_eq!((s, r["data"]["live"].as_u64()), (200, Some(v1)), "{r}");
    let took = on_every_edge(&edges, v1, None).await;
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    assert_eq!(rollback(None).await.0, 200);
    on_every_edge(&edges, 0, None).await;
    let (s, r) = rollback(None).await;
    assert_eq!(s, 400, "{r}");
    let (s, _) = rollback(Some(json!({"version": v2}))).await;
    assert_eq!(s, 200);
    on_every_edge(&edges, v2, None).await;
    let (s, r) = rollback(Some(json!({"version": v2}))).await;
    assert_eq!(s, 400);
    assert!(r["msg"].as_str().unwrap().contains("is live already"));
    // a canary out is withdrawn by a rollback, the live version stays
    let v3 = release(&app, &good_tuned(), "three", Some(50)).await;
    on_every_edge(&edges, v2, Some(v3)).await;
    assert_eq!(rollback(None).await.0, 200);
    on_every_edge(&edges, v2, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_released_version_survives_a_redis_restart_from_its_aof() {
    let mut redis = crate::restart::OwnRedis::start();
    let mut settings = test_settings();
    settings.redis_url = redis.url();
    let mut app = spawn_with(settings, true).await;
    let goods = app.sale(10).await;
    let users = app.users(2).await;
    let v = release(&app, &good_tuned(), "kept", None).await;
    on_every_edge(&[&app.state], v, None).await;
    redis.kill();
    redis.spawn();
    // straight from the AOF, before any edge could load anything: the library and the state
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let libs: Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg(app.state.keys.lua_library(v))
        .query_async::<redis::Value>(&mut con)
        .await
        .map(|v| json!(format!("{v:?}")))
        .unwrap();
    assert!(
        libs.as_str()
            .unwrap()
            .contains(&app.state.keys.lua_library(v)),
        "{libs}"
    );
    let state: String = redis::cmd("GET")
        .arg(app.state.keys.lua_state())
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(state.contains(&format!("\"live\":{v}")), "{state}");
    // the running edge buys with it, and an edge started now starts on it
    let released = app.state.scripts.get();
    let before = released
        .stats
        .calls
        .load(std::sync::atomic::Ordering::Relaxed);
    let path = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, b) = app
                .get(
                    &format!("/api/seckill/path?goodsId={goods}"),
                    &users[0].token,
                )
                .await;
            if s == 200 {
                break b["data"].as_str().unwrap().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no path after the restart: {s} {b}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(app.buy(&users[0].token, &path, goods).await.0, 202);
    assert_eq!(released.version, v);
    assert!(
        released
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
            > before
    );
    let (_, state2) = app.add_edge().await;
    assert_eq!(state2.scripts.get().version, v);
}

#[tokio::test]
async fn an_edge_refuses_a_release_whose_contract_differs_and_keeps_the_last_good_one() {
    // a release made by a flashgate whose admit.lua takes another key (a newer version, say):
    // written as such a release would write it, then announced
    let mut app = spawn_app().await;
    let (_, state2) = app.add_edge().await;
    let good = release(&app, &good_tuned(), "good", None).await;
    on_every_edge(&[&app.state, &state2], good, None).await;
    let other = tuned("admit.lua", |t| {
        t.replacen("campaign user...", "campaign stats user...", 1)
    });
    let v = good + 1;
    let mut con = app.redis();
    let keys = &app.state.keys;
    let record = json!({"version": v, "hash": scripts::content_hash(&other), "note": "from elsewhere",
        "at_ms": 0, "files": other});
    let _: () = redis::cmd("SET")
        .arg(keys.lua_release(v))
        .arg(record.to_string())
        .query_async(&mut con)
        .await
        .unwrap();
    let state =
        json!({"generation": 99, "live": v, "canary": null, "pct": 0, "history": [0, good]});
    let _: () = redis::cmd("SET")
        .arg(keys.lua_state())
        .arg(state.to_string())
        .query_async(&mut con)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(keys.lua_channel())
        .arg(99)
        .query_async(&mut con)
        .await
        .unwrap();
    // each edge says why, and keeps the version it could use: never a mixture
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = app.admin("GET", "/api/admin/lua", None).await;
        let edges = st["data"]["edges"].as_array().cloned().unwrap_or_default();
        let refused = edges
            .iter()
            .filter(|e| {
                e["error"].as_str().is_some_and(|m| {
                    m.contains(&format!("version {v}'s contract is not this edge's"))
                        && m.contains("admit.lua: its keys differ")
                })
            })
            .count();
        if refused == 2 {
            assert!(
                edges
                    .iter()
                    .all(|e| e["live"] == good && e["current"] == false),
                "{st}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the edges did not say why: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in [&app.state, &state2] {
        assert_eq!(s.scripts.get().version, good);
    }
    let goods = app.sale(3).await;
    let user = &app.users(1).await[0];
    let path = app.path_for(&user.token, goods).await;
    assert_eq!(app.buy(&user.token, &path, goods).await.0, 202);
}

#[tokio::test]
async fn the_cli_checks_releases_promotes_rolls_back_and_refuses_bad_input_by_name() {
    let app = spawn_app().await;
    let run = |args: &[&str]| {
        let (code, out, err) = app.cli(args);
        (code, format!("{out}{err}"))
    };
    let dir = std::env::temp_dir().join(format!("fg-cli-lua-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |files: &Files| {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    };
    let d = dir.to_str().unwrap();
    let (code, out) = run(&["lua", "check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("passed, 0 failed"), "{out}");
    write(&admit_without_duplicate_marker());
    let (code, out) = run(&["lua", "check", d]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL admit.lua       duplicates inside one call"),
        "{out}"
    );
    let (code, out) = run(&["lua", "release", d, "--note", "buggy"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refused: the set fails the contract suite"),
        "{out}"
    );
    let missing = dir.join("nowhere");
    let (code, out) = run(&["lua", "check", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(out.contains("no such directory"), "{out}");
    write(&good_tuned());
    std::fs::remove_file(dir.join("take.lua")).unwrap();
    let (code, out) = run(&["lua", "release", d]);
    assert_eq!(code, Some(1));
    assert!(out.contains("the set lacks take.lua"), "{out}");
    write(&tuned("take.lua", |t| format!("{t}\nreturn return")));
    let (code, out) = run(&["lua", "release", d]);
    assert_eq!(code, Some(1));
    assert!(out.contains("take.lua does not compile"), "{out}");
    write(&good_tuned());
    for bad in ["0", "100"] {
        let (code, out) = run(&["lua", "release", d, "--canary", bad]);
        assert_eq!(code, Some(1));
        assert!(out.contains("a canary share is 1-99"), "{out}");
    }
    let (code, out) = run(&["lua", "rollback", "4"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("version 4 was never released"), "{out}");
    // nothing so far changed anything
    let (_, out) = run(&["lua", "status"]);
    assert!(out.starts_with("live: version 0\n"), "{out}");
    let (code, out) = run(&["lua", "release", d, "--note", "tuned", "--canary", "25"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("released version 1") && out.contains("25% of admission calls"),
        "{out}"
    );
    on_every_edge(&[&app.state], 0, Some(1)).await;
    let (_, out) = run(&["lua", "status"]);
    assert!(out.contains("canary: version 1 deciding 25%"), "{out}");
    assert!(out.contains("c1 ") && out.contains("tuned"), "{out}");
    assert_eq!(run(&["lua", "promote"]).0, Some(0));
    on_every_edge(&[&app.state], 1, None).await;
    assert_eq!(run(&["lua", "rollback"]).0, Some(0));
    on_every_edge(&[&app.state], 0, None).await;
    std::fs::remove_dir_all(dir).unwrap();
}
