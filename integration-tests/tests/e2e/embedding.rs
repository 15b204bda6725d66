//! The broker embedded in a host program (issue 6): `Broker::builder()`, the decision hook,
//! run-time rules per sandbox, the broker's own socket, its stop; and `examples/browser.rs`,
//! as root and as an unprivileged user.
//!
//! The host program is this test process (threads and runtimes of its own), its children
//! python3 programs spawned with `netjail_client::sandbox`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netjail_broker::{Broker, Embedded, HookCall, HookVerdict};
use netjail_client::sandbox::{Sandbox, SandboxedChild};
use netjail_integration_tests::{
    run, skip, target_profile_dir, Canary, TempDir, PY_CONNECT_ON_DEMAND,
};
use netjail_policy::{Policy, Target};
use serde_json::Value;

use crate::{have_setpriv, need_python, need_root, probe};

const WAIT: Duration = Duration::from_secs(10);

/// A confined python3 child driven one connect at a time.
struct OnDemand {
    child: SandboxedChild,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl OnDemand {
    fn spawn(broker: &Embedded, name: &str, policy: Policy, py: &str) -> OnDemand {
        let mut cmd = Command::new(py);
        cmd.args(["-c", PY_CONNECT_ON_DEMAND])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = Sandbox::builder()
            .allow_root(true)
            .policy(policy)
            .broker(broker.broker().clone())
            .name(name)
            .command(cmd)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.child_mut().stdin.take().expect("stdin");
        let stdout = BufReader::new(child.child_mut().stdout.take().expect("stdout"));
        OnDemand {
            child,
            stdin,
            stdout,
        }
    }

    /// Asks for one connect; returns immediately.
    fn ask(&mut self, port: u16) {
        writeln!(self.stdin, "{port}").expect("write to the child");
        self.stdin.flush().expect("flush");
    }

    /// The answer to the last [`OnDemand::ask`]: `ok` or the errno's name.
    fn answer(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the child");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["ok"] == true {
            "ok".into()
        } else {
            v["err"].as_str().unwrap_or("?").to_string()
        }
    }

    fn connect(&mut self, port: u16) -> String {
        self.ask(port);
        self.answer()
    }

    fn finish(mut self) {
        drop(self.stdin);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "child ended with {status}");
    }
}

/// Unconfined, python3 reaches every canary once (the checks below can fail).
fn reach_unconfined(py: &str, canaries: &[&Canary]) {
    for c in canaries {
        let out = Command::new(py)
            .args(["-c", PY_CONNECT_ON_DEMAND])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                writeln!(child.stdin.take().unwrap(), "{}", c.port())?;
                child.wait_with_output()
            })
            .expect("unconfined python3");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"ok\": true"),
            "unconfined python3 did not reach {}: {out:?}",
            c.addr()
        );
        assert_eq!(c.wait_count(1, WAIT), 1);
    }
}

fn allow_ports(name: &str, ports: &[u16]) -> Policy {
    ports
        .iter()
        .fold(Policy::builder(name), |b, p| {
            b.allow(|t| t.connect(format!("tcp://127.0.0.1:{p}")))
        })
        .build()
        .expect("test policy builds")
}

