//! The broker as a library inside a host program: [`Broker::builder`], a decision hook the
//! program supplies, and rules it changes per sandbox while the sandboxes run.
//!
//! A browser-style program (a privileged parent starting renderers, plugins, workers) runs
//! the broker in its own process. Each child is registered with a policy; on top of the
//! policy the parent decides per child, at run time:
//!
//! - with [`SandboxHandle::allow`], [`SandboxHandle::deny`] and friends, rules kept per
//!   sandbox and used from the sandbox's next call on;
//! - with a [`DecisionHook`], asked about every call that the policy's `[[deny]]` tables and
//!   the run-time rules leave open.
//!
//! The order of a decision is: what the policy settles before its tables (a bind outside the
//! jail address, a relative unix path, ...), the policy's `[[deny]]` tables, the sandbox's
//! run-time deny rules, its run-time allow rules, the hook, then the policy's `[[allow]]`
//! tables, `[[ask]]` tables and default. Nothing the parent does at run time can let through
//! what the policy denies; the policy is the ceiling a compromised parent-side component
//! cannot lift, and a run-time rule or the hook widens only within it.
//!
//! ```no_run
//! use netjail_broker::{Broker, HookVerdict};
//! use netjail_policy::{Op, Target};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = Broker::builder()
//!     // Serve the registration socket for children started elsewhere (optional).
//!     .socket("/run/user/1000/browser/netjail.sock")
//!     // Asked about what the policy neither denies nor the run-time rules settle.
//!     .hook(|call: &netjail_broker::HookCall<'_>| match (&call.request.op, &call.request.target) {
//!         (Op::Connect, Target::Inet { addr, .. }) if addr.port() == 443 => HookVerdict::Allow,
//!         _ => HookVerdict::Continue,
//!     })
//!     .build()?;
//! // ... register children (netjail_client::Sandbox does it), then, while they run:
//! # let id = netjail_protocol::SandboxId(1);
//! if let Some(child) = broker.sandbox(id) {
//!     child.allow("tcp://127.0.0.1:8443")?; // from the child's next call on
//! }
//! // Dropping the broker stops it: the children's calls fail from then on (fail closed).
//! drop(broker);
//! # Ok(()) }
//! ```

use std::io;
use std::ops::Deref;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use netjail_policy::RuleError;
use netjail_protocol::SandboxId;

pub use crate::hook::{ConnectServer, DecisionHook, HookCall, HookVerdict};
use crate::names::{Resolver, ResolverConfig};
use crate::operators::control::{self, ControlConfig};
use crate::operators::Operators;
use crate::sandbox::Sandbox;
use crate::{server, sys, Broker};

/// A registered sandbox as its embedding program sees it: its run-time rules.
///
/// It does not keep the sandbox alive: once every process of the sandbox has exited (or the
/// broker stopped), its methods return [`SandboxGone`].
#[derive(Debug, Clone)]
pub struct SandboxHandle {
    id: SandboxId,
    sandbox: Weak<Sandbox>,
}

/// The sandbox has left the broker: every process of it exited, or the broker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sandbox {0} is no longer registered")]
pub struct SandboxGone(pub SandboxId);

