//! The kernel's reading of an address (invariant 9). Given what the address is for (a
//! connect, a bind, the destination of a send, TCP Fast Open), the socket it is given to
//! (family, type, protocol, and its current state as read from the socket itself) and the
//! bytes the program gave, [`read`] says where the kernel will connect, send or bind, or the
//! errno it will answer, or [`Reading::Refused`] for a form this table does not classify.
//! Every call that takes an address reads it here, and nowhere else.
//!
//! The kernel's own code is the specification, row by row:
//!
//! - TCP and MPTCP: `__inet_stream_connect` (a 2-byte length, `AF_UNSPEC` disconnects),
//!   `tcp_v4_connect` and `tcp_v6_connect` (lengths, families, `::`, multicast, IPv4-mapped
//!   destinations connected as IPv4), `tcp_sendmsg_fastopen` (Fast Open refuses `AF_UNSPEC`);
//!   a send without Fast Open does not read the address at all;
//! - UDP and UDP-Lite: `inet_dgram_connect`, `__ip4_datagram_connect`,
//!   `__ip6_datagram_connect`, `udp_sendmsg` (which reads `AF_UNSPEC` as `AF_INET`) and
//!   `udpv6_sendmsg` (which reads `AF_UNSPEC` as no destination, and an `AF_INET` address as
//!   IPv4 unless the socket is IPv6-only);
//! - binds: `__inet_bind` (`AF_UNSPEC` only with `INADDR_ANY`) and `__inet6_bind`;
//! - unix sockets: `unix_validate_addr` (a length of 3 to 110 bytes, `AF_UNIX`),
//!   `unix_bind`'s autobind, `unix_dgram_connect`'s `AF_UNSPEC`;
//! - a zero IPv4 destination: the route lookup (`ip_route_output_key_hash_rcu`) sends it to
//!   the socket's source address, and to loopback only when the socket has none; `::` is
//!   `::1`, or `127.0.0.1` when the socket's source is IPv4-mapped.
//!
//! Other IP protocols (raw, ping, SCTP...) take only a plain address of the socket's own
//! family: their unspecified, mapped and `AF_UNSPEC` forms are refused rather than guessed.
//!
//! An IP reading carries the `sockaddr` the broker passes to the kernel: the program's bytes
//! with the address replaced by the endpoint decided where the kernel would have resolved
//! one (`0.0.0.0`, `::`, `AF_UNSPEC` read as `AF_INET`). So the kernel reaches exactly what
//! was decided, even where this table's view of the socket and the kernel's differ.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use netjail_policy::{Decision, Proto, Target, Verdict};

use crate::sys::SocketKind;

/// `sizeof(struct sockaddr_in)`.
const SIN_LEN: usize = 16;
/// `SIN6_LEN_RFC2133`: a `sockaddr_in6` without its scope id.
const SIN6_LEN_RFC2133: usize = 24;
/// `sizeof(struct sockaddr_in6)`.
const SIN6_LEN: usize = 28;
/// `sizeof(struct sockaddr_un)`.
const SUN_LEN: usize = 110;
/// `offsetof(struct sockaddr_un, sun_path)`, also the length of the family field.
const FAMILY_LEN: usize = 2;

/// What an address is given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `connect`.
    Connect,
    /// `bind`.
    Bind,
    /// The destination of `sendto`, `sendmsg`, one `sendmmsg` entry.
    Send,
    /// A send with `MSG_FASTOPEN` on a stream socket: a connect.
    FastOpen,
}

/// What the table needs of a socket's state, asked only where a reading depends on it. The
/// broker answers from its copy of the socket (each answer costs a system call); tests and
/// the fuzz targets give a [`Known`] state.
pub trait SocketState {
    /// The local address the socket will have when the call is performed: its own
    /// (`getsockname`; port 0 when unbound), or the jail address the broker binds it to
    /// first. `None` when it cannot be told.
    fn local(&mut self) -> Option<SocketAddr>;
    /// `IPV6_V6ONLY`.
    fn v6only(&mut self) -> bool;
    /// The interface a zero destination is routed by when the socket has no source address:
    /// `SO_BINDTOIFINDEX`, and with `unicast` also `IP_UNICAST_IF` / `IPV6_UNICAST_IF` (0:
    /// none).
    fn interface(&mut self, unicast: bool) -> u32;
}

