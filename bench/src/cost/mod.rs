//! `nj-bench cost`: the cost rule (invariant 5) measured. Sending and receiving on a connected
//! socket without a destination must never cost a broker round trip, so a confined program
//! moves data about as fast as an unconfined one.
//!
//! Three long-lived workers (`nj-bench --child cost serve`, see [`crate::cost_child`]) take
//! turns, one measurement each: native; confined, under `netjail run` (the real filter, the
//! real embedded broker); and a third, native with a filter of its own (`allow-all` by default,
//! or `sendto-only`), to tell what any seccomp filter costs from what netjail's adds. Native and
//! confined alternate who goes first, the third always goes in the middle, and fresh workers
//! are started every few pairs. The ratio confined/native is taken within each pair and the
//! table reports its median over the pairs. The peers (TCP sink and source, UDP echo, UDP
//! sinks) are threads of this process, pinned to one CPU while the workers pin themselves to
//! the other.
//!
//! The confined workers' broker decisions are counted from the audit log of their embedded
//! broker (`--log-format json`): one allowed `connect()` per measurement and nothing else.
//! The filter itself is read back from a confined worker (`PTRACE_SECCOMP_GET_FILTER`) and the
//! path of each call through it counted ([`crate::bpf`]). `--control` replaces the confined
//! worker by a second native one: an A/A run, the resolution of the bench.

mod bench;
mod filter;
mod metric;
mod options;
mod peers;
mod table;
mod worker;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bench::Bench;
use filter::{inspect_filter, FilterReport};
use metric::{get, Fields, Pair, Test};
use options::{options, Options};
use peers::Peers;
use worker::{Decision, Workers};

use crate::args;
use crate::policy::{PolicyFile, DEFAULT_BROKER};
use crate::report::{loadavg, Machine};

/// Entry point of `nj-bench cost`.
pub fn main(args: args::CostArgs) -> Result<bool, String> {
    run(&options(args)?)
}

/// The all-CPU line of `/proc/stat`, in ticks.
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    fn read() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map_while(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        Some(CpuTimes {
            total: v.iter().take(8).sum(),
            steal: *v.get(7)?,
        })
    }
}

/// The fraction of all CPU time the hypervisor took between two readings.
fn steal_between(start: &Option<CpuTimes>, end: &Option<CpuTimes>) -> Option<f64> {
    let (a, b) = (start.as_ref()?, end.as_ref()?);
    let total = b.total.checked_sub(a.total)?;
    (total > 0).then(|| b.steal.saturating_sub(a.steal) as f64 / total as f64)
}

/// The peers, the policy allowing them, the bench's own executable; refuses to run when a
/// daemon listens at the default socket.
fn setup(o: &Options) -> Result<Bench<'_>, String> {
    let exe = crate::process::this_exe()?;
    let peers = Peers::start(o.pin.map(|(_, p)| p))?;
    let policy = PolicyFile::with_text(
        "cost",
        &format!(
            "name = \"bench-cost\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\", \"udp://127.0.0.1:{}\", \"udp://127.0.0.1:{}\", \"udp://127.0.0.1:{}\"]\n",
            peers.tcp, peers.echo, peers.sink, peers.blackhole
        ),
    )?;
    // With no broker named, `netjail run` starts its embedded broker, whose audit log comes
    // to the child's stderr, unless one answers at the default socket (a broker named with
    // `--broker` is never replaced by an embedded one).
    if std::path::Path::new(DEFAULT_BROKER).exists() {
        return Err(format!(
            "{DEFAULT_BROKER} exists: the confined runs would go to that broker, not to netjail run's embedded one; stop it"
        ));
    }
    Ok(Bench {
        o,
        exe,
        peers,
        policy,
    })
}

