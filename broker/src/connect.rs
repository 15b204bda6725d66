//! `connect(fd, addr, addrlen)`: decided on the broker's own copy of the address and performed
//! by the broker on its own copy of the socket (invariant 2: never CONTINUE).
//!
//! The checks run in the kernel's own order so that a bad call gets the errno the kernel would
//! give: the fd (`EBADF`), the length (`EINVAL`), the copy (`EFAULT`), the socket (`ENOTSOCK`),
//! the address (`EINVAL`), then the policy (`EPERM`) and the call itself.

use std::os::fd::AsFd;

use netjail_policy::{Op, Request, Target, Verdict};

use crate::decode::{self, MAX_SOCKADDR_LEN};
use crate::handler::{errno_of, may_block, Call, Outcome, Reply};
use crate::{sys, unix};

/// Handles one notified `connect`.
pub(crate) fn handle(call: &Call<'_>) -> Outcome {
    let fd = call.notif.args[0] as i32;
    let addr_ptr = call.notif.args[1];
    let len = call.notif.args[2] as i32;
    let mut out = Outcome::new("connect");

    let sock = match sys::pidfd_getfd(call.pidfd.as_fd(), fd) {
        Ok(s) => s,
        Err(e) => return out.failed(errno_of(&e), "bad-fd"),
    };
    if len < 0 || len as usize > MAX_SOCKADDR_LEN {
        return out.failed(libc::EINVAL, "bad-length");
    }
    let mut storage = [0u8; MAX_SOCKADDR_LEN];
    let addr = &mut storage[..len as usize];
    if let Err(e) = sys::read_memory(call.notif.pid, addr_ptr, addr) {
        return out.failed(errno_of(&e), "bad-address");
    }
    // Invariant 4: the memory we read belonged to the caller, which is still waiting.
    if !call.still_valid() {
        return out.gone();
    }
    let kind = match sys::socket_kind(sock.as_fd()) {
        Ok(k) => k,
        Err(e) => return out.failed(errno_of(&e), "not-a-socket"),
    };
    let target = match decode::target(addr, decode::proto_of(kind.sock_type, kind.protocol)) {
        Ok(t) => t,
        Err(e) => return out.failed(e.errno(), "bad-address"),
    };

    if let Target::UnixPath(path) = &target {
        // Resolution may wait on a slow filesystem: never on a runtime worker.
        let result = may_block(|| unix::connect_path(call, sock.as_fd(), path));
        out.endpoint = result.endpoint;
        return out.decided(result.decision, result.failure, result.reply);
    }

    out.endpoint = target.canonical().to_string();
    let decision = call.sandbox.policy.evaluate(&Request {
        op: Op::Connect,
        target,
    });
    let reply = match decision.verdict {
        Verdict::Deny { errno } => Reply::Errno(errno),
        Verdict::Allow => may_block(|| perform(sock.as_fd(), addr)),
    };
    out.decided(Some(decision), "", reply)
}

/// Connects the broker's copy of the socket with the broker's copy of the address. A blocking
/// socket blocks this thread, exactly as the caller's own call would have.
fn perform(sock: std::os::fd::BorrowedFd<'_>, addr: &[u8]) -> Reply {
    match sys::connect_raw(sock, addr) {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(errno_of(&e)),
    }
}
