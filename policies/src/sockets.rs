//! The `[sockets] allow` list (rule L2): which `socket(2)` calls the sandbox may make, and
//! what the others fail with.

use std::fmt;

use crate::error::PolicyErrorKind;

/// One entry of the `socket()` allow-list: `FAMILY:TYPE[:PROTOCOL]`, or `*:*` for every
/// socket. `None` as the family means any family (and then any type and protocol); `None` as
/// the type means any type; `None` as the protocol means the type's default one (TCP for
/// `inet:stream`, UDP for `inet:dgram`) in the IP families and any protocol elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRule {
    /// Address family (`AF_*`), or `None` for every family (`*:*`).
    pub family: Option<i32>,
    /// Socket type (`SOCK_*`, without `SOCK_NONBLOCK` / `SOCK_CLOEXEC`), or `None` for any.
    pub sock_type: Option<i32>,
    /// Protocol (`IPPROTO_*`, or the family's own number), or `None`.
    pub protocol: Option<i32>,
}

impl SocketRule {
    /// Does this entry allow `socket(family, sock_type, _)`? The `SOCK_NONBLOCK` and
    /// `SOCK_CLOEXEC` flags in `sock_type` are ignored.
    pub fn matches(&self, family: i32, sock_type: i32) -> bool {
        let base = sock_type & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        match self.family {
            None => true,
            Some(f) => {
                f == family
                    && match self.sock_type {
                        None => true,
                        Some(t) => t == base,
                    }
            }
        }
    }
}

const FAMILIES: &[(&str, i32)] = &[
    ("unix", libc::AF_UNIX),
    ("inet", libc::AF_INET),
    ("inet6", libc::AF_INET6),
    ("netlink", libc::AF_NETLINK),
    ("packet", libc::AF_PACKET),
    ("vsock", libc::AF_VSOCK),
];

/// Protocol names of the IP families.
const IP_PROTOCOLS: &[(&str, i32)] = &[
    ("tcp", libc::IPPROTO_TCP),
    ("udp", libc::IPPROTO_UDP),
    ("sctp", libc::IPPROTO_SCTP),
    ("mptcp", libc::IPPROTO_MPTCP),
    ("udplite", libc::IPPROTO_UDPLITE),
    ("icmp", libc::IPPROTO_ICMP),
    ("icmpv6", libc::IPPROTO_ICMPV6),
];

/// Protocol names of the netlink family: the kernel's `NETLINK_*`, lower case.
const NETLINK_PROTOCOLS: &[(&str, i32)] = &[
    ("route", libc::NETLINK_ROUTE),
    ("usersock", libc::NETLINK_USERSOCK),
    ("firewall", libc::NETLINK_FIREWALL),
    ("sock_diag", libc::NETLINK_SOCK_DIAG),
    ("nflog", libc::NETLINK_NFLOG),
    ("xfrm", libc::NETLINK_XFRM),
    ("selinux", libc::NETLINK_SELINUX),
    ("iscsi", libc::NETLINK_ISCSI),
    ("audit", libc::NETLINK_AUDIT),
    ("fib_lookup", libc::NETLINK_FIB_LOOKUP),
    ("connector", libc::NETLINK_CONNECTOR),
    ("netfilter", libc::NETLINK_NETFILTER),
    ("ip6_fw", libc::NETLINK_IP6_FW),
    ("dnrtmsg", libc::NETLINK_DNRTMSG),
    ("kobject_uevent", libc::NETLINK_KOBJECT_UEVENT),
    ("generic", libc::NETLINK_GENERIC),
    ("scsitransport", libc::NETLINK_SCSITRANSPORT),
    ("ecryptfs", libc::NETLINK_ECRYPTFS),
    ("rdma", libc::NETLINK_RDMA),
    ("crypto", libc::NETLINK_CRYPTO),
];

/// The protocol names of `family`: the IP protocols for `inet` and `inet6`, the netlink
/// protocols for `netlink`, none for the others (numbers only).
fn protocols_of(family: i32) -> &'static [(&'static str, i32)] {
    match family {
        libc::AF_INET | libc::AF_INET6 => IP_PROTOCOLS,
        libc::AF_NETLINK => NETLINK_PROTOCOLS,
        _ => &[],
    }
}

