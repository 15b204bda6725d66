//! `setsockopt` of a socket's filter: `SO_ATTACH_FILTER`, `SO_ATTACH_BPF`, `SO_DETACH_FILTER`
//! and `SO_LOCK_FILTER` (and nothing else: the seccomp filter sends only these here).
//!
//! A unix datagram bind is checked after the kernel has made it (`ops/unix.rs`): while the
//! broker looks where the socket landed, the socket drops every datagram (a filter the broker
//! attaches), so that nothing sent to a name the policy refuses can be read. The program holds
//! the same socket, so it must not take that filter off in the meantime: every change of a
//! socket's filter by a confined thread comes here, and waits while the broker has the socket
//! in hand ([`FilterHold`]). The broker then sets the option on its copy of the caller's
//! socket, on a thread that has taken the caller's identity, with the caller's bytes, the
//! instructions of a classic program copied out of the caller and a descriptor of an eBPF
//! program taken from it, so that the kernel answers as it would have answered the caller,
//! errno included (what the broker cannot read of the caller's memory the kernel is handed as
//! memory it cannot read either).
//!
//! The hold is the broker process's own: a confined thread served by another broker (another
//! `netjail run`'s embedded broker) that holds the same socket, or a process outside every
//! sandbox, is not held back (docs/security.md, "rt5").

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Condvar, Mutex};

use crate::bounds::reaper::CallerFd;
use crate::call::{Call, Step};
use crate::caller::as_thread;
use crate::reply::errno_of;
use crate::reply::{Outcome, Reply};
use crate::sys::{self, Become, FileId};

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

/// The sockets whose filter the broker has in hand, by file.
static HELD: Mutex<Option<HashSet<FileId>>> = Mutex::new(None);
static RELEASED: Condvar = Condvar::new();

/// A socket whose filter nobody else of the broker changes while this lives: a unix datagram
/// bind holds it from before the filter that drops everything until the socket has its own
/// filter back, and a filter option set for a caller holds it while it is set.
pub(crate) struct FilterHold {
    file: FileId,
}

impl FilterHold {
    /// Waits until no other part of the broker holds `sock`'s filter, then holds it.
    pub(crate) fn take(sock: BorrowedFd<'_>) -> std::io::Result<FilterHold> {
        let file = sys::stat_fd(sock)?.id;
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        while held.get_or_insert_with(HashSet::new).contains(&file) {
            held = RELEASED.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.get_or_insert_with(HashSet::new).insert(file);
        Ok(FilterHold { file })
    }
}

impl Drop for FilterHold {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = held.as_mut() {
            set.remove(&self.file);
        }
        drop(held);
        RELEASED.notify_all();
    }
}

/// `setsockopt(fd, SOL_SOCKET, name, optval, optlen)` for one of [`FILTER_OPTIONS`]: on the
/// blocking pool, for it may wait while a bind of the same socket holds its filter, and the
/// receiver must go on serving the sandbox's other calls meanwhile.
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
    // The eBPF program's descriptor is taken before the hold and closed after it: its last
    // close may wait (a socket with `SO_LINGER` given as the program), and must not keep the
    // socket's filter held meanwhile.
    let program = (name == libc::SO_ATTACH_BPF && optlen == 4).then(|| {
        let theirs = i32::from_ne_bytes([value[0], value[1], value[2], value[3]]);
        call.take_fd(theirs)
    });
    let hold = match FilterHold::take(sock.as_fd()) {
        Ok(h) => h,
        Err(e) => return out.failed(crate::reply::errno_of(&e), "no-socket-file"),
    };
    // Set by a thread that has taken the caller's identity: the kernel's checks of who sets
    // a filter are the caller's (a TCP socket refuses one to a user without privilege).
    let set = || match name {
        libc::SO_ATTACH_FILTER => attach_filter(call, sock.as_fd(), optval, optlen, value),
        libc::SO_ATTACH_BPF => attach_bpf(sock.as_fd(), &mut value, optlen, program.as_ref()),
        _ => answer(sys::set_filter_option(sock.as_fd(), name, &value, optlen)),
    };
    let reply = as_thread(call, Become::Full, set).unwrap_or_else(|e| Reply::Errno(errno_of(&e)));
    drop(hold);
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
