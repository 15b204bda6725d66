//! Escape attempts. Each runs the same probe unconfined (the attack works, so the probe can
//! fail) and then confined (the attack must not work), with a canary that must stay silent.

use std::time::Duration;

use netjail_integration_tests::{
    allow_connect_policy, closed_port, confined, policy_file, python3, skip, spawn, unconfined,
    Canary, Outcome, TempPath,
};
use serde_json::Value;

use crate::{assert_eperm, assert_ok, probe, Via};

const WAIT: Duration = Duration::from_secs(5);

/// A policy that allows one TCP port on 127.0.0.1 and nothing else: the decoy the attacks try
/// to get around.
fn decoy_policy() -> (Canary, TempPath) {
    let decoy = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", decoy.port())]);
    (decoy, policy)
}

// ---- M1: time of check / time of use ------------------------------------------------------

const FLIPS: &str = "3000";

fn flip(via: Via) {
    // Unconfined: the flipping thread wins both ways, so the probe really races.
    let (a, d) = (Canary::tcp4(), Canary::tcp4());
    let out = unconfined(&[probe(), "flip", &a.port_str(), &d.port_str(), FLIPS]);
    let v = out.json();
    assert!(
        v["reached_allowed"].as_u64() > Some(0) && v["reached_denied"].as_u64() > Some(0),
        "unconfined flip should reach both ports: {}",
        out.describe()
    );
    assert!(d.wait_count(1, WAIT) > 0);

    // Confined: only the allowed port, ever.
    let (a, d) = (Canary::tcp4(), Canary::tcp4());
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", a.port())]);
    let out = via.run_for(
        policy.as_str(),
        &[probe(), "flip", &a.port_str(), &d.port_str(), FLIPS],
        Duration::from_secs(50),
    );
    let v = out.json();
    assert_eq!(
        v["reached_denied"],
        0,
        "TOCTOU: denied port reached: {}",
        out.describe()
    );
    assert_eq!(v["reached_other"], 0, "{}", out.describe());
    assert!(
        v["reached_allowed"].as_u64() > Some(0),
        "the broker should still allow the allowed port: {}",
        out.describe()
    );
    assert_eq!(
        d.settled_count(),
        0,
        "TOCTOU: the denied canary was reached"
    );
    let errors = v["errors"].as_object().cloned().unwrap_or_default();
    assert!(
        errors.keys().all(|k| k == "EPERM"),
        "only EPERM expected as a failure: {}",
        out.describe()
    );
}

both!(
    /// M1: a sockaddr rewritten by another thread during the check never lets a denied port
    /// through (the broker connects on its own copy).
    s_m1_flip_toctou_never_reaches_denied_port => flip
);

// ---- io_uring -------------------------------------------------------------------------------

/// D1 / invariant 6: io_uring bypasses seccomp for the calls it performs, so setting up a ring
/// fails with EPERM inside the sandbox.
#[test]
fn s_d1_io_uring_setup_refused() {
    let canary = Canary::tcp4();
    let out = unconfined(&[probe(), "io-uring", &canary.port_str()]);
    if out.json()["setup_ok"] != true {
        skip(
            "s_d1_io_uring_setup_refused",
            &format!("io_uring unavailable unconfined: {}", out.stdout.trim()),
        );
        return;
    }
    assert_eq!(
        out.json()["connect_res"],
        0,
        "ring connect failed: {}",
        out.describe()
    );
    assert_eq!(canary.wait_count(1, WAIT), 1);

    let (_decoy, policy) = decoy_policy();
    let out = confined(policy.as_str(), &[probe(), "io-uring", &canary.port_str()]);
    assert_eq!(
        out.json()["setup_ok"],
        false,
        "io_uring_setup worked in the sandbox: {}",
        out.describe()
    );
    assert_eq!(out.json()["err"], "EPERM", "{}", out.describe());
    assert_eq!(canary.settled_count(), 1);
}

// ---- int 0x80 -------------------------------------------------------------------------------