const TYPES: &[(&str, i32)] = &[
    ("stream", libc::SOCK_STREAM),
    ("dgram", libc::SOCK_DGRAM),
    ("seqpacket", libc::SOCK_SEQPACKET),
    ("raw", libc::SOCK_RAW),
];

/// The errnos `[sockets] refuse` may name, by name: what `socket()` and `socketpair()` of a
/// family the list does not name fail with.
const REFUSALS: &[(&str, i32)] = &[("EAFNOSUPPORT", libc::EAFNOSUPPORT), ("EPERM", libc::EPERM)];

/// `[sockets] refuse` when the policy does not set it: what a kernel without the family says.
pub(crate) const DEFAULT_REFUSE: i32 = libc::EAFNOSUPPORT;

/// Reads `[sockets] refuse`: `EAFNOSUPPORT` or `EPERM`, as written (upper case).
pub(crate) fn parse_refuse(text: &str) -> Result<i32, PolicyErrorKind> {
    match REFUSALS.iter().find(|(n, _)| *n == text) {
        Some((_, errno)) => Ok(*errno),
        None => {
            let names: Vec<&'static str> = REFUSALS.iter().map(|(n, _)| *n).collect();
            Err(PolicyErrorKind::UnknownSocketsRefuse {
                found: text.to_owned(),
                suggestion: crate::error::suggest(&text.to_ascii_uppercase(), &names),
            })
        }
    }
}

/// The name `[sockets] refuse` writes `errno` with (one of [`parse_refuse`]'s).
pub(crate) fn refuse_name(errno: i32) -> &'static str {
    REFUSALS
        .iter()
        .find(|(_, e)| *e == errno)
        .map_or("EAFNOSUPPORT", |(n, _)| n)
}

/// The list used when a policy has no `[sockets] allow` key: unix sockets, TCP and UDP over
/// IPv4 and IPv6, and netlink route sockets, through which a program reads the interfaces,
/// addresses and routes (`getifaddrs`, `if_nameindex`, `ip addr`); the broker makes the
/// latter so that they can read and never change (rule N1).
pub(crate) fn default_list() -> Vec<SocketRule> {
    let rule = |family, sock_type, protocol| SocketRule {
        family: Some(family),
        sock_type,
        protocol,
    };
    vec![
        rule(libc::AF_UNIX, None, None),
        rule(libc::AF_INET, Some(libc::SOCK_STREAM), None),
        rule(libc::AF_INET, Some(libc::SOCK_DGRAM), None),
        rule(libc::AF_INET6, Some(libc::SOCK_STREAM), None),
        rule(libc::AF_INET6, Some(libc::SOCK_DGRAM), None),
        rule(
            libc::AF_NETLINK,
            Some(libc::SOCK_RAW),
            Some(libc::NETLINK_ROUTE),
        ),
        rule(
            libc::AF_NETLINK,
            Some(libc::SOCK_DGRAM),
            Some(libc::NETLINK_ROUTE),
        ),
    ]
}

/// Parses `FAMILY:TYPE[:PROTOCOL]`, or `*:*`.
pub(crate) fn parse(s: &str) -> Result<SocketRule, PolicyErrorKind> {
    if s == "*:*" {
        return Ok(SocketRule {
            family: None,
            sock_type: None,
            protocol: None,
        });
    }
    let Some((family, rest)) = s.split_once(':') else {
        return Err(PolicyErrorKind::BadSocketEntry(s.to_owned()));
    };
    let (sock_type, protocol) = match rest.split_once(':') {
        Some((t, p)) => (t, Some(p)),
        None => (rest, None),
    };
    let family_text = family;
    let family = match FAMILIES.iter().find(|(n, _)| *n == family) {
        Some((_, v)) => *v,
        None if family == "*" => return Err(PolicyErrorKind::BadSocketEntry(s.to_owned())),
        None if !family.is_empty() && family.bytes().all(|b| b.is_ascii_digit()) => family
            .parse::<u16>()
            .map(i32::from)
            .map_err(|_| PolicyErrorKind::UnknownFamily(family.to_owned()))?,
        None => return Err(PolicyErrorKind::UnknownFamily(family.to_owned())),
    };
    let sock_type = match sock_type {
        "*" => None,
        t => match TYPES.iter().find(|(n, _)| *n == t) {
            Some((_, v)) => Some(*v),
            None => return Err(PolicyErrorKind::UnknownSocketType(t.to_owned())),
        },
    };
    let protocol = match protocol {
        None => None,
        Some(p) => match protocols_of(family).iter().find(|(n, _)| *n == p) {
            Some((_, v)) => Some(*v),
            None if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
                p.parse::<u16>()
                    .map(i32::from)
                    .map_err(|_| unknown_protocol(family_text, family, p))?,
            ),
            None => return Err(unknown_protocol(family_text, family, p)),
        },
    };
    if protocol.is_some() && sock_type.is_none() {
        return Err(PolicyErrorKind::BadSocketEntry(s.to_owned()));
    }
    Ok(SocketRule {
        family: Some(family),
        sock_type,
        protocol,
    })
}

