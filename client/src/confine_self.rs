//! `confine_self`: a process confines *itself* and hands its own seccomp listener to a running
//! broker (a zygote, before it loads untrusted code; issue 6).
//!
//! `netjail run` confines a child between `fork` and `exec`; this module does the same to the
//! calling process, which then goes on running (and starts its children, which inherit the
//! confinement: rule D4).
//!
//! ```no_run
//! use std::path::Path;
//! use netjail_client::confine_self::confine_self;
//!
//! let policy = netjail_policy::Policy::from_toml(
//!     "name = \"zygote\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:8080\"]\n",
//!     "code:zygote",
//! )?;
//! match confine_self(&policy, Path::new("/run/netjail/broker.sock")) {
//!     Ok(sandbox) => eprintln!("confined as {sandbox}"),
//!     // Confined, but no broker holds the listener: every decided call fails (ENOSYS).
//!     Err(e) if e.is_confined() => eprintln!("confined, without a broker: {e}"),
//!     // Nothing changed: the process is NOT confined. Do not load untrusted code.
//!     Err(e) => panic!("not confined: {e}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does, step by step
//!
//! 1. Refuses a process with more than one thread (counted in `/proc/self/task`):
//!    capabilities, `no_new_privs`, Landlock and the seccomp filter are per thread, so the
//!    other threads would stay free. Call it before starting any thread (a zygote confines
//!    before it starts its runtime; a tokio runtime, a logging thread, a thread pool all count).
//! 2. Prepares everything that can fail without changing the process: compiles the seccomp
//!    filter of the policy, builds the Landlock ruleset, computes the capabilities to drop.
//!    An error here leaves the process exactly as it was, and **unconfined**
//!    ([`ConfineError::is_confined`] is false).
//! 3. Connects to the broker's registration socket (`SOCK_SEQPACKET`), checks that the
//!    broker runs as root or as this process's user (anyone else would get the listener, and
//!    with it the process's network: nothing is sent to them), says hello, and sends
//!    `RegisterSelf` with the policy text (no fd). The broker identifies the process from the
//!    socket (`SO_PEERPIDFD`), never from a claimed pid, and answers `AwaitingListener` with
//!    its pid.
//! 4. `prctl(PR_SET_PTRACER, broker_pid)`; then the launcher's own confine steps: drop the
//!    capabilities, `prctl(PR_SET_NO_NEW_PRIVS)`, Landlock, and
//!    `seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER | WAIT_KILLABLE_RECV)`, which returns the
//!    listener fd N.
//! 5. Tells the broker N in a `ListenerFd` message, sent with `sendto` on the connected
//!    socket with no destination and `MSG_NOSIGNAL`: like `write(2)` the filter leaves that in
//!    the kernel, while its own `sendmsg` would already be trapped (and a listener fd in
//!    `SCM_RIGHTS` would need it). The broker takes the listener with `pidfd_getfd` and answers
//!    `ProveListener` (read with `read(2)`, which is not trapped either); the process closes
//!    its own copy and makes the proof call `connect(-1, nonce, 0)`, which its filter hands to
//!    the listener: the broker sees the listener is this process's own, answers the call with
//!    0, and then `Registered`.
//! 6. Always, success or failure: closes the process's own copy of the listener (confined code
//!    must never hold its listener: it could answer its own notifications) and resets
//!    `PR_SET_PTRACER` to 0.
//!
//! # Fail closed
//!
//! Once step 2 has passed, the process ends up confined, whatever happens: with no broker at
//! the path, a broker that refuses, stalls past the timeout (10 s by default,
//! [`ConfineSelf::timeout`]) or dies, the filter is installed anyway, the listener closed, and
//! the error returned says so ([`ConfineError::is_confined`] is true). Every call the broker
//! would have decided (`connect`, `bind`, `listen`, `sendmsg`, `sendmmsg`, `sendto` with a
//! destination) then fails with `ENOSYS`, the kernel's answer when a filter's listener is gone;
//! what the filter decides alone (denied socket families, `io_uring`, ...) is denied as
//! usual. There is no way back: register a fresh process instead.
//!
//! Only errors of step 1 and 2, and a kernel refusing one of the confine steps themselves
//! (`seccomp` before Linux 5.19, say), leave the process unconfined. **Always check
//! [`ConfineError::is_confined`]** before going on after an error.
//!
//! # Privileges
//!
//! Nothing here needs root. The broker takes the listener with `pidfd_getfd`, which needs
//! ptrace access to the process: a broker of the same uid (with at least the capabilities
//! the process keeps) or root. A broker of another unprivileged uid cannot, and the process
//! ends up confined with no broker. Under Yama `ptrace_scope = 1` a non-root broker may only
//! trace its descendants, or a process that named it with `prctl(PR_SET_PTRACER)`: that is
//! why step 4 names the broker (without Yama the call says `EINVAL`, which is ignored), and
//! the ptracer is reset once the broker has the listener. Under `ptrace_scope = 2` only a
//! broker with `CAP_SYS_PTRACE` can take it, under 3 none. Connecting needs write access to
//! the broker's socket (mode 0660 by default).
//!
//! What needs root (or `CAP_SYS_PTRACE` in the broker): serving processes of *other* users
//! from one broker. The process itself never needs a privilege: `no_new_privs`, Landlock
//! and a seccomp filter installed after `no_new_privs` are open to every user, and dropping
//! capabilities it does not have changes nothing.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netjail_policy::Policy;
use netjail_protocol::{
    codec, BrokerMessage, ClientMessage, ErrorCode, PolicySource, RegisterSelf, SandboxId,
    MAX_MESSAGE_SIZE, PROTOCOL_VERSION,
};

