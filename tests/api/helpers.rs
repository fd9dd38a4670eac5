//! `spawn_app`: the real edge (and, if asked, the real worker) on a random port, against a fresh
//! MariaDB database named by a UUID and a fresh Redis namespace; dropped, it stops them and
//! removes the database, the keys and the RabbitMQ queue it made.

use std::sync::Arc;
use std::time::Duration;

use flashgate::cli::seed::{self, NewSale, TestUser};
use flashgate::domain::{GoodsId, UserId};
use flashgate::plumbing::config::Settings;
use flashgate::plumbing::db;
use flashgate::plumbing::redis_conn::{RedisConn, Target};
use flashgate::sales::store as sale;
use flashgate::startup::{self, Application};
use flashgate::state::AppState;
use flashgate::worker;
use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-9f2c4e7a1b3d5f6081a2b3c4d5e6f708";
/// The shop's server's token (`FLASHGATE_GRANT_REDEEM_TOKEN`): redeem, pay, close.
pub const SHOP_TOKEN: &str = "test-shop-server-3c1d9e8b7a6f5e4d3c2b1a0f9e8d";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// Settings for one test: its own database and namespace, captcha off, quick claims.
pub fn test_settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mysql = env_or("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306");
    Settings {
        listen: "127.0.0.1:0".into(),
        redis_url: env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379/"),
        database_url: format!("{mysql}/fg_test_{}", &id[..16]),
        amqp_url: env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
        namespace: format!("t{}:", &id[..12]),
        captcha: false,
        admin_token: ADMIN_TOKEN.into(),
        grant_redeem_token: SHOP_TOKEN.into(),
        currency: "CNY".into(),
        admin_listen: "127.0.0.1:0".into(),
        public_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/public").into(),
        claim_idle_ms: 1000,
        closer_interval_ms: 200,
        // the tests read the edge's counters on its public address (security.rs checks the
        // default, off)
        metrics_public: true,
        ..Settings::default()
    }
}

pub struct TestApp {
    pub address: String,
    /// The admin listener (`http://127.0.0.1:PORT`), when the admin API is on.
    pub admin_address: Option<String>,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: watch::Sender<bool>,
    edge: Option<JoinHandle<()>>,
    worker: Option<JoinHandle<anyhow::Result<()>>>,
    worker_shutdown: Option<watch::Sender<bool>>,
    /// Further edges and workers of the same sale data (see [`TestApp::add_edge`]).
    extra: Vec<JoinHandle<()>>,
}

/// The commands Redis receives that name a string (MONITOR on every node of the test's Redis:
/// one server, or each node of a `redis+cluster://` URL); those a script sends are left out.
pub struct Monitor {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Starts watching `redis_url` for commands naming `needle`; returns once MONITOR is on.
    pub async fn start(redis_url: &str, needle: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let nodes: Vec<String> = redis_url
            .trim_start_matches("redis+cluster://")
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .split(',')
            .map(|h| h.split('/').next().unwrap().to_string())
            .collect();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for node in nodes {
            let mut con = tokio::net::TcpStream::connect(&node).await.unwrap();
            con.write_all(b"MONITOR\r\n").await.unwrap();
            let mut reader = BufReader::new(con);
            let mut ok = String::new();
            reader.read_line(&mut ok).await.unwrap();
            assert!(ok.starts_with("+OK"), "MONITOR on {node}: {ok}");
            let (lines, needle) = (lines.clone(), needle.to_string());
            tasks.push(tokio::spawn(async move {
                let mut line = String::new();
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    if line.contains(&needle) && !line.contains(" lua]") {
                        lines.lock().unwrap().push(line.trim().to_string());
                    }
                    line.clear();
                }
            }));
        }
        Self { lines, tasks }
    }

    /// What was seen so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The edge only.
pub async fn spawn_app() -> TestApp {
    spawn_with(test_settings(), false).await
}

/// The edge and the worker.
pub async fn spawn_app_with_worker() -> TestApp {
    spawn_with(test_settings(), true).await
}

pub async fn spawn_with(settings: Settings, with_worker: bool) -> TestApp {
    let _ = tracing_subscriber_init();
    db::migrate(&settings.database_url).await.expect("migrate");
    let url = settings.database_url.clone();
    let state = match startup::connect(settings).await {
        Ok(state) => state,
        Err(e) => {
            // no TestApp will drop it: the database goes now
            let _ = db::drop_database(&url).await;
            panic!("connect: {e:#}");
        }
    };
    let app = Application::build(state.clone()).await.expect("build");
    let address = format!("http://127.0.0.1:{}", app.port());
    let admin_address = app.admin_port().map(|p| format!("http://127.0.0.1:{p}"));
    let (tx, rx) = watch::channel(false);
    let edge = tokio::spawn(app.run(rx));
    let mut test_app = TestApp {
        address,
        admin_address,
        state,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown: tx,
        edge: Some(edge),
        worker: None,
        worker_shutdown: None,
        extra: Vec::new(),
    };
    if with_worker {
        test_app.start_worker();
    }
    test_app
}

