//! Addresses as the kernel reads them (invariant 9): the probe of the address property test
//! and of the attacks on F1, R1, R1b, R2, L11, L12 and link-local scopes.
//!
//! | subcommand | what it does |
//! | --- | --- |
//! | `addr KIND STATE OP HEX[@LEN] [TAG]` | one socket of KIND put in STATE, given the address bytes HEX (claiming length LEN) for OP, with TAG as the data; reports the call and the socket's local and peer addresses afterwards |
//! | `addr-cases SEED COUNT DIR REGIME RUN` | the generated cases of the property test, run here one after the other; one JSON line with each case's description and result |
//! | `addr-listen-run SPEC... -- CMD...` | receivers (`tcp:ADDR`, `udp:ADDR`), then CMD (which prints one JSON line); one JSON line with CMD's and which receiver each tag reached |
//! | `addr-prop SEED COUNT NETJAIL DIR` | in a network namespace of its own (lo up, `fe80::1` on lo): loopback receivers, then `addr-cases` of both regimes unconfined and under `netjail run --policy DIR/policy-REGIME.toml`; one JSON line with both runs and which receiver each datagram or connection reached |
//!
//! KIND: `udp4`, `udp6`, `udp6only`, `udplite4`, `udplite6`, `tcp4`, `tcp6`, `tcp6only`,
//! `unixdgram`, `unixstream`. STATE: `fresh`, `bound=IP` (port 0), `wildcard` (bound to
//! `0.0.0.0:0` or `[::]:0`), `autobound` (a `send()` without destination failed, which binds
//! a UDP socket), `connected=IP:PORT` or `connected=PATH`. OP: `connect` (then a `send` of
//! TAG), `sendto`, `sendmsg`, `sendmmsg`, `fastopen` (`sendto` with `MSG_FASTOPEN`), `bind`.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::count_arg;
use crate::sys::{self, errno_name, Errno, SockAddr};

/// The allowed-looking port of the property test's receivers (in its own network namespace).
pub const PORT_P: u16 = 7001;
/// The other port.
pub const PORT_Q: u16 = 7002;
/// UDP-Lite.
const IPPROTO_UDPLITE: i32 = 136;

// ---- one case ----------------------------------------------------------------------------

/// A kind of socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Udp4,
    Udp6,
    Udp6Only,
    UdpLite4,
    UdpLite6,
    Tcp4,
    Tcp6,
    Tcp6Only,
    UnixDgram,
    UnixStream,
}

const KINDS: &[(&str, Kind)] = &[
    ("udp4", Kind::Udp4),
    ("udp6", Kind::Udp6),
    ("udp6only", Kind::Udp6Only),
    ("udplite4", Kind::UdpLite4),
    ("udplite6", Kind::UdpLite6),
    ("tcp4", Kind::Tcp4),
    ("tcp6", Kind::Tcp6),
    ("tcp6only", Kind::Tcp6Only),
    ("unixdgram", Kind::UnixDgram),
    ("unixstream", Kind::UnixStream),
];

