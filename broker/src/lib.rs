//! netjail's broker: it receives the seccomp listeners of confined processes, decides each
//! network call they make against their policy, and performs the allowed ones itself, on its
//! own copy of the arguments (`docs/architecture.md`, "The path of one call").
//!
//! The same library serves the daemon `netjaild`, the broker embedded in `netjail run`, and
//! programs that run a broker themselves ([`Broker::builder`]: a decision hook of their own and
//! rules changed per sandbox at run time; see [`embed`] and the project's `docs/embedding.md`).
//!
//! # Module map
//!
//! What embedders use is at the root ([`Broker`], [`Builder`], [`DecisionHook`],
//! [`serve`]) and in [`embed`], [`names`] (host names in policies), [`metrics`] and
//! [`logging`]; [`daemon`] is `netjaild` itself. The rest is private and follows one call
//! (`docs/architecture.md`, "The broker's folders"): `receiver/` takes it from the seccomp
//! listener and replies; `ops/` decides and performs each operation as the caller, who
//! `caller/` says; `bounds/` and `operators/` bound what a sandbox holds and hold what the
//! policy asks about; `restart/` keeps calls across a restart; `sys/` makes the system calls.
//!
//! ```no_run
//! # async fn example(listener_fd: std::os::fd::OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
//! use netjail_broker::Broker;
//! use netjail_policy::{builtin, Policy};
//!
//! let broker = Broker::new();
//! let policy = Policy::from_toml(builtin("loopback-only").unwrap(), "builtin:loopback-only")
//!     .expect("built-ins parse");
//! // `listener_fd` is a seccomp listener made with SECCOMP_FILTER_FLAG_NEW_LISTENER.
//! let id = broker.register("demo", 1234, policy, listener_fd)?;
//! println!("registered {id}");
//! # Ok(()) }
//! ```

#![warn(unreachable_pub)]

mod bounds;
mod call;
mod caller;
pub mod daemon;
pub mod embed;
mod hook;
pub mod logging;
pub mod metrics;
pub mod names;
mod operators;
mod ops;
mod receiver;
mod registry;
mod reply;
mod restart;
mod sandbox;
mod server;
mod sys;
#[cfg(test)]
mod testing;

/// Not part of the API: the pure decoders of syscall arguments, for the fuzz targets in
/// `fuzz/` (docs/fuzzing.md), which call them on arbitrary bytes without a live process.
/// The broker itself reaches them through its private modules; nothing here may change
/// what they do.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::ops::address::{encode, local_address, read, Known, Reading, SocketState, Use};
    pub use crate::ops::decode::{proto_of, sockaddr_un, syscall, Syscall};
    pub use crate::ops::decode::{AUDIT_ARCH_AARCH64, AUDIT_ARCH_X86_64, MAX_SOCKADDR_LEN};
    pub use crate::ops::msg::{cmsgs, encode_cmsgs, encode_ucred, iovecs, rights, ucred};
    pub use crate::ops::msg::{Cmsg, IoVec, MsgHdr, Ucred};
    pub use crate::ops::msg::{CMSGHDR_LEN, IOVEC_LEN, MAX_CONTROL, SCM_MAX_FD, UIO_MAXIOV};
    pub use crate::ops::msg::{MMSGHDR_LEN, MMSG_LEN_OFFSET, MSGHDR_LEN};
    pub use crate::sys::SocketKind;
}

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use netjail_policy::Policy;
use netjail_protocol::control::{Event, SandboxInfo};
use netjail_protocol::SandboxId;

use operators::Operators;

/// Makes, once per process, what a broker without `CAP_SYS_ADMIN` needs to bind a unix
/// datagram socket with a program's own path so that the bind lands in the directory decided
/// on: a user namespace of the process's own, whose maps the kernel lets a process write only
/// while it is dumpable (`broker/src/sys/userns.rs`). Building a broker does this; a process
/// that turns itself non-dumpable before it builds one (`prctl(PR_SET_DUMPABLE, 0)`, as
/// `netjail run` does) calls this first, while it still is. Without it such a broker refuses
/// those binds (rule `unix:no-user-namespace`). Nothing to do for a broker with
/// `CAP_SYS_ADMIN`.
pub fn prepare_unprivileged_binds() {
    sys::prepare_user_namespace();
}

