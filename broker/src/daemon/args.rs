//! `netjaild`'s command line.

use std::path::PathBuf;

use clap::Parser;

use crate::logging::LogFormat;

/// The netjail broker: decides the network calls of confined processes.
#[derive(Debug, Parser)]
#[command(name = "netjaild", version)]
pub(crate) struct Args {
    /// Registration socket (SOCK_SEQPACKET, mode 0660, group: the registration group).
    #[arg(long, default_value = "/run/netjail/broker.sock")]
    pub(crate) socket: PathBuf,
    /// The registration group: its members may register sandboxes (a name or a gid). Root
    /// and the broker's own user always may; with no such group, nobody else.
    #[arg(long, default_value = "netjail")]
    pub(crate) register_group: String,
    /// Control socket for operators (SOCK_SEQPACKET, mode 0666; the broker serves only root
    /// and members of the operator group, never a confined process, and refuses everyone
    /// else with a message).
    #[arg(long, default_value = "/run/netjail/control.sock")]
    pub(crate) control: PathBuf,
    /// The operator group: its members may use the control socket (a name or a gid). It must
    /// not be the registration group: those who run sandboxes do not answer their calls.
    /// Root and the broker's own user always may; with no such group, nobody else.
    #[arg(long, default_value = "netjail-operators")]
    pub(crate) operator_group: String,
    /// Sandboxes one user other than root may have registered at once (over the
    /// registration socket, the OCI socket, or by confining itself).
    #[arg(long, value_name = "N", default_value_t = crate::DEFAULT_MAX_SANDBOXES_PER_USER)]
    pub(crate) max_sandboxes_per_user: usize,
    /// Directory of the overlay: rules operators make with `--always`, one policy file per
    /// scope, read at start (a file with a mistake stops the broker, with file:line:column)
    /// and again by `netjail reload` or SIGHUP (a file with a mistake keeps its old rules).
    #[arg(long, default_value = "/var/lib/netjail/overlay")]
    pub(crate) overlay: PathBuf,
    /// Hosts file for host names in policies (read before DNS; re-read when it changes).
    #[arg(long, default_value = "/etc/hosts")]
    pub(crate) hosts: PathBuf,
    /// resolv.conf naming the DNS servers for host names in policies.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub(crate) resolv_conf: PathBuf,
    /// A DNS server (ADDRESS:PORT) to ask instead of resolv.conf's; may be repeated.
    #[arg(long = "nameserver", value_name = "ADDRESS:PORT")]
    pub(crate) nameservers: Vec<std::net::SocketAddr>,
    /// Also be the OCI seccomp agent on this socket (SOCK_STREAM, mode 0660): runc and crun
    /// send it a container's listener when the bundle's `linux.seccomp.listenerPath` names it.
    #[arg(long)]
    pub(crate) oci_socket: Option<PathBuf>,
    /// Directory of policy files `NAME.toml`, for containers that name a policy that is not a
    /// built-in (read again for running containers by `netjail reload` or SIGHUP).
    #[arg(long, default_value = "/etc/netjail/policies")]
    pub(crate) policies: PathBuf,
    /// Policy of a container whose bundle names none (by default such a container is refused
    /// and its network calls fail).
    #[arg(long, requires = "oci_socket")]
    pub(crate) oci_default_policy: Option<String>,
    /// Also serve the metrics (`GET /metrics`, Prometheus text) over HTTP on this loopback
    /// address (`127.0.0.1:9464`; port 0 picks one, logged). Anyone on the machine may read
    /// them there: counts only, no names or destinations. Other addresses are refused.
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// Directory of the sandboxes' journals (mode 0700; default: `state` beside the
    /// registration socket, `/run/netjail/state`). A broker started after this one stopped or
    /// crashed, with the same directory, decides the calls this one had received and not
    /// answered, once each sandbox's client (`netjail run`) registers it again.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Keep the listeners of containers (`--oci-socket`) and of processes that confine
    /// themselves in the service manager's file descriptor store (`FDSTORE=1`), so that their
    /// sandboxes outlive a restart of netjaild as those of `netjail run` do. `auto`: when a
    /// service manager asked to be told (`NOTIFY_SOCKET`) and the journals are kept; `on`:
    /// the same, and netjaild does not start without them; `off`: never (their calls then fail
    /// with ENOSYS when netjaild stops). The unit needs `FileDescriptorStoreMax=`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub(crate) fd_store: FdStoreMode,
    /// Log and audit format: human or json.
    #[arg(long, default_value = "human")]
    pub(crate) log_format: LogFormat,
}

/// When listeners go to the service manager's file descriptor store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FdStoreMode {
    Auto,
    On,
    Off,
}
