//! A draw sale's record and its life in Redis: the `sale_draw` row (MySQL is the source of the
//! windows, the seed and the secret), the entry, the draw itself, the waitlist's step, and what a
//! shopper and the public are shown.
//!
//! The draw: the first runner marks `drawn_at` in MySQL (a second draw is refused there), closes
//! registration in Redis (`state = closed`: `lua/draw_enter.lua` records nothing from then on),
//! reads the entries' log in 1 MiB ranges, orders them off the async threads
//! ([`super::order::order`]), writes the order in 1 MiB appends and sets `state = drawn`. Every
//! Redis call is short, so other sales on the same Redis are not held up. The winners are then
//! handed their claims by the waitlist's first step ([`step`]), like every later move.

use chrono::NaiveDateTime;
use redis::AsyncCommands;
use serde::Serialize;
use sqlx::MySqlPool;
use std::sync::LazyLock;

use super::order::{self, Keyed, Publication};
use crate::domain::{GoodsId, UserId};
use crate::error::{AppError, DrawFault};
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::RedisConn;

const CODES: &str = include_str!("../../lua/codes.lua");
static ENTER: LazyLock<redis::Script> =
    LazyLock::new(|| with_codes(include_str!("../../lua/draw_enter.lua")));
static MOVE: LazyLock<redis::Script> =
    LazyLock::new(|| with_codes(include_str!("../../lua/draw_move.lua")));

/// A script loaded on its own, outside the released set (the draw scripts here, the room's
/// `lua/pow_spend.lua`): `lua/codes.lua` in front of its text, as the released scripts have it.
pub fn with_codes(text: &str) -> redis::Script {
    redis::Script::new(&format!("{CODES}\n{text}"))
}

/// lua/codes.lua's codes the draw scripts answer with, and draw_enter.lua's own.
mod code {
    pub const OK: i64 = 0;
    pub const NOT_STARTED: i64 = 2;
    pub const ENDED: i64 = 3;
    pub const DUPLICATE: i64 = 5;
    pub const NO_SALE: i64 = 7;
    pub const REPLAYED: i64 = 40;
    pub const TOO_EASY: i64 = 41;
}

/// A claim window ends for the edge at its time, for the waitlist this much later: a buy in
/// flight at the deadline (its path issued before it) is admitted, not raced by the next entry.
pub const GRACE_MS: i64 = 2_000;
/// The most claims one waitlist step hands out (a big draw's winners take a few steps).
const STEP_LIMIT: i64 = 1_000;
/// The size of one read or write of the log and the order (a multiple of 16).
const CHUNK: usize = 1 << 20;

/// A draw sale as MySQL has it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DrawRow {
    pub goods_id: i64,
    pub register_from: NaiveDateTime,
    pub register_until: NaiveDateTime,
    pub claim_for_secs: i32,
    pub seed: Vec<u8>,
    pub commitment: String,
    pub secret: Vec<u8>,
    pub drawn_at: Option<NaiveDateTime>,
    pub entries: Option<i32>,
    pub initial_stock: i32,
    pub start_at: NaiveDateTime,
    pub end_at: NaiveDateTime,
    pub cancelled_at: Option<NaiveDateTime>,
}

fn ms(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

impl DrawRow {
    pub fn goods(&self) -> GoodsId {
        GoodsId::new(self.goods_id).expect("ids in MySQL are positive")
    }
    pub fn from_ms(&self) -> i64 {
        ms(self.register_from)
    }
    pub fn until_ms(&self) -> i64 {
        ms(self.register_until)
    }
    pub fn start_ms(&self) -> i64 {
        ms(self.start_at)
    }
    /// When buying ends: the end, or the cancellation if that came first.
    pub fn end_ms(&self) -> i64 {
        let end = ms(self.end_at);
        self.cancelled_at.map_or(end, |c| end.min(ms(c)))
    }
    pub fn secret(&self) -> Keyed {
        Keyed::new(&self.secret)
    }
    /// Drawn: the order is written whole (`entries` is set after it; `drawn_at` alone only
    /// says a runner claimed the draw). Places, the seed and the publication wait for this.
    pub fn drawn(&self) -> bool {
        self.drawn_at.is_some() && self.entries.is_some()
    }
    /// Where the draw stands at `now`: `scheduled`, `registering`, `drawing` (registration
    /// closed, not drawn yet), `claiming` (drawn, the sale running), `over`.
    pub fn phase(&self, now: i64) -> &'static str {
        match () {
            _ if now >= self.end_ms() => "over",
            _ if self.drawn() => "claiming",
            _ if now < self.from_ms() => "scheduled",
            _ if now < self.until_ms() => "registering",
            _ => "drawing",
        }
    }
}

