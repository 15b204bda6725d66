//! Bounds (issue 16, gap 4; invariant 7): one sandbox, or a few, cannot starve the broker or
//! the other sandboxes, and every call gets an answer. Each resource a sandbox can make the
//! broker hold — calls on the blocking pool, descriptors passed with `SCM_RIGHTS`, held
//! calls, the broker's own descriptors — has a bound per sandbox and one for the whole broker;
//! reaching one refuses that sandbox's call with an errno, never another sandbox's, and never
//! leaves a call waiting. Blocked calls whose caller is gone are stopped.
//!
//! The attacks are those of the December 2026 review (R5, F9, F10, F12, L8, R3): each test was
//! run against the build of the commit before these bounds, where it fails (the broker's
//! descriptors run out, the ninth sandbox gets no answer, the killed caller's sends stay
//! blocked, the held call of the ninth sandbox falls back, Fast Open connects go uncounted,
//! `msg_len` is written into the new program image). Python children on loopback and unix
//! sockets in temporary directories.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::sys as nsys;
use netjail_integration_tests::{
    confined_with_broker, confined_with_broker_cmd, fd_count, fds_back_to, netjail_bin,
    policy_file, run, settled_fd_count, spawn, Broker, Canary, Running, TempDir, TempPath,
    DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{assert_err, assert_ok, need_python, probe};

/// `python3 -c LIMITED NOFILE PROGRAM ARGS...`: PROGRAM run with `RLIMIT_NOFILE` NOFILE.
const LIMITED: &str = r#"
import os, resource, sys
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
os.execv(sys.argv[2], sys.argv[2:])
"#;

/// The open-file limit of the brokers that F9's tests drive towards it.
const BROKER_NOFILE: &str = "2048";

/// A `netjaild` whose open-file limit is [`BROKER_NOFILE`] (it cannot raise it).
fn small_broker(py: &str) -> Broker {
    Broker::start_with(&[py, "-c", LIMITED, BROKER_NOFILE], |_| Vec::new())
}

/// A policy allowing connects to 127.0.0.1:`port` and the unix paths `unix` (descriptors may
/// be passed), with `extra` TOML after it.
pub(crate) fn policy(port: u16, unix: &[&str], extra: &str) -> TempPath {
    let list: Vec<String> = unix.iter().map(|p| format!("{p:?}")).collect();
    policy_file(&format!(
        "name = \"bounds\"\ndefault = \"deny\"\n{extra}\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\nunix = [{}]\n",
        list.join(", ")
    ))
}

pub(crate) fn json_line(running: &Running, what: &str, timeout: Duration) -> Value {
    let line = running
        .read_line(timeout)
        .unwrap_or_else(|| panic!("{what}: no line: {}", running.stderr_so_far()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

/// Polls `netjail metrics` until `metric` satisfies `pred`, at most `timeout`; returns the
/// last value.
pub(crate) fn wait_metric(
    broker: &Broker,
    metric: &str,
    timeout: Duration,
    pred: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let v = broker.metrics().get(metric).copied().unwrap_or(-1.0);
        if pred(v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refusals(broker: &Broker, bound: &str) -> f64 {
    let key = format!("netjail_bound_refusals_total{{bound=\"{bound}\"}}");
    broker.metrics().get(&key).copied().unwrap_or(0.0)
}

pub(crate) fn audit_rule(broker: &Broker, rule: &str) -> Vec<Value> {
    broker.wait_audit(1, Duration::from_secs(10), |e| {
        e["message"] == "decision" && e["rule"] == rule
    })
}

// ---------------------------------------------------------------------------------------
// F9: descriptors passed with SCM_RIGHTS.

/// `RIGHTS COUNTS`: one `sendmsg` of one byte on a fresh socketpair with one `SCM_RIGHTS`
/// message per count (`200,200`; `253x16` is sixteen of 253), each naming the same descriptor;
/// prints `{"ok": ...}` or the errno.
const RIGHTS: &str = r#"
import array, errno, json, socket, sys
spec = sys.argv[1]
if 'x' in spec:
    n, times = spec.split('x')
    counts = [int(n)] * int(times)
else:
    counts = [int(c) for c in spec.split(',')]
a, b = socket.socketpair()
fd = b.fileno()
anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd] * n).tobytes()) for n in counts]
try:
    a.sendmsg([b'x'], anc)
    print(json.dumps({'ok': True}))
except OSError as e:
    print(json.dumps({'ok': False, 'err': errno.errorcode.get(e.errno, str(e.errno))}))
"#;

/// F9: the kernel counts the descriptors of one message together, 253 at most (`SCM_MAX_FD`),
/// and refuses more with `EINVAL`; so does the broker, before it copies any. Unconfined, two
/// `SCM_RIGHTS` of 200 are `EINVAL` and one of 253 passes; confined the same. Sixteen of 253
/// (4,048 descriptors) against a broker with 2,048 open files: the broker used to copy them
/// one by one until it ran out (`EMFILE`, answered `EBADF`), and the kernel's answer is
/// `EINVAL`.
#[test]
fn f9_descriptors_are_counted_per_message_and_refused_past_253() {
    let Some(py) = need_python("f9_descriptors_are_counted_per_message") else {
        return;
    };
    let unconfined = |spec: &str| {
        run(
            Command::new(&py).args(["-c", RIGHTS, spec]),
            DEFAULT_TIMEOUT,
        )
    };
    assert_ok(&unconfined("253"));
    assert_err(&unconfined("200,200"), "EINVAL");
    assert_err(&unconfined("253x16"), "EINVAL");

    let broker = small_broker(&py);
    let p = policy(1, &[], "");
    let confined =
        |spec: &str| confined_with_broker(&broker, p.as_str(), &[py.as_str(), "-c", RIGHTS, spec]);
    let baseline = settled_fd_count(broker.pid());
    assert_ok(&confined("253"));
    assert_err(&confined("200,200"), "EINVAL");
    assert_err(&confined("253x16"), "EINVAL");
    let e = audit_rule(&broker, "too-many-fds");
    assert!(!e.is_empty(), "no audit of too-many-fds:\n{}", broker.log());
    assert_eq!(e[0]["errno"], libc::EINVAL);
    let after = fds_back_to(broker.pid(), baseline, Duration::from_secs(10));
    assert!(
        after <= baseline,
        "the broker kept descriptors: {baseline} -> {after}"
    );
}

/// `BLOCKED_RIGHTS BIG SMALL STOP`: fills a socketpair nobody reads, then BIG threads each
/// send one byte with 253 descriptors on it (one after the other) and SMALL threads one with
/// a single descriptor: every send blocks (or is refused). Prints `{"started": n}`, and once
/// STOP exists `{"finished": [errno names of the sends that returned]}`.
const BLOCKED_RIGHTS: &str = r#"
import array, errno, json, os, socket, sys, threading, time
big, small, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
a, b = socket.socketpair()
a.setblocking(False)
try:
    while True:
        a.send(b'f' * 65536)
except BlockingIOError:
    pass
a.setblocking(True)
fd = b.fileno()
res, lock = [], threading.Lock()
def one(n):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd] * n).tobytes())]
    try:
        a.sendmsg([b'x'], anc)
        r = 'ok'
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    with lock:
        res.append(r)
