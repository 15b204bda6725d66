//! The filter of a confined worker read back (`PTRACE_SECCOMP_GET_FILTER`) and each bench
//! call's path through it counted.

use crate::{bpf, sys};

/// The first lines of `/proc/PID/status` that describe seccomp and speculation mitigations.
pub fn status_lines(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("Seccomp") || l.starts_with("Speculation"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// What the filter of a confined process looks like and what each bench call costs in it.
pub struct FilterReport {
    pub lines: Vec<String>,
    pub json: serde_json::Value,
}

/// Reads the filter of the confined process `pid` back and counts each call's path.
pub fn inspect_filter(pid: Option<i64>) -> FilterReport {
    let mut lines = Vec::new();
    let mut json = serde_json::Map::new();
    let Some(pid) = pid else {
        return FilterReport {
            lines: vec!["the confined worker did not say its pid".into()],
            json: serde_json::Value::Null,
        };
    };
    let confined_status = status_lines(&pid.to_string());
    let native_status = status_lines("self");
    lines.push(format!("confined process: {}", confined_status.join(", ")));
    lines.push(format!("native (this one): {}", native_status.join(", ")));
    json.insert("confined_status".into(), confined_status.into());
    json.insert("native_status".into(), native_status.into());
    let prog = match sys::seccomp_filter_of(pid as libc::pid_t, 0) {
        Ok(p) => p,
        Err(e) => {
            lines.push(format!(
                "cannot read the filter back (PTRACE_SECCOMP_GET_FILTER: errno {e}; needs root)"
            ));
            return FilterReport {
                lines,
                json: json.into(),
            };
        }
    };
    let jit = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    lines.push(format!(
        "filter: {} BPF instructions (read back with PTRACE_SECCOMP_GET_FILTER); net.core.bpf_jit_enable = {jit}",
        prog.len()
    ));
    json.insert("instructions".into(), prog.len().into());
    json.insert("bpf_jit_enable".into(), jit.into());
    lines.push(format!(
        "  {:<28} {:<10} {:>9}  {}",
        "call", "answer", "insns run", "in the kernel"
    ));
    let mut calls = serde_json::Map::new();
    for call in bpf::bench_calls() {
        let Some(out) = bpf::run(&prog, &call, sys::AUDIT_ARCH) else {
            lines.push(format!(
                "  {:<28} the interpreter could not run the program",
                call.label
            ));
            continue;
        };
        let how = if out.cached {
            "constant ALLOW for this number: cached, the filter is not run"
        } else if out.action == "notify" {
            "the filter runs, then a broker round trip"
        } else {
            "the filter runs on every call (it looks at an argument)"
        };
        lines.push(format!(
            "  {:<28} {:<10} {:>9}  {how}",
            call.label, out.action, out.steps
        ));
        calls.insert(
            call.label.into(),
            serde_json::json!({ "action": out.action, "steps": out.steps, "cached": out.cached }),
        );
    }
    json.insert("calls".into(), calls.into());
    FilterReport {
        lines,
        json: json.into(),
    }
}
