//! Sandboxes whose listener only the broker holds (here a self-confined `nj-zygote`) outlive
//! a restart of `netjaild` when the service manager keeps their listeners in its file
//! descriptor store (issue 8; `broker/src/fdstore.rs`). No systemd is booted: a python3
//! stand-in plays it.
//!
//! The stand-in binds a `SOCK_DGRAM` socket and names it in `NOTIFY_SOCKET`, forks and execs
//! netjaild, and reports on stdout, one JSON line each, what it sees: the notifications (with
//! how many fds came along), and netjaild's exit. It keeps the fds of `FDSTORE=1` under their
//! `FDNAME`, closes them on `FDSTOREREMOVE=1`, and when the test makes the file `GATE-K`
//! after the K-th netjaild exited, it starts the next one with the stored fds at 3, 4, ...
//! and `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` set, as systemd does. (systemd also drops
//! a stored fd that reports `POLLHUP`; the stand-in does not, which the broker must cope with.)

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    allow_connect_policy, netjail_bin, netjaild_bin, policy_file, run, spawn, sys, Canary, Outcome,
    Running, TempDir,
};
use serde_json::Value;

use crate::{need_python, probe};

const WAIT: Duration = Duration::from_secs(10);

/// `python3 -c MANAGER NETJAILD NOTIFY_PATH|- GATE [--prestore NAME=PATH]... -- ARGS...`.
/// NOTIFY_PATH `-`: no `NOTIFY_SOCKET` (nothing is stored). `--prestore` puts the file PATH
/// in the store under NAME before the first start.
const MANAGER: &str = r#"
import fcntl, json, os, select, socket, sys
argv = sys.argv[1:]
split = argv.index('--')
netjaild, notify_path, gate, opts, args = argv[0], argv[1], argv[2], argv[3:split], argv[split + 1:]
store = []
def say(**kw):
    print(json.dumps(kw), flush=True)
for i in range(0, len(opts), 2):
    name, path = opts[i + 1].split('=', 1)
    store.append((name, os.open(path, os.O_RDONLY)))
ns = None
if notify_path != '-':
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify_path)
def start():
    fds = [fd for _, fd in store]
    names = [n for n, _ in store]
    pid = os.fork()
    if pid == 0:
        try:
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)
            os.closerange(3 + len(high), 65536)
            if ns is not None:
                os.environ['NOTIFY_SOCKET'] = notify_path
            if fds:
                os.environ['LISTEN_FDS'] = str(len(fds))
                os.environ['LISTEN_PID'] = str(os.getpid())
                os.environ['LISTEN_FDNAMES'] = ':'.join(names)
            os.execv(netjaild, [netjaild] + args)
        finally:
            os._exit(127)
    say(event='started', pid=pid, fds=len(fds), names=names)
    return pid
pid, k = start(), 0
while True:
    ready = select.select([ns], [], [], 0.02)[0] if ns is not None else select.select([], [], [], 0.02)[0]
    if ready:
        msg, fds, _, _ = socket.recv_fds(ns, 4096, 16)
        text = msg.decode()
        fields = dict(l.split('=', 1) for l in text.split('\n') if '=' in l)
        name = fields.get('FDNAME', 'stored')
        keep = []
        if fields.get('FDSTORE') == '1':
            keep = fds
            store.extend((name, fd) for fd in fds)
        elif fields.get('FDSTOREREMOVE') == '1':
            for n, fd in store:
                if n == name:
                    os.close(fd)
            store[:] = [(n, fd) for n, fd in store if n != name]
        for fd in fds:
            if fd not in keep:
                os.close(fd)
        say(event='notify', state=text, fds=len(fds), stored=[n for n, _ in store])
    if pid is not None:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            say(event='exited', pid=pid, code=os.waitstatus_to_exitcode(status))
            pid = None
    elif os.path.exists('%s-%d' % (gate, k + 1)):
        k += 1
        pid = start()
"#;