for _ in range(big):
    threading.Thread(target=one, args=(253,), daemon=True).start()
    time.sleep(0.05)
for _ in range(small):
    threading.Thread(target=one, args=(1,), daemon=True).start()
print(json.dumps({'started': big + small}), flush=True)
deadline = time.time() + 120
while not os.path.exists(stop) and time.time() < deadline:
    time.sleep(0.05)
with lock:
    print(json.dumps({'finished': list(res)}), flush=True)
os._exit(0)
"#;

/// F9 shown: sends blocked on a full peer kept every descriptor they passed in the broker
/// (`pidfd_getfd` copies), 253 each, up to 64 sends per sandbox, until the broker had none
/// left. Against a broker with 2,048 open files, one sandbox blocks 8 sends of 253
/// descriptors and 60 of one: its descriptors in flight stop at its share (the first message
/// of 253 and some single ones; the rest are refused with `ETOOMANYREFS`, the kernel's errno
/// for too many descriptors in flight), the broker keeps well below its limit, and another
/// sandbox's connect is answered. The old broker held about 1,800 of its 2,048.
#[test]
fn f9_blocked_sends_holding_descriptors_cannot_exhaust_the_broker() {
    let Some(py) = need_python("f9_blocked_sends_holding_descriptors") else {
        return;
    };
    let ok = Canary::tcp4();
    let broker = small_broker(&py);
    let pid = broker.pid();
    let baseline = settled_fd_count(pid);
    let dir = TempDir::new();
    let stop = dir.path().join("stop");
    let p = policy(ok.port(), &[], "");
    let holder = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[&py, "-c", BLOCKED_RIGHTS, "8", "60", stop.to_str().unwrap()],
    ));
    json_line(&holder, "holder", Duration::from_secs(30));
    // The sends past the sandbox's 64 calls on the pool wait 2 s for a place, then give up.
    std::thread::sleep(Duration::from_secs(4));
    let held = fd_count(pid);
    let out = confined_with_broker(
        &broker,
        p.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &ok.port_str()],
    );
    std::fs::write(&stop, b"stop").expect("stop file");
    let finished = json_line(&holder, "holder", Duration::from_secs(30));
    eprintln!(
        "f9 (figures): broker fds {baseline} at rest, {held} while the sends were blocked \
         (limit {BROKER_NOFILE}); sends that returned: {finished}"
    );
    assert!(
        held < 1024,
        "the sandbox's blocked sends hold {held} of the broker's {BROKER_NOFILE} descriptors"
    );
    assert_ok(&out);
    let returned: Vec<&str> = finished["finished"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        returned.contains(&"ETOOMANYREFS"),
        "no send was refused: {returned:?}"
    );
    assert!(
        returned
            .iter()
            .all(|r| ["ETOOMANYREFS", "EAGAIN"].contains(r)),
        "a send failed otherwise: {returned:?}"
    );
    let e = audit_rule(&broker, "limit:descriptors");
    assert_eq!(e[0]["errno"], libc::ETOOMANYREFS, "{e:?}");
    assert!(refusals(&broker, "descriptors") >= 1.0);
    drop(holder);
    let after = fds_back_to(pid, baseline, Duration::from_secs(20));
    assert!(
        after <= baseline,
        "the broker kept descriptors after the sandbox ended: {baseline} -> {after}"
    );
}

