//! Spawning confined children from a library: [`Sandbox::builder`].
//!
//! `netjail run` forks by hand and must run while its process has one thread. A host program
//! (a browser parent spawning renderers, a build tool spawning compilers) has threads and an
//! async runtime already; this module spawns a confined child from such a program, from any
//! thread, with `std::process::Command`, so that stdio, environment, working directory and
//! credentials work as they always do.
//!
//! Between fork and exec the child confines itself in a `pre_exec` hook (capabilities,
//! `no_new_privs`, Landlock, the seccomp filter compiled from the policy; raw system calls
//! only) and reports its pid and the listener's fd number on a pipe. A helper thread of the
//! parent takes the listener with `pidfd_getfd`, registers the sandbox with the broker, and
//! acknowledges; only then does the child exec. No broker, a broker that refuses, a child
//! that cannot confine itself, a program that cannot be executed: each is an error from
//! [`SandboxBuilder::spawn`], with no child left behind (fail closed, invariant 1). There is no
//! fallback to an embedded broker: name one with [`BrokerRef::InProcess`].
//!
//! ```no_run
//! use std::io::Read;
//! use std::process::{Command, Stdio};
//!
//! use netjail_client::sandbox::{BrokerRef, Sandbox};
//! use netjail_policy::{builtin, Policy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::from_toml(builtin("loopback-only").unwrap(), "builtin:loopback-only")?;
//! let mut cmd = Command::new("curl");
//! cmd.arg("http://127.0.0.1:8080/").stdout(Stdio::piped());
//! let mut child = Sandbox::builder()
//!     .policy(policy)
//!     .broker(BrokerRef::Socket("/run/netjail/broker.sock".into()))
//!     .name("fetcher")
//!     .command(cmd)
//!     .spawn()?;
//! println!("pid {} is sandbox {}", child.pid(), child.sandbox());
//! let mut page = String::new();
//! child.child_mut().stdout.take().unwrap().read_to_string(&mut page)?;
//! let status = child.wait()?;
//! println!("{status}: {page}");
//! # Ok(()) }
//! ```
//!
//! # Reaping
//!
//! A [`SandboxedChild`] that is dropped before its child was reaped kills the child
//! (`SIGKILL`) and reaps it: the sandbox lives as long as its handle, and no zombie stays
//! behind. [`SandboxedChild::into_child`] gives the `std::process::Child` back for a caller
//! that wants std's semantics instead (no kill, no reaping on drop).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use netjail_policy::Policy;
use netjail_protocol::{PolicySource, SandboxId};

use crate::remote::{BrokerConnection, RemoteError};
use crate::{filter, landlock, policy, sys};

/// How long [`SandboxBuilder::spawn`] waits for a broker socket to answer, unless
/// [`SandboxBuilder::broker_timeout`] says otherwise.
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the sandbox's seccomp listener goes.
#[derive(Debug, Clone)]
pub enum BrokerRef {
    /// The registration socket of a running broker: `netjaild`'s (by default
    /// `/run/netjail/broker.sock`), or one a host program serves for its own embedded broker
    /// with [`netjail_broker::serve`]. Nothing listening there is an error.
    Socket(PathBuf),
    /// A broker embedded in this process, registered with directly
    /// ([`netjail_broker::Broker::register`]).
    ///
    /// A broker made with [`netjail_broker::Broker::builder`] has a runtime of its own and
    /// may be used from any thread. One made with [`netjail_broker::Broker::new`] needs the
    /// caller's: [`SandboxBuilder::spawn`] then takes the runtime of the calling thread
    /// (`tokio::runtime::Handle::try_current`) and enters it on the thread that registers;
    /// called outside any runtime, it fails with [`netjail_broker::RegisterError::NoRuntime`]
    /// before anything is spawned.
    InProcess(Arc<netjail_broker::Broker>),
}

impl From<Arc<netjail_broker::Broker>> for BrokerRef {
    fn from(broker: Arc<netjail_broker::Broker>) -> BrokerRef {
        BrokerRef::InProcess(broker)
    }
}

