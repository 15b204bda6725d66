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
use std::time::Duration;

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::bounds::reaper::CallerFd;
use crate::bounds::{self, Taken};
use crate::call::{Call, Step};
use crate::caller::{as_thread, nofile_limit, Caller};
use crate::ops::address::{self, Reading, Use};
use crate::ops::msg::{self, Cmsg, CmsgReader, IoVec, MsgHdr};
use crate::ops::source::{self, View};
use crate::ops::unix::{self, PathUse};
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self, Become, SocketKind};
use crate::{bounds::limits, ops::connect, ops::decode, ops::netlink};

/// The most data the broker copies for one send: a datagram larger than this is refused
/// with `EMSGSIZE` (UDP's own limit is 65,507 bytes; a unix datagram is bounded by the send
/// buffer, 208 KiB by default); a stream send is copied and sent in pieces of this size.
pub(crate) const MAX_DATA: usize = 256 * 1024;

/// Source- and route-choosing control messages (see the module documentation).
const SOURCE_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_PKTINFO),
    (libc::SOL_IP, msg::IP_RETOPTS),
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
/// Control messages that change nothing about where a message goes or who sent it. (The
/// kernel checks their values when it sends them.)
const HARMLESS_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_TTL),
    (libc::SOL_IP, libc::IP_TOS),
    (libc::SOL_IP, msg::IP_PROTOCOL),
    (libc::SOL_IPV6, libc::IPV6_HOPLIMIT),
    (libc::SOL_IPV6, msg::IPV6_2292HOPLIMIT),
    (libc::SOL_IPV6, libc::IPV6_TCLASS),
    (libc::SOL_IPV6, libc::IPV6_DONTFRAG),
    (msg::SOL_UDP, msg::UDP_SEGMENT),
    (libc::SOL_SOCKET, msg::SO_TIMESTAMPING_OLD),
    (libc::SOL_SOCKET, msg::SO_TIMESTAMPING_NEW),
    (libc::SOL_SOCKET, msg::SCM_TS_OPT_ID),
    (libc::SOL_SOCKET, libc::SCM_TXTIME),
];
/// `TC_PRIO_INTERACTIVE`: the highest `SO_PRIORITY` a sender may set without `CAP_NET_ADMIN`
/// or `CAP_NET_RAW` (`sk_set_prio_allowed`).
const UNPRIVILEGED_PRIORITY: u32 = 6;

/// Whether a control message asks the kernel for something only a capability grants: an
/// `SO_PRIORITY` above [`UNPRIVILEGED_PRIORITY`]. Such a message is passed on and sent on a
/// thread with the caller's capabilities, so that the kernel grants or refuses it (`EPERM`)
/// as the caller's own send.
fn wants_capability(c: &Cmsg) -> bool {
    if (c.level, c.kind) != (libc::SOL_SOCKET, libc::SO_PRIORITY) {
        return false;
    }
    let value = c
        .data
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match value {
        Some(p) => p > UNPRIVILEGED_PRIORITY,
        None => true,
    }
}

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

