//! Credentials and descriptors that cross unix sockets (rule J5; invariant 3, no confused
//! deputy). The broker (root) performs `sendmsg`, `sendto`, `connect`, `bind` and `listen` for
//! the sandbox on its own copy of the socket: what it passes on must be the sandbox's —
//! its descriptors (translated with `pidfd_getfd`), its pid, uid and gid in
//! `SCM_CREDENTIALS` and `SO_PEERCRED`, its permission to write to a socket file, its
//! ownership of a socket file it creates — never the broker's.
//!
//! The sandboxed programs run as nobody (`setpriv` inside the sandbox) under a root broker;
//! each check is also made unconfined, as nobody (the kernel's own answer, which the sandbox
//! must match) and as root (which shows the assertion can tell root from nobody).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use netjail_integration_tests::sys::{self, Ucred};
use netjail_integration_tests::{
    policy_file, python3, spawn, unconfined, Outcome, TempDir, TempPath,
};
use serde_json::Value;

use crate::{
    as_nobody, assert_eperm, assert_err, assert_ok, have_setpriv, need_python, need_root, probe,
    self_status, Via,
};

/// nobody / nogroup.
const NOBODY_ID: u32 = 65534;

const WAIT: Duration = Duration::from_secs(5);

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// A fresh temporary directory (mode 0777) that uid 65534 may enter and create files in.
fn open_dir() -> TempDir {
    let dir = TempDir::new();
    chmod(dir.path(), 0o777);
    dir
}

/// A policy that allows exactly the given unix paths (connect, send and bind alike).
fn allow_unix_policy(paths: &[&str]) -> TempPath {
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    policy_file(&format!(
        "name = \"credentials\"\ndefault = \"deny\"\n\n[[allow]]\nunix = [{}]\n",
        list.join(", ")
    ))
}

/// A python3 (3.9 or later) that uid 65534 can run (a pyenv one under `/root` may be out of
/// its reach), or
/// `None` after saying `SKIP test: ...`.
fn nobody_python(test: &str) -> Option<String> {
    static PY: OnceLock<Option<String>> = OnceLock::new();
    let found = PY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = python3().into_iter().collect();
        candidates.push(PathBuf::from("/usr/bin/python3"));
        candidates.into_iter().find_map(|py| {
            let py = py.to_str()?.to_owned();
            let out = unconfined(&as_nobody(&[
                py.as_str(),
                "-c",
                "import socket, json; socket.send_fds; print(json.dumps({'ok': True}))",
            ]));
            (out.json.as_ref().is_some_and(|v| v["ok"] == true)).then_some(py)
        })
    });
    if found.is_none() {
        netjail_integration_tests::skip(test, "no python3 (3.9 or later) that uid 65534 can run");
    }
    found.clone()
}

/// Root, setpriv and a python3 for nobody: what the tests that drop to nobody need.
pub(crate) fn prerequisites(test: &str) -> Option<String> {
    if !need_root(test) || !have_setpriv(test) {
        return None;
    }
    nobody_python(test)
}

/// `(pid, uid, gid)` out of a JSON object with those keys.
#[track_caller]
fn ucred_of(v: &Value, out: &Outcome) -> Ucred {
    let field = |k: &str| {
        v[k].as_i64()
            .unwrap_or_else(|| panic!("no {k} in {v}: {}", out.describe()))
    };
    (
        field("pid") as i32,
        field("uid") as u32,
        field("gid") as u32,
    )
}

// ---- J5: SCM_RIGHTS -----------------------------------------------------------------------

/// Sends a descriptor of `argv[1]` (dup'ed to fd 57, a number the broker's own table does
/// not hold for the same file) over a socketpair, receives it, and reads the file through
/// the received descriptor. Also sends fd 0 after closing it (a number every broker has
/// open: sent from the broker's own table, it would arrive), and a message with no
/// descriptors at all.
const PY_RIGHTS: &str = r#"
import errno, json, os, socket, sys
def name(e): return errno.errorcode.get(e.errno, str(e.errno))
r = {}
fd = os.open(sys.argv[1], os.O_RDONLY)
os.dup2(fd, 57)
a, b = socket.socketpair()
c, d = socket.socketpair()
os.close(0)
try:
    socket.send_fds(c, [b"bad"], [0])
    r["unopened"] = "ok"
