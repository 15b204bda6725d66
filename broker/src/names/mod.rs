//! The broker's host-name oracle: is an address one of a name's that a policy's host pattern
//! covers, and which name?
//!
//! Policies name hosts (`tcp://api.example.com:443`, `tcp://*.example.com:443`); the policy
//! crate is pure and cannot resolve, so the broker answers for it with a [`Resolver`]:
//!
//! - [`Pattern::Exact`]`(name)`: the name's A (for an IPv4 address) or AAAA (for IPv6)
//!   records, from the hosts file first, then DNS. The address matches when it is among them.
//! - [`Pattern::Subdomains`]`(domain)`, for `*.domain`: forward-confirmed reverse DNS. The names
//!   of the address come from the hosts file (every name listed for it) and a PTR query; each
//!   one strictly under `domain` (at a label boundary) is resolved forward, and the address
//!   matches when it is among that name's addresses. A PTR record alone proves nothing: whoever
//!   holds an address writes its PTR.
//!
//! Names compare in lower case without the root's trailing dot; an IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`) is the IPv4 address it maps, as everywhere in netjail. Answers are
//! kept for their time to live (the least TTL of the records used, capped at [`MAX_TTL`]; 0
//! keeps nothing); negative answers (NXDOMAIN, no record of the type) for their SOA's minimum,
//! or [`DEFAULT_NEGATIVE_TTL`]; entries from the hosts file for [`HOSTS_TTL`]. The cache holds at
//! most [`ResolverConfig::max_cache_entries`] answers. A failure (no server, timeout,
//! SERVFAIL) is never cached, and makes the answer [`Match::Unknown`]: the broker decides what
//! an unknown answer means, and never reads it as a yes.
//!
//! [`Resolver::lookup`] is synchronous and bounded by [`LOOKUP_DEADLINE`]: the broker calls it
//! from its blocking pool, many threads at once. Lookups of the same name and type at the same
//! time share one query. [`Resolver::cached`] answers from the cache alone, without I/O, for the
//! receiver thread; [`Resolver::prefetch`] fills the cache in the background.
//!
//! # Why `hickory-proto` and our own sockets
//!
//! `hickory-proto` (the message layer of Hickory DNS, the most used DNS implementation in Rust)
//! builds and parses the messages: a well-tested parser for what hostile servers send. The
//! transport is a few dozen lines of `std` UDP (TCP when the answer is truncated) in `dns.rs`:
//! blocking sockets with a deadline fit a synchronous call from the blocking pool with no
//! runtime (`hickory-resolver` is async, and driving it with `block_on` from inside the
//! broker's runtime panics), questions go only to the configured servers, and nothing reads
//! `/etc/hosts` behind our back: the hosts file is ours to read (`hosts.rs`), so that its
//! entries follow the same rules and cache as DNS answers.
//!
//! # Limits
//!
//! Names are taken as fully qualified: no `search` list or `ndots` from resolv.conf, no
//! `nsswitch.conf` (the order is always hosts file, then DNS). No DNSSEC validation: the answer
//! is as trustworthy as the path to the configured servers. No EDNS0: answers over 512 bytes
//! come over TCP.
//!
//! ```no_run
//! use netjail_broker::names::{Match, Pattern, Resolver, ResolverConfig};
//!
//! let resolver = Resolver::new(ResolverConfig::default())?;
//! let pattern = Pattern::from_host("*.example.com");
//! match resolver.lookup(&pattern, "192.0.2.1".parse().unwrap()) {
//!     Match::Yes(name) => println!("192.0.2.1 is {name}"),
//!     Match::No => println!("not a host under example.com"),
//!     Match::Unknown => println!("could not tell"),
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

mod cache;
mod dns;
mod files;
mod hosts;
mod text;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cache::{Cache, Key, Kind, Values};
use files::Watched;
use hosts::HostsTable;
use text::{canonical, is_hostname, is_strictly_under, normalize, reverse_name};