/// The stand-in service manager and the netjaild it runs.
struct Manager {
    dir: TempDir,
    process: Running,
    /// Every event seen so far.
    events: Vec<Value>,
    /// The pid of the netjaild running now.
    pid: i32,
    starts: u32,
}

impl Manager {
    /// Starts the stand-in with netjaild at `{dir}/broker.sock`; `notify`: whether it sets
    /// `NOTIFY_SOCKET`; `prestore`: fds stored before the first start (`NAME=PATH`).
    fn start(py: &str, notify: bool, prestore: &[&str], extra: &[&str]) -> Manager {
        let dir = TempDir::new();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let mut cmd = Command::new(py);
        cmd.args(["-c", MANAGER])
            .arg(netjaild_bin())
            .arg(if notify { at("notify") } else { "-".into() })
            .arg(at("gate"));
        for p in prestore {
            cmd.args(["--prestore", p]);
        }
        cmd.arg("--");
        for (flag, name) in [
            ("--socket", "broker.sock"),
            ("--control", "control.sock"),
            ("--overlay", "overlay"),
            ("--state-dir", "state"),
        ] {
            cmd.arg(flag).arg(at(name));
        }
        cmd.args(extra).args(["--log-format", "json"]);
        let process = spawn(&mut cmd);
        let mut m = Manager {
            dir,
            process,
            events: Vec::new(),
            pid: 0,
            starts: 0,
        };
        m.pid = m.started();
        m
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The next event `pred` accepts (earlier ones are kept in `events`).
    fn wait_event(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.process.read_line(left) else {
                panic!(
                    "the stand-in saw no {what} within {WAIT:?}; events: {:?}\n--- stderr ---\n{}",
                    self.events,
                    self.log()
                );
            };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            self.events.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }

    /// Waits for the next netjaild to start and serve (its registration socket accepts);
    /// returns its pid.
    fn started(&mut self) -> i32 {
        let ev = self.wait_event("start", |v| v["event"] == "started");
        let pid = ev["pid"].as_i64().expect("a pid") as i32;
        let socket = self.path("broker.sock");
        let deadline = Instant::now() + WAIT;
        while sys::seqpacket_connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline && std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "netjaild did not come up\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        pid
    }

    /// Waits for the notification whose lines include every one of `lines`.
    fn notified(&mut self, lines: &[&str]) -> Value {
        let what = lines.join(" ");
        self.wait_event(&what, |v| {
            v["event"] == "notify"
                && lines
                    .iter()
                    .all(|l| v["state"].as_str().unwrap_or("").lines().any(|x| x == *l))
        })
    }

    /// Kills netjaild with SIGKILL (by pid) and waits for the stand-in to see it exit.
    fn kill(&mut self) {
        sys::kill(self.pid, libc::SIGKILL).expect("kill netjaild");
        self.exited();
    }

    /// Waits for netjaild's exit; returns its code (negative: the signal).
    fn exited(&mut self) -> i64 {
        let pid = self.pid;
        let ev = self.wait_event("exit", |v| v["event"] == "exited" && v["pid"] == pid);
        ev["code"].as_i64().expect("a code")
    }

    /// Starts the next netjaild, as a service manager restarting the service would.
    fn start_again(&mut self) {
        self.starts += 1;
        let gate = self.path(&format!("gate-{}", self.starts));
        std::fs::write(gate, b"").expect("gate file");
        self.pid = self.started();
    }

    fn log(&self) -> String {
        self.process.stderr_so_far()
    }
}

/// Opens the zygote's gate before its `i`-th connect.
fn open_gate(dir: &Path, i: usize) {
    std::fs::write(dir.join(format!("zgate-{i}")), b"").expect("gate file");
}

/// A self-confined `nj-zygote` registered with the manager's netjaild, gated before each
/// connect: `(process, sandbox id)`.
fn zygote(m: &Manager, policy: &str, ports: &[String]) -> (Running, String) {
    let z = spawn(
        Command::new(env!("CARGO_BIN_EXE_nj-zygote"))
            .arg(m.path("broker.sock"))
            .arg(policy)
            .arg("--gate")
            .arg(m.path("zgate"))
            .args(ports),
    );
    let mut sandbox = None;
    while sandbox.is_none() {
        let line = z
            .read_line(WAIT)
            .unwrap_or_else(|| panic!("the zygote did not confine itself\n{}", m.log()));
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        if v["step"] == "confine" {
            assert_eq!(v["ok"], true, "{v}\n{}", m.log());
            sandbox = v["sandbox"].as_str().map(str::to_owned);
        }
    }
    let listeners = z.read_line(WAIT).expect("the listeners line");
    assert!(listeners.contains("\"count\":0"), "{listeners}");
    (z, sandbox.expect("an id"))
}

/// The zygote's next connect line: `(port, result)`.
fn next_connect(z: &Running, timeout: Duration) -> Option<(u64, String)> {
    let line = z.read_line(timeout)?;
    let v: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["step"], "connect", "{v}");
    Some((
        v["port"].as_u64().expect("a port"),
        v["result"].as_str().expect("a result").to_owned(),
    ))
}

