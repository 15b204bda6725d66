//! Conformance of the seed profiles (`docs/profiles.md`): one test per rule id of each built-in
//! profile, run against the profile by name (`netjail run --policy disablenetwork -- ...`).
//! Where a rule is a restriction, the same probe runs unconfined first and must succeed there,
//! so that each check is shown able to fail. Many of these behaviours are also proven under
//! policies written for their test (`confinement.rs`, `datagram.rs`, `hardening.rs`); here
//! they are proven of the profiles a user picks by name.
//!
//! The `jail` profile ships with the jail address 127.0.0.2. Tests that need another address,
//! or rules of the user's own on top of the profile, go through [`jail_with`]: today the
//! profile's text with the address replaced and tables appended, in a file.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use netjail_integration_tests::{
    confined, netjail_bin, policy_file, unconfined, which, Canary, Outcome, TempPath,
};

use crate::{
    as_nobody, assert_eperm, assert_ok, have_setpriv, need_python, need_root, probe, self_status,
};

pub(crate) const WAIT: Duration = Duration::from_secs(5);

const DISABLENETWORK: &str = "disablenetwork";
pub(crate) const JAIL: &str = "jail";
const TCP_PORTS: &str = "tcp-ports";
const LOOPBACK_ONLY: &str = "loopback-only";

/// The `jail` profile's own jail address.
pub(crate) const JAIL_ADDRESS: &str = "127.0.0.2";

/// The built-in profile `name`'s TOML text.
fn profile_text(name: &str) -> &'static str {
    netjail_policy::builtin(name).unwrap_or_else(|| panic!("no built-in {name}"))
}

/// A user's own jail: a policy file that extends the `jail` profile, sets its jail address to
/// `address` and adds the rule tables `extra`.
pub(crate) fn jail_with(address: &str, extra: &str) -> TempPath {
    policy_file(&format!(
        "name = \"my-jail\"\nextends = \"jail\"\njail_address = \"{address}\"\n{extra}\n"
    ))
}

/// `netjail run --policy POLICY --set SET... -- ARGS...`.
pub(crate) fn confined_set(policy: &str, sets: &[&str], args: &[&str]) -> Outcome {
    let mut cmd = std::process::Command::new(netjail_bin());
    cmd.args(["run", "--allow-root", "--policy", policy]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd.arg("--").args(args);
    netjail_integration_tests::run(&mut cmd, Duration::from_secs(30))
}

/// The built-in profile `name` with the rule tables `extra` appended, as a policy file.
fn extended(name: &str, extra: &str) -> TempPath {
    policy_file(&format!("{}\n{extra}\n", profile_text(name)))
}

/// The probe's `results` table entry for `spec`.
#[track_caller]
pub(crate) fn assert_socket(out: &Outcome, spec: &str, want: &str) {
    assert_eq!(
        out.json()["results"][spec].as_str(),
        Some(want),
        "socket({spec}): expected {want}: {}",
        out.describe()
    );
}

/// `netjail run --policy POLICY -- ARGS...` as a plain argument list, for wrappers (`setpriv`,
/// `unshare`, a python parent) that start netjail themselves.
fn netjail_run<'a>(netjail: &'a str, policy: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![netjail, "run", "--allow-root", "--policy", policy, "--"];
    v.extend_from_slice(args);
    v
}

// ---- sockets made outside, used inside (D1, D3, L3) ----------------------------------------

/// The parent: connects a TCP and a UDP socket to the sinks on argv[1] and argv[2], makes
/// four fresh sockets (TCP, UDP, TCP, UDP), and runs argv[3:] with the six descriptors passed on
/// and their numbers appended.
const PY_PASS_SOCKETS: &str = r#"
import socket, subprocess, sys
conn_tcp = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
conn_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
conn_udp.connect(("127.0.0.1", int(sys.argv[2])))
udp = lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fresh = [socket.socket(), udp(), socket.socket(), udp()]
fds = [s.fileno() for s in [conn_tcp, conn_udp] + fresh]
r = subprocess.run(sys.argv[3:] + [str(f) for f in fds], pass_fds=fds, timeout=20)
sys.exit(r.returncode)
"#;

