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
//! A document also remembers the operation names and variables it ran with without any error
//! for that user. Validation is a function of the schema, the document, the operation name and
//! the variables alone, so the same request again is known to pass it: such a request runs on
//! the schema built with the fast rules ([`Checked::Before`]), which still enforce the depth
//! and complexity limits and leave every other check to the executor. Anything not seen
//! before, or seen only with errors, is validated in full, so what a caller is told about a
//! mistake never depends on what they sent before.
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

/// The text of all kept documents together, in bytes (with the runs remembered for them).
const BUDGET_BYTES: usize = 64 * 1024;

/// The longest operation name and variables (as JSON) remembered as having passed; requests
/// with longer ones are validated in full every time.
const MAX_RUN_BYTES: usize = 512;

/// Runs remembered for one document at most.
const RUNS_PER_DOCUMENT: usize = 8;

/// Who sent a text (`None`: no caller) and the text.
type Key = (Option<Uuid>, Arc<str>);

/// Parsed documents by their sender and text.
struct Documents {
    kept: Mutex<Kept>,
    capacity: usize,
    budget: usize,
}

/// The documents and the length of their texts (and remembered runs) together.
#[derive(Default)]
struct Kept {
    by_text: HashMap<Key, Entry>,
    bytes: usize,
}

/// A kept document.
struct Entry {
    document: ExecutableDocument,
    /// The operation names and variables (as JSON) it ran with without errors.
    passed: Vec<String>,
}

impl Entry {
    /// The bytes this entry counts against the budget besides its key's text.
    fn run_bytes(&self) -> usize {
        self.passed.iter().map(String::len).sum()
    }
}

/// Whether a request is known to pass validation.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The same user sent the same text, operation name and variables before, and it ran
    /// without errors.
    Before,
    /// Not known: validated in full. When the request runs without errors, [`passed`] with
    /// this run remembers it.
    Unknown(Option<Run>),
}

/// A request's user, text, and operation name with variables, to remember once it passed.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    key: Key,
    run: String,
}

/// The process's documents.
fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| Documents::new(CAPACITY, BUDGET_BYTES))
}

/// `request` (sent by `user`, if anyone) with its document set from the cache, parsing (and
/// keeping) it on a miss, and whether it is known to pass validation.
pub fn attach(mut request: Request, user: Option<Uuid>) -> (Request, Checked) {
    let run = serde_json::to_string(&(&request.operation_name, &request.variables))
        .ok()
        .filter(|run| run.len() <= MAX_RUN_BYTES);
    let (document, checked) = documents().parsed(user, &request.query, run);
    if let Some(document) = document {
        request.set_parsed_query(document);
    }
    (request, checked)
}

/// Remember that `run` passed: its request finished without any error.
pub fn passed(run: Run) {
    documents().remember(run);
}

impl Documents {
    fn new(capacity: usize, budget: usize) -> Self {
        Documents {
            kept: Mutex::default(),
            capacity,
            budget,
        }
    }

    /// The parsed document of `text`, if it is short enough to keep and parses, and whether
    /// it passed before with `run` (its operation name and variables, when short enough).
    fn parsed(
        &self,
        user: Option<Uuid>,
        text: &str,
        run: Option<String>,
    ) -> (Option<ExecutableDocument>, Checked) {
        if text.len() > MAX_TEXT_BYTES {
            return (None, Checked::Unknown(None));
        }
        let key: Key = (user, Arc::from(text));
        if let Some(entry) = self.lock().by_text.get(&key) {
            let document = Some(entry.document.clone());
            return match run {
                Some(run) if entry.passed.contains(&run) => (document, Checked::Before),
                run => (document, Checked::Unknown(run.map(|run| Run { key, run }))),
            };
        }
        let Ok(document) = async_graphql::parser::parse_query(text) else {
            return (None, Checked::Unknown(None));
        };
        let mut kept = self.lock();
        self.make_room(&mut kept, text.len());
        if kept.bytes + text.len() <= self.budget && !kept.by_text.contains_key(&key) {
            let entry = Entry {
                document: document.clone(),
                passed: Vec::new(),
            };
            kept.by_text.insert(key.clone(), entry);
            kept.bytes += text.len();
        }
        let checked = Checked::Unknown(run.map(|run| Run { key, run }));
        (Some(document), checked)
    }

    /// Remember `run` for its document, if that is still kept.
    fn remember(&self, Run { key, run }: Run) {
        let mut kept = self.lock();
        let Some(entry) = kept.by_text.get_mut(&key) else {
            return;
        };
        if entry.passed.contains(&run) || entry.passed.len() >= RUNS_PER_DOCUMENT {
            return;
        }
        let bytes = run.len();
        entry.passed.push(run);
        kept.bytes += bytes;
        // Over budget: evict others, never the entry just grown (it may be the only one).
        while kept.bytes > self.budget {
            let Some(evicted) = kept.by_text.keys().find(|k| **k != key).cloned() else {
                break;
            };
            Self::evict(&mut kept, &evicted);
        }
    }

    /// Evict entries until `bytes` more fit in the budget and one more fits in the capacity.
    fn make_room(&self, kept: &mut Kept, bytes: usize) {
        while kept.by_text.len() >= self.capacity || kept.bytes + bytes > self.budget {
            let Some(evicted) = kept.by_text.keys().next().cloned() else {
                break;
            };
            Self::evict(kept, &evicted);
        }
    }

