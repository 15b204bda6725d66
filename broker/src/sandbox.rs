//! A registered sandbox: its policy, its listener and its bounds.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use netjail_policy::{Decision, Policy, SandboxRules};
use netjail_protocol::SandboxId;

use crate::bounds::limits::SandboxLimits;
use crate::bounds::reaper::{Performing, Watched};
use crate::bounds::{self, Account};
use crate::caller::pidfds::PidfdCache;
use crate::caller::view::View;
use crate::hook::DecisionHook;
use crate::names::Resolver;
use crate::operators::{Asking, Operators};
use crate::restart::journal::Journal;

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
    /// The policy every call is decided by, and whether it needs the slow path; replaced by
    /// a reload ([`Sandbox::replace_policy`]). Each call takes one snapshot when it arrives.
    active: RwLock<Active>,
    /// Where the policy came from, which says whether a reload can read it again.
    pub(crate) source: PolicySource,
    pub(crate) listener: OwnedFd,
    /// Its calls on the blocking pool (`bounds/mod.rs`).
    pub(crate) in_flight: Arc<Account>,
    /// The descriptors its sends hold for `SCM_RIGHTS` (`bounds/mod.rs`).
    pub(crate) descriptors: Arc<Account>,
    /// Where calls the policy asks about are held, and operators' rules.
    pub(crate) operators: Arc<Operators>,
    /// Answers what the policy's host names are (shared cache).
    pub(crate) names: Resolver,
    /// Rules the embedding program gave this sandbox at run time, checked after the policy's
    /// `[[deny]]` tables and before its `[[allow]]` tables.
    pub(crate) rules: RwLock<SandboxRules>,
    /// What serves the connects of the run-time rules' served entries, by the entry in
    /// canonical form (`SandboxHandle::serve`).
    pub(crate) servers: RwLock<crate::hook::Servers>,
    /// The embedding program's decision hook, asked after the run-time rules.
    pub(crate) hook: Option<Arc<dyn DecisionHook>>,
    /// Readable once the broker stops: the receiver then leaves, and the listener closes.
    pub(crate) stop: Arc<OwnedFd>,
    /// The policy's `[limits]`, with what they count.
    pub(crate) limits: SandboxLimits,
    /// When it registered.
    pub(crate) registered: Instant,
    /// Where its receiver records the calls it takes, for a broker started after this one
    /// (`restart/journal.rs`); `None` for a sandbox nobody can register again.
    pub(crate) journal: Option<Arc<Journal>>,
    /// The connects the broker is performing for it, stopped when its last task exits.
    pub(crate) performing: Performing,
    /// Its key with the reaper, which watches its listener for the end of the sandbox.
    pub(crate) reaper_key: u64,
    decisions: AtomicU64,
    /// The cookies of the network namespaces its callers were found in, by the inode of
    /// the namespace (`ops/bridge.rs`, `foreign`).
    pub(crate) netns_cookies: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    /// The cookie of the network namespace its first caller was found in, for a sandbox that
    /// cannot leave it (`ops/bridge.rs`, `foreign`).
    pub(crate) home_netns: std::sync::OnceLock<u64>,
    /// Its callers' pidfds, by thread id.
    pub(crate) pidfds: PidfdCache,
    /// Who registered it: the user at the other end of the broker's socket, `None` for a
    /// sandbox the program running the broker registered itself.
    pub(crate) owner: Option<u32>,
    /// The mount namespace and root of its process when it registered, in which unix paths
    /// are named (`caller/view.rs`); `None` when that process could not be read.
    pub(crate) view: Option<View>,
}

/// Where a sandbox's policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PolicySource {
    /// The text the registering client sent: the broker never reads the client's files, so a
    /// reload cannot read it again. Not an administrator's: it grants nothing of the
    /// broker's own privilege (invariant 3).
    Client,
    /// A policy the program that runs the broker handed it in its own process (the embedding
    /// API; `netjail run`'s embedded broker): whoever owns the broker is its administrator.
    /// A reload cannot read it again.
    Owner,
    /// The policy `name` of the OCI agent's policies directory `dir` (or a built-in).
    Directory {
        /// The policies directory.
        dir: PathBuf,
        /// The policy's name there.
        name: String,
    },
}

impl PolicySource {
    /// Whether an administrator of the broker chose the policy (its policies directory, a
    /// built-in read there, or the broker's owner), so that a grant by name there may use the
    /// broker's own privilege (rule J8, invariant 3). A policy a client sent never does.
    pub(crate) fn is_administrators(&self) -> bool {
        !matches!(self, PolicySource::Client)
    }
}

