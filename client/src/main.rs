//! `netjail`: run a program confined, check policies, and answer the broker as an operator.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netjail_broker::logging::{self, LogFormat};
use netjail_client::launch::{self, Embedded, RunOptions};
use netjail_client::operator::commands::{
    self, Answer, MetricsOptions, PendingOptions, ReloadOptions, ResolveOptions, StatusOptions,
    WatchOptions,
};
use netjail_client::operator::{self, top};
use netjail_client::{oci, policy};
use netjail_protocol::control::{GrantDuration, GrantScope, RequestId};

/// netjail: give a program's network access to a broker that decides every call.
#[derive(Debug, Parser)]
#[command(name = "netjail", version)]
struct Cli {
    /// Log and audit format: human or json.
    #[arg(long, global = true, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run CMD confined by a policy.
    Run {
        /// Built-in policy name or policy file.
        #[arg(long)]
        policy: String,
        /// Set a top-level policy key after `extends` is resolved: KEY=VALUE (repeatable);
        /// VALUE is a TOML value if it reads as one (false, ["a", "b"]), else a string.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// The broker's socket: that broker serves CMD, or netjail run fails saying why
        /// (nothing there, not a socket, nobody listening, refused). Without it: the broker at
        /// /run/netjail/broker.sock, or with none there a broker embedded in netjail run.
        #[arg(long, env = "NETJAIL_BROKER", value_name = "PATH")]
        broker: Option<PathBuf>,
        /// Refuse to start an embedded broker when none listens at /run/netjail/broker.sock.
        #[arg(long, conflicts_with = "embedded")]
        no_embedded: bool,
        /// Use a broker embedded in netjail run, whatever listens at /run/netjail/broker.sock.
        #[arg(long, conflicts_with = "broker")]
        embedded: bool,
        /// Name of the sandbox in audit events (default: the program's name).
        #[arg(long)]
        name: Option<String>,
        /// When the broker goes away (a restart), keep trying this long to register the
        /// sandbox again: its network calls wait meanwhile, then fail (ENOSYS). 0: fail at once.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = reconnect_arg)]
        reconnect_for: Duration,
        /// Confine CMD even though it runs as root (uid 0), in a private mount namespace with
        /// read-only /proc/sys, /sys and broker files and no device nodes but the usual ones
        /// (docs/security.md, "Root sandboxes"). Without it a root CMD is refused.
        #[arg(long)]
        allow_root: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Check or print policies.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Containers: netjail's filter for an OCI runtime (runc, crun).
    Oci {
        #[command(subcommand)]
        action: OciCommand,
    },
    /// List the calls held for an operator (oldest first).
    Pending {
        #[command(flatten)]
        control: ControlArg,
        /// One JSON object per line (each with `id`).
        #[arg(long)]
        json: bool,
        /// With nothing held, wait for the first held call and print it (while it waits,
        /// this command counts as an operator watching).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (500ms, 2s, 5m, 1h, 1m30s); default: for ever.
        #[arg(long, requires = "wait", value_name = "DURATION", value_parser = duration_arg)]
        timeout: Option<Duration>,
    },
    /// Let a held call through: once (the default), for a while, or always.
    Grant {
        #[command(flatten)]
        control: ControlArg,
        /// The held call (the ID column of `netjail pending`).
        id: u64,
        /// This call only.
        #[arg(long, group = "how")]
        once: bool,
        /// This call, and later calls to the same destination for DURATION (2s, 5m, 1h).
        #[arg(long = "for", group = "how", value_name = "DURATION", value_parser = grant_duration_arg)]
        for_: Option<Duration>,
        /// This call, and later calls to the same destination from now on (the broker writes
        /// the rule to its overlay policy file).
        #[arg(long, group = "how")]
        always: bool,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Refuse a held call (EPERM); with --always, later calls to the same destination too.
    Deny {
        #[command(flatten)]
        control: ControlArg,
        /// The held call (the ID column of `netjail pending`).
        id: u64,
        /// Also refuse later calls to the same destination without asking (the broker
        /// writes the rule to its overlay policy file).
        #[arg(long)]
        always: bool,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Print the broker's events as they happen: every decision, held calls and their ends.
    Watch {
        #[command(flatten)]
        control: ControlArg,
        /// One JSON object per line, its kind in "event" (pending, resolved, decision,
        /// registered, retired, lagged).
        #[arg(long)]
        json: bool,
        /// Held calls and their ends only, not every decision.
        #[arg(long)]
        pending_only: bool,
    },
    /// The broker's state and its sandboxes.
    Status {
        #[command(flatten)]
        control: ControlArg,
        /// One JSON object per line, its kind in "kind" (broker, then one sandbox each).
        #[arg(long)]
        json: bool,
    },
    /// The broker's metrics in the Prometheus text format: decisions by op and verdict,
    /// their latency, sandboxes, held calls.
    Metrics {
        #[command(flatten)]
        control: ControlArg,
    },
    /// Makes the broker read its policy files again (the overlay, the policies of running
    /// containers); running sandboxes get the new rules for their next call. A file with a
    /// mistake is reported and its old rules stay.
    Reload {
        #[command(flatten)]
        control: ControlArg,
        /// One JSON object per line: subject, outcome, detail.
        #[arg(long)]
        json: bool,
    },
    /// A full-screen view of sandboxes, held calls and decisions; answer held calls with
    /// y (grant once), a (grant always), n (deny once).
    Top {
        #[command(flatten)]
        control: ControlArg,
    },
}

/// Where the broker's control socket is.
#[derive(Debug, Args)]
struct ControlArg {
    /// The broker's control socket.
    #[arg(long, env = "NETJAIL_CONTROL", default_value = operator::DEFAULT_CONTROL)]
    control: PathBuf,
}

/// Whom a rule made by an operator covers (default: this sandbox only).
#[derive(Debug, Args)]
struct ScopeArgs {
    /// The rule covers every sandbox confined by the same policy.
    #[arg(long, conflicts_with = "container")]
    policy: bool,
    /// The rule covers every process of the same OCI container.
    #[arg(long)]
    container: bool,
}

impl ScopeArgs {
    fn scope(&self) -> GrantScope {
        if self.policy {
            GrantScope::Policy
        } else if self.container {
            GrantScope::Container
        } else {
            GrantScope::Sandbox
        }
    }
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    netjail_policy::parse_duration(text)
}

/// A duration, or `0`/`0s`: do not wait at all.
fn reconnect_arg(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" | "0s" | "0ms" => Ok(Duration::ZERO),
        t => duration_arg(t),
    }
}

fn grant_duration_arg(text: &str) -> Result<Duration, String> {
    match duration_arg(text)? {
        d if d.is_zero() => Err("a grant --for must last longer than 0".into()),
        d => Ok(d),
    }
}

#[derive(Debug, Subcommand)]
enum OciCommand {
    /// Print the `linux.seccomp` object of a bundle's config.json for a policy.
    Seccomp {
        /// Built-in policy name or policy file.
        #[arg(long)]
        policy: String,
        /// The broker's socket for runtimes (`netjaild --oci-socket`).
        #[arg(long, default_value = oci::DEFAULT_LISTENER)]
        listener: String,
    },
    /// Patch a bundle's config.json in place: seccomp, noNewPrivileges, capabilities.
    Patch {
        /// The bundle's config.json.
        config: PathBuf,
        /// Built-in policy name or policy file.
        #[arg(long)]
        policy: String,
        /// The broker's socket for runtimes (`netjaild --oci-socket`).
        #[arg(long, default_value = oci::DEFAULT_LISTENER)]
        listener: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check a policy file; errors name the file, line and column.
    Check {
        /// The policy file (or a built-in name).
        file: String,
        /// Set a top-level key: KEY=VALUE (repeatable), as `netjail run --set`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Print a policy resolved (parents and --set applied) in its canonical form.
    Show {
        /// Built-in name or file.
        name: String,
        /// Set a top-level key: KEY=VALUE (repeatable), as `netjail run --set`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// List the built-in policies.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            policy,
            sets,
            broker,
            no_embedded,
            embedded,
            name,
            reconnect_for,
            allow_root,
            command,
        } => {
            logging::init(cli.log_format, "warn,netjail::audit=info");
            let options = RunOptions {
                policy,
                sets,
                broker,
                embedded: if embedded {
                    Embedded::Always
                } else if no_embedded {
                    Embedded::Never
                } else {
                    Embedded::WhenNoBroker
                },
                name,
                reconnect_for,
                allow_root,
                command,
            };
            match launch::run(options) {
                Ok(status) => netjail_client::sys::exit_like(status),
                Err(e) => {
                    eprintln!("netjail: {e}");
                    ExitCode::from(e.exit_code() as u8)
                }
            }
        }
        Command::Policy { action } => policy_command(action),
        Command::Oci { action } => oci_command(action),
        command => operator_command(command),
    }
}

/// `pending`, `grant`, `deny`, `watch`, `status`, `metrics`, `top`.
fn operator_command(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("netjail: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let result: Result<(), String> = match command {
        Command::Pending {
            control,
            json,
            wait,
            timeout,
        } => {
            let opts = PendingOptions {
                control: control.control,
                json,
                wait,
                timeout,
            };
            runtime
                .block_on(commands::pending(&opts, &mut out, &mut std::io::stderr()))
                .map_err(|e| e.to_string())
        }
        Command::Grant {
            control,
            id,
            once: _,
            for_,
            always,
            scope,
        } => {
            let duration = match (for_, always) {
                (Some(d), _) => GrantDuration::For {
                    millis: d.as_millis().try_into().unwrap_or(u64::MAX),
                },
                (None, true) => GrantDuration::Always,
                (None, false) => GrantDuration::Once,
            };
            if duration == GrantDuration::Once && scope.scope() != GrantScope::Sandbox {
                Err("--policy and --container name whom a rule covers: use them with --for or --always".into())
            } else {
                let opts = ResolveOptions {
                    control: control.control,
                    id: RequestId(id),
                    answer: Answer::Grant(duration),
                    scope: scope.scope(),
                };
                runtime
                    .block_on(commands::resolve(&opts, &mut out))
                    .map_err(|e| e.to_string())
            }
        }
        Command::Deny {
            control,
            id,
            always,
            scope,
        } => {
            if !always && scope.scope() != GrantScope::Sandbox {
                Err(
                    "--policy and --container name whom a rule covers: use them with --always"
                        .into(),
                )
            } else {
                let opts = ResolveOptions {
                    control: control.control,
                    id: RequestId(id),
                    answer: Answer::Deny { always },
                    scope: scope.scope(),
                };
                runtime
                    .block_on(commands::resolve(&opts, &mut out))
                    .map_err(|e| e.to_string())
            }
        }
        Command::Watch {
            control,
            json,
            pending_only,
        } => {
            let opts = WatchOptions {
                control: control.control,
                json,
                pending_only,
            };
            runtime
                .block_on(commands::watch(&opts, &mut out))
                .map_err(|e| e.to_string())
        }
        Command::Status { control, json } => {
            let opts = StatusOptions {
                control: control.control,
                json,
            };
            runtime
                .block_on(commands::status(&opts, &mut out))
                .map_err(|e| e.to_string())
        }
        Command::Metrics { control } => {
            let opts = MetricsOptions {
                control: control.control,
            };
            runtime
                .block_on(commands::metrics(&opts, &mut out))
                .map_err(|e| e.to_string())
        }
        Command::Reload { control, json } => {
            let opts = ReloadOptions {
                control: control.control,
                json,
            };
            runtime
                .block_on(commands::reload(&opts, &mut out))
                .map_err(|e| e.to_string())
        }
        Command::Top { control } => {
            drop(out);
            drop(runtime);
            top::run(&top::TopOptions {
                control: control.control,
            })
            .map_err(|e| e.to_string())
        }
        Command::Run { .. } | Command::Policy { .. } | Command::Oci { .. } => {
            Err("not an operator command (a bug in netjail)".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netjail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn oci_command(action: OciCommand) -> ExitCode {
    let result = match action {
        OciCommand::Seccomp { policy, listener } => {
            oci::seccomp(&policy, &listener).map(|object| println!("{object}"))
        }
        OciCommand::Patch {
            config,
            policy,
            listener,
        } => oci::patch_file(&config, &policy, &listener).map(|patched| {
            let how = if patched.merged {
                "merged with the container's own seccomp profile"
            } else {
                "netjail's seccomp profile"
            };
            println!(
                "{}: patched for policy `{policy}` ({how}; agent at {listener})",
                config.display()
            );
            if !patched.removed_capabilities.is_empty() {
                println!(
                    "{}: removed from process.capabilities: {}",
                    config.display(),
                    patched.removed_capabilities.join(", ")
                );
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netjail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn policy_command(action: PolicyCommand) -> ExitCode {
    match action {
        PolicyCommand::Check { file, sets } => match policy::check(&file, &sets) {
            Ok((source, p, found)) if found.is_empty() => {
                println!("{}: ok (policy `{}`)", source.origin, p.name());
                ExitCode::SUCCESS
            }
            Ok((_, _, found)) => {
                for finding in &found {
                    eprintln!("{finding}");
                }
                eprintln!(
                    "{file}: {} entr{} that can never decide a request",
                    found.len(),
                    if found.len() == 1 { "y" } else { "ies" }
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Show { name, sets } => match policy::load_with(&name, &sets) {
            Ok((_, p)) => {
                print!("{}", p.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        PolicyCommand::List => {
            for name in netjail_policy::builtin_names() {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
    }
}
