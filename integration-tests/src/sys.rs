//! Raw system calls shared by the probe and the harness.
//!
//! Everything here is a thin wrapper over one `libc` call that returns `Result<_, Errno>` with
//! the raw errno value, so that the probe can report exactly what the kernel (or the broker)
//! answered. Every fd the kernel returns is wrapped in an [`OwnedFd`] at once.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::io::Error;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A raw errno value as the kernel returned it.
pub type Errno = i32;

/// The calling thread's current errno.
pub fn errno() -> Errno {
    Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The symbolic name of an errno value (`"EPERM"`), or `"E<n>"` for one not in the table.
pub fn errno_name(e: Errno) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOSPC => "ENOSPC",
        libc::EPIPE => "EPIPE",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EDESTADDRREQ => "EDESTADDRREQ",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETDOWN => "ENETDOWN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOBUFS => "ENOBUFS",
        libc::EISCONN => "EISCONN",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EALREADY => "EALREADY",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => return format!("E{e}"),
    };
    name.to_owned()
}

/// Turns a `-1`-on-error return value into a `Result` carrying errno.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Wraps a freshly returned fd number.
fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A socket address in kernel layout, with its length.
#[derive(Clone, Copy)]
pub struct SockAddr {
    /// The bytes of the address.
    pub storage: libc::sockaddr_storage,
    /// How many of them are meaningful.
    pub len: libc::socklen_t,
}

impl SockAddr {
    /// An empty (all zero) address of length 0.
    pub fn zeroed() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let storage = unsafe { zeroed() };
        SockAddr { storage, len: 0 }
    }

    /// The address family this address belongs to.
    pub fn family(&self) -> libc::c_int {
        libc::c_int::from(self.storage.ss_family)
    }

    /// A `sockaddr_in` or `sockaddr_in6` for an IP address and port.
    pub fn ip(addr: IpAddr, port: u16) -> Self {
        let mut sa = SockAddr::zeroed();
        match addr {
            IpAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.octets()),
                    },
                    sin_zero: [0; 8],
                };
                sa.write(&sin);
            }
            IpAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: port.to_be(),
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    sin6_scope_id: 0,
                };
                sa.write(&sin6);
            }
        }
        sa
    }

    /// A `sockaddr_un` for a filesystem path (with its terminating NUL counted in the length).
    pub fn unix_path(path: &[u8]) -> Self {
        Self::unix_raw(path, true)
    }

    /// A `sockaddr_un` for an abstract name: `sun_path` starts with a NUL byte.
    pub fn unix_abstract(name: &[u8]) -> Self {
        let mut raw = vec![0u8];
        raw.extend_from_slice(name);
        Self::unix_raw(&raw, false)
    }

    fn unix_raw(path: &[u8], nul: bool) -> Self {
        let mut sa = SockAddr::zeroed();
        // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
        let mut sun: libc::sockaddr_un = unsafe { zeroed() };
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let n = path.len().min(sun.sun_path.len() - 1);
        for (dst, src) in sun.sun_path.iter_mut().zip(&path[..n]) {
            *dst = *src as libc::c_char;
        }
        sa.write(&sun);
        sa.len = (size_of::<libc::sa_family_t>() + n + usize::from(nul)) as libc::socklen_t;
        sa
    }

    fn write<T: Copy>(&mut self, value: &T) {
        assert!(size_of::<T>() <= size_of::<libc::sockaddr_storage>());
        // SAFETY: T fits in sockaddr_storage (checked above), both are plain old data, and
        // write_unaligned does not need the destination to be aligned for T.
        unsafe { std::ptr::write_unaligned((&raw mut self.storage).cast::<T>(), *value) };
        self.len = size_of::<T>() as libc::socklen_t;
    }

    /// The port of an IPv4 or IPv6 address, if it is one.
    pub fn port(&self) -> Option<u16> {
        let p = (&raw const self.storage).cast::<u8>();
        match self.family() {
            // SAFETY: the port sits at bytes 2..4 of both sockaddr_in and sockaddr_in6, which
            // lie inside sockaddr_storage.
            libc::AF_INET | libc::AF_INET6 => Some(u16::from_be(unsafe {
                std::ptr::read_unaligned(p.add(2).cast::<u16>())
            })),
            _ => None,
        }
    }
}