/// The child: sends on the connected sockets, then with the fresh ones connects to the TCP
/// canary on argv[1], sends to the UDP canary on argv[2], binds and listens. Prints one JSON
/// object of outcome names ("ok" or the errno name).
const PY_USE_SOCKETS: &str = r#"
import errno, json, socket, sys
tcp_port, udp_port = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.socket(fileno=int(f)) for f in sys.argv[3:]]
conn_tcp, conn_udp, fresh_tcp, fresh_udp, fresh_tcp2, fresh_udp2 = socks
r = {}
def t(name, f):
    try:
        f(); r[name] = "ok"
    except OSError as e:
        r[name] = errno.errorcode.get(e.errno, str(e.errno))
t("send", lambda: conn_tcp.sendall(b"send;"))
t("sendmsg", lambda: conn_tcp.sendmsg([b"sendmsg;"]))
t("udp_send", lambda: conn_udp.send(b"udp-send"))
t("connect", lambda: fresh_tcp.connect(("127.0.0.1", tcp_port)))
t("sendto", lambda: fresh_udp.sendto(b"x", ("127.0.0.1", udp_port)))
t("sendmsg_to", lambda: fresh_udp.sendmsg([b"y"], [], 0, ("127.0.0.1", udp_port)))
t("udp_connect", lambda: fresh_udp.connect(("127.0.0.1", udp_port)))
t("bind", lambda: fresh_udp2.bind(("127.0.0.1", 0)))
t("listen", lambda: fresh_tcp2.listen())
print(json.dumps(r), flush=True)
"#;

/// What the sinks received from the sockets connected outside.
struct Sinks {
    tcp: mpsc::Receiver<Vec<u8>>,
    udp: UdpSocket,
}

