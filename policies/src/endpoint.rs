//! `PROTO://HOST:PORT` endpoints of `connect`, `send` and `bind` entries: parsing, matching,
//! canonical display.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::PolicyErrorKind;
use crate::names::{self, HostPattern, NameMatch, Names};
use crate::target::Proto;

/// Which transports an endpoint covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtoMatch {
    Tcp,
    Udp,
    Any,
}

/// Which destination addresses an endpoint covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostMatch {
    /// `*`
    Any,
    /// `loopback`: 127.0.0.0/8 and ::1 (rule N2).
    Loopback,
    /// An address (a full-length prefix) or a CIDR. Never inside `::ffff:0:0/96`: those are
    /// turned into IPv4 at load.
    Net(IpNet),
    /// The addresses of a host name, as a [`Names`] tells them (`connect` and `send` only).
    Name(HostPattern),
}

/// One `connect`, `send` or `bind` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) proto: ProtoMatch,
    pub(crate) host: HostMatch,
    /// Inclusive port range; `*` is 0-65535.
    pub(crate) ports: (u16, u16),
}

/// Ports below this need `CAP_NET_BIND_SERVICE` to bind (rule J8).
pub(crate) const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// How an entry covers a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cover {
    /// It does not.
    No,
    /// By its address, CIDR, `loopback` or `*`.
    Addr,
    /// By its host name: the name the [`Names`] gave, or (failing closed in a `[[deny]]`
    /// table, when the lookup could not tell) the pattern as written.
    Name(String),
}

impl Endpoint {
    fn proto_and_port(&self, proto: Proto, port: u16) -> bool {
        let proto_ok = match self.proto {
            ProtoMatch::Any => true,
            ProtoMatch::Tcp => proto == Proto::Tcp,
            ProtoMatch::Udp => proto == Proto::Udp,
        };
        proto_ok && self.ports.0 <= port && port <= self.ports.1
    }

    /// Does this endpoint cover a connect or send of `proto` to `addr`? `addr` must be
    /// canonical (see [`crate::Target::canonical`]). A host name is asked of `names` once the
    /// protocol and the port match; with `fail_closed` (a `[[deny]]` table) an unknown answer
    /// covers the destination.
    pub(crate) fn covers(
        &self,
        proto: Proto,
        addr: SocketAddr,
        names: &dyn Names,
        fail_closed: bool,
    ) -> Cover {
        if !self.proto_and_port(proto, addr.port()) {
            return Cover::No;
        }
        match &self.host {
            HostMatch::Name(pattern) => match names.lookup(pattern, addr.ip()) {
                NameMatch::Yes(name) => Cover::Name(name),
                NameMatch::Unknown if fail_closed => Cover::Name(pattern.to_string()),
                NameMatch::Unknown | NameMatch::No => Cover::No,
            },
            host if host.contains(addr.ip()) => Cover::Addr,
            _ => Cover::No,
        }
    }

    /// Does this endpoint cover `proto` and `addr` by address alone (a host name never does)?
    pub(crate) fn matches(&self, proto: Proto, addr: SocketAddr) -> bool {
        self.proto_and_port(proto, addr.port()) && self.host.contains(addr.ip())
    }

    /// The host name this endpoint names, if any.
    pub(crate) fn host_pattern(&self) -> Option<&HostPattern> {
        match &self.host {
            HostMatch::Name(pattern) => Some(pattern),
            _ => None,
        }
    }

    /// Does this `bind` entry cover a bind of `proto` to `addr` (as given, not canonical)?
    /// A privileged port (1-1023) is covered only by an entry whose whole port range is
    /// privileged, such as `tcp://*:80` or `tcp://*:1-1023`: a broad range like `*` never
    /// grants one (rule J8: privileged binds only where the policy names them).
    pub(crate) fn matches_bind(&self, proto: Proto, addr: SocketAddr) -> bool {
        let port = addr.port();
        if port != 0 && port < FIRST_UNPRIVILEGED_PORT && self.ports.1 >= FIRST_UNPRIVILEGED_PORT {
            return false;
        }
        self.matches(proto, addr)
    }
}