/// The error of a protocol `protocol` that `family` (written `family_text`) does not know.
fn unknown_protocol(family_text: &str, family: i32, protocol: &str) -> PolicyErrorKind {
    match family {
        libc::AF_INET | libc::AF_INET6 => PolicyErrorKind::UnknownProtocol(protocol.to_owned()),
        libc::AF_NETLINK => PolicyErrorKind::UnknownNetlinkProtocol(protocol.to_owned()),
        _ => PolicyErrorKind::UnnamedProtocol {
            family: family_text.to_owned(),
            protocol: protocol.to_owned(),
        },
    }
}

/// `FAMILY:TYPE[:PROTOCOL]` with names where there are names, so that it parses back.
impl fmt::Display for SocketRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(family) = self.family else {
            return f.write_str("*:*");
        };
        write_family(f, family)?;
        f.write_str(":")?;
        match self.sock_type {
            None => f.write_str("*")?,
            Some(t) => write_type(f, t)?,
        }
        match self.protocol {
            None => Ok(()),
            Some(p) => {
                f.write_str(":")?;
                write_protocol(f, family, p)
            }
        }
    }
}

fn write_family(f: &mut fmt::Formatter<'_>, family: i32) -> fmt::Result {
    match FAMILIES.iter().find(|(_, v)| *v == family) {
        Some((n, _)) => f.write_str(n),
        None => write!(f, "{family}"),
    }
}

fn write_type(f: &mut fmt::Formatter<'_>, sock_type: i32) -> fmt::Result {
    match TYPES.iter().find(|(_, v)| *v == sock_type) {
        Some((n, _)) => f.write_str(n),
        None => write!(f, "{sock_type}"),
    }
}

fn write_protocol(f: &mut fmt::Formatter<'_>, family: i32, protocol: i32) -> fmt::Result {
    match protocols_of(family).iter().find(|(_, v)| *v == protocol) {
        Some((n, _)) => f.write_str(n),
        None => write!(f, "{protocol}"),
    }
}

/// `SOCK_TYPE_MASK`: the type in a `socket()` type argument, without its flags.
pub const SOCK_TYPE_MASK: u64 = 0xf;

/// The highest address family the filter compares by value; every family above it is
/// refused with one comparison (`AF_MAX` is 46 on Linux 6.18).
pub const MAX_FAMILY: u64 = 63;

/// Which call [`crate::Policy::socket_refusal`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketCall {
    /// `socket(family, type, protocol)`.
    Socket,
    /// `socketpair(family, type, protocol, sv)`: unix sockets only in the kernel, where the
    /// protocol is always 0, so the list is not asked about protocols.
    Pair,
}

