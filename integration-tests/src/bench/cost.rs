//! `nj-bench cost`: the cost rule (invariant 5) measured. Sending and receiving on a connected
//! socket without a destination must never cost a broker round trip, so a confined program
//! moves data about as fast as an unconfined one.
//!
//! Three long-lived workers (`nj-bench --child cost serve`, see [`super::cost_child`]) take
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
//! path of each call through it counted ([`super::bpf`]). `--control` replaces the confined
//! worker by a second native one: an A/A run, the resolution of the bench.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{args, DEFAULT_BROKER};
use super::{
    bpf, cost_child, join, kill_bounded, loadavg, reader, run_bounded, sys, Machine, PolicyFile,
};

const USAGE: &str = "\
usage: nj-bench cost [--pairs N] [--tcp-mib M] [--chunk BYTES] [--rtt N] [--stream N]
                     [--batches N] [--batch N] [--pin CLIENT,PEER | --no-pin]
                     [--only TEST,...] [--respawn K] [--third F] [--control] [--netjail PATH]

The cost rule: a native and a confined worker (netjail run, embedded broker) stay up side by
side and take turns, measurement by measurement, in N pairs (order alternating); the ratio
confined/native is taken per pair and the table gives its median over the pairs.

  (a) tcp-send    the worker send()s M MiB in CHUNK-byte calls to a loopback peer
      tcp-recv    the worker recv()s M MiB from the peer
  (b) udp-rtt     64-byte send()/recv() ping-pong with an echo peer on a connected UDP socket
      udp-stream  64-byte send()s as fast as possible on a connected UDP socket
  (c) syscalls    ns per call of getppid, 1-byte pipe write+read, 64-byte UDP send(), also
  every test also runs in a third worker, native plus a 1-instruction allow-all filter
  of its own (seccomp on, no netjail): what having any filter at all costs
  and once at the end: sendmsg() on a connected UDP socket (always brokered: the known cost)

  --pairs N        measurements per test and variant (default 15)
  --tcp-mib M      MiB per TCP transfer (default 512; the first 5% are not timed)
  --chunk BYTES    bytes per send()/recv() call of the TCP tests (default 65536)
  --rtt N          timed UDP round trips per measurement (default 10000, after 1000 untimed)
  --stream N       timed UDP sends per measurement (default 100000, after 5000 untimed)
  --batches N      timed batches per syscall kind (default 50), --batch N calls each (1000)
  --third F        the third worker's own filter: allow-all (default) or sendto-only, the
                   least filter that keeps send() in the kernel (9 instructions on its path)
  --respawn K      fresh worker processes every K pairs (default 5; 0 = never), so that
                   what one process happens to get (memory placement...) does not bias a run
  --pin C,P        the measured worker on CPU C, the peers on CPU P (default 0,1 with 2+ CPUs)
  --no-pin         let the scheduler place everything
  --only LIST      run only these tests (comma-separated names above)
  --control        an A/A run: the \"confined\" worker is a second native one, so the ratios
                   show what two identical processes differ by (the resolution of the bench)
  --netjail PATH   the netjail binary (default: `netjail` next to this executable)
";

/// The tests, in the order they run within a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    TcpSend,
    TcpRecv,
    UdpRtt,
    UdpStream,
    Syscalls,
}

impl Test {
    const ALL: [Test; 5] = [
        Test::TcpSend,
        Test::TcpRecv,
        Test::UdpRtt,
        Test::UdpStream,
        Test::Syscalls,
    ];

    fn name(self) -> &'static str {
        match self {
            Test::TcpSend => "tcp-send",
            Test::TcpRecv => "tcp-recv",
            Test::UdpRtt => "udp-rtt",
            Test::UdpStream => "udp-stream",
            Test::Syscalls => "syscalls",
        }
    }
}

