//! Registering a sandbox with a running broker over its SEQPACKET socket.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use netjail_protocol::{
    recv, send, BrokerMessage, ClientMessage, PolicySource, RecvError, Register, RegisterAgain,
    SandboxId, SendError, PROTOCOL_VERSION,
};
use tokio_seqpacket::UnixSeqpacket;

/// Errors talking to a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// Nothing listens at the path.
    #[error("no broker at {path}: {source}")]
    NoBroker {
        /// The socket path.
        path: String,
        /// What connect said.
        source: std::io::Error,
    },
    /// Sending failed.
    #[error("cannot send to the broker: {0}")]
    Send(#[from] SendError),
    /// Receiving failed.
    #[error("cannot read the broker's answer: {0}")]
    Recv(#[from] RecvError),
    /// The broker refused.
    #[error("the broker refused: {0:?}: {1}")]
    Refused(netjail_protocol::ErrorCode, String),
    /// The broker answered something unexpected.
    #[error("unexpected answer from the broker")]
    Unexpected,
    /// What listens at the path runs as another user than root or this one: nothing was sent
    /// to it (whoever serves the socket would get the sandbox's listener, and with it every
    /// decision on the sandbox's calls).
    #[error(
        "the socket at {path} is served by uid {uid}, neither root nor this user (uid {own}): \
         not talking to it"
    )]
    UntrustedBroker {
        /// The socket path.
        path: String,
        /// The uid of the process serving it.
        uid: u32,
        /// This process's effective uid.
        own: u32,
    },
}

/// Checks that the process serving the unix socket `sock` is connected to runs as root or as
/// this process's user (L6): `Err(uid)` with its uid otherwise, or when it cannot be told.
///
/// In a user namespace that does not map the initial namespace's root (a rootless container,
/// `unshare -U`), a broker running as that root shows as the overflow uid, as every other
/// unmapped user does: there it is accepted, since nothing finer can be known from inside.
pub fn check_broker_uid(sock: std::os::fd::BorrowedFd<'_>) -> Result<(), u32> {
    let own = crate::sys::geteuid();
    match crate::sys::peer_uid(sock) {
        Ok(uid) if uid == 0 || uid == own => Ok(()),
        Ok(uid) if uid == overflow_uid() && !maps_initial_root() => Ok(()),
        Ok(uid) => Err(uid),
        Err(_) => Err(u32::MAX),
    }
}

/// The uid the kernel shows for a user not mapped in this user namespace
/// (`/proc/sys/kernel/overflowuid`, 65534 unless changed).
fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// Whether the initial user namespace's root is mapped in this process's user namespace
/// (always, in the initial one itself): a line of `/proc/self/uid_map` whose range of
/// outside ids holds 0. An unreadable map counts as mapped, which keeps the strict check.
fn maps_initial_root() -> bool {
    let Ok(map) = std::fs::read_to_string("/proc/self/uid_map") else {
        return true;
    };
    map.lines().any(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        matches!(f.as_slice(), [_, outside, count] if *outside == 0 && *count > 0)
    })
}

/// Why nothing answered at `path`, in words, from the error of `connect`: no such file, a
/// file that is not a socket, a socket nobody listens on (its broker is gone), a socket of
/// another type, no permission.
pub fn connect_failure(path: &Path, error: &std::io::Error) -> String {
    use std::os::unix::fs::FileTypeExt;
    match error.raw_os_error() {
        Some(libc::ENOENT) => "no such file".to_string(),
        Some(libc::ENOTDIR) => "a directory of the path is not a directory".to_string(),
        Some(libc::EACCES | libc::EPERM) => "permission denied".to_string(),
        Some(libc::EPROTOTYPE) => {
            "a socket of another type: a broker's is a SOCK_SEQPACKET socket".to_string()
        }
        // The kernel refuses a path that names no socket as it refuses a socket with no
        // listener: the file tells them apart.
        Some(libc::ECONNREFUSED) => match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                "a socket nobody listens on: its broker is gone".to_string()
            }
            Ok(m) if m.is_dir() => "a directory, not a socket".to_string(),
            Ok(_) => "not a socket".to_string(),
            Err(_) => "connection refused".to_string(),
        },
        _ => error.to_string(),
    }
}

