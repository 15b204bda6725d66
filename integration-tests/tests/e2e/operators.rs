//! Operators (rule M2): calls held by an `ask` rule, answered on the control socket with
//! `netjail grant` / `netjail deny`, timeouts and fallbacks (M4), timed and lasting grants,
//! who may operate, and answers that race.
//!
//! Every test runs a real `netjaild`, real confined programs (curl, the probe) and the real
//! `netjail` operator commands; traffic goes to loopback only.

use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker_cmd, fds_back_to, netjail_bin, policy_file, run, settled_fd_count, spawn,
    which, Broker, Canary, Outcome, Running, TempPath,
};
use serde_json::Value;

use crate::{assert_eperm, assert_ok, probe};

/// An `ask` policy for connects to `port` on 127.0.0.1; other loopback connects to
/// `allowed` pass.
fn ask_policy(port: u16, allowed: u16, timeout: &str) -> TempPath {
    policy_file(&format!(
        "name = \"asking\"\ndefault = \"deny\"\nask_timeout = \"{timeout}\"\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{allowed}\"]\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ))
}

/// The operator commands of one broker.
struct Ops<'a> {
    broker: &'a Broker,
}

impl<'a> Ops<'a> {
    fn of(broker: &'a Broker) -> Self {
        Ops { broker }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(netjail_bin());
        cmd.args(args).arg("--control").arg(self.broker.control());
        cmd
    }

    fn run(&self, args: &[&str]) -> Outcome {
        run(&mut self.cmd(args), Duration::from_secs(20))
    }

    /// `netjail watch --json`, kept running: an operator is present. Returns once the broker
    /// counts it.
    fn watcher(&self) -> Running {
        let before = self.operators();
        let w = spawn(&mut self.cmd(&["watch", "--json"]));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.operators() <= before {
            assert!(Instant::now() < deadline, "the watcher never counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        w
    }

    /// The status report's JSON object.
    fn status(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        out.assert_success();
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("operators").is_some())
            .unwrap_or_else(|| panic!("no status report: {}", out.describe()))
    }

    fn operators(&self) -> u64 {
        self.status()["operators"].as_u64().expect("operators")
    }

    /// Waits for the next held call (`netjail pending --wait`), returns its JSON.
    fn next_pending(&self) -> Value {
        let out = self.run(&["pending", "--json", "--wait", "--timeout", "15s"]);
        out.assert_success();
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .next()
            .unwrap_or_else(|| panic!("nothing pending: {}", out.describe()))
    }

    /// The ids of the calls held now.
    fn pending_ids(&self) -> Vec<u64> {
        let out = self.run(&["pending", "--json"]);
        out.assert_success();
        out.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_u64())
            .collect()
    }
}

fn id_of(pending: &Value) -> String {
    pending["id"].as_u64().expect("pending id").to_string()
}

/// A confined probe connect to 127.0.0.1:`port`, started in the background.
fn held_connect(broker: &Broker, policy: &TempPath, port: u16) -> Running {
    spawn(&mut confined_with_broker_cmd(
        broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &port.to_string()],
    ))
}

fn audit_with(broker: &Broker, n: usize, key: &str, needle: &str) -> Vec<Value> {
    broker.wait_audit(n, Duration::from_secs(10), |e| {
        e[key].as_str().is_some_and(|s| s.contains(needle))
    })
}