use crate::{filter, landlock, sys};

/// The broker socket [`ConfineSelf`] uses unless told otherwise.
pub const DEFAULT_BROKER: &str = "/run/netjail/broker.sock";

/// How long [`ConfineSelf`] waits for the broker unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Confines the calling process with `policy` and registers it with the broker listening at
/// `broker`, with the defaults of [`ConfineSelf`]. See [the module](self) for the steps and
/// for what an error means.
///
/// # Errors
///
/// A [`ConfineError`]; [`ConfineError::is_confined`] says whether the process is confined
/// all the same.
///
/// # Example
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = netjail_policy::Policy::from_toml("name = \"z\"\ndefault = \"deny\"\n", "code:z")?;
/// let sandbox = netjail_client::confine_self(&policy, "/run/netjail/broker.sock".as_ref())?;
/// println!("confined as {sandbox}");
/// # Ok(()) }
/// ```
pub fn confine_self(policy: &Policy, broker: &Path) -> Result<SandboxId, ConfineError> {
    ConfineSelf::new(policy).broker(broker).confine()
}

/// The options of a self-confinement: a builder ending in [`ConfineSelf::confine`].
///
/// ```no_run
/// use std::time::Duration;
/// use netjail_client::ConfineSelf;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = netjail_policy::Policy::from_toml("name = \"z\"\ndefault = \"deny\"\n", "code:z")?;
/// let sandbox = ConfineSelf::new(&policy)
///     .broker("/run/netjail/broker.sock")
///     .name("zygote")
///     .timeout(Duration::from_secs(2))
///     .confine()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConfineSelf<'a> {
    policy: &'a Policy,
    source: Option<PolicySource>,
    broker: PathBuf,
    name: Option<String>,
    timeout: Duration,
    allow_root: bool,
}

impl<'a> ConfineSelf<'a> {
    /// Options for confining this process with `policy`: the broker at [`DEFAULT_BROKER`],
    /// the program's file name as the sandbox name, [`DEFAULT_TIMEOUT`], and the policy's
    /// canonical text ([`Policy::to_toml`]) from origin `code:NAME`.
    ///
    /// ```
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// let options = netjail_client::ConfineSelf::new(&policy);
    /// ```
    pub fn new(policy: &'a Policy) -> ConfineSelf<'a> {
        ConfineSelf {
            policy,
            source: None,
            broker: PathBuf::from(DEFAULT_BROKER),
            name: None,
            timeout: DEFAULT_TIMEOUT,
            allow_root: false,
        }
    }

    /// Confine the process even though it runs as root (one of its uids is 0): see
    /// [`crate::root`] for what a root sandbox gets and what it keeps. Without it a root
    /// process is refused ([`ConfineError::Root`]) and left unconfined.
    ///
    /// ```
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// let options = netjail_client::ConfineSelf::new(&policy).allow_root(true);
    /// ```
    pub fn allow_root(mut self, allowed: bool) -> ConfineSelf<'a> {
        self.allow_root = allowed;
        self
    }

