//! Metrics (issue 8): `netjail metrics` prints the broker's counters, gauges and latency
//! histogram in the Prometheus text format, read on the control socket of a real `netjaild`
//! after real confined connects (loopback only).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker_cmd, netjail_bin, parse_metrics, policy_file, run, spawn, Broker, Canary,
};

use crate::{assert_eperm, assert_ok, probe};

/// Reads the metrics until `ready` holds (the broker counts a decision just after it
/// replies, so the caller may exit a moment before its call is counted), at most 10 s.
fn metrics_when(
    broker: &Broker,
    ready: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = broker.metrics();
        if ready(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "metrics never got there: {m:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn decisions(op: &str, verdict: &str) -> String {
    format!("netjail_decisions_total{{op=\"{op}\",verdict=\"{verdict}\"}}")
}

const COUNT: &str = "netjail_decision_latency_microseconds_count";

/// Three allowed and two denied confined connects are counted exactly, the histogram holds
/// five round trips, and a sandbox that is still running is counted in the gauge.
#[test]
fn metrics_count_decisions_by_op_and_verdict() {
    let allowed = Canary::tcp4();
    let denied = Canary::tcp4();
    let policy = policy_file(&format!(
        "name = \"counted\"\ndefault = \"deny\"\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        allowed.port()
    ));
    let broker = Broker::start();

    let fresh = broker.metrics();
    assert_eq!(fresh[COUNT], 0.0);
    assert_eq!(fresh["netjail_sandboxes"], 0.0);
    assert_eq!(fresh["netjail_pending_calls"], 0.0);

    let connect = |port: String| {
        run(
            &mut confined_with_broker_cmd(
                &broker,
                policy.as_str(),
                &[probe(), "connect", "tcp", "127.0.0.1", &port],
            ),
            Duration::from_secs(20),
        )
    };
    for _ in 0..3 {
        assert_ok(&connect(allowed.port_str()));
    }
    for _ in 0..2 {
        assert_eperm(&connect(denied.port_str()));
    }
    assert_eq!(denied.count(), 0);

    // One sandbox that stays (idle, no network calls), while the others have left.
    let mut idle = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[probe(), "idle", "60"],
    ));
    idle.read_line(Duration::from_secs(20))
        .expect("the idle probe started");

    let m = metrics_when(&broker, |m| {
        m[COUNT] >= 5.0 && m["netjail_sandboxes"] == 1.0
    });
    assert_eq!(m[&decisions("connect", "allow")], 3.0, "{m:?}");
    assert_eq!(m[&decisions("connect", "deny")], 2.0, "{m:?}");
    let total: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("netjail_decisions_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 5.0, "nothing else was decided: {m:?}");
    assert_eq!(m[COUNT], 5.0);
    assert_eq!(
        m["netjail_decision_latency_microseconds_bucket{le=\"+Inf\"}"],
        5.0
    );
    // Cumulative buckets: never fewer under a larger bound.
    let mut last = 0.0;
    for le in [10, 25, 50, 100, 250, 500, 1000, 2500, 10_000, 100_000] {
        let b = m[&format!("netjail_decision_latency_microseconds_bucket{{le=\"{le}\"}}")];
        assert!(b >= last, "bucket {le}: {b} < {last}");
        last = b;
    }
    assert!(m["netjail_decision_latency_microseconds_sum"] > 0.0);
    assert_eq!(m["netjail_sandboxes"], 1.0);
    assert_eq!(m["netjail_pending_calls"], 0.0);
    assert_eq!(m["netjail_held_calls_total"], 0.0);
    assert_eq!(m["netjail_operators_watching"], 0.0);

    idle.terminate(Duration::from_secs(10));
    let m = metrics_when(&broker, |m| m["netjail_sandboxes"] == 0.0);
    assert_eq!(m[COUNT], 5.0, "the idle sandbox decided nothing");
}

fn netjail(broker: &Broker, args: &[&str]) -> Command {
    let mut cmd = Command::new(netjail_bin());
    cmd.args(args).arg("--control").arg(broker.control());
    cmd
}