/// One figure of the table.
struct Metric {
    test: Test,
    /// The key in the child's JSON line.
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    /// Shown value = raw / scale.
    scale: f64,
    higher_is_better: bool,
    /// Part of the acceptance target (within 5%).
    target: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        test: Test::TcpSend,
        key: "mib_s",
        label: "(a) TCP bulk, confined sender",
        unit: "MiB/s",
        scale: 1.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::TcpRecv,
        key: "mib_s",
        label: "(a) TCP bulk, confined receiver",
        unit: "MiB/s",
        scale: 1.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::UdpRtt,
        key: "median_ns",
        label: "(b) UDP 64 B round trip, median",
        unit: "µs",
        scale: 1000.0,
        higher_is_better: false,
        target: true,
    },
    Metric {
        test: Test::UdpRtt,
        key: "p99_ns",
        label: "(b) UDP 64 B round trip, p99",
        unit: "µs",
        scale: 1000.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::UdpStream,
        key: "msgs_s",
        label: "(b) UDP 64 B one-way sends",
        unit: "k msg/s",
        scale: 1000.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::Syscalls,
        key: "getppid_ns",
        label: "(c) getppid",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::Syscalls,
        key: "pipe_ns",
        label: "(c) pipe write/read, 1 B",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::Syscalls,
        key: "send_ns",
        label: "(c) send() 64 B, connected UDP",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
];

/// The acceptance bound: |confined / native - 1| at most this, at the median over pairs.
const TARGET: f64 = 0.05;

/// What the command line asked for.
struct Options {
    pairs: usize,
    tcp_bytes: u64,
    chunk: usize,
    rtt: usize,
    stream: usize,
    batches: usize,
    batch: usize,
    /// (child CPU, peer CPU).
    pin: Option<(usize, usize)>,
    tests: Vec<Test>,
    netjail: PathBuf,
    /// A/A run: the confined worker is a second native worker.
    control: bool,
    /// Fresh worker processes every this many pairs.
    respawn: usize,
    /// The own filter of the third worker: `allow-all` or `sendto-only`.
    third: &'static str,
}

