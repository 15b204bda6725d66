//! `sendto` with a destination, `sendmsg` and `sendmmsg` (rule L3: every datagram
//! destination is decided, each entry of a `sendmmsg` on its own).
//!
//! The broker copies the destination, the data and the control messages out of the caller,
//! decides on its copy, and sends its copy on its own copy of the socket (invariant 2: never
//! CONTINUE, so neither a second thread rewriting `msg_name` nor a `dup2` over the fd changes
//! what is sent). What the broker sends it sends as the caller would:
//!
//! - control messages are read as the socket's protocol reads them, in its order
//!   (`msg::kernel_reads`): a unix socket takes them before the destination, UDP after it, TCP
//!   after its state; what the protocol skips is dropped, and what it refuses is refused with
//!   its errno at its point;
//! - `SCM_RIGHTS` on a unix socket carries the caller's descriptors (taken with
//!   `pidfd_getfd`), and only when the policy allows passing descriptors (rule J5); they are
//!   limited by the caller's in-flight limit and charged to its user, as its own send would
//!   be;
//! - `SCM_CREDENTIALS` must name the caller's own process and ids, as the kernel would check
//!   them for the caller in its own user and pid namespaces (the broker's own privilege does
//!   not count), and is sent translated to the broker's; on a unix socket the broker attaches
//!   the caller's credentials itself, so a receiver with `SO_PASSCRED` sees the caller and
//!   not the broker, and a broker that cannot (no `CAP_SYS_ADMIN`) refuses the send;
//! - control messages that choose the source address or the route (`IP_PKTINFO`,
//!   `IPV6_PKTINFO`, `IP_RETOPTS`, `IPV6_RTHDR`, the IPv6 option headers) are refused unless
//!   the policy sets `source_cmsgs`, and are then sent with the caller's capabilities (as is
//!   an `SO_PRIORITY` that needs one); any other control message not known to be harmless
//!   is refused (`SO_MARK` as a control message, say, needs a capability the broker has and
//!   the sandbox has not);
//! - on a stream socket the destination is ignored by the kernel, except with `MSG_FASTOPEN`,
//!   which connects: that is decided as the connect it is;
//! - `SIGPIPE` goes to the caller where the kernel raised it for the broker's send.
//!
//! A send without a destination on a connected socket through `sendto` never reaches the
//! broker (invariant 5); through `sendmsg` it does, because the filter cannot see `msg_name`,
//! and is then sent without a decision (rule D3).

use std::os::fd::{AsFd, BorrowedFd};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::bounds;
use crate::bounds::reaper::CallerFd;
use crate::call::{Call, Step};
use crate::ops::address::{self, Reading, Use};
use crate::ops::msg::{self, Cmsg, CmsgReader, IoVec, MsgHdr};
use crate::ops::source::{self, View};
use crate::ops::unix::{self, PathUse};
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self, Become, SocketKind};
use crate::{bounds::limits, ops::connect, ops::decode};

mod cmsg;
mod delivery;
mod mmsg;

use cmsg::ip_control;
use cmsg::ip_reader;
use cmsg::unix_control;
use cmsg::SOURCE_CMSGS;
use delivery::deliver;
pub(crate) use mmsg::decide_sendmmsg;

/// The most data the broker copies for one send: a datagram larger than this is refused
/// with `EMSGSIZE` (UDP's own limit is 65,507 bytes; a unix datagram is bounded by the send
/// buffer, 208 KiB by default); a stream send is copied and sent in pieces of this size.
pub(crate) const MAX_DATA: usize = 256 * 1024;

/// Decides one notified `sendto(fd, buf, len, flags, dest, destlen)` (the filter notifies it
/// only with a destination).
pub(crate) fn decide_sendto(call: &Call) -> Step {
    let [fd, buf, len, flags, dest, destlen] = call.notif.args;
    let out = Outcome::new("sendto");
    if !user_range(buf, len) {
        return Step::Done(out.failed(libc::EFAULT, "bad-buffer"));
    }
    let (sock, kind) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    let name = match copy_name(call, dest, destlen as i32) {
        Ok(n) => n,
        Err(errno) => return Step::Done(out.failed(errno, "bad-address")),
    };
    let iov = [IoVec {
        base: buf,
        len: len.min(i64::MAX as u64),
    }];
    let message = Message {
        name,
        iov: iov.to_vec(),
        control: Ok(Vec::new()),
    };
    run(call, sock, kind, out, move |call, sock, kind| {
        let r = send_one(call, sock, kind, message, flags as i32);
        (r.decision, r.failure, r.endpoint, r.reply)
    })
}

