//! Red team B (address decoding, options, root sandboxes, bounds): attacks that got out
//! against main at a813f04. Each test asserts the attack is REFUSED, so each fails until the
//! hole is closed. Every attack is first shown working unconfined (or, where the point is a
//! refusal the filter makes, the refusal is shown for the direct form).
//!
//! Nothing here reaches past loopback or a network namespace the test makes.

use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker_cmd, netjail_bin, policy_file, run, unconfined, Broker, DEFAULT_TIMEOUT,
};

use crate::{have_setpriv, need_python, need_root};

/// `prlimit(PID, RLIMIT_CPU, (0, 0))` for every PID argument, printing
/// `{"PID": "ok" | ERRNO}`.
const PY_PRLIMIT_CPU: &str = r#"
import errno, json, resource, sys
out = {}
for pid in sys.argv[1:]:
    try:
        resource.prlimit(int(pid), resource.RLIMIT_CPU, (0, 0))
        out[pid] = "ok"
    except OSError as e:
        out[pid] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

/// A process that burns CPU (so that an `RLIMIT_CPU` of 0 kills it), as `prefix` says.
fn spinner(prefix: &[&str]) -> std::process::Child {
    let mut args: Vec<&str> = prefix.to_vec();
    args.extend(["sh", "-c", "while :; do :; done"]);
    Command::new(args[0]).args(&args[1..]).spawn().unwrap()
}

/// Whether `child` is still running `for_how_long` from now.
fn survives(child: &mut std::process::Child, for_how_long: Duration) -> bool {
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Attack: a root sandbox (`--allow-root`, `deny-all`) calls
/// `prlimit(netjaild, RLIMIT_CPU, {0, 0})`. The kernel allows it (same uids, and
/// `CAP_SYS_RESOURCE` is kept), and SIGKILLs netjaild at its next CPU tick: every other
/// sandbox's calls then wait 30 s and fail with `ENOSYS`, new sandboxes cannot register. The
/// same call with `RLIMIT_NOFILE` (12) leaves the broker unable to accept or serve anyone
/// ("out of fds; pausing accept", a registration that hangs), and `setpriority` /
/// `sched_setscheduler` renice it at will. Landlock's signal scope refuses `kill()` of the
/// broker, but no scope covers `prlimit`.
///
/// Expected (invariant 10, "no power outside its network policy", and the bounds' promise
/// that every call gets an answer): the sandbox cannot change another process's resource
/// limits; `prlimit` on any pid but its own is `EPERM`, and the broker lives on.
///
/// Root cause: `client/src/filter.rs:230` (`rules`) and `client/src/hardening.rs` refuse no
/// `prlimit64`/`setrlimit` of another pid (nor `setpriority`, `sched_setscheduler`,
/// `sched_setaffinity`, `ioprio_set` of another pid), and `client/src/root.rs` keeps
/// `CAP_SYS_RESOURCE` and `CAP_SYS_NICE` for root sandboxes; docs/security.md "Root
/// sandboxes" lists signals among what uid 0 keeps only "where Landlock's signal scope is
/// missing".
#[test]
fn rt_b_root_sandbox_prlimit_kills_the_broker() {
    let test = "rt_b_root_sandbox_prlimit_kills_the_broker";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    // Unconfined: prlimit(RLIMIT_CPU, 0) of a busy process kills it.
    let mut victim = spinner(&[]);
    let pid = victim.id().to_string();
    let out = unconfined(&[&py, "-c", PY_PRLIMIT_CPU, &pid]);
    assert_eq!(out.json()[&pid], "ok", "{}", out.describe());
    assert!(
        !survives(&mut victim, Duration::from_secs(5)),
        "unconfined: the victim lives"
    );

    // Confined: the same call on the broker that serves the sandbox.
    let mut broker = Broker::start();
    let bpid = broker.pid().to_string();
    let out = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &[&py, "-c", PY_PRLIMIT_CPU, &bpid]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let answer = out.json()[&bpid].clone();
    // Another sandbox of the same broker connects to a listener, twenty times over 3 s: the
    // broker runs (and so meets its CPU limit).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c)
        }
    });
    let victim = format!(
        "import socket, time\nok = 0\nfor i in range(20):\n    try:\n        \
         socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); ok += 1\n    \
         except OSError:\n        pass\n    time.sleep(0.15)\nprint('{{\"ok\": %d}}' % ok)\n"
    );
    let out = run(
        &mut confined_with_broker_cmd(&broker, "loopback-only", &[&py, "-c", &victim]),
        Duration::from_secs(90),
    );
    let served = out.json.as_ref().map(|v| v["ok"].clone());
    let alive = broker.is_alive();
    assert!(
        alive && answer == "EPERM",
        "a root sandbox set netjaild's RLIMIT_CPU ({answer}); broker alive afterwards: {alive}; \
         another sandbox's connects served: {served:?}; {}",
        out.describe()
    );
}

