//! The registration socket: clients say hello, then register sandboxes with their listener fd.
//! A peer that sends anything else gets an error reply and is disconnected; everyone else is
//! served on (invariant 8).
//!
//! A process that confines itself (`netjail_client::confine_self`) registers without an fd:
//! `RegisterSelf`, then `ListenerFd` with the number of its new listener, which the broker
//! takes from the process at the other end of the socket with `pidfd_getfd`, and then proves
//! that the listener is its own ([`register_self`]).
//!
//! Who may register (invariant 3): root, the broker's own user and the members of the
//! registration group ([`RegistrationConfig`]), each checked from the kernel's credentials of
//! the peer; never the broker itself, which is the peer of every connection it makes for a
//! sandbox (`ops/own.rs`).
//!
//! Bounds (invariant 7): a connection has [`HELLO_TIMEOUT`] to say hello and as long again to
//! register its first sandbox; at most [`MAX_PENDING`] connections wait so at once, and
//! [`MAX_PENDING_PER_USER`] of one user; one user keeps at most its sandbox limit plus
//! [`MAX_PENDING_PER_USER`] connections open. Root and the broker's own user are not counted
//! per user. A connection waiting for its next message holds no receive buffer: it is
//! allocated once a datagram is there.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netjail_policy::Policy;
use netjail_protocol::{
    recv, send, BrokerMessage, ClientMessage, ErrorCode, ErrorReply, Received, RecvError, Register,
    RegisterSelf, SandboxId, PROTOCOL_VERSION,
};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use crate::{ops::decode, ops::own, receiver::audit, sys, Broker};

/// How long a new connection may take to say hello, and then to register its first sandbox.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections that have not registered a sandbox yet, at most, of all users.
pub(crate) const MAX_PENDING: usize = 64;

/// Connections of one user that have not registered a sandbox yet, at most.
pub(crate) const MAX_PENDING_PER_USER: usize = 8;

/// Who may register sandboxes on the registration socket: root, the broker's own user and
/// the members of one group.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The registration group's name, for messages; empty for none.
    pub group_name: String,
    /// Its gid; `None` when there is none (then only root and the broker's user register).
    pub group: Option<u32>,
}

impl RegistrationConfig {
    /// The registration group `group`: a name looked up in `/etc/group`, or a number.
    pub fn with_group(group: &str) -> RegistrationConfig {
        let gid = crate::operators::control::group_id(group);
        if gid.is_none() {
            tracing::info!(
                group,
                "no such group: only root and the broker's user may register sandboxes"
            );
        }
        RegistrationConfig {
            group_name: group.to_string(),
            group: gid,
        }
    }

    /// No group: only root and the broker's own user register.
    pub fn owner_only() -> RegistrationConfig {
        RegistrationConfig {
            group_name: String::new(),
            group: None,
        }
    }

    fn permits(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        uid == 0
            || uid == sys::geteuid()
            || self.group.is_some_and(|g| gid == g || groups.contains(&g))
    }

    fn who_may(&self) -> String {
        let me = sys::geteuid();
        let owner = if me == 0 {
            "root".to_string()
        } else {
            format!("root and uid {me} (the broker's)")
        };
        match (self.group, self.group_name.as_str()) {
            (Some(_), name) => format!("{owner} and members of group `{name}`"),
            (None, "") => owner,
            (None, name) => format!("{owner} (the registration group `{name}` does not exist)"),
        }
    }
}

/// Binds the registration socket at `path` with mode 0660 and the broker's group, creating
/// its directory (0755) and replacing a stale socket file; refuses when another broker
/// answers there, or when the directory is one another user could write in (see
/// [`bind_registration_socket`]).
pub fn bind_socket(path: &Path) -> io::Result<UnixSeqpacketListener> {
    bind_registration_socket(path, &RegistrationConfig::owner_only())
}

/// Binds the registration socket at `path` with mode 0660 and group `config.group` (the
/// broker's own group when there is none), set as the file is created. An existing
/// directory must belong to root or the broker's user and be closed to writes by others,
/// and so must every directory above it: otherwise another user could replace the socket
/// with their own and be handed listeners.
pub fn bind_registration_socket(
    path: &Path,
    config: &RegistrationConfig,
) -> io::Result<UnixSeqpacketListener> {
    let fd = own::bind_unix(
        path,
        rustix::net::SocketType::SEQPACKET,
        0o660,
        config.group,
    )?;
    UnixSeqpacketListener::try_from(fd)
}

