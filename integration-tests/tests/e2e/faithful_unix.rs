//! Issue 17, C1 (docs/compat.md): a unix socket bound through the broker reads back the name
//! the program gave it (invariant 11): `getsockname`, a peer's `getpeername`, `accept`,
//! `recvfrom` and `ss -x` show the bytes of the program's own `sockaddr_un`, relative paths
//! relative, in a chroot as the chrooted program names them. The broker once bound
//! `/proc/self/fd/DIR/NAME`, and every program that connects to the name it reads back
//! (Python's multiprocessing managers, asyncio's unix servers, a test suite waiting in
//! `accept`) failed.
//!
//! The decision stays on the directory resolved in the caller's root: the attack test flips a
//! directory symlink while binding, so that the kernel's own walk of the caller's path lands
//! elsewhere than the broker decided, and checks that no socket ever listens or receives at a
//! name the policy refuses. `listen` decides again the file a socket is bound to, including a
//! socket bound before confinement.
//!
//! Each check runs unconfined first (the kernel's own answer, which the confined run must
//! match, or for the attack, which shows that the probe can see a socket at the refused
//! name), then confined.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    netjail_bin, policy_file, run, spawn, unconfined, Outcome, TempDir, TempPath,
};
use serde_json::Value;

use crate::{as_nobody, have_setpriv, need_python, need_root, probe, Via};

/// The built-in policies the compatibility suites run under.
const POLICIES: [&str; 2] = ["allow-all", "loopback-only"];

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A fresh temporary directory (mode 0777: an unprivileged launcher may create files there).
fn open_dir() -> TempDir {
    let dir = TempDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod the test directory");
    dir
}

/// Removes every entry of `dir` (the sockets of a previous run).
fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir)
        .expect("read the test directory")
        .flatten()
    {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Empties `dir` and makes its `sub` directory again (mode 0777).
fn fresh(dir: &Path) {
    empty(dir);
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).expect("mkdir sub");
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).expect("chmod sub");
}

/// What `nj-probe unix-names` is asked to bind, as the program names each socket.
struct Names {
    /// The working directory, as the program names it.
    dir: String,
    server: String,
    client: String,
    dgram_a: String,
    dgram_b: String,
}

impl Names {
    fn args(&self) -> Vec<String> {
        vec![
            probe().to_owned(),
            "unix-names".to_owned(),
            self.dir.clone(),
            self.server.clone(),
            self.client.clone(),
            self.dgram_a.clone(),
            self.dgram_b.clone(),
        ]
    }

    /// Every name each socket and its peers read back, as the program gave it.
    #[track_caller]
    fn assert_read_back(&self, out: &Outcome, what: &str) {
        self.assert_names(out, what, true);
    }

