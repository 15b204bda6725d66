//! `netjaild` under a service manager: sockets handed over (`LISTEN_PID`/`LISTEN_FDS`), the
//! readiness notification, and the units in `packaging/`, read and checked against the
//! binary (issue 8; no systemd is booted).
//!
//! The service manager here is a few lines of python3 that do what systemd does: make the
//! sockets, put them at fds 3 and 4, set the variables, and exec netjaild in the same process.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    netjail_bin, netjaild_bin, policy_file, run, spawn, Canary, Running, TempDir,
};

use crate::{need_python, probe};

const WAIT: Duration = Duration::from_secs(10);

/// `python3 -c ACTIVATE NETJAILD SOCKET... -- ARGS...`: binds a listening SOCK_SEQPACKET
/// socket at each SOCKET, hands them over as fds 3, 4, ... with `LISTEN_FDS` and `LISTEN_PID`,
/// and execs NETJAILD with ARGS.
const ACTIVATE: &str = r#"
import fcntl, os, socket, sys
args = sys.argv[1:]
split = args.index('--')
netjaild, paths, rest = args[0], args[1:split], args[split + 1:]
socks = []
for p in paths:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(p)
    s.listen(16)
    socks.append(s)
# Out of the way first, so that putting one in place cannot close another.
high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100) for s in socks]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.set_inheritable(3 + i, True)
os.environ['LISTEN_FDS'] = str(len(socks))
os.environ['LISTEN_PID'] = str(os.getpid())
os.execv(netjaild, [netjaild] + rest)
"#;

struct Activated {
    dir: TempDir,
    daemon: Running,
    notify: UnixDatagram,
}

