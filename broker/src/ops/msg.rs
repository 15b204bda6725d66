//! The message structures of `sendmsg` and `sendmmsg` as raw bytes copied out of the caller:
//! `struct msghdr`, `struct mmsghdr`, `struct iovec` and the control messages. Pure functions,
//! no system calls; the layouts are those of the 64-bit ABIs the broker serves (x86_64 and
//! aarch64, where `size_t` and pointers are 8 bytes).
//!
//! Every size the caller gives is checked against the kernel's own limits before anything
//! is read, and each limit gives the errno the kernel would.

/// `sizeof(struct msghdr)`.
pub const MSGHDR_LEN: usize = 56;
/// `sizeof(struct mmsghdr)`: a msghdr, `msg_len` and padding.
pub const MMSGHDR_LEN: usize = 64;
/// Offset of `msg_len` in `struct mmsghdr`.
pub const MMSG_LEN_OFFSET: usize = 56;
/// `sizeof(struct iovec)`.
pub const IOVEC_LEN: usize = 16;
/// `UIO_MAXIOV`: the most iovecs in one message, and the most messages in one `sendmmsg`.
pub const UIO_MAXIOV: u64 = 1024;
/// The most control bytes the broker copies. The kernel's own bound is `optmem_max`
/// (128 KiB by default here); past it both answer `ENOBUFS`.
pub const MAX_CONTROL: u64 = 128 * 1024;
/// `SCM_MAX_FD`: the most descriptors in one `SCM_RIGHTS` message.
pub const SCM_MAX_FD: usize = 253;

/// A `struct msghdr` as the caller wrote it (pointers are the caller's addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHdr {
    /// `msg_name`: the destination's address in the caller.
    pub name: u64,
    /// `msg_namelen`.
    pub namelen: u32,
    /// `msg_iov`: the address of the iovec array in the caller.
    pub iov: u64,
    /// `msg_iovlen`.
    pub iovlen: u64,
    /// `msg_control`: the address of the control buffer in the caller.
    pub control: u64,
    /// `msg_controllen`.
    pub controllen: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    u32_at(b, at) as i32
}

impl MsgHdr {
    /// Decodes the first [`MSGHDR_LEN`] bytes of `b` (which must be at least that long).
    pub fn parse(b: &[u8]) -> MsgHdr {
        MsgHdr {
            name: u64_at(b, 0),
            namelen: u32_at(b, 8),
            iov: u64_at(b, 16),
            iovlen: u64_at(b, 24),
            control: u64_at(b, 32),
            controllen: u64_at(b, 40),
        }
    }

    /// The destination's length as the kernel takes it: no name pointer means no name; a
    /// negative length is `EINVAL`; a longer one is clamped to `sockaddr_storage`.
    pub fn name_len(&self) -> Result<usize, i32> {
        if self.name == 0 {
            return Ok(0);
        }
        if (self.namelen as i32) < 0 {
            return Err(libc::EINVAL);
        }
        Ok((self.namelen as usize).min(crate::ops::decode::MAX_SOCKADDR_LEN))
    }

    /// The number of iovecs, `EMSGSIZE` past [`UIO_MAXIOV`] as in the kernel.
    pub fn iov_count(&self) -> Result<usize, i32> {
        if self.iovlen > UIO_MAXIOV {
            return Err(libc::EMSGSIZE);
        }
        Ok(self.iovlen as usize)
    }

    /// The control length, `ENOBUFS` past what the kernel accepts.
    pub fn control_len(&self) -> Result<usize, i32> {
        if self.controllen > i32::MAX as u64 || self.controllen > MAX_CONTROL {
            return Err(libc::ENOBUFS);
        }
        Ok(self.controllen as usize)
    }
}

/// One `struct iovec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoVec {
    /// `iov_base`: the address in the caller.
    pub base: u64,
    /// `iov_len`.
    pub len: u64,
}

