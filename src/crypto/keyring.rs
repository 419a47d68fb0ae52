//! [`KeyRing`]: AES-256-GCM keys with ids, sealing and opening values bound
//! to their storage location.

use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead as _, Generate as _, Key, KeyInit as _, Nonce, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD, URL_SAFE_PAD_INDIFFERENT,
};
use rand::RngExt as _;

use super::{CryptoError, Secret};

/// AES-256 key length in bytes.
const KEY_LEN: usize = 32;
/// AES-GCM standard nonce length (96 bits), random per sealed value.
const NONCE_LEN: usize = 12;
/// AES-GCM authentication tag length.
const TAG_LEN: usize = 16;
/// Longest accepted key id; kids are stored in front of every sealed value,
/// so they are kept short.
const MAX_KID_LEN: usize = 32;

/// Where a sealed value lives; becomes the AAD (`table\0column\0row_id`).
///
/// Binding the location into the authentication tag means a value copied to
/// another row, column or table (e.g. by someone with write access to the
/// database) fails to open instead of silently handing one server's secret to
/// another. `table` and `column` are expected to be code constants without NUL
/// bytes; `row_id` is last, so a NUL inside it cannot make two different
/// locations produce the same AAD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealContext<'a> {
    /// Table name, e.g. `"servers"`.
    pub table: &'a str,
    /// Column name, e.g. `"oauth_client_secret"`.
    pub column: &'a str,
    /// Primary key of the row, as text.
    pub row_id: &'a str,
}

impl<'a> SealContext<'a> {
    /// Describes the storage location of a sealed value.
    #[must_use]
    pub const fn new(table: &'a str, column: &'a str, row_id: &'a str) -> Self {
        Self {
            table,
            column,
            row_id,
        }
    }

    /// The associated data authenticated along with the ciphertext.
    fn aad(&self) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(self.table.len() + self.column.len() + self.row_id.len() + 2);
        aad.extend_from_slice(self.table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.column.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.row_id.as_bytes());
        aad
    }
}

/// One key of the ring. Holds the raw key only so the ring can be written
/// back to the key file; it is never printed.
struct KeyEntry {
    kid: String,
    key: [u8; KEY_LEN],
    cipher: Aes256Gcm,
}

impl KeyEntry {
    fn new(kid: String, key: [u8; KEY_LEN]) -> Self {
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(key));
        Self { kid, key, cipher }
    }

    /// A fresh key from the operating system's CSPRNG, with a random kid that
    /// is not taken by any key in `taken`.
    fn generate(taken: &[&str]) -> Self {
        let key: [u8; KEY_LEN] = Key::<Aes256Gcm>::generate().into();
        let mut rng = rand::rng();
        loop {
            let mut id = [0u8; 4];
            rng.fill(&mut id[..]);
            let kid = format!("k{}", hex::encode(id));
            // A clash is a 1-in-4-billion event per existing key, but a
            // duplicate kid would make older values unopenable, so retry.
            if !taken.contains(&kid.as_str()) {
                return Self::new(kid, key);
            }
        }
    }

    fn copy(&self) -> Self {
        Self::new(self.kid.clone(), self.key)
    }
}

/// The ring's keys. The primary is stored apart from the rest so that "a ring
/// always has a key to seal with" holds by construction.
struct Inner {
    primary: KeyEntry,
    older: Vec<KeyEntry>,
}

impl Inner {
    fn keys(&self) -> impl Iterator<Item = &KeyEntry> {
        std::iter::once(&self.primary).chain(&self.older)
    }

    fn find(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys().find(|k| k.kid == kid)
    }
}

