//! The control socket: operators list sandboxes and held calls, answer held calls, and watch
//! decisions live (protocol in `netjail_protocol::control`).
//!
//! Anyone may connect (the socket is mode 0666) so that a refusal can say why: the broker
//! reads the peer's credentials from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`, taken when
//! the peer connected, so they cannot be changed afterwards) and serves only root, the
//! broker's own user (an unprivileged broker's owner), and members of the operator group. Everyone else gets [`ErrorCode::NotOperator`] with a sentence
//! saying who may operate, the attempt is audited, and the connection is closed.
//!
//! A confined process is never an operator, whatever its user: the broker refuses a peer
//! that is the broker itself (the peer of every connection it makes for a sandbox), a peer
//! it cannot see (another pid namespace: it cannot tell), and a peer that holds a seccomp
//! listener (it performs calls for confined processes: the broker embedded in `netjail run`,
//! a program embedding the library), see `ops/own.rs`. The operator group should be one of its
//! own: `netjaild` refuses to start when it is the registration group.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use netjail_protocol::control::{Event, OperatorReply, OperatorRequest, StatusReport};
use netjail_protocol::{recv, send, ErrorCode, ErrorReply, Received, RecvError, PROTOCOL_VERSION};
use tokio::sync::broadcast::error::RecvError as EventError;
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::operators::AnswerError;
use crate::{sys, Broker};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections that have not said hello yet, at most: anyone may connect, so a local user
/// opening connections and saying nothing holds at most this many fds, each for at most
/// [`HELLO_TIMEOUT`]. Past it new connections are closed at once.
const MAX_UNGREETED: usize = 64;

/// Who may operate.
#[derive(Debug, Clone)]
pub(crate) struct ControlConfig {
    /// The operator group's name, for messages.
    pub group_name: String,
    /// Its gid; `None` when no such group exists (then only root may operate).
    pub group: Option<u32>,
}

impl ControlConfig {
    /// The operator group `group`: a name looked up in `/etc/group`, or a number.
    pub(crate) fn with_group(group: &str) -> ControlConfig {
        let gid = group_id(group);
        if gid.is_none() {
            tracing::info!(group, "no such group: only root may use the control socket");
        }
        ControlConfig {
            group_name: group.to_string(),
            group: gid,
        }
    }
}

/// The gid of group `group`: a number, or a name looked up in `/etc/group`.
pub(crate) fn group_id(group: &str) -> Option<u32> {
    group.parse::<u32>().ok().or_else(|| gid_of(group))
}

