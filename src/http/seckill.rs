//! The sale itself: the captcha, the hidden path, the buy, and the result the page polls.
//!
//! The buy (`POST /api/seckill/{path}/orders`) is the hot path, and costs one Redis round trip on
//! whichever edge it lands. In order: the path's shape (`USER-DIGEST`: the user rides in the
//! path), the token's shape and the body are checked without any I/O; the local sold-out flag
//! answers without Redis once a sale is gone; a token logged out lately is refused from the
//! edge's list of logouts (`accounts::logouts`; only while that list cannot be trusted is the
//! session read instead); a shopper this edge saw admitted with this path and token is answered
//! DUPLICATE from its buyer marks (`admission::soldout`); then `lua/admit.lua` decides
//! everything else in one `EVALSHA`, checking the path *bound to the token's fingerprint*
//! against what the path request stored, so the path and the token issued it are proved
//! together without a session read. Malformed input never reaches Redis.
//! A split sale (a hot item, [`crate::admission::split`]) runs the script in the shopper's home
//! shard, and only when that shard is empty moves units over from the others.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use redis::AsyncCommands;
use serde::Deserialize;

use super::RequestId;
use super::respond::{self, Resp};
use crate::admission::captcha::Captcha;
use crate::admission::coalesce::Shopper;
use crate::admission::scripts::{Admission, PathIssue};
use crate::admission::soldout::binding_hash;
use crate::domain::{BuyKey, BuyResult, GoodsId, HiddenPath, Quantity, Shard, TokenPrint, UserId};
use crate::error::AppError;
use crate::plumbing::keys;
use crate::state::AppState;

/// The buy's body: `{"goodsId": G, "quantity": Q}`, Q absent for 1 (read as a JSON value so a
/// string or a fraction is refused with its own code, `AppError::BadQuantity`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BuyBody {
    goods_id: GoodsId,
    #[serde(default = "absent")]
    quantity: serde_json::Value,
}

/// `quantity` left out: one unit (a `null` is not leaving it out, and is refused).
fn absent() -> serde_json::Value {
    serde_json::Value::from(1)
}

/// The `Idempotency-Key` header, if the buy carries one (`domain::BuyKey`).
fn buy_key(req: &Request<Incoming>) -> Result<Option<BuyKey>, AppError> {
    req.headers()
        .get("idempotency-key")
        .map(|v| BuyKey::parse(v.as_bytes()))
        .transpose()
}

