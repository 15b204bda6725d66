//! `[bridge]`: which allowed calls are served from another network namespace, and which one.
//!
//! A bridge grants nothing. The broker asks [`Bridge::bridges`] only about a call the policy
//! (or an operator, or the embedder's run-time rules) has already allowed; the answer says
//! where the call is performed, never whether.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::endpoint::{self, Cover, Endpoint};
use crate::error::PolicyErrorKind;
use crate::names::{HostPattern, Names, NoNames};
use crate::target::{canonical_bind_addr, Op, Proto, Request, Target};

/// Keys of `[bridge]`, in canonical order.
pub(crate) const BRIDGE_KEYS: &[&str] = &["netns", "connect", "bind"];

/// The network namespace bridged calls are served from (`[bridge] netns`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BridgeNetns {
    /// `"broker"`: the broker's own network namespace.
    Broker,
    /// An absolute path to a network namespace file (`/proc/PID/ns/net`,
    /// `/run/netns/NAME`), without `.` or `..` components, doubled slashes or a trailing
    /// slash.
    Path(PathBuf),
}

impl fmt::Display for BridgeNetns {
    /// `broker`, or the path (a path that is not UTF-8 is shown lossily).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeNetns::Broker => f.write_str("broker"),
            BridgeNetns::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The `[bridge]` table of a policy: the namespace bridged calls are served from, and the
/// `connect` and `bind` patterns that say which allowed calls are bridged.
///
/// ```
/// use std::path::PathBuf;
/// use netjail_policy::{BridgeNetns, Op, Policy, Proto, Request, Target};
///
/// let p = Policy::from_toml(
///     r#"
///     name = "p"
///     [[allow]]
///     connect = ["tcp://127.0.0.1:*"]
///     [bridge]
///     netns = "/proc/1/ns/net"
///     connect = ["tcp://127.0.0.1:8080"]
///     "#,
///     "p.toml",
/// )?;
/// let bridge = p.bridge().expect("a [bridge] table");
/// assert_eq!(bridge.netns(), &BridgeNetns::Path(PathBuf::from("/proc/1/ns/net")));
/// let connect = |port| Request {
///     op: Op::Connect,
///     target: Target::Inet { proto: Proto::Tcp, addr: ([127, 0, 0, 1], port).into() },
/// };
/// assert!(bridge.bridges(&connect(8080)));
/// // Allowed, but performed in the sandbox's own namespace.
/// assert!(!bridge.bridges(&connect(8081)));
/// # Ok::<(), netjail_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub(crate) netns: BridgeNetns,
    /// Destinations of `connect` (and of datagram sends), TCP or UDP.
    pub(crate) connect: Vec<Endpoint>,
    /// Local addresses of `bind` (and of the implicit bind of `listen`), TCP or UDP.
    pub(crate) bind: Vec<Endpoint>,
}

impl Bridge {
    /// A bridge to `netns` with no patterns yet.
    pub(crate) fn new(netns: BridgeNetns) -> Bridge {
        Bridge {
            netns,
            connect: Vec::new(),
            bind: Vec::new(),
        }
    }

    /// Where bridged calls are served from.
    pub fn netns(&self) -> &BridgeNetns {
        &self.netns
    }

    /// Whether the broker serves `request` from [`Bridge::netns`], once the call is allowed;
    /// host names in `connect` patterns match nothing here (see [`Bridge::bridges_with`]).
    ///
    /// A [`Op::Connect`] (TCP or UDP, TCP Fast Open included) and a [`Op::Send`] (a
    /// datagram's destination) are matched against `connect`, a [`Op::Bind`] against `bind`,
    /// in the form the evaluator matches them: an IPv4-mapped address as the IPv4 address
    /// it is, a bind's wildcard address as the wildcard. Unix sockets, other transports and
    /// families, and unspecified destinations are never bridged.
    ///
    /// It does not decide whether the call is allowed: that is [`crate::Policy::evaluate`],
    /// asked first. A request this answers `true` for and the policy refuses stays refused.
    pub fn bridges(&self, request: &Request) -> bool {
        self.bridges_with(request, &NoNames)
    }

    /// As [`Bridge::bridges`], asking `names` about `connect` patterns with a host name:
    /// such a pattern matches only on [`crate::NameMatch::Yes`] (an unknown answer is no
    /// match, as in `[[allow]]` tables).
    pub fn bridges_with(&self, request: &Request, names: &dyn Names) -> bool {
        let Target::Inet { proto, addr } = &request.target else {
            return false;
        };
        if !matches!(proto, Proto::Tcp | Proto::Udp) {
            return false;
        }
        let addr = canonical_bind_addr(*addr);
        match request.op {
            Op::Connect | Op::Send => {
                !addr.ip().is_unspecified()
                    && self
                        .connect
                        .iter()
                        .any(|e| e.covers(*proto, addr, names, false) != Cover::No)
            }
            Op::Bind => self.bind.iter().any(|e| e.matches(*proto, addr)),
        }
    }

    /// The `connect` patterns, canonical (`tcp://127.0.0.1:8080`).
    pub fn connect_patterns(&self) -> Vec<String> {
        self.connect.iter().map(ToString::to_string).collect()
    }

