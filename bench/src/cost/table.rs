//! What `nj-bench cost` prints after measuring: the table of ratios, the per-pair ratios, where
//! the time of a system call goes, the known cost of `sendmsg`, and what the broker saw.

use super::metric::{get, median, min_max, Fields, Metric, Pair, Test, METRICS, TARGET};
use super::options::Options;
use super::worker::Decision;

/// One syscall figure's values per pair: native, third worker, confined.
pub type Deltas = (&'static Metric, Vec<f64>, Vec<f64>, Vec<f64>);

/// What the table found.
pub struct Table {
    /// Every target metric within [`TARGET`].
    pub all_ok: bool,
    /// The syscall figures, for [`print_breakdown`].
    pub deltas: Vec<Deltas>,
    /// Per metric, its values and ratios.
    pub json: serde_json::Map<String, serde_json::Value>,
}

/// The label of the second column: `confined`, or `native-2` in a control run.
fn second(o: &Options) -> &'static str {
    if o.control {
        "native-2"
    } else {
        "confined"
    }
}

/// The pairs of `test` in `results`.
fn pairs_of(results: &[Vec<Pair>], test: Test) -> &[Pair] {
    let i = Test::ALL.iter().position(|&t| t == test).unwrap_or(0);
    &results[i]
}

/// Prints the table: per metric the medians of each worker, the median ratio over the pairs
/// and whether it is within the target.
pub fn print_table(o: &Options, results: &[Vec<Pair>]) -> Table {
    println!();
    let second = second(o);
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9}  {:<26} {:>8}  within 5%",
        "metric",
        "unit",
        "native",
        o.third,
        second,
        format!("{second}/native [min..max]"),
        "cost",
    );
    let mut table = Table {
        all_ok: true,
        deltas: Vec::new(),
        json: serde_json::Map::new(),
    };
    for m in METRICS {
        if o.tests.contains(&m.test) {
            table_row(m, pairs_of(results, m.test), &mut table);
        }
    }
    table
}

/// One metric's row of the table, its JSON and, for syscalls, its values for the breakdown.
fn table_row(m: &'static Metric, pairs: &[Pair], table: &mut Table) {
    let native: Vec<f64> = pairs.iter().map(|p| get(&p.native, m.key)).collect();
    let confined: Vec<f64> = pairs.iter().map(|p| get(&p.confined, m.key)).collect();
    let allow_all: Vec<f64> = pairs.iter().map(|p| get(&p.allow_all, m.key)).collect();
    let ratios: Vec<f64> = native.iter().zip(&confined).map(|(n, c)| c / n).collect();
    let r = median(&ratios);
    let (lo, hi) = min_max(&ratios);
    let cost = if m.higher_is_better {
        1.0 / r - 1.0
    } else {
        r - 1.0
    };
    let within = (r - 1.0).abs() <= TARGET;
    let verdict = match (m.target, within) {
        (true, true) => "yes",
        (true, false) => {
            table.all_ok = false;
            "NO"
        }
        (false, _) => "(not a target)",
    };
    println!(
        "{:<34} {:>8} {:>9.2} {:>9.2} {:>9.2}  {:<26} {:>+7.1}%  {verdict}",
        m.label,
        m.unit,
        median(&native) / m.scale,
        median(&allow_all) / m.scale,
        median(&confined) / m.scale,
        format!("{r:.3} [{lo:.3}..{hi:.3}]"),
        100.0 * cost,
    );
    let allow_all_ratio = median(
        &native
            .iter()
            .zip(&allow_all)
            .map(|(n, a)| a / n)
            .collect::<Vec<_>>(),
    );
    if m.test == Test::Syscalls {
        table
            .deltas
            .push((m, native.clone(), allow_all.clone(), confined.clone()));
    }
    table.json.insert(
        format!("{}.{}", m.test.name(), m.key),
        serde_json::json!({
            "native": native, "allow_all": allow_all, "confined": confined, "ratios": ratios,
            "allow_all_over_native_median": allow_all_ratio,
            "median_ratio": r, "cost": cost, "target": m.target, "within_5pct": within,
        }),
    );
}

/// Prints every pair's ratio confined/native, per metric.
pub fn print_ratios(o: &Options, results: &[Vec<Pair>]) {
    println!();
    println!(
        "ratio    per pair, confined/native: the median of {} pairs; cost = how much slower confined is (throughput: native/confined - 1; time: confined/native - 1)",
        o.pairs
    );
    for m in METRICS.iter().filter(|m| o.tests.contains(&m.test)) {
        let ratios: Vec<String> = pairs_of(results, m.test)
            .iter()
            .map(|p| format!("{:.3}", get(&p.confined, m.key) / get(&p.native, m.key)))
            .collect();
        println!("         {:<34} {}", m.label, ratios.join(" "));
    }
}

