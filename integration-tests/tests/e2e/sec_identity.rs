//! Issue 16, gap 1: the broker acts as the caller, or not at all. Every call the broker
//! performs for a sandbox is checked by the kernel against the sandbox's identity (its ids,
//! groups, capabilities in its own user namespace, umask, limits), never the broker's.
//!
//! Each test runs the attack unconfined first (the kernel's own answer for the sandbox's
//! identity, and where it helps the same call as root, which shows the probe can tell them
//! apart), then confined, where it must get the same answer. The sandboxed programs are
//! python3 snippets run as nobody (`setpriv` inside the sandbox) under a root broker; the
//! receivers on the other side run as root outside every sandbox.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netjail_integration_tests::{policy_file, run, unconfined, Outcome, TempDir};
use serde_json::Value;

use crate::{as_nobody, nobody_python, Via};

/// nobody / nogroup.
const NOBODY_ID: u64 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// A fresh temporary directory (mode 0777) that uid 65534 may enter and create files in.
fn open_dir() -> TempDir {
    let dir = TempDir::new();
    chmod(dir.path(), 0o777);
    dir
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A receiver outside every sandbox, run as root: a python3 program that prints `ready` once
/// it listens, then one JSON line with what it saw (it gives up by itself after a few
/// seconds).
struct Receiver(Child);

impl Receiver {
    fn start(py: &str, code: &str, args: &[&str]) -> Receiver {
        let mut child = Command::new(py)
            .args(["-c", code])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("receiver output");
        assert_eq!(line.trim(), "ready", "the receiver did not start");
        Receiver(child)
    }

    /// What it saw.
    fn seen(self) -> Value {
        let out = self.0.wait_with_output().expect("receiver ends");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "receiver said {text:?} ({e}); stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

#[track_caller]
fn field<'a>(out: &'a Outcome, key: &str) -> &'a Value {
    let v = out
        .json
        .as_ref()
        .unwrap_or_else(|| panic!("no JSON: {}", out.describe()));
    &v[key]
}

// ---- F6: abstract unix connects as the caller ------------------------------------------------

/// Accepts one connection on the abstract name `argv[1]` and reports its `SO_PEERCRED`.
const PY_ABSTRACT_SERVER: &str = r#"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1])
s.listen(4)
s.settimeout(20)
print("ready", flush=True)
try:
    c, _ = s.accept()
    pid, uid, gid = struct.unpack("iII", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    print(json.dumps({"pid": pid, "uid": uid, "gid": gid}))
except OSError as e:
    print(json.dumps({"err": str(e)}))
"#;

/// Connects to the abstract name `argv[1]`.
const PY_ABSTRACT_CLIENT: &str = r#"
import errno, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
r = {"uid": os.getuid(), "gid": os.getgid()}
try:
    s.connect("\0" + sys.argv[1])
    r["ok"] = True
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(r))
"#;

fn abstract_connect(via: Via) {
    let test = "f6_abstract_unix_connect_as_the_caller";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let name = format!("nj-f6-{}-{}", std::process::id(), rand_suffix());
    let policy = policy_file(&format!("name = \"f6\"\n[[allow]]\nunix = [\"@{name}\"]\n"));
    let client = as_nobody(&[py.as_str(), "-c", PY_ABSTRACT_CLIENT, name.as_str()]);
    for confined in [false, true] {
        let server = Receiver::start(&py, PY_ABSTRACT_SERVER, &[&name]);
        let out = if confined {
            via.run(policy.as_str(), &client)
        } else {
            unconfined(&client)
        };
        assert_eq!(field(&out, "ok"), true, "{}", out.describe());
        let seen = server.seen();
        // Unconfined the server sees nobody; through the broker it saw uid 0 (F6).
        assert_eq!(
            (seen["uid"].as_u64(), seen["gid"].as_u64()),
            (Some(NOBODY_ID), Some(NOBODY_ID)),
            "confined={confined}: the server saw {seen}: {}",
            out.describe()
        );
    }
}

both!(
    /// F6: an abstract unix server sees the sandbox's uid and gid in `SO_PEERCRED` for a
    /// connect the broker made for a `nobody` sandbox (it saw uid 0 before).
    f6_abstract_unix_connect_as_the_caller => abstract_connect
);

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

// ---- L2: netlink connects as the caller ------------------------------------------------------

/// Connects a `NETLINK_ROUTE` socket to port id 4242 and group 0: the kernel wants
/// `CAP_NET_ADMIN` for it (rtnetlink does not let unprivileged senders address others).
const PY_NETLINK: &str = r#"
import errno, json, socket
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
try:
    s.connect((4242, 0))
    r = {"ok": True}
except OSError as e:
    r = {"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(r))
"#;

fn netlink_connect(via: Via) {
    let test = "l2_netlink_connect_as_the_caller";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let root = [py.as_str(), "-c", PY_NETLINK];
    let nobody = as_nobody(&root);
    let out = unconfined(&root);
    assert_eq!(field(&out, "ok"), true, "root may: {}", out.describe());
    let out = unconfined(&nobody);
    assert_eq!(
        field(&out, "err"),
        "EPERM",
        "nobody may not: {}",
        out.describe()
    );
    let policy = policy_file(
        "name = \"l2\"\ndefault = \"allow\"\n[sockets]\nallow = [\"netlink:raw\", \"unix:*\", \"inet:stream\", \"inet:dgram\"]\n",
    );
    let out = via.run(policy.as_str(), &nobody);
    assert_eq!(
        field(&out, "err"),
        "EPERM",
        "the broker connected with its own CAP_NET_ADMIN: {}",
        out.describe()
    );
}

both!(
    /// L2: a netlink connect to another port id, which the kernel allows only with
    /// `CAP_NET_ADMIN`, is refused to a `nobody` sandbox as it is refused to nobody (the root
    /// broker made it for it before).
    l2_netlink_connect_as_the_caller => netlink_connect
);

// ---- F13: capabilities are the caller's, never a client policy's ----------------------------

/// Binds a TCP socket to `argv[1]`:`argv[2]`.
const PY_BIND: &str = r#"
import errno, json, os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
    r = {"ok": True}
except OSError as e:
    r = {"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(r))
"#;

/// A privileged port in `range` that is free on loopback (each test its own range: tests run
/// at once, and other modules take theirs from 900 to 999).
fn free_privileged_port(range: std::ops::Range<u16>) -> u16 {
    range
        .clone()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or_else(|| panic!("a free port in {range:?}"))
}

fn privileged_bind(via: Via, owner: bool) {
    let test = "f13_client_policy_lends_no_capability";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let port = if owner {
        free_privileged_port(700..800)
    } else {
        free_privileged_port(800..900)
    }
    .to_string();
    let root = [py.as_str(), "-c", PY_BIND, "127.0.0.1", port.as_str()];
    let nobody = as_nobody(&root);
    let out = unconfined(&root);
    assert_eq!(field(&out, "ok"), true, "root binds it: {}", out.describe());
    let out = unconfined(&nobody);
    assert_eq!(
        field(&out, "err"),
        "EACCES",
        "nobody may not: {}",
        out.describe()
    );

    // A policy that says the sandbox keeps CAP_NET_BIND_SERVICE: nobody holds no such
    // capability, and the policy's word gives it none.
    let keeps = policy_file(
        "name = \"f13\"\nkeep_capabilities = [\"CAP_NET_BIND_SERVICE\"]\n[[allow]]\nbind = [\"tcp://127.0.0.1:*\"]\n",
    );
    let out = via.run(keeps.as_str(), &nobody);
    assert_eq!(field(&out, "err"), "EACCES", "{}", out.describe());
    // Root does hold it, keeps it under that policy, and binds with its own.
    let out = via.run(keeps.as_str(), &root);
    assert_eq!(
        field(&out, "ok"),
        true,
        "root's own capability: {}",
        out.describe()
    );

    // A policy that names the port (rule J8): the broker's capability is lent only by a
    // policy of its administrator (here the owner of the embedded broker), never by one a
    // client sent to netjaild.
    let named = policy_file(&format!(
        "name = \"f13\"\n[[allow]]\nbind = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    let out = via.run(named.as_str(), &nobody);
    if owner {
        assert_eq!(
            field(&out, "ok"),
            true,
            "the owner's grant by name: {}",
            out.describe()
        );
    } else {
        assert_eq!(
            field(&out, "err"),
            "EACCES",
            "a client's policy: {}",
            out.describe()
        );
    }
}

/// F13: a `nobody` sandbox whose client-sent policy keeps `CAP_NET_BIND_SERVICE` cannot bind a
/// privileged port (`EACCES`, as nobody's own bind); a client-sent policy naming the port
/// does not lend netjaild's capability either.
#[test]
fn f13_client_policy_lends_no_capability() {
    privileged_bind(Via::broker(), false);
}

/// F13, invariant 3: the owner of an embedded broker is its administrator: its policy's grant
/// of a privileged port by name (J8) still binds it; `keep_capabilities` still gives nothing.
#[test]
fn f13_owner_policy_grants_privileged_port_by_name() {
    privileged_bind(Via::Embedded, true);
}

/// Sends one UDP datagram to `[::1]:argv[1]` with an IPv6 hop-by-hop options header (a PadN
/// option) as a control message: the kernel wants `CAP_NET_RAW` for it.
const PY_HOPOPTS: &str = r#"
import errno, json, socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
hop = bytes([0, 0, 1, 4, 0, 0, 0, 0])
try:
    s.sendmsg([b"hop"], [(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, hop)], 0, ("::1", int(sys.argv[1])))
    r = {"ok": True}
except OSError as e:
    r = {"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(r))
"#;

fn source_cmsgs(via: Via) {
    let test = "f13_source_cmsgs_sent_with_the_callers_capabilities";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let Ok(receiver) = std::net::UdpSocket::bind("[::1]:0") else {
        netjail_integration_tests::skip(test, "no IPv6 loopback");
        return;
    };
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let port = receiver.local_addr().expect("addr").port().to_string();
    let arrived = || {
        let mut buf = [0u8; 16];
        receiver.recv(&mut buf).is_ok()
    };
    let root = [py.as_str(), "-c", PY_HOPOPTS, port.as_str()];
    let nobody = as_nobody(&root);
    let out = unconfined(&root);
    assert_eq!(field(&out, "ok"), true, "root may: {}", out.describe());
    assert!(arrived(), "root's datagram arrives");
    let out = unconfined(&nobody);
    assert_eq!(
        field(&out, "err"),
        "EPERM",
        "nobody may not: {}",
        out.describe()
    );

    let policy = policy_file(&format!(
        "name = \"f13-cmsgs\"\nsource_cmsgs = true\n[[allow]]\nsend = [\"udp://[::1]:{port}\"]\n"
    ));
    let out = via.run(policy.as_str(), &nobody);
    assert_eq!(field(&out, "err"), "EPERM", "{}", out.describe());
    assert!(
        !arrived(),
        "the datagram went out with the broker's CAP_NET_RAW"
    );
}

both!(
    /// F13: with `source_cmsgs = true` a control message the kernel grants only with
    /// `CAP_NET_RAW` (an IPv6 hop-by-hop header) is sent with the caller's capabilities: a
    /// `nobody` sandbox gets `EPERM` like nobody, and nothing arrives.
    f13_source_cmsgs_sent_with_the_callers_capabilities => source_cmsgs
);

// ---- L9: the privileged-port threshold of the socket's network namespace --------------------

/// Runs `cmd` in a new network namespace whose `ip_unprivileged_port_start` is 2000.
fn in_netns_with_threshold(cmd: &Command) -> Command {
    let mut outer = Command::new("unshare");
    outer.args([
        "-n",
        "--",
        "sh",
        "-c",
        "echo 2000 > /proc/sys/net/ipv4/ip_unprivileged_port_start && exec \"$@\"",
        "sh",
    ]);
    outer.arg(cmd.get_program()).args(cmd.get_args());
    outer
}

fn namespace_threshold(via: Via) {
    let test = "l9_privileged_threshold_of_the_sockets_netns";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let policy = policy_file("name = \"l9\"\n[[allow]]\nbind = [\"tcp://*:*\"]\n");
    for (port, allowed) in [("1500", false), ("2500", true)] {
        let nobody = as_nobody(&[py.as_str(), "-c", PY_BIND, "0.0.0.0", port]);
        let mut plain = Command::new(nobody[0]);
        plain.args(&nobody[1..]);
        let out = run(
            &mut in_netns_with_threshold(&plain),
            Duration::from_secs(20),
        );
        let confined = run(
            &mut in_netns_with_threshold(&via.cmd(policy.as_str(), &nobody)),
            Duration::from_secs(30),
        );
        for (what, out) in [("unconfined", &out), ("confined", &confined)] {
            if allowed {
                assert_eq!(field(out, "ok"), true, "{what} {port}: {}", out.describe());
            } else {
                assert_eq!(
                    field(out, "err"),
                    "EACCES",
                    "{what} {port} under a threshold of 2000: {}",
                    out.describe()
                );
            }
        }
    }
}

both!(
    /// L9: in a network namespace the test made, with `ip_unprivileged_port_start` raised to
    /// 2000, a `nobody` sandbox's bind of port 1500 is refused (`EACCES`) as nobody's own is,
    /// and port 2500 binds (the broker had a fixed 1024 before).
    l9_privileged_threshold_of_the_sockets_netns => namespace_threshold
);

// ---- L10: a socket file gets the caller's umask ---------------------------------------------

/// With umask 077, binds a unix socket at `argv[1]`.
const PY_UMASK_BIND: &str = r#"
import errno, json, os, socket, sys
os.umask(0o077)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(sys.argv[1])
    r = {"ok": True}
except OSError as e:
    r = {"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(r))
"#;

fn umask_bind(via: Via) {
    let test = "l10_unix_bind_gets_the_callers_umask";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = open_dir();
    let policy = policy_file(&format!(
        "name = \"l10\"\n[[allow]]\nunix = [\"{}/*\"]\n",
        utf8(dir.path())
    ));
    for confined in [false, true] {
        let path = dir.path().join(format!("s{confined}.sock"));
        let args = as_nobody(&[py.as_str(), "-c", PY_UMASK_BIND, utf8(&path)]);
        let out = if confined {
            via.run(policy.as_str(), &args)
        } else {
            unconfined(&args)
        };
        assert_eq!(field(&out, "ok"), true, "{}", out.describe());
        let meta = std::fs::symlink_metadata(&path).expect("the socket file");
        assert_eq!(
            (meta.mode() & 0o777, u64::from(meta.uid())),
            (0o700, NOBODY_ID),
            "confined={confined}: the socket file's mode and owner: {}",
            out.describe()
        );
    }
}

both!(
    /// L10: a sandbox with umask 077 binds a unix socket: the file is 0700 and nobody's, as
    /// the kernel makes it for the caller (the broker's own umask made it 0755 before).
    l10_unix_bind_gets_the_callers_umask => umask_bind
);

// ---- F8 and L14: credentials on unix datagrams ------------------------------------------------

/// Receives one datagram on a unix socket at `argv[1]` (mode 0666) with `SO_PASSCRED` and
/// reports the credentials that came with it.
const PY_CRED_RECEIVER: &str = r#"
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
r = {"got": False}
try:
    msg, anc, flags, addr = s.recvmsg(64, socket.CMSG_SPACE(12))
    r["got"] = True
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            p, u, g = struct.unpack("iII", data[:12])
            r.update(pid=p, uid=u, gid=g)
except OSError:
    pass
print(json.dumps(r))
"#;

/// Sends one datagram to the unix path `argv[1]`, claiming the credentials `argv[2]` says:
/// `uid0` (its own pid, uid 0, gid 0) or `none` (no control message).
const PY_CRED_SENDER: &str = r#"
import errno, json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}
try:
    if sys.argv[2] == "uid0":
        cred = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", os.getpid(), 0, 0))]
    else:
        cred = []
    s.sendmsg([b"x"], cred, 0, sys.argv[1])
    r["ok"] = True
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(r))
"#;

/// `args` run in a user namespace of its own where it is root: by nobody (uid and gid 0 inside
/// are 65534 outside), or by root (0 inside is 0 outside, but the namespace's capabilities
/// count only inside it).
fn in_user_namespace(by_nobody: bool, args: &[&str]) -> Command {
    let mut outer = Command::new("setpriv");
    if by_nobody {
        outer.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    }
    outer.args(["--", "unshare", "-U", "-r", "--"]);
    outer.args(args);
    outer
}

/// What the user-namespace tests need: a python3 that root of a user namespace made by nobody
/// can run (root of such a namespace is nobody outside it, so one under `/root` may be out of
/// reach), and a `netjaild` whose registration socket nobody may reach; or `None` after
/// `SKIP test: ...`.
struct UserNamespace {
    py: String,
    via: Via,
    by_nobody: bool,
}

impl UserNamespace {
    fn new(test: &str, by_nobody: bool) -> Option<UserNamespace> {
        let py = nobody_python(test)?;
        let system = Path::new("/usr/bin/python3");
        let py = if system.exists() {
            utf8(system).to_owned()
        } else {
            py
        };
        let probe = run(
            &mut in_user_namespace(by_nobody, &["true"]),
            Duration::from_secs(10),
        );
        if !probe.status.success() {
            netjail_integration_tests::skip(test, "cannot make a user namespace here");
            return None;
        }
        // The launcher runs as nobody (root of its user namespace): it must be allowed to
        // register (nobody's group), and reach the socket.
        let broker = netjail_integration_tests::Broker::start_with(&[], |_| {
            vec!["--register-group".into(), "65534".into()]
        });
        chmod(broker.socket().parent().expect("dir"), 0o755);
        chmod(broker.socket(), 0o666);
        Some(UserNamespace {
            py,
            via: Via::Broker(broker),
            by_nobody,
        })
    }

    /// `args` in a user namespace of nobody's, confined by `policy` or not.
    fn run(&self, policy: Option<&str>, args: &[&str]) -> Outcome {
        let mut cmd = match policy {
            Some(policy) => {
                chmod(Path::new(policy), 0o644);
                let inner = self.via.cmd(policy, args);
                let mut all: Vec<&std::ffi::OsStr> = vec![inner.get_program()];
                all.extend(inner.get_args());
                let all: Vec<&str> = all.iter().map(|s| s.to_str().expect("utf-8")).collect();
                in_user_namespace(self.by_nobody, &all)
            }
            None => in_user_namespace(self.by_nobody, args),
        };
        run(&mut cmd, Duration::from_secs(30))
    }
}

/// F8: a caller in a user namespace where it is root claims uid 0 in `SCM_CREDENTIALS`: its
/// uid 0 there is 65534 here, and a host receiver must see 65534, as the kernel shows it
/// unconfined (the broker took its `CapEff` for the broker's namespace and sent uid 0).
#[test]
fn f8_scm_credentials_translated_from_the_callers_user_namespace() {
    let test = "f8_scm_credentials_translated_from_the_callers_user_namespace";
    let Some(ns) = UserNamespace::new(test, true) else {
        return;
    };
    let dir = open_dir();
    let target = dir.path().join("receiver.sock");
    let policy = policy_file(&format!(
        "name = \"f8\"\n[[allow]]\nunix = [\"{}\"]\n",
        utf8(&target)
    ));
    let sender = [ns.py.as_str(), "-c", PY_CRED_SENDER, utf8(&target), "uid0"];
    for confined in [false, true] {
        let _ = std::fs::remove_file(&target);
        let receiver = Receiver::start(&ns.py, PY_CRED_RECEIVER, &[utf8(&target), "15"]);
        let out = ns.run(confined.then_some(policy.as_str()), &sender);
        let seen = receiver.seen();
        assert_eq!(
            field(&out, "ok"),
            true,
            "confined={confined}: {}",
            out.describe()
        );
        assert_eq!(field(&out, "uid"), 0, "root inside: {}", out.describe());
        assert_eq!(
            (seen["uid"].as_u64(), seen["gid"].as_u64()),
            (Some(NOBODY_ID), Some(NOBODY_ID)),
            "confined={confined}: the host receiver saw {seen}: {}",
            out.describe()
        );
    }
}

/// Connects to the unix path `argv[1]`.
const PY_PATH_CONNECT: &str = r#"
import errno, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    r = {"ok": True, "uid": os.getuid()}
except OSError as e:
    r = {"ok": False, "uid": os.getuid(), "err": errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(r))
"#;

/// Accepts one connection on the unix path `argv[1]`, a socket file it gives to nobody with
/// mode 0600, and says whether one came.
const PY_NOBODYS_SERVER: &str = r#"
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chown(sys.argv[1], 65534, 65534)
os.chmod(sys.argv[1], 0o600)
s.listen(4)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    s.accept()
    print(json.dumps({"connected": True}))
except OSError:
    print(json.dumps({"connected": False}))
"#;

/// F8: root of a user namespace that root made (uid 0 inside is uid 0 outside) holds
/// `CAP_DAC_OVERRIDE` there only, and only over files whose owner that namespace maps: nobody's
/// 0600 socket is out of its reach (`EACCES`), while root of the host reaches it. The broker's
/// thread took the caller's `CapEff` as if it counted in the host's namespace and connected.
#[test]
fn f8_caller_in_a_user_namespace_lends_no_capability() {
    let test = "f8_caller_in_a_user_namespace_lends_no_capability";
    let Some(ns) = UserNamespace::new(test, false) else {
        return;
    };
    let dir = TempDir::new();
    chmod(dir.path(), 0o755);
    let target = dir.path().join("nobodys.sock");
    let policy = policy_file(&format!(
        "name = \"f8-caps\"\n[[allow]]\nunix = [\"{}\"]\n",
        utf8(&target)
    ));
    let args = [ns.py.as_str(), "-c", PY_PATH_CONNECT, utf8(&target)];
    let server = Receiver::start(&ns.py, PY_NOBODYS_SERVER, &[utf8(&target), "20"]);
    for confined in [false, true] {
        let out = ns.run(confined.then_some(policy.as_str()), &args);
        assert_eq!(field(&out, "uid"), 0, "root inside: {}", out.describe());
        assert_eq!(
            field(&out, "err"),
            "EACCES",
            "confined={confined}: {}",
            out.describe()
        );
    }
    // The socket was live all along: the host's root reaches the server.
    let out = unconfined(&args);
    assert_eq!(
        field(&out, "ok"),
        true,
        "root reaches it: {}",
        out.describe()
    );
    assert_eq!(server.seen()["connected"], true);

    // The same for a datagram sent to nobody's 0600 socket: the broker sends it on a thread
    // with the caller's filesystem ids, where uid 0 kept the broker's file capabilities.
    let receiver_path = dir.path().join("nobodys-dgram.sock");
    let dgram = policy_file(&format!(
        "name = \"f8-caps\"\n[[allow]]\nunix = [\"{}\"]\n",
        utf8(&receiver_path)
    ));
    let receiver = Receiver::start(&ns.py, PY_CRED_RECEIVER, &[utf8(&receiver_path), "10"]);
    std::os::unix::fs::chown(&receiver_path, Some(65534), Some(65534)).expect("chown");
    chmod(&receiver_path, 0o600);
    let sender = [
        ns.py.as_str(),
        "-c",
        PY_CRED_SENDER,
        utf8(&receiver_path),
        "none",
    ];
    for confined in [false, true] {
        let out = ns.run(confined.then_some(dgram.as_str()), &sender);
        assert_eq!(
            field(&out, "err"),
            "EACCES",
            "confined={confined}: {}",
            out.describe()
        );
    }
    assert_eq!(
        receiver.seen()["got"],
        false,
        "a datagram reached nobody's socket"
    );
}

/// L14: a root broker without `CAP_SYS_ADMIN` cannot attach the caller's credentials (its
/// process id) to a unix message: the kernel would attach the broker's own pid and ids for a
/// receiver that asks, and the sandbox would speak as netjaild. The send is refused.
#[test]
fn l14_unix_send_refused_when_the_callers_credentials_cannot_be_attached() {
    let test = "l14_unix_send_refused_when_the_callers_credentials_cannot_be_attached";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let broker = netjail_integration_tests::Broker::start_with(
        &["setpriv", "--bounding-set=-sys_admin", "--"],
        |_| Vec::new(),
    );
    let broker_pid = broker.pid();
    let via = Via::Broker(broker);
    let dir = open_dir();
    let target = dir.path().join("notify.sock");
    let policy = policy_file(&format!(
        "name = \"l14\"\n[[allow]]\nunix = [\"{}\"]\n",
        utf8(&target)
    ));
    let sender = as_nobody(&[py.as_str(), "-c", PY_CRED_SENDER, utf8(&target), "none"]);

    let receiver = Receiver::start(&py, PY_CRED_RECEIVER, &[utf8(&target), "10"]);
    let out = unconfined(&sender);
    let seen = receiver.seen();
    assert_eq!(field(&out, "ok"), true, "{}", out.describe());
    assert_eq!(seen["pid"], *field(&out, "pid"), "its own pid: {seen}");
    assert_eq!(seen["uid"].as_u64(), Some(NOBODY_ID), "{seen}");

    let _ = std::fs::remove_file(&target);
    let receiver = Receiver::start(&py, PY_CRED_RECEIVER, &[utf8(&target), "3"]);
    let out = via.run(policy.as_str(), &sender);
    let seen = receiver.seen();
    assert_ne!(
        seen["pid"].as_i64(),
        Some(i64::from(broker_pid)),
        "the receiver saw netjaild's pid: {seen}"
    );
    assert_eq!(field(&out, "err"), "EPERM", "{seen}: {}", out.describe());
    assert_eq!(seen["got"], false, "nothing arrives: {seen}");
}

// ---- F7: a second name for a socket -----------------------------------------------------------

/// Links the socket `argv[1]` to `argv[2]` and connects to `argv[2]`.
const PY_LINK_CONNECT: &str = r#"
import errno, json, os, socket, sys
r = {}
try:
    os.link(sys.argv[1], sys.argv[2])
    r["linked"] = True
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[2])
    r["ok"] = True
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(r))
"#;

/// Accepts one connection on the unix path `argv[1]` and says whether one came.
const PY_PATH_SERVER: &str = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(4)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    s.accept()
    print(json.dumps({"connected": True}))
except OSError:
    print(json.dumps({"connected": False}))
"#;

fn hard_link(via: Via) {
    let test = "f7_hard_link_to_a_socket_refused";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let secret = TempDir::new();
    let allowed = open_dir();
    let server_path = secret.path().join("agent.sock");
    let policy = policy_file(&format!(
        "name = \"f7\"\n[[allow]]\nunix = [\"{}/X*\"]\n",
        utf8(allowed.path())
    ));
    for confined in [false, true] {
        let _ = std::fs::remove_file(&server_path);
        let link = allowed.path().join(format!("X{}", u8::from(confined)));
        let server = Receiver::start(&py, PY_PATH_SERVER, &[utf8(&server_path), "3"]);
        let args = [
            py.as_str(),
            "-c",
            PY_LINK_CONNECT,
            utf8(&server_path),
            utf8(&link),
        ];
        let out = if confined {
            via.run(policy.as_str(), &args)
        } else {
            unconfined(&args)
        };
        let seen = server.seen();
        if confined {
            assert_eq!(field(&out, "linked"), true, "{}", out.describe());
            assert_eq!(field(&out, "err"), "EPERM", "{}", out.describe());
            assert_eq!(seen["connected"], false, "the link reached the server");
        } else {
            assert_eq!(field(&out, "ok"), true, "{}", out.describe());
            assert_eq!(seen["connected"], true, "{}", out.describe());
        }
    }
}

both!(
    /// F7: a sandbox that may write a directory an allowed name lies in links a socket it may
    /// not reach (a server outside its policy) to an allowed name: unconfined the link
    /// reaches the server; confined the broker refuses a socket file with a second name.
    f7_hard_link_to_a_socket_refused => hard_link
);
