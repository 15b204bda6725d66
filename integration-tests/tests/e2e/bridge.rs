//! Namespace bridging (issue 19): a program in a network namespace of its own (made by the
//! test, only `lo`, and that down) reaches allowed TCP and UDP services on the host's
//! 127.0.0.1 through sockets the broker makes in the host's namespace and puts in place of
//! the program's (`SECCOMP_IOCTL_NOTIF_ADDFD`), and is refused the rest.

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;

use netjail_integration_tests::{netjail_bin, policy_file, python3, run, skip, which};
use serde_json::Value;

/// Connects from its namespace: a blocking TCP socket with `TCP_NODELAY` to the echo service
/// `A`, a non-blocking one to `A`, a TCP one to `B`, a UDP one to the echo service `U`, which
/// then sends to `V` (allowed, but not bridged) and disconnects (`AF_UNSPEC`: unconnected,
/// a UDP socket of the host's namespace would take anyone's datagrams, the sixth red team's
/// E2); then disconnects the first and calls `listen` on it. Prints what it saw.
pub(crate) const CLIENT: &str = r#"
import fcntl, json, os, select, socket, sys
A, B, U, V = (int(x) for x in sys.argv[1:5])
r = {}
s = socket.socket()
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
fd = s.fileno()
try:
    s.connect(("127.0.0.1", A))
    s.sendall(b"ping")
    r["tcp_echo"] = s.recv(16).decode()
    r["tcp_same_fd"] = s.fileno() == fd
    r["tcp_nodelay"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    r["tcp_nonblocking"] = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
    r["tcp_cloexec"] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    r["tcp_sockname"] = s.getsockname()[0]
    r["tcp_peername"] = list(s.getpeername())
except OSError as e:
    r["tcp_echo"] = "errno %d" % e.errno
n = socket.socket()
n.setblocking(False)
try:
    n.connect(("127.0.0.1", A))
    r["nonblocking_connect"] = 0
except OSError as e:
    r["nonblocking_connect"] = e.errno
select.select([], [n], [], 5)
r["nonblocking_so_error"] = n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
r["nonblocking_still"] = bool(fcntl.fcntl(n.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
d = socket.socket()
try:
    d.connect(("127.0.0.1", B))
    r["denied"] = 0
except OSError as e:
    r["denied"] = e.errno
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
try:
    u.connect(("127.0.0.1", U))
    u.send(b"udp")
    r["udp_echo"] = u.recv(16).decode()
except OSError as e:
    r["udp_echo"] = "errno %d" % e.errno
try:
    u.sendto(b"x", ("127.0.0.1", V))
    r["udp_outside_bridge"] = 0
except OSError as e:
    r["udp_outside_bridge"] = e.errno
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
r["udp_disconnect"] = 0 if libc.connect(u.fileno(), ctypes.create_string_buffer(16), 16) == 0 else ctypes.get_errno()
r["tcp_disconnect"] = 0 if libc.connect(fd, ctypes.create_string_buffer(16), 16) == 0 else ctypes.get_errno()
try:
    s.listen(1)
    r["listen_after_disconnect"] = 0
except OSError as e:
    r["listen_after_disconnect"] = e.errno
print(json.dumps(r), flush=True)
"#;

/// `unshare [--net] -- [netjail run --allow-root --policy POLICY --]`, to which the program and
/// its arguments are added: in a network namespace of its own with `own_netns`, confined by
/// the launcher's embedded broker under `policy` when one is given.
fn launcher(unshare: &std::path::Path, own_netns: bool, policy: Option<&str>) -> Command {
    let mut cmd = Command::new(unshare);
    if own_netns {
        cmd.arg("--net");
    }
    cmd.arg("--");
    if let Some(policy) = policy {
        cmd.arg(netjail_bin()).env_remove("NETJAIL_BROKER").args([
            "run",
            "--allow-root",
            "--policy",
            policy,
            "--",
        ]);
    }
    cmd
}

#[test]
fn i19_a_namespace_of_its_own_reaches_allowed_host_services_through_the_bridge() {
    let test = "i19_a_namespace_of_its_own_reaches_allowed_host_services_through_the_bridge";
    let (Some(py), Some(unshare)) = (python3(), which("unshare")) else {
        skip(test, "needs python3 and unshare");
        return;
    };
    let services = HostServices::start();
    let ports = services.ports();
    let client = |confined: Option<&str>| {
        let mut cmd = launcher(&unshare, true, confined);
        cmd.arg(&py).args(["-c", CLIENT]).args(&ports);
        run(&mut cmd, std::time::Duration::from_secs(60))
    };
    let result = |out: &netjail_integration_tests::Outcome| -> Value {
        out.stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or_else(|| panic!("no result: {}", out.describe()))
    };

    // Unconfined, the namespace has no route to the host's loopback.
    let out = client(None);
    let v = result(&out);
    assert!(
        !HostServices::reached(&v),
        "unconfined, the namespace reached the host: {}",
        out.describe()
    );

    let policy = policy_file(&services.policy(&format!("/proc/{}/ns/net", std::process::id())));
    let out = client(Some(policy.as_str()));
    services.check(&result(&out), &out.describe());
}

/// The host's services for [`CLIENT`]: a TCP echo `A`, a TCP listener `B` that must never be
/// reached, a UDP echo `U`, a UDP socket `V` allowed but not bridged.
pub(crate) struct HostServices {
    a: u16,
    b: u16,
    u: u16,
    w: u16,
    denied: TcpListener,
}

impl HostServices {
    pub(crate) fn start() -> HostServices {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = echo.local_addr().unwrap().port();
        let denied = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = denied.local_addr().unwrap().port();
        denied.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let u = udp.local_addr().unwrap().port();
        let unbridged = UdpSocket::bind("127.0.0.1:0").unwrap();
        let w = unbridged.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in echo.incoming().flatten() {
                let mut buf = [0u8; 16];
                if let Ok(n) = c.read(&mut buf) {
                    let _ = c.write_all(&buf[..n]);
                }
            }
        });
        std::thread::spawn(move || {
            let _unbridged = unbridged;
            let mut buf = [0u8; 16];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        HostServices { a, b, u, w, denied }
    }

    /// [`CLIENT`]'s arguments.
    pub(crate) fn ports(&self) -> [String; 4] {
        [self.a, self.b, self.u, self.w].map(|p| p.to_string())
    }

    /// A policy that allows `A`, `U` and `V`, and bridges `A` and `U` from `netns`.
    pub(crate) fn policy(&self, netns: &str) -> String {
        let (a, u, w) = (self.a, self.u, self.w);
        format!(
            "name = \"bridge\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{a}\", \"udp://127.0.0.1:{u}\", \"udp://127.0.0.1:{w}\"]\n\n[bridge]\nnetns = \"{netns}\"\nconnect = [\"tcp://127.0.0.1:{a}\", \"udp://127.0.0.1:{u}\"]\n"
        )
    }

    /// What [`CLIENT`] must have seen through the bridge (`v`; `describe` says what ran).
    pub(crate) fn check(&self, v: &Value, describe: &str) {
        let want = [
            ("tcp_echo", Value::from("ping")),
            ("tcp_same_fd", Value::from(true)),
            ("tcp_nodelay", Value::from(true)),
            ("tcp_nonblocking", Value::from(false)),
            ("tcp_cloexec", Value::from(true)),
            ("tcp_sockname", Value::from("127.0.0.1")),
            ("nonblocking_connect", Value::from(libc::EINPROGRESS)),
            ("nonblocking_so_error", Value::from(0)),
            ("nonblocking_still", Value::from(true)),
            ("denied", Value::from(libc::EPERM)),
            ("udp_echo", Value::from("udp")),
            ("udp_outside_bridge", Value::from(libc::EPERM)),
            ("udp_disconnect", Value::from(libc::EPERM)),
            ("tcp_disconnect", Value::from(libc::EPERM)),
            ("listen_after_disconnect", Value::from(libc::EPERM)),
        ];
        for (key, value) in want {
            assert_eq!(v[key], value, "{key}: {describe}");
        }
        assert_eq!(
            v["tcp_peername"],
            serde_json::json!(["127.0.0.1", self.a]),
            "{describe}"
        );
        let mut reached = 0;
        while self.denied.accept().is_ok() {
            reached += 1;
        }
        assert_eq!(reached, 0, "the denied service was reached");
    }

    /// Whether [`CLIENT`] reached the host's TCP echo (`v`).
    pub(crate) fn reached(v: &Value) -> bool {
        v["tcp_echo"] == "ping"
    }
}

/// A policy a client sent over the broker's socket may not take the broker into a namespace
/// of its choosing: its bridged connects are refused (`bridge:not-administrators`), where the
/// same program reaches the service unconfined.
#[test]
fn i19_a_policy_a_client_sent_cannot_bridge() {
    let test = "i19_a_policy_a_client_sent_cannot_bridge";
    let Some(py) = python3() else {
        skip(test, "needs python3");
        return;
    };
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in echo.incoming().flatten() {
            let mut buf = [0u8; 16];
            if let Ok(n) = c.read(&mut buf) {
                let _ = c.write_all(&buf[..n]);
            }
        }
    });
    let script = "import socket, sys\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', int(sys.argv[1]))); s.sendall(b'ping'); print(s.recv(16).decode())\nexcept OSError as e:\n    print('errno', e.errno)\n";
    let port = a.to_string();
    let py = py.to_str().unwrap().to_owned();
    let out = netjail_integration_tests::unconfined(&[&py, "-c", script, &port]);
    assert_eq!(out.stdout.trim(), "ping", "unconfined: {}", out.describe());
    let broker = netjail_integration_tests::Broker::start();
    let policy = policy_file(&format!(
        "name = \"bridge\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{a}\"]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nconnect = [\"tcp://127.0.0.1:{a}\"]\n",
        pid = std::process::id()
    ));
    let out = netjail_integration_tests::confined_with_broker(
        &broker,
        policy.as_str(),
        &[&py, "-c", script, &port],
    );
    assert_eq!(
        out.stdout.trim(),
        format!("errno {}", libc::EPERM),
        "{}",
        out.describe()
    );
}

/// Gives a bridged UDP socket (connected to `U`) to the taker listening at `PATH`.
const GIVER: &str = r#"
import array, socket, sys
path, U = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect(("127.0.0.1", U))
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(path)
c.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [u.fileno()]))])
c.recv(1)
"#;

