//! `nj-bench scale`: many registered sandboxes on one broker (issue 8).
//!
//! The bench starts its own `netjaild` (sockets, overlay and log in a fresh directory under
//! `/tmp`), raising its own `RLIMIT_NOFILE` first so that the broker inherits it, then:
//!
//! 1. registers N idle sandboxes (default 10,000): the bench spawns each itself with the
//!    client library (`Sandbox::builder()`, the broker's registration socket), a confined
//!    `sleep` whose listener the broker holds and serves with one receiver thread. It reads
//!    the broker's `VmRSS`, threads and open fds from `/proc` before and after: memory per
//!    sandbox is the difference over N;
//! 2. checks that the broker still answers: two more sandboxes, `nj-bench --child connect` to
//!    an allowed and to a denied loopback port (one success, one `EPERM`);
//! 3. measures the decision rate with the N sandboxes still registered: with 1, 16 and 256
//!    busy sandboxes (`--busy`), each `nj-bench --child connect PORT COUNT 0 gate` (allowed
//!    loopback connects, COUNT = `--calls` / busy), all started and registered first, then
//!    released at once (their stdin closed); the rate is the calls over the time from the
//!    release to the last child's exit. The broker's `netjail_decisions_total` (from
//!    `netjail metrics`) must have grown by at least the calls. The same number of unconfined
//!    children run the same loop for the native rate, side by side;
//! 4. kills every sandbox by pid, reaps it, and reads the broker's threads and fds again once
//!    it has retired them.

use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use netjail_client::sandbox::{BrokerRef, Sandbox, SandboxedChild};

use crate::args;
use crate::own_broker::{OwnBroker, TempDir};
use crate::stats::{self, us, Summary};
use crate::{
    canary::Canary, process::join, process::parse_report, process::reader, process::wait_bounded,
    report::Machine, sys,
};

/// Threads accepting on the busy sandboxes' listener.
const ACCEPTORS: usize = 4;

/// Their nice value: above the busy children, so that the accept queue keeps draining.
const ACCEPTOR_NICE: i32 = -10;

/// The system's `TcpExtListenOverflows` (`/proc/net/netstat`): handshakes dropped because a
/// listener's accept queue was full; each costs its client a 1 s SYN retransmission.
fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ListenOverflows")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// What the command line asked for.
struct Options {
    sandboxes: usize,
    busy: Vec<usize>,
    calls: usize,
    nofile: u64,
    idle: PathBuf,
    netjail: PathBuf,
    netjaild: PathBuf,
}

/// Entry point of `nj-bench scale`.
pub fn main(args: args::ScaleArgs) -> Result<bool, String> {
    run(&options(args)?)
}

/// `None` for `--help`.
/// The options checked, the binaries found.
fn options(args: args::ScaleArgs) -> Result<Options, String> {
    if args.busy.is_empty() || args.busy.contains(&0) {
        return Err("--busy: each level must be at least 1".into());
    }
    if let Some(&max) = args.busy.iter().max() {
        if args.calls < max {
            return Err(format!(
                "--calls must be at least the largest --busy ({max})"
            ));
        }
    }
    let o = Options {
        netjail: args.netjail.binary()?,
        netjaild: args.netjaild.binary()?,
        sandboxes: args.sandboxes,
        busy: args.busy,
        calls: args.calls,
        nofile: args.nofile,
        idle: args.idle,
    };
    if !o.idle.is_file() {
        return Err(format!("no idle program at {}", o.idle.display()));
    }
    Ok(o)
}

/// The broker process as `/proc/PID` shows it.
#[derive(Debug, Clone, Copy, Default)]
struct Footprint {
    rss_kib: u64,
    hwm_kib: u64,
    vsz_kib: u64,
    threads: u64,
    fds: u64,
}

impl Footprint {
    fn read(pid: u32) -> Footprint {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        Footprint {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            vsz_kib: field("VmSize:"),
            threads: field("Threads:"),
            fds,
        }
    }