/// The errno (positive) that a `call` with these raw arguments fails with under the allow-list
/// `list` and the family errno `refuse`, or `None` when the list allows it. The arguments are
/// read as the seccomp filter compiled from the list compares them (`client/src/filter.rs`):
/// the family and the protocol on all 64 bits (a family above [`MAX_FAMILY`] or with high
/// bits set is a refused family, a protocol with high bits set a refused protocol), the type
/// by its low four bits. An unlisted family fails with `refuse`; an unlisted type or
/// protocol of a listed family with `EPERM`.
///
/// Where the kernel makes a socket other than the one the arguments name, the list must hold
/// for what it makes ([`alias_refusal`]).
pub(crate) fn socket_refusal(
    list: &[SocketRule],
    refuse: i32,
    call: SocketCall,
    family: u64,
    sock_type: u64,
    protocol: u64,
) -> Option<i32> {
    listed_refusal(list, refuse, call, family, sock_type, protocol)
        .or_else(|| alias_refusal(list, refuse, call, family, sock_type, protocol))
}

/// `SOCK_PACKET`, the type of the old packet interface: `socket(AF_INET, SOCK_PACKET, ...)` is
/// made an `AF_PACKET` socket by the kernel (`__sock_create`).
const SOCK_PACKET: u64 = 10;

/// The refusal of a socket whose arguments the list allows but which the kernel makes as
/// another (the filter notifies the same arguments, `client/src/filter.rs`):
///
/// - `(AF_INET, SOCK_PACKET)` is an `AF_PACKET` socket: refused with `refuse`, the errno of
///   an unlisted family, unless the list allows every type of `packet`;
/// - `(AF_INET or AF_INET6, SOCK_RAW, IPPROTO_RAW)` is a raw socket that writes its own IP
///   header (as `IP_HDRINCL`), with a destination in it that no broker reads: `EPERM` unless
///   an entry names protocol 255;
/// - `(AF_UNIX, SOCK_RAW)` is made a `SOCK_DGRAM` socket (`unix_create`), by `socketpair`
///   too: `EPERM` unless the list allows unix datagram sockets.
///
/// The type is compared under [`SOCK_TYPE_MASK`] and the protocol on its low 32 bits, as the
/// kernel reads them.
fn alias_refusal(
    list: &[SocketRule],
    refuse: i32,
    call: SocketCall,
    family: u64,
    sock_type: u64,
    protocol: u64,
) -> Option<i32> {
    if list.iter().any(|r| r.family.is_none()) {
        return None;
    }
    let of_family = |f: i32| list.iter().filter(move |r| r.family == Some(f));
    let any_type = |f: i32| of_family(f).any(|r| r.sock_type.is_none());
    let listed = |f: i32, ty: i32| of_family(f).any(|r| r.sock_type == Some(ty));
    let ty = sock_type & SOCK_TYPE_MASK;
    let inet = call == SocketCall::Socket
        && (family == libc::AF_INET as u64 || family == libc::AF_INET6 as u64);
    if inet && family == libc::AF_INET as u64 && ty == SOCK_PACKET && !any_type(libc::AF_PACKET) {
        return Some(refuse);
    }
    if inet
        && ty == libc::SOCK_RAW as u64
        && protocol & 0xffff_ffff == libc::IPPROTO_RAW as u64
        && !list.iter().any(|r| r.protocol == Some(libc::IPPROTO_RAW))
    {
        return Some(libc::EPERM);
    }
    if family == libc::AF_UNIX as u64
        && ty == libc::SOCK_RAW as u64
        && !any_type(libc::AF_UNIX)
        && !listed(libc::AF_UNIX, libc::SOCK_DGRAM)
    {
        return Some(libc::EPERM);
    }
    None
}

/// [`socket_refusal`] by the list's entries alone, as the arguments name the socket.
fn listed_refusal(
    list: &[SocketRule],
    refuse: i32,
    call: SocketCall,
    family: u64,
    sock_type: u64,
    protocol: u64,
) -> Option<i32> {
    if list.iter().any(|r| r.family.is_none()) {
        return None;
    }
    if family > MAX_FAMILY {
        return Some(refuse);
    }
    let of_family: Vec<&SocketRule> = list
        .iter()
        .filter(|r| r.family.map(|f| f as u64) == Some(family))
        .collect();
    if of_family.is_empty() {
        return Some(refuse);
    }
    if of_family.iter().any(|r| r.sock_type.is_none()) {
        return None;
    }
    let ty = sock_type & SOCK_TYPE_MASK;
    let of_type: Vec<&SocketRule> = of_family
        .into_iter()
        .filter(|r| r.sock_type.map(|t| t as u64) == Some(ty))
        .collect();
    if of_type.is_empty() {
        return Some(libc::EPERM);
    }
    if call == SocketCall::Pair {
        return None;
    }
    match allowed_protocols(family, ty, &of_type) {
        None => None,
        Some(allowed) if allowed.contains(&protocol) => None,
        Some(_) => Some(libc::EPERM),
    }
}

