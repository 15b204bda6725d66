//! `connect(fd, addr, addrlen)`: decided on the broker's own copy of the address and performed
//! by the broker on its own copy of the socket (invariant 2: never CONTINUE).
//!
//! The checks run in the kernel's own order so that a bad call gets the errno the kernel would
//! give: the fd (`EBADF`), the length (`EINVAL`), the copy (`EFAULT`), the socket (`ENOTSOCK`),
//! for TCP the socket's state (a connected, listening, connecting or failed socket answers
//! before its address is read: [`state_answer`]), the address (`EINVAL`), then the policy
//! (`EPERM`) and the call itself. A UDP socket is autobound before its address is read, also
//! when the broker answers the address's errno itself (`source::autobind`).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use netjail_policy::{Op, Request, Target, Verdict};

use crate::bounds::reaper::CallerFd;
use crate::call::{Call, Step};
use crate::caller::as_thread;
use crate::hook::Served;
use crate::ops::address::{self, Reading, Use};
use crate::ops::bridge;
use crate::ops::decode;
use crate::ops::source::{self, View};
use crate::ops::unix::{self, PathUse};
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self, Become, SocketKind};
use crate::{bounds::limits, ops::netlink};

/// Decides one notified `connect`; performs it at once when it cannot wait long.
pub(crate) fn decide(call: &Call) -> Step {
    let fd = call.notif.args[0] as i32;
    let addr_ptr = call.notif.args[1];
    let len = call.notif.args[2] as i32;
    let out = Outcome::new("connect");

    let sock = match call.take_fd(fd) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    let addr = match call.copy_sockaddr(addr_ptr, len) {
        Ok(a) => a,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    // Invariant 4: the memory we read belonged to the caller, which is still waiting.
    if !call.still_valid() {
        return Step::Done(out.gone());
    }
    let kind = match sys::socket_kind(sock.as_fd()) {
        Ok(k) => k,
        Err(e) => return Step::Done(out.failed(errno_of(&e), "not-a-socket")),
    };
    if reads_state(call, kind, &addr) {
        // A connect that waits for a connection in progress waits off the receiver.
        let in_progress = !sys::is_nonblocking(sock.as_fd()).unwrap_or(false)
            && sys::tcp_state(sock.as_fd()).is_ok_and(|s| matches!(s, TCP_SYN_SENT | TCP_SYN_RECV));
        if in_progress {
            return Step::Blocking(Box::new(move |call: &Call| {
                match state_answer(call, sock.as_fd(), kind, &addr) {
                    Some(reply) => out.decided(None, "state", reply),
                    None => match decide_fresh(call, sock, kind, addr, out) {
                        Step::Done(out) => out,
                        Step::Blocking(work) => work(call),
                    },
                }
            }));
        }
        if let Some(reply) = state_answer(call, sock.as_fd(), kind, &addr) {
            return Step::Done(out.decided(None, "state", reply));
        }
    }
    decide_fresh(call, sock, kind, addr, out)
}

/// `TCP_SYN_SENT` and `TCP_SYN_RECV` (`net/tcp_states.h`).
const TCP_SYN_SENT: u8 = 2;
const TCP_SYN_RECV: u8 = 3;

/// Whether the kernel reads the state of this socket before `addr` (`__inet_stream_connect`,
/// after its length and `AF_UNSPEC` checks): a TCP socket, for a call no earlier broker may
/// have performed (a replayed connect must find its own connection: `receiver::replayed_reply`).
/// MPTCP sets up its first subflow before it reads the address, so it is left to the address.
fn reads_state(call: &Call, kind: SocketKind, addr: &[u8]) -> bool {
    let tcp = matches!(kind.family, libc::AF_INET | libc::AF_INET6)
        && kind.sock_type == libc::SOCK_STREAM
        && matches!(kind.protocol, 0 | libc::IPPROTO_TCP);
    let family = addr
        .get(..2)
        .map(|f| i32::from(u16::from_ne_bytes([f[0], f[1]])));
    tcp && !call.replayed && family.is_some_and(|f| f != libc::AF_UNSPEC)
}

/// The kernel's answer to a TCP connect (or the connect of a Fast Open send) with `addr` when
/// it gives one without reading `addr`: the socket is connected or listening (`EISCONN`),
/// connecting (`EALREADY`; on a blocking socket the call waits for the outcome), connected
/// since its last connect (0: it is now), or its connection failed (the error, or
/// `ECONNABORTED` once `SO_ERROR` took it; the socket is then reset, as the kernel resets
/// it). `None` for a fresh socket, whose connect goes where `addr` says.
///
/// The kernel itself is asked: the broker connects its copy of the socket with an address of
/// the socket's family two bytes long. `__inet_stream_connect` answers from the state first;
/// only a fresh socket gets to `tcp_v4_connect`/`tcp_v6_connect` (and their pre-connect
/// hooks), which refuse so short an address (`EINVAL`) before they do anything.
pub(crate) fn state_answer(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    addr: &[u8],
) -> Option<Reply> {
    if !reads_state(call, kind, addr) {
        return None;
    }
    let probe = (kind.family as u16).to_ne_bytes();
    match perform(call, sock, &probe) {
        Reply::Errno(libc::EINVAL) => None,
        reply => Some(reply),
    }
}

/// The rest of [`decide`], for a socket whose connect reads `addr`.
fn decide_fresh(
    call: &Call,
    sock: CallerFd,
    kind: SocketKind,
    addr: Vec<u8>,
    out: Outcome,
) -> Step {
    // Invariant 9: the address as the kernel reads it for this socket in its present state.
    let mut view = View::new(call, sock.as_fd(), kind);
    let reading = address::read(Use::Connect, kind, &mut view, Some(&addr));
    let (target, sockaddr, mut out) = match classify(call, &mut view, reading, addr, out) {
        Classified::Endpoint(target, sockaddr, out) => (target, sockaddr, out),
        Classified::Answered(out) => return Step::Done(out),
    };

    if let Target::UnixPath(path) = target {
        // Resolution may wait on a slow filesystem: always off the receiver thread.
        return Step::Blocking(Box::new(move |call: &Call| {
            connect_to_path(call, sock.as_fd(), &path, out)
        }));
    }

    let canonical = target.canonical();
    out.endpoint = canonical.to_string();
    // A netlink route socket talks to the kernel only (rule N1, `ops/netlink.rs`).
    if netlink::is_route(kind) && !netlink::to_kernel(&sockaddr) {
        let refusal = netlink::refusal(netlink::RULE_DESTINATION);
        return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
    }
    // The broker's metrics port is not a sandbox's to reach (ops/own.rs).
    if crate::ops::own::is_own_port(sock.as_fd(), &canonical) {
        let reply = Reply::Errno(crate::ops::own::ERRNO);
        return Step::Done(out.decided(Some(crate::ops::own::refusal()), "", reply));
    }
    let request = Request {
        op: Op::Connect,
        target,
    };
    let decision = call.evaluate(&request);
    match decision.verdict {
        Verdict::Deny { errno } => Step::Done(out.decided(Some(decision), "", Reply::Errno(errno))),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Step::Done(out.decided(Some(decision), "", Reply::Errno(libc::EPERM))),
        Verdict::Allow if call.is_served(&decision) => served(call, sock, request, decision, out),
        Verdict::Allow if bridge::wanted(call, &request, sock.as_fd()) => {
            bridged(call, sock, kind, sockaddr, decision, out)
        }
        Verdict::Allow => {
            if let Some(refusal) = bridge::outside_bridge(call, &request, sock.as_fd()) {
                return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
            }
            let limits = &call.sandbox.limits;
            let slot = match limits::reserve(&limits.connections, sock.as_fd()) {
                Ok(slot) => slot,
                Err(refusal) => return Step::Done(over_count(out, refusal)),
            };
            if let Err((errno, why)) = source::settle(call, &mut view, Op::Connect, &sockaddr) {
                return Step::Done(out.decided(Some(decision), why, Reply::Errno(errno)));
            }
            let long = may_wait_long(sock.as_fd(), kind, &canonical);
            let finish = move |call: &Call, out: Outcome| {
                // Listed while it runs: stopped if the whole sandbox exits meanwhile.
                let listed = call.sandbox.performing.list(sock.as_fd());
                // The bytes that name the endpoint decided, and nothing else.
                let reply = perform_as_caller(call, sock.as_fd(), kind, &sockaddr);
                drop(listed);
                limits::settle(slot, sock.as_fd(), reply);
                out.decided(Some(decision), "", reply)
            };
            if long {
                Step::Blocking(Box::new(move |call: &Call| finish(call, out)))
            } else {
                Step::Done(finish(call, out))
            }
        }
    }
}

/// An allowed connect served from the bridge's namespace (`ops/bridge.rs`), off the receiver
/// thread (it makes a thread and a socket, and may wait for the connection).
fn bridged(
    call: &Call,
    sock: CallerFd,
    kind: SocketKind,
    sockaddr: Vec<u8>,
    decision: netjail_policy::Decision,
    out: Outcome,
) -> Step {
    if let Some(refusal) = bridge::refused(call) {
        return Step::Done(out.decided(Some(refusal), "", Reply::Errno(libc::EPERM)));
    }
    let slot = match limits::reserve(&call.sandbox.limits.connections, sock.as_fd()) {
        Ok(slot) => slot,
        Err(refusal) => return Step::Done(over_count(out, refusal)),
    };
    let fd = call.notif.args[0] as i32;
    Step::Blocking(Box::new(move |call: &Call| {
        let reply = bridge::connect(call, fd, sock.as_fd(), kind, &sockaddr, slot);
        out.decided(Some(decision), "", reply)
    }))
}

/// An allowed connect the host program serves with a socket of its own (`ops/served.rs`):
/// the one its hook answered with, or one its run-time rule's server makes (off the receiver
/// thread: it may wait). Counted under `max_connections` as any connect.
fn served(
    call: &Call,
    sock: CallerFd,
    request: Request,
    decision: netjail_policy::Decision,
    out: Outcome,
) -> Step {
    let Some(how) = call.take_served() else {
        // Never: `Call::is_served` saw it; fail closed.
        return Step::Done(out.decided(Some(decision), "", Reply::Errno(libc::EPERM)));
    };
    let slot = match limits::reserve(&call.sandbox.limits.connections, sock.as_fd()) {
        Ok(slot) => slot,
        Err(refusal) => return Step::Done(over_count(out, refusal)),
    };
    let fd = call.notif.args[0] as i32;
    let finish = move |call: &Call, out: Outcome, how: Served| {
        let (reply, refused) = match how {
            Served::Socket(socket) => {
                crate::ops::served::connect(call, fd, sock.as_fd(), socket.as_fd(), slot)
            }
            Served::By(server) => crate::ops::served::connect_by(
                call,
                fd,
                sock.as_fd(),
                server.as_ref(),
                &request,
                slot,
            ),
        };
        out.decided(Some(refused.unwrap_or(decision)), "", reply)
    };
    match how {
        Served::Socket(_) => Step::Done(finish(call, out, how)),
        Served::By(_) => Step::Blocking(Box::new(move |call: &Call| finish(call, out, how))),
    }
}

/// A connect refused by `max_connections` (`refusal`).
fn over_count(out: Outcome, refusal: netjail_policy::Decision) -> Outcome {
    out.decided(Some(refusal), "", Reply::Errno(limits::COUNT_ERRNO))
}

/// What a connect's address comes to ([`classify`]).
enum Classified {
    /// The endpoint to decide on, the bytes that name it to the kernel, and the outcome to go
    /// on with.
    Endpoint(Target, Vec<u8>, Outcome),
    /// The call answered: nothing for the policy to decide on.
    Answered(Outcome),
}

/// The endpoint a connect reaches, as the kernel reads its address `addr` (`reading`),
/// classified for the policy, with the bytes the broker connects to: for IP the address as
/// read, otherwise the caller's own bytes. Where there is no endpoint to decide on, the call
/// is answered: the address's errno (a UDP socket autobound first), `EPERM` for an address
/// refused or not classified, or for an `AF_UNSPEC` connect, what the connect performed as it
/// is gives.
fn classify(
    call: &Call,
    view: &mut View<'_>,
    reading: Reading,
    addr: Vec<u8>,
    mut out: Outcome,
) -> Classified {
    let kind = view.kind();
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    match reading {
        Reading::Errno(errno) => {
            if address::is_udp(kind) && addr.len() >= 2 {
                // `inet_dgram_connect` autobinds before it reads the address.
                source::autobind(call, view);
            }
            Classified::Answered(out.failed(errno, "bad-address"))
        }
        Reading::Refused(why) => {
            out.endpoint = "unclassified".to_owned();
            let reply = Reply::Errno(libc::EPERM);
            Classified::Answered(out.decided(Some(address::refusal(why)), "", reply))
        }
        Reading::Disconnect => {
            // AF_UNSPEC dissolves the association: no destination, nothing to decide; but a
            // socket a bridge put in place keeps the connection decided (unconnected, a UDP
            // socket of the bridge's namespace would take datagrams from anyone there).
            out.endpoint = "unspec".to_owned();
            if bridge::foreign(call, view.sock()) {
                let refusal = crate::reply::refusal(bridge::RULE_FOREIGN, libc::EPERM);
                return Classified::Answered(out.decided(
                    Some(refusal),
                    "",
                    Reply::Errno(libc::EPERM),
                ));
            }
            let reply = perform(call, view.sock(), &addr);
            Classified::Answered(out.decided(None, "disconnect", reply))
        }
        Reading::Ip { ref sockaddr, .. } => match reading.target(proto) {
            Some(target) => Classified::Endpoint(target, sockaddr.clone(), out),
            None => Classified::Answered(out.failed(libc::EPERM, "unclassified")),
        },
        Reading::UnixPath(_) | Reading::UnixAbstract(_) | Reading::OtherFamily(_) => {
            match reading.target(proto) {
                Some(target) => Classified::Endpoint(target, addr, out),
                None => Classified::Answered(out.failed(libc::EPERM, "unclassified")),
            }
        }
        Reading::Local { .. } | Reading::UnixAutobind | Reading::Peer | Reading::Ignored => {
            Classified::Answered(out.failed(libc::EPERM, "unclassified"))
        }
    }
}

/// A connect to the unix socket at `path`: resolved, decided and performed as the caller
/// (`ops/unix.rs`), counted under `max_connections` when the policy allows it.
fn connect_to_path(call: &Call, sock: BorrowedFd<'_>, path: &Path, mut out: Outcome) -> Outcome {
    let limited = AtomicBool::new(false);
    let result = unix::act_on_path(
        call,
        Op::Connect,
        path,
        PathUse::Existing,
        Become::Full,
        |a| {
            let connections = &call.sandbox.limits.connections;
            limits::counted(connections, sock, || perform(call, sock, a)).unwrap_or_else(|_| {
                limited.store(true, Ordering::Relaxed);
                Reply::Errno(limits::COUNT_ERRNO)
            })
        },
    );
    out.endpoint = result.endpoint;
    let decision = if limited.load(Ordering::Relaxed) {
        Some(crate::reply::refusal(
            limits::RULE_CONNECTIONS,
            limits::COUNT_ERRNO,
        ))
    } else {
        result.decision
    };
    out.decided(decision, result.failure, result.reply)
}

/// Whether connecting may block for longer than a loopback handshake: a blocking stream
/// socket going anywhere but loopback. Such a connect is performed on the blocking pool so that
/// the sandbox's other calls are not held behind it. (A sandbox that flips `O_NONBLOCK` after
/// this check can only delay its own calls: each sandbox has its own receiver thread.)
fn may_wait_long(sock: BorrowedFd<'_>, kind: SocketKind, target: &Target) -> bool {
    if kind.sock_type == libc::SOCK_DGRAM {
        return false;
    }
    if let Target::Inet { addr, .. } = target {
        if addr.ip().is_loopback() {
            return false;
        }
    }
    !sys::is_nonblocking(sock).unwrap_or(false)
}

/// [`perform`] on the thread whose identity the kernel checks for this family: an IP
/// connect here (the kernel checks nothing of the task's credentials for it); any other
/// (an abstract unix name, netlink, ...) on a thread that has taken the caller's ids, groups
/// and capabilities, so that the peer records the caller's ids (`SO_PEERCRED`), and what the
/// kernel grants by capability (a netlink connect to a group or another port) is the
/// caller's to have.
fn perform_as_caller(call: &Call, sock: BorrowedFd<'_>, kind: SocketKind, addr: &[u8]) -> Reply {
    if matches!(kind.family, libc::AF_INET | libc::AF_INET6) {
        return perform(call, sock, addr);
    }
    as_thread(call, Become::Full, || perform(call, sock, addr))
        .unwrap_or_else(|e| Reply::Errno(errno_of(&e)))
}

/// Connects the broker's copy of the socket with the broker's copy of the address, on the
/// calling thread; a connect that blocks is interrupted once nobody waits for it
/// (`bounds/reaper.rs`).
fn perform(call: &Call, sock: BorrowedFd<'_>, addr: &[u8]) -> Reply {
    let _listed = call.blocking();
    match sys::connect_raw(sock, addr) {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(errno_of(&e)),
    }
}