except OSError as e:
    r["unopened"] = name(e)
try:
    a.sendmsg([b"plain"])
    r["plain"] = b.recv(16).decode()
except OSError as e:
    r["plain"] = name(e)
try:
    socket.send_fds(a, [b"fd"], [57])
except OSError as e:
    r.update(ok=False, err=name(e))
    b.setblocking(False)
    try:
        r["leftover"] = b.recv(16).decode()
    except BlockingIOError:
        r["leftover"] = None
    print(json.dumps(r))
    sys.exit(0)
msg, fds, flags, addr = socket.recv_fds(b, 16, 4)
r.update(ok=True, msg=msg.decode(), nfds=len(fds))
if fds:
    r["content"] = os.pread(fds[0], 4096, 0).decode()
    s1, s2 = os.fstat(fd), os.fstat(fds[0])
    r["same_file"] = (s1.st_dev, s1.st_ino) == (s2.st_dev, s2.st_ino)
print(json.dumps(r))
"#;

#[track_caller]
fn assert_fd_arrived(out: &Outcome, secret: &str) {
    assert_ok(out);
    let v = out.json();
    assert_eq!(v["unopened"], "EBADF", "{}", out.describe());
    assert_eq!(v["plain"], "plain", "{}", out.describe());
    assert_eq!(v["msg"], "fd", "{}", out.describe());
    assert_eq!(v["nfds"], 1, "{}", out.describe());
    assert_eq!(v["content"], secret, "{}", out.describe());
    assert_eq!(v["same_file"], true, "{}", out.describe());
}

fn scm_rights(via: Via) {
    let Some(py) = need_python("s_j5_scm_rights_passed_translated_or_refused") else {
        return;
    };
    let dir = TempDir::new();
    let file = dir.path().join("secret.txt");
    let secret = format!("the sandbox's own file {}", dir.path().display());
    std::fs::write(&file, &secret).expect("write the file");
    let args = [py.as_str(), "-c", PY_RIGHTS, utf8(&file)];

    let out = unconfined(&args);
    assert_fd_arrived(&out, &secret);

    // The default policy passes descriptors; the broker sends its pidfd_getfd copies, so the
    // receiver gets the sandbox's file, and a number the sandbox never opened is EBADF.
    let default = policy_file("name = \"j5-default\"\n");
    let out = via.run(default.as_str(), &args);
    assert_fd_arrived(&out, &secret);

    // scm_rights = false: the descriptor is refused and nothing arrives; a message without
    // descriptors still goes through.
    let refused = policy_file("name = \"j5-refused\"\nscm_rights = false\n");
    let out = via.run(refused.as_str(), &args);
    assert_eperm(&out);
    let v = out.json();
    assert_eq!(v["plain"], "plain", "{}", out.describe());
    assert_eq!(v["leftover"], Value::Null, "{}", out.describe());
    assert_ne!(v["unopened"], "ok", "{}", out.describe());
}

both!(
    /// J5: a descriptor sent with `SCM_RIGHTS` over a socketpair arrives under the default
    /// policy as the sandbox's own file (the broker translates fd numbers with
    /// `pidfd_getfd`; a number the sandbox has not opened is `EBADF`), and is refused with
    /// `EPERM` under `scm_rights = false`, where nothing arrives.
    s_j5_scm_rights_passed_translated_or_refused => scm_rights
);

/// With `RLIMIT_NOFILE` at `argv[1]`, puts descriptors in flight over a stream socketpair that
/// nobody reads, four per message, up to 256, until a send fails.
const PY_INFLIGHT: &str = r#"
import errno, json, os, resource, socket, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
fd = os.open("/dev/null", os.O_RDONLY)
a, b = socket.socketpair()
n, err = 0, None
try:
    for _ in range(64):
        socket.send_fds(a, [b"x"], [fd] * 4)
        n += 4
except OSError as e:
    err = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({"inflight": n, "err": err}))
"#;

