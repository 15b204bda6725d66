//! Audit events: one structured `tracing` event per decision, under the target
//! `netjail::audit`, so that a subscriber can route them apart from diagnostics.

use netjail_protocol::SandboxId;

/// The `tracing` target of every audit event.
pub const TARGET: &str = "netjail::audit";

/// Everything one decision event says.
#[derive(Debug, Clone)]
pub(crate) struct DecisionEvent<'a> {
    /// The sandbox the call came from.
    pub sandbox: SandboxId,
    /// The sandbox's human name.
    pub name: &'a str,
    /// The OCI container id, or empty for a sandbox that is not a container.
    pub container: &'a str,
    /// Thread id of the caller.
    pub pid: u32,
    /// Executable of the caller (best effort).
    pub program: &'a str,
    /// Operation: `connect`, ...
    pub op: &'a str,
    /// The destination as decided (`tcp://127.0.0.1:80`, `unix:/run/x.sock`), or empty.
    pub endpoint: &'a str,
    /// `allow` or `deny`; `pass` when no decision was needed (a send on a connected socket);
    /// `error` when the call failed before a decision.
    pub decision: &'a str,
    /// The rule that decided (`allow[0].connect[1]`, `default`), or why nothing did.
    pub rule: &'a str,
    /// The host name the destination matched, or empty.
    pub host: &'a str,
    /// What operators did with a call the policy asked about (`granted by uid 0`,
    /// `timed-out: ...`), or empty.
    pub operator: &'a str,
    /// The errno the caller got (0 for success).
    pub errno: i32,
    /// Time from receiving the notification to sending the reply.
    pub latency_us: u64,
}

/// Emits one decision event.
pub(crate) fn decision(e: &DecisionEvent<'_>) {
    tracing::info!(
        target: TARGET,
        sandbox = %e.sandbox,
        name = e.name,
        container = e.container,
        pid = e.pid,
        program = e.program,
        op = e.op,
        endpoint = e.endpoint,
        decision = e.decision,
        rule = e.rule,
        host = e.host,
        operator = e.operator,
        errno = e.errno,
        latency_us = e.latency_us,
        "decision"
    );
}

/// A decision event for calls refused by `max_calls_per_second`, written at most once a
/// second per sandbox: `refused` counts the calls refused since the previous one.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitedEvent<'a> {
    /// The sandbox the calls came from.
    pub sandbox: SandboxId,
    /// The sandbox's human name.
    pub name: &'a str,
    /// The OCI container id, or empty.
    pub container: &'a str,
    /// Thread id of the caller of the call that brought the line.
    pub pid: u32,
    /// Its operation.
    pub op: &'a str,
    /// `limits.max_calls_per_second`.
    pub rule: &'a str,
    /// `EAGAIN`.
    pub errno: i32,
    /// Calls refused since the previous line, this one included.
    pub refused: u64,
}

/// Emits a [`RateLimitedEvent`]: a `decision` event with `decision = "deny"` and `refused`.
pub(crate) fn rate_limited(e: &RateLimitedEvent<'_>) {
    tracing::info!(
        target: TARGET,
        sandbox = %e.sandbox,
        name = e.name,
        container = e.container,
        pid = e.pid,
        program = "",
        op = e.op,
        endpoint = "",
        decision = "deny",
        rule = e.rule,
        host = "",
        operator = "",
        errno = e.errno,
        latency_us = 0u64,
        refused = e.refused,
        "decision"
    );
}

/// Emits the event of a sandbox joining the broker.
pub(crate) fn registered(
    sandbox: SandboxId,
    name: &str,
    pid: i32,
    policy: &str,
    peer_uid: Option<u32>,
) {
    tracing::info!(
        target: TARGET,
        sandbox = %sandbox,
        name,
        pid,
        policy,
        peer_uid = peer_uid.map(i64::from).unwrap_or(-1),
        "sandbox registered"
    );
}

/// Emits the event of a process that confined itself joining the broker
/// (`RegisterSelf`): the same event as [`registered`], with `self_registered = true`; `pid`
/// is the process at the other end of the registration socket.
pub(crate) fn self_registered(
    sandbox: SandboxId,
    name: &str,
    pid: i32,
    policy: &str,
    peer_uid: Option<u32>,
) {
    tracing::info!(
        target: TARGET,
        sandbox = %sandbox,
        name,
        pid,
        policy,
        peer_uid = peer_uid.map(i64::from).unwrap_or(-1),
        self_registered = true,
        "sandbox registered"
    );
}

/// Emits the event of a container process joining the broker through the OCI agent socket.
/// `peer_uid` is the runtime's.
pub(crate) fn container_registered(
    sandbox: SandboxId,
    container: &str,
    status: &str,
    pid: i32,
    policy: &str,
    peer_uid: i64,
) {
    tracing::info!(
        target: TARGET,
        sandbox = %sandbox,
        name = container,
        container,
        status,
        pid,
        policy,
        peer_uid,
        "sandbox registered"
    );
}

/// Emits the event of a runtime connection refused on the OCI agent socket: `reason` is a
/// short token (`no-fd`, `bad-json`, `unknown-policy`...), `detail` a sentence. The container
/// (when known) gets `ENOSYS` from its notified calls: its listener was closed.
pub(crate) fn container_refused(
    container: &str,
    reason: &str,
    detail: &str,
    peer_pid: i64,
    peer_uid: i64,
) {
    tracing::warn!(
        target: TARGET,
        container,
        reason,
        detail,
        peer_pid,
        peer_uid,
        "container refused"
    );
}

/// Emits the event of a connection one of the broker's own sockets refused before it read
/// anything from it: `socket` is `registration`, `control`, `oci` or `metrics`, `reason` a
/// short token (`broker-itself`, `holds-a-listener`, `not-permitted`, `too-many`...),
/// `detail` a sentence.
pub(crate) fn peer_refused(socket: &str, reason: &str, detail: &str, peer_pid: i64, peer_uid: i64) {
    tracing::warn!(
        target: TARGET,
        socket,
        reason,
        detail,
        peer_pid,
        peer_uid,
        "connection refused"
    );
}

/// Emits the event of a sandbox leaving (every confined task has exited).
pub(crate) fn retired(sandbox: SandboxId, name: &str, container: &str, decisions: u64) {
    tracing::info!(target: TARGET, sandbox = %sandbox, name, container, decisions, "sandbox retired");
}
