//! Classification of IP addresses into the ranges that outbound requests must
//! not reach.
//!
//! The tables here are deliberately explicit instead of relying on the
//! unstable `is_global` helpers of the standard library: the product's
//! security depends on exactly which ranges are refused, so they are spelled
//! out and tested one by one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::NetPolicy;

/// Why an address is not an ordinary public unicast address.
///
/// IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64
/// and 6to4) are reported with the class of the embedded IPv4 address, because
/// that is where the traffic actually ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0/8` and `::`; connecting to them reaches the local host.
    Unspecified,
    /// `127.0.0.0/8` and `::1`.
    Loopback,
    /// RFC 1918 space (`10/8`, `172.16/12`, `192.168/16`) and local-use NAT64
    /// (`64:ff9b:1::/48`).
    Private,
    /// `169.254.0.0/16` and `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT shared space, `100.64.0.0/10`.
    Cgnat,
    /// Cloud instance metadata and credential endpoints (see `METADATA_V4` and
    /// `METADATA_V6`), which hand out credentials.
    Metadata,
    /// `224.0.0.0/4` and `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15` and `2001:2::/48`.
    Benchmarking,
    /// IETF protocol assignments, `192.0.0.0/24`.
    ProtocolAssignment,
    /// `240.0.0.0/4`, the deprecated 6to4 relay anycast `192.88.99/24`,
    /// ORCHID, and IPv6 space outside the allocated global unicast `2000::/3`.
    Reserved,
    /// `fc00::/7`.
    UniqueLocal,
    /// Deprecated IPv6 site-local space, `fec0::/10`.
    SiteLocal,
    /// Teredo tunnelling, `2001::/32`.
    Teredo,
    /// The IPv6 discard prefix, `100::/64`.
    Discard,
}

impl AddressClass {
    /// Classes refused even when the operator allows private networks.
    ///
    /// Allowing private networks exists so that MCP servers on the operator's
    /// own LAN or on the same host can be used. None of these classes serves
    /// that purpose and each is dangerous:
    /// - unspecified (`0.0.0.0`, `::`) silently means "this host" on most
    ///   stacks, which makes it a classic filter bypass;
    /// - multicast and broadcast are not point-to-point destinations for an
    ///   HTTP client at all;
    /// - metadata endpoints hand out the cloud instance's credentials, so
    ///   reaching them from a user-supplied URL is the worst SSRF outcome.
    pub fn always_refused(self) -> bool {
        matches!(
            self,
            Self::Unspecified | Self::Multicast | Self::Broadcast | Self::Metadata
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Cgnat => "carrier-grade nat",
            Self::Metadata => "cloud metadata",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::ProtocolAssignment => "protocol assignment",
            Self::Reserved => "reserved",
            Self::UniqueLocal => "unique local",
            Self::SiteLocal => "site-local",
            Self::Teredo => "teredo",
            Self::Discard => "discard",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata and credential services of the major clouds, refused whatever the policy:
/// - `169.254.169.254`: AWS, GCP, Azure, Oracle and most others;
/// - `169.254.170.2`: ECS task metadata and credentials;
/// - `169.254.170.23`: EKS Pod Identity credentials;
/// - `169.254.0.23`: Tencent Cloud;
/// - `100.100.100.200`: Alibaba Cloud;
/// - `168.63.129.16`: Azure WireServer, which sits in public address space, so it would be
///   reachable even with private networks refused.
///
/// The others sit inside link-local or CGNAT space, so without this list they would become
/// reachable once private networks are allowed.
const METADATA_V4: [Ipv4Addr; 6] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(169, 254, 0, 23),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// The IPv6 metadata endpoints, inside unique-local space: AWS instance metadata
/// (`fd00:ec2::254`), EKS Pod Identity (`fd00:ec2::23`) and GCP (`fd20:ce::254`).
const METADATA_V6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254),
    Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0023),
    Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254),
];

/// Classify an IP address: `None` when it is a normal public address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether the policy allows connecting to this address; the error carries
/// the class that made it refused.
pub fn is_allowed(ip: IpAddr, policy: NetPolicy) -> Result<(), AddressClass> {
    match classify(ip) {
        None => Ok(()),
        Some(class) if policy.allow_private_networks && !class.always_refused() => Ok(()),
        Some(class) => Err(class),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;

    // Checked first: most of these addresses also fall into link-local or CGNAT
    // (and one into public space), and the more specific class is the one that
    // must never be relaxed.
    if METADATA_V4.contains(&ip) {
        return Some(Metadata);
    }
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        (0, _, _) => Unspecified,
        (127, _, _) => Loopback,
        (10, _, _) => Private,
        (172, 16..=31, _) => Private,
        (192, 168, _) => Private,
        (169, 254, _) => LinkLocal,
        (100, 64..=127, _) => Cgnat,
        (192, 0, 0) => ProtocolAssignment,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (198, 18..=19, _) => Benchmarking,
        (192, 88, 99) => Reserved,
        (224..=239, _, _) => Multicast,
        _ if ip == Ipv4Addr::BROADCAST => Broadcast,
        (240..=255, _, _) => Reserved,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;

    if METADATA_V6.contains(&ip) {
        return Some(Metadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if let Some(embedded) = embedded_v4(ip) {
        return classify_v4(embedded);
    }
    let s = ip.segments();
    let class = match s[0] {
        // Local-use NAT64 (RFC 8215): the operator's own translator.
        0x0064 if s[1] == 0xff9b && s[2] == 0x0001 => Private,
        0x0100 if s[1] == 0 && s[2] == 0 && s[3] == 0 => Discard,
        0x2001 if s[1] == 0 => Teredo,
        0x2001 if s[1] == 0x0002 && s[2] == 0 => Benchmarking,
        // ORCHIDv1 and ORCHIDv2 identifiers are not routable locators.
        0x2001 if (s[1] & 0xfff0) == 0x0010 || (s[1] & 0xfff0) == 0x0020 => Reserved,
        0x2001 if s[1] == 0x0db8 => Documentation,
        0x3fff if (s[1] & 0xf000) == 0 => Documentation,
        x if (x & 0xfe00) == 0xfc00 => UniqueLocal,
        x if (x & 0xffc0) == 0xfe80 => LinkLocal,
        x if (x & 0xffc0) == 0xfec0 => SiteLocal,
        x if (x & 0xff00) == 0xff00 => Multicast,
        // Only 2000::/3 is allocated for global unicast; anything else that
        // got this far has no legitimate public destination.
        x if (x & 0xe000) != 0x2000 => Reserved,
        _ => return None,
    };
    Some(class)
}

/// The IPv4 address an IPv6 address delivers to, for the transition forms
/// whose traffic ends up at that IPv4 address. Without this,
/// `[::ffff:127.0.0.1]` or `[64:ff9b::a9fe:a9fe]` would slip past the IPv4
/// rules.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // IPv4-mapped, ::ffff:0:0/96.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // Deprecated IPv4-compatible, ::/96 (:: and ::1 are handled before).
    if s[..6] == [0; 6] {
        return Some(low(s[6], s[7]));
    }
    // Well-known NAT64 prefix, 64:ff9b::/96.
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(low(s[6], s[7]));
    }
    // 6to4, 2002::/16: the IPv4 address follows the prefix.
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}