/// `MAX_RW_COUNT`: the most bytes one read or write moves (`INT_MAX` rounded down to a page).
const MAX_RW_COUNT: u64 = (i32::MAX as u64) & !4095;

/// Whether `sendto`'s buffer passes the kernel's first check, `import_ubuf`'s `access_ok`,
/// made before it even looks up the fd: `EFAULT` for a range (its length clamped to
/// `MAX_RW_COUNT`) that wraps or reaches into the kernel's half of the address space. (The
/// exact end of user space varies with the paging mode; a range between it and the kernel's
/// half gets `EFAULT` later, when the data is read.) Only on x86_64: aarch64 lets tagged
/// pointers carry a top byte.
fn user_range(buf: u64, len: u64) -> bool {
    if !cfg!(target_arch = "x86_64") {
        return true;
    }
    buf.checked_add(len.min(MAX_RW_COUNT))
        .is_some_and(|end| end <= i64::MAX as u64)
}

/// Decides one notified `sendmsg(fd, msg, flags)`.
pub(crate) fn decide_sendmsg(call: &Call) -> Step {
    let [fd, msg_ptr, flags, ..] = call.notif.args;
    let out = Outcome::new("sendmsg");
    let (sock, kind) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    let mut raw = [0u8; msg::MSGHDR_LEN];
    if let Err(e) = sys::read_memory(call.notif.pid, msg_ptr, &mut raw) {
        return Step::Done(out.failed(errno_of(&e), "bad-address"));
    }
    let message = match read_message(call, &MsgHdr::parse(&raw)) {
        Ok(m) => m,
        Err(errno) => return Step::Done(out.failed(errno, "bad-message")),
    };
    run(call, sock, kind, out, move |call, sock, kind| {
        let r = send_one(call, sock, kind, message, flags as i32);
        (r.decision, r.failure, r.endpoint, r.reply)
    })
}

/// What one message came to.
pub(super) struct Sent {
    /// The decision, when sending made one of its own (a route message refused, rule N1);
    /// the policy's otherwise.
    decision: Option<Decision>,
    failure: &'static str,
    endpoint: String,
    reply: Reply,
}

impl Sent {
    fn failed(errno: i32, why: &'static str) -> Sent {
        Sent {
            decision: None,
            failure: why,
            endpoint: String::new(),
            reply: Reply::Errno(errno),
        }
    }

    /// Nothing sent: `decision` refuses the message with `errno`.
    fn refused(decision: Decision, errno: i32) -> Sent {
        Sent {
            decision: Some(decision),
            failure: "",
            endpoint: String::new(),
            reply: Reply::Errno(errno),
        }
    }
}

/// One message, copied: destination bytes, where its data lies in the caller, and its
/// control messages (`Err`: the kernel refuses the buffer, `EINVAL`; answered where the
/// kernel's own code for the socket would answer it).
pub(super) struct Message {
    /// `None`: no destination. `sendto` with a pointer and length 0 gives an empty one,
    /// which the kernel hands to the protocol as it is (UDP refuses it, a unix datagram
    /// socket reads it as no destination); `sendmsg` with length 0 gives none.
    name: Option<Vec<u8>>,
    iov: Vec<IoVec>,
    control: Result<Vec<Cmsg>, i32>,
}

/// Copies a destination (`__sys_sendto`): no pointer is no destination; a negative or too
/// long length is `EINVAL` (`move_addr_to_kernel`).
fn copy_name(call: &Call, ptr: u64, len: i32) -> Result<Option<Vec<u8>>, i32> {
    if ptr == 0 {
        return Ok(None);
    }
    call.copy_sockaddr(ptr, len)
        .map(Some)
        .map_err(|(errno, _)| errno)
}