impl Sinks {
    /// The bytes of the first TCP connection, to its end.
    fn tcp_bytes(&self) -> String {
        let bytes = self.tcp.recv_timeout(WAIT).expect("the TCP sink's data");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The first datagram.
    fn udp_datagram(&self) -> String {
        let mut buf = [0u8; 64];
        let n = self.udp.recv(&mut buf).expect("a datagram at the UDP sink");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Runs [`PY_USE_SOCKETS`] with sockets made and connected by an unconfined parent, under
/// `policy` (`None`: unconfined too), against fresh canaries. Returns the child's outcome, the
/// sinks and the canaries (TCP, UDP).
fn sockets_from_outside(py: &str, policy: Option<&str>) -> (Outcome, Sinks, Canary, Canary) {
    let tcp_sink = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tcp_sink_port = tcp_sink.local_addr().expect("addr").port().to_string();
    let (tx, tcp) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = tcp_sink.accept() {
            let mut all = Vec::new();
            let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = c.read_to_end(&mut all);
            let _ = tx.send(all);
        }
    });
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp.set_read_timeout(Some(WAIT)).expect("timeout");
    let udp_sink_port = udp.local_addr().expect("addr").port().to_string();
    let (tcp_canary, udp_canary) = (Canary::tcp4(), Canary::udp4());
    let (tp, up) = (tcp_canary.port_str(), udp_canary.port_str());
    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let child = [py, "-c", PY_USE_SOCKETS, tp.as_str(), up.as_str()];
    let mut args = vec![
        py,
        "-c",
        PY_PASS_SOCKETS,
        tcp_sink_port.as_str(),
        udp_sink_port.as_str(),
    ];
    match policy {
        Some(p) => args.extend(netjail_run(netjail, p, &child)),
        None => args.extend(child),
    }
    let out = unconfined(&args);
    (out, Sinks { tcp, udp }, tcp_canary, udp_canary)
}

#[track_caller]
pub(crate) fn assert_results(out: &Outcome, cases: &[&str], want: &str, what: &str) {
    for case in cases {
        assert_eq!(out.json()[case], want, "{what} {case}: {}", out.describe());
    }
}

// ---- disablenetwork: D1-D7 ----------------------------------------------------------------

/// D1: under `disablenetwork` no socket but a unix one can be made: `socket()` of every
/// other family (IPv4, IPv6, netlink, and as root packet) fails in the kernel with `EPERM`, as
/// the design says (the profile's `[sockets] refuse = "EPERM"`), and so does a family number
/// the kernel does not know (where the kernel itself says `EAFNOSUPPORT`: the answer is
/// netjail's). On IP sockets made before confinement and passed in, `connect`, `sendto`,
/// `sendmsg` with a destination, a UDP `connect`, `bind` and `listen` all fail with `EPERM`;
/// the canaries hear nothing. Unconfined every call works.
#[test]
fn s_d1_disablenetwork_tcp_connect_refused() {
    let Some(py) = need_python("s_d1_disablenetwork_tcp_connect_refused") else {
        return;
    };
    let root = self_status("Uid").get(1).map(String::as_str) == Some("0");
    let mut refused = vec!["2:1", "2:2", "10:1", "10:2", "16:3:0", "16:2:0"];
    if root {
        refused.extend(["17:3", "17:2"]);
    }
    let listed = ["1:1", "1:2", "1:5"];
    // Families the kernel does not have: 63 (below AF_MAX's ceiling) and 64 (above the
    // filter's 63, refused by one comparison).
    let unknown = ["63:1", "64:2"];
    let mut args = vec![probe(), "socket"];
    args.extend(&refused);
    args.extend(listed);
    args.extend(unknown);
    let native = unconfined(&args);
    for spec in refused.iter().chain(&listed) {
        assert_socket(&native, spec, "ok");
    }
    for spec in unknown {
        assert_socket(&native, spec, "EAFNOSUPPORT");
    }
    let out = confined(DISABLENETWORK, &args);
    for spec in refused.iter().chain(&unknown) {
        assert_socket(&out, spec, "EPERM");
    }
    for spec in listed {
        assert_socket(&out, spec, "ok");
    }
    // The errno is the profile's key: set back to the kernel's, the same calls say
    // EAFNOSUPPORT; and another profile says EPERM once told to.
    let out = confined_set(DISABLENETWORK, &["sockets.refuse=EAFNOSUPPORT"], &args);
    assert_socket(&out, "2:1", "EAFNOSUPPORT");
    assert_socket(&out, "64:2", "EAFNOSUPPORT");
    assert_socket(&out, "1:1", "ok");
    let out = confined_set(TCP_PORTS, &["sockets.refuse=EPERM"], &args);
    assert_socket(&out, "16:3:0", "EPERM");
    assert_socket(&out, "2:2", "EPERM");
    assert_socket(&out, "2:1", "ok");

    let refused = [
        "connect",
        "sendto",
        "sendmsg_to",
        "udp_connect",
        "bind",
        "listen",
    ];
    let (out, _, tcp, udp) = sockets_from_outside(&py, None);
    assert_results(&out, &refused, "ok", "unconfined");
    assert_eq!(tcp.wait_count(1, WAIT), 1);
    assert!(udp.wait_count(2, WAIT) >= 2);

    let (out, _, tcp, udp) = sockets_from_outside(&py, Some(DISABLENETWORK));
    assert_results(&out, &refused, "EPERM", "disablenetwork");
    assert_eq!(
        tcp.settled_count(),
        0,
        "a refused connect reached the canary"
    );
    assert_eq!(
        udp.settled_count(),
        0,
        "a refused datagram reached the canary"
    );
}

/// D2: under `disablenetwork` a unix socket with a filesystem name connects; an abstract one
/// (first byte of `sun_path` NUL) is refused with `EPERM`. Unconfined both connect.
#[test]
fn s_d2_disablenetwork_unix_path_allowed_abstract_refused() {
    let (path, abs) = (Canary::unix_path("d2.sock"), Canary::unix_abstract());
    let path_str = path.path().to_str().expect("utf-8 path").to_owned();
    assert_ok(&unconfined(&[
        probe(),
        "unix-abstract",
        abs.abstract_name(),
    ]));
    assert_eq!(abs.wait_count(1, WAIT), 1);
    assert_ok(&unconfined(&[probe(), "unix", &path_str]));
    assert_eq!(path.wait_count(1, WAIT), 1);

    assert_ok(&confined(DISABLENETWORK, &[probe(), "unix", &path_str]));
    assert_eq!(path.wait_count(2, WAIT), 2);
    assert_eperm(&confined(
        DISABLENETWORK,
        &[probe(), "unix-abstract", abs.abstract_name()],
    ));
    assert_eq!(abs.settled_count(), 1, "the abstract socket was reached");
}

/// D3: sockets connected before confinement keep sending under `disablenetwork`: `send` and
/// `sendmsg` without a destination on a TCP socket, `send` on a connected UDP socket; the
/// peers receive every byte, as they do unconfined.
#[test]
fn s_d3_disablenetwork_sends_on_connected_sockets_keep_working() {
    let Some(py) = need_python("s_d3_disablenetwork_sends_on_connected_sockets_keep_working")
    else {
        return;
    };
    for policy in [None, Some(DISABLENETWORK)] {
        let (out, sinks, _, _) = sockets_from_outside(&py, policy);
        let what = policy.unwrap_or("unconfined");
        assert_results(&out, &["send", "sendmsg", "udp_send"], "ok", what);
        assert_eq!(sinks.tcp_bytes(), "send;sendmsg;", "{what}");
        assert_eq!(sinks.udp_datagram(), "udp-send", "{what}");
    }
}

/// The grandchild: its seccomp state, an attempt to clear no_new_privs, and an IP socket.
const PY_GRANDCHILD: &str = r#"
import ctypes, errno, json, socket
out = {}
def status():
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('Seccomp', 'NoNewPrivs'):
            out[k] = v.strip()
status()
libc = ctypes.CDLL(None, use_errno=True)
r = libc.prctl(38, 0, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS, 0
out['clear_nnp'] = 'ok' if r == 0 else errno.errorcode.get(ctypes.get_errno(), '?')
out['NoNewPrivs_before'] = out.pop('NoNewPrivs')
status()
try:
    socket.socket().close()
    out['socket'] = 'ok'
except OSError as e:
    out['socket'] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out), flush=True)
