//! Raw system calls of the broker: the seccomp notification ioctls, memory reads of the target,
//! fd theft with `pidfd_getfd`, `openat2`, per-thread credentials and socket calls on byte
//! buffers. Every fd the kernel returns is wrapped in an [`OwnedFd`] at once.
//!
//! This is the only module of the crate with `unsafe` code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

mod task;
pub use task::rights_within_limit;
mod unixfile;
pub use unixfile::{
    enter_directories, has_capability, same_mount_and_directory, stat_entry, stat_fd,
    unix_diag_file, unix_socket_file, FileId,
};

/// `PIDFD_THREAD` (Linux 6.9): the pidfd names one thread, not a thread-group leader.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;

/// One notification as the kernel delivers it (`struct seccomp_notif`).
#[derive(Debug, Clone, Copy)]
pub struct RawNotification {
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

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `SECCOMP_IOCTL_NOTIF_RECV`. Blocks when nothing is pending (the ioctl ignores
/// `O_NONBLOCK`): call it only after [`poll_in`] said the listener is readable.
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<RawNotification> {
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

/// A shared, writable mapping of the first `len` bytes of a file (a sandbox's journal,
/// `journal.rs`), holding plain data only: bytes and `struct seccomp_notif` records at 8-byte
/// aligned offsets. Every access is a copy through a raw pointer, never a reference, so two
/// threads touching the same bytes could only read a torn record; the journal gives each slot
/// to one thread at a time.
#[derive(Debug)]
pub struct SharedMap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; see the type's note on sharing.
unsafe impl Send for SharedMap {}
// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` (which must be at least that long) shared and writable.
    pub fn new(file: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(SharedMap { ptr, len })
    }

    fn at(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len)
                && offset.is_multiple_of(align),
            "shared map access at {offset}+{size} out of bounds or misaligned"
        );
        // SAFETY: in bounds, as just checked.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// Copies `out.len()` bytes from `offset`.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let p = self.at(offset, out.len(), 1);
        // SAFETY: in bounds; plain bytes.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
    }

    /// Copies `bytes` to `offset`.
    pub fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let p = self.at(offset, bytes.len(), 1);
        // SAFETY: in bounds; plain bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    }

    /// The notification recorded at `offset`.
    pub fn read_notif(&self, offset: usize) -> RawNotification {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: in bounds and aligned; `seccomp_notif` is plain data, any bytes are a value.
        let n = unsafe { std::ptr::read_volatile(p.cast::<libc::seccomp_notif>()) };
        RawNotification {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            args: n.data.args,
        }
    }

    /// Records `notif` at `offset`.
    pub fn write_notif(&self, offset: usize, notif: &RawNotification) {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: plain data, zeroed then filled.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        n.id = notif.id;
        n.pid = notif.pid;
        n.data.nr = notif.nr;
        n.data.arch = notif.arch;
        n.data.args = notif.args;
        // SAFETY: in bounds and aligned.
        unsafe { std::ptr::write_volatile(p.cast::<libc::seccomp_notif>(), n) };
    }

    /// Zeroes the record at `offset`.
    pub fn clear_notif(&self, offset: usize) {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: in bounds and aligned; zero is a valid `seccomp_notif`.
        unsafe { std::ptr::write_bytes(p.cast::<libc::seccomp_notif>(), 0, 1) };
    }

    /// As [`notif_recv`], with the kernel writing the notification straight into the record
    /// at `offset` (zeroed first, as the ioctl requires): once the ioctl returns, the call is
    /// on record, whatever happens to the broker next.
    pub fn notif_recv_into(
        &self,
        listener: BorrowedFd<'_>,
        offset: usize,
    ) -> io::Result<RawNotification> {
        self.clear_notif(offset);
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: an in-bounds, aligned, zeroed `seccomp_notif`; the kernel writes at most its
        // size.
        cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV as _, p) })?;
        Ok(self.read_notif(offset))
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `prctl(PR_SET_DUMPABLE, 0)`: the broker holds its sandboxes' listeners and copies of their
/// sockets, so no process of its user (a sandbox without Landlock among them) may read or
/// write its memory, take its fds or trace it without `CAP_SYS_PTRACE` (F15); and it dumps no
/// core.
///
/// # References
/// prctl(2) (`PR_SET_DUMPABLE`)
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// The broker's effective uid.
pub fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