/// A set of AES-256-GCM keys with ids. The first (primary) key seals; every
/// key opens, which allows rotating keys while old values are still stored.
///
/// Cloning is cheap (the keys sit behind an `Arc`). `Debug` prints only the
/// key ids, never key bytes.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl KeyRing {
    fn from_entries(mut entries: Vec<KeyEntry>) -> Option<Self> {
        if entries.is_empty() {
            return None;
        }
        let primary = entries.remove(0);
        Some(Self {
            inner: Arc::new(Inner {
                primary,
                older: entries,
            }),
        })
    }

    /// Parses `"kid1:key1,kid2:key2"` — entries separated by commas or
    /// newlines; the first entry becomes the primary.
    ///
    /// A key is 32 bytes written as 64 hex characters or as standard or
    /// url-safe base64 (padding optional). A kid is 1 to 32 characters of
    /// `[A-Za-z0-9_-]`. Surrounding whitespace, empty entries and lines
    /// starting with `#` are ignored (the key file carries a comment header).
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] on a malformed entry, bad kid, key that is
    /// not 32 bytes, duplicate kid, or when no key is given. The message names
    /// the entry or kid but never echoes key material.
    pub fn parse(spec: &str) -> Result<KeyRing, CryptoError> {
        let mut entries: Vec<KeyEntry> = Vec::new();
        let items = spec
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|item| !item.is_empty());
        for item in items {
            let n = entries.len() + 1;
            // The entry itself is not echoed: if it has no ':' it may well be
            // a bare key.
            let (kid, key) = item.split_once(':').ok_or_else(|| {
                CryptoError::InvalidKey(format!("entry {n} is not of the form kid:key"))
            })?;
            let (kid, key) = (kid.trim(), key.trim());
            if !is_valid_kid(kid) {
                return Err(CryptoError::InvalidKey(format!(
                    "entry {n}: a key id must be 1 to {MAX_KID_LEN} characters of A-Z, a-z, 0-9, _ and -"
                )));
            }
            if entries.iter().any(|e| e.kid == kid) {
                return Err(CryptoError::InvalidKey(format!("duplicate key id {kid}")));
            }
            let key = decode_key(key).ok_or_else(|| {
                CryptoError::InvalidKey(format!(
                    "key {kid} is not 32 bytes written as 64 hex characters or base64"
                ))
            })?;
            entries.push(KeyEntry::new(kid.to_owned(), key));
        }
        Self::from_entries(entries)
            .ok_or_else(|| CryptoError::InvalidKey("no keys given".to_owned()))
    }

    /// A ring with one fresh random key; its kid is `k` followed by 8 random
    /// hex characters.
    ///
    /// # Panics
    /// Only if the operating system's random number generator fails.
    #[must_use]
    pub fn generate() -> KeyRing {
        KeyRing {
            inner: Arc::new(Inner {
                primary: KeyEntry::generate(&[]),
                older: Vec::new(),
            }),
        }
    }

    /// A new ring whose primary is a freshly generated key and which keeps
    /// all existing keys after it (the old primary first), so values sealed
    /// earlier still open. `self` is left unchanged.
    ///
    /// # Panics
    /// Only if the operating system's random number generator fails.
    #[must_use]
    pub fn with_new_primary(&self) -> KeyRing {
        let taken: Vec<&str> = self.inner.keys().map(|k| k.kid.as_str()).collect();
        KeyRing {
            inner: Arc::new(Inner {
                primary: KeyEntry::generate(&taken),
                older: self.inner.keys().map(KeyEntry::copy).collect(),
            }),
        }
    }

    /// Key id of the key that seals.
    #[must_use]
    pub fn primary_kid(&self) -> &str {
        &self.inner.primary.kid
    }

    /// All key ids, primary first.
    #[must_use]
    pub fn kids(&self) -> Vec<String> {
        self.inner.keys().map(|k| k.kid.clone()).collect()
    }

    /// Serializes the ring in the format [`KeyRing::parse`] reads: one
    /// `kid:hexkey` per line, primary first. Only meant for writing the key
    /// file, hence wrapped in a [`Secret`].
    #[must_use]
    pub fn to_spec(&self) -> Secret {
        let mut spec = String::new();
        for k in self.inner.keys() {
            spec.push_str(&k.kid);
            spec.push(':');
            spec.push_str(&hex::encode(k.key));
            spec.push('\n');
        }
        Secret::new(spec)
    }

    /// Encrypts `plaintext` with the primary key and a random nonce, bound to
    /// `ctx`. Returns `kid:base64url_nopad(nonce ‖ ciphertext ‖ tag)`.
    ///
    /// # Panics
    /// Only if the operating system's random number generator fails, or for a
    /// plaintext over 64 GiB (the AES-GCM limit).
    #[must_use]
    pub fn seal(&self, plaintext: &[u8], ctx: SealContext<'_>) -> String {
        let key = &self.inner.primary;
        // OS randomness per value; with 96-bit random nonces a key stays safe
        // for far more values than this server will ever store.
        let nonce = Nonce::<Aes256Gcm>::generate();
        let aad = ctx.aad();
        #[allow(
            clippy::expect_used,
            reason = "AES-GCM encryption only fails for plaintexts over 64 GiB or AAD over 2^61 bytes, which cannot occur for stored secrets"
        )]
        let ciphertext = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM input within size limits");
        let mut raw = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&ciphertext);
        format!("{}:{}", key.kid, URL_SAFE_NO_PAD.encode(&raw))
    }

    /// Decrypts a value produced by [`KeyRing::seal`] with the key it names,
    /// checking that it was sealed for exactly this `ctx`.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] if the text is not a sealed value,
    /// [`CryptoError::UnknownKey`] if its kid is not in the ring,
    /// [`CryptoError::Open`] if authentication fails (wrong location, wrong
    /// key or tampered data).
    pub fn open(&self, sealed: &str, ctx: SealContext<'_>) -> Result<Vec<u8>, CryptoError> {
        let (kid, body) = split_sealed(sealed).ok_or(CryptoError::Malformed)?;
        let key = self
            .inner
            .find(kid)
            .ok_or_else(|| CryptoError::UnknownKey(kid.to_owned()))?;
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| CryptoError::Malformed)?;
        let aad = ctx.aad();
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Open)
    }

    /// [`KeyRing::seal`] for text.
    #[must_use]
    pub fn seal_str(&self, plaintext: &str, ctx: SealContext<'_>) -> String {
        self.seal(plaintext.as_bytes(), ctx)
    }

    /// [`KeyRing::open`] for text, returning a [`Secret`].
    ///
    /// # Errors
    /// As [`KeyRing::open`]; a plaintext that is not UTF-8 is reported as
    /// [`CryptoError::Open`] (it cannot have come from [`KeyRing::seal_str`]).
    pub fn open_str(&self, sealed: &str, ctx: SealContext<'_>) -> Result<Secret, CryptoError> {
        let bytes = self.open(sealed, ctx)?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| CryptoError::Open)
    }

    /// Opens a value and seals it again with the primary key for the same
    /// location — the step of a key rotation that moves stored values off an
    /// old key.
    ///
    /// # Errors
    /// As [`KeyRing::open`].
    pub fn reseal(&self, sealed: &str, ctx: SealContext<'_>) -> Result<String, CryptoError> {
        let plaintext = self.open(sealed, ctx)?;
        Ok(self.seal(&plaintext, ctx))
    }

    /// Whether a sealed value is not sealed with the primary key (so a
    /// rotation should [`reseal`](KeyRing::reseal) it). Malformed values also
    /// count as needing attention.
    #[must_use]
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        Self::sealed_kid(sealed) != Some(self.primary_kid())
    }

    /// Kid of a sealed value without opening it; `None` if the text does not
    /// look like a sealed value.
    #[must_use]
    pub fn sealed_kid(sealed: &str) -> Option<&str> {
        split_sealed(sealed).map(|(kid, _)| kid)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary_kid())
            .field("kids", &self.kids())
            .finish()
    }
}