/// Decodes `count` iovecs and the total length; `EINVAL` when a length is negative as a
/// `ssize_t` or the total overflows it, as the kernel's `import_iovec` answers.
pub fn iovecs(b: &[u8], count: usize) -> Result<(Vec<IoVec>, u64), i32> {
    let mut out = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for i in 0..count {
        let v = IoVec {
            base: u64_at(b, i * IOVEC_LEN),
            len: u64_at(b, i * IOVEC_LEN + 8),
        };
        if v.len > i64::MAX as u64 {
            return Err(libc::EINVAL);
        }
        total = total.checked_add(v.len).ok_or(libc::EINVAL)?;
        out.push(v);
    }
    // The kernel caps the total at MAX_RW_COUNT rather than failing; the caller's copy is
    // bounded separately.
    Ok((out, total))
}

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmsg {
    /// `cmsg_level`.
    pub level: i32,
    /// `cmsg_type`.
    pub kind: i32,
    /// The payload, without the header or padding.
    pub data: Vec<u8>,
}

/// `CMSG_ALIGN` for 8-byte `size_t`.
fn align(n: usize) -> usize {
    (n + 7) & !7
}

/// `sizeof(struct cmsghdr)`.
pub const CMSGHDR_LEN: usize = 16;

/// Walks the control buffer as the kernel's `__scm_send`/`CMSG_NXTHDR` do: a header whose
/// length is shorter than a header or runs past the buffer is `EINVAL`; trailing bytes too
/// short for a header end the walk.
pub fn cmsgs(b: &[u8]) -> Result<Vec<Cmsg>, i32> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while b.len() - at >= CMSGHDR_LEN {
        let len = u64_at(b, at);
        if len < CMSGHDR_LEN as u64 || len > (b.len() - at) as u64 {
            return Err(libc::EINVAL);
        }
        let len = len as usize;
        out.push(Cmsg {
            level: i32_at(b, at + 8),
            kind: i32_at(b, at + 12),
            data: b[at + CMSGHDR_LEN..at + len].to_vec(),
        });
        at += align(len);
        if at >= b.len() {
            break;
        }
    }
    Ok(out)
}

/// Encodes control messages for the broker's own `sendmsg`.
pub fn encode_cmsgs(list: &[Cmsg]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in list {
        let len = CMSGHDR_LEN + c.data.len();
        out.extend_from_slice(&(len as u64).to_ne_bytes());
        out.extend_from_slice(&c.level.to_ne_bytes());
        out.extend_from_slice(&c.kind.to_ne_bytes());
        out.extend_from_slice(&c.data);
        out.resize(align(out.len()), 0);
    }
    out
}

/// The fds of an `SCM_RIGHTS` payload (whole ints only, as the kernel reads them: a block
/// without one passes nothing, `scm_fp_copy`); `EINVAL` for more than [`SCM_MAX_FD`].
pub fn rights(data: &[u8]) -> Result<Vec<i32>, i32> {
    let n = data.len() / 4;
    if n > SCM_MAX_FD {
        return Err(libc::EINVAL);
    }
    Ok((0..n).map(|i| i32_at(data, i * 4)).collect())
}

/// A control buffer that every kernel walk of control messages refuses (`EINVAL`): one header
/// whose length is shorter than a header. Passed in place of messages the kernel would refuse,
/// it makes the kernel answer `EINVAL` at the point of its own code where it would have
/// refused them, after whatever it checks first (a TCP socket's state, a datagram socket's
/// peer).
pub(crate) const REFUSED_CONTROL: [u8; CMSGHDR_LEN] = [0; CMSGHDR_LEN];