macro_rules! select_draws {
    ($tail:literal) => {
        concat!(
            "SELECT d.goods_id, d.register_from, d.register_until, d.claim_for_secs, d.seed, \
     d.commitment, d.secret, d.drawn_at, d.entries, sg.initial_stock, sg.start_at, sg.end_at, \
     sg.cancelled_at FROM sale_draw d JOIN seckill_goods sg ON sg.goods_id = d.goods_id ",
            $tail
        )
    };
}

/// The draw of `goods`, if it is a draw sale.
pub async fn row(db: &MySqlPool, goods: GoodsId) -> Result<Option<DrawRow>, sqlx::Error> {
    sqlx::query_as(select_draws!("WHERE d.goods_id = ?"))
        .bind(goods.get())
        .fetch_optional(db)
        .await
}

/// The draws background work looks after: not drawn yet, or drawn with the sale still running.
pub async fn active(db: &MySqlPool) -> Result<Vec<DrawRow>, sqlx::Error> {
    sqlx::query_as(select_draws!(
        "WHERE d.drawn_at IS NULL OR sg.end_at > NOW(3) - INTERVAL 1 MINUTE"
    ))
    .fetch_all(db)
    .await
}

/// Writes a new draw sale's row in `tx`: its seed and secret drawn from the OS's CSPRNG, the
/// seed's commitment beside it. Neither is logged.
pub async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::MySql>,
    goods_id: i64,
    from: NaiveDateTime,
    until: NaiveDateTime,
    claim_for_secs: i64,
) -> Result<(), sqlx::Error> {
    let seed = order::fresh_secret();
    sqlx::query(
        "INSERT INTO sale_draw (goods_id, register_from, register_until, claim_for_secs, seed, \
         commitment, secret) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(goods_id)
    .bind(from)
    .bind(until)
    .bind(claim_for_secs)
    .bind(&seed[..])
    .bind(order::commitment(&seed))
    .bind(&order::fresh_secret()[..])
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the draw's windows into Redis; the state `open` only if it has none (a drawn sale
/// stays drawn).
pub async fn load(con: &mut RedisConn, keys: &Keys, row: &DrawRow) -> redis::RedisResult<()> {
    let k = keys.sale(row.goods());
    let _: () = redis::pipe()
        .hset_multiple(
            k.draw(),
            &[
                ("from_ms", row.from_ms()),
                ("until_ms", row.until_ms()),
                ("claim_ms", i64::from(row.claim_for_secs) * 1000),
            ],
        )
        .ignore()
        .hset_nx(k.draw(), "state", "open")
        .ignore()
        .query_async(con)
        .await?;
    Ok(())
}

/// [`load`] for `goods` if it is a draw sale (sale management calls it for every new sale).
pub async fn load_one(
    db: &MySqlPool,
    con: &mut RedisConn,
    keys: &Keys,
    goods: GoodsId,
) -> anyhow::Result<()> {
    if let Some(r) = row(db, goods).await? {
        load(con, keys, &r).await?;
    }
    Ok(())
}

/// An entry as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entered {
    /// The entry's number (1 for the first entry of the sale).
    pub number: i64,
    /// This account had entered before: the first entry is the answer.
    pub again: bool,
}

/// What an entry's proof must carry: the work it was issued with, and the rule of what an address
/// owes (`proof::difficulty`'s base and entries per doubling), checked by `lua/draw_enter.lua`
/// against the address's count in the call that records the entry.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub given: u64,
    pub base: u64,
    pub per_address: u64,
}

