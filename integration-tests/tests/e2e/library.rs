//! `netjail_client::sandbox` (issue 6): confined children spawned from a library, from a
//! multi-threaded parent, against a real `netjaild` and against a broker in this process.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netjail_client::sandbox::{BrokerRef, Sandbox, SandboxedChild, SpawnError};
use netjail_integration_tests::{Broker, Canary, TempDir};
use netjail_policy::Policy;
use serde_json::Value;

use crate::{need_python, probe};

const WAIT: Duration = Duration::from_secs(5);

/// `python3 -c PY_PORTS PORT...`: one TCP connect to 127.0.0.1 per port, one JSON line each.
const PY_PORTS: &str = r#"
import errno, json, socket, sys
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(('127.0.0.1', int(port)))
        out = {'port': int(port), 'ok': True}
    except OSError as e:
        out = {'port': int(port), 'ok': False, 'err': errno.errorcode.get(e.errno, str(e.errno))}
    s.close()
    print(json.dumps(out), flush=True)
"#;

/// A policy that allows TCP connects to 127.0.0.1:`port` and denies everything else.
fn allow_port(name: &str, port: u16) -> Policy {
    let toml = format!(
        "name = \"{name}\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
    );
    Policy::from_toml(&toml, "test").expect("test policy parses")
}

/// The JSON lines of `out`, by port.
fn by_port(stdout: &str) -> std::collections::HashMap<u16, Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
            (v["port"].as_u64().expect("port") as u16, v)
        })
        .collect()
}

