//! The command-line options of the benches: `--name value`, `--name=value` and bare flags,
//! walked one at a time so that each bench keeps its own `match` of names.

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
}
