//! `netjaild`: the netjail broker daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use netjail_broker::activation::{self, Inherited};
use netjail_broker::control::{self, ControlConfig};
use netjail_broker::logging::{self, LogFormat};
use netjail_broker::metrics_http;
use netjail_broker::names::{Resolver, ResolverConfig};
use netjail_broker::oci::{self, OciConfig};
use netjail_broker::operators::Operators;
use netjail_broker::overlay::Overlay;
use netjail_broker::{Broker, RegistrationConfig};

/// The netjail broker: decides the network calls of confined processes.
#[derive(Debug, Parser)]
#[command(name = "netjaild", version)]
struct Args {
    /// Registration socket (SOCK_SEQPACKET, mode 0660, group: the registration group).
    #[arg(long, default_value = "/run/netjail/broker.sock")]
    socket: PathBuf,
    /// The registration group: its members may register sandboxes (a name or a gid). Root
    /// and the broker's own user always may; with no such group, nobody else.
    #[arg(long, default_value = "netjail")]
    register_group: String,
    /// Control socket for operators (SOCK_SEQPACKET, mode 0666; the broker serves only root
    /// and members of the operator group, never a confined process, and refuses everyone
    /// else with a message).
    #[arg(long, default_value = "/run/netjail/control.sock")]
    control: PathBuf,
    /// The operator group: its members may use the control socket (a name or a gid). It must
    /// not be the registration group: those who run sandboxes do not answer their calls.
    /// Root and the broker's own user always may; with no such group, nobody else.
    #[arg(long, default_value = "netjail-operators")]
    operator_group: String,
    /// Sandboxes one user other than root may have registered at once (over the
    /// registration socket, the OCI socket, or by confining itself).
    #[arg(long, value_name = "N", default_value_t = netjail_broker::DEFAULT_MAX_SANDBOXES_PER_USER)]
    max_sandboxes_per_user: usize,
    /// Directory of the overlay: rules operators make with `--always`, one policy file per
    /// scope, read at start (a file with a mistake stops the broker, with file:line:column)
    /// and again by `netjail reload` or SIGHUP (a file with a mistake keeps its old rules).
    #[arg(long, default_value = "/var/lib/netjail/overlay")]
    overlay: PathBuf,
    /// Hosts file for host names in policies (read before DNS; re-read when it changes).
    #[arg(long, default_value = "/etc/hosts")]
    hosts: PathBuf,
    /// resolv.conf naming the DNS servers for host names in policies.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// A DNS server (ADDRESS:PORT) to ask instead of resolv.conf's; may be repeated.
    #[arg(long = "nameserver", value_name = "ADDRESS:PORT")]
    nameservers: Vec<std::net::SocketAddr>,
    /// Also be the OCI seccomp agent on this socket (SOCK_STREAM, mode 0660): runc and crun
    /// send it a container's listener when the bundle's `linux.seccomp.listenerPath` names it.
    #[arg(long)]
    oci_socket: Option<PathBuf>,
    /// Directory of policy files `NAME.toml`, for containers that name a policy that is not a
    /// built-in (read again for running containers by `netjail reload` or SIGHUP).
    #[arg(long, default_value = "/etc/netjail/policies")]
    policies: PathBuf,
    /// Policy of a container whose bundle names none (by default such a container is refused
    /// and its network calls fail).
    #[arg(long, requires = "oci_socket")]
    oci_default_policy: Option<String>,
    /// Also serve the metrics (`GET /metrics`, Prometheus text) over HTTP on this loopback
    /// address (`127.0.0.1:9464`; port 0 picks one, logged). Anyone on the machine may read
    /// them there: counts only, no names or destinations. Other addresses are refused.
    #[arg(long, value_name = "ADDRESS:PORT")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Directory of the sandboxes' journals (mode 0700; default: `state` beside the
    /// registration socket, `/run/netjail/state`). A broker started after this one stopped or
    /// crashed, with the same directory, decides the calls this one had received and not
    /// answered, once each sandbox's client (`netjail run`) registers it again.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Keep the listeners of containers (`--oci-socket`) and of processes that confine
    /// themselves in the service manager's file descriptor store (`FDSTORE=1`), so that their
    /// sandboxes outlive a restart of netjaild as those of `netjail run` do. `auto`: when a
    /// service manager asked to be told (`NOTIFY_SOCKET`) and the journals are kept; `on`:
    /// the same, and netjaild does not start without them; `off`: never (their calls then fail
    /// with ENOSYS when netjaild stops). The unit needs `FileDescriptorStoreMax=`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    fd_store: FdStoreMode,
    /// Log and audit format: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
}

