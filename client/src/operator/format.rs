//! What operators read: tables and lines for people, JSON lines for programs.
//!
//! # JSON lines
//!
//! Every JSON output is one object per line, the protocol's own types as serde writes them
//! (ids as bare numbers: `"id": 7`, `"sandbox": 3`):
//!
//! - `netjail pending --json`: one [`PendingInfo`] per line (`id`, `sandbox`, `name`,
//!   `container`, `policy`, `pid`, `chain`, `op`, `endpoint`, `host`, `rule`, `age_ms`,
//!   `remaining_ms`, `fallback`).
//! - `netjail watch --json`: one event per line, its kind in `"event"` and its fields beside
//!   it: `{"event":"pending", ...PendingInfo}`, `{"event":"resolved", ...Resolution}`,
//!   `{"event":"decision", ...DecisionInfo}`, `{"event":"registered", ...SandboxInfo}`,
//!   `{"event":"retired","sandbox":3,"name":"curl"}`, `{"event":"lagged","missed":12}`.
//! - `netjail status --json`: `{"kind":"broker", ...StatusReport}` then one
//!   `{"kind":"sandbox", ...SandboxInfo}` per sandbox.
//!
//! # Times
//!
//! Clock times in human lines are UTC (`12:00:01.234Z`); ages and time left are short
//! durations (`42s`, `1m05s`).

use std::fmt::Write as _;

use netjail_protocol::control::{
    DecisionInfo, Event, PendingInfo, Resolution, SandboxInfo, StatusReport,
};
use netjail_protocol::SandboxId;
use serde::Serialize;

use super::duration::short;

/// The last component of an executable's path (`/usr/bin/curl` -> `curl`).
pub fn program_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((_, name)) if !name.is_empty() => name,
        _ if trimmed.is_empty() => "?",
        _ => trimmed,
    }
}

/// The chain of processes that made a held call, caller first:
/// `curl(412) < sh(400) < netjail(390)`. An empty chain is the caller alone (`?(412)`).
pub fn chain(held: &PendingInfo) -> String {
    if held.chain.is_empty() {
        return format!("?({})", held.pid);
    }
    held.chain
        .iter()
        .map(|p| format!("{}({})", program_name(&p.program), p.pid))
        .collect::<Vec<_>>()
        .join(" < ")
}