/// The `RLIMIT_NOFILE` the in-flight test sets, and the most descriptors the kernel lets an
/// unprivileged user have in flight under it: the check comes before a message's descriptors
/// are counted, so one message (four) may go past the limit.
const INFLIGHT_LIMIT: u64 = 32;
const INFLIGHT_MAX: u64 = INFLIGHT_LIMIT + 4;

fn inflight_limit(via: Via) {
    let test = "s_j5_deputy_inflight_descriptors_limited_as_the_caller";
    let Some(py) = prerequisites(test) else {
        return;
    };
    let policy = policy_file("name = \"j5-inflight\"\n");
    let limit = INFLIGHT_LIMIT.to_string();
    let root = [py.as_str(), "-c", PY_INFLIGHT, limit.as_str()];
    let nobody = as_nobody(&root);
    let inflight = |out: &Outcome| {
        out.json()["inflight"]
            .as_u64()
            .unwrap_or_else(|| panic!("no count: {}", out.describe()))
    };

    // Root (CAP_SYS_RESOURCE) is not limited: all 256 go.
    let out = unconfined(&root);
    assert_eq!(out.json()["err"], Value::Null, "{}", out.describe());
    assert_eq!(inflight(&out), 256, "{}", out.describe());

    // nobody is: the kernel says ETOOMANYREFS once its user has more in flight than its
    // RLIMIT_NOFILE.
    let out = unconfined(&nobody);
    assert_eq!(out.json()["err"], "ETOOMANYREFS", "{}", out.describe());
    assert!(inflight(&out) <= INFLIGHT_MAX, "{}", out.describe());

    // Confined, the root broker sends the descriptors: they must still count against nobody
    // and its limit, not against root, its limit and its CAP_SYS_RESOURCE.
    let out = via.run(policy.as_str(), &nobody);
    let n = inflight(&out);
    assert!(
        n <= INFLIGHT_MAX,
        "nobody (RLIMIT_NOFILE {INFLIGHT_LIMIT}) put {n} descriptors in flight through the \
         broker: {}",
        out.describe()
    );
    assert_eq!(out.json()["err"], "ETOOMANYREFS", "{}", out.describe());
}

/// J5, invariant 3: descriptors a sandbox sends with `SCM_RIGHTS` count against its own
/// in-flight limit (the kernel refuses an unprivileged user more descriptors in flight than
/// its `RLIMIT_NOFILE` with `ETOOMANYREFS`), although the root broker, which has
/// `CAP_SYS_RESOURCE` and a larger limit, performs the send. Unconfined root is not limited;
/// unconfined nobody is; confined nobody is, as the caller (docs/design-notes.md, "Sends").
#[test]
fn s_j5_deputy_inflight_descriptors_limited_as_the_caller() {
    inflight_limit(Via::Embedded);
}

// ---- SCM_CREDENTIALS --------------------------------------------------------------------------

/// Sends one message over a socketpair whose receiving end has `SO_PASSCRED`, with
/// `SCM_CREDENTIALS` as `argv[1]` says: `own` (its own pid, uid, gid), `uid0`, `gid0`, `pid1`
/// (one of the three replaced), `other-uid` (uid 1234), or `none` (no control message: the
/// kernel, or the broker, attaches the sender's). Reports its own ids and what arrived.
const PY_CREDS: &str = r#"
import errno, json, os, socket, struct, sys
mode = sys.argv[1]
a, b = socket.socketpair()
b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
r = {"me": {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}}
pid, uid, gid = os.getpid(), os.getuid(), os.getgid()
if mode == "uid0": uid = 0
if mode == "gid0": gid = 0
if mode == "pid1": pid = 1
if mode == "other-uid": uid = 1234
try:
    if mode == "none":
        a.sendmsg([b"x"])
    else:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", pid, uid, gid))])
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
    print(json.dumps(r))
    sys.exit(0)
msg, anc, flags, addr = b.recvmsg(16, socket.CMSG_SPACE(12))
r.update(ok=True, creds=None)
for level, kind, data in anc:
    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
        p, u, g = struct.unpack("iII", data[:12])
        r["creds"] = {"pid": p, "uid": u, "gid": g}
print(json.dumps(r))
"#;

