//! DNS over UDP (TCP when the answer is truncated), synchronous, with a deadline: the
//! questions of the resolver and how their answers are read.
//!
//! Messages are built and parsed by `hickory-proto`; the sockets are `std`'s, so a lookup never
//! needs an async runtime (it runs on the broker's blocking pool). Each try uses a fresh UDP
//! socket `connect`ed to the server: the kernel's random source port and hickory's random id
//! must both be guessed by an off-path spoofer, replies from other addresses never reach us,
//! and an ICMP "port unreachable" (no server there) ends the try at once.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::cache::{Kind, Values};
use super::text::{is_hostname, normalize};
use super::{Failure, DEFAULT_NEGATIVE_TTL, MAX_TTL};

/// Longest wait for one server's answer to one try before the next try.
const TRY_TIMEOUT: Duration = Duration::from_millis(700);
/// Rounds over the list of servers, within the deadline.
const MAX_ROUNDS: usize = 3;
/// UDP answers are at most 512 bytes without EDNS (which we do not send); room for more.
const UDP_BUFFER: usize = 4096;
/// CNAME records followed inside one answer.
const MAX_CHAIN: usize = 8;
/// Further questions asked when a server gives a CNAME but not what it points to.
const MAX_FOLLOW: usize = 4;
/// Addresses kept from one answer (bounded memory per cache entry).
const MAX_ADDRS: usize = 128;
/// Names kept from one PTR answer.
const MAX_NAMES: usize = 16;
/// Servers taken from resolv.conf, as glibc does (`MAXNS`).
const MAX_NAMESERVERS: usize = 3;

/// A DNS answer and how long it may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub values: Values,
    pub ttl: Duration,
}

/// The `nameserver` lines of a resolv.conf (`resolv.conf(5)`), port 53, the first three. An
/// IPv6 address with a zone is taken only with a numeric zone (`fe80::1%2`).
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = fields.next() else {
            continue;
        };
        let parsed = match addr.split_once('%') {
            None => addr
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53)),
            Some((ip, zone)) => match (ip.parse::<Ipv6Addr>(), zone.parse::<u32>()) {
                (Ok(ip), Ok(zone)) => {
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(ip, 53, 0, zone)))
                }
                _ => None,
            },
        };
        match parsed {
            Some(s) if servers.len() < MAX_NAMESERVERS => servers.push(s),
            Some(_) => tracing::debug!(%addr, "resolv.conf: more than 3 nameservers; ignored"),
            None => tracing::warn!(%addr, "resolv.conf: nameserver not understood; ignored"),
        }
    }
    servers
}

/// Asks `servers` for the `kind` records of `name` (normalized host name), before `deadline`.
pub(crate) fn resolve(
    servers: &[SocketAddr],
    name: &str,
    kind: Kind,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let mut qname = Name::from_ascii(format!("{name}.")).map_err(|_| Failure::BadName)?;
    let mut ttl_cap = MAX_TTL.as_secs() as u32;
    for _ in 0..MAX_FOLLOW {
        let msg = ask(servers, &qname, record_type(kind), deadline)?;
        match interpret(&msg, &qname, kind) {
            Step::Done(mut answer) => {
                answer.ttl = answer.ttl.min(Duration::from_secs(ttl_cap.into()));
                return Ok(answer);
            }
            Step::Follow(next, ttl) => {
                tracing::debug!(from = %qname, to = %next, "cname not followed by the server; asking");
                qname = next;
                ttl_cap = ttl_cap.min(ttl);
            }
        }
    }
    Err(Failure::Malformed("cname chain too long"))
}

fn record_type(kind: Kind) -> RecordType {
    match kind {
        Kind::A => RecordType::A,
        Kind::Aaaa => RecordType::AAAA,
        Kind::Ptr => RecordType::PTR,
    }
}

