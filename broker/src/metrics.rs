//! The broker's metrics, and their exposition in the Prometheus text format (version 0.0.4),
//! served on the control socket (`netjail metrics`).
//!
//! The hot path ([`Metrics::observe`], once per decision on a sandbox's receiver thread) only
//! adds to atomics: no lock, no allocation. Everything else (sandboxes registered, calls held,
//! the held calls' outcomes) is read when an operator asks, into a [`Snapshot`] that
//! [`render`] turns into text, a pure function.
//!
//! ```
//! use netjail_broker::metrics::{render, Metrics, Snapshot};
//!
//! let metrics = Metrics::default();
//! metrics.observe("connect", "allow", 42);
//! let text = render(&Snapshot {
//!     decisions: metrics.decisions(),
//!     latency: metrics.latency(),
//!     ..Snapshot::default()
//! });
//! assert!(text.contains("netjail_decisions_total{op=\"connect\",verdict=\"allow\"} 1\n"));
//! assert!(text.contains("netjail_decision_latency_microseconds_bucket{le=\"50\"} 1\n"));
//! ```

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use netjail_protocol::control::Counters;

/// The operations decisions are counted by; anything else counts as `unknown`. `process` is
/// every call that names another process by pid (`prlimit64`, `sched_set*`, `setpriority`,
/// `ioprio_set`), which the audit names one by one.
pub const OPS: [&str; 10] = [
    "connect",
    "bind",
    "listen",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "socket",
    "socketpair",
    "process",
    "unknown",
];

/// What a decision gave, as the audit's `decision` field says it: the policy allowed or
/// denied, the call went through without the policy (`pass`, e.g. a send on a connected
/// socket), or it failed before the policy ran (`error`).
pub const VERDICTS: [&str; 4] = ["allow", "deny", "pass", "error"];

/// Upper bounds (inclusive, microseconds) of the latency histogram's buckets; one more bucket,
/// `+Inf`, takes the rest.
pub const LATENCY_BOUNDS_US: [u64; 10] = [10, 25, 50, 100, 250, 500, 1000, 2500, 10_000, 100_000];

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// The broker's own bounds that refuse calls (the audit's rules `limit:in-flight`, ...):
/// a sandbox's calls on the blocking pool, the pool of the whole broker, descriptors passed
/// with `SCM_RIGHTS`, held calls, and the broker's own descriptors.
pub const BOUNDS: [&str; 5] = ["in-flight", "pool", "descriptors", "held", "fds"];

/// Counters the hot path adds to: decisions by op and verdict, and the histogram of the
/// round trip from the notification to the reply.
#[derive(Debug)]
pub struct Metrics {
    decisions: [[AtomicU64; VERDICTS.len()]; OPS.len()],
    /// Per bucket, not cumulative (the last one is above every bound).
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    /// Calls of every sandbox on the blocking pool now.
    in_flight: AtomicU64,
    /// The most calls one sandbox had on the blocking pool at once, since the start.
    in_flight_peak: AtomicU64,
    /// Calls refused by each of [`BOUNDS`].
    refusals: [AtomicU64; BOUNDS.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            decisions: [const { [const { AtomicU64::new(0) }; VERDICTS.len()] }; OPS.len()],
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            in_flight_peak: AtomicU64::new(0),
            refusals: [const { AtomicU64::new(0) }; BOUNDS.len()],
        }
    }
}

