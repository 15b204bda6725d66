//! Composition: `extends` chains and `--set` parameters, resolved into one policy.
//!
//! A policy file may name a parent with `extends = "NAME"`: a built-in policy, or a file that
//! a loader callback reads (the crate itself reads none). The parent is resolved first (it may
//! extend another), then the child is laid over it: the top-level keys the child gives replace
//! the parent's, the rule tables are the parent's followed by the child's, and the name is
//! the child's. `--set KEY=VALUE` parameters are laid over the result the same way, in order.

use crate::builtin::{builtin, builtin_names};
use crate::error::{suggest, PolicyError, PolicyErrorKind};
use crate::model::Policy;
use crate::parse::{self, Layer, Pos, Positions};
use crate::value::Source;

/// The longest `extends` chain, counting the policy itself: a policy, its parent, and so on,
/// at most this many.
pub const MAX_EXTENDS_DEPTH: usize = 8;

/// What reads a parent file named by `extends`: called with the name as written and the
/// origin of the file that names it (to resolve a relative path against), it answers the
/// parent's origin (its display name in errors, and its identity when looking for cycles)
/// and its text, or why it cannot.
///
/// It is never called for a built-in name, nor for a name written in a built-in policy.
pub type ParentLoader<'a> = dyn FnMut(&str, &str) -> Result<(String, String), String> + 'a;

/// The loader [`Policy::from_toml`] uses: built-in parents only (the crate resolves those
/// before it asks a loader); every file is refused.
///
/// ```
/// use netjail_policy::{no_files, Policy};
///
/// let e = Policy::from_toml_with("name = \"x\"\nextends = \"base.toml\"\n", "x.toml", &[""; 0], &mut no_files)
///     .unwrap_err();
/// assert_eq!(e.to_string(), "x.toml:2:11: cannot extend `base.toml`: it is no built-in policy \
///     (allow-all, deny-all, disablenetwork, jail, loopback-only, tcp-ports), and this loader reads no files");
/// ```
pub fn no_files(_name: &str, _from: &str) -> Result<(String, String), String> {
    Err("this loader reads no files".to_owned())
}

/// The whole resolution: the file and its parents, then the parameters.
pub(crate) fn resolve<S: AsRef<str>>(
    text: &str,
    origin: &str,
    sets: &[S],
    loader: &mut ParentLoader<'_>,
) -> Result<(Policy, Positions), PolicyError> {
    let mut chain = vec![origin.to_owned()];
    let mut layer = chain_layer(text, origin, &mut chain, loader)?;
    if !layer.name_given {
        return Err(Source { text, origin }.error(0..0, PolicyErrorKind::MissingKey("name")));
    }
    for (i, set) in sets.iter().enumerate() {
        layer = set_layer(set.as_ref(), i)?.over(layer);
    }
    layer.finish()
}

/// One file, resolved with its parents. `chain` holds the origins from the first child to
/// this file.
fn chain_layer(
    text: &str,
    origin: &str,
    chain: &mut Vec<String>,
    loader: &mut ParentLoader<'_>,
) -> Result<Layer, PolicyError> {
    let layer = parse::parse_layer(&Source { text, origin })?;
    let Some(ext) = layer.extends.clone() else {
        return Ok(layer);
    };
    let (parent_origin, parent_text) = if let Some(t) = builtin(&ext.name) {
        (format!("builtin:{}", ext.name), t.to_owned())
    } else {
        let answer = if origin.starts_with("builtin:") {
            Err("a built-in policy extends built-ins only".to_owned())
        } else {
            loader(&ext.name, origin)
        };
        answer.map_err(|reason| {
            ext.value.error(PolicyErrorKind::UnknownParent {
                name: ext.name.clone(),
                reason,
                suggestion: suggest(&ext.name, builtin_names()),
            })
        })?
    };
    let seen = |o: &String| same_origin(o, &parent_origin);
    if chain.iter().any(seen) {
        let mut names = chain.clone();
        names.push(parent_origin);
        return Err(ext
            .key
            .error(PolicyErrorKind::ExtendsCycle(names.join(" -> "))));
    }
    if chain.len() >= MAX_EXTENDS_DEPTH {
        let mut names = chain.clone();
        names.push(parent_origin);
        return Err(ext.key.error(PolicyErrorKind::ExtendsTooDeep {
            max: MAX_EXTENDS_DEPTH,
            chain: names.join(" -> "),
        }));
    }
    chain.push(parent_origin.clone());
    let parent = chain_layer(&parent_text, &parent_origin, chain, loader)?;
    chain.pop();
    Ok(layer.over(parent))
}

/// Two origins name the same file: equal once `.` components and doubled slashes are
/// dropped and `dir/..` pairs removed (a loader that answers canonical paths makes this
/// exact; the depth bound catches what it misses).
fn same_origin(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> String {
        let absolute = s.starts_with('/');
        let mut parts: Vec<&str> = Vec::new();
        for c in s.split('/').filter(|c| !c.is_empty() && *c != ".") {
            match parts.last() {
                Some(last) if c == ".." && *last != ".." => {
                    parts.pop();
                }
                _ => parts.push(c),
            }
        }
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    }
    norm(a) == norm(b)
}

/// The origin of `--set` parameters in errors; the line is the parameter's place among
/// them (1 for the first), the column its character in `KEY=VALUE`.
pub const SET_ORIGIN: &str = "--set";

/// Keys a `--set` may not give: the rule tables, `[bridge]` (a table that replaces its
/// parent's as a whole, so one key of it would drop the rest) and `extends`.
const NOT_SETTABLE: &[&str] = &["allow", "deny", "ask", "bridge", "extends"];

