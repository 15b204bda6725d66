//! Landlock rulesets: the ABI version, a ruleset, a rule per directory.
#![allow(unsafe_code)]

use super::*;

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask `landlock_create_ruleset` for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
/// `LANDLOCK_RULE_PATH_BENEATH`.
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

/// `struct landlock_ruleset_attr` (ABI 6 layout; older kernels take a prefix of it).
#[repr(C)]
struct LandlockRulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the uapi header).
#[repr(C, packed)]
struct LandlockPathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel: `landlock_create_ruleset(NULL, 0,
/// LANDLOCK_CREATE_RULESET_VERSION)`. `ENOSYS`: not built in; `EOPNOTSUPP`: disabled at boot.
///
/// # References
/// landlock_create_ruleset(2)
pub(crate) fn landlock_abi() -> io::Result<u32> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<LandlockRulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u32)
}

/// `landlock_create_ruleset` with the given handled filesystem accesses and scopes. A kernel
/// before ABI 6 has no `scoped` field: pass `scoped = 0` there, and only the prefix it knows
/// is handed over.
///
/// # References
/// landlock_create_ruleset(2)
pub(crate) fn landlock_ruleset(handled_access_fs: u64, scoped: u64) -> io::Result<OwnedFd> {
    let attr = LandlockRulesetAttr {
        handled_access_fs,
        handled_access_net: 0,
        scoped,
    };
    let size = if scoped == 0 {
        std::mem::size_of::<u64>() // handled_access_fs only: known since ABI 1
    } else {
        std::mem::size_of::<LandlockRulesetAttr>()
    };
    // SAFETY: `attr` is a live local of the uapi layout, `size` at most its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const LandlockRulesetAttr,
            size,
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Adds a rule to `ruleset` allowing `access` beneath the directory `dir`.
///
/// # References
/// landlock_add_rule(2)
pub(crate) fn landlock_allow_beneath(
    ruleset: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    access: u64,
) -> io::Result<()> {
    let attr = LandlockPathBeneathAttr {
        allowed_access: access,
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: `attr` is a live local of the uapi layout; the fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const LandlockPathBeneathAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
