//! `confine_self` (issue 6): a process confines itself and hands its own listener to a running
//! `netjaild` with `RegisterSelf` / `ListenerFd`, the way a zygote does before it loads
//! untrusted code. The program under test is `nj-zygote` (this crate's binary): it calls
//! `netjail_client::ConfineSelf`, then connects to loopback ports, then starts a child that
//! tries the same ports; one JSON line per step.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::sys::{self, errno_name};
use netjail_integration_tests::{
    allow_connect_policy, confined_with_broker, fds_back_to, run, settled_fd_count, spawn, Broker,
    Canary, Outcome, Running, TempPath,
};
use netjail_protocol::{
    codec, BrokerMessage, ClientMessage, ErrorCode, PolicySource, RegisterSelf, PROTOCOL_VERSION,
};
use serde_json::Value;

use crate::{assert_ok, have_setpriv, need_root, probe};

/// The test users (no account needed): the zygote's, and another one's.
const ZYGOTE_UID: u32 = 4712;
const OTHER_UID: u32 = 4713;

fn zygote() -> &'static str {
    env!("CARGO_BIN_EXE_nj-zygote")
}

/// `setpriv` to `uid` with no groups, no capabilities, nothing inheritable.
pub(crate) fn as_user(uid: u32) -> Vec<String> {
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--clear-groups".into(),
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--".into(),
    ]
}

/// `nj-zygote BROKER POLICY [extra...] PORTS...`, through `prefix` (empty or [`as_user`]).
fn zygote_cmd(prefix: &[String], broker: &Path, policy: &TempPath, extra: &[&str]) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(zygote());
            c
        }
        None => Command::new(zygote()),
    };
    cmd.arg(broker).arg(policy.path()).args(extra);
    cmd
}

/// Every JSON line of the output.
fn lines(out: &Outcome) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The line of `step` (the first one).
fn step<'a>(lines: &'a [Value], step: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == step)
        .unwrap_or_else(|| panic!("no {step:?} line in {lines:?}"))
}

/// What `who` (`zygote` or `child`) got connecting to `port`.
fn result(lines: &[Value], who: &str, port: u16) -> String {
    lines
        .iter()
        .find(|l| l["step"] == "connect" && l["who"] == who && l["port"] == port)
        .and_then(|l| l["result"].as_str())
        .unwrap_or_else(|| panic!("no connect line for {who} to {port} in {lines:?}"))
        .to_owned()
}

fn with_log(out: &Outcome, broker: &Broker) -> String {
    format!("{}\n--- broker log ---\n{}", out.describe(), broker.log())
}

fn chown_tree(path: &Path, uid: u32) {
    let out = run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "chown: {}", out.describe());
}

/// A `netjaild` running as `uid` (its temporary directory made theirs).
pub(crate) fn broker_as(uid: u32) -> Broker {
    let prefix = as_user(uid);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    Broker::start_with(&prefix, move |dir| {
        chown_tree(dir, uid);
        Vec::<OsString>::new()
    })
}

/// The uid process `pid` runs as.
pub(crate) fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Two canaries and a policy allowing the first only.
struct Setup {
    allowed: Canary,
    denied: Canary,
    policy: TempPath,
}

impl Setup {
    fn new() -> Setup {
        let allowed = Canary::tcp4();
        let denied = Canary::tcp4();
        let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
        Setup {
            allowed,
            denied,
            policy,
        }
    }

    fn ports(&self) -> [String; 2] {
        [self.allowed.port_str(), self.denied.port_str()]
    }
}

/// Asserts what a confined-and-registered zygote run shows: confine ok, it holds no
/// listener, the allowed port reached and the denied one refused with EPERM, by the zygote and
/// by its later child alike; the denied canary saw nobody.
#[track_caller]
fn assert_confined_run(out: &Outcome, broker: &Broker, s: &Setup) {
    let l = lines(out);
    let confine = step(&l, "confine");
    assert_eq!(confine["ok"], true, "{}", with_log(out, broker));
    assert_eq!(
        step(&l, "listeners")["count"],
        0,
        "the zygote kept its listener"
    );
    for who in ["zygote", "child"] {
        assert_eq!(
            result(&l, who, s.allowed.port()),
            "ok",
            "{who}: {}",
            with_log(out, broker)
        );
        assert_eq!(
            result(&l, who, s.denied.port()),
            "EPERM",
            "{who}: {}",
            with_log(out, broker)
        );
    }
    assert_eq!(s.allowed.wait_count(2, Duration::from_secs(5)), 2);
    assert_eq!(
        s.denied.settled_count(),
        0,
        "the denied listener was reached"
    );
    let events = broker.wait_audit(1, Duration::from_secs(5), |e| {
        e["message"] == "sandbox registered" && e["self_registered"] == true
    });
    assert_eq!(
        events.len(),
        1,
        "no self-registration event:\n{}",
        broker.log()
    );
    assert_eq!(events[0]["name"], "zygote");
}