/// Records `user`'s entry (the proof's hash and signature checked by the caller; `challenge`
/// spends it, `work` is held to what the address owes).
#[allow(clippy::too_many_arguments)]
pub async fn enter(
    con: &mut RedisConn,
    keys: &Keys,
    goods: GoodsId,
    user: UserId,
    address: &str,
    challenge: &str,
    spent_ms: i64,
    work: Work,
) -> Result<Entered, AppError> {
    let k = keys.sale(goods);
    let (code, detail): (i64, i64) = ENTER
        .key(&k.draw_enter(challenge))
        .arg("")
        .arg(user.get())
        .arg(format!("{:016x}", user.get()))
        .arg(address)
        .arg(spent_ms.max(1))
        .arg(work.given)
        .arg(work.base)
        .arg(work.per_address)
        .invoke_async(con)
        .await?;
    match code {
        code::OK => Ok(Entered {
            number: detail,
            again: false,
        }),
        code::DUPLICATE => Ok(Entered {
            number: detail,
            again: true,
        }),
        code::NOT_STARTED => Err(AppError::Draw(DrawFault::NotOpen)),
        code::ENDED => Err(AppError::Draw(DrawFault::Closed)),
        code::NO_SALE => Err(AppError::Draw(DrawFault::NotADraw)),
        code::REPLAYED => Err(AppError::Draw(DrawFault::ProofReplayed)),
        code::TOO_EASY => Err(AppError::Draw(DrawFault::ProofTooEasy)),
        other => Err(AppError::Internal(anyhow::anyhow!(
            "draw_enter.lua answered {other}"
        ))),
    }
}

/// Until when `user` may claim a unit of `goods` (ms), if they hold a claim.
pub async fn claim_until(
    con: &mut RedisConn,
    keys: &Keys,
    goods: GoodsId,
    user: UserId,
) -> redis::RedisResult<Option<i64>> {
    let score: Option<f64> = con
        .zscore(keys.sale(goods).draw_claims(), user.get())
        .await?;
    Ok(score.map(|s| s as i64))
}

/// What a draw run did.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drawn {
    pub entries: usize,
    /// Wall time of the whole draw, ms.
    pub took_ms: u128,
    /// Of which ordering the entries (hashing and sorting), ms.
    pub order_ms: u128,
}

/// Gives a draw claimed more than a minute ago and never finished (its runner died) back to the
/// next runner. Returns whether it did.
pub async fn release_stale(db: &MySqlPool, goods: GoodsId) -> Result<bool, sqlx::Error> {
    let released = sqlx::query(
        "UPDATE sale_draw SET drawn_at = NULL WHERE goods_id = ? AND entries IS NULL \
         AND drawn_at < NOW(3) - INTERVAL 1 MINUTE",
    )
    .bind(goods.get())
    .execute(db)
    .await?
    .rows_affected();
    Ok(released > 0)
}

/// Draws `goods`: once, not before its registration closed (see the module comment).
pub async fn draw(
    db: &MySqlPool,
    con: &mut RedisConn,
    keys: &Keys,
    goods: GoodsId,
    now_ms: i64,
) -> Result<Drawn, AppError> {
    let row = row(db, goods)
        .await?
        .ok_or(AppError::Draw(DrawFault::NotADraw))?;
    if row.drawn_at.is_some() {
        return Err(AppError::Draw(DrawFault::AlreadyDrawn));
    }
    if now_ms < row.until_ms() {
        return Err(AppError::Draw(DrawFault::NotDrawn));
    }
    let claimed = sqlx::query(
        "UPDATE sale_draw SET drawn_at = NOW(3) WHERE goods_id = ? AND drawn_at IS NULL",
    )
    .bind(goods.get())
    .execute(db)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Err(AppError::Draw(DrawFault::AlreadyDrawn));
    }
    match run(con, keys, &row).await {
        Ok(drawn) => {
            sqlx::query("UPDATE sale_draw SET entries = ? WHERE goods_id = ?")
                .bind(drawn.entries as i64)
                .bind(goods.get())
                .execute(db)
                .await?;
            tracing::info!(
                goods = goods.get(),
                entries = drawn.entries,
                took_ms = drawn.took_ms as u64,
                "sale drawn"
            );
            Ok(drawn)
        }
        Err(e) => {
            // not drawn: the next runner tries again (the same seed and entries give the same
            // order, so a draw half written is written again whole)
            sqlx::query("UPDATE sale_draw SET drawn_at = NULL WHERE goods_id = ?")
                .bind(goods.get())
                .execute(db)
                .await?;
            Err(e)
        }
    }
}

