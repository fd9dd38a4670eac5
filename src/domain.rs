//! Domain newtypes: a value of one of these types has been validated, so the rest of the code
//! never checks again and never mixes a user id up with a goods id.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::AppError;

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id: a positive integer.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(into = "i64")]
        pub struct $name(i64);

        /// Accepts a JSON number or a numeric string (load tools often send strings).
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Repr {
                    N(i64),
                    S(String),
                }
                match Repr::deserialize(d).map_err(|_| {
                    serde::de::Error::custom(concat!($what, " id must be a positive integer"))
                })? {
                    Repr::N(n) => Self::new(n),
                    Repr::S(s) => Self::parse(&s),
                }
                .map_err(serde::de::Error::custom)
            }
        }

        impl $name {
            pub fn new(v: i64) -> Result<Self, AppError> {
                if v > 0 {
                    Ok(Self(v))
                } else {
                    Err(AppError::BadParam(format!(
                        "{} must be a positive integer",
                        $what
                    )))
                }
            }
            pub fn get(self) -> i64 {
                self.0
            }
            /// Parses a decimal string, as found in a path or a query.
            /// Canonical decimal digits only (`docs/openapi.yaml`'s `^[1-9][0-9]{0,18}$`): no
            /// sign, no leading zero, no spaces, at most `i64::MAX`.
            pub fn parse(s: &str) -> Result<Self, AppError> {
                let canonical =
                    !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
                let v: i64 = canonical.then(|| s.parse().ok()).flatten().ok_or_else(|| {
                    AppError::BadParam(format!("{} must be a positive integer", $what))
                })?;
                Self::new(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(GoodsId, "goods");
id_type!(UserId, "user");
id_type!(OrderId, "order");

/// Where an order is in its life; stored in `order_info.status` as this small integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[repr(i8)]
#[serde(into = "i8")]
pub enum OrderStatus {
    /// Written by the worker; the shopper has not paid yet.
    Unpaid = 0,
    /// Paid (simulated).
    Paid = 1,
    /// Unpaid past its time: closed, and its unit given back to the sale.
    Closed = 2,
    /// Refunded (reserved: nothing sets it yet).
    Refunded = 3,
}

impl From<OrderStatus> for i8 {
    fn from(s: OrderStatus) -> i8 {
        s as i8
    }
}

impl TryFrom<i8> for OrderStatus {
    type Error = i8;
    fn try_from(v: i8) -> Result<Self, i8> {
        [
            OrderStatus::Unpaid,
            OrderStatus::Paid,
            OrderStatus::Closed,
            OrderStatus::Refunded,
        ]
        .into_iter()
        .find(|s| *s as i8 == v)
        .ok_or(v)
    }
}

/// The most stock shards one sale may be split into.
pub const MAX_SHARDS: u16 = 64;

/// One stock shard of a sale. A sale's stock is in one shard unless it is split (a hot item):
/// then each shard holds part of the stock under a hash tag of its own (see [`crate::plumbing::keys`]), so
/// one item's load spreads over the nodes of a Redis Cluster. Everything about one shopper (their
/// path, token bucket, duplicate marker, queue entry and result) lives in their *home* shard.
/// ("Shard" always means this; "bucket" always means a rate limit's token bucket.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub goods: GoodsId,
    /// 0 for a sale that is not split.
    pub index: u16,
}

impl Shard {
    /// The only shard of a sale that is not split (shard 0 of one that is).
    pub fn whole(goods: GoodsId) -> Self {
        Self { goods, index: 0 }
    }

    /// The shard `user`'s keys live in when the sale has `shards` of them.
    pub fn home(goods: GoodsId, user: UserId, shards: u16) -> Self {
        let index = (user.get() % i64::from(shards.max(1))) as u16;
        Self { goods, index }
    }

    /// Every shard of a sale split into `shards`.
    pub fn all(goods: GoodsId, shards: u16) -> impl Iterator<Item = Shard> {
        (0..shards.max(1)).map(move |index| Self { goods, index })
    }
}

/// Reads a field that may be left out but is never `null`: a `null` is refused like any other
/// value of the wrong type, so a body says a thing one way (`docs/openapi.yaml` gives these
/// fields no `nullable`). With `#[serde(default, deserialize_with = "crate::domain::present")]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// A mainland-China mobile number: 11 digits starting with 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mobile(String);

impl Mobile {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let ok = s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(AppError::BadMobile)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The address a client is counted under for limits: an IPv4 address as it is, an IPv6
/// address cut to its /64 (one subscriber is given a whole /64: counting by /128 let a client
/// walk past every per-address limit by rotating inside it).
pub fn counted(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
        v4 => v4,
    }
}

/// A hidden path as the shopper holds it: `USER-DIGEST`, the user it was issued to (a decimal id)
/// and 32 lowercase hex digits (an MD5). The user rides in the path so that a buy learns whose
/// it is without reading the session; `lua/admit.lua` checks it against what the path request
/// stored in that user's key (see [`HiddenPath::bound_to`]). The form before (the digest alone)
/// is refused like any other malformed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenPath {
    user: UserId,
    digest: String,
}

/// The longest user id a path may carry: `i64::MAX` has 19 digits.
const MAX_ID_DIGITS: usize = 19;

/// `s` is exactly `len` lowercase hex digits (a digest, a token, a fingerprint).
pub fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_digest(s: &str) -> bool {
    lower_hex(s, 32)
}

impl HiddenPath {
    /// Parses `USER-DIGEST` strictly: digits without a sign or leading zero, one dash, the digest.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let (user, digest) = s.split_once('-').ok_or(AppError::BadPath)?;
        let digits = !user.is_empty()
            && user.len() <= MAX_ID_DIGITS
            && !user.starts_with('0')
            && user.bytes().all(|b| b.is_ascii_digit());
        if !digits || !is_digest(digest) {
            return Err(AppError::BadPath);
        }
        let user = user.parse().ok().and_then(|v| UserId::new(v).ok());
        Ok(Self {
            user: user.ok_or(AppError::BadPath)?,
            digest: digest.to_string(),
        })
    }

    /// The path issued to `user`, of a digest the path request made (or found held).
    pub fn issued(user: UserId, digest: &str) -> Result<Self, AppError> {
        if !is_digest(digest) {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a hidden path's digest is 32 hex digits, not {digest:?}"
            )));
        }
        Ok(Self {
            user,
            digest: digest.to_string(),
        })
    }

    /// The user the path was issued to.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The 32 hex digits.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the user's key holds for this path issued to the session whose token has this
    /// fingerprint, and so what a buy sends the script: `DIGEST.PRINT`. A path works only with
    /// the token it was issued to.
    pub fn bound_to(&self, print: TokenPrint) -> String {
        format!("{}.{}", self.digest, print)
    }
}

