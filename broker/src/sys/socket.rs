//! Socket calls on byte buffers: the calls the broker performs for a caller, and what it
//! reads of a socket's kind, state and peer.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_long};

/// `connect(fd, addr, len)` with the address given as bytes.
pub(crate) fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: `addr` is a readable buffer of exactly `addr.len()` bytes; the kernel copies it.
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point at live locals of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `getsockopt` of an `int` option (`IPV6_V6ONLY`, `SO_BINDTOIFINDEX`, ...).
pub(crate) fn int_option(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    getsockopt_int(fd, level, name)
}

/// A TCP socket's state (`tcpi_state` of `TCP_INFO`: `TCP_ESTABLISHED` 1, `TCP_SYN_SENT` 2,
/// ... as in `net/tcp_states.h`).
///
/// # References
/// tcp(7) (`TCP_INFO`)
pub(crate) fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    // The kernel copies as much of `struct tcp_info` as asked for; its first byte is the state.
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` and `len` are live locals of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(info[0])
}

/// Family, type and protocol of a socket (`SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketKind {
    /// `AF_*`.
    pub family: i32,
    /// `SOCK_*` without flags.
    pub sock_type: i32,
    /// `IPPROTO_*` or the family's own protocol number.
    pub protocol: i32,
}

/// Reads the [`SocketKind`] of `fd`; `ENOTSOCK` when it is not a socket (the kernel's own
/// answer to `getsockopt` on anything else).
pub(crate) fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<SocketKind> {
    Ok(SocketKind {
        family: getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?,
        sock_type: getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?,
        protocol: getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)?,
    })
}

fn fstat_mode(fd: BorrowedFd<'_>) -> io::Result<libc::mode_t> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a writable stat buffer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() }.st_mode)
}

/// Whether the file description of `fd` has `O_NONBLOCK`.
pub(crate) fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL takes an int.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    // SAFETY: `value` is a live int of the size given; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The cookie of the network namespace `sock` lives in (`SO_NETNS_COOKIE`, Linux 5.14): the
/// same number for every socket of one namespace, never reused while the system runs.
///
/// # References
/// socket(7) (`SO_NETNS_COOKIE`)
pub(crate) fn socket_netns_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are live locals of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    })?;
    Ok(cookie)
}

/// Whether `fd` is a socket.
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(fstat_mode(fd)? & libc::S_IFMT == libc::S_IFSOCK)
}

/// `sendmsg(fd, {name, one iovec over data, control}, flags)` made as the caller's own send
/// would be, `SIGPIPE` included: returns the bytes sent, and whether the kernel raised
/// `SIGPIPE` for it (it does so with `EPIPE` on the sockets whose protocol says so: stream
/// sockets, not unix datagram or seqpacket ones, not UDP; never with `MSG_NOSIGNAL`). The
/// signal is caught on this thread, which never sees it: `SIGPIPE` is blocked around the
/// call and the pending one taken with `sigtimedwait`, so that the caller gets it exactly
/// where its own send would have.
///
/// # References
/// sendmsg(2) (`EPIPE`, `MSG_NOSIGNAL`), sigtimedwait(2), pthread_sigmask(3)
pub(crate) fn sendmsg_as_caller(
    fd: BorrowedFd<'_>,
    name: &[u8],
    data: &[u8],
    control: &[u8],
    flags: i32,
) -> (io::Result<usize>, bool) {
    if flags & libc::MSG_NOSIGNAL != 0 {
        return (sendmsg_flags(fd, name, data, control, flags), false);
    }
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut pipe: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `pipe` and `old` are live locals; SIGPIPE is a valid signal; only this
    // thread's mask changes.
    unsafe {
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
    }
    let sent = sendmsg_flags(fd, name, data, control, flags);
    let mut raised = false;
    if matches!(&sent, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) {
        let none = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `pipe` is initialised; a NULL siginfo is allowed; a zero timeout polls.
        raised = unsafe { libc::sigtimedwait(&pipe, std::ptr::null_mut(), &none) } == libc::SIGPIPE;
    }
    // SAFETY: `old` was filled by pthread_sigmask above.
    if unsafe { libc::sigismember(&old, libc::SIGPIPE) } != 1 {
        // SAFETY: `pipe` is initialised; this unblocks SIGPIPE for this thread only.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &pipe, std::ptr::null_mut()) };
    }
    (sent, raised)
}

