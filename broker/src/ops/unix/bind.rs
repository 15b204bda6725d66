//! A unix bind with the program's own name (`ops/unix` says what is decided on): where the
//! kernel's walk of the program's bytes is made to end in the directory decided on
//! (`ops/scaffold.rs`), and the check of where the socket's file landed.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use netjail_policy::{Decision, Op, Request, Target, Verdict};

use super::{
    act_on_path, failed, inside, resolve_parent, Binding, Finder, Parent, PathOutcome, PathUse,
    Place, CAP_SYS_ADMIN, CAP_SYS_CHROOT, RULE_BOUND_ELSEWHERE,
};
use crate::call::Call;
use crate::caller::{as_caller, as_caller_at, as_caller_placed, Directories};
use crate::ops::scaffold::{self, Layout};
use crate::reply::{errno_of, Reply};
use crate::sys::{self, Become};

/// The rule of a refused datagram bind whose path the broker cannot make land in the
/// directory decided on by construction: it would look a name up in that directory before
/// its final component (`/d/x/../s`; `ops/scaffold.rs`).
pub(crate) const RULE_NOT_BUILDABLE: &str = "unix:path-not-buildable";

/// The rule of a refused datagram bind that needs a scaffold in a user namespace, where the
/// system gives the broker none (`user.max_user_namespaces`, or the broker's process could
/// not make one while it was dumpable: `sys::prepare_user_namespace`).
pub(crate) const RULE_NO_USER_NAMESPACE: &str = "unix:no-user-namespace";

/// The rule of a refused datagram bind whose decided directory's mount a broker without
/// `CAP_SYS_ADMIN` cannot clone (an unbindable mount, `MS_UNBINDABLE`).
pub(crate) const RULE_NOT_CLONABLE: &str = "unix:directory-not-clonable";

/// The rule of a refused bind whose decided directory was no longer at its path, with no
/// symlink on the way, when a broker without `CAP_SYS_ADMIN` looked for it again.
pub(crate) const RULE_DIRECTORY_MOVED: &str = "unix:directory-moved";

/// Resolves the directory of `path`, the name of a socket to create, for the caller of
/// `call`, decides a bind on that directory's resolved path and the final name, and when the
/// policy allows binds `sock`: to the caller's own bytes `own`, walked into the directory
/// decided on by construction ([`Placement`]), or where the broker cannot find the socket's
/// file afterwards or enter the caller's root, to `/proc/self/fd/DIR/NAME`. Resolution and
/// the decision run on one thread that has taken the caller's whole identity, umask included,
/// the bind on another (or in a child of its). `bind` is given the bind to perform, and
/// returns what came of it (it counts the bind, say).
///
/// When the bind with the caller's bytes succeeded, the socket's file must be the entry of
/// the directory decided on; otherwise the socket is shut down and the answer is `EPERM`.
pub(crate) fn bind_path(
    call: &Call,
    path: &Path,
    own: &[u8],
    sock: BorrowedFd<'_>,
    bind: impl FnOnce(&mut dyn FnMut() -> Reply) -> Reply + Send,
) -> PathOutcome {
    let (place, given, wanted) = match Place::for_path(call, path) {
        Ok(read) => read,
        Err(outcome) => return outcome,
    };
    let (finder, chroot) = match Binding::for_socket(sock, place.root_fd.as_fd()) {
        Binding::Own { finder, chroot } => (finder, chroot),
        Binding::Broker => {
            return act_on_path(call, Op::Bind, path, PathUse::Create, Become::Full, |a| {
                bind(&mut || bind_raw(sock, a))
            })
        }
    };
    let placement = match Placement::choose(call, &place, path, sock, chroot) {
        Ok(p) => p,
        Err((why, errno)) => return failed(given, why, errno),
    };
    if !call.still_valid() {
        return failed(given, "gone", libc::ENOENT);
    }
    let (parent, endpoint, mut decision) = match decide_parent(call, &place, &wanted, &given) {
        Ok(decided) => decided,
        Err(outcome) => return outcome,
    };
    let mut failure = "";
    let reply = match (&decision.verdict, placement) {
        (Verdict::Deny { errno }, _) => Reply::Errno(*errno),
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        (Verdict::Ask, _) => Reply::Errno(libc::EPERM),
        (Verdict::Allow, Placement::Refused(rule)) => {
            decision = crate::reply::refusal(rule, libc::EPERM);
            Reply::Errno(libc::EPERM)
        }
        (Verdict::Allow, placement) => {
            let bound = bind_own_name(&place, finder, &placement, sock, own, &parent, bind);
            if let Some(rule) = bound.refused {
                decision = crate::reply::refusal(rule, libc::EPERM);
            }
            failure = bound.failure;
            bound.reply
        }
    };
    PathOutcome {
        decision: Some(decision),
        failure,
        reply,
        endpoint,
    }
}

