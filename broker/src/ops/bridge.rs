//! Namespace bridging (issue 19): an allowed connect, or bind (a published port), that the
//! policy's `[bridge]` names is served from another network namespace, the broker's own or one
//! named by path. The broker
//! makes a socket there of the caller's family, type and protocol, as the caller (its ids and
//! capabilities: the socket is the caller's, `SO_PEERCRED` and socket-owner matches included),
//! carries over the options that change what the connection is ([`CARRIED`], and `O_NONBLOCK`),
//! connects it to the address decided on, and puts it in place of the caller's socket, at the
//! same descriptor number (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SETFD`). Everything the program
//! does with it afterwards (send, receive, close) stays in the kernel.
//!
//! What stays the same: a send with a destination, a second connect, a `bind` or `listen` on
//! that socket still come to the broker and are decided as any other; a `bind` on a socket
//! that lives in another namespace than the caller's is refused ([`RULE_FOREIGN`]), and so is
//! its `listen` unless it is a published port ([`published`]): a policy's bind rules name the
//! sandbox's own addresses, never the bridge's. Only a policy an administrator chose may bridge ([`RULE_NOT_ADMINISTRATORS`]):
//! a policy a client sent cannot take the broker into a namespace of its choosing.
//!
//! What differs from an unbridged socket, by design: `getsockname` gives the address in the
//! bridge's namespace, and a socket bound before its connect is not bridged (its address
//! belongs to the sandbox's namespace): docs/policy.md, "Bridging".

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use netjail_policy::{BridgeNetns, Decision, Request};

use crate::bounds::limits::Slot;
use crate::call::Call;
use crate::caller::{as_caller_in, Caller};
use crate::reply::{errno_of, refusal, Reply};
use crate::sys::{self, Become, SocketKind};

/// The rule of a bridged call whose policy no administrator chose.
pub(crate) const RULE_NOT_ADMINISTRATORS: &str = "bridge:not-administrators";
/// The rule of a `bind` or `listen` on a socket of another network namespace than the
/// caller's (a bridged one).
pub(crate) const RULE_FOREIGN: &str = "bridge:foreign-socket";

/// The integer options carried from the caller's socket to the bridged one, `(level, name)`,
/// for the families they belong to: address reuse, keepalive, broadcast, Nagle, the
/// IPv6-only flag (which decides which addresses the socket reaches) and the traffic class.
/// Buffer sizes are not carried (the kernel doubles what it is given, so the value read back
/// cannot be set again as it was), nor what only a bound socket has.
pub(crate) const CARRIED: &[(i32, i32, Carried)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR, Carried::Any),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT, Carried::Any),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE, Carried::Any),
    (libc::SOL_SOCKET, libc::SO_BROADCAST, Carried::Any),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY, Carried::Tcp),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, Carried::V6),
    (libc::IPPROTO_IP, libc::IP_TOS, Carried::V4),
    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS, Carried::V6),
];

/// Which sockets an option of [`CARRIED`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Carried {
    Any,
    Tcp,
    V4,
    V6,
}

impl Carried {
    fn applies(self, kind: SocketKind) -> bool {
        match self {
            Carried::Any => true,
            Carried::Tcp => kind.sock_type == libc::SOCK_STREAM,
            Carried::V4 => kind.family == libc::AF_INET,
            Carried::V6 => kind.family == libc::AF_INET6,
        }
    }
}

/// Whether `request`, allowed, is one the policy serves from its bridge: an IP connect its
/// `[bridge] connect` names, on a socket not bound yet.
pub(crate) fn wanted(call: &Call, request: &Request, sock: BorrowedFd<'_>) -> bool {
    let Some(bridge) = call.policy.bridge() else {
        return false;
    };
    bridge.bridges(request) && !bound(sock)
}