/// Waits until `path` is gone, at most 10 s.
fn gone(path: &Path) -> bool {
    let deadline = Instant::now() + WAIT;
    while path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    !path.exists()
}

/// netjaild keeps a self-confined zygote's listener in the service manager's store
/// (`FDSTORE=1`, `FDNAME=sb-N`, a 0600 meta file beside the journal). Killed with SIGKILL, it
/// leaves the zygote's next call waiting (nothing reaches the listener while no broker runs);
/// the next netjaild, handed the stored fd, decides it: the allowed connect succeeds exactly
/// once, the denied one gets EPERM, and so do the zygote's child's. When the zygote's tasks
/// have all exited, netjaild removes the fd from the store (`FDSTOREREMOVE=1`), the meta
/// file and the journal.
#[test]
fn a_self_confined_sandbox_outlives_a_killed_broker_through_the_fd_store() {
    let Some(py) = need_python("a_self_confined_sandbox_outlives_a_killed_broker") else {
        return;
    };
    let (allowed, denied) = (Canary::tcp4(), Canary::tcp4());
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
    let mut m = Manager::start(&py, true, &[], &[]);
    m.notified(&["READY=1"]);
    let ports = [allowed.port_str(), denied.port_str()];
    let (z, sandbox) = zygote(&m, policy.as_str(), &ports);
    let stored = m.notified(&["FDSTORE=1", &format!("FDNAME={sandbox}")]);
    assert_eq!(stored["fds"], 1, "{stored}");
    let state = m.path("state");
    let meta = state.join(format!("{sandbox}.meta"));
    let mode = std::fs::metadata(&meta)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", meta.display(), m.log()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let record: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(record["pid"], z.pid(), "{record}");
    assert_eq!(record["policy"]["from"], "client", "{record}");
    assert!(state.join(format!("{sandbox}.journal")).exists());

    m.kill();
    open_gate(m.dir.path(), 0);
    assert_eq!(
        next_connect(&z, Duration::from_millis(500)),
        None,
        "the zygote's connect was answered while no broker ran"
    );
    assert_eq!(
        allowed.settled_count(),
        0,
        "a connect passed with no broker"
    );

    m.start_again();
    let taken = m.events.last().cloned().expect("the start event");
    assert_eq!(taken["names"], serde_json::json!([sandbox]), "{taken}");
    assert_eq!(
        next_connect(&z, WAIT),
        Some((u64::from(allowed.port()), "ok".into())),
        "{}",
        m.log()
    );
    assert_eq!(
        allowed.settled_count(),
        1,
        "the allowed connect, exactly once"
    );
    open_gate(m.dir.path(), 1);
    assert_eq!(
        next_connect(&z, WAIT),
        Some((u64::from(denied.port()), "EPERM".into()))
    );
    let out = z.wait(WAIT);
    let child: Vec<&str> = out.stdout.lines().filter(|l| l.contains("child")).collect();
    assert!(
        child.iter().any(|l| l.contains("\"ok\"")) && child.iter().any(|l| l.contains("EPERM")),
        "{}",
        out.describe()
    );
    assert_eq!(allowed.settled_count(), 2, "the child's allowed connect");
    assert_eq!(denied.count(), 0);
    assert!(
        m.log()
            .contains("sandbox taken back from the service manager's fd store"),
        "{}",
        m.log()
    );

    let removed = m.notified(&["FDSTOREREMOVE=1", &format!("FDNAME={sandbox}")]);
    assert_eq!(removed["stored"], serde_json::json!([]), "{removed}");
    assert!(gone(&meta), "{} stays", meta.display());
    assert!(gone(&state.join(format!("{sandbox}.journal"))));
}