/// D1 / invariant 6: the i386 socketcall through `int $0x80` is not a way around the x86_64
/// filter: the process is killed by SIGSYS before it connects.
#[test]
fn s_d1_int80_socketcall_killed() {
    let canary = Canary::tcp4();
    let out = unconfined(&[probe(), "int80", &canary.port_str()]);
    let v = out.json();
    if v["socket_fd"].as_i64().is_none_or(|fd| fd < 0) {
        skip(
            "s_d1_int80_socketcall_killed",
            &format!("no IA32 emulation here: {}", out.stdout.trim()),
        );
        return;
    }
    assert_eq!(
        v["connect_res"],
        0,
        "int80 connect failed unconfined: {}",
        out.describe()
    );
    assert_eq!(canary.wait_count(1, WAIT), 1);

    let (_decoy, policy) = decoy_policy();
    let out = confined(policy.as_str(), &[probe(), "int80", &canary.port_str()]);
    assert!(
        out.died_of(libc::SIGSYS),
        "int80 probe should be killed by SIGSYS: {}",
        out.describe()
    );
    assert!(
        out.json.is_none(),
        "the probe got to print: {}",
        out.describe()
    );
    assert_eq!(canary.settled_count(), 1, "the int80 connect got through");
}

// ---- a second seccomp listener ---------------------------------------------------------------

/// M1 / invariant 6: the sandbox cannot install its own seccomp listener to intercept its
/// connect and CONTINUE it past the broker.
#[test]
fn s_m1_second_listener_refused() {
    let canary = Canary::tcp4();
    let out = unconfined(&[probe(), "second-listener", &canary.port_str()]);
    let v = out.json();
    assert_eq!(v["listener_ok"], true, "{}", out.describe());
    assert_eq!(v["connect_ok"], true, "{}", out.describe());
    assert!(v["notifications"].as_u64() >= Some(1), "{}", out.describe());
    assert_eq!(canary.wait_count(1, WAIT), 1);

    let (_decoy, policy) = decoy_policy();
    let out = confined(
        policy.as_str(),
        &[probe(), "second-listener", &canary.port_str()],
    );
    let v = out.json();
    assert_eq!(
        v["listener_ok"],
        false,
        "a second listener was installed: {}",
        out.describe()
    );
    assert_eq!(v["connect_ok"], false, "{}", out.describe());
    assert_eq!(v["err"], "EPERM", "{}", out.describe());
    assert_eq!(canary.settled_count(), 1);
}

// ---- pidfd_getfd ------------------------------------------------------------------------------

const PY_HOLDER: &str =
    "import socket, time\ns = socket.socket()\nprint(s.fileno(), flush=True)\ntime.sleep(60)\n";

/// Starts a python3 that holds an unconnected TCP socket; returns it and the socket's fd.
fn holder(py: &str) -> (netjail_integration_tests::Running, String) {
    let mut cmd = std::process::Command::new(py);
    cmd.args(["-c", PY_HOLDER]);
    let h = spawn(&mut cmd);
    let fd = h
        .read_line(Duration::from_secs(10))
        .expect("holder printed its fd");
    (h, fd.trim().to_owned())
}

/// D5: a confined process cannot steal a socket from an unconfined one with pidfd_getfd.
#[test]
fn s_d5_pidfd_getfd_refused() {
    let Some(py) = python3() else {
        skip("s_d5_pidfd_getfd_refused", "python3 not found");
        return;
    };
    let py = py.to_str().expect("utf-8 path");
    let canary = Canary::tcp4();
    {
        let (h, fd) = holder(py);
        let out = unconfined(&[
            probe(),
            "pidfd-getfd",
            &h.pid().to_string(),
            &fd,
            &canary.port_str(),
        ]);
        let v = out.json();
        assert_eq!(
            v["getfd_ok"],
            true,
            "pidfd_getfd failed unconfined: {}",
            out.describe()
        );
        assert_eq!(v["connect_ok"], true, "{}", out.describe());
        assert_eq!(canary.wait_count(1, WAIT), 1);
    }
    let (h, fd) = holder(py);
    let (_decoy, policy) = decoy_policy();
    let out = confined(
        policy.as_str(),
        &[
            probe(),
            "pidfd-getfd",
            &h.pid().to_string(),
            &fd,
            &canary.port_str(),
        ],
    );
    let v = out.json();
    assert_eq!(
        v["getfd_ok"],
        false,
        "a socket was stolen from outside: {}",
        out.describe()
    );
    assert_eq!(v["connect_ok"], false, "{}", out.describe());
    assert_eq!(canary.settled_count(), 1);
    drop(h);
}

// ---- N2: mapped and wildcard addresses ------------------------------------------------------

/// Only 10.0.0.0/8 (never connected to: it only shapes the policy).
const ONLY_TEN: &str = r#"
name = "only-ten"
default = "deny"

