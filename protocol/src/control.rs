//! The messages of the control socket, where operators talk to the broker
//! (`/run/netjail/control.sock`, ARCHITECTURE.md "Command line contract").
//!
//! The framing is the registration socket's ([`crate::send`], [`crate::recv`]): one message
//! per `SOCK_SEQPACKET` datagram, no fds. A conversation starts with
//! [`OperatorRequest::Hello`]; the broker checks the peer's credentials (root, or a member of
//! the operator group) and answers [`OperatorReply::Welcome`] or an [`ErrorReply`] with
//! [`ErrorCode::NotOperator`] before closing.
//!
//! Lists come one item per datagram and end with [`OperatorReply::End`], so that no list is
//! bounded by the size of one datagram. [`OperatorRequest::Watch`] turns the connection into
//! a stream of [`Event`]s that lasts until the operator closes it; while it is open the
//! operator counts as present, and calls held by an `ask` rule wait for an answer instead of
//! falling back at once.
//!
//! ```
//! use netjail_protocol::control::{GrantDuration, GrantScope, OperatorRequest, RequestId};
//! use netjail_protocol::codec;
//!
//! let grant = OperatorRequest::Grant {
//!     id: RequestId(7),
//!     duration: GrantDuration::For { millis: 2_000 },
//!     scope: GrantScope::Sandbox,
//! };
//! let datagram = codec::encode(&grant)?;
//! assert_eq!(codec::decode::<OperatorRequest>(&datagram)?, grant);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ErrorReply, SandboxId};

#[allow(unused_imports)] // for the links in the docs
use crate::ErrorCode;

/// The broker's name for one held call, unique for the broker's lifetime. Displayed as the
/// bare number operators type (`netjail grant 7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Messages an operator sends on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorRequest {
    /// Opens a conversation; must be the first message.
    Hello {
        /// The protocol version the operator's client speaks ([`crate::PROTOCOL_VERSION`]).
        version: u16,
        /// Free-form name and version of the client, for the audit (`netjail 0.1.0 watch`).
        client: String,
    },
    /// Asks for [`OperatorReply::Status`], then one [`OperatorReply::Sandbox`] per sandbox,
    /// then [`OperatorReply::End`].
    Status,
    /// Asks for one [`OperatorReply::Pending`] per held call (oldest first), then
    /// [`OperatorReply::End`].
    Pending,
    /// Lets a held call through. Answered by [`OperatorReply::Resolved`], or by an error when
    /// the call is no longer held (another operator answered first, it timed out, its caller
    /// exited).
    Grant {
        /// The held call.
        id: RequestId,
        /// This call only, or a rule for later calls too.
        duration: GrantDuration,
        /// Whom a rule for later calls covers (ignored for [`GrantDuration::Once`]).
        scope: GrantScope,
    },
    /// Refuses a held call with `EPERM`. Answered like [`OperatorRequest::Grant`].
    Deny {
        /// The held call.
        id: RequestId,
        /// Also refuse later calls to the same destination without asking, from a rule
        /// written to the overlay policy file (it survives a broker restart).
        always: bool,
        /// Whom the rule covers (only with `always`).
        scope: GrantScope,
    },
    /// Subscribes to [`OperatorReply::Event`]s: held calls as they come and go, and with
    /// `decisions` every decision of every sandbox. The broker first sends one
    /// [`Event::Pending`] per call already held.
    Watch {
        /// Also stream every decision (not only held calls and their resolutions).
        decisions: bool,
    },
    /// Asks for the broker's metrics in the Prometheus text exposition format (0.0.4): one
    /// or more [`OperatorReply::Metrics`], whose texts put together in order are the
    /// exposition, then [`OperatorReply::End`]. Appended after the first variants so that
    /// their encodings stay as they were.
    Metrics,
    /// Reads the policy files again (the overlay, the OCI agent's policies of running
    /// containers) and puts what parses in force for the sandboxes' next calls. Answered by
    /// one [`OperatorReply::Reloaded`] per file or sandbox concerned, then
    /// [`OperatorReply::End`].
    Reload,
}

/// How long a grant lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantDuration {
    /// This call only.
    Once,
    /// This call, and later calls to the same destination for this long.
    For {
        /// Length of the grant in milliseconds.
        millis: u64,
    },
    /// This call, and later calls to the same destination from now on: the rule is written
    /// to the overlay policy file and survives a broker restart.
    Always,
}