"#;

/// The child: runs the grandchild with subprocess.
const PY_CHILD: &str = r#"
import subprocess, sys
sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1]], timeout=20).returncode)
"#;

/// D4: `disablenetwork` is inherited through fork and exec (sh -> python3 -> python3): the
/// grandchild runs under the filter with no_new_privs, cannot clear no_new_privs (`EINVAL`),
/// and cannot make an IP socket (`EPERM`, D1), which it can unconfined.
#[test]
fn s_d4_disablenetwork_inherited_and_irrevocable() {
    let Some(py) = need_python("s_d4_disablenetwork_inherited_and_irrevocable") else {
        return;
    };
    let args = [
        "sh",
        "-c",
        "\"$0\" -c \"$1\" \"$2\"; exit $?",
        &py,
        PY_CHILD,
        PY_GRANDCHILD,
    ];
    let out = unconfined(&args);
    out.assert_success();
    assert_eq!(out.json()["socket"], "ok", "{}", out.describe());

    let out = confined(DISABLENETWORK, &args);
    out.assert_success();
    let v = out.json();
    assert_eq!(v["socket"], "EPERM", "{}", out.describe());
    assert_eq!(v["Seccomp"], "2", "{}", out.describe());
    assert_eq!(v["NoNewPrivs_before"], "1", "{}", out.describe());
    assert_eq!(v["clear_nnp"], "EINVAL", "{}", out.describe());
    assert_eq!(v["NoNewPrivs"], "1", "{}", out.describe());
}

