//! The confinement around the network calls: what the filter refuses in the kernel (D5, L2,
//! J1), what children inherit (D4), what setuid binaries gain (D6), and what happens when no
//! broker answers (M4). Each attack runs unconfined first (it works, so the probe can fail)
//! and then confined (it must not).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::probe::SECRET;
use netjail_integration_tests::{
    allow_connect_policy, confined, confined_with_broker, confined_with_broker_cmd, netjail_bin,
    policy_file, run, skip, spawn, sys, target_profile_dir, unconfined, Broker, Canary, Outcome,
    Running, TempDir, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{
    as_nobody, assert_eperm, assert_ok, have_setpriv, need_python, need_root, probe, self_status,
    NOBODY,
};

const WAIT: Duration = Duration::from_secs(5);

// ---- D5: other processes' memory ------------------------------------------------------------

/// An unconfined `nj-probe idle` that holds [`SECRET`]: the process, its pid and the secret's
/// address.
pub(crate) fn idle_target() -> (Running, String, String) {
    let mut cmd = Command::new(probe());
    cmd.args(["idle", "30"]);
    let target = spawn(&mut cmd);
    let line = target
        .read_line(WAIT)
        .expect("the idle probe printed its address");
    let v: Value = serde_json::from_str(&line).expect("idle prints JSON");
    let pid = v["pid"].to_string();
    let addr = v["addr"].as_str().expect("addr").to_owned();
    (target, pid, addr)
}

pub(crate) fn secret() -> String {
    String::from_utf8_lossy(SECRET).into_owned()
}

/// D5: a confined process cannot ptrace a process outside the sandbox (and through it make
/// the network calls it may not make, or read its memory).
#[test]
fn s_d5_ptrace_outside_process_refused() {
    if !need_root("s_d5_ptrace_outside_process_refused") {
        return;
    }
    let (target, pid, addr) = idle_target();
    let out = unconfined(&[probe(), "ptrace", &pid, &addr]);
    assert_ok(&out);
    let v = out.json();
    assert_eq!(v["stopped"], true, "{}", out.describe());
    assert_eq!(
        v["peek"],
        secret()[..8],
        "PEEKDATA did not read the secret: {}",
        out.describe()
    );
    assert_eq!(v["detach"], "ok", "{}", out.describe());

    let out = confined("deny-all", &[probe(), "ptrace", &pid, &addr]);
    assert_eperm(&out);
    assert!(out.json()["peek"].is_null(), "{}", out.describe());
    drop(target);
}

/// D5: a confined process cannot read the memory of a process outside the sandbox with
/// `process_vm_readv`.
#[test]
fn s_d5_process_vm_readv_outside_process_refused() {
    if !need_root("s_d5_process_vm_readv_outside_process_refused") {
        return;
    }
    let (target, pid, addr) = idle_target();
    let len = SECRET.len().to_string();
    let out = unconfined(&[probe(), "vm-read", &pid, &addr, &len]);
    assert_ok(&out);
    assert_eq!(out.json()["data"], secret(), "{}", out.describe());

    let out = confined("deny-all", &[probe(), "vm-read", &pid, &addr, &len]);
    assert_eperm(&out);
    assert!(out.json()["data"].is_null(), "{}", out.describe());
    drop(target);
}

// ---- L2 / J1: the socket() allow-list, in the kernel ------------------------------------------

/// `AF_PACKET` `SOCK_RAW`: sniffing and forging frames.
const PACKET_RAW: &str = "17:3";
/// `AF_INET` `SOCK_RAW` `IPPROTO_ICMP`.
const INET_RAW_ICMP: &str = "2:3:1";
/// `AF_INET`, `SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC`, `IPPROTO_ICMP`: flags do not hide
/// the type.
const INET_RAW_FLAGS: &str = "2:0x80803:1";
/// `AF_INET`, type with bit 32 set above `SOCK_RAW`: the kernel takes the low 32 bits (raw).
const INET_RAW_HIGH_TYPE: &str = "2:0x100000003:1";
/// `AF_NETLINK` `SOCK_RAW` `NETLINK_ROUTE`: reading interfaces and routes (the broker makes
/// it, so that it never changes them: N1).
const NETLINK_ROUTE: &str = "16:3:0";
/// `AF_NETLINK` `SOCK_RAW` `NETLINK_AUDIT`: a netlink protocol the default list does not name.
const NETLINK_AUDIT: &str = "16:3:9";
/// `AF_VSOCK` `SOCK_STREAM` (L4).
const VSOCK_STREAM: &str = "40:1";
/// Family `0x1_0000_0002`: the kernel takes the low 32 bits (`AF_INET`); the filter must not.
const HIGH_FAMILY: &str = "0x100000002:1";
const INET_STREAM: &str = "2:1";
const INET_DGRAM: &str = "2:2";
const INET6_STREAM: &str = "10:1";
const INET6_DGRAM: &str = "10:2";
const UNIX_STREAM: &str = "1:1";

/// The probe's `results` table for `specs`.
fn sockets(out: &Outcome) -> &serde_json::Map<String, Value> {
    out.json()["results"]
        .as_object()
        .unwrap_or_else(|| panic!("no results table: {}", out.describe()))
}

/// Asserts `spec` -> `want` (`"ok"` or an errno name) in a socket probe's table.
#[track_caller]
fn assert_socket(out: &Outcome, spec: &str, want: &str) {
    assert_eq!(
        sockets(out).get(spec).and_then(Value::as_str),
        Some(want),
        "socket({spec}): expected {want}: {}",
        out.describe()
    );
}

/// L2 / J1: the `[sockets]` allow-list is enforced by the filter: raw, packet, netlink audit
/// and vsock sockets (which root may create unconfined) are refused with the default list
/// (`EAFNOSUPPORT` for a refused family, `EPERM` for a refused type or protocol of an allowed
/// one), a family with high bits set is refused (fail closed), the listed kinds still work
/// (a netlink route socket among them, which the broker makes), a narrower list refuses more;
/// and a socket() the list allows costs no round trip to the broker, while each refused one is
/// answered by the broker and audited.
#[test]
fn s_l2_j1_socket_allow_list_in_kernel() {
    if !need_root("s_l2_j1_socket_allow_list_in_kernel") {
        return;
    }
    let attacks = [
        (PACKET_RAW, "EAFNOSUPPORT"),
        (INET_RAW_ICMP, "EPERM"),
        (INET_RAW_FLAGS, "EPERM"),
        (INET_RAW_HIGH_TYPE, "EPERM"),
        (NETLINK_AUDIT, "EPERM"),
        (HIGH_FAMILY, "EAFNOSUPPORT"),
    ];
    let fine = [
        INET_STREAM,
        INET_DGRAM,
        INET6_STREAM,
        INET6_DGRAM,
        UNIX_STREAM,
    ];
    let mut args = vec![probe(), "socket"];
    args.extend(attacks.iter().map(|(spec, _)| *spec));
    args.push(VSOCK_STREAM);
    args.push(NETLINK_ROUTE);
    args.extend(fine);

    // Unconfined, as root: every one of them works (vsock only where the kernel has it).
    let native = unconfined(&args);
    for spec in attacks.iter().map(|(s, _)| *s).chain(fine) {
        assert_socket(&native, spec, "ok");
    }
    assert_socket(&native, NETLINK_ROUTE, "ok");
    let have_vsock = sockets(&native).get(VSOCK_STREAM).and_then(Value::as_str) == Some("ok");
    if !have_vsock {
        eprintln!("note: no AF_VSOCK here; it is checked confined only");
    }

    // Confined with the default list (the policy has no [sockets]).
    let out = confined("loopback-only", &args);
    for (spec, err) in attacks {
        assert_socket(&out, spec, err);
    }
    assert_socket(&out, VSOCK_STREAM, "EAFNOSUPPORT");
    assert_socket(&out, NETLINK_ROUTE, "ok");
    for spec in fine {
        assert_socket(&out, spec, "ok");
    }

    // A narrower list: only inet:stream.
    let narrow = policy_file(
        "name = \"inet-stream-only\"\ndefault = \"deny\"\n\n[sockets]\nallow = [\"inet:stream\"]\n",
    );
    let out = confined(
        narrow.as_str(),
        &[
            probe(),
            "socket",
            INET_STREAM,
            INET_DGRAM,
            INET6_STREAM,
            UNIX_STREAM,
            HIGH_FAMILY,
            NETLINK_ROUTE,
        ],
    );
    assert_socket(&out, INET_STREAM, "ok");
    assert_socket(&out, INET_DGRAM, "EPERM");
    assert_socket(&out, INET6_STREAM, "EAFNOSUPPORT");
    assert_socket(&out, UNIX_STREAM, "EAFNOSUPPORT");
    assert_socket(&out, HIGH_FAMILY, "EAFNOSUPPORT");
    assert_socket(&out, NETLINK_ROUTE, "EAFNOSUPPORT");

    // Invariant 5, no round trip: through netjaild, the socket() calls the list allows leave
    // no decision in the audit log; the refused ones leave one each, and so does a connect in
    // the next sandbox (so the log would show one).
    let broker = Broker::start();
    let mut listed = vec![probe(), "socket"];
    listed.extend(fine);
    let out = confined_with_broker(&broker, "loopback-only", &listed);
    assert_socket(&out, INET_STREAM, "ok");
    let retired = broker.wait_audit(1, WAIT, |e| !e["decisions"].is_null());
    assert_eq!(
        retired.len(),
        1,
        "no retirement event for the socket sandbox:\n{}",
        broker.log()
    );
    let decisions = |b: &Broker| {
        b.audit_events()
            .into_iter()
            .filter(|e| !e["decision"].is_null())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        decisions(&broker),
        Vec::<Value>::new(),
        "allowed socket() calls went to the broker"
    );
    assert_eq!(retired[0]["decisions"], 0, "{}", retired[0]);

    let out = confined_with_broker(&broker, "loopback-only", &args);
    assert_socket(&out, PACKET_RAW, "EAFNOSUPPORT");
    let refused = broker.wait_audit(attacks.len() + 1, WAIT, |e| {
        e["op"] == "socket" && e["decision"] == "deny" && e["rule"] == "sockets"
    });
    assert_eq!(
        refused.len(),
        attacks.len() + 1,
        "each refused socket() (vsock too) is audited:\n{}",
        broker.log()
    );

    let canary = Canary::tcp4();
    let out = confined_with_broker(
        &broker,
        "loopback-only",
        &[probe(), "connect", "tcp", "127.0.0.1", &canary.port_str()],
    );
    assert_ok(&out);
    let seen = broker.wait_audit(1, WAIT, |e| e["op"] == "connect");
    assert_eq!(
        seen.len(),
        1,
        "the positive control left no decision:\n{}",
        broker.log()
    );
}

/// L2/J1: in the IP families `stream` means TCP and `dgram` means UDP. MPTCP, UDP-Lite, ICMP
/// datagram sockets and any protocol number with high bits set are other ways onto the network
/// (SCTP, where the kernel has it, sets up associations from `sendmsg` without `connect`), so
/// they are refused in the kernel unless the policy names them (`inet:stream:mptcp`) or allows
/// the whole family (`inet:*`).
#[test]
fn s_l2_inet_stream_means_tcp_and_dgram_means_udp() {
    if !need_root("s_l2_inet_stream_means_tcp_and_dgram_means_udp") {
        return;
    }
    const MPTCP: &str = "2:1:262";
    const MPTCP6: &str = "10:1:262";
    const UDPLITE: &str = "2:2:136";
    const TCP_HIGH_BITS: &str = "2:1:0x100000006";
    const TCP: &str = "2:1:6";
    const UDP6: &str = "10:2:17";
    let other = [MPTCP, MPTCP6, UDPLITE, TCP_HIGH_BITS];
    let mut args = vec![probe(), "socket"];
    args.extend(other);
    args.extend([TCP, UDP6]);

    // Unconfined, as root: every one of them is a working socket.
    let native = unconfined(&args);
    for spec in other.iter().chain(&[TCP, UDP6]) {
        assert_socket(&native, spec, "ok");
    }
    // Confined by the default list (inet:stream, inet:dgram, ...): only TCP and UDP.
    let out = confined("deny-all", &args);
    for spec in other {
        assert_socket(&out, spec, "EPERM");
    }
    assert_socket(&out, TCP, "ok");
    assert_socket(&out, UDP6, "ok");
    // A policy that allows every type of the family allows every protocol too.
    let whole = policy_file("name = \"t\"\n[sockets]\nallow = [\"inet:*\"]\n");
    let out = confined(whole.as_str(), &[probe(), "socket", MPTCP, UDPLITE]);
    assert_socket(&out, MPTCP, "ok");
    assert_socket(&out, UDPLITE, "ok");
    // A protocol listed by name is allowed, and only that one: MPTCP without TCP, and
    // neither UDP-Lite nor a high-bits spelling of MPTCP.
    let named =
        policy_file("name = \"t\"\n[sockets]\nallow = [\"inet:stream:mptcp\", \"inet:dgram\"]\n");
    let out = confined(
        named.as_str(),
        &[
            probe(),
            "socket",
            MPTCP,
            TCP,
            "2:1:0x100000106",
            UDPLITE,
            "2:2:17",
        ],
    );
    assert_socket(&out, MPTCP, "ok");
    assert_socket(&out, TCP, "EPERM");
    assert_socket(&out, "2:1:0x100000106", "EPERM");
    assert_socket(&out, UDPLITE, "EPERM");
    assert_socket(&out, "2:2:17", "ok");
}

// ---- D4: inherited, irrevocable -------------------------------------------------------------

/// The grandchild: reads its own seccomp state, tries to clear no_new_privs, and connects.
const PY_GRANDCHILD: &str = r#"
import ctypes, errno, json, socket, sys
out = {}
for line in open('/proc/self/status'):
    k, _, v = line.partition(':')
    if k in ('Seccomp', 'Seccomp_filters', 'NoNewPrivs'):
        out[k] = v.strip()
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS = 38
r = libc.prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0)
out['clear_nnp'] = 'ok' if r == 0 else errno.errorcode.get(ctypes.get_errno(), '?')
for line in open('/proc/self/status'):
    k, _, v = line.partition(':')
    if k == 'NoNewPrivs':
        out['NoNewPrivs_after'] = v.strip()
