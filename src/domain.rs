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
            pub fn parse(s: &str) -> Result<Self, AppError> {
                let v: i64 = s.trim().parse().map_err(|_| {
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

/// A hidden path as issued: 32 lowercase hex digits (an MD5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenPath(String);

impl HiddenPath {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_string()))
        } else {
            Err(AppError::BadPath)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive_integers() {
        assert_eq!(GoodsId::parse("12").unwrap().get(), 12);
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999"] {
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
    fn hidden_paths_are_md5_hex() {
        assert!(HiddenPath::parse("0123456789abcdef0123456789abcdef").is_ok());
        assert!(HiddenPath::parse("../etc/passwd").is_err());
        assert!(HiddenPath::parse("0123456789ABCDEF0123456789abcdef").is_err());
    }
}
