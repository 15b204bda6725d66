//! `nj-bench bridge` (issue 19): from a process in a network namespace of its own, how fast
//! can it reach a TCP server on the host's 127.0.0.1, and at what latency?
//!
//! The bench runs two servers on the host's `127.0.0.1` (ephemeral ports): CONNECT, which
//! writes one byte to every connection it accepts and closes it, and BULK, which reads a
//! connection to its end and answers with the number of bytes it read (u64 LE). Each variant
//! is a [`Route`] from a measured child to those servers:
//!
//! - `host`: the child in the host's network namespace (host networking), to `127.0.0.1`;
//! - `slirp4netns`: the child in a namespace of the bench's own (only `lo` up), which
//!   `slirp4netns --configure` gives a `tap0` (10.0.2.100/24, default route 10.0.2.2); the
//!   child connects to 10.0.2.2, which slirp4netns maps to the host's loopback;
//! - `pasta`: the child in a namespace of the bench's own (only `lo` up), to `127.0.0.1`
//!   there, where `pasta --tcp-ns PORTS` listens and forwards each connection to the same
//!   port on the host's loopback (a socket pair joined with `splice`, no tap involved).
//!
//! Each round runs every variant once, in rotating order: a fresh child
//! (`nj-bench --child bridge ...`), which enters the variant's namespace (`setns`) and then
//! times W untimed and N/R timed connects to CONNECT (each: a fresh socket; the time of
//! `connect()` itself, and the time until the server's byte arrives, which is when the
//! host's server has the connection: a proxy's listener in the namespace completes the
//! handshake before it has reached the host), closing with RST; then sends M MiB to BULK
//! through one connection in CHUNK-byte `send()`s, `shutdown(SHUT_WR)`, and waits for the
//! count: Gbit/s from `connect()` returning to the count. It prints a table, the ratios to
//! `host`, and one JSON line.
//!
//! A namespace is made by a holder child (`nj-bench --child netns`): `unshare(CLONE_NEWNET)`,
//! `lo` up, every capability dropped, then it waits on its stdin. The tools run as root:
//!
//! - slirp4netns with `--mtu=65520` (its maximum, as rootless Podman and RootlessKit set it),
//!   `--outbound-addr=127.0.0.1` (every socket it opens on the host is bound to loopback, so
//!   nothing the namespace sends can leave the machine), `--disable-dns`, `--enable-sandbox`
//!   and `--enable-seccomp` (as RootlessKit runs it), its stdin as its exit fd and its stdout
//!   as its ready fd;
//! - pasta with `--runas 0`: by default it drops to `nobody`, which may not open the holder's
//!   `/proc/PID/ns/net`. Even as root it keeps only a few capabilities, and without
//!   `CAP_SYS_PTRACE` the kernel lets a process open that file only when the holder's
//!   capabilities are a subset of its own: hence the holder drops all of them. No port is
//!   forwarded into the namespace (`--tcp-ports none --udp-ports none`), no UDP port out
//!   (`--udp-ns none`), and without `--config-net` its tap stays down.
//!
//! The bench ends the tools and the holders by pid at the end of the run (or on any error),
//! then checks that no process is left in the namespaces it made. A variant whose tool is
//! missing, or whose set-up fails, is not measured; the report says which and why (a set-up
//! failure also makes the exit code 1).

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::args;
use crate::own_broker::Process;
use crate::process::{join, reader, run_bounded, this_exe, timeout_for};
use crate::report::Machine;
use crate::stats::{self, us, Summary};
use crate::sys;

mod child;

pub use child::{bridge_child, netns_child};

/// How long a tool may take to make its namespace usable.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// The MTU given to slirp4netns: its maximum, which rootless Podman and RootlessKit use too.
const SLIRP_MTU: &str = "65520";