    /// The broker's registration socket.
    ///
    /// ```
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// let options = netjail_client::ConfineSelf::new(&policy).broker("/tmp/broker.sock");
    /// ```
    pub fn broker(mut self, path: impl Into<PathBuf>) -> ConfineSelf<'a> {
        self.broker = path.into();
        self
    }

    /// The sandbox's name in the broker's status and audit events.
    ///
    /// ```
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// let options = netjail_client::ConfineSelf::new(&policy).name("zygote");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> ConfineSelf<'a> {
        self.name = Some(name.into());
        self
    }

    /// The most time the whole conversation with the broker may take (connect, registration,
    /// the listener's hand-over); past it the process is confined without a broker.
    ///
    /// ```
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// let options = netjail_client::ConfineSelf::new(&policy)
    ///     .timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> ConfineSelf<'a> {
        self.timeout = timeout;
        self
    }

    /// Where the policy came from, as the broker should see it (a file's path, `builtin:NAME`),
    /// with its text: the policy given to [`ConfineSelf::new`] must be the one parsed from
    /// it. When the text does not parse to the same policy (their
    /// [`Policy::fingerprint`]s differ), the broker gets the canonical text of the policy the
    /// filter is compiled from instead, under this origin: it enforces what the filter traps.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (source, policy) = netjail_client::policy::load("/etc/netjail/policies/web.toml")?;
    /// let options = netjail_client::ConfineSelf::new(&policy).source(source.clone());
    /// # Ok(()) }
    /// ```
    pub fn source(mut self, source: PolicySource) -> ConfineSelf<'a> {
        self.source = Some(source);
        self
    }

    /// Confines the calling process and registers it with the broker. See [the module](self)
    /// for the steps.
    ///
    /// # Errors
    ///
    /// A [`ConfineError`]; check [`ConfineError::is_confined`].
    pub fn confine(self) -> Result<SandboxId, ConfineError> {
        // 1. Not root unless allowed, and one thread only.
        if !self.allow_root && crate::root::runs_as_root() {
            return Err(ConfineError::Root);
        }
        let threads = thread_count().map_err(ConfineError::Threads)?;
        if threads != 1 {
            return Err(ConfineError::TooManyThreads { threads });
        }
        // 2. Everything that can fail without changing the process.
        let root_plan = if self.allow_root {
            Some(crate::root::plan()?)
        } else {
            None
        };
        let program = filter::compile(self.policy)?;
        let confinement = self.policy.confinement();
        let domain = landlock::prepare(confinement.landlock())?;
        if let Some(warning) = &domain.warning {
            tracing::warn!("{warning}");
        }
        let dropped = sys::dropped_capability_mask(confinement.keep_capabilities());
        let name = self.name.clone().unwrap_or_else(program_name);
        let source = self.policy_source(&name);
        let deadline = Instant::now() + self.timeout;

        // 3. The broker's half before the filter, while sendmsg is still ours.
        let session = register(&self.broker, &name, source, deadline);
        let ptracer = match &session {
            Ok(s) => set_ptracer(s.broker_pid),
            Err(_) => false,
        };

        // 4. The confine steps; from here on the process is confined.
        let ruleset = domain.ruleset.as_ref().map(AsFd::as_fd);
        let listener = match sys::confine_this_thread(
            &program.instructions,
            dropped,
            root_plan.as_ref(),
            ruleset,
        ) {
            Ok(l) => l,
            Err(e) => {
                if ptracer {
                    reset_ptracer();
                }
                return Err(ConfineError::Confine(e));
            }
        };
        drop(domain);

        // 5. The hand-over and the proof, then 6: our own copy goes, whatever happened (the
        // proof closes it first).
        let result = match session {
            Ok(s) => hand_over(&s, listener, deadline),
            Err(e) => {
                drop(listener);
                Err(e)
            }
        };
        if ptracer {
            reset_ptracer();
        }
        match result {
            Ok(sandbox) => {
                tracing::debug!(%sandbox, broker = %self.broker.display(), "confined and registered");
                Ok(sandbox)
            }
            Err(error) => Err(ConfineError::Unregistered {
                broker: self.broker.display().to_string(),
                // The steps only know that the deadline passed; the error names the timeout.
                error: match error {
                    BrokerError::TimedOut(_) => BrokerError::TimedOut(self.timeout),
                    e => e,
                },
            }),
        }
    }

    /// The policy text and origin the broker gets.
    fn policy_source(&self, name: &str) -> PolicySource {
        let canonical = |origin: String| PolicySource {
            origin,
            toml: self.policy.to_toml(),
        };
        match &self.source {
            None => canonical(format!("code:{name}")),
            Some(s) => match Policy::from_toml(&s.toml, &s.origin) {
                Ok(p) if p.fingerprint() == self.policy.fingerprint() => s.clone(),
                _ => {
                    tracing::warn!(origin = %s.origin, "the policy source given does not parse to the policy being applied; the broker gets the policy's canonical text");
                    canonical(s.origin.clone())
                }
            },
        }
    }
}

