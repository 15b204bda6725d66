//! The broker's decoders of syscall arguments on arbitrary bytes: `sockaddr` (connect, bind,
//! sendto, read by the address table for one socket of each row), `msghdr` (sendmsg),
//! `mmsghdr` vectors (sendmmsg), iovecs and control messages.
//!
//! The input is two bytes of selection and then the caller's "memory": the pointers inside a
//! `msghdr` are offsets into it, and a read outside it fails with `EFAULT`, as
//! `process_vm_readv` does. The steps are those of `send.rs` (`read_message`,
//! `decide_sendmmsg`, the control checks), without a live process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netjail_broker::fuzzing::*;
use netjail_policy::{builtin, builtin_names, Op, Policy, Request};
use std::sync::OnceLock;

/// A policy with globs of every kind, to match decoded addresses against.
const GLOBS: &str = r#"
name = "globs"
default = "deny"
[[deny]]
connect = ["tcp://10.0.0.0/8:1-1024", "udp://[fe80::/10]:*"]
unix = ["/run/**/secret*", "@deny-*"]
[[allow]]
connect = ["any://loopback:*", "tcp://[::ffff:192.0.2.0/120]:443"]
bind = ["udp://0.0.0.0:5353"]
send = ["udp://127.0.0.53:53"]
unix = ["/tmp/*.sock", "/run/user/*/bus", "@abstract-*", "@"]
"#;

/// The built-in policies and [`GLOBS`], parsed once.
fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let mut list: Vec<Policy> = builtin_names()
            .iter()
            .map(|n| Policy::from_toml(builtin(n).unwrap(), n).unwrap())
            .collect();
        list.push(Policy::from_toml(GLOBS, "globs.toml").expect("the glob policy parses"));
        list
    })
}

/// `process_vm_readv` of `len` bytes at `ptr` in a caller whose memory is `mem`.
fn memory(mem: &[u8], ptr: u64, len: usize) -> Result<&[u8], i32> {
    if len == 0 {
        return Ok(&[]);
    }
    let start = usize::try_from(ptr).map_err(|_| EFAULT)?;
    let end = start.checked_add(len).ok_or(EFAULT)?;
    mem.get(start..end).ok_or(EFAULT)
}

/// The errnos the checks expect (this crate does not depend on libc).
const EFAULT: i32 = 14;
const EINVAL: i32 = 22;
const ENETUNREACH: i32 = 101;
const EAFNOSUPPORT: i32 = 97;
const EOPNOTSUPP: i32 = 95;

/// Socket kinds, one of each row of the broker's address table (`AF_*`, `SOCK_*` and
/// `IPPROTO_*` numbers: this crate does not depend on libc).
const KINDS: [SocketKind; 9] = [
    kind(2, 1, 6),    // TCP
    kind(10, 1, 6),   // TCPv6
    kind(2, 2, 17),   // UDP
    kind(10, 2, 136), // UDP-Lite v6
    kind(2, 2, 1),    // ping
    kind(1, 1, 0),    // unix stream
    kind(1, 2, 0),    // unix datagram
    kind(1, 5, 0),    // unix seqpacket
    kind(16, 3, 0),   // netlink
];

const fn kind(family: i32, sock_type: i32, protocol: i32) -> SocketKind {
    SocketKind {
        family,
        sock_type,
        protocol,
    }
}

const USES: [Use; 4] = [Use::Connect, Use::Bind, Use::Send, Use::FastOpen];