/// A state given outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Known {
    /// See [`SocketState::local`].
    pub local: Option<SocketAddr>,
    /// See [`SocketState::v6only`].
    pub v6only: bool,
    /// `SO_BINDTOIFINDEX`.
    pub bound_interface: u32,
    /// `IP_UNICAST_IF` / `IPV6_UNICAST_IF`.
    pub unicast_interface: u32,
}

impl SocketState for Known {
    fn local(&mut self) -> Option<SocketAddr> {
        self.local
    }

    fn v6only(&mut self) -> bool {
        self.v6only
    }

    fn interface(&mut self, unicast: bool) -> u32 {
        match (self.bound_interface, unicast) {
            (0, true) => self.unicast_interface,
            (bound, _) => bound,
        }
    }
}

/// The kernel's reading of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The kernel connects or sends to `endpoint`: an IPv4 endpoint for an IPv4-mapped
    /// destination, which the kernel routes as IPv4. `sockaddr` names exactly that endpoint
    /// in the form the program chose (family field, length, flow info and scope id kept).
    Ip {
        /// Where the call goes.
        endpoint: SocketAddr,
        /// What the broker passes to the kernel.
        sockaddr: Vec<u8>,
    },
    /// A bind to `addr`: the wildcard stays the wildcard; an IPv4-mapped address is the IPv4
    /// address it is.
    Local {
        /// What the socket is bound to.
        addr: SocketAddr,
        /// What the broker passes to the kernel.
        sockaddr: Vec<u8>,
    },
    /// A filesystem unix socket, by the path as given.
    UnixPath(PathBuf),
    /// An abstract unix socket: every byte of the name the length covers.
    UnixAbstract(Vec<u8>),
    /// `bind` of a unix socket to a name the kernel picks.
    UnixAutobind,
    /// A send with no destination: the kernel sends to the socket's peer, or fails when it
    /// has none. The bytes (if any) are passed as given; the kernel reads them as nothing.
    Peer,
    /// A send whose address the kernel does not read (a stream socket without Fast Open).
    Ignored,
    /// `connect(AF_UNSPEC)`: the socket's association is dissolved; nothing is reached.
    Disconnect,
    /// The address of a socket of another family (netlink, vsock...), by the socket's
    /// family: decided by the policy's default (rule L4).
    OtherFamily(i32),
    /// What the kernel answers before anything is reached.
    Errno(i32),
    /// A form the table does not classify: refused.
    Refused(&'static str),
}

impl Reading {
    /// The policy's target of an IP or unix reading, `None` for the others.
    pub fn target(&self, proto: Proto) -> Option<Target> {
        Some(match self {
            Reading::Ip { endpoint, .. } => Target::Inet {
                proto,
                addr: *endpoint,
            },
            Reading::Local { addr, .. } => Target::Inet { proto, addr: *addr },
            Reading::UnixPath(p) => Target::UnixPath(p.clone()),
            Reading::UnixAbstract(n) => Target::UnixAbstract(n.clone()),
            Reading::OtherFamily(f) => Target::OtherFamily(*f),
            _ => return None,
        })
    }
}

/// The rows of the table: which kernel code reads a socket's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    /// TCP and MPTCP.
    Tcp,
    /// UDP and UDP-Lite.
    Udp,
    /// Any other protocol of `AF_INET` or `AF_INET6`.
    OtherIp,
    /// `AF_UNIX` stream and seqpacket sockets (connection-oriented).
    UnixConnected,
    /// `AF_UNIX` datagram sockets.
    UnixDgram,
    /// Any other family.
    Other,
}

/// Any socket type or protocol.
const ANY: i32 = -1;