    /// [`Names::assert_read_back`]; without `datagrams`, the datagram is refused (`EPERM`:
    /// a broker without `CAP_SYS_ADMIN` and `CAP_SETUID` sends no unix datagram, L14) and its
    /// source is not looked at.
    #[track_caller]
    fn assert_names(&self, out: &Outcome, what: &str, datagrams: bool) {
        let v = out.json();
        let errors = if datagrams {
            serde_json::json!({})
        } else {
            serde_json::json!({"dgram": "EPERM"})
        };
        assert_eq!(v["errors"], errors, "{what}: {}", out.describe());
        let names = &v["names"];
        for (key, want) in [
            ("server", &self.server),
            ("client", &self.client),
            ("client_peer", &self.server),
            ("accepted_name", &self.server),
            ("accepted_peer", &self.client),
            ("dgram_a", &self.dgram_a),
            ("dgram_b", &self.dgram_b),
            ("dgram_from", &self.dgram_b),
        ] {
            if key == "dgram_from" && !datagrams {
                continue;
            }
            assert_eq!(
                names[key].as_str(),
                Some(want.as_str()),
                "{what}: the name `{key}` read back: {}",
                out.describe()
            );
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The cases of [`names_read_back`]: in directory `d` (which has a `sub` directory).
fn name_cases(d: &Path) -> Vec<(&'static str, Names)> {
    let name = utf8(Path::new(d.file_name().expect("a directory of its own")));
    let d = utf8(d);
    vec![
        (
            "absolute and relative",
            Names {
                dir: d.to_owned(),
                server: format!("{d}/server.sock"),
                client: "client.sock".to_owned(),
                dgram_a: "a.sock".to_owned(),
                dgram_b: format!("{d}/b.sock"),
            },
        ),
        (
            // `..` and `.` stay as written; a relative name of 95 bytes fits the kernel's
            // 108 but not after `/proc/self/fd/N/`. The datagram's `..` leaves the directory
            // it binds in and comes back by name: one that looked a name up in it first
            // (`{d}/sub/../b2.sock`) is refused since rt5 E1's fix: the broker cannot make
            // that walk land where it decided (`redteam5::rt5_e1_a_datagram_path_*`).
            "dot-dot and a long name",
            Names {
                dir: format!("{d}/sub"),
                server: "../server2.sock".to_owned(),
                client: "c".repeat(95),
                dgram_a: "./a2.sock".to_owned(),
                dgram_b: format!("{d}/../{name}/b2.sock"),
            },
        ),
    ]
}

fn names_read_back(via: Via) {
    let dir = open_dir();
    for (what, names) in name_cases(dir.path()) {
        let args = names.args();
        fresh(dir.path());
        let out = unconfined(&strs(&args));
        names.assert_read_back(&out, &format!("{what}, unconfined"));
        for policy in POLICIES {
            fresh(dir.path());
            let out = via.run(policy, &strs(&args));
            names.assert_read_back(&out, &format!("{what}, {policy}"));
        }
    }
}

both!(
    /// C1: a unix socket bound through the broker reads back the program's own name, absolute
    /// or relative (with `.` and `..` as written, and a name too long for
    /// `/proc/self/fd/N/NAME`): `getsockname` of a stream server, of a client bound before it
    /// connects to the name the server read back, of the connection `accept` gives; the
    /// client's `getpeername`; `accept`'s peer address; the source `recvfrom` shows of a
    /// datagram from a bound socket. Under `allow-all` and `loopback-only`, as unconfined.
    c1_unix_names_read_back_as_bound => names_read_back
);

fn names_in_a_chroot(via: Via) {
    // The probe chroots itself: CAP_SYS_CHROOT.
    if !need_root("c1_unix_names_in_a_chroot") {
        return;
    }
    let dir = TempDir::new();
    let jail = dir.path().join("jail");
    std::fs::create_dir_all(jail.join("box")).expect("create the jail");
    // A host directory of the same name as the jail's: a name resolved in the broker's root
    // would land there.
    let names = Names {
        dir: "/box".to_owned(),
        server: "/box/server.sock".to_owned(),
        client: "client.sock".to_owned(),
        dgram_a: "../box/a.sock".to_owned(),
        dgram_b: "/box/b.sock".to_owned(),
    };
    let mut args = names.args();
    args.extend(["--chroot".to_owned(), utf8(&jail).to_owned()]);
    // The policy names the sockets as the view the sandbox registered in names them (the
    // jail's path: a chroot gives no socket a new name, rule mount-view); the program reads
    // back the names it gave.
    let allowed = format!("{}/box/*", utf8(&jail));
    let policy = policy_file(&format!(
        "name = \"c1-chroot\"\n[[allow]]\nunix = [{allowed:?}]\n"
    ));
    let out = unconfined(&strs(&args));
    names.assert_read_back(&out, "in a chroot, unconfined");
    assert!(
        jail.join("box/server.sock").exists(),
        "unconfined: not in the jail"
    );
    for (what, policy) in [
        ("allow JAIL/box/*", policy.as_str()),
        ("allow-all", "allow-all"),
    ] {
        empty(&jail.join("box"));
        let out = via.run(policy, &strs(&args));
        names.assert_read_back(&out, &format!("in a chroot, {what}"));
        assert!(
            jail.join("box/server.sock").exists(),
            "{what}: the socket file is not in the jail: {}",
            out.describe()
        );
    }
}

both!(
    /// C1: a program that chroots itself reads back its sockets' names as it named them
    /// inside its root (the broker binds with the program's own bytes on a thread in the
    /// program's root and working directory); the files are made in the jail.
    c1_unix_names_in_a_chroot => names_in_a_chroot
);

/// C1, the limit where the broker can do no better: a broker without `CAP_SYS_CHROOT` cannot
/// enter a chrooted program's root, so it binds the program's socket as before, through
/// `/proc/self/fd/DIR/NAME` on the directory it decided on. The socket is still made in the
/// jail, as the caller, where the policy allows, and refused elsewhere; its name is the
/// broker's (docs/security.md, "Limits").
#[test]
fn c1_limit_a_broker_that_cannot_chroot_names_a_chrooted_socket_its_own_way() {
    if !need_root("c1_limit_a_broker_that_cannot_chroot_names_a_chrooted_socket_its_own_way") {
        return;
    }
    let broker = Via::Broker(netjail_integration_tests::Broker::start_with(
        &["setpriv", "--bounding-set=-sys_chroot", "--"],
        |_| Vec::new(),
    ));
    let dir = TempDir::new();
    let jail = dir.path().join("jail");
    std::fs::create_dir_all(jail.join("box")).expect("create the jail");
    std::fs::create_dir_all(jail.join("other")).expect("create the jail");
    let allowed = format!("{}/box/*", utf8(&jail));
    let policy = policy_file(&format!(
        "name = \"c1-nochroot\"\n[[allow]]\nunix = [{allowed:?}]\n"
    ));
    let names = Names {
        dir: "/box".to_owned(),
        server: "/box/server.sock".to_owned(),
        client: "client.sock".to_owned(),
        dgram_a: "a.sock".to_owned(),
        dgram_b: "/other/b.sock".to_owned(),
    };
    let mut args = names.args();
    args.extend(["--chroot".to_owned(), utf8(&jail).to_owned()]);
    let out = broker.run(policy.as_str(), &strs(&args));
    let v = out.json();
    let server = v["names"]["server"].as_str().unwrap_or_default();
    assert!(
        server.starts_with("/proc/self/fd/") && server.ends_with("/server.sock"),
        "the broker's name: {}",
        out.describe()
    );
    assert!(
        jail.join("box/server.sock").exists() && jail.join("box/a.sock").exists(),
        "the sockets are not in the jail: {}",
        out.describe()
    );
    assert_eq!(
        v["errors"]["bind_dgram_b"],
        "EPERM",
        "a bind the policy refuses: {}",
        out.describe()
    );
    assert!(!jail.join("other/b.sock").exists());
}

/// C1 with an unprivileged broker: `netjail run` started by nobody embeds a broker without
/// `CAP_NET_ADMIN` or `CAP_SYS_CHROOT`; it finds the socket's file with `sock_diag` and binds
/// the program's own name too. (Such a broker sends no unix datagram for a sandbox, L14.)
#[test]
fn c1_unix_names_with_an_unprivileged_broker() {
    let test = "c1_unix_names_with_an_unprivileged_broker";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let dir = open_dir();
    let netjail = netjail_bin();
    for (what, names) in name_cases(dir.path()) {
        let args = names.args();
        fresh(dir.path());
        let out = unconfined(&as_nobody(&strs(&args)));
        names.assert_read_back(&out, &format!("{what}, unconfined nobody"));
        fresh(dir.path());
        let mut confined = vec![utf8(&netjail), "run", "--policy", "loopback-only", "--"];
        confined.extend(strs(&args));
        let out = unconfined(&as_nobody(&confined));
        names.assert_names(&out, &format!("{what}, nobody's embedded broker"), false);
    }
}

/// The path column of `/proc/net/unix` (the eighth field, where a socket has a name).
fn proc_net_unix_paths() -> Vec<String> {
    std::fs::read_to_string("/proc/net/unix")
        .expect("read /proc/net/unix")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_owned))
        .collect()
}

/// The whitespace-separated lines of `ss -x -a` (every unix socket of this network namespace).
fn ss_unix() -> Vec<Vec<String>> {
    let out = run(
        Command::new("ss").args(["-x", "-a", "-n"]),
        Duration::from_secs(20),
    );
    out.assert_success();
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn ss_shows_names(via: Via) {
    let test = "c1_ss_shows_the_programs_names";
    if netjail_integration_tests::which("ss").is_none() {
        netjail_integration_tests::skip(test, "ss (iproute2) not found");
        return;
    }
    let dir = open_dir();
    let d = utf8(dir.path());
    let tag = dir
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name");
    let names = Names {
        dir: d.to_owned(),
        server: format!("{d}/ss-server.sock"),
        client: format!("{tag}-client.sock"),
        dgram_a: format!("{tag}-a.sock"),
        dgram_b: format!("{d}/ss-b.sock"),
    };
    let done = dir.path().join("done");
    let mut args = names.args();
    args.extend(["--hold".to_owned(), utf8(&done).to_owned()]);
    for confined in [false, true] {
        empty(dir.path());
        let mut cmd = if confined {
            via.cmd("loopback-only", &strs(&args))
        } else {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        };
        let running = spawn(&mut cmd);
        let line = running.read_line(Duration::from_secs(20));
        let held: Option<Value> = line.as_deref().and_then(|l| serde_json::from_str(l).ok());
        let lines = ss_unix();
        let proc_net = proc_net_unix_paths();
        std::fs::write(&done, b"").expect("tell the probe to end");
        let out = running.wait(Duration::from_secs(40));
        let held = held.unwrap_or_else(|| panic!("no names ({line:?}): {}", out.describe()));
        assert_eq!(held["ok"], true, "confined={confined}: {}", out.describe());
        // The local address of each socket, as ss shows it (the fifth column).
        let local = |name: &str| {
            lines
                .iter()
                .filter(|l| l.get(4).map(String::as_str) == Some(name))
                .count()
        };
        let listening = lines.iter().any(|l| {
            l.get(1).map(String::as_str) == Some("LISTEN") && l.get(4) == Some(&names.server)
        });
        assert!(
            listening,
            "confined={confined}: ss -x shows no listener at {}: {lines:?}",
            names.server
        );
        // The listener and the connection accepted from it; the client; the two datagram
        // sockets.
        assert_eq!(local(&names.server), 2, "confined={confined}: {lines:?}");
        for name in [&names.client, &names.dgram_a, &names.dgram_b] {
            assert_eq!(local(name), 1, "confined={confined}: {name} in {lines:?}");
        }
        // `/proc/net/unix` (netstat's and older tools' source) shows the same names.
        let listed = |name: &str| proc_net.iter().filter(|p| p.as_str() == name).count();
        assert_eq!(
            listed(&names.server),
            2,
            "confined={confined}: /proc/net/unix {proc_net:?}"
        );
        for name in [&names.client, &names.dgram_a, &names.dgram_b] {
            assert_eq!(
                listed(name),
                1,
                "confined={confined}: {name} in /proc/net/unix {proc_net:?}"
            );
        }
        let _ = std::fs::remove_file(&done);
    }
}

both!(
    /// C1: `ss -x` and `/proc/net/unix` list the sockets of a confined program by the names
    /// the program gave them: a listener at its absolute path, the connection it accepted, a
    /// client and a datagram socket at their relative names.
    c1_ss_shows_the_programs_names => ss_shows_names
);

/// multiprocessing's manager: a server process binds a unix socket in a fresh temporary
/// directory and its clients connect to the address the server read back.
const PY_MANAGER: &str = r#"
import json, multiprocessing
if __name__ == "__main__":
    with multiprocessing.Manager() as m:
        d = m.dict()
        d["x"] = 1
        shared = m.list([1, 2])
        shared.append(3)
        print(json.dumps({"ok": dict(d) == {"x": 1} and list(shared) == [1, 2, 3],
                          "address": m.address}))
"#;

/// asyncio's unix server and client, the client connecting to the name the server's socket
/// reads back; `argv[1]` is the directory, `argv[2]` the (relative) name.
const PY_ASYNCIO: &str = r#"
import asyncio, json, os, sys
os.chdir(sys.argv[1])
async def main(path):
    async def echo(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
    server = await asyncio.start_unix_server(echo, path)
    name = server.sockets[0].getsockname()
    reader, writer = await asyncio.open_unix_connection(name)
    writer.write(b"hello\n")
    await writer.drain()
    got = await asyncio.wait_for(reader.readline(), 10)
    peer = writer.get_extra_info("peername")
    writer.close()
    server.close()
    await server.wait_closed()
    print(json.dumps({"ok": got == b"HELLO\n", "name": name, "peer": peer}))
asyncio.run(main(sys.argv[2]))
"#;

fn python_unix(via: Via) {
    let test = "c1_python_multiprocessing_and_asyncio_unix";
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    let d = utf8(dir.path());
    let manager = [py.as_str(), "-c", PY_MANAGER];
    let asyncio = [py.as_str(), "-c", PY_ASYNCIO, d, "echo.sock"];
    let check_asyncio = |out: &Outcome, what: &str| {
        let v = out.json();
        assert_eq!(v["ok"], true, "asyncio, {what}: {}", out.describe());
        assert_eq!(
            v["name"],
            "echo.sock",
            "asyncio, {what}: {}",
            out.describe()
        );
        assert_eq!(
            v["peer"],
            "echo.sock",
            "asyncio, {what}: {}",
            out.describe()
        );
    };
    let out = unconfined(&manager);
    assert_eq!(
        out.json()["ok"],
        true,
        "manager, unconfined: {}",
        out.describe()
    );
    let out = unconfined(&asyncio);
    check_asyncio(&out, "unconfined");
    for policy in POLICIES {
        let out = via.run(policy, &manager);
        assert_eq!(
            out.json()["ok"],
            true,
            "manager, {policy}: {}",
            out.describe()
        );
        let address = out.json()["address"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !address.contains("/proc/self/fd"),
            "manager, {policy}: address {address}"
        );
        empty(dir.path());
        let out = via.run(policy, &asyncio);
        check_asyncio(&out, policy);
    }
}

both!(
    /// C1: Python's `multiprocessing.Manager()` (a server process whose clients connect to
    /// the address it read back) and asyncio's `start_unix_server`/`open_unix_connection` (a
    /// client connecting to the server socket's `getsockname`) work under `allow-all` and
    /// `loopback-only`, as unconfined, and the names are the program's.
    c1_python_multiprocessing_and_asyncio_unix => python_unix
);

/// logging's handlers that send to a unix datagram server at the name the server's socket
/// reads back, as test_logging's `UnixDatagramHandlerTest` and `UnixSysLogHandlerTest` do:
/// `DatagramHandler(address, None)` (a pickled record) and `SysLogHandler(address=...)`.
/// `argv[1]` is the directory, `argv[2]` the (relative) name.
const PY_LOGGING: &str = r#"
import json, logging.handlers, os, pickle, socket, sys
os.chdir(sys.argv[1])
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind(sys.argv[2])
server.settimeout(10)
name = server.getsockname()
record = logging.makeLogRecord({"msg": "hello"})
out = {"name": name}
handler = logging.handlers.DatagramHandler(name, None)
handler.emit(record)
out["datagram"] = pickle.loads(server.recv(65536)[4:])["msg"]
handler.close()
handler = logging.handlers.SysLogHandler(address=name)
handler.emit(record)
out["syslog"] = server.recv(65536).decode()
handler.close()
print(json.dumps(out))
"#;

fn python_logging(via: Via) {
    let test = "c1_python_logging_unix_datagram_handlers";
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    let args = [py.as_str(), "-c", PY_LOGGING, utf8(dir.path()), "log.sock"];
    let check = |out: &Outcome, what: &str| {
        let v = out.json();
        assert_eq!(v["name"], "log.sock", "{what}: {}", out.describe());
        assert_eq!(v["datagram"], "hello", "{what}: {}", out.describe());
        assert!(
            v["syslog"]
                .as_str()
                .is_some_and(|m| m.ends_with("hello\u{0}")),
            "{what}: {}",
            out.describe()
        );
    };
    empty(dir.path());
    check(&unconfined(&args), "unconfined");
    for policy in POLICIES {
        empty(dir.path());
        check(&via.run(policy, &args), policy);
    }
}

both!(
    /// C1: logging's unix datagram handlers (`DatagramHandler` and `SysLogHandler` given the
    /// address a unix datagram server's socket reads back) deliver their records under
    /// `allow-all` and `loopback-only`, as unconfined.
    c1_python_logging_unix_datagram_handlers => python_logging
);

/// Binds `N` datagram sockets at `../box/dI.sock` from `argv[1]/sub` and sends one datagram
/// to each through a second socket, by that relative name; prints `{"done": N, "errors":
/// {ERRNO: count}}`.
const PY_DOTDOT: &str = r#"
import errno, json, os, socket, sys
os.chdir(os.path.join(sys.argv[1], "sub"))
n, done, errors = int(sys.argv[2]), 0, {}
sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(n):
    name = f"../box/d{i}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(name)
        sender.sendto(b"x", name)
        done += s.recv(1) == b"x"
    except OSError as e:
        key = errno.errorcode.get(e.errno, str(e.errno))
        errors[key] = errors.get(key, 0) + 1
    s.close()
    os.unlink(name) if os.path.exists(name) else None
print(json.dumps({"done": done, "errors": errors}))
"#;

fn dotdot_while_renaming(via: Via) {
    let test = "c1_dotdot_paths_resolve_while_the_system_renames";
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    for sub in ["sub", "box", "spin"] {
        std::fs::create_dir(dir.path().join(sub)).expect("create a test directory");
    }
    // Renames elsewhere on the system while the program resolves `..`: the kernel answers a
    // scoped walk (`RESOLVE_IN_ROOT`) that saw one `EAGAIN`, which the program's own bind or
    // send never gets.
    let spin = dir.path().join("spin");
    std::fs::write(spin.join("a"), b"").expect("create the file to rename");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (a, b) = (spin.join("a"), spin.join("b"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::rename(&a, &b);
                let _ = std::fs::rename(&b, &a);
            }
        })
    };
    let n = "300";
    let args = [py.as_str(), "-c", PY_DOTDOT, utf8(dir.path()), n];
    let check = |out: &Outcome, what: &str| {
        let v = out.json();
        assert_eq!(
            v["errors"],
            serde_json::json!({}),
            "{what}: {}",
            out.describe()
        );
        assert_eq!(v["done"], 300, "{what}: {}", out.describe());
    };
    let outcomes = [
        ("unconfined", unconfined(&args)),
        ("allow-all", via.run("allow-all", &args)),
        ("loopback-only", via.run("loopback-only", &args)),
    ];
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    renamer.join().expect("the renamer");
    for (what, out) in &outcomes {
        check(out, what);
    }
}

both!(
    /// C1's relative names with `..`: a bind and a send to `../box/NAME` succeed as
    /// unconfined while renames happen elsewhere on the system (the broker walks the path
    /// again when the kernel answers its scoped walk `EAGAIN`).
    c1_dotdot_paths_resolve_while_the_system_renames => dotdot_while_renaming
);

/// The attack: binds `N` sockets, stream (`BASE/link/tI`) or datagram (`BASE/link/dI`) at
/// random (by turns, the kinds could keep step with the flips), while a second process keeps swapping the symlink `BASE/link` between
/// `BASE/allowed` and `BASE/secret`; listens on each stream socket. Counts, for the binds
/// whose file appeared in `secret`: those the bind reported done, the stream ones, and those
/// `listen` accepted. Stops after 10
/// such files, `N` tries or 20 s; prints the counts, keeps its sockets until `BASE/done`
/// exists (at most 30 s).
const PY_RACE: &str = r#"
import json, os, random, socket, sys, time
base, n = sys.argv[1], int(sys.argv[2])
link, secret = os.path.join(base, "link"), os.path.join(base, "secret")
flipper = os.fork()
if flipper == 0:
    try:
        while True:
            for tmp, to in (("tmp-a", "allowed"), ("tmp-s", "secret")):
                tmp = os.path.join(base, tmp)
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                os.symlink(to, tmp)
                os.rename(tmp, link)
    finally:
        os._exit(0)
r = {"tries": 0, "bound": 0, "landed_in_secret": 0, "bound_in_secret": 0,
     "streams_in_secret": 0, "listening_in_secret": 0}
keep = []
deadline = time.monotonic() + 20
for i in range(n):
    if r["landed_in_secret"] >= 10 or time.monotonic() > deadline:
        break
    r["tries"] += 1
    stream = random.random() < 0.5
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    name = ("t%d" if stream else "d%d") % i
    try:
        s.bind(os.path.join(link, name))
        bound = True
        r["bound"] += 1
    except OSError:
        bound = False
    landed = os.path.lexists(os.path.join(secret, name))
    if landed:
        r["landed_in_secret"] += 1
        r["bound_in_secret"] += bound
        r["streams_in_secret"] += landed and stream
    if stream:
        try:
            s.listen(1)
            r["listening_in_secret"] += landed
        except OSError:
            pass
    keep.append(s)
os.kill(flipper, 9)
os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
end = time.monotonic() + 30
while not os.path.exists(os.path.join(base, "done")) and time.monotonic() < end:
    time.sleep(0.02)
"#;

/// How many of the socket files in `secret` answer: a stream connect, or a datagram.
fn reachable_in(secret: &Path) -> (usize, usize) {
    let mut files = 0;
    let mut reached = 0;
    for entry in std::fs::read_dir(secret).expect("read secret").flatten() {
        let path = entry.path();
        files += 1;
        // `tN`: a stream socket; `dN`: a datagram socket.
        let stream = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('t'));
        let ok = if stream {
            UnixStream::connect(&path).is_ok()
        } else {
            UnixDatagram::unbound()
                .and_then(|d| d.send_to(b"x", &path))
                .is_ok()
        };
        reached += usize::from(ok);
    }
    (files, reached)
}

