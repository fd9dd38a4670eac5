//! Demo data for a laptop and for load tests: sales, test users, and their sessions; and a real
//! user, for a shop that has no sign-up of its own.
//!
//! Test users are made cheaply: an Argon2id hash costs tens of milliseconds, so 450,000 of them
//! hashed one by one would take hours. Every test user has the same, published demo password, so
//! one hash of it, shared by all of their rows, gives away nothing that is not already known;
//! the rows are marked `test_user = 1`, never rewritten at login, and removed together with
//! `DELETE FROM users WHERE test_user = 1`. A real user's row ([`create_user`]) is hashed on its
//! own, with its own salt.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use sqlx::MySqlPool;

use crate::accounts::password;
use crate::accounts::session::SessionUser;
use crate::domain::{GoodsId, UserId};
use crate::plumbing::keys::{self, Keys};
use crate::sales::manage::{SaleSpec, TIME_RANGE};

/// What a new sale looks like.
#[derive(Debug, Clone)]
pub struct NewSale {
    pub name: String,
    pub price: f64,
    pub seckill_price: f64,
    pub stock: i32,
    pub starts_in_secs: i64,
    pub lasts_secs: i64,
    /// How many stock shards the sale is split into (1: not split; see `domain::Shard`).
    pub shards: u16,
    /// The shop's product reference (`externalRef`), if any.
    pub external_ref: Option<String>,
    /// The most units one buy may take (`perBuy`).
    pub per_buy: i64,
    /// The most units one account may hold in the sale (`perAccount`).
    pub per_account: i64,
    /// The campaign the sale is in (`campaign`), and the campaign's limit per account
    /// (`campaignPerAccount`): both or neither.
    pub campaign: Option<String>,
    pub campaign_per_account: Option<i64>,
}

impl NewSale {
    pub fn new(stock: i32, starts_in_secs: i64, lasts_secs: i64) -> Self {
        Self {
            name: "iPhone 15 Pro".into(),
            price: 7999.0,
            seckill_price: 1.0,
            stock,
            starts_in_secs,
            lasts_secs,
            shards: 1,
            external_ref: None,
            per_buy: 1,
            per_account: 1,
            campaign: None,
            campaign_per_account: None,
        }
    }
}

/// Inserts the goods and its sale; returns the goods id.
pub async fn create_sale(db: &MySqlPool, sale: &NewSale) -> anyhow::Result<GoodsId> {
    anyhow::ensure!(sale.stock >= 0, "stock must be >= 0");
    anyhow::ensure!(sale.lasts_secs > 0, "a sale must last > 0 seconds");
    anyhow::ensure!(
        (1..=crate::domain::MAX_SHARDS).contains(&sale.shards),
        "shards must be 1 to {}",
        crate::domain::MAX_SHARDS
    );
    let start_at = chrono::Utc::now().timestamp_millis() + sale.starts_in_secs * 1000;
    let end_at = start_at + sale.lasts_secs * 1000;
    anyhow::ensure!(
        TIME_RANGE.contains(&start_at) && TIME_RANGE.contains(&end_at),
        "the sale must start and end between 2000 and 2100"
    );
    let spec = SaleSpec {
        name: sale.name.clone(),
        title: format!("{}: flash sale, {} units", sale.name, sale.stock),
        detail: "A demo item for flashgate. One per shopper.".into(),
        image_url: "/img/goods.svg".into(),
        price: sale.price,
        sale_price: sale.seckill_price,
        stock: i64::from(sale.stock),
        start_at,
        end_at,
        shards: i64::from(sale.shards),
        user_rate: None,
        user_burst: None,
        gate_rate: None,
        gate_burst: None,
        path_factor: None,
        room_opens_before: None,
        room_rate: None,
        external_ref: sale.external_ref.clone(),
        mode: Default::default(),
        register_from: None,
        register_until: None,
        claim_for: None,
        per_buy: sale.per_buy,
        per_account: sale.per_account,
        campaign: sale.campaign.clone(),
        campaign_per_account: sale.campaign_per_account,
    };
    // the sale's rules are held to sale management's (the rest is laxer here, see `insert`)
    use crate::error::SaleRule as R;
    let refuse = |rule: R| anyhow::anyhow!("{} (code {})", rule.message(), 500_700 + rule as i64);
    if let Err(
        rule @ (R::PerBuy
        | R::PerAccount
        | R::PerBuySplit
        | R::Campaign
        | R::CampaignPerAccount
        | R::CampaignSplit),
    ) = spec.check(start_at)
    {
        return Err(refuse(rule));
    }
    let mut tx = crate::plumbing::db::begin(db).await?;
    match crate::sales::manage::join_campaign(&mut tx, &spec).await {
        Err(crate::error::AppError::Invalid(rule)) => return Err(refuse(rule)),
        other => other?,
    }
    let id = crate::sales::manage::insert(&mut tx, &spec).await?;
    tx.commit().await?;
    Ok(GoodsId::new(id)?)
}

