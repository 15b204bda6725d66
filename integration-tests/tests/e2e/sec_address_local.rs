//! Servers on abstract names the policy refuses (an autobind, then `listen`: red team A), and
//! link-local scopes: on a bind and a UDP connect (L1), and one that outlives its connection
//! (red team B). Each runs the attack unconfined first.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{netjail_bin, policy_file, skip, unconfined, which, TempDir};
use serde_json::Value;

use netjail_integration_tests::probe::PORT_P;

use crate::sec_address::{can_make_netns, hex, listen_run, sa6, LINK_LOCAL_SETUP};
use crate::{as_nobody, need_python, need_root, Via};

// ---- servers on abstract names the policy refuses (red team A) ----------------------------

/// Spawns `cmd` (a python program that prints one JSON line, with `listening` the hex of the
/// name it listens on, then serves one client) and, when it listens, connects to that name
/// from outside every sandbox. Returns the line and what the outside client read.
fn serve_once(py: &str, cmd: &mut Command) -> (Value, Option<String>) {
    let running = netjail_integration_tests::spawn(cmd);
    let line = running
        .read_line(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no line from the sandbox: {}", running.stderr_so_far()));
    let v: Value = serde_json::from_str(line.trim()).expect("JSON line");
    let got = v["listening"].as_str().map(|hex| {
        let out = unconfined(&[
            py,
            "-c",
            "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
             s.settimeout(5)\ns.connect(bytes.fromhex(sys.argv[1]))\nprint(s.recv(64).decode())",
            hex,
        ]);
        out.stdout.trim().to_owned()
    });
    let _ = running.wait(Duration::from_secs(10));
    (v, got)
}

/// Tries a named abstract bind (refused by the policy), then autobinds another stream socket
/// (`bind` with only the family), listens on it, prints its abstract name and serves one
/// client.
const PY_AUTOBIND_SERVER: &str = r#"
import errno, json, socket
r = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(b"\0rt-a-named"); r["named"] = "ok"
except OSError as e:
    r["named"] = errno.errorcode.get(e.errno, str(e.errno))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(b"")
    s.listen(4)
    r["listening"] = s.getsockname().hex()
except OSError as e:
    r["listen_err"] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(r), flush=True)
if "listening" in r:
    s.settimeout(8)
    try:
        c, _ = s.accept(); c.sendall(b"from-the-sandbox"); c.close()
    except OSError:
        pass
"#;

/// **Under a policy that refuses abstract unix names (`disablenetwork`, rule D2), a sandbox
/// served on the abstract namespace: `bind` with only the family (the autobind) was performed
/// without a decision, and so was `listen` on the autobound socket.** Any process of the
/// network namespace, outside every sandbox, then connected to it by the name
/// `/proc/net/unix` lists.
///
/// The attack: `bind("\0rt-a-named")` gets `EPERM`, but `bind(b"")` + `listen()` succeeded
/// (audit: `op="bind" endpoint="unix:(autobind)" rule="autobind"`, then `op="listen"
/// rule="bound"`), and a root client outside read what the sandbox sent.
///
/// Now the autobind is decided as the bind of the abstract name it gets, and a listen as the
/// bind of the abstract name the socket has, read from the socket: `EPERM` under a policy
/// whose `unix` rules name no abstract socket, as for the named bind.
fn autobind_listen(via: Via) {
    let test = "rt_a_autobind_listen_serves_a_refused_abstract_name";
    let Some(py) = crate::credentials::prerequisites(test) else {
        return;
    };
    let attack = as_nobody(&[py.as_str(), "-c", PY_AUTOBIND_SERVER]);

    // Unconfined: both binds work, and an outside client reaches the autobound listener.
    let mut cmd = Command::new(attack[0]);
    cmd.args(&attack[1..]);
    let (v, got) = serve_once(&py, &mut cmd);
    assert_eq!(v["named"], "ok", "{v}");
    assert_eq!(got.as_deref(), Some("from-the-sandbox"), "{v}");

    // Confined: the named abstract bind is refused...
    let (v, got) = serve_once(&py, &mut via.cmd("disablenetwork", &attack));
    assert_eq!(v["named"], "EPERM", "{v}");
    // ...and so must be serving on an abstract name at all.
    assert_eq!(
        v["listen_err"], "EPERM",
        "the sandbox listens on the abstract name {} (an outside client read {got:?})",
        v["listening"]
    );
    assert_eq!(got, None);
}

both!(
    /// See [`autobind_listen`].
    rt_a_autobind_listen_serves_a_refused_abstract_name => autobind_listen
);