/// The Redis half of [`draw`].
async fn run(con: &mut RedisConn, keys: &Keys, row: &DrawRow) -> Result<Drawn, AppError> {
    let began = std::time::Instant::now();
    let k = keys.sale(row.goods());
    load(con, keys, row).await?;
    let (state, total): (Option<String>, Option<usize>) = redis::cmd("HMGET")
        .arg(k.draw())
        .arg(&["state", "total"])
        .query_async(con)
        .await?;
    if let (Some("drawn"), Some(total)) = (state.as_deref(), total) {
        // drawn in Redis by a runner whose MySQL write was lost: the order (and the claims
        // handed out since) stand; rewriting it would send the waitlist back to its start
        return Ok(Drawn {
            entries: total,
            took_ms: began.elapsed().as_millis(),
            order_ms: 0,
        });
    }
    let _: () = con.hset(k.draw(), "state", "closed").await?;
    let users = read_ids(con, &k.draw_log()).await?;
    let (secret, seed, goods) = (row.secret(), row.seed.clone(), row.goods_id);
    let ordering = std::time::Instant::now();
    let (users, ranked) = tokio::task::spawn_blocking(move || {
        let digests = digests(&secret, goods, &users);
        let ranked = order::order(&seed, &digests);
        (users, ranked)
    })
    .await
    .map_err(|e| anyhow::anyhow!("ordering the entries: {e}"))?;
    let order_ms = ordering.elapsed().as_millis();
    let text = order::ids_text(ranked.iter().map(|&i| users[i as usize]));
    let _: () = con.del(k.draw_order()).await?;
    for chunk in text.chunks(CHUNK) {
        let _: () = con.append(k.draw_order(), chunk).await?;
    }
    let _: () = con
        .hset_multiple(
            k.draw(),
            &[
                ("state", "drawn".to_string()),
                ("next", "0".into()),
                ("total", ranked.len().to_string()),
            ],
        )
        .await?;
    Ok(Drawn {
        entries: ranked.len(),
        took_ms: began.elapsed().as_millis(),
        order_ms,
    })
}

/// Every entry's digest, on every core.
pub fn digests(secret: &Keyed, goods: i64, users: &[i64]) -> Vec<[u8; 32]> {
    let mut out = vec![[0u8; 32]; users.len()];
    order::on_every_core(users, &mut out, |u, d| {
        *d = order::entry_digest(secret, goods, *u)
    });
    out
}

/// The user ids of a log or order string (16 hex digits each), read in [`CHUNK`] ranges.
async fn read_ids(con: &mut RedisConn, key: &str) -> redis::RedisResult<Vec<i64>> {
    let len: usize = con.strlen(key).await?;
    let mut ids = Vec::with_capacity(len / 16);
    let mut at = 0;
    while at < len {
        let part: Vec<u8> = con
            .getrange(key, at as isize, (at + CHUNK - 1) as isize)
            .await?;
        for id in part.chunks_exact(16) {
            let text = std::str::from_utf8(id).unwrap_or("");
            ids.push(i64::from_str_radix(text, 16).unwrap_or(0));
        }
        at += CHUNK;
    }
    Ok(ids)
}

/// One waitlist step for a drawn sale (see `lua/draw_move.lua`); the entries given a claim are
/// recorded in MySQL's `sale_draw_claim` with their places (the order events' and the grant's
/// `draw`), then told on the results channel at once (`draw GOODS UNTIL UID,UID,…`), every edge
/// pushing to their streams. Returns how many were given a claim.
pub async fn step(
    db: &MySqlPool,
    con: &mut RedisConn,
    keys: &Keys,
    row: &DrawRow,
) -> redis::RedisResult<usize> {
    let mut given = 0;
    loop {
        let reply: Vec<i64> = MOVE
            .key(&keys.sale(row.goods()).draw_move())
            .arg("")
            .arg(row.start_ms())
            .arg(GRACE_MS)
            .arg(STEP_LIMIT)
            .invoke_async(con)
            .await?;
        let [code::OK, until, first, users @ ..] = &reply[..] else {
            return Ok(given);
        };
        if users.is_empty() {
            return Ok(given);
        }
        given += users.len();
        // the claim is given in Redis already: a failed write here costs the orders' `draw`
        // (the events and the grant leave it out), never the claim itself
        if let Err(e) = record_claims(db, row.goods_id, *until, *first, users).await {
            tracing::warn!(goods = row.goods_id, error = %e, "draw claims not recorded in MySQL");
        }
        let list: Vec<String> = users.iter().map(i64::to_string).collect();
        let _: () = con
            .publish(
                keys.results_channel(),
                format!("draw {} {until} {}", row.goods_id, list.join(",")),
            )
            .await?;
        tracing::info!(
            goods = row.goods_id,
            given = users.len(),
            "draw claims given"
        );
        if (users.len() as i64) < STEP_LIMIT {
            return Ok(given);
        }
    }
}