impl Kind {
    fn parse(s: &str) -> Result<Kind, String> {
        KINDS
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, k)| *k)
            .ok_or_else(|| format!("unknown socket kind {s:?}"))
    }

    fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    fn v6(self) -> bool {
        matches!(
            self,
            Kind::Udp6 | Kind::Udp6Only | Kind::UdpLite6 | Kind::Tcp6 | Kind::Tcp6Only
        )
    }

    fn udp(self) -> bool {
        matches!(
            self,
            Kind::Udp4 | Kind::Udp6 | Kind::Udp6Only | Kind::UdpLite4 | Kind::UdpLite6
        )
    }

    fn tcp(self) -> bool {
        matches!(self, Kind::Tcp4 | Kind::Tcp6 | Kind::Tcp6Only)
    }

    fn unix(self) -> bool {
        matches!(self, Kind::UnixDgram | Kind::UnixStream)
    }

    fn socket(self) -> Result<OwnedFd, Errno> {
        let (family, ty, proto) = match self {
            Kind::Udp4 => (libc::AF_INET, libc::SOCK_DGRAM, 0),
            Kind::Udp6 | Kind::Udp6Only => (libc::AF_INET6, libc::SOCK_DGRAM, 0),
            Kind::UdpLite4 => (libc::AF_INET, libc::SOCK_DGRAM, IPPROTO_UDPLITE),
            Kind::UdpLite6 => (libc::AF_INET6, libc::SOCK_DGRAM, IPPROTO_UDPLITE),
            Kind::Tcp4 => (libc::AF_INET, libc::SOCK_STREAM, 0),
            Kind::Tcp6 | Kind::Tcp6Only => (libc::AF_INET6, libc::SOCK_STREAM, 0),
            Kind::UnixDgram => (libc::AF_UNIX, libc::SOCK_DGRAM, 0),
            Kind::UnixStream => (libc::AF_UNIX, libc::SOCK_STREAM, 0),
        };
        let fd = sys::socket_raw(
            family as u64,
            (ty | libc::SOCK_CLOEXEC) as u64,
            proto as u64,
        )?;
        // Explicit both ways: the default follows a sysctl.
        if self.v6() {
            let only = i32::from(matches!(self, Kind::Udp6Only | Kind::Tcp6Only));
            sys::set_int_option(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, only)?;
        }
        Ok(fd)
    }
}

/// What a socket went through before the call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Fresh,
    Bound(IpAddr),
    Wildcard,
    Autobound,
    Connected(String),
}

impl State {
    fn parse(s: &str) -> Result<State, String> {
        Ok(match s.split_once('=') {
            None if s == "fresh" => State::Fresh,
            None if s == "wildcard" => State::Wildcard,
            None if s == "autobound" => State::Autobound,
            Some(("bound", ip)) => State::Bound(ip.parse().map_err(|_| format!("bad ip {ip:?}"))?),
            Some(("connected", to)) => State::Connected(to.to_owned()),
            _ => return Err(format!("unknown state {s:?}")),
        })
    }

    fn name(&self) -> String {
        match self {
            State::Fresh => "fresh".into(),
            State::Bound(ip) => format!("bound={ip}"),
            State::Wildcard => "wildcard".into(),
            State::Autobound => "autobound".into(),
            State::Connected(to) => format!("connected={to}"),
        }
    }

    /// Puts `fd` of `kind` in this state.
    fn enter(&self, kind: Kind, fd: &OwnedFd) -> Result<(), Errno> {
        match self {
            State::Fresh => Ok(()),
            State::Bound(ip) => sys::bind(fd, &SockAddr::ip(*ip, 0)),
            State::Wildcard => {
                let any: IpAddr = if kind.v6() {
                    Ipv6Addr::UNSPECIFIED.into()
                } else {
                    Ipv4Addr::UNSPECIFIED.into()
                };
                sys::bind(fd, &SockAddr::ip(any, 0))
            }
            State::Autobound => match sys::send(fd, b"x") {
                Err(libc::EDESTADDRREQ) => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Err(libc::EISCONN),
            },
            State::Connected(to) => {
                let addr = match to.parse::<SocketAddr>() {
                    Ok(a) => SockAddr::ip(a.ip(), a.port()),
                    Err(_) => SockAddr::unix_path(to.as_bytes()),
                };
                sys::connect(fd, &addr)
            }
        }
    }
}

/// The call given the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Connect,
    SendTo,
    SendMsg,
    SendMmsg,
    FastOpen,
    Bind,
}

const OPS: &[(&str, Op)] = &[
    ("connect", Op::Connect),
    ("sendto", Op::SendTo),
    ("sendmsg", Op::SendMsg),
    ("sendmmsg", Op::SendMmsg),
    ("fastopen", Op::FastOpen),
    ("bind", Op::Bind),
];

