//! Sending: the data gathered from the caller's memory and sent on the caller's socket,
//! with the identity the destination needs.

use std::os::fd::{AsFd, BorrowedFd};

use crate::call::Call;
use crate::caller::as_thread;
use crate::ops::msg::{self, IoVec};
use crate::ops::netlink;
use crate::reply::{errno_of, Reply};
use crate::sys::{self, Become, SocketKind};

use super::cmsg::control;
use super::cmsg::wants_capability;
use super::cmsg::Passed;
use super::cmsg::SOURCE_CMSGS;
use super::Message;
use super::Sent;
use super::MAX_DATA;

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
pub(super) fn deliver(
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
    let sent_total = match send_in_pieces(call, sock, kind, name, &control, &message.iov, flags) {
        Ok(n) => n,
        Err(sent) => return sent,
    };
    drop(held);
    Sent {
        decision: None,
        failure: "",
        endpoint: String::new(),
        reply: Reply::Value(sent_total as i64),
    }
}

/// Copies the data of `iov` from the caller and sends it to `name` with the control messages
/// `control`: on a stream socket in pieces of at most [`MAX_DATA`] bytes (the control
/// messages with the first) until all is sent or the kernel takes less, on any other socket
/// as one message; what a netlink route socket sends is checked first (rule N1). Returns how
/// many bytes were sent. A failure before the first byte is the message's answer (with
/// `SIGPIPE` raised in the caller where the kernel raised it for the broker); a later one
/// ends the send with what was sent.
fn send_in_pieces(
    call: &Call,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    name: &[u8],
    control: &[u8],
    iov: &[IoVec],
    flags: i32,
) -> Result<usize, Sent> {
    let stream = kind.sock_type == libc::SOCK_STREAM;
    let mut gather = Gather::new(iov);
    let mut sent_total = 0usize;
    let mut first = true;
    loop {
        let chunk = match gather.next(call.notif.pid, MAX_DATA) {
            Ok(c) => c,
            Err(errno) if sent_total == 0 => return Err(Sent::failed(errno, "bad-buffer")),
            Err(_) => break,
        };
        if !first && chunk.is_empty() {
            break;
        }
        // Invariant 4: the data just read belonged to the caller, which still waits.
        if !call.still_valid() {
            if sent_total == 0 {
                return Err(Sent::failed(libc::ESRCH, "gone"));
            }
            break;
        }
        // A netlink route socket reads and never changes (rule N1): decided on these very
        // bytes, which are the ones sent.
        if first && netlink::is_route(kind) {
            let peer = || sys::peername(sock).unwrap_or_default();
            if let Some(refusal) = netlink::check_send(name, peer, &chunk) {
                return Err(Sent {
                    decision: Some(refusal),
                    failure: "",
                    endpoint: String::new(),
                    reply: Reply::Errno(libc::EPERM),
                });
            }
        }
        let cmsgs: &[u8] = if first { control } else { &[] };
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
                return Err(Sent::failed(errno_of(&e), ""));
            }
            Err(_) => break,
        }
        first = false;
        if gather.done() {
            break;
        }
    }
    Ok(sent_total)
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
