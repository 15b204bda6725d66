//! The broker's host-name oracle (`netjail_broker::names::Resolver`) against a real DNS server
//! on loopback ([`DnsServer`]) and a hosts file of the test's own.
//!
//! Every question goes to 127.0.0.1 only: the resolver is given the test server's address and
//! never reads the machine's resolv.conf.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netjail_broker::names::{Match, Pattern, Resolver, ResolverConfig, LOOKUP_DEADLINE};
use netjail_integration_tests::dns::{reverse_name, Behaviour, DnsServer, Record};
use netjail_integration_tests::TempDir;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn exact(name: &str) -> Pattern {
    Pattern::Exact(name.to_string())
}

fn under(domain: &str) -> Pattern {
    Pattern::Subdomains(domain.to_string())
}

fn yes(name: &str) -> Match {
    Match::Yes(name.to_string())
}

/// A resolver that asks `server` only, with `hosts` as its hosts file.
fn resolver_with(server: &DnsServer, hosts: &str, max_cache_entries: usize) -> (Resolver, TempDir) {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("hosts"), hosts).unwrap();
    let resolver = Resolver::new(ResolverConfig {
        hosts: dir.path().join("hosts"),
        resolv_conf: dir.path().join("resolv.conf"),
        nameservers: vec![server.addr()],
        max_cache_entries,
    })
    .unwrap();
    (resolver, dir)
}

fn resolver(server: &DnsServer, hosts: &str) -> (Resolver, TempDir) {
    resolver_with(server, hosts, 1000)
}

#[test]
fn exact_name_from_the_hosts_file_before_dns() {
    let server = DnsServer::start(vec![Record::a("api.example.com", "192.0.2.99", 300)]);
    let (r, _dir) = resolver(&server, "192.0.2.1 api.example.com\n::1 localhost\n");
    let p = exact("API.Example.com.");
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("::ffff:192.0.2.1")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("192.0.2.99")), Match::No);
    assert_eq!(
        server.queries("api.example.com"),
        0,
        "the hosts file answered"
    );
    assert_eq!(r.cached(&p, ip("192.0.2.1")), Some(yes("api.example.com")));
    // No IPv6 address in the hosts file for it: DNS is asked (and has none).
    assert_eq!(r.lookup(&p, ip("2001:db8::1")), Match::No);
    assert_eq!(server.queries("api.example.com"), 1);
}

#[test]
fn hosts_file_is_read_again_when_it_changes() {
    let server = DnsServer::start(vec![]);
    let (r, dir) = resolver(&server, "192.0.2.1 api.example.com\n");
    let p = exact("api.example.com");
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    let tmp = dir.path().join("hosts.new");
    std::fs::write(&tmp, "192.0.2.2 api.example.com\n").unwrap();
    std::fs::rename(&tmp, dir.path().join("hosts")).unwrap();
    // Entries of the hosts file are kept for 5 s.
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    std::thread::sleep(Duration::from_millis(5200));
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), Match::No);
    assert_eq!(r.lookup(&p, ip("192.0.2.2")), yes("api.example.com"));
    assert_eq!(server.total_queries(), 0);
}

