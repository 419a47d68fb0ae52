//! Client assertions for `private_key_jwt` client authentication (RFC 7523 §2.2), as used by the
//! MCP client-credentials extension (SEP-1046, `io.modelcontextprotocol/oauth-client-credentials`).
//!
//! A pre-registered client proves who it is at the token endpoint with a short-lived JWT signed
//! by its private key, sent as `client_assertion` next to `client_assertion_type` =
//! [`ASSERTION_TYPE`] (and without `client_id`). This module owns:
//!
//! - [`PrivateKey`]: an RSA (2048 to 8192 bits) or EC P-256 key read from PEM — PKCS#8
//!   (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). Everything else
//!   (encrypted keys, certificates, public keys, other curves, small RSA keys) is refused.
//! - [`choose`]: the key's algorithm, checked against the authorization server's
//!   `token_endpoint_auth_signing_alg_values_supported`.
//! - [`client_assertion`]: the signed compact JWS.
//!
//! Invariants:
//! - Key material never shows: `PrivateKey`'s `Debug` names only the algorithm, and a
//!   [`KeyError`] describes the problem in words, quoting at most a PEM label or a (shortened)
//!   algorithm name — never key bytes.
//! - Nothing here panics, whatever the input; the PEM input is capped at [`MAX_PEM_BYTES`].
//! - `aud` is the authorization server's **issuer**, not its token endpoint: the ext-auth
//!   specification and the conformance suite check the issuer (the MCP site's extension page
//!   says otherwise; the issuer wins).
//! - An assertion lives at most [`MAX_LIFETIME_SECS`] and carries a fresh 128-bit `jti`, so
//!   an authorization server that remembers `jti`s can refuse a replay.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P256K1_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

/// The `client_assertion_type` that goes with a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The lifetime to ask [`client_assertion`] for unless there is a reason not to: long enough
/// for a slow token endpoint and some clock skew, short enough to be useless if it leaks.
pub const DEFAULT_LIFETIME_SECS: i64 = 60;

/// The longest lifetime [`client_assertion`] gives an assertion; a longer one is cut to this.
pub const MAX_LIFETIME_SECS: i64 = 300;

/// The largest PEM document [`PrivateKey::from_pem`] reads. An RSA 8192 key in PKCS#8 is about
/// 6.5 KiB of PEM, so this leaves room for comments while bounding the work on hostile input.
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// The longest piece of outside text (an algorithm name) an error message quotes.
const MAX_QUOTED_CHARS: usize = 32;

/// How many advertised algorithms an error message lists.
const MAX_QUOTED_ALGORITHMS: usize = 8;

/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Why a key could not be read or an assertion could not be made. Messages are safe to show
/// and to log: they never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The PEM document is larger than [`MAX_PEM_BYTES`].
    #[error("the private key PEM is larger than {max_bytes} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max_bytes: usize,
    },
    /// No private key block was found (not PEM at all, or only `EC PARAMETERS`).
    #[error("no PEM private key found (expected a -----BEGIN PRIVATE KEY----- block)")]
    NoPrivateKey,
    /// The PEM armor or its base64 body is broken (e.g. truncated).
    #[error("the private key PEM is malformed: {0}")]
    MalformedPem(&'static str),
    /// The key is encrypted with a passphrase.
    #[error("encrypted private keys are not supported; export the key unencrypted as PKCS#8")]
    Encrypted,
    /// The PEM holds something other than a private key (a certificate, a public key…).
    #[error(
        "the PEM holds a {label} block, not a private key (expected PRIVATE KEY, \
         RSA PRIVATE KEY or EC PRIVATE KEY)"
    )]
    NotAPrivateKey {
        /// The block's label, e.g. `CERTIFICATE` (only `A`–`Z`, digits and spaces).
        label: String,
    },
    /// The PEM holds more than one private key, so which one to use is ambiguous.
    #[error("the PEM holds more than one private key")]
    MultipleKeys,
    /// The key's bytes do not parse as the format its label announces.
    #[error("the private key could not be read: {0}")]
    InvalidKey(&'static str),
    /// A well-formed key of a type that cannot sign RS256 or ES256 (e.g. Ed25519, RSA-PSS).
    #[error("unsupported key type: client assertions need an RSA or EC P-256 key")]
    UnsupportedKeyType,
    /// An EC key on a curve other than P-256.
    #[error("unsupported elliptic curve: client assertions need an EC key on P-256 (ES256)")]
    UnsupportedCurve,
    /// An RSA key below 2048 bits.
    #[error("the RSA key is too small: at least 2048 bits are required")]
    RsaKeyTooSmall,
    /// An RSA key above 8192 bits.
    #[error("the RSA key is too large: at most 8192 bits are supported")]
    RsaKeyTooLarge,
    /// An algorithm name other than `RS256` or `ES256`.
    #[error("unsupported signing algorithm {0:?} (expected RS256 or ES256)")]
    UnsupportedAlgorithm(String),
    /// The authorization server advertises signing algorithms, and the key's is not one of them.
    #[error(
        "the authorization server does not accept {key} client assertions (it advertises {advertised})"
    )]
    AlgorithmNotAdvertised {
        /// The key's algorithm.
        key: SigningAlgorithm,
        /// What the server advertises, shortened, as a list of quoted names.
        advertised: String,
    },
    /// The claims cannot be built (an empty client id or audience, a time out of range).
    #[error("cannot build the client assertion: {0}")]
    InvalidClaims(&'static str),
    /// The crypto library failed to sign or to produce random bytes.
    #[error("signing the client assertion failed")]
    Signing,
}

