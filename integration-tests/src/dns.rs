//! A DNS server for tests: answers A, AAAA, PTR (and CNAME chains) from a table set in code, on
//! loopback only, over UDP and TCP on the same port.
//!
//! The table, the TTLs and the server's behaviour (answer, SERVFAIL, silence, truncation) can
//! change while it runs, and it counts the questions it gets per name, so that a test can tell
//! a cached answer from a fresh one.
//!
//! ```no_run
//! use netjail_integration_tests::dns::{DnsServer, Record};
//!
//! let server = DnsServer::start(vec![
//!     Record::a("api.example.com", "192.0.2.1", 60),
//!     Record::ptr("192.0.2.1", "api.example.com", 60),
//! ]);
//! // ... point the resolver at server.addr() ...
//! assert_eq!(server.queries("api.example.com"), 0);
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record as WireRecord, RecordType};

/// How often the server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A name of the address whose reverse name owns the record.
    Ptr(String),
    /// Another name for the owner.
    Cname(String),
}

/// One record of the server's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner, as written (compared in lower case, without a trailing dot).
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// What it says.
    pub data: Data,
}

impl Record {
    /// `name A ip`. Panics on a bad address (a test's typo).
    pub fn a(name: &str, ip: &str, ttl: u32) -> Record {
        let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        Record {
            name: name.to_string(),
            ttl,
            data: Data::A(ip),
        }
    }

    /// `name AAAA ip`. Panics on a bad address.
    pub fn aaaa(name: &str, ip: &str, ttl: u32) -> Record {
        let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        Record {
            name: name.to_string(),
            ttl,
            data: Data::Aaaa(ip),
        }
    }

    /// The PTR record of `ip` (owned by its `in-addr.arpa` / `ip6.arpa` name) pointing at
    /// `target`. Panics on a bad address.
    pub fn ptr(ip: &str, target: &str, ttl: u32) -> Record {
        let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        Record {
            name: reverse_name(ip),
            ttl,
            data: Data::Ptr(target.to_string()),
        }
    }

    /// `name CNAME target`.
    pub fn cname(name: &str, target: &str, ttl: u32) -> Record {
        Record {
            name: name.to_string(),
            ttl,
            data: Data::Cname(target.to_string()),
        }
    }

    fn record_type(&self) -> RecordType {
        match self.data {
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Ptr(_) => RecordType::PTR,
            Data::Cname(_) => RecordType::CNAME,
        }
    }

    fn to_wire(&self) -> Option<WireRecord> {
        let data = match &self.data {
            Data::A(ip) => RData::A(A(*ip)),
            Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Data::Ptr(target) => RData::PTR(PTR(fqdn(target)?)),
            Data::Cname(target) => RData::CNAME(CNAME(fqdn(target)?)),
        };
        Some(WireRecord::from_rdata(fqdn(&self.name)?, self.ttl, data))
    }
}

/// How the server treats questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Answers from the table: the records, NODATA when the name has none of the type,
    /// NXDOMAIN when it has no record at all.
    #[default]
    Answer,
    /// Answers SERVFAIL to everything.
    ServFail,
    /// Answers nothing (the question is still counted).
    Silent,
    /// Answers over UDP with the truncation bit and no records; over TCP as [`Behaviour::Answer`].
    Truncate,
}

/// The reverse name of `ip` (`d.c.b.a.in-addr.arpa`, nibbles under `ip6.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s + "ip6.arpa"
        }
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", normalize(name))).ok()
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Record>,
    behaviour: Behaviour,
    /// SOA minimum (and TTL) added to negative answers; none when `None`.
    negative_ttl: Option<u32>,
    /// Questions received, by normalized name.
    queries: HashMap<String, usize>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A DNS server on `127.0.0.1` (UDP and TCP, same port, chosen by the kernel), answering from a