/// `SOL_UDP` (`linux/socket.h`).
pub(crate) const SOL_UDP: i32 = 17;
/// `UDP_SEGMENT` (`linux/udp.h`).
pub(crate) const UDP_SEGMENT: i32 = 103;
/// `IP_RETOPTS` (`linux/in.h`).
pub(crate) const IP_RETOPTS: i32 = 7;
/// `IP_PROTOCOL` (`linux/in.h`).
pub(crate) const IP_PROTOCOL: i32 = 52;
/// `SO_TIMESTAMPING_OLD` and `SO_TIMESTAMPING_NEW` (`asm-generic/socket.h`).
pub(crate) const SO_TIMESTAMPING_OLD: i32 = 37;
/// See [`SO_TIMESTAMPING_OLD`].
pub(crate) const SO_TIMESTAMPING_NEW: i32 = 65;
/// `SCM_DEVMEM_DMABUF` (`asm-generic/socket.h`).
pub(crate) const SCM_DEVMEM_DMABUF: i32 = 79;
/// `SCM_TS_OPT_ID` (`asm-generic/socket.h`).
pub(crate) const SCM_TS_OPT_ID: i32 = 81;
/// `IPV6_2292HOPLIMIT` (`linux/in6.h`).
pub(crate) const IPV6_2292HOPLIMIT: i32 = 8;
/// `IPV6_FLOWINFO` (`linux/in6.h`).
pub(crate) const IPV6_FLOWINFO: i32 = 11;

/// The `SOL_SOCKET` messages `__sock_cmsg_send` knows.
const SOCKET_KINDS: &[i32] = &[
    libc::SO_MARK,
    libc::SO_PRIORITY,
    SO_TIMESTAMPING_OLD,
    SO_TIMESTAMPING_NEW,
    libc::SCM_TXTIME,
    SCM_DEVMEM_DMABUF,
    SCM_TS_OPT_ID,
    libc::SCM_RIGHTS,
    libc::SCM_CREDENTIALS,
];
/// The `SOL_IP` messages `ip_cmsg_send` knows.
const IP_KINDS: &[i32] = &[
    IP_RETOPTS,
    libc::IP_PKTINFO,
    libc::IP_TTL,
    libc::IP_TOS,
    IP_PROTOCOL,
];
/// The `SOL_IPV6` messages `ip6_datagram_send_ctl` knows.
const IPV6_KINDS: &[i32] = &[
    libc::IPV6_PKTINFO,
    libc::IPV6_2292PKTINFO,
    IPV6_FLOWINFO,
    libc::IPV6_2292HOPOPTS,
    libc::IPV6_HOPOPTS,
    libc::IPV6_2292DSTOPTS,
    libc::IPV6_DSTOPTS,
    libc::IPV6_RTHDRDSTOPTS,
    libc::IPV6_2292RTHDR,
    libc::IPV6_RTHDR,
    IPV6_2292HOPLIMIT,
    libc::IPV6_HOPLIMIT,
    libc::IPV6_TCLASS,
    libc::IPV6_DONTFRAG,
];

/// The kernel code that takes the control messages of a send: each looks at some levels and
/// skips the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmsgReader {
    /// A unix socket (`__scm_send`): `SOL_SOCKET` only, where it knows `SCM_RIGHTS` and
    /// `SCM_CREDENTIALS`.
    Unix,
    /// UDP or UDP-Lite to an IPv4 destination (`udp_cmsg_send`, then `ip_cmsg_send`):
    /// `SOL_UDP`, `SOL_SOCKET` and `SOL_IP`; from an IPv6 socket also `IPV6_PKTINFO` (an
    /// IPv4-mapped source), and no other `SOL_IPV6` message.
    Udp4 {
        /// The socket is an IPv6 one.
        v6_socket: bool,
    },
    /// UDP or UDP-Lite to an IPv6 destination (`udp_cmsg_send`, then
    /// `ip6_datagram_send_ctl`): `SOL_UDP`, `SOL_SOCKET` and `SOL_IPV6`.
    Udp6,
    /// TCP (`sock_cmsg_send`): `SOL_SOCKET` only.
    Tcp,
}

/// What the kernel makes of one control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Not looked at: a level the reader skips, or `SCM_RIGHTS` and `SCM_CREDENTIALS` on an
    /// IP socket, which `__sock_cmsg_send` leaves alone ("semantically in `SOL_UNIX`").
    Skipped,
    /// A message the reader knows (its contents are checked when it is sent).
    Known,
    /// A type the reader does not know at a level it reads: the send fails with `EINVAL`.
    Unknown,
}

