//! Raw system calls of the launcher: fork, the confine step of the child (capabilities,
//! `no_new_privs`, Landlock, seccomp), exec, pidfds, Landlock rulesets.
//!
//! Between `fork` and `exec` the child runs only `child_confine_and_exec`, which makes raw
//! system calls on memory prepared before the fork: no allocation, no locks, no Rust runtime.
//!
//! This is the only module of the crate with `unsafe` code.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

mod capabilities;
mod landlock;
mod root;

use capabilities::drop_capabilities;
pub(crate) use capabilities::{dropped_capability_mask, DROPPED_CAPABILITIES};
pub(crate) use landlock::{landlock_abi, landlock_allow_beneath, landlock_ruleset};
pub(crate) use root::{
    runs_as_root, set_not_dumpable, DevEntry, DevKind, FreshProc, RootPlan, MAX_DEV_ENTRIES,
};

/// Report tags written by the child on the report pipe (8 bytes each: tag, value).
pub(crate) mod tag {
    /// The value is the fd number of the new seccomp listener.
    pub(crate) const LISTENER: i32 = 1;
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed with the errno in the value.
    pub(crate) const NO_NEW_PRIVS: i32 = 2;
    /// `seccomp()` failed with the errno in the value.
    pub(crate) const SECCOMP: i32 = 3;
    /// `execve` failed with the errno in the value.
    pub(crate) const EXEC: i32 = 4;
    /// Dropping capabilities failed with the errno in the value.
    pub(crate) const CAPABILITIES: i32 = 5;
    /// `landlock_restrict_self` failed with the errno in the value.
    pub(crate) const LANDLOCK: i32 = 6;
    /// The program would run as root (one of its uids is 0) and root was not allowed; the
    /// value is 0.
    pub(crate) const ROOT: i32 = 7;
    /// Setting up the private mount namespace of a root sandbox failed with the errno in the
    /// value.
    pub(crate) const MOUNTS: i32 = 8;
}

/// Everything the child needs, prepared before the fork.
pub(crate) struct ExecPlan {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    filter: Vec<libc::sock_filter>,
    dropped_capabilities: u64,
    landlock: Option<OwnedFd>,
    root: Option<RootPlan>,
}

impl ExecPlan {
    /// Prepares an exec of `path` with `argv` and the current environment. The child drops
    /// every capability of [`DROPPED_CAPABILITIES`] and applies no Landlock domain unless
    /// [`ExecPlan::keep_capabilities`] and [`ExecPlan::landlock`] say otherwise.
    pub(crate) fn new(
        path: &OsStr,
        argv: &[&OsStr],
        filter: Vec<libc::sock_filter>,
    ) -> io::Result<ExecPlan> {
        let c = |s: &OsStr| {
            CString::new(s.as_bytes()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte")
            })
        };
        let path = c(path)?;
        let argv: Vec<CString> = argv.iter().map(|a| c(a)).collect::<io::Result<_>>()?;
        let envp: Vec<CString> = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv)
            })
            .collect::<Result<_, _>>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "environment has a NUL"))?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            path,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            filter,
            dropped_capabilities: dropped_capability_mask(&[]),
            landlock: None,
            root: None,
        })
    }

    /// The child may run as root, in the private mount namespace `plan` sets up; without it
    /// a child that would run as root refuses to ([`tag::ROOT`]).
    pub(crate) fn allow_root(mut self, plan: RootPlan) -> ExecPlan {
        self.root = Some(plan);
        self
    }

    /// The child keeps these capabilities (numbers from [`DROPPED_CAPABILITIES`]) and drops
    /// the others of that list.
    pub(crate) fn keep_capabilities(mut self, keep: &[u32]) -> ExecPlan {
        self.dropped_capabilities = dropped_capability_mask(keep);
        self
    }

    /// The child restricts itself with this Landlock ruleset (`landlock_restrict_self`) after
    /// `no_new_privs` and before the seccomp filter.
    pub(crate) fn landlock(mut self, ruleset: OwnedFd) -> ExecPlan {
        self.landlock = Some(ruleset);
        self
    }
}

