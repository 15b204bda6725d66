//! The file a unix socket is bound to, and a thread's own root and working directory: what the
//! broker needs to bind a caller's socket with the caller's own address and then check that
//! the file the kernel made is the one that was decided on.
//!
//! A bound unix socket keeps the address it was given and the file its bind created. The
//! broker finds that file with `SIOCUNIXFILE` (an `O_PATH` descriptor of it; the kernel asks
//! for `CAP_NET_ADMIN` over the socket's network namespace) or, without that capability, with
//! a `sock_diag` query in its own network namespace (`UNIX_DIAG_VFS`: the file's device and
//! inode number).

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::identity::capget;
use super::{cvt, cvt_long};

/// A file as the kernel tells files apart: its device (as `stat` gives it) and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What `fstat`/`fstatat` say of a file: which file it is, how many names it has, and whether
/// it is a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub id: FileId,
    pub nlink: u64,
    pub socket: bool,
}

fn file_stat(st: &libc::stat) -> FileStat {
    FileStat {
        id: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        nlink: st.st_nlink,
        socket: st.st_mode & libc::S_IFMT == libc::S_IFSOCK,
    }
}

/// `fstat(fd)`.
pub(crate) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a writable stat buffer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded and filled the buffer.
    Ok(file_stat(&unsafe { st.assume_init() }))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: the entry `name` of directory `dir` itself (a
/// symlink is not followed). `name` is one path component.
pub(crate) fn stat_entry(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<FileStat> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `c` is NUL-terminated and `st` a writable stat buffer, both live across the call.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded and filled the buffer.
    Ok(file_stat(&unsafe { st.assume_init() }))
}

/// `SIOCUNIXFILE`: open the file a unix socket is bound to, with `O_PATH`.
const SIOCUNIXFILE: libc::c_ulong = 0x89E0;

/// An `O_PATH` descriptor of the file unix socket `sock` is bound to (`SIOCUNIXFILE`).
///
/// # Errors
/// `ENOENT` when the socket is not bound to a path (unbound, abstract, autobound); `EPERM`
/// when this thread lacks `CAP_NET_ADMIN` over the socket's network namespace; `ENOTTY` or
/// `EINVAL` on a kernel without the request.
///
/// # References
/// unix(7) (`SIOCUNIXFILE` is not documented there; `include/uapi/linux/un.h`)
pub(crate) fn unix_socket_file(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: SIOCUNIXFILE takes no argument and returns a new descriptor.
    let fd = cvt(unsafe { libc::ioctl(sock.as_raw_fd(), SIOCUNIXFILE as _) })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_VFS`: ask for the bound file.
const UDIAG_SHOW_VFS: u32 = 0x2;
/// `UNIX_DIAG_VFS`: the attribute carrying it.
const UNIX_DIAG_VFS: u16 = 1;
/// `INET_DIAG_NOCOOKIE`: any socket of that inode.
const NO_COOKIE: u32 = !0;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct unix_diag_req`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DiagRequest {
    header: NlMsgHdr,
    req: UnixDiagReq,
}

/// The length of `struct unix_diag_msg`, which precedes the attributes of an answer.
const UNIX_DIAG_MSG_LEN: usize = 16;

/// The file unix socket `sock` is bound to, asked of `sock_diag` (`UNIX_DIAG_VFS`) in this
/// thread's network namespace; `None` when the socket is not bound to a path. Needs no
/// privilege.
///
/// # Errors
/// `ENOENT` when the socket is not one of this network namespace's; whatever the netlink
/// socket's calls fail with.
///
/// # References
/// sock_diag(7)
pub(crate) fn unix_diag_file(sock: BorrowedFd<'_>) -> io::Result<Option<FileId>> {
    let ino = u32::try_from(stat_fd(sock)?.id.ino)
        .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    })?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    let diag = unsafe { OwnedFd::from_raw_fd(fd) };
    let request = DiagRequest {
        header: NlMsgHdr {
            len: size_of::<DiagRequest>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq: 1,
            pid: 0,
        },
        req: UnixDiagReq {
            family: libc::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: !0,
            ino,
            show: UDIAG_SHOW_VFS,
            cookie: [NO_COOKIE; 2],
        },
    };
    // SAFETY: `request` is a live, initialised value of the size given; the kernel reads it.
    cvt_long(unsafe {
        libc::send(
            diag.as_raw_fd(),
            (&request as *const DiagRequest).cast(),
            size_of::<DiagRequest>(),
            0,
        ) as libc::c_long
    })?;
    let mut buf = [0u8; 1024];
    // The kernel answers a single request while the send runs: the answer is queued by now.
    // SAFETY: `buf` is a writable buffer of the length given.
    let n = cvt_long(unsafe {
        libc::recv(
            diag.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        ) as libc::c_long
    })? as usize;
    parse_diag_answer(&buf[..n.min(buf.len())], ino)
}

