//! Processes and threads: pidfds of callers, their descriptors (`pidfd_getfd`), signals to
//! them, and the broker's own ids.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_long};

/// `PIDFD_THREAD` (Linux 6.9): the pidfd names one thread, not a thread-group leader.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// `prctl(PR_SET_DUMPABLE, 0)`: the broker holds its sandboxes' listeners and copies of their
/// sockets, so no process of its user (a sandbox without Landlock among them) may read or
/// write its memory, take its fds or trace it without `CAP_SYS_PTRACE` (F15); and it dumps no
/// core.
///
/// # References
/// prctl(2) (`PR_SET_DUMPABLE`)
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// The broker's effective uid.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

/// The broker's real user and group ids: what the kernel attaches to a unix message the
/// broker sends without explicit credentials.
pub(crate) fn real_ids() -> (u32, u32) {
    // SAFETY: no arguments.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Whether process `pid` exists (`kill(pid, 0)` succeeds or says `EPERM`).
pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    let r = unsafe { libc::kill(pid, 0) };
    pid > 0 && (r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Sets the nice value of the calling thread (not its process): `setpriority(PRIO_PROCESS,
/// gettid(), nice)`. Lowering it again needs `CAP_SYS_NICE`.
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: no arguments.
    let tid = unsafe { libc::gettid() };
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// `pidfd_open(tid, PIDFD_THREAD)`: a pidfd for exactly the thread that made the call.
pub(crate) fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd =
        cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process or thread of `pidfd` is still alive (`pidfd_send_signal` with signal 0).
pub(crate) fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain syscall; signal 0 only checks, a NULL siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    r == 0
}

/// `pidfd_getfd`: a copy of the target's fd `target_fd` (close-on-exec).
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0u32)
    })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `PIDFD_SIGNAL_THREAD`: deliver to the thread of a `PIDFD_THREAD` pidfd.
const PIDFD_SIGNAL_THREAD: u32 = 1;

/// Sends `sig` to the one thread `pidfd` names (the `SIGPIPE` a caller's own send would have
/// raised on a broken connection).
pub(crate) fn pidfd_signal_thread(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo is allowed.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            PIDFD_SIGNAL_THREAD,
        )
    })?;
    Ok(())
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() }
}
