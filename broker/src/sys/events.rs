//! Waiting and interrupting: `epoll`, `timerfd`, and the signal that ends a blocked call of
//! one of the broker's threads (`bounds/reaper.rs`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_long};

/// A new epoll instance (`EPOLL_CLOEXEC`).
pub(crate) fn epoll_new() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with an integer argument.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to `epoll` for its hang-up only, once (`EPOLLONESHOT`): no readiness event is
/// asked for, and `EPOLLHUP` is always reported. `key` comes back with the event. The entry
/// goes away by itself when the last reference to `fd`'s file is closed.
pub(crate) fn epoll_watch_hangup(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    key: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLONESHOT as u32,
        u64: key,
    };
    // SAFETY: both fds are open for the call; `event` is a live local.
    cvt(unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    })?;
    Ok(())
}

/// Adds `fd` to `epoll` asking for no event: the entry only records `fd`'s file (its inode
/// shows in the epoll's `/proc/self/fdinfo`), and goes away by itself when the last reference
/// to that file is closed. (The kernel adds `EPOLLERR` and `EPOLLHUP`, reported to a caller of
/// `epoll_wait`, which nobody makes on such an instance.)
pub(crate) fn epoll_watch_file(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: both fds are open for the call; `event` is a live local.
    cvt(unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    })?;
    Ok(())
}

/// Adds `fd` to `epoll` for readability (level-triggered); `key` comes back with the event.
pub(crate) fn epoll_watch_readable(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    key: u64,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: key,
    };
    // SAFETY: both fds are open for the call; `event` is a live local.
    cvt(unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut event,
        )
    })?;
    Ok(())
}

/// Waits for events of `epoll`, at most `timeout_ms` (-1: no timeout); returns their keys.
pub(crate) fn epoll_wait_keys(epoll: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<Vec<u64>> {
    const MAX: usize = 64;
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
    // SAFETY: `events` has room for MAX events; the fd is open for the call.
    let n = cvt(unsafe {
        libc::epoll_wait(
            epoll.as_raw_fd(),
            events.as_mut_ptr(),
            MAX as i32,
            timeout_ms,
        )
    })?;
    Ok(events[..n as usize].iter().map(|e| e.u64).collect())
}

/// A timer (`timerfd`, monotonic clock, non-blocking) for [`timer_set`].
pub(crate) fn timer_new() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets `timer` to expire once, `after` from now (readable then).
pub(crate) fn timer_set(timer: BorrowedFd<'_>, after: std::time::Duration) -> io::Result<()> {
    let value = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos().max(1) as libc::c_long,
        },
    };
    // SAFETY: `value` is a live, complete itimerspec; the old value is not asked for.
    cvt(unsafe { libc::timerfd_settime(timer.as_raw_fd(), 0, &value, std::ptr::null_mut()) })?;
    Ok(())
}

/// Reads a [`timer_new`] timer's expirations, so that it is no longer readable.
pub(crate) fn timer_drain(timer: BorrowedFd<'_>) {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live local; the fd is non-blocking.
    let _ = unsafe { libc::read(timer.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
}

/// The signal that interrupts a blocking system call the broker performs for a caller that no
/// longer waits for it (`bounds/reaper.rs`): a real-time signal, which no part of the broker uses
/// otherwise, and whose default action (ending the process) nothing else should rely on.
pub(crate) fn interrupt_signal() -> i32 {
    libc::SIGRTMIN() + 6
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Installs a handler for [`interrupt_signal`] that does nothing, without `SA_RESTART`, so
/// that a blocking system call of the thread it is sent to returns `EINTR`. `Ok(false)` when
/// the process already has another handler for it (a program embedding the broker): that
/// handler stays, and nothing is interrupted.
pub(crate) fn install_interrupt_handler() -> io::Result<bool> {
    let sig = interrupt_signal();
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: sigaction is plain data; all-zero is an empty mask and no flags.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: queries the current action into a live local.
    cvt(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) })?;
    if old.sa_sigaction == handler {
        return Ok(true);
    }
    if old.sa_sigaction != libc::SIG_DFL {
        return Ok(false);
    }
    // SAFETY: as above.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = handler;
    new.sa_flags = 0;
    // SAFETY: `new` is a complete action with an empty mask; the handler is async-signal-safe
    // (it does nothing).
    cvt(unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) })?;
    Ok(true)
}

/// The set holding [`interrupt_signal`] alone.
fn interrupt_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live local; the signal number is valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, interrupt_signal());
    }
    set
}

/// Blocks or unblocks [`interrupt_signal`] for the calling thread only; returns whether it
/// was blocked before.
pub(crate) fn set_interrupt_blocked(blocked: bool) -> bool {
    let set = interrupt_set();
    let how = if blocked {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: sigset_t is plain data; the kernel fills `old`.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is initialised and `old` is a live local.
    unsafe { libc::pthread_sigmask(how, &set, &mut old) };
    // SAFETY: `old` was filled by pthread_sigmask.
    unsafe { libc::sigismember(&old, interrupt_signal()) == 1 }
}

/// Sends [`interrupt_signal`] to thread `tid` of this process.
pub(crate) fn interrupt_thread(tid: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, interrupt_signal()) })?;
    Ok(())
}
