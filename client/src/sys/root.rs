//! Root sandboxes (invariant 10): whether the caller runs as root, no core dumps, the
//! private mount namespace whose device nodes and procfs are out of the sandbox's reach.
#![allow(unsafe_code)]

use super::*;

/// Whether the calling thread has uid 0 as its real, effective, saved or filesystem uid.
/// Raw system calls only: safe in a freshly forked child.
pub(crate) fn runs_as_root() -> bool {
    let (mut r, mut e, mut saved) = (0, 0, 0);
    // SAFETY: getresuid writes three uids to live locals; setfsuid with an invalid uid changes
    // nothing and returns the current filesystem uid.
    let (ids, fs) = unsafe {
        let ids = libc::getresuid(&mut r, &mut e, &mut saved);
        let fs = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        (ids, fs)
    };
    // Fail closed: ids that cannot be read count as root.
    ids != 0 || r == 0 || e == 0 || saved == 0 || fs == 0
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dump of this process, and `/proc/PID/mem`, `environ`,
/// `fd` and ptrace of it need `CAP_SYS_PTRACE`, even for processes of the same user (a
/// sandbox without Landlock among them). Exec of another program makes a process dumpable
/// again, so children that exec are not affected.
///
/// # References
/// prctl(2) (`PR_SET_DUMPABLE`), proc(5) (`/proc/pid/mem`)
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// `OPEN_TREE_CLONE` (`linux/mount.h`).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `AT_RECURSIVE`.
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `MOVE_MOUNT_F_EMPTY_PATH`.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The most entries of the original `/dev` a root sandbox's `/dev` takes: the fds of their
/// clones live on the stack between fork and exec.
pub(crate) const MAX_DEV_ENTRIES: usize = 32;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One entry of the original `/dev` that a root sandbox's `/dev` takes.
#[derive(Debug)]
pub struct DevEntry {
    /// Its path (`/dev/null`, `/dev/pts`, `/dev/net/tun`).
    pub path: CString,
    /// What it is.
    pub kind: DevKind,
}

/// What a [`DevEntry`] is, and how the new `/dev` gets it.
#[derive(Debug)]
pub enum DevKind {
    /// A character device or a socket: a bind mount of the original node.
    Node,
    /// A file system mounted there (`pts`, `shm`, `mqueue`): a recursive bind mount;
    /// `devices` says whether device nodes in it may be opened (`devpts` only).
    Mount {
        /// Device nodes stay usable (no `nodev`).
        devices: bool,
    },
    /// A directory to create (`net`).
    Dir,
    /// A symbolic link to make again, with this target.
    Symlink(CString),
}

/// What a sandbox that runs as root does before it drops its capabilities: a private mount
/// namespace (propagation slave) where the kernel's tunables, the files the broker trusts and
/// the device nodes are out of its reach. Built before the fork ([`crate::root`] finds the
/// paths); applied with raw system calls only.
#[derive(Debug)]
pub struct RootPlan {
    /// Made mount points of their own (bind mounts on themselves), so that they cannot be
    /// renamed away from under the read-only files they hold; shallowest first.
    pinned: Vec<CString>,
    /// Bind-mounted read-only, recursively.
    read_only: Vec<CString>,
    /// The new `/dev`, in order (a directory before what it holds).
    dev: Vec<DevEntry>,
    /// The working directory, looked up again once the mounts are in place.
    cwd: CString,
    /// Whether to mount a procfs of the sandbox's own on `/proc`, with `hidepid=ptraceable`.
    fresh_proc: FreshProc,
}

/// Whether a root sandbox gets a procfs of its own ([`RootPlan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshProc {
    /// No `/proc` to replace.
    No,
    /// Mounted, or the sandbox does not start.
    Yes,
    /// Mounted where the kernel permits: in a user namespace that does not own its pid
    /// namespace, which the kernel requires of a procfs's mounter, the host's `/proc` stays.
    IfPermitted,
}