fn bind_race(via: Via) {
    let test = "c1_unix_bind_race_never_serves_at_a_refused_name";
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    let base = dir.path();
    let policy: TempPath = policy_file(&format!(
        "name = \"c1-race\"\n[[allow]]\nunix = [\"{}/allowed/*\"]\n",
        utf8(base)
    ));
    let done = base.join("done");
    for confined in [false, true] {
        empty(base);
        for sub in ["allowed", "secret"] {
            std::fs::create_dir(base.join(sub)).expect("mkdir");
        }
        std::os::unix::fs::symlink("allowed", base.join("link")).expect("symlink");
        let args = [py.as_str(), "-c", PY_RACE, utf8(base), "4000"];
        let mut cmd = if confined {
            via.cmd(policy.as_str(), &args)
        } else {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        };
        let running = spawn(&mut cmd);
        let line = running.read_line(Duration::from_secs(60));
        let counts: Option<Value> = line.as_deref().and_then(|l| serde_json::from_str(l).ok());
        let (files, reached) = reachable_in(&base.join("secret"));
        std::fs::write(&done, b"").expect("tell the attack to end");
        let out = running.wait(Duration::from_secs(40));
        let counts = counts.unwrap_or_else(|| panic!("no counts ({line:?}): {}", out.describe()));
        let landed = counts["landed_in_secret"].as_u64().unwrap_or(0);
        // Confined, the bind lands in the directory decided on by construction (rt5 E1's
        // fix): the race is never won.
        assert!(
            (landed > 0) != confined,
            "confined={confined}: {landed} sockets in secret/ in {} tries: {}",
            counts["tries"],
            out.describe()
        );
        assert_eq!(files as u64, landed, "confined={confined}: {counts}");
        if confined {
            assert_eq!(
                (
                    &counts["bound_in_secret"],
                    &counts["listening_in_secret"],
                    reached
                ),
                (&Value::from(0), &Value::from(0), 0),
                "a bind the kernel made in the refused directory succeeded, listened or \
                 answered: {counts}; {}",
                out.describe()
            );
        } else {
            // Every socket that landed there answers, and every stream one listens.
            assert!(
                reached == files && counts["listening_in_secret"] == counts["streams_in_secret"],
                "unconfined, not every socket in secret answered: {counts}, {reached} of {files}"
            );
        }
        let _ = std::fs::remove_file(&done);
    }
}

