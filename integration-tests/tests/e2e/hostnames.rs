//! Host names in policies: the broker resolves the names a policy lists (hosts file, DNS with
//! TTLs, forward-confirmed reverse DNS for `*.domain`) and decides by the address the program
//! actually connects to. The names here live in a hosts file the test writes and in a DNS
//! server the test runs on loopback; every address is on 127.0.0.0/8.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use netjail_integration_tests::dns::{DnsServer, Record};
use netjail_integration_tests::{confined_with_broker, policy_file, unconfined, Broker, TempDir};
use serde_json::Value;

use crate::probe;

/// Listeners on the same port of several loopback addresses (the first picks the port). The
/// kernel completes handshakes into the backlog, so connects succeed without an accept.
struct SamePort {
    listeners: Vec<TcpListener>,
    port: u16,
}

impl SamePort {
    fn on(addrs: &[&str]) -> SamePort {
        let first = TcpListener::bind(format!("{}:0", addrs[0])).expect("bind the first");
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for a in &addrs[1..] {
            listeners.push(TcpListener::bind(format!("{a}:{port}")).expect("bind the same port"));
        }
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        SamePort { listeners, port }
    }

    /// Connections that reached `addr` so far (taken out of the backlog).
    fn accepted(&self, addr: &str) -> usize {
        let want: SocketAddr = format!("{addr}:{}", self.port).parse().unwrap();
        let l = self
            .listeners
            .iter()
            .find(|l| l.local_addr().unwrap() == want)
            .expect("a listener on that address");
        std::iter::from_fn(|| l.accept().ok()).count()
    }
}

fn connect_args(addr: &str, port: u16) -> Vec<String> {
    vec![
        probe().to_string(),
        "connect".into(),
        "tcp".into(),
        addr.into(),
        port.to_string(),
    ]
}

