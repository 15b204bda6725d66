//! Where a socket's traffic leaves from, read from the socket itself and settled before the
//! broker connects or sends on it (rules J2 and N2, invariant 9).
//!
//! The broker never trusts its memory of a socket: the kernel changes a socket's state
//! without it. A `send()` or `write()` on an unconnected UDP socket never reaches the broker
//! (the filter cannot tell a socket's type or state), yet the kernel binds the socket to the
//! wildcard address and an ephemeral port before it fails with `EDESTADDRREQ`. Such a socket
//! would then leave from whatever source routing picks and receive on every address.
//!
//! So at each connect or send the broker reads the socket's local address, and:
//!
//! - with a jail address, a socket that is unbound, or bound to the wildcard with a port the
//!   kernel picked, is bound to the jail address first (a UDP socket's unlocked port is
//!   released with `connect(AF_UNSPEC)`, which unhashes a socket whose port no explicit bind
//!   locked: `__udp_disconnect`); a wildcard binding it cannot release is refused;
//! - without one, under a policy that would refuse the wildcard bind (`loopback-only`), an
//!   unconnected datagram send on such a socket first binds it to the source address the
//!   kernel's routing gives that destination, so that it does not become, or stay, a
//!   receiver on every address. A connect needs nothing: the kernel gives a connected socket
//!   its source address itself.
//!
//! What cannot be closed: datagrams that reach an autobound socket between the failed
//! `send()` and the next call the broker sees (docs/security.md, "Limits").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::BorrowedFd;

use netjail_policy::{Op, Request, Target, Verdict};

use crate::call::Call;
use crate::ops::address::{self, SocketState};
use crate::ops::decode;
use crate::reply::errno_of;
use crate::sys::{self, SocketKind};

/// A socket's state as the address table asks for it: read from the broker's copy of the
/// socket, each piece once, with the jail address where the broker will bind it first.
pub(crate) struct View<'a> {
    sock: BorrowedFd<'a>,
    kind: SocketKind,
    /// With a jail: the socket's jail address (`None`: none of its family).
    jail: Option<Option<IpAddr>>,
    own: Option<Option<SocketAddr>>,
    v6only: Option<bool>,
}

impl<'a> View<'a> {
    pub(crate) fn new(call: &Call, sock: BorrowedFd<'a>, kind: SocketKind) -> View<'a> {
        let jail = call
            .policy
            .confinement()
            .has_jail()
            .then(|| jail_for(call, kind.family == libc::AF_INET6));
        View {
            sock,
            kind,
            jail,
            own: None,
            v6only: None,
        }
    }

    /// The socket.
    pub(crate) fn sock(&self) -> BorrowedFd<'a> {
        self.sock
    }

    /// What the socket is.
    pub(crate) fn kind(&self) -> SocketKind {
        self.kind
    }

    /// The socket's own local address (`getsockname`), read once.
    pub(crate) fn own_local(&mut self) -> Option<SocketAddr> {
        if self.own.is_none() {
            let name = sys::sockname(self.sock).ok();
            self.own = Some(name.as_deref().and_then(address::local_address));
        }
        self.own.flatten()
    }
}

impl SocketState for View<'_> {
    fn local(&mut self) -> Option<SocketAddr> {
        let own = self.own_local()?;
        match self.jail {
            Some(jail) if unsettled(own) => jail.map(|ip| SocketAddr::new(ip, 0)),
            _ => Some(own),
        }
    }

    fn v6only(&mut self) -> bool {
        if self.kind.family != libc::AF_INET6 {
            return false;
        }
        *self.v6only.get_or_insert_with(|| {
            sys::int_option(self.sock, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).is_ok_and(|v| v != 0)
        })
    }

    fn interface(&mut self, unicast: bool) -> u32 {
        let option = |level, name| sys::int_option(self.sock, level, name).unwrap_or(0);
        let bound = option(libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX);
        if bound != 0 || !unicast {
            return bound as u32;
        }
        // The IPv4 route of a zero destination reads `IP_UNICAST_IF`, also on an IPv6
        // socket sending to IPv4.
        option(libc::IPPROTO_IP, libc::IP_UNICAST_IF) as u32
    }
}

/// Whether a socket with local address `local` has no source of its own yet: unbound (port
/// 0), or bound to a wildcard address (`0.0.0.0`, `::`, `::ffff:0.0.0.0`).
fn unsettled(local: SocketAddr) -> bool {
    local.port() == 0 || wildcard(local.ip())
}

fn wildcard(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.to_ipv4_mapped() == Some(Ipv4Addr::UNSPECIFIED),
    }
}

/// The jail address a socket of this family binds to: its own family's, or for IPv6 the
/// IPv4-mapped form of an IPv4 jail address.
pub(crate) fn jail_for(call: &Call, v6: bool) -> Option<IpAddr> {
    let confine = call.policy.confinement();
    match confine.jail_address_for(v6) {
        Some(ip) => Some(ip),
        None if v6 => match confine.jail_address_for(false) {
            Some(IpAddr::V4(v4)) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
            _ => None,
        },
        None => None,
    }
}