/// Errors of [`SandboxBuilder::spawn`]. After any of them no child of the spawn is left
/// running or unreaped, and none of its file descriptors stays open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The builder was given no policy.
    #[error("no policy: call SandboxBuilder::policy or SandboxBuilder::policy_spec")]
    NoPolicy,
    /// The builder was given no broker.
    #[error("no broker: call SandboxBuilder::broker (a socket path, or an in-process broker)")]
    NoBrokerGiven,
    /// The builder was given no command.
    #[error("no command: call SandboxBuilder::command")]
    NoCommand,
    /// The policy named by [`SandboxBuilder::policy_spec`] could not be loaded.
    #[error(transparent)]
    Policy(#[from] policy::LoadError),
    /// The filter could not be built.
    #[error("cannot build the seccomp filter: {0}")]
    Filter(#[from] filter::FilterError),
    /// The Landlock domain the policy asks for cannot be applied.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// Nothing listens at the broker's socket.
    #[error(
        "no broker listens at {path}: {source} (start netjaild there, or use BrokerRef::InProcess)"
    )]
    NoBroker {
        /// The socket path.
        path: PathBuf,
        /// What connect said.
        source: std::io::Error,
    },
    /// The broker behind the socket refused the sandbox or did not speak the protocol.
    #[error("broker at {path}: {source}")]
    Broker {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        source: RemoteError,
    },
    /// The broker behind the socket did not answer in time.
    #[error("the broker at {path} did not answer within {timeout:?}")]
    BrokerTimeout {
        /// The socket path.
        path: PathBuf,
        /// The time bound ([`SandboxBuilder::broker_timeout`]).
        timeout: Duration,
    },
    /// The in-process broker refused the listener.
    #[error("in-process broker: {0}")]
    Register(#[from] netjail_broker::RegisterError),
    /// The child would run as root and [`SandboxBuilder::allow_root`] was not given.
    #[error("{}", crate::root::REFUSAL)]
    Root,
    /// The mount namespace of a root sandbox could not be prepared.
    #[error(transparent)]
    RootPlan(#[from] crate::root::RootError),
    /// The child could not confine itself (or died before it had).
    #[error("cannot confine the child: {0}")]
    Confine(String),
    /// The child was confined and registered, but its program could not be executed
    /// (`ErrorKind::NotFound`: no such program). The sandbox is retired by the broker as the
    /// child exits.
    #[error("cannot execute {program}: {source}")]
    Exec {
        /// The program, as the command names it.
        program: String,
        /// What exec said.
        source: std::io::Error,
    },
    /// Anything else from the system (pipes, threads, pidfds, `fork`).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The entry point: [`Sandbox::builder`]. No value of this type exists; the confined child
/// is a [`SandboxedChild`].
#[derive(Debug)]
pub enum Sandbox {}

impl Sandbox {
    /// A builder with nothing set: give it a policy, a broker and a command, then
    /// [`SandboxBuilder::spawn`].
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }
}

/// The policy of a builder, with the text a broker socket is sent.
#[derive(Debug)]
enum PolicyChoice {
    Built(Box<Policy>),
    /// A built-in name or a file, and `--set` parameters.
    Spec(String, Vec<String>),
}

/// Settings of a confined child; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct SandboxBuilder {
    policy: Option<PolicyChoice>,
    broker: Option<BrokerRef>,
    name: Option<String>,
    command: Option<Command>,
    broker_timeout: Option<Duration>,
    allow_root: bool,
}

impl SandboxBuilder {
    /// The policy of the sandbox. A broker socket is sent its canonical text
    /// ([`Policy::to_toml`]) with the origin `library:NAME`.
    pub fn policy(mut self, policy: Policy) -> SandboxBuilder {
        self.policy = Some(PolicyChoice::Built(Box::new(policy)));
        self
    }

    /// The policy by built-in name (`loopback-only`, `deny-all`...) or TOML file path, as
    /// `netjail run --policy` takes it; loaded by [`SandboxBuilder::spawn`].
    pub fn policy_spec(mut self, spec: impl Into<String>) -> SandboxBuilder {
        self.policy = Some(PolicyChoice::Spec(spec.into(), Vec::new()));
        self
    }

    /// As [`SandboxBuilder::policy_spec`], with `KEY=VALUE` parameters laid over the policy
    /// in order, as `netjail run --set` takes them (see [`policy::load_with`]).
    pub fn policy_spec_with<S: Into<String>>(
        mut self,
        spec: impl Into<String>,
        sets: impl IntoIterator<Item = S>,
    ) -> SandboxBuilder {
        let sets = sets.into_iter().map(Into::into).collect();
        self.policy = Some(PolicyChoice::Spec(spec.into(), sets));
        self
    }