impl HostMatch {
    /// Whether `ip` is covered by address; a host name needs a [`Names`] and covers nothing
    /// here.
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Loopback => match ip {
                IpAddr::V4(v4) => v4.is_loopback(),
                IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
            },
            HostMatch::Net(net) => net.contains(&ip),
            HostMatch::Name(_) => false,
        }
    }
}

/// Parses one destination endpoint (`connect`, `send`): the host may be a name.
pub(crate) fn parse(s: &str) -> Result<Endpoint, PolicyErrorKind> {
    parse_with(s, false)
}

/// Parses one `bind` endpoint: there the unspecified address (`0.0.0.0`, `[::]`) is the
/// wildcard bind it says, not loopback, and a host name is refused.
pub(crate) fn parse_bind(s: &str) -> Result<Endpoint, PolicyErrorKind> {
    parse_with(s, true)
}

fn parse_with(s: &str, bind: bool) -> Result<Endpoint, PolicyErrorKind> {
    let Some((proto, rest)) = s.split_once("://") else {
        return Err(PolicyErrorKind::BadEndpoint(s.to_owned()));
    };
    let proto = match proto {
        "tcp" => ProtoMatch::Tcp,
        "udp" => ProtoMatch::Udp,
        "any" => ProtoMatch::Any,
        other => return Err(PolicyErrorKind::UnknownProto(other.to_owned())),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(PolicyErrorKind::BadEndpoint(s.to_owned()));
        };
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => return Err(PolicyErrorKind::MissingPort(s.to_owned())),
            None => return Err(PolicyErrorKind::BadEndpoint(s.to_owned())),
        };
        (parse_bracketed(host, bind)?, port)
    } else {
        match rest.matches(':').count() {
            0 if rest.is_empty() => return Err(PolicyErrorKind::BadEndpoint(s.to_owned())),
            0 => return Err(PolicyErrorKind::MissingPort(s.to_owned())),
            1 => {
                let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
                (parse_bare(host, bind)?, port)
            }
            _ => return Err(PolicyErrorKind::UnbracketedIpv6(s.to_owned())),
        }
    };
    Ok(Endpoint {
        proto,
        host,
        ports: parse_ports(port)?,
    })
}

/// Inside `[...]`: an IPv6 address or prefix.
fn parse_bracketed(host: &str, unspecified_ok: bool) -> Result<HostMatch, PolicyErrorKind> {
    let (addr, prefix) = split_prefix(host);
    let Ok(ip) = addr.parse::<Ipv6Addr>() else {
        return Err(PolicyErrorKind::BadAddress(host.to_owned()));
    };
    let len = match prefix {
        None => 128,
        Some(p) => parse_prefix_len(p, 128, host)?,
    };
    let net = Ipv6Net::new(ip, len).map_err(|_| PolicyErrorKind::BadPrefix(host.to_owned()))?;
    if net.trunc() != net {
        return Err(PolicyErrorKind::HostBitsSet {
            given: format!("[{host}]"),
            suggestion: format!("[{}]", net.trunc()),
        });
    }
    // ::ffff:0:0/96 is IPv4 (rule N2): store the IPv4 network it is.
    if len >= 96 {
        if let Some(v4) = ip.to_ipv4_mapped() {
            let v4net = Ipv4Net::new(v4, len - 96)
                .map_err(|_| PolicyErrorKind::BadPrefix(host.to_owned()))?;
            return net_host(IpNet::V4(v4net), host, unspecified_ok);
        }
    }
    net_host(IpNet::V6(net), host, unspecified_ok)
}

/// Outside brackets: `*`, `loopback`, an IPv4 address or CIDR; anything with a letter or a
/// `*` is a host name, which `bind` entries refuse.
fn parse_bare(host: &str, bind: bool) -> Result<HostMatch, PolicyErrorKind> {
    match host {
        "*" => return Ok(HostMatch::Any),
        "loopback" => return Ok(HostMatch::Loopback),
        _ => {}
    }
    let unspecified_ok = bind;
    let (addr, prefix) = split_prefix(host);
    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
        if !host.chars().any(|c| c.is_alphabetic() || c == '*') {
            return Err(PolicyErrorKind::BadAddress(host.to_owned()));
        }
        if bind {
            return Err(PolicyErrorKind::HostNameInBind(host.to_owned()));
        }
        return names::parse(host).map(HostMatch::Name);
    };
    let len = match prefix {
        None => 32,
        Some(p) => parse_prefix_len(p, 32, host)?,
    };
    let net = Ipv4Net::new(ip, len).map_err(|_| PolicyErrorKind::BadPrefix(host.to_owned()))?;
    if net.trunc() != net {
        return Err(PolicyErrorKind::HostBitsSet {
            given: host.to_owned(),
            suggestion: net.trunc().to_string(),
        });
    }
    net_host(IpNet::V4(net), host, unspecified_ok)
}

