//! The view of the file system a sandbox registered in: its mount namespace and its root,
//! taken when it registers, in which the broker names the unix sockets its callers reach
//! (invariant 3).
//!
//! A unix path rule names a socket by a path. Which socket a path reaches depends on the
//! mounts and the root of the process that resolves it, and a sandbox may change its own:
//! `chroot` (with `CAP_SYS_CHROOT`, which a root sandbox keeps and any sandbox holds in a user
//! namespace of its making) lets it present a socket under any tail of its path, and a mount
//! namespace of its own (`namespaces = ["mount"]`) under any name at all, by a bind mount
//! (`rt_a_userns_bind_mount_reaches_unlisted_unix_socket`). So the broker resolves the path
//! as the caller does (that is the node the kernel would reach), and names that node as the
//! sandbox's registered view names it:
//!
//! - a caller in the registered mount namespace sees the same mounts (the filter refuses the
//!   mount calls unless the policy grants `"mount"`); its root may be a `chroot` below the
//!   registered one, so the node is named by its path under the **registered** root (a node
//!   outside it is refused);
//! - a caller in another mount namespace (only with `"mount"` granted) may see other mounts:
//!   the path it named is resolved again in the registered view, the two must reach the very
//!   same node (device and inode), and the node is named by its path there. Otherwise the
//!   call is refused (`EPERM`, rule `mount-view`).

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// The audit rule of a unix path call refused because the node it reaches is not the one
/// its name reaches in the view the sandbox registered in.
pub(crate) const RULE: &str = "mount-view";

/// A sandbox's registered view.
#[derive(Debug)]
pub(crate) struct View {
    /// `/proc/PID/ns/mnt` of the registered process (`mnt:[INODE]`).
    mount_namespace: PathBuf,
    /// Its root directory (`O_PATH`), which keeps that namespace's mounts in sight.
    root: OwnedFd,
}

impl View {
    /// The view of process `pid` now (as the broker's pid namespace names it), or `None` when
    /// it cannot be read (the process is gone, or not visible here).
    pub(crate) fn of_process(pid: i32) -> Option<View> {
        if pid <= 0 {
            return None;
        }
        let taken = (|| -> io::Result<View> {
            let root = sys::open_dir_path(&format!("/proc/{pid}/root"))?;
            let mount_namespace = fs::read_link(format!("/proc/{pid}/ns/mnt"))?;
            Ok(View {
                mount_namespace,
                root,
            })
        })();
        match taken {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::debug!(pid, error = %e, "no view of the registering process");
                None
            }
        }
    }

    /// Whether the caller whose mount namespace link reads `namespace` shares the view's.
    pub(crate) fn same_namespace(&self, namespace: &Path) -> bool {
        self.mount_namespace == namespace
    }

    /// The registered root's path, as its own mount namespace names it.
    pub(crate) fn root_path(&self) -> io::Result<PathBuf> {
        fs::read_link(format!("/proc/self/fd/{}", self.root.as_raw_fd()))
    }

    /// The registered root.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// Whether two fds (`O_PATH` included) name the same node.
pub(crate) fn same_node(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> bool {
    let stat = |fd: BorrowedFd<'_>| fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    match (stat(a), stat(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_processs_view() {
        let view = View::of_process(std::process::id() as i32).unwrap();
        let ns = fs::read_link("/proc/self/ns/mnt").unwrap();
        assert!(view.same_namespace(&ns));
        assert_eq!(view.root_path().unwrap(), PathBuf::from("/"));
        assert!(View::of_process(0).is_none());
        assert!(View::of_process(i32::MAX).is_none());
        let a = sys::open_dir_path("/tmp").unwrap();
        let b = sys::open_in_root(view.root(), b"/tmp").unwrap();
        let c = sys::open_dir_path("/").unwrap();
        assert!(same_node(a.as_fd(), b.as_fd()));
        assert!(!same_node(a.as_fd(), c.as_fd()));
    }
}