/// The ways from the measured child to the host's `127.0.0.1`, measured side by side.
///
/// Each variant's set-up is one arm of [`Variant::route`], which returns the [`Route`]: the
/// child's namespace, the address it connects to, the helper process that serves the
/// namespace, and a launcher the child runs under. Everything else (the rounds, the table,
/// the JSON line, the teardown) is the same for all variants.
///
/// netjail's bridging mode ([`Variant::Netjail`]) starts its launcher in the namespace
/// (`nsenter --net=PATH netjail run ...`, the policy naming the bench's own namespace by
/// path), since a confined child may not call `setns`; a child already in its namespace
/// skips `setns`. Its connects to `127.0.0.1` reach the servers only because the broker
/// bridges them (in a namespace with only `lo`, down, they would fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// No namespace of its own: host networking.
    Host,
    /// A namespace of its own, served by slirp4netns (host loopback as 10.0.2.2).
    Slirp4netns,
    /// A namespace of its own, served by pasta (`--tcp-ns`: its listeners in the namespace).
    Pasta,
    /// A namespace of its own, confined by `netjail run` (started in it with `nsenter`), whose
    /// broker serves the two connects from the host's namespace (`[bridge]`).
    Netjail,
}

impl Variant {
    /// Its name on the command line, in the table and in the JSON line.
    pub fn key(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// Sets this variant up: its namespace, its helper, where its child connects.
    fn route(self, env: &Env) -> Result<Route, Unmeasured> {
        match self {
            Variant::Host => Ok(Route {
                how: "the host's network namespace, to 127.0.0.1".into(),
                addr: Ipv4Addr::LOCALHOST,
                launcher: Vec::new(),
                helper: None,
                netns: None,
                _policy: None,
            }),
            Variant::Slirp4netns => slirp4netns_route(env),
            Variant::Pasta => pasta_route(env),
            Variant::Netjail => netjail_route(env),
        }
    }
}

/// [`Variant::Slirp4netns`]: a namespace of its own, slirp4netns in it, the host's loopback
/// as 10.0.2.2 (every socket slirp4netns opens on the host bound to loopback).
fn slirp4netns_route(env: &Env) -> Result<Route, Unmeasured> {
    let tool = find_tool("slirp4netns", env.slirp4netns.as_deref())?;
    let netns = Namespace::new(env).map_err(Unmeasured::Failed)?;
    let flags = [
        "--configure",
        &format!("--mtu={SLIRP_MTU}"),
        "--disable-dns",
        "--outbound-addr=127.0.0.1",
        "--enable-sandbox",
        "--enable-seccomp",
        "--exit-fd=0",
        "--ready-fd=1",
    ]
    .map(str::to_owned);
    let pid = netns.pid().to_string();
    let mut cmd = Command::new(&tool);
    cmd.args(&flags).args([pid.as_str(), "tap0"]);
    let mut helper = Helper::spawn("slirp4netns", &mut cmd).map_err(Unmeasured::Failed)?;
    helper.wait_ready_fd().map_err(Unmeasured::Failed)?;
    Ok(Route {
        how: format!(
            "{} {} PID tap0 (pid {}); to 10.0.2.2",
            tool.display(),
            flags.join(" "),
            helper.process.pid()
        ),
        addr: Ipv4Addr::new(10, 0, 2, 2),
        launcher: Vec::new(),
        helper: Some(helper),
        netns: Some(netns),
        _policy: None,
    })
}

/// [`Variant::Pasta`]: a namespace of its own, pasta forwarding its two ports there to the
/// host's loopback.
fn pasta_route(env: &Env) -> Result<Route, Unmeasured> {
    let tool = find_tool("pasta", env.pasta.as_deref())?;
    let netns = Namespace::new(env).map_err(Unmeasured::Failed)?;
    let ports = format!("{},{}", env.connect_port, env.bulk_port);
    let flags = [
        "--foreground",
        "--quiet",
        "--runas",
        "0",
        "--tcp-ports",
        "none",
        "--udp-ports",
        "none",
        "--udp-ns",
        "none",
        "--tcp-ns",
        &ports,
    ]
    .map(str::to_owned);
    let mut cmd = Command::new(&tool);
    cmd.args(&flags).arg("--netns").arg(&netns.path);
    let mut helper = Helper::spawn("pasta", &mut cmd).map_err(Unmeasured::Failed)?;
    helper
        .wait_listening(&netns, &[env.connect_port, env.bulk_port])
        .map_err(Unmeasured::Failed)?;
    Ok(Route {
        how: format!(
            "{} {} --netns /proc/PID/ns/net (pid {}); to 127.0.0.1",
            tool.display(),
            flags.join(" "),
            helper.process.pid()
        ),
        addr: Ipv4Addr::LOCALHOST,
        launcher: Vec::new(),
        helper: Some(helper),
        netns: Some(netns),
        _policy: None,
    })
}

/// [`Variant::Netjail`]: a namespace of its own, `nsenter --net=NETNS netjail run --policy
/// FILE --` in it, the policy allowing the two servers and bridging both to the bench's own
/// (the host's) namespace: the child's connects to `127.0.0.1` become sockets of the host's,
/// and what it sends afterwards never goes through the broker.
fn netjail_route(env: &Env) -> Result<Route, Unmeasured> {
    let netjail = env.netjail.clone().map_err(Unmeasured::Missing)?;
    let nsenter = find_tool("nsenter", None)?;
    let netns = Namespace::new(env).map_err(Unmeasured::Failed)?;
    let ports = [env.connect_port, env.bulk_port].map(|p| format!("\"tcp://127.0.0.1:{p}\""));
    let text = format!(
        "name = \"nj-bench-bridge\"\ndefault = \"deny\"\n\n[[allow]]\nconnect = [{list}]\n\n[bridge]\nnetns = \"/proc/{pid}/ns/net\"\nconnect = [{list}]\n",
        list = ports.join(", "),
        pid = std::process::id()
    );
    let path = std::env::temp_dir().join(format!("nj-bench-bridge-{}.toml", std::process::id()));
    std::fs::write(&path, text)
        .map_err(|e| Unmeasured::Failed(format!("{}: {e}", path.display())))?;
    let policy = PolicyFile(path);
    let launcher: Vec<OsString> = vec![
        nsenter.clone().into_os_string(),
        format!("--net={}", netns.path.display()).into(),
        netjail.clone().into_os_string(),
        "run".into(),
        "--allow-root".into(),
        "--policy".into(),
        policy.0.clone().into_os_string(),
        "--".into(),
    ];
    Ok(Route {
        how: format!(
            "{} --net=NETNS {} run --allow-root --policy FILE -- (FILE bridges both ports to the bench's namespace); to 127.0.0.1",
            nsenter.display(),
            netjail.display()
        ),
        addr: Ipv4Addr::LOCALHOST,
        launcher,
        helper: None,
        netns: Some(netns),
        _policy: Some(policy),
    })
}

/// Why a variant was not measured.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unmeasured {
    /// Its tool is not installed: the report says so, the run goes on and succeeds.
    Missing(String),
    /// Its set-up failed: the report says so, the run goes on and exits 1.
    Failed(String),
}