/// The report's header: the machine, the binary, the pinning and the plan.
fn print_plan(o: &Options, machine: &Machine) {
    println!("nj-bench cost: the cost rule, native vs confined (netjail run, embedded broker)");
    machine.print_header();
    println!("netjail  {}", o.netjail.display());
    match o.pin {
        Some((c, p)) => {
            println!("pinning  the measured process (native or confined) on CPU {c}, the peers on CPU {p}")
        }
        None => println!("pinning  none"),
    }
    let respawn = if o.respawn == usize::MAX {
        "never".to_owned()
    } else {
        format!("every {} pairs", o.respawn)
    };
    println!(
        "plan     {} pairs per test: native, {} and confined workers up side by side take turns, order alternating; fresh workers {respawn};",
        o.pairs, o.third
    );
    println!(
        "         TCP {} MiB in {} B calls (first 5% untimed); UDP {} round trips, {} sends; syscalls {} batches x {}",
        o.tcp_bytes >> 20,
        o.chunk,
        o.rtt,
        o.stream,
        o.batches,
        o.batch
    );

    if o.control {
        println!(
            "CONTROL  an A/A run: the \"confined\" column is a second native worker, not confined"
        );
    }
}

/// What the pairs measured.
struct Measured {
    /// Per test (in [`Test::ALL`] order), its pairs.
    results: Vec<Vec<Pair>>,
    /// Measurements whose worker ended on another CPU than it was pinned to.
    off_cpu: Vec<String>,
    /// The measurements the confined workers made (one allowed connect each).
    expected: usize,
    /// The broker decisions in the confined workers' audit logs.
    seen: Vec<Decision>,
    /// How long the pairs took.
    elapsed: Duration,
    /// The fraction of CPU time the hypervisor took meanwhile.
    steal: Option<f64>,
}

/// Runs every test in `o.pairs` pairs on `workers`, fresh ones every `o.respawn` pairs, and
/// retires the last ones.
fn measure_pairs(bench: &Bench<'_>, mut workers: Workers) -> Result<Measured, String> {
    let o = bench.o;
    let started = Instant::now();
    let cpu_start = CpuTimes::read();
    let mut results: Vec<Vec<Pair>> = Test::ALL.iter().map(|_| Vec::new()).collect();
    let mut off_cpu = Vec::new();
    // Broker decisions of retired confined workers, and the measurements they made.
    let (mut expected, mut seen) = (0, Vec::new());
    for pair in 0..o.pairs {
        if pair > 0 && pair % o.respawn == 0 {
            let (commands, decided) = workers.retire();
            expected += commands;
            seen.extend(decided);
            workers = bench.start_workers()?;
        }
        for &test in &o.tests {
            let p = measure_one(bench, &mut workers, test, pair)?;
            off_cpu.extend(off_cpu_notes(o, test, pair, &p));
            let i = Test::ALL.iter().position(|&t| t == test).unwrap_or(0);
            results[i].push(p);
        }
        eprintln!(
            "pair {}/{} done ({:.1} s)",
            pair + 1,
            o.pairs,
            started.elapsed().as_secs_f64()
        );
    }
    let elapsed = started.elapsed();
    let steal = steal_between(&cpu_start, &CpuTimes::read());
    let (commands, decided) = workers.retire();
    expected += commands;
    seen.extend(decided);
    Ok(Measured {
        results,
        off_cpu,
        expected,
        seen,
        elapsed,
        steal,
    })
}

/// One measurement of `test` by each worker, in the order of pair number `pair`.
fn measure_one(
    bench: &Bench<'_>,
    workers: &mut Workers,
    test: Test,
    pair: usize,
) -> Result<Pair, String> {
    let Workers {
        native,
        allow_all,
        confined,
    } = workers;
    let line = bench.command_line(test);
    // The allow-all worker (native with a filter of its own that allows everything)
    // tells what having seccomp on costs from what netjail's filter adds. It always
    // runs between the other two, whose order alternates.
    let (n, a, c) = if pair % 2 == 0 {
        let n = native.ask(&line)?;
        let a = allow_all.ask(&line)?;
        (n, a, confined.ask(&line)?)
    } else {
        let c = confined.ask(&line)?;
        let a = allow_all.ask(&line)?;
        (native.ask(&line)?, a, c)
    };
    Ok(Pair {
        native: n,
        confined: c,
        allow_all: a,
    })
}