s = socket.socket()
try:
    s.connect(('127.0.0.1', int(sys.argv[1])))
    out['ok'] = True
except OSError as e:
    out['ok'] = False
    out['err'] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out), flush=True)
"#;

/// The child: a python3 that runs the grandchild with subprocess and passes its output on.
const PY_CHILD: &str = r#"
import subprocess, sys
r = subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], timeout=20)
sys.exit(r.returncode)
"#;

/// D4: confinement is inherited through fork and exec down to a grandchild (sh -> python3 ->
/// python3): its connect to a denied canary is refused, it runs with a seccomp filter and
/// no_new_privs, and clearing no_new_privs fails (the kernel has no way to: `EINVAL`).
#[test]
fn s_d4_children_inherit_confinement() {
    let Some(py) = need_python("s_d4_children_inherit_confinement") else {
        return;
    };
    let canary = Canary::tcp4();
    let port = canary.port_str();
    // `; exit $?` keeps sh from exec'ing python in its own place: three generations.
    let args = [
        "sh",
        "-c",
        "\"$0\" -c \"$1\" \"$2\" \"$3\"; exit $?",
        &py,
        PY_CHILD,
        PY_GRANDCHILD,
        &port,
    ];

    let out = unconfined(&args);
    out.assert_success();
    assert_ok(&out);
    // The test itself may run under a filter (a container's): count filters, do not expect 0.
    let filters = |v: &Value| {
        v["Seccomp_filters"]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no Seccomp_filters in {v}"))
    };
    let outside = filters(out.json());
    assert_eq!(canary.wait_count(1, WAIT), 1);

    let decoy = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", decoy.port())]);
    let out = confined(policy.as_str(), &args);
    out.assert_success();
    assert_eperm(&out);
    let v = out.json();
    assert_eq!(v["Seccomp"], "2", "no filter in the grandchild: {v}");
    assert!(
        filters(v) > outside,
        "the grandchild has no more filters than an unconfined one ({outside}): {v}"
    );
    assert_eq!(
        v["NoNewPrivs"], "1",
        "no no_new_privs in the grandchild: {v}"
    );
    assert_eq!(v["clear_nnp"], "EINVAL", "{v}");
    assert_eq!(v["NoNewPrivs_after"], "1", "no_new_privs was cleared: {v}");
    assert_eq!(
        canary.settled_count(),
        1,
        "the grandchild reached the canary"
    );
    assert_eq!(decoy.count(), 0);
}