/// Resolves the directory of `wanted`, the name of a socket to create, and decides a bind on
/// that directory's resolved path and the final name, on a thread that has taken the caller's
/// whole identity, umask included: the directory, the endpoint decided on and the decision;
/// a refused or failed outcome for `given` otherwise.
fn decide_parent(
    call: &Call,
    place: &Place<'_>,
    wanted: &Path,
    given: &str,
) -> Result<(Parent, String, Decision), PathOutcome> {
    let decide = || {
        let parent = match resolve_parent(place.root_fd.as_fd(), wanted) {
            Ok(p) => p,
            Err((why, errno)) => return Err(failed(given.to_owned(), why, errno)),
        };
        let target = Target::UnixPath(parent.decided(place, given)?);
        let endpoint = target.to_string();
        let decision = call.evaluate(&Request {
            op: Op::Bind,
            target,
        });
        Ok((parent, endpoint, decision))
    };
    match as_caller(&place.who.identity, Become::Full, decide) {
        Ok(decided) => decided,
        Err(e) => Err(failed(String::new(), "identity", errno_of(&e))),
    }
}

/// Where the bind with the caller's own bytes is made, so that the kernel's walk of them ends
/// in the directory decided on (`ops/scaffold.rs`).
enum Placement {
    /// On a thread in the caller's root (`chroot`: another than the broker's) and working
    /// directory, checked afterwards: a stream or seqpacket socket whose path has no layout,
    /// or that needs a scaffold the broker cannot make on a thread (its `listen` decides its
    /// file again).
    Caller { chroot: bool },
    /// On a thread whose working directory is the directory decided on, and its root too with
    /// `chroot` (a path that starts at the caller's root, another than the broker's).
    Directory { chroot: bool },
    /// On a thread in a scaffold of its own mount namespace (`CAP_SYS_ADMIN`), made in the
    /// caller's mount namespace (`/proc/TID/ns/mnt`).
    Scaffold { layout: Layout, mnt_ns: OwnedFd },
    /// In a forked child of the broker's user namespace, in a scaffold (no `CAP_SYS_ADMIN`).
    Child {
        layout: Layout,
        userns: BorrowedFd<'static>,
    },
    /// Not made: a datagram socket receives at its name from the kernel's bind on, so a bind
    /// that could land elsewhere than decided is never made (rt5 E1).
    Refused(&'static str),
}

impl Placement {
    /// Where a bind of `sock` to `path` is made, for the caller at `place` (`chroot`: its root
    /// is not the broker's); the failure and its errno where it cannot be found out.
    fn choose(
        call: &Call,
        place: &Place<'_>,
        path: &Path,
        sock: BorrowedFd<'_>,
        chroot: bool,
    ) -> Result<Placement, (&'static str, i32)> {
        let datagram = sys::socket_kind(sock)
            .map_err(|e| ("socket-kind", errno_of(&e)))?
            .sock_type
            == libc::SOCK_DGRAM;
        let cwd = inside(&place.root_path, &place.cwd_path).unwrap_or_default();
        let layout = scaffold::layout(cwd.as_os_str().as_bytes(), path.as_os_str().as_bytes());
        let privileged = sys::has_capability(CAP_SYS_ADMIN) && sys::has_capability(CAP_SYS_CHROOT);
        Ok(match layout {
            None if datagram => Placement::Refused(RULE_NOT_BUILDABLE),
            None => Placement::Caller { chroot },
            Some(Layout::InDirectory { root }) => Placement::Directory {
                chroot: root && chroot,
            },
            Some(layout) if privileged => {
                let ns = fs::File::open(format!("/proc/{}/ns/mnt", call.notif.pid))
                    .map_err(|e| ("no-root", errno_of(&e)))?;
                Placement::Scaffold {
                    layout,
                    mnt_ns: ns.into(),
                }
            }
            Some(_) if !datagram => Placement::Caller { chroot },
            Some(layout) => match sys::user_namespace() {
                Ok(userns) => Placement::Child { layout, userns },
                Err(errno) => {
                    tracing::debug!(errno, "no user namespace for a datagram bind's scaffold");
                    Placement::Refused(RULE_NO_USER_NAMESPACE)
                }
            },
        })
    }
}

/// What came of a bind with the caller's own name: the reply, the rule of a refusal (the
/// decision is then that refusal), and a failure of the broker's.
struct Bound {
    reply: Reply,
    refused: Option<&'static str>,
    failure: &'static str,
}

/// Binds `sock` to the caller's own bytes `own` through `bind`, placed as `placement` says
/// with the caller's identity, then checks with `finder` that the socket's file is the entry
/// of `parent`, the directory decided on: when it is not, the socket is shut down and the
/// answer is `EPERM` (rule `unix:bound-elsewhere`).
fn bind_own_name(
    place: &Place<'_>,
    finder: Finder,
    placement: &Placement,
    sock: BorrowedFd<'_>,
    own: &[u8],
    parent: &Parent,
    bind: impl FnOnce(&mut dyn FnMut() -> Reply) -> Reply,
) -> Bound {
    let mut refused = None;
    let mut failure = "";
    let reply = bind(&mut || {
        let bound = match placed_bind(place, placement, sock, own, parent) {
            Ok(bound) => bound,
            Err(e) => return Reply::Errno(errno_of(&e)),
        };
        match bound {
            Placed::Bound(Reply::Value(_))
                if !finder.bound_at(sock, parent.dir.as_fd(), &parent.name) =>
            {
                // The kernel made the socket's file elsewhere than in the directory decided
                // on (a component of the path changed in between, where the walk is the
                // caller's), or it has another name already. A bound socket cannot be
                // unbound: shut down, nothing can connect or send to it, and its `listen`
                // finds it bound elsewhere.
                let _ = sys::shutdown_both(sock.as_raw_fd());
                refused = Some(RULE_BOUND_ELSEWHERE);
                Reply::Errno(libc::EPERM)
            }
            Placed::Bound(reply) => reply,
            Placed::Refused(rule) => {
                refused = Some(rule);
                Reply::Errno(libc::EPERM)
            }
            Placed::Failed(why, errno) => {
                failure = why;
                Reply::Errno(errno)
            }
        }
    });
    Bound {
        reply,
        refused,
        failure,
    }
}

/// What came of a placed bind: the kernel's answer to it, or no bind at all (refused, with
/// the rule; failed, with why and the errno).
enum Placed {
    Bound(Reply),
    Refused(&'static str),
    Failed(&'static str, i32),
}

/// The bind of [`bind_own_name`], placed; `Err` when the caller's identity cannot be taken
/// or the thread cannot be placed.
fn placed_bind(
    place: &Place<'_>,
    placement: &Placement,
    sock: BorrowedFd<'_>,
    own: &[u8],
    parent: &Parent,
) -> std::io::Result<Placed> {
    let identity = &place.who.identity;
    let work = || Placed::Bound(bind_raw(sock, own));
    match placement {
        Placement::Caller { chroot } => {
            let dirs = Directories {
                root: place.root_fd.as_fd(),
                cwd: place.cwd_fd.as_fd(),
                chroot: *chroot,
            };
            as_caller_at(identity, Become::Full, &dirs, work)
        }
        Placement::Directory { chroot } => {
            let enter = || sys::enter_directory(parent.dir.as_fd(), *chroot);
            as_caller_placed(identity, Become::Full, enter, work)
        }
        Placement::Scaffold {
            layout:
                Layout::Scaffold {
                    dirs,
                    cwd,
                    parent: at,
                },
            mnt_ns,
        } => {
            let ns = mnt_ns.as_fd();
            let enter = || sys::enter_scaffold(ns, parent.dir.as_fd(), dirs, cwd, at);
            as_caller_placed(identity, Become::Full, enter, work)
        }
        Placement::Child {
            layout:
                Layout::Scaffold {
                    dirs,
                    cwd,
                    parent: at,
                },
            userns,
        } => {
            let dir_id = sys::stat_fd(parent.dir.as_fd())?.id;
            let child = sys::ChildBind {
                userns: *userns,
                dir_path: parent.host.as_os_str().as_bytes(),
                dir_id,
                dirs,
                cwd,
                parent: at,
                sock,
                addr: own,
            };
            as_caller(identity, Become::Full, || child_bind(&child))
        }
        // Never: a layout that stays in the directory is placed there, and a refusal binds
        // nothing.
        Placement::Scaffold { .. } | Placement::Child { .. } | Placement::Refused(_) => {
            Ok(Placed::Failed("no-scaffold", libc::EPERM))
        }
    }
}

/// [`sys::bind_in_child`], its failures told apart: the decided directory moved (the sandbox
/// can cause it), its mount cannot be cloned, or there is no user namespace to enter refuse
/// the bind with a rule of their own; the kernel's answer to the bind is the reply.
fn child_bind(child: &sys::ChildBind<'_>) -> Placed {
    match sys::bind_in_child(child) {
        Ok(()) => Placed::Bound(Reply::Value(0)),
        Err((sys::ChildStep::Bind, errno)) => Placed::Bound(Reply::Errno(errno)),
        Err((sys::ChildStep::Moved, _)) => Placed::Refused(RULE_DIRECTORY_MOVED),
        Err((sys::ChildStep::Clone, libc::EINVAL)) => Placed::Refused(RULE_NOT_CLONABLE),
        Err((sys::ChildStep::Enter, libc::EPERM)) => Placed::Refused(RULE_NO_USER_NAMESPACE),
        Err((_, errno)) => Placed::Failed("scaffold", errno),
    }
}

/// `bind(sock, addr)`.
fn bind_raw(sock: BorrowedFd<'_>, addr: &[u8]) -> Reply {
    match sys::bind_raw(sock, addr) {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(errno_of(&e)),
    }
}
