//! Background work in proportion to what is live (src/operators/audit.rs, src/worker/mod.rs,
//! src/sales/catalogue.rs): a sale that is over, drained and clean is settled and left alone,
//! audited again when it changes; a drift planted in it is still found on demand; the catalogue
//! shows the sales running or coming and pages through the rest.

use std::time::{Duration, Instant};

use flashgate::cli::seed::NewSale;
use flashgate::domain::GoodsId;
use flashgate::operators::audit;
use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_with, test_settings};

async fn settled(app: &TestApp, goods: GoodsId) -> bool {
    sqlx::query_scalar::<_, Option<chrono::NaiveDateTime>>(
        "SELECT settled_at FROM seckill_goods WHERE goods_id = ?",
    )
    .bind(goods.get())
    .fetch_one(&app.state.db)
    .await
    .unwrap()
    .is_some()
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A worker that audits every 100 ms and closes unpaid orders after `unpaid` seconds.
async fn app_with_quick_audit(unpaid: u64) -> TestApp {
    let mut settings = test_settings();
    settings.audit_interval_ms = 100;
    settings.unpaid_timeout_secs = unpaid;
    spawn_with(settings, true).await
}

/// A sale of `stock` open now for `lasts` seconds, bought by `buyers` shoppers.
async fn bought_sale(app: &TestApp, stock: i32, lasts: i64, buyers: usize) -> GoodsId {
    let goods = app.sale_window(stock, 0, lasts).await;
    for u in app.users(buyers).await {
        let p = app.path_for(&u.token, goods).await;
        assert_eq!(app.buy(&u.token, &p, goods).await.0, 202);
    }
    goods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_sale_is_not_audited_again_until_a_closed_order_changes_it() {
    let app = app_with_quick_audit(8).await;
    let goods = bought_sale(&app, 5, 2, 2).await;
    app.drained(goods, Duration::from_secs(20)).await;
    wait_until("the sale settling", Duration::from_secs(15), || {
        settled(&app, goods)
    })
    .await;
    let m = &app.state.metrics;
    assert!(m.sales_settled.get() >= 1);
    // its readers stop and the worker forgets it
    wait_until("its readers stopping", Duration::from_secs(10), || async {
        m.worker_readers.get() == 0
    })
    .await;
    // settled and untouched: ten audit passes go by without auditing it
    let audits = m.audits.get();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(m.audits.get(), audits, "a settled sale was audited again");
    assert!(settled(&app, goods).await);

    // the closer closes the two unpaid orders: the sale changes, is audited again, and settles
    // again, clean, with both units back in Redis
    wait_until(
        "the sale unsettled by a closed order",
        Duration::from_secs(15),
        || async { !settled(&app, goods).await || m.audits.get() > audits },
    )
    .await;
    // settled after both units are back and noted (one statement: one snapshot)
    wait_until("the sale settling again", Duration::from_secs(20), || async {
        let (settled, returned): (bool, i64) = sqlx::query_as(
            "SELECT sg.settled_at IS NOT NULL, \
             (SELECT COUNT(*) FROM order_info o WHERE o.goods_id = sg.goods_id AND o.stock_returned = 1) \
             FROM seckill_goods sg WHERE sg.goods_id = ?",
        )
        .bind(goods.get())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        settled && returned == 2
    })
    .await;
    assert!(m.audits.get() > audits, "settled again without an audit");
    let r = audit::audit(&app.state.stores(), goods).await.unwrap();
    assert!(r.clean, "{r:?}");
    assert_eq!((r.orders, r.units_returned, r.redis_stock), (2, 2, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_planted_in_a_settled_sale_is_found_on_demand_and_a_fix_unsettles_it() {
    let app = app_with_quick_audit(3600).await;
    let goods = bought_sale(&app, 5, 2, 1).await;
    app.drained(goods, Duration::from_secs(20)).await;
    wait_until("the sale settling", Duration::from_secs(15), || {
        settled(&app, goods)
    })
    .await;
    let m = &app.state.metrics;
    let audits = m.audits.get();
    // one unit appears in Redis from nowhere, behind the background's back
    let stock = app
        .state
        .keys
        .shard(flashgate::domain::Shard::all(goods, 1).next().unwrap())
        .stock();
    let _: i64 = app.redis().incr(&stock, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        m.audits.get(),
        audits,
        "the background audited a settled sale"
    );
    // asked for, the audit reads it whole and finds it
    let r = audit::audit(&app.state.stores(), goods).await.unwrap();
    assert_eq!(
        (r.at_rest, r.clean, r.stock_drift),
        (true, false, 1),
        "{r:?}"
    );
    assert!(r.findings.iter().any(|f| f.kind == "stock_drift"));
    let seq = || async {
        sqlx::query_scalar::<_, i64>("SELECT change_seq FROM seckill_goods WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_one(&app.state.db)
            .await
            .unwrap()
    };
    let before = seq().await;
    let fixed = audit::fix(&app.state.stores(), goods).await.unwrap();
    assert!(fixed.clean, "{fixed:?}");
    // a fix changes the sale: it is unsettled (the worker may settle it again at once, so the
    // change counter says it, not `settled_at`) and audited again
    assert!(seq().await > before, "a fix did not unsettle the sale");
    wait_until(
        "the fixed sale audited and settled again",
        Duration::from_secs(15),
        || async { settled(&app, goods).await && m.audits.get() > audits },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_audit_reads_counts_and_still_names_a_stray_buyer() {
    // a live sale at rest (nothing queued) with a buyer in Redis who has no order: the buyer
    // counts disagree, so the audit reads the members and names who
    let app = app_with_quick_audit(3600).await;
    let goods = bought_sale(&app, 5, 3600, 2).await;
    app.drained(goods, Duration::from_secs(20)).await;
    let shard = flashgate::domain::Shard::all(goods, 1).next().unwrap();
    let _: i64 = app
        .redis()
        .sadd(app.state.keys.shard(shard).buyers(), 999_999)
        .await
        .unwrap();
    let r = audit::audit(&app.state.stores(), goods).await.unwrap();
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == "buyer_without_order" && f.user == Some(999_999)),
        "{r:?}"
    );
    assert_eq!((r.redis_buyers, r.mysql_buyers), (3, 2));
    assert!(!settled(&app, goods).await, "a live sale never settles");
}

async fn goods_ids(app: &TestApp, query: &str) -> (u16, Vec<i64>) {
    let resp = app
        .http
        .get(app.url(&format!("/api/goods{query}")))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let ids = body["data"]
        .as_array()
        .map(|a| a.iter().map(|g| g["id"].as_i64().unwrap()).collect())
        .unwrap_or_default();
    (status, ids)
}

#[tokio::test]
async fn the_catalogue_lists_sales_running_or_coming_and_pages_through_those_that_are_over() {
    let app = spawn_with(test_settings(), false).await;
    let ended = app.create_sale(&NewSale::new(5, -7200, 60)).await;
    let running = app.sale_window(5, 0, 3600).await;
    let coming = app.sale_window(5, 3600, 3600).await;
    let (status, ids) = goods_ids(&app, "").await;
    assert_eq!(status, 200);
    assert!(
        ids.contains(&running.get()) && ids.contains(&coming.get()),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&ended.get()),
        "an ended sale is listed: {ids:?}"
    );
    let (status, past) = goods_ids(&app, "?past=1").await;
    assert_eq!((status, past), (200, vec![ended.get()]));
    assert_eq!(goods_ids(&app, "?past=2").await, (200, vec![]));
    for bad in ["?past=0", "?past=abc", "?past=-1", "?past=99999999999"] {
        assert_eq!(goods_ids(&app, bad).await.0, 400, "{bad}");
    }
    // an audit of a sale that does not exist: a clear 404
    let (s, body) = app
        .admin("GET", "/api/admin/sales/987654321/audit", None)
        .await;
    assert_eq!((s, body["code"].as_i64()), (404, Some(500404)));
}
