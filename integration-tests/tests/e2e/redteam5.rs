//! Red team, fifth round (E1): a second sandbox, served by another broker process, changes the
//! filter of a datagram socket the first is binding through a flipping symlink.
//!
//! The first sandbox (A) passes each new datagram socket to the second (B) by `SCM_RIGHTS`
//! and binds it at `link/s` while a child flips `link` between `allowed` and `secret`; B,
//! under its own `netjail run` (its own embedded broker), detaches or attaches the socket's
//! filter without pause meanwhile. A broker's hold on the socket's filter is its own process's:
//! with the bind made where the path happened to lead and checked afterwards, A read at the
//! refused name what was sent there. The bind must land in the directory decided on, so that
//! no socket of A is ever bound in `secret/`. Unconfined (A binds straight at `secret/s`), A
//! reads.

use std::process::Command;
use std::time::Duration;

use std::path::Path;

use netjail_integration_tests::{
    confined_cmd, netjail_bin, policy_file, run, spawn, unconfined, Outcome, Running,
    DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::redteam3::{attack_dir, result, SENDER};
use crate::{as_nobody, nobody_python};

/// B: listens at `DIR/allowed/chan`, takes each socket A passes, and changes its filter in a
/// loop (`detach`: `SO_DETACH_FILTER`; `attach`: `SO_ATTACH_FILTER` with a program that
/// accepts everything) until A says its bind is done.
const HELPER: &str = r#"
import array, ctypes, json, os, select, socket, struct, sys
base, mode = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF), 8)
fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", 1, ctypes.addressof(insn)), 16)
zero = ctypes.c_int(0)
p = os.path.join(base, "allowed", "chan")
l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); l.bind(p); os.chmod(p, 0o777); l.listen(1)
print("listening", flush=True)
c, _ = l.accept()
st = {"socks": 0, "tried": 0, "changed": 0}
while True:
    msg, anc, _, _ = c.recvmsg(16, socket.CMSG_SPACE(4))
    if msg == b"q" or not msg: break
    fd = array.array("i", anc[0][2][:4])[0]; st["socks"] += 1
    c.send(b"k")
    while True:
        if mode == "detach": rc = libc.setsockopt(fd, 1, 27, ctypes.byref(zero), 4)
        else: rc = libc.setsockopt(fd, 1, 26, fprog, 16)
        st["tried"] += 1; st["changed"] += rc == 0
        if st["tried"] % 8 == 0 and select.select([c], [], [], 0)[0]: break
    c.recv(1); os.close(fd); c.send(b"k")
print(json.dumps(st), flush=True)
"#;

/// A: binds datagram sockets at `DIR/link/s` while a child flips `link` (with `direct`,
/// straight at `secret/s`), each one passed to B first, and reads whatever any of them
/// received while its file was in `secret`.
const ATTACK: &str = r#"
import array, json, os, socket, sys, time
base, secs = sys.argv[1], float(sys.argv[2])
direct = len(sys.argv) > 3
link, secret, allowed = (os.path.join(base, x) for x in ("link", "secret", "allowed"))
ch = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
for _ in range(200):
    try: ch.connect(os.path.join(allowed, "chan")); break
    except OSError: time.sleep(0.05)
flipper = 0
if not direct:
    flipper = os.fork()
    if flipper == 0:
        try:
            while True:
                for tmp, to in (("tmp-a", "allowed"), ("tmp-s", "secret")):
                    tmp = os.path.join(base, tmp)
                    try: os.unlink(tmp)
                    except FileNotFoundError: pass
                    os.symlink(to, tmp); os.rename(tmp, link)
        finally:
            os._exit(0)
r = {"tries": 0, "landed_in_secret": 0, "received": 0, "refused": 0, "bound": 0}
end = time.monotonic() + secs
while time.monotonic() < end:
    r["tries"] += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ch.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno()]).tobytes())])
    ch.recv(1)
    try:
        s.bind(os.path.join(secret, "s") if direct else os.path.join(link, "s"))
        r["bound"] += 1
    except OSError as e:
        if e.errno == 1: r["refused"] += 1
    if direct: time.sleep(0.01)
    ch.send(b"d")
    ch.recv(1)
    if os.path.lexists(os.path.join(secret, "s")):
        r["landed_in_secret"] += 1
        s.setblocking(False)
        try:
            while True:
                s.recv(100); r["received"] += 1
        except OSError: pass
        os.unlink(os.path.join(secret, "s"))
    try: os.unlink(os.path.join(allowed, "s"))
    except FileNotFoundError: pass
    s.close()
    if direct and r["received"]: break
