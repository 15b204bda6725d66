//! Putting a socket the broker holds at the caller's descriptor number in place of the
//! caller's own (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SETFD`): the socket a bridge made
//! (`ops/bridge.rs`) or the one an embedder's hook served the call with (`ops/served.rs`).
//!
//! `SETFD` without `SEND`: the call is answered afterwards by the receiver, with the connect's
//! own answer (0 or `EINPROGRESS`); `SEND` would answer it with the descriptor's number, which
//! a `connect()` never returns. Between the two the caller is still blocked in its connect,
//! so nothing of the program sees the descriptor change before the connect returns.

use std::os::fd::{AsFd, BorrowedFd};

use crate::bounds::limits::Slot;
use crate::call::Call;
use crate::reply::{errno_of, Reply};
use crate::sys;

/// How often the socket is offered while the caller's descriptor is being installed.
const ADDFD_TRIES: usize = 64;

/// Puts `socket` at the caller's descriptor `fd`, with the close-on-exec flag that descriptor
/// had, and counts it in `slot` (`max_connections`, `max_binds`): the socket counted is the
/// one the program now holds, never the one it replaced, whose count would end as soon as
/// the program's copy is gone. `Err` is the answer the call gets instead: the caller's errno
/// of the ioctl (`ENOENT` when the caller is gone), or `EBADF` when the descriptor stayed
/// busy; the slot is then given back.
pub(crate) fn install(
    call: &Call,
    fd: i32,
    socket: BorrowedFd<'_>,
    slot: Option<Slot>,
) -> Result<(), Reply> {
    let cloexec = close_on_exec(call.notif.pid, fd);
    // `EBUSY`: another thread of the caller is installing a descriptor at that number right
    // now (`dup2`); the kernel's own connect would not have seen it, so try again.
    for _ in 0..ADDFD_TRIES {
        match sys::notif_addfd_setfd(
            call.sandbox.listener.as_fd(),
            call.notif.id,
            socket,
            fd,
            cloexec,
        ) {
            Ok(_) => {
                if let Some(slot) = slot {
                    slot.keep(socket);
                }
                return Ok(());
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::yield_now(),
            Err(e) => return Err(Reply::Errno(errno_of(&e))),
        }
    }
    Err(Reply::Errno(libc::EBADF))
}

/// Whether the caller's descriptor `fd` is close-on-exec (`/proc/TID/fdinfo/FD`, `flags`, in
/// octal): the socket put in its place takes the same flag.
fn close_on_exec(tid: u32, fd: i32) -> bool {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")) else {
        return false;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & i64::from(libc::O_CLOEXEC) != 0)
}
