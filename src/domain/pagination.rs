//! Paging of lists: the servers of a workspace, the tools of a server, the audit trail.
//!
//! Invariants:
//! - A page size comes from the caller and is checked against its range before any query; an
//!   out-of-range size is `BadInput` on `first`.
//! - Storage is asked for one item more than the page holds ([`fetch_limit`]); that item only
//!   tells whether another page follows and is never returned ([`Page::cut`]).
//! - A cursor names the last item of the previous page and the next page starts strictly past
//!   it: a server's or an audit event's id (UUIDv7, so id order is time order), a tool's name.

use super::{Result, bad_input};

/// Page size when `first` is absent.
pub const DEFAULT_PAGE: i64 = 20;
/// Largest page.
pub const MAX_PAGE: i64 = 100;
/// Tools per page when `first` is absent.
pub const DEFAULT_TOOLS_PAGE: i64 = 50;
/// Largest page of tools.
pub const MAX_TOOLS_PAGE: i64 = 100;

/// A page of servers, of a server's tools, or of audit events.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more follow.
    pub has_next: bool,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            has_next: false,
        }
    }
}

impl<T> Page<T> {
    /// The page of `first` items out of `fetched`, which storage returned for
    /// [`fetch_limit`]`(first)`: more than `first` items means another page follows.
    pub fn cut(mut fetched: Vec<T>, first: i64) -> Page<T> {
        let first = usize::try_from(first).unwrap_or(0);
        let has_next = fetched.len() > first;
        fetched.truncate(first);
        Page {
            items: fetched,
            has_next,
        }
    }
}

/// How many items to ask storage for to fill a page of `first`: one more tells whether
/// another page follows.
pub fn fetch_limit(first: i64) -> i64 {
    first.saturating_add(1)
}

/// Validate a requested page size.
pub fn page_size(first: Option<i64>) -> Result<i64> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (0..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(bad_input(
            "first",
            format!("must be between 0 and {MAX_PAGE}"),
        )),
    }
}

/// A page of a server's tools in name order: `first` tools, after the tool named `after`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ToolsPage {
    /// How many tools.
    pub first: i64,
    /// The name of the last tool of the previous page (the cursor).
    pub after: Option<String>,
}

impl ToolsPage {
    /// Validate the page a caller asks for.
    pub fn new(first: Option<i64>, after: Option<String>) -> Result<ToolsPage> {
        let first = match first {
            None => DEFAULT_TOOLS_PAGE,
            Some(n) if (0..=MAX_TOOLS_PAGE).contains(&n) => n,
            Some(_) => {
                return Err(bad_input(
                    "first",
                    format!("must be between 0 and {MAX_TOOLS_PAGE}"),
                ));
            }
        };
        Ok(ToolsPage { first, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Error;

    #[test]
    fn page_sizes_default_and_stay_in_range() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(Some(0)).unwrap(), 0);
        assert_eq!(page_size(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        for wrong in [-1, MAX_PAGE + 1, i64::MIN, i64::MAX] {
            match page_size(Some(wrong)) {
                Err(Error::BadInput { field, message }) => {
                    assert_eq!(field, "first");
                    assert_eq!(message, "must be between 0 and 100");
                }
                other => panic!("{wrong} gave {other:?}"),
            }
        }
    }

    #[test]
    fn tools_pages_default_and_stay_in_range() {
        assert_eq!(
            ToolsPage::new(None, None).unwrap().first,
            DEFAULT_TOOLS_PAGE
        );
        let page = ToolsPage::new(Some(3), Some("b".into())).unwrap();
        assert_eq!((page.first, page.after.as_deref()), (3, Some("b")));
        assert!(ToolsPage::new(Some(MAX_TOOLS_PAGE + 1), None).is_err());
        assert!(ToolsPage::new(Some(-1), None).is_err());
    }

    #[test]
    fn a_page_is_cut_from_one_item_more_than_it_holds() {
        assert_eq!(fetch_limit(20), 21);
        assert_eq!(fetch_limit(i64::MAX), i64::MAX);

        let full = Page::cut(vec![1, 2, 3], 2);
        assert_eq!((full.items, full.has_next), (vec![1, 2], true));
        let last = Page::cut(vec![1, 2], 2);
        assert_eq!((last.items, last.has_next), (vec![1, 2], false));
        let empty = Page::cut(vec![1], 0);
        assert_eq!((empty.items, empty.has_next), (Vec::<i32>::new(), true));
    }
}
