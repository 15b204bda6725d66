//! `nj-bench flood`: a sandbox flooding denied connects from thousands of threads does not
//! raise another sandbox's allowed-connect p99 beyond 2x its unloaded value (issue 8,
//! invariant 7).
//!
//! The bench starts its own `netjaild` (sockets, overlay and log in a fresh directory under
//! `/tmp`, nobody watching). Two loopback listeners: ALLOWED, which the policy allows, and
//! DENIED, which it does not. Each round measures, in rotating order, a fresh
//! `netjail run --broker SOCK --no-embedded -- nj-bench --child connect ALLOWED ...` (the
//! blocking connect of the first bench):
//!
//! - `unloaded`: nothing else runs on the broker;
//! - `flooded`: while a second sandbox, `nj-bench --child flood DENIED T` under the same policy,
//!   has T threads (default 2000) each calling `connect()` to DENIED in a loop (a fresh socket
//!   each time; every call `EPERM`). The bench starts it, waits until the broker's
//!   `netjail_decisions_total{op="connect",verdict="deny"}` climbs (read with
//!   `netjail metrics`), measures, reads the counter again (the flood's denial rate during the
//!   measurement), then ends the flooder (`SIGTERM`) and waits until it is unregistered.
//!
//! It prints both variants' figures, the p99 ratio flooded/unloaded and PASS or FAIL against
//! the 2x bound, then one JSON line. Errors of correctness (a measured connect that failed,
//! a connection that reached DENIED, a flood that was not refused) always make it exit 1; a
//! FAIL of the bound does only with `--check`, since the machine may be noisy.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::args;
use crate::own_broker::{poll_until, OwnBroker, Process, TempDir, SETTLE_LIMIT};
use crate::stats::{self, ratio, us, Summary};
use crate::{canary::Canary, process::timeout_for, report::Machine, sys};

/// The counter the flood climbs.
const DENIED_CONNECTS: &str = "netjail_decisions_total{op=\"connect\",verdict=\"deny\"}";

/// Entry point of `nj-bench flood`.
pub fn main(args: args::FloodArgs) -> Result<bool, String> {
    run(&options(args)?)
}

