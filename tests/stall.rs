//! No edge-wide stall: the maps a buy touches (buyer marks, logouts) filled to a million
//! entries while shoppers buy, and no buy waits on them.
//!
//! A binary of its own, so that it runs alone (cargo runs test binaries one after another): the
//! latencies it reads are not those of a hundred other tests sharing two cores. Why it matters:
//! with the maps of before (a `HashMap` behind one lock each) a table growing to hundreds of
//! thousands of entries rehashes under its lock and every buy waits (the first sale an edge
//! served had a p99 of 107 ms, the next ones 3.5 ms); with lock-free maps resized a few entries
//! per write, a buy costs what it costs while they grow.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use flashgate::admission::soldout::{MARKS_CAPACITY, binding_hash};
use flashgate::domain::{TokenPrint, UserId};
use serde_json::json;

/// The slowest buy allowed while the maps fill (a buy here takes about a millisecond; a rehash
/// of a million entries under a lock took tens).
const SLOWEST: Duration = Duration::from_millis(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_the_buy_maps_to_a_million_entries_stalls_no_buy() {
    let app = helpers::spawn_app().await;
    let users = app.users(200).await;
    let goods = app.sale(1_000).await;
    let mut paths = Vec::new();
    for u in &users {
        paths.push(app.path_for(&u.token, goods).await);
    }
    while !app.state.logouts.trusted() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // the filler: a million buyer marks of this sale and 900,000 logouts (under the list's
    // capacity, so it stays trusted and every buy looks in it), on a thread of its own
    let (local, logouts) = (app.state.local.clone(), app.state.logouts.clone());
    let filler = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let epoch = local.epoch(goods);
        for i in 0..MARKS_CAPACITY as i64 {
            let user = UserId::new(1_000_000_000 + i).unwrap();
            local.mark_buyer(goods, user, binding_hash(&i.to_string()), epoch);
            if i < 900_000 {
                logouts.add(TokenPrint::of(&i.to_string()));
            }
        }
        t0.elapsed()
    });
    // the shoppers buy, one after another, while it runs (and after, if it is quick)
    let mut slowest = (Duration::ZERO, 0);
    let mut during = 0;
    for (i, (u, path)) in users.iter().zip(&paths).enumerate() {
        let t = Instant::now();
        let (s, r) = app
            .post(
                &format!("/api/seckill/{path}/orders"),
                &u.token,
                &json!({ "goodsId": goods.get() }),
            )
            .await;
        let took = t.elapsed();
        assert_eq!(s, 202, "{r}");
        if !filler.is_finished() {
            during += 1;
        }
        if took > slowest.0 {
            slowest = (took, i);
        }
    }
    let filled_in = filler.await.unwrap();
    println!(
        "filled {} marks and {} logouts in {filled_in:?}; {during} of {} buys ran meanwhile; slowest buy {:?} (#{})",
        app.state.local.marks_held(),
        app.state.logouts.len(),
        users.len(),
        slowest.0,
        slowest.1
    );
    assert!(app.state.local.marks_held() >= MARKS_CAPACITY - 1);
    assert!(during > 0, "the buys did not overlap the filling");
    assert!(
        slowest.0 < SLOWEST,
        "a buy took {:?} while the maps filled",
        slowest.0
    );
}