/// The policy a sandbox's calls are decided by now.
#[derive(Debug, Clone)]
pub(crate) struct Active {
    pub policy: Arc<Policy>,
    /// Every call of the sandbox is decided off its receiver thread: the policy may hold a
    /// call for an operator or look a host name up, the hook may wait for its program, and
    /// none of them may stop the receiver.
    pub slow_path: bool,
}

impl Active {
    fn new(policy: Arc<Policy>, hook: bool) -> Active {
        let slow_path = policy.may_ask() || policy.has_host_names() || hook;
        Active { policy, slow_path }
    }
}

/// Whether `new` may replace `old` in a running sandbox: the seccomp filter was compiled from
/// `old`'s `[sockets]` and confinement keys and cannot change, the counters of `[limits]` were
/// set up at registration, and operators' rules and the overlay name the policy by its name.
pub(crate) fn compatible(old: &Policy, new: &Policy) -> Result<(), String> {
    if old.name() != new.name() {
        return Err(format!(
            "the policy's name changed from `{}` to `{}` (operators' rules name it)",
            old.name(),
            new.name()
        ));
    }
    if old.sockets() != new.sockets() || old.sockets_refuse() != new.sockets_refuse() {
        return Err(
            "[sockets] changed: the running seccomp filter was compiled from the old one; \
             restart the sandbox"
                .into(),
        );
    }
    if old.confinement() != new.confinement() {
        return Err(
            "confinement keys changed: the running seccomp filter (and Landlock rules) were \
             made from the old ones; restart the sandbox"
                .into(),
        );
    }
    if old.limits() != new.limits() {
        return Err(
            "[limits] changed: they are counted from the sandbox's registration; restart the \
             sandbox"
                .into(),
        );
    }
    Ok(())
}

impl Sandbox {
    #[allow(clippy::too_many_arguments)] // one per field the registration fills in
    pub(crate) fn new(
        id: SandboxId,
        name: String,
        container: Option<String>,
        pid: i32,
        policy: Arc<Policy>,
        source: PolicySource,
        listener: OwnedFd,
        operators: Arc<Operators>,
        names: Resolver,
        hook: Option<Arc<dyn DecisionHook>>,
        stop: Arc<OwnedFd>,
    ) -> Self {
        let limits = SandboxLimits::new(policy.limits());
        let active = Active::new(policy, hook.is_some());
        Sandbox {
            id,
            name,
            container,
            pid,
            active: RwLock::new(active),
            source,
            listener,
            in_flight: Account::new(&bounds::POOL_BUDGET),
            descriptors: Account::new(&bounds::DESCRIPTORS_BUDGET),
            operators,
            names,
            rules: RwLock::new(SandboxRules::new()),
            servers: RwLock::new(crate::hook::Servers::default()),
            hook,
            stop,
            limits,
            registered: Instant::now(),
            journal: None,
            performing: Performing::default(),
            reaper_key: crate::bounds::reaper::new_key(),
            decisions: AtomicU64::new(0),
            netns_cookies: std::sync::Mutex::new(std::collections::HashMap::new()),
            home_netns: std::sync::OnceLock::new(),
            pidfds: PidfdCache::default(),
            owner: None,
            view: None,
        }
    }

    /// The same sandbox, registered by user `owner` over a socket.
    pub(crate) fn with_owner(mut self, owner: Option<u32>) -> Self {
        self.owner = owner;
        self
    }

    /// The user whose `--always` rules and policy-wide grants this sandbox shares with the
    /// other sandboxes of the same policy name: `None` for the administrator's (root, the
    /// broker's own user, the OCI agent's policies directory, the program running the
    /// broker), the registering user otherwise. A policy's name is chosen by whoever
    /// registers it, so one user's rules never cover another user's policy of that name.
    pub(crate) fn tenant(&self) -> Option<u32> {
        if matches!(self.source, PolicySource::Directory { .. }) {
            return None;
        }
        self.owner
            .filter(|&uid| uid != 0 && uid != crate::sys::geteuid())
    }

