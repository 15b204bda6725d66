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

/// Nanoseconds as microseconds.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}