pub async fn buy(req: Request<Incoming>, state: &AppState, hidden: &str) -> Result<Resp, AppError> {
    let path = HiddenPath::parse(hidden)?;
    let credential = respond::credential(&req, state);
    // the request's id travels into the stream entry (field `r`), so a buy can be followed
    // from the edge's response header to the queue and the worker's logs
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map_or_else(RequestId::new, Clone::clone);
    let key = buy_key(&req)?;
    let body: BuyBody = respond::json_body(req).await?;
    let (goods, quantity) = (body.goods_id, Quantity::from_json(Some(&body.quantity))?);
    if state.local.is_sold_out(goods) {
        state.metrics.admission("sold_out_local");
        state.tally.count(goods, "sold_out_local", 1);
        return Err(AppError::SoldOut);
    }
    let print = respond::buyer(&credential?, &path, state).await?;
    let user = path.user();
    // an invented path, or one sent with a token it was not issued to, never reaches Redis
    if !state.path_seal.opens(goods, user, print, path.digest()) {
        state.metrics.admission("bad_path");
        return Err(AppError::BadPath);
    }
    let binding = path.bound_to(print);
    let mark = binding_hash(&binding);
    // a buy with a key may be a second buy within the sale's perAccount: only Redis can tell
    if key.is_none() && state.local.is_buyer(goods, user, mark) {
        state.metrics.admission("duplicate_local");
        state.tally.count(goods, "duplicate_local", 1);
        return Err(AppError::Duplicate);
    }
    let epoch = state.local.epoch(goods);
    let shape = state.shape(goods).await?;
    // a draw sale: a buy needs a claim still held, not only the path it gave (a claim used and
    // its unit given back by a close is no longer held, while its path may still live: an
    // outside attack bought again with it, taking the unit the waitlist had moved on). One
    // ZSCORE, for draw sales only; the waitlist's grace covers a buy in flight at the deadline
    if shape.draw {
        let until =
            crate::draws::record::claim_until(&mut state.redis.clone(), &state.keys, goods, user)
                .await?;
        let now = crate::plumbing::clock::now_ms();
        if until.is_none_or(|u| u + crate::draws::record::GRACE_MS <= now) {
            return Err(AppError::Draw(crate::error::DrawFault::NoClaim));
        }
    }
    let shards = shape.shards;
    let home = Shard::home(goods, user, shards);

    let buy = BuyRequest {
        user,
        binding: &binding,
        rid: &rid,
        quantity,
        key: key.as_ref(),
    };
    let mut outcome = admit(state, home, &buy, false).await?;
    // A split sale: the home shard is empty, so move units over from the others (see `split`)
    // until one admits this shopper or every other shard is empty. A unit moved in and then
    // taken by another shopper of this shard is still sold; the same shard is asked again.
    let mut everywhere = true;
    if matches!(outcome, Admission::SoldOut) && shards > 1 {
        let (mut next, mut tries) = (1, 0);
        while next < shards && tries < 2 * shards {
            tries += 1;
            let from = Shard {
                goods,
                index: (home.index + next) % shards,
            };
            if !state.mover().move_unit(from, home).await? {
                next += 1;
                continue;
            }
            outcome = admit(state, home, &buy, true).await?;
            if !matches!(outcome, Admission::SoldOut) {
                break;
            }
        }
        everywhere = next >= shards;
    }
    state.metrics.admission(outcome.label());
    // counted per sale only for a sale that exists: an unknown goods id writes nothing
    if shape.loaded {
        state.tally.count(goods, outcome.label(), 1);
    }
    if matches!(
        outcome,
        Admission::Queued { .. } | Admission::Duplicate | Admission::Again
    ) {
        state.local.mark_buyer(goods, user, mark, epoch);
    }
    match outcome {
        // a retry of an admitted buy (same Idempotency-Key) gets the answer the buy got
        Admission::Queued { .. } | Admission::Again => {
            if matches!(outcome, Admission::Queued { .. }) {
                state
                    .metrics
                    .admitted_units
                    .inc_by(u64::from(quantity.get()));
            }
            Ok(respond::with_status(StatusCode::ACCEPTED, 0))
        }
        Admission::LimitReached { left, campaign } => {
            Err(AppError::LimitReached { left, campaign })
        }
        Admission::TooManyUnits { per_buy } => Err(AppError::TooManyUnits { per_buy }),
        Admission::NotEnough { left } => Err(AppError::NotEnough { left }),
        Admission::KeyReused { .. } => Err(AppError::IdempotencyKeyReused),
        Admission::BadPath => Err(AppError::BadPath),
        Admission::NotStarted { starts_in_ms } => Err(AppError::NotStarted { starts_in_ms }),
        Admission::Ended => Err(AppError::Ended),
        Admission::RateLimited { retry_after_ms } => {
            Err(AppError::TooManyRequests { retry_after_ms })
        }
        Admission::Duplicate => Err(AppError::Duplicate),
        Admission::SoldOut => {
            if everywhere {
                state.local.mark(goods, epoch);
            }
            Err(AppError::SoldOut)
        }
        Admission::NoSale => Err(AppError::NotFound),
        Admission::Unconfirmed => Err(AppError::Confirming),
    }
}

/// One buy as the script decides it.
struct BuyRequest<'a> {
    user: UserId,
    binding: &'a str,
    rid: &'a RequestId,
    quantity: Quantity,
    key: Option<&'a BuyKey>,
}

/// One decision of `lua/admit.lua` in the buyer's home shard (coalesced with other buys of that
/// shard, see [`crate::admission::coalesce`]); `again` when it runs a second time for the same request after
/// a unit was moved in (the rate limits were charged the first time).
async fn admit(
    state: &AppState,
    home: Shard,
    buy: &BuyRequest<'_>,
    again: bool,
) -> Result<Admission, AppError> {
    let shopper = Shopper {
        user: buy.user,
        binding: buy.binding.to_string(),
        request_id: buy.rid.as_str().to_string(),
        again,
        quantity: buy.quantity.get(),
        key: buy.key.map_or_else(String::new, |k| k.digest().to_string()),
    };
    state.admitter.admit(home, shopper).await
}

/// The room's join: `{"goodsId": G}`, with `proof` (the solved challenge of
/// `GET /api/seckill/room/challenge`) when `FLASHGATE_ROOM_POW` is on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoomJoin {
    goods_id: GoodsId,
    #[serde(default)]
    proof: String,
}

