//! Attacks past the filter's scalar rules, found by the red team against a813f04: a view of
//! the file system the sandbox remakes (mount namespaces, `chroot`) to put a refused unix
//! socket under an allowed name; calls that change another process's limits and scheduling
//! (`prlimit`, `sched_set*`, `setpriority`, `ioprio_set`, `/proc/PID/*`), which no Landlock
//! scope covers; sockets the kernel makes under another family or type than the one named
//! (`AF_INET` + `SOCK_PACKET`, `IPPROTO_RAW`). Each attack is first shown working
//! unconfined. Nothing here reaches past loopback or a network namespace the test makes.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netjail_integration_tests::{
    confined_cmd, confined_with_broker_cmd, netjail_bin, policy_file, python3, run, unconfined,
    which, Broker, Outcome, TempDir, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{as_nobody, have_setpriv, need_python, need_root, Via};

/// A python3 that uid 65534 can run (not a shim under /root), or `None` after a SKIP line.
fn nobody_python(test: &str) -> Option<String> {
    if !need_root(test) || !have_setpriv(test) {
        return None;
    }
    let mut candidates: Vec<String> = vec!["/usr/bin/python3".to_owned()];
    candidates.extend(
        python3()
            .into_iter()
            .filter_map(|p| p.to_str().map(str::to_owned)),
    );
    let found = candidates.into_iter().find(|py| {
        let out = unconfined(&as_nobody(&[py.as_str(), "-c", "print('{\"ok\": true}')"]));
        out.json.as_ref().is_some_and(|v| v["ok"] == true)
    });
    if found.is_none() {
        netjail_integration_tests::skip(test, "no python3 that uid 65534 can run");
    }
    found
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

fn mkdir(p: &Path) {
    std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    chmod(p, 0o755);
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

#[track_caller]
fn json(out: &Outcome) -> &Value {
    out.json
        .as_ref()
        .unwrap_or_else(|| panic!("no JSON: {}", out.describe()))
}

/// A root unix stream server at `argv[1]` (mode 0666, so that nobody may connect to it
/// unconfined) that writes `argv[2]` to every client, for 20 s.
const PY_PATH_SERVER: &str = r#"
import os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(p); os.chmod(p, 0o666); s.listen(8); s.settimeout(20)
print("ready", flush=True)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.sendall(sys.argv[2].encode()); c.close()
"#;

/// Connects to each unix path of `argv[1:]` and prints `{PATH: what the server said, or the
/// errno}`.
const PY_PATH_CLIENT: &str = r#"
import errno, json, socket, sys
out = {}
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        out[p] = s.recv(64).decode()
    except OSError as e:
        out[p] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

/// A server outside every sandbox; killed by pid when dropped.
struct Server(Child);

impl Server {
    fn start(py: &str, path: &Path, says: &str) -> Server {
        let mut child = Command::new(py)
            .args(["-c", PY_PATH_SERVER, utf8(path), says])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("server output");
        assert_eq!(line.trim(), "ready", "the server did not start");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

// ---- a mount namespace of the sandbox's own ----------------------------------------------------

/// **rt_a_userns_bind_mount_reaches_unlisted_unix_socket** (High): a sandbox that may make a
/// mount namespace reaches any unix socket whose file it may write, whatever its `unix`
/// rules say, through a bind mount of its own.
///
/// The attack: the policy allows unix connects under `DIR/allowed/*` and `DIR/open/*` only; a
/// root agent listens at `DIR/secret/agent.sock` (mode 0666), and an allowed server at
/// `DIR/open/ok.sock`. As nobody, `unshare -Urm` makes a user and a mount namespace,
/// bind-mounts `DIR/secret` onto `DIR/allowed` and connects to `DIR/allowed/agent.sock`. The
/// broker resolved the path under the caller's root, in the caller's mount namespace, where
/// the bind mount gives the agent the allowed name.
///
/// Closed twice over: without `namespaces = ["mount"]` the filter refuses `CLONE_NEWNS`
/// (and the mount calls), so `unshare -Urm` itself fails under `["user"]`
/// ([`rt_a_mount_namespace_refused_without_the_mount_grant`]); with the grant (this test),
/// the broker resolves the path the caller gave again in the mount namespace and root the
/// sandbox registered in, and refuses (`EPERM`, rule `mount-view`) unless both reach the
/// same socket. The allowed server, the same node in both views, stays reachable from the
/// new namespace.
fn userns_bind_mount_unix_path(via: Via) {
    let test = "rt_a_userns_bind_mount_reaches_unlisted_unix_socket";
    let Some(py) = nobody_python(test) else {
        return;
    };
    if which("unshare").is_none() || which("mount").is_none() {
        netjail_integration_tests::skip(test, "unshare or mount (util-linux) not found");
        return;
    }
    let dir = TempDir::new();
    chmod(dir.path(), 0o755);
    let (secret, allowed, open) = (
        dir.path().join("secret"),
        dir.path().join("allowed"),
        dir.path().join("open"),
    );
    for d in [&secret, &allowed, &open] {
        mkdir(d);
    }
    let agent = secret.join("agent.sock");
    let ok = open.join("ok.sock");
    let _agent = Server::start(&py, &agent, "SECRET");
    let _ok = Server::start(&py, &ok, "OK");
    let through = allowed.join("agent.sock");
    let script = format!(
        "mount --bind {} {} && exec {py} -c \"$1\" {} {}",
        utf8(&secret),
        utf8(&allowed),
        utf8(&through),
        utf8(&ok),
    );
    let attack = strings(&as_nobody(&[
        "unshare",
        "-Urm",
        "sh",
        "-c",
        &script,
        "sh",
        PY_PATH_CLIENT,
    ]));
    let direct = strings(&as_nobody(&[&py, "-c", PY_PATH_CLIENT, utf8(&agent)]));

    // Unconfined: nobody reaches the agent, directly and through the bind mount.
    let out = unconfined(&strs(&direct));
    assert_eq!(json(&out)[utf8(&agent)], "SECRET", "{}", out.describe());
    let out = unconfined(&strs(&attack));
    assert_eq!(json(&out)[utf8(&through)], "SECRET", "{}", out.describe());

    let policy = policy_file(&format!(
        "name = \"rt-userns\"\ndefault = \"deny\"\nnamespaces = [\"user\", \"mount\"]\n\
         [sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{}/*\", \"{}/*\"]\n",
        utf8(&allowed),
        utf8(&open)
    ));
    // Confined: the policy refuses the agent by its name...
    let out = via.run(policy.as_str(), &strs(&direct));
    assert_eq!(json(&out)[utf8(&agent)], "EPERM", "{}", out.describe());
    // ...and under any other name the sandbox gives it; what both views agree on stays.
    let out = via.run(policy.as_str(), &strs(&attack));
    assert_eq!(
        json(&out)[utf8(&through)],
        "EPERM",
        "a bind mount in the sandbox's own mount namespace took the policy's refused socket \
         to an allowed name: {}",
        out.describe()
    );
    assert_eq!(json(&out)[utf8(&ok)], "OK", "{}", out.describe());
}

both!(
    /// See [`userns_bind_mount_unix_path`].
    rt_a_userns_bind_mount_reaches_unlisted_unix_socket => userns_bind_mount_unix_path
);

/// rt_a_userns_bind_mount: `namespaces = ["user"]` grants user namespaces, not mount
/// namespaces. Unconfined, nobody makes both (`unshare -Urm`); confined under `["user"]` the
/// user namespace alone is made and `CLONE_NEWNS` is refused, by `unshare` and by `clone`.
#[test]
fn rt_a_mount_namespace_refused_without_the_mount_grant() {
    let test = "rt_a_mount_namespace_refused_without_the_mount_grant";
    let Some(py) = nobody_python(test) else {
        return;
    };
    if which("unshare").is_none() {
        netjail_integration_tests::skip(test, "unshare (util-linux) not found");
        return;
    }
    // 0x10000000 CLONE_NEWUSER, 0x20000 CLONE_NEWNS; clone() through os.fork is not enough
    // (no flags), so the raw clone is made by a child's unshare and by `unshare` itself.
    let probe = r#"
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, flags in [("user", 0x10000000), ("user_mount", 0x10000000 | 0x20000)]:
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flags) == 0 else ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    out[name] = "ok" if code == 0 else errno.errorcode.get(code, str(code))
print(json.dumps(out))
"#;
    let args = as_nobody(&[&py, "-c", probe]);
    let out = unconfined(&args);
    assert_eq!(json(&out)["user"], "ok", "{}", out.describe());
    assert_eq!(json(&out)["user_mount"], "ok", "{}", out.describe());
    let policy = policy_file("name = \"u\"\nnamespaces = [\"user\"]\n");
    let out = run(&mut confined_cmd(policy.as_str(), &args), DEFAULT_TIMEOUT);
    assert_eq!(json(&out)["user"], "ok", "{}", out.describe());
    assert_eq!(json(&out)["user_mount"], "EPERM", "{}", out.describe());
    let out = run(
        &mut confined_cmd(policy.as_str(), &as_nobody(&["unshare", "-Urm", "true"])),
        DEFAULT_TIMEOUT,
    );
    assert_ne!(out.code(), Some(0), "unshare -Urm: {}", out.describe());
}

/// Chroots into `argv[1]` (making a user namespace first when `argv[2]` is `user`: its
/// `CAP_SYS_CHROOT` there is enough), then connects as [`PY_PATH_CLIENT`] to `argv[3:]`.
const PY_CHROOT_CLIENT: &str = r#"
import ctypes, errno, json, os, socket, sys
if sys.argv[2] == "user":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:
        print(json.dumps({"unshare": errno.errorcode[ctypes.get_errno()]})); sys.exit()
try:
    os.chroot(sys.argv[1]); os.chdir("/")
except OSError as e:
    print(json.dumps({"chroot": errno.errorcode[e.errno]})); sys.exit()
out = {}
for p in sys.argv[3:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        out[p] = s.recv(64).decode()
    except OSError as e:
        out[p] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

/// **chroot** (the lead's question on rt_a_userns_bind_mount): a sandbox that may `chroot` (a
/// root sandbox keeps `CAP_SYS_CHROOT`; any sandbox granted `"user"` has it in a user
/// namespace of its own) names a socket by any tail of its path: the broker used to decide on
/// the path under the caller's root. With the agent at `DIR/secret/DIR/allowed/agent.sock`
/// and a rule for `DIR/allowed/*`, `chroot(DIR/secret)` then `connect(DIR/allowed/agent.sock)`
/// reached the agent, needing no write access anywhere (unlike `rename`, F7). The broker now
/// names the node by its path under the root the sandbox registered with, where it is
/// `DIR/secret/DIR/allowed/agent.sock`: `EPERM`. A socket inside the chroot that the policy
/// names by its full path stays reachable.
fn chroot_unix_path(via: Via) {
    let test = "rt_a_chroot_names_sockets_in_the_registered_root";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = TempDir::new();
    chmod(dir.path(), 0o755);
    let secret = dir.path().join("secret");
    let allowed = dir.path().join("allowed");
    let inner = Path::new(utf8(&secret)).join(utf8(&allowed).trim_start_matches('/'));
    mkdir(&inner);
    mkdir(&allowed);
    let mut up = inner.clone();
    while up != dir.path() {
        chmod(&up, 0o755);
        up.pop();
    }
    let agent = inner.join("agent.sock");
    let named = secret.join("named.sock");
    let _agent = Server::start(&py, &agent, "SECRET");
    let _named = Server::start(&py, &named, "NAMED");
    let chrooted = |user: &str| {
        vec![
            py.clone(),
            "-c".to_owned(),
            PY_CHROOT_CLIENT.to_owned(),
            utf8(&secret).to_owned(),
            user.to_owned(),
            format!("{}/agent.sock", utf8(&allowed)),
            "/named.sock".to_owned(),
        ]
    };
    let by_agent = format!("{}/agent.sock", utf8(&allowed));
    // Unconfined: nobody, in a user namespace of its own, reaches the agent by the short name.
    let nobody_attack: Vec<String> = as_nobody(&[])
        .into_iter()
        .map(str::to_owned)
        .chain(chrooted("user"))
        .collect();
    let out = unconfined(&strs(&nobody_attack));
    assert_eq!(json(&out)[&by_agent], "SECRET", "{}", out.describe());
    let root_attack = chrooted("root");
    let out = unconfined(&strs(&root_attack));
    assert_eq!(json(&out)[&by_agent], "SECRET", "{}", out.describe());

    let policy = policy_file(&format!(
        "name = \"rt-chroot\"\ndefault = \"deny\"\nnamespaces = [\"user\"]\n\
         [[allow]]\nunix = [\"{}/*\", \"{}\"]\n",
        utf8(&allowed),
        utf8(&named)
    ));
    for (who, attack) in [("nobody", &nobody_attack), ("root", &root_attack)] {
        let out = via.run(policy.as_str(), &strs(attack));
        assert_eq!(
            json(&out)[&by_agent],
            "EPERM",
            "{who}: a chroot gave the agent an allowed name: {}",
            out.describe()
        );
        assert_eq!(
            json(&out)["/named.sock"],
            "NAMED",
            "{who}: {}",
            out.describe()
        );
    }
}

both!(
    /// See [`chroot_unix_path`].
    rt_a_chroot_names_sockets_in_the_registered_root => chroot_unix_path
);

// ---- other processes' limits and scheduling -----------------------------------------------------

/// `prlimit(PID, RLIMIT_CPU, (0, 0))` for every PID argument, printing
/// `{"PID": "ok" | ERRNO}`.
const PY_PRLIMIT_CPU: &str = r#"
import errno, json, resource, sys
out = {}
for pid in sys.argv[1:]:
    try:
        resource.prlimit(int(pid), resource.RLIMIT_CPU, (0, 0))
        out[pid] = "ok"
    except OSError as e:
        out[pid] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

/// A process that burns CPU (so that an `RLIMIT_CPU` of 0 kills it), as `prefix` says.
fn spinner(prefix: &[&str]) -> Child {
    let mut args: Vec<&str> = prefix.to_vec();
    args.extend(["sh", "-c", "while :; do :; done"]);
    Command::new(args[0]).args(&args[1..]).spawn().unwrap()
}

/// Ends a spinner by pid.
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether `child` is still running `for_how_long` from now.
fn survives(child: &mut Child, for_how_long: Duration) -> bool {
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// **rt_b_root_sandbox_prlimit_kills_the_broker** (High): a root sandbox (`--allow-root`,
/// `deny-all`) called `prlimit(netjaild, RLIMIT_CPU, {0, 0})`; the kernel allowed it (same
/// uids, and `CAP_SYS_RESOURCE` is kept) and SIGKILLed netjaild at its next CPU tick, after
/// which every other sandbox's calls failed. (`RLIMIT_NOFILE` of 0 left it unable to serve
/// anyone; `setpriority`, `sched_setscheduler` reniced it.) Landlock's signal scope refuses
/// `kill()` of the broker, but no scope covers `prlimit`.
///
/// Now `prlimit64` with a new limit and a pid other than 0 goes to the broker, which lets
/// the kernel go on only for a thread of the caller's own thread group: `EPERM`, and the
/// broker serves another sandbox afterwards.
#[test]
fn rt_b_root_sandbox_prlimit_kills_the_broker() {
    let test = "rt_b_root_sandbox_prlimit_kills_the_broker";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    // Unconfined: prlimit(RLIMIT_CPU, 0) of a busy process kills it.
    let mut victim = spinner(&[]);
    let pid = victim.id().to_string();
    let out = unconfined(&[&py, "-c", PY_PRLIMIT_CPU, &pid]);
    assert_eq!(out.json()[&pid], "ok", "{}", out.describe());
    assert!(
        !survives(&mut victim, Duration::from_secs(5)),
        "unconfined: the victim lives"
    );

    // Confined: the same call on the broker that serves the sandbox.
    let mut broker = Broker::start();
    let bpid = broker.pid().to_string();
    let out = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &[&py, "-c", PY_PRLIMIT_CPU, &bpid]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let answer = out.json()[&bpid].clone();
    // Another sandbox of the same broker connects to a listener, twenty times over 3 s: the
    // broker runs (and so would meet a CPU limit).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c)
        }
    });
    let victim = format!(
        "import socket, time\nok = 0\nfor i in range(20):\n    try:\n        \
         socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); ok += 1\n    \
         except OSError:\n        pass\n    time.sleep(0.15)\nprint('{{\"ok\": %d}}' % ok)\n"
    );
    let out = run(
        &mut confined_with_broker_cmd(&broker, "loopback-only", &[&py, "-c", &victim]),
        Duration::from_secs(90),
    );
    let served = out.json.as_ref().map(|v| v["ok"].clone());
    let alive = broker.is_alive();
    assert!(
        alive && answer == "EPERM",
        "a root sandbox set netjaild's RLIMIT_CPU ({answer}); broker alive afterwards: {alive}; \
         another sandbox's connects served: {served:?}; {}",
        out.describe()
    );
    assert_eq!(served, Some(Value::from(20)), "{}", out.describe());
}

/// **rt_b_prlimit_is_a_signal_past_the_landlock_scope**: a sandbox of an ordinary user
/// (`nobody`, `deny-all`, Landlock on) killed a process of the same user outside the sandbox
/// with `prlimit(PID, RLIMIT_CPU, {0, 0})`, while `kill(PID, SIGTERM)` got `EPERM` (Landlock's
/// signal scope): the limit was a signal by another name. Now `EPERM` too, and the victim
/// lives.
#[test]
fn rt_b_prlimit_is_a_signal_past_the_landlock_scope() {
    let test = "rt_b_prlimit_is_a_signal_past_the_landlock_scope";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let nobody = as_nobody(&[]);
    // Unconfined, nobody kills a spinner of nobody's.
    let mut victim = spinner(&nobody);
    let pid = victim.id().to_string();
    let mut args = nobody.clone();
    args.extend([py.as_str(), "-c", PY_PRLIMIT_CPU, &pid]);
    let out = unconfined(&args);
    assert_eq!(out.json()[&pid], "ok", "{}", out.describe());
    assert!(!survives(&mut victim, Duration::from_secs(5)), "unconfined");

    let mut victim = spinner(&nobody);
    let pid = victim.id().to_string();
    let kill_then_prlimit = format!(
        "import os, errno, json\n\
         try:\n    os.kill({pid}, 15); k = 'ok'\n\
         except OSError as e:\n    k = errno.errorcode[e.errno]\n\
         print(json.dumps({{'kill': k}}))\n{PY_PRLIMIT_CPU}"
    );
    let mut cmd = Command::new(nobody[0]);
    cmd.args(&nobody[1..])
        .arg(netjail_bin())
        .env_remove("NETJAIL_BROKER")
        .args(["run", "--policy", "deny-all", "--"])
        .args([py.as_str(), "-c", &kill_then_prlimit, &pid]);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    assert!(
        out.stdout.contains("\"kill\": \"EPERM\""),
        "Landlock scope: {}",
        out.describe()
    );
    let answer = out.json()[&pid].clone();
    let lives = survives(&mut victim, Duration::from_secs(4));
    stop(victim);
    assert!(
        lives && answer == "EPERM",
        "the sandbox set RLIMIT_CPU of a process outside it ({answer}); it survived: {lives}"
    );
}

/// **rt_b_root_sandbox_deprioritises_the_broker**: a root sandbox lowered netjaild below
/// everyone: `/proc/BROKER/oom_score_adj` = 1000, `SCHED_IDLE` on every broker thread
/// (`sched_setscheduler`), one CPU (`sched_setaffinity`), while `kill()` of the same pid got
/// `EPERM` (Landlock). Now the `sched_set*` calls are refused by the broker, and a root
/// sandbox's `/proc` is a procfs of its own with `hidepid=ptraceable`, where the broker (and
/// every process outside the sandbox) has no `/proc/PID`.
#[test]
fn rt_b_root_sandbox_deprioritises_the_broker() {
    let test = "rt_b_root_sandbox_deprioritises_the_broker";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let probe = r#"
import errno, json, os, sys
pid = int(sys.argv[1])
out = {}
def attempt(name, f):
    try:
        f(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def oom():
    with open("/proc/%d/oom_score_adj" % pid, "w") as f:
        f.write("1000")
def idle():
    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    for tid in os.listdir("/proc/%d/task" % pid):
        os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
attempt("oom_score_adj", oom)
attempt("sched_idle", idle)
attempt("affinity", lambda: os.sched_setaffinity(pid, {0}))
attempt("nice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))
print(json.dumps(out))
"#;
    let kinds = ["oom_score_adj", "sched_idle", "affinity", "nice"];
    // Unconfined, on a process of the test's own.
    let victim = spinner(&[]);
    let vpid = victim.id().to_string();
    let native = unconfined(&[&py, "-c", probe, &vpid]);
    stop(victim);
    for k in kinds {
        assert_eq!(
            native.json()[k],
            "ok",
            "unconfined {k}: {}",
            native.describe()
        );
    }
    let mut broker = Broker::start();
    let bpid = broker.pid().to_string();
    let before = std::fs::read_to_string(format!("/proc/{bpid}/oom_score_adj")).unwrap();
    let out = run(
        &mut confined_with_broker_cmd(&broker, "deny-all", &[&py, "-c", probe, &bpid]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let oom = std::fs::read_to_string(format!("/proc/{bpid}/oom_score_adj")).unwrap_or_default();
    let changed: Vec<&str> = kinds
        .into_iter()
        .filter(|k| out.json()[*k] == "ok")
        .collect();
    assert!(broker.is_alive());
    assert!(
        changed.is_empty() && oom == before,
        "a root sandbox changed the broker's {changed:?} (oom_score_adj now {}): {}",
        oom.trim(),
        out.describe()
    );
    // Named by pid: refused by the broker; through /proc: no such file in the sandbox's view.
    for k in ["sched_idle", "affinity", "nice"] {
        assert_eq!(out.json()[k], "EPERM", "{k}: {}", out.describe());
    }
    assert_eq!(out.json()["oom_score_adj"], "ENOENT", "{}", out.describe());
}

/// What a root sandbox's `/proc` shows: unconfined, the test's own parent and pid 1 are
/// there; confined, only the sandbox's processes (`hidepid=ptraceable` on a procfs of its
/// own, Landlock's domain deciding what is ptraceable), while `/proc/self`, `/proc/sys` and the
/// sandbox's children keep working. A non-root sandbox keeps the host's `/proc` (it cannot
/// make a mount namespace); what that leaves is in docs/security.md.
#[test]
fn rt_b_root_sandbox_sees_only_its_own_processes() {
    let test = "rt_b_root_sandbox_sees_only_its_own_processes";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let probe = r#"
import json, os, subprocess, sys
child = subprocess.Popen(["sleep", "5"])
pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
print(json.dumps({
    "pids": pids, "me": os.getpid(), "child": child.pid,
    "init": os.path.exists("/proc/1"),
    "self": os.path.exists("/proc/self/status"),
    "sys": os.path.exists("/proc/sys/kernel/core_pattern"),
    "outside": os.path.exists("/proc/%s" % sys.argv[1]),
}))
child.kill()
"#;
    let me = std::process::id().to_string();
    let out = unconfined(&[&py, "-c", probe, &me]);
    let v = json(&out);
    assert!(
        v["init"] == true && v["outside"] == true,
        "{}",
        out.describe()
    );
    let out = run(
        &mut confined_cmd("deny-all", &[&py, "-c", probe, &me]),
        DEFAULT_TIMEOUT,
    );
    let v = json(&out);
    assert_eq!(v["init"], false, "{}", out.describe());
    assert_eq!(v["outside"], false, "{}", out.describe());
    assert!(v["self"] == true && v["sys"] == true, "{}", out.describe());
    let pids: Vec<i64> = v["pids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let ours = [v["me"].as_i64().unwrap(), v["child"].as_i64().unwrap()];
    assert!(
        pids.iter().all(|p| ours.contains(p)) && ours.iter().all(|p| pids.contains(p)),
        "a root sandbox sees other processes: {pids:?}, its own are {ours:?}"
    );
}

/// Makes the process calls on the caller's own threads, as a program with a thread pool
/// does (`pthread_setaffinity_np`, `pthread_setschedparam`): the whole process by pid 0 and
/// by its pid, this thread and a second thread by their tids. Prints `{call: "ok" | errno}`.
const PY_OWN_THREADS: &str = r#"
import ctypes, errno, json, os, resource, threading
libc = ctypes.CDLL(None, use_errno=True)
SYS_ioprio_set = {"x86_64": 251, "aarch64": 30}[os.uname().machine]
out = {}
def attempt(name, f):
    try:
        r = f()
        if isinstance(r, int) and r < 0:
            raise OSError(ctypes.get_errno(), name)
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
ready, done = threading.Event(), threading.Event()
other = {}
def worker():
    other["tid"] = threading.get_native_id(); ready.set(); done.wait(20)
t = threading.Thread(target=worker); t.start(); ready.wait()
try:
    cpus = os.sched_getaffinity(0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for who, pid in [("zero", 0), ("pid", os.getpid()), ("tid", threading.get_native_id()),
                     ("thread", other["tid"])]:
        attempt(who + ".affinity", lambda: os.sched_setaffinity(pid, cpus))
        attempt(who + ".prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard)))
        attempt(who + ".nice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 1))
        attempt(who + ".sched", lambda: os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0)))
        attempt(who + ".ioprio", lambda: libc.syscall(SYS_ioprio_set, 1, pid, (2 << 13) | 4))
finally:
    done.set(); t.join()
print(json.dumps(out))
"#;

/// The other side of the process-call refusals (faithful, invariant 11): a program naming its
/// own threads gets what the kernel gives it, confined as unconfined, in the broker's pid
/// namespace and in one of its own (`unshare -Urpf` under `namespaces = ["user"]`, where its
/// pids are not the broker's: the broker compares each thread's last `NSpid`).
fn own_threads(via: Via) {
    let test = "rt_b_own_threads_keep_their_process_calls";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let native = as_nobody(&[&py, "-c", PY_OWN_THREADS]);
    let nested = as_nobody(&["unshare", "-Urpf", &py, "-c", PY_OWN_THREADS]);
    let policy = policy_file("name = \"own\"\ndefault = \"deny\"\nnamespaces = [\"user\"]\n");
    for args in [&native, &nested] {
        let free = unconfined(args);
        let caged = via.run(policy.as_str(), args);
        let (free, caged) = (json(&free), json(&caged));
        assert!(
            free.as_object().unwrap().values().all(|v| v == "ok"),
            "unconfined: {free}"
        );
        assert_eq!(free, caged, "{args:?}");
    }
}

both!(
    /// See [`own_threads`].
    rt_b_own_threads_keep_their_process_calls => own_threads
);

/// `setpriority` and `ioprio_set` of a process group or a user reach every process in it:
/// as root, unconfined, `setpriority(PRIO_USER, UID, 5)` and `PRIO_PGRP` renice a spinner of
/// a uid nothing else uses, in a process group of its own. Confined (a root sandbox, which
/// keeps `CAP_SYS_NICE`), every group and user form is `EPERM`, group 0 (the sandbox's own,
/// which holds the launcher) included, and the spinner's priority does not change.
#[test]
fn rt_b_process_groups_and_users_refused() {
    let test = "rt_b_process_groups_and_users_refused";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let uid = "54321";
    let victim = spinner(&[
        "setpriv",
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "--",
        "setsid",
    ]);
    let pid = victim.id();
    // setsid made the spinner (sh, after the exec of setsid) the leader of a new group.
    std::thread::sleep(Duration::from_millis(200));
    let probe = r#"
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_ioprio_set = {"x86_64": 251, "aarch64": 30}[os.uname().machine]
uid, pgid = int(sys.argv[1]), int(sys.argv[2])
out = {}
def attempt(name, f):
    try:
        if f() < 0:
            raise OSError(ctypes.get_errno(), name)
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
attempt("prio_user", lambda: libc.setpriority(2, uid, 5))
attempt("prio_pgrp", lambda: libc.setpriority(1, pgid, 6))
attempt("ioprio_user", lambda: libc.syscall(SYS_ioprio_set, 3, uid, (2 << 13) | 7))
attempt("ioprio_pgrp", lambda: libc.syscall(SYS_ioprio_set, 2, pgid, (2 << 13) | 7))
if len(sys.argv) > 3:
    attempt("prio_pgrp_own", lambda: libc.setpriority(1, 0, 0))
    attempt("ioprio_pgrp_own", lambda: libc.syscall(SYS_ioprio_set, 2, 0, (2 << 13) | 4))
print(json.dumps(out))
"#;
    let nice_of = |pid: u32| -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(16).unwrap().parse().unwrap()
    };
    let pgid = pid.to_string();
    let out = unconfined(&[&py, "-c", probe, uid, &pgid]);
    for k in ["prio_user", "prio_pgrp", "ioprio_user", "ioprio_pgrp"] {
        assert_eq!(out.json()[k], "ok", "unconfined {k}: {}", out.describe());
    }
    assert_eq!(nice_of(pid), 6, "unconfined: PRIO_PGRP reniced the spinner");
    let reset = unconfined(&[
        &py,
        "-c",
        "import os, sys; os.setpriority(os.PRIO_PROCESS, int(sys.argv[1]), 0)",
        &pgid,
    ]);
    assert_eq!(reset.code(), Some(0), "{}", reset.describe());
    assert_eq!(nice_of(pid), 0);
    let out = run(
        &mut confined_cmd("deny-all", &[&py, "-c", probe, uid, &pgid, "own"]),
        DEFAULT_TIMEOUT,
    );
    let nice = nice_of(pid);
    stop(victim);
    for k in [
        "prio_user",
        "prio_pgrp",
        "ioprio_user",
        "ioprio_pgrp",
        "prio_pgrp_own",
        "ioprio_pgrp_own",
    ] {
        assert_eq!(out.json()[k], "EPERM", "confined {k}: {}", out.describe());
    }
    assert_eq!(nice, 0, "the spinner was reniced from inside a sandbox");
}

/// Invariant 5 for the process calls: what a program does to itself by pid 0 (`nice`,
/// `taskset`, `ulimit`, `ionice` without `-p`) never reaches the broker. The embedded
/// broker's last line counts the sandbox's decisions: 0 after a program made every process
/// call by pid 0, 1 after one more call by its own pid.
#[test]
fn rt_b_calls_on_the_caller_itself_never_reach_the_broker() {
    let test = "rt_b_calls_on_the_caller_itself_never_reach_the_broker";
    let Some(py) = need_python(test) else {
        return;
    };
    let probe = r#"
import ctypes, json, os, resource, sys
libc = ctypes.CDLL(None, use_errno=True)
SYS_ioprio_set = {"x86_64": 251, "aarch64": 30}[os.uname().machine]
cpus = os.sched_getaffinity(0)
for _ in range(100):
    os.sched_setaffinity(0, cpus)
    os.setpriority(os.PRIO_PROCESS, 0, 1)
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    resource.prlimit(0, resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    assert libc.syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 4) == 0
if sys.argv[1] == "pid":
    os.sched_setaffinity(os.getpid(), cpus)
print(json.dumps({"ok": True}))
"#;
    for (how, decisions) in [("zero", "decisions=0"), ("pid", "decisions=1")] {
        let out = run(
            &mut confined_cmd("deny-all", &[&py, "-c", probe, how]),
            DEFAULT_TIMEOUT,
        );
        assert_eq!(out.json()["ok"], true, "{}", out.describe());
        let retired = out
            .stderr
            .lines()
            .find(|l| l.contains("sandbox retired"))
            .unwrap_or_else(|| panic!("no retirement line: {}", out.describe()));
        assert!(retired.contains(decisions), "{how}: {retired}");
    }
}

// ---- sockets the kernel makes under another name --------------------------------------------

/// Runs `probe` (python, printing one JSON line) in a network namespace made for the test,
/// first unconfined, then confined by `policy`; returns the two lines.
fn in_netns_twice(py: &str, probe: &str, policy: &str) -> (Value, Value) {
    let script = format!(
        "ip link set lo up && {py} -c '{probe}' && {nj} run --allow-root --policy {policy} -- {py} -c '{probe}'",
        nj = netjail_bin().display(),
    );
    let out = unconfined(&["unshare", "-n", "sh", "-c", &script]);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    let mut lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{}", out.describe());
    let confined = lines.pop().unwrap();
    (lines.pop().unwrap(), confined)
}

/// **rt_b_inet_sock_packet_is_a_packet_socket**: under a policy allowing `inet:*` and
/// keeping `CAP_NET_RAW`, but not the `packet` family, `socket(AF_INET, SOCK_PACKET,
/// htons(ETH_P_ALL))` gave an `AF_PACKET` socket (`__sock_create` turns `PF_INET` +
/// `SOCK_PACKET` into `PF_PACKET`), which sniffs every frame of the network namespace. The
/// filter now refuses the pair as it refuses the `packet` family (`EAFNOSUPPORT`, the
/// policy's `[sockets] refuse`), the type compared under `SOCK_TYPE_MASK` (flags included).
#[test]
fn rt_b_inet_sock_packet_is_a_packet_socket() {
    let test = "rt_b_inet_sock_packet_is_a_packet_socket";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let policy = policy_file(
        "name = \"inet-raw\"\ndefault = \"deny\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n\
         [sockets]\nallow = [\"inet:*\", \"unix:*\"]\n",
    );
    let probe = r#"
import errno, json, socket
out = {}
for name, fam, ty in [("packet", 17, socket.SOCK_RAW), ("inet_sock_packet", socket.AF_INET, 10),
                      ("nonblock", socket.AF_INET, 10 | socket.SOCK_NONBLOCK)]:
    try:
        s = socket.socket(fam, ty, socket.htons(3))
        out[name] = "family %d" % s.getsockopt(socket.SOL_SOCKET, 39)
        s.close()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;
    let (native, confined) = in_netns_twice(&py, probe, policy.as_str());
    for k in ["packet", "inet_sock_packet", "nonblock"] {
        assert_eq!(native[k], "family 17", "unconfined {k}: {native}");
    }
    for k in ["packet", "inet_sock_packet", "nonblock"] {
        assert_eq!(confined[k], "EAFNOSUPPORT", "confined {k}: {confined}");
    }
}

/// rt_b_inet_sock_packet, the other aliases: `socket(AF_INET or AF_INET6, SOCK_RAW,
/// IPPROTO_RAW)` is a raw socket that sends IP headers of the program's own making
/// (`IP_HDRINCL`, which the filter refuses by name, set by the kernel for that protocol), and
/// `IPV6_HDRINCL` does the same for any raw IPv6 socket: the destination in such a header is
/// one no broker reads. Under `inet:*`/`inet6:raw` with `CAP_NET_RAW`, both work unconfined
/// and are `EPERM` confined, while an ICMP raw socket is still made.
#[test]
fn rt_b_ipproto_raw_and_ipv6_hdrincl_refused() {
    let test = "rt_b_ipproto_raw_and_ipv6_hdrincl_refused";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let policy = policy_file(
        "name = \"raw\"\ndefault = \"deny\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n\
         [sockets]\nallow = [\"inet:*\", \"inet6:raw\", \"unix:*\"]\n",
    );
    let probe = r#"
import errno, json, socket
out = {}
def attempt(name, f):
    try:
        f(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
attempt("inet_raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 255).close())
attempt("inet6_raw", lambda: socket.socket(socket.AF_INET6, socket.SOCK_RAW, 255).close())
attempt("icmp", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1).close())
def hdrincl():
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 58)
    s.setsockopt(socket.IPPROTO_IPV6, 36, 1)
attempt("ipv6_hdrincl", hdrincl)
print(json.dumps(out))
"#;
    let (native, confined) = in_netns_twice(&py, probe, policy.as_str());
    for k in ["inet_raw", "inet6_raw", "icmp", "ipv6_hdrincl"] {
        assert_eq!(native[k], "ok", "unconfined {k}: {native}");
    }
    for k in ["inet_raw", "inet6_raw", "ipv6_hdrincl"] {
        assert_eq!(confined[k], "EPERM", "confined {k}: {confined}");
    }
    assert_eq!(confined["icmp"], "ok", "{confined}");
}
