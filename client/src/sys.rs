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

/// Report tags written by the child on the report pipe (8 bytes each: tag, value).
pub mod tag {
    /// The value is the fd number of the new seccomp listener.
    pub const LISTENER: i32 = 1;
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed with the errno in the value.
    pub const NO_NEW_PRIVS: i32 = 2;
    /// `seccomp()` failed with the errno in the value.
    pub const SECCOMP: i32 = 3;
    /// `execve` failed with the errno in the value.
    pub const EXEC: i32 = 4;
    /// Dropping capabilities failed with the errno in the value.
    pub const CAPABILITIES: i32 = 5;
    /// `landlock_restrict_self` failed with the errno in the value.
    pub const LANDLOCK: i32 = 6;
    /// The program would run as root (one of its uids is 0) and root was not allowed; the
    /// value is 0.
    pub const ROOT: i32 = 7;
    /// Setting up the private mount namespace of a root sandbox failed with the errno in the
    /// value.
    pub const MOUNTS: i32 = 8;
}

/// Capabilities the sandbox loses (invariant 6): every one that acts on the network or on
/// other processes past the broker. `CAP_NET_ADMIN` configures interfaces, routes and
/// firewalls; `CAP_NET_RAW` forges packets; `CAP_NET_BIND_SERVICE` and `CAP_NET_BROADCAST`
/// reach privileged ports and broadcast; `CAP_SYS_PTRACE` reaches into other processes;
/// `CAP_SYS_ADMIN` does most of the rest. `CAP_PERFMON` passes the kernel's ptrace read check
/// on any process (measured on Linux 6.18: with it, root in a Landlock domain still opens
/// `/proc/PID/environ` and `/proc/PID/auxv` of an outside process, and `perf_event_open` can
/// sample another process's registers and stack), and `CAP_BPF` is its companion for tracing
/// programs that read any memory (rule D5). `CAP_SYS_MODULE` (loading kernel code) and
/// `CAP_SYS_RAWIO` (raw I/O ports and `/dev/mem`) would each undo every other confinement.
/// A policy may keep the first six (`keep_capabilities`, from
/// `netjail_policy::NETWORK_CAPABILITIES`), never the others.
///
/// The rest matter to a sandbox that runs as root (invariant 10), which keeps what ordinary
/// programs need (`CAP_CHOWN`, `CAP_DAC_OVERRIDE`, `CAP_FOWNER`, `CAP_FSETID`, `CAP_KILL`,
/// `CAP_SETUID`, `CAP_SETGID`, `CAP_SETPCAP`, `CAP_SYS_CHROOT`, `CAP_SYS_NICE`,
/// `CAP_SYS_RESOURCE`, `CAP_IPC_LOCK`, `CAP_LEASE`, `CAP_AUDIT_WRITE`) and loses: device
/// nodes (`CAP_MKNOD`), reboot and kexec (`CAP_SYS_BOOT`), other processes' state and pids
/// (`CAP_CHECKPOINT_RESTORE`), files by handle past every mount (`CAP_DAC_READ_SEARCH`:
/// `open_by_handle_at`), the clock, the kernel log and its accounting (`CAP_SYS_TIME`,
/// `CAP_SYSLOG`, `CAP_SYS_PACCT`), the LSMs and the audit rules (`CAP_MAC_OVERRIDE`,
/// `CAP_MAC_ADMIN`, `CAP_AUDIT_CONTROL`, `CAP_AUDIT_READ`), immutable files
/// (`CAP_LINUX_IMMUTABLE`), file capabilities (`CAP_SETFCAP`), other users' System V IPC
/// (`CAP_IPC_OWNER`), terminals' configuration (`CAP_SYS_TTY_CONFIG`), wake-up alarms and
/// suspend (`CAP_WAKE_ALARM`, `CAP_BLOCK_SUSPEND`).
pub const DROPPED_CAPABILITIES: &[(u32, &str)] = &[
    (10, "CAP_NET_BIND_SERVICE"),
    (11, "CAP_NET_BROADCAST"),
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (2, "CAP_DAC_READ_SEARCH"),
    (9, "CAP_LINUX_IMMUTABLE"),
    (15, "CAP_IPC_OWNER"),
    (20, "CAP_SYS_PACCT"),
    (22, "CAP_SYS_BOOT"),
    (25, "CAP_SYS_TIME"),
    (26, "CAP_SYS_TTY_CONFIG"),
    (27, "CAP_MKNOD"),
    (30, "CAP_AUDIT_CONTROL"),
    (31, "CAP_SETFCAP"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The bit mask (bit N = capability N) of [`DROPPED_CAPABILITIES`] except those in `keep`:
/// what the child drops when the policy keeps `keep` (`keep_capabilities`). Computed before
/// the fork, so that the child needs no allocation.
pub fn dropped_capability_mask(keep: &[u32]) -> u64 {
    DROPPED_CAPABILITIES
        .iter()
        .filter(|(cap, _)| !keep.contains(cap))
        .fold(0, |mask, &(cap, _)| mask | (1u64 << cap))
}

/// Drops the capabilities of `dropped` (a mask from [`dropped_capability_mask`]) from this
/// thread's bounding, ambient, effective, permitted and inheritable sets with raw system calls
/// (async-signal-safe: the child calls it between fork and exec). Without `CAP_SETPCAP` the
/// bounding set cannot change, and then it does not matter: `no_new_privs` keeps exec from
/// granting anything. The ambient set is cleared except for the capabilities the policy keeps
/// (those stay raised if they were). Returns the errno of a failure.
///
/// # Safety
/// Raw system calls only; safe to call in a freshly forked child.
unsafe fn drop_capabilities(dropped: u64) -> Result<(), i32> {
    let errno = || {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() }
    };
    let caps = || (0..64u32).filter(move |cap| dropped & (1u64 << cap) != 0);
    // SAFETY: prctl with integer arguments only; capget/capset with pointers to locals of the
    // layout the kernel expects for version 3.
    unsafe {
        for cap in caps() {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && errno() != libc::EPERM
            {
                return Err(errno());
            }
        }
        // Ambient capabilities need no_new_privs to be harmless; clear them anyway, except
        // the ones the policy keeps, which are raised again if they were raised.
        let mut kept_ambient = 0u64;
        for &(cap, _) in DROPPED_CAPABILITIES {
            let is_set = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            );
            if dropped & (1u64 << cap) == 0 && is_set == 1 {
                kept_ambient |= 1u64 << cap;
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(errno());
        }
        for cap in caps() {
            let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
            data[word].effective &= !bit;
            data[word].permitted &= !bit;
            data[word].inheritable &= !bit;
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(errno());
        }
        for cap in (0..64u32).filter(|cap| kept_ambient & (1u64 << cap) != 0) {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            );
        }
    }
    Ok(())
}

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask `landlock_create_ruleset` for the ABI version.
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
/// `LANDLOCK_RULE_PATH_BENEATH`.
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

