//! Profiles that mean what they say (issue 17, item 3; `docs/compat.md` C2, C3, P3).
//!
//! - `allow-all` lets a program make every socket the kernel gives it, every call still
//!   decided and audited (C2: UDP-Lite).
//! - The built-in profiles read interface information (netlink route dumps: `ip addr`,
//!   `socket.if_nameindex()`) unless their seed rules forbid it (C3): `allow-all`, `deny-all`
//!   and `loopback-only` do; `disablenetwork` (D1), `jail` (J2, J6) and `tcp-ports` (L2) do
//!   not. Reading stays reading: no route message changes an interface, an address or a
//!   route, even from a sandbox that keeps `CAP_NET_ADMIN` (rule N1).
//! - A `socket()` the policy refuses is in the audit of `netjail run`.
//!
//! Each restriction runs unconfined first and must work there. Whatever changes the network
//! runs in a network namespace the test made (`unshare -n`), never the host's.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    confined, netjail_bin, policy_file, run, unconfined, which, Broker, Outcome, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{need_python, need_root, probe};

const WAIT: Duration = Duration::from_secs(5);

/// The target of audit events.
const AUDIT_TARGET: &str = "netjail::audit";

/// `netjail --log-format json run --allow-root --policy POLICY -- ARGS...`: the command's
/// outcome and the audit events the embedded broker wrote on stderr, each with its fields at
/// top level.
fn audited(policy: &str, args: &[&str]) -> (Outcome, Vec<Value>) {
    let mut cmd = Command::new(netjail_bin());
    cmd.env_remove("NETJAIL_BROKER")
        .args([
            "--log-format",
            "json",
            "run",
            "--allow-root",
            // The audit read here is the embedded broker's, on stderr: not a broker that
            // another test started at the default socket.
            "--embedded",
            "--policy",
            policy,
            "--",
        ])
        .args(args);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    let events = audit_events(&out.stderr);
    (out, events)
}

/// The audit events among JSON log lines.
fn audit_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|mut v| {
            let obj = v.as_object_mut()?;
            if let Some(Value::Object(fields)) = obj.remove("fields") {
                for (k, val) in fields {
                    obj.entry(k).or_insert(val);
                }
            }
            (obj.get("target").and_then(Value::as_str) == Some(AUDIT_TARGET)).then_some(v)
        })
        .collect()
}

/// The decision events of `op` among `events`.
fn decisions<'a>(events: &'a [Value], op: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["op"] == op && !e["decision"].is_null())
        .collect()
}

/// Asserts that `events` hold a refused `op` of `endpoint` with `errno`, decided by the
/// `sockets` rule.
#[track_caller]
fn assert_refusal_audited(events: &[Value], op: &str, endpoint: &str, errno: i32, what: &str) {
    let found = decisions(events, op).into_iter().any(|e| {
        e["endpoint"] == endpoint
            && e["decision"] == "deny"
            && e["rule"] == "sockets"
            && e["errno"] == errno
    });
    assert!(
        found,
        "{what}: no audit event `{op} {endpoint}` denied by `sockets` with errno {errno}: {events:#?}"
    );
}

// ---- C2: UDP-Lite under allow-all ------------------------------------------------------------

/// Makes a UDP-Lite socket of each family, sends a datagram to a UDP-Lite receiver on
/// loopback and reads it back. One JSON object: `ok`, or `err` with the errno's name.
const PY_UDPLITE: &str = r#"
import errno, json, socket
out = {}
try:
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        r = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
        r.bind((host, 0))
        r.settimeout(5)
        s = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
        s.sendto(b"lite", r.getsockname()[:2])
        assert r.recv(16) == b"lite"
        out["port%d" % family] = r.getsockname()[1]
    out["ok"] = True