/// The longest a [`Resolver::lookup`] takes; past it the answer is [`Match::Unknown`].
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(2);
/// How long an entry of the hosts file is kept in the cache.
pub const HOSTS_TTL: Duration = Duration::from_secs(5);
/// The longest any answer is kept, whatever its TTL says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long a negative answer without an SOA record is kept.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Default of [`ResolverConfig::max_cache_entries`].
pub const DEFAULT_MAX_CACHE_ENTRIES: usize = 4096;

/// Names of one address that are checked forward, at most (hosts file and PTR together).
const MAX_CANDIDATES: usize = 16;
/// Prefetches running at once, at most; more are skipped (the lookups will resolve).
const MAX_PREFETCHES: usize = 4;

/// A host pattern of a policy endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this name (`api.example.com`).
    Exact(String),
    /// Any name strictly under this domain: `Subdomains("example.com")` is `*.example.com`,
    /// which covers `a.example.com` and `a.b.example.com` but not `example.com`.
    Subdomains(String),
}

impl Pattern {
    /// The pattern a policy writes as `host`: `*.example.com` is
    /// `Subdomains("example.com")`, anything else `Exact`.
    pub fn from_host(host: &str) -> Pattern {
        match host.strip_prefix("*.") {
            Some(domain) => Pattern::Subdomains(domain.to_string()),
            None => Pattern::Exact(host.to_string()),
        }
    }
}

/// The answer of the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// The address belongs to this name (normalized: lower case, no trailing dot), which the
    /// pattern covers.
    Yes(String),
    /// The names could be resolved, and the address is not one of theirs.
    No,
    /// Resolution failed (no server, timeout, SERVFAIL, an unreadable hosts file), so the
    /// answer could have been yes.
    Unknown,
}

/// Where a [`Resolver`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The hosts file, read again whenever it changes. Default `/etc/hosts`.
    pub hosts: PathBuf,
    /// Where the nameservers are found (`nameserver` lines, port 53), read again whenever it
    /// changes. Default `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
    /// When not empty, these servers are asked instead of resolv.conf's (and resolv.conf is
    /// not read).
    pub nameservers: Vec<SocketAddr>,
    /// The most answers kept at once; 0 keeps none.
    pub max_cache_entries: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            hosts: PathBuf::from("/etc/hosts"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            nameservers: Vec::new(),
            max_cache_entries: DEFAULT_MAX_CACHE_ENTRIES,
        }
    }
}

/// Why a source could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    /// No nameserver is configured.
    #[error("no nameserver configured")]
    NoServer,
    /// No answer before the deadline.
    #[error("no answer before the deadline")]
    Timeout,
    /// Nothing listens at the server's address.
    #[error("connection refused")]
    Refused,
    /// The server answered with an error code (SERVFAIL, REFUSED, ...).
    #[error("server answered {0}")]
    Rcode(String),
    /// A socket error.
    #[error("socket error: {0}")]
    Io(io::ErrorKind),
    /// The exchange made no sense.
    #[error("malformed exchange: {0}")]
    Malformed(&'static str),
    /// The name cannot be put in a question.
    #[error("not a host name")]
    BadName,
    /// A configuration file exists but cannot be read.
    #[error("file cannot be read")]
    Unreadable,
}

/// Where the nameservers come from.
#[derive(Debug)]
enum Servers {
    Fixed(Arc<Vec<SocketAddr>>),
    ResolvConf(Watched<Vec<SocketAddr>>),
}

impl Servers {
    fn current(&self) -> Result<Arc<Vec<SocketAddr>>, Failure> {
        match self {
            Servers::Fixed(list) => Ok(Arc::clone(list)),
            Servers::ResolvConf(file) => file.current(),
        }
    }
}

/// One DNS question in progress, which lookups of the same name and type wait for.
#[derive(Debug, Default)]
struct Flight {
    result: Mutex<Option<Result<Values, Failure>>>,
    done: Condvar,
}