/// Serves the registration socket forever; only root and the broker's user register
/// ([`serve_with`] names a group).
pub async fn serve(broker: Arc<Broker>, listener: UnixSeqpacketListener) -> io::Result<()> {
    serve_with(broker, listener, Arc::new(RegistrationConfig::owner_only())).await
}

/// Serves the registration socket forever, for root, the broker's user and `config`'s group.
pub async fn serve_with(
    broker: Arc<Broker>,
    mut listener: UnixSeqpacketListener,
    config: Arc<RegistrationConfig>,
) -> io::Result<()> {
    let gate = Arc::new(Gate::default());
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
        let (broker, config, gate) = (broker.clone(), config.clone(), gate.clone());
        tokio::spawn(async move { admit(broker, config, gate, sock).await });
    }
}

/// The connections the registration socket holds, by user.
struct Gate {
    counts: Mutex<Counts>,
    /// Refused connections waiting for their first message ([`refuse_peer`]).
    grace: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            counts: Mutex::default(),
            grace: tokio::sync::Semaphore::new(MAX_IN_GRACE),
        }
    }
}

#[derive(Default)]
struct Counts {
    pending: usize,
    pending_of: HashMap<u32, usize>,
    open_of: HashMap<u32, usize>,
}

/// The places one connection takes: open (for its life) and pending (until its first
/// registration), given back when it is dropped.
struct Places {
    gate: Arc<Gate>,
    uid: u32,
    counted: bool,
    pending: bool,
}

impl Gate {
    /// Places for a new connection of `uid`; `counted` says whether per-user bounds apply.
    fn admit(self: &Arc<Self>, uid: u32, counted: bool, max_open: usize) -> Result<Places, String> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counted {
            let pending = c.pending_of.get(&uid).copied().unwrap_or(0);
            let open = c.open_of.get(&uid).copied().unwrap_or(0);
            if c.pending >= MAX_PENDING {
                return Err(format!(
                    "{MAX_PENDING} connections are waiting to register already; try again"
                ));
            }
            if pending >= MAX_PENDING_PER_USER {
                return Err(format!(
                    "uid {uid} has {pending} connections that have not registered yet, the \
                     most one user may have"
                ));
            }
            if open >= max_open {
                return Err(format!(
                    "uid {uid} has {open} connections open, the most one user may have"
                ));
            }
            c.pending += 1;
            *c.pending_of.entry(uid).or_default() += 1;
            *c.open_of.entry(uid).or_default() += 1;
        }
        Ok(Places {
            gate: self.clone(),
            uid,
            counted,
            pending: true,
        })
    }
}

fn decrement(map: &mut HashMap<u32, usize>, uid: u32) {
    if let Some(n) = map.get_mut(&uid) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&uid);
        }
    }
}

impl Places {
    /// The connection registered a sandbox: it no longer waits.
    fn registered(&mut self) {
        if self.pending && self.counted {
            let mut c = self.gate.counts.lock().unwrap_or_else(|p| p.into_inner());
            c.pending = c.pending.saturating_sub(1);
            decrement(&mut c.pending_of, self.uid);
        }
        self.pending = false;
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        self.registered();
        if self.counted {
            let mut c = self.gate.counts.lock().unwrap_or_else(|p| p.into_inner());
            decrement(&mut c.open_of, self.uid);
        }
    }
}

/// The next message: waits until a datagram is there before taking a receive buffer.
async fn next(sock: &UnixSeqpacket) -> Result<Received<ClientMessage>, RecvError> {
    if let Ok(mut ready) = sock.as_async_fd().readable().await {
        ready.retain_ready();
    }
    recv::<ClientMessage>(sock).await
}

/// [`next`], within `limit` when there is one.
async fn next_within(
    sock: &UnixSeqpacket,
    limit: Option<Duration>,
) -> Option<Result<Received<ClientMessage>, RecvError>> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, next(sock)).await.ok(),
        None => Some(next(sock).await),
    }
}

/// How long a refused connection is given to send its first message, so that the refusal
/// answers it rather than meeting a client still writing to a closed socket.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Refused connections given [`REFUSAL_GRACE`] at once; past it the answer is sent at once.
const MAX_IN_GRACE: usize = 64;

