//! The draw anyone can check: the seed and its commitment, the entries' pseudonymous digests,
//! the order, and the check of a publication (what `flashgate draw verify` and the Python lines
//! of docs/draws.md both do).
//!
//! - The seed is 32 bytes from the OS's CSPRNG, drawn when the sale is made; its SHA-256 (the
//!   commitment) is public from then on, the seed only after the draw. The seed is fixed before
//!   any entry exists, so nobody (flashgate included) can pick a seed that favours an entry.
//! - An entry is published as its digest, HMAC-SHA256(secret, "flashgate-draw-entry:GOODS:USER"):
//!   the shopper is told their own (`GET /api/draws/{goodsId}`), nobody can turn a digest back
//!   into an account without the sale's secret (user ids are small numbers: a plain hash of
//!   one would be reversed by counting).
//! - The order is the entries sorted by HMAC-SHA256(seed, digest), bytes compared; the first
//!   `units` win, the rest are the waitlist in that order.
//!
//! Nothing here does I/O: the same code orders a million entries in the worker and checks a
//! publication in the CLI.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// 32 bytes from the OS's CSPRNG (a seed, or a sale's secret). Never logged.
pub fn fresh_secret() -> [u8; 32] {
    use rand::TryRngCore;
    let mut out = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut out)
        .expect("the OS's random number generator");
    out
}

/// The commitment published before registration opens: hex SHA-256 of the seed.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// An HMAC-SHA256 keyed once, cloned for each message (the key's two blocks are hashed once).
#[derive(Clone)]
pub struct Keyed(HmacSha256);

impl Keyed {
    pub fn new(key: &[u8]) -> Self {
        Self(HmacSha256::new_from_slice(key).expect("HMAC takes any key size"))
    }
    pub fn sign(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(message);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }
}

/// An entry's published digest (see the module comment). Written without an allocation: a
/// draw makes a million of them.
pub fn entry_digest(secret: &Keyed, goods: i64, user: i64) -> [u8; 32] {
    use std::io::Write;
    let mut buf = [0u8; 64];
    let mut at = &mut buf[..];
    write!(at, "flashgate-draw-entry:{goods}:{user}").expect("64 bytes hold two i64s");
    let len = 64 - at.len();
    secret.sign(&buf[..len])
}

/// Runs `f` over `items` and `out` in matching chunks, one thread per core.
pub fn on_every_core<T: Sync, U: Send>(items: &[T], out: &mut [U], f: impl Fn(&T, &mut U) + Sync) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (ins, outs) in items.chunks(per).zip(out.chunks_mut(per)) {
            let f = &f;
            s.spawn(move || ins.iter().zip(outs).for_each(|(i, o)| f(i, o)));
        }
    });
}

/// The indexes of `digests` in the draw's order under `seed` (the keys on every core, then one
/// sort).
pub fn order(seed: &[u8], digests: &[[u8; 32]]) -> Vec<u32> {
    let keyed = Keyed::new(seed);
    let mut ranked = vec![([0u8; 32], 0u32); digests.len()];
    let indexed: Vec<(u32, &[u8; 32])> = (0..).zip(digests).collect();
    on_every_core(&indexed, &mut ranked, |(i, d), out| {
        *out = (keyed.sign(*d), *i)
    });
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// User ids as the order and the log hold them: 16 lower-case hex digits each.
pub fn ids_text(ids: impl ExactSizeIterator<Item = i64>) -> Vec<u8> {
    let mut out = vec![0u8; ids.len() * 16];
    for (id, slot) in ids.zip(out.chunks_exact_mut(16)) {
        hex::encode_to_slice(id.to_be_bytes(), slot).expect("16 digits for 8 bytes");
    }
    out
}

/// What flashgate publishes once a sale is drawn (`GET /api/draws/{goodsId}/published`): enough
/// for anyone to recompute the winners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    pub goods_id: i64,
    /// Units on sale: the first `units` places win.
    pub units: i64,
    pub commitment: String,
    /// The seed, hex.
    pub seed: String,
    /// Every entry's digest (hex), sorted as strings (which says nothing of the order).
    pub entries: Vec<String>,
    /// The winners' digests (hex), in the draw's order.
    pub winners: Vec<String>,
}

