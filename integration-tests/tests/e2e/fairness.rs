//! Fairness and bounds (invariants 7 and 8, issue 8): a sandbox flooding denied connects from
//! thousands of threads does not stop another sandbox's allowed connects; a flood of
//! fd-carrying garbage on the registration socket leaves the broker's fds exactly as they were
//! and its memory flat; a sandbox killed with calls in flight leaves nothing behind.
//!
//! No assertion here depends on speed (the machine is shared): the latencies and rates are
//! printed for the reader, and `nj-bench flood` measures the latency bound (BENCHMARKS.md).
//! Python children on loopback, port-0 listeners.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netjail_integration_tests::garbage::{expect_eof, junk, HEADER};
use netjail_integration_tests::sys::{self, errno_name, SockAddr};
use netjail_integration_tests::{
    confined_with_broker, confined_with_broker_cmd, fd_count, fds_back_to, policy_file, run,
    settled_fd_count, spawn, status_kib, thread_count, threads_back_to, Broker, Canary, Outcome,
    Running, TempDir, DEFAULT_TIMEOUT,
};
use netjail_protocol::{codec, ClientMessage, PolicySource, Register, MAX_FDS};
use serde_json::Value;

use crate::{assert_ok, need_python, probe};

/// `FLOOD PORT THREADS STOPFILE [PAUSE]`: THREADS threads each connect to 127.0.0.1:PORT in a
/// loop (a fresh socket each time, PAUSE seconds between tries, default 0) until STOPFILE
/// exists. Prints `{"flooding": n, "pid": pid}` once every thread runs, then at the end
/// `{"threads": n, "counts": {"ok": k, "EPERM": m, ...}}`.
const FLOOD: &str = r#"
import errno, json, os, resource, socket, sys, threading, time
port, n, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
threading.stack_size(256 * 1024)
lock = threading.Lock()
counts = {}
go, done = threading.Event(), threading.Event()
def flood():
    local = {}
    go.wait()
    while not done.is_set():
        try:
            s = socket.socket()
        except OSError as e:
            k = 'socket:' + errno.errorcode.get(e.errno, str(e.errno))
            local[k] = local.get(k, 0) + 1
            time.sleep(0.01)
            continue
        try:
            s.connect(('127.0.0.1', port))
            k = 'ok'
        except OSError as e:
            k = errno.errorcode.get(e.errno, str(e.errno))
        s.close()
        local[k] = local.get(k, 0) + 1
        if pause:
            time.sleep(pause)
    with lock:
        for k, v in local.items():
            counts[k] = counts.get(k, 0) + v
threads = []
for i in range(n):
    t = threading.Thread(target=flood, daemon=True)
    t.start()
    threads.append(t)
go.set()
print(json.dumps({'flooding': len(threads), 'pid': os.getpid()}), flush=True)
while not os.path.exists(stop):
    time.sleep(0.05)
done.set()
for t in threads:
    t.join()
print(json.dumps({'threads': len(threads), 'counts': counts}), flush=True)
"#;

/// `TIMED PORT N`: N blocking connects to 127.0.0.1:PORT one after the other, each timed
/// (`connect()` only); prints `{"ok": k, "lat_ns": [...], "errors": {...}}`.
const TIMED: &str = r#"
import errno, json, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
lat, errors = [], {}
for i in range(n):
    s = socket.socket()
    t = time.perf_counter_ns()
    try:
        s.connect(('127.0.0.1', port))
        lat.append(time.perf_counter_ns() - t)
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
        errors[k] = errors.get(k, 0) + 1
    s.close()
print(json.dumps({'ok': len(lat), 'lat_ns': lat, 'errors': errors}))
"#;

/// `BLOCKED PORT N`: N threads each make one blocking connect to 127.0.0.1:PORT (a listener
/// whose backlog is full: each waits); prints `{"started": n, "pid": pid}` and sleeps until
/// it is killed.
const BLOCKED: &str = r#"
import json, os, socket, sys, threading, time
port, n = int(sys.argv[1]), int(sys.argv[2])
threading.stack_size(256 * 1024)
def one():
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', port))
    except OSError:
        pass
for i in range(n):
    threading.Thread(target=one, daemon=True).start()
print(json.dumps({'started': n, 'pid': os.getpid()}), flush=True)
while True:
    time.sleep(60)
