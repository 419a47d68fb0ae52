//! The browser in the OAuth popup, as far as tests and the benchmark need one.
//!
//! Given the begin link Switchboard handed out (`startMcpOauth`'s `authorizationUrl`, asked for
//! by the caller with its own GraphQL client), it follows the begin link, keeps the binding
//! cookie that link sets, lets the authorization server redirect it back (a
//! [`FakeAuthServer`](crate::fake_as::FakeAuthServer) approves at once) and then loads the
//! callback page with the cookie. It follows no redirect on its own, so each step must be the
//! `302 Found` the flow expects.
//!
//! Each call is a fresh browser with no cookies of its own, and the approval is for whichever
//! subject the authorization server approves as when the popup reaches it
//! ([`FakeAuthServer::set_subject`](crate::fake_as::FakeAuthServer::set_subject)): set
//! `"alice"`, follow a begin link, set `"bob"`, follow another, and the two codes are the two
//! users'.

use std::fmt;

use http::StatusCode;
use http::header::{COOKIE, LOCATION, SET_COOKIE};

/// The popup up to the callback, which is not loaded yet.
#[derive(Clone, Debug)]
pub struct Popup {
    /// The begin link's `Set-Cookie` header, attributes included.
    pub set_cookie: String,
    /// The cookie as the browser sends it back: `name=value`.
    pub begin_cookie: String,
    /// Where the authorization server sent the browser back to.
    pub callback_url: String,
}

/// The callback page as the browser got it.
#[derive(Clone, Debug)]
pub struct CallbackPage {
    pub status: u16,
    pub page: String,
}

/// Why the popup did not get where it should have.
#[derive(Debug)]
pub enum PopupError {
    /// A request could not be sent or its answer read.
    Request(reqwest::Error),
    /// A step answered something other than `302 Found` with a `Location`.
    NotRedirected { url: String, status: u16 },
    /// The begin link set no cookie.
    NoCookie,
}

impl fmt::Display for PopupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PopupError::Request(err) => write!(f, "the popup's request failed: {err}"),
            PopupError::NotRedirected { url, status } => {
                write!(f, "expected a 302 with a Location from {url}, got {status}")
            }
            PopupError::NoCookie => f.write_str("the begin link set no binding cookie"),
        }
    }
}

impl std::error::Error for PopupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PopupError::Request(err) => Some(err),
            PopupError::NotRedirected { .. } | PopupError::NoCookie => None,
        }
    }
}

impl From<reqwest::Error> for PopupError {
    fn from(err: reqwest::Error) -> Self {
        PopupError::Request(err)
    }
}

/// Follow Switchboard's begin link and let the authorization server approve: the popup up to
/// the redirect back to the callback.
pub async fn follow_begin_link(begin_url: &str) -> Result<Popup, PopupError> {
    let browser = browser()?;
    let begin = browser.get(begin_url).send().await?;
    let authorize_url = redirect_target(&begin)?;
    let set_cookie = begin
        .headers()
        .get(SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .ok_or(PopupError::NoCookie)?
        .to_owned();
    let begin_cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let approved = browser.get(&authorize_url).send().await?;
    let callback_url = redirect_target(&approved)?;
    Ok(Popup {
        set_cookie,
        begin_cookie,
        callback_url,
    })
}

/// Load the callback page with the binding cookie (`name=value`), as the browser does when the
/// authorization server sends it back.
pub async fn load_callback(callback_url: &str, cookie: &str) -> Result<CallbackPage, PopupError> {
    let callback = browser()?
        .get(callback_url)
        .header(COOKIE, cookie)
        .send()
        .await?;
    let status = callback.status().as_u16();
    let page = callback.text().await?;
    Ok(CallbackPage { status, page })
}

/// A client that follows no redirect, so every step of the popup is seen.
fn browser() -> Result<reqwest::Client, PopupError> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The `Location` of a `302 Found`.
fn redirect_target(response: &reqwest::Response) -> Result<String, PopupError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok());
    match location {
        Some(location) if response.status() == StatusCode::FOUND => Ok(location.to_owned()),
        _ => Err(PopupError::NotRedirected {
            url: response.url().to_string(),
            status: response.status().as_u16(),
        }),
    }
}
