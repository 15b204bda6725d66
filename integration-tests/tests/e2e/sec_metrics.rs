//! The metrics port (L7; issue 16, gap 1): not readable from a sandbox, and one local user
//! cannot keep the scraper out.

use crate::sec_sockets::{as_user, command, root_and_setpriv, USER_A};
use std::time::{Duration, Instant};

use netjail_integration_tests::{confined_with_broker_cmd, run, spawn, unconfined, Broker};
use serde_json::Value;

use crate::{assert_eperm, assert_ok, need_python, probe};

// ---- L7: the metrics port -----------------------------------------------------------------------

/// The metrics port a broker logged.
fn metrics_address(broker: &Broker) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = broker
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find_map(|v| {
                (v["message"] == "metrics served over HTTP")
                    .then(|| v["address"].as_str()?.parse().ok())
                    .flatten()
            });
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics address:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /metrics` on a fresh connection: the status line, or what went wrong.
fn get_metrics(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        return "no connection".into();
    };
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if write!(conn, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").is_err() {
        return "closed before the request".into();
    }
    let mut response = String::new();
    match conn.read_to_string(&mut response) {
        Ok(_) => response
            .lines()
            .next()
            .unwrap_or("closed, nothing read")
            .to_string(),
        Err(e) => format!("read: {e}"),
    }
}

/// L7: the broker's counts move with every sandbox's calls, a side channel on what the
/// others do: a `loopback-only` sandbox of `netjaild` may connect to any loopback port but
/// the broker's metrics port. Unconfined, anyone on the machine reads it.
#[test]
fn l7_a_sandbox_cannot_read_the_metrics() {
    let broker = Broker::start_with(&[], |_| {
        vec!["--metrics-listen".into(), "127.0.0.1:0".into()]
    });
    let addr = metrics_address(&broker);
    let port = addr.port().to_string();
    let connect = [probe(), "connect", "tcp", "127.0.0.1", &port];
    assert_ok(&unconfined(&connect));
    assert!(get_metrics(addr).starts_with("HTTP/1.1 200"));
    let out = run(
        &mut confined_with_broker_cmd(&broker, "loopback-only", &connect),
        Duration::from_secs(20),
    );
    assert_eperm(&out);
    let mapped = [probe(), "connect", "tcp", "::ffff:127.0.0.1", &port];
    let out = run(
        &mut confined_with_broker_cmd(&broker, "loopback-only", &mapped),
        Duration::from_secs(20),
    );
    assert_eperm(&out);
}

/// A python3 program that opens N TCP connections to 127.0.0.1:PORT, prints `held`, and
/// keeps them open, silent, for SECONDS.
const PY_HOLD_TCP: &str = r#"
import socket, sys, time
port, n, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = []
for i in range(n):
    s = socket.socket()
    s.connect(("127.0.0.1", port))
    held.append(s)
print("held", flush=True)
time.sleep(secs)
"#;

/// L7: a local user holding many silent connections to the metrics port keeps out only
/// themselves: the server's other users (a Prometheus scraper) are still served at once.
/// (Before, 16 such connections filled every slot for 5 s at a time.)
#[test]
fn l7_one_user_cannot_keep_the_scraper_out() {
    let test = "l7_one_user_cannot_keep_the_scraper_out";
    if !root_and_setpriv(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let broker = Broker::start_with(&[], |_| {
        vec!["--metrics-listen".into(), "127.0.0.1:0".into()]
    });
    let addr = metrics_address(&broker);
    let port = addr.port().to_string();
    let holder =
        spawn(command(&as_user(USER_A, &[]), &py).args(["-c", PY_HOLD_TCP, &port, "40", "10"]));
    assert_eq!(
        holder.read_line(Duration::from_secs(10)).as_deref(),
        Some("held")
    );
    let started = Instant::now();
    let status = get_metrics(addr);
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "{status}\n{}",
        broker.log()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(holder);
}
