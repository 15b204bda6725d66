//! `[limits]` (rule N3: `0` none at all, `-1` unlimited, the default), enforced by the broker
//! per sandbox: `max_connections` and `max_binds` count live sockets (`ENOBUFS` past them),
//! `max_pending` bounds held calls (the policy's fallback past it), `max_calls_per_second`
//! refuses calls past the rate (`EAGAIN`). Each test shows the same calls succeed unconfined
//! or with `-1`. Python children on loopback, port-0 listeners.

use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker_cmd, netjail_bin, policy_file, run, spawn, Broker, Canary, Outcome,
    DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{need_python, Via};

/// Opens sockets one after another and prints what each step gave, as a JSON list: `ok` or
/// the errno's name. `argv[1]` is `connect` or `bind`, `argv[2]` the port to connect to,
/// `argv[3]` how many to open before closing the first, `argv[4]` how many after.
const HOLDER: &str = r#"
import errno, json, socket, sys
op, port, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
held, results = [], []
def one():
    s = socket.socket()
    try:
        if op == "connect":
            s.connect(("127.0.0.1", port))
        else:
            s.bind(("127.0.0.1", 0))
            s.listen(8)
        held.append(s)
        results.append("ok")
    except OSError as e:
        s.close()
        results.append(errno.errorcode.get(e.errno, str(e.errno)))
for _ in range(before):
    one()
if held and after:
    held.pop(0).close()
    results.append("closed")
for _ in range(after):
    one()
print(json.dumps(results))
"#;

/// `count` UDP datagrams with a destination (`sendto`), as fast as Python goes: prints the
/// JSON list of outcomes.
const SENDER: &str = r#"
import errno, json, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
results = []
for _ in range(count):
    try:
        s.sendto(b"x", ("127.0.0.1", port))
        results.append("ok")
    except OSError as e:
        results.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(results))
"#;

fn policy(limits: &str) -> netjail_integration_tests::TempPath {
    policy_file(&format!(
        "name = \"limited\"\ndefault = \"deny\"\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:*\"]\nbind = [\"tcp://127.0.0.1:*\"]\n\
         send = [\"udp://127.0.0.1:*\"]\n\
         [limits]\n{limits}\n"
    ))
}

/// The JSON list a script printed last.
fn results(out: &Outcome) -> Vec<String> {
    let line = out.stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no result list ({e}): {}", out.describe()));
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {}", out.describe()))
        .iter()
        .map(|s| s.as_str().unwrap_or("?").to_owned())
        .collect()
}

fn holder(python: &str, via: &Via, limits: &str, args: &[&str]) -> Vec<String> {
    let p = policy(limits);
    let mut argv = vec![python, "-c", HOLDER];
    argv.extend_from_slice(args);
    let out = via.run_for(p.as_str(), &argv, Duration::from_secs(60));
    results(&out)
}

fn unconfined_holder(python: &str, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(HOLDER).args(args);
    results(&run(&mut cmd, DEFAULT_TIMEOUT))
}

fn ok(n: usize) -> Vec<String> {
    vec!["ok".to_owned(); n]
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Waits for an audit event of `rule`.
fn audit_of(broker: &Broker, rule: &str) -> Value {
    let found = broker.wait_audit(1, Duration::from_secs(10), |e| {
        e["message"] == "decision" && e["rule"] == rule
    });
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no audit event of {rule}:\n{}", broker.log()))
}

#[test]
fn s_n3_max_connections_zero_refuses_the_first_connect() {
    let Some(py) = need_python("s_n3_max_connections_zero_refuses_the_first_connect") else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.addr().port().to_string();
    let args = ["connect", &port, "1", "0"];
    assert_eq!(unconfined_holder(&py, &args), ok(1));
    let via = Via::broker();
    assert_eq!(
        holder(&py, &via, "max_connections = 0", &args),
        strs(&["ENOBUFS"])
    );
    let Via::Broker(broker) = &via else {
        unreachable!()
    };
    let e = audit_of(broker, "limits.max_connections");
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["op"], "connect");
    assert_eq!(e["errno"], libc::ENOBUFS);
}