/// A run-time rule changes the sandbox's very next call, both ways, and never lifts what the
/// policy itself denies.
#[test]
fn run_time_rules_take_effect_on_the_next_call() {
    let test = "run_time_rules_take_effect_on_the_next_call";
    let Some(py) = need_python(test) else {
        return;
    };
    let (a, b, d) = (Canary::tcp4(), Canary::tcp4(), Canary::tcp4());
    reach_unconfined(&py, &[&a, &b, &d]);
    let broker = Broker::builder().build().expect("embedded broker");
    let policy = Policy::builder("renderer")
        .deny(|t| t.connect(format!("tcp://127.0.0.1:{}", d.port())))
        .allow(|t| t.connect(format!("tcp://127.0.0.1:{}", a.port())))
        .build()
        .unwrap();
    let mut child = OnDemand::spawn(&broker, "renderer", policy, &py);
    let rules = broker
        .sandbox(child.child.sandbox())
        .expect("registered sandbox");
    let entry = |c: &Canary| format!("tcp://127.0.0.1:{}", c.port());

    assert_eq!(child.connect(a.port()), "ok");
    assert_eq!(child.connect(b.port()), "EPERM");
    rules.allow(&entry(&b)).unwrap();
    assert_eq!(
        child.connect(b.port()),
        "ok",
        "a grant counts from the next call"
    );
    assert_eq!(rules.revoke(&entry(&b)), Ok(true));
    assert_eq!(child.connect(b.port()), "EPERM", "so does a revocation");
    rules.deny(&entry(&a)).unwrap();
    assert_eq!(
        child.connect(a.port()),
        "EPERM",
        "a run-time deny beats the policy's allow"
    );
    rules.clear().unwrap();
    assert_eq!(child.connect(a.port()), "ok");
    // The policy's deny table is the ceiling.
    rules.allow(&entry(&d)).unwrap();
    assert_eq!(child.connect(d.port()), "EPERM");
    assert_eq!(
        rules.rules().unwrap(),
        vec![format!("allow connect {}", entry(&d))]
    );
    // Bad entries are refused with the entry and the reason, and change nothing.
    let err = rules
        .allow("tcp://example.com:443")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("example.com") && err.contains("host names"),
        "{err}"
    );
    assert_eq!(rules.rules().unwrap().len(), 1);

    child.finish();
    assert_eq!(a.settled_count(), 1 + 2, "unconfined once, allowed twice");
    assert_eq!(b.settled_count(), 1 + 1, "unconfined once, granted once");
    assert_eq!(d.settled_count(), 1, "the policy's deny held");
    // Once the sandbox has left, its handle says so.
    assert!(
        (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !rules.is_registered()
        }),
        "the sandbox did not retire"
    );
    assert!(rules.allow(&entry(&b)).is_err());
}

/// The hook decides per child after the policy's deny tables: it cannot lift them, its errno
/// reaches the caller, and a panicking hook denies without stopping the broker.
#[test]
fn the_hook_decides_per_child_after_the_deny_tables() {
    let test = "the_hook_decides_per_child_after_the_deny_tables";
    let Some(py) = need_python(test) else {
        return;
    };
    let (approved, refused, denied, buggy) = (
        Canary::tcp4(),
        Canary::tcp4(),
        Canary::tcp4(),
        Canary::tcp4(),
    );
    reach_unconfined(&py, &[&approved, &refused, &denied, &buggy]);
    let (ap, rp, bp) = (approved.port(), refused.port(), buggy.port());
    let seen: Arc<Mutex<Vec<(String, u16)>>> = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let broker = Broker::builder()
        .hook(move |call: &HookCall<'_>| {
            let Target::Inet { addr, .. } = &call.request.target else {
                return HookVerdict::Continue;
            };
            log.lock()
                .unwrap()
                .push((call.name.to_string(), addr.port()));
            match (call.name, addr.port()) {
                (_, p) if p == bp => panic!("a bug in the host program"),
                ("worker", p) if p == ap => HookVerdict::Allow,
                ("worker", p) if p == rp => HookVerdict::Deny {
                    errno: libc::ECONNREFUSED,
                },
                // The policy's deny table comes first: this is never asked.
                _ => HookVerdict::Allow,
            }
        })
        .build()
        .unwrap();
    let nothing = || {
        Policy::builder("nothing")
            .deny(|t| t.connect(format!("tcp://127.0.0.1:{}", denied.port())))
            .build()
            .unwrap()
    };
    let mut worker = OnDemand::spawn(&broker, "worker", nothing(), &py);
    let mut plugin = OnDemand::spawn(&broker, "plugin", nothing(), &py);
    assert_eq!(worker.connect(ap), "ok");
    assert_eq!(worker.connect(rp), "ECONNREFUSED");
    assert_eq!(worker.connect(denied.port()), "EPERM");
    assert_eq!(worker.connect(bp), "EPERM", "a panicking hook denies");
    // The other child: the hook's last arm allows, the deny table still wins.
    assert_eq!(plugin.connect(rp), "ok");
    assert_eq!(plugin.connect(denied.port()), "EPERM");
    // The broker serves on after the panic.
    assert_eq!(worker.connect(ap), "ok");
    worker.finish();
    plugin.finish();

    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|(_, p)| *p == denied.port()),
        "the hook was asked about a port the policy denies: {seen:?}"
    );
    assert_eq!(approved.settled_count(), 1 + 2);
    assert_eq!(refused.settled_count(), 1 + 1, "only the plugin's connect");
    assert_eq!(denied.settled_count(), 1);
    assert_eq!(buggy.settled_count(), 1);
}