// ---- D6: setuid gains nothing ---------------------------------------------------------------

/// The mount options of the filesystem that holds `path` (the longest mount point that is a
/// prefix of it, the last such mount winning).
fn mount_options(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mnt, _, opts, ..] = fields.as_slice() else {
            continue;
        };
        let mnt = mnt.replace("\\040", " ");
        if path.starts_with(&mnt) && best.as_ref().is_none_or(|(len, _)| mnt.len() >= *len) {
            best = Some((mnt.len(), (*opts).to_owned()));
        }
    }
    best.map(|(_, opts)| opts)
}

fn suid_allowed(path: &Path) -> bool {
    mount_options(path).is_some_and(|o| !o.split(',').any(|opt| opt == "nosuid"))
}

/// A directory (mode 0755, removed on drop) on a filesystem that honours setuid bits: under
/// `/tmp`, else under the target directory.
pub(crate) struct SuidDir {
    pub(crate) path: PathBuf,
    _tmp: Option<TempDir>,
}

impl SuidDir {
    pub(crate) fn new() -> Option<SuidDir> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new();
        let dir = if suid_allowed(tmp.path()) {
            SuidDir {
                path: tmp.path().to_path_buf(),
                _tmp: Some(tmp),
            }
        } else {
            let path = target_profile_dir().join(format!("suid-{}", std::process::id()));
            if !suid_allowed(&path) {
                return None;
            }
            std::fs::create_dir_all(&path).ok()?;
            SuidDir { path, _tmp: None }
        };
        std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o755)).ok()?;
        Some(dir)
    }
}

