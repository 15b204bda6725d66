//! `nj-bench embedded`: what a broker embedded in the program costs per call, and what its
//! run-time rules and its decision hook add (issue 6).
//!
//! The bench process is the host program: it builds two brokers with
//! `netjail_broker::Broker::builder()`, one plain and one with a decision hook (a hook is a
//! setting of the whole broker), and spawns each confined child with
//! `netjail_client::sandbox::Sandbox::builder()`. Every child is the main bench's
//! `nj-bench --child connect PORT COUNT WARMUP gate` (blocking loopback `connect()`s of fresh
//! sockets, only `connect()` timed), which first reads its stdin to the end, so that run-time
//! rules given after the spawn are in place before its first call. Each round runs every
//! variant once, a fresh child each, in rotating order:
//!
//! - `native`: the child unconfined;
//! - `policy`: confined by the plain broker, the policy allows the port: the fast path (the
//!   call decided and performed on the sandbox's receiver thread);
//! - `rules`: the plain broker, a policy that allows nothing, the port allowed by a run-time
//!   rule (`sandbox(id).allow(..)`) next to a few unrelated run-time entries: still the fast
//!   path, with the run-time layer consulted;
//! - `hook, continue`: the hooked broker, the policy allows the port, the hook answers
//!   `HookVerdict::Continue`: every call goes to the runtime's blocking pool;
//! - `hook, allow`: the hooked broker, a policy that allows nothing, the hook answers
//!   `HookVerdict::Allow`.
//!
//! Every timed connect must succeed; the listener must accept every connection, and the hook
//! must have been asked exactly once per connect of the hooked variants.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netjail_broker::{Broker, Embedded, HookCall, HookVerdict};
use netjail_client::sandbox::Sandbox;
use netjail_policy::Policy;

use crate::args;
use crate::stats::{self, ratio, us, Summary};
use crate::{
    canary::Canary, process::all_succeeded, process::timeout_for, process::wait_bounded,
    report::Machine,
};

/// The names the confined children are registered with; the hook tells its two apart by name.
const HOOK_ALLOW_NAME: &str = "nj-bench-hook-allow";

/// Entry point of `nj-bench embedded`.
pub fn main(args: args::EmbeddedArgs) -> Result<bool, String> {
    args.counts.check()?;
    run(&Options {
        counts: args.counts,
    })
}

/// What the command line asked for.
struct Options {
    counts: args::Counts,
}

/// The variants, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Native,
    Policy,
    Rules,
    HookContinue,
    HookAllow,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Native,
        Variant::Policy,
        Variant::Rules,
        Variant::HookContinue,
        Variant::HookAllow,
    ];

    fn label(self) -> &'static str {
        match self {
            Variant::Native => "native",
            Variant::Policy => "policy (fast path)",
            Variant::Rules => "run-time rule",
            Variant::HookContinue => "hook, continue",
            Variant::HookAllow => "hook, allow",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Variant::Native => "native",
            Variant::Policy => "policy",
            Variant::Rules => "rules",
            Variant::HookContinue => "hook_continue",
            Variant::HookAllow => "hook_allow",
        }
    }

    /// The sandbox's name (the hook reads it).
    fn sandbox_name(self) -> &'static str {
        match self {
            Variant::Native => "native",
            Variant::Policy => "nj-bench-policy",
            Variant::Rules => "nj-bench-rules",
            Variant::HookContinue => "nj-bench-hook-continue",
            Variant::HookAllow => HOOK_ALLOW_NAME,
        }
    }

    fn index(self) -> usize {
        Variant::ALL.iter().position(|&v| v == self).unwrap_or(0)
    }

    /// Whether its calls go through the hooked broker.
    fn hooked(self) -> bool {
        matches!(self, Variant::HookContinue | Variant::HookAllow)
    }

    /// The policy of its sandbox: allowing `port`, or allowing nothing where a run-time rule
    /// or the hook is what allows. `None` for `native`.
    fn policy(self, port: u16) -> Option<Result<Policy, String>> {
        let builder = match self {
            Variant::Native => return None,
            Variant::Policy | Variant::HookContinue => Policy::builder(self.sandbox_name())
                .allow(|t| t.connect(format!("tcp://127.0.0.1:{port}"))),
            Variant::Rules | Variant::HookAllow => Policy::builder(self.sandbox_name()),
        };
        Some(
            builder
                .build()
                .map_err(|e| format!("{}: policy: {e}", self.label())),
        )
    }
}