/// Binds `argv[1]` (a path socket that never listens, so that connects to it are refused),
/// then, on another stream socket with `SO_PASSCRED`, connects to it: the kernel autobinds
/// the connecting socket before it looks the path up (`unix_stream_connect`), and the failed
/// connect leaves the name. Then listens on that name and serves one client.
const PY_PASSCRED_SERVER: &str = r#"
import errno, json, os, socket, sys
e = lambda x: errno.errorcode.get(x.errno, str(x.errno))
r = {}
dead = os.path.join(sys.argv[1], "dead.sock")
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(dead)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
try:
    s.connect(dead); r["connect"] = "ok"
except OSError as x:
    r["connect"] = e(x)
r["name"] = s.getsockname().hex()
try:
    s.listen(4)
    r["listening"] = s.getsockname().hex()
except OSError as x:
    r["listen_err"] = e(x)
print(json.dumps(r), flush=True)
if "listening" in r:
    s.settimeout(8)
    try:
        c, _ = s.accept(); c.sendall(b"from-the-sandbox"); c.close()
    except OSError:
        pass
"#;

/// The same server without an explicit autobind: a stream socket with `SO_PASSCRED` gets an
/// abstract name from the kernel inside a connect (the broker performs it, to an allowed
/// path, and it fails), keeps it, and listens on it. A decision at the autobind alone would
/// not see this name; the listen is decided on the name read from the socket.
fn passcred_autobind_listen(via: Via) {
    let test = "rt_a_passcred_autobind_then_listen_refused";
    let Some(py) = crate::credentials::prerequisites(test) else {
        return;
    };
    let dir = TempDir::new();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
    std::fs::set_permissions(dir.path(), mode).expect("chmod");
    let d = dir.path().to_str().expect("utf-8");
    let attack = as_nobody(&[py.as_str(), "-c", PY_PASSCRED_SERVER, d]);

    let mut cmd = Command::new(attack[0]);
    cmd.args(&attack[1..]);
    let (v, got) = serve_once(&py, &mut cmd);
    assert_eq!(v["connect"], "ECONNREFUSED", "{v}");
    assert!(
        v["name"].as_str().is_some_and(|n| n.starts_with("00")),
        "{v}"
    );
    assert_eq!(got.as_deref(), Some("from-the-sandbox"), "{v}");
    std::fs::remove_file(dir.path().join("dead.sock")).expect("rm");

    let (v, got) = serve_once(&py, &mut via.cmd("disablenetwork", &attack));
    // The connect to an allowed path is performed, and the kernel names the socket in it
    // (a client name, which docs/security.md lists among the limits)...
    assert_eq!(v["connect"], "ECONNREFUSED", "{v}");
    assert!(
        v["name"].as_str().is_some_and(|n| n.starts_with("00")),
        "{v}"
    );
    // ...but no server is made on it.
    assert_eq!(
        v["listen_err"], "EPERM",
        "the sandbox listens on the abstract name {} (an outside client read {got:?})",
        v["name"]
    );
    assert_eq!(got, None);
}

both!(
    /// See [`passcred_autobind_listen`].
    rt_a_passcred_autobind_then_listen_refused => passcred_autobind_listen
);

/// Autobinds a stream socket, binds it again with only the family (the kernel's autobind of
/// a socket that has a name is a no-op returning 0), prints its name and serves one client.
const PY_AUTOBIND_AGAIN: &str = r#"
import errno, json, socket
r = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(b"")
    first = s.getsockname()
    s.bind(b"")
    r["again"] = "same" if s.getsockname() == first else "changed"
    s.listen(4)
    r["listening"] = first.hex()
except OSError as x:
    r["listen_err"] = errno.errorcode.get(x.errno, str(x.errno))
print(json.dumps(r), flush=True)
if "listening" in r:
    s.settimeout(8)
    try:
        c, _ = s.accept(); c.sendall(b"from-the-sandbox"); c.close()
    except OSError:
        pass
"#;