/// The acceptance test of M2: a confined curl waits on an `ask` rule while another sandbox's
/// allowed connects go on; `netjail grant` lets it through.
#[test]
fn s_m2_curl_waits_for_an_operator_and_grant_lets_it_through() {
    let Some(curl) = which("curl") else {
        return netjail_integration_tests::skip("curl", "no curl");
    };
    let web = Canary::http4();
    let other = Canary::tcp4();
    let policy = ask_policy(web.port(), other.port(), "30s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();

    let url = format!("http://127.0.0.1:{}/", web.port());
    let curl = curl.to_string_lossy().into_owned();
    let started = Instant::now();
    let held = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&curl, "-sS", "--max-time", "40", &url],
    ));
    let pending = ops.next_pending();
    assert_eq!(pending["op"], "connect");
    assert_eq!(
        pending["endpoint"],
        format!("tcp://127.0.0.1:{}", web.port())
    );
    assert_eq!(pending["policy"], "asking");
    assert_eq!(pending["rule"], "ask[0].connect[0]");
    let chain = pending["chain"].as_array().expect("chain");
    assert!(
        chain[0]["program"].as_str().unwrap_or("").ends_with("curl"),
        "the chain starts at curl: {pending}"
    );
    assert!(
        chain[1]["program"]
            .as_str()
            .unwrap_or("")
            .ends_with("/netjail"),
        "and its parent, the launcher: {pending}"
    );
    assert_eq!(web.count(), 0, "nothing reached the listener while held");

    // Another sandbox's allowed connects are served while the call is held.
    let other_policy = ask_policy(web.port(), other.port(), "30s");
    let t = Instant::now();
    for _ in 0..20 {
        let out = run(
            &mut confined_with_broker_cmd(
                &broker,
                other_policy.as_str(),
                &[probe(), "connect", "tcp", "127.0.0.1", &other.port_str()],
            ),
            Duration::from_secs(20),
        );
        assert_ok(&out);
    }
    eprintln!(
        "20 confined runs with an allowed connect took {:?} while a call was held",
        t.elapsed()
    );
    assert_eq!(ops.pending_ids(), vec![pending["id"].as_u64().unwrap()]);
    assert_eq!(web.count(), 0);

    let out = ops.run(&["grant", &id_of(&pending), "--once"]);
    out.assert_success();
    let curl_out = held.wait(Duration::from_secs(30));
    assert_eq!(curl_out.code(), Some(0), "{}", curl_out.describe());
    assert_eq!(curl_out.stdout, "ok\n", "{}", curl_out.describe());
    assert_eq!(web.wait_count(1, Duration::from_secs(5)), 1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "granted before the timeout"
    );

    let events = audit_with(&broker, 1, "operator", "granted by uid 0");
    assert_eq!(events.len(), 1, "{}", broker.log());
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["rule"], "ask[0].connect[0]");
    assert!(ops.pending_ids().is_empty());
}

