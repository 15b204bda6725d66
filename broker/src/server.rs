//! The registration socket: clients say hello, then register sandboxes with their listener fd.
//! A peer that sends anything else gets an error reply and is disconnected; everyone else is
//! served on (invariant 8).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use netjail_policy::Policy;
use netjail_protocol::{
    recv, send, BrokerMessage, ClientMessage, ErrorCode, ErrorReply, RecvError, Register,
    PROTOCOL_VERSION,
};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::{audit, Broker};

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
        let register = match received.msg {
            ClientMessage::Register(r) => r,
            ClientMessage::Hello { .. } => {
                return reply_error(&sock, ErrorCode::Malformed, "hello sent twice".into()).await
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
        match register_one(&broker, &register, listener, peer_uid) {
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

fn register_one(
    broker: &Arc<Broker>,
    register: &Register,
    listener: std::os::fd::OwnedFd,
    peer_uid: Option<u32>,
) -> Result<netjail_protocol::SandboxId, (ErrorCode, String)> {
    let policy = Policy::from_toml(&register.policy.toml, &register.policy.origin)
        .map_err(|e| (ErrorCode::BadPolicy, e.to_string()))?;
    let id = broker
        .register(&register.name, register.pid, policy, listener)
        .map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
    audit::registered(
        id,
        &register.name,
        register.pid,
        &register.policy.origin,
        peer_uid,
    );
    Ok(id)
}
