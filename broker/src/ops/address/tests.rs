use super::*;
use proptest::prelude::*;

const UDP4: SocketKind = kind(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
const UDP6: SocketKind = kind(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
const LITE4: SocketKind = kind(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE);
const TCP4: SocketKind = kind(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
const TCP6: SocketKind = kind(libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP);
const ICMP4: SocketKind = kind(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP);
const UNIX_DGRAM: SocketKind = kind(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
const UNIX_STREAM: SocketKind = kind(libc::AF_UNIX, libc::SOCK_STREAM, 0);
const NETLINK: SocketKind = kind(libc::AF_NETLINK, libc::SOCK_RAW, 0);

const fn kind(family: i32, sock_type: i32, protocol: i32) -> SocketKind {
    SocketKind {
        family,
        sock_type,
        protocol,
    }
}

fn sa4(family: i32, ip: &str, port: u16) -> Vec<u8> {
    let mut b = encode(SocketAddr::new(ip.parse().unwrap(), port));
    b[..2].copy_from_slice(&(family as u16).to_ne_bytes());
    b
}

fn sa6(ip: &str, port: u16, scope: u32) -> Vec<u8> {
    encode(SocketAddr::V6(SocketAddrV6::new(
        ip.parse().unwrap(),
        port,
        0,
        scope,
    )))
}

fn local(addr: &str) -> Known {
    Known {
        local: Some(addr.parse().unwrap()),
        ..Known::default()
    }
}

fn unbound(v6: bool) -> Known {
    local(if v6 { "[::]:0" } else { "0.0.0.0:0" })
}

fn to(use_: Use, k: SocketKind, state: Known, name: &[u8]) -> Reading {
    read(use_, k, &mut { state }, Some(name))
}

fn endpoint(r: &Reading) -> Option<String> {
    match r {
        Reading::Ip { endpoint, .. } => Some(endpoint.to_string()),
        _ => None,
    }
}

/// F1: `udp_sendmsg` reads `AF_UNSPEC` as `AF_INET`; `udpv6_sendmsg` as no destination;
/// a connect dissolves the association; Fast Open refuses it.
#[test]
fn f1_unspec_as_each_kernel_path_reads_it() {
    let unspec = sa4(libc::AF_UNSPEC, "127.0.0.1", 53);
    for k in [UDP4, LITE4] {
        let r = to(Use::Send, k, unbound(false), &unspec);
        assert_eq!(endpoint(&r).as_deref(), Some("127.0.0.1:53"));
        // What the broker passes says AF_INET.
        let Reading::Ip { sockaddr, .. } = r else {
            unreachable!()
        };
        assert_eq!(&sockaddr[..2], &(libc::AF_INET as u16).to_ne_bytes());
        assert_eq!(
            to(Use::Connect, k, unbound(false), &unspec),
            Reading::Disconnect
        );
    }
    assert_eq!(to(Use::Send, UDP6, unbound(true), &unspec), Reading::Peer);
    assert_eq!(
        to(Use::Connect, UDP6, unbound(true), &unspec),
        Reading::Disconnect
    );
    assert_eq!(
        to(Use::Connect, TCP4, unbound(false), &unspec),
        Reading::Disconnect
    );
    assert_eq!(
        to(Use::FastOpen, TCP4, unbound(false), &unspec),
        Reading::Errno(libc::EOPNOTSUPP)
    );
    assert_eq!(
        to(Use::Connect, UNIX_DGRAM, Known::default(), &unspec[..2]),
        Reading::Disconnect
    );
    assert_eq!(
        to(Use::Connect, UNIX_STREAM, Known::default(), &unspec),
        Reading::Errno(libc::EINVAL)
    );
    // Other IP protocols take no AF_UNSPEC destination.
    assert!(matches!(
        to(Use::Send, ICMP4, unbound(false), &unspec),
        Reading::Refused(_)
    ));
}

/// R1: a zero IPv4 destination goes to the socket's source address, to loopback only
/// when it has none; with an interface and no source it is not classified.
#[test]
fn r1_zero_destination_is_the_source_address() {
    let zero = sa4(libc::AF_INET, "0.0.0.0", 80);
    for (k, u) in [
        (UDP4, Use::Send),
        (UDP4, Use::Connect),
        (TCP4, Use::Connect),
        (TCP4, Use::FastOpen),
    ] {
        let r = to(u, k, local("127.0.0.2:0"), &zero);
        assert_eq!(endpoint(&r).as_deref(), Some("127.0.0.2:80"), "{k:?} {u:?}");
        let Reading::Ip { sockaddr, .. } = r else {
            unreachable!()
        };
        assert_eq!(&sockaddr[4..8], &[127, 0, 0, 2]);
        let r = to(u, k, unbound(false), &zero);
        assert_eq!(endpoint(&r).as_deref(), Some("127.0.0.1:80"));
        let r = to(u, k, local("0.0.0.0:5353"), &zero);
        assert_eq!(endpoint(&r).as_deref(), Some("127.0.0.1:80"));
        // A multicast or broadcast bind gives no source (`inet_saddr` is 0).
        let r = to(u, k, local("224.0.0.251:5353"), &zero);
        assert_eq!(endpoint(&r).as_deref(), Some("127.0.0.1:80"));
    }
    let bound_if = Known {
        local: Some("0.0.0.0:0".parse().unwrap()),
        bound_interface: 2,
        ..Known::default()
    };
    assert!(matches!(
        to(Use::Send, UDP4, bound_if, &zero),
        Reading::Refused(_)
    ));
    let unicast_if = Known {
        local: Some("0.0.0.0:0".parse().unwrap()),
        unicast_interface: 2,
        ..Known::default()
    };
    assert!(matches!(
        to(Use::Send, UDP4, unicast_if, &zero),
        Reading::Refused(_)
    ));
    // TCP routes by `SO_BINDTOIFINDEX` only.
    assert_eq!(
        endpoint(&to(Use::Connect, TCP4, unicast_if, &zero)).as_deref(),
        Some("127.0.0.1:80")
    );
    assert!(matches!(
        to(Use::Send, UDP4, Known::default(), &zero),
        Reading::Refused(_)
    ));
}

/// R1 and R1b on IPv6 sockets: `::ffff:0.0.0.0` is the IPv4 source; `::` is `::1`, or
/// `127.0.0.1` from a socket whose source is IPv4-mapped (L11).
#[test]
fn r1b_unspecified_on_ipv6_sockets() {
    let mapped_zero = sa6("::ffff:0.0.0.0", 80, 0);
    let any = sa6("::", 80, 0);
    for (k, u) in [
        (UDP6, Use::Send),
        (UDP6, Use::Connect),
        (TCP6, Use::Connect),
    ] {
        let from_mapped = local("[::ffff:127.0.0.2]:0");
        assert_eq!(
            endpoint(&to(u, k, from_mapped, &mapped_zero)).as_deref(),
            Some("127.0.0.2:80")
        );
        assert_eq!(
            endpoint(&to(u, k, from_mapped, &any)).as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(
            endpoint(&to(u, k, unbound(true), &any)).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(
            endpoint(&to(u, k, unbound(true), &mapped_zero)).as_deref(),
            Some("127.0.0.1:80")
        );
        let Reading::Ip { sockaddr, .. } = to(u, k, from_mapped, &any) else {
            unreachable!()
        };
        assert_eq!(
            &sockaddr[8..24],
            &Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }
    let only = Known {
        local: Some("[::]:0".parse().unwrap()),
        v6only: true,
        ..Known::default()
    };
    assert_eq!(
        to(Use::Send, UDP6, only, &mapped_zero),
        Reading::Errno(libc::ENETUNREACH)
    );
    assert_eq!(
        to(Use::Connect, TCP6, only, &mapped_zero),
        Reading::Errno(libc::ENETUNREACH)
    );
    let v4 = sa4(libc::AF_INET, "127.0.0.1", 80);
    assert_eq!(
        to(Use::Send, UDP6, only, &v4),
        Reading::Errno(libc::ENETUNREACH)
    );
    assert_eq!(
        to(Use::Connect, UDP6, only, &v4),
        Reading::Errno(libc::EAFNOSUPPORT)
    );
    assert_eq!(
        endpoint(&to(Use::Send, UDP6, unbound(true), &v4)).as_deref(),
        Some("127.0.0.1:80")
    );
    // TCPv6 takes no AF_INET address: EINVAL when short, EAFNOSUPPORT at full length.
    assert_eq!(
        to(Use::Connect, TCP6, unbound(true), &v4),
        Reading::Errno(libc::EINVAL)
    );
    let mut long = v4.clone();
    long.resize(28, 0);
    assert_eq!(
        to(Use::Connect, TCP6, unbound(true), &long),
        Reading::Errno(libc::EAFNOSUPPORT)
    );
}

/// The lengths and families each kernel path checks, in its order.
#[test]
fn lengths_and_families_in_the_kernels_order() {
    let v4 = sa4(libc::AF_INET, "127.0.0.1", 80);
    let v6 = sa6("::1", 80, 0);
    for len in 0..16 {
        assert_eq!(
            to(Use::Send, UDP4, unbound(false), &v4[..len]),
            Reading::Errno(libc::EINVAL)
        );
        assert_eq!(
            to(Use::Bind, UDP4, unbound(false), &v4[..len]),
            Reading::Errno(libc::EINVAL)
        );
    }
    assert_eq!(
        to(Use::Send, UDP4, unbound(false), &v6),
        Reading::Errno(libc::EAFNOSUPPORT)
    );
    assert_eq!(
        to(
            Use::Send,
            UDP4,
            unbound(false),
            &sa4(libc::AF_INET, "127.0.0.1", 0)
        ),
        Reading::Errno(libc::EINVAL)
    );
    assert_eq!(
        to(
            Use::Connect,
            UDP4,
            unbound(false),
            &sa4(libc::AF_INET, "127.0.0.1", 0)
        )
        .clone(),
        Reading::Ip {
            endpoint: "127.0.0.1:0".parse().unwrap(),
            sockaddr: sa4(libc::AF_INET, "127.0.0.1", 0),
        }
    );
    assert_eq!(
        to(Use::Send, UDP6, unbound(true), &v6[..23]),
        Reading::Errno(libc::EINVAL)
    );
    assert_eq!(
        to(Use::Send, UDP6, unbound(true), &v6[..1]),
        Reading::Errno(libc::EINVAL)
    );
    let mut other = v6.clone();
    other[..2].copy_from_slice(&3u16.to_ne_bytes());
    assert_eq!(
        to(Use::Send, UDP6, unbound(true), &other),
        Reading::Errno(libc::EINVAL)
    );
    assert_eq!(
        to(Use::Connect, UDP6, unbound(true), &other),
        Reading::Errno(libc::EAFNOSUPPORT)
    );
    assert_eq!(
        endpoint(&to(Use::Send, UDP6, unbound(true), &v6[..24])).as_deref(),
        Some("[::1]:80")
    );
    // Binds: AF_UNSPEC only with INADDR_ANY, as the wildcard.
    let unspec_any = sa4(libc::AF_UNSPEC, "0.0.0.0", 80);
    let Reading::Local { addr, sockaddr } = to(Use::Bind, TCP4, unbound(false), &unspec_any) else {
        panic!("wildcard")
    };
    assert_eq!(addr.to_string(), "0.0.0.0:80");
    assert_eq!(&sockaddr[..2], &(libc::AF_INET as u16).to_ne_bytes());
    let unspec = sa4(libc::AF_UNSPEC, "127.0.0.1", 80);
    assert_eq!(
        to(Use::Bind, TCP4, unbound(false), &unspec),
        Reading::Errno(libc::EAFNOSUPPORT)
    );
}

/// L12: unix addresses of 3 to 110 bytes of `AF_UNIX`; the autobind of a bind is the
/// family alone.
#[test]
fn l12_unix_lengths() {
    let mut b = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    b.extend_from_slice(b"/tmp/x.sock");
    b.resize(128, 0);
    for len in [0usize, 1, 2, 111, 112, 127, 128] {
        for k in [UNIX_DGRAM, UNIX_STREAM] {
            let expect = Reading::Errno(libc::EINVAL);
            assert_eq!(
                to(Use::Connect, k, Known::default(), &b[..len]),
                expect,
                "{len}"
            );
            if len != 2 {
                assert_eq!(
                    to(Use::Bind, k, Known::default(), &b[..len]),
                    expect,
                    "{len}"
                );
            }
        }
        if len > 0 {
            assert_eq!(
                to(Use::Send, UNIX_DGRAM, Known::default(), &b[..len]),
                Reading::Errno(libc::EINVAL)
            );
        }
    }
    assert_eq!(
        to(Use::Bind, UNIX_DGRAM, Known::default(), &b[..2]),
        Reading::UnixAutobind
    );
    assert_eq!(
        to(Use::Send, UNIX_DGRAM, Known::default(), &[]),
        Reading::Peer
    );
    for len in [3usize, 13, 14, 110] {
        let r = to(Use::Connect, UNIX_STREAM, Known::default(), &b[..len]);
        let want = String::from_utf8_lossy(&b[2..len.min(13)]).into_owned();
        assert_eq!(r, Reading::UnixPath(want.into()), "{len}");
    }
    let mut wrong = b.clone();
    wrong[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    assert_eq!(
        to(Use::Connect, UNIX_STREAM, Known::default(), &wrong[..16]),
        Reading::Errno(libc::EINVAL)
    );
    // Abstract names are every byte the length covers.
    let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    a.extend_from_slice(b"\0name\0x");
    assert_eq!(
        to(Use::Connect, UNIX_STREAM, Known::default(), &a),
        Reading::UnixAbstract(b"name\0x".to_vec())
    );
    // A stream socket does not read a send's address.
    assert_eq!(
        to(Use::Send, UNIX_STREAM, Known::default(), &a),
        Reading::Ignored
    );
}

/// L1: a scope id on a link-local bind, UDP connect or TCP connect picks the socket's
/// interface.
#[test]
fn l1_link_local_scope_picks_an_interface() {
    let scoped = sa6("fe80::1", 80, 2);
    assert_eq!(
        to(Use::Bind, UDP6, unbound(true), &scoped),
        Reading::Refused("interface-scope")
    );
    assert_eq!(
        to(Use::Bind, TCP6, unbound(true), &scoped),
        Reading::Refused("interface-scope")
    );
    assert_eq!(
        to(Use::Connect, UDP6, unbound(true), &scoped),
        Reading::Refused("interface-scope")
    );
    let mcast = sa6("ff02::fb", 5353, 2);
    assert_eq!(
        to(Use::Connect, UDP6, unbound(true), &mcast),
        Reading::Refused("interface-scope")
    );
    // Without a scope id, or one the kernel does not read, or for one datagram: decided.
    assert!(matches!(
        to(Use::Bind, UDP6, unbound(true), &sa6("fe80::1", 80, 0)),
        Reading::Local { .. }
    ));
    assert!(matches!(
        to(Use::Bind, UDP6, unbound(true), &scoped[..24]),
        Reading::Local { .. }
    ));
    assert!(matches!(
        to(Use::Bind, UDP6, unbound(true), &sa6("::1", 80, 2)),
        Reading::Local { .. }
    ));
    assert_eq!(
        endpoint(&to(Use::Send, UDP6, unbound(true), &scoped)).as_deref(),
        Some("[fe80::1%2]:80")
    );
    // A TCP connect, and the connect of a Fast Open send: the interface outlives the
    // connection.
    for usage in [Use::Connect, Use::FastOpen] {
        assert_eq!(
            to(usage, TCP6, unbound(true), &scoped),
            Reading::Refused("interface-scope")
        );
    }
    // Without a scope id the kernel needs the socket's own interface (none here: EINVAL),
    // and multicast is unreachable before the scope is looked at.
    assert_eq!(
        endpoint(&to(
            Use::Connect,
            TCP6,
            unbound(true),
            &sa6("fe80::1", 80, 0)
        ))
        .as_deref(),
        Some("[fe80::1]:80")
    );
    assert_eq!(
        to(Use::Connect, TCP6, unbound(true), &sa6("ff02::1", 80, 2)),
        Reading::Errno(libc::ENETUNREACH)
    );
    assert!(needs_scope("fe80::1".parse().unwrap()) && needs_scope("ff01::1".parse().unwrap()));
    assert!(!needs_scope("ff05::1".parse().unwrap()) && !needs_scope("fec0::1".parse().unwrap()));
}

#[test]
fn other_families_and_stream_sends() {
    let v4 = sa4(libc::AF_INET, "127.0.0.1", 80);
    assert_eq!(
        to(Use::Connect, NETLINK, Known::default(), &v4),
        Reading::OtherFamily(libc::AF_NETLINK)
    );
    assert_eq!(
        read(Use::Send, NETLINK, &mut Known::default(), None),
        Reading::Peer
    );
    assert_eq!(to(Use::Send, TCP4, unbound(false), &v4), Reading::Ignored);
    assert_eq!(
        read(Use::FastOpen, TCP4, &mut unbound(false), None),
        Reading::Peer
    );
    // Other IP protocols: plain addresses of their own family only.
    assert_eq!(
        endpoint(&to(Use::Send, ICMP4, unbound(false), &v4)).as_deref(),
        Some("127.0.0.1:80")
    );
    assert!(matches!(
        to(
            Use::Send,
            ICMP4,
            unbound(false),
            &sa4(libc::AF_INET, "0.0.0.0", 0)
        ),
        Reading::Refused(_)
    ));
    assert!(matches!(
        to(Use::Send, ICMP4, unbound(false), &sa6("::1", 0, 0)),
        Reading::Refused(_)
    ));
}

fn any_state() -> impl Strategy<Value = Known> {
    let local = prop_oneof![
        Just(None),
        Just(Some("0.0.0.0:0")),
        Just(Some("0.0.0.0:4000")),
        Just(Some("127.0.0.2:0")),
        Just(Some("127.0.0.2:4000")),
        Just(Some("224.0.0.1:4000")),
        Just(Some("[::]:0")),
        Just(Some("[::1]:4000")),
        Just(Some("[::ffff:127.0.0.2]:4000")),
        Just(Some("[::ffff:0.0.0.0]:4000")),
    ];
    (local, any::<bool>(), 0u32..3, 0u32..3).prop_map(|(l, v6only, b, u)| Known {
        local: l.map(|s| s.parse().unwrap()),
        v6only,
        bound_interface: b,
        unicast_interface: u,
    })
}

fn any_kind() -> impl Strategy<Value = SocketKind> {
    prop::sample::select(vec![
        UDP4,
        UDP6,
        LITE4,
        TCP4,
        TCP6,
        ICMP4,
        UNIX_DGRAM,
        UNIX_STREAM,
        NETLINK,
    ])
}

fn any_use() -> impl Strategy<Value = Use> {
    prop::sample::select(vec![Use::Connect, Use::Bind, Use::Send, Use::FastOpen])
}

/// Addresses biased to the forms that matter: each family, the unspecified, mapped and
/// link-local addresses, every length.
fn any_name() -> impl Strategy<Value = Vec<u8>> {
    let ip4 = prop::sample::select(vec!["0.0.0.0", "127.0.0.1", "10.0.0.1", "255.255.255.255"]);
    let ip6 = prop::sample::select(vec![
        "::",
        "::1",
        "::ffff:0.0.0.0",
        "::ffff:127.0.0.1",
        "fe80::1",
        "ff02::1",
        "64:ff9b::1",
    ]);
    let family = prop::sample::select(vec![0i32, 1, 2, 10, 16, 0xffff]);
    prop_oneof![
        (family.clone(), ip4, any::<u16>()).prop_map(|(f, ip, p)| sa4(f, ip, p)),
        (family, ip6, any::<u16>(), 0u32..3).prop_map(|(f, ip, p, s)| {
            let mut b = sa6(ip, p, s);
            b[..2].copy_from_slice(&(f as u16).to_ne_bytes());
            b
        }),
        prop::collection::vec(any::<u8>(), 0..130),
    ]
    .prop_flat_map(|b| {
        let n = b.len();
        (Just(b), 0..=n.max(1))
    })
    .prop_map(|(mut b, cut)| {
        b.truncate(cut);
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// What the broker passes names exactly what it decided: reading its own bytes
    /// again gives the same endpoint and the same bytes; an IP destination is never
    /// unspecified; AF_UNSPEC never becomes a destination of a connect.
    #[test]
    fn readings_are_fixed_points(u in any_use(), k in any_kind(), state in any_state(), name in any_name()) {
        let first = read(u, k, &mut { state }, Some(&name));
        prop_assert_eq!(&first, &read(u, k, &mut { state }, Some(&name)));
        match &first {
            Reading::Ip { endpoint, sockaddr } => {
                prop_assert!(!endpoint.ip().is_unspecified(), "{:?}", first);
                prop_assert_eq!(sockaddr.len(), name.len());
                prop_assert!(u != Use::Bind);
                let again = read(u, k, &mut { state }, Some(sockaddr));
                prop_assert_eq!(&again, &first);
                if name.len() >= 2 && family(&name) == libc::AF_UNSPEC {
                    prop_assert!(matches!(u, Use::Send | Use::FastOpen), "only a UDP send reads AF_UNSPEC as IPv4");
                    prop_assert!(is_udp(k));
                    prop_assert_eq!(k.family, libc::AF_INET);
                }
            }
            Reading::Local { addr, sockaddr } => {
                prop_assert_eq!(u, Use::Bind);
                prop_assert_eq!(sockaddr.len(), name.len());
                let again = read(u, k, &mut { state }, Some(sockaddr));
                prop_assert_eq!(&again, &first);
                let _ = addr;
            }
            Reading::Disconnect => {
                prop_assert_eq!(u, Use::Connect);
                prop_assert_eq!(family(&name), libc::AF_UNSPEC);
            }
            Reading::UnixPath(_) | Reading::UnixAbstract(_) => {
                prop_assert_eq!(k.family, libc::AF_UNIX);
                prop_assert!((3..=110).contains(&name.len()));
            }
            Reading::Errno(e) => prop_assert!([libc::EINVAL, libc::EAFNOSUPPORT, libc::ENETUNREACH, libc::EOPNOTSUPP].contains(e)),
            _ => {}
        }
    }
}