/// A hook that waits (for a user, say) holds only the call it was asked about: another
/// sandbox's calls go on meanwhile (invariant 7).
#[test]
fn a_waiting_hook_holds_only_its_own_call() {
    let test = "a_waiting_hook_holds_only_its_own_call";
    let Some(py) = need_python(test) else {
        return;
    };
    let (slow_port, fast_port) = (Canary::tcp4(), Canary::tcp4());
    reach_unconfined(&py, &[&slow_port, &fast_port]);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (asked_tx, asked_rx) = mpsc::channel::<()>();
    let asked_tx = Mutex::new(asked_tx);
    let broker = Broker::builder()
        .hook(move |call: &HookCall<'_>| {
            if call.name == "slow" {
                let _ = asked_tx.lock().unwrap().send(());
                // Waits for the test, as a hook would wait for a user.
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            }
            HookVerdict::Allow
        })
        .build()
        .unwrap();
    let mut slow = OnDemand::spawn(&broker, "slow", Policy::builder("p").build().unwrap(), &py);
    let mut fast = OnDemand::spawn(&broker, "fast", Policy::builder("p").build().unwrap(), &py);
    slow.ask(slow_port.port());
    asked_rx.recv_timeout(WAIT).expect("the hook was asked");
    for i in 0..10 {
        assert_eq!(fast.connect(fast_port.port()), "ok", "fast connect {i}");
    }
    assert_eq!(
        slow_port.settled_count(),
        1,
        "the held call went nowhere yet"
    );
    release_tx.send(()).unwrap();
    assert_eq!(slow.answer(), "ok");
    slow.finish();
    fast.finish();
    assert_eq!(fast_port.settled_count(), 1 + 10);
    assert_eq!(slow_port.settled_count(), 1 + 1);
}

/// Dropping the embedded broker fails its children closed: their next connect fails instead of
/// going out unmediated (invariant 1, rule M4).
#[test]
fn s_m4_dropping_the_embedded_broker_fails_children_closed() {
    let test = "s_m4_dropping_the_embedded_broker_fails_children_closed";
    let Some(py) = need_python(test) else {
        return;
    };
    let a = Canary::tcp4();
    reach_unconfined(&py, &[&a]);
    let broker = Broker::builder().build().unwrap();
    let mut child = OnDemand::spawn(&broker, "renderer", allow_ports("r", &[a.port()]), &py);
    assert_eq!(child.connect(a.port()), "ok");
    let rules = broker.sandbox(child.child.sandbox()).unwrap();
    drop(broker);
    let answer = child.connect(a.port());
    assert_ne!(answer, "ok", "a call went out after the broker stopped");
    assert_eq!(
        answer, "ENOSYS",
        "the kernel's answer when no listener is left"
    );
    assert_eq!(child.connect(a.port()), "ENOSYS");
    child.finish();
    assert_eq!(a.settled_count(), 1 + 1);
    assert!(!rules.is_registered());
}

/// The embedded broker's own registration socket serves `netjail run` (and any client of
/// the protocol); its hook and run-time rules apply to those sandboxes too; and dropping the
/// broker removes the socket file.
#[test]
fn the_embedded_broker_serves_its_own_socket() {
    let dir = TempDir::new();
    let socket = dir.path().join("browser-netjail.sock");
    let (a, refused) = (Canary::tcp4(), Canary::tcp4());
    for c in [&a, &refused] {
        let out = run(
            Command::new(probe()).args(["connect", "tcp", "127.0.0.1", &c.port_str()]),
            WAIT,
        );
        assert_eq!(out.json()["ok"], true, "unconfined: {}", out.describe());
    }
    let rp = refused.port();
    let broker = Broker::builder()
        .socket(&socket)
        .hook(move |call: &HookCall<'_>| match &call.request.target {
            Target::Inet { addr, .. } if addr.port() == rp => HookVerdict::Deny {
                errno: libc::ECONNREFUSED,
            },
            _ => HookVerdict::Continue,
        })
        .build()
        .unwrap();
    assert_eq!(broker.socket_paths(), std::slice::from_ref(&socket));
    let policy =
        netjail_integration_tests::allow_connect_policy(&[format!("tcp://127.0.0.1:{}", a.port())]);
    let confined = |port: &str| {
        run(
            Command::new(netjail_integration_tests::netjail_bin())
                .args(["run", "--allow-root", "--no-embedded", "--broker"])
                .arg(&socket)
                .args(["--policy", policy.as_str(), "--"])
                .args([probe(), "connect", "tcp", "127.0.0.1", port]),
            WAIT,
        )
    };
    let out = confined(&a.port_str());
    assert_eq!(out.json()["ok"], true, "{}", out.describe());
    let out = confined(&refused.port_str());
    assert_eq!(out.json()["err"], "ECONNREFUSED", "{}", out.describe());
    assert_eq!(a.settled_count(), 2);
    assert_eq!(refused.settled_count(), 1);
    drop(broker);
    assert!(!socket.exists(), "the socket file stays after the broker");
    // Nobody answers there any more, and --no-embedded refuses to go on without a broker.
    let out = confined(&a.port_str());
    assert_ne!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(a.settled_count(), 2);
}

