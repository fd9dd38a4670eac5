//! Every Redis key name, channel and TTL flashgate uses, declared once (docs/keys.md lists them).
//!
//! All keys of one sale share the hash tag `{g:ID}`, so a script touching them runs on one Redis
//! Cluster slot. The leading `sk`/`sess`/`cache` sit under a configurable namespace (empty by
//! default), which lets parallel tests share one Redis.

use std::time::Duration;

use crate::domain::{GoodsId, Shard, UserId};

/// A hidden path is valid this long after it is issued.
pub const PATH_TTL: Duration = Duration::from_secs(60);
/// A captcha answer is valid this long (and only once).
pub const CAPTCHA_TTL: Duration = Duration::from_secs(300);
/// A session lives this long after its last use (sliding).
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// A logout is remembered this long (`Keys::logouts` and each edge's copy): a logged-out token
/// gets no new path, and every path bound to it is gone within [`PATH_TTL`]; the rest is slack for
/// the edges' clocks.
pub const LOGOUT_KEEP: Duration = Duration::from_secs(PATH_TTL.as_secs() + 60);
/// A written result stays for the page to poll this long.
pub const RESULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Catalogue copies live this long, plus up to `CACHE_JITTER`, so they do not all expire at once.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
pub const CACHE_JITTER: Duration = Duration::from_secs(15);
/// A goods id that does not exist is remembered as absent this long.
pub const ABSENT_TTL: Duration = Duration::from_secs(30);
/// The value cached for an absent goods id.
pub const ABSENT: &str = "null";
/// A redeemed grant's `jti` is remembered as spent this long. A grant's `jti` names its order
/// (every grant of one order shares it), so the mark outlives every grant the order's result can
/// still be given with: [`RESULT_TTL`] and then some.
pub const GRANT_SPENT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The consumer group every worker reads a sale's queue with.
pub const GROUP: &str = "orders";
/// How long a sale's per-second counts (`tally`) are kept: the live view's window.
pub const TALLY_TTL: Duration = Duration::from_secs(3600);
/// A worker renews its heartbeat this often...
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// ...and is taken for dead once it has not for this long (its entries are then taken over).
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(3);

