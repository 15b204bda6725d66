//! Running under a service manager: sockets it created and handed over (socket activation,
//! `LISTEN_PID`/`LISTEN_FDS`), and the readiness notification (`NOTIFY_SOCKET`, `READY=1`),
//! as systemd speaks them (sd_listen_fds(3), sd_notify(3)). `packaging/` has the units.
//!
//! A socket handed over is matched to its role by the path it is bound to: the one bound to
//! `--socket` is the registration socket, `--control` the control socket, `--oci-socket` the
//! OCI agent's. The broker then neither creates, re-binds nor removes that socket file: the
//! socket outlives the broker, so clients connecting while it restarts wait in the backlog
//! instead of finding nothing.
//!
//! The service manager also hands back, among the same fds, the seccomp listeners this broker
//! (or an earlier one) put in its file descriptor store (`restart/fdstore.rs`): those are told apart by
//! their name in `LISTEN_FDNAMES`, `sb-N`, and are taken by the broker, not by a role.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::sys;

/// The first fd a service manager hands over.
const FIRST_FD: i32 = 3;

/// At most this many fds are taken: a broker has three sockets, and one stored listener per
/// sandbox (the unit's `FileDescriptorStoreMax=`); anything past it is a mistake in the
/// environment.
const MAX_FDS: i32 = 65_536;

/// Sockets handed over by a service manager, not yet claimed by a role, and the listeners
/// it kept in its file descriptor store.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    sockets: Vec<(PathBuf, i32, OwnedFd)>,
    stored: Vec<(String, OwnedFd)>,
}

/// Errors reading what a service manager handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ActivationError {
    /// `LISTEN_FDS` is not a count, or too large.
    #[error("LISTEN_FDS={0} is not a count of fds from 0 to 65536")]
    BadCount(String),
    /// `LISTEN_FDNAMES` does not name each fd.
    #[error("LISTEN_FDNAMES has {names} names for LISTEN_FDS={fds}")]
    BadNames {
        /// How many names.
        names: usize,
        /// How many fds.
        fds: i32,
    },
    /// An fd announced is not open or not a socket.
    #[error("fd {fd} from the service manager: {source}")]
    Fd {
        /// The fd.
        fd: i32,
        /// What the kernel said.
        source: io::Error,
    },
    /// An fd is not a listening unix socket bound to a path.
    #[error("fd {fd} from the service manager is not a listening unix socket bound to a path")]
    NotAListener {
        /// The fd.
        fd: i32,
    },
    /// Listeners from the file descriptor store that the broker did not take.
    #[error(
        "the service manager handed over {0} stored listeners (sb-N) that the broker did not take"
    )]
    UnclaimedStored(usize),
    /// A socket is bound to a path no role names.
    #[error(
        "the service manager handed over a socket bound to {0}, which is none of --socket, --control, --oci-socket"
    )]
    Unclaimed(PathBuf),
    /// A socket of the wrong type for its role.
    #[error("the socket handed over for {path} is of type {found}, the broker needs {wanted}")]
    WrongType {
        /// The path.
        path: PathBuf,
        /// The type found.
        found: &'static str,
        /// The type the role needs.
        wanted: &'static str,
    },
}

fn type_name(t: i32) -> &'static str {
    match t {
        libc::SOCK_STREAM => "SOCK_STREAM",
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET",
        libc::SOCK_DGRAM => "SOCK_DGRAM",
        _ => "another type",
    }
}

impl Inherited {
    /// Takes the sockets the service manager handed to this process: none unless
    /// `LISTEN_PID` is this process's pid. The variables are removed from the environment, so
    /// that nothing the broker starts takes the sockets for its own. An fd whose name in
    /// `LISTEN_FDNAMES` is `sb-N` is set aside as a stored listener ([`Inherited::take_stored`]);
    /// what it is, is checked by the broker when it takes it.
    pub(crate) fn from_env() -> Result<Inherited, ActivationError> {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").ok();
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        let ours = pid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
        let Some(count) = count.filter(|_| ours) else {
            return Ok(Inherited::default());
        };
        let n: i32 = count
            .parse()
            .ok()
            .filter(|n| (0..=MAX_FDS).contains(n))
            .ok_or_else(|| ActivationError::BadCount(count.clone()))?;
        let names = fd_names(names.as_deref(), n)?;
        let mut inherited = Inherited::default();
        for (fd, name) in (FIRST_FD..FIRST_FD + n).zip(names) {
            let stored = name.as_deref().is_some_and(|n| stored_id(n).is_some());
            let owned = sys::take_inherited_fd(fd, !stored)
                .map_err(|source| ActivationError::Fd { fd, source })?;
            if let (true, Some(name)) = (stored, name) {
                inherited.stored.push((name, owned));
                continue;
            }
            let what = sys::inherited_socket(owned.as_fd())
                .map_err(|source| ActivationError::Fd { fd, source })?;
            let (Some(path), true) = (what.path, what.listening) else {
                return Err(ActivationError::NotAListener { fd });
            };
            inherited.sockets.push((path, what.sock_type, owned));
        }
        Ok(inherited)
    }