/// `socket(domain, ty | SOCK_CLOEXEC, 0)`.
pub fn socket(domain: libc::c_int, ty: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: socket takes no pointers.
    owned(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) } as libc::c_long)
}

/// `connect(fd, addr)` through the raw system call (no libc wrapper logic in between).
pub fn connect(fd: &impl AsRawFd, addr: &SockAddr) -> Result<(), Errno> {
    connect_raw(fd.as_raw_fd(), (&raw const addr.storage) as usize, addr.len)
}

/// `connect` with an arbitrary fd number, address and length, as a hostile program would call
/// it. The kernel validates all three; it only reads at the address (or answers `EFAULT`).
pub fn connect_raw(fd: RawFd, addr: usize, len: libc::socklen_t) -> Result<(), Errno> {
    connect_raw_len(fd, addr, libc::c_long::from(len))
}

/// Like [`connect_raw`] with the length passed as a full register (so that negative and huge
/// values reach the kernel unchanged).
pub fn connect_raw_len(fd: RawFd, addr: usize, len: libc::c_long) -> Result<(), Errno> {
    // SAFETY: connect only reads `len` bytes at `addr`; the kernel checks the address and
    // answers EFAULT for memory we do not have, so no Rust memory is written or aliased.
    let ret = unsafe { libc::syscall(libc::SYS_connect, libc::c_long::from(fd), addr, len) };
    check(ret).map(drop)
}

/// Waits until `fd` is writable (or failed). `Ok(false)` on timeout.
pub fn poll_writable(fd: &impl AsRawFd, timeout_ms: i32) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd array of length 1 for the duration of the call.
    let n = check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) } as libc::c_long)?;
    Ok(n > 0)
}

/// Waits until `fd` is readable (or hung up). `Ok(false)` on timeout.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is a valid pollfd array of length 1 for the duration of the call.
    let n = check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) } as libc::c_long)?;
    Ok(n > 0)
}

/// `getsockopt(SOL_SOCKET, SO_ERROR)`: the pending error of a socket (0 for none).
pub fn so_error(fd: &impl AsRawFd) -> Result<Errno, Errno> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: err and len are valid for writes of the sizes we pass.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    } as libc::c_long)?;
    Ok(err)
}

/// `getpeername`.
pub fn peer(fd: &impl AsRawFd) -> Result<SockAddr, Errno> {
    let mut sa = SockAddr::zeroed();
    sa.len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes; len says how big storage is.
    let ret =
        unsafe { libc::getpeername(fd.as_raw_fd(), (&raw mut sa.storage).cast(), &mut sa.len) };
    check(ret as libc::c_long)?;
    Ok(sa)
}

/// `send(fd, buf, MSG_NOSIGNAL)`.
pub fn send(fd: &impl AsRawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    let n = check(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    } as libc::c_long)?;
    Ok(n as usize)
}

/// `sendmsg` of one datagram with `fds` attached as `SCM_RIGHTS` (none if empty).
pub fn send_with_fds(fd: &impl AsRawFd, buf: &[u8], fds: &[RawFd]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let payload = std::mem::size_of_val(fds) as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points to `space` zeroed, 8-aligned bytes, enough for one cmsg
        // carrying `payload` bytes, so CMSG_FIRSTHDR is non-null and CMSG_DATA is in bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload as usize,
            );
        }
    }
    // SAFETY: msg and everything it points to (iov, buf, control) outlive the call.
    let n =
        check(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } as libc::c_long)?;
    Ok(n as usize)
}