/// Prints where the time of a system call goes (the third worker between native and
/// confined); returns it as JSON (null when the syscalls test did not run).
pub fn print_breakdown(o: &Options, deltas: &[Deltas]) -> serde_json::Value {
    if deltas.is_empty() {
        return serde_json::Value::Null;
    }
    println!();
    let second = second(o);
    let (entry_label, filter_label) = if o.third == "allow-all" {
        ("seccomp on", "the filter")
    } else {
        ("least filter", "netjail extra")
    };
    println!(
        "{:<34} {:>8} {:>11} {:>10}  {:>16} {:>14} {:>14}",
        "(c) where the time goes, ns/call",
        "native",
        o.third,
        second,
        format!("{second}-native"),
        entry_label,
        filter_label
    );
    let mut c_json = serde_json::Map::new();
    for (m, native, allow_all, confined) in deltas {
        c_json.insert(m.key.into(), breakdown_row(m, native, allow_all, confined));
    }
    println!("         medians of per-pair differences; {entry_label} = {} - native; {filter_label} = confined - {}", o.third, o.third);
    if o.third == "allow-all" {
        println!(
            "         allow-all = native plus a 1-instruction RET ALLOW filter: seccomp on, every call cached, no filter run;"
        );
        println!("         so {entry_label} is the kernel's price for any filter, {filter_label} what running netjail's program adds");
    } else {
        println!(
            "         sendto-only = native plus the least filter that keeps send() in the kernel (9 instructions on the sendto path)"
        );
    }
    c_json.into()
}

/// One row of the breakdown; its JSON.
fn breakdown_row(
    m: &Metric,
    native: &[f64],
    allow_all: &[f64],
    confined: &[f64],
) -> serde_json::Value {
    let diff = |a: &[f64], b: &[f64]| -> f64 {
        median(&a.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>())
    };
    let (total, entry, filter) = (
        diff(confined, native),
        diff(allow_all, native),
        diff(confined, allow_all),
    );
    println!(
        "{:<34} {:>8.1} {:>11.1} {:>10.1}  {:>+16.1} {:>+14.1} {:>+14.1}",
        m.label.trim_start_matches("(c) "),
        median(native),
        median(allow_all),
        median(confined),
        total,
        entry,
        filter
    );
    serde_json::json!({
        "native": median(native), "third": median(allow_all),
        "confined": median(confined), "added": total,
        "third_minus_native": entry, "confined_minus_third": filter,
    })
}

/// Prints the known cost of `sendmsg` on a connected socket; returns it as JSON.
pub fn print_sendmsg(
    native: &Result<(Fields, Vec<Decision>), String>,
    confined: &Result<(Fields, Vec<Decision>), String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut sendmsg_json = serde_json::Map::new();
    match (native, confined) {
        (Ok((n, _)), Ok((c, seen))) => {
            let errors = c.get("errors").cloned().unwrap_or_default();
            let ops: Vec<String> = seen
                .iter()
                .filter(|(op, _, _)| op != "connect")
                .take(1)
                .map(|(op, d, e)| format!("first: {op} {d} errno {e}"))
                .collect();
            println!(
                "sendmsg  the known cost: sendmsg() with no destination on a connected UDP socket always goes to the broker;"
            );
            println!(
                "         native {:.2} µs, confined {:.2} µs per call at the median ({:.1}x); confined: {} of {} ok, errors by errno {errors}; {} broker decisions {}",
                get(n, "median_ns") / 1000.0,
                get(c, "median_ns") / 1000.0,
                get(c, "median_ns") / get(n, "median_ns"),
                get(c, "ok"),
                get(c, "count"),
                seen.len(),
                ops.join("")
            );
            sendmsg_json.insert("native_median_ns".into(), get(n, "median_ns").into());
            sendmsg_json.insert("confined_median_ns".into(), get(c, "median_ns").into());
            sendmsg_json.insert("confined_ok".into(), get(c, "ok").into());
            sendmsg_json.insert("confined_errors".into(), errors);
            sendmsg_json.insert("confined_decisions".into(), seen.len().into());
        }
        (n, c) => {
            if let Some(e) = n.as_ref().err().or(c.as_ref().err()) {
                println!("sendmsg  not measured: {e}");
            }
        }
    }
    sendmsg_json
}

/// Prints what the broker saw of the confined workers; false when it was asked for more than
/// one allowed connect per measurement.
pub fn print_broker(o: &Options, broker_ok: bool, seen: &[Decision], expected: usize) -> bool {
    if o.control {
        println!("broker   none (control run)");
    } else if broker_ok {
        println!(
            "broker   the confined worker asked the broker {} times for {expected} measurements: once each, for its connect(); no round trip while sending or receiving",
            seen.len()
        );
    } else {
        let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
        for (op, d, e) in seen {
            *by_kind.entry(format!("{op} {d} errno {e}")).or_default() += 1;
        }
        println!(
            "broker   VIOLATION: {expected} measurements should have made {expected} allowed connects and nothing else; the broker saw {:?}",
            by_kind
        );
        return false;
    }
    true
}
