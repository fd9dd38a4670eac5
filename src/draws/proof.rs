//! Entries cost bots: a proof of work in the ALTCHA v1 form, ~50 lines of our own on the `sha2`
//! and `hmac` the crate already has (docs/draws.md says why not the `altcha-lib-rs` crate).
//!
//! The edge picks a salt (random hex, then `?expires=S&g=GOODS&a=ADDRESS&`: the trailing `&`
//! keeps a number appended to the salt from extending its last parameter) and a secret number
//! n ≤ `maxnumber`, and sends `challenge = hex SHA-256(salt ‖ n)` with
//! `signature = hex HMAC-SHA256(key, challenge)`. The page counts up from 0 in a Web Worker
//! until the hash matches (at most `maxnumber + 1` hashes) and sends back
//! `base64(JSON {algorithm, challenge, number, salt, signature})`. Checking it is one hash and
//! one HMAC, here, with no I/O; that it was not used before is checked by `lua/draw_enter.lua`
//! in the call that records the entry. The salt's `g` and `a` bind a proof to its sale and to
//! the address that asked (an IPv6 address by its /64).

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::order::Keyed;

/// How long a challenge may be solved and used.
pub const CHALLENGE_TTL_MS: i64 = 10 * 60 * 1000;
/// The most characters of a proof taken (an ALTCHA payload is ~300).
pub const MAX_PROOF: usize = 2048;

/// A challenge, as the page gets it (the field names are ALTCHA's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub algorithm: String,
    pub challenge: String,
    pub maxnumber: u64,
    pub salt: String,
    pub signature: String,
}

/// A solution, as the page sends it back (base64 of this JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Solution {
    pub algorithm: String,
    pub challenge: String,
    pub number: u64,
    pub salt: String,
    pub signature: String,
}

/// Why a proof is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Missing, not base64 JSON of a solution, or not SHA-256.
    Malformed,
    /// The signature is not ours, or the number does not solve the challenge.
    Forged,
    /// Past its expiry.
    Expired,
    /// For another sale, or asked for from another address.
    Elsewhere,
}

/// Where a challenge is for: a sale and an address digest (`address_digest`).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub goods: i64,
    pub address: &'a str,
}

fn sha256_hex(salt: &str, number: u64) -> String {
    hex::encode(Sha256::digest(format!("{salt}{number}").as_bytes()))
}

/// A new challenge for `scope`, solvable in at most `maxnumber + 1` hashes.
pub fn issue(key: &Keyed, scope: Scope<'_>, maxnumber: u64, now_ms: i64) -> Challenge {
    let random: [u8; 12] = rand::random();
    let expires = (now_ms + CHALLENGE_TTL_MS) / 1000;
    let salt = format!(
        "{}?expires={expires}&g={}&a={}&m={maxnumber}&",
        hex::encode(random),
        scope.goods,
        scope.address
    );
    let n = rand::random_range(0..=maxnumber);
    let challenge = sha256_hex(&salt, n);
    Challenge {
        algorithm: "SHA-256".into(),
        signature: hex::encode(key.sign(challenge.as_bytes())),
        challenge,
        maxnumber,
        salt,
    }
}

