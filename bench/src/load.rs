//! A closed-loop load generator: a fixed number of workers, each sending its next request as
//! soon as the previous one answered, first for a warm-up that is thrown away, then for the
//! measured amount (a time or a number of requests). Workers share one keep-alive HTTP client,
//! so after the first requests no connection is opened during a measurement.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much to send.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// Until this much time has passed (requests in flight then still finish).
    Time(Duration),
    /// Exactly this many requests.
    Requests(u64),
}

/// One load phase.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Requests in flight at any moment.
    pub concurrency: usize,
    /// Sent first and not measured.
    pub warmup: Amount,
    /// Measured.
    pub measure: Amount,
}

/// What a measured phase produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed (transport error, bad status, or an error in the body).
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latencies of the successful requests, sorted, in microseconds.
    latencies_us: Vec<u64>,
}

impl Outcome {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (0–100), by the nearest-rank method.
    pub fn percentile(&self, p: f64) -> Duration {
        percentile_us(&self.latencies_us, p)
    }
}

/// The nearest-rank percentile of sorted microsecond samples.
pub fn percentile_us(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Duration::from_micros(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Run a warm-up, then the measured phase, with `request` sending one request and telling
/// whether it succeeded. Failures during the warm-up count as failures of the phase.
pub async fn run<F, Fut>(spec: Spec, request: F) -> Outcome
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    run_around(spec, request, || (), |()| ()).await.0
}

/// [`run`], calling `before` just before the measured phase and `after` with its result just
/// after, e.g. to read an upstream's request counter around exactly the measured requests.
pub async fn run_around<F, Fut, B, A, T, U>(
    spec: Spec,
    request: F,
    before: B,
    after: A,
) -> (Outcome, U)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
    B: FnOnce() -> T,
    A: FnOnce(T) -> U,
{
    let request = Arc::new(request);
    let warmup = phase(spec.concurrency, spec.warmup, request.clone()).await;
    let mark = before();
    let mut outcome = phase(spec.concurrency, spec.measure, request).await;
    let seen = after(mark);
    outcome.errors += warmup.errors;
    if outcome.first_error.is_none() {
        outcome.first_error = warmup.first_error;
    }
    (outcome, seen)
}

async fn phase<F, Fut>(concurrency: usize, amount: Amount, request: Arc<F>) -> Outcome
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let request = request.clone();
            let issued = issued.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0_u64;
                let mut first_error = None;
                loop {
                    let more = match amount {
                        Amount::Time(limit) => started.elapsed() < limit,
                        Amount::Requests(limit) => issued.fetch_add(1, Ordering::Relaxed) < limit,
                    };
                    if !more {
                        break;
                    }
                    let sent = Instant::now();
                    match request().await {
                        Ok(()) => latencies
                            .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)),
                        Err(error) => {
                            errors += 1;
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for worker in workers {
        match worker.await {
            Ok((mut samples, failed, error)) => {
                latencies_us.append(&mut samples);
                errors += failed;
                if first_error.is_none() {
                    first_error = error;
                }
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(format!("load worker panicked: {error}"));
            }
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Outcome {
        ok: latencies_us.len() as u64,
        errors,
        first_error,
        elapsed,
        latencies_us,
    }
}

/// A POST of a fixed JSON body with fixed headers that succeeds on `200` when `check` accepts
/// the body: the request most phases send.
pub fn post_json(
    client: &reqwest::Client,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    check: fn(&[u8]) -> bool,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    let client = client.clone();
    let url: Arc<str> = url.into();
    let headers = Arc::new(headers);
    let body = bytes::Bytes::from(body);
    move || {
        let mut request = client
            .post(&*url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in headers.iter() {
            request = request.header(*name, value);
        }
        Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
            if !check(&body) {
                return Err(format!(
                    "unexpected body: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ));
            }
            Ok(())
        })
    }
}

/// Whether a GraphQL response body carries no `errors`. A byte search: parsing every body
/// would cost the load generator more CPU than the server spends on small requests.
pub fn graphql_ok(body: &[u8]) -> bool {
    body.starts_with(b"{\"data\":") && !contains(body, b"\"errors\":")
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A keep-alive client for `concurrency` workers.
pub fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client with default TLS settings builds")
}