/// Refuses a single unspecified address (see [`PolicyErrorKind::UnspecifiedAddress`]).
fn net_host(net: IpNet, written: &str, unspecified_ok: bool) -> Result<HostMatch, PolicyErrorKind> {
    if !unspecified_ok && net.prefix_len() == net.max_prefix_len() && net.addr().is_unspecified() {
        return Err(PolicyErrorKind::UnspecifiedAddress(written.to_owned()));
    }
    Ok(HostMatch::Net(net))
}

fn split_prefix(host: &str) -> (&str, Option<&str>) {
    match host.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (host, None),
    }
}

fn parse_prefix_len(p: &str, max: u8, host: &str) -> Result<u8, PolicyErrorKind> {
    match p.parse::<u8>() {
        Ok(len) if len <= max && p.bytes().all(|b| b.is_ascii_digit()) => Ok(len),
        _ => Err(PolicyErrorKind::BadPrefix(host.to_owned())),
    }
}

fn parse_ports(p: &str) -> Result<(u16, u16), PolicyErrorKind> {
    if p == "*" {
        return Ok((0, u16::MAX));
    }
    if p.is_empty() {
        return Err(PolicyErrorKind::BadPort(p.to_owned()));
    }
    match p.split_once('-') {
        Some((a, b)) => {
            let (first, last) = (parse_port(a, p)?, parse_port(b, p)?);
            if first > last {
                return Err(PolicyErrorKind::ReversedPortRange { first, last });
            }
            Ok((first, last))
        }
        None => {
            let n = parse_port(p, p)?;
            Ok((n, n))
        }
    }
}