    fn line(&self) -> String {
        format!(
            "RSS {:.1} MiB (peak {:.1} MiB), virtual {:.1} MiB, {} threads, {} fds",
            self.rss_kib as f64 / 1024.0,
            self.hwm_kib as f64 / 1024.0,
            self.vsz_kib as f64 / 1024.0,
            self.threads,
            self.fds
        )
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "rss_kib": self.rss_kib,
            "peak_rss_kib": self.hwm_kib,
            "virtual_kib": self.vsz_kib,
            "threads": self.threads,
            "fds": self.fds,
        })
    }
}

/// The "Max open files" line of `/proc/PID/limits`, as (soft, hard).
fn nofile_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .take(2)
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

/// One busy level's result.
struct Level {
    busy: usize,
    calls: usize,
    confined_secs: f64,
    native_secs: f64,
    confined_lat: Summary,
    native_lat: Summary,
    decisions: u64,
    /// `ListenOverflows` during the confined and the native run.
    overflows: (u64, u64),
}

impl Level {
    fn confined_rate(&self) -> f64 {
        self.calls as f64 / self.confined_secs
    }

    fn native_rate(&self) -> f64 {
        self.calls as f64 / self.native_secs
    }
}

/// Everything the steps need.
struct Bench {
    own: OwnBroker,
    allowed: Canary,
    denied: Canary,
}

