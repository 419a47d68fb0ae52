//! Tests for the outbound guard. Every request goes to a server on
//! 127.0.0.1; URLs naming other hosts are only used where the check under
//! test refuses them before any resolution or connection.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use reqwest::dns::Resolve;
use url::Url;

use super::client::{PinnedResolver, RedirectDecision, connect_target, redirect_decision};
use super::*;

const DENY: NetPolicy = NetPolicy {
    allow_private_networks: false,
};
const ALLOW: NetPolicy = NetPolicy {
    allow_private_networks: true,
};

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

// ---------------------------------------------------------------------------
// Classification

#[test]
fn classifies_ipv4_ranges() {
    use AddressClass::*;
    let cases: &[(&str, Option<AddressClass>)] = &[
        ("0.0.0.0", Some(Unspecified)),
        ("0.255.1.2", Some(Unspecified)),
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.254", Some(Loopback)),
        ("10.0.0.1", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.15.255.255", None),
        ("172.32.0.0", None),
        ("192.168.1.1", Some(Private)),
        ("169.254.1.1", Some(LinkLocal)),
        ("169.254.169.254", Some(Metadata)),
        ("169.254.170.2", Some(Metadata)),
        ("169.254.170.23", Some(Metadata)),
        ("169.254.170.24", Some(LinkLocal)),
        ("169.254.0.23", Some(Metadata)),
        ("100.100.100.200", Some(Metadata)),
        ("168.63.129.16", Some(Metadata)),
        ("168.63.129.17", None),
        ("100.64.0.1", Some(Cgnat)),
        ("100.127.255.255", Some(Cgnat)),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
        ("192.0.0.8", Some(ProtocolAssignment)),
        ("192.0.2.1", Some(Documentation)),
        ("198.51.100.7", Some(Documentation)),
        ("203.0.113.9", Some(Documentation)),
        ("198.18.0.1", Some(Benchmarking)),
        ("198.19.255.255", Some(Benchmarking)),
        ("198.20.0.0", None),
        ("192.88.99.1", Some(Reserved)),
        ("224.0.0.1", Some(Multicast)),
        ("239.255.255.255", Some(Multicast)),
        ("240.0.0.1", Some(Reserved)),
        ("255.255.255.254", Some(Reserved)),
        ("255.255.255.255", Some(Broadcast)),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
    ];
    for (addr, expected) in cases {
        assert_eq!(classify(ip(addr)), *expected, "{addr}");
    }
}

#[test]
fn classifies_ipv6_ranges() {
    use AddressClass::*;
    let cases: &[(&str, Option<AddressClass>)] = &[
        ("::", Some(Unspecified)),
        ("::1", Some(Loopback)),
        ("fc00::1", Some(UniqueLocal)),
        ("fdff:ffff::1", Some(UniqueLocal)),
        ("fd00:ec2::254", Some(Metadata)),
        ("fd00:ec2::23", Some(Metadata)),
        ("fd00:ec2::24", Some(UniqueLocal)),
        ("fd20:ce::254", Some(Metadata)),
        ("fd20:ce::253", Some(UniqueLocal)),
        ("fe80::1", Some(LinkLocal)),
        ("febf::1", Some(LinkLocal)),
        ("fec0::1", Some(SiteLocal)),
        ("ff02::1", Some(Multicast)),
        ("ff0e::1", Some(Multicast)),
        ("2001:db8::1", Some(Documentation)),
        ("3fff::1", Some(Documentation)),
        ("2001::1", Some(Teredo)),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some(Teredo)),
        ("2001:2::1", Some(Benchmarking)),
        ("2001:10::1", Some(Reserved)),
        ("2001:20::1", Some(Reserved)),
        ("100::1", Some(Discard)),
        ("64:ff9b:1::1", Some(Private)),
        ("4000::1", Some(Reserved)),
        ("1::1", Some(Reserved)),
        ("2001:4860:4860::8888", None),
        ("2606:4700:4700::1111", None),
    ];
    for (addr, expected) in cases {
        assert_eq!(classify(ip(addr)), *expected, "{addr}");
    }
}