fn parse_port(n: &str, whole: &str) -> Result<u16, PolicyErrorKind> {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PolicyErrorKind::BadPort(whole.to_owned()));
    }
    // All digits: only overflow can fail.
    match n.parse::<u16>() {
        Ok(v) => Ok(v),
        Err(_) => Err(PolicyErrorKind::PortOutOfRange(
            n.trim_start_matches('0').to_owned(),
        )),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            ProtoMatch::Tcp => "tcp",
            ProtoMatch::Udp => "udp",
            ProtoMatch::Any => "any",
        };
        write!(f, "{proto}://")?;
        match &self.host {
            HostMatch::Any => f.write_str("*")?,
            HostMatch::Loopback => f.write_str("loopback")?,
            HostMatch::Net(IpNet::V4(n)) if n.prefix_len() == 32 => write!(f, "{}", n.addr())?,
            HostMatch::Net(IpNet::V4(n)) => write!(f, "{n}")?,
            HostMatch::Net(IpNet::V6(n)) if n.prefix_len() == 128 => write!(f, "[{}]", n.addr())?,
            HostMatch::Net(IpNet::V6(n)) => write!(f, "[{n}]")?,
            HostMatch::Name(pattern) => write!(f, "{pattern}")?,
        }
        match self.ports {
            (0, u16::MAX) => f.write_str(":*"),
            (a, b) if a == b => write!(f, ":{a}"),
            (a, b) => write!(f, ":{a}-{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{canonical_ip, Proto};

    fn ep(s: &str) -> Endpoint {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn err(s: &str) -> PolicyErrorKind {
        parse(s).expect_err(s)
    }
    fn hit(e: &str, proto: Proto, addr: &str) -> bool {
        let a: SocketAddr = addr.parse().unwrap();
        ep(e).matches(proto, SocketAddr::new(canonical_ip(a.ip()), a.port()))
    }

    #[test]
    fn every_host_form_parses_and_displays_canonically() {
        for (input, shown) in [
            ("tcp://127.0.0.1:80", "tcp://127.0.0.1:80"),
            ("udp://10.0.0.0/8:53", "udp://10.0.0.0/8:53"),
            ("any://[::1]:1-2", "any://[::1]:1-2"),
            ("tcp://[fd00::/8]:*", "tcp://[fd00::/8]:*"),
            ("tcp://[::/0]:443", "tcp://[::/0]:443"),
            ("tcp://*:0-65535", "tcp://*:*"),
            ("any://loopback:7-7", "any://loopback:7"),
            ("tcp://[::ffff:127.0.0.0/104]:80", "tcp://127.0.0.0/8:80"),
            ("tcp://[::ffff:10.0.0.1]:80", "tcp://10.0.0.1:80"),
            ("tcp://[::ffff:0:0/96]:80", "tcp://0.0.0.0/0:80"),
            ("tcp://0.0.0.0/0:80", "tcp://0.0.0.0/0:80"),
        ] {
            assert_eq!(ep(input).to_string(), shown, "{input}");
            assert_eq!(ep(shown), ep(input));
        }
    }

    #[test]
    fn ports_at_their_bounds() {
        assert_eq!(ep("tcp://*:0").ports, (0, 0));
        assert_eq!(ep("tcp://*:65535").ports, (65535, 65535));
        assert_eq!(ep("tcp://*:0-65535").ports, (0, 65535));
        assert_eq!(ep("tcp://*:5-5").ports, (5, 5));
        assert!(hit("tcp://*:1000-2000", Proto::Tcp, "1.2.3.4:1000"));
        assert!(hit("tcp://*:1000-2000", Proto::Tcp, "1.2.3.4:2000"));
        assert!(!hit("tcp://*:1000-2000", Proto::Tcp, "1.2.3.4:999"));
        assert!(!hit("tcp://*:1000-2000", Proto::Tcp, "1.2.3.4:2001"));
        assert_eq!(
            err("tcp://*:65536"),
            PolicyErrorKind::PortOutOfRange("65536".into())
        );
        assert_eq!(
            err("tcp://*:70000"),
            PolicyErrorKind::PortOutOfRange("70000".into())
        );
        assert_eq!(
            err("tcp://*:1-70000"),
            PolicyErrorKind::PortOutOfRange("70000".into())
        );
        assert_eq!(
            err("tcp://*:9-8"),
            PolicyErrorKind::ReversedPortRange { first: 9, last: 8 }
        );
        for bad in [
            "tcp://*:",
            "tcp://*:x",
            "tcp://*:-1",
            "tcp://*:1-",
            "tcp://*:+1",
            "tcp://*:1-2-3",
        ] {
            assert!(matches!(err(bad), PolicyErrorKind::BadPort(_)), "{bad}");
        }
    }

    #[test]
    fn proto_matching() {
        assert!(hit("tcp://*:*", Proto::Tcp, "1.1.1.1:1"));
        assert!(!hit("tcp://*:*", Proto::Udp, "1.1.1.1:1"));
        assert!(!hit("tcp://*:*", Proto::Other, "1.1.1.1:1"));
        assert!(hit("udp://*:*", Proto::Udp, "1.1.1.1:1"));
        assert!(!hit("udp://*:*", Proto::Tcp, "1.1.1.1:1"));
        for p in [Proto::Tcp, Proto::Udp, Proto::Other] {
            assert!(hit("any://*:*", p, "1.1.1.1:1"));
        }
    }

    #[test]
    fn s_n2_loopback_keyword_covers_v4_v6_and_mapped() {
        let e = "tcp://loopback:*";
        for a in [
            "127.0.0.1:1",
            "127.255.255.254:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
            "[::ffff:127.9.9.9]:1",
        ] {
            assert!(hit(e, Proto::Tcp, a), "{a}");
        }
        // The unspecified address is no destination of its own: the broker decides on the
        // socket's source address the kernel sends it to (the evaluator refuses it).
        for a in [
            "128.0.0.1:1",
            "[::2]:1",
            "[::ffff:10.0.0.1]:1",
            "[::127.0.0.1]:1",
            "0.0.0.0:1",
            "[::]:1",
            "[::ffff:0.0.0.0]:1",
        ] {
            assert!(!hit(e, Proto::Tcp, a), "{a}");
        }
    }

    #[test]
    fn s_n2_mapped_policy_prefix_matches_plain_and_mapped_destinations() {
        let e = "tcp://[::ffff:127.0.0.0/104]:*";
        assert!(hit(e, Proto::Tcp, "127.0.0.5:80"));
        assert!(hit(e, Proto::Tcp, "[::ffff:127.0.0.5]:80"));
        assert!(!hit(e, Proto::Tcp, "[::1]:80"));
    }

    #[test]
    fn cidr_and_v6_prefix_matching() {
        assert!(hit("tcp://10.0.0.0/8:*", Proto::Tcp, "10.255.0.1:1"));
        assert!(hit("tcp://10.0.0.0/8:*", Proto::Tcp, "[::ffff:10.1.1.1]:1"));
        assert!(!hit("tcp://10.0.0.0/8:*", Proto::Tcp, "11.0.0.1:1"));
        assert!(hit("tcp://[fd00::/8]:*", Proto::Tcp, "[fd12::1]:1"));
        assert!(!hit("tcp://[fd00::/8]:*", Proto::Tcp, "[fe00::1]:1"));
        // An IPv6 prefix never covers IPv4 traffic, even written as ::/0.
        assert!(!hit("tcp://[::/0]:*", Proto::Tcp, "[::ffff:1.2.3.4]:1"));
        assert!(!hit("tcp://[::/0]:*", Proto::Tcp, "1.2.3.4:1"));
        assert!(hit("tcp://[::/0]:*", Proto::Tcp, "[2001:db8::1]:1"));
        assert!(!hit("tcp://0.0.0.0/0:*", Proto::Tcp, "[2001:db8::1]:1"));
        assert!(hit("tcp://*:*", Proto::Tcp, "[2001:db8::1]:1"));
    }

    #[test]
    fn bad_hosts() {
        assert_eq!(
            err("tcp://10.0.0.1/8:443"),
            PolicyErrorKind::HostBitsSet {
                given: "10.0.0.1/8".into(),
                suggestion: "10.0.0.0/8".into()
            }
        );
        assert_eq!(
            err("tcp://[fd00::1/8]:443"),
            PolicyErrorKind::HostBitsSet {
                given: "[fd00::1/8]".into(),
                suggestion: "[fd00::/8]".into()
            }
        );
        for bad in [
            "tcp://10.0.0.0/33:1",
            "tcp://[::/129]:1",
            "tcp://10.0.0.0/:1",
            "tcp://10.0.0.0/x:1",
            "tcp://10.0.0.0/+8:1",
        ] {
            assert!(matches!(err(bad), PolicyErrorKind::BadPrefix(_)), "{bad}");
        }
        for name in [
            "tcp://*.*.example.com:443",
            "tcp://Loopback:1",
            "tcp://a-b_c:1",
            "tcp://a b:1",
            "tcp://example.com/24:1",
            "tcp://*.:1",
        ] {
            assert!(
                matches!(err(name), PolicyErrorKind::BadHostName { .. }),
                "{name}"
            );
        }
        for bad in [
            "tcp://256.1.1.1:1",
            "tcp://1.2.3:1",
            "tcp://127.1:1",
            "tcp://[127.0.0.1]:1",
            "tcp://[loopback]:1",
            "tcp://[*]:1",
            "tcp://[example.com]:1",
            "tcp://1.2.3.4 :1",
        ] {
            assert!(matches!(err(bad), PolicyErrorKind::BadAddress(_)), "{bad}");
        }
        for bad in ["tcp://::1:80", "tcp://fd00::/8:443", "tcp://::"] {
            assert!(
                matches!(err(bad), PolicyErrorKind::UnbracketedIpv6(_)),
                "{bad}"
            );
        }
        for bad in [
            "tcp://0.0.0.0:1",
            "tcp://[::]:1",
            "tcp://[::ffff:0.0.0.0]:1",
            "tcp://0.0.0.0/32:1",
        ] {
            assert!(
                matches!(err(bad), PolicyErrorKind::UnspecifiedAddress(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn host_names_in_destinations_not_in_binds() {
        for (input, shown) in [
            ("tcp://api.example.com:443", "tcp://api.example.com:443"),
            ("tcp://API.Example.com.:443", "tcp://api.example.com:443"),
            ("udp://*.example.com:53", "udp://*.example.com:53"),
            ("any://*.Example.COM.:1-2", "any://*.example.com:1-2"),
            ("tcp://localhost:*", "tcp://localhost:*"),
        ] {
            assert_eq!(ep(input).to_string(), shown, "{input}");
            assert_eq!(ep(shown), ep(input));
        }
        assert_eq!(
            ep("tcp://*.example.com:443").host_pattern(),
            Some(&HostPattern::Subdomains("example.com".into()))
        );
        assert_eq!(ep("tcp://*:443").host_pattern(), None);
        // By address alone a name covers nothing.
        assert!(!hit("tcp://localhost:*", Proto::Tcp, "127.0.0.1:80"));
        for name in [
            "tcp://example.com:80",
            "tcp://*.example.com:80",
            "tcp://a_b:1",
        ] {
            let host = &name[6..name.rfind(':').unwrap()];
            assert_eq!(
                parse_bind(name),
                Err(PolicyErrorKind::HostNameInBind(host.into())),
                "{name}"
            );
        }
        assert_eq!(
            parse_bind("tcp://1.2.3:1"),
            Err(PolicyErrorKind::BadAddress("1.2.3".into()))
        );
        assert!(parse_bind("tcp://loopback:80").is_ok());
        assert!(parse_bind("tcp://*:80").is_ok());
    }

    #[test]
    fn names_are_asked_only_once_proto_and_port_match() {
        struct Count(std::cell::Cell<u32>, NameMatch);
        impl Names for Count {
            fn lookup(&self, _: &HostPattern, _: IpAddr) -> NameMatch {
                self.0.set(self.0.get() + 1);
                self.1.clone()
            }
        }
        let e = ep("tcp://*.example.com:443");
        let a: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let yes = Count(Default::default(), NameMatch::Yes("a.example.com".into()));
        assert_eq!(
            e.covers(Proto::Udp, a, &yes, false),
            Cover::No,
            "wrong proto"
        );
        let other_port = SocketAddr::new(a.ip(), 80);
        assert_eq!(e.covers(Proto::Tcp, other_port, &yes, false), Cover::No);
        assert_eq!(yes.0.get(), 0);
        assert_eq!(
            e.covers(Proto::Tcp, a, &yes, false),
            Cover::Name("a.example.com".into())
        );
        assert_eq!(yes.0.get(), 1);
        let unknown = Count(Default::default(), NameMatch::Unknown);
        assert_eq!(e.covers(Proto::Tcp, a, &unknown, false), Cover::No);
        assert_eq!(
            e.covers(Proto::Tcp, a, &unknown, true),
            Cover::Name("*.example.com".into())
        );
        let no = Count(Default::default(), NameMatch::No);
        assert_eq!(e.covers(Proto::Tcp, a, &no, true), Cover::No);
        // Address entries never ask.
        assert_eq!(
            ep("tcp://*:443").covers(Proto::Tcp, a, &no, true),
            Cover::Addr
        );
        assert_eq!(no.0.get(), 1);
    }

    #[test]
    fn bad_shapes() {
        assert_eq!(
            err("127.0.0.1:80"),
            PolicyErrorKind::BadEndpoint("127.0.0.1:80".into())
        );
        assert_eq!(err("tcp://"), PolicyErrorKind::BadEndpoint("tcp://".into()));
        assert_eq!(
            err("tcp://[::1"),
            PolicyErrorKind::BadEndpoint("tcp://[::1".into())
        );
        assert_eq!(
            err("tcp://[::1]x"),
            PolicyErrorKind::BadEndpoint("tcp://[::1]x".into())
        );
        assert_eq!(
            err("sctp://*:1"),
            PolicyErrorKind::UnknownProto("sctp".into())
        );
        assert_eq!(
            err("TCP://*:1"),
            PolicyErrorKind::UnknownProto("TCP".into())
        );
        assert_eq!(
            err("tcp://1.2.3.4"),
            PolicyErrorKind::MissingPort("tcp://1.2.3.4".into())
        );
        assert_eq!(
            err("tcp://[::1]"),
            PolicyErrorKind::MissingPort("tcp://[::1]".into())
        );
    }
}
