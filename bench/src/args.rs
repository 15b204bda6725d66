//! The command-line options of the benches: `--name value`, `--name=value` and bare flags,
//! walked one at a time so that each bench keeps its own `match` of names; the counts the
//! round-based benches share (`--iterations`, `--rounds`, `--warmup`) are [`Counts`], the
//! binaries they run (`--netjail`, `--netjaild`) [`Binaries`].

use std::path::PathBuf;

/// A bench's entry point: `run` with the options parsed, or the usage printed for `--help`
/// (`None`).
pub fn run_or_usage<O>(
    options: Option<O>,
    usage: &str,
    run: impl FnOnce(&O) -> Result<bool, String>,
) -> Result<bool, String> {
    match options {
        Some(options) => run(&options),
        None => {
            print!("{usage}");
            Ok(true)
        }
    }
}

/// The last arm of a bench's `match` of names: `Ok(None)` for `--help` and `-h`, else the
/// error naming the unknown argument, followed by `usage`.
pub fn help_or_unknown<T>(name: &str, usage: &str) -> Result<Option<T>, String> {
    match name {
        "--help" | "-h" => Ok(None),
        other => Err(format!("unknown argument `{other}`\n{usage}")),
    }
}

/// Walks a bench's arguments.
pub struct Args<'a> {
    it: std::slice::Iter<'a, String>,
    name: String,
    inline: Option<String>,
}

impl<'a> Args<'a> {
    /// The walk over `args` (without the program and the bench's own name).
    pub fn new(args: &'a [String]) -> Args<'a> {
        Args {
            it: args.iter(),
            name: String::new(),
            inline: None,
        }
    }

    /// The next option's name (`--rounds`), or `None` at the end. A value written
    /// `--name=value` is kept for [`Args::value`].
    pub fn next_name(&mut self) -> Option<String> {
        let arg = self.it.next()?;
        (self.name, self.inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        Some(self.name.clone())
    }

    /// The current option's value: after `=`, else the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.it.next().cloned())
            .ok_or_else(|| format!("{} needs a value", self.name))
    }

    /// The current option's value as a count.
    pub fn number(&mut self) -> Result<usize, String> {
        let v = self.value()?;
        v.parse().map_err(|e| format!("{} {v}: {e}", self.name))
    }
}

/// The counts of a bench measured interleaved in rounds (`nj-bench`, `held`, `embedded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Timed calls per variant, spread over the rounds (`--iterations`, `-n`).
    pub iterations: usize,
    /// Rounds (`--rounds`).
    pub rounds: usize,
    /// Untimed calls at the start of each child (`--warmup`).
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
    /// Takes the current option if it is one of the counts (reading its value from `opts`);
    /// `false`, with nothing read, for any other name.
    pub fn take(&mut self, name: &str, opts: &mut Args) -> Result<bool, String> {
        let field = match name {
            "--iterations" | "-n" => &mut self.iterations,
            "--rounds" => &mut self.rounds,
            "--warmup" => &mut self.warmup,
            _ => return Ok(false),
        };
        *field = opts.number()?;
        Ok(true)
    }

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

/// The binaries a bench runs: `--netjail PATH`, and `--netjaild PATH` for the benches that
/// start their own broker; each by default the one next to this executable.
#[derive(Debug, Default)]
pub struct Binaries {
    /// Whether `--netjaild` is an option of this bench.
    daemon: bool,
    netjail: Option<PathBuf>,
    netjaild: Option<PathBuf>,
}

impl Binaries {
    /// `--netjail` only.
    pub fn netjail_only() -> Binaries {
        Binaries::default()
    }

    /// `--netjail` and `--netjaild`.
    pub fn with_netjaild() -> Binaries {
        Binaries {
            daemon: true,
            ..Binaries::default()
        }
    }

    /// Takes the current option if it is one of these binaries' (reading its value from
    /// `opts`); `false`, with nothing read, for any other name.
    pub fn take(&mut self, name: &str, opts: &mut Args) -> Result<bool, String> {
        let field = match name {
            "--netjail" => &mut self.netjail,
            "--netjaild" if self.daemon => &mut self.netjaild,
            _ => return Ok(false),
        };
        *field = Some(PathBuf::from(opts.value()?));
        Ok(true)
    }