/// The `UNIX_DIAG_VFS` attribute of a `sock_diag` answer about socket inode `ino`.
fn parse_diag_answer(answer: &[u8], ino: u32) -> io::Result<Option<FileId>> {
    let u16_at = |at: usize| {
        answer
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        answer
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let bad = || io::Error::from_raw_os_error(libc::EPROTO);
    let len = u32_at(0).ok_or_else(bad)? as usize;
    let kind = u16_at(4).ok_or_else(bad)?;
    let header = size_of::<NlMsgHdr>();
    if kind == NLMSG_ERROR {
        let errno = u32_at(header).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != SOCK_DIAG_BY_FAMILY || len > answer.len() || len < header + UNIX_DIAG_MSG_LEN {
        return Err(bad());
    }
    if u32_at(header + 4) != Some(ino) {
        return Err(bad());
    }
    let mut at = header + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len {
        let attr_len = usize::from(u16_at(at).ok_or_else(bad)?);
        let attr_kind = u16_at(at + 2).ok_or_else(bad)?;
        if attr_len < 4 || at + attr_len > len {
            return Err(bad());
        }
        if attr_kind == UNIX_DIAG_VFS && attr_len >= 12 {
            let file_ino = u32_at(at + 4).ok_or_else(bad)?;
            let kernel_dev = u32_at(at + 8).ok_or_else(bad)?;
            // The kernel's own `dev_t` (20 bits of minor), not the encoding `stat` gives.
            let dev = libc::makedev(kernel_dev >> 20, kernel_dev & 0xf_ffff);
            return Ok(Some(FileId {
                dev,
                ino: u64::from(file_ino),
            }));
        }
        at += (attr_len + 3) & !3;
    }
    Ok(None)
}

/// Gives this thread a filesystem context of its own (`unshare(CLONE_FS)`) and moves it into
/// the directories `root` and `cwd` (descriptors of a caller's `/proc/TID/root` and
/// `/proc/TID/cwd`): with `chroot`, `root` becomes its root directory (this needs
/// `CAP_SYS_CHROOT`); `cwd` becomes its working directory. Paths this thread names afterwards
/// are resolved as the caller's own calls resolve them.
///
/// Call it only on a thread that exits afterwards.
///
/// # References
/// unshare(2) (`CLONE_FS`), fchdir(2), chroot(2)
pub(crate) fn enter_directories(
    root: BorrowedFd<'_>,
    cwd: BorrowedFd<'_>,
    chroot: bool,
) -> io::Result<()> {
    // SAFETY: integer argument only; CLONE_FS gives this thread its own root, working
    // directory and umask, which nothing else refers to.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
    if chroot {
        // SAFETY: integer argument only.
        cvt(unsafe { libc::fchdir(root.as_raw_fd()) })?;
        // SAFETY: a NUL-terminated literal.
        cvt(unsafe { libc::chroot(c".".as_ptr()) })?;
    }
    // SAFETY: integer argument only.
    cvt(unsafe { libc::fchdir(cwd.as_raw_fd()) })?;
    Ok(())
}

/// Whether directories `a` and `b` are the same directory of the same mount: then a path walk
/// from either sees the same mounts below it (the same inode on another mount, a bind mount
/// say, may not).
pub(crate) fn same_mount_and_directory(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    let which = |fd: BorrowedFd<'_>| -> io::Result<Option<(u64, u32, u32, u64)>> {
        let mut stx = MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `fd` itself; `stx` is
        // a writable statx buffer.
        cvt(unsafe {
            libc::statx(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_INO | libc::STATX_MNT_ID,
                stx.as_mut_ptr(),
            )
        })?;
        // SAFETY: statx succeeded and filled the buffer.
        let stx = unsafe { stx.assume_init() };
        if stx.stx_mask & libc::STATX_MNT_ID == 0 {
            // A kernel that cannot name the mount: never "the same".
            return Ok(None);
        }
        Ok(Some((
            stx.stx_mnt_id,
            stx.stx_dev_major,
            stx.stx_dev_minor,
            stx.stx_ino,
        )))
    };
    Ok(match (which(a)?, which(b)?) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    })
}

