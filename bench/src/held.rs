//! `nj-bench held`: calls held for an operator in one sandbox do not slow down another
//! sandbox's allowed connects (issue 5).
//!
//! The bench starts its own `netjaild` (sockets, overlay and log in a fresh directory under
//! `/tmp`) and one operator, `netjail watch --json`, so that `[[ask]]` calls are held rather
//! than refused at once. Two loopback listeners: ALLOWED, which the policy allows, and ASKED,
//! which it asks an operator about (`ask_timeout = "10m"`: nobody answers during the run).
//!
//! Each round measures the variants, in rotating order, with the same fresh child each time,
//! `netjail run --broker SOCK --no-embedded --policy P -- nj-bench --child connect ALLOWED ...`:
//!
//! - `idle`: nothing is held anywhere;
//! - `held`: while a second sandbox, `nj-bench --child hold ASKED N` under the same policy,
//!   has N calls (default 16, the broker's limit per sandbox) held: its N threads each block
//!   in one `connect()` to ASKED. The bench waits until `netjail status` counts N calls held,
//!   measures, reads `status` again (still N), then ends the holder (`SIGTERM` to its
//!   `netjail run`, which forwards it; the held calls end "gone") and waits until nothing is
//!   held;
//! - `unwatched` (with `--unwatched`): nothing held and the operator stopped for the
//!   measurement, to show what an operator watching every decision costs each call.
//!
//! With `--pending-only` the operator subscribes to held calls only, not every decision.
//!
//! Every measured connect must succeed, the ASKED listener must see nothing, and the broker's
//! audit log must show each held call held and then ended "gone".

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::args;
use crate::own_broker::{poll_until, OwnBroker, Process, TempDir, SETTLE_LIMIT};
use crate::stats::{self, ratio, Summary};
use crate::{
    canary::Canary, process::join, process::reader, process::timeout_for, report::Machine, sys,
};

/// The holder's sandbox name given to `netjail run --name`, as `netjail status` shows it.
const HOLDER_NAME: &str = "nj-bench-holder";

/// Entry point of `nj-bench held`.
pub fn main(args: args::HeldArgs) -> Result<bool, String> {
    run(&options(args)?)
}

/// `--child hold PORT N [LIMIT_SECS]`: N threads each make one blocking `connect()` to
/// `127.0.0.1:PORT` (confined by an `ask` rule, each is held by the broker). When they have
/// all returned, prints `{"mode":"hold","ok":..,"errors":{..}}`. `alarm(LIMIT_SECS)` (default
/// 600) bounds the process, which is normally ended by a signal long before.
pub fn hold_child(port: u16, n: usize, limit_secs: u32) -> Result<(), String> {
    sys::alarm(limit_secs);
    let sin = sys::loopback4(port);
    let threads = (0..n)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("hold-{i}"))
                .spawn(move || -> Result<(), sys::Errno> {
                    let fd = sys::tcp4_socket()?;
                    sys::connect4(&fd, &sin)
                })
                .map_err(|e| format!("thread {i}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (mut ok, mut errors) = (0usize, BTreeMap::<String, usize>::new());
    for t in threads {
        match t.join() {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => *errors.entry(e.to_string()).or_default() += 1,
            Err(_) => *errors.entry("panic".into()).or_default() += 1,
        }
    }
    let line = serde_json::json!({ "mode": "hold", "ok": ok, "errors": errors });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// What the command line asked for.
struct Options {
    counts: args::Counts,
    held: usize,
    pending_only: bool,
    unwatched: bool,
    netjail: PathBuf,
    netjaild: PathBuf,
}

/// The options checked, the binaries found.
fn options(args: args::HeldArgs) -> Result<Options, String> {
    args.counts.check()?;
    if args.held == 0 {
        return Err("--held must be at least 1".into());
    }
    Ok(Options {
        counts: args.counts,
        held: args.held,
        pending_only: args.pending_only,
        unwatched: args.unwatched,
        netjail: args.netjail.binary()?,
        netjaild: args.netjaild.binary()?,
    })
}

/// The variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Nothing held; the operator watching.
    Idle,
    /// Another sandbox has calls held; the operator watching.
    Held,
    /// Nothing held and nobody watching (`--unwatched`).
    Unwatched,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Idle, Variant::Held, Variant::Unwatched];

    fn key(self) -> &'static str {
        match self {
            Variant::Idle => "idle",
            Variant::Held => "held",
            Variant::Unwatched => "unwatched",
        }
    }

    fn index(self) -> usize {
        match self {
            Variant::Idle => 0,
            Variant::Held => 1,
            Variant::Unwatched => 2,
        }
    }
}