fn confined_connect(broker: &Broker, policy: &str, addr: &str, port: u16) -> Value {
    let args = connect_args(addr, port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = confined_with_broker(broker, policy, &args);
    out.json().clone()
}

fn unconfined_connect(addr: &str, port: u16) -> Value {
    let args = connect_args(addr, port);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    unconfined(&args).json().clone()
}

/// A broker that knows names only from `hosts` (no DNS server answers: port 1 refuses).
fn broker_with_hosts(hosts: &str) -> (Broker, TempDir) {
    let dir = TempDir::new();
    let file = dir.path().join("hosts");
    std::fs::write(&file, hosts).unwrap();
    let broker = Broker::start_with(&[], move |_| {
        vec![
            "--hosts".into(),
            file.into_os_string(),
            "--nameserver".into(),
            "127.0.0.1:1".into(),
        ]
    });
    (broker, dir)
}

fn decisions(broker: &Broker, n: usize) -> Vec<Value> {
    broker.wait_audit(n, Duration::from_secs(10), |e| e["message"] == "decision")
}

fn ok(v: &Value) -> bool {
    v["ok"] == true
}

/// The listed name's address is allowed and another name's address on the same port is not.
/// Unconfined, both connect.
#[test]
fn s_m2_host_name_rule_allows_the_listed_name_and_denies_another() {
    let ports = SamePort::on(&["127.0.0.2", "127.0.0.3"]);
    let port = ports.port;
    assert!(ok(&unconfined_connect("127.0.0.2", port)));
    assert!(ok(&unconfined_connect("127.0.0.3", port)));
    assert_eq!(ports.accepted("127.0.0.2"), 1);
    assert_eq!(ports.accepted("127.0.0.3"), 1);

    let (broker, _dir) =
        broker_with_hosts("127.0.0.2 allowed.netjail.test\n127.0.0.3 other.netjail.test\n");
    let policy = policy_file(&format!(
        "name = \"by-name\"\n[[allow]]\nconnect = [\"tcp://allowed.netjail.test:{port}\"]\n"
    ));
    let allowed = confined_connect(&broker, policy.as_str(), "127.0.0.2", port);
    assert!(ok(&allowed), "{allowed}");
    let denied = confined_connect(&broker, policy.as_str(), "127.0.0.3", port);
    assert_eq!(denied["err"], "EPERM", "{denied}");
    assert_eq!(ports.accepted("127.0.0.2"), 1);
    assert_eq!(ports.accepted("127.0.0.3"), 0);

    let events = decisions(&broker, 2);
    let allow = events
        .iter()
        .find(|e| e["decision"] == "allow")
        .expect("an allow");
    assert_eq!(allow["host"], "allowed.netjail.test", "{allow}");
    assert_eq!(allow["rule"], "allow[0].connect[0]");
    let deny = events
        .iter()
        .find(|e| e["decision"] == "deny")
        .expect("a deny");
    assert_eq!(deny["host"], "", "{deny}");
    assert_eq!(deny["rule"], "default");
}

/// `*.domain` matches an address whose reverse name is under the domain and resolves back to
/// it; a reverse name that does not resolve back (anyone can write the PTR of their own
/// address) does not match. DNS answers come from a server on loopback.
#[test]
fn s_m2_wildcard_names_are_forward_confirmed() {
    let ports = SamePort::on(&["127.0.0.4", "127.0.0.5"]);
    let port = ports.port;
    let dns = DnsServer::start(vec![
        Record::ptr("127.0.0.4", "a.svc.netjail.test", 60),
        Record::a("a.svc.netjail.test", "127.0.0.4", 60),
        // A PTR that claims a name under the domain, whose name points elsewhere.
        Record::ptr("127.0.0.5", "b.svc.netjail.test", 60),
        Record::a("b.svc.netjail.test", "127.0.0.9", 60),
    ]);
    let dir = TempDir::new();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let server = dns.addr().to_string();
    let broker = Broker::start_with(&[], move |_| {
        vec![
            "--hosts".into(),
            hosts.into_os_string(),
            "--nameserver".into(),
            server.into(),
        ]
    });
    let policy = policy_file(&format!(
        "name = \"wild\"\n[[allow]]\nconnect = [\"tcp://*.svc.netjail.test:{port}\"]\n"
    ));
    let confirmed = confined_connect(&broker, policy.as_str(), "127.0.0.4", port);
    assert!(ok(&confirmed), "{confirmed}");
    let spoofed = confined_connect(&broker, policy.as_str(), "127.0.0.5", port);
    assert_eq!(spoofed["err"], "EPERM", "{spoofed}");
    assert_eq!(ports.accepted("127.0.0.4"), 1);
    assert_eq!(ports.accepted("127.0.0.5"), 0);
    // Without netjail the spoofed address is reachable: the refusal is the broker's.
    assert!(ok(&unconfined_connect("127.0.0.5", port)));
    assert!(
        dns.queries("b.svc.netjail.test") >= 1,
        "the PTR's name was checked forward"
    );
    let events = decisions(&broker, 2);
    assert!(
        events.iter().any(|e| e["host"] == "a.svc.netjail.test"),
        "{events:?}"
    );
}

/// A name's addresses are kept for their TTL: when the record changes, the old address stays
/// allowed until the TTL runs out, and then only the new one is.
#[test]
fn s_m2_host_names_follow_dns_ttls() {
    let ports = SamePort::on(&["127.0.0.6", "127.0.0.7"]);
    let port = ports.port;
    let dns = DnsServer::start(vec![Record::a("api.netjail.test", "127.0.0.6", 2)]);
    let server = dns.addr().to_string();
    let dir = TempDir::new();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    let broker = Broker::start_with(&[], move |_| {
        vec![
            "--hosts".into(),
            hosts.into_os_string(),
            "--nameserver".into(),
            server.into(),
        ]
    });
    let policy = policy_file(&format!(
        "name = \"ttl\"\n[[allow]]\nconnect = [\"tcp://api.netjail.test:{port}\"]\n"
    ));
    assert!(ok(&confined_connect(
        &broker,
        policy.as_str(),
        "127.0.0.6",
        port
    )));
    dns.set_records(vec![Record::a("api.netjail.test", "127.0.0.7", 2)]);
    // Within the TTL the cached answer still holds.
    let asked = dns.queries("api.netjail.test");
    assert!(ok(&confined_connect(
        &broker,
        policy.as_str(),
        "127.0.0.6",
        port
    )));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eperm_json(&confined_connect(
        &broker,
        policy.as_str(),
        "127.0.0.6",
        port,
    ));
    assert!(ok(&confined_connect(
        &broker,
        policy.as_str(),
        "127.0.0.7",
        port
    )));
    assert!(
        dns.queries("api.netjail.test") > asked,
        "asked again after the TTL"
    );
    assert_eq!(ports.accepted("127.0.0.6"), 2);
    assert_eq!(ports.accepted("127.0.0.7"), 1);
}

/// A name in a `[[deny]]` rule that cannot be resolved denies (fail closed), while the same
/// name in an `[[allow]]` rule allows nothing.
#[test]
fn s_m4_unresolvable_names_fail_closed() {
    let ports = SamePort::on(&["127.0.0.8"]);
    let port = ports.port;
    // No hosts entry, and no DNS server answering.
    let (broker, _dir) = broker_with_hosts("");
    let deny = policy_file(&format!(
        "name = \"deny-by-name\"\ndefault = \"allow\"\n[[deny]]\nconnect = [\"tcp://blocked.netjail.test:{port}\"]\n"
    ));
    assert_eperm_json(&confined_connect(&broker, deny.as_str(), "127.0.0.8", port));
    let allow = policy_file(&format!(
        "name = \"allow-by-name\"\n[[allow]]\nconnect = [\"tcp://wanted.netjail.test:{port}\"]\n"
    ));
    assert_eperm_json(&confined_connect(
        &broker,
        allow.as_str(),
        "127.0.0.8",
        port,
    ));
    assert_eq!(ports.accepted("127.0.0.8"), 0);
    let events = decisions(&broker, 2);
    assert!(
        events
            .iter()
            .any(|e| e["rule"] == "deny[0].connect[0]" && e["host"] == "blocked.netjail.test"),
        "{events:?}"
    );
}

fn assert_eperm_json(v: &Value) {
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["err"], "EPERM", "{v}");
}
