use super::cmsg::wants_capability;
use super::mmsg::covered;
use super::mmsg::writable_ranges;
use super::mmsg::WriteBack;
use super::*;

fn kind(family: i32, sock_type: i32, protocol: i32) -> SocketKind {
    SocketKind {
        family,
        sock_type,
        protocol,
    }
}

fn sockaddr(addr: std::net::SocketAddr) -> Vec<u8> {
    address::encode(addr)
}

/// `udp_sendmsg`'s first checks (size, then `MSG_OOB`) for destinations that reach it:
/// any on an IPv4 socket, an IPv4 or IPv4-mapped one on an IPv6 socket that is not
/// IPv6-only; never an IPv6 destination, nor a send without one.
#[test]
fn udp_first_checks_size_then_oob_on_ipv4_destinations() {
    let udp4 = kind(libc::AF_INET, libc::SOCK_DGRAM, 0);
    let udp6 = kind(libc::AF_INET6, libc::SOCK_DGRAM, 0);
    let v4 = sockaddr("127.0.0.99:9".parse().unwrap());
    let mapped = sockaddr("[::ffff:127.0.0.99]:9".parse().unwrap());
    let v6 = sockaddr("[::1]:9".parse().unwrap());
    let state = |v6only| address::Known {
        v6only,
        ..Default::default()
    };
    let big = 0x1_0000;
    let check = |kind, v6only, name: Option<&[u8]>, total, flags| {
        udp_first(kind, &mut state(v6only), name, total, flags)
    };
    assert_eq!(check(udp4, false, Some(&v4), big, 0), Some(libc::EMSGSIZE));
    assert_eq!(check(udp4, false, Some(&v4), 0xFFFF, 0), None);
    assert_eq!(
        check(udp4, false, Some(&v4), 1, libc::MSG_OOB),
        Some(libc::EOPNOTSUPP)
    );
    // The size comes first.
    let oob_big = check(udp4, false, Some(&v4), big, libc::MSG_OOB);
    assert_eq!(oob_big, Some(libc::EMSGSIZE));
    // An IPv4 socket checks before the family of what it is given.
    assert_eq!(check(udp4, false, Some(&v6), big, 0), Some(libc::EMSGSIZE));
    assert_eq!(check(udp6, false, Some(&v4), big, 0), Some(libc::EMSGSIZE));
    assert_eq!(
        check(udp6, false, Some(&mapped), big, 0),
        Some(libc::EMSGSIZE)
    );
    assert_eq!(check(udp6, true, Some(&mapped), big, 0), None);
    assert_eq!(check(udp6, false, Some(&v6), big, libc::MSG_OOB), None);
    assert_eq!(check(udp4, false, None, big, libc::MSG_OOB), None);
}

/// `import_ubuf`'s range check, before the fd: a buffer that wraps or reaches into the
/// kernel's half is `EFAULT` (x86_64), its length clamped to `MAX_RW_COUNT` first.
#[test]
fn sendto_buffer_range_as_import_ubuf() {
    assert!(user_range(0x1000, 100));
    assert!(user_range(0, 0));
    let top = i64::MAX as u64;
    assert!(user_range(top - 100, 100));
    // A length past MAX_RW_COUNT counts as MAX_RW_COUNT.
    assert!(user_range(0x1000, u64::MAX));
    if cfg!(target_arch = "x86_64") {
        assert!(!user_range(top - 99, 100));
        assert!(!user_range(0xffff_8000_0000_0000, 1));
        assert!(!user_range(u64::MAX, 2));
    }
}

/// An `SO_PRIORITY` above `TC_PRIO_INTERACTIVE` needs a capability, and so does one the
/// broker cannot read (the kernel decides with the caller's); nothing else does.
#[test]
fn priority_above_six_is_sent_with_the_callers_capabilities() {
    let prio = |data: Vec<u8>| Cmsg {
        level: libc::SOL_SOCKET,
        kind: libc::SO_PRIORITY,
        data,
    };
    assert!(!wants_capability(&prio(6u32.to_ne_bytes().to_vec())));
    assert!(!wants_capability(&prio(0u32.to_ne_bytes().to_vec())));
    assert!(wants_capability(&prio(7u32.to_ne_bytes().to_vec())));
    assert!(wants_capability(&prio(u32::MAX.to_ne_bytes().to_vec())));
    assert!(wants_capability(&prio(vec![1])));
    let ttl = Cmsg {
        level: libc::SOL_IP,
        kind: libc::IP_TTL,
        data: 300u32.to_ne_bytes().to_vec(),
    };
    assert!(!wants_capability(&ttl));
}

