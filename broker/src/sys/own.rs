//! The broker's own descriptors: which file a descriptor is (`kcmp`), and sockets inherited
//! from the service manager.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_long, sockname};

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
pub(crate) fn kcmp_files(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<std::cmp::Ordering> {
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
pub(crate) fn kcmp_same_file(pid: i32, theirs: i32, ours: BorrowedFd<'_>) -> io::Result<bool> {
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

/// Takes fd `fd`, inherited from the service manager (`LISTEN_FDS`, fds from 3 on), marks it
/// close-on-exec so that it does not leak into anything the broker runs, and, with
/// `nonblocking`, non-blocking, as the runtime needs of a socket (a service manager hands
/// sockets over blocking). A seccomp listener from the fd store is taken as it is: its file
/// status flags are shared with the service manager's copy, and the receiver polls anyway.
///
/// # Errors
/// `EBADF` when no such fd is open.
pub(crate) fn take_inherited_fd(fd: RawFd, nonblocking: bool) -> io::Result<OwnedFd> {
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
pub(crate) struct InheritedSocket {
    /// `SOCK_STREAM`, `SOCK_SEQPACKET`, ...
    pub sock_type: i32,
    /// Whether it listens (`SO_ACCEPTCONN`).
    pub listening: bool,
    /// The filesystem path it is bound to; `None` for any other address.
    pub path: Option<std::path::PathBuf>,
}

/// Describes a socket inherited from a service manager.
pub(crate) fn inherited_socket(fd: BorrowedFd<'_>) -> io::Result<InheritedSocket> {
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
