//! Sockets from the embedder (issue 19): the decision hook of an embedded broker answers a
//! connect with a socket the host program made (`HookVerdict::Serve`), and the confined
//! program talks through it, at its own descriptor number, with its own blocking mode and
//! close-on-exec flag; what is not a socket, or not an IP connect, is never served.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use netjail_broker::{Broker, Embedded, HookCall, HookVerdict};
use netjail_client::sandbox::Sandbox;
use netjail_integration_tests::Canary;
use netjail_policy::{Op, Policy, Target};
use serde_json::Value;

use crate::need_python;

/// Connects a TCP socket (non-blocking with `nonblocking`) to 127.0.0.1:PORT, reports what it
/// finds of the socket, sends `ping` and reads one line back; with `udp`, sends a datagram
/// to the port instead and reports the errno.
const PY_SERVED: &str = r#"
import errno, fcntl, json, os, select, socket, sys
port, mode = int(sys.argv[1]), sys.argv[2]
if os.environ.get("NJ_WAIT"):
    sys.stdin.readline()
out = {}
if mode == "fastopen":
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.sendto(b"hello", socket.MSG_FASTOPEN, ("127.0.0.1", port))
        out["fastopen"] = "ok"
    except OSError as e:
        out["fastopen"] = errno.errorcode[e.errno]
    print(json.dumps(out)); sys.exit(0)
if mode == "udp":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.sendto(b"x", ("127.0.0.1", port))
        out["sendto"] = "ok"
    except OSError as e:
        out["sendto"] = errno.errorcode[e.errno]
    print(json.dumps(out)); sys.exit(0)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
fd = s.fileno()
os.set_blocking(fd, mode != "nonblocking")
try:
    s.connect(("127.0.0.1", port))
    out["connect"] = "ok"
except BlockingIOError:
    select.select([], [fd], [], 10)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    out["connect"] = "ok" if err == 0 else errno.errorcode[err]
except OSError as e:
    out["connect"] = errno.errorcode[e.errno]
