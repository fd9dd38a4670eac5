//! The `flashgate` command line: one binary, one subcommand per process role or chore; the demo
//! data `flashgate seed` and `flashgate users` write is in [`seed`].

pub mod seed;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::domain::GoodsId;
use crate::plumbing::config::Settings;
use crate::plumbing::db;
use crate::sales::store::{self, Window};
use crate::startup::{self, Application};
use crate::worker;
use seed::NewSale;

#[derive(Parser)]
#[command(name = "flashgate", version, about = "A flash-sale admission edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP edge.
    Serve,
    /// Run the order worker (stream -> MySQL, results back to Redis).
    Worker,
    /// Run the edge and the worker in one process (the default for a laptop).
    All,
    /// Create the database if needed and apply the migrations.
    Migrate,
    /// Create a sale and load it into Redis; prints its goods id alone on the last line.
    Seed {
        #[arg(long, default_value_t = 100)]
        stock: i32,
        #[arg(long, default_value_t = 10)]
        starts_in: i64,
        #[arg(long, default_value_t = 3600)]
        lasts: i64,
        #[arg(long, default_value = "iPhone 15 Pro")]
        name: String,
        /// Split the stock into this many shards (a hot item on a Redis Cluster; 1 = not split).
        /// (`--buckets` is the old name, still accepted.)
        #[arg(long, alias = "buckets", default_value_t = 1)]
        shards: u16,
        /// The most units one buy may take (1 to 1000, at most --per-account; 1 on a split sale).
        #[arg(long, default_value_t = 1)]
        per_buy: i64,
        /// The most units one account may hold in the sale, over all its buys.
        #[arg(long, default_value_t = 1)]
        per_account: i64,
        /// Put the sale in this campaign (1 to 32 of a-z 0-9 - _ .): its sales share
        /// --campaign-per-account (needs it; one shard only).
        #[arg(long)]
        campaign: Option<String>,
        /// The most units one account may hold across the campaign's sales (at least
        /// --per-account; the same for every sale of the campaign).
        #[arg(long)]
        campaign_per_account: Option<i64>,
    },
    /// Create test users and their sessions; write a `userId,token` CSV for load tools. Prints
    /// the first new user's mobile (their password is the demo one, 123456) as its last line.
    Users {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value = "tokens.csv")]
        out: PathBuf,
    },
    /// Create a real user (not a test user): the password is read from the first line of standard
    /// input and hashed on its own with Argon2id. Prints the new user's id.
    User {
        #[arg(long)]
        mobile: String,
        #[arg(long)]
        nickname: String,
    },
    /// Manage sales: the admin API's sale operations, for scripts and CI (JSON in and out).
    Sale {
        #[command(subcommand)]
        op: SaleOp,
    },
    /// Audit one sale or all at rest: Redis against MySQL, unit by unit; exits 1 on a finding.
    Audit {
        /// The sale (when left out: every sale not settled, see `--all`).
        goods_id: Option<String>,
        /// With no sale named: every sale, settled ones too (one at a time, each read in chunks).
        #[arg(long)]
        all: bool,
        /// Mend Redis from MySQL where that is safe (the sale at rest), and say what changed.
        #[arg(long)]
        fix: bool,
        /// Print the full reports as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Check, release, canary, promote and roll back the Lua scripts.
    Lua {
        #[command(subcommand)]
        op: LuaOp,
    },
    /// Orders out: the sinks' state, replaying events, enabling an endpoint a 410 disabled.
    Events {
        #[command(subcommand)]
        op: EventsOp,
    },
    /// Draw sales (docs/draws.md): draw one now, or check a draw from what was published.
    Draw {
        #[command(subcommand)]
        op: DrawOp,
    },
    /// Make a new Ed25519 grant key (`FLASHGATE_GRANT_KEY`): prints the seed to set, its public
    /// key (for `FLASHGATE_GRANT_RETIRED_KEYS` once it is rotated out) and its `kid`.
    GrantKey,
    /// Restore a sale for a repeat run (orders deleted, stock back, Redis reloaded).
    Reset {
        goods_id: String,
        /// Also give it a new window: starts this many seconds from now…
        #[arg(long, requires = "lasts")]
        starts_in: Option<i64>,
        /// …and lasts this long.
        #[arg(long, requires = "starts_in")]
        lasts: Option<i64>,
    },
}

