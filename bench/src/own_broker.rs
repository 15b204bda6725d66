//! The fixture of the benches that start their own `netjaild` (`held`, `flood`, `scale`): a
//! fresh directory under `/tmp` with the policy, the broker's sockets, overlay and log; the
//! broker process; `netjail run --broker SOCK --no-embedded ...` children; `netjail status`
//! and `netjail metrics` on its control socket; and the bounded polling the benches wait with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    process::all_succeeded, process::kill_bounded, process::run_bounded, process::timeout_for,
};

/// How long the benches wait for the broker's state to change (calls held, released,
/// sandboxes gone...).
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The sandbox name of the measured children (`netjail run --name`), as `netjail status`
/// shows it.
pub(super) const MEASURED_NAME: &str = "nj-bench-measured";

/// A fresh directory under `/tmp` (mode 0700), removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    /// `/tmp/nj-bench-TAG-PID-XXXXXXXX`.
    pub(super) fn new(tag: &str) -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..100u32 {
            let path = PathBuf::from(format!(
                "/tmp/nj-bench-{tag}-{}-{:08x}",
                std::process::id(),
                nanos.wrapping_add(attempt.wrapping_mul(0x9e37_79b9))
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("mkdir {}: {e}", path.display())),
            }
        }
        Err("cannot make a fresh directory under /tmp".into())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process this bench started, killed by pid (SIGTERM, then SIGKILL) on drop.
pub(super) struct Process {
    what: &'static str,
    pub(super) child: Option<Child>,
}

