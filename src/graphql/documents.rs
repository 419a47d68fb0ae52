//! Parsed documents of the queries a process sees again and again.
//!
//! Parsing is a fifth of what a small operation costs (a tool call), and a dashboard sends the
//! same few texts all day. Parsed documents are kept by their exact text, so a request whose
//! text was seen before starts from a copy. The parse does not depend on the schema, the
//! caller or the variables, so one cache serves the whole process; everything that does
//! (validation, limits, the caller's access) still runs on every request.
//!
//! Bounded against floods: only texts of at most [`MAX_TEXT_BYTES`] are kept, at most
//! [`CAPACITY`] of them and [`BUDGET_BYTES`] of text in all (a document takes up to about a
//! hundred times its text), and a new one past either evicts arbitrary ones. A text that does
//! not parse is never kept (the schema parses it again and reports the error as before).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;

/// Documents kept at most.
const CAPACITY: usize = 256;

/// The longest text kept, in bytes; longer ones are parsed on every request.
const MAX_TEXT_BYTES: usize = 4 * 1024;

/// The text of all kept documents together, in bytes.
const BUDGET_BYTES: usize = 64 * 1024;

/// Parsed documents by their text.
struct Documents {
    kept: Mutex<Kept>,
    capacity: usize,
    budget: usize,
}

/// The documents and the length of their texts together.
#[derive(Default)]
struct Kept {
    by_text: HashMap<Arc<str>, ExecutableDocument>,
    bytes: usize,
}

/// The process's documents.
fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| Documents::new(CAPACITY, BUDGET_BYTES))
}

/// `request` with its document set from the cache, parsing (and keeping) it on a miss.
pub fn attach(mut request: Request) -> Request {
    if let Some(document) = documents().parsed(&request.query) {
        request.set_parsed_query(document);
    }
    request
}

impl Documents {
    fn new(capacity: usize, budget: usize) -> Self {
        Documents {
            kept: Mutex::default(),
            capacity,
            budget,
        }
    }

    /// The parsed document of `text`, if it is short enough to keep and parses.
    fn parsed(&self, text: &str) -> Option<ExecutableDocument> {
        if text.len() > MAX_TEXT_BYTES {
            return None;
        }
        if let Some(document) = self.lock().by_text.get(text) {
            return Some(document.clone());
        }
        let document = async_graphql::parser::parse_query(text).ok()?;
        let mut kept = self.lock();
        while kept.by_text.len() >= self.capacity || kept.bytes + text.len() > self.budget {
            let Some(evicted) = kept.by_text.keys().next().cloned() else {
                break;
            };
            kept.by_text.remove(&evicted);
            kept.bytes -= evicted.len();
        }
        if kept.bytes + text.len() <= self.budget
            && kept
                .by_text
                .insert(Arc::from(text), document.clone())
                .is_none()
        {
            kept.bytes += text.len();
        }
        Some(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Every entry is a complete document, so a panic elsewhere while the lock was held
        // cannot have left one half-written.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(documents: &Documents, text: &str) -> bool {
        documents.lock().by_text.contains_key(text)
    }

    #[test]
    fn a_text_seen_again_starts_from_the_same_document() {
        let documents = Documents::new(4, 1024);
        let text = "query One { viewer { id } }";
        let first = documents.parsed(text);
        assert!(first.is_some());
        assert!(kept(&documents, text));
        let again = documents.parsed(text);
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        let fresh = async_graphql::parser::parse_query(text).ok();
        assert_eq!(format!("{again:?}"), format!("{fresh:?}"));
    }

    #[test]
    fn texts_that_do_not_parse_or_are_too_long_are_not_kept() {
        let documents = Documents::new(4, 1024);
        let broken = "query Broken { viewer { id ";
        assert!(documents.parsed(broken).is_none());
        assert!(!kept(&documents, broken));
        let mut long = String::from("query Long { viewer { id } }");
        long.push_str(&" ".repeat(MAX_TEXT_BYTES));
        assert!(documents.parsed(&long).is_none());
        assert!(!kept(&documents, &long));
        // Such a request is left as it came, for the schema to parse and report.
        let request = attach(Request::new(broken));
        assert_eq!(request.query, broken);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Flood{n} {{ viewer {{ id }} }}");
            assert!(documents.parsed(&text).is_some());
            assert!(kept(&documents, &text));
            assert!(documents.lock().by_text.len() <= 8);
        }
        // Long texts are bounded by their bytes together, whatever their number.
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Long{n} {{ viewer {{ id }} }}{}", " ".repeat(300));
            assert!(documents.parsed(&text).is_some());
            assert!(kept(&documents, &text));
            let kept = documents.lock();
            let bytes: usize = kept.by_text.keys().map(|text| text.len()).sum();
            assert_eq!(bytes, kept.bytes);
            assert!(kept.bytes <= 1024 && kept.by_text.len() <= 3);
        }
    }
}