    /// The broker that decides the sandbox's calls.
    pub fn broker(mut self, broker: impl Into<BrokerRef>) -> SandboxBuilder {
        self.broker = Some(broker.into());
        self
    }

    /// The sandbox's name, as operators and the audit log see it (default: the program's
    /// file name).
    pub fn name(mut self, name: impl Into<String>) -> SandboxBuilder {
        self.name = Some(name.into());
        self
    }

    /// The command to run, configured as for any child: arguments, environment, working
    /// directory, stdio (`Stdio::piped()` gives pipes on [`SandboxedChild::child_mut`]),
    /// uid/gid. Its `pre_exec` hooks, if any, run before the confine step.
    pub fn command(mut self, command: Command) -> SandboxBuilder {
        self.command = Some(command);
        self
    }

    /// Confine the child even though it runs as root (one of its uids is 0 once the command's
    /// own `uid`/`gid` settings are applied): see [`crate::root`] for what a root sandbox gets
    /// and what it keeps. Without it a child that would run as root is refused
    /// ([`SpawnError::Root`]).
    pub fn allow_root(mut self, allowed: bool) -> SandboxBuilder {
        self.allow_root = allowed;
        self
    }

    /// How long to wait for a broker socket to answer the handshake and the registration
    /// (default [`DEFAULT_BROKER_TIMEOUT`]). The child waits, unconfined by nothing but its own
    /// filter and not yet exec'd, for as long.
    pub fn broker_timeout(mut self, timeout: Duration) -> SandboxBuilder {
        self.broker_timeout = Some(timeout);
        self
    }

    /// Spawns the child confined, registered with the broker, and exec'd. Blocks until then
    /// (about as long as a registration round trip plus `Command::spawn`); from async code,
    /// call it on a blocking thread (`tokio::task::spawn_blocking`). Safe to call from any
    /// thread of a multi-threaded process, and from several threads at once.
    ///
    /// # Errors
    /// A missing setting, a policy that does not load or compile, no broker or one that
    /// refuses, a child that cannot confine itself, or a program that cannot be executed
    /// (see [`SpawnError`]). After an error nothing of the spawn is left: the child, if one
    /// was forked, is killed and reaped.
    pub fn spawn(self) -> Result<SandboxedChild, SpawnError> {
        let mut cmd = self.command.ok_or(SpawnError::NoCommand)?;
        let broker = self.broker.ok_or(SpawnError::NoBrokerGiven)?;
        let (source, policy) = resolve_policy(self.policy.ok_or(SpawnError::NoPolicy)?)?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let name = self.name.unwrap_or_else(|| default_name(cmd.get_program()));
        let broker_timeout = self.broker_timeout.unwrap_or(DEFAULT_BROKER_TIMEOUT);

        let (plan, pipes) = confine_step(&policy, self.allow_root)?;

        // The registering side runs on a helper thread: Command::spawn returns only after the
        // exec, which waits for the registration. The helper first gets the broker ready (a
        // socket broker answers the handshake), so that no broker costs no child.
        let runtime = match &broker {
            BrokerRef::InProcess(b) => Some(match b.own_runtime() {
                Some(own) => own,
                None => tokio::runtime::Handle::try_current()
                    .map_err(|_| netjail_broker::RegisterError::NoRuntime)?,
            }),
            BrokerRef::Socket(_) => None,
        };
        plan.install(&mut cmd);
        let registration = Registration {
            name,
            policy,
            source,
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel::<bool>(1);
        let helper = std::thread::Builder::new()
            .name("netjail-spawn".into())
            .spawn(move || {
                let _entered = runtime.as_ref().map(|r| r.enter());
                let registrar = match Registrar::connect(broker, broker_timeout) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(false);
                        return Err(Attach::Failed(e));
                    }
                };
                let _ = ready_tx.send(true);
                registrar.attach(pipes, registration)
            })?;
        let join = |helper: std::thread::JoinHandle<Result<SandboxId, Attach>>| {
            helper.join().unwrap_or_else(|_| {
                Err(Attach::Failed(SpawnError::Confine(
                    "the registering thread panicked".into(),
                )))
            })
        };
        if ready_rx.recv() != Ok(true) {
            // Nothing forked: closing the command's pipe ends lets a waiting helper finish.
            drop(cmd);
            return Err(match join(helper) {
                Err(e) => e.into(),
                Ok(_) => SpawnError::Confine("the registering thread gave up".into()),
            });
        }
        let spawned = cmd.spawn();
        // The child's ends of the pipes live in the pre_exec hook: close them now, so that
        // the helper sees end of file if no child ever reported.
        drop(cmd);
        match (spawned, join(helper)) {
            (Ok(child), Ok(sandbox)) => Ok(SandboxedChild {
                child: Some(child),
                sandbox,
            }),
            (Ok(mut child), Err(e)) => {
                // The child never got the acknowledgement (or was killed): it cannot have
                // exec'd. Make sure it is gone, and reap it.
                let _ = child.kill();
                let _ = child.wait();
                Err(e.into())
            }
            // std reaped the child. The helper's account of a failed step is the clearer
            // one; when it has none, the child failed before the confine step.
            (Err(e), Err(Attach::NoReport)) => Err(SpawnError::Io(e)),
            (Err(_), Err(e)) => Err(e.into()),
            (Err(source), Ok(_)) => Err(SpawnError::Exec { program, source }),
        }
    }
}

