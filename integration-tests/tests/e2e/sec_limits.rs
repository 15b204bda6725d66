//! Bounds on connections and on `sendmmsg`: Fast Open connects counted under `max_connections`
//! (R3), `sendmmsg` and a sibling's `execve` (F12), `max_connections` past a new network
//! namespace (red team B).

use crate::sec_bounds::{audit_rule, json_line, policy, wait_metric};
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_with_broker, confined_with_broker_cmd, netjail_bin, policy_file, run, spawn, Broker,
    Outcome, TempDir, DEFAULT_TIMEOUT,
};

use crate::{have_setpriv, need_python, need_root};

// R3: Fast Open connects under max_connections.

/// `FASTOPEN PORT N`: N sockets each `sendto(MSG_FASTOPEN)` one byte to 127.0.0.1:PORT, kept
/// open; prints the JSON list of what each got.
const FASTOPEN: &str = r#"
import errno, json, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
held, res = [], []
for _ in range(n):
    s = socket.socket()
    try:
        s.sendto(b'x', socket.MSG_FASTOPEN, ('127.0.0.1', port))
        held.append(s)
        res.append('ok')
    except OSError as e:
        s.close()
        res.append(errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(res))
"#;

/// R3 shown: with `max_connections = 2`, plain connects got 2 of 6 and TCP Fast Open
/// connects (`sendto` with `MSG_FASTOPEN`, which connects) 6 of 6. Now Fast Open counts as
/// the connect it is: 2 of 6, the rest `ENOBUFS` by `limits.max_connections`.
#[test]
fn r3_fast_open_connects_count_under_max_connections() {
    let Some(py) = need_python("r3_fast_open_connects_count_under_max_connections") else {
        return;
    };
    // Connections stay in the accept queue: a peer that closed one with its Fast Open byte
    // unread would reset it, and a reset connection no longer counts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port_num = listener.local_addr().expect("address").port();
    let port = port_num.to_string();
    let list = |out: &Outcome| -> Vec<String> {
        serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {}", out.describe()))
    };
    let unconfined = list(&run(
        Command::new(&py).args(["-c", FASTOPEN, &port, "6"]),
        DEFAULT_TIMEOUT,
    ));
    assert_eq!(unconfined, vec!["ok"; 6], "Fast Open unconfined");
    let broker = Broker::start();
    let p = policy(port_num, &[], "[limits]\nmax_connections = 2\n");
    let confined = list(&confined_with_broker(
        &broker,
        p.as_str(),
        &[&py, "-c", FASTOPEN, &port, "6"],
    ));
    assert_eq!(
        confined,
        vec!["ok", "ok", "ENOBUFS", "ENOBUFS", "ENOBUFS", "ENOBUFS"]
    );
    let e = audit_rule(&broker, "limits.max_connections");
    assert_eq!(e[0]["op"], "sendto", "{e:?}");
}

// ---------------------------------------------------------------------------------------
// F12: sendmmsg and a sibling's execve.

/// The address both program images map their message vector at.
const VECTOR_AT: &str = "0x6f0000000000";