/// Calls an `ask` rule holds: one with nobody watching gets the fallback at once
/// (`unattended`); one held while an operator watches shows in the pending gauge until the
/// operator refuses it (`refused`). Both are denied connects.
#[test]
fn metrics_count_held_calls_and_their_outcomes() {
    let target = Canary::tcp4();
    let policy = policy_file(&format!(
        "name = \"asking\"\ndefault = \"deny\"\nask_timeout = \"30s\"\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        target.port()
    ));
    let broker = Broker::start();
    let connect = || {
        confined_with_broker_cmd(
            &broker,
            policy.as_str(),
            &[probe(), "connect", "tcp", "127.0.0.1", &target.port_str()],
        )
    };
    assert_eperm(&run(&mut connect(), Duration::from_secs(20)));
    let m = metrics_when(&broker, |m| m[COUNT] >= 1.0);
    assert_eq!(m["netjail_held_calls_total"], 1.0, "{m:?}");
    assert_eq!(
        m["netjail_held_call_outcomes_total{outcome=\"unattended\"}"],
        1.0
    );
    assert_eq!(m[&decisions("connect", "deny")], 1.0);

    let mut watch = spawn(&mut netjail(&broker, &["watch", "--pending-only"]));
    metrics_when(&broker, |m| m["netjail_operators_watching"] == 1.0);
    let held = spawn(&mut connect());
    let m = metrics_when(&broker, |m| m["netjail_pending_calls"] == 1.0);
    assert_eq!(m["netjail_held_calls_total"], 2.0, "{m:?}");
    let out = run(
        &mut netjail(&broker, &["pending", "--json"]),
        Duration::from_secs(20),
    );
    out.assert_success();
    let pending: serde_json::Value =
        serde_json::from_str(out.stdout.lines().next().expect("one held call")).expect("json");
    let id = pending["id"].as_u64().expect("id").to_string();
    run(
        &mut netjail(&broker, &["deny", &id]),
        Duration::from_secs(20),
    )
    .assert_success();
    assert_eperm(&held.wait(Duration::from_secs(20)));

    let m = metrics_when(&broker, |m| m[COUNT] >= 2.0);
    assert_eq!(m["netjail_pending_calls"], 0.0, "{m:?}");
    assert_eq!(
        m["netjail_held_call_outcomes_total{outcome=\"refused\"}"],
        1.0
    );
    assert_eq!(
        m["netjail_held_call_outcomes_total{outcome=\"granted\"}"],
        0.0
    );
    assert_eq!(m[&decisions("connect", "deny")], 2.0);
    assert_eq!(m[COUNT], 2.0);
    assert_eq!(target.count(), 0);
    watch.terminate(Duration::from_secs(10));
}

/// Metrics are for operators only, like the rest of the control socket.
#[test]
fn metrics_are_refused_to_a_non_operator() {
    if !crate::need_root("metrics_are_refused_to_a_non_operator")
        || !crate::have_setpriv("metrics_are_refused_to_a_non_operator")
    {
        return;
    }
    let broker = Broker::start();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(netjail_bin())
        .args(["metrics", "--control"])
        .arg(broker.control());
    let refused = run(&mut cmd, Duration::from_secs(20));
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("uid 65534 is not an operator"),
        "{}",
        refused.describe()
    );
    assert!(refused.stdout.is_empty(), "{}", refused.describe());
}

/// The address `netjaild --metrics-listen` logged (`metrics served over HTTP`).
fn metrics_address(broker: &Broker) -> std::net::SocketAddr {
    broker
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            (v["message"] == "metrics served over HTTP")
                .then(|| v["address"].as_str()?.parse().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", broker.log()))
}

/// One HTTP/1.1 request on a fresh connection; the whole response.
fn http_get(addr: std::net::SocketAddr, request_line: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "{request_line}\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("a response");
    response
}

/// `--metrics-listen 127.0.0.1:0`: `GET /metrics` answers the same text as `netjail
/// metrics`, with the Prometheus content type; other paths and methods are refused.
#[test]
fn metrics_are_served_over_loopback_http() {
    let allowed = Canary::tcp4();
    let policy = policy_file(&format!(
        "name = \"counted\"\ndefault = \"deny\"\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        allowed.port()
    ));
    let broker = Broker::start_with(&[], |_| {
        vec!["--metrics-listen".into(), "127.0.0.1:0".into()]
    });
    let addr = metrics_address(&broker);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert_ok(&run(
        &mut confined_with_broker_cmd(
            &broker,
            policy.as_str(),
            &[probe(), "connect", "tcp", "127.0.0.1", &allowed.port_str()],
        ),
        Duration::from_secs(20),
    ));
    metrics_when(&broker, |m| m[COUNT] >= 1.0);

    let response = http_get(addr, "GET /metrics HTTP/1.1");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", body.len())),
        "{head}"
    );
    let m = parse_metrics(body);
    assert_eq!(m[&decisions("connect", "allow")], 1.0, "{body}");
    assert_eq!(m[COUNT], 1.0);

    let not_found = http_get(addr, "GET / HTTP/1.1");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let not_allowed = http_get(addr, "POST /metrics HTTP/1.1");
    assert!(not_allowed.starts_with("HTTP/1.1 405 "), "{not_allowed}");
}

/// The metrics port has no access control: a broker asked to serve it on an address that is
/// not loopback refuses to start, and says why.
#[test]
fn a_metrics_port_off_loopback_stops_the_broker() {
    let dir = netjail_integration_tests::TempDir::new();
    let out = run(
        Command::new(netjail_integration_tests::netjaild_bin())
            .arg("--socket")
            .arg(dir.path().join("broker.sock"))
            .arg("--control")
            .arg(dir.path().join("control.sock"))
            .arg("--overlay")
            .arg(dir.path().join("overlay"))
            .args(["--metrics-listen", "0.0.0.0:0"]),
        Duration::from_secs(20),
    );
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr.contains("0.0.0.0:0 is not a loopback address"),
        "{}",
        out.describe()
    );
}