/// The unconfined control run: the same program with `--no-confine` reaches both ports, which
/// shows that the confined run's refusals are the sandbox's doing.
#[track_caller]
fn assert_unconfined_run(prefix: &[String], broker: &Broker, policy: &TempPath) {
    let s = Setup::new();
    let [a, d] = s.ports();
    let out = run(
        &mut zygote_cmd(prefix, broker.socket(), policy, &["--no-confine", &a, &d]),
        Duration::from_secs(30),
    );
    let l = lines(&out);
    for who in ["zygote", "child"] {
        assert_eq!(
            result(&l, who, s.allowed.port()),
            "ok",
            "{}",
            out.describe()
        );
        assert_eq!(result(&l, who, s.denied.port()), "ok", "{}", out.describe());
    }
    assert_eq!(s.denied.wait_count(2, Duration::from_secs(5)), 2);
}

/// D4 (and D1): `confine_self` confines the calling process and every child it starts later:
/// the allowed loopback port is reached, the denied one refused with EPERM, by both.
#[test]
fn s_d4_confine_self_confines_the_process_and_its_later_children() {
    let broker = Broker::start();
    let s = Setup::new();
    assert_unconfined_run(&[], &broker, &s.policy);
    let [a, d] = s.ports();
    let out = run(
        &mut zygote_cmd(&[], broker.socket(), &s.policy, &[&a, &d]),
        Duration::from_secs(30),
    );
    assert_confined_run(&out, &broker, &s);
}

/// D6: confinement needs no privilege: `netjaild` and the zygote both run as an unprivileged
/// user without any capability, and the zygote confines itself all the same.
#[test]
fn s_d6_confine_self_as_an_unprivileged_user() {
    let test = "s_d6_confine_self_as_an_unprivileged_user";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let broker = broker_as(ZYGOTE_UID);
    assert_eq!(
        uid_of(broker.pid()),
        Some(ZYGOTE_UID),
        "the broker is not unprivileged"
    );
    let s = Setup::new();
    let prefix = as_user(ZYGOTE_UID);
    assert_unconfined_run(&prefix, &broker, &s.policy);
    let [a, d] = s.ports();
    let out = run(
        &mut zygote_cmd(&prefix, broker.socket(), &s.policy, &[&a, &d]),
        Duration::from_secs(30),
    );
    assert_confined_run(&out, &broker, &s);
    let events = broker.audit_events();
    let registered = events
        .iter()
        .find(|e| e["self_registered"] == true)
        .expect("registered event");
    assert_eq!(registered["peer_uid"], ZYGOTE_UID);
}

/// M4, L6: a broker of ANOTHER unprivileged user is never handed the listener: `confine_self`
/// sees that the socket is served by a uid that is neither root nor its own, sends nothing,
/// and says so; the process is confined all the same: its connect to the allowed port fails
/// (ENOSYS, no listener) and reaches nobody. (Before L6 the broker got `RegisterSelf` and
/// failed only at `pidfd_getfd`, for lack of ptrace access; a broker that had it would have
/// taken the listener.)
#[test]
fn s_m4_confine_self_with_a_broker_of_another_user_fails_closed() {
    let test = "s_m4_confine_self_with_a_broker_of_another_user_fails_closed";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let broker = broker_as(OTHER_UID);
    // Let the zygote's user reach the other user's socket (0660 by default).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(broker.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod broker socket");
    let prefix = as_user(ZYGOTE_UID);
    let s = Setup::new();
    assert_unconfined_run(&prefix, &broker, &s.policy);
    let [a, d] = s.ports();
    let out = run(
        &mut zygote_cmd(&prefix, broker.socket(), &s.policy, &[&a, &d]),
        Duration::from_secs(30),
    );
    let l = lines(&out);
    let confine = step(&l, "confine");
    assert_eq!(confine["ok"], false, "{}", with_log(&out, &broker));
    assert_eq!(confine["confined"], true, "{}", with_log(&out, &broker));
    let error = confine["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("served by uid {OTHER_UID}"))
            && error.contains("neither root nor this user"),
        "{error}"
    );
    assert_eq!(step(&l, "listeners")["count"], 0);
    for who in ["zygote", "child"] {
        assert_eq!(
            result(&l, who, s.allowed.port()),
            "ENOSYS",
            "{who}: {}",
            out.describe()
        );
        assert_eq!(
            result(&l, who, s.denied.port()),
            "ENOSYS",
            "{who}: {}",
            out.describe()
        );
    }
    assert_eq!(
        s.allowed.settled_count(),
        0,
        "the allowed listener was reached"
    );
    assert_eq!(s.denied.count(), 0);
    assert!(
        !broker.log().contains("sandbox registered"),
        "a broker of another user registered the zygote:\n{}",
        broker.log()
    );
}