/// The protocols that entries `rules`, all of one family and type, allow: `None` for any.
/// In the IP families `stream` means TCP and `dgram` means UDP: an entry without a protocol
/// allows the type's default protocol, as its number or as 0 (the type's default), and any
/// other protocol of the type (MPTCP, SCTP, UDP-Lite, ICMP "ping" sockets...) is allowed only
/// where an entry names it. Elsewhere an entry without a protocol allows any.
pub fn allowed_protocols(
    family: u64,
    sock_type: u64,
    rules: &[&SocketRule],
) -> Option<std::collections::BTreeSet<u64>> {
    let inet = family == libc::AF_INET as u64 || family == libc::AF_INET6 as u64;
    let default = match sock_type as i32 {
        libc::SOCK_STREAM if inet => Some(libc::IPPROTO_TCP as u64),
        libc::SOCK_DGRAM if inet => Some(libc::IPPROTO_UDP as u64),
        _ => None,
    };
    let mut allowed = std::collections::BTreeSet::new();
    for r in rules {
        match (r.protocol, default) {
            (None, Some(d)) => {
                allowed.insert(0);
                allowed.insert(d);
            }
            (None, None) => return None,
            (Some(p), d) => {
                allowed.insert(p as u64);
                if d == Some(p as u64) {
                    allowed.insert(0);
                }
            }
        }
    }
    Some(allowed)
}

