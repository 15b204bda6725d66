//! Gap 2, the options part: socket options and send flags that route a packet, pick an
//! interface, change a socket's family or hand the kernel broker memory (F4, L1, F5, F14).
//! Each attack runs unconfined first (the option takes, the header is on the wire, the
//! zero-copy send goes out), then confined, where the filter or the broker refuses it.

use std::time::Duration;

use netjail_integration_tests::{policy_file, run, unconfined};
use serde_json::Value;

use crate::{need_python, need_root, Via};

/// Sets socket options, one per argument `LEVEL:NAME:KIND:VALUE` on a fresh socket of
/// `KIND` (`udp4`, `udp6`, `tcp4`, `tcp6`), and prints `{"LEVEL:NAME": "ok" | ERRNO}`. VALUE
/// is `int:N` or `hex:BYTES`. `get` as the fifth field makes it a `getsockopt` of that length.
const PY_SETSOCKOPT: &str = r#"
import errno, json, socket, sys
kinds = {"udp4": (socket.AF_INET, socket.SOCK_DGRAM), "udp6": (socket.AF_INET6, socket.SOCK_DGRAM),
         "tcp4": (socket.AF_INET, socket.SOCK_STREAM), "tcp6": (socket.AF_INET6, socket.SOCK_STREAM)}
out = {}
for spec in sys.argv[1:]:
    level, name, kind, value, *get = spec.split(":")
    s = socket.socket(*kinds[kind])
    try:
        if get:
            s.getsockopt(int(level), int(name), int(value.split("=")[1]))
        else:
            how, v = value.split("=")
            s.setsockopt(int(level), int(name), int(v) if how == "int" else bytes.fromhex(v))
        out[level + ":" + name] = "ok"
    except OSError as e:
        out[level + ":" + name] = errno.errorcode.get(e.errno, str(e.errno))
    s.close()
print(json.dumps(out))
"#;

/// `struct ip_mreqn` for `IP_MULTICAST_IF`: no group, no address, interface 1 (`lo`).
const MREQN_LO: &str = "hex=000000000000000001000000";
/// `struct in6_pktinfo`: `::1` on interface 1, the sticky source and interface.
const PKTINFO6_LO: &str = "hex=0000000000000000000000000000000101000000";
/// An IPv4 loose source route through 127.0.0.1 (`IPOPT_LSRR`, padded with `IPOPT_END`).
const LSRR: &str = "hex=8307047f00000100";
/// A segment routing header (type 4) with one segment, `::1`.
const SRH: &str = "hex=000204000000000000000000000000000000000000000001";

fn setsockopt(via: Option<&Via>, policy: &str, py: &str, specs: &[&str]) -> Value {
    let mut args = vec![py, "-c", PY_SETSOCKOPT];
    args.extend_from_slice(specs);
    let out = match via {
        None => unconfined(&args),
        Some(via) => via.run(policy, &args),
    };
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    out.json().clone()
}