impl Publication {
    /// The publication of a draw: `digests` of every entry, `order` as [`order`] gave it.
    pub fn new(
        goods_id: i64,
        units: i64,
        seed: &[u8],
        digests: &[[u8; 32]],
        order: &[u32],
    ) -> Self {
        let mut entries: Vec<String> = digests.iter().map(hex::encode).collect();
        entries.sort_unstable();
        let winners = order
            .iter()
            .take(units.max(0) as usize)
            .map(|&i| hex::encode(digests[i as usize]))
            .collect();
        Self {
            goods_id,
            units,
            commitment: commitment(seed),
            seed: hex::encode(seed),
            entries,
            winners,
        }
    }

    /// Checks the publication on its own: the seed matches the commitment, and the winners are
    /// the first `units` entries in the order the seed gives. `Err` says what does not hold.
    pub fn verify(&self) -> Result<(), String> {
        let seed = hex::decode(&self.seed).map_err(|_| "the seed is not hex".to_string())?;
        if commitment(&seed) != self.commitment {
            return Err("the seed does not match the commitment".into());
        }
        let mut digests = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let mut d = [0u8; 32];
            hex::decode_to_slice(e, &mut d).map_err(|_| format!("entry {e} is not a digest"))?;
            digests.push(d);
        }
        let expected: Vec<String> = order(&seed, &digests)
            .iter()
            .take(self.units.max(0) as usize)
            .map(|&i| hex::encode(digests[i as usize]))
            .collect();
        if expected != self.winners {
            return Err(format!(
                "the winners are not the first {} entries in the seed's order",
                self.units
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Publication {
        let seed = [7u8; 32];
        let secret = Keyed::new(&[1u8; 32]);
        let digests: Vec<[u8; 32]> = (1..=10).map(|u| entry_digest(&secret, 5, u)).collect();
        let order = order(&seed, &digests);
        Publication::new(5, 3, &seed, &digests, &order)
    }

    #[test]
    fn a_publication_verifies_and_a_changed_one_does_not() {
        let p = published();
        assert_eq!((p.entries.len(), p.winners.len()), (10, 3));
        assert_eq!(p.verify(), Ok(()));
        let mut other_seed = p.clone();
        other_seed.seed = hex::encode([8u8; 32]);
        assert_eq!(
            other_seed.verify(),
            Err("the seed does not match the commitment".into())
        );
        let mut swapped = p.clone();
        swapped.winners.swap(0, 1);
        assert!(swapped.verify().is_err());
        let mut other_winner = p.clone();
        let loser = p.entries.iter().find(|e| !p.winners.contains(e)).unwrap();
        other_winner.winners[2] = loser.clone();
        assert!(other_winner.verify().is_err());
    }

    #[test]
    fn the_order_is_the_hmac_order_and_independent_of_arrival() {
        let seed = [3u8; 32];
        let d: Vec<[u8; 32]> = (0..50u8).map(|i| [i; 32]).collect();
        let mut reversed = d.clone();
        reversed.reverse();
        let a: Vec<[u8; 32]> = order(&seed, &d).iter().map(|&i| d[i as usize]).collect();
        let b: Vec<[u8; 32]> = order(&seed, &reversed)
            .iter()
            .map(|&i| reversed[i as usize])
            .collect();
        assert_eq!(a, b);
        let k = Keyed::new(&seed);
        assert!(a.windows(2).all(|w| k.sign(&w[0]) < k.sign(&w[1])));
    }

    #[test]
    fn ids_are_written_as_sixteen_hex_digits() {
        let text = ids_text([1i64, 0xabc, 123_456_789].into_iter());
        assert_eq!(
            String::from_utf8(text).unwrap(),
            format!("{:016x}{:016x}{:016x}", 1, 0xabc, 123_456_789)
        );
        let k = Keyed::new(b"s");
        assert_eq!(
            entry_digest(&k, 5, 77),
            k.sign(b"flashgate-draw-entry:5:77")
        );
    }

    #[test]
    fn the_commitment_is_sha256_of_the_seed() {
        // SHA-256 of 32 zero bytes
        assert_eq!(
            commitment(&[0u8; 32]),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }
}
