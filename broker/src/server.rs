//! The registration socket: clients say hello, then register sandboxes with their listener fd.
//! A peer that sends anything else gets an error reply and is disconnected; everyone else is
//! served on (invariant 8).
//!
//! A process that confines itself (`netjail_client::confine_self`) registers without an fd:
//! `RegisterSelf`, then `ListenerFd` with the number of its new listener, which the broker
//! takes from the process at the other end of the socket with `pidfd_getfd`
//! ([`register_self`]).

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use netjail_policy::Policy;
use netjail_protocol::{
    recv, send, BrokerMessage, ClientMessage, ErrorCode, ErrorReply, RecvError, Register,
    RegisterSelf, SandboxId, PROTOCOL_VERSION,
};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::{audit, sys, Broker};

/// Binds the registration socket at `path` with mode 0660, creating its directory (0755) and
/// replacing a stale socket file; refuses when another broker answers there.
pub fn bind_socket(path: &Path) -> io::Result<UnixSeqpacketListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        if UnixSeqpacket::connect_blocking(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another broker is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixSeqpacketListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Accepts clients forever.
pub async fn serve(broker: Arc<Broker>, mut listener: UnixSeqpacketListener) -> io::Result<()> {
    loop {
        let sock = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                tracing::error!(error = %e, "out of fds; pausing accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let broker = broker.clone();
        tokio::spawn(async move { client(broker, sock).await });
    }
}

async fn reply_error(sock: &UnixSeqpacket, code: ErrorCode, message: String) {
    tracing::warn!(?code, %message, "client refused");
    let _ = send(
        sock,
        &BrokerMessage::Error(ErrorReply { code, message }),
        &[],
    )
    .await;
}

fn code_of(e: &RecvError) -> ErrorCode {
    match e {
        RecvError::TooManyFds { .. } => ErrorCode::TooManyFds,
        RecvError::Decode(netjail_protocol::DecodeError::UnsupportedVersion { .. }) => {
            ErrorCode::UnsupportedVersion
        }
        _ => ErrorCode::Malformed,
    }
}

async fn client(broker: Arc<Broker>, sock: UnixSeqpacket) {
    let peer = sock.peer_cred().ok();
    let peer_uid = peer.as_ref().map(|c| c.uid());
    let peer_pid = peer.as_ref().and_then(|c| c.pid());
    tracing::info!(
        peer_pid = peer.as_ref().and_then(|c| c.pid()).unwrap_or(-1),
        peer_uid = peer_uid.map(i64::from).unwrap_or(-1),
        peer_gid = peer.as_ref().map(|c| i64::from(c.gid())).unwrap_or(-1),
        "client connected"
    );
    match recv::<ClientMessage>(&sock).await {
        Ok(r) => match r.msg {
            ClientMessage::Hello { version, client } if r.fds.is_empty() => {
                if version != PROTOCOL_VERSION {
                    return reply_error(
                        &sock,
                        ErrorCode::UnsupportedVersion,
                        format!("protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"),
                    )
                    .await;
                }
                tracing::debug!(%client, "hello");
                let welcome = BrokerMessage::Welcome {
                    version: PROTOCOL_VERSION,
                    broker: format!("netjaild {}", env!("CARGO_PKG_VERSION")),
                };
                if send(&sock, &welcome, &[]).await.is_err() {
                    return;
                }
            }
            _ => {
                return reply_error(
                    &sock,
                    ErrorCode::NotHello,
                    "the first message must be hello".into(),
                )
                .await
            }
        },
        Err(RecvError::Closed) => return,
        Err(e) => return reply_error(&sock, code_of(&e), e.to_string()).await,
    }
    loop {
        let received = match recv::<ClientMessage>(&sock).await {
            Ok(r) => r,
            Err(RecvError::Closed) => return,
            Err(e) => return reply_error(&sock, code_of(&e), e.to_string()).await,
        };
        let (register, kept) = match received.msg {
            ClientMessage::Register(r) => (r, Kept::Not),
            ClientMessage::RegisterKeeping(r) => (r, Kept::Copy(None)),
            ClientMessage::RegisterAgain(again) => {
                (again.register, Kept::Copy(Some(again.previous)))
            }
            ClientMessage::Hello { .. } => {
                return reply_error(&sock, ErrorCode::Malformed, "hello sent twice".into()).await
            }
            ClientMessage::RegisterSelf(body) => {
                let id = register_self(&broker, &sock, body, received.fds, peer_pid, peer_uid);
                match id.await {
                    Ok(id) => {
                        let registered = BrokerMessage::Registered { sandbox: id };
                        if send(&sock, &registered, &[]).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err((code, message)) => return reply_error(&sock, code, message).await,
                }
            }
            ClientMessage::ListenerFd { .. } => {
                let message = "listener-fd without register-self: send register-self first".into();
                return reply_error(&sock, ErrorCode::Malformed, message).await;
            }
        };
        let mut fds = received.fds;
        if fds.len() != 1 {
            let code = if fds.is_empty() {
                ErrorCode::MissingFd
            } else {
                ErrorCode::TooManyFds
            };
            return reply_error(
                &sock,
                code,
                format!("register needs exactly one fd, got {}", fds.len()),
            )
            .await;
        }
        let listener = fds.remove(0);
        match register_one(&broker, &register, listener, peer_uid, kept) {
            Ok(id) => {
                if send(&sock, &BrokerMessage::Registered { sandbox: id }, &[])
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err((code, message)) => return reply_error(&sock, code, message).await,
        }
    }
}

/// Whether the client that registered a sandbox keeps a copy of its listener.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// `Register`: the broker holds the only copy once the client closes its own.
    Not,
    /// `RegisterKeeping`, or `RegisterAgain` with the id an earlier broker gave it.
    Copy(Option<SandboxId>),
}

/// Registers a sandbox a client handed over. One whose client keeps a copy gets a journal of
/// its calls, so that a broker started after this one decides those this one had in hand
/// when the client registers it again; one whose client keeps none goes to the service
/// manager's file descriptor store, when the broker stores listeners.
fn register_one(
    broker: &Arc<Broker>,
    register: &Register,
    listener: std::os::fd::OwnedFd,
    peer_uid: Option<u32>,
    kept: Kept,
) -> Result<netjail_protocol::SandboxId, (ErrorCode, String)> {
    let policy = Policy::from_toml(&register.policy.toml, &register.policy.origin)
        .map_err(|e| (ErrorCode::BadPolicy, e.to_string()))?;
    // Without the peer's credentials (never on a unix socket), nobody may take a journal over.
    let uid = peer_uid.unwrap_or(u32::MAX);
    let (id, waiting) = match kept {
        Kept::Copy(previous) => broker.register_persistent(
            &register.name,
            register.pid,
            policy,
            listener,
            (uid, previous),
        ),
        Kept::Not => broker
            .register_handed_over(
                &register.name,
                (register.pid, uid),
                (policy, &register.policy.toml, &register.policy.origin),
                listener,
            )
            .map(|id| (id, 0)),
    }
    .map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
    audit::registered(
        id,
        &register.name,
        register.pid,
        &register.policy.origin,
        peer_uid,
    );
    if let Kept::Copy(Some(previous)) = kept {
        tracing::info!(sandbox = %id, previous = %previous, waiting, "sandbox registered again after a broker restart");
    }
    Ok(id)
}

/// How long the broker waits for [`ClientMessage::ListenerFd`] after answering
/// [`ClientMessage::RegisterSelf`].
pub const SELF_REGISTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A self-registration: parses the policy, takes a pidfd of the process at the other end of
/// the socket (never a pid the client claims), answers `AwaitingListener` with the broker's
/// pid, waits at most [`SELF_REGISTER_TIMEOUT`] for `ListenerFd`, takes that fd from the
/// process with `pidfd_getfd` and registers it ([`Broker::register`] refuses anything that is
/// not a seccomp listener). Neither message may carry fds.
async fn register_self(
    broker: &Arc<Broker>,
    sock: &UnixSeqpacket,
    body: RegisterSelf,
    fds: Vec<std::os::fd::OwnedFd>,
    peer_pid: Option<i32>,
    peer_uid: Option<u32>,
) -> Result<SandboxId, (ErrorCode, String)> {
    if !fds.is_empty() {
        return Err((
            ErrorCode::TooManyFds,
            format!(
                "register-self carries no fd (got {}): the broker takes the listener from the \
                 process itself",
                fds.len()
            ),
        ));
    }
    let policy = Policy::from_toml(&body.policy.toml, &body.policy.origin)
        .map_err(|e| (ErrorCode::BadPolicy, e.to_string()))?;
    let pid = peer_pid.filter(|&p| p > 0).ok_or_else(|| {
        (
            ErrorCode::Refused,
            "register-self: the process at the other end of the socket is not visible in the \
             broker's pid namespace"
                .to_string(),
        )
    })?;
    let pidfd = sys::peer_pidfd(sock.as_fd()).map_err(|e| {
        (
            ErrorCode::Refused,
            format!("register-self: cannot take a pidfd of the process at the other end of the socket: {e}"),
        )
    })?;
    let awaiting = BrokerMessage::AwaitingListener {
        broker_pid: std::process::id() as i32,
    };
    send(sock, &awaiting, &[]).await.map_err(|e| {
        (
            ErrorCode::Internal,
            format!("cannot answer register-self: {e}"),
        )
    })?;
    let received =
        match tokio::time::timeout(SELF_REGISTER_TIMEOUT, recv::<ClientMessage>(sock)).await {
            Err(_) => {
                return Err((
                    ErrorCode::TimedOut,
                    format!(
                        "no listener-fd within {} s of register-self",
                        SELF_REGISTER_TIMEOUT.as_secs()
                    ),
                ))
            }
            Ok(Err(e)) => return Err((code_of(&e), e.to_string())),
            Ok(Ok(r)) => r,
        };
    let fd = match received.msg {
        ClientMessage::ListenerFd { fd } if received.fds.is_empty() => fd,
        ClientMessage::ListenerFd { .. } => {
            return Err((
                ErrorCode::TooManyFds,
                format!(
                    "listener-fd carries no fd (got {}): it names the listener by number",
                    received.fds.len()
                ),
            ))
        }
        _ => {
            return Err((
                ErrorCode::Malformed,
                "register-self must be followed by listener-fd".into(),
            ))
        }
    };
    if fd < 0 {
        return Err((
            ErrorCode::CannotTakeListener,
            format!("listener-fd {fd} is not an fd number"),
        ));
    }
    let listener = sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => format!(
                "the broker needs ptrace access to process {pid} to take its listener: the same \
                 uid, or root; under Yama ptrace_scope=1 the process must also name the broker \
                 with PR_SET_PTRACER ({e})"
            ),
            Some(libc::EBADF) => format!("process {pid} has no fd {fd}"),
            Some(libc::ESRCH) => format!("process {pid} exited"),
            _ => format!("pidfd_getfd of fd {fd} of process {pid}: {e}"),
        };
        (ErrorCode::CannotTakeListener, why)
    })?;
    // Without the peer's credentials (never on a unix socket), nobody may take a journal over.
    let uid = peer_uid.unwrap_or(u32::MAX);
    let text = (
        policy,
        body.policy.toml.as_str(),
        body.policy.origin.as_str(),
    );
    let id = broker
        .register_handed_over(&body.name, (pid, uid), text, listener)
        .map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
    audit::self_registered(id, &body.name, pid, &body.policy.origin, peer_uid);
    Ok(id)
}