/// Errors changing a sandbox's run-time rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleChangeError {
    /// The entry is not valid (a typo, a host name, a relative path...).
    #[error(transparent)]
    Invalid(#[from] RuleError),
    /// The sandbox has left.
    #[error(transparent)]
    Gone(#[from] SandboxGone),
}

impl SandboxHandle {
    pub(crate) fn new(sandbox: &Arc<Sandbox>) -> SandboxHandle {
        SandboxHandle {
            id: sandbox.id,
            sandbox: Arc::downgrade(sandbox),
        }
    }

    /// The sandbox's id.
    pub fn id(&self) -> SandboxId {
        self.id
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut netjail_policy::SandboxRules) -> T,
    ) -> Result<T, SandboxGone> {
        let sandbox = self.sandbox.upgrade().ok_or(SandboxGone(self.id))?;
        let mut rules = sandbox.rules.write().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut rules))
    }

    fn change(
        &self,
        f: impl FnOnce(&mut netjail_policy::SandboxRules) -> Result<(), RuleError>,
    ) -> Result<(), RuleChangeError> {
        self.with(f)??;
        Ok(())
    }

    /// Allows connects and sends to a destination (`tcp://127.0.0.1:8443`,
    /// `udp://[::1]:53`, `tcp://10.0.0.0/8:*`), or every operation on a unix socket
    /// (`/run/app/*.sock`, `@name`), from the sandbox's next call on, unless the policy
    /// denies it. See [`netjail_policy::SandboxRules`] for the syntax.
    pub fn allow(&self, entry: &str) -> Result<(), RuleChangeError> {
        self.change(|r| r.allow(entry))
    }

    /// Denies (with `EPERM`) connects and sends to a destination, or every operation on a
    /// unix socket, from the next call on, whatever the policy allows.
    pub fn deny(&self, entry: &str) -> Result<(), RuleChangeError> {
        self.change(|r| r.deny(entry))
    }

    /// Has the host program serve the IP connects to a destination (`tcp://127.0.0.1:5432`,
    /// no host names) that the policy's `[[deny]]` tables and the deny entries leave open:
    /// `server` is asked (on a thread of the broker's blocking pool) for a socket of its own
    /// — a connection it made, with credentials the sandbox never sees, one end of a
    /// `socketpair` — and the broker puts it in place of the program's socket, as a hook's
    /// [`HookVerdict::Serve`] (ownership and what the program sees: docs/embedding.md,
    /// "Serving a connect"). A server's error fails the connect with its errno. Adding the
    /// same destination again replaces its server; [`SandboxHandle::revoke`] removes it.
    pub fn serve(
        &self,
        entry: &str,
        server: impl Fn(&HookCall<'_>) -> io::Result<OwnedFd> + Send + Sync + 'static,
    ) -> Result<(), RuleChangeError> {
        let sandbox = self.sandbox.upgrade().ok_or(SandboxGone(self.id))?;
        let mut rules = sandbox.rules.write().unwrap_or_else(|p| p.into_inner());
        let key = rules.serve(entry)?;
        sandbox
            .servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .insert(key, Arc::new(server));
        Ok(())
    }

    /// Allows binds to a local address.
    pub fn allow_bind(&self, entry: &str) -> Result<(), RuleChangeError> {
        self.change(|r| r.allow_bind(entry))
    }

    /// Denies binds to a local address.
    pub fn deny_bind(&self, entry: &str) -> Result<(), RuleChangeError> {
        self.change(|r| r.deny_bind(entry))
    }

    /// Removes a destination or unix entry from the allow and deny rules; `true` if there
    /// was one.
    pub fn revoke(&self, entry: &str) -> Result<bool, SandboxGone> {
        self.with(|r| r.revoke(entry))
    }

    /// Removes a bind entry; `true` if there was one.
    pub fn revoke_bind(&self, entry: &str) -> Result<bool, SandboxGone> {
        self.with(|r| r.revoke_bind(entry))
    }

    /// Removes every run-time rule: the policy (and the hook) decide alone again.
    pub fn clear(&self) -> Result<(), SandboxGone> {
        let sandbox = self.sandbox.upgrade().ok_or(SandboxGone(self.id))?;
        let mut rules = sandbox.rules.write().unwrap_or_else(|p| p.into_inner());
        rules.clear();
        sandbox
            .servers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clear();
        Ok(())
    }

    /// The run-time rules, as [`netjail_policy::SandboxRules::entries`] lists them.
    pub fn rules(&self) -> Result<Vec<String>, SandboxGone> {
        self.with(|r| r.entries())
    }

    /// Calls decided so far.
    pub fn decisions(&self) -> Result<u64, SandboxGone> {
        let sandbox = self.sandbox.upgrade().ok_or(SandboxGone(self.id))?;
        Ok(sandbox.decisions())
    }

    /// Whether the sandbox is still registered.
    pub fn is_registered(&self) -> bool {
        self.sandbox.strong_count() > 0
    }
}

