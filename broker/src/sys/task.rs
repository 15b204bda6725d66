//! A task of its own for a check the kernel makes against the whole process: the limit on
//! descriptors in flight compares the sending user's count with the sending *process's*
//! `RLIMIT_NOFILE`, and a process's limits are shared by all its threads. The broker's own
//! limit is not the caller's, so the check is made in a short-lived task that shares the
//! broker's memory and descriptor table (like `vfork`) but has limits of its own, set to the
//! caller's, and the caller's ids and capabilities.
//!
//! The task runs raw system calls only, on arguments prepared before it starts; the thread
//! that starts it waits until it has exited (`CLONE_VFORK`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::identity::{CapData, CapHeader, CAPABILITY_VERSION_3};
use super::{cvt, cvt_long, Identity};

/// What the task does, all prepared by the thread that starts it.
#[repr(C)]
struct Task {
    nofile: libc::rlimit64,
    /// Whether the groups must change (`setgroups` needs `CAP_SETGID` even to keep them).
    set_groups: bool,
    groups: *const u32,
    ngroups: usize,
    uids: [u32; 3],
    gids: [u32; 3],
    cap_effective: u64,
    cap_permitted: u64,
    sock: i32,
    msg: *const libc::msghdr,
    /// What came of it: bytes sent, or a negative errno.
    result: i64,
}

/// The errno of the last failed call, negated.
fn failed() -> i64 {
    -i64::from(
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EPERM),
    )
}

/// The task's steps: its limit, its ids, its capabilities, then the send.
fn steps(t: &Task) -> i64 {
    // SAFETY: every call in this block is a raw system call on integers and on buffers the
    // starting thread prepared and keeps alive until this task has exited.
    unsafe {
        if libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            &t.nofile,
            std::ptr::null_mut::<libc::rlimit64>(),
        ) != 0
        {
            return failed();
        }
        if t.set_groups && libc::syscall(libc::SYS_setgroups, t.ngroups, t.groups) != 0 {
            return failed();
        }
        let [r, e, s] = t.gids;
        if libc::syscall(libc::SYS_setresgid, r, e, s) != 0 {
            return failed();
        }
        let [r, e, s] = t.uids;
        if libc::syscall(libc::SYS_setresuid, r, e, s) != 0 {
            return failed();
        }
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return failed();
        }
        // Leaving uid 0 has emptied the sets already; otherwise narrow them to the caller's.
        let have = u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32);
        let (eff, prm) = (t.cap_effective & have, t.cap_permitted & have);
        let data = [
            CapData {
                effective: eff as u32,
                permitted: prm as u32,
                inheritable: 0,
            },
            CapData {
                effective: (eff >> 32) as u32,
                permitted: (prm >> 32) as u32,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            return failed();
        }
        let n = libc::sendmsg(t.sock, t.msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        if n < 0 {
            return failed();
        }
        n as i64
    }
}