/// Asserts the message arrived with exactly the sender's own credentials, as nobody.
#[track_caller]
fn assert_own_creds(out: &Outcome, what: &str) {
    assert_ok(out);
    let v = out.json();
    let me = ucred_of(&v["me"], out);
    assert_eq!(
        (me.1, me.2),
        (NOBODY_ID, NOBODY_ID),
        "{what}: not running as nobody: {}",
        out.describe()
    );
    let got = ucred_of(&v["creds"], out);
    assert_eq!(
        got,
        me,
        "{what}: the receiver saw other credentials: {}",
        out.describe()
    );
}

fn scm_credentials(via: Via) {
    let test = "s_inv3_scm_credentials_are_the_callers";
    let Some(py) = prerequisites(test) else {
        return;
    };
    let policy = policy_file("name = \"creds\"\n");
    let nobody = |mode: &'static str| as_nobody(&[py.as_str(), "-c", PY_CREDS, mode]);

    for (mode, what) in [
        ("own", "its own pid, uid and gid"),
        ("none", "no credentials given (attached for it)"),
    ] {
        let a = nobody(mode);
        assert_own_creds(&unconfined(&a), &format!("unconfined, {what}"));
        assert_own_creds(&via.run(policy.as_str(), &a), &format!("confined, {what}"));
    }

    // Claims nobody may not make: the kernel refuses them to nobody, and the root broker
    // sending in its name refuses them too.
    for mode in ["uid0", "gid0", "pid1"] {
        let a = nobody(mode);
        let out = unconfined(&a);
        assert_eperm(&out);
        let out = via.run(policy.as_str(), &a);
        assert_eperm(&out);
    }

    // Root may claim uid 0 and another uid (CAP_SETUID), unconfined and in the sandbox (which
    // keeps CAP_SETUID): the refusals above are about privilege, not the claim's form.
    for (mode, uid) in [("uid0", 0), ("other-uid", 1234)] {
        let a = [py.as_str(), "-c", PY_CREDS, mode];
        for (where_, out) in [
            ("unconfined", unconfined(&a)),
            ("confined", via.run(policy.as_str(), &a)),
        ] {
            assert_ok(&out);
            let me = ucred_of(&out.json()["me"], &out);
            let got = ucred_of(&out.json()["creds"], &out);
            assert_eq!(
                got,
                (me.0, uid, me.2),
                "{where_} root, {mode}: {}",
                out.describe()
            );
        }
    }

    // Another process's pid needs CAP_SYS_ADMIN: root has it unconfined; the sandbox's root
    // has lost it, and the broker's must not stand in for it.
    let a = [py.as_str(), "-c", PY_CREDS, "pid1"];
    let out = unconfined(&a);
    assert_ok(&out);
    assert_eq!(
        ucred_of(&out.json()["creds"], &out).0,
        1,
        "{}",
        out.describe()
    );
    let out = via.run(policy.as_str(), &a);
    assert_eperm(&out);
}

both!(
    /// Invariant 3 (the broker sends `sendmsg` for the sandbox): `SCM_CREDENTIALS` over a
    /// socketpair name the sender. nobody claiming its own pid, uid and gid, or claiming
    /// nothing, is seen as exactly itself (its pid, 65534, 65534 — not the root broker);
    /// claiming uid 0, gid 0 or another pid is `EPERM`, as the kernel says unconfined.
    /// Unconfined root may claim uid 0 and pid 1; the sandbox's root, without
    /// `CAP_SYS_ADMIN`, may not claim pid 1 through the broker.
    s_inv3_scm_credentials_are_the_callers => scm_credentials
);

// ---- SO_PEERCRED of a connect -------------------------------------------------------------