impl Drop for SuidDir {
    fn drop(&mut self) {
        if self._tmp.is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// D6: no_new_privs is set before the filter, so a setuid-root program run inside the sandbox
/// by an unprivileged user gains nothing (its effective uid stays the user's).
#[test]
fn s_d6_no_new_privs_setuid_gains_nothing() {
    if !need_root("s_d6_no_new_privs_setuid_gains_nothing") {
        return;
    }
    if self_status("NoNewPrivs").first().map(String::as_str) == Some("1") {
        skip(
            "s_d6_no_new_privs_setuid_gains_nothing",
            "the tests run with no_new_privs already: setuid works nowhere here",
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = SuidDir::new() else {
        skip(
            "s_d6_no_new_privs_setuid_gains_nothing",
            "no filesystem without nosuid for the setuid copy",
        );
        return;
    };
    if !have_setpriv("s_d6_no_new_privs_setuid_gains_nothing") {
        return;
    }
    let Some(id) = netjail_integration_tests::which("id") else {
        skip("s_d6_no_new_privs_setuid_gains_nothing", "`id` not found");
        return;
    };
    let suid_id = dir.path.join("id");
    std::fs::copy(&id, &suid_id).expect("copy id");
    std::fs::set_permissions(&suid_id, std::fs::Permissions::from_mode(0o4755))
        .expect("chmod 4755");
    let suid_id = suid_id.to_str().expect("utf-8 path");

    // Unconfined, as nobody: the setuid bit makes the effective uid root.
    let out = unconfined(&as_nobody(&[suid_id, "-ru"]));
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        NOBODY,
        "setpriv did not drop: {}",
        out.describe()
    );
    let out = unconfined(&as_nobody(&[suid_id, "-u"]));
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        "0",
        "the setuid copy gives no root here: {}",
        out.describe()
    );

    // Confined (setpriv inside the sandbox): nothing gained.
    let out = confined("deny-all", &as_nobody(&[suid_id, "-u"]));
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        NOBODY,
        "a setuid binary gained root in the sandbox: {}",
        out.describe()
    );
}

// ---- M4: fail closed ------------------------------------------------------------------------

/// `netjail run --broker SOCK --no-embedded --policy allow-all -- nj-probe touch MARKER`.
fn run_no_embedded(sock: &Path, marker: &Path) -> Outcome {
    let mut cmd = Command::new(netjail_bin());
    cmd.env_remove("NETJAIL_BROKER")
        .args(["run", "--allow-root"])
        .arg("--broker")
        .arg(sock)
        .args([
            "--no-embedded",
            "--policy",
            "allow-all",
            "--",
            probe(),
            "touch",
        ])
        .arg(marker);
    run(&mut cmd, DEFAULT_TIMEOUT)
}

/// M4: `--no-embedded` with no broker at the socket (none there, or a stale socket file with
/// no listener) is an error, exit 125, and the command never runs.
#[test]
fn s_m4_no_broker_no_embedded_fails_closed() {
    let dir = TempDir::new();
    // The marker probe works: unconfined it creates its file.
    let control = dir.path().join("control-marker");
    let out = unconfined(&[probe(), "touch", control.to_str().expect("utf-8")]);
    assert_ok(&out);
    assert!(control.exists());

    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind stale socket"));
    for (what, sock) in [("missing", dir.path().join("none.sock")), ("stale", stale)] {
        let marker = dir.path().join(format!("ran-{what}"));
        let out = run_no_embedded(&sock, &marker);
        assert_eq!(out.code(), Some(125), "{what}: {}", out.describe());
        assert!(
            out.stderr.contains("no broker"),
            "{what}: the message does not say there is no broker: {}",
            out.describe()
        );
        assert!(
            !marker.exists(),
            "{what}: the command ran without a broker: {}",
            out.describe()
        );
    }
}

/// Connects once, says `ready`, waits for the file `argv[2]`, says `go`, connects again.
const PY_TWO_CONNECTS: &str = r#"
import errno, json, os, socket, sys, time
port, go = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.connect(('127.0.0.1', port))
s.close()
print('ready', flush=True)
deadline = time.time() + 20
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.01)
print('go', flush=True)
s = socket.socket()
try:
    s.connect(('127.0.0.1', port))
    print(json.dumps({'ok': True}), flush=True)
