//! The audit (`src/operators/audit.rs`): a clean sale audits clean; drift injected three ways (Redis
//! stock changed by hand, a queue entry deleted before the worker saw it, an order row deleted)
//! is each reported with the right numbers, keys and rows; `fix` mends the first once the queue
//! is drained and refuses while it is not; the worker exports the drift; the CLI says the same.

use std::time::Duration;

use flashgate::cli::seed::TestUser;
use flashgate::domain::GoodsId;
use flashgate::operators::audit::{self, Report};
use redis::AsyncCommands;

use crate::helpers::{TestApp, spawn_app_with_worker};

/// `n` shoppers of `users` buy one each; all admitted, then written.
async fn buy(app: &TestApp, goods: GoodsId, users: &[TestUser]) {
    for u in users {
        let p = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &p, goods).await.0, 202);
    }
}

async fn report(app: &TestApp, goods: GoodsId) -> Report {
    audit::audit(&app.state.stores(), goods).await.unwrap()
}

fn kinds(r: &Report) -> Vec<&str> {
    r.findings.iter().map(|f| f.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_sale_audits_clean_through_the_api_and_the_worker() {
    let app = spawn_app_with_worker().await;
    let users = app.users(4).await;
    let goods = app.sale(10).await;
    buy(&app, goods, &users).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let (s, a) = app
        .admin("GET", &format!("/api/admin/sales/{goods}/audit"), None)
        .await;
    assert_eq!(s, 200);
    let a = &a["data"];
    assert_eq!(
        (&a["atRest"], &a["clean"]),
        (&true.into(), &true.into()),
        "{a}"
    );
    assert_eq!(
        (
            &a["initialStock"],
            &a["redisStock"],
            &a["orders"],
            &a["stockDrift"]
        ),
        (&10.into(), &6.into(), &4.into(), &0.into())
    );
    assert_eq!(
        (&a["redisBuyers"], &a["mysqlBuyers"]),
        (&4.into(), &4.into())
    );
    // the worker audits it too and exports a zero drift
    wait_for_drift(&app, goods, 0).await;
}

/// Waits (up to 15 s) for the worker's audit to export `drift` for `goods`.
async fn wait_for_drift(app: &TestApp, goods: GoodsId, drift: i64) {
    let want = format!("flashgate_stock_drift{{goods=\"{goods}\"}} {drift}\n");
    let base = app.admin_address.clone().unwrap();
    for _ in 0..75 {
        let text = app
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the worker did not export {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stock_changed_by_hand_is_reported_and_fixed_only_once_drained() {
    let mut app = spawn_app_with_worker().await;
    let users = app.users(4).await;
    let goods = app.sale(10).await;
    buy(&app, goods, &users[..3]).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let stock = app.state.keys.sale(goods).stock();
    let _: i64 = app.redis().incr(&stock, 3).await.unwrap();

    let r = report(&app, goods).await;
    assert!(r.at_rest && !r.clean, "{r:?}");
    assert_eq!(
        (r.redis_stock, r.expected_redis_stock, r.stock_drift),
        (10, 7, 3)
    );
    assert_eq!(kinds(&r), ["stock_drift"]);
    assert_eq!(r.findings[0].keys, std::slice::from_ref(&stock));
    assert!(
        r.findings[0].message.contains("drift +3"),
        "{}",
        r.findings[0].message
    );
    wait_for_drift(&app, goods, 3).await;

    // not at rest: a buy waits in the queue while the worker is down; the fix is refused
    app.kill_worker().await;
    buy(&app, goods, &users[3..]).await;
    let e = audit::fix(&app.state.stores(), goods).await.unwrap_err();
    assert!(
        matches!(
            e,
            flashgate::error::AppError::Refused(flashgate::error::Refusal::NotAtRest)
        ),
        "{e:?}"
    );
    let still: i64 = app.redis().get(&stock).await.unwrap();
    assert_eq!(still, 9, "a refused fix changes nothing");
    let r = report(&app, goods).await;
    assert!(!r.at_rest && r.findings.is_empty(), "{r:?}");

    // drained: the fix mends Redis and says what it did
    app.start_worker();
    app.drained(goods, Duration::from_secs(20)).await;
    let fixed = audit::fix(&app.state.stores(), goods).await.unwrap();
    assert!(fixed.clean, "{fixed:?}");
    assert_eq!(fixed.repairs.len(), 1, "{:?}", fixed.repairs);
    assert!(
        fixed.repairs[0].contains("INCRBY") && fixed.repairs[0].contains("-3"),
        "{:?}",
        fixed.repairs
    );
    let now: i64 = app.redis().get(&stock).await.unwrap();
    assert_eq!(now, 6);
    app.assert_invariants(goods, 10).await;
    wait_for_drift(&app, goods, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_entry_deleted_before_the_worker_saw_it_is_a_lost_unit_and_a_buyer_without_order() {
    let mut app = spawn_app_with_worker().await;
    let users = app.users(3).await;
    let goods = app.sale(10).await;
    buy(&app, goods, &users[..2]).await;
    app.drained(goods, Duration::from_secs(20)).await;
    app.kill_worker().await;
    buy(&app, goods, &users[2..]).await;
    let queue = app.state.keys.sale(goods).queue();
    let entries: redis::streams::StreamRangeReply = app.redis().xrange_all(&queue).await.unwrap();
    assert_eq!(entries.ids.len(), 1);
    let _: i64 = app
        .redis()
        .xdel(&queue, &[&entries.ids[0].id])
        .await
        .unwrap();

    let r = report(&app, goods).await;
    assert!(r.at_rest, "{r:?}");
    assert_eq!(
        (
            r.redis_stock,
            r.orders,
            r.expected_redis_stock,
            r.stock_drift
        ),
        (7, 2, 8, -1)
    );
    assert_eq!((r.redis_buyers, r.mysql_buyers), (3, 2));
    assert_eq!(kinds(&r), ["stock_drift", "buyer_without_order"]);
    let lost = &r.findings[1];
    assert_eq!(lost.user, Some(users[2].id.get()));
    assert_eq!(lost.keys, [app.state.keys.sale(goods).buyers()]);

    // at rest and MySQL consistent: the fix gives the unit back and clears the mark
    let fixed = audit::fix(&app.state.stores(), goods).await.unwrap();
    assert!(fixed.clean, "{fixed:?}");
    assert_eq!(fixed.redis_stock, 8);
    assert_eq!(app.result(&users[2].token, goods).await, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_row_deleted_is_reported_with_its_row_and_the_fix_leaves_mysql_to_a_person() {
    let app = spawn_app_with_worker().await;
    let users = app.users(3).await;
    let goods = app.sale(10).await;
    buy(&app, goods, &users).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let order: i64 =
        sqlx::query_scalar("SELECT order_id FROM seckill_order WHERE goods_id = ? AND user_id = ?")
            .bind(goods.get())
            .bind(users[1].id.get())
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    sqlx::query("DELETE FROM order_info WHERE id = ?")
        .bind(order)
        .execute(&app.state.db)
        .await
        .unwrap();

    let r = report(&app, goods).await;
    assert!(r.at_rest, "{r:?}");
    assert_eq!(
        (
            r.redis_stock,
            r.orders,
            r.expected_redis_stock,
            r.stock_drift
        ),
        (7, 2, 8, -1)
    );
    assert_eq!(
        r.mysql_stock_drift, 0,
        "MySQL's stock counts the marker row"
    );
    assert_eq!(kinds(&r), ["stock_drift", "marker_without_order"]);
    assert_eq!(
        r.findings[1].rows,
        [format!(
            "seckill_order order_id={order} user_id={}",
            users[1].id
        )]
    );
    let e = audit::fix(&app.state.stores(), goods).await.unwrap_err();
    assert!(
        matches!(
            e,
            flashgate::error::AppError::Refused(flashgate::error::Refusal::MysqlDisagrees)
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_audits_exits_1_on_drift_and_fixes() {
    let app = spawn_app_with_worker().await;
    let users = app.users(2).await;
    let goods = app.sale(5).await;
    buy(&app, goods, &users).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let _: i64 = app
        .redis()
        .incr(app.state.keys.sale(goods).stock(), 2)
        .await
        .unwrap();
    let run = |args: &[&str]| {
        let (code, out, _) = app.cli(args);
        (code, out)
    };
    let id = goods.to_string();
    let (code, out) = run(&["audit", &id]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DRIFT") && out.contains("drift +2"), "{out}");
    let (code, out) = run(&["audit", &id, "--fix"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("clean") && out.contains("fixed: INCRBY"),
        "{out}"
    );
    let (code, out) = run(&["audit"]);
    assert_eq!(code, Some(0), "{out}");
}
