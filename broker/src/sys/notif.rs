//! The seccomp listener: notifications received and answered (`seccomp_unotify(2)`), and
//! the waits of the receiver thread on it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// One notification as the kernel delivers it (`struct seccomp_notif`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawNotification {
    /// Cookie of this notification, used in replies and `NOTIF_ID_VALID`.
    pub id: u64,
    /// Thread id of the caller, in the listener's pid namespace.
    pub pid: u32,
    /// System call number.
    pub nr: i32,
    /// `AUDIT_ARCH_*` value of the call.
    pub arch: u32,
    /// The six raw arguments.
    pub args: [u64; 6],
}

/// `SECCOMP_IOCTL_NOTIF_RECV`. Blocks when nothing is pending (the ioctl ignores
/// `O_NONBLOCK`): call it only after [`poll_in`] said the listener is readable.
pub(crate) fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<RawNotification> {
    let mut notif = MaybeUninit::<libc::seccomp_notif>::zeroed();
    // SAFETY: the buffer is a zeroed `seccomp_notif` as the ioctl requires; the kernel writes at
    // most `size_of::<seccomp_notif>()` bytes into it.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV as _,
            notif.as_mut_ptr(),
        )
    })?;
    // SAFETY: the ioctl succeeded, so the kernel filled the structure (it was zeroed before).
    let notif = unsafe { notif.assume_init() };
    Ok(RawNotification {
        id: notif.id,
        pid: notif.pid,
        nr: notif.data.nr,
        arch: notif.data.arch,
        args: notif.data.args,
    })
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: `error` is a positive errno (0 for success with `val`).
pub(crate) fn notif_send(
    listener: BorrowedFd<'_>,
    id: u64,
    val: i64,
    error: i32,
) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error: -error,
        flags: 0,
    };
    // SAFETY: `resp` is a valid `seccomp_notif_resp`; flags are 0 (no CONTINUE here).
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    })?;
    Ok(())
}

/// `SECCOMP_IOCTL_NOTIF_SEND` with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the kernel performs the
/// call as the caller made it. Only for calls decided on scalar arguments alone (see
/// `receiver::finish`, the one caller).
pub(crate) fn notif_continue(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: `resp` is a valid `seccomp_notif_resp`; CONTINUE needs `val` and `error` 0.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    })?;
    Ok(())
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND` (Linux 5.14): the caller of
/// notification `id` installs a copy of `fd` at its lowest free descriptor, as its own
/// `socket()` would (with `O_CLOEXEC` when `cloexec`), and its call returns that number in the
/// same step, which is returned here. On an error (the caller's `EMFILE`, say) nothing is
/// installed and the call is still waiting for its answer.
pub(crate) fn notif_addfd_send(
    listener: BorrowedFd<'_>,
    id: u64,
    fd: BorrowedFd<'_>,
    cloexec: bool,
) -> io::Result<i32> {
    let mut addfd = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: `addfd` is a valid `seccomp_notif_addfd` that lives across the call; the kernel
    // only reads it.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD as _,
            &mut addfd as *mut libc::seccomp_notif_addfd,
        )
    })
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD` (Linux 5.9): the caller of
/// notification `id` gets a copy of `fd` at its descriptor `newfd`, which is closed first if
/// open (as `dup2` would), with `O_CLOEXEC` when `cloexec`. The call still waits for its answer
/// afterwards: `SECCOMP_ADDFD_FLAG_SEND` would answer it with the descriptor's number, which a
/// `connect()` must not return.
///
/// # References
/// seccomp_unotify(2) (`SECCOMP_IOCTL_NOTIF_ADDFD`)
pub(crate) fn notif_addfd_setfd(
    listener: BorrowedFd<'_>,
    id: u64,
    fd: BorrowedFd<'_>,
    newfd: i32,
    cloexec: bool,
) -> io::Result<i32> {
    let mut addfd = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: newfd as u32,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: `addfd` is a valid `seccomp_notif_addfd` that lives across the call; the kernel
    // only reads it.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD as _,
            &mut addfd as *mut libc::seccomp_notif_addfd,
        )
    })
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: the notification is still pending, so its thread is alive
/// and its pid has not been reused.
pub(crate) fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64 from the pointer, which points at a live local.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _,
            &mut id as *mut u64,
        )
    };
    ret == 0
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS(SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)` (Linux 6.6): the
/// kernel wakes the broker and the caller on the CPU that is already running the other side,
/// which halves a round trip when the two ping-pong. An older kernel says `EINVAL`; the broker
/// then goes on without it.
pub(crate) fn notif_sync_wakeup(listener: BorrowedFd<'_>) -> io::Result<()> {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: the ioctl takes the flags by value in its argument.
    cvt(unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS as _,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    })?;
    Ok(())
}

/// What `/proc/self/fd/N` shows for a seccomp listener.
pub(crate) const SECCOMP_LISTENER_KIND: &str = "anon_inode:seccomp notify";

/// What `/proc/self/fd/N` shows for `fd` (a path, or `anon_inode:...`); empty if unreadable.
pub(crate) fn fd_kind(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// What `poll` said of an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollState {
    /// Something can be read.
    pub readable: bool,
    /// The other side is gone (for a listener: no task uses the filter any more).
    pub hangup: bool,
    /// The stop fd given to [`poll_wait`] became readable.
    pub stopped: bool,
}

/// Waits in `poll` until `fd` is readable or hung up, or `stop` (an eventfd made by
/// [`stop_fd`]) was signalled.
pub(crate) fn poll_wait(fd: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> io::Result<PollState> {
    let mut pfds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds, count 2, no timeout.
    cvt(unsafe { libc::poll(pfds.as_mut_ptr(), 2, -1) })?;
    Ok(PollState {
        readable: pfds[0].revents & libc::POLLIN != 0,
        hangup: pfds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        stopped: pfds[1].revents != 0,
    })
}

/// Whether `fd` is readable now (`poll` with no timeout). On a seccomp listener this walks
/// the pending notifications only until it has seen one not yet received and one received
/// and not answered; asked while the caller's own notification is unanswered, it stops at
/// the second entry, however deep the queue.
pub(crate) fn poll_ready(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, timeout 0.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// A new eventfd for [`poll_wait`]'s `stop`: readable once [`signal_stop`] wrote to it, and
/// for good (nobody reads it), so that every thread polling it wakes.
pub(crate) fn stop_fd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes a [`stop_fd`] readable.
pub(crate) fn signal_stop(stop: BorrowedFd<'_>) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of a live local.
    let n = unsafe { libc::write(stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
    if n == 8 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // EAGAIN: the counter is already huge; it is readable anyway.
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return Ok(());
    }
    Err(e)
}
