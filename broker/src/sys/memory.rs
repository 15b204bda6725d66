//! The caller's memory: reads of its arguments (`process_vm_readv`), and the pages it shares
//! with the broker.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, RawNotification};

/// A shared, writable mapping of the first `len` bytes of a file (a sandbox's journal,
/// `restart/journal.rs`), holding plain data only: bytes and `struct seccomp_notif` records at 8-byte
/// aligned offsets. Every access is a copy through a raw pointer, never a reference, so two
/// threads touching the same bytes could only read a torn record; the journal gives each slot
/// to one thread at a time.
#[derive(Debug)]
pub(crate) struct SharedMap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; see the type's note on sharing.
unsafe impl Send for SharedMap {}

// SAFETY: as above.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` (which must be at least that long) shared and writable.
    pub(crate) fn new(file: BorrowedFd<'_>, len: usize) -> io::Result<SharedMap> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(SharedMap { ptr, len })
    }

    fn at(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len)
                && offset.is_multiple_of(align),
            "shared map access at {offset}+{size} out of bounds or misaligned"
        );
        // SAFETY: in bounds, as just checked.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// Copies `out.len()` bytes from `offset`.
    pub(crate) fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        let p = self.at(offset, out.len(), 1);
        // SAFETY: in bounds; plain bytes.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
    }

    /// Copies `bytes` to `offset`.
    pub(crate) fn write_bytes(&self, offset: usize, bytes: &[u8]) {
        let p = self.at(offset, bytes.len(), 1);
        // SAFETY: in bounds; plain bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    }

    /// The notification recorded at `offset`.
    pub(crate) fn read_notif(&self, offset: usize) -> RawNotification {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: in bounds and aligned; `seccomp_notif` is plain data, any bytes are a value.
        let n = unsafe { std::ptr::read_volatile(p.cast::<libc::seccomp_notif>()) };
        RawNotification {
            id: n.id,
            pid: n.pid,
            nr: n.data.nr,
            arch: n.data.arch,
            args: n.data.args,
        }
    }

    /// Records `notif` at `offset`.
    pub(crate) fn write_notif(&self, offset: usize, notif: &RawNotification) {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: plain data, zeroed then filled.
        let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        n.id = notif.id;
        n.pid = notif.pid;
        n.data.nr = notif.nr;
        n.data.arch = notif.arch;
        n.data.args = notif.args;
        // SAFETY: in bounds and aligned.
        unsafe { std::ptr::write_volatile(p.cast::<libc::seccomp_notif>(), n) };
    }

    /// Zeroes the record at `offset`.
    pub(crate) fn clear_notif(&self, offset: usize) {
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: in bounds and aligned; zero is a valid `seccomp_notif`.
        unsafe { std::ptr::write_bytes(p.cast::<libc::seccomp_notif>(), 0, 1) };
    }

    /// As [`notif_recv`], with the kernel writing the notification straight into the record
    /// at `offset` (zeroed first, as the ioctl requires): once the ioctl returns, the call is
    /// on record, whatever happens to the broker next.
    pub(crate) fn notif_recv_into(
        &self,
        listener: BorrowedFd<'_>,
        offset: usize,
    ) -> io::Result<RawNotification> {
        self.clear_notif(offset);
        let p = self.at(offset, size_of::<libc::seccomp_notif>(), 8);
        // SAFETY: an in-bounds, aligned, zeroed `seccomp_notif`; the kernel writes at most its
        // size.
        cvt(unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV as _, p) })?;
        Ok(self.read_notif(offset))
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Copies `buf.len()` bytes at `addr` of process `pid` into `buf` with `process_vm_readv`.
/// A short read is `EFAULT`, as the kernel's own `copy_from_user` would say.
pub(crate) fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes our own writable buffer of the stated length; `remote` is only
    // dereferenced by the kernel in the target's address space, where a bad address is EFAULT.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}
