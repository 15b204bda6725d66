//! A unix bind with the program's own bytes in a scaffold (`ops/scaffold.rs`) for a broker
//! without `CAP_SYS_ADMIN`: in a forked child, in a user namespace of the broker's own.
//!
//! Only a single-threaded process may enter a user namespace, and the broker has many threads:
//! each bind forks a child, which enters the broker's user namespace (where it holds every
//! capability, over the mounts of namespaces it makes there and nothing else), makes a mount
//! namespace of its own, builds the scaffold, drops those capabilities, binds the socket it
//! inherited and exits, with what came of it sent on a socket pair. The child is forked from a
//! process of many threads (a lock another thread held stays held in it): it makes raw system
//! calls only, on memory prepared before the fork, and allocates nothing.
//!
//! The user namespace is made once per process ([`prepare_user_namespace`]), by a child that
//! writes its maps, the broker's own uid and gid to themselves (`/proc/self/uid_map`; a
//! process may map its own ids, and no other, without privilege). The kernel lets a process
//! write there only while it may be traced by its own user ("dumpable"), and the broker is not
//! (F15): the namespace is made before the process turns non-dumpable, and never after.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use super::scaffold::{build, clone_directory, make_private, Plan};
use super::unixfile::FileId;
use super::{cvt, cvt_long};

/// The broker's user namespace, or the errno of its making.
static USERNS: OnceLock<Result<OwnedFd, i32>> = OnceLock::new();

/// `NS_GET_OWNER_UID` (`linux/nsfs.h`: `_IO(0xb7, 0x4)`).
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// Makes the broker's user namespace, once per process, unless the broker may make mount
/// namespaces in its own (`CAP_SYS_ADMIN`, `CAP_SYS_CHROOT`). Call it while the process is
/// still dumpable (before `sys::set_not_dumpable`); made later, it fails (`EACCES`) and
/// datagram binds that need it are refused.
pub(crate) fn prepare_user_namespace() {
    if super::has_capability(21) && super::has_capability(18) {
        return;
    }
    USERNS
        .get_or_init(|| new_user_namespace().map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM)));
}

/// The broker's user namespace; the errno of its making when it could not be made (`EPERM`,
/// `ENOSPC`, `EUSERS`: the system allows no new user namespace to this user; `EACCES`: the
/// process was not dumpable).
pub(crate) fn user_namespace() -> Result<BorrowedFd<'static>, i32> {
    match USERNS
        .get_or_init(|| new_user_namespace().map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM)))
    {
        Ok(fd) => Ok(fd.as_fd()),
        Err(errno) => Err(*errno),
    }
}

/// A user namespace as [`prepare_user_namespace`] makes one, made anew (tests: a root broker
/// does not make one).
#[cfg(test)]
pub(crate) fn new_user_namespace_for_tests() -> io::Result<OwnedFd> {
    new_user_namespace()
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Closes every descriptor of this process from 3 up but those of `keep` (sorted).
fn close_all_but(keep: &[RawFd]) {
    let mut from: libc::c_uint = 3;
    for &fd in keep {
        let fd = fd as libc::c_uint;
        if fd > from {
            // SAFETY: integer arguments only; the range holds none of `keep`.
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = from.max(fd + 1);
    }
    // SAFETY: integer arguments only.
    unsafe { libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0) };
}

/// Writes `bytes` to the file `path` (opened for writing, then closed).
fn write_file(path: &std::ffi::CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: a NUL-terminated path.
    let fd = owned(
        cvt(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?
            as libc::c_long,
    );
    // SAFETY: `bytes` is readable for its length.
    let n = cvt_long(
        unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) } as libc::c_long,
    )?;
    if n as usize != bytes.len() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    Ok(())
}

/// A user namespace that maps the process's effective uid and gid to themselves, no groups
/// (`setgroups` denied, as it must be where a gid is mapped without privilege): made by a
/// forked child, which sends its `/proc/self/ns/user` back and exits.
///
/// # References
/// user_namespaces(7) (the maps; `/proc/PID/setgroups`), unshare(2) (`CLONE_NEWUSER`),
/// unix(7) (`SCM_RIGHTS`), ioctl_ns(2) (`NS_GET_OWNER_UID`)
fn new_user_namespace() -> io::Result<OwnedFd> {
    // SAFETY: no arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1\n");
    let gid_map = format!("{gid} {gid} 1\n");
    let (ours, theirs) = seqpacket_pair()?;
    // SAFETY: the child makes raw system calls only, on memory prepared above, and exits.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        close_all_but(&[theirs.as_raw_fd()]);
        let made = (|| {
            // SAFETY: integer argument only; this process has one thread.
            cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) })?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
            // SAFETY: a NUL-terminated literal.
            cvt(unsafe {
                libc::open(
                    c"/proc/self/ns/user".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            })
        })();
        let (errno, fd) = match made {
            Ok(fd) => (0, Some(fd)),
            Err(e) => (e.raw_os_error().unwrap_or(libc::EPERM), None),
        };
        send_result(theirs.as_fd(), errno, fd);
        // SAFETY: ends this child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    drop(theirs);
    let got = receive_result(ours.as_fd());
    reap(pid);
    let ns = got?;
    // Only the namespace the child made: one whose owner is this process's user.
    let mut owner: libc::uid_t = u32::MAX;
    // SAFETY: `owner` is a writable uid_t, as NS_GET_OWNER_UID wants.
    cvt(unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID, &mut owner) })?;
    if owner != uid {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(ns)
}

fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` holds two ints for the kernel to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: two new fds, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A control buffer for one descriptor, aligned as `cmsghdr` wants.
#[repr(C, align(8))]
struct OneFd([u8; 24]);

/// Sends `errno` and, when there is one, the descriptor `fd` (`SCM_RIGHTS`). No allocation.
fn send_result(sock: BorrowedFd<'_>, errno: i32, fd: Option<libc::c_int>) {
    let mut data = errno.to_ne_bytes();
    let mut control = OneFd([0; 24]);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE computes a length.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
        // SAFETY: the control buffer holds CMSG_SPACE(4) bytes, aligned for a cmsghdr.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::copy_nonoverlapping(fd.to_ne_bytes().as_ptr(), libc::CMSG_DATA(cmsg), 4);
        }
    }
    // SAFETY: `msg` points at `iov`, `data` and `control`, alive across the call.
    unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
}

/// What [`send_result`] sent: the descriptor, or the errno; `EPIPE` when the child sent
/// nothing (it died first).
fn receive_result(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut data = [0u8; 4];
    let mut control = OneFd([0; 24]);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: `msg` points at buffers alive across the call; received fds are close-on-exec.
    let n = cvt_long(
        unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) }
            as libc::c_long,
    )?;
    if n != 4 {
        return Err(io::Error::from_raw_os_error(libc::EPIPE));
    }
    let errno = i32::from_ne_bytes(data);
    // SAFETY: the kernel filled `msg`'s control part; CMSG_FIRSTHDR checks its length.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if errno != 0 || cmsg.is_null() {
        return Err(io::Error::from_raw_os_error(if errno == 0 {
            libc::EPIPE
        } else {
            errno
        }));
    }
    // SAFETY: a non-null cmsghdr inside `control`.
    let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
        return Err(io::Error::from_raw_os_error(libc::EPIPE));
    }
    let mut fd = [0u8; 4];
    // SAFETY: an SCM_RIGHTS message carries at least one int after its header.
    unsafe { std::ptr::copy_nonoverlapping(libc::CMSG_DATA(cmsg), fd.as_mut_ptr(), 4) };
    Ok(owned(i32::from_ne_bytes(fd) as libc::c_long))
}

/// Waits for the child `pid` (another waiter of the process may have reaped it: `ECHILD`).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a writable int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// A bind in a forked child of the broker's user namespace, placed in a scaffold.
pub(crate) struct ChildBind<'a> {
    /// The broker's user namespace ([`user_namespace`]).
    pub userns: BorrowedFd<'a>,
    /// The directory decided on, as the broker's root names it, and which file it is: the
    /// child finds it again from its own mount namespace's copy of that root.
    pub dir_path: &'a [u8],
    pub dir_id: FileId,
    /// The scaffold: directories, working directory, where the clone goes.
    pub dirs: &'a [Vec<u8>],
    pub cwd: &'a [u8],
    pub parent: &'a [u8],
    /// The socket, and the address to bind it to.
    pub sock: BorrowedFd<'a>,
    pub addr: &'a [u8],
}

/// Where a [`ChildBind`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildStep {
    /// Forking, entering the user namespace, making the mount namespace.
    Enter,
    /// The directory decided on is not at its path any more (moved, or a symlink on the way).
    Moved,
    /// Its mount could not be cloned (`EINVAL`: an unbindable mount).
    Clone,
    /// The scaffold could not be made.
    Build,
    /// The bind itself: the errno is the kernel's answer to it.
    Bind,
}

impl ChildStep {
    const ALL: [ChildStep; 5] = [
        ChildStep::Enter,
        ChildStep::Moved,
        ChildStep::Clone,
        ChildStep::Build,
        ChildStep::Bind,
    ];
}

/// Runs `bind` in a forked child, which exits afterwards: `Ok` when the socket is bound, the
/// step that failed and its errno otherwise. The calling thread's ids, groups and umask are
/// the child's: call it on a thread that has taken the caller's (`sys::become_caller`), which
/// for a broker without `CAP_SETUID` are its own, those the user namespace maps.
///
/// # References
/// fork(2), setns(2) (`CLONE_NEWUSER`), unshare(2) (`CLONE_NEWNS`), openat2(2)
/// (`RESOLVE_NO_SYMLINKS`), capset(2), bind(2), signal-safety(7)
pub(crate) fn bind_in_child(bind: &ChildBind<'_>) -> Result<(), (ChildStep, i32)> {
    let enter = |e: io::Error| (ChildStep::Enter, e.raw_os_error().unwrap_or(libc::EPERM));
    let plan = Plan::new(bind.dirs, bind.cwd, bind.parent).map_err(enter)?;
    let dir_path = CString::new(bind.dir_path).map_err(|_| (ChildStep::Moved, libc::ENOENT))?;
    let (ours, theirs) = seqpacket_pair().map_err(enter)?;
    let mut keep = [
        bind.userns.as_raw_fd(),
        bind.sock.as_raw_fd(),
        theirs.as_raw_fd(),
    ];
    keep.sort_unstable();
    // SAFETY: the child makes raw system calls only, on memory prepared above, and exits.
    let pid = cvt(unsafe { libc::fork() }).map_err(enter)?;
    if pid == 0 {
        close_all_but(&keep);
        let (step, errno) = match child(bind, &plan, &dir_path) {
            Ok(()) => (0, 0),
            Err((step, errno)) => (step as i32 + 1, errno),
        };
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&step.to_ne_bytes());
        out[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: `out` is readable for its length; the result goes to the parent.
        unsafe {
            libc::send(
                theirs.as_raw_fd(),
                out.as_ptr().cast(),
                8,
                libc::MSG_NOSIGNAL,
            )
        };
        // SAFETY: ends this child at once, running nothing of the parent's.
        unsafe { libc::_exit(0) };
    }
    drop(theirs);
    let mut out = [0u8; 8];
    // SAFETY: `out` is writable for its length.
    let n = unsafe { libc::recv(ours.as_raw_fd(), out.as_mut_ptr().cast(), 8, 0) };
    reap(pid);
    if n != 8 {
        // The child died before it could say (killed): nothing is known of the bind.
        return Err((ChildStep::Enter, libc::EINTR));
    }
    let step = i32::from_ne_bytes(out[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(out[4..].try_into().expect("4 bytes"));
    match step {
        0 => Ok(()),
        s => match ChildStep::ALL.get((s - 1) as usize) {
            Some(step) => Err((*step, errno)),
            None => Err((ChildStep::Enter, libc::EPROTO)),
        },
    }
}

/// The child's part of [`bind_in_child`]: no allocation, raw system calls only.
fn child(
    bind: &ChildBind<'_>,
    plan: &Plan,
    dir_path: &std::ffi::CStr,
) -> Result<(), (ChildStep, i32)> {
    let at = |step: ChildStep| move |e: io::Error| (step, e.raw_os_error().unwrap_or(libc::EPERM));
    // SAFETY: integer arguments only; this process has one thread and a filesystem context
    // of its own (fork), as setns(CLONE_NEWUSER) wants.
    cvt(unsafe { libc::setns(bind.userns.as_raw_fd(), libc::CLONE_NEWUSER) })
        .map_err(at(ChildStep::Enter))?;
    // SAFETY: integer argument only.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) }).map_err(at(ChildStep::Enter))?;
    make_private().map_err(at(ChildStep::Enter))?;
    let dir = reopen(dir_path).map_err(at(ChildStep::Moved))?;
    if super::stat_fd(dir.as_fd())
        .map_err(at(ChildStep::Moved))?
        .id
        != bind.dir_id
    {
        return Err((ChildStep::Moved, libc::ENOENT));
    }
    // A mount with mounts below the directory is cloned with them (locked to it here); the
    // bind creates its one name in the directory itself, which they do not cover.
    let clone = match clone_directory(dir.as_fd(), false) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => clone_directory(dir.as_fd(), true),
        cloned => cloned,
    }
    .map_err(at(ChildStep::Clone))?;
    build(plan, clone.as_fd()).map_err(at(ChildStep::Build))?;
    // The bind is the caller's: none of the user namespace's capabilities (which override
    // permissions on the files of the caller's own ids) remain.
    super::identity::capset(0, 0).map_err(at(ChildStep::Build))?;
    super::bind_raw(bind.sock, bind.addr).map_err(at(ChildStep::Bind))
}

/// `path` (absolute) opened again from this process's root as a directory (`O_PATH`), with no
/// symlink or magic link on the way.
fn reopen(path: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain integers; all-zero is its valid empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a NUL-terminated path and an open_how of the size given.
    Ok(owned(cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?))
}