/// Reads an address as the broker does, and decides it as each policy would.
fn sockaddr(addr: &[u8], kind: SocketKind, usage: Use) {
    let local = if kind.family == 10 { "[::]:0" } else { "0.0.0.0:0" };
    let mut state = Known {
        local: local.parse().ok(),
        ..Known::default()
    };
    let reading = read(usage, kind, &mut state, Some(addr));
    let op = match usage {
        Use::Connect | Use::FastOpen => Op::Connect,
        Use::Send => Op::Send,
        Use::Bind => Op::Bind,
    };
    if let Some(t) = reading.target(proto_of(kind.sock_type, kind.protocol)) {
        let request = Request { op, target: t };
        for p in policies() {
            let _ = p.evaluate(&request);
        }
    }
    match reading {
        Reading::UnixPath(p) => {
            use std::os::unix::ffi::OsStrExt;
            let bytes = p.as_os_str().as_bytes();
            assert!(!bytes.is_empty() && !bytes.contains(&0), "{bytes:?}");
            assert!(addr.len() <= 110);
        }
        Reading::UnixAbstract(name) => assert!(name.len() + 3 <= addr.len() && addr.len() <= 110),
        Reading::Ip { endpoint, .. } => assert!(!endpoint.ip().is_unspecified()),
        Reading::Errno(e) => assert!([EINVAL, EAFNOSUPPORT, ENETUNREACH, EOPNOTSUPP].contains(&e)),
        _ => {}
    }
}

/// `read_message` and what `send_one` does with the control messages.
fn message(mem: &[u8], hdr: &MsgHdr, kind: SocketKind) -> Result<(), i32> {
    let name_len = hdr.name_len()?;
    assert!(name_len <= MAX_SOCKADDR_LEN);
    let name = memory(mem, hdr.name, name_len)?;
    let count = hdr.iov_count()?;
    let raw_iov = memory(mem, hdr.iov, count * IOVEC_LEN)?;
    let (iov, total) = iovecs(raw_iov, count)?;
    assert_eq!(iov.len(), count);
    assert_eq!(total, iov.iter().map(|v| v.len).sum::<u64>());
    let control_len = hdr.control_len()?;
    let raw_control = memory(mem, hdr.control, control_len)?;
    let control = cmsgs(raw_control)?;
    assert_eq!(cmsgs(&encode_cmsgs(&control)), Ok(control.clone()));
    if !name.is_empty() {
        sockaddr(name, kind, Use::Send);
    }
    for c in &control {
        if let Ok(fds) = rights(&c.data) {
            assert!(!fds.is_empty() && fds.len() <= 253);
        }
        if let Ok(cred) = ucred(&c.data) {
            assert_eq!(encode_ucred(cred), c.data);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let [mode, select, mem @ ..] = data else {
        return;
    };
    let kind = KINDS[usize::from(*select) % KINDS.len()];
    let usage = USES[usize::from(*select / 16) % USES.len()];
    match mode % 4 {
        // connect / bind / sendto: the address bytes alone (the broker copies at most 128).
        0 => sockaddr(&mem[..mem.len().min(MAX_SOCKADDR_LEN)], kind, usage),
        // sendmsg(fd, msg, flags): the msghdr at offset 0.
        1 => {
            if let Ok(raw) = memory(mem, 0, MSGHDR_LEN) {
                let _ = message(mem, &MsgHdr::parse(raw), kind);
            }
        }
        // sendmmsg(fd, vec, vlen, flags): vlen in the first four bytes, the vector after.
        2 => {
            let Some((vlen, rest)) = mem.split_first_chunk::<4>() else {
                return;
            };
            let count = u64::from(u32::from_ne_bytes(*vlen)).min(UIO_MAXIOV) as usize;
            let Ok(vector) = memory(rest, 0, count * MMSGHDR_LEN) else {
                return;
            };
            for entry in vector.chunks_exact(MMSGHDR_LEN) {
                if message(rest, &MsgHdr::parse(entry), kind).is_err() {
                    break;
                }
            }
        }
        // The syscall tables, and the sockaddr_un the broker builds for itself.
        _ => {
            if let Some((head, path)) = mem.split_first_chunk::<8>() {
                let arch = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
                let nr = i32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
                let _ = syscall(arch, nr);
                if let Some(addr) = sockaddr_un(path) {
                    use std::os::unix::ffi::OsStrExt;
                    if !path.is_empty() {
                        let want = std::ffi::OsStr::from_bytes(path);
                        let stream = KINDS[5];
                        let got = read(Use::Connect, stream, &mut Known::default(), Some(&addr));
                        assert_eq!(got, Reading::UnixPath(want.into()));
                    }
                }
            }
        }
    }
});