impl Bench {
    /// `nj-bench --child connect PORT COUNT 0 [gate]` with its stdio as given.
    fn connect_command(&self, port: u16, count: usize, gate: bool) -> Command {
        let mut cmd = Command::new(&self.own.exe);
        cmd.args([
            "--child",
            "connect",
            &port.to_string(),
            &count.to_string(),
            "0",
        ]);
        if gate {
            cmd.arg("gate");
        }
        cmd.stdin(if gate { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Spawns `cmd` in a new sandbox registered with the bench's broker.
    fn sandboxed(&self, name: String, cmd: Command) -> Result<SandboxedChild, String> {
        Sandbox::builder()
            .allow_root(true)
            .policy_spec(self.own.policy.display().to_string())
            .broker(BrokerRef::Socket(self.own.socket.clone()))
            .name(name)
            .command(cmd)
            .spawn()
            .map_err(|e| e.to_string())
    }

    /// The sum of the broker's `netjail_decisions_total` counters.
    fn decisions(&self) -> Result<u64, String> {
        let (status, stdout, stderr) = self.own.control(&["metrics"], Duration::from_secs(30))?;
        if !status.success() {
            return Err(format!("netjail metrics: {status}: {}", stderr.trim()));
        }
        Ok(stdout
            .lines()
            .filter(|l| l.starts_with("netjail_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// One connect from a fresh sandbox to `port`: `Ok(errno)`, 0 for success.
    fn one_connect(&self, name: &str, port: u16) -> Result<i32, String> {
        let child = self.sandboxed(name.into(), self.connect_command(port, 1, false))?;
        let out = wait_bounded(child.into_child(), Duration::from_secs(30), false)?;
        if !out.0.success() {
            return Err(format!("{name}: {}: {}", out.0, out.2.trim()));
        }
        let report = parse_report(&out.1)?;
        Ok(match report.errors.first() {
            Some(&(errno, _)) => errno,
            None if report.ok == 1 => 0,
            None => -1,
        })
    }

    /// `busy` children (sandboxed or not) making `calls` connects in all, released at once;
    /// returns the seconds from the release to the last exit and every call's latency.
    fn run_level(
        &self,
        busy: usize,
        calls: usize,
        confined: bool,
    ) -> Result<(f64, Vec<u64>), String> {
        let per = calls / busy;
        let mut children: Vec<Child> = Vec::with_capacity(busy);
        let mut gates: Vec<ChildStdin> = Vec::with_capacity(busy);
        let mut outs = Vec::with_capacity(busy);
        let what = if confined { "confined" } else { "native" };
        let spawn = |i: usize| -> Result<Child, String> {
            let cmd = self.connect_command(self.allowed.port, per, true);
            if confined {
                Ok(self
                    .sandboxed(format!("busy-{busy}-{i}"), cmd)?
                    .into_child())
            } else {
                let mut cmd = cmd;
                cmd.spawn().map_err(|e| format!("spawn: {e}"))
            }
        };
        let result = (|| -> Result<(f64, Vec<u64>), String> {
            for i in 0..busy {
                let mut child = spawn(i).map_err(|e| format!("{what} busy child {i}: {e}"))?;
                gates.extend(child.stdin.take());
                outs.push((reader(child.stdout.take()), reader(child.stderr.take())));
                children.push(child);
            }
            let started = Instant::now();
            drop(std::mem::take(&mut gates));
            let deadline = started + Duration::from_secs(120) + Duration::from_millis(calls as u64);
            let statuses = wait_all(&mut children, deadline)
                .map_err(|e| format!("{what}, {busy} busy: {e}"))?;
            let secs = started.elapsed().as_secs_f64();
            let mut lat = Vec::with_capacity(per * busy);
            for (i, (status, (out, err))) in statuses.into_iter().zip(outs.drain(..)).enumerate() {
                let (out, err) = (join(out), join(err));
                let status = status.unwrap_or_default();
                if !status.success() {
                    return Err(format!("{what} busy child {i}: {status}: {}", err.trim()));
                }
                let report =
                    parse_report(&out).map_err(|e| format!("{what} busy child {i}: {e}"))?;
                if report.ok != per {
                    return Err(format!(
                        "{what} busy child {i}: {} of {per} connects succeeded, errors (errno, count) {:?}",
                        report.ok, report.errors
                    ));
                }
                lat.extend(report.lat_ns);
            }
            Ok((secs, lat))
        })();
        // Every child ends, by pid, and is reaped, whatever happened.
        drop(gates);
        for c in &mut children {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        result
    }
}

/// Waits for every child of `children` to exit, polling, until `deadline`; their statuses.
fn wait_all(children: &mut [Child], deadline: Instant) -> Result<Vec<Option<ExitStatus>>, String> {
    let mut statuses = vec![None; children.len()];
    let mut left = children.len();
    while left > 0 {
        for (i, c) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                if let Some(s) = c.try_wait().map_err(|e| format!("wait: {e}"))? {
                    statuses[i] = Some(s);
                    left -= 1;
                }
            }
        }
        if left > 0 {
            if Instant::now() > deadline {
                return Err(format!("{left} children still running at the deadline"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    Ok(statuses)
}

/// The report's header: the machine, the broker, the limits and the idle program.
fn print_plan(o: &Options, machine: &Machine, bench: &Bench, nofile: &sys::NofileChange) {
    let pid = bench.own.pid();
    let ((soft, hard), (now_soft, now_hard)) = (nofile.before, nofile.after);
    println!(
        "nj-bench scale: {} sandboxes on one broker; decision rate with {:?} busy sandboxes",
        o.sandboxes, o.busy
    );
    machine.print_header();
    println!(
        "broker   {} pid {pid} (its own: --socket/--control/--overlay in {}, log --log-format json to a file)",
        o.netjaild.display(),
        bench.own.dir.0.display()
    );
    println!(
        "limits   RLIMIT_NOFILE {soft}/{hard} raised to {now_soft}/{now_hard} (asked {}) for this bench and its broker (broker: {}); pid_max {}, threads-max {}",
        o.nofile,
        nofile_of(pid),
        std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap_or_default().trim(),
        std::fs::read_to_string("/proc/sys/kernel/threads-max").unwrap_or_default().trim()
    );
    println!(
        "idle     `{} 900` in each sandbox, spawned by this bench with Sandbox::builder()",
        o.idle.display()
    );
}

/// The idle sandboxes registered, and what they cost the broker.
struct Registered {
    idle: Vec<SandboxedChild>,
    error: Option<String>,
    secs: f64,
    after: Footprint,
    rss_per_kib: f64,
    threads_per: f64,
    fds_per: f64,
}

/// Registers `o.sandboxes` idle sandboxes (stopping at the first failure) and prints what
/// they cost the broker, against its footprint `before`.
fn register(o: &Options, bench: &mut Bench, before: &Footprint) -> Registered {
    let pid = bench.own.pid();
    let mut idle: Vec<SandboxedChild> = Vec::with_capacity(o.sandboxes);
    let mut register_error = None;
    let t0 = Instant::now();
    for i in 0..o.sandboxes {
        let mut cmd = Command::new(&o.idle);
        cmd.arg("900")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match bench.sandboxed(format!("idle-{i}"), cmd) {
            Ok(c) => idle.push(c),
            Err(e) => {
                register_error = Some(format!("sandbox {} of {}: {e}", i + 1, o.sandboxes));
                break;
            }
        }
        if (i + 1) % 1000 == 0 {
            eprintln!(
                "registered {} ({:.1} s): {}",
                i + 1,
                t0.elapsed().as_secs_f64(),
                Footprint::read(pid).line()
            );
        }
        if bench.own.check_alive().is_err() {
            register_error = Some(format!("the broker died after {} sandboxes", i + 1));
            break;
        }
    }
    let register_secs = t0.elapsed().as_secs_f64();
    let n = idle.len();
    // Let the receiver threads settle before reading.
    std::thread::sleep(Duration::from_millis(500));
    let after = Footprint::read(pid);
    let per = |a: u64, b: u64| {
        if n == 0 {
            f64::NAN
        } else {
            (a as f64 - b as f64) / n as f64
        }
    };
    let rss_per_kib = per(after.rss_kib, before.rss_kib);
    let threads_per = per(after.threads, before.threads);
    let fds_per = per(after.fds, before.fds);
    println!(
        "register {n} of {} sandboxes in {register_secs:.1} s ({:.0} per second){}",
        o.sandboxes,
        n as f64 / register_secs,
        register_error
            .as_ref()
            .map(|e| format!("; FAILED: {e}"))
            .unwrap_or_default()
    );
    println!("after    {}", after.line());
    println!(
        "per sandbox  {rss_per_kib:.1} KiB RSS, {:.1} KiB virtual, {threads_per:.2} threads, {fds_per:.2} fds",
        per(after.vsz_kib, before.vsz_kib)
    );
    Registered {
        idle,
        error: register_error,
        secs: register_secs,
        after,
        rss_per_kib,
        threads_per,
        fds_per,
    }
}

/// What one allowed and one denied connect got with every sandbox registered.
struct Answers {
    allowed_errno: i32,
    denied_errno: i32,
    ok: bool,
    errors: Vec<String>,
}

/// Does the broker still answer with `n` sandboxes registered? One allowed and one denied
/// connect, each in a sandbox of its own.
fn probe_answers(bench: &Bench, n: usize) -> Answers {
    // A probe that cannot even start (the broker refusing the registration) counts as -1.
    let mut probe_errors: Vec<String> = Vec::new();
    let mut probe = |name: &str, port: u16| match bench.one_connect(name, port) {
        Ok(errno) => errno,
        Err(e) => {
            probe_errors.push(format!("{name}: {e}"));
            -1
        }
    };
    let allowed_errno = probe("probe-allowed", bench.allowed.port);
    let denied_errno = probe("probe-denied", bench.denied.port);
    for e in &probe_errors {
        println!("answers  {e}");
    }
    let answers = allowed_errno == 0 && denied_errno == libc::EPERM && bench.denied.accepted() == 0;
    println!(
        "answers  with {n} registered: allowed connect {}, denied connect {} ({})",
        if allowed_errno == 0 {
            "succeeded".to_owned()
        } else {
            format!("failed, errno {allowed_errno}")
        },
        if denied_errno == libc::EPERM {
            "EPERM".to_owned()
        } else {
            format!("errno {denied_errno}")
        },
        if answers {
            "as the policy says"
        } else {
            "NOT as the policy says"
        }
    );
    Answers {
        allowed_errno,
        denied_errno,
        ok: answers,
        errors: probe_errors,
    }
}

/// One busy level: `busy` sandboxes then as many unconfined processes making `calls`
/// connects in all; the broker's decisions and the listen overflows counted around each.
fn measure_level(bench: &Bench, busy: usize, calls: usize) -> Result<Level, String> {
    let d0 = bench.decisions()?;
    let o0 = listen_overflows();
    let (confined_secs, confined_lat) = bench.run_level(busy, calls, true)?;
    let o1 = listen_overflows();
    let d1 = bench.decisions()?;
    let (native_secs, native_lat) = bench.run_level(busy, calls, false)?;
    let o2 = listen_overflows();
    Ok(Level {
        busy,
        calls,
        confined_secs,
        native_secs,
        confined_lat: stats::summarize(&[confined_lat]),
        native_lat: stats::summarize(&[native_lat]),
        decisions: d1.saturating_sub(d0),
        overflows: (o1.saturating_sub(o0), o2.saturating_sub(o1)),
    })
}

/// The decision rate at each busy level of `o.busy`, until one fails (its error).
fn measure_levels(
    o: &Options,
    bench: &mut Bench,
    started: Instant,
) -> Result<(Vec<Level>, Option<String>), String> {
    let mut levels: Vec<Level> = Vec::new();
    let mut level_error = None;
    for &busy in &o.busy {
        let calls = o.calls / busy * busy;
        match measure_level(bench, busy, calls) {
            Ok(l) => {
                eprintln!(
                    "busy {busy}: {:.0} decisions/s confined, {:.0} connects/s native ({:.1} s)",
                    l.confined_rate(),
                    l.native_rate(),
                    started.elapsed().as_secs_f64()
                );
                levels.push(l);
            }
            Err(e) => {
                level_error = Some(format!("{busy} busy: {e}"));
                break;
            }
        }
        bench.own.check_alive()?;
    }
    Ok((levels, level_error))
}

/// The idle sandboxes gone, and the broker after it retired them.
struct Released {
    reaped: usize,
    kill_secs: f64,
    released: Footprint,
    release_secs: f64,
}

/// Kills every idle sandbox by pid and reaps it; waits (up to a minute) for the broker's
/// threads to come back near `before`.
fn release(idle: Vec<SandboxedChild>, pid: u32, before: &Footprint) -> Released {
    let t1 = Instant::now();
    let mut reaped = 0usize;
    for mut c in idle {
        let _ = c.kill();
        if c.wait().is_ok() {
            reaped += 1;
        }
    }
    let kill_secs = t1.elapsed().as_secs_f64();
    let settle = Instant::now();
    let mut released = Footprint::read(pid);
    while released.threads > before.threads + 16 && settle.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        released = Footprint::read(pid);
    }
    let release_secs = settle.elapsed().as_secs_f64();
    Released {
        reaped,
        kill_secs,
        released,
        release_secs,
    }
}

/// The table of busy levels, the decisions the broker counted and the listen overflows.
fn print_levels(levels: &[Level]) {
    println!();
    println!(
        "{:>5} {:>7} {:>13} {:>13} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "busy",
        "calls",
        "decisions/s",
        "native /s",
        "native/x",
        "conf p50µs",
        "conf p99µs",
        "nat p50µs",
        "nat p99µs"
    );
    for l in levels {
        println!(
            "{:>5} {:>7} {:>13.0} {:>13.0} {:>8.2} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            l.busy,
            l.calls,
            l.confined_rate(),
            l.native_rate(),
            l.native_rate() / l.confined_rate(),
            us(l.confined_lat.median_ns),
            us(l.confined_lat.p99_ns),
            us(l.native_lat.median_ns),
            us(l.native_lat.p99_ns)
        );
    }
    println!(
        "decisions counted by the broker (netjail_decisions_total) per level: {}",
        levels
            .iter()
            .map(|l| format!("{}: {} of {} calls", l.busy, l.decisions, l.calls))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "listen overflows (system-wide TcpExtListenOverflows; {ACCEPTORS} accept threads at nice {ACCEPTOR_NICE}) per level, confined/native: {}",
        levels
            .iter()
            .map(|l| format!("{}: {}/{}", l.busy, l.overflows.0, l.overflows.1))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// What the run must have done besides its figures; prints each failure, false if any.
fn verdict(
    registered: &Registered,
    n: usize,
    answers: &Answers,
    (levels, level_error): (&[Level], Option<String>),
    reaped: usize,
) -> bool {
    let (allowed_errno, denied_errno) = (answers.allowed_errno, answers.denied_errno);
    let mut ok = true;
    let mut fail = |msg: String| {
        eprintln!("nj-bench scale: error: {msg}");
        ok = false;
    };
    if let Some(e) = &registered.error {
        fail(format!("registering: {e}"));
    }
    if !answers.ok {
        fail(format!(
            "with {n} sandboxes the broker answered allowed: errno {allowed_errno}, denied: errno {denied_errno}"
        ));
    }
    if let Some(e) = level_error {
        fail(e);
    }
    if let Some(l) = levels.iter().find(|l| l.decisions < l.calls as u64) {
        fail(format!(
            "{} busy: the broker counted {} decisions for {} calls",
            l.busy, l.decisions, l.calls
        ));
    }
    if reaped != n {
        fail(format!("{} idle sandboxes were not reaped", n - reaped));
    }
    ok
}

/// `RLIMIT_NOFILE` raised, then the bench's own broker under a policy that allows one
/// listener only.
fn setup(o: &Options) -> Result<(Bench, sys::NofileChange), String> {
    let exe = crate::process::this_exe()?;
    let nofile = sys::set_nofile(o.nofile)
        .map_err(|e| format!("setrlimit(RLIMIT_NOFILE, {}): errno {e}", o.nofile))?;
    let dir = TempDir::new("scale")?;
    let allowed = Canary::start_with(ACCEPTORS, Some(ACCEPTOR_NICE))?;
    let denied = Canary::start()?;
    let policy = crate::policy::allow_one_port("bench-scale", allowed.port);
    let own = OwnBroker::start(dir, &policy, &o.netjail, &o.netjaild, exe)?;
    let bench = Bench {
        own,
        allowed,
        denied,
    };
    Ok((bench, nofile))
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let (mut bench, nofile) = setup(o)?;
    let pid = bench.own.pid();
    print_plan(o, &machine, &bench, &nofile);

    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let before = Footprint::read(pid);
    println!("before   {}", before.line());
    let mut registered = register(o, &mut bench, &before);
    let n = registered.idle.len();
    let answers = probe_answers(&bench, n);
    let (levels, level_error) = measure_levels(o, &mut bench, started)?;
    let during = Footprint::read(pid);
    let Released {
        reaped,
        kill_secs,
        released,
        release_secs,
    } = release(std::mem::take(&mut registered.idle), pid, &before);
    bench.own.check_alive()?;
    bench.own.stop();

    print_levels(&levels);
    println!("during   {} (after the busy levels)", during.line());
    println!(
        "release  {reaped} of {n} idle sandboxes killed and reaped in {kill_secs:.1} s; {:.1} s later the broker: {}",
        release_secs,
        released.line()
    );
    let end_load = crate::report::print_end_load(started);

    let json = machine.report_json("nj-bench scale", &end_load, serde_json::json!({
        "nofile": nofile.after.0,
        "sandboxes_asked": o.sandboxes,
        "sandboxes_registered": n,
        "register_error": registered.error,
        "register_secs": registered.secs,
        "broker_before": before.to_json(),
        "broker_after": registered.after.to_json(),
        "broker_during_busy": during.to_json(),
        "broker_released": released.to_json(),
        "per_sandbox": { "rss_kib": registered.rss_per_kib, "threads": registered.threads_per, "fds": registered.fds_per },
        "answers": { "allowed_errno": answers.allowed_errno, "denied_errno": answers.denied_errno, "ok": answers.ok, "errors": answers.errors },
        "levels": levels.iter().map(|l| serde_json::json!({
            "busy": l.busy,
            "calls": l.calls,
            "decisions_per_sec": l.confined_rate(),
            "native_per_sec": l.native_rate(),
            "confined_secs": l.confined_secs,
            "native_secs": l.native_secs,
            "broker_decisions": l.decisions,
            "listen_overflows_confined": l.overflows.0,
            "listen_overflows_native": l.overflows.1,
            "confined": l.confined_lat.to_json(),
            "native": l.native_lat.to_json(),
        })).collect::<Vec<_>>(),
        "level_error": level_error,
        "reaped": reaped,
        "kill_secs": kill_secs,
    }));
    println!("{json}");
    Ok(verdict(
        &registered,
        n,
        &answers,
        (&levels, level_error),
        reaped,
    ))
}
