//! `netjail run`: confine a command and hand its listener to a broker, or to one embedded in
//! this process when none runs (`docs/architecture.md`, "The path of one call").

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netjail_broker::Broker;
use tokio::signal::unix::{signal, SignalKind};

use netjail_protocol::{Register, SandboxId};

use crate::remote::{BrokerConnection, RemoteError};
use crate::sys;
pub use crate::sys::{exit_like, ExitStatus};
use crate::{filter, landlock, policy, root};

/// The socket `netjail run` registers with when no broker is named ([`RunOptions::broker`]).
pub const DEFAULT_BROKER: &str = "/run/netjail/broker.sock";

/// Whether a broker may be started inside the launcher.
///
/// A broker named in [`RunOptions::broker`] is never replaced by an embedded one: that broker
/// serves the command, or the command does not run ([`LaunchError::NamedBroker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedded {
    /// When no broker is named and nothing answers at [`DEFAULT_BROKER`] (the default: zero
    /// set-up).
    WhenNoBroker,
    /// Never: no broker is an error (`--no-embedded`).
    Never,
    /// Always, whatever listens at [`DEFAULT_BROKER`] (`--embedded`); no broker may be named.
    Always,
}

/// What `netjail run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Built-in policy name or policy file.
    pub policy: String,
    /// `KEY=VALUE` parameters laid over the policy (`--set`), in order.
    pub sets: Vec<String>,
    /// The broker's socket as the user named it (`--broker`, `NETJAIL_BROKER`): that broker,
    /// or an error. `None`: the one at [`DEFAULT_BROKER`], or as [`RunOptions::embedded`]
    /// says.
    pub broker: Option<PathBuf>,
    /// Embedded broker mode.
    pub embedded: Embedded,
    /// Sandbox name (defaults to the program's file name).
    pub name: Option<String>,
    /// How long to keep trying to register the sandbox again when its broker goes away (a
    /// restart): meanwhile the command's network calls wait, undecided; past it the launcher
    /// closes its copy of the listener and they fail with `ENOSYS`. Zero: at once.
    pub reconnect_for: Duration,
    /// Confine the command even though it runs as root (`--allow-root`): see [`crate::root`].
    /// Without it a command that would run with uid 0 is refused ([`LaunchError::Root`]).
    pub allow_root: bool,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// How long `netjail run` tries to register a sandbox again by default
/// ([`RunOptions::reconnect_for`]).
pub const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Errors of the launcher, each with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The policy could not be loaded.
    #[error(transparent)]
    Policy(#[from] policy::LoadError),
    /// The filter could not be built.
    #[error("cannot build the seccomp filter: {0}")]
    Filter(#[from] filter::FilterError),
    /// The Landlock domain the policy asks for cannot be applied.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// The command was not found.
    #[error("command not found: {0}")]
    NotFound(String),
    /// The child could not confine itself.
    #[error("cannot confine the child: {0}")]
    Confine(String),
    /// No broker and embedding refused.
    #[error("{0} (and --no-embedded forbids starting one here)")]
    NoBroker(RemoteError),
    /// No broker answers at the socket the user named: a named broker is never replaced by
    /// an embedded one.
    #[error(
        "no broker at {path} ({reason}), which --broker or NETJAIL_BROKER names: nothing was \
         run (without them, netjail run uses the broker at {default}, or one of its own when \
         none runs there)",
        default = DEFAULT_BROKER
    )]
    NamedBroker {
        /// The socket path named.
        path: String,
        /// What is wrong there, in words (as `netjail run` prints it).
        reason: String,
    },
    /// `--embedded` with a broker named.
    #[error("a broker embedded in netjail run was asked for, and a broker named ({0}): use one")]
    EmbeddedAndNamed(String),
    /// The broker refused the sandbox.
    #[error(transparent)]
    Broker(RemoteError),
    /// The embedded broker refused the listener.
    #[error("embedded broker: {0}")]
    Embedded(#[from] netjail_broker::RegisterError),
    /// The command could not be executed.
    #[error("cannot execute {0}: {1}")]
    Exec(String, std::io::Error),
    /// The command would run as root and `--allow-root` was not given.
    #[error("{}", crate::root::REFUSAL)]
    Root,
    /// The mount namespace of a root sandbox could not be prepared.
    #[error(transparent)]
    RootPlan(#[from] crate::root::RootError),
    /// Anything else from the system.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl LaunchError {
    /// Exit status for the launcher itself, as shells use them.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::NotFound(_) => 127,
            LaunchError::Exec(_, e) if e.raw_os_error() == Some(libc::ENOENT) => 127,
            LaunchError::Exec(..) => 126,
            _ => 125,
        }
    }
}