/// Records claims given until `until` (ms) to `users`, the first at `first` in the order.
async fn record_claims(
    db: &MySqlPool,
    goods: i64,
    until: i64,
    first: i64,
    users: &[i64],
) -> Result<(), sqlx::Error> {
    let until = chrono::DateTime::from_timestamp_millis(until)
        .unwrap_or_default()
        .naive_utc();
    // one statement whatever the number of users (they travel as one JSON array, as the
    // worker's orders do); their places follow on from `first`
    sqlx::query(
        "INSERT IGNORE INTO sale_draw_claim (goods_id, user_id, place, claim_until) \
         SELECT ?, j.u, ? + j.i - 1, ? FROM JSON_TABLE(?, '$[*]' COLUMNS(\
         i FOR ORDINALITY, u BIGINT PATH '$')) j",
    )
    .bind(goods)
    .bind(first)
    .bind(until)
    .bind(serde_json::to_string(users).expect("ids serialise"))
    .execute(db)
    .await?;
    Ok(())
}

/// A draw order's part of its grant and events (`data.draw`): the entry's published digest, its
/// place in the draw's order and until when its claim ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrawPart {
    pub digest: String,
    pub place: i64,
    pub claim_until: i64,
}

/// The claim `user` was given in `goods` (a draw sale), as its orders carry it; `None` for a
/// first-come sale or an entry never given a unit.
pub async fn claim_of(
    db: &MySqlPool,
    goods: GoodsId,
    user: UserId,
) -> Result<Option<DrawPart>, sqlx::Error> {
    let row: Option<(Vec<u8>, i32, NaiveDateTime)> = sqlx::query_as(
        "SELECT d.secret, c.place, c.claim_until FROM sale_draw_claim c \
         JOIN sale_draw d ON d.goods_id = c.goods_id WHERE c.goods_id = ? AND c.user_id = ?",
    )
    .bind(goods.get())
    .bind(user.get())
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(secret, place, until)| {
        part(&Keyed::new(&secret), goods.get(), user.get(), place, until)
    }))
}

/// The draw part of an order of `user` in `goods`, from the sale's secret and the claim's row.
pub fn part(
    secret: &Keyed,
    goods: i64,
    user: i64,
    place: i32,
    claim_until: NaiveDateTime,
) -> DrawPart {
    DrawPart {
        digest: hex::encode(order::entry_digest(secret, goods, user)),
        place: i64::from(place),
        claim_until: ms(claim_until),
    }
}

/// The publication of a drawn sale (every entry's digest, the winners: `order::Publication`).
pub async fn publication(
    con: &mut RedisConn,
    keys: &Keys,
    row: &DrawRow,
) -> Result<Publication, AppError> {
    if !row.drawn() {
        return Err(AppError::Draw(DrawFault::NotDrawn));
    }
    let k = keys.sale(row.goods());
    let ranked = read_ids(con, &k.draw_order()).await?;
    let (secret, seed, goods, units) = (
        row.secret(),
        row.seed.clone(),
        row.goods_id,
        i64::from(row.initial_stock),
    );
    let p = tokio::task::spawn_blocking(move || {
        let d = digests(&secret, goods, &ranked);
        let in_order: Vec<u32> = (0..d.len() as u32).collect();
        Publication::new(goods, units, &seed, &d, &in_order)
    })
    .await
    .map_err(|e| anyhow::anyhow!("publishing the draw: {e}"))?;
    Ok(p)
}

/// A draw as `GET /api/draws/{goodsId}` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub goods_id: i64,
    pub phase: &'static str,
    pub register_from: i64,
    pub register_until: i64,
    pub claim_for: i64,
    pub units: i64,
    pub entries: i64,
    pub commitment: String,
    /// After the draw only.
    pub seed: Option<String>,
    /// The shopper's own entry, when signed in and entered.
    pub you: Option<Yours>,
}