/// `recv(fd, buf, MSG_DONTWAIT)` after waiting up to `timeout_ms` for something to read.
/// `Ok(None)` on timeout; `Ok(Some(0))` is end of file.
pub fn recv_timeout(
    fd: &impl AsRawFd,
    buf: &mut [u8],
    timeout_ms: i32,
) -> Result<Option<usize>, Errno> {
    if !poll_readable(fd, timeout_ms)? {
        return Ok(None);
    }
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = check(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    } as libc::c_long)?;
    Ok(Some(n as usize))
}

/// Connects a new `AF_UNIX` `SOCK_SEQPACKET` socket to a filesystem path.
pub fn seqpacket_connect(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    use std::os::unix::ffi::OsStrExt;
    let fd = socket(libc::AF_UNIX, libc::SOCK_SEQPACKET)?;
    connect(&fd, &SockAddr::unix_path(path.as_os_str().as_bytes()))?;
    Ok(fd)
}

/// `pipe2(O_CLOEXEC)`: the read end and the write end.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    use std::os::fd::FromRawFd;
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array it is given, which has room for them.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: kill takes no pointers.
    check(unsafe { libc::kill(pid, sig) } as libc::c_long).map(drop)
}

/// `socket(family, ty, proto)` through the raw system call with every argument passed as a full
/// 64-bit register, so that high bits (which the kernel ignores: it takes `int`s) reach the
/// seccomp filter unchanged. No flags are added.
pub fn socket_raw(family: u64, ty: u64, proto: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: socket takes no pointers.
    owned(unsafe { libc::syscall(libc::SYS_socket, family, ty, proto) })
}

/// `ptrace(PTRACE_SEIZE, pid, 0, 0)`: attach without stopping the tracee.
pub fn ptrace_seize(pid: i32) -> Result<(), Errno> {
    ptrace_raw(libc::PTRACE_SEIZE, pid, 0, 0).map(drop)
}

/// `ptrace(PTRACE_INTERRUPT, pid)`: stop a seized tracee.
pub fn ptrace_interrupt(pid: i32) -> Result<(), Errno> {
    ptrace_raw(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// `ptrace(PTRACE_DETACH, pid, 0, 0)`: let a stopped tracee go, no signal.
pub fn ptrace_detach(pid: i32) -> Result<(), Errno> {
    ptrace_raw(libc::PTRACE_DETACH, pid, 0, 0).map(drop)
}

/// `ptrace(PTRACE_PEEKDATA, pid, addr)`: one word of a stopped tracee's memory.
pub fn ptrace_peek(pid: i32, addr: usize) -> Result<[u8; 8], Errno> {
    let mut word = 0u64;
    // The raw system call stores the word at `data` (the libc wrapper hides this).
    ptrace_raw(libc::PTRACE_PEEKDATA, pid, addr, (&raw mut word) as usize)?;
    Ok(word.to_ne_bytes())
}

fn ptrace_raw(
    request: libc::c_uint,
    pid: i32,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    // SAFETY: the requests used here read at most the integer arguments, except PEEKDATA,
    // which writes one word at `data`: callers pass the address of a live local u64.
    check(unsafe {
        libc::syscall(
            libc::SYS_ptrace,
            libc::c_long::from(request),
            libc::c_long::from(pid),
            addr,
            data,
        )
    })
}

/// Waits (polling with `WNOHANG`, at most `timeout_ms`) until tracee `pid` reports a stop.
/// `Ok(false)` on timeout.
pub fn wait_stopped(pid: i32, timeout_ms: u64) -> Result<bool, Errno> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: status is a live local the kernel writes one int into.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r < 0 {
            return Err(errno());
        }
        if r == pid && libc::WIFSTOPPED(status) {
            return Ok(true);
        }
        if std::time::Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `process_vm_readv` of `len` bytes at `addr` in process `pid`.
pub fn vm_read(pid: i32, addr: usize, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, which is live and writable for `len` bytes; `remote` is
    // only read by the kernel, in the other process, which checks it.
    let n =
        check(unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) } as libc::c_long)?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// `sendto(fd, buf, len, flags, dest, destlen)` through the raw system call; `dest` `None`
/// passes a NULL destination.
pub fn sendto(
    fd: RawFd,
    buf: &[u8],
    flags: libc::c_int,
    dest: Option<&SockAddr>,
) -> Result<usize, Errno> {
    let (ptr, len) = match dest {
        Some(d) => ((&raw const d.storage) as usize, d.len),
        None => (0usize, 0),
    };
    // SAFETY: buf is readable for its length; dest (when given) lives across the call.
    let n = check(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
            ptr,
            len,
        )
    })?;
    Ok(n as usize)
}

