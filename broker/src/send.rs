//! `sendto` with a destination, `sendmsg` and `sendmmsg` (rule L3: every datagram
//! destination is decided, each entry of a `sendmmsg` on its own).
//!
//! The broker copies the destination, the data and the control messages out of the caller,
//! decides on its copy, and sends its copy on its own copy of the socket (invariant 2: never
//! CONTINUE, so neither a second thread rewriting `msg_name` nor a `dup2` over the fd changes
//! what is sent). What the broker sends it sends as the caller would:
//!
//! - `SCM_RIGHTS` carries the caller's descriptors (taken with `pidfd_getfd`), and only when
//!   the policy allows passing descriptors (rule J5);
//! - `SCM_CREDENTIALS` must name the caller's own process and ids, as the kernel would check
//!   them for the caller (the broker's own privilege does not count); on a unix socket the
//!   broker attaches the caller's credentials itself, so a receiver with `SO_PASSCRED` sees the
//!   caller and not the broker;
//! - control messages that choose the source address or the route (`IP_PKTINFO`,
//!   `IPV6_PKTINFO`, `IP_RETOPTS`, `IPV6_RTHDR`, the IPv6 option headers) are refused unless
//!   the policy sets `source_cmsgs`, and any control message not known to be harmless is
//!   refused (`SO_MARK` as a control message, say, needs a capability the broker has and the
//!   sandbox has not);
//! - on a stream socket the destination is ignored by the kernel, except with `MSG_FASTOPEN`,
//!   which connects: that is decided as the connect it is.
//!
//! A send without a destination on a connected socket through `sendto` never reaches the
//! broker (invariant 5); through `sendmsg` it does, because the filter cannot see `msg_name`,
//! and is then sent without a decision (rule D3).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::address::{self, Reading, Use};
use crate::caller::{as_thread, Caller};
use crate::decode;
use crate::handler::{errno_of, Call, Outcome, Reply, Step};
use crate::msg::{self, Cmsg, IoVec, MsgHdr};
use crate::source::{self, View};
use crate::sys::{self, Become, SocketKind};
use crate::unix::{self, PathUse};

/// The most data the broker copies for one send: a datagram larger than this is refused
/// with `EMSGSIZE` (UDP's own limit is 65,507 bytes; a unix datagram is bounded by the send
/// buffer, 208 KiB by default); a stream send is copied and sent in pieces of this size.
pub(crate) const MAX_DATA: usize = 256 * 1024;

/// `IP_RETOPTS` (`linux/in.h`), absent from the libc crate.
const IP_RETOPTS: i32 = 7;
/// Source- and route-choosing control messages (see the module documentation).
const SOURCE_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_PKTINFO),
    (libc::SOL_IP, IP_RETOPTS),
    (libc::SOL_IPV6, libc::IPV6_PKTINFO),
    (libc::SOL_IPV6, libc::IPV6_2292PKTINFO),
    (libc::SOL_IPV6, libc::IPV6_RTHDR),
    (libc::SOL_IPV6, libc::IPV6_2292RTHDR),
    (libc::SOL_IPV6, libc::IPV6_HOPOPTS),
    (libc::SOL_IPV6, libc::IPV6_2292HOPOPTS),
    (libc::SOL_IPV6, libc::IPV6_DSTOPTS),
    (libc::SOL_IPV6, libc::IPV6_2292DSTOPTS),
    (libc::SOL_IPV6, libc::IPV6_RTHDRDSTOPTS),
];
/// `UDP_SEGMENT` (`linux/udp.h`).
const UDP_SEGMENT: i32 = 103;
/// Control messages that change nothing about where a message goes or who sent it.
const HARMLESS_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_TTL),
    (libc::SOL_IP, libc::IP_TOS),
    (libc::SOL_IPV6, libc::IPV6_HOPLIMIT),
    (libc::SOL_IPV6, libc::IPV6_TCLASS),
    (libc::SOL_IPV6, libc::IPV6_DONTFRAG),
    (libc::SOL_UDP, UDP_SEGMENT),
    (libc::SOL_SOCKET, libc::SO_TIMESTAMPING),
    (libc::SOL_SOCKET, libc::SCM_TXTIME),
];

/// Decides one notified `sendto(fd, buf, len, flags, dest, destlen)` (the filter notifies it
/// only with a destination).
pub(crate) fn decide_sendto(call: &Call) -> Step {
    let [fd, buf, len, flags, dest, destlen] = call.notif.args;
    let out = Outcome::new("sendto");
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
        control: Vec::new(),
    };
    run(call, sock, kind, out, move |call, sock, kind| {
        let r = send_one(call, sock, kind, message, flags as i32);
        (r.decision, r.failure, r.endpoint, r.reply)
    })
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

