//! The messages that cross the registration socket.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The broker's name for one registered sandbox (one seccomp listener).
///
/// Displayed as `sb-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SandboxId(pub u64);

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sb-{}", self.0)
    }
}

/// Messages a client (launcher / library) sends on the registration socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// Opens a conversation; must be the first message on a connection.
    Hello {
        /// The protocol version the client speaks ([`crate::PROTOCOL_VERSION`]).
        version: u16,
        /// Free-form name and version of the client, for logs (e.g. `netjail 0.1.0`).
        client: String,
    },
    /// Hands a sandbox to the broker.
    ///
    /// The sandbox's seccomp listener fd travels with this message in `SCM_RIGHTS`
    /// (exactly one fd).
    Register(Register),
    /// Asks the broker to confine the sender itself (`confine_self`, a zygote before it loads
    /// untrusted code): no fd travels with it. The broker takes the sender from the socket
    /// (`SO_PEERPIDFD`), never from a claimed pid, and answers
    /// [`BrokerMessage::AwaitingListener`]; the sender then installs its filter and names the
    /// new listener with [`ClientMessage::ListenerFd`].
    RegisterSelf(RegisterSelf),
    /// The number of the sender's own seccomp listener fd, which the broker takes with
    /// `pidfd_getfd`; only after [`ClientMessage::RegisterSelf`] was answered with
    /// [`BrokerMessage::AwaitingListener`]. No fd travels with it: the sender's `sendmsg` is
    /// already trapped by its filter, so it writes this message with plain `write(2)`.
    ListenerFd {
        /// The fd number in the sender's fd table.
        fd: i32,
    },
    /// Hands the broker a sandbox that an earlier broker instance served until it stopped or
    /// crashed: the client kept its own copy of the listener and sends it again (exactly one
    /// fd, as with [`ClientMessage::Register`]). The broker answers
    /// [`BrokerMessage::Registered`]; if it finds the earlier instance's journal of
    /// `previous`, made for the same pid and by the same user, it keeps that id and decides
    /// again the calls the earlier instance had received and not answered.
    RegisterAgain(RegisterAgain),
    /// As [`ClientMessage::Register`] (exactly one fd), from a client that keeps its own copy
    /// of the listener and registers the sandbox again ([`ClientMessage::RegisterAgain`]) with
    /// a broker started after this one (`netjail run`). The broker keeps a journal of the
    /// sandbox's calls for that broker, and leaves the listener out of the service manager's
    /// file descriptor store. After a plain `Register` the broker holds the only copy (once the
    /// client closes its own), which it stores when it stores listeners.
    RegisterKeeping(Register),
}

/// The body of [`ClientMessage::RegisterAgain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterAgain {
    /// The sandbox, as it was first registered.
    pub register: Register,
    /// The id the earlier broker instance gave it.
    pub previous: SandboxId,
}

/// The body of [`ClientMessage::RegisterSelf`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSelf {
    /// Human name of the sandbox (`zygote`, the program name).
    pub name: String,
    /// The policy the broker enforces for this sandbox.
    pub policy: PolicySource,
}

/// The body of [`ClientMessage::Register`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Human name of the sandbox, e.g. the program name.
    pub name: String,
    /// Pid of the confined process, as seen by the client.
    pub pid: i32,
    /// The policy the broker enforces for this sandbox.
    pub policy: PolicySource,
}

/// A policy as text, with where it came from (for error messages and audit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// A file path, or `builtin:NAME` for a built-in profile.
    pub origin: String,
    /// The policy in the TOML format.
    pub toml: String,
}

/// Messages the broker sends on the registration socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerMessage {
    /// The answer to [`ClientMessage::Hello`].
    Welcome {
        /// The protocol version the broker speaks.
        version: u16,
        /// Free-form name and version of the broker, for logs.
        broker: String,
    },
    /// The answer to a successful [`ClientMessage::Register`].
    Registered {
        /// The id the broker gave the new sandbox.
        sandbox: SandboxId,
    },
    /// A request failed; after most errors the broker closes the connection.
    Error(ErrorReply),
    /// The answer to [`ClientMessage::RegisterSelf`]: the policy parsed, and the broker waits
    /// (10 s at most) for [`ClientMessage::ListenerFd`].
    AwaitingListener {
        /// The broker's pid, for `prctl(PR_SET_PTRACER)`: under Yama `ptrace_scope = 1` that
        /// is what lets the broker's `pidfd_getfd` reach the client.
        broker_pid: i32,
    },
    /// The answer to [`ClientMessage::ListenerFd`] once the broker holds a copy of the
    /// listener: the sender closes its own copy, then proves that the listener is the one of
    /// a filter it is itself under by making the call [`PROOF_SYSCALL`] describes, which that
    /// filter hands to the listener, from any thread of the process that connected. The broker
    /// answers that call with 0 (or `EPERM` when the proof fails) and then sends
    /// [`BrokerMessage::Registered`]. Without the proof a process could name a listener it
    /// holds for *other* processes (a broker of its own, a launcher) and have it registered
    /// a second time.
    ProveListener {
        /// The value the proof's address argument carries.
        nonce: u64,
    },
}

/// The call that proves a [`BrokerMessage::ProveListener`]: `connect(-1, nonce, 0)`, the
/// nonce as the address pointer (never read: the broker decides on the raw arguments).
/// The filter of every netjail policy sends `connect` to its listener.
pub const PROOF_SYSCALL: &str = "connect(-1, nonce, 0)";

/// The body of [`BrokerMessage::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

/// The kinds of failure the broker reports in an [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The client speaks a protocol version the broker does not.
    UnsupportedVersion,
    /// A message could not be decoded (bad framing, bad body, too large).
    Malformed,
    /// The policy of a [`Register`] does not parse or asks for something unsupported.
    BadPolicy,
    /// A [`ClientMessage::Register`] arrived without its listener fd.
    MissingFd,
    /// A message arrived with more fds than it may carry.
    TooManyFds,
    /// The first message on a connection was not [`ClientMessage::Hello`].
    NotHello,
    /// The broker failed for a reason of its own.
    Internal,
    /// The peer of the control socket is neither root nor a member of the operator group.
    NotOperator,
    /// A grant or deny named a call that is not held (never was, or already ended: another
    /// operator answered first, it timed out, its caller exited).
    NotPending,
    /// A request is understood but cannot be done (a container scope for a sandbox that is
    /// not a container, an overlay file that cannot be written).
    Refused,
    /// The broker could not take the listener a [`ClientMessage::ListenerFd`] named from its
    /// sender (no such fd, no ptrace access to the sender, the sender is gone).
    CannotTakeListener,
    /// The client did not send what the broker waited for in time.
    TimedOut,
}