/// The plain password every generated user gets.
pub const TEST_PASSWORD: &str = "123456";

/// A generated user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: UserId,
    pub mobile: String,
    pub token: String,
}

#[derive(Serialize)]
struct UserRow {
    m: String,
    n: String,
}

/// Creates `count` test users (password [`TEST_PASSWORD`], one shared hash of it made with
/// `cost`) and a session for each in Redis.
pub async fn create_users<C: redis::aio::ConnectionLike + Clone + Send>(
    db: &MySqlPool,
    redis: &mut C,
    keys: &Keys,
    count: usize,
    cost: password::Cost,
) -> anyhow::Result<Vec<TestUser>> {
    let client_hash = password::client_hash(TEST_PASSWORD);
    let shared = tokio::task::spawn_blocking(move || password::hash(&client_hash, cost)).await??;
    // Mobiles 17xxxxxxxxx, numbered past the highest id so repeated runs do not collide.
    let first: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM users")
        .fetch_one(db)
        .await?;
    let mut users = Vec::with_capacity(count);
    for chunk_start in (0..count).step_by(1000) {
        let rows: Vec<UserRow> = (chunk_start..count.min(chunk_start + 1000))
            .map(|i| UserRow {
                m: format!("17{:09}", first + 1 + i as i64),
                n: format!("shopper{}", first + 1 + i as i64),
            })
            .collect();
        let json = serde_json::to_string(&rows)?;
        sqlx::query(
            "INSERT INTO users (mobile, nickname, password, salt, test_user) \
             SELECT j.m, j.n, ?, '', 1 FROM JSON_TABLE(?, '$[*]' \
             COLUMNS(m VARCHAR(20) PATH '$.m', n VARCHAR(64) PATH '$.n')) j",
        )
        .bind(&shared)
        .bind(&json)
        .execute(db)
        .await
        .context("inserting users")?;
        let mobiles: Vec<&str> = rows.iter().map(|r| r.m.as_str()).collect();
        let created: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT u.id, u.mobile, u.nickname FROM users u JOIN JSON_TABLE(?, '$[*]' \
             COLUMNS(m VARCHAR(20) PATH '$')) j ON u.mobile = j.m ORDER BY u.id",
        )
        .bind(serde_json::to_string(&mobiles)?)
        .fetch_all(db)
        .await?;
        // one SET per session, sent concurrently: sessions hash to every slot of a cluster, so
        // they cannot share one pipeline; the multiplexed connection batches them on the wire
        let mut writes = Vec::with_capacity(created.len());
        for (id, mobile, nickname) in created {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let user = SessionUser {
                id: UserId::new(id)?,
                mobile: mobile.clone(),
                nickname,
                subject: None,
            };
            let mut con = redis.clone();
            let (key, json) = (keys.session(&token), serde_json::to_string(&user)?);
            writes.push(async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(json)
                    .arg("EX")
                    .arg(keys::SESSION_TTL.as_secs())
                    .query_async::<()>(&mut con)
                    .await
            });
            users.push(TestUser {
                id: user.id,
                mobile,
                token,
            });
        }
        for written in futures_util::future::join_all(writes).await {
            written?;
        }
    }
    Ok(users)
}

/// Refuses a new user's nickname or password before anything is written or connected to.
pub fn check_new_user(nickname: &str, plain: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=64).contains(&nickname.chars().count()),
        "a nickname has 1 to 64 characters"
    );
    anyhow::ensure!(
        (6..=1024).contains(&plain.chars().count()),
        "a password has 6 to 1024 characters"
    );
    Ok(())
}

/// Creates a real user: `plain` hashed on its own (Argon2id, a salt of its own, `cost`), not
/// marked as a test user. Returns the new id.
pub async fn create_user(
    db: &MySqlPool,
    mobile: &crate::domain::Mobile,
    nickname: &str,
    plain: &str,
    cost: password::Cost,
) -> anyhow::Result<UserId> {
    check_new_user(nickname, plain)?;
    let client_hash = password::client_hash(plain);
    let stored = tokio::task::spawn_blocking(move || password::hash(&client_hash, cost)).await??;
    let id = sqlx::query(
        "INSERT INTO users (mobile, nickname, password, salt, test_user) VALUES (?, ?, ?, '', 0)",
    )
    .bind(mobile.as_str())
    .bind(nickname)
    .bind(&stored)
    .execute(db)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            anyhow::anyhow!("a user with mobile {} already exists", mobile.as_str())
        }
        e => anyhow::Error::from(e).context("inserting the user"),
    })?
    .last_insert_id();
    Ok(UserId::new(id as i64)?)
}

/// Writes the `userId,token` CSV load tools read.
pub fn write_tokens(path: &std::path::Path, users: &[TestUser]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(out, "userId,token")?;
    for u in users {
        writeln!(out, "{},{}", u.id, u.token)?;
    }
    out.flush()?;
    Ok(())
}
