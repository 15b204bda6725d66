//! `flip ALLOWED DENIED N`: the time-of-check/time-of-use attack on a pointer argument (M1).
//!
//! One `sockaddr_in` for 127.0.0.1 is shared by two threads. A second thread rewrites its port
//! between the allowed and the denied value as fast as it can, while the main thread connects
//! with that buffer again and again. A broker that checks the sandbox's memory and then lets
//! the kernel read it again (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) sometimes lets a denied port
//! through; one that acts on its own copy never does.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{count_arg, port_arg, tally};
use crate::sys;

/// `struct sockaddr_in` with an atomic port, so that the flipping thread's writes are defined
/// behaviour. `AtomicU16` has the layout of `u16`.
#[repr(C)]
struct FlipAddr {
    family: u16,
    port: AtomicU16,
    addr: u32,
    zero: [u8; 8],
}

/// Runs the attack and tallies where the connections went.
pub(crate) fn run(allowed: &str, denied: &str, n: &str) -> Result<Value, String> {
    let allowed = port_arg(allowed)?;
    let denied = port_arg(denied)?;
    let n = count_arg(n)?;
    let shared = Arc::new(FlipAddr {
        family: libc::AF_INET as u16,
        port: AtomicU16::new(allowed.to_be()),
        addr: u32::from_ne_bytes([127, 0, 0, 1]),
        zero: [0; 8],
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (a, d) = (allowed.to_be(), denied.to_be());
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    shared.port.store(d, Ordering::Relaxed);
                    shared.port.store(a, Ordering::Relaxed);
                }
            }
        })
    };
    let (mut reached_allowed, mut reached_denied, mut reached_other) = (0u64, 0u64, 0u64);
    let mut errors = Map::new();
    for _ in 0..n {
        let fd = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(fd) => fd,
            Err(e) => {
                tally(&mut errors, e);
                continue;
            }
        };
        let ptr = Arc::as_ptr(&shared) as usize;
        match sys::connect_raw(fd_raw(&fd), ptr, std::mem::size_of::<FlipAddr>() as u32) {
            Ok(()) => match sys::peer(&fd).map(|p| p.port()) {
                Ok(Some(p)) if p == allowed => reached_allowed += 1,
                Ok(Some(p)) if p == denied => reached_denied += 1,
                Ok(_) => reached_other += 1,
                Err(e) => tally(&mut errors, e),
            },
            Err(e) => tally(&mut errors, e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    Ok(json!({
        "iterations": n,
        "reached_allowed": reached_allowed,
        "reached_denied": reached_denied,
        "reached_other": reached_other,
        "errors": errors,
    }))
}

fn fd_raw(fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}