/// The parent's ends of a started child.
pub(crate) struct Spawned {
    /// Pid of the child.
    pub pid: libc::pid_t,
    /// Reads the child's reports; end of file once the child has exec'd.
    pub report: OwnedFd,
    /// The acknowledgement the child waits for before exec.
    pub ack: OwnedFd,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that confines itself and, once acknowledged, execs the plan.
///
/// Call it while the process has one thread (before any runtime starts): the child of a
/// multi-threaded process may only make async-signal-safe calls, which is all it does, but
/// locks held by other threads at fork time would stay held.
pub(crate) fn spawn(plan: &ExecPlan) -> io::Result<Spawned> {
    let (report_r, report_w) = pipe()?;
    let (ack_r, ack_w) = pipe()?;
    let prog = libc::sock_fprog {
        len: plan.filter.len() as u16,
        filter: plan.filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fork has no memory-safety preconditions; the child only calls
    // `child_confine_and_exec`, which never returns and makes raw system calls only.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; every pointer refers to memory of the plan
        // and `prog`, prepared before the fork and still mapped in the child.
        unsafe {
            child_confine_and_exec(
                plan,
                &prog,
                report_w.as_raw_fd(),
                ack_r.as_raw_fd(),
                ack_w.as_raw_fd(),
                report_r.as_raw_fd(),
            )
        }
    }
    drop(report_w);
    drop(ack_r);
    Ok(Spawned {
        pid,
        report: report_r,
        ack: ack_w,
    })
}

/// The confine steps, in their order: when the thread runs as root (any of its uids is 0),
/// refuse unless `root` gives the plan of a root sandbox and apply it; drop the capabilities
/// of `dropped` (a mask from
/// [`dropped_capability_mask`]), `prctl(PR_SET_NO_NEW_PRIVS)`, `landlock_restrict_self` with
/// `landlock` when there is one, then `seccomp(SECCOMP_SET_MODE_FILTER,
/// SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, prog)`. Returns
/// the new listener's fd number, or the [`tag`] of the step that failed with its errno (the
/// steps before it stay done). Each acts on the calling thread only. Shared by the forked child
/// of the launcher ([`spawn`]) and by a process confining itself
/// ([`confine_this_thread`]).
///
/// # Safety
/// Raw system calls only, no allocation, no lock: safe to call in a freshly forked child.
/// `prog` must point at a program that stays alive during the call.
unsafe fn confine_current_thread(
    dropped: u64,
    root: Option<&RootPlan>,
    landlock: Option<BorrowedFd<'_>>,
    prog: *const libc::sock_fprog,
) -> Result<RawFd, (i32, i32)> {
    let errno = || {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() }
    };
    // SAFETY: the caller's contract: raw system calls with integer arguments, a live ruleset
    // fd, a live plan, and a live program.
    unsafe {
        // Root first, while this thread still has the capabilities the mounts need.
        if runs_as_root() {
            let Some(plan) = root else {
                return Err((tag::ROOT, 0));
            };
            if let Err(e) = plan.apply() {
                return Err((tag::MOUNTS, e));
            }
        }
        if let Err(e) = drop_capabilities(dropped) {
            return Err((tag::CAPABILITIES, e));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err((tag::NO_NEW_PRIVS, errno()));
        }
        // Landlock needs no_new_privs (or CAP_SYS_ADMIN), and goes before the filter so that
        // the filter never has to allow it. The ruleset fd is CLOEXEC: exec closes it.
        if let Some(ruleset) = landlock {
            if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) != 0 {
                return Err((tag::LANDLOCK, errno()));
            }
        }
        let flags =
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            prog,
        );
        if listener < 0 {
            return Err((tag::SECCOMP, errno()));
        }
        Ok(listener as RawFd)
    }
}

/// The child's whole life before exec.
///
/// # Safety
/// Only in a child just returned from `fork`; never returns.
unsafe fn child_confine_and_exec(
    plan: &ExecPlan,
    prog: &libc::sock_fprog,
    report: RawFd,
    ack: RawFd,
    parent_ack: RawFd,
    parent_report: RawFd,
) -> ! {
    let send = |t: i32, v: i32| {
        let msg: [i32; 2] = [t, v];
        // SAFETY: writes 8 bytes from a live local array.
        unsafe { libc::write(report, msg.as_ptr().cast(), 8) };
    };
    let errno = || {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() }
    };
    // SAFETY: raw system calls with pointers to locals or to the plan, which was built before
    // the fork and stays mapped; nothing here allocates or takes a lock.
    unsafe {
        libc::close(parent_ack);
        libc::close(parent_report);
        // Rust ignores SIGPIPE in its own processes; the program gets the default back, and
        // an empty signal mask.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());

        let landlock = plan.landlock.as_ref().map(|r| r.as_fd());
        let root = plan.root.as_ref();
        let listener = match confine_current_thread(plan.dropped_capabilities, root, landlock, prog)
        {
            Ok(listener) => listener,
            Err((t, e)) => {
                send(t, e);
                libc::_exit(126);
            }
        };
        // From here on our own sendmsg would be trapped: the parent takes the listener with
        // pidfd_getfd, we only tell it the number.
        send(tag::LISTENER, listener);
        let mut byte = 0u8;
        let n = libc::read(ack, (&mut byte as *mut u8).cast(), 1);
        if n != 1 || byte != b'G' {
            libc::_exit(126);
        }
        libc::close(listener);
        libc::close(ack);
        libc::execve(
            plan.path.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        send(tag::EXEC, errno());
        libc::_exit(127)
    }
}

