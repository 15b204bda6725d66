//! The Landlock domain of a sandbox (rule D5, invariant 6).
//!
//! A Landlock domain by itself keeps the processes inside it from reaching into processes
//! outside it: `ptrace`, and everything the kernel guards with a ptrace access check
//! (`/proc/PID/mem`, `/proc/PID/environ`, `/proc/PID/ns/*`, `process_vm_readv`,
//! `pidfd_getfd`), succeed only on processes of the same domain or a nested one. The seccomp
//! filter refuses the calls it can see; the files under `/proc` it cannot, and this closes
//! them. From ABI 6 (Linux 6.12) two scopes go further: `LANDLOCK_SCOPE_SIGNAL` (no signal
//! to a process outside the domain, `kill`, `tgkill` and `SIGIO` through `F_SETOWN` alike) and
//! `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (no connect or send to an abstract unix socket
//! created outside the domain).
//!
//! The ruleset handles no filesystem and no network access, so files are untouched and the
//! network stays the broker's: the broker connects and sends on its own copy of the
//! sandbox's socket, as a process outside the domain, so the abstract-socket scope does not
//! apply to what it does on the sandbox's behalf. Signals the launcher forwards go inward,
//! which no scope restricts.
//!
//! The ruleset is built here, before the fork; the child only calls
//! `landlock_restrict_self` (a raw system call of the launcher), after `no_new_privs` and before the filter.
//!
//! # References
//! landlock(7), landlock_create_ruleset(2), landlock_restrict_self(2)

use std::os::fd::OwnedFd;

use netjail_policy::LandlockMode;

