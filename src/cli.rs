//! The `flashgate` command line: one binary, one subcommand per process role or chore.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::domain::GoodsId;
use crate::sale::{self, Window};
use crate::seed::{self, NewSale};
use crate::startup::{self, Application};
use crate::{db, worker};

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
    },
    /// Create test users and their sessions; write a `userId,token` CSV for load tools.
    Users {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value = "tokens.csv")]
        out: PathBuf,
    },
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
    let settings = Settings::load()?;
    match cli.command {
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
        } => {
            let mut new = NewSale::new(stock, starts_in, lasts);
            new.name = name;
            new.shards = shards;
            seed_sale(settings, &new).await?;
        }
        Command::Users { count, out } => {
            let state = startup::connect(settings).await?;
            let users =
                seed::create_users(&state.db, &mut state.redis.clone(), &state.keys, count).await?;
            seed::write_tokens(&out, &users)?;
            tracing::info!(count = users.len(), out = %out.display(), "users and sessions created");
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
            sale::reset(&state, goods, window).await?;
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
    let row = sale::one(&state.db, goods).await?.expect("just created");
    sale::load(
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
