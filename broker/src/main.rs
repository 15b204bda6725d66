//! `netjaild`: the netjail broker daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use netjail_broker::logging::{self, LogFormat};
use netjail_broker::Broker;

/// The netjail broker: decides the network calls of confined processes.
#[derive(Debug, Parser)]
#[command(name = "netjaild", version)]
struct Args {
    /// Registration socket (SOCK_SEQPACKET, mode 0660).
    #[arg(long, default_value = "/run/netjail/broker.sock")]
    socket: PathBuf,
    /// Log and audit format: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    logging::init(args.log_format, "info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = netjail_broker::bind_socket(&args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    tracing::info!(socket = %args.socket.display(), "netjaild listening");
    let broker = Broker::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let result = tokio::select! {
        r = netjail_broker::serve(broker.clone(), listener) => r.context("accept failed"),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    // Leaving closes every listener: pending and later calls of the sandboxes fail (fail closed).
    let _ = std::fs::remove_file(&args.socket);
    tracing::info!(sandboxes = broker.sandbox_count(), "netjaild stopping");
    result
}
