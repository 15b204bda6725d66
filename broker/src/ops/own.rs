//! The broker's own sockets (invariant 3): the registration, control and OCI sockets and the
//! metrics port serve the people and programs that run sandboxes, never the sandboxes.
//!
//! Two walls keep a sandbox out:
//!
//! - A call the broker performs for a sandbox is refused before it is made when it would
//!   reach one of these sockets: a unix path connect or send whose resolved node is a socket
//!   file the broker bound or was handed ([`is_own_unix`]), a TCP connect (or Fast Open send)
//!   to the metrics port from a socket of the broker's own network namespace
//!   ([`is_own_port`]). The audit names the rule [`RULE`].
//! - Each of these sockets refuses a peer that is the broker itself ([`is_this_process`]): the
//!   kernel records the process that called `connect`, and for a call the broker performs
//!   for a sandbox that is the broker, whatever sandbox asked. Only the TCP port has no peer
//!   credentials; the first wall is its guard.
//!
//! The control socket also refuses a peer that holds a seccomp listener
//! ([`holds_a_listener`]): such a process performs calls for confined ones (the broker
//! embedded in `netjail run`, a program that embeds the library), so a connection it made may
//! be a confined program's.
//!
//! The registry is per process: a broker embedded in a program and `netjaild` each know
//! their own sockets.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use netjail_policy::{Decision, Proto, Target};

use crate::sys;

/// The rule of a call refused because it would reach one of the broker's own sockets.
pub(crate) const RULE: &str = "broker-socket";

/// The errno of such a call: what a policy's denial gives.
pub(crate) const ERRNO: i32 = libc::EPERM;

/// A socket file the broker serves, by the identity the kernel finds a bound unix socket by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnixNode {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// A TCP port the broker serves, and the network namespace it listens in (`None`: unknown,
/// which matches every namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpPort {
    addr: SocketAddr,
    netns: Option<u64>,
}

static UNIX: Mutex<Vec<UnixNode>> = Mutex::new(Vec::new());
static TCP: Mutex<Vec<TcpPort>> = Mutex::new(Vec::new());

/// Records the socket file at `path`, which the broker has just bound or was handed by its
/// service manager, as one of its own.
///
/// # Errors
/// When `path` cannot be looked at, or is not a socket.
pub(crate) fn mark_unix(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::other(format!(
            "{} is not a socket file",
            path.display()
        )));
    }
    let node = UnixNode {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    let mut nodes = UNIX.lock().unwrap_or_else(|p| p.into_inner());
    nodes.retain(|n| n.path != node.path);
    nodes.push(node);
    Ok(())
}

/// Forgets the socket file at `path` (the broker that served it stopped and removed it).
pub(crate) fn forget_unix(path: &Path) {
    UNIX.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|n| n.path != path);
}

/// Whether `node` (an `O_PATH` fd of a resolved unix path) is one of the broker's own socket
/// files: the same device and inode, which is what a unix `connect` finds the socket by, so
/// no other name (a hard link, a bind mount, a symlink) reaches it past this check. A record
/// counts while the broker's path still names that node: once the file is gone, its inode
/// number may be another file's.
pub(crate) fn is_own_unix(node: BorrowedFd<'_>) -> bool {
    let Ok(st) = rustix::fs::fstat(node) else {
        return false;
    };
    let candidates: Vec<UnixNode> = UNIX
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|n| n.dev == st.st_dev && n.ino == st.st_ino)
        .cloned()
        .collect();
    candidates.iter().any(|n| {
        std::fs::symlink_metadata(&n.path).is_ok_and(|m| m.dev() == n.dev && m.ino() == n.ino)
    })
}

/// Records the TCP port `addr` the broker listens on with `listener`, in that socket's
/// network namespace.
pub(crate) fn mark_tcp(listener: BorrowedFd<'_>, addr: SocketAddr) {
    let netns = sys::socket_netns(listener).ok().or_else(own_netns);
    let mut ports = TCP.lock().unwrap_or_else(|p| p.into_inner());
    ports.retain(|p| p.addr != addr);
    ports.push(TcpPort { addr, netns });
}

/// The network namespace of the calling thread, by `/proc/thread-self/ns/net`.
fn own_netns() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Whether a connect of `sock` to `target` would reach a TCP port the broker listens on:
/// the same address and port, from a socket of the same network namespace, by any protocol
/// but UDP (MPTCP falls back to TCP). A namespace that cannot be read (a broker without
/// `CAP_NET_ADMIN` over it) counts as the broker's: the answer errs on the side of refusing.
pub(crate) fn is_own_port(sock: BorrowedFd<'_>, target: &Target) -> bool {
    let Target::Inet { addr, proto } = target.canonical() else {
        return false;
    };
    if proto == Proto::Udp {
        return false;
    }
    let ports: Vec<TcpPort> = TCP.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut hits = ports.iter().filter(|p| same_endpoint(&p.addr, &addr));
    let Some(first) = hits.next() else {
        return false;
    };
    let netns = sys::socket_netns(sock).ok();
    std::iter::once(first)
        .chain(hits)
        .any(|p| p.netns.is_none() || netns.is_none() || p.netns == netns)
}