impl Process {
    pub(super) fn spawn(what: &'static str, cmd: &mut Command) -> Result<Process, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {what} ({:?}): {e}", cmd.get_program()))?;
        Ok(Process {
            what,
            child: Some(child),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Err` with how it ended when it is no longer running.
    pub(super) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!(
                "{} (pid {}) ended: {status}",
                self.what,
                self.pid()
            )),
            Some(Err(e)) => Err(format!("wait for {} (pid {}): {e}", self.what, self.pid())),
            None => Err(format!("{} was stopped", self.what)),
        }
    }

    /// Ends it by pid (SIGTERM, SIGKILL after 2 s) and reaps it.
    pub(super) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_bounded(&mut child, true);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `poll` every 20 ms until `done` holds of what it returns (which it returns), for at
/// most `limit`; past it, `Err(late(last))`.
pub(super) fn poll_until<T>(
    limit: Duration,
    mut poll: impl FnMut() -> Result<T, String>,
    mut done: impl FnMut(&T) -> bool,
    late: impl FnOnce(&T) -> String,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        let x = poll()?;
        if done(&x) {
            return Ok(x);
        }
        if Instant::now() > deadline {
            return Err(late(&x));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `netjail WORDS --control CONTROL`.
fn control_command(netjail: &Path, control: &Path, words: &[&str]) -> Command {
    let mut cmd = Command::new(netjail);
    cmd.args(words).arg("--control").arg(control);
    cmd
}

/// A bench's own `netjaild` in a fresh directory, with the policy its children run under.
/// The broker is ended (by pid) on drop, before its directory is removed.
pub(super) struct OwnBroker {
    process: Process,
    /// Where the policy, the sockets, the overlay and the log are.
    pub(super) dir: TempDir,
    /// The registration socket (`--socket`).
    pub(super) socket: PathBuf,
    /// The control socket (`--control`).
    pub(super) control: PathBuf,
    /// `policy.toml` in the directory.
    pub(super) policy: PathBuf,
    netjail: PathBuf,
    /// This bench's executable, which [`OwnBroker::confined`] runs.
    pub(super) exe: PathBuf,
}

impl OwnBroker {
    /// Writes `policy` to `policy.toml` in `dir`, starts `netjaild` with its sockets, overlay
    /// and log (`--log-format json`) in `dir`, and waits until both its sockets answer.
    /// `exe` is this bench, run confined by [`OwnBroker::confined`].
    pub(super) fn start(
        dir: TempDir,
        policy: &str,
        netjail: &Path,
        netjaild: &Path,
        exe: PathBuf,
    ) -> Result<OwnBroker, String> {
        let policy_path = dir.0.join("policy.toml");
        std::fs::write(&policy_path, policy)
            .map_err(|e| format!("write {}: {e}", policy_path.display()))?;
        let socket = dir.0.join("broker.sock");
        let control = dir.0.join("control.sock");
        let log = std::fs::File::create(dir.0.join("netjaild.log"))
            .map_err(|e| format!("create the broker's log: {e}"))?;
        let mut cmd = Command::new(netjaild);
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--control")
            .arg(&control)
            .arg("--overlay")
            .arg(dir.0.join("overlay"))
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut broker = OwnBroker {
            process: Process::spawn("netjaild", &mut cmd)?,
            dir,
            socket,
            control,
            policy: policy_path,
            netjail: netjail.to_owned(),
            exe,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            broker
                .process
                .check_alive()
                .map_err(|e| format!("{e}\n--- its log ---\n{}", broker.log().trim()))?;
            // `netjaild` binds the control socket, then the registration socket, then serves
            // both: once `status` answers, both accept.
            if broker.socket.exists() && broker.control.exists() {
                let mut status = broker.control_command(&["status", "--json"]);
                if let Ok((s, _, _)) = run_bounded(&mut status, Duration::from_secs(10), false) {
                    if s.success() {
                        return Ok(broker);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "netjaild did not answer on {} within 10 s",
                    broker.control.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's pid.
    pub(super) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `Err` with how the broker ended when it is no longer running.
    pub(super) fn check_alive(&mut self) -> Result<(), String> {
        self.process.check_alive()
    }

    /// Ends the broker by pid (SIGTERM, SIGKILL after 2 s) and reaps it.
    pub(super) fn stop(&mut self) {
        self.process.stop();
    }

    /// The broker's log (`netjaild.log`), empty when it cannot be read.
    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("netjaild.log")).unwrap_or_default()
    }

    /// `netjail WORDS --control CONTROL` on this broker's control socket.
    pub(super) fn control_command(&self, words: &[&str]) -> Command {
        control_command(&self.netjail, &self.control, words)
    }

    /// Runs `netjail WORDS --control CONTROL` bounded by `limit` (see [`run_bounded`]).
    pub(super) fn control(
        &self,
        words: &[&str],
        limit: Duration,
    ) -> Result<(ExitStatus, String, String), String> {
        run_bounded(&mut self.control_command(words), limit, false)
    }

    /// `netjail status --json` (at most 20 s): how it ended, its stdout and its stderr; a
    /// failure to run it is `netjail status: ...`.
    pub(super) fn status_json(&self) -> Result<(ExitStatus, String, String), String> {
        self.control(&["status", "--json"], Duration::from_secs(20))
            .map_err(|e| format!("netjail status: {e}"))
    }

    /// A sample of `netjail metrics`, by its series name.
    pub(super) fn metric(&self, series: &str) -> Result<f64, String> {
        let (status, stdout, stderr) = self
            .control(&["metrics"], Duration::from_secs(20))
            .map_err(|e| format!("netjail metrics: {e}"))?;
        if !status.success() {
            return Err(format!("netjail metrics: {status}: {}", stderr.trim()));
        }
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| format!("netjail metrics: no {series}"))
    }

    /// `netjail run --broker SOCK --no-embedded --policy P --name NAME -- nj-bench --child ...`.
    pub(super) fn confined(&self, name: &str, child_args: &[String]) -> Command {
        let mut cmd = Command::new(&self.netjail);
        cmd.args(["run", "--allow-root"])
            .arg("--broker")
            .arg(&self.socket)
            .arg("--no-embedded")
            .arg("--policy")
            .arg(&self.policy)
            .arg("--name")
            .arg(name)
            .arg("--")
            .arg(&self.exe)
            .arg("--child")
            .args(child_args)
            .env("NETJAIL_LOG", "off");
        cmd
    }

    /// One confined child ([`MEASURED_NAME`]) making `count` timed connects to
    /// `127.0.0.1:PORT` after `warmup` untimed ones; all must succeed. Errors name `label`.
    pub(super) fn measure_connect(
        &self,
        label: &str,
        port: u16,
        count: usize,
        warmup: usize,
    ) -> Result<Vec<u64>, String> {
        let args = vec![
            "connect".to_owned(),
            port.to_string(),
            count.to_string(),
            warmup.to_string(),
        ];
        let mut cmd = self.confined(MEASURED_NAME, &args);
        let outcome = run_bounded(&mut cmd, timeout_for(count + warmup), true)
            .map_err(|e| format!("{label}: {e}"))?;
        all_succeeded(label, outcome, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn command_lines() {
        let dir = TempDir::new("test").unwrap();
        let d = dir.0.clone();
        let broker = OwnBroker {
            process: Process {
                what: "nothing",
                child: None,
            },
            socket: d.join("broker.sock"),
            control: d.join("control.sock"),
            policy: d.join("policy.toml"),
            dir,
            netjail: PathBuf::from("/x/netjail"),
            exe: PathBuf::from("/x/nj-bench"),
        };
        let d = d.display();
        let cmd = broker.confined("nj-bench-flooder", &["flood".into(), "9".into()]);
        assert_eq!(
            words(&cmd),
            format!(
                "/x/netjail run --allow-root --broker {d}/broker.sock --no-embedded --policy {d}/policy.toml \
                 --name nj-bench-flooder -- /x/nj-bench --child flood 9"
            )
            .split(' ')
            .collect::<Vec<_>>()
        );
        assert!(cmd
            .get_envs()
            .any(|(k, v)| k == "NETJAIL_LOG" && v == Some("off".as_ref())));
        assert_eq!(
            words(&broker.control_command(&["status", "--json"])),
            format!("/x/netjail status --json --control {d}/control.sock")
                .split(' ')
                .collect::<Vec<_>>()
        );
        assert_eq!(broker.pid(), 0);
    }

    #[test]
    fn poll_until_done_or_late() {
        let mut n = 0;
        let got = poll_until(
            Duration::from_secs(5),
            || {
                n += 1;
                Ok(n)
            },
            |&x| x == 3,
            |x| format!("late at {x}"),
        );
        assert_eq!(got, Ok(3));
        let late = poll_until(
            Duration::ZERO,
            || Ok(7),
            |_| false,
            |x| format!("late at {x}"),
        );
        assert_eq!(late, Err("late at 7".to_string()));
        let failed = poll_until(
            Duration::from_secs(5),
            || Err::<u8, _>("no".to_string()),
            |_| true,
            |_| String::new(),
        );
        assert_eq!(failed, Err("no".to_string()));
    }
}
