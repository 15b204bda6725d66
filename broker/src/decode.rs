//! Turns a raw notification into an operation, and a copied `sockaddr` into a policy
//! [`Target`]. Pure functions over bytes: no system calls here.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use netjail_policy::{Proto, Target};

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
        _ => return None,
    };
    Some(call)
}

/// Why a copied address cannot be a destination. Each one is what the kernel answers with
/// `EINVAL` before anything reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Shorter than its family needs.
    #[error("address too short for its family")]
    TooShort,
    /// A unix address with no name at all.
    #[error("unix address without a name")]
    Unnamed,
}

impl AddressError {
    /// The errno the kernel gives for this address.
    pub fn errno(self) -> i32 {
        libc::EINVAL
    }
}

/// The transport protocol a socket speaks, for matching `tcp://` and `udp://` rules.
pub fn proto_of(sock_type: i32, protocol: i32) -> Proto {
    match (sock_type, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Proto::Tcp,
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Proto::Udp,
        _ => Proto::Other,
    }
}

/// Decodes the bytes of a `sockaddr` as the kernel will read them: by the family in the
/// address itself (an IPv6 UDP socket accepts an `AF_INET` address, for one).
///
/// `proto` is the protocol of the socket the address is given to.
pub fn target(addr: &[u8], proto: Proto) -> Result<Target, AddressError> {
    if addr.len() < 2 {
        return Err(AddressError::TooShort);
    }
    let family = i32::from(u16::from_ne_bytes([addr[0], addr[1]]));
    match family {
        libc::AF_UNSPEC => Ok(Target::Unspec),
        libc::AF_INET => {
            if addr.len() < 16 {
                return Err(AddressError::TooShort);
            }
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let ip = Ipv4Addr::new(addr[4], addr[5], addr[6], addr[7]);
            Ok(Target::Inet {
                proto,
                addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            })
        }
        libc::AF_INET6 => {
            // SIN6_LEN_RFC2133: the scope id is optional.
            if addr.len() < 24 {
                return Err(AddressError::TooShort);
            }
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let flowinfo = u32::from_be_bytes([addr[4], addr[5], addr[6], addr[7]]);
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[8..24]);
            let scope = if addr.len() >= 28 {
                u32::from_ne_bytes([addr[24], addr[25], addr[26], addr[27]])
            } else {
                0
            };
            Ok(Target::Inet {
                proto,
                addr: SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(octets),
                    port,
                    flowinfo,
                    scope,
                )),
            })
        }
        libc::AF_UNIX => unix_target(&addr[2..]),
        other => Ok(Target::OtherFamily(other)),
    }
}

fn unix_target(sun_path: &[u8]) -> Result<Target, AddressError> {
    if sun_path.is_empty() {
        return Err(AddressError::Unnamed);
    }
    if sun_path[0] == 0 {
        // Abstract: the name is every byte the length covers, NULs included.
        return Ok(Target::UnixAbstract(sun_path[1..].to_vec()));
    }
    let end = sun_path
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(sun_path.len());
    Ok(Target::UnixPath(PathBuf::from(
        std::ffi::OsStr::from_bytes(&sun_path[..end]),
    )))
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

    fn v4(port: u16, ip: [u8; 4]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v[2..4].copy_from_slice(&port.to_be_bytes());
        v[4..8].copy_from_slice(&ip);
        v
    }

    #[test]
    fn decodes_ipv4() {
        let t = target(&v4(8080, [127, 0, 0, 1]), Proto::Tcp).unwrap();
        assert_eq!(
            t,
            Target::Inet {
                proto: Proto::Tcp,
                addr: "127.0.0.1:8080".parse().unwrap()
            }
        );
    }

    #[test]
    fn short_ipv4_is_einval() {
        assert_eq!(
            target(&v4(1, [127, 0, 0, 1])[..15], Proto::Tcp),
            Err(AddressError::TooShort)
        );
        assert_eq!(target(&[], Proto::Tcp), Err(AddressError::TooShort));
        assert_eq!(target(&[2], Proto::Tcp), Err(AddressError::TooShort));
    }

    #[test]
    fn decodes_ipv6_with_and_without_scope() {
        let mut v = vec![0u8; 28];
        v[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v[2..4].copy_from_slice(&443u16.to_be_bytes());
        v[23] = 1; // ::1
        let long = target(&v, Proto::Udp).unwrap();
        let short = target(&v[..24], Proto::Udp).unwrap();
        assert_eq!(long, short);
        assert_eq!(
            long,
            Target::Inet {
                proto: Proto::Udp,
                addr: "[::1]:443".parse().unwrap()
            }
        );
        assert_eq!(target(&v[..23], Proto::Udp), Err(AddressError::TooShort));
    }

    #[test]
    fn s_d2_unix_path_and_abstract() {
        let mut p = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        p.extend_from_slice(b"/tmp/x.sock\0garbage");
        assert_eq!(
            target(&p, Proto::Tcp).unwrap(),
            Target::UnixPath("/tmp/x.sock".into())
        );
        let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(b"\0name\0x");
        assert_eq!(
            target(&a, Proto::Tcp).unwrap(),
            Target::UnixAbstract(b"name\0x".to_vec())
        );
        let only_family = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        assert_eq!(target(&only_family, Proto::Tcp), Err(AddressError::Unnamed));
    }

    #[test]
    fn other_families_are_named() {
        let mut v = vec![0u8; 16];
        v[..2].copy_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
        assert_eq!(
            target(&v, Proto::Other).unwrap(),
            Target::OtherFamily(libc::AF_NETLINK)
        );
        let unspec = vec![0u8; 16];
        assert_eq!(target(&unspec, Proto::Udp).unwrap(), Target::Unspec);
    }

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