/// Why a self-confinement failed. **Check [`ConfineError::is_confined`]**: most failures
/// (every one about the broker) leave the process confined all the same, with no broker to
/// allow anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// The process has more than one thread; nothing was changed: NOT confined.
    #[error(
        "the process has {threads} threads, and confinement is per thread (capabilities, \
         no_new_privs, Landlock, the seccomp filter): confine before starting any thread; \
         not confined"
    )]
    TooManyThreads {
        /// How many threads `/proc/self/task` listed.
        threads: usize,
    },
    /// `/proc/self/task` could not be read; nothing was changed: NOT confined.
    #[error("cannot count the threads of this process in /proc/self/task: {0}; not confined")]
    Threads(#[source] std::io::Error),
    /// The seccomp filter could not be built; nothing was changed: NOT confined.
    #[error("cannot build the seccomp filter: {0}; not confined")]
    Filter(#[from] filter::FilterError),
    /// The Landlock domain the policy asks for cannot be had; nothing was changed: NOT
    /// confined.
    #[error("{0}; not confined")]
    Landlock(#[from] landlock::LandlockError),
    /// The process runs as root and [`ConfineSelf::allow_root`] was not given; nothing was
    /// changed: NOT confined.
    #[error("{}; not confined", crate::root::REFUSAL)]
    Root,
    /// The mount namespace of a root sandbox could not be prepared; nothing was changed: NOT
    /// confined.
    #[error("{0}; not confined")]
    RootPlan(#[from] crate::root::RootError),
    /// The kernel refused a confine step; the filter is not installed: NOT confined (the
    /// steps before the failing one stay done).
    #[error("cannot confine this process: {0}; not confined")]
    Confine(sys::StepError),
    /// The process IS confined, but no broker holds its listener: every call the broker
    /// would decide fails with `ENOSYS` from now on.
    #[error(
        "confined, but not registered with the broker at {broker}: {error}; network calls \
         that need a broker now fail (ENOSYS)"
    )]
    Unregistered {
        /// The broker's socket path.
        broker: String,
        /// What went wrong with it.
        error: BrokerError,
    },
}

impl ConfineError {
    /// True when the process is confined despite the error (the filter is installed, and the
    /// listener closed): only the broker's part failed. False when this call installed no
    /// filter (a process confined by an earlier call stays confined: its filter refuses a
    /// second listener, and the error says so).
    ///
    /// ```no_run
    /// # let policy = netjail_policy::Policy::from_toml("name = \"z\"\n", "x").unwrap();
    /// if let Err(e) = netjail_client::confine_self(&policy, "/run/netjail/broker.sock".as_ref()) {
    ///     if !e.is_confined() {
    ///         eprintln!("not confined: {e}");
    ///         std::process::exit(1);
    ///     }
    /// }
    /// ```
    pub fn is_confined(&self) -> bool {
        matches!(self, ConfineError::Unregistered { .. })
    }
}

/// What went wrong with the broker during a self-confinement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Nothing answered at the socket path.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The broker did not answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The broker closed the connection (it stopped, or crashed).
    #[error("the broker closed the connection")]
    Closed,
    /// Sending or receiving failed.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A message could not be encoded or decoded.
    #[error("{0}")]
    Protocol(String),
    /// The broker refused.
    #[error("the broker refused: {code:?}: {message}")]
    Refused {
        /// The broker's error code.
        code: ErrorCode,
        /// The broker's words.
        message: String,
    },
    /// The broker answered something that does not belong in this conversation.
    #[error("unexpected answer from the broker: {0}")]
    Unexpected(String),
    /// The proof that the listener is this process's own failed (the broker refused it,
    /// `EPERM`, or dropped the listener, `ENOSYS`).
    #[error("the proof call failed: {0}")]
    Proof(String),
    /// What listens at the path runs as another user than root or this one: nothing was
    /// sent to it, and the listener is not handed over.
    #[error("the socket is served by uid {uid}, neither root nor this user (uid {own})")]
    Untrusted {
        /// The uid of the process serving it.
        uid: u32,
        /// This process's effective uid.
        own: u32,
    },
}