impl Op {
    fn parse(s: &str) -> Result<Op, String> {
        OPS.iter()
            .find(|(n, _)| *n == s)
            .map(|(_, o)| *o)
            .ok_or_else(|| format!("unknown op {s:?}"))
    }

    fn name(self) -> &'static str {
        OPS.iter().find(|(_, o)| *o == self).map_or("?", |(n, _)| n)
    }
}

fn res<T>(r: &Result<T, Errno>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => errno_name(*e),
    }
}

/// The `ip:port` (or unix path) of an address the kernel gave back.
fn name_of(sa: &SockAddr) -> Value {
    match (sa.ip_string(), sa.port()) {
        (Some(ip), Some(port)) if ip.contains(':') => json!(format!("[{ip}]:{port}")),
        (Some(ip), Some(port)) => json!(format!("{ip}:{port}")),
        _ => {
            let b = sa.bytes();
            let path = b.get(2..).unwrap_or(&[]);
            let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
            json!(String::from_utf8_lossy(&path[..end]))
        }
    }
}

/// Runs one case: a fresh socket of `kind`, put in `state`, given `addr` for `op` with `tag`
/// as the data (after a connect: sent on the connected socket).
fn run_one(kind: Kind, state: &State, op: Op, addr: &SockAddr, tag: &[u8]) -> Value {
    let fd = match kind.socket() {
        Ok(fd) => fd,
        Err(e) => return json!({"setup": format!("socket:{}", errno_name(e))}),
    };
    if let Err(e) = state.enter(kind, &fd) {
        return json!({"setup": errno_name(e)});
    }
    let mut then = Value::Null;
    let r = match op {
        Op::Connect => {
            let r = sys::connect(&fd, addr);
            if r.is_ok() {
                then = json!(res(&sys::send(&fd, tag)));
            }
            r.map(|()| 0)
        }
        Op::SendTo => sys::sendto(fd.as_raw_fd(), tag, 0, Some(addr)),
        Op::SendMsg => sys::sendmsg_to(&fd, tag, Some(addr), 0),
        Op::SendMmsg => sys::sendmmsg_to(&fd, tag, Some(addr), 0),
        Op::FastOpen => sys::sendto(fd.as_raw_fd(), tag, libc::MSG_FASTOPEN, Some(addr)),
        Op::Bind => sys::bind(&fd, addr).map(|()| 0),
    };
    let local = sys::local(&fd).map_or(Value::Null, |sa| name_of(&sa));
    let peer = sys::peer(&fd).map_or(Value::Null, |sa| name_of(&sa));
    if op == Op::Bind && r.is_ok() && kind.unix() {
        // The next cases find the directory as this one did.
        let b = addr.bytes();
        let path = b.get(2..).unwrap_or(&[]);
        let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
        if end > 0 {
            let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes(&path[..end]));
        }
    }
    json!({"setup": "ok", "res": res(&r), "then": then, "local": local, "peer": peer})
}

/// Parses `HEX[@LEN]`.
fn addr_arg(s: &str) -> Result<SockAddr, String> {
    let (hex, len) = match s.split_once('@') {
        Some((h, l)) => (
            h,
            Some(l.parse::<u32>().map_err(|_| format!("bad length {l:?}"))?),
        ),
        None => (s, None),
    };
    if hex.len() % 2 != 0 {
        return Err(format!("odd hex {hex:?}"));
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("bad hex {hex:?}")))
        .collect::<Result<Vec<u8>, String>>()?;
    let len = len.unwrap_or(bytes.len() as u32);
    Ok(SockAddr::from_bytes(&bytes, len))
}