/// Reads one 8-byte report; `None` at end of file (the child exec'd or died).
pub(crate) fn read_report(fd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
    let mut buf = [0i32; 2];
    let mut got = 0usize;
    while got < 8 {
        // SAFETY: reads into the remaining bytes of a live local buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<u8>().add(got).cast(),
                8 - got,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n as usize;
    }
    Ok(Some((buf[0], buf[1])))
}

/// Writes the acknowledgement byte.
pub(crate) fn send_ack(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: writes one byte from a static.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"G".as_ptr().cast(), 1) };
    if n != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, fd, 0)`.
pub(crate) fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let new = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0u32) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new as RawFd) })
}

/// The user id of the process that made the listening end of the unix socket `sock`
/// connects to (`SO_PEERCRED`, recorded when it called `listen`): the broker's.
///
/// # References
/// unix(7) (`SO_PEERCRED`)
pub(crate) fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = std::mem::MaybeUninit::<libc::ucred>::zeroed();
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a live, zeroed `ucred` of `len` bytes that the kernel fills.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getsockopt succeeded and filled the structure (zeroed before).
    Ok(unsafe { cred.assume_init() }.uid)
}

/// This process's effective user id.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

/// The proof a self-registering process gives the broker that a listener is its own
/// (`netjail_protocol::PROOF_SYSCALL`): `connect(-1, nonce, 0)`, which its own filter hands to
/// the listener. The kernel reads nothing at `nonce`: the broker answers on the raw
/// arguments, 0 when it accepts the proof. Not trapped (no filter), the kernel says `EBADF`.
pub(crate) fn proof_connect(nonce: u64) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall with integer arguments; the address is never dereferenced
        // (the filter traps the call, and without one fd -1 fails first).
        let r = unsafe { libc::syscall(libc::SYS_connect, -1, nonce as usize, 0usize) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// `exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// `waitid(P_PIDFD, pidfd, WEXITED | flags)`: `None` when `WNOHANG` found nothing yet.
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `info` is a writable siginfo_t; P_PIDFD takes the fd as id.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled `info` for a child event (or left it zeroed with WNOHANG).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match code {
        libc::CLD_EXITED => ExitStatus::Code(status),
        _ => ExitStatus::Signal(status),
    }))
}

/// Ends this process the way the child ended: the same code, or the same signal.
pub fn exit_like(status: ExitStatus) -> ! {
    match status {
        ExitStatus::Code(c) => std::process::exit(c),
        ExitStatus::Signal(sig) => {
            // SAFETY: restoring the default action and raising a signal at ourselves.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(sig);
            }
            std::process::exit(128 + sig)
        }
    }
}

/// Registers an owned fd with tokio's reactor.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the fd, so it stays open for as long as it is registered and is
    // closed only after deregistration, when the AsyncFd drops.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// Report tag of the pre-exec confine step ([`PreExecConfine`]): the value is the child's pid,
/// sent just before [`tag::LISTENER`]. (The other tags are those of [`tag`].)
pub(crate) const TAG_PID: i32 = 16;

/// The confine step of a child spawned by `std::process::Command` ([`crate::sandbox`]), run
/// by std between fork and exec as a `pre_exec` hook: drop capabilities, `no_new_privs`,
/// Landlock, the seccomp filter with a new listener, then report the child's pid and the
/// listener's fd *number* on the report pipe, wait for the acknowledgement, close the
/// listener, and let std exec. Everything it touches is prepared here, before the spawn.
///
/// The same steps as `child_confine_and_exec` (which `netjail run` uses after a raw fork),
/// minus what std does itself (signal mask, `SIGPIPE`, exec, stdio).
pub(crate) struct PreExecConfine {
    filter: Vec<libc::sock_filter>,
    dropped_capabilities: u64,
    landlock: Option<OwnedFd>,
    root: Option<RootPlan>,
    /// Write end of the report pipe (close-on-exec).
    report: OwnedFd,
    /// Read end of the acknowledgement pipe (close-on-exec).
    ack: OwnedFd,
}

/// The parent's ends of the pipes of a [`PreExecConfine`].
pub(crate) struct PreExecPipes {
    /// Reads the child's reports ([`read_report`]): [`TAG_PID`] then [`tag::LISTENER`], or the
    /// tag of the step that failed.
    pub report: OwnedFd,
    /// Takes the acknowledgement ([`send_ack`]) the child waits for before it closes its
    /// listener and execs; end of file instead makes the child fail.
    pub ack: OwnedFd,
}

