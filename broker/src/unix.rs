//! Filesystem unix sockets (invariant 3, no confused deputy).
//!
//! The path is resolved once, in the caller's root and working directory, with
//! `openat2(RESOLVE_IN_ROOT)` to an `O_PATH` fd, by a thread that has taken the caller's
//! ids, groups and (at most) capabilities; the policy decides on the path that was resolved
//! (symlinks followed, inside the caller's root); the broker then connects or sends to
//! `/proc/self/fd/N`, the very inode it decided on, or binds `/proc/self/fd/DIR/NAME`, still
//! as the caller: permission checks are the caller's, a socket it creates is owned by the
//! caller, and the peer sees the caller's uid and gid (`SO_PEERCRED`; the pid there is the
//! broker's, which no system call can change).

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::caller::{as_caller, Caller};
use crate::decode;
use crate::handler::{errno_of, Call, Reply};
use crate::sys::{self, Become};
use crate::view::{same_node, View, RULE as RULE_VIEW};

/// What came of an operation on a unix path.
pub(crate) struct PathOutcome {
    /// `None` when resolution failed before the policy could look.
    pub decision: Option<Decision>,
    pub failure: &'static str,
    pub reply: Reply,
    pub endpoint: String,
}

/// Whether the path names a socket that exists (connect, send) or one to create (bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathUse {
    Existing,
    Create,
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