/// `addr KIND STATE OP HEX[@LEN] [TAG]`.
pub(crate) fn one(
    kind: &str,
    state: &str,
    op: &str,
    addr: &str,
    tag: Option<&str>,
) -> Result<Value, String> {
    let (kind, state, op) = (Kind::parse(kind)?, State::parse(state)?, Op::parse(op)?);
    let addr = addr_arg(addr)?;
    Ok(run_one(
        kind,
        &state,
        op,
        &addr,
        tag.unwrap_or("probe").as_bytes(),
    ))
}

// ---- the generated cases -------------------------------------------------------------------

/// splitmix64: small, seedable, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }

    /// `true` with probability `percent`%.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const V4S: &[&str] = &["0.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3"];
const V6S: &[&str] = &[
    "::",
    "::1",
    "::ffff:0.0.0.0",
    "::ffff:127.0.0.1",
    "::ffff:127.0.0.2",
    "::ffff:127.0.0.3",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::7f00:2",
    "2002:7f00:1::1",
    "fe80::1",
];
const UNIX_NAMES: &[&str] = &[
    "allowed-d.sock",
    "allowed-s.sock",
    "denied-d.sock",
    "denied-s.sock",
    "missing.sock",
    "bind",
];
const ODD_LENGTHS: &[u32] = &[
    0, 1, 2, 3, 4, 8, 15, 16, 17, 23, 24, 25, 27, 28, 29, 32, 100, 108, 109, 110, 111, 112, 120,
    127, 128, 129, 130,
];

/// One generated case, with what the test needs to know of it.
struct Case {
    kind: Kind,
    state: State,
    op: Op,
    bytes: Vec<u8>,
    len: u32,
    desc: Value,
}