/// `(family, type, protocols, row)`: the first row that matches a socket reads its
/// addresses. `ANY` matches every type or protocol.
const ROWS: &[(i32, i32, &[i32], Row)] = &[
    (libc::AF_INET, libc::SOCK_STREAM, TCP_PROTOCOLS, Row::Tcp),
    (libc::AF_INET6, libc::SOCK_STREAM, TCP_PROTOCOLS, Row::Tcp),
    (libc::AF_INET, libc::SOCK_DGRAM, UDP_PROTOCOLS, Row::Udp),
    (libc::AF_INET6, libc::SOCK_DGRAM, UDP_PROTOCOLS, Row::Udp),
    (libc::AF_INET, ANY, &[ANY], Row::OtherIp),
    (libc::AF_INET6, ANY, &[ANY], Row::OtherIp),
    (libc::AF_UNIX, libc::SOCK_STREAM, &[ANY], Row::UnixConnected),
    (
        libc::AF_UNIX,
        libc::SOCK_SEQPACKET,
        &[ANY],
        Row::UnixConnected,
    ),
    (libc::AF_UNIX, libc::SOCK_DGRAM, &[ANY], Row::UnixDgram),
];
const TCP_PROTOCOLS: &[i32] = &[0, libc::IPPROTO_TCP, libc::IPPROTO_MPTCP];
const UDP_PROTOCOLS: &[i32] = &[0, libc::IPPROTO_UDP, libc::IPPROTO_UDPLITE];

fn row(kind: SocketKind) -> Row {
    ROWS.iter()
        .find(|(family, ty, protocols, _)| {
            *family == kind.family
                && (*ty == ANY || *ty == kind.sock_type)
                && protocols.iter().any(|p| *p == ANY || *p == kind.protocol)
        })
        .map_or(Row::Other, |r| r.3)
}

/// Whether the socket's transport is UDP or UDP-Lite (the sockets a failed in-kernel send
/// autobinds, and whose `connect(AF_UNSPEC)` releases an unlocked port).
pub(crate) fn is_udp(kind: SocketKind) -> bool {
    row(kind) == Row::Udp
}

/// Reads `name` (the address bytes, `None` for a send with no address pointer) given for
/// `usage` to a socket of `kind` whose state `state` tells. See the module documentation.
pub fn read(
    usage: Use,
    kind: SocketKind,
    state: &mut dyn SocketState,
    name: Option<&[u8]>,
) -> Reading {
    let v6 = kind.family == libc::AF_INET6;
    match (row(kind), usage) {
        (Row::Tcp | Row::Udp | Row::OtherIp, Use::Bind) => match name {
            Some(b) => ip_bind(v6, b),
            None => Reading::Errno(libc::EINVAL),
        },
        (Row::Tcp, Use::Connect) => tcp_connect(v6, state, name, false),
        (Row::Tcp, Use::FastOpen) => match name {
            None => Reading::Peer,
            some => tcp_connect(v6, state, some, true),
        },
        (Row::Tcp | Row::UnixConnected, Use::Send) | (Row::UnixConnected, Use::FastOpen) => {
            match name {
                None => Reading::Peer,
                Some(_) => Reading::Ignored,
            }
        }
        (Row::Udp, Use::Connect) => match name {
            Some(b) if v6 => udp6_connect(state, b),
            Some(b) => udp4_connect(state, b),
            None => Reading::Errno(libc::EINVAL),
        },
        (Row::Udp, Use::Send | Use::FastOpen) => match name {
            None => Reading::Peer,
            Some(b) if v6 => udp6_send(state, b),
            Some(b) => udp4_send(state, b),
        },
        (Row::OtherIp, _) => other_ip(usage, kind, name),
        (Row::UnixConnected, Use::Connect) => match name {
            Some(b) => unix_name(b),
            None => Reading::Errno(libc::EINVAL),
        },
        (Row::UnixDgram, Use::Connect) => match name {
            Some(b) if b.len() < FAMILY_LEN => Reading::Errno(libc::EINVAL),
            Some(b) if family(b) == libc::AF_UNSPEC => Reading::Disconnect,
            Some(b) => unix_name(b),
            None => Reading::Errno(libc::EINVAL),
        },
        (Row::UnixDgram, Use::Send | Use::FastOpen) => match name {
            None | Some([]) => Reading::Peer,
            Some(b) => unix_name(b),
        },
        (Row::UnixConnected | Row::UnixDgram, Use::Bind) => match name {
            Some(b) if b.len() == FAMILY_LEN && family(b) == libc::AF_UNIX => Reading::UnixAutobind,
            Some(b) => unix_name(b),
            None => Reading::Errno(libc::EINVAL),
        },
        (Row::Other, _) => match name {
            None => Reading::Peer,
            Some(_) => Reading::OtherFamily(kind.family),
        },
    }
}

