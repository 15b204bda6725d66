//! `[limits]`: numeric limits per sandbox, with one convention (rule N3): `0` means none at
//! all, `-1` means unlimited (the default of every key).

use std::fmt;

use toml::Spanned;

use crate::error::{PolicyError, PolicyErrorKind};
use crate::value::{Source, Value};

/// One numeric limit, as rule N3 spells it: `-1` unlimited, `0` none at all, `N` at most N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Limit {
    /// `-1`, the default: no limit.
    #[default]
    Unlimited,
    /// At most this many (`0`: none at all).
    AtMost(u64),
}

impl Limit {
    /// The limit as a policy writes it: `-1` for [`Limit::Unlimited`], else the number.
    pub fn to_n3(self) -> i64 {
        match self {
            Limit::Unlimited => -1,
            Limit::AtMost(n) => i64::try_from(n).unwrap_or(i64::MAX),
        }
    }

    /// The limit a policy's integer means, or `None` for an integer below `-1`.
    pub fn from_n3(value: i64) -> Option<Limit> {
        match value {
            -1 => Some(Limit::Unlimited),
            n if n >= 0 => Some(Limit::AtMost(n as u64)),
            _ => None,
        }
    }

    /// The bound, `None` when unlimited.
    pub fn max(self) -> Option<u64> {
        match self {
            Limit::Unlimited => None,
            Limit::AtMost(n) => Some(n),
        }
    }

    /// Whether `count` more would exceed the limit: `count >= max`.
    pub fn reached(self, count: u64) -> bool {
        self.max().is_some_and(|max| count >= max)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_n3())
    }
}

/// The `[limits]` table of a policy: what the broker bounds per sandbox. Every key is
/// [`Limit::Unlimited`] unless the policy says otherwise.
///
/// ```
/// use netjail_policy::{Limit, Policy};
///
/// let p = Policy::from_toml(
///     "name = \"p\"\n[limits]\nmax_connections = 2\nmax_calls_per_second = 0\n",
///     "p.toml",
/// )?;
/// assert_eq!(p.limits().max_connections, Limit::AtMost(2));
/// assert_eq!(p.limits().max_binds, Limit::Unlimited);
/// assert_eq!(p.limits().max_calls_per_second, Limit::AtMost(0));
/// # Ok::<(), netjail_policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Limits {
    /// `max_connections`: live connections the broker made for the sandbox (sockets it
    /// connected with `connect`, inet or unix, stream or datagram, that are still open).
    pub max_connections: Limit,
    /// `max_binds`: live sockets the broker bound for the sandbox (`bind`, and the implicit
    /// bind of `listen`).
    pub max_binds: Limit,
    /// `max_pending`: calls of the sandbox held for operators at once. The broker's own cap
    /// per sandbox stays the ceiling.
    pub max_pending: Limit,
    /// `max_calls_per_second`: calls the broker decides for the sandbox per second (a token
    /// bucket whose burst is the rate).
    pub max_calls_per_second: Limit,
}

/// Keys of `[limits]`, in canonical order.
pub(crate) const LIMITS_KEYS: &[&str] = &[
    "max_connections",
    "max_binds",
    "max_pending",
    "max_calls_per_second",
];

impl Limits {
    /// Whether no key limits anything (every key `-1`).
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }

    /// The limit of a key of `[limits]` by its name.
    pub(crate) fn slot(&mut self, key: &str) -> Option<&mut Limit> {
        Some(match key {
            "max_connections" => &mut self.max_connections,
            "max_binds" => &mut self.max_binds,
            "max_pending" => &mut self.max_pending,
            "max_calls_per_second" => &mut self.max_calls_per_second,
            _ => return None,
        })
    }

    /// The limit of a key of `[limits]` by its name.
    pub(crate) fn get(&self, key: &str) -> Option<Limit> {
        self.entries()
            .into_iter()
            .find_map(|(k, limit)| (k == key).then_some(limit))
    }

    /// The keys and their limits, in canonical order.
    pub(crate) fn entries(&self) -> [(&'static str, Limit); 4] {
        [
            ("max_connections", self.max_connections),
            ("max_binds", self.max_binds),
            ("max_pending", self.max_pending),
            ("max_calls_per_second", self.max_calls_per_second),
        ]
    }
}

/// `limits.KEY` for each key of [`LIMITS_KEYS`], as a layer records the keys it sets.
const QUALIFIED_KEYS: &[&str] = &[
    "limits.max_connections",
    "limits.max_binds",
    "limits.max_pending",
    "limits.max_calls_per_second",
];

