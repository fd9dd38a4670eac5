//! Passwords: what the page sends, what the server stores, and how a login checks one against
//! the other (docs/api.md, "Login").
//!
//! On the wire nothing changed: the page sends the *client hash*, `md5(s[0] + s[2] + plain + s[5]
//! + s[4])` with the fixed client salt [`CLIENT_SALT`] (pages, k6 and JMeter plans send it).
//!
//! Stored is `Argon2id(client hash, per-user random salt)` in PHC form,
//! `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`: a deliberately slow, memory-hard function (OWASP's
//! password storage guidance), so a leaked `users` table costs an attacker ~19 MiB and tens of
//! milliseconds per guess per user instead of MD5's billions a second. The parameters live in the
//! string, so raising the cost ([`Cost`], `FLASHGATE_PASSWORD_*`) applies to new hashes and old
//! ones still verify; a login with a hash weaker than the current cost rewrites it.
//!
//! A row from before (32 hex digits in `password`, its salt in `salt`: the old server MD5 round,
//! `md5(s'[0] + s'[2] + clientHash + s'[5] + s'[4])`) still logs in, once: that login rewrites it
//! as Argon2id. A stored string that is neither form never logs in, and never panics.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use md5::{Digest, Md5};

/// The fixed salt the login page mixes into the password before sending it.
pub const CLIENT_SALT: &str = "1a2b3c4d";

/// OWASP's minimum Argon2id settings, any one row of which is enough: memory (KiB) and
/// iterations, with one lane. [`Cost::check`] refuses anything weaker than all of them.
const OWASP_MINIMUMS: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// The most a stored hash may ask for before we refuse to verify it: a row edited to ask for
/// gigabytes must not take the edge down.
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 64;
const MAX_LANES: u32 = 16;

/// Argon2id's cost for new hashes: memory in KiB, iterations, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl Default for Cost {
    /// OWASP's recommended row: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            lanes: 1,
        }
    }
}

impl Cost {
    /// Refuses a cost below OWASP's minimum or above what a stored hash may ask for.
    pub fn check(&self) -> Result<(), String> {
        let weak = !OWASP_MINIMUMS
            .iter()
            .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t);
        if weak {
            return Err(format!(
                "password cost m={} KiB, t={} is below OWASP's minimum for Argon2id \
                 (m=19456 KiB with t=2, or m=47104 with t=1, 12288 with 3, 9216 with 4, 7168 with 5)",
                self.memory_kib, self.iterations
            ));
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || self.iterations > MAX_ITERATIONS
            || self.lanes == 0
            || self.lanes > MAX_LANES
        {
            return Err(format!(
                "password cost out of range: memory ≤ {MAX_MEMORY_KIB} KiB, iterations ≤ \
                 {MAX_ITERATIONS}, lanes 1..={MAX_LANES}"
            ));
        }
        Ok(())
    }

    fn params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.memory_kib, self.iterations, self.lanes, None)
    }

    /// Whether a hash made with `other` is weaker than one made with this cost.
    fn above(&self, other: &Params) -> bool {
        other.m_cost() < self.memory_kib
            || other.t_cost() < self.iterations
            || other.p_cost() < self.lanes
    }
}

/// `md5(salt[0] + salt[2] + input + salt[5] + salt[4])`, lowercase hex; `None` when the salt has
/// fewer than six characters.
fn salted_md5(input: &str, salt: &str) -> Option<String> {
    let s: Vec<char> = salt.chars().collect();
    if s.len() < 6 {
        return None;
    }
    let mixed = format!("{}{}{}{}{}", s[0], s[2], input, s[5], s[4]);
    Some(hex::encode(Md5::digest(mixed.as_bytes())))
}

/// What the login page sends for `plain`.
pub fn client_hash(plain: &str) -> String {
    salted_md5(plain, CLIENT_SALT).expect("the client salt has eight characters")
}

/// Whether `s` is a client hash as the page sends it: 32 hex digits.
pub fn is_client_hash(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The old stored form of a client hash with `salt` (the server MD5 round). Only tests and the
/// upgrade path need it: nothing writes it any more.
pub fn legacy_md5(client_hash: &str, salt: &str) -> Option<String> {
    salted_md5(client_hash, salt)
}

/// The stored Argon2id string (PHC form) for `client_hash`, with a fresh random salt.
pub fn hash(client_hash: &str, cost: Cost) -> anyhow::Result<String> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params()?);
    let salt = argon2::password_hash::generate_salt();
    let phc = argon
        .hash_password_with_salt(client_hash.to_ascii_lowercase().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2id: {e}"))?;
    Ok(phc.to_string())
}