pub use bounds::MAX_IN_FLIGHT;
pub use bounds::POOL;
pub use embed::{
    BuildError, Builder, DecisionHook, Embedded, HookCall, HookVerdict, RuleChangeError,
    SandboxGone, SandboxHandle,
};
pub use receiver::audit::TARGET as AUDIT_TARGET;
pub use registry::DEFAULT_MAX_SANDBOXES_PER_USER;
pub use restart::fdstore::TakenBack;
use sandbox::PolicySource;
pub use sandbox::Sandbox;
pub use server::{bind_registration_socket, bind_socket, serve, serve_with, RegistrationConfig};

/// The broker: a set of sandboxes, each with a receiver thread.
pub struct Broker {
    next_id: AtomicU64,
    sandboxes: Mutex<HashMap<SandboxId, Arc<Sandbox>>>,
    operators: Arc<Operators>,
    names: names::Resolver,
    hook: Option<Arc<dyn DecisionHook>>,
    /// The runtime of an embedded broker; `None`: the caller's, at each registration.
    runtime: Option<tokio::runtime::Handle>,
    stop: Mutex<embed::Stop>,
    /// Where the journals of the sandboxes are kept ([`Broker::keep_journals`]).
    state: std::sync::OnceLock<restart::journal::StateDir>,
    /// Listeners only the broker holds go to the service manager's store
    /// ([`Broker::store_listeners`]).
    fd_store: std::sync::OnceLock<restart::fdstore::FdStore>,
    /// Each listener once, and sandboxes per user; locked after `sandboxes`, never before.
    registry: Mutex<registry::Registry>,
    /// Sandboxes one user (root aside) may have registered at once.
    max_per_user: AtomicUsize,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("sandboxes", &self.sandbox_count())
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

/// The resolver of the system's hosts file and resolv.conf; one that knows no names when
/// they cannot be read.
pub(crate) fn default_resolver() -> names::Resolver {
    names::Resolver::new(names::ResolverConfig::default()).unwrap_or_else(|e| {
        // Only an unreadable file gets here: resolve with no sources, so that every
        // name is unknown (deny entries with names match, allow entries do not).
        tracing::warn!(error = %e, "cannot read the resolver's files; host names stay unknown");
        names::Resolver::new(names::ResolverConfig {
            hosts: "/dev/null".into(),
            resolv_conf: "/dev/null".into(),
            ..names::ResolverConfig::default()
        })
        .expect("/dev/null can be read")
    })
}

/// Refuses an fd that is not a seccomp listener, and asks the kernel for synchronous wake-ups
/// on the listener (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`) where it has them.
fn check_listener(listener: BorrowedFd<'_>) -> Result<(), RegisterError> {
    let what = sys::fd_kind(listener);
    if what != sys::SECCOMP_LISTENER_KIND {
        return Err(RegisterError::NotAListener(what));
    }
    if let Err(e) = sys::notif_sync_wakeup(listener) {
        tracing::debug!(error = %e, "no synchronous wake-up on this kernel");
    }
    Ok(())
}

/// Who registered a sandbox that may be registered again, under which earlier id, and how its
/// listener comes back to a broker started after this one.
#[derive(Debug, Clone)]
pub(crate) struct Persist {
    uid: u32,
    previous: Option<SandboxId>,
    comeback: Comeback,
}

/// How a sandbox's listener reaches the next broker.
#[derive(Debug, Clone)]
pub(crate) enum Comeback {
    /// Its client kept a copy and registers it again (`RegisterAgain`).
    Client,
    /// The broker has the only copy: it goes to the service manager's file descriptor store
    /// now, with this record of the policy (`restart/fdstore.rs`).
    ToStore(restart::fdstore::StoredPolicy),
    /// It came back from the store at this start: it is there already, under the same id.
    FromStore,
}

/// Errors of [`Broker::register`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The fd is not a seccomp listener.
    #[error("the fd given is not a seccomp listener (it is {0})")]
    NotAListener(String),
    /// The receiver thread could not start.
    #[error("cannot start the receiver of the sandbox: {0}")]
    Io(#[from] io::Error),
    /// Called outside a tokio runtime, on a broker that has none of its own (one made with
    /// [`Broker::builder`] has).
    #[error("register must be called inside a tokio runtime")]
    NoRuntime,
    /// The broker has stopped.
    #[error("the broker has stopped")]
    Stopped,
    /// This listener is registered already, as this sandbox: every copy of a listener is the
    /// same filter's, and a second receiver would answer some of its calls by another policy.
    #[error("this seccomp listener is registered already (sandbox {0})")]
    AlreadyRegistered(SandboxId),
    /// Whether the listener is registered already cannot be told (`kcmp` failed: a kernel
    /// without `CONFIG_KCMP`); nothing is registered.
    #[error("cannot tell whether this listener is registered already: kcmp: {0}")]
    Unverifiable(io::Error),
    /// The registering user has as many sandboxes as the broker allows one user.
    #[error(
        "uid {uid} has {max} sandboxes registered, the most this broker allows one user \
         (netjaild --max-sandboxes-per-user)"
    )]
    TooManySandboxes {
        /// The user.
        uid: u32,
        /// The limit.
        max: usize,
    },
}