/// Refuses a connection for who is at the other end: an audit event, and an error reply
/// once the client's first message is there (read and dropped, fds and all) or a second has
/// passed, or at once when [`MAX_IN_GRACE`] refused connections wait already.
async fn refuse_peer(
    gate: &Gate,
    sock: &UnixSeqpacket,
    (reason, message): (&str, String),
    pid: Option<i32>,
    uid: Option<u32>,
) {
    audit::peer_refused(
        "registration",
        reason,
        &message,
        pid.map_or(-1, i64::from),
        uid.map_or(-1, i64::from),
    );
    if let Ok(_grace) = gate.grace.try_acquire() {
        let _ = next_within(sock, Some(REFUSAL_GRACE)).await;
    }
    reply_error(sock, ErrorCode::Refused, message).await;
}

/// Checks who is at the other end, then serves the connection.
async fn admit(
    broker: Arc<Broker>,
    config: Arc<RegistrationConfig>,
    gate: Arc<Gate>,
    sock: UnixSeqpacket,
) {
    let peer = sock.peer_cred().ok();
    let pid = peer.as_ref().and_then(|c| c.pid());
    let Some((uid, gid)) = peer.as_ref().map(|c| (c.uid(), c.gid())) else {
        return;
    };
    if own::is_this_process(pid) {
        let why = "the broker itself is at the other end: a connection it made for a sandbox; \
                   the registration socket is closed to sandboxes";
        return refuse_peer(&gate, &sock, ("broker-itself", why.into()), pid, Some(uid)).await;
    }
    let groups = sys::peer_groups(sock.as_fd()).unwrap_or_default();
    if !config.permits(uid, gid, &groups) {
        let why = format!(
            "uid {uid} may not register sandboxes: only {} may",
            config.who_may()
        );
        return refuse_peer(&gate, &sock, ("not-permitted", why), pid, Some(uid)).await;
    }
    let counted = uid != 0 && uid != sys::geteuid();
    let max_open = broker
        .max_per_user_now()
        .saturating_add(MAX_PENDING_PER_USER);
    let places = match gate.admit(uid, counted, max_open) {
        Ok(p) => p,
        Err(why) => return refuse_peer(&gate, &sock, ("too-many", why), pid, Some(uid)).await,
    };
    client(broker, sock, places, pid, uid).await
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

/// Serves a connection whose peer may register: its hello, then its registrations, until it
/// closes the connection or sends something the broker refuses (then it is told why).
async fn client(
    broker: Arc<Broker>,
    sock: UnixSeqpacket,
    mut places: Places,
    peer_pid: Option<i32>,
    uid: u32,
) {
    let peer_uid = Some(uid);
    tracing::info!(
        peer_pid = peer_pid.unwrap_or(-1),
        peer_uid = i64::from(uid),
        "client connected"
    );
    if !greet(&sock).await {
        return;
    }
    let greeted = Instant::now();
    loop {
        // Until its first registration a connection has HELLO_TIMEOUT from its hello.
        let limit = places
            .pending
            .then(|| HELLO_TIMEOUT.saturating_sub(greeted.elapsed()));
        let received = match next_within(&sock, limit).await {
            None => {
                let message = format!(
                    "nothing registered within {} s of hello",
                    HELLO_TIMEOUT.as_secs()
                );
                return reply_error(&sock, ErrorCode::TimedOut, message).await;
            }
            Some(Ok(r)) => r,
            Some(Err(RecvError::Closed)) => return,
            Some(Err(e)) => return reply_error(&sock, code_of(&e), e.to_string()).await,
        };
        let Received { msg, mut fds } = received;
        let registered = match msg {
            ClientMessage::Register(r) => handed_over(&broker, &r, &mut fds, peer_uid, Kept::Not),
            ClientMessage::RegisterKeeping(r) => {
                handed_over(&broker, &r, &mut fds, peer_uid, Kept::Copy(None))
            }
            ClientMessage::RegisterAgain(again) => {
                let kept = Kept::Copy(Some(again.previous));
                handed_over(&broker, &again.register, &mut fds, peer_uid, kept)
            }
            ClientMessage::Hello { .. } => Err((ErrorCode::Malformed, "hello sent twice".into())),
            ClientMessage::RegisterSelf(body) => {
                let fds = std::mem::take(&mut fds);
                register_self(&broker, &sock, body, fds, peer_pid, peer_uid).await
            }
            ClientMessage::ListenerFd { .. } => Err((
                ErrorCode::Malformed,
                "listener-fd without register-self: send register-self first".into(),
            )),
        };
        match registered {
            Ok(id) => {
                places.registered();
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

/// Reads the client's hello, within [`HELLO_TIMEOUT`], and welcomes it; whether the
/// connection goes on. A client that says anything else first, or nothing in time, is told
/// so.
async fn greet(sock: &UnixSeqpacket) -> bool {
    match next_within(sock, Some(HELLO_TIMEOUT)).await {
        None => {
            let message = format!("no hello within {} s", HELLO_TIMEOUT.as_secs());
            reply_error(sock, ErrorCode::TimedOut, message).await;
            false
        }
        Some(Ok(r)) => match r.msg {
            ClientMessage::Hello { version, client } if r.fds.is_empty() => {
                if version != PROTOCOL_VERSION {
                    reply_error(
                        sock,
                        ErrorCode::UnsupportedVersion,
                        format!("protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"),
                    )
                    .await;
                    return false;
                }
                tracing::debug!(%client, "hello");
                let welcome = BrokerMessage::Welcome {
                    version: PROTOCOL_VERSION,
                    broker: format!("netjaild {}", env!("CARGO_PKG_VERSION")),
                };
                send(sock, &welcome, &[]).await.is_ok()
            }
            _ => {
                reply_error(
                    sock,
                    ErrorCode::NotHello,
                    "the first message must be hello".into(),
                )
                .await;
                false
            }
        },
        Some(Err(RecvError::Closed)) => false,
        Some(Err(e)) => {
            reply_error(sock, code_of(&e), e.to_string()).await;
            false
        }
    }
}

/// A registration whose listener comes with the message (`Register`, `RegisterKeeping`,
/// `RegisterAgain`): it takes exactly one fd out of `fds`, then [`register_one`]. The
/// fds of a refused message stay in `fds`.
fn handed_over(
    broker: &Arc<Broker>,
    register: &Register,
    fds: &mut Vec<std::os::fd::OwnedFd>,
    peer_uid: Option<u32>,
    kept: Kept,
) -> Result<SandboxId, (ErrorCode, String)> {
    if fds.len() != 1 {
        let code = if fds.is_empty() {
            ErrorCode::MissingFd
        } else {
            ErrorCode::TooManyFds
        };
        return Err((
            code,
            format!("register needs exactly one fd, got {}", fds.len()),
        ));
    }
    let listener = fds.remove(0);
    register_one(broker, register, listener, peer_uid, kept)
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
    .map_err(|e| (register_code(&e), e.to_string()))?;
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

/// The error code of a refused registration.
fn register_code(e: &crate::RegisterError) -> ErrorCode {
    use crate::RegisterError as E;
    match e {
        E::AlreadyRegistered(_) | E::TooManySandboxes { .. } => ErrorCode::Refused,
        E::NotAListener(_) => ErrorCode::Malformed,
        _ => ErrorCode::Internal,
    }
}

/// How long the broker waits for [`ClientMessage::ListenerFd`] after answering
/// [`ClientMessage::RegisterSelf`], and then for the proof.
pub(crate) const SELF_REGISTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A self-registration: parses the policy, takes a pidfd of the process at the other end of
/// the socket (never a pid the client claims), answers `AwaitingListener` with the broker's
/// pid, waits at most [`SELF_REGISTER_TIMEOUT`] for `ListenerFd`, takes that fd from the
/// process with `pidfd_getfd`, checks that it is a seccomp listener not registered yet,
/// answers `ProveListener` and waits (as long again) for the proof ([`await_proof`]): the
/// first call the listener receives must be the proof call, made by the process at the other
/// end of the socket. Only then is the listener registered. Neither message may carry fds.
///
/// Without the proof, the process at the other end could be one that holds listeners for
/// others (a broker of its own, a launcher keeping a copy) and that made the connection for
/// a confined process, which would then have one of those listeners registered again here,
/// by a policy of its choosing.
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
    let fd = listener_number(sock).await?;
    let listener = take_listener((pid, pidfd.as_fd()), fd)?;
    check_taken(broker, listener.as_fd(), (pid, pidfd.as_fd()), peer_uid)?;
    prove(sock, &listener, (pid, &pidfd), fd, peer_uid).await?;
    // Without the peer's credentials (never on a unix socket), nobody may take a journal over.
    let uid = peer_uid.unwrap_or(u32::MAX);
    let text = (
        policy,
        body.policy.toml.as_str(),
        body.policy.origin.as_str(),
    );
    let id = broker
        .register_handed_over(&body.name, (pid, uid), text, listener)
        .map_err(|e| (register_code(&e), e.to_string()))?;
    audit::self_registered(id, &body.name, pid, &body.policy.origin, peer_uid);
    Ok(id)
}

/// Answers `RegisterSelf` with `AwaitingListener` (the broker's pid) and reads, within
/// [`SELF_REGISTER_TIMEOUT`], `ListenerFd`: the number of the listener in the fd table of
/// the process at the other end. The message carries no fd.
async fn listener_number(sock: &UnixSeqpacket) -> Result<i32, (ErrorCode, String)> {
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
    Ok(fd)
}

/// Takes fd `fd` of process `pid` with `pidfd_getfd`; the refusal says why in words for the
/// client (no ptrace access, no such fd, the process exited).
fn take_listener(
    (pid, pidfd): (i32, BorrowedFd<'_>),
    fd: i32,
) -> Result<std::os::fd::OwnedFd, (ErrorCode, String)> {
    sys::pidfd_getfd(pidfd, fd).map_err(|e| {
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
    })
}

/// Refuses an fd taken from process `pid` before it is polled for a proof, unless it is a
/// seccomp listener, not registered yet, and the only listener the process holds.
fn check_taken(
    broker: &Broker,
    listener: BorrowedFd<'_>,
    (pid, pidfd): (i32, BorrowedFd<'_>),
    peer_uid: Option<u32>,
) -> Result<(), (ErrorCode, String)> {
    // Neither another kind of fd nor a listener the broker serves already is ever polled for
    // a proof: the broker would take a call meant for that sandbox's receiver.
    let kind = sys::fd_kind(listener);
    if kind != sys::SECCOMP_LISTENER_KIND {
        let e = crate::RegisterError::NotAListener(kind);
        return Err((register_code(&e), e.to_string()));
    }
    broker
        .check_unregistered(listener)
        .map_err(|e| (register_code(&e), e.to_string()))?;
    // A process that holds the listeners of other processes (a broker or launcher serving
    // several sandboxes) is no self-confining process: polling one of those listeners for a
    // proof would take a call its receiver serves.
    let others = own::others_held(pid, pidfd, sys::SECCOMP_LISTENER_KIND, listener);
    match others {
        Ok(0) => Ok(()),
        Ok(n) => {
            let why = format!(
                "process {pid} holds {n} other seccomp listener(s): it serves other sandboxes, and \
                 a process registering itself holds its own listener only"
            );
            audit::peer_refused(
                "registration",
                "holds-other-listeners",
                &why,
                i64::from(pid),
                peer_uid.map_or(-1, i64::from),
            );
            Err((ErrorCode::CannotTakeListener, why))
        }
        Err(e) => Err((
            ErrorCode::CannotTakeListener,
            format!("cannot read the fds of process {pid}: {e}"),
        )),
    }
}

/// Asks the client for the proof (`ProveListener` with a nonce) and waits for it on the
/// blocking pool, at most [`SELF_REGISTER_TIMEOUT`] ([`await_proof`]); a missing proof is
/// audited. `fd` is the listener's number in process `pid`.
async fn prove(
    sock: &UnixSeqpacket,
    listener: &std::os::fd::OwnedFd,
    (pid, pidfd): (i32, &std::os::fd::OwnedFd),
    fd: i32,
    peer_uid: Option<u32>,
) -> Result<(), (ErrorCode, String)> {
    let nonce = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        (pid, fd, Instant::now()),
    );
    send(sock, &BrokerMessage::ProveListener { nonce }, &[])
        .await
        .map_err(|e| {
            (
                ErrorCode::Internal,
                format!("cannot ask for the proof: {e}"),
            )
        })?;
    let (copy, pidfd_copy) = match (listener.try_clone(), pidfd.try_clone()) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(e), _) | (_, Err(e)) => return Err((ErrorCode::Internal, e.to_string())),
    };
    let deadline = Instant::now() + SELF_REGISTER_TIMEOUT;
    let proved = tokio::task::spawn_blocking(move || {
        await_proof(copy.as_fd(), (pid, pidfd_copy.as_fd()), nonce, deadline)
    })
    .await
    .unwrap_or_else(|e| Err(format!("the proof could not be awaited: {e}")));
    if let Err(why) = proved {
        audit::peer_refused(
            "registration",
            "no-proof",
            &why,
            i64::from(pid),
            peer_uid.map_or(-1, i64::from),
        );
        return Err((ErrorCode::CannotTakeListener, why));
    }
    Ok(())
}

/// Waits until `deadline` for the first call on `listener` and answers it: 0 when it is the
/// proof (`connect(-1, nonce, 0)`, `netjail_protocol::PROOF_SYSCALL`) made by a thread of
/// process `peer` (still the process that connected: its pidfd is alive), `EPERM` otherwise.
/// A notification comes on a listener only from a task under its filter, so a proof shows
/// that the listener is the process's own.
fn await_proof(
    listener: BorrowedFd<'_>,
    (peer, pidfd): (i32, BorrowedFd<'_>),
    nonce: u64,
    deadline: Instant,
) -> Result<(), String> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "process {peer} did not prove within {} s that the listener is its own",
                SELF_REGISTER_TIMEOUT.as_secs()
            ));
        }
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&listener, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("poll of the listener: {e}")),
        }
        let revents = fds[0].revents();
        if !revents.contains(PollFlags::IN) {
            return Err("no process uses the listener's filter any more".into());
        }
        let n = match sys::notif_recv(listener) {
            Ok(n) => n,
            // Another copy's receiver took it (ENOENT), or the caller went away.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(format!("cannot receive from the listener: {e}")),
        };
        let tgid = thread_group(n.pid);
        let is_proof = decode::syscall(n.arch, n.nr) == Some(decode::Syscall::Connect)
            && n.args[0] as i32 == -1
            && n.args[1] == nonce
            && n.args[2] as u32 == 0;
        let from_peer = tgid == Some(peer) && sys::pidfd_alive(pidfd);
        let valid = sys::notif_id_valid(listener, n.id);
        let proved = is_proof && from_peer && valid;
        let errno = if proved { 0 } else { libc::EPERM };
        let _ = sys::notif_send(listener, n.id, 0, errno);
        if proved {
            return Ok(());
        }
        return Err(format!(
            "the first call on the listener was not the proof of process {peer}: {} from \
             thread {} of process {}",
            decode::syscall(n.arch, n.nr).map_or("another call".to_string(), |c| format!("{c:?}")
                .to_lowercase()),
            n.pid,
            tgid.map_or("unknown".to_string(), |t| t.to_string())
        ));
    }
}

