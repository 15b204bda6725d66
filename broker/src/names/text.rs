//! Host names and addresses in the one form the resolver compares: names in lower case
//! without the root's trailing dot, IPv4-mapped IPv6 addresses as the IPv4 address they are.

use std::fmt::Write as _;
use std::net::IpAddr;

/// Longest host name in text form without the root's dot (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// `name` in lower case, with one trailing dot removed.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// True for a normalized host name: labels of letters, digits, `-` and `_`, none empty, within
/// the lengths of RFC 1035. Escaped bytes (`\.`, `\032`) never pass, so that the text of a name
/// always shows its labels: a name that passes ends with `.example.com` exactly when its last
/// two labels are `example` and `com`.
pub(crate) fn is_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

/// True when `name` lies strictly under `domain` at a label boundary: `a.example.com` and
/// `a.b.example.com` are under `example.com`; `example.com` itself and `badexample.com` are
/// not. Both are normalized host names; an empty domain covers nothing.
pub(crate) fn is_strictly_under(name: &str, domain: &str) -> bool {
    if domain.is_empty() || !is_hostname(name) {
        return false;
    }
    match name.strip_suffix(domain) {
        Some(prefix) => prefix.len() > 1 && prefix.ends_with('.'),
        None => false,
    }
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The name a PTR query asks for: `d.c.b.a.in-addr.arpa` or the 32 nibbles of an IPv6 address,
/// last first, under `ip6.arpa` (RFC 1035 §3.5, RFC 3596 §2.5). `ip` is canonical.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowers_and_drops_one_trailing_dot() {
        assert_eq!(normalize("API.Example.COM."), "api.example.com");
        assert_eq!(normalize("api.example.com"), "api.example.com");
        assert_eq!(normalize("a.."), "a.");
        assert!(!is_hostname(&normalize("a..")));
    }

    #[test]
    fn hostnames() {
        for ok in [
            "a",
            "a.example.com",
            "x-1.y_2.example",
            "xn--bcher-kva.example",
        ] {
            assert!(is_hostname(ok), "{ok}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = vec!["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "A.example",
            "a b",
            "a\\.example.com",
            "a\\032.example.com",
            "*.example.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }

    #[test]
    fn label_boundary() {
        assert!(is_strictly_under("a.example.com", "example.com"));
        assert!(is_strictly_under("a.b.example.com", "example.com"));
        assert!(is_strictly_under("a.com", "com"));
        assert!(!is_strictly_under("example.com", "example.com"));
        assert!(!is_strictly_under("badexample.com", "example.com"));
        assert!(!is_strictly_under("a.badexample.com", "example.com"));
        assert!(!is_strictly_under(".example.com", "example.com"));
        assert!(!is_strictly_under("a..example.com", "example.com"));
        assert!(!is_strictly_under("a.example.com.evil", "example.com"));
        assert!(!is_strictly_under("a.example.com", ""));
        // An escaped dot is not a label boundary.
        assert!(!is_strictly_under("x\\.example.com", "example.com"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
        // IPv4-compatible (deprecated) addresses are not mapped ones.
        let compat: IpAddr = "::192.0.2.7".parse().unwrap();
        assert_eq!(canonical(compat), compat);
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(canonical(v4), v4);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.7".parse().unwrap()),
            "7.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
