//! The processes of a held call's caller as operators are shown them: the caller, its parents
//! up to the sandbox's first process, and their programs.

use netjail_protocol::control::ProcessInfo;

use super::clip;

/// Processes reported in the chain of a held call.
pub(super) const MAX_CHAIN: usize = 16;

/// Bytes of a program name in a report.
const MAX_PROGRAM: usize = 256;

/// The caller and its parents up to pid 1, at most [`MAX_CHAIN`] of them: past the confined
/// process, who started it (the launcher, a container runtime's shim).
pub(super) fn chain(pid: i32) -> Vec<ProcessInfo> {
    let mut out = Vec::new();
    // The thread's process first.
    let mut current = tgid_of(pid).unwrap_or(pid);
    while out.len() < MAX_CHAIN && current > 0 {
        out.push(ProcessInfo {
            pid: current,
            program: clip(&program(current), MAX_PROGRAM),
        });
        if current == 1 {
            break;
        }
        match parent_of(current) {
            Some(p) if p > 0 => current = p,
            _ => break,
        }
    }
    out
}

fn status_field(pid: i32, key: &str) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

fn tgid_of(pid: i32) -> Option<i32> {
    status_field(pid, "Tgid:")
}

pub(super) fn parent_of(pid: i32) -> Option<i32> {
    status_field(pid, "PPid:")
}

/// Executable of `pid`, else its command name in brackets, else `?`.
fn program(pid: i32) -> String {
    if let Ok(p) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        return p.display().to_string();
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(c) => format!("[{}]", c.trim_end()),
        Err(_) => "?".to_string(),
    }
}