/// `WAIT_THEN_CONNECT PORT GO N`: prints `{"ready": pid}`, waits for the file GO, then N new
/// threads each connect to 127.0.0.1:PORT; after at most 5 s, prints how many were answered
/// and what they got.
const WAIT_THEN_CONNECT: &str = r#"
import errno, json, os, socket, sys, threading, time
port, go, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print(json.dumps({'ready': os.getpid()}), flush=True)
while not os.path.exists(go):
    time.sleep(0.02)
res = {}
def one(i):
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', port))
        r = 'ok'
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    res[i] = r
threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
for t in threads:
    t.start()
deadline = time.time() + 5
for t in threads:
    t.join(max(0.0, deadline - time.time()))
print(json.dumps({'answered': len(res), 'results': sorted(res.values())}), flush=True)
os._exit(0)
"#;

/// `SET_NOFILE PID SOFT`: sets the soft open-file limit of process PID.
const SET_NOFILE: &str = r#"
import resource, sys
pid, soft = int(sys.argv[1]), int(sys.argv[2])
_, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
"#;

/// The lowest descriptor number process `pid` does not use: with its soft limit there, it
/// cannot open one more.
fn lowest_free_fd(pid: i32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the broker's fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).expect("a free number")
}

/// F9's other half: a broker out of descriptors left the calls whose pidfd it could not open
/// unanswered for ever (the other sandboxes' connects "were never answered"). With the
/// broker's open-file limit lowered to exactly what it holds, eight new threads of a
/// registered sandbox connect: each is answered at once, `EAGAIN` (`limit:fds`), and once the
/// limit is back the same sandbox connects again.
#[test]
fn f9_a_broker_out_of_descriptors_answers_every_call() {
    let Some(py) = need_python("f9_a_broker_out_of_descriptors_answers_every_call") else {
        return;
    };
    let ok = Canary::tcp4();
    let broker = Broker::start();
    let pid = broker.pid();
    let p = policy(ok.port(), &[], "");
    let dir = TempDir::new();
    let go = dir.path().join("go");
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[
            &py,
            "-c",
            WAIT_THEN_CONNECT,
            &ok.port_str(),
            go.to_str().unwrap(),
            "8",
        ],
    ));
    json_line(&sandbox, "sandbox", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    let nofile = |soft: &str| {
        run(
            Command::new(&py).args(["-c", SET_NOFILE, &pid.to_string(), soft]),
            DEFAULT_TIMEOUT,
        )
        .assert_success();
    };
    let limit = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft = limit
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .expect("the open-file limit")
        .to_owned();
    nofile(&lowest_free_fd(pid).to_string());
    std::fs::write(&go, b"go").expect("go file");
    let answered = json_line(&sandbox, "sandbox", Duration::from_secs(30));
    nofile(&soft);
    assert_eq!(
        answered["answered"], 8,
        "calls left unanswered by a broker out of descriptors: {answered}"
    );
    let results: Vec<&str> = answered["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        results.iter().all(|r| *r == "EAGAIN" || *r == "ok"),
        "{results:?}"
    );
    assert!(results.contains(&"EAGAIN"), "{results:?}");
    let e = audit_rule(&broker, "limit:fds");
    assert_eq!(e[0]["errno"], libc::EAGAIN, "{e:?}");
    assert!(refusals(&broker, "fds") >= 1.0);
    let again = confined_with_broker(
        &broker,
        p.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &ok.port_str()],
    );
    assert_ok(&again);
}

