//! Filesystem unix sockets (invariant 3, no confused deputy; invariant 11, faithful names).
//!
//! The path is resolved once, in the caller's root and working directory, with
//! `openat2(RESOLVE_IN_ROOT)` to an `O_PATH` fd, by a thread that has taken the caller's
//! ids, groups and (at most) capabilities; the policy decides on the path that was resolved
//! (symlinks followed), named as the view the sandbox registered in names it (`caller/view.rs`).
//! Permission checks are the caller's, a
//! socket it creates is owned by the caller, and the peer sees the caller's uid and gid
//! (`SO_PEERCRED`; the pid there is the broker's, which no system call can change).
//!
//! - A connect or a send goes to `/proc/self/fd/N`, the very inode decided on. Nothing of
//!   that name is kept: the peer's name the program reads back is the name its server bound.
//! - A bind names the socket, and the kernel keeps the bytes it was given as the socket's
//!   address (`getsockname`, a peer's `getpeername`, `accept`, `recvfrom`, `ss -x`). So the
//!   bind is made with the caller's own `sockaddr_un`, by a thread placed so that the
//!   kernel's walk of those bytes ends in the directory decided on whatever the sandbox
//!   changes meanwhile (a directory swapped for a symlink): in that directory, or in a
//!   scaffold of the path around a clone of its mount (`ops/scaffold.rs`, [`bind`]). A
//!   datagram socket receives from its bind on, so one whose path cannot be made to land so
//!   is refused. Stream and seqpacket sockets may still be bound the old way, on a thread in
//!   the caller's root and working directory: after the bind the broker checks that the
//!   socket's file is the entry of the directory it decided on, and when it is not, the
//!   socket is shut down and the call answered `EPERM`; `listen` decides the file a socket is
//!   bound to again, so such a socket never listens.
//! - Where the broker cannot do that (it may not enter a caller's other root without
//!   `CAP_SYS_CHROOT`, or cannot find a socket's file: neither `CAP_NET_ADMIN` over the
//!   socket's network namespace nor the socket in its own), it binds
//!   `/proc/self/fd/DIR/NAME` on the directory decided on, and the socket's address is that
//!   name (docs/security.md, "Limits").

mod bind;

pub(crate) use bind::bind_path;

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use crate::call::Call;
use crate::caller::{as_caller, Caller};
use crate::ops::decode;
use crate::reply::{errno_of, Reply};

use crate::caller::view::{same_node, View, RULE as RULE_VIEW};
use crate::sys::{self, Become, FileId};

/// The rule of a refusal when a socket's file is not where the decision was made: a bind the
/// kernel made elsewhere, or a `listen` on a socket whose file cannot be found where its name
/// says.
pub(crate) const RULE_BOUND_ELSEWHERE: &str = "unix:bound-elsewhere";

/// `CAP_SYS_CHROOT`.
const CAP_SYS_CHROOT: u32 = 18;

/// `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;

/// What came of an operation on a unix path.
pub(crate) struct PathOutcome {
    /// `None` when resolution failed before the policy could look.
    pub decision: Option<Decision>,
    pub failure: &'static str,
    pub reply: Reply,
    pub endpoint: String,
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

/// The caller's place in the file system, read from `/proc/TID` while it waits in its call.
struct Place<'a> {
    who: Caller,
    root_fd: OwnedFd,
    /// The caller's root as the broker names it.
    root_path: PathBuf,
    /// The caller's working directory (`O_PATH`).
    cwd_fd: OwnedFd,
    /// The caller's working directory as the broker names it.
    cwd_path: PathBuf,
    /// Which view names the nodes the caller reaches.
    naming: Naming<'a>,
}

impl<'a> Place<'a> {
    /// The place of the caller of `call`; a failed outcome for `given` when it cannot be read,
    /// or when nothing names the nodes it reaches (a sandbox that may mount, with no view).
    /// The caller's place for a call on the unix path `path`: with the endpoint as the audit
    /// names it (`unix:PATH`) and the path resolved against the caller's working directory.
    fn for_path(call: &'a Call, path: &Path) -> Result<(Place<'a>, String, PathBuf), PathOutcome> {
        let given = format!("unix:{}", path.display());
        let place = Place::read(call, &given)?;
        match place.wanted(path) {
            Ok(wanted) => Ok((place, given, wanted)),
            Err((why, errno)) => Err(failed(given, why, errno)),
        }
    }