/// A JWS algorithm this client can sign client assertions with (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// `RS256`: RSASSA-PKCS1-v1_5 with SHA-256, for RSA keys.
    Rs256,
    /// `ES256`: ECDSA on P-256 with SHA-256, the signature being the 64-byte `r ‖ s`, for EC
    /// keys.
    Es256,
}

impl SigningAlgorithm {
    /// The JWS `alg` name, as in a JWT header and in authorization server metadata.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = KeyError;

    /// Parses a JWS `alg` name. Names are case-sensitive (RFC 7515 §4.1.1): `es256` is refused.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "RS256" => Ok(Self::Rs256),
            "ES256" => Ok(Self::Es256),
            other => Err(KeyError::UnsupportedAlgorithm(shorten(other))),
        }
    }
}

/// A private key that signs client assertions: RSA (2048 to 8192 bits, RS256) or EC P-256
/// (ES256). `Debug` shows only the algorithm.
pub struct PrivateKey {
    pair: KeyPair,
}

/// The parsed key. ECDSA uses the fixed-size `r ‖ s` signature encoding, which JWS requires
/// (RFC 7518 §3.4), not the ASN.1 DER one.
enum KeyPair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Reads an unencrypted private key from PEM: PKCS#8 `PRIVATE KEY` (RSA or EC P-256),
    /// PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`. Text around the block and an
    /// `EC PARAMETERS` block (as `openssl ecparam -genkey` writes) are ignored; any other block
    /// — a certificate, a public key, an encrypted or second key — is refused.
    ///
    /// # Errors
    ///
    /// A [`KeyError`] saying what is wrong, in words that never include the key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if pem.len() > MAX_PEM_BYTES {
            return Err(KeyError::TooLarge {
                max_bytes: MAX_PEM_BYTES,
            });
        }
        let (format, body) = private_key_block(pem)?;
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| KeyError::MalformedPem("the body is not valid base64"))?;
        let pair = match format {
            KeyFormat::Pkcs8 => parse_pkcs8(&der)?,
            KeyFormat::Pkcs1 => parse_pkcs1(&der)?,
            KeyFormat::Sec1 => parse_sec1(&der)?,
        };
        Ok(Self { pair })
    }

    /// The algorithm this key signs with: `RS256` for RSA, `ES256` for P-256.
    #[must_use]
    pub const fn algorithm(&self) -> SigningAlgorithm {
        match self.pair {
            KeyPair::Rsa(_) => SigningAlgorithm::Rs256,
            KeyPair::Ec(_) => SigningAlgorithm::Es256,
        }
    }

    /// Signs `message` with this key's algorithm; the result is the raw JWS signature.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        // aws-lc-rs draws its own randomness and ignores this; the signatures ask for one.
        let rng = SystemRandom::new();
        match &self.pair {
            KeyPair::Rsa(pair) => {
                // `sign` needs a buffer of exactly the modulus length.
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| KeyError::Signing)?;
                Ok(signature)
            }
            KeyPair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(|_| KeyError::Signing),
        }
    }
}

/// Checks the key's algorithm against what the authorization server advertises in
/// `token_endpoint_auth_signing_alg_values_supported` and returns the algorithm to use.
/// A server that advertises nothing (absent or an empty list) is taken to accept the key's
/// algorithm; names are compared exactly, as JWS names are case-sensitive.
///
/// # Errors
///
/// [`KeyError::AlgorithmNotAdvertised`] when the server lists algorithms and the key's is not
/// among them.
pub fn choose(
    key_alg: SigningAlgorithm,
    advertised: Option<&[String]>,
) -> Result<SigningAlgorithm, KeyError> {
    match advertised {
        Some(names) if !names.is_empty() => {
            if names.iter().any(|name| name == key_alg.as_str()) {
                Ok(key_alg)
            } else {
                Err(KeyError::AlgorithmNotAdvertised {
                    key: key_alg,
                    advertised: quote_list(names),
                })
            }
        }
        _ => Ok(key_alg),
    }
}

/// Builds and signs a client assertion (RFC 7523 §3): a compact JWS
/// `base64url(header).base64url(claims).base64url(signature)` without padding, with header
/// `{"alg": <key's algorithm>, "typ": "JWT"}` and claims `iss` = `sub` = `client_id`,
/// `aud` = `audience` (the authorization server's issuer), `iat` = `now_unix`,
/// `exp` = `now_unix` + the lifetime, and a random 128-bit `jti` (32 hex digits).
///
/// `lifetime_secs` is clamped to 1..=[`MAX_LIFETIME_SECS`]; [`DEFAULT_LIFETIME_SECS`] suits
/// most callers. Check the key against the server's algorithms with [`choose`] first.
///
/// # Errors
///
/// [`KeyError::InvalidClaims`] for an empty `client_id` or `audience`, a negative `now_unix`
/// or an expiry past `i64::MAX`; [`KeyError::Signing`] if the crypto library fails.
pub fn client_assertion(
    key: &PrivateKey,
    client_id: &str,
    audience: &str,
    now_unix: i64,
    lifetime_secs: i64,
) -> Result<String, KeyError> {
    if client_id.is_empty() {
        return Err(KeyError::InvalidClaims("the client id is empty"));
    }
    if audience.is_empty() {
        return Err(KeyError::InvalidClaims(
            "the audience (the authorization server's issuer) is empty",
        ));
    }
    if now_unix < 0 {
        return Err(KeyError::InvalidClaims("the current time is before 1970"));
    }
    let lifetime = lifetime_secs.clamp(1, MAX_LIFETIME_SECS);
    let expires = now_unix
        .checked_add(lifetime)
        .ok_or(KeyError::InvalidClaims("the expiry time is out of range"))?;

    // serde_json writes the JSON so that any client id or issuer is escaped correctly.
    let header = json!({ "alg": key.algorithm().as_str(), "typ": "JWT" });
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now_unix,
        "exp": expires,
        "jti": assertion_id()?,
    });

    let mut jws = String::new();
    URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut jws);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut jws);
    let signature = key.sign(jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    Ok(jws)
}

