//! Raw system calls of the bench: the timed calls themselves, the hand-written seccomp filter
//! of the floor measurement and the user-notification ioctls that answer it.
//!
//! Each function is one thin wrapper over `libc` returning `Result<_, Errno>` with the raw
//! errno value; every fd the kernel returns is wrapped in an [`OwnedFd`] at once.
#![allow(unsafe_code)]

use std::io::Error;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A raw errno value as the kernel returned it.
pub type Errno = i32;

/// The calling thread's current errno.
pub fn errno() -> Errno {
    Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Turns a `-1`-on-error return value into a `Result` carrying errno.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (the vDSO `clock_gettime`, no system call).
#[inline(always)]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A fresh blocking IPv4 TCP socket.
pub fn tcp4_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) takes no pointers.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A `sockaddr_in` for `127.0.0.1:port`.
pub fn loopback4(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = port.to_be();
    sin.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
    sin
}

/// `connect(2)`, nothing else: the call the bench times.
#[inline(always)]
pub fn connect4(fd: &OwnedFd, sin: &libc::sockaddr_in) -> Result<(), Errno> {
    // SAFETY: `sin` points to a valid sockaddr_in of the length passed; `fd` is open.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (sin as *const libc::sockaddr_in).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// `SO_LINGER` with a zero timeout: closing the socket sends RST and leaves no `TIME_WAIT`
/// entry behind, so that thousands of connections do not fill the ephemeral port table.
pub fn set_linger_zero(fd: &impl AsRawFd) -> Result<(), Errno> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid struct linger of the length passed; `fd` is open.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// `listen(2)` again on a listening socket: raises its accept-queue length to `backlog`
/// (capped by `net.core.somaxconn`). The 128 of `std` overflows when the accepting thread
/// does not get a CPU for a few milliseconds, and a dropped SYN costs a 1 s retransmission.
pub fn listen(fd: &impl AsRawFd, backlog: libc::c_int) -> Result<(), Errno> {
    // SAFETY: listen(2) takes no pointers.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) } as libc::c_long).map(drop)
}

/// Sends `sig` to the process `pid` (a child this program started).
pub fn kill(pid: u32, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: kill(2) takes no pointers.
    check(unsafe { libc::kill(pid as libc::pid_t, sig) } as libc::c_long).map(drop)
}

/// `alarm(2)`: the default action of `SIGALRM` ends this process after `secs` seconds.
pub fn alarm(secs: u32) {
    // SAFETY: alarm(2) takes no pointers.
    unsafe { libc::alarm(secs) };
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2(2) writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: the kernel just returned these two fds to us and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf` to `fd`.
pub fn write_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes; `fd` is open.
        let ret = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        match check(ret as libc::c_long) {
            Ok(n) => buf = &buf[n as usize..],
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes from `fd` (`EPIPE` at end of file before that).
pub fn read_exact(fd: &OwnedFd, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes; `fd` is open.
        let ret = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match check(ret as libc::c_long) {
            Ok(0) => return Err(libc::EPIPE),
            Ok(n) => done += n as usize,
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fork(2)`. Only call it while this process has a single thread.
pub fn fork() -> Result<libc::pid_t, Errno> {
    // SAFETY: the caller runs single-threaded (the `--child floor` process never starts a
    // thread), so the child's copy of every lock and allocator state is consistent.
    let pid = unsafe { libc::fork() };
    check(pid as libc::c_long).map(|p| p as libc::pid_t)
}

/// `_exit(2)`: ends the forked child without running the parent's exit handlers twice.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// `waitpid(pid, 0)`: the raw wait status.
pub fn waitpid(pid: libc::pid_t) -> Result<libc::c_int, Errno> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int.
        match check(unsafe { libc::waitpid(pid, &mut status, 0) } as libc::c_long) {
            Ok(_) => return Ok(status),
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: this process dies with its parent.
pub fn die_with_parent() -> Result<(), Errno> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } as _).map(drop)
}

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`, required to install a filter without `CAP_SYS_ADMIN`.
pub fn no_new_privs() -> Result<(), Errno> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as _).map(drop)
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

/// One classic-BPF instruction.
const fn insn(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs the floor's filter on the calling thread: another architecture is killed,
/// `getppid` goes to the listener (`SECCOMP_RET_USER_NOTIF`), everything else is allowed.
/// Returns the new listener; the caller needs `no_new_privs` first.
pub fn install_getppid_notify_filter() -> Result<OwnedFd, Errno> {
    const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
    // struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    let filter = [
        /* 0 */ insn(LD_W_ABS, 0, 0, ARCH),
        /* 1 */ insn(JEQ_K, 0, 4, AUDIT_ARCH_NATIVE), // else -> 6
        /* 2 */ insn(LD_W_ABS, 0, 0, NR),
        /* 3 */ insn(JEQ_K, 0, 1, libc::SYS_getppid as u32), // else -> 5
        /* 4 */ insn(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF),
        /* 5 */ insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        /* 6 */ insn(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which outlives the call; the kernel copies it.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &prog as *const libc::sock_fprog,
        )
    })?;
    // SAFETY: the kernel just returned this listener fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The raw `getppid` system call (never libc's wrapper, which could cache it).
#[inline(always)]
pub fn raw_getppid() -> libc::c_long {
    // SAFETY: getppid takes no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes integers only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, target, 0)`: our own copy of fd number `target` of that process.