fn parse_options(args: &[String]) -> Result<Option<Options>, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        pairs: 15,
        tcp_bytes: 512 << 20,
        chunk: 64 << 10,
        rtt: 10_000,
        stream: 100_000,
        batches: 50,
        batch: 1000,
        pin: (cpus >= 2).then_some((0, 1)),
        tests: Test::ALL.to_vec(),
        netjail: PathBuf::new(),
        control: false,
        respawn: 5,
        third: "allow-all",
    };
    let mut binaries = args::Binaries::netjail_only();
    let mut opts = args::Args::new(args);
    while let Some(name) = opts.next_name() {
        if binaries.take(&name, &mut opts)? {
            continue;
        }
        match name.as_str() {
            "--pairs" => o.pairs = opts.number()?,
            "--tcp-mib" => o.tcp_bytes = (opts.number()? as u64) << 20,
            "--chunk" => o.chunk = opts.number()?,
            "--rtt" => o.rtt = opts.number()?,
            "--stream" => o.stream = opts.number()?,
            "--batches" => o.batches = opts.number()?,
            "--batch" => o.batch = opts.number()?,
            "--pin" => {
                let v = opts.value()?;
                let (c, p) = v
                    .split_once(',')
                    .ok_or_else(|| format!("--pin {v}: expected CLIENT,PEER"))?;
                let cpu = |s: &str| -> Result<usize, String> {
                    s.trim().parse().map_err(|e| format!("--pin {v}: {e}"))
                };
                o.pin = Some((cpu(c)?, cpu(p)?));
            }
            "--no-pin" => o.pin = None,
            "--control" => o.control = true,
            "--respawn" => o.respawn = opts.number()?,
            "--third" => {
                o.third = match opts.value()?.as_str() {
                    "allow-all" => "allow-all",
                    "sendto-only" => "sendto-only",
                    other => {
                        return Err(format!(
                            "--third {other}: expected allow-all or sendto-only"
                        ))
                    }
                }
            }
            "--only" => {
                let v = opts.value()?;
                o.tests = v
                    .split(',')
                    .map(|t| {
                        Test::ALL
                            .into_iter()
                            .find(|x| x.name() == t.trim())
                            .ok_or_else(|| format!("--only: unknown test `{t}`"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => return args::help_or_unknown(&name, USAGE),
        }
    }
    if o.respawn == 0 {
        o.respawn = usize::MAX;
    }
    if o.pairs == 0 || o.chunk == 0 || o.chunk > 16 << 20 || o.tcp_bytes < 1 << 20 {
        return Err("need --pairs >= 1, 0 < --chunk <= 16 MiB, --tcp-mib >= 1".into());
    }
    if o.rtt == 0 || o.stream == 0 || o.batches == 0 || o.batch == 0 {
        return Err("--rtt, --stream, --batches and --batch must be at least 1".into());
    }
    o.netjail = binaries.netjail()?;
    Ok(Some(o))
}

/// Entry point of `nj-bench cost`.
pub fn main(args: &[String]) -> Result<bool, String> {
    args::run_or_usage(parse_options(args)?, USAGE, run)
}

/// Pins the calling thread, if asked; a failure is reported once, not fatal.
fn pin_thread(cpu: Option<usize>, who: &str) {
    if let Some(cpu) = cpu {
        if let Err(e) = sys::pin_to_cpu(cpu) {
            eprintln!("nj-bench cost: cannot pin {who} to CPU {cpu}: errno {e}");
        }
    }
}

fn spawn_peer<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("{name} thread: {e}"))
}

/// The loopback peers; their threads run until this process exits.
struct Peers {
    tcp: u16,
    echo: u16,
    sink: u16,
    /// Datagrams the sink received.
    sink_count: Arc<AtomicU64>,
    blackhole: u16,
    _blackhole: UdpSocket,
}

impl Peers {
    fn start(cpu: Option<usize>) -> Result<Peers, String> {
        let bind_err = |e: std::io::Error| format!("bind 127.0.0.1:0: {e}");
        let port_err = |e: std::io::Error| format!("local address: {e}");

        let listener = TcpListener::bind("127.0.0.1:0").map_err(bind_err)?;
        let tcp = listener.local_addr().map_err(port_err)?.port();
        spawn_peer("tcp-peer", move || {
            pin_thread(cpu, "the TCP peer");
            for stream in listener.incoming().flatten() {
                let _ = serve_tcp(stream);
            }
        })?;

        let echo_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let echo = echo_socket.local_addr().map_err(port_err)?.port();
        spawn_peer("udp-echo", move || {
            pin_thread(cpu, "the UDP echo peer");
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo_socket.recv_from(&mut buf) {
                let _ = echo_socket.send_to(&buf[..n], from);
            }
        })?;

        let sink_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let sink = sink_socket.local_addr().map_err(port_err)?.port();
        let _ = sys::set_rcvbuf(&sink_socket, 4 << 20);
        let sink_count = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sink_count);
        spawn_peer("udp-sink", move || {
            pin_thread(cpu, "the UDP sink");
            let mut buf = [0u8; 2048];
            while sink_socket.recv(&mut buf).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })?;

        // Never read: its queue fills and every later datagram is dropped on arrival, so
        // the sender's cost does not depend on a receiving thread.
        let blackhole_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let blackhole = blackhole_socket.local_addr().map_err(port_err)?.port();
        let _ = sys::set_rcvbuf(&blackhole_socket, 4096);
        Ok(Peers {
            tcp,
            echo,
            sink,
            sink_count,
            blackhole,
            _blackhole: blackhole_socket,
        })
    }
}

/// One TCP request of a child (see [`cost_child::tcp_header`]).
fn serve_tcp(mut s: TcpStream) -> std::io::Result<()> {
    let mut h = [0u8; cost_child::TCP_HEADER_LEN];
    s.read_exact(&mut h)?;
    let chunk = (u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize).clamp(1, 16 << 20);
    let bytes = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    match h[0] {
        b'S' => {
            let mut buf = vec![0u8; chunk];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            s.write_all(&total.to_le_bytes())
        }
        b'R' => {
            let buf = vec![0xa5u8; chunk];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk as u64) as usize;
                s.write_all(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One native/confined pair of one test.
struct Pair {
    native: Fields,
    confined: Fields,
    /// The third worker: native with a filter of its own (`--third`, allow-all by default).
    allow_all: Fields,
}

type Fields = serde_json::Map<String, serde_json::Value>;

fn get(f: &Fields, key: &str) -> f64 {
    f.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
}

/// How long one measurement may take on a very slow day.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A long-lived child (`nj-bench --child cost serve`) that runs one measurement per line sent.
struct Worker {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    pid: Option<i64>,
    /// Measurements asked for (each connects once).
    commands: usize,
    graceful: bool,
}

impl Worker {
    fn start(label: &'static str, mut cmd: Command, graceful: bool) -> Result<Worker, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{label}: cannot start {:?}: {e}", cmd.get_program()))?;
        let stdout = child.stdout.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let mut w = Worker {
            label,
            stdin: child.stdin.take(),
            stderr: reader(child.stderr.take()),
            child,
            lines,
            pid: None,
            commands: 0,
            graceful,
        };
        let ready = w.answer(Duration::from_secs(30))?;
        w.pid = ready.get("pid").and_then(|p| p.as_i64());
        Ok(w)
    }

    /// Runs one measurement (`MODE key=value...`) and returns its fields.
    fn ask(&mut self, line: &str) -> Result<Fields, String> {
        self.commands += 1;
        let sent = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{line}").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.fail(&format!("cannot send `{line}` to it")));
        }
        self.answer(COMMAND_LIMIT)
    }

    /// The next JSON line with a `mode`; an `error` in it, silence or an exit is an error.
    fn answer(&mut self, limit: Duration) -> Result<Fields, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let Ok(serde_json::Value::Object(f)) = serde_json::from_str(&line) else {
                        continue;
                    };
                    if let Some(e) = f.get("error") {
                        return Err(self.fail(&format!("measurement failed: {e}")));
                    }
                    if f.contains_key("mode") {
                        return Ok(f);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fail(&format!("no answer within {limit:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.fail("it exited")),
            }
        }
    }

    /// Stops the worker and describes what went wrong, with its stderr and broker decisions.
    fn fail(&mut self, what: &str) -> String {
        let stderr = self.stop();
        let seen: Vec<String> = decisions(&stderr)
            .iter()
            .map(|(op, d, e)| format!("{op} {d} errno {e}"))
            .collect();
        format!(
            "{} worker: {what}; broker decisions so far: [{}]\n--- its stderr ---\n{}",
            self.label,
            seen.join(", "),
            stderr.trim()
        )
    }

    /// Closes its stdin (it exits), waits a little, kills it otherwise; returns its stderr.
    fn stop(&mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    kill_bounded(&mut self.child, self.graceful);
                    break;
                }
            }
        }
        join(self.stderr.take())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.stop();
        }
    }
}