/// D5: a process under `disablenetwork` can neither ptrace a process outside the sandbox nor
/// read its memory with `process_vm_readv`; unconfined (root) both read the secret. netjail is
/// stricter than the design here: ptrace is refused even of equally confined processes.
#[test]
fn s_d5_disablenetwork_ptrace_of_outside_process_refused() {
    if !need_root("s_d5_disablenetwork_ptrace_of_outside_process_refused") {
        return;
    }
    let (target, pid, addr) = crate::confinement::idle_target();
    let secret = crate::confinement::secret();
    let len = secret.len().to_string();
    let out = unconfined(&[probe(), "ptrace", &pid, &addr]);
    assert_ok(&out);
    assert_eq!(out.json()["peek"], secret[..8], "{}", out.describe());
    let out = unconfined(&[probe(), "vm-read", &pid, &addr, &len]);
    assert_eq!(out.json()["data"], secret, "{}", out.describe());

    let out = confined(DISABLENETWORK, &[probe(), "ptrace", &pid, &addr]);
    assert_eperm(&out);
    assert!(out.json()["peek"].is_null(), "{}", out.describe());
    let out = confined(DISABLENETWORK, &[probe(), "vm-read", &pid, &addr, &len]);
    assert_eperm(&out);
    assert!(out.json()["data"].is_null(), "{}", out.describe());
    drop(target);
}