except OSError as e:
    out = {"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(out), flush=True)
"#;

/// C2: under `allow-all` a program makes UDP-Lite sockets (IPv4 and IPv6) and sends on them,
/// as it does unconfined; each datagram is decided and audited (`sendto`, allowed, to the
/// receiver's port), and no `socket()` is refused.
#[test]
fn c2_udplite_socket_and_send_under_allow_all_audited() {
    let Some(py) = need_python("c2_udplite_socket_and_send_under_allow_all_audited") else {
        return;
    };
    let args = [py.as_str(), "-c", PY_UDPLITE];
    let out = unconfined(&args);
    assert_eq!(out.json()["ok"], true, "unconfined: {}", out.describe());

    let (out, events) = audited("allow-all", &args);
    assert_eq!(out.json()["ok"], true, "allow-all: {}", out.describe());
    let sends = decisions(&events, "sendto");
    for family in [libc::AF_INET, libc::AF_INET6] {
        let port = out.json()[format!("port{family}")].as_u64().expect("port");
        let sent = sends.iter().any(|e| {
            e["decision"] == "allow"
                && e["endpoint"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!(":{port}")))
        });
        assert!(sent, "no audited send to port {port}: {events:#?}");
    }
    assert!(
        decisions(&events, "socket").is_empty(),
        "a socket was refused: {events:#?}"
    );
}

// ---- C3: reading interfaces ------------------------------------------------------------------

/// `socket.if_nameindex()` (glibc's, over a netlink route socket): the names, or the errno.
const PY_IF_NAMEINDEX: &str = r#"
import errno, json, socket
try:
    print(json.dumps({"ok": True, "names": [n for _, n in socket.if_nameindex()]}))