/// Copies what a `msghdr` points at, with the kernel's limits and errnos (data stays in the
/// caller until it is sent).
pub(super) fn read_message(call: &Call, hdr: &MsgHdr) -> Result<Message, i32> {
    let pid = call.notif.pid;
    // `__copy_msghdr`: no pointer or no length is no name.
    let name_len = hdr.name_len()?;
    let name = if name_len == 0 {
        None
    } else {
        let mut name = vec![0u8; name_len];
        sys::read_memory(pid, hdr.name, &mut name).map_err(|e| errno_of(&e))?;
        Some(name)
    };
    let count = hdr.iov_count()?;
    let mut raw_iov = vec![0u8; count * msg::IOVEC_LEN];
    sys::read_memory(pid, hdr.iov, &mut raw_iov).map_err(|e| errno_of(&e))?;
    let (iov, _) = msg::iovecs(&raw_iov, count)?;
    let control_len = hdr.control_len()?;
    let mut raw_control = vec![0u8; control_len];
    sys::read_memory(pid, hdr.control, &mut raw_control).map_err(|e| errno_of(&e))?;
    let control = msg::cmsgs(&raw_control);
    Ok(Message { name, iov, control })
}

/// Runs `work` inline when it cannot wait long, or on the blocking pool: a blocking stream
/// or unix socket may wait for its peer to read, for as long as the peer likes.
pub(super) fn run(
    call: &Call,
    sock: CallerFd,
    kind: SocketKind,
    mut out: Outcome,
    work: impl FnOnce(&Call, BorrowedFd<'_>, SocketKind) -> (Option<Decision>, &'static str, String, Reply)
        + Send
        + 'static,
) -> Step {
    if !call.still_valid() {
        return Step::Done(out.gone());
    }
    let may_wait = (kind.sock_type == libc::SOCK_STREAM || kind.family == libc::AF_UNIX)
        && !sys::is_nonblocking(sock.as_fd()).unwrap_or(false);
    let finish = move |call: &Call, mut out: Outcome| {
        let (decision, failure, endpoint, reply) = work(call, sock.as_fd(), kind);
        out.endpoint = endpoint;
        out.decided(decision, failure, reply)
    };
    if may_wait {
        Step::Blocking(Box::new(move |call: &Call| finish(call, out)))
    } else {
        out = finish(call, out);
        Step::Done(out)
    }
}

/// What a message with a destination is, by the socket it is sent on: a Fast Open send on a
/// stream socket connects (rule J3), and so does a destination on an SCTP send, which sets up
/// an association on one-to-one (`SOCK_STREAM`) and one-to-many (`SOCK_SEQPACKET`) sockets
/// alike; any other destination is a send.
fn send_op(kind: SocketKind, flags: i32) -> (Use, Op) {
    let inet = kind.family == libc::AF_INET || kind.family == libc::AF_INET6;
    if kind.sock_type == libc::SOCK_STREAM && flags & libc::MSG_FASTOPEN != 0 {
        (Use::FastOpen, Op::Connect)
    } else if inet && kind.protocol == libc::IPPROTO_SCTP {
        (Use::Send, Op::Connect)
    } else {
        (Use::Send, Op::Send)
    }
}

/// What the kernel checks of a send before it reads the destination, in its order; what is
/// left of the control messages to send replaces `message.control`:
///
/// - a unix socket takes its control messages first (`__scm_send`, see [`unix_control`]);
/// - UDP to an IPv4 destination refuses a datagram over 65,535 bytes and `MSG_OOB` first
///   ([`udp_first`]);
/// - a socket of another family, or another IP protocol, has its control buffer refused
///   when it is malformed (`EINVAL`); the broker does not read those protocols' messages.
///
/// TCP and UDP read their control messages after the destination ([`ip_control`]).
fn first_checks(
    call: &Call,
    view: &mut View<'_>,
    message: &mut Message,
    flags: i32,
) -> Result<(), (i32, &'static str)> {
    let kind = view.kind();
    if kind.family == libc::AF_UNIX {
        message.control = Ok(unix_control(call, &message.control)?);
        return Ok(());
    }
    if address::is_udp(kind) {
        let total = message.iov.iter().map(|v| v.len).sum();
        if let Some(errno) = udp_first(kind, view, message.name.as_deref(), total, flags) {
            return Err((errno, "udp"));
        }
    }
    let read_later = ip_reader(view.sock(), kind, Some(false)).is_some();
    match &message.control {
        Err(errno) if !read_later => Err((*errno, "bad-control")),
        _ => Ok(()),
    }
}

