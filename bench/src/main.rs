//! `nj-bench`: the latency bench of netjail.
//!
//! Measures, within one run and interleaved in rounds, a loopback TCP `connect()` natively,
//! through the netjail broker (allowed and denied), and the bare seccomp user-notification
//! round trip that any broker pays; prints a table, the ratios, and one JSON line.
//! `nj-bench cost` measures the cost rule instead: bulk TCP, connected UDP and plain system
//! calls, native vs confined, with no broker round trip on the measured path.
//! `nj-bench held` measures one sandbox's allowed connects through a `netjaild` idle and while
//! another sandbox has calls held for an operator.
//! `nj-bench flood` measures one sandbox's allowed connects unloaded and while another sandbox
//! floods denied connects from thousands of threads.
//! `nj-bench embedded` measures connects through a broker embedded in the bench process
//! (`Broker::builder()`): allowed by the policy (the fast path), by a run-time rule, and with a
//! decision hook (every call on the blocking pool).
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p netjail-bench --bin nj-bench -- [--iterations N] [--netjail PATH]
//! cargo run --release -p netjail-bench --bin nj-bench -- cost [--pairs N]
//! cargo run --release -p netjail-bench --bin nj-bench -- held [--help]
//! cargo run --release -p netjail-bench --bin nj-bench -- embedded [--help]
//! cargo run --release -p netjail-bench --bin nj-bench -- flood [--help]
//! ```

#[path = "mod.rs"]
mod bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(bench::main(&args));
}
