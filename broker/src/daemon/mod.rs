//! Everything only the daemon `netjaild` uses: its command line (`args.rs`), its sockets and
//! how it starts, serves and stops ([`main`]); the OCI seccomp agent (`oci.rs`); the metrics
//! over HTTP (`metrics_http.rs`); reloads of policy files (`reload.rs`); sockets from the
//! service manager (`activation.rs`). `src/main.rs` only calls [`main`].
//!
//! Embedders do not need any of it: [`crate::Broker`] and [`crate::serve`] are the library.

pub(crate) mod activation;
mod args;
pub(crate) mod metrics_http;
pub(crate) mod oci;
pub(crate) mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::logging;
use crate::names::{Resolver, ResolverConfig};
use crate::operators::control::{self, ControlConfig};
use crate::operators::overlay::Overlay;
use crate::operators::Operators;
use crate::server::RegistrationConfig;
use crate::Broker;
use activation::Inherited;
use args::{Args, FdStoreMode};
use oci::OciConfig;

/// How long netjaild waits on SIGTERM for the calls in progress to be answered.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `netjaild`: reads its command line, opens its sockets, serves until SIGTERM or SIGINT.
pub fn main() -> anyhow::Result<()> {
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

/// The sockets netjaild serves on.
struct Sockets {
    registration: tokio_seqpacket::UnixSeqpacketListener,
    register_config: Arc<RegistrationConfig>,
    control: tokio_seqpacket::UnixSeqpacketListener,
    control_config: Arc<ControlConfig>,
    oci: Option<tokio::net::UnixListener>,
    metrics: Option<TcpListener>,
    /// The socket files netjaild made, removed when it stops (a service manager's stay).
    owned_paths: Vec<PathBuf>,
}

async fn run(args: Args, mut inherited: Inherited) -> anyhow::Result<()> {
    // What operators decided before comes first: a broker that cannot read it does not start.
    let overlay = Overlay::open(&args.overlay)
        .with_context(|| format!("cannot read the overlay in {}", args.overlay.display()))?;
    tracing::info!(overlay = %args.overlay.display(), rules = overlay.rule_count(), "overlay read");
    let sockets = open_sockets(&args, &mut inherited).await?;
    let stored = inherited.take_stored();
    inherited.all_claimed()?;
    let broker = make_broker(&args, overlay)?;
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
    let owned_paths = sockets.owned_paths.clone();
    let result = serve(&args, &broker, sockets).await;
    stop(&broker, &owned_paths).await;
    result
}

/// Opens (or takes from the service manager: socket activation, used as they are, never
/// re-bound or removed) every socket the command line names.
async fn open_sockets(args: &Args, inherited: &mut Inherited) -> anyhow::Result<Sockets> {
    let mut owned_paths: Vec<PathBuf> = Vec::new();
    // The OCI socket first: once the registration socket answers, both do.
    let oci = match &args.oci_socket {
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
    let control = match inherited.seqpacket(&args.control)? {
        Some(l) => l,
        None => {
            owned_paths.push(args.control.clone());
            control::bind_control_socket(&args.control)
                .with_context(|| format!("cannot listen on {}", args.control.display()))?
        }
    };
    let control_config = Arc::new(ControlConfig::with_group(&args.operator_group));
    let register_config = Arc::new(RegistrationConfig::with_group(&args.register_group));
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
    let metrics = match args.metrics_listen {
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
    let registration = match inherited.seqpacket(&args.socket)? {
        Some(l) => {
            tracing::info!(socket = %args.socket.display(), "registration socket from the service manager");
            l
        }
        None => {
            owned_paths.push(args.socket.clone());
            crate::bind_registration_socket(&args.socket, &register_config)
                .with_context(|| format!("cannot listen on {}", args.socket.display()))?
        }
    };
    Ok(Sockets {
        registration,
        register_config,
        control,
        control_config,
        oci,
        metrics,
        owned_paths,
    })
}

/// The broker, with its resolver, its journals and (as the command line says) the service
/// manager's fd store.
fn make_broker(args: &Args, overlay: Overlay) -> anyhow::Result<Arc<Broker>> {
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
    Ok(broker)
}

/// Serves every socket until SIGTERM or SIGINT, or until one of them fails; reloads the
/// policy files on SIGHUP.
async fn serve(args: &Args, broker: &Arc<Broker>, sockets: Sockets) -> anyhow::Result<()> {
    let oci_config = Arc::new(OciConfig {
        policies_dir: args.policies.clone(),
        default_policy: args.oci_default_policy.clone(),
    });
    let oci_serve = async {
        match sockets.oci {
            Some(l) => oci::serve_oci(broker.clone(), l, oci_config).await,
            None => std::future::pending().await,
        }
    };
    let metrics_serve = async {
        match sockets.metrics {
            Some(l) => metrics_http::serve_metrics_http(broker.clone(), l).await,
            None => std::future::pending().await,
        }
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // SIGHUP reads the policy files again, as `netjail reload` does; the report goes to the log.
    let mut hup = signal(SignalKind::hangup())?;
    // Ready once every signal has its handler: a reload asked right after must not kill it.
    if let Err(e) = activation::notify("READY=1") {
        tracing::warn!(error = %e, "cannot tell the service manager that netjaild is ready");
    }
    let reloads = async {
        while hup.recv().await.is_some() {
            reload_on_hangup(broker).await;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = crate::serve_with(broker.clone(), sockets.registration, sockets.register_config) => r.context("accept failed"),
        r = oci_serve => r.context("accept on the OCI socket failed"),
        r = metrics_serve => r.context("accept on the metrics port failed"),
        r = control::serve_control(broker.clone(), sockets.control, sockets.control_config) => r.context("accept on the control socket failed"),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
        _ = reloads => Ok(()),
    }
}

/// Reads the policy files again (SIGHUP), and logs what came of each.
async fn reload_on_hangup(broker: &Arc<Broker>) {
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

/// Stops once accepting has stopped (the servers were dropped): receiving stops, the calls in
/// progress are answered (at most [`DRAIN_LIMIT`]), while calls held for an operator stay in
/// the journals for the next broker. Leaving then closes every listener: the sandboxes whose
/// listener is kept by their launcher or by the service manager's store wait for the next
/// broker; the others' pending and later calls fail (fail closed). The socket files the
/// broker made go; a service manager's stay its own.
async fn stop(broker: &Arc<Broker>, owned_paths: &[PathBuf]) {
    let _ = activation::notify("STOPPING=1");
    let sandboxes = broker.sandbox_count();
    let unanswered = broker.stop_and_drain(DRAIN_LIMIT).await;
    for path in owned_paths {
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