/// Takes one socket at `PATH`, then sends with it to `V` (its own policy allows `V`), and
/// disconnects it. Prints what it saw.
const TAKER: &str = r#"
import array, ctypes, json, os, socket, sys
path, V = sys.argv[1], int(sys.argv[2])
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
l.bind(path)
l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
msg, anc, _, _ = c.recvmsg(1, socket.CMSG_LEN(4))
fd = array.array("i", anc[0][2][:4])[0]
u = socket.socket(fileno=fd)
r = {}
try:
    u.sendto(b"escaped", ("127.0.0.1", V))
    r["sendto"] = 0
except OSError as e:
    r["sendto"] = e.errno
libc = ctypes.CDLL(None, use_errno=True)
r["disconnect"] = 0 if libc.connect(fd, ctypes.create_string_buffer(16), 16) == 0 else ctypes.get_errno()
c.send(b"k")
print(json.dumps(r), flush=True)
"#;

/// A bridged socket passed to another sandbox, served by another broker, is still a socket of
/// the host's namespace there: it may not send outside the (giver's) bridge, nor be
/// disconnected — where the taker's policy bridges nothing (the sixth red team's E1: the taker
/// reached a host service its own policy allowed from its own namespace), and where it
/// bridges that very service from another namespace (the seventh red team's F2: the taker's
/// patterns, written for that namespace, were honoured on the host's socket).
#[test]
fn i19_a_bridged_socket_passed_to_another_sandbox_stays_bounded() {
    let test = "i19_a_bridged_socket_passed_to_another_sandbox_stays_bounded";
    let (Some(py), Some(unshare)) = (python3(), which("unshare")) else {
        skip(test, "needs python3 and unshare");
        return;
    };
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let u = udp.local_addr().unwrap().port();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let w = sink.local_addr().unwrap().port();
    sink.set_nonblocking(true).unwrap();
    let dir = netjail_integration_tests::TempDir::new();
    let sockets = format!("{}/*.sock", dir.path().display());
    let pid = std::process::id();
    // Another namespace, held by a process of the test's for the test's time.
    let mut other = Command::new(&unshare);
    other.args(["--net", "--", "sleep", "120"]);
    let mut other = netjail_integration_tests::spawn(&mut other);
    let other_ns = format!("/proc/{}/ns/net", other.pid());
    let give_policy = policy_file(&format!(
        "name = \"give\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"udp://127.0.0.1:{u}\"]\nunix = [\"{sockets}\"]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nconnect = [\"udp://127.0.0.1:{u}\"]\n"
    ));
    let take = format!(
        "name = \"take\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"udp://127.0.0.1:{w}\"]\nunix = [\"{sockets}\"]\n"
    );
    let take_bridging_elsewhere =
        format!("{take}\n[bridge]\nnetns = \"{other_ns}\"\nconnect = [\"udp://127.0.0.1:{w}\"]\n");
    for (i, take) in [take, take_bridging_elsewhere].iter().enumerate() {
        let take_policy = policy_file(take);
        let path = dir.path().join(format!("take{i}.sock"));
        let path = path.to_str().unwrap().to_owned();
        let sandboxed = |policy: &str, script: &str, arg: String| {
            let mut cmd = launcher(&unshare, true, Some(policy));
            cmd.arg(&py).args(["-c", script, &path, &arg]);
            cmd
        };
        let mut taker = sandboxed(take_policy.as_str(), TAKER, w.to_string());
        let taker = netjail_integration_tests::spawn(taker.stdout(std::process::Stdio::piped()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !std::path::Path::new(&path).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the taker never listened"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let given = run(
            &mut sandboxed(give_policy.as_str(), GIVER, u.to_string()),
            std::time::Duration::from_secs(60),
        );
        let taken = taker.wait(std::time::Duration::from_secs(60));
        let v: Value = taken
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no result: {}\ngiver: {}",
                    taken.describe(),
                    given.describe()
                )
            });
        let describe = || format!("taker {i}: {}", taken.describe());
        assert_eq!(v["sendto"], Value::from(libc::EPERM), "{}", describe());
        assert_eq!(v["disconnect"], Value::from(libc::EPERM), "{}", describe());
        let mut buf = [0u8; 16];
        assert!(
            sink.recv_from(&mut buf).is_err(),
            "taker {i} reached a service its bridge does not serve from the host"
        );
    }
    other.kill();
}

