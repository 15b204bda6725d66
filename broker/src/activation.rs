//! Running under a service manager: sockets it created and handed over (socket activation,
//! `LISTEN_PID`/`LISTEN_FDS`), and the readiness notification (`NOTIFY_SOCKET`, `READY=1`),
//! as systemd speaks them (sd_listen_fds(3), sd_notify(3)). `packaging/` has the units.
//!
//! A socket handed over is matched to its role by the path it is bound to: the one bound to
//! `--socket` is the registration socket, `--control` the control socket, `--oci-socket` the
//! OCI agent's. The broker then neither creates, re-binds nor removes that socket file: the
//! socket outlives the broker, so clients connecting while it restarts wait in the backlog
//! instead of finding nothing.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::sys;

/// The first fd a service manager hands over.
const FIRST_FD: i32 = 3;

/// At most this many fds are taken (a broker has three sockets; anything far past it is a
/// mistake in the environment, not sockets).
const MAX_FDS: i32 = 16;

/// Sockets handed over by a service manager, not yet claimed by a role.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: Vec<(PathBuf, i32, OwnedFd)>,
}

/// Errors reading what a service manager handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a count, or too large.
    #[error("LISTEN_FDS={0} is not a count of fds from 0 to 16")]
    BadCount(String),
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
    /// that nothing the broker starts takes the sockets for its own.
    pub fn from_env() -> Result<Inherited, ActivationError> {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
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
        let mut sockets = Vec::new();
        for fd in FIRST_FD..FIRST_FD + n {
            let owned =
                sys::take_inherited_fd(fd).map_err(|source| ActivationError::Fd { fd, source })?;
            let what = sys::inherited_socket(owned.as_fd())
                .map_err(|source| ActivationError::Fd { fd, source })?;
            let (Some(path), true) = (what.path, what.listening) else {
                return Err(ActivationError::NotAListener { fd });
            };
            sockets.push((path, what.sock_type, owned));
        }
        Ok(Inherited { sockets })
    }

    /// Whether nothing was handed over (or everything was claimed).
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
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
    pub fn seqpacket(
        &mut self,
        path: &Path,
    ) -> Result<Option<tokio_seqpacket::UnixSeqpacketListener>, ActivationError> {
        let Some(fd) = self.claim(path, libc::SOCK_SEQPACKET)? else {
            return Ok(None);
        };
        tokio_seqpacket::UnixSeqpacketListener::try_from(fd)
            .map(Some)
            .map_err(|source| ActivationError::Fd { fd: -1, source })
    }

    /// The `SOCK_STREAM` listener handed over for `path` (`--oci-socket`), if any.
    pub fn stream(
        &mut self,
        path: &Path,
    ) -> Result<Option<tokio::net::UnixListener>, ActivationError> {
        let Some(fd) = self.claim(path, libc::SOCK_STREAM)? else {
            return Ok(None);
        };
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixListener::from_std(std_listener))
            .map(Some)
            .map_err(|source| ActivationError::Fd { fd: -1, source })
    }

    /// Fails if a socket was handed over that no role claimed: a unit and a command line that
    /// disagree are a mistake to report, not to serve around.
    pub fn all_claimed(&self) -> Result<(), ActivationError> {
        match self.sockets.first() {
            Some((path, _, _)) => Err(ActivationError::Unclaimed(path.clone())),
            None => Ok(()),
        }
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
pub fn notify(state: &str) -> io::Result<()> {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(addr.as_os_str());
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), Path::new(&addr))?;
    }
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
