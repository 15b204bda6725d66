//! Sandboxes that run as root (invariant 10: a sandbox holds no power outside its network
//! policy, root included).
//!
//! A program that runs with uid 0 keeps, with the network capabilities gone, what uid 0 owns:
//! the kernel's tunables under `/proc/sys` (`kernel.core_pattern` starts a helper outside every
//! confinement; the `net.*` settings change the network of everyone in the namespace), the
//! files the broker reads its decisions from (the hosts file, the resolver configuration,
//! `/etc/netjail`), device nodes (a disk's blocks, input devices, a watchdog). So `netjail
//! run`, [`crate::confine_self()`] and [`crate::sandbox::Sandbox`] refuse to confine a program
//! that would run with uid 0 as its real, effective, saved or filesystem uid, unless their
//! caller allows it explicitly (`--allow-root`, `ConfineSelf::allow_root`,
//! `SandboxBuilder::allow_root`; never a key of a policy, which a client may send). With the
//! permission the sandbox still gets, before its capabilities go, a private mount namespace
//! ([`plan`]):
//!
//! - `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus` (and the other kernel
//!   interfaces of [`KERNEL_PATHS`]) and `/sys` read-only;
//! - the files the broker trusts read-only: [`TRUSTED_FILES`];
//! - the directories above those files bound on themselves, so that they cannot be renamed
//!   away and replaced (a path that is a symbolic link has its directory made read-only);
//! - `nodev` on every mount, and a new `/dev` (a read-only tmpfs) that holds only the
//!   character devices ordinary programs use, the pseudo-terminals, `/dev/shm`, `/dev/mqueue`
//!   and the standard links ([`DEV_NODES`], [`DEV_MOUNTS`]);
//! - a procfs of its own on `/proc` with `hidepid=ptraceable`: `/proc/PID` is there only for
//!   processes the sandbox may ptrace, which Landlock's domain limits to its own, so the files
//!   through which uid 0 changes other processes (`oom_score_adj`, `autogroup`,
//!   `timerslack_ns`, `coredump_filter`...), the broker's among them, are out of its reach;
//!
//! and the capabilities a network sandbox has no use for are dropped
//! (`crate::sys::DROPPED_CAPABILITIES`). What is left, and why, is in `docs/security.md`
//! ("3. Root sandboxes"): uid 0 still owns every root-owned file it can reach (cron tables,
//! service units, shell start-up files).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, DevEntry, DevKind, FreshProc, RootPlan};

/// What the refusal says: why, and what to do.
pub const REFUSAL: &str = "refusing to confine a program that would run as root (uid 0): \
    uid 0 keeps power outside any network policy (kernel settings under /proc/sys, the hosts \
    file the broker resolves names from, device nodes, root-owned files); run it as another \
    user (e.g. `setpriv --reuid=USER --regid=GROUP --init-groups netjail run ...`), or allow \
    root explicitly with --allow-root (ConfineSelf::allow_root, SandboxBuilder::allow_root in \
    the library), which also makes /proc/sys, /sys and the broker's files read-only and \
    leaves no device nodes but the usual ones; see docs/security.md, \"Root sandboxes\"";

/// Kernel interfaces made read-only in a root sandbox, where the kernel has them: the
/// tunables, the magic SysRq trigger, interrupt affinities, bus devices, file system
/// settings, ACPI, SCSI (a write adds or removes a device) and sound settings, and `/sys`.
pub const KERNEL_PATHS: &[&str] = &[
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/sys",
];

/// The files and directories the broker trusts, made read-only in a root sandbox: the hosts
/// file and the resolver configuration name rules are resolved from, the name service
/// switch, the policies, the broker's overlay and sockets (defaults of `netjaild`).
pub const TRUSTED_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/netjail",
    "/var/lib/netjail",
    "/run/netjail",
];

/// The character devices of a root sandbox's `/dev`, where the host has them. `ptmx` is a
/// link to `pts/ptmx`: the kernel finds the pseudo-terminals of a `/dev/ptmx` node next to
/// it, which a bind mount of the node is not.
pub const DEV_NODES: &[&str] = &[
    "null", "zero", "full", "random", "urandom", "tty", "net/tun",
];

/// The file systems mounted in `/dev` that a root sandbox's `/dev` keeps, and whether device
/// nodes in them stay usable (only the pseudo-terminals).
pub const DEV_MOUNTS: &[(&str, bool)] = &[("pts", true), ("shm", false), ("mqueue", false)];

/// Errors preparing a root sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootError {
    /// A path the plan needs cannot be read.
    #[error("preparing the mount namespace of a root sandbox: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether this thread runs as root: one of its real, effective, saved or filesystem uids is
/// 0.
pub fn runs_as_root() -> bool {
    sys::runs_as_root()
}

/// The plan of a root sandbox on this host (see the [module documentation](self)).
///
/// # Errors
/// The working directory or a path of `/dev` cannot be read, or has a NUL byte.
pub fn plan() -> Result<RootPlan, RootError> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path has a NUL byte")
        })
    };
    let mut read_only: Vec<PathBuf> = KERNEL_PATHS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    let mut pinned: Vec<PathBuf> = Vec::new();
    for &file in TRUSTED_FILES {
        let lexical = Path::new(file);
        let Ok(meta) = std::fs::symlink_metadata(lexical) else {
            continue;
        };
        let Ok(canonical) = lexical.canonicalize() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // The link itself can be replaced unless its directory cannot change.
            if let Some(parent) = lexical.parent() {
                read_only.push(parent.to_path_buf());
            }
        }
        read_only.push(canonical.clone());
        for path in [lexical, canonical.as_path()] {
            pinned.extend(
                path.ancestors()
                    .skip(1)
                    .filter(|a| *a != Path::new("/"))
                    .map(Path::to_path_buf),
            );
        }
    }
    dedup_keep_first(&mut read_only);
    // A directory that is read-only anyway needs no pin; shallowest first, so that a pin
    // never hides one made before it.
    pinned.retain(|p| !read_only.iter().any(|r| p.starts_with(r)));
    pinned.sort_by_key(|p| p.components().count());
    dedup_keep_first(&mut pinned);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let plan = RootPlan::new(
        pinned.iter().map(|p| c(p)).collect::<Result<_, _>>()?,
        read_only.iter().map(|p| c(p)).collect::<Result<_, _>>()?,
        dev_entries()?,
        (c(&cwd)?, fresh_proc()),
    )?;
    Ok(plan)
}

