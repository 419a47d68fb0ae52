//! A response written as JSON: byte for byte what `serde_json` writes for it, in a fraction of
//! the work.
//!
//! A page of servers is a tree of a few thousand short strings. Through `serde` each of them is
//! escaped a byte at a time, and each object's entries go through the map serializer's state
//! machine; serialising was a fifth of a list request's instructions. Here the tree is walked
//! directly, and a string is scanned eight bytes at a time for the few bytes JSON escapes, so
//! a string with nothing to escape (almost every one) is copied whole. Numbers, binary values, errors and
//! extensions, all rare, are still written by `serde_json`, so their text stays its own.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Response, Value};

/// Values a request's resolvers wrote as JSON ahead of the response: a page of servers read as
/// columns is written straight from its cells, with no value tree built, copied and freed for
/// it. Each stands in the response as a string no one can write (it holds a random nonce made
/// for this request), which [`response_bytes`] replaces with the JSON.
///
/// Only for a request whose document passed [`keys_are_unique`]: the executor merges the values
/// of fields that share a response key, and a value written ahead cannot be merged.
#[derive(Default)]
pub struct Prewritten {
    /// What every stand-in starts with, made on the first one.
    marker: OnceLock<String>,
    parts: Mutex<Vec<Vec<u8>>>,
}

impl Prewritten {
    /// Keep `json`, a value written ahead; the value to give the executor in its place.
    pub fn keep(&self, json: Vec<u8>) -> Value {
        let marker = self
            .marker
            .get_or_init(|| format!("\u{0}prewritten:{}:", uuid::Uuid::new_v4().simple()));
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        parts.push(json);
        Value::String(format!("{marker}{}", parts.len() - 1))
    }
}

/// What stands in for values written ahead, and their JSON.
struct Parts<'p> {
    marker: &'p str,
    json: &'p [Vec<u8>],
}

impl Parts<'_> {
    /// The JSON `text` stands in for, if it is a stand-in.
    fn of(&self, text: &str) -> Option<&[u8]> {
        let index: usize = text.strip_prefix(self.marker)?.parse().ok()?;
        self.json.get(index).map(Vec::as_slice)
    }
}

/// `response` as JSON, as `serde_json::to_vec(response)` writes it, with the values of
/// `prewritten` in place of their stand-ins.
pub fn response_bytes(
    response: &Response,
    prewritten: Option<&Prewritten>,
) -> serde_json::Result<Vec<u8>> {
    let json = prewritten.map(|p| p.parts.lock().unwrap_or_else(PoisonError::into_inner));
    let parts = match (prewritten.and_then(|p| p.marker.get()), &json) {
        (Some(marker), Some(json)) => Some(Parts {
            marker,
            json: json.as_slice(),
        }),
        _ => None,
    };
    let written: usize = parts.iter().flat_map(|p| p.json).map(Vec::len).sum();
    let mut out = Vec::with_capacity(256 + written);
    out.extend_from_slice(b"{\"data\":");
    write_value(&mut out, &response.data, parts.as_ref())?;
    if !response.extensions.is_empty() {
        out.extend_from_slice(b",\"extensions\":");
        serde_json::to_writer(&mut out, &response.extensions)?;
    }
    if !response.errors.is_empty() {
        out.extend_from_slice(b",\"errors\":");
        serde_json::to_writer(&mut out, &response.errors)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Append `value` as JSON.
fn write_value(out: &mut Vec<u8>, value: &Value, parts: Option<&Parts>) -> serde_json::Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::String(text) => match parts.and_then(|parts| parts.of(text)) {
            Some(json) => out.extend_from_slice(json),
            None => write_str(out, text),
        },
        Value::Enum(name) => write_str(out, name),
        Value::List(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item, parts)?;
            }
            out.push(b']');
        }
        Value::Object(entries) => {
            out.push(b'{');
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item, parts)?;
            }
            out.push(b'}');
        }
        Value::Number(_) | Value::Binary(_) => serde_json::to_writer(&mut *out, value)?,
    }
    Ok(())
}

/// Append a value that is not a stand-in (see [`Prewritten`]) as JSON.
pub fn write_plain_value(out: &mut Vec<u8>, value: &Value) -> serde_json::Result<()> {
    write_value(out, value, None)
}

/// Selections [`keys_are_unique`] looks at before it gives up (and answers no).
const WALK_BUDGET: usize = 4096;
/// How deep it follows fields and fragments before it gives up: a document it may see has not
/// been validated yet, and its fragments may spread each other in a cycle.
const WALK_DEPTH: usize = 64;