impl Unmeasured {
    fn why(&self) -> &str {
        match self {
            Unmeasured::Missing(s) | Unmeasured::Failed(s) => s,
        }
    }
}

/// What the variants' set-ups need.
struct Env {
    exe: PathBuf,
    connect_port: u16,
    bulk_port: u16,
    slirp4netns: Option<PathBuf>,
    pasta: Option<PathBuf>,
    /// The netjail binary, or why there is none.
    netjail: Result<PathBuf, String>,
    /// The inode of every namespace made, for the check at the end.
    made: RefCell<Vec<u64>>,
}

/// One variant's way to the servers, set up for the whole run. Its fields drop in order: the
/// helper is ended before the namespace's holder.
struct Route {
    /// What the report says of it.
    how: String,
    /// Where the child connects (the servers' ports are the same everywhere).
    addr: Ipv4Addr,
    /// The program and arguments the child runs under (empty: the child runs directly).
    launcher: Vec<OsString>,
    /// The process that serves the namespace (slirp4netns, pasta).
    helper: Option<Helper>,
    /// The child's network namespace (`None`: the host's).
    netns: Option<Namespace>,
    /// A policy file written for the variant, removed with it.
    _policy: Option<PolicyFile>,
}

/// A file the bench wrote, removed when dropped.
struct PolicyFile(PathBuf);

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Route {
    /// `[LAUNCHER...] nj-bench --child bridge NETNS ADDR CONNECT BULK COUNT WARMUP BYTES CHUNK`.
    fn command(&self, o: &Options, ports: (u16, u16), count: usize) -> Command {
        // A launcher starts the child in its namespace already (`nsenter`), and a confined
        // child may not see the holder's `/proc/PID` (a root sandbox gets a procfs of its
        // own): "-", no `setns`.
        let netns = match &self.netns {
            Some(n) if self.launcher.is_empty() => n.path.clone().into_os_string(),
            _ => OsString::from("-"),
        };
        let child: Vec<OsString> = vec![
            "--child".into(),
            "bridge".into(),
            netns,
            self.addr.to_string().into(),
            ports.0.to_string().into(),
            ports.1.to_string().into(),
            count.to_string().into(),
            o.counts.warmup.to_string().into(),
            o.bytes.to_string().into(),
            o.chunk.to_string().into(),
        ];
        let mut cmd = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&o.exe);
                cmd
            }
            None => Command::new(&o.exe),
        };
        cmd.args(child);
        cmd
    }

    /// `Err` when its helper has ended.
    fn check_alive(&mut self) -> Result<(), String> {
        self.helper
            .as_mut()
            .map_or(Ok(()), |h| h.process.check_alive())
    }
}