/// `PROC_USER_INIT_INO`: the inode of the initial user namespace, fixed by the kernel.
const INITIAL_USER_NAMESPACE: &str = "user:[4026531837]";

/// Whether the root sandbox gets a procfs of its own: always, where there is a `/proc`,
/// except in a user namespace other than the initial one, where the kernel lets only a
/// process whose user namespace owns the pid namespace mount one (a root sandbox started by
/// `unshare -U` keeps the host's `/proc`; docs/security.md, "Limits").
fn fresh_proc() -> FreshProc {
    if !Path::new("/proc/self").exists() {
        return FreshProc::No;
    }
    match std::fs::read_link("/proc/self/ns/user") {
        Ok(ns) if ns.as_os_str() == INITIAL_USER_NAMESPACE => FreshProc::Yes,
        _ => FreshProc::IfPermitted,
    }
}

fn dedup_keep_first(paths: &mut Vec<PathBuf>) {
    let mut seen = std::collections::HashSet::new();
    paths.retain(|p| seen.insert(p.clone()));
}

/// The entries of the new `/dev` that the host's `/dev` has: [`DEV_NODES`] that are
/// character devices or sockets, [`DEV_MOUNTS`] that are mount points, and every symbolic link
/// at the top of `/dev` (`fd`, `stdin`, `log`...), with the directories they need.
fn dev_entries() -> Result<Vec<DevEntry>, std::io::Error> {
    let c = |s: &str| CString::new(s).expect("no NUL in a constant path");
    let dev = Path::new("/dev");
    let Ok(dev_meta) = std::fs::metadata(dev) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for name in DEV_NODES {
        let path = dev.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = meta.file_type();
        if !(kind.is_char_device() || kind.is_socket()) {
            continue;
        }
        if let Some((dir, _)) = name.split_once('/') {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_owned());
                out.push(DevEntry {
                    path: c(&format!("/dev/{dir}")),
                    kind: DevKind::Dir,
                });
            }
        }
        out.push(DevEntry {
            path: c(&format!("/dev/{name}")),
            kind: DevKind::Node,
        });
    }
    for &(name, devices) in DEV_MOUNTS {
        use std::os::unix::fs::MetadataExt;
        let path = dev.join(name);
        // A mount point: another device than /dev's own.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.dev() != dev_meta.dev() => out.push(DevEntry {
                path: c(&format!("/dev/{name}")),
                kind: DevKind::Mount { devices },
            }),
            _ => {}
        }
    }
    if out
        .iter()
        .any(|e| e.path.as_bytes() == b"/dev/pts" && matches!(e.kind, DevKind::Mount { .. }))
    {
        out.push(DevEntry {
            path: c("/dev/ptmx"),
            kind: DevKind::Symlink(c("pts/ptmx")),
        });
    }
    for entry in std::fs::read_dir(dev)? {
        if entry.as_ref().is_ok_and(|e| e.file_name() == "ptmx") {
            continue;
        }
        let entry = entry?;
        if !entry.file_type()?.is_symlink() {
            continue;
        }
        let target = std::fs::read_link(entry.path())?;
        let (Ok(path), Ok(target)) = (
            CString::new(entry.path().as_os_str().as_bytes()),
            CString::new(target.as_os_str().as_bytes()),
        ) else {
            continue;
        };
        if out.len() >= sys::MAX_DEV_ENTRIES {
            break;
        }
        out.push(DevEntry {
            path,
            kind: DevKind::Symlink(target),
        });
    }
    out.truncate(sys::MAX_DEV_ENTRIES);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_protects_the_kernel_and_the_brokers_files() {
        let plan = plan().unwrap();
        let text = format!("{plan:?}");
        for path in ["/proc/sys", "/sys", "/etc/hosts"] {
            if Path::new(path).exists() {
                assert!(
                    text.contains(&format!("{path:?}")),
                    "{path} missing: {text}"
                );
            }
        }
        if Path::new("/dev/null").exists() {
            assert!(text.contains("\"/dev/null\""), "{text}");
        }
        // In the initial user namespace: a procfs of its own, or no start.
        let initial = std::fs::read_link("/proc/self/ns/user")
            .is_ok_and(|ns| ns.as_os_str() == INITIAL_USER_NAMESPACE);
        assert_eq!(text.contains("fresh_proc: Yes"), initial, "{text}");
        // No block device is taken into the new /dev.
        for name in DEV_NODES {
            let path = Path::new("/dev").join(name);
            if let Ok(m) = std::fs::symlink_metadata(&path) {
                assert!(!m.file_type().is_block_device(), "{}", path.display());
            }
        }
    }

    #[test]
    fn refusal_says_why_and_what_to_do() {
        for words in [
            "uid 0",
            "/proc/sys",
            "another",
            "--allow-root",
            "security.md",
        ] {
            assert!(REFUSAL.contains(words), "{words}");
        }
    }
}