fn is_valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Splits `kid:body`, checking only the kid's syntax.
fn split_sealed(sealed: &str) -> Option<(&str, &str)> {
    let (kid, body) = sealed.split_once(':')?;
    is_valid_kid(kid).then_some((kid, body))
}

/// Decodes a 32-byte key from 64 hex characters or base64 (standard or
/// url-safe, padded or not).
fn decode_key(text: &str) -> Option<[u8; KEY_LEN]> {
    // Hex first: 64 hex characters are also valid base64 (of 48 bytes).
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut key).ok()?;
        return Some(key);
    }
    let bytes = STANDARD_PAD_INDIFFERENT
        .decode(text)
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(text))
        .ok()?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ctx() -> SealContext<'static> {
        SealContext::new("servers", "client_secret", "42")
    }

    #[test]
    fn round_trip() {
        let ring = KeyRing::generate();
        for plaintext in [&b""[..], b"x", b"a longer secret value \x00\xff"] {
            let sealed = ring.seal(plaintext, ctx());
            assert_eq!(ring.open(&sealed, ctx()).unwrap(), plaintext);
        }
        let sealed = ring.seal_str("hunter2", ctx());
        assert_eq!(ring.open_str(&sealed, ctx()).unwrap().expose(), "hunter2");
    }

    #[test]
    fn sealed_format() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"abc", ctx());
        let (kid, body) = sealed.split_once(':').unwrap();
        assert_eq!(kid, ring.primary_kid());
        assert_eq!(KeyRing::sealed_kid(&sealed), Some(kid));
        let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + 3 + TAG_LEN);
        assert!(!sealed.contains("abc"));
    }

    #[test]
    fn wrong_location_fails() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"secret", ctx());
        for other in [
            SealContext::new("users", "client_secret", "42"),
            SealContext::new("servers", "access_token", "42"),
            SealContext::new("servers", "client_secret", "43"),
            // Shifting bytes between fields must not give the same AAD.
            SealContext::new("servers", "client_secret4", "2"),
        ] {
            assert!(matches!(ring.open(&sealed, other), Err(CryptoError::Open)));
        }
    }

    #[test]
    fn value_copied_to_another_row_fails() {
        let ring = KeyRing::generate();
        let row1 = SealContext::new("servers", "client_secret", "1");
        let row2 = SealContext::new("servers", "client_secret", "2");
        let sealed1 = ring.seal_str("secret of row 1", row1);
        // Simulates an UPDATE copying row 1's column into row 2.
        let copied = sealed1.clone();
        assert!(matches!(
            ring.open_str(&copied, row2),
            Err(CryptoError::Open)
        ));
        assert!(ring.open_str(&sealed1, row1).is_ok());
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let ring = KeyRing::generate();
        let sealed = ring.seal(b"secret value", ctx());
        let (kid, body) = sealed.split_once(':').unwrap();
        let raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let tampered = format!("{kid}:{}", URL_SAFE_NO_PAD.encode(&bad));
            assert!(matches!(
                ring.open(&tampered, ctx()),
                Err(CryptoError::Open)
            ));
        }
        // Truncated below nonce + tag, garbage, and no kid are malformed.
        let short = format!("{kid}:{}", URL_SAFE_NO_PAD.encode(&raw[..NONCE_LEN + 5]));
        assert!(matches!(
            ring.open(&short, ctx()),
            Err(CryptoError::Malformed)
        ));
        let garbage = format!("{kid}:not base64!");
        assert!(matches!(
            ring.open(&garbage, ctx()),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(
            ring.open(body, ctx()),
            Err(CryptoError::Malformed)
        ));
        assert!(matches!(ring.open("", ctx()), Err(CryptoError::Malformed)));
    }

    #[test]
    fn unknown_kid_fails() {
        let a = KeyRing::generate();
        let b = KeyRing::generate();
        let sealed = a.seal(b"secret", ctx());
        match b.open(&sealed, ctx()) {
            Err(CryptoError::UnknownKey(kid)) => assert_eq!(kid, a.primary_kid()),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        // Same kid, different key material: authentication fails.
        let other_key = KeyRing::parse(&format!("{}:{HEX_KEY}", a.primary_kid())).unwrap();
        assert!(matches!(
            other_key.open(&sealed, ctx()),
            Err(CryptoError::Open)
        ));
    }

    #[test]
    fn rotation_keeps_old_keys() {
        let old = KeyRing::generate();
        let sealed_old = old.seal_str("old secret", ctx());
        let new = old.with_new_primary();
        assert_ne!(new.primary_kid(), old.primary_kid());
        assert_eq!(
            new.kids(),
            vec![new.primary_kid().to_owned(), old.primary_kid().to_owned()]
        );
        assert_eq!(old.kids().len(), 1, "the original ring is unchanged");

        assert_eq!(
            new.open_str(&sealed_old, ctx()).unwrap().expose(),
            "old secret"
        );
        let sealed_new = new.seal_str("new secret", ctx());
        assert_eq!(KeyRing::sealed_kid(&sealed_new), Some(new.primary_kid()));
        assert!(matches!(
            old.open(&sealed_new, ctx()),
            Err(CryptoError::UnknownKey(_))
        ));

        assert!(new.needs_reseal(&sealed_old));
        assert!(!new.needs_reseal(&sealed_new));
        let resealed = new.reseal(&sealed_old, ctx()).unwrap();
        assert!(!new.needs_reseal(&resealed));
        assert_eq!(
            new.open_str(&resealed, ctx()).unwrap().expose(),
            "old secret"
        );

        let newer = new.with_new_primary();
        assert_eq!(newer.kids().len(), 3);
        assert_eq!(
            newer.open_str(&sealed_old, ctx()).unwrap().expose(),
            "old secret"
        );
    }

    #[test]
    fn seals_differ() {
        let ring = KeyRing::generate();
        let a = ring.seal(b"same", ctx());
        let b = ring.seal(b"same", ctx());
        assert_ne!(a, b);
        assert_eq!(ring.open(&a, ctx()).unwrap(), ring.open(&b, ctx()).unwrap());
    }

    #[test]
    fn parse_accepts_hex_and_base64() {
        let key: Vec<u8> = (0u8..32).collect();
        let std_b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let url_b64 = URL_SAFE_NO_PAD.encode(&key);
        let spec =
            format!("hex:{HEX_KEY}, b64:{std_b64}\n\n# comment\n url_nopad-1 : {url_b64},\n");
        let ring = KeyRing::parse(&spec).unwrap();
        assert_eq!(ring.kids(), vec!["hex", "b64", "url_nopad-1"]);
        assert_eq!(ring.primary_kid(), "hex");
        // All three carry the same key, so a value sealed by one opens when
        // relabelled with another kid.
        let sealed = ring.seal(b"x", ctx());
        let body = sealed.split_once(':').unwrap().1;
        for kid in ["b64", "url_nopad-1"] {
            assert_eq!(ring.open(&format!("{kid}:{body}"), ctx()).unwrap(), b"x");
        }
        // Uppercase hex and a key with '+' and '/' in standard base64.
        let upper = KeyRing::parse(&format!("k:{}", HEX_KEY.to_uppercase())).unwrap();
        assert_eq!(
            upper.to_spec(),
            KeyRing::parse(&format!("k:{HEX_KEY}")).unwrap().to_spec()
        );
        let plus_slash = base64::engine::general_purpose::STANDARD.encode([0xfb; 32]);
        assert!(plus_slash.contains('+') || plus_slash.contains('/'));
        assert!(KeyRing::parse(&format!("k:{plus_slash}")).is_ok());
    }

    #[test]
    fn parse_rejects_bad_input() {
        let short_hex = &HEX_KEY[..62];
        let short_b64 = URL_SAFE_NO_PAD.encode([1u8; 31]);
        let long_b64 = URL_SAFE_NO_PAD.encode([1u8; 33]);
        let long_kid = "a".repeat(33);
        let cases = [
            String::new(),
            " \n ,, \n# only a comment\n".to_owned(),
            format!("k:{short_hex}"),
            format!("k:{short_b64}"),
            format!("k:{long_b64}"),
            format!("k:{HEX_KEY}00"),
            "k:".to_owned(),
            HEX_KEY.to_owned(),
            format!(":{HEX_KEY}"),
            format!("bad kid:{HEX_KEY}"),
            format!("k.1:{HEX_KEY}"),
            format!("{long_kid}:{HEX_KEY}"),
            format!("k1:{HEX_KEY},k1:{HEX_KEY}"),
            format!("k1:{HEX_KEY}\nk2:{HEX_KEY}\nk1:{}", "ff".repeat(32)),
        ];
        for spec in &cases {
            match KeyRing::parse(spec) {
                Err(CryptoError::InvalidKey(msg)) => {
                    assert!(!msg.contains(HEX_KEY), "error echoes key: {msg}");
                    assert!(!msg.contains(short_hex), "error echoes key: {msg}");
                }
                other => panic!("spec {spec:?} gave {other:?}"),
            }
        }
        assert!(KeyRing::parse(&format!("{}:{HEX_KEY}", "a".repeat(32))).is_ok());
    }

    #[test]
    fn to_spec_round_trips() {
        let ring = KeyRing::generate().with_new_primary().with_new_primary();
        let spec = ring.to_spec();
        assert_eq!(spec.expose().lines().count(), 3);
        let parsed = KeyRing::parse(spec.expose()).unwrap();
        assert_eq!(parsed.kids(), ring.kids());
        assert_eq!(parsed.to_spec(), spec);
        let sealed = ring.seal(b"v", ctx());
        assert_eq!(parsed.open(&sealed, ctx()).unwrap(), b"v");
    }

    #[test]
    fn generated_kid_shape() {
        let kid = KeyRing::generate().primary_kid().to_owned();
        assert_eq!(kid.len(), 9);
        assert!(kid.starts_with('k'));
        assert!(kid[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let ring = KeyRing::parse(&format!("main:{HEX_KEY}"))
            .unwrap()
            .with_new_primary();
        let debug = format!("{ring:?}");
        assert!(debug.contains("main"));
        assert!(debug.contains(ring.primary_kid()));
        let spec = ring.to_spec();
        for line in spec.expose().lines() {
            let hex_key = line.split_once(':').unwrap().1;
            assert!(!debug.contains(hex_key));
            assert!(!debug.contains(&hex_key[..16]));
        }
        assert_eq!(format!("{spec:?}"), "[redacted]");
        assert!(!format!("{:?}", ring.open("main:AAAA", ctx())).contains(HEX_KEY));
    }

    #[test]
    fn sealed_kid_parsing() {
        assert_eq!(KeyRing::sealed_kid("k1:abc"), Some("k1"));
        assert_eq!(KeyRing::sealed_kid("k1:"), Some("k1"));
        assert_eq!(KeyRing::sealed_kid("abc"), None);
        assert_eq!(KeyRing::sealed_kid(":abc"), None);
        assert_eq!(KeyRing::sealed_kid("a b:abc"), None);
    }

    #[test]
    fn clone_is_shared() {
        let ring = KeyRing::generate();
        let clone = ring.clone();
        assert!(Arc::ptr_eq(&ring.inner, &clone.inner));
        let sealed = ring.seal(b"v", ctx());
        assert_eq!(clone.open(&sealed, ctx()).unwrap(), b"v");
    }
}
