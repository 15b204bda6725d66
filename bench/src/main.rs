//! `nj-bench`: the benches of netjail, each measuring its variants side by side within one run
//! (the machine may be noisy, so only figures of the same run are compared).
//!
//! - `nj-bench` measures, interleaved in rounds, a loopback TCP `connect()` natively, through
//!   the netjail broker (allowed and denied), and the bare seccomp user-notification round trip
//!   that any broker pays; prints a table, the ratios, and one JSON line.
//! - `nj-bench cost` measures the cost rule instead: bulk TCP, connected UDP and plain system
//!   calls, native vs confined, with no broker round trip on the measured path.
//! - `nj-bench held` measures one sandbox's allowed connects through a `netjaild` idle and
//!   while another sandbox has calls held for an operator.
//! - `nj-bench flood` measures one sandbox's allowed connects unloaded and while another
//!   sandbox floods denied connects from thousands of threads.
//! - `nj-bench embedded` measures connects through a broker embedded in the bench process
//!   (`Broker::builder()`): allowed by the policy (the fast path), by a run-time rule, and with
//!   a decision hook (every call on the blocking pool).
//! - `nj-bench scale` registers 10,000 sandboxes on one broker: its memory per sandbox and its
//!   decision rate with 1, 16 and 256 busy sandboxes.
//! - `nj-bench bridge` measures bulk TCP throughput and connect latency from a network
//!   namespace of its own to a server on the host's 127.0.0.1: host networking, slirp4netns
//!   and pasta side by side.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p netjail-bench --bin nj-bench -- [--iterations N] [--netjail PATH]
//! cargo run --release -p netjail-bench --bin nj-bench -- cost [--pairs N]
//! cargo run --release -p netjail-bench --bin nj-bench -- held [--help]
//! cargo run --release -p netjail-bench --bin nj-bench -- embedded [--help]
//! cargo run --release -p netjail-bench --bin nj-bench -- flood [--help]
//! cargo run --release -p netjail-bench --bin nj-bench -- bridge [--help]
//! ```
//!
//! # Module map
//!
//! - [`args`]: the command line (clap), one struct per bench.
//! - The benches, one module each: [`connect`] (no subcommand), [`cost`] (with its measured
//!   worker [`cost_child`], the filter's cost [`bpf`]), [`held`], [`embedded`], [`flood`],
//!   [`scale`], [`bridge`].
//! - [`child`]: the measured children, `nj-bench --child ...` (the bench runs itself).
//! - What the benches share: [`canary`] (loopback listeners that count), [`policy`] (the
//!   policy file), [`process`] (children with a time bound, their reports), [`own_broker`] (a
//!   `netjaild` of the bench's own), [`stats`] (medians, percentiles, the table),
//!   [`report`] (the machine, the plan, the rounds), [`sys`] (the raw system calls, the only
//!   `unsafe`).

mod args;
mod bpf;
mod bridge;
mod canary;
mod child;
mod connect;
mod cost;
mod cost_child;
mod embedded;
mod flood;
mod held;
mod own_broker;
mod policy;
mod process;
mod report;
mod scale;
mod stats;
mod sys;

use clap::Parser;

use args::{Bench, Cli};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    std::process::exit(run(&args));
}

/// Runs the command line `args` (with the program name first); returns the exit code: 0 when
/// the bench ran and its checks held, 1 otherwise (bad options too).
fn run(args: &[String]) -> i32 {
    let result = if args.get(1).map(String::as_str) == Some("--child") {
        child::main(&args[2..])
    } else {
        match Cli::try_parse_from(args) {
            Ok(cli) => bench(cli),
            Err(e) => {
                // `--help` goes to stdout and succeeds; a bad option fails as any error does.
                let _ = e.print();
                return i32::from(e.use_stderr());
            }
        }
    };
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("nj-bench: error: {e}");
            1
        }
    }
}

/// Runs the bench the command line names.
fn bench(cli: Cli) -> Result<bool, String> {
    match cli.bench {
        None => connect::main(cli.connect),
        Some(Bench::Cost(a)) => cost::main(a),
        Some(Bench::Held(a)) => held::main(a),
        Some(Bench::Embedded(a)) => embedded::main(a),
        Some(Bench::Scale(a)) => scale::main(a),
        Some(Bench::Flood(a)) => flood::main(a),
        Some(Bench::Bridge(a)) => bridge::main(a),
    }
}