/// `netjail deny` gives the caller `EPERM`; a later call asks again (deny once is no rule).
#[test]
fn s_m2_deny_gives_eperm() {
    let target = Canary::tcp4();
    let policy = ask_policy(target.port(), 1, "30s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();
    for round in 0..2 {
        let held = held_connect(&broker, &policy, target.port());
        let pending = ops.next_pending();
        if round == 0 {
            // A grant for longer than anything a command line can ask is refused, not
            // an overflow in the broker; the call stays held.
            let reply = raw_grant_forever(&broker, pending["id"].as_u64().unwrap());
            assert!(reply.contains("a grant lasts from 1 ms to 24h"), "{reply}");
            assert_eq!(ops.pending_ids(), vec![pending["id"].as_u64().unwrap()]);
        }
        ops.run(&["deny", &id_of(&pending)]).assert_success();
        let out = held.wait(Duration::from_secs(20));
        assert_eperm(&out);
        assert_eq!(target.count(), 0, "round {round}");
    }
    assert_eq!(
        audit_with(&broker, 2, "operator", "denied by uid 0").len(),
        2
    );
}

/// Says hello on a raw connection and asks to grant `id` for `u64::MAX` milliseconds;
/// returns the broker's answer, debug-printed.
fn raw_grant_forever(broker: &Broker, id: u64) -> String {
    use netjail_integration_tests::sys;
    use netjail_protocol::codec;
    use netjail_protocol::control::{
        GrantDuration, GrantScope, OperatorReply, OperatorRequest, RequestId,
    };
    let conn = sys::seqpacket_connect(broker.control()).expect("connect");
    let mut buf = vec![0u8; 1 << 16];
    let mut ask = |req: &OperatorRequest| {
        sys::send_with_fds(&conn, &codec::encode(req).unwrap(), &[]).expect("send");
        let n = sys::recv_timeout(&conn, &mut buf, 5000)
            .expect("recv")
            .expect("an answer");
        codec::decode::<OperatorReply>(&buf[..n]).expect("decode")
    };
    let hello = OperatorRequest::Hello {
        version: netjail_protocol::PROTOCOL_VERSION,
        client: "test".into(),
    };
    assert!(matches!(ask(&hello), OperatorReply::Welcome { .. }));
    format!(
        "{:?}",
        ask(&OperatorRequest::Grant {
            id: RequestId(id),
            duration: GrantDuration::For { millis: u64::MAX },
            scope: GrantScope::Sandbox,
        })
    )
}

/// M4: with nobody answering, the call falls back to deny when `ask_timeout` passes; with
/// nobody watching at all it falls back at once.
#[test]
fn s_m4_timeout_and_no_operator_deny() {
    let target = Canary::tcp4();
    let policy = ask_policy(target.port(), 1, "1s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);

    // Nobody watching: denied at once, never listed.
    let t = Instant::now();
    let out = held_connect(&broker, &policy, target.port()).wait(Duration::from_secs(20));
    assert_eperm(&out);
    assert_eq!(audit_with(&broker, 1, "operator", "unattended").len(), 1);
    eprintln!("unattended call answered in {:?}", t.elapsed());

    // Watched, never answered: held about a second, then denied.
    let watch = ops.watcher();
    let t = Instant::now();
    let held = held_connect(&broker, &policy, target.port());
    let pending = ops.next_pending();
    assert!(pending["remaining_ms"].as_u64().unwrap() <= 1000);
    let out = held.wait(Duration::from_secs(20));
    assert_eperm(&out);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "held until the timeout"
    );
    assert_eq!(audit_with(&broker, 1, "operator", "timed-out").len(), 1);
    assert_eq!(target.count(), 0);
    // A late answer is refused with the reason.
    let late = ops.run(&["grant", &id_of(&pending)]);
    assert_eq!(late.code(), Some(1), "{}", late.describe());
    assert!(late.stderr.contains("timed out"), "{}", late.describe());
    drop(watch);
    let counters = &ops.status()["counters"];
    assert_eq!(counters["unattended"], 1, "{counters}");
    assert_eq!(counters["timed_out"], 1, "{counters}");
}

/// `grant --for 2s`: the call and the sandbox's later calls to the same place pass without
/// asking, until the two seconds are over; then the next call is held again.
#[test]
fn s_m2_grant_for_a_time_expires() {
    let target = Canary::tcp4();
    let policy = ask_policy(target.port(), 1, "30s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();
    // One sandbox making three connects: now, at once, and after the grant ran out.
    let script = format!(
        "import socket, time, json\n\
         def c():\n\
         \x20   s = socket.socket()\n\
         \x20   try:\n\
         \x20       s.connect(('127.0.0.1', {port})); return 'ok'\n\
         \x20   except OSError as e:\n\
         \x20       return e.strerror\n\
         \x20   finally:\n\
         \x20       s.close()\n\
         r = [c(), c()]\n\
         time.sleep(3)\n\
         r.append(c())\n\
         print(json.dumps(r))\n",
        port = target.port()
    );
    let Some(python) = netjail_integration_tests::python3() else {
        return netjail_integration_tests::skip("python3", "no python3");
    };
    let python = python.to_string_lossy().into_owned();
    let held = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&python, "-c", &script],
    ));
    let first = ops.next_pending();
    let out = ops.run(&["grant", &id_of(&first), "--for", "2s"]);
    out.assert_success();
    let granted_at = Instant::now();
    // The third connect comes after the grant ended: it is held again. Deny it.
    let third = ops.next_pending();
    assert_ne!(third["id"], first["id"]);
    assert!(
        granted_at.elapsed() >= Duration::from_secs(2),
        "held only after expiry"
    );
    ops.run(&["deny", &id_of(&third)]).assert_success();
    let out = held.wait(Duration::from_secs(30));
    let got: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    assert_eq!(
        got,
        serde_json::json!(["ok", "ok", "Operation not permitted"]),
        "{}",
        out.describe()
    );
    assert_eq!(target.wait_count(2, Duration::from_secs(5)), 2);
    assert_eq!(
        audit_with(&broker, 1, "operator", "ruled").len(),
        1,
        "the second call passed by the rule"
    );
}