impl Flight {
    /// The result of the question, or `Timeout` if it does not come before `deadline`.
    fn wait(&self, deadline: Instant) -> Result<Values, Failure> {
        let mut result = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = result.as_ref() {
                return r.clone();
            }
            let left = match deadline.checked_duration_since(Instant::now()) {
                Some(d) if !d.is_zero() => d,
                _ => return Err(Failure::Timeout),
            };
            result = self
                .done
                .wait_timeout(result, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Ends a flight however its leader leaves: the result (a failure if it has none) goes to the
/// waiters, and the flight leaves the table, so that a later lookup asks again.
struct Landing<'a> {
    inner: &'a Inner,
    key: &'a Key,
    flight: &'a Flight,
    result: Option<Result<Values, Failure>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let result = self
            .result
            .take()
            .unwrap_or(Err(Failure::Malformed("resolution ended early")));
        *self.flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        self.flight.done.notify_all();
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.key);
    }
}

/// Cached only, or resolve what is missing before the deadline.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Cached,
    Resolve(Instant),
}

/// The state of one forward-confirmed reverse lookup.
#[derive(Debug, Default)]
struct Fcrdns {
    /// Candidate names already checked.
    tried: Vec<String>,
    /// A source or a forward lookup failed: without a match, the answer is unknown.
    failed: bool,
    /// (Cached mode) something needed is not in the cache.
    incomplete: bool,
}

#[derive(Debug)]
struct Inner {
    hosts: Watched<HostsTable>,
    servers: Servers,
    cache: Mutex<Cache>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    prefetching: AtomicUsize,
}

/// The host-name oracle: resolves names (hosts file, then DNS), caches answers by TTL, and
/// answers whether an address belongs to a name a [`Pattern`] covers. Cheap to clone: clones
/// share the cache.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Resolver {
    /// Where it looks and how much it holds, not the cache itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers = match &self.inner.servers {
            Servers::Fixed(list) => format!("{list:?}"),
            Servers::ResolvConf(file) => file.path().display().to_string(),
        };
        f.debug_struct("Resolver")
            .field("hosts", &self.inner.hosts.path())
            .field("servers", &servers)
            .field("cache_len", &self.cache_len())
            .finish()
    }
}

impl Resolver {
    /// A resolver with an empty cache. Reads the hosts file and (without
    /// [`ResolverConfig::nameservers`]) resolv.conf once; fails when one exists but cannot be
    /// read. A missing file counts as empty (no entries, no servers) until it appears.
    pub fn new(config: ResolverConfig) -> io::Result<Resolver> {
        let hosts = Watched::new(config.hosts, HostsTable::parse)?;
        let servers = if config.nameservers.is_empty() {
            let file = Watched::new(config.resolv_conf, dns::parse_resolv_conf)?;
            match file.current() {
                Ok(list) if list.is_empty() => tracing::warn!(
                    path = %file.path().display(),
                    "no nameserver configured; names resolve from the hosts file only"
                ),
                Ok(list) => tracing::debug!(servers = ?list, "nameservers from resolv.conf"),
                Err(_) => {}
            }
            Servers::ResolvConf(file)
        } else {
            Servers::Fixed(Arc::new(config.nameservers))
        };
        Ok(Resolver {
            inner: Arc::new(Inner {
                hosts,
                servers,
                cache: Mutex::new(Cache::new(config.max_cache_entries)),
                flights: Mutex::new(HashMap::new()),
                prefetching: AtomicUsize::new(0),
            }),
        })
    }

    /// Whether `ip` is an address of a name that `pattern` covers, and which name. Resolves
    /// what the cache does not hold; blocks for at most [`LOOKUP_DEADLINE`], then answers
    /// [`Match::Unknown`]. Meant for a blocking thread (`spawn_blocking`); needs no runtime.
    pub fn lookup(&self, pattern: &Pattern, ip: IpAddr) -> Match {
        let start = Instant::now();
        let deadline = start.checked_add(LOOKUP_DEADLINE).unwrap_or(start);
        let answer = self
            .inner
            .decide(pattern, ip, Mode::Resolve(deadline))
            .unwrap_or(Match::Unknown);
        tracing::debug!(
            ?pattern,
            %ip,
            answer = ?answer,
            took_us = start.elapsed().as_micros() as u64,
            "name lookup"
        );
        answer
    }