/// Errors of [`Builder::build`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The broker's own runtime could not start.
    #[error("cannot start the broker's runtime: {0}")]
    Runtime(io::Error),
    /// A socket could not be served at this path.
    #[error("cannot listen on {path}: {source}")]
    Socket {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The resolver's files could not be read.
    #[error("cannot read the resolver's files: {0}")]
    Resolver(io::Error),
}

/// Builds a broker that runs inside the calling program. Made by [`Broker::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct Builder {
    hook: Option<Arc<dyn DecisionHook>>,
    runtime: Option<tokio::runtime::Handle>,
    socket: Option<PathBuf>,
    control: Option<(PathBuf, String)>,
    resolver: Option<ResolverConfig>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("hook", &self.hook.is_some())
            .field("runtime", &self.runtime.is_some())
            .field("socket", &self.socket)
            .field("control", &self.control)
            .field("resolver", &self.resolver)
            .finish()
    }
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder {
            hook: None,
            runtime: None,
            socket: None,
            control: None,
            resolver: None,
        }
    }

    /// The program's decision hook (see [`DecisionHook`]). Without one, the policy and the
    /// run-time rules decide alone.
    pub fn hook(mut self, hook: impl DecisionHook) -> Builder {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Runs the broker's tasks (sockets, calls that may wait) on this runtime instead of a
    /// runtime of its own. The runtime must outlive the broker; its blocking pool handles
    /// the sandboxes' calls that may wait, so it must not be a current-thread runtime that
    /// the program blocks.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Builder {
        self.runtime = Some(handle);
        self
    }

    /// Also serves the registration socket at `path` (mode 0660, as `netjaild` does), for
    /// processes that register over a socket: children the program did not start itself, or
    /// that confine themselves (`netjail_client::confine_self`). Root and the program's own
    /// user may register there; a connection the broker itself made for one of its sandboxes
    /// never may. Without it the broker has no socket at all and only the program registers
    /// sandboxes (in-process).
    pub fn socket(mut self, path: impl AsRef<Path>) -> Builder {
        self.socket = Some(path.as_ref().to_path_buf());
        self
    }

    /// Also serves the operators' control socket at `path` (`netjail pending`, `grant`,
    /// `top` work against it), open to root and the members of `group` (a name or a gid).
    /// Without it nobody watches, and calls a policy asks about get its fallback at once.
    pub fn control(mut self, path: impl AsRef<Path>, group: &str) -> Builder {
        self.control = Some((path.as_ref().to_path_buf(), group.to_string()));
        self
    }

    /// Resolves the policies' host names with this configuration (default: the system's
    /// hosts file and resolv.conf).
    pub fn resolver(mut self, config: ResolverConfig) -> Builder {
        self.resolver = Some(config);
        self
    }

    /// Starts the broker: its runtime (unless [`Builder::runtime`] gave one) and its
    /// sockets. The broker runs until the returned [`Embedded`] is dropped.
    pub fn build(self) -> Result<Embedded, BuildError> {
        let (handle, owned) = match self.runtime {
            Some(h) => (h, None),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("netjail-broker")
                    .enable_all()
                    .build()
                    .map_err(BuildError::Runtime)?;
                (rt.handle().clone(), Some(rt))
            }
        };
        let names = match self.resolver {
            Some(config) => Resolver::new(config).map_err(BuildError::Resolver)?,
            None => crate::default_resolver(),
        };
        let broker = Broker::assemble(Operators::new(None), names, self.hook, Some(handle.clone()));
        let mut embedded = Embedded {
            broker,
            tasks: Vec::new(),
            paths: Vec::new(),
            runtime: owned,
        };
        let _entered = handle.enter();
        if let Some(path) = self.socket {
            let listener = server::bind_socket(&path).map_err(|source| BuildError::Socket {
                path: path.clone(),
                source,
            })?;
            embedded.paths.push(path);
            let broker = embedded.broker.clone();
            embedded.tasks.push(handle.spawn(async move {
                if let Err(e) = server::serve(broker, listener).await {
                    tracing::error!(error = %e, "the registration socket stopped accepting");
                }
            }));
        }
        if let Some((path, group)) = self.control {
            let listener =
                control::bind_control_socket(&path).map_err(|source| BuildError::Socket {
                    path: path.clone(),
                    source,
                })?;
            embedded.paths.push(path);
            let broker = embedded.broker.clone();
            let config = Arc::new(ControlConfig::with_group(&group));
            embedded.tasks.push(handle.spawn(async move {
                if let Err(e) = control::serve_control(broker, listener, config).await {
                    tracing::error!(error = %e, "the control socket stopped accepting");
                }
            }));
        }
        Ok(embedded)
    }
}