    /// Whether nothing was handed over (or everything was claimed).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.stored.is_empty()
    }

    /// Takes the fds named `sb-N` (the file descriptor store's), with their names, in the
    /// order they were handed over.
    pub(crate) fn take_stored(&mut self) -> Vec<(String, OwnedFd)> {
        std::mem::take(&mut self.stored)
    }

    /// Claims the socket bound to `path`, which must be of type `sock_type`.
    fn claim(&mut self, path: &Path, sock_type: i32) -> Result<Option<OwnedFd>, ActivationError> {
        let Some(i) = self.sockets.iter().position(|(p, _, _)| same_path(p, path)) else {
            return Ok(None);
        };
        let (p, found, fd) = self.sockets.remove(i);
        if found != sock_type {
            return Err(ActivationError::WrongType {
                path: p,
                found: type_name(found),
                wanted: type_name(sock_type),
            });
        }
        Ok(Some(fd))
    }

    /// The `SOCK_SEQPACKET` listener handed over for `path` (`--socket`, `--control`), if any.
    pub(crate) fn seqpacket(
        &mut self,
        path: &Path,
    ) -> Result<Option<tokio_seqpacket::UnixSeqpacketListener>, ActivationError> {
        let Some(fd) = self.claim(path, libc::SOCK_SEQPACKET)? else {
            return Ok(None);
        };
        mark_own(path);
        tokio_seqpacket::UnixSeqpacketListener::try_from(fd)
            .map(Some)
            .map_err(|source| ActivationError::Fd { fd: -1, source })
    }

    /// The `SOCK_STREAM` listener handed over for `path` (`--oci-socket`), if any.
    pub(crate) fn stream(
        &mut self,
        path: &Path,
    ) -> Result<Option<tokio::net::UnixListener>, ActivationError> {
        let Some(fd) = self.claim(path, libc::SOCK_STREAM)? else {
            return Ok(None);
        };
        mark_own(path);
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(std_listener))
            .map(Some)
            .map_err(|source| ActivationError::Fd { fd: -1, source })
    }

    /// Fails if a socket was handed over that no role claimed: a unit and a command line that
    /// disagree are a mistake to report, not to serve around.
    pub(crate) fn all_claimed(&self) -> Result<(), ActivationError> {
        if let Some((path, _, _)) = self.sockets.first() {
            return Err(ActivationError::Unclaimed(path.clone()));
        }
        if !self.stored.is_empty() {
            return Err(ActivationError::UnclaimedStored(self.stored.len()));
        }
        Ok(())
    }
}

/// The name of each of the `n` fds handed over, from `LISTEN_FDNAMES` (colon-separated, one
/// name per fd, sd_listen_fds(3)); `None` for each when the variable is not set.
fn fd_names(names: Option<&str>, n: i32) -> Result<Vec<Option<String>>, ActivationError> {
    let Some(names) = names else {
        return Ok(vec![None; n as usize]);
    };
    let list: Vec<Option<String>> = if names.is_empty() && n == 0 {
        Vec::new()
    } else {
        names.split(':').map(|s| Some(s.to_string())).collect()
    };
    if list.len() != n as usize {
        return Err(ActivationError::BadNames {
            names: list.len(),
            fds: n,
        });
    }
    Ok(list)
}