/// The refusal of a bridged call whose policy no administrator chose (a client's), or `None`.
pub(crate) fn refused(call: &Call) -> Option<Decision> {
    (!call.sandbox.source.is_administrators())
        .then(|| refusal(RULE_NOT_ADMINISTRATORS, libc::EPERM))
}

/// Whether `sock` has a local port (an IP socket is bound once it has one).
fn bound(sock: BorrowedFd<'_>) -> bool {
    sys::sockname(sock)
        .ok()
        .as_deref()
        .and_then(crate::ops::address::local_address)
        .is_some_and(|a| a.port() != 0)
}

/// Serves the allowed connect of `call` to `sockaddr` from the bridge's namespace: a socket
/// made there as the caller, connected, and put at the caller's descriptor `fd` in place of
/// `sock`. Returns the connect's answer (`EINPROGRESS` for a non-blocking socket); a connect
/// that fails leaves the caller's socket as it was.
pub(crate) fn connect(
    call: &Call,
    fd: i32,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    sockaddr: &[u8],
    slot: Option<Slot>,
) -> Reply {
    let made = match socket_like(call, sock, kind) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let reply = {
        let _listed = call.sandbox.performing.list(made.as_fd());
        let _blocking = call.blocking();
        match sys::connect_raw(made.as_fd(), sockaddr) {
            Ok(()) => Reply::Value(0),
            Err(e) => Reply::Errno(errno_of(&e)),
        }
    };
    if !matches!(reply, Reply::Value(_) | Reply::Errno(libc::EINPROGRESS)) {
        return reply;
    }
    match crate::ops::inject::install(call, fd, made.as_fd(), slot) {
        Ok(()) => reply,
        Err(failed) => failed,
    }
}

/// Serves the allowed bind of `call` to `sockaddr` (a published port) from the bridge's
/// namespace: a socket made there as the caller, with the caller's options, bound there as the
/// caller (the privileged-port threshold is that namespace's, checked against the caller's
/// capabilities), and put at the caller's descriptor `fd` in place of `sock`. Its `listen`
/// is then allowed ([`published`]) and its `accept`s take the bridge namespace's connections
/// in the kernel. A bind that fails leaves the caller's socket as it was.
pub(crate) fn bind(
    call: &Call,
    fd: i32,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    sockaddr: &[u8],
    slot: Option<Slot>,
) -> Reply {
    let made = match socket_like(call, sock, kind) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let bound = Caller::read(call).and_then(|who| {
        as_caller_in(None, &who.identity, Become::Full, || {
            sys::bind_raw(made.as_fd(), sockaddr)
        })
    });
    match bound {
        Ok(Ok(())) => {}
        Ok(Err(e)) | Err(e) => return Reply::Errno(errno_of(&e)),
    }
    match crate::ops::inject::install(call, fd, made.as_fd(), slot) {
        Ok(()) => Reply::Value(0),
        Err(failed) => failed,
    }
}

/// Whether `sock`, a socket of another namespace than the caller's, is bound to an address the
/// bridge's `bind` patterns name (a published port the bridge put in place): its `listen` is
/// the program's, as on any socket it bound.
pub(crate) fn published(call: &Call, sock: BorrowedFd<'_>, kind: SocketKind) -> bool {
    let Some(bridge) = call.policy.bridge() else {
        return false;
    };
    let Some(local) = sys::sockname(sock)
        .ok()
        .as_deref()
        .and_then(crate::ops::address::local_address)
    else {
        return false;
    };
    let proto = crate::ops::decode::proto_of(kind.sock_type, kind.protocol);
    let bind = |addr| Request {
        op: netjail_policy::Op::Bind,
        target: netjail_policy::Target::Inet { proto, addr },
    };
    // A pattern of port 0 publishes the ephemeral port the kernel picked (the ninth red
    // team's F3: its listen was refused).
    let mut ephemeral = local;
    ephemeral.set_port(0);
    (bridge.bridges(&bind(local)) || bridge.bridges(&bind(ephemeral)))
        && in_bridge_namespace(call, sock)
}