impl fmt::Display for HiddenPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.user, self.digest)
    }
}

/// A session token's fingerprint: the first 8 bytes of its SHA-1, written as 16 hex digits.
/// Redis keeps it beside a hidden path (the path is bound to the session that asked for it) and
/// in the list of recent logouts, never the token itself: a fingerprint does not open a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenPrint(u64);

impl TokenPrint {
    pub fn of(token: &str) -> Self {
        use sha1::{Digest, Sha1};
        let d = Sha1::digest(token.as_bytes());
        Self(u64::from_be_bytes(
            d[..8].try_into().expect("SHA-1 has 20 bytes"),
        ))
    }

    /// Parses the 16 hex digits [`Display`](fmt::Display) writes.
    pub fn parse(s: &str) -> Option<Self> {
        lower_hex(s, 16)
            .then(|| u64::from_str_radix(s, 16).ok().map(Self))
            .flatten()
    }
}

impl fmt::Display for TokenPrint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The units one buy asks for (`quantity` in the buy's body; absent: 1). The edge takes 1 to
/// [`Quantity::MAX`]; the sale's own `perBuy` is checked by `lua/admit.lua`, atomically with the
/// rest of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quantity(u32);

impl Quantity {
    /// No sale's `perBuy` is above this (`SaleRule::PerBuy`).
    pub const MAX: u32 = 1000;
    pub const ONE: Quantity = Quantity(1);

    /// A JSON value as the body carries it: a whole number of 1 to [`Quantity::MAX`] (`2.0` is
    /// not one: a fraction, a string, 0 or a negative number is [`AppError::BadQuantity`]).
    pub fn from_json(v: Option<&serde_json::Value>) -> Result<Self, AppError> {
        match v {
            None => Ok(Self::ONE),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .filter(|q| (1..=Self::MAX as u64).contains(q))
                .map(|q| Self(q as u32))
                .ok_or(AppError::BadQuantity),
            Some(_) => Err(AppError::BadQuantity),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A shopper's result in a sale as Redis keeps it (`sk:…:result:UID`, written by the worker):
/// the order id and its units, `ORDER` for one unit (every result before quantities) or
/// `ORDER:Q`; `-1` failed (given back), `0` never written (queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuyResult {
    pub order: i64,
    pub quantity: u32,
}

impl BuyResult {
    /// An order of `quantity` units (a failure is `order` -1, quantity 1).
    pub fn new(order: i64, quantity: u32) -> Self {
        Self {
            order,
            quantity: quantity.max(1),
        }
    }

    /// The value kept in Redis.
    pub fn encode(self) -> String {
        match self.quantity {
            1 => self.order.to_string(),
            q => format!("{}:{q}", self.order),
        }
    }

    /// A value [`BuyResult::encode`] made (or a bare order id); `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let (order, quantity) = match s.split_once(':') {
            Some((o, q)) => (o.parse().ok()?, q.parse().ok().filter(|q| *q >= 1)?),
            None => (s.parse().ok()?, 1),
        };
        Some(Self { order, quantity })
    }
}

/// A campaign's name (`campaign`): sales made with the same name share one limit per account
/// across them (`campaignPerAccount`; the sizes of one shoe). 1 to [`Campaign::MAX_LEN`]
/// characters of `a-z`, `0-9`, `-`, `_` and `.`: it is part of the campaign's Redis hash tag
/// (`{c:NAME}`, `plumbing::keys`), so no brace, colon, space or upper case (two spellings of one
/// campaign would be two campaigns).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Campaign(String);

impl Campaign {
    /// The longest name taken.
    pub const MAX_LEN: usize = 32;

    /// `None` when `s` breaks the rule above.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        ok.then(|| Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Campaign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A buy's `Idempotency-Key` (the IETF draft's header), kept only as a digest: the first 16
/// bytes of its SHA-256 as 32 hex digits. A digest is fixed-width, has no commas (it rides in the
/// queue entry's comma-separated `k`) and compares byte for byte in MySQL (a `*_bin` column with
/// PAD SPACE would take `"a"` and `"a "` for the same key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuyKey(String);

impl BuyKey {
    /// The header's bytes: 1 to 255, each printable ASCII (space to `~`).
    pub fn parse(header: &[u8]) -> Result<Self, AppError> {
        if header.is_empty()
            || header.len() > 255
            || !header.iter().all(|b| (0x20..=0x7e).contains(b))
        {
            return Err(AppError::BadIdempotencyKey);
        }
        use sha2::{Digest, Sha256};
        Ok(Self(hex::encode(&Sha256::digest(header)[..16])))
    }

    /// The 32 hex digits.
    pub fn digest(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_their_units_and_read_the_form_before() {
        for r in [
            BuyResult::new(42, 1),
            BuyResult::new(42, 3),
            BuyResult::new(-1, 1),
        ] {
            assert_eq!(BuyResult::decode(&r.encode()), Some(r));
        }
        assert_eq!(BuyResult::new(42, 1).encode(), "42");
        assert_eq!(BuyResult::new(42, 3).encode(), "42:3");
        assert_eq!(BuyResult::decode("17"), Some(BuyResult::new(17, 1)));
        for bad in ["", "x", "1:0", "1:x", "1:2:3"] {
            assert_eq!(BuyResult::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn campaign_names_are_short_lowercase_and_safe_in_a_hash_tag() {
        for good in ["shoe-aj1", "a", "spring_2027.sizes", &"x".repeat(32)] {
            assert_eq!(Campaign::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Shoe",
            "a b",
            "a{b}",
            "a:b",
            "a}",
            &"x".repeat(33),
            "é",
            "a\n",
        ] {
            assert_eq!(Campaign::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quantities_are_whole_numbers_from_one() {
        let q = |s: &str| Quantity::from_json(Some(&serde_json::from_str(s).unwrap()));
        assert_eq!(Quantity::from_json(None).unwrap(), Quantity::ONE);
        assert_eq!(q("3").unwrap().get(), 3);
        assert_eq!(q("1000").unwrap().get(), 1000);
        for bad in [
            "0", "-1", "1.5", "2.0", "\"2\"", "null", "1001", "[1]", "1e3",
        ] {
            assert!(matches!(q(bad), Err(AppError::BadQuantity)), "{bad}");
        }
    }

    #[test]
    fn buy_keys_are_printable_ascii_up_to_255_bytes_kept_as_a_digest() {
        let k = BuyKey::parse(b"8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
        assert_eq!(k.digest().len(), 32);
        assert!(lower_hex(k.digest(), 32));
        assert_ne!(
            k,
            BuyKey::parse(b"8e03978e-40d5-43e8-bc93-6894a57f9324 ").unwrap()
        );
        assert!(BuyKey::parse(&[b'a'; 255]).is_ok());
        for bad in [
            &b""[..],
            &[b'a'; 256],
            "\u{e9}t\u{e9}".as_bytes(),
            b"a\tb",
            b"a\x7f",
        ] {
            assert!(
                matches!(BuyKey::parse(bad), Err(AppError::BadIdempotencyKey)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(GoodsId::parse("12").unwrap().get(), 12);
        assert_eq!(
            GoodsId::parse("9223372036854775807").unwrap().get(),
            i64::MAX
        );
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "1.5",
            "99999999999999999999",
            "9223372036854775808",
            "+5",
            " 5",
            "05",
            "5\n",
        ] {
            assert!(GoodsId::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<UserId>("0").is_err());
        assert_eq!(serde_json::from_str::<UserId>("5").unwrap().get(), 5);
        assert_eq!(serde_json::from_str::<UserId>("\"5\"").unwrap().get(), 5);
        assert!(serde_json::from_str::<UserId>("\"x\"").is_err());
        assert!(serde_json::from_str::<UserId>("null").is_err());
    }

    #[test]
    fn mobiles_are_eleven_digits_starting_with_one() {
        assert!(Mobile::parse("13800000000").is_ok());
        for bad in [
            "23800000000",
            "1380000000",
            "138000000001",
            "1380000000a",
            "",
        ] {
            assert!(Mobile::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hidden_paths_are_a_user_and_an_md5() {
        let p = HiddenPath::parse("42-0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(p.user().get(), 42);
        assert_eq!(p.digest(), "0123456789abcdef0123456789abcdef");
        assert_eq!(p.to_string(), "42-0123456789abcdef0123456789abcdef");
        for bad in [
            "0123456789abcdef0123456789abcdef", // the form before: no user
            "../etc/passwd",
            "42-0123456789ABCDEF0123456789abcdef",
            "042-0123456789abcdef0123456789abcdef",
            "+42-0123456789abcdef0123456789abcdef",
            "0-0123456789abcdef0123456789abcdef",
            "-0123456789abcdef0123456789abcdef",
            "42-0123456789abcdef0123456789abcde",
            "42--0123456789abcdef0123456789abcde",
            "99999999999999999999-0123456789abcdef0123456789abcdef",
            "9223372036854775808-0123456789abcdef0123456789abcdef",
        ] {
            assert!(HiddenPath::parse(bad).is_err(), "{bad}");
        }
        assert!(HiddenPath::issued(UserId::new(1).unwrap(), "nothex").is_err());
    }

    #[test]
    fn a_path_is_bound_to_a_token_by_its_fingerprint() {
        let p = HiddenPath::parse("7-0123456789abcdef0123456789abcdef").unwrap();
        let a = TokenPrint::of("0123456789abcdef0123456789abcdef");
        let b = TokenPrint::of("fedcba9876543210fedcba9876543210");
        assert_ne!(a, b);
        // the first 16 hex digits of `printf 0123456789abcdef0123456789abcdef | sha1sum`
        assert_eq!(a.to_string(), "b1775a785f09a6eb");
        assert_eq!(TokenPrint::parse(&a.to_string()), Some(a));
        assert_eq!(TokenPrint::parse("xyz"), None);
        assert_eq!(
            p.bound_to(a),
            format!("0123456789abcdef0123456789abcdef.{a}")
        );
    }
}