/// Decides one notified `sendmmsg(fd, msgvec, vlen, flags)`: the entries in order, each
/// decided on its own, stopping at the first that fails. As in the kernel, the count of
/// messages sent is returned when it is not zero, and each sent entry's `msg_len` is written
/// back into the caller's vector.
///
/// Invariant 4 holds for every entry, not only the first: what is read of an entry is checked
/// with `NOTIF_ID_VALID` before the entry is sent, and again before its `msg_len` is written
/// back, through the caller's memory file opened before the first check ([`WriteBack`]). A
/// caller that is gone meanwhile (a sibling thread's `execve` kills it and gives its pid to a
/// new program image) stops the call: nothing more is sent in its name, and nothing is
/// written into the new image.
pub(crate) fn decide_sendmmsg(call: &Call) -> Step {
    let [fd, vec_ptr, vlen, flags, ..] = call.notif.args;
    let out = Outcome::new("sendmmsg");
    let (sock, kind) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    // The kernel clamps vlen (an unsigned int) to UIO_MAXIOV.
    let count = (vlen as u32 as u64).min(msg::UIO_MAXIOV) as usize;
    // The kernel reads each entry when it comes to it: the entries before one it cannot read
    // are sent. The vector is read at once when it can be, entry by entry otherwise.
    let mut vector = vec![0u8; count * msg::MMSGHDR_LEN];
    let whole = sys::read_memory(call.notif.pid, vec_ptr, &mut vector).is_ok();
    let files = match WriteBack::open(call.notif.pid) {
        Ok(f) => f,
        Err(e) => return Step::Done(out.failed(errno_of(&e), "no-memory-file")),
    };
    // `run` checks NOTIF_ID_VALID first: the files opened above are the caller's.
    run(call, sock, kind, out, move |call, sock, kind| {
        let gone =
            |endpoints: Vec<String>| (None, "gone", endpoints.join(" "), Reply::Errno(libc::ESRCH));
        let back = WriteBack::read(files);
        let mut sent = 0usize;
        let mut last: Option<Sent> = None;
        let mut endpoints = Vec::new();
        for i in 0..count {
            let at = vec_ptr.wrapping_add((i * msg::MMSGHDR_LEN) as u64);
            let mut entry = [0u8; msg::MSGHDR_LEN];
            let readable = if whole {
                entry.copy_from_slice(&vector[i * msg::MMSGHDR_LEN..][..msg::MSGHDR_LEN]);
                Ok(())
            } else {
                sys::read_memory(call.notif.pid, at, &mut entry).map_err(|e| errno_of(&e))
            };
            let mut r = match readable.and_then(|()| read_message(call, &MsgHdr::parse(&entry))) {
                Ok(_) if !call.still_valid() => return gone(endpoints),
                Ok(m) => send_one(call, sock, kind, m, flags as i32),
                Err(errno) => Sent::failed(errno, "bad-message"),
            };
            if !r.endpoint.is_empty() && endpoints.len() < 8 {
                endpoints.push(r.endpoint.clone());
            }
            if let Reply::Value(n) = r.reply {
                if !call.still_valid() {
                    return gone(endpoints);
                }
                let at = vec_ptr + (i * msg::MMSGHDR_LEN + msg::MMSG_LEN_OFFSET) as u64;
                // As the kernel: a `msg_len` that cannot be written ends the call, and that
                // message is not counted (EFAULT when it was the first).
                if let Err(errno) = back.write(at, &(n as u32).to_ne_bytes()) {
                    r.reply = Reply::Errno(errno);
                }
            }
            let failed = matches!(r.reply, Reply::Errno(_));
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

/// Where `sendmmsg` writes the `msg_len` of each message sent: the caller's `/proc/TID/mem`
/// (the address space the file was opened on, whatever the pid names later), only where the
/// caller's `/proc/TID/maps` says the caller may write itself (the file writes through
/// read-only pages; the kernel's own write-back would fail with `EFAULT` there). Both are
/// opened before `NOTIF_ID_VALID` is asked, so that they are known to be the caller's.
struct WriteBack {
    mem: std::fs::File,
    /// `[start, end)` of the caller's writable mappings, in order.
    writable: Vec<(u64, u64)>,
}

impl WriteBack {
    /// The caller's memory and maps files: check `NOTIF_ID_VALID` after this.
    fn open(tid: u32) -> std::io::Result<(std::fs::File, std::fs::File)> {
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{tid}/mem"))?;
        let maps = std::fs::File::open(format!("/proc/{tid}/maps"))?;
        Ok((mem, maps))
    }

    /// Reads the writable mappings (none when the address space is gone: every write then
    /// fails).
    fn read((mem, mut maps): (std::fs::File, std::fs::File)) -> WriteBack {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut maps, &mut text);
        WriteBack {
            mem,
            writable: writable_ranges(&text),
        }
    }

    /// Writes `bytes` at `at`, or `EFAULT`.
    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), i32> {
        if !covered(&self.writable, at, bytes.len()) {
            return Err(libc::EFAULT);
        }
        match std::os::unix::fs::FileExt::write_at(&self.mem, bytes, at) {
            Ok(n) if n == bytes.len() => Ok(()),
            _ => Err(libc::EFAULT),
        }
    }
}

/// Whether `len` bytes at `at` lie in `ranges` (in order, not overlapping).
fn covered(ranges: &[(u64, u64)], at: u64, len: usize) -> bool {
    let Some(end) = at.checked_add(len as u64) else {
        return false;
    };
    let mut from = at;
    while from < end {
        let i = ranges.partition_point(|&(_, e)| e <= from);
        match ranges.get(i) {
            Some(&(s, e)) if s <= from => from = e,
            _ => return false,
        }
    }
    true
}

/// The writable mappings of a `/proc/TID/maps` text (`start-end perms ...`, hexadecimal).
fn writable_ranges(maps: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (start, end) = words.next()?.split_once('-')?;
            let perms = words.next()?;
            if perms.as_bytes().get(1) != Some(&b'w') {
                return None;
            }
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some((start, end))
        })
        .collect();
    out.sort_unstable();
    out
}