/// The policy of a spawn and the text the broker is sent.
fn resolve_policy(choice: PolicyChoice) -> Result<(PolicySource, Policy), SpawnError> {
    Ok(match choice {
        PolicyChoice::Built(p) => (
            PolicySource {
                origin: format!("library:{}", p.name()),
                toml: p.to_toml(),
            },
            *p,
        ),
        PolicyChoice::Spec(spec, sets) => policy::load_with(&spec, &sets)?,
    })
}

/// Everything the child's confine step needs, prepared before the fork: the filter, the
/// capabilities dropped, the Landlock ruleset, the plan of a root sandbox.
fn confine_step(
    policy: &Policy,
    allow_root: bool,
) -> Result<(sys::PreExecConfine, sys::PreExecPipes), SpawnError> {
    let prog = filter::compile(policy)?;
    let confinement = policy.confinement();
    let domain = landlock::prepare(confinement.landlock())?;
    if let Some(warning) = &domain.warning {
        tracing::warn!("{warning}");
    }
    let root_plan = if allow_root {
        Some(crate::root::plan()?)
    } else {
        None
    };
    // This process holds the listener until the broker has it (or is the broker): no
    // process of its user, a sandbox without Landlock included, may read or write its
    // memory (F15).
    sys::set_not_dumpable()?;
    let confine = sys::PreExecConfine::new(
        prog.instructions,
        sys::dropped_capability_mask(confinement.keep_capabilities()),
        domain.ruleset,
        root_plan,
    )?;
    Ok(confine)
}

/// The file name of `program`, or `sandbox`.
fn default_name(program: &OsStr) -> String {
    Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "sandbox".into())
}

/// What the helper registers.
struct Registration {
    name: String,
    policy: Policy,
    source: PolicySource,
}

/// The broker side, ready before the fork: a socket broker has answered the handshake.
enum Registrar {
    InProcess(Arc<netjail_broker::Broker>),
    Socket {
        path: PathBuf,
        timeout: Duration,
        runtime: tokio::runtime::Runtime,
        connection: BrokerConnection,
    },
}

/// Failures of the helper thread.
enum Attach {
    /// End of file before any report: no child ran the confine step.
    NoReport,
    /// Anything else.
    Failed(SpawnError),
}

impl From<SpawnError> for Attach {
    fn from(e: SpawnError) -> Attach {
        Attach::Failed(e)
    }
}

impl From<std::io::Error> for Attach {
    fn from(e: std::io::Error) -> Attach {
        Attach::Failed(SpawnError::Io(e))
    }
}

impl From<Attach> for SpawnError {
    fn from(a: Attach) -> SpawnError {
        match a {
            Attach::NoReport => {
                SpawnError::Confine("the child died before confining itself".into())
            }
            Attach::Failed(e) => e,
        }
    }
}

