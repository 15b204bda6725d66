//! Datagram destinations, binds and listens (rules L3, J2, J8, D1): the probes of the
//! attacks on `sendto`, `sendmsg` and `sendmmsg`, and of the bind rules.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{count_arg, port_arg, result_json, tally};
use crate::sys::{self, errno_name, SockAddr};

fn v4(port: u16) -> SockAddr {
    SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn udp() -> Result<OwnedFd, String> {
    sys::socket(libc::AF_INET, libc::SOCK_DGRAM).map_err(|e| format!("socket: {}", errno_name(e)))
}

fn sent_json(r: Result<usize, sys::Errno>) -> Value {
    match r {
        Ok(n) => json!({"ok": true, "sent": n}),
        Err(e) => json!({"ok": false, "errno": e, "err": errno_name(e)}),
    }
}

/// A `struct msghdr` whose `msg_name` another thread rewrites (an atomic has the layout of
/// the pointer it replaces).
#[repr(C)]
struct FlipMsg {
    name: AtomicUsize,
    namelen: u32,
    pad: u32,
    iov: usize,
    iovlen: usize,
    control: usize,
    controllen: usize,
    flags: i32,
    pad2: u32,
}

/// `msgname-flip ALLOWED DENIED N`: a UDP socket connected to ALLOWED sends N datagrams with
/// `sendmsg`, while a second thread flips `msg_name` between NULL, ALLOWED and DENIED.
pub(crate) fn msgname_flip(allowed: &str, denied: &str, n: &str) -> Result<Value, String> {
    let (allowed, denied, n) = (port_arg(allowed)?, port_arg(denied)?, count_arg(n)?);
    let sock = udp()?;
    sys::connect(&sock, &v4(allowed)).map_err(|e| format!("connect: {}", errno_name(e)))?;
    let (a, d) = (Box::new(v4(allowed)), Box::new(v4(denied)));
    let payload = b"flip".to_vec();
    let iov = Box::new(libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    });
    let msg = Arc::new(FlipMsg {
        name: AtomicUsize::new(0),
        namelen: a.len,
        pad: 0,
        iov: &*iov as *const libc::iovec as usize,
        iovlen: 1,
        control: 0,
        controllen: 0,
        flags: 0,
        pad2: 0,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let names = [
        0usize,
        (&raw const a.storage) as usize,
        (&raw const d.storage) as usize,
    ];
    let flipper = {
        let (msg, stop) = (Arc::clone(&msg), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for name in names {
                    msg.name.store(name, Ordering::Relaxed);
                }
            }
        })
    };
    let (mut ok, mut errors) = (0u64, Map::new());
    for _ in 0..n {
        match sys::sendmsg_at(sock.as_raw_fd(), Arc::as_ptr(&msg) as usize, 0) {
            Ok(_) => ok += 1,
            Err(e) => tally(&mut errors, e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    Ok(json!({"iterations": n, "sent": ok, "errors": errors}))
}

/// Shortest time the `dup2-flip` probe keeps sending.
const FLIP_MIN_TIME: std::time::Duration = std::time::Duration::from_millis(300);

/// `dup2-flip TCP_PORT DENIED_UDP N`: `sendmsg` with DENIED as destination on a fd that a
/// second thread keeps switching (`dup2`) between a TCP socket connected to TCP_PORT (which
/// ignores the destination) and an unconnected UDP socket (which sends to it). At least N
/// calls, for at least [`FLIP_MIN_TIME`].
pub(crate) fn dup2_flip(tcp_port: &str, denied: &str, n: &str) -> Result<Value, String> {
    let (tcp_port, denied, n) = (port_arg(tcp_port)?, port_arg(denied)?, count_arg(n)?);
    let tcp = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
        .map_err(|e| format!("socket: {}", errno_name(e)))?;
    sys::connect(&tcp, &v4(tcp_port)).map_err(|e| format!("connect: {}", errno_name(e)))?;
    let target = tcp.as_raw_fd();
    sys::set_nonblocking(target).map_err(errno_name)?;
    // Keep the TCP socket alive under another number while its own number is swapped.
    let tcp_copy = tcp.try_clone().map_err(|e| e.to_string())?;
    let u = udp()?;
    sys::set_nonblocking(u.as_raw_fd()).map_err(errno_name)?;
    let dest = v4(denied);
    let payload = b"dup2".to_vec();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut msg = empty_msghdr();
    msg.msg_name = (&raw const dest.storage) as *mut libc::c_void;
    msg.msg_namelen = dest.len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = Arc::clone(&stop);
        let (u_raw, t_raw) = (u.as_raw_fd(), tcp_copy.as_raw_fd());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = sys::dup2(u_raw, target);
                let _ = sys::dup2(t_raw, target);
            }
        })
    };
    let (mut ok, mut errors) = (0u64, Map::new());
    // At least N calls and at least a while: on a loaded machine N unconfined calls can all
    // fit in one time slice during which the flipper does not run.
    let started = std::time::Instant::now();
    let mut made = 0u64;
    while made < n || started.elapsed() < FLIP_MIN_TIME {
        match sys::sendmsg_at(target, &raw const msg as usize, 0) {
            Ok(_) => ok += 1,
            Err(e) => tally(&mut errors, e),
        }
        made += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    let _ = sys::dup2(tcp_copy.as_raw_fd(), target);
    Ok(json!({"iterations": n, "sent": ok, "errors": errors}))
}

/// An empty `msghdr`, every field set explicitly.
fn empty_msghdr() -> libc::msghdr {
    libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: std::ptr::null_mut(),
        msg_iovlen: 0,
        msg_control: std::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    }
}