/// The sandbox id N of a stored listener's name `sb-N` (decimal digits only).
pub(crate) fn stored_id(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("sb-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Records a socket the service manager bound at `path` as one of the broker's own, which
/// no sandbox may reach (`ops/own.rs`).
fn mark_own(path: &Path) {
    if let Err(e) = crate::ops::own::mark_unix(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot record a handed-over socket as the broker's own; the broker still refuses connections it made itself");
    }
}

/// Two spellings of one socket path: equal, or equal once both are made canonical (the
/// socket file exists, it was handed over bound).
fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Tells the service manager something (`READY=1`, `STOPPING=1`), when it asked to be told
/// (`NOTIFY_SOCKET`); does nothing otherwise. An address starting with `@` is abstract.
pub(crate) fn notify(state: &str) -> io::Result<()> {
    notify_with_fds(state, &[]).map(drop)
}

/// Whether a service manager asked to be told (`NOTIFY_SOCKET` is set).
pub(crate) fn notify_socket_set() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|a| !a.is_empty())
}

/// As [`notify`], with `fds` passed along (`SCM_RIGHTS`), as `FDSTORE=1` needs: the service
/// manager keeps its own copies (sd_pid_notify_with_fds(3)). Returns false, having sent
/// nothing, when nobody asked to be told.
pub(crate) fn notify_with_fds(state: &str, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET").filter(|a| !a.is_empty()) else {
        return Ok(false);
    };
    send_notification(&addr, state, fds).map(|()| true)
}

/// Sends `state` with `fds` to the service manager's socket `addr`.
fn send_notification(
    addr: &std::ffi::OsStr,
    state: &str,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use rustix::net::{self as rnet, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(addr);
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => rnet::SocketAddrUnix::new_abstract_name(name)?,
        None => rnet::SocketAddrUnix::new(Path::new(addr))?,
    };
    let mut space =
        vec![std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("the fds do not fit one message"));
    }
    let iov = [io::IoSlice::new(state.as_bytes())];
    rnet::sendmsg_addr(sock.as_fd(), &addr, &iov, &mut control, SendFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_taken_for_another_pid() {
        // LISTEN_PID names another process: the variables are cleared and nothing taken.
        std::env::set_var("LISTEN_PID", "1");
        std::env::set_var("LISTEN_FDS", "1");
        let inherited = Inherited::from_env().unwrap();
        assert!(inherited.is_empty());
        assert!(std::env::var_os("LISTEN_FDS").is_none());
        assert!(inherited.all_claimed().is_ok());
    }

    #[test]
    fn stored_listeners_are_named_sb_n() {
        assert_eq!(stored_id("sb-7"), Some(7));
        assert_eq!(stored_id("sb-18446744073709551615"), Some(u64::MAX));
        for name in [
            "sb-",
            "sb-+7",
            "sb-7x",
            "sb--7",
            "xb-7",
            "netjaild.socket",
            "sb-1.meta",
        ] {
            assert_eq!(stored_id(name), None, "{name}");
        }
        assert_eq!(
            fd_names(Some("netjaild.socket:sb-3:sb-4"), 3).unwrap(),
            [Some("netjaild.socket"), Some("sb-3"), Some("sb-4")].map(|s| s.map(String::from))
        );
        assert_eq!(fd_names(None, 2).unwrap(), [None, None]);
        assert_eq!(fd_names(Some(""), 0).unwrap(), Vec::<Option<String>>::new());
        let err = fd_names(Some("a:b"), 3).unwrap_err().to_string();
        assert_eq!(err, "LISTEN_FDNAMES has 2 names for LISTEN_FDS=3");
    }

    #[test]
    fn notify_with_fds_passes_the_fds_along() {
        let dir = std::env::temp_dir().join(format!("nj-notify-fds-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        // The address is given, not read from NOTIFY_SOCKET, which another test sets.
        send_notification(path.as_os_str(), "FDSTORE=1\nFDNAME=sb-1", &[file.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let got = rustix::net::recvmsg(
            listener.as_fd(),
            &mut iov,
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        let fds: Vec<OwnedFd> = control
            .drain()
            .flat_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(&buf[..got.bytes], b"FDSTORE=1\nFDNAME=sb-1");
        assert_eq!(fds.len(), 1);
        assert_eq!(sys::fd_kind(fds[0].as_fd()), "/dev/null");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn notify_sends_the_state_to_the_socket_named() {
        let dir = std::env::temp_dir().join(format!("nj-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1").unwrap();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
        // Nobody asked: nothing to do.
        notify("READY=1").unwrap();
    }
}