/// Finds `program` the way a shell would: as a path when it has a slash, else in `PATH`.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs the command confined and returns how it ended. Must be called before any other
/// thread exists in the process (it forks).
pub fn run(options: RunOptions) -> Result<ExitStatus, LaunchError> {
    if !options.allow_root && root::runs_as_root() {
        return Err(LaunchError::Root);
    }
    let (source, policy) = policy::load_with(&options.policy, &options.sets)?;
    let program = options
        .command
        .first()
        .ok_or_else(|| LaunchError::NotFound(String::new()))?;
    let path = find_program(program)
        .ok_or_else(|| LaunchError::NotFound(program.to_string_lossy().into_owned()))?;
    let name = options.name.clone().unwrap_or_else(|| {
        Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sandbox".into())
    });
    let program_text = path.display().to_string();
    let plan = exec_plan(&options, &path, &policy)?;

    // The embedded broker, if there is one, needs this made while the process is dumpable.
    if options.broker.is_none() && options.embedded != Embedded::Never {
        netjail_broker::prepare_unprivileged_binds();
    }
    let child = sys::spawn(&plan)?;
    // The launcher holds the listener (and is the embedded broker): no process of its user,
    // the sandbox without Landlock included, may read or write its memory (F15). After the
    // fork, so that the child (which execs only once acknowledged) stays dumpable and the
    // launcher can take its listener with pidfd_getfd.
    sys::set_not_dumpable()?;
    let pidfd = sys::pidfd_open(child.pid)?;
    let listener = match take_listener(&child, &pidfd) {
        Ok(l) => l,
        Err(e) => {
            let _ = sys::wait_pidfd(pidfd.as_fd(), false);
            return Err(e);
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        // Handlers first: once acknowledged, the command may signal us at once.
        let signals = forward_signals()?;
        let register = Register {
            name: name.clone(),
            pid: child.pid,
            policy: source,
        };
        let broker = attach(&options, register.clone(), policy, &listener).await;
        let connection = match broker {
            Ok(c) => c,
            Err(e) => {
                let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
                return Err(e);
            }
        };
        sys::send_ack(child.ack.as_fd())?;
        match sys::read_report(child.report.as_fd())? {
            None => {}
            Some((sys::tag::EXEC, errno)) => {
                return Err(LaunchError::Exec(
                    program_text,
                    std::io::Error::from_raw_os_error(errno),
                ))
            }
            Some((t, v)) => return Err(LaunchError::Confine(format!("unexpected report {t}/{v}"))),
        }
        let again = Again {
            path: broker_path(&options),
            register,
            reconnect_for: options.reconnect_for,
        };
        supervise(&pidfd, connection, signals, listener, again).await
    });
    if result.is_err() {
        let _ = sys::wait_pidfd(pidfd.as_fd(), false);
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// What the child needs for its confine step and exec, prepared before the fork: the
/// filter, the Landlock ruleset, the capabilities kept, the plan of a root sandbox.
fn exec_plan(
    options: &RunOptions,
    path: &Path,
    policy: &netjail_policy::Policy,
) -> Result<sys::ExecPlan, LaunchError> {
    let prog = filter::compile(policy)?;
    let confinement = policy.confinement();
    let domain = landlock::prepare(confinement.landlock())?;
    if let Some(warning) = &domain.warning {
        tracing::warn!("{warning}");
    }
    let argv: Vec<&OsStr> = options.command.iter().map(|a| a.as_os_str()).collect();
    let mut plan = sys::ExecPlan::new(path.as_os_str(), &argv, prog.instructions)?
        .keep_capabilities(confinement.keep_capabilities());
    if let Some(ruleset) = domain.ruleset {
        plan = plan.landlock(ruleset);
    }
    if options.allow_root {
        plan = plan.allow_root(root::plan()?);
    }
    Ok(plan)
}

fn take_listener(child: &sys::Spawned, pidfd: &OwnedFd) -> Result<OwnedFd, LaunchError> {
    match sys::read_report(child.report.as_fd())? {
        Some((sys::tag::LISTENER, fd)) => Ok(sys::pidfd_getfd(pidfd.as_fd(), fd)?),
        Some((sys::tag::CAPABILITIES, e)) => Err(LaunchError::Confine(format!(
            "dropping capabilities: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
        Some((sys::tag::ROOT, _)) => Err(LaunchError::Root),
        Some((sys::tag::MOUNTS, e)) => Err(LaunchError::Confine(format!(
            "setting up the mount namespace of a root sandbox: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
        Some((sys::tag::LANDLOCK, e)) => Err(LaunchError::Confine(format!(
            "landlock_restrict_self: {}",
            std::io::Error::from_raw_os_error(e)
        ))),
        Some((sys::tag::NO_NEW_PRIVS, e)) => Err(LaunchError::Confine(format!(
            "prctl(PR_SET_NO_NEW_PRIVS): {}",
            std::io::Error::from_raw_os_error(e)
        ))),
        Some((sys::tag::SECCOMP, e)) => Err(LaunchError::Confine(format!(
            "seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV): {} (needs Linux 5.19 or later)",
            std::io::Error::from_raw_os_error(e)
        ))),
        Some((t, v)) => Err(LaunchError::Confine(format!("unexpected report {t}/{v}"))),
        None => Err(LaunchError::Confine(
            "the child died before confining itself".into(),
        )),
    }
}

/// Where the sandbox was registered.
enum Attached {
    /// With the broker at the socket, under this id.
    Remote(BrokerConnection, SandboxId),
    /// Holds the embedded broker, which registered the sandbox under this id, for as long as
    /// the child runs.
    Embedded {
        broker: std::sync::Arc<Broker>,
        id: SandboxId,
    },
    /// Nowhere any more: the broker went away and none came back in time. The listener is
    /// closed, so the command's network calls fail.
    Detached,
}

/// What registering the sandbox again takes.
struct Again {
    path: PathBuf,
    register: Register,
    reconnect_for: Duration,
}

/// The socket the sandbox registers with: the one named, or [`DEFAULT_BROKER`].
fn broker_path(options: &RunOptions) -> PathBuf {
    options
        .broker
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BROKER))
}

async fn attach(
    options: &RunOptions,
    register: Register,
    policy: netjail_policy::Policy,
    listener: &OwnedFd,
) -> Result<Attached, LaunchError> {
    if options.embedded == Embedded::Always {
        if let Some(named) = &options.broker {
            return Err(LaunchError::EmbeddedAndNamed(named.display().to_string()));
        }
        return embed(register, policy, listener);
    }
    let path = broker_path(options);
    match BrokerConnection::connect(&path).await {
        Ok(conn) => {
            // The launcher keeps its copy of the listener and registers again after a restart.
            let keeping = conn
                .register_keeping(register.clone(), listener.as_fd())
                .await;
            let (conn, id) = match keeping {
                Ok(id) => (conn, id),
                Err(e) if e.is_unknown_message() => {
                    // A broker older than `RegisterKeeping`: a plain registration, which its
                    // restart does not survive.
                    tracing::warn!(broker = %path.display(), error = %e, "the broker refused RegisterKeeping (an older netjaild?): registering without a journal, which its restart does not survive");
                    let conn = BrokerConnection::connect(&path)
                        .await
                        .map_err(LaunchError::Broker)?;
                    let id = conn
                        .register(
                            &register.name,
                            register.pid,
                            register.policy,
                            listener.as_fd(),
                        )
                        .await
                        .map_err(LaunchError::Broker)?;
                    (conn, id)
                }
                Err(e) => return Err(LaunchError::Broker(e)),
            };
            tracing::debug!(sandbox = %id, broker = %path.display(), "registered");
            Ok(Attached::Remote(conn, id))
        }
        Err(RemoteError::NoBroker { path, source }) if options.broker.is_some() => {
            let reason = crate::remote::connect_failure(Path::new(&path), &source);
            Err(LaunchError::NamedBroker { path, reason })
        }
        Err(e @ RemoteError::NoBroker { .. }) => {
            if options.embedded == Embedded::Never {
                return Err(LaunchError::NoBroker(e));
            }
            if let RemoteError::NoBroker { source, .. } = &e {
                // Nothing there is the zero set-up case; anything else deserves a word.
                if !matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) {
                    tracing::warn!("{e}; using a broker embedded in this process instead");
                }
            }
            embed(register, policy, listener)
        }
        Err(e) => Err(LaunchError::Broker(e)),
    }
}

/// Registers the sandbox with a broker started in this process.
fn embed(
    register: Register,
    policy: netjail_policy::Policy,
    listener: &OwnedFd,
) -> Result<Attached, LaunchError> {
    let broker = Broker::new();
    let id = broker.register(&register.name, register.pid, policy, listener.try_clone()?)?;
    tracing::debug!(sandbox = %id, "registered with the embedded broker");
    Ok(Attached::Embedded { broker, id })
}

/// How long the launcher waits, once the command has exited, for the embedded broker to
/// retire its sandbox.
const RETIRE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits, at most [`RETIRE_WAIT`], until the embedded broker has retired sandbox `id` (every
/// task of it has exited and its receiver has ended). A receiver answers a call before it
/// writes the call's audit event: without the wait, a command that exits on the answer to its
/// last call could take the launcher, and that event, with it. A command that leaves
/// processes behind keeps its sandbox alive, and the launcher goes after the wait.
async fn retired(broker: &Broker, id: SandboxId) {
    let deadline = Instant::now() + RETIRE_WAIT;
    while broker.sandbox(id).is_some() && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Signals the launcher passes on to the command.
const FORWARDED: [SignalKind; 7] = [
    SignalKind::terminate(),
    SignalKind::interrupt(),
    SignalKind::hangup(),
    SignalKind::quit(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
    SignalKind::window_change(),
];

/// Installs handlers for [`FORWARDED`]: each signal received becomes a number on the channel.
fn forward_signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<i32>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for kind in FORWARDED {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(kind.as_raw_value()).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

/// Waits for the child, forwarding signals to it. When the broker at the socket goes away,
/// keeps the listener and registers the sandbox again with the next broker there
/// ([`crate::remote::register_again_until`], for at most `again.reconnect_for`): the
/// command's calls wait meanwhile, and the new broker decides them, those the old one had in
/// hand included. Past the time, closes the listener, so that they fail (`ENOSYS`) instead of
/// waiting forever.
async fn supervise(
    pidfd: &OwnedFd,
    mut attached: Attached,
    mut signals: tokio::sync::mpsc::UnboundedReceiver<i32>,
    listener: OwnedFd,
    again: Again,
) -> Result<ExitStatus, LaunchError> {
    let exited = sys::async_fd(pidfd.try_clone()?)?;
    let mut listener = Some(listener);
    loop {
        // What the launcher waits for besides the child and signals: the broker going away,
        // or, once it has, a broker registering the sandbox again.
        let next = {
            let event = async {
                match (&attached, listener.as_ref()) {
                    (Attached::Remote(conn, id), Some(copy)) => {
                        conn.closed().await;
                        tracing::warn!(
                            sandbox = %id,
                            "the broker went away: network calls of the sandbox wait, undecided, until a broker at {} registers it again (trying for {:?})",
                            again.path.display(),
                            again.reconnect_for
                        );
                        if again.reconnect_for.is_zero() {
                            return Err(*id);
                        }
                        let deadline = Instant::now() + again.reconnect_for;
                        crate::remote::register_again_until(
                            &again.path,
                            &again.register,
                            *id,
                            copy.as_fd(),
                            deadline,
                        )
                        .await
                        .map(|(conn, id)| Attached::Remote(conn, id))
                        .ok_or(*id)
                    }
                    _ => std::future::pending().await,
                }
            };
            tokio::pin!(event);
            loop {
                tokio::select! {
                    guard = exited.readable() => {
                        let mut guard = guard?;
                        if let Some(status) = sys::wait_pidfd(pidfd.as_fd(), true)? {
                            if let Attached::Embedded { broker, id } = &attached {
                                retired(broker, *id).await;
                            }
                            return Ok(status);
                        }
                        guard.clear_ready();
                    }
                    Some(sig) = signals.recv() => {
                        let _ = sys::pidfd_signal(pidfd.as_fd(), sig);
                    }
                    next = &mut event => break next,
                }
            }
        };
        attached = match next {
            Ok(attached) => attached,
            Err(id) => {
                listener = None;
                tracing::warn!(sandbox = %id, "no broker registered the sandbox again within {:?}: its listener is closed, and its network calls fail (ENOSYS)", again.reconnect_for);
                Attached::Detached
            }
        };
    }
}
