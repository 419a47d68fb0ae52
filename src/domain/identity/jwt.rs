//! Compact JWTs taken apart, their signatures checked against JSON Web Keys, and their claims
//! checked against a provider's settings. Pure: no clock, no network, no storage.
//!
//! Invariants:
//! - Nothing here panics on any input: every segment is size-capped before it is decoded,
//!   numbers are read with checked conversions, and keys are parsed into fixed shapes.
//! - Only RS256, ES256 and EdDSA (Ed25519) are accepted. `none`, every HMAC algorithm and
//!   anything else is refused before a key is looked at, and a key is used only for the
//!   algorithm its own type (`kty`, `crv`) and its `alg` agree on, whatever the token says.
//! - RSA keys under 2048 bits (or over 8192) are never used.

use std::collections::HashMap;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::provider::Provider;
use crate::domain::access::Role;

/// The longest token read; a longer one is refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The longest decoded header.
pub const MAX_HEADER_BYTES: usize = 1024;
/// The longest decoded claims set.
pub const MAX_CLAIMS_BYTES: usize = 6 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// Most keys read from one key set; a larger set is refused as a whole.
pub const MAX_KEYS: usize = 32;
/// Most keys a token without `kid` is tried against.
const MAX_KEYS_TRIED: usize = 4;
/// Most entries of an `aud` array, and of a memberships claim.
const MAX_AUDIENCES: usize = 32;
/// Most workspaces one memberships claim may grant.
pub const MAX_CLAIMED_MEMBERSHIPS: usize = 100;
/// Longest subject accepted.
const MAX_SUBJECT_CHARS: usize = 255;

/// Why a token was refused. Only ever logged (never returned to the caller), and never with
/// the token or a claim's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("no configured provider has the token's issuer")]
    UnknownIssuer,
    #[error("no key of the issuer matches the token's key id and algorithm")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks the required scope")]
    Scope,
    #[error("the claim {0} is missing or invalid")]
    Claim(&'static str),
    #[error("the issuer's keys are unavailable: {0}")]
    Keys(String),
}

/// A signature algorithm Switchboard accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256, the signature as fixed-length `r || s`.
    Es256,
    /// EdDSA on Ed25519.
    EdDsa,
}

impl Alg {
    fn from_name(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }
}

/// A token taken apart, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    /// The header's algorithm, one of the accepted ones.
    pub alg: Alg,
    /// The header's key id.
    pub kid: Option<String>,
    /// The claims set.
    pub claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