both!(
    /// C1, the race the faithful bind opens: the broker decides on the directory it resolved,
    /// then binds with the program's own path, which the kernel walks again. A sandbox that
    /// swaps a directory symlink between the two got some binds made in the directory the
    /// policy refuses (each answered `EPERM`, its socket shut down and its `listen` refused);
    /// since rt5 E1's fix the kernel's walk ends in the directory decided on by construction,
    /// and no socket lands there at all. Unconfined the same attack leaves listeners there
    /// (the probe can see them).
    c1_unix_bind_race_never_serves_at_a_refused_name => bind_race
);

/// Binds a stream socket in `argv[1]/ok` and one in `argv[1]/no`, then runs the rest of the
/// command line with `-c LISTENER FD...` appended, the sockets inherited.
const PY_PREBOUND: &str = r#"
import os, socket, subprocess, sys
base, cmd = sys.argv[1], sys.argv[2:]
socks = {}
for d in ("ok", "no"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(base, d, "pre.sock"))
    socks[d] = s
listener = r'''
import errno, json, socket, sys
r = {}
for arg in sys.argv[1:]:
    d, fd = arg.split("=")
    s = socket.socket(fileno=int(fd))
    try:
        s.listen(1)
        r[d] = {"ok": True, "name": s.getsockname()}
    except OSError as e:
        r[d] = {"ok": False, "err": errno.errorcode[e.errno]}
print(json.dumps(r))
'''
args = cmd + ["-c", listener] + ["%s=%d" % (d, s.fileno()) for d, s in socks.items()]
sys.exit(subprocess.run(args, pass_fds=[s.fileno() for s in socks.values()]).returncode)
"#;