#[test]
fn classifies_ipv6_forms_by_their_embedded_ipv4() {
    use AddressClass::*;
    let cases: &[(&str, Option<AddressClass>)] = &[
        // IPv4-mapped, ::ffff:0:0/96.
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:10.1.2.3", Some(Private)),
        ("::ffff:169.254.169.254", Some(Metadata)),
        ("::ffff:0.0.0.0", Some(Unspecified)),
        ("::ffff:8.8.8.8", None),
        // IPv4-compatible, ::/96.
        ("::127.0.0.1", Some(Loopback)),
        ("::192.168.0.1", Some(Private)),
        ("::8.8.8.8", None),
        // NAT64, 64:ff9b::/96.
        ("64:ff9b::7f00:1", Some(Loopback)),
        ("64:ff9b::a9fe:a9fe", Some(Metadata)),
        ("64:ff9b::10.0.0.1", Some(Private)),
        ("64:ff9b::8.8.8.8", None),
        // 6to4, 2002::/16.
        ("2002:7f00:1::1", Some(Loopback)),
        ("2002:a9fe:a9fe::", Some(Metadata)),
        ("2002:c0a8:101::1", Some(Private)),
        ("2002:e000:1::", Some(Multicast)),
        ("2002:808:808::1", None),
    ];
    for (addr, expected) in cases {
        assert_eq!(classify(ip(addr)), *expected, "{addr}");
    }
}

#[test]
fn private_policy_relaxes_all_but_the_dangerous_classes() {
    for addr in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "192.168.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "fd12::1",
        "fe80::1",
        "::ffff:127.0.0.1",
    ] {
        assert!(is_allowed(ip(addr), DENY).is_err(), "{addr}");
        assert_eq!(is_allowed(ip(addr), ALLOW), Ok(()), "{addr}");
    }
    for (addr, class) in [
        ("0.0.0.0", AddressClass::Unspecified),
        ("::", AddressClass::Unspecified),
        ("224.0.0.1", AddressClass::Multicast),
        ("ff02::1", AddressClass::Multicast),
        ("255.255.255.255", AddressClass::Broadcast),
        ("169.254.169.254", AddressClass::Metadata),
        ("169.254.170.2", AddressClass::Metadata),
        ("fd00:ec2::254", AddressClass::Metadata),
        ("::ffff:169.254.169.254", AddressClass::Metadata),
        ("64:ff9b::a9fe:a9fe", AddressClass::Metadata),
    ] {
        assert_eq!(is_allowed(ip(addr), ALLOW), Err(class), "{addr}");
        assert_eq!(is_allowed(ip(addr), DENY), Err(class), "{addr}");
    }
    assert_eq!(is_allowed(ip("8.8.8.8"), DENY), Ok(()));
    assert_eq!(is_allowed(ip("2001:4860:4860::8888"), DENY), Ok(()));
}

/// Every metadata and credential endpoint, in every form that delivers to it.
const METADATA: [&str; 9] = [
    "169.254.169.254",
    "169.254.170.2",
    "169.254.170.23",
    "169.254.0.23",
    "100.100.100.200",
    "168.63.129.16",
    "fd00:ec2::254",
    "fd00:ec2::23",
    "fd20:ce::254",
];

/// The IPv6 forms that deliver to an IPv4 address: IPv4-mapped, IPv4-compatible, NAT64 and
/// 6to4.
fn embedding_forms(v4: std::net::Ipv4Addr) -> Vec<IpAddr> {
    let [a, b, c, d] = v4.octets();
    let high = u16::from_be_bytes([a, b]);
    let low = u16::from_be_bytes([c, d]);
    vec![
        IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(v4.to_ipv6_compatible()),
        IpAddr::V6(std::net::Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, high, low)),
        IpAddr::V6(std::net::Ipv6Addr::new(0x2002, high, low, 0, 0, 0, 0, 1)),
    ]
}

#[test]
fn metadata_endpoints_are_refused_in_every_form_whatever_the_policy() {
    for addr in METADATA {
        let ip = ip(addr);
        let mut forms = vec![ip];
        if let IpAddr::V4(v4) = ip {
            forms.extend(embedding_forms(v4));
        }
        for form in forms {
            assert_eq!(classify(form), Some(AddressClass::Metadata), "{form}");
            assert_eq!(
                is_allowed(form, ALLOW),
                Err(AddressClass::Metadata),
                "{form}"
            );
            assert_eq!(
                is_allowed(form, DENY),
                Err(AddressClass::Metadata),
                "{form}"
            );
        }
    }
}