/// A socket of `kind` made in the bridge's namespace as the caller, with the options of the
/// caller's socket `sock` that are carried; `Err`: the call's answer.
fn socket_like(call: &Call, sock: BorrowedFd<'_>, kind: SocketKind) -> Result<OwnedFd, Reply> {
    let netns = open_netns(call)?;
    let made = make_socket(call, netns.as_ref().map(AsFd::as_fd), kind)
        .map_err(|e| Reply::Errno(errno_of(&e)))?;
    carry_options(sock, made.as_fd(), kind);
    Ok(made)
}

/// The bridge's network namespace, opened (`None`: the broker's own); `ENETUNREACH` where it
/// cannot be.
fn open_netns(call: &Call) -> Result<Option<OwnedFd>, Reply> {
    let Some(bridge) = call.policy.bridge() else {
        return Err(Reply::Errno(libc::EPERM));
    };
    match bridge.netns() {
        BridgeNetns::Broker => Ok(None),
        BridgeNetns::Path(path) => match File::open(path) {
            Ok(f) => Ok(Some(OwnedFd::from(f))),
            Err(e) => {
                tracing::error!(netns = %path.display(), error = %e, "the bridge's network namespace cannot be opened");
                Err(Reply::Errno(libc::ENETUNREACH))
            }
        },
    }
}

/// A socket of `kind` made in `netns` (the broker's own when `None`) by a thread that has
/// taken the caller's identity.
fn make_socket(
    call: &Call,
    netns: Option<BorrowedFd<'_>>,
    kind: SocketKind,
) -> std::io::Result<OwnedFd> {
    let who = Caller::read(call)?;
    as_caller_in(netns, &who.identity, Become::Full, || {
        sys::socket_raw(
            kind.family,
            kind.sock_type | libc::SOCK_CLOEXEC,
            kind.protocol,
        )
    })?
}

/// Copies `O_NONBLOCK` and the options of [`CARRIED`] from the caller's socket to `made`; an
/// option that cannot be read or set is left as the new socket has it.
fn carry_options(from: BorrowedFd<'_>, made: BorrowedFd<'_>, kind: SocketKind) {
    if let Ok(true) = sys::is_nonblocking(from) {
        let _ = sys::set_nonblocking(made, true);
    }
    for &(level, name, which) in CARRIED {
        if !which.applies(kind) {
            continue;
        }
        if let Ok(value) = sys::int_option(from, level, name) {
            if let Err(e) = sys::set_int_option(made, level, name, value) {
                tracing::debug!(level, name, error = %e, "an option was not carried to a bridged socket");
            }
        }
    }
}

/// Whether the IP socket `sock` lives in another network namespace than the caller of `call`:
/// a socket a bridge put in place, here or in another sandbox that passed it on (every
/// broker looks, bridging or not). Compared by namespace cookie (`SO_NETNS_COOKIE`): the
/// caller's, learnt once per namespace from a socket made there ([`caller_cookie`]), is kept
/// by the namespace's inode. Where the broker cannot make a socket in the caller's namespace
/// (no `CAP_SYS_ADMIN` for `setns`: a broker without privilege serving a rootless container),
/// by the namespaces' inodes (`SIOCGSKNS`, which needs `CAP_NET_ADMIN` over the socket's
/// namespace: a broker has it over the namespaces of the user namespaces it owns, never over
/// the host's). Where neither can be read, the socket counts as foreign: its calls are
/// refused rather than decided as the caller's own (fail closed).
///
/// A sandbox whose policy grants no network namespace cannot leave the one it was confined
/// in (`clone`, `unshare` and `setns` refused by its filter): there the cookie of its home
/// namespace, learnt from its first caller, stands for every caller's, and a call costs one
/// `getsockopt` (a client that lied about its filter only makes more of its sockets foreign
/// to it, never a socket of another namespace its own).
pub(crate) fn foreign(call: &Call, sock: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let theirs = sys::socket_netns_cookie(sock).ok();
    let settled = !call.policy.confinement().namespaces().net;
    if let (Some(theirs), true, Some(&home)) = (theirs, settled, call.sandbox.home_netns.get()) {
        return home != theirs;
    }
    let Ok(mine) = std::fs::metadata(format!("/proc/{}/ns/net", call.notif.pid)).map(|m| m.ino())
    else {
        return true;
    };
    if let Some(theirs) = theirs {
        if let Some(cookie) = caller_cookie(call, mine) {
            if settled {
                let _ = call.sandbox.home_netns.set(cookie);
            }
            return cookie != theirs;
        }
    }
    sys::socket_netns(sock).map_or(true, |theirs| theirs != mine)
}

