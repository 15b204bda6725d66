//! The socket filter options the broker sets for a caller (`SO_ATTACH_FILTER`,
//! `SO_ATTACH_BPF`, `SO_DETACH_FILTER`, `SO_LOCK_FILTER`), and memory the kernel cannot read.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// `setsockopt(fd, SOL_SOCKET, name, value, optlen)` with a `value` of the broker's: the
/// socket filter options the broker sets for a caller ([`crate::ops::sockopt`]), whose
/// arguments it has copied and, where they name memory or a descriptor, made its own.
/// `optlen` is the caller's: the kernel reads no more than `value` holds of these options
/// (`SO_ATTACH_FILTER`: a `struct sock_fprog` when `optlen` is its size, `EINVAL`
/// otherwise; the others: one `int`), and `value` is at least `min(optlen, 16)` bytes.
///
/// # References
/// socket(7); net/core/sock.c `sk_setsockopt`, net/core/filter.c `copy_bpf_fprog_from_user`
pub(crate) fn set_filter_option(
    fd: BorrowedFd<'_>,
    name: i32,
    value: &[u8],
    optlen: u32,
) -> io::Result<()> {
    assert!(value.len() >= (optlen as usize).min(16));
    // SAFETY: `value` is live for the call and holds every byte the kernel reads of these
    // options (asserted above).
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            value.as_ptr().cast(),
            optlen,
        )
    })?;
    Ok(())
}

/// A `struct sock_fprog` of `len` instructions at `insns`, as the bytes `setsockopt` takes
/// (the pointer is the broker's: `insns` must outlive the call it is given to).
pub(crate) fn fprog_bytes(len: u16, insns: *const libc::sock_filter) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..2].copy_from_slice(&len.to_ne_bytes());
    bytes[8..].copy_from_slice(&(insns as u64).to_ne_bytes());
    bytes
}

/// `setsockopt(fd, SOL_SOCKET, name, optval, optlen)` with `optval` an address the broker
/// need not be able to read ([`CutBuffer`]): the kernel copies from it what it reads of the
/// option and answers `EFAULT` where it cannot, after checks of its own that come first.
///
/// # References
/// socket(7); net/core/sock.c `sk_setsockopt`
pub(crate) fn set_filter_option_at(
    fd: BorrowedFd<'_>,
    name: i32,
    optval: u64,
    optlen: u32,
) -> io::Result<()> {
    // SAFETY: the kernel only reads from `optval` (`copy_from_sockptr`), and a read of memory
    // that is not mapped or not readable is its `EFAULT`, never a fault of this process.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            optval as usize as *const libc::c_void,
            optlen,
        )
    })?;
    Ok(())
}

/// Two pages of the broker's own: the first readable, the second not, so that the kernel can
/// be handed bytes that end where readable memory ends, or an address it cannot read, as the
/// caller handed it (the kernel then answers in its own order of checks). Unmapped on drop.
pub(crate) struct CutBuffer {
    base: usize,
    page: usize,
}

impl CutBuffer {
    /// Maps the two pages.
    pub(crate) fn new() -> io::Result<CutBuffer> {
        // SAFETY: no arguments; `sysconf` only reads.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing: it
        // overlaps nothing of this process.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let cut = CutBuffer {
            base: base as usize,
            page,
        };
        // SAFETY: the second page of the mapping just made, owned by `cut`.
        cvt(unsafe {
            libc::mprotect(
                (cut.base + page) as *mut libc::c_void,
                page,
                libc::PROT_NONE,
            )
        })?;
        Ok(cut)
    }

    /// Writes `bytes` (at most a page) so that they end where the readable page ends, and
    /// returns their address.
    pub(crate) fn ending_with(&mut self, bytes: &[u8]) -> u64 {
        let len = bytes.len().min(self.page);
        let at = self.base + self.page - len;
        // SAFETY: `at .. at + len` lies in the first page of the mapping, readable and
        // writable, owned by `self` (borrowed mutably) and never handed out as a reference.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), at as *mut u8, len) };
        at as u64
    }

    /// The address of the page nobody can read.
    pub(crate) fn unreadable(&self) -> u64 {
        (self.base + self.page) as u64
    }
}

impl Drop for CutBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, 2 * self.page) };
    }
}