/// `--child flood PORT T [LIMIT_SECS]`: T threads (64 KiB stacks) each loop on a blocking
/// `connect()` of a fresh TCP socket to `127.0.0.1:PORT` until the process is ended by a
/// signal; `alarm(LIMIT_SECS)` (default 600) bounds it. Prints `{"mode":"flood","threads":T}`
/// once every thread runs.
pub fn flood_child(port: u16, threads: usize, limit_secs: u32) -> Result<(), String> {
    sys::alarm(limit_secs);
    let sin = sys::loopback4(port);
    for i in 0..threads {
        std::thread::Builder::new()
            .name(format!("flood-{i}"))
            .stack_size(64 * 1024)
            .spawn(move || loop {
                match sys::tcp4_socket() {
                    Ok(fd) => {
                        let _ = sys::connect4(&fd, &sin);
                    }
                    // Out of fds or memory for a moment: try again.
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            })
            .map_err(|e| format!("thread {i}: {e}"))?;
    }
    let line = serde_json::json!({ "mode": "flood", "threads": threads });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct Options {
    counts: args::Counts,
    threads: usize,
    bound: f64,
    check: bool,
    netjail: PathBuf,
    netjaild: PathBuf,
}

/// The options checked, the binaries found.
fn options(args: args::FloodArgs) -> Result<Options, String> {
    args.counts.check()?;
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.bound.is_nan() || args.bound <= 0.0 {
        return Err("--bound must be positive".into());
    }
    Ok(Options {
        counts: args.counts,
        threads: args.threads,
        bound: args.bound,
        check: args.check,
        netjail: args.netjail.binary()?,
        netjaild: args.netjaild.binary()?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Unloaded,
    Flooded,
}

impl Variant {
    const ALL: [Variant; 2] = [Variant::Unloaded, Variant::Flooded];

    fn key(self) -> &'static str {
        match self {
            Variant::Unloaded => "unloaded",
            Variant::Flooded => "flooded",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the broker said around one flooded measurement.
struct FloodCheck {
    /// Denials per second during the measurement.
    rate: f64,
    /// Denials during the measurement.
    denials: u64,
    /// From starting the flooder to its denials climbing.
    settle_ms: f64,
}

struct Bench<'a> {
    o: &'a Options,
    own: OwnBroker,
    allowed: Canary,
    denied: Canary,
}

impl Bench<'_> {
    /// Sandboxes registered now (`netjail status --json`).
    fn sandboxes(&self) -> Result<usize, String> {
        let (status, stdout, stderr) = self.own.status_json()?;
        if !status.success() {
            return Err(format!("netjail status: {status}: {}", stderr.trim()));
        }
        Ok(stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "sandbox")
            .count())
    }

    fn wait_no_sandbox(&self) -> Result<(), String> {
        poll_until(
            SETTLE_LIMIT,
            || self.sandboxes(),
            |&n| n == 0,
            |n| format!("{n} sandboxes still registered"),
        )
        .map(drop)
    }

    fn measure(&self, variant: Variant, count: usize) -> Result<Vec<u64>, String> {
        self.own.measure_connect(
            variant.key(),
            self.allowed.port,
            count,
            self.o.counts.warmup,
        )
    }

    /// The flooded variant of one round.
    fn measure_flooded(&self, count: usize) -> Result<(Vec<u64>, FloodCheck), String> {
        let limit = timeout_for(count + self.o.counts.warmup) + SETTLE_LIMIT * 3;
        let args = vec![
            "flood".to_owned(),
            self.denied.port.to_string(),
            self.o.threads.to_string(),
            limit.as_secs().to_string(),
        ];
        let mut cmd = self.own.confined("nj-bench-flooder", &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut flooder = Process::spawn("the flooder", &mut cmd)?;
        let outcome = (|| {
            // Flooding: every thread runs (its line), and the denials climb by at least 1,000
            // within 200 ms.
            let deadline = Instant::now() + SETTLE_LIMIT;
            let mut last = self.own.metric(DENIED_CONNECTS)?;
            let first = last;
            loop {
                std::thread::sleep(Duration::from_millis(200));
                flooder.check_alive()?;
                let now = self.own.metric(DENIED_CONNECTS)?;
                if now - last >= 1000.0 {
                    break;
                }
                last = now;
                if Instant::now() > deadline {
                    return Err(format!(
                        "the flood's denials do not climb ({first} then {now} after {:.1} s)",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            let settle_ms = started.elapsed().as_secs_f64() * 1000.0;
            let d0 = self.own.metric(DENIED_CONNECTS)?;
            let t0 = Instant::now();
            let lat = self.measure(Variant::Flooded, count)?;
            let secs = t0.elapsed().as_secs_f64();
            let d1 = self.own.metric(DENIED_CONNECTS)?;
            flooder.check_alive()?;
            let denials = (d1 - d0).max(0.0);
            Ok((
                lat,
                FloodCheck {
                    rate: denials / secs,
                    denials: denials as u64,
                    settle_ms,
                },
            ))
        })();
        flooder.stop();
        let r = outcome?;
        self.wait_no_sandbox()?;
        Ok(r)
    }
}

/// The bench's own broker under a policy that allows one listener only.
fn setup(o: &Options) -> Result<Bench<'_>, String> {
    let exe = crate::process::this_exe()?;
    let dir = TempDir::new("flood")?;
    let allowed = Canary::start()?;
    let denied = Canary::start()?;
    let policy = crate::policy::allow_one_port("bench-flood", allowed.port);
    let own = OwnBroker::start(dir, &policy, &o.netjail, &o.netjaild, exe)?;
    Ok(Bench {
        o,
        own,
        allowed,
        denied,
    })
}

/// The report's header.
fn print_plan(bench: &Bench<'_>, machine: &Machine, per_round: &[usize]) {
    let o = bench.o;
    println!("nj-bench flood: allowed connect() latency in one sandbox while another floods denied connects");
    machine.print_header();
    println!("netjail  {}", o.netjail.display());
    println!(
        "broker   {} (its own, in {}, nobody watching)",
        o.netjaild.display(),
        bench.own.dir.0.display()
    );
    crate::report::print_plan(&o.counts, per_round, ";");
    println!(
        "         flooded: a second sandbox's {} threads loop on connect() to the denied port (EPERM)",
        o.threads
    );
    println!(
        "ports    allowed 127.0.0.1:{}, denied 127.0.0.1:{}",
        bench.allowed.port, bench.denied.port
    );
}

/// Per variant its rounds' latencies, and the flood of each flooded round.
type Rounds = (Vec<Vec<Vec<u64>>>, Vec<FloodCheck>);

/// Runs both variants in every round, in rotating order: per variant its rounds' latencies,
/// and the flood of each flooded round.
fn measure_rounds(
    bench: &mut Bench<'_>,
    per_round: &[usize],
    started: Instant,
) -> Result<Rounds, String> {
    let mut samples: Vec<Vec<Vec<u64>>> = vec![Vec::new(); Variant::ALL.len()];
    let mut checks: Vec<FloodCheck> = Vec::new();
    for (round, &count) in per_round.iter().enumerate() {
        for variant in crate::report::rotation(&Variant::ALL, round) {
            bench.own.check_alive()?;
            let lat = match variant {
                Variant::Unloaded => {
                    let n = bench.sandboxes()?;
                    if n != 0 {
                        return Err(format!(
                            "round {}: {n} sandboxes before unloaded",
                            round + 1
                        ));
                    }
                    bench.measure(variant, count)?
                }
                Variant::Flooded => {
                    let (lat, check) = bench
                        .measure_flooded(count)
                        .map_err(|e| format!("round {}, flooded: {e}", round + 1))?;
                    checks.push(check);
                    lat
                }
            };
            samples[variant.index()].push(lat);
        }
        crate::report::print_round_done(round, bench.o.counts.rounds, started);
    }
    Ok((samples, checks))
}

/// Prints what the floods did: denials per second and how fast each flood started.
fn print_floods(checks: &[FloodCheck], rates: &[f64]) {
    let mean_rate = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    println!(
        "flood                            denials per second during each measurement: {} (mean {mean_rate:.0}); {} denials in all",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        checks.iter().map(|c| c.denials).sum::<u64>()
    );
    println!(
        "                                 flooding within {} ms of the flooder's start",
        checks
            .iter()
            .map(|c| format!("{:.0}", c.settle_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// What the run must have done besides its figures (the bound only with `--check`); prints
/// each failure, false if any.
fn verdict(
    o: &Options,
    checks: &[FloodCheck],
    (pass, r_p99): (bool, f64),
    (seen, expected, leaked): (u64, u64, u64),
) -> bool {
    let mut ok = true;
    if leaked != 0 {
        eprintln!("nj-bench flood: error: {leaked} connection(s) reached the denied port");
        ok = false;
    }
    if checks.iter().any(|c| c.denials == 0) {
        eprintln!("nj-bench flood: error: a flooded measurement saw no denial");
        ok = false;
    }
    if !pass {
        eprintln!(
            "nj-bench flood: {}: p99 flooded / unloaded {r_p99:.2}x > {:.1}x",
            if o.check { "error" } else { "warning" },
            o.bound
        );
        if o.check {
            ok = false;
        }
    }
    if seen != expected {
        eprintln!(
            "nj-bench flood: warning: the allowed listener accepted {seen}, expected {expected}"
        );
    }
    ok
}

/// Prints what the listeners accepted: every measured connect at the allowed one, nothing at
/// the denied one; returns (accepted, expected, leaked).
fn check_listeners(bench: &Bench<'_>, allowed_decisions: f64) -> (u64, u64, u64) {
    let expected = 2 * bench.o.counts.calls_per_variant();
    let seen = bench.allowed.wait_for(expected, Duration::from_secs(2));
    let leaked = bench.denied.accepted();
    println!(
        "listeners                        allowed port accepted {seen} of {expected}; denied port accepted {leaked} (must be 0); broker counted {allowed_decisions} allowed connects"
    );
    (seen, expected, leaked)
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let mut bench = setup(o)?;
    let per_round = o.counts.plan();
    print_plan(&bench, &machine, &per_round);

    let started = Instant::now();
    let (samples, checks) = measure_rounds(&mut bench, &per_round, started)?;
    let allowed_decisions = bench
        .own
        .metric("netjail_decisions_total{op=\"connect\",verdict=\"allow\"}")
        .unwrap_or(f64::NAN);
    let peak = bench
        .own
        .metric("netjail_sandbox_calls_in_flight_peak")
        .unwrap_or(f64::NAN);
    bench.own.stop();

    let summaries: Vec<Summary> = samples.iter().map(|r| stats::summarize(r)).collect();
    let (unloaded, flooded) = (
        &summaries[Variant::Unloaded.index()],
        &summaries[Variant::Flooded.index()],
    );
    println!();
    println!("{}", Summary::table_header(24));
    println!("{}", unloaded.table_row("unloaded", 24));
    println!(
        "{}",
        flooded.table_row(&format!("flooded ({} threads)", o.threads), 24)
    );
    let r_med = ratio(flooded.median_ns, unloaded.median_ns);
    let r_p99 = ratio(flooded.p99_ns, unloaded.p99_ns);
    let pass = r_p99 <= o.bound;
    let rates: Vec<f64> = checks.iter().map(|c| c.rate).collect();
    println!();
    println!("flooded / unloaded               median {r_med:.2}x   p99 {r_p99:.2}x");
    println!(
        "bound                            p99 flooded <= {:.1} x p99 unloaded: {} ({:.1} µs vs {:.1} µs allowed)",
        o.bound,
        if pass { "PASS" } else { "FAIL" },
        us(flooded.p99_ns),
        o.bound * us(unloaded.p99_ns)
    );
    print_floods(&checks, &rates);
    println!("in flight                        peak of one sandbox on the blocking pool: {peak}");
    for (v, s) in [("unloaded", unloaded), ("flooded", flooded)] {
        if let Some(note) = s.spread_note(v, "a noisy run") {
            println!("{note}");
        }
    }
    let (seen, expected, leaked) = check_listeners(&bench, allowed_decisions);
    let end_load = crate::report::print_end_load(started);

    let json = machine.report_json("nj-bench flood", &end_load, serde_json::json!({
        "iterations": o.counts.iterations,
        "rounds": o.counts.rounds,
        "warmup": o.counts.warmup,
        "threads": o.threads,
        "netjail": o.netjail.display().to_string(),
        "netjaild": o.netjaild.display().to_string(),
        "variants": {
            "unloaded": unloaded.to_json(),
            "flooded": flooded.to_json(),
        },
        "ratios": {
            "flooded_over_unloaded_median": r_med,
            "flooded_over_unloaded_p99": r_p99,
        },
        "bound": { "p99_ratio": o.bound, "pass": pass },
        "flood": {
            "denials_per_second": rates,
            "denials": checks.iter().map(|c| c.denials).sum::<u64>(),
            "settle_ms": checks.iter().map(|c| c.settle_ms).collect::<Vec<_>>(),
        },
        "in_flight_peak": peak,
        "listeners": { "allowed_accepted": seen, "allowed_expected": expected, "denied_accepted": leaked },
    }));
    println!("{json}");
    Ok(verdict(o, &checks, (pass, r_p99), (seen, expected, leaked)))
}