impl Broker {
    /// A broker with no sandboxes, whose operators' `--always` rules live in memory only.
    /// With nobody watching (no control socket is served), calls a policy asks about get the
    /// policy's fallback at once.
    /// Host names are resolved with the system's hosts file and resolv.conf.
    pub fn new() -> Arc<Broker> {
        Broker::with_parts(Operators::new(None), default_resolver())
    }

    /// A broker with no sandboxes, this operators' side (e.g. with an overlay directory) and
    /// this resolver of host names.
    pub fn with_parts(operators: Arc<Operators>, names: names::Resolver) -> Arc<Broker> {
        Broker::assemble(operators, names, None, None)
    }

    /// A broker for a program that runs it itself: its own runtime (or the program's), a
    /// decision hook, its own registration socket. See [`embed`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn assemble(
        operators: Arc<Operators>,
        names: names::Resolver,
        hook: Option<Arc<dyn DecisionHook>>,
        runtime: Option<tokio::runtime::Handle>,
    ) -> Arc<Broker> {
        // Made while the process may still be dumpable, which the kernel wants of a process
        // that maps its own ids in a user namespace (sys/userns.rs).
        prepare_unprivileged_binds();
        // Every broker holds listeners and copies of sandboxes' sockets: its process is out of
        // reach of processes of its user (a sandbox without Landlock among them) unless they
        // have CAP_SYS_PTRACE (F15). prctl(PR_SET_DUMPABLE, 0) cannot fail.
        let _ = sys::set_not_dumpable();
        // The process's reaper (one thread, one epoll fd) starts with its first broker, not
        // with its first sandbox: a broker's fds and threads do not grow when one registers.
        bounds::reaper::start();
        Arc::new(Broker {
            next_id: AtomicU64::new(1),
            sandboxes: Mutex::new(HashMap::new()),
            operators,
            names,
            hook,
            runtime,
            stop: Mutex::new(embed::Stop::new()),
            state: std::sync::OnceLock::new(),
            fd_store: std::sync::OnceLock::new(),
            registry: Mutex::new(registry::Registry::default()),
            max_per_user: AtomicUsize::new(DEFAULT_MAX_SANDBOXES_PER_USER),
        })
    }

    /// Lets each user other than root have at most `max` sandboxes registered over the
    /// broker's sockets at once ([`DEFAULT_MAX_SANDBOXES_PER_USER`] unless told); past it a
    /// registration is refused ([`RegisterError::TooManySandboxes`]). Each sandbox costs the
    /// broker a thread, its listener, a journal and a slot in the fd store.
    pub fn max_sandboxes_per_user(&self, max: usize) {
        self.max_per_user.store(max, Ordering::Relaxed);
    }

    /// The limit [`Broker::max_sandboxes_per_user`] set.
    pub(crate) fn max_per_user_now(&self) -> usize {
        self.max_per_user.load(Ordering::Relaxed)
    }

    /// Refuses `listener` when it is registered already ([`RegisterError::AlreadyRegistered`])
    /// or when that cannot be told ([`RegisterError::Unverifiable`]).
    pub(crate) fn check_unregistered(
        &self,
        listener: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), RegisterError> {
        let _sandboxes = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        match registry.position(listener) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(id)) => Err(RegisterError::AlreadyRegistered(id)),
            Err(e) => Err(RegisterError::Unverifiable(e)),
        }
    }

    /// Keeps a journal of each sandbox that registers on the registration socket in `dir`
    /// (made with mode 0700 if missing), so that a broker started after this one stopped or
    /// crashed decides the calls this one had received and not answered, once the sandbox's
    /// client registers it again ([`netjail_protocol::RegisterAgain`]; `restart/journal.rs`). Journals
    /// an earlier broker left there for processes that still run are kept, and new sandboxes
    /// get ids above theirs; the others are removed. Returns how many were kept and removed.
    /// Once per broker; a second call is refused.
    pub fn keep_journals(&self, dir: &std::path::Path) -> std::io::Result<(usize, usize)> {
        let (state, found) = restart::journal::StateDir::open(dir)?;
        self.next_id.fetch_max(found.highest + 1, Ordering::Relaxed);
        self.state
            .set(state)
            .map_err(|_| std::io::Error::other("the broker keeps its journals already"))?;
        Ok((found.kept, found.removed))
    }

    /// Hands the listener of each sandbox registered from now on by a container runtime (the
    /// OCI agent) or by a process that confines itself to the service manager's file
    /// descriptor store (`FDSTORE=1` to `NOTIFY_SOCKET`), with a meta file beside its journal,
    /// so that a broker started after this one serves it again
    /// ([`Broker::take_back_stored`]). Needs the journals ([`Broker::keep_journals`]) and
    /// `NOTIFY_SOCKET`; refused otherwise. Once per broker.
    pub fn store_listeners(&self) -> std::io::Result<()> {
        let Some(state) = self.state.get() else {
            return Err(std::io::Error::other(
                "the fd store needs the journals (a state directory)",
            ));
        };
        if !daemon::activation::notify_socket_set() {
            return Err(std::io::Error::other(
                "the fd store needs a service manager (NOTIFY_SOCKET is not set)",
            ));
        }
        self.fd_store
            .set(restart::fdstore::FdStore::new(state.dir()))
            .map_err(|_| std::io::Error::other("the broker stores its listeners already"))
    }

    /// Whether listeners go to the service manager's store ([`Broker::store_listeners`]).
    pub fn stores_listeners(&self) -> bool {
        self.fd_store.get().is_some()
    }

    /// Stops the broker: no sandbox may register any more, and each registered sandbox's
    /// receiver leaves, which closes its seccomp listener once its calls in progress are
    /// answered. The kernel then fails the sandboxes' trapped calls with `ENOSYS` (fail
    /// closed). Dropping an [`Embedded`] does this.
    pub fn shutdown(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).stop();
    }

    /// Stops the broker as a service stops (`netjaild` on SIGTERM): [`Broker::shutdown`], then
    /// waits, at most `limit`, until every receiver has left and every call in progress has
    /// been answered. Calls held for an operator are not waited for: they stay on record in
    /// the journals, for the next broker. Returns how many calls were still in progress at
    /// the end (0 when everything in progress was answered). Journals stay (only a sandbox's
    /// end removes its journal), and so do listeners in the service manager's store.
    pub async fn stop_and_drain(&self, limit: std::time::Duration) -> usize {
        let all: Vec<Arc<Sandbox>> = self
            .sandboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        self.shutdown();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let busy = self.busy(&all);
            if busy == 0 || tokio::time::Instant::now() >= deadline {
                return busy;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// What of `sandboxes` is still at work: a receiver that has not left counts one, and so
    /// does each call on the blocking pool that is not held for an operator.
    fn busy(&self, sandboxes: &[Arc<Sandbox>]) -> usize {
        let registered = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        sandboxes
            .iter()
            .map(|s| {
                let receiving = usize::from(registered.contains_key(&s.id));
                let on_pool = s.in_flight.in_use();
                let held = self.operators.pending_of(s.id) as usize;
                receiving + on_pool.saturating_sub(held)
            })
            .sum()
    }

    /// The runtime the broker was built with ([`Broker::builder`]); `None` for a broker made
    /// with [`Broker::new`] or [`Broker::with_parts`], which registers on the caller's.
    pub fn own_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.clone()
    }

    /// The run-time rules of sandbox `id`, while it is registered.
    pub fn sandbox(&self, id: SandboxId) -> Option<SandboxHandle> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(SandboxHandle::new)
    }

    /// The operators' side: held calls, operators' rules, events, counters.
    pub fn operators(&self) -> &Arc<Operators> {
        &self.operators
    }

    /// The sandboxes registered now, in the order of their ids.
    pub(crate) fn sandboxes_by_id(&self) -> Vec<Arc<Sandbox>> {
        let mut list: Vec<Arc<Sandbox>> = self
            .sandboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        list.sort_by_key(|s| s.id.0);
        list
    }

    /// The sandboxes registered now, by id, as operators see them.
    pub fn sandbox_infos(&self) -> Vec<SandboxInfo> {
        self.sandboxes_by_id()
            .iter()
            .map(|s| self.info(s))
            .collect()
    }

    fn info(&self, s: &Sandbox) -> SandboxInfo {
        SandboxInfo {
            sandbox: s.id,
            name: s.name.clone(),
            container: s.container.clone().unwrap_or_default(),
            pid: s.pid,
            policy: s.policy().name().to_string(),
            decisions: s.decisions(),
            pending: self.operators.pending_of(s.id),
            age_ms: s.registered.elapsed().as_millis() as u64,
        }
    }

    /// Takes a sandbox's seccomp listener and starts deciding its calls on a receiver thread of
    /// its own. A broker made by [`Broker::builder`] may be called from any thread; any other
    /// must be called inside a tokio runtime (its blocking pool runs the calls that may
    /// wait). The sandbox leaves when every task of its filter has exited.
    pub fn register(
        self: &Arc<Self>,
        name: &str,
        pid: i32,
        policy: Policy,
        listener: OwnedFd,
    ) -> Result<SandboxId, RegisterError> {
        self.add(
            name,
            None,
            pid,
            policy,
            PolicySource::Owner,
            listener,
            None,
            None,
        )
        .map(|(id, _)| id)
    }

    /// As [`Broker::register`], for a sandbox that `uid` registered on the registration
    /// socket and may register again with a broker started after this one: its calls are
    /// recorded in a journal when the broker keeps them ([`Broker::keep_journals`]). With
    /// `previous`, the id an earlier broker gave it, that broker's journal is taken over when
    /// it was made for the same pid and user: the sandbox keeps its id, and the calls recorded
    /// there that still wait are decided again. Returns the id and how many calls wait.
    pub(crate) fn register_persistent(
        self: &Arc<Self>,
        name: &str,
        pid: i32,
        policy: Policy,
        listener: OwnedFd,
        (uid, previous): (u32, Option<SandboxId>),
    ) -> Result<(SandboxId, usize), RegisterError> {
        let persist = Some(Persist {
            uid,
            previous,
            comeback: Comeback::Client,
        });
        self.add(
            name,
            None,
            pid,
            policy,
            PolicySource::Client,
            listener,
            persist,
            Some(uid),
        )
    }

    /// As [`Broker::register`], for a process of the OCI container `container`: the sandbox
    /// is named after the container, and its audit events carry the container's id.
    pub fn register_container(
        self: &Arc<Self>,
        container: &str,
        pid: i32,
        policy: Policy,
        listener: OwnedFd,
    ) -> Result<SandboxId, RegisterError> {
        self.add(
            container,
            Some(container),
            pid,
            policy,
            PolicySource::Owner,
            listener,
            None,
            None,
        )
        .map(|(id, _)| id)
    }

    /// As [`Broker::register_container`], for a policy the OCI agent read by name from its
    /// policies directory `dir`: a reload reads it again.
    /// The runtime (peer `uid`) handed the broker its only copy of the listener: it goes to
    /// the service manager's store when the broker stores listeners.
    pub(crate) fn register_container_from(
        self: &Arc<Self>,
        container: &str,
        (pid, uid): (i32, u32),
        (dir, name, policy): (&std::path::Path, &str, Policy),
        listener: OwnedFd,
    ) -> Result<SandboxId, RegisterError> {
        let stored = restart::fdstore::StoredPolicy::Directory {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        };
        let source = stored.source();
        let persist = self.to_store(uid, stored);
        self.add(
            container,
            Some(container),
            pid,
            policy,
            source,
            listener,
            persist,
            Some(uid),
        )
        .map(|(id, _)| id)
    }

    /// As [`Broker::register`], for a sandbox of user `uid` whose only listener the broker
    /// holds: a process that confined itself (the broker took its listener), or a client that
    /// registered with a plain `Register` and keeps no copy (a library's `Sandbox`). It goes to
    /// the service manager's store, with the policy's text and origin, when the broker stores
    /// listeners.
    pub(crate) fn register_handed_over(
        self: &Arc<Self>,
        name: &str,
        (pid, uid): (i32, u32),
        (policy, toml, origin): (Policy, &str, &str),
        listener: OwnedFd,
    ) -> Result<SandboxId, RegisterError> {
        let stored = restart::fdstore::StoredPolicy::Client {
            toml: toml.to_string(),
            origin: origin.to_string(),
        };
        let persist = self.to_store(uid, stored);
        self.add(
            name,
            None,
            pid,
            policy,
            PolicySource::Client,
            listener,
            persist,
            Some(uid),
        )
        .map(|(id, _)| id)
    }

    /// The persistence of a sandbox whose only listener the broker holds: to the store, when
    /// the broker stores listeners; none otherwise (a journal would serve nobody).
    fn to_store(&self, uid: u32, policy: restart::fdstore::StoredPolicy) -> Option<Persist> {
        self.fd_store.get()?;
        Some(Persist {
            uid,
            previous: None,
            comeback: Comeback::ToStore(policy),
        })
    }

    #[allow(clippy::too_many_arguments)] // the registration's parts
    /// Registers; returns the id and how many calls of an earlier broker are decided again.
    fn add(
        self: &Arc<Self>,
        name: &str,
        container: Option<&str>,
        pid: i32,
        policy: Policy,
        source: PolicySource,
        listener: OwnedFd,
        persist: Option<Persist>,
        owner: Option<u32>,
    ) -> Result<(SandboxId, usize), RegisterError> {
        check_listener(listener.as_fd())?;
        let (runtime, stop) = self.receiver_needs()?;
        let policy = Arc::new(policy);
        self.prefetch(&policy);
        // Read before the locks: the registering process's view, where unix paths are named.
        let view = caller::view::View::of_process(pid);
        // The id, the journal and the insertion under one lock: two registrations naming the
        // same earlier id cannot both take its journal over.
        let mut sandboxes = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let place = match registry.position(listener.as_fd()) {
            Ok(Ok(place)) => place,
            Ok(Err(id)) => return Err(RegisterError::AlreadyRegistered(id)),
            Err(e) => return Err(RegisterError::Unverifiable(e)),
        };
        self.check_quota(&registry, owner, persist.as_ref())?;
        let comeback = persist.as_ref().map(|p| (p.uid, p.comeback.clone()));
        let (id, journal, replays) = self.journal_for(&sandboxes, pid, listener.as_fd(), persist);
        let sandbox = Arc::new(
            Sandbox::new(
                id,
                name.to_string(),
                container.map(str::to_string),
                pid,
                policy,
                source,
                listener,
                self.operators.clone(),
                self.names.clone(),
                self.hook.clone(),
                stop,
            )
            .with_journal(journal)
            .with_owner(owner)
            .with_view(view),
        );
        sandboxes.insert(id, sandbox.clone());
        registry.insert(place, sandbox.clone());
        drop(registry);
        drop(sandboxes);
        // Stored before the receiver takes a call: once it has one, a crash must not lose
        // the listener it waits on. (A file and a message: not under the lock.)
        let stored = match comeback {
            Some((uid, Comeback::ToStore(policy))) => {
                let meta = restart::fdstore::Meta::new(id, (name, container), pid, uid, policy);
                self.store_listener(&meta, sandbox.listener.as_fd())
            }
            Some((_, Comeback::FromStore)) => true,
            _ => false,
        };
        let waiting = replays.len();
        self.operators
            .publish(Event::Registered(self.info(&sandbox)));
        self.start_receiver(sandbox, runtime, replays, stored)?;
        Ok((id, waiting))
    }

    /// What a receiver thread needs of the broker: the runtime whose blocking pool performs
    /// its calls (the broker's own, else the caller's), and the fd that wakes it when the
    /// broker stops. Refused on a broker that has stopped.
    fn receiver_needs(&self) -> Result<(tokio::runtime::Handle, Arc<OwnedFd>), RegisterError> {
        let runtime = match &self.runtime {
            Some(h) => h.clone(),
            None => tokio::runtime::Handle::try_current().map_err(|_| RegisterError::NoRuntime)?,
        };
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fd()?
            .ok_or(RegisterError::Stopped)?;
        Ok((runtime, stop))
    }

    /// Refuses one more sandbox to user `owner` when it has as many as the broker allows one
    /// user (`--max-sandboxes-per-user`); root and the broker's own user have no bound.
    fn check_quota(
        &self,
        registry: &registry::Registry,
        owner: Option<u32>,
        persist: Option<&Persist>,
    ) -> Result<(), RegisterError> {
        // A listener the service manager hands back was counted when it first registered.
        let returning = matches!(persist.map(|p| &p.comeback), Some(Comeback::FromStore));
        if let Some(uid) = owner.filter(|&uid| uid != 0 && uid != sys::geteuid() && !returning) {
            let max = self.max_per_user.load(Ordering::Relaxed);
            if registry.owned_by(uid) >= max {
                return Err(RegisterError::TooManySandboxes { uid, max });
            }
        }
        Ok(())
    }

    /// Starts the receiver of a sandbox registered now, with the reaper watching it. When the
    /// receiver ends, the sandbox is retired ([`Broker::retire`]) if the broker still exists;
    /// `stored`: its listener is in the service manager's store.
    fn start_receiver(
        self: &Arc<Self>,
        sandbox: Arc<Sandbox>,
        runtime: tokio::runtime::Handle,
        replays: Vec<call::Replay>,
        stored: bool,
    ) -> io::Result<()> {
        let broker = Arc::downgrade(self);
        let id = sandbox.id;
        let name = sandbox.name.clone();
        let key = sandbox.reaper_key;
        bounds::reaper::watch(&sandbox);
        receiver::start(sandbox, runtime, replays, move |ended| {
            bounds::reaper::forget(key);
            if let Some(broker) = broker.upgrade() {
                broker.retire(id, name, stored && ended);
            }
        })
    }

    /// Forgets sandbox `id`, whose receiver has ended, and tells operators. `unstore`: every
    /// task of the sandbox has exited and its listener was in the service manager's store.
    fn retire(&self, id: SandboxId, name: String, unstore: bool) {
        if let (true, Some(state)) = (unstore, self.state.get()) {
            // Every task of the sandbox has exited: the service manager's copy of the
            // listener goes too.
            restart::fdstore::FdStore::new(state.dir()).remove(id);
        }
        let mut sandboxes = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gone) = sandboxes.remove(&id) {
            self.registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&gone);
        }
        drop(sandboxes);
        self.operators.publish(Event::Retired { sandbox: id, name });
    }

    /// The id and journal of a sandbox registering now, and the calls of its earlier broker
    /// that wait (see [`Broker::register_persistent`]). Without a state directory or
    /// `persist`, a fresh id and no journal; a journal that cannot be made or taken over is
    /// logged and the sandbox goes on without (its calls are then decided as usual, but a
    /// restart of this broker loses those it has in hand).
    fn journal_for(
        &self,
        sandboxes: &HashMap<SandboxId, Arc<Sandbox>>,
        pid: i32,
        listener: std::os::fd::BorrowedFd<'_>,
        persist: Option<Persist>,
    ) -> (
        SandboxId,
        Option<Arc<restart::journal::Journal>>,
        Vec<call::Replay>,
    ) {
        let fresh = || SandboxId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (Some(state), Some(persist)) = (self.state.get(), persist) else {
            return (fresh(), None, Vec::new());
        };
        // A listener from the service manager's store keeps its id (its name there) even
        // when its journal cannot be taken over.
        let keep_id = matches!(persist.comeback, Comeback::FromStore)
            .then_some(persist.previous)
            .flatten()
            .filter(|id| !sandboxes.contains_key(id));
        if let Some(previous) = persist.previous {
            let adopted = if sandboxes.contains_key(&previous) {
                Err(format!("{previous} is registered in this broker"))
            } else {
                state.adopt(previous, pid, persist.uid, listener)
            };
            match adopted {
                Ok((journal, calls)) => {
                    self.next_id.fetch_max(previous.0 + 1, Ordering::Relaxed);
                    let calls_text: Vec<String> = calls
                        .iter()
                        .map(|(n, _)| {
                            let op = ops::decode::syscall(n.arch, n.nr)
                                .map_or("unknown".to_string(), |s| format!("{s:?}").to_lowercase());
                            format!("{op}#{}", n.id)
                        })
                        .collect();
                    tracing::info!(sandbox = %previous, waiting = calls.len(), calls = %calls_text.join(" "), "registered again; the earlier broker's journal taken over");
                    return (previous, Some(journal), calls);
                }
                Err(why) => {
                    tracing::warn!(sandbox = %previous, pid, reason = %why, "registered again without the earlier broker's journal: calls it had received and not answered stay waiting");
                }
            }
        }
        let id = match keep_id {
            Some(id) => {
                self.next_id.fetch_max(id.0 + 1, Ordering::Relaxed);
                id
            }
            None => fresh(),
        };
        match state.create(id, pid, persist.uid) {
            Ok(journal) => (id, Some(journal), Vec::new()),
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "cannot make the sandbox's journal; a restart of the broker would lose the calls it has in hand");
                (id, None, Vec::new())
            }
        }
    }

    /// The metrics now, for `netjail metrics` ([`metrics::render`]).
    pub fn metrics_snapshot(&self) -> metrics::Snapshot {
        let ops = &self.operators;
        metrics::Snapshot {
            decisions: ops.metrics().decisions(),
            latency: ops.metrics().latency(),
            sandboxes: self.sandbox_count() as u64,
            pending: ops.pending_count() as u64,
            in_flight: ops.metrics().in_flight().0,
            in_flight_peak: ops.metrics().in_flight().1,
            in_flight_limit: MAX_IN_FLIGHT as u64,
            refusals: ops.metrics().refusals(),
            descriptors_in_flight: bounds::DESCRIPTORS_BUDGET.used() as u64,
            operators: u64::from(ops.watching()),
            rules: u64::from(ops.rule_count()),
            uptime_seconds: ops.uptime().as_secs_f64(),
            counters: ops.counters(),
        }
    }

    /// Starts looking up the host names of `policy`, so that its first calls find them.
    fn prefetch(&self, policy: &Policy) {
        let patterns: Vec<names::Pattern> = policy
            .host_patterns()
            .iter()
            .map(names::Pattern::from)
            .collect();
        if !patterns.is_empty() {
            self.names.prefetch(&patterns);
        }
    }

    /// Number of sandboxes registered now.
    pub fn sandbox_count(&self) -> usize {
        self.sandboxes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
