//! The `[sockets] allow` list (rule L2): which `socket(2)` calls the sandbox may make.

use std::fmt;

use crate::error::PolicyErrorKind;

/// One entry of the `socket()` allow-list. `None` as the type means any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRule {
    /// Address family (`AF_*`).
    pub family: i32,
    /// Socket type (`SOCK_*`, without `SOCK_NONBLOCK` / `SOCK_CLOEXEC`), or `None` for any.
    pub sock_type: Option<i32>,
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

const TYPES: &[(&str, i32)] = &[
    ("stream", libc::SOCK_STREAM),
    ("dgram", libc::SOCK_DGRAM),
    ("seqpacket", libc::SOCK_SEQPACKET),
    ("raw", libc::SOCK_RAW),
];

/// The list used when a policy has no `[sockets]` table.
pub(crate) fn default_list() -> Vec<SocketRule> {
    let rule = |family, sock_type| SocketRule { family, sock_type };
    vec![
        rule(libc::AF_UNIX, None),
        rule(libc::AF_INET, Some(libc::SOCK_STREAM)),
        rule(libc::AF_INET, Some(libc::SOCK_DGRAM)),
        rule(libc::AF_INET6, Some(libc::SOCK_STREAM)),
        rule(libc::AF_INET6, Some(libc::SOCK_DGRAM)),
    ]
}

/// Parses `FAMILY:TYPE`.
pub(crate) fn parse(s: &str) -> Result<SocketRule, PolicyErrorKind> {
    let Some((family, sock_type)) = s.split_once(':') else {
        return Err(PolicyErrorKind::BadSocketEntry(s.to_owned()));
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
    Ok(SocketRule { family, sock_type })
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
            None => f.write_str("*"),
            Some(t) => match TYPES.iter().find(|(_, v)| *v == t) {
                Some((n, _)) => f.write_str(n),
                None => write!(f, "{t}"),
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
                sock_type: Some(libc::SOCK_DGRAM)
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
