//! The `[sockets] allow` list (rule L2): which `socket(2)` calls the sandbox may make.

use std::fmt;

use crate::error::PolicyErrorKind;

/// One entry of the `socket()` allow-list: `FAMILY:TYPE[:PROTOCOL]`. `None` as the type
/// means any type; `None` as the protocol means the type's default one (TCP for
/// `inet:stream`, UDP for `inet:dgram`) in the IP families and any protocol elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRule {
    /// Address family (`AF_*`).
    pub family: i32,
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
        self.family == family
            && match self.sock_type {
                None => true,
                Some(t) => t == base,
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
const PROTOCOLS: &[(&str, i32)] = &[
    ("tcp", libc::IPPROTO_TCP),
    ("udp", libc::IPPROTO_UDP),
    ("sctp", libc::IPPROTO_SCTP),
    ("mptcp", libc::IPPROTO_MPTCP),
    ("udplite", libc::IPPROTO_UDPLITE),
    ("icmp", libc::IPPROTO_ICMP),
    ("icmpv6", libc::IPPROTO_ICMPV6),
];

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

/// The list used when a policy has no `[sockets] allow` key.
pub(crate) fn default_list() -> Vec<SocketRule> {
    let rule = |family, sock_type| SocketRule {
        family,
        sock_type,
        protocol: None,
    };
    vec![
        rule(libc::AF_UNIX, None),
        rule(libc::AF_INET, Some(libc::SOCK_STREAM)),
        rule(libc::AF_INET, Some(libc::SOCK_DGRAM)),
        rule(libc::AF_INET6, Some(libc::SOCK_STREAM)),
        rule(libc::AF_INET6, Some(libc::SOCK_DGRAM)),
    ]
}

/// Parses `FAMILY:TYPE[:PROTOCOL]`.
pub(crate) fn parse(s: &str) -> Result<SocketRule, PolicyErrorKind> {
    let Some((family, rest)) = s.split_once(':') else {
        return Err(PolicyErrorKind::BadSocketEntry(s.to_owned()));
    };
    let (sock_type, protocol) = match rest.split_once(':') {
        Some((t, p)) => (t, Some(p)),
        None => (rest, None),
    };
    let family = match FAMILIES.iter().find(|(n, _)| *n == family) {
        Some((_, v)) => *v,
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
        Some(p) => match PROTOCOLS.iter().find(|(n, _)| *n == p) {
            Some((_, v)) => Some(*v),
            None if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
                p.parse::<u16>()
                    .map(i32::from)
                    .map_err(|_| PolicyErrorKind::UnknownProtocol(p.to_owned()))?,
            ),
            None => return Err(PolicyErrorKind::UnknownProtocol(p.to_owned())),
        },
    };
    if protocol.is_some() && sock_type.is_none() {
        return Err(PolicyErrorKind::BadSocketEntry(s.to_owned()));
    }
    Ok(SocketRule {
        family,
        sock_type,
        protocol,
    })
}

/// `FAMILY:TYPE` with names where there are names, so that it parses back.
impl fmt::Display for SocketRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match FAMILIES.iter().find(|(_, v)| *v == self.family) {
            Some((n, _)) => f.write_str(n)?,
            None => write!(f, "{}", self.family)?,
        }
        f.write_str(":")?;
        match self.sock_type {
            None => f.write_str("*")?,
            Some(t) => match TYPES.iter().find(|(_, v)| *v == t) {
                Some((n, _)) => f.write_str(n)?,
                None => write!(f, "{t}")?,
            },
        }
        match self.protocol {
            None => Ok(()),
            Some(p) => match PROTOCOLS.iter().find(|(_, v)| *v == p) {
                Some((n, _)) => write!(f, ":{n}"),
                None => write!(f, ":{p}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_l2_names_numbers_and_wildcard() {
        assert_eq!(
            parse("inet6:dgram"),
            Ok(SocketRule {
                family: libc::AF_INET6,
                sock_type: Some(libc::SOCK_DGRAM),
                protocol: None,
            })
        );
        assert_eq!(parse("vsock:*").unwrap().family, libc::AF_VSOCK);
        assert_eq!(parse("38:raw").unwrap().family, 38);
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
