//! The login's double MD5: the page hashes the password with a fixed client salt, the server
//! hashes that again with the user's own salt (docs/api.md, "Login").
//!
//! The page sends `md5(s[0] + s[2] + plain + s[5] + s[4])` with the fixed client salt
//! [`CLIENT_SALT`]; the server stores `md5(s'[0] + s'[2] + thatHash + s'[5] + s'[4])` with a
//! per-user random salt `s'`, and compares in constant time.

use md5::{Digest, Md5};
use rand::Rng;

/// The fixed salt the login page mixes into the password before sending it.
pub const CLIENT_SALT: &str = "1a2b3c4d";

/// `md5(salt[0] + salt[2] + input + salt[5] + salt[4])`, lowercase hex. The salt must have at
/// least six characters.
pub fn salted_md5(input: &str, salt: &str) -> String {
    let s: Vec<char> = salt.chars().collect();
    let mixed = format!("{}{}{}{}{}", s[0], s[2], input, s[5], s[4]);
    hex::encode(Md5::digest(mixed.as_bytes()))
}

/// What the login page sends for `plain`.
pub fn client_hash(plain: &str) -> String {
    salted_md5(plain, CLIENT_SALT)
}

/// What the server stores for a client hash and a user's salt.
pub fn server_hash(client_hash: &str, salt: &str) -> String {
    salted_md5(client_hash, salt)
}

/// A new random per-user salt (eight alphanumerics).
pub fn new_salt() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(8)
        .map(char::from)
        .collect()
}

/// Whether `client_hash` with `salt` gives `stored` (compared in constant time).
pub fn verify(client_hash: &str, salt: &str, stored: &str) -> bool {
    if salt.chars().count() < 6 {
        return false;
    }
    constant_time_eq(server_hash(client_hash, salt).as_bytes(), stored.as_bytes())
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
    fn verify_accepts_the_right_hash_only() {
        let salt = new_salt();
        let stored = server_hash(&client_hash("secret"), &salt);
        assert!(verify(&client_hash("secret"), &salt, &stored));
        assert!(!verify(&client_hash("Secret"), &salt, &stored));
        assert!(!verify(&client_hash("secret"), "short", &stored));
    }
}