    /// This sandbox as operators see it, with the policy in force now.
    pub(crate) fn asking(&self) -> Asking<'_> {
        Asking {
            id: self.id,
            name: &self.name,
            container: self.container.as_deref(),
            policy: self.policy(),
            tenant: self.tenant(),
            max_pending: self.limits.max_pending,
        }
    }

    /// The same sandbox, naming unix paths in `view`.
    pub(crate) fn with_view(mut self, view: Option<View>) -> Self {
        self.view = view;
        self
    }

    /// The same sandbox, recording its calls in `journal`.
    pub(crate) fn with_journal(mut self, journal: Option<Arc<Journal>>) -> Self {
        self.journal = journal;
        self
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.active().policy
    }

    /// The policy in force now and whether it needs the slow path: one snapshot, taken once
    /// per call (a lock read and a reference count, no allocation).
    pub(crate) fn active(&self) -> Active {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `policy` in force for the sandbox's next calls, if what the running filter and
    /// the sandbox's counters were made from is the same in it; otherwise says why not, and
    /// the old policy stays. Calls already being decided finish under the old one.
    pub(crate) fn replace_policy(&self, policy: Policy) -> Result<bool, String> {
        let old = self.policy();
        compatible(&old, &policy)?;
        if old.to_toml() == policy.to_toml() {
            return Ok(false);
        }
        let active = Active::new(Arc::new(policy), self.hook.is_some());
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = active;
        Ok(true)
    }

    /// Whether the sandbox has no run-time rules.
    pub(crate) fn rules_empty(&self) -> bool {
        self.rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// What the run-time rules say of a canonical request; where a served entry allows it,
    /// its server is left in `served`.
    pub(crate) fn rules_decide(
        &self,
        request: &netjail_policy::Request,
        served: &std::sync::Mutex<Option<crate::hook::Served>>,
    ) -> Option<Decision> {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        let decision = rules.decide(request)?;
        if decision.verdict != netjail_policy::Verdict::Allow {
            return Some(decision);
        }
        if let Some(entry) = rules.serving(request) {
            let servers = self.servers.read().unwrap_or_else(|p| p.into_inner());
            let Some(server) = servers.0.get(&entry) else {
                // Never: a served entry is added with its server; fail closed.
                return Some(crate::reply::refusal(
                    "sandbox.serve:no-server",
                    libc::EPERM,
                ));
            };
            *served.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(crate::hook::Served::By(Arc::clone(server)));
        }
        Some(decision)
    }

    pub(crate) fn count_decision(&self) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of calls decided so far.
    pub fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}

impl Watched for Sandbox {
    fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    fn performing(&self) -> &Performing {
        &self.performing
    }

    fn reaper_key(&self) -> u64 {
        self.reaper_key
    }

    fn id(&self) -> SandboxId {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "name = \"web\"\ndefault = \"ask\"\n{extra}[sockets]\nallow = [\"inet:stream\"]\n"
        );
        Policy::from_toml(&text, "t").unwrap()
    }

    #[test]
    fn rules_may_change_but_not_what_the_filter_was_made_from() {
        let old = policy("");
        let rule = "[[allow]]\nconnect = [\"tcp://127.0.0.1:80\"]\n";
        assert_eq!(compatible(&old, &policy(rule)), Ok(()));
        let sockets = Policy::from_toml(
            "name = \"web\"\ndefault = \"ask\"\n[sockets]\nallow = [\"inet:dgram\"]\n",
            "t",
        )
        .unwrap();
        let why = compatible(&old, &sockets).unwrap_err();
        assert!(why.starts_with("[sockets] changed"), "{why}");
        let why = compatible(&old, &policy("ioctl = \"safe-list\"\n")).unwrap_err();
        assert!(why.starts_with("confinement keys changed"), "{why}");
        let why = compatible(&old, &policy("[limits]\nmax_connections = 3\n")).unwrap_err();
        assert!(why.starts_with("[limits] changed"), "{why}");
        let renamed = Policy::from_toml(
            "name = \"mail\"\ndefault = \"ask\"\n[sockets]\nallow = [\"inet:stream\"]\n",
            "t",
        )
        .unwrap();
        let why = compatible(&old, &renamed).unwrap_err();
        assert!(why.contains("name changed"), "{why}");
    }

    #[test]
    fn the_slow_path_follows_the_policy() {
        let fast = Policy::from_toml("name = \"x\"\ndefault = \"deny\"\n", "t").unwrap();
        assert!(!Active::new(Arc::new(fast.clone()), false).slow_path);
        assert!(Active::new(Arc::new(fast), true).slow_path);
        assert!(Active::new(Arc::new(policy("")), false).slow_path);
    }
}