/// The tool `name`: `given` (`--NAME PATH`), else the first `name` on `PATH`.
fn find_tool(name: &str, given: Option<&Path>) -> Result<PathBuf, Unmeasured> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(Unmeasured::Missing(format!(
                "no {name} at {}",
                path.display()
            )))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Unmeasured::Missing(format!(
                "{name} is not installed (not on PATH; Debian: apt-get install {})",
                if name == "pasta" { "passt" } else { name }
            ))
        })
}

/// A network namespace of the bench's own: its holder (`nj-bench --child netns`) is in it
/// and nothing else is, until a tool and the measured children enter it.
struct Namespace {
    holder: Process,
    /// `/proc/HOLDER/ns/net`.
    path: PathBuf,
}

impl Namespace {
    /// Makes one and records it in `env`.
    fn new(env: &Env) -> Result<Namespace, String> {
        let mut cmd = Command::new(&env.exe);
        cmd.args(["--child", "netns"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut holder = Process::spawn("the namespace holder", &mut cmd)?;
        let child = holder.child.as_mut().ok_or("the holder is gone")?;
        let stdout = child.stdout.take().ok_or("the holder's stdout")?;
        let stderr = reader(child.stderr.take());
        match read_line_bounded(stdout, READY_LIMIT) {
            Ok(line) if line.contains("\"netns\"") => {}
            outcome => {
                holder.stop();
                return Err(format!(
                    "the namespace holder did not start ({}): {}",
                    outcome.err().unwrap_or_else(|| "no ready line".into()),
                    join(stderr).trim()
                ));
            }
        }
        let path = PathBuf::from(format!("/proc/{}/ns/net", holder.pid()));
        let inode = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ino();
        env.made.borrow_mut().push(inode);
        Ok(Namespace { holder, path })
    }

    fn pid(&self) -> u32 {
        self.holder.pid()
    }
}

/// The processes whose network namespace has the inode `inode` (a scan of `/proc`).
fn processes_in(inode: u64) -> Vec<u32> {
    let target = format!("net:[{inode}]");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|l| l.to_str() == Some(target.as_str()))
        })
        .collect()
}

/// A tool serving a namespace, with its stderr collected (for the report of its failure).
struct Helper {
    what: &'static str,
    process: Process,
    stderr: Option<JoinHandle<String>>,
}

impl Helper {
    /// Starts it with its stdin, stdout and stderr piped. slirp4netns takes its stdin as its
    /// exit fd, so it ends with this bench even when the bench is killed; pasta has no such
    /// fd and is ended by pid (a bench killed with `SIGKILL` leaves it running).
    fn spawn(what: &'static str, cmd: &mut Command) -> Result<Helper, String> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = Process::spawn(what, cmd)?;
        let stderr: Option<ChildStderr> = process.child.as_mut().and_then(|c| c.stderr.take());
        Ok(Helper {
            what,
            process,
            stderr: reader(stderr),
        })
    }