/// The gid of group `name` in `/etc/group`.
fn gid_of(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// Binds the control socket at `path`, mode 0666 (the broker checks each peer itself),
/// creating its directory and replacing a stale socket; refuses when a broker answers there.
pub(crate) fn bind_control_socket(path: &Path) -> io::Result<UnixSeqpacketListener> {
    let fd = crate::ops::own::bind_unix(path, rustix::net::SocketType::SEQPACKET, 0o666, None)?;
    UnixSeqpacketListener::try_from(fd)
}

/// Serves operators forever.
pub(crate) async fn serve_control(
    broker: Arc<Broker>,
    mut listener: UnixSeqpacketListener,
    config: Arc<ControlConfig>,
) -> io::Result<()> {
    let ungreeted = Arc::new(tokio::sync::Semaphore::new(MAX_UNGREETED));
    loop {
        let sock = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                tracing::error!(error = %e, "out of fds; pausing accept on the control socket");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(slot) = ungreeted.clone().try_acquire_owned() else {
            tracing::warn!("too many connections waiting to say hello; one closed");
            continue;
        };
        let broker = broker.clone();
        let config = config.clone();
        tokio::spawn(async move { operator(broker, config, sock, slot).await });
    }
}

/// The peer as the kernel names it.
struct Peer {
    uid: u32,
    gid: u32,
    pid: i32,
    groups: Vec<u32>,
}

impl Peer {
    fn of(sock: &UnixSeqpacket) -> Option<Peer> {
        let cred = sock.peer_cred().ok()?;
        let groups = sys::peer_groups(sock.as_fd()).unwrap_or_default();
        Some(Peer {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid().unwrap_or(-1),
            groups,
        })
    }

    /// How the audit and answers name an operator, or `None` for a peer that is not one:
    /// root, the broker's own user (who may do anything to the broker anyway: an
    /// unprivileged broker's owner operates it), and the members of the operator group.
    fn operator(&self, config: &ControlConfig) -> Option<String> {
        if self.uid == 0 || self.uid == rustix::process::geteuid().as_raw() {
            return Some(format!("uid {}", self.uid));
        }
        let gid = config.group?;
        (self.gid == gid || self.groups.contains(&gid))
            .then(|| format!("uid {} (group {})", self.uid, config.group_name))
    }
}

/// Refuses a peer that may be a confined process, whatever its user: the broker itself, a
/// process the broker cannot see, one that holds a seccomp listener (read on the blocking
/// pool: `/proc/PID/fd`), or one that is gone. A short reason and a sentence.
async fn confined_peer(sock: &UnixSeqpacket, peer: &Peer) -> Result<(), (&'static str, String)> {
    let pid = peer.pid;
    if crate::ops::own::is_this_process(Some(pid)) {
        return Err((
            "broker-itself",
            "the broker itself is at the other end: a connection it made for a sandbox; a \
             confined process is never an operator"
                .into(),
        ));
    }
    if pid <= 0 {
        return Err((
            "invisible",
            "the process at the other end is not visible in the broker's pid namespace: the \
             broker cannot tell that it is not confined"
                .into(),
        ));
    }
    let pidfd = sys::peer_pidfd(sock.as_fd())
        .map_err(|e| ("gone", format!("cannot take a pidfd of process {pid}: {e}")))?;
    let held =
        tokio::task::spawn_blocking(move || crate::ops::own::holds_a_listener(pid, pidfd.as_fd()))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    match held {
        Ok(false) => Ok(()),
        Ok(true) => Err((
            "holds-a-listener",
            format!(
                "process {pid} holds a seccomp listener: it performs calls for confined \
                 processes (a broker or launcher), so this connection may be one of theirs; \
                 a confined process is never an operator"
            ),
        )),
        Err(e) => Err((
            "unknown",
            format!("cannot read the fds of process {pid} to tell that it is not confined: {e}"),
        )),
    }
}

async fn reply(sock: &UnixSeqpacket, msg: &OperatorReply) -> bool {
    send(sock, msg, &[]).await.is_ok()
}

async fn error(sock: &UnixSeqpacket, code: ErrorCode, message: String) -> bool {
    reply(sock, &OperatorReply::Error(ErrorReply { code, message })).await
}

/// Serves one connection to the control socket: checks the peer, reads its hello, then
/// answers its requests until it closes the connection or watches.
async fn operator(
    broker: Arc<Broker>,
    config: Arc<ControlConfig>,
    sock: UnixSeqpacket,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(peer) = Peer::of(&sock) else {
        return;
    };
    // Told at once (a launcher that made the connection may exit soon), answered after the
    // hello, so that the client reads the answer instead of a closed socket.
    let confined = confined_peer(&sock, &peer).await;
    let first = tokio::time::timeout(HELLO_TIMEOUT, recv::<OperatorRequest>(&sock)).await;
    drop(slot);
    if let Err((reason, why)) = confined {
        crate::receiver::audit::peer_refused(
            "control",
            reason,
            &why,
            i64::from(peer.pid),
            i64::from(peer.uid),
        );
        let _ = error(&sock, ErrorCode::NotOperator, why).await;
        return;
    }
    let Some(client) = hello(&sock, first).await else {
        return;
    };
    let Some(who) = peer.operator(&config) else {
        not_an_operator(&sock, &peer, &config, &client).await;
        return;
    };
    tracing::info!(target: crate::receiver::audit::TARGET, operator = %who, peer_pid = peer.pid, client = %client, "operator connected");
    let welcome = OperatorReply::Welcome {
        version: PROTOCOL_VERSION,
        broker: format!("netjaild {}", env!("CARGO_PKG_VERSION")),
        operator: who.clone(),
    };
    if !reply(&sock, &welcome).await {
        return;
    }
    while let Some(request) = next_request(&sock).await {
        if !serve_request(&broker, &sock, request, &who).await {
            return;
        }
    }
}

/// The client's name from the first message of a connection (`first`, read within
/// [`HELLO_TIMEOUT`]), if it is a hello of this protocol version with no fds; else the
/// client is told what is wrong (when it can be) and `None`.
async fn hello(
    sock: &UnixSeqpacket,
    first: Result<Result<Received<OperatorRequest>, RecvError>, tokio::time::error::Elapsed>,
) -> Option<String> {
    match first {
        Err(_) => {
            let _ = error(sock, ErrorCode::NotHello, "no hello within 5 s".into()).await;
            None
        }
        Ok(Err(e)) => {
            if let Some(code) = e.error_code() {
                let _ = error(sock, code, format!("cannot read the hello: {e}")).await;
            }
            None
        }
        Ok(Ok(r)) if !r.fds.is_empty() => {
            let _ = error(
                sock,
                ErrorCode::TooManyFds,
                "the control socket takes no fds".into(),
            )
            .await;
            None
        }
        Ok(Ok(r)) => match r.msg {
            OperatorRequest::Hello { version, client } => {
                if version != PROTOCOL_VERSION {
                    let msg = format!("protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})");
                    let _ = error(sock, ErrorCode::UnsupportedVersion, msg).await;
                    return None;
                }
                Some(client)
            }
            _ => {
                let _ = error(sock, ErrorCode::NotHello, "say hello first".into()).await;
                None
            }
        },
    }
}

/// Refuses a peer that is not an operator: audited, and told who may operate.
async fn not_an_operator(sock: &UnixSeqpacket, peer: &Peer, config: &ControlConfig, client: &str) {
    tracing::warn!(
        target: crate::receiver::audit::TARGET,
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid,
        client = %client,
        "operator refused"
    );
    let owner = rustix::process::geteuid().as_raw();
    let root = if owner == 0 {
        "root".to_string()
    } else {
        format!("root, uid {owner} (the broker's)")
    };
    let who_may = match config.group {
        Some(_) => format!("{root} and members of group `{}`", config.group_name),
        None => format!(
            "{root} (the operator group `{}` does not exist)",
            config.group_name
        ),
    };
    let msg = format!(
        "uid {} is not an operator: only {who_may} may use the control socket",
        peer.uid
    );
    let _ = error(sock, ErrorCode::NotOperator, msg).await;
}

/// The operator's next request; `None` when the connection ends: closed by the operator, or
/// after a message the broker cannot take (with fds, or unreadable), of which the operator
/// is told when it can be.
async fn next_request(sock: &UnixSeqpacket) -> Option<OperatorRequest> {
    match recv::<OperatorRequest>(sock).await {
        Ok(r) if r.fds.is_empty() => Some(r.msg),
        Ok(_) => {
            let _ = error(
                sock,
                ErrorCode::TooManyFds,
                "the control socket takes no fds".into(),
            )
            .await;
            None
        }
        Err(RecvError::Closed) => None,
        Err(e) => {
            if let Some(code) = e.error_code() {
                let _ = error(sock, code, format!("cannot read the request: {e}")).await;
            }
            None
        }
    }
}

/// Answers one request of operator `who`; whether the connection goes on (not after a
/// watch, which ends with it, nor once a reply could not be sent).
async fn serve_request(
    broker: &Arc<Broker>,
    sock: &UnixSeqpacket,
    request: OperatorRequest,
    who: &str,
) -> bool {
    match request {
        OperatorRequest::Hello { .. } => {
            error(sock, ErrorCode::Malformed, "hello was already said".into()).await
        }
        OperatorRequest::Status => status(broker, sock).await,
        OperatorRequest::Pending => {
            let mut ok = true;
            for p in broker.operators().pending() {
                ok = ok && reply(sock, &OperatorReply::Pending(p)).await;
            }
            ok && reply(sock, &OperatorReply::End).await
        }
        OperatorRequest::Grant {
            id,
            duration,
            scope,
        } => answer(broker, sock, id, true, duration, scope, who).await,
        OperatorRequest::Deny { id, always, scope } => {
            let duration = if always {
                netjail_protocol::control::GrantDuration::Always
            } else {
                netjail_protocol::control::GrantDuration::Once
            };
            answer(broker, sock, id, false, duration, scope, who).await
        }
        OperatorRequest::Watch { decisions } => {
            watch(broker, sock, decisions, who).await;
            false
        }
        OperatorRequest::Metrics => metrics(broker, sock).await,
        OperatorRequest::Reload => reload(broker, sock, who).await,
    }
}

async fn status(broker: &Broker, sock: &UnixSeqpacket) -> bool {
    let ops = broker.operators();
    let sandboxes = broker.sandbox_infos();
    let report = StatusReport {
        broker: format!("netjaild {}", env!("CARGO_PKG_VERSION")),
        uptime_ms: ops.uptime().as_millis() as u64,
        operators: ops.watching(),
        sandboxes: sandboxes.len() as u32,
        pending: ops.pending().len() as u32,
        grants: ops.rule_count(),
        counters: ops.counters(),
    };
    if !reply(sock, &OperatorReply::Status(report)).await {
        return false;
    }
    for s in sandboxes {
        if !reply(sock, &OperatorReply::Sandbox(s)).await {
            return false;
        }
    }
    reply(sock, &OperatorReply::End).await
}

/// Bytes of one piece of the metrics text: one piece with its framing fits a datagram
/// (`MAX_MESSAGE_SIZE`, 64 KiB), whatever the text grows to.
const METRICS_PIECE: usize = 32 * 1024;

/// The metrics in the Prometheus text format: the pieces, then `End`.
async fn metrics(broker: &Broker, sock: &UnixSeqpacket) -> bool {
    let text = crate::metrics::render(&broker.metrics_snapshot());
    for piece in crate::metrics::split(&text, METRICS_PIECE) {
        if !reply(sock, &OperatorReply::Metrics(piece.to_string())).await {
            return false;
        }
    }
    reply(sock, &OperatorReply::End).await
}

/// Reads the policy files again (on the blocking pool: it reads files) and answers with one
/// item per file or sandbox concerned.
async fn reload(broker: &Arc<Broker>, sock: &UnixSeqpacket, who: &str) -> bool {
    let b = broker.clone();
    let items = match tokio::task::spawn_blocking(move || b.reload()).await {
        Ok(items) => items,
        Err(e) => return error(sock, ErrorCode::Internal, format!("the reload failed: {e}")).await,
    };
    let failed = items.iter().filter(|i| i.outcome.failed()).count();
    tracing::info!(target: crate::receiver::audit::TARGET, operator = %who, items = items.len(), failed, "policies reloaded");
    for item in items {
        if !reply(sock, &OperatorReply::Reloaded(item)).await {
            return false;
        }
    }
    reply(sock, &OperatorReply::End).await
}

async fn answer(
    broker: &Broker,
    sock: &UnixSeqpacket,
    id: netjail_protocol::control::RequestId,
    allow: bool,
    duration: netjail_protocol::control::GrantDuration,
    scope: netjail_protocol::control::GrantScope,
    who: &str,
) -> bool {
    match broker.operators().answer(id, allow, duration, scope, who) {
        Ok(resolution) => reply(sock, &OperatorReply::Resolved(resolution)).await,
        Err(AnswerError::NotPending(msg)) => error(sock, ErrorCode::NotPending, msg).await,
        Err(AnswerError::Refused(msg)) => error(sock, ErrorCode::Refused, msg).await,
    }
}

/// Streams events until the operator closes the connection. While it lasts the operator is
/// present: held calls wait for an answer.
async fn watch(broker: &Broker, sock: &UnixSeqpacket, decisions: bool, who: &str) {
    let ops = broker.operators();
    let (mut rx, _presence) = ops.watch(decisions);
    tracing::info!(target: crate::receiver::audit::TARGET, operator = %who, decisions, "operator watching");
    // Subscribed first, listed second: a call held in between is sent twice at worst,
    // never missed.
    for p in ops.pending() {
        if !reply(sock, &OperatorReply::Event(Event::Pending(p))).await {
            return;
        }
    }
    loop {
        tokio::select! {
            event = rx.recv() => {
                let event = match event {
                    Ok(e) => e,
                    Err(EventError::Lagged(missed)) => Event::Lagged { missed },
                    Err(EventError::Closed) => return,
                };
                if !reply(sock, &OperatorReply::Event(event)).await {
                    return;
                }
            }
            // A watch only streams: anything the operator sends, or its close, ends it.
            _ = recv::<OperatorRequest>(sock) => {
                tracing::info!(target: crate::receiver::audit::TARGET, operator = %who, "operator stopped watching");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A confined process is never an operator: a connection from the broker's own process
    /// (what a unix connect it performs for a sandbox looks like) is refused after its hello,
    /// with the reason, although its user (root, or the broker's) would operate.
    #[tokio::test]
    async fn f3_the_broker_itself_is_never_an_operator() {
        let dir = crate::testing::fresh_dir("control", "itself");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let listener = bind_control_socket(&path).unwrap();
        let config = Arc::new(ControlConfig::with_group("0"));
        let task = tokio::spawn(serve_control(Broker::new(), listener, config));
        let sock = UnixSeqpacket::connect(&path).await.unwrap();
        let hello = OperatorRequest::Hello {
            version: PROTOCOL_VERSION,
            client: "test".into(),
        };
        send(&sock, &hello, &[]).await.unwrap();
        match recv::<OperatorReply>(&sock).await.unwrap().msg {
            OperatorReply::Error(e) => {
                assert_eq!(e.code, ErrorCode::NotOperator);
                assert!(e.message.contains("the broker itself"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