/// The same address and port, an IPv4-mapped IPv6 address being the IPv4 one.
fn same_endpoint(a: &SocketAddr, b: &SocketAddr) -> bool {
    let ip = |s: &SocketAddr| s.ip().to_canonical();
    a.port() == b.port() && ip(a) == ip(b)
}

/// The decision refusing a call that would reach one of the broker's own sockets.
pub(crate) fn refusal() -> Decision {
    crate::reply::refusal(RULE, ERRNO)
}

/// Whether a peer's pid, as `SO_PEERCRED` gives it, is this very process.
pub(crate) fn is_this_process(pid: Option<i32>) -> bool {
    pid == Some(std::process::id() as i32)
}

/// Whether process `pid` holds a seccomp listener (`anon_inode:seccomp notify` among its
/// fds), read from `/proc/PID/fd`. `pidfd` names the same process: when it has exited by the
/// end of the reading, the pid may name another process now, and the answer is an error.
///
/// # Errors
/// When `/proc/PID/fd` cannot be read (the process is gone, or the broker may not look at
/// it), or the process exited meanwhile.
pub(crate) fn holds_a_listener(pid: i32, pidfd: BorrowedFd<'_>) -> io::Result<bool> {
    /// Fds looked at, at most: past it the answer is yes (a process with so many fds is not
    /// an operator's command line tool).
    const MAX_FDS: usize = 1 << 16;
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut found = false;
    for (n, entry) in std::fs::read_dir(&dir)?.enumerate() {
        if n >= MAX_FDS {
            found = true;
            break;
        }
        let Ok(entry) = entry else { continue };
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str() == sys::SECCOMP_LISTENER_KIND)
        {
            found = true;
            break;
        }
    }
    if !sys::pidfd_alive(pidfd.as_fd()) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(found)
}

/// How many of process `pid`'s fds show `kind` in `/proc/PID/fd` (`anon_inode:seccomp
/// notify` for listeners) and are *not* the same open file as the broker's `ours`
/// (`kcmp`). `pidfd` names the same process, as for [`holds_a_listener`].
///
/// # Errors
/// When `/proc/PID/fd` cannot be read, `kcmp` fails, or the process exited meanwhile.
pub(crate) fn others_held(
    pid: i32,
    pidfd: BorrowedFd<'_>,
    kind: &str,
    ours: BorrowedFd<'_>,
) -> io::Result<usize> {
    let mut others = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str() == kind) {
            match sys::kcmp_same_file(pid, fd, ours) {
                Ok(true) => {}
                Ok(false) => others += 1,
                // Closed since the listing.
                Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !sys::pidfd_alive(pidfd.as_fd()) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(others)
}

/// Backlog of the broker's unix listening sockets.
const BACKLOG: i32 = 1024;

/// Binds a listening unix socket of `sock_type` (`SOCK_SEQPACKET`, `SOCK_STREAM`) at `path`
/// for the broker and records it as its own ([`mark_unix`]). The file is created with
/// `mode` and, with `group`, that group, at once (on a thread with its own umask and
/// filesystem gid: no `chmod` or `chown` by path after the bind, which another user could
/// race). A missing directory is created (mode 0755); an existing one must be safe
/// ([`check_dir`]). A stale socket file is replaced; a live one (something answers) is an
/// `AddrInUse` error, and anything that is not a socket file is left alone (an error).
///
/// # Errors
/// The reasons above, and those of `socket`, `bind` and `listen`.
pub(crate) fn bind_unix(
    path: &Path,
    sock_type: rustix::net::SocketType,
    mode: u32,
    group: Option<u32>,
) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        sys::with_own_umask(0o022, None, || std::fs::create_dir_all(&dir))?;
    }
    check_dir(&dir, false)?;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if answers(path, sock_type) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another broker is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: not replacing it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let addr = SocketAddrUnix::new(path)?;
    let fd = sys::with_own_umask(0o777 & !mode, group, || {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            sock_type,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rustix::net::bind(&fd, &addr)?;
        rustix::net::listen(&fd, BACKLOG)?;
        Ok(fd)
    })?;
    mark_unix(path)?;
    Ok(fd)
}

/// Whether something accepts a connection of `sock_type` at `path` now.
fn answers(path: &Path, sock_type: rustix::net::SocketType) -> bool {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags};
    let Ok(addr) = SocketAddrUnix::new(path) else {
        return false;
    };
    rustix::net::socket_with(AddressFamily::UNIX, sock_type, SocketFlags::CLOEXEC, None)
        .and_then(|fd| rustix::net::connect(&fd, &addr))
        .is_ok()
}