/// `POST /api/seckill/room` `{goodsId, proof}`: joins the sale's waiting room (a second join keeps
/// the first ticket) and says where the ticket stands (`crate::admission::room::View`). With
/// the room's proof of work on, only a join that makes a ticket pays one: any other is answered
/// as a look.
pub async fn room_join(req: Request<Incoming>, state: &AppState) -> Result<Resp, AppError> {
    use crate::admission::scripts::RoomAnswer;
    let credential = respond::credential(&req, state);
    let ip = respond::client_address(&req, state);
    let RoomJoin {
        goods_id: goods,
        proof,
    } = respond::json_body(req).await?;
    // a proof too long to be one is refused whether or not the room asks for one
    if proof.len() > crate::draws::proof::MAX_PROOF {
        return Err(AppError::Draw(crate::error::DrawFault::ProofMalformed));
    }
    let user = respond::user_of(&credential?, state).await?;
    let shape = state.shape(goods).await?;
    if state.settings.room_pow {
        let look = state.room.call(goods, shape, user.id, false).await?;
        match look {
            RoomAnswer::NoSale => return Err(AppError::NotFound),
            RoomAnswer::NoTicket => room_pow(state).spend(goods, ip, &proof).await?,
            other => return Ok(respond::ok(crate::admission::room::View::from(other))),
        }
    }
    let answer = state.room.call(goods, shape, user.id, true).await?;
    if answer == RoomAnswer::NoSale {
        return Err(AppError::NotFound);
    }
    Ok(respond::ok(crate::admission::room::View::from(answer)))
}

fn room_pow(state: &AppState) -> crate::admission::room::Pow<'_> {
    crate::admission::room::Pow {
        redis: &state.redis,
        keys: &state.keys,
        settings: &state.settings,
        seal: &state.path_seal,
    }
}

/// `GET /api/seckill/room/challenge?goodsId=`: a proof-of-work challenge for joining the sale's
/// room (ALTCHA form, bound to the sale and the asking address, valid 10 minutes).
pub async fn room_challenge<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    if !state.shape(goods).await?.room {
        return Err(AppError::NotFound);
    }
    let ip = respond::client_address(&req, state);
    let mut resp = respond::ok(room_pow(state).challenge(goods, ip).await?);
    resp.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// `GET /api/seckill/room?goodsId=`: where this shopper's ticket stands, and when to ask again.
pub async fn room_look<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    let user = respond::user(&req, state).await?;
    let shape = state.shape(goods).await?;
    let answer = state.room.call(goods, shape, user.id, false).await?;
    if answer == crate::admission::scripts::RoomAnswer::NoSale {
        return Err(AppError::NotFound);
    }
    Ok(respond::ok(crate::admission::room::View::from(answer)))
}

/// `GET /api/seckill/result?goodsId=`: the order id (> 0), 0 while queued, -1 if failed (or never
/// admitted).
pub async fn result<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    let user = respond::user(&req, state).await?;
    let shape = state.shape(goods).await?;
    let k = state.keys.shard(Shard::home(goods, user.id, shape.shards));
    let (result, queued, backlog): (Option<String>, bool, i64) = redis::pipe()
        .get(k.result(user.id))
        .sismember(k.buyers(), user.id.get())
        .xlen(k.queue())
        .query_async(&mut state.redis.clone())
        .await?;
    let allowance = match shape.counted {
        true => Some(allowance(state, &k, user.id).await?),
        false => None,
    };
    if let Some(r) = result.as_deref().and_then(BuyResult::decode) {
        return Ok(respond::ok_result(
            r,
            allowance,
            granted(state, &user, goods, r).await?,
        ));
    }
    // Nothing in the shard's queue, yet no result: a result (or a buyer mark) lost with a
    // Redis primary that died before its replica had it. MySQL is the record: an order there
    // is this shopper's, and is written back. Asked only when nothing is in flight, so a busy
    // sale's polls never reach MySQL; nor do the polls of a sale that is not loaded (one that
    // does not exist, above all).
    if backlog == 0
        && shape.loaded
        && let Some(order) = order_of(state, goods, user.id).await?
    {
        let _: () = state
            .redis
            .clone()
            .set_ex(
                k.result(user.id),
                order.encode(),
                keys::RESULT_TTL.as_secs(),
            )
            .await?;
        tracing::info!(
            goods = goods.get(),
            user = user.id.get(),
            order = order.order,
            "a result missing from Redis was found in MySQL and written back"
        );
        return Ok(respond::ok_result(
            order,
            allowance,
            granted(state, &user, goods, order).await?,
        ));
    }
    let none = BuyResult::new(if queued { 0 } else { -1 }, 1);
    Ok(respond::ok_result(none, allowance, None))
}

