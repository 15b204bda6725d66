//! `io-uring [PORT]`: network calls through io_uring never pass through seccomp, so the
//! sandbox must not be able to set up a ring at all.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

use crate::sys::{self, errno, errno_name, SockAddr};

const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_OP_CONNECT: u8 = 16;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params` (120 bytes).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

/// `struct io_uring_sqe` (64 bytes), the fields a connect uses.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad2: u64,
}

/// `struct io_uring_cqe` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// A shared mapping, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: &OwnedFd, len: usize, offset: i64) -> Result<Map, i32> {
        // SAFETY: a fresh shared mapping of the ring fd; the kernel validates fd and offset.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(errno());
        }
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    /// A pointer to a `u32` at byte offset `off` (which the kernel gave us, inside the map).
    fn u32_at(&self, off: u32) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len);
        // SAFETY: the offset is inside the mapping (checked), 4-aligned as the kernel lays the
        // ring out, and the ring words are shared with the kernel, so we access them atomically.
        unsafe { &*self.ptr.add(off as usize).cast::<AtomicU32>() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Runs `io_uring_setup`, and with a port one `IORING_OP_CONNECT` to 127.0.0.1:PORT.
pub(crate) fn run(port: Option<u16>) -> Value {
    let mut p = Params::default();
    // SAFETY: io_uring_setup writes into `p`, a valid io_uring_params.
    let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 8 as libc::c_long, &raw mut p) };
    if ret < 0 {
        let e = errno();
        return json!({"setup_ok": false, "errno": e, "err": errno_name(e)});
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let ring = unsafe { OwnedFd::from_raw_fd(ret as i32) };
    let mut out = json!({"setup_ok": true});
    if let Some(port) = port {
        match connect(&ring, &p, port) {
            Ok(res) => {
                out["connect_res"] = json!(res);
                if res < 0 {
                    out["connect_err"] = json!(errno_name(-res));
                }
            }
            Err((stage, e)) => {
                out["ring_error"] = json!(format!("{stage}: {}", errno_name(e)));
            }
        }
    }
    out
}

fn connect(ring: &OwnedFd, p: &Params, port: u16) -> Result<i32, (&'static str, i32)> {
    let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
    let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
    let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
    let sq_map = Map::new(
        ring,
        if single { sq_len.max(cq_len) } else { sq_len },
        IORING_OFF_SQ_RING,
    )
    .map_err(|e| ("mmap sq", e))?;
    let cq_own;
    let cq_map = if single {
        &sq_map
    } else {
        cq_own = Map::new(ring, cq_len, IORING_OFF_CQ_RING).map_err(|e| ("mmap cq", e))?;
        &cq_own
    };
    let sqes = Map::new(
        ring,
        p.sq_entries as usize * std::mem::size_of::<Sqe>(),
        IORING_OFF_SQES,
    )
    .map_err(|e| ("mmap sqes", e))?;

    let sock = sys::socket(libc::AF_INET, libc::SOCK_STREAM).map_err(|e| ("socket", e))?;
    let sa = SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let sqe = Sqe {
        opcode: IORING_OP_CONNECT,
        fd: sock.as_raw_fd(),
        addr: (&raw const sa.storage) as u64,
        off: u64::from(sa.len),
        user_data: 0x4e4a,
        ..Sqe::default()
    };
    let tail = sq_map.u32_at(p.sq_off.tail).load(Ordering::Acquire);
    let mask = sq_map.u32_at(p.sq_off.ring_mask).load(Ordering::Relaxed);
    let idx = tail & mask;
    // SAFETY: idx < sq_entries, so the slot lies inside the SQE mapping, which is suitably
    // aligned (page) for 64-byte SQEs; the kernel does not read it until we bump the tail.
    unsafe { sqes.ptr.cast::<Sqe>().add(idx as usize).write(sqe) };
    sq_map
        .u32_at(p.sq_off.array + idx * 4)
        .store(idx, Ordering::Relaxed);
    sq_map
        .u32_at(p.sq_off.tail)
        .store(tail.wrapping_add(1), Ordering::Release);
    // SAFETY: io_uring_enter takes the ring fd and counts; the sigset pointer is null.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            libc::c_long::from(ring.as_raw_fd()),
            1 as libc::c_long,
            1 as libc::c_long,
            libc::c_long::from(IORING_ENTER_GETEVENTS),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_long,
        )
    };
    if ret < 0 {
        return Err(("io_uring_enter", errno()));
    }
    let head = cq_map.u32_at(p.cq_off.head).load(Ordering::Acquire);
    let ctail = cq_map.u32_at(p.cq_off.tail).load(Ordering::Acquire);
    if head == ctail {
        return Err(("no completion", libc::EAGAIN));
    }
    let cmask = cq_map.u32_at(p.cq_off.ring_mask).load(Ordering::Relaxed);
    let off = p.cq_off.cqes as usize + (head & cmask) as usize * std::mem::size_of::<Cqe>();
    assert!(off + std::mem::size_of::<Cqe>() <= cq_map.len);
    // SAFETY: the CQE lies inside the CQ mapping (checked) and the kernel published it before
    // advancing the tail, which we loaded with Acquire.
    let cqe = unsafe { cq_map.ptr.add(off).cast::<Cqe>().read() };
    cq_map
        .u32_at(p.cq_off.head)
        .store(head.wrapping_add(1), Ordering::Release);
    let _ = (cqe.user_data, cqe.flags);
    Ok(cqe.res)
}
