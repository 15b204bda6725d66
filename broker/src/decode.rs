//! Turns a raw notification into an operation. Pure functions over numbers and bytes: no
//! system calls here. What an address means is `address.rs`'s.

use netjail_policy::Proto;

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_AARCH64`.
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

/// Largest address the kernel accepts (`sizeof(struct sockaddr_storage)`).
pub const MAX_SOCKADDR_LEN: usize = 128;

/// An intercepted system call, by meaning rather than number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syscall {
    /// `connect(fd, addr, addrlen)`.
    Connect,
    /// `bind(fd, addr, addrlen)`.
    Bind,
    /// `listen(fd, backlog)`.
    Listen,
    /// `sendto(fd, buf, len, flags, dest, destlen)`.
    SendTo,
    /// `sendmsg(fd, msg, flags)`.
    SendMsg,
    /// `sendmmsg(fd, msgvec, vlen, flags)`.
    SendMmsg,
    /// `socket(family, type, protocol)`: one the policy refuses, or a netlink route socket.
    Socket,
    /// `socketpair(family, type, protocol, sv)`: one the policy refuses.
    SocketPair,
}

/// Decodes `(arch, nr)` with the tables of x86_64 and aarch64. `None` for anything else: the
/// filter never sends other calls, so the broker refuses them.
pub fn syscall(arch: u32, nr: i32) -> Option<Syscall> {
    let call = match (arch, nr) {
        (AUDIT_ARCH_X86_64, 42) | (AUDIT_ARCH_AARCH64, 203) => Syscall::Connect,
        (AUDIT_ARCH_X86_64, 49) | (AUDIT_ARCH_AARCH64, 200) => Syscall::Bind,
        (AUDIT_ARCH_X86_64, 50) | (AUDIT_ARCH_AARCH64, 201) => Syscall::Listen,
        (AUDIT_ARCH_X86_64, 44) | (AUDIT_ARCH_AARCH64, 206) => Syscall::SendTo,
        (AUDIT_ARCH_X86_64, 46) | (AUDIT_ARCH_AARCH64, 211) => Syscall::SendMsg,
        (AUDIT_ARCH_X86_64, 307) | (AUDIT_ARCH_AARCH64, 269) => Syscall::SendMmsg,
        (AUDIT_ARCH_X86_64, 41) | (AUDIT_ARCH_AARCH64, 198) => Syscall::Socket,
        (AUDIT_ARCH_X86_64, 53) | (AUDIT_ARCH_AARCH64, 199) => Syscall::SocketPair,
        _ => return None,
    };
    Some(call)
}

/// The transport protocol a socket speaks, for matching `tcp://` and `udp://` rules.
pub fn proto_of(sock_type: i32, protocol: i32) -> Proto {
    match (sock_type, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Proto::Tcp,
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Proto::Udp,
        _ => Proto::Other,
    }
}

/// Builds a `sockaddr_un` for a filesystem path (used to connect through `/proc/self/fd/N`).
pub fn sockaddr_un(path: &[u8]) -> Option<Vec<u8>> {
    if path.len() >= 108 || path.contains(&0) {
        return None;
    }
    let mut v = Vec::with_capacity(2 + path.len() + 1);
    v.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    v.extend_from_slice(path);
    v.push(0);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_tables() {
        assert_eq!(syscall(AUDIT_ARCH_X86_64, 42), Some(Syscall::Connect));
        assert_eq!(syscall(AUDIT_ARCH_AARCH64, 203), Some(Syscall::Connect));
        assert_eq!(syscall(AUDIT_ARCH_X86_64, 203), None);
        for (x86, arm, call) in [
            (49, 200, Syscall::Bind),
            (50, 201, Syscall::Listen),
            (44, 206, Syscall::SendTo),
            (46, 211, Syscall::SendMsg),
            (307, 269, Syscall::SendMmsg),
            (41, 198, Syscall::Socket),
            (53, 199, Syscall::SocketPair),
        ] {
            assert_eq!(syscall(AUDIT_ARCH_X86_64, x86), Some(call));
            assert_eq!(syscall(AUDIT_ARCH_AARCH64, arm), Some(call));
        }
        assert_eq!(syscall(0x4000_0003, 102), None);
    }

    #[test]
    fn sockaddr_un_builder() {
        let v = sockaddr_un(b"/proc/self/fd/7").unwrap();
        assert_eq!(&v[2..], b"/proc/self/fd/7\0");
        assert!(sockaddr_un(&[b'a'; 108]).is_none());
    }
}