/// Whether, in every selection set of `document` (fragments taken in place, as the executor
/// takes them), no two fields that select fields in turn share a response key; `false` too for
/// a document too large or deep to tell cheaply. Leaves may repeat: their values are equal.
pub fn keys_are_unique(document: &ExecutableDocument) -> bool {
    let mut walk = Walk {
        fragments: &document.fragments,
        budget: WALK_BUDGET,
    };
    document
        .operations
        .iter()
        .all(|(_, operation)| walk.unique_in(&operation.node.selection_set.node, 0))
}

struct Walk<'d> {
    fragments: &'d HashMap<Name, Positioned<FragmentDefinition>>,
    budget: usize,
}

impl<'d> Walk<'d> {
    fn unique_in(&mut self, set: &'d SelectionSet, depth: usize) -> bool {
        let mut keys = Vec::new();
        if !self.collect(set, depth, &mut keys) {
            return false;
        }
        keys.sort_unstable();
        keys.windows(2).all(|pair| pair[0] != pair[1])
    }

    /// Add the response keys of the fields of `set` that select fields to `keys`, checking
    /// each of their own selections.
    fn collect(&mut self, set: &'d SelectionSet, depth: usize, keys: &mut Vec<&'d str>) -> bool {
        if depth >= WALK_DEPTH {
            return false;
        }
        for selection in &set.items {
            let Some(left) = self.budget.checked_sub(1) else {
                return false;
            };
            self.budget = left;
            let inner = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let selects = &field.selection_set.node;
                    if !selects.items.is_empty() {
                        keys.push(field.response_key().node.as_str());
                        if !self.unique_in(selects, depth + 1) {
                            return false;
                        }
                    }
                    continue;
                }
                Selection::InlineFragment(fragment) => &fragment.node.selection_set.node,
                Selection::FragmentSpread(spread) => {
                    match self.fragments.get(&spread.node.fragment_name.node) {
                        Some(fragment) => &fragment.node.selection_set.node,
                        None => return false,
                    }
                }
            };
            if !self.collect(inner, depth + 1, keys) {
                return false;
            }
        }
        true
    }
}

/// Bytes with every byte set to `byte`.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

const HIGH_BITS: u64 = splat(0x80);

/// Whether any of the eight bytes of `chunk` is one JSON escapes: a control character
/// (below 0x20), `"` or `\`. Exact, not merely a hint: a byte `b` below 0x80 has its high bit
/// set in `b - n` exactly when `b < n`, and the `!chunk` term discards bytes of 0x80 and up
/// (all parts of multi-byte characters, which JSON leaves alone); a borrow out of a byte can
/// only come from one that is itself below `n`, so it never makes a clean chunk look dirty.
fn needs_escape(chunk: u64) -> bool {
    let below = |word: u64, n: u8| word.wrapping_sub(splat(n)) & !word & HIGH_BITS;
    let control = below(chunk, 0x20);
    let quote = below(chunk ^ splat(b'"'), 1);
    let backslash = below(chunk ^ splat(b'\\'), 1);
    (control | quote | backslash) != 0
}

/// What `serde_json` writes for one byte of a string: `None` for a byte written as itself.
fn escape(byte: u8) -> Option<&'static [u8]> {
    Some(match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x00..=0x1f => return Some(CONTROL[usize::from(byte)].as_slice()),
        _ => return None,
    })
}

/// `\u00XX` for each control character, with lowercase hex digits as `serde_json` writes them.
const CONTROL: [[u8; 6]; 32] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 6]; 32];
    let mut byte = 0;
    while byte < 32 {
        table[byte] = [
            b'\\',
            b'u',
            b'0',
            b'0',
            digits[byte >> 4],
            digits[byte & 0xf],
        ];
        byte += 1;
    }
    table
};

/// Whether JSON writes `bytes` as they are (nothing in them to escape), eight at a time.
fn is_plain(bytes: &[u8]) -> bool {
    let (chunks, rest) = bytes.as_chunks::<8>();
    if chunks
        .iter()
        .any(|chunk| needs_escape(u64::from_ne_bytes(*chunk)))
    {
        return false;
    }
    // The last few bytes, padded with a letter.
    let mut last = [b'a'; 8];
    last[..rest.len()].copy_from_slice(rest);
    !needs_escape(u64::from_ne_bytes(last))
}