/// The run-time rules of the `rules` variant, `(allow, entry)`: the port, and unrelated
/// entries that the layer looks through on each call.
fn runtime_rules(port: u16) -> Vec<(bool, String)> {
    vec![
        (false, "tcp://192.0.2.0/24:*".into()),
        (false, "udp://[2001:db8::1]:53".into()),
        (true, "tcp://10.0.0.0/8:443".into()),
        (true, "udp://[::1]:53".into()),
        (true, "/run/nj-bench/*.sock".into()),
        (true, format!("tcp://127.0.0.1:{port}")),
    ]
}

/// The figures of one variant side by side with `native` and `policy` (the fast path).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratios {
    median_over_native: f64,
    p99_over_native: f64,
    median_over_fast: f64,
    p99_over_fast: f64,
    /// Median minus the fast path's median, µs.
    extra_us_over_fast: f64,
}

impl Ratios {
    fn of(x: &Summary, native: &Summary, fast: &Summary) -> Ratios {
        Ratios {
            median_over_native: ratio(x.median_ns, native.median_ns),
            p99_over_native: ratio(x.p99_ns, native.p99_ns),
            median_over_fast: ratio(x.median_ns, fast.median_ns),
            p99_over_fast: ratio(x.p99_ns, fast.p99_ns),
            extra_us_over_fast: us(x.median_ns) - us(fast.median_ns),
        }
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "median_over_native": self.median_over_native,
            "p99_over_native": self.p99_over_native,
            "median_over_policy": self.median_over_fast,
            "p99_over_policy": self.p99_over_fast,
            "median_extra_us_over_policy": self.extra_us_over_fast,
        })
    }
}

/// The ratio of each round's median of `x` to that of `base`.
fn round_ratios(x: &Summary, base: &Summary) -> Vec<f64> {
    x.round_medians_ns
        .iter()
        .zip(&base.round_medians_ns)
        .map(|(&a, &b)| ratio(a, b))
        .collect()
}

/// Everything the rounds need.
struct Bench<'a> {
    o: &'a Options,
    exe: std::path::PathBuf,
    listener: Canary,
    /// No hook: `policy` and `rules`.
    plain: Embedded,
    /// With the hook: `hook, continue` and `hook, allow`.
    hooked: Embedded,
}

impl Bench<'_> {
    /// One child of `variant` making `count` timed connects; all must succeed.
    fn measure(&self, variant: Variant, count: usize) -> Result<Vec<u64>, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args([
            "--child".to_owned(),
            "connect".to_owned(),
            self.listener.port.to_string(),
            count.to_string(),
            self.o.counts.warmup.to_string(),
            "gate".to_owned(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = self
            .start(variant, cmd)
            .map_err(|e| format!("{}: {e}", variant.label()))?;
        // The child starts its calls at the end of its stdin.
        drop(child.stdin.take());
        let outcome = wait_bounded(child, timeout_for(count + self.o.counts.warmup), false)
            .map_err(|e| format!("{}: {e}", variant.label()))?;
        all_succeeded(variant.label(), outcome, count)
    }

    /// Starts the child of `variant`, confined as it says and with its run-time rules given.
    fn start(&self, variant: Variant, mut cmd: Command) -> Result<Child, String> {
        let Some(policy) = variant.policy(self.listener.port) else {
            return cmd
                .spawn()
                .map_err(|e| format!("cannot start {:?}: {e}", self.exe));
        };
        let broker = if variant.hooked() {
            &self.hooked
        } else {
            &self.plain
        };
        let child = Sandbox::builder()
            .allow_root(true)
            .policy(policy?)
            .broker(broker.broker().clone())
            .name(variant.sandbox_name())
            .command(cmd)
            .spawn()
            .map_err(|e| format!("spawn confined: {e}"))?;
        if variant == Variant::Rules {
            // On error the confined child is dropped, which kills and reaps it.
            let handle = broker
                .sandbox(child.sandbox())
                .ok_or_else(|| format!("sandbox {} not registered", child.sandbox()))?;
            for (allow, entry) in runtime_rules(self.listener.port) {
                if allow {
                    handle.allow(&entry)
                } else {
                    handle.deny(&entry)
                }
                .map_err(|e| format!("run-time rule {entry}: {e}"))?;
            }
        }
        Ok(child.into_child())
    }
}

/// The bench's two embedded brokers, one plain, one whose hook counts its calls in
/// `hook_calls`.
fn setup<'a>(o: &'a Options, hook_calls: &Arc<AtomicU64>) -> Result<Bench<'a>, String> {
    let exe = crate::process::this_exe()?;
    let listener = Canary::start()?;
    let plain = Broker::builder()
        .build()
        .map_err(|e| format!("embedded broker: {e}"))?;
    let counter = Arc::clone(hook_calls);
    let hooked = Broker::builder()
        .hook(move |call: &HookCall<'_>| {
            counter.fetch_add(1, Ordering::Relaxed);
            if call.name == HOOK_ALLOW_NAME {
                HookVerdict::Allow
            } else {
                HookVerdict::Continue
            }
        })
        .build()
        .map_err(|e| format!("embedded broker with a hook: {e}"))?;
    Ok(Bench {
        o,
        exe,
        listener,
        plain,
        hooked,
    })
}