/// `sendmsg(fd, msg, flags)` with a caller-built `msghdr` at address `msg` (which the caller
/// may be rewriting concurrently: that is the point of some probes).
pub fn sendmsg_at(fd: RawFd, msg: usize, flags: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: the kernel (or the broker) reads the msghdr; a bad pointer is EFAULT.
    let n =
        check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg, flags | libc::MSG_NOSIGNAL) })?;
    Ok(n as usize)
}

/// `sendmmsg(fd, vec, vlen, flags)` on a vector of `mmsghdr`s.
pub fn sendmmsg(fd: RawFd, vec: &mut [libc::mmsghdr], flags: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: vec is valid for reads and writes (msg_len) of its length.
    let n = check(unsafe {
        libc::syscall(
            libc::SYS_sendmmsg,
            fd,
            vec.as_mut_ptr(),
            vec.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    })?;
    Ok(n as usize)
}

/// `bind(fd, addr)`.
pub fn bind(fd: &impl AsRawFd, addr: &SockAddr) -> Result<(), Errno> {
    // SAFETY: addr lives across the call; len says how much of it is meaningful.
    check(unsafe {
        libc::syscall(
            libc::SYS_bind,
            fd.as_raw_fd(),
            (&raw const addr.storage) as usize,
            addr.len,
        )
    })?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: &impl AsRawFd, backlog: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_listen, fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `getsockname`.
pub fn local(fd: &impl AsRawFd) -> Result<SockAddr, Errno> {
    let mut sa = SockAddr::zeroed();
    sa.len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage and len are valid for writes; len says how big storage is.
    let ret =
        unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut sa.storage).cast(), &mut sa.len) };
    check(ret as libc::c_long)?;
    Ok(sa)
}

/// `dup2(old, new)`.
pub fn dup2(old: RawFd, new: RawFd) -> Result<(), Errno> {
    // SAFETY: integer arguments only; `new` is replaced atomically, which is the point.
    check(unsafe { libc::dup2(old, new) } as libc::c_long)?;
    Ok(())
}

/// `close(fd)` of a number another thread may have closed or replaced meanwhile (an attack
/// that races its own descriptors); the error is the answer.
pub fn close_raw(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: integer argument only; no owned descriptor of this process is assumed open.
    check(unsafe { libc::close(fd) } as libc::c_long)?;
    Ok(())
}

impl SockAddr {
    /// The IP address of an `AF_INET`/`AF_INET6` address, as text.
    pub fn ip_string(&self) -> Option<String> {
        let p = (&raw const self.storage).cast::<u8>();
        match self.family() {
            libc::AF_INET => {
                let mut o = [0u8; 4];
                // SAFETY: bytes 4..8 of a sockaddr_in inside sockaddr_storage.
                unsafe { std::ptr::copy_nonoverlapping(p.add(4), o.as_mut_ptr(), 4) };
                Some(std::net::Ipv4Addr::from(o).to_string())
            }
            libc::AF_INET6 => {
                let mut o = [0u8; 16];
                // SAFETY: bytes 8..24 of a sockaddr_in6 inside sockaddr_storage.
                unsafe { std::ptr::copy_nonoverlapping(p.add(8), o.as_mut_ptr(), 16) };
                Some(std::net::Ipv6Addr::from(o).to_string())
            }
            _ => None,
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_GETFL/F_SETFL take integers only.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) } as libc::c_long)?;
    let flags = flags as libc::c_int | libc::O_NONBLOCK;
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    check(ret as libc::c_long)?;
    Ok(())
}

