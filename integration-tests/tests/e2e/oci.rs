//! Containers (M3): real runc runs busybox containers whose seccomp listener it hands to
//! `netjaild --oci-socket`; the broker decides their calls by the policy the bundle names.
//!
//! Every test builds its own bundle (busybox-static and its applet links in `rootfs/bin`), keeps
//! runc's state in its own `--root` directory, and deletes only its own containers. Traffic
//! goes to loopback, or to network namespaces the test creates.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    netjail_bin, run, skip, spawn, which, Broker, Canary, Outcome, Running, TempDir,
};
use serde_json::{json, Value};

use crate::need_root;

/// `out` described with the broker's log after it.
pub(crate) fn with_log(out: &Outcome, broker: &Broker) -> String {
    format!("{}\n--- broker ---\n{}", out.describe(), broker.log())
}

/// busybox applets the containers use, linked to `/bin/busybox` in the rootfs.
const APPLETS: &[&str] = &["sh", "wget", "nc", "sleep", "echo", "cat", "id", "true"];

/// The uid and gid of the rootless test user (no account needed: runc maps it to root).
const ROOTLESS_ID: u32 = 4711;

/// True when runc and a static busybox are here; otherwise says `SKIP test: ...`.
pub(crate) fn have_runc(test: &str) -> bool {
    if which("runc").is_none() {
        skip(test, "runc not found (apt-get install runc)");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        skip(
            test,
            "/bin/busybox not found (apt-get install busybox-static)",
        );
        return false;
    }
    true
}

/// A runc bundle in a temporary directory, with runc's state beside it; deletes its
/// container (by its own id, in its own state directory) on drop.
pub(crate) struct Bundle {
    dir: TempDir,
    pub(crate) id: String,
    /// `setpriv ...` to run runc as the rootless user, or empty.
    prefix: Vec<String>,
}