/// Take a compact JWT apart: three base64url segments, a header naming an accepted algorithm
/// and no critical extension, a claims set that is a JSON object.
pub fn parse(token: &str) -> Result<Unverified<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Malformed("not three segments"));
    };
    let header = json_object(header, MAX_HEADER_BYTES).ok_or(JwtError::Malformed("header"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("header without alg"))?;
    let alg = Alg::from_name(alg).ok_or(JwtError::Algorithm)?;
    if header.contains_key("crit") {
        return Err(JwtError::Malformed("critical header extensions"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= 256 => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed("kid")),
    };
    let claims = json_object(claims, MAX_CLAIMS_BYTES).ok_or(JwtError::Malformed("claims"))?;
    let signature = decode_segment(signature, 1024).ok_or(JwtError::Malformed("signature"))?;
    // The signed part is everything before the last dot, exactly as received.
    let signing_input = token
        .rsplit_once('.')
        .map(|(signed, _)| signed)
        .ok_or(JwtError::Malformed("not three segments"))?;
    Ok(Unverified {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

/// A base64url segment (unpadded) of at most `max` decoded bytes.
fn decode_segment(segment: &str, max: usize) -> Option<Vec<u8>> {
    // Four characters carry three bytes: anything longer cannot fit in `max`.
    if segment.len() > max.saturating_mul(4) / 3 + 4 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    (bytes.len() <= max).then_some(bytes)
}

fn json_object(segment: &str, max: usize) -> Option<Map<String, Value>> {
    let bytes = decode_segment(segment, max)?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// A public key of an issuer, usable for exactly one algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    /// The key id, when the key set gives one.
    pub kid: Option<String>,
    /// The one algorithm the key verifies.
    pub alg: Alg,
    material: KeyMaterial,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed P-256 point (65 bytes).
    P256(Vec<u8>),
    /// The Ed25519 public key (32 bytes).
    Ed25519(Vec<u8>),
}

impl VerifyingKey {
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            KeyMaterial::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// The usable signing keys of a JWK Set document (RFC 7517). Keys of another type, curve or
/// algorithm, keys marked for encryption, and RSA keys outside 2048 to 8192 bits are left out;
/// a document that is not a key set, or holds more than [`MAX_KEYS`] keys, is refused.
pub fn parse_key_set(document: &Value) -> Result<Vec<VerifyingKey>, JwtError> {
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwtError::Keys("the document is not a JWK Set".to_owned()))?;
    if keys.len() > MAX_KEYS {
        return Err(JwtError::Keys(format!(
            "the key set holds more than {MAX_KEYS} keys"
        )));
    }
    Ok(keys.iter().filter_map(parse_jwk).collect())
}

/// One JWK as a verifying key, or `None` when it is not one Switchboard uses.
fn parse_jwk(jwk: &Value) -> Option<VerifyingKey> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return None;
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= 256 => Some(kid.clone()),
        Some(_) => return None,
    };
    let (alg, material) = match (text("kty")?, text("crv")) {
        ("RSA", None) => {
            let n = strip_zeros(decode_segment(text("n")?, 1024)?);
            let e = strip_zeros(decode_segment(text("e")?, 8)?);
            let bits = modulus_bits(&n);
            if !(2048..=8192).contains(&bits) || e.is_empty() {
                return None;
            }
            (Alg::Rs256, KeyMaterial::Rsa { n, e })
        }
        ("EC", Some("P-256")) => {
            let x = decode_segment(text("x")?, 32)?;
            let y = decode_segment(text("y")?, 32)?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (Alg::Es256, KeyMaterial::P256(point))
        }
        ("OKP", Some("Ed25519")) => {
            let x = decode_segment(text("x")?, 32)?;
            if x.len() != 32 {
                return None;
            }
            (Alg::EdDsa, KeyMaterial::Ed25519(x))
        }
        _ => return None,
    };
    // A key that names an algorithm must name the one its type implies.
    if let Some(named) = jwk.get("alg")
        && named.as_str().and_then(Alg::from_name) != Some(alg)
    {
        return None;
    }
    Some(VerifyingKey { kid, alg, material })
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// Bits of a big-endian number without leading zeros.
fn modulus_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => {
            let top = 8 - usize::try_from(first.leading_zeros()).unwrap_or(8);
            n.len()
                .saturating_sub(1)
                .saturating_mul(8)
                .saturating_add(top)
        }
    }
}

/// What a key lookup found for a token.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMatch {
    /// A key verified the signature.
    Verified,
    /// Keys of the token's id and algorithm exist, and none verified the signature.
    BadSignature,
    /// No key has the token's id (and algorithm): the key set may have been rotated.
    Unknown,
}