/// One question to the servers in turn, round after round, until one answers with data or a
/// negative answer, or the deadline passes.
fn ask(
    servers: &[SocketAddr],
    qname: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Message, Failure> {
    if servers.is_empty() {
        return Err(Failure::NoServer);
    }
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(qname.clone(), rtype));
    let bytes = query
        .to_vec()
        .map_err(|_| Failure::Malformed("cannot encode the query"))?;
    let id = query.metadata.id;
    let mut last = Failure::Timeout;
    for _ in 0..MAX_ROUNDS {
        let mut alive = false;
        for &server in servers {
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            let try_deadline = now
                .checked_add(TRY_TIMEOUT)
                .map_or(deadline, |t| deadline.min(t));
            let answer = match exchange_udp(server, &bytes, id, qname, rtype, try_deadline) {
                Ok(msg) if msg.metadata.truncation => {
                    tracing::debug!(%server, "truncated answer; asking over tcp");
                    exchange_tcp(server, &bytes, id, qname, rtype, deadline)
                }
                other => other,
            };
            match answer {
                Ok(msg) => match msg.metadata.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => return Ok(msg),
                    code => {
                        tracing::debug!(%server, %qname, %code, "server could not answer");
                        alive = true;
                        last = Failure::Rcode(code.to_string());
                    }
                },
                Err(e) => {
                    tracing::debug!(%server, %qname, error = %e, "no answer");
                    alive |= e == Failure::Timeout;
                    last = e;
                }
            }
        }
        if !alive {
            break;
        }
    }
    Err(last)
}

/// True if `msg` answers our question: same id, a response, the same (single) question.
fn answers(msg: &Message, id: u16, qname: &Name, rtype: RecordType) -> bool {
    msg.metadata.id == id
        && msg.metadata.message_type == MessageType::Response
        && msg.queries.len() == 1
        && msg.queries.first().is_some_and(|q| {
            q.name() == qname && q.query_type() == rtype && q.query_class() == DNSClass::IN
        })
}

fn io_failure(e: &io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Timeout,
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        kind => Failure::Io(kind),
    }
}

/// Time left before `deadline`, or `Timeout`.
fn left(deadline: Instant) -> Result<Duration, Failure> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(Failure::Timeout),
    }
}

fn exchange_udp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Message, Failure> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).map_err(|e| io_failure(&e))?;
    sock.connect(server).map_err(|e| io_failure(&e))?;
    sock.send(query).map_err(|e| io_failure(&e))?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        sock.set_read_timeout(Some(left(deadline)?))
            .map_err(|e| io_failure(&e))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failure(&e)),
        };
        match buf.get(..n).map(Message::from_vec) {
            Some(Ok(msg)) if answers(&msg, id, qname, rtype) => return Ok(msg),
            // Not ours (a late answer to an earlier try, garbage, a spoofing attempt): keep
            // waiting for ours.
            _ => tracing::debug!(%server, "datagram that does not answer the question; ignored"),
        }
    }
}

fn exchange_tcp(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    qname: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Message, Failure> {
    let len = u16::try_from(query.len()).map_err(|_| Failure::Malformed("query too long"))?;
    let mut stream =
        TcpStream::connect_timeout(&server, left(deadline)?).map_err(|e| io_failure(&e))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(left(deadline)?))
        .map_err(|e| io_failure(&e))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).map_err(|e| io_failure(&e))?;
    let mut len = [0u8; 2];
    read_full(&mut stream, &mut len, deadline)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_full(&mut stream, &mut buf, deadline)?;
    match Message::from_vec(&buf) {
        Ok(msg) if answers(&msg, id, qname, rtype) => Ok(msg),
        _ => Err(Failure::Malformed(
            "tcp answer does not answer the question",
        )),
    }
}

fn read_full(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), Failure> {
    let mut done = 0;
    while done < buf.len() {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| io_failure(&e))?;
        match stream.read(buf.get_mut(done..).unwrap_or_default()) {
            Ok(0) => return Err(Failure::Io(io::ErrorKind::UnexpectedEof)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_failure(&e)),
        }
    }
    Ok(())
}

/// What an answer means.
#[derive(Debug, PartialEq)]
enum Step {
    Done(Answer),
    /// The answer ends in a CNAME to this name without its records: ask for it, keeping the
    /// TTL (seconds) of the chain so far.
    Follow(Name, u32),
}

