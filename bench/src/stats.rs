//! Order statistics of latency samples.

/// The figures of one variant over all its rounds.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Number of timed calls.
    pub count: usize,
    /// Median, ns.
    pub median_ns: u64,
    /// 99th percentile (nearest rank), ns.
    pub p99_ns: u64,
    /// Fastest call, ns.
    pub min_ns: u64,
    /// Slowest call, ns.
    pub max_ns: u64,
    /// Arithmetic mean, ns.
    pub mean_ns: f64,
    /// The median of each round, ns, in round order: how much the machine's noise moved it.
    pub round_medians_ns: Vec<u64>,
}

impl Summary {
    /// The header of a table of summaries, its label column `width` wide.
    pub fn table_header(width: usize) -> String {
        format!(
            "{:<width$} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}  round medians µs",
            "variant", "count", "median µs", "p99 µs", "min µs", "max µs", "mean µs"
        )
    }

    /// One row of that table: the figures in µs and the median of each round.
    pub fn table_row(&self, label: &str, width: usize) -> String {
        let rounds: Vec<String> = self
            .round_medians_ns
            .iter()
            .map(|&m| format!("{:.1}", us(m)))
            .collect();
        format!(
            "{:<width$} {:>6} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}  {}",
            label,
            self.count,
            us(self.median_ns),
            us(self.p99_ns),
            us(self.min_ns),
            us(self.max_ns),
            self.mean_ns / 1000.0,
            rounds.join(" ")
        )
    }

    /// The report's note when this variant's round medians spread by more than 1.5x (`why`
    /// says what may cause it), `None` otherwise.
    pub fn spread_note(&self, label: &str, why: &str) -> Option<String> {
        let (lo, hi) = (
            self.round_medians_ns.iter().copied().min().unwrap_or(0),
            self.round_medians_ns.iter().copied().max().unwrap_or(0),
        );
        (lo > 0 && hi as f64 > 1.5 * lo as f64).then(|| {
            format!(
                "note     {label}: round medians spread {:.1}..{:.1} µs ({why}); compare figures within one run",
                us(lo),
                us(hi)
            )
        })
    }

    /// The figures in µs as a JSON object, for the report's JSON line.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "median_us": us(self.median_ns),
            "p99_us": us(self.p99_ns),
            "min_us": us(self.min_ns),
            "max_us": us(self.max_ns),
            "mean_us": self.mean_ns / 1000.0,
            "round_medians_us": self.round_medians_ns.iter().map(|&m| us(m)).collect::<Vec<_>>(),
        })
    }
}

/// The `p`-quantile (0 < p <= 1) of sorted samples by nearest rank.
fn quantile(sorted: &[u64], p: f64) -> u64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some samples (nearest rank); 0 for none.
pub fn median(samples: &[u64]) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    quantile(&sorted, 0.5)
}

/// Summarises the samples of all rounds (`rounds[i]` = samples of round `i`).
pub fn summarize(rounds: &[Vec<u64>]) -> Summary {
    let mut all: Vec<u64> = rounds.iter().flatten().copied().collect();
    all.sort_unstable();
    let count = all.len();
    let (median_ns, p99_ns, min_ns, max_ns, mean_ns) = if count == 0 {
        (0, 0, 0, 0, 0.0)
    } else {
        let sum: u128 = all.iter().map(|&v| u128::from(v)).sum();
        (
            quantile(&all, 0.5),
            quantile(&all, 0.99),
            all[0],
            all[count - 1],
            sum as f64 / count as f64,
        )
    };
    Summary {
        count,
        median_ns,
        p99_ns,
        min_ns,
        max_ns,
        mean_ns,
        round_medians_ns: rounds
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| median(r))
            .collect(),
    }
}

/// `a / b`, NaN for `b == 0`.
pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Nanoseconds as microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_zero_is_nan() {
        assert_eq!(ratio(3, 2), 1.5);
        assert!(ratio(1, 0).is_nan());
    }

    #[test]
    fn spread_note_only_beyond_one_and_a_half() {
        let even = summarize(&[vec![10_000], vec![15_000]]);
        assert_eq!(even.spread_note("x", "why"), None);
        let noisy = summarize(&[vec![10_000], vec![15_001]]);
        assert_eq!(
            noisy.spread_note("brokered", "a noisy run").as_deref(),
            Some("note     brokered: round medians spread 10.0..15.0 µs (a noisy run); compare figures within one run")
        );
        let zero = summarize(&[vec![0], vec![15_000]]);
        assert_eq!(zero.spread_note("x", "why"), None);
    }
}