#[tokio::test]
async fn metadata_literals_are_refused_by_every_check_even_when_allowed() {
    for addr in METADATA {
        let host = match ip(addr) {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let target = url(&format!("https://{host}/latest/meta-data"));
        let result = check_url(&target, ALLOW).await;
        assert!(
            matches!(
                result,
                Err(NetError::DisallowedAddress {
                    class: AddressClass::Metadata,
                    rule: Rule::AlwaysRefused,
                    literal: true,
                    ..
                })
            ),
            "{addr}: {result:?}"
        );
        let origin = [url("https://mcp.example.com/start")];
        assert!(
            matches!(
                redirect_decision(&target, &origin, ALLOW, 5),
                Err(NetError::DisallowedAddress {
                    class: AddressClass::Metadata,
                    ..
                })
            ),
            "{addr}"
        );
    }
    // The Azure WireServer is public address space: refused even though public addresses
    // are otherwise always allowed.
    let result = check_url(&url("https://168.63.129.16/"), DENY).await;
    assert!(
        matches!(
            result,
            Err(NetError::DisallowedAddress {
                class: AddressClass::Metadata,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        check_url(&url("https://168.63.129.17/"), DENY)
            .await
            .is_ok()
    );
}

#[test]
fn address_class_displays_lowercase_words() {
    assert_eq!(AddressClass::Loopback.to_string(), "loopback");
    assert_eq!(AddressClass::Metadata.to_string(), "cloud metadata");
    assert_eq!(AddressClass::UniqueLocal.to_string(), "unique local");
}

#[test]
fn refusals_of_a_hostname_name_the_rule_but_not_where_it_resolves() {
    let host = "db.internal.example";
    for (addr, policy, rule) in [
        ("10.1.2.3", DENY, Rule::PublicOnly),
        ("fd12::7", DENY, Rule::PublicOnly),
        ("127.0.0.1", DENY, Rule::PublicOnly),
        ("169.254.169.254", DENY, Rule::PublicOnly),
        ("168.63.129.16", DENY, Rule::PublicOnly),
        ("169.254.169.254", ALLOW, Rule::AlwaysRefused),
        ("0.0.0.0", ALLOW, Rule::AlwaysRefused),
    ] {
        // A public address beside the refused one does not help.
        let ips = vec![ip("8.8.8.8"), ip(addr)];
        let err = check_resolved(host, ips, policy).unwrap_err();
        assert!(
            matches!(err, NetError::DisallowedAddress { rule: r, literal: false, .. } if r == rule),
            "{addr}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("the host db.internal.example is refused: "),
            "{message}"
        );
        assert!(!message.contains(addr), "{message}");
        // No class is named: neither the one found nor any other that would give it away.
        assert!(!message.contains('('), "{addr}: {message}");
        for class in ["loopback", "unique local", "link-local", "resolves"] {
            assert!(!message.contains(class), "{addr}: {message}");
        }
    }
    let err = check_resolved(host, vec![ip("10.1.2.3")], DENY).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the host db.internal.example is refused: private networks are not allowed, so only \
         public addresses other than cloud metadata endpoints may be reached"
    );
    let err = check_resolved(host, vec![ip("169.254.169.254")], ALLOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the host db.internal.example is refused: unspecified, multicast and broadcast addresses \
         and cloud metadata endpoints are never reached"
    );
    assert_eq!(
        check_resolved(host, vec![ip("10.1.2.3")], ALLOW).unwrap(),
        vec![ip("10.1.2.3")]
    );
    assert!(matches!(
        check_resolved(host, Vec::new(), ALLOW),
        Err(NetError::Unresolvable(_))
    ));
}

#[tokio::test]
async fn refusals_of_a_literal_name_the_rule_and_the_class() {
    let err = check_url(&url("https://10.1.2.3/mcp"), DENY)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the address 10.1.2.3 (private) is refused: private networks are not allowed, so only \
         public addresses other than cloud metadata endpoints may be reached"
    );
    let err = check_url(&url("https://[fd20:ce::254]/"), ALLOW)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the address fd20:ce::254 (cloud metadata) is refused: unspecified, multicast and \
         broadcast addresses and cloud metadata endpoints are never reached"
    );
    // Localhost names resolve to loopback without DNS; the message is the hostname's.
    let err = check_url(&url("http://localhost:9/mcp"), DENY)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("the host localhost is refused: "),
        "{message}"
    );
    assert!(
        !message.contains("loopback") && !message.contains("127.0.0.1"),
        "{message}"
    );
}