/// M4: registration cannot be skipped: with the broker stopped (SIGSTOP) the zygote blocks in
/// `confine_self`, printing nothing past "confining" and reaching nobody; once the broker is
/// killed, `confine_self` returns an error, the process is confined all the same, and its
/// connect to the port the policy ALLOWS fails. Unconfined, the same connect succeeds.
#[test]
fn s_m4_confine_self_blocks_then_fails_closed_when_the_broker_dies() {
    let mut broker = Broker::start();
    let s = Setup::new();
    assert_unconfined_run(&[], &broker, &s.policy);
    sys::kill(broker.pid(), libc::SIGSTOP).expect("SIGSTOP the broker");
    let a = s.allowed.port_str();
    let mut zygote: Running = spawn(&mut zygote_cmd(&[], broker.socket(), &s.policy, &[&a]));
    let first = zygote.read_line(Duration::from_secs(10));
    assert_eq!(first.as_deref(), Some(r#"{"step":"confining"}"#));
    let blocked = zygote.read_line(Duration::from_millis(1200));
    assert_eq!(
        blocked, None,
        "confine_self did not block on a stopped broker"
    );
    assert!(zygote.is_alive());
    assert_eq!(s.allowed.count(), 0);

    sys::kill(broker.pid(), libc::SIGKILL).expect("SIGKILL the broker");
    let out = zygote.wait(Duration::from_secs(20));
    assert!(!broker.is_alive());
    let l = lines(&out);
    let confine = step(&l, "confine");
    assert_eq!(confine["ok"], false, "{}", out.describe());
    assert_eq!(confine["confined"], true, "{}", out.describe());
    assert!(
        confine["error"]
            .as_str()
            .is_some_and(|e| e.contains("closed the connection")),
        "{}",
        out.describe()
    );
    for who in ["zygote", "child"] {
        let got = result(&l, who, s.allowed.port());
        assert_ne!(got, "ok", "{who} reached the allowed port without a broker");
        assert_eq!(got, "ENOSYS", "{who}: {}", out.describe());
    }
    assert_eq!(s.allowed.settled_count(), 0, "the listener was reached");
}

/// One conversation on the registration socket, driven by the test.
struct Conn {
    sock: OwnedFd,
}

impl Conn {
    /// Connects and exchanges hello/welcome.
    fn new(broker: &Broker) -> Conn {
        let sock = sys::seqpacket_connect(broker.socket()).expect("connect to the broker");
        let conn = Conn { sock };
        conn.send(
            &ClientMessage::Hello {
                version: PROTOCOL_VERSION,
                client: "confine_self test".into(),
            },
            &[],
        );
        match conn.recv(5000) {
            Some(BrokerMessage::Welcome { .. }) => conn,
            other => panic!("no welcome: {other:?}"),
        }
    }

    fn send(&self, msg: &ClientMessage, fds: &[i32]) {
        let datagram = codec::encode(msg).expect("encode");
        if let Err(e) = sys::send_with_fds(&self.sock, &datagram, fds) {
            panic!("send {msg:?}: {}", errno_name(e));
        }
    }

    /// The next message, or `None` at end of file or after `timeout_ms`.
    fn recv(&self, timeout_ms: i32) -> Option<BrokerMessage> {
        let mut buf = vec![0u8; 1 << 17];
        match sys::recv_timeout(&self.sock, &mut buf, timeout_ms) {
            Ok(Some(n)) if n > 0 => Some(codec::decode(&buf[..n]).expect("decode")),
            _ => None,
        }
    }

    /// `RegisterSelf` with `toml`, carrying `fds`.
    fn register_self(&self, toml: &str, fds: &[i32]) {
        let msg = ClientMessage::RegisterSelf(RegisterSelf {
            name: "bad".into(),
            policy: PolicySource {
                origin: "test".into(),
                toml: toml.into(),
            },
        });
        self.send(&msg, fds);
    }

    fn expect_awaiting(&self) {
        match self.recv(5000) {
            Some(BrokerMessage::AwaitingListener { broker_pid }) => assert!(broker_pid > 0),
            other => panic!("expected awaiting-listener, got {other:?}"),
        }
    }

    /// The error reply, then end of file. Returns a failure description instead of panicking.
    fn expect_refused(&self, what: &str, code: ErrorCode, words: &str) -> Result<(), String> {
        let reply = self.recv(15_000);
        match &reply {
            Some(BrokerMessage::Error(e)) if e.code == code && e.message.contains(words) => {}
            other => {
                return Err(format!(
                    "{what}: expected {code:?} saying {words:?}, got {other:?}"
                ))
            }
        }
        match self.recv(5000) {
            None => Ok(()),
            Some(m) => Err(format!("{what}: the connection stayed open ({m:?})")),
        }
    }
}

/// Invariant 8 for the self-registration messages: each bad use is refused with its own
/// message and the connection closed; the broker keeps no fd of them and still registers a
/// normal `netjail run` sandbox afterwards. (M4: nothing half-registered is left behind.)
#[test]
fn s_m4_confine_self_bad_input_is_refused_and_the_broker_serves_on() {
    let mut broker = Broker::start();
    let baseline = settled_fd_count(broker.pid());
    let policy = "name = \"t\"\ndefault = \"deny\"\n";
    let started = Instant::now();
    // The slowest case first: a register-self that never names its listener.
    let silent = Conn::new(&broker);
    silent.register_self(policy, &[]);
    silent.expect_awaiting();

    let (pipe_r, _pipe_w) = sys::pipe().expect("pipe");
    let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
    let mut failures = Vec::new();
    let mut check = |r: Result<(), String>| {
        if let Err(e) = r {
            failures.push(e);
        }
    };

    let c = Conn::new(&broker);
    c.send(&ClientMessage::ListenerFd { fd: 3 }, &[]);
    check(c.expect_refused(
        "listener-fd first",
        ErrorCode::Malformed,
        "listener-fd without register-self",
    ));

    for (what, fd, code, words) in [
        (
            "fd 9999",
            9999,
            ErrorCode::CannotTakeListener,
            "has no fd 9999",
        ),
        (
            "fd -1",
            -1,
            ErrorCode::CannotTakeListener,
            "not an fd number",
        ),
        (
            "a pipe",
            pipe_r.as_raw_fd(),
            ErrorCode::Malformed,
            "not a seccomp listener",
        ),
    ] {
        let c = Conn::new(&broker);
        c.register_self(policy, &[]);
        c.expect_awaiting();
        c.send(&ClientMessage::ListenerFd { fd }, &[]);
        check(c.expect_refused(what, code, words));
    }

    let c = Conn::new(&broker);
    c.register_self(policy, &[devnull.as_raw_fd()]);
    check(c.expect_refused(
        "register-self with an fd",
        ErrorCode::TooManyFds,
        "register-self carries no fd",
    ));

    let c = Conn::new(&broker);
    c.register_self(policy, &[]);
    c.expect_awaiting();
    c.send(&ClientMessage::ListenerFd { fd: 3 }, &[devnull.as_raw_fd()]);
    check(c.expect_refused(
        "listener-fd with an fd",
        ErrorCode::TooManyFds,
        "listener-fd carries no fd",
    ));

    let c = Conn::new(&broker);
    c.register_self(policy, &[]);
    c.expect_awaiting();
    c.send(
        &ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: "again".into(),
        },
        &[],
    );
    check(c.expect_refused(
        "something else after register-self",
        ErrorCode::Malformed,
        "must be followed by listener-fd",
    ));

    let c = Conn::new(&broker);
    c.register_self("default = \"maybe\"\n", &[]);
    check(c.expect_refused("a bad policy", ErrorCode::BadPolicy, ""));

    check(silent.expect_refused(
        "no listener-fd",
        ErrorCode::TimedOut,
        "no listener-fd within 10 s",
    ));
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the broker gave up on a silent client too early"
    );
    drop(silent);

    assert!(broker.is_alive(), "the broker died:\n{}", broker.log());
    assert!(
        failures.is_empty(),
        "{}\n--- broker log ---\n{}",
        failures.join("\n"),
        broker.log()
    );

    // Nothing kept: the fd count returns to where it was.
    assert_eq!(
        fds_back_to(broker.pid(), baseline, Duration::from_secs(10)),
        baseline,
        "fds left behind"
    );

    // And a normal registration through the same broker still works.
    let canary = Canary::tcp4();
    let allowed = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", canary.port())]);
    let port = canary.port_str();
    let out = confined_with_broker(
        &broker,
        allowed.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &port],
    );
    assert_ok(&out);
    assert_eq!(canary.wait_count(1, Duration::from_secs(5)), 1);
    assert!(broker.is_alive());
}
