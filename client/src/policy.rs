//! Finding a policy by built-in name or file path.

use std::path::Path;

use netjail_policy::{builtin, builtin_names, Policy, PolicyError};
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
    /// The policy does not parse.
    #[error("{0}")]
    Invalid(#[from] PolicyError),
}

/// Loads `spec`: a built-in name, or the path of a TOML file.
pub fn load(spec: &str) -> Result<(PolicySource, Policy), LoadError> {
    let source = if let Some(toml) = builtin(spec) {
        PolicySource {
            origin: format!("builtin:{spec}"),
            toml: toml.to_string(),
        }
    } else {
        let toml = std::fs::read_to_string(Path::new(spec)).map_err(|e| LoadError::NotFound {
            spec: spec.to_string(),
            reason: e.to_string(),
        })?;
        PolicySource {
            origin: spec.to_string(),
            toml,
        }
    };
    let policy = Policy::from_toml(&source.toml, &source.origin)?;
    Ok((source, policy))
}