except OSError as e:
    print(json.dumps({"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}))
"#;

/// `ip -o addr show lo`, which dumps the addresses over a netlink route socket.
const IP_ADDR: &[&str] = &["ip", "-o", "addr", "show", "lo"];

/// C3, with the profiles' own rules: `ip addr` (iproute2) and `socket.if_nameindex()` read the
/// interfaces under `allow-all`, `deny-all` and `loopback-only`, as unconfined; under
/// `disablenetwork` (D1: no socket but unix, `EPERM`), `jail` (J2, J6: one address, no
/// interface queries, `EAFNOSUPPORT`) and `tcp-ports` (L2: TCP and unix only, `EAFNOSUPPORT`)
/// the netlink route socket is refused, and the refusal is in the audit of `netjail run`.
#[test]
fn c3_profiles_read_interfaces_unless_their_seed_rules_forbid() {
    let name = "c3_profiles_read_interfaces_unless_their_seed_rules_forbid";
    let Some(py) = need_python(name) else {
        return;
    };
    if which("ip").is_none() {
        netjail_integration_tests::skip(name, "ip (iproute2) not found");
        return;
    }
    let py_args = [py.as_str(), "-c", PY_IF_NAMEINDEX];
    let out = unconfined(&py_args);
    assert_eq!(out.json()["ok"], true, "unconfined: {}", out.describe());
    let out = unconfined(IP_ADDR);
    assert!(out.stdout.contains("127.0.0.1"), "{}", out.describe());

    for profile in ["allow-all", "deny-all", "loopback-only"] {
        let (out, events) = audited(profile, &py_args);
        let names = &out.json()["names"];
        assert!(
            names
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "lo")),
            "{profile}: if_nameindex: {}",
            out.describe()
        );
        let made = decisions(&events, "socket").into_iter().any(|e| {
            e["endpoint"] == "netlink:raw:route" && e["decision"] == "allow" && e["errno"] == 0
        });
        assert!(
            made,
            "{profile}: the broker made no route socket: {events:#?}"
        );
        let out = confined(profile, IP_ADDR);
        assert_eq!(
            out.code(),
            Some(0),
            "{profile}: ip addr: {}",
            out.describe()
        );
        assert!(
            out.stdout.contains("inet 127.0.0.1/8"),
            "{profile}: {}",
            out.describe()
        );
    }
    for (profile, err, errno) in [
        ("disablenetwork", "EPERM", libc::EPERM),
        ("jail", "EAFNOSUPPORT", libc::EAFNOSUPPORT),
        ("tcp-ports", "EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ] {
        let (out, events) = audited(profile, &py_args);
        assert_eq!(out.json()["err"], err, "{profile}: {}", out.describe());
        assert_refusal_audited(&events, "socket", "netlink:raw:route", errno, profile);
        let (out, events) = audited(profile, IP_ADDR);
        assert_ne!(
            out.code(),
            Some(0),
            "{profile}: ip addr: {}",
            out.describe()
        );
        assert!(
            !out.stdout.contains("127.0.0.1"),
            "{profile}: {}",
            out.describe()
        );
        assert_refusal_audited(&events, "socket", "netlink:raw:route", errno, profile);
    }
}

/// Makes `socket(AF_NETLINK, SOCK_RAW | flags, NETLINK_ROUTE)` with the C library and reports
/// what the caller got: the descriptor and whether it is the lowest free one, its close-on-exec
/// and non-blocking flags, its type and protocol, and the interface names it dumps.
const PY_ROUTE_SOCKET: &str = r#"
import ctypes, fcntl, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for flags, name in ((0, "plain"), (socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, "flags")):
    lowest = os.dup(0)
    os.close(lowest)
    fd = libc.socket(socket.AF_NETLINK, socket.SOCK_RAW | flags, 0)
    if fd < 0:
        out[name] = {"err": os.strerror(ctypes.get_errno())}
        continue
    s = socket.socket(fileno=fd)
    out[name] = {
        "lowest": fd == lowest,
        "cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
        "nonblock": bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK),
        "type": s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
        "protocol": s.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
    }
    s.close()
try:
    out["names"] = [n for _, n in socket.if_nameindex()]
except OSError as e:
    out["names"] = os.strerror(e.errno)
print(json.dumps(out), flush=True)
"#;

/// C3: the netlink route socket the broker makes for a sandbox is what the caller's own
/// `socket()` would have made: at the lowest free descriptor, with the flags the caller asked
/// for (close-on-exec, non-blocking) and no others, of the type and protocol asked; and in
/// the caller's network namespace, not the broker's: a sandbox in a namespace the test made,
/// served by a `netjaild` in the host's, sees only that namespace's `lo`.
#[test]
fn c3_route_socket_is_the_callers_own() {
    let name = "c3_route_socket_is_the_callers_own";
    let Some(py) = need_python(name) else {
        return;
    };
    if !need_root(name) {
        return;
    }
    let Some(unshare) = which("unshare") else {
        netjail_integration_tests::skip(name, "unshare (util-linux) not found");
        return;
    };
    let unshare = unshare.to_str().expect("utf-8 path").to_owned();
    let args = [py.as_str(), "-c", PY_ROUTE_SOCKET];
    let check = |out: &Outcome, what: &str| {
        let v = out.json();
        for (case, cloexec, nonblock) in [("plain", false, false), ("flags", true, true)] {
            let c = &v[case];
            assert_eq!(c["lowest"], true, "{what} {case}: {}", out.describe());
            assert_eq!(c["cloexec"], cloexec, "{what} {case}: {}", out.describe());
            assert_eq!(c["nonblock"], nonblock, "{what} {case}: {}", out.describe());
            assert_eq!(
                c["type"],
                libc::SOCK_RAW,
                "{what} {case}: {}",
                out.describe()
            );
            assert_eq!(c["protocol"], 0, "{what} {case}: {}", out.describe());
        }
    };
    let mut native = vec![unshare.as_str(), "-n", "--"];
    native.extend(args);
    let out = unconfined(&native);
    check(&out, "unconfined");
    assert_eq!(
        out.json()["names"],
        serde_json::json!(["lo"]),
        "{}",
        out.describe()
    );

    let broker = Broker::start();
    let netjail = netjail_bin();
    let mut jailed = vec![
        unshare.as_str(),
        "-n",
        "--",
        netjail.to_str().expect("utf-8"),
    ];
    let socket = broker.socket().to_str().expect("utf-8 path").to_owned();
    jailed.extend(["run", "--allow-root", "--broker", &socket, "--no-embedded"]);
    jailed.extend(["--policy", "loopback-only", "--"]);
    jailed.extend(args);
    let out = unconfined(&jailed);
    check(&out, "confined");
    assert_eq!(
        out.json()["names"],
        serde_json::json!(["lo"]),
        "the route socket was made in the broker's namespace: {}",
        out.describe()
    );
    let made = broker.wait_audit(3, WAIT, |e| {
        e["op"] == "socket" && e["endpoint"] == "netlink:raw:route" && e["decision"] == "allow"
    });
    assert_eq!(made.len(), 3, "{}", broker.log());
}

// ---- N1: reading stays reading -------------------------------------------------------------

/// Asks the kernel, over netlink route sockets, for a new address on `lo` (`RTM_NEWADDR`), a
/// new route (`RTM_NEWROUTE`) and a new MTU for `lo` (`RTM_NEWLINK`), each sent four ways: by
/// `send` and `write` (which stay in the kernel), by `sendto` and `sendmsg` with the kernel as
/// destination (which the broker performs); then sends a request to another netlink socket
/// (port 4242) instead of the kernel. One JSON object: each case's outcome, `ok` or the errno
/// name (from the send, or from the kernel's acknowledgement).
const PY_ROUTE_CHANGES: &str = r#"
import errno, json, os, socket, struct
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
seq = [0]
def msg(kind, flags, body):
    seq[0] += 1
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq[0], 0) + body, seq[0]
def attr(kind, data):
    return struct.pack("=HH", 4 + len(data), kind) + data + b"\0" * (-len(data) % 4)
