//! Every Redis key name, channel and TTL flashgate uses, declared once (docs/keys.md lists them).
//!
//! All keys of one sale share the hash tag `{g:ID}`, so a script touching them runs on one Redis
//! Cluster slot. The leading `sk`/`sess`/`cache` sit under a configurable namespace (empty by
//! default), which lets parallel tests share one Redis.
//!
//! **Pub/sub channels ignore database numbers**: a `PUBLISH` on db 2 reaches every subscriber of
//! that channel on the server, whatever db it selected. So a channel carries the deployment's
//! db too (`sk:results@db2`; db 0 keeps the bare name, as before), and so does the name of a
//! Redis Functions library (per server, not per db): two deployments on one Redis server, on
//! different dbs or namespaces, never hear each other nor share scripts.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Campaign, GoodsId, Shard, UserId};

/// A hidden path is valid this long after it is issued.
pub const PATH_TTL: Duration = Duration::from_secs(60);
/// A captcha answer is valid this long (and only once).
pub const CAPTCHA_TTL: Duration = Duration::from_secs(300);
/// How long a shopper's wrong captcha answers are counted (from the first), and so how long the
/// captcha stays locked once they reach `captcha_wrong_max`.
pub const CAPTCHA_LOCK: Duration = Duration::from_secs(600);
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
/// The most hidden paths one shopper may take in one sale in an hour (one a minute keeps a
/// place in the path cap for an hour: this bounds how long a few accounts can hold it).
pub const PATHS_PER_USER: u32 = 10;
/// How long a browser that logged in is known as its mobile's (`login:devices:MOBILE`).
pub const DEVICE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the highest sale id is kept: a sale made since is found within this.
pub const HIGHEST_TTL: Duration = Duration::from_secs(1);
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
    /// The Redis database the deployment selected: keys are per db, channels and function
    /// libraries are not, so their names carry it ([`Keys::on_db`]).
    db: i64,
    /// The campaign of each sale this process has met (`None`: a sale in none), shared by every
    /// clone. A campaign sale's keys carry the campaign's hash tag, not the sale's (see
    /// [`Keys::shard`]), so the names of a sale's keys depend on it. A sale's campaign is set
    /// when the sale is made and never changes, so what is learnt stays true: it is learnt from
    /// the sale's MySQL row (`sales::store::SaleRow::teach`, every load of a sale) or from its
    /// pointer ([`Keys::campaign_pointer`], read by the edge before a sale's meta).
    campaigns: Arc<papaya::HashMap<GoodsId, Option<Campaign>>>,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_string(),
            db: 0,
            campaigns: Arc::default(),
        }
    }

    /// Notes that `goods` is in `campaign` (or in none): its keys are named accordingly from now.
    pub fn learn(&self, goods: GoodsId, campaign: Option<&Campaign>) {
        self.campaigns.pin().insert(goods, campaign.cloned());
    }

    /// What this process knows of `goods`'s campaign: `None` when it has not learnt it yet
    /// (its keys are then named as a sale in no campaign).
    pub fn known(&self, goods: GoodsId) -> Option<Option<Campaign>> {
        self.campaigns.pin().get(&goods).cloned()
    }

    /// `sk:{g:ID}:campaign`, string, no TTL: the name of the campaign a campaign sale is in,
    /// under the sale's own tag, where a process that has not met the sale looks it up (a sale
    /// in no campaign has none). Written when the sale is loaded, before its meta; kept for good.
    pub fn campaign_pointer(&self, goods: GoodsId) -> String {
        format!("{}sk:{{g:{}}}:campaign", self.ns, goods.get())
    }

    /// The same names for a deployment on database `db` (its channels and libraries are its
    /// own: see the module's comment).
    pub fn on_db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// A pub/sub channel of this deployment: `NS` + `base`, and `@dbN` on a db other than 0
    /// (`base` never ends in `@dbN`, so no two deployments' names meet).
    fn channel(&self, base: &str) -> String {
        match self.db {
            0 => format!("{}{base}", self.ns),
            db => format!("{}{base}@db{db}", self.ns),
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
    /// a split sale (a hash tag of its own, so shards spread over a cluster's slots); and
    /// `sk:{c:NAME}:g:ID:…` for a sale of campaign NAME (never split): every sale of a campaign
    /// and the campaign's counter share the campaign's tag, so `lua/admit.lua` checks and moves
    /// the campaign's count in the call that decides the buy, on one Redis Cluster slot.
    pub fn shard(&self, shard: Shard) -> SaleKeys {
        let (ns, id) = (&self.ns, shard.goods.get());
        if let Some(Some(c)) = self.campaigns.pin().get(&shard.goods) {
            return SaleKeys {
                prefix: format!("{ns}sk:{{c:{c}}}:g:{id}:"),
                campaign_held: format!("{ns}sk:{{c:{c}}}:held"),
            };
        }
        let prefix = match shard.index {
            0 => format!("{ns}sk:{{g:{id}}}:"),
            b => format!("{ns}sk:{{g:{id}/{b}}}:"),
        };
        SaleKeys {
            campaign_held: format!("{prefix}campaign:held"),
            prefix,
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
        self.channel("sess:revoked")
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

    /// `login:devices:MOBILE`, [`DEVICE_TTL`]: the browsers (their `fg_device` cookies) this
    /// mobile logged in on lately, the latest few (see [`crate::accounts::login_guard`]).
    pub fn login_devices(&self, mobile: &str) -> String {
        format!("{}login:devices:{mobile}", self.ns)
    }

    /// `login:fail:d:DEVICE`: login attempts from a known browser in the current window.
    pub fn login_failures_device(&self, device: &str) -> String {
        format!("{}login:fail:d:{device}", self.ns)
    }

    /// `login:fail:a:ADDRESS`: failed logins from this client address in the current window.
    pub fn login_failures_address(&self, address: std::net::IpAddr) -> String {
        format!("{}login:fail:a:{address}", self.ns)
    }

    /// `cache:goods:list`: the cached sale list.
    pub fn goods_list(&self) -> String {
        format!("{}cache:goods:list", self.ns)
    }

    /// `path:key`: the key hidden paths are sealed with (64 hex digits, no TTL), shared by every
    /// edge (`crate::admission::path_seal`).
    pub fn path_key(&self) -> String {
        format!("{}path:key", self.ns)
    }

    /// `cache:goods:max`, [`HIGHEST_TTL`]: the highest sale id MySQL has. An id above it is
    /// answered 404 with no MySQL read and nothing cached for it.
    pub fn goods_highest(&self) -> String {
        format!("{}cache:goods:max", self.ns)
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
        self.channel("sk:results")
    }

    /// The pub/sub channel a give-back is announced on (message: the goods id).
    pub fn restock_channel(&self) -> String {
        self.channel("sk:restock")
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
        self.channel("lua:changed")
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

    /// What every library name of this namespace starts with (`fg_<8 hex>_v`; the hex is of
    /// the namespace, and of `NS@dbN` on a db other than 0: libraries are per server).
    pub fn lua_libraries(&self) -> String {
        use sha1::{Digest, Sha1};
        let tag = hex::encode(Sha1::digest(self.channel("").as_bytes()));
        format!("fg_{}_v", &tag[..8])
    }

    /// The pattern matching every key of this namespace (tests clean up with it).
    pub fn everything(&self) -> String {
        format!("{}*", self.ns)
    }
}

/// The keys of one sale: `sk:{g:ID}:…` (`sk:{c:NAME}:g:ID:…` in a campaign).
#[derive(Debug, Clone)]
pub struct SaleKeys {
    prefix: String,
    campaign_held: String,
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
    /// sorted set, [`PATH_TTL`] after the last path: the sale's live hidden paths, member the
    /// user id, score when the path expires (capped at path_factor × stock; an unused path
    /// leaves the count when it expires, `lua/issue_path.lua`). It replaces `issued`, a count
    /// of paths ever issued, which an upgrade leaves to expire with the sale's other keys.
    pub fn paths(&self) -> String {
        self.key("paths")
    }
    /// string, [`CAPTCHA_LOCK`]: this user's wrong captcha answers in this sale lately.
    pub fn captcha_fails(&self, user: UserId) -> String {
        self.key(&format!("captcha:fails:{}", user.get()))
    }
    /// string, an hour from the first: the hidden paths this user took in this sale
    /// (at most [`PATHS_PER_USER`]).
    pub fn paths_taken(&self, user: UserId) -> String {
        self.key(&format!("paths:taken:{}", user.get()))
    }
    /// string, 60 s: the captchas made for this user in this sale this minute.
    pub fn captcha_made(&self, user: UserId) -> String {
        self.key(&format!("captcha:made:{}", user.get()))
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
    /// hash, no TTL: user id -> units held across the sale's campaign, `sk:{c:NAME}:held`, one
    /// for all of the campaign's sales (`lua/admit.lua` counts up, `lua/restore.lua` down,
    /// compared with the meta's `campaign_per_account`). A sale in no campaign names
    /// `sk:{g:ID}:campaign:held` here, a key no script writes (admit.lua takes a key either way).
    pub fn campaign_held(&self) -> String {
        self.campaign_held.clone()
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
    /// hash: joins per address (a digest of the IPv4 address or the IPv6 /64) that paid a proof
    /// of work (`FLASHGATE_ROOM_POW`), which sets the next challenge's difficulty there.
    pub fn room_addresses(&self) -> String {
        self.key("room:addr")
    }
    /// string, the challenge's remaining life: a proof of work spent by a join (`SET NX`).
    pub fn room_spent(&self, challenge: &str) -> String {
        self.key(&format!("room:spent:{challenge}"))
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
    /// hash: a draw sale's state (`src/draws/`, `lua/draw_enter.lua`, `lua/draw_move.lua`):
    /// `from_ms`, `until_ms` (the registration window), `claim_ms`, `state` (`open`, then
    /// `closed` from the draw on), `next` (the place in the draw's order the waitlist has
    /// reached), `total` (entries ordered). In shard 0's tag, like everything of a draw.
    pub fn draw(&self) -> String {
        self.key("draw")
    }
    /// hash: a draw's entries, user id -> entry number (1, 2, …, in the order they came).
    pub fn draw_entries(&self) -> String {
        self.key("draw:entries")
    }
    /// string: the entries' user ids in the order they came, each 16 hex digits (what the draw
    /// reads in 1 MiB ranges, without a scan).
    pub fn draw_log(&self) -> String {
        self.key("draw:log")
    }
    /// string: the entries' user ids in the draw's order, each 16 hex digits (written by the
    /// draw; the waitlist reads the next place with one `GETRANGE`).
    pub fn draw_order(&self) -> String {
        self.key("draw:order")
    }
    /// sorted set: the claims not yet used, user id -> claim-until ms.
    pub fn draw_claims(&self) -> String {
        self.key("draw:claims")
    }
    /// set: winners who bought within their claim window.
    pub fn draw_claimed(&self) -> String {
        self.key("draw:claimed")
    }
    /// set: winners whose claim window passed unused (their unit went down the waitlist).
    pub fn draw_lapsed(&self) -> String {
        self.key("draw:lapsed")
    }
    /// hash: entries per address (a digest of the IPv4 address or the IPv6 /64), which sets
    /// the next challenge's difficulty for that address.
    pub fn draw_addresses(&self) -> String {
        self.key("draw:addr")
    }
    /// string, the challenge's life: a proof-of-work challenge spent by an entry (replays are
    /// refused by `lua/draw_enter.lua` in the call that records the entry).
    pub fn draw_spent(&self, challenge: &str) -> String {
        self.key(&format!("draw:spent:{challenge}"))
    }
    /// The `KEYS` of `lua/draw_enter.lua` for a proof's `challenge`, in the script's order:
    /// draw, entries, log, addresses, spent. The one place they are put together.
    pub fn draw_enter(&self, challenge: &str) -> [String; 5] {
        [
            self.draw(),
            self.draw_entries(),
            self.draw_log(),
            self.draw_addresses(),
            self.draw_spent(challenge),
        ]
    }
    /// The `KEYS` of `lua/draw_move.lua`, in the script's order: draw, order, claims, claimed,
    /// lapsed, buyers, stock. The one place they are put together.
    pub fn draw_move(&self) -> [String; 7] {
        [
            self.draw(),
            self.draw_order(),
            self.draw_claims(),
            self.draw_claimed(),
            self.draw_lapsed(),
            self.buyers(),
            self.stock(),
        ]
    }
    /// The pattern matching every key of this sale.
    pub fn everything(&self) -> String {
        self.key("*")
    }

    /// The `KEYS` of `lua/admit.lua` for `users`, in the script's order: meta, stock, buyers,
    /// gate, queue, held, buys, campaign, then each user's key. The one place they are put
    /// together.
    pub fn admit(&self, users: impl IntoIterator<Item = UserId>) -> Vec<String> {
        let mut keys = vec![
            self.meta(),
            self.stock(),
            self.buyers(),
            self.gate(),
            self.queue(),
            self.held(),
            self.buys(),
            self.campaign_held(),
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

    #[test]
    fn a_campaign_sale_takes_the_campaign_tag_and_others_keep_theirs() {
        let k = Keys::new("t:");
        let (g, h) = (GoodsId::new(7).unwrap(), GoodsId::new(8).unwrap());
        let shoe = Campaign::parse("shoe").unwrap();
        assert_eq!(k.known(g), None);
        let before = k.sale(g).stock();
        k.clone().learn(g, Some(&shoe));
        k.learn(h, None);
        assert_eq!(k.known(g), Some(Some(shoe)));
        assert_eq!(k.sale(g).stock(), "t:sk:{c:shoe}:g:7:stock");
        assert_eq!(k.sale(g).campaign_held(), "t:sk:{c:shoe}:held");
        assert_eq!(k.sale(g).everything(), "t:sk:{c:shoe}:g:7:*");
        // a sale in no campaign keeps the names it had (an upgrade renames nothing)
        assert_eq!(before, "t:sk:{g:7}:stock");
        assert_eq!(k.sale(h).stock(), "t:sk:{g:8}:stock");
        assert_eq!(k.sale(h).campaign_held(), "t:sk:{g:8}:campaign:held");
        assert_eq!(k.campaign_pointer(g), "t:sk:{g:7}:campaign");
    }

    #[test]
    fn channels_and_libraries_carry_the_db_and_keys_do_not() {
        let (zero, two) = (Keys::new(""), Keys::new("").on_db(2));
        // db 0 keeps the names a deployment had before (an upgrade hears its old workers)
        assert_eq!(zero.results_channel(), "sk:results");
        assert_eq!(zero.lua_libraries(), Keys::new("").lua_libraries());
        assert_eq!(two.results_channel(), "sk:results@db2");
        assert_eq!(two.session_channel(), "sess:revoked@db2");
        assert_eq!(two.restock_channel(), "sk:restock@db2");
        assert_eq!(two.lua_channel(), "lua:changed@db2");
        assert_ne!(zero.lua_libraries(), two.lua_libraries());
        assert_ne!(
            Keys::new("").on_db(1).results_channel(),
            two.results_channel()
        );
        let g = GoodsId::new(7).unwrap();
        assert_eq!(two.sale(g).stock(), zero.sale(g).stock());
    }
}