/// What is left of `user`'s allowance in the sale of `k` (their home shard), in a sale that
/// counts it: the sale's `perAccount` less the units they hold, or what is left of the
/// campaign's `campaignPerAccount` if less. Read from the counters `lua/admit.lua` decides by
/// (one slot: the campaign's counter shares the sale's tag); buys still queued count.
async fn allowance(
    state: &AppState,
    k: &crate::plumbing::keys::SaleKeys,
    user: UserId,
) -> Result<crate::http::respond::Allowance, AppError> {
    type Read = ((Option<i64>, Option<i64>), Option<i64>, Option<i64>, bool);
    let ((per_account, campaign), held, across, buyer): Read = redis::pipe()
        .cmd("HMGET")
        .arg(k.meta())
        .arg(&["per_account", "campaign_per_account"])
        .hget(k.held(), user.get())
        .hget(k.campaign_held(), user.get())
        .sismember(k.buyers(), user.get())
        .query_async(&mut state.redis.clone())
        .await?;
    let per_account = per_account.unwrap_or(1).max(1);
    // a sale of one unit per account keeps no held counts: its buyer mark is its unit
    let held = match per_account {
        1 => i64::from(buyer),
        _ => held.unwrap_or(0),
    };
    let mut left = per_account - held;
    if let Some(limit) = campaign {
        left = left.min(limit - across.unwrap_or(0));
    }
    Ok(crate::http::respond::Allowance {
        left: left.max(0),
        campaign_left: campaign.map(|limit| (limit - across.unwrap_or(0)).max(0)),
    })
}

/// The grant for a written order (`result` > 0), when grants are on (`identity::grant`).
async fn granted(
    state: &AppState,
    user: &crate::accounts::session::SessionUser,
    goods: GoodsId,
    result: BuyResult,
) -> Result<Option<crate::identity::Granted>, AppError> {
    if result.order <= 0 {
        return Ok(None);
    }
    state
        .identity
        .grant_for(
            &state.db,
            &state.metrics,
            &user.shop_subject(),
            user.id,
            goods,
            result,
        )
        .await
}

/// The live order of `user` for `goods` (the latest, when the sale's `perAccount` let them buy
/// more than once), if MySQL has one.
async fn order_of(
    state: &AppState,
    goods: GoodsId,
    user: UserId,
) -> Result<Option<BuyResult>, AppError> {
    let order: Option<(i64, Option<i32>)> = sqlx::query_as(
        "SELECT s.order_id, o.goods_count FROM seckill_order s \
         LEFT JOIN order_info o ON o.id = s.order_id WHERE s.user_id = ? AND s.goods_id = ? \
             ORDER BY s.order_id DESC LIMIT 1",
    )
    .bind(user.get())
    .bind(goods.get())
    .fetch_optional(&state.db)
    .await?;
    Ok(order.map(|(id, units)| BuyResult::new(id, units.unwrap_or(1).max(1) as u32)))
}