/// The index of `name` in `names`, or the last one.
fn index_of(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

impl Metrics {
    /// Counts one decision of `op` (one of [`OPS`]) with `verdict` (one of [`VERDICTS`]) that
    /// took `latency_us` from the notification to the reply. An op or verdict not in the lists
    /// counts as the last of its list (`unknown`, `error`).
    pub fn observe(&self, op: &str, verdict: &str, latency_us: u64) {
        let (o, v) = (index_of(&OPS, op), index_of(&VERDICTS, verdict));
        self.decisions[o][v].fetch_add(1, Ordering::Relaxed);
        let b = LATENCY_BOUNDS_US.partition_point(|&bound| bound < latency_us);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    /// A call went to the blocking pool; its sandbox has `of_sandbox` calls there now, this
    /// one included.
    pub fn in_flight_started(&self, of_sandbox: u64) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_peak.fetch_max(of_sandbox, Ordering::Relaxed);
    }

    /// A call left the blocking pool.
    pub fn in_flight_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a call refused by the rule `limit:BOUND`, one of [`BOUNDS`]; any other rule
    /// counts nothing.
    pub fn refused(&self, rule: &str) {
        let bound = rule.strip_prefix("limit:").unwrap_or("");
        if let Some(i) = BOUNDS.iter().position(|b| *b == bound) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(bound, count)` for every one of [`BOUNDS`].
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        BOUNDS
            .iter()
            .zip(&self.refusals)
            .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Calls of every sandbox on the blocking pool now, and the most one sandbox had there at
    /// once since the start.
    pub fn in_flight(&self) -> (u64, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.in_flight_peak.load(Ordering::Relaxed),
        )
    }

    /// The decision counters now: `(op, verdict, count)` for every op and verdict.
    pub fn decisions(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(OPS.len() * VERDICTS.len());
        for (o, op) in OPS.iter().enumerate() {
            for (v, verdict) in VERDICTS.iter().enumerate() {
                out.push((*op, *verdict, self.decisions[o][v].load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// The latency histogram now.
    pub fn latency(&self) -> Histogram {
        let mut counts = [0u64; BUCKETS];
        for (c, b) in counts.iter_mut().zip(&self.buckets) {
            *c = b.load(Ordering::Relaxed);
        }
        Histogram {
            counts,
            sum: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram over [`LATENCY_BOUNDS_US`]: the count of each bucket (not cumulative; the last
/// one is `+Inf`) and the sum of the observations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket, the last one above every bound.
    pub counts: [u64; BUCKETS],
    /// Sum of the observations, in microseconds.
    pub sum: u64,
}

impl Histogram {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Everything [`render`] shows, read at one time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `(op, verdict, count)`, see [`Metrics::decisions`].
    pub decisions: Vec<(&'static str, &'static str, u64)>,
    /// The round trip of a decision.
    pub latency: Histogram,
    /// Sandboxes registered now.
    pub sandboxes: u64,
    /// Calls held for operators now.
    pub pending: u64,
    /// Calls of every sandbox on the blocking pool now (held calls included).
    pub in_flight: u64,
    /// The most calls one sandbox had on the blocking pool at once since the start.
    pub in_flight_peak: u64,
    /// How many calls one sandbox may have on the blocking pool at once
    /// ([`crate::MAX_IN_FLIGHT`]).
    pub in_flight_limit: u64,
    /// `(bound, count)`: calls refused by each of the broker's bounds ([`BOUNDS`]).
    pub refusals: Vec<(&'static str, u64)>,
    /// Descriptors the broker holds now for sends that pass them (`SCM_RIGHTS`), every sandbox
    /// of the process together.
    pub descriptors_in_flight: u64,
    /// Operators watching now.
    pub operators: u64,
    /// Rules made by operators in force now.
    pub rules: u64,
    /// Seconds since the broker started.
    pub uptime_seconds: f64,
    /// The counters of `netjail status` (calls held, and how held calls ended).
    pub counters: Counters,
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a `# HELP` text: backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Writes the text of Prometheus metric families.
struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// The metrics in the Prometheus text exposition format, version 0.0.4 (content type
/// `text/plain; version=0.0.4`). Every family has `# HELP` and `# TYPE`; every name starts
/// with `netjail_`; histogram buckets are cumulative and end with `le="+Inf"`, equal to
/// `_count`. Its size does not depend on the number of sandboxes or calls (a few KiB).
pub fn render(s: &Snapshot) -> String {
    let mut w = Writer { out: String::new() };
    render_decisions(&mut w, &s.decisions);
    render_latency(&mut w, &s.latency);
    render_load(&mut w, s);
    render_operators(&mut w, s);
    w.single(
        "netjail_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
        format_args!("{:.3}", s.uptime_seconds),
    );
    w.out
}

/// The calls decided, by operation and verdict.
fn render_decisions(w: &mut Writer, decisions: &[(&'static str, &'static str, u64)]) {
    w.family(
        "netjail_decisions_total",
        "counter",
        "Calls decided, by operation and verdict (allow, deny: the policy or an operator; \
         pass: no decision needed; error: failed before the policy ran).",
    );
    for (op, verdict, n) in decisions {
        w.sample(
            "netjail_decisions_total",
            &[("op", op), ("verdict", verdict)],
            n,
        );
    }
}

/// The histogram of the round trip of a decision: cumulative buckets, the last `+Inf`.
fn render_latency(w: &mut Writer, latency: &Histogram) {
    let name = "netjail_decision_latency_microseconds";
    w.family(
        name,
        "histogram",
        "Microseconds from the notification to the reply (held time included).",
    );
    let mut cumulative = 0u64;
    for (i, n) in latency.counts.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BOUNDS_US
            .get(i)
            .map_or_else(|| "+Inf".to_string(), u64::to_string);
        w.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
    }
    w.sample(&format!("{name}_sum"), &[], latency.sum);
    w.sample(&format!("{name}_count"), &[], cumulative);
}

/// How busy the broker is (sandboxes, held calls, calls and descriptors in flight) and what
/// its own bounds refused.
fn render_load(w: &mut Writer, s: &Snapshot) {
    w.single(
        "netjail_sandboxes",
        "gauge",
        "Sandboxes registered now.",
        s.sandboxes,
    );
    w.single(
        "netjail_pending_calls",
        "gauge",
        "Calls held for operators now.",
        s.pending,
    );
    w.single(
        "netjail_calls_in_flight",
        "gauge",
        "Calls of every sandbox being decided or performed on the broker's blocking pool now \
         (held calls included; calls decided on a sandbox's receiver thread are not counted).",
        s.in_flight,
    );
    w.single(
        "netjail_sandbox_calls_in_flight_peak",
        "gauge",
        "The most calls one sandbox had on the blocking pool at once since the broker started.",
        s.in_flight_peak,
    );
    w.single(
        "netjail_sandbox_calls_in_flight_limit",
        "gauge",
        "How many calls one sandbox may have on the blocking pool at once; past it a call waits \
         a little for a place, then gets EAGAIN.",
        s.in_flight_limit,
    );
    let name = "netjail_bound_refusals_total";
    w.family(
        name,
        "counter",
        "Calls refused by the broker's own bounds (audit rule limit:BOUND): in-flight (the \
         sandbox's calls on the blocking pool), pool (the broker's), descriptors (passed with \
         SCM_RIGHTS), held (calls held for operators), fds (the broker's own descriptors).",
    );
    for (bound, n) in &s.refusals {
        w.sample(name, &[("bound", bound)], n);
    }
    w.single(
        "netjail_descriptors_in_flight",
        "gauge",
        "Descriptors the broker holds now for sends that pass them with SCM_RIGHTS.",
        s.descriptors_in_flight,
    );
}

/// What operators do: how many watch, their rules, the calls held for them and how those
/// ended.
fn render_operators(w: &mut Writer, s: &Snapshot) {
    w.single(
        "netjail_operators_watching",
        "gauge",
        "Operators watching now (held calls wait for their answer).",
        s.operators,
    );
    w.single(
        "netjail_operator_rules",
        "gauge",
        "Rules made by operators in force now (timed and always).",
        s.rules,
    );
    w.single(
        "netjail_held_calls_total",
        "counter",
        "Calls held for operators (asked about by the policy and not decided by an \
         operator's earlier rule).",
        s.counters.asked,
    );
    let name = "netjail_held_call_outcomes_total";
    w.family(
        name,
        "counter",
        "Held calls ended, by how: granted or refused by an operator, timed out, or \
         unattended (nobody watching, or too many held).",
    );
    let c = &s.counters;
    for (outcome, n) in [
        ("granted", c.granted),
        ("refused", c.refused),
        ("timed_out", c.timed_out),
        ("unattended", c.unattended),
    ] {
        w.sample(name, &[("outcome", outcome)], n);
    }
}

/// Cuts `text` into pieces of at most `max` bytes, at line ends where it can (a longer line
/// is cut at a character boundary), so that each piece fits one datagram. Concatenated, the
/// pieces are `text`.
pub fn split(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = rest.as_bytes()[..max]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if cut == 0 {
            cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_value(text: &str, sample: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn every_family_has_help_and_type_and_the_prefix() {
        let text = render(&Snapshot {
            decisions: Metrics::default().decisions(),
            ..Snapshot::default()
        });
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(rest.starts_with("netjail_"), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("netjail_"), "{line}");
                let family = typed.last().expect("a sample before its # TYPE");
                assert!(name.starts_with(family.as_str()), "{line} under {family}");
                let value = line.rsplit(' ').next().unwrap();
                value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            }
        }
        assert!(text.ends_with('\n'));
        assert_eq!(typed.len(), 14, "{text}");
    }

    #[test]
    fn decisions_are_counted_by_op_and_verdict() {
        let m = Metrics::default();
        m.observe("connect", "allow", 1);
        m.observe("connect", "allow", 1);
        m.observe("connect", "deny", 1);
        m.observe("sendmmsg", "pass", 1);
        m.observe("socket", "deny", 1);
        m.observe("getsockopt", "weird", 1);
        m.observe("process", "allow", 1);
        let text = render(&Snapshot {
            decisions: m.decisions(),
            latency: m.latency(),
            ..Snapshot::default()
        });
        let get = |op: &str, v: &str| {
            sample_value(
                &text,
                &format!("netjail_decisions_total{{op=\"{op}\",verdict=\"{v}\"}}"),
            )
        };
        assert_eq!(get("connect", "allow").as_deref(), Some("2"));
        assert_eq!(get("connect", "deny").as_deref(), Some("1"));
        assert_eq!(get("connect", "pass").as_deref(), Some("0"));
        assert_eq!(get("sendmmsg", "pass").as_deref(), Some("1"));
        assert_eq!(get("socket", "deny").as_deref(), Some("1"));
        assert_eq!(get("process", "allow").as_deref(), Some("1"));
        assert_eq!(get("unknown", "error").as_deref(), Some("1"));
        assert_eq!(m.decisions().len(), OPS.len() * VERDICTS.len());
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let m = Metrics::default();
        // On a bound counts in that bound's bucket (le is inclusive).
        for us in [0, 10, 11, 25, 99, 100, 100_000, 100_001, u64::MAX / 4] {
            m.observe("bind", "allow", us);
        }
        let h = m.latency();
        assert_eq!(h.count(), 9);
        let text = render(&Snapshot {
            latency: h,
            ..Snapshot::default()
        });
        let bucket = |le: &str| {
            let s = format!("netjail_decision_latency_microseconds_bucket{{le=\"{le}\"}}");
            sample_value(&text, &s).unwrap().parse::<u64>().unwrap()
        };
        assert_eq!(bucket("10"), 2);
        assert_eq!(bucket("25"), 4);
        assert_eq!(bucket("50"), 4);
        assert_eq!(bucket("100"), 6);
        assert_eq!(bucket("10000"), 6);
        assert_eq!(bucket("100000"), 7);
        assert_eq!(bucket("+Inf"), 9);
        let mut last = 0;
        for le in LATENCY_BOUNDS_US.map(|b| b.to_string()) {
            assert!(bucket(&le) >= last);
            last = bucket(&le);
        }
        let count = sample_value(&text, "netjail_decision_latency_microseconds_count");
        assert_eq!(count.as_deref(), Some("9"));
        let sum = 10 + 11 + 25 + 99 + 100 + 100_000 + 100_001 + u64::MAX / 4;
        let got = sample_value(&text, "netjail_decision_latency_microseconds_sum");
        assert_eq!(got, Some(sum.to_string()));
        // The buckets come in order of their bounds, +Inf last.
        let les: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(les.first(), Some(&"10"));
        assert_eq!(les.last(), Some(&"+Inf"));
        assert_eq!(les.len(), LATENCY_BOUNDS_US.len() + 1);
    }

    #[test]
    fn gauges_and_held_counters_are_shown() {
        let text = render(&Snapshot {
            sandboxes: 3,
            pending: 2,
            operators: 1,
            rules: 4,
            uptime_seconds: 1.5,
            counters: Counters {
                asked: 5,
                granted: 1,
                refused: 1,
                timed_out: 1,
                unattended: 2,
                ..Counters::default()
            },
            ..Snapshot::default()
        });
        for (sample, value) in [
            ("netjail_sandboxes", "3"),
            ("netjail_pending_calls", "2"),
            ("netjail_operators_watching", "1"),
            ("netjail_operator_rules", "4"),
            ("netjail_held_calls_total", "5"),
            ("netjail_held_call_outcomes_total{outcome=\"granted\"}", "1"),
            (
                "netjail_held_call_outcomes_total{outcome=\"timed_out\"}",
                "1",
            ),
            (
                "netjail_held_call_outcomes_total{outcome=\"unattended\"}",
                "2",
            ),
            ("netjail_uptime_seconds", "1.500"),
        ] {
            assert_eq!(
                sample_value(&text, sample).as_deref(),
                Some(value),
                "{sample}"
            );
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), r"x\ny");
        assert_eq!(escape_label("plain"), "plain");
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
        let mut w = Writer { out: String::new() };
        w.family("netjail_x", "gauge", "two\nlines");
        w.sample("netjail_x", &[("a", "q\"\n"), ("b", "\\")], 1);
        assert_eq!(
            w.out,
            "# HELP netjail_x two\\nlines\n# TYPE netjail_x gauge\n\
             netjail_x{a=\"q\\\"\\n\",b=\"\\\\\"} 1\n"
        );
    }

    #[test]
    fn the_text_is_far_below_one_datagram_even_with_huge_values() {
        let m = Metrics::default();
        let mut decisions = m.decisions();
        for d in &mut decisions {
            d.2 = u64::MAX;
        }
        let text = render(&Snapshot {
            decisions,
            latency: Histogram {
                counts: [u64::MAX / 16; BUCKETS],
                sum: u64::MAX,
            },
            sandboxes: u64::MAX,
            pending: u64::MAX,
            in_flight: u64::MAX,
            in_flight_peak: u64::MAX,
            in_flight_limit: u64::MAX,
            refusals: BOUNDS.iter().map(|b| (*b, u64::MAX)).collect(),
            descriptors_in_flight: u64::MAX,
            operators: u64::MAX,
            rules: u64::MAX,
            uptime_seconds: 1e12,
            counters: Counters {
                asked: u64::MAX,
                ..Counters::default()
            },
        });
        assert!(text.len() < 16 * 1024, "{}", text.len());
    }

    #[test]
    fn refusals_are_counted_by_bound() {
        let m = Metrics::default();
        m.refused("limit:in-flight");
        m.refused("limit:in-flight");
        m.refused("limit:held");
        m.refused("limits.max_connections");
        m.refused("limit:nonsense");
        let text = render(&Snapshot {
            refusals: m.refusals(),
            ..Snapshot::default()
        });
        let get = |b: &str| {
            sample_value(
                &text,
                &format!("netjail_bound_refusals_total{{bound=\"{b}\"}}"),
            )
        };
        assert_eq!(get("in-flight").as_deref(), Some("2"));
        assert_eq!(get("held").as_deref(), Some("1"));
        assert_eq!(get("pool").as_deref(), Some("0"));
        assert_eq!(get("fds").as_deref(), Some("0"));
        assert_eq!(get("descriptors").as_deref(), Some("0"));
    }

    #[test]
    fn in_flight_counts_now_and_keeps_the_peak_of_one_sandbox() {
        let m = Metrics::default();
        m.in_flight_started(1);
        m.in_flight_started(3);
        m.in_flight_started(2);
        m.in_flight_ended();
        assert_eq!(m.in_flight(), (2, 3));
        m.in_flight_ended();
        m.in_flight_ended();
        let (now, peak) = m.in_flight();
        let text = render(&Snapshot {
            in_flight: now,
            in_flight_peak: peak,
            in_flight_limit: 64,
            ..Snapshot::default()
        });
        assert_eq!(
            sample_value(&text, "netjail_calls_in_flight").as_deref(),
            Some("0")
        );
        assert_eq!(
            sample_value(&text, "netjail_sandbox_calls_in_flight_peak").as_deref(),
            Some("3")
        );
        assert_eq!(
            sample_value(&text, "netjail_sandbox_calls_in_flight_limit").as_deref(),
            Some("64")
        );
    }

    #[test]
    fn split_cuts_at_line_ends_and_keeps_everything() {
        let text = "aaa\nbbbb\ncc\n";
        assert_eq!(split(text, 100), vec![text]);
        assert_eq!(split(text, 5), vec!["aaa\n", "bbbb\n", "cc\n"]);
        assert_eq!(split(text, 9), vec!["aaa\nbbbb\n", "cc\n"]);
        let long = "é".repeat(10); // 20 bytes, no line end
        let pieces = split(&long, 7);
        assert!(pieces.iter().all(|p| p.len() <= 7));
        assert_eq!(pieces.concat(), long);
        assert!(split("", 10).is_empty());
    }
}
