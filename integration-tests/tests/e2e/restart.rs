//! Restart without loss (issue 8): `netjail run` keeps its copy of the listener and registers
//! the sandbox again with the next broker; that broker decides the calls the dead one had
//! received and not answered (its journal, `broker/src/journal.rs`). With no broker coming
//! back, the calls fail closed.

use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker_cmd, netjail_bin, policy_file, python3, run, skip, spawn, unconfined,
    Broker, Canary, DEFAULT_TIMEOUT,
};
use serde_json::Value;

/// Asserts that the program exited with status 0.
#[track_caller]
fn assert_exit_0(out: &netjail_integration_tests::Outcome) {
    assert!(out.status.success(), "{}", out.describe());
}

/// `argv`: ALLOWED DENIED N. N connects to ALLOWED, each of which must succeed, and after every
/// fifth one a connect to DENIED, which the policy refuses. Prints `{"ok": .., "errors": {..},
/// "denied": {errno: count}}`.
const PY_LOOP: &str = r#"
import errno, json, socket, sys
allowed, denied, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok, errors, refused = 0, {}, {}
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
for i in range(n):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", allowed)); ok += 1
    except OSError as e:
        errors[name(e)] = errors.get(name(e), 0) + 1
    s.close()
    if i % 5 == 4:
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", denied)); k = "ok"
        except OSError as e:
            k = name(e)
        refused[k] = refused.get(k, 0) + 1
        s.close()
print(json.dumps({"ok": ok, "errors": errors, "denied": refused}))
"#;