/// `grant --always` writes the overlay, which a restarted broker reads: the same call passes
/// without any operator, while another port still asks (and, unattended, is denied).
#[test]
fn s_m2_grant_always_survives_a_restart() {
    let target = Canary::tcp4();
    let policy = ask_policy(target.port(), 1, "30s");
    let mut broker = Broker::start();
    let overlay = broker.dir().join("overlay");
    {
        let ops = Ops::of(&broker);
        let _watch = ops.watcher();
        let held = held_connect(&broker, &policy, target.port());
        let pending = ops.next_pending();
        let out = ops.run(&["grant", &id_of(&pending), "--always"]);
        out.assert_success();
        assert_ok(&held.wait(Duration::from_secs(20)));
    }
    let file = overlay.join("policy-asking.toml");
    let text = std::fs::read_to_string(&file).expect("the overlay file");
    assert!(
        text.contains(&format!(
            "connect = [\"tcp://127.0.0.1:{}\"]",
            target.port()
        )),
        "{text}"
    );
    broker.stop();

    let keep = overlay.as_os_str().to_owned();
    let restarted = Broker::start_with(&[], move |_| vec!["--overlay".into(), keep]);
    // Nobody watches the new broker: only the overlay can let the call through.
    let out = held_connect(&restarted, &policy, target.port()).wait(Duration::from_secs(20));
    assert_ok(&out);
    assert_eq!(target.wait_count(2, Duration::from_secs(5)), 2);
    let ruled = audit_with(&restarted, 1, "operator", "ruled");
    assert!(ruled[0]["operator"]
        .as_str()
        .unwrap()
        .contains("policy-asking.toml"));
    // Only that destination: another asked-for port is still asked (and unattended, denied).
    let other = Canary::tcp4();
    let policy2 = ask_policy(other.port(), 1, "30s");
    assert_eperm(&held_connect(&restarted, &policy2, other.port()).wait(Duration::from_secs(20)));
}

/// Only root and the operator group may use the control socket; anyone else is told why, and
/// the attempt is audited. A member of the group (by gid) is served.
#[test]
fn s_m2_non_operator_is_refused_on_the_control_socket() {
    let broker = Broker::start_with(&[], |_| vec!["--operator-group".into(), "4242".into()]);
    let ops = Ops::of(&broker);
    let as_user = |uid: &str, groups: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args([&format!("--reuid={uid}"), "--regid=65534", groups, "--"])
            .arg(netjail_bin())
            .args(["status", "--control"])
            .arg(broker.control());
        run(&mut cmd, Duration::from_secs(20))
    };
    let refused = as_user("65534", "--clear-groups");
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("uid 65534 is not an operator"),
        "{}",
        refused.describe()
    );
    let events = audit_with(&broker, 1, "message", "operator refused");
    assert_eq!(events.len(), 1, "{}", broker.log());
    assert_eq!(events[0]["peer_uid"], 65534);

    let member = as_user("4243", "--groups=4242");
    member.assert_success();
    // Root, always.
    ops.run(&["status"]).assert_success();
}