/// The broker's state as `netjail status --json` reports it.
struct Status {
    operators: u64,
    pending: u64,
    /// Calls held per sandbox name.
    by_name: BTreeMap<String, u64>,
}

impl Status {
    fn of(&self, name: &str) -> u64 {
        self.by_name.get(name).copied().unwrap_or(0)
    }
}

/// Everything the rounds need.
struct Bench<'a> {
    o: &'a Options,
    own: OwnBroker,
    allowed: Canary,
    asked: Canary,
}

impl Bench<'_> {
    /// `netjail status --json`, parsed.
    fn status(&self) -> Result<Status, String> {
        let (status, stdout, stderr) = self.own.status_json()?;
        if !status.success() {
            return Err(format!(
                "netjail status ended with {status}: {}",
                stderr.trim()
            ));
        }
        let lines: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        let broker = lines
            .iter()
            .find(|v| v["kind"] == "broker")
            .ok_or_else(|| format!("netjail status: no broker line in {stdout:?}"))?;
        let field = |name: &str| {
            broker[name]
                .as_u64()
                .ok_or_else(|| format!("netjail status: no `{name}` in {broker}"))
        };
        let mut by_name = BTreeMap::new();
        for s in lines.iter().filter(|v| v["kind"] == "sandbox") {
            let name = s["name"].as_str().unwrap_or("?").to_owned();
            *by_name.entry(name).or_default() += s["pending"].as_u64().unwrap_or(0);
        }
        Ok(Status {
            operators: field("operators")?,
            pending: field("pending")?,
            by_name,
        })
    }

    /// Polls `status` (every 20 ms, at most [`SETTLE_LIMIT`]) until `done` holds; returns it.
    fn wait_status(
        &self,
        what: &str,
        mut done: impl FnMut(&Status) -> bool,
    ) -> Result<Status, String> {
        poll_until(
            SETTLE_LIMIT,
            || self.status(),
            |s| done(s),
            |s| {
                format!(
                    "{what}: not within {SETTLE_LIMIT:?} (operators {}, pending {}, by sandbox {:?})",
                    s.operators, s.pending, s.by_name
                )
            },
        )
    }

    /// Starts the operator, `netjail watch --json [--pending-only]` (output to /dev/null), and
    /// waits until the broker counts it.
    fn start_watcher(&self) -> Result<Process, String> {
        let words: &[&str] = if self.o.pending_only {
            &["watch", "--json", "--pending-only"]
        } else {
            &["watch", "--json"]
        };
        let mut watch = self.own.control_command(words);
        watch
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut watcher = Process::spawn("netjail watch", &mut watch)?;
        self.wait_status("an operator watching", |s| {
            s.operators >= 1 || watcher.check_alive().is_err()
        })?;
        watcher.check_alive()?;
        Ok(watcher)
    }

    /// One measured child making `count` timed connects to ALLOWED; all must succeed.
    fn measure(&self, variant: Variant, count: usize) -> Result<Vec<u64>, String> {
        self.own.measure_connect(
            variant.key(),
            self.allowed.port,
            count,
            self.o.counts.warmup,
        )
    }

    /// The `held` variant of one round: start the holder, wait for its calls to be held,
    /// measure, check they still are, end the holder and wait until nothing is held.
    fn measure_held(&self, count: usize, round: usize) -> Result<(Vec<u64>, HeldCheck), String> {
        let n = self.o.held;
        let limit = timeout_for(count + self.o.counts.warmup) + SETTLE_LIMIT * 3;
        let args = vec![
            "hold".to_owned(),
            self.asked.port.to_string(),
            n.to_string(),
            limit.as_secs().to_string(),
        ];
        let mut cmd = self.own.confined(HOLDER_NAME, &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut holder = Process::spawn("the holder", &mut cmd)?;
        let out = reader(holder.child.as_mut().and_then(|c| c.stdout.take()));
        let err = reader(holder.child.as_mut().and_then(|c| c.stderr.take()));
        let started = Instant::now();
        let n64 = n as u64;
        let outcome = (|| {
            let waited = self.wait_status(
                &format!("{n} calls held (the broker holds at most 16 per sandbox)"),
                |s| s.pending >= n64 || holder.check_alive().is_err(),
            )?;
            holder.check_alive()?;
            if waited.pending != n64 || waited.of(HOLDER_NAME) != n64 {
                return Err(format!(
                    "expected {n} calls held, all the holder's; status says {} held, by sandbox {:?} (the broker holds at most 16 per sandbox)",
                    waited.pending, waited.by_name
                ));
            }
            let settle_ms = started.elapsed().as_secs_f64() * 1000.0;
            let lat = self.measure(Variant::Held, count)?;
            let after = self.status()?;
            holder.check_alive()?;
            Ok((lat, waited.of(HOLDER_NAME), after, settle_ms))
        })();
        holder.stop();
        let holder_out = join(out);
        let holder_err = join(err);
        let (lat, before, after, settle_ms) = outcome.map_err(|e| {
            format!(
                "round {}, held: {e}\n--- the holder's stdout ---\n{}\n--- its stderr ---\n{}",
                round + 1,
                holder_out.trim(),
                holder_err.trim()
            )
        })?;
        let released = Instant::now();
        self.wait_status("the held calls released", |s| s.pending == 0)?;
        let release_ms = released.elapsed().as_secs_f64() * 1000.0;
        Ok((
            lat,
            HeldCheck {
                before,
                after: after.pending,
                after_holder: after.of(HOLDER_NAME),
                settle_ms,
                release_ms,
            },
        ))
    }
}