extern "C" fn task_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Task` of the thread that started this task, which waits (vfork)
    // and does not touch it until this task has exited.
    let task = unsafe { &mut *arg.cast::<Task>() };
    task.result = steps(task);
    0
}

/// Whether this thread's supplementary groups are `groups` (in any order).
fn same_groups(groups: &[u32]) -> io::Result<bool> {
    let mut have = [0u32; 256];
    // SAFETY: the kernel writes at most `have.len()` gids into the buffer.
    let n = cvt_long(unsafe { libc::syscall(libc::SYS_getgroups, have.len(), have.as_mut_ptr()) })?
        as usize;
    let mut have = have[..n].to_vec();
    let mut want = groups.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    Ok(have == want)
}

/// Whether the caller `who`, whose `RLIMIT_NOFILE` is `nofile`, may put the descriptors of
/// the `SCM_RIGHTS` control messages `control` in flight: the kernel's own check
/// (`ETOOMANYREFS` when the user already has more in flight than the sending process's limit
/// and the sender has neither `CAP_SYS_RESOURCE` nor `CAP_SYS_ADMIN`), made by a task with
/// `who`'s ids, capabilities and limit that sends them over a socket pair of its own; the
/// pair is closed at once, which takes them out of flight again. `Err` carries the errno.
pub(crate) fn rights_within_limit(
    who: &Identity,
    nofile: (u64, u64),
    control: &[u8],
) -> io::Result<()> {
    let (a, _b) = datagram_pair()?;
    let mut own = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `nofile_limit`, for this process.
    cvt(unsafe { libc::prlimit64(0, libc::RLIMIT_NOFILE, std::ptr::null(), &mut own) })?;
    let byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len();
    let mut task = Task {
        // Never above this process's hard limit, which the task could not set.
        nofile: libc::rlimit64 {
            rlim_cur: nofile.0.min(own.rlim_max),
            rlim_max: own.rlim_max,
        },
        set_groups: !same_groups(&who.groups)?,
        groups: who.groups.as_ptr(),
        ngroups: who.groups.len(),
        uids: [who.uids[0], who.uids[1], who.uids[2]],
        gids: [who.gids[0], who.gids[1], who.gids[2]],
        cap_effective: who.cap_effective,
        cap_permitted: who.cap_permitted,
        sock: a.as_raw_fd(),
        msg: &msg,
        result: -i64::from(libc::ECHILD),
    };
    run_task(&mut task)?;
    match task.result {
        n if n >= 0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error((-errno) as i32)),
    }
}

/// A connected pair of unix datagram sockets (close-on-exec).
fn datagram_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut pair = [0i32; 2];
    // SAFETY: `pair` has room for the two descriptors the kernel writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    })?;
    // SAFETY: the kernel just returned these two open descriptors, owned by nobody else.
    let pair = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1]))
    };
    Ok(pair)
}

/// Runs [`task_main`] on `task` in a task of its own that shares this process's memory and
/// descriptors but has its own limits and credentials; returns once it has exited.
fn run_task(task: &mut Task) -> io::Result<()> {
    let mut stack = vec![0u8; 64 * 1024];
    // The stack grows down from its 16-byte aligned end.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: `task_main` runs on `stack`, which outlives the task (CLONE_VFORK: this thread
    // resumes only when the task has exited), with `task`, likewise alive; CLONE_VM shares
    // this memory, CLONE_FILES this descriptor table, and without CLONE_THREAD the task has
    // limits and credentials of its own. Exit signal 0: no SIGCHLD, and only a `__WCLONE`
    // wait reaps it (never a reaper of the broker's ordinary children).
    let pid = cvt(unsafe {
        libc::clone(
            task_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES,
            (task as *mut Task).cast(),
        )
    })?;
    let mut status = 0;
    loop {
        // SAFETY: reaps the task just started (it has exited: CLONE_VFORK); `status` is a
        // live local.
        match cvt_long(unsafe { libc::waitpid(pid, &mut status, libc::__WCLONE) } as libc::c_long) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => {
                other?;
                break;
            }
        }
    }
    drop(stack);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: nobody with a limit of 8 may put descriptors in flight until its user has more
    /// than 8 there; root itself (CAP_SYS_RESOURCE) always may.
    #[test]
    fn in_flight_check_is_the_callers() {
        if super::super::geteuid() != 0 {
            eprintln!("SKIP in_flight_check_is_the_callers: needs root");
            return;
        }
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        let fd = file.as_raw_fd();
        let mut control = Vec::new();
        let space = 16 + 4 * 4;
        control.resize(space, 0u8);
        control[..8].copy_from_slice(&(space as u64).to_ne_bytes());
        control[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        control[12..16].copy_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        for i in 0..4 {
            control[16 + 4 * i..20 + 4 * i].copy_from_slice(&fd.to_ne_bytes());
        }
        let nobody = Identity {
            uids: [65534; 4],
            gids: [65534; 4],
            groups: Vec::new(),
            cap_effective: 0,
            cap_permitted: 0,
            umask: None,
        };
        rights_within_limit(&nobody, (8, 8), &control).expect("nothing of nobody's in flight");
        // From a thread that charges the caller's real user, as the broker's sends do.
        std::thread::scope(|s| {
            s.spawn(|| {
                super::super::become_caller(&nobody, super::super::Become::Filesystem)
                    .expect("become");
                rights_within_limit(&nobody, (8, 8), &control).expect("from a charging thread");
            });
        });
    }
}