/// A tokio runtime with worker threads and a task ticking on them, so that the test process
/// is multi-threaded and busy while it spawns (the host program of the issue). Returns the
/// runtime and the tick counter.
fn busy_runtime() -> (tokio::runtime::Runtime, Arc<AtomicU64>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    rt.spawn(async move {
        loop {
            t.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    (rt, ticks)
}

/// Spawns `py PY_PORTS a b` under `policy` with `broker` on a thread of its own (entering
/// `rt` first, as a thread of the host program would be), and returns its stdout.
fn run_confined_ports(
    broker: BrokerRef,
    rt: &tokio::runtime::Runtime,
    py: &str,
    name: &str,
    policy: Policy,
    ports: [u16; 2],
) -> std::thread::JoinHandle<(String, netjail_protocol::SandboxId)> {
    let handle = rt.handle().clone();
    let (py, name) = (py.to_owned(), name.to_owned());
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let mut cmd = Command::new(&py);
        cmd.args(["-c", PY_PORTS])
            .arg(ports[0].to_string())
            .arg(ports[1].to_string())
            .stdout(Stdio::piped());
        let child = Sandbox::builder()
            .allow_root(true)
            .policy(policy)
            .broker(broker)
            .name(name)
            .command(cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let sandbox = child.sandbox();
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{:?}", out);
        (String::from_utf8_lossy(&out.stdout).into_owned(), sandbox)
    })
}

/// Two children with different policies, spawned at once from two threads of a busy
/// multi-threaded parent: each reaches its own port only. Unconfined, the same program
/// reaches both (the check can fail).
fn two_policies(test: &str, broker: BrokerRef, rt: &tokio::runtime::Runtime, ticks: &AtomicU64) {
    let Some(py) = need_python(test) else {
        return;
    };
    let (a, b) = (Canary::tcp4(), Canary::tcp4());
    let ports = [a.port(), b.port()];

    let out = Command::new(&py)
        .args(["-c", PY_PORTS])
        .args(ports.map(|p| p.to_string()))
        .output()
        .expect("unconfined python3");
    let free = by_port(&String::from_utf8_lossy(&out.stdout));
    for p in ports {
        assert_eq!(free[&p]["ok"], true, "unconfined must reach {p}: {free:?}");
    }
    assert_eq!(a.wait_count(1, WAIT), 1);
    assert_eq!(b.wait_count(1, WAIT), 1);

    let before = ticks.load(Ordering::Relaxed);
    let ta = run_confined_ports(
        broker.clone(),
        rt,
        &py,
        "lib-a",
        allow_port("a", ports[0]),
        ports,
    );
    let tb = run_confined_ports(broker, rt, &py, "lib-b", allow_port("b", ports[1]), ports);
    let (out_a, id_a) = ta.join().expect("thread a");
    let (out_b, id_b) = tb.join().expect("thread b");
    assert_ne!(id_a, id_b, "two sandboxes");
    assert!(
        ticks.load(Ordering::Relaxed) > before,
        "the runtime kept running"
    );

    let ra = by_port(&out_a);
    assert_eq!(ra[&ports[0]]["ok"], true, "a reaches its port: {out_a}");
    assert_eq!(
        ra[&ports[1]]["err"], "EPERM",
        "a is denied b's port: {out_a}"
    );
    let rb = by_port(&out_b);
    assert_eq!(rb[&ports[1]]["ok"], true, "b reaches its port: {out_b}");
    assert_eq!(
        rb[&ports[0]]["err"], "EPERM",
        "b is denied a's port: {out_b}"
    );
    // One connection each from the unconfined run and one from the allowed child; the
    // denied child's attempt never arrived.
    assert_eq!(a.settled_count(), 2, "port a");
    assert_eq!(b.settled_count(), 2, "port b");
}

#[test]
fn two_children_two_policies_netjaild() {
    let broker = Broker::start();
    let (rt, ticks) = busy_runtime();
    two_policies(
        "library::two_children_two_policies_netjaild",
        BrokerRef::Socket(broker.socket().to_path_buf()),
        &rt,
        &ticks,
    );
}

#[test]
fn two_children_two_policies_in_process() {
    let (rt, ticks) = busy_runtime();
    let broker = {
        let _entered = rt.enter();
        netjail_broker::Broker::new()
    };
    two_policies(
        "library::two_children_two_policies_in_process",
        BrokerRef::InProcess(broker.clone()),
        &rt,
        &ticks,
    );
    // Both sandboxes retire once their children are gone.
    let deadline = Instant::now() + WAIT;
    while broker.sandbox_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(broker.sandbox_count(), 0, "sandboxes retired");
}

/// Stdio configured on the command works as for any child: stdin and stdout piped.
#[test]
fn stdio_pipes_reach_the_child() {
    let broker = Broker::start();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "read line; echo \"got $line\"; echo err >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Sandbox::builder()
        .allow_root(true)
        .policy_spec("deny-all")
        .broker(BrokerRef::Socket(broker.socket().to_path_buf()))
        .command(cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let mut stdin = child.child_mut().stdin.take().expect("stdin piped");
    stdin.write_all(b"hello\n").expect("write");
    drop(stdin);
    let mut stdout = String::new();
    child
        .child_mut()
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut stdout)
        .expect("read");
    let mut stderr = String::new();
    child
        .child_mut()
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr)
        .expect("read");
    assert!(child.wait().expect("wait").success());
    assert_eq!(stdout, "got hello\n");
    assert_eq!(stderr, "err\n");
}

/// Killed through the handle, the child's wait reports the signal.
#[test]
fn killed_child_reports_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let broker = Broker::start();
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let mut child = Sandbox::builder()
        .allow_root(true)
        .policy_spec("deny-all")
        .broker(BrokerRef::Socket(broker.socket().to_path_buf()))
        .command(cmd)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    assert_eq!(child.try_wait().expect("try_wait"), None, "still running");
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// Twenty children spawned at once from four threads: each registered (its own sandbox id)
/// and confined (`Seccomp: 2`, `NoNewPrivs: 1`, a connect the policy does not allow gets
/// EPERM and never arrives). Unconfined, the same command reaches the port.
#[test]
fn twenty_children_from_four_threads() {
    let broker = Broker::start();
    let (rt, _ticks) = busy_runtime();
    let target = Canary::tcp4();
    let port = target.port_str();
    let script = format!(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; {} connect tcp 127.0.0.1 {port}",
        probe()
    );
    let free = Command::new("/bin/sh")
        .args(["-c", &script])
        .output()
        .expect("unconfined");
    let free = String::from_utf8_lossy(&free.stdout).into_owned();
    assert!(
        free.contains("\"ok\":true"),
        "unconfined reaches it: {free}"
    );
    assert_eq!(target.wait_count(1, WAIT), 1);

    let socket = broker.socket().to_path_buf();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (socket, script, handle) = (socket.clone(), script.clone(), rt.handle().clone());
            std::thread::spawn(move || {
                let _entered = handle.enter();
                let children: Vec<SandboxedChild> = (0..5)
                    .map(|i| {
                        let mut cmd = Command::new("/bin/sh");
                        cmd.args(["-c", &script]).stdout(Stdio::piped());
                        Sandbox::builder()
                            .allow_root(true)
                            .policy(allow_port("none", 1))
                            .broker(BrokerRef::Socket(socket.clone()))
                            .name(format!("many-{t}-{i}"))
                            .command(cmd)
                            .spawn()
                            .unwrap_or_else(|e| panic!("spawn {t}/{i}: {e}"))
                    })
                    .collect();
                children
                    .into_iter()
                    .map(|c| {
                        let id = c.sandbox();
                        let out = c.wait_with_output().expect("wait");
                        (id, String::from_utf8_lossy(&out.stdout).into_owned())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("spawning thread"))
        .collect();
    assert_eq!(results.len(), 20);
    let ids: std::collections::HashSet<_> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 20, "twenty sandboxes: {ids:?}");
    for (id, out) in &results {
        let status: Vec<&str> = out.lines().take(2).collect();
        assert!(
            status
                .iter()
                .any(|l| l.split_whitespace().eq(["Seccomp:", "2"])),
            "{id}: {out}"
        );
        assert!(
            status
                .iter()
                .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
            "{id}: {out}"
        );
        let probe: Value = serde_json::from_str(out.lines().nth(2).unwrap_or("null"))
            .unwrap_or_else(|e| panic!("{id}: {e}: {out}"));
        assert_eq!(probe["err"], "EPERM", "{id}: {out}");
    }
    assert_eq!(target.settled_count(), 1, "no confined connect arrived");
}

/// The env variable that makes [`errors_child`] run its body.
const ERRORS_CHILD: &str = "NETJAIL_LIBRARY_ERRORS_CHILD";

/// Error paths, counted in a process of their own (this test binary re-run with one test),
/// so that no other test's fds or children blur the counts.
#[test]
fn errors_leak_no_fds_and_leave_no_children() {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([
            "--exact",
            "library::errors_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ERRORS_CHILD, "1")
        .output()
        .expect("run the errors child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 passed"),
        "the body ran (not filtered out): {text}"
    );
}

/// This process's open fds, by number, with what they are.
fn open_fds() -> Vec<(String, String)> {
    let mut fds: Vec<(String, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Some((e.file_name().to_string_lossy().into_owned(), target))
        })
        .collect();
    // The directory listing's own fd differs from call to call.
    fds.retain(|(_, t)| !t.starts_with("/proc/") || !t.ends_with("/fd"));
    fds.sort();
    fds
}

/// This process's children (any thread's), as pids.
fn children() -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("task").path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out.sort();
    out
}

/// Waits until `f` holds, at most [`WAIT`].
fn eventually(f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A broker socket that welcomes every client and refuses every registration (a policy the
/// real broker would not take), serving on `rt` until the runtime drops. Each connection is
/// closed, with the listener copy it carried, right after the refusal.
fn refusing_broker(rt: &tokio::runtime::Runtime, path: &std::path::Path) {
    use netjail_protocol::{
        recv, send, BrokerMessage, ClientMessage, ErrorCode, ErrorReply, PROTOCOL_VERSION,
    };
    let listener = {
        let _entered = rt.enter();
        tokio_seqpacket::UnixSeqpacketListener::bind(path).expect("bind the refusing broker")
    };
    rt.spawn(async move {
        let mut listener = listener;
        while let Ok(sock) = listener.accept().await {
            if recv::<ClientMessage>(&sock).await.is_err() {
                continue;
            }
            let welcome = BrokerMessage::Welcome {
                version: PROTOCOL_VERSION,
                broker: "refusing".into(),
            };
            if send(&sock, &welcome, &[]).await.is_err() {
                continue;
            }
            let refusal = BrokerMessage::Error(ErrorReply {
                code: ErrorCode::BadPolicy,
                message: "refused by the test".into(),
            });
            if let Ok(register) = recv::<ClientMessage>(&sock).await {
                drop(register.fds);
                let _ = send(&sock, &refusal, &[]).await;
            }
        }
    });
}

/// The body of [`errors_leak_no_fds_and_leave_no_children`]; does nothing unless run by it.
#[test]
fn errors_child() {
    if std::env::var_os(ERRORS_CHILD).is_none() {
        return;
    }
    let broker = Broker::start();
    let (rt, _ticks) = busy_runtime();
    let in_process = {
        let _entered = rt.enter();
        netjail_broker::Broker::new()
    };
    let dir = TempDir::new();
    let nothing: PathBuf = dir.path().join("nobody-listens.sock");
    let refusing: PathBuf = dir.path().join("refusing.sock");
    refusing_broker(&rt, &refusing);
    let fds = open_fds();
    let kids = children();
    assert_eq!(kids, vec![broker.pid()], "only netjaild runs");
    let spawn = |broker: BrokerRef, cmd: Command| {
        let _entered = rt.enter();
        Sandbox::builder()
            .allow_root(true)
            .policy_spec("deny-all")
            .broker(broker)
            .command(cmd)
            .spawn()
    };
    let settled = |what: &str| {
        assert!(
            eventually(|| open_fds() == fds),
            "{what}: fds leaked: before {fds:?}, after {:?}",
            open_fds()
        );
        assert_eq!(children(), kids, "{what}: a child was left");
    };

    let missing = "/nonexistent/netjail-no-such-program";
    for (via, target) in [
        ("netjaild", BrokerRef::Socket(broker.socket().to_path_buf())),
        ("in-process", BrokerRef::InProcess(in_process.clone())),
    ] {
        let what = format!("missing program via {via}");
        let err = spawn(target, Command::new(missing)).expect_err(&what);
        match &err {
            SpawnError::Exec { program, source } => {
                assert_eq!(program, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err}");
            }
            other => panic!("{what}: expected Exec, got {other:?}"),
        }
        assert!(err.to_string().contains(missing), "{err}");
        assert!(
            eventually(|| in_process.sandbox_count() == 0),
            "the in-process sandbox retires"
        );
        settled(&what);
    }

    let err =
        spawn(BrokerRef::Socket(nothing.clone()), Command::new("true")).expect_err("no broker");
    assert!(matches!(err, SpawnError::NoBroker { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("no broker listens at ") && msg.contains(&nothing.display().to_string()),
        "{msg}"
    );
    settled("no broker");

    // The broker refuses after the child confined itself: the child is killed and reaped.
    let err =
        spawn(BrokerRef::Socket(refusing.clone()), Command::new("true")).expect_err("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, SpawnError::Broker { .. }) && msg.contains("refused by the test"),
        "{err:?}"
    );
    settled("broker refuses");

    // std fails in the child before the confine step (no such working directory).
    let mut cmd = Command::new("true");
    cmd.current_dir("/nonexistent/netjail-no-such-dir");
    let err = spawn(BrokerRef::Socket(broker.socket().to_path_buf()), cmd)
        .expect_err("bad working directory");
    assert!(
        matches!(&err, SpawnError::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    settled("bad working directory");

    // Dropped unreaped, the handle kills and reaps its child.
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let child = spawn(BrokerRef::Socket(broker.socket().to_path_buf()), cmd).expect("sleep");
    assert!(children().contains(&(child.pid() as i32)));
    drop(child);
    settled("dropped handle");

    // And the success path leaves nothing once the child is reaped.
    let mut ok = spawn(
        BrokerRef::InProcess(in_process.clone()),
        Command::new("true"),
    )
    .expect("true");
    assert!(ok.wait().expect("wait").success());
    assert!(eventually(|| in_process.sandbox_count() == 0));
    settled("success");
}