/// The attack suite on the bridge: a connect whose sockaddr another thread flips between a
/// bridged service and a refused one, while a third thread puts another socket at the
/// descriptor (`dup2`) or closes it. Unconfined, in the host's namespace, the flip reaches the
/// refused service; confined in a namespace of its own, the bridge serves only the allowed
/// one, and the broker serves on.
#[test]
fn i19_racing_the_sockaddr_and_swapping_the_descriptor_never_bridges_a_refused_destination() {
    let test =
        "i19_racing_the_sockaddr_and_swapping_the_descriptor_never_bridges_a_refused_destination";
    let Some(unshare) = which("unshare") else {
        skip(test, "needs unshare");
        return;
    };
    // Each service counts what it accepts (the descriptor the probe holds may be anything).
    let counted = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for _ in l.incoming() {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        (port, count)
    };
    let ((a, allowed), (d, denied)) = (counted(), counted());
    // What a service accepted since the last look, once the queue has settled.
    let accepted = |count: &std::sync::atomic::AtomicUsize| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        count.swap(0, std::sync::atomic::Ordering::Relaxed)
    };
    let attack = |confined: Option<&str>| {
        let mut cmd = launcher(&unshare, confined.is_some(), confined);
        cmd.arg(crate::probe())
            .args(["flip", &a.to_string(), &d.to_string(), "3000", "swap"]);
        run(&mut cmd, std::time::Duration::from_secs(120))
    };
    let out = attack(None);
    assert!(out.status.success(), "unconfined: {}", out.describe());
    let reached = accepted(&denied);
    assert!(
        reached > 0,
        "unconfined, the flip never reached the refused service (nothing proven): {}",
        out.describe()
    );
    accepted(&allowed);

    let policy = policy_file(&format!(
        "name = \"bridge\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{a}\"]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nconnect = [\"tcp://127.0.0.1:{a}\"]\n",
        pid = std::process::id()
    ));
    let out = attack(Some(policy.as_str()));
    assert!(out.status.success(), "confined: {}", out.describe());
    let (served, refused) = (accepted(&allowed), accepted(&denied));
    assert_eq!(
        refused,
        0,
        "a refused destination was bridged: {}",
        out.describe()
    );
    assert!(
        served > 0,
        "the bridge never served the allowed service: {}",
        out.describe()
    );
}