/// The same without a service manager that keeps fds (no `NOTIFY_SOCKET`): the broker had
/// the only copy of the listener, so once it is killed the zygote's call fails with ENOSYS
/// (fail closed). This is what the store prevents, and shows the test above can fail.
#[test]
fn without_the_fd_store_a_killed_broker_fails_the_zygotes_calls() {
    let Some(py) = need_python("without_the_fd_store_a_killed_broker_fails") else {
        return;
    };
    let allowed = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
    let mut m = Manager::start(&py, false, &[], &[]);
    let (z, sandbox) = zygote(&m, policy.as_str(), &[allowed.port_str()]);
    m.kill();
    assert!(!m.path("state").join(format!("{sandbox}.meta")).exists());
    open_gate(m.dir.path(), 0);
    assert_eq!(
        next_connect(&z, WAIT),
        Some((u64::from(allowed.port()), "ENOSYS".into()))
    );
    assert_eq!(allowed.settled_count(), 0);
}

/// A child spawned by a program with the library (`Sandbox::builder`, `BrokerRef::Socket`):
/// the program keeps no copy of the listener, so netjaild stores it (a plain `Register`,
/// unlike `netjail run`'s `RegisterKeeping`). After a SIGKILL of netjaild the child's connect
/// waits, the next netjaild takes the listener back and decides it (allowed once, denied
/// EPERM). Without the store (NOTIFY_SOCKET unset) the same call fails with ENOSYS.
#[test]
fn a_library_child_outlives_a_killed_broker_through_the_fd_store() {
    use std::io::{BufRead, Write};
    let Some(py) = need_python("a_library_child_outlives_a_killed_broker") else {
        return;
    };
    for store in [true, false] {
        let (allowed, denied) = (Canary::tcp4(), Canary::tcp4());
        let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
        let mut m = Manager::start(&py, store, &[], &[]);
        let mut cmd = Command::new(&py);
        cmd.args(["-c", netjail_integration_tests::PY_CONNECT_ON_DEMAND])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut child = netjail_client::sandbox::Sandbox::builder()
            .allow_root(true)
            .policy_spec(policy.as_str())
            .broker(netjail_client::sandbox::BrokerRef::Socket(
                m.path("broker.sock"),
            ))
            .command(cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}\n{}", m.log()));
        let sandbox = child.sandbox().to_string();
        let mut stdin = child.child_mut().stdin.take().expect("stdin");
        let mut stdout = std::io::BufReader::new(child.child_mut().stdout.take().expect("stdout"));
        let mut ask = |port: u16| writeln!(stdin, "{port}").expect("ask");
        let mut answer = || -> Value {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("answer");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
        };
        ask(allowed.port());
        assert_eq!(answer()["ok"], true, "{}", m.log());
        ask(denied.port());
        assert_eq!(answer()["err"], "EPERM");
        if store {
            let stored = m.notified(&["FDSTORE=1", &format!("FDNAME={sandbox}")]);
            assert_eq!(stored["fds"], 1, "{stored}");
        }
        m.kill();
        ask(allowed.port());
        if store {
            // The call waits while no broker runs; the next one decides it.
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(
                allowed.settled_count(),
                1,
                "nothing passes while no broker runs"
            );
            m.start_again();
            let v = answer();
            assert_eq!(v["ok"], true, "{v}\n{}", m.log());
            assert_eq!(
                allowed.settled_count(),
                2,
                "decided once, by the next broker"
            );
            ask(denied.port());
            assert_eq!(answer()["err"], "EPERM");
        } else {
            let v = answer();
            assert_eq!(v["err"], "ENOSYS", "{v}");
            assert_eq!(allowed.settled_count(), 1);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(denied.settled_count(), 0);
    }
}

/// A runc container (`listenerPath` names netjaild's OCI socket): runc hands the broker its
/// only copy of the listener, which goes to the store with the policy's directory and name.
/// After a SIGKILL of netjaild the container's next connect waits; the next netjaild takes
/// the listener back, reads the policy again from the directory, and decides the call:
/// allowed once, denied refused.
#[test]
fn a_runc_container_outlives_a_killed_broker_through_the_fd_store() {
    let test = "a_runc_container_outlives_a_killed_broker_through_the_fd_store";
    let Some(py) = need_python(test) else {
        return;
    };
    if !crate::need_root(test) || !crate::oci::have_runc(test) {
        return;
    }
    let (allowed, denied) = (Canary::tcp4(), Canary::tcp4());
    let policies_dir = TempDir::new();
    let allowed_at = format!("127.0.0.1:{}", allowed.port());
    let policy = crate::oci::policies(
        policies_dir.path(),
        "web",
        &crate::oci::allow_policy("web", &allowed_at),
    );
    let sockets = TempDir::new();
    let oci = sockets.path().join("oci.sock");
    let extra = [
        "--oci-socket",
        oci.to_str().expect("utf-8"),
        "--policies",
        policies_dir.path().to_str().expect("utf-8"),
    ];
    let mut m = Manager::start(&py, true, &[], &extra);
    m.notified(&["READY=1"]);
    let io = TempDir::new();
    let out = run(
        Command::new("mkfifo").arg(io.path().join("in")),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "mkfifo: {}", out.describe());
    let bundle = crate::oci::Bundle::new(
        &["sh", "-c", crate::oci_agent::ON_DEMAND_SCRIPT],
        false,
        None,
    );
    bundle.with_probe(io.path());
    bundle.patch(&policy, &oci);
    bundle.start_detached();
    assert_eq!(
        crate::oci_agent::nc_on_demand(io.path(), allowed.port()),
        "0",
        "{}",
        m.log()
    );
    assert_eq!(
        crate::oci_agent::nc_on_demand(io.path(), denied.port()),
        "1"
    );
    let stored = m.notified(&["FDSTORE=1"]);
    assert_eq!(stored["fds"], 1, "{stored}");
    m.kill();
    let dir = io.path().to_path_buf();
    let port = allowed.port();
    let pending = std::thread::spawn(move || crate::oci_agent::nc_on_demand(&dir, port));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        allowed.settled_count(),
        1,
        "nothing passes while no broker runs"
    );
    m.start_again();
    assert_eq!(
        pending.join().expect("the connect thread"),
        "0",
        "{}",
        m.log()
    );
    assert_eq!(
        allowed.settled_count(),
        2,
        "decided once, by the next broker"
    );
    assert_eq!(
        crate::oci_agent::nc_on_demand(io.path(), denied.port()),
        "1"
    );
    assert_eq!(denied.settled_count(), 0);
    assert!(
        m.log()
            .contains("sandbox taken back from the service manager's fd store"),
        "{}",
        m.log()
    );
}