/// The family field; `name` is at least [`FAMILY_LEN`] long.
fn family(name: &[u8]) -> i32 {
    i32::from(u16::from_ne_bytes([name[0], name[1]]))
}

/// Port and address of a `sockaddr_in` at least [`SIN_LEN`] long.
fn v4_parts(b: &[u8]) -> (u16, Ipv4Addr) {
    (
        u16::from_be_bytes([b[2], b[3]]),
        Ipv4Addr::new(b[4], b[5], b[6], b[7]),
    )
}

/// A `sockaddr_in6` at least [`SIN6_LEN_RFC2133`] long, as the kernel reads it (the scope id
/// only when the length covers it).
fn v6_parts(b: &[u8]) -> SocketAddrV6 {
    let port = u16::from_be_bytes([b[2], b[3]]);
    let flowinfo = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[8..24]);
    let scope = if b.len() >= SIN6_LEN {
        u32::from_ne_bytes([b[24], b[25], b[26], b[27]])
    } else {
        0
    };
    SocketAddrV6::new(Ipv6Addr::from(octets), port, flowinfo, scope)
}

/// `name` as an `AF_INET` address of `ip`, its other bytes kept.
fn with_v4(name: &[u8], ip: Ipv4Addr) -> Vec<u8> {
    let mut out = name.to_vec();
    out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    out[4..8].copy_from_slice(&ip.octets());
    out
}

/// `name` (an `AF_INET6` address) naming `ip`, its other bytes kept.
fn with_v6(name: &[u8], ip: Ipv6Addr) -> Vec<u8> {
    let mut out = name.to_vec();
    out[8..24].copy_from_slice(&ip.octets());
    out
}

/// Whether the kernel needs an interface for `ip` (`__ipv6_addr_needs_scope_id`): link-local
/// unicast, and interface- and link-local multicast. A scope id given with such an address
/// picks the interface.
pub(crate) fn needs_scope(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let scoped_multicast = first & 0xff00 == 0xff00 && matches!(first & 0x000f, 1 | 2);
    link_local || scoped_multicast
}

/// The IPv4 source address the socket has before routing (`inet_saddr`): its bound address,
/// none for a multicast or broadcast one (the kernel then uses the device's); on an IPv6
/// socket the IPv4 address of an IPv4-mapped one, and none for any other: a bind to a plain
/// IPv6 address makes the socket IPv6-only, and an IPv6 connect sets no IPv4 source.
fn v4_source(state: &mut dyn SocketState) -> Result<Ipv4Addr, Reading> {
    let ip = match state.local() {
        None => return Err(Reading::Refused("unknown-source")),
        Some(SocketAddr::V4(a)) => *a.ip(),
        Some(SocketAddr::V6(a)) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    Ok(if ip.is_multicast() || ip.is_broadcast() {
        Ipv4Addr::UNSPECIFIED
    } else {
        ip
    })
}

/// Where the kernel sends a zero IPv4 destination: to the socket's source address, to
/// loopback when it has none; with an interface and no source, to an address of that
/// interface, which this table does not classify.
fn zero_v4(state: &mut dyn SocketState, unicast: bool) -> Result<Ipv4Addr, Reading> {
    let source = v4_source(state)?;
    if !source.is_unspecified() {
        return Ok(source);
    }
    if state.interface(unicast) != 0 {
        return Err(Reading::Refused("interface-bound-source"));
    }
    Ok(Ipv4Addr::LOCALHOST)
}

/// `ip`, or for `0.0.0.0` where the kernel sends it.
fn resolve_v4(
    ip: Ipv4Addr,
    state: &mut dyn SocketState,
    unicast: bool,
) -> Result<Ipv4Addr, Reading> {
    if ip.is_unspecified() {
        zero_v4(state, unicast)
    } else {
        Ok(ip)
    }
}

/// Where the kernel sends `::`: `::1`, or `::ffff:127.0.0.1` from a socket whose source is
/// IPv4-mapped.
fn resolve_any_v6(state: &mut dyn SocketState) -> Result<Ipv6Addr, Reading> {
    match state.local() {
        None => Err(Reading::Refused("unknown-source")),
        Some(SocketAddr::V6(a)) if a.ip().to_ipv4_mapped().is_some() => {
            Ok(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
        }
        Some(_) => Ok(Ipv6Addr::LOCALHOST),
    }
}

/// Unwraps a step of a reader: `Ok` goes on, `Err` is the reading.
macro_rules! step {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reading) => return reading,
        }
    };
}