/// An open self-registration: the broker waits for the listener's number.
struct Session {
    sock: OwnedFd,
    broker_pid: i32,
}

/// Steps 3: connect, hello, `RegisterSelf`, `AwaitingListener`.
fn register(
    path: &Path,
    name: &str,
    policy: PolicySource,
    deadline: Instant,
) -> Result<Session, BrokerError> {
    let sock = connect(path, deadline)?;
    if let Err(uid) = crate::remote::check_broker_uid(sock.as_fd()) {
        let own = sys::geteuid();
        return Err(BrokerError::Untrusted { uid, own });
    }
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: format!(
            "netjail-client {} (confine_self)",
            env!("CARGO_PKG_VERSION")
        ),
    };
    send(&sock, &hello, deadline)?;
    match receive(&sock, deadline)? {
        BrokerMessage::Welcome { .. } => {}
        other => return Err(unexpected(other)),
    }
    let register = ClientMessage::RegisterSelf(RegisterSelf {
        name: name.to_string(),
        policy,
    });
    send(&sock, &register, deadline)?;
    match receive(&sock, deadline)? {
        BrokerMessage::AwaitingListener { broker_pid } => Ok(Session { sock, broker_pid }),
        other => Err(unexpected(other)),
    }
}

/// Step 5: `ListenerFd`; the broker takes the listener and asks for the proof
/// (`ProveListener`); our copy is closed, the proof call made (`connect(-1, nonce, 0)`, which
/// our own filter hands to the listener, now the broker's alone), then `Registered`. Runs
/// confined: `sendto` without a destination and `read` stay in the kernel. A broker older
/// than the proof answers `Registered` at once. The listener is closed on every path.
fn hand_over(
    session: &Session,
    listener: OwnedFd,
    deadline: Instant,
) -> Result<SandboxId, BrokerError> {
    let msg = ClientMessage::ListenerFd {
        fd: listener.as_raw_fd(),
    };
    send(&session.sock, &msg, deadline)?;
    match receive(&session.sock, deadline)? {
        BrokerMessage::Registered { sandbox } => Ok(sandbox),
        BrokerMessage::ProveListener { nonce } => {
            // Closed before the proof: should the broker fail now, the filter has no
            // listener left and the call fails (ENOSYS) instead of waiting for ever.
            drop(listener);
            sys::proof_connect(nonce).map_err(|e| BrokerError::Proof(e.to_string()))?;
            match receive(&session.sock, deadline)? {
                BrokerMessage::Registered { sandbox } => Ok(sandbox),
                other => Err(unexpected(other)),
            }
        }
        other => Err(unexpected(other)),
    }
}

fn unexpected(msg: BrokerMessage) -> BrokerError {
    match msg {
        BrokerMessage::Error(e) => BrokerError::Refused {
            code: e.code,
            message: e.message,
        },
        other => BrokerError::Unexpected(format!("{other:?}")),
    }
}

/// What is left until `deadline`, or the timeout error when nothing is. Never zero: a zero
/// `SO_RCVTIMEO` would mean "wait for ever".
fn remaining(deadline: Instant) -> Result<Duration, BrokerError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < Duration::from_millis(1) {
        return Err(BrokerError::TimedOut(Duration::ZERO));
    }
    Ok(left)
}