impl Registrar {
    /// Connects to a socket broker (handshake included) before anything is forked, so that
    /// an absent broker costs no child.
    fn connect(broker: BrokerRef, timeout: Duration) -> Result<Registrar, SpawnError> {
        match broker {
            BrokerRef::InProcess(b) => Ok(Registrar::InProcess(b)),
            BrokerRef::Socket(path) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let connection = runtime
                    .block_on(async {
                        tokio::time::timeout(timeout, BrokerConnection::connect(&path)).await
                    })
                    .map_err(|_| SpawnError::BrokerTimeout {
                        path: path.clone(),
                        timeout,
                    })?
                    .map_err(|e| remote_error(&path, e))?;
                Ok(Registrar::Socket {
                    path,
                    timeout,
                    runtime,
                    connection,
                })
            }
        }
    }

    /// The helper thread's work: read the reports, take the listener, register, acknowledge.
    /// On any failure after the child reported, the child is killed (it has not exec'd).
    fn attach(self, pipes: sys::PreExecPipes, reg: Registration) -> Result<SandboxId, Attach> {
        let (pid, listener_no) = read_reports(pipes.report.as_fd())?;
        // The child now waits for the acknowledgement and cannot exit by itself; even
        // killed, it stays unreaped until the spawning thread waits for it, so its pid is
        // still its own.
        let pidfd = sys::pidfd_open(pid)?;
        let result = self.register(&pidfd, pid, listener_no, reg);
        let result = result.and_then(|id| {
            sys::send_ack(pipes.ack.as_fd())?;
            Ok(id)
        });
        if result.is_err() {
            let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
        }
        result
    }

    fn register(
        self,
        pidfd: &OwnedFd,
        pid: i32,
        listener_no: i32,
        reg: Registration,
    ) -> Result<SandboxId, Attach> {
        let listener = sys::pidfd_getfd(pidfd.as_fd(), listener_no)?;
        match self {
            // The broker takes this copy: once the child closes its own, the broker's is the
            // only one.
            Registrar::InProcess(broker) => Ok(broker
                .register(&reg.name, pid, reg.policy, listener)
                .map_err(SpawnError::Register)?),
            Registrar::Socket {
                path,
                timeout,
                runtime,
                connection,
            } => {
                let registered = runtime.block_on(async {
                    tokio::time::timeout(
                        timeout,
                        connection.register(&reg.name, pid, reg.source, listener.as_fd()),
                    )
                    .await
                });
                // The broker has its own copy (SCM_RIGHTS); ours goes now.
                drop(listener);
                let id = registered
                    .map_err(|_| SpawnError::BrokerTimeout {
                        path: path.clone(),
                        timeout,
                    })?
                    .map_err(|e| remote_error(&path, e))?;
                tracing::debug!(sandbox = %id, broker = %path.display(), pid, "registered");
                Ok(id)
            }
        }
    }
}

/// Reads the child's pid and listener number, or the failure of its confine step.
fn read_reports(report: std::os::fd::BorrowedFd<'_>) -> Result<(i32, i32), Attach> {
    let pid = match sys::read_report(report)? {
        Some((sys::TAG_PID, pid)) => pid,
        Some((sys::tag::ROOT, _)) => return Err(SpawnError::Root.into()),
        Some((t, v)) => return Err(SpawnError::Confine(describe_report(t, v)).into()),
        None => return Err(Attach::NoReport),
    };
    match sys::read_report(report)? {
        Some((sys::tag::LISTENER, fd)) => Ok((pid, fd)),
        Some((t, v)) => Err(SpawnError::Confine(describe_report(t, v)).into()),
        None => {
            Err(SpawnError::Confine("the child died before reporting its listener".into()).into())
        }
    }
}

/// What a failure report of the confine step means.
fn describe_report(tag: i32, value: i32) -> String {
    let e = std::io::Error::from_raw_os_error(value);
    match tag {
        sys::tag::CAPABILITIES => format!("dropping capabilities: {e}"),
        sys::tag::NO_NEW_PRIVS => format!("prctl(PR_SET_NO_NEW_PRIVS): {e}"),
        sys::tag::LANDLOCK => format!("landlock_restrict_self: {e}"),
        sys::tag::MOUNTS => format!("setting up the mount namespace of a root sandbox: {e}"),
        sys::tag::SECCOMP => {
            format!("seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV): {e} (needs Linux 5.19 or later)")
        }
        _ => format!("unexpected report {tag}/{value}"),
    }
}