/// What `status` said around one `held` measurement.
struct HeldCheck {
    /// Calls held (all the holder's) just before.
    before: u64,
    /// Calls held in all just after.
    after: u64,
    /// Of which the holder's.
    after_holder: u64,
    /// From starting the holder to `status` showing its calls held.
    settle_ms: f64,
    /// From the holder's end to `status` showing nothing held.
    release_ms: f64,
}

/// The broker's audit events (fields nested under `fields` lifted up).
fn audit_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|mut v| {
            let obj = v.as_object_mut()?;
            if let Some(Value::Object(fields)) = obj.remove("fields") {
                for (k, val) in fields {
                    obj.entry(k).or_insert(val);
                }
            }
            (obj.get("target").and_then(Value::as_str) == Some("netjail::audit")).then_some(v)
        })
        .collect()
}

/// The broker's audit log, counted: allowed connects to the allowed port, calls held, and how
/// held calls ended.
struct Audit {
    allowed_decisions: u64,
    held_events: u64,
    ended: BTreeMap<String, u64>,
}

impl Audit {
    fn read(bench: &Bench<'_>) -> Audit {
        let events = audit_events(&bench.own.log());
        let allowed_endpoint = format!("tcp://127.0.0.1:{}", bench.allowed.port);
        let allowed_decisions = events
            .iter()
            .filter(|e| e["decision"] == "allow" && e["endpoint"] == allowed_endpoint.as_str())
            .count() as u64;
        let held_events = events
            .iter()
            .filter(|e| e["message"] == "call held for operators")
            .count() as u64;
        let mut ended: BTreeMap<String, u64> = BTreeMap::new();
        for e in events.iter().filter(|e| e["message"] == "held call ended") {
            *ended
                .entry(e["outcome"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        Audit {
            allowed_decisions,
            held_events,
            ended,
        }
    }

    /// The report's line: every held call was held, then ended with its caller gone.
    fn print(&self, o: &Options) {
        let Audit {
            allowed_decisions,
            held_events,
            ended,
        } = self;
        let expected_held = (o.counts.rounds * o.held) as u64;
        println!(
            "broker log                       {allowed_decisions} allowed connects to the allowed port; {held_events} calls held (expected {expected_held}), ended: {ended:?}"
        );
    }
}

/// Prints what the listeners accepted: every measured connection reached the allowed
/// listener, nothing reached the asked one; returns (accepted, expected, leaked).
fn check_listeners(bench: &Bench<'_>, variants: usize) -> (u64, u64, u64) {
    let expected = variants as u64 * bench.o.counts.calls_per_variant();
    let seen = bench.allowed.wait_for(expected, Duration::from_secs(2));
    let leaked = bench.asked.accepted();
    println!(
        "listeners                        allowed port accepted {seen} of {expected}; asked port accepted {leaked} (must be 0)"
    );
    (seen, expected, leaked)
}

/// The bench's own broker under a policy that allows one listener and asks for the other.
fn setup(o: &Options) -> Result<Bench<'_>, String> {
    let exe = crate::process::this_exe()?;
    let dir = TempDir::new("held")?;
    let allowed = Canary::start()?;
    let asked = Canary::start()?;
    let policy = format!(
        "name = \"bench-held\"\ndefault = \"deny\"\nask_timeout = \"10m\"\n\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        allowed.port, asked.port
    );
    let own = OwnBroker::start(dir, &policy, &o.netjail, &o.netjaild, exe)?;
    Ok(Bench {
        o,
        own,
        allowed,
        asked,
    })
}

/// The report's header.
fn print_plan(bench: &Bench<'_>, machine: &Machine, watch_cmd: &str, per_round: &[usize]) {
    let o = bench.o;
    println!("nj-bench held: allowed connect() latency in one sandbox while another has calls held for an operator");
    machine.print_header();
    println!("netjail  {}", o.netjail.display());
    println!(
        "broker   {} (its own: --socket/--control/--overlay in {}, log --log-format json to a file), one `{watch_cmd}` operator",
        o.netjaild.display(),
        bench.own.dir.0.display()
    );
    crate::report::print_plan(&o.counts, per_round, ";");
    println!(
        "         held: a second sandbox keeps {} connect()s to the asked port held (ask_timeout 10m)",
        o.held
    );
    if o.unwatched {
        println!("         unwatched: nothing held and the operator stopped (started again after)");
    }
    println!(
        "ports    allowed 127.0.0.1:{}, asked 127.0.0.1:{}",
        bench.allowed.port, bench.asked.port
    );
}

/// What the rounds measured: per variant its rounds' latencies, and the held calls of each
/// round of `held`.
struct Rounds {
    samples: Vec<Vec<Vec<u64>>>,
    checks: Vec<HeldCheck>,
}

/// Runs every variant in every round, in rotating order; the operator `watcher` watches
/// throughout (stopped only for `unwatched`, and at the end).
fn measure_rounds(
    bench: &mut Bench<'_>,
    mut watcher: Process,
    variants: &[Variant],
    per_round: &[usize],
    started: Instant,
) -> Result<Rounds, String> {
    let mut samples: Vec<Vec<Vec<u64>>> = vec![Vec::new(); Variant::ALL.len()];
    let mut checks: Vec<HeldCheck> = Vec::new();
    for (round, &count) in per_round.iter().enumerate() {
        for variant in crate::report::rotation(variants, round) {
            watcher.check_alive()?;
            bench.own.check_alive()?;
            let lat = match variant {
                Variant::Idle => {
                    let s = bench.status()?;
                    if s.pending != 0 {
                        return Err(format!(
                            "round {}, idle: {} calls held before measuring",
                            round + 1,
                            s.pending
                        ));
                    }
                    bench.measure(variant, count)?
                }
                Variant::Held => {
                    let (lat, check) = bench.measure_held(count, round)?;
                    checks.push(check);
                    lat
                }
                Variant::Unwatched => {
                    watcher.stop();
                    bench.wait_status("nobody watching", |s| s.operators == 0)?;
                    let lat = bench.measure(variant, count)?;
                    watcher = bench.start_watcher()?;
                    lat
                }
            };
            samples[variant.index()].push(lat);
        }
        crate::report::print_round_done(round, bench.o.counts.rounds, started);
    }
    watcher.stop();
    Ok(Rounds { samples, checks })
}

/// The ratios the report gives.
struct Ratios {
    r_med: f64,
    r_p99: f64,
    per_round_ratio: Vec<f64>,
    watched_over_unwatched: Option<(f64, f64)>,
}

/// Prints the table, the ratios held / idle (and watched / unwatched) and the held calls of
/// each round.
fn print_figures(
    o: &Options,
    summaries: &[Summary],
    variants: &[Variant],
    checks: &[HeldCheck],
    watch_cmd: &str,
) -> Ratios {
    let (idle, held) = (
        &summaries[Variant::Idle.index()],
        &summaries[Variant::Held.index()],
    );
    println!();
    println!("{}", Summary::table_header(22));
    for &v in variants {
        let label = match v {
            Variant::Held => format!("held ({} held)", o.held),
            Variant::Unwatched => "idle, nobody watching".to_owned(),
            Variant::Idle => "idle".to_owned(),
        };
        let x = &summaries[v.index()];
        println!("{}", x.table_row(&label, 22));
    }
    let r_med = ratio(held.median_ns, idle.median_ns);
    let r_p99 = ratio(held.p99_ns, idle.p99_ns);
    let per_round_ratio: Vec<f64> = idle
        .round_medians_ns
        .iter()
        .zip(&held.round_medians_ns)
        .map(|(&i, &h)| ratio(h, i))
        .collect();
    let (lo, hi) = per_round_ratio
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
            (lo.min(r), hi.max(r))
        });
    println!();
    println!("held / idle                      median {r_med:.2}x   p99 {r_p99:.2}x");
    println!(
        "held / idle, per round medians   {} (range {lo:.2}..{hi:.2})",
        per_round_ratio
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let unwatched = &summaries[Variant::Unwatched.index()];
    let watched_over_unwatched = o.unwatched.then(|| {
        (
            ratio(idle.median_ns, unwatched.median_ns),
            ratio(idle.p99_ns, unwatched.p99_ns),
        )
    });
    if let Some((m, p)) = watched_over_unwatched {
        println!(
            "idle / idle, nobody watching     median {m:.2}x   p99 {p:.2}x   (what the operator's `{watch_cmd}` costs)"
        );
    }
    print_checks(checks);
    for &v in variants {
        if let Some(note) = summaries[v.index()].spread_note(v.key(), "a noisy run") {
            println!("{note}");
        }
    }
    Ratios {
        r_med,
        r_p99,
        per_round_ratio,
        watched_over_unwatched,
    }
}

/// The held calls of each round: before / after, and how fast they settled and were released.
fn print_checks(checks: &[HeldCheck]) {
    println!(
        "held calls                       per round, before / after the measurement: {}",
        checks
            .iter()
            .map(|c| format!("{}/{}", c.before, c.after))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "                                 held within {} ms of the holder's start; released within {} ms of its end",
        checks
            .iter()
            .map(|c| format!("{:.0}", c.settle_ms))
            .collect::<Vec<_>>()
            .join(", "),
        checks
            .iter()
            .map(|c| format!("{:.0}", c.release_ms))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// What the run must have done besides its figures; prints each failure, false if any.
fn verdict(
    o: &Options,
    checks: &[HeldCheck],
    final_pending: u64,
    audit: &Audit,
    (seen, expected, leaked): (u64, u64, u64),
) -> bool {
    let expected_held = (o.counts.rounds * o.held) as u64;
    let mut ok = true;
    let mut fail = |msg: String| {
        eprintln!("nj-bench held: error: {msg}");
        ok = false;
    };
    if leaked != 0 {
        fail(format!("{leaked} connection(s) reached the asked port"));
    }
    if let Some((i, c)) = checks
        .iter()
        .enumerate()
        .find(|(_, c)| c.after != o.held as u64 || c.after_holder != o.held as u64)
    {
        fail(format!(
            "round {}: {} calls held after the measurement ({} of the holder), expected {}",
            i + 1,
            c.after,
            c.after_holder,
            o.held
        ));
    }
    if final_pending != 0 {
        fail(format!("{final_pending} calls still held at the end"));
    }
    let (held_events, ended) = (audit.held_events, &audit.ended);
    if held_events != expected_held || ended.get("gone").copied() != Some(expected_held) {
        fail(format!(
            "the broker's log shows {held_events} calls held and ends {ended:?}; expected {expected_held}, all gone"
        ));
    }
    if seen != expected {
        eprintln!(
            "nj-bench held: warning: the allowed listener accepted {seen}, expected {expected}"
        );
    }
    ok
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let mut bench = setup(o)?;

    // One operator watching, so that asks are held rather than refused at once.
    let watcher = bench.start_watcher()?;
    let watch_cmd = if o.pending_only {
        "netjail watch --json --pending-only"
    } else {
        "netjail watch --json"
    };
    let per_round = o.counts.plan();
    print_plan(&bench, &machine, watch_cmd, &per_round);

    let started = Instant::now();
    let variants: Vec<Variant> = Variant::ALL
        .into_iter()
        .filter(|&v| v != Variant::Unwatched || o.unwatched)
        .collect();
    let Rounds { samples, checks } =
        measure_rounds(&mut bench, watcher, &variants, &per_round, started)?;
    let final_status = bench.status()?;
    bench.own.stop();

    let summaries: Vec<Summary> = samples.iter().map(|r| stats::summarize(r)).collect();
    let ratios = print_figures(o, &summaries, &variants, &checks, watch_cmd);

    let (seen, expected, leaked) = check_listeners(&bench, variants.len());
    let audit = Audit::read(&bench);
    audit.print(o);
    let Audit {
        allowed_decisions,
        held_events,
        ended,
    } = &audit;
    let end_load = crate::report::print_end_load(started);

    let mut by_variant = serde_json::Map::new();
    for &v in &variants {
        by_variant.insert(v.key().to_owned(), summaries[v.index()].to_json());
    }
    let json = machine.report_json("nj-bench held", &end_load, serde_json::json!({
        "iterations": o.counts.iterations,
        "rounds": o.counts.rounds,
        "warmup": o.counts.warmup,
        "held": o.held,
        "watch": watch_cmd,
        "netjail": o.netjail.display().to_string(),
        "netjaild": o.netjaild.display().to_string(),
        "variants": by_variant,
        "ratios": {
            "held_over_idle_median": ratios.r_med,
            "held_over_idle_p99": ratios.r_p99,
            "held_over_idle_round_medians": ratios.per_round_ratio,
            "idle_over_unwatched_median": ratios.watched_over_unwatched.map(|r| r.0),
            "idle_over_unwatched_p99": ratios.watched_over_unwatched.map(|r| r.1),
        },
        "held_calls": checks.iter().map(|c| serde_json::json!({
            "before": c.before,
            "after": c.after,
            "after_holder": c.after_holder,
            "settle_ms": c.settle_ms,
            "release_ms": c.release_ms,
        })).collect::<Vec<_>>(),
        "listeners": { "allowed_accepted": seen, "allowed_expected": expected, "asked_accepted": leaked },
        "audit": { "allowed_decisions": allowed_decisions, "held": held_events, "ended": ended },
    }));
    println!("{json}");
    Ok(verdict(
        o,
        &checks,
        final_status.pending,
        &audit,
        (seen, expected, leaked),
    ))
}