/// A fresh `jti`: 128 random bits as 32 lowercase hex digits.
fn assertion_id() -> Result<String, KeyError> {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Signing)?;
    let mut id = String::with_capacity(32);
    for byte in bytes {
        // Both indexes are below 16.
        id.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        id.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    Ok(id)
}

/// How the DER inside a private key block is encoded, from the block's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFormat {
    /// `PRIVATE KEY`: PKCS#8 `PrivateKeyInfo` (RFC 5208), any key type.
    Pkcs8,
    /// `RSA PRIVATE KEY`: PKCS#1 `RSAPrivateKey` (RFC 8017).
    Pkcs1,
    /// `EC PRIVATE KEY`: SEC1 `ECPrivateKey` (RFC 5915).
    Sec1,
}

/// One `-----BEGIN …-----` … `-----END …-----` block (RFC 7468).
struct PemBlock<'a> {
    label: &'a str,
    /// The block had RFC 1421 headers (`Proc-Type:`, `DEK-Info:`).
    has_headers: bool,
    /// A `Proc-Type` header said `ENCRYPTED` (OpenSSL's legacy passphrase encryption).
    encrypted: bool,
    /// The base64 body with all whitespace removed.
    body: String,
}

/// Finds the one private key block in `text` and its format.
fn private_key_block(text: &str) -> Result<(KeyFormat, String), KeyError> {
    let mut found = None;
    for block in pem_blocks(text)? {
        let format = match block.label {
            "PRIVATE KEY" => KeyFormat::Pkcs8,
            "RSA PRIVATE KEY" => KeyFormat::Pkcs1,
            "EC PRIVATE KEY" => KeyFormat::Sec1,
            // `openssl ecparam -genkey` writes the curve before the key; the key names its
            // curve itself, so the parameters add nothing.
            "EC PARAMETERS" => continue,
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            other => {
                return Err(KeyError::NotAPrivateKey {
                    label: other.to_owned(),
                });
            }
        };
        if block.encrypted {
            return Err(KeyError::Encrypted);
        }
        if block.has_headers {
            return Err(KeyError::MalformedPem(
                "a private key block has unexpected headers",
            ));
        }
        if found.is_some() {
            return Err(KeyError::MultipleKeys);
        }
        found = Some((format, block.body));
    }
    found.ok_or(KeyError::NoPrivateKey)
}

/// Splits `text` into PEM blocks. Lines outside blocks are explanatory text and skipped
/// (RFC 7468 §5.2); both `\n` and `\r\n` line ends work.
fn pem_blocks(text: &str) -> Result<Vec<PemBlock<'_>>, KeyError> {
    let mut blocks = Vec::new();
    let mut open: Option<PemBlock<'_>> = None;
    for line in text.lines().map(str::trim) {
        let Some(block) = open.as_mut() else {
            if let Some(rest) = line.strip_prefix("-----BEGIN ") {
                open = Some(PemBlock {
                    label: armor_label(rest)?,
                    has_headers: false,
                    encrypted: false,
                    body: String::new(),
                });
            }
            continue;
        };
        if let Some(rest) = line.strip_prefix("-----END ") {
            if armor_label(rest)? != block.label {
                return Err(KeyError::MalformedPem(
                    "the END line does not match the BEGIN line",
                ));
            }
            blocks.extend(open.take());
        } else if line.starts_with("-----") {
            return Err(KeyError::MalformedPem(
                "a block is not closed by an END line",
            ));
        } else if let Some((name, value)) = line.split_once(':') {
            // Base64 has no `:`, so this is an RFC 1421 header such as
            // `Proc-Type: 4,ENCRYPTED`.
            block.has_headers = true;
            if name.trim().eq_ignore_ascii_case("Proc-Type")
                && value.to_ascii_uppercase().contains("ENCRYPTED")
            {
                block.encrypted = true;
            }
        } else {
            block
                .body
                .extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    if open.is_some() {
        return Err(KeyError::MalformedPem(
            "the document ends before the END line (truncated?)",
        ));
    }
    Ok(blocks)
}

/// The label of an armor line, given what follows `-----BEGIN ` or `-----END `. Only labels
/// made of `A`–`Z`, digits and spaces are accepted, so a label is safe to quote in an error.
fn armor_label(rest: &str) -> Result<&str, KeyError> {
    let label = rest.strip_suffix("-----").ok_or(KeyError::MalformedPem(
        "an armor line does not end with -----",
    ))?;
    let well_formed = !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ');
    if well_formed {
        Ok(label)
    } else {
        Err(KeyError::MalformedPem(
            "an armor line has a malformed label",
        ))
    }
}

/// PKCS#8: an EC P-256 or an RSA key.
fn parse_pkcs8(der: &[u8]) -> Result<KeyPair, KeyError> {
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        return Ok(KeyPair::Ec(pair));
    }
    match RsaKeyPair::from_pkcs8(der) {
        Ok(pair) => checked_rsa(pair),
        Err(_) if is_other_curve(der) => Err(KeyError::UnsupportedCurve),
        Err(rejected) => Err(rejection(&rejected)),
    }
}