/// The shopper's own entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Yours {
    /// Entry number, in the order entries came.
    pub entry: i64,
    /// The digest published for this entry (hex).
    pub digest: String,
    /// Place in the draw's order (1 = first), after the draw.
    pub place: Option<i64>,
    /// `entered` (before the draw), `claiming`, `claimed`, `lapsed` (claim passed unused),
    /// `waitlist`.
    pub state: &'static str,
    /// Given a unit (now or earlier): claiming, claimed or lapsed.
    pub won: bool,
    /// Until when the unit may be bought (ms), while claiming.
    pub claim_until: Option<i64>,
}

/// The view of `row` for `user` (if signed in); `place` finds a user's place after the draw.
pub async fn view(
    con: &mut RedisConn,
    keys: &Keys,
    row: &DrawRow,
    user: Option<UserId>,
    now: i64,
    place: impl FnOnce(UserId) -> Option<i64>,
) -> Result<View, AppError> {
    let k = keys.sale(row.goods());
    let uid = user.map_or(0, UserId::get);
    let (entries, entry, claim, claimed, lapsed): (i64, Option<i64>, Option<f64>, bool, bool) =
        redis::pipe()
            .hlen(k.draw_entries())
            .hget(k.draw_entries(), uid)
            .zscore(k.draw_claims(), uid)
            .sismember(k.draw_claimed(), uid)
            .sismember(k.draw_lapsed(), uid)
            .query_async(con)
            .await?;
    let drawn = row.drawn();
    let you = match (user, entry) {
        (Some(u), Some(entry)) => {
            let state = match () {
                _ if !drawn => "entered",
                _ if claim.is_some() => "claiming",
                _ if claimed => "claimed",
                _ if lapsed => "lapsed",
                _ => "waitlist",
            };
            Some(Yours {
                entry,
                digest: hex::encode(order::entry_digest(&row.secret(), row.goods_id, u.get())),
                place: if drawn { place(u) } else { None },
                won: matches!(state, "claiming" | "claimed" | "lapsed"),
                claim_until: claim.map(|c| c as i64),
                state,
            })
        }
        _ => None,
    };
    Ok(View {
        goods_id: row.goods_id,
        phase: row.phase(now),
        register_from: row.from_ms(),
        register_until: row.until_ms(),
        claim_for: i64::from(row.claim_for_secs),
        units: i64::from(row.initial_stock),
        entries,
        commitment: row.commitment.clone(),
        seed: drawn.then(|| hex::encode(&row.seed)),
        you,
    })
}

/// Every user's place (1-based) in a drawn sale's order, read once per edge.
pub async fn places(
    con: &mut RedisConn,
    keys: &Keys,
    goods: GoodsId,
) -> redis::RedisResult<std::collections::HashMap<i64, i64>> {
    let ids = read_ids(con, &keys.sale(goods).draw_order()).await?;
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(i, u)| (u, i as i64 + 1))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .naive_utc()
    }

    fn row(drawn: bool, entries: bool) -> DrawRow {
        DrawRow {
            goods_id: 1,
            register_from: at(1_000_000),
            register_until: at(2_000_000),
            claim_for_secs: 60,
            seed: vec![0; 32],
            commitment: String::new(),
            secret: vec![1; 32],
            drawn_at: drawn.then(|| at(2_000_001)),
            entries: entries.then_some(10),
            initial_stock: 3,
            start_at: at(2_000_000),
            end_at: at(9_000_000),
            cancelled_at: None,
        }
    }

    #[test]
    fn a_draw_is_drawn_only_once_its_order_is_written_whole() {
        assert_eq!(row(false, false).phase(999_999), "scheduled");
        assert_eq!(row(false, false).phase(1_000_000), "registering");
        assert_eq!(row(false, false).phase(2_000_000), "drawing");
        // claimed by a runner, the order not written yet: still drawing, nothing shown
        assert!(!row(true, false).drawn());
        assert_eq!(row(true, false).phase(2_000_500), "drawing");
        assert!(row(true, true).drawn());
        assert_eq!(row(true, true).phase(2_000_500), "claiming");
        assert_eq!(row(true, true).phase(9_000_000), "over");
        let mut cancelled = row(false, false);
        cancelled.cancelled_at = Some(at(1_500_000));
        assert_eq!(cancelled.phase(1_500_000), "over");
    }
}