/// When listeners go to the service manager's file descriptor store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FdStoreMode {
    Auto,
    On,
    Off,
}

/// How long netjaild waits on SIGTERM for the calls in progress to be answered.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    // Sockets a service manager handed over are taken first, before anything else (the
    // runtime, the log) opens an fd that could take a number the manager announced.
    let inherited = Inherited::from_env();
    let args = Args::parse();
    logging::init(args.log_format, "info");
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(run(args, inherited.context("socket activation")?));
    // Calls held for an operator may still wait on the blocking pool: they are on record in
    // the journals for the next broker, and are not waited for.
    runtime.shutdown_background();
    result
}

async fn run(args: Args, mut inherited: Inherited) -> anyhow::Result<()> {
    // What operators decided before comes first: a broker that cannot read it does not start.
    let overlay = Overlay::open(&args.overlay)
        .with_context(|| format!("cannot read the overlay in {}", args.overlay.display()))?;
    tracing::info!(overlay = %args.overlay.display(), rules = overlay.rule_count(), "overlay read");
    // Sockets a service manager made for us (socket activation) are used as they are: never
    // re-bound, never removed.
    let mut owned_paths: Vec<PathBuf> = Vec::new();
    // The OCI socket first: once the registration socket answers, both do.
    let oci_listener = match &args.oci_socket {
        Some(path) => {
            let l = match inherited.stream(path)? {
                Some(l) => l,
                None => {
                    owned_paths.push(path.clone());
                    oci::bind_oci_socket(path)
                        .with_context(|| format!("cannot listen on {}", path.display()))?
                }
            };
            tracing::info!(socket = %path.display(), policies = %args.policies.display(), "OCI seccomp agent listening");
            Some(l)
        }
        None => None,
    };
    let control_listener = match inherited.seqpacket(&args.control)? {
        Some(l) => l,
        None => {
            owned_paths.push(args.control.clone());
            control::bind_control_socket(&args.control)
                .with_context(|| format!("cannot listen on {}", args.control.display()))?
        }
    };
    let control_config = std::sync::Arc::new(ControlConfig::with_group(&args.operator_group));
    let register_config = std::sync::Arc::new(RegistrationConfig::with_group(&args.register_group));
    if let (Some(a), Some(b)) = (control_config.group, register_config.group) {
        if a == b {
            anyhow::bail!(
                "--operator-group {} and --register-group {} are the same group (gid {a}): \
                 operators must be a group of their own, apart from the users who register \
                 sandboxes",
                args.operator_group,
                args.register_group
            );
        }
    }
    tracing::info!(socket = %args.control.display(), group = %args.operator_group, "control socket listening");
    let metrics_listener = match args.metrics_listen {
        Some(addr) => {
            let l = metrics_http::bind_metrics_http(addr)
                .await
                .with_context(|| format!("cannot serve the metrics on {addr}"))?;
            let address = l.local_addr()?;
            tracing::info!(%address, "metrics served over HTTP");
            Some(l)
        }
        None => None,
    };
    let listener = match inherited.seqpacket(&args.socket)? {
        Some(l) => {
            tracing::info!(socket = %args.socket.display(), "registration socket from the service manager");
            l
        }
        None => {
            owned_paths.push(args.socket.clone());
            netjail_broker::bind_registration_socket(&args.socket, &register_config)
                .with_context(|| format!("cannot listen on {}", args.socket.display()))?
        }
    };
    let stored = inherited.take_stored();
    inherited.all_claimed()?;
    let names = Resolver::new(ResolverConfig {
        hosts: args.hosts.clone(),
        resolv_conf: args.resolv_conf.clone(),
        nameservers: args.nameservers.clone(),
        ..ResolverConfig::default()
    })
    .context("cannot read the resolver's files")?;
    let broker = Broker::with_parts(Operators::new(Some(overlay)), names);
    broker.max_sandboxes_per_user(args.max_sandboxes_per_user);
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        args.socket
            .parent()
            .unwrap_or(std::path::Path::new("/"))
            .join("state")
    });
    match broker.keep_journals(&state_dir) {
        Ok((kept, removed)) => {
            tracing::info!(dir = %state_dir.display(), kept, removed, "journals of the sandboxes kept here")
        }
        Err(e) => {
            tracing::warn!(dir = %state_dir.display(), error = %e, "cannot keep journals: a restart of the broker will lose the calls it has in hand")
        }
    }
    if args.fd_store != FdStoreMode::Off && activation::notify_socket_set() {
        match broker.store_listeners() {
            Ok(()) => {
                tracing::info!(dir = %state_dir.display(), "listeners of containers and self-confined processes kept in the service manager's fd store")
            }
            Err(e) if args.fd_store == FdStoreMode::On => {
                return Err(anyhow::anyhow!("--fd-store on: {e}"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "listeners are not kept in the service manager's fd store")
            }
        }
    } else if args.fd_store == FdStoreMode::On {
        anyhow::bail!(
            "--fd-store on needs a service manager that accepts fds (NOTIFY_SOCKET is not set)"
        );
    }
    if !stored.is_empty() {
        let taken = broker.take_back_stored(stored);
        tracing::info!(
            served = taken.served,
            denying = taken.denying,
            refused = taken.refused,
            forgotten = taken.forgotten,
            "listeners handed back from the service manager's fd store"
        );
    }
    tracing::info!(socket = %args.socket.display(), "netjaild listening");
    let oci_config = std::sync::Arc::new(OciConfig {
        policies_dir: args.policies.clone(),
        default_policy: args.oci_default_policy.clone(),
    });
    let oci_serve = async {
        match oci_listener {
            Some(l) => oci::serve_oci(broker.clone(), l, oci_config).await,
            None => std::future::pending().await,
        }
    };
    let metrics_serve = async {
        match metrics_listener {
            Some(l) => metrics_http::serve_metrics_http(broker.clone(), l).await,
            None => std::future::pending().await,
        }
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // SIGHUP reads the policy files again, as `netjail reload` does; the report goes to the log.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    // Ready once every signal has its handler: a reload asked right after must not kill it.
    if let Err(e) = activation::notify("READY=1") {
        tracing::warn!(error = %e, "cannot tell the service manager that netjaild is ready");
    }
    let reloads = async {
        while hup.recv().await.is_some() {
            let b = broker.clone();
            let items = tokio::task::spawn_blocking(move || b.reload())
                .await
                .unwrap_or_default();
            for item in &items {
                if item.outcome.failed() {
                    tracing::warn!(subject = %item.subject, outcome = item.outcome.as_str(), detail = %item.detail, "SIGHUP reload");
                } else {
                    tracing::info!(subject = %item.subject, outcome = item.outcome.as_str(), detail = %item.detail, "SIGHUP reload");
                }
            }
            let failed = items.iter().filter(|i| i.outcome.failed()).count();
            tracing::info!(items = items.len(), failed, "policies reloaded on SIGHUP");
        }
        std::future::pending::<()>().await
    };
    let result = tokio::select! {
        r = netjail_broker::serve_with(broker.clone(), listener, register_config) => r.context("accept failed"),
        r = oci_serve => r.context("accept on the OCI socket failed"),
        r = metrics_serve => r.context("accept on the metrics port failed"),
        r = control::serve_control(broker.clone(), control_listener, control_config) => r.context("accept on the control socket failed"),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        _ = reloads => Ok(()),
    };
    let _ = activation::notify("STOPPING=1");
    // Accepting stopped when the select above dropped the servers. Receiving stops now; the
    // calls in progress are answered (at most DRAIN_LIMIT), while calls held for an operator
    // stay in the journals for the next broker. Leaving then closes every listener: the
    // sandboxes whose listener is kept by their launcher or by the service manager's store
    // wait for the next broker; the others' pending and later calls fail (fail closed). The
    // socket files the broker made go; a service manager's stay its own.
    let sandboxes = broker.sandbox_count();
    let unanswered = broker.stop_and_drain(DRAIN_LIMIT).await;
    for path in &owned_paths {
        let _ = std::fs::remove_file(path);
    }
    if unanswered > 0 {
        tracing::warn!(
            sandboxes,
            unanswered,
            limit_s = DRAIN_LIMIT.as_secs(),
            "netjaild stopping with calls still in progress; they stay in the journals"
        );
    } else {
        tracing::info!(
            sandboxes,
            "netjaild stopping; the calls in progress were answered"
        );
    }
    result
}

/// Raises the soft limit of open fds to the hard limit: the broker holds one fd per sandbox
/// (its listener) and a pidfd per call in progress, so the usual soft limit of 1,024 would
/// refuse sandboxes past about a thousand (`nj-bench scale`).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let before = limit.current;
    limit.current = limit.maximum;
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => tracing::info!(
            from = before.map_or(-1, |v| v as i64),
            to = limit.maximum.map_or(-1, |v| v as i64),
            "open-file limit raised"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