/// A listener the test (root) owns, in a directory everyone may enter, that everyone may
/// connect to.
struct Server {
    _dir: TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Server {
    fn new() -> Server {
        let dir = open_dir();
        let path = dir.path().join("server.sock");
        let listener = UnixListener::bind(&path).expect("bind the server");
        chmod(&path, 0o777);
        listener.set_nonblocking(true).expect("nonblocking");
        Server {
            _dir: dir,
            path,
            listener,
        }
    }

    fn path(&self) -> &str {
        utf8(&self.path)
    }

    /// Accepts the next connection (queued, even if its client has exited since) and returns
    /// its `SO_PEERCRED` and `SO_PEERGROUPS`.
    #[track_caller]
    fn accept_peer(&self, out: &Outcome) -> (Ucred, Vec<u32>) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.listener.accept() {
                Ok((conn, _)) => {
                    let cred = sys::peer_cred(&conn)
                        .unwrap_or_else(|e| panic!("SO_PEERCRED: {}", sys::errno_name(e)));
                    let groups = sys::peer_groups(&conn)
                        .unwrap_or_else(|e| panic!("SO_PEERGROUPS: {}", sys::errno_name(e)));
                    return (cred, groups);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no connection arrived: {}",
                        out.describe()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Asserts that nothing else is queued.
    #[track_caller]
    fn assert_idle(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("an unexpected connection: {other:?}"),
        }
    }
}

/// The supplementary groups of the test process, sorted.
fn own_groups() -> Vec<u32> {
    let mut v: Vec<u32> = self_status("Groups")
        .iter()
        .map(|g| g.parse().expect("a group id"))
        .collect();
    v.sort_unstable();
    v
}

fn peercred_connect(via: Via) {
    let test = "s_inv3_deputy_so_peercred_of_connect_is_the_callers";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let server = Server::new();
    let policy = allow_unix_policy(&[server.path()]);
    // nobody with two supplementary groups the broker does not have (SO_PEERGROUPS).
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--groups=4,24",
        "--",
        probe(),
        "unix",
        server.path(),
    ];
    let root = &nobody[5..];
    let (nobody_groups, root_groups) = (vec![4, 24], own_groups());
    // (what, confined, command, uid and gid, groups)
    let cases = [
        // Unconfined: the kernel records the connecting process's ids.
        (
            "unconfined nobody",
            false,
            &nobody[..],
            NOBODY_ID,
            &nobody_groups,
        ),
        ("unconfined root", false, root, 0, &root_groups),
        // Confined: the root broker connects, yet the server must see nobody.
        (
            "confined nobody",
            true,
            &nobody[..],
            NOBODY_ID,
            &nobody_groups,
        ),
        // And confined root is root: the assertion can tell the two apart.
        ("confined root", true, root, 0, &root_groups),
    ];
    for (what, confined, args, id, groups) in cases {
        let out = if confined {
            via.run(policy.as_str(), args)
        } else {
            unconfined(args)
        };
        assert_ok(&out);
        let ((_, uid, gid), got_groups) = server.accept_peer(&out);
        assert_eq!(
            (uid, gid),
            (id, id),
            "{what}: SO_PEERCRED of the accepted connection: {}",
            out.describe()
        );
        assert_eq!(
            &got_groups,
            groups,
            "{what}: SO_PEERGROUPS of the accepted connection: {}",
            out.describe()
        );
    }
    server.assert_idle();
}

both!(
    /// Invariant 3: a unix connect the broker performs for a sandbox running as nobody shows
    /// the server (`SO_PEERCRED` of the accepted connection) uid 65534 and gid 65534, not the
    /// broker's 0, and nobody's supplementary groups (`SO_PEERGROUPS`), as the same client
    /// unconfined does; root is seen as root. Known limit: the pid there is the broker's (the
    /// kernel records the connecting task's, and no system call can set it; `SO_PEERPIDFD`
    /// likewise names the broker), so only uid, gid and groups are asserted.
    s_inv3_deputy_so_peercred_of_connect_is_the_callers => peercred_connect
);

// ---- a unix datagram to a path ----------------------------------------------------------------

/// `sendto(argv[2], argv[1])` on a fresh unix datagram socket; reports the sender's ids.
const PY_DGRAM: &str = r#"
import errno, json, os, socket, sys
r = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
try:
    s.sendto(sys.argv[2].encode(), sys.argv[1])
    r["ok"] = True
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(r))
"#;

/// A unix datagram receiver with `SO_PASSCRED`, in a directory everyone may enter.
struct Receiver {
    path: PathBuf,
    sock: UnixDatagram,
}

