//! Plumbing shared by the fake network peers: a loopback HTTP server that records every request
//! it receives and can hang up on a request without answering it.
//!
//! The server binds `127.0.0.1:0`, runs on the test's tokio runtime and stops, with all its
//! connections, when its [`ServerTask`] is dropped. A [`RequestLog`] keeps every request in
//! arrival order, headers and body included, until the server is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One HTTP request as a fake peer received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Query parameters; a repeated name keeps its last value.
    pub query: BTreeMap<String, String>,
    /// Header names are lowercase; repeated headers are joined with ", ".
    pub headers: BTreeMap<String, String>,
    /// Every header line as received, in order: lowercase name and value.
    pub header_lines: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
}

impl Recorded {
    /// A header's value, by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Every value of a header, by lowercase name, one per header line, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.header_lines
            .iter()
            .filter(|(line, _)| line == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The body parsed as JSON, or `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The body parsed as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> BTreeMap<String, String> {
        parse_form(self.body.as_bytes())
    }
}

/// The requests a fake peer received, in order.
#[derive(Clone, Debug, Default)]
pub struct RequestLog(Arc<Mutex<Vec<Recorded>>>);

impl RequestLog {
    /// A copy of every request recorded so far.
    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().expect("request log").clone()
    }

    /// How many requests were recorded, without copying them (cheap enough to call under load).
    pub fn len(&self) -> usize {
        self.0.lock().expect("request log").len()
    }

    /// Whether no request was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wrap `router` so every request is recorded before it is handled.
    pub fn record(&self, router: Router) -> Router {
        router.layer(middleware::from_fn_with_state(self.clone(), record))
    }
}

async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (http::StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let mut headers = BTreeMap::<String, String>::new();
    let mut header_lines = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        header_lines.push((name.as_str().to_owned(), value.clone()));
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    log.0.lock().expect("request log").push(Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parse_form(parts.uri.query().unwrap_or_default().as_bytes()),
        headers,
        header_lines,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Parse `application/x-www-form-urlencoded` data (a body or a query string).
pub fn parse_form(data: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(data).into_owned().collect()
}

/// Returned by a handler to close the connection without sending any response.
#[derive(Clone, Copy, Debug)]
pub struct HangUp;

impl std::fmt::Display for HangUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hung up on purpose")
    }
}

impl std::error::Error for HangUp {}

impl IntoResponse for HangUp {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        response.extensions_mut().insert(HangUp);
        response
    }
}

/// A running fake server; dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A listener on a fresh loopback port.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

/// Serve `router` over HTTP/1.1 on `listener`, on the current tokio runtime.
pub fn serve(listener: TcpListener, router: Router) -> ServerTask {
    let task = tokio::spawn(async move {
        // Dropping the set when the task is aborted aborts every open connection too.
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(stream, router.clone()));
        }
    });
    ServerTask(task)
}

async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let router = TowerToHyperService::new(router);
    // hyper closes the connection without writing anything when the service fails, which is
    // how a handler's `HangUp` becomes a dropped connection.
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let response = router.call(request);
        async move {
            let Ok(response) = response.await;
            if response.extensions().get::<HangUp>().is_some() {
                return Err(HangUp);
            }
            Ok::<Response, HangUp>(response)
        }
    });
    // Errors here are a client going away or a deliberate hang-up; neither concerns the test.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// The standard base64url (no padding) SHA-256 PKCE transform of a code verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest as _, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