/// A note for each worker of pair `p` that ended off the CPU it was pinned to.
fn off_cpu_notes(o: &Options, test: Test, pair: usize, p: &Pair) -> Vec<String> {
    let Some((cpu, _)) = o.pin else {
        return Vec::new();
    };
    [
        ("native", &p.native),
        ("confined", &p.confined),
        (o.third, &p.allow_all),
    ]
    .into_iter()
    .filter(|(_, f)| get(f, "cpu") != cpu as f64)
    .map(|(v, f)| {
        format!(
            "{} pair {} {v} ended on CPU {}",
            test.name(),
            pair + 1,
            get(f, "cpu")
        )
    })
    .collect()
}

/// A one-shot measurement's fields and the broker decisions it caused.
type SendmsgResult = Result<(Fields, Vec<Decision>), String>;

/// A one-shot measurement, native and confined, of `sendmsg` on a connected socket: always
/// brokered (the known cost). Skipped in a control run.
fn measure_sendmsg(bench: &Bench<'_>) -> (SendmsgResult, SendmsgResult) {
    let sendmsg_args = [
        "sendmsg",
        &format!("port={}", bench.peers.blackhole),
        "count=2000",
    ]
    .map(String::from);
    let sendmsg_args: Vec<&str> = sendmsg_args.iter().map(String::as_str).collect();
    if bench.o.control {
        let skipped = || Err("skipped in a control run".to_owned());
        (skipped(), skipped())
    } else {
        (
            bench.once(&sendmsg_args, false),
            bench.once(&sendmsg_args, true),
        )
    }
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let bench = setup(o)?;
    print_plan(o, &machine);
    let workers = bench.start_workers()?;
    let filter = if o.control {
        FilterReport {
            lines: Vec::new(),
            json: serde_json::Value::Null,
        }
    } else {
        inspect_filter(workers.confined.pid)
    };
    for l in &filter.lines {
        println!("         {l}");
    }

    let Measured {
        results,
        off_cpu,
        expected,
        seen,
        elapsed: measured,
        steal,
    } = measure_pairs(&bench, workers)?;
    // Each measurement of a confined worker connected once; that must be all the broker saw.
    let connects = seen
        .iter()
        .filter(|(op, d, e)| op == "connect" && d == "allow" && *e == 0)
        .count();
    let broker_ok = o.control || (seen.len() == expected && connects == expected);
    let (sendmsg_native, sendmsg_confined) = measure_sendmsg(&bench);

    let table = table::print_table(o, &results);
    let mut all_ok = table.all_ok;
    table::print_ratios(o, &results);
    let breakdown = table::print_breakdown(o, &table.deltas);
    let sink = bench.peers.sink_count.load(Ordering::Relaxed);
    if o.tests.contains(&Test::UdpStream) {
        println!("(b)      the UDP sink received {sink} datagrams in all (sends beyond its pace are dropped at its queue)");
    }
    let sendmsg_json = table::print_sendmsg(&sendmsg_native, &sendmsg_confined);
    all_ok &= table::print_broker(o, broker_ok, &seen, expected);
    for l in &off_cpu {
        println!("note     {l}");
    }
    let end_load = loadavg();
    println!(
        "load     {end_load} (at end; measurements took {:.1} s; CPU time stolen by the hypervisor meanwhile: {})",
        measured.as_secs_f64(),
        steal.map_or("unknown".into(), |s| format!("{:.1}%", 100.0 * s))
    );
    println!(
        "verdict  {}",
        if all_ok {
            "confined/native within 5% for every target metric, at the median of the pairs"
        } else {
            "NOT within 5% for every target metric (see the table), or the broker was asked more than expected"
        }
    );
    let json = machine.report_json("nj-bench cost", &end_load, serde_json::json!({
        "steal_fraction": steal,
        "pairs": o.pairs,
        "control": o.control,
        "third": o.third,
        "pin": o.pin.map(|(c, p)| vec![c, p]),
        "tcp_bytes": o.tcp_bytes,
        "chunk": o.chunk,
        "filter": filter.json,
        "metrics": table.json,
        "syscalls_breakdown_ns": breakdown,
        "sendmsg": sendmsg_json,
        "broker": { "measurements": expected, "decisions": seen.len(), "allowed_connects": connects, "ok": broker_ok },
        "udp_sink_received": sink,
        "within_target": all_ok,
    }));
    println!("{json}");
    Ok(broker_ok)
}