pub fn pidfd_getfd(pidfd: &OwnedFd, target: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: pidfd_getfd takes integers only.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) })?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `SECCOMP_IOCTL_NOTIF_RECV`: blocks until a notification arrives; returns (id, syscall nr).
#[inline(always)]
pub fn notif_recv(listener: &OwnedFd) -> Result<(u64, i32), Errno> {
    loop {
        // SAFETY: seccomp_notif is plain old data; the kernel requires it zeroed.
        let mut req: libc::seccomp_notif = unsafe { zeroed() };
        // SAFETY: `req` is a valid, writable seccomp_notif; `listener` is a seccomp listener.
        let ret = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &mut req as *mut libc::seccomp_notif,
            )
        };
        match check(ret as libc::c_long) {
            Ok(_) => return Ok((req.id, req.data.nr)),
            Err(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_SEND` with `val = 0, error = 0, flags = 0`: the call returns 0 without
/// running (never `CONTINUE`).
#[inline(always)]
pub fn notif_send_zero(listener: &OwnedFd, id: u64) -> Result<(), Errno> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: 0,
    };
    // SAFETY: `resp` is a valid seccomp_notif_resp; `listener` is a seccomp listener.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` (Linux 6.6, not in `libc` yet).
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS(SYNC_WAKE_UP)`: the kernel hands the CPU straight from the
/// caller to the answering thread and back, as in a synchronous call.
pub fn notif_set_sync_wake_up(listener: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: this ioctl takes its flags by value; `listener` is a seccomp listener.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    check(ret as libc::c_long).map(drop)
}

// ---- the cost-rule bench (`nj-bench cost`) ----

/// `sched_setaffinity(0, {cpu})`: the calling thread runs on `cpu` only.
pub fn pin_to_cpu(cpu: usize) -> Result<(), Errno> {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { zeroed() };
    if cpu >= 8 * size_of::<libc::cpu_set_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: `cpu` was checked to be within the set's bits just above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    check(ret as libc::c_long).map(drop)
}

/// The CPU the calling thread runs on now (-1 if unknown).
pub fn current_cpu() -> i32 {
    // SAFETY: sched_getcpu takes no arguments.
    unsafe { libc::sched_getcpu() }
}

/// A fresh IPv4 UDP socket.
pub fn udp4_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: socket(2) takes no pointers.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `send(2)`: glibc makes it `sendto(fd, buf, len, flags, NULL, 0)`, the call the filter keeps
/// in the kernel (no destination). Returns the bytes sent.
#[inline(always)]
pub fn send(fd: &impl AsRawFd, buf: &[u8], flags: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes; `fd` is open.
    let ret = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// `recv(2)` (`recvfrom(fd, buf, len, flags, NULL, NULL)`): returns the bytes received.
#[inline(always)]
pub fn recv(fd: &impl AsRawFd, buf: &mut [u8], flags: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `fd` is open.
    let ret = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// `sendmsg(2)` of one buffer with no destination (`msg_name` NULL), as on a connected socket.
/// The filter cannot see `msg_name`, so this call always goes to the broker.
pub fn sendmsg_connected(fd: &impl AsRawFd, buf: &[u8]) -> Result<usize, Errno> {
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all zeroes is "no name, no control".
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points to one iovec describing `buf`, which outlives the call.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, 0) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// One `write(2)`: returns the bytes written.
#[inline(always)]
pub fn write(fd: &impl AsRawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes; `fd` is open.
    let ret = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// One `read(2)`: returns the bytes read.
#[inline(always)]
pub fn read(fd: &impl AsRawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `fd` is open.
    let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    check(ret as libc::c_long).map(|n| n as usize)
}

/// `shutdown(fd, SHUT_WR)`: the peer reads end of file.
pub fn shutdown_write(fd: &impl AsRawFd) -> Result<(), Errno> {
    // SAFETY: shutdown(2) takes no pointers.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } as libc::c_long).map(drop)
}

/// `SO_RCVBUF` (the kernel doubles it, capped by `net.core.rmem_max`).
pub fn set_rcvbuf(fd: &impl AsRawFd, bytes: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `bytes` is a valid int of the length passed; `fd` is open.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(ret as libc::c_long).map(drop)
}

/// The audit architecture of this build, as the filter compares it.
pub const AUDIT_ARCH: u32 = AUDIT_ARCH_NATIVE;

/// `PTRACE_SECCOMP_GET_FILTER` (`linux/ptrace.h`).
const PTRACE_SECCOMP_GET_FILTER: libc::c_long = 0x420c;

/// The raw ptrace system call (glibc's wrapper is variadic and special-cases the peeks).
fn ptrace(
    request: libc::c_long,
    pid: libc::pid_t,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    // SAFETY: the requests used here take integers, or (`SECCOMP_GET_FILTER`) a buffer whose
    // size the caller checked first.
    check(unsafe { libc::syscall(libc::SYS_ptrace, request, pid, addr, data) })
}

/// The first (`index` 0 = most recent) seccomp filter of process `pid`, read with
/// `PTRACE_SEIZE` + `PTRACE_INTERRUPT` + `PTRACE_SECCOMP_GET_FILTER`, then detached.
/// Needs `CAP_SYS_ADMIN` (and the right to trace `pid`).
pub fn seccomp_filter_of(pid: libc::pid_t, index: usize) -> Result<Vec<libc::sock_filter>, Errno> {
    ptrace(libc::PTRACE_SEIZE as libc::c_long, pid, 0, 0)?;
    let result = (|| {
        ptrace(libc::PTRACE_INTERRUPT as libc::c_long, pid, 0, 0)?;
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid, writable int.
            let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
            match check(ret as libc::c_long) {
                Ok(_) => break,
                Err(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        let count = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, 0)? as usize;
        let mut prog = vec![insn(0, 0, 0, 0); count];
        let got = ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            pid,
            index,
            prog.as_mut_ptr() as usize,
        )?;
        prog.truncate(got as usize);
        Ok(prog)
    })();
    let _ = ptrace(libc::PTRACE_DETACH as libc::c_long, pid, 0, 0);
    result
}

/// The filters a native worker may install on itself, to tell apart what seccomp costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnFilter {
    /// One instruction, `RET ALLOW`: seccomp is on, but every system call number is a
    /// constant `ALLOW` that the kernel caches, so the filter never runs.
    AllowAll,
    /// The least a filter that keeps `send()` in the kernel must do: check the architecture,
    /// and for `sendto` look at the destination (`EPERM` when there is one, never the case in
    /// the bench); 9 instructions on the `sendto` path, every other number cached.
    SendtoOnly,
}

/// Installs `which` on the calling thread, after `no_new_privs`.
pub fn install_own_filter(which: OwnFilter) -> Result<(), Errno> {
    const LD_W_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    const JEQ_K: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    const RET_K: u32 = libc::BPF_RET | libc::BPF_K;
    const ARG4_LO: u32 = 16 + 8 * 4;
    const ARG4_HI: u32 = ARG4_LO + 4;
    let allow = insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW);
    let filter: Vec<libc::sock_filter> = match which {
        OwnFilter::AllowAll => vec![allow],
        OwnFilter::SendtoOnly => vec![
            /* 0 */ insn(LD_W_ABS, 0, 0, 4), // arch
            /* 1 */ insn(JEQ_K, 1, 0, AUDIT_ARCH_NATIVE),
            /* 2 */ insn(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
            /* 3 */ insn(LD_W_ABS, 0, 0, 0), // nr
            /* 4 */ insn(JEQ_K, 0, 5, libc::SYS_sendto as u32), // else -> 10
            /* 5 */ insn(LD_W_ABS, 0, 0, ARG4_LO),
            /* 6 */ insn(JEQ_K, 0, 2, 0), // else -> 9
            /* 7 */ insn(LD_W_ABS, 0, 0, ARG4_HI),
            /* 8 */ insn(JEQ_K, 1, 0, 0), // -> 10
            /* 9 */ insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
            /* 10 */ allow,
        ],
    };
    no_new_privs()?;
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points to `filter`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

/// Sets this process's `RLIMIT_NOFILE` (soft and hard) to `limit`; children inherit it.
/// Raising the hard limit needs `CAP_SYS_RESOURCE`: without it (`EPERM`) the soft limit is
/// raised to the hard one instead. Returns the limits before and after.
pub fn set_nofile(limit: u64) -> Result<NofileChange, Errno> {
    // SAFETY: an all-zero rlimit is a valid value to be overwritten.
    let mut old: libc::rlimit = unsafe { zeroed() };
    // SAFETY: `old` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) } as libc::c_long)?;
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit.max(old.rlim_max),
    };
    let set = |new: &libc::rlimit| {
        // SAFETY: `new` is a valid rlimit, read only.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, new) } as libc::c_long)
    };
    let now = match set(&new) {
        Err(libc::EPERM) if limit > old.rlim_max => {
            let capped = libc::rlimit {
                rlim_cur: old.rlim_max,
                rlim_max: old.rlim_max,
            };
            set(&capped)?;
            capped
        }
        Err(e) => return Err(e),
        Ok(_) => new,
    };
    Ok(NofileChange {
        before: (old.rlim_cur, old.rlim_max),
        after: (now.rlim_cur, now.rlim_max),
    })
}

/// What [`set_nofile`] changed: `RLIMIT_NOFILE` as (soft, hard) before and after.
pub struct NofileChange {
    pub before: (u64, u64),
    pub after: (u64, u64),
}

/// Sets the calling thread's nice value (Linux keeps one per thread: `setpriority(2)` with
/// `PRIO_PROCESS` and 0 means the calling thread).
pub fn set_thread_nice(nice: i32) -> Result<(), Errno> {
    // SAFETY: setpriority(2) takes no pointers.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } as libc::c_long).map(drop)
}

// ---- the bridge bench (`nj-bench bridge`) ----

/// `unshare(CLONE_NEWNET)`: the calling thread moves to a fresh network namespace, in which
/// only `lo` exists, and down. Needs `CAP_SYS_ADMIN`.
pub fn unshare_net() -> Result<(), Errno> {
    // SAFETY: unshare(2) takes no pointers.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) } as libc::c_long).map(drop)
}

/// `setns(fd, CLONE_NEWNET)` on the namespace file `path` (`/proc/PID/ns/net`): the calling
/// thread moves to that network namespace. Needs `CAP_SYS_ADMIN`.
pub fn enter_net_namespace(path: &std::path::Path) -> Result<(), Errno> {
    let file = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    // SAFETY: setns(2) takes no pointers; `file` is open for the length of the call.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } as libc::c_long).map(drop)
}

/// Sets `IFF_UP` on the interface `lo` of the calling thread's network namespace
/// (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS`). Needs `CAP_NET_ADMIN`.
pub fn set_loopback_up() -> Result<(), Errno> {
    let sock = udp4_socket()?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid, writable ifreq naming an interface; `sock` is open.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } as libc::c_long)?;
    // SAFETY: SIOCGIFFLAGS just wrote the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: `req` is a valid ifreq with the name and the flags set; `sock` is open.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } as libc::c_long)
        .map(drop)
}

/// `_LINUX_CAPABILITY_VERSION_3` (`linux/capability.h`): two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capset(2)` with every set empty: the calling thread keeps its uid but no capability.
pub fn drop_all_capabilities() -> Result<(), Errno> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `header` and the two `data` words are valid for the length of the call, in the
    // layout version 3 of the call reads.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// A `sockaddr_in` for `addr:port`.
pub fn sockaddr4(addr: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    let mut sin = loopback4(port);
    sin.sin_addr.s_addr = u32::from(addr).to_be();
    sin
}
