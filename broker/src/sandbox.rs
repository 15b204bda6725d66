//! A registered sandbox: its policy, its listener and its bounds.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use netjail_policy::{Decision, Policy, SandboxRules};
use netjail_protocol::SandboxId;
use tokio::sync::Semaphore;

use crate::embed::DecisionHook;
use crate::limits::SandboxLimits;
use crate::names::Resolver;
use crate::operators::Operators;

/// Calls of one sandbox that may be waiting on the blocking pool at once; past it the
/// sandbox's receiver waits, and its further calls wait in the kernel, unanswered but not lost,
/// so that one sandbox cannot take every thread of the broker (invariant 7).
pub const MAX_IN_FLIGHT: usize = 64;

/// A confined process tree known to the broker.
#[derive(Debug)]
pub struct Sandbox {
    /// Broker-wide id.
    pub id: SandboxId,
    /// Human name given at registration.
    pub name: String,
    /// The OCI container id, for a sandbox registered by a container runtime.
    pub container: Option<String>,
    /// Pid of the confined process as the registering client saw it.
    pub pid: i32,
    /// The policy every call is decided by.
    pub policy: Arc<Policy>,
    pub(crate) listener: OwnedFd,
    pub(crate) in_flight: Arc<Semaphore>,
    /// Where calls the policy asks about are held, and operators' rules.
    pub(crate) operators: Arc<Operators>,
    /// Answers what the policy's host names are (shared cache).
    pub(crate) names: Resolver,
    /// Rules the embedding program gave this sandbox at run time, checked after the policy's
    /// `[[deny]]` tables and before its `[[allow]]` tables.
    pub(crate) rules: RwLock<SandboxRules>,
    /// The embedding program's decision hook, asked after the run-time rules.
    pub(crate) hook: Option<Arc<dyn DecisionHook>>,
    /// Readable once the broker stops: the receiver then leaves, and the listener closes.
    pub(crate) stop: Arc<OwnedFd>,
    /// Every call of the sandbox is decided off its receiver thread: the policy may hold a
    /// call for an operator or look a host name up, the hook may wait for its program, and
    /// none of them may stop the receiver.
    pub(crate) slow_path: bool,
    /// The policy's `[limits]`, with what they count.
    pub(crate) limits: SandboxLimits,
    /// When it registered.
    pub(crate) registered: Instant,
    decisions: AtomicU64,
}

impl Sandbox {
    #[allow(clippy::too_many_arguments)] // one per field the registration fills in
    pub(crate) fn new(
        id: SandboxId,
        name: String,
        container: Option<String>,
        pid: i32,
        policy: Arc<Policy>,
        listener: OwnedFd,
        operators: Arc<Operators>,
        names: Resolver,
        hook: Option<Arc<dyn DecisionHook>>,
        stop: Arc<OwnedFd>,
    ) -> Self {
        let limits = SandboxLimits::new(policy.limits());
        let slow_path = policy.may_ask() || policy.has_host_names() || hook.is_some();
        Sandbox {
            id,
            name,
            container,
            pid,
            policy,
            listener,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            operators,
            names,
            rules: RwLock::new(SandboxRules::new()),
            hook,
            stop,
            slow_path,
            limits,
            registered: Instant::now(),
            decisions: AtomicU64::new(0),
        }
    }

    /// Whether the sandbox has no run-time rules.
    pub(crate) fn rules_empty(&self) -> bool {
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// What the run-time rules say of a canonical request.
    pub(crate) fn rules_decide(&self, request: &netjail_policy::Request) -> Option<Decision> {
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .decide(request)
    }

    pub(crate) fn count_decision(&self) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of calls decided so far.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}