/// Listens on 127.0.0.1:PORT with `SO_REUSEADDR`, says `listening`, echoes what one client
/// sends, then prints what it saw.
const PUBLISHED: &str = r#"
import json, socket, sys
P = int(sys.argv[1])
r = {}
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    l.bind(("127.0.0.1", P))
    l.listen(1)
    r["sockname"] = list(l.getsockname())
    r["reuseaddr"] = l.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
    print("listening %d" % l.getsockname()[1], flush=True)
    l.settimeout(10)
    c, _ = l.accept()
    data = c.recv(16)
    c.sendall(data)
    r["echoed"] = data.decode()
except OSError as e:
    r["error"] = e.errno
print(json.dumps(r), flush=True)
"#;

/// A published port: a program in a namespace of its own binds and listens on a port the
/// bridge's `bind` patterns name, and the host reaches it on the host's 127.0.0.1 (the socket
/// was made and bound in the host's namespace and put in place of the program's). Unconfined,
/// its listener is in its own namespace, out of the host's reach.
#[test]
fn i19_a_published_port_is_bound_in_the_bridge_namespace() {
    let test = "i19_a_published_port_is_bound_in_the_bridge_namespace";
    let (Some(py), Some(unshare)) = (python3(), which("unshare")) else {
        skip(test, "needs python3 and unshare");
        return;
    };
    // A port free on the host's loopback now (the test's own, released at once).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    // The program binds `asked` and says the port it listens on; the host connects there.
    let serve = |confined: Option<&str>, asked: u16| {
        let mut cmd = launcher(&unshare, true, confined);
        cmd.arg(&py)
            .args(["-c", PUBLISHED, &asked.to_string()])
            .stdout(std::process::Stdio::piped());
        let server = netjail_integration_tests::spawn(&mut cmd);
        let listening = server.read_line(std::time::Duration::from_secs(20));
        let at = listening
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("listening "))
            .and_then(|p| p.parse().ok())
            .unwrap_or(asked);
        let reached = std::net::TcpStream::connect(("127.0.0.1", at)).and_then(|mut c| {
            c.write_all(b"hi")?;
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf)?;
            Ok(buf)
        });
        (
            listening,
            reached.ok(),
            server.wait(std::time::Duration::from_secs(30)),
        )
    };
    let (_, reached, out) = serve(None, port);
    assert_eq!(
        reached,
        None,
        "unconfined, the host reached the namespace: {}",
        out.describe()
    );

    let publish = |port: u16| {
        policy_file(&format!(
            "name = \"publish\"\ndefault = \"deny\"\n\n[[allow]]\nbind = [\"tcp://127.0.0.1:{port}\"]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nbind = [\"tcp://127.0.0.1:{port}\"]\n",
            pid = std::process::id()
        ))
    };
    // An ephemeral port published (pattern port 0): its listen is allowed too (the ninth red
    // team's F3: it was refused).
    let (listening, reached, out) = serve(Some(publish(0).as_str()), 0);
    assert!(
        listening
            .as_deref()
            .is_some_and(|l| l.starts_with("listening ")),
        "{}",
        out.describe()
    );
    assert_eq!(reached, Some(*b"hi"), "port 0: {}", out.describe());

    let (listening, reached, out) = serve(Some(publish(port).as_str()), port);
    assert_eq!(
        listening.as_deref().map(str::trim),
        Some(format!("listening {port}").as_str()),
        "{}",
        out.describe()
    );
    assert_eq!(
        reached,
        Some(*b"hi"),
        "the host did not reach the published port: {}",
        out.describe()
    );
    let v: Value = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result: {}", out.describe()));
    assert_eq!(v["echoed"], "hi", "{}", out.describe());
    assert_eq!(
        v["sockname"],
        serde_json::json!(["127.0.0.1", port]),
        "{}",
        out.describe()
    );
    assert_eq!(
        v["reuseaddr"],
        true,
        "SO_REUSEADDR carried: {}",
        out.describe()
    );
}