impl Activated {
    /// Starts netjaild with the sockets at `handed` (names in a fresh directory) handed
    /// over, and `args` (paths written `{dir}` are made absolute).
    fn start(py: &str, handed: &[&str], args: &[&str]) -> Activated {
        let dir = TempDir::new();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let mut cmd = Command::new(py);
        cmd.args(["-c", ACTIVATE])
            .arg(netjaild_bin())
            .args(handed.iter().map(|h| at(h)))
            .arg("--")
            .args(
                args.iter()
                    .map(|a| a.replace("{dir}", &dir.path().display().to_string())),
            )
            .env("NOTIFY_SOCKET", &notify_path);
        let daemon = spawn(&mut cmd);
        Activated {
            dir,
            daemon,
            notify,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The next state the daemon told the service manager.
    fn next_state(&self) -> String {
        let mut buf = [0u8; 256];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!(
                "no notification ({e}); netjaild said:\n{}",
                self.daemon.stderr_so_far()
            ),
        }
    }
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

/// Socket activation: netjaild serves the sockets it was handed (registration and control),
/// says READY=1, decides as usual, and on SIGTERM says STOPPING=1 and leaves the socket files
/// where the service manager made them (the same inodes), so that the next broker is handed
/// the same sockets.
#[test]
fn netjaild_serves_sockets_handed_over_and_leaves_them_in_place() {
    let test = "netjaild_serves_sockets_handed_over_and_leaves_them_in_place";
    let Some(py) = need_python(test) else {
        return;
    };
    let mut a = Activated::start(
        &py,
        &["broker.sock", "control.sock"],
        &[
            "--socket",
            "{dir}/broker.sock",
            "--control",
            "{dir}/control.sock",
            "--overlay",
            "{dir}/overlay",
        ],
    );
    assert_eq!(a.next_state(), "READY=1");
    let (broker_sock, control_sock) = (a.path("broker.sock"), a.path("control.sock"));
    let inodes = (inode(&broker_sock), inode(&control_sock));

    let (allowed, denied) = (Canary::tcp4(), Canary::tcp4());
    let policy = policy_file(&format!(
        "name = \"a\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\n",
        allowed.port()
    ));
    let confined = |port: &str| {
        run(
            Command::new(netjail_bin())
                .args(["run", "--allow-root", "--no-embedded", "--broker"])
                .arg(&broker_sock)
                .args(["--policy", policy.as_str(), "--"])
                .args([probe(), "connect", "tcp", "127.0.0.1", port]),
            WAIT,
        )
    };
    let out = confined(&allowed.port_str());
    assert_eq!(out.json()["ok"], true, "{}", out.describe());
    let out = confined(&denied.port_str());
    assert_eq!(out.json()["err"], "EPERM", "{}", out.describe());
    assert_eq!(allowed.settled_count(), 1);
    assert_eq!(denied.settled_count(), 0);
    let status = run(
        Command::new(netjail_bin())
            .args(["status", "--json", "--control"])
            .arg(&control_sock),
        WAIT,
    );
    assert_eq!(status.code(), Some(0), "{}", status.describe());
    assert!(
        a.daemon
            .stderr_so_far()
            .contains("registration socket from the service manager"),
        "{}",
        a.daemon.stderr_so_far()
    );

    a.daemon.terminate(WAIT);
    assert_eq!(a.next_state(), "STOPPING=1");
    assert_eq!(
        (inode(&broker_sock), inode(&control_sock)),
        inodes,
        "netjaild removed or re-made a socket the service manager owns"
    );
}

/// A socket handed over that none of the command line's paths names stops netjaild with a
/// message naming it, before it serves anything.
#[test]
fn a_socket_handed_over_for_no_role_is_refused() {
    let test = "a_socket_handed_over_for_no_role_is_refused";
    let Some(py) = need_python(test) else {
        return;
    };
    let a = Activated::start(
        &py,
        &["stray.sock"],
        &[
            "--socket",
            "{dir}/broker.sock",
            "--control",
            "{dir}/control.sock",
            "--overlay",
            "{dir}/overlay",
        ],
    );
    let out = a.daemon.wait(WAIT);
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert!(
        out.stderr.contains("stray.sock") && out.stderr.contains("none of --socket"),
        "{}",
        out.describe()
    );
}

/// The units in `packaging/`, read: the service is `Type=notify` (netjaild says READY=1,
/// tested above) and takes both socket units; each socket unit listens with SOCK_SEQPACKET on
/// the path netjaild's `ExecStart` names for its role (the path is how netjaild tells the
/// sockets apart) with the mode the broker gives the socket itself; every flag of `ExecStart`
/// is one `netjaild --help` lists; the service keeps a file descriptor store for netjaild's
/// stored listeners, and gives it time to answer its calls in progress when it stops.
#[test]
fn packaging_units_agree_with_netjaild() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let read = |name: &str| {
        std::fs::read_to_string(root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let value = |text: &str, key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let service = read("netjaild.service");
    assert_eq!(value(&service, "Type"), ["notify"]);
    assert_eq!(
        value(&service, "Sockets"),
        ["netjaild.socket netjaild-control.socket"]
    );
    let exec = value(&service, "ExecStart");
    assert_eq!(exec.len(), 1);
    let words: Vec<&str> = exec[0].split_whitespace().collect();
    assert!(words[0].ends_with("/netjaild"), "{words:?}");
    let flag = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .map(|i| words[i + 1].to_owned())
            .unwrap_or_else(|| panic!("ExecStart has no {name}"))
    };
    let help = run(Command::new(netjaild_bin()).arg("--help"), WAIT);
    for w in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.stdout.contains(*w), "netjaild --help has no {w}");
    }
    // The file descriptor store (fdstore.rs): systemd takes stored fds only with a maximum
    // above 0, netjaild stores them unless told not to, and the stop timeout leaves room for
    // the 5 s in which netjaild answers the calls in progress on SIGTERM.
    let max: Vec<u32> = value(&service, "FileDescriptorStoreMax")
        .iter()
        .map(|v| v.parse().expect("a number"))
        .collect();
    assert!(max.len() == 1 && max[0] >= 1024, "{max:?}");
    assert!(help.stdout.contains("--fd-store"), "{}", help.stdout);
    assert!(
        !exec[0].contains("--fd-store off"),
        "the unit stores fds but netjaild is told not to"
    );
    assert!(
        value(&service, "FileDescriptorStorePreserve").is_empty(),
        "FileDescriptorStorePreserve= needs systemd 254; the unit names it in a comment only"
    );
    let stop: Vec<u32> = value(&service, "TimeoutStopSec")
        .iter()
        .map(|v| v.parse().expect("seconds"))
        .collect();
    assert!(stop.len() == 1 && stop[0] > 5, "{stop:?}");
    for (unit, role, mode) in [
        ("netjaild.socket", "--socket", "0660"),
        ("netjaild-control.socket", "--control", "0666"),
    ] {
        let text = read(unit);
        assert_eq!(
            value(&text, "ListenSequentialPacket"),
            [flag(role)],
            "{unit}"
        );
        assert_eq!(value(&text, "SocketMode"), [mode], "{unit}");
        assert_eq!(value(&text, "Service"), ["netjaild.service"], "{unit}");
    }
}

/// netjaild raises its soft open-file limit to the hard one: it holds an fd per sandbox, and
/// a soft limit of 1,024 used to refuse sandboxes past about a thousand (`nj-bench scale`).
#[test]
fn netjaild_raises_its_open_file_limit() {
    let broker = netjail_integration_tests::Broker::start_with(
        &["prlimit", "--nofile=256:4096", "--"],
        |_| Vec::new(),
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", broker.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], ["4096", "4096"], "{line}");
}
