//! `sendmmsg`: the messages sent one by one, and the counts written back to the caller's
//! vector as the kernel would.

use crate::call::{Call, Step};
use crate::ops::msg::{self, MsgHdr};
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self};

use super::read_message;
use super::run;
use super::send_one;
use super::Sent;

/// Decides one notified `sendmmsg(fd, msgvec, vlen, flags)`: the entries in order, each
/// decided on its own, stopping at the first that fails. As in the kernel, the count of
/// messages sent is returned when it is not zero, and each sent entry's `msg_len` is written
/// back into the caller's vector.
///
/// Invariant 4 holds for every entry, not only the first: what is read of an entry is checked
/// with `NOTIF_ID_VALID` before the entry is sent, and again before its `msg_len` is written
/// back, through the caller's memory file opened before the first check ([`WriteBack`]). A
/// caller that is gone meanwhile (a sibling thread's `execve` kills it and gives its pid to a
/// new program image) stops the call: nothing more is sent in its name, and nothing is
/// written into the new image.
pub(crate) fn decide_sendmmsg(call: &Call) -> Step {
    let [fd, vec_ptr, vlen, flags, ..] = call.notif.args;
    let out = Outcome::new("sendmmsg");
    let (sock, kind) = match call.socket(fd as i32) {
        Ok(s) => s,
        Err((errno, why)) => return Step::Done(out.failed(errno, why)),
    };
    // The kernel clamps vlen (an unsigned int) to UIO_MAXIOV.
    let count = (vlen as u32 as u64).min(msg::UIO_MAXIOV) as usize;
    // The kernel reads each entry when it comes to it: the entries before one it cannot read
    // are sent. The vector is read at once when it can be, entry by entry otherwise.
    let mut vector = vec![0u8; count * msg::MMSGHDR_LEN];
    let whole = sys::read_memory(call.notif.pid, vec_ptr, &mut vector).is_ok();
    let files = match WriteBack::open(call.notif.pid) {
        Ok(f) => f,
        Err(e) => return Step::Done(out.failed(errno_of(&e), "no-memory-file")),
    };
    // `run` checks NOTIF_ID_VALID first: the files opened above are the caller's.
    run(call, sock, kind, out, move |call, sock, kind| {
        let gone =
            |endpoints: Vec<String>| (None, "gone", endpoints.join(" "), Reply::Errno(libc::ESRCH));
        let back = WriteBack::read(files);
        let mut sent = 0usize;
        let mut last: Option<Sent> = None;
        let mut endpoints = Vec::new();
        for i in 0..count {
            let at = vec_ptr.wrapping_add((i * msg::MMSGHDR_LEN) as u64);
            let mut entry = [0u8; msg::MSGHDR_LEN];
            let readable = if whole {
                entry.copy_from_slice(&vector[i * msg::MMSGHDR_LEN..][..msg::MSGHDR_LEN]);
                Ok(())
            } else {
                sys::read_memory(call.notif.pid, at, &mut entry).map_err(|e| errno_of(&e))
            };
            let mut r = match readable.and_then(|()| read_message(call, &MsgHdr::parse(&entry))) {
                Ok(_) if !call.still_valid() => return gone(endpoints),
                Ok(m) => send_one(call, sock, kind, m, flags as i32),
                Err(errno) => Sent::failed(errno, "bad-message"),
            };
            if !r.endpoint.is_empty() && endpoints.len() < 8 {
                endpoints.push(r.endpoint.clone());
            }
            if let Reply::Value(n) = r.reply {
                if !call.still_valid() {
                    return gone(endpoints);
                }
                let at = vec_ptr + (i * msg::MMSGHDR_LEN + msg::MMSG_LEN_OFFSET) as u64;
                // As the kernel: a `msg_len` that cannot be written ends the call, and that
                // message is not counted (EFAULT when it was the first).
                if let Err(errno) = back.write(at, &(n as u32).to_ne_bytes()) {
                    r.reply = Reply::Errno(errno);
                }
            }
            let failed = matches!(r.reply, Reply::Errno(_));
            last = Some(r);
            if failed {
                break;
            }
            sent += 1;
        }
        let last = last.unwrap_or_else(|| Sent::failed(0, ""));
        let reply = if sent > 0 || count == 0 {
            Reply::Value(sent as i64)
        } else {
            last.reply
        };
        (last.decision, last.failure, endpoints.join(" "), reply)
    })
}

/// Where `sendmmsg` writes the `msg_len` of each message sent: the caller's `/proc/TID/mem`
/// (the address space the file was opened on, whatever the pid names later), only where the
/// caller's `/proc/TID/maps` says the caller may write itself (the file writes through
/// read-only pages; the kernel's own write-back would fail with `EFAULT` there). Both are
/// opened before `NOTIF_ID_VALID` is asked, so that they are known to be the caller's.
pub(super) struct WriteBack {
    mem: std::fs::File,
    /// `[start, end)` of the caller's writable mappings, in order.
    writable: Vec<(u64, u64)>,
}

impl WriteBack {
    /// The caller's memory and maps files: check `NOTIF_ID_VALID` after this.
    pub(super) fn open(tid: u32) -> std::io::Result<(std::fs::File, std::fs::File)> {
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{tid}/mem"))?;
        let maps = std::fs::File::open(format!("/proc/{tid}/maps"))?;
        Ok((mem, maps))
    }

    /// Reads the writable mappings (none when the address space is gone: every write then
    /// fails).
    pub(super) fn read((mem, mut maps): (std::fs::File, std::fs::File)) -> WriteBack {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut maps, &mut text);
        WriteBack {
            mem,
            writable: writable_ranges(&text),
        }
    }

    /// Writes `bytes` at `at`, or `EFAULT`.
    pub(super) fn write(&self, at: u64, bytes: &[u8]) -> Result<(), i32> {
        if !covered(&self.writable, at, bytes.len()) {
            return Err(libc::EFAULT);
        }
        match std::os::unix::fs::FileExt::write_at(&self.mem, bytes, at) {
            Ok(n) if n == bytes.len() => Ok(()),
            _ => Err(libc::EFAULT),
        }
    }
}

/// Whether `len` bytes at `at` lie in `ranges` (in order, not overlapping).
pub(super) fn covered(ranges: &[(u64, u64)], at: u64, len: usize) -> bool {
    let Some(end) = at.checked_add(len as u64) else {
        return false;
    };
    let mut from = at;
    while from < end {
        let i = ranges.partition_point(|&(_, e)| e <= from);
        match ranges.get(i) {
            Some(&(s, e)) if s <= from => from = e,
            _ => return false,
        }
    }
    true
}

/// The writable mappings of a `/proc/TID/maps` text (`start-end perms ...`, hexadecimal).
pub(super) fn writable_ranges(maps: &str) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = maps
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (start, end) = words.next()?.split_once('-')?;
            let perms = words.next()?;
            if perms.as_bytes().get(1) != Some(&b'w') {
                return None;
            }
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some((start, end))
        })
        .collect();
    out.sort_unstable();
    out
}