/// Two operators answer the same held call at the same moment, five times over: each call is
/// decided exactly once, one operator is told it won and the other that it was too late.
#[test]
fn s_m2_two_operators_at_once_resolve_exactly_once() {
    let target = Canary::tcp4();
    let policy = ask_policy(target.port(), 1, "30s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();
    let mut granted = 0;
    for round in 0..5 {
        let held = held_connect(&broker, &policy, target.port());
        let id = id_of(&ops.next_pending());
        // A grant and a deny race.
        let a = spawn(&mut ops.cmd(&["grant", &id]));
        let b = spawn(&mut ops.cmd(&["deny", &id]));
        let (a, b) = (
            a.wait(Duration::from_secs(20)),
            b.wait(Duration::from_secs(20)),
        );
        let winners = [a.code(), b.code()]
            .iter()
            .filter(|c| **c == Some(0))
            .count();
        assert_eq!(
            winners,
            1,
            "round {round}: {}\n{}",
            a.describe(),
            b.describe()
        );
        let loser = if a.code() == Some(0) { &b } else { &a };
        assert!(
            loser.stderr.contains("no longer held"),
            "{}",
            loser.describe()
        );
        let out = held.wait(Duration::from_secs(20));
        if a.code() == Some(0) {
            assert_ok(&out);
            granted += 1;
        } else {
            assert_eperm(&out);
        }
    }
    assert_eq!(target.wait_count(granted, Duration::from_secs(5)), granted);
    // One decision per held call in the audit.
    let decided = broker.wait_audit(5, Duration::from_secs(10), |e| {
        e["message"] == "decision" && e["rule"] == "ask[0].connect[0]"
    });
    assert_eq!(decided.len(), 5, "{}", broker.log());
}

/// The terminal UI, used as a person would through a pseudo-terminal (tmux): it shows the
/// held call with its endpoint, `y` grants it, the confined curl gets its answer, and the
/// decision appears in the feed. Then `n` on a second held call denies it, and `q` quits with
/// status 0.
#[test]
fn s_m2_top_grants_a_held_call_through_a_terminal() {
    use netjail_integration_tests::tmux::Tmux;
    if !Tmux::available() {
        return netjail_integration_tests::skip("tmux", "no tmux");
    }
    let Some(curl) = which("curl") else {
        return netjail_integration_tests::skip("curl", "no curl");
    };
    let web = Canary::http4();
    let policy = ask_policy(web.port(), 1, "60s");
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let netjail = netjail_bin().to_string_lossy().into_owned();
    let control = broker.control().to_string_lossy().into_owned();
    let top = Tmux::start(&[&netjail, "top", "--control", &control], &[], 160, 45);
    // The UI counts as a watching operator once it runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ops.operators() == 0 {
        assert!(
            Instant::now() < deadline,
            "top never connected:\n{}",
            top.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let url = format!("http://127.0.0.1:{}/", web.port());
    let curl = curl.to_string_lossy().into_owned();
    let held = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&curl, "-sS", "--max-time", "60", &url],
    ));
    let endpoint = format!("tcp://127.0.0.1:{}", web.port());
    let screen = top
        .wait_for(&endpoint, Duration::from_secs(15))
        .unwrap_or_else(|s| panic!("the held call never showed:\n{s}"));
    assert!(screen.contains("curl"), "{screen}");
    assert_eq!(web.count(), 0);
    top.send_keys("y");
    let out = held.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout, "ok\n");
    assert_eq!(web.wait_count(1, Duration::from_secs(5)), 1);
    top.wait_for("granted", Duration::from_secs(10))
        .unwrap_or_else(|s| panic!("no confirmation on screen:\n{s}"));
    assert_eq!(
        audit_with(&broker, 1, "operator", "granted by uid 0").len(),
        1
    );

    // A second call, denied with `n`.
    let held = held_connect(&broker, &policy, web.port());
    let id = id_of(&ops.next_pending());
    top.wait_for(&format!("{id} "), Duration::from_secs(10))
        .unwrap_or_else(|s| panic!("the second call never showed:\n{s}"));
    top.send_keys("n");
    assert_eperm(&held.wait(Duration::from_secs(30)));
    assert_eq!(web.wait_count(1, Duration::from_secs(5)), 1);

    top.send_keys("q");
    assert_eq!(
        top.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        top.capture()
    );
}