/// Checks `proof` (base64 JSON) for `scope` at `now_ms`: one hash, one HMAC. On success, the
/// challenge (the replay key), its expiry in ms, and the work it was issued with (`maxnumber`,
/// from the salt we signed: the entry compares it with what the address must do now).
pub fn verify(
    key: &Keyed,
    proof: &str,
    scope: Scope<'_>,
    now_ms: i64,
) -> Result<(String, i64, u64), Fault> {
    if proof.is_empty() || proof.len() > MAX_PROOF {
        return Err(Fault::Malformed);
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(proof.trim())
        .map_err(|_| Fault::Malformed)?;
    let s: Solution = serde_json::from_slice(&json).map_err(|_| Fault::Malformed)?;
    if s.algorithm != "SHA-256" {
        return Err(Fault::Malformed);
    }
    let expected = key.sign(s.challenge.as_bytes());
    let mut given = [0u8; 32];
    let signed =
        hex::decode_to_slice(&s.signature, &mut given).is_ok() && constant_eq(&expected, &given);
    if !signed || sha256_hex(&s.salt, s.number) != s.challenge {
        return Err(Fault::Forged);
    }
    // signed by us: the salt is ours, so its parameters are what we wrote
    let params = s
        .salt
        .split_once('?')
        .map(|(_, p)| p)
        .filter(|p| p.ends_with('&'))
        .ok_or(Fault::Malformed)?;
    let get = |name: &str| {
        params
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let expires_ms = get("expires")
        .and_then(|e| e.parse::<i64>().ok())
        .ok_or(Fault::Malformed)?
        * 1000;
    if expires_ms <= now_ms {
        return Err(Fault::Expired);
    }
    if get("g") != Some(&scope.goods.to_string()) || get("a") != Some(scope.address) {
        return Err(Fault::Elsewhere);
    }
    let work = get("m")
        .and_then(|m| m.parse::<u64>().ok())
        .ok_or(Fault::Malformed)?;
    Ok((s.challenge, expires_ms, work))
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an address is counted as: an IPv4 address whole, an IPv6 address by its /64 (one
/// subscriber's prefix), as a short keyed digest (the counts never hold addresses).
pub fn address_digest(secret: &Keyed, ip: std::net::IpAddr) -> String {
    let net = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    };
    hex::encode(&secret.sign(format!("flashgate-draw-address:{net}").as_bytes())[..8])
}

/// The difficulty for an address that brought `entries` already: `base` for the first
/// `per_address`, then doubled for every further `per_address`, at most 1024 times `base`
/// (`per_address` 0: always `base`).
pub fn difficulty(base: u64, per_address: u64, entries: u64) -> u64 {
    if per_address == 0 {
        return base;
    }
    let doublings = (entries / per_address).min(10) as u32;
    base.saturating_mul(1 << doublings)
}

/// Solves `c` by counting up, as the page's Web Worker does (tests and the load tool).
pub fn solve(c: &Challenge) -> Option<String> {
    let number = (0..=c.maxnumber).find(|&n| sha256_hex(&c.salt, n) == c.challenge)?;
    let s = Solution {
        algorithm: c.algorithm.clone(),
        challenge: c.challenge.clone(),
        number,
        salt: c.salt.clone(),
        signature: c.signature.clone(),
    };
    Some(base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key() -> Keyed {
        Keyed::new(b"k")
    }

    fn scope() -> Scope<'static> {
        Scope {
            goods: 9,
            address: "abcd",
        }
    }

    #[test]
    fn a_solved_challenge_verifies_once_for_its_scope_and_time() {
        let c = issue(&key(), scope(), 500, NOW);
        let proof = solve(&c).unwrap();
        let (challenge, exp, work) = verify(&key(), &proof, scope(), NOW).unwrap();
        assert_eq!(
            (challenge, exp, work),
            (c.challenge.clone(), NOW + CHALLENGE_TTL_MS, 500)
        );
        assert_eq!(
            verify(&key(), &proof, scope(), NOW + CHALLENGE_TTL_MS),
            Err(Fault::Expired)
        );
        let other_sale = Scope {
            goods: 10,
            ..scope()
        };
        assert_eq!(
            verify(&key(), &proof, other_sale, NOW),
            Err(Fault::Elsewhere)
        );
        let other_address = Scope {
            address: "ffff",
            ..scope()
        };
        assert_eq!(
            verify(&key(), &proof, other_address, NOW),
            Err(Fault::Elsewhere)
        );
        assert_eq!(
            verify(&Keyed::new(b"other"), &proof, scope(), NOW),
            Err(Fault::Forged)
        );
        assert_eq!(
            verify(&key(), "not base64!", scope(), NOW),
            Err(Fault::Malformed)
        );
    }

    #[test]
    fn a_wrong_number_or_a_changed_salt_is_forged() {
        let c = issue(&key(), scope(), 100, NOW);
        let mut s: Solution = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(solve(&c).unwrap())
                .unwrap(),
        )
        .unwrap();
        s.number += 1;
        let wrong =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).unwrap());
        assert_eq!(verify(&key(), &wrong, scope(), NOW), Err(Fault::Forged));
        s.number -= 1;
        s.salt = s.salt.replace("g=9", "g=10");
        let moved =
            base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).unwrap());
        assert_eq!(verify(&key(), &moved, scope(), NOW), Err(Fault::Forged));
    }

    #[test]
    fn difficulty_doubles_per_address_and_ipv6_counts_by_64() {
        assert_eq!(difficulty(1000, 0, 500), 1000);
        assert_eq!(difficulty(1000, 5, 4), 1000);
        assert_eq!(difficulty(1000, 5, 5), 2000);
        assert_eq!(difficulty(1000, 5, 12), 4000);
        assert_eq!(difficulty(1000, 5, 10_000), 1024 * 1000);
        let k = key();
        let a = address_digest(&k, "2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = address_digest(&k, "2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = address_digest(&k, "2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