    /// Ends it and returns `msg` with what it wrote to stderr.
    fn failure(&mut self, msg: String) -> String {
        self.process.stop();
        let stderr = join(self.stderr.take());
        let stderr: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("to syslog"))
            .collect();
        let stderr = if stderr.is_empty() {
            "(nothing)".to_owned()
        } else {
            stderr.join(" | ")
        };
        format!("{}: {msg}; its stderr: {stderr}", self.what)
    }

    /// slirp4netns's `--ready-fd=1`: it writes `1` to its stdout once `tap0` is configured
    /// (after any warning it prints there).
    fn wait_ready_fd(&mut self) -> Result<(), String> {
        let stdout = self.process.child.as_mut().and_then(|c| c.stdout.take());
        let Some(stdout) = stdout else {
            return Err(self.failure("no stdout".into()));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) if l.trim() == "1" => {
                        let _ = tx.send(Ok(()));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(format!("its stdout: {e}")));
                        return;
                    }
                }
            }
            let _ = tx.send(Err("it closed its ready fd without writing 1".into()));
        });
        match rx.recv_timeout(READY_LIMIT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failure(e)),
            Err(_) => Err(self.failure(format!("not ready after {READY_LIMIT:?}"))),
        }
    }

    /// Waits until the namespace has a TCP socket listening on `127.0.0.1:PORT` for each of
    /// `ports` (its `/proc/PID/net/tcp`).
    fn wait_listening(&mut self, netns: &Namespace, ports: &[u16]) -> Result<(), String> {
        let table = format!("/proc/{}/net/tcp", netns.pid());
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let listening = std::fs::read_to_string(&table).unwrap_or_default();
            if ports.iter().all(|&p| listens_on_loopback(&listening, p)) {
                return Ok(());
            }
            if let Err(e) = self.process.check_alive() {
                return Err(self.failure(e));
            }
            if Instant::now() > deadline {
                return Err(self.failure(format!(
                    "no listener on 127.0.0.1 ports {ports:?} in the namespace after {READY_LIMIT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a `/proc/net/tcp` table has a socket listening (state `0A`) on `127.0.0.1:port`.
fn listens_on_loopback(table: &str, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let mut f = l.split_whitespace();
        f.nth(1) == Some(local.as_str()) && f.nth(1) == Some("0A")
    })
}

/// The first line `r` yields within `limit` (read on a thread of its own, which ends with
/// the pipe).
fn read_line_bounded(r: impl Read + Send + 'static, limit: Duration) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let res = BufReader::new(r).read_line(&mut line).map(|_| line);
        let _ = tx.send(res);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(line)) if !line.is_empty() => Ok(line),
        Ok(Ok(_)) => Err("it ended without a line".into()),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Err(_) => Err(format!("nothing after {limit:?}")),
    }
}

/// The two servers on the host's `127.0.0.1`, each on an accepting thread of its own.
struct Servers {
    connect_port: u16,
    bulk_port: u16,
    /// Connections CONNECT accepted.
    accepted: Arc<AtomicU64>,
    /// Bytes BULK read in all.
    received: Arc<AtomicU64>,
}

impl Servers {
    fn start() -> Result<Servers, String> {
        let bind = || -> Result<(TcpListener, u16), String> {
            let l =
                TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
            sys::listen(&l, 4096).map_err(|e| format!("listen: errno {e}"))?;
            let port = l.local_addr().map_err(|e| format!("address: {e}"))?.port();
            Ok((l, port))
        };
        let (connect, connect_port) = bind()?;
        let (bulk, bulk_port) = bind()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        std::thread::Builder::new()
            .name("bridge-connect".into())
            .spawn(move || {
                for mut s in connect.incoming().flatten() {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = s.write_all(b"!");
                }
            })
            .map_err(|e| format!("server thread: {e}"))?;
        let total = Arc::clone(&received);
        std::thread::Builder::new()
            .name("bridge-bulk".into())
            .spawn(move || {
                for s in bulk.incoming().flatten() {
                    let total = Arc::clone(&total);
                    let _ = std::thread::Builder::new()
                        .name("bridge-bulk-conn".into())
                        .spawn(move || drain(s, &total));
                }
            })
            .map_err(|e| format!("server thread: {e}"))?;
        Ok(Servers {
            connect_port,
            bulk_port,
            accepted,
            received,
        })
    }
}

/// BULK's side of one connection: read to its end, answer with the count, close.
fn drain(mut s: TcpStream, total: &AtomicU64) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut n: u64 = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    total.fetch_add(n, Ordering::Relaxed);
    let _ = s.write_all(&n.to_le_bytes());
}