/// `udp_sendmsg`'s first checks: `EMSGSIZE` for a datagram over 65,535 bytes, then
/// `EOPNOTSUPP` for `MSG_OOB`, before the destination is read. They apply to every
/// destination given to an IPv4 socket, and to an `AF_INET` or IPv4-mapped one given to an
/// IPv6 socket (which `udpv6_sendmsg` hands to `udp_sendmsg` after its own family checks,
/// unless the socket is IPv6-only: `ENETUNREACH`, the address table's answer). A send
/// without a destination is the kernel's to answer.
fn udp_first(
    kind: SocketKind,
    state: &mut dyn address::SocketState,
    name: Option<&[u8]>,
    total: u64,
    flags: i32,
) -> Option<i32> {
    let name = name?;
    let v4 = if kind.family == libc::AF_INET {
        true
    } else {
        let family = name
            .get(..2)
            .map(|f| i32::from(u16::from_ne_bytes([f[0], f[1]])));
        let mapped = name.len() >= 24 && name[8..20] == V4_MAPPED_PREFIX;
        match family {
            Some(libc::AF_INET) => !state.v6only(),
            Some(libc::AF_INET6) if mapped => !state.v6only(),
            _ => false,
        }
    };
    if !v4 {
        None
    } else if total > 0xFFFF {
        Some(libc::EMSGSIZE)
    } else if flags & libc::MSG_OOB != 0 {
        Some(libc::EOPNOTSUPP)
    } else {
        None
    }
}

/// A Fast Open send on a TCP socket that is not fresh, whose state the kernel answered from
/// (`connect::state_answer`): a connection found complete (0) carries the data as a send on
/// it, as the kernel's own Fast Open would go on to send it; any other answer is the send's.
fn fast_open_on_a_used_socket(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    message: &mut Message,
    flags: i32,
    answer: Reply,
) -> Sent {
    match answer {
        Reply::Value(_) => {
            message.control = ip_control(CmsgReader::Tcp, &message.control);
            let mut r = deliver(call, sock, kind, &[], message, flags & !libc::MSG_FASTOPEN);
            r.decision = bound_decision(r.failure, r.reply, None);
            if r.failure.is_empty() {
                r.failure = "state";
            }
            r
        }
        Reply::Errno(errno) => Sent::failed(errno, "state"),
        // A connect the broker performs answers a value or an errno, never these; were it
        // to, nothing is sent.
        Reply::Answered(_) | Reply::Continue => Sent::failed(libc::EIO, "state"),
    }
}

/// Decides and sends one message. Its destination is read as the kernel will read it for
/// this socket in its present state (invariant 9), and what is sent names exactly the
/// endpoint decided.
pub(super) fn send_one(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    mut message: Message,
    flags: i32,
) -> Sent {
    // With MSG_ZEROCOPY the kernel transmits from the sender's pages after the call returns:
    // here the broker's copy, which it frees and reuses at once (its heap, other sandboxes'
    // data, would go on the wire). No policy allows it through the broker.
    if flags & libc::MSG_ZEROCOPY != 0 {
        return Sent::failed(libc::EPERM, "zerocopy");
    }
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    let (usage, op) = send_op(kind, flags);
    let mut view = View::new(call, sock, kind);
    let udp = address::is_udp(kind);
    // What the kernel checks before the destination, in its order (see `first_checks`).
    if let Err((errno, why)) = first_checks(call, &mut view, &mut message, flags) {
        if udp {
            source::autobind(call, &mut view);
        }
        return Sent::failed(errno, why);
    }
    if usage == Use::FastOpen {
        // A Fast Open send connects only a fresh socket: on any other the kernel answers
        // from the socket's state before it reads the destination (`tcp_sendmsg_fastopen`).
        let name = message.name.as_deref().unwrap_or(&[]);
        if let Some(reply) = connect::state_answer(call, sock, kind, name) {
            return fast_open_on_a_used_socket(call, sock, kind, &mut message, flags, reply);
        }
    }
    let reading = address::read(usage, kind, &mut view, message.name.as_deref());
    let name = message.name.clone().unwrap_or_default();
    let name = name.as_slice();
    let (target, sockaddr) = match reading {
        Reading::Errno(errno) => {
            if udp {
                // UDP reads the destination after the socket's autobind.
                source::autobind(call, &mut view);
            }
            return Sent::failed(errno, "bad-address");
        }
        Reading::Refused(why) => {
            return Sent {
                endpoint: "unclassified".to_owned(),
                ..Sent::refused(address::refusal(why), libc::EPERM)
            }
        }
        Reading::Peer | Reading::Ignored => {
            // No destination, or one the kernel ignores: sent as the caller gave it (D3).
            let endpoint = if reading == Reading::Ignored {
                "ignored-destination".to_owned()
            } else {
                String::new()
            };
            return send_unaddressed(call, sock, kind, endpoint, name, &mut message, flags);
        }
        Reading::UnixPath(path) => {
            return send_to_path(call, sock, kind, op, &path, &message, flags)
        }
        Reading::Ip { ref sockaddr, .. } => match reading.target(proto) {
            Some(target) => (target, sockaddr.clone()),
            None => return Sent::failed(libc::EPERM, "unclassified"),
        },
        Reading::UnixAbstract(_) | Reading::OtherFamily(_) => match reading.target(proto) {
            Some(target) => (target, name.to_vec()),
            None => return Sent::failed(libc::EPERM, "unclassified"),
        },
        Reading::Local { .. } | Reading::UnixAutobind | Reading::Disconnect => {
            return Sent::failed(libc::EPERM, "unclassified")
        }
    };
    decide_and_deliver(call, &mut view, op, target, &sockaddr, &mut message, flags)
}

