//! Bad input for the broker's registration socket: deterministic junk, the protocol's header,
//! and a check that the broker closes a connection that sent it (invariant 8).

use std::os::fd::OwnedFd;

use crate::sys::{self, errno_name};
use crate::Broker;

/// The protocol header: magic "NJ", version 1 (big-endian u16).
pub const HEADER: [u8; 4] = [b'N', b'J', 0, 1];

/// Deterministic junk (xorshift), never starting with 'N'.
pub fn junk(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    if let Some(b) = v.first_mut() {
        if *b == b'N' {
            *b = b'X';
        }
    }
    v
}

/// Waits until the broker closes `conn`: `recv` returns end of file (possibly after an error
/// reply) within 5 s. `what` names the case in the error.
pub fn expect_eof(conn: &OwnedFd, what: &str) -> Result<(), String> {
    let mut buf = vec![0u8; 1 << 17];
    for _ in 0..4 {
        match sys::recv_timeout(conn, &mut buf, 5000) {
            Ok(Some(0)) | Err(libc::ECONNRESET) => return Ok(()),
            Ok(Some(_reply)) => continue,
            Ok(None) => return Err(format!("{what}: broker kept the connection open for 5 s")),
            Err(e) => return Err(format!("{what}: recv: {}", errno_name(e))),
        }
    }
    Err(format!("{what}: broker kept replying instead of closing"))
}

/// Sends one bad datagram on a fresh connection and checks that the broker closes it: `recv`
/// returns end of file (possibly after an error reply) within 5 s.
pub fn expect_closed(broker: &Broker, what: &str, msg: &[u8], fds: &[i32]) -> Result<(), String> {
    let conn: OwnedFd = sys::seqpacket_connect(broker.socket())
        .map_err(|e| format!("{what}: connect to broker: {}", errno_name(e)))?;
    match sys::send_with_fds(&conn, msg, fds) {
        Ok(_) => {}
        // Already closed by the broker: fine.
        Err(libc::EPIPE | libc::ECONNRESET) => return Ok(()),
        Err(e) => return Err(format!("{what}: send: {}", errno_name(e))),
    }
    expect_eof(&conn, what)
}
