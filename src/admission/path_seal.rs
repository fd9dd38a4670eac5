//! The hidden path's seal: a path the edge can check without Redis.
//!
//! A path's 32 hex digits are 8 random bytes (a nonce) and the first 8 bytes of
//! HMAC-SHA256(key, "GOODS:USER:PRINT:" ‖ nonce), PRINT being the fingerprint of the token that
//! asked for it. A buy recomputes the MAC from what it carries (the sale in its body, the user in
//! its path, the fingerprint of its token): an invented path, or a path sent with a token it was
//! not issued to, is refused at the edge (BAD_PATH), before any Redis call, so a script with any
//! 32-hex token no longer runs the admission script on a sale's hot key (security review, row 9).
//! `lua/admit.lua` still compares the path with the one `issue_path.lua` stored, so the seal is
//! a filter in front of the script, never the only check: a path past its TTL, or one issued
//! before a new login, is refused there as before.
//!
//! The key is shared by every edge through Redis (`path:key`, 32 random bytes, made once by the
//! first edge or tool that needs it with `SET NX`), read at start and again at every tidy-up
//! (`startup::TIDY_EVERY`, 30 s); the key before a change is kept, so paths sealed under it still open (a
//! key can change only if Redis lost it: a flush, or a failover to a replica that never had it).
//! 8 bytes of MAC: a guesser has one chance in 2^64 a try, and each try is a request.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hmac::{Hmac, KeyInit, Mac};
use redis::AsyncCommands;
use sha2::Sha256;

use crate::domain::{GoodsId, TokenPrint, UserId};
use crate::plumbing::keys::Keys;
use crate::plumbing::redis_conn::RedisConn;

#[derive(Clone, PartialEq, Eq)]
struct KeyPair {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

/// Seals and opens hidden paths.
pub struct PathSeal {
    keys: ArcSwap<KeyPair>,
}

impl PathSeal {
    /// A seal with this key (tests, and [`PathSeal::load`]).
    pub fn with_key(key: [u8; 32]) -> Self {
        Self {
            keys: ArcSwap::from_pointee(KeyPair {
                current: key,
                previous: None,
            }),
        }
    }

    /// The shared key from Redis, made there first if no one has yet.
    pub async fn load(redis: &RedisConn, keys: &Keys) -> redis::RedisResult<Self> {
        Ok(Self::with_key(shared_key(redis, keys).await?))
    }

    /// Reads the shared key again; a new one becomes current, the old one previous.
    pub async fn refresh(&self, redis: &RedisConn, keys: &Keys) -> redis::RedisResult<()> {
        let key = shared_key(redis, keys).await?;
        let now = self.keys.load();
        if key != now.current {
            tracing::warn!(
                "the hidden paths' key changed in Redis: paths sealed before still open"
            );
            self.keys.store(Arc::new(KeyPair {
                current: key,
                previous: Some(now.current),
            }));
        }
        Ok(())
    }

    /// A key for `label` derived from the shared key (HMAC-SHA256(key, label)): another secret
    /// every edge holds alike (the waiting room's proof-of-work challenges are signed with one).
    /// A challenge signed before the shared key changed no longer checks: the page asks again.
    pub fn derived(&self, label: &str) -> [u8; 32] {
        let mut m =
            Hmac::<Sha256>::new_from_slice(&self.keys.load().current).expect("HMAC takes any key");
        m.update(label.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// A fresh path digest for `user` in `goods`, asked for with the token of `print`.
    pub fn seal(&self, goods: GoodsId, user: UserId, print: TokenPrint) -> String {
        let nonce: [u8; 8] = rand::random();
        let mac = mac(&self.keys.load().current, goods, user, print, &nonce);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&nonce);
        out[8..].copy_from_slice(&mac);
        hex::encode(out)
    }

    /// Whether `digest` was sealed for `user` in `goods` with the token of `print`.
    pub fn opens(&self, goods: GoodsId, user: UserId, print: TokenPrint, digest: &str) -> bool {
        let mut raw = [0u8; 16];
        if hex::decode_to_slice(digest, &mut raw).is_err() {
            return false;
        }
        let (nonce, got) = raw.split_at(8);
        let pair = self.keys.load();
        std::iter::once(&pair.current)
            .chain(pair.previous.as_ref())
            .any(|key| {
                let want = mac(key, goods, user, print, nonce);
                crate::accounts::password::constant_time_eq(&want, got)
            })
    }
}

fn mac(key: &[u8; 32], goods: GoodsId, user: UserId, print: TokenPrint, nonce: &[u8]) -> [u8; 8] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key size");
    m.update(format!("{}:{}:{}:", goods.get(), user.get(), print).as_bytes());
    m.update(nonce);
    let full = m.finalize().into_bytes();
    full[..8].try_into().expect("SHA-256 has 32 bytes")
}

/// `path:key` from Redis (64 hex digits), written first from the OS's generator if absent.
async fn shared_key(redis: &RedisConn, keys: &Keys) -> redis::RedisResult<[u8; 32]> {
    let mut con = redis.clone();
    let name = keys.path_key();
    let fresh = hex::encode(rand::random::<[u8; 32]>());
    let _: Option<String> = redis::cmd("SET")
        .arg(&name)
        .arg(&fresh)
        .arg("NX")
        .query_async(&mut con)
        .await?;
    let stored: String = con.get(&name).await?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(stored.trim(), &mut key).map_err(|_| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "path:key is not 64 hex digits",
        ))
    })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (GoodsId, UserId, TokenPrint) {
        (
            GoodsId::new(7).unwrap(),
            UserId::new(42).unwrap(),
            TokenPrint::of("0123456789abcdef0123456789abcdef"),
        )
    }

    #[test]
    fn a_sealed_path_opens_only_for_its_sale_user_and_token() {
        let seal = PathSeal::with_key([9; 32]);
        let (g, u, p) = ids();
        let d = seal.seal(g, u, p);
        assert!(crate::domain::lower_hex(&d, 32));
        assert!(seal.opens(g, u, p, &d));
        assert!(!seal.opens(GoodsId::new(8).unwrap(), u, p, &d));
        assert!(!seal.opens(g, UserId::new(43).unwrap(), p, &d));
        assert!(!seal.opens(g, u, TokenPrint::of("another token"), &d));
        assert!(!seal.opens(g, u, p, "0123456789abcdef0123456789abcdef"));
        assert!(!seal.opens(g, u, p, "not hex"));
        // two seals of one path differ (a fresh nonce each)
        assert_ne!(d, seal.seal(g, u, p));
        // another key does not open it
        assert!(!PathSeal::with_key([8; 32]).opens(g, u, p, &d));
    }

    #[test]
    fn a_path_sealed_under_the_key_before_a_change_still_opens() {
        let seal = PathSeal::with_key([1; 32]);
        let (g, u, p) = ids();
        let old = seal.seal(g, u, p);
        seal.keys.store(Arc::new(KeyPair {
            current: [2; 32],
            previous: Some([1; 32]),
        }));
        assert!(seal.opens(g, u, p, &old));
        assert!(seal.opens(g, u, p, &seal.seal(g, u, p)));
    }
}
