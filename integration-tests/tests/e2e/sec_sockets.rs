//! Issue 16, the broker's own sockets and operators: F2, F3, F11, L5, L6, L7, L13 and
//! invariant 3's "a listener is registered once".
//!
//! Each attack runs first where it must succeed (unconfined, or as a real operator or client
//! would), then as the attacker; the second run must be refused. Traffic goes to loopback
//! canaries only; test users are plain uids (4801..4803), no accounts needed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_cmd, confined_with_broker_cmd, netjail_bin, netjaild_bin, policy_file, run, spawn,
    sys, unconfined, Broker, Canary, Outcome, TempDir, TempPath,
};
use netjail_protocol::{codec, BrokerMessage, ClientMessage, ErrorCode, PROTOCOL_VERSION};
use serde_json::Value;

use crate::{
    as_nobody, assert_eperm, assert_err, assert_ok, have_setpriv, need_python, need_root, probe,
    NOBODY,
};

/// The test users: two tenants and one more.
pub(crate) const USER_A: u32 = 4801;
const USER_B: u32 = 4802;
/// A group both tenants are in (`--register-group`).
const TENANTS: u32 = 4800;

/// `setpriv` to `uid` with primary group `uid`, supplementary `groups`, no capabilities.
pub(crate) fn as_user(uid: u32, groups: &[u32]) -> Vec<String> {
    let mut v = vec![
        "setpriv".to_string(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
    ];
    if groups.is_empty() {
        v.push("--clear-groups".into());
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        v.push(format!("--groups={}", list.join(",")));
    }
    v.extend([
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--".into(),
    ]);
    v
}

/// A command run through `prefix` (empty, or [`as_user`]).
pub(crate) fn command(prefix: &[String], program: impl AsRef<std::ffi::OsStr>) -> Command {
    match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Root and setpriv, or a `SKIP` line.
pub(crate) fn root_and_setpriv(test: &str) -> bool {
    need_root(test) && have_setpriv(test)
}

/// A policy under which a program may connect to any filesystem unix socket (as
/// `loopback-only` and `disablenetwork` allow) and nothing else, plus `extra` (top-level keys
/// first, then tables).
fn unix_anywhere(name: &str, extra: &str) -> TempPath {
    policy_file(&format!(
        "name = \"{name}\"\ndefault = \"deny\"\n{extra}\n[[allow]]\nunix = [\"/**\"]\n"
    ))
}

/// Makes a broker's registration socket reachable by every user, as an administrator who
/// lets the sandbox's user register does (the F2 setup, on any version of the broker).
fn open_to_all(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod 0666");
}

/// The lines of `out`'s stdout that are JSON objects.
fn json_lines(out: &Outcome) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The value `key=N` printed on a line of `out`'s stdout.
fn printed(out: &Outcome, key: &str) -> Option<i32> {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `broker` has at least `n` sandboxes named `name`, at most 10 s.
fn wait_sandboxes(broker: &Broker, name: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, sandboxes) = broker.status();
        let found = sandboxes.iter().filter(|s| s["name"] == name).count();
        if found >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{found} sandboxes named {name}, not {n}:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- F3: a confined process is never an operator ------------------------------------------

/// Inside the sandbox: watch (so that the held call waits), connect (held by `ask`), find the
/// held call, grant it; print `grant=`, `pending=` and the connect's JSON line.
const F3_SCRIPT: &str = r#"
nj=$1; c=$2; probe=$3; port=$4
"$nj" watch --json --control "$c" >/dev/null 2>&1 &
w=$!
sleep 1
"$probe" connect tcp 127.0.0.1 "$port" &
p=$!
id=$("$nj" pending --json --wait --timeout 5s --control "$c" 2>/dev/null | sed -n 's/.*"id": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
"$nj" grant "${id:-0}" --control "$c" >/dev/null 2>&1; echo "grant=$?"
"$nj" pending --json --control "$c" >/dev/null 2>&1; echo "pending=$?"
wait "$p"
kill "$w" 2>/dev/null
wait
"#;

/// F3: a sandbox whose policy allows unix `/**` runs `netjail watch`, `pending` and `grant`
/// against the broker's control socket from inside, to grant its own held connect. Unconfined,
/// the same commands as root are served (root is an operator). Confined, the broker refuses to
/// make the unix connect to its own socket, also through a hard link to it: the call held by
/// `ask` meets no operator and falls back to deny, and the canary sees nothing.
#[test]
fn f3_a_sandbox_cannot_operate_the_broker_from_inside() {
    if !need_root("f3_a_sandbox_cannot_operate_the_broker_from_inside") {
        return;
    }
    let broker = Broker::start();
    let canary = Canary::tcp4();
    let port = canary.port_str();
    let policy = unix_anywhere(
        "f3",
        &format!("ask_timeout = \"20s\"\n[[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"),
    );
    let nj = netjail_bin();
    let control = broker.control().to_str().expect("utf-8").to_string();
    let args = [
        "sh",
        "-c",
        F3_SCRIPT,
        "f3",
        nj.to_str().expect("utf-8"),
        &control,
        probe(),
        &port,
    ];

    // Unconfined (root): an operator; the connect goes straight through.
    let out = unconfined(&args);
    assert_eq!(printed(&out, "pending"), Some(0), "{}", out.describe());
    assert_eq!(canary.wait_count(1, Duration::from_secs(5)), 1);

    // Confined: not an operator, and the held connect is not granted.
    let out = run(
        &mut confined_with_broker_cmd(&broker, policy.as_str(), &args),
        Duration::from_secs(60),
    );
    let lines = json_lines(&out);
    let connect = lines
        .first()
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert_eq!(
        connect["err"],
        "EPERM",
        "{}\n{}",
        out.describe(),
        broker.log()
    );
    assert_ne!(printed(&out, "pending"), Some(0), "{}", out.describe());
    assert_ne!(printed(&out, "grant"), Some(0), "{}", out.describe());
    assert_eq!(canary.settled_count(), 1, "the sandbox granted itself");
    let refused = broker.wait_audit(1, Duration::from_secs(5), |e| {
        e["rule"] == "broker-socket" && e["endpoint"] == format!("unix:{control}")
    });
    assert!(
        !refused.is_empty(),
        "no broker-socket refusal:\n{}",
        broker.log()
    );

    // The same socket under another name: a hard link is the same node.
    let dir = TempDir::new();
    let link = dir.path().join("link.sock");
    std::fs::hard_link(broker.control(), &link).expect("hard link");
    let link = link.to_str().expect("utf-8");
    // A stream connect reaches the seqpacket socket (and the kernel says so) unconfined.
    assert_err(&unconfined(&[probe(), "unix", link]), "EPROTOTYPE");
    let out = run(
        &mut confined_with_broker_cmd(&broker, policy.as_str(), &[probe(), "unix", link]),
        Duration::from_secs(20),
    );
    assert_eperm(&out);
    let registration = broker.socket().to_str().expect("utf-8");
    assert_err(&unconfined(&[probe(), "unix", registration]), "EPROTOTYPE");
    let out = run(
        &mut confined_with_broker_cmd(&broker, policy.as_str(), &[probe(), "unix", registration]),
        Duration::from_secs(20),
    );
    assert_eperm(&out);
}

/// F3 through another broker: a sandbox of `netjail run`'s embedded broker asks `netjaild`'s
/// control socket for the held calls. The connect is made by the launcher (root, holding the
/// sandbox's listener), which `netjaild` cannot tell from an operator by its user: it refuses
/// a peer that holds a seccomp listener. Unconfined, root is served.
#[test]
fn f3_a_sandbox_of_another_broker_is_not_an_operator() {
    if !need_root("f3_a_sandbox_of_another_broker_is_not_an_operator") {
        return;
    }
    let broker = Broker::start();
    let nj = netjail_bin();
    let control = broker.control().to_str().expect("utf-8");
    let args = [
        nj.to_str().expect("utf-8"),
        "pending",
        "--json",
        "--control",
        control,
    ];
    let out = unconfined(&args);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let out = run(
        &mut confined_cmd("loopback-only", &args),
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(1), "{}\n{}", out.describe(), broker.log());
    assert!(
        out.stderr.contains("holds a seccomp listener"),
        "{}",
        out.describe()
    );
    let refused = broker.wait_audit(1, Duration::from_secs(5), |e| {
        e["socket"] == "control" && e["reason"] == "holds-a-listener"
    });
    assert!(!refused.is_empty(), "{}", broker.log());
}

// ---- F2: a listener is registered once, and only by its own process ------------------------

/// The policy a rogue registration asks for.
const ROGUE: &str = "name = \"rogue\"\ndefault = \"allow\"\n";

/// The `register-self-fds` probe's report.
fn rogue_report(out: &Outcome) -> (bool, u64, u64) {
    let v = out.json();
    let reached = v["reached"]["ok"] == true;
    let registered = v["registered"].as_u64().unwrap_or(u64::MAX);
    let connects = v["connects"]["ok"].as_u64().unwrap_or(u64::MAX);
    (reached, registered, connects)
}

/// F2: a `nobody` sandbox whose policy allows unix `/**`, against a root `netjaild` whose
/// registration socket its user may use, sends `RegisterSelf` + `ListenerFd N` for N = 3..64:
/// the broker made the connect, so "the process at the other end" was the broker, and the old
/// broker took its own fd N (other sandboxes' listeners, the attacker's own) and registered it
/// with an allow-all policy; the attacker's denied connects then went through. Unconfined, the
/// probe reaches the socket and its connects succeed (no policy). Confined, the connect to
/// the registration socket is refused, nothing is registered and no connect succeeds.
#[test]
fn f2_register_self_naming_the_brokers_own_fds_is_refused() {
    let test = "f2_register_self_naming_the_brokers_own_fds_is_refused";
    if !root_and_setpriv(test) {
        return;
    }
    let broker = Broker::start();
    open_to_all(broker.socket());
    let canary = Canary::tcp4();
    let port = canary.port_str();
    // A victim sandbox, so that the broker holds another listener.
    let _victim = spawn(&mut confined_with_broker_cmd(
        &broker,
        "deny-all",
        &["sleep", "30"],
    ));
    wait_sandboxes(&broker, "sleep", 1);
    let sock = broker.socket().to_str().expect("utf-8");
    let attack = as_nobody(&[
        probe(),
        "register-self-fds",
        sock,
        ROGUE,
        "3",
        "64",
        &port,
        "60",
    ]);
    let out = unconfined(&attack);
    let (reached, _, connects) = rogue_report(&out);
    assert!(reached, "{}", out.describe());
    assert_eq!(connects, 60, "{}", out.describe());
    let before = canary.wait_count(60, Duration::from_secs(5));

    let policy = unix_anywhere("attacker", "");
    let out = run(
        &mut confined_with_broker_cmd(&broker, policy.as_str(), &attack),
        Duration::from_secs(120),
    );
    let (reached, registered, connects) = rogue_report(&out);
    assert_eq!(
        (reached, registered, connects),
        (false, 0, 0),
        "{}\n{}",
        out.describe(),
        broker.log()
    );
    assert_eq!(out.json()["reached"]["err"], "EPERM", "{}", out.describe());
    assert_eq!(canary.settled_count(), before);
    assert!(
        !broker.log().contains("\"self_registered\":true"),
        "{}",
        broker.log()
    );
}

/// F2 through a deputy: the sandbox of `netjail run`'s embedded broker (root, keeping the
/// sandbox's listener) reaches `netjaild`'s registration socket through that broker, which
/// does not know `netjaild`'s sockets. "The process at the other end" is then the launcher,
/// and `ListenerFd N` names the launcher's fds: the old broker took the sandbox's own listener
/// and registered it with an allow-all policy, and two receivers answered its calls. Now the
/// broker asks for the proof that the listener is the peer's own (a call the listener's
/// filter hands over, from the peer's threads), which the launcher never makes: nothing is
/// registered and every connect stays denied. (The sandbox runs as root, a user who may
/// register: the connect the launcher makes for it carries the sandbox's ids.)
#[test]
fn f2_a_deputy_brokers_listener_is_not_registered_again() {
    let test = "f2_a_deputy_brokers_listener_is_not_registered_again";
    if !need_root(test) {
        return;
    }
    let broker = Broker::start();
    let canary = Canary::tcp4();
    let port = canary.port_str();
    let sock = broker.socket().to_str().expect("utf-8");
    let attack = [
        probe(),
        "register-self-fds",
        sock,
        ROGUE,
        "3",
        "24",
        &port,
        "60",
    ];
    let policy = unix_anywhere("attacker", "");
    let out = run(
        &mut confined_cmd(policy.as_str(), &attack),
        Duration::from_secs(180),
    );
    let (reached, registered, connects) = rogue_report(&out);
    assert!(reached, "{}", out.describe());
    assert_eq!(
        (registered, connects),
        (0, 0),
        "{}\n{}",
        out.describe(),
        broker.log()
    );
    assert_eq!(canary.settled_count(), 0);
    let refused = broker.audit_events();
    assert!(
        refused
            .iter()
            .any(|e| e["reason"] == "no-proof" && e["socket"] == "registration"),
        "the listener was never asked for: {}\n{}",
        out.describe(),
        broker.log()
    );
}

/// `nj-probe register-fd-of SOCK ROGUE PID`, again until `pid` holds a listener (its
/// launcher makes it at start), at most 10 s.
fn register_fd_of(sock: &str, pid: i32) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = unconfined(&[probe(), "register-fd-of", sock, ROGUE, &pid.to_string()]);
        if out.code() == Some(0) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Invariant 3, a listener is registered once: a user who may register and may trace a
/// launcher takes the listener copy `netjail run` keeps and registers it again with an
/// allow-all policy; two receivers would then answer the sandbox's calls, one of them by the
/// second policy. The first registration of a listener (here one of the embedded broker's,
/// new to `netjaild`) is accepted; the second of the same listener is refused, and the
/// sandbox's denied connects stay denied.
#[test]
fn inv3_a_listener_is_registered_only_once() {
    if !need_root("inv3_a_listener_is_registered_only_once") {
        return;
    }
    let broker = Broker::start();
    let canary = Canary::tcp4();
    let port = canary.port_str();
    let sock = broker.socket().to_str().expect("utf-8");
    let loop_connects = format!(
        "sleep 3; for i in $(seq 40); do {} connect tcp 127.0.0.1 {port}; done",
        probe()
    );

    // A listener netjaild has not seen: registered.
    let mut other = spawn(&mut confined_cmd("deny-all", &["sleep", "20"]));
    let first = register_fd_of(sock, other.pid());
    assert_eq!(first.json()["answer"], "registered", "{}", first.describe());
    other.kill();

    // The same listener as a sandbox netjaild serves already: refused.
    let victim = spawn(&mut confined_with_broker_cmd(
        &broker,
        "deny-all",
        &["sh", "-c", &loop_connects],
    ));
    wait_sandboxes(&broker, "sh", 1);
    let again = register_fd_of(sock, victim.pid());
    let v = again.json();
    assert_eq!(
        v["answer"],
        "Refused",
        "{}\n{}",
        again.describe(),
        broker.log()
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("registered already (sandbox")),
        "{}",
        again.describe()
    );
    let out = victim.wait(Duration::from_secs(60));
    let allowed = json_lines(&out).iter().filter(|l| l["ok"] == true).count();
    assert_eq!(allowed, 0, "{}", out.describe());
    assert_eq!(canary.settled_count(), 0);
}

// ---- F11: bounds of the registration socket -------------------------------------------------

/// The next datagram of `conn`, decoded, within `ms`; `Err` with what came instead.
fn answer(conn: &impl std::os::fd::AsRawFd, ms: i32) -> Result<BrokerMessage, String> {
    let mut buf = vec![0u8; 1 << 17];
    match sys::recv_timeout(conn, &mut buf, ms) {
        Ok(Some(0)) => Err("closed".into()),
        Ok(Some(n)) => codec::decode(&buf[..n]).map_err(|e| e.to_string()),
        Ok(None) => Err("silence".into()),
        Err(e) => Err(sys::errno_name(e)),
    }
}

/// F11: a connection that says nothing is closed after the hello timeout, and one that says
/// hello and registers nothing is closed as long after (before, each stayed open for ever,
/// holding a task and a receive buffer). A real client registers all the while.
#[test]
fn f11_silent_connections_on_the_registration_socket_are_closed() {
    let broker = Broker::start();
    let started = Instant::now();
    let silent = sys::seqpacket_connect(broker.socket()).expect("connect");
    let greeted = sys::seqpacket_connect(broker.socket()).expect("connect");
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "f11".into(),
    };
    sys::send(&greeted, &codec::encode(&hello).expect("encode")).expect("send hello");
    assert!(matches!(
        answer(&greeted, 5000),
        Ok(BrokerMessage::Welcome { .. })
    ));
    // Meanwhile a real client registers.
    assert_eq!(
        run(
            &mut confined_with_broker_cmd(&broker, "deny-all", &["true"]),
            Duration::from_secs(20)
        )
        .code(),
        Some(0)
    );
    for (what, conn, words) in [
        ("silent", &silent, "no hello within 5 s"),
        (
            "greeted",
            &greeted,
            "nothing registered within 5 s of hello",
        ),
    ] {
        match answer(conn, 8000) {
            Ok(BrokerMessage::Error(e)) => {
                assert_eq!(e.code, ErrorCode::TimedOut, "{what}: {e:?}");
                assert!(e.message.contains(words), "{what}: {e:?}");
            }
            other => panic!("{what}: expected a timeout, got {other:?}"),
        }
        assert_eq!(
            answer(conn, 2000).err().as_deref(),
            Some("closed"),
            "{what}"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
}

/// A python3 program that opens N `SOCK_SEQPACKET` connections to PATH, sends nothing, and
/// prints, as JSON, for each whether the broker answered within 2.5 s (the hello timeout is
/// 5 s): `refused` for too many waiting connections, `open` for no answer.
const PY_IDLE_CONNECTIONS: &str = r#"
import json, select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    conns.append(s)
state = ["open"] * n
end = time.time() + 2.5
while time.time() < end:
    ready, _, _ = select.select([c for i, c in enumerate(conns) if state[i] == "open"], [], [], max(0, end - time.time()))
    for c in ready:
        data = c.recv(65536)
        state[conns.index(c)] = "refused" if b"have not registered yet" in data else "answered"
print(json.dumps({"states": state}), flush=True)
"#;

/// F11: one user (not root) keeps at most 8 connections waiting to register; the next ones
/// are refused at once with a message, and root and other users register meanwhile.
#[test]
fn f11_one_user_keeps_few_connections_waiting() {
    let test = "f11_one_user_keeps_few_connections_waiting";
    if !root_and_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let broker = Broker::start_with(&[], |_| {
        vec!["--register-group".into(), TENANTS.to_string().into()]
    });
    let user = as_user(USER_A, &[TENANTS]);
    let sock = broker.socket().to_str().expect("utf-8");
    let out = run(
        command(&user, &py).args(["-c", PY_IDLE_CONNECTIONS, sock, "12"]),
        Duration::from_secs(30),
    );
    let v = out.json();
    let states: Vec<&str> = v["states"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", out.describe()))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "open").count(),
        8,
        "{states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "refused").count(),
        4,
        "{states:?}\n{}",
        broker.log()
    );
    let out = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &["true"]),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

// ---- L13: sandboxes per registering user ------------------------------------------------------

/// L13: with `--max-sandboxes-per-user 2`, a user (not root) registers two sandboxes; the
/// third is refused with a message naming the limit, and root registers meanwhile. Each
/// sandbox costs the broker a thread, fds and a journal.
#[test]
fn l13_a_user_registers_at_most_its_share_of_sandboxes() {
    let test = "l13_a_user_registers_at_most_its_share_of_sandboxes";
    if !root_and_setpriv(test) {
        return;
    }
    let broker = Broker::start_with(&[], |_| {
        vec![
            "--register-group".into(),
            TENANTS.to_string().into(),
            "--max-sandboxes-per-user".into(),
            "2".into(),
        ]
    });
    let user = as_user(USER_A, &[TENANTS]);
    let run_as_user = |args: &[&str]| {
        let mut c = command(&user, netjail_bin());
        c.arg("run")
            .arg("--broker")
            .arg(broker.socket())
            .args(["--no-embedded", "--policy", "deny-all", "--"])
            .args(args);
        c
    };
    let _one = spawn(&mut run_as_user(&["sleep", "30"]));
    let _two = spawn(&mut run_as_user(&["sleep", "30"]));
    wait_sandboxes(&broker, "sleep", 2);
    let third = run(&mut run_as_user(&["true"]), Duration::from_secs(20));
    assert_ne!(third.code(), Some(0), "{}", third.describe());
    assert!(
        third
            .stderr
            .contains(&format!("uid {USER_A} has 2 sandboxes registered")),
        "{}",
        third.describe()
    );
    let root = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &["true"]),
        Duration::from_secs(20),
    );
    assert_eq!(root.code(), Some(0), "{}", root.describe());
}

// ---- L5: operators' lasting rules are per tenant ----------------------------------------------

/// L5: user A's held connect is granted `--always` for its policy `web`; user B registers a
/// policy it also names `web`. Before, B's connect was allowed by A's rule (the overlay file
/// was keyed by the name alone); now B's call is asked, meets no operator and is denied,
/// while A's own rule still serves A.
#[test]
fn l5_lasting_rules_of_one_user_do_not_cover_another_users_policy() {
    let test = "l5_lasting_rules_of_one_user_do_not_cover_another_users_policy";
    if !root_and_setpriv(test) {
        return;
    }
    let broker = Broker::start_with(&[], |_| {
        vec!["--register-group".into(), TENANTS.to_string().into()]
    });
    let canary = Canary::tcp4();
    let port = canary.port_str();
    let policy = policy_file(&format!(
        "name = \"web\"\ndefault = \"deny\"\nask_timeout = \"20s\"\n\
         [[ask]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    let ops = |args: &[&str]| {
        let mut c = Command::new(netjail_bin());
        c.args(args).arg("--control").arg(broker.control());
        c
    };
    let connect_as = |uid: u32| {
        let mut c = command(&as_user(uid, &[TENANTS]), netjail_bin());
        c.arg("run")
            .arg("--broker")
            .arg(broker.socket())
            .args(["--no-embedded", "--policy", policy.as_str(), "--"])
            .args([probe(), "connect", "tcp", "127.0.0.1", &port]);
        c
    };

    let mut watcher = spawn(&mut ops(&["watch", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.status().0["operators"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "the watcher never counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = spawn(&mut connect_as(USER_A));
    let pending = run(
        &mut ops(&["pending", "--json", "--wait", "--timeout", "15s"]),
        Duration::from_secs(20),
    );
    let id = json_lines(&pending)
        .first()
        .and_then(|p| p["id"].as_u64())
        .unwrap_or_else(|| panic!("{}", pending.describe()));
    let grant = run(
        &mut ops(&["grant", &id.to_string(), "--always"]),
        Duration::from_secs(20),
    );
    assert_eq!(grant.code(), Some(0), "{}", grant.describe());
    assert_ok(&a.wait(Duration::from_secs(20)));
    watcher.kill();

    // B, same policy name, nobody watching: asked, unattended, denied.
    let b = run(&mut connect_as(USER_B), Duration::from_secs(30));
    assert_eperm(&b);
    // A again: its own lasting rule.
    assert_ok(&run(&mut connect_as(USER_A), Duration::from_secs(30)));
    assert_eq!(canary.wait_count(2, Duration::from_secs(5)), 2);
    assert_eq!(canary.settled_count(), 2, "B's connect went through");
    let overlay = broker.dir().join("overlay");
    let file = overlay.join(format!("user-{USER_A}-policy-web.toml"));
    assert!(file.is_file(), "{}", broker.log());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

// ---- L6: clients check who serves the socket, and the broker where it binds ----------------

/// A python3 fake broker: binds a `SOCK_SEQPACKET` socket at PATH, prints `ready`, accepts
/// for SECONDS and prints, as JSON, how many bytes each connection sent.
const PY_FAKE_BROKER: &str = r#"
import json, socket, sys, time
path, secs = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(path)
s.listen(16)
print("ready", flush=True)
got, end = [], time.time() + secs
while time.time() < end:
    s.settimeout(max(0.1, end - time.time()))
    try:
        c, _ = s.accept()
    except socket.timeout:
        break
    c.settimeout(2)
    try:
        got.append(len(c.recv(65536)))
    except socket.timeout:
        got.append(0)
    c.close()
print(json.dumps(got), flush=True)
"#;

/// L6: a socket at a path another user controls, served by that user: `netjail run`,
/// `netjail status` and `confine_self` (root) refuse it before sending anything, saying who
/// serves it. Before, each said hello (and `netjail run` would have handed over the
/// listener to a fake that answered).
#[test]
fn l6_clients_refuse_a_socket_another_user_serves() {
    let test = "l6_clients_refuse_a_socket_another_user_serves";
    if !root_and_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    std::os::unix::fs::chown(dir.path(), Some(USER_A), Some(USER_A)).expect("chown");
    let fake = dir.path().join("broker.sock");
    let fake_str = fake.to_str().expect("utf-8");
    let server =
        spawn(command(&as_user(USER_A, &[]), &py).args(["-c", PY_FAKE_BROKER, fake_str, "8"]));
    assert_eq!(
        server.read_line(Duration::from_secs(10)).as_deref(),
        Some("ready")
    );
    let canary = Canary::tcp4();
    let policy = policy_file("name = \"z\"\ndefault = \"deny\"\n");
    let said = format!("served by uid {USER_A}");

    let launch = run(
        Command::new(netjail_bin())
            .args([
                "run",
                "--broker",
                fake_str,
                "--no-embedded",
                "--allow-root",
                "--policy",
                "deny-all",
                "--",
            ])
            .arg("true"),
        Duration::from_secs(20),
    );
    assert_ne!(launch.code(), Some(0), "{}", launch.describe());
    assert!(launch.stderr.contains(&said), "{}", launch.describe());
    let status = run(
        Command::new(netjail_bin()).args(["status", "--control", fake_str]),
        Duration::from_secs(20),
    );
    assert_eq!(status.code(), Some(1), "{}", status.describe());
    assert!(status.stderr.contains(&said), "{}", status.describe());
    let zygote = run(
        Command::new(env!("CARGO_BIN_EXE_nj-zygote"))
            .arg(fake_str)
            .arg(policy.path())
            .arg(canary.port_str()),
        Duration::from_secs(30),
    );
    assert!(zygote.stdout.contains(&said), "{}", zygote.describe());

    let out = server.wait(Duration::from_secs(20));
    let got: Vec<u64> = out
        .stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{}", out.describe()));
    assert_eq!(got, vec![0, 0, 0], "the fake broker was sent something");
    assert_eq!(canary.settled_count(), 0);
}

/// `netjaild --socket DIR/broker.sock ...` with `extra` arguments, bounded by 10 s.
fn netjaild_in(dir: &Path, extra: &[&str]) -> Outcome {
    let state = TempDir::new();
    run(
        Command::new(netjaild_bin())
            .arg("--socket")
            .arg(dir.join("broker.sock"))
            .arg("--control")
            .arg(dir.join("control.sock"))
            .arg("--overlay")
            .arg(state.path().join("overlay"))
            .arg("--state-dir")
            .arg(state.path().join("state"))
            .args(extra),
        Duration::from_secs(10),
    )
}

/// L6: the broker binds its sockets only in a directory nobody else may write in (or change
/// above it): in a world-writable directory without the sticky bit, or one another user
/// owns, another user could swap the socket for their own and be handed listeners. It
/// refuses to start and says why. (Before, it bound there, and set the mode by path after.)
#[test]
fn l6_the_broker_binds_only_in_a_directory_others_cannot_write() {
    if !need_root("l6_the_broker_binds_only_in_a_directory_others_cannot_write") {
        return;
    }
    let open = TempDir::new();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = netjaild_in(open.path(), &[]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("with mode 0777") && out.stderr.contains("another user"),
        "{}",
        out.describe()
    );
    let theirs = TempDir::new();
    std::os::unix::fs::chown(theirs.path(), Some(USER_A), None).unwrap();
    let out = netjaild_in(theirs.path(), &[]);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("belongs to uid {USER_A}")),
        "{}",
        out.describe()
    );
    // The sockets a broker makes in its own directory have their modes from the start.
    let broker = Broker::start();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(broker.socket()), 0o660);
    assert_eq!(mode(broker.control()), 0o666);
}

/// The registration and operator groups are apart: a broker told the same group for both
/// refuses to start.
#[test]
fn f3_operators_are_a_group_of_their_own() {
    let dir = TempDir::new();
    let out = netjaild_in(
        dir.path(),
        &["--register-group", "4800", "--operator-group", "4800"],
    );
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains("operators must be a group of their own"),
        "{}",
        out.describe()
    );
}

// ---- the broker's own sockets as seen from its users ------------------------------------------

/// The registration socket serves root, the broker's user and the registration group; anyone
/// else who can reach the file (here: a socket made world-writable) is refused with a
/// message naming who may register.
#[test]
fn inv3_only_the_registration_group_registers() {
    let test = "inv3_only_the_registration_group_registers";
    if !root_and_setpriv(test) {
        return;
    }
    let broker = Broker::start_with(&[], |_| {
        vec!["--register-group".into(), TENANTS.to_string().into()]
    });
    open_to_all(broker.socket());
    let attempt = |prefix: &[String]| {
        let mut c = command(prefix, netjail_bin());
        c.arg("run").arg("--broker").arg(broker.socket()).args([
            "--no-embedded",
            "--policy",
            "deny-all",
            "--",
            "true",
        ]);
        run(&mut c, Duration::from_secs(20))
    };
    let member = attempt(&as_user(USER_A, &[TENANTS]));
    assert_eq!(member.code(), Some(0), "{}", member.describe());
    let nobody: u32 = NOBODY.parse().unwrap();
    let stranger = attempt(&as_user(nobody, &[]));
    assert_ne!(stranger.code(), Some(0), "{}", stranger.describe());
    assert!(
        stranger
            .stderr
            .contains(&format!("uid {nobody} may not register sandboxes")),
        "{}",
        stranger.describe()
    );
}