fn tracing_subscriber_init() -> Option<()> {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_LOG").unwrap())
            .with_test_writer()
            .try_init();
    }
    Some(())
}

impl TestApp {
    /// Starts a worker in this process (a second call starts a second one: stop the first).
    pub fn start_worker(&mut self) {
        let (tx, rx) = watch::channel(false);
        let state = self.state.clone();
        self.worker = Some(tokio::spawn(async move {
            let ended = worker::run(state, rx).await;
            if let Err(e) = &ended {
                eprintln!("the worker stopped with an error: {e:#}");
            }
            ended
        }));
        self.worker_shutdown = Some(tx);
    }

    /// Kills the worker abruptly (abort, not graceful): whatever it was doing stops mid-way.
    pub async fn kill_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.abort();
            let _ = w.await;
        }
        self.worker_shutdown = None;
    }

    /// Another edge process on the same Redis, MySQL and namespace: its own connections, its own
    /// sold-out flags. Returns its `127.0.0.1:PORT` and state; stopped with the app.
    pub async fn add_edge(&mut self) -> (String, AppState) {
        let state = startup::connect((*self.state.settings).clone())
            .await
            .expect("connect");
        let app = Application::build(state.clone()).await.expect("build");
        let addr = format!("127.0.0.1:{}", app.port());
        self.extra
            .push(tokio::spawn(app.run(self.shutdown.subscribe())));
        (addr, state)
    }

    /// Another worker process on the same data; stopped with the app.
    pub async fn add_worker(&mut self) {
        let state = startup::connect((*self.state.settings).clone())
            .await
            .expect("connect");
        let rx = self.shutdown.subscribe();
        self.extra.push(tokio::spawn(async move {
            let _ = worker::run(state, rx).await;
        }));
    }

    /// Runs the `flashgate` binary with `args` against this app's database, Redis and
    /// namespace; (exit code, standard output, standard error).
    pub fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let s = &self.state.settings;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .args(args)
            .env("FLASHGATE_DATABASE_URL", &s.database_url)
            .env("FLASHGATE_REDIS_URL", &s.redis_url)
            .env("FLASHGATE_NAMESPACE", &s.namespace)
            .env("FLASHGATE_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    pub fn redis(&self) -> RedisConn {
        self.state.redis.clone()
    }

    /// A sale of `stock` units, running now for an hour, loaded into Redis.
    pub async fn sale(&self, stock: i32) -> GoodsId {
        self.sale_window(stock, -1, 3600).await
    }

    pub async fn sale_window(&self, stock: i32, starts_in: i64, lasts: i64) -> GoodsId {
        self.create_sale(&NewSale::new(stock, starts_in, lasts))
            .await
    }

    /// Any sale, created in MySQL and loaded into Redis.
    pub async fn create_sale(&self, new: &NewSale) -> GoodsId {
        let goods = seed::create_sale(&self.state.db, new).await.unwrap();
        let row = sale::one(&self.state.db, goods).await.unwrap().unwrap();
        sale::load(
            &mut self.redis(),
            &self.state.db,
            &self.state.keys,
            &self.state.settings,
            &row,
        )
        .await
        .unwrap();
        goods
    }

    pub async fn users(&self, n: usize) -> Vec<TestUser> {
        seed::create_users(
            &self.state.db,
            &mut self.redis(),
            &self.state.keys,
            n,
            self.state.settings.password_cost(),
        )
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GET with a bearer token; (status, JSON body).
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.get_at(&self.address, path, token).await
    }

    /// GET with a bearer token from the edge at `base` (`http://127.0.0.1:PORT`, this app's or
    /// another's); (status, JSON body).
    pub async fn get_at(&self, base: &str, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET from the admin listener with no token (the ops routes: `/readyz` in full);
    /// (status, JSON body).
    pub async fn ops_get(&self, path: &str) -> (u16, Value) {
        let base = self.admin_address.as_deref().expect("the admin API is off");
        let r = self.http.get(format!("{base}{path}")).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON body with a bearer token to the admin listener; (status, JSON body).
    pub async fn admin_post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let base = self.admin_address.as_deref().expect("the admin API is off");
        let r = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Any method to the admin listener with the admin token, with a JSON body if given;
    /// (status, JSON body).
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let base = self.admin_address.as_deref().expect("the admin API is off");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN);
        req = match body {
            Some(b) => req.json(b),
            None => req.header("content-type", "application/json"),
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON body with a bearer token; (status, JSON body).
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.post_at(&self.address, path, token, body).await
    }

    /// POST a JSON body with a bearer token to the edge at `base`; (status, JSON body).
    pub async fn post_at(&self, base: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Fetches a hidden path (captcha off); panics if none is issued.
    pub async fn path_for(&self, token: &str, goods: GoodsId) -> String {
        let (status, body) = self
            .get(&format!("/api/seckill/path?goodsId={goods}"), token)
            .await;
        assert_eq!(status, 200, "path: {body}");
        body["data"].as_str().unwrap().to_string()
    }

    /// A hidden path issued by hand (as `lua/issue_path.lua` would, but whatever the sale's
    /// window): the user's key in the sale's first shard holds a sealed digest bound to the
    /// user's token; returns the path as the shopper holds it.
    pub async fn path_by_hand(&self, goods: GoodsId, user: &TestUser) -> String {
        let print = flashgate::domain::TokenPrint::of(&user.token);
        let digest = self.state.path_seal.seal(goods, user.id, print);
        let path = flashgate::domain::HiddenPath::issued(user.id, &digest).unwrap();
        let _: () = redis::AsyncCommands::set_ex(
            &mut self.redis(),
            self.state.keys.sale(goods).user(user.id),
            path.bound_to(print),
            60,
        )
        .await
        .unwrap();
        path.to_string()
    }

    /// One buy through HTTP.
    pub async fn buy(&self, token: &str, path: &str, goods: GoodsId) -> (u16, Value) {
        self.post(
            &format!("/api/seckill/{path}/orders"),
            token,
            &serde_json::json!({ "goodsId": goods.get() }),
        )
        .await
    }

    /// The result the page would poll.
    pub async fn result(&self, token: &str, goods: GoodsId) -> i64 {
        let (status, body) = self
            .get(&format!("/api/seckill/result?goodsId={goods}"), token)
            .await;
        assert_eq!(status, 200, "result: {body}");
        body["data"].as_i64().unwrap()
    }

    /// Puts entries in a sale's queue as admit.lua would: each entry holds the given shoppers (one:
    /// the form older edges wrote; several: one call's), with their buyer marks, the stock taken and
    /// the admitted count; returns the entry ids.
    pub async fn queue_by_hand(&self, goods: GoodsId, entries: &[&[i64]]) -> Vec<String> {
        let k = self.state.keys.sale(goods);
        let mut con = self.redis();
        let mut ids = Vec::new();
        for users in entries {
            let u: Vec<String> = users.iter().map(|i| i.to_string()).collect();
            let r: Vec<String> = users.iter().map(|i| format!("req-{i}")).collect();
            let n = users.len() as i64;
            let (id, _, _, _): (String, i64, i64, i64) = redis::pipe()
                .xadd(
                    k.queue(),
                    "*",
                    &[("u", u.join(",")), ("r", r.join(",")), ("t", "0".into())],
                )
                .sadd(k.buyers(), *users)
                .decr(k.stock(), n)
                .hincr(k.meta(), "admitted", n)
                .query_async(&mut con)
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    }

    /// Gives `user`'s unit of an unsplit sale back (`lua/restore.lua`, which publishes the
    /// restock message every edge hears); whether it came back.
    pub async fn give_back(&self, goods: GoodsId, user: UserId, why: sale::GiveBack) -> bool {
        sale::give_back(
            &mut self.redis(),
            &self.state.keys,
            &self.state.scripts,
            flashgate::domain::Shard::whole(goods),
            user,
            why,
            sale::Units::ONE,
        )
        .await
        .unwrap()
    }

    /// Stock, buyers and shoppers queued (not yet written) of a sale in Redis.
    pub async fn redis_state(&self, goods: GoodsId) -> (i64, i64, i64) {
        let k = self.state.keys.sale(goods);
        let (stock, buyers): (Option<i64>, i64) = redis::pipe()
            .get(k.stock())
            .scard(k.buyers())
            .query_async(&mut self.redis())
            .await
            .unwrap();
        (
            stock.unwrap_or(0),
            buyers,
            self.queued_shoppers(goods).await,
        )
    }

    /// The shoppers a sale's queue holds (an entry holds every shopper one admit.lua call
    /// admitted: its `u` lists them, comma-separated).
    pub async fn queued_shoppers(&self, goods: GoodsId) -> i64 {
        let entries: redis::streams::StreamRangeReply = self
            .redis()
            .xrange_all(self.state.keys.sale(goods).queue())
            .await
            .unwrap();
        entries
            .ids
            .iter()
            .map(|e| {
                e.get::<String>("u")
                    .map_or(0, |u| u.split(',').count() as i64)
            })
            .sum()
    }

    /// Live orders in MySQL for a sale.
    pub async fn orders(&self, goods: GoodsId) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM seckill_order WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_one(&self.state.db)
            .await
            .unwrap()
    }

    pub async fn mysql_stock(&self, goods: GoodsId) -> i64 {
        sqlx::query_scalar::<_, i32>("SELECT stock FROM seckill_goods WHERE goods_id = ?")
            .bind(goods.get())
            .fetch_one(&self.state.db)
            .await
            .unwrap() as i64
    }

    /// Waits until the queue of `goods` is drained (nothing pending, nothing unread).
    pub async fn drained(&self, goods: GoodsId, within: Duration) {
        let k = self.state.keys.sale(goods);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let len: i64 = self.redis().xlen(k.queue()).await.unwrap();
            if len == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queue of {goods} not drained: {len} entries left"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks invariants 1, 2 and 4 of docs/invariants.md once drained.
    pub async fn assert_invariants(&self, goods: GoodsId, initial: i64) {
        let orders = self.orders(goods).await;
        assert!(
            orders <= initial,
            "oversold: {orders} orders for {initial} units"
        );
        let dups: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT user_id FROM order_info WHERE goods_id = ? AND status <> 2 \
             GROUP BY user_id HAVING COUNT(*) > 1) d",
        )
        .bind(goods.get())
        .fetch_one(&self.state.db)
        .await
        .unwrap();
        assert_eq!(dups, 0, "a user has two live orders");
        let (stock, _, _) = self.redis_state(goods).await;
        assert_eq!(
            stock + orders,
            initial,
            "Redis stock {stock} + orders {orders} != {initial}"
        );
        assert_eq!(
            self.mysql_stock(goods).await + orders,
            initial,
            "MySQL stock + orders"
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(tx) = &self.worker_shutdown {
            let _ = tx.send(true);
        }
        if let Some(w) = &self.worker {
            w.abort();
        }
        if let Some(e) = &self.edge {
            e.abort();
        }
        for t in &self.extra {
            t.abort();
        }
        let settings = (*self.state.settings).clone();
        let pattern = self.state.keys.everything();
        let libraries = self.state.keys.lua_libraries();
        let queue = format!("{}flashgate.orders", self.state.keys.namespace());
        // Clean up on a thread of its own: Drop cannot await, and the test's runtime is ending.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(target) = Target::parse(&settings.redis_url)
                    && let Ok(mut con) = target.connect(Duration::from_secs(5)).await
                {
                    let _ = con.delete_matching(&pattern).await;
                    delete_libraries(&mut con, &libraries).await;
                }
                let _ = db::drop_database(&settings.database_url).await;
                if let Ok(conn) = lapin::Connection::connect(
                    &settings.amqp_url,
                    lapin::ConnectionProperties::default(),
                )
                .await
                    && let Ok(ch) = conn.create_channel().await
                {
                    let _ = ch
                        .queue_delete(queue.as_str().into(), Default::default())
                        .await;
                }
            });
        })
        .join()
        .ok();
    }
}