#[test]
fn exact_name_from_dns_both_families() {
    let server = DnsServer::start(vec![
        Record::a("api.example.com", "192.0.2.1", 300),
        Record::a("api.example.com", "192.0.2.2", 300),
        Record::aaaa("api.example.com", "2001:db8::1", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    let p = exact("api.example.com");
    assert_eq!(r.cached(&p, ip("192.0.2.1")), None);
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("192.0.2.2")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("::ffff:192.0.2.2")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("192.0.2.3")), Match::No);
    assert_eq!(r.lookup(&p, ip("2001:db8::1")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("2001:db8::2")), Match::No);
    // One question per family; the rest came from the cache.
    assert_eq!(server.queries("api.example.com"), 2);
    assert_eq!(r.cached(&p, ip("192.0.2.3")), Some(Match::No));
    assert_eq!(
        r.cached(&p, ip("2001:db8::1")),
        Some(yes("api.example.com"))
    );
}

#[test]
fn cname_chain() {
    let server = DnsServer::start(vec![
        Record::cname("www.example.com", "edge.cdn.test", 300),
        Record::a("edge.cdn.test", "192.0.2.5", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(
        r.lookup(&exact("www.example.com"), ip("192.0.2.5")),
        yes("www.example.com")
    );
}

#[test]
fn ttl_is_honoured() {
    let server = DnsServer::start(vec![Record::a("api.example.com", "192.0.2.1", 1)]);
    let (r, _dir) = resolver(&server, "");
    let p = exact("api.example.com");
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    server.set_records(vec![Record::a("api.example.com", "192.0.2.2", 300)]);
    // Within the TTL: the old answer, from the cache.
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
    assert_eq!(r.lookup(&p, ip("192.0.2.2")), Match::No);
    assert_eq!(server.queries("api.example.com"), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(r.cached(&p, ip("192.0.2.1")), None, "expired");
    assert_eq!(r.lookup(&p, ip("192.0.2.1")), Match::No);
    assert_eq!(r.lookup(&p, ip("192.0.2.2")), yes("api.example.com"));
    assert_eq!(server.queries("api.example.com"), 2);
    // The new answer's TTL (300 s) keeps it.
    server.set_ttl("api.example.com", 0);
    assert_eq!(r.lookup(&p, ip("192.0.2.2")), yes("api.example.com"));
    assert_eq!(server.queries("api.example.com"), 2);
}

#[test]
fn ttl_zero_is_not_cached() {
    let server = DnsServer::start(vec![Record::a("api.example.com", "192.0.2.1", 0)]);
    let (r, _dir) = resolver(&server, "");
    let p = exact("api.example.com");
    for n in 1..=3 {
        assert_eq!(r.lookup(&p, ip("192.0.2.1")), yes("api.example.com"));
        assert_eq!(server.queries("api.example.com"), n);
        assert_eq!(r.cached(&p, ip("192.0.2.1")), None);
    }
}

#[test]
fn nxdomain_and_nodata_are_no_and_cached_for_the_soa_minimum() {
    let server = DnsServer::start(vec![Record::aaaa("v6only.example.com", "2001:db8::1", 300)]);
    server.set_negative_ttl(Some(1));
    let (r, _dir) = resolver(&server, "");
    let nx = exact("nx.example.com");
    assert_eq!(r.lookup(&nx, ip("192.0.2.1")), Match::No);
    assert_eq!(r.lookup(&nx, ip("192.0.2.2")), Match::No);
    assert_eq!(server.queries("nx.example.com"), 1);
    assert_eq!(r.cached(&nx, ip("192.0.2.1")), Some(Match::No));
    // NODATA: the name exists, without an A record.
    let v6 = exact("v6only.example.com");
    assert_eq!(r.lookup(&v6, ip("192.0.2.1")), Match::No);
    assert_eq!(r.lookup(&v6, ip("2001:db8::1")), yes("v6only.example.com"));
    // After the SOA minimum the name is asked again, and now exists.
    server.add(Record::a("nx.example.com", "192.0.2.1", 300));
    assert_eq!(r.lookup(&nx, ip("192.0.2.1")), Match::No);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(r.lookup(&nx, ip("192.0.2.1")), yes("nx.example.com"));
    assert_eq!(server.queries("nx.example.com"), 2);
}

#[test]
fn server_down_is_unknown_at_once() {
    let server = DnsServer::start(vec![]);
    let addr = server.addr();
    drop(server);
    let dir = TempDir::new();
    let r = Resolver::new(ResolverConfig {
        hosts: dir.path().join("no-hosts"),
        resolv_conf: dir.path().join("no-resolv.conf"),
        nameservers: vec![addr],
        max_cache_entries: 100,
    })
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        r.lookup(&exact("api.example.com"), ip("192.0.2.1")),
        Match::Unknown
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.1")),
        Match::Unknown
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(r.cached(&exact("api.example.com"), ip("192.0.2.1")), None);
}

#[test]
fn no_nameserver_is_unknown() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("resolv.conf"), "search example.com\n").unwrap();
    let r = Resolver::new(ResolverConfig {
        hosts: dir.path().join("no-hosts"),
        resolv_conf: dir.path().join("resolv.conf"),
        nameservers: vec![],
        max_cache_entries: 100,
    })
    .unwrap();
    let start = Instant::now();
    assert_eq!(
        r.lookup(&exact("api.example.com"), ip("192.0.2.1")),
        Match::Unknown
    );
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn silent_server_is_unknown_within_the_deadline_then_recovers() {
    let server = DnsServer::start(vec![
        Record::a("a.example.com", "192.0.2.1", 300),
        Record::ptr("192.0.2.1", "a.example.com", 300),
    ]);
    server.set_behaviour(Behaviour::Silent);
    let (r, _dir) = resolver(&server, "");
    for p in [exact("a.example.com"), under("example.com")] {
        let start = Instant::now();
        assert_eq!(r.lookup(&p, ip("192.0.2.1")), Match::Unknown, "{p:?}");
        let took = start.elapsed();
        assert!(
            took >= LOOKUP_DEADLINE - Duration::from_millis(100),
            "{took:?}"
        );
        assert!(
            took < LOOKUP_DEADLINE + Duration::from_millis(500),
            "{took:?}"
        );
    }
    assert!(server.queries("a.example.com") >= 2, "retried");
    // Failures are not cached: once the server answers, so does the resolver.
    server.set_behaviour(Behaviour::Answer);
    assert_eq!(
        r.lookup(&exact("a.example.com"), ip("192.0.2.1")),
        yes("a.example.com")
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.1")),
        yes("a.example.com")
    );
}

#[test]
fn servfail_is_unknown() {
    let server = DnsServer::start(vec![
        Record::a("a.example.com", "192.0.2.1", 300),
        Record::ptr("192.0.2.1", "a.example.com", 300),
    ]);
    server.set_behaviour(Behaviour::ServFail);
    let (r, _dir) = resolver(&server, "");
    let start = Instant::now();
    assert_eq!(
        r.lookup(&exact("a.example.com"), ip("192.0.2.1")),
        Match::Unknown
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.1")),
        Match::Unknown
    );
    assert!(start.elapsed() < LOOKUP_DEADLINE * 2 + Duration::from_millis(500));
}

#[test]
fn truncated_answers_are_asked_again_over_tcp() {
    let server = DnsServer::start(vec![Record::a("a.example.com", "192.0.2.1", 300)]);
    server.set_behaviour(Behaviour::Truncate);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(
        r.lookup(&exact("a.example.com"), ip("192.0.2.1")),
        yes("a.example.com")
    );
    assert_eq!(
        server.queries("a.example.com"),
        2,
        "once over UDP, once over TCP"
    );
}

#[test]
fn fcrdns_confirmed() {
    let server = DnsServer::start(vec![
        Record::ptr("192.0.2.10", "host1.api.example.com", 300),
        Record::a("host1.api.example.com", "192.0.2.10", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    let p = under("example.com");
    assert_eq!(r.cached(&p, ip("192.0.2.10")), None);
    assert_eq!(r.lookup(&p, ip("192.0.2.10")), yes("host1.api.example.com"));
    assert_eq!(
        r.lookup(&under("api.example.com"), ip("192.0.2.10")),
        yes("host1.api.example.com")
    );
    assert_eq!(
        r.lookup(&p, ip("::ffff:192.0.2.10")),
        yes("host1.api.example.com")
    );
    assert_eq!(
        r.cached(&p, ip("192.0.2.10")),
        Some(yes("host1.api.example.com"))
    );
    assert_eq!(server.queries(&reverse_name(ip("192.0.2.10"))), 1);
    assert_eq!(server.queries("host1.api.example.com"), 1);
    // Under another domain: the PTR does not point there.
    assert_eq!(r.lookup(&under("example.org"), ip("192.0.2.10")), Match::No);
    // An address without a PTR: no.
    assert_eq!(r.lookup(&p, ip("192.0.2.11")), Match::No);
}

#[test]
fn fcrdns_spoofed_ptr_is_no() {
    // The holder of 192.0.2.66 writes its PTR as a.example.com, but a.example.com's own
    // addresses do not include it.
    let server = DnsServer::start(vec![
        Record::ptr("192.0.2.66", "a.example.com", 300),
        Record::a("a.example.com", "192.0.2.10", 300),
        Record::ptr("192.0.2.67", "gone.example.com", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(r.lookup(&under("example.com"), ip("192.0.2.66")), Match::No);
    assert_eq!(
        r.cached(&under("example.com"), ip("192.0.2.66")),
        Some(Match::No)
    );
    // A PTR to a name that does not exist at all.
    assert_eq!(r.lookup(&under("example.com"), ip("192.0.2.67")), Match::No);
}

#[test]
fn fcrdns_forward_failure_is_unknown() {
    // The PTR answers, the forward question cannot be answered: it could have been yes.
    let server = DnsServer::start(vec![Record::ptr("192.0.2.10", "a.example.com", 300)]);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(r.lookup(&under("example.com"), ip("192.0.2.10")), Match::No);
    let server2 = DnsServer::start(vec![Record::ptr("192.0.2.10", "a.example.com", 300)]);
    let (r2, _dir2) = resolver(&server2, "");
    // Warm the PTR, then make the server fail.
    assert_eq!(
        r2.lookup(&under("example.org"), ip("192.0.2.10")),
        Match::No
    );
    server2.set_behaviour(Behaviour::ServFail);
    assert_eq!(
        r2.lookup(&under("example.com"), ip("192.0.2.10")),
        Match::Unknown
    );
}

#[test]
fn fcrdns_label_boundary() {
    let server = DnsServer::start(vec![
        Record::ptr("192.0.2.30", "badexample.com", 300),
        Record::ptr("192.0.2.30", "example.com", 300),
        Record::a("badexample.com", "192.0.2.30", 300),
        Record::a("example.com", "192.0.2.30", 300),
        Record::ptr("192.0.2.31", "example.com", 300),
        Record::ptr("192.0.2.31", "deep.a.b.example.com", 300),
        Record::a("example.com", "192.0.2.31", 300),
        Record::a("deep.a.b.example.com", "192.0.2.31", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(r.lookup(&under("example.com"), ip("192.0.2.30")), Match::No);
    // Names that are not under the domain are never resolved forward.
    assert_eq!(server.queries("badexample.com"), 0);
    assert_eq!(server.queries("example.com"), 0);
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.31")),
        yes("deep.a.b.example.com")
    );
    assert_eq!(
        r.lookup(&under("b.example.com"), ip("192.0.2.31")),
        yes("deep.a.b.example.com")
    );
    assert_eq!(
        r.lookup(&under("deep.a.b.example.com"), ip("192.0.2.31")),
        Match::No
    );
}

#[test]
fn fcrdns_from_the_hosts_file() {
    let server = DnsServer::start(vec![Record::a("dns.example.com", "192.0.2.50", 300)]);
    let (r, _dir) = resolver(
        &server,
        "192.0.2.40 example.com www.example.com\n192.0.2.50 dns.example.com\n",
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.40")),
        yes("www.example.com")
    );
    // Listed in the hosts file for .50, resolved forward from the hosts file too.
    assert_eq!(
        r.lookup(&under("example.com"), ip("192.0.2.50")),
        yes("dns.example.com")
    );
    assert_eq!(server.total_queries(), 0, "the hosts file was enough");
}

#[test]
fn ipv6_and_mapped_ipv4() {
    let server = DnsServer::start(vec![
        Record::aaaa("v6.example.com", "2001:db8::10", 300),
        Record::ptr("2001:db8::10", "v6.example.com", 300),
        Record::a("v4.example.com", "192.0.2.20", 300),
        Record::ptr("192.0.2.20", "v4.example.com", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    assert_eq!(
        r.lookup(&exact("v6.example.com"), ip("2001:db8::10")),
        yes("v6.example.com")
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("2001:db8::10")),
        yes("v6.example.com")
    );
    assert_eq!(
        r.lookup(&under("example.com"), ip("2001:db8::11")),
        Match::No
    );
    assert_eq!(server.queries(&reverse_name(ip("2001:db8::10"))), 1);
    // A mapped address is the IPv4 address: A records, in-addr.arpa.
    let mapped = ip("::ffff:192.0.2.20");
    assert_eq!(
        r.lookup(&exact("v4.example.com"), mapped),
        yes("v4.example.com")
    );
    assert_eq!(
        r.lookup(&under("example.com"), mapped),
        yes("v4.example.com")
    );
    assert_eq!(server.queries(&reverse_name(ip("192.0.2.20"))), 1);
    // Not an IPv6 address of the name.
    assert_eq!(
        r.lookup(&exact("v6.example.com"), ip("::ffff:192.0.2.20")),
        Match::No
    );
}

#[test]
fn concurrent_lookups_from_eight_threads() {
    let mut records = vec![Record::a("shared.example.com", "192.0.2.1", 300)];
    for i in 0..8 {
        records.push(Record::a(
            &format!("t{i}.example.com"),
            &format!("192.0.2.{}", 100 + i),
            300,
        ));
        records.push(Record::ptr(
            &format!("192.0.2.{}", 100 + i),
            &format!("t{i}.example.com"),
            300,
        ));
    }
    let server = DnsServer::start(records);
    let (r, _dir) = resolver(&server, "");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let r = r.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..20 {
                    assert_eq!(
                        r.lookup(&exact("shared.example.com"), ip("192.0.2.1")),
                        yes("shared.example.com")
                    );
                    let mine = ip(&format!("192.0.2.{}", 100 + i));
                    let name = format!("t{i}.example.com");
                    assert_eq!(
                        r.lookup(&under("example.com"), mine),
                        Match::Yes(name.clone())
                    );
                    assert_eq!(r.lookup(&exact(&name), ip("192.0.2.1")), Match::No);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Eight threads asked at once, and the server saw one question: the others waited for it.
    assert_eq!(server.queries("shared.example.com"), 1);
    for i in 0..8 {
        assert_eq!(server.queries(&format!("t{i}.example.com")), 1);
    }
}

#[test]
fn lookups_on_the_blocking_pool_of_a_multi_thread_runtime() {
    let server = DnsServer::start(vec![
        Record::a("a.example.com", "192.0.2.1", 300),
        Record::ptr("192.0.2.1", "a.example.com", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        r.prefetch(&[exact("a.example.com"), under("example.com")]);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let r = r.clone();
                tokio::task::spawn_blocking(move || {
                    (
                        r.lookup(&exact("a.example.com"), ip("192.0.2.1")),
                        r.lookup(&under("example.com"), ip("192.0.2.1")),
                    )
                })
            })
            .collect();
        for t in tasks {
            let (a, b) = t.await.unwrap();
            assert_eq!(a, yes("a.example.com"));
            assert_eq!(b, yes("a.example.com"));
        }
    });
    // The prefetch runs in the background and may still be asking its AAAA question: wait
    // for it (bounded), then check that nothing asked more than once per type.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.queries("a.example.com") < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        server.queries("a.example.com"),
        2,
        "one A and one AAAA question"
    );
}

#[test]
fn prefetch_fills_the_cache_in_the_background() {
    let server = DnsServer::start(vec![
        Record::a("a.example.com", "192.0.2.1", 300),
        Record::aaaa("a.example.com", "2001:db8::1", 300),
        Record::a("b.example.com", "192.0.2.2", 300),
    ]);
    let (r, _dir) = resolver(&server, "");
    r.prefetch(&[
        exact("a.example.com"),
        exact("B.example.com."),
        under("example.com"),
    ]);
    let until = Instant::now() + Duration::from_secs(5);
    while server.queries("b.example.com") < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        r.cached(&exact("a.example.com"), ip("192.0.2.1")),
        Some(yes("a.example.com"))
    );
    assert_eq!(
        r.cached(&exact("a.example.com"), ip("2001:db8::1")),
        Some(yes("a.example.com"))
    );
    assert_eq!(
        r.cached(&exact("b.example.com"), ip("192.0.2.2")),
        Some(yes("b.example.com"))
    );
    assert_eq!(
        r.cached(&exact("b.example.com"), ip("2001:db8::2")),
        Some(Match::No)
    );
    // Already cached: a second prefetch asks nothing.
    let before = server.total_queries();
    r.prefetch(&[exact("a.example.com")]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.total_queries(), before);
}

#[test]
fn the_cache_is_bounded() {
    let records = (0..50)
        .map(|i| Record::a(&format!("n{i}.example.com"), "192.0.2.1", 300))
        .collect();
    let server = DnsServer::start(records);
    let (r, _dir) = resolver_with(&server, "", 8);
    for i in 0..50 {
        let p = exact(&format!("n{i}.example.com"));
        assert_eq!(
            r.lookup(&p, ip("192.0.2.1")),
            Match::Yes(format!("n{i}.example.com"))
        );
        assert!(r.cache_len() <= 8);
    }
    // The first names were evicted: asked again.
    assert_eq!(
        r.lookup(&exact("n0.example.com"), ip("192.0.2.1")),
        yes("n0.example.com")
    );
    assert_eq!(server.queries("n0.example.com"), 2);
    assert_eq!(server.queries("n49.example.com"), 1);
}