/// A held call to a destination that an `ask` rule names by host name shows the name in the
/// pending list and the audit.
#[test]
fn s_m2_pending_shows_the_matched_host_name() {
    let target = Canary::tcp4();
    let dir = netjail_integration_tests::TempDir::new();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 printer.netjail.test\n").unwrap();
    let broker = Broker::start_with(&[], move |_| {
        vec![
            "--hosts".into(),
            hosts.into_os_string(),
            "--nameserver".into(),
            "127.0.0.1:1".into(),
        ]
    });
    let policy = policy_file(&format!(
        "name = \"named-ask\"\n[[ask]]\nconnect = [\"tcp://printer.netjail.test:{}\"]\n",
        target.port()
    ));
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();
    let held = held_connect(&broker, &policy, target.port());
    let pending = ops.next_pending();
    assert_eq!(pending["host"], "printer.netjail.test", "{pending}");
    let table = ops.run(&["pending"]);
    assert!(
        table.stdout.contains("printer.netjail.test"),
        "{}",
        table.describe()
    );
    ops.run(&["grant", &id_of(&pending)]).assert_success();
    assert_ok(&held.wait(Duration::from_secs(20)));
    let events = audit_with(&broker, 1, "host", "printer.netjail.test");
    assert_eq!(events[0]["decision"], "allow", "{events:?}");
}

/// `ask` covers datagram sends and unix paths too: a `sendto` and a unix connect are held,
/// and each goes through once granted (the unix connect still as the caller).
#[test]
fn s_m2_sends_and_unix_paths_can_be_held() {
    let Some(python) = netjail_integration_tests::python3() else {
        return netjail_integration_tests::skip("python3", "no python3");
    };
    let python = python.to_string_lossy().into_owned();
    let udp = Canary::udp4();
    let sock = Canary::unix_path("asked.sock");
    let path = sock.path().to_string_lossy().into_owned();
    let policy = policy_file(&format!(
        "name = \"ask-more\"\n[[ask]]\nsend = [\"udp://127.0.0.1:{}\"]\nunix = [\"{path}\"]\n",
        udp.port()
    ));
    let broker = Broker::start();
    let ops = Ops::of(&broker);
    let _watch = ops.watcher();
    let script = format!(
        "import socket, json\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         n = u.sendto(b'held', ('127.0.0.1', {port}))\n\
         s = socket.socket(socket.AF_UNIX)\n\
         s.connect({path:?})\n\
         print(json.dumps({{'sent': n, 'unix': 'ok'}}))\n",
        port = udp.port()
    );
    let held = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&python, "-c", &script],
    ));
    let first = ops.next_pending();
    assert_eq!(first["op"], "send", "{first}");
    assert_eq!(first["endpoint"], format!("udp://127.0.0.1:{}", udp.port()));
    assert_eq!(udp.count(), 0, "nothing sent while held");
    ops.run(&["grant", &id_of(&first)]).assert_success();
    let second = ops.next_pending();
    assert_eq!(second["op"], "connect", "{second}");
    assert_eq!(second["endpoint"], format!("unix:{path}"));
    ops.run(&["grant", &id_of(&second)]).assert_success();
    let out = held.wait(Duration::from_secs(20));
    assert_eq!(out.json()["unix"], "ok", "{}", out.describe());
    assert_eq!(out.json()["sent"], 4);
    assert_eq!(udp.wait_count(1, Duration::from_secs(5)), 1);
    assert_eq!(sock.wait_count(1, Duration::from_secs(5)), 1);
}

