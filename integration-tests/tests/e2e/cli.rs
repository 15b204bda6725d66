//! The command line contract of `netjail`: policy errors with file, line and column; the exit
//! status of the command passed through; signals forwarded to it.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    confined, confined_cmd, netjail_bin, policy_file, run, spawn, sys, Canary, Outcome, Running,
    TempDir, TempPath, DEFAULT_TIMEOUT,
};

use crate::{need_python, probe};

const WAIT: Duration = Duration::from_secs(5);

// ---- policy errors ---------------------------------------------------------------------------

/// `netjail policy check FILE`.
fn policy_check(file: &str) -> Outcome {
    run(
        Command::new(netjail_bin()).args(["policy", "check", file]),
        DEFAULT_TIMEOUT,
    )
}

/// The 1-based (line, column) of the first occurrence of `needle` in `text`, in characters.
fn position(text: &str, needle: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            return (i + 1, line[..byte].chars().count() + 1);
        }
    }
    panic!("{needle:?} is not in the policy text");
}

/// The one stderr line that starts with `file:` (the error), panicking when there is none.
fn error_line<'a>(out: &'a Outcome, file: &str) -> &'a str {
    out.stderr
        .lines()
        .find(|l| l.starts_with(&format!("{file}:")))
        .unwrap_or_else(|| panic!("no `{file}:LINE:COL:` error line: {}", out.describe()))
}

/// `policy` is refused by `policy check` (exit 1, `FILE:LINE:COL: ...` with the expected
/// position and words) and by `run` (exit 125, the same message, the command never runs).
fn assert_refused(policy: &TempPath, (line, col): (usize, usize), words: &[&str]) {
    let file = policy.as_str();
    let out = policy_check(file);
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    let msg = error_line(&out, file).to_owned();
    let want = format!("{file}:{line}:{col}: ");
    assert!(
        msg.starts_with(&want),
        "expected {want}...: {}",
        out.describe()
    );
    for w in words {
        assert!(msg.contains(w), "the message lacks {w:?}: {msg}");
    }

    let dir = TempDir::new();
    let marker = dir.path().join("ran");
    let out = confined(file, &[probe(), "touch", marker.to_str().expect("utf-8")]);
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    assert!(
        out.stderr.contains(&msg),
        "run does not give the same message ({msg}): {}",
        out.describe()
    );
    assert!(
        !marker.exists(),
        "the command ran under a broken policy: {}",
        out.describe()
    );
}

/// `netjail policy check` names file, line and column of a mistake and exits 1; a good file
/// prints `FILE: ok (policy `NAME`)`; `netjail run` refuses a broken policy with the same
/// message (exit 125, the command not run); a key it does not enforce yet (`bind`) is an error.
#[test]
fn policy_check_reports_file_line_column() {
    let typo_text = "# a typo on line 3\nname = \"typo\"\ndefualt = \"deny\"\n";
    let typo = policy_file(typo_text);
    assert_refused(
        &typo,
        position(typo_text, "defualt"),
        &["unknown key", "defualt", "default"],
    );

    let cidr_text = "name = \"cidr\"\ndefault = \"deny\"\n\n[[allow]]\n\
                     connect = [\"tcp://127.0.0.1:80\", \"tcp://10.0.0.0/33:443\"]\n";
    let cidr = policy_file(cidr_text);
    let at = position(cidr_text, "\"tcp://10.0.0.0/33");
    assert_eq!(at.0, 5);
    assert_refused(&cidr, at, &["10.0.0.0/33", "prefix"]);

    let limits_text = "name = \"limited\"\ndefault = \"deny\"\n\n[limits]\n\
                       max_connections = -3\n";
    let limits = policy_file(limits_text);
    assert_refused(
        &limits,
        position(limits_text, "-3"),
        &["max_connections", "0 for none, -1 for unlimited"],
    );

    let good = policy_file(
        "name = \"good\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:80\"]\n",
    );
    let out = policy_check(good.as_str());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(
        out.stdout.trim(),
        format!("{}: ok (policy `good`)", good.as_str()),
        "{}",
        out.describe()
    );
}

// ---- exit status -----------------------------------------------------------------------------