/// The cookie of the caller's network namespace (inode `ino`), learnt once ([`cookie_of`]).
fn caller_cookie(call: &Call, ino: u64) -> Option<u64> {
    cookie_of(call, ino, || {
        File::open(format!("/proc/{}/ns/net", call.notif.pid))
    })
}

/// The cookie of the network namespace of inode `ino`, learnt once per sandbox: from a
/// socket the broker makes itself when that is its own namespace, otherwise from one made
/// there (the namespace `open` opens) by a thread that has entered it as the caller (`None`
/// where the broker may not enter it).
fn cookie_of(call: &Call, ino: u64, open: impl FnOnce() -> std::io::Result<File>) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut known = call
        .sandbox
        .netns_cookies
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(&cookie) = known.get(&ino) {
        return Some(cookie);
    }
    let probe_socket = || sys::socket_raw(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    let own = std::fs::metadata("/proc/thread-self/ns/net").is_ok_and(|m| m.ino() == ino);
    let probe = if own {
        probe_socket().ok()?
    } else {
        let netns = open().ok()?;
        let who = Caller::read(call).ok()?;
        as_caller_in(
            Some(netns.as_fd()),
            &who.identity,
            Become::Full,
            probe_socket,
        )
        .ok()?
        .ok()?
    };
    let cookie = sys::socket_netns_cookie(probe.as_fd()).ok()?;
    known.insert(ino, cookie);
    Some(cookie)
}

/// Whether `sock` lives in the namespace the policy's bridge serves from (compared by
/// namespace cookie): a socket of another namespace than the caller's is bounded by the
/// bridge's patterns only when it is a socket of that very namespace, never one of a third
/// (a socket bridged by another sandbox's policy, from another namespace, and passed here).
fn in_bridge_namespace(call: &Call, sock: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(bridge) = call.policy.bridge() else {
        return false;
    };
    let (path, ino) = match bridge.netns() {
        BridgeNetns::Broker => {
            let path = std::path::PathBuf::from("/proc/thread-self/ns/net");
            let ino = std::fs::metadata(&path).map(|m| m.ino());
            (path, ino)
        }
        BridgeNetns::Path(path) => (path.clone(), std::fs::metadata(path).map(|m| m.ino())),
    };
    let Ok(ino) = ino else {
        return false;
    };
    let theirs = sys::socket_netns_cookie(sock).ok();
    theirs.is_some() && theirs == cookie_of(call, ino, || File::open(&path))
}

/// The refusal of an allowed connect or send on a bridged socket to a destination the bridge
/// does not name: the policy allowed it from the sandbox's namespace, not from the bridge's.
pub(crate) fn outside_bridge(
    call: &Call,
    request: &Request,
    sock: BorrowedFd<'_>,
) -> Option<Decision> {
    if !foreign(call, sock) {
        return None;
    }
    let bridged = call.policy.bridge().is_some_and(|b| b.bridges(request));
    if bridged && in_bridge_namespace(call, sock) {
        return None;
    }
    Some(refusal(RULE_FOREIGN, libc::EPERM))
}
