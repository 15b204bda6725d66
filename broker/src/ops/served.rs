//! A connect the host program serves with a socket of its own: the one its decision hook
//! answered with (`HookVerdict::Serve`, `hook.rs`), or the one the server of a run-time rule
//! makes (`SandboxHandle::serve`). The broker puts that socket at the caller's descriptor
//! number in place of the caller's socket (`ops/inject.rs`) and the connect returns 0. The
//! program's socket, never connected, is closed with the swap; the served one takes the
//! program's blocking mode and close-on-exec flag, and is otherwise as the embedder made it
//! (family, options, peer: docs/embedding.md, "Serving a connect").
//!
//! What the program does with it afterwards stays in the kernel, except what the filter sends
//! to every broker for any socket: a second connect, a send with a destination, a `bind` or
//! `listen`, decided by the policy as for any socket of the sandbox; an IP socket of another
//! network namespace than the sandbox's is bounded as a bridged one is (`ops/bridge.rs`,
//! `foreign`).

use std::os::fd::{AsFd, BorrowedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use netjail_policy::{Decision, Request};

use crate::bounds::limits::Slot;
use crate::call::Call;
use crate::hook::{ConnectServer, HookCall};
use crate::reply::{errno_of, refusal, Reply};
use crate::sys;

/// The rule of a served descriptor that is not a socket: the program gets no file, device or
/// pipe in place of its socket.
pub(crate) const RULE_NOT_A_SOCKET: &str = "hook-serve:not-a-socket";

/// The rule of a connect whose run-time rule's server panicked.
pub(crate) const RULE_SERVER_PANICKED: &str = "sandbox.serve:panicked";

/// Asks `server` for a socket for the connect `request` of `call` and puts it at the caller's
/// descriptor `fd` in place of `sock` ([`connect`]). A server's error fails the connect with
/// its errno (`ECONNREFUSED` when it has none in 1..=4095); a panic refuses it.
pub(crate) fn connect_by(
    call: &Call,
    fd: i32,
    sock: BorrowedFd<'_>,
    server: &ConnectServer,
    request: &Request,
    slot: Option<Slot>,
) -> (Reply, Option<Decision>) {
    let asked = HookCall {
        sandbox: call.sandbox.id,
        name: &call.sandbox.name,
        pid: call.notif.pid as i32,
        request,
    };
    match catch_unwind(AssertUnwindSafe(|| server(&asked))) {
        Ok(Ok(socket)) => connect(call, fd, sock, socket.as_fd(), slot),
        Ok(Err(e)) => {
            let errno = e
                .raw_os_error()
                .filter(|n| (1..=4095).contains(n))
                .unwrap_or(libc::ECONNREFUSED);
            (Reply::Errno(errno), None)
        }
        Err(_) => {
            tracing::error!(sandbox = %call.sandbox.id, "a run-time rule's server panicked; connect refused");
            (
                Reply::Errno(libc::EPERM),
                Some(refusal(RULE_SERVER_PANICKED, libc::EPERM)),
            )
        }
    }
}

/// Puts `served` at the caller's descriptor `fd` in place of `sock`, with `sock`'s blocking
/// mode. Returns the reply and, where the broker refused the socket, the refusal that replaces
/// the hook's decision.
pub(crate) fn connect(
    call: &Call,
    fd: i32,
    sock: BorrowedFd<'_>,
    served: BorrowedFd<'_>,
    slot: Option<Slot>,
) -> (Reply, Option<Decision>) {
    match sys::is_socket(served) {
        Ok(true) => {}
        Ok(false) => {
            return (
                Reply::Errno(libc::EPERM),
                Some(refusal(RULE_NOT_A_SOCKET, libc::EPERM)),
            )
        }
        Err(e) => return (Reply::Errno(errno_of(&e)), None),
    }
    let nonblocking = match sys::is_nonblocking(sock) {
        Ok(n) => n,
        Err(e) => return (Reply::Errno(errno_of(&e)), None),
    };
    if let Err(e) = sys::set_nonblocking(served, nonblocking) {
        return (Reply::Errno(errno_of(&e)), None);
    }
    match crate::ops::inject::install(call, fd, served, slot) {
        Ok(()) => (Reply::Value(0), None),
        Err(failed) => (failed, None),
    }
}
