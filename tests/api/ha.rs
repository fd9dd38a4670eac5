//! Redis high availability on real `redis-server` processes the tests start themselves on free
//! loopback ports (a primary, a replica, three sentinels): replica confirmation before "queued",
//! results found again from MySQL, entries delivered again after a failover, dead workers
//! replaced in seconds, a Sentinel failover followed by edge and worker, and the start-up
//! refusals. Each test kills only the processes it started.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flashgate::domain::GoodsId;
use flashgate::plumbing::config::Settings;
use flashgate::startup;
use redis::AsyncCommands;

use crate::helpers::{TestApp, spawn_with, test_settings};

/// A free loopback port (bound, then let go: good enough for tests that start at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` processes of one test, killed when dropped.
struct Servers {
    dir: std::path::PathBuf,
    children: Vec<(u16, Child)>,
}

impl Servers {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("fg-ha-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            children: Vec::new(),
        }
    }

    /// A data node (optionally a replica of `of`); nothing kept on disk.
    fn redis(&mut self, of: Option<u16>) -> u16 {
        let port = free_port();
        self.redis_on(port, of);
        port
    }

    fn redis_on(&mut self, port: u16, of: Option<u16>) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(p) = of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        self.spawn(port, cmd);
    }

    /// Starts the node on `port` again after a kill, empty (a sentinel makes it a replica).
    fn restart(&mut self, port: u16) {
        if let Some(i) = self.children.iter().position(|(p, _)| *p == port) {
            let (_, mut old) = self.children.remove(i);
            let _ = old.wait();
        }
        self.redis_on(port, None);
    }

    /// A sentinel watching `primary` as `mymaster` (quorum 2, down after 1 s).
    fn sentinel(&mut self, primary: u16) -> u16 {
        let port = free_port();
        let conf = self.dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        self.spawn(port, cmd);
        port
    }

    fn spawn(&mut self, port: u16, mut cmd: Command) {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.children.push((port, child));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {port} did not start");
    }

    fn signal(&self, port: u16, sig: i32) {
        let (_, child) = self.children.iter().find(|(p, _)| *p == port).unwrap();
        unsafe { libc::kill(child.id() as i32, sig) };
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica (synced) and three sentinels watching them; answers the servers, the
/// primary's and the replica's ports, and the `redis+sentinel://` URL naming the sentinels.
async fn sentinel_set() -> (Servers, u16, u16, String) {
    let mut servers = Servers::new();
    let primary = servers.redis(None);
    let replica = servers.redis(Some(primary));
    synced(primary, replica).await;
    let sentinels: Vec<u16> = (0..3).map(|_| servers.sentinel(primary)).collect();
    let url = format!(
        "redis+sentinel://{}/mymaster",
        sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    (servers, primary, replica, url)
}

/// Waits until the replica on `replica` has synced with the primary on `primary`, as both see
/// it (the replica's link is up, and the primary counts it online among its replicas, as `ROLE`,
/// which the edge's start-up check reads, does).
async fn synced(primary: u16, replica: u16) {
    let info = |port: u16| async move {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("INFO")
            .arg("replication")
            .query_async::<String>(&mut c)
            .await
            .ok()
    };
    for _ in 0..200 {
        let up = info(replica)
            .await
            .is_some_and(|i| i.contains("master_link_status:up"));
        let counted = info(primary)
            .await
            .is_some_and(|i| i.contains("connected_slaves:1") && i.contains("state=online"));
        if up && counted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica {replica} never synced with {primary}");
}

/// Polls the result until it is not 0 (queued), or `within` passes.
async fn settled(app: &TestApp, token: &str, goods: GoodsId, within: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = app.result(token, goods).await;
        if r != 0 || tokio::time::Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_batch_is_not_answered_queued_while_its_replica_is_stopped_and_is_once_it_is_back() {
    let mut servers = Servers::new();
    let primary = servers.redis(None);
    let replica = servers.redis(Some(primary));
    synced(primary, replica).await;
    let settings = Settings {
        redis_url: format!("redis://127.0.0.1:{primary}/"),
        redis_ack_replicas: Some(1),
        redis_ack_timeout_ms: 200,
        ..test_settings()
    };
    let app = spawn_with(settings, true).await;
    let goods = app.sale(10).await;
    let users = app.users(2).await;

    servers.signal(replica, libc::SIGSTOP);
    let path = app.path_for(&users[0].token, goods).await;
    let (status, body) = app.buy(&users[0].token, &path, goods).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["code"], 500509,
        "not confirmed: not told queued: {body}"
    );
    // the worker does not write an order for an entry no replica holds
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.orders(goods).await,
        0,
        "an order written before a replica had its entry"
    );
    assert_eq!(
        app.result(&users[0].token, goods).await,
        0,
        "the page keeps asking"
    );
    let (_, health) = app.ops_get("/readyz").await;
    assert!(
        health["data"]["confirmTimeouts"].as_u64().unwrap() >= 1,
        "{health}"
    );

    servers.signal(replica, libc::SIGCONT);
    let order = settled(&app, &users[0].token, goods, Duration::from_secs(10)).await;
    assert!(
        order > 0,
        "once the replica is back the buy settles as an order: {order}"
    );
    let path = app.path_for(&users[1].token, goods).await;
    let (status, body) = app.buy(&users[1].token, &path, goods).await;
    assert_eq!((status, body["code"].as_i64()), (202, Some(0)), "{body}");
    assert!(settled(&app, &users[1].token, goods, Duration::from_secs(10)).await > 0);
    app.drained(goods, Duration::from_secs(5)).await;
    app.assert_invariants(goods, 10).await;
}

/// An edge and a worker on the shared Redis, a sale, and one shopper whose order is written
/// and drained: `(app, goods, [that shopper], order id)`.
async fn one_order_written() -> (TestApp, GoodsId, Vec<flashgate::cli::seed::TestUser>, i64) {
    let app = spawn_with(test_settings(), true).await;
    let goods = app.sale(5).await;
    let users = app.users(1).await;
    let token = &users[0].token;
    let path = app.path_for(token, goods).await;
    assert_eq!(app.buy(token, &path, goods).await.0, 202);
    let order = settled(&app, token, goods, Duration::from_secs(10)).await;
    assert!(order > 0);
    app.drained(goods, Duration::from_secs(5)).await;
    (app, goods, users, order)
}

#[tokio::test]
async fn a_result_deleted_on_the_primary_after_the_commit_is_found_in_mysql_and_written_back() {
    let (app, goods, users, order) = one_order_written().await;
    let token = &users[0].token;
    let k = app.state.keys.sale(goods);
    let result_key = k.result(users[0].id);
    let _: () = app.redis().del(&result_key).await.unwrap();
    assert_eq!(
        app.result(token, goods).await,
        order,
        "found again, from MySQL"
    );
    let back: Option<i64> = app.redis().get(&result_key).await.unwrap();
    assert_eq!(back, Some(order), "and written back to Redis");
}

#[tokio::test]
async fn an_entry_delivered_again_after_a_failover_is_settled_as_the_order_already_written() {
    let (app, goods, users, order) = one_order_written().await;
    // what a new primary that never saw the ack (nor the result) holds: the entry again
    let k = app.state.keys.sale(goods);
    let _: () = app.redis().del(k.result(users[0].id)).await.unwrap();
    let uid = users[0].id.get().to_string();
    let _: String = app
        .redis()
        .xadd(
            k.queue(),
            "*",
            &[("u", uid.as_str()), ("r", "again"), ("t", "0")],
        )
        .await
        .unwrap();
    app.drained(goods, Duration::from_secs(10)).await;
    assert_eq!(app.orders(goods).await, 1, "no second order");
    let back: Option<i64> = app.redis().get(k.result(users[0].id)).await.unwrap();
    assert_eq!(back, Some(order), "settled as the order already written");
    assert_eq!(app.state.metrics.replays.get(), 1);
}

#[tokio::test]
async fn a_dead_workers_entries_are_taken_over_in_seconds_and_a_living_ones_are_left_alone() {
    let settings = Settings {
        claim_idle_ms: 30_000,
        ..test_settings()
    };
    let mut app = spawn_with(settings, false).await;
    let goods = app.sale(5).await;
    let users = app.users(2).await;
    let k = app.state.keys.sale(goods);
    let mut con = app.redis();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(k.queue())
        .arg(flashgate::plumbing::keys::GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .unwrap();
    // two admitted shoppers, each read by a worker that then stops: one dead (no heartbeat),
    // one alive but slow (its heartbeat kept)
    app.queue_by_hand(goods, &[&[users[0].id.get()], &[users[1].id.get()]])
        .await;
    for consumer in ["ghost", "slow"] {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(flashgate::plumbing::keys::GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(k.queue())
            .arg(">")
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let alive = app.state.keys.worker_alive("slow");
    let keep = {
        let mut con = app.redis();
        tokio::spawn(async move {
            loop {
                let _: redis::RedisResult<()> = con.set_ex(&alive, 1, 3).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    app.start_worker();
    let order = settled(&app, &users[0].token, goods, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(order > 0, "the dead worker's entry was not taken over");
    assert!(
        took < Duration::from_secs(10),
        "taken after {took:?}, not in seconds"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.result(&users[1].token, goods).await,
        0,
        "a living worker's entry was taken before claim_idle_ms"
    );
    keep.abort();
}

#[tokio::test]
async fn a_redis_url_or_replica_count_that_cannot_be_met_refuses_to_start_and_says_why() {
    let refused = |settings: Settings| async move {
        match startup::connect(settings).await {
            Ok(_) => panic!("started"),
            Err(e) => format!("{e:#}"),
        }
    };
    let dead = free_port();
    let why = refused(Settings {
        redis_url: format!("redis+sentinel://127.0.0.1:{dead}/mymaster"),
        ..test_settings()
    })
    .await;
    assert!(why.contains("no sentinel answered"), "{why}");
    assert!(why.contains(&dead.to_string()), "names the sentinel: {why}");

    let mut servers = Servers::new();
    let primary = servers.redis(None);
    let sentinel = servers.sentinel(primary);
    let why = refused(Settings {
        redis_url: format!("redis+sentinel://127.0.0.1:{sentinel}/nosuchname"),
        ..test_settings()
    })
    .await;
    assert!(why.contains("do not know"), "{why}");
    assert!(why.contains("nosuchname"), "{why}");

    let why = refused(Settings {
        redis_url: format!("redis://127.0.0.1:{primary}/"),
        redis_ack_replicas: Some(1),
        ..test_settings()
    })
    .await;
    assert!(why.contains("FLASHGATE_REDIS_ACK_REPLICAS=1"), "{why}");
    assert!(why.contains("0 replica(s)"), "{why}");
}

#[tokio::test]
async fn edges_and_workers_follow_a_sentinel_failover_and_every_queued_buy_becomes_an_order() {
    let (mut servers, primary, _, url) = sentinel_set().await;
    // sentinels need a moment to find the replica before they can fail over to it
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settings = Settings {
        redis_url: url,
        ..test_settings()
    };
    let app = spawn_with(settings, true).await;
    assert_eq!(
        app.state.confirm.as_ref().map(|c| c.replicas),
        Some(1),
        "1 by default on Sentinel"
    );
    let stock = 40;
    let goods = app.sale(stock).await;
    let users = app.users(80).await;

    // half buy, then the primary dies, then the rest buy (retrying as the page does)
    let (mut queued, mut confirming, mut sold_out) = (Vec::new(), Vec::new(), false);
    for (n, user) in users.iter().enumerate() {
        if n == 20 {
            servers.signal(primary, libc::SIGKILL);
        }
        if n == 30 {
            // as an operator would: the dead node comes back, and rejoins as a replica
            servers.restart(primary);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last;
        loop {
            let (s, body) = app
                .get(&format!("/api/seckill/path?goodsId={goods}"), &user.token)
                .await;
            last = format!("path: {s} {body}");
            if s == 410 {
                sold_out = true;
                break;
            }
            if s == 200 {
                let path = body["data"].as_str().unwrap().to_string();
                let (s, body) = app.buy(&user.token, &path, goods).await;
                last = format!("buy: {s} {body}");
                match (s, body["code"].as_i64()) {
                    (202, Some(0)) => {
                        queued.push(user);
                        break;
                    }
                    (410, _) => {
                        sold_out = true;
                        break;
                    }
                    (202, _) => {
                        confirming.push(user); // being confirmed: not a plain yes
                        break;
                    }
                    (409, _) => break, // a retry of a buy that was admitted: duplicate
                    _ => {}
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sale never came back; last answer {last}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(
        app.state.redis_target.failovers() >= 1,
        "the edge saw no failover"
    );
    for user in &queued {
        let r = settled(&app, &user.token, goods, Duration::from_secs(20)).await;
        assert!(r > 0, "a shopper told queued has no order: {r}");
    }
    // those told "being confirmed" are settled either way once a replica is back (the old
    // primary rejoins as one: Sentinel waits a few seconds before converting it)
    for user in &confirming {
        let r = settled(&app, &user.token, goods, Duration::from_secs(40)).await;
        assert_ne!(
            r, 0,
            "a shopper told 'being confirmed' never learnt the outcome"
        );
    }
    app.drained(goods, Duration::from_secs(30)).await;
    let orders = app.orders(goods).await;
    assert!(
        orders as usize >= queued.len() && orders <= i64::from(stock),
        "orders {orders}, queued {}, stock {stock}",
        queued.len()
    );
    assert!(sold_out, "the sale sold out after the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_script_version_is_still_the_one_used_after_a_sentinel_failover() {
    let (servers, primary, replica, url) = sentinel_set().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settings = Settings {
        redis_url: url,
        ..test_settings()
    };
    let app = spawn_with(settings, true).await;
    let goods = app.sale(10).await;
    let users = app.users(2).await;
    let v = crate::lua_release::release(&app, &crate::lua_release::good_tuned(), "ha", None).await;
    crate::lua_release::on_every_edge(&[&app.state], v, None).await;
    let lib = app.state.keys.lua_library(v);
    // the replica holds the library by replication, before any failover
    let on = |port: u16| {
        let lib = lib.clone();
        async move {
            let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut con = c.get_multiplexed_async_connection().await.unwrap();
            let listed: redis::Value = redis::cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg(&lib)
                .query_async(&mut con)
                .await
                .unwrap();
            format!("{listed:?}").contains(&lib)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !on(replica).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never got {lib}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    servers.signal(primary, libc::SIGKILL);
    // buys go on once the replica is promoted, decided by the released version
    let released = app.state.scripts.get();
    let calls = || {
        released
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = calls();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let user = &users[0];
    loop {
        let (s, body) = app
            .get(&format!("/api/seckill/path?goodsId={goods}"), &user.token)
            .await;
        if s == 200 {
            let path = body["data"].as_str().unwrap().to_string();
            let (s, _) = app.buy(&user.token, &path, goods).await;
            if s == 202 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no buy after the failover: {s} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(app.state.redis_target.failovers() >= 1, "no failover seen");
    assert_eq!(
        app.state.redis_target.primary().as_deref(),
        Some(format!("127.0.0.1:{replica}").as_str())
    );
    assert!(on(replica).await, "the new primary holds the release");
    assert_eq!(app.state.scripts.get().version, v);
    assert!(
        calls() > before,
        "the buy after the failover ran the release"
    );
}
