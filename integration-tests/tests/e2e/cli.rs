//! The command line contract of `netjail`: policy errors with file, line and column; the exit
//! status of the command passed through; signals forwarded to it.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    confined, confined_cmd, netjail_bin, policy_file, run, spawn, sys, Outcome, Running, TempDir,
    TempPath, DEFAULT_TIMEOUT,
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