/// `sendmsg(fd, {name, one iovec over data, control}, flags)`; returns the bytes sent.
fn sendmsg_flags(
    fd: BorrowedFd<'_>,
    name: &[u8],
    data: &[u8],
    control: &[u8],
    flags: i32,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !name.is_empty() {
        msg.msg_name = name.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = name.len() as libc::socklen_t;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len();
    }
    // SAFETY: every pointer in `msg` refers to a live buffer of the length stated; the kernel
    // only reads them (MSG_* flags that write are receive flags).
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// `bind(fd, addr, len)` with the address given as bytes.
pub(crate) fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    // SAFETY: `addr` is a readable buffer of exactly `addr.len()` bytes; the kernel copies it.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            addr.as_ptr().cast(),
            addr.len() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub(crate) fn listen_raw(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `getsockname(fd)` as bytes.
pub(crate) fn sockname(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are live locals of the sizes given.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `getpeername(fd)` as bytes.
pub(crate) fn peername(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are live locals of the sizes given.
    cvt(unsafe { libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `socket(family, type, protocol)`, the arguments as the kernel reads them (ints).
pub(crate) fn socket_raw(family: i32, sock_type: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::socket(family, sock_type, protocol) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The supplementary groups of the peer of a connected unix socket, as they were when it
/// connected (`SO_PEERGROUPS`, Linux 4.13).
pub(crate) fn peer_groups(sock: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a live buffer of `len` bytes that the kernel fills; `len` is a
        // valid pointer to its size, updated by the kernel.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        // ERANGE: the buffer was too small and `len` now says how large it must be.
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65_536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process at the other end of a unix socket.
const SO_PEERPIDFD: libc::c_int = 77;

/// A pidfd of the process that connected the unix socket `sock`: `SO_PEERPIDFD`, which names
/// the process itself so that a reused pid cannot redirect it; on a kernel without it
/// (`ENOPROTOOPT`, before Linux 6.5) `pidfd_open` of the `SO_PEERCRED` pid, which names the
/// same process unless it exited and its pid was reused in between.
///
/// # References
/// unix(7) (`SO_PEERPIDFD`, `SO_PEERCRED`), pidfd_open(2)
pub(crate) fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    match getsockopt_int(sock, libc::SOL_SOCKET, SO_PEERPIDFD) {
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
            let mut cred = MaybeUninit::<libc::ucred>::zeroed();
            let mut len = size_of::<libc::ucred>() as libc::socklen_t;
            // SAFETY: `cred` is a live, zeroed `ucred` of `len` bytes that the kernel fills.
            cvt(unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PEERCRED,
                    cred.as_mut_ptr().cast(),
                    &mut len,
                )
            })?;
            // SAFETY: getsockopt succeeded and filled the structure (zeroed before).
            let pid = unsafe { cred.assume_init() }.pid;
            if pid <= 0 {
                // The peer lives in a pid namespace this broker cannot see.
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // SAFETY: plain syscall with integer arguments.
            let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) })?;
            // SAFETY: the kernel returned a new fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
        }
        Err(e) => Err(e),
    }
}

/// `SIOCGSKNS`: an fd of the network namespace of socket `sock`.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// The inode number of the network namespace socket `sock` lives in (`SIOCGSKNS`, then
/// `fstat`), the same number `/proc/PID/ns/net` shows.
///
/// # Errors
/// `EPERM` for a broker without `CAP_NET_ADMIN` over that namespace's user namespace.
///
/// # References
/// ioctl_ns(2), netdevice(7) (`SIOCGSKNS`)
pub(crate) fn socket_netns(sock: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let fd = cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS as _) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let ns = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a writable stat buffer.
    cvt(unsafe { libc::fstat(ns.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(unsafe { st.assume_init() }.st_ino)
}

/// `shutdown(fd, SHUT_RDWR)`: a connect waiting on this socket (TCP in `SYN_SENT`) stops
/// and returns. `fd` is a number: the caller makes sure that it is still the socket it means
/// (the reaper holds the lock its owner takes before closing it).
pub(crate) fn shutdown_both(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments; it touches no memory of ours.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) })?;
    Ok(())
}
