//! Redis killed under load and started again: a redis-server of this test's own (AOF with
//! `appendfsync always`, as production should run it), `kill -9`ed while shoppers are buying and
//! the worker is draining, then restarted on the same port and directory. Every answer comes
//! within the time bound, nothing admitted is lost, and the sale sells out once Redis is back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::helpers::{concurrently, spawn_with, test_settings};

/// A redis-server on its own port and directory; killed and its directory removed on drop.
pub struct OwnRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("fg-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            port,
            dir,
            child: None,
        };
        r.spawn();
        r
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        // up when it answers PING (after loading the AOF)
        while Instant::now() < deadline {
            if let Ok(c) = redis::Client::open(self.url())
                && let Ok(mut con) = c.get_connection()
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on {} did not come up", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL: no shutdown, no final save
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_loses_nothing_and_the_sale_sells_out_after_restart() {
    let redis = Arc::new(Mutex::new(OwnRedis::start()));
    let mut settings = test_settings();
    settings.redis_url = redis.lock().await.url();
    settings.user_burst = 1000; // shoppers retry through the outage; the limit is not under test
    let app = Arc::new(spawn_with(settings, true).await);
    let goods = app.sale(300).await;
    let users = app.users(600).await;
    let paths = concurrently(users.clone(), 32, |u| {
        let app = app.clone();
        async move { app.path_for(&u.token, goods).await }
    })
    .await;

    // Every shopper presses "buy" until the answer is final (queued, duplicate, sold out),
    // retrying after a 503 the way the page does; each answer's time is recorded.
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let outage_503s = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shoppers: Vec<_> = users.iter().cloned().zip(paths).collect();
    let load = {
        let (app, slowest, outage_503s) = (app.clone(), slowest.clone(), outage_503s.clone());
        tokio::spawn(async move {
            concurrently(shoppers, 16, |(u, path)| {
                let (app, slowest, outage_503s) =
                    (app.clone(), slowest.clone(), outage_503s.clone());
                async move {
                    let give_up = Instant::now() + Duration::from_secs(60);
                    loop {
                        let started = Instant::now();
                        let (status, body) = app.buy(&u.token, &path, goods).await;
                        let took = started.elapsed();
                        {
                            let mut s = slowest.lock().unwrap();
                            *s = (*s).max(took);
                        }
                        match status {
                            202 | 409 | 410 => return (u, status),
                            503 => {
                                outage_503s.fetch_add(1, SeqCst);
                                assert!(Instant::now() < give_up, "never served again");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            _ => panic!("unexpected {status}: {body}"),
                        }
                    }
                }
            })
            .await
        })
    };

    // let some buys through, then kill Redis mid-load, keep it down, start it again
    let deadline = Instant::now() + Duration::from_secs(30);
    // (admitted buyers: the queue itself stays short while the worker drains it)
    while app.redis_state(goods).await.1 < 50 {
        assert!(Instant::now() < deadline, "no buys went through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.lock().await.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.lock().await.spawn();

    let answers = load.await.unwrap();
    assert!(
        outage_503s.load(SeqCst) > 0,
        "no request met the outage: the test did not test it"
    );
    let slowest = *slowest.lock().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "an answer took {slowest:?}"
    );
    let queued: HashMap<_, _> = answers
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(u, _)| (u.id, u.token.clone()))
        .collect();
    assert!(queued.len() <= 300);

    // drained: the sale sold out exactly, and everyone told "queued" has their order
    app.drained(goods, Duration::from_secs(30)).await;
    app.assert_invariants(goods, 300).await;
    assert_eq!(
        app.orders(goods).await,
        300,
        "units left unsold after the restart"
    );
    for token in queued.values() {
        assert!(
            app.result(token, goods).await > 0,
            "an admitted buy was lost"
        );
    }
}