/// `sendmsg` of `buf` to `dest` with one control message `(level, type, data)`.
pub fn sendmsg_cmsg(
    fd: RawFd,
    buf: &[u8],
    dest: Option<&SockAddr>,
    cmsg: (libc::c_int, libc::c_int, &[u8]),
) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let payload = cmsg.2.len() as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8).max(1)];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    if let Some(d) = dest {
        msg.msg_name = (&raw const d.storage) as *mut c_void;
        msg.msg_namelen = d.len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points to `space` zeroed, 8-aligned bytes: room for one cmsg with
    // `payload` bytes, so CMSG_FIRSTHDR is non-null and CMSG_DATA is in bounds.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = cmsg.0;
        (*c).cmsg_type = cmsg.1;
        (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
        std::ptr::copy_nonoverlapping(cmsg.2.as_ptr(), libc::CMSG_DATA(c), cmsg.2.len());
    }
    // SAFETY: msg and everything it points to outlive the call.
    let n = check(unsafe { libc::syscall(libc::SYS_sendmsg, fd, &msg, libc::MSG_NOSIGNAL) })?;
    Ok(n as usize)
}

/// Process and ids as a unix socket reports them (`struct ucred`): `(pid, uid, gid)`.
pub type Ucred = (i32, u32, u32);

/// `getsockopt(SOL_SOCKET, SO_PEERCRED)`: who the peer of a unix socket was when it
/// connected (or, on the connecting side, when the listener called `listen`).
pub fn peer_cred(fd: &impl AsRawFd) -> Result<Ucred, Errno> {
    // SAFETY: ucred is plain old data; all-zero is a valid value.
    let mut cred: libc::ucred = unsafe { zeroed() };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes we pass.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    } as libc::c_long)?;
    Ok((cred.pid, cred.uid, cred.gid))
}

/// `setsockopt(SOL_SOCKET, SO_PASSCRED, 1)`: the socket receives its senders' credentials.
pub fn set_passcred(fd: &impl AsRawFd) -> Result<(), Errno> {
    let on: libc::c_int = 1;
    // SAFETY: on is a live c_int of the size we pass.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(())
}

/// `recvmsg(fd, MSG_DONTWAIT)` after waiting up to `timeout_ms` for something to read: the
/// bytes received and the `SCM_CREDENTIALS` that came with them, if any. `Ok(None)` on
/// timeout.
pub fn recv_with_creds(
    fd: &impl AsRawFd,
    buf: &mut [u8],
    timeout_ms: i32,
) -> Result<Option<(usize, Option<Ucred>)>, Errno> {
    if !poll_readable(fd, timeout_ms)? {
        return Ok(None);
    }
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a credentials message and a few descriptors besides.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg points to live iov, buf and control of the sizes it states.
    let n = check(
        unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) } as libc::c_long,
    )?;
    let mut creds = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed cmsgs;
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within them, and a credentials message holds one ucred.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let u = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::ucred>());
                creds = Some((u.pid, u.uid, u.gid));
            } else if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                // Descriptors nobody asked for: close them rather than leak them.
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i * size_of::<RawFd>()).cast());
                    drop(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((n as usize, creds)))
}

/// `SO_PEERGROUPS` (`asm-generic/socket.h`: x86_64 and aarch64), not exported by the libc crate.
const SO_PEERGROUPS: libc::c_int = 59;

/// `getsockopt(SOL_SOCKET, SO_PEERGROUPS)`: the supplementary groups recorded with
/// `SO_PEERCRED`, sorted.
pub fn peer_groups(fd: &impl AsRawFd) -> Result<Vec<u32>, Errno> {
    let mut groups = [0u32; 256];
    let mut len = size_of_val(&groups) as libc::socklen_t;
    // SAFETY: groups and len are valid for writes of the sizes we pass.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    } as libc::c_long)?;
    let mut v = groups[..len as usize / size_of::<u32>()].to_vec();
    v.sort_unstable();
    Ok(v)
}