#[test]
fn recognises_loopback_hosts() {
    for u in [
        "http://localhost/",
        "http://LOCALHOST:8080/",
        "http://localhost./",
        "http://mcp.localhost/",
        "http://127.0.0.1/",
        "http://127.9.9.9/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        // The URL parser normalises these spellings to 127.0.0.1.
        "http://2130706433/",
        "http://0x7f.1/",
    ] {
        assert!(is_loopback_host(&url(u)), "{u}");
    }
    for u in [
        "http://example.com/",
        "http://localhost.example.com/",
        "http://notlocalhost/",
        "http://10.0.0.1/",
        "http://[::2]/",
    ] {
        assert!(!is_loopback_host(&url(u)), "{u}");
    }
}

// ---------------------------------------------------------------------------
// check_url

#[tokio::test]
async fn check_url_refuses_other_schemes() {
    for u in [
        "ftp://example.com/file",
        "javascript:alert(1)",
        "file:///etc/passwd",
    ] {
        assert!(
            matches!(
                check_url(&url(u), ALLOW).await,
                Err(NetError::UnsupportedScheme)
            ),
            "{u}"
        );
    }
}

#[tokio::test]
async fn check_url_refuses_userinfo() {
    for u in [
        "https://user:secret@example.com/",
        "https://user@example.com/",
        "https://:secret@example.com/",
        "http://user@127.0.0.1/",
    ] {
        assert!(
            matches!(
                check_url(&url(u), ALLOW).await,
                Err(NetError::CredentialsInUrl)
            ),
            "{u}"
        );
    }
}

#[tokio::test]
async fn check_url_requires_https_for_public_hosts() {
    for u in [
        "http://example.com/mcp",
        "http://8.8.8.8/",
        "http://10.0.0.1/",
    ] {
        assert!(
            matches!(
                check_url(&url(u), ALLOW).await,
                Err(NetError::HttpsRequired)
            ),
            "{u}"
        );
    }
}

#[tokio::test]
async fn check_url_refuses_loopback_unless_allowed() {
    let refused = check_url(&url("http://127.0.0.1:8080/"), DENY).await;
    assert!(matches!(
        refused,
        Err(NetError::DisallowedAddress { ref host, class: AddressClass::Loopback, .. }) if host == "127.0.0.1"
    ));

    let refused = check_url(&url("http://localhost/mcp"), DENY).await;
    assert!(matches!(
        refused,
        Err(NetError::DisallowedAddress { ref host, class: AddressClass::Loopback, .. }) if host == "localhost"
    ));

    let refused = check_url(&url("http://[::1]:9000/"), DENY).await;
    assert!(matches!(
        refused,
        Err(NetError::DisallowedAddress {
            class: AddressClass::Loopback,
            ..
        })
    ));
}

#[tokio::test]
async fn check_url_allows_loopback_when_allowed() {
    let addrs = check_url(&url("http://127.0.0.1:4567/mcp"), ALLOW)
        .await
        .unwrap();
    assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 4567))]);

    let addrs = check_url(&url("http://localhost/"), ALLOW).await.unwrap();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));

    let addrs = check_url(&url("https://mcp.localhost/"), ALLOW)
        .await
        .unwrap();
    assert!(
        addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 443)
    );
}

#[tokio::test]
async fn check_url_refuses_dangerous_literals_even_when_allowed() {
    for u in [
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:169.254.169.254]/",
        "https://[fd00:ec2::254]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
    ] {
        let result = check_url(&url(u), ALLOW).await;
        assert!(
            matches!(result, Err(NetError::DisallowedAddress { ref class, .. }) if class.always_refused()),
            "{u}: {result:?}"
        );
    }
}

#[tokio::test]
async fn check_url_allows_public_literals() {
    let addrs = check_url(&url("https://8.8.8.8/"), DENY).await.unwrap();
    assert_eq!(addrs, vec![SocketAddr::from(([8, 8, 8, 8], 443))]);
}

// ---------------------------------------------------------------------------
// Redirect checks

