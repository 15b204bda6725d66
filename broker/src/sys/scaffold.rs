//! A thread of its own mount namespace whose path walks land in a chosen directory
//! (`ops/scaffold.rs` says what is built and why).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_long};

// linux/mount.h.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn c_path(bytes: &[u8]) -> io::Result<CString> {
    CString::new(if bytes.is_empty() { b"." } else { bytes })
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Gives this thread a filesystem context of its own and makes the directory `dir` its working
/// directory, and its root too with `root`.
///
/// Call it only on a thread that exits afterwards.
///
/// # References
/// unshare(2) (`CLONE_FS`), fchdir(2), chroot(2)
pub(crate) fn enter_directory(dir: BorrowedFd<'_>, root: bool) -> io::Result<()> {
    // SAFETY: integer argument only; this thread's root, cwd and umask become its own.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
    // SAFETY: integer argument only.
    cvt(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
    if root {
        // SAFETY: a NUL-terminated literal.
        cvt(unsafe { libc::chroot(c".".as_ptr()) })?;
    }
    Ok(())
}

/// Places this thread in a mount namespace of its own whose root is a new tmpfs holding the
/// directories `dirs` (relative paths, parents first), with a clone of the mount of directory
/// `dir` (rooted at `dir`) mounted on `parent`, and `cwd` its working directory (taken before
/// that mount, so that a walk that starts there does not start in the clone). `mnt_ns`, the
/// caller's mount namespace (`/proc/TID/ns/mnt`), is entered first where it is not this
/// thread's: a clone is made of a mount of the thread's own namespace only. Needs
/// `CAP_SYS_ADMIN` and `CAP_SYS_CHROOT`; nothing of it is seen outside this thread, and it
/// all goes when the thread exits.
///
/// Call it only on a thread that exits afterwards.
///
/// # References
/// unshare(2) (`CLONE_FS`, `CLONE_NEWNS`), setns(2), open_tree(2), fsopen(2), fsconfig(2),
/// fsmount(2), move_mount(2), mount_namespaces(7) (`MS_PRIVATE`), chroot(2)
pub(crate) fn enter_scaffold(
    mnt_ns: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    dirs: &[Vec<u8>],
    cwd: &[u8],
    parent: &[u8],
) -> io::Result<()> {
    // SAFETY: integer argument only; `setns(CLONE_NEWNS)` wants a filesystem context that no
    // other thread shares.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
    if !same_namespace(mnt_ns)? {
        // SAFETY: integer arguments only; changes this thread's mount namespace.
        cvt(unsafe { libc::setns(mnt_ns.as_raw_fd(), libc::CLONE_NEWNS) })?;
    }
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `dir` itself.
    let clone = owned(cvt_long(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    })?);
    // SAFETY: integer argument only; a copy of the mount namespace for this thread alone.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // Nothing mounted here may reach the namespaces the copy shares mounts with.
    // SAFETY: NUL-terminated literals and null pointers mount(2) accepts for a change of
    // propagation.
    cvt(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    let tmpfs = new_tmpfs()?;
    // SAFETY: empty NUL-terminated paths with MOVE_MOUNT_F_EMPTY_PATH name the fd; "/" is a
    // NUL-terminated literal.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tmpfs.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c"/".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    // SAFETY: integer argument only.
    cvt(unsafe { libc::fchdir(tmpfs.as_raw_fd()) })?;
    // SAFETY: a NUL-terminated literal.
    cvt(unsafe { libc::chroot(c".".as_ptr()) })?;
    // The caller's identity must be able to walk the scaffold: no umask on its directories.
    // SAFETY: integer argument only; umask cannot fail.
    unsafe { libc::syscall(libc::SYS_umask, 0) };
    for d in dirs {
        let c = c_path(d)?;
        // SAFETY: `c` is NUL-terminated and lives across the call.
        cvt(unsafe { libc::mkdirat(tmpfs.as_raw_fd(), c.as_ptr(), 0o755) })?;
    }
    let c = c_path(cwd)?;
    // SAFETY: `c` is NUL-terminated; the scaffold holds no symlink.
    cvt(unsafe { libc::chdir(c.as_ptr()) })?;
    let c = c_path(parent)?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let target = owned(cvt(unsafe {
        libc::openat(
            tmpfs.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })? as libc::c_long);
    // SAFETY: empty NUL-terminated paths with the EMPTY_PATH flags name the two fds.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            clone.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// Whether `mnt_ns` is this thread's mount namespace.
fn same_namespace(mnt_ns: BorrowedFd<'_>) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata("/proc/thread-self/ns/mnt")?;
    let theirs = super::stat_fd(mnt_ns)?.id;
    Ok((theirs.dev, theirs.ino) == (mine.dev(), mine.ino()))
}

/// A new tmpfs, detached (`fsmount`), small, with no devices, set-id or executables.
fn new_tmpfs() -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated literal and integer flags.
    let fs = owned(cvt_long(unsafe {
        libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC)
    })?);
    for (key, value) in [
        (c"mode", c"0755"),
        (c"size", c"64k"),
        (c"nr_inodes", c"256"),
    ] {
        // SAFETY: NUL-terminated literals; aux is 0 for FSCONFIG_SET_STRING.
        cvt_long(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: integer arguments and null pointers, as FSCONFIG_CMD_CREATE wants.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: integer arguments only.
    Ok(owned(cvt_long(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        )
    })?))
}