/// Faithful where the policy allows abstract names: a policy naming every abstract socket
/// (`@*`, or `default = "allow"`) still autobinds and serves, the name has the kernel's form
/// (a NUL and five lowercase hex digits) and stays the same when bound again; a policy naming
/// only other abstract names refuses the autobind.
fn autobind_where_allowed(via: Via) {
    let test = "rt_a_autobind_allowed_by_a_policy_naming_every_abstract_socket";
    let Some(py) = need_python(test) else {
        return;
    };
    let any = policy_file("name = \"abstract\"\ndefault = \"deny\"\n[[allow]]\nunix = [\"@*\"]\n");
    let other =
        policy_file("name = \"abstract\"\ndefault = \"deny\"\n[[allow]]\nunix = [\"@app-*\"]\n");
    let kernel_form = |v: &Value| {
        v["listening"].as_str().is_some_and(|n| {
            n.len() == 12
                && n.starts_with("00")
                && hex_to_text(&n[2..]).is_some_and(|name| {
                    name.len() == 5
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
        })
    };
    let attack = [py.as_str(), "-c", PY_AUTOBIND_AGAIN];
    let (v, got) = serve_once(&py, Command::new(attack[0]).args(&attack[1..]));
    assert!(kernel_form(&v), "unconfined: {v}");
    assert_eq!(v["again"], "same", "{v}");
    assert_eq!(got.as_deref(), Some("from-the-sandbox"), "{v}");
    for policy in [any.as_str(), "allow-all"] {
        let (v, got) = serve_once(&py, &mut via.cmd(policy, &attack));
        assert!(kernel_form(&v), "{policy}: {v}");
        assert_eq!(v["again"], "same", "{policy}: {v}");
        assert_eq!(got.as_deref(), Some("from-the-sandbox"), "{policy}: {v}");
    }
    let (v, got) = serve_once(&py, &mut via.cmd(other.as_str(), &attack));
    assert_eq!(v["listen_err"], "EPERM", "{v}");
    assert_eq!(got, None);
}

both!(
    /// See [`autobind_where_allowed`].
    rt_a_autobind_allowed_by_a_policy_naming_every_abstract_socket => autobind_where_allowed
);

/// The text of hex-encoded bytes, if they are UTF-8.
fn hex_to_text(hex: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

// ---- link-local scopes (L1) ----------------------------------------------------------------

/// L1, the link-local part: a scope id on a link-local bind sets the socket's interface
/// (`sk_bound_dev_if`), as `SO_BINDTOIFINDEX` (refused, J4) does; so does one on a UDP
/// connect, for every later send of the socket, and one on a TCP connect or Fast Open send,
/// for every later connect (a disconnect keeps it:
/// `rt_b_tcp_link_local_scope_selects_the_interface_of_later_connects`). All are refused; a
/// datagram's own scope, which serves that datagram only, is decided as usual.
#[test]
fn l1_link_local_scope_on_bind_and_udp_connect_refused() {
    let test = "l1_link_local_scope_on_bind_and_udp_connect_refused";
    if !can_make_netns(test) {
        return;
    }
    let setup = LINK_LOCAL_SETUP;
    let p = PORT_P.to_string();
    let specs = [
        format!("tcp:[fe80::1%1]:{p}"),
        format!("udp:[fe80::1%1]:{p}"),
    ];
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let policy = policy_file(&format!(
        "name = \"l1\"\n[[allow]]\nconnect = [\"any://[fe80::/10]:{p}\"]\nbind = [\"any://[fe80::/10]:0\"]\n"
    ));
    let scoped = hex(&sa6(libc::AF_INET6, "fe80::1", PORT_P, 1));
    let scoped_bind = hex(&sa6(libc::AF_INET6, "fe80::1", 0, 1));
    for (kind, op, bytes, confined_res) in [
        ("udp6", "bind", &scoped_bind, "EPERM"),
        ("tcp6", "bind", &scoped_bind, "EPERM"),
        ("udp6", "connect", &scoped, "EPERM"),
        ("tcp6", "connect", &scoped, "EPERM"),
        ("tcp6", "fastopen", &scoped, "EPERM"),
        ("udp6", "sendto", &scoped, "ok"),
    ] {
        let args = ["addr", kind, "fresh", op, bytes, "Tl1;"];
        let native = listen_run(setup, &specs, None, &args);
        assert_eq!(
            native["cmd"]["res"], "ok",
            "{kind} {op} unconfined: {native}"
        );
        let confined = listen_run(setup, &specs, Some(policy.as_str()), &args);
        assert_eq!(
            confined["cmd"]["res"], confined_res,
            "{kind} {op}: {confined}"
        );
    }
}

// ---- a scope id that outlives its connection (red team B) ---------------------------------

/// Attack: a TCP connect to a link-local address with a scope id, which the broker decides on
/// the address and allows, ties the socket to that interface (`tcp_v6_connect` sets
/// `sk_bound_dev_if`). `connect(AF_UNSPEC)` (performed by the broker as a disconnect) leaves
/// the binding, and a second connect on the same socket to an allowed global address leaves
/// by that interface, not by the route's: interface selection, which the filter refuses as
/// `SO_BINDTOIFINDEX` (`EPERM` in the same run) and the broker refuses for a UDP connect or a
/// bind with a scope id ("ties the socket to an interface for everything it sends
/// afterwards", docs/security.md). In the run (a network namespace with two veth pairs, the
/// destination routed by `d1` and by `d0` at a worse metric) the SYN to the global address
/// leaves by `d0`, and `SO_BINDTOIFINDEX` reads `d0`.
///
/// Expected: after the reconnect the socket is bound to no interface the program chose: the
/// link-local connect with a scope id refused as for UDP (rule `address:interface-scope`),
/// or a connect on a socket whose interface a scope id set refused.
///
/// Closed in the address table (`tcp_connect`): a scope id on a link-local TCP destination,
/// or on the connect of a Fast Open send, is refused (`address:interface-scope`) as on a
/// UDP connect or a bind; `l1_link_local_scope_on_bind_and_udp_connect_refused` has the
/// short form, and the property test expects it.
#[test]
fn rt_b_tcp_link_local_scope_selects_the_interface_of_later_connects() {
    let test = "rt_b_tcp_link_local_scope_selects_the_interface_of_later_connects";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    if which("ip").is_none() {
        skip(test, "ip (iproute2) not found");
        return;
    }
    let policy = policy_file(
        "name = \"ll\"\ndefault = \"deny\"\n[[allow]]\n\
         connect = [\"tcp://[fe80::1]:20030\", \"tcp://[2001:db8:2::2]:20031\"]\n",
    );
    let client = r#"
import ctypes, errno, json, socket, struct, time
SO_BINDTOIFINDEX = 62
d0 = socket.if_nametoindex("d0")
out = {"d0": d0}
s = socket.socket(socket.AF_INET6)
try:
    s.setsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX, d0); out["setsockopt"] = "ok"
except OSError as e:
    out["setsockopt"] = errno.errorcode[e.errno]
s = socket.socket(socket.AF_INET6)
try:
    s.connect(("fe80::1", 20030, 0, d0)); out["link_local"] = "ok"
except OSError as e:
    out["link_local"] = errno.errorcode[e.errno]
libc = ctypes.CDLL(None, use_errno=True)
unspec = struct.pack("=H14x", 0)
libc.connect(s.fileno(), unspec, len(unspec))
s.setblocking(False)
out["global"] = errno.errorcode.get(s.connect_ex(("2001:db8:2::2", 20031)), "ok")
time.sleep(0.3)
out["bound_after"] = s.getsockopt(socket.SOL_SOCKET, SO_BINDTOIFINDEX)
print(json.dumps(out))
"#;
    let script = format!(
        "set -e; ip link set lo up\n\
         ip link add d0 type veth peer name d0p; ip link add d1 type veth peer name d1p\n\
         for i in d0 d0p d1 d1p; do ip link set $i up; done\n\
         ip -6 addr add fe80::1/64 dev d0 nodad; ip -6 addr add 2001:db8::1/64 dev d1 nodad\n\
         ip -6 route add 2001:db8:2::/64 dev d1 metric 10\n\
         ip -6 route add 2001:db8:2::/64 dev d0 metric 1000\n\
         {py} -c 'import socket,time; l=socket.socket(socket.AF_INET6); l.bind((\"::\",20030)); l.listen(8); time.sleep(20)' &\n\
         sleep 0.5\n\
         {py} -c '{client}'\n\
         {nj} run --allow-root --policy {pol} -- {py} -c '{client}'\n\
         kill $!\n",
        nj = netjail_bin().display(),
        pol = policy.as_str(),
    );
    let out = unconfined(&["unshare", "-n", "sh", "-c", &script]);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.describe());
    let (native, confined) = (&lines[0], &lines[1]);
    // Unconfined: the program may pick the interface outright, and the scope id picks it too.
    assert_eq!(native["setsockopt"], "ok", "{}", out.describe());
    assert_eq!(native["bound_after"], native["d0"], "{}", out.describe());
    // Confined: the outright pick is refused...
    assert_eq!(confined["setsockopt"], "EPERM", "{}", out.describe());
    // ... and so must be the pick through a scope id that outlives its connection.
    assert!(
        confined["link_local"] != "ok" || confined["bound_after"] != confined["d0"],
        "the socket connected to an allowed global address by an interface of the program's \
         choosing: {confined}"
    );
}