/// An fd handed back under a stored listener's name (`sb-5`) that is not a seccomp listener
/// (`/dev/null`) is refused with a message, closed, and removed from the store; netjaild
/// serves on.
#[test]
fn a_stored_fd_that_is_not_a_listener_is_refused_and_netjaild_serves_on() {
    let Some(py) = need_python("a_stored_fd_that_is_not_a_listener_is_refused") else {
        return;
    };
    let mut m = Manager::start(&py, true, &["sb-5=/dev/null"], &[]);
    // Refused before netjaild serves, so before it says READY=1.
    let removed = m.notified(&["FDSTOREREMOVE=1", "FDNAME=sb-5"]);
    assert_eq!(removed["stored"], serde_json::json!([]), "{removed}");
    m.notified(&["READY=1"]);
    // The log comes on another pipe than the events: wait for it to be read.
    let said = |log: &str| {
        log.contains("not a seccomp listener: refused and closed") && log.contains("/dev/null")
    };
    let deadline = Instant::now() + WAIT;
    while !said(&m.log()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = m.log();
    assert!(said(&log), "{log}");
    // Closed: none of netjaild's fds from 3 on is /dev/null.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", m.pid)).expect("netjaild's fds");
    for entry in fds.flatten() {
        let n: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        assert!(
            n < 3 || target != Path::new("/dev/null"),
            "fd {n} is still /dev/null"
        );
    }
    let allowed = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
    let out = run(
        Command::new(netjail_bin())
            .args(["run", "--allow-root", "--no-embedded", "--broker"])
            .arg(m.path("broker.sock"))
            .args(["--policy", policy.as_str(), "--"])
            .args([probe(), "connect", "tcp", "127.0.0.1", &allowed.port_str()]),
        WAIT,
    );
    assert_eq!(out.json()["ok"], true, "{}\n{}", out.describe(), m.log());
}

/// Whether a thread of process `pid` is blocked in `connect(2)` now.
fn in_connect(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            == Some(libc::SYS_connect.to_string())
    })
}

