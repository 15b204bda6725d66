//! `connect` and `unix`: one plain connect, the way an ordinary program makes it.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::{port_arg, result_json};
use crate::sys::{self, SockAddr};

/// `connect PROTO ADDR PORT [--nonblock] [--send]`.
pub(crate) fn connect(
    proto: &str,
    addr: &str,
    port: &str,
    flags: &[&str],
) -> Result<Value, String> {
    let ty = match proto {
        "tcp" => libc::SOCK_STREAM,
        "udp" => libc::SOCK_DGRAM,
        _ => return Err(format!("bad protocol {proto:?} (tcp|udp)")),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("bad address {addr:?}"))?;
    let port = port_arg(port)?;
    let mut nonblock = false;
    let mut send = false;
    for f in flags {
        match *f {
            "--nonblock" => nonblock = true,
            "--send" => send = true,
            _ => return Err(format!("unknown flag {f:?}")),
        }
    }
    let domain = if ip.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    let ty = if nonblock {
        ty | libc::SOCK_NONBLOCK
    } else {
        ty
    };
    let fd = match sys::socket(domain, ty) {
        Ok(fd) => fd,
        Err(e) => {
            let mut v = result_json(Err(e));
            v["stage"] = json!("socket");
            return Ok(v);
        }
    };
    let sa = SockAddr::ip(ip, port);
    let first = sys::connect(&fd, &sa);
    let mut out = if nonblock {
        let result = match first {
            Err(libc::EINPROGRESS) => match sys::poll_writable(&fd, 5000) {
                Ok(true) => match sys::so_error(&fd) {
                    Ok(0) => Ok(()),
                    Ok(e) | Err(e) => Err(e),
                },
                Ok(false) => Err(libc::ETIMEDOUT),
                Err(e) => Err(e),
            },
            other => other,
        };
        let mut v = result_json(result);
        v["first"] = result_json(first);
        v
    } else {
        result_json(first)
    };
    if send && out["ok"] == json!(true) {
        match sys::send(&fd, b"ping") {
            Ok(n) => out["sent"] = json!(n == 4),
            Err(e) => {
                out["sent"] = json!(false);
                out["send_err"] = json!(sys::errno_name(e));
            }
        }
    }
    Ok(out)
}

/// `unix PATH` / `unix-abstract NAME`.
pub(crate) fn unix(name: &[u8], abstract_name: bool) -> Value {
    let fd = match sys::socket(libc::AF_UNIX, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(e) => return result_json(Err(e)),
    };
    let sa = if abstract_name {
        SockAddr::unix_abstract(name)
    } else {
        SockAddr::unix_path(name)
    };
    result_json(sys::connect(&fd, &sa))
}