/// The example's binary, as `cargo build --workspace --all-targets` leaves it.
fn browser_example(test: &str) -> Option<PathBuf> {
    let path = target_profile_dir().join("examples").join("browser");
    if path.exists() {
        Some(path)
    } else {
        skip(
            test,
            &format!(
                "{} is not built (cargo build --workspace --all-targets)",
                path.display()
            ),
        );
        None
    }
}

/// What `cargo run --example browser` prints, ports aside (the origins are named).
const BROWSER_TABLE: &str = "\
netjail browser example: one embedded broker, three confined children
child                       app       ads       api
renderer (app only)         reached   EPERM     EPERM
plugin (no network)         EPERM     EPERM     EPERM
worker (parent approves)    EPERM     EPERM     reached
renderer, ads granted       reached   reached   EPERM

the parent's hook:
  worker -> app: refused
  worker -> ads: refused
  worker -> api: approved

connections received: app 2 ads 1 api 1
";

fn check_browser_output(out: &netjail_integration_tests::Outcome) {
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout, BROWSER_TABLE, "{}", out.describe());
}

/// `examples/browser.rs` prints the expected reachability table: per-child policies, the
/// parent's hook, a run-time grant, and the origins' own counts agree.
#[test]
fn s_d1_browser_example_prints_the_reachability_table() {
    let test = "s_d1_browser_example_prints_the_reachability_table";
    let Some(example) = browser_example(test) else {
        return;
    };
    check_browser_output(&run(&mut Command::new(example), Duration::from_secs(60)));
}

/// The same example as an ordinary user (a test uid, no capabilities at all): the embedded
/// broker and its children need no privilege (rule D6).
#[test]
fn s_d6_browser_example_as_an_unprivileged_user() {
    let test = "s_d6_browser_example_as_an_unprivileged_user";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let Some(example) = browser_example(test) else {
        return;
    };
    // A copy the test user can run, whatever the permissions of the build tree.
    let dir = TempDir::new();
    let copy = dir.path().join("browser");
    std::fs::copy(&example, &copy).expect("copy the example");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(
        Command::new("setpriv")
            .args([
                "--reuid=4714",
                "--regid=4714",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ])
            .arg(&copy)
            .env("HOME", "/"),
        Duration::from_secs(60),
    );
    check_browser_output(&out);
    // The same program as that user, unconfined, shows the user and capabilities it had.
    let who = run(
        Command::new("setpriv").args([
            "--reuid=4714",
            "--regid=4714",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "sh",
            "-c",
            "id -u; grep CapEff /proc/self/status",
        ]),
        WAIT,
    );
    assert_eq!(
        who.stdout,
        "4714\nCapEff:\t0000000000000000\n",
        "{}",
        who.describe()
    );
}

/// An unprivileged broker's own user operates it on its control socket (nobody else but root
/// and the operator group does): the owner of a broker embedded in a program can answer what
/// its policies ask. Another user's `netjail` refuses to talk to it (L6).
#[test]
fn an_unprivileged_brokers_owner_operates_it() {
    let test = "an_unprivileged_brokers_owner_operates_it";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let broker = crate::confine_self::broker_as(4715);
    assert_eq!(crate::confine_self::uid_of(broker.pid()), Some(4715));
    let status = |uid: u32| {
        let prefix = crate::confine_self::as_user(uid);
        run(
            Command::new(&prefix[0])
                .args(&prefix[1..])
                .arg(netjail_integration_tests::netjail_bin())
                .args(["status", "--json", "--control"])
                .arg(broker.control()),
            WAIT,
        )
    };
    let owner = status(4715);
    assert_eq!(owner.code(), Some(0), "{}", owner.describe());
    // Another user does not even talk to it (L6: a socket served by a uid that is neither
    // root nor theirs); the broker would refuse them anyway (not an operator).
    let other = status(4716);
    assert_eq!(other.code(), Some(1), "{}", other.describe());
    assert!(
        other
            .stderr
            .contains("the control socket is served by uid 4715, neither root nor this user"),
        "{}",
        other.describe()
    );
}