create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
def newaddr(n):
    ip = socket.inet_aton("10.9.9.%d" % n)
    body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 1) + attr(2, ip) + attr(1, ip)
    return msg(RTM_NEWADDR, create, body)
def newroute(n):
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 3, 253, 1, 0)
    body += attr(1, socket.inet_aton("10.9.8.%d" % n)) + attr(4, struct.pack("=I", 1))
    return msg(RTM_NEWROUTE, create, body)
def newlink(n):
    body = struct.pack("=BBHiII", 0, 0, 0, 1, 0, 0) + attr(4, struct.pack("=I", 1400 + n))
    return msg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, body)
def ack(s, want):
    while True:
        data, off = s.recv(65536), 0
        while off + 16 <= len(data):
            length, kind, _, sq, _ = struct.unpack_from("=IHHII", data, off)
            if kind == 2 and sq == want:
                err = struct.unpack_from("=i", data, off + 16)[0]
                return "ok" if err == 0 else errno.errorcode.get(-err, str(-err))
            off += (length + 3) & ~3
ways = [
    ("send", lambda s, m: s.send(m)),
    ("write", lambda s, m: os.write(s.fileno(), m)),
    ("sendto", lambda s, m: s.sendto(m, (0, 0))),
    ("sendmsg", lambda s, m: s.sendmsg([m], [], 0, (0, 0))),
]
out = {}
for i, (way, send) in enumerate(ways, start=1):
    for what, make in (("addr", newaddr), ("route", newroute), ("link", newlink)):
        m, sq = make(i)
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            s.settimeout(5)
            send(s, m)
            out[what + "_" + way] = ack(s, sq)
            s.close()
        except OSError as e:
            out[what + "_" + way] = errno.errorcode.get(e.errno, str(e.errno))
m, _ = msg(RTM_GETLINK, NLM_F_REQUEST, struct.pack("=BBHiII", 0, 0, 0, 0, 0, 0))
try:
    peer = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    peer.bind((4242, 0))
    peer.settimeout(1)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.sendto(m, (4242, 0))
    peer.recv(100)
    out["to_port"] = "ok"
except socket.timeout:
    out["to_port"] = "timeout"
except OSError as e:
    out["to_port"] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out), flush=True)
"#;

/// The cases [`PY_ROUTE_CHANGES`] reports.
fn route_change_cases() -> Vec<String> {
    let mut cases = Vec::new();
    for way in ["send", "write", "sendto", "sendmsg"] {
        for what in ["addr", "route", "link"] {
            cases.push(format!("{what}_{way}"));
        }
    }
    cases.push("to_port".to_owned());
    cases
}