/// The three workers that take turns.
struct Workers {
    native: Worker,
    /// Native, with a one-instruction allow-all filter of its own.
    allow_all: Worker,
    /// Under `netjail run` (a second native worker in a control run).
    confined: Worker,
}

impl Workers {
    fn start(bench: &Bench<'_>) -> Result<Workers, String> {
        let native = Worker::start("native", bench.command(&["serve"], false), false)?;
        let filter = format!("filter={}", bench.o.third);
        let allow_all_cmd = bench.command(&["serve", &filter], false);
        let allow_all = Worker::start(bench.o.third, allow_all_cmd, false)?;
        let confined = if bench.o.control {
            Worker::start("native-2", bench.command(&["serve"], true), false)?
        } else {
            Worker::start("confined", bench.command(&["serve"], true), true)?
        };
        Ok(Workers {
            native,
            allow_all,
            confined,
        })
    }

    /// Stops all three; returns how many measurements the confined one made and the broker
    /// decisions in its audit log.
    fn retire(mut self) -> (usize, Vec<Decision>) {
        let _ = self.native.stop();
        let _ = self.allow_all.stop();
        let commands = self.confined.commands;
        (commands, decisions(&self.confined.stop()))
    }
}

/// One broker decision from the audit log: (op, decision, errno).
type Decision = (String, String, i64);

