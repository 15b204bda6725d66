//! The command line of `nj-bench` (clap): with no subcommand the connect-latency bench
//! ([`ConnectArgs`]), else one of the [`Bench`] subcommands, each with its own `--help`. The
//! counts the round-based benches share (`--iterations`, `--rounds`, `--warmup`) are
//! [`Counts`], the binaries they run (`--netjail`, `--netjaild`) [`Netjail`] and [`Netjaild`].
//! Each bench turns its arguments into its own options and checks what clap cannot (at least
//! one call per round, non-empty lists...).
//!
//! `nj-bench --child ...` is not part of this command line: it is the bench starting its own
//! measured children, read by [`crate::child::main`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::process::sibling_binary;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "nj-bench",
    about = "The benches of netjail; with no subcommand, the latency of a loopback TCP connect()",
    long_about = CONNECT_ABOUT,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A bench other than the connect latency.
    #[command(subcommand)]
    pub bench: Option<Bench>,
    /// The connect-latency bench's options (no subcommand).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

const CONNECT_ABOUT: &str = "\
Measures, interleaved in R rounds within one run, the latency of a loopback TCP connect():
native, through the netjail broker (allowed and denied), and the bare seccomp-notify round trip.
The subcommands are the other benches.";

/// The benches a subcommand names.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// The cost rule: send/recv on connected sockets, native vs confined.
    #[command(long_about = COST_ABOUT)]
    Cost(CostArgs),
    /// Calls held for an operator vs another sandbox's allowed connects.
    #[command(long_about = HELD_ABOUT)]
    Held(HeldArgs),
    /// An embedded broker: the policy's fast path, run-time rules, a decision hook.
    #[command(long_about = EMBEDDED_ABOUT)]
    Embedded(EmbeddedArgs),
    /// 10,000 sandboxes on one broker: memory per sandbox, decision rate.
    #[command(long_about = SCALE_ABOUT)]
    Scale(ScaleArgs),
    /// Another sandbox flooding denied connects vs one sandbox's allowed connects.
    #[command(long_about = FLOOD_ABOUT)]
    Flood(FloodArgs),
    /// From a network namespace of its own to the host's 127.0.0.1: throughput, connect latency.
    #[command(long_about = BRIDGE_ABOUT)]
    Bridge(BridgeArgs),
}

/// The counts of a bench measured interleaved in rounds (`nj-bench`, `held`, `embedded`,
/// `flood`, `bridge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct Counts {
    /// Timed calls per variant, spread over the rounds.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 2000)]
    pub iterations: usize,
    /// Rounds; each round runs every variant once, in rotating order.
    #[arg(long, value_name = "R", default_value_t = 5)]
    pub rounds: usize,
    /// Untimed calls at the start of each measured child process.
    #[arg(long, value_name = "W", default_value_t = 20)]
    pub warmup: usize,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            iterations: 2000,
            rounds: 5,
            warmup: 20,
        }
    }
}

impl Counts {
    /// At least one round, and at least one timed call in every round.
    pub fn check(&self) -> Result<(), String> {
        let Counts {
            iterations, rounds, ..
        } = *self;
        if rounds == 0 || iterations < rounds {
            return Err(format!(
                "need at least one round and one call per round (iterations {iterations}, rounds {rounds})"
            ));
        }
        Ok(())
    }

    /// The timed calls of round `r` (of `0..rounds`): the iterations split as evenly as
    /// possible, the first rounds taking one more each when they do not divide.
    pub fn per_round(&self, r: usize) -> usize {
        self.iterations / self.rounds + usize::from(r < self.iterations % self.rounds)
    }

    /// [`Counts::per_round`] for every round.
    pub fn plan(&self) -> Vec<usize> {
        (0..self.rounds).map(|r| self.per_round(r)).collect()
    }

    /// The calls one variant makes in all, timed and warm-up: `iterations + rounds * warmup`.
    pub fn calls_per_variant(&self) -> u64 {
        self.iterations as u64 + self.rounds as u64 * self.warmup as u64
    }
}

/// `--netjail PATH`: the launcher a bench runs its confined children with.
#[derive(Debug, Clone, Default, Args)]
pub struct Netjail {
    /// The netjail binary [default: `netjail` next to this executable].
    #[arg(id = "netjail", long = "netjail", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl Netjail {
    /// The netjail binary (see [`sibling_binary`]).
    pub fn binary(&self) -> Result<PathBuf, String> {
        sibling_binary(self.path.clone(), "netjail")
    }
}

