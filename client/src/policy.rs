//! Finding a policy by built-in name or file path, with its parents and parameters.
//!
//! A policy file may `extends` a built-in policy or another file (a path relative to the
//! file that names it); [`file_loader`] reads those. `--set KEY=VALUE` parameters
//! ([`load_with`]) replace top-level keys after composition. A broker is always sent the
//! resolved policy ([`Policy::to_toml`]), never a file to read.

use std::path::{Component, Path, PathBuf};

use netjail_policy::{builtin, builtin_names, Finding, Policy, PolicyError};
use netjail_protocol::PolicySource;

/// Errors finding or parsing a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// Neither a built-in nor a readable file.
    #[error("no built-in policy and no file named `{spec}` ({reason}); built-ins: {}", builtin_names().join(", "))]
    NotFound {
        /// What was asked for.
        spec: String,
        /// Why the file could not be read.
        reason: String,
    },
    /// The policy (or one of its parents, or a parameter) does not parse.
    #[error("{0}")]
    Invalid(#[from] PolicyError),
}

/// Loads `spec`: a built-in name, or the path of a TOML file.
pub fn load(spec: &str) -> Result<(PolicySource, Policy), LoadError> {
    load_with(spec, &[""; 0])
}

/// Loads `spec` (a built-in name or a file path) with its `extends` parents (built-ins, or
/// files read by [`file_loader`]) and `sets` (`KEY=VALUE`, as `--set` takes them) laid over
/// it. The [`PolicySource`] holds the resolved policy's canonical text, with `spec`'s origin
/// (`builtin:NAME` or the path as given).
///
/// ```
/// let (source, policy) = netjail_client::policy::load_with("deny-all", &["default=ask"])?;
/// assert_eq!(policy.default_action(), netjail_policy::Action::Ask);
/// assert_eq!(source.origin, "builtin:deny-all");
/// # Ok::<(), netjail_client::policy::LoadError>(())
/// ```
pub fn load_with<S: AsRef<str>>(
    spec: &str,
    sets: &[S],
) -> Result<(PolicySource, Policy), LoadError> {
    let (origin, text) = read_spec(spec)?;
    let policy = Policy::from_toml_with(&text, &origin, sets, &mut file_loader)?;
    Ok((source(origin, &policy), policy))
}

/// As [`load_with`], and what `netjail policy check` reports besides errors: entries that
/// never decide because one checked before them covers them.
pub fn check<S: AsRef<str>>(
    spec: &str,
    sets: &[S],
) -> Result<(PolicySource, Policy, Vec<Finding>), LoadError> {
    let (origin, text) = read_spec(spec)?;
    let (policy, found) = Policy::check_toml(&text, &origin, sets, &mut file_loader)?;
    Ok((source(origin, &policy), policy, found))
}

fn source(origin: String, policy: &Policy) -> PolicySource {
    PolicySource {
        origin,
        toml: policy.to_toml(),
    }
}

fn read_spec(spec: &str) -> Result<(String, String), LoadError> {
    if let Some(toml) = builtin(spec) {
        return Ok((format!("builtin:{spec}"), toml.to_owned()));
    }
    let text = std::fs::read_to_string(Path::new(spec)).map_err(|e| LoadError::NotFound {
        spec: spec.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((spec.to_owned(), text))
}

/// The [`netjail_policy::ParentLoader`] of the client: `name` is a path, absolute or
/// relative to the directory of `from` (the file that names it); the answer's origin is
/// that path with `.` components dropped.
pub fn file_loader(name: &str, from: &str) -> Result<(String, String), String> {
    let dir = Path::new(from).parent().unwrap_or(Path::new(""));
    let path = lexical(&dir.join(name));
    let origin = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((origin, text)),
        Err(e) => Err(format!("reading `{origin}`: {e}")),
    }
}

/// `path` without `.` components (`..` kept: a symbolic link makes it mean something).
fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_resolve_against_the_naming_file() {
        let dir = std::env::temp_dir().join(format!("netjail-policy-load-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/base.toml"),
            "name = \"base\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n",
        )
        .unwrap();
        let child = dir.join("child.toml");
        std::fs::write(&child, "name = \"c\"\nextends = \"./sub/base.toml\"\n").unwrap();
        let spec = child.to_str().unwrap();
        let (source, policy) = load_with(spec, &["default=allow"]).unwrap();
        assert_eq!(source.origin, spec);
        assert!(!source.toml.contains("extends"));
        assert_eq!(Policy::from_toml(&source.toml, "x").unwrap(), policy);
        std::fs::write(
            dir.join("sub/base.toml"),
            "name = \"b\"\nextends = \"../child.toml\"\n",
        )
        .unwrap();
        let e = load(spec).unwrap_err().to_string();
        assert!(e.contains("`extends` makes a cycle"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