/// C1, `listen` decided again: sockets bound before confinement and inherited by the sandbox
/// listen where the policy allows a bind of their file, and get `EPERM` where it does not;
/// the name read back is unchanged.
#[test]
fn c1_listen_on_a_socket_bound_before_confinement_decides_its_file() {
    let test = "c1_listen_on_a_socket_bound_before_confinement_decides_its_file";
    let Some(py) = need_python(test) else {
        return;
    };
    let dir = TempDir::new();
    let base = dir.path();
    let policy = policy_file(&format!(
        "name = \"c1-prebound\"\n[[allow]]\nunix = [\"{}/ok/*\"]\n",
        utf8(base)
    ));
    let netjail = netjail_bin();
    let run_with = |inner: &[&str]| {
        empty(base);
        for sub in ["ok", "no"] {
            std::fs::create_dir(base.join(sub)).expect("mkdir");
        }
        let mut args = vec![py.as_str(), "-c", PY_PREBOUND, utf8(base)];
        args.extend_from_slice(inner);
        unconfined(&args)
    };
    let ok_name = format!("{}/ok/pre.sock", utf8(base));
    let out = run_with(&[py.as_str()]);
    assert_eq!(out.json()["ok"]["ok"], true, "{}", out.describe());
    assert_eq!(
        out.json()["no"]["ok"],
        true,
        "unconfined: {}",
        out.describe()
    );
    let policy_path = policy.as_str();
    let out = run_with(&[
        utf8(&netjail),
        "run",
        "--allow-root",
        "--policy",
        policy_path,
        "--",
        py.as_str(),
    ]);
    let v = out.json();
    assert_eq!(v["ok"]["ok"], true, "{}", out.describe());
    assert_eq!(v["ok"]["name"].as_str(), Some(ok_name.as_str()));
    assert_eq!(
        v["no"]["err"],
        "EPERM",
        "a listen at a refused name: {}",
        out.describe()
    );
}