"#;

/// Threads of the flooding sandbox.
const FLOOD_THREADS: usize = 2000;
/// Allowed connects of the measured sandbox, unloaded and flooded.
const MEASURED_CONNECTS: usize = 50;

fn flood_policy(allowed: u16) -> netjail_integration_tests::TempPath {
    policy_file(&format!(
        "name = \"fairness\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{allowed}\"]\n"
    ))
}

/// The `FLOOD` program's first line: every thread started; returns its pid.
fn wait_flooding(flood: &Running, what: &str) -> i32 {
    let line = flood
        .read_line(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{what}: the flood never started: {}", flood.stderr_so_far()));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
    v["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: no pid in {line}")) as i32
}

/// Creates `stop` and collects the flood's final counts.
fn stop_flood(flood: Running, stop: &std::path::Path) -> (Outcome, Value) {
    std::fs::write(stop, b"stop").expect("write the stop file");
    let out = flood.wait(Duration::from_secs(120));
    let v = out.json().clone();
    (out, v)
}

fn count_of(counts: &Value, key: &str) -> u64 {
    counts[key].as_u64().unwrap_or(0)
}

/// The latencies a `TIMED` run printed, in µs, sorted; panics unless all `n` succeeded.
fn timed_latencies(out: &Outcome, n: usize, what: &str) -> Vec<f64> {
    let v = out.json();
    assert_eq!(
        v["ok"].as_u64(),
        Some(n as u64),
        "{what}: not every allowed connect succeeded: {}",
        out.describe()
    );
    let mut lat: Vec<f64> = v["lat_ns"]
        .as_array()
        .expect("lat_ns")
        .iter()
        .map(|x| x.as_f64().unwrap_or(0.0) / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

/// Nearest-rank quantile of sorted samples.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn decisions(m: &std::collections::BTreeMap<String, f64>, verdict: &str) -> f64 {
    m.get(&format!(
        "netjail_decisions_total{{op=\"connect\",verdict=\"{verdict}\"}}"
    ))
    .copied()
    .unwrap_or(0.0)
}

/// Samples a process's fd and thread counts every 10 ms until dropped: the most seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max_fds: Arc<AtomicUsize>,
    max_threads: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_fds = Arc::new(AtomicUsize::new(fd_count(pid)));
        let max_threads = Arc::new(AtomicUsize::new(thread_count(pid)));
        let thread = {
            let (stop, max_fds, max_threads) = (stop.clone(), max_fds.clone(), max_threads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    max_fds.fetch_max(fd_count(pid), Ordering::Relaxed);
                    max_threads.fetch_max(thread_count(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Sampler {
            stop,
            max_fds,
            max_threads,
            thread: Some(thread),
        }
    }

    /// Stops sampling: the most fds and threads seen.
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.max_fds.load(Ordering::Relaxed),
            self.max_threads.load(Ordering::Relaxed),
        )
    }
}

/// Invariant 7: sandbox A, 2,000 threads each connecting in a loop to a port its policy denies,
/// does not stop sandbox B (same broker) from connecting to its allowed port: all of B's 50
/// connects succeed while A floods, A's calls all get `EPERM`, A's port accepts nothing, and
/// the broker neither grows a thread or an fd per call nor keeps any after. B's latencies
/// unloaded and flooded, and A's rate of denials, are printed (not asserted: `nj-bench flood`
/// measures the bound). Unconfined, the same flood reaches the port.
#[test]
fn s_inv7_a_flood_of_denied_connects_does_not_stop_another_sandbox() {
    let Some(py) = need_python("s_inv7_a_flood_of_denied_connects_does_not_stop_another_sandbox")
    else {
        return;
    };
    let allowed = Canary::tcp4();
    let denied = Canary::tcp4();
    let dport = denied.port_str();
    let aport = allowed.port_str();
    let dir = TempDir::new();

    // Unconfined, the flood's connects reach the port.
    let stop = dir.path().join("stop-unconfined");
    let mut cmd = Command::new(&py);
    cmd.args(["-c", FLOOD, &dport, "4", stop.to_str().unwrap(), "0.01"]);
    let flood = spawn(&mut cmd);
    wait_flooding(&flood, "unconfined");
    denied.wait_count(5, Duration::from_secs(10));
    let (out, v) = stop_flood(flood, &stop);
    assert!(
        count_of(&v["counts"], "ok") > 0,
        "unconfined, the flood never connected: {}",
        out.describe()
    );
    let reached_unconfined = denied.settled_count();

    let policy = flood_policy(allowed.port());
    let broker = Broker::start();
    let pid = broker.pid();

    let timed = |what: &str| {
        let out = run(
            &mut confined_with_broker_cmd(
                &broker,
                policy.as_str(),
                &[&py, "-c", TIMED, &aport, &MEASURED_CONNECTS.to_string()],
            ),
            Duration::from_secs(120),
        );
        timed_latencies(&out, MEASURED_CONNECTS, what)
    };
    let unloaded = timed("B unloaded");
    // Counted once the broker has served a sandbox: what it sets up once for the first one
    // (the reaper's epoll and timer, the blocking pool's first threads) is not the flood's.
    let fds_before = settled_fd_count(pid);
    let threads_before = thread_count(pid);

    let stop = dir.path().join("stop-confined");
    let flood = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[
            &py,
            "-c",
            FLOOD,
            &dport,
            &FLOOD_THREADS.to_string(),
            stop.to_str().unwrap(),
        ],
    ));
    wait_flooding(&flood, "confined");
    // Flooding: the broker's denials climb.
    let m0 = broker.metrics();
    let deadline = Instant::now() + Duration::from_secs(30);
    let m1 = loop {
        std::thread::sleep(Duration::from_millis(200));
        let m = broker.metrics();
        if decisions(&m, "deny") >= decisions(&m0, "deny") + 1000.0 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the flood's denials do not climb: {m:?}"
        );
    };
    let sampler = Sampler::start(pid);
    let t0 = Instant::now();
    let flooded = timed("B while A floods");
    let elapsed = t0.elapsed().as_secs_f64();
    let m2 = broker.metrics();
    let (max_fds, max_threads) = sampler.finish();
    let (out, v) = stop_flood(flood, &stop);

    // A: every call refused with EPERM, nothing reached its port.
    let counts = &v["counts"];
    let total: u64 = counts
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert_eq!(
        v["threads"].as_u64(),
        Some(FLOOD_THREADS as u64),
        "{}",
        out.describe()
    );
    assert!(
        count_of(counts, "EPERM") > 0,
        "the flood was not refused: {}",
        out.describe()
    );
    assert_eq!(
        count_of(counts, "EPERM"),
        total,
        "a flood call got something else than EPERM: {counts}"
    );
    assert_eq!(
        denied.settled_count(),
        reached_unconfined,
        "a confined flood connect reached the denied port"
    );
    // The broker decides A's calls on A's receiver thread, one at a time: no thread and no
    // fd per call. Each of the two sandboxes adds a receiver thread, its listener, its
    // registration socket, the copies of the call in hand and the pidfds of its last callers
    // (8 kept per sandbox, `broker/src/pidfds.rs`): about 24 fds in all, where one per call
    // would be thousands.
    assert!(
        max_threads <= threads_before + 8,
        "broker threads grew with the flood: {threads_before} before, {max_threads} at most"
    );
    assert!(
        max_fds <= fds_before + 24,
        "broker fds grew with the flood: {fds_before} before, {max_fds} at most"
    );
    let m3 = broker.metrics();
    let limit = m3["netjail_sandbox_calls_in_flight_limit"];
    assert!(
        m3["netjail_sandbox_calls_in_flight_peak"] <= limit,
        "in flight beyond the limit: {m3:?}"
    );
    assert_eq!(m3["netjail_calls_in_flight"], 0.0, "{m3:?}");
    assert_eq!(
        fds_back_to(pid, fds_before, Duration::from_secs(20)),
        fds_before,
        "the broker kept fds after the flood"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !broker.status().1.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(broker.status().1.len(), 0, "sandboxes left registered");

    let rate = (decisions(&m2, "deny") - decisions(&m1, "deny")) / elapsed;
    let (um, up) = (quantile(&unloaded, 0.5), quantile(&unloaded, 0.99));
    let (fm, fp) = (quantile(&flooded, 0.5), quantile(&flooded, 0.99));
    eprintln!(
        "fairness flood (figures, not asserted): B's {MEASURED_CONNECTS} allowed connects \
         unloaded median {um:.0} µs p99 {up:.0} µs; while A's {FLOOD_THREADS} threads flood: \
         median {fm:.0} µs p99 {fp:.0} µs (p99 ratio {:.2}x); A's denials during B's run \
         {rate:.0}/s ({} in all); broker threads {threads_before} -> at most {max_threads}, \
         fds {fds_before} -> at most {max_fds}; in-flight peak {} of {limit}",
        fp / up,
        count_of(counts, "EPERM"),
        m3["netjail_sandbox_calls_in_flight_peak"],
    );
}

