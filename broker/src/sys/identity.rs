//! The identity a thread of the broker acts with: a caller's ids, groups and capabilities
//! taken for one call, the broker's own umask, its network namespace.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_long};

/// The ids and capabilities a thread takes to act as a sandbox's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
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
pub(super) struct CapHeader {
    pub(super) version: u32,
    pub(super) pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(super) struct CapData {
    pub(super) effective: u32,
    pub(super) permitted: u32,
    pub(super) inheritable: u32,
}

pub(super) const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

pub(super) fn capget() -> io::Result<(u64, u64)> {
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

pub(super) fn capset(effective: u64, permitted: u64) -> io::Result<()> {
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
pub(crate) enum Become {
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
pub(crate) fn become_caller(who: &Identity, how: Become) -> io::Result<()> {
    take_groups(&who.groups)?;
    if let Some(mask) = who.umask {
        // The umask lives in the filesystem context that the broker's threads share: this
        // thread takes a copy of its own first.
        // SAFETY: integer arguments only.
        cvt_long(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_FS) })?;
        // SAFETY: integer argument only; umask cannot fail.
        unsafe { libc::syscall(libc::SYS_umask, mask & 0o777) };
    }
    if how == Become::Filesystem {
        return take_filesystem_ids(who);
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
    // setresuid made the filesystem ids the effective ones; a caller may hold others
    // (setfsuid(2)): a file a bind creates is owned by those (the eighth red team's A2).
    set_filesystem_ids(who)?;
    if getres(libc::SYS_getresuid)? != res(who.uids)
        || getres(libc::SYS_getresgid)? != res(who.gids)
    {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// Takes the supplementary groups `groups` (this thread only, as `SYS_setgroups` does).
fn take_groups(groups: &[u32]) -> io::Result<()> {
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
    let mut want = groups.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    if have != want {
        // SAFETY: the kernel reads `groups.len()` gids from a valid slice.
        cvt_long(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })?;
    }
    Ok(())
}

/// [`Become::Filesystem`]: the caller's real uid and filesystem ids, with the broker's
/// effective ids and capabilities (less those the caller lacks where fsuid 0 keeps them).
/// Sets this thread's filesystem ids to the caller's, which the kernel checks file access and
/// new files' owners by; `EPERM` where they did not take (the kernel lets a task set them to
/// one of its real, effective or saved ids, or any with `CAP_SETUID`/`CAP_SETGID`).
fn set_filesystem_ids(who: &Identity) -> io::Result<()> {
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
    Ok(())
}

fn take_filesystem_ids(who: &Identity) -> io::Result<()> {
    let [ruid, ..] = who.uids;
    if getres(libc::SYS_getresuid)?[0] != ruid {
        // The real id alone: the effective and saved ids stay, and so do the broker's
        // capabilities (setresuid resets the filesystem id, which is set below).
        // SAFETY: integer arguments only; -1 leaves an id as it is.
        cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, ruid, u32::MAX, u32::MAX) })?;
    }
    set_filesystem_ids(who)?;
    // The kernel takes the file capabilities out of the effective set only when the
    // filesystem id leaves 0: for a caller whose fsuid is 0 (a root sandbox, root of a
    // user namespace that maps 0 to 0) take out those the caller does not hold itself.
    let (effective, permitted) = capget()?;
    let keep = effective & !(CAP_FS_MASK & !who.cap_effective);
    if keep != effective {
        capset(keep, permitted)?;
    }
    Ok(())
}

/// Empties this thread's effective and permitted capability sets, for good: what it makes
/// afterwards carries no privilege (a socket's file records the credentials of the task that
/// made it, and the kernel's netlink families check them).
///
/// Call it only on a thread that exits afterwards.
pub(crate) fn drop_all_capabilities() -> io::Result<()> {
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
pub(crate) fn enter_network_namespace(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments only; setns changes the calling thread's namespace.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Runs `work` on this thread with the capability `cap` (a number) out of its effective set,
/// then puts the set back as it was: a call the kernel must check without the broker's
/// privilege (a bind whose port may be privileged in the socket's namespace) fails as it would
/// for a task without it.
pub(crate) fn without_capability<T>(cap: u32, work: impl FnOnce() -> T) -> io::Result<T> {
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
pub(crate) fn may_forge_credentials() -> bool {
    const CAP_SETUID: u64 = 1 << 7;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    matches!(capget(), Ok((eff, _)) if eff & (CAP_SETUID | CAP_SYS_ADMIN) == CAP_SETUID | CAP_SYS_ADMIN)
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
pub(crate) fn with_own_umask<T: Send>(
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