/// `--netjaild PATH`: the broker of the benches that start their own.
#[derive(Debug, Clone, Default, Args)]
pub struct Netjaild {
    /// The netjaild binary [default: `netjaild` next to this executable].
    #[arg(id = "netjaild", long = "netjaild", value_name = "PATH")]
    pub path: Option<PathBuf>,
}

impl Netjaild {
    /// The netjaild binary (see [`sibling_binary`]).
    pub fn binary(&self) -> Result<PathBuf, String> {
        sibling_binary(self.path.clone(), "netjaild")
    }
}

/// `nj-bench` with no subcommand: connect() native, brokered, denied, and the notify floor.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub counts: Counts,
    #[command(flatten)]
    pub netjail: Netjail,
    /// Add a 5th variant: the floor with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP set, as the
    /// broker sets it (the like-for-like floor for issue 8's bound).
    #[arg(long)]
    pub sync_floor: bool,
    /// Confined runs write the audit (NETJAIL_LOG=warn,netjail::audit=info, one line per
    /// call, read and dropped by the bench) instead of nothing: the cost of an audited
    /// decision (the caller's program read, the line written).
    #[arg(long)]
    pub audit: bool,
}

const COST_ABOUT: &str = "\
The cost rule: a native and a confined worker (netjail run, embedded broker) stay up side by
side and take turns, measurement by measurement, in N pairs (order alternating); the ratio
confined/native is taken per pair and the table gives its median over the pairs.

  (a) tcp-send    the worker send()s M MiB in CHUNK-byte calls to a loopback peer
      tcp-recv    the worker recv()s M MiB from the peer
  (b) udp-rtt     64-byte send()/recv() ping-pong with an echo peer on a connected UDP socket
      udp-stream  64-byte send()s as fast as possible on a connected UDP socket
  (c) syscalls    ns per call of getppid, 1-byte pipe write+read, 64-byte UDP send(), also
  every test also runs in a third worker, native plus a 1-instruction allow-all filter
  of its own (seccomp on, no netjail): what having any filter at all costs
  and once at the end: sendmsg() on a connected UDP socket (always brokered: the known cost)";

/// The third worker's own filter (`--third`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Third {
    /// One instruction that allows everything.
    AllowAll,
    /// The least filter that keeps send() in the kernel (9 instructions on its path).
    SendtoOnly,
}

impl Third {
    /// Its name, as the worker's `filter=` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Third::AllowAll => "allow-all",
            Third::SendtoOnly => "sendto-only",
        }
    }
}

/// `nj-bench cost`.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// Measurements per test and variant.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub pairs: usize,
    /// MiB per TCP transfer (the first 5% are not timed).
    #[arg(long, value_name = "M", default_value_t = 512)]
    pub tcp_mib: usize,
    /// Bytes per send()/recv() call of the TCP tests.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub chunk: usize,
    /// Timed UDP round trips per measurement (after 1000 untimed).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub rtt: usize,
    /// Timed UDP sends per measurement (after 5000 untimed).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub stream: usize,
    /// Timed batches per syscall kind.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub batches: usize,
    /// Calls per batch.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub batch: usize,
    /// The third worker's own filter.
    #[arg(long, value_name = "F", value_enum, default_value_t = Third::AllowAll)]
    pub third: Third,
    /// Fresh worker processes every K pairs (0 = never), so that what one process happens to
    /// get (memory placement...) does not bias a run.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub respawn: usize,
    /// The measured worker on CPU C, the peers on CPU P [default: 0,1 with 2+ CPUs].
    #[arg(long, value_name = "C,P", value_parser = parse_pin, conflicts_with = "no_pin")]
    pub pin: Option<(usize, usize)>,
    /// Let the scheduler place everything.
    #[arg(long)]
    pub no_pin: bool,
    /// Run only these tests (comma-separated: tcp-send, tcp-recv, udp-rtt, udp-stream,
    /// syscalls).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// An A/A run: the "confined" worker is a second native one, so the ratios show what two
    /// identical processes differ by (the resolution of the bench).
    #[arg(long)]
    pub control: bool,
    #[command(flatten)]
    pub netjail: Netjail,
}

