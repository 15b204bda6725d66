//! Host names in endpoints (`tcp://api.example.com:443`, `tcp://*.example.com:443`), and what
//! the evaluator asks the broker about them.
//!
//! The crate does no I/O, so it cannot resolve a name. The evaluator asks a [`Names`] whether
//! the destination address belongs to a name an entry covers; the broker answers from its
//! resolver. Unknown answers fail closed: they match in `[[deny]]` tables only.

use std::fmt;
use std::net::IpAddr;

use crate::error::PolicyErrorKind;

/// The host name of an endpoint, lower-case and without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// `api.example.com`: this name only.
    Exact(String),
    /// `*.example.com`, held as `example.com`: any name strictly under the domain
    /// (`a.example.com`, `a.b.example.com`), never the domain itself.
    Subdomains(String),
}

impl HostPattern {
    /// Whether `name` is a name this pattern covers. Case and one trailing dot do not matter.
    /// A name that is not a valid host name (an empty label, a `_`, a label of 64
    /// characters...) is never covered, whatever its ending: a reverse DNS answer is the
    /// address owner's to write.
    ///
    /// ```
    /// use netjail_policy::HostPattern;
    ///
    /// let any = HostPattern::Subdomains("example.com".into());
    /// assert!(any.covers("a.example.com") && any.covers("A.B.Example.COM."));
    /// assert!(!any.covers("example.com") && !any.covers("badexample.com"));
    /// assert!(HostPattern::Exact("example.com".into()).covers("EXAMPLE.com."));
    /// ```
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        if check_name(name, false).is_err() {
            return false;
        }
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::Subdomains(domain) => name
                .strip_suffix(domain.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
        }
    }
}

/// `api.example.com`, `*.example.com`: as an endpoint writes it.
impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Subdomains(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// The broker's answer about one address and one [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameMatch {
    /// The address is an address of this name, which the pattern covers.
    Yes(String),
    /// The address is not an address of any name the pattern covers.
    No,
    /// Nobody knows: the resolution failed (timeout, server failure, no resolver).
    Unknown,
}

/// What the broker knows of host names.
///
/// [`crate::Policy::evaluate_with`] calls [`Names::lookup`] for each entry with a host name
/// whose protocol and ports cover the request, in evaluation order, until one matches. An
/// entry in a `[[deny]]` table matches on [`NameMatch::Yes`] or [`NameMatch::Unknown`]; one
/// in an `[[allow]]` or `[[ask]]` table on [`NameMatch::Yes`] only.
pub trait Names {
    /// Whether `ip` is an address of a name `pattern` covers, and which name. `ip` is in its
    /// canonical form: an IPv4-mapped IPv6 address arrives as the IPv4 address it is.
    fn lookup(&self, pattern: &HostPattern, ip: IpAddr) -> NameMatch;
}

/// No names known: every lookup answers [`NameMatch::No`], so entries with host names match
/// nothing, in `[[deny]]` tables too. What [`crate::Policy::evaluate`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoNames;

impl Names for NoNames {
    fn lookup(&self, _pattern: &HostPattern, _ip: IpAddr) -> NameMatch {
        NameMatch::No
    }
}

/// The longest host name, without its trailing dot.
const MAX_NAME: usize = 253;
/// The longest label.
const MAX_LABEL: usize = 63;

const STAR_REASON: &str = "`*` must be the whole first label, as in `*.example.com`";

/// Parses the host of an endpoint that is neither an address nor a keyword: `name` or
/// `*.domain`, any case, an optional trailing dot.
pub(crate) fn parse(host: &str) -> Result<HostPattern, PolicyErrorKind> {
    let bad = |reason: &'static str| PolicyErrorKind::BadHostName {
        name: host.to_owned(),
        reason,
    };
    if !host.is_ascii() {
        return Err(bad(
            "write a name that is not ASCII in its ASCII form (xn--...)",
        ));
    }
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    match name {
        "loopback" => {
            return Err(bad(
                "the keyword `loopback` is written in lower case, without a dot",
            ))
        }
        "*" => return Err(bad("`*.` needs a domain after it, as in `*.example.com`")),
        _ => {}
    }
    check_name(name, true).map_err(bad)?;
    Ok(match name.strip_prefix("*.") {
        Some(domain) => HostPattern::Subdomains(domain.to_owned()),
        None => HostPattern::Exact(name.to_owned()),
    })
}