/// F4, L1: every option that routes, picks the egress interface or changes the family is
/// refused by the filter unless the policy names it; unconfined each one takes (or, for
/// `IPV6_ADDRFORM` and the SCTP ones on a UDP socket, the kernel answers with something other
/// than the filter's `EPERM`).
fn options_refused_unless_named(via: Via) {
    let test = "f4_l1_routing_and_interface_options_refused";
    if !need_root(test) {
        return; // IP_OPTIONS source routes need CAP_NET_RAW unconfined
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let lsrr = format!("0:4:udp4:{LSRR}");
    let srh = format!("41:57:udp6:{SRH}");
    let mcast4 = format!("0:32:udp4:{MREQN_LO}");
    let pktinfo6 = format!("41:50:udp6:{PKTINFO6_LO}");
    // (spec, what the kernel answers unconfined)
    let cases: &[(&str, &str)] = &[
        (&lsrr, "ok"),
        (&srh, "ok"),
        ("0:50:udp4:int=16777216", "ok"), // IP_UNICAST_IF, index 1 in network order
        ("41:76:udp6:int=16777216", "ok"), // IPV6_UNICAST_IF, likewise
        (&mcast4, "ok"),                  // IP_MULTICAST_IF, ip_mreqn
        ("41:17:udp6:int=1", "ok"),       // IPV6_MULTICAST_IF
        (&pktinfo6, "ok"),                // sticky IPV6_PKTINFO
        ("1:60:tcp4:int=1", "ok"),        // SO_ZEROCOPY
        ("41:54:udp6:hex=0000010400000000", "ok"), // IPV6_HOPOPTS (PadN), root has CAP_NET_RAW
    ];
    let specs: Vec<&str> = cases.iter().map(|(s, _)| *s).collect();
    let native = setsockopt(None, "", &py, &specs);
    for (spec, want) in cases {
        let key = spec.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        assert_eq!(native[&key], *want, "unconfined {spec}: {native}");
    }
    // IPV6_ADDRFORM: whatever the kernel says (ENOPROTOOPT on 6.18), it is not the filter.
    let addrform = setsockopt(None, "", &py, &["41:1:udp6:int=2"]);
    assert_ne!(addrform["41:1"], "EPERM", "{addrform}");

    // Confined, with CAP_NET_RAW kept so that the kernel alone would take the source routes
    // and option headers: the filter refuses every one.
    let keep = policy_file("name = \"t\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n");
    let mut all = specs.clone();
    all.push("41:1:udp6:int=2");
    let confined = setsockopt(Some(&via), keep.as_str(), &py, &all);
    for spec in &all {
        let key = spec.splitn(3, ':').take(2).collect::<Vec<_>>().join(":");
        assert_eq!(confined[&key], "EPERM", "confined {spec}: {confined}");
    }
    // A policy that names them gets the kernel's answers back.
    let named = policy_file(
        "name = \"t\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\nallow_unsafe_sockopts = \
         [\"IP_OPTIONS\", \"IPV6_RTHDR\", \"IP_UNICAST_IF\", \"IPV6_UNICAST_IF\", \
         \"IP_MULTICAST_IF\", \"IPV6_MULTICAST_IF\", \"IPV6_PKTINFO\", \"SO_ZEROCOPY\", \
         \"IPV6_HOPOPTS\"]\n",
    );
    let allowed = setsockopt(Some(&via), named.as_str(), &py, &specs);
    assert_eq!(allowed, native, "named options take as unconfined");
}

both!(
    /// F4, L1: `IP_OPTIONS` (LSRR), `IPV6_RTHDR` (a segment routing header), `IPV6_HOPOPTS`,
    /// `IP_UNICAST_IF`, `IPV6_UNICAST_IF`, `IP_MULTICAST_IF`, `IPV6_MULTICAST_IF`, sticky
    /// `IPV6_PKTINFO`, `SO_ZEROCOPY` and `IPV6_ADDRFORM` are refused (`EPERM`), even where
    /// the policy keeps `CAP_NET_RAW`, and take again when `allow_unsafe_sockopts` names them.
    f4_l1_routing_and_interface_options_refused => options_refused_unless_named
);

/// A receiver on `[::1]` with `IPV6_RECVRTHDR`, and a sender (run as the arguments say) that
/// sets a segment routing header with `IPV6_RTHDR` on a UDP socket and sends one datagram to
/// the receiver. Prints `{"opt": "ok" | ERRNO, "data": ..., "rthdr": bool}`.
const PY_RTHDR_ON_THE_WIRE: &str = r#"
import json, socket, subprocess, sys
r = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r.bind(("::1", 0))
r.setsockopt(socket.IPPROTO_IPV6, 56, 1)  # IPV6_RECVRTHDR
sender = sys.argv[1:] + [str(r.getsockname()[1])]
done = subprocess.run(sender, capture_output=True, text=True, timeout=20)
sent = json.loads(done.stdout.strip().splitlines()[-1])
r.settimeout(2)
try:
    data, anc, _, _ = r.recvmsg(100, 1024)
    sent.update(data=data.decode(), rthdr=any((l, t) == (41, 57) for l, t, _ in anc))
except socket.timeout:
    sent.update(data=None, rthdr=False)
print(json.dumps(sent))
"#;

const PY_RTHDR_SENDER: &str = r#"
import errno, json, socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
srh = struct.pack("BBBBBBH", 0, 2, 4, 0, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, "::1")
try:
    s.setsockopt(socket.IPPROTO_IPV6, 57, srh)
    opt = "ok"
except OSError as e:
    opt = errno.errorcode[e.errno]
s.sendto(b"x", ("::1", int(sys.argv[1])))
print(json.dumps({"opt": opt}))
"#;

/// F4 (shown by a run): a segment routing header set with `IPV6_RTHDR` was on the wire of an
/// allowed send. In a network namespace the test makes (with `seg6_enabled` there, so that
/// the receiver accepts the header), unconfined the receiver sees the header; confined the
/// option is refused and the same allowed send arrives without one.
#[test]
fn f4_ipv6_rthdr_not_on_the_wire_of_an_allowed_send() {
    let test = "f4_ipv6_rthdr_not_on_the_wire_of_an_allowed_send";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let policy = policy_file("name = \"t\"\n[[allow]]\nsend = [\"udp://[::1]:*\"]\n");
    let netjail = netjail_integration_tests::netjail_bin();
    let netjail = netjail.to_string_lossy();
    let setup = "ip link set lo up && echo 1 > /proc/sys/net/ipv6/conf/all/seg6_enabled \
                 && echo 1 > /proc/sys/net/ipv6/conf/lo/seg6_enabled && exec \"$@\"";
    let in_netns = |sender: &[&str]| {
        let mut args = vec!["unshare", "-n", "sh", "-c", setup, "sh"];
        args.extend_from_slice(&[&py, "-c", PY_RTHDR_ON_THE_WIRE]);
        args.extend_from_slice(sender);
        let out = unconfined(&args);
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out.json().clone()
    };
    let native = in_netns(&[&py, "-c", PY_RTHDR_SENDER]);
    assert_eq!(native["opt"], "ok", "{native}");
    assert_eq!(native["data"], "x", "{native}");
    assert_eq!(
        native["rthdr"], true,
        "unconfined, the header is on the wire: {native}"
    );
    let confined = in_netns(&[
        &netjail,
        "run",
        "--allow-root",
        "--policy",
        policy.as_str(),
        "--",
        &py,
        "-c",
        PY_RTHDR_SENDER,
    ]);
    assert_eq!(confined["opt"], "EPERM", "{confined}");
    assert_eq!(
        confined["data"], "x",
        "the allowed send still goes: {confined}"
    );
    assert_eq!(confined["rthdr"], false, "no routing header: {confined}");
}

/// The outer half of the zero-copy attack: a TCP receiver on 127.0.0.1, a connected socket
/// with `SO_ZEROCOPY` set before confinement, handed to the sender (run as the arguments
/// say, with the socket as fd 3). Prints the sender's answers and what the receiver got.
const PY_ZEROCOPY_OUTER: &str = r#"
import json, os, socket, subprocess, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, 60, 1)  # SO_ZEROCOPY, before confinement
c.connect(srv.getsockname())
peer, _ = srv.accept()
os.dup2(c.fileno(), 3)
os.set_inheritable(3, True)
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=20, pass_fds=(3,))
out = json.loads(done.stdout.strip().splitlines()[-1])
os.close(3)
c.close()
got = b""
peer.settimeout(2)
while True:
    try:
        chunk = peer.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    got += chunk