/// The launcher's embedded broker has no control socket, so nobody can be watching: an `ask`
/// gets its fallback at once, and with `ask_fallback = "allow"` that is an allow.
#[test]
fn s_m4_embedded_broker_asks_fall_back_at_once() {
    let target = Canary::tcp4();
    let deny = ask_policy(target.port(), 1, "30s");
    let out = netjail_integration_tests::confined(
        deny.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &target.port_str()],
    );
    assert_eperm(&out);
    // The launcher's audit says why: nobody was there to ask.
    assert!(out.stderr.contains("unattended"), "{}", out.describe());
    assert_eq!(target.count(), 0);
    let allow = policy_file(&format!(
        "name = \"lenient\"\nask_fallback = \"allow\"\n[[ask]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        target.port()
    ));
    assert_ok(&netjail_integration_tests::confined(
        allow.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &target.port_str()],
    ));
    assert_eq!(target.wait_count(1, Duration::from_secs(5)), 1);
}

/// Invariant 8 on the control socket: garbage, a request before hello, a wrong version and an
/// oversized datagram each get their connection closed (after an error reply); connections
/// that never say hello are bounded; the broker keeps every fd accounted for and serves the
/// next operator.
#[test]
fn control_socket_refuses_bad_input_and_serves_on() {
    use netjail_integration_tests::sys;
    use netjail_protocol::codec;
    use netjail_protocol::control::{OperatorRequest, RequestId};
    use std::os::fd::OwnedFd;

    let broker = Broker::start();
    let ops = Ops::of(&broker);
    ops.run(&["status"]).assert_success();
    let baseline = settled_fd_count(broker.pid());

    let grant_first = codec::encode(&OperatorRequest::Grant {
        id: RequestId(1),
        duration: netjail_protocol::control::GrantDuration::Once,
        scope: netjail_protocol::control::GrantScope::Sandbox,
    })
    .unwrap();
    let mut wrong_version = codec::encode(&OperatorRequest::Hello {
        version: 1,
        client: "test".into(),
    })
    .unwrap();
    wrong_version[2..4].copy_from_slice(&0xFFFFu16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
        ),
        ("a grant before hello", grant_first),
        ("a wrong version", wrong_version),
        ("70000 bytes", vec![b'N'; 70_000]),
        ("an empty datagram", Vec::new()),
    ];
    let mut buf = vec![0u8; 1 << 17];
    for (what, bytes) in &cases {
        let conn: OwnedFd = sys::seqpacket_connect(broker.control()).expect("connect");
        match sys::send_with_fds(&conn, bytes, &[]) {
            Ok(_) | Err(libc::EPIPE | libc::ECONNRESET | libc::EMSGSIZE) => {}
            Err(e) => panic!("{what}: send: {}", sys::errno_name(e)),
        }
        let mut closed = false;
        for _ in 0..4 {
            match sys::recv_timeout(&conn, &mut buf, 7000) {
                Ok(Some(0)) | Err(libc::ECONNRESET) => {
                    closed = true;
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => panic!("{what}: recv: {}", sys::errno_name(e)),
            }
        }
        assert!(closed, "{what}: the broker kept the connection open");
    }

    // 80 connections that say nothing: at most 64 are kept waiting, the rest closed at once.
    let silent: Vec<OwnedFd> = (0..80)
        .map(|_| sys::seqpacket_connect(broker.control()).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let closed_at_once = silent
        .iter()
        .filter(|c| matches!(sys::recv_timeout(*c, &mut buf, 10), Ok(Some(0))))
        .count();
    assert!(
        closed_at_once >= 16,
        "only {closed_at_once} of 80 closed at once"
    );
    drop(silent);

    // The broker still serves, and holds no more fds than before.
    assert_eq!(
        fds_back_to(broker.pid(), baseline, Duration::from_secs(10)),
        baseline,
        "fds left behind"
    );
    ops.run(&["status"]).assert_success();
}