/// Append `text` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if is_plain(bytes) {
        out.extend_from_slice(bytes);
    } else {
        // Bytes before `start` are written.
        let mut start = 0;
        for (index, &byte) in bytes.iter().enumerate() {
            if let Some(escaped) = escape(byte) {
                out.extend_from_slice(&bytes[start..index]);
                out.extend_from_slice(escaped);
                start = index + 1;
            }
        }
        out.extend_from_slice(&bytes[start..]);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{ErrorExtensionValues, Name, ServerError};
    use indexmap::IndexMap;
    use proptest::prelude::*;

    fn serde_text(response: &Response) -> String {
        serde_json::to_string(response).unwrap()
    }

    fn ours(response: &Response) -> String {
        String::from_utf8(response_bytes(response, None).unwrap()).unwrap()
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        for byte in 0u8..0x80 {
            let text = String::from(char::from(byte));
            let mut out = Vec::new();
            write_str(&mut out, &text);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&text).unwrap(),
                "byte {byte:#04x}"
            );
        }
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_a_chunk() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for length in 0..20 {
                for at in 0..length {
                    let text: String = (0..length)
                        .map(|index| if index == at { special } else { 'é' })
                        .collect();
                    let mut out = Vec::new();
                    write_str(&mut out, &text);
                    assert_eq!(
                        String::from_utf8(out).unwrap(),
                        serde_json::to_string(&text).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn a_response_with_errors_and_extensions_is_written_as_serde_json_writes_it() {
        let mut data = IndexMap::new();
        data.insert(Name::new("n"), Value::from(1.5));
        data.insert(Name::new("i"), Value::from(-7));
        data.insert(Name::new("e"), Value::Enum(Name::new("CONNECTED")));
        data.insert(Name::new("b"), Value::Binary(vec![0, 255].into()));
        data.insert(Name::new("l"), Value::List(vec![Value::Null, true.into()]));
        let mut response = Response::new(Value::Object(data));
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "FORBIDDEN");
        let mut error = ServerError::new("no \"access\"", None);
        error.extensions = Some(extensions);
        response.errors.push(error);
        response
            .extensions
            .insert("cost".to_owned(), Value::from(3));
        assert_eq!(ours(&response), serde_text(&response));
        assert_eq!(ours(&Response::default()), serde_text(&Response::default()));
    }

    #[test]
    fn a_stand_in_is_replaced_by_its_json_and_nothing_else_is() {
        let prewritten = Prewritten::default();
        let first = prewritten.keep(br#"{"a":[1,"x"]}"#.to_vec());
        let second = prewritten.keep(b"null".to_vec());
        let Value::String(stand_in) = &first else {
            panic!("a stand-in is a string");
        };
        // Another request's stand-in, and text that only resembles one, stay strings.
        let elsewhere = Prewritten::default().keep(b"true".to_vec());
        let lookalike = Value::String(format!("{stand_in}7"));
        let data = Value::List(vec![first, second, elsewhere.clone(), lookalike.clone()]);
        let written = response_bytes(&Response::new(data), Some(&prewritten)).unwrap();
        let expected = Value::List(vec![elsewhere, lookalike]).into_json().unwrap();
        let expected = &serde_json::to_string(&expected).unwrap()[1..];
        assert_eq!(
            String::from_utf8(written).unwrap(),
            format!(r#"{{"data":[{{"a":[1,"x"]}},null,{expected}}}"#)
        );
    }

    fn unique(query: &str) -> bool {
        keys_are_unique(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn keys_are_unique_unless_a_field_with_a_selection_repeats_its_key() {
        assert!(unique("{ a { b c { d } } e: a { b } }"));
        assert!(unique(
            "{ a { b b __typename ...F } } fragment F on T { b }"
        ));
        assert!(!unique("{ a { b } a { c } }"));
        assert!(!unique("{ x { a { b } e: c { d } e: a { b } } }"));
        assert!(!unique("{ a { b } ... on Q { a { c } } }"));
        assert!(!unique(
            "{ x { a { b } ...F } } fragment F on T { a { c } }"
        ));
        assert!(!unique("{ x { ...Missing } }"));
        assert!(!unique("query A { a { b } } query B { c { d } c { e } }"));
    }

    #[test]
    fn a_cycle_or_a_flood_of_fragments_is_not_walked_through() {
        assert!(!unique("{ a { ...F } } fragment F on T { b { ...F } }"));
        assert!(!unique("{ ...F } fragment F on Q { ...F }"));
        let mut query = String::from("{ ...F0 }");
        for level in 0..20 {
            let next = level + 1;
            query.push_str(&format!(
                " fragment F{level} on Q {{ ...F{next} ...F{next} }}"
            ));
        }
        query.push_str(" fragment F20 on Q { a }");
        assert!(!unique(&query));
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x7f]{0,40}".prop_map(Value::String),
            "[A-Z_]{1,12}".prop_map(|name| Value::Enum(Name::new(name))),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                prop::collection::vec((any::<String>(), inner), 0..8).prop_map(|entries| {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(key, value)| (Name::new(key), value))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_written_as_serde_json_writes_it(data in value()) {
            let response = Response::new(data);
            prop_assert_eq!(ours(&response), serde_text(&response));
        }
    }
}