/// Decides one notified `sendmmsg(fd, msgvec, vlen, flags)`: the entries in order, each
/// decided on its own, stopping at the first that fails. As in the kernel, the count of
/// messages sent is returned when it is not zero, and each sent entry's `msg_len` is written
/// back into the caller's vector.
pub(crate) fn decide_sendmmsg(call: &Call) -> Step {
    let [fd, vec_ptr, vlen, flags, ..] = call.notif.args;
    let out = Outcome::new("sendmmsg");
    let (sock, kind) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    // The kernel clamps vlen (an unsigned int) to UIO_MAXIOV.
    let count = (vlen as u32 as u64).min(msg::UIO_MAXIOV) as usize;
    let mut vector = vec![0u8; count * msg::MMSGHDR_LEN];
    if let Err(e) = sys::read_memory(call.notif.pid, vec_ptr, &mut vector) {
        return Step::Done(out.failed(errno_of(&e), "bad-address"));
    }
    run(call, sock, kind, out, move |call, sock, kind| {
        let mut sent = 0usize;
        let mut last: Option<Sent> = None;
        let mut endpoints = Vec::new();
        for i in 0..count {
            let entry = &vector[i * msg::MMSGHDR_LEN..(i + 1) * msg::MMSGHDR_LEN];
            let r = match read_message(call, &MsgHdr::parse(entry)) {
                Ok(m) => send_one(call, sock, kind, m, flags as i32),
                Err(errno) => Sent::failed(errno, "bad-message"),
            };
            if !r.endpoint.is_empty() && endpoints.len() < 8 {
                endpoints.push(r.endpoint.clone());
            }
            let ok = match r.reply {
                Reply::Value(n) => {
                    let at = vec_ptr + (i * msg::MMSGHDR_LEN + msg::MMSG_LEN_OFFSET) as u64;
                    sys::write_memory(call.notif.pid, at, &(n as u32).to_ne_bytes()).is_ok()
                }
                Reply::Errno(_) => false,
            };
            let failed = !ok;
            last = Some(r);
            if failed {
                break;
            }
            sent += 1;
        }
        let last = last.unwrap_or_else(|| Sent::failed(0, ""));
        let reply = if sent > 0 || count == 0 {
            Reply::Value(sent as i64)
        } else {
            last.reply
        };
        (last.decision, last.failure, endpoints.join(" "), reply)
    })
}

/// What one message came to.
struct Sent {
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
}