fn remote_error(path: &Path, e: RemoteError) -> SpawnError {
    match e {
        RemoteError::NoBroker { source, .. } => SpawnError::NoBroker {
            path: path.to_path_buf(),
            source,
        },
        source => SpawnError::Broker {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// A running confined child: a `std::process::Child` and the broker's id of its sandbox.
///
/// Dropped before the child was reaped, it kills the child (`SIGKILL`) and reaps it; see
/// [Reaping](self#reaping). [`SandboxedChild::into_child`] opts out.
#[derive(Debug)]
pub struct SandboxedChild {
    /// `None` only after [`SandboxedChild::into_child`] or [`SandboxedChild::wait_with_output`].
    child: Option<Child>,
    sandbox: SandboxId,
}

impl SandboxedChild {
    fn inner(&self) -> &Child {
        self.child
            .as_ref()
            .expect("the child is only taken by value")
    }

    fn inner_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is only taken by value")
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.inner().id()
    }

    /// The broker's id of the sandbox (`sb-N`, as `netjail status` shows it).
    pub fn sandbox(&self) -> SandboxId {
        self.sandbox
    }

    /// The std child: its `stdin`, `stdout` and `stderr` pipes, when the command asked for
    /// them.
    pub fn child(&self) -> &Child {
        self.inner()
    }

    /// The std child, to take its pipes (`child_mut().stdout.take()`). Waiting or killing
    /// through it is fine too.
    pub fn child_mut(&mut self) -> &mut Child {
        self.inner_mut()
    }

    /// Waits for the child to exit and reaps it (closing its stdin first, as std does).
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.inner_mut().wait()
    }

    /// The exit status if the child has exited (and reaps it), `None` if it still runs.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.inner_mut().try_wait()
    }

    /// Sends `SIGKILL`. The child stays unreaped until [`SandboxedChild::wait`] (or drop).
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.inner_mut().kill()
    }

    /// Waits for the child, collecting its piped stdout and stderr (as
    /// `Child::wait_with_output`).
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        let child = self.child.take().expect("the child is only taken by value");
        child.wait_with_output()
    }

    /// The std child, with std's semantics from now on: dropping it neither kills nor reaps.
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("the child is only taken by value")
    }
}

impl Drop for SandboxedChild {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_file_name() {
        assert_eq!(default_name(OsStr::new("/usr/bin/curl")), "curl");
        assert_eq!(default_name(OsStr::new("python3")), "python3");
        assert_eq!(default_name(OsStr::new("")), "sandbox");
        assert_eq!(default_name(OsStr::new("/")), "sandbox");
    }

    #[test]
    fn missing_settings_are_errors_before_anything_runs() {
        let err = Sandbox::builder().spawn().unwrap_err();
        assert!(matches!(err, SpawnError::NoCommand), "{err}");
        let err = Sandbox::builder()
            .command(Command::new("true"))
            .spawn()
            .unwrap_err();
        assert!(matches!(err, SpawnError::NoBrokerGiven), "{err}");
        let err = Sandbox::builder()
            .command(Command::new("true"))
            .broker(BrokerRef::Socket("/nonexistent/broker.sock".into()))
            .spawn()
            .unwrap_err();
        assert!(matches!(err, SpawnError::NoPolicy), "{err}");
    }

    #[test]
    fn failure_reports_name_the_step() {
        let m = describe_report(sys::tag::SECCOMP, libc::EINVAL);
        assert!(m.starts_with("seccomp(") && m.contains("5.19"), "{m}");
        let m = describe_report(sys::tag::LANDLOCK, libc::EPERM);
        assert!(m.starts_with("landlock_restrict_self: "), "{m}");
        assert!(describe_report(99, 1).contains("unexpected"));
    }

    #[test]
    fn in_process_broker_outside_a_runtime_is_refused_before_the_fork() {
        let broker = netjail_broker::Broker::new();
        let err = Sandbox::builder()
            .policy_spec("deny-all")
            .broker(broker)
            .command(Command::new("true"))
            .spawn()
            .unwrap_err();
        assert!(
            matches!(
                err,
                SpawnError::Register(netjail_broker::RegisterError::NoRuntime)
            ),
            "{err}"
        );
    }
}