/// The `id`th case of `seed` for a run in `dir` under `regime` (`a`: the policy allows
/// wildcard binds; `b`: it does not, and no case binds one explicitly).
fn generate(seed: u64, id: u64, dir: &str, regime: &str) -> Case {
    let mut rng = Rng(seed ^ id.wrapping_mul(0xA24B_AED4_963E_E407));
    let kind = KINDS[rng.below(KINDS.len())].1;
    let op = *rng.pick(match kind {
        k if k.udp() => &[Op::Connect, Op::SendTo, Op::SendMsg, Op::SendMmsg, Op::Bind][..],
        k if k.tcp() => &[Op::Connect, Op::FastOpen, Op::SendTo, Op::Bind][..],
        Kind::UnixDgram => &[Op::Connect, Op::SendTo, Op::SendMsg, Op::Bind][..],
        _ => &[Op::Connect, Op::SendTo, Op::Bind][..],
    });
    let peer4 = format!("127.0.0.1:{PORT_P}");
    let peer6 = format!("[::1]:{PORT_P}");
    let mut states = vec![State::Fresh];
    if op != Op::Bind {
        if kind.unix() {
            if kind == Kind::UnixDgram {
                states.push(State::Connected(format!("{dir}/allowed-d.sock")));
            }
        } else {
            if kind.v6() {
                states.push(State::Bound(IpAddr::V6(Ipv6Addr::LOCALHOST)));
                if !matches!(kind, Kind::Udp6Only | Kind::Tcp6Only) {
                    let mapped = Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped();
                    states.push(State::Bound(IpAddr::V6(mapped)));
                }
            } else {
                states.push(State::Bound(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
            }
            if regime == "a" {
                states.push(State::Wildcard);
            }
            if kind.udp() {
                states.push(State::Autobound);
                states.push(State::Connected(if kind.v6() { peer6 } else { peer4 }));
            } else if op != Op::Connect && op != Op::FastOpen {
                states.push(State::Connected(if kind.v6() { peer6 } else { peer4 }));
            }
        }
    }
    let state = rng.pick(&states).clone();

    // The address: a layout, a family field (mostly the layout's), tail bytes and a length.
    let native_layout = match kind {
        k if k.unix() => 2,
        k if k.v6() => 1,
        _ => 0,
    };
    let layout = if rng.chance(55) {
        native_layout
    } else {
        rng.below(4)
    };
    let mut bytes = vec![0u8; 128];
    let mut desc = serde_json::Map::new();
    let natural_family: u16 = match layout {
        0 => libc::AF_INET as u16,
        1 => libc::AF_INET6 as u16,
        2 => libc::AF_UNIX as u16,
        _ => 0xFFFF,
    };
    let natural_len: u32;
    match layout {
        0 => {
            let ip: Ipv4Addr = rng.pick(V4S).parse().unwrap_or(Ipv4Addr::LOCALHOST);
            let port = *rng.pick(&[PORT_P, PORT_P, PORT_Q, 0]);
            bytes[2..4].copy_from_slice(&port.to_be_bytes());
            bytes[4..8].copy_from_slice(&ip.octets());
            desc.insert("ip".into(), json!(ip.to_string()));
            desc.insert("port".into(), json!(port));
            natural_len = 16;
        }
        1 => {
            let ip: Ipv6Addr = rng.pick(V6S).parse().unwrap_or(Ipv6Addr::LOCALHOST);
            let port = *rng.pick(&[PORT_P, PORT_P, PORT_Q, 0]);
            let scope: u32 = *rng.pick(&[0, 0, 0, 0, 0, 1, 1, 99]);
            bytes[2..4].copy_from_slice(&port.to_be_bytes());
            bytes[8..24].copy_from_slice(&ip.octets());
            bytes[24..28].copy_from_slice(&scope.to_ne_bytes());
            desc.insert("ip".into(), json!(ip.to_string()));
            desc.insert("port".into(), json!(port));
            desc.insert("scope".into(), json!(scope));
            natural_len = if rng.chance(20) { 24 } else { 28 };
        }
        2 => {
            let path = if rng.chance(15) {
                // An abstract name nobody listens on.
                let mut p = vec![0u8];
                p.extend_from_slice(format!("nj-addr-{}", rng.next() % 1000).as_bytes());
                desc.insert("path".into(), json!("abstract"));
                p
            } else {
                let name = *rng.pick(UNIX_NAMES);
                desc.insert("path".into(), json!(name));
                let file = if name == "bind" {
                    format!("bind-{id}.sock")
                } else {
                    name.to_owned()
                };
                format!("{dir}/{file}").into_bytes()
            };
            let n = path.len().min(108);
            bytes[2..2 + n].copy_from_slice(&path[..n]);
            natural_len = (2 + n + usize::from(path[0] != 0)).min(110) as u32;
        }
        _ => {
            let n = 2 + rng.below(30);
            for b in bytes.iter_mut().take(n) {
                *b = rng.next() as u8;
            }
            desc.insert("random".into(), json!(n));
            natural_len = n as u32;
        }
    }
    let family = if rng.chance(70) {
        natural_family
    } else {
        *rng.pick(&[0u16, 0, 0, 1, 2, 10, 3, 16, 0xFFFF])
    };
    if layout != 3 || rng.chance(50) {
        bytes[..2].copy_from_slice(&family.to_ne_bytes());
    }
    let garbage = rng.chance(30);
    if garbage {
        // Garbage after the layout: the kernel reads only what the family and length say.
        for b in bytes.iter_mut().skip(natural_len as usize) {
            *b = rng.next() as u8;
        }
    }
    let len = if rng.chance(55) {
        natural_len
    } else if rng.chance(70) {
        *rng.pick(ODD_LENGTHS)
    } else {
        rng.below(131) as u32
    };
    desc.insert("garbage".into(), json!(garbage && len > natural_len));
    desc.insert("natural_len".into(), json!(natural_len));
    // Where an IP address's port is, whatever the layout put there.
    desc.insert(
        "port_field".into(),
        json!(u16::from_be_bytes([bytes[2], bytes[3]])),
    );
    desc.insert(
        "layout".into(),
        json!(["v4", "v6", "unix", "random"][layout]),
    );
    desc.insert(
        "family".into(),
        json!(u16::from_ne_bytes([bytes[0], bytes[1]])),
    );
    desc.insert("len".into(), json!(len));
    Case {
        kind,
        state,
        op,
        bytes,
        len,
        desc: Value::Object(desc),
    }
}

/// `addr-cases SEED COUNT DIR REGIME RUN`.
pub(crate) fn cases(
    seed: &str,
    count: &str,
    dir: &str,
    regime: &str,
    run: &str,
) -> Result<Value, String> {
    let seed = count_arg(seed)?;
    let count = count_arg(count)?;
    let mut out = Vec::with_capacity(count as usize);
    for id in 0..count {
        let c = generate(seed, id, dir, regime);
        let addr = SockAddr::from_bytes(&c.bytes, c.len);
        let tag = format!("T{run}.{id};");
        let result = run_one(c.kind, &c.state, c.op, &addr, tag.as_bytes());
        out.push(json!({
            "id": id,
            "kind": c.kind.name(),
            "state": c.state.name(),
            "op": c.op.name(),
            "addr": c.desc,
            "result": result,
        }));
    }
    Ok(json!({"run": run, "cases": out}))
}

// ---- the receivers and the two runs ----------------------------------------------------------

enum Source {
    Datagram(OwnedFd),
    Udp(UdpSocket),
    Tcp(TcpListener),
    UnixDatagram(UnixDatagram),
    UnixStream(UnixListener),
}

/// Loopback receivers that record which of them each tag reached.
struct Receivers {
    stop: Arc<AtomicBool>,
    landed: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    thread: Option<JoinHandle<()>>,
}

/// The tag in `data`: `T...;`.
fn tag_of(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    let end = text.find(';')?;
    text.starts_with('T').then(|| text[..end].to_owned())
}

impl Receivers {
    /// On `127.0.0.1`-`3`, `::1` and `fe80::1%lo`, ports P and Q, for UDP, UDP-Lite and TCP;
    /// unix datagram and stream sockets `allowed-*` and `denied-*` in each run directory.
    fn start(dirs: &[String]) -> Result<Receivers, String> {
        let mut sources: Vec<(String, Source)> = Vec::new();
        let ips: [IpAddr; 5] = [
            "127.0.0.1".parse().map_err(|_| "ip")?,
            "127.0.0.2".parse().map_err(|_| "ip")?,
            "127.0.0.3".parse().map_err(|_| "ip")?,
            "::1".parse().map_err(|_| "ip")?,
            "fe80::1".parse().map_err(|_| "ip")?,
        ];
        for ip in ips {
            for (label, port) in [("P", PORT_P), ("Q", PORT_Q)] {
                let at = match ip {
                    IpAddr::V6(v6) if v6.segments()[0] == 0xfe80 => {
                        SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 1))
                    }
                    ip => SocketAddr::new(ip, port),
                };
                let name = |proto: &str| format!("{proto}:{ip}:{label}");
                let udp = UdpSocket::bind(at).map_err(|e| format!("udp {at}: {e}"))?;
                udp.set_nonblocking(true).map_err(|e| e.to_string())?;
                sources.push((name("udp"), Source::Udp(udp)));
                let tcp = TcpListener::bind(at).map_err(|e| format!("tcp {at}: {e}"))?;
                tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
                sources.push((name("tcp"), Source::Tcp(tcp)));
                let family = if ip.is_ipv6() {
                    libc::AF_INET6
                } else {
                    libc::AF_INET
                };
                let lite = sys::socket_raw(
                    family as u64,
                    (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as u64,
                    IPPROTO_UDPLITE as u64,
                )
                .map_err(|e| format!("udplite socket: {}", errno_name(e)))?;
                let mut sa = SockAddr::ip(ip, port);
                if let SocketAddr::V6(v6) = at {
                    let mut b = sa.bytes();
                    b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
                    sa = SockAddr::from_bytes(&b, b.len() as u32);
                }
                sys::bind(&lite, &sa).map_err(|e| format!("udplite {at}: {}", errno_name(e)))?;
                sources.push((name("udplite"), Source::Datagram(lite)));
            }
        }
        for dir in dirs {
            for which in ["allowed", "denied"] {
                let d = UnixDatagram::bind(format!("{dir}/{which}-d.sock"))
                    .map_err(|e| e.to_string())?;
                d.set_nonblocking(true).map_err(|e| e.to_string())?;
                sources.push((format!("unix-d:{which}"), Source::UnixDatagram(d)));
                let s = UnixListener::bind(format!("{dir}/{which}-s.sock"))
                    .map_err(|e| e.to_string())?;
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                sources.push((format!("unix-s:{which}"), Source::UnixStream(s)));
            }
        }
        Ok(Receivers::serve(sources))
    }

    /// Receivers named by `PROTO:ADDR` (`tcp:127.0.0.1:7001`, `udp:[fe80::1%1]:7001`), each
    /// recorded under its spec.
    fn from_specs(specs: &[&str]) -> Result<Receivers, String> {
        let mut sources = Vec::new();
        for spec in specs {
            let (proto, at) = spec
                .split_once(':')
                .ok_or_else(|| format!("bad receiver {spec:?}"))?;
            let at: SocketAddr = at
                .parse()
                .map_err(|_| format!("bad receiver address {at:?}"))?;
            let source = match proto {
                "udp" => {
                    let u = UdpSocket::bind(at).map_err(|e| format!("udp {at}: {e}"))?;
                    u.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Source::Udp(u)
                }
                "tcp" => {
                    let t = TcpListener::bind(at).map_err(|e| format!("tcp {at}: {e}"))?;
                    t.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Source::Tcp(t)
                }
                _ => return Err(format!("bad receiver protocol {proto:?}")),
            };
            sources.push(((*spec).to_owned(), source));
        }
        Ok(Receivers::serve(sources))
    }

    fn serve(sources: Vec<(String, Source)>) -> Receivers {
        let stop = Arc::new(AtomicBool::new(false));
        let landed = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let (stop, landed) = (Arc::clone(&stop), Arc::clone(&landed));
            std::thread::spawn(move || receive(sources, &stop, &landed))
        };
        Receivers {
            stop,
            landed,
            thread: Some(thread),
        }
    }

    /// Stops after a quiet moment and returns tag -> receivers.
    fn finish(mut self) -> BTreeMap<String, Vec<String>> {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let map = self.landed.lock().map(|m| m.clone()).unwrap_or_default();
        map
    }
}

