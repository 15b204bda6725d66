//! `bind(fd, addr, addrlen)` and `listen(fd, backlog)`, decided by the policy's `bind`
//! entries and performed by the broker on its own copy of the socket; and the jail address
//! (rule J2): a wildcard bind is turned into a bind to the jail address (where a socket that
//! connects or sends without a bind leaves from is `ops/source.rs`'s).
//!
//! `listen` on an unbound socket binds it implicitly to the wildcard address and an
//! ephemeral port: that is decided as the bind it is, so no server slips past the bind rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::bounds::limits;
use crate::bounds::reaper::CallerFd;
use crate::call::{Call, Step};
use crate::caller::as_thread;
use crate::ops::address::{self, Known, Reading, Use};
use crate::ops::bridge;
use crate::ops::decode;
use crate::ops::source::jail_for;
use crate::ops::unix;
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self, Become, SocketKind};

/// Decides one notified `bind`.
pub(crate) fn decide_bind(call: &Call) -> Step {
    let fd = call.notif.args[0] as i32;
    let addr_ptr = call.notif.args[1];
    let len = call.notif.args[2] as i32;
    let mut out = Outcome::new("bind");

    let (sock, kind) = match call.socket(fd) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    let addr = match call.copy_sockaddr(addr_ptr, len) {
        Ok(a) => a,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    if !call.still_valid() {
        return Step::Done(out.gone());
    }
    if let Some(refusal) = foreign_socket(call, sock.as_fd()) {
        return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
    }
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    // Invariant 9: the address as the kernel's bind for this socket reads it (a bind does
    // not depend on the socket's state).
    let reading = address::read(Use::Bind, kind, &mut Known::default(), Some(&addr));
    match reading {
        Reading::Errno(errno) => Step::Done(out.failed(errno, "bad-address")),
        Reading::Refused(why) => {
            out.endpoint = "unclassified".to_owned();
            let reply = Reply::Errno(libc::EPERM);
            Step::Done(out.decided(Some(address::refusal(why)), "", reply))
        }
        Reading::UnixAutobind => Step::Done(autobind(call, out, sock.as_fd(), kind)),
        Reading::UnixPath(path) => Step::Blocking(Box::new(move |call: &Call| {
            let limited = AtomicBool::new(false);
            let fd = sock.as_fd();
            let r = unix::bind_path(call, &path, &addr, fd, |perform| {
                limits::counted(&binds(call), fd, perform).unwrap_or_else(|_| {
                    limited.store(true, Ordering::Relaxed);
                    Reply::Errno(limits::COUNT_ERRNO)
                })
            });
            out.endpoint = r.endpoint;
            let decision = if limited.load(Ordering::Relaxed) {
                Some(crate::reply::refusal(
                    limits::RULE_BINDS,
                    limits::COUNT_ERRNO,
                ))
            } else {
                r.decision
            };
            out.decided(decision, r.failure, r.reply)
        })),
        Reading::UnixAbstract(name) => {
            let target = Target::UnixAbstract(name);
            decide_and_perform(call, out, target, sock.as_fd(), || {
                perform(sock.as_fd(), &addr)
            })
        }
        Reading::Local {
            addr: local,
            sockaddr,
        } => {
            let (target, sockaddr) = jail_translate(call, kind, proto, local, sockaddr);
            bind_local(call, out, target, sock, kind, sockaddr)
        }
        Reading::OtherFamily(family) => {
            // Another family (netlink, say, when the policy lists it): decided by the default,
            // and performed as the caller, with its capabilities, not the broker's.
            let target = Target::OtherFamily(family);
            decide_and_perform(call, out, target, sock.as_fd(), || {
                as_thread(call, Become::Full, || perform(sock.as_fd(), &addr))
                    .unwrap_or_else(|e| Reply::Errno(errno_of(&e)))
            })
        }
        Reading::Ip { .. } | Reading::Peer | Reading::Ignored | Reading::Disconnect => {
            Step::Done(out.failed(libc::EPERM, "unclassified"))
        }
    }
}

/// The abstract names an autobind picks from: five hex digits (`unix_autobind`).
const AUTOBIND_NAMES: u32 = 0x10_0000;
/// How many names in a row an autobind tries before it answers `ENOSPC`, the kernel's errno
/// once every name is taken.
const AUTOBIND_TRIES: u32 = 16;

/// `bind` with only the family: the autobind. The kernel would give the socket a free
/// abstract name of five hex digits that nobody decided; the broker picks one the same way
/// (a random start, then the next names while they are taken), decides it as the bind of that
/// abstract name, and binds the socket to exactly that name, so that the name the socket gets
/// is the name the policy allowed: an autobind needs an entry matching such names (`@*`,
/// `@?????`), and is refused where the policy names no abstract socket. A socket with a name
/// keeps it and the call returns 0, as the kernel's autobind does.
fn autobind(call: &Call, mut out: Outcome, sock: BorrowedFd<'_>, kind: SocketKind) -> Outcome {
    if unix_named(sock) {
        out.endpoint = bound_name(sock, kind);
        return out.decided(None, "bound", Reply::Value(0));
    }
    let start = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        (call.notif.id, std::time::Instant::now()),
    ) as u32;
    for i in 0..AUTOBIND_TRIES {
        let name = format!("{:05x}", start.wrapping_add(i) % AUTOBIND_NAMES).into_bytes();
        let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        addr.push(0);
        addr.extend_from_slice(&name);
        let target = Target::UnixAbstract(name);
        out.endpoint = target.to_string();
        let decision = call.evaluate(&Request {
            op: Op::Bind,
            target,
        });
        let reply = match decision.verdict {
            Verdict::Deny { errno } => Reply::Errno(errno),
            // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
            Verdict::Ask => Reply::Errno(libc::EPERM),
            Verdict::Allow => match limits::counted(&binds(call), sock, || perform(sock, &addr)) {
                // Taken: the kernel too would go on to the next name.
                Ok(Reply::Errno(libc::EADDRINUSE)) => continue,
                // Named meanwhile by another thread: the kernel's autobind returns 0.
                Ok(Reply::Errno(libc::EINVAL)) if unix_named(sock) => Reply::Value(0),
                Ok(reply) => reply,
                Err(refusal) => return refused(out, refusal),
            },
        };
        return out.decided(Some(decision), "", reply);
    }
    out.failed(libc::ENOSPC, "autobind-names-taken")
}

