//! The bench's children: started with their output captured, waited for with a time bound,
//! killed by pid past it; what a measured child reports; the binaries the benches run.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sys;

/// The time bound of a child making `calls` calls: generous, since a noisy machine can stall.
pub fn timeout_for(calls: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(2 * calls as u64)
}

/// What one child reported.
pub struct ChildReport {
    pub lat_ns: Vec<u64>,
    pub ok: usize,
    pub errors: Vec<(i32, usize)>,
}

/// Spawns `cmd` with its output captured and waits at most `limit`. On timeout the child is
/// killed by pid: `SIGTERM` first when `graceful` (netjail forwards it to its command), then
/// `SIGKILL` two seconds later.
pub fn run_bounded(
    cmd: &mut Command,
    limit: Duration,
    graceful: bool,
) -> Result<(ExitStatus, String, String), String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    wait_bounded(child, limit, graceful)
}

/// Collects the piped stdout and stderr of a started `child` and waits at most `limit`, as
/// [`run_bounded`] does.
pub fn wait_bounded(
    mut child: Child,
    limit: Duration,
    graceful: bool,
) -> Result<(ExitStatus, String, String), String> {
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                kill_bounded(&mut child, graceful);
                return Err(format!(
                    "timed out after {:?}; killed pid {}",
                    limit,
                    child.id()
                ));
            }
            Err(e) => {
                kill_bounded(&mut child, false);
                return Err(format!("wait for pid {}: {e}", child.id()));
            }
        }
    };
    Ok((status, join(stdout), join(stderr)))
}

/// The timed calls of a measured child (`--child connect ...`) whose `count` calls must all
/// have succeeded; an error names `label` and carries the child's stderr.
pub fn all_succeeded(
    label: &str,
    (status, stdout, stderr): (ExitStatus, String, String),
    count: usize,
) -> Result<Vec<u64>, String> {
    let context = |msg: String| -> String {
        let stderr = stderr.trim();
        if stderr.is_empty() {
            format!("{label}: {msg}")
        } else {
            format!("{label}: {msg}\n--- its stderr ---\n{stderr}")
        }
    };
    if !status.success() {
        return Err(context(format!("child ended with {status}")));
    }
    let report = parse_report(&stdout).map_err(context)?;
    if report.lat_ns.len() != count || report.ok != count {
        return Err(context(format!(
            "expected {count} successful calls, got {} samples, {} succeeded, errors (errno, count) {:?}",
            report.lat_ns.len(),
            report.ok,
            report.errors
        )));
    }
    Ok(report.lat_ns)
}

/// Kills `child` by pid and reaps it.
pub fn kill_bounded(child: &mut Child, graceful: bool) {
    if graceful {
        let _ = sys::kill(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<String>> {
    pipe.map(|mut p| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

pub fn join(handle: Option<JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// The last JSON line of a child's stdout that carries `lat_ns`.
pub fn parse_report(stdout: &str) -> Result<ChildReport, String> {
    let value = stdout
        .as_bytes()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .filter(|v| v.get("lat_ns").is_some())
        .last()
        .ok_or_else(|| format!("no result line on stdout (stdout was {stdout:?})"))?;
    let lat_ns = value["lat_ns"]
        .as_array()
        .ok_or("lat_ns is not an array")?
        .iter()
        .map(|v| v.as_u64().ok_or("lat_ns holds a non-integer"))
        .collect::<Result<Vec<u64>, _>>()?;
    let ok = value["ok"].as_u64().ok_or("ok is not a number")? as usize;
    let mut errors = Vec::new();
    if let Some(map) = value["errors"].as_object() {
        for (k, v) in map {
            let errno = k.parse().map_err(|_| format!("bad errno key {k:?}"))?;
            errors.push((errno, v.as_u64().unwrap_or(0) as usize));
        }
    }
    Ok(ChildReport { lat_ns, ok, errors })
}

/// This bench's own executable, which the measured children run.
pub fn this_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))
}

/// The binary `name` (`netjail`, `netjaild`): `given` with `--NAME PATH`, else the one beside
/// this executable (the same `target/` profile); an error saying how to get it otherwise.
pub fn sibling_binary(given: Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no {name} binary at {} (run `cargo build --release --workspace` first, or pass --{name} PATH)",
            path.display()
        ))
    }
}