/// An IPv4 destination `ip:port` (from an `AF_INET` or `AF_UNSPEC` `name`), resolved.
fn v4_endpoint(name: &[u8], state: &mut dyn SocketState, unicast: bool) -> Reading {
    let (port, ip) = v4_parts(name);
    let ip = step!(resolve_v4(ip, state, unicast));
    Reading::Ip {
        endpoint: SocketAddr::V4(SocketAddrV4::new(ip, port)),
        sockaddr: with_v4(name, ip),
    }
}

/// An `AF_INET6` destination at least [`SIN6_LEN_RFC2133`] long whose `::` is already
/// resolved, as the kernel routes it: an IPv4-mapped one as IPv4 (refused on an IPv6-only
/// socket with `ENETUNREACH`), the others as given.
fn v6_endpoint(
    name: &[u8],
    addr: SocketAddrV6,
    state: &mut dyn SocketState,
    unicast: bool,
) -> Reading {
    match addr.ip().to_ipv4_mapped() {
        Some(v4) => {
            if state.v6only() {
                return Reading::Errno(libc::ENETUNREACH);
            }
            let v4 = step!(resolve_v4(v4, state, unicast));
            Reading::Ip {
                endpoint: SocketAddr::V4(SocketAddrV4::new(v4, addr.port())),
                sockaddr: with_v6(name, v4.to_ipv6_mapped()),
            }
        }
        None => Reading::Ip {
            endpoint: SocketAddr::V6(addr),
            sockaddr: with_v6(name, *addr.ip()),
        },
    }
}

/// `connect` of TCP (`__inet_stream_connect`, `tcp_v4_connect`, `tcp_v6_connect`), and the
/// connect of a Fast Open send (`tcp_sendmsg_fastopen`). A scope id on a link-local
/// destination ties the socket to that interface (`sk_bound_dev_if`), which outlives the
/// connection (a disconnect keeps it) and picks the egress interface of every later connect:
/// interface selection, refused (rule J4) as for a UDP connect.
fn tcp_connect(
    v6: bool,
    state: &mut dyn SocketState,
    name: Option<&[u8]>,
    fastopen: bool,
) -> Reading {
    let Some(b) = name else {
        return Reading::Errno(libc::EINVAL);
    };
    if b.len() < FAMILY_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) == libc::AF_UNSPEC {
        return if fastopen {
            Reading::Errno(libc::EOPNOTSUPP)
        } else {
            Reading::Disconnect
        };
    }
    if !v6 {
        if b.len() < SIN_LEN {
            return Reading::Errno(libc::EINVAL);
        }
        if family(b) != libc::AF_INET {
            return Reading::Errno(libc::EAFNOSUPPORT);
        }
        return v4_endpoint(b, state, false);
    }
    if b.len() < SIN6_LEN_RFC2133 {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) != libc::AF_INET6 {
        return Reading::Errno(libc::EAFNOSUPPORT);
    }
    let mut addr = v6_parts(b);
    if addr.ip().is_unspecified() {
        addr.set_ip(step!(resolve_any_v6(state)));
    }
    if addr.ip().is_multicast() {
        return Reading::Errno(libc::ENETUNREACH);
    }
    if needs_scope(*addr.ip()) && addr.scope_id() != 0 {
        return Reading::Refused("interface-scope");
    }
    v6_endpoint(b, addr, state, false)
}

/// `connect` of an IPv4 UDP socket, or of an IPv6 one given an `AF_INET` address
/// (`inet_dgram_connect`, `__ip4_datagram_connect`).
fn udp4_connect(state: &mut dyn SocketState, b: &[u8]) -> Reading {
    if b.len() < FAMILY_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) == libc::AF_UNSPEC {
        return Reading::Disconnect;
    }
    if b.len() < SIN_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) != libc::AF_INET {
        return Reading::Errno(libc::EAFNOSUPPORT);
    }
    v4_endpoint(b, state, true)
}

