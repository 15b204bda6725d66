//! `signal-storm PORT N [--no-restart]`: connects while a 1 ms interval timer fires `SIGALRM`.
//!
//! A broker that performs a connect and then has its reply withdrawn because a signal arrived
//! makes the program's retried connect answer `EISCONN` (the connect happened twice). This
//! counts those separately from successes.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};

use super::{count_arg, port_arg, tally};
use crate::sys::{self, Errno, SockAddr};

static SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_sig: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

fn set_timer(usec: libc::suseconds_t) {
    let t = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: usec,
        },
        it_value: libc::timeval {
            tv_sec: 0,
            tv_usec: usec,
        },
    };
    // SAFETY: t is a valid itimerval; the old value is not requested.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) };
}

/// The outcome of one connect attempt, retried on EINTR the way careful programs do.
enum Outcome {
    Ok,
    IsConn,
    Err(Errno),
}

fn one(addr: &SockAddr, eintr: &mut u64) -> Outcome {
    let fd = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Err(e),
    };
    let mut r = sys::connect(&fd, addr);
    let mut interrupted = false;
    loop {
        match r {
            Ok(()) => return Outcome::Ok,
            Err(libc::EINTR) => {
                *eintr += 1;
                interrupted = true;
                r = sys::connect(&fd, addr);
            }
            Err(libc::EISCONN) if interrupted => return Outcome::IsConn,
            Err(libc::EALREADY | libc::EINPROGRESS) if interrupted => {
                return loop {
                    match sys::poll_writable(&fd, 5000) {
                        Ok(true) => match sys::so_error(&fd) {
                            Ok(0) => break Outcome::Ok,
                            Ok(e) | Err(e) => break Outcome::Err(e),
                        },
                        Ok(false) => break Outcome::Err(libc::ETIMEDOUT),
                        Err(libc::EINTR) => continue,
                        Err(e) => break Outcome::Err(e),
                    }
                };
            }
            Err(e) => return Outcome::Err(e),
        }
    }
}

/// Runs N connects to 127.0.0.1:PORT under the timer.
pub(crate) fn run(port: &str, n: &str, flags: &[&str]) -> Result<Value, String> {
    let port = port_arg(port)?;
    let n = count_arg(n)?;
    let restart = match flags {
        [] => true,
        ["--no-restart"] => false,
        _ => return Err(format!("unknown flags {flags:?}")),
    };
    // SAFETY: sigaction is plain old data; all-zero (empty mask, no flags) is a valid value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: sa is a valid sigaction whose handler only touches an atomic (async-signal-safe).
    if unsafe { libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) } != 0 {
        return Err("sigaction failed".to_owned());
    }
    let addr = SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let (mut ok, mut eisconn, mut eintr) = (0u64, 0u64, 0u64);
    let mut other = Map::new();
    set_timer(1000);
    for _ in 0..n {
        match one(&addr, &mut eintr) {
            Outcome::Ok => ok += 1,
            Outcome::IsConn => eisconn += 1,
            Outcome::Err(e) => tally(&mut other, e),
        }
    }
    set_timer(0);
    Ok(json!({
        "n": n,
        "ok": ok,
        "eisconn": eisconn,
        "eintr": eintr,
        "other": other,
        "signals": SIGNALS.load(Ordering::Relaxed),
        "restart": restart,
    }))
}
