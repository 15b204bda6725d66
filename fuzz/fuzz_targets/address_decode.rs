//! The broker's one reading of addresses (`broker/src/address.rs`, invariant 9) on arbitrary
//! bytes, sockets and socket states: what the address property test checks against the
//! kernel, here checked against the table itself on inputs no generator thought of.
//!
//! The input is one byte for the use (connect, bind, send, Fast Open) and the socket kind,
//! two for the socket's state (its local address among the forms that matter, IPv6-only,
//! interfaces), then the address bytes (at most 128, as the broker copies them; an empty
//! rest with the top bit of the first byte set is a send without an address).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netjail_broker::fuzzing::*;
use netjail_policy::{builtin, builtin_names, Op, Policy, Request};
use std::net::SocketAddr;
use std::sync::OnceLock;

/// One socket of each row of the table (`AF_*`, `SOCK_*`, `IPPROTO_*` numbers).
const KINDS: [(i32, i32, i32); 12] = [
    (2, 1, 6),
    (10, 1, 6),
    (10, 1, 262),
    (2, 2, 17),
    (10, 2, 17),
    (2, 2, 136),
    (10, 3, 58),
    (2, 2, 1),
    (1, 1, 0),
    (1, 2, 0),
    (1, 5, 0),
    (16, 3, 0),
];

const LOCALS: [&str; 10] = [
    "0.0.0.0:0",
    "0.0.0.0:4000",
    "127.0.0.2:0",
    "224.0.0.1:4000",
    "255.255.255.255:0",
    "[::]:0",
    "[::1]:4000",
    "[::ffff:127.0.0.2]:0",
    "[::ffff:0.0.0.0]:4000",
    "[fe80::1%2]:0",
];

const USES: [Use; 4] = [Use::Connect, Use::Bind, Use::Send, Use::FastOpen];

/// The errnos a reading may carry (this crate does not depend on libc).
const ERRNOS: [i32; 4] = [22, 97, 101, 95];

fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        builtin_names()
            .iter()
            .map(|n| Policy::from_toml(builtin(n).unwrap(), n).unwrap())
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [select, s1, s2, rest @ ..] = data else {
        return;
    };
    let usage = USES[usize::from(select & 3)];
    let (family, sock_type, protocol) = KINDS[usize::from(select >> 2) % KINDS.len()];
    let kind = SocketKind {
        family,
        sock_type,
        protocol,
    };
    let local = (s1 & 0x0f) as usize;
    let state = Known {
        local: LOCALS.get(local).and_then(|l| l.parse::<SocketAddr>().ok()),
        v6only: s1 & 0x10 != 0,
        bound_interface: u32::from(s2 & 3),
        unicast_interface: u32::from((s2 >> 2) & 3),
    };
    let name = &rest[..rest.len().min(MAX_SOCKADDR_LEN)];
    let name = if name.is_empty() && select & 0x80 != 0 {
        None
    } else {
        Some(name)
    };
    let first = read(usage, kind, &mut { state }, name);
    // A reading depends on nothing but its inputs.
    assert_eq!(first, read(usage, kind, &mut { state }, name));
    let bytes = name.unwrap_or(&[]);
    match &first {
        Reading::Ip { endpoint, sockaddr } => {
            // A destination is never unspecified, and what the broker passes names it: read
            // again, it is the same reading.
            assert!(!endpoint.ip().is_unspecified(), "{first:?}");
            assert_eq!(sockaddr.len(), bytes.len());
            assert_ne!(usage, Use::Bind);
            assert_eq!(read(usage, kind, &mut { state }, Some(sockaddr)), first);
        }
        Reading::Local { sockaddr, .. } => {
            assert_eq!(usage, Use::Bind);
            assert_eq!(read(usage, kind, &mut { state }, Some(sockaddr)), first);
        }
        Reading::Disconnect => {
            assert_eq!(usage, Use::Connect);
            assert_eq!(&bytes[..2], &0u16.to_ne_bytes());
        }
        Reading::UnixPath(_) | Reading::UnixAbstract(_) => {
            assert_eq!(family, 1);
            assert!((3..=110).contains(&bytes.len()));
        }
        Reading::UnixAutobind => assert_eq!(bytes.len(), 2),
        Reading::Errno(e) => assert!(ERRNOS.contains(e), "{first:?}"),
        Reading::Peer | Reading::Ignored | Reading::OtherFamily(_) | Reading::Refused(_) => {}
        _ => {}
    }
    // Whatever the table reads, each policy decides without panicking, and never allows
    // an unspecified destination.
    let op = match usage {
        Use::Connect | Use::FastOpen => Op::Connect,
        Use::Send => Op::Send,
        Use::Bind => Op::Bind,
    };
    if let Some(target) = first.target(proto_of(sock_type, protocol)) {
        let request = Request { op, target };
        for p in policies() {
            let _ = p.evaluate(&request);
        }
    }
});