/// A `socket()` call's raw arguments as the audit names them, in the words of `[sockets]`
/// entries: `inet6:dgram:udplite`, `netlink:raw:route`, `packet:raw:768`. The flags of the
/// type are left out, the protocol too when it is 0 and has no name; a value the kernel
/// would not read as given (high bits set) is written as the number it is.
pub fn describe_socket(family: u64, sock_type: u64, protocol: u64) -> String {
    struct Call(u64, u64, u64);
    impl fmt::Display for Call {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let Call(family, sock_type, protocol) = *self;
            let family32 = i32::try_from(family).ok();
            match family32 {
                Some(n) => write_family(f, n)?,
                None => write!(f, "{family}")?,
            }
            f.write_str(":")?;
            write_type(f, (sock_type & SOCK_TYPE_MASK) as i32)?;
            let named = family32
                .is_some_and(|n| protocols_of(n).iter().any(|(_, v)| *v as u64 == protocol));
            if protocol != 0 || named {
                f.write_str(":")?;
                match (family32, i32::try_from(protocol)) {
                    (Some(n), Ok(p)) => write_protocol(f, n, p)?,
                    _ => write!(f, "{protocol}")?,
                }
            }
            Ok(())
        }
    }
    Call(family, sock_type, protocol).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_l2_names_numbers_and_wildcard() {
        assert_eq!(
            parse("inet6:dgram"),
            Ok(SocketRule {
                family: Some(libc::AF_INET6),
                sock_type: Some(libc::SOCK_DGRAM),
                protocol: None,
            })
        );
        assert_eq!(parse("vsock:*").unwrap().family, Some(libc::AF_VSOCK));
        assert_eq!(parse("38:raw").unwrap().family, Some(38));
        assert_eq!(parse("netlink:raw").unwrap().to_string(), "netlink:raw");
        assert_eq!(
            parse("packet:seqpacket").unwrap().to_string(),
            "packet:seqpacket"
        );
        assert_eq!(parse("38:*").unwrap().to_string(), "38:*");
    }

    /// L2: SCTP and MPTCP are other protocols of `inet:stream`, listed by name or number.
    #[test]
    fn s_l2_protocols_by_name_and_number() {
        let sctp = parse("inet:stream:sctp").unwrap();
        assert_eq!(sctp.protocol, Some(libc::IPPROTO_SCTP));
        assert_eq!(sctp.to_string(), "inet:stream:sctp");
        assert_eq!(
            parse("inet6:stream:262").unwrap().to_string(),
            "inet6:stream:mptcp"
        );
        assert_eq!(parse("inet:raw:200").unwrap().to_string(), "inet:raw:200");
        assert_eq!(
            parse("inet:stream:quic"),
            Err(PolicyErrorKind::UnknownProtocol("quic".into()))
        );
        assert_eq!(
            parse("inet:*:tcp"),
            Err(PolicyErrorKind::BadSocketEntry("inet:*:tcp".into()))
        );
        assert_eq!(
            parse("inet:stream:70000"),
            Err(PolicyErrorKind::UnknownProtocol("70000".into()))
        );
    }

    /// Netlink protocols by the kernel's names (`NETLINK_ROUTE` is `route`); the IP names
    /// are the IP families' only, and the netlink ones netlink's.
    #[test]
    fn s_l4_netlink_protocols_by_name() {
        let route = parse("netlink:raw:route").unwrap();
        assert_eq!(route.protocol, Some(libc::NETLINK_ROUTE));
        assert_eq!(route.to_string(), "netlink:raw:route");
        assert_eq!(
            parse("netlink:dgram:9").unwrap().to_string(),
            "netlink:dgram:audit"
        );
        assert_eq!(
            parse("netlink:raw:tcp"),
            Err(PolicyErrorKind::UnknownNetlinkProtocol("tcp".into()))
        );
        assert_eq!(
            parse("inet:raw:route"),
            Err(PolicyErrorKind::UnknownProtocol("route".into()))
        );
        assert_eq!(
            parse("vsock:stream:6").unwrap().to_string(),
            "vsock:stream:6"
        );
        assert_eq!(
            parse("40:stream:tcp"),
            Err(PolicyErrorKind::UnnamedProtocol {
                family: "40".into(),
                protocol: "tcp".into()
            })
        );
        assert_eq!(
            parse("netlink:raw:70000"),
            Err(PolicyErrorKind::UnknownNetlinkProtocol("70000".into()))
        );
    }

    /// `*:*` is every socket, and only written whole.
    #[test]
    fn every_socket_is_star_star() {
        let all = parse("*:*").unwrap();
        assert_eq!(all.family, None);
        assert_eq!(all.to_string(), "*:*");
        assert!(all.matches(libc::AF_PACKET, libc::SOCK_RAW));
        for bad in ["*:stream", "*:*:tcp", "*"] {
            assert_eq!(
                parse(bad),
                Err(PolicyErrorKind::BadSocketEntry(bad.into())),
                "{bad}"
            );
        }
    }

    fn list(entries: &[&str]) -> Vec<SocketRule> {
        entries.iter().map(|e| parse(e).unwrap()).collect()
    }

    /// L2, D1: what a refused call fails with, read as the filter reads the arguments.
    #[test]
    fn s_l2_socket_refusal_errnos() {
        let (inet, inet6, unix, netlink) = (2u64, 10u64, 1u64, 16u64);
        let (stream, dgram, raw) = (1u64, 2u64, 3u64);
        let l = list(&["unix:*", "inet:stream", "inet:dgram", "netlink:raw:route"]);
        let r = |family, ty, protocol| {
            socket_refusal(
                &l,
                libc::EAFNOSUPPORT,
                SocketCall::Socket,
                family,
                ty,
                protocol,
            )
        };
        assert_eq!(r(inet, stream, 0), None);
        assert_eq!(r(inet, stream | 0x80800, 6), None, "flags are not the type");
        assert_eq!(r(inet, dgram, 17), None);
        assert_eq!(
            r(inet, dgram, 136),
            Some(libc::EPERM),
            "UDP-Lite is not UDP"
        );
        assert_eq!(r(inet, stream, 262), Some(libc::EPERM), "MPTCP is not TCP");
        assert_eq!(r(inet, stream, 6 | 1 << 32), Some(libc::EPERM), "high bits");
        assert_eq!(r(inet, raw, 1), Some(libc::EPERM));
        assert_eq!(r(inet6, stream, 0), Some(libc::EAFNOSUPPORT));
        assert_eq!(r(inet | 1 << 32, stream, 0), Some(libc::EAFNOSUPPORT));
        assert_eq!(r(64, stream, 0), Some(libc::EAFNOSUPPORT));
        assert_eq!(r(unix, 5, 0), None);
        assert_eq!(r(netlink, raw, 0), None);
        assert_eq!(r(netlink, dgram, 0), Some(libc::EPERM));
        assert_eq!(r(netlink, raw, 9), Some(libc::EPERM), "audit is not route");
        let pair = socket_refusal(&l, libc::EPERM, SocketCall::Pair, inet6, stream, 0);
        assert_eq!(pair, Some(libc::EPERM));
        let pair = socket_refusal(&l, libc::EPERM, SocketCall::Pair, inet, dgram, 136);
        assert_eq!(pair, None, "socketpair is not asked about protocols");
        let all = list(&["*:*"]);
        for args in [(17, raw, 768), (1 << 40, 0, 0), (40, stream, 0)] {
            let got = socket_refusal(
                &all,
                libc::EPERM,
                SocketCall::Socket,
                args.0,
                args.1,
                args.2,
            );
            assert_eq!(got, None, "{args:?}");
        }
    }

    #[test]
    fn sockets_described_as_entries() {
        assert_eq!(describe_socket(10, 2, 136), "inet6:dgram:udplite");
        assert_eq!(describe_socket(2, 2 | 0x800, 0), "inet:dgram");
        assert_eq!(describe_socket(16, 3, 0), "netlink:raw:route");
        assert_eq!(describe_socket(17, 3, 768), "packet:raw:768");
        assert_eq!(describe_socket(45, 1, 0), "45:stream");
        assert_eq!(describe_socket(1 << 32 | 2, 1, 0), "4294967298:stream");
        assert_eq!(describe_socket(2, 1, 1 << 32 | 6), "inet:stream:4294967302");
    }

    #[test]
    fn s_l2_bad_entries() {
        assert_eq!(
            parse("inet"),
            Err(PolicyErrorKind::BadSocketEntry("inet".into()))
        );
        assert_eq!(
            parse("bluetooth:stream"),
            Err(PolicyErrorKind::UnknownFamily("bluetooth".into()))
        );
        assert_eq!(
            parse(":stream"),
            Err(PolicyErrorKind::UnknownFamily(String::new()))
        );
        assert_eq!(
            parse("99999:stream"),
            Err(PolicyErrorKind::UnknownFamily("99999".into()))
        );
        assert_eq!(
            parse("inet:rdm"),
            Err(PolicyErrorKind::UnknownSocketType("rdm".into()))
        );
        assert_eq!(
            parse("inet:"),
            Err(PolicyErrorKind::UnknownSocketType(String::new()))
        );
    }

    #[test]
    fn refuse_names_and_values() {
        assert_eq!(parse_refuse("EPERM"), Ok(libc::EPERM));
        assert_eq!(parse_refuse("EAFNOSUPPORT"), Ok(libc::EAFNOSUPPORT));
        assert_eq!(refuse_name(libc::EPERM), "EPERM");
        assert_eq!(refuse_name(DEFAULT_REFUSE), "EAFNOSUPPORT");
        assert_eq!(
            parse_refuse("eperm"),
            Err(PolicyErrorKind::UnknownSocketsRefuse {
                found: "eperm".into(),
                suggestion: Some("EPERM"),
            })
        );
        assert_eq!(
            parse_refuse("ECONNREFUSED"),
            Err(PolicyErrorKind::UnknownSocketsRefuse {
                found: "ECONNREFUSED".into(),
                suggestion: None,
            })
        );
    }

    #[test]
    fn s_l2_matches_ignores_type_flags() {
        let r = parse("inet:stream").unwrap();
        assert!(r.matches(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC
        ));
        assert!(!r.matches(libc::AF_INET, libc::SOCK_DGRAM));
        assert!(!r.matches(libc::AF_INET6, libc::SOCK_STREAM));
        let any = parse("unix:*").unwrap();
        assert!(any.matches(libc::AF_UNIX, libc::SOCK_SEQPACKET));
        assert!(!any.matches(libc::AF_INET, libc::SOCK_STREAM));
    }
}
