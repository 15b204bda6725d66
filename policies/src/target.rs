//! What the broker asks about: a [`Request`] naming an operation and its destination.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One decision to make: an operation on a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The intercepted operation.
    pub op: Op,
    /// Where it goes, exactly as the program gave it (the evaluator normalises it).
    pub target: Target,
}

/// The intercepted operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `connect(2)`, and TCP Fast Open (a connect made by `sendto`/`sendmsg`).
    Connect,
    /// A datagram sent to a destination: `sendto`, `sendmsg`, one entry of `sendmmsg`.
    Send,
    /// `bind(2)`, and the implicit bind of `listen` on an unbound socket (the wildcard
    /// address, port 0).
    Bind,
}

/// The transport of an inet socket, from its type and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A stream socket (TCP).
    Tcp,
    /// A datagram socket (UDP).
    Udp,
    /// Anything else (SCTP, raw, ...); only `any://` endpoints match it.
    Other,
}

/// A destination address, decoded from the `sockaddr` the program passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `AF_INET` / `AF_INET6`: the destination exactly as the program gave it.
    Inet {
        /// Transport of the socket.
        proto: Proto,
        /// Destination address and port.
        addr: SocketAddr,
    },
    /// A filesystem unix socket: the path as resolved inside the sandbox's root (absolute).
    UnixPath(PathBuf),
    /// An abstract unix socket: the name without the leading NUL.
    UnixAbstract(Vec<u8>),
    /// `AF_UNSPEC`, which no call reaches anyone with: a connect dissolves the socket's
    /// association, and the kernel reads it on a send as another family's address or as no
    /// destination at all, which the broker decodes before it asks. The evaluator refuses it.
    Unspec,
    /// Any other address family, by number.
    OtherFamily(i32),
}

impl Target {
    /// The form the policy is matched against, also the one to audit.
    ///
    /// - IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes the IPv4 address it is (rule N2): the
    ///   kernel sends to it over IPv4.
    /// - The unspecified address stays what it is. As a destination the kernel sends it to
    ///   the socket's own source address (loopback only when the socket has none), which
    ///   the broker reads from the socket and decides on instead; the evaluator refuses an
    ///   unspecified destination that reaches it.
    /// - Unix paths lose empty and `.` components and any trailing `/`. `..` is kept: the
    ///   broker hands over resolved paths, and the evaluator refuses one that still has `..`.
    ///
    /// The port, proto and (for IPv6 that stays IPv6) flow info and scope id are kept.
    pub fn canonical(&self) -> Target {
        match self {
            Target::Inet { proto, addr } => Target::Inet {
                proto: *proto,
                addr: canonical_addr(*addr),
            },
            Target::UnixPath(p) => Target::UnixPath(canonical_path(p)),
            other => other.clone(),
        }
    }

    /// An inet target as a policy endpoint that covers it and nothing else, for an entry
    /// written on an operator's behalf: `tcp://127.0.0.1:8080`, `udp://[::1]:53`. `None` for
    /// the other kinds of target (unix paths: see [`crate::escape_unix_path`]).
    ///
    /// The [`Display`](fmt::Display) form is not always endpoint syntax: it writes another
    /// transport `other://` and keeps an IPv6 scope (`%3`). Here another transport is
    /// `any://`, the only endpoint that covers it (and so TCP and UDP to the same address and
    /// port as well); the scope is left out, as entries cannot name one and matching ignores
    /// it; an IPv4-mapped address is written as the IPv4 address it is.
    ///
    /// Call it on the form the evaluator matches: [`Target::canonical`] for a connect or a
    /// send, the target as given for a bind. A bind's unspecified address stays `0.0.0.0` or
    /// `[::]`, which only `bind` entries take.
    ///
    /// ```
    /// use netjail_policy::{Proto, Target};
    ///
    /// let t = Target::Inet { proto: Proto::Udp, addr: "[::ffff:10.0.0.1]:53".parse().unwrap() };
    /// assert_eq!(t.canonical().endpoint_string().as_deref(), Some("udp://10.0.0.1:53"));
    /// let t = Target::Inet { proto: Proto::Other, addr: "[fe80::1%2]:80".parse().unwrap() };
    /// assert_eq!(t.endpoint_string().as_deref(), Some("any://[fe80::1]:80"));
    /// ```
    pub fn endpoint_string(&self) -> Option<String> {
        let Target::Inet { proto, addr } = self else {
            return None;
        };
        let proto = match proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Other => "any",
        };
        let port = addr.port();
        Some(match canonical_bind_addr(*addr).ip() {
            IpAddr::V4(v4) => format!("{proto}://{v4}:{port}"),
            IpAddr::V6(v6) => format!("{proto}://[{v6}]:{port}"),
        })
    }
}

