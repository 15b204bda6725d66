//! Red team B (address decoding, options, root sandboxes, bounds): attacks that got out
//! against main at a813f04. Each test asserts the attack is REFUSED, so each fails until the
//! hole is closed. Every attack is first shown working unconfined (or, where the point is a
//! refusal the filter makes, the refusal is shown for the direct form).
//!
//! Nothing here reaches past loopback or a network namespace the test makes.

use std::process::Command;

use netjail_integration_tests::{netjail_bin, policy_file, run, unconfined, DEFAULT_TIMEOUT};

use crate::{have_setpriv, need_python, need_root};

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
/// Root cause: `broker/src/address.rs:470` (`tcp_connect`) passes a link-local destination
/// with a scope id, where `udp6_connect` (address.rs:520) and `ip_bind` refuse it; the
/// disconnect (`Reading::Disconnect`) does not clear `sk_bound_dev_if`.
#[test]
fn rt_b_tcp_link_local_scope_selects_the_interface_of_later_connects() {
    let test = "rt_b_tcp_link_local_scope_selects_the_interface_of_later_connects";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    if netjail_integration_tests::which("ip").is_none() {
        netjail_integration_tests::skip(test, "ip (iproute2) not found");
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

/// Attack: `max_connections = 2`, `namespaces = ["net", "user"]`, a sandbox of `nobody`. It
/// makes 8 TCP sockets, connects 2 to an allowed loopback listener, then
/// `unshare(CLONE_NEWUSER | CLONE_NEWNET)` (granted) and connects the 6 others, which belong
/// to the first network namespace and reach the same listener. All 8 connect and stay open;
/// without the `unshare` the 3rd to 8th get `ENOBUFS`.
///
/// Expected: the limit counts the sockets the broker connected for the sandbox, wherever its
/// caller's network namespace is: the 3rd to 8th get `ENOBUFS`.
///
/// Root cause: `broker/src/limits.rs:310` (`prune`, called from `Live::reserve`) reads
/// `/proc/TID/net/*` of the *calling thread*, whose namespace the sandbox changed; the
/// sockets counted are listed in their own namespace, so every record is pruned as closed.
#[test]
fn rt_b_max_connections_forgotten_in_a_new_network_namespace() {
    let test = "rt_b_max_connections_forgotten_in_a_new_network_namespace";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let py = "/usr/bin/python3";
    if !std::path::Path::new(py).exists() {
        netjail_integration_tests::skip(test, "/usr/bin/python3 not found");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in listener.incoming().flatten() {
            keep.lock().unwrap().push(c);
        }
    });
    let policy = policy_file(&format!(
        "name = \"mc\"\ndefault = \"deny\"\nnamespaces = [\"net\", \"user\"]\n\
         [[allow]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n[limits]\nmax_connections = 2\n"
    ));
    let probe = format!(
        "import ctypes, json, socket, sys\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         socks = [socket.socket() for _ in range(8)]\n\
         ok = 0\n\
         for i, s in enumerate(socks):\n    \
             if i == 2 and sys.argv[1] == 'unshare':\n        \
                 assert libc.unshare(0x10000000 | 0x40000000) == 0\n    \
             try:\n        s.connect(('127.0.0.1', {port})); ok += 1\n    \
             except OSError:\n        pass\n\
         print(json.dumps({{'connected': ok}}))\n"
    );
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let confined = |how: &str| {
        let mut cmd = Command::new(nobody[0]);
        cmd.args(&nobody[1..])
            .arg(netjail_bin())
            .env_remove("NETJAIL_BROKER")
            .args(["run", "--policy", policy.as_str(), "--"])
            .args([py, "-c", &probe, how]);
        run(&mut cmd, DEFAULT_TIMEOUT)
    };
    let plain = confined("plain");
    assert_eq!(
        plain.json()["connected"],
        2,
        "the limit: {}",
        plain.describe()
    );
    let out = confined("unshare");
    assert_eq!(
        out.json()["connected"],
        2,
        "past max_connections = 2 after unshare(CLONE_NEWNET): {}",
        out.describe()
    );
}