[[allow]]
connect = ["tcp://10.0.0.0/8:*"]
"#;

/// Everything but loopback.
const ALL_BUT_LOOPBACK: &str = r#"
name = "all-but-loopback"
default = "deny"

[[deny]]
connect = ["tcp://loopback:*"]

[[allow]]
connect = ["tcp://*:*", "tcp://[::/0]:*"]
"#;

/// Connects to `addr` (on a v4 or v6 canary) unconfined (must work), then confined under
/// `policy_text` (must be EPERM, canary untouched).
fn n2_case(addr: &str, v6_canary: bool, policy_text: &str) {
    let canary = if v6_canary {
        Canary::tcp6()
    } else {
        Canary::tcp4()
    };
    let args = [probe(), "connect", "tcp", addr, &canary.port_str()];
    let out = unconfined(&args);
    assert_ok(&out);
    assert_eq!(
        canary.wait_count(1, WAIT),
        1,
        "{addr} does not reach loopback here"
    );
    let policy = policy_file(policy_text);
    let out = confined(policy.as_str(), &args);
    assert_eperm(&out);
    assert_eq!(
        canary.settled_count(),
        1,
        "{addr} reached loopback from the sandbox"
    );
}

/// N2: `::ffff:127.0.0.1` is loopback, not in 10/8.
#[test]
fn s_n2_v4_mapped_loopback_denied_when_only_10_8_allowed() {
    n2_case("::ffff:127.0.0.1", false, ONLY_TEN);
}

/// N2: `0.0.0.0` as a destination is loopback.
#[test]
fn s_n2_zero_v4_denied_when_only_10_8_allowed() {
    n2_case("0.0.0.0", false, ONLY_TEN);
}

/// N2: `::` as a destination is loopback.
#[test]
fn s_n2_unspecified_v6_denied_when_only_10_8_allowed() {
    n2_case("::", true, ONLY_TEN);
}

/// N2: a `loopback` deny rule also covers the IPv4-mapped form.
#[test]
fn s_n2_loopback_deny_covers_v4_mapped() {
    n2_case("::ffff:127.0.0.1", false, ALL_BUT_LOOPBACK);
}

/// N2: a `loopback` deny rule also covers `0.0.0.0`.
#[test]
fn s_n2_loopback_deny_covers_zero_v4() {
    n2_case("0.0.0.0", false, ALL_BUT_LOOPBACK);
}

/// N2: a `loopback` deny rule also covers `::`.
#[test]
fn s_n2_loopback_deny_covers_unspecified_v6() {
    n2_case("::", true, ALL_BUT_LOOPBACK);
}

/// N2: an IPv4-mapped address is matched as the IPv4 address it is, so an IPv4 allow rule
/// lets it through.
#[test]
fn s_n2_v4_mapped_matches_v4_allow_rule() {
    let canary = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", canary.port())]);
    let out = confined(
        policy.as_str(),
        &[
            probe(),
            "connect",
            "tcp",
            "::ffff:127.0.0.1",
            &canary.port_str(),
        ],
    );
    assert_ok(&out);
    assert_eq!(canary.wait_count(1, WAIT), 1);
}

// ---- hostile arguments ------------------------------------------------------------------------

fn bad_args(via: Via) {
    let live = Canary::tcp4();
    let dead = closed_port().to_string();
    let args = [probe(), "bad-args", &dead, &live.port_str()];
    let native = unconfined(&args);
    assert_eq!(native.json()["after"], "ok", "{}", native.describe());
    assert_eq!(live.wait_count(1, WAIT), 1);

    let out = via.run("loopback-only", &args);
    let (want, got) = (&native.json()["results"], &out.json()["results"]);
    let cases = want.as_object().expect("results table");
    let mut diffs = Vec::new();
    for (case, errno) in cases {
        if &got[case] != errno {
            diffs.push(format!("{case}: kernel {errno}, sandbox {}", got[case]));
        }
    }
    assert!(
        diffs.is_empty(),
        "the sandbox answers differently from the kernel:\n{}\n{}",
        diffs.join("\n"),
        out.describe()
    );
    assert_eq!(
        out.json()["after"],
        "ok",
        "an allowed connect after the hostile ones failed: {}",
        out.describe()
    );
    assert_eq!(live.wait_count(2, WAIT), 2);
}