/// D6: an unprivileged user (nobody, no groups) runs `netjail run --policy disablenetwork`
/// with the broker embedded, and a setuid-root program run inside gains nothing, while the
/// same program run by the same user unconfined becomes root.
#[test]
fn s_d6_disablenetwork_unprivileged_and_setuid_gains_nothing() {
    let name = "s_d6_disablenetwork_unprivileged_and_setuid_gains_nothing";
    if !need_root(name) || !have_setpriv(name) {
        return;
    }
    if self_status("NoNewPrivs").first().map(String::as_str) == Some("1") {
        netjail_integration_tests::skip(name, "the tests run with no_new_privs already");
        return;
    }
    let Some(dir) = crate::confinement::SuidDir::new() else {
        netjail_integration_tests::skip(name, "no filesystem without nosuid");
        return;
    };
    let Some(id) = which("id") else {
        netjail_integration_tests::skip(name, "`id` not found");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let suid_id = dir.path.join("id");
    std::fs::copy(&id, &suid_id).expect("copy id");
    std::fs::set_permissions(&suid_id, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let suid_id = suid_id.to_str().expect("utf-8 path");

    let out = unconfined(&as_nobody(&[suid_id, "-u"]));
    out.assert_success();
    assert_eq!(out.stdout.trim(), "0", "setuid gives no root here");

    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let out = unconfined(&as_nobody(&netjail_run(
        netjail,
        DISABLENETWORK,
        &[suid_id, "-u"],
    )));
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        crate::NOBODY,
        "a setuid binary gained root: {}",
        out.describe()
    );
    let out = unconfined(&as_nobody(&netjail_run(
        netjail,
        DISABLENETWORK,
        &[probe(), "socket", "2:1", "1:1"],
    )));
    assert_socket(&out, "2:1", "EPERM");
    assert_socket(&out, "1:1", "ok");
}

/// D7: a `disablenetwork` session that tries to connect, bind, listen and send changes
/// nothing of the host's interfaces, addresses, routes, rules, firewall or network settings
/// (the snapshot is shown able to see a change by `global::s_d7_...`).
#[test]
fn s_d7_disablenetwork_changes_nothing_global() {
    if which("ip").is_none() {
        netjail_integration_tests::skip("s_d7_disablenetwork_changes_nothing_global", "no ip");
        return;
    }
    let before = crate::global::snapshot(&[]);
    let tcp = Canary::tcp4();
    for args in [
        vec!["connect", "tcp", "127.0.0.1", &tcp.port_str()],
        vec!["if-ioctls"],
    ] {
        let mut full = vec![probe()];
        full.extend(args.iter().copied());
        let out = confined(DISABLENETWORK, &full);
        assert!(out.json.is_some(), "{}", out.describe());
    }
    // Connects, binds, listens and sends on IP sockets made outside.
    if let Some(py) = netjail_integration_tests::python3() {
        let (out, _, t, u) = sockets_from_outside(&py.to_string_lossy(), Some(DISABLENETWORK));
        assert_eq!(out.json()["bind"], "EPERM", "{}", out.describe());
        assert_eq!(t.settled_count() + u.settled_count(), 0);
    }
    assert_eq!(tcp.settled_count(), 0);
    assert_eq!(
        before,
        crate::global::snapshot(&[]),
        "a disablenetwork session changed the host's network state"
    );
}

// ---- tcp-ports: L1-L4 ---------------------------------------------------------------------

/// True when `out` is a connect the broker performed: it succeeded, or the kernel refused it
/// (`ECONNREFUSED`: nothing listens there), but not `EPERM`.
fn performed(out: &Outcome) -> bool {
    let v = out.json();
    v["ok"] == true || v["err"] == "ECONNREFUSED"
}

/// L1: `tcp-ports` allows TCP connects to ports 80 and 443 and binds of port 8080, on any
/// address, and nothing else: a connect to the canary's port and an ephemeral bind are
/// refused (unconfined both work); with the canary's port added in a policy of the user's
/// own, the connect reaches it.
#[test]
fn s_l1_tcp_ports_connect_and_bind_by_port_alone() {
    for port in ["80", "443"] {
        let out = confined(TCP_PORTS, &[probe(), "connect", "tcp", "127.0.0.1", port]);
        assert!(performed(&out), "port {port}: {}", out.describe());
        let out = confined(TCP_PORTS, &[probe(), "connect", "tcp", "::1", port]);
        assert!(performed(&out), "[::1]:{port}: {}", out.describe());
    }
    let out = confined(TCP_PORTS, &[probe(), "bind", "tcp", "127.0.0.1", "8080"]);
    let bind = &out.json()["bind"];
    assert!(
        bind["ok"] == true || bind["err"] == "EADDRINUSE",
        "{}",
        out.describe()
    );

    let canary = Canary::tcp4();
    let connect = [probe(), "connect", "tcp", "127.0.0.1", &canary.port_str()];
    assert_ok(&unconfined(&connect));
    assert_eq!(canary.wait_count(1, WAIT), 1);
    assert_eperm(&confined(TCP_PORTS, &connect));
    assert_eq!(canary.settled_count(), 1, "an unlisted port was reached");
    let ephemeral = [probe(), "bind", "tcp", "127.0.0.1", "0"];
    let out = unconfined(&ephemeral);
    assert_eq!(out.json()["bind"]["ok"], true, "{}", out.describe());
    let out = confined(TCP_PORTS, &ephemeral);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());

    let mine = extended(
        TCP_PORTS,
        &format!("[[allow]]\nconnect = [\"tcp://*:{}\"]", canary.port()),
    );
    assert_ok(&confined(mine.as_str(), &connect));
    assert_eq!(canary.wait_count(2, WAIT), 2);
}