/// Whether a unix socket has a name (`getsockname` gives more than the family).
fn unix_named(sock: BorrowedFd<'_>) -> bool {
    sys::sockname(sock).is_ok_and(|n| n.len() > 2)
}

/// The port of an inet bind target (0 for any other).
fn local_port(target: &Target) -> u16 {
    match target {
        Target::Inet { addr, .. } => addr.port(),
        _ => 0,
    }
}

/// The sandbox's `max_binds` count, if the policy sets one.
fn binds(call: &Call) -> Option<std::sync::Arc<limits::Live>> {
    call.sandbox.limits.binds.clone()
}

/// A bind refused by `max_binds`.
fn refused(out: Outcome, refusal: netjail_policy::Decision) -> Outcome {
    out.decided(Some(refusal), "", Reply::Errno(limits::COUNT_ERRNO))
}

/// Decides a bind of `sock` to `target` and, when allowed and under `max_binds`, runs
/// `perform`.
fn decide_and_perform(
    call: &Call,
    mut out: Outcome,
    target: Target,
    sock: BorrowedFd<'_>,
    perform: impl FnOnce() -> Reply,
) -> Step {
    out.endpoint = target.to_string();
    let decision = call.evaluate(&Request {
        op: Op::Bind,
        target,
    });
    let reply = match decision.verdict {
        Verdict::Deny { errno } => Reply::Errno(errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Reply::Errno(libc::EPERM),
        Verdict::Allow => match limits::counted(&binds(call), sock, perform) {
            Ok(reply) => reply,
            Err(refusal) => return Step::Done(refused(out, refusal)),
        },
    };
    Step::Done(out.decided(Some(decision), "", reply))
}

/// A bind of an IP socket to `target` (`sockaddr` the bytes that name it): served from the
/// bridge's namespace where its `bind` patterns name it, decided and performed here otherwise.
fn bind_local(
    call: &Call,
    out: Outcome,
    target: Target,
    sock: CallerFd,
    kind: SocketKind,
    sockaddr: Vec<u8>,
) -> Step {
    let port = local_port(&target);
    let request = Request {
        op: Op::Bind,
        target: target.clone(),
    };
    if bridge::wanted(call, &request, sock.as_fd()) {
        return bridged(call, out, request, sock, kind, sockaddr);
    }
    decide_and_perform(call, out, target, sock.as_fd(), || {
        bind_inet(call, sock.as_fd(), &sockaddr, port)
    })
}

/// A bind the bridge's `bind` patterns name (a published port, `ops/bridge.rs`): decided as any
/// bind, then, when allowed and the policy is an administrator's, served from the bridge's
/// namespace, off the receiver thread, and counted under `max_binds`.
fn bridged(
    call: &Call,
    mut out: Outcome,
    request: Request,
    sock: CallerFd,
    kind: SocketKind,
    sockaddr: Vec<u8>,
) -> Step {
    out.endpoint = request.target.to_string();
    let decision = call.evaluate(&request);
    match decision.verdict {
        Verdict::Deny { errno } => {
            return Step::Done(out.decided(Some(decision), "", Reply::Errno(errno)))
        }
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => {
            return Step::Done(out.decided(Some(decision), "", Reply::Errno(libc::EPERM)))
        }
        Verdict::Allow => {}
    }
    if let Some(refusal) = bridge::refused(call) {
        return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
    }
    let slot = match limits::reserve(&binds(call), sock.as_fd()) {
        Ok(slot) => slot,
        Err(refusal) => return Step::Done(refused(out, refusal)),
    };
    let fd = call.notif.args[0] as i32;
    Step::Blocking(Box::new(move |call: &Call| {
        let reply = bridge::bind(call, fd, sock.as_fd(), kind, &sockaddr, slot);
        out.decided(Some(decision), "", reply)
    }))
}

/// Rule J2: a wildcard bind becomes a bind to the jail address (an IPv6 socket with only an
/// IPv4 jail address gets the IPv4-mapped form; `::ffff:0.0.0.0`, the IPv4 wildcard of an
/// IPv6 socket, gets the IPv4 jail address only). Returns what the policy decides on and the
/// bytes to bind.
fn jail_translate(
    call: &Call,
    kind: SocketKind,
    proto: netjail_policy::Proto,
    local: SocketAddr,
    sockaddr: Vec<u8>,
) -> (Target, Vec<u8>) {
    let confine = call.policy.confinement();
    let jail = match local {
        _ if !local.ip().is_unspecified() || !confine.has_jail() => None,
        SocketAddr::V6(_) => jail_for(call, true),
        SocketAddr::V4(_) => confine.jail_address_for(false),
    };
    let Some(jail) = jail else {
        // Not a wildcard, or no jail address for it (the policy then refuses the bind).
        return (Target::Inet { proto, addr: local }, sockaddr);
    };
    let v6 = kind.family == libc::AF_INET6;
    let bytes = encode_inet(
        SocketAddr::new(address::in_family(jail, v6), local.port()),
        &sockaddr,
    );
    let translated = SocketAddr::new(jail, local.port());
    (
        Target::Inet {
            proto,
            addr: translated,
        },
        bytes,
    )
}

/// `addr` (of the same family as `template`) encoded over a copy of `template`, keeping
/// its other fields (flow info, scope id).
fn encode_inet(addr: SocketAddr, template: &[u8]) -> Vec<u8> {
    let mut out = template.to_vec();
    match addr {
        SocketAddr::V4(v4) => {
            out.resize(out.len().max(16), 0);
            out[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&v4.port().to_be_bytes());
            out[4..8].copy_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            out.resize(out.len().max(28), 0);
            out[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[2..4].copy_from_slice(&v6.port().to_be_bytes());
            out[8..24].copy_from_slice(&v6.ip().octets());
        }
    }
    out
}

/// `CAP_NET_BIND_SERVICE`.
const CAP_NET_BIND_SERVICE: u32 = 10;
/// Rule J8's privileged ports: below this, only an entry naming the port grants a bind.
const J8_FIRST_UNPRIVILEGED: u16 = 1024;

/// Performs an allowed inet bind to `port` as the task the kernel must check. For a port
/// below `net.ipv4.ip_unprivileged_port_start` of the socket's network namespace, the kernel
/// wants `CAP_NET_BIND_SERVICE` of the task that binds (in the user namespace owning that
/// network namespace), and checks nothing else of the task's credentials, so:
///
/// - port 0 (an ephemeral port) needs nothing: bound here;
/// - a privileged port that an administrator's policy names (rule J8: an entry whose whole
///   range lies below 1024, in a policy from the broker's directory or its owner, not kept
///   `CAP_NET_BIND_SERVICE`) is bound here, with the broker's capability: the grant by name
///   of invariant 3;
/// - any other port is first bound here without `CAP_NET_BIND_SERVICE`, which succeeds exactly
///   when the namespace's own threshold (L9) lets anyone bind it; when the kernel says
///   `EACCES`, the bind is made again on a thread with the caller's ids and capabilities (none
///   for a caller of another user namespace), so that the caller's own capability decides:
///   `EACCES` as the caller's own bind would get. A client's policy keeping
///   `CAP_NET_BIND_SERVICE` gives the sandbox nothing it does not hold (F13).
fn bind_inet(call: &Call, sock: BorrowedFd<'_>, addr: &[u8], port: u16) -> Reply {
    let named_grant = port < J8_FIRST_UNPRIVILEGED
        && call.sandbox.source.is_administrators()
        && !call
            .policy
            .confinement()
            .keep_capabilities()
            .contains(&CAP_NET_BIND_SERVICE);
    if port == 0 || named_grant {
        return perform(sock, addr);
    }
    match sys::without_capability(CAP_NET_BIND_SERVICE, || perform(sock, addr)) {
        Ok(Reply::Errno(libc::EACCES)) => {}
        Ok(reply) => return reply,
        Err(e) => return Reply::Errno(errno_of(&e)),
    }
    as_thread(call, Become::Full, || perform(sock, addr))
        .unwrap_or_else(|e| Reply::Errno(errno_of(&e)))
}

fn perform(sock: BorrowedFd<'_>, addr: &[u8]) -> Reply {
    match sys::bind_raw(sock, addr) {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(errno_of(&e)),
    }
}

/// Whether an inet socket is still unbound (port 0 in `getsockname`).
fn unbound_inet(sock: BorrowedFd<'_>, kind: SocketKind) -> bool {
    if kind.family != libc::AF_INET && kind.family != libc::AF_INET6 {
        return false;
    }
    match sys::sockname(sock) {
        Ok(name) if name.len() >= 4 => name[2..4] == [0, 0],
        _ => false,
    }
}

/// The refusal of a `bind` or `listen` on a socket that lives in another network namespace
/// than the caller's, one the bridge or the host program put in place (`ops/bridge.rs`,
/// `ops/served.rs`): the policy's bind rules name the sandbox's own addresses, never the
/// bridge's, and a unix socket served by the host program would take an abstract name in the
/// host's namespace (the seventh red team's note).
fn foreign_socket(call: &Call, sock: BorrowedFd<'_>) -> Option<Decision> {
    if !bridge::foreign(call, sock) {
        return None;
    }
    Some(crate::reply::refusal(bridge::RULE_FOREIGN, libc::EPERM))
}

/// Decides one notified `listen`.
pub(crate) fn decide_listen(call: &Call) -> Step {
    let fd = call.notif.args[0] as i32;
    let backlog = call.notif.args[1] as i32;
    let mut out = Outcome::new("listen");
    let (sock, kind) = match call.socket(fd) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    if !call.still_valid() {
        return Step::Done(out.gone());
    }
    let published = bridge::published(call, sock.as_fd(), kind);
    if let Some(refusal) = foreign_socket(call, sock.as_fd()).filter(|_| !published) {
        return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
    }
    if kind.family == libc::AF_UNIX && unix::bound_to_path(sock.as_fd()) {
        // A unix socket bound to a path: the file it is bound to is decided again, where it
        // is now (a bind the kernel made elsewhere than decided never listens). Paths may
        // wait on a slow filesystem: off the receiver thread.
        return Step::Blocking(Box::new(move |call: &Call| {
            let fd = sock.as_fd();
            let perform = || listen_as_caller(call, fd, backlog);
            match unix::listen_on_path(call, fd, perform) {
                Some(r) => {
                    out.endpoint = r.endpoint;
                    out.decided(r.decision, r.failure, r.reply)
                }
                None => listen_unix(call, out, fd, kind, backlog),
            }
        }));
    }
    if kind.family == libc::AF_UNIX {
        return Step::Done(listen_unix(call, out, sock.as_fd(), kind, backlog));
    }
    // A datagram or raw socket does not listen (`sock_no_listen`): its listen binds nothing
    // and fails (`EOPNOTSUPP`), whatever the policy says of binds.
    let listens = !matches!(kind.sock_type, libc::SOCK_DGRAM | libc::SOCK_RAW);
    if !listens || !unbound_inet(sock.as_fd(), kind) {
        // Bound already (by a decided bind, or before confinement), not inet, or a socket
        // that does not listen: listen reaches no new address.
        out.endpoint = bound_name(sock.as_fd(), kind);
        let reply = listen(sock.as_fd(), backlog);
        return Step::Done(out.decided(None, "bound", reply));
    }
    Step::Done(listen_unbound_inet(call, out, sock.as_fd(), kind, backlog))
}

/// `listen` on an unbound inet socket that listens: decided as the implicit bind it makes,
/// to the wildcard address and an ephemeral port, or with a jail address (rule J2) bound to
/// the jail address first and then listened on. An allowed bind counts under `max_binds`.
fn listen_unbound_inet(
    call: &Call,
    mut out: Outcome,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    backlog: i32,
) -> Outcome {
    // The implicit bind: the wildcard address and an ephemeral port, or the jail address.
    let v6 = kind.family == libc::AF_INET6;
    let wildcard = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    let jail = jail_for(call, v6);
    let local = SocketAddr::new(jail.unwrap_or(wildcard), 0);
    let target = Target::Inet { proto, addr: local };
    out.endpoint = target.to_string();
    let decision = call.evaluate(&Request {
        op: Op::Bind,
        target,
    });
    let slot = match decision.verdict {
        Verdict::Allow => match limits::reserve(&binds(call), sock) {
            Ok(slot) => slot,
            Err(refusal) => return refused(out, refusal),
        },
        _ => None,
    };
    let reply = match decision.verdict {
        Verdict::Deny { errno } => Reply::Errno(errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Reply::Errno(libc::EPERM),
        Verdict::Allow if jail.is_some() => {
            let family_template = if v6 {
                [0u8; 28].to_vec()
            } else {
                [0u8; 16].to_vec()
            };
            match perform(sock, &encode_inet(local, &family_template)) {
                Reply::Value(_) => listen(sock, backlog),
                err => err,
            }
        }
        Verdict::Allow => listen(sock, backlog),
    };
    limits::settle(slot, sock, reply);
    out.decided(Some(decision), "", reply)
}

/// `listen` on a unix socket: a server at the name the socket has, read from the socket
/// whoever gave it (a decided bind, a bind before confinement, the kernel's own autobind in a
/// connect or send with `SO_PASSCRED`). An abstract name is decided as the bind of that name,
/// so that no server is made on a name the policy refuses; a path is decided again on its file
/// by [`unix::listen_on_path`] first, and comes here only when the broker cannot find that
/// file (its bind was decided when it made the file). A stream or seqpacket socket without a
/// name gets the kernel's `EINVAL` here, without a listen, so that a name another thread gives
/// it meanwhile is never listened on undecided. The listen runs on a thread with the caller's
/// identity: the listener records who listens (`SO_PEERCRED` of the connections it accepts).
fn listen_unix(
    call: &Call,
    mut out: Outcome,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    backlog: i32,
) -> Outcome {
    let name = match sys::sockname(sock) {
        Ok(n) => n,
        Err(e) => return out.failed(errno_of(&e), "no-name"),
    };
    let connection = matches!(kind.sock_type, libc::SOCK_STREAM | libc::SOCK_SEQPACKET);
    let decision = match address::read(Use::Bind, kind, &mut Known::default(), Some(&name)) {
        Reading::UnixAutobind if connection => {
            out.endpoint = "unix:(unbound)".to_owned();
            return out.failed(libc::EINVAL, "unbound");
        }
        Reading::UnixAbstract(abstract_name) => {
            let target = Target::UnixAbstract(abstract_name);
            out.endpoint = target.to_string();
            let decision = call.evaluate(&Request {
                op: Op::Bind,
                target,
            });
            match decision.verdict {
                Verdict::Allow => Some(decision),
                Verdict::Deny { errno } => {
                    return out.decided(Some(decision), "", Reply::Errno(errno))
                }
                // Never: `Call::evaluate` has operators decide what the policy asks.
                Verdict::Ask => return out.decided(Some(decision), "", Reply::Errno(libc::EPERM)),
            }
        }
        _ => {
            out.endpoint = bound_name(sock, kind);
            None
        }
    };
    let reply = listen_as_caller(call, sock, backlog);
    let passed = if decision.is_none() { "bound" } else { "" };
    out.decided(decision, passed, reply)
}

/// A unix listener records who listens (`SO_PEERCRED` of accepted connections): the caller,
/// not the broker.
fn listen_as_caller(call: &Call, sock: BorrowedFd<'_>, backlog: i32) -> Reply {
    as_thread(call, Become::Full, || listen(sock, backlog))
        .unwrap_or_else(|e| Reply::Errno(errno_of(&e)))
}

fn listen(sock: BorrowedFd<'_>, backlog: i32) -> Reply {
    match sys::listen_raw(sock, backlog) {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(errno_of(&e)),
    }
}

fn bound_name(sock: BorrowedFd<'_>, kind: SocketKind) -> String {
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    let name = sys::sockname(sock).ok();
    let target = match name.as_deref().and_then(address::local_address) {
        Some(addr) => Some(Target::Inet { proto, addr }),
        None => name.and_then(|n| {
            address::read(Use::Bind, kind, &mut Known::default(), Some(&n)).target(proto)
        }),
    };
    match target {
        Some(t) => t.to_string(),
        None => format!("family:{}", kind.family),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_inet_keeps_v6_scope_and_sets_family() {
        let mut t = vec![0u8; 28];
        t[24..28].copy_from_slice(&5u32.to_ne_bytes());
        let out = encode_inet("[fd00::2]:80".parse().unwrap(), &t);
        assert_eq!(&out[24..28], &5u32.to_ne_bytes());
        assert_eq!(&out[2..4], &80u16.to_be_bytes());
        assert_eq!(out[23], 2);
        let v4 = encode_inet("127.0.0.2:0".parse().unwrap(), &[0u8; 16]);
        assert_eq!(&v4[4..8], &[127, 0, 0, 2]);
        assert_eq!(u16::from_ne_bytes([v4[0], v4[1]]), libc::AF_INET as u16);
    }
}