/// The launcher's exit status is the command's: its exit code, its death by a signal (or
/// 128 + signal), 127 for a command that does not exist, 126 for one that cannot be executed.
#[test]
fn exit_status_passes_through() {
    let out = confined("deny-all", &["sh", "-c", "exit 42"]);
    assert_eq!(out.code(), Some(42), "{}", out.describe());

    let out = confined("deny-all", &["sh", "-c", "exit 0"]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    let out = confined("deny-all", &["sh", "-c", "kill -TERM $$"]);
    assert!(out.died_of(libc::SIGTERM), "{}", out.describe());

    let out = confined("deny-all", &["/nonexistent"]);
    assert_eq!(out.code(), Some(127), "{}", out.describe());
    assert!(
        out.stderr.contains("/nonexistent") && out.stderr.contains("No such file"),
        "unclear message: {}",
        out.describe()
    );

    let out = confined("deny-all", &["netjail-no-such-program"]);
    assert_eq!(out.code(), Some(127), "{}", out.describe());
    assert!(
        out.stderr.contains("netjail-no-such-program"),
        "unclear message: {}",
        out.describe()
    );

    let dir = TempDir::new();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    let out = confined("deny-all", &[script.to_str().expect("utf-8")]);
    assert_eq!(out.code(), Some(126), "{}", out.describe());
    assert!(
        out.stderr.contains(&*script.to_string_lossy()),
        "unclear message: {}",
        out.describe()
    );
}

// ---- signals ---------------------------------------------------------------------------------

/// Prints the name of each forwarded signal it gets; SIGUSR1 makes it exit 7.
const PY_SIGNALS: &str = r#"
import os, signal, sys, time
names = {signal.SIGHUP: 'hup', signal.SIGINT: 'int', signal.SIGQUIT: 'quit',
         signal.SIGUSR2: 'usr2', signal.SIGWINCH: 'winch'}
def note(sig, frame):
    print(names[sig], flush=True)
def usr1(sig, frame):
    print('usr1', flush=True)
    os._exit(7)
for s in names:
    signal.signal(s, note)
signal.signal(signal.SIGUSR1, usr1)
print('ready', flush=True)
deadline = time.time() + 20
while time.time() < deadline:
    time.sleep(0.05)
sys.exit(3)
"#;

/// Says `ready`, then sleeps (default signal actions).
const PY_SLEEP: &str = r#"
import time
print('ready', flush=True)
time.sleep(20)
"#;

/// `python3 -c SCRIPT` under `netjail run --policy deny-all`, once it has said `ready`.
fn started(py: &str, script: &str) -> Running {
    let child = spawn(&mut confined_cmd("deny-all", &[py, "-c", script]));
    assert_eq!(
        child.read_line(Duration::from_secs(15)).as_deref(),
        Some("ready"),
        "{}",
        child.stderr_so_far()
    );
    child
}

/// Signals sent to the launcher reach the command: SIGHUP, SIGINT, SIGQUIT, SIGUSR2 and
/// SIGWINCH run its handlers, SIGUSR1 makes it exit 7 (the launcher exits 7), and SIGTERM kills
/// it (the launcher dies of SIGTERM).
#[test]
fn signals_are_forwarded() {
    let Some(py) = need_python("signals_are_forwarded") else {
        return;
    };
    let child = started(&py, PY_SIGNALS);
    let launcher = child.pid();
    for (sig, name) in [
        (libc::SIGHUP, "hup"),
        (libc::SIGINT, "int"),
        (libc::SIGQUIT, "quit"),
        (libc::SIGUSR2, "usr2"),
        (libc::SIGWINCH, "winch"),
    ] {
        sys::kill(launcher, sig).expect("signal the launcher");
        assert_eq!(
            child.read_line(WAIT).as_deref(),
            Some(name),
            "{name} not forwarded: {}",
            child.stderr_so_far()
        );
    }
    sys::kill(launcher, libc::SIGUSR1).expect("signal the launcher");
    let out = child.wait(Duration::from_secs(10));
    assert_eq!(out.code(), Some(7), "{}", out.describe());
    assert!(out.stdout.contains("usr1"), "{}", out.describe());

    let child = started(&py, PY_SLEEP);
    sys::kill(child.pid(), libc::SIGTERM).expect("signal the launcher");
    let out = child.wait(Duration::from_secs(10));
    assert!(out.died_of(libc::SIGTERM), "{}", out.describe());
}

/// Traps SIGUSR1 (exit 9), sends it to its parent (the launcher) at once, then waits at most
/// 2 s for it to come back (in 50 ms steps, so that sh runs the trap soon) and exits 5.
const SH_SIGNAL_PARENT: &str = "trap 'echo got; exit 9' USR1; kill -USR1 $PPID; \
                                i=0; while [ $i -lt 40 ]; do sleep 0.05; i=$((i+1)); done; exit 5";

/// A signal that reaches the launcher as soon as the command runs is forwarded too: the
/// launcher must not die of it (leaving the command behind, unsupervised). Ten runs, since
/// the window after exec is short. The command itself sends the signal, so Landlock is off
/// here: its signal scope keeps a sandbox from signalling the launcher, which is outside it
/// (`hardening::s_d5_landlock_signal_to_outside_process_refused`).
#[test]
fn signals_are_forwarded_from_the_start() {
    let policy = policy_file("name = \"signals\"\nlandlock = \"off\"\n");
    for i in 0..10 {
        let out = confined(policy.as_str(), &["sh", "-c", SH_SIGNAL_PARENT]);
        assert!(
            !out.died_of(libc::SIGUSR1),
            "run {i}: the launcher died of a SIGUSR1 sent right after exec instead of \
             forwarding it: {}",
            out.describe()
        );
        assert_eq!(out.code(), Some(9), "run {i}: {}", out.describe());
        assert_eq!(out.stdout.trim(), "got", "run {i}: {}", out.describe());
    }
}

// ---- composition: extends, --set, policy check findings (issue 7) --------------------------

/// `netjail ARGS...` in `dir`, so that the files it names (and its messages) are relative.
fn netjail_in(dir: &TempDir, args: &[&str]) -> Outcome {
    run(
        Command::new(netjail_bin())
            .current_dir(dir.path())
            .args(args),
        DEFAULT_TIMEOUT,
    )
}

/// Issue 7: `netjail policy check` on ten broken policies gives ten precise messages, kept
/// here word for word, and exits 1.
#[test]
fn i7_policy_check_ten_broken_policies() {
    let dir = TempDir::new();
    let files: &[(&str, &str)] = &[
        ("typo.toml", "name = \"typo\"\ndefualt = \"deny\"\n"),
        (
            "cidr.toml",
            "name = \"cidr\"\n[[allow]]\nconnect = [\"tcp://10.0.0.0/33:443\"]\n",
        ),
        (
            "port.toml",
            "name = \"port\"\n[[allow]]\nbind = [\"tcp://127.0.0.1:70000\"]\n",
        ),
        (
            "shadow.toml",
            "name = \"shadow\"\n[[deny]]\nconnect = [\"tcp://127.0.0.0/8:*\"]\n\n\
             [[allow]]\nconnect = [\"tcp://127.0.0.1:8080\"]\n",
        ),
        ("a.toml", "name = \"a\"\nextends = \"b.toml\"\n"),
        ("b.toml", "name = \"b\"\nextends = \"a.toml\"\n"),
        ("parent.toml", "name = \"p\"\nextends = \"loopback-onyl\"\n"),
        ("good.toml", "name = \"good\"\n"),
        (
            "both.toml",
            "name = \"both\"\n[[deny]]\nunix = [\"/run/x.sock\"]\n[[allow]]\n\
             unix = [\"/run/y.sock\", \"/run/x.sock\"]\n",
        ),
        (
            "errno.toml",
            "name = \"errno\"\n[[deny]]\nerrno = \"EPREM\"\nconnect = [\"tcp://*:25\"]\n",
        ),
        (
            "duration.toml",
            "name = \"duration\"\nask_timeout = \"30\"\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["typo.toml"],
            "typo.toml:2:1: unknown key `defualt`; did you mean `default`?",
        ),
        (
            &["cidr.toml"],
            "cidr.toml:3:12: invalid prefix length in `10.0.0.0/33`; IPv4 takes /0 to /32, IPv6 /0 to /128",
        ),
        (
            &["port.toml"],
            "port.toml:3:9: port 70000 is out of range (0-65535)",
        ),
        (
            &["shadow.toml"],
            "shadow.toml:6:12: allow[0].connect[0] `tcp://127.0.0.1:8080` is unreachable: deny[0].connect[0] `tcp://127.0.0.0/8:*` (shadow.toml:3:12) covers everything it matches and [[deny]] tables are checked before [[allow]] tables; remove it, or narrow the entry that covers it\n\
             shadow.toml: 1 entry that can never decide a request",
        ),
        (
            &["a.toml"],
            "b.toml:2:1: `extends` makes a cycle: a.toml -> b.toml -> a.toml; remove one of these `extends`",
        ),
        (
            &["parent.toml"],
            "parent.toml:2:11: cannot extend `loopback-onyl`: it is no built-in policy (allow-all, deny-all, disablenetwork, jail, loopback-only, tcp-ports), and reading `loopback-onyl`: No such file or directory (os error 2); did you mean `loopback-only`?",
        ),
        (
            &["good.toml", "--set", "default=ask", "--set", "jail_adress=127.0.0.2"],
            "--set:2:1: unknown key `jail_adress`; did you mean `jail_address`?",
        ),
        (
            &["both.toml"],
            "both.toml:5:24: allow[0].unix[1] `/run/x.sock` is also in a [[deny]] table, deny[0].unix[0] `/run/x.sock` (both.toml:3:9), which is checked first, so this entry does nothing; remove one of the two\n\
             both.toml: 1 entry that can never decide a request",
        ),
        (
            &["errno.toml"],
            "errno.toml:3:9: unknown errno `EPREM`; expected one of EPERM, ECONNREFUSED, EACCES, ENETUNREACH, EHOSTUNREACH",
        ),
        (
            &["duration.toml"],
            "duration.toml:2:15: invalid `ask_timeout`: `30` has no unit; write 30s, 30ms, 30m or 30h",
        ),
    ];
    assert_eq!(cases.len(), 10);
    for (args, want) in cases {
        let mut all = vec!["policy", "check"];
        all.extend_from_slice(args);
        let out = netjail_in(&dir, &all);
        assert_eq!(out.code(), Some(1), "{args:?}: {}", out.describe());
        assert_eq!(out.stderr.trim_end(), *want, "{args:?}: {}", out.describe());
        assert_eq!(out.stdout, "", "{args:?}: {}", out.describe());
    }
    // The same file with its key set right is fine.
    let out = netjail_in(
        &dir,
        &[
            "policy",
            "check",
            "good.toml",
            "--set",
            "jail_address=127.0.0.2",
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}

/// Issue 7: `netjail run --policy CHILD` where CHILD extends a file: the parent's deny (with
/// its errno) and the child's allow both apply to a real confined program, and `policy show`
/// prints the resolved policy, which checks clean on its own.
#[test]
fn i7_run_a_policy_that_extends_a_file() {
    let denied = Canary::tcp4();
    let allowed = Canary::tcp4();
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("base")).expect("mkdir");
    std::fs::write(
        dir.path().join("base/parent.toml"),
        format!(
            "name = \"parent\"\ndefault = \"deny\"\n\n[[deny]]\nerrno = \"ECONNREFUSED\"\n\
             connect = [\"tcp://127.0.0.1:{}\"]\n",
            denied.port()
        ),
    )
    .expect("write parent");
    let child = dir.path().join("child.toml");
    std::fs::write(
        &child,
        "name = \"child\"\nextends = \"base/parent.toml\"\n\n[[allow]]\n\
         connect = [\"tcp://127.0.0.1:*\"]\n",
    )
    .expect("write child");
    let child = child.to_str().expect("utf-8");

    let out = confined(
        child,
        &[probe(), "connect", "tcp", "127.0.0.1", &allowed.port_str()],
    );
    crate::assert_ok(&out);
    assert_eq!(allowed.wait_count(1, WAIT), 1, "{}", out.describe());

    let out = confined(
        child,
        &[probe(), "connect", "tcp", "127.0.0.1", &denied.port_str()],
    );
    crate::assert_err(&out, "ECONNREFUSED");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(denied.count(), 0, "{}", out.describe());

    // `--set` on run: the parent's default is replaced, the deny stays.
    let mut cmd = Command::new(netjail_bin());
    cmd.env_remove("NETJAIL_BROKER").args([
        "run",
        "--allow-root",
        "--policy",
        child,
        "--set",
        "default=allow",
        "--",
        probe(),
        "connect",
        "tcp",
        "127.0.0.1",
        &denied.port_str(),
    ]);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    crate::assert_err(&out, "ECONNREFUSED");

    let shown = netjail_in(
        &dir,
        &["policy", "show", "child.toml", "--set", "ask_timeout=90s"],
    );
    assert_eq!(shown.code(), Some(0), "{}", shown.describe());
    assert!(
        shown.stdout.starts_with("name = \"child\"\n"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("ask_timeout = \"1m30s\"\n"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("extends"), "{}", shown.stdout);
    let deny_at = shown.stdout.find("[[deny]]").expect("the parent's deny");
    assert!(deny_at < shown.stdout.find("[[allow]]").expect("the child's allow"));
    let again = policy_file(&shown.stdout);
    let out = policy_check(again.as_str());
    assert_eq!(out.code(), Some(0), "{}", out.describe());
}