/// L2: `tcp-ports` lists TCP over IPv4 and IPv6 and unix sockets; UDP, MPTCP, raw (as root)
/// and packet sockets are refused in the kernel: a refused type or protocol of a listed family
/// with `EPERM`, an unlisted family with `EAFNOSUPPORT`. Unconfined every one is made.
#[test]
fn s_l2_tcp_ports_udp_socket_refused() {
    let root = self_status("Uid").get(1).map(String::as_str) == Some("0");
    let mut refused = vec![("2:2", "EPERM"), ("10:2", "EPERM"), ("2:1:262", "EPERM")];
    if root {
        refused.extend([("2:3:1", "EPERM"), ("17:3", "EAFNOSUPPORT")]);
    }
    let listed = ["2:1", "10:1", "1:1", "1:2"];
    let mut args = vec![probe(), "socket"];
    args.extend(refused.iter().map(|(s, _)| *s));
    args.extend(listed);
    let native = unconfined(&args);
    for spec in &args[2..] {
        assert_socket(&native, spec, "ok");
    }
    let out = confined(TCP_PORTS, &args);
    for (spec, err) in refused {
        assert_socket(&out, spec, err);
    }
    for spec in listed {
        assert_socket(&out, spec, "ok");
    }
}

/// L3: a UDP socket `tcp-ports` did not let the sandbox make, but that it got from outside
/// unbound and unconnected, still reaches nothing: `sendto` and `sendmsg` with a destination,
/// `connect` and `bind` are each refused with `EPERM` (checking only bind and connect would
/// miss the datagrams). Unconfined every datagram reaches the canary.
#[test]
fn s_l3_tcp_ports_every_datagram_destination_refused() {
    let Some(py) = need_python("s_l3_tcp_ports_every_datagram_destination_refused") else {
        return;
    };
    let datagram = ["sendto", "sendmsg_to", "udp_connect", "bind"];
    let (out, _, _, udp) = sockets_from_outside(&py, None);
    assert_results(&out, &datagram, "ok", "unconfined");
    assert!(udp.wait_count(2, WAIT) >= 2);
    let (out, _, _, udp) = sockets_from_outside(&py, Some(TCP_PORTS));
    assert_results(&out, &datagram, "EPERM", "tcp-ports");
    assert_eq!(udp.settled_count(), 0, "a datagram reached the canary");
}

/// L4: under `tcp-ports` no socket of a non-IP family is made, whatever the kernel knows of
/// it: netlink (which unconfined always works), vsock, Bluetooth, CAN, AppleTalk, IPX, DECnet
/// and an unknown family number all fail with `EAFNOSUPPORT`.
#[test]
fn s_l4_tcp_ports_other_families_refused() {
    let families = [
        "16:3:0", "40:1", "31:1", "29:3", "5:2", "4:2", "12:5", "45:1",
    ];
    let mut args = vec![probe(), "socket"];
    args.extend(families);
    let native = unconfined(&args);
    assert_socket(&native, "16:3:0", "ok");
    let out = confined(TCP_PORTS, &args);
    for spec in families {
        assert_socket(&out, spec, "EAFNOSUPPORT");
    }
}

// ---- loopback-only: N1-N2 -----------------------------------------------------------------

/// N1: under `loopback-only`, even as root, no interface is configured or created: the
/// `SIOCSIF*`-class ioctls, a bridge and a tun device fail with `EPERM`, and `ip link add` over
/// netlink fails; unconfined every one works. All of it in a network namespace made for the
/// test.
#[test]
fn s_n1_loopback_only_no_interface_changes() {
    use crate::hardening::{in_new_netns, IF_SETTERS};
    let name = "s_n1_loopback_only_no_interface_changes";
    if !need_root(name) {
        return;
    }
    if which("unshare").is_none() || which("ip").is_none() {
        netjail_integration_tests::skip(name, "unshare or ip not found");
        return;
    }
    let out = in_new_netns(&[probe(), "if-ioctls"]);
    for case in IF_SETTERS {
        assert_eq!(out.json()["results"][case], "ok", "{}", out.describe());
    }
    let add = [
        "ip", "link", "add", "nj0", "type", "veth", "peer", "name", "nj1",
    ];
    let out = in_new_netns(&add);
    assert_eq!(out.code(), Some(0), "{}", out.describe());

    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let out = in_new_netns(&netjail_run(
        netjail,
        LOOPBACK_ONLY,
        &[probe(), "if-ioctls"],
    ));
    for case in IF_SETTERS {
        assert_eq!(out.json()["results"][case], "EPERM", "{}", out.describe());
    }
    assert_eq!(
        out.json()["results"]["SIOCGIFFLAGS"],
        "ok",
        "{}",
        out.describe()
    );
    let out = in_new_netns(&netjail_run(netjail, LOOPBACK_ONLY, &add));
    assert_ne!(out.code(), Some(0), "{}", out.describe());
}

