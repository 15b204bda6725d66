//! End-to-end test harness for netjail: real programs, the real kernel, the real binaries.
//!
//! The tests in `tests/e2e/` run programs (the `nj-probe` binary of this crate, `python3`,
//! `curl`) twice: unconfined, to show that the probe works and the attack would succeed, and
//! under `netjail run`, to show that the sandbox stops it. This library holds what they share:
//!
//! - [`netjail_bin`] / [`netjaild_bin`]: the workspace's built binaries (run
//!   `cargo build --workspace` first);
//! - [`run`] / [`spawn`]: child processes with a time bound, killed by pid when it runs out;
//! - [`confined`], [`confined_with_broker`], [`unconfined`]: the three ways a test runs a command;
//! - [`policy_file`]: a policy TOML in a temporary file;
//! - [`Canary`]: loopback listeners that count who reached them;
//! - [`Broker`]: a `netjaild` child with its JSON audit log captured;
//! - [`skip`]: says `SKIP name: reason` out loud, and fails instead when `NETJAIL_STRICT=1`.
//! - [`tmux::Tmux`]: a terminal program in a private tmux server, typed into and read back.
//!
//! All traffic goes to loopback only, and every listener binds port 0.
//!
//! ```no_run
//! use std::time::Duration;
//! use netjail_integration_tests::{confined, policy_file, Canary};
//!
//! let canary = Canary::tcp4();
//! let policy = policy_file(&format!(
//!     "name = \"t\"\ndefault = \"deny\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
//!     canary.port()
//! ));
//! let port = canary.port().to_string();
//! let out = confined(policy.as_str(), &["/path/to/nj-probe", "connect", "tcp", "127.0.0.1", &port]);
//! assert_eq!(out.json()["ok"], true);
//! assert_eq!(canary.wait_count(1, Duration::from_secs(5)), 1);
//! ```

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

mod broker;
mod canary;
pub mod dns;
pub mod garbage;
pub mod probe;
pub mod sys;
pub mod tmux;

pub use broker::{parse_metrics, Broker};
pub use canary::Canary;

/// The time bound of one confined or unconfined command unless a test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// True when `NETJAIL_STRICT=1`: a skipped test is a failed test.
pub fn strict() -> bool {
    std::env::var("NETJAIL_STRICT").is_ok_and(|v| v == "1")
}

/// Reports that test `name` cannot run here and why. Prints `SKIP name: reason` on stderr
/// (and, when `NETJAIL_SKIP_LOG` names a file, appends the line there); panics instead when
/// `NETJAIL_STRICT=1`. The caller returns right after.
pub fn skip(name: &str, reason: &str) {
    let line = format!("SKIP {name}: {reason}");
    if strict() {
        panic!("{line} (NETJAIL_STRICT=1 turns skips into failures)");
    }
    eprintln!("{line}");
    if let Ok(log) = std::env::var("NETJAIL_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// `target/<profile>/`: the directory holding the workspace's binaries, found from the running
/// test executable, which lives in `target/<profile>/deps/`.
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("test executable has a directory");
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

fn workspace_bin(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    assert!(
        path.is_file(),
        "{name} not found at {}: run `cargo build --workspace` (same profile as the tests) first",
        path.display()
    );
    path
}

/// The launcher binary `netjail`, built by `cargo build --workspace`.
pub fn netjail_bin() -> PathBuf {
    workspace_bin("netjail")
}

/// The broker binary `netjaild`, built by `cargo build --workspace`.
pub fn netjaild_bin() -> PathBuf {
    workspace_bin("netjaild")
}

/// Finds an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A python3 program (`python3 -c PY_CONNECT_ON_DEMAND`) that connects to 127.0.0.1:PORT for
/// each PORT line read on stdin and answers one JSON line per attempt: `{"ok": true}`, or
/// `{"ok": false, "err": "EPERM"}` with the errno's name. Tests drive one confined process
/// call by call with it.
pub const PY_CONNECT_ON_DEMAND: &str = r#"
import errno, json, socket, sys
for line in sys.stdin:
    port = int(line)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(('127.0.0.1', port))
        out = {'ok': True}
    except OSError as e:
        out = {'ok': False, 'err': errno.errorcode.get(e.errno, str(e.errno))}
    s.close()
    print(json.dumps(out), flush=True)
"#;

/// The real python3 interpreter (`sys.executable`, not a pyenv shim), if there is one.
pub fn python3() -> Option<PathBuf> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let py = which("python3")?;
        let mut cmd = Command::new(py);
        cmd.args(["-c", "import sys; print(sys.executable)"]);
        let out = run(&mut cmd, Duration::from_secs(20));
        let exe = PathBuf::from(out.stdout.trim());
        (out.status.success() && exe.is_file()).then_some(exe)
    })
    .clone()
}