/// Attack: a sandbox of an ordinary user (`nobody`, `deny-all`, Landlock on) kills a process
/// of the same user outside the sandbox with `prlimit(PID, RLIMIT_CPU, {0, 0})`: the kernel
/// SIGKILLs it at its next CPU tick. `kill(PID, SIGTERM)` from the same sandbox is `EPERM`
/// (Landlock's signal scope): the limit is a signal by another name. The same reaches the
/// sandbox's own launcher (`netjail run`, which holds its listener and embedded broker) and a
/// program embedding the broker for several sandboxes of one user.
///
/// Expected: as for `kill()`, the sandbox has no power over processes outside its domain;
/// `prlimit` of another process is `EPERM`.
///
/// Root cause: as `rt_b_root_sandbox_prlimit_kills_the_broker`: the filter
/// (`client/src/filter.rs:230`, `rules`) lets `prlimit64` name any pid, and Landlock's scopes
/// (`client/src/landlock.rs`) cover signals and abstract sockets only.
#[test]
fn rt_b_prlimit_is_a_signal_past_the_landlock_scope() {
    let test = "rt_b_prlimit_is_a_signal_past_the_landlock_scope";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    // A python3 that `nobody` may run (the one on the test's PATH may live under /root).
    let py = "/usr/bin/python3";
    if !std::path::Path::new(py).exists() {
        netjail_integration_tests::skip(test, "/usr/bin/python3 not found");
        return;
    }
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let mut victim = spinner(&nobody);
    let pid = victim.id().to_string();
    let kill_then_prlimit = format!(
        "import os, errno, json\n\
         try:\n    os.kill({pid}, 15); k = 'ok'\n\
         except OSError as e:\n    k = errno.errorcode[e.errno]\n\
         print(json.dumps({{'kill': k}}))\n{PY_PRLIMIT_CPU}"
    );
    let mut cmd = Command::new(nobody[0]);
    cmd.args(&nobody[1..])
        .arg(netjail_bin())
        .env_remove("NETJAIL_BROKER")
        .args(["run", "--policy", "deny-all", "--"])
        .args([py, "-c", &kill_then_prlimit, &pid]);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    assert!(
        out.stdout.contains("\"kill\": \"EPERM\""),
        "Landlock scope: {}",
        out.describe()
    );
    let answer = out.json()[&pid].clone();
    let lives = survives(&mut victim, Duration::from_secs(4));
    if lives {
        let _ = victim.kill();
        let _ = victim.wait();
    }
    assert!(
        lives && answer == "EPERM",
        "the sandbox set RLIMIT_CPU of a process outside it ({answer}); it survived: {lives}"
    );
}

/// Attack: under a policy allowing `inet:*` (every type and protocol of `AF_INET`) and
/// keeping `CAP_NET_RAW`, but not the `packet` family, `socket(AF_INET, SOCK_PACKET,
/// htons(ETH_P_ALL))` gives an `AF_PACKET` socket: `__sock_create` turns `PF_INET` +
/// `SOCK_PACKET` into `PF_PACKET`. `socket(AF_PACKET, ...)` is refused by the filter
/// (`EAFNOSUPPORT`); through the alias the sandbox sniffs every frame of its network
/// namespace (another process's UDP payload is seen in the run), which an `inet:raw` socket
/// cannot (it sees only its protocol, to local addresses).
///
/// Expected: the allow-list is by the family the kernel creates; `SOCK_PACKET` (type 10) in
/// `AF_INET` is refused unless `packet` is allowed.
///
/// Root cause: `client/src/filter.rs:434` (`socket_rules`): a family whose entry has no type
/// (`inet:*`) gets no per-type rule, so type 10 passes.
#[test]
fn rt_b_inet_sock_packet_is_a_packet_socket() {
    let test = "rt_b_inet_sock_packet_is_a_packet_socket";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let policy = policy_file(
        "name = \"inet-raw\"\ndefault = \"deny\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n\
         [sockets]\nallow = [\"inet:*\", \"unix:*\"]\n",
    );
    let probe = r#"
import errno, json, socket
out = {}
for name, fam, ty in [("packet", 17, socket.SOCK_RAW), ("inet_sock_packet", socket.AF_INET, 10)]:
    try:
        s = socket.socket(fam, ty, socket.htons(3))
        out[name] = "family %d" % s.getsockopt(socket.SOL_SOCKET, 39)
        s.close()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;
    let script = format!(
        "ip link set lo up && {py} -c '{probe}' && {nj} run --allow-root --policy {pol} -- {py} -c '{probe}'",
        nj = netjail_bin().display(),
        pol = policy.as_str(),
    );
    let out = unconfined(&["unshare", "-n", "sh", "-c", &script]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.describe());
    assert_eq!(
        lines[0]["packet"],
        "family 17",
        "unconfined: {}",
        out.describe()
    );
    assert_eq!(
        lines[0]["inet_sock_packet"],
        "family 17",
        "unconfined: {}",
        out.describe()
    );
    assert_eq!(
        lines[1]["packet"],
        "EAFNOSUPPORT",
        "confined: {}",
        out.describe()
    );
    assert_ne!(
        lines[1]["inet_sock_packet"],
        "family 17",
        "confined: the packet family refused by name, made through inet:SOCK_PACKET: {}",
        out.describe()
    );
}