/// The thread group (process) of thread `tid`, from `/proc/TID/status`.
fn thread_group(tid: u32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The broker itself is never a client of its registration socket: a connection from
    /// this very process (which is what a call the broker performs for a sandbox looks like)
    /// is refused with a message, whatever the user.
    #[tokio::test]
    async fn inv3_the_broker_itself_never_registers() {
        let dir = crate::testing::fresh_dir("server", "itself");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broker.sock");
        let listener = bind_socket(&path).unwrap();
        let task = tokio::spawn(serve(Broker::new(), listener));
        let sock = UnixSeqpacket::connect(&path).await.unwrap();
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: "test".into(),
        };
        send(&sock, &hello, &[]).await.unwrap();
        match recv::<BrokerMessage>(&sock).await.unwrap().msg {
            BrokerMessage::Error(e) => {
                assert_eq!(e.code, ErrorCode::Refused);
                assert!(e.message.contains("the broker itself"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn who_may_register() {
        let me = sys::geteuid();
        let none = RegistrationConfig::owner_only();
        assert!(none.permits(0, 0, &[]));
        assert!(none.permits(me, me, &[]));
        let group = RegistrationConfig {
            group_name: "tenants".into(),
            group: Some(4800),
        };
        assert!(group.permits(4801, 4800, &[]));
        assert!(group.permits(4801, 4801, &[4800]));
        if me != 4801 {
            assert!(!group.permits(4801, 4801, &[4802]));
            assert!(!none.permits(4801, 4800, &[4800]));
        }
        assert!(group.who_may().contains("group `tenants`"));
    }

    #[test]
    fn a_user_has_few_pending_connections_and_root_is_not_counted() {
        let gate = Arc::new(Gate::default());
        let mut held: Vec<Places> = (0..MAX_PENDING_PER_USER)
            .map(|_| gate.admit(4801, true, 100).unwrap())
            .collect();
        let refused = gate.admit(4801, true, 100).err().unwrap();
        assert!(refused.contains("have not registered yet"), "{refused}");
        assert!(gate.admit(4802, true, 100).is_ok(), "another user");
        assert!(gate.admit(0, false, 0).is_ok(), "root");
        // A registration frees the pending place but keeps the connection counted.
        held[0].registered();
        assert!(gate.admit(4801, true, 100).is_ok());
        let open = gate.admit(4801, true, MAX_PENDING_PER_USER).err().unwrap();
        assert!(open.contains("connections open"), "{open}");
        held.clear();
        assert!(gate.admit(4801, true, 1).is_ok(), "all given back");
    }
}