/// Opens N TCP connections to 127.0.0.1:A and keeps them open; prints how each connect ended.
const HOLD_CONNECTIONS: &str = r#"
import errno, json, socket, sys
A, N = int(sys.argv[1]), int(sys.argv[2])
held, r = [], {}
for _ in range(N):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", A))
        held.append(s)
        k = "ok"
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno))
    r[k] = r.get(k, 0) + 1
print(json.dumps(r), flush=True)
"#;

/// `max_connections` counts bridged connects (the seventh red team's F3: the socket counted was
/// the program's, which the bridged one replaced, so it stopped counting at once). Unconfined
/// every connect succeeds; confined, three do.
#[test]
fn i19_bridged_connects_count_under_max_connections() {
    let test = "i19_bridged_connects_count_under_max_connections";
    let (Some(py), Some(unshare)) = (python3(), which("unshare")) else {
        skip(test, "needs python3 and unshare");
        return;
    };
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in server.incoming().flatten() {
            held.push(c);
        }
    });
    let holder = |confined: Option<&str>| {
        let mut cmd = launcher(&unshare, confined.is_some(), confined);
        cmd.arg(&py)
            .args(["-c", HOLD_CONNECTIONS, &a.to_string(), "20"]);
        let out = run(&mut cmd, std::time::Duration::from_secs(60));
        let v: Value = out
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no result: {}", out.describe()));
        (v, out)
    };
    let (v, out) = holder(None);
    assert_eq!(v["ok"], 20, "unconfined: {}", out.describe());
    let policy = policy_file(&format!(
        "name = \"bridge\"\ndefault = \"deny\"\n\n[limits]\nmax_connections = 3\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{a}\"]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nconnect = [\"tcp://127.0.0.1:{a}\"]\n",
        pid = std::process::id()
    ));
    let (v, out) = holder(Some(policy.as_str()));
    assert_eq!(v["ok"], 3, "confined: {}", out.describe());
    assert_eq!(v["ENOBUFS"], 17, "confined: {}", out.describe());
}