    fn read(call: &'a Call, given: &str) -> Result<Place<'a>, PathOutcome> {
        let who =
            Caller::read(call).map_err(|e| failed(given.into(), "no-identity", errno_of(&e)))?;
        let tid = call.notif.pid;
        let root_link = format!("/proc/{tid}/root");
        let cwd_link = format!("/proc/{tid}/cwd");
        let (root_fd, root_path, cwd_fd, cwd_path, namespace) = match (
            sys::open_dir_path(&root_link),
            fs::read_link(&root_link),
            sys::open_dir_path(&cwd_link),
            fs::read_link(&cwd_link),
            fs::read_link(format!("/proc/{tid}/ns/mnt")),
        ) {
            (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
            (Err(e), ..)
            | (_, Err(e), ..)
            | (_, _, Err(e), ..)
            | (.., Err(e), _)
            | (.., Err(e)) => return Err(failed(given.into(), "no-root", errno_of(&e))),
        };
        // Which view names the node (caller/view.rs): the registered one, seen from the caller's
        // mount namespace or another; without one, the caller's own root, unless the policy
        // lets the sandbox mount (then nothing names a node for sure).
        let naming = match call.sandbox.view.as_ref() {
            Some(v) if v.same_namespace(&namespace) => Naming::RegisteredRoot(v),
            Some(v) => Naming::Registered(v),
            None if call.policy.confinement().namespaces().mount => {
                return Err(refused_view(given.into()))
            }
            None => Naming::CallersRoot,
        };
        Ok(Place {
            who,
            root_fd,
            root_path,
            cwd_fd,
            cwd_path,
            naming,
        })
    }

    /// `path` as it lies under the caller's root: itself when absolute, else under the
    /// working directory.
    fn wanted(&self, path: &Path) -> Result<PathBuf, (&'static str, i32)> {
        if path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        match inside(&self.root_path, &self.cwd_path) {
            Some(cwd) => Ok(cwd.join(path)),
            None => Err(("cwd-outside-root", libc::EPERM)),
        }
    }

    /// The name the policy decides on for `node`, found at `host` (as its mount namespace
    /// names it); a refused or failed outcome for `given` otherwise.
    fn name(&self, node: &OwnedFd, host: &Path, given: &str) -> Result<PathBuf, PathOutcome> {
        match self.naming.name(node, host, &self.root_path) {
            Ok(named) => Ok(named),
            Err(Refusal::View) => Err(refused_view(given.into())),
            Err(Refusal::Failed(why, errno)) => Err(failed(given.into(), why, errno)),
        }
    }
}

/// Whether the path names a socket that exists (connect, send) or one to create (bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathUse {
    Existing,
    Create,
}

/// The last component of `wanted` (checked by [`resolve_parent`]).
fn final_name(wanted: &Path) -> &std::ffi::OsStr {
    let bytes = wanted.as_os_str().as_bytes();
    let start = bytes.iter().rposition(|b| *b == b'/').map_or(0, |s| s + 1);
    std::ffi::OsStr::from_bytes(&bytes[start..])
}

/// Resolves `path` for the caller of `call`, decides `op` on what was resolved, and when the
/// policy allows runs `act` with a `sockaddr_un` naming the very node decided on
/// (`/proc/self/fd/N`, or `/proc/self/fd/DIR/NAME` for a socket to create). Resolution, the
/// decision and `act` all run on a thread that has taken the caller's identity. A socket to
/// create this way is named `/proc/self/fd/DIR/NAME`: binds go through [`bind_path`], which
/// comes here only where it can do no better.
pub(crate) fn act_on_path(
    call: &Call,
    op: Op,
    path: &Path,
    usage: PathUse,
    how: Become,
    act: impl FnOnce(&[u8]) -> Reply + Send,
) -> PathOutcome {
    let (place, given, wanted) = match Place::for_path(call, path) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    if !call.still_valid() {
        return failed(given, "gone", libc::ENOENT);
    }
    let work = || {
        let resolved = match usage {
            PathUse::Existing => resolve_existing(place.root_fd.as_fd(), &wanted),
            PathUse::Create => resolve_parent(place.root_fd.as_fd(), &wanted).and_then(|p| {
                let addr = p.proc_address().ok_or(("unresolved", libc::ENAMETOOLONG))?;
                Ok((p.dir, p.host, addr))
            }),
        };
        let (node, host, addr) = match resolved {
            Ok(r) => r,
            Err((why, errno)) => return failed(given, why, errno),
        };
        let named = match place.name(&node, &host, &given) {
            Ok(named) => named,
            Err(outcome) => return outcome,
        };
        let target_path = match usage {
            PathUse::Existing => named,
            PathUse::Create => named.join(final_name(&wanted)),
        };
        let target = Target::UnixPath(target_path);
        let endpoint = target.to_string();
        // The broker's own sockets are never reached through a call it performs (ops/own.rs).
        if usage == PathUse::Existing && crate::ops::own::is_own_unix(node.as_fd()) {
            return PathOutcome {
                decision: Some(crate::ops::own::refusal()),
                failure: "",
                reply: Reply::Errno(crate::ops::own::ERRNO),
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
    match as_caller(&place.who.identity, how, work) {
        Ok(outcome) => outcome,
        Err(e) => failed(String::new(), "identity", errno_of(&e)),
    }
}

/// How the broker finds the file a unix socket is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finder {
    /// `SIOCUNIXFILE`: the file itself (the broker holds `CAP_NET_ADMIN` over the socket's
    /// network namespace).
    Ioctl,
    /// `sock_diag` in the broker's network namespace: the file's device and inode.
    Diag,
}

impl Finder {
    /// How the file of socket `sock` can be found (it need not be bound yet), if at all.
    fn for_socket(sock: BorrowedFd<'_>) -> Option<Finder> {
        match sys::unix_socket_file(sock) {
            Ok(_) => return Some(Finder::Ioctl),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Some(Finder::Ioctl),
            Err(_) => {}
        }
        sys::unix_diag_file(sock).ok().map(|_| Finder::Diag)
    }

    /// The file `sock` is bound to, `None` when it is bound to no path.
    fn file(self, sock: BorrowedFd<'_>) -> std::io::Result<Option<FileId>> {
        match self {
            Finder::Ioctl => match sys::unix_socket_file(sock) {
                Ok(file) => Ok(Some(sys::stat_fd(file.as_fd())?.id)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
                Err(e) => Err(e),
            },
            Finder::Diag => sys::unix_diag_file(sock),
        }
    }

    /// Whether `sock` is bound to the entry `name` of directory `dir`, and to no other name.
    fn bound_at(self, sock: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &[u8]) -> bool {
        let Ok(Some(file)) = self.file(sock) else {
            return false;
        };
        matches!(sys::stat_entry(dir, name), Ok(e) if e.id == file && e.nlink == 1)
    }
}

/// How a socket bound for the caller gets its name.
#[derive(Debug, Clone, Copy)]
enum Binding {
    /// The caller's own `sockaddr_un`, on a thread in the caller's root (`chroot`: another
    /// root than the broker's) and working directory; then the file is checked with `finder`.
    Own { finder: Finder, chroot: bool },
    /// `/proc/self/fd/DIR/NAME`, where the broker can do no better.
    Broker,
}

impl Binding {
    fn for_socket(sock: BorrowedFd<'_>, caller_root: BorrowedFd<'_>) -> Binding {
        let Some(finder) = Finder::for_socket(sock) else {
            return Binding::Broker;
        };
        let same_root = sys::open_dir_path("/")
            .and_then(|own| sys::same_mount_and_directory(own.as_fd(), caller_root))
            .unwrap_or(false);
        if !same_root && !sys::has_capability(CAP_SYS_CHROOT) {
            return Binding::Broker;
        }
        Binding::Own {
            finder,
            chroot: !same_root,
        }
    }
}

/// The path a unix address names, if it names one (not unnamed, not abstract).
fn path_of(name: &[u8]) -> Option<PathBuf> {
    let path = name.get(2..)?;
    if matches!(path.first(), None | Some(0)) {
        return None;
    }
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&path[..end])))
}

/// Whether unix socket `sock` is bound to a path.
pub(crate) fn bound_to_path(sock: BorrowedFd<'_>) -> bool {
    sys::sockname(sock).is_ok_and(|n| path_of(&n).is_some())
}

/// `listen` on unix socket `sock`, bound to a path (before confinement, or through the
/// broker): decided as a bind of the file the socket is bound to, where it is now, and when
/// allowed, `listen` runs. With `SIOCUNIXFILE` the file is found by itself; with `sock_diag`,
/// by the socket's name resolved as the caller would resolve it now, which must lead to the
/// socket's file. A file with no name or more than one, outside the caller's root, or not
/// where its name leads, is refused (`EPERM`). `None` when the socket is bound to no path,
/// or the broker cannot find its file: nothing to decide.
pub(crate) fn listen_on_path(
    call: &Call,
    sock: BorrowedFd<'_>,
    listen: impl FnOnce() -> Reply,
) -> Option<PathOutcome> {
    let path = path_of(&sys::sockname(sock).ok()?)?;
    let finder = Finder::for_socket(sock)?;
    let given = format!("unix:{}", path.display());
    let place = match Place::read(call, &given) {
        Ok(p) => p,
        Err(outcome) => return Some(outcome),
    };
    let elsewhere = |endpoint: String| PathOutcome {
        decision: Some(crate::reply::refusal(RULE_BOUND_ELSEWHERE, libc::EPERM)),
        failure: "",
        reply: Reply::Errno(libc::EPERM),
        endpoint,
    };
    let found = match finder {
        Finder::Ioctl => found_by_ioctl(&place, sock, &path, &given),
        Finder::Diag => {
            let file = match sys::unix_diag_file(sock) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(failed(given, "unresolved", errno_of(&e))),
            };
            found_by_name(&place, &path, file, &given)
        }
    };
    let found = match found {
        Ok(found) => found,
        Err(outcome) => return Some(outcome),
    };
    let Some(decided) = found else {
        return Some(elsewhere(given));
    };
    let target = Target::UnixPath(decided);
    let endpoint = target.to_string();
    if !call.still_valid() {
        return Some(failed(endpoint, "gone", libc::ENOENT));
    }
    let decision = call.evaluate(&Request {
        op: Op::Bind,
        target,
    });
    let reply = match decision.verdict {
        Verdict::Deny { errno } => Reply::Errno(errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Verdict::Ask => Reply::Errno(libc::EPERM),
        Verdict::Allow => listen(),
    };
    Some(PathOutcome {
        decision: Some(decision),
        failure: "",
        reply,
        endpoint,
    })
}

/// The name the policy decides on for the file `SIOCUNIXFILE` gives for `sock`; `None` when
/// that file has no name or more than one, or its path cannot be read; a failed outcome for
/// `given` when the ioctl fails, a refused or failed one when no view names the file.
///
/// A socket bound on a thread of its own mount namespace (`sys::enter_scaffold`) keeps a
/// mount that left every namespace with that thread, and the path read back of its file is
/// the path in that mount alone: where the path read back does not lead, in the caller's
/// root, to that very file on that very mount, the file is found as `sock_diag` finds it, by
/// the socket's name `path` ([`found_by_name`]).
fn found_by_ioctl(
    place: &Place<'_>,
    sock: BorrowedFd<'_>,
    path: &Path,
    given: &str,
) -> Result<Option<PathBuf>, PathOutcome> {
    let file = match sys::unix_socket_file(sock) {
        Ok(f) => f,
        Err(e) => return Err(failed(given.to_owned(), "unresolved", errno_of(&e))),
    };
    let host = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match (sys::stat_fd(file.as_fd()), host) {
        (Ok(st), Ok(host)) if st.nlink == 1 => {
            let reached = inside(&place.root_path, &host)
                .and_then(|p| {
                    sys::open_in_root(place.root_fd.as_fd(), p.as_os_str().as_bytes()).ok()
                })
                .is_some_and(|there| {
                    sys::same_mount_and_directory(file.as_fd(), there.as_fd()).unwrap_or(false)
                });
            if reached {
                place.name(&file, &host, given).map(Some)
            } else {
                found_by_name(place, path, st.id, given)
            }
        }
        _ => Ok(None),
    }
}

/// The name the policy decides on for `file`, the file `sock_diag` gives for a socket named
/// `path`: `path` resolved now as the caller would resolve it (on a thread with its identity:
/// its search permissions), when it leads to `file` and `file` has no other name; `None`
/// otherwise. A failed outcome for `given` when the caller's working directory lies outside
/// its root or its identity cannot be taken, a refused one when no view names the file.
fn found_by_name(
    place: &Place<'_>,
    path: &Path,
    file: FileId,
    given: &str,
) -> Result<Option<PathBuf>, PathOutcome> {
    let wanted = match place.wanted(path) {
        Ok(w) => w,
        Err((why, errno)) => return Err(failed(given.to_owned(), why, errno)),
    };
    // Resolved as the caller: its search permissions.
    let resolve = || {
        let Ok(p) = resolve_parent(place.root_fd.as_fd(), &wanted) else {
            return Ok(None);
        };
        match sys::stat_entry(p.dir.as_fd(), &p.name) {
            Ok(st) if st.id == file && st.nlink == 1 => p.decided(place, given).map(Some),
            _ => Ok(None),
        }
    };
    match as_caller(&place.who.identity, Become::Full, resolve) {
        Ok(found) => found,
        Err(e) => Err(failed(String::new(), "identity", errno_of(&e))),
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

/// The directory that will hold a new socket, resolved in the caller's root, and the
/// socket's name in it.
struct Parent {
    dir: OwnedFd,
    /// The directory's path, as its mount namespace names it.
    host: PathBuf,
    /// The final component.
    name: Vec<u8>,
}

impl Parent {
    /// `/proc/self/fd/DIR/NAME`: the broker's own name of the new socket, if it fits.
    fn proc_address(&self) -> Option<Vec<u8>> {
        let mut full = format!("/proc/self/fd/{}/", self.dir.as_raw_fd()).into_bytes();
        full.extend_from_slice(&self.name);
        decode::sockaddr_un(&full)
    }

    /// What the policy decides on: the directory's name in the caller's view, and the final
    /// component.
    fn decided(&self, place: &Place<'_>, given: &str) -> Result<PathBuf, PathOutcome> {
        let dir = place.name(&self.dir, &self.host, given)?;
        Ok(dir.join(std::ffi::OsStr::from_bytes(&self.name)))
    }
}

/// The directory that will hold a new socket at `wanted`, resolved in the caller's root.
fn resolve_parent(root_fd: BorrowedFd<'_>, wanted: &Path) -> Result<Parent, (&'static str, i32)> {
    let bytes = wanted.as_os_str().as_bytes();
    let Some(slash) = bytes.iter().rposition(|b| *b == b'/') else {
        return Err(("unresolved", libc::ENOENT));
    };
    let (dir, name) = (&bytes[..slash.max(1)], &bytes[slash + 1..]);
    if name.is_empty() {
        // A trailing slash: the name before it is the one to create; an entry there (a
        // directory, a symlink, even a dangling one) is `EADDRINUSE` as the kernel answers,
        // none is `ENOENT` (the ninth red team's F1).
        return Err(("unresolved", trailing_slash_errno(root_fd, dir)));
    }
    let node = sys::open_in_root(root_fd, dir).map_err(|e| ("unresolved", errno_of(&e)))?;
    // The name to create is looked up in a directory: a file there is `ENOTDIR` (the eighth
    // red team's A4), and `.` or `..` names an entry that exists, which `filename_create`
    // refuses (`EEXIST`, a bind's `EADDRINUSE`).
    let is_dir =
        fs::metadata(format!("/proc/self/fd/{}", node.as_raw_fd())).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Err(("unresolved", libc::ENOTDIR));
    }
    if name == b"." || name == b".." {
        return Err(("exists", libc::EADDRINUSE));
    }
    let host = fs::read_link(format!("/proc/self/fd/{}", node.as_raw_fd()))
        .map_err(|_| ("unresolved", libc::EPERM))?;
    Ok(Parent {
        dir: node,
        host,
        name: name.to_vec(),
    })
}

/// The kernel's answer to a bind at `path/` (`path` without its trailing slashes): the entry
/// exists, unfollowed, `EADDRINUSE`; otherwise `ENOENT`, or the error of its directory.
fn trailing_slash_errno(root_fd: BorrowedFd<'_>, path: &[u8]) -> i32 {
    let trimmed = match path.iter().rposition(|b| *b != b'/') {
        Some(end) => &path[..=end],
        None => return libc::EADDRINUSE, // `/`: the root exists
    };
    let (dir, name): (&[u8], &[u8]) = match trimmed.iter().rposition(|b| *b == b'/') {
        Some(s) => (&trimmed[..s.max(1)], &trimmed[s + 1..]),
        None => (b".", trimmed),
    };
    match sys::open_in_root(root_fd, dir) {
        Ok(parent) => match sys::stat_entry(parent.as_fd(), name) {
            Ok(_) => libc::EADDRINUSE,
            Err(e) => errno_of(&e),
        },
        Err(e) => errno_of(&e),
    }
}

/// How a resolved node gets the name the policy decides on (`caller/view.rs`).
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
        decision: Some(crate::reply::refusal(RULE_VIEW, libc::EPERM)),
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

    #[test]
    fn paths_of_unix_names() {
        let name = |path: &[u8]| {
            let mut v = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
            v.extend_from_slice(path);
            v
        };
        assert_eq!(path_of(&name(b"x.sock\0")), Some(PathBuf::from("x.sock")));
        assert_eq!(path_of(&name(b"/a/b")), Some(PathBuf::from("/a/b")));
        assert_eq!(path_of(&name(b"\0abstract")), None);
        assert_eq!(path_of(&name(b"")), None, "unnamed");
        assert_eq!(path_of(&[1]), None);
    }
}
