//! The guarded HTTP client: DNS pinning through a checking resolver, target
//! checks on every new connection, re-checked redirects, timeouts and capped
//! body reads.

use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::{Either, Ready, ready};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use reqwest::{Method, RequestBuilder, Response};
use tower_layer::Layer;
use tower_service::Service;
use url::Url;

use super::{
    NetError, NetPolicy, ORIGIN_POLICY, check_origin_target, check_target, resolve_checked,
};

/// 1 MiB cap for OAuth JSON documents (metadata, registration and token
/// responses), which are small in practice; anything larger is hostile.
pub const OAUTH_JSON_LIMIT: usize = 1 << 20;

/// Timeouts, redirect and identification settings of a [`GuardedClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Total time for a request, from sending until the body is fully read.
    pub timeout: Duration,
    /// Time for name resolution plus TCP and TLS connection setup.
    pub connect_timeout: Duration,
    /// Redirects to follow; 0 returns the 3xx response to the caller.
    pub max_redirects: usize,
    /// The `User-Agent` header sent with every request.
    pub user_agent: String,
}

impl Default for ClientOptions {
    /// 30 s total, 5 s connect, no redirects, `switchboard/<version>`.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 0,
            user_agent: concat!("switchboard/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The HTTP client for every outbound request of the product.
///
/// Cheap to clone: clones share one connection pool.
///
/// The checks live inside the underlying `reqwest::Client`, not around it:
/// hostnames are checked by its resolver, and the scheme, https and
/// IP-literal rules by a layer over its connector, before any connection is
/// opened. So a library that takes a `reqwest::Client` (the MCP SDK) can be
/// handed [`GuardedClient::reqwest_client`] and stays inside the rules.
///
/// Our own code sends through [`GuardedClient::send`] (or
/// [`GuardedClient::get`]) all the same: it checks before anything is built,
/// also for requests that would reuse a pooled connection, and reports
/// failures as [`NetError`].
#[derive(Clone, Debug)]
pub struct GuardedClient {
    inner: reqwest::Client,
    policy: NetPolicy,
    reach: Reach,
}

/// What a client may connect to.
#[derive(Clone, Debug)]
enum Reach {
    /// Whatever its [`NetPolicy`] allows.
    Policy(NetPolicy),
    /// Exactly one origin, set by the operator ([`GuardedClient::for_collector`]).
    Origin(Arc<url::Origin>),
}

impl Reach {
    fn check(&self, url: &Url) -> Result<(), NetError> {
        match self {
            Reach::Policy(policy) => check_target(url, *policy),
            Reach::Origin(origin) => check_origin_target(url, origin),
        }
    }
}

impl GuardedClient {
    /// Build a client enforcing `policy`.
    pub fn new(policy: NetPolicy, options: ClientOptions) -> Result<Self, NetError> {
        let inner = build(
            PinnedResolver { policy },
            Reach::Policy(policy),
            redirect_policy(policy, options.max_redirects),
            options,
        )?;
        Ok(Self {
            inner,
            policy,
            reach: Reach::Policy(policy),
        })
    }

    /// A client that reaches exactly the origin (scheme, host and port) of `endpoint` and
    /// nothing else, for the trace collector the operator configured.
    ///
    /// The collector is configuration, not user input, and usually runs on loopback or a
    /// private network, often over plain `http`; so that one origin is reached whatever
    /// `--allow-private-networks` says, on any address but those refused whatever the policy
    /// (cloud metadata endpoints, unspecified, multicast, broadcast). Any other URL is refused
    /// with [`NetError::OutsideOrigin`] before a connection is opened, its host is never
    /// resolved, and redirects are never followed.
    pub fn for_collector(endpoint: &Url, options: ClientOptions) -> Result<Self, NetError> {
        let origin = endpoint.origin();
        let Some(host) = endpoint.host_str().map(str::to_owned) else {
            return Err(NetError::InvalidUrl("the URL has no host".to_owned()));
        };
        if !origin.is_tuple() || !matches!(endpoint.scheme(), "http" | "https") {
            return Err(NetError::UnsupportedScheme);
        }
        let reach = Reach::Origin(Arc::new(origin));
        reach.check(endpoint)?;
        let inner = build(
            OriginResolver { host },
            reach.clone(),
            Policy::none(),
            options,
        )?;
        Ok(Self {
            inner,
            policy: ORIGIN_POLICY,
            reach,
        })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> NetPolicy {
        self.policy
    }

    /// Start a request. Add headers and a body, then pass the builder to
    /// [`GuardedClient::send`] rather than calling `.send()` on it, so that
    /// failures come back as [`NetError`].
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.inner.request(method, url)
    }

    /// The guarded `reqwest::Client` itself, for libraries that take one.
    ///
    /// Every connection it opens is checked like a request sent through
    /// [`GuardedClient::send`]: scheme and https rule, IP-literal hosts, and
    /// every resolved address of a hostname, with redirects re-checked per
    /// hop. Its errors are `reqwest::Error`s; [`NetError::from_reqwest`]
    /// recovers the refusal. The total and connect timeouts of
    /// [`ClientOptions`] apply; body size caps are up to the caller.
    pub fn reqwest_client(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Send a request, enforcing the rules of [`super::check_url`]: the
    /// scheme, userinfo and https rules and IP-literal hosts are checked
    /// here, hostnames by the resolver at connect time, redirect targets by
    /// the redirect policy. Timeouts are reported as [`NetError::Timeout`].
    ///
    /// The request always runs on this client, even if the builder came from
    /// another one, so the checks cannot be sidestepped that way.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, NetError> {
        let (_, request) = request.build_split();
        let request = request.map_err(map_reqwest_error)?;
        self.reach.check(request.url())?;
        self.inner.execute(request).await.map_err(map_reqwest_error)
    }

    /// `GET` the URL with no extra headers.
    pub async fn get(&self, url: Url) -> Result<Response, NetError> {
        self.send(self.request(Method::GET, url)).await
    }
}

/// Read the whole body, failing with [`NetError::BodyTooLarge`] as soon as
/// more than `limit` bytes arrived. A declared `Content-Length` over the
/// limit fails before anything is read; chunked or lying bodies are counted
/// as they stream in, so memory use stays bounded by `limit`.
pub async fn read_body_capped(response: Response, limit: usize) -> Result<Bytes, NetError> {
    let declared = response.content_length();
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(NetError::BodyTooLarge { limit });
    }
    // Trust the declared length only as a capacity hint, never beyond the cap.
    let capacity = declared.map_or(0, |len| usize::try_from(len).unwrap_or(limit).min(limit));
    let mut body = BytesMut::with_capacity(capacity);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(map_reqwest_error)?;
        if chunk.len() > limit - body.len() {
            return Err(NetError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Connector layer that checks the target of every new connection before
/// reqwest opens it: the shape rules of [`check_target`] (scheme, userinfo,
/// https unless loopback) and IP-literal hosts, which never reach
/// [`PinnedResolver`]. Hostnames pass on to the resolver.
///
/// Requests that reuse a pooled connection do not reach the connector, but
/// the pool is keyed by scheme and authority and belongs to one client with
/// one policy, so such a connection was checked for the same target when it
/// was opened.
#[derive(Clone, Debug)]
struct TargetGuardLayer {
    reach: Reach,
}

impl<S> Layer<S> for TargetGuardLayer {
    type Service = TargetGuard<S>;

    fn layer(&self, inner: S) -> TargetGuard<S> {
        TargetGuard {
            inner,
            reach: self.reach.clone(),
        }
    }
}

/// The service of [`TargetGuardLayer`].
#[derive(Clone, Debug)]
struct TargetGuard<S> {
    inner: S,
    reach: Reach,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl<S, R> Service<R> for TargetGuard<S>
where
    S: Service<R, Error = BoxError>,
    R: fmt::Debug,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<S::Future, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match connect_target(&request).and_then(|target| self.reach.check(&target)) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(err) => Either::Right(ready(Err(Box::new(err)))),
        }
    }
}

/// The URL a new connection is for.
///
/// reqwest hands connector layers its destination `Uri` inside a type whose
/// only public interface is its derived `Debug`, `Unnameable(<uri>)`, so the
/// URI is read from there. Anything that does not read as a URL is refused:
/// should a reqwest upgrade change that form, requests fail closed (and the
/// tests fail) instead of going out unchecked.
pub(super) fn connect_target(request: &impl fmt::Debug) -> Result<Url, NetError> {
    let text = format!("{request:?}");
    text.split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|uri| Url::parse(uri).ok())
        .ok_or_else(|| NetError::Request("the connection target could not be checked".to_owned()))
}

/// reqwest resolver that refuses a name if any of its addresses is
/// disallowed. reqwest connects to exactly the addresses returned here, which
/// is what pins the connection to the checked addresses.
pub(super) struct PinnedResolver {
    pub(super) policy: NetPolicy,
}

/// Upper bound for one lookup inside the client; the client's connect timeout
/// normally fires first, this only guards against a missing one.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(30);

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let ips = resolve_checked(&host, policy, RESOLVER_TIMEOUT)
                .await
                .map_err(|err| Box::new(err) as Box<dyn StdError + Send + Sync>)?;
            // Port 0 makes reqwest substitute the URL's port or the scheme
            // default.
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip: IpAddr| (ip, 0).into()).collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver of a client confined to one origin: it resolves that origin's host, checked
/// against [`ORIGIN_POLICY`], and refuses every other name without looking it up.
struct OriginResolver {
    host: String,
}