/// The form a bind address is matched in: an IPv4-mapped IPv6 address becomes the IPv4
/// address it is, but the unspecified address stays the wildcard it means for a bind.
pub(crate) fn canonical_bind_addr(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    canonical_bind_addr(addr)
}

/// The IPv4 address an IPv6 destination carries by a well-known translation, which a
/// `[[deny]]` entry of that IPv4 address also covers:
///
/// - the NAT64 well-known prefix `64:ff9b::/96` (RFC 6052), which a NAT64 gateway
///   translates to the IPv4 address in its last 32 bits;
/// - IPv4-compatible addresses `::a.b.c.d` (RFC 4291, deprecated; not `::` and `::1`),
///   which a `sit` tunnel sends to `a.b.c.d`;
/// - 6to4 `2002:AABB:CCDD::/48` (RFC 3056), whose relay is `AA.BB.CC.DD`.
///
/// Network-specific NAT64 prefixes (`64:ff9b:1::/48` and any other) carry the address at
/// places only the network knows, so they are not recognised: a policy for such a network
/// denies that prefix by its IPv6 form. IPv4-mapped addresses are not listed here: they are
/// IPv4 destinations outright ([`Target::canonical`]).
///
/// ```
/// use netjail_policy::embedded_ipv4;
///
/// assert_eq!(embedded_ipv4("64:ff9b::a9fe:a9fe".parse().unwrap()), Some("169.254.169.254".parse().unwrap()));
/// assert_eq!(embedded_ipv4("::1".parse().unwrap()), None);
/// ```
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last);
    }
    if s[..6] == [0; 6] && u32::from(last) > 1 {
        return Some(last);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The IP address a canonical target is matched as.
#[cfg(test)]
pub(crate) fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    canonical_addr(SocketAddr::new(ip, 0)).ip()
}

fn canonical_path(p: &Path) -> PathBuf {
    let bytes = p.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return p.to_path_buf();
    }
    let mut out = Vec::with_capacity(bytes.len());
    for comp in bytes.split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Other => "other",
        })
    }
}