// ---------------------------------------------------------------------------------------
// R5, F10: the blocking pool, and blocked unix sends.

/// `SINK_SENDS PATH N`: N threads each send datagrams to the unix socket PATH until one
/// fails (a receiver that never reads: each blocks once its queue is full). Prints
/// `{"started": n, "pid": pid}`, then `{"ended": errno}` for each thread whose send failed.
/// With `--fork`, the threads run in a child process and the parent prints
/// `{"child": pid}` first, then waits.
const SINK_SENDS: &str = r#"
import errno, json, os, socket, sys, threading, time
path, n = sys.argv[1], int(sys.argv[2])
fork = '--fork' in sys.argv
if fork:
    child = os.fork()
    if child:
        print(json.dumps({'child': child}), flush=True)
        while True:
            time.sleep(60)
lock = threading.Lock()
def one():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        while True:
            s.sendto(b'x' * 64, path)
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
    with lock:
        print(json.dumps({'ended': k}), flush=True)
threading.stack_size(256 * 1024)
for _ in range(n):
    threading.Thread(target=one, daemon=True).start()
print(json.dumps({'started': n, 'pid': os.getpid()}), flush=True)
while True:
    time.sleep(60)
"#;

/// A unix datagram socket in a temporary directory that nobody reads.
struct Sink {
    _dir: TempDir,
    path: std::path::PathBuf,
    _sock: UnixDatagram,
}

impl Sink {
    fn new() -> Sink {
        let dir = TempDir::new();
        let path = dir.path().join("sink.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the sink");
        Sink {
            _dir: dir,
            path,
            _sock: sock,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("UTF-8 path")
    }
}

/// R5 shown (and F10): eight sandboxes with 64 unix sends each blocked on a full receiver took
/// every thread of the broker's blocking pool, and a ninth sandbox's allowed unix connect got
/// no answer while they lasted. Now the eight get the shared part of the pool and are
/// refused past it (`EAGAIN`, `limit:pool`), and the ninth connects at once from the reserve.
/// When the eight are killed, their blocked sends are interrupted (the receiver still never
/// reads): the broker's calls in flight go to 0 and its threads back to where they were.
#[test]
fn r5_f10_eight_sandboxes_blocked_on_a_full_peer_leave_the_ninth_its_calls() {
    let Some(py) = need_python("r5_f10_eight_sandboxes_blocked_on_a_full_peer") else {
        return;
    };
    let sink = Sink::new();
    let canary = Canary::unix_path("ninth.sock");
    let canary_path = canary.path().to_str().unwrap().to_owned();
    let p = policy(1, &[sink.path(), &canary_path], "");
    let broker = Broker::start();
    let flooders: Vec<Running> = (0..8)
        .map(|_| {
            spawn(&mut confined_with_broker_cmd(
                &broker,
                p.as_str(),
                &[&py, "-c", SINK_SENDS, sink.path(), "72"],
            ))
        })
        .collect();
    for (i, f) in flooders.iter().enumerate() {
        json_line(f, &format!("sandbox {i}"), Duration::from_secs(60));
    }
    let in_flight = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(30),
        |v| v >= 300.0,
    );
    assert!(in_flight >= 300.0, "the sends never blocked: {in_flight}");
    // Past the shared part, each sandbox's further sends wait 2 s for a place and give up.
    std::thread::sleep(Duration::from_secs(3));
    let held = broker.metrics()["netjail_calls_in_flight"];
    let started = Instant::now();
    let ninth = run(
        &mut confined_with_broker_cmd(&broker, p.as_str(), &[probe(), "unix", &canary_path]),
        Duration::from_secs(20),
    );
    let took = started.elapsed();
    eprintln!(
        "r5 (figures): {held} calls on the pool while eight sandboxes flood; the ninth's \
         connect took {took:?}; refused by the pool bound: {}",
        refusals(&broker, "pool")
    );
    assert_ok(&ninth);
    assert!(
        took < Duration::from_secs(5),
        "the ninth sandbox waited {took:?}"
    );
    assert!(held <= bounds_pool(), "{held} calls on the pool");
    assert!(refusals(&broker, "pool") >= 1.0, "nothing was refused");
    assert!(!audit_rule(&broker, "limit:pool").is_empty());
    drop(flooders);
    let after = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(15),
        |v| v == 0.0,
    );
    assert_eq!(
        after, 0.0,
        "blocked sends of the killed sandboxes are still in flight"
    );
}