/// Settles where the socket leaves from before the broker performs `op` (a connect, or the
/// send of a datagram to `destination`, the bytes it will pass): see the module
/// documentation. `Err` carries the errno the call then fails with and why.
pub(crate) fn settle(
    call: &Call,
    view: &mut View<'_>,
    op: Op,
    destination: &[u8],
) -> Result<(), (i32, &'static str)> {
    let (sock, kind) = (view.sock, view.kind);
    let udp = address::is_udp(kind);
    if !matches!(kind.family, libc::AF_INET | libc::AF_INET6) {
        return Ok(());
    }
    // Without a jail only an unconnected datagram send can leave a wildcard receiver behind,
    // and only under a policy that refuses the wildcard bind: no system call otherwise.
    if view.jail.is_none() && (!udp || op != Op::Send || wildcard_allowed(call, kind, 0)) {
        return Ok(());
    }
    let Some(own) = view.own_local() else {
        return Ok(());
    };
    if !unsettled(own) {
        return Ok(());
    }
    let autobound = own.port() != 0;
    if let Some(jail) = view.jail {
        if autobound && !(udp && release(sock)?) {
            // Bound to the wildcard with a port it keeps: it cannot leave from the jail.
            return Err((libc::EPERM, "jail-source"));
        }
        let Some(jail) = jail else {
            // No jail address of this family: such a socket cannot leave from the jail, so
            // it does not leave at all.
            return Err((libc::EPERM, "jail-source"));
        };
        return bind(sock, SocketAddr::new(jail, 0)).map_err(|errno| (errno, "jail-source"));
    }
    if wildcard_allowed(call, kind, own.port()) {
        return Ok(());
    }
    if autobound && !release(sock)? {
        // A port an explicit bind locked before the broker saw the socket: left as it is.
        return Ok(());
    }
    pin_route_source(sock, destination).map_err(|errno| (errno, "source"))
}

/// The autobind the kernel gives an unbound UDP socket before a connect or a send reads its
/// address (`inet_dgram_connect`, `inet_send_prepare`), made by the broker where it answers
/// such a call itself (a bad address, a datagram too large): the wildcard address and an
/// ephemeral port, as the kernel's own autobind (a bind to port 0 of the wildcard locks
/// neither, just as that). With a jail address, the jail address. Under a policy that refuses
/// the wildcard bind the socket stays unbound: the kernel would have made it a receiver on
/// every address (docs/security.md, "Limits").
pub(crate) fn autobind(call: &Call, view: &mut View<'_>) {
    let (sock, kind) = (view.sock, view.kind);
    let unbound = view.own_local().is_some_and(|a| a.port() == 0);
    if !address::is_udp(kind) || !unbound {
        return;
    }
    let ip = match view.jail {
        Some(Some(jail)) => jail,
        Some(None) => return,
        None if wildcard_allowed(call, kind, 0) => match kind.family {
            libc::AF_INET6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        },
        None => return,
    };
    // Failing, it leaves the socket as it was: the call's answer is the kernel's errno anyway.
    let _ = bind(sock, SocketAddr::new(ip, 0));
}

/// `connect(AF_UNSPEC)` on a UDP socket: releases a port no explicit bind locked. `true`
/// when the socket is unbound afterwards.
fn release(sock: BorrowedFd<'_>) -> Result<bool, (i32, &'static str)> {
    let unspec = (libc::AF_UNSPEC as u16).to_ne_bytes();
    sys::connect_raw(sock, &unspec).map_err(|e| (errno_of(&e), "release"))?;
    let name = sys::sockname(sock).map_err(|e| (errno_of(&e), "release"))?;
    Ok(address::local_address(&name).is_some_and(|a| a.port() == 0))
}

/// Binds an unbound UDP socket to the source address the kernel's routing gives
/// `destination`: a connect finds it (and picks a port), the association is dissolved again,
/// and the socket is bound to that address and port.
fn pin_route_source(sock: BorrowedFd<'_>, destination: &[u8]) -> Result<(), i32> {
    sys::connect_raw(sock, destination).map_err(|e| errno_of(&e))?;
    let name = sys::sockname(sock).map_err(|e| errno_of(&e))?;
    let source = address::local_address(&name).ok_or(libc::EINVAL)?;
    release(sock).map_err(|(errno, _)| errno)?;
    match bind(sock, source) {
        Err(libc::EADDRINUSE) => bind(sock, SocketAddr::new(source.ip(), 0)),
        other => other,
    }
}

/// Whether the policy allows this socket a wildcard bind to `port` (0: an ephemeral port;
/// the policy alone: no operator is asked).
fn wildcard_allowed(call: &Call, kind: SocketKind, port: u16) -> bool {
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    let any = if kind.family == libc::AF_INET6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let request = Request {
        op: Op::Bind,
        target: Target::Inet {
            proto,
            addr: SocketAddr::new(any, port),
        },
    };
    call.policy.evaluate(&request).verdict == Verdict::Allow
}

fn bind(sock: BorrowedFd<'_>, addr: SocketAddr) -> Result<(), i32> {
    sys::bind_raw(sock, &address::encode(addr)).map_err(|e| errno_of(&e))
}