/// `sendmsg` of `buf` with `control` as the ancillary data, byte for byte (copied to an
/// 8-aligned buffer), `MSG_NOSIGNAL | flags`: lets a test send control messages the kernel
/// may refuse (a `cmsg_len` longer than the buffer) or the receiver may not expect.
pub fn send_with_control(
    fd: &impl AsRawFd,
    buf: &[u8],
    control: &[u8],
    flags: libc::c_int,
) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    let mut aligned = vec![0u64; control.len().div_ceil(8).max(1)];
    // SAFETY: `aligned` has room for at least `control.len()` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            control.as_ptr(),
            aligned.as_mut_ptr().cast::<u8>(),
            control.len(),
        );
    }
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = aligned.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
    }
    // SAFETY: msg and everything it points to (iov, buf, aligned) outlive the call.
    let n = check(
        unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) } as libc::c_long,
    )?;
    Ok(n as usize)
}

// ---- raw addresses: the address property test and its attacks (probe/address.rs) ----------

impl SockAddr {
    /// An address holding `bytes` (at most the 128 of `sockaddr_storage`; zeros after them)
    /// whose length says `len`, which may claim more than it holds: the kernel refuses such a
    /// length before it reads (`connect`, `bind`, `sendto`) or reads 128 bytes (`sendmsg`).
    pub fn from_bytes(bytes: &[u8], len: libc::socklen_t) -> Self {
        let mut sa = SockAddr::zeroed();
        let n = bytes.len().min(size_of::<libc::sockaddr_storage>());
        // SAFETY: at most size_of::<sockaddr_storage>() bytes are copied into it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut sa.storage).cast::<u8>(), n)
        };
        sa.len = len;
        sa
    }

    /// The bytes the length covers (at most 128).
    pub fn bytes(&self) -> Vec<u8> {
        let n = (self.len as usize).min(size_of::<libc::sockaddr_storage>());
        let mut out = vec![0u8; n];
        // SAFETY: n bytes lie inside sockaddr_storage.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&raw const self.storage).cast::<u8>(),
                out.as_mut_ptr(),
                n,
            )
        };
        out
    }
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
pub fn set_int_option(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> Result<(), Errno> {
    // SAFETY: value is a live c_int of the size we pass.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } as libc::c_long)?;
    Ok(())
}

/// `sendmsg` of `buf` to `name` (`None`: a NULL `msg_name`), with its length as the
/// `msg_namelen`.
pub fn sendmsg_to(
    fd: &impl AsRawFd,
    buf: &[u8],
    name: Option<&SockAddr>,
    flags: libc::c_int,
) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(name) = name {
        msg.msg_name = (&raw const name.storage).cast_mut().cast();
        msg.msg_namelen = name.len;
    }
    // SAFETY: msg and everything it points to (iov, buf, name) outlive the call.
    let n = check(unsafe {
        libc::syscall(
            libc::SYS_sendmsg,
            fd.as_raw_fd(),
            &raw const msg,
            flags | libc::MSG_NOSIGNAL,
        )
    })?;
    Ok(n as usize)
}

/// `sendmmsg` of one entry: `buf` to `name`, as [`sendmsg_to`].
pub fn sendmmsg_to(
    fd: &impl AsRawFd,
    buf: &[u8],
    name: Option<&SockAddr>,
    flags: libc::c_int,
) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
    let mut entry: libc::mmsghdr = unsafe { zeroed() };
    entry.msg_hdr.msg_iov = &mut iov;
    entry.msg_hdr.msg_iovlen = 1;
    if let Some(name) = name {
        entry.msg_hdr.msg_name = (&raw const name.storage).cast_mut().cast();
        entry.msg_hdr.msg_namelen = name.len;
    }
    sendmmsg(fd.as_raw_fd(), std::slice::from_mut(&mut entry), flags)
}

/// `recv(fd, buf, MSG_DONTWAIT)`: `Ok(None)` when nothing is waiting.
pub fn recv_now(fd: &impl AsRawFd, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    // SAFETY: buf is writable for its length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match check(n as libc::c_long) {
        Ok(n) => Ok(Some(n as usize)),
        Err(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}