/// The report's header; returns the run-time rules of `rules`, as printed.
fn print_plan(bench: &Bench<'_>, machine: &Machine, per_round: &[usize]) -> Vec<String> {
    let o = bench.o;
    println!("nj-bench embedded: loopback TCP connect() latency through a broker embedded in this process");
    machine.print_header();
    println!("brokers  two Broker::builder() brokers in this process (own runtime each, no sockets, no log subscriber): one plain, one with a hook");
    crate::report::print_plan(&o.counts, per_round, "");
    let rules: Vec<String> = runtime_rules(bench.listener.port)
        .into_iter()
        .map(|(allow, e)| format!("{} {e}", if allow { "allow" } else { "deny" }))
        .collect();
    println!("rules    run-time rules of `rules`: {}", rules.join(", "));
    println!("port     127.0.0.1:{}", bench.listener.port);
    rules
}

/// Runs every variant in every round, in rotating order; per variant, its summary.
fn measure_rounds(
    bench: &Bench<'_>,
    per_round: &[usize],
    started: Instant,
) -> Result<Vec<Summary>, String> {
    let o = bench.o;
    let mut samples: Vec<Vec<Vec<u64>>> = vec![Vec::new(); Variant::ALL.len()];
    for (round, &count) in per_round.iter().enumerate() {
        for variant in crate::report::rotation(&Variant::ALL, round) {
            samples[variant.index()].push(bench.measure(variant, count)?);
        }
        crate::report::print_round_done(round, o.counts.rounds, started);
    }
    Ok(samples.iter().map(|r| stats::summarize(r)).collect())
}

/// Prints the table of latencies and the ratios of each variant to native and to the fast
/// path; returns the ratios as JSON.
fn print_table(summaries: &[Summary]) -> serde_json::Map<String, serde_json::Value> {
    let s = |v: Variant| &summaries[v.index()];
    let (native, fast) = (s(Variant::Native), s(Variant::Policy));
    const W: usize = 20;
    println!();
    println!("{}", Summary::table_header(W));
    for v in Variant::ALL {
        println!("{}", s(v).table_row(v.label(), W));
    }
    println!();
    println!(
        "{:<W$} {:>16} {:>13} {:>16} {:>13} {:>15}",
        "ratios", "median/native", "p99/native", "median/policy", "p99/policy", "+µs vs policy"
    );
    let mut ratios_json = serde_json::Map::new();
    for v in Variant::ALL {
        let r = Ratios::of(s(v), native, fast);
        println!(
            "{:<W$} {:>15.2}x {:>12.2}x {:>15.2}x {:>12.2}x {:>15.1}",
            v.label(),
            r.median_over_native,
            r.p99_over_native,
            r.median_over_fast,
            r.p99_over_fast,
            r.extra_us_over_fast
        );
        ratios_json.insert(v.key().to_owned(), r.to_json());
    }
    ratios_json
}