impl RemoteError {
    /// Whether the broker refused the message itself as malformed: what a broker older than
    /// the message answers (it cannot decode it).
    pub fn is_unknown_message(&self) -> bool {
        matches!(
            self,
            RemoteError::Refused(netjail_protocol::ErrorCode::Malformed, _)
        )
    }
}

/// A connection to a broker after the version handshake.
#[derive(Debug)]
pub struct BrokerConnection {
    sock: UnixSeqpacket,
}

impl BrokerConnection {
    /// Connects and exchanges hello/welcome.
    pub async fn connect(path: &Path) -> Result<BrokerConnection, RemoteError> {
        let sock = UnixSeqpacket::connect(path)
            .await
            .map_err(|source| RemoteError::NoBroker {
                path: path.display().to_string(),
                source,
            })?;
        check_broker_uid(sock.as_fd()).map_err(|uid| RemoteError::UntrustedBroker {
            path: path.display().to_string(),
            uid,
            own: crate::sys::geteuid(),
        })?;
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: format!("netjail {}", env!("CARGO_PKG_VERSION")),
        };
        send(&sock, &hello, &[]).await?;
        match recv::<BrokerMessage>(&sock).await?.msg {
            BrokerMessage::Welcome { .. } => Ok(BrokerConnection { sock }),
            BrokerMessage::Error(e) => Err(RemoteError::Refused(e.code, e.message)),
            _ => Err(RemoteError::Unexpected),
        }
    }

    /// Registers a sandbox; the listener fd travels in `SCM_RIGHTS`.
    pub async fn register(
        &self,
        name: &str,
        pid: i32,
        policy: PolicySource,
        listener: BorrowedFd<'_>,
    ) -> Result<SandboxId, RemoteError> {
        let msg = ClientMessage::Register(Register {
            name: name.to_string(),
            pid,
            policy,
        });
        send(&self.sock, &msg, &[listener]).await?;
        match recv::<BrokerMessage>(&self.sock).await?.msg {
            BrokerMessage::Registered { sandbox } => Ok(sandbox),
            BrokerMessage::Error(e) => Err(RemoteError::Refused(e.code, e.message)),
            _ => Err(RemoteError::Unexpected),
        }
    }

    /// As [`BrokerConnection::register`], for a client that keeps its own copy of the
    /// listener and registers the sandbox again ([`BrokerConnection::register_again`]) when
    /// the broker goes away: the broker keeps a journal of the sandbox's calls for the next
    /// one (`ClientMessage::RegisterKeeping`). A broker older than this message refuses it as
    /// malformed; [`RemoteError::is_unknown_message`] tells that case.
    pub async fn register_keeping(
        &self,
        register: Register,
        listener: BorrowedFd<'_>,
    ) -> Result<SandboxId, RemoteError> {
        let msg = ClientMessage::RegisterKeeping(register);
        send(&self.sock, &msg, &[listener]).await?;
        match recv::<BrokerMessage>(&self.sock).await?.msg {
            BrokerMessage::Registered { sandbox } => Ok(sandbox),
            BrokerMessage::Error(e) => Err(RemoteError::Refused(e.code, e.message)),
            _ => Err(RemoteError::Unexpected),
        }
    }

    /// Registers again, with a broker started after the one that gave the sandbox the id
    /// `previous` stopped or crashed: the same listener (the client's own copy) travels again.
    /// The broker keeps the id and decides the calls the earlier one had received and not
    /// answered, if it finds that broker's journal (see [`ClientMessage::RegisterAgain`]).
    pub async fn register_again(
        &self,
        register: Register,
        previous: SandboxId,
        listener: BorrowedFd<'_>,
    ) -> Result<SandboxId, RemoteError> {
        let msg = ClientMessage::RegisterAgain(RegisterAgain { register, previous });
        send(&self.sock, &msg, &[listener]).await?;
        match recv::<BrokerMessage>(&self.sock).await?.msg {
            BrokerMessage::Registered { sandbox } => Ok(sandbox),
            BrokerMessage::Error(e) => Err(RemoteError::Refused(e.code, e.message)),
            _ => Err(RemoteError::Unexpected),
        }
    }

    /// Resolves when the broker closes the connection (it stopped or crashed).
    pub async fn closed(&self) {
        loop {
            match recv::<BrokerMessage>(&self.sock).await {
                Err(RecvError::Closed) | Err(RecvError::Io(_)) => return,
                _ => continue,
            }
        }
    }
}