/// How `reader` takes control message `c`.
pub(crate) fn taken(reader: CmsgReader, c: &Cmsg) -> Taken {
    let known = |kinds: &[i32]| {
        if kinds.contains(&c.kind) {
            Taken::Known
        } else {
            Taken::Unknown
        }
    };
    let scm = matches!(c.kind, libc::SCM_RIGHTS | libc::SCM_CREDENTIALS);
    match (reader, c.level) {
        (CmsgReader::Unix, libc::SOL_SOCKET) if scm => Taken::Known,
        (CmsgReader::Unix, libc::SOL_SOCKET) => Taken::Unknown,
        (CmsgReader::Unix, _) => Taken::Skipped,
        (_, libc::SOL_SOCKET) if scm => Taken::Skipped,
        (_, libc::SOL_SOCKET) => known(SOCKET_KINDS),
        (CmsgReader::Tcp, _) => Taken::Skipped,
        (_, SOL_UDP) => known(&[UDP_SEGMENT]),
        (CmsgReader::Udp4 { .. }, libc::SOL_IP) => known(IP_KINDS),
        (CmsgReader::Udp4 { v6_socket: true }, libc::SOL_IPV6) if c.kind == libc::IPV6_PKTINFO => {
            Taken::Known
        }
        (CmsgReader::Udp6, libc::SOL_IPV6) => known(IPV6_KINDS),
        _ => Taken::Skipped,
    }
}

/// The control messages `reader` looks at, in order, or `EINVAL` when the kernel refuses the
/// buffer (`parsed` is [`cmsgs`]'s reading of it) or one of its types.
pub(crate) fn kernel_reads(
    reader: CmsgReader,
    parsed: &Result<Vec<Cmsg>, i32>,
) -> Result<Vec<Cmsg>, i32> {
    let list = parsed.as_ref().map_err(|e| *e)?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        match taken(reader, c) {
            Taken::Skipped => {}
            Taken::Known => out.push(c.clone()),
            Taken::Unknown => return Err(libc::EINVAL),
        }
    }
    Ok(out)
}

/// `struct ucred`: pid, uid, gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ucred {
    /// The process id.
    pub pid: i32,
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// Decodes an `SCM_CREDENTIALS` payload; `EINVAL` when it is not exactly a `ucred`.
pub fn ucred(data: &[u8]) -> Result<Ucred, i32> {
    if data.len() != 12 {
        return Err(libc::EINVAL);
    }
    Ok(Ucred {
        pid: i32_at(data, 0),
        uid: u32_at(data, 4),
        gid: u32_at(data, 8),
    })
}