impl Receiver {
    fn new(dir: &Path, name: &str, mode: u32) -> Receiver {
        let path = dir.join(name);
        let sock = UnixDatagram::bind(&path).expect("bind the receiver");
        sys::set_passcred(&sock).expect("SO_PASSCRED");
        chmod(&path, mode);
        Receiver { path, sock }
    }

    fn path(&self) -> &str {
        utf8(&self.path)
    }

    /// The next datagram and its credentials, waiting up to `timeout_ms`.
    fn recv(&self, timeout_ms: i32) -> Option<(String, Ucred)> {
        let mut buf = [0u8; 256];
        let (n, creds) = sys::recv_with_creds(&self.sock, &mut buf, timeout_ms)
            .unwrap_or_else(|e| panic!("recvmsg: {}", sys::errno_name(e)))?;
        let creds = creds.expect("SO_PASSCRED is set: credentials come with every datagram");
        Some((String::from_utf8_lossy(&buf[..n]).into_owned(), creds))
    }

    /// Asserts that the datagram tagged `tag` arrived, from the sender `out` reports.
    #[track_caller]
    fn assert_from(&self, tag: &str, out: &Outcome, uid: u32) {
        assert_ok(out);
        let (got, creds) = self
            .recv(5000)
            .unwrap_or_else(|| panic!("{tag}: nothing arrived: {}", out.describe()));
        assert_eq!(got, tag, "{}", out.describe());
        let sender = ucred_of(out.json(), out);
        assert_eq!(
            sender.1,
            uid,
            "{tag}: ran as the wrong user: {}",
            out.describe()
        );
        assert_eq!(
            creds,
            sender,
            "{tag}: the receiver saw other credentials: {}",
            out.describe()
        );
    }

    #[track_caller]
    fn assert_empty(&self, what: &str) {
        if let Some((got, creds)) = self.recv(250) {
            panic!("{what}: {got:?} from {creds:?} arrived");
        }
    }
}

fn dgram_to_path(via: Via) {
    let test = "s_inv3_deputy_unix_dgram_sendto_as_the_caller";
    let Some(py) = prerequisites(test) else {
        return;
    };
    let dir = open_dir();
    let open = Receiver::new(dir.path(), "open.sock", 0o777);
    // root:root 0700: only root may send to it.
    let private = Receiver::new(dir.path(), "private.sock", 0o700);
    let policy = allow_unix_policy(&[open.path(), private.path()]);
    let send = |to: &Receiver, tag: &'static str| -> Vec<String> {
        [py.as_str(), "-c", PY_DGRAM, to.path(), tag]
            .map(str::to_owned)
            .to_vec()
    };
    let as_nobody_to = |to: &Receiver, tag: &'static str| -> Vec<String> {
        let mut v: Vec<String> = as_nobody(&[]).into_iter().map(str::to_owned).collect();
        v.extend(send(to, tag));
        v
    };
    // The receiver sees the sender's pid, uid and gid: the kernel's answer, and the sandbox's.
    let out = unconfined(&strs(&as_nobody_to(&open, "unconfined-nobody")));
    open.assert_from("unconfined-nobody", &out, NOBODY_ID);
    let out = via.run(
        policy.as_str(),
        &strs(&as_nobody_to(&open, "confined-nobody")),
    );
    open.assert_from("confined-nobody", &out, NOBODY_ID);
    let out = via.run(policy.as_str(), &strs(&send(&open, "confined-root")));
    open.assert_from("confined-root", &out, 0);

    // Write permission on the socket file is the caller's: nobody may not send to a root 0700
    // socket, unconfined or through the root broker; root may.
    let out = unconfined(&strs(&as_nobody_to(&private, "unconfined-nobody")));
    assert_err(&out, "EACCES");
    let out = via.run(
        policy.as_str(),
        &strs(&as_nobody_to(&private, "confined-nobody")),
    );
    assert_err(&out, "EACCES");
    private.assert_empty("nobody's datagram reached the root-only socket");
    let out = unconfined(&strs(&send(&private, "unconfined-root")));
    private.assert_from("unconfined-root", &out, 0);
    let out = via.run(policy.as_str(), &strs(&send(&private, "confined-root")));
    private.assert_from("confined-root", &out, 0);
    open.assert_empty("a stray datagram");
}