/// A message the kernel sends without reading its destination `name` (none given, or one it
/// ignores), sent as the caller gave it, without a decision (rule D3), and recorded as sent
/// to `endpoint`: control messages an IP socket's protocol refuses go to the kernel as a
/// refused buffer.
fn send_unaddressed(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    endpoint: String,
    name: &[u8],
    message: &mut Message,
    flags: i32,
) -> Sent {
    let some_control = !matches!(&message.control, Ok(list) if list.is_empty());
    if let Some(reader) = some_control.then(|| ip_reader(sock, kind, None)).flatten() {
        // Refused control messages go to the kernel as a refused buffer, which it
        // answers after what it checks first (a peer, a connection).
        message.control = ip_control(reader, &message.control);
    }
    let mut r = deliver(call, sock, kind, name, message, flags);
    r.endpoint = endpoint;
    if r.decision.is_none() {
        r.decision = bound_decision(r.failure, r.reply, None);
    }
    if r.failure.is_empty() {
        r.failure = "no-destination";
    }
    r
}

/// What TCP and UDP check of a send to an IP destination (`dest_v6`: an IPv6 one) once they
/// have read it, before the policy is asked: their control messages, which replace
/// `message.control` (UDP refuses a bad one at once, after the socket's autobind), and a zero
/// destination with a control message that chooses the source address, where it would go is
/// not classified (`EPERM`). `Err`: the message as answered, without its endpoint.
fn ip_checks(
    call: &Call,
    view: &mut View<'_>,
    message: &mut Message,
    dest_v6: bool,
) -> Result<(), Sent> {
    if let Some(reader) = ip_reader(view.sock(), view.kind(), Some(dest_v6)) {
        message.control = ip_control(reader, &message.control);
        if address::is_udp(view.kind()) {
            if let Err(errno) = message.control {
                // UDP takes its control messages after the destination, before it sends
                // anything.
                source::autobind(call, view);
                return Err(Sent::failed(errno, "bad-control"));
            }
        }
    }
    let chosen = message.control.as_ref().is_ok_and(|c| carries_source(c));
    if chosen && unspecified(message.name.as_deref().unwrap_or(&[])) {
        // A zero destination goes to the source address, which the control message
        // chooses: not classified.
        let refusal = address::refusal("source-chosen-destination");
        return Err(Sent::refused(refusal, libc::EPERM));
    }
    Ok(())
}