/// `tcp://127.0.0.1:80`, `udp://[::1]:53`, `unix:/run/x.sock`, `unix:@name`, `unspec`,
/// `family:38`. Bytes that are not printable UTF-8 are written `\xNN`, a backslash `\\`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Inet { proto, addr } => write!(f, "{proto}://{addr}"),
            Target::UnixPath(p) => {
                f.write_str("unix:")?;
                write_escaped(f, p.as_os_str().as_bytes())
            }
            Target::UnixAbstract(name) => {
                f.write_str("unix:@")?;
                write_escaped(f, name)
            }
            Target::Unspec => f.write_str("unspec"),
            Target::OtherFamily(n) => write!(f, "family:{n}"),
        }
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "\\x{b:02x}")?;
                }
            } else {
                write!(f, "{c}")?;
            }
        }
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(addr: &str) -> Target {
        Target::Inet {
            proto: Proto::Tcp,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn s_n2_mapped_v6_is_canonically_v4() {
        assert_eq!(
            inet("[::ffff:10.1.2.3]:80").canonical(),
            inet("10.1.2.3:80")
        );
        assert_eq!(
            inet("[::ffff:127.0.0.1]:80").canonical(),
            inet("127.0.0.1:80")
        );
    }

    #[test]
    fn unspecified_destinations_stay_unspecified() {
        assert_eq!(inet("0.0.0.0:80").canonical(), inet("0.0.0.0:80"));
        assert_eq!(inet("[::]:80").canonical(), inet("[::]:80"));
        assert_eq!(inet("[::ffff:0.0.0.0]:80").canonical(), inet("0.0.0.0:80"));
    }

    #[test]
    fn canonical_keeps_v6_scope() {
        assert_eq!(inet("[fe80::1%3]:80").canonical(), inet("[fe80::1%3]:80"));
        assert_eq!(inet("[::%3]:80").canonical(), inet("[::%3]:80"));
    }

    #[test]
    fn l11_embedded_ipv4_forms() {
        let e = |s: &str| embedded_ipv4(s.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(e("64:ff9b::7f00:1").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            e("64:ff9b::169.254.169.254").as_deref(),
            Some("169.254.169.254")
        );
        assert_eq!(e("::127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(e("::0.0.0.2").as_deref(), Some("0.0.0.2"));
        assert_eq!(e("2002:a9fe:a9fe::1").as_deref(), Some("169.254.169.254"));
        for none in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "64:ff9b:1::7f00:1",
            "fe80::1",
            "2001:db8::1",
        ] {
            assert_eq!(e(none), None, "{none}");
        }
    }

    #[test]
    fn canonical_unix_path_drops_empty_and_dot_components() {
        let t = Target::UnixPath("//run/./user//1000/bus/".into()).canonical();
        assert_eq!(t, Target::UnixPath("/run/user/1000/bus".into()));
        let t = Target::UnixPath("/a/../b".into()).canonical();
        assert_eq!(t, Target::UnixPath("/a/../b".into()));
        assert_eq!(
            Target::UnixPath("/".into()).canonical(),
            Target::UnixPath("/".into())
        );
        assert_eq!(
            Target::UnixPath("rel/x".into()).canonical(),
            Target::UnixPath("rel/x".into())
        );
    }

    #[test]
    fn endpoint_strings() {
        let other = |addr: &str| Target::Inet {
            proto: Proto::Other,
            addr: addr.parse().unwrap(),
        };
        for (t, want) in [
            (inet("127.0.0.1:8080"), "tcp://127.0.0.1:8080"),
            (inet("[::1]:53"), "tcp://[::1]:53"),
            (inet("[::ffff:10.1.2.3]:80"), "tcp://10.1.2.3:80"),
            (inet("[fe80::1%3]:80"), "tcp://[fe80::1]:80"),
            (inet("0.0.0.0:0"), "tcp://0.0.0.0:0"),
            (other("10.0.0.1:132"), "any://10.0.0.1:132"),
        ] {
            assert_eq!(t.endpoint_string().as_deref(), Some(want), "{t}");
        }
        // Display is endpoint syntax for TCP and UDP without a scope, but not otherwise.
        assert_eq!(inet("127.0.0.1:8080").to_string(), "tcp://127.0.0.1:8080");
        assert_eq!(other("10.0.0.1:1").to_string(), "other://10.0.0.1:1");
        assert_eq!(inet("[fe80::1%3]:80").to_string(), "tcp://[fe80::1%3]:80");
        assert_eq!(Target::UnixPath("/x".into()).endpoint_string(), None);
        assert_eq!(Target::Unspec.endpoint_string(), None);
    }

    #[test]
    fn display_forms() {
        assert_eq!(inet("127.0.0.1:80").to_string(), "tcp://127.0.0.1:80");
        let udp = Target::Inet {
            proto: Proto::Udp,
            addr: "[::1]:53".parse().unwrap(),
        };
        assert_eq!(udp.to_string(), "udp://[::1]:53");
        assert_eq!(
            Target::UnixPath("/run/x.sock".into()).to_string(),
            "unix:/run/x.sock"
        );
        assert_eq!(
            Target::UnixAbstract(b"abstract".to_vec()).to_string(),
            "unix:@abstract"
        );
        assert_eq!(
            Target::UnixAbstract(b"a\0b\\\xff".to_vec()).to_string(),
            "unix:@a\\x00b\\\\\\xff"
        );
        assert_eq!(Target::OtherFamily(38).to_string(), "family:38");
        assert_eq!(Target::Unspec.to_string(), "unspec");
    }
}