/// The audit log's decision events.
fn decisions(stderr: &str) -> Vec<Decision> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "decision")
        .map(|v| {
            (
                v["op"].as_str().unwrap_or("?").to_owned(),
                v["decision"].as_str().unwrap_or("?").to_owned(),
                v["errno"].as_i64().unwrap_or(0),
            )
        })
        .collect()
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

/// Lower median (nearest rank) of finite values; NaN for none.
fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Everything the measurements need.
struct Bench<'a> {
    o: &'a Options,
    exe: PathBuf,
    peers: Peers,
    policy: PolicyFile,
}

impl Bench<'_> {
    /// The `MODE key=value...` line of `test`.
    fn command_line(&self, test: Test) -> String {
        let (o, p) = (self.o, &self.peers);
        match test {
            Test::TcpSend | Test::TcpRecv => format!(
                "{} port={} bytes={} chunk={} warmup={}",
                test.name(),
                p.tcp,
                o.tcp_bytes,
                o.chunk,
                o.tcp_bytes / 20
            ),
            Test::UdpRtt => format!(
                "udp-rtt port={} count={} warmup=1000 size=64",
                p.echo, o.rtt
            ),
            Test::UdpStream => format!(
                "udp-stream port={} count={} warmup=5000 size=64",
                p.sink, o.stream
            ),
            Test::Syscalls => format!(
                "syscalls port={} batches={} batch={}",
                p.blackhole, o.batches, o.batch
            ),
        }
    }

    /// `nj-bench --child cost ARGS... cpu=C`, natively or under `netjail run`.
    fn command(&self, args: &[&str], confined: bool) -> Command {
        let cpu = format!("cpu={}", self.o.pin.map_or(-1, |(c, _)| c as i64));
        let mut child_args: Vec<&str> = vec!["--child", "cost"];
        child_args.extend_from_slice(args);
        child_args.push(&cpu);
        if !confined || self.o.control {
            let mut cmd = Command::new(&self.exe);
            cmd.args(&child_args);
            return cmd;
        }
        let mut cmd = Command::new(&self.o.netjail);
        cmd.args(["--log-format", "json", "run", "--allow-root", "--policy"])
            .arg(&self.policy.0)
            .env_remove("NETJAIL_BROKER")
            .arg("--")
            .arg(&self.exe)
            .args(&child_args)
            .env("NETJAIL_LOG", "warn,netjail::audit=info");
        cmd
    }

    /// A one-shot child: its fields, and the broker decisions when confined.
    fn once(&self, args: &[&str], confined: bool) -> Result<(Fields, Vec<Decision>), String> {
        let mut cmd = self.command(args, confined);
        let variant = if confined { "confined" } else { "native" };
        let (status, stdout, stderr) = run_bounded(&mut cmd, COMMAND_LIMIT, confined)
            .map_err(|e| format!("{}, {variant}: {e}", args.join(" ")))?;
        let seen = if confined {
            decisions(&stderr)
        } else {
            Vec::new()
        };
        let fields = stdout
            .lines()
            .rev()
            .find_map(|l| match serde_json::from_str(l) {
                Ok(serde_json::Value::Object(m)) if m.contains_key("mode") => Some(m),
                _ => None,
            });
        match (status.success(), fields) {
            (true, Some(f)) => Ok((f, seen)),
            _ => Err(format!(
                "{}, {variant}: child ended with {status}; broker decisions {seen:?}\n--- its stderr ---\n{}",
                args.join(" "),
                stderr.trim()
            )),
        }
    }
}