/// Encodes a `ucred`.
pub fn encode_ucred(c: Ucred) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&c.pid.to_ne_bytes());
    v.extend_from_slice(&c.uid.to_ne_bytes());
    v.extend_from_slice(&c.gid.to_ne_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: u64, namelen: u32, iov: u64, iovlen: u64, control: u64, clen: u64) -> Vec<u8> {
        let mut b = vec![0u8; MSGHDR_LEN];
        b[0..8].copy_from_slice(&name.to_ne_bytes());
        b[8..12].copy_from_slice(&namelen.to_ne_bytes());
        b[16..24].copy_from_slice(&iov.to_ne_bytes());
        b[24..32].copy_from_slice(&iovlen.to_ne_bytes());
        b[32..40].copy_from_slice(&control.to_ne_bytes());
        b[40..48].copy_from_slice(&clen.to_ne_bytes());
        b
    }

    #[test]
    fn msghdr_layout_and_limits() {
        let m = MsgHdr::parse(&hdr(0x1000, 16, 0x2000, 3, 0x3000, 24));
        assert_eq!(
            m,
            MsgHdr {
                name: 0x1000,
                namelen: 16,
                iov: 0x2000,
                iovlen: 3,
                control: 0x3000,
                controllen: 24
            }
        );
        assert_eq!(m.name_len(), Ok(16));
        assert_eq!(m.iov_count(), Ok(3));
        assert_eq!(m.control_len(), Ok(24));
        // No name pointer: no destination, whatever the length says.
        assert_eq!(MsgHdr::parse(&hdr(0, 99, 0, 0, 0, 0)).name_len(), Ok(0));
        assert_eq!(
            MsgHdr::parse(&hdr(1, u32::MAX, 0, 0, 0, 0)).name_len(),
            Err(libc::EINVAL)
        );
        assert_eq!(MsgHdr::parse(&hdr(1, 4096, 0, 0, 0, 0)).name_len(), Ok(128));
        assert_eq!(
            MsgHdr::parse(&hdr(0, 0, 0, 1025, 0, 0)).iov_count(),
            Err(libc::EMSGSIZE)
        );
        assert_eq!(
            MsgHdr::parse(&hdr(0, 0, 0, 0, 1, u64::MAX)).control_len(),
            Err(libc::ENOBUFS)
        );
    }

    #[test]
    fn iovecs_sum_and_refuse_negative_lengths() {
        let mut b = Vec::new();
        for (base, len) in [(0x10u64, 5u64), (0x20, 7)] {
            b.extend_from_slice(&base.to_ne_bytes());
            b.extend_from_slice(&len.to_ne_bytes());
        }
        let (v, total) = iovecs(&b, 2).unwrap();
        assert_eq!(total, 12);
        assert_eq!(v[1], IoVec { base: 0x20, len: 7 });
        b[24..32].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(iovecs(&b, 2), Err(libc::EINVAL));
    }

    #[test]
    fn cmsgs_round_trip_and_malformed_headers() {
        let list = vec![
            Cmsg {
                level: libc::SOL_SOCKET,
                kind: libc::SCM_RIGHTS,
                data: [3i32, 4, 5].iter().flat_map(|f| f.to_ne_bytes()).collect(),
            },
            Cmsg {
                level: libc::SOL_IP,
                kind: libc::IP_TTL,
                data: 9i32.to_ne_bytes().to_vec(),
            },
        ];
        let bytes = encode_cmsgs(&list);
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(cmsgs(&bytes).unwrap(), list);
        assert_eq!(rights(&list[0].data).unwrap(), vec![3, 4, 5]);
        // A length shorter than the header, or past the buffer.
        let mut bad = bytes.clone();
        bad[0..8].copy_from_slice(&8u64.to_ne_bytes());
        assert_eq!(cmsgs(&bad), Err(libc::EINVAL));
        let mut long = bytes.clone();
        long[0..8].copy_from_slice(&4096u64.to_ne_bytes());
        assert_eq!(cmsgs(&long), Err(libc::EINVAL));
        // Fewer bytes than a header: nothing to walk.
        assert_eq!(cmsgs(&[0u8; 15]).unwrap(), vec![]);
        // The refused buffer is refused.
        assert_eq!(cmsgs(&REFUSED_CONTROL), Err(libc::EINVAL));
    }

    /// `scm_fp_copy`: whole ints only; a block without one passes nothing; more than
    /// `SCM_MAX_FD` in one block is `EINVAL`.
    #[test]
    fn rights_take_whole_ints_and_an_empty_block_is_nothing() {
        assert_eq!(rights(&[]), Ok(vec![]));
        assert_eq!(rights(&[1, 0, 0]), Ok(vec![]));
        assert_eq!(rights(&[7, 0, 0, 0, 9]), Ok(vec![7]));
        assert_eq!(rights(&[0u8; 4 * 253]).map(|v| v.len()), Ok(253));
        assert_eq!(rights(&[0u8; 4 * 254]), Err(libc::EINVAL));
    }

    fn c(level: i32, kind: i32) -> Cmsg {
        Cmsg {
            level,
            kind,
            data: vec![0; 4],
        }
    }

    /// Each reader looks at its own levels only, as the kernel's walks do; what it skips is
    /// never an error, and `SCM_RIGHTS` and `SCM_CREDENTIALS` mean nothing to an IP socket.
    #[test]
    fn readers_take_their_own_levels() {
        use CmsgReader::*;
        let sock = libc::SOL_SOCKET;
        let udp4 = Udp4 { v6_socket: false };
        let udp4_from_v6 = Udp4 { v6_socket: true };
        let cases: &[(CmsgReader, Cmsg, Taken)] = &[
            (Unix, c(sock, libc::SCM_RIGHTS), Taken::Known),
            (Unix, c(sock, libc::SCM_CREDENTIALS), Taken::Known),
            (Unix, c(sock, libc::SO_MARK), Taken::Unknown),
            (Unix, c(libc::SOL_IP, libc::IP_PKTINFO), Taken::Skipped),
            (Unix, c(9, 1), Taken::Skipped),
            (udp4, c(sock, libc::SCM_RIGHTS), Taken::Skipped),
            (udp4, c(sock, libc::SCM_CREDENTIALS), Taken::Skipped),
            (udp4, c(sock, libc::SO_MARK), Taken::Known),
            (udp4, c(sock, SO_TIMESTAMPING_NEW), Taken::Known),
            (udp4, c(sock, 99), Taken::Unknown),
            (udp4, c(libc::SOL_IP, libc::IP_TTL), Taken::Known),
            (udp4, c(libc::SOL_IP, libc::IP_PKTINFO), Taken::Known),
            (udp4, c(libc::SOL_IP, 99), Taken::Unknown),
            (udp4, c(libc::SOL_IPV6, libc::IPV6_PKTINFO), Taken::Skipped),
            (
                udp4_from_v6,
                c(libc::SOL_IPV6, libc::IPV6_PKTINFO),
                Taken::Known,
            ),
            (
                udp4_from_v6,
                c(libc::SOL_IPV6, libc::IPV6_HOPLIMIT),
                Taken::Skipped,
            ),
            (udp4, c(SOL_UDP, UDP_SEGMENT), Taken::Known),
            (udp4, c(SOL_UDP, 1), Taken::Unknown),
            (udp4, c(libc::SOL_TCP, 1), Taken::Skipped),
            (Udp6, c(libc::SOL_IPV6, libc::IPV6_HOPLIMIT), Taken::Known),
            (Udp6, c(libc::SOL_IPV6, 99), Taken::Unknown),
            (Udp6, c(libc::SOL_IP, libc::IP_TTL), Taken::Skipped),
            (Udp6, c(SOL_UDP, UDP_SEGMENT), Taken::Known),
            (Tcp, c(sock, libc::SCM_RIGHTS), Taken::Skipped),
            (Tcp, c(sock, SO_TIMESTAMPING_OLD), Taken::Known),
            (Tcp, c(sock, 99), Taken::Unknown),
            (Tcp, c(libc::SOL_IP, libc::IP_PKTINFO), Taken::Skipped),
            (Tcp, c(SOL_UDP, 1), Taken::Skipped),
        ];
        for (reader, cmsg, want) in cases {
            assert_eq!(taken(*reader, cmsg), *want, "{reader:?} {cmsg:?}");
        }
    }

    /// The kernel's reading of a whole buffer: malformed is `EINVAL`, the first unknown type
    /// is `EINVAL` wherever it is, skipped messages are left out.
    #[test]
    fn kernel_reads_a_buffer_in_order() {
        let udp4 = CmsgReader::Udp4 { v6_socket: false };
        let rights = c(libc::SOL_SOCKET, libc::SCM_RIGHTS);
        let ttl = c(libc::SOL_IP, libc::IP_TTL);
        let ok = Ok(vec![rights.clone(), ttl.clone(), c(6, 1)]);
        assert_eq!(kernel_reads(udp4, &ok), Ok(vec![ttl.clone()]));
        assert_eq!(
            kernel_reads(CmsgReader::Unix, &ok),
            Ok(vec![rights.clone()])
        );
        let unknown = Ok(vec![ttl.clone(), c(libc::SOL_IP, 99)]);
        assert_eq!(kernel_reads(udp4, &unknown), Err(libc::EINVAL));
        assert_eq!(kernel_reads(CmsgReader::Udp6, &unknown), Ok(vec![]));
        assert_eq!(kernel_reads(udp4, &Err(libc::EINVAL)), Err(libc::EINVAL));
    }

    #[test]
    fn ucred_round_trip() {
        let c = Ucred {
            pid: 42,
            uid: 1000,
            gid: 100,
        };
        assert_eq!(ucred(&encode_ucred(c)), Ok(c));
        assert_eq!(ucred(&[0; 11]), Err(libc::EINVAL));
    }
}