/// Lays out, at a fixed address, a `sendmmsg` vector of 16 messages of 64 KiB each, whose
/// data is MARK repeated and whose `msg_len` fields hold LEN (shared by both images).
const LAYOUT: &str = r#"
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
N, CHUNK = 16, 65536
def layout(at, mark, msg_len):
    size = 0x20000 + N * CHUNK
    got = libc.mmap(at, size, 3, 0x22 | 0x100000, -1, 0)
    if got != at:
        raise SystemExit('mmap at %x gave %s' % (at, got))
    iov_at, data_at = at + 0x10000, at + 0x20000
    for i in range(N):
        ctypes.memmove(data_at + i * CHUNK, mark * (CHUNK // len(mark)), CHUNK)
        ctypes.memmove(iov_at + i * 16, struct.pack('QQ', data_at + i * CHUNK, CHUNK), 16)
        hdr = struct.pack('QIIQQQQII', 0, 0, 0, iov_at + i * 16, 1, 0, 0, 0, 0) + struct.pack('II', msg_len, 0)
        ctypes.memmove(at + i * 64, hdr, 64)
def lens(at):
    return [struct.unpack('I', ctypes.string_at(at + i * 64 + 56, 4))[0] for i in range(N)]
"#;

/// The first image: connects to the unix socket PATH, fills it (the test does not read yet),
/// and calls `sendmmsg` with the OLD! vector from its main thread (the thread-group leader);
/// a second thread waits for the file GO (the test makes it once the call is blocked in the
/// broker) and `execve`s the second image, which takes the leader's pid.
const OLD_IMAGE: &str = r#"
import json, os, socket, sys, threading, time
exec(sys.argv[3])
at, path, go = int(sys.argv[1], 16), sys.argv[2], sys.argv[5]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.setblocking(False)
try:
    while True:
        s.send(b'F' * 65536)
except BlockingIOError:
    pass
s.setblocking(True)
layout(at, b'OLD!', 0)
print(json.dumps({'pid': os.getpid()}), flush=True)
def replace():
    while not os.path.exists(go):
        time.sleep(0.01)
    os.execv(sys.executable, [sys.executable, '-c', sys.argv[4], sys.argv[1], sys.argv[3]])
threading.Thread(target=replace).start()
libc.sendmmsg(s.fileno(), at, N, 0)
time.sleep(60)
"#;

/// The second image: the same vector at the same address, NEW! data and `msg_len` fields of
/// 0xDEADBEEF; prints `{"ready": true}`, watches its `msg_len` fields for 3 s, and prints which
/// changed.
const NEW_IMAGE: &str = r#"
import json, sys, time
exec(sys.argv[2])
at = int(sys.argv[1], 16)
layout(at, b'NEW!', 0xDEADBEEF)
print(json.dumps({'ready': True}), flush=True)
end = time.time() + 3
while time.time() < end:
    time.sleep(0.05)
changed = [i for i, v in enumerate(lens(at)) if v != 0xDEADBEEF]
print(json.dumps({'changed': changed}), flush=True)
"#;

/// F12: `sendmmsg` checked the caller once, then read entries and wrote each `msg_len` back by
/// pid. A sibling thread's `execve` kills the caller (the thread-group leader, blocked in the
/// broker's send of its first entry) and gives its pid to a new program image: the broker
/// then wrote `msg_len` into the new image and sent the new image's data, no pid reuse
/// needed. The test holds the send blocked (it reads nothing) until the new image has laid out
/// the same vector at the same address, then reads everything: the new image's `msg_len`
/// fields must stay as it wrote them, and none of its data may arrive.
#[test]
fn f12_sendmmsg_never_writes_into_a_new_program_image() {
    let Some(py) = need_python("f12_sendmmsg_never_writes_into_a_new_program_image") else {
        return;
    };
    let dir = TempDir::new();
    let path = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let path = path.to_str().unwrap().to_owned();
    let go = dir.path().join("go");
    let broker = Broker::start();
    let p = policy(1, &[&path], "");
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        p.as_str(),
        &[
            &py,
            "-c",
            OLD_IMAGE,
            VECTOR_AT,
            &path,
            LAYOUT,
            NEW_IMAGE,
            go.to_str().unwrap(),
        ],
    ));
    let (mut peer, _) = listener.accept().expect("the sandbox connects");
    let leader = json_line(&sandbox, "old image", Duration::from_secs(30))["pid"]
        .as_i64()
        .expect("pid");
    // The leader is in sendmmsg, and the broker has it: its first send blocked on the full
    // socket. Now the sibling thread replaces the program.
    let in_sendmmsg = || {
        std::fs::read_to_string(format!("/proc/{leader}/syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
            == Some(libc::SYS_sendmmsg)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !in_sendmmsg() {
        assert!(
            Instant::now() < deadline,
            "the leader never called sendmmsg"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let blocked = wait_metric(
        &broker,
        "netjail_calls_in_flight",
        Duration::from_secs(30),
        |v| v >= 1.0,
    );
    assert_eq!(blocked, 1.0, "the sendmmsg never reached the broker");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"go").expect("go file");
    let ready = json_line(&sandbox, "new image", Duration::from_secs(30));
    assert_eq!(ready["ready"], true, "{ready}");
    // The new image runs in the caller's pid: only now does the blocked send go on.
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match peer.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    let changed = json_line(&sandbox, "new image", Duration::from_secs(10));
    let count = |mark: &[u8]| got.windows(4).filter(|w| *w == mark).count();
    eprintln!(
        "f12 (figures): read {} bytes after the exec: {} OLD! and {} NEW! words; the new \
         image saw {changed}",
        got.len(),
        count(b"OLD!"),
        count(b"NEW!")
    );
    assert_eq!(
        changed["changed"],
        serde_json::json!([]),
        "the broker wrote msg_len into the new program image"
    );
    assert_eq!(count(b"NEW!"), 0, "the broker sent the new image's data");
    // The broker did have the call when the program was replaced.
    let handled = broker.wait_audit(1, Duration::from_secs(10), |e| {
        e["message"] == "decision" && e["op"] == "sendmmsg"
    });
    assert!(!handled.is_empty(), "the broker never handled the sendmmsg");
}

// ---- max_connections past a new network namespace (red team B) ---------------------------

/// Attack: `max_connections = 2`, `namespaces = ["net", "user"]`, a sandbox of `nobody`. It
/// makes 8 TCP sockets, connects 2 to an allowed loopback listener, then
/// `unshare(CLONE_NEWUSER | CLONE_NEWNET)` (granted) and connects the 6 others, which belong
/// to the first network namespace and reach the same listener. All 8 connect and stay open;
/// without the `unshare` the 3rd to 8th get `ENOBUFS`.
///
/// Expected: the limit counts the sockets the broker connected for the sandbox, wherever its
/// caller's network namespace is: the 3rd to 8th get `ENOBUFS`.
///
/// The limit read `/proc/TID/net/*` of the calling thread, whose namespace the sandbox had
/// changed, so every counted socket looked closed. It now asks nothing of the caller: each
/// counted socket is an entry of an epoll instance of the limit's, which the kernel removes
/// when the socket's last reference is closed (`limits.rs`).
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