impl Resolve for OriginResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = name.as_str().eq_ignore_ascii_case(&self.host);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if !allowed {
                return Err(Box::new(NetError::OutsideOrigin) as Box<dyn StdError + Send + Sync>);
            }
            let ips = resolve_checked(&host, ORIGIN_POLICY, RESOLVER_TIMEOUT)
                .await
                .map_err(|err| Box::new(err) as Box<dyn StdError + Send + Sync>)?;
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip: IpAddr| (ip, 0).into()).collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn redirect_policy(policy: NetPolicy, max_redirects: usize) -> Policy {
    Policy::custom(move |attempt: Attempt| {
        match redirect_decision(attempt.url(), attempt.previous(), policy, max_redirects) {
            Ok(RedirectDecision::Follow) => attempt.follow(),
            Ok(RedirectDecision::Stop) => attempt.stop(),
            Err(err) => attempt.error(err),
        }
    })
}

/// What to do with one redirect hop.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RedirectDecision {
    /// Follow the redirect.
    Follow,
    /// Return the 3xx response to the caller.
    Stop,
}

/// Decide on a redirect to `next`; `previous` holds the URLs requested so far,
/// the original one first. Hostnames are re-checked by the resolver when the
/// hop connects, so only what the resolver cannot see is checked here.
pub(super) fn redirect_decision(
    next: &Url,
    previous: &[Url],
    policy: NetPolicy,
    max_redirects: usize,
) -> Result<RedirectDecision, NetError> {
    if max_redirects == 0 {
        return Ok(RedirectDecision::Stop);
    }
    // `previous` includes the original request, so its length is the number
    // of this hop.
    if previous.len() > max_redirects {
        return Err(NetError::TooManyRedirects);
    }
    check_target(next, policy)?;
    // A downgrade would expose whatever the caller relied on TLS to protect,
    // even towards a loopback host.
    if previous.last().is_some_and(|prev| prev.scheme() == "https") && next.scheme() != "https" {
        return Err(NetError::HttpsRequired);
    }
    Ok(RedirectDecision::Follow)
}