/// A connection whose tag has not come yet.
struct Pending {
    name: String,
    stream: Box<dyn Read + Send>,
    data: Vec<u8>,
    until: Instant,
}

fn receive(
    sources: Vec<(String, Source)>,
    stop: &AtomicBool,
    landed: &Mutex<BTreeMap<String, Vec<String>>>,
) {
    let record = |tag: Option<String>, name: &str| {
        if let (Some(tag), Ok(mut map)) = (tag, landed.lock()) {
            map.entry(tag).or_default().push(name.to_owned());
        }
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::SeqCst) {
        let mut busy = false;
        for (name, source) in &sources {
            match source {
                Source::Datagram(fd) => {
                    while let Ok(Some(n)) = sys::recv_now(fd, &mut buf) {
                        record(tag_of(&buf[..n]), name);
                        busy = true;
                    }
                }
                Source::Udp(s) => {
                    while let Ok(n) = s.recv(&mut buf) {
                        record(tag_of(&buf[..n]), name);
                        busy = true;
                    }
                }
                Source::UnixDatagram(s) => {
                    while let Ok(n) = s.recv(&mut buf) {
                        record(tag_of(&buf[..n]), name);
                        busy = true;
                    }
                }
                Source::Tcp(l) => {
                    while let Ok((s, _)) = l.accept() {
                        busy = true;
                        if s.set_nonblocking(true).is_ok() {
                            pending.push(Pending::new(name, Box::new(s)));
                        }
                    }
                }
                Source::UnixStream(l) => {
                    while let Ok((s, _)) = l.accept() {
                        busy = true;
                        if s.set_nonblocking(true).is_ok() {
                            pending.push(Pending::new(name, Box::new(s)));
                        }
                    }
                }
            }
        }
        pending.retain_mut(|p| {
            match p.stream.read(&mut buf) {
                Ok(0) => {
                    record(tag_of(&p.data), &p.name);
                    return false;
                }
                Ok(n) => {
                    busy = true;
                    p.data.extend_from_slice(&buf[..n]);
                    if p.data.contains(&b';') {
                        record(tag_of(&p.data), &p.name);
                        return false;
                    }
                }
                Err(_) => {}
            }
            Instant::now() < p.until
        });
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Pending {
    fn new(name: &str, stream: Box<dyn Read + Send>) -> Pending {
        Pending {
            name: name.to_owned(),
            stream,
            data: Vec::new(),
            until: Instant::now() + Duration::from_secs(3),
        }
    }
}

/// Runs `cmd`, which prints one JSON line; returns it and the command's standard error.
fn run_json(mut cmd: Command) -> Result<(Value, String), String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    match serde_json::from_str(line) {
        Ok(v) => Ok((v, stderr)),
        Err(e) => {
            let tail: String = stderr
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(format!("{e}: status {:?}, stderr {tail}", out.status))
        }
    }
}

/// `addr-prop SEED COUNT NETJAIL DIR`.
pub(crate) fn prop(seed: &str, count: &str, netjail: &str, dir: &str) -> Result<Value, String> {
    count_arg(seed)?;
    count_arg(count)?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let native_dir = format!("{dir}/n");
    let confined_dir = format!("{dir}/c");
    for d in [&native_dir, &confined_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("{d}: {e}"))?;
    }
    let receivers = Receivers::start(&[native_dir.clone(), confined_dir.clone()])?;
    let mut runs = serde_json::Map::new();
    for regime in ["a", "b"] {
        let mut native = Command::new(&me);
        native.args([
            "addr-cases",
            seed,
            count,
            &native_dir,
            regime,
            &format!("n{regime}"),
        ]);
        let (native, _) = run_json(native)?;
        let mut confined = Command::new(netjail);
        let policy = format!("{dir}/policy-{regime}.toml");
        confined.args(["run", "--allow-root", "--policy", &policy, "--"]);
        confined.arg(&me);
        confined.args([
            "addr-cases",
            seed,
            count,
            &confined_dir,
            regime,
            &format!("c{regime}"),
        ]);
        let (confined, _) = run_json(confined)?;
        runs.insert(
            regime.to_owned(),
            json!({"native": native, "confined": confined}),
        );
    }
    let landed = receivers.finish();
    Ok(json!({"runs": runs, "landed": landed}))
}

/// `addr-listen-run SPEC... -- CMD...`: for a network namespace of the test's own, where
/// the test cannot put receivers itself.
pub(crate) fn listen_run(args: &[&str]) -> Result<Value, String> {
    let split = args
        .iter()
        .position(|a| *a == "--")
        .ok_or("no -- before the command")?;
    let (specs, cmd) = (&args[..split], &args[split + 1..]);
    let Some((program, rest)) = cmd.split_first() else {
        return Err("no command".to_owned());
    };
    let receivers = Receivers::from_specs(specs)?;
    let mut command = Command::new(program);
    command.args(rest);
    let out = run_json(command);
    let landed = receivers.finish();
    Ok(match out {
        Ok((v, stderr)) => json!({"cmd": v, "stderr": stderr, "landed": landed}),
        Err(e) => json!({"cmd": {"error": e}, "landed": landed}),
    })
}