/// PKCS#1: an RSA key.
fn parse_pkcs1(der: &[u8]) -> Result<KeyPair, KeyError> {
    RsaKeyPair::from_der(der)
        .map_err(|rejected| rejection(&rejected))
        .and_then(checked_rsa)
}

/// SEC1: an EC key, which must be on P-256.
fn parse_sec1(der: &[u8]) -> Result<KeyPair, KeyError> {
    match EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        Ok(pair) => Ok(KeyPair::Ec(pair)),
        Err(_) if is_other_curve(der) => Err(KeyError::UnsupportedCurve),
        Err(rejected) => Err(rejection(&rejected)),
    }
}

/// Whether `der` (PKCS#8 or SEC1) is a valid EC key on a curve other than P-256 — only to say
/// so in the error instead of "invalid key".
fn is_other_curve(der: &[u8]) -> bool {
    [
        &ECDSA_P384_SHA384_FIXED_SIGNING,
        &ECDSA_P521_SHA512_FIXED_SIGNING,
        &ECDSA_P256K1_SHA256_FIXED_SIGNING,
    ]
    .into_iter()
    .any(|algorithm| EcdsaKeyPair::from_private_key_der(algorithm, der).is_ok())
}

/// aws-lc-rs already refuses RSA keys outside 2048..=8192 bits; checked again here because
/// that bound is this module's promise, not an implementation detail of the library.
fn checked_rsa(pair: RsaKeyPair) -> Result<KeyPair, KeyError> {
    if pair.public_modulus_len() < MIN_RSA_MODULUS_BYTES {
        return Err(KeyError::RsaKeyTooSmall);
    }
    Ok(KeyPair::Rsa(pair))
}

/// Turns aws-lc-rs's reason for refusing a key (a fixed word, never key bytes) into an error.
fn rejection(rejected: &KeyRejected) -> KeyError {
    match rejected.description_() {
        "TooSmall" => KeyError::RsaKeyTooSmall,
        "TooLarge" => KeyError::RsaKeyTooLarge,
        "WrongAlgorithm" => KeyError::UnsupportedKeyType,
        "InconsistentComponents" => KeyError::InvalidKey("its components are inconsistent"),
        _ => KeyError::InvalidKey("it is not a valid DER-encoded key of the labelled format"),
    }
}

