//! `netjail`: run a program confined, and check policies.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netjail_broker::logging::{self, LogFormat};
use netjail_client::launch::{self, Embedded, RunOptions};
use netjail_client::{oci, policy};

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
        /// Broker socket; with none listening there an embedded broker is started.
        #[arg(
            long,
            env = "NETJAIL_BROKER",
            default_value = "/run/netjail/broker.sock"
        )]
        broker: PathBuf,
        /// Refuse to start an embedded broker when none listens.
        #[arg(long)]
        no_embedded: bool,
        /// Name of the sandbox in audit events (default: the program's name).
        #[arg(long)]
        name: Option<String>,
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
    },
    /// Print a policy in its canonical form.
    Show {
        /// Built-in name or file.
        name: String,
    },
    /// List the built-in policies.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            policy,
            broker,
            no_embedded,
            name,
            command,
        } => {
            logging::init(cli.log_format, "warn,netjail::audit=info");
            let options = RunOptions {
                policy,
                broker,
                embedded: if no_embedded {
                    Embedded::Never
                } else {
                    Embedded::WhenNoBroker
                },
                name,
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
        PolicyCommand::Check { file } => match policy::load(&file) {
            Ok((source, p)) => {
                println!("{}: ok (policy `{}`)", source.origin, p.name());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Show { name } => match policy::load(&name) {
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