/// One kind of bad datagram carrying fds.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// A well-formed hello with `MAX_FDS` fds (hello carries none).
    HelloWithFds,
    /// After a proper hello: a register with 3 fds (it takes exactly one).
    RegisterWithThreeFds,
    /// After a proper hello: a register that names a listener and sends no fd.
    RegisterWithoutItsFd,
    /// The header, then junk, with `MAX_FDS` fds.
    HeaderAndJunk,
    /// Junk with 2 fds.
    Junk,
    /// 16 fds in one `SCM_RIGHTS`: more than the broker's ancillary buffer (truncated).
    SixteenFds,
    /// Two `SCM_RIGHTS` messages of 3 fds each.
    TwoRightsMessages,
    /// `SCM_RIGHTS` (1 fd) and `SCM_CREDENTIALS`.
    RightsAndCredentials,
    /// A `cmsg_len` that claims 8 fds with room for 2: the sender's kernel refuses it.
    LyingLength,
    /// A 70,000-byte datagram with `MAX_FDS` fds.
    Oversize,
    /// The header and a register cut short, with 1 fd.
    TruncatedRegister,
}

impl Bad {
    const ALL: [Bad; 11] = [
        Bad::HelloWithFds,
        Bad::RegisterWithThreeFds,
        Bad::RegisterWithoutItsFd,
        Bad::HeaderAndJunk,
        Bad::Junk,
        Bad::SixteenFds,
        Bad::TwoRightsMessages,
        Bad::RightsAndCredentials,
        Bad::LyingLength,
        Bad::Oversize,
        Bad::TruncatedRegister,
    ];