/// At most [`MAX_QUOTED_CHARS`] characters of `text`, for an error message.
fn shorten(text: &str) -> String {
    let mut chars = text.chars();
    let mut short: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// The advertised algorithm names, shortened and quoted, for an error message.
fn quote_list(names: &[String]) -> String {
    let mut quoted: Vec<String> = names
        .iter()
        .take(MAX_QUOTED_ALGORITHMS)
        .map(|name| format!("{:?}", shorten(name)))
        .collect();
    if names.len() > MAX_QUOTED_ALGORITHMS {
        quoted.push("…".to_owned());
    }
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_2048_8192_SHA256,
        UnparsedPublicKey, VerificationAlgorithm,
    };
    use serde_json::Value;

    use super::*;

    const CLIENT_ID: &str = "conformance-test-client";
    const ISSUER: &str = "http://localhost:4000";
    const NOW: i64 = 1_780_000_000;

    /// A 1024-bit RSA key (PKCS#8), made with `openssl genpkey`, only to be refused.
    const RSA_1024_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBANoO/1bTdsS1VpiM
iZSkyTtLZ38kyR0aanwkF/jLcXaWz6ZJIPPpLXfiKWAizVnPf8XH3FHLca99HgYP
njsYReiYyRH+1/m9g/sIY9vrx2WAHP5I+K/3IS+TNs+2mtDib3C9v8fWd+CoJ2zR
h24K/udu8ej6ZX931LC4iEwSm0sxAgMBAAECgYBIQuwPA+i56zYVO41kOu+MvMJB
ehlDkbt0BCoFgrXJDNUnT9ihu8YbklEP0LioaID5M/ApEvhLpXTLoWVYRAT2IL78
+koFODLIEzd6ULWjC9VeGd0LSknv34K1/w/9ho9SPMjzlOzC7BXUfOrlj290gm4O
iEzjVfNMLAfFXvpLmQJBAPp6l3bYWimtvF2xZkVQCyKtaeDj1THjDxTkNVeuJynA
CYoklqQzboJKGa7aRCleTCEeEqYmXF+QwMcvfWWOj28CQQDe3Xa4evkcyJd5N/hG
0seF6LtijSrWuIamaq3Gj1i2JxVlN6eRRS2zL/K0iqr5QtOIEw3F6HrgvS5+s+hp
NH9fAkEAjwJzfC1mvSkuxSfGRoi+8tuj+fza+pKzR7BMLHWIcrPsPm1JfRLIY6c/
JrAD/sKSIM50w1xfnUieaJtasyNEDQJAJHYTEEd+LglbTserZNrjLbNPxOXXll2G
Gf/mAlA9cT+frnmWfpvUyDYV/ReatUELnn2PiUtpnw8UZkJEycF+/QJBALY9Wfme
Y4r/WdsOnv6fGC5sHtfPDYqVZgflaNA+yVlo645gyXz4LiFLxTbjDOqDuggAi/NJ
XwJ9TaTUvsJj5hQ=
-----END PRIVATE KEY-----
";

    /// Wraps DER in PEM armor with 64-character lines, as OpenSSL writes it.
    fn pem(label: &str, der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let mut text = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            text.push('\n');
        }
        text.push_str(&format!("-----END {label}-----\n"));
        text
    }

    fn p256() -> EcdsaKeyPair {
        EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key generation")
    }

    fn pkcs8_pem_of(pair: &EcdsaKeyPair) -> String {
        pem(
            "PRIVATE KEY",
            pair.to_pkcs8v1().expect("PKCS#8 export").as_ref(),
        )
    }

    /// One TLV of DER: (tag, contents, what follows). Test inputs are well-formed.
    fn der_element(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = input[0];
        let (len, header) = if input[1] < 0x80 {
            (usize::from(input[1]), 2)
        } else {
            let count = usize::from(input[1] & 0x7f);
            let len = input[2..2 + count]
                .iter()
                .fold(0, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + count)
        };
        (tag, &input[header..header + len], &input[header + len..])
    }

    /// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo`: for RSA, the PKCS#1 key.
    fn inner_key_of_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
        let (_, info, _) = der_element(pkcs8);
        let (_, _version, rest) = der_element(info);
        let (_, _algorithm, rest) = der_element(rest);
        let (tag, key, _) = der_element(rest);
        assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
        key.to_vec()
    }

    /// Checks the compact form and the signature, and returns the header and the claims.
    fn verify(
        jws: &str,
        algorithm: &'static dyn VerificationAlgorithm,
        public_key: &[u8],
    ) -> (Value, Value, Vec<u8>) {
        assert!(
            jws.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'),
            "only base64url characters and dots, no padding: {jws}"
        );
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3, "header.claims.signature");
        let signature = URL_SAFE_NO_PAD
            .decode(parts[2])
            .expect("signature base64url");
        let signed = &jws[..parts[0].len() + 1 + parts[1].len()];
        UnparsedPublicKey::new(algorithm, public_key)
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies");
        let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header"))
            .expect("header JSON");
        let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims"))
            .expect("claims JSON");
        (header, claims, signature)
    }

    fn assert_claims(claims: &Value, client_id: &str, audience: &str, iat: i64, exp: i64) {
        let object = claims.as_object().expect("claims are an object");
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "sub"]);
        assert_eq!(claims["iss"], client_id);
        assert_eq!(claims["sub"], client_id);
        assert_eq!(claims["aud"], audience, "aud is one string: the issuer");
        assert_eq!(claims["iat"], iat);
        assert_eq!(claims["exp"], exp);
        let jti = claims["jti"].as_str().expect("jti is a string");
        assert_eq!(jti.len(), 32, "128 bits as hex");
        assert!(
            jti.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    /// An error message must not quote any part of the key's body.
    fn assert_no_key_material(message: &str, pem_text: &str) {
        for line in pem_text.lines().filter(|line| !line.starts_with("-----")) {
            for window in line.as_bytes().chunks(12).filter(|w| w.len() == 12) {
                let window = std::str::from_utf8(window).expect("ASCII");
                assert!(!message.contains(window), "{message:?} quotes key material");
            }
        }
    }

    fn refused(pem_text: &str) -> KeyError {
        let error = PrivateKey::from_pem(pem_text).expect_err("the PEM is refused");
        assert_no_key_material(&error.to_string(), pem_text);
        assert_no_key_material(&format!("{error:?}"), pem_text);
        error
    }

    #[test]
    fn es256_assertion_verifies_and_carries_the_claims() {
        let pair = p256();
        let pem_text = pkcs8_pem_of(&pair);
        let key = PrivateKey::from_pem(&pem_text).expect("P-256 PKCS#8 key");
        assert_eq!(key.algorithm(), SigningAlgorithm::Es256);

        let jws = client_assertion(&key, CLIENT_ID, ISSUER, NOW, DEFAULT_LIFETIME_SECS)
            .expect("assertion");
        let (header, claims, signature) =
            verify(&jws, &ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        assert_eq!(header, json!({ "alg": "ES256", "typ": "JWT" }));
        assert_eq!(signature.len(), 64, "JWS ES256 is r || s, not ASN.1");
        assert_claims(&claims, CLIENT_ID, ISSUER, NOW, NOW + 60);
    }

    #[test]
    fn rs256_assertions_verify_from_pkcs8_and_pkcs1() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = pair.as_der().expect("PKCS#8 export");
        let pkcs1 = inner_key_of_pkcs8(pkcs8.as_ref());
        for pem_text in [
            pem("PRIVATE KEY", pkcs8.as_ref()),
            pem("RSA PRIVATE KEY", &pkcs1),
        ] {
            let key = PrivateKey::from_pem(&pem_text).expect("RSA key");
            assert_eq!(key.algorithm(), SigningAlgorithm::Rs256);
            let jws = client_assertion(&key, "rsa-client", "https://as.example.com/", NOW, 120)
                .expect("assertion");
            let (header, claims, signature) = verify(
                &jws,
                &RSA_PKCS1_2048_8192_SHA256,
                pair.public_key().as_ref(),
            );
            assert_eq!(header, json!({ "alg": "RS256", "typ": "JWT" }));
            assert_eq!(signature.len(), 256);
            assert_claims(
                &claims,
                "rsa-client",
                "https://as.example.com/",
                NOW,
                NOW + 120,
            );
        }
    }

    #[test]
    fn sec1_keys_are_read_with_or_without_ec_parameters() {
        let pair = p256();
        let sec1 = pair.private_key().as_der().expect("SEC1 export");
        let bare = pem("EC PRIVATE KEY", sec1.as_ref());
        // What `openssl ecparam -name prime256v1 -genkey` writes: the curve OID, then the key.
        let with_parameters = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{bare}"
        );
        for pem_text in [bare, with_parameters] {
            let key = PrivateKey::from_pem(&pem_text).expect("SEC1 P-256 key");
            assert_eq!(key.algorithm(), SigningAlgorithm::Es256);
            let jws = client_assertion(&key, CLIENT_ID, ISSUER, NOW, 60).expect("assertion");
            verify(&jws, &ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        }
    }

    #[test]
    fn surrounding_text_crlf_and_indentation_are_tolerated() {
        let pair = p256();
        let pem_text = pkcs8_pem_of(&pair);
        let decorated = format!(
            "Bag Attributes\n    friendlyName: client\n{}\n\ntrailing words\n",
            pem_text
                .lines()
                .map(|line| format!("  {line}  "))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        let key = PrivateKey::from_pem(&decorated).expect("decorated PEM");
        let jws = client_assertion(&key, CLIENT_ID, ISSUER, NOW, 60).expect("assertion");
        verify(&jws, &ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
    }

    #[test]
    fn every_assertion_has_a_new_jti() {
        let key = PrivateKey::from_pem(&pkcs8_pem_of(&p256())).expect("key");
        let jti = |jws: &str| -> String {
            let claims = jws.split('.').nth(1).expect("claims part");
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url"))
                    .expect("JSON");
            claims["jti"].as_str().expect("jti").to_owned()
        };
        let first = client_assertion(&key, CLIENT_ID, ISSUER, NOW, 60).expect("first");
        let second = client_assertion(&key, CLIENT_ID, ISSUER, NOW, 60).expect("second");
        assert_ne!(jti(&first), jti(&second));
    }

    #[test]
    fn claims_with_quotes_and_unicode_are_escaped() {
        let pair = p256();
        let key = PrivateKey::from_pem(&pkcs8_pem_of(&pair)).expect("key");
        let client_id = "client \"quoted\" \\ back\u{1}slash ünïcode";
        let audience = "https://as.example.com/tenant?a=1&b=\"2\"";
        let jws = client_assertion(&key, client_id, audience, NOW, 60).expect("assertion");
        let (_, claims, _) = verify(&jws, &ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        assert_claims(&claims, client_id, audience, NOW, NOW + 60);
    }

    #[test]
    fn lifetime_is_clamped() {
        let key = PrivateKey::from_pem(&pkcs8_pem_of(&p256())).expect("key");
        for (asked, given) in [
            (i64::MIN, 1),
            (-5, 1),
            (0, 1),
            (1, 1),
            (60, 60),
            (300, 300),
            (301, 300),
            (i64::MAX, 300),
        ] {
            let jws = client_assertion(&key, CLIENT_ID, ISSUER, NOW, asked).expect("assertion");
            let claims = jws.split('.').nth(1).expect("claims part");
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).expect("base64url"))
                    .expect("JSON");
            assert_eq!(claims["exp"], NOW + given, "lifetime {asked}");
        }
    }

    #[test]
    fn impossible_claims_are_refused_without_panicking() {
        let key = PrivateKey::from_pem(&pkcs8_pem_of(&p256())).expect("key");
        for (client_id, audience, now) in [
            ("", ISSUER, NOW),
            (CLIENT_ID, "", NOW),
            (CLIENT_ID, ISSUER, -1),
            (CLIENT_ID, ISSUER, i64::MIN),
            (CLIENT_ID, ISSUER, i64::MAX),
            (CLIENT_ID, ISSUER, i64::MAX - 59),
        ] {
            assert!(
                matches!(
                    client_assertion(&key, client_id, audience, now, 60),
                    Err(KeyError::InvalidClaims(_))
                ),
                "{client_id:?} {audience:?} {now}"
            );
        }
        // The latest time that still fits.
        assert!(client_assertion(&key, CLIENT_ID, ISSUER, i64::MAX - 60, 60).is_ok());
    }

    #[test]
    fn a_tampered_or_foreign_assertion_does_not_verify() {
        let pair = p256();
        let key = PrivateKey::from_pem(&pkcs8_pem_of(&pair)).expect("key");
        let jws = client_assertion(&key, CLIENT_ID, ISSUER, NOW, 60).expect("assertion");
        let parts: Vec<&str> = jws.split('.').collect();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");

        let forged_claims = URL_SAFE_NO_PAD.encode(
            json!({ "iss": "attacker", "sub": "attacker", "aud": ISSUER, "iat": NOW, "exp": NOW + 60, "jti": "x" })
                .to_string(),
        );
        let forged = format!("{}.{forged_claims}", parts[0]);
        let own_key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        assert!(own_key.verify(forged.as_bytes(), &signature).is_err());

        let other = p256();
        let other_key =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, other.public_key().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(other_key.verify(signed.as_bytes(), &signature).is_err());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let pem_text = pkcs8_pem_of(&p256());
        let key = PrivateKey::from_pem(&pem_text).expect("key");
        let debug = format!("{key:?}");
        assert_eq!(debug, "PrivateKey { algorithm: Es256, .. }");
        assert_no_key_material(&debug, &pem_text);
    }

    #[test]
    fn keys_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PrivateKey>();
    }

    #[test]
    fn other_curves_and_key_types_are_refused() {
        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("P-384");
        let p384_pkcs8 = pem("PRIVATE KEY", p384.to_pkcs8v1().expect("PKCS#8").as_ref());
        assert_eq!(refused(&p384_pkcs8), KeyError::UnsupportedCurve);
        let p384_sec1 = pem(
            "EC PRIVATE KEY",
            p384.private_key().as_der().expect("SEC1").as_ref(),
        );
        assert_eq!(refused(&p384_sec1), KeyError::UnsupportedCurve);

        let ed25519 = Ed25519KeyPair::generate().expect("Ed25519");
        let ed25519_pem = pem("PRIVATE KEY", ed25519.to_pkcs8().expect("PKCS#8").as_ref());
        assert_eq!(refused(&ed25519_pem), KeyError::UnsupportedKeyType);

        // A P-256 key under the RSA label is not an RSA key.
        let p256_pkcs8 = p256().to_pkcs8v1().expect("PKCS#8");
        let mislabelled = pem("RSA PRIVATE KEY", p256_pkcs8.as_ref());
        assert!(matches!(refused(&mislabelled), KeyError::InvalidKey(_)));
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        assert_eq!(refused(RSA_1024_PKCS8), KeyError::RsaKeyTooSmall);
        let body: String = RSA_1024_PKCS8
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let pkcs8 = STANDARD.decode(body).expect("base64");
        let pkcs1 = pem("RSA PRIVATE KEY", &inner_key_of_pkcs8(&pkcs8));
        assert_eq!(refused(&pkcs1), KeyError::RsaKeyTooSmall);
    }

    #[test]
    fn encrypted_keys_certificates_and_public_keys_are_refused() {
        let encrypted_pkcs8 = "-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
            MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQIc2FsdHNhbHQCAggA\n\
            -----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(refused(encrypted_pkcs8), KeyError::Encrypted);

        let legacy_encrypted = "-----BEGIN RSA PRIVATE KEY-----\n\
            Proc-Type: 4,ENCRYPTED\n\
            DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\
            \n\
            c2FsdGVkX1+ZmFrZWNpcGhlcnRleHRmYWtlY2lwaGVydGV4dA==\n\
            -----END RSA PRIVATE KEY-----\n";
        assert_eq!(refused(legacy_encrypted), KeyError::Encrypted);

        let certificate = "-----BEGIN CERTIFICATE-----\n\
            MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGVOb3RBS2V5MAoGCCqGSM49BAMCMA8x\n\
            -----END CERTIFICATE-----\n";
        assert_eq!(
            refused(certificate),
            KeyError::NotAPrivateKey {
                label: "CERTIFICATE".to_owned()
            }
        );

        let pair = p256();
        let public_key = pem("PUBLIC KEY", pair.public_key().as_ref());
        assert!(matches!(
            refused(&public_key),
            KeyError::NotAPrivateKey { label } if label == "PUBLIC KEY"
        ));

        // A key bundled with its certificate is ambiguous input: refused as well.
        let bundle = format!("{}{certificate}", pkcs8_pem_of(&pair));
        assert!(matches!(refused(&bundle), KeyError::NotAPrivateKey { .. }));
    }

    #[test]
    fn malformed_documents_are_refused() {
        let pem_text = pkcs8_pem_of(&p256());
        let lines: Vec<&str> = pem_text.lines().collect();

        assert_eq!(refused(""), KeyError::NoPrivateKey);
        assert_eq!(refused("just some words\n"), KeyError::NoPrivateKey);
        assert_eq!(
            refused(
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
            ),
            KeyError::NoPrivateKey
        );
        // The base64 of the body alone, without armor.
        assert_eq!(
            refused(&lines[1..lines.len() - 1].join("\n")),
            KeyError::NoPrivateKey
        );

        let two_keys = format!("{pem_text}{}", pkcs8_pem_of(&p256()));
        assert_eq!(refused(&two_keys), KeyError::MultipleKeys);

        let mismatched =
            pem_text.replace("-----END PRIVATE KEY-----", "-----END EC PRIVATE KEY-----");
        assert!(matches!(refused(&mismatched), KeyError::MalformedPem(_)));

        let no_end = lines[..lines.len() - 1].join("\n");
        assert!(matches!(refused(&no_end), KeyError::MalformedPem(_)));

        let mut bad_base64 = lines.clone();
        let broken_line = format!("*{}", &lines[1][1..]);
        bad_base64[1] = &broken_line;
        assert_eq!(
            refused(&bad_base64.join("\n")),
            KeyError::MalformedPem("the body is not valid base64")
        );

        let lower_label = pem_text.replace("PRIVATE KEY", "private key");
        assert!(matches!(refused(&lower_label), KeyError::MalformedPem(_)));

        // A body line missing: valid base64, broken DER.
        let mut short = lines.clone();
        short.remove(2);
        assert!(matches!(
            refused(&short.join("\n")),
            KeyError::InvalidKey(_)
        ));

        let empty = "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n";
        assert!(matches!(refused(empty), KeyError::InvalidKey(_)));

        let garbage_der = pem("PRIVATE KEY", b"definitely not a key, just bytes");
        assert!(matches!(refused(&garbage_der), KeyError::InvalidKey(_)));
    }

    #[test]
    fn every_truncation_is_refused_without_panicking() {
        let pem_text = pkcs8_pem_of(&p256());
        let end = pem_text.trim_end().len();
        for cut in 0..end {
            if pem_text.is_char_boundary(cut) {
                assert!(
                    PrivateKey::from_pem(&pem_text[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
        }
        assert!(PrivateKey::from_pem(&pem_text[..end]).is_ok());
    }

    #[test]
    fn oversized_documents_are_refused_before_parsing() {
        let pem_text = pkcs8_pem_of(&p256());
        let padded = format!("{}\n{pem_text}", "x".repeat(MAX_PEM_BYTES));
        assert_eq!(
            refused(&padded),
            KeyError::TooLarge {
                max_bytes: MAX_PEM_BYTES
            }
        );
        // Exactly at the limit is still read.
        let room = MAX_PEM_BYTES - pem_text.len() - 1;
        let at_limit = format!("{}\n{pem_text}", "x".repeat(room));
        assert_eq!(at_limit.len(), MAX_PEM_BYTES);
        assert!(PrivateKey::from_pem(&at_limit).is_ok());
    }

    #[test]
    fn random_input_never_panics() {
        // A fixed xorshift stream: reproducible, and no dependency for it.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-: \n\r\té"
                .chars()
                .collect();
        let armor = [
            "-----BEGIN PRIVATE KEY-----\n",
            "-----END PRIVATE KEY-----\n",
        ];
        for round in 0..300_usize {
            let len = usize::try_from(next() % 600).expect("small");
            let noise: String = (0..len)
                .map(|_| alphabet[usize::try_from(next() % 1024).expect("small") % alphabet.len()])
                .collect();
            let input = match round % 3 {
                0 => noise,
                1 => format!("{}{noise}\n{}", armor[0], armor[1]),
                _ => {
                    let bytes: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
                    pem("PRIVATE KEY", &bytes)
                }
            };
            assert!(PrivateKey::from_pem(&input).is_err(), "round {round}");
        }
    }

    #[test]
    fn algorithm_names_parse_exactly() {
        for algorithm in [SigningAlgorithm::Rs256, SigningAlgorithm::Es256] {
            assert_eq!(
                algorithm.as_str().parse::<SigningAlgorithm>(),
                Ok(algorithm)
            );
            assert_eq!(algorithm.to_string(), algorithm.as_str());
        }
        for name in [
            "es256", "Rs256", "none", "HS256", "PS256", "ES384", "EdDSA", " ES256", "",
        ] {
            assert!(
                matches!(
                    name.parse::<SigningAlgorithm>(),
                    Err(KeyError::UnsupportedAlgorithm(_))
                ),
                "{name:?}"
            );
        }
        let long = "X".repeat(1000);
        let error = long.parse::<SigningAlgorithm>().expect_err("refused");
        assert!(
            error.to_string().len() < 120,
            "the message quotes a shortened name"
        );
    }

    #[test]
    fn the_algorithm_must_be_advertised_when_the_server_lists_any() {
        let es256 = SigningAlgorithm::Es256;
        let listed = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();

        assert_eq!(choose(es256, None), Ok(es256));
        assert_eq!(choose(es256, Some(&[])), Ok(es256));
        assert_eq!(choose(es256, Some(&listed(&["RS256", "ES256"]))), Ok(es256));
        assert_eq!(
            choose(SigningAlgorithm::Rs256, Some(&listed(&["RS256"]))),
            Ok(SigningAlgorithm::Rs256)
        );

        let error = choose(es256, Some(&listed(&["RS256", "PS256"]))).expect_err("refused");
        assert_eq!(
            error,
            KeyError::AlgorithmNotAdvertised {
                key: es256,
                advertised: r#"["RS256", "PS256"]"#.to_owned()
            }
        );
        assert_eq!(
            error.to_string(),
            r#"the authorization server does not accept ES256 client assertions (it advertises ["RS256", "PS256"])"#
        );
        // Case matters in JWS names.
        assert!(choose(es256, Some(&listed(&["es256"]))).is_err());

        let many: Vec<String> = (0..100).map(|i| format!("ALG{i}")).collect();
        let error = choose(es256, Some(&many)).expect_err("refused");
        assert!(error.to_string().len() < 200, "a long list is shortened");
    }

    #[test]
    fn assertion_type_is_the_rfc_7523_urn() {
        assert_eq!(
            ASSERTION_TYPE,
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
    }
}