/// `connect` of an IPv6 UDP socket (`inet_dgram_connect`, `__ip6_datagram_connect`). A
/// scope id on a link-local destination would tie the socket to that interface for every
/// later send (`sk_bound_dev_if`): interface selection, refused (rule J4).
fn udp6_connect(state: &mut dyn SocketState, b: &[u8]) -> Reading {
    if b.len() < FAMILY_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    match family(b) {
        libc::AF_UNSPEC => return Reading::Disconnect,
        libc::AF_INET if state.v6only() => return Reading::Errno(libc::EAFNOSUPPORT),
        libc::AF_INET => return udp4_connect(state, b),
        _ => {}
    }
    if b.len() < SIN6_LEN_RFC2133 {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) != libc::AF_INET6 {
        return Reading::Errno(libc::EAFNOSUPPORT);
    }
    let mut addr = v6_parts(b);
    if addr.ip().is_unspecified() {
        addr.set_ip(step!(resolve_any_v6(state)));
    }
    if needs_scope(*addr.ip()) && addr.scope_id() != 0 {
        return Reading::Refused("interface-scope");
    }
    v6_endpoint(b, addr, state, true)
}

/// The destination of a send on an IPv4 UDP socket, or of an `AF_INET` one on an IPv6
/// socket (`udp_sendmsg`): `AF_UNSPEC` is read as `AF_INET`.
fn udp4_send(state: &mut dyn SocketState, b: &[u8]) -> Reading {
    if b.len() < SIN_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    if !matches!(family(b), libc::AF_INET | libc::AF_UNSPEC) {
        return Reading::Errno(libc::EAFNOSUPPORT);
    }
    if v4_parts(b).0 == 0 {
        return Reading::Errno(libc::EINVAL);
    }
    v4_endpoint(b, state, true)
}

/// The destination of a send on an IPv6 UDP socket (`udpv6_sendmsg`): `AF_UNSPEC` is no
/// destination; `AF_INET` and IPv4-mapped ones go to IPv4 unless the socket is IPv6-only. A
/// scope id picks the interface of that one datagram's link-local destination.
fn udp6_send(state: &mut dyn SocketState, b: &[u8]) -> Reading {
    if b.len() < FAMILY_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    match family(b) {
        libc::AF_INET6 => {}
        libc::AF_INET if state.v6only() => return Reading::Errno(libc::ENETUNREACH),
        libc::AF_INET => return udp4_send(state, b),
        libc::AF_UNSPEC => return Reading::Peer,
        _ => return Reading::Errno(libc::EINVAL),
    }
    if b.len() < SIN6_LEN_RFC2133 {
        return Reading::Errno(libc::EINVAL);
    }
    let mut addr = v6_parts(b);
    if addr.ip().is_unspecified() {
        addr.set_ip(step!(resolve_any_v6(state)));
    }
    if addr.port() == 0 {
        // Both the IPv6 path and `udp_sendmsg` (for a mapped destination) refuse port 0; the
        // IPv6-only check of a mapped one comes first.
        if addr.ip().to_ipv4_mapped().is_some() && state.v6only() {
            return Reading::Errno(libc::ENETUNREACH);
        }
        return Reading::Errno(libc::EINVAL);
    }
    v6_endpoint(b, addr, state, true)
}

/// A bind of any IP socket (`__inet_bind`, `__inet6_bind`). A scope id on a link-local
/// address ties the socket to that interface (`sk_bound_dev_if`): interface selection,
/// refused (rule J4).
fn ip_bind(v6: bool, b: &[u8]) -> Reading {
    if !v6 {
        if b.len() < SIN_LEN {
            return Reading::Errno(libc::EINVAL);
        }
        let (port, ip) = v4_parts(b);
        let ok = match family(b) {
            libc::AF_INET => true,
            libc::AF_UNSPEC => ip.is_unspecified(),
            _ => false,
        };
        if !ok {
            return Reading::Errno(libc::EAFNOSUPPORT);
        }
        return Reading::Local {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            sockaddr: with_v4(b, ip),
        };
    }
    if b.len() < SIN6_LEN_RFC2133 {
        return Reading::Errno(libc::EINVAL);
    }
    if family(b) != libc::AF_INET6 {
        return Reading::Errno(libc::EAFNOSUPPORT);
    }
    let addr = v6_parts(b);
    if needs_scope(*addr.ip()) && addr.scope_id() != 0 {
        return Reading::Refused("interface-scope");
    }
    let local = match addr.ip().to_ipv4_mapped() {
        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, addr.port())),
        None => SocketAddr::V6(addr),
    };
    Reading::Local {
        addr: local,
        sockaddr: b.to_vec(),
    }
}

