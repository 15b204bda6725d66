//! Built-in policies, embedded as TOML text: `allow-all` and `deny-all`, and one profile per
//! seed design (`docs/profiles.md`): `disablenetwork` (D1-D7), `jail` (J1-J8), `tcp-ports`
//! (L1-L4), `loopback-only` (N1-N2).

const BUILTINS: &[(&str, &str)] = &[
    ("allow-all", include_str!("../builtin/allow-all.toml")),
    ("deny-all", include_str!("../builtin/deny-all.toml")),
    (
        "disablenetwork",
        include_str!("../builtin/disablenetwork.toml"),
    ),
    ("jail", include_str!("../builtin/jail.toml")),
    (
        "loopback-only",
        include_str!("../builtin/loopback-only.toml"),
    ),
    ("tcp-ports", include_str!("../builtin/tcp-ports.toml")),
];

const NAMES: &[&str] = &[
    "allow-all",
    "deny-all",
    "disablenetwork",
    "jail",
    "loopback-only",
    "tcp-ports",
];

/// The TOML source of the built-in policy `name`, if there is one. Parse it with
/// [`crate::Policy::from_toml`] and origin `builtin:NAME`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, source)| *source)
}

/// The names of the built-in policies, sorted.
pub fn builtin_names() -> &'static [&'static str] {
    NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_table_agree() {
        let from_table: Vec<_> = BUILTINS.iter().map(|(n, _)| *n).collect();
        assert_eq!(from_table, NAMES);
        assert!(builtin("nope").is_none());
    }
}
