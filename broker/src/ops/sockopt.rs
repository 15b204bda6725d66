//! `setsockopt` of a socket's filter: `SO_ATTACH_FILTER`, `SO_ATTACH_BPF`, `SO_DETACH_FILTER`
//! and `SO_LOCK_FILTER` (and nothing else: the seccomp filter sends only these here).
//!
//! These options came here while a unix datagram bind was checked after the kernel had made
//! it, with a filter of the broker's on the socket that no confined thread could lift (rt3,
//! rt4). A datagram bind now lands where it was decided by construction (`ops/unix/bind.rs`),
//! and the broker puts no filter on a program's socket any more; the options still come here,
//! so that the seccomp filters of sandboxes already running (which a `netjaild` restart keeps)
//! and of new ones are the same. The broker sets the option on its copy of the caller's
//! socket, on a thread that has taken the caller's identity, with the caller's bytes, the
//! instructions of a classic program copied out of the caller and a descriptor of an eBPF
//! program taken from it, so that the kernel answers as it would have answered the caller,
//! errno included (what the broker cannot read of the caller's memory the kernel is handed as
//! memory it cannot read either).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::bounds::reaper::CallerFd;
use crate::call::{Call, Step};
use crate::caller::as_thread;
use crate::reply::errno_of;
use crate::reply::{Outcome, Reply};
use crate::sys::{self, Become};

/// The options that come here, with their names for the audit.
pub(crate) const FILTER_OPTIONS: [(i32, &str); 4] = [
    (libc::SO_ATTACH_FILTER, "SO_ATTACH_FILTER"),
    (libc::SO_ATTACH_BPF, "SO_ATTACH_BPF"),
    (libc::SO_DETACH_FILTER, "SO_DETACH_FILTER"),
    (libc::SO_LOCK_FILTER, "SO_LOCK_FILTER"),
];

/// `BPF_MAXINSNS`: the most instructions a classic program may have (`linux/bpf_common.h`).
const BPF_MAXINSNS: u16 = 4096;

/// The size of `struct sock_fprog` on a 64-bit kernel.
const FPROG_LEN: u32 = 16;

/// `setsockopt(fd, SOL_SOCKET, name, optval, optlen)` for one of [`FILTER_OPTIONS`]: on the
/// blocking pool, for the last close of the eBPF program's descriptor it takes may wait (a
/// socket with `SO_LINGER` given as the program, rt5 H1), and the receiver must go on serving
/// the sandbox's other calls meanwhile.
pub(crate) fn decide_setsockopt(_call: &Call) -> Step {
    Step::Blocking(Box::new(set_filter_option))
}

fn set_filter_option(call: &Call) -> Outcome {
    let [fd, level, name, optval, optlen, _] = call.notif.args;
    let (level, name, optlen) = (level as i32, name as i32, optlen as i32);
    let mut out = Outcome::new("setsockopt");
    let Some(&(_, label)) = FILTER_OPTIONS.iter().find(|(n, _)| *n == name) else {
        // Never: the filter sends no other option.
        return out.failed(libc::EPERM, "not-a-filter-option");
    };
    if level != libc::SOL_SOCKET {
        return out.failed(libc::EPERM, "not-a-filter-option");
    }
    out.endpoint = label.to_string();
    // Linux 6.18's order (`__sys_setsockopt`, `do_sock_setsockopt`, `sk_setsockopt`): the
    // descriptor, the length's sign, then the first int of the value.
    let (sock, _) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return out.failed(errno, why),
    };
    if optlen < 0 {
        return out.decided(None, "", Reply::Errno(libc::EINVAL));
    }
    let optlen = optlen as u32;
    if optlen < 4 {
        return out.decided(None, "", Reply::Errno(libc::EINVAL));
    }
    let mut value = [0u8; FPROG_LEN as usize];
    if sys::read_memory(call.notif.pid, optval, &mut value[..4]).is_err() {
        return out.decided(None, "", Reply::Errno(libc::EFAULT));
    }
    // The eBPF program's descriptor, taken from the caller: its last close may wait (a socket
    // with `SO_LINGER` given as the program).
    let program = (name == libc::SO_ATTACH_BPF && optlen == 4).then(|| {
        let theirs = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
        call.take_fd(theirs)
    });
    // Set by a thread that has taken the caller's identity: the kernel's checks of who sets
    // a filter are the caller's (a TCP socket refuses one to a user without privilege).
    let set = || match name {
        libc::SO_ATTACH_FILTER => attach_filter(call, sock.as_fd(), optval, optlen, value),
        libc::SO_ATTACH_BPF => attach_bpf(sock.as_fd(), &mut value, optlen, program.as_ref()),
        _ => answer(sys::set_filter_option(sock.as_fd(), name, &value, optlen)),
    };
    let reply = as_thread(call, Become::Full, set).unwrap_or_else(|e| Reply::Errno(errno_of(&e)));
    drop(program);
    out.decided(None, "", reply)
}

