//! The options of `nj-bench cost`, from its command line.

use std::path::PathBuf;

use super::metric::Test;
use crate::args;

/// What the command line asked for.
pub struct Options {
    pub pairs: usize,
    pub tcp_bytes: u64,
    pub chunk: usize,
    pub rtt: usize,
    pub stream: usize,
    pub batches: usize,
    pub batch: usize,
    /// (child CPU, peer CPU).
    pub pin: Option<(usize, usize)>,
    pub tests: Vec<Test>,
    pub netjail: PathBuf,
    /// A/A run: the confined worker is a second native worker.
    pub control: bool,
    /// Fresh worker processes every this many pairs.
    pub respawn: usize,
    /// The own filter of the third worker: `allow-all` or `sendto-only`.
    pub third: &'static str,
}

/// The options checked, the binary found.
pub fn options(args: args::CostArgs) -> Result<Options, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = match (args.pin, args.no_pin) {
        (_, true) => None,
        (Some(pin), false) => Some(pin),
        (None, false) => (cpus >= 2).then_some((0, 1)),
    };
    let tests = match &args.only {
        None => Test::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|t| {
                Test::ALL
                    .into_iter()
                    .find(|x| x.name() == t.trim())
                    .ok_or_else(|| format!("--only: unknown test `{t}`"))
            })
            .collect::<Result<_, _>>()?,
    };
    let o = Options {
        pairs: args.pairs,
        tcp_bytes: (args.tcp_mib as u64) << 20,
        chunk: args.chunk,
        rtt: args.rtt,
        stream: args.stream,
        batches: args.batches,
        batch: args.batch,
        pin,
        tests,
        netjail: PathBuf::new(),
        control: args.control,
        respawn: if args.respawn == 0 {
            usize::MAX
        } else {
            args.respawn
        },
        third: args.third.name(),
    };
    if o.pairs == 0 || o.chunk == 0 || o.chunk > 16 << 20 || o.tcp_bytes < 1 << 20 {
        return Err("need --pairs >= 1, 0 < --chunk <= 16 MiB, --tcp-mib >= 1".into());
    }
    if o.rtt == 0 || o.stream == 0 || o.batches == 0 || o.batch == 0 {
        return Err("--rtt, --stream, --batches and --batch must be at least 1".into());
    }
    Ok(Options {
        netjail: args.netjail.binary()?,
        ..o
    })
}
