//! `crypto` is the only place that sees plaintext secrets on their way to
//! storage.
//!
//! A [`KeyRing`] holds several AES-256-GCM keys, each with a short key id
//! (kid). The first key (the *primary*) seals; every key opens, so keys can be
//! rotated without re-encrypting everything at once.
//!
//! A sealed value is the text `kid:base64url_nopad(nonce ‖ ciphertext ‖ tag)`
//! with a random 96-bit nonce. The additional authenticated data (AAD) binds
//! it to where it is stored — table, column and row id (see [`SealContext`]) —
//! so a sealed value copied to another row or column fails to open.
//!
//! Besides sealing, this module owns the key file on disk
//! ([`load_or_create_key_file`], [`write_key_file`]) and a few small
//! primitives other modules need for tokens: [`sha256_hex`],
//! [`random_token`] and [`constant_time_eq`].

mod keyfile;
mod keyring;
mod secret;
mod util;

pub use keyfile::{load_or_create_key_file, write_key_file};
pub use keyring::{KeyRing, SealContext};
pub use secret::Secret;
pub use util::{constant_time_eq, pkce_s256, random_token, sha256_hex};

/// Everything that can go wrong in this module.
///
/// No variant ever carries key material or plaintext: key ids and file paths
/// are not secret, everything else is described in words only.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The sealed value names a key id that is not in the ring (e.g. the key
    /// was dropped from the key file too early during a rotation).
    #[error("no key with id {0} in the key ring")]
    UnknownKey(String),
    /// The sealed value is not `kid:base64url(nonce ‖ ciphertext ‖ tag)`.
    #[error("the sealed value is malformed")]
    Malformed,
    /// Authentication failed: wrong key, wrong location (table, column, row)
    /// or tampered data. Deliberately does not say which.
    #[error("the sealed value does not open with this key and location")]
    Open,
    /// A key ring specification could not be parsed.
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    /// The key file could not be read, created, written or was refused.
    #[error("key file {path}: {message}")]
    KeyFile {
        /// The key file's path as given.
        path: String,
        /// What went wrong (never includes the file's contents).
        message: String,
    },
}
