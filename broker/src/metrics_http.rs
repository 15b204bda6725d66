//! The metrics on a loopback HTTP port (`netjaild --metrics-listen 127.0.0.1:PORT`), for a
//! Prometheus server on the same machine: `GET /metrics` answers the text of
//! [`crate::metrics::render`], anything else a 404 or a 405.
//!
//! Only a loopback address is accepted: the port has no credentials check (unlike the control
//! socket), so anyone on the machine may read it. The metrics carry counts only, no names,
//! destinations or pids. Connections are few and short: at most [`MAX_CONNECTIONS`] at once,
//! each with [`REQUEST_TIMEOUT`] to send a request head of at most [`MAX_HEAD`] bytes; one
//! request per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Broker;

/// Connections served at once; past it new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a connection may take to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a request head, at most.
pub const MAX_HEAD: usize = 8 * 1024;

/// Binds the metrics port at `addr`, which must be a loopback address (`127.0.0.0/8`, `::1`);
/// port 0 picks a free port (see `TcpListener::local_addr`).
///
/// # Errors
///
/// `InvalidInput` for an address that is not loopback; the errors of `bind`.
pub async fn bind_metrics_http(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address: the metrics port has no access control"),
        ));
    }
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` forever.
///
/// # Errors
///
/// When `accept` fails for another reason than running out of fds.
pub async fn serve_metrics_http(broker: Arc<Broker>, listener: TcpListener) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
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
        let broker = broker.clone();
        tokio::spawn(async move {
            let _ = serve_one(&broker, stream).await;
            drop(slot);
        });
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