/// Attack: a root sandbox (`--allow-root`, `deny-all`) lowers netjaild below everyone:
/// `/proc/BROKER/oom_score_adj` = 1000 (the OOM killer's first choice), `SCHED_IDLE` on every
/// broker thread (`sched_setscheduler`), its autogroup nice 19, one CPU (`sched_setaffinity`),
/// the idle I/O class (`ioprio_set`). Each works (same uid; `CAP_SYS_NICE` and
/// `CAP_SYS_RESOURCE` are kept) while `kill()` of the same pid is `EPERM` (Landlock). With the
/// broker at `SCHED_IDLE` any CPU load on the machine (the root sandbox's own spinning
/// threads, at `SCHED_FIFO` with the kept `CAP_SYS_NICE`) leaves every sandbox's calls waiting.
///
/// Expected: a sandbox changes no scheduling, OOM or I/O attribute of a process outside it.
///
/// Root cause: as `rt_b_root_sandbox_prlimit_kills_the_broker`: `client/src/filter.rs:230`
/// (`rules`) lets `sched_setscheduler`, `sched_setaffinity`, `setpriority`, `ioprio_set` name
/// any pid; `client/src/root.rs` leaves `/proc/PID/*` of other processes writable and keeps
/// `CAP_SYS_NICE`/`CAP_SYS_RESOURCE`.
#[test]
fn rt_b_root_sandbox_deprioritises_the_broker() {
    let test = "rt_b_root_sandbox_deprioritises_the_broker";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let probe = r#"
import errno, json, os, sys
pid = int(sys.argv[1])
out = {}
def attempt(name, f):
    try:
        f(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def oom():
    with open("/proc/%d/oom_score_adj" % pid, "w") as f:
        f.write("1000")
def idle():
    for tid in os.listdir("/proc/%d/task" % pid):
        os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
attempt("oom_score_adj", oom)
attempt("sched_idle", idle)
attempt("affinity", lambda: os.sched_setaffinity(pid, {0}))
print(json.dumps(out))
"#;
    // Unconfined, on a process of the test's own.
    let mut victim = spinner(&[]);
    let vpid = victim.id().to_string();
    let native = unconfined(&[&py, "-c", probe, &vpid]);
    let _ = victim.kill();
    let _ = victim.wait();
    for k in ["oom_score_adj", "sched_idle", "affinity"] {
        assert_eq!(
            native.json()[k],
            "ok",
            "unconfined {k}: {}",
            native.describe()
        );
    }
    let mut broker = Broker::start();
    let bpid = broker.pid().to_string();
    let out = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &[&py, "-c", probe, &bpid]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let oom = std::fs::read_to_string(format!("/proc/{bpid}/oom_score_adj")).unwrap_or_default();
    let changed: Vec<&str> = ["oom_score_adj", "sched_idle", "affinity"]
        .into_iter()
        .filter(|k| out.json()[*k] == "ok")
        .collect();
    assert!(broker.is_alive());
    assert!(
        changed.is_empty(),
        "a root sandbox changed the broker's {changed:?} (oom_score_adj now {}): {}",
        oom.trim(),
        out.describe()
    );
}