/// `struct landlock_ruleset_attr` (ABI 6 layout; older kernels take a prefix of it).
#[repr(C)]
struct LandlockRulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the uapi header).
#[repr(C, packed)]
struct LandlockPathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version of the running kernel: `landlock_create_ruleset(NULL, 0,
/// LANDLOCK_CREATE_RULESET_VERSION)`. `ENOSYS`: not built in; `EOPNOTSUPP`: disabled at boot.
///
/// # References
/// landlock_create_ruleset(2)
pub fn landlock_abi() -> io::Result<u32> {
    // SAFETY: a NULL attribute with size 0 and the VERSION flag only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<LandlockRulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v as u32)
}

/// `landlock_create_ruleset` with the given handled filesystem accesses and scopes. A kernel
/// before ABI 6 has no `scoped` field: pass `scoped = 0` there, and only the prefix it knows
/// is handed over.
///
/// # References
/// landlock_create_ruleset(2)
pub fn landlock_ruleset(handled_access_fs: u64, scoped: u64) -> io::Result<OwnedFd> {
    let attr = LandlockRulesetAttr {
        handled_access_fs,
        handled_access_net: 0,
        scoped,
    };
    let size = if scoped == 0 {
        std::mem::size_of::<u64>() // handled_access_fs only: known since ABI 1
    } else {
        std::mem::size_of::<LandlockRulesetAttr>()
    };
    // SAFETY: `attr` is a live local of the uapi layout, `size` at most its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const LandlockRulesetAttr,
            size,
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Adds a rule to `ruleset` allowing `access` beneath the directory `dir`.
///
/// # References
/// landlock_add_rule(2)
pub fn landlock_allow_beneath(
    ruleset: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    access: u64,
) -> io::Result<()> {
    let attr = LandlockPathBeneathAttr {
        allowed_access: access,
        parent_fd: dir.as_raw_fd(),
    };
    // SAFETY: `attr` is a live local of the uapi layout; the fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const LandlockPathBeneathAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Everything the child needs, prepared before the fork.
pub struct ExecPlan {
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
    pub fn new(
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
    pub fn allow_root(mut self, plan: RootPlan) -> ExecPlan {
        self.root = Some(plan);
        self
    }

    /// The child keeps these capabilities (numbers from [`DROPPED_CAPABILITIES`]) and drops
    /// the others of that list.
    pub fn keep_capabilities(mut self, keep: &[u32]) -> ExecPlan {
        self.dropped_capabilities = dropped_capability_mask(keep);
        self
    }

    /// The child restricts itself with this Landlock ruleset (`landlock_restrict_self`) after
    /// `no_new_privs` and before the seccomp filter.
    pub fn landlock(mut self, ruleset: OwnedFd) -> ExecPlan {
        self.landlock = Some(ruleset);
        self
    }
}

/// The parent's ends of a started child.
pub struct Spawned {
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
pub fn spawn(plan: &ExecPlan) -> io::Result<Spawned> {
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
pub fn read_report(fd: BorrowedFd<'_>) -> io::Result<Option<(i32, i32)>> {
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
pub fn send_ack(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: writes one byte from a static.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"G".as_ptr().cast(), 1) };
    if n != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, fd, 0)`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
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
pub fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
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
pub fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() }
}

/// The proof a self-registering process gives the broker that a listener is its own
/// (`netjail_protocol::PROOF_SYSCALL`): `connect(-1, nonce, 0)`, which its own filter hands to
/// the listener. The kernel reads nothing at `nonce`: the broker answers on the raw
/// arguments, 0 when it accepts the proof. Not trapped (no filter), the kernel says `EBADF`.
pub fn proof_connect(nonce: u64) -> io::Result<()> {
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
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
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
pub fn wait_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Option<ExitStatus>> {
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
pub fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the fd, so it stays open for as long as it is registered and is
    // closed only after deregistration, when the AsyncFd drops.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// Report tag of the pre-exec confine step ([`PreExecConfine`]): the value is the child's pid,
/// sent just before [`tag::LISTENER`]. (The other tags are those of [`tag`].)
pub const TAG_PID: i32 = 16;

/// The confine step of a child spawned by `std::process::Command` ([`crate::sandbox`]), run
/// by std between fork and exec as a `pre_exec` hook: drop capabilities, `no_new_privs`,
/// Landlock, the seccomp filter with a new listener, then report the child's pid and the
/// listener's fd *number* on the report pipe, wait for the acknowledgement, close the
/// listener, and let std exec. Everything it touches is prepared here, before the spawn.
///
/// The same steps as `child_confine_and_exec` (which `netjail run` uses after a raw fork),
/// minus what std does itself (signal mask, `SIGPIPE`, exec, stdio).
pub struct PreExecConfine {
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
pub struct PreExecPipes {
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
    pub fn new(
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
    pub fn install(self, cmd: &mut std::process::Command) {
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

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self.step {
            tag::CAPABILITIES => "dropping capabilities",
            tag::NO_NEW_PRIVS => "prctl(PR_SET_NO_NEW_PRIVS)",
            tag::LANDLOCK => "landlock_restrict_self",
            tag::ROOT => return f.write_str(crate::root::REFUSAL),
            tag::MOUNTS => "setting up the mount namespace of a root sandbox",
            tag::SECCOMP => {
                "seccomp(NEW_LISTENER | WAIT_KILLABLE_RECV) (needs Linux 5.19 or later)"
            }
            _ => "confining",
        };
        write!(f, "{step}: {}", io::Error::from_raw_os_error(self.errno))?;
        if self.step == tag::SECCOMP && matches!(self.errno, libc::EPERM | libc::EBUSY) {
            // netjail's own filter refuses a second listener (EPERM), the kernel refuses one
            // under a filter that has one (EBUSY).
            write!(f, " (a seccomp filter with a listener is already in place: was this process confined before?)")?;
        }
        Ok(())
    }
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
pub fn confine_this_thread(
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

// ---- Root sandboxes (invariant 10) ----

/// Whether the calling thread has uid 0 as its real, effective, saved or filesystem uid.
/// Raw system calls only: safe in a freshly forked child.
pub fn runs_as_root() -> bool {
    let (mut r, mut e, mut saved) = (0, 0, 0);
    // SAFETY: getresuid writes three uids to live locals; setfsuid with an invalid uid changes
    // nothing and returns the current filesystem uid.
    let (ids, fs) = unsafe {
        let ids = libc::getresuid(&mut r, &mut e, &mut saved);
        let fs = libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32;
        (ids, fs)
    };
    // Fail closed: ids that cannot be read count as root.
    ids != 0 || r == 0 || e == 0 || saved == 0 || fs == 0
}

/// `prctl(PR_SET_DUMPABLE, 0)`: no core dump of this process, and `/proc/PID/mem`, `environ`,
/// `fd` and ptrace of it need `CAP_SYS_PTRACE`, even for processes of the same user (a
/// sandbox without Landlock among them). Exec of another program makes a process dumpable
/// again, so children that exec are not affected.
///
/// # References
/// prctl(2) (`PR_SET_DUMPABLE`), proc(5) (`/proc/pid/mem`)
pub fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

/// `OPEN_TREE_CLONE` (`linux/mount.h`).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `AT_RECURSIVE`.
const AT_RECURSIVE: libc::c_uint = 0x8000;
/// `MOVE_MOUNT_F_EMPTY_PATH`.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NOSUID`.
const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `MOUNT_ATTR_NODEV`.
const MOUNT_ATTR_NODEV: u64 = 0x4;
/// `MOUNT_ATTR_NOEXEC`.
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The most entries of the original `/dev` a root sandbox's `/dev` takes: the fds of their
/// clones live on the stack between fork and exec.
pub const MAX_DEV_ENTRIES: usize = 32;

/// `struct mount_attr` (`MOUNT_ATTR_SIZE_VER0`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One entry of the original `/dev` that a root sandbox's `/dev` takes.
#[derive(Debug)]
pub struct DevEntry {
    /// Its path (`/dev/null`, `/dev/pts`, `/dev/net/tun`).
    pub path: CString,
    /// What it is.
    pub kind: DevKind,
}

/// What a [`DevEntry`] is, and how the new `/dev` gets it.
#[derive(Debug)]
pub enum DevKind {
    /// A character device or a socket: a bind mount of the original node.
    Node,
    /// A file system mounted there (`pts`, `shm`, `mqueue`): a recursive bind mount;
    /// `devices` says whether device nodes in it may be opened (`devpts` only).
    Mount {
        /// Device nodes stay usable (no `nodev`).
        devices: bool,
    },
    /// A directory to create (`net`).
    Dir,
    /// A symbolic link to make again, with this target.
    Symlink(CString),
}

/// What a sandbox that runs as root does before it drops its capabilities: a private mount
/// namespace (propagation slave) where the kernel's tunables, the files the broker trusts and
/// the device nodes are out of its reach. Built before the fork ([`crate::root`] finds the
/// paths); applied with raw system calls only.
#[derive(Debug)]
pub struct RootPlan {
    /// Made mount points of their own (bind mounts on themselves), so that they cannot be
    /// renamed away from under the read-only files they hold; shallowest first.
    pinned: Vec<CString>,
    /// Bind-mounted read-only, recursively.
    read_only: Vec<CString>,
    /// The new `/dev`, in order (a directory before what it holds).
    dev: Vec<DevEntry>,
    /// The working directory, looked up again once the mounts are in place.
    cwd: CString,
    /// Whether to mount a procfs of the sandbox's own on `/proc`, with `hidepid=ptraceable`.
    fresh_proc: FreshProc,
}

/// Whether a root sandbox gets a procfs of its own ([`RootPlan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshProc {
    /// No `/proc` to replace.
    No,
    /// Mounted, or the sandbox does not start.
    Yes,
    /// Mounted where the kernel permits: in a user namespace that does not own its pid
    /// namespace, which the kernel requires of a procfs's mounter, the host's `/proc` stays.
    IfPermitted,
}

impl RootPlan {
    /// A plan from its parts (see the fields); `dev` has at most [`MAX_DEV_ENTRIES`] entries.
    pub fn new(
        pinned: Vec<CString>,
        read_only: Vec<CString>,
        dev: Vec<DevEntry>,
        (cwd, fresh_proc): (CString, FreshProc),
    ) -> io::Result<RootPlan> {
        if dev.len() > MAX_DEV_ENTRIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many /dev entries for a root sandbox",
            ));
        }
        Ok(RootPlan {
            pinned,
            read_only,
            dev,
            cwd,
            fresh_proc,
        })
    }

    /// Applies the plan to the calling thread: `unshare(CLONE_NEWNS)`, every mount made a
    /// slave (nothing propagates back to the host), a procfs of its own on `/proc` that shows
    /// only the processes the sandbox may ptrace (`hidepid=ptraceable`: with Landlock's domain,
    /// its own), the pinned directories, the read-only binds (those under `/proc` on the new
    /// procfs), `nodev` on every mount, a fresh `/dev` (a small tmpfs, `nosuid`, `noexec`)
    /// with only the plan's entries, and the working directory again. Returns the errno of the
    /// first step that fails.
    ///
    /// # Safety
    /// Raw system calls on memory of the plan only, no allocation, no lock: safe in a freshly
    /// forked child.
    unsafe fn apply(&self) -> Result<(), i32> {
        let errno = || {
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() }
        };
        let null = std::ptr::null::<libc::c_char>();
        let setattr = |path: *const libc::c_char, flags: libc::c_uint, set: u64, clr: u64| {
            let attr = MountAttr {
                attr_set: set,
                attr_clr: clr,
                propagation: 0,
                userns_fd: 0,
            };
            // SAFETY: a live path and a live attribute struct of the size given.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    path,
                    flags,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            };
            if r != 0 {
                Err(errno())
            } else {
                Ok(())
            }
        };
        let bind = |path: &CString, flags: libc::c_ulong| {
            // SAFETY: live C strings; a bind mount of a path onto itself.
            let r = unsafe {
                libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    null,
                    libc::MS_BIND | flags,
                    null.cast(),
                )
            };
            if r != 0 {
                Err(errno())
            } else {
                Ok(())
            }
        };
        let mut clones = [-1 as RawFd; MAX_DEV_ENTRIES];
        let close_all = |clones: &[RawFd; MAX_DEV_ENTRIES]| {
            for &fd in clones.iter().filter(|&&fd| fd >= 0) {
                // SAFETY: closes an fd this function opened.
                unsafe { libc::close(fd) };
            }
        };
        // SAFETY: raw system calls on live C strings of the plan and on locals.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(errno());
            }
            let root = c"/".as_ptr();
            if libc::mount(null, root, null, libc::MS_REC | libc::MS_SLAVE, null.cast()) != 0 {
                return Err(errno());
            }
            // Detached copies of what the new /dev takes, before anything changes: their
            // flags are the host's (device nodes usable).
            for (i, entry) in self.dev.iter().enumerate() {
                let recursive = match entry.kind {
                    DevKind::Node => 0,
                    DevKind::Mount { .. } => AT_RECURSIVE,
                    DevKind::Dir | DevKind::Symlink(_) => continue,
                };
                let fd = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    entry.path.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | recursive,
                );
                if fd < 0 {
                    let e = errno();
                    close_all(&clones);
                    return Err(e);
                }
                clones[i] = fd as RawFd;
            }
            let steps = (|| {
                if self.fresh_proc != FreshProc::No {
                    // A new procfs instance (Linux 5.8): its options are its own, the host's
                    // /proc keeps showing everything; older kernels refuse "ptraceable".
                    // Not "invisible", which lets the group of its `gid=` option (0 unless
                    // set, the group of a root sandbox) see every process.
                    let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
                    let proc = c"/proc".as_ptr();
                    let data = c"hidepid=ptraceable".as_ptr();
                    let fs = c"proc".as_ptr();
                    if libc::mount(fs, proc, fs, flags, data.cast()) != 0 {
                        let e = errno();
                        if !(e == libc::EPERM && self.fresh_proc == FreshProc::IfPermitted) {
                            return Err(e);
                        }
                    }
                }
                for path in &self.pinned {
                    bind(path, libc::MS_REC)?;
                }
                for path in &self.read_only {
                    bind(path, libc::MS_REC)?;
                    setattr(path.as_ptr(), AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)?;
                }
                // No device node anywhere, except those the new /dev brings back.
                setattr(root, AT_RECURSIVE, MOUNT_ATTR_NODEV, 0)?;
                let dev = c"/dev".as_ptr();
                let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
                let data = c"mode=0755,size=1m,nr_inodes=256".as_ptr();
                if libc::mount(
                    c"tmpfs".as_ptr(),
                    dev,
                    c"tmpfs".as_ptr(),
                    flags,
                    data.cast(),
                ) != 0
                {
                    return Err(errno());
                }
                for (i, entry) in self.dev.iter().enumerate() {
                    let path = entry.path.as_ptr();
                    match &entry.kind {
                        DevKind::Dir => {
                            if libc::mkdir(path, 0o755) != 0 {
                                return Err(errno());
                            }
                            continue;
                        }
                        DevKind::Symlink(target) => {
                            if libc::symlink(target.as_ptr(), path) != 0 {
                                return Err(errno());
                            }
                            continue;
                        }
                        DevKind::Node => {
                            let fd = libc::open(
                                path,
                                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                                0o600,
                            );
                            if fd < 0 {
                                return Err(errno());
                            }
                            libc::close(fd);
                        }
                        DevKind::Mount { .. } => {
                            if libc::mkdir(path, 0o755) != 0 {
                                return Err(errno());
                            }
                        }
                    }
                    let moved = libc::syscall(
                        libc::SYS_move_mount,
                        clones[i],
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        path,
                        MOVE_MOUNT_F_EMPTY_PATH,
                    );
                    if moved != 0 {
                        return Err(errno());
                    }
                    if let DevKind::Mount { devices: false } = entry.kind {
                        setattr(path, AT_RECURSIVE, MOUNT_ATTR_NODEV, 0)?;
                    }
                }
                // Nothing new in /dev either: no file, no link, no directory.
                setattr(
                    dev,
                    0,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
                    0,
                )?;
                // A working directory inside a pinned directory still refers to the mount
                // underneath, where relative paths would miss the read-only binds.
                if libc::chdir(self.cwd.as_ptr()) != 0 && libc::chdir(root) != 0 {
                    return Err(errno());
                }
                Ok(())
            })();
            close_all(&clones);
            steps
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every capability a policy may keep is one the launcher drops otherwise.
    #[test]
    fn keepable_capabilities_are_dropped_ones() {
        for &(name, cap) in netjail_policy::NETWORK_CAPABILITIES {
            assert!(
                DROPPED_CAPABILITIES.contains(&(cap, name)),
                "{name} ({cap}) can be kept but is never dropped"
            );
        }
    }

    #[test]
    fn kept_capabilities_leave_the_mask() {
        let all = dropped_capability_mask(&[]);
        for &(cap, _) in DROPPED_CAPABILITIES {
            assert_ne!(all & (1 << cap), 0);
        }
        let mask = dropped_capability_mask(&[13, 10]);
        for (cap, name) in [
            (27, "CAP_MKNOD"),
            (22, "CAP_SYS_BOOT"),
            (40, "CAP_CHECKPOINT_RESTORE"),
        ] {
            assert!(DROPPED_CAPABILITIES.contains(&(cap, name)), "{name}");
            assert_ne!(mask & (1 << cap), 0, "{name} kept");
        }
        // What ordinary programs need stays: CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID.
        for cap in [0, 1, 3, 5, 6, 7] {
            assert_eq!(all & (1 << cap), 0, "capability {cap} dropped");
        }
        assert_eq!(mask, all & !(1 << 13) & !(1 << 10));
        assert_eq!(
            dropped_capability_mask(&[5]),
            all,
            "not ours to keep or drop"
        );
    }
}
