//! The `netjaild` fixture: a broker child process with its audit log captured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{netjail_bin, netjaild_bin, run, spawn, sys, Running, TempDir};

/// The audit events' `target`.
pub const AUDIT_TARGET: &str = "netjail::audit";

/// A running `netjaild --socket <tmp>/broker.sock --control <tmp>/control.sock
/// --overlay <tmp>/overlay --log-format json`, killed by pid on drop.
///
/// Its stderr (the JSON log, audit events included) is collected as it runs.
pub struct Broker {
    child: Running,
    dir: TempDir,
    socket: PathBuf,
    control: PathBuf,
    /// The whole command line, to start the same broker again ([`Broker::start_again`]),
    /// and what the brokers started before at the same paths wrote on stderr.
    again: Box<(Vec<std::ffi::OsString>, String)>,
}

impl Broker {
    /// Starts the broker and waits (at most 10 s) until its registration socket accepts a
    /// `SOCK_SEQPACKET` connection. Panics with its stderr if it does not come up.
    pub fn start() -> Broker {
        Broker::start_with(&[], |_| Vec::new())
    }

    /// As [`Broker::start`], with `netjaild` run through `prefix` (`setpriv ...` to run it as
    /// another user; the temporary directory is then made theirs by the caller through `dir`)
    /// and with extra arguments made from the temporary directory by `extra` (which may name
    /// another `--overlay`, e.g. the one of a broker that ran before).
    pub fn start_with(
        prefix: &[&str],
        extra: impl FnOnce(&Path) -> Vec<std::ffi::OsString>,
    ) -> Broker {
        let dir = TempDir::new();
        let socket = dir.path().join("broker.sock");
        let control = dir.path().join("control.sock");
        let extra = extra(dir.path());
        let mut argv: Vec<std::ffi::OsString> = prefix.iter().map(|a| a.into()).collect();
        argv.push(netjaild_bin().into());
        argv.extend(["--socket".into(), socket.clone().into_os_string()]);
        let own_overlay = !extra.iter().any(|a| a == "--overlay");
        argv.extend(extra);
        argv.extend(["--control".into(), control.clone().into_os_string()]);
        if own_overlay {
            argv.extend([
                "--overlay".into(),
                dir.path().join("overlay").into_os_string(),
            ]);
        }
        argv.extend(["--log-format".into(), "json".into()]);
        let child = launch(&argv, &socket);
        Broker {
            child,
            dir,
            socket,
            control,
            again: Box::new((argv, String::new())),
        }
    }

    /// Kills the broker with SIGKILL (by pid) and waits for it: nothing of it runs on, and
    /// its socket files stay behind, as after a crash.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Starts the same broker again, same command line and paths (its state directory
    /// included), after [`Broker::kill`] or [`Broker::stop`]; waits until it accepts.
    pub fn start_again(&mut self) {
        self.child.kill();
        let log = self.child.stderr_so_far();
        self.again.1.push_str(&log);
        self.child = launch(&self.again.0, &self.socket);
    }

    /// The control socket (operators).
    pub fn control(&self) -> &Path {
        &self.control
    }

    /// Stops the broker (SIGTERM to its pid) and waits for it to exit, at most 10 s.
    pub fn stop(&mut self) {
        self.child.terminate(Duration::from_secs(10));
    }

    /// The registration socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The broker's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's pid.
    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// True while the broker process runs.
    pub fn is_alive(&mut self) -> bool {
        self.child.is_alive()
    }

    /// Everything the broker wrote on stderr so far.
    pub fn log(&self) -> String {
        format!("{}{}", self.again.1, self.child.stderr_so_far())
    }

    /// `netjail metrics --control CONTROL`, parsed with [`parse_metrics`]; panics unless it
    /// succeeds.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let out = run(
            Command::new(netjail_bin())
                .arg("metrics")
                .arg("--control")
                .arg(self.control()),
            Duration::from_secs(20),
        );
        out.assert_success();
        parse_metrics(&out.stdout)
    }

    /// `netjail status --json --control CONTROL`: the broker's line (`"kind": "broker"`) and
    /// one line per sandbox; panics unless it succeeds.
    pub fn status(&self) -> (Value, Vec<Value>) {
        let out = run(
            Command::new(netjail_bin())
                .args(["status", "--json", "--control"])
                .arg(self.control()),
            Duration::from_secs(20),
        );
        out.assert_success();
        let lines: Vec<Value> = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let broker = lines
            .iter()
            .find(|v| v["kind"] == "broker")
            .cloned()
            .unwrap_or_else(|| panic!("no broker line: {}", out.describe()));
        let sandboxes = lines
            .into_iter()
            .filter(|v| v["kind"] == "sandbox")
            .collect();
        (broker, sandboxes)
    }

    /// The audit (decision) events logged so far, as JSON objects with the event's fields at
    /// top level (fields nested under `"fields"` by the JSON formatter are lifted up).
    pub fn audit_events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|mut v| {
                let obj = v.as_object_mut()?;
                if let Some(Value::Object(fields)) = obj.remove("fields") {
                    for (k, val) in fields {
                        obj.entry(k).or_insert(val);
                    }
                }
                (obj.get("target").and_then(Value::as_str) == Some(AUDIT_TARGET)).then_some(v)
            })
            .collect()
    }

    /// Waits until at least `n` audit events satisfy `pred` (at most `timeout`), returns them.
    pub fn wait_audit(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Value> = self.audit_events().into_iter().filter(&pred).collect();
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Spawns `argv` and waits (at most 10 s) until `socket` accepts a `SOCK_SEQPACKET`
/// connection; panics with the broker's stderr if it exits or does not come up.
fn launch(argv: &[std::ffi::OsString], socket: &Path) -> Running {
    let mut cmd = Command::new(&argv[0]);
    // A service manager of the machine running the tests is not this broker's: it must not
    // be told anything, nor handed listeners to keep (fdstore.rs).
    cmd.args(&argv[1..]).env_remove("NOTIFY_SOCKET");
    let mut child = spawn(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if !child.is_alive() {
            panic!(
                "netjaild exited during start-up\n--- stderr ---\n{}",
                child.stderr_so_far()
            );
        }
        if sys::seqpacket_connect(socket).is_ok() {
            return child;
        }
        if Instant::now() > deadline {
            panic!(
                "netjaild did not accept on {} within 10 s\n--- stderr ---\n{}",
                socket.display(),
                child.stderr_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The samples of a Prometheus text exposition, by `name{labels}`; panics on a line that is
/// neither a comment (`# HELP`, `# TYPE`) nor `name{labels} value`.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            let name = words.next().expect("a name");
            let kind = words.next().expect("a type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type: {line}"
            );
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP netjail_") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `name value`: {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.starts_with("netjail_")
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line:?}"
        );
        assert!(
            typed.iter().any(|t| name.starts_with(t.as_str())),
            "{name} has no # TYPE before it"
        );
        if name_end < series.len() {
            let labels = series[name_end..]
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line:?}"));
            for pair in labels.split(',') {
                let (key, quoted) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line:?}"));
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name: {line:?}"
                );
                assert!(
                    quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                    "unquoted label value: {line:?}"
                );
            }
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "a series twice: {line:?}"
        );
    }
    samples
}
