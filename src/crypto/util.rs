//! Small primitives for tokens: hashing, random tokens, constant-time
//! comparison.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt as _;
use sha2::{Digest as _, Sha256};

/// SHA-256 of a string as lowercase hex (used for API tokens and OAuth state
/// hashes, so only the hash is stored and a database leak reveals no token).
#[must_use]
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// `n_bytes` random bytes from a cryptographically secure generator, as
/// base64url without padding (API tokens, OAuth state, PKCE verifiers — all
/// places where the text ends up in URLs or headers).
#[must_use]
pub fn random_token(n_bytes: usize) -> String {
    let mut buf = vec![0u8; n_bytes];
    // `rand::rng()` is the thread-local CSPRNG seeded from the OS.
    rand::rng().fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(&buf)
}

/// The PKCE S256 code challenge of a verifier: base64url (no padding) of its SHA-256.
#[must_use]
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Constant-time comparison of two byte strings.
///
/// The running time depends only on the lengths, never on where the first
/// difference is, so comparing a presented token with a stored one does not
/// leak a prefix. Lengths are not secret here (tokens and hashes have fixed
/// lengths), so a length mismatch returns early.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold back into an
    // early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_tokens() {
        let a = random_token(32);
        let b = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(random_token(0), "");
    }

    #[test]
    fn ct_eq() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