/// Resolves `path` for the caller of `call`, decides `op` on what was resolved, and when the
/// policy allows runs `act` with a `sockaddr_un` naming the very node decided on
/// (`/proc/self/fd/N`, or `/proc/self/fd/DIR/NAME` for a socket to create). Resolution, the
/// decision and `act` all run on a thread that has taken the caller's identity.
pub(crate) fn act_on_path(
    call: &Call,
    op: Op,
    path: &Path,
    usage: PathUse,
    how: Become,
    act: impl FnOnce(&[u8]) -> Reply + Send,
) -> PathOutcome {
    let given = format!("unix:{}", path.display());
    let tid = call.notif.pid;
    let who = match Caller::read(call) {
        Ok(c) => c,
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
    // Which view names the node (view.rs): the registered one, seen from the caller's mount
    // namespace or another; without one, the caller's own root, unless the policy lets the
    // sandbox mount (then nothing names a node for sure).
    let view = call.sandbox.view.as_ref();
    let namespace = match fs::read_link(format!("/proc/{tid}/ns/mnt")) {
        Ok(ns) => ns,
        Err(e) => return failed(given, "no-root", errno_of(&e)),
    };
    let naming = match view {
        Some(v) if v.same_namespace(&namespace) => Naming::RegisteredRoot(v),
        Some(v) => Naming::Registered(v),
        None if call.policy.confinement().namespaces().mount => {
            return refused_view(given);
        }
        None => Naming::CallersRoot,
    };
    if !call.still_valid() {
        return failed(given, "gone", libc::ENOENT);
    }
    let work = || {
        let resolved = match usage {
            PathUse::Existing => resolve_existing(root_fd.as_fd(), &wanted),
            PathUse::Create => resolve_parent(root_fd.as_fd(), &wanted),
        };
        let (node, host, addr) = match resolved {
            Ok(r) => r,
            Err((why, errno)) => return failed(given, why, errno),
        };
        let named = match naming.name(&node, &host, &root_path) {
            Ok(named) => named,
            Err(Refusal::View) => return refused_view(given),
            Err(Refusal::Failed(why, errno)) => return failed(given, why, errno),
        };
        let target_path = match usage {
            PathUse::Existing => named,
            PathUse::Create => named.join(final_name(&wanted)),
        };
        let target = Target::UnixPath(target_path);
        let endpoint = target.to_string();
        // The broker's own sockets are never reached through a call it performs (own.rs).
        if usage == PathUse::Existing && crate::own::is_own_unix(node.as_fd()) {
            return PathOutcome {
                decision: Some(crate::own::refusal()),
                failure: "",
                reply: Reply::Errno(crate::own::ERRNO),
                endpoint,
            };
        }
        let decision = call.evaluate(&Request { op, target });
        let mut failure = "";
        let reply = match decision.verdict {
            Verdict::Deny { errno } => Reply::Errno(errno),
            // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
            Verdict::Ask => Reply::Errno(libc::EPERM),
            Verdict::Allow => match (usage, sys::is_socket(node.as_fd())) {
                (PathUse::Existing, Ok(true)) if linked_elsewhere(node.as_fd()) => {
                    failure = "linked-socket";
                    Reply::Errno(libc::EPERM)
                }
                (PathUse::Create, _) | (PathUse::Existing, Ok(true)) => act(&addr),
                // What the kernel says for a path that is not a socket.
                (PathUse::Existing, Ok(false)) => Reply::Errno(libc::ECONNREFUSED),
                (PathUse::Existing, Err(e)) => Reply::Errno(errno_of(&e)),
            },
        };
        PathOutcome {
            decision: Some(decision),
            failure,
            reply,
            endpoint,
        }
    };
    match as_caller(&who.identity, how, work) {
        Ok(outcome) => outcome,
        Err(e) => failed(String::new(), "identity", errno_of(&e)),
    }
}

/// Whether the socket file `node` has more than one name. The policy decides on the name the
/// caller gave, and a sandbox that may write a directory an allowed name lies in could give
/// another socket that name with `link` (F7): a socket file with a second name is refused.
/// (A server that binds a socket makes one name; `rename`, which keeps one name, is a
/// documented limit.)
fn linked_elsewhere(node: BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/self/fd/{}", node.as_raw_fd())).map_or(true, |m| m.nlink() > 1)
}

/// A resolved node: its fd, its path as its own mount namespace names it (`/proc/self/fd/N`
/// read back), and the address that reaches it.
type Resolved = (OwnedFd, PathBuf, Vec<u8>);

/// The existing node at `wanted` in the caller's root: its fd, its path, and the address of
/// its `/proc/self/fd/N`.
fn resolve_existing(
    root_fd: BorrowedFd<'_>,
    wanted: &Path,
) -> Result<Resolved, (&'static str, i32)> {
    let node = sys::open_in_root(root_fd, wanted.as_os_str().as_bytes())
        .map_err(|e| ("unresolved", errno_of(&e)))?;
    let proc_path = format!("/proc/self/fd/{}", node.as_raw_fd());
    let host = fs::read_link(&proc_path).map_err(|_| ("unresolved", libc::EPERM))?;
    let addr = decode::sockaddr_un(proc_path.as_bytes()).ok_or(("unresolved", libc::EINVAL))?;
    Ok((node, host, addr))
}

/// The directory that will hold a new socket at `wanted`, resolved in the caller's root: its
/// fd and path, and the address `/proc/self/fd/DIR/NAME`. The path decided on is that
/// directory's and the final name ([`final_name`]).
fn resolve_parent(root_fd: BorrowedFd<'_>, wanted: &Path) -> Result<Resolved, (&'static str, i32)> {
    let bytes = wanted.as_os_str().as_bytes();
    let Some(slash) = bytes.iter().rposition(|b| *b == b'/') else {
        return Err(("unresolved", libc::ENOENT));
    };
    let (dir, name) = (&bytes[..slash.max(1)], &bytes[slash + 1..]);
    if name.is_empty() || name == b"." || name == b".." {
        return Err(("unresolved", libc::ENOENT));
    }
    let node = sys::open_in_root(root_fd, dir).map_err(|e| ("unresolved", errno_of(&e)))?;
    let proc_path = format!("/proc/self/fd/{}", node.as_raw_fd());
    let host = fs::read_link(&proc_path).map_err(|_| ("unresolved", libc::EPERM))?;
    let mut full = proc_path.into_bytes();
    full.push(b'/');
    full.extend_from_slice(name);
    let addr = decode::sockaddr_un(&full).ok_or(("unresolved", libc::ENAMETOOLONG))?;
    Ok((node, host, addr))
}

/// The last component of `wanted` (checked by [`resolve_parent`]).
fn final_name(wanted: &Path) -> &std::ffi::OsStr {
    let bytes = wanted.as_os_str().as_bytes();
    let start = bytes.iter().rposition(|b| *b == b'/').map_or(0, |s| s + 1);
    std::ffi::OsStr::from_bytes(&bytes[start..])
}

/// How a resolved node gets the name the policy decides on (`view.rs`).
enum Naming<'a> {
    /// No registered view: its path under the caller's root.
    CallersRoot,
    /// The caller shares the registered mount namespace: its path under the registered root.
    RegisteredRoot(&'a View),
    /// The caller is in another mount namespace: its path there, resolved again in the
    /// registered view, must reach the same node, which is named by its path there.
    Registered(&'a View),
}

enum Refusal {
    /// The node is not what its name reaches in the registered view.
    View,
    Failed(&'static str, i32),
}

impl Naming<'_> {
    /// The name of `node` (at `host`, as its mount namespace names it), `caller_root` being
    /// the caller's root there.
    fn name(&self, node: &OwnedFd, host: &Path, caller_root: &Path) -> Result<PathBuf, Refusal> {
        let root_of = |view: &View| {
            view.root_path()
                .map_err(|e| Refusal::Failed("no-root", errno_of(&e)))
        };
        match self {
            Naming::CallersRoot => {
                inside(caller_root, host).ok_or(Refusal::Failed("unresolved", libc::EPERM))
            }
            Naming::RegisteredRoot(view) => inside(&root_of(view)?, host).ok_or(Refusal::View),
            Naming::Registered(view) => {
                let as_caller = inside(caller_root, host).ok_or(Refusal::View)?;
                let there = sys::open_in_root(view.root(), as_caller.as_os_str().as_bytes())
                    .map_err(|_| Refusal::View)?;
                if !same_node(node.as_fd(), there.as_fd()) {
                    return Err(Refusal::View);
                }
                let host = fs::read_link(format!("/proc/self/fd/{}", there.as_raw_fd()))
                    .map_err(|_| Refusal::View)?;
                inside(&root_of(view)?, &host).ok_or(Refusal::View)
            }
        }
    }
}

/// A unix path call refused because the node is not what its name reaches in the view the
/// sandbox registered in.
fn refused_view(endpoint: String) -> PathOutcome {
    PathOutcome {
        decision: Some(crate::limits::refusal(RULE_VIEW, libc::EPERM)),
        failure: "",
        reply: Reply::Errno(libc::EPERM),
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