/// Reads the records of `kind` for `qname` out of `msg` (NOERROR or NXDOMAIN), following CNAME
/// records inside the answer. The TTL is the least of the records used, capped at
/// [`MAX_TTL`]; a negative answer lives for its SOA's minimum (RFC 2308 §5), or
/// [`DEFAULT_NEGATIVE_TTL`] without one.
fn interpret(msg: &Message, qname: &Name, kind: Kind) -> Step {
    let mut current = qname.clone();
    let mut ttl = u32::MAX;
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for _ in 0..MAX_CHAIN {
        let mut next = None;
        let mut found = false;
        for r in msg
            .answers
            .iter()
            .filter(|r| r.dns_class == DNSClass::IN && r.name == current)
        {
            if let RData::CNAME(c) = &r.data {
                next = Some((c.0.clone(), r.ttl));
            } else if take_answer(&r.data, kind, &mut addrs, &mut names) {
                found = true;
                ttl = ttl.min(r.ttl);
            }
        }
        if found {
            break;
        }
        match next {
            Some((target, cname_ttl)) => {
                ttl = ttl.min(cname_ttl);
                current = target;
            }
            None => break,
        }
    }
    let cap = ttl.min(MAX_TTL.as_secs() as u32);
    let values = match kind {
        Kind::A | Kind::Aaaa => Values::Addrs(addrs),
        Kind::Ptr => Values::Names(names),
    };
    let empty = match &values {
        Values::Addrs(a) => a.is_empty(),
        Values::Names(n) => n.is_empty(),
    };
    if !empty {
        return Step::Done(Answer {
            values,
            ttl: Duration::from_secs(cap.into()),
        });
    }
    if msg.metadata.response_code == ResponseCode::NoError && current != *qname {
        return Step::Follow(current, cap);
    }
    let negative = negative_ttl(msg);
    Step::Done(Answer {
        values,
        ttl: Duration::from_secs(negative.min(cap).into()),
    })
}

/// Keeps the value of an answer record of the kind asked (`A`, `AAAA` or `PTR`), within the
/// bounds; returns whether the record was one.
fn take_answer(data: &RData, kind: Kind, addrs: &mut Vec<IpAddr>, names: &mut Vec<String>) -> bool {
    let ip = match (data, kind) {
        (RData::A(a), Kind::A) => IpAddr::V4(a.0),
        // A mapped address in an AAAA record is kept as it is: it can never equal a canonical
        // IPv6 address, so it matches nothing (fail closed).
        (RData::AAAA(a), Kind::Aaaa) => IpAddr::V6(a.0),
        (RData::PTR(p), Kind::Ptr) => {
            let name = normalize(&p.0.to_ascii());
            if !is_hostname(&name) {
                tracing::debug!(ptr = %p.0, "ptr record is not a host name; ignored");
            } else if !names.contains(&name) && names.len() < MAX_NAMES {
                names.push(name);
            }
            return true;
        }
        _ => return false,
    };
    if !addrs.contains(&ip) && addrs.len() < MAX_ADDRS {
        addrs.push(ip);
    }
    true
}