/// Whom a rule made by an operator covers, relative to the sandbox of the held call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantScope {
    /// This sandbox instance only (the default): another run of the same program asks again.
    Sandbox,
    /// Every sandbox confined by the same policy (by policy name).
    Policy,
    /// Every process of the same OCI container (by container id).
    Container,
}

impl GrantScope {
    /// The word used on the command line and in the audit.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantScope::Sandbox => "sandbox",
            GrantScope::Policy => "policy",
            GrantScope::Container => "container",
        }
    }
}

/// Messages the broker sends on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorReply {
    /// The answer to [`OperatorRequest::Hello`] from an operator.
    Welcome {
        /// The protocol version the broker speaks.
        version: u16,
        /// Free-form name and version of the broker.
        broker: String,
        /// Who the broker took the operator to be (`uid 0`, `uid 1000 (group netjail)`).
        operator: String,
    },
    /// The head of the answer to [`OperatorRequest::Status`].
    Status(StatusReport),
    /// One sandbox of a status answer.
    Sandbox(SandboxInfo),
    /// One held call of a [`OperatorRequest::Pending`] answer.
    Pending(PendingInfo),
    /// The end of a list.
    End,
    /// The answer to a grant or a deny that decided a held call.
    Resolved(Resolution),
    /// One event of a watch.
    Event(Event),
    /// A request failed (see [`ErrorCode`]); after a refused hello the broker closes the
    /// connection, after other errors the conversation goes on.
    Error(ErrorReply),
    /// A piece of the answer to [`OperatorRequest::Metrics`]: Prometheus text, cut at line
    /// ends so that each piece fits one datagram.
    Metrics(String),
    /// One item of the answer to [`OperatorRequest::Reload`].
    Reloaded(ReloadItem),
}

/// The broker as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Name and version of the broker.
    pub broker: String,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Operators watching now (they make held calls wait for an answer).
    pub operators: u32,
    /// Sandboxes registered now.
    pub sandboxes: u32,
    /// Calls held now.
    pub pending: u32,
    /// Rules made by operators that are in force now (timed and always).
    pub grants: u32,
    /// Counts since the broker started.
    pub counters: Counters,
}

/// What the broker has done since it started.
///
/// Calls are counted by what was decided, as the audit's `decision` field names it, never by
/// what the call returned: an allowed non-blocking connect answers `EINPROGRESS`, an allowed
/// connect to a closed port `ECONNREFUSED`, and both count as allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Calls allowed (by the policy, an operator or a fallback), whatever they returned.
    pub allowed: u64,
    /// Calls refused (by the policy, an operator, a fallback or one of the broker's bounds).
    pub denied: u64,
    /// Calls held for an operator.
    pub asked: u64,
    /// Held calls an operator let through.
    pub granted: u64,
    /// Held calls an operator refused.
    pub refused: u64,
    /// Held calls that got the fallback because nobody answered in time.
    pub timed_out: u64,
    /// Held calls that got the fallback at once because no operator was watching.
    pub unattended: u64,
    /// Calls that needed no decision and went through as the caller made them (a send on a
    /// connected socket, a listen on a socket bound to a path; the audit's `pass`), whatever
    /// they returned.
    pub passed: u64,
    /// Calls that failed before the policy could decide (a bad fd or pointer; the audit's
    /// `error`).
    pub errors: u64,
}

/// One sandbox, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// The broker's id.
    pub sandbox: SandboxId,
    /// Human name given at registration.
    pub name: String,
    /// The OCI container id, or empty.
    pub container: String,
    /// Pid of the confined process, as the registering client saw it.
    pub pid: i32,
    /// The policy's name.
    pub policy: String,
    /// Calls decided so far.
    pub decisions: u64,
    /// Calls of this sandbox held now.
    pub pending: u32,
    /// Milliseconds since it registered.
    pub age_ms: u64,
}

/// One process of the chain that made a held call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Its pid, as the broker sees it.
    pub pid: i32,
    /// Its executable, or its command name when the executable cannot be read, or `?`.
    pub program: String,
}

/// One call held for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInfo {
    /// What to type in `netjail grant` / `netjail deny`.
    pub id: RequestId,
    /// The sandbox of the caller.
    pub sandbox: SandboxId,
    /// The sandbox's name.
    pub name: String,
    /// The OCI container id, or empty.
    pub container: String,
    /// The sandbox's policy.
    pub policy: String,
    /// The calling thread.
    pub pid: i32,
    /// The calling process first, then its parent, and so on up to pid 1 (at most 16): past
    /// the confined process, who started it (`netjail run`, a container runtime's shim).
    pub chain: Vec<ProcessInfo>,
    /// `connect`, `send` or `bind`.
    pub op: String,
    /// The destination (`tcp://127.0.0.1:8080`, `unix:/run/x.sock`).
    pub endpoint: String,
    /// The host name the destination matched, or empty.
    pub host: String,
    /// The rule that asked (`ask[0].connect[1]`, `default`).
    pub rule: String,
    /// Milliseconds the call has been held.
    pub age_ms: u64,
    /// Milliseconds left before the fallback applies.
    pub remaining_ms: u64,
    /// What the call gets if nobody answers: `deny` or `allow`.
    pub fallback: String,
}