ch.send(b"q")
if flipper: os.kill(flipper, 9); os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
"#;

/// B's counts, once A is done.
fn helper_result(helper: Running) -> (Value, Outcome) {
    let out = helper.wait(Duration::from_secs(30));
    (result(&out), out)
}

/// Waits for B's `listening`.
fn listening(helper: &Running) {
    let line = helper.read_line(Duration::from_secs(20));
    assert_eq!(
        line.as_deref(),
        Some("listening"),
        "B never listened: {}",
        helper.stderr_so_far()
    );
}

/// `netjail run --policy POLICY -- ARGS...` with `ARGS` run as uid 65534: the launcher (and
/// its embedded broker) as root, or with `nobody` as uid 65534 too (a broker without any
/// capability).
fn run_cmd(policy: &str, nobody: bool, args: &[&str]) -> Command {
    if !nobody {
        return confined_cmd(policy, &as_nobody(args));
    }
    let bin = netjail_bin();
    let mut argv = as_nobody(&[
        bin.to_str().unwrap(),
        "run",
        "--embedded",
        "--policy",
        policy,
    ]);
    argv.push("--");
    argv.extend_from_slice(args);
    let mut cmd = Command::new(argv[0]);
    cmd.env_remove("NETJAIL_BROKER").args(&argv[1..]);
    cmd
}

/// The attack unconfined: bound straight at the refused name, A reads what is sent there.
fn unconfined_attack_reads(py: &str, dir: &Path) {
    let base = dir.to_str().unwrap();
    let args = as_nobody(&[py, "-c", HELPER, base, "detach"]);
    let helper = spawn(Command::new(args[0]).args(&args[1..]));
    listening(&helper);
    let sender = spawn(Command::new(py).args(["-c", SENDER, base, "5"]));
    let out = unconfined(&as_nobody(&[py, "-c", ATTACK, base, "3", "direct"]));
    drop(sender);
    let (b, b_out) = helper_result(helper);
    let v = result(&out);
    assert!(
        v["received"].as_u64().unwrap_or(0) > 0,
        "unconfined, the attack read nothing: {}",
        out.describe()
    );
    assert!(
        b["socks"].as_u64().unwrap_or(0) > 0,
        "unconfined, B was passed no socket: {}",
        b_out.describe()
    );
    std::fs::remove_file(dir.join("allowed/chan")).ok();
}

