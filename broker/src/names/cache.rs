//! The answer cache: bounded, each entry kept until its time to live runs out. Time is passed
//! in (`now`), so that tests can move it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What a cache entry is about: a name and the record type asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Normalized name (`api.example.com`, `7.2.0.192.in-addr.arpa`).
    pub name: String,
    pub kind: Kind,
}

/// The record types the resolver asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    A,
    Aaaa,
    Ptr,
}

impl Kind {
    /// The kind that holds addresses of `ip`'s family.
    pub(super) fn of(ip: IpAddr) -> Kind {
        if ip.is_ipv4() {
            Kind::A
        } else {
            Kind::Aaaa
        }
    }

    /// `A`, `AAAA` or `PTR`, for messages.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
            Kind::Ptr => "PTR",
        }
    }
}

/// An answer: the addresses (A, AAAA) or names (PTR) found. Empty is a negative answer (the
/// name does not exist, or has no record of that type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Values {
    Addrs(Vec<IpAddr>),
    Names(Vec<String>),
}

impl Values {
    /// True if this answer holds `ip`.
    pub(super) fn has_addr(&self, ip: IpAddr) -> bool {
        matches!(self, Values::Addrs(a) if a.contains(&ip))
    }

    /// The names of a PTR answer.
    pub(super) fn names(&self) -> &[String] {
        match self {
            Values::Names(n) => n,
            Values::Addrs(_) => &[],
        }
    }
}

#[derive(Debug)]
struct Entry {
    values: Values,
    expires: Instant,
    seq: u64,
}

/// At most `max` answers, each until it expires. When full, the entry that expires first goes
/// (an expired one if there is one).
#[derive(Debug)]
pub(crate) struct Cache {
    max: usize,
    entries: HashMap<Key, Entry>,
    /// Every entry by (expiry, insertion number): the first is the next to go.
    by_expiry: BTreeMap<(Instant, u64), Key>,
    seq: u64,
}

impl Cache {
    /// An empty cache of at most `max` entries (0: nothing is kept).
    pub(super) fn new(max: usize) -> Cache {
        Cache {
            max,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            seq: 0,
        }
    }

    /// The answer for `key` if it has not expired at `now`.
    pub(super) fn get(&self, key: &Key, now: Instant) -> Option<&Values> {
        self.entries
            .get(key)
            .filter(|e| now < e.expires)
            .map(|e| &e.values)
    }

    /// Keeps `values` for `ttl` from `now`. A zero TTL keeps nothing and drops what was kept
    /// (the newer answer says "do not cache").
    pub(super) fn insert(&mut self, key: Key, values: Values, ttl: Duration, now: Instant) {
        self.remove(&key);
        self.purge(now);
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        if ttl.is_zero() || self.max == 0 {
            return;
        }
        while self.entries.len() >= self.max {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.seq += 1;
        self.by_expiry.insert((expires, self.seq), key.clone());
        self.entries.insert(
            key,
            Entry {
                values,
                expires,
                seq: self.seq,
            },
        );
    }

    /// Number of entries held, expired or not.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.entries.remove(key) {
            self.by_expiry.remove(&(old.expires, old.seq));
        }
    }

    /// Drops the entries expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            name: name.to_string(),
            kind: Kind::A,
        }
    }

    fn addrs(s: &str) -> Values {
        Values::Addrs(vec![s.parse().unwrap()])
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn entries_live_until_their_ttl() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert(key("a"), addrs("192.0.2.1"), 5 * S, t0);
        assert_eq!(c.get(&key("a"), t0), Some(&addrs("192.0.2.1")));
        assert_eq!(c.get(&key("a"), t0 + 4 * S), Some(&addrs("192.0.2.1")));
        assert_eq!(c.get(&key("a"), t0 + 5 * S), None);
        assert_eq!(c.get(&key("b"), t0), None);
        // Same name, other type: another entry.
        let aaaa = Key {
            name: "a".into(),
            kind: Kind::Aaaa,
        };
        assert_eq!(c.get(&aaaa, t0), None);
        // A newer answer replaces the old one.
        c.insert(key("a"), addrs("192.0.2.2"), 5 * S, t0 + S);
        assert_eq!(c.get(&key("a"), t0 + 5 * S), Some(&addrs("192.0.2.2")));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn ttl_zero_is_not_cached_and_drops_the_old_answer() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert(key("a"), addrs("192.0.2.1"), 60 * S, t0);
        c.insert(key("a"), addrs("192.0.2.2"), Duration::ZERO, t0);
        assert_eq!(c.get(&key("a"), t0), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn negative_answers_are_cached() {
        let t0 = Instant::now();
        let mut c = Cache::new(10);
        c.insert(key("nx"), Values::Addrs(vec![]), 30 * S, t0);
        assert_eq!(c.get(&key("nx"), t0 + 29 * S), Some(&Values::Addrs(vec![])));
    }

    #[test]
    fn bounded_expired_first_then_soonest_to_expire() {
        let t0 = Instant::now();
        let mut c = Cache::new(3);
        c.insert(key("short"), addrs("192.0.2.1"), S, t0);
        c.insert(key("long"), addrs("192.0.2.2"), 100 * S, t0);
        c.insert(key("mid"), addrs("192.0.2.3"), 50 * S, t0);
        // Full: "short" expires first and goes.
        c.insert(key("new"), addrs("192.0.2.4"), 100 * S, t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key("short"), t0), None);
        assert!(c.get(&key("mid"), t0).is_some());
        // Later: "mid" has expired and is purged on the next insertion, leaving room.
        c.insert(key("x"), addrs("192.0.2.5"), 100 * S, t0 + 60 * S);
        assert_eq!(c.len(), 3);
        assert!(c.get(&key("long"), t0 + 60 * S).is_some());
        assert!(c.get(&key("new"), t0 + 60 * S).is_some());
        assert!(c.get(&key("x"), t0 + 60 * S).is_some());
        for i in 0..1000 {
            c.insert(
                key(&format!("n{i}")),
                addrs("192.0.2.6"),
                10 * S,
                t0 + 60 * S,
            );
            assert!(c.len() <= 3);
            assert_eq!(c.entries.len(), c.by_expiry.len());
        }
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let t0 = Instant::now();
        let mut c = Cache::new(0);
        c.insert(key("a"), addrs("192.0.2.1"), 5 * S, t0);
        assert_eq!(c.get(&key("a"), t0), None);
    }
}