#[test]
fn s_n3_max_connections_two_refuses_the_third_live_one_and_allows_it_after_one_closes() {
    let Some(py) = need_python("s_n3_max_connections_two_refuses_the_third") else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.addr().port().to_string();
    let args = ["connect", &port, "3", "2"];
    let unlimited = strs(&["ok", "ok", "ok", "closed", "ok", "ok"]);
    assert_eq!(unconfined_holder(&py, &args), unlimited);
    let expected = strs(&["ok", "ok", "ENOBUFS", "closed", "ok", "ENOBUFS"]);
    for via in [Via::Embedded, Via::broker()] {
        assert_eq!(holder(&py, &via, "max_connections = 2", &args), expected);
    }
}

#[test]
fn s_n3_max_connections_minus_one_never_refuses() {
    let Some(py) = need_python("s_n3_max_connections_minus_one_never_refuses") else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.addr().port().to_string();
    let args = ["connect", &port, "50", "0"];
    assert_eq!(
        holder(&py, &Via::Embedded, "max_connections = -1", &args),
        ok(50)
    );
    // No `[limits]` at all is the same.
    assert_eq!(holder(&py, &Via::Embedded, "", &args), ok(50));
}

#[test]
fn s_n3_max_binds_zero_refuses_the_first_bind() {
    let Some(py) = need_python("s_n3_max_binds_zero_refuses_the_first_bind") else {
        return;
    };
    let args = ["bind", "0", "1", "0"];
    assert_eq!(unconfined_holder(&py, &args), ok(1));
    let via = Via::broker();
    assert_eq!(
        holder(&py, &via, "max_binds = 0", &args),
        strs(&["ENOBUFS"])
    );
    let Via::Broker(broker) = &via else {
        unreachable!()
    };
    let e = audit_of(broker, "limits.max_binds");
    assert_eq!(e["op"], "bind");
    assert_eq!(e["errno"], libc::ENOBUFS);
}

#[test]
fn s_n3_max_binds_two_refuses_the_third_live_one_and_allows_it_after_one_closes() {
    let Some(py) = need_python("s_n3_max_binds_two_refuses_the_third") else {
        return;
    };
    let args = ["bind", "0", "3", "2"];
    let unlimited = strs(&["ok", "ok", "ok", "closed", "ok", "ok"]);
    assert_eq!(unconfined_holder(&py, &args), unlimited);
    let expected = strs(&["ok", "ok", "ENOBUFS", "closed", "ok", "ENOBUFS"]);
    for via in [Via::Embedded, Via::broker()] {
        assert_eq!(holder(&py, &via, "max_binds = 2", &args), expected);
    }
}

#[test]
fn s_n3_max_binds_minus_one_never_refuses() {
    let Some(py) = need_python("s_n3_max_binds_minus_one_never_refuses") else {
        return;
    };
    let args = ["bind", "0", "50", "0"];
    assert_eq!(holder(&py, &Via::Embedded, "max_binds = -1", &args), ok(50));
}

