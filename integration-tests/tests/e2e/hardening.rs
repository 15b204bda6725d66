//! The confinement hardening a policy controls (issue 3): the Landlock domain (D5, D4,
//! invariant 6), the interface-configuring ioctls (N1), the `ioctl` safe-list (J6),
//! `F_SETOWN` (J7), `keep_capabilities` and `namespaces`. Each attack runs unconfined first
//! (it works, so the probe can fail), then confined (it must not); where a policy key turns a
//! rule off or on, the run with the other setting shows that the key is what decides.

use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::probe::SECRET;
use netjail_integration_tests::{
    confined, confined_cmd, netjail_bin, policy_file, run, skip, spawn, sys, unconfined, which,
    Canary, Outcome, Running, TempPath, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{as_nobody, assert_err, assert_ok, have_setpriv, need_root, probe, Via};

const WAIT: Duration = Duration::from_secs(5);

/// A policy with only a name: every confinement key at its default (Landlock best effort,
/// `ioctl = "any"`, `fcntl_setown = true`, no namespaces, no capabilities kept).
const DEFAULT_POLICY: &str = "name = \"defaults\"\n";

/// The same with `landlock = "off"`: the positive control that shows what Landlock alone
/// refuses.
const LANDLOCK_OFF: &str = "name = \"no-landlock\"\nlandlock = \"off\"\n";

/// True when the kernel's Landlock ABI is at least `abi`; otherwise says `SKIP test: ...`.
fn need_landlock(test: &str, abi: u64) -> bool {
    let out = unconfined(&[probe(), "landlock-abi"]);
    let have = out.json()["abi"].as_u64().unwrap_or(0);
    if have < abi {
        skip(
            test,
            &format!("needs Landlock ABI {abi} (this kernel: {have}, 0 = none)"),
        );
    }
    have >= abi
}

/// [`DEFAULT_POLICY`] in a temporary file.
fn default_policy() -> TempPath {
    policy_file(DEFAULT_POLICY)
}

/// An `nj-probe idle` outside the sandbox (as nobody when `nobody`): the process, its pid
/// and the address of [`SECRET`] in its memory.
fn idle_target(nobody: bool) -> (Running, String, String) {
    let args = [probe(), "idle", "30"];
    let argv = if nobody {
        as_nobody(&args)
    } else {
        args.to_vec()
    };
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let target = spawn(&mut cmd);
    let line = target
        .read_line(WAIT)
        .expect("the idle probe printed its address");
    let v: Value = serde_json::from_str(&line).expect("idle prints JSON");
    let pid = v["pid"].to_string();
    let addr = v["addr"].as_str().expect("addr").to_owned();
    (target, pid, addr)
}

fn secret() -> String {
    String::from_utf8_lossy(SECRET).into_owned()
}

/// Asserts that `out` read the secret out of the target's memory and its environment.
#[track_caller]
fn assert_read_secret(out: &Outcome) {
    assert_ok(out);
    assert_eq!(out.json()["data"], secret(), "{}", out.describe());
    assert_eq!(out.json()["environ"], "ok", "{}", out.describe());
}

/// Asserts that `out` could open neither `/proc/PID/mem` nor `/proc/PID/environ`. The confined
/// runs here are root sandboxes (`--allow-root`, then `setpriv` for nobody), whose `/proc` is
/// a procfs of their own with `hidepid=ptraceable`: the kernel's ptrace check that refuses the
/// open (`EACCES`) hides the process's directory there first (`ENOENT`).
#[track_caller]
fn assert_no_read(out: &Outcome) {
    assert_err(out, "ENOENT");
    assert!(out.json()["data"].is_null(), "{}", out.describe());
    assert_eq!(out.json()["environ"], "ENOENT", "{}", out.describe());
}

// ---- D5: /proc/PID/mem, environ, signals: Landlock ------------------------------------------

/// D5 (Landlock): a confined process cannot read the memory (`/proc/PID/mem`) or the
/// environment (`/proc/PID/environ`) of a process outside the sandbox, both guarded by a
/// ptrace access check that the seccomp filter cannot see (opening a file). Same uid
/// (nobody reading nobody, where no capability is involved), and root reading root (where
/// the dropped `CAP_SYS_PTRACE` and `CAP_PERFMON` matter as well).
/// Unconfined both reads work; with `landlock = "off"` the same-uid read works confined too:
/// the Landlock domain is what refuses it.
#[test]
fn s_d5_landlock_proc_mem_of_outside_process_refused() {
    let defaults = default_policy();
    let name = "s_d5_landlock_proc_mem_of_outside_process_refused";
    if !need_root(name) || !have_setpriv(name) || !need_landlock(name, 1) {
        return;
    }
    let len = SECRET.len().to_string();

    // Same uid, not root: only Landlock stands in the way.
    let (target, pid, addr) = idle_target(true);
    let read = [probe(), "proc-read", &pid, &addr, &len];
    assert_read_secret(&unconfined(&as_nobody(&read)));
    let out = confined(defaults.as_str(), &as_nobody(&read));
    assert_no_read(&out);
    let off = policy_file(LANDLOCK_OFF);
    let out = confined(off.as_str(), &as_nobody(&read));
    assert_read_secret(&out);
    drop(target);

    // Root reading root: the sandbox's root has lost CAP_SYS_PTRACE and CAP_PERFMON (which
    // on its own passes the kernel's ptrace read check, Landlock or not: environ and auxv).
    let (target, pid, addr) = idle_target(false);
    let read = [probe(), "proc-read", &pid, &addr, &len];
    assert_read_secret(&unconfined(&read));
    assert_no_read(&confined("deny-all", &read));
    drop(target);
}

/// D5 (Landlock signal scope): a confined process cannot signal a process outside the
/// sandbox, not even with signal 0, and not even as root (whose `CAP_KILL` the sandbox
/// keeps); the target lives on. Nor can it signal the launcher, its parent (outside too). It
/// still signals its own child, inside the sandbox.
/// Unconfined, and confined with `landlock = "off"`, the signal reaches the outside process.
#[test]
fn s_d5_landlock_signal_to_outside_process_refused() {
    if !need_landlock("s_d5_landlock_signal_to_outside_process_refused", 6) {
        return;
    }
    let defaults = default_policy();
    let (mut target, pid, _) = idle_target(false);
    assert_ok(&unconfined(&[probe(), "signal", &pid, "0"]));

    for sig in ["0", "10"] {
        let out = confined(defaults.as_str(), &[probe(), "signal", &pid, sig]);
        assert_err(&out, "EPERM");
    }
    assert!(target.is_alive(), "SIGUSR1 from the sandbox got through");
    // The launcher is outside too: the command cannot signal its parent.
    let out = confined(
        defaults.as_str(),
        &["sh", "-c", "\"$0\" signal $PPID 0; exit $?", probe()],
    );
    assert_err(&out, "EPERM");

    let out = confined(defaults.as_str(), &[probe(), "signal-child", "10"]);
    assert_ok(&out);
    assert_eq!(
        out.json()["killed_by"],
        10,
        "a signal inside the sandbox did not arrive: {}",
        out.describe()
    );

    let off = policy_file(LANDLOCK_OFF);
    assert_ok(&confined(off.as_str(), &[probe(), "signal", &pid, "0"]));
    drop(target);
}

/// D4 (Landlock): the domain is inherited: a grandchild (sh -> sh -> nj-probe) cannot
/// signal an outside process either, and the launcher (outside) still forwards signals in:
/// a SIGTERM to `netjail run` ends the command inside.
#[test]
fn s_d4_landlock_domain_inherited_and_signals_forwarded_in() {
    if !need_landlock("s_d4_landlock_domain_inherited_and_signals_forwarded_in", 6) {
        return;
    }
    let defaults = default_policy();
    let (mut target, pid, _) = idle_target(false);
    let script = format!("sh -c '\"$0\" signal {pid} 0; exit $?' \"$0\"; exit $?");
    let out = confined(defaults.as_str(), &["sh", "-c", &script, probe()]);
    assert_err(&out, "EPERM");
    assert!(target.is_alive());
    drop(target);

    let sandbox = spawn(&mut confined_cmd(
        defaults.as_str(),
        &[probe(), "idle", "30"],
    ));
    let line = sandbox.read_line(Duration::from_secs(15));
    assert!(
        line.is_some_and(|l| l.contains("\"pid\"")),
        "the sandboxed idle probe did not start: {}",
        sandbox.stderr_so_far()
    );
    sys::kill(sandbox.pid(), libc::SIGTERM).expect("SIGTERM");
    let out = sandbox.wait(Duration::from_secs(10));
    assert!(
        out.died_of(libc::SIGTERM),
        "the forwarded SIGTERM did not end the command: {}",
        out.describe()
    );
}

fn abstract_scope(via: Via) {
    if !need_landlock("s_d5_landlock_abstract_scope_keeps_broker_connects", 6) {
        return;
    }
    let canary = Canary::unix_abstract();
    let name = canary.abstract_name().to_owned();
    let args = [probe(), "unix-abstract", &name];
    assert_ok(&unconfined(&args));
    assert_eq!(canary.wait_count(1, WAIT), 1);

    let policy = policy_file(&format!(
        "name = \"abstract\"\nlandlock = \"required\"\n\n[[allow]]\nunix = [\"@{name}\"]\n"
    ));
    let out = via.run(policy.as_str(), &args);
    assert_ok(&out);
    assert_eq!(
        canary.wait_count(2, WAIT),
        2,
        "the allowed abstract connect did not arrive"
    );
    assert!(
        !out.stderr.contains("landlock:"),
        "a Landlock warning on a kernel with every scope: {}",
        out.describe()
    );
    let other = policy_file("name = \"abstract\"\nlandlock = \"required\"\n");
    let out = via.run(other.as_str(), &args);
    assert_err(&out, "EPERM");
    assert_eq!(canary.settled_count(), 2);
}

both!(
    /// D5 / D2 (Landlock abstract unix socket scope): with `landlock = "required"` the
    /// sandbox is scoped away from abstract sockets created outside it; its connects are
    /// made by the broker on its own copy of the socket, outside the domain, so an allowed
    /// abstract connect still arrives and a denied one is still EPERM. (The sandbox's own
    /// abstract connect never happens: `connect`, `sendto` with a destination, `sendmsg` and
    /// `sendmmsg` all go to the broker, so the scope is a second wall no probe can reach.)
    s_d5_landlock_abstract_scope_keeps_broker_connects => abstract_scope
);

// ---- N1: interface configuration ioctls --------------------------------------------------

/// The setters `if-ioctls` tries.
pub(crate) const IF_SETTERS: [&str; 5] = [
    "SIOCSIFFLAGS",
    "SIOCSIFFLAGS_high_bits",
    "SIOCSIFMTU",
    "SIOCBRADDBR",
    "TUNSETIFF",
];

/// `unshare -n -- ARGS...`: ARGS in a network namespace made for them, so that the host's
/// interfaces are never touched.
pub(crate) fn in_new_netns(args: &[&str]) -> Outcome {
    let unshare = which("unshare").expect("unshare found");
    let mut cmd = Command::new(unshare);
    cmd.arg("-n").arg("--").args(args);
    run(&mut cmd, DEFAULT_TIMEOUT)
}

/// N1: as root, bringing `lo` up (`SIOCSIFFLAGS`, also with bit 32 of the request set, which
/// the kernel drops), changing its MTU (`SIOCSIFMTU`), creating a bridge (`SIOCBRADDBR`) and
/// a tun device (`TUNSETIFF`) all fail with EPERM in the sandbox, even when the policy keeps
/// `CAP_NET_ADMIN` (where the filter is the only wall); the read-only `SIOCGIFFLAGS` and
/// `SIOCGIFMTU` keep working. Unconfined every one works. Everything runs in a network
/// namespace the test creates (`unshare -n`, outside the sandbox, which may not make one).
#[test]
fn s_n1_interface_ioctls_refused_even_with_cap_net_admin() {
    let defaults = default_policy();
    let name = "s_n1_interface_ioctls_refused_even_with_cap_net_admin";
    if !need_root(name) {
        return;
    }
    if which("unshare").is_none() {
        skip(name, "unshare (util-linux) not found");
        return;
    }
    let out = in_new_netns(&[probe(), "if-ioctls"]);
    for case in IF_SETTERS.iter().chain(&["SIOCGIFFLAGS", "SIOCGIFMTU"]) {
        assert_eq!(
            out.json()["results"][case],
            "ok",
            "unconfined {case}: {}",
            out.describe()
        );
    }

    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let keep = policy_file("name = \"admin\"\nkeep_capabilities = [\"CAP_NET_ADMIN\"]\n");
    for policy in [defaults.as_str(), keep.as_str()] {
        let out = in_new_netns(&[
            netjail,
            "run",
            "--allow-root",
            "--policy",
            policy,
            "--",
            probe(),
            "if-ioctls",
        ]);
        for case in IF_SETTERS {
            assert_eq!(
                out.json()["results"][case],
                "EPERM",
                "confined ({policy}) {case}: {}",
                out.describe()
            );
        }
        for case in ["SIOCGIFFLAGS", "SIOCGIFMTU"] {
            assert_eq!(
                out.json()["results"][case],
                "ok",
                "confined ({policy}) {case}: {}",
                out.describe()
            );
        }
    }
}

// ---- J6: the ioctl safe-list --------------------------------------------------------------

/// What `tty-ioctls` tries that the safe list allows.
pub(crate) const SAFE: [&str; 6] = [
    "FIONREAD",
    "FIONREAD_high_bits",
    "FIONBIO",
    "FIOCLEX",
    "TCGETS",
    "TIOCGWINSZ",
];
/// What it tries that the safe list refuses: terminal input injection (the classic), also
/// with bit 32 set, setting the window size, and an interface query.
pub(crate) const UNSAFE: [&str; 4] = ["TIOCSTI", "TIOCSTI_high_bits", "TIOCSWINSZ", "SIOCGIFINDEX"];

#[track_caller]
pub(crate) fn assert_table(out: &Outcome, cases: &[&str], want: &str, what: &str) {
    let results = &out.json()["results"];
    assert!(
        out.json()["setup"].is_null(),
        "{what}: the probe could not set up its terminal: {}",
        out.describe()
    );
    for case in cases {
        assert_eq!(results[case], want, "{what} {case}: {}", out.describe());
    }
}

/// J6: with `ioctl = "safe-list"`, `FIONREAD`, `FIONBIO`, `FIOCLEX` on a pipe and `TCGETS`,
/// `TIOCGWINSZ` on a terminal keep working, while `TIOCSTI` (pushing input into the
/// controlling terminal), `TIOCSWINSZ` and `SIOCGIFINDEX` fail with EPERM. Without the key
/// (unconfined, and confined with the default policy) every one of them works.
#[test]
fn s_j6_ioctl_safe_list() {
    let defaults = default_policy();
    // Linux 6.2+ can turn TIOCSTI off for processes without CAP_SYS_ADMIN (which the
    // sandbox has lost): then the default-confined TIOCSTI answers EIO from the kernel.
    let legacy_tiocsti = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti")
        .map_or(true, |v| v.trim() != "0");
    let out = unconfined(&[probe(), "tty-ioctls"]);
    assert_table(&out, &SAFE, "ok", "unconfined");
    assert_table(&out, &UNSAFE, "ok", "unconfined");
    assert_eq!(out.json()["fionread_bytes"], 3, "{}", out.describe());

    let out = confined(defaults.as_str(), &[probe(), "tty-ioctls"]);
    assert_table(&out, &SAFE, "ok", "default policy");
    if legacy_tiocsti {
        assert_table(&out, &UNSAFE, "ok", "default policy");
    } else {
        assert_table(
            &out,
            &["TIOCSWINSZ", "SIOCGIFINDEX"],
            "ok",
            "default policy",
        );
    }

    let policy = policy_file("name = \"strict-ioctl\"\nioctl = \"safe-list\"\n");
    let out = confined(policy.as_str(), &[probe(), "tty-ioctls"]);
    assert_table(&out, &SAFE, "ok", "safe-list");
    assert_table(&out, &UNSAFE, "EPERM", "safe-list");
    assert_eq!(out.json()["fionread_bytes"], 3, "{}", out.describe());
    assert_eq!(out.json()["fionread_high_bytes"], 3, "{}", out.describe());
}

// ---- J7: F_SETOWN ----------------------------------------------------------------------------

/// What `setown` tries that chooses a signal's receiver or number.
pub(crate) const SETOWN: [&str; 6] = [
    "F_SETOWN",
    "F_SETOWN_high_bits",
    "F_SETOWN_EX",
    "F_SETSIG",
    "FIOSETOWN",
    "SIOCSPGRP",
];

/// J7: with `fcntl_setown = false`, `F_SETOWN` (also with bit 32 of the command set),
/// `F_SETOWN_EX`, `F_SETSIG` and their ioctl spellings `FIOSETOWN` and `SIOCSPGRP` fail with
/// EPERM, while `F_GETOWN` and `O_ASYNC` keep working. Unconfined and with the default policy
/// every one works.
#[test]
fn s_j7_setown_refused_when_the_policy_says() {
    let defaults = default_policy();
    let out = unconfined(&[probe(), "setown"]);
    assert_table(&out, &SETOWN, "ok", "unconfined");
    let out = confined(defaults.as_str(), &[probe(), "setown"]);
    assert_table(&out, &SETOWN, "ok", "default policy");

    let policy = policy_file("name = \"no-setown\"\nfcntl_setown = false\n");
    let out = confined(policy.as_str(), &[probe(), "setown"]);
    assert_table(&out, &SETOWN, "EPERM", "fcntl_setown = false");
    assert_table(
        &out,
        &["F_GETOWN", "F_SETFL_O_ASYNC"],
        "ok",
        "fcntl_setown = false",
    );
}

// ---- keep_capabilities ---------------------------------------------------------------------

/// `AF_INET`, `SOCK_RAW`, `IPPROTO_ICMP`.
const INET_RAW_ICMP: &str = "2:3:1";

/// The effective capability mask printed by `grep ^CapEff /proc/self/status`.
fn cap_eff(out: &Outcome) -> u64 {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff line: {}", out.describe()));
    u64::from_str_radix(line.trim(), 16).expect("hex capability mask")
}

/// Invariant 6 / J1: a root sandbox whose policy lists `inet:raw` and keeps `CAP_NET_RAW`
/// opens a raw ICMP socket, and keeps that capability alone (`CAP_NET_ADMIN`, `CAP_PERFMON`
/// and the others are still gone);
/// the same policy without `keep_capabilities` gets EPERM from the kernel, the socket being
/// listed or not. Unconfined root opens it.
#[test]
fn s_j1_keep_capabilities_cap_net_raw() {
    if !need_root("s_j1_keep_capabilities_cap_net_raw") {
        return;
    }
    let socket = [probe(), "socket", INET_RAW_ICMP];
    assert_ok(&unconfined(&socket));

    let keep = policy_file(
        "name = \"ping\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n\n[sockets]\nallow = [\"inet:raw\"]\n",
    );
    assert_ok(&confined(keep.as_str(), &socket));
    let caps = confined(keep.as_str(), &["grep", "^Cap", "/proc/self/status"]);
    let eff = cap_eff(&caps);
    assert_ne!(
        eff & (1 << 13),
        0,
        "CAP_NET_RAW dropped: {}",
        caps.describe()
    );
    for cap in [10, 11, 12, 19, 21, 38, 39] {
        assert_eq!(eff & (1 << cap), 0, "cap {cap} kept: {}", caps.describe());
    }

    let listed = policy_file("name = \"no-ping\"\n\n[sockets]\nallow = [\"inet:raw\"]\n");
    assert_err(&confined(listed.as_str(), &socket), "EPERM");
}

// ---- namespaces ----------------------------------------------------------------------------

/// Waits until `/proc/PID/ns/user` differs from ours (the holder has unshared).
fn wait_for_own_userns(pid: i32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/user").ok();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        if theirs.is_some() && theirs != ours {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// N1 / invariant 6: `namespaces = ["user"]` lets the sandbox make a user namespace
/// (`unshare -U true`) and join one (`setns(fd, CLONE_NEWUSER)`, through `nsenter`), but not
/// a network namespace (`unshare -U -n`), which needs `"net"` as well. Without the key both
/// are refused with EPERM in the kernel. Unconfined all of it works. The `setns` runs join a
/// user namespace of a process outside the sandbox, with Landlock off so that
/// `/proc/PID/ns/user` can be opened at all: what refuses it is the filter.
#[test]
fn s_n1_namespaces_granted_by_policy() {
    let defaults = default_policy();
    let name = "s_n1_namespaces_granted_by_policy";
    if !need_root(name) {
        return;
    }
    if which("unshare").is_none() || which("nsenter").is_none() {
        skip(name, "unshare or nsenter (util-linux) not found");
        return;
    }
    let user = ["unshare", "-U", "true"];
    let user_net = ["unshare", "-U", "-n", "true"];
    unconfined(&user).assert_success();
    unconfined(&user_net).assert_success();

    let refused = |out: &Outcome| {
        assert_ne!(out.code(), Some(0), "{}", out.describe());
        assert!(
            out.stderr.contains("Operation not permitted"),
            "expected EPERM: {}",
            out.describe()
        );
    };
    refused(&confined(defaults.as_str(), &user));
    let grant_user = policy_file("name = \"userns\"\nnamespaces = [\"user\"]\n");
    confined(grant_user.as_str(), &user).assert_success();
    refused(&confined(grant_user.as_str(), &user_net));
    let grant_both = policy_file("name = \"netns\"\nnamespaces = [\"user\", \"net\"]\n");
    confined(grant_both.as_str(), &user_net).assert_success();

    // setns: join the user namespace of an outside holder.
    let mut cmd = Command::new("unshare");
    cmd.args(["-U", "sleep", "30"]);
    let holder = spawn(&mut cmd);
    assert!(
        wait_for_own_userns(holder.pid()),
        "the holder did not unshare"
    );
    let pid = holder.pid().to_string();
    let join = [
        "nsenter",
        "--preserve-credentials",
        "-t",
        &pid,
        "--user",
        "true",
    ];
    unconfined(&join).assert_success();
    let off = policy_file(LANDLOCK_OFF);
    refused(&confined(off.as_str(), &join));
    let user_off = policy_file("name = \"t\"\nlandlock = \"off\"\nnamespaces = [\"user\"]\n");
    confined(user_off.as_str(), &join).assert_success();
    drop(holder);
}