/// `GET /api/seckill/captcha?goodsId=`: a new captcha for this user and sale, as a PNG. Only for
/// a sale that exists, and at most `captcha::PER_MINUTE` a minute per shopper and sale (429):
/// nothing is written for a sale that does not exist or past the bound.
pub async fn captcha<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    let user = respond::user(&req, state).await?;
    let shape = state.shape(goods).await?;
    if !shape.loaded {
        return Err(AppError::NotFound);
    }
    // in the user's home shard, beside the path it unlocks (one slot for issue_path.lua)
    let k = state.keys.shard(Shard::home(goods, user.id, shape.shards));
    let (made, wait_ms) = crate::plumbing::redis_conn::count_in_window(
        &mut state.redis.clone(),
        &k.captcha_made(user.id),
        60,
    )
    .await?;
    if made > crate::admission::captcha::PER_MINUTE {
        return Err(AppError::TooManyCaptchas {
            retry_after_ms: wait_ms.max(1) as u64,
        });
    }
    let captcha = Captcha::generate();
    let _: () = state
        .redis
        .clone()
        .set_ex(
            k.captcha(user.id),
            captcha.answer,
            keys::CAPTCHA_TTL.as_secs(),
        )
        .await?;
    let mut resp = Response::new(super::body::Body::full(captcha.png()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /api/seckill/path?goodsId=&verifyCode=`: checks (and uses up) the captcha and issues the
/// hidden path, `USER-md5(uuid + salt)`, through `lua/issue_path.lua`, which binds it to this
/// session's token (the fingerprint beside it in the user's key).
pub async fn path<B>(req: Request<B>, state: &AppState) -> Result<Resp, AppError> {
    let goods = respond::required(&req, "goodsId", GoodsId::parse)?;
    // the answer is required while the captcha is on, and must be an integer whenever given
    let answer = match respond::query(&req, "verifyCode") {
        Some(given) => given
            .parse::<i64>()
            .map_err(|_| AppError::BadParam("verifyCode must be an integer".into()))?
            .to_string(),
        None if state.settings.captcha => {
            return Err(AppError::BadParam("verifyCode is required".into()));
        }
        None => String::new(),
    };
    let answer = if state.settings.captcha {
        answer
    } else {
        String::new()
    };
    let credential = respond::credential(&req, state)?;
    let user = respond::user_of(&credential, state).await?;
    let token_print = TokenPrint::of(credential.token());
    let print = token_print.to_string();
    let fresh = state.path_seal.seal(goods, user.id, token_print);
    let shape = state.shape(goods).await?;
    if !shape.loaded {
        return Err(AppError::NotFound); // nothing is written for a sale that does not exist
    }
    let shards = shape.shards;
    // a split sale's shard stock is not the sale's: the local flag says whether it is gone
    if shards > 1 && state.local.is_sold_out(goods) {
        return Err(AppError::SoldOut);
    }
    // a sale with a waiting room: only a ticket that is through gets a path
    if shape.room {
        state.room.require_turn(goods, shape, user.id).await?;
    }
    // a draw sale: only an entry holding a claim gets a path, one that dies with the claim
    let mut path_ttl = keys::PATH_TTL.as_millis() as i64;
    if shape.draw {
        let until = crate::draws::record::claim_until(
            &mut state.redis.clone(),
            &state.keys,
            goods,
            user.id,
        )
        .await?;
        let left = until.map_or(0, |u| u - crate::plumbing::clock::now_ms());
        if left <= 0 {
            return Err(AppError::Draw(crate::error::DrawFault::NoClaim));
        }
        path_ttl = path_ttl.min(left);
    }
    let split = if shards > 1 { "1" } else { "0" };
    let k = state.keys.shard(Shard::home(goods, user.id, shards));
    let (captcha_key, user_key, paths, meta, stock, fails, taken) = (
        k.captcha(user.id),
        k.user(user.id),
        k.paths(),
        k.meta(),
        k.stock(),
        k.captcha_fails(user.id),
        k.paths_taken(user.id),
    );
    let ttl = path_ttl.to_string();
    let checked = if state.settings.captcha { "1" } else { "0" };
    let (member, max_wrong, lock, per_user) = (
        user.id.get().to_string(),
        state.settings.captcha_wrong_max.to_string(),
        keys::CAPTCHA_LOCK.as_millis().to_string(),
        keys::PATHS_PER_USER.to_string(),
    );
    let issue = || async {
        let reply = state
            .scripts
            .get()
            .issue_path
            .invoke(
                &mut state.redis.clone(),
                &[
                    &captcha_key,
                    &user_key,
                    &paths,
                    &meta,
                    &stock,
                    &fails,
                    &taken,
                ],
                &[
                    &answer, checked, &fresh, &print, &ttl, split, &member, &max_wrong, &lock,
                    &per_user,
                ],
            )
            .await?;
        PathIssue::from_reply(reply).map_err(AppError::Internal)
    };
    let mut issued = issue().await?;
    // a path held from before paths were sealed (an upgrade) would be refused at every buy for
    // the rest of its minute: it is dropped and a sealed one issued in its place
    if let PathIssue::Issued(digest) = &issued
        && !state.path_seal.opens(goods, user.id, token_print, digest)
    {
        let _: () = state.redis.clone().del(&user_key).await?;
        issued = issue().await?;
    }
    match issued {
        PathIssue::Issued(digest) => Ok(respond::ok(
            HiddenPath::issued(user.id, &digest)?.to_string(),
        )),
        PathIssue::WrongCaptcha => Err(AppError::WrongCaptcha),
        PathIssue::CaptchaLocked { retry_after_ms } => Err(AppError::CaptchaLocked {
            retry_after_ms: retry_after_ms.max(1) as u64,
        }),
        PathIssue::NoSale => Err(AppError::NotFound),
        PathIssue::Ended => Err(AppError::Ended),
        PathIssue::SoldOut => Err(AppError::SoldOut),
        PathIssue::TooMany { retry_after_ms } => Err(AppError::TooManyRequests {
            retry_after_ms: retry_after_ms
                .map_or(keys::PATH_TTL.as_millis() as u64, |ms| ms.max(1) as u64),
        }),
        PathIssue::NotStarted { starts_in_ms } => Err(AppError::NotStarted { starts_in_ms }),
    }
}