impl RootPlan {
    /// A plan from its parts (see the fields); `dev` has at most [`MAX_DEV_ENTRIES`] entries.
    pub fn new(
        pinned: Vec<CString>,
        read_only: Vec<CString>,
        dev: Vec<DevEntry>,
        (cwd, fresh_proc): (CString, FreshProc),
    ) -> io::Result<RootPlan> {
        if dev.len() > MAX_DEV_ENTRIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many /dev entries for a root sandbox",
            ));
        }
        Ok(RootPlan {
            pinned,
            read_only,
            dev,
            cwd,
            fresh_proc,
        })
    }

    /// Applies the plan to the calling thread: `unshare(CLONE_NEWNS)`, every mount made a
    /// slave (nothing propagates back to the host), a procfs of its own on `/proc` that shows
    /// only the processes the sandbox may ptrace (`hidepid=ptraceable`: with Landlock's domain,
    /// its own), the pinned directories, the read-only binds (those under `/proc` on the new
    /// procfs), `nodev` on every mount, a fresh `/dev` (a small tmpfs, `nosuid`, `noexec`)
    /// with only the plan's entries, and the working directory again. Returns the errno of the
    /// first step that fails.
    ///
    /// # Safety
    /// Raw system calls on memory of the plan only, no allocation, no lock: safe in a freshly
    /// forked child.
    pub(super) unsafe fn apply(&self) -> Result<(), i32> {
        // SAFETY: raw system calls on live C strings of the plan and on locals; the steps
        // keep the promise of this function's own.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(errno());
            }
            let root = c"/".as_ptr();
            let null = std::ptr::null::<libc::c_char>();
            if libc::mount(null, root, null, libc::MS_REC | libc::MS_SLAVE, null.cast()) != 0 {
                return Err(errno());
            }
            let mut clones = [-1 as RawFd; MAX_DEV_ENTRIES];
            let steps = self
                .clone_dev_entries(&mut clones)
                .and_then(|()| self.remount(&clones));
            for &fd in clones.iter().filter(|&&fd| fd >= 0) {
                libc::close(fd);
            }
            steps
        }
    }

    /// Detached copies (`open_tree`) of what the new `/dev` takes, made before anything
    /// changes: their flags are the host's (device nodes usable). Fills `clones` by entry.
    ///
    /// # Safety
    /// As [`RootPlan::apply`].
    unsafe fn clone_dev_entries(&self, clones: &mut [RawFd; MAX_DEV_ENTRIES]) -> Result<(), i32> {
        for (i, entry) in self.dev.iter().enumerate() {
            let recursive = match entry.kind {
                DevKind::Node => 0,
                DevKind::Mount { .. } => AT_RECURSIVE,
                DevKind::Dir | DevKind::Symlink(_) => continue,
            };
            // SAFETY: a live C string of the plan.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    entry.path.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive,
                )
            };
            if fd < 0 {
                return Err(errno());
            }
            clones[i] = fd as RawFd;
        }
        Ok(())
    }

    /// Every step after the copies: procfs, pinned and read-only binds, `nodev`, the new
    /// `/dev`, the working directory.
    ///
    /// # Safety
    /// As [`RootPlan::apply`].
    unsafe fn remount(&self, clones: &[RawFd; MAX_DEV_ENTRIES]) -> Result<(), i32> {
        // SAFETY: raw system calls on live C strings of the plan.
        unsafe {
            if self.fresh_proc != FreshProc::No {
                // A new procfs instance (Linux 5.8): its options are its own, the host's
                // /proc keeps showing everything; older kernels refuse "ptraceable".
                // Not "invisible", which lets the group of its `gid=` option (0 unless
                // set, the group of a root sandbox) see every process.
                let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
                let proc = c"/proc".as_ptr();
                let data = c"hidepid=ptraceable".as_ptr();
                let fs = c"proc".as_ptr();
                if libc::mount(fs, proc, fs, flags, data.cast()) != 0 {
                    let e = errno();
                    if !(e == libc::EPERM && self.fresh_proc == FreshProc::IfPermitted) {
                        return Err(e);
                    }
                }
            }
            for path in &self.pinned {
                bind_onto_itself(path, libc::MS_REC)?;
            }
            for path in &self.read_only {
                bind_onto_itself(path, libc::MS_REC)?;
                set_mount_attr(path.as_ptr(), AT_RECURSIVE, MOUNT_ATTR_RDONLY)?;
            }
            // No device node anywhere, except those the new /dev brings back.
            let root = c"/".as_ptr();
            set_mount_attr(root, AT_RECURSIVE, MOUNT_ATTR_NODEV)?;
            self.fresh_dev(clones)?;
            // A working directory inside a pinned directory still refers to the mount
            // underneath, where relative paths would miss the read-only binds.
            if libc::chdir(self.cwd.as_ptr()) != 0 && libc::chdir(root) != 0 {
                return Err(errno());
            }
            Ok(())
        }
    }

    /// A fresh `/dev`: a small tmpfs with only the plan's entries (the copies in `clones`
    /// moved onto theirs), then read-only, `nosuid` and `noexec`.
    ///
    /// # Safety
    /// As [`RootPlan::apply`].
    unsafe fn fresh_dev(&self, clones: &[RawFd; MAX_DEV_ENTRIES]) -> Result<(), i32> {
        // SAFETY: raw system calls on live C strings of the plan and on fds of `clones`.
        unsafe {
            let dev = c"/dev".as_ptr();
            let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
            let data = c"mode=0755,size=1m,nr_inodes=256".as_ptr();
            let tmpfs = c"tmpfs".as_ptr();
            if libc::mount(tmpfs, dev, tmpfs, flags, data.cast()) != 0 {
                return Err(errno());
            }
            for (i, entry) in self.dev.iter().enumerate() {
                let path = entry.path.as_ptr();
                match &entry.kind {
                    DevKind::Dir => {
                        if libc::mkdir(path, 0o755) != 0 {
                            return Err(errno());
                        }
                        continue;
                    }
                    DevKind::Symlink(target) => {
                        if libc::symlink(target.as_ptr(), path) != 0 {
                            return Err(errno());
                        }
                        continue;
                    }
                    DevKind::Node => {
                        let fd = libc::open(
                            path,
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o600,
                        );
                        if fd < 0 {
                            return Err(errno());
                        }
                        libc::close(fd);
                    }
                    DevKind::Mount { .. } => {
                        if libc::mkdir(path, 0o755) != 0 {
                            return Err(errno());
                        }
                    }
                }
                let moved = libc::syscall(
                    libc::SYS_move_mount,
                    clones[i],
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    path,
                    MOVE_MOUNT_F_EMPTY_PATH,
                );
                if moved != 0 {
                    return Err(errno());
                }
                if let DevKind::Mount { devices: false } = entry.kind {
                    set_mount_attr(path, AT_RECURSIVE, MOUNT_ATTR_NODEV)?;
                }
            }
            // Nothing new in /dev either: no file, no link, no directory.
            set_mount_attr(
                dev,
                0,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            )
        }
    }
}

/// This thread's errno.
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// `mount_setattr(AT_FDCWD, path, flags, {attr_set: set})`.
///
/// # Safety
/// `path` is a live C string.
unsafe fn set_mount_attr(
    path: *const libc::c_char,
    flags: libc::c_uint,
    set: u64,
) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a live path (the caller's promise) and a live attribute struct of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path,
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A bind mount of `path` onto itself, with `flags` besides `MS_BIND`.
fn bind_onto_itself(path: &CString, flags: libc::c_ulong) -> Result<(), i32> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: live C strings; a bind mount of a path onto itself.
    let r = unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            null,
            libc::MS_BIND | flags,
            null.cast(),
        )
    };
    if r != 0 {
        Err(errno())
    } else {
        Ok(())
    }
}