/// A broker running inside the program, with its runtime and sockets; it dereferences to
/// the [`Broker`] (`embedded.sandbox(id)`, `embedded.register(...)`).
///
/// Dropping it stops the broker: its sockets close (and their files are removed), no
/// sandbox can register any more, and every sandbox's receiver leaves, which closes its
/// seccomp listener. From then on the kernel fails the sandboxes' trapped calls, pending or
/// later, with `ENOSYS`: confined children never get unmediated network access because
/// their broker went away (invariant 1, fail closed).
pub struct Embedded {
    broker: Arc<Broker>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    paths: Vec<PathBuf>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("broker", &self.broker)
            .field("sockets", &self.paths)
            .field("own_runtime", &self.runtime.is_some())
            .finish()
    }
}

impl Embedded {
    /// The broker, to keep or to hand to code that registers sandboxes.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The runtime the broker's tasks run on.
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.broker
            .own_runtime()
            .expect("an embedded broker always has a runtime")
    }

    /// The paths of the sockets it serves (registration, control), in the order given.
    pub fn socket_paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl Deref for Embedded {
    type Target = Arc<Broker>;

    fn deref(&self) -> &Arc<Broker> {
        &self.broker
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.broker.shutdown();
        for task in &self.tasks {
            task.abort();
        }
        for path in &self.paths {
            crate::ops::own::forget_unix(path);
            let _ = std::fs::remove_file(path);
        }
        if let Some(rt) = self.runtime.take() {
            // Never blocks, so it may run anywhere (even on a thread of another runtime).
            rt.shutdown_background();
        }
    }
}

/// The stop switch of a broker: an eventfd every receiver polls, made with the broker (or,
/// should that fail, at the next registration).
#[derive(Debug, Default)]
pub(crate) struct Stop {
    fd: Option<Arc<OwnedFd>>,
    stopped: bool,
}

impl Stop {
    /// A switch with its fd made now, if it can be.
    pub(crate) fn new() -> Stop {
        Stop {
            fd: sys::stop_fd().ok().map(Arc::new),
            stopped: false,
        }
    }

    /// The fd receivers poll; `None` once stopped.
    pub(crate) fn fd(&mut self) -> io::Result<Option<Arc<OwnedFd>>> {
        if self.stopped {
            return Ok(None);
        }
        if self.fd.is_none() {
            self.fd = Some(Arc::new(sys::stop_fd()?));
        }
        Ok(self.fd.clone())
    }

    /// Stops: wakes every receiver, and refuses later registrations.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        if let Some(fd) = &self.fd {
            if let Err(e) = sys::signal_stop(fd.as_fd()) {
                tracing::error!(error = %e, "cannot signal the receivers to stop");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hook::hook_decision;
    use netjail_policy::{Decision, Op, Proto, Request, Target, Verdict};

    fn call_to(port: u16) -> Request {
        Request {
            op: Op::Connect,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            },
        }
    }

    fn decide(hook: &dyn DecisionHook, port: u16) -> Option<Decision> {
        decide_request(hook, &call_to(port)).0
    }