    fn evict(kept: &mut Kept, key: &Key) {
        if let Some(entry) = kept.by_text.remove(key) {
            kept.bytes -= key.1.len() + entry.run_bytes();
        }
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
        let first = documents.parsed(None, text, None).0;
        assert!(first.is_some());
        assert!(kept(&documents, None, text));
        let again = documents.parsed(None, text, None).0;
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        let fresh = async_graphql::parser::parse_query(text).ok();
        assert_eq!(format!("{again:?}"), format!("{fresh:?}"));
    }

    #[test]
    fn a_request_carries_its_parsed_document() {
        let (mut request, _) = attach(Request::new("query Attached { viewer { id } }"), None);
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
        assert!(documents.parsed(alice, text, None).0.is_some());
        assert!(kept(&documents, alice, text));
        assert!(!kept(&documents, bob, text));
        assert!(!kept(&documents, None, text));
        // Bob's request parses on its own and is then kept for him.
        assert!(documents.parsed(bob, text, None).0.is_some());
        assert!(kept(&documents, bob, text));
        assert_eq!(documents.lock().by_text.len(), 2);
    }

    #[test]
    fn texts_that_do_not_parse_or_are_too_long_are_not_kept() {
        let documents = Documents::new(4, 1024);
        let broken = "query Broken { viewer { id ";
        assert!(documents.parsed(None, broken, None).0.is_none());
        assert!(!kept(&documents, None, broken));
        let mut long = String::from("query Long { viewer { id } }");
        long.push_str(&" ".repeat(MAX_TEXT_BYTES));
        assert!(documents.parsed(None, &long, None).0.is_none());
        assert!(!kept(&documents, None, &long));
        // Such a request is left as it came, for the schema to parse and report.
        let (request, checked) = attach(Request::new(broken), None);
        assert_eq!(checked, Checked::Unknown(None));
        assert_eq!(request.query, broken);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Flood{n} {{ viewer {{ id }} }}");
            assert!(documents.parsed(None, &text, None).0.is_some());
            assert!(kept(&documents, None, &text));
            assert!(documents.lock().by_text.len() <= 8);
        }
        // Long texts are bounded by their bytes together, whatever their number.
        let documents = Documents::new(8, 1024);
        for n in 0..20 {
            let text = format!("query Long{n} {{ viewer {{ id }} }}{}", " ".repeat(300));
            assert!(documents.parsed(None, &text, None).0.is_some());
            assert!(kept(&documents, None, &text));
            let kept = documents.lock();
            let bytes: usize = kept.by_text.keys().map(|(_, text)| text.len()).sum();
            assert_eq!(bytes, kept.bytes);
            assert!(kept.bytes <= 1024 && kept.by_text.len() <= 3);
        }
    }

    /// The run `checked` offers to remember, remembered.
    fn pass(documents: &Documents, checked: Checked) {
        match checked {
            Checked::Unknown(Some(run)) => documents.remember(run),
            other => panic!("nothing to remember: {other:?}"),
        }
    }

    #[test]
    fn a_run_is_known_to_pass_only_once_it_passed_for_that_user_and_those_variables() {
        let documents = Documents::new(4, 1024);
        let (alice, bob) = (Some(Uuid::new_v4()), Some(Uuid::new_v4()));
        let text = "query($w: ID!) { workspace(id: $w) { id } }";
        let run = |w: &str| Some(format!("[null,{{\"w\":\"{w}\"}}]"));
        let checked = |user, run| documents.parsed(user, text, run).1;

        // Unknown until it ran without errors; then known for exactly that run.
        let first = checked(alice, run("a"));
        assert!(matches!(first, Checked::Unknown(Some(_))));
        assert!(matches!(
            checked(alice, run("a")),
            Checked::Unknown(Some(_))
        ));
        pass(&documents, first);
        assert_eq!(checked(alice, run("a")), Checked::Before);
        // Other variables, another user, or a run too long to remember: validated in full.
        assert!(matches!(
            checked(alice, run("b")),
            Checked::Unknown(Some(_))
        ));
        assert!(matches!(checked(bob, run("a")), Checked::Unknown(Some(_))));
        assert_eq!(checked(alice, None), Checked::Unknown(None));
        // The runs count against the budget, and leave with their document.
        let bytes = documents.lock().bytes;
        assert_eq!(bytes, 2 * text.len() + run("a").unwrap().len());
        documents.make_room(&mut documents.lock(), 1024);
        assert_eq!(documents.lock().bytes, 0);
        assert!(matches!(
            checked(alice, run("a")),
            Checked::Unknown(Some(_))
        ));
    }

    #[test]
    fn a_document_remembers_a_bounded_number_of_runs() {
        let documents = Documents::new(4, 64 * 1024);
        let text = "query($n: Int) { viewer { id } }";
        for n in 0..3 * RUNS_PER_DOCUMENT {
            let checked = documents
                .parsed(None, text, Some(format!("[null,{{\"n\":{n}}}]")))
                .1;
            pass(&documents, checked);
        }
        let kept = documents.lock();
        let entry = kept.by_text.values().next().unwrap();
        assert_eq!(entry.passed.len(), RUNS_PER_DOCUMENT);
        assert_eq!(kept.bytes, text.len() + entry.run_bytes());
    }

    #[test]
    fn long_variables_are_never_remembered() {
        let variables = serde_json::json!({ "big": "x".repeat(MAX_RUN_BYTES) });
        let request = Request::new("query Big($big: String) { viewer { id } }")
            .variables(async_graphql::Variables::from_json(variables));
        let (_, checked) = attach(request, Some(Uuid::new_v4()));
        assert_eq!(checked, Checked::Unknown(None));
    }
}
