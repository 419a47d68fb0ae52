//! Signing keys for `private_key_jwt` clients (RFC 7523) and the compact JWS parsing the fake
//! authorization server runs on their client assertions.
//!
//! A test makes a key with [`generate_es256_key`] or [`generate_rs256_key`], gives the server
//! under test its private half ([`TestKey::private_pem`]) and the fake authorization server its
//! public half (with [`MachineClient::private_key_jwt`]).
//!
//! Parsing never panics and never trusts its input: an assertion longer than
//! [`MAX_ASSERTION_BYTES`], without exactly three segments, with a segment that is not unpadded
//! base64url, or with a header or claims set that is not a JSON object is not an assertion. The
//! signature is checked against the configured key and algorithm only, whatever the header says.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

#[cfg(doc)]
use crate::fake_as::MachineClient;

/// The longest client assertion the fake authorization server reads; a longer one is refused
/// unread.
pub const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// A JWS signature algorithm a `private_key_jwt` client can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    /// ECDSA on P-256 with SHA-256, the signature as fixed-length `r || s` (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
}

impl JwsAlg {
    /// The `alg` header value and metadata name: `"ES256"` or `"RS256"`.
    pub fn name(self) -> &'static str {
        match self {
            JwsAlg::Es256 => "ES256",
            JwsAlg::Rs256 => "RS256",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            JwsAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            JwsAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

/// A fresh signing key for a test.
#[derive(Clone)]
pub struct TestKey {
    pub alg: JwsAlg,
    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, base64 lines of 64
    /// characters), as the server under test is configured with it.
    pub private_pem: String,
    /// The public key as the fake authorization server takes it: for ES256 the uncompressed
    /// P-256 point (65 bytes, SEC 1), for RS256 the PKCS#1 `RSAPublicKey` DER.
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("alg", &self.alg)
            .field("public_key_len", &self.public_key.len())
            .finish_non_exhaustive()
    }
}

/// A new P-256 key for ES256.
pub fn generate_es256_key() -> TestKey {
    let key = signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .expect("generate a P-256 key");
    let pkcs8 = key.to_pkcs8v1().expect("serialize a P-256 key");
    TestKey {
        alg: JwsAlg::Es256,
        private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
        public_key: key.public_key().as_ref().to_vec(),
    }
}

/// A new 2048-bit RSA key for RS256.
pub fn generate_rs256_key() -> TestKey {
    let key = signature::RsaKeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key");
    let pkcs8 = key.as_der().expect("serialize an RSA key");
    TestKey {
        alg: JwsAlg::Rs256,
        private_pem: pem("PRIVATE KEY", pkcs8.as_ref()),
        public_key: key.public_key().as_ref().to_vec(),
    }
}

/// PEM armour: the label lines around base64 in lines of 64 characters (RFC 7468).
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so every 64-byte chunk is a valid string.
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// A compact JWS taken apart but not verified. Each part is `None` when it did not decode.
pub(crate) struct Assertion<'a> {
    pub(crate) header: Option<Map<String, Value>>,
    pub(crate) claims: Option<Map<String, Value>>,
    signing_input: &'a str,
    signature: Option<Vec<u8>>,
}

impl<'a> Assertion<'a> {
    /// Take `compact` apart; `None` when it is too long or not three segments.
    pub(crate) fn parse(compact: &'a str) -> Option<Assertion<'a>> {
        if compact.len() > MAX_ASSERTION_BYTES {
            return None;
        }
        let mut segments = compact.split('.');
        let (Some(header), Some(claims), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        // The signed part is everything before the last dot, exactly as received.
        let signing_input = &compact[..header.len() + 1 + claims.len()];
        Some(Assertion {
            header: json_object(header),
            claims: json_object(claims),
            signing_input,
            signature: URL_SAFE_NO_PAD.decode(signature).ok(),
        })
    }

    /// `{"header": …, "claims": …}`, with `null` for a part that did not decode.
    pub(crate) fn decoded(&self) -> Value {
        let part =
            |part: &Option<Map<String, Value>>| part.clone().map_or(Value::Null, Value::Object);
        json!({ "header": part(&self.header), "claims": part(&self.claims) })
    }

    /// Whether the signature is `alg`'s by the holder of `public_key`.
    pub(crate) fn signed_by(&self, alg: JwsAlg, public_key: &[u8]) -> bool {
        let Some(signature) = &self.signature else {
            return false;
        };
        signature::UnparsedPublicKey::new(alg.verification(), public_key)
            .verify(self.signing_input.as_bytes(), signature)
            .is_ok()
    }
}

/// A base64url segment holding a JSON object.
fn json_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}