/// The broker's pool bound ([`netjail_broker::POOL`]).
fn bounds_pool() -> f64 {
    netjail_broker::POOL as f64
}

/// F10: a caller killed while the broker performs its blocked unix send for it, the rest of
/// its sandbox running on: the send used to stay blocked (and hold its thread, its place on
/// the pool and its descriptors) until the receiver read. It is now stopped within a check
/// of the reaper. The same sandbox's calls past its 64 on the pool are answered `EAGAIN`
/// (`limit:in-flight`) instead of waiting in the kernel for ever.
#[test]
fn f10_a_send_blocked_for_a_killed_caller_is_stopped_while_its_sandbox_runs_on() {
    let Some(py) = need_python("f10_a_send_blocked_for_a_killed_caller") else {
        return;
    };
    let sink = Sink::new();
    let p = policy(1, &[sink.path()], "");
    let broker = Broker::start();
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[&py, "-c", SINK_SENDS, sink.path(), "80", "--fork"],
    ));
    let child = json_line(&sandbox, "parent", Duration::from_secs(30))["child"]
        .as_i64()
        .expect("child pid") as i32;
    json_line(&sandbox, "child", Duration::from_secs(30));
    let limit = netjail_broker::MAX_IN_FLIGHT as f64;
    let in_flight = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(30),
        |v| v >= limit,
    );
    assert_eq!(
        in_flight, limit,
        "the sends never filled the sandbox's bound"
    );
    // The 16 past the bound: refused once the wait for a place is over.
    let refused = json_line(&sandbox, "child", Duration::from_secs(10));
    assert_eq!(refused["ended"], "EAGAIN", "{refused}");
    assert!(!audit_rule(&broker, "limit:in-flight").is_empty());
    nsys::kill(child, libc::SIGKILL).expect("kill the child");
    let killed = Instant::now();
    let after = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(10),
        |v| v == 0.0,
    );
    eprintln!(
        "f10 (figures): 64 blocked sends stopped {:?} after their caller was killed",
        killed.elapsed()
    );
    assert_eq!(after, 0.0, "the killed caller's sends are still blocked");
    assert_eq!(broker.status().1.len(), 1, "the sandbox runs on");
}

/// `UNIX_CONNECTS PATH N`: N threads each connect a unix stream socket to PATH; prints
/// `{"started": n}` and sleeps.
const UNIX_CONNECTS: &str = r#"
import json, socket, sys, threading, time
path, n = sys.argv[1], int(sys.argv[2])
def one():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        pass
    time.sleep(600)
for _ in range(n):
    threading.Thread(target=one, daemon=True).start()
print(json.dumps({'started': n}), flush=True)
time.sleep(600)
"#;

/// F10: a unix connect waits for room in the server's backlog, and shutting the connecting
/// socket down does not wake it, so the broker's connects for a sandbox that had ended stayed
/// blocked (with their threads and places on the pool) until the server accepted. A server
/// outside the sandbox with a backlog of 0 that never accepts; a sandbox's 20 connects to it
/// block; once the sandbox is killed they are interrupted.
#[test]
fn f10_unix_connects_blocked_on_a_full_backlog_end_with_their_sandbox() {
    let Some(py) = need_python("f10_unix_connects_blocked_on_a_full_backlog") else {
        return;
    };
    let dir = TempDir::new();
    let path = dir.path().join("full.sock");
    let server = nsys::socket(libc::AF_UNIX, libc::SOCK_STREAM).expect("socket");
    nsys::bind(
        &server,
        &nsys::SockAddr::unix_path(path.to_str().unwrap().as_bytes()),
    )
    .expect("bind");
    nsys::listen(&server, 0).expect("listen");
    let path = path.to_str().unwrap().to_owned();
    let p = policy(1, &[&path], "");
    let broker = Broker::start();
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[&py, "-c", UNIX_CONNECTS, &path, "20"],
    ));
    json_line(&sandbox, "sandbox", Duration::from_secs(30));
    let blocked = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(20),
        |v| v >= 18.0,
    );
    assert!(blocked >= 18.0, "the connects never blocked: {blocked}");
    drop(sandbox);
    let after = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(10),
        |v| v == 0.0,
    );
    // A call leaves the pool only once the thread that took the caller's identity for it
    // has returned: none is left blocked.
    assert_eq!(
        after, 0.0,
        "the ended sandbox's unix connects are still blocked"
    );
}