impl Bundle {
    /// `runc spec` (rootless when `rootless`), a busybox rootfs, `args` as the process,
    /// no terminal. The container shares the host's network namespace unless `netns` names
    /// one (a path under /var/run/netns).
    pub(crate) fn new(args: &[&str], rootless: bool, netns: Option<&Path>) -> Bundle {
        let dir = TempDir::new();
        let id = format!(
            "nj-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .rsplit('-')
                .next()
                .unwrap()
        );
        let rootfs = dir.path().join("bundle/rootfs/bin");
        std::fs::create_dir_all(&rootfs).expect("mkdir rootfs");
        std::fs::copy("/bin/busybox", rootfs.join("busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join(applet)).expect("applet link");
        }
        let prefix: Vec<String> = if rootless {
            chown_tree(dir.path(), ROOTLESS_ID);
            vec![
                "setpriv".into(),
                format!("--reuid={ROOTLESS_ID}"),
                format!("--regid={ROOTLESS_ID}"),
                "--clear-groups".into(),
                "--".into(),
                "env".into(),
                format!("HOME={}", dir.path().display()),
                format!("XDG_RUNTIME_DIR={}", dir.path().display()),
            ]
        } else {
            Vec::new()
        };
        let bundle = Bundle { dir, id, prefix };
        let mut spec = bundle.cmd(&["runc", "spec", "--bundle"]);
        spec.arg(bundle.bundle());
        if rootless {
            spec.arg("--rootless");
        }
        let out = run(&mut spec, Duration::from_secs(20));
        assert!(out.status.success(), "runc spec: {}", out.describe());
        let mut config = bundle.config();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(args);
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        namespaces.retain(|n| n["type"] != "network");
        if let Some(path) = netns {
            namespaces.push(json!({"type": "network", "path": path}));
        }
        bundle.write_config(&config);
        bundle
    }

    pub(crate) fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    /// Gives the container a network namespace of its own, made by the runtime (only `lo`,
    /// down).
    pub(crate) fn own_network_namespace(&self) {
        let mut config = self.config();
        let namespaces = config["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        namespaces.retain(|n| n["type"] != "network");
        namespaces.push(json!({"type": "network"}));
        self.write_config(&config);
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.bundle().join("config.json")
    }

    pub(crate) fn config(&self) -> Value {
        let text = std::fs::read_to_string(self.config_path()).expect("read config.json");
        serde_json::from_str(&text).expect("config.json is JSON")
    }

    pub(crate) fn write_config(&self, config: &Value) {
        let text = serde_json::to_string_pretty(config).expect("serialize");
        std::fs::write(self.config_path(), text).expect("write config.json");
        if !self.prefix.is_empty() {
            chown_tree(&self.config_path(), ROOTLESS_ID);
        }
    }

    /// `netjail oci patch` of this bundle for `policy` (a file), pointing at `listener`.
    pub(crate) fn patch(&self, policy: &Path, listener: &Path) {
        let out = run(
            Command::new(netjail_bin())
                .args(["oci", "patch"])
                .arg(self.config_path())
                .arg("--policy")
                .arg(policy)
                .arg("--listener")
                .arg(listener),
            Duration::from_secs(20),
        );
        assert!(
            out.status.success(),
            "netjail oci patch: {}",
            out.describe()
        );
        if !self.prefix.is_empty() {
            chown_tree(&self.config_path(), ROOTLESS_ID);
        }
    }

    /// A command run as the bundle's user (root, or the rootless user).
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let all: Vec<&str> = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        let mut c = Command::new(all[0]);
        c.args(&all[1..]);
        c
    }

    /// `runc --root STATE SUBCOMMAND ...`.
    pub(crate) fn runc(&self, sub: &[&str]) -> Command {
        let mut c = self.cmd(&["runc", "--root"]);
        c.arg(self.dir.path().join("state")).args(sub);
        c
    }

    /// Lets the container run this crate's probe: the host's `/usr` (read-only, with the
    /// `lib`/`lib64` links of a merged-/usr system) and the probe at `/probe`, plus `dir`
    /// (read-write) at `/sock`.
    pub(crate) fn with_probe(&self, sock_dir: &Path) {
        let rootfs = self.bundle().join("rootfs");
        for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
            std::os::unix::fs::symlink(target, rootfs.join(link)).expect("lib link");
        }
        let mut config = self.config();
        let mounts = config["mounts"].as_array_mut().expect("mounts");
        for (src, dst, ro) in [
            (Path::new("/usr"), "/usr", true),
            (Path::new(crate::probe()), "/probe", true),
            (sock_dir, "/sock", false),
        ] {
            let mut options = vec!["rbind", "nosuid", "nodev"];
            if ro {
                options.push("ro");
            }
            mounts.push(
                json!({"destination": dst, "type": "bind", "source": src, "options": options}),
            );
        }
        self.write_config(&config);
    }

    /// `runc run` in the foreground, bounded by 60 s.
    pub(crate) fn run(&self) -> Outcome {
        let mut c = self.runc(&["run", "--bundle"]);
        c.arg(self.bundle()).arg(&self.id);
        run(&mut c, Duration::from_secs(60))
    }