fn map_reqwest_error(err: reqwest::Error) -> NetError {
    NetError::from_reqwest(&err)
}

impl NetError {
    /// The refusal or failure behind an error of the guarded
    /// `reqwest::Client` ([`GuardedClient::reqwest_client`]): our own
    /// [`NetError`] when the resolver, the connector layer or the redirect
    /// policy raised one, [`NetError::Timeout`] for timeouts, otherwise a
    /// connection or request failure described without the URL.
    pub fn from_reqwest(err: &reqwest::Error) -> NetError {
        if let Some(own) = NetError::find_in(err) {
            return own;
        }
        if err.is_timeout() {
            return NetError::Timeout;
        }
        // reqwest's own message names the URL, whose query may carry values
        // the caller considers secret, so only the causes are described.
        let causes = err.source().map(describe);
        if err.is_connect() {
            return NetError::Connect(causes.unwrap_or_else(|| "no details".to_owned()));
        }
        let what = if err.is_builder() {
            "the request could not be built"
        } else if err.is_body() || err.is_decode() {
            "the response body could not be read"
        } else if err.is_redirect() {
            "the redirect could not be followed"
        } else {
            "error sending request"
        };
        NetError::Request(match causes {
            Some(causes) => format!("{what}: {causes}"),
            None => what.to_owned(),
        })
    }

    /// The first [`NetError`] in an error's chain of causes, for errors of
    /// libraries that wrap the guarded client's errors in their own.
    pub fn find_in(err: &(dyn StdError + 'static)) -> Option<NetError> {
        let mut source = Some(err);
        while let Some(current) = source {
            if let Some(own) = current.downcast_ref::<NetError>() {
                return Some(own.clone());
            }
            source = current.source();
        }
        None
    }
}

/// An error and its causes on one line; reqwest's top-level message alone
/// ("error sending request") says nothing useful.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        let text = current.to_string();
        if !message.ends_with(&text) {
            let _ = write!(message, ": {text}");
        }
        source = current.source();
    }
    message
}

/// The reqwest client of a [`GuardedClient`]: names resolved by `resolver` only, every
/// connection checked against `reach`, redirects as `redirect` says.
fn build(
    resolver: impl reqwest::dns::Resolve + 'static,
    reach: Reach,
    redirect: Policy,
    options: ClientOptions,
) -> Result<reqwest::Client, NetError> {
    reqwest::Client::builder()
        // A proxy would resolve and connect on our behalf, bypassing every address check.
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        // reqwest connects to IP literals without asking the resolver.
        .connector_layer(TargetGuardLayer { reach })
        .redirect(redirect)
        // The Referer would leak the previous URL, query included, to whatever host a
        // redirect points at.
        .referer(false)
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .user_agent(options.user_agent)
        .build()
        .map_err(|err| NetError::Request(describe(&err.without_url())))
}