/// The number of open fds of process `pid` (0 when it cannot be read).
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The number of threads of process `pid` (entries of `/proc/PID/task`; 0 when it cannot be
/// read).
pub fn thread_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count)
}

/// A size field of `/proc/PID/status` in KiB (`"VmRSS"`, `"VmHWM"`...); 0 when it cannot be
/// read.
pub fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until `pid` has at most `baseline` threads, for `timeout` at most; returns the count
/// then.
pub fn threads_back_to(pid: i32, baseline: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let now = thread_count(pid);
        if now <= baseline || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fd count of `pid` once it has held still for 300 ms (waiting at most 5 s): a baseline
/// that work still in flight in a freshly started broker does not inflate.
pub fn settled_fd_count(pid: i32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = fd_count(pid);
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = fd_count(pid);
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    last
}

/// Waits until `pid` holds at most `baseline` fds, for `timeout` at most; returns the count
/// then (more than `baseline`: something was kept).
pub fn fds_back_to(pid: i32, baseline: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let now = fd_count(pid);
        if now <= baseline || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound once to get it from the kernel, then
/// released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory `/tmp/netjail-test-<unique>/`, removed with its contents on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory.
    pub fn new() -> TempDir {
        let path = PathBuf::from(format!("/tmp/netjail-test-{}", unique()));
        std::fs::create_dir(&path).expect("create temp dir under /tmp");
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A temporary file, removed on drop.
pub struct TempPath {
    path: PathBuf,
}

impl TempPath {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its path as UTF-8 (temporary paths always are).
    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes a policy (TOML text) to `/tmp/netjail-policy-<unique>.toml`.
pub fn policy_file(toml_text: &str) -> TempPath {
    let path = PathBuf::from(format!("/tmp/netjail-policy-{}.toml", unique()));
    std::fs::write(&path, toml_text).expect("write policy file");
    TempPath { path }
}

/// A policy that denies by default and allows exactly the given `connect` endpoints.
pub fn allow_connect_policy(endpoints: &[String]) -> TempPath {
    let list: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    policy_file(&format!(
        "name = \"test\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [{}]\n",
        list.join(", ")
    ))
}

/// What a finished child did.
#[derive(Debug)]
pub struct Outcome {
    /// The command line, for messages.
    pub cmdline: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
    /// The last stdout line that parses as JSON (the probe prints exactly one).
    pub json: Option<Value>,
}

impl Outcome {
    /// The JSON line; panics with the whole outcome when there is none.
    pub fn json(&self) -> &Value {
        match &self.json {
            Some(v) => v,
            None => panic!("no JSON line on stdout of {}", self.describe()),
        }
    }

    /// The exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed it, if any.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal()
    }

    /// True if the process died of `sig` — either directly, or reported by a launcher in the
    /// shell's way as exit status 128 + sig.
    pub fn died_of(&self, sig: i32) -> bool {
        self.signal() == Some(sig) || self.code() == Some(128 + sig)
    }

    /// A multi-line description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "`{}`: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }

    /// Panics unless the command exited with status 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.status.success(), "command failed: {}", self.describe());
        self
    }
}

fn last_json_line(s: &str) -> Option<Value> {
    s.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Collects a pipe into a shared buffer on a thread.
fn collect<R: Read + Send + 'static>(
    mut r: R,
    sink: Arc<Mutex<Vec<u8>>>,
    lines: Option<std::sync::mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut pending = Vec::new();
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                    if let Some(tx) = &lines {
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=i).collect();
                            let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_owned());
                        }
                    }
                }
            }
        }
    })
}

/// A child process started by a test: stdout and stderr are collected as it runs, and it is
/// killed by pid (with its process group, which it leads) if the test drops it while running.
pub struct Running {
    child: Child,
    cmdline: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    lines: std::sync::mpsc::Receiver<String>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// Starts `cmd` with stdin from `/dev/null`, stdout and stderr captured, in a new process group
/// led by the child (so that a timeout can end everything it started, by its pid).
pub fn spawn(cmd: &mut Command) -> Running {
    use std::os::unix::process::CommandExt;
    let cmdline = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmdline}: {e}"));
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (tx, lines) = std::sync::mpsc::channel();
    let readers = vec![
        collect(
            child.stdout.take().expect("piped stdout"),
            Arc::clone(&stdout),
            Some(tx),
        ),
        collect(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&stderr),
            None,
        ),
    ];
    Running {
        child,
        cmdline,
        stdout,
        stderr,
        lines,
        readers,
        status: None,
    }
}