    /// The decision and the socket served, if any.
    fn decide_request(
        hook: &dyn DecisionHook,
        request: &Request,
    ) -> (Option<Decision>, Option<OwnedFd>) {
        let served = std::sync::Mutex::new(None);
        let decision = hook_decision(
            hook,
            &HookCall {
                sandbox: SandboxId(7),
                name: "renderer",
                pid: 1,
                request,
            },
            &served,
        );
        let socket = match served.into_inner().unwrap() {
            Some(crate::hook::Served::Socket(socket)) => Some(socket),
            Some(crate::hook::Served::By(_)) => panic!("a hook leaves a socket, never a server"),
            None => None,
        };
        (decision, socket)
    }

    fn socketpair_end() -> OwnedFd {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        OwnedFd::from(a)
    }

    #[test]
    fn an_ip_connect_served_is_an_allow_with_the_socket_left_for_the_call() {
        let hook = |_: &HookCall<'_>| HookVerdict::Serve(socketpair_end());
        let (d, served) = decide_request(&hook, &call_to(5));
        let d = d.unwrap();
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Allow, "hook-served")
        );
        assert!(served.is_some(), "the socket waits for ops/served.rs");
    }

    #[test]
    fn anything_but_an_ip_connect_served_is_refused_and_the_socket_closed() {
        let hook = |_: &HookCall<'_>| HookVerdict::Serve(socketpair_end());
        let mut send = call_to(5);
        send.op = Op::Send;
        let unix = Request {
            op: Op::Connect,
            target: Target::UnixAbstract(b"x".to_vec()),
        };
        for request in [send, unix] {
            let (d, served) = decide_request(&hook, &request);
            let d = d.unwrap();
            assert_eq!(
                d.verdict,
                Verdict::Deny { errno: libc::EPERM },
                "{request:?}"
            );
            assert_eq!(d.rule, "hook-serve:not-an-ip-connect");
            assert!(served.is_none(), "{request:?}: nothing kept");
        }
    }

    #[test]
    fn verdicts_become_decisions_of_rule_hook() {
        let hook = |call: &HookCall<'_>| match &call.request.target {
            Target::Inet { addr, .. } if addr.port() == 1 => HookVerdict::Allow,
            Target::Inet { addr, .. } if addr.port() == 2 => HookVerdict::Deny {
                errno: libc::ECONNREFUSED,
            },
            Target::Inet { addr, .. } if addr.port() == 3 => HookVerdict::Ask,
            _ => HookVerdict::Continue,
        };
        let d = decide(&hook, 1).unwrap();
        assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Allow, "hook"));
        let d = decide(&hook, 2).unwrap();
        assert_eq!(
            d.verdict,
            Verdict::Deny {
                errno: libc::ECONNREFUSED
            }
        );
        assert_eq!(decide(&hook, 3).unwrap().verdict, Verdict::Ask);
        assert_eq!(decide(&hook, 4), None);
    }

    #[test]
    fn a_nonsense_errno_becomes_eperm() {
        for errno in [0, -1, 4096, i32::MAX, i32::MIN] {
            let hook = move |_: &HookCall<'_>| HookVerdict::Deny { errno };
            assert_eq!(
                decide(&hook, 1).unwrap().verdict,
                Verdict::Deny { errno: libc::EPERM },
                "errno {errno}"
            );
        }
    }

    #[test]
    fn a_panicking_hook_denies() {
        let hook = |_: &HookCall<'_>| -> HookVerdict { panic!("the host program's bug") };
        let d = decide(&hook, 1).unwrap();
        assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
        assert_eq!(d.rule, "hook-panicked");
    }

    #[test]
    fn stop_refuses_fds_after_stopping_and_wakes_pollers() {
        let mut stop = Stop::default();
        let fd = stop.fd().unwrap().expect("a fresh switch gives an fd");
        let again = stop.fd().unwrap().unwrap();
        assert!(Arc::ptr_eq(&fd, &again), "one fd per broker");
        // Not readable before, readable after.
        let readable = |fd: &OwnedFd| {
            let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            rustix::event::poll(&mut pfd, Some(&rustix::event::Timespec::default())).unwrap() == 1
        };
        assert!(!readable(&fd));
        stop.stop();
        assert!(readable(&fd));
        assert!(stop.fd().unwrap().is_none());
    }
}