/// SIGTERM while netjaild performs a call (a unix connect that waits for room in a full
/// backlog, on the blocking pool): netjaild says STOPPING=1, waits for the call, answers it,
/// and exits 0. The launcher gives up at once when its broker goes (`--reconnect-for 10ms`), so
/// a broker that left without answering would fail the call with ENOSYS.
#[test]
fn sigterm_answers_the_call_in_progress_and_exits_0() {
    let Some(py) = need_python("sigterm_answers_the_call_in_progress") else {
        return;
    };
    let mut m = Manager::start(&py, true, &[], &[]);
    m.notified(&["READY=1"]);
    let path = m.path("full.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    sys::listen(&listener, 0).expect("listen 0");
    // Backlog 0 takes one connection; the next connect waits for an accept.
    let _first = UnixStream::connect(&path).expect("the first connection");
    let policy = policy_file(&format!(
        "name = \"u\"\n[[allow]]\nunix = [\"{}\"]\n",
        path.display()
    ));
    let confined = spawn(
        Command::new(netjail_bin())
            .args([
                "run",
                "--allow-root",
                "--no-embedded",
                "--reconnect-for",
                "10ms",
                "--broker",
            ])
            .arg(m.path("broker.sock"))
            .args(["--policy", policy.as_str(), "--"])
            .args([probe(), "unix", path.to_str().expect("utf-8")]),
    );
    let deadline = Instant::now() + WAIT;
    while !in_connect(m.pid) {
        assert!(
            Instant::now() < deadline,
            "netjaild never blocked in connect\n{}\n--- netjail run ---\n{}",
            m.log(),
            confined.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sys::kill(m.pid, libc::SIGTERM).expect("SIGTERM");
    m.notified(&["STOPPING=1"]);
    // Room in the backlog: the broker's connect completes.
    let (_accepted, _) = listener.accept().expect("accept");
    let out: Outcome = confined.wait(WAIT);
    assert_eq!(out.json()["ok"], true, "{}\n{}", out.describe(), m.log());
    assert_eq!(m.exited(), 0, "{}", m.log());
    assert!(
        m.log().contains("the calls in progress were answered"),
        "{}",
        m.log()
    );
}
