//! Issue 17, item 4: what operators and the command line are told is what happened.
//!
//! - `netjail status` and `netjail metrics` count a call by what was decided (the audit's
//!   `decision`), never by what it returned: an allowed non-blocking connect (`EINPROGRESS`),
//!   an allowed connect to a closed port (`ECONNREFUSED`) and a send on a connected socket the
//!   kernel refuses are no denials.
//! - A held call does not outlive its operators: when the last `watch` leaves, every held
//!   call gets its policy's fallback at once (rule M4), as docs/operators.md says.
//! - `netjail run --broker PATH` uses that broker or fails saying why; only with no broker
//!   named does it start one of its own.
//! - Every decision of a sandbox is audited before its `sandbox retired` event, and names the
//!   caller's program, even when the caller exits (or is killed) as it is answered.
//!
//! Each test runs a real `netjaild` (or `netjail run`), real confined programs and the real
//! operator commands; traffic goes to loopback only.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    closed_port, confined_with_broker_cmd, netjail_bin, policy_file, python3, run, skip, spawn,
    unconfined, Broker, Canary, Outcome, Running, TempDir, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{assert_eperm, assert_ok, probe};

/// The operator command `args` against `broker`.
fn ops(broker: &Broker, args: &[&str]) -> Outcome {
    run(
        Command::new(netjail_bin())
            .args(args)
            .arg("--control")
            .arg(broker.control()),
        Duration::from_secs(20),
    )
}

/// `netjail watch --json` against `broker`, kept running; returns once the broker counts
/// `watching` operators.
fn watcher(broker: &Broker, watching: u64) -> Running {
    let w = spawn(
        Command::new(netjail_bin())
            .args(["watch", "--json", "--control"])
            .arg(broker.control()),
    );
    wait_for(|| broker.status().0["operators"].as_u64() == Some(watching));
    w
}

/// Waits (at most 15 s) until `done` says so.
fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "waited 15 s in vain");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ids of the calls `broker` holds now.
fn pending(broker: &Broker) -> Vec<u64> {
    let out = ops(broker, &["pending", "--json"]);
    out.assert_success();
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_u64())
        .collect()
}

fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event[key].as_str().unwrap_or("")
}

// ---- counts by decision ---------------------------------------------------------------------

/// One process, one call of each kind; prints the errno each call gave (0: none).
const PY_ERRNOS: &str = r#"
import json, socket, sys, time
listening, closed, denied = (int(a) for a in sys.argv[1:4])
out = {}
s = socket.socket()
s.setblocking(False)
out['nonblocking'] = s.connect_ex(('127.0.0.1', listening))
out['closed'] = socket.socket().connect_ex(('127.0.0.1', closed))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out['udp_connect'] = u.connect_ex(('127.0.0.1', closed))
def send():
    try:
        u.sendmsg([b'x'])
        return 0
    except OSError as e:
        return e.errno
out['first_send'] = send()
time.sleep(0.1)
out['second_send'] = send()
out['denied'] = socket.socket().connect_ex(('127.0.0.1', denied))
print(json.dumps(out), flush=True)
"#;

