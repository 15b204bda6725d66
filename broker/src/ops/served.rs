//! A connect the embedder's decision hook answered with a socket of its own
//! (`HookVerdict::Serve`, `hook.rs`): the broker puts that socket at the caller's descriptor
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

use std::os::fd::BorrowedFd;

use netjail_policy::Decision;

use crate::call::Call;
use crate::reply::{errno_of, refusal, Reply};
use crate::sys;

/// The rule of a served descriptor that is not a socket: the program gets no file, device or
/// pipe in place of its socket.
pub(crate) const RULE_NOT_A_SOCKET: &str = "hook-serve:not-a-socket";

/// Puts `served` at the caller's descriptor `fd` in place of `sock`, with `sock`'s blocking
/// mode. Returns the reply and, where the broker refused the socket, the refusal that replaces
/// the hook's decision.
pub(crate) fn connect(
    call: &Call,
    fd: i32,
    sock: BorrowedFd<'_>,
    served: BorrowedFd<'_>,
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
    match crate::ops::inject::install(call, fd, served) {
        Ok(()) => (Reply::Value(0), None),
        Err(failed) => (failed, None),
    }
}