#[test]
fn redirect_decision_rechecks_each_hop() {
    let origin = [url("https://mcp.example.com/start")];

    assert!(matches!(
        redirect_decision(&url("http://127.0.0.1/"), &origin, DENY, 5),
        Err(NetError::DisallowedAddress {
            class: AddressClass::Loopback,
            ..
        })
    ));
    assert!(matches!(
        redirect_decision(&url("https://[::ffff:10.0.0.1]/"), &origin, DENY, 5),
        Err(NetError::DisallowedAddress {
            class: AddressClass::Private,
            ..
        })
    ));
    assert!(matches!(
        redirect_decision(&url("https://169.254.169.254/"), &origin, ALLOW, 5),
        Err(NetError::DisallowedAddress {
            class: AddressClass::Metadata,
            ..
        })
    ));
    assert!(matches!(
        redirect_decision(&url("http://other.example.com/"), &origin, DENY, 5),
        Err(NetError::HttpsRequired)
    ));
    assert!(matches!(
        redirect_decision(&url("ftp://other.example.com/"), &origin, DENY, 5),
        Err(NetError::UnsupportedScheme)
    ));
    assert!(matches!(
        redirect_decision(&url("https://u:p@other.example.com/"), &origin, DENY, 5),
        Err(NetError::CredentialsInUrl)
    ));
    // Hostnames are left to the resolver, which runs when the hop connects.
    assert_eq!(
        redirect_decision(&url("https://other.example.com/"), &origin, DENY, 5).unwrap(),
        RedirectDecision::Follow
    );
}

#[test]
fn redirect_decision_refuses_https_downgrade_even_to_loopback() {
    let origin = [url("https://localhost/start")];
    assert!(matches!(
        redirect_decision(&url("http://localhost/next"), &origin, ALLOW, 5),
        Err(NetError::HttpsRequired)
    ));
    let origin = [url("http://localhost/start")];
    assert_eq!(
        redirect_decision(&url("http://localhost/next"), &origin, ALLOW, 5).unwrap(),
        RedirectDecision::Follow
    );
}

#[test]
fn redirect_decision_counts_hops() {
    let next = url("https://example.com/next");
    let chain: Vec<Url> = (0..4)
        .map(|i| url(&format!("https://example.com/{i}")))
        .collect();
    // The original request plus 2 followed hops: the third hop is allowed
    // with a limit of 3 and refused with a limit of 2.
    assert_eq!(
        redirect_decision(&next, &chain[..3], DENY, 3).unwrap(),
        RedirectDecision::Follow
    );
    assert!(matches!(
        redirect_decision(&next, &chain[..3], DENY, 2),
        Err(NetError::TooManyRedirects)
    ));
    // With redirects disabled the 3xx goes back to the caller, unchecked.
    assert_eq!(
        redirect_decision(&url("http://127.0.0.1/"), &chain[..1], DENY, 0).unwrap(),
        RedirectDecision::Stop
    );
}

// ---------------------------------------------------------------------------
// Resolver

#[tokio::test]
async fn resolver_refuses_localhost_unless_allowed() {
    let client_policy = |policy| PinnedResolver { policy };

    let name = reqwest::dns::Name::from_str("localhost").unwrap();
    let err = match client_policy(DENY).resolve(name).await {
        Ok(_) => panic!("localhost must be refused"),
        Err(err) => err,
    };
    assert!(matches!(
        err.downcast_ref::<NetError>(),
        Some(NetError::DisallowedAddress {
            class: AddressClass::Loopback,
            ..
        })
    ));

    let name = reqwest::dns::Name::from_str("api.localhost").unwrap();
    let addrs: Vec<SocketAddr> = match client_policy(ALLOW).resolve(name).await {
        Ok(addrs) => addrs.collect(),
        Err(err) => panic!("allowed: {err}"),
    };
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
}

// ---------------------------------------------------------------------------
// GuardedClient against a local server

#[derive(Clone)]
struct TestServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TestServer {
    fn url(&self, path: &str) -> Url {
        url(&format!("http://{}{path}", self.addr))
    }

