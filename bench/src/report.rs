//! What every bench prints around its figures: the machine, the plan of rounds, the load at
//! the end; the rotating order of the variants in each round.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::args;

/// Facts about the machine printed with the figures.
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub date: String,
    pub loadavg: String,
}

impl Machine {
    pub fn read() -> Machine {
        let file = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let kernel = format!(
            "{} {} {}",
            file("/proc/sys/kernel/ostype"),
            file("/proc/sys/kernel/osrelease"),
            file("/proc/sys/kernel/version")
        );
        let cpu_model = file("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_default();
        Machine {
            kernel,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            date: utc_now(),
            loadavg: loadavg(),
        }
    }

    /// The report's lines about the machine: `kernel`, `cpus`, `date` and `load` (at start).
    pub fn print_header(&self) {
        println!("kernel   {}", self.kernel);
        println!("cpus     {} ({})", self.cpus, self.cpu_model);
        println!("date     {}", self.date);
        println!("load     {} (1, 5, 15 min, at start)", self.loadavg);
    }

    /// The report's JSON line: `bench`, the machine and the load at the end, then the fields
    /// of `rest` (an object).
    pub fn report_json(
        &self,
        bench: &str,
        end_load: &str,
        rest: serde_json::Value,
    ) -> serde_json::Value {
        let mut json = serde_json::json!({
            "bench": bench,
            "kernel": self.kernel,
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "date": self.date,
            "loadavg_start": self.loadavg,
            "loadavg_end": end_load,
        });
        if let (Some(all), serde_json::Value::Object(rest)) = (json.as_object_mut(), rest) {
            all.extend(rest);
        }
        json
    }
}

/// The report's `plan` line: the timed calls per variant spread over the rounds
/// (`per_round`) and the warm-up calls; `end` closes it (`;` where more lines follow).
pub fn print_plan(counts: &args::Counts, per_round: &[usize], end: &str) {
    println!(
        "plan     {} timed calls per variant in {} rounds ({per_round:?}), rotating order, {} untimed warm-up calls per child{end}",
        counts.iterations, counts.rounds, counts.warmup
    );
}

/// The line on stderr at the end of each round.
pub fn print_round_done(round: usize, rounds: usize, started: Instant) {
    eprintln!(
        "round {}/{} done ({:.1} s)",
        round + 1,
        rounds,
        started.elapsed().as_secs_f64()
    );
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Prints the load at the end of a run and how long the run took, and returns the load.
pub fn print_end_load(started: Instant) -> String {
    let end_load = loadavg();
    println!(
        "load     {end_load} (at end, {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    end_load
}

/// The order of the variants in round `round`: rotated by one each round, so that no
/// variant always runs first (after a pause) or last.
pub fn rotation<V: Copy>(variants: &[V], round: usize) -> Vec<V> {
    let mut order = variants.to_vec();
    order.rotate_left(round % variants.len());
    order
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub fn the_report_json_starts_with_the_machine() {
        let machine = Machine {
            kernel: "Linux 6".into(),
            cpus: 2,
            cpu_model: "cpu".into(),
            date: "2025-01-01T00:00:00Z".into(),
            loadavg: "0.1 0.2 0.3".into(),
        };
        let json = machine.report_json(
            "nj-bench x",
            "1.0 2.0 3.0",
            serde_json::json!({ "rounds": 5 }),
        );
        assert_eq!(
            json,
            serde_json::json!({
                "bench": "nj-bench x",
                "kernel": "Linux 6",
                "cpus": 2,
                "cpu_model": "cpu",
                "date": "2025-01-01T00:00:00Z",
                "loadavg_start": "0.1 0.2 0.3",
                "loadavg_end": "1.0 2.0 3.0",
                "rounds": 5,
            })
        );
    }
}
