//! Parsed documents of the queries a process sees again and again.
//!
//! Parsing is a fifth of what a small operation costs (a tool call), and a dashboard sends the
//! same few texts all day. Parsed documents are kept by their exact text and the user who sent
//! it, so a request whose text that user sent before starts from a copy. Everything that
//! depends on more than the text (validation, limits, the caller's access) still runs on every
//! request. Keeping them per user means a hit says nothing about what anyone else sent: a text
//! may hold literal values (a tool's arguments written inline), and a shared cache would let
//! one caller time whether another sent a guessed text.
//!
//! Bounded against floods: only texts of at most [`MAX_TEXT_BYTES`] are kept, at most
//! [`CAPACITY`] of them and [`BUDGET_BYTES`] of text in all (a document takes up to about a
//! hundred times its text), and a new one past either evicts arbitrary ones. A text that does
//! not parse is never kept (the schema parses it again and reports the error as before).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;
use uuid::Uuid;

/// Documents kept at most.
const CAPACITY: usize = 256;

/// The longest text kept, in bytes; longer ones are parsed on every request.
const MAX_TEXT_BYTES: usize = 4 * 1024;

/// The text of all kept documents together, in bytes.
const BUDGET_BYTES: usize = 64 * 1024;

/// Who sent a text (`None`: no caller) and the text.
type Key = (Option<Uuid>, Arc<str>);

/// Parsed documents by their sender and text.
struct Documents {
    kept: Mutex<Kept>,
    capacity: usize,
    budget: usize,
}

/// The documents and the length of their texts together.
#[derive(Default)]
struct Kept {
    by_text: HashMap<Key, ExecutableDocument>,
    bytes: usize,
}

/// The process's documents.
fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| Documents::new(CAPACITY, BUDGET_BYTES))
}

/// `request` (sent by `user`, if anyone) with its document set from the cache, parsing (and
/// keeping) it on a miss.
pub fn attach(mut request: Request, user: Option<Uuid>) -> Request {
    if let Some(document) = documents().parsed(user, &request.query) {
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
    fn parsed(&self, user: Option<Uuid>, text: &str) -> Option<ExecutableDocument> {
        if text.len() > MAX_TEXT_BYTES {
            return None;
        }
        let key: Key = (user, Arc::from(text));
        if let Some(document) = self.lock().by_text.get(&key) {
            return Some(document.clone());
        }
        let document = async_graphql::parser::parse_query(text).ok()?;
        let mut kept = self.lock();
        while kept.by_text.len() >= self.capacity || kept.bytes + text.len() > self.budget {
            let Some(evicted) = kept.by_text.keys().next().cloned() else {
                break;
            };
            kept.by_text.remove(&evicted);
            kept.bytes -= evicted.1.len();
        }
        if kept.bytes + text.len() <= self.budget
            && kept.by_text.insert(key, document.clone()).is_none()
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

    fn kept(documents: &Documents, user: Option<Uuid>, text: &str) -> bool {
        documents
            .lock()
            .by_text
            .contains_key(&(user, Arc::from(text)))
    }

    #[test]
    fn a_text_seen_again_starts_from_the_same_document() {
        let documents = Documents::new(4, 1024);
        let text = "query One { viewer { id } }";
        let first = documents.parsed(None, text);
        assert!(first.is_some());
        assert!(kept(&documents, None, text));
        let again = documents.parsed(None, text);
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        let fresh = async_graphql::parser::parse_query(text).ok();
        assert_eq!(format!("{again:?}"), format!("{fresh:?}"));
    }

    #[test]
    fn a_request_carries_its_parsed_document() {
        let mut request = attach(Request::new("query Attached { viewer { id } }"), None);
        // The schema reads the attached document, not the text: a text changed afterwards
        // would not parse.
        request.query = "query Attached { viewer {".to_owned();
        assert!(request.parsed_query().is_ok());
    }

    #[test]
    fn a_text_is_kept_for_the_user_who_sent_it() {
        let documents = Documents::new(4, 1024);
        let (alice, bob) = (Some(Uuid::new_v4()), Some(Uuid::new_v4()));
        let text = "mutation { callMcpTool(serverId: \"s\", name: \"t\", arguments: { pin: 1234 }) { isError } }";
        assert!(documents.parsed(alice, text).is_some());
        assert!(kept(&documents, alice, text));
        assert!(!kept(&documents, bob, text));
        assert!(!kept(&documents, None, text));
        // Bob's request parses on its own and is then kept for him.
        assert!(documents.parsed(bob, text).is_some());
        assert!(kept(&documents, bob, text));
        assert_eq!(documents.lock().by_text.len(), 2);
    }

    #[test]
    fn texts_that_do_not_parse_or_are_too_long_are_not_kept() {
        let documents = Documents::new(4, 1024);
        let broken = "query Broken { viewer { id ";
        assert!(documents.parsed(None, broken).is_none());
        assert!(!kept(&documents, None, broken));
        let mut long = String::from("query Long { viewer { id } }");
        long.push_str(&" ".repeat(MAX_TEXT_BYTES));
        assert!(documents.parsed(None, &long).is_none());
        assert!(!kept(&documents, None, &long));
        // Such a request is left as it came, for the schema to parse and report.
        let request = attach(Request::new(broken), None);
        assert_eq!(request.query, broken);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Flood{n} {{ viewer {{ id }} }}");
            assert!(documents.parsed(None, &text).is_some());
            assert!(kept(&documents, None, &text));
            assert!(documents.lock().by_text.len() <= 8);
        }
        // Long texts are bounded by their bytes together, whatever their number.
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Long{n} {{ viewer {{ id }} }}{}", " ".repeat(300));
            assert!(documents.parsed(None, &text).is_some());
            assert!(kept(&documents, None, &text));
            let kept = documents.lock();
            let bytes: usize = kept.by_text.keys().map(|(_, text)| text.len()).sum();
            assert_eq!(bytes, kept.bytes);
            assert!(kept.bytes <= 1024 && kept.by_text.len() <= 3);
        }
    }
}