    /// `crun run` in the foreground, bounded by 60 s. On this machine's hybrid cgroups crun
    /// needs `/sys/fs/cgroup/unified` out of its way: it runs in a private mount namespace
    /// where that is unmounted (the host's mounts are untouched).
    pub(crate) fn run_crun(&self) -> Outcome {
        let line = format!(
            "umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root {} run --bundle {} {}",
            self.dir.path().join("crun").display(),
            self.bundle().display(),
            self.id
        );
        let mut c = self.cmd(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &line,
        ]);
        run(&mut c, Duration::from_secs(60))
    }

    /// `runc run --detach`: returns once the container's process runs.
    pub(crate) fn start_detached(&self) {
        let mut c = self.runc(&["run", "--detach", "--bundle"]);
        c.arg(self.bundle()).arg(&self.id);
        let out = run(&mut c, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "runc run --detach: {}",
            out.describe()
        );
    }

    /// `runc exec ID ARGS...`, bounded by 60 s.
    pub(crate) fn exec(&self, args: &[&str]) -> Outcome {
        let mut c = self.runc(&["exec", &self.id]);
        c.args(args);
        run(&mut c, Duration::from_secs(60))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.dir.path().join("crun").exists() {
            let mut c = self.cmd(&["crun", "--root"]);
            c.arg(self.dir.path().join("crun"))
                .args(["delete", "--force", &self.id]);
            let _ = c
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let mut c = self.runc(&["delete", "--force", &self.id]);
        let _ = c
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn chown_tree(path: &Path, id: u32) {
    let out = run(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{id}:{id}"))
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "chown: {}", out.describe());
}

/// A policies directory holding `NAME.toml` with `text`.
pub(crate) fn policies(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write policy");
    path
}

/// A policy allowing TCP connects to `allowed` (`HOST:PORT`) only.
pub(crate) fn allow_policy(name: &str, allowed: &str) -> String {
    format!(
        "name = \"{name}\"\ndefault = \"deny\"\n[sockets]\nallow = [\"inet:stream\", \"inet:dgram\", \"unix:*\"]\n\
         [[allow]]\nconnect = [\"tcp://{allowed}\"]\n"
    )
}

/// A `netjaild` that is also the OCI agent on `<its dir>/oci.sock`, with `policies` as its
/// policies directory; run through `prefix` (empty, or `setpriv ...`).
pub(crate) fn oci_broker(prefix: &[&str], policies_dir: &Path) -> Broker {
    let policies_dir = policies_dir.to_path_buf();
    let owner = (!prefix.is_empty()).then_some(ROOTLESS_ID);
    Broker::start_with(prefix, move |dir| {
        if let Some(id) = owner {
            chown_tree(dir, id);
        }
        vec![
            OsString::from("--oci-socket"),
            dir.join("oci.sock").into_os_string(),
            OsString::from("--policies"),
            policies_dir.into_os_string(),
        ]
    })
}

/// [`oci_broker`] run as the rootless user of `Bundle::new(_, true, _)`, with no capabilities;
/// `policies_dir` becomes that user's.
pub(crate) fn rootless_oci_broker(policies_dir: &Path) -> Broker {
    chown_tree(policies_dir, ROOTLESS_ID);
    let id = ROOTLESS_ID.to_string();
    let (reuid, regid) = (format!("--reuid={id}"), format!("--regid={id}"));
    oci_broker(
        &["setpriv", &reuid, &regid, "--clear-groups", "--"],
        policies_dir,
    )
}

pub(crate) fn oci_socket(broker: &Broker) -> PathBuf {
    broker.dir().join("oci.sock")
}

/// The shell line run in the containers: wget of the allowed URL, nc to the denied port,
/// each followed by its exit status.
fn reach_script(allowed: &str, denied: &str) -> String {
    format!(
        "wget -q -O - http://{allowed}/; echo allowed-rc=$?; \
         nc {denied_host} {denied_port} </dev/null; echo denied-rc=$?",
        denied_host = denied.rsplit_once(':').unwrap().0,
        denied_port = denied.rsplit_once(':').unwrap().1,
    )
}

/// Audit events of `kind` (the event message) for container `id`.
pub(crate) fn events_of(broker: &Broker, id: &str, message: &str) -> Vec<Value> {
    broker
        .audit_events()
        .into_iter()
        .filter(|e| e["message"] == message && e["container"] == id)
        .collect()
}

/// CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// CPU ticks `pid` uses over `span`.
fn cpu_over(pid: i32, span: Duration) -> u64 {
    let before = cpu_ticks(pid);
    std::thread::sleep(span);
    cpu_ticks(pid) - before
}

/// Most ticks an idle broker may use in two seconds (a spinning thread uses about 200).
const IDLE_TICKS: u64 = 10;

/// The two loopback listeners of the reachability tests, the script that tries both from a
/// container, and a policies directory whose `web.toml` allows only the first.
struct Web {
    allowed: Canary,
    denied: Canary,
    script: String,
    dir: TempDir,
    policy: PathBuf,
}

impl Web {
    fn new() -> Web {
        let allowed = Canary::http4();
        let denied = Canary::tcp4();
        let script = reach_script(
            &format!("127.0.0.1:{}", allowed.port()),
            &format!("127.0.0.1:{}", denied.port()),
        );
        let dir = TempDir::new();
        let policy = policies(
            dir.path(),
            "web",
            &allow_policy("web", &format!("127.0.0.1:{}", allowed.port())),
        );
        Web {
            allowed,
            denied,
            script,
            dir,
            policy,
        }
    }

    /// Unconfined: both listeners answered the container.
    #[track_caller]
    fn assert_both_reached(&self, out: &Outcome) {
        assert!(
            out.stdout.contains("allowed-rc=0") && out.stdout.contains("denied-rc=0"),
            "unconfined: {}",
            out.describe()
        );
        assert_eq!(self.denied.wait_count(1, Duration::from_secs(5)), 1);
    }

    /// Confined: wget got the allowed listener's answer, nc got EPERM, and the denied
    /// listener has still seen only `denied_before` connections.
    #[track_caller]
    fn assert_decided(&self, out: &Outcome, broker: &Broker, denied_before: u64) {
        let why = with_log(out, broker);
        assert!(out.stdout.contains("allowed-rc=0"), "wget: {why}");
        assert!(out.stdout.contains("denied-rc=1"), "nc: {why}");
        assert!(
            out.stderr.contains("Operation not permitted"),
            "no EPERM: {why}"
        );
        assert!(self.allowed.wait_count(1, Duration::from_secs(5)) >= 1);
        assert_eq!(
            self.denied.settled_count(),
            denied_before,
            "the denied listener was reached from the container"
        );
    }
}

/// M3: `runc run` of a busybox container: `wget` reaches the allowed loopback listener, `nc`
/// gets EPERM from the denied one, and the audit names the container. Unconfined (the same
/// bundle without netjail's seccomp) both connects succeed. When the container exits its
/// sandbox retires and the broker stays idle.
#[test]
fn s_m3_runc_run_allowed_and_denied() {
    let test = "s_m3_runc_run_allowed_and_denied";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let web = Web::new();
    let (allowed, denied) = (&web.allowed, &web.denied);
    let plain = Bundle::new(&["sh", "-c", &web.script], false, None);
    web.assert_both_reached(&plain.run());
    drop(plain);

    let broker = oci_broker(&[], web.dir.path());
    let bundle = Bundle::new(&["sh", "-c", &web.script], false, None);
    bundle.patch(&web.policy, &oci_socket(&broker));
    web.assert_decided(&bundle.run(), &broker, 1);

    let registered = events_of(&broker, &bundle.id, "sandbox registered");
    assert_eq!(registered.len(), 1, "one registration: {}", broker.log());
    assert_eq!(registered[0]["policy"], "web");
    let decisions = events_of(&broker, &bundle.id, "decision");
    let verdicts: Vec<(&str, &str)> = decisions
        .iter()
        .filter(|d| d["op"] == "connect")
        .map(|d| {
            (
                d["decision"].as_str().unwrap_or(""),
                d["endpoint"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&("allow", &format!("tcp://127.0.0.1:{}", allowed.port())))
            && verdicts.contains(&("deny", &format!("tcp://127.0.0.1:{}", denied.port()))),
        "decisions {verdicts:?} in {}",
        broker.log()
    );

    // The container has exited: its sandbox retires, and nothing spins.
    let retired = broker.wait_audit(1, Duration::from_secs(10), |e| {
        e["message"] == "sandbox retired" && e["container"] == bundle.id.as_str()
    });
    assert_eq!(retired.len(), 1, "sandbox not retired: {}", broker.log());
    let used = cpu_over(broker.pid(), Duration::from_secs(2));
    assert!(
        used <= IDLE_TICKS,
        "broker used {used} ticks in 2 s after the container exited"
    );
}

/// M3 with crun, which sends its document pretty-printed with a trailing newline: the same
/// decisions as under runc.
#[test]
fn s_m3_crun_run_allowed_and_denied() {
    let test = "s_m3_crun_run_allowed_and_denied";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    if which("crun").is_none() {
        skip(test, "crun not found (apt-get install crun)");
        return;
    }
    let web = Web::new();
    let plain = Bundle::new(&["sh", "-c", &web.script], false, None);
    web.assert_both_reached(&plain.run_crun());
    drop(plain);

    let broker = oci_broker(&[], web.dir.path());
    let bundle = Bundle::new(&["sh", "-c", &web.script], false, None);
    bundle.patch(&web.policy, &oci_socket(&broker));
    web.assert_decided(&bundle.run_crun(), &broker, 1);
    let registered = events_of(&broker, &bundle.id, "sandbox registered");
    assert_eq!(registered.len(), 1, "{}", broker.log());
}

/// The idle measure can fail: a thread of this process that spins for two seconds is seen.
#[test]
fn m3_idle_measure_sees_a_spinning_thread() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let used = cpu_over(std::process::id() as i32, Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
    assert!(
        used > IDLE_TICKS,
        "a spinning thread used only {used} ticks"
    );
}

/// M3: `runc exec` into a running container hands over a second listener (status
/// "running"); its calls get the same decisions.
#[test]
fn s_m3_runc_exec_into_running_container() {
    let test = "s_m3_runc_exec_into_running_container";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let web = Web::new();
    let broker = oci_broker(&[], web.dir.path());
    // The init process lets go of runc's pipes at once, so that `runc run -d` returns.
    let bundle = Bundle::new(
        &["sh", "-c", "exec sleep 120 </dev/null >/dev/null 2>&1"],
        false,
        None,
    );
    bundle.patch(&web.policy, &oci_socket(&broker));
    bundle.start_detached();
    web.assert_decided(&bundle.exec(&["sh", "-c", &web.script]), &broker, 0);
    let registered = events_of(&broker, &bundle.id, "sandbox registered");
    let statuses: Vec<&str> = registered
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"creating") && statuses.contains(&"running"),
        "registrations {statuses:?}: {}",
        broker.log()
    );
}

/// Two network namespaces made by the test, joined by a veth pair with link-local addresses;
/// removed on drop.
struct NetnsPair {
    a: String,
    b: String,
}

const ADDR_A: &str = "169.254.77.1";
const ADDR_B: &str = "169.254.77.2";

impl NetnsPair {
    fn new() -> NetnsPair {
        let tag = std::process::id();
        let pair = NetnsPair {
            a: format!("nj-oci-{tag}-a"),
            b: format!("nj-oci-{tag}-b"),
        };
        for ns in [&pair.a, &pair.b] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n", &pair.a, "link", "add", "nj0", "type", "veth", "peer", "name", "nj1", "netns",
            &pair.b,
        ]);
        ip(&[
            "-n",
            &pair.a,
            "addr",
            "add",
            &format!("{ADDR_A}/24"),
            "dev",
            "nj0",
        ]);
        ip(&[
            "-n",
            &pair.b,
            "addr",
            "add",
            &format!("{ADDR_B}/24"),
            "dev",
            "nj1",
        ]);
        ip(&["-n", &pair.a, "link", "set", "nj0", "up"]);
        ip(&["-n", &pair.b, "link", "set", "nj1", "up"]);
        pair
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args), Duration::from_secs(20));
    assert!(out.status.success(), "ip {args:?}: {}", out.describe());
}