/// table. Stopped on drop.
pub struct DnsServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server answering from `records`.
    pub fn start(records: Vec<Record>) -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().expect("local_addr");
        let state = Arc::new(Mutex::new(State {
            records,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            std::thread::spawn({
                let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                move || serve_udp(udp, &state, &stop)
            }),
            std::thread::spawn({
                let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                move || serve_tcp(tcp, &state, &stop)
            }),
        ];
        DnsServer {
            addr,
            state,
            stop,
            threads,
        }
    }

    /// The address to send questions to (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the whole table.
    pub fn set_records(&self, records: Vec<Record>) {
        lock(&self.state).records = records;
    }

    /// Adds a record to the table.
    pub fn add(&self, record: Record) {
        lock(&self.state).records.push(record);
    }

    /// Removes every record owned by `name`.
    pub fn remove(&self, name: &str) {
        let name = normalize(name);
        lock(&self.state)
            .records
            .retain(|r| normalize(&r.name) != name);
    }

    /// Sets the TTL of every record owned by `name`.
    pub fn set_ttl(&self, name: &str, ttl: u32) {
        let name = normalize(name);
        for r in lock(&self.state)
            .records
            .iter_mut()
            .filter(|r| normalize(&r.name) == name)
        {
            r.ttl = ttl;
        }
    }

    /// Changes how questions are treated from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state).behaviour = behaviour;
    }

    /// With `Some(secs)`, negative answers carry an SOA record whose TTL and minimum are `secs`
    /// (how long a resolver may cache them); with `None` (the default), no SOA.
    pub fn set_negative_ttl(&self, secs: Option<u32>) {
        lock(&self.state).negative_ttl = secs;
    }

    /// Questions received for `name` (any type, UDP and TCP), compared in lower case without
    /// a trailing dot. For a PTR question the name is the reverse name ([`reverse_name`]).
    pub fn queries(&self, name: &str) -> usize {
        lock(&self.state)
            .queries
            .get(&normalize(name))
            .copied()
            .unwrap_or(0)
    }

    /// Questions received in all.
    pub fn total_queries(&self) -> usize {
        lock(&self.state).queries.values().sum()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket and a TCP listener on the same loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let addr = udp.local_addr().expect("local_addr");
        if let Ok(tcp) = TcpListener::bind(addr) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

fn serve_udp(sock: UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = respond(state, &buf[..n], false) {
            let _ = sock.send_to(&reply, from);
        }
    }
}

fn serve_tcp(listener: TcpListener, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => serve_connection(stream, state, stop),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn serve_connection(mut stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    while !stop.load(Ordering::Relaxed) {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut msg).is_err() {
            return;
        }
        let Some(reply) = respond(state, &msg, true) else {
            return;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

/// The reply to the question in `bytes`, or `None` for no reply.
fn respond(state: &Mutex<State>, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    let question = query.queries.first()?.clone();
    let qname = normalize(&question.name().to_ascii());
    let state = &mut *lock(state);
    *state.queries.entry(qname.clone()).or_default() += 1;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(question.clone());
    match state.behaviour {
        Behaviour::Silent => return None,
        Behaviour::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        Behaviour::Truncate if !tcp => reply.metadata.truncation = true,
        Behaviour::Truncate | Behaviour::Answer => {
            let qtype = question.query_type();
            let mut current = qname.clone();
            let mut exists = false;
            for _ in 0..8 {
                let owned: Vec<&Record> = state
                    .records
                    .iter()
                    .filter(|r| normalize(&r.name) == current)
                    .collect();
                exists |= !owned.is_empty();
                let wanted: Vec<&Record> = owned
                    .iter()
                    .copied()
                    .filter(|r| r.record_type() == qtype)
                    .collect();
                if !wanted.is_empty() {
                    reply.add_answers(wanted.iter().filter_map(|r| r.to_wire()));
                    break;
                }
                let Some(cname) = owned.iter().find(|r| matches!(r.data, Data::Cname(_))) else {
                    break;
                };
                let Data::Cname(target) = &cname.data else {
                    break;
                };
                reply.add_answers(cname.to_wire());
                current = normalize(target);
            }
            if reply.answers.is_empty() {
                if !exists {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                if let (Some(secs), Some(owner)) = (state.negative_ttl, fqdn(&qname)) {
                    let soa = SOA::new(
                        fqdn("ns.test")?,
                        fqdn("hostmaster.test")?,
                        1,
                        3600,
                        600,
                        86400,
                        secs,
                    );
                    reply.add_authority(WireRecord::from_rdata(owner, secs, RData::SOA(soa)));
                }
            }
        }
    }
    reply.to_vec().ok()
}