/// The first lines of `/proc/PID/status` that describe seccomp and speculation mitigations.
fn status_lines(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Seccomp") || l.starts_with("Speculation"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// What the filter of a confined process looks like and what each bench call costs in it.
struct FilterReport {
    lines: Vec<String>,
    json: serde_json::Value,
}

/// Reads the filter of the confined process `pid` back and counts each call's path.
fn inspect_filter(pid: Option<i64>) -> FilterReport {
    let mut lines = Vec::new();
    let mut json = serde_json::Map::new();
    let Some(pid) = pid else {
        return FilterReport {
            lines: vec!["the confined worker did not say its pid".into()],
            json: serde_json::Value::Null,
        };
    };
    let confined_status = status_lines(&pid.to_string());
    let native_status = status_lines("self");
    lines.push(format!("confined process: {}", confined_status.join(", ")));
    lines.push(format!("native (this one): {}", native_status.join(", ")));
    json.insert("confined_status".into(), confined_status.into());
    json.insert("native_status".into(), native_status.into());
    let prog = match sys::seccomp_filter_of(pid as libc::pid_t, 0) {
        Ok(p) => p,
        Err(e) => {
            lines.push(format!(
                "cannot read the filter back (PTRACE_SECCOMP_GET_FILTER: errno {e}; needs root)"
            ));
            return FilterReport {
                lines,
                json: json.into(),
            };
        }
    };
    let jit = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    lines.push(format!(
        "filter: {} BPF instructions (read back with PTRACE_SECCOMP_GET_FILTER); net.core.bpf_jit_enable = {jit}",
        prog.len()
    ));
    json.insert("instructions".into(), prog.len().into());
    json.insert("bpf_jit_enable".into(), jit.into());
    lines.push(format!(
        "  {:<28} {:<10} {:>9}  {}",
        "call", "answer", "insns run", "in the kernel"
    ));
    let mut calls = serde_json::Map::new();
    for call in bpf::bench_calls() {
        let Some(out) = bpf::run(&prog, &call, sys::AUDIT_ARCH) else {
            lines.push(format!(
                "  {:<28} the interpreter could not run the program",
                call.label
            ));
            continue;
        };
        let how = if out.cached {
            "constant ALLOW for this number: cached, the filter is not run"
        } else if out.action == "notify" {
            "the filter runs, then a broker round trip"
        } else {
            "the filter runs on every call (it looks at an argument)"
        };
        lines.push(format!(
            "  {:<28} {:<10} {:>9}  {how}",
            call.label, out.action, out.steps
        ));
        calls.insert(
            call.label.into(),
            serde_json::json!({ "action": out.action, "steps": out.steps, "cached": out.cached }),
        );
    }
    json.insert("calls".into(), calls.into());
    FilterReport {
        lines,
        json: json.into(),
    }
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let exe = super::this_exe()?;
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
    let bench = Bench {
        o,
        exe,
        peers,
        policy,
    };

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
    let mut workers = Workers::start(&bench)?;
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
            workers = Workers::start(&bench)?;
        }
        let Workers {
            native,
            allow_all,
            confined,
        } = &mut workers;
        for &test in &o.tests {
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
            if let Some((cpu, _)) = o.pin {
                for (v, f) in [("native", &n), ("confined", &c), (o.third, &a)] {
                    if get(f, "cpu") != cpu as f64 {
                        off_cpu.push(format!(
                            "{} pair {} {v} ended on CPU {}",
                            test.name(),
                            pair + 1,
                            get(f, "cpu")
                        ));
                    }
                }
            }
            let i = Test::ALL.iter().position(|&t| t == test).unwrap_or(0);
            results[i].push(Pair {
                native: n,
                confined: c,
                allow_all: a,
            });
        }
        eprintln!(
            "pair {}/{} done ({:.1} s)",
            pair + 1,
            o.pairs,
            started.elapsed().as_secs_f64()
        );
    }
    let measured = started.elapsed();
    let steal = steal_between(&cpu_start, &CpuTimes::read());

    // Each measurement of a confined worker connected once; that must be all the broker saw.
    let (commands, decided) = workers.retire();
    expected += commands;
    seen.extend(decided);
    let connects = seen
        .iter()
        .filter(|(op, d, e)| op == "connect" && d == "allow" && *e == 0)
        .count();
    let broker_ok = o.control || (seen.len() == expected && connects == expected);

    // sendmsg on a connected socket: always brokered (the known cost), once per variant.
    let sendmsg_args = [
        "sendmsg",
        &format!("port={}", bench.peers.blackhole),
        "count=2000",
    ]
    .map(String::from);
    let sendmsg_args: Vec<&str> = sendmsg_args.iter().map(String::as_str).collect();
    let (sendmsg_native, sendmsg_confined) = if o.control {
        let skipped = || Err("skipped in a control run".to_owned());
        (skipped(), skipped())
    } else {
        (
            bench.once(&sendmsg_args, false),
            bench.once(&sendmsg_args, true),
        )
    };

    // The table.
    println!();
    let second = if o.control { "native-2" } else { "confined" };
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9}  {:<26} {:>8}  within 5%",
        "metric",
        "unit",
        "native",
        o.third,
        second,
        format!("{second}/native [min..max]"),
        "cost",
    );
    let mut metric_json = serde_json::Map::new();
    let mut all_ok = true;
    let mut deltas = Vec::new();
    let mut breakdown = serde_json::Value::Null;
    for m in METRICS {
        if !o.tests.contains(&m.test) {
            continue;
        }
        let i = Test::ALL.iter().position(|&t| t == m.test).unwrap_or(0);
        let pairs = &results[i];
        let native: Vec<f64> = pairs.iter().map(|p| get(&p.native, m.key)).collect();
        let confined: Vec<f64> = pairs.iter().map(|p| get(&p.confined, m.key)).collect();
        let allow_all: Vec<f64> = pairs.iter().map(|p| get(&p.allow_all, m.key)).collect();
        let ratios: Vec<f64> = native.iter().zip(&confined).map(|(n, c)| c / n).collect();
        let r = median(&ratios);
        let (lo, hi) = min_max(&ratios);
        let cost = if m.higher_is_better {
            1.0 / r - 1.0
        } else {
            r - 1.0
        };
        let within = (r - 1.0).abs() <= TARGET;
        let verdict = match (m.target, within) {
            (true, true) => "yes",
            (true, false) => {
                all_ok = false;
                "NO"
            }
            (false, _) => "(not a target)",
        };
        println!(
            "{:<34} {:>8} {:>9.2} {:>9.2} {:>9.2}  {:<26} {:>+7.1}%  {verdict}",
            m.label,
            m.unit,
            median(&native) / m.scale,
            median(&allow_all) / m.scale,
            median(&confined) / m.scale,
            format!("{r:.3} [{lo:.3}..{hi:.3}]"),
            100.0 * cost,
        );
        let allow_all_ratio = median(
            &native
                .iter()
                .zip(&allow_all)
                .map(|(n, a)| a / n)
                .collect::<Vec<_>>(),
        );
        if m.test == Test::Syscalls {
            deltas.push((m, native.clone(), allow_all.clone(), confined.clone()));
        }
        metric_json.insert(
            format!("{}.{}", m.test.name(), m.key),
            serde_json::json!({
                "native": native, "allow_all": allow_all, "confined": confined, "ratios": ratios,
                "allow_all_over_native_median": allow_all_ratio,
                "median_ratio": r, "cost": cost, "target": m.target, "within_5pct": within,
            }),
        );
    }
    println!();
    println!(
        "ratio    per pair, confined/native: the median of {} pairs; cost = how much slower confined is (throughput: native/confined - 1; time: confined/native - 1)",
        o.pairs
    );
    for m in METRICS.iter().filter(|m| o.tests.contains(&m.test)) {
        let i = Test::ALL.iter().position(|&t| t == m.test).unwrap_or(0);
        let ratios: Vec<String> = results[i]
            .iter()
            .map(|p| format!("{:.3}", get(&p.confined, m.key) / get(&p.native, m.key)))
            .collect();
        println!("         {:<34} {}", m.label, ratios.join(" "));
    }
    if !deltas.is_empty() {
        println!();
        let (entry_label, filter_label) = if o.third == "allow-all" {
            ("seccomp on", "the filter")
        } else {
            ("least filter", "netjail extra")
        };
        println!(
            "{:<34} {:>8} {:>11} {:>10}  {:>16} {:>14} {:>14}",
            "(c) where the time goes, ns/call",
            "native",
            o.third,
            second,
            format!("{second}-native"),
            entry_label,
            filter_label
        );
        let mut c_json = serde_json::Map::new();
        for (m, native, allow_all, confined) in &deltas {
            let diff = |a: &[f64], b: &[f64]| -> f64 {
                median(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>())
            };
            let (total, entry, filter) = (
                diff(confined, native),
                diff(allow_all, native),
                diff(confined, allow_all),
            );
            println!(
                "{:<34} {:>8.1} {:>11.1} {:>10.1}  {:>+16.1} {:>+14.1} {:>+14.1}",
                m.label.trim_start_matches("(c) "),
                median(native),
                median(allow_all),
                median(confined),
                total,
                entry,
                filter
            );
            c_json.insert(
                m.key.into(),
                serde_json::json!({
                    "native": median(native), "third": median(allow_all),
                    "confined": median(confined), "added": total,
                    "third_minus_native": entry, "confined_minus_third": filter,
                }),
            );
        }
        println!("         medians of per-pair differences; {entry_label} = {} - native; {filter_label} = confined - {}", o.third, o.third);
        if o.third == "allow-all" {
            println!(
                "         allow-all = native plus a 1-instruction RET ALLOW filter: seccomp on, every call cached, no filter run;"
            );
            println!("         so {entry_label} is the kernel's price for any filter, {filter_label} what running netjail's program adds");
        } else {
            println!(
                "         sendto-only = native plus the least filter that keeps send() in the kernel (9 instructions on the sendto path)"
            );
        }
        breakdown = c_json.into();
    }
    let sink = bench.peers.sink_count.load(Ordering::Relaxed);
    if o.tests.contains(&Test::UdpStream) {
        println!("(b)      the UDP sink received {sink} datagrams in all (sends beyond its pace are dropped at its queue)");
    }

    let mut sendmsg_json = serde_json::Map::new();
    match (&sendmsg_native, &sendmsg_confined) {
        (Ok((n, _)), Ok((c, seen))) => {
            let errors = c.get("errors").cloned().unwrap_or_default();
            let ops: Vec<String> = seen
                .iter()
                .filter(|(op, _, _)| op != "connect")
                .take(1)
                .map(|(op, d, e)| format!("first: {op} {d} errno {e}"))
                .collect();
            println!(
                "sendmsg  the known cost: sendmsg() with no destination on a connected UDP socket always goes to the broker;"
            );
            println!(
                "         native {:.2} µs, confined {:.2} µs per call at the median ({:.1}x); confined: {} of {} ok, errors by errno {errors}; {} broker decisions {}",
                get(n, "median_ns") / 1000.0,
                get(c, "median_ns") / 1000.0,
                get(c, "median_ns") / get(n, "median_ns"),
                get(c, "ok"),
                get(c, "count"),
                seen.len(),
                ops.join("")
            );
            sendmsg_json.insert("native_median_ns".into(), get(n, "median_ns").into());
            sendmsg_json.insert("confined_median_ns".into(), get(c, "median_ns").into());
            sendmsg_json.insert("confined_ok".into(), get(c, "ok").into());
            sendmsg_json.insert("confined_errors".into(), errors);
            sendmsg_json.insert("confined_decisions".into(), seen.len().into());
        }
        (n, c) => {
            if let Some(e) = n.as_ref().err().or(c.as_ref().err()) {
                println!("sendmsg  not measured: {e}");
            }
        }
    }

    if o.control {
        println!("broker   none (control run)");
    } else if broker_ok {
        println!(
            "broker   the confined worker asked the broker {} times for {expected} measurements: once each, for its connect(); no round trip while sending or receiving",
            seen.len()
        );
    } else {
        all_ok = false;
        let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
        for (op, d, e) in &seen {
            *by_kind.entry(format!("{op} {d} errno {e}")).or_default() += 1;
        }
        println!(
            "broker   VIOLATION: {expected} measurements should have made {expected} allowed connects and nothing else; the broker saw {:?}",
            by_kind
        );
    }
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
        "metrics": metric_json,
        "syscalls_breakdown_ns": breakdown,
        "sendmsg": sendmsg_json,
        "broker": { "measurements": expected, "decisions": seen.len(), "allowed_connects": connects, "ok": broker_ok },
        "udp_sink_received": sink,
        "within_target": all_ok,
    }));
    println!("{json}");
    Ok(broker_ok)
}