/// In namespace B: an HTTP listener on ports 8080 and 8081 that prints `hit PORT` per
/// connection.
const PEER: &str = r#"
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('169.254.77.2', port)); s.listen(8)
    while True:
        c, _ = s.accept()
        print('hit', port, flush=True)
        try:
            c.recv(4096); c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nfrom-peer\n')
        finally:
            c.close()
for p in (8080, 8081):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print('ready', flush=True)
sys.stdin.read() if False else threading.Event().wait()
"#;

/// M3 and the container's own network: a container joined to an `ip netns` namespace reaches
/// a peer namespace over veth on link-local addresses. The broker runs in the host's
/// namespace, where 169.254.77.2 does not exist; it connects the container's own socket, so
/// the connection leaves from the container's namespace. The denied port stays silent.
#[test]
fn s_m3_container_in_its_own_netns_over_veth() {
    let test = "s_m3_container_in_its_own_netns_over_veth";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let Some(python) = crate::need_python(test) else {
        return;
    };
    let pair = NetnsPair::new();
    let mut peer = spawn(Command::new("ip").args(["netns", "exec", &pair.b, &python, "-c", PEER]));
    assert_eq!(
        peer.read_line(Duration::from_secs(10)).as_deref(),
        Some("ready"),
        "peer: {}",
        peer.stderr_so_far()
    );
    let script = reach_script(&format!("{ADDR_B}:8080"), &format!("{ADDR_B}:8081"));
    let netns = PathBuf::from(format!("/var/run/netns/{}", pair.a));

    // Unconfined: both ports answer.
    let plain = Bundle::new(&["sh", "-c", &script], false, Some(&netns));
    let out = plain.run();
    assert!(
        out.stdout.contains("from-peer") && out.stdout.contains("denied-rc=0"),
        "unconfined: {}",
        out.describe()
    );
    drop(plain);
    let hits = collect_hits(&mut peer, 2);
    assert_eq!(hits, vec!["hit 8080", "hit 8081"], "unconfined hits");

    let dir = TempDir::new();
    let policy = policies(
        dir.path(),
        "peer",
        &allow_policy("peer", &format!("{ADDR_B}:8080")),
    );
    let broker = oci_broker(&[], dir.path());
    let bundle = Bundle::new(&["sh", "-c", &script], false, Some(&netns));
    bundle.patch(&policy, &oci_socket(&broker));
    let out = bundle.run();
    assert!(
        out.stdout.contains("from-peer") && out.stdout.contains("allowed-rc=0"),
        "confined wget: {}",
        with_log(&out, &broker)
    );
    assert!(
        out.stdout.contains("denied-rc=1"),
        "confined nc: {}",
        with_log(&out, &broker)
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        with_log(&out, &broker)
    );
    let hits = collect_hits(&mut peer, 2);
    assert_eq!(hits, vec!["hit 8080"], "confined hits");
    drop(peer);
}