    /// [`Resolver::lookup`]'s answer if the cache alone can give it (no I/O at all), else
    /// `None`. [`Match::Unknown`] never comes from here: failures are not cached.
    pub fn cached(&self, pattern: &Pattern, ip: IpAddr) -> Option<Match> {
        self.inner.decide(pattern, ip, Mode::Cached)
    }

    /// Resolves the exact names among `patterns` (A and AAAA) in the background, so that later
    /// lookups find them cached. Returns at once: the work runs on the current tokio runtime's
    /// blocking pool, or on a thread of its own outside a runtime. Patterns of subdomains are
    /// skipped (which address to look up is not known yet), and so is everything when
    /// four prefetches are already running.
    pub fn prefetch(&self, patterns: &[Pattern]) {
        let mut names: Vec<String> = patterns
            .iter()
            .filter_map(|p| match p {
                Pattern::Exact(name) => Some(normalize(name)),
                Pattern::Subdomains(_) => None,
            })
            .filter(|name| is_hostname(name))
            .collect();
        names.sort();
        names.dedup();
        names.retain(|name| !self.inner.fresh(name));
        if names.is_empty() {
            return;
        }
        let Some(slot) = PrefetchSlot::take(&self.inner) else {
            tracing::debug!(names = names.len(), "too many prefetches running; skipped");
            return;
        };
        tracing::debug!(names = names.len(), "prefetching names");
        let inner = Arc::clone(&self.inner);
        let work = move || {
            let _slot = slot;
            for name in &names {
                for kind in [Kind::A, Kind::Aaaa] {
                    let start = Instant::now();
                    let deadline = start.checked_add(LOOKUP_DEADLINE).unwrap_or(start);
                    let _ = inner.forward(name, kind, Mode::Resolve(deadline));
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(work)),
            Err(_) => {
                if let Err(e) = std::thread::Builder::new()
                    .name("netjail-prefetch".into())
                    .spawn(work)
                {
                    tracing::warn!(error = %e, "cannot start a prefetch thread");
                }
            }
        }
    }

    /// Number of answers in the cache now (expired ones included until they are purged).
    pub fn cache_len(&self) -> usize {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// One of the [`MAX_PREFETCHES`] places; given back on drop.
struct PrefetchSlot(Arc<Inner>);

impl PrefetchSlot {
    fn take(inner: &Arc<Inner>) -> Option<PrefetchSlot> {
        let before = inner.prefetching.fetch_add(1, Ordering::AcqRel);
        let slot = PrefetchSlot(Arc::clone(inner));
        (before < MAX_PREFETCHES).then_some(slot)
    }
}

impl Drop for PrefetchSlot {
    fn drop(&mut self) {
        self.0.prefetching.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inner {
    /// The answer for `pattern` and `ip`; `None` only in cached mode, when the cache does not
    /// hold enough.
    fn decide(&self, pattern: &Pattern, ip: IpAddr, mode: Mode) -> Option<Match> {
        let ip = canonical(ip);
        match pattern {
            Pattern::Exact(name) => {
                let name = normalize(name);
                if !is_hostname(&name) {
                    tracing::debug!(%name, "pattern is not a host name; it covers nothing");
                    return Some(Match::No);
                }
                Some(match self.forward(&name, Kind::of(ip), mode)? {
                    Ok(addrs) if addrs.has_addr(ip) => Match::Yes(name),
                    Ok(_) => Match::No,
                    Err(_) => Match::Unknown,
                })
            }
            Pattern::Subdomains(domain) => {
                let domain = normalize(domain);
                if !is_hostname(&domain) {
                    tracing::debug!(%domain, "pattern is not a host name; it covers nothing");
                    return Some(Match::No);
                }
                self.subdomains(&domain, ip, mode)
            }
        }
    }

    /// Forward-confirmed reverse lookup of `ip` (canonical) under `domain`.
    fn subdomains(&self, domain: &str, ip: IpAddr, mode: Mode) -> Option<Match> {
        let mut state = Fcrdns::default();
        match self.hosts_names(ip, mode) {
            Some(Ok(names)) => {
                if let Some(name) = self.confirm(&names, domain, ip, mode, &mut state) {
                    return Some(Match::Yes(name));
                }
            }
            Some(Err(_)) => state.failed = true,
            None => state.incomplete = true,
        }
        match self.ptr(ip, mode) {
            Some(Ok(names)) => {
                if let Some(name) = self.confirm(names.names(), domain, ip, mode, &mut state) {
                    return Some(Match::Yes(name));
                }
            }
            Some(Err(_)) => state.failed = true,
            None => state.incomplete = true,
        }
        if state.incomplete {
            return None;
        }
        Some(if state.failed {
            Match::Unknown
        } else {
            Match::No
        })
    }

    /// The first of `names` under `domain` whose own addresses include `ip`.
    fn confirm(
        &self,
        names: &[String],
        domain: &str,
        ip: IpAddr,
        mode: Mode,
        state: &mut Fcrdns,
    ) -> Option<String> {
        for name in names {
            if !is_strictly_under(name, domain) || state.tried.contains(name) {
                continue;
            }
            if state.tried.len() >= MAX_CANDIDATES {
                tracing::debug!(%ip, "too many names for one address; the rest are not checked");
                break;
            }
            state.tried.push(name.clone());
            match self.forward(name, Kind::of(ip), mode) {
                Some(Ok(addrs)) if addrs.has_addr(ip) => return Some(name.clone()),
                Some(Ok(_)) => {
                    tracing::debug!(%ip, %name, "name of the address does not resolve to it")
                }
                Some(Err(_)) => state.failed = true,
                None => state.incomplete = true,
            }
        }
        None
    }

    /// The addresses of `name` (normalized host name) of `kind` (A or AAAA): cache, hosts file,
    /// DNS. `None` only in cached mode, when the cache does not hold them.
    fn forward(&self, name: &str, kind: Kind, mode: Mode) -> Option<Result<Values, Failure>> {
        let key = Key {
            name: name.to_string(),
            kind,
        };
        if let Some(values) = self.cache_get(&key) {
            return Some(Ok(values));
        }
        let Mode::Resolve(deadline) = mode else {
            return None;
        };
        if let Ok(table) = self.hosts.current() {
            let addrs = table.addrs(name, kind == Kind::A);
            if !addrs.is_empty() {
                tracing::debug!(%name, kind = kind.as_str(), "found in the hosts file");
                let values = Values::Addrs(addrs);
                self.cache_put(key, values.clone(), HOSTS_TTL);
                return Some(Ok(values));
            }
        }
        Some(self.dns(key, deadline))
    }

    /// The names the hosts file lists for `ip`; in cached mode only if the file was looked at
    /// less than [`HOSTS_TTL`] ago.
    fn hosts_names(&self, ip: IpAddr, mode: Mode) -> Option<Result<Vec<String>, Failure>> {
        let table = match mode {
            Mode::Cached => self.hosts.recent(HOSTS_TTL)?,
            Mode::Resolve(_) => self.hosts.current(),
        };
        Some(table.map(|t| t.names(ip).to_vec()))
    }

    /// The PTR names of `ip`: cache, then DNS.
    fn ptr(&self, ip: IpAddr, mode: Mode) -> Option<Result<Values, Failure>> {
        let key = Key {
            name: reverse_name(ip),
            kind: Kind::Ptr,
        };
        if let Some(values) = self.cache_get(&key) {
            return Some(Ok(values));
        }
        match mode {
            Mode::Cached => None,
            Mode::Resolve(deadline) => Some(self.dns(key, deadline)),
        }
    }

    /// True when both address types of `name` are cached.
    fn fresh(&self, name: &str) -> bool {
        [Kind::A, Kind::Aaaa].into_iter().all(|kind| {
            self.cache_get(&Key {
                name: name.to_string(),
                kind,
            })
            .is_some()
        })
    }

    /// Asks DNS, or waits for the same question already asked by another lookup.
    fn dns(&self, key: Key, deadline: Instant) -> Result<Values, Failure> {
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(flight) => (Arc::clone(flight), false),
                None => {
                    // A flight that landed between our look at the cache and now has cached
                    // its answer before leaving the table.
                    if let Some(values) = self.cache_get(&key) {
                        return Ok(values);
                    }
                    let flight = Arc::new(Flight::default());
                    flights.insert(key.clone(), Arc::clone(&flight));
                    (flight, true)
                }
            }
        };
        if !leader {
            return flight.wait(deadline);
        }
        let mut landing = Landing {
            inner: self,
            key: &key,
            flight: &flight,
            result: None,
        };
        let result = self.ask(&key, deadline);
        landing.result = Some(result.clone());
        result
    }

    fn ask(&self, key: &Key, deadline: Instant) -> Result<Values, Failure> {
        let servers = self.servers.current()?;
        match dns::resolve(&servers, &key.name, key.kind, deadline) {
            Ok(answer) => {
                tracing::debug!(
                    name = %key.name,
                    kind = key.kind.as_str(),
                    answer = ?answer.values,
                    ttl_s = answer.ttl.as_secs(),
                    "resolved"
                );
                self.cache_put(key.clone(), answer.values.clone(), answer.ttl);
                Ok(answer.values)
            }
            Err(e) => {
                tracing::debug!(
                    name = %key.name,
                    kind = key.kind.as_str(),
                    error = %e,
                    "resolution failed"
                );
                Err(e)
            }
        }
    }

    fn cache_get(&self, key: &Key) -> Option<Values> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key, Instant::now())
            .cloned()
    }

    fn cache_put(&self, key: Key, values: Values, ttl: Duration) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key,
            values,
            ttl,
            Instant::now(),
        );
    }
}