/// The options checked.
struct Options {
    counts: args::Counts,
    bytes: u64,
    chunk: usize,
    variants: Vec<Variant>,
    exe: PathBuf,
}

fn options(a: &args::BridgeArgs) -> Result<Options, String> {
    a.counts.check()?;
    if a.mib == 0 || a.chunk == 0 {
        return Err("--mib and --chunk must be at least 1".into());
    }
    let mut variants: Vec<Variant> = a
        .only
        .clone()
        .unwrap_or_else(|| Variant::value_variants().to_vec());
    let mut seen = Vec::new();
    variants.retain(|v| {
        let new = !seen.contains(v);
        seen.push(*v);
        new
    });
    Ok(Options {
        counts: a.counts,
        bytes: a.mib as u64 * 1024 * 1024,
        chunk: a.chunk,
        variants,
        exe: this_exe()?,
    })
}

/// One round of one variant, as its child reported it.
struct Measured {
    connect_ns: Vec<u64>,
    first_byte_ns: Vec<u64>,
    gbit_s: f64,
}

fn measure(
    route: &mut Route,
    o: &Options,
    ports: (u16, u16),
    count: usize,
) -> Result<Measured, String> {
    route.check_alive()?;
    let mut cmd = route.command(o, ports, count);
    let limit = timeout_for(count + o.counts.warmup) + Duration::from_secs(60);
    let (status, stdout, stderr) = run_bounded(&mut cmd, limit, true)?;
    let value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["mode"] == "bridge");
    let (true, Some(v)) = (status.success(), value) else {
        return Err(format!(
            "child ended with {status}\n--- its stderr ---\n{}",
            stderr.trim()
        ));
    };
    let list = |key: &str| -> Result<Vec<u64>, String> {
        v[key]
            .as_array()
            .ok_or(format!("{key} missing"))?
            .iter()
            .map(|x| x.as_u64().ok_or(format!("{key} holds a non-integer")))
            .collect()
    };
    let bulk_ns = v["bulk_ns"].as_u64().ok_or("bulk_ns missing")?;
    let bulk_bytes = v["bulk_bytes"].as_u64().ok_or("bulk_bytes missing")?;
    Ok(Measured {
        connect_ns: list("connect_ns")?,
        first_byte_ns: list("first_byte_ns")?,
        gbit_s: gbit_s(bulk_bytes, bulk_ns),
    })
}

/// Bytes in nanoseconds as Gbit/s (10^9 bits per second).
fn gbit_s(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        f64::NAN
    } else {
        bytes as f64 * 8.0 / ns as f64
    }
}

/// A variant's figures over all rounds.
struct Figures {
    first_byte: Summary,
    connect: Summary,
    /// Gbit/s of each round, in round order.
    gbit_s: Vec<f64>,
}