/// How a held call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An operator let it through.
    Granted,
    /// An operator refused it.
    Denied,
    /// Nobody answered in time; the policy's fallback applied.
    TimedOut,
    /// No operator was watching; the fallback applied at once.
    Unattended,
    /// A rule an operator made earlier decided it (no operator was asked).
    Ruled,
    /// The caller exited (or was killed) while held.
    Gone,
}

impl Outcome {
    /// The word used in the audit and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Denied => "denied",
            Outcome::TimedOut => "timed-out",
            Outcome::Unattended => "unattended",
            Outcome::Ruled => "ruled",
            Outcome::Gone => "gone",
        }
    }
}

/// The end of a held call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The held call.
    pub id: RequestId,
    /// How it ended.
    pub outcome: Outcome,
    /// Whether the call was let through (a fallback may allow, a grant always does).
    pub allowed: bool,
    /// Who decided: `uid 0`, `timeout`, `nobody`.
    pub by: String,
    /// The rule made for later calls, in words (`allow tcp://127.0.0.1:8080 for sandbox sb-3
    /// until 12:00:02`), or empty.
    pub rule: String,
}

/// One decision, as a watch streams it (the audit event's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionInfo {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The sandbox of the caller.
    pub sandbox: SandboxId,
    /// The sandbox's name.
    pub name: String,
    /// The OCI container id, or empty.
    pub container: String,
    /// The calling thread.
    pub pid: i32,
    /// The caller's executable (best effort).
    pub program: String,
    /// `connect`, `send`, `bind`, `listen`.
    pub op: String,
    /// The destination, or empty.
    pub endpoint: String,
    /// The host name the destination matched, or empty.
    pub host: String,
    /// `allow`, `deny`, `pass` or `error`.
    pub decision: String,
    /// The rule that decided.
    pub rule: String,
    /// The errno the caller got (0 for success).
    pub errno: i32,
    /// Microseconds from the notification to the reply (held time included).
    pub latency_us: u64,
}

/// Something a watching operator is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A call is now held and waits for an answer.
    Pending(PendingInfo),
    /// A held call ended.
    Resolved(Resolution),
    /// A call was decided (only with `Watch { decisions: true }`).
    Decision(DecisionInfo),
    /// A sandbox joined.
    Registered(SandboxInfo),
    /// A sandbox left: every task of it exited.
    Retired {
        /// Its id.
        sandbox: SandboxId,
        /// Its name.
        name: String,
    },
    /// The watcher was too slow: this many events were dropped for it.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// What a reload did with one file or sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadItem {
    /// What it is about: `overlay /var/lib/netjail/overlay/policy-web.toml`, `policy web
    /// (/etc/netjail/policies/web.toml)`, `sandbox sb-3 (web1)`.
    pub subject: String,
    /// What happened.
    pub outcome: ReloadOutcome,
    /// Why, in words (the parse error with its file:line:column, the refusal), or empty.
    pub detail: String,
}

/// What happened to one item of a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReloadOutcome {
    /// Read again and in force for the next calls.
    Reloaded,
    /// Read again; nothing changed.
    Unchanged,
    /// The file is gone: its rules are no longer in force.
    Removed,
    /// The file has a mistake (or cannot be read): the old rules stay.
    Rejected,
    /// The file parses, but a running sandbox cannot take it (its seccomp filter or counters
    /// were made from the old one): that sandbox keeps the old policy.
    Refused,
    /// The sandbox's policy came from its client, not from a file the broker reads.
    NotReloadable,
}

impl ReloadOutcome {
    /// The word used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Reloaded => "reloaded",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Removed => "removed",
            ReloadOutcome::Rejected => "rejected",
            ReloadOutcome::Refused => "refused",
            ReloadOutcome::NotReloadable => "not-reloadable",
        }
    }

    /// Whether the item is a failure the operator should act on.
    pub fn failed(self) -> bool {
        matches!(self, ReloadOutcome::Rejected | ReloadOutcome::Refused)
    }
}
