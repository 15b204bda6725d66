//! The metrics on a loopback HTTP port (`netjaild --metrics-listen 127.0.0.1:PORT`), for a
//! Prometheus server on the same machine: `GET /metrics` answers the text of
//! [`crate::metrics::render`], anything else a 404 or a 405.
//!
//! Only a loopback address is accepted: the port has no credentials check (unlike the control
//! socket), so any user of the machine may read it. The metrics carry counts only, no names,
//! destinations or pids. Sandboxes may not: the broker refuses their connects to this port
//! in its own network namespace (`ops/own.rs`), since counts that move with other sandboxes'
//! calls tell one sandbox what the others do.
//!
//! Connections are few and short: at most [`MAX_CONNECTIONS`] at once, at most
//! [`MAX_PER_USER`] of one user (the owner of the client's socket, which the kernel's socket
//! diagnostics tell for a loopback connection), each with [`REQUEST_TIMEOUT`] to send a request
//! head of at most [`MAX_HEAD`] bytes; one request per connection. A local user holding
//! connections open keeps out only themselves, never the Prometheus server's user.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Broker;

/// Connections served at once; past it new ones are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Connections of one user served at once; past it that user's new ones are closed at once.
pub(crate) const MAX_PER_USER: usize = 4;

/// How long a connection may take to send its request head (a scraper sends it at once).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of a request head, at most.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Binds the metrics port at `addr`, which must be a loopback address (`127.0.0.0/8`, `::1`);
/// port 0 picks a free port (see `TcpListener::local_addr`).
///
/// # Errors
///
/// `InvalidInput` for an address that is not loopback; the errors of `bind`.
pub(crate) async fn bind_metrics_http(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address: the metrics port has no access control"),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    crate::ops::own::mark_tcp(listener.as_fd(), listener.local_addr()?);
    Ok(listener)
}

/// Serves `GET /metrics` on `listener` forever.
///
/// # Errors
///
/// When `accept` fails for another reason than running out of fds.
pub(crate) async fn serve_metrics_http(
    broker: Arc<Broker>,
    listener: TcpListener,
) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_user: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                tracing::error!(error = %e, "out of fds; pausing accept on the metrics port");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("too many connections on the metrics port; one closed");
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        // A client whose socket cannot be found (it closed already) counts as one unknown user.
        let uid = peer_uid(local, peer).unwrap_or(u32::MAX);
        let Some(user_slot) = UserSlot::take(&per_user, uid) else {
            tracing::debug!(
                uid,
                "too many connections of one user on the metrics port; one closed"
            );
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let _ = serve_one(&broker, stream).await;
            drop(user_slot);
            drop(slot);
        });
    }
}

/// One of a user's [`MAX_PER_USER`] places, given back when dropped.
struct UserSlot {
    table: Arc<Mutex<HashMap<u32, usize>>>,
    uid: u32,
}

impl UserSlot {
    fn take(table: &Arc<Mutex<HashMap<u32, usize>>>, uid: u32) -> Option<UserSlot> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(uid).or_default();
        if *n >= MAX_PER_USER {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            table: table.clone(),
            uid,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.uid);
            }
        }
    }
}

/// `SOCK_DIAG_BY_FAMILY`, the message type of an `inet_diag` request.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;
/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Offset of `idiag_uid` in `struct inet_diag_msg`.
const IDIAG_UID: usize = 4 + 48 + 12;

/// The owner of the client socket of an accepted loopback TCP connection (`local` is the
/// broker's end, `remote` the client's), asked of the kernel's socket diagnostics
/// (`NETLINK_SOCK_DIAG`, an exact `inet_diag` lookup of the client's socket).
///
/// # Errors
/// When the kernel does not find it (the client closed already) or netlink fails.
///
/// # References
/// sock_diag(7)
fn peer_uid(local: SocketAddr, remote: SocketAddr) -> io::Result<u32> {
    use rustix::net::{netlink, AddressFamily, SocketFlags, SocketType};
    let family = match remote {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + 56);
    req.extend_from_slice(&((NLMSG_HDRLEN + 56) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    req.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
                                                    // The client's socket: its source is the remote end, its destination the broker's.
    req.extend_from_slice(&remote.port().to_be_bytes());
    req.extend_from_slice(&local.port().to_be_bytes());
    for addr in [remote.ip(), local.ip()] {
        let mut bytes = [0u8; 16];
        match addr {
            std::net::IpAddr::V4(a) => bytes[..4].copy_from_slice(&a.octets()),
            std::net::IpAddr::V6(a) => bytes.copy_from_slice(&a.octets()),
        }
        req.extend_from_slice(&bytes);
    }
    req.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )?;
    rustix::net::send(&sock, &req, rustix::net::SendFlags::empty())?;
    let mut buf = [0u8; 512];
    let (n, _) = rustix::net::recv(&sock, &mut buf, rustix::net::RecvFlags::empty())?;
    let reply = &buf[..n.min(buf.len())];
    let kind = reply
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .unwrap_or(NLMSG_ERROR);
    let at = NLMSG_HDRLEN + IDIAG_UID;
    match (kind, reply.get(at..at + 4)) {
        (SOCK_DIAG_BY_FAMILY, Some(b)) => Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        _ => Err(io::Error::from_raw_os_error(libc::ENOENT)),
    }
}

async fn serve_one(broker: &Broker, mut stream: TcpStream) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        io::Result::Ok(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let response = match route(&head) {
        Route::Metrics => {
            let body = crate::metrics::render(&broker.metrics_snapshot());
            response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
        }
        Route::NotFound => response("404 Not Found", "text/plain", "not found: try /metrics\n"),
        Route::NotAllowed => response(
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n",
        ),
        Route::Bad => response("400 Bad Request", "text/plain", "bad request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

/// Routes a request by its first line (`GET /metrics HTTP/1.1`); a query string is ignored.
fn route(head: &[u8]) -> Route {
    let Some(end) = head.windows(2).position(|w| w == b"\r\n") else {
        return Route::Bad;
    };
    let Ok(line) = std::str::from_utf8(&head[..end]) else {
        return Route::Bad;
    };
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::NotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(r("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metricsx HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(r("GET /metrics\r\n\r\n"), Route::Bad);
        assert_eq!(r("GET /metrics SPDY/3\r\n\r\n"), Route::Bad);
        assert_eq!(r("GET /metrics HTTP/1.1"), Route::Bad);
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n"), Route::Bad);
    }

    #[test]
    fn a_response_has_its_length() {
        let text = response("200 OK", "text/plain", "abc\n");
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\
             Connection: close\r\n\r\nabc\n"
        );
    }

    #[test]
    fn the_owner_of_a_loopback_client_is_found() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (accepted, remote) = server.accept().unwrap();
        let uid = peer_uid(accepted.local_addr().unwrap(), remote).unwrap();
        assert_eq!(uid, rustix::process::geteuid().as_raw());
        drop(client);
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(peer_uid(accepted.local_addr().unwrap(), gone).is_err());
    }

    #[tokio::test]
    async fn only_loopback_addresses_are_bound() {
        let err = bind_metrics_http("0.0.0.0:0".parse().unwrap())
            .await
            .expect_err("not loopback");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not a loopback address"), "{err}");
        let l = bind_metrics_http("127.0.0.1:0".parse().unwrap())
            .await
            .expect("loopback");
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }
}
