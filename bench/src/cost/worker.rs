//! The long-lived measured workers (`nj-bench --child cost serve`), one measurement per line
//! sent, and the broker decisions read from a confined worker's audit log.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::metric::Fields;
use crate::process::{join, kill_bounded, reader};

/// How long one measurement may take on a very slow day.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A long-lived child (`nj-bench --child cost serve`) that runs one measurement per line sent.
pub struct Worker {
    pub label: &'static str,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub lines: Receiver<String>,
    pub stderr: Option<JoinHandle<String>>,
    pub pid: Option<i64>,
    /// Measurements asked for (each connects once).
    pub commands: usize,
    pub graceful: bool,
}

impl Worker {
    pub fn start(label: &'static str, mut cmd: Command, graceful: bool) -> Result<Worker, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{label}: cannot start {:?}: {e}", cmd.get_program()))?;
        let stdout = child.stdout.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let mut w = Worker {
            label,
            stdin: child.stdin.take(),
            stderr: reader(child.stderr.take()),
            child,
            lines,
            pid: None,
            commands: 0,
            graceful,
        };
        let ready = w.answer(Duration::from_secs(30))?;
        w.pid = ready.get("pid").and_then(|p| p.as_i64());
        Ok(w)
    }

    /// Runs one measurement (`MODE key=value...`) and returns its fields.
    pub fn ask(&mut self, line: &str) -> Result<Fields, String> {
        self.commands += 1;
        let sent = self
            .stdin
            .as_mut()
            .map(|s| writeln!(s, "{line}").and_then(|()| s.flush()));
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.fail(&format!("cannot send `{line}` to it")));
        }
        self.answer(COMMAND_LIMIT)
    }

    /// The next JSON line with a `mode`; an `error` in it, silence or an exit is an error.
    pub fn answer(&mut self, limit: Duration) -> Result<Fields, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let Ok(serde_json::Value::Object(f)) = serde_json::from_str(&line) else {
                        continue;
                    };
                    if let Some(e) = f.get("error") {
                        return Err(self.fail(&format!("measurement failed: {e}")));
                    }
                    if f.contains_key("mode") {
                        return Ok(f);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fail(&format!("no answer within {limit:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(self.fail("it exited")),
            }
        }
    }

    /// Stops the worker and describes what went wrong, with its stderr and broker decisions.
    pub fn fail(&mut self, what: &str) -> String {
        let stderr = self.stop();
        let seen: Vec<String> = decisions(&stderr)
            .iter()
            .map(|(op, d, e)| format!("{op} {d} errno {e}"))
            .collect();
        format!(
            "{} worker: {what}; broker decisions so far: [{}]\n--- its stderr ---\n{}",
            self.label,
            seen.join(", "),
            stderr.trim()
        )
    }

    /// Closes its stdin (it exits), waits a little, kills it otherwise; returns its stderr.
    pub fn stop(&mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    kill_bounded(&mut self.child, self.graceful);
                    break;
                }
            }
        }
        join(self.stderr.take())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.stop();
        }
    }
}

/// The three workers that take turns.
pub struct Workers {
    pub native: Worker,
    /// Native, with a one-instruction allow-all filter of its own.
    pub allow_all: Worker,
    /// Under `netjail run` (a second native worker in a control run).
    pub confined: Worker,
}

impl Workers {
    /// Stops all three; returns how many measurements the confined one made and the broker
    /// decisions in its audit log.
    pub fn retire(mut self) -> (usize, Vec<Decision>) {
        let _ = self.native.stop();
        let _ = self.allow_all.stop();
        let commands = self.confined.commands;
        (commands, decisions(&self.confined.stop()))
    }
}

/// One broker decision from the audit log: (op, decision, errno).
pub type Decision = (String, String, i64);

/// The audit log's decision events.
pub fn decisions(stderr: &str) -> Vec<Decision> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "decision")
        .map(|v| {
            (
                v["op"].as_str().unwrap_or("?").to_owned(),
                v["decision"].as_str().unwrap_or("?").to_owned(),
                v["errno"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}