/// `max_calls_per_second = 0` refuses every call the broker decides; a rate of 2 (a burst of
/// 2) lets at most a few of 40 quick sends through however slow the machine is (a send a
/// second per token would take 20 s), and the audit says so once, with a count.
#[test]
fn s_n3_max_calls_per_second_refuses_calls_past_the_rate_with_eagain() {
    let Some(py) = need_python("s_n3_max_calls_per_second") else {
        return;
    };
    let canary = Canary::udp4();
    let port = canary.addr().port().to_string();
    let sender = |via: Option<&Via>, limits: &str, count: &str| {
        let args = [py.as_str(), "-c", SENDER, &port, count];
        let out = match via {
            Some(via) => via.run_for(policy(limits).as_str(), &args, Duration::from_secs(60)),
            None => run(Command::new(&py).args(&args[1..]), DEFAULT_TIMEOUT),
        };
        results(&out)
    };
    assert_eq!(sender(None, "", "40"), ok(40));
    assert_eq!(
        sender(Some(&Via::Embedded), "max_calls_per_second = -1", "40"),
        ok(40)
    );
    assert_eq!(
        sender(Some(&Via::Embedded), "max_calls_per_second = 0", "5"),
        vec!["EAGAIN".to_owned(); 5]
    );
    let via = Via::broker();
    let started = Instant::now();
    let got = sender(Some(&via), "max_calls_per_second = 2", "40");
    let elapsed = started.elapsed().as_secs_f64();
    let passed = got.iter().filter(|r| *r == "ok").count();
    let refused = got.iter().filter(|r| *r == "EAGAIN").count();
    assert_eq!(passed + refused, 40, "{got:?}");
    // The burst, and two tokens a second while it ran.
    assert!(
        passed as f64 <= 2.0 + 2.0 * elapsed + 1.0,
        "{passed} passed in {elapsed:.1}s: {got:?}"
    );
    assert!(refused >= 1, "{got:?}");
    let Via::Broker(broker) = &via else {
        unreachable!()
    };
    let e = audit_of(broker, "limits.max_calls_per_second");
    assert_eq!(e["decision"], "deny");
    assert_eq!(e["errno"], libc::EAGAIN);
    assert!(e["refused"].as_u64().is_some_and(|n| n >= 1), "{e}");
    // At most one line a second for the flood.
    let lines = broker
        .audit_events()
        .into_iter()
        .filter(|e| e["rule"] == "limits.max_calls_per_second")
        .count();
    assert!(
        lines as f64 <= 1.0 + started.elapsed().as_secs_f64(),
        "{lines} lines"
    );
}

/// `max_pending = 1`: with an operator watching, a second asked call while one is held gets
/// the fallback (deny, `EPERM`) at once, by the rule `limits.max_pending`.
#[test]
fn s_n3_max_pending_one_gives_the_second_held_call_the_fallback() {
    let Some(py) = need_python("s_n3_max_pending") else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.addr().port();
    let broker = Broker::start();
    let p = policy_file(&format!(
        "name = \"pending\"\ndefault = \"deny\"\nask_timeout = \"3s\"\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n[limits]\nmax_pending = 1\n"
    ));
    let control = |args: &[&str]| {
        let mut cmd = Command::new(netjail_bin());
        cmd.args(args).arg("--control").arg(broker.control());
        cmd
    };
    let mut watcher = spawn(&mut control(&["watch", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(&mut control(&["status", "--json"]), DEFAULT_TIMEOUT);
        let operators = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| v["operators"].as_u64());
        if operators.unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two threads: the first call is held (and times out), the second comes while it is.
    let script = format!(
        r#"
import errno, json, socket, threading, time
res = {{}}
def go(name):
    s = socket.socket()
    t = time.monotonic()
    try:
        s.connect(("127.0.0.1", {port}))
        r = "ok"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    res[name] = [r, time.monotonic() - t]
a = threading.Thread(target=go, args=("first",))
a.start()
time.sleep(1.0)
go("second")
a.join()
print(json.dumps(res))
"#
    );
    let out = run(
        &mut confined_with_broker_cmd(&broker, p.as_str(), &[&py, "-c", &script]),
        Duration::from_secs(60),
    );
    let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {}", out.describe()));
    assert_eq!(v["second"][0], "EPERM", "{v}");
    assert_eq!(v["first"][0], "EPERM", "{v}");
    let e = audit_of(&broker, "limits.max_pending");
    assert_eq!(e["decision"], "deny");
    watcher.terminate(Duration::from_secs(5));
}