/// One message, copied: destination bytes, where its data lies in the caller, and its
/// control messages.
struct Message {
    /// `None`: no destination. `sendto` with a pointer and length 0 gives an empty one,
    /// which the kernel hands to the protocol as it is (UDP refuses it, a unix datagram
    /// socket reads it as no destination); `sendmsg` with length 0 gives none.
    name: Option<Vec<u8>>,
    iov: Vec<IoVec>,
    control: Vec<Cmsg>,
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
fn read_message(call: &Call, hdr: &MsgHdr) -> Result<Message, i32> {
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
    let control = msg::cmsgs(&raw_control)?;
    Ok(Message { name, iov, control })
}

/// Runs `work` inline when it cannot wait long, or on the blocking pool: a blocking stream
/// or unix socket may wait for its peer to read, for as long as the peer likes.
fn run(
    call: &Call,
    sock: OwnedFd,
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

/// Decides and sends one message. Its destination is read as the kernel will read it for
/// this socket in its present state (invariant 9), and what is sent names exactly the
/// endpoint decided.
fn send_one(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    message: Message,
    flags: i32,
) -> Sent {
    let proto = decode::proto_of(kind.sock_type, kind.protocol);
    // TCP Fast Open connects: decided as the connect it is (rule J3).
    let (usage, op) = if kind.sock_type == libc::SOCK_STREAM && flags & libc::MSG_FASTOPEN != 0 {
        (Use::FastOpen, Op::Connect)
    } else {
        (Use::Send, Op::Send)
    };
    let mut view = View::new(call, sock, kind);
    let reading = address::read(usage, kind, &mut view, message.name.as_deref());
    let name = message.name.as_deref().unwrap_or(&[]);
    let (target, sockaddr) = match reading {
        Reading::Errno(errno) => return Sent::failed(errno, "bad-address"),
        Reading::Refused(why) => {
            return Sent {
                decision: Some(address::refusal(why)),
                failure: "",
                endpoint: "unclassified".to_owned(),
                reply: Reply::Errno(libc::EPERM),
            }
        }
        Reading::Peer | Reading::Ignored => {
            // No destination, or one the kernel ignores: sent as the caller gave it (D3).
            let endpoint = if reading == Reading::Ignored {
                "ignored-destination".to_owned()
            } else {
                String::new()
            };
            let mut r = deliver(call, sock, kind, name, &message, flags);
            r.endpoint = endpoint;
            if r.failure.is_empty() {
                r.failure = "no-destination";
            }
            return r;
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
    let endpoint = target.canonical().to_string();
    if let Target::Inet { .. } = target {
        if !message.control.is_empty() && unspecified(name) && carries_source(&message.control) {
            // A zero destination goes to the source address, which the control message
            // chooses: not classified.
            return Sent {
                decision: Some(address::refusal("source-chosen-destination")),
                failure: "",
                endpoint,
                reply: Reply::Errno(libc::EPERM),
            };
        }
    }
    let decision = call.evaluate(&Request { op, target });
    let refused = match decision.verdict {
        Verdict::Deny { errno } => Some(errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Some(libc::EPERM),
        Verdict::Allow => None,
    };
    if let Some(errno) = refused {
        return Sent {
            decision: Some(decision),
            failure: "",
            endpoint,
            reply: Reply::Errno(errno),
        };
    }
    if let Err((errno, why)) = source::settle(call, &mut view, op, &sockaddr) {
        return Sent {
            decision: Some(decision),
            failure: why,
            endpoint,
            reply: Reply::Errno(errno),
        };
    }
    let mut r = deliver(call, sock, kind, &sockaddr, &message, flags);
    r.decision = Some(decision);
    r.endpoint = endpoint;
    r
}

/// A datagram to a unix path: resolved, decided and sent as the caller (see `unix.rs`).
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
        decision: r.decision,
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

/// [`deliver_here`] for the IP and unix families; for any other family (netlink, say) on a
/// thread that has taken the caller's whole identity, capabilities included: such messages
/// can ask the kernel for changes that it grants by the sender's capabilities, and the sender
/// must be the sandbox, not the root broker.
fn deliver(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    name: &[u8],
    message: &Message,
    flags: i32,
) -> Sent {
    if matches!(kind.family, libc::AF_INET | libc::AF_INET6 | libc::AF_UNIX) {
        return deliver_here(call, sock, kind, name, message, flags);
    }
    as_thread(call.notif.pid, Become::Full, || {
        deliver_here(call, sock, kind, name, message, flags)
    })
    .unwrap_or_else(|e| Sent::failed(errno_of(&e), "identity"))
}

/// Checks and translates the control messages, copies the data and sends it to `name`.
fn deliver_here(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    name: &[u8],
    message: &Message,
    flags: i32,
) -> Sent {
    let mut held = Vec::new();
    let control = match control(call, kind, &message.control, &mut held) {
        Ok(c) => c,
        Err((errno, why)) => return Sent::failed(errno, why),
    };
    let total: u64 = message.iov.iter().map(|v| v.len).sum();
    let stream = kind.sock_type == libc::SOCK_STREAM;
    if !stream && total > MAX_DATA as u64 {
        return Sent::failed(libc::EMSGSIZE, "too-large");
    }
    let mut gather = Gather::new(&message.iov);
    let mut sent_total = 0usize;
    let mut first = true;
    loop {
        let chunk = match gather.next(call.notif.pid, MAX_DATA) {
            Ok(c) => c,
            Err(errno) if sent_total == 0 => return Sent::failed(errno, "bad-buffer"),
            Err(_) => break,
        };
        if !first && chunk.is_empty() {
            break;
        }
        let cmsgs: &[u8] = if first { &control } else { &[] };
        match sys::sendmsg_raw(sock, name, &chunk, cmsgs, flags & !libc::MSG_NOSIGNAL) {
            Ok(n) => {
                sent_total += n;
                if n < chunk.len() || !stream {
                    break;
                }
            }
            Err(e) if sent_total == 0 => {
                let errno = errno_of(&e);
                if errno == libc::EPIPE && flags & libc::MSG_NOSIGNAL == 0 {
                    // The caller's own send would have raised SIGPIPE in the caller.
                    let _ = sys::pidfd_signal_thread(call.pidfd.as_fd(), libc::SIGPIPE);
                }
                return Sent::failed(errno, "");
            }
            Err(_) => break,
        }
        first = false;
        if gather.done() || !call.still_valid() {
            break;
        }
    }
    drop(held);
    Sent {
        decision: None,
        failure: "",
        endpoint: String::new(),
        reply: Reply::Value(sent_total as i64),
    }
}

/// Reads the caller's iovecs piece by piece.
struct Gather<'a> {
    iov: &'a [IoVec],
    index: usize,
    offset: u64,
}

impl<'a> Gather<'a> {
    fn new(iov: &'a [IoVec]) -> Self {
        Gather {
            iov,
            index: 0,
            offset: 0,
        }
    }

    fn done(&self) -> bool {
        self.iov[self.index..]
            .iter()
            .enumerate()
            .all(|(i, v)| v.len == if i == 0 { self.offset } else { 0 })
    }

    /// The next at most `max` bytes.
    fn next(&mut self, pid: u32, max: usize) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        while out.len() < max && self.index < self.iov.len() {
            let v = self.iov[self.index];
            let left = v.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let take = left.min((max - out.len()) as u64) as usize;
            let start = out.len();
            out.resize(start + take, 0);
            sys::read_memory(pid, v.base + self.offset, &mut out[start..])
                .map_err(|e| errno_of(&e))?;
            self.offset += take as u64;
        }
        Ok(out)
    }
}

/// The control messages the broker sends: checked against the policy, `SCM_RIGHTS`
/// translated to the broker's copies of the caller's descriptors (kept alive in `held`),
/// `SCM_CREDENTIALS` checked against the caller, and on a unix socket the caller's own
/// credentials attached when it gave none.
fn control(
    call: &Call,
    kind: SocketKind,
    given: &[Cmsg],
    held: &mut Vec<OwnedFd>,
) -> Result<Vec<u8>, (i32, &'static str)> {
    let confine = call.policy.confinement();
    let unix = kind.family == libc::AF_UNIX;
    let mut out = Vec::with_capacity(given.len() + 1);
    let mut caller: Option<Caller> = None;
    let mut creds_given = false;
    for c in given {
        match (c.level, c.kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                if !confine.scm_rights() {
                    return Err((libc::EPERM, "scm-rights"));
                }
                let fds = msg::rights(&c.data).map_err(|e| (e, "bad-control"))?;
                let mut data = Vec::with_capacity(fds.len() * 4);
                for fd in fds {
                    let copy = sys::pidfd_getfd(call.pidfd.as_fd(), fd)
                        .map_err(|_| (libc::EBADF, "bad-control"))?;
                    data.extend_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&copy).to_ne_bytes());
                    held.push(copy);
                }
                out.push(Cmsg {
                    level: c.level,
                    kind: c.kind,
                    data,
                });
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                let claimed = msg::ucred(&c.data).map_err(|e| (e, "bad-control"))?;
                let who = caller_of(call, &mut caller)?;
                if !who.may_claim(claimed.pid, claimed.uid, claimed.gid) {
                    return Err((libc::EPERM, "credentials"));
                }
                // The pid the caller named in its namespace, as the broker's namespace knows it.
                let pid = if claimed.pid == who.own_tgid {
                    who.tgid
                } else {
                    claimed.pid
                };
                creds_given = true;
                out.push(Cmsg {
                    level: c.level,
                    kind: c.kind,
                    data: msg::encode_ucred(msg::Ucred { pid, ..claimed }),
                });
            }
            key if SOURCE_CMSGS.contains(&key) => {
                if !confine.source_cmsgs() {
                    return Err((libc::EPERM, "source-cmsg"));
                }
                out.push(c.clone());
            }
            key if HARMLESS_CMSGS.contains(&key) => out.push(c.clone()),
            _ => return Err((libc::EPERM, "cmsg")),
        }
    }
    if unix && !creds_given && sys::may_forge_credentials() {
        let who = caller_of(call, &mut caller)?;
        out.push(Cmsg {
            level: libc::SOL_SOCKET,
            kind: libc::SCM_CREDENTIALS,
            data: msg::encode_ucred(msg::Ucred {
                pid: who.tgid,
                uid: who.identity.uids[0],
                gid: who.identity.gids[0],
            }),
        });
    }
    Ok(msg::encode_cmsgs(&out))
}

fn caller_of<'a>(
    call: &Call,
    cache: &'a mut Option<Caller>,
) -> Result<&'a Caller, (i32, &'static str)> {
    if cache.is_none() {
        let c = Caller::read(call.notif.pid).map_err(|e| (errno_of(&e), "no-identity"))?;
        *cache = Some(c);
    }
    cache.as_ref().ok_or((libc::ESRCH, "no-identity"))
}