both!(
    /// Invariant 8 / M1: hostile connect arguments (bad pointers, lengths, fds) get the same
    /// errno as from the kernel, and the broker keeps serving the sandbox afterwards.
    bad_args_same_errno_as_kernel => bad_args
);

// ---- leaked listener -------------------------------------------------------------------------

fn listener_found(out: &Outcome) -> &Value {
    &out.json()["seccomp_listener_found"]
}

/// D4: no seccomp listener fd is visible inside the sandbox (with it the sandbox could answer
/// its own notifications). Positive control: the scan does find one where there is one.
#[test]
fn s_d4_no_seccomp_listener_inside_sandbox() {
    let out = unconfined(&[probe(), "scan-fds", "--make-listener"]);
    assert_eq!(
        listener_found(&out),
        true,
        "the scanner misses a listener: {}",
        out.describe()
    );
    let out = unconfined(&[probe(), "scan-fds"]);
    assert_eq!(listener_found(&out), false, "{}", out.describe());

    let out = confined("loopback-only", &[probe(), "scan-fds"]);
    assert_eq!(
        listener_found(&out),
        false,
        "listener leaked into the sandbox: {}",
        out.describe()
    );
    let out = confined("loopback-only", &[probe(), "scan-fds", "--make-listener"]);
    assert_eq!(listener_found(&out), false, "{}", out.describe());
    assert!(
        !out.json()["make_listener_err"].is_null(),
        "a second listener was installed: {}",
        out.describe()
    );
}

// ---- TCP Fast Open: a connect without connect() ------------------------------------------

/// Sends b"hi" with MSG_FASTOPEN on a fresh TCP socket to 127.0.0.1:PORT, through `sendto` or
/// `sendmsg`; prints {"ok": true} once the send went out, or {"ok": false, "err": NAME}.
const PY_FASTOPEN: &str = r#"
import errno, json, socket, sys
port, how = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
try:
    if how == "sendto":
        s.sendto(b"hi", socket.MSG_FASTOPEN, ("127.0.0.1", port))
    else:
        s.sendmsg([b"hi"], [], socket.MSG_FASTOPEN, ("127.0.0.1", port))
except OSError as e:
    print(json.dumps({"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}))
else:
    print(json.dumps({"ok": True}))
"#;

/// J3/L1: `sendto`/`sendmsg` with `MSG_FASTOPEN` on an unconnected TCP socket connects to the
/// address it carries, with no connect() call. Unconfined it reaches the canary; confined it
/// is decided as the connect it is: refused with EPERM (canary silent) when the policy does
/// not allow the port, and made by the broker when it does.
#[test]
fn s_j3_tcp_fast_open_is_decided_as_a_connect() {
    let Some(py) = python3() else {
        skip(
            "s_j3_tcp_fast_open_is_decided_as_a_connect",
            "python3 not found",
        );
        return;
    };
    let py = py.to_string_lossy().into_owned();
    for how in ["sendto", "sendmsg"] {
        let canary = Canary::tcp4();
        let port = canary.port_str();
        let out = unconfined(&[&py, "-c", PY_FASTOPEN, &port, how]);
        assert_eq!(
            out.json()["ok"],
            true,
            "unconfined {how} MSG_FASTOPEN should connect: {}",
            out.describe()
        );
        assert_eq!(
            canary.wait_count(1, WAIT),
            1,
            "unconfined {how} did not reach the canary"
        );

        let deny = policy_file("name = \"t\"\ndefault = \"deny\"\n");
        let out = confined(deny.as_str(), &[&py, "-c", PY_FASTOPEN, &port, how]);
        assert_eq!(
            (&out.json()["ok"], &out.json()["err"]),
            (&serde_json::json!(false), &serde_json::json!("EPERM")),
            "confined {how} to a denied port: {}",
            out.describe()
        );
        assert_eq!(
            canary.settled_count(),
            1,
            "a confined {how} with MSG_FASTOPEN reached a denied canary"
        );

        let allow = allow_connect_policy(&[format!("tcp://127.0.0.1:{port}")]);
        let out = confined(allow.as_str(), &[&py, "-c", PY_FASTOPEN, &port, how]);
        assert_eq!(
            out.json()["ok"],
            true,
            "confined {how} to an allowed port: {}",
            out.describe()
        );
        assert_eq!(
            canary.wait_count(2, WAIT),
            2,
            "the allowed fast open did not arrive"
        );
    }
}