impl Unverified<'_> {
    /// Check the signature against `keys`: only keys of the token's algorithm, and of its key
    /// id when it names one (else at most a few keys of that algorithm).
    pub fn check_signature(&self, keys: &[VerifyingKey]) -> KeyMatch {
        let candidates: Vec<&VerifyingKey> = keys
            .iter()
            .filter(|key| key.alg == self.alg)
            .filter(|key| self.kid.is_none() || key.kid == self.kid)
            .take(MAX_KEYS_TRIED)
            .collect();
        if candidates.is_empty() {
            return KeyMatch::Unknown;
        }
        let message = self.signing_input.as_bytes();
        if candidates
            .iter()
            .any(|key| key.verifies(message, &self.signature))
        {
            KeyMatch::Verified
        } else {
            KeyMatch::BadSignature
        }
    }

    /// The unverified `iss`, to pick the providers to try.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// The claims of a verified token, as Switchboard uses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The subject (from the provider's subject claim).
    pub subject: String,
    /// The display name (from the provider's name claim), when it gives a usable one.
    pub name: Option<String>,
    /// The token's expiry, in seconds since the epoch.
    pub expires_at: i64,
    /// The memberships granted by the provider's memberships claim; `None` when the provider
    /// maps none.
    pub memberships: Option<HashMap<Uuid, Role>>,
}

