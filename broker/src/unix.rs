//! Filesystem unix sockets (invariant 3, no confused deputy).
//!
//! The path is resolved once, in the caller's root and working directory, with
//! `openat2(RESOLVE_IN_ROOT)` to an `O_PATH` fd, by a thread that has taken the caller's
//! fsuid, fsgid and groups; the policy decides on the path that was resolved (symlinks
//! followed, inside the caller's root); the broker then connects to `/proc/self/fd/N`, the very
//! inode it decided on, still with the caller's credentials for the permission check.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::decode;
use crate::handler::{errno_of, Call, Reply};
use crate::sys;

/// What came of a path connect.
pub(crate) struct PathOutcome {
    /// `None` when resolution failed before the policy could look.
    pub decision: Option<Decision>,
    pub failure: &'static str,
    pub reply: Reply,
    pub endpoint: String,
}

/// Credentials the kernel would check the caller's own `connect` with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FsIdentity {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
}

fn read_identity(tid: u32) -> std::io::Result<FsIdentity> {
    let status = fs::read_to_string(format!("/proc/{tid}/status"))?;
    parse_identity(&status).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))
}

fn parse_identity(status: &str) -> Option<FsIdentity> {
    let mut fsuid = None;
    let mut fsgid = None;
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            fsuid = rest.split_whitespace().nth(3)?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Gid:") {
            fsgid = rest.split_whitespace().nth(3)?.parse().ok();
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
        }
    }
    Some(FsIdentity {
        fsuid: fsuid?,
        fsgid: fsgid?,
        groups,
    })
}

/// `inner` seen from inside `root` (both as the broker sees them), or `None` when it lies
/// outside.
fn inside(root: &Path, inner: &Path) -> Option<PathBuf> {
    if root == Path::new("/") {
        return Some(inner.to_path_buf());
    }
    let rest = inner.strip_prefix(root).ok()?;
    Some(Path::new("/").join(rest))
}

/// Resolves `path` for the caller of `call`, decides, and connects `sock` when allowed.
pub(crate) fn connect_path(call: &Call, sock: BorrowedFd<'_>, path: &Path) -> PathOutcome {
    let given = format!("unix:{}", path.display());
    let tid = call.notif.pid;
    let identity = match read_identity(tid) {
        Ok(i) => i,
        Err(e) => return failed(given, "no-identity", errno_of(&e)),
    };
    let root_link = format!("/proc/{tid}/root");
    let (root_fd, root_path, cwd_path) = match (
        sys::open_dir_path(&root_link),
        fs::read_link(&root_link),
        fs::read_link(format!("/proc/{tid}/cwd")),
    ) {
        (Ok(fd), Ok(r), Ok(c)) => (fd, r, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return failed(given, "no-root", errno_of(&e))
        }
    };
    let wanted = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match inside(&root_path, &cwd_path) {
            Some(cwd) => cwd.join(path),
            None => return failed(given, "cwd-outside-root", libc::EPERM),
        }
    };
    if !call.still_valid() {
        return failed(given, "gone", libc::ENOENT);
    }
    let policy = &call.sandbox.policy;
    // A thread of its own: its fs identity changes and it exits afterwards.
    std::thread::scope(|s| {
        s.spawn(|| {
            resolve_decide_connect(
                &identity,
                root_fd.as_fd(),
                &root_path,
                &wanted,
                sock,
                policy,
                given,
            )
        })
        .join()
        .unwrap_or_else(|_| failed(String::new(), "internal-error", libc::EPERM))
    })
}

fn resolve_decide_connect(
    identity: &FsIdentity,
    root_fd: BorrowedFd<'_>,
    root_path: &Path,
    wanted: &Path,
    sock: BorrowedFd<'_>,
    policy: &netjail_policy::Policy,
    given: String,
) -> PathOutcome {
    if let Err(e) = sys::become_fs_identity(identity.fsuid, identity.fsgid, &identity.groups) {
        return failed(given, "identity", errno_of(&e));
    }
    let node = match sys::open_in_root(root_fd, wanted.as_os_str().as_bytes()) {
        Ok(fd) => fd,
        Err(e) => return failed(given, "unresolved", errno_of(&e)),
    };
    let proc_path = format!("/proc/self/fd/{}", node.as_raw_fd());
    let resolved = match fs::read_link(&proc_path)
        .ok()
        .and_then(|host| inside(root_path, &host))
    {
        Some(p) => p,
        None => return failed(given, "unresolved", libc::EPERM),
    };
    let target = Target::UnixPath(resolved);
    let endpoint = target.to_string();
    let decision = policy.evaluate(&Request {
        op: Op::Connect,
        target,
    });
    let reply = match decision.verdict {
        Verdict::Deny { errno } => Reply::Errno(errno),
        Verdict::Allow => match sys::is_socket(node.as_fd()) {
            Ok(true) => match decode::sockaddr_un(proc_path.as_bytes()) {
                Some(addr) => match sys::connect_raw(sock, &addr) {
                    Ok(()) => Reply::Value(0),
                    Err(e) => Reply::Errno(errno_of(&e)),
                },
                None => Reply::Errno(libc::EINVAL),
            },
            // What the kernel says for a path that is not a socket.
            Ok(false) => Reply::Errno(libc::ECONNREFUSED),
            Err(e) => Reply::Errno(errno_of(&e)),
        },
    };
    PathOutcome {
        decision: Some(decision),
        failure: "",
        reply,
        endpoint,
    }
}

fn failed(endpoint: String, why: &'static str, errno: i32) -> PathOutcome {
    PathOutcome {
        decision: None,
        failure: why,
        reply: Reply::Errno(errno),
        endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_from_status() {
        let status =
            "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t4 24 27 \n";
        assert_eq!(
            parse_identity(status),
            Some(FsIdentity {
                fsuid: 1003,
                fsgid: 23,
                groups: vec![4, 24, 27]
            })
        );
        assert_eq!(parse_identity("Uid:\t1\n"), None);
    }

    #[test]
    fn paths_inside_a_root() {
        assert_eq!(
            inside(Path::new("/"), Path::new("/tmp/a")),
            Some(PathBuf::from("/tmp/a"))
        );
        assert_eq!(
            inside(Path::new("/srv/c1"), Path::new("/srv/c1/run/x.sock")),
            Some(PathBuf::from("/run/x.sock"))
        );
        assert_eq!(
            inside(Path::new("/srv/c1"), Path::new("/srv/c10/run")),
            None
        );
        assert_eq!(inside(Path::new("/srv/c1"), Path::new("/etc")), None);
    }
}