/// `--pin CLIENT,PEER`: two CPU numbers.
fn parse_pin(v: &str) -> Result<(usize, usize), String> {
    let (c, p) = v
        .split_once(',')
        .ok_or_else(|| format!("{v}: expected CLIENT,PEER"))?;
    let cpu =
        |s: &str| -> Result<usize, String> { s.trim().parse().map_err(|e| format!("{v}: {e}")) };
    Ok((cpu(c)?, cpu(p)?))
}

const HELD_ABOUT: &str = "\
Held calls do not slow other sandboxes: the latency of a loopback TCP connect() allowed by the
broker (its own netjaild, one operator watching), measured interleaved in R rounds with
nothing held (idle) and while another sandbox has H calls held for an operator (held).";

/// `nj-bench held`.
#[derive(Debug, Args)]
pub struct HeldArgs {
    #[command(flatten)]
    pub counts: Counts,
    /// Calls the holding sandbox keeps held (the broker's limit per sandbox).
    #[arg(long, value_name = "H", default_value_t = 16)]
    pub held: usize,
    /// The operator runs `netjail watch --json --pending-only` (held calls and their ends)
    /// instead of `netjail watch --json` (every decision too).
    #[arg(long)]
    pub pending_only: bool,
    /// Add a 3rd variant: idle with the operator stopped (nobody watching), to show what a
    /// watching operator costs every call.
    #[arg(long)]
    pub unwatched: bool,
    #[command(flatten)]
    pub netjail: Netjail,
    #[command(flatten)]
    pub netjaild: Netjaild,
}

const EMBEDDED_ABOUT: &str = "\
What an embedded broker (netjail_broker::Broker::builder) costs per loopback TCP connect(),
and what its run-time rules and its decision hook add: native, policy (the fast path),
rules (allowed by a run-time rule, still the fast path), hook returning Continue and hook
returning Allow (the blocking pool), measured interleaved in R rounds within one run.";

/// `nj-bench embedded`.
#[derive(Debug, Args)]
pub struct EmbeddedArgs {
    #[command(flatten)]
    pub counts: Counts,
}

const SCALE_ABOUT: &str = "\
Many sandboxes on one broker (its own netjaild): registers N idle sandboxes and reports the
broker's memory, threads and fds per sandbox; then, with them still registered, the decision
rate (allowed loopback connects per second) with 1, 16 and 256 busy sandboxes, next to the
same number of unconfined processes.";

/// `nj-bench scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Idle sandboxes to register.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sandboxes: usize,
    /// Comma-separated numbers of busy sandboxes.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1,16,256"
    )]
    pub busy: Vec<usize>,
    /// Connects per busy level, shared among its sandboxes.
    #[arg(long, value_name = "C", default_value_t = 25_600)]
    pub calls: usize,
    /// RLIMIT_NOFILE set for this bench and so for its netjaild.
    #[arg(long, value_name = "F", default_value_t = 65_536)]
    pub nofile: u64,
    /// The idle program, run as `PROGRAM 900`.
    #[arg(long, value_name = "PROGRAM", default_value = "/bin/sleep")]
    pub idle: PathBuf,
    #[command(flatten)]
    pub netjail: Netjail,
    #[command(flatten)]
    pub netjaild: Netjaild,
}

const FLOOD_ABOUT: &str = "\
Fairness under a flood: the latency of a loopback TCP connect() allowed by the broker (its own
netjaild), measured interleaved in R rounds unloaded and while another sandbox's T threads
each loop on connect() to a port the policy denies (EPERM).";

/// `nj-bench flood`.
#[derive(Debug, Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub counts: Counts,
    /// Threads of the flooding sandbox.
    #[arg(long, value_name = "T", default_value_t = 2000)]
    pub threads: usize,
    /// The bound on p99 flooded / p99 unloaded.
    #[arg(long, value_name = "B", default_value_t = 2.0)]
    pub bound: f64,
    /// Exit 1 when the bound fails (by default only errors of correctness do).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub netjail: Netjail,
    #[command(flatten)]
    pub netjaild: Netjaild,
}