/// The `hit PORT` lines the peer printed within a short wait (at most `max`).
fn collect_hits(peer: &mut Running, max: usize) -> Vec<String> {
    let mut hits = Vec::new();
    while hits.len() < max {
        match peer.read_line(Duration::from_millis(1500)) {
            Some(line) => hits.push(line),
            None => break,
        }
    }
    hits
}

/// M3 without root: rootless runc (`runc spec --rootless`) with a broker of the same user. The
/// broker has no capabilities at all; it owns the container's user namespace, which is what
/// lets it take the container's sockets.
#[test]
fn s_m3_rootless_runc_with_a_broker_of_the_same_user() {
    let test = "s_m3_rootless_runc_with_a_broker_of_the_same_user";
    if !need_root(test) || !have_runc(test) || !crate::have_setpriv(test) {
        return;
    }
    let web = Web::new();
    let broker = rootless_oci_broker(web.dir.path());
    let id = ROOTLESS_ID.to_string();
    let broker_uid = std::fs::read_to_string(format!("/proc/{}/status", broker.pid())).unwrap();
    assert!(
        broker_uid
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&id)),
        "the broker does not run as {id}"
    );
    let script = format!("id -u; {}", web.script);
    let bundle = Bundle::new(&["sh", "-c", &script], true, None);
    bundle.patch(&web.policy, &oci_socket(&broker));
    let out = bundle.run();
    assert!(
        out.stdout.starts_with("0\n"),
        "root inside: {}",
        with_log(&out, &broker)
    );
    web.assert_decided(&out, &broker, 0);
}

