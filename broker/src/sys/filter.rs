//! Classic BPF socket filters (`SO_ATTACH_FILTER`): read, set, and the one that drops every
//! packet.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// The classic BPF socket filter a socket had (`SO_GET_FILTER`): empty when it had none.
///
/// # References
/// socket(7) (`SO_ATTACH_FILTER`, `SO_DETACH_FILTER`), Documentation/networking/filter.rst
/// (`SO_GET_FILTER`: with a zero length, the number of instructions)
pub fn socket_filter(fd: BorrowedFd<'_>) -> io::Result<Vec<libc::sock_filter>> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: a zero length asks for the count only; the kernel writes no instruction.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    })?;
    let count = len as usize;
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut prog = vec![
        libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0
        };
        count
    ];
    // `SO_GET_FILTER` counts in instructions, not bytes.
    let mut got = count as libc::socklen_t;
    // SAFETY: `prog` holds `count` instructions, the length given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            prog.as_mut_ptr().cast(),
            &mut got,
        )
    })?;
    prog.truncate(got as usize);
    Ok(prog)
}

/// Attaches the classic BPF program `prog` to the socket (`SO_ATTACH_FILTER`), replacing its
/// filter; an empty `prog` detaches it (`SO_DETACH_FILTER`).
pub fn set_socket_filter(fd: BorrowedFd<'_>, prog: &[libc::sock_filter]) -> io::Result<()> {
    if prog.is_empty() {
        // `setsockopt` wants an int's length for every `SOL_SOCKET` option; this one does
        // not read it.
        let unused: libc::c_int = 0;
        // SAFETY: `unused` lives for the call and has the length given.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DETACH_FILTER,
                (&unused as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        return match cvt(r) {
            // No filter to detach.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        };
    }
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `prog`, alive for the call; the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A socket filter that takes nothing (`BPF_RET | BPF_K`, 0 bytes): every datagram sent to
/// the socket is dropped before it is queued.
pub const DROP_ALL: [libc::sock_filter; 1] = [libc::sock_filter {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
}];
