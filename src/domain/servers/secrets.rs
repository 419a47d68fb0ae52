//! The sealed values of a server: its static header values and its pre-registered client
//! secret.
//!
//! Invariants:
//! - Values are sealed by the key ring with the row id as AAD, so a value copied to another row
//!   does not open; only header names are stored in clear.
//! - A header value that no longer opens (lost key) is a crypto error; callers decide whether
//!   that means "ask again".

use crate::crypto::Secret;
use crate::db::models::McpServerRow;
use crate::db::sealed;
use crate::domain::{Context, Result};

/// Header names of a server, in the order they were given.
pub fn header_names(row: &McpServerRow) -> Vec<String> {
    header_names_of(&row.header_names)
}

/// Header names from their stored list (a server's `header_names` column).
pub fn header_names_of(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

/// The static headers of a server, opened. A value that no longer opens (lost key) is
/// reported as a crypto error; callers decide whether that means "ask again".
pub fn open_headers(ctx: &Context, row: &McpServerRow) -> Result<Vec<(String, Secret)>> {
    let Some(sealed) = &row.headers_sealed else {
        return Ok(Vec::new());
    };
    let row_id = row.id.0.to_string();
    let json = ctx
        .keys
        .open_str(sealed, sealed::SERVER_HEADERS.context(&row_id))?;
    let pairs: Vec<(String, String)> =
        serde_json::from_str(json.expose()).map_err(|_| crate::crypto::CryptoError::Malformed)?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .collect())
}

pub(super) fn header_names_json(headers: &[(String, Secret)]) -> String {
    let names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

pub(super) fn seal_headers(
    ctx: &Context,
    row_id: &str,
    headers: &[(String, Secret)],
) -> Option<String> {
    if headers.is_empty() {
        return None;
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    let json = serde_json::to_string(&pairs).ok()?;
    Some(
        ctx.keys
            .seal_str(&json, sealed::SERVER_HEADERS.context(row_id)),
    )
}