/// The first wait between two attempts of [`register_again_until`]; each next one is twice as
/// long, at most [`REGISTER_AGAIN_MAX_DELAY`].
pub const REGISTER_AGAIN_FIRST_DELAY: Duration = Duration::from_millis(20);

/// The longest wait between two attempts of [`register_again_until`].
pub const REGISTER_AGAIN_MAX_DELAY: Duration = Duration::from_secs(1);

/// Registers the sandbox `previous` again with whatever broker answers at `path`, attempt
/// after attempt (see [`REGISTER_AGAIN_FIRST_DELAY`]) until one succeeds or `deadline`
/// passes (`None`). Each attempt connects afresh and may take 5 s at most. Meanwhile the
/// sandbox's calls wait in the kernel, undecided; the broker that takes it decides them, the
/// calls the earlier one had received included ([`BrokerConnection::register_again`]).
pub async fn register_again_until(
    path: &Path,
    register: &Register,
    previous: SandboxId,
    listener: BorrowedFd<'_>,
    deadline: Instant,
) -> Option<(BrokerConnection, SandboxId)> {
    let mut delay = REGISTER_AGAIN_FIRST_DELAY;
    loop {
        let attempt = async {
            let conn = BrokerConnection::connect(path).await?;
            let id = conn
                .register_again(register.clone(), previous, listener)
                .await?;
            Ok::<_, RemoteError>((conn, id))
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok((conn, id))) => {
                tracing::warn!(sandbox = %id, previous = %previous, broker = %path.display(), "registered again with a new broker");
                return Some((conn, id));
            }
            Ok(Err(e)) => {
                tracing::debug!(sandbox = %previous, error = %e, "not registered again yet")
            }
            Err(_) => tracing::debug!(sandbox = %previous, "the broker did not answer within 5 s"),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(REGISTER_AGAIN_MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `connect` says at `path`, in words.
    fn failure_at(path: &Path) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match runtime.block_on(BrokerConnection::connect(path)) {
            Err(RemoteError::NoBroker { source, .. }) => connect_failure(path, &source),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a broker at {}", path.display()),
        }
    }

    /// Issue 17: a broker named on the command line that cannot be reached is refused with
    /// what is wrong at the path.
    #[test]
    fn every_way_of_having_no_broker_at_a_path_is_told_apart() {
        let dir = std::env::temp_dir().join(format!("netjail-remote-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(failure_at(&dir.join("missing.sock")), "no such file");
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(failure_at(&file), "not a socket");
        assert_eq!(
            failure_at(&file.join("below")),
            "a directory of the path is not a directory"
        );
        let sub = dir.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(failure_at(&sub), "a directory, not a socket");
        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert_eq!(
            failure_at(&stale),
            "a socket nobody listens on: its broker is gone"
        );
        let stream = dir.join("stream.sock");
        let _listening = std::os::unix::net::UnixListener::bind(&stream).unwrap();
        assert_eq!(
            failure_at(&stream),
            "a socket of another type: a broker's is a SOCK_SEQPACKET socket"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