/// Sets both socket timeouts to what is left of the deadline.
fn arm(sock: &OwnedFd, deadline: Instant) -> Result<(), BrokerError> {
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    let left = remaining(deadline)?;
    for which in [Timeout::Recv, Timeout::Send] {
        set_socket_timeout(sock, which, Some(left)).map_err(|e| BrokerError::Io(e.into()))?;
    }
    Ok(())
}

/// A blocking `SOCK_SEQPACKET` connection to `path`, bounded by `deadline`.
fn connect(path: &Path, deadline: Instant) -> Result<OwnedFd, BrokerError> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| BrokerError::Connect(e.into()))?;
    arm(&sock, deadline)?;
    let addr = SocketAddrUnix::new(path).map_err(|e| BrokerError::Connect(e.into()))?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(sock),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(BrokerError::TimedOut(Duration::ZERO)),
            Err(e) => return Err(BrokerError::Connect(e.into())),
        }
    }
}

/// Sends one message as one datagram: `sendto(sock, buf, len, MSG_NOSIGNAL, NULL, 0)`.
fn send(sock: &OwnedFd, msg: &ClientMessage, deadline: Instant) -> Result<(), BrokerError> {
    let datagram = codec::encode(msg).map_err(|e| BrokerError::Protocol(e.to_string()))?;
    arm(sock, deadline)?;
    loop {
        match rustix::net::send(sock, &datagram, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) if n == datagram.len() => return Ok(()),
            Ok(n) => {
                return Err(BrokerError::Io(std::io::Error::other(format!(
                    "short send: {n} of {} bytes",
                    datagram.len()
                ))))
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(BrokerError::TimedOut(Duration::ZERO)),
            Err(rustix::io::Errno::PIPE) | Err(rustix::io::Errno::CONNRESET) => {
                return Err(BrokerError::Closed)
            }
            Err(e) => return Err(BrokerError::Io(e.into())),
        }
    }
}

/// Receives one datagram with `read(2)` and decodes it.
fn receive(sock: &OwnedFd, deadline: Instant) -> Result<BrokerMessage, BrokerError> {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
    loop {
        arm(sock, deadline)?;
        match rustix::io::read(sock, &mut buf[..]) {
            Ok(0) => return Err(BrokerError::Closed),
            Ok(n) => {
                return codec::decode::<BrokerMessage>(&buf[..n])
                    .map_err(|e| BrokerError::Protocol(e.to_string()))
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(BrokerError::TimedOut(Duration::ZERO)),
            Err(rustix::io::Errno::CONNRESET) => return Err(BrokerError::Closed),
            Err(e) => return Err(BrokerError::Io(e.into())),
        }
    }
}

/// How many threads this process has.
fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The program's file name, for the sandbox's name.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "confine-self".into())
}

/// `prctl(PR_SET_PTRACER, pid)`: lets the broker take the listener under Yama
/// `ptrace_scope = 1`. Without Yama the kernel says `EINVAL`, which does not matter. True
/// when the ptracer was set (and must be reset).
fn set_ptracer(pid: i32) -> bool {
    use rustix::process::{set_ptracer, PTracer, Pid};
    let Some(pid) = Pid::from_raw(pid) else {
        return false;
    };
    match set_ptracer(PTracer::ProcessID(pid)) {
        Ok(()) => true,
        Err(e) => {
            if e != rustix::io::Errno::INVAL {
                tracing::debug!(error = %e, "prctl(PR_SET_PTRACER)");
            }
            false
        }
    }
}

/// `prctl(PR_SET_PTRACER, 0)`: nobody but the usual may trace the process any more.
fn reset_ptracer() {
    if let Err(e) = rustix::process::set_ptracer(rustix::process::PTracer::None) {
        tracing::debug!(error = %e, "prctl(PR_SET_PTRACER, 0)");
    }
}