/// `flashgate draw …`: draw sales (docs/draws.md).
#[derive(Subcommand)]
enum DrawOp {
    /// Draw a sale now (the worker does it by itself at `registerUntil`): refused before its
    /// registration closes, and for a sale drawn already. Prints the draw's figures (JSON).
    Run { goods_id: String },
    /// Recompute a drawn sale's winners from its publication (the seed against the commitment,
    /// the order from the seed and the entries) and say whether they match; exits 1 if not.
    /// The publication is read from `--file` (as `GET /api/draws/{goodsId}/published` gave it)
    /// or built from the stores.
    Verify {
        goods_id: String,
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// `flashgate events …`: orders out (docs/events.md, the runbook's "Orders out").
#[derive(Subcommand)]
enum EventsOp {
    /// Each sink: its backlog and the age of its oldest event, failing and parked events, and
    /// whether it is disabled (JSON). Exits 1 if a sink is disabled or has parked events.
    Status,
    /// Send events again, with the ids they had (receivers deduplicate): one order's, those
    /// written since a time, or the parked ones; on every sink or `--sink`.
    Replay {
        #[arg(long, conflicts_with_all = ["since", "parked"])]
        order: Option<i64>,
        /// RFC 3339 (`2026-12-06T10:00:00Z`) or epoch milliseconds.
        #[arg(long, conflicts_with = "parked")]
        since: Option<String>,
        #[arg(long)]
        parked: bool,
        #[arg(long)]
        sink: Option<String>,
    },
    /// Enable an endpoint that answered 410 Gone (its pending events go out again).
    Enable { sink: String },
    /// Declare a durable queue bound to the events exchange (`FLASHGATE_EVENTS_EXCHANGE`), with
    /// a routing key (`#`: every event): bind one before the sale, or events find no queue.
    Bind {
        queue: String,
        #[arg(long, default_value = "#")]
        key: String,
        /// Let the broker delete the queue once it has gone unused this long (drills, benches).
        #[arg(long)]
        expires_ms: Option<u32>,
    },
}

/// `flashgate lua …`: the SREs' tools for the Lua scripts (docs/lua.md).
#[derive(Subcommand)]
enum LuaOp {
    /// Run the contract suite against the scripts in DIR (the shipped ones without DIR) on a
    /// scratch namespace of the configured Redis; prints each case, exits 1 on a failure.
    Check { dir: Option<PathBuf> },
    /// Check DIR's complete set and, if every case passes, make it the version every edge runs
    /// (or, with --canary, the one deciding that share of admission calls).
    Release {
        dir: PathBuf,
        #[arg(long, default_value = "")]
        note: String,
        /// The share of admission calls the new version decides until `promote`, 1-99 (%).
        #[arg(long)]
        canary: Option<i64>,
    },
    /// Make the canary the live version on every edge.
    Promote,
    /// Return every edge to the previous live version (or to VERSION; 0 is the built-in set);
    /// with a canary out, withdraw it.
    Rollback { version: Option<u64> },
    /// Versions, which is live, the canary and its share, and what each running edge reports.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// `flashgate sale …`: each takes and prints what the admin API does.
#[derive(Subcommand)]
enum SaleOp {
    /// Create a sale; prints it as JSON. The body of `POST /api/admin/sales`, given as JSON text,
    /// `@file` or `-` (stdin); `--starts-in`/`--lasts` (seconds from now) may stand in for
    /// `startAt`/`endAt`.
    Create {
        #[arg(long)]
        json: String,
        #[arg(long, requires = "lasts")]
        starts_in: Option<i64>,
        #[arg(long, requires = "starts_in")]
        lasts: Option<i64>,
    },
    /// Every sale with its phase and live state (newest first).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One sale with its phase and live state.
    Show { goods_id: String },
    /// Change a sale: the body of `PATCH /api/admin/sales/{id}` (JSON text, `@file` or `-`).
    Update {
        goods_id: String,
        #[arg(long)]
        json: String,
    },
    /// Cancel a scheduled or live sale: admissions stop at once; admitted orders are kept.
    Cancel { goods_id: String },
}

/// `flashgate lua …`; answers false when the command should exit 1.
async fn lua_op(settings: Settings, op: LuaOp) -> anyhow::Result<bool> {
    use crate::admission::{script_check, script_release as rel, scripts};
    let target = crate::plumbing::redis_conn::Target::parse(&settings.redis_url)
        .context("parsing FLASHGATE_REDIS_URL")?;
    let mut con = target
        .connect(std::time::Duration::from_secs(10))
        .await
        .with_context(|| format!("connecting to Redis at {}", db::redact(&settings.redis_url)))?;
    let keys = crate::plumbing::keys::Keys::new(&settings.namespace)
        .on_db(redis::aio::ConnectionLike::get_db(&con));
    let files = |dir: Option<&std::path::Path>| -> anyhow::Result<scripts::Files> {
        Ok(match dir {
            Some(d) => scripts::files_from_dir(d)?,
            None => scripts::builtin_files(None)?,
        })
    };
    match op {
        LuaOp::Check { dir } => {
            let report = script_check::run(&mut con, &files(dir.as_deref())?).await?;
            print!("{}", report.text());
            Ok(report.passed())
        }
        LuaOp::Release { dir, note, canary } => {
            let set = files(Some(&dir))?;
            match rel::release(&mut con, &keys, set, &note, canary).await {
                Ok(r) => {
                    println!(
                        "released version {} (hash {}){}; every edge runs it within a second",
                        r.version,
                        &r.hash[..12],
                        r.canary
                            .map(|p| format!(" as a canary deciding {p}% of admission calls"))
                            .unwrap_or_default()
                    );
                    Ok(true)
                }
                Err(rel::ReleaseError::Failed(report)) => {
                    print!("{}", report.text());
                    eprintln!("refused: the set fails the contract suite; nothing was released");
                    Ok(false)
                }
                Err(e) => anyhow::bail!("refused: {e}; nothing was changed"),
            }
        }
        LuaOp::Promote => {
            let st = rel::promote(&mut con, &keys).await.map_err(refused_lua)?;
            println!("version {} is live on every edge", st.live);
            Ok(true)
        }
        LuaOp::Rollback { version } => {
            let st = rel::rollback(&mut con, &keys, version)
                .await
                .map_err(refused_lua)?;
            println!("version {} is live on every edge; no canary", st.live);
            Ok(true)
        }
        LuaOp::Status { json } => {
            let builtin =
                scripts::content_hash(&scripts::builtin_files(settings.lua_dir.as_deref())?);
            let st = rel::status(&mut con, &keys, &builtin).await?;
            if json {
                print_json(&st)?;
            } else {
                print!("{}", status_text(&st));
            }
            Ok(true)
        }
    }
}

fn refused_lua(e: crate::admission::script_release::ReleaseError) -> anyhow::Error {
    anyhow::anyhow!("refused: {e}; nothing was changed")
}

/// `flashgate lua status` as text.
fn status_text(st: &crate::admission::script_release::Status) -> String {
    let mut out = format!(
        "live: version {}{}\n",
        st.state.live,
        st.state
            .canary
            .map(|c| format!(
                "; canary: version {c} deciding {}% of admission calls",
                st.state.pct
            ))
            .unwrap_or_default()
    );
    out.push_str("version  hash          calls     queued  mean ms  p99 ms  note\n");
    for v in &st.versions {
        let mark = if v.live {
            "*"
        } else if v.canary {
            "c"
        } else {
            " "
        };
        out.push_str(&format!(
            "{mark}{:<7}  {:<12}  {:>8}  {:>8}  {:>7.2}  {:>6}  {}\n",
            v.version,
            &v.hash[..12.min(v.hash.len())],
            v.counts.calls,
            v.counts.outcomes.get("queued").copied().unwrap_or(0),
            v.mean_ms,
            v.p99_ms.map_or(">100".into(), |p| format!("{p}")),
            v.note
        ));
    }
    out.push_str("edges:\n");
    for e in &st.edges {
        out.push_str(&format!(
            "  {}  live {}{}  {}{}\n",
            e.report.edge,
            e.report.live,
            e.report
                .canary
                .map(|c| format!(" canary {c} ({}%)", e.report.pct))
                .unwrap_or_default(),
            if !e.up {
                "GONE"
            } else if e.current {
                "current"
            } else {
                "BEHIND"
            },
            e.report
                .error
                .as_ref()
                .map(|m| format!("  error: {m}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// JSON text, `@file`, or `-` for stdin.
fn json_arg<T: serde::de::DeserializeOwned>(arg: &str) -> anyhow::Result<T> {
    use anyhow::Context;
    let text = match arg {
        "-" => std::io::read_to_string(std::io::stdin())?,
        a if a.starts_with('@') => {
            std::fs::read_to_string(&a[1..]).with_context(|| format!("reading {}", &a[1..]))?
        }
        a => a.to_string(),
    };
    serde_json::from_str(&text).context("the JSON given")
}

/// An admin operation's refusal as the CLI says it: the API's code and message.
fn refused(e: crate::error::AppError) -> anyhow::Error {
    match e {
        crate::error::AppError::Internal(inner) => inner,
        e => anyhow::anyhow!("{} (code {})", e, e.code()),
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn sale_op(settings: Settings, op: SaleOp) -> anyhow::Result<()> {
    use crate::operators::live;
    use crate::sales::manage;
    let state = startup::connect(settings).await?;
    let goods = |id: &str| GoodsId::parse(id).map_err(refused);
    let goods = match op {
        SaleOp::Create {
            json,
            starts_in,
            lasts,
        } => {
            let mut body: serde_json::Value = json_arg(&json)?;
            if let (Some(s), Some(l), Some(obj)) = (starts_in, lasts, body.as_object_mut()) {
                let now = chrono::Utc::now().timestamp_millis();
                obj.insert("startAt".into(), (now + s * 1000).into());
                obj.insert("endAt".into(), (now + (s + l) * 1000).into());
            }
            let spec: manage::SaleSpec = serde_json::from_value(body)?;
            manage::create(&state.stores(), &spec)
                .await
                .map_err(refused)?
        }
        SaleOp::List { limit } => {
            return print_json(&live::list(&state.stores(), limit).await.map_err(refused)?);
        }
        SaleOp::Show { goods_id } => goods(&goods_id)?,
        SaleOp::Update { goods_id, json } => {
            let g = goods(&goods_id)?;
            let patch: manage::SalePatch = json_arg(&json)?;
            manage::update(&state.stores(), g, &patch)
                .await
                .map_err(refused)?;
            g
        }
        SaleOp::Cancel { goods_id } => {
            let g = goods(&goods_id)?;
            manage::cancel(&state.stores(), g).await.map_err(refused)?;
            g
        }
    };
    print_json(&live::view(&state.stores(), goods).await.map_err(refused)?)
}

/// `flashgate audit`: one line per sale and one per finding (or the JSON reports); true if
/// every sale audited is clean.
async fn audit(
    settings: Settings,
    goods_id: Option<String>,
    all: bool,
    fix: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let state = startup::connect(settings).await?;
    let ids = match goods_id {
        Some(id) => vec![GoodsId::parse(&id).map_err(refused)?],
        None => {
            let rows = match all {
                true => store::all(&state.db).await?,
                false => store::unsettled(&state.db).await?,
            };
            if !all {
                let settled = store::settled_count(&state.db).await?;
                if settled > 0 && !json {
                    println!(
                        "({settled} settled sales left out: over, drained and audited clean; \
                         `flashgate audit ID` or `--all` audits them)"
                    );
                }
            }
            rows.iter().map(|s| s.goods()).collect()
        }
    };
    let mut all_clean = true;
    for goods in ids {
        let report = match fix {
            true => crate::operators::audit::fix(&state.stores(), goods).await,
            false => crate::operators::audit::audit(&state.stores(), goods).await,
        }
        .map_err(refused)?;
        all_clean &= report.clean;
        if json {
            print_json(&report)?;
            continue;
        }
        let verdict = match (report.at_rest, report.clean) {
            (false, _) => "NOT AT REST (queue not drained; try again)",
            (true, true) => "clean",
            (true, false) => "DRIFT",
        };
        println!(
            "sale {goods}: {verdict}: initial {} = redis {} + in flight {} + orders {} - given back {} (drift {:+}); mysql stock {} (drift {:+}); buyers redis {} / mysql {} / in flight {}",
            report.initial_stock,
            report.redis_stock,
            report.in_flight,
            report.orders,
            report.units_returned,
            report.stock_drift,
            report.mysql_stock,
            report.mysql_stock_drift,
            report.redis_buyers,
            report.mysql_buyers,
            report.in_flight_buyers,
        );
        for f in &report.findings {
            println!(
                "  {}: {} [keys: {}] [rows: {}]",
                f.kind,
                f.message,
                f.keys.join(" "),
                f.rows.join("; ")
            );
        }
        for r in &report.repairs {
            println!("  fixed: {r}");
        }
    }
    Ok(all_clean)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FLASHGATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FLASHGATE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    if let Command::GrantKey = cli.command {
        // needs no settings and no services
        let seed = crate::identity::grant::new_key();
        let (public, kid) = crate::identity::grant::public_of(&seed)?;
        println!("FLASHGATE_GRANT_KEY={seed}");
        println!("public key: {public}");
        println!("kid: {kid}");
        return Ok(());
    }
    let settings = Settings::load()?;
    match cli.command {
        Command::GrantKey => unreachable!("answered above"),
        Command::Migrate => {
            db::migrate(&settings.database_url).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => {
            let state = startup::connect(settings).await?;
            startup::reload_scripts_on_hup(state.clone());
            let app = Application::build(state).await?;
            app.run(startup::shutdown_on_signals()).await;
        }
        Command::Worker => {
            let state = startup::connect(settings).await?;
            let shutdown = startup::shutdown_on_signals();
            let ops = startup::serve_worker_ops(&state, shutdown.clone()).await?;
            tokio::spawn(
                startup::watch_scripts(&state).run(state.redis_target.clone(), shutdown.clone()),
            );
            worker::run(state, shutdown).await?;
            if let Some(ops) = ops {
                let _ = ops.await;
            }
        }
        Command::All => {
            let state = startup::connect(settings).await?;
            startup::reload_scripts_on_hup(state.clone());
            let app = Application::build(state.clone()).await?;
            let shutdown = startup::shutdown_on_signals();
            let (_, worker) = tokio::join!(app.run(shutdown.clone()), worker::run(state, shutdown));
            worker?;
        }
        Command::Seed {
            stock,
            starts_in,
            lasts,
            name,
            shards,
            per_buy,
            per_account,
            campaign,
            campaign_per_account,
        } => {
            let mut new = NewSale::new(stock, starts_in, lasts);
            new.name = name;
            new.shards = shards;
            new.per_buy = per_buy;
            new.per_account = per_account;
            new.campaign = campaign;
            new.campaign_per_account = campaign_per_account;
            seed_sale(settings, &new).await?;
        }
        Command::Users { count, out } => {
            let state = startup::connect(settings).await?;
            let users = seed::create_users(
                &state.db,
                &mut state.redis.clone(),
                &state.keys,
                count,
                state.settings.password_cost(),
            )
            .await?;
            seed::write_tokens(&out, &users)?;
            tracing::info!(count = users.len(), out = %out.display(), "users and sessions created");
            if let Some(first) = users.first() {
                println!("{}", first.mobile);
            }
        }
        Command::User { mobile, nickname } => {
            let mobile = crate::domain::Mobile::parse(&mobile)
                .map_err(|_| anyhow::anyhow!("--mobile must be 11 digits starting with 1"))?;
            let mut plain = String::new();
            std::io::stdin()
                .read_line(&mut plain)
                .context("reading the password from standard input")?;
            let plain = plain.trim_end_matches(['\n', '\r']);
            seed::check_new_user(&nickname, plain)?;
            let cost = settings.password_cost();
            let db = db::connect(&settings.database_url, 2).await?;
            let id = seed::create_user(&db, &mobile, &nickname, plain, cost).await?;
            println!("{}", id.get());
        }
        Command::Sale { op } => sale_op(settings, op).await?,
        Command::Lua { op } => {
            if !lua_op(settings, op).await? {
                std::process::exit(1);
            }
        }
        Command::Audit {
            goods_id,
            all,
            fix,
            json,
        } => {
            if !audit(settings, goods_id, all, fix, json).await? {
                std::process::exit(1);
            }
        }
        Command::Draw { op } => {
            if !draw_op(settings, op).await? {
                std::process::exit(1);
            }
        }
        Command::Events { op } => {
            if !events_op(&settings, op).await? {
                std::process::exit(1);
            }
        }
        Command::Reset {
            goods_id,
            starts_in,
            lasts,
        } => {
            let goods = GoodsId::parse(&goods_id)?;
            let state = startup::connect(settings).await?;
            let window = starts_in.zip(lasts).map(|(s, l)| Window {
                starts_in_secs: s,
                lasts_secs: l,
            });
            store::reset(&state.stores(), goods, window).await?;
            println!("{}", goods.get());
        }
    }
    Ok(())
}

/// `flashgate seed`: creates the sale in MySQL, loads it into Redis, drops the cached list, and
/// prints its goods id alone on the last line (scripts read it from there).
async fn seed_sale(settings: Settings, new: &NewSale) -> anyhow::Result<()> {
    let state = startup::connect(settings).await?;
    let goods = seed::create_sale(&state.db, new).await?;
    let row = store::one(&state.db, goods).await?.expect("just created");
    store::load(
        &mut state.redis.clone(),
        &state.db,
        &state.keys,
        &state.settings,
        &row,
    )
    .await?;
    let _: () = redis::cmd("DEL")
        .arg(state.keys.goods_list())
        .query_async(&mut state.redis.clone())
        .await?;
    tracing::info!(goods = goods.get(), stock = new.stock, "sale created");
    println!("{}", goods.get());
    Ok(())
}

/// Runs one `flashgate draw` operation; false when a check failed (for the exit code).
async fn draw_op(settings: Settings, op: DrawOp) -> anyhow::Result<bool> {
    use crate::draws::{order::Publication, record};
    match op {
        DrawOp::Run { goods_id } => {
            let goods = GoodsId::parse(&goods_id)?;
            let state = startup::connect(settings).await?;
            let now = crate::plumbing::clock::now_ms();
            let drawn = record::draw(&state.db, &mut state.redis.clone(), &state.keys, goods, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e} (code {})", e.code()))?;
            println!("{}", serde_json::to_string(&drawn)?);
            Ok(true)
        }
        DrawOp::Verify { goods_id, file } => {
            let goods = GoodsId::parse(&goods_id)?;
            let published: Publication = match file {
                Some(f) => serde_json::from_slice(&std::fs::read(&f)?)?,
                None => {
                    let state = startup::connect(settings).await?;
                    let row = record::row(&state.db, goods)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("sale {goods_id} is not a draw"))?;
                    record::publication(&mut state.redis.clone(), &state.keys, &row)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                }
            };
            anyhow::ensure!(
                published.goods_id == goods.get(),
                "the publication is of sale {}, not {goods_id}",
                published.goods_id
            );
            match published.verify() {
                Ok(()) => {
                    println!(
                        "ok: the seed matches the commitment {}; the {} winners are the first {} \
                         of {} entries in the seed's order",
                        published.commitment,
                        published.winners.len(),
                        published.units,
                        published.entries.len()
                    );
                    Ok(true)
                }
                Err(why) => {
                    println!("MISMATCH: {why}");
                    Ok(false)
                }
            }
        }
    }
}

/// Runs one `flashgate events` operation; false when it found something wrong (for the exit
/// code).
async fn events_op(settings: &Settings, op: EventsOp) -> anyhow::Result<bool> {
    use crate::events::ops;
    if let EventsOp::Bind {
        queue,
        key,
        expires_ms,
    } = &op
    {
        anyhow::ensure!(
            !settings.events_exchange.is_empty(),
            "no events exchange to bind to: set FLASHGATE_EVENTS_EXCHANGE"
        );
        crate::events::relay::bind_queue(
            &settings.amqp_url,
            &settings.events_exchange,
            queue,
            key,
            *expires_ms,
        )
        .await?;
        println!("{queue} bound to {} with {key:?}", settings.events_exchange);
        return Ok(true);
    }
    let pool = db::connect(&settings.database_url, 2).await?;
    match op {
        EventsOp::Status => {
            let sinks = ops::status(&pool).await?;
            println!("{}", serde_json::to_string_pretty(&sinks)?);
            Ok(sinks.iter().all(|s| s.disabled.is_none() && s.parked == 0))
        }
        EventsOp::Replay {
            order,
            since,
            parked,
            sink,
        } => {
            let what = match (order, since, parked) {
                (Some(o), None, false) => ops::Replay::Order(o),
                (None, Some(t), false) => ops::Replay::Since(parse_time(&t)?),
                (None, None, true) => ops::Replay::Parked,
                _ => anyhow::bail!("say which events: --order ID, --since TIME or --parked"),
            };
            let n = ops::replay(&pool, &what, sink.as_deref()).await?;
            println!("{n} deliveries pending again");
            Ok(true)
        }
        EventsOp::Bind { .. } => unreachable!("bound above, without MySQL"),
        EventsOp::Enable { sink } => {
            if ops::enable(&pool, &sink).await? {
                println!("{sink} enabled");
                Ok(true)
            } else {
                eprintln!("no sink named {sink:?} (flashgate events status lists them)");
                Ok(false)
            }
        }
    }
}

/// A time given as RFC 3339 or epoch milliseconds, as MySQL's UTC `DATETIME`.
fn parse_time(s: &str) -> anyhow::Result<chrono::NaiveDateTime> {
    if let Ok(ms) = s.parse::<i64>() {
        return chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.naive_utc())
            .ok_or_else(|| anyhow::anyhow!("{s} is not a time"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc())
        .map_err(|e| anyhow::anyhow!("--since {s:?}: not RFC 3339 nor epoch ms ({e})"))
}
