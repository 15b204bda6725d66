//! The command lines of the workers, natively or under `netjail run`, and the one-shot
//! measurements.

use std::path::PathBuf;
use std::process::Command;

use super::metric::{Fields, Test};
use super::options::Options;
use super::peers::Peers;
use super::worker::{decisions, Decision, Worker, Workers, COMMAND_LIMIT};
use crate::policy::PolicyFile;
use crate::process::run_bounded;

/// Everything the measurements need.
pub struct Bench<'a> {
    pub o: &'a Options,
    pub exe: PathBuf,
    pub peers: Peers,
    pub policy: PolicyFile,
}

impl Bench<'_> {
    /// The `MODE key=value...` line of `test`.
    pub fn command_line(&self, test: Test) -> String {
        let (o, p) = (self.o, &self.peers);
        match test {
            Test::TcpSend | Test::TcpRecv => format!(
                "{} port={} bytes={} chunk={} warmup={}",
                test.name(),
                p.tcp,
                o.tcp_bytes,
                o.chunk,
                o.tcp_bytes / 20
            ),
            Test::UdpRtt => format!(
                "udp-rtt port={} count={} warmup=1000 size=64",
                p.echo, o.rtt
            ),
            Test::UdpStream => format!(
                "udp-stream port={} count={} warmup=5000 size=64",
                p.sink, o.stream
            ),
            Test::Syscalls => format!(
                "syscalls port={} batches={} batch={}",
                p.blackhole, o.batches, o.batch
            ),
        }
    }

    /// `nj-bench --child cost ARGS... cpu=C`, natively or under `netjail run`.
    pub fn command(&self, args: &[&str], confined: bool) -> Command {
        let cpu = format!("cpu={}", self.o.pin.map_or(-1, |(c, _)| c as i64));
        let mut child_args: Vec<&str> = vec!["--child", "cost"];
        child_args.extend_from_slice(args);
        child_args.push(&cpu);
        if !confined || self.o.control {
            let mut cmd = Command::new(&self.exe);
            cmd.args(&child_args);
            return cmd;
        }
        let mut cmd = Command::new(&self.o.netjail);
        cmd.args(["--log-format", "json", "run", "--allow-root", "--policy"])
            .arg(&self.policy.0)
            .env_remove("NETJAIL_BROKER")
            .arg("--")
            .arg(&self.exe)
            .args(&child_args)
            .env("NETJAIL_LOG", "warn,netjail::audit=info");
        cmd
    }

    /// A one-shot child: its fields, and the broker decisions when confined.
    pub fn once(&self, args: &[&str], confined: bool) -> Result<(Fields, Vec<Decision>), String> {
        let mut cmd = self.command(args, confined);
        let variant = if confined { "confined" } else { "native" };
        let (status, stdout, stderr) = run_bounded(&mut cmd, COMMAND_LIMIT, confined)
            .map_err(|e| format!("{}, {variant}: {e}", args.join(" ")))?;
        let seen = if confined {
            decisions(&stderr)
        } else {
            Vec::new()
        };
        let fields = stdout
            .lines()
            .rev()
            .find_map(|l| match serde_json::from_str(l) {
                Ok(serde_json::Value::Object(m)) if m.contains_key("mode") => Some(m),
                _ => None,
            });
        match (status.success(), fields) {
            (true, Some(f)) => Ok((f, seen)),
            _ => Err(format!(
                "{}, {variant}: child ended with {status}; broker decisions {seen:?}\n--- its stderr ---\n{}",
                args.join(" "),
                stderr.trim()
            )),
        }
    }

    /// Starts the three workers that take turns.
    pub fn start_workers(&self) -> Result<Workers, String> {
        let native = Worker::start("native", self.command(&["serve"], false), false)?;
        let filter = format!("filter={}", self.o.third);
        let allow_all_cmd = self.command(&["serve", &filter], false);
        let allow_all = Worker::start(self.o.third, allow_all_cmd, false)?;
        let confined = if self.o.control {
            Worker::start("native-2", self.command(&["serve"], true), false)?
        } else {
            Worker::start("confined", self.command(&["serve"], true), true)?
        };
        Ok(Workers {
            native,
            allow_all,
            confined,
        })
    }
}