/// Checks that `dir` and every directory above it belong to root or to the broker's user
/// and that nobody else may write in them (a directory others may write in is accepted only
/// with the sticky bit, which keeps them from renaming or removing what is not theirs): else
/// another user could put a socket or file of theirs where the broker's should be. With
/// `private`, `dir` itself must also be closed to group and others (mode 0700 or less).
///
/// # Errors
/// `PermissionDenied` naming the directory, its owner and mode, and what to change; the
/// errors of `stat`.
pub(crate) fn check_dir(dir: &Path, private: bool) -> io::Result<()> {
    let me = sys::geteuid();
    let given = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()?.join(dir)
    };
    // The directories named, and those they lead to through symlinks.
    let real = std::fs::canonicalize(&given)?;
    for (n, d) in given
        .ancestors()
        .enumerate()
        .chain(real.ancestors().enumerate())
    {
        let meta = std::fs::metadata(d)?;
        let mode = meta.mode() & 0o7777;
        let unsafe_owner = meta.uid() != 0 && meta.uid() != me;
        let writable = mode & 0o022 != 0 && mode & 0o1000 == 0;
        let open = n == 0 && private && mode & 0o077 != 0;
        if unsafe_owner || writable || open {
            let want = if open {
                "mode 0700"
            } else {
                "no write access for group and others (or the sticky bit)"
            };
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {} with mode {mode:04o}: another user could put their \
                     own file there; it must belong to root or uid {me}, with {want}",
                    d.display(),
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_file_is_own_by_its_inode_under_any_name() {
        let dir = std::env::temp_dir().join(format!("netjail-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let other = dir.join("other.sock");
        let _o = std::os::unix::net::UnixListener::bind(&other).unwrap();
        let link = dir.join("link.sock");
        std::fs::hard_link(&path, &link).unwrap();
        let open = |p: &Path| {
            rustix::fs::open(
                p,
                rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .unwrap()
        };
        assert!(!is_own_unix(open(&path).as_fd()));
        mark_unix(&path).unwrap();
        assert!(is_own_unix(open(&path).as_fd()));
        assert!(
            is_own_unix(open(&link).as_fd()),
            "a hard link is the same node"
        );
        assert!(!is_own_unix(open(&other).as_fd()));
        // Once the broker's path no longer names the node, the record no longer counts (the
        // inode number may be another file's by then); the peer check still catches a
        // connection through the remaining link.
        let kept = dir.join("kept.sock");
        std::fs::rename(&path, &kept).unwrap();
        assert!(!is_own_unix(open(&link).as_fd()));
        std::fs::rename(&kept, &path).unwrap();
        assert!(is_own_unix(open(&link).as_fd()));
        forget_unix(&path);
        assert!(!is_own_unix(open(&link).as_fd()));
        assert!(mark_unix(&dir).is_err(), "a directory is not a socket");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_metrics_port_is_own_in_the_brokers_namespace_only_for_its_address() {
        // An address no other test of this process marks (the registry is per process).
        let listener = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
        let addr = listener.local_addr().unwrap();
        mark_tcp(listener.as_fd(), addr);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = |a: SocketAddr| Target::Inet {
            proto: Proto::Tcp,
            addr: a,
        };
        assert!(is_own_port(sock.as_fd(), &to(addr)));
        let mapped: SocketAddr = format!("[::ffff:127.0.0.5]:{}", addr.port())
            .parse()
            .unwrap();
        assert!(is_own_port(sock.as_fd(), &to(mapped)));
        let other_port = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1).max(1));
        assert!(!is_own_port(sock.as_fd(), &to(other_port)));
        let other_ip: SocketAddr = format!("127.0.0.6:{}", addr.port()).parse().unwrap();
        assert!(!is_own_port(sock.as_fd(), &to(other_ip)));
        let udp = Target::Inet {
            proto: Proto::Udp,
            addr,
        };
        assert!(
            !is_own_port(sock.as_fd(), &udp),
            "UDP never reaches a TCP port"
        );
    }

    #[test]
    fn other_open_files_of_a_kind_are_counted_and_copies_are_not() {
        let dir = std::env::temp_dir().join(format!("netjail-own-held-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("kind");
        std::fs::write(&path, "").unwrap();
        let ours = std::fs::File::open(&path).unwrap();
        let kind = path.to_str().unwrap();
        let me = std::process::id() as i32;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(me).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        assert_eq!(
            others_held(me, pidfd.as_fd(), kind, ours.as_fd()).unwrap(),
            0
        );
        let copy = ours.try_clone().unwrap();
        assert_eq!(
            others_held(me, pidfd.as_fd(), kind, ours.as_fd()).unwrap(),
            0
        );
        let other = std::fs::File::open(&path).unwrap();
        assert_eq!(
            others_held(me, pidfd.as_fd(), kind, ours.as_fd()).unwrap(),
            1
        );
        drop((copy, other));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_is_recognised_by_its_pid() {
        assert!(is_this_process(Some(std::process::id() as i32)));
        assert!(!is_this_process(Some(1)));
        assert!(!is_this_process(None));
    }

    #[test]
    fn a_process_without_a_listener_holds_none() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let pidfd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        let held = holds_a_listener(pid, pidfd.as_fd());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!held.unwrap());
        assert!(holds_a_listener(pid, pidfd.as_fd()).is_err(), "gone");
    }
}