/// F14: a destination on an SCTP send sets up an association, so it is decided as a
/// connect, on one-to-one and one-to-many sockets of both IP families (the address
/// decoder reads it as an IP destination: `ops/address.rs`, other IP protocols); a Fast Open
/// send connects; other destinations are sends.
#[test]
fn f14_sctp_destination_is_a_connect() {
    let sctp = libc::IPPROTO_SCTP;
    for family in [libc::AF_INET, libc::AF_INET6] {
        for ty in [libc::SOCK_STREAM, libc::SOCK_SEQPACKET] {
            assert_eq!(
                send_op(kind(family, ty, sctp), 0),
                (Use::Send, Op::Connect),
                "{family}/{ty}"
            );
        }
        let tcp = kind(family, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        assert_eq!(send_op(tcp, 0), (Use::Send, Op::Send));
        assert_eq!(
            send_op(tcp, libc::MSG_FASTOPEN),
            (Use::FastOpen, Op::Connect)
        );
        let udp = kind(family, libc::SOCK_DGRAM, libc::IPPROTO_UDP);
        assert_eq!(send_op(udp, 0), (Use::Send, Op::Send));
        assert_eq!(send_op(udp, libc::MSG_FASTOPEN), (Use::Send, Op::Send));
    }
}

#[test]
fn writable_mappings_and_what_they_cover() {
    let maps = "55d0c000-55d0d000 r--p 00000000 fe:01 1 /usr/bin/x\n\
                55d0d000-55d0f000 rw-p 00001000 fe:01 1 /usr/bin/x\n\
                7f000000-7f001000 rw-p 00000000 00:00 0\n\
                7f001000-7f002000 rw-s 00000000 00:01 7 /dev/shm/y\n\
                7ffd0000-7ffd1000 ---p 00000000 00:00 0 \n";
    let w = writable_ranges(maps);
    assert_eq!(
        w,
        vec![
            (0x55d0_d000, 0x55d0_f000),
            (0x7f00_0000, 0x7f00_1000),
            (0x7f00_1000, 0x7f00_2000)
        ]
    );
    assert!(covered(&w, 0x55d0_d000, 4));
    assert!(covered(&w, 0x55d0_effc, 4));
    assert!(!covered(&w, 0x55d0_effe, 4), "runs past the mapping");
    assert!(!covered(&w, 0x55d0_c000, 4), "read-only");
    assert!(
        covered(&w, 0x7f00_0ffe, 4),
        "two writable mappings side by side"
    );
    assert!(!covered(&w, 0x7ffd_0000, 4), "no access");
    assert!(!covered(&w, u64::MAX - 1, 4));
}

/// The write-back goes where the caller may write and nowhere else: a read-only page
/// gets `EFAULT`, as the kernel's own `put_user` would give, although the memory file
/// itself could write there.
#[test]
fn write_back_into_this_process() {
    let tid = std::fs::read_link("/proc/thread-self")
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u32>()
        .unwrap();
    let target = std::hint::black_box(Box::new([0u32; 4]));
    let at = target.as_ptr() as u64 + 4;
    let back = WriteBack::read(WriteBack::open(tid).unwrap());
    back.write(at, &7u32.to_ne_bytes()).unwrap();
    assert_eq!(std::hint::black_box(&target)[1], 7);
    static READ_ONLY: [u32; 1] = [5];
    let ro = READ_ONLY.as_ptr() as u64;
    assert_eq!(back.write(ro, &9u32.to_ne_bytes()), Err(libc::EFAULT));
    assert_eq!(std::hint::black_box(&READ_ONLY)[0], 5);
}