both!(
    /// Invariant 3, L3: a unix datagram `sendto` to a filesystem path, performed by the root
    /// broker for nobody, reaches a receiver with `SO_PASSCRED` with the sender's pid, uid
    /// 65534 and gid 65534, as unconfined; a root-owned 0700 socket is `EACCES` for nobody,
    /// confined as unconfined, and reachable by root.
    s_inv3_deputy_unix_dgram_sendto_as_the_caller => dgram_to_path
);

// ---- bind and listen --------------------------------------------------------------------------

/// Binds `argv[1]`, listens, says so with its ids, accepts one connection and answers `hi`.
const PY_LISTEN: &str = r#"
import errno, json, os, socket, sys
r = {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(sys.argv[1])
    s.listen(1)
    r["ok"] = True
except OSError as e:
    r.update(ok=False, err=errno.errorcode.get(e.errno, str(e.errno)))
print(json.dumps(r), flush=True)
if r["ok"]:
    s.settimeout(20)
    c, _ = s.accept()
    c.sendall(b"hi")
    c.close()
"#;

/// Runs the listener (`cmd`), connects to it as root, and returns what the connection's
/// `SO_PEERCRED` and the socket file's owner say.
fn listen_and_check(
    mut cmd: std::process::Command,
    path: &Path,
    what: &str,
) -> (Ucred, (u32, u32)) {
    let running = spawn(&mut cmd);
    let line = running.read_line(Duration::from_secs(15));
    let ready: Option<Value> = line.as_deref().and_then(|l| serde_json::from_str(l).ok());
    if ready.as_ref().is_none_or(|v| v["ok"] != true) {
        let out = running.wait(Duration::from_secs(10));
        panic!(
            "{what}: the listener did not start ({line:?}): {}",
            out.describe()
        );
    }
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{what}: stat {}: {e}", path.display()));
    let mut conn = UnixStream::connect(path).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    let peer =
        sys::peer_cred(&conn).unwrap_or_else(|e| panic!("SO_PEERCRED: {}", sys::errno_name(e)));
    conn.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut hi = String::new();
    use std::io::Read;
    conn.read_to_string(&mut hi).expect("read the answer");
    let out = running.wait(Duration::from_secs(15));
    out.assert_success();
    assert_eq!(hi, "hi", "{what}: {}", out.describe());
    (peer, (meta.uid(), meta.gid()))
}

fn listen_as_caller(via: Via) {
    let test = "s_inv3_deputy_unix_listen_as_the_caller";
    let Some(py) = prerequisites(test) else {
        return;
    };
    let dir = open_dir();
    let glob = format!("{}/*", dir.path().display());
    let policy = allow_unix_policy(&[&glob]);
    let cases: [(&str, bool, bool, u32); 4] = [
        ("unconfined nobody", false, true, NOBODY_ID),
        ("confined nobody", true, true, NOBODY_ID),
        ("unconfined root", false, false, 0),
        ("confined root", true, false, 0),
    ];
    for (i, (what, confined, nobody, id)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("listen-{i}.sock"));
        let base = [py.as_str(), "-c", PY_LISTEN, utf8(&path)];
        let args = if nobody {
            as_nobody(&base)
        } else {
            base.to_vec()
        };
        let cmd = if confined {
            via.cmd(policy.as_str(), &args)
        } else {
            let mut c = std::process::Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        let ((_, uid, gid), owner) = listen_and_check(cmd, &path, what);
        assert_eq!((uid, gid), (id, id), "{what}: SO_PEERCRED of the listener");
        assert_eq!(owner, (id, id), "{what}: owner of the socket file");
    }
}

both!(
    /// Invariant 3: a unix socket bound and listened on by the root broker for nobody is
    /// nobody's: the file is owned by 65534:65534 and a client's `SO_PEERCRED` (the
    /// listener's ids, recorded at `listen`) says uid 65534, gid 65534, as unconfined; for
    /// root both say 0. (The pid there is the broker's, as for a connect.)
    s_inv3_deputy_unix_listen_as_the_caller => listen_as_caller
);