/// Issue 17: `netjail status` counted a call by its errno: an allowed non-blocking connect
/// (`EINPROGRESS`), an allowed connect to a closed port (`ECONNREFUSED`) and a send on a
/// connected UDP socket that the kernel refuses (`ECONNREFUSED`, no decision needed) showed
/// as denied. They count as what the policy decided, in status, metrics and the audit.
#[test]
fn i17_status_and_metrics_count_by_decision_not_by_errno() {
    let Some(py) = python3() else {
        return skip("i17_status_count", "no python3");
    };
    let py = py.to_string_lossy().into_owned();
    let listening = Canary::tcp4();
    let denied = Canary::tcp4();
    let closed = closed_port();
    let args = [listening.port_str(), closed.to_string(), denied.port_str()];
    let argv = |py: &str| -> Vec<String> {
        [py, "-c", PY_ERRNOS]
            .into_iter()
            .map(String::from)
            .chain(args.iter().cloned())
            .collect()
    };
    // The kernel's answers, unconfined.
    let plain = unconfined(&argv(&py).iter().map(String::as_str).collect::<Vec<_>>());
    plain.assert_success();
    let kernel = plain.json().clone();
    assert_eq!(kernel["closed"], libc::ECONNREFUSED, "{}", plain.describe());
    assert_eq!(
        kernel["second_send"],
        libc::ECONNREFUSED,
        "{}",
        plain.describe()
    );
    assert_eq!(kernel["denied"], 0, "{}", plain.describe());

    let policy = policy_file(&format!(
        "name = \"counted\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\", \
         \"tcp://127.0.0.1:{closed}\", \"udp://127.0.0.1:{closed}\"]\n",
        listening.port()
    ));
    let broker = Broker::start();
    let confined = run(
        &mut confined_with_broker_cmd(
            &broker,
            policy.as_str(),
            &argv(&py).iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        DEFAULT_TIMEOUT,
    );
    confined.assert_success();
    let got = confined.json();
    // Faithful: every allowed call answered as the kernel answered it unconfined.
    for key in ["closed", "udp_connect", "first_send", "second_send"] {
        assert_eq!(got[key], kernel[key], "{key}: {}", confined.describe());
    }
    let nonblocking = got["nonblocking"].as_i64();
    assert!(
        [Some(0), Some(libc::EINPROGRESS as i64)].contains(&nonblocking),
        "{}",
        confined.describe()
    );
    assert_eq!(got["denied"], libc::EPERM, "{}", confined.describe());

    // Three connects allowed (two of them failed in the kernel), one denied, two sends that
    // needed no decision (the second refused by the kernel), no error.
    // (Each call is counted before it is audited.)
    let decisions = broker.wait_audit(6, Duration::from_secs(10), |e| {
        text(e, "message") == "decision"
    });
    let counters = broker.status().0["counters"].clone();
    let count = |k: &str| counters[k].as_u64();
    assert_eq!(
        [
            count("allowed"),
            count("denied"),
            count("passed"),
            count("errors")
        ],
        [Some(3), Some(1), Some(2), Some(0)],
        "status counters: {counters}"
    );
    let metrics = broker.metrics();
    let decided = |op: &str, verdict: &str| {
        metrics
            .get(&format!(
                "netjail_decisions_total{{op=\"{op}\",verdict=\"{verdict}\"}}"
            ))
            .copied()
    };
    assert_eq!(decided("connect", "allow"), Some(3.0));
    assert_eq!(decided("connect", "deny"), Some(1.0));
    assert_eq!(decided("sendmsg", "pass"), Some(2.0));
    assert_eq!(decided("sendmsg", "error"), Some(0.0));
    // The audit says the same, call by call.
    let verdicts: Vec<(&str, &str, i64)> = decisions
        .iter()
        .map(|e| {
            (
                text(e, "op"),
                text(e, "decision"),
                e["errno"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("connect", "allow", nonblocking.unwrap()),
            ("connect", "allow", libc::ECONNREFUSED as i64),
            ("connect", "allow", 0),
            ("sendmsg", "pass", 0),
            ("sendmsg", "pass", libc::ECONNREFUSED as i64),
            ("connect", "deny", libc::EPERM as i64),
        ],
        "{}",
        broker.log()
    );
    let out = ops(&broker, &["status"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("calls: 3 allowed, 1 denied, 2 passed, 0 errors"),
        "{}",
        out.describe()
    );
}

// ---- held calls and their operators ---------------------------------------------------------

/// An `ask` policy for connects to 127.0.0.1:`port`, held 60 s, then `fallback`.
fn asking(port: u16, fallback: &str) -> netjail_integration_tests::TempPath {
    policy_file(&format!(
        "name = \"asking-{fallback}\"\ndefault = \"deny\"\nask_timeout = \"60s\"\n\
         ask_fallback = \"{fallback}\"\n[[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ))
}

/// Rule M4 (docs/operators.md): "with nobody watching [held calls] get the fallback at
/// once". A held call used to wait out its whole `ask_timeout` after the last `watch` left.
/// Now it gets its policy's fallback as soon as the last operator goes (one that stays keeps
/// it held), whatever the fallback says.
#[test]
fn i17_s_m4_held_calls_get_the_fallback_when_the_last_watcher_leaves() {
    let web = Canary::tcp4();
    let (denying, allowing) = (asking(web.port(), "deny"), asking(web.port(), "allow"));
    let broker = Broker::start();
    let mut first = watcher(&broker, 1);
    let mut second = watcher(&broker, 2);
    let connect = |policy: &netjail_integration_tests::TempPath| {
        spawn(&mut confined_with_broker_cmd(
            &broker,
            policy.as_str(),
            &[probe(), "connect", "tcp", "127.0.0.1", &web.port_str()],
        ))
    };
    let refused = connect(&denying);
    wait_for(|| pending(&broker).len() == 1);
    let allowed = connect(&allowing);
    wait_for(|| pending(&broker).len() == 2);

    // One operator leaves; another still watches: the calls wait for an answer.
    first.kill();
    wait_for(|| broker.status().0["operators"].as_u64() == Some(1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pending(&broker).len(), 2, "{}", broker.log());
    assert_eq!(web.count(), 0);

    // The last one leaves: nobody can answer, each call gets its fallback now, not in 60 s.
    let left = Instant::now();
    second.kill();
    let refused = refused.wait(Duration::from_secs(15));
    let allowed = allowed.wait(Duration::from_secs(15));
    let took = left.elapsed();
    assert_eperm(&refused);
    assert_ok(&allowed);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(web.wait_count(1, Duration::from_secs(5)), 1);
    assert!(pending(&broker).is_empty());

    let ended = broker.wait_audit(2, Duration::from_secs(10), |e| {
        text(e, "operator").starts_with("unattended: the last operator stopped watching")
    });
    let decisions: Vec<&str> = ended.iter().map(|e| text(e, "decision")).collect();
    assert_eq!(decisions.len(), 2, "{}", broker.log());
    assert!(decisions.contains(&"allow") && decisions.contains(&"deny"));
    let counters = broker.status().0["counters"].clone();
    assert_eq!(counters["unattended"], 2, "{counters}");
    assert_eq!(counters["timed_out"], 0, "{counters}");
}

// ---- a broker named on the command line -----------------------------------------------------

/// `netjail run [--broker SOCK] --policy allow-all -- nj-probe touch MARKER`, with
/// `NETJAIL_BROKER` set to `env` (or removed).
fn run_touch(broker: Option<&Path>, env: Option<&Path>, marker: &Path) -> Outcome {
    let mut cmd = Command::new(netjail_bin());
    match env {
        Some(path) => cmd.env("NETJAIL_BROKER", path),
        None => cmd.env_remove("NETJAIL_BROKER"),
    };
    cmd.args(["run", "--allow-root"]);
    if let Some(path) = broker {
        cmd.arg("--broker").arg(path);
    }
    cmd.args(["--policy", "allow-all", "--", probe(), "touch"])
        .arg(marker);
    run(&mut cmd, DEFAULT_TIMEOUT)
}

/// Issue 17: `--broker PATH` naming no broker silently started an embedded one, so a program
/// meant to be decided by that broker (its policies, its operators, its audit) ran under
/// another. A broker named with `--broker` or `NETJAIL_BROKER` is used or nothing runs, and
/// the error says what is at the path; with no broker named, `netjail run` still starts its
/// own when none runs at the default socket.
#[test]
fn i17_a_named_broker_is_used_or_nothing_runs() {
    let dir = TempDir::new();
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("write a file");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a socket"));
    let stream = dir.path().join("stream.sock");
    let _stream = std::os::unix::net::UnixListener::bind(&stream).expect("bind a socket");
    let cases = [
        ("missing", dir.path().join("none.sock"), "no such file"),
        ("file", file, "not a socket"),
        (
            "directory",
            dir.path().to_path_buf(),
            "a directory, not a socket",
        ),
        (
            "stale",
            stale,
            "a socket nobody listens on: its broker is gone",
        ),
        ("stream", stream, "a socket of another type"),
    ];
    for (what, path, reason) in &cases {
        for by_env in [false, true] {
            let marker = dir.path().join(format!("ran-{what}-{by_env}"));
            let out = if by_env {
                run_touch(None, Some(path), &marker)
            } else {
                run_touch(Some(path), None, &marker)
            };
            let said = format!("no broker at {} ({reason}", path.display());
            assert_eq!(out.code(), Some(125), "{what}: {}", out.describe());
            assert!(out.stderr.contains(&said), "{what}: {}", out.describe());
            assert!(
                !marker.exists(),
                "{what}: the command ran under another broker: {}",
                out.describe()
            );
        }
    }

    // The broker named serves the command.
    let broker = Broker::start();
    let marker = dir.path().join("ran-named");
    let out = run_touch(Some(broker.socket()), None, &marker);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(marker.exists());
    broker.wait_audit(1, Duration::from_secs(10), |e| {
        text(e, "message") == "sandbox retired"
    });

    // No broker named: the zero set-up path (an embedded broker unless one runs at the
    // default socket, which is then used).
    let marker = dir.path().join("ran-default");
    let out = run_touch(None, None, &marker);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(marker.exists(), "{}", out.describe());

    // `--embedded` asks for the launcher's own broker, and cannot go with a named one.
    let marker = dir.path().join("ran-embedded");
    let mut cmd = Command::new(netjail_bin());
    cmd.env_remove("NETJAIL_BROKER")
        .args([
            "run",
            "--allow-root",
            "--embedded",
            "--policy",
            "allow-all",
            "--",
        ])
        .args([probe(), "touch"])
        .arg(&marker);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(marker.exists(), "{}", out.describe());
    let mut cmd = Command::new(netjail_bin());
    cmd.env_remove("NETJAIL_BROKER")
        .args(["run", "--allow-root", "--embedded", "--broker"])
        .arg(broker.socket())
        .args(["--policy", "allow-all", "--", "true"]);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{}", out.describe());
}

// ---- the audit: order and program -----------------------------------------------------------

/// The audit events of `broker` by sandbox: the indices of its decisions, of its
/// `sandbox retired` event, and the programs its decisions name.
#[derive(Default, Debug)]
struct Trail {
    decisions: Vec<usize>,
    retired: Vec<usize>,
    programs: Vec<String>,
}

fn trails(broker: &Broker) -> BTreeMap<String, Trail> {
    let mut by_sandbox: BTreeMap<String, Trail> = BTreeMap::new();
    for (i, e) in broker.audit_events().iter().enumerate() {
        let sandbox = text(e, "sandbox").to_string();
        match text(e, "message") {
            "decision" => {
                let t = by_sandbox.entry(sandbox).or_default();
                t.decisions.push(i);
                t.programs.push(text(e, "program").to_string());
            }
            "sandbox retired" => by_sandbox.entry(sandbox).or_default().retired.push(i),
            _ => {}
        }
    }
    by_sandbox
}

/// Every sandbox of `broker` has retired once, after all its decisions, and each decision
/// names a program whose path ends with `program`; `sandboxes` of them, `calls` decisions each.
fn assert_trails(broker: &Broker, sandboxes: usize, calls: usize, program: &str) {
    wait_for(|| {
        trails(broker)
            .values()
            .filter(|t| !t.retired.is_empty())
            .count()
            >= sandboxes
    });
    // Whatever comes late would come now.
    std::thread::sleep(Duration::from_millis(600));
    let trails = trails(broker);
    assert_eq!(trails.len(), sandboxes, "{trails:?}");
    for (sandbox, t) in &trails {
        assert_eq!(t.retired.len(), 1, "{sandbox}: {t:?}\n{}", broker.log());
        assert_eq!(
            t.decisions.len(),
            calls,
            "{sandbox}: {t:?}\n{}",
            broker.log()
        );
        assert!(
            t.decisions.iter().all(|&d| d < t.retired[0]),
            "{sandbox}: a decision audited after `sandbox retired`: {t:?}\n{}",
            broker.log()
        );
        assert!(
            t.programs
                .iter()
                .all(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(program))),
            "{sandbox}: the program is not named: {t:?}\n{}",
            broker.log()
        );
    }
}

/// Holds a connect on a thread of its own, and leaves the process (`os._exit`) while it is
/// held.
const PY_EXIT_WHILE_HELD: &str = r#"
import os, socket, sys, threading, time
port, after = int(sys.argv[1]), float(sys.argv[2])
def held():
    try:
        socket.socket().connect(('127.0.0.1', port))
    except OSError:
        pass
threading.Thread(target=held, daemon=True).start()
time.sleep(after)
os._exit(0)
"#;

/// Issue 17: audit events came after `sandbox retired`, with `program="?"`: the receiver
/// retired the sandbox as soon as its last task exited, while its calls on the blocking pool
/// were still being answered, and the program was read after the answer, when the caller
/// may be gone. Here a call is held for an operator when its process exits: its decision is
/// audited before the sandbox retires, and names python.
#[test]
fn i17_a_call_held_when_its_process_exits_is_audited_before_the_sandbox_retires() {
    let Some(py) = python3() else {
        return skip("i17_held_exit", "no python3");
    };
    let web = Canary::tcp4();
    let policy = asking(web.port(), "deny");
    let broker = Broker::start();
    let _watch = watcher(&broker, 1);
    let program = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[
            py.to_str().expect("utf-8"),
            "-c",
            PY_EXIT_WHILE_HELD,
            &web.port_str(),
            "3",
        ],
    ));
    wait_for(|| pending(&broker).len() == 1);
    let out = program.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_trails(&broker, 1, 1, "python3");
    let gone = broker.audit_events();
    let decision = gone
        .iter()
        .find(|e| text(e, "message") == "decision")
        .expect("a decision");
    assert!(
        text(decision, "operator").starts_with("gone: "),
        "{decision}"
    );
    assert_eq!(web.count(), 0);
}

/// The same for programs whose last call is answered as they exit: many short runs, their
/// calls decided on the receiver (a policy that never asks) and on the blocking pool (one
/// that may), one allowed connect each.
#[test]
fn i17_every_decision_is_audited_before_its_sandbox_retires_and_names_the_program() {
    let web = Canary::tcp4();
    let fast = policy_file(&format!(
        "name = \"fast\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        web.port()
    ));
    let pool = policy_file(&format!(
        "name = \"pool\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        web.port(),
        closed_port()
    ));
    const RUNS: usize = 15;
    for policy in [&fast, &pool] {
        let broker = Broker::start();
        for _ in 0..RUNS {
            let out = run(
                &mut confined_with_broker_cmd(
                    &broker,
                    policy.as_str(),
                    &[probe(), "connect", "tcp", "127.0.0.1", &web.port_str()],
                ),
                DEFAULT_TIMEOUT,
            );
            assert_ok(&out);
        }
        assert_trails(&broker, RUNS, 1, "nj-probe");
    }
}