/// The attack confined, A and B each under its own `netjail run` (as root, or as uid 65534
/// with `nobody`), B detaching or attaching the filter: A's counts, and how many of its binds
/// were allowed in the audit.
fn confined_attack(py: &str, dir: &Path, nobody: bool, mode: &str) -> (Value, usize) {
    let base = dir.to_str().unwrap();
    let policy = policy_file(&format!(
        "name = \"rt5\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    let mut helper_cmd = run_cmd(policy.as_str(), nobody, &[py, "-c", HELPER, base, mode]);
    let helper = spawn(&mut helper_cmd);
    listening(&helper);
    let sender = spawn(Command::new(py).args(["-c", SENDER, base, "10"]));
    let attack = [py, "-c", ATTACK, base, "6"];
    let out = run(
        &mut run_cmd(policy.as_str(), nobody, &attack),
        DEFAULT_TIMEOUT,
    );
    drop(sender);
    let (b, b_out) = helper_result(helper);
    let v: Value = result(&out);
    eprintln!("{mode} (nobody brokers: {nobody}): A {v} B {b}");
    assert!(
        v["tries"].as_u64().unwrap_or(0) > 0 && b["tried"].as_u64().unwrap_or(0) > 0,
        "{mode}: A bound nothing or B changed no filter (nothing proven): {}\n{}",
        out.describe(),
        b_out.describe()
    );
    assert_eq!(
        v["received"].as_u64(),
        Some(0),
        "{mode}: a socket bound at a refused name received datagrams: {}",
        out.describe()
    );
    assert_eq!(
        v["landed_in_secret"].as_u64(),
        Some(0),
        "{mode}: a bind through the flipping link landed in secret/: {}",
        out.describe()
    );
    std::fs::remove_file(dir.join("allowed/chan")).ok();
    let allowed = out
        .stderr
        .lines()
        .filter(|l| l.contains("op=\"bind\"") && l.contains("decision=\"allow\""))
        .count();
    (v, allowed)
}

#[test]
fn rt5_e1_a_filter_changed_through_another_broker_reads_nothing_at_a_refused_name() {
    let test = "rt5_e1_a_filter_changed_through_another_broker_reads_nothing_at_a_refused_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    unconfined_attack_reads(&py, dir.path());
    // Confined, each under its own `netjail run` (root: the bind is made on a thread of its
    // own mount namespace): only `allowed/` may be bound.
    for mode in ["detach", "attach"] {
        confined_attack(&py, dir.path(), false, mode);
    }
}

/// The same with both `netjail run`s as uid 65534: their embedded brokers have no
/// `CAP_SYS_ADMIN`, and the bind is made in a forked child of a user namespace of the
/// broker's own (`broker/src/sys/userns.rs`). Before that, such a broker bound through the
/// link, checked afterwards, with a drop-all filter its own hold kept in place only against
/// the sandboxes it served: B lifted it through its own broker and A read at the refused name.
#[test]
fn rt5_e1_with_brokers_without_privilege_reads_nothing_at_a_refused_name() {
    let test = "rt5_e1_with_brokers_without_privilege_reads_nothing_at_a_refused_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let py = nobody_launcher_python(&py);
    let dir = attack_dir();
    if !user_namespaces_for(test, &py, dir.path()) {
        return;
    }
    unconfined_attack_reads(&py, dir.path());
    for mode in ["detach", "attach"] {
        let (v, allowed) = confined_attack(&py, dir.path(), true, mode);
        // Proof that binds were made, by the kernel, in the user namespace's scaffold: some
        // were allowed and bound (none refused for want of a user namespace).
        assert!(
            allowed > 0 && v["bound"].as_u64().unwrap_or(0) > 0,
            "{mode}: no bind allowed and made: {v}"
        );
    }
}

/// A python3 that a `netjail run` of uid 65534 can run: the system's where there is one (the
/// one [`nobody_python`] finds may lie under a directory only root may search, which a
/// launcher of uid 65534 cannot walk).
fn nobody_launcher_python(py: &str) -> String {
    let system = Path::new("/usr/bin/python3");
    if system.is_file() {
        return system.to_string_lossy().into_owned();
    }
    py.to_owned()
}

/// Whether a broker of uid 65534 binds datagram sockets in a scaffold (the system gives it a
/// user namespace); otherwise says `SKIP test: ...`.
fn user_namespaces_for(test: &str, py: &str, dir: &Path) -> bool {
    let base = dir.to_str().unwrap();
    let policy = policy_file(&format!(
        "name = \"rt5-userns\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    let path = format!("{base}/secret/../allowed/s");
    let args = [py, "-c", BINDS, base, &path];
    let out = run(&mut run_cmd(policy.as_str(), true, &args), DEFAULT_TIMEOUT);
    if out.stderr.contains("rule=\"unix:no-user-namespace\"") {
        netjail_integration_tests::skip(test, "no user namespace for a broker of uid 65534");
        return false;
    }
    assert_eq!(result(&out)[&path][0], "ok", "{}", out.describe());
    true
}

/// Binds a datagram and a stream socket at each path given (relative ones from `DIR/allowed`)
/// and prints `{path: [datagram, stream]}`: `"ok"` or the errno's number.
const BINDS: &str = r#"
import json, os, socket, sys
os.chdir(os.path.join(sys.argv[1], "allowed"))
r = {}
for p in sys.argv[2:]:
    r[p] = []
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.bind(p); r[p].append("ok")
        except OSError as e:
            r[p].append(e.errno)
        s.close()
        try: os.unlink(p)
        except OSError: pass
print(json.dumps(r), flush=True)
"#;

/// Gap 1 of the fix: a path whose walk looks a name up in the decided directory before its
/// last component (`allowed/x/../s`: `x` is looked up in `allowed/`, where the sandbox may put
/// a symlink to anywhere) cannot be made to land in that directory by construction. A
/// datagram bind there is refused (rule `unix:path-not-buildable`); a stream bind is made and
/// checked as before (its `listen` decides its file again). Paths that can be built bind both
/// kinds, under a root broker and one of uid 65534 alike. Unconfined, every one binds.
#[test]
fn rt5_e1_a_datagram_path_the_broker_cannot_build_is_refused() {
    let test = "rt5_e1_a_datagram_path_the_broker_cannot_build_is_refused";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let py = nobody_launcher_python(&py);
    let dir = attack_dir();
    std::fs::create_dir(dir.path().join("allowed/x")).unwrap();
    let base = dir.path().to_str().unwrap();
    let x_back = format!("{base}/allowed/x/../s");
    let built = [
        format!("{base}/allowed/s"),
        format!("{base}/secret/../allowed/s"),
        "s".to_owned(),
        "./x/../s".to_owned(),
    ];
    let mut paths: Vec<&str> = vec![&x_back];
    paths.extend(built.iter().map(String::as_str));
    let mut argv = vec![py.as_str(), "-c", BINDS, base];
    argv.extend(&paths);
    let out = unconfined(&as_nobody(&argv));
    let v = result(&out);
    for p in &paths {
        assert_eq!(
            v[*p],
            serde_json::json!(["ok", "ok"]),
            "unconfined {p}: {v}"
        );
    }
    let policy = policy_file(&format!(
        "name = \"rt5-gap1\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    for nobody in [false, true] {
        let out = run(
            &mut run_cmd(policy.as_str(), nobody, &argv),
            DEFAULT_TIMEOUT,
        );
        let v = result(&out);
        assert_eq!(
            v[&x_back],
            serde_json::json!([libc::EPERM, "ok"]),
            "nobody brokers: {nobody}: {}",
            out.describe()
        );
        assert!(
            out.stderr.contains("rule=\"unix:path-not-buildable\""),
            "no audit of the refusal: {}",
            out.describe()
        );
        for p in &built {
            assert_eq!(
                v[p.as_str()],
                serde_json::json!(["ok", "ok"]),
                "nobody brokers: {nobody}: {p}: {}",
                out.describe()
            );
        }
    }
}

/// A broker without `CAP_SYS_ADMIN` clones the decided directory's mount in a user namespace,
/// where the mounts below it are locked to it and cannot be left out: a directory with a mount
/// below it (`/run/user/UID` often has some) is cloned with them, and its datagram binds are
/// made. Run in a mount namespace the test makes, with a tmpfs on `allowed/x`.
#[test]
fn rt5_e1_a_directory_with_a_mount_below_binds_without_privilege() {
    let test = "rt5_e1_a_directory_with_a_mount_below_binds_without_privilege";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let Some(unshare) = netjail_integration_tests::which("unshare") else {
        netjail_integration_tests::skip(test, "unshare (util-linux) not found");
        return;
    };
    let py = nobody_launcher_python(&py);
    let dir = attack_dir();
    if !user_namespaces_for(test, &py, dir.path()) {
        return;
    }
    std::fs::create_dir(dir.path().join("allowed/x")).unwrap();
    let base = dir.path().to_str().unwrap();
    let policy = policy_file(&format!(
        "name = \"rt5-below\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    let paths = [
        format!("{base}/allowed/s"),
        format!("{base}/secret/../allowed/s"),
    ];
    let bin = netjail_bin();
    let mut inner = as_nobody(&[bin.to_str().unwrap(), "run", "--embedded", "--policy"]);
    inner.extend([policy.as_str(), "--", py.as_str(), "-c", BINDS, base]);
    inner.extend(paths.iter().map(String::as_str));
    let script = format!("mount -t tmpfs none {base}/allowed/x && exec \"$@\"");
    let mut cmd = Command::new(unshare);
    cmd.env_remove("NETJAIL_BROKER")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .args(&inner);
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    let v = result(&out);
    for p in &paths {
        assert_eq!(
            v[p.as_str()],
            serde_json::json!(["ok", "ok"]),
            "{p}: {}",
            out.describe()
        );
    }
}