const BRIDGE_ABOUT: &str = "\
From a process in a network namespace of its own (made by the bench: only lo up) to a TCP
server on the host's 127.0.0.1, measured interleaved in R rounds within one run, per variant:
host (no namespace of its own), slirp4netns (host loopback as 10.0.2.2) and pasta
(--tcp-ns: its listeners in the namespace forward to the host's loopback). Each round's child
makes N/R timed connects (to the server's first byte, and connect() alone) and sends M MiB
through one connection (Gbit/s until the server's count). A variant whose tool is missing is
reported as not measured, with why; the others are measured.";

/// `nj-bench bridge`.
#[derive(Debug, Args)]
pub struct BridgeArgs {
    #[command(flatten)]
    pub counts: Counts,
    /// MiB each child sends through one connection (one transfer per variant and round).
    #[arg(long, value_name = "M", default_value_t = 256)]
    pub mib: usize,
    /// Bytes per send() of the transfer.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub chunk: usize,
    /// Measure only these variants (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_enum)]
    pub only: Option<Vec<crate::bridge::Variant>>,
    /// The slirp4netns binary [default: slirp4netns on PATH].
    #[arg(long, value_name = "PATH")]
    pub slirp4netns: Option<PathBuf>,
    /// The pasta binary [default: pasta on PATH].
    #[arg(long, value_name = "PATH")]
    pub pasta: Option<PathBuf>,
    #[command(flatten)]
    pub netjail: Netjail,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nj-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn counts_defaults() {
        let c = Counts::default();
        assert_eq!((c.iterations, c.rounds, c.warmup), (2000, 5, 20));
        assert_eq!(c.check(), Ok(()));
        let cli = parse(&[]).unwrap();
        assert!(cli.bench.is_none());
        assert_eq!(cli.connect.counts, Counts::default());
        assert!(!cli.connect.sync_floor && !cli.connect.audit);
        assert_eq!(cli.connect.netjail.path, None);
    }

    #[test]
    fn values_inline_separate_and_short() {
        let cli = parse(&["-n", "9", "--rounds=2", "--warmup", "3", "--sync-floor"]).unwrap();
        assert_eq!(
            cli.connect.counts,
            Counts {
                iterations: 9,
                rounds: 2,
                warmup: 3
            }
        );
        assert!(cli.connect.sync_floor);
        let cli = parse(&["--iterations=11", "--netjail", "/a", "--audit"]).unwrap();
        assert_eq!(cli.connect.counts.iterations, 11);
        assert_eq!(cli.connect.netjail.path, Some(PathBuf::from("/a")));
        assert!(cli.connect.audit);
        assert!(parse(&["--iterations"]).is_err());
        assert!(parse(&["--rounds=x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        // Options of one bench are not options of another.
        assert!(parse(&["--netjaild", "/b"]).is_err());
        assert!(parse(&["embedded", "--netjail", "/a"]).is_err());
    }

    #[test]
    fn help_is_not_an_error() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["cost", "--help"],
            &["held", "--help"],
            &["embedded", "-h"],
            &["scale", "--help"],
            &["flood", "--help"],
            &["bridge", "--help"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
            assert!(!e.use_stderr(), "{args:?}");
        }
    }

    #[test]
    fn cost_defaults_and_options() {
        let Some(Bench::Cost(c)) = parse(&["cost"]).unwrap().bench else {
            panic!("not cost");
        };
        assert_eq!(
            (c.pairs, c.tcp_mib, c.chunk, c.rtt, c.stream, c.batches, c.batch),
            (15, 512, 65536, 10_000, 100_000, 50, 1000)
        );
        assert_eq!(
            (c.third, c.respawn, c.pin, c.no_pin),
            (Third::AllowAll, 5, None, false)
        );
        assert_eq!((c.only, c.control, c.netjail.path), (None, false, None));
        let Some(Bench::Cost(c)) = parse(&[
            "cost",
            "--pin",
            "2, 3",
            "--only=udp-rtt,syscalls",
            "--third",
            "sendto-only",
            "--control",
        ])
        .unwrap()
        .bench
        else {
            panic!("not cost");
        };
        assert_eq!(c.pin, Some((2, 3)));
        assert_eq!(c.only, Some(vec!["udp-rtt".into(), "syscalls".into()]));
        assert_eq!(c.third.name(), "sendto-only");
        assert!(c.control);
        assert!(parse(&["cost", "--pin", "2"]).is_err());
        assert!(parse(&["cost", "--pin", "0,1", "--no-pin"]).is_err());
        assert!(parse(&["cost", "--third", "none"]).is_err());
    }

    #[test]
    fn held_embedded_scale_flood_defaults() {
        let Some(Bench::Held(h)) = parse(&["held"]).unwrap().bench else {
            panic!("not held");
        };
        assert_eq!(h.counts, Counts::default());
        assert_eq!((h.held, h.pending_only, h.unwatched), (16, false, false));
        assert_eq!((h.netjail.path, h.netjaild.path), (None, None));
        let Some(Bench::Embedded(e)) = parse(&["embedded", "-n", "7"]).unwrap().bench else {
            panic!("not embedded");
        };
        assert_eq!(e.counts.iterations, 7);
        let Some(Bench::Scale(s)) = parse(&["scale"]).unwrap().bench else {
            panic!("not scale");
        };
        assert_eq!(
            (s.sandboxes, s.busy, s.calls, s.nofile, s.idle),
            (
                10_000,
                vec![1, 16, 256],
                25_600,
                65_536,
                PathBuf::from("/bin/sleep")
            )
        );
        let Some(Bench::Scale(s)) = parse(&["scale", "--busy=4,8"]).unwrap().bench else {
            panic!("not scale");
        };
        assert_eq!(s.busy, vec![4, 8]);
        let Some(Bench::Flood(f)) = parse(&["flood", "--netjaild=/d"]).unwrap().bench else {
            panic!("not flood");
        };
        assert_eq!(f.counts, Counts::default());
        assert_eq!((f.threads, f.bound, f.check), (2000, 2.0, false));
        assert_eq!(f.netjaild.path, Some(PathBuf::from("/d")));
    }

    #[test]
    fn bridge_defaults_and_options() {
        use crate::bridge::Variant;
        let Some(Bench::Bridge(b)) = parse(&["bridge"]).unwrap().bench else {
            panic!("not bridge");
        };
        assert_eq!(b.counts, Counts::default());
        assert_eq!((b.mib, b.chunk, b.only), (256, 65536, None));
        assert_eq!((b.slirp4netns, b.pasta), (None, None));
        let Some(Bench::Bridge(b)) =
            parse(&["bridge", "--only=pasta,host", "--pasta", "/p", "--mib", "8"])
                .unwrap()
                .bench
        else {
            panic!("not bridge");
        };
        assert_eq!(b.only, Some(vec![Variant::Pasta, Variant::Host]));
        assert_eq!((b.pasta, b.mib), (Some(PathBuf::from("/p")), 8));
        assert!(parse(&["bridge", "--only", "bogus"]).is_err());
    }

    #[test]
    fn an_absent_binary_is_named() {
        let n = Netjail {
            path: Some(PathBuf::from("/nonexistent/nj-bench-test/netjail")),
        };
        assert!(n
            .binary()
            .unwrap_err()
            .starts_with("no netjail binary at /nonexistent/nj-bench-test/netjail"));
    }

    #[test]
    fn calls_per_variant_count_the_warmups() {
        let c = Counts {
            iterations: 300,
            rounds: 2,
            warmup: 20,
        };
        assert_eq!(c.calls_per_variant(), 340);
    }

    #[test]
    fn counts_check() {
        let c = |iterations, rounds| Counts {
            iterations,
            rounds,
            warmup: 0,
        };
        assert_eq!(
            c(10, 0).check(),
            Err("need at least one round and one call per round (iterations 10, rounds 0)".into())
        );
        assert_eq!(
            c(3, 4).check(),
            Err("need at least one round and one call per round (iterations 3, rounds 4)".into())
        );
        assert_eq!(c(4, 4).check(), Ok(()));
        assert_eq!(c(1, 1).check(), Ok(()));
    }

    #[test]
    fn per_round_sums_to_iterations() {
        for iterations in 1..60 {
            for rounds in 1..=iterations {
                let c = Counts {
                    iterations,
                    rounds,
                    warmup: 0,
                };
                let plan = c.plan();
                assert_eq!(plan.len(), rounds);
                assert_eq!(plan.iter().sum::<usize>(), iterations);
                let (lo, hi) = (plan.iter().min().unwrap(), plan.iter().max().unwrap());
                assert!(*lo >= 1 && hi - lo <= 1, "{plan:?}");
                assert!(plan.windows(2).all(|w| w[0] >= w[1]), "{plan:?}");
                assert_eq!(
                    plan,
                    (0..rounds).map(|r| c.per_round(r)).collect::<Vec<_>>()
                );
            }
        }
        let c = Counts {
            iterations: 2000,
            rounds: 3,
            warmup: 20,
        };
        assert_eq!(c.plan(), vec![667, 667, 666]);
    }
}