    /// Whether it follows a proper hello.
    fn after_hello(self) -> bool {
        matches!(self, Bad::RegisterWithThreeFds | Bad::RegisterWithoutItsFd)
    }
}

fn hello() -> Vec<u8> {
    codec::encode(&ClientMessage::Hello {
        version: netjail_protocol::PROTOCOL_VERSION,
        client: "e2e-garbage".into(),
    })
    .expect("encode hello")
}

fn register() -> Vec<u8> {
    codec::encode(&ClientMessage::Register(Register {
        name: "garbage".into(),
        pid: std::process::id() as i32,
        policy: PolicySource {
            origin: "builtin:deny-all".into(),
            toml: netjail_policy::builtin("deny-all").unwrap().into(),
        },
    }))
    .expect("encode register")
}

/// One control message, `cmsg_len` given (normally `CMSG_LEN(data.len())`), padded to
/// `CMSG_SPACE`.
fn cmsg(level: i32, ty: i32, data: &[u8], cmsg_len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&cmsg_len.to_ne_bytes());
    v.extend_from_slice(&level.to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(data);
    v.resize(v.len().next_multiple_of(8), 0);
    v
}

fn fd_bytes(fds: &[i32]) -> Vec<u8> {
    fds.iter().flat_map(|f| f.to_ne_bytes()).collect()
}

/// `CMSG_LEN(n)` on 64-bit Linux: a 16-byte header and the data.
fn cmsg_len(n: usize) -> usize {
    16 + n
}

