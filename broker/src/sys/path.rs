//! Paths resolved in a caller's root (`openat2` with `RESOLVE_IN_ROOT`).

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_long};

/// `open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)`.
pub(crate) fn open_dir_path(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is NUL-terminated and lives across the call.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How many times [`open_in_root`] walks a path again that the kernel answered `EAGAIN`.
const IN_ROOT_TRIES: usize = 64;

/// `openat2(dirfd, path, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: `path`
/// is resolved as if `dirfd` were `/`, so neither `..` nor an absolute symlink leaves it.
///
/// The kernel answers `EAGAIN` when a rename or a mount anywhere on the system happened while
/// it walked a `..` of the path (it cannot then be sure the walk stayed inside), and asks the
/// caller to try again; a program's own call would never see that errno, so the walk is
/// retried, at most `IN_ROOT_TRIES` times.
pub(crate) fn open_in_root(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let mut tries = 1;
    loop {
        match open_in_root_once(root, path) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < IN_ROOT_TRIES => {
                tries += 1;
            }
            result => return result,
        }
    }
}

fn open_in_root_once(root: BorrowedFd<'_>, path: &[u8]) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain integers; all-zero is its valid empty value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` is NUL-terminated, `how` is a valid open_how of the size passed.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