/// Whether `name` (lower-case, no trailing dot) is a valid host name, or with `wildcard` one
/// with `*` as its whole first label; if not, why.
fn check_name(name: &str, wildcard: bool) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a host name cannot be empty");
    }
    if name.len() > MAX_NAME {
        return Err("a host name is at most 253 characters");
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err("a label cannot be empty (a leading dot, or two dots in a row)");
        }
        if *label == "*" && i == 0 && wildcard {
            continue;
        }
        if label.contains('*') {
            return Err(STAR_REASON);
        }
        if label.len() > MAX_LABEL {
            return Err("a label is at most 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("a label takes only letters, digits and `-`");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with `-`");
        }
    }
    if labels.len() == 1 && labels[0] == "*" {
        return Err("`*.` needs a domain after it, as in `*.example.com`");
    }
    let last = labels[labels.len() - 1];
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "the last label cannot be all digits (an address is written in full, as 10.0.0.1)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str) -> HostPattern {
        parse(host).unwrap_or_else(|e| panic!("{host}: {e}"))
    }

    fn reason(host: &str) -> &'static str {
        match parse(host) {
            Err(PolicyErrorKind::BadHostName { name, reason }) => {
                assert_eq!(name, host);
                reason
            }
            other => panic!("{host}: {other:?}"),
        }
    }

    #[test]
    fn names_are_lower_cased_and_lose_a_trailing_dot() {
        assert_eq!(
            ok("API.Example.COM."),
            HostPattern::Exact("api.example.com".into())
        );
        assert_eq!(
            ok("*.Example.com"),
            HostPattern::Subdomains("example.com".into())
        );
        assert_eq!(
            ok("*.example.com."),
            HostPattern::Subdomains("example.com".into())
        );
        assert_eq!(ok("localhost"), HostPattern::Exact("localhost".into()));
        assert_eq!(ok("*.com"), HostPattern::Subdomains("com".into()));
        assert_eq!(ok("a-1.b2"), HostPattern::Exact("a-1.b2".into()));
        assert_eq!(ok("1.2.3.4a"), HostPattern::Exact("1.2.3.4a".into()));
        assert_eq!(ok("xn--bcher-kva.de").to_string(), "xn--bcher-kva.de");
        assert_eq!(ok("*.Example.com.").to_string(), "*.example.com");
    }

    #[test]
    fn lengths_at_their_bounds() {
        let label = "a".repeat(63);
        assert!(parse(&format!("{label}.com")).is_ok());
        assert_eq!(
            reason(&format!("{label}a.com")),
            "a label is at most 63 characters"
        );
        // 4 labels of 61 + 3 dots = 247, plus ".abcde" = 253.
        let long = format!("{0}.{0}.{0}.{0}.abcde", "b".repeat(61));
        assert_eq!(long.len(), 253);
        assert!(parse(&long).is_ok());
        assert!(parse(&format!("{long}.")).is_ok());
        assert_eq!(
            reason(&format!("{long}f")),
            "a host name is at most 253 characters"
        );
        // The wildcard counts: `*.` + a 251-character domain is 253.
        let domain = &long[2..];
        assert!(parse(&format!("*.{domain}")).is_ok());
        assert_eq!(
            reason(&format!("*.{long}")),
            "a host name is at most 253 characters"
        );
    }

    #[test]
    fn invalid_names_say_why() {
        let star = STAR_REASON;
        for (host, why) in [
            ("a_b", "a label takes only letters, digits and `-`"),
            ("a b", "a label takes only letters, digits and `-`"),
            (
                "example.com/8",
                "a label takes only letters, digits and `-`",
            ),
            ("-a.com", "a label cannot start or end with `-`"),
            ("a-.com", "a label cannot start or end with `-`"),
            (
                "a..com",
                "a label cannot be empty (a leading dot, or two dots in a row)",
            ),
            (
                ".a.com",
                "a label cannot be empty (a leading dot, or two dots in a row)",
            ),
            (
                "a.com..",
                "a label cannot be empty (a leading dot, or two dots in a row)",
            ),
            (".", "a host name cannot be empty"),
            ("*.*.example.com", star),
            ("a.*.example.com", star),
            ("a*.example.com", star),
            ("*example.com", star),
            ("**.example.com", star),
            ("example.*", star),
            ("*.", "`*.` needs a domain after it, as in `*.example.com`"),
            (
                "a.123",
                "the last label cannot be all digits (an address is written in full, as 10.0.0.1)",
            ),
            (
                "0x7f.1",
                "the last label cannot be all digits (an address is written in full, as 10.0.0.1)",
            ),
            (
                "Loopback",
                "the keyword `loopback` is written in lower case, without a dot",
            ),
            (
                "loopback.",
                "the keyword `loopback` is written in lower case, without a dot",
            ),
            (
                "bücher.de",
                "write a name that is not ASCII in its ASCII form (xn--...)",
            ),
        ] {
            assert_eq!(reason(host), why, "{host}");
        }
    }

    #[test]
    fn covers_exact_and_strictly_under() {
        let exact = HostPattern::Exact("api.example.com".into());
        assert!(exact.covers("api.example.com"));
        assert!(exact.covers("API.example.com."));
        assert!(!exact.covers("x.api.example.com"));
        assert!(!exact.covers("example.com"));
        let sub = HostPattern::Subdomains("example.com".into());
        for yes in ["a.example.com", "a.b.example.com", "A.EXAMPLE.COM."] {
            assert!(sub.covers(yes), "{yes}");
        }
        for no in [
            "example.com",
            "example.com.",
            ".example.com",
            "badexample.com",
            "a.example.com.evil",
            "a_b.example.com",
            "a..example.com",
            "",
            "*.example.com",
            "a.example.org",
        ] {
            assert!(!sub.covers(no), "{no}");
        }
    }

    #[test]
    fn no_names_knows_nothing() {
        let p = HostPattern::Exact("example.com".into());
        assert_eq!(
            NoNames.lookup(&p, "127.0.0.1".parse().unwrap()),
            NameMatch::No
        );
    }
}