if out["connect"] == "ok":
    out["domain"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
    out["nonblocking"] = not os.get_blocking(fd)
    out["cloexec"] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    os.set_blocking(fd, True)
    line = b""
    try:
        os.write(fd, b"ping\n")
        while not line.endswith(b"\n"):
            chunk = os.read(fd, 100)
            if not chunk:
                break
            line += chunk
    except OSError:
        pass
    out["reply"] = line.decode().strip()
print(json.dumps(out))
"#;

/// Runs [`PY_SERVED`] confined by `broker` under a policy that allows nothing by itself (the
/// hook decides), or unconfined when `broker` is `None`.
fn run_program(py: &str, broker: Option<&Embedded>, port: u16, mode: &str) -> Value {
    let mut cmd = Command::new(py);
    cmd.args(["-c", PY_SERVED, &port.to_string(), mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = match broker {
        None => cmd.output().expect("unconfined python3"),
        Some(broker) => Sandbox::builder()
            .allow_root(true)
            .policy(Policy::builder("nothing").build().expect("policy"))
            .broker(broker.broker().clone())
            .name("renderer")
            .command(cmd)
            .spawn()
            .expect("spawn")
            .wait_with_output()
            .expect("wait"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{e}: {text:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Answers each `ping` line read on `stream` with `pong from HOW`, on a thread.
fn answer_pings(mut stream: impl Read + Write + Send + 'static, how: &'static str) {
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(&mut stream);
        if reader.read_line(&mut line).is_ok() && line.trim() == "ping" {
            let _ = writeln!(stream, "pong from {how}");
        }
    });
}

/// An embedded broker whose hook serves every connect to `port` with one end of a new
/// `socketpair`, whose other end answers `ping`s.
fn serving_socketpairs(port: u16) -> Embedded {
    Broker::builder()
        .hook(move |call: &HookCall<'_>| {
            if port_of(call) != Some(port) {
                return HookVerdict::Continue;
            }
            let (program, embedder) = UnixStream::pair().expect("socketpair");
            answer_pings(embedder, "the embedder");
            HookVerdict::Serve(OwnedFd::from(program))
        })
        .build()
        .expect("broker")
}

fn port_of(call: &HookCall<'_>) -> Option<u16> {
    match &call.request.target {
        Target::Inet { addr, .. } => Some(addr.port()),
        _ => None,
    }
}

#[test]
fn i19_an_embedder_serves_a_connect_with_a_socketpair_end() {
    let Some(py) = need_python("i19_an_embedder_serves_a_connect_with_a_socketpair_end") else {
        return;
    };
    let asked = Canary::tcp4();
    let port = asked.port();
    // Unconfined the program reaches the canary, which answers nothing: the reply below can
    // only come from the embedder's end.
    let v = run_program(&py, None, port, "blocking");
    assert_eq!(v["connect"], "ok", "{v}");
    assert_eq!(asked.wait_count(1, Duration::from_secs(10)), 1);
    assert_eq!(v["reply"], "", "the canary says nothing: {v}");

    let broker = serving_socketpairs(port);
    for mode in ["blocking", "nonblocking"] {
        let v = run_program(&py, Some(&broker), port, mode);
        assert_eq!(v["connect"], "ok", "{mode}: {v}");
        assert_eq!(v["reply"], "pong from the embedder", "{mode}: {v}");
        assert_eq!(
            v["domain"],
            libc::AF_UNIX,
            "{mode}: the served socket's family: {v}"
        );
        assert_eq!(v["nonblocking"], mode == "nonblocking", "{mode}: {v}");
        assert_eq!(
            v["cloexec"], true,
            "{mode}: python's sockets are close-on-exec: {v}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(asked.count(), 1, "confined, the canary was never reached");
}

#[test]
fn i19_an_embedder_serves_a_connect_with_a_tcp_connection_it_made() {
    let Some(py) = need_python("i19_an_embedder_serves_a_connect_with_a_tcp_connection_it_made")
    else {
        return;
    };
    let asked = Canary::tcp4();
    let port = asked.port();
    // The service the embedder reaches for the program: port 0, loopback.
    let service = TcpListener::bind("127.0.0.1:0").expect("listener");
    let service_at = service.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in service.incoming().flatten() {
            answer_pings(stream, "the service");
        }
    });
    let broker = Broker::builder()
        .hook(move |call: &HookCall<'_>| match port_of(call) {
            Some(p) if p == port && call.request.op == Op::Connect => {
                match TcpStream::connect(service_at) {
                    Ok(conn) => HookVerdict::Serve(OwnedFd::from(conn)),
                    Err(_) => HookVerdict::DENY,
                }
            }
            _ => HookVerdict::Continue,
        })
        .build()
        .expect("broker");
    let v = run_program(&py, Some(&broker), port, "blocking");
    assert_eq!(v["connect"], "ok", "{v}");
    assert_eq!(v["reply"], "pong from the service", "{v}");
    assert_eq!(v["domain"], libc::AF_INET, "{v}");
    assert_eq!(v["nonblocking"], false, "{v}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        asked.count(),
        0,
        "the program never reached the port it named"
    );
}

/// A hook that serves a file, or serves a call that is not an IP connect, gets the call
/// refused: the program never holds a file in place of its socket, nor a socket for a send.
#[test]
fn i19_only_sockets_and_only_ip_connects_are_served() {
    let Some(py) = need_python("i19_only_sockets_and_only_ip_connects_are_served") else {
        return;
    };
    let asked = Canary::tcp4();
    let datagrams = Canary::udp4();
    let (tcp, udp) = (asked.port(), datagrams.port());
    // Unconfined, both reach their canary.
    assert_eq!(run_program(&py, None, tcp, "blocking")["connect"], "ok");
    assert_eq!(run_program(&py, None, udp, "udp")["sendto"], "ok");
    assert_eq!(asked.wait_count(1, Duration::from_secs(10)), 1);
    assert_eq!(datagrams.wait_count(1, Duration::from_secs(10)), 1);

    let broker = Broker::builder()
        .hook(move |call: &HookCall<'_>| match port_of(call) {
            Some(p) if p == tcp => {
                let file = std::fs::File::open("/dev/null").expect("/dev/null");
                HookVerdict::Serve(OwnedFd::from(file))
            }
            Some(p) if p == udp => {
                let (program, _embedder) = UnixStream::pair().expect("socketpair");
                HookVerdict::Serve(OwnedFd::from(program))
            }
            _ => HookVerdict::Continue,
        })
        .build()
        .expect("broker");
    let v = run_program(&py, Some(&broker), tcp, "blocking");
    assert_eq!(v["connect"], "EPERM", "a file is not served: {v}");
    let v = run_program(&py, Some(&broker), udp, "udp");
    assert_eq!(v["sendto"], "EPERM", "a send is not served: {v}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(asked.count(), 1, "confined, nothing more reached");
    assert_eq!(datagrams.count(), 1, "confined, nothing more reached");
}

/// A run-time rule names a destination whose connects the host program serves
/// (`SandboxHandle::serve`): its server's socket is put in place; its error is the connect's;
/// a deny entry still comes first, and revoking the rule ends the serving.
#[test]
fn i19_a_run_time_rule_serves_a_destination_with_the_host_programs_sockets() {
    let Some(py) =
        need_python("i19_a_run_time_rule_serves_a_destination_with_the_host_programs_sockets")
    else {
        return;
    };
    let (asked, refusing) = (Canary::tcp4(), Canary::tcp4());
    let broker = Broker::builder().build().expect("broker");
    // Each program waits for a line on stdin, so that the rules are in place first.
    let spawn = |port: u16| {
        let mut cmd = Command::new(&py);
        cmd.args(["-c", PY_SERVED, &port.to_string(), "blocking"])
            .env("NJ_WAIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Sandbox::builder()
            .allow_root(true)
            .policy(Policy::builder("nothing").build().expect("policy"))
            .broker(broker.broker().clone())
            .name("worker")
            .command(cmd)
            .spawn()
            .expect("spawn")
    };
    let finish = |mut child: netjail_client::sandbox::SandboxedChild| -> Value {
        let mut stdin = child.child_mut().stdin.take().expect("stdin");
        writeln!(stdin, "go").expect("go");
        drop(stdin);
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "{e}: {text:?}, stderr {:?}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let serve = |child: &netjail_client::sandbox::SandboxedChild, entry: &str, fail: bool| {
        let handle = broker.sandbox(child.sandbox()).expect("registered");
        handle
            .serve(entry, move |call: &HookCall<'_>| {
                assert_eq!(call.name, "worker");
                if fail {
                    return Err(std::io::Error::from_raw_os_error(libc::EHOSTUNREACH));
                }
                let (program, embedder) = UnixStream::pair()?;
                answer_pings(embedder, "the rule's server");
                Ok(OwnedFd::from(program))
            })
            .expect("serve");
        handle
    };

    let child = spawn(asked.port());
    let handle = serve(&child, &format!("tcp://127.0.0.1:{}", asked.port()), false);
    assert!(handle.rules().unwrap()[0].starts_with("serve connect tcp://127.0.0.1:"));
    let v = finish(child);
    assert_eq!(v["connect"], "ok", "{v}");
    assert_eq!(v["reply"], "pong from the rule's server", "{v}");

    let child = spawn(refusing.port());
    serve(
        &child,
        &format!("tcp://127.0.0.1:{}", refusing.port()),
        true,
    );
    assert_eq!(
        finish(child)["connect"],
        "EHOSTUNREACH",
        "the server's error"
    );

    let child = spawn(asked.port());
    let handle = serve(&child, &format!("tcp://127.0.0.1:{}", asked.port()), false);
    handle
        .deny(&format!("tcp://127.0.0.1:{}", asked.port()))
        .expect("deny");
    assert_eq!(
        finish(child)["connect"],
        "EPERM",
        "a deny entry comes first"
    );

    let child = spawn(asked.port());
    let handle = serve(&child, &format!("tcp://127.0.0.1:{}", asked.port()), false);
    assert!(handle
        .revoke(&format!("tcp://127.0.0.1:{}", asked.port()))
        .unwrap());
    assert_eq!(
        finish(child)["connect"],
        "EPERM",
        "revoked: the policy decides"
    );
    assert!(handle
        .serve("/run/x.sock", |_: &HookCall<'_>| unreachable!())
        .is_err());

    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(asked.count(), 0, "no connect reached the named destination");
    assert_eq!(refusing.count(), 0);
}

/// A Fast Open send is a connect with data: to a destination the hook serves, it is refused,
/// never sent from the program's own socket past the hook's server (the seventh red team's
/// F1: it reached the destination directly). Unconfined it reaches the destination.
#[test]
fn i19_a_fast_open_send_to_a_served_destination_is_refused() {
    let Some(py) = need_python("i19_a_fast_open_send_to_a_served_destination_is_refused") else {
        return;
    };
    let asked = Canary::tcp4();
    let port = asked.port();
    let v = run_program(&py, None, port, "fastopen");
    assert_eq!(v["fastopen"], "ok", "unconfined: {v}");
    assert_eq!(asked.wait_count(1, Duration::from_secs(10)), 1);
    let broker = serving_socketpairs(port);
    let v = run_program(&py, Some(&broker), port, "fastopen");
    assert_eq!(v["fastopen"], "EPERM", "{v}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        asked.count(),
        1,
        "confined, the destination was reached directly"
    );
}