impl Running {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next stdout line, waiting at most `timeout`.
    pub fn read_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// True while the child has not exited.
    pub fn is_alive(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Everything written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Sends SIGTERM to the child (by pid) and waits for it to exit, at most `timeout`; past
    /// it, kills its process group.
    pub fn terminate(&mut self, timeout: Duration) {
        if !self.is_alive() {
            return;
        }
        let _ = sys::kill(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while self.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.is_alive() {
            self.kill_group();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
    }

    /// Sends SIGKILL to the child (by pid, not its group) and waits for it.
    pub fn kill(&mut self) {
        if !self.is_alive() {
            return;
        }
        let _ = sys::kill(self.pid(), libc::SIGKILL);
        if let Ok(st) = self.child.wait() {
            self.status = Some(st);
        }
    }

    fn kill_group(&mut self) {
        let pid = self.pid();
        // The child leads its own process group (spawn sets it), so -pid names exactly what
        // this test started.
        let _ = sys::kill(-pid, libc::SIGKILL);
        let _ = sys::kill(pid, libc::SIGKILL);
    }

    /// Waits for the child to exit; after `timeout` kills it by pid and panics with what it
    /// printed so far.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.status {
                break st;
            }
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => {
                    self.kill_group();
                    let _ = self.child.wait();
                    self.status = Some(ExitStatus::default());
                    std::thread::sleep(Duration::from_millis(50));
                    panic!(
                        "timed out after {timeout:?}, killed: `{}`\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.cmdline,
                        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner())),
                        self.stderr_so_far()
                    );
                }
                Err(e) => panic!("wait for `{}`: {e}", self.cmdline),
            }
        };
        self.status = Some(status);
        // The pipes reach EOF when the last holder exits; a grandchild that outlives the child
        // must not hang the test, so wait for the readers only a little.
        let readers_deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|h| !h.is_finished()) && Instant::now() < readers_deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stdout =
            String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner()))
                .into_owned();
        let stderr = self.stderr_so_far();
        Outcome {
            cmdline: self.cmdline.clone(),
            status,
            json: last_json_line(&stdout),
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() && self.is_alive() {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion with a time bound (see [`Running::wait`]).
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    spawn(cmd).wait(timeout)
}

fn command(args: &[&str]) -> Command {
    let (prog, rest) = args.split_first().expect("a command needs a program");
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    cmd
}

/// Runs `args` unconfined, bounded by [`DEFAULT_TIMEOUT`].
pub fn unconfined(args: &[&str]) -> Outcome {
    run(&mut command(args), DEFAULT_TIMEOUT)
}

/// `netjail run --policy POLICY -- ARGS...` (the embedded broker, unless one listens at the
/// default socket).
pub fn confined_cmd(policy: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(netjail_bin());
    // A broker named in the environment would take the place of the embedded one.
    cmd.env_remove("NETJAIL_BROKER")
        .args(["run", "--allow-root", "--policy", policy, "--"])
        .args(args);
    cmd
}

/// Runs [`confined_cmd`] to completion, bounded by [`DEFAULT_TIMEOUT`]. `policy` is a built-in
/// name or the path of a TOML file.
pub fn confined(policy: &str, args: &[&str]) -> Outcome {
    run(&mut confined_cmd(policy, args), DEFAULT_TIMEOUT)
}

/// `netjail run --broker SOCK --no-embedded --policy POLICY -- ARGS...` against a running
/// [`Broker`].
pub fn confined_with_broker_cmd(broker: &Broker, policy: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(netjail_bin());
    cmd.args(["run", "--allow-root"])
        .arg("--broker")
        .arg(broker.socket())
        .args(["--no-embedded", "--policy", policy, "--"])
        .args(args);
    cmd
}

/// Runs [`confined_with_broker_cmd`] to completion, bounded by [`DEFAULT_TIMEOUT`].
pub fn confined_with_broker(broker: &Broker, policy: &str, args: &[&str]) -> Outcome {
    run(
        &mut confined_with_broker_cmd(broker, policy, args),
        DEFAULT_TIMEOUT,
    )
}