/// `sendmmsg PORT...`: one `sendmmsg` on an unconnected UDP socket with one entry per port,
/// in order; reports the result and each entry's `msg_len`.
pub(crate) fn sendmmsg(ports: &[&str]) -> Result<Value, String> {
    let ports: Vec<u16> = ports
        .iter()
        .map(|p| port_arg(p))
        .collect::<Result<_, _>>()?;
    let sock = udp()?;
    let addrs: Vec<SockAddr> = ports.iter().map(|p| v4(*p)).collect();
    let payload = b"mmsg".to_vec();
    let mut iovs: Vec<libc::iovec> = ports
        .iter()
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    let mut vec: Vec<libc::mmsghdr> = addrs
        .iter()
        .zip(iovs.iter_mut())
        .map(|(a, iov)| {
            let mut msg = empty_msghdr();
            msg.msg_name = (&raw const a.storage) as *mut libc::c_void;
            msg.msg_namelen = a.len;
            msg.msg_iov = iov;
            msg.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: msg,
                msg_len: 0xdead,
            }
        })
        .collect();
    let r = sys::sendmmsg(sock.as_raw_fd(), &mut vec, 0);
    let lens: Vec<u32> = vec.iter().map(|m| m.msg_len).collect();
    Ok(json!({"result": sent_json(r), "msg_len": lens}))
}

/// `udp-connected ALLOWED DENIED`: a UDP socket connected to ALLOWED; `send` (no
/// destination), then `sendto` and `sendmsg` with DENIED as destination, then `sendto`
/// ALLOWED.
pub(crate) fn udp_connected(allowed: &str, denied: &str) -> Result<Value, String> {
    let (allowed, denied) = (port_arg(allowed)?, port_arg(denied)?);
    let sock = udp()?;
    let connected = sys::connect(&sock, &v4(allowed));
    let fd = sock.as_raw_fd();
    let d = v4(denied);
    Ok(json!({
        "connect": result_json(connected),
        "send": sent_json(sys::sendto(fd, b"one", 0, None)),
        "sendto_denied": sent_json(sys::sendto(fd, b"two", 0, Some(&d))),
        "sendmsg_denied": sent_json(sys::sendmsg_cmsg(fd, b"three", Some(&d), (libc::SOL_IP, libc::IP_TTL, &9i32.to_ne_bytes()))),
        "sendto_allowed": sent_json(sys::sendto(fd, b"four", 0, Some(&v4(allowed)))),
    }))
}

/// `bind PROTO ADDR PORT [--listen]`: one bind (and listen), then the local address.
pub(crate) fn bind(proto: &str, addr: &str, port: &str, flags: &[&str]) -> Result<Value, String> {
    let ip: IpAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let port = port_arg(port)?;
    let family = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let ty = match proto {
        "tcp" => libc::SOCK_STREAM,
        "udp" => libc::SOCK_DGRAM,
        _ => return Err(format!("bad proto {proto:?}")),
    };
    let sock = sys::socket(family, ty).map_err(|e| format!("socket: {}", errno_name(e)))?;
    let bound = sys::bind(&sock, &SockAddr::ip(ip, port));
    let listened = if flags.contains(&"--listen") {
        Some(result_json(sys::listen(&sock, 8)))
    } else {
        None
    };
    Ok(json!({"bind": result_json(bound), "listen": listened, "local": local_json(&sock)}))
}

/// `listen-unbound PROTO FAMILY`: `listen` on a fresh TCP socket that was never bound.
pub(crate) fn listen_unbound(family: &str) -> Result<Value, String> {
    let family = match family {
        "inet" => libc::AF_INET,
        "inet6" => libc::AF_INET6,
        _ => return Err(format!("bad family {family:?}")),
    };
    let sock =
        sys::socket(family, libc::SOCK_STREAM).map_err(|e| format!("socket: {}", errno_name(e)))?;
    let r = sys::listen(&sock, 8);
    Ok(json!({"listen": result_json(r), "local": local_json(&sock)}))
}

fn local_json(sock: &OwnedFd) -> Value {
    match sys::local(sock) {
        Ok(sa) => json!({"ip": sa.ip_string(), "port": sa.port()}),
        Err(e) => json!({"err": errno_name(e)}),
    }
}

/// `source PROTO PORT`: a TCP connect or a UDP datagram to 127.0.0.1:PORT from a socket
/// that was never bound; reports the local address the kernel chose.
pub(crate) fn source(proto: &str, port: &str) -> Result<Value, String> {
    let port = port_arg(port)?;
    let ty = if proto == "udp" {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    let sock = sys::socket(libc::AF_INET, ty).map_err(|e| format!("socket: {}", errno_name(e)))?;
    let r = if ty == libc::SOCK_STREAM {
        sys::connect(&sock, &v4(port)).map(|()| 0)
    } else {
        sys::sendto(sock.as_raw_fd(), b"src", 0, Some(&v4(port)))
    };
    Ok(json!({"result": sent_json(r), "local": local_json(&sock)}))
}

/// `pktinfo PORT SRC`: a datagram to 127.0.0.1:PORT with an `IP_PKTINFO` control message
/// asking for source address SRC.
pub(crate) fn pktinfo(port: &str, src: &str) -> Result<Value, String> {
    let port = port_arg(port)?;
    let src: Ipv4Addr = src.parse().map_err(|_| format!("bad address {src:?}"))?;
    let sock = udp()?;
    // struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
    let mut info = Vec::with_capacity(12);
    info.extend_from_slice(&0i32.to_ne_bytes());
    info.extend_from_slice(&src.octets());
    info.extend_from_slice(&[0u8; 4]);
    let r = sys::sendmsg_cmsg(
        sock.as_raw_fd(),
        b"pkt",
        Some(&v4(port)),
        (libc::SOL_IP, libc::IP_PKTINFO, &info),
    );
    Ok(json!({"result": sent_json(r)}))
}