/// What one message came to.
struct Sent {
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
}

/// One message, copied: destination bytes, where its data lies in the caller, and its
/// control messages (`Err`: the kernel refuses the buffer, `EINVAL`; answered where the
/// kernel's own code for the socket would answer it).
struct Message {
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
    let control = msg::cmsgs(&raw_control);
    Ok(Message { name, iov, control })
}

/// Runs `work` inline when it cannot wait long, or on the blocking pool: a blocking stream
/// or unix socket may wait for its peer to read, for as long as the peer likes.
fn run(
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

/// Which kernel code reads the control messages of a send on an IP socket: TCP's, or UDP's
/// for the destination's family (`dest_v6`; `None`: the socket's peer, read from it). `None`
/// for another protocol.
fn ip_reader(sock: BorrowedFd<'_>, kind: SocketKind, dest_v6: Option<bool>) -> Option<CmsgReader> {
    if !matches!(kind.family, libc::AF_INET | libc::AF_INET6) {
        return None;
    }
    let v6_socket = kind.family == libc::AF_INET6;
    if address::is_udp(kind) {
        let v6_dest = dest_v6.unwrap_or_else(|| {
            v6_socket
                && !sys::peername(sock)
                    .ok()
                    .and_then(|p| address::local_address(&p))
                    .is_some_and(|p| match p.ip() {
                        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
                        std::net::IpAddr::V4(_) => true,
                    })
        });
        return Some(if v6_dest {
            CmsgReader::Udp6
        } else {
            CmsgReader::Udp4 { v6_socket }
        });
    }
    let tcp = kind.sock_type == libc::SOCK_STREAM && matches!(kind.protocol, 0 | libc::IPPROTO_TCP);
    tcp.then_some(CmsgReader::Tcp)
}

/// The control messages the kernel's code `reader` takes, or `EINVAL` where it refuses them
/// (`msg::kernel_reads`); what it takes then goes through the broker's own rules
/// ([`control`]).
fn ip_control(reader: CmsgReader, control: &Result<Vec<Cmsg>, i32>) -> Result<Vec<Cmsg>, i32> {
    if matches!(control, Ok(list) if list.is_empty()) {
        return Ok(Vec::new());
    }
    msg::kernel_reads(reader, control)
}

/// A unix socket's control messages as `__scm_send` takes them, before it looks at the
/// destination, in order: a malformed buffer or a `SOL_SOCKET` type other than
/// `SCM_RIGHTS` and `SCM_CREDENTIALS` is `EINVAL`; the descriptors of `SCM_RIGHTS` blocks are
/// counted (`EINVAL` past `SCM_MAX_FD` in all; a block without a whole descriptor is
/// skipped) and each must be open in the caller (`EBADF`); `SCM_CREDENTIALS` must be a
/// `ucred` (`EINVAL`) that the caller may claim (`EPERM`, `ESRCH`). Other levels are
/// skipped. Returns what is left to send; the policy's say and the copies come later
/// ([`control`]).
fn unix_control(
    call: &Call,
    control: &Result<Vec<Cmsg>, i32>,
) -> Result<Vec<Cmsg>, (i32, &'static str)> {
    let list = msg::kernel_reads(CmsgReader::Unix, control).map_err(|e| (e, "bad-control"))?;
    let mut out = Vec::with_capacity(list.len());
    let mut total = 0;
    let mut caller: Option<Caller> = None;
    for c in list {
        if c.kind == libc::SCM_RIGHTS {
            let fds = msg::rights(&c.data).map_err(|e| (e, "bad-control"))?;
            if fds.is_empty() {
                continue;
            }
            if total + fds.len() > msg::SCM_MAX_FD {
                return Err((libc::EINVAL, "too-many-fds"));
            }
            total += fds.len();
            for &fd in &fds {
                if fd < 0 {
                    return Err((libc::EBADF, "bad-control"));
                }
                // Open in the caller: the copy goes at once (the one sent is taken later).
                drop(call.take_fd(fd)?);
            }
            out.push(Cmsg {
                data: c.data[..fds.len() * 4].to_vec(),
                ..c
            });
        } else {
            let claimed = msg::ucred(&c.data).map_err(|e| (e, "bad-control"))?;
            caller_of(call, &mut caller)?
                .claim(call, claimed)
                .map_err(|errno| (errno, "credentials"))?;
            out.push(c);
        }
    }
    Ok(out)
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
fn send_one(
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
            let some_control = !matches!(&message.control, Ok(list) if list.is_empty());
            if let Some(reader) = some_control.then(|| ip_reader(sock, kind, None)).flatten() {
                // Refused control messages go to the kernel as a refused buffer, which it
                // answers after what it checks first (a peer, a connection).
                message.control = ip_control(reader, &message.control);
            }
            let mut r = deliver(call, sock, kind, name, &message, flags);
            r.endpoint = endpoint;
            if r.decision.is_none() {
                r.decision = bound_decision(r.failure, r.reply, None);
            }
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
    if let Target::Inet { addr, .. } = &target {
        if let Some(reader) = ip_reader(sock, kind, Some(addr.is_ipv6())) {
            message.control = ip_control(reader, &message.control);
            if udp {
                if let Err(errno) = message.control {
                    // UDP takes its control messages after the destination, before it sends
                    // anything.
                    source::autobind(call, &mut view);
                    return Sent {
                        endpoint,
                        ..Sent::failed(errno, "bad-control")
                    };
                }
            }
        }
        let chosen = message.control.as_ref().is_ok_and(|c| carries_source(c));
        if chosen && unspecified(name) {
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
    // A Fast Open send connects: the broker's metrics port is not a sandbox's to reach.
    if op == Op::Connect && crate::ops::own::is_own_port(sock, &target) {
        return Sent {
            decision: Some(crate::ops::own::refusal()),
            failure: "",
            endpoint,
            reply: Reply::Errno(crate::ops::own::ERRNO),
        };
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
    // A send that connects counts under `max_connections` as a connect does.
    let connections = &call.sandbox.limits.connections;
    let slot = match op {
        Op::Connect => match limits::reserve(connections, sock) {
            Ok(slot) => slot,
            Err(refusal) => {
                return Sent {
                    decision: Some(refusal),
                    failure: "",
                    endpoint,
                    reply: Reply::Errno(limits::COUNT_ERRNO),
                }
            }
        },
        _ => None,
    };
    if let Err((errno, why)) = source::settle(call, &mut view, op, &sockaddr) {
        return Sent {
            decision: Some(decision),
            failure: why,
            endpoint,
            reply: Reply::Errno(errno),
        };
    }
    let mut r = deliver(call, sock, kind, &sockaddr, &message, flags);
    if op == Op::Connect {
        limits::settle(slot, sock, r.reply);
    }
    if r.decision.is_none() {
        r.decision = bound_decision(r.failure, r.reply, Some(decision));
    }
    r.endpoint = endpoint;
    r
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

/// [`deliver_here`], on the thread whose identity the kernel checks for this send:
///
/// - an IP send without control messages that choose the source or the route: here (the
///   kernel checks nothing of the sender's credentials for it);
/// - an IP send with such control messages (`source_cmsgs`), or with an `SO_PRIORITY` that
///   needs a capability: on a thread with the caller's whole identity, so that the options
///   the kernel grants only with `CAP_NET_RAW` or `CAP_NET_ADMIN` need the caller's, never
///   the broker's;
/// - a unix send with `SCM_RIGHTS`: on a thread with the caller's real user id, which the
///   kernel charges the descriptors in flight to (the broker keeps the capabilities that
///   attach the caller's credentials);
/// - any other unix send: here (the credentials are attached explicitly);
/// - any other family (netlink, say): on a thread with the caller's whole identity, since
///   such messages can ask for changes the kernel grants by the sender's capabilities; and on
///   a netlink route socket, only requests that read, to the kernel (`ops/netlink.rs`).
fn deliver(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    name: &[u8],
    message: &Message,
    flags: i32,
) -> Sent {
    let has = |keys: &[(i32, i32)]| {
        message
            .control
            .as_ref()
            .is_ok_and(|list| list.iter().any(|c| keys.contains(&(c.level, c.kind))))
    };
    let capability = message
        .control
        .as_ref()
        .is_ok_and(|list| list.iter().any(wants_capability));
    let how = match kind.family {
        libc::AF_INET | libc::AF_INET6 if !has(SOURCE_CMSGS) && !capability => None,
        libc::AF_UNIX if !has(&[(libc::SOL_SOCKET, libc::SCM_RIGHTS)]) => None,
        libc::AF_UNIX => Some(Become::Filesystem),
        _ => Some(Become::Full),
    };
    let Some(how) = how else {
        return deliver_here(call, sock, kind, name, message, flags);
    };
    as_thread(call, how, || {
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
    let mut held = Passed::default();
    let control = match &message.control {
        // Refused by the kernel: it answers at its own point, after its earlier checks.
        Err(_) => msg::REFUSED_CONTROL.to_vec(),
        Ok(list) => match control(call, kind, list, &mut held) {
            Ok(c) => c,
            Err((errno, why)) => return Sent::failed(errno, why),
        },
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
        // Invariant 4: the data just read belonged to the caller, which still waits.
        if !call.still_valid() {
            if sent_total == 0 {
                return Sent::failed(libc::ESRCH, "gone");
            }
            break;
        }
        // A netlink route socket reads and never changes (rule N1): decided on these very
        // bytes, which are the ones sent.
        if first && netlink::is_route(kind) {
            let peer = || sys::peername(sock).unwrap_or_default();
            if let Some(refusal) = netlink::check_send(name, peer, &chunk) {
                return Sent {
                    decision: Some(refusal),
                    failure: "",
                    endpoint: String::new(),
                    reply: Reply::Errno(libc::EPERM),
                };
            }
        }
        let cmsgs: &[u8] = if first { &control } else { &[] };
        // A send that blocks is interrupted once nobody waits for it (`bounds/reaper.rs`).
        let listed = call.blocking();
        let (sent, raised) = sys::sendmsg_as_caller(sock, name, &chunk, cmsgs, flags);
        drop(listed);
        match sent {
            Ok(n) => {
                sent_total += n;
                if n < chunk.len() || !stream {
                    break;
                }
            }
            Err(e) if sent_total == 0 => {
                if raised {
                    // The caller's own send would have raised SIGPIPE in the caller.
                    let _ = sys::pidfd_signal_thread(call.pidfd.as_fd(), libc::SIGPIPE);
                }
                return Sent::failed(errno_of(&e), "");
            }
            Err(_) => break,
        }
        first = false;
        if gather.done() {
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

/// The broker's copies of the descriptors one message passes, and their place under the
/// bounds of `bounds/mod.rs`; both go when the message has been sent.
#[derive(Default)]
struct Passed {
    fds: Vec<CallerFd>,
    place: Option<Taken>,
}

/// How many descriptors the kernel takes from `given` before it refuses the message: the
/// `SCM_RIGHTS` messages in order, up to the one that would bring the message past
/// [`msg::SCM_MAX_FD`] in all (`EINVAL` there).
fn passed_count(given: &[Cmsg]) -> usize {
    let mut total = 0;
    for c in given {
        if (c.level, c.kind) != (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
            continue;
        }
        let n = c.data.len() / 4;
        if total + n > msg::SCM_MAX_FD {
            break;
        }
        total += n;
    }
    total
}

/// The control messages the broker sends: checked against the policy, `SCM_RIGHTS`
/// translated to the broker's copies of the caller's descriptors (kept alive in `held`),
/// `SCM_CREDENTIALS` checked against the caller, and on a unix socket the caller's own
/// credentials attached when it gave none.
///
/// Descriptors are counted per message, as the kernel counts them (`SCM_MAX_FD` in all,
/// `EINVAL` past it), and their place under the sandbox's and the broker's bounds is taken
/// before the first is copied (`ETOOMANYREFS` without one).
fn control(
    call: &Call,
    kind: SocketKind,
    given: &[Cmsg],
    held: &mut Passed,
) -> Result<Vec<u8>, (i32, &'static str)> {
    let confine = call.policy.confinement();
    let unix = kind.family == libc::AF_UNIX;
    let mut out = Vec::with_capacity(given.len() + 1);
    let mut caller: Option<Caller> = None;
    let mut creds_given = false;
    let mut passed = 0;
    let mut rights_given = Vec::new();
    for c in given {
        match (c.level, c.kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                if !confine.scm_rights() {
                    return Err((libc::EPERM, "scm-rights"));
                }
                let fds = msg::rights(&c.data).map_err(|e| (e, "bad-control"))?;
                if passed + fds.len() > msg::SCM_MAX_FD {
                    return Err((libc::EINVAL, "too-many-fds"));
                }
                passed += fds.len();
                if held.place.is_none() {
                    let n = passed_count(given);
                    let place = call.sandbox.descriptors.take(n, Duration::ZERO);
                    held.place = Some(
                        place.map_err(|_| (bounds::DESCRIPTORS_ERRNO, bounds::RULE_DESCRIPTORS))?,
                    );
                }
                let mut data = Vec::with_capacity(fds.len() * 4);
                for fd in fds {
                    let copy = sys::pidfd_getfd(call.pidfd.as_fd(), fd).map_err(|e| {
                        match e.raw_os_error() {
                            Some(libc::EMFILE | libc::ENFILE) => {
                                (bounds::FDS_ERRNO, bounds::RULE_FDS)
                            }
                            _ => (libc::EBADF, "bad-control"),
                        }
                    })?;
                    data.extend_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&copy).to_ne_bytes());
                    held.fds.push(call.copied(copy));
                }
                let rights = Cmsg {
                    level: c.level,
                    kind: c.kind,
                    data,
                };
                rights_given.push(rights.clone());
                out.push(rights);
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                let claimed = msg::ucred(&c.data).map_err(|e| (e, "bad-control"))?;
                let who = caller_of(call, &mut caller)?;
                // Checked and translated as the kernel would for the caller, in its own user
                // and pid namespaces; the broker sends what they name in its own.
                let named = who
                    .claim(call, claimed)
                    .map_err(|errno| (errno, "credentials"))?;
                creds_given = true;
                out.push(Cmsg {
                    level: c.level,
                    kind: c.kind,
                    data: msg::encode_ucred(named),
                });
            }
            key if SOURCE_CMSGS.contains(&key) => {
                if !confine.source_cmsgs() {
                    return Err((libc::EPERM, "source-cmsg"));
                }
                out.push(c.clone());
            }
            key if HARMLESS_CMSGS.contains(&key) => out.push(c.clone()),
            // Granted or refused by the kernel as the caller's own (`wants_capability`).
            (libc::SOL_SOCKET, libc::SO_PRIORITY) => out.push(c.clone()),
            _ => return Err((libc::EPERM, "cmsg")),
        }
    }
    if unix && !rights_given.is_empty() {
        // Descriptors in flight are limited as the caller's: its user's count against its
        // own RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (the send
        // itself, on a thread with the caller's real user id, is charged to that user).
        let who = caller_of(call, &mut caller)?;
        let nofile = nofile_limit(call).map_err(|e| (errno_of(&e), "in-flight"))?;
        sys::rights_within_limit(&who.identity, nofile, &msg::encode_cmsgs(&rights_given))
            .map_err(|e| (errno_of(&e), "in-flight"))?;
    }
    if unix && !creds_given {
        if !sys::may_forge_credentials() {
            // The kernel would attach the broker's own process id (and, for another user,
            // its ids) for a receiver that asks. A datagram receiver takes each message's
            // credentials as its sender's identity (sd_notify, journald): refused. On a
            // connection the peer was told the broker's pid already when it connected
            // (`SO_PEERCRED`), so a message with the caller's own ids is sent as it is.
            let who = caller_of(call, &mut caller)?;
            let same_ids = (who.identity.uids[0], who.identity.gids[0]) == sys::real_ids();
            if kind.sock_type == libc::SOCK_DGRAM || !same_ids {
                return Err((libc::EPERM, "credentials-unforgeable"));
            }
            return Ok(msg::encode_cmsgs(&out));
        }
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
        let c = Caller::read(call).map_err(|e| (errno_of(&e), "no-identity"))?;
        *cache = Some(c);
    }
    cache.as_ref().ok_or((libc::ESRCH, "no-identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(family: i32, sock_type: i32, protocol: i32) -> SocketKind {
        SocketKind {
            family,
            sock_type,
            protocol,
        }
    }

    fn sockaddr(addr: std::net::SocketAddr) -> Vec<u8> {
        address::encode(addr)
    }

    /// `udp_sendmsg`'s first checks (size, then `MSG_OOB`) for destinations that reach it:
    /// any on an IPv4 socket, an IPv4 or IPv4-mapped one on an IPv6 socket that is not
    /// IPv6-only; never an IPv6 destination, nor a send without one.
    #[test]
    fn udp_first_checks_size_then_oob_on_ipv4_destinations() {
        let udp4 = kind(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let udp6 = kind(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        let v4 = sockaddr("127.0.0.99:9".parse().unwrap());
        let mapped = sockaddr("[::ffff:127.0.0.99]:9".parse().unwrap());
        let v6 = sockaddr("[::1]:9".parse().unwrap());
        let state = |v6only| address::Known {
            v6only,
            ..Default::default()
        };
        let big = 0x1_0000;
        let check = |kind, v6only, name: Option<&[u8]>, total, flags| {
            udp_first(kind, &mut state(v6only), name, total, flags)
        };
        assert_eq!(check(udp4, false, Some(&v4), big, 0), Some(libc::EMSGSIZE));
        assert_eq!(check(udp4, false, Some(&v4), 0xFFFF, 0), None);
        assert_eq!(
            check(udp4, false, Some(&v4), 1, libc::MSG_OOB),
            Some(libc::EOPNOTSUPP)
        );
        // The size comes first.
        let oob_big = check(udp4, false, Some(&v4), big, libc::MSG_OOB);
        assert_eq!(oob_big, Some(libc::EMSGSIZE));
        // An IPv4 socket checks before the family of what it is given.
        assert_eq!(check(udp4, false, Some(&v6), big, 0), Some(libc::EMSGSIZE));
        assert_eq!(check(udp6, false, Some(&v4), big, 0), Some(libc::EMSGSIZE));
        assert_eq!(
            check(udp6, false, Some(&mapped), big, 0),
            Some(libc::EMSGSIZE)
        );
        assert_eq!(check(udp6, true, Some(&mapped), big, 0), None);
        assert_eq!(check(udp6, false, Some(&v6), big, libc::MSG_OOB), None);
        assert_eq!(check(udp4, false, None, big, libc::MSG_OOB), None);
    }

    /// `import_ubuf`'s range check, before the fd: a buffer that wraps or reaches into the
    /// kernel's half is `EFAULT` (x86_64), its length clamped to `MAX_RW_COUNT` first.
    #[test]
    fn sendto_buffer_range_as_import_ubuf() {
        assert!(user_range(0x1000, 100));
        assert!(user_range(0, 0));
        let top = i64::MAX as u64;
        assert!(user_range(top - 100, 100));
        // A length past MAX_RW_COUNT counts as MAX_RW_COUNT.
        assert!(user_range(0x1000, u64::MAX));
        if cfg!(target_arch = "x86_64") {
            assert!(!user_range(top - 99, 100));
            assert!(!user_range(0xffff_8000_0000_0000, 1));
            assert!(!user_range(u64::MAX, 2));
        }
    }

    /// An `SO_PRIORITY` above `TC_PRIO_INTERACTIVE` needs a capability, and so does one the
    /// broker cannot read (the kernel decides with the caller's); nothing else does.
    #[test]
    fn priority_above_six_is_sent_with_the_callers_capabilities() {
        let prio = |data: Vec<u8>| Cmsg {
            level: libc::SOL_SOCKET,
            kind: libc::SO_PRIORITY,
            data,
        };
        assert!(!wants_capability(&prio(6u32.to_ne_bytes().to_vec())));
        assert!(!wants_capability(&prio(0u32.to_ne_bytes().to_vec())));
        assert!(wants_capability(&prio(7u32.to_ne_bytes().to_vec())));
        assert!(wants_capability(&prio(u32::MAX.to_ne_bytes().to_vec())));
        assert!(wants_capability(&prio(vec![1])));
        let ttl = Cmsg {
            level: libc::SOL_IP,
            kind: libc::IP_TTL,
            data: 300u32.to_ne_bytes().to_vec(),
        };
        assert!(!wants_capability(&ttl));
    }

    /// F14: a destination on an SCTP send sets up an association, so it is decided as a
    /// connect, on one-to-one and one-to-many sockets of both IP families (the address
    /// decoder reads it as an IP destination: `ops/address.rs`, other IP protocols); a Fast Open
    /// send connects; other destinations are sends.
    #[test]
    fn f14_sctp_destination_is_a_connect() {
        let sctp = libc::IPPROTO_SCTP;
        for family in [libc::AF_INET, libc::AF_INET6] {
            for ty in [libc::SOCK_STREAM, libc::SOCK_SEQPACKET] {
                assert_eq!(
                    send_op(kind(family, ty, sctp), 0),
                    (Use::Send, Op::Connect),
                    "{family}/{ty}"
                );
            }
            let tcp = kind(family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
            assert_eq!(send_op(tcp, 0), (Use::Send, Op::Send));
            assert_eq!(
                send_op(tcp, libc::MSG_FASTOPEN),
                (Use::FastOpen, Op::Connect)
            );
            let udp = kind(family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
            assert_eq!(send_op(udp, 0), (Use::Send, Op::Send));
            assert_eq!(send_op(udp, libc::MSG_FASTOPEN), (Use::Send, Op::Send));
        }
    }

    #[test]
    fn writable_mappings_and_what_they_cover() {
        let maps = "55d0c000-55d0d000 r--p 00000000 fe:01 1 /usr/bin/x\n\
                    55d0d000-55d0f000 rw-p 00001000 fe:01 1 /usr/bin/x\n\
                    7f000000-7f001000 rw-p 00000000 00:00 0\n\
                    7f001000-7f002000 rw-s 00000000 00:01 7 /dev/shm/y\n\
                    7ffd0000-7ffd1000 ---p 00000000 00:00 0 \n";
        let w = writable_ranges(maps);
        assert_eq!(
            w,
            vec![
                (0x55d0_d000, 0x55d0_f000),
                (0x7f00_0000, 0x7f00_1000),
                (0x7f00_1000, 0x7f00_2000)
            ]
        );
        assert!(covered(&w, 0x55d0_d000, 4));
        assert!(covered(&w, 0x55d0_effc, 4));
        assert!(!covered(&w, 0x55d0_effe, 4), "runs past the mapping");
        assert!(!covered(&w, 0x55d0_c000, 4), "read-only");
        assert!(
            covered(&w, 0x7f00_0ffe, 4),
            "two writable mappings side by side"
        );
        assert!(!covered(&w, 0x7ffd_0000, 4), "no access");
        assert!(!covered(&w, u64::MAX - 1, 4));
    }

    /// The write-back goes where the caller may write and nowhere else: a read-only page
    /// gets `EFAULT`, as the kernel's own `put_user` would give, although the memory file
    /// itself could write there.
    #[test]
    fn write_back_into_this_process() {
        let tid = std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap();
        let target = std::hint::black_box(Box::new([0u32; 4]));
        let at = target.as_ptr() as u64 + 4;
        let back = WriteBack::read(WriteBack::open(tid).unwrap());
        back.write(at, &7u32.to_ne_bytes()).unwrap();
        assert_eq!(std::hint::black_box(&target)[1], 7);
        static READ_ONLY: [u32; 1] = [5];
        let ro = READ_ONLY.as_ptr() as u64;
        assert_eq!(back.write(ro, &9u32.to_ne_bytes()), Err(libc::EFAULT));
        assert_eq!(std::hint::black_box(&READ_ONLY)[0], 5);
    }
}