/// Whether this thread has capability `cap` (a number) in its effective set.
pub(crate) fn has_capability(cap: u32) -> bool {
    matches!(capget(), Ok((effective, _)) if effective & (1u64 << cap) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound_socket(path: &std::path::Path) -> std::os::unix::net::UnixListener {
        let _ = std::fs::remove_file(path);
        std::os::unix::net::UnixListener::bind(path).expect("bind")
    }

    /// Both ways of finding a socket's file name the file `stat` names.
    #[test]
    fn the_bound_file_is_found_both_ways() {
        use std::os::fd::AsFd;
        let dir = crate::testing::fresh_dir("unixfile", "found");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.sock");
        let sock = bound_socket(&path);
        let want = {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(&path).expect("stat");
            FileId {
                dev: m.dev(),
                ino: m.ino(),
            }
        };
        match unix_diag_file(sock.as_fd()) {
            Ok(found) => assert_eq!(found, Some(want), "sock_diag"),
            // A kernel built without unix_diag.
            Err(e) => eprintln!("SKIP the_bound_file_is_found_both_ways (sock_diag): {e}"),
        }
        // CAP_NET_ADMIN.
        if has_capability(12) {
            let file = unix_socket_file(sock.as_fd()).expect("SIOCUNIXFILE");
            let st = stat_fd(file.as_fd()).expect("fstat");
            assert_eq!(st.id, want);
            assert!(st.socket && st.nlink == 1);
        }
        let unbound = std::os::unix::net::UnixDatagram::unbound().expect("socket");
        assert_eq!(unix_diag_file(unbound.as_fd()).expect("diag"), None);
        let d = std::fs::File::open(&dir).expect("open dir");
        let entry = stat_entry(d.as_fd(), b"s.sock").expect("fstatat");
        assert_eq!(entry.id, want);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn diag_answers_are_read_with_care() {
        // An error answer.
        let mut err = vec![0u8; 36];
        err[..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let e = parse_diag_answer(&err, 7).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // A truncated answer, and one about another socket.
        assert!(parse_diag_answer(&err[..3], 7).is_err());
        let mut msg = vec![0u8; 16 + 16 + 12];
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[20..24].copy_from_slice(&9u32.to_ne_bytes());
        msg[32..34].copy_from_slice(&12u16.to_ne_bytes());
        msg[34..36].copy_from_slice(&UNIX_DIAG_VFS.to_ne_bytes());
        msg[36..40].copy_from_slice(&55u32.to_ne_bytes());
        msg[40..44].copy_from_slice(&((8u32 << 20) | 3).to_ne_bytes());
        assert!(
            parse_diag_answer(&msg, 7).is_err(),
            "another socket's answer"
        );
        let found = parse_diag_answer(&msg, 9).expect("answer").expect("a file");
        assert_eq!(found.ino, 55);
        assert_eq!(found.dev, libc::makedev(8, 3));
        // An attribute that claims more than the message holds.
        msg[32..34].copy_from_slice(&200u16.to_ne_bytes());
        assert!(parse_diag_answer(&msg, 9).is_err());
    }
}