/// M4: a bundle naming a policy the broker does not have is refused with an audit event, and
/// the container's network calls fail; nothing reaches the listener.
#[test]
fn s_m4_container_with_an_unknown_policy_fails_closed() {
    let test = "s_m4_container_with_an_unknown_policy_fails_closed";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let canary = Canary::tcp4();
    let dir = TempDir::new();
    let broker = oci_broker(&[], dir.path());
    // The policy file lives elsewhere: the broker's directory has no `elsewhere.toml`.
    let other = TempDir::new();
    let policy = policies(
        other.path(),
        "elsewhere",
        &allow_policy("elsewhere", &format!("127.0.0.1:{}", canary.port())),
    );
    let script = format!("nc 127.0.0.1 {} </dev/null; echo rc=$?", canary.port());
    let bundle = Bundle::new(&["sh", "-c", &script], false, None);
    bundle.patch(&policy, &oci_socket(&broker));
    let out = bundle.run();
    assert!(
        out.stdout.contains("rc=1"),
        "nc must fail: {}",
        with_log(&out, &broker)
    );
    assert_eq!(canary.settled_count(), 0, "reached without a policy");
    let refused = events_of(&broker, &bundle.id, "container refused");
    assert_eq!(refused.len(), 1, "{}", broker.log());
    assert_eq!(refused[0]["reason"], "unknown-policy");
}
