//! A thread of its own mount namespace whose path walks land in a chosen directory
//! (`ops/scaffold.rs` says what is built and why).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// The paths of a scaffold, NUL-terminated (made before a fork: [`build`] allocates nothing):
/// the directories to make (relative to the scaffold's root, parents first), the working
/// directory, and the directory on which the clone is mounted.
pub(crate) struct Plan {
    dirs: Vec<CString>,
    cwd: CString,
    parent: CString,
}

impl Plan {
    pub(crate) fn new(dirs: &[Vec<u8>], cwd: &[u8], parent: &[u8]) -> io::Result<Plan> {
        Ok(Plan {
            dirs: dirs.iter().map(|d| c_path(d)).collect::<io::Result<_>>()?,
            cwd: c_path(cwd)?,
            parent: c_path(parent)?,
        })
    }
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
/// unshare(2) (`CLONE_FS`, `CLONE_NEWNS`), setns(2), open_tree(2)
pub(crate) fn enter_scaffold(
    mnt_ns: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    dirs: &[Vec<u8>],
    cwd: &[u8],
    parent: &[u8],
) -> io::Result<()> {
    let plan = Plan::new(dirs, cwd, parent)?;
    // SAFETY: integer argument only; `setns(CLONE_NEWNS)` wants a filesystem context that no
    // other thread shares.
    cvt(unsafe { libc::unshare(libc::CLONE_FS) })?;
    if !same_namespace(mnt_ns)? {
        // SAFETY: integer arguments only; changes this thread's mount namespace.
        cvt(unsafe { libc::setns(mnt_ns.as_raw_fd(), libc::CLONE_NEWNS) })?;
    }
    let clone = clone_directory(dir, false)?;
    // SAFETY: integer argument only; a copy of the mount namespace for this thread alone.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    make_private()?;
    build(&plan, clone.as_fd())
}

/// A detached clone of the mount of directory `dir`, rooted at `dir`; with `recursive`, the
/// mounts below `dir` come with it (`AT_RECURSIVE`). `dir` must be on a mount of this
/// thread's mount namespace. In a namespace of a user namespace of its own, a mount with
/// mounts below `dir` cannot be cloned without them (`EINVAL`: they are locked to it).
///
/// # References
/// open_tree(2) (`OPEN_TREE_CLONE`, `AT_RECURSIVE`)
pub(super) fn clone_directory(dir: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `dir` itself.
    Ok(owned(cvt_long(unsafe {
        libc::syscall(libc::SYS_open_tree, dir.as_raw_fd(), c"".as_ptr(), flags)
    })?))
}

/// Nothing mounted in this (new) mount namespace may reach the namespaces its copy shares
/// mounts with: every mount private.
///
/// # References
/// mount_namespaces(7) (`MS_PRIVATE`)
pub(super) fn make_private() -> io::Result<()> {
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
    Ok(())
}

/// In a mount namespace of this thread's (or process's) own whose mounts are private: a new
/// tmpfs becomes the root, holding `plan`'s directories, the working directory becomes
/// `plan`'s, and `clone` is mounted on `plan`'s parent. The umask is left as it was. Makes no
/// allocation: it runs in a forked child of the broker too.
///
/// # References
/// fsopen(2), fsconfig(2), fsmount(2), move_mount(2), chroot(2), umask(2)
pub(super) fn build(plan: &Plan, clone: BorrowedFd<'_>) -> io::Result<()> {
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
    let umask = unsafe { libc::syscall(libc::SYS_umask, 0) };
    let made = make_directories(plan, tmpfs.as_fd());
    // SAFETY: integer argument only (the mask umask returned); umask cannot fail.
    unsafe { libc::syscall(libc::SYS_umask, umask) };
    made?;
    // SAFETY: a NUL-terminated path; the scaffold holds no symlink.
    cvt(unsafe { libc::chdir(plan.cwd.as_ptr()) })?;
    // SAFETY: a NUL-terminated path, alive across the call.
    let target = owned(cvt(unsafe {
        libc::openat(
            tmpfs.as_raw_fd(),
            plan.parent.as_ptr(),
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

fn make_directories(plan: &Plan, root: BorrowedFd<'_>) -> io::Result<()> {
    for d in &plan.dirs {
        // SAFETY: `d` is NUL-terminated and lives across the call.
        cvt(unsafe { libc::mkdirat(root.as_raw_fd(), d.as_ptr(), 0o755) })?;
    }
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
        (c"size", c"1m"),
        // A directory per component of the path and of the working directory the walk
        // starts from, which may be deep (the eighth red team's A3: 300 levels).
        (c"nr_inodes", c"8192"),
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