    /// The netjail binary (see [`super::sibling_binary`]).
    pub fn netjail(&self) -> Result<PathBuf, String> {
        super::sibling_binary(self.netjail.clone(), "netjail")
    }

    /// The netjaild binary (see [`super::sibling_binary`]).
    pub fn netjaild(&self) -> Result<PathBuf, String> {
        super::sibling_binary(self.netjaild.clone(), "netjaild")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_inline_separate_and_missing() {
        let args: Vec<String> = ["--rounds=3", "--warmup", "7", "--flag", "--iterations"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut a = Args::new(&args);
        assert_eq!(a.next_name().as_deref(), Some("--rounds"));
        assert_eq!(a.number(), Ok(3));
        assert_eq!(a.next_name().as_deref(), Some("--warmup"));
        assert_eq!(a.number(), Ok(7));
        assert_eq!(a.next_name().as_deref(), Some("--flag"));
        assert_eq!(a.next_name().as_deref(), Some("--iterations"));
        assert_eq!(a.number(), Err("--iterations needs a value".to_string()));
        assert_eq!(a.next_name(), None);
        let bad = vec!["--rounds=x".to_string()];
        let mut a = Args::new(&bad);
        a.next_name();
        assert!(a.number().unwrap_err().starts_with("--rounds x: "));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_defaults() {
        let c = Counts::default();
        assert_eq!((c.iterations, c.rounds, c.warmup), (2000, 5, 20));
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn counts_take_their_own_options_only() {
        let args = strings(&[
            "-n",
            "9",
            "--rounds=2",
            "--held",
            "4",
            "--warmup",
            "3",
            "--iterations=11",
        ]);
        let mut a = Args::new(&args);
        let mut c = Counts::default();
        let mut others = Vec::new();
        while let Some(name) = a.next_name() {
            if !c.take(&name, &mut a).unwrap() {
                others.push((name, a.number().unwrap()));
            }
        }
        assert_eq!(
            c,
            Counts {
                iterations: 11,
                rounds: 2,
                warmup: 3
            }
        );
        assert_eq!(others, vec![("--held".to_string(), 4)]);

        let bad = strings(&["--rounds", "x"]);
        let mut a = Args::new(&bad);
        a.next_name();
        assert!(c
            .take("--rounds", &mut a)
            .unwrap_err()
            .starts_with("--rounds x: "));
        let missing = strings(&["--warmup"]);
        let mut a = Args::new(&missing);
        a.next_name();
        assert_eq!(
            c.take("--warmup", &mut a),
            Err("--warmup needs a value".to_string())
        );
    }

    #[test]
    fn help_or_unknown_arguments() {
        assert_eq!(help_or_unknown::<()>("--help", "USAGE"), Ok(None));
        assert_eq!(help_or_unknown::<()>("-h", "USAGE"), Ok(None));
        assert_eq!(
            help_or_unknown::<()>("--bogus", "usage: x\n"),
            Err("unknown argument `--bogus`\nusage: x\n".to_string())
        );
    }

    #[test]
    fn binaries_take_only_their_own_options() {
        let args = strings(&["--netjail=/a", "--netjaild", "/b", "--netjail", "/c"]);
        let mut a = Args::new(&args);
        let mut b = Binaries::with_netjaild();
        while let Some(name) = a.next_name() {
            assert!(b.take(&name, &mut a).unwrap(), "{name}");
        }
        assert_eq!(b.netjail, Some(PathBuf::from("/c")));
        assert_eq!(b.netjaild, Some(PathBuf::from("/b")));

        // Where the bench starts no broker, `--netjaild` is not an option.
        let args = strings(&["--netjaild", "/b"]);
        let mut a = Args::new(&args);
        let mut b = Binaries::netjail_only();
        a.next_name();
        assert_eq!(b.take("--netjaild", &mut a), Ok(false));
        assert_eq!(b.take("--rounds", &mut a), Ok(false));
        assert_eq!(b.netjaild, None);
        let missing = strings(&["--netjail"]);
        let mut a = Args::new(&missing);
        a.next_name();
        assert_eq!(
            b.take("--netjail", &mut a),
            Err("--netjail needs a value".to_string())
        );
        let absent = strings(&["--netjail", "/nonexistent/nj-bench-test/netjail"]);
        let mut a = Args::new(&absent);
        a.next_name();
        assert_eq!(b.take("--netjail", &mut a), Ok(true));
        assert!(b
            .netjail()
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
