//! Hot reload (issue 8): `netjail reload` and SIGHUP make `netjaild` read its policy files
//! again; a running confined program's next call is decided by the new rules, and a file with
//! a mistake is reported with its file, line and column while its old rules stay.
//!
//! Every test runs a real `netjaild` and a python3 confined by `netjail run --no-embedded`,
//! which connects on demand; traffic goes to loopback only.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use netjail_integration_tests::{
    confined_with_broker_cmd, netjail_bin, policy_file, python3, run, skip, sys, Broker, Canary,
    Outcome, TempPath, PY_CONNECT_ON_DEMAND,
};
use serde_json::Value;

/// The policy of the tests: every connect is asked about, and with nobody watching the
/// fallback (deny) answers at once; the overlay's rules answer before anyone is asked.
const POLICY_NAME: &str = "reloading";

fn asking_policy() -> TempPath {
    policy_file(&format!(
        "name = \"{POLICY_NAME}\"\ndefault = \"ask\"\nask_timeout = \"5s\"\n"
    ))
}

/// A confined python3 of `netjail run --no-embedded`, driven one connect at a time; killed
/// by its pid on drop.
struct OnDemand {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl OnDemand {
    fn spawn(broker: &Broker, policy: &TempPath, py: &str) -> OnDemand {
        let mut child =
            confined_with_broker_cmd(broker, policy.as_str(), &[py, "-c", PY_CONNECT_ON_DEMAND])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("netjail run python3");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        OnDemand {
            child,
            stdin,
            stdout,
        }
    }

    /// One connect to 127.0.0.1:`port`: `ok` or the errno's name.
    fn connect(&mut self, port: u16) -> String {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{port}").expect("write to the child");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the child");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        if v["ok"] == true {
            "ok".into()
        } else {
            v["err"].as_str().unwrap_or("?").to_string()
        }
    }
}

impl Drop for OnDemand {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn overlay_file(broker: &Broker) -> PathBuf {
    broker
        .dir()
        .join("overlay")
        .join(format!("policy-{POLICY_NAME}.toml"))
}

/// An overlay file as an operator writes it by hand: one `[[TABLE]]` for the port.
fn write_overlay(broker: &Broker, table: &str, port: u16) {
    std::fs::write(
        overlay_file(broker),
        format!(
            "# edited by hand\nname = \"overlay\"\ndefault = \"ask\"\n\n\
             [[{table}]]\nconnect = [\"tcp://127.0.0.1:{port}\"]\n"
        ),
    )
    .expect("write the overlay file");
}

/// An overlay file with a mistake at line 4, column 1.
fn break_overlay(broker: &Broker) {
    std::fs::write(
        overlay_file(broker),
        "name = \"overlay\"\ndefault = \"ask\"\n[[allow]]\nconect = [\"tcp://127.0.0.1:1\"]\n",
    )
    .expect("write the overlay file");
}

fn reload(broker: &Broker) -> Outcome {
    run(
        Command::new(netjail_bin())
            .arg("reload")
            .arg("--control")
            .arg(broker.control()),
        Duration::from_secs(20),
    )
}

fn python_or_skip(test: &str) -> Option<String> {
    match python3() {
        Some(py) => Some(py.to_string_lossy().into_owned()),
        None => {
            skip(test, "no python3");
            None
        }
    }
}

#[test]
fn reload_puts_an_edited_overlay_file_in_force_for_the_next_call() {
    let Some(py) = python_or_skip("reload_puts_an_edited_overlay_file_in_force_for_the_next_call")
    else {
        return;
    };
    let canary = Canary::tcp4();
    let policy = asking_policy();
    let broker = Broker::start();
    let mut confined = OnDemand::spawn(&broker, &policy, &py);
    // Nobody watches: the `ask` falls back to deny.
    assert_eq!(confined.connect(canary.port()), "EPERM");

    write_overlay(&broker, "allow", canary.port());
    let out = reload(&broker);
    out.assert_success();
    let file = overlay_file(&broker).display().to_string();
    assert!(
        out.stdout.contains(&format!("reloaded: overlay {file}")),
        "{}",
        out.describe()
    );
    // The confined program's policy came from its client: said so, not read again.
    assert!(
        out.stdout.contains("not-reloadable: sandboxes sb-"),
        "{}",
        out.describe()
    );
    // The same running program, its next call: the new rule decides.
    assert_eq!(confined.connect(canary.port()), "ok");

    // A mistake: reported with file:line:column, the old rules still decide, the broker
    // serves on.
    break_overlay(&broker);
    let out = reload(&broker);
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stdout
            .contains(&format!("rejected: overlay {file}: {file}:4:1")),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("its old rules stay"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("of the reload failed"),
        "{}",
        out.describe()
    );
    assert_eq!(confined.connect(canary.port()), "ok");
    assert_eq!(confined.connect(canary.port()), "ok");

    // Fixed to a denial: in force again.
    write_overlay(&broker, "deny", canary.port());
    reload(&broker).assert_success();
    assert_eq!(confined.connect(canary.port()), "EPERM");
    drop(confined);
    let events = broker.audit_events();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "policies reloaded" && e["failed"] == 1),
        "no audit event of the failed reload"
    );
}

/// Waits until the broker has logged `n` SIGHUP reloads.
fn wait_sighup_reloads(broker: &Broker, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = broker.log().matches("policies reloaded on SIGHUP").count();
        if done >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload after SIGHUP\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_like_netjail_reload() {
    let Some(py) = python_or_skip("sighup_reloads_like_netjail_reload") else {
        return;
    };
    let canary = Canary::tcp4();
    let policy = asking_policy();
    let mut broker = Broker::start();
    let mut confined = OnDemand::spawn(&broker, &policy, &py);
    assert_eq!(confined.connect(canary.port()), "EPERM");

    write_overlay(&broker, "allow", canary.port());
    sys::kill(broker.pid(), libc::SIGHUP).expect("SIGHUP to our broker");
    wait_sighup_reloads(&broker, 1);
    assert_eq!(confined.connect(canary.port()), "ok");

    break_overlay(&broker);
    sys::kill(broker.pid(), libc::SIGHUP).expect("SIGHUP to our broker");
    wait_sighup_reloads(&broker, 2);
    let file = overlay_file(&broker).display().to_string();
    assert!(
        broker.log().contains(&format!("{file}:4:1")),
        "the log does not name the mistake\n{}",
        broker.log()
    );
    assert!(broker.is_alive(), "netjaild left on SIGHUP");
    assert_eq!(confined.connect(canary.port()), "ok");
}
