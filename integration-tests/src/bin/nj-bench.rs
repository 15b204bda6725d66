//! `nj-bench`: the latency bench of netjail.
//!
//! Measures, within one run and interleaved in rounds, a loopback TCP `connect()` natively,
//! through the netjail broker (allowed and denied), and the bare seccomp user-notification
//! round trip that any broker pays; prints a table, the ratios, and one JSON line.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p netjail-integration-tests --bin nj-bench -- [--iterations N] [--netjail PATH]
//! ```

#[path = "../bench/mod.rs"]
mod bench;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(bench::main(&args));
}