/// Prints the ratios to the fast path of each round's median (hook and run-time rule) and a
/// note for each variant whose rounds spread widely; returns those ratios.
fn print_rounds(summaries: &[Summary]) -> (Vec<f64>, Vec<f64>) {
    let s = |v: Variant| &summaries[v.index()];
    let fast = s(Variant::Policy);
    let hook_rounds = round_ratios(s(Variant::HookContinue), fast);
    let rules_rounds = round_ratios(s(Variant::Rules), fast);
    let show = |r: &[f64]| {
        r.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!();
    println!(
        "hook, continue / policy, per round medians   {}",
        show(&hook_rounds)
    );
    println!(
        "run-time rule / policy, per round medians    {}",
        show(&rules_rounds)
    );
    for v in Variant::ALL {
        if let Some(note) = s(v).spread_note(v.label(), "a noisy run") {
            println!("{note}");
        }
    }
    (hook_rounds, rules_rounds)
}

fn run(o: &Options) -> Result<bool, String> {
    let machine = Machine::read();
    let hook_calls = Arc::new(AtomicU64::new(0));
    let bench = setup(o, &hook_calls)?;

    let per_round = o.counts.plan();
    let rules = print_plan(&bench, &machine, &per_round);

    let started = Instant::now();
    let summaries = measure_rounds(&bench, &per_round, started)?;

    let s = |v: Variant| &summaries[v.index()];
    let ratios_json = print_table(&summaries);
    let (hook_rounds, rules_rounds) = print_rounds(&summaries);

    // Every connect reached the listener; the hook was asked once per hooked connect.
    let per_variant = o.counts.calls_per_variant();
    let expected = Variant::ALL.len() as u64 * per_variant;
    let seen = bench.listener.wait_for(expected, Duration::from_secs(2));
    let asked = hook_calls.load(Ordering::Relaxed);
    let expected_asked = 2 * per_variant;
    println!(
        "listener accepted {seen} of {expected}; hook asked {asked} times (expected {expected_asked})"
    );
    let end_load = crate::report::print_end_load(started);

    let mut by_variant = serde_json::Map::new();
    for v in Variant::ALL {
        by_variant.insert(v.key().to_owned(), s(v).to_json());
    }
    let json = machine.report_json(
        "nj-bench embedded",
        &end_load,
        serde_json::json!({
            "iterations": o.counts.iterations,
            "rounds": o.counts.rounds,
            "warmup": o.counts.warmup,
            "variants": by_variant,
            "ratios": ratios_json,
            "round_ratios": {
                "hook_continue_over_policy": hook_rounds,
                "rules_over_policy": rules_rounds,
            },
            "runtime_rules": rules,
            "listener": { "accepted": seen, "expected": expected },
            "hook_calls": { "asked": asked, "expected": expected_asked },
        }),
    );
    println!("{json}");

    if asked != expected_asked {
        eprintln!(
            "nj-bench embedded: error: the hook was asked {asked} times, expected {expected_asked}"
        );
        return Ok(false);
    }
    if seen != expected {
        eprintln!("nj-bench embedded: warning: the listener accepted {seen}, expected {expected}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netjail_policy::{Op, Proto, Request, SandboxRules, Target, Verdict};

    fn connect_to(port: u16) -> Request {
        Request {
            op: Op::Connect,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            },
        }
    }

    /// In `rules` and `hook, allow` the policy alone refuses the port, so the run-time rule
    /// and the hook are what let the calls through; in `policy` and `hook, continue` it allows.
    #[test]
    fn only_the_variants_meant_to_allow_by_policy_do() {
        let port = 4321;
        assert!(Variant::Native.policy(port).is_none());
        for v in &Variant::ALL[1..] {
            let policy = v.policy(port).unwrap().unwrap();
            let allowed = policy.evaluate(&connect_to(port)).verdict == Verdict::Allow;
            let by_policy = matches!(v, Variant::Policy | Variant::HookContinue);
            assert_eq!(allowed, by_policy, "{v:?}");
            assert_ne!(
                policy.evaluate(&connect_to(port + 1)).verdict,
                Verdict::Allow
            );
        }
    }

    #[test]
    fn the_runtime_rules_parse_and_allow_only_the_port() {
        let port = 4321;
        let mut rules = SandboxRules::new();
        for (allow, entry) in runtime_rules(port) {
            if allow {
                rules.allow(&entry)
            } else {
                rules.deny(&entry)
            }
            .unwrap_or_else(|e| panic!("{entry}: {e}"));
        }
        assert_eq!(rules.entries().len(), runtime_rules(port).len());
        let d = rules.decide(&connect_to(port)).expect("the port is ruled");
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(rules.decide(&connect_to(port + 1)).is_none());
    }

    #[test]
    fn ratios_against_native_and_the_fast_path() {
        let native = stats::summarize(&[vec![10_000, 10_000, 10_000]]);
        let fast = stats::summarize(&[vec![20_000, 20_000, 40_000]]);
        let hooked = stats::summarize(&[vec![30_000, 30_000, 80_000]]);
        let r = Ratios::of(&hooked, &native, &fast);
        assert_eq!(r.median_over_native, 3.0);
        assert_eq!(r.p99_over_native, 8.0);
        assert_eq!(r.median_over_fast, 1.5);
        assert_eq!(r.p99_over_fast, 2.0);
        assert_eq!(r.extra_us_over_fast, 10.0);
        assert!(ratio(1, 0).is_nan());
        assert_eq!(round_ratios(&hooked, &fast), vec![1.5]);
    }
}