/// Sends `bad` (seeded by `seed`) on `conn`. `Ok(true)`: the broker has it; `Ok(false)`: the
/// sender's kernel refused it (only [`Bad::LyingLength`]) or the broker had already closed.
fn send_bad(conn: &OwnedFd, bad: Bad, fds: &[i32], seed: u64, flags: i32) -> Result<bool, String> {
    let rights = |n: usize| {
        let f = fd_bytes(&fds[..n]);
        cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &f, cmsg_len(f.len()))
    };
    let (body, control): (Vec<u8>, Vec<u8>) = match bad {
        Bad::HelloWithFds => (hello(), rights(MAX_FDS)),
        Bad::RegisterWithThreeFds => (register(), rights(3)),
        Bad::RegisterWithoutItsFd => (register(), Vec::new()),
        Bad::HeaderAndJunk => {
            let mut b = HEADER.to_vec();
            b.extend(junk(48, seed));
            (b, rights(MAX_FDS))
        }
        Bad::Junk => (junk(64, seed), rights(2)),
        Bad::SixteenFds => (junk(16, seed), rights(16)),
        Bad::TwoRightsMessages => {
            let mut c = rights(3);
            c.extend(rights(3));
            (hello(), c)
        }
        Bad::RightsAndCredentials => {
            let mut c = rights(1);
            let cred = libc::ucred {
                pid: std::process::id() as i32,
                uid: 0,
                gid: 0,
            };
            let mut data = Vec::new();
            data.extend_from_slice(&cred.pid.to_ne_bytes());
            data.extend_from_slice(&cred.uid.to_ne_bytes());
            data.extend_from_slice(&cred.gid.to_ne_bytes());
            c.extend(cmsg(
                libc::SOL_SOCKET,
                libc::SCM_CREDENTIALS,
                &data,
                cmsg_len(data.len()),
            ));
            (hello(), c)
        }
        Bad::LyingLength => {
            let f = fd_bytes(&fds[..2]);
            (
                hello(),
                cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &f, cmsg_len(32)),
            )
        }
        Bad::Oversize => {
            let mut b = HEADER.to_vec();
            b.extend(junk(70_000, seed));
            (b, rights(MAX_FDS))
        }
        Bad::TruncatedRegister => {
            let r = register();
            (r[..r.len() / 2].to_vec(), rights(1))
        }
    };
    match sys::send_with_control(conn, &body, &control, flags) {
        Ok(_) => Ok(true),
        Err(libc::EINVAL) if matches!(bad, Bad::LyingLength) => Ok(false),
        Err(libc::EPIPE | libc::ECONNRESET | libc::EAGAIN) => Ok(false),
        Err(e) => Err(format!("{bad:?}: send: {}", errno_name(e))),
    }
}

/// A fresh connection, after a proper hello (and its welcome) when `bad` needs one.
fn connect_for(socket: &std::path::Path, bad: Bad) -> Result<OwnedFd, String> {
    let conn = sys::seqpacket_connect(socket)
        .map_err(|e| format!("connect to the broker: {}", errno_name(e)))?;
    if bad.after_hello() {
        sys::send(&conn, &hello()).map_err(|e| format!("hello: {}", errno_name(e)))?;
        let mut buf = vec![0u8; 1 << 16];
        match sys::recv_timeout(&conn, &mut buf, 5000) {
            Ok(Some(n)) if n > 0 => {}
            other => return Err(format!("{bad:?}: no welcome: {other:?}")),
        }
    }
    Ok(conn)
}