    fn localhost_url(&self, path: &str) -> Url {
        url(&format!("http://localhost:{}{path}", self.addr.port()))
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

const TWO_MIB: usize = 2 << 20;

async fn count_hits(State(server): State<TestServer>, request: Request, next: Next) -> Response {
    server.hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

async fn spawn_server() -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = TestServer {
        addr: listener.local_addr().unwrap(),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route("/big", get(|| async { vec![b'x'; TWO_MIB] }))
        .route(
            "/big-chunked",
            get(|| async {
                let chunks =
                    (0..32).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 << 10])));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/slow-body",
            get(|| async {
                let stream = futures_util::stream::unfold(0u8, |step| async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"first")), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            Some((Ok(Bytes::from_static(b"late")), 2))
                        }
                        _ => None,
                    }
                });
                Body::from_stream(stream)
            }),
        )
        .route("/redirect-ok", get(|| async { redirect("/ok") }))
        .route("/loop", get(|| async { redirect("/loop") }))
        .route(
            "/redirect-unspecified",
            get(|State(server): State<TestServer>| async move {
                // Https so that the address check is what refuses it. If the
                // guard failed, this would still only reach this host.
                redirect(&format!("https://0.0.0.0:{}/ok", server.addr.port()))
            }),
        )
        .route(
            "/redirect-mapped-unspecified",
            get(|State(server): State<TestServer>| async move {
                redirect(&format!(
                    "https://[::ffff:0.0.0.0]:{}/ok",
                    server.addr.port()
                ))
            }),
        )
        .route(
            "/redirect-credentials",
            get(|State(server): State<TestServer>| async move {
                redirect(&format!(
                    "http://user:pw@127.0.0.1:{}/ok",
                    server.addr.port()
                ))
            }),
        )
        .route(
            "/redirect-public-http",
            get(|| async { redirect("http://example.com/") }),
        )
        .layer(middleware::from_fn_with_state(server.clone(), count_hits))
        .with_state(server.clone());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    server
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

fn client(policy: NetPolicy) -> GuardedClient {
    client_with(policy, ClientOptions::default())
}

fn client_with(policy: NetPolicy, options: ClientOptions) -> GuardedClient {
    GuardedClient::new(policy, options).unwrap()
}