/// A sandbox as a person names it: `sb-3 curl`, and `sb-3 curl [0123456789ab]` for a
/// container (its id cut to 12 characters, as container tools show it).
pub fn sandbox_label(sandbox: SandboxId, name: &str, container: &str) -> String {
    if container.is_empty() {
        format!("{sandbox} {name}")
    } else {
        let short: String = container.chars().take(12).collect();
        format!("{sandbox} {name} [{short}]")
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

/// The columns of the pending table.
pub const PENDING_HEADER: [&str; 9] = [
    "ID", "AGE", "SANDBOX", "PID", "PROGRAM", "OP", "ENDPOINT", "HOST", "LEFT",
];

/// One row of the pending table; `elapsed_ms` is how long ago `held` was received (the
/// terminal UI ages its rows between refreshes, the commands pass 0).
pub fn pending_row(held: &PendingInfo, elapsed_ms: u64) -> [String; 9] {
    [
        held.id.to_string(),
        short(held.age_ms.saturating_add(elapsed_ms)),
        sandbox_label(held.sandbox, &held.name, &held.container),
        held.pid.to_string(),
        chain(held),
        held.op.clone(),
        held.endpoint.clone(),
        or_dash(&held.host),
        short(held.remaining_ms.saturating_sub(elapsed_ms)),
    ]
}

/// The columns of the sandbox table.
pub const SANDBOX_HEADER: [&str; 8] = [
    "ID",
    "NAME",
    "CONTAINER",
    "PID",
    "POLICY",
    "DECISIONS",
    "PENDING",
    "AGE",
];

/// One row of the sandbox table.
pub fn sandbox_row(sandbox: &SandboxInfo) -> [String; 8] {
    [
        sandbox.sandbox.to_string(),
        sandbox.name.clone(),
        or_dash(&sandbox.container),
        sandbox.pid.to_string(),
        sandbox.policy.clone(),
        sandbox.decisions.to_string(),
        sandbox.pending.to_string(),
        short(sandbox.age_ms),
    ]
}

/// Columns aligned on the widest cell (in characters), two spaces apart, the last column
/// unpadded; one line per row, each ending in a newline.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    text
}

/// The pending table with its header.
pub fn pending_table(held: &[PendingInfo]) -> String {
    let rows: Vec<_> = held.iter().map(|h| pending_row(h, 0)).collect();
    table(PENDING_HEADER, &rows)
}

/// `1 operator`, `2 operators`.
fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The broker's report on one line: name, uptime, operators, sandboxes, held calls, rules.
pub fn report_line(report: &StatusReport) -> String {
    format!(
        "{}, up {}, {} watching, {}, {} pending, {}",
        report.broker,
        short(report.uptime_ms),
        count(report.operators, "operator", "operators"),
        count(report.sandboxes, "sandbox", "sandboxes"),
        report.pending,
        count(report.grants, "grant", "grants"),
    )
}

/// The broker's counters on one line: calls by what was decided (the audit's `decision`:
/// allow, deny, pass, error), then the held ones by how they ended.
pub fn counters_line(report: &StatusReport) -> String {
    let c = &report.counters;
    format!(
        "calls: {} allowed, {} denied, {} passed, {} errors, {} asked ({} granted, {} refused, {} timed out, {} unattended)",
        c.allowed,
        c.denied,
        c.passed,
        c.errors,
        c.asked,
        c.granted,
        c.refused,
        c.timed_out,
        c.unattended
    )
}

/// `netjail status` for people: the report, the counters, then the sandbox table.
pub fn status_text(report: &StatusReport, sandboxes: &[SandboxInfo]) -> String {
    let mut text = format!(
        "broker {}\n{}\n",
        report_line(report),
        counters_line(report)
    );
    if sandboxes.is_empty() {
        text.push_str("no sandboxes\n");
    } else {
        text.push('\n');
        let rows: Vec<_> = sandboxes.iter().map(sandbox_row).collect();
        text.push_str(&table(SANDBOX_HEADER, &rows));
    }
    text
}

/// A clock time in UTC with milliseconds: `12:00:01.234Z`.
pub fn clock(time_ms: u64) -> String {
    let day_ms = time_ms % 86_400_000;
    let (h, m, s, ms) = (
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Milliseconds since the Unix epoch now (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The usual name of an errno a refused call gets (`EPERM`), or `errno N`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// `connect tcp://1.2.3.4:443 (example.com)`.
fn destination(op: &str, endpoint: &str, host: &str) -> String {
    let mut text = op.to_string();
    if !endpoint.is_empty() {
        text.push(' ');
        text.push_str(endpoint);
    }
    if !host.is_empty() {
        let _ = write!(text, " ({host})");
    }
    text
}

/// One decision, without the clock time:
/// `allow  sb-3 curl  curl(412)  connect tcp://1.2.3.4:443 (example.com)  rule allow[0].connect[1]`.
pub fn decision_text(d: &DecisionInfo) -> String {
    let mut text = format!(
        "{:<5}  {}  {}({})  {}  rule {}",
        d.decision,
        sandbox_label(d.sandbox, &d.name, &d.container),
        program_name(&d.program),
        d.pid,
        destination(&d.op, &d.endpoint, &d.host),
        or_dash(&d.rule),
    );
    if d.errno != 0 {
        let _ = write!(text, "  {}", errno_name(d.errno));
    }
    text
}

/// One held call as an event, without the clock time:
/// `PENDING #7  sb-3 curl  curl(412) < sh(400)  connect tcp://...  rule ask[0].connect[0], 30s left then deny`.
pub fn pending_text(held: &PendingInfo) -> String {
    format!(
        "PENDING #{}  {}  {}  {}  rule {}, {} left then {}",
        held.id,
        sandbox_label(held.sandbox, &held.name, &held.container),
        chain(held),
        destination(&held.op, &held.endpoint, &held.host),
        or_dash(&held.rule),
        short(held.remaining_ms),
        held.fallback,
    )
}

/// The end of a held call as an event, without the clock time:
/// `RESOLVED #7  granted by uid 0 (allowed)  rule: allow tcp://... for sandbox sb-3`.
pub fn resolved_text(r: &Resolution) -> String {
    let mut text = format!(
        "RESOLVED #{}  {} by {} ({})",
        r.id,
        r.outcome.as_str(),
        or_dash(&r.by),
        if r.allowed { "allowed" } else { "refused" },
    );
    if !r.rule.is_empty() {
        let _ = write!(text, "  rule: {}", r.rule);
    }
    text
}

/// One event without the clock time (see [`event_line`]).
pub fn event_text(event: &Event) -> String {
    match event {
        Event::Decision(d) => decision_text(d),
        Event::Pending(held) => pending_text(held),
        Event::Resolved(r) => resolved_text(r),
        Event::Registered(s) => format!(
            "+ {}  pid {}, policy {}",
            sandbox_label(s.sandbox, &s.name, &s.container),
            s.pid,
            s.policy
        ),
        Event::Retired { sandbox, name } => format!("- {sandbox} {name}  retired"),
        Event::Lagged { missed } => {
            format!("LAGGED  missed {missed} events (this watcher was too slow)")
        }
    }
}

/// One line of `netjail watch`: the clock time (the decision's own, or `now_ms` for events
/// that carry none), two spaces, then [`event_text`].
pub fn event_line(event: &Event, now_ms: u64) -> String {
    let time = match event {
        Event::Decision(d) => d.time_ms,
        _ => now_ms,
    };
    format!("{}  {}", clock(time), event_text(event))
}

/// What `netjail grant` / `netjail deny` print: `granted 7: connect tcp://127.0.0.1:8080
/// from sb-3 curl (rule: ...)`. `held` is the call as listed just before, when it was.
pub fn resolution_line(r: &Resolution, held: Option<&PendingInfo>) -> String {
    let mut text = format!("{} {}", r.outcome.as_str(), r.id);
    if let Some(h) = held {
        let _ = write!(
            text,
            ": {} from {} {}",
            destination(&h.op, &h.endpoint, &h.host),
            sandbox_label(h.sandbox, &h.name, &h.container),
            chain(h),
        );
    }
    let mut notes = Vec::new();
    if !matches!(
        r.outcome,
        netjail_protocol::control::Outcome::Granted | netjail_protocol::control::Outcome::Denied
    ) {
        notes.push(if r.allowed {
            "call allowed".to_string()
        } else {
            "call refused".to_string()
        });
    }
    if !r.rule.is_empty() {
        notes.push(format!("rule: {}", r.rule));
    }
    if !notes.is_empty() {
        let _ = write!(text, " ({})", notes.join("; "));
    }
    text
}

/// An event as `netjail watch --json` writes it: the event's kind in `"event"`, its fields
/// beside it.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsonEvent<'a> {
    Pending(&'a PendingInfo),
    Resolved(&'a Resolution),
    Decision(&'a DecisionInfo),
    Registered(&'a SandboxInfo),
    Retired { sandbox: SandboxId, name: &'a str },
    Lagged { missed: u64 },
}

/// One JSON line (no newline) of `netjail watch --json`; see the module's docs.
///
/// # Errors
///
/// When serde cannot write the value (it always can for these types).
pub fn event_json(event: &Event) -> Result<String, serde_json::Error> {
    let json = match event {
        Event::Pending(p) => JsonEvent::Pending(p),
        Event::Resolved(r) => JsonEvent::Resolved(r),
        Event::Decision(d) => JsonEvent::Decision(d),
        Event::Registered(s) => JsonEvent::Registered(s),
        Event::Retired { sandbox, name } => JsonEvent::Retired {
            sandbox: *sandbox,
            name,
        },
        Event::Lagged { missed } => JsonEvent::Lagged { missed: *missed },
    };
    serde_json::to_string(&json)
}

/// One JSON line (no newline) of `netjail pending --json`: the [`PendingInfo`] as it is.
///
/// # Errors
///
/// As [`event_json`].
pub fn pending_json(held: &PendingInfo) -> Result<String, serde_json::Error> {
    serde_json::to_string(held)
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JsonStatus<'a> {
    Broker(&'a StatusReport),
    Sandbox(&'a SandboxInfo),
}

/// The JSON lines (no newlines) of `netjail status --json`: the report, then each sandbox.
///
/// # Errors
///
/// As [`event_json`].
pub fn status_json(
    report: &StatusReport,
    sandboxes: &[SandboxInfo],
) -> Result<Vec<String>, serde_json::Error> {
    std::iter::once(JsonStatus::Broker(report))
        .chain(sandboxes.iter().map(JsonStatus::Sandbox))
        .map(|line| serde_json::to_string(&line))
        .collect()
}

#[cfg(test)]
mod tests;