    /// The `bind` patterns, canonical.
    pub fn bind_patterns(&self) -> Vec<String> {
        self.bind.iter().map(ToString::to_string).collect()
    }

    /// The host names the `connect` patterns name, in order.
    pub(crate) fn host_patterns(&self) -> impl Iterator<Item = &HostPattern> {
        self.connect.iter().filter_map(Endpoint::host_pattern)
    }
}

// ---- one key or entry, from its text: shared by the parser and the builder ----------------

/// `[bridge] netns`: `broker`, or an absolute path without `..` components (empty and `.`
/// components and a trailing slash are dropped).
pub(crate) fn parse_netns(text: &str) -> Result<BridgeNetns, PolicyErrorKind> {
    let bad = |reason: &'static str| PolicyErrorKind::BadBridgeNetns {
        found: text.to_owned(),
        reason,
    };
    if text == "broker" {
        return Ok(BridgeNetns::Broker);
    }
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    if text.contains('\0') {
        return Err(bad("it contains a NUL character"));
    }
    if !text.starts_with('/') {
        return Err(bad("it is neither `broker` nor an absolute path"));
    }
    let comps: Vec<&str> = text
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.contains(&"..") {
        return Err(bad("it has a `..` component"));
    }
    if comps.is_empty() {
        return Err(bad("it is the root directory, not a namespace file"));
    }
    let mut path = String::with_capacity(text.len());
    for c in comps {
        path.push('/');
        path.push_str(c);
    }
    Ok(BridgeNetns::Path(PathBuf::from(path)))
}

/// The canonical text of a namespace: what [`parse_netns`] reads back as the same.
pub(crate) fn netns_text(netns: &BridgeNetns) -> String {
    match netns {
        BridgeNetns::Broker => "broker".to_owned(),
        BridgeNetns::Path(p) => path_text(p),
    }
}

/// A path made by [`parse_netns`] is UTF-8; another is shown lossily.
fn path_text(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned()
}

/// One `[bridge] connect` entry: a `tcp://` or `udp://` destination endpoint.
pub(crate) fn parse_connect(text: &str) -> Result<Endpoint, PolicyErrorKind> {
    tcp_or_udp(text)?;
    endpoint::parse(text)
}

/// One `[bridge] bind` entry: a `tcp://` or `udp://` bind endpoint.
pub(crate) fn parse_bind(text: &str) -> Result<Endpoint, PolicyErrorKind> {
    tcp_or_udp(text)?;
    endpoint::parse_bind(text)
}

