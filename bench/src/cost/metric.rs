//! What `nj-bench cost` measures: its tests, the figures of its table, and the medians over
//! the pairs.

/// The tests, in the order they run within a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    TcpSend,
    TcpRecv,
    UdpRtt,
    UdpStream,
    Syscalls,
}

impl Test {
    pub const ALL: [Test; 5] = [
        Test::TcpSend,
        Test::TcpRecv,
        Test::UdpRtt,
        Test::UdpStream,
        Test::Syscalls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Test::TcpSend => "tcp-send",
            Test::TcpRecv => "tcp-recv",
            Test::UdpRtt => "udp-rtt",
            Test::UdpStream => "udp-stream",
            Test::Syscalls => "syscalls",
        }
    }
}

/// One figure of the table.
pub struct Metric {
    pub test: Test,
    /// The key in the child's JSON line.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Shown value = raw / scale.
    pub scale: f64,
    pub higher_is_better: bool,
    /// Part of the acceptance target (within 5%).
    pub target: bool,
}

pub const METRICS: &[Metric] = &[
    Metric {
        test: Test::TcpSend,
        key: "mib_s",
        label: "(a) TCP bulk, confined sender",
        unit: "MiB/s",
        scale: 1.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::TcpRecv,
        key: "mib_s",
        label: "(a) TCP bulk, confined receiver",
        unit: "MiB/s",
        scale: 1.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::UdpRtt,
        key: "median_ns",
        label: "(b) UDP 64 B round trip, median",
        unit: "µs",
        scale: 1000.0,
        higher_is_better: false,
        target: true,
    },
    Metric {
        test: Test::UdpRtt,
        key: "p99_ns",
        label: "(b) UDP 64 B round trip, p99",
        unit: "µs",
        scale: 1000.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::UdpStream,
        key: "msgs_s",
        label: "(b) UDP 64 B one-way sends",
        unit: "k msg/s",
        scale: 1000.0,
        higher_is_better: true,
        target: true,
    },
    Metric {
        test: Test::Syscalls,
        key: "getppid_ns",
        label: "(c) getppid",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::Syscalls,
        key: "pipe_ns",
        label: "(c) pipe write/read, 1 B",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
    Metric {
        test: Test::Syscalls,
        key: "send_ns",
        label: "(c) send() 64 B, connected UDP",
        unit: "ns/call",
        scale: 1.0,
        higher_is_better: false,
        target: false,
    },
];

/// The acceptance bound: |confined / native - 1| at most this, at the median over pairs.
pub const TARGET: f64 = 0.05;

/// One native/confined pair of one test.
pub struct Pair {
    pub native: Fields,
    pub confined: Fields,
    /// The third worker: native with a filter of its own (`--third`, allow-all by default).
    pub allow_all: Fields,
}

pub type Fields = serde_json::Map<String, serde_json::Value>;

pub fn get(f: &Fields, key: &str) -> f64 {
    f.get(key).and_then(|v| v.as_f64()).unwrap_or(f64::NAN)
}

/// Lower median (nearest rank) of finite values; NaN for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

pub fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