/// The key names of one namespace.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_string(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The keys of one sale (of its shard 0, when it is split).
    pub fn sale(&self, goods: GoodsId) -> SaleKeys {
        self.shard(Shard::whole(goods))
    }

    /// The keys of one stock shard: `sk:{g:ID}:…` for shard 0, `sk:{g:ID/S}:…` for shard S of
    /// a split sale (a hash tag of its own, so shards spread over a cluster's slots).
    pub fn shard(&self, shard: Shard) -> SaleKeys {
        let (ns, id) = (&self.ns, shard.goods.get());
        SaleKeys {
            prefix: match shard.index {
                0 => format!("{ns}sk:{{g:{id}}}:"),
                b => format!("{ns}sk:{{g:{id}/{b}}}:"),
            },
        }
    }

    /// The pattern matching every key of shards 1 and up of a split sale.
    pub fn split_shards(&self, goods: GoodsId) -> String {
        format!("{}sk:{{g:{}/*", self.ns, goods.get())
    }

    /// `sess:TOKEN`: the session (user JSON), sliding TTL.
    pub fn session(&self, token: &str) -> String {
        format!("{}sess:{token}", self.ns)
    }

    /// The pub/sub channel a logout is announced on (message: the token), so every edge drops
    /// its cached copy (see [`crate::accounts::session::SessionCache`]) and adds the token to its
    /// recent logouts (see [`crate::accounts::logouts`]).
    pub fn session_channel(&self) -> String {
        format!("{}sess:revoked", self.ns)
    }

    /// `sess:logouts`, zset, [`LOGOUT_KEEP`]: the fingerprints of the tokens logged out lately,
    /// scored by the time in ms (see [`crate::accounts::logouts`]): an edge that subscribes
    /// reads them back, as it may have missed their messages.
    pub fn logouts(&self) -> String {
        format!("{}sess:logouts", self.ns)
    }

    /// `grant:spent:JTI`, string, [`GRANT_SPENT_TTL`]: a grant redeemed (`SET NX`: the first
    /// redemption wins; see [`crate::identity::grant`]).
    pub fn grant_spent(&self, jti: &str) -> String {
        format!("{}grant:spent:{jti}", self.ns)
    }

    /// `login:fail:m:MOBILE`: failed logins of this mobile in the current window
    /// (see [`crate::accounts::login_guard`]; expires with the window).
    pub fn login_failures_mobile(&self, mobile: &str) -> String {
        format!("{}login:fail:m:{mobile}", self.ns)
    }

    /// `login:fail:a:ADDRESS`: failed logins from this client address in the current window.
    pub fn login_failures_address(&self, address: std::net::IpAddr) -> String {
        format!("{}login:fail:a:{address}", self.ns)
    }

    /// `cache:goods:list`: the cached sale list.
    pub fn goods_list(&self) -> String {
        format!("{}cache:goods:list", self.ns)
    }

    /// `cache:goods:ID`: one cached sale, or [`ABSENT`].
    pub fn goods(&self, goods: GoodsId) -> String {
        format!("{}cache:goods:{}", self.ns, goods.get())
    }

    /// `worker:alive:CONSUMER`: present while that worker lives (renewed every
    /// [`HEARTBEAT_EVERY`], expires after [`HEARTBEAT_TTL`]).
    pub fn worker_alive(&self, consumer: &str) -> String {
        format!("{}worker:alive:{consumer}", self.ns)
    }

    /// The pub/sub channel a worker announces written results on (message: `GOODS
    /// UID=RESULT,…`), so each edge pushes them to the shoppers' streams (`admission::push`).
    pub fn results_channel(&self) -> String {
        format!("{}sk:results", self.ns)
    }

    /// The pub/sub channel a give-back is announced on (message: the goods id).
    pub fn restock_channel(&self) -> String {
        format!("{}sk:restock", self.ns)
    }

    /// `lua:state`: which script release is live, the canary and its share, the history that
    /// a rollback goes back through (JSON; `admission::script_release`).
    pub fn lua_state(&self) -> String {
        format!("{}lua:state", self.ns)
    }

    /// `lua:release:N`: release N's files, content hash and note (JSON, kept for good).
    pub fn lua_release(&self, version: u64) -> String {
        format!("{}lua:release:{version}", self.ns)
    }

    /// `lua:versions`: the last release number handed out.
    pub fn lua_versions(&self) -> String {
        format!("{}lua:versions", self.ns)
    }

    /// `lua:changed`: the pub/sub channel a change of `lua:state` is announced on (message: its
    /// generation), so every edge follows at once instead of polling.
    pub fn lua_channel(&self) -> String {
        format!("{}lua:changed", self.ns)
    }

    /// `lua:edges`: a hash, one field per running edge, holding what it reports (when it changes, and every 10 s)
    /// (the versions it runs, its counts per version, a release it could not load).
    pub fn lua_edges(&self) -> String {
        format!("{}lua:edges", self.ns)
    }

    /// The name of the Redis Functions library that holds release `version` of this
    /// namespace's scripts: `fg_<8 hex of the namespace's SHA-1>_v<N>` (libraries are per node,
    /// not per key prefix, so namespaces sharing a Redis do not collide).
    pub fn lua_library(&self, version: u64) -> String {
        format!("{}{version}", self.lua_libraries())
    }

    /// What every library name of this namespace starts with (`fg_<8 hex>_v`).
    pub fn lua_libraries(&self) -> String {
        use sha1::{Digest, Sha1};
        let tag = hex::encode(Sha1::digest(self.ns.as_bytes()));
        format!("fg_{}_v", &tag[..8])
    }

    /// The pattern matching every key of this namespace (tests clean up with it).
    pub fn everything(&self) -> String {
        format!("{}*", self.ns)
    }
}

/// The keys of one sale: `sk:{g:ID}:…`.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    prefix: String,
}