/// Only TCP and UDP are bridged: `any://` (which covers other transports too), `unix:` and
/// every other scheme are refused before the endpoint is read.
fn tcp_or_udp(text: &str) -> Result<(), PolicyErrorKind> {
    if text.starts_with("tcp://") || text.starts_with("udp://") {
        Ok(())
    } else {
        Err(PolicyErrorKind::BridgeNotTcpOrUdp(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::ProtoMatch;
    use crate::names::NameMatch;
    use std::net::{IpAddr, SocketAddr};

    /// Whether a parsed entry is TCP or UDP (what `parse_connect` and `parse_bind` ensure).
    fn is_tcp_or_udp(e: &Endpoint) -> bool {
        matches!(e.proto, ProtoMatch::Tcp | ProtoMatch::Udp)
    }

    trait MatchesAddr {
        fn matches_addr(&self, op: Op, proto: Proto, addr: SocketAddr) -> bool;
    }

    impl MatchesAddr for Bridge {
        fn matches_addr(&self, op: Op, proto: Proto, addr: SocketAddr) -> bool {
            self.bridges(&Request {
                op,
                target: Target::Inet { proto, addr },
            })
        }
    }

    fn bridge(connect: &[&str], bind: &[&str]) -> Bridge {
        let mut b = Bridge::new(BridgeNetns::Broker);
        b.connect = connect.iter().map(|s| parse_connect(s).unwrap()).collect();
        b.bind = bind.iter().map(|s| parse_bind(s).unwrap()).collect();
        b
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn netns_forms() {
        assert_eq!(parse_netns("broker"), Ok(BridgeNetns::Broker));
        for (input, shown) in [
            ("/proc/1/ns/net", "/proc/1/ns/net"),
            ("/run/netns/blue", "/run/netns/blue"),
            ("//run/./netns//blue/", "/run/netns/blue"),
            ("/run/netns/a..b", "/run/netns/a..b"),
        ] {
            let ns = parse_netns(input).unwrap();
            assert_eq!(ns, BridgeNetns::Path(shown.into()), "{input}");
            assert_eq!(netns_text(&ns), shown);
            assert_eq!(ns.to_string(), shown);
            assert_eq!(parse_netns(shown), Ok(ns));
        }
        for (bad, reason) in [
            ("", "it is empty"),
            ("Broker", "it is neither `broker` nor an absolute path"),
            (
                "proc/1/ns/net",
                "it is neither `broker` nor an absolute path",
            ),
            ("/run/netns/../../etc/x", "it has a `..` component"),
            ("/..", "it has a `..` component"),
            ("/", "it is the root directory, not a namespace file"),
            ("/./", "it is the root directory, not a namespace file"),
            ("/run/\0x", "it contains a NUL character"),
        ] {
            assert_eq!(
                parse_netns(bad),
                Err(PolicyErrorKind::BadBridgeNetns {
                    found: bad.into(),
                    reason
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_tcp_and_udp_entries() {
        for ok in [
            "tcp://127.0.0.1:8080",
            "udp://[::1]:53",
            "tcp://*.example.com:443",
        ] {
            let e = parse_connect(ok).unwrap();
            assert!(is_tcp_or_udp(&e), "{ok}");
        }
        assert!(is_tcp_or_udp(&parse_bind("udp://0.0.0.0:53").unwrap()));
        for bad in [
            "any://*:*",
            "unix:/run/x.sock",
            "unix:@x",
            "sctp://*:1",
            "TCP://*:1",
            "",
        ] {
            assert_eq!(
                parse_connect(bad),
                Err(PolicyErrorKind::BridgeNotTcpOrUdp(bad.into())),
                "{bad}"
            );
            assert_eq!(
                parse_bind(bad),
                Err(PolicyErrorKind::BridgeNotTcpOrUdp(bad.into())),
                "{bad}"
            );
        }
        // Past the scheme, the endpoint's own errors.
        assert_eq!(
            parse_connect("tcp://127.0.0.1:99999"),
            Err(PolicyErrorKind::PortOutOfRange("99999".into()))
        );
        assert_eq!(
            parse_bind("tcp://example.com:80"),
            Err(PolicyErrorKind::HostNameInBind("example.com".into()))
        );
    }

    #[test]
    fn connects_and_sends_use_connect_binds_use_bind() {
        let b = bridge(
            &["tcp://127.0.0.1:8080", "udp://127.0.0.1:53"],
            &["tcp://127.0.0.1:9000", "udp://0.0.0.0:5353"],
        );
        assert!(b.matches_addr(Op::Connect, Proto::Tcp, at("127.0.0.1:8080")));
        assert!(b.matches_addr(Op::Connect, Proto::Udp, at("127.0.0.1:53")));
        assert!(b.matches_addr(Op::Send, Proto::Udp, at("127.0.0.1:53")));
        assert!(!b.matches_addr(Op::Connect, Proto::Udp, at("127.0.0.1:8080")));
        assert!(!b.matches_addr(Op::Connect, Proto::Tcp, at("127.0.0.1:53")));
        assert!(!b.matches_addr(Op::Connect, Proto::Tcp, at("127.0.0.1:9000")));
        assert!(!b.matches_addr(Op::Bind, Proto::Tcp, at("127.0.0.1:8080")));
        assert!(b.matches_addr(Op::Bind, Proto::Tcp, at("127.0.0.1:9000")));
        assert!(b.matches_addr(Op::Bind, Proto::Udp, at("0.0.0.0:5353")));
        // A bind's wildcard is not loopback, and a connect's mapped address is IPv4.
        assert!(!b.matches_addr(Op::Bind, Proto::Tcp, at("0.0.0.0:9000")));
        assert!(b.matches_addr(Op::Connect, Proto::Tcp, at("[::ffff:127.0.0.1]:8080")));
        assert!(b.matches_addr(Op::Bind, Proto::Udp, at("[::ffff:0.0.0.0]:5353")));
        // Other transports, unspecified destinations, unix sockets: never.
        assert!(!b.matches_addr(Op::Connect, Proto::Other, at("127.0.0.1:8080")));
        let any = bridge(&["tcp://*:*", "udp://*:*"], &[]);
        assert!(!any.matches_addr(Op::Connect, Proto::Tcp, at("0.0.0.0:8080")));
        assert!(!any.matches_addr(Op::Send, Proto::Udp, at("[::]:53")));
        for target in [
            Target::UnixPath("/run/x".into()),
            Target::UnixAbstract(b"x".to_vec()),
            Target::Unspec,
            Target::OtherFamily(libc::AF_NETLINK),
        ] {
            for op in [Op::Connect, Op::Send, Op::Bind] {
                assert!(!any.bridges(&Request {
                    op,
                    target: target.clone()
                }));
            }
        }
    }

    #[test]
    fn host_names_match_only_when_names_say_yes() {
        struct Answer(NameMatch);
        impl Names for Answer {
            fn lookup(&self, _: &HostPattern, _: IpAddr) -> NameMatch {
                self.0.clone()
            }
        }
        let b = bridge(&["tcp://*.example.com:443"], &[]);
        let r = Request {
            op: Op::Connect,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: at("192.0.2.1:443"),
            },
        };
        assert!(!b.bridges(&r));
        assert!(b.bridges_with(&r, &Answer(NameMatch::Yes("a.example.com".into()))));
        assert!(!b.bridges_with(&r, &Answer(NameMatch::Unknown)));
        assert!(!b.bridges_with(&r, &Answer(NameMatch::No)));
        assert_eq!(
            b.host_patterns().collect::<Vec<_>>(),
            [&HostPattern::Subdomains("example.com".into())]
        );
    }
}
