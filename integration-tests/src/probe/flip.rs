//! `flip ALLOWED DENIED N`: the time-of-check/time-of-use attack on a pointer argument (M1).
//!
//! One `sockaddr_in` for 127.0.0.1 is shared by two threads. A second thread rewrites its port
//! between the allowed and the denied value as fast as it can, while the main thread connects
//! with that buffer again and again. A broker that checks the sandbox's memory and then lets
//! the kernel read it again (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) sometimes lets a denied port
//! through; one that acts on its own copy never does.

use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, Ordering};
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
    let (shared, stop, flipper) = start_flipping(allowed, denied);
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

/// The shared address (port `allowed`), the stop switch and the thread that flips its port
/// between `allowed` and `denied`.
fn start_flipping(
    allowed: u16,
    denied: u16,
) -> (Arc<FlipAddr>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
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
    (shared, stop, flipper)
}

/// `flip ALLOWED DENIED N swap`: the flip, while a third thread, as fast as it can, puts
/// another socket at the descriptor being connected (`dup2`) or closes it: a broker that puts
/// a socket of its own in place of the caller's (a bridge) must decide on its own copy of the
/// address and never install what it made for another destination. The connections are
/// counted by the servers (the test's), since the descriptor may no longer be the connected
/// socket; this prints only the errors and how many connects returned 0.
pub(crate) fn run_swapping(allowed: &str, denied: &str, n: &str) -> Result<Value, String> {
    let allowed = port_arg(allowed)?;
    let denied = port_arg(denied)?;
    let n = count_arg(n)?;
    let (shared, stop, flipper) = start_flipping(allowed, denied);
    let current = Arc::new(AtomicI32::new(-1));
    let spare = sys::socket(libc::AF_INET, libc::SOCK_STREAM).map_err(sys::errno_name)?;
    let swapper = {
        let (current, stop) = (Arc::clone(&current), Arc::clone(&stop));
        let spare = fd_raw(&spare);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let fd = current.load(Ordering::Relaxed);
                if fd >= 0 {
                    i += 1;
                    let _ = if i.is_multiple_of(2) {
                        sys::dup2(spare, fd)
                    } else {
                        sys::close_raw(fd)
                    };
                }
            }
        })
    };
    let (mut connected, mut errors) = (0u64, Map::new());
    for _ in 0..n {
        let fd = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(fd) => fd.into_raw_fd(),
            Err(e) => {
                tally(&mut errors, e);
                continue;
            }
        };
        current.store(fd, Ordering::Relaxed);
        let ptr = Arc::as_ptr(&shared) as usize;
        match sys::connect_raw(fd, ptr, std::mem::size_of::<FlipAddr>() as u32) {
            Ok(()) => connected += 1,
            Err(e) => tally(&mut errors, e),
        }
        current.store(-1, Ordering::Relaxed);
        let _ = sys::close_raw(fd);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();
    let _ = swapper.join();
    Ok(json!({ "iterations": n, "connected": connected, "errors": errors }))
}

fn fd_raw(fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}