impl SaleKeys {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
    /// hash: start_ms, end_ms, user_rate, user_burst, gate_rate, gate_burst, path_cap, stock
    /// (the sale's initial stock), shards (how many stock shards the sale is split into).
    pub fn meta(&self) -> String {
        self.key("meta")
    }
    /// string: units left.
    pub fn stock(&self) -> String {
        self.key("stock")
    }
    /// set: user ids admitted (the duplicate marker).
    pub fn buyers(&self) -> String {
        self.key("buyers")
    }
    /// string, [`PATH_TTL`]: `PATH.PRINT` or `PATH.PRINT TOKENS TS`, the hidden path issued to
    /// this user bound to their session token's fingerprint (`domain::HiddenPath::bound_to`),
    /// and their token bucket (`lua/admit.lua` keeps the bucket beside the path: one read per
    /// shopper instead of two; the bucket goes with the path, which a user must fetch again
    /// after [`PATH_TTL`] anyway).
    pub fn user(&self, user: UserId) -> String {
        self.key(&format!("u:{}", user.get()))
    }
    /// string, [`CAPTCHA_TTL`]: the captcha answer for this user.
    pub fn captcha(&self, user: UserId) -> String {
        self.key(&format!("captcha:{}", user.get()))
    }
    /// hash: the sale's gate bucket.
    pub fn gate(&self) -> String {
        self.key("gate")
    }
    /// string: how many hidden paths this sale has issued (capped at path_factor × stock).
    pub fn issued(&self) -> String {
        self.key("issued")
    }
    /// stream: the admitted requests (the outbox). One entry per `lua/admit.lua` call that
    /// admitted anyone: `u` the user ids, `r` the request ids (comma-separated, same order), `t`
    /// the time in ms; an entry of the single-shopper form (one id in each) reads the same.
    pub fn queue(&self) -> String {
        self.key("queue")
    }
    /// set: ids of closed orders whose unit has been given back (`lua/restore.lua`: once per
    /// order, however often the closer retries).
    pub fn given_back(&self) -> String {
        self.key("given_back")
    }
    /// hash: user id -> units held in this sale, kept only for a sale of `perAccount` > 1
    /// (`lua/admit.lua` counts up, `lua/restore.lua` down).
    pub fn held(&self) -> String {
        self.key("held")
    }
    /// hash: `USER KEY` -> quantity: the buys admitted with an `Idempotency-Key` (its digest),
    /// and every buy of a sale of `perAccount` > 1 (KEY `-` without one); `lua/restore.lua`
    /// gives each back once.
    pub fn buys(&self) -> String {
        self.key("buys")
    }
    /// stream: entries given up on after too many deliveries.
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    /// string, [`RESULT_TTL`]: order id, or -1 for failed.
    pub fn result(&self, user: UserId) -> String {
        self.key(&format!("result:{}", user.get()))
    }
    /// hash, [`TALLY_TTL`]: the sale's counts in one minute (`minute` since the epoch), field
    /// `SECOND:series` (see `crate::operators::tally`). Sale-wide: kept in shard 0's hash tag.
    pub fn tally(&self, minute: i64) -> String {
        self.key(&format!("tally:{minute}"))
    }
    /// sorted set: the waiting room's line, user id -> draw or arrival score (`lua/room.lua`).
    /// Sale-wide: kept in shard 0's hash tag.
    pub fn room_line(&self) -> String {
        self.key("room:line")
    }
    /// string: the room's latecomer counter.
    pub fn room_seq(&self) -> String {
        self.key("room:seq")
    }
    /// string: set when a split sale is sold out everywhere, so the room tells its line.
    pub fn room_soldout(&self) -> String {
        self.key("room:soldout")
    }
    /// set: tickets already seen through the room (each counted once in the metrics).
    pub fn room_through(&self) -> String {
        self.key("room:through")
    }
    /// The `KEYS` of `lua/room.lua`, in the script's order: meta, line, seq, stock, soldout,
    /// through. The one place they are put together.
    pub fn room(&self) -> [String; 6] {
        [
            self.meta(),
            self.room_line(),
            self.room_seq(),
            self.stock(),
            self.room_soldout(),
            self.room_through(),
        ]
    }
    /// The pattern matching every key of this sale.
    pub fn everything(&self) -> String {
        self.key("*")
    }

    /// The `KEYS` of `lua/admit.lua` for `users`, in the script's order: meta, stock, buyers,
    /// gate, queue, held, buys, then each user's key. The one place they are put together.
    pub fn admit(&self, users: impl IntoIterator<Item = UserId>) -> Vec<String> {
        let mut keys = vec![
            self.meta(),
            self.stock(),
            self.buyers(),
            self.gate(),
            self.queue(),
            self.held(),
            self.buys(),
        ];
        keys.extend(users.into_iter().map(|u| self.user(u)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design_schema() {
        let k = Keys::new("");
        let s = k.sale(GoodsId::new(7).unwrap());
        let u = UserId::new(42).unwrap();
        assert_eq!(s.stock(), "sk:{g:7}:stock");
        assert_eq!(s.user(u), "sk:{g:7}:u:42");
        assert_eq!(s.result(u), "sk:{g:7}:result:42");
        assert_eq!(k.session("abc"), "sess:abc");
        assert_eq!(k.goods_list(), "cache:goods:list");
        let g = GoodsId::new(7).unwrap();
        assert_eq!(
            k.shard(Shard { goods: g, index: 0 }).stock(),
            "sk:{g:7}:stock"
        );
        assert_eq!(
            k.shard(Shard { goods: g, index: 3 }).queue(),
            "sk:{g:7/3}:queue"
        );
        assert_eq!(k.split_shards(g), "sk:{g:7/*");
        let t = Keys::new("t1:");
        assert_eq!(
            t.sale(GoodsId::new(7).unwrap()).queue(),
            "t1:sk:{g:7}:queue"
        );
    }
}
