//! The hosts file (`hosts(5)`): `ADDRESS NAME [ALIAS...]` per line, `#` to the end of a line
//! is a comment.

use std::collections::HashMap;
use std::net::IpAddr;

use super::text::{canonical, is_hostname, normalize};

/// Names listed for one address beyond this many are ignored (bounded memory per address).
const MAX_NAMES_PER_ADDRESS: usize = 64;

/// The hosts file, indexed both ways. Names are normalized; addresses canonical.
#[derive(Debug, Default)]
pub(crate) struct HostsTable {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl HostsTable {
    /// Parses the text of a hosts file. Lines that do not start with an address, and names
    /// that are not host names, are skipped.
    pub(super) fn parse(text: &str) -> HostsTable {
        let mut table = HostsTable::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(first) = fields.next() else {
                continue;
            };
            // glibc accepts a zone on link-local addresses (`fe80::1%eth0`); it does not
            // change which address it is.
            let addr = first.split('%').next().unwrap_or(first);
            let Ok(ip) = addr.parse::<IpAddr>() else {
                tracing::debug!(
                    line = n + 1,
                    "hosts: no address at the start of the line; skipped"
                );
                continue;
            };
            let ip = canonical(ip);
            for name in fields {
                let name = normalize(name);
                if !is_hostname(&name) {
                    tracing::debug!(line = n + 1, "hosts: not a host name; skipped");
                    continue;
                }
                let addrs = table.by_name.entry(name.clone()).or_default();
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
                let names = table.by_addr.entry(ip).or_default();
                if !names.contains(&name) && names.len() < MAX_NAMES_PER_ADDRESS {
                    names.push(name);
                }
            }
        }
        table
    }

    /// The addresses listed for `name` (normalized) that are IPv4 (`v4`) or IPv6 (`!v4`).
    pub(super) fn addrs(&self, name: &str, v4: bool) -> Vec<IpAddr> {
        self.by_name
            .get(name)
            .map(|all| all.iter().copied().filter(|a| a.is_ipv4() == v4).collect())
            .unwrap_or_default()
    }

    /// Every name listed for `ip` (canonical), in the order of the file.
    pub(super) fn names(&self, ip: IpAddr) -> &[String] {
        self.by_addr.get(&ip).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# comment line
127.0.0.1\tlocalhost
::1     localhost ip6-localhost   # trailing comment
192.0.2.10 API.Example.com. api   # upper case and trailing dot
192.0.2.11 api.example.com
not-an-address some.name
fe80::1%eth0 link.local
::ffff:192.0.2.12 mapped.example.com
192.0.2.13 bad\\.name good.example.com
2001:db8::5 v6.example.com
192.0.2.10 other.example.com
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forward() {
        let t = HostsTable::parse(HOSTS);
        assert_eq!(
            t.addrs("api.example.com", true),
            [ip("192.0.2.10"), ip("192.0.2.11")]
        );
        assert!(t.addrs("api.example.com", false).is_empty());
        assert_eq!(t.addrs("localhost", true), [ip("127.0.0.1")]);
        assert_eq!(t.addrs("localhost", false), [ip("::1")]);
        assert_eq!(t.addrs("ip6-localhost", false), [ip("::1")]);
        assert_eq!(t.addrs("api", true), [ip("192.0.2.10")]);
        assert_eq!(t.addrs("link.local", false), [ip("fe80::1")]);
        assert_eq!(t.addrs("mapped.example.com", true), [ip("192.0.2.12")]);
        assert_eq!(t.addrs("v6.example.com", false), [ip("2001:db8::5")]);
        assert!(t.addrs("some.name", true).is_empty());
        assert!(t.addrs("bad\\.name", true).is_empty());
        assert_eq!(t.addrs("good.example.com", true), [ip("192.0.2.13")]);
        assert!(t.addrs("trailing", true).is_empty());
    }

    #[test]
    fn reverse() {
        let t = HostsTable::parse(HOSTS);
        assert_eq!(
            t.names(ip("192.0.2.10")),
            ["api.example.com", "api", "other.example.com"]
        );
        assert_eq!(t.names(ip("::1")), ["localhost", "ip6-localhost"]);
        assert_eq!(t.names(ip("192.0.2.12")), ["mapped.example.com"]);
        assert!(t.names(ip("192.0.2.99")).is_empty());
    }

    #[test]
    fn empty_and_garbage() {
        assert!(HostsTable::parse("").names(ip("127.0.0.1")).is_empty());
        let t = HostsTable::parse("\u{0}\u{1}\n#\n   \n1.2.3.4\n1.2.3.4.5 x\n");
        assert!(t.by_name.is_empty());
    }

    #[test]
    fn names_per_address_are_bounded() {
        let names: Vec<String> = (0..100).map(|i| format!("n{i}.example")).collect();
        let t = HostsTable::parse(&format!("192.0.2.1 {}\n", names.join(" ")));
        assert_eq!(t.names(ip("192.0.2.1")).len(), MAX_NAMES_PER_ADDRESS);
        // Forward entries are all there: each is one name's own.
        assert_eq!(t.addrs("n99.example", true), [ip("192.0.2.1")]);
    }
}