/// Another IP protocol (raw, ping, SCTP...): a plain address of the socket's own family, the
/// rest refused; `connect(AF_UNSPEC)` of a datagram or raw socket disconnects
/// (`inet_dgram_connect`).
fn other_ip(usage: Use, kind: SocketKind, name: Option<&[u8]>) -> Reading {
    let Some(b) = name else {
        return if matches!(usage, Use::Send | Use::FastOpen) {
            Reading::Peer
        } else {
            Reading::Errno(libc::EINVAL)
        };
    };
    if b.len() < FAMILY_LEN {
        return Reading::Errno(libc::EINVAL);
    }
    let datagram = matches!(kind.sock_type, libc::SOCK_DGRAM | libc::SOCK_RAW);
    if usage == Use::Connect && datagram && family(b) == libc::AF_UNSPEC {
        return Reading::Disconnect;
    }
    if family(b) != kind.family {
        return Reading::Refused("unclassified-family");
    }
    if kind.family == libc::AF_INET {
        if b.len() < SIN_LEN {
            return Reading::Errno(libc::EINVAL);
        }
        let (port, ip) = v4_parts(b);
        if ip.is_unspecified() {
            return Reading::Refused("unspecified-destination");
        }
        return Reading::Ip {
            endpoint: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            sockaddr: b.to_vec(),
        };
    }
    if b.len() < SIN6_LEN_RFC2133 {
        return Reading::Errno(libc::EINVAL);
    }
    let addr = v6_parts(b);
    if addr.ip().is_unspecified() || addr.ip().to_ipv4_mapped().is_some() {
        return Reading::Refused("unspecified-or-mapped-destination");
    }
    Reading::Ip {
        endpoint: SocketAddr::V6(addr),
        sockaddr: b.to_vec(),
    }
}

/// A unix address (`unix_validate_addr`): 3 to 110 bytes of family `AF_UNIX`; an abstract
/// name is every byte after the leading NUL, a path ends at the first NUL.
fn unix_name(b: &[u8]) -> Reading {
    if b.len() <= FAMILY_LEN || b.len() > SUN_LEN || family(b) != libc::AF_UNIX {
        return Reading::Errno(libc::EINVAL);
    }
    let path = &b[FAMILY_LEN..];
    if path[0] == 0 {
        return Reading::UnixAbstract(path[1..].to_vec());
    }
    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
    Reading::UnixPath(PathBuf::from(std::ffi::OsStr::from_bytes(&path[..end])))
}

/// The decision of a [`Reading::Refused`] form: `EPERM`, its reason as the rule.
pub(crate) fn refusal(why: &str) -> Decision {
    Decision {
        verdict: Verdict::Deny { errno: libc::EPERM },
        rule: format!("address:{why}"),
        host: None,
    }
}

/// The local address in `getsockname` bytes of an IP socket.
pub fn local_address(name: &[u8]) -> Option<SocketAddr> {
    if name.len() < FAMILY_LEN {
        return None;
    }
    match family(name) {
        libc::AF_INET if name.len() >= SIN_LEN => {
            let (port, ip) = v4_parts(name);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if name.len() >= SIN6_LEN_RFC2133 => Some(SocketAddr::V6(v6_parts(name))),
        _ => None,
    }
}

/// A `sockaddr_in` or `sockaddr_in6` naming `addr`.
pub fn encode(addr: SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => {
            let mut out = vec![0u8; SIN_LEN];
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.ip().octets());
            out
        }
        SocketAddr::V6(a) => {
            let mut out = vec![0u8; SIN6_LEN];
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&a.port().to_be_bytes());
            out[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            out[8..24].copy_from_slice(&a.ip().octets());
            out[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            out
        }
    }
}

/// `ip` in the family of a socket (`v6`): an IPv4 address on an IPv6 socket is its mapped
/// form.
pub(crate) fn in_family(ip: IpAddr, v6: bool) -> IpAddr {
    match (ip, v6) {
        (IpAddr::V4(v4), true) => IpAddr::V6(v4.to_ipv6_mapped()),
        (ip, _) => ip,
    }
}

#[cfg(test)]
mod tests;