impl PreExecConfine {
    /// Prepares the step: the BPF program, the capability mask (from
    /// [`dropped_capability_mask`]), the Landlock ruleset if any, the plan of a root sandbox
    /// if root is allowed, and two close-on-exec pipes.
    pub(crate) fn new(
        filter: Vec<libc::sock_filter>,
        dropped_capabilities: u64,
        landlock: Option<OwnedFd>,
        root: Option<RootPlan>,
    ) -> io::Result<(PreExecConfine, PreExecPipes)> {
        if filter.is_empty() || filter.len() > usize::from(u16::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the seccomp filter is empty or too long",
            ));
        }
        let (report_r, report_w) = pipe()?;
        let (ack_r, ack_w) = pipe()?;
        Ok((
            PreExecConfine {
                filter,
                dropped_capabilities,
                landlock,
                root,
                report: report_w,
                ack: ack_r,
            },
            PreExecPipes {
                report: report_r,
                ack: ack_w,
            },
        ))
    }

    /// Installs the step as `cmd`'s `pre_exec` hook. The plan (and with it the child's ends of
    /// the pipes) lives in `cmd` until `cmd` drops: drop `cmd` right after spawning it, so
    /// that the parent's reader sees end of file when the child dies.
    pub(crate) fn install(self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: `run` makes raw system calls on memory prepared
        // here, allocates nothing and takes no lock (io::Error::from_raw_os_error does not
        // allocate).
        unsafe {
            cmd.pre_exec(move || self.run().map_err(io::Error::from_raw_os_error));
        }
    }

    /// The child's side; the errno of the failed step (reported on the pipe first).
    fn run(&self) -> Result<(), i32> {
        let report = self.report.as_raw_fd();
        let send = |t: i32, v: i32| {
            let msg: [i32; 2] = [t, v];
            // SAFETY: writes 8 bytes from a live local array; a pipe write this small is atomic.
            unsafe { libc::write(report, msg.as_ptr().cast(), 8) };
        };
        let errno = || {
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() }
        };
        let prog = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr() as *mut libc::sock_filter,
        };
        // The spawning process is not dumpable ([`set_not_dumpable`]), and a child inherits
        // that until it execs: the parent could not take the listener with pidfd_getfd
        // without CAP_SYS_PTRACE. The child holds nothing of its own to hide.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        let landlock = self.landlock.as_ref().map(|r| r.as_fd());
        // SAFETY: the same steps as the launcher's forked child, in a child std just forked:
        // raw system calls on memory prepared before the fork, no allocation, no lock; `prog`
        // and the filter live for the whole call.
        let listener = match unsafe {
            confine_current_thread(
                self.dropped_capabilities,
                self.root.as_ref(),
                landlock,
                &prog,
            )
        } {
            Ok(fd) => fd,
            Err((step, e)) => {
                send(step, e);
                return Err(e);
            }
        };
        // Our own sendmsg is trapped from here on: the parent takes the listener with
        // pidfd_getfd, we only tell it the number (and our pid, which it cannot know yet:
        // std's spawn returns only after the exec).
        // SAFETY: getpid has no preconditions.
        send(TAG_PID, unsafe { libc::getpid() });
        send(tag::LISTENER, listener);
        let mut byte = 0u8;
        let n = loop {
            // SAFETY: reads one byte into a live local.
            let n = unsafe { libc::read(self.ack.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) };
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        // SAFETY: closes the listener fd this step made; nothing else owns it.
        unsafe { libc::close(listener) };
        if n != 1 || byte != b'G' {
            return Err(libc::ECANCELED);
        }
        Ok(())
    }
}

// ---- Self-confinement (`crate::confine_self`, issue 6) ----

/// A confine step that failed in [`confine_this_thread`]: which one ([`tag`]) and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepError {
    /// The step, as a [`tag`] value.
    pub step: i32,
    /// The errno it failed with.
    pub errno: i32,
}

/// Confines the calling thread with the launcher's own confine steps (root refused unless
/// `root` gives the plan of a root sandbox, the capabilities of `dropped` go, then
/// `no_new_privs`, the Landlock `ruleset` if any, and the seccomp
/// `filter`) and returns the new seccomp listener. Only the calling thread is confined: call
/// it while the process has one thread (`crate::confine_self` checks). The steps cannot be
/// undone; those done before a failing one stay done.
///
/// # References
/// prctl(2), capset(2), landlock_restrict_self(2), seccomp(2) (`SECCOMP_FILTER_FLAG_NEW_LISTENER`)
pub(crate) fn confine_this_thread(
    filter: &[libc::sock_filter],
    dropped: u64,
    root: Option<&RootPlan>,
    ruleset: Option<BorrowedFd<'_>>,
) -> Result<OwnedFd, StepError> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: raw system calls on this thread; `prog` and the filter it points at live on
    // this stack frame and the caller's for the whole call.
    match unsafe { confine_current_thread(dropped, root, ruleset, &prog) } {
        // SAFETY: seccomp returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err((step, errno)) => Err(StepError { step, errno }),
    }
}