/// How long a negative answer is kept: the SOA's minimum (RFC 2308), or a default.
fn negative_ttl(msg: &Message) -> u32 {
    msg.authorities
        .iter()
        .filter_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
            _ => None,
        })
        .min()
        .unwrap_or(DEFAULT_NEGATIVE_TTL.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
    use hickory_proto::rr::Record;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn response(q: &str, rtype: RecordType, code: ResponseCode) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.add_query(Query::query(name(q), rtype));
        m.metadata.response_code = code;
        m
    }

    fn a(owner: &str, ip: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::A(A(ip.parse().unwrap())))
    }

    fn cname(owner: &str, target: &str, ttl: u32) -> Record {
        Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
    }

    fn soa(owner: &str, ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(name("ns.example."), name("h.example."), 1, 1, 1, 1, minimum);
        Record::from_rdata(name(owner), ttl, RData::SOA(data))
    }

    fn done(values: Values, secs: u64) -> Step {
        Step::Done(Answer {
            values,
            ttl: Duration::from_secs(secs),
        })
    }

    fn v4(list: &[&str]) -> Values {
        Values::Addrs(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn addresses_with_the_least_ttl() {
        let mut m = response("api.example.com.", RecordType::A, ResponseCode::NoError);
        m.add_answer(a("API.example.com.", "192.0.2.1", 300));
        m.add_answer(a("api.example.com.", "192.0.2.2", 60));
        m.add_answer(a("api.example.com.", "192.0.2.2", 600));
        // Records for other names are not ours.
        m.add_answer(a("evil.example.com.", "192.0.2.66", 600));
        assert_eq!(
            interpret(&m, &name("api.example.com."), Kind::A),
            done(v4(&["192.0.2.1", "192.0.2.2"]), 60)
        );
    }

    #[test]
    fn ttl_capped_at_an_hour_and_zero_kept() {
        let mut m = response("a.example.", RecordType::A, ResponseCode::NoError);
        m.add_answer(a("a.example.", "192.0.2.1", 86400 * 7));
        assert_eq!(
            interpret(&m, &name("a.example."), Kind::A),
            done(v4(&["192.0.2.1"]), 3600)
        );
        let mut m = response("a.example.", RecordType::A, ResponseCode::NoError);
        m.add_answer(a("a.example.", "192.0.2.1", 0));
        assert_eq!(
            interpret(&m, &name("a.example."), Kind::A),
            done(v4(&["192.0.2.1"]), 0)
        );
    }

    #[test]
    fn cname_chains_inside_the_answer() {
        let mut m = response("www.example.com.", RecordType::A, ResponseCode::NoError);
        m.add_answer(cname("www.example.com.", "edge.cdn.example.", 120));
        m.add_answer(a("edge.cdn.example.", "192.0.2.9", 500));
        assert_eq!(
            interpret(&m, &name("www.example.com."), Kind::A),
            done(v4(&["192.0.2.9"]), 120)
        );
        // The chain stops short: ask for the target.
        let mut m = response("www.example.com.", RecordType::A, ResponseCode::NoError);
        m.add_answer(cname("www.example.com.", "edge.cdn.example.", 120));
        assert_eq!(
            interpret(&m, &name("www.example.com."), Kind::A),
            Step::Follow(name("edge.cdn.example."), 120)
        );
        // A loop ends without an answer.
        let mut m = response("x.example.", RecordType::A, ResponseCode::NoError);
        m.add_answer(cname("x.example.", "y.example.", 10));
        m.add_answer(cname("y.example.", "x.example.", 10));
        assert!(matches!(
            interpret(&m, &name("x.example."), Kind::A),
            Step::Follow(..) | Step::Done(_)
        ));
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum() {
        let mut m = response("nx.example.", RecordType::A, ResponseCode::NXDomain);
        m.add_authority(soa("example.", 900, 60));
        assert_eq!(
            interpret(&m, &name("nx.example."), Kind::A),
            done(Values::Addrs(vec![]), 60)
        );
        // The SOA's own TTL bounds it too (RFC 2308 §5).
        let mut m = response("nx.example.", RecordType::A, ResponseCode::NoError);
        m.add_authority(soa("example.", 5, 60));
        assert_eq!(
            interpret(&m, &name("nx.example."), Kind::A),
            done(Values::Addrs(vec![]), 5)
        );
        let m = response("nx.example.", RecordType::A, ResponseCode::NXDomain);
        assert_eq!(
            interpret(&m, &name("nx.example."), Kind::A),
            done(Values::Addrs(vec![]), 30)
        );
    }

    #[test]
    fn ptr_names_are_normalized_and_checked() {
        let q = "1.2.0.192.in-addr.arpa.";
        let mut m = response(q, RecordType::PTR, ResponseCode::NoError);
        let ptr = |t: &str| Record::from_rdata(name(q), 100, RData::PTR(PTR(name(t))));
        m.add_answer(ptr("A.Example.COM."));
        m.add_answer(ptr("a.example.com."));
        m.add_answer(ptr("x\\.example.com."));
        assert_eq!(
            interpret(&m, &name(q), Kind::Ptr),
            done(Values::Names(vec!["a.example.com".into()]), 100)
        );
    }

    #[test]
    fn aaaa_and_mapped() {
        let q = "v6.example.";
        let mut m = response(q, RecordType::AAAA, ResponseCode::NoError);
        let aaaa =
            |s: &str| Record::from_rdata(name(q), 100, RData::AAAA(AAAA(s.parse().unwrap())));
        m.add_answer(aaaa("2001:db8::1"));
        m.add_answer(aaaa("::ffff:192.0.2.1"));
        let Step::Done(answer) = interpret(&m, &name(q), Kind::Aaaa) else {
            panic!("an answer");
        };
        assert!(answer.values.has_addr("2001:db8::1".parse().unwrap()));
        assert!(!answer.values.has_addr("192.0.2.1".parse().unwrap()));
        // A records do not answer an AAAA question.
        let mut m = response(q, RecordType::AAAA, ResponseCode::NoError);
        m.add_answer(a(q, "192.0.2.1", 100));
        assert_eq!(
            interpret(&m, &name(q), Kind::Aaaa),
            done(Values::Addrs(vec![]), 30)
        );
    }

    #[test]
    fn resolv_conf() {
        let text = "\
# comment
; other comment
search example.com
nameserver 192.0.2.53
nameserver 2001:db8::53
nameserver fe80::1%2
nameserver fe80::1%eth0
nameserver not-an-address
nameserver 192.0.2.54
options timeout:1
";
        assert_eq!(
            parse_resolv_conf(text),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                "[fe80::1%2]:53".parse().unwrap(),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    /// A loopback server that first sends datagrams that do not answer the question (wrong id,
    /// other question), then the right answer.
    #[test]
    fn udp_ignores_datagrams_that_do_not_answer() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                server
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = server.recv_from(&mut buf) else {
                        continue;
                    };
                    let q = Message::from_vec(&buf[..n]).unwrap();
                    let question = q.queries[0].clone();
                    let mut wrong_id =
                        Message::response(q.metadata.id.wrapping_add(1), q.metadata.op_code);
                    wrong_id.add_query(question.clone());
                    wrong_id.add_answer(a("spoof.example.", "192.0.2.66", 100));
                    let mut other_q = Message::response(q.metadata.id, q.metadata.op_code);
                    other_q.add_query(Query::query(name("other.example."), RecordType::A));
                    other_q.add_answer(a("other.example.", "192.0.2.66", 100));
                    let mut right = Message::response(q.metadata.id, q.metadata.op_code);
                    right.add_query(question.clone());
                    right.add_answer(Record::from_rdata(
                        question.name().clone(),
                        42,
                        RData::A(A("192.0.2.7".parse().unwrap())),
                    ));
                    for m in [wrong_id, other_q] {
                        server.send_to(&m.to_vec().unwrap(), from).unwrap();
                    }
                    server.send_to(b"garbage", from).unwrap();
                    server.send_to(&right.to_vec().unwrap(), from).unwrap();
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        let answer = resolve(&[addr], "spoof.example", Kind::A, deadline).unwrap();
        assert_eq!(answer.values, v4(&["192.0.2.7"]));
        assert_eq!(answer.ttl, Duration::from_secs(42));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn no_server_and_closed_port() {
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(
            resolve(&[], "a.example", Kind::A, deadline),
            Err(Failure::NoServer)
        );
        // A port that nothing listens on: refused at once, well before the deadline.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let start = Instant::now();
        assert_eq!(
            resolve(&[addr], "a.example", Kind::A, deadline),
            Err(Failure::Refused)
        );
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn silent_server_times_out_at_the_deadline() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(900);
        assert_eq!(
            resolve(&[addr], "a.example", Kind::A, deadline),
            Err(Failure::Timeout)
        );
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(850), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
}