/// N2: `loopback-only` allows loopback in every spelling: 127.0.0.1, the IPv4-mapped
/// `::ffff:127.0.0.1`, `0.0.0.0` (which the kernel sends to loopback), `::1` and `::`, for TCP
/// and UDP; each reaches its canary as it does unconfined. A destination outside is refused
/// (confined only: unconfined it would leave the host).
#[test]
fn s_n2_loopback_only_mapped_v4_allowed() {
    let (t4, t6, u4) = (Canary::tcp4(), Canary::tcp6(), Canary::udp4());
    let cases: Vec<(&str, &str, &Canary)> = vec![
        ("tcp", "127.0.0.1", &t4),
        ("tcp", "::ffff:127.0.0.1", &t4),
        ("tcp", "0.0.0.0", &t4),
        ("tcp", "::1", &t6),
        ("tcp", "::", &t6),
        ("udp", "::ffff:127.0.0.1", &u4),
        ("udp", "0.0.0.0", &u4),
    ];
    let mut reached = std::collections::HashMap::new();
    for confine in [false, true] {
        for (proto, addr, canary) in &cases {
            let port = canary.port_str();
            let args = [probe(), "connect", proto, addr, &port, "--send"];
            let out = if confine {
                confined(LOOPBACK_ONLY, &args)
            } else {
                unconfined(&args)
            };
            assert_ok(&out);
            let n = reached.entry(port).or_insert(0u64);
            *n += 1;
            assert_eq!(
                canary.wait_count(*n, WAIT),
                *n,
                "{proto} {addr} confined={confine}"
            );
        }
    }
    let out = confined(
        LOOPBACK_ONLY,
        &[probe(), "connect", "tcp", "192.0.2.1", "80", "--nonblock"],
    );
    assert_eperm(&out);
    let out = confined(
        LOOPBACK_ONLY,
        &[
            probe(),
            "connect",
            "tcp",
            "::ffff:192.0.2.1",
            "80",
            "--nonblock",
        ],
    );
    assert_eperm(&out);
    // A server on the wildcard address would be reachable from outside: refused.
    let out = confined(LOOPBACK_ONLY, &[probe(), "bind", "tcp", "0.0.0.0", "0"]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
}

// ---- the command line ---------------------------------------------------------------------

/// `netjail policy list` names every profile, and `netjail policy show NAME` prints each one
/// in full, in a form `netjail policy check` accepts and that parses to the built-in itself.
#[test]
fn profiles_are_listed_and_shown() {
    let netjail = |args: &[&str]| {
        netjail_integration_tests::run(
            std::process::Command::new(netjail_bin()).args(args),
            netjail_integration_tests::DEFAULT_TIMEOUT,
        )
    };
    let out = netjail(&["policy", "list"]);
    out.assert_success();
    let listed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        listed,
        netjail_policy::builtin_names(),
        "{}",
        out.describe()
    );
    for name in [DISABLENETWORK, JAIL, TCP_PORTS, LOOPBACK_ONLY] {
        let out = netjail(&["policy", "show", name]);
        out.assert_success();
        assert!(
            out.stdout.starts_with(&format!("name = \"{name}\"\n")),
            "{}",
            out.describe()
        );
        let shown = policy_file(&out.stdout);
        netjail(&["policy", "check", shown.as_str()]).assert_success();
        let builtin = netjail_policy::Policy::from_toml(profile_text(name), name).expect("parse");
        let again = netjail_policy::Policy::from_toml(&out.stdout, "shown").expect("parse");
        assert_eq!(again, builtin, "{name}");
    }
}