/// What a `users` row stores, as read from its `password` and `salt` columns.
#[derive(Debug)]
pub enum Stored {
    Argon2id(Box<PasswordHash>),
    LegacyMd5 {
        hash: String,
        salt: String,
    },
    /// Neither form (or an Argon2 hash asking for more than [`Cost::check`] allows): never logs
    /// in. The reason is for the log.
    Unreadable(&'static str),
}

impl Stored {
    pub fn parse(password: &str, salt: &str) -> Self {
        if password.starts_with('$') {
            let Ok(phc) = PasswordHash::new(password) else {
                return Stored::Unreadable("not a PHC string");
            };
            if phc.algorithm.as_str() != "argon2id" {
                return Stored::Unreadable("a PHC string of another algorithm than argon2id");
            }
            let Ok(params) = Params::try_from(&phc) else {
                return Stored::Unreadable("argon2id parameters out of range");
            };
            if params.m_cost() > MAX_MEMORY_KIB
                || params.t_cost() > MAX_ITERATIONS
                || params.p_cost() > MAX_LANES
            {
                return Stored::Unreadable("argon2id parameters above what a login may spend");
            }
            if phc.salt.is_none() || phc.hash.is_none() {
                return Stored::Unreadable("argon2id string without a salt or a hash");
            }
            return Stored::Argon2id(Box::new(phc));
        }
        if is_client_hash(password) && salt.chars().count() >= 6 {
            return Stored::LegacyMd5 {
                hash: password.to_ascii_lowercase(),
                salt: salt.to_owned(),
            };
        }
        Stored::Unreadable("neither an argon2id string nor an MD5 hash with its salt")
    }
}

/// The outcome of a password check.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The right password; `rehash` when the stored form is the old MD5 or weaker than `cost`.
    Right {
        rehash: bool,
    },
    Wrong,
    Unreadable(&'static str),
}

/// Checks `client_hash` against `stored`. Both comparisons are constant-time: Argon2's output
/// comparison is, and the legacy MD5 is compared by [`constant_time_eq`]. Slow by design (one
/// Argon2id hash): call it on the login pool, never on an async worker.
pub fn verify(client_hash: &str, stored: &Stored, cost: Cost) -> Verdict {
    let client_hash = client_hash.to_ascii_lowercase();
    match stored {
        Stored::Argon2id(phc) => {
            let argon = Argon2::default();
            match argon.verify_password(client_hash.as_bytes(), phc.as_ref()) {
                Ok(()) => Verdict::Right {
                    rehash: Params::try_from(phc.as_ref()).is_ok_and(|p| cost.above(&p)),
                },
                Err(_) => Verdict::Wrong,
            }
        }
        Stored::LegacyMd5 { hash, salt } => match salted_md5(&client_hash, salt) {
            Some(h) if constant_time_eq(h.as_bytes(), hash.as_bytes()) => {
                Verdict::Right { rehash: true }
            }
            _ => Verdict::Wrong,
        },
        Stored::Unreadable(why) => Verdict::Unreadable(why),
    }
}

/// Compares two secrets without stopping at the first difference (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hash_matches_the_documented_formula() {
        // md5("12" + "123456" + "c3") computed independently with `printf 12123456c3 | md5sum`.
        assert_eq!(client_hash("123456"), "d3b1294a61a07da9b49b6e22b2cbd7f9");
    }

    #[test]
    fn a_new_hash_is_argon2id_in_phc_form_with_the_cost_asked_for() {
        let cost = Cost {
            memory_kib: 47_104,
            iterations: 1,
            lanes: 1,
        };
        let stored = hash(&client_hash("secret"), cost).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"),
            "{stored}"
        );
        let parsed = Stored::parse(&stored, "");
        assert_eq!(
            verify(&client_hash("secret"), &parsed, cost),
            Verdict::Right { rehash: false }
        );
        assert_eq!(
            verify(&client_hash("Secret"), &parsed, cost),
            Verdict::Wrong
        );
        // the same password hashes differently each time: the salt is per hash
        assert_ne!(stored, hash(&client_hash("secret"), cost).unwrap());
    }

    #[test]
    fn a_hash_weaker_than_the_current_cost_asks_to_be_rehashed() {
        let old = Cost::default();
        let stored = Stored::parse(&hash(&client_hash("pw"), old).unwrap(), "");
        let raised = Cost {
            memory_kib: 2 * old.memory_kib,
            ..old
        };
        assert_eq!(
            verify(&client_hash("pw"), &stored, raised),
            Verdict::Right { rehash: true }
        );
    }

    #[test]
    fn a_legacy_md5_row_verifies_and_asks_to_be_rehashed() {
        let salt = "x9Kq2LmZ";
        let old = legacy_md5(&client_hash("secret"), salt).unwrap();
        let stored = Stored::parse(&old, salt);
        assert!(matches!(stored, Stored::LegacyMd5 { .. }));
        let cost = Cost::default();
        assert_eq!(
            verify(&client_hash("secret"), &stored, cost),
            Verdict::Right { rehash: true }
        );
        assert_eq!(verify(&client_hash("other"), &stored, cost), Verdict::Wrong);
    }

    #[test]
    fn a_stored_string_of_neither_form_never_logs_in_and_never_panics() {
        let cost = Cost::default();
        let pw = client_hash("secret");
        for (password, salt) in [
            ("", ""),
            ("plain-text-password", "saltsalt"),
            (&*legacy_md5(&pw, "abcdef").unwrap(), "abc"), // salt too short
            ("$argon2id$", ""),
            ("$argon2id$v=19$m=19456,t=2,p=1$", ""),
            (
                "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "",
            ),
            (
                "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "",
            ),
            ("$2b$12$abcdefghijklmnopqrstuuJx8GJ3m4b9bD1X8ZfC1Lk2", ""),
            (&"9".repeat(10_000), "saltsalt"),
        ] {
            let stored = Stored::parse(password, salt);
            assert!(
                matches!(verify(&pw, &stored, cost), Verdict::Unreadable(_)),
                "{password:.40} with salt {salt:?} gave {stored:?}"
            );
        }
    }

    #[test]
    fn costs_below_owasp_or_out_of_range_are_refused() {
        assert!(Cost::default().check().is_ok());
        for (m, t, p) in [(19_455, 2, 1), (19_456, 1, 1), (7_168, 4, 1), (0, 0, 1)] {
            let c = Cost {
                memory_kib: m,
                iterations: t,
                lanes: p,
            };
            assert!(c.check().is_err(), "{c:?}");
        }
        for c in [
            Cost {
                lanes: 0,
                ..Cost::default()
            },
            Cost {
                memory_kib: MAX_MEMORY_KIB + 1,
                ..Cost::default()
            },
        ] {
            assert!(c.check().is_err(), "{c:?}");
        }
    }
}