/// Deletes the Redis Functions libraries whose names start with `prefix` (a test's releases of
/// the Lua scripts).
pub async fn delete_libraries(con: &mut RedisConn, prefix: &str) {
    let listed: redis::RedisResult<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg(format!("{prefix}*"))
        .query_async(con)
        .await;
    let mut names = Vec::new();
    if let Ok(redis::Value::Array(libs)) = listed {
        for lib in libs {
            let fields = match lib {
                redis::Value::Array(f) => f,
                redis::Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => continue,
            };
            let mut it = fields.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let (Ok(k), Ok(v)) = (
                    redis::from_redis_value::<String>(k),
                    redis::from_redis_value::<String>(v),
                ) && k == "library_name"
                    && v.starts_with(prefix)
                {
                    names.push(v);
                }
            }
        }
    }
    for n in names {
        let _: redis::RedisResult<()> = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg(n)
            .query_async(con)
            .await;
    }
}

/// For the script tests (no app): a Redis connection (one server, or the test cluster when
/// TEST_REDIS_URL names one) and key names under a fresh namespace starting with `prefix`.
pub async fn script_redis(prefix: &str) -> (RedisConn, flashgate::plumbing::keys::Keys) {
    let url = env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379/");
    let con = Target::parse(&url)
        .unwrap()
        .connect(Duration::from_secs(5))
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    (
        con,
        flashgate::plumbing::keys::Keys::new(&format!("{prefix}{}:", &id[..12])),
    )
}

/// Runs `f` on every item with at most `limit` in flight; results in input order.
pub async fn concurrently<T, F, Fut, R>(items: Vec<T>, limit: usize, f: F) -> Vec<R>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items.into_iter().map(f))
        .buffered(limit)
        .collect()
        .await
}