/// Parses the `[limits]` table: the limits, and the keys it gave (as `limits.KEY`), so that
/// a policy extending another overrides its parent's limits key by key.
pub(crate) fn parse(
    src: &Source<'_>,
    value: Spanned<Value>,
) -> Result<(Limits, Vec<&'static str>), PolicyError> {
    let span = value.span();
    let entries = match value.into_inner() {
        Value::Table(entries) => entries,
        other => {
            let kind = PolicyErrorKind::WrongType {
                key: "limits".to_owned(),
                expected: "a table ([limits])",
                found: other.type_name(),
            };
            return Err(src.error(span, kind));
        }
    };
    let mut limits = Limits::default();
    let mut given = Vec::new();
    for (key, value) in entries {
        let name = key.get_ref().as_str();
        if let Some(i) = LIMITS_KEYS.iter().position(|k| *k == name) {
            given.push(QUALIFIED_KEYS[i]);
        }
        let Some(slot) = limits.slot(name) else {
            let kind = PolicyErrorKind::UnknownKey {
                key: name.to_owned(),
                suggestion: crate::error::suggest(name, LIMITS_KEYS),
            };
            return Err(src.error(key.span(), kind));
        };
        let bad = |found: String| {
            src.error(
                value.span(),
                PolicyErrorKind::BadLimit {
                    key: name.to_owned(),
                    found,
                },
            )
        };
        *slot = match value.get_ref() {
            Value::Integer(n) => Limit::from_n3(*n).ok_or_else(|| bad(n.to_string()))?,
            other => return Err(bad(other.type_name().to_owned())),
        };
    }
    Ok((limits, given))
}

#[cfg(test)]
mod tests {
    use crate::{Limit, Policy, PolicyErrorKind};

    fn limits(body: &str) -> Result<crate::Limits, crate::PolicyError> {
        Policy::from_toml(&format!("name = \"l\"\n[limits]\n{body}"), "l.toml").map(|p| *p.limits())
    }

    #[test]
    fn s_n3_default_is_unlimited() {
        let p = Policy::from_toml("name = \"l\"\n", "l.toml").unwrap();
        assert!(p.limits().is_unlimited());
        assert_eq!(p.limits().max_connections, Limit::Unlimited);
        assert!(limits("").unwrap().is_unlimited());
    }

    #[test]
    fn s_n3_zero_none_minus_one_unlimited_n_at_most_n() {
        let l = limits(
            "max_connections = 0\nmax_binds = -1\nmax_pending = 3\nmax_calls_per_second = 100\n",
        )
        .unwrap();
        assert_eq!(l.max_connections, Limit::AtMost(0));
        assert_eq!(l.max_binds, Limit::Unlimited);
        assert_eq!(l.max_pending, Limit::AtMost(3));
        assert_eq!(l.max_calls_per_second, Limit::AtMost(100));
        assert!(l.max_connections.reached(0));
        assert!(!l.max_binds.reached(u64::MAX));
        assert!(!l.max_pending.reached(2));
        assert!(l.max_pending.reached(3));
    }

    #[test]
    fn s_n3_below_minus_one_is_an_error_with_position_and_the_convention() {
        let e = limits("max_binds = 1\nmax_connections = -2\n").unwrap_err();
        assert_eq!((e.line, e.col), (4, 19));
        assert_eq!(
            e.to_string(),
            "l.toml:4:19: `limits.max_connections` must be an integer: 0 for none, -1 for unlimited, or a positive count (found -2)"
        );
    }

    #[test]
    fn s_n3_non_integers_are_errors() {
        for (body, found) in [
            ("max_pending = 1.5\n", "a float"),
            ("max_pending = \"-1\"\n", "a string"),
            ("max_pending = true\n", "a boolean"),
            ("max_pending = [1]\n", "an array"),
        ] {
            let e = limits(body).unwrap_err();
            assert_eq!((e.line, e.col), (3, 15), "{body}");
            match e.kind {
                PolicyErrorKind::BadLimit { key, found: f } => {
                    assert_eq!(key, "max_pending");
                    assert_eq!(f, found);
                }
                k => panic!("{k:?}"),
            }
        }
    }

    #[test]
    fn unknown_limit_key_is_named_with_a_suggestion() {
        let e = limits("max_conections = 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "l.toml:3:1: unknown key `max_conections`; did you mean `max_connections`?"
        );
        let e = Policy::from_toml("name = \"l\"\nlimits = 3\n", "l.toml").unwrap_err();
        assert_eq!((e.line, e.col), (2, 10));
    }

    #[test]
    fn canonical_text_prints_every_limit_and_round_trips() {
        let p = Policy::from_toml(
            "name = \"l\"\n[limits]\nmax_pending = 0\nmax_connections = 7\n",
            "l.toml",
        )
        .unwrap();
        let shown = p.to_toml();
        assert!(shown.contains(
            "\n[limits]\nmax_connections = 7\nmax_binds = -1\nmax_pending = 0\nmax_calls_per_second = -1\n"
        ), "{shown}");
        assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), p);
    }

    #[test]
    fn huge_limits_are_kept() {
        let l = limits("max_binds = 9223372036854775807\n").unwrap();
        assert_eq!(l.max_binds, Limit::AtMost(i64::MAX as u64));
        assert_eq!(l.max_binds.to_n3(), i64::MAX);
    }
}