/// Decides `op` to `target` and, when the policy allows, sends the message to `sockaddr`,
/// the bytes that name the endpoint decided. Before the policy: what an IP protocol checks
/// once it has read the destination ([`ip_checks`]), and for a send that connects, the
/// broker's own port. Allowed, a send that connects counts under `max_connections`, and the
/// socket's source is settled first (`source::settle`).
fn decide_and_deliver(
    call: &Call,
    view: &mut View<'_>,
    op: Op,
    target: Target,
    sockaddr: &[u8],
    message: &mut Message,
    flags: i32,
) -> Sent {
    let (sock, kind) = (view.sock(), view.kind());
    let endpoint = target.canonical().to_string();
    if let Target::Inet { addr, .. } = &target {
        if let Err(sent) = ip_checks(call, view, message, addr.is_ipv6()) {
            return Sent { endpoint, ..sent };
        }
    }
    // A Fast Open send connects: the broker's metrics port is not a sandbox's to reach.
    if op == Op::Connect && crate::ops::own::is_own_port(sock, &target) {
        return Sent {
            endpoint,
            ..Sent::refused(crate::ops::own::refusal(), crate::ops::own::ERRNO)
        };
    }
    let request = Request { op, target };
    let decision = call.evaluate(&request);
    let refused = match decision.verdict {
        Verdict::Deny { errno } => Some(errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Some(libc::EPERM),
        Verdict::Allow => None,
    };
    if let Some(errno) = refused {
        return Sent {
            endpoint,
            ..Sent::refused(decision, errno)
        };
    }
    if let Some(refusal) = refused_elsewhere(call, &request, &decision, sock) {
        return Sent {
            endpoint,
            ..Sent::refused(refusal, libc::EPERM)
        };
    }
    // A send that connects counts under `max_connections` as a connect does.
    let connections = &call.sandbox.limits.connections;
    let slot = match op {
        Op::Connect => match limits::reserve(connections, sock) {
            Ok(slot) => slot,
            Err(refusal) => {
                return Sent {
                    endpoint,
                    ..Sent::refused(refusal, limits::COUNT_ERRNO)
                }
            }
        },
        _ => None,
    };
    if let Err((errno, why)) = source::settle(call, view, op, sockaddr) {
        return Sent {
            decision: Some(decision),
            failure: why,
            endpoint,
            reply: Reply::Errno(errno),
        };
    }
    let mut r = deliver(call, sock, kind, sockaddr, message, flags);
    if op == Op::Connect {
        limits::settle(slot, sock, r.reply);
    }
    if r.decision.is_none() {
        r.decision = bound_decision(r.failure, r.reply, Some(decision));
    }
    r.endpoint = endpoint;
    r
}

/// The refusal of an allowed send that another part of the broker answers for: one whose
/// destination the host program serves (a Fast Open or SCTP send with a destination is
/// decided as a connect; the host program serves `connect()` calls only, and the send is never
/// made from the program's own socket past it), or one on a socket of another namespace to a
/// destination outside the bridge (`ops/bridge.rs`).
fn refused_elsewhere(
    call: &Call,
    request: &Request,
    decision: &Decision,
    sock: BorrowedFd<'_>,
) -> Option<Decision> {
    if call.is_served(decision) {
        drop(call.take_served());
        return Some(crate::reply::refusal(
            crate::hook::RULE_SERVE_NOT_CONNECT,
            libc::EPERM,
        ));
    }
    crate::ops::bridge::outside_bridge(call, request, sock)
}

/// A message refused by one of the broker's bounds (`bounds/mod.rs`) is decided by that bound,
/// whatever the policy said of its destination.
fn bound_decision(
    failure: &'static str,
    reply: Reply,
    decision: Option<Decision>,
) -> Option<Decision> {
    match reply {
        Reply::Errno(errno) if failure.starts_with(bounds::RULE_PREFIX) => {
            Some(crate::reply::refusal(failure, errno))
        }
        _ => decision,
    }
}

/// A datagram to a unix path: resolved, decided and sent as the caller (see `ops/unix.rs`).
fn send_to_path(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    op: Op,
    path: &std::path::Path,
    message: &Message,
    flags: i32,
) -> Sent {
    let mut result = None;
    let r = unix::act_on_path(
        call,
        op,
        path,
        PathUse::Existing,
        Become::Filesystem,
        |addr| {
            let sent = deliver(call, sock, kind, addr, message, flags);
            let reply = sent.reply;
            result = Some(sent);
            reply
        },
    );
    let failure = result.map_or(r.failure, |s| s.failure);
    Sent {
        decision: bound_decision(failure, r.reply, r.decision),
        failure,
        endpoint: r.endpoint,
        reply: r.reply,
    }
}

/// Whether an IP `sockaddr` names the unspecified address (`0.0.0.0`, `::`,
/// `::ffff:0.0.0.0`), in any family field the kernel reads as IP.
fn unspecified(name: &[u8]) -> bool {
    match name.len() {
        n if n >= 24 && name[..2] == (libc::AF_INET6 as u16).to_ne_bytes() => {
            let ip = &name[8..24];
            ip.iter().all(|&b| b == 0) || (ip[..12] == V4_MAPPED_PREFIX && ip[12..] == [0; 4])
        }
        n if n >= 8 => name[4..8] == [0; 4],
        _ => false,
    }
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// Whether control messages choose the source address (and so where a zero destination
/// goes).
fn carries_source(control: &[Cmsg]) -> bool {
    control
        .iter()
        .any(|c| SOURCE_CMSGS.contains(&(c.level, c.kind)))
}

#[cfg(test)]
mod tests;