except OSError as e:
    print(json.dumps({'ok': False, 'err': errno.errorcode.get(e.errno, str(e.errno))}), flush=True)
time.sleep(20)
"#;

/// Pids whose parent is `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            kids.push(child);
        }
    }
    kids
}

/// M4 / invariant 1: a broker killed while a sandbox runs never lets a call through: the
/// sandbox's next connect waits undecided (or fails) and the canary sees nothing more.
#[test]
fn s_m4_killed_broker_never_allows() {
    let Some(py) = need_python("s_m4_killed_broker_never_allows") else {
        return;
    };
    let mut broker = Broker::start();
    let canary = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", canary.port())]);
    let dir = TempDir::new();
    let go = dir.path().join("go");
    let go_str = go.to_str().expect("utf-8");
    let port = canary.port_str();
    let mut sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&py, "-c", PY_TWO_CONNECTS, &port, go_str],
    ));
    let launcher = sandbox.pid();
    assert_eq!(
        sandbox.read_line(Duration::from_secs(15)).as_deref(),
        Some("ready"),
        "the first connect did not work: {}",
        sandbox.stderr_so_far()
    );
    assert_eq!(
        canary.wait_count(1, WAIT),
        1,
        "the allowed connect did not arrive"
    );
    let child = children_of(launcher);

    sys::kill(broker.pid(), libc::SIGKILL).expect("kill netjaild");
    let deadline = Instant::now() + WAIT;
    while broker.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!broker.is_alive(), "netjaild survived SIGKILL");

    std::fs::write(&go, b"go").expect("write the go file");
    assert_eq!(
        sandbox.read_line(WAIT).as_deref(),
        Some("go"),
        "{}",
        sandbox.stderr_so_far()
    );
    // The second connect: for 3 s it must not go through.
    if let Some(line) = sandbox.read_line(Duration::from_secs(3)) {
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        assert_eq!(
            v["ok"], false,
            "a connect went through with the broker dead: {line}"
        );
    }
    assert_eq!(
        canary.settled_count(),
        1,
        "the canary was reached after the broker died"
    );

    // End the sandbox: SIGTERM to the launcher (which forwards it), SIGKILL to the child if
    // that is not enough within 2 s.
    sys::kill(launcher, libc::SIGTERM).expect("SIGTERM the launcher");
    let deadline = Instant::now() + Duration::from_secs(2);
    while sandbox.is_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if sandbox.is_alive() {
        for pid in &child {
            let _ = sys::kill(*pid, libc::SIGKILL);
        }
    }
    let out = sandbox.wait(Duration::from_secs(10));
    assert_eq!(
        canary.count(),
        1,
        "the canary was reached while the sandbox ended: {}",
        out.describe()
    );
    assert!(
        out.died_of(libc::SIGTERM) || out.died_of(libc::SIGKILL),
        "{}",
        out.describe()
    );
    assert_err_free(&out);
}