// ---------------------------------------------------------------------------------------
// L8: held calls.

/// `ASK PORT N`: N threads each connect to 127.0.0.1:PORT (held for an operator); prints
/// `{"started": n, "pid": pid}` and, once all returned, `{"results": [...]}`.
const ASK: &str = r#"
import errno, json, os, socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
res, lock = [], threading.Lock()
def one():
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', port))
        r = 'ok'
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    with lock:
        res.append(r)
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
print(json.dumps({'started': n, 'pid': os.getpid()}), flush=True)
for t in threads:
    t.join()
print(json.dumps({'results': res}), flush=True)
"#;

/// L8: with 128 held calls in the whole broker, eight sandboxes holding sixteen each made every
/// other sandbox's `ask` fall back at once. Now a ninth sandbox's ask is held for the operator
/// (and granted), while the eight still hold theirs.
#[test]
fn l8_eight_sandboxes_holding_sixteen_calls_leave_a_ninth_its_ask() {
    let Some(py) = need_python("l8_eight_sandboxes_holding_sixteen_calls") else {
        return;
    };
    let asked = Canary::tcp4();
    let port = asked.port();
    let broker = Broker::start();
    let p = policy_file(&format!(
        "name = \"held\"\ndefault = \"deny\"\nask_timeout = \"60s\"\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    let control = |args: &[&str]| {
        let mut cmd = Command::new(netjail_bin());
        cmd.args(args).arg("--control").arg(broker.control());
        cmd
    };
    let mut watcher = spawn(&mut control(&["watch", "--pending-only", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.metrics()["netjail_operators_watching"] < 1.0 {
        assert!(Instant::now() < deadline, "the watcher never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let holders: Vec<Running> = (0..8)
        .map(|_| {
            spawn(&mut confined_with_broker_cmd(
                &broker,
                p.as_str(),
                &[&py, "-c", ASK, &port.to_string(), "16"],
            ))
        })
        .collect();
    for (i, h) in holders.iter().enumerate() {
        json_line(h, &format!("holder {i}"), Duration::from_secs(60));
    }
    let pending = wait_metric(
        &broker,
        "netjail_pending_calls",
        Duration::from_secs(30),
        |v| v >= 128.0,
    );
    assert_eq!(
        pending, 128.0,
        "the eight sandboxes do not hold 16 calls each"
    );
    let held = || -> Vec<Value> {
        let out = run(
            &mut control(&["pending", "--json"]),
            Duration::from_secs(20),
        );
        out.assert_success();
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    };
    let eight: std::collections::BTreeSet<String> =
        held().iter().map(|v| v["sandbox"].to_string()).collect();
    assert_eq!(eight.len(), 8, "{eight:?}");
    let ninth = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[&py, "-c", ASK, &port.to_string(), "1"],
    ));
    json_line(&ninth, "ninth", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let mine = held()
            .into_iter()
            .find(|v| !eight.contains(&v["sandbox"].to_string()));
        if let Some(v) = mine {
            break v["id"].as_u64().expect("an id");
        }
        if Instant::now() > deadline {
            let result = ninth.read_line(Duration::from_secs(1)).unwrap_or_default();
            panic!("the ninth sandbox's ask was never held; it got {result}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    run(
        &mut control(&["grant", &id.to_string(), "--once"]),
        Duration::from_secs(20),
    )
    .assert_success();
    let result = json_line(&ninth, "ninth", Duration::from_secs(20));
    assert_eq!(result["results"][0], "ok", "{result}");
    assert_eq!(
        broker.metrics()["netjail_pending_calls"],
        128.0,
        "the eight sandboxes' calls are still held"
    );
    drop(holders);
    watcher.terminate(Duration::from_secs(5));
}