/// Check the claims of a token whose signature verified, at `now` (seconds since the epoch).
pub fn check_claims(
    claims: &Map<String, Value>,
    provider: &Provider,
    now: i64,
) -> Result<Identity, JwtError> {
    if claims.get("iss").and_then(Value::as_str) != Some(provider.issuer.as_str()) {
        return Err(JwtError::UnknownIssuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == provider.audience,
        Some(Value::Array(auds)) if auds.len() <= MAX_AUDIENCES => auds
            .iter()
            .any(|aud| aud.as_str() == Some(provider.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    let expires_at = numeric_date(claims, "exp")?.ok_or(JwtError::Claim("exp"))?;
    if now > expires_at.saturating_add(CLOCK_SKEW_SECS) {
        return Err(JwtError::Expired);
    }
    for name in ["nbf", "iat"] {
        if numeric_date(claims, name)?.is_some_and(|at| at > now.saturating_add(CLOCK_SKEW_SECS)) {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(scope) = &provider.required_scope
        && !has_scope(claims, scope)
    {
        return Err(JwtError::Scope);
    }
    let subject = claims
        .get(&provider.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| {
            !s.is_empty()
                && s.chars().count() <= MAX_SUBJECT_CHARS
                && !s.chars().any(char::is_control)
        })
        .ok_or(JwtError::Claim("subject"))?
        .to_owned();
    let name = provider
        .name_claim
        .as_ref()
        .and_then(|claim| claims.get(claim))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
        .map(|n| n.chars().take(100).collect());
    let memberships = match &provider.memberships_claim {
        None => None,
        Some(claim) => Some(parse_memberships(claims.get(claim))?),
    };
    Ok(Identity {
        subject,
        name,
        expires_at,
        memberships,
    })
}

/// A NumericDate claim in whole seconds; `None` when absent. Fractions are dropped, and a
/// value that is not a finite number in range is invalid.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, JwtError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let number = value.as_number().ok_or(JwtError::Claim(name))?;
    if let Some(whole) = number.as_i64() {
        return Ok(Some(whole));
    }
    match number.as_f64() {
        Some(float) if float.is_finite() && float.abs() < 1e15 => {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "finite and under 1e15, so the truncated value fits an i64"
            )]
            let whole = float.trunc() as i64;
            Ok(Some(whole))
        }
        _ => Err(JwtError::Claim(name)),
    }
}

/// Whether `scope` (space-separated) or `scp` (an array, or a space-separated string) holds
/// `needed`.
fn has_scope(claims: &Map<String, Value>, needed: &str) -> bool {
    let in_text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .is_some_and(|text| text.split_ascii_whitespace().any(|s| s == needed))
    };
    let in_array = claims
        .get("scp")
        .and_then(Value::as_array)
        .is_some_and(|scopes| scopes.iter().any(|s| s.as_str() == Some(needed)));
    in_text(claims.get("scope")) || in_text(claims.get("scp")) || in_array
}

/// The memberships claim: an object from workspace id to role (`viewer`, `editor`, `admin`).
/// An absent (or `null`) claim grants none; anything malformed refuses the token, so that a
/// broken claim never reads as "no memberships".
pub fn parse_memberships(value: Option<&Value>) -> Result<HashMap<Uuid, Role>, JwtError> {
    const CLAIM: JwtError = JwtError::Claim("memberships");
    let object = match value {
        None | Some(Value::Null) => return Ok(HashMap::new()),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(CLAIM),
    };
    if object.len() > MAX_CLAIMED_MEMBERSHIPS {
        return Err(CLAIM);
    }
    object
        .iter()
        .map(|(workspace, role)| {
            let workspace = Uuid::parse_str(workspace).map_err(|_| CLAIM)?;
            let role = role.as_str().and_then(Role::from_text).ok_or(CLAIM)?;
            Ok((workspace, role))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = sign(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    }

    fn provider() -> Provider {
        Provider {
            issuer: "https://id.example.com".into(),
            keys: super::super::provider::KeySource::Discovery,
            audience: "switchboard".into(),
            required_scope: None,
            subject_claim: "sub".into(),
            name_claim: Some("name".into()),
            memberships_claim: None,
            console: None,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": "https://id.example.com", "aud": "switchboard", "sub": "u1",
            "exp": 2_000, "iat": 1_000,
        });
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        base.as_object().cloned().unwrap()
    }

    #[test]
    fn ed25519_and_es256_signatures_verify_with_their_own_keys_only() {
        let ed = Ed25519KeyPair::generate().unwrap();
        let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(ed.public_key().as_ref())});
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        let keys = parse_key_set(&json!({ "keys": [ed_jwk, ec_jwk] })).unwrap();
        assert_eq!(keys.len(), 2);

        let claims = json!({"sub": "x"});
        let token = compact(&json!({"alg": "EdDSA", "kid": "ed"}), &claims, |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(
            parse(&token).unwrap().check_signature(&keys),
            KeyMatch::Verified
        );
        let rng = SystemRandom::new();
        let token = compact(&json!({"alg": "ES256", "kid": "ec"}), &claims, |m| {
            ec.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        assert_eq!(
            parse(&token).unwrap().check_signature(&keys),
            KeyMatch::Verified
        );
        // The EdDSA key under the EC key's id: the header's alg picks no key.
        let token = compact(&json!({"alg": "EdDSA", "kid": "ec"}), &claims, |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(
            parse(&token).unwrap().check_signature(&keys),
            KeyMatch::Unknown
        );
        // A tampered claims set.
        let token = compact(&json!({"alg": "EdDSA", "kid": "ed"}), &claims, |m| {
            ed.sign(m).as_ref().to_vec()
        });
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = b64(br#"{"sub":"y"}"#);
        parts[1] = &other;
        let tampered = parts.join(".");
        assert_eq!(
            parse(&tampered).unwrap().check_signature(&keys),
            KeyMatch::BadSignature
        );
        // Unknown key id.
        let token = compact(&json!({"alg": "EdDSA", "kid": "new"}), &claims, |m| {
            ed.sign(m).as_ref().to_vec()
        });
        assert_eq!(
            parse(&token).unwrap().check_signature(&keys),
            KeyMatch::Unknown
        );
    }

    #[test]
    fn only_the_accepted_algorithms_parse() {
        for alg in [
            "none", "HS256", "HS384", "HS512", "RS512", "PS256", "ES384", "", "rs256",
        ] {
            let token = compact(&json!({ "alg": alg }), &json!({}), |_| b"sig".to_vec());
            assert_eq!(parse(&token).unwrap_err(), JwtError::Algorithm, "{alg}");
        }
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"sub":"x"}"#));
        assert_eq!(parse(&unsigned).unwrap_err(), JwtError::Algorithm);
        let crit = compact(
            &json!({"alg": "ES256", "crit": ["b64"]}),
            &json!({}),
            |_| vec![1],
        );
        assert!(matches!(parse(&crit), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse(&huge).unwrap_err(), JwtError::TooLarge);
        for token in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "!!!.???.***",
            "eyJ.eyJ.AA",
            &format!("{}.{}.x", b64(b"[1]"), b64(b"{}")),
            &format!("{}.{}.x", b64(br#"{"alg":"ES256"}"#), b64(b"\"text\"")),
            &format!("{}.{}.x", b64(br#"{"alg":7}"#), b64(b"{}")),
            &format!("{}.{}.x", b64(br#"{"alg":"ES256","kid":5}"#), b64(b"{}")),
            &format!("{}.{}.===", b64(br#"{"alg":"ES256"}"#), b64(b"{}")),
            &format!("{}.{}.x", b64(&[b'{'; 2000]), b64(b"{}")),
            &format!("{}.{}.x", b64(&vec![b'['; 700]), b64(b"{}")),
        ] {
            assert!(parse(token).is_err(), "{token:?}");
        }
        let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
        let token = format!("{}.{}.x", b64(br#"{"alg":"ES256"}"#), b64(deep.as_bytes()));
        assert!(parse(&token).is_err());
    }

    #[test]
    fn keys_must_agree_with_their_algorithm_and_be_large_enough() {
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let ec_jwk = |extra: Value| {
            let mut jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
            if let (Some(jwk), Value::Object(extra)) = (jwk.as_object_mut(), extra) {
                jwk.extend(extra);
            }
            jwk
        };
        let small_rsa = json!({"kty": "RSA", "n": b64(&[0xc5; 128]), "e": "AQAB"});
        let big_enough = json!({"kty": "RSA", "n": b64(&[0xc5; 256]), "e": "AQAB"});
        let padded =
            json!({"kty": "RSA", "n": b64(&[&[0u8, 0][..], &[0xc5; 255]].concat()), "e": "AQAB"});
        let set = json!({"keys": [
            ec_jwk(json!({"alg": "RS256"})),
            ec_jwk(json!({"alg": "HS256"})),
            ec_jwk(json!({"use": "enc"})),
            ec_jwk(json!({"key_ops": ["encrypt"]})),
            ec_jwk(json!({"crv": "P-384"})),
            ec_jwk(json!({"x": b64(&[1; 31])})),
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])},
            small_rsa,
            padded,
            "not a key",
            7,
            ec_jwk(json!({"alg": "ES256", "use": "sig", "key_ops": ["verify"]})),
            big_enough,
        ]});
        let keys = parse_key_set(&set).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.alg).collect::<Vec<_>>(),
            vec![Alg::Es256, Alg::Rs256],
            "only the well-formed EC key and the 2048-bit RSA key"
        );
        assert!(parse_key_set(&json!({"keys": vec![json!({}); MAX_KEYS + 1]})).is_err());
        assert!(parse_key_set(&json!({"keys": "all"})).is_err());
        assert!(parse_key_set(&json!([])).is_err());
        assert_eq!(modulus_bits(&[0x01, 0]), 9);
        assert_eq!(modulus_bits(&[0xff; 256]), 2048);
        assert_eq!(modulus_bits(&[0x7f; 256]), 2047);
    }

    #[test]
    fn claims_are_checked_against_the_provider() {
        let p = provider();
        let ok = check_claims(&claims(json!({"name": " Ana "})), &p, 1_500).unwrap();
        assert_eq!(ok.subject, "u1");
        assert_eq!(ok.name.as_deref(), Some("Ana"));
        assert_eq!(ok.expires_at, 2_000);
        assert_eq!(ok.memberships, None);

        let refused = |extra: Value, now: i64| check_claims(&claims(extra), &p, now).unwrap_err();
        assert_eq!(
            refused(json!({"iss": "https://other"}), 1_500),
            JwtError::UnknownIssuer
        );
        assert_eq!(refused(json!({"aud": "other"}), 1_500), JwtError::Audience);
        assert_eq!(
            refused(json!({"aud": ["a", "b"]}), 1_500),
            JwtError::Audience
        );
        assert!(check_claims(&claims(json!({"aud": ["a", "switchboard"]})), &p, 1_500).is_ok());
        assert_eq!(refused(json!({"aud": null}), 1_500), JwtError::Audience);
        assert_eq!(refused(json!({}), 2_061), JwtError::Expired);
        assert!(
            check_claims(&claims(json!({})), &p, 2_060).is_ok(),
            "within the skew"
        );
        assert_eq!(refused(json!({"exp": null}), 1_500), JwtError::Claim("exp"));
        assert_eq!(
            refused(json!({"exp": "2000"}), 1_500),
            JwtError::Claim("exp")
        );
        assert_eq!(
            refused(json!({"exp": 1e300}), 1_500),
            JwtError::Claim("exp")
        );
        assert_eq!(
            refused(json!({"exp": 18_446_744_073_709_551_615u64}), 1_500),
            JwtError::Claim("exp")
        );
        assert!(check_claims(&claims(json!({"exp": 1999.9})), &p, 1_500).is_ok());
        assert_eq!(refused(json!({"nbf": 1_561}), 1_500), JwtError::NotYetValid);
        assert!(check_claims(&claims(json!({"nbf": 1_560})), &p, 1_500).is_ok());
        assert_eq!(refused(json!({"iat": 1_600}), 1_500), JwtError::NotYetValid);
        assert_eq!(
            refused(json!({"sub": ""}), 1_500),
            JwtError::Claim("subject")
        );
        assert_eq!(
            refused(json!({"sub": 5}), 1_500),
            JwtError::Claim("subject")
        );
        assert_eq!(
            refused(json!({"sub": "a\nb"}), 1_500),
            JwtError::Claim("subject")
        );
        let unnamed = check_claims(&claims(json!({"name": "\u{7}"})), &p, 1_500).unwrap();
        assert_eq!(unnamed.name, None);

        let scoped = Provider {
            required_scope: Some("switchboard".into()),
            ..provider()
        };
        let scope = |extra: Value| check_claims(&claims(extra), &scoped, 1_500);
        assert!(scope(json!({"scope": "openid switchboard"})).is_ok());
        assert!(scope(json!({"scp": ["openid", "switchboard"]})).is_ok());
        assert!(scope(json!({"scp": "switchboard"})).is_ok());
        assert_eq!(
            scope(json!({"scope": "switchboards"})).unwrap_err(),
            JwtError::Scope
        );
        assert_eq!(scope(json!({})).unwrap_err(), JwtError::Scope);
    }

    #[test]
    fn memberships_claims_map_workspaces_to_roles() {
        let ws = Uuid::now_v7();
        let granted = parse_memberships(Some(&json!({ ws.to_string(): "editor" }))).unwrap();
        assert_eq!(granted, HashMap::from([(ws, Role::Editor)]));
        assert!(parse_memberships(None).unwrap().is_empty());
        assert!(parse_memberships(Some(&Value::Null)).unwrap().is_empty());
        for bad in [
            json!({ ws.to_string(): "owner" }),
            json!({ "not-a-uuid": "viewer" }),
            json!({ ws.to_string(): 1 }),
            json!([format!("{ws}:viewer")]),
            json!("viewer"),
        ] {
            assert!(parse_memberships(Some(&bad)).is_err(), "{bad}");
        }
        let many: Map<String, Value> = (0..=MAX_CLAIMED_MEMBERSHIPS)
            .map(|_| (Uuid::now_v7().to_string(), json!("viewer")))
            .collect();
        assert!(parse_memberships(Some(&Value::Object(many))).is_err());

        let mapped = Provider {
            memberships_claim: Some("switchboard_workspaces".into()),
            console: None,
            ..provider()
        };
        let identity = check_claims(
            &claims(json!({"switchboard_workspaces": { ws.to_string(): "admin" }})),
            &mapped,
            1_500,
        )
        .unwrap();
        assert_eq!(
            identity.memberships,
            Some(HashMap::from([(ws, Role::Admin)]))
        );
    }
}