/// What `netjail` and [`ConfineError`] print for a confine step that failed.
impl std::fmt::Display for sys::StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            sys::tag::CAPABILITIES => "dropping capabilities",
            sys::tag::NO_NEW_PRIVS => "prctl(PR_SET_NO_NEW_PRIVS)",
            sys::tag::LANDLOCK => "landlock_restrict_self",
            sys::tag::ROOT => return f.write_str(crate::root::REFUSAL),
            sys::tag::MOUNTS => "setting up the mount namespace of a root sandbox",
            sys::tag::SECCOMP => {
                "seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV) (needs Linux 5.19 or later)"
            }
            _ => "confining",
        };
        write!(
            f,
            "{step}: {}",
            std::io::Error::from_raw_os_error(self.errno)
        )?;
        if self.step == sys::tag::SECCOMP && matches!(self.errno, libc::EPERM | libc::EBUSY) {
            // netjail's own filter refuses a second listener (EPERM), the kernel refuses one
            // under a filter that has one (EBUSY).
            write!(f, " (a seccomp filter with a listener is already in place: was this process confined before?)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::from_toml("name = \"t\"\ndefault = \"deny\"\n", "test").unwrap()
    }

    /// R4: a root process is refused without `allow_root`, before anything changes; as
    /// another user the next check (threads, in a test binary) answers.
    #[test]
    fn r4_refuses_root_without_opt_in() {
        let p = policy();
        let err = confine_self(&p, Path::new("/nonexistent/broker.sock")).unwrap_err();
        if crate::root::runs_as_root() {
            assert!(matches!(err, ConfineError::Root), "{err}");
            assert!(err.to_string().contains("--allow-root"), "{err}");
        } else {
            assert!(matches!(err, ConfineError::TooManyThreads { .. }), "{err}");
        }
        assert!(!err.is_confined());
    }

    /// A test binary runs its tests on threads: confine_self refuses, and changes nothing.
    #[test]
    fn refuses_a_process_with_threads_and_stays_unconfined() {
        let p = policy();
        let keep = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(500)));
        let err = ConfineSelf::new(&p)
            .broker("/nonexistent/broker.sock")
            .allow_root(true)
            .confine()
            .unwrap_err();
        keep.join().unwrap();
        assert!(
            matches!(err, ConfineError::TooManyThreads { threads } if threads >= 2),
            "{err}"
        );
        assert!(!err.is_confined());
        assert!(err.to_string().contains("threads"), "{err}");
        assert!(err.to_string().contains("not confined"), "{err}");
        let nnp = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(
            nnp.lines().any(|l| l == "NoNewPrivs:\t0"),
            "nothing changed"
        );
    }

    #[test]
    fn only_broker_failures_leave_the_process_confined() {
        let e = ConfineError::Unregistered {
            broker: "/x".into(),
            error: BrokerError::Closed,
        };
        assert!(e.is_confined());
        assert!(e.to_string().contains("ENOSYS"), "{e}");
        assert!(!ConfineError::TooManyThreads { threads: 3 }.is_confined());
        let step = sys::StepError {
            step: sys::tag::SECCOMP,
            errno: libc::EINVAL,
        };
        assert!(!ConfineError::Confine(step).is_confined());
    }

    #[test]
    fn the_broker_gets_the_source_only_when_it_is_the_policy() {
        let p = policy();
        let options = ConfineSelf::new(&p);
        assert_eq!(options.policy_source("z").origin, "code:z");
        assert_eq!(options.policy_source("z").toml, p.to_toml());
        let same = PolicySource {
            origin: "/etc/p.toml".into(),
            toml: "name = \"t\"\ndefault = \"deny\"\n# comment\n".into(),
        };
        let got = ConfineSelf::new(&p).source(same.clone()).policy_source("z");
        assert_eq!(got, same);
        let other = PolicySource {
            origin: "/etc/q.toml".into(),
            toml: "name = \"t\"\ndefault = \"allow\"\n".into(),
        };
        let got = ConfineSelf::new(&p).source(other).policy_source("z");
        assert_eq!(got.origin, "/etc/q.toml");
        assert_eq!(got.toml, p.to_toml());
    }

    #[test]
    fn an_expired_deadline_is_a_timeout_never_a_zero_timeout() {
        let past = Instant::now() - Duration::from_secs(1);
        assert!(matches!(remaining(past), Err(BrokerError::TimedOut(_))));
    }
}
