//! `nj-probe`: the hostile little program the end-to-end tests run, confined and unconfined.
//!
//! Each subcommand makes one kind of network call (or one attack on the sandbox) with raw
//! system calls and prints exactly one JSON line describing what the kernel answered. See
//! `netjail_integration_tests::probe` for the subcommands.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(netjail_integration_tests::probe::main(&args));
}