/// Invariant 8: 5,000 bad datagrams carrying fds (11 kinds: fds where none belong, too many,
/// too few, truncated ancillary data, two `SCM_RIGHTS`, credentials, a lying `cmsg_len`,
/// oversize, cut short), one per connection from 4 threads, then bursts queued on single
/// connections before the broker reads them: the broker closes each connection, its fd count
/// comes back exactly to where it was, its resident memory grows by less than 8 MiB, and a
/// sandbox it serves meanwhile keeps connecting, as does a new one after.
#[test]
fn s_inv8_a_flood_of_fd_carrying_garbage_leaves_fds_and_memory_flat() {
    const MESSAGES: usize = 5000;
    const CLIENTS: usize = 4;
    const BURSTS: usize = 200;
    const BURST: usize = 25;
    /// Resident memory the garbage may add to the broker (measured: see the output).
    const RSS_BOUND_KIB: u64 = 8 * 1024;
    let Some(py) = need_python("s_inv8_a_flood_of_fd_carrying_garbage_leaves_fds_and_memory_flat")
    else {
        return;
    };
    let broker = Broker::start();
    let pid = broker.pid();
    let fresh_fds = settled_fd_count(pid);
    let served = Canary::tcp4();
    let policy = flood_policy(served.port());
    let dir = TempDir::new();
    let stop = dir.path().join("stop");
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[
            &py,
            "-c",
            FLOOD,
            &served.port_str(),
            "1",
            stop.to_str().unwrap(),
            "0.02",
        ],
    ));
    wait_flooding(&sandbox, "served sandbox");
    assert!(
        served.wait_count(3, Duration::from_secs(15)) >= 3,
        "the served sandbox does not connect:\n{}",
        broker.log()
    );
    let fds_before = settled_fd_count(pid);
    // The meter sees a kept fd: the sandbox's listener.
    assert!(
        fds_before > fresh_fds,
        "registering a sandbox did not show in the broker's fds ({fresh_fds} -> {fds_before})"
    );
    let rss_before = status_kib(pid, "VmRSS");
    let served_before = served.count();

    // The fds that travel: files, pipe ends, a socket pair, a TCP socket.
    let files: Vec<std::fs::File> = (0..6)
        .map(|_| std::fs::File::open("/dev/null").expect("open /dev/null"))
        .collect();
    let (pr, pw) = std::io::pipe().expect("pipe");
    let (s1, s2) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let tcp = sys::socket(libc::AF_INET, libc::SOCK_STREAM).expect("socket");
    let mut pool: Vec<i32> = files.iter().map(AsRawFd::as_raw_fd).collect();
    pool.extend([
        pr.as_raw_fd(),
        pw.as_raw_fd(),
        s1.as_raw_fd(),
        s2.as_raw_fd(),
        tcp.as_raw_fd(),
    ]);
    let fds: Vec<i32> = pool.iter().cycle().take(16).copied().collect();

    let sent = AtomicUsize::new(0);
    let refused_by_kernel = AtomicUsize::new(0);
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (socket, fds, sent, refused) =
                    (broker.socket(), &fds, &sent, &refused_by_kernel);
                s.spawn(move || -> Vec<String> {
                    let mut failures = Vec::new();
                    for i in (c..MESSAGES).step_by(CLIENTS) {
                        let bad = Bad::ALL[i % Bad::ALL.len()];
                        let result = connect_for(socket, bad).and_then(|conn| {
                            if send_bad(&conn, bad, fds, i as u64, 0)? {
                                sent.fetch_add(1, Ordering::Relaxed);
                            } else {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            // A refused send sent nothing: close it ourselves.
                            if matches!(bad, Bad::LyingLength) {
                                return Ok(());
                            }
                            expect_eof(&conn, &format!("{bad:?}"))
                        });
                        if let Err(e) = result {
                            failures.push(e);
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a garbage client panicked"))
            .collect()
    });
    let many_secs = started.elapsed().as_secs_f64();
    let served_during = served.count() - served_before;

    // Bursts: datagrams queued on one connection without waiting for the broker, which reads
    // the first, closes, and the kernel drops the rest with their fds.
    let mut queued = 0usize;
    for b in 0..BURSTS {
        let Ok(conn) = sys::seqpacket_connect(broker.socket()) else {
            continue;
        };
        for k in 0..BURST {
            let bad = [Bad::HelloWithFds, Bad::HeaderAndJunk, Bad::Junk][k % 3];
            match send_bad(&conn, bad, &fds, (b * BURST + k) as u64, libc::MSG_DONTWAIT) {
                Ok(true) => queued += 1,
                Ok(false) => break,
                Err(e) => panic!("burst {b}: {e}"),
            }
        }
        if let Err(e) = expect_eof(&conn, "burst") {
            panic!("burst {b}: {e}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {MESSAGES} bad messages were not answered by a close:\n{}\n--- broker log ---\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n"),
        broker.log()
    );
    drop((files, pr, pw, s1, s2, tcp));

    let fds_after = fds_back_to(pid, fds_before, Duration::from_secs(20));
    let rss_after = status_kib(pid, "VmRSS");
    let hwm = status_kib(pid, "VmHWM");
    std::fs::write(&stop, b"stop").expect("stop file");
    let out = sandbox.wait(Duration::from_secs(60));
    let counts = &out.json()["counts"];
    assert!(broker_alive(&broker), "the broker died:\n{}", broker.log());
    assert_eq!(
        fds_after, fds_before,
        "the broker kept fds from garbage: {fds_before} before, {fds_after} after"
    );
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "fairness garbage (figures): {} datagrams with fds on {MESSAGES} connections in \
         {many_secs:.1} s ({} refused by the sender's kernel), {queued} more queued in \
         {BURSTS} bursts; broker fds {fds_before} -> {fds_after}; VmRSS {rss_before} KiB -> \
         {rss_after} KiB (+{growth} KiB, bound {RSS_BOUND_KIB} KiB), VmHWM {hwm} KiB; the served \
         sandbox connected {served_during} times during the first phase, {counts} in all",
        sent.load(Ordering::Relaxed),
        refused_by_kernel.load(Ordering::Relaxed),
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "the broker's memory grew by {growth} KiB under garbage (bound {RSS_BOUND_KIB} KiB)"
    );
    assert!(
        refused_by_kernel.load(Ordering::Relaxed) >= MESSAGES / Bad::ALL.len(),
        "the lying cmsg_len was not refused by the kernel"
    );
    assert!(queued >= BURSTS, "no burst was queued ({queued})");
    // The served sandbox: every connect succeeded, during the garbage too.
    assert!(
        served_during > 0,
        "the sandbox was not served during the garbage"
    );
    let total: u64 = counts
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    assert!(
        total > 0 && count_of(counts, "ok") == total,
        "the served sandbox's connects failed: {}",
        out.describe()
    );
    // And a new sandbox is served after.
    let out = confined_with_broker(
        &broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &served.port_str()],
    );
    assert_ok(&out);
}

fn broker_alive(broker: &Broker) -> bool {
    sys::kill(broker.pid(), 0).is_ok()
}

/// A TCP listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection never
/// accepted, more pending): a blocking connect to it waits (the kernel drops its SYNs).
struct FullListener {
    port: u16,
    _listener: OwnedFd,
    _fillers: Vec<OwnedFd>,
}

impl FullListener {
    fn new() -> FullListener {
        let listener = sys::socket(libc::AF_INET, libc::SOCK_STREAM).expect("socket");
        sys::bind(&listener, &SockAddr::ip("127.0.0.1".parse().unwrap(), 0)).expect("bind");
        sys::listen(&listener, 0).expect("listen");
        let port = sys::local(&listener)
            .expect("getsockname")
            .port()
            .expect("a port");
        let to = SockAddr::ip("127.0.0.1".parse().unwrap(), port);
        let fillers: Vec<OwnedFd> = (0..3)
            .map(|_| {
                let s = sys::socket(libc::AF_INET, libc::SOCK_STREAM).expect("socket");
                sys::set_nonblocking(s.as_raw_fd()).expect("O_NONBLOCK");
                match sys::connect(&s, &to) {
                    Ok(()) | Err(libc::EINPROGRESS) => {}
                    Err(e) => panic!("filler connect: {}", errno_name(e)),
                }
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        FullListener {
            port,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

/// Kills a sandbox that has calls in flight (SIGKILL to the confined process, by pid) and
/// checks that the broker gets back to `baseline` (fds, threads, no sandbox registered) and
/// serves a new sandbox. `slow` chooses the policy: one that may ask (every call on the
/// blocking pool, so 64 calls in flight, the limit) or not (the receiver performs the
/// connect itself).
fn exit_with_calls_in_flight(slow: bool, threads: usize) {
    let name = if slow { "slow path" } else { "fast path" };
    let Some(py) = need_python("s_inv7_a_sandbox_killed_with_calls_in_flight") else {
        return;
    };
    let full = FullListener::new();
    // Unconfined, a connect to that listener waits.
    let started = Instant::now();
    let unconfined = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], full.port)),
        Duration::from_millis(500),
    );
    assert!(
        unconfined.is_err() && started.elapsed() >= Duration::from_millis(400),
        "a connect to the full listener did not wait: {unconfined:?}"
    );
    let ok = Canary::tcp4();
    let asked = Canary::tcp4();
    let ask = if slow {
        format!(
            "[[ask]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
            asked.port()
        )
    } else {
        String::new()
    };
    let policy = policy_file(&format!(
        "name = \"in-flight\"\ndefault = \"deny\"\nask_timeout = \"10m\"\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{}\", \"tcp://127.0.0.1:{}\"]\n{ask}",
        full.port,
        ok.port()
    ));
    let broker = Broker::start();
    let pid = broker.pid();
    let fds_before = settled_fd_count(pid);
    let threads_before = thread_count(pid);

    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[
            &py,
            "-c",
            BLOCKED,
            &full.port.to_string(),
            &threads.to_string(),
        ],
    ));
    let line = sandbox
        .read_line(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{name}: never started: {}", sandbox.stderr_so_far()));
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    let victim = v["pid"].as_i64().expect("pid") as i32;
    // The calls are in flight: on the pool up to the limit (slow path), or the first one
    // with the receiver and the rest in the kernel (fast path: nothing to count, give the
    // threads a moment to reach their connects).
    let deadline = Instant::now() + Duration::from_secs(30);
    if !slow {
        std::thread::sleep(Duration::from_secs(1));
    }
    let in_flight = loop {
        let m = broker.metrics();
        if !slow || m["netjail_calls_in_flight"] >= m["netjail_sandbox_calls_in_flight_limit"] {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: calls never in flight: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let limit = in_flight["netjail_sandbox_calls_in_flight_limit"];
    if slow {
        assert_eq!(in_flight["netjail_calls_in_flight"], limit, "{in_flight:?}");
    }
    assert!(
        in_flight["netjail_sandbox_calls_in_flight_peak"] <= limit,
        "{name}: beyond the limit: {in_flight:?}"
    );
    let fds_held = fd_count(pid);
    let threads_held = thread_count(pid);
    assert_eq!(
        broker.status().1.len(),
        1,
        "{name}: the sandbox is not registered"
    );

    sys::kill(victim, libc::SIGKILL).expect("kill the sandbox");
    let killed = Instant::now();
    let out = sandbox.wait(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !broker.status().1.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone_ms = killed.elapsed().as_millis();
    let sandboxes = broker.status().1.len();
    let fds_after = fds_back_to(pid, fds_before, Duration::from_secs(30));
    let threads_after = threads_back_to(pid, threads_before, Duration::from_secs(30));
    let after = broker.metrics();
    eprintln!(
        "fairness exit, {name} (figures): {threads} threads blocked; with calls in flight the \
         broker had {fds_held} fds (baseline {fds_before}), {threads_held} threads (baseline \
         {threads_before}), {} calls on the pool (limit {limit}, peak {}); after SIGKILL: \
         unregistered within {gone_ms} ms, fds {fds_after}, threads {threads_after}, in flight {}",
        in_flight["netjail_calls_in_flight"],
        in_flight["netjail_sandbox_calls_in_flight_peak"],
        after["netjail_calls_in_flight"],
    );
    assert!(out.died_of(libc::SIGKILL), "{name}: {}", out.describe());
    assert_eq!(
        sandboxes, 0,
        "{name}: the killed sandbox is still registered"
    );
    assert_eq!(fds_after, fds_before, "{name}: the broker kept fds");
    assert!(
        threads_after <= threads_before,
        "{name}: the broker kept threads: {threads_before} before, {threads_after} after"
    );
    assert_eq!(after["netjail_calls_in_flight"], 0.0, "{name}: {after:?}");
    // The broker serves a new sandbox.
    let out = confined_with_broker(
        &broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &ok.port_str()],
    );
    assert_ok(&out);
    assert_eq!(ok.wait_count(1, Duration::from_secs(5)), 1);
}

/// Invariant 7: a sandbox whose policy may ask (every call on the blocking pool) is killed
/// while 200 threads are each blocked in a connect the broker performs (a full accept queue
/// on loopback): 64 are in flight, the rest are refused (`EAGAIN`, past the sandbox's bound
/// on the pool). Afterwards the broker has exactly its fds and threads of before, no sandbox,
/// nothing in flight, and serves a new sandbox.
#[test]
fn s_inv7_a_sandbox_killed_with_calls_in_flight_on_the_pool_leaves_nothing() {
    exit_with_calls_in_flight(true, 200);
}

/// As above, with a policy that never asks: the sandbox's receiver thread performs the first
/// connect itself (loopback), and 49 more wait in the kernel.
#[test]
fn s_inv7_a_sandbox_killed_with_a_call_on_its_receiver_leaves_nothing() {
    exit_with_calls_in_flight(false, 50);
}