/// The sandbox never printed a successful second connect.
fn assert_err_free(out: &Outcome) {
    assert!(
        !out.stdout.contains("\"ok\": true"),
        "a connect succeeded: {}",
        out.describe()
    );
}

/// Tries each refused socket option, an allowed one, `unshare` of a network and a user
/// namespace, a thread and a subprocess (which use clone3 or clone); prints a JSON object of
/// outcome names ("ok" or the errno name).
const PY_OPTIONS_AND_NAMESPACES: &str = r#"
import ctypes, errno, json, socket, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
r = {}
def t(name, f):
    try:
        f(); r[name] = "ok"
    except OSError as e:
        r[name] = errno.errorcode.get(e.errno, str(e.errno))
def unshare(flags):
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
def forked(flags):
    # unshare in a child so that the test's own process keeps its namespaces
    p = subprocess.run([__import__("sys").executable, "-c",
        "import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); "
        "sys.exit(0 if l.unshare(%d)==0 else ctypes.get_errno())" % flags])
    if p.returncode != 0:
        raise OSError(p.returncode, "unshare")
s = socket.socket()
t("SO_MARK", lambda: s.setsockopt(socket.SOL_SOCKET, 36, 7))
t("SO_BINDTODEVICE", lambda: s.setsockopt(socket.SOL_SOCKET, 25, b"lo"))
t("IP_TRANSPARENT", lambda: s.setsockopt(socket.SOL_IP, 19, 1))
t("TCP_REPAIR", lambda: s.setsockopt(socket.SOL_TCP, 19, 1))
t("SO_KEEPALIVE", lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
t("unshare_net", lambda: forked(0x40000000))
t("unshare_user", lambda: forked(0x10000000))
t("thread", lambda: threading.Thread(target=lambda: None).start())
t("subprocess", lambda: subprocess.run(["true"], check=True))
print(json.dumps(r))
"#;

/// J4, N1, invariant 6: the socket options that reach past the policy (binding to a device,
/// marks, transparent proxying, TCP repair) and new network or user namespaces are refused in
/// the kernel; ordinary options, threads and subprocesses keep working. Unconfined, as root,
/// every one of them works.
#[test]
fn s_j4_n1_refused_socket_options_and_namespaces() {
    if !need_root("s_j4_n1_refused_socket_options_and_namespaces") {
        return;
    }
    let Some(py) = netjail_integration_tests::python3() else {
        skip(
            "s_j4_n1_refused_socket_options_and_namespaces",
            "python3 not found",
        );
        return;
    };
    let py = py.to_string_lossy().into_owned();
    let args = [py.as_str(), "-c", PY_OPTIONS_AND_NAMESPACES];
    let refused = [
        "SO_MARK",
        "SO_BINDTODEVICE",
        "IP_TRANSPARENT",
        "TCP_REPAIR",
        "unshare_net",
        "unshare_user",
    ];
    let fine = ["SO_KEEPALIVE", "thread", "subprocess"];

    let native = unconfined(&args);
    for name in refused.iter().chain(&fine) {
        assert_eq!(
            native.json()[name],
            "ok",
            "unconfined {name}: {}",
            native.describe()
        );
    }
    let out = confined("deny-all", &args);
    for name in refused {
        assert_eq!(
            out.json()[name],
            "EPERM",
            "confined {name}: {}",
            out.describe()
        );
    }
    for name in fine {
        assert_eq!(
            out.json()[name],
            "ok",
            "confined {name}: {}",
            out.describe()
        );
    }
}

/// The capabilities the launcher drops (client/src/sys.rs: CAP_NET_BIND_SERVICE 10,
/// CAP_NET_BROADCAST 11, CAP_NET_ADMIN 12, CAP_NET_RAW 13, CAP_SYS_PTRACE 19, CAP_SYS_ADMIN 21).
const DROPPED_CAPS: [u32; 6] = [10, 11, 12, 13, 19, 21];

fn cap_mask(out: &Outcome, set: &str) -> u64 {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {set} line: {}", out.describe()));
    u64::from_str_radix(line.trim(), 16).expect("hex capability mask")
}

/// Invariant 6 (D5, N1): root inside the sandbox has lost the network and process capabilities
/// from its effective, permitted and bounding sets; unconfined root has them.
#[test]
fn s_d5_n1_network_capabilities_dropped() {
    if !need_root("s_d5_n1_network_capabilities_dropped") {
        return;
    }
    let args = ["grep", "^Cap", "/proc/self/status"];
    let native = unconfined(&args);
    let out = confined("deny-all", &args);
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        for cap in DROPPED_CAPS {
            assert_ne!(
                cap_mask(&native, set) & (1 << cap),
                0,
                "unconfined root lacks cap {cap}"
            );
            assert_eq!(
                cap_mask(&out, set) & (1 << cap),
                0,
                "{set} still has cap {cap}"
            );
        }
    }
    // What the sandbox still needs as root (chroot, setuid) is kept.
    for cap in [6, 7, 18] {
        assert_ne!(
            cap_mask(&out, "CapEff") & (1 << cap),
            0,
            "cap {cap} was dropped too"
        );
    }
}