/// The oracle the policy's evaluator asks ([`netjail_policy::Policy::evaluate_with`]).
impl netjail_policy::Names for Resolver {
    fn lookup(
        &self,
        pattern: &netjail_policy::HostPattern,
        ip: IpAddr,
    ) -> netjail_policy::NameMatch {
        match Resolver::lookup(self, &Pattern::from(pattern), ip) {
            Match::Yes(name) => netjail_policy::NameMatch::Yes(name),
            Match::No => netjail_policy::NameMatch::No,
            Match::Unknown => netjail_policy::NameMatch::Unknown,
        }
    }
}

impl From<&netjail_policy::HostPattern> for Pattern {
    fn from(p: &netjail_policy::HostPattern) -> Pattern {
        match p {
            netjail_policy::HostPattern::Exact(n) => Pattern::Exact(n.clone()),
            netjail_policy::HostPattern::Subdomains(d) => Pattern::Subdomains(d.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_from_hosts() {
        assert_eq!(
            Pattern::from_host("*.example.com"),
            Pattern::Subdomains("example.com".into())
        );
        assert_eq!(
            Pattern::from_host("api.example.com"),
            Pattern::Exact("api.example.com".into())
        );
    }

    fn resolver(hosts: &str) -> (Resolver, PathBuf) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netjail-names-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, hosts).unwrap();
        // A server that refuses at once: DNS answers nothing.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = closed.local_addr().unwrap();
        drop(closed);
        let r = Resolver::new(ResolverConfig {
            hosts: path,
            resolv_conf: dir.join("none"),
            nameservers: vec![server],
            max_cache_entries: 100,
        })
        .unwrap();
        (r, dir)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_from_hosts_with_mapped_addresses_and_case() {
        let (r, dir) = resolver("192.0.2.1 API.example.com\n2001:db8::1 api.example.com\n");
        let p = Pattern::Exact("api.EXAMPLE.com.".into());
        assert_eq!(r.cached(&p, ip("192.0.2.1")), None);
        let yes = Match::Yes("api.example.com".into());
        assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes);
        assert_eq!(r.lookup(&p, ip("::ffff:192.0.2.1")), yes);
        assert_eq!(r.lookup(&p, ip("2001:db8::1")), yes);
        assert_eq!(r.lookup(&p, ip("192.0.2.2")), Match::No);
        assert_eq!(r.cached(&p, ip("192.0.2.1")), Some(yes.clone()));
        assert_eq!(r.cached(&p, ip("::ffff:192.0.2.1")), Some(yes));
        assert_eq!(r.cached(&p, ip("192.0.2.2")), Some(Match::No));
        // Not in the hosts file, and no DNS: unknown, and nothing cached.
        let other = Pattern::Exact("other.example.com".into());
        assert_eq!(r.lookup(&other, ip("192.0.2.1")), Match::Unknown);
        assert_eq!(r.cached(&other, ip("192.0.2.1")), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn subdomains_from_hosts() {
        let (r, dir) = resolver(
            "192.0.2.1 example.com badexample.com a.b.example.com\n192.0.2.2 example.com\n",
        );
        let p = Pattern::Subdomains("Example.COM".into());
        // a.b.example.com is listed for 192.0.2.1 and resolves to it (from the hosts file).
        // The PTR query fails, but a confirmed name is enough.
        assert_eq!(
            r.lookup(&p, ip("192.0.2.1")),
            Match::Yes("a.b.example.com".into())
        );
        assert_eq!(
            r.cached(&p, ip("::ffff:192.0.2.1")),
            Some(Match::Yes("a.b.example.com".into()))
        );
        // Only example.com itself: not under it; the PTR source failed, so unknown.
        assert_eq!(r.lookup(&p, ip("192.0.2.2")), Match::Unknown);
        assert_eq!(r.cached(&p, ip("192.0.2.2")), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn patterns_that_are_not_names_cover_nothing() {
        let (r, dir) = resolver("192.0.2.1 a.example.com\n");
        for p in [
            Pattern::Exact("".into()),
            Pattern::Exact("a b".into()),
            Pattern::Subdomains("".into()),
            Pattern::Subdomains("*.example.com".into()),
        ] {
            assert_eq!(r.lookup(&p, ip("192.0.2.1")), Match::No, "{p:?}");
            assert_eq!(r.cached(&p, ip("192.0.2.1")), Some(Match::No), "{p:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn prefetch_outside_a_runtime() {
        let (r, dir) = resolver("192.0.2.1 a.example.com\n2001:db8::1 a.example.com\n");
        let p = Pattern::Exact("a.example.com".into());
        r.prefetch(&[p.clone(), Pattern::Subdomains("example.com".into())]);
        let until = Instant::now() + Duration::from_secs(5);
        while r.cached(&p, ip("2001:db8::1")).is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            r.cached(&p, ip("192.0.2.1")),
            Some(Match::Yes("a.example.com".into()))
        );
        assert_eq!(
            r.cached(&p, ip("2001:db8::1")),
            Some(Match::Yes("a.example.com".into()))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn prefetch_inside_a_runtime_returns_at_once() {
        let (r, dir) = resolver("192.0.2.1 a.example.com\n");
        let p = Pattern::Exact("a.example.com".into());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let r2 = r.clone();
        let p2 = p.clone();
        rt.block_on(async move {
            r2.prefetch(std::slice::from_ref(&p2));
            let answer = tokio::task::spawn_blocking(move || r2.lookup(&p2, ip("192.0.2.1")))
                .await
                .unwrap();
            assert_eq!(answer, Match::Yes("a.example.com".into()));
        });
        assert!(r.cached(&p, ip("192.0.2.1")).is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