/// `SO_ATTACH_FILTER`: the caller's `struct sock_fprog` and its instructions, copied; what
/// cannot be read of them is handed to the kernel as memory it cannot read either, so that it
/// answers in its own order (a lock, or a socket's own refusal, before the fault).
fn attach_filter(
    call: &Call,
    sock: BorrowedFd<'_>,
    optval: u64,
    optlen: u32,
    first: [u8; 16],
) -> Reply {
    if optlen != FPROG_LEN {
        // `copy_bpf_fprog_from_user`: only a `struct sock_fprog`.
        return answer(sys::set_filter_option(
            sock,
            libc::SO_ATTACH_FILTER,
            &first,
            optlen,
        ));
    }
    let mut fprog = [0u8; FPROG_LEN as usize];
    if sys::read_memory(call.notif.pid, optval, &mut fprog).is_err() {
        return with_cut(|cut| {
            let at = cut.ending_with(&first[..4]);
            sys::set_filter_option_at(sock, libc::SO_ATTACH_FILTER, at, optlen)
        });
    }
    let len = u16::from_ne_bytes([fprog[0], fprog[1]]);
    let insns_at = u64::from_ne_bytes(fprog[8..].try_into().expect("8 bytes"));
    if len == 0 || len > BPF_MAXINSNS || insns_at == 0 {
        // Refused before the instructions are read (a lock first, then their number): the
        // kernel answers for a program of that length at no address of the broker's.
        let none = sys::fprog_bytes(len, std::ptr::null());
        return answer(sys::set_filter_option(
            sock,
            libc::SO_ATTACH_FILTER,
            &none,
            optlen,
        ));
    }
    let mut bytes = vec![0u8; usize::from(len) * 8];
    if sys::read_memory(call.notif.pid, insns_at, &mut bytes).is_err() {
        return with_cut(|cut| {
            let none = sys::fprog_bytes(len, cut.unreadable() as *const libc::sock_filter);
            sys::set_filter_option(sock, libc::SO_ATTACH_FILTER, &none, optlen)
        });
    }
    let insns: Vec<libc::sock_filter> = bytes
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let ours = sys::fprog_bytes(len, insns.as_ptr());
    answer(sys::set_filter_option(
        sock,
        libc::SO_ATTACH_FILTER,
        &ours,
        optlen,
    ))
}

/// Runs `set` with a [`sys::CutBuffer`]; `EFAULT` when none can be mapped (the caller's
/// memory could not be read, which is what the kernel would say but for checks before it).
fn with_cut(set: impl FnOnce(&mut sys::CutBuffer) -> std::io::Result<()>) -> Reply {
    match sys::CutBuffer::new() {
        Ok(mut cut) => answer(set(&mut cut)),
        Err(_) => Reply::Errno(libc::EFAULT),
    }
}

/// `SO_ATTACH_BPF`: the caller's descriptor of an eBPF program, taken (`program`), or where
/// it names none, a descriptor that is none (-1), so that the kernel answers in its order.
fn attach_bpf(
    sock: BorrowedFd<'_>,
    value: &mut [u8; 16],
    optlen: u32,
    program: Option<&Result<CallerFd, (i32, &'static str)>>,
) -> Reply {
    let ours = match program {
        None => {
            return answer(sys::set_filter_option(
                sock,
                libc::SO_ATTACH_BPF,
                value,
                optlen,
            ))
        }
        Some(Ok(p)) => p.as_raw_fd(),
        Some(Err(_)) => -1,
    };
    value[..4].copy_from_slice(&ours.to_ne_bytes());
    answer(sys::set_filter_option(
        sock,
        libc::SO_ATTACH_BPF,
        value,
        optlen,
    ))
}

fn answer(done: std::io::Result<()>) -> Reply {
    match done {
        Ok(()) => Reply::Value(0),
        Err(e) => Reply::Errno(crate::reply::errno_of(&e)),
    }
}