fn follow(max_redirects: usize) -> ClientOptions {
    ClientOptions {
        max_redirects,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn refuses_loopback_literal_without_contacting_it() {
    let server = spawn_server().await;
    let result = client(DENY).get(server.url("/ok")).await;
    assert!(matches!(
        result,
        Err(NetError::DisallowedAddress { ref host, class: AddressClass::Loopback, .. }) if host == "127.0.0.1"
    ));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn refuses_localhost_name_in_the_resolver() {
    let server = spawn_server().await;
    // `send` leaves hostnames to the resolver, so this refusal can only come
    // from it, surfaced through reqwest's error chain.
    let result = client(DENY).get(server.localhost_url("/ok")).await;
    assert!(
        matches!(
            result,
            Err(NetError::DisallowedAddress { ref host, class: AddressClass::Loopback, .. }) if host == "localhost"
        ),
        "{result:?}"
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn refuses_requests_built_elsewhere() {
    let server = spawn_server().await;
    // A builder from an unguarded client is still executed by the guarded one.
    let foreign = reqwest::Client::new().get(server.url("/ok"));
    let result = client(DENY).send(foreign).await;
    assert!(matches!(result, Err(NetError::DisallowedAddress { .. })));
    let foreign = reqwest::Client::new().get(server.localhost_url("/ok"));
    let result = client(DENY).send(foreign).await;
    assert!(matches!(result, Err(NetError::DisallowedAddress { .. })));
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn exposed_reqwest_client_refuses_disallowed_literals() {
    let server = spawn_server().await;
    let guarded = client(DENY);
    // Sent with reqwest's own `send`, as a library handed the client would.
    let raw = guarded.reqwest_client();

    let err = raw.get(server.url("/ok")).send().await.unwrap_err();
    assert!(
        matches!(
            NetError::from_reqwest(&err),
            NetError::DisallowedAddress { ref host, class: AddressClass::Loopback, .. } if host == "127.0.0.1"
        ),
        "{err:?}"
    );
    // The message never names the URL.
    assert!(!NetError::from_reqwest(&err).to_string().contains("http://"));

    let mapped = url(&format!(
        "http://[::ffff:127.0.0.1]:{}/ok",
        server.addr.port()
    ));
    let err = raw.get(mapped).send().await.unwrap_err();
    assert!(
        matches!(
            NetError::from_reqwest(&err),
            NetError::DisallowedAddress {
                class: AddressClass::Loopback,
                ..
            }
        ),
        "{err:?}"
    );

    // Names still go through the resolver.
    let err = raw
        .get(server.localhost_url("/ok"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            NetError::from_reqwest(&err),
            NetError::DisallowedAddress { ref host, .. } if host == "localhost"
        ),
        "{err:?}"
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn exposed_reqwest_client_applies_the_url_rules() {
    let server = spawn_server().await;
    let allowed = client(ALLOW);
    let raw = allowed.reqwest_client();

    // Always refused, even with private networks allowed. Were the guard
    // missing, this would still only reach this host.
    let unspecified = url(&format!("https://0.0.0.0:{}/ok", server.addr.port()));
    let err = raw.get(unspecified).send().await.unwrap_err();
    assert!(
        matches!(
            NetError::from_reqwest(&err),
            NetError::DisallowedAddress {
                class: AddressClass::Unspecified,
                ..
            }
        ),
        "{err:?}"
    );

    // Plain http to a name that is not loopback is refused before any lookup.
    let err = raw
        .get("http://mcp.example.invalid/")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(NetError::from_reqwest(&err), NetError::HttpsRequired),
        "{err:?}"
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn exposed_reqwest_client_reaches_loopback_when_allowed() {
    let server = spawn_server().await;
    let allowed = client(ALLOW);
    let raw = allowed.reqwest_client();

    let response = raw.get(server.url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.bytes().await.unwrap()[..], b"hello");
    let response = raw.get(server.localhost_url("/ok")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 2);
}

#[test]
fn connect_target_reads_the_connector_request() {
    /// Stands in for reqwest's connector request, which is read only through `Debug`.
    #[derive(Debug)]
    #[expect(dead_code, reason = "the field is read through Debug, like reqwest's")]
    struct Unnameable(http::Uri);

    let request = Unnameable("http://127.0.0.1:8080/".parse().unwrap());
    assert_eq!(
        connect_target(&request).unwrap(),
        url("http://127.0.0.1:8080/")
    );
    let request = Unnameable("https://[::1]:443/".parse().unwrap());
    assert_eq!(connect_target(&request).unwrap().host_str(), Some("[::1]"));
    // Anything unreadable is refused rather than let through.
    assert!(matches!(
        connect_target(&"not a request"),
        Err(NetError::Request(_))
    ));
    assert!(matches!(
        connect_target(&Unnameable("/relative".parse().unwrap())),
        Err(NetError::Request(_))
    ));
}

#[tokio::test]
async fn reaches_loopback_when_allowed() {
    let server = spawn_server().await;
    let guarded = client(ALLOW);
    assert_eq!(guarded.policy(), ALLOW);

    let response = guarded.get(server.url("/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = read_body_capped(response, OAUTH_JSON_LIMIT).await.unwrap();
    assert_eq!(&body[..], b"hello");

    let response = guarded.get(server.localhost_url("/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn sends_headers_and_body_through_request_builder() {
    let server = spawn_server().await;
    let guarded = client(ALLOW);
    let request = guarded
        .request(reqwest::Method::GET, server.url("/ok"))
        .header("x-test", "1")
        .body("ignored");
    let response = guarded.send(request).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn does_not_follow_redirects_by_default() {
    let server = spawn_server().await;
    let response = client(ALLOW).get(server.url("/redirect-ok")).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn follows_allowed_redirects_when_enabled() {
    let server = spawn_server().await;
    let response = client_with(ALLOW, follow(3))
        .get(server.url("/redirect-ok"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/ok");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn stops_redirect_loops() {
    let server = spawn_server().await;
    let result = client_with(ALLOW, follow(3)).get(server.url("/loop")).await;
    assert!(
        matches!(result, Err(NetError::TooManyRedirects)),
        "{result:?}"
    );
    // The original request plus three followed hops.
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn refuses_redirects_to_disallowed_targets() {
    let server = spawn_server().await;
    let guarded = client_with(ALLOW, follow(5));

    for path in ["/redirect-unspecified", "/redirect-mapped-unspecified"] {
        let result = guarded.get(server.url(path)).await;
        assert!(
            matches!(
                result,
                Err(NetError::DisallowedAddress {
                    class: AddressClass::Unspecified,
                    ..
                })
            ),
            "{path}: {result:?}"
        );
    }
    let result = guarded.get(server.url("/redirect-credentials")).await;
    assert!(
        matches!(result, Err(NetError::CredentialsInUrl)),
        "{result:?}"
    );
    let result = guarded.get(server.url("/redirect-public-http")).await;
    assert!(matches!(result, Err(NetError::HttpsRequired)), "{result:?}");
    // Only the redirecting requests reached the server; no hop was followed.
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn body_cap_uses_content_length() {
    let server = spawn_server().await;
    let response = client(ALLOW).get(server.url("/big")).await.unwrap();
    assert_eq!(response.content_length(), Some(TWO_MIB as u64));
    let result = read_body_capped(response, OAUTH_JSON_LIMIT).await;
    assert!(matches!(
        result,
        Err(NetError::BodyTooLarge {
            limit: OAUTH_JSON_LIMIT
        })
    ));
}

#[tokio::test]
async fn body_cap_counts_chunked_bodies() {
    let server = spawn_server().await;
    let guarded = client(ALLOW);

    let response = guarded.get(server.url("/big-chunked")).await.unwrap();
    assert_eq!(response.content_length(), None);
    let result = read_body_capped(response, OAUTH_JSON_LIMIT).await;
    assert!(matches!(
        result,
        Err(NetError::BodyTooLarge {
            limit: OAUTH_JSON_LIMIT
        })
    ));

    // The same body fits a cap of exactly its size.
    let response = guarded.get(server.url("/big-chunked")).await.unwrap();
    let body = read_body_capped(response, TWO_MIB).await.unwrap();
    assert_eq!(body.len(), TWO_MIB);
}

#[tokio::test]
async fn slow_responses_time_out() {
    let server = spawn_server().await;
    let options = ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let guarded = client_with(ALLOW, options);

    let result = guarded.get(server.url("/slow")).await;
    assert!(matches!(result, Err(NetError::Timeout)), "{result:?}");

    // The total timeout also covers reading the body.
    let response = guarded.get(server.url("/slow-body")).await.unwrap();
    let result = read_body_capped(response, OAUTH_JSON_LIMIT).await;
    assert!(matches!(result, Err(NetError::Timeout)), "{result:?}");
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    // Bind and drop to get a loopback port with nothing listening.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = client(ALLOW).get(url(&format!("http://{addr}/"))).await;
    match result {
        Err(NetError::Connect(message)) => assert!(!message.contains("http://"), "{message}"),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The client confined to the configured trace collector

#[tokio::test]
async fn collector_client_reaches_exactly_its_origin_whatever_the_policy() {
    let server = spawn_server().await;
    let other = spawn_server().await;
    let collector = GuardedClient::for_collector(&server.url("/v1/traces"), follow(3)).unwrap();

    // Loopback over plain http, with private networks otherwise refused by default.
    let response = collector.get(server.url("/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 1);

    // Another port of the same host, another host, another scheme, the same host by
    // another name: refused before any connection, also through the bare reqwest client.
    for target in [
        other.url("/ok"),
        server.localhost_url("/ok"),
        url(&format!("https://{}/ok", server.addr)),
        url("http://169.254.169.254/latest/meta-data/"),
    ] {
        let refused = collector.get(target.clone()).await;
        assert!(
            matches!(refused, Err(NetError::OutsideOrigin)),
            "{target}: {refused:?}"
        );
        let err = collector
            .reqwest_client()
            .get(target.clone())
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(NetError::find_in(&err), Some(NetError::OutsideOrigin)),
            "{target}: {err:?}"
        );
    }
    assert_eq!(other.hits(), 0);

    // Redirects are never followed, even when the options ask for them.
    let response = collector.get(server.url("/redirect-ok")).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn collector_client_by_name_resolves_only_that_name() {
    let server = spawn_server().await;
    let collector = GuardedClient::for_collector(
        &server.localhost_url("/v1/traces"),
        ClientOptions::default(),
    )
    .unwrap();
    let response = collector.get(server.localhost_url("/ok")).await.unwrap();
    assert_eq!(response.status(), 200);
    let err = collector
        .reqwest_client()
        .get(url(&format!(
            "http://other.localhost:{}/ok",
            server.addr.port()
        )))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(NetError::find_in(&err), Some(NetError::OutsideOrigin)),
        "{err:?}"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn collector_client_never_reaches_addresses_refused_whatever_the_policy() {
    for endpoint in [
        "http://169.254.169.254/v1/traces",
        "http://0.0.0.0:4318/v1/traces",
    ] {
        let endpoint = url(endpoint);
        let refused = GuardedClient::for_collector(&endpoint, ClientOptions::default());
        assert!(
            matches!(refused, Err(NetError::DisallowedAddress { .. })),
            "{endpoint}: {refused:?}"
        );
    }
    let refused = GuardedClient::for_collector(&url("ftp://127.0.0.1/"), ClientOptions::default());
    assert!(
        matches!(refused, Err(NetError::UnsupportedScheme)),
        "{refused:?}"
    );
}