/// N1: even as root, and even with a policy that allows netlink sockets, a confined process
/// cannot create a network interface. Both runs happen inside a network namespace made for the
/// test (`unshare -n`), so the host's interfaces are never touched.
#[test]
fn s_n1_no_interface_creation_even_as_root() {
    if !need_root("s_n1_no_interface_creation_even_as_root") {
        return;
    }
    let (Some(ip), Some(unshare)) = (
        netjail_integration_tests::which("ip"),
        netjail_integration_tests::which("unshare"),
    ) else {
        skip(
            "s_n1_no_interface_creation_even_as_root",
            "ip or unshare not found",
        );
        return;
    };
    let (ip, unshare) = (ip.to_string_lossy(), unshare.to_string_lossy());
    let add = [
        ip.as_ref(),
        "link",
        "add",
        "nj0",
        "type",
        "veth",
        "peer",
        "name",
        "nj1",
    ];

    let mut native = vec![unshare.as_ref(), "-n"];
    native.extend(add);
    let out = unconfined(&native);
    assert_eq!(
        out.code(),
        Some(0),
        "unconfined ip link add: {}",
        out.describe()
    );

    let policy = policy_file(
        "name = \"t\"\n[sockets]\nallow = [\"netlink:raw\", \"netlink:dgram\", \"unix:*\", \"inet:dgram\"]\n",
    );
    let netjail = netjail_integration_tests::netjail_bin();
    let netjail = netjail.to_string_lossy();
    let mut jailed = vec![
        unshare.as_ref(),
        "-n",
        netjail.as_ref(),
        "run",
        "--allow-root",
        "--policy",
        policy.as_str(),
        "--",
    ];
    jailed.extend(add);
    let out = unconfined(&jailed);
    assert_ne!(
        out.code(),
        Some(0),
        "confined ip link add worked: {}",
        out.describe()
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "expected EPERM from the kernel: {}",
        out.describe()
    );
}