impl Figures {
    /// The median of the rounds' throughputs (the lower one of an even count).
    fn gbit_median(&self) -> f64 {
        let mut v = self.gbit_s.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN)
    }

    fn to_json(&self) -> serde_json::Value {
        let (lo, hi) = min_max(&self.gbit_s);
        serde_json::json!({
            "bulk_gbit_s": { "median": self.gbit_median(), "min": lo, "max": hi, "rounds": self.gbit_s },
            "first_byte": self.first_byte.to_json(),
            "connect": self.connect.to_json(),
        })
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Entry point of `nj-bench bridge`.
pub fn main(a: args::BridgeArgs) -> Result<bool, String> {
    let o = options(&a)?;
    let machine = Machine::read();
    let servers = Servers::start()?;
    let ports = (servers.connect_port, servers.bulk_port);
    let env = Env {
        exe: o.exe.clone(),
        connect_port: ports.0,
        bulk_port: ports.1,
        slirp4netns: a.slirp4netns,
        pasta: a.pasta,
        netjail: a.netjail.binary(),
        made: RefCell::new(Vec::new()),
    };
    let per_round = o.counts.plan();
    println!("nj-bench bridge: from a network namespace of its own to a TCP server on the host's 127.0.0.1");
    machine.print_header();
    crate::report::print_plan(&o.counts, &per_round, ";");
    println!(
        "         then {} MiB through one connection per child, in {}-byte send()s",
        o.bytes / (1024 * 1024),
        o.chunk
    );
    println!(
        "servers  127.0.0.1:{} (one byte, then close), 127.0.0.1:{} (reads to the end, answers the count)",
        ports.0, ports.1
    );

    let (mut routes, unmeasured) = set_up(&o.variants, &env);

    let started = Instant::now();
    let outcome = measure_rounds(&mut routes, &o, ports, &per_round, started);
    // End the tools and the holders (by pid), then look for what is left in the namespaces.
    drop(routes);
    let made = env.made.take();
    let left: Vec<(u64, Vec<u32>)> = made
        .iter()
        .map(|&ino| (ino, processes_in(ino)))
        .filter(|(_, pids)| !pids.is_empty())
        .collect();
    let samples = outcome?;

    let measured = figures(samples);
    print_table(&measured, &unmeasured);
    let ratios = print_ratios(&measured);
    for (v, f) in &measured {
        if let Some(note) = f.first_byte.spread_note(&v.key(), "a noisy run") {
            println!("{note}");
        }
    }
    print_counts(&servers, &measured, &o, &made, &left);
    let end_load = crate::report::print_end_load(started);
    let json = machine.report_json(
        "nj-bench bridge",
        &end_load,
        serde_json::json!({
            "iterations": o.counts.iterations,
            "rounds": o.counts.rounds,
            "warmup": o.counts.warmup,
            "bulk_mib": o.bytes / (1024 * 1024),
            "chunk": o.chunk,
            "variants": measured.iter().map(|(v, f)| (v.key(), f.to_json())).collect::<serde_json::Map<_, _>>(),
            "not_measured": unmeasured.iter().map(|(v, u)| (v.key(), u.why().into())).collect::<serde_json::Map<_, _>>(),
            "ratios_to_host": ratios,
            "namespaces_made": made.len(),
            "processes_left": left.iter().map(|(_, p)| p.len()).sum::<usize>(),
        }),
    );
    println!("{json}");
    let failed = unmeasured
        .iter()
        .any(|(_, u)| matches!(u, Unmeasured::Failed(_)));
    Ok(!failed && left.is_empty())
}

/// What the servers received against what was sent, and what is left in the namespaces made.
fn print_counts(
    servers: &Servers,
    measured: &[(Variant, Figures)],
    o: &Options,
    made: &[u64],
    left: &[(u64, Vec<u32>)],
) {
    let expected = (measured.len() as u64) * o.counts.calls_per_variant();
    let accepted = servers.accepted.load(Ordering::Relaxed);
    let received = servers.received.load(Ordering::Relaxed);
    println!(
        "servers  {accepted} connections accepted for {expected} connects; {} MiB read for {} MiB sent",
        received / (1024 * 1024),
        measured.len() as u64 * o.counts.rounds as u64 * o.bytes / (1024 * 1024)
    );
    println!(
        "cleanup  {} namespace(s) made; {}",
        made.len(),
        if left.is_empty() {
            "after the tools and holders were ended, no process is left in any".to_owned()
        } else {
            format!("processes left in them (inode, pids): {left:?}")
        }
    );
}

/// Sets every variant up; those that cannot be are reported and left out, the rest are
/// measured whatever happens to one.
fn set_up(variants: &[Variant], env: &Env) -> (Routes, NotMeasured) {
    let mut routes: Vec<(Variant, Route)> = Vec::new();
    let mut unmeasured: Vec<(Variant, Unmeasured)> = Vec::new();
    for &v in variants {
        match v.route(env) {
            Ok(r) => {
                println!("{:<12} {}", v.key(), r.how);
                routes.push((v, r));
            }
            Err(u) => {
                println!("{:<12} NOT MEASURED: {}", v.key(), u.why());
                unmeasured.push((v, u));
            }
        }
    }

    (routes, unmeasured)
}

/// The figures of each measured variant, from its rounds.
fn figures(samples: Samples) -> Vec<(Variant, Figures)> {
    samples
        .into_iter()
        .map(|(v, rounds)| {
            let first: Vec<Vec<u64>> = rounds.iter().map(|m| m.first_byte_ns.clone()).collect();
            let conn: Vec<Vec<u64>> = rounds.iter().map(|m| m.connect_ns.clone()).collect();
            let figures = Figures {
                first_byte: stats::summarize(&first),
                connect: stats::summarize(&conn),
                gbit_s: rounds.iter().map(|m| m.gbit_s).collect(),
            };
            (v, figures)
        })
        .collect()
}

/// Prints each variant's throughput and latency against host networking; returns them for
/// the JSON line.
fn print_ratios(measured: &[(Variant, Figures)]) -> serde_json::Map<String, serde_json::Value> {
    let host = measured
        .iter()
        .find(|(v, _)| *v == Variant::Host)
        .map(|(_, f)| f);
    let mut ratios = serde_json::Map::new();
    if let Some(h) = host {
        println!();
        for (v, f) in measured.iter().filter(|(v, _)| *v != Variant::Host) {
            let t = f.gbit_median() / h.gbit_median();
            let l = stats::ratio(f.first_byte.median_ns, h.first_byte.median_ns);
            let p = stats::ratio(f.first_byte.p99_ns, h.first_byte.p99_ns);
            println!(
                "{:<12} / host   throughput {t:.2}x   connect to first byte: median {l:.2}x, p99 {p:.2}x",
                v.key()
            );
            ratios.insert(
                v.key(),
                serde_json::json!({ "throughput": t, "first_byte_median": l, "first_byte_p99": p }),
            );
        }
    }
    ratios
}

/// The variants set up, with how.
type Routes = Vec<(Variant, Route)>;

/// The variants left out, with why.
type NotMeasured = Vec<(Variant, Unmeasured)>;

/// Per measured variant its rounds.
type Samples = Vec<(Variant, Vec<Measured>)>;

fn measure_rounds(
    routes: &mut [(Variant, Route)],
    o: &Options,
    ports: (u16, u16),
    per_round: &[usize],
    started: Instant,
) -> Result<Samples, String> {
    let mut samples: Samples = routes.iter().map(|(v, _)| (*v, Vec::new())).collect();
    let order: Vec<usize> = (0..routes.len()).collect();
    for (round, &count) in per_round.iter().enumerate() {
        if order.is_empty() {
            break;
        }
        for i in crate::report::rotation(&order, round) {
            let (v, route) = &mut routes[i];
            let m = measure(route, o, ports, count)
                .map_err(|e| format!("round {}, {}: {e}", round + 1, v.key()))?;
            samples[i].1.push(m);
        }
        crate::report::print_round_done(round, o.counts.rounds, started);
    }
    Ok(samples)
}

/// The table: per variant, the throughput and the two latencies; then what was not measured.
fn print_table(measured: &[(Variant, Figures)], unmeasured: &[(Variant, Unmeasured)]) {
    println!();
    println!(
        "{:<12} {:>8} {:>8} {:>8}  {:>11} {:>9}  {:>11} {:>9}  first-byte round medians µs",
        "variant", "Gbit/s", "min", "max", "1st byte µs", "p99 µs", "connect() µs", "p99 µs"
    );
    for (v, f) in measured {
        let (lo, hi) = min_max(&f.gbit_s);
        let rounds: Vec<String> = f
            .first_byte
            .round_medians_ns
            .iter()
            .map(|&m| format!("{:.1}", us(m)))
            .collect();
        println!(
            "{:<12} {:>8.2} {:>8.2} {:>8.2}  {:>11.1} {:>9.1}  {:>12.1} {:>9.1}  {}",
            v.key(),
            f.gbit_median(),
            lo,
            hi,
            us(f.first_byte.median_ns),
            us(f.first_byte.p99_ns),
            us(f.connect.median_ns),
            us(f.connect.p99_ns),
            rounds.join(" ")
        );
    }
    for (v, u) in unmeasured {
        println!("{:<12} not measured: {}", v.key(), u.why());
    }
    println!("(Gbit/s: median of the rounds' transfers; µs: median and p99 of all timed connects)");
}

#[cfg(test)]
mod tests;