/// One `--set KEY=VALUE` as a layer. VALUE is a TOML value if it reads as exactly one
/// (`false`, `["127.0.0.2", "::1"]`, `"quoted"`), and a string otherwise (`127.0.0.2`,
/// `deny`, `30s`). KEY may be dotted (`sockets.allow`).
fn set_layer(arg: &str, index: usize) -> Result<Layer, PolicyError> {
    let at_line = |mut e: PolicyError| {
        e.line = index + 1;
        e
    };
    let pos = |col: usize| Pos {
        origin: SET_ORIGIN.to_owned(),
        line: index + 1,
        col,
    };
    let Some((key, value)) = arg.split_once('=') else {
        return Err(pos(1).error(PolicyErrorKind::BadSet(arg.to_owned())));
    };
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..");
    if !key_ok {
        return Err(pos(1).error(PolicyErrorKind::BadSet(arg.to_owned())));
    }
    let top = key.split('.').next().unwrap_or(key);
    if NOT_SETTABLE.contains(&top) {
        return Err(pos(1).error(PolicyErrorKind::NotSettable(top.to_owned())));
    }
    let value = if is_one_toml_value(value) {
        value.to_owned()
    } else {
        let mut quoted = String::new();
        crate::emit::quote(&mut quoted, value);
        quoted
    };
    // A dotted key as a table header and a key indented to where it stands in the
    // parameter, so that columns are the parameter's.
    let text = match key.rsplit_once('.') {
        Some((table, last)) => format!("[{table}]\n{:w$}{last}={value}", "", w = table.len() + 1),
        None => format!("{key}={value}"),
    };
    let src = Source {
        text: &text,
        origin: SET_ORIGIN,
    };
    parse::parse_layer(&src).map_err(at_line)
}

/// Whether `value` reads as exactly one TOML value (and nothing after it).
fn is_one_toml_value(value: &str) -> bool {
    match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(t) => t.len() == 1 && t.contains_key("v") && !value.contains('\n'),
        Err(_) => false,
    }
}

impl Policy {
    /// Parses and validates a policy. `origin` names the source in errors (a file path or
    /// `builtin:NAME`). Keys the broker does not enforce yet are errors, never ignored.
    ///
    /// A policy that `extends` a built-in policy is resolved with it; one that extends a file
    /// is refused (this reads no files: see [`Policy::from_toml_with`]).
    pub fn from_toml(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        Self::from_toml_with(source, origin, &[""; 0], &mut no_files)
    }

    /// Parses, resolves and validates a policy that may extend others and take parameters.
    ///
    /// `extends = "NAME"` names a built-in policy, or else a file that `loader` reads (see
    /// [`ParentLoader`](crate::ParentLoader)); parents are resolved first, at most
    /// [`MAX_EXTENDS_DEPTH`](crate::MAX_EXTENDS_DEPTH) policies in a chain, and a cycle is an
    /// error at the `extends` key that closes it. The child's top-level keys replace its
    /// parent's, its rule tables follow its parent's, and the name is the child's. Then each
    /// of `sets` (`KEY=VALUE`, as `--set` takes them) replaces one top-level key, in order.
    /// An error inside a parent names the parent's origin, line and column; one in a `--set`
    /// has origin `--set`, the parameter's place as its line and its column within it.
    ///
    /// ```
    /// use netjail_policy::{Op, Policy, Proto, Request, Target, Verdict};
    ///
    /// let base = "name = \"base\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n";
    /// let mut loader = |name: &str, _from: &str| match name {
    ///     "base.toml" => Ok(("base.toml".to_owned(), base.to_owned())),
    ///     _ => Err(format!("no file `{name}`")),
    /// };
    /// let child = "name = \"web\"\nextends = \"base.toml\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:*\"]\n";
    /// let p = Policy::from_toml_with(child, "web.toml", &["default=allow"], &mut loader)?;
    /// assert_eq!(p.name(), "web");
    /// let connect = |port| Request {
    ///     op: Op::Connect,
    ///     target: Target::Inet { proto: Proto::Tcp, addr: ([127, 0, 0, 1], port).into() },
    /// };
    /// // The parent's deny beats the child's allow.
    /// assert_eq!(p.evaluate(&connect(22)).rule, "deny[0].connect[0]");
    /// assert_eq!(p.evaluate(&connect(80)).verdict, Verdict::Allow);
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn from_toml_with<S: AsRef<str>>(
        source: &str,
        origin: &str,
        sets: &[S],
        loader: &mut crate::ParentLoader<'_>,
    ) -> Result<Policy, PolicyError> {
        resolve(source, origin, sets, loader).map(|(policy, _)| policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_without_dot_components() {
        assert!(same_origin("a.toml", "./a.toml"));
        assert!(same_origin("d//x/./a.toml", "d/x/a.toml"));
        assert!(same_origin("d/sub/../a.toml", "d/a.toml"));
        assert!(same_origin("../a.toml", "x/../../a.toml"));
        assert!(!same_origin("../a.toml", "a.toml"));
        assert!(!same_origin("/a.toml", "a.toml"));
        assert!(!same_origin("a.toml", "b.toml"));
    }

    #[test]
    fn set_values_are_toml_or_strings() {
        assert!(is_one_toml_value("false"));
        assert!(is_one_toml_value("[\"a\", \"b\"]"));
        assert!(is_one_toml_value("\"x\""));
        assert!(!is_one_toml_value("127.0.0.2"));
        assert!(!is_one_toml_value("deny"));
        assert!(!is_one_toml_value("1\nx = 2"));
        assert!(!is_one_toml_value(""));
    }
}