/// Waits until `canary` has counted at least `n` connections, at most 30 s.
fn wait_count(canary: &Canary, n: u64, what: &str, broker: &Broker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while canary.count() < n {
        assert!(
            Instant::now() < deadline,
            "{what}: the listener counted {} of {n} within 30 s\n--- broker ---\n{}",
            canary.count(),
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `waiting` counts of the "registered again" lines of the broker's log: how many calls
/// each new broker took over from a dead one.
fn taken_over(broker: &Broker) -> Vec<u64> {
    broker
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sandbox registered again"))
        })
        .filter_map(|v| v["waiting"].as_u64())
        .collect()
}

/// Three times while a confined python3 loops allowed connects (and a denied one every fifth),
/// `netjaild` is killed with SIGKILL, and a new one is started at the same paths. Every allowed
/// connect completes, exactly once (the listener counts them all and no more), every denied
/// one is refused, and nothing passes while no broker runs.
#[test]
fn restart_sigkill_mid_loop_a_successor_decides_every_call() {
    let test = "restart_sigkill_mid_loop_a_successor_decides_every_call";
    let Some(py) = python3() else {
        return skip(test, "python3 not found");
    };
    let py = py.to_string_lossy().into_owned();
    let allowed = Canary::tcp4();
    let denied = Canary::tcp4();
    let (a, d) = (
        allowed.addr().port().to_string(),
        denied.addr().port().to_string(),
    );
    // Unconfined, the denied port answers: refusing it is the policy's doing.
    let out = unconfined(&[&py, "-c", PY_LOOP, &a, &d, "10"]);
    assert_exit_0(&out);
    assert_eq!(out.json()["denied"]["ok"], 2, "{}", out.describe());
    assert_eq!(denied.wait_count(2, Duration::from_secs(5)), 2);
    let base_allowed = allowed.count();

    const N: u64 = 2000;
    let policy = policy_file(&format!(
        "name = \"restart\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{a}\"]\n"
    ));
    let mut broker = Broker::start();
    let n = N.to_string();
    let mut cmd =
        confined_with_broker_cmd(&broker, policy.as_str(), &[&py, "-c", PY_LOOP, &a, &d, &n]);
    let program = spawn(&mut cmd);
    let mut gaps = Vec::new();
    for round in 1..=3u64 {
        wait_count(
            &allowed,
            base_allowed + round * 300,
            "before the kill",
            &broker,
        );
        // Not right after a connect was seen to complete: land at some other point of the
        // loop, often while the broker has a call in hand.
        std::thread::sleep(Duration::from_micros(300 * round));
        broker.kill();
        // No broker: nothing passes.
        std::thread::sleep(Duration::from_millis(150));
        let during = allowed.count();
        std::thread::sleep(Duration::from_millis(300));
        gaps.push((during, allowed.count()));
        broker.start_again();
    }
    let out = program.wait(Duration::from_secs(120));
    assert_exit_0(&out);
    let v = out.json();
    println!(
        "{N} connects, 3 SIGKILLs of netjaild; calls each new broker took over: {:?}; result {v}",
        taken_over(&broker)
    );
    for (during, after) in &gaps {
        assert_eq!(
            during, after,
            "a connect passed while no broker ran: {gaps:?}"
        );
    }
    assert_eq!(
        v["ok"],
        N,
        "{}\n--- broker ---\n{}",
        out.describe(),
        broker.log()
    );
    assert_eq!(v["errors"], serde_json::json!({}), "{}", out.describe());
    assert_eq!(
        v["denied"],
        serde_json::json!({"EPERM": N / 5}),
        "{}",
        out.describe()
    );
    assert_eq!(
        allowed.count() - base_allowed,
        N,
        "each allowed connect once"
    );
    assert_eq!(
        denied.count(),
        2,
        "the denied port was reached only unconfined"
    );
    assert_eq!(taken_over(&broker).len(), 3, "{}", broker.log());
}

/// A call held for an operator when the broker is killed is decided by the next broker: the
/// dead broker had received it (the kernel will not hand it out again), so only its journal
/// knows it. The new broker has no operator, so the call gets the policy's `ask_fallback`,
/// `allow`, and the connect completes, once.
#[test]
fn restart_a_call_held_when_the_broker_dies_is_decided_by_the_next() {
    let test = "restart_a_call_held_when_the_broker_dies_is_decided_by_the_next";
    let Some(py) = python3() else {
        return skip(test, "python3 not found");
    };
    let py = py.to_string_lossy().into_owned();
    let canary = Canary::tcp4();
    let port = canary.addr().port();
    let policy = policy_file(&format!(
        "name = \"held-restart\"\ndefault = \"deny\"\nask_timeout = \"10m\"\n\
         ask_fallback = \"allow\"\n[[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    let mut broker = Broker::start();
    let control = |args: &[&str]| {
        let mut cmd = std::process::Command::new(netjail_bin());
        cmd.args(args).arg("--control").arg(broker.control());
        cmd
    };
    let status = |field: &str| -> u64 {
        let out = run(&mut control(&["status", "--json"]), DEFAULT_TIMEOUT);
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v[field].as_u64())
            .unwrap_or(0)
    };
    let mut watcher = spawn(&mut control(&["watch", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("operators") == 0 {
        assert!(Instant::now() < deadline, "the operator never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = format!(
        "import errno, json, socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', {port})); r = 'ok'\n\
         except OSError as e:\n    r = errno.errorcode.get(e.errno, str(e.errno))\nprint(json.dumps({{'r': r}}))\n"
    );
    let program = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&py, "-c", &script],
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while status("pending") == 0 {
        assert!(
            Instant::now() < deadline,
            "the call was never held\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(canary.count(), 0, "held, not performed");
    broker.kill();
    watcher.terminate(Duration::from_secs(5));
    broker.start_again();
    let out = program.wait(Duration::from_secs(60));
    assert_exit_0(&out);
    assert_eq!(
        out.json()["r"],
        "ok",
        "{}\n--- broker ---\n{}",
        out.describe(),
        broker.log()
    );
    assert_eq!(
        canary.count(),
        1,
        "performed exactly once, by the new broker"
    );
    assert_eq!(taken_over(&broker), vec![1], "{}", broker.log());
}

/// With no broker coming back, the launcher stops waiting after `--reconnect-for` and closes
/// its listener: the call made after the broker died was never performed, and fails with
/// `ENOSYS` (fail closed). Before the kill, the same connect succeeded.
#[test]
fn s_m4_restart_no_successor_new_calls_fail_closed() {
    let test = "s_m4_restart_no_successor_new_calls_fail_closed";
    let Some(py) = python3() else {
        return skip(test, "python3 not found");
    };
    let py = py.to_string_lossy().into_owned();
    let canary = Canary::tcp4();
    let port = canary.addr().port();
    let marker = policy_file("");
    std::fs::remove_file(marker.as_str()).expect("remove marker");
    let policy = policy_file(&format!(
        "name = \"gone\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    // Connects, says so, waits for the marker file, connects again.
    let script = format!(
        "import errno, json, os, socket, sys, time\n\
         def go():\n    s = socket.socket()\n    try:\n        s.connect(('127.0.0.1', {port})); return 'ok'\n    \
         except OSError as e:\n        return errno.errorcode.get(e.errno, str(e.errno))\n\
         first = go()\nprint('first', first, flush=True)\n\
         while not os.path.exists({marker:?}): time.sleep(0.02)\n\
         t = time.monotonic()\nsecond = go()\n\
         print(json.dumps({{'first': first, 'second': second, 'waited': time.monotonic() - t}}))\n",
        marker = marker.as_str()
    );
    let mut broker = Broker::start();
    let mut cmd = std::process::Command::new(netjail_bin());
    cmd.args(["run", "--allow-root"])
        .arg("--broker")
        .arg(broker.socket())
        .args([
            "--no-embedded",
            "--reconnect-for",
            "2s",
            "--policy",
            policy.as_str(),
        ])
        .args(["--", &py, "-c", &script]);
    let program = spawn(&mut cmd);
    let line = program.read_line(Duration::from_secs(20));
    assert_eq!(line.as_deref(), Some("first ok"), "{}", broker.log());
    // The connect returned before the canary thread counted it: wait for the count.
    assert_eq!(canary.wait_count(1, Duration::from_secs(5)), 1);
    broker.kill();
    std::fs::write(marker.as_str(), b"").expect("write marker");
    let out = program.wait(Duration::from_secs(60));
    assert_exit_0(&out);
    let v = out.json();
    println!("no broker came back: {v}");
    assert_eq!(v["second"], "ENOSYS", "{}", out.describe());
    assert_eq!(
        canary.count(),
        1,
        "the call after the kill was never performed"
    );
    assert!(
        out.stderr
            .contains("no broker registered the sandbox again"),
        "{}",
        out.describe()
    );
}