/// The broker's real user and group ids: what the kernel attaches to a unix message the
/// broker sends without explicit credentials.
pub fn real_ids() -> (u32, u32) {
    // SAFETY: no arguments.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Whether process `pid` exists (`kill(pid, 0)` succeeds or says `EPERM`).
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks.
    let r = unsafe { libc::kill(pid, 0) };
    pid > 0 && (r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: `error` is a positive errno (0 for success with `val`).
pub fn notif_send(listener: BorrowedFd<'_>, id: u64, val: i64, error: i32) -> io::Result<()> {
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
/// `handler::finish`, the one caller).
pub fn notif_continue(listener: BorrowedFd<'_>, id: u64) -> io::Result<()> {
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
pub fn notif_addfd_send(
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

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: the notification is still pending, so its thread is alive
/// and its pid has not been reused.
pub fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
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
pub fn notif_sync_wakeup(listener: BorrowedFd<'_>) -> io::Result<()> {
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
pub const SECCOMP_LISTENER_KIND: &str = "anon_inode:seccomp notify";

/// What `/proc/self/fd/N` shows for `fd` (a path, or `anon_inode:...`); empty if unreadable.
pub fn fd_kind(fd: BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// What `poll` said of an fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollState {
    /// Something can be read.
    pub readable: bool,
    /// The other side is gone (for a listener: no task uses the filter any more).
    pub hangup: bool,
    /// The stop fd given to [`poll_wait`] became readable.
    pub stopped: bool,
}

/// Waits in `poll` until `fd` is readable or hung up, or `stop` (an eventfd made by
/// [`stop_fd`]) was signalled.
pub fn poll_wait(fd: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> io::Result<PollState> {
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
pub fn poll_ready(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1, timeout 0.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// Sets the nice value of the calling thread (not its process): `setpriority(PRIO_PROCESS,
/// gettid(), nice)`. Lowering it again needs `CAP_SYS_NICE`.
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: no arguments.
    let tid = unsafe { libc::gettid() };
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) })?;
    Ok(())
}

/// A new eventfd for [`poll_wait`]'s `stop`: readable once [`signal_stop`] wrote to it, and
/// for good (nobody reads it), so that every thread polling it wakes.
pub fn stop_fd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes a [`stop_fd`] readable.
pub fn signal_stop(stop: BorrowedFd<'_>) -> io::Result<()> {
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

/// `pidfd_open(tid, PIDFD_THREAD)`: a pidfd for exactly the thread that made the call.
pub fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd =
        cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::pid_t, PIDFD_THREAD) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process or thread of `pidfd` is still alive (`pidfd_send_signal` with signal 0).
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
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
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt_long(unsafe {
        libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0u32)
    })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Copies `buf.len()` bytes at `addr` of process `pid` into `buf` with `process_vm_readv`.
/// A short read is `EFAULT`, as the kernel's own `copy_from_user` would say.
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes our own writable buffer of the stated length; `remote` is only
    // dereferenced by the kernel in the target's address space, where a bad address is EFAULT.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

/// `connect(fd, addr, len)` with the address given as bytes.
pub fn connect_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
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
pub fn int_option(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    getsockopt_int(fd, level, name)
}

/// A TCP socket's state (`tcpi_state` of `TCP_INFO`: `TCP_ESTABLISHED` 1, `TCP_SYN_SENT` 2,
/// ... as in `net/tcp_states.h`).
///
/// # References
/// tcp(7) (`TCP_INFO`)
pub fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
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
pub fn socket_kind(fd: BorrowedFd<'_>) -> io::Result<SocketKind> {
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
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no pointer.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Whether `fd` is a socket.
pub fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(fstat_mode(fd)? & libc::S_IFMT == libc::S_IFSOCK)
}

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`.
pub fn open_dir_path(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How many times [`open_in_root`] walks a path again that the kernel answered `EAGAIN`.
const IN_ROOT_TRIES: usize = 64;

/// `openat2(dirfd, path, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `path`
/// is resolved as if `dirfd` were `/`, so neither `..` nor an absolute symlink leaves it.
///
/// The kernel answers `EAGAIN` when a rename or a mount anywhere on the system happened while
/// it walked a `..` of the path (it cannot then be sure the walk stayed inside), and asks the
/// caller to try again; a program's own call would never see that errno, so the walk is
/// retried, at most `IN_ROOT_TRIES` times.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let mut tries = 1;
    loop {
        match open_in_root_once(root, path) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < IN_ROOT_TRIES => {
                tries += 1;
            }
            result => return result,
        }
    }
}

fn open_in_root_once(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain integers; all-zero is its valid empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` is NUL-terminated, `how` is a valid open_how of the size passed.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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
pub fn sendmsg_as_caller(
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
pub fn bind_raw(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
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
pub fn listen_raw(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `getsockname(fd)` as bytes.
pub fn sockname(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are live locals of the sizes given.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// `getpeername(fd)` as bytes.
pub fn peername(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf and len are live locals of the sizes given.
    cvt(unsafe { libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len) })?;
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

/// The ids and capabilities a thread takes to act as a sandbox's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective and permitted capability sets (bit masks).
    pub cap_effective: u64,
    /// Permitted capabilities.
    pub cap_permitted: u64,
    /// The file mode creation mask (`Umask:` in `/proc/TID/status`, Linux 4.7), which a socket
    /// file a bind creates is made with.
    pub umask: Option<u32>,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capget() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data words, as version 3 requires.
    cvt_long(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

fn capset(effective: u64, permitted: u64) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: header and two data words, as version 3 requires.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })?;
    Ok(())
}

fn getres(nr: libc::c_long) -> io::Result<[u32; 3]> {
    let mut ids = [0u32; 3];
    let [a, b, c] = &mut ids;
    // SAFETY: three writable u32s.
    cvt_long(unsafe { libc::syscall(nr, a as *mut u32, b as *mut u32, c as *mut u32) })?;
    Ok(ids)
}

/// The capabilities that act on files (`CAP_FS_MASK` of the kernel): chown, DAC override and
/// read search, fowner, fsetid, linux immutable, mknod, MAC override.
const CAP_FS_MASK: u64 =
    (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 9) | (1 << 27) | (1 << 32);

/// How much of a caller's identity a thread takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Become {
    /// Every id, and at most the caller's capabilities: for calls whose result records who
    /// made them (a unix connect or listen sets `SO_PEERCRED`, a bind creates a file).
    Full,
    /// The filesystem ids, the real user id and the groups only: the permission check of a
    /// path is the caller's (the kernel drops the file capabilities with the filesystem ids),
    /// and what the kernel charges to the real user (descriptors in flight) is charged to the
    /// caller's; the broker keeps its other capabilities, which it needs to send the caller's
    /// credentials in its name.
    Filesystem,
}

/// Makes this thread (and only this thread: raw system calls, not glibc's wrappers, which
/// change every thread) take `who`'s identity as `how` says. Ids that already match are left
/// alone, so an unprivileged broker serving its own user's sandbox needs no privilege; asked
/// for another identity without `CAP_SETUID` or `CAP_SETGID` it fails with `EPERM` and the
/// call is refused.
///
/// Call it only on a thread that exits afterwards: it cannot be undone.
pub fn become_caller(who: &Identity, how: Become) -> io::Result<()> {
    let mut have_groups = [0u32; 256];
    // SAFETY: the kernel writes at most `have_groups.len()` gids into the buffer.
    let n = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_getgroups,
            have_groups.len(),
            have_groups.as_mut_ptr(),
        )
    })? as usize;
    let mut have: Vec<u32> = have_groups[..n].to_vec();
    let mut want = who.groups.clone();
    have.sort_unstable();
    want.sort_unstable();
    if have != want {
        // SAFETY: the kernel reads `groups.len()` gids from a valid slice.
        cvt_long(unsafe {
            libc::syscall(libc::SYS_setgroups, who.groups.len(), who.groups.as_ptr())
        })?;
    }
    if let Some(mask) = who.umask {
        // The umask lives in the filesystem context that the broker's threads share: this
        // thread takes a copy of its own first.
        // SAFETY: integer arguments only.
        cvt_long(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_FS) })?;
        // SAFETY: integer argument only; umask cannot fail.
        unsafe { libc::syscall(libc::SYS_umask, mask & 0o777) };
    }
    if how == Become::Filesystem {
        let [ruid, ..] = who.uids;
        if getres(libc::SYS_getresuid)?[0] != ruid {
            // The real id alone: the effective and saved ids stay, and so do the broker's
            // capabilities (setresuid resets the filesystem id, which is set below).
            // SAFETY: integer arguments only; -1 leaves an id as it is.
            cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, ruid, u32::MAX, u32::MAX) })?;
        }
        let [.., fsuid] = who.uids;
        let [.., fsgid] = who.gids;
        // setfsgid/setfsuid return the previous value and never fail loudly: read back.
        // SAFETY: integer arguments only.
        unsafe { libc::syscall(libc::SYS_setfsgid, fsgid) };
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_setfsuid, fsuid) };
        // SAFETY: an invalid id (u32::MAX) only queries the current value.
        let now_gid = unsafe { libc::syscall(libc::SYS_setfsgid, u32::MAX) } as u32;
        // SAFETY: as above.
        let now_uid = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) } as u32;
        if (now_uid, now_gid) != (fsuid, fsgid) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        // The kernel takes the file capabilities out of the effective set only when the
        // filesystem id leaves 0: for a caller whose fsuid is 0 (a root sandbox, root of a
        // user namespace that maps 0 to 0) take out those the caller does not hold itself.
        let (effective, permitted) = capget()?;
        let keep = effective & !(CAP_FS_MASK & !who.cap_effective);
        if keep != effective {
            capset(keep, permitted)?;
        }
        return Ok(());
    }
    let res = |ids: [u32; 4]| [ids[0], ids[1], ids[2]];
    if getres(libc::SYS_getresgid)? != res(who.gids) {
        let [r, e, s, _] = who.gids;
        // SAFETY: integer arguments only.
        cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, r, e, s) })?;
    }
    if getres(libc::SYS_getresuid)? != res(who.uids) {
        let [r, e, s, _] = who.uids;
        // SAFETY: integer arguments only.
        cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, r, e, s) })?;
    }
    // Leaving uid 0 has emptied the sets already; otherwise narrow them to the caller's.
    let (_, permitted) = capget()?;
    capset(who.cap_effective & permitted, who.cap_permitted & permitted)?;
    if getres(libc::SYS_getresuid)? != res(who.uids)
        || getres(libc::SYS_getresgid)? != res(who.gids)
    {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// Empties this thread's effective and permitted capability sets, for good: what it makes
/// afterwards carries no privilege (a socket's file records the credentials of the task that
/// made it, and the kernel's netlink families check them).
///
/// Call it only on a thread that exits afterwards.
pub fn drop_all_capabilities() -> io::Result<()> {
    capset(0, 0)?;
    match capget()? {
        (0, 0) => Ok(()),
        _ => Err(io::Error::from_raw_os_error(libc::EPERM)),
    }
}

/// `setns(fd, CLONE_NEWNET)`: this thread (and only this one) enters the network namespace
/// `fd` names; it needs `CAP_SYS_ADMIN` over that namespace and in its own user namespace.
///
/// Call it only on a thread that exits afterwards.
pub fn enter_network_namespace(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments only; setns changes the calling thread's namespace.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// `socket(family, type, protocol)`, the arguments as the kernel reads them (ints).
pub fn socket_raw(family: i32, sock_type: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = cvt(unsafe { libc::socket(family, sock_type, protocol) })?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `work` on this thread with the capability `cap` (a number) out of its effective set,
/// then puts the set back as it was: a call the kernel must check without the broker's
/// privilege (a bind whose port may be privileged in the socket's namespace) fails as it would
/// for a task without it.
pub fn without_capability<T>(cap: u32, work: impl FnOnce() -> T) -> io::Result<T> {
    let (effective, permitted) = capget()?;
    let bit = 1u64 << cap;
    if effective & bit == 0 {
        return Ok(work());
    }
    capset(effective & !bit, permitted)?;
    let out = work();
    capset(effective, permitted)?;
    Ok(out)
}

/// Whether this process runs with `CAP_SYS_ADMIN` and `CAP_SETUID` effective (then it may
/// send credentials other than its own).
pub fn may_forge_credentials() -> bool {
    const CAP_SETUID: u64 = 1 << 7;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    matches!(capget(), Ok((eff, _)) if eff & (CAP_SETUID | CAP_SYS_ADMIN) == CAP_SETUID | CAP_SYS_ADMIN)
}

/// `PIDFD_SIGNAL_THREAD`: deliver to the thread of a `PIDFD_THREAD` pidfd.
const PIDFD_SIGNAL_THREAD: u32 = 1;

/// Sends `sig` to the one thread `pidfd` names (the `SIGPIPE` a caller's own send would have
/// raised on a broken connection).
pub fn pidfd_signal_thread(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
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

/// The supplementary groups of the peer of a connected unix socket, as they were when it
/// connected (`SO_PEERGROUPS`, Linux 4.13).
pub fn peer_groups(sock: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
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

// ---- Self-registration (`ClientMessage::RegisterSelf`, issue 6) ----

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process at the other end of a unix socket.
const SO_PEERPIDFD: libc::c_int = 77;

/// A pidfd of the process that connected the unix socket `sock`: `SO_PEERPIDFD`, which names
/// the process itself so that a reused pid cannot redirect it; on a kernel without it
/// (`ENOPROTOOPT`, before Linux 6.5) `pidfd_open` of the `SO_PEERCRED` pid, which names the
/// same process unless it exited and its pid was reused in between.
///
/// # References
/// unix(7) (`SO_PEERPIDFD`, `SO_PEERCRED`), pidfd_open(2)
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
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

// ---- The broker's own sockets and listeners (`own.rs`) ----

/// `KCMP_FILE`: compare two file descriptions.
const KCMP_FILE: libc::c_int = 0;

/// `kcmp(self, self, KCMP_FILE, a, b)`: whether two of the broker's fds are the same open
/// file, and otherwise their order. The order is that of the kernel's file pointers, hidden
/// behind a per-boot random mapping that keeps the order total and stable while both files
/// stay open, so a sorted table of fds can be searched with it.
///
/// # Errors
/// `ENOSYS` on a kernel without `CONFIG_KCMP`; `EBADF` for an fd that is not open.
///
/// # References
/// kcmp(2)
pub fn kcmp_files(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<std::cmp::Ordering> {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: plain syscall with integer arguments; it touches no memory of ours.
    let r = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            a.as_raw_fd() as libc::c_ulong,
            b.as_raw_fd() as libc::c_ulong,
        )
    })?;
    match r {
        0 => Ok(std::cmp::Ordering::Equal),
        1 => Ok(std::cmp::Ordering::Less),
        2 => Ok(std::cmp::Ordering::Greater),
        _ => Err(io::Error::other("kcmp gave no order for two files")),
    }
}

/// `kcmp(pid, self, KCMP_FILE, theirs, ours)`: whether fd `theirs` of process `pid` is the
/// same open file as the broker's fd `ours`. Needs ptrace read access to `pid`.
///
/// # References
/// kcmp(2)
pub fn kcmp_same_file(pid: i32, theirs: i32, ours: BorrowedFd<'_>) -> io::Result<bool> {
    let me = std::process::id() as libc::pid_t;
    // SAFETY: plain syscall with integer arguments; it touches no memory of ours.
    let r = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid as libc::pid_t,
            me,
            KCMP_FILE,
            theirs as libc::c_ulong,
            ours.as_raw_fd() as libc::c_ulong,
        )
    })?;
    Ok(r == 0)
}

/// Runs `make` on a thread of its own whose filesystem attributes (`umask`, working directory)
/// are its own (`unshare(CLONE_FS)`), with `umask` set and, with `group`, its filesystem gid
/// set to `group` (`setfsgid`, this thread only): a socket file that `make` binds is created
/// with mode `0777 & !umask` and that group at once, with no `chmod` or `chown` by path after.
///
/// # Errors
/// `unshare` or `setfsgid` failing (`EPERM` without `CAP_SETGID` for a group the broker is not
/// in), or the thread panicking.
///
/// # References
/// unshare(2) (`CLONE_FS`), umask(2), setfsgid(2), unix(7) (the mode of a bound socket file)
pub fn with_own_umask<T: Send>(
    umask: u32,
    group: Option<u32>,
    make: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: plain syscall with an integer argument; CLONE_FS only gives this
                // thread its own umask and directories, which nothing else refers to.
                cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
                // SAFETY: plain syscall with an integer argument.
                unsafe { libc::umask(umask as libc::mode_t) };
                if let Some(gid) = group {
                    // setfsgid says nothing of failure but returns the previous value: set,
                    // then read back with an invalid id, which changes nothing.
                    // SAFETY: plain syscalls with integer arguments (raw, this thread only).
                    unsafe { libc::syscall(libc::SYS_setfsgid, gid) };
                    // SAFETY: as above.
                    let now = unsafe { libc::syscall(libc::SYS_setfsgid, u32::MAX) } as u32;
                    if now != gid {
                        return Err(io::Error::from_raw_os_error(libc::EPERM));
                    }
                }
                make()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread binding a socket panicked")))
    })
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
pub fn socket_netns(sock: BorrowedFd<'_>) -> io::Result<u64> {
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

/// Takes fd `fd`, inherited from the service manager (`LISTEN_FDS`, fds from 3 on), marks it
/// close-on-exec so that it does not leak into anything the broker runs, and, with
/// `nonblocking`, non-blocking, as the runtime needs of a socket (a service manager hands
/// sockets over blocking). A seccomp listener from the fd store is taken as it is: its file
/// status flags are shared with the service manager's copy, and the receiver polls anyway.
///
/// # Errors
/// `EBADF` when no such fd is open.
pub fn take_inherited_fd(fd: RawFd, nonblocking: bool) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD on an integer fd: no memory is touched; EBADF if it is not open.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above; sets the close-on-exec flag of the same fd.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) })?;
    if nonblocking {
        // SAFETY: as above, for the file status flags.
        let status = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, status | libc::O_NONBLOCK) })?;
    }
    // SAFETY: the fd is open (checked above) and was handed to this process by its parent to
    // own (the socket-activation protocol): nothing else in the process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a listening socket handed over by a service manager is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InheritedSocket {
    /// `SOCK_STREAM`, `SOCK_SEQPACKET`, ...
    pub sock_type: i32,
    /// Whether it listens (`SO_ACCEPTCONN`).
    pub listening: bool,
    /// The filesystem path it is bound to; `None` for any other address.
    pub path: Option<std::path::PathBuf>,
}

/// Describes a socket inherited from a service manager.
pub fn inherited_socket(fd: BorrowedFd<'_>) -> io::Result<InheritedSocket> {
    let int = |opt: libc::c_int| -> io::Result<i32> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live locals of the sizes given.
        cvt(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(v)
    };
    let sock_type = int(libc::SO_TYPE)?;
    let listening = int(libc::SO_ACCEPTCONN)? != 0;
    let name = sockname(fd)?;
    let family = name
        .get(..2)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .unwrap_or(0);
    let path = if family == libc::AF_UNIX as u16 && name.len() > 2 && name[2] != 0 {
        let raw = &name[2..];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        use std::os::unix::ffi::OsStrExt;
        Some(std::ffi::OsStr::from_bytes(&raw[..end]).into())
    } else {
        None
    };
    Ok(InheritedSocket {
        sock_type,
        listening,
        path,
    })
}

/// A new epoll instance (`EPOLL_CLOEXEC`).
pub fn epoll_new() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with an integer argument.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to `epoll` for its hang-up only, once (`EPOLLONESHOT`): no readiness event is
/// asked for, and `EPOLLHUP` is always reported. `key` comes back with the event. The entry
/// goes away by itself when the last reference to `fd`'s file is closed.
pub fn epoll_watch_hangup(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
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
pub fn epoll_watch_file(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
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
pub fn epoll_watch_readable(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, key: u64) -> io::Result<()> {
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
pub fn epoll_wait_keys(epoll: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<Vec<u64>> {
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
pub fn timer_new() -> io::Result<OwnedFd> {
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
pub fn timer_set(timer: BorrowedFd<'_>, after: std::time::Duration) -> io::Result<()> {
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
pub fn timer_drain(timer: BorrowedFd<'_>) {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live local; the fd is non-blocking.
    let _ = unsafe { libc::read(timer.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() }
}

/// The signal that interrupts a blocking system call the broker performs for a caller that no
/// longer waits for it (`reaper.rs`): a real-time signal, which no part of the broker uses
/// otherwise, and whose default action (ending the process) nothing else should rely on.
pub fn interrupt_signal() -> i32 {
    libc::SIGRTMIN() + 6
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Installs a handler for [`interrupt_signal`] that does nothing, without `SA_RESTART`, so
/// that a blocking system call of the thread it is sent to returns `EINTR`. `Ok(false)` when
/// the process already has another handler for it (a program embedding the broker): that
/// handler stays, and nothing is interrupted.
pub fn install_interrupt_handler() -> io::Result<bool> {
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
pub fn set_interrupt_blocked(blocked: bool) -> bool {
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
pub fn interrupt_thread(tid: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, interrupt_signal()) })?;
    Ok(())
}

/// `shutdown(fd, SHUT_RDWR)`: a connect waiting on this socket (TCP in `SYN_SENT`) stops
/// and returns. `fd` is a number: the caller makes sure that it is still the socket it means
/// (the reaper holds the lock its owner takes before closing it).
pub fn shutdown_both(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments; it touches no memory of ours.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) })?;
    Ok(())
}

/// The classic BPF socket filter a socket had (`SO_GET_FILTER`): empty when it had none.
///
/// # References
/// socket(7) (`SO_ATTACH_FILTER`, `SO_DETACH_FILTER`), Documentation/networking/filter.rst
/// (`SO_GET_FILTER`: with a zero length, the number of instructions)
pub fn socket_filter(fd: BorrowedFd<'_>) -> io::Result<Vec<libc::sock_filter>> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: a zero length asks for the count only; the kernel writes no instruction.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    })?;
    let count = len as usize;
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut prog = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0
        };
        count
    ];
    // `SO_GET_FILTER` counts in instructions, not bytes.
    let mut got = count as libc::socklen_t;
    // SAFETY: `prog` holds `count` instructions, the length given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            prog.as_mut_ptr().cast(),
            &mut got,
        )
    })?;
    prog.truncate(got as usize);
    Ok(prog)
}

/// Attaches the classic BPF program `prog` to the socket (`SO_ATTACH_FILTER`), replacing its
/// filter; an empty `prog` detaches it (`SO_DETACH_FILTER`).
pub fn set_socket_filter(fd: BorrowedFd<'_>, prog: &[libc::sock_filter]) -> io::Result<()> {
    if prog.is_empty() {
        // `setsockopt` wants an int's length for every `SOL_SOCKET` option; this one does
        // not read it.
        let unused: libc::c_int = 0;
        // SAFETY: `unused` lives for the call and has the length given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                (&unused as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        return match cvt(r) {
            // No filter to detach.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        };
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A socket filter that takes nothing (`BPF_RET | BPF_K`, 0 bytes): every datagram sent to
/// the socket is dropped before it is queued.
pub const DROP_ALL: [libc::sock_filter; 1] = [libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
}];
