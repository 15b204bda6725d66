//! `bad-args DEAD [LIVE]`: hostile `connect` arguments. The broker must answer each with the
//! errno the kernel itself would give, and keep serving afterwards.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};

use serde_json::{json, Map, Value};

use super::result_name;
use crate::sys::{self, errno, SockAddr};

/// Two pages, the second one `PROT_NONE`, so that an object can straddle into unmapped memory.
struct Straddle {
    base: *mut u8,
}

impl Straddle {
    fn new() -> Option<Straddle> {
        // SAFETY: a fresh private anonymous mapping of two pages.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the second page of our own mapping.
        if unsafe { libc::mprotect(base.cast::<u8>().add(4096).cast(), 4096, libc::PROT_NONE) } != 0
        {
            eprintln!("mprotect: errno {}", errno());
        }
        Some(Straddle { base: base.cast() })
    }

    /// A sockaddr_in whose first 8 bytes are the last 8 of the readable page.
    fn addr(&self, port: u16) -> usize {
        let sa = SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        // SAFETY: bytes 4088..4096 lie in the first (writable) page of our mapping; we copy
        // the first 8 bytes of the address there.
        unsafe {
            let p = self.base.add(4096 - 8);
            std::ptr::copy_nonoverlapping((&raw const sa.storage).cast::<u8>(), p, 8);
            p as usize
        }
    }
}

impl Drop for Straddle {
    fn drop(&mut self) {
        // SAFETY: base is the start of our two-page mapping, which nothing borrows any more.
        unsafe { libc::munmap(self.base.cast(), 8192) };
    }
}

/// Runs the table; with `live`, afterwards connects to 127.0.0.1:LIVE and reports it as "after".
pub(crate) fn run(dead: u16, live: Option<u16>) -> Value {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let good = SockAddr::ip(lo, dead);
    // A buffer larger than any length we pass, so that only the length is wrong.
    let mut big = [0u8; 256];
    // SAFETY: copying the 16-byte sockaddr_in into a 256-byte buffer.
    unsafe {
        std::ptr::copy_nonoverlapping((&raw const good.storage).cast::<u8>(), big.as_mut_ptr(), 16)
    };
    let bigp = big.as_ptr() as usize;
    let straddle = Straddle::new();
    let devnull = std::fs::File::open("/dev/null").ok();
    let v6 = SockAddr::ip(IpAddr::V6(Ipv6Addr::LOCALHOST), dead);

    let mut results = Map::new();
    let mut case = |name: &str, f: &dyn Fn(RawFd) -> Result<(), i32>| {
        let r = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(fd) => f(fd.as_raw_fd()),
            Err(e) => Err(e),
        };
        results.insert(name.to_owned(), json!(result_name(r)));
    };
    case("null_addr", &|fd| sys::connect_raw(fd, 0, 16));
    case("addr_0x1", &|fd| sys::connect_raw(fd, 1, 16));
    if let Some(s) = &straddle {
        let p = s.addr(dead);
        case("straddle_unmapped", &|fd| sys::connect_raw(fd, p, 16));
    }
    case("len_0", &|fd| sys::connect_raw(fd, bigp, 0));
    case("len_1", &|fd| sys::connect_raw(fd, bigp, 1));
    case("len_129", &|fd| sys::connect_raw(fd, bigp, 129));
    case("len_0x7fffffff", &|fd| {
        sys::connect_raw(fd, bigp, 0x7fff_ffff)
    });
    case("len_minus_1", &|fd| sys::connect_raw_len(fd, bigp, -1));
    case("fd_minus_1", &|_| sys::connect_raw(-1, bigp, 16));
    case("fd_1000_not_open", &|_| sys::connect_raw(1000, bigp, 16));
    if let Some(f) = &devnull {
        let nfd = f.as_raw_fd();
        case("fd_dev_null", &|_| sys::connect_raw(nfd, bigp, 16));
    }
    case("inet6_addr_on_inet_socket", &|fd| {
        sys::connect_raw(fd, (&raw const v6.storage) as usize, v6.len)
    });
    case("closed_port", &|fd| sys::connect_raw(fd, bigp, 16));

    let mut out = json!({"results": results});
    if let Some(live) = live {
        let r = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
            .and_then(|fd| sys::connect(&fd, &SockAddr::ip(lo, live)));
        out["after"] = json!(result_name(r));
    }
    out
}