out["received"] = got.decode()
print(json.dumps(out))
"#;

/// The sender: on fd 3, `sendmsg` and `sendto` (no destination) with `MSG_ZEROCOPY`, then a
/// plain `sendmsg` that shows the path works.
const PY_ZEROCOPY_SENDER: &str = r#"
import errno, json, socket
s = socket.socket(fileno=3)
MSG_ZEROCOPY = 0x4000000
out = {}
for name, send in [("sendmsg", lambda: s.sendmsg([b"Z" * 4096], [], MSG_ZEROCOPY)),
                   ("sendto", lambda: s.send(b"Y" * 4096, MSG_ZEROCOPY)),
                   ("plain", lambda: s.sendmsg([b"ok"]))]:
    try:
        out[name] = send()
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
s.detach()
print(json.dumps(out))
"#;

/// F5 (shown by a run): `MSG_ZEROCOPY` sends through the broker put the broker's heap on the
/// wire. A socket with `SO_ZEROCOPY` set before confinement, handed to the sandbox: the
/// zero-copy `sendmsg` (which the broker performs) is refused by the broker, also under a
/// policy that names `SO_ZEROCOPY` (it allows the flag only on sends that stay in the kernel),
/// and the zero-copy `send` (which stays in the kernel) by the filter unless the policy names
/// it. Unconfined both go out. Nothing but the plain send reaches the receiver.
fn zerocopy_refused(via: Via) {
    let Some(py) = need_python("f5_msg_zerocopy_never_sent_by_the_broker") else {
        return;
    };
    let sender = [py.as_str(), "-c", PY_ZEROCOPY_SENDER];
    let outer = |prefix: Vec<String>| {
        let mut args: Vec<String> = vec![py.clone(), "-c".into(), PY_ZEROCOPY_OUTER.into()];
        args.extend(prefix);
        args.extend(sender.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = std::process::Command::new(args[0]);
        cmd.args(&args[1..]);
        let out = run(&mut cmd, Duration::from_secs(40));
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out.json().clone()
    };
    let native = outer(Vec::new());
    assert_eq!(native["sendmsg"], 4096, "{native}");
    assert_eq!(native["sendto"], 4096, "{native}");
    assert!(
        native["received"].as_str().unwrap().contains('Z'),
        "{native}"
    );

    let plain = policy_file("name = \"t\"\n");
    let named = policy_file("name = \"t\"\nallow_unsafe_sockopts = [\"SO_ZEROCOPY\"]\n");
    for (policy, in_kernel) in [(&plain, Value::from("EPERM")), (&named, Value::from(4096))] {
        let cmd = via.cmd(policy.as_str(), &[]);
        let mut prefix: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
        prefix.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        let confined = outer(prefix);
        assert_eq!(confined["sendmsg"], "EPERM", "{confined}");
        assert_eq!(confined["sendto"], in_kernel, "{confined}");
        assert_eq!(confined["plain"], 2, "{confined}");
        let received = confined["received"].as_str().unwrap();
        assert!(
            !received.contains('Z'),
            "the broker sent a zero-copy message: {confined}"
        );
        assert!(received.ends_with("ok"), "{confined}");
    }
}

both!(
    /// F5: `MSG_ZEROCOPY` never goes through the broker, and stays in the kernel only where
    /// the policy names `SO_ZEROCOPY`.
    f5_msg_zerocopy_never_sent_by_the_broker => zerocopy_refused
);

/// F14: SCTP's `bindx` and `connectx` (`setsockopt` `SCTP_SOCKOPT_BINDX_ADD`, `_REM`,
/// `SCTP_SOCKOPT_CONNECTX_OLD`, `SCTP_SOCKOPT_CONNECTX`, `getsockopt`
/// `SCTP_SOCKOPT_CONNECTX3`) bind and connect without the broker; under a policy that allows
/// SCTP sockets the filter refuses them before the kernel looks at the socket. Shown on a UDP
/// socket (this kernel has no SCTP): unconfined the kernel answers `ENOPROTOOPT` (and
/// `EOPNOTSUPP` for the `getsockopt`), confined the filter `EPERM`.
fn sctp_refused(via: Via) {
    let Some(py) = need_python("f14_sctp_bindx_connectx_refused_in_the_filter") else {
        return;
    };
    let addr = "hex=02000050 7f000001 0000000000000000".replace(' ', "");
    let specs: Vec<String> = [100, 101, 107, 110]
        .iter()
        .map(|n| format!("132:{n}:udp4:{addr}"))
        .chain(std::iter::once("132:111:udp4:len=16:get".to_owned()))
        .collect();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let native = setsockopt(None, "", &py, &specs);
    // The kernel's own answer: the protocol does not know the level.
    for n in ["100", "101", "107", "110"] {
        assert_eq!(native[&format!("132:{n}")], "ENOPROTOOPT", "{native}");
    }
    assert_eq!(native["132:111"], "ENOTSUP", "{native}");
    let sctp =
        policy_file("name = \"t\"\n[sockets]\nallow = [\"inet:*\", \"inet6:*\", \"unix:*\"]\n");
    let confined = setsockopt(Some(&via), sctp.as_str(), &py, &specs);
    for n in ["100", "101", "107", "110", "111"] {
        assert_eq!(confined[&format!("132:{n}")], "EPERM", "{confined}");
    }
}

both!(
    /// F14: SCTP bindx and connectx are refused in the filter.
    f14_sctp_bindx_connectx_refused_in_the_filter => sctp_refused
);