use crate::sys;

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET`.
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
/// `LANDLOCK_SCOPE_SIGNAL`.
pub const SCOPE_SIGNAL: u64 = 1 << 1;
/// The ABI that has both scopes.
pub const SCOPES_ABI: u32 = 6;
/// `LANDLOCK_ACCESS_FS_MAKE_BLOCK` (ABI 1): handled and granted beneath `/` by the domain of
/// an ABI 1 to 5 kernel, which needs some handled access to exist at all. Making block device
/// nodes needs `CAP_MKNOD` anyway.
const ACCESS_FS_MAKE_BLOCK: u64 = 1 << 11;

/// What the launcher applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No domain (`landlock = "off"`, or no Landlock in the kernel).
    Nothing,
    /// A domain without scopes (ABI 1 to 5): ptrace and `/proc/PID/mem` of outside processes.
    DomainOnly,
    /// A domain with the signal and abstract unix socket scopes (ABI 6 and later).
    Scoped,
}

/// Errors preparing the domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandlockError {
    /// `landlock = "required"` on a kernel that cannot apply every scope.
    #[error("landlock = \"required\", but {0}")]
    Required(String),
    /// The kernel refused the ruleset.
    #[error("cannot build the landlock ruleset: {0}")]
    Ruleset(#[source] std::io::Error),
}

/// Why the kernel cannot apply every scope, from the ABI probe's answer.
fn shortfall(abi: &std::io::Result<u32>) -> Option<String> {
    match abi {
        Ok(v) if *v >= SCOPES_ABI => None,
        Ok(v) => Some(format!(
            "this kernel has Landlock ABI {v}, and scoping signals and abstract unix sockets \
             needs ABI {SCOPES_ABI} (Linux 6.12)"
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            Some("this kernel has no Landlock".to_owned())
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Some(
            "Landlock is disabled on this kernel (it is not in the `lsm=` boot parameter)"
                .to_owned(),
        ),
        Err(e) => Some(format!("the Landlock ABI probe failed: {e}")),
    }
}

/// Decides what to apply for `mode` on a kernel whose ABI probe answered `abi`, and the one
/// line to print when that falls short of the policy's wish (best effort). Pure: no kernel.
pub fn decide(
    mode: LandlockMode,
    abi: &std::io::Result<u32>,
) -> Result<(Plan, Option<String>), LandlockError> {
    if mode == LandlockMode::Off {
        return Ok((Plan::Nothing, None));
    }
    let Some(why) = shortfall(abi) else {
        return Ok((Plan::Scoped, None));
    };
    if mode == LandlockMode::Required {
        return Err(LandlockError::Required(why));
    }
    Ok(match abi {
        Ok(v) if *v >= 1 => (
            Plan::DomainOnly,
            Some(format!(
                "landlock: {why}: signals and abstract unix sockets are not scoped to the \
                 sandbox (ptrace and /proc/PID/mem of outside processes are)"
            )),
        ),
        _ => (
            Plan::Nothing,
            Some(format!(
                "landlock: {why}: not applied, so /proc/PID/mem, signals and abstract unix \
                 sockets of outside processes are not scoped (the seccomp filter still \
                 refuses ptrace, process_vm_readv and pidfd_getfd)"
            )),
        ),
    })
}

/// A ruleset ready for the child, and what to say about it.
#[derive(Debug)]
pub struct Prepared {
    /// What is applied.
    pub plan: Plan,
    /// The ruleset for `landlock_restrict_self`, unless the plan is [`Plan::Nothing`].
    pub ruleset: Option<OwnedFd>,
    /// One line for the log when the kernel falls short of the policy's wish.
    pub warning: Option<String>,
}

/// Probes the kernel and builds the ruleset for `mode`. Call before the fork.
pub fn prepare(mode: LandlockMode) -> Result<Prepared, LandlockError> {
    let abi = if mode == LandlockMode::Off {
        Ok(0)
    } else {
        sys::landlock_abi()
    };
    let (plan, warning) = decide(mode, &abi)?;
    let ruleset = build(plan).map_err(LandlockError::Ruleset)?;
    Ok(Prepared {
        plan,
        ruleset,
        warning,
    })
}

/// The ruleset of `plan`.
pub fn build(plan: Plan) -> std::io::Result<Option<OwnedFd>> {
    match plan {
        Plan::Nothing => Ok(None),
        Plan::Scoped => {
            let scopes = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
            sys::landlock_ruleset(0, scopes).map(Some)
        }
        Plan::DomainOnly => {
            let ruleset = sys::landlock_ruleset(ACCESS_FS_MAKE_BLOCK, 0)?;
            let root = rustix::fs::open(
                "/",
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            use std::os::fd::AsFd;
            sys::landlock_allow_beneath(ruleset.as_fd(), root.as_fd(), ACCESS_FS_MAKE_BLOCK)?;
            Ok(Some(ruleset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(e: i32) -> std::io::Result<u32> {
        Err(std::io::Error::from_raw_os_error(e))
    }

    #[test]
    fn off_applies_nothing_and_says_nothing() {
        for abi in [Ok(7), Ok(1), errno(libc::ENOSYS)] {
            let (plan, warning) = decide(LandlockMode::Off, &abi).unwrap();
            assert_eq!(plan, Plan::Nothing);
            assert!(warning.is_none());
        }
    }

    #[test]
    fn scopes_from_abi_6() {
        for mode in [LandlockMode::BestEffort, LandlockMode::Required] {
            for v in [6, 7, 9] {
                let (plan, warning) = decide(mode, &Ok(v)).unwrap();
                assert_eq!(plan, Plan::Scoped);
                assert!(warning.is_none());
            }
        }
    }

    #[test]
    fn best_effort_degrades_and_says_so_in_one_line() {
        let (plan, warning) = decide(LandlockMode::BestEffort, &Ok(5)).unwrap();
        assert_eq!(plan, Plan::DomainOnly);
        let w = warning.unwrap();
        assert!(w.contains("ABI 5") && w.contains("not scoped"), "{w}");
        assert!(!w.contains('\n'));
        for e in [libc::ENOSYS, libc::EOPNOTSUPP, libc::EINVAL] {
            let (plan, warning) = decide(LandlockMode::BestEffort, &errno(e)).unwrap();
            assert_eq!(plan, Plan::Nothing);
            let w = warning.unwrap();
            assert!(w.contains("not applied") && !w.contains('\n'), "{w}");
        }
    }

    #[test]
    fn required_refuses_short_kernels() {
        for abi in [Ok(0), Ok(5), errno(libc::ENOSYS), errno(libc::EOPNOTSUPP)] {
            let err = decide(LandlockMode::Required, &abi).unwrap_err();
            assert!(err.to_string().starts_with("landlock = \"required\", but "));
        }
    }

    /// Both rulesets build on this kernel (restricting is left to the e2e tests, in children).
    #[test]
    fn rulesets_build_where_the_kernel_has_landlock() {
        let abi = sys::landlock_abi();
        match abi {
            Ok(v) if v >= SCOPES_ABI => {
                assert!(build(Plan::Scoped).unwrap().is_some());
                assert!(build(Plan::DomainOnly).unwrap().is_some());
            }
            Ok(v) if v >= 1 => assert!(build(Plan::DomainOnly).unwrap().is_some()),
            _ => {
                let line = "SKIP rulesets_build_where_the_kernel_has_landlock: no Landlock";
                assert!(
                    std::env::var("NETJAIL_STRICT").map_or(true, |v| v != "1"),
                    "{line} (NETJAIL_STRICT=1 turns skips into failures)"
                );
                eprintln!("{line}");
            }
        }
        assert!(build(Plan::Nothing).unwrap().is_none());
    }
}