/// `unshare -n sh -c 'ip link set lo up; ARGS...; ip -o addr; ip route; ip -o link show lo'`:
/// ARGS in a network namespace the test made, whose state is printed after them.
fn in_test_netns(unshare: &str, args: &[&str]) -> Outcome {
    let script = "ip link set lo up || exit 99; \"$@\"; r=$?; \
                  ip -o addr show lo; ip route; ip -o link show lo; exit $r";
    let mut full = vec![unshare, "-n", "--", "sh", "-c", script, "sh"];
    full.extend(args);
    unconfined(&full)
}

/// The first line of `out`'s stdout: the probe's JSON.
fn first_json(out: &Outcome) -> Value {
    let line = out.stdout.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| panic!("no JSON line: {}", out.describe()))
}

/// N1: a sandbox reads the routing tables but changes nothing, even as root with
/// `CAP_NET_ADMIN` kept by its policy: a new address, a new route and a new MTU, each sent by
/// `send`, `write` (in the kernel: the socket was made without any capability, so the kernel
/// refuses them), `sendto` and `sendmsg` (the broker refuses them, `netlink-route:change`),
/// and a request to another netlink socket (`netlink-route:destination`), all fail with
/// `EPERM`, and the namespace is as it was. Under `loopback-only`, `allow-all`, and a policy
/// that lists netlink sockets itself (`netlink:raw`, where the sandbox made them before); in
/// a network namespace the test made, where the same program changes all of it unconfined.
#[test]
fn s_n1_route_changes_refused_even_with_cap_net_admin() {
    let name = "s_n1_route_changes_refused_even_with_cap_net_admin";
    let Some(py) = need_python(name) else {
        return;
    };
    if !need_root(name) {
        return;
    }
    let (Some(unshare), Some(_)) = (which("unshare"), which("ip")) else {
        netjail_integration_tests::skip(name, "unshare or ip not found");
        return;
    };
    let unshare = unshare.to_str().expect("utf-8 path").to_owned();
    let args = [py.as_str(), "-c", PY_ROUTE_CHANGES];
    let out = in_test_netns(&unshare, &args);
    let v = first_json(&out);
    for case in route_change_cases() {
        assert_eq!(v[&case], "ok", "unconfined {case}: {}", out.describe());
    }
    assert!(out.stdout.contains("10.9.9.4"), "{}", out.describe());
    assert!(out.stdout.contains("10.9.8.4"), "{}", out.describe());
    assert!(out.stdout.contains("mtu 1404"), "{}", out.describe());

    let keep = "keep_capabilities = [\"CAP_NET_ADMIN\"]\n";
    let policies = [
        policy_file(&format!(
            "name = \"n1-lo\"\nextends = \"loopback-only\"\n{keep}"
        )),
        policy_file(&format!(
            "name = \"n1-all\"\nextends = \"allow-all\"\n{keep}"
        )),
        policy_file(&format!(
            "name = \"n1-listed\"\ndefault = \"allow\"\n{keep}[sockets]\n\
             allow = [\"netlink:raw\", \"unix:*\", \"inet:stream\", \"inet:dgram\"]\n"
        )),
    ];
    let netjail = netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    // Every policy is tried before the verdict, so that a failure shows all of them.
    let mut wrong = Vec::new();
    for policy in &policies {
        let mut jailed = vec![
            netjail,
            "--log-format",
            "json",
            "run",
            "--allow-root",
            "--policy",
            policy.as_str(),
            "--",
        ];
        jailed.extend(args);
        let out = in_test_netns(&unshare, &jailed);
        let what = policy.as_str();
        let v = first_json(&out);
        for case in route_change_cases() {
            if v[&case] != "EPERM" {
                wrong.push(format!("{what} {case}: {}", v[&case]));
            }
        }
        for changed in ["10.9.9.", "10.9.8.", "mtu 140"] {
            if out.stdout.contains(changed) {
                wrong.push(format!("{what}: the namespace changed ({changed})"));
            }
        }
        let events = audit_events(&out.stderr);
        for (op, rule, n) in [
            ("sendto", "netlink-route:change", 3),
            ("sendmsg", "netlink-route:change", 3),
            ("sendto", "netlink-route:destination", 1),
        ] {
            let found = decisions(&events, op)
                .into_iter()
                .filter(|e| e["rule"] == rule && e["decision"] == "deny" && e["errno"] == 1)
                .count();
            if found != n {
                wrong.push(format!("{what}: {found} audit events {op} {rule}, not {n}"));
            }
        }
        if !wrong.is_empty() {
            eprintln!("{what}: {}", out.describe());
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---- the audit of a refused socket() ---------------------------------------------------------

/// Tries `socket()` and `socketpair()` of the kinds named on the command line, as
/// `FAMILY:TYPE:PROTOCOL` (numbers), and prints each outcome, `ok` or the errno's name.
const PY_SOCKETS: &str = r#"
import errno, json, socket, sys
out = {}
for spec in sys.argv[1:]:
    call, rest = spec.split("=")
    family, kind, proto = (int(x) for x in rest.split(":"))
    try:
        if call == "socket":
            socket.socket(family, kind, proto).close()
        else:
            for s in socket.socketpair(family, kind, proto):
                s.close()
        out[spec] = "ok"
    except OSError as e:
        out[spec] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out), flush=True)
"#;

/// A `socket()` or `socketpair()` the policy refuses shows in the audit of `netjail run` (and
/// of `netjaild`): op `socket` or `socketpair`, the endpoint in the words of `[sockets]`
/// entries, decision `deny`, rule `sockets`, and the errno the caller got, which is the
/// policy's: under `loopback-only` a UDP-Lite socket, a protocol its list does not name of a
/// family it does, `EPERM` (docs/policy.md); a packet socket, a family it does not name,
/// `EAFNOSUPPORT` (`[sockets] refuse`); under `disablenetwork` an IPv4 `socketpair()`,
/// `EPERM`. A socket the list allows leaves no event. Unconfined, every call but the
/// `socketpair()` (which the kernel makes for unix sockets only) works.
#[test]
fn refused_socket_shows_in_the_audit_of_netjail_run() {
    let name = "refused_socket_shows_in_the_audit_of_netjail_run";
    let Some(py) = need_python(name) else {
        return;
    };
    if !need_root(name) {
        return;
    }
    let udplite = "socket=10:2:136";
    let packet = "socket=17:3:768";
    let tcp = "socket=2:1:0";
    let pair = "socketpair=2:1:0";
    let args = [py.as_str(), "-c", PY_SOCKETS, udplite, packet, tcp, pair];
    let out = unconfined(&args);
    for spec in [udplite, packet, tcp] {
        assert_eq!(
            out.json()[spec],
            "ok",
            "unconfined {spec}: {}",
            out.describe()
        );
    }
    assert_eq!(out.json()[pair], "ENOTSUP", "{}", out.describe());

    let (out, events) = audited("loopback-only", &args);
    assert_eq!(out.json()[udplite], "EPERM", "{}", out.describe());
    assert_eq!(out.json()[packet], "EAFNOSUPPORT", "{}", out.describe());
    assert_eq!(out.json()[tcp], "ok", "{}", out.describe());
    assert_refusal_audited(
        &events,
        "socket",
        "inet6:dgram:udplite",
        libc::EPERM,
        "udplite",
    );
    assert_refusal_audited(
        &events,
        "socket",
        "packet:raw:768",
        libc::EAFNOSUPPORT,
        "packet",
    );
    assert_eq!(
        decisions(&events, "socket").len(),
        2,
        "the allowed TCP socket left an event: {events:#?}"
    );

    let (out, events) = audited("disablenetwork", &args);
    assert_eq!(out.json()[pair], "EPERM", "{}", out.describe());
    assert_refusal_audited(
        &events,
        "socketpair",
        "inet:stream",
        libc::EPERM,
        "socketpair",
    );

    // The same events through netjaild.
    let broker = Broker::start();
    let out = netjail_integration_tests::confined_with_broker(&broker, "loopback-only", &args);
    assert_eq!(out.json()[udplite], "EPERM", "{}", out.describe());
    let seen = broker.wait_audit(2, WAIT, |e| e["op"] == "socket");
    assert_refusal_audited(
        &seen,
        "socket",
        "inet6:dgram:udplite",
        libc::EPERM,
        "netjaild",
    );
    assert_refusal_audited(
        &seen,
        "socket",
        "packet:raw:768",
        libc::EAFNOSUPPORT,
        "netjaild",
    );
}

/// Makes `socket(AF_PACKET, SOCK_RAW, ...)` N times (argv[1]) and counts the outcomes.
const PY_SOCKET_FLOOD: &str = r#"
import collections, errno, json, socket, sys
seen = collections.Counter()
for _ in range(int(sys.argv[1])):
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        seen["ok"] += 1
    except OSError as e:
        seen[errno.errorcode.get(e.errno, str(e.errno))] += 1
print(json.dumps(seen), flush=True)
"#;

/// A sandbox that floods the broker with refused `socket()` calls meets its
/// `max_calls_per_second` as any caller does, yet every call still gets the policy's errno
/// (`EAFNOSUPPORT`, never `EAGAIN`: the answer needs no work), and the audit holds at most a
/// line a second for the calls past the limit (rule `limits.max_calls_per_second`, with the
/// count), besides the refusals within it.
#[test]
fn refused_socket_flood_keeps_its_errno_past_the_rate_limit() {
    let name = "refused_socket_flood_keeps_its_errno_past_the_rate_limit";
    let Some(py) = need_python(name) else {
        return;
    };
    let policy = policy_file(
        "name = \"flood\"\nextends = \"loopback-only\"\n[limits]\nmax_calls_per_second = 20\n",
    );
    let calls = 600;
    let count = calls.to_string();
    let (out, events) = audited(
        policy.as_str(),
        &[py.as_str(), "-c", PY_SOCKET_FLOOD, &count],
    );
    assert_eq!(
        out.json()["EAFNOSUPPORT"],
        calls,
        "every call gets the policy's errno: {}",
        out.describe()
    );
    let refused = decisions(&events, "socket");
    let (limited, within): (Vec<&&Value>, Vec<&&Value>) = refused
        .iter()
        .partition(|e| e["rule"] == "limits.max_calls_per_second");
    assert!(
        !limited.is_empty(),
        "no rate-limited line for {calls} calls: {events:#?}"
    );
    for e in &limited {
        assert_eq!(e["errno"], libc::EAFNOSUPPORT, "{e}");
    }
    assert!(
        within.len() + limited.len() < calls / 4,
        "{} audit lines for {calls} refused calls",
        within.len() + limited.len()
    );
    for e in &within {
        assert_eq!(e["rule"], "sockets", "{e}");
        assert_eq!(e["endpoint"], "packet:raw", "{e}");
    }
}

/// C2, C3: under `allow-all` the probe makes UDP-Lite sockets of both families, netlink
/// route sockets of both types, and a netlink socket of another protocol (audit, which the
/// kernel makes and then holds to its own capability checks), as it does unconfined.
#[test]
fn c2_c3_allow_all_makes_every_socket_the_kernel_gives() {
    let specs = [
        "2:2:136", "10:2:136", "16:3:0", "16:2:0", "16:3:9", "1:1", "2:1:6",
    ];
    let mut args = vec![probe(), "socket"];
    args.extend(specs);
    let native = unconfined(&args);
    let out = confined("allow-all", &args);
    for spec in specs {
        assert_eq!(
            native.json()["results"][spec],
            "ok",
            "unconfined {spec}: {}",
            native.describe()
        );
        assert_eq!(
            out.json()["results"][spec],
            "ok",
            "allow-all {spec}: {}",
            out.describe()
        );
    }
}
