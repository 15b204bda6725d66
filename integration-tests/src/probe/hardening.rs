//! `landlock-abi`, `proc-read`, `signal`, `signal-child`, `tty-ioctls`, `if-ioctls`,
//! `setown`: probes of the confinement hardening (D5 through Landlock, N1, J6, J7).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use serde_json::{json, Map, Value};

use super::result_json;
use crate::sys::{errno, errno_name, Errno};

/// `"ok"` or the errno name (with `ENOTTY`, which the shared table lacks).
fn name(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(libc::ENOTTY) => "ENOTTY".to_owned(),
        Err(e) => errno_name(e),
    }
}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn pid_arg(s: &str) -> Result<i32, String> {
    s.parse().map_err(|_| format!("bad pid {s:?}"))
}

fn number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("bad number {s:?}"))
}

/// `open(path, flags)` wrapped in an [`OwnedFd`].
fn open(path: &str, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `ioctl(fd, request, arg)` with all 64 bits of `request` handed to the kernel.
fn ioctl(fd: RawFd, request: u64, arg: *mut libc::c_void) -> Result<(), Errno> {
    // SAFETY: every caller passes an `arg` that points to memory of the size the request
    // reads or writes, or a plain integer for requests that take one.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) }).map(drop)
}

/// `ioctl(fd, request, &int)`.
fn ioctl_int(fd: RawFd, request: u64, value: &mut libc::c_int) -> Result<(), Errno> {
    ioctl(fd, request, (value as *mut libc::c_int).cast())
}

/// `landlock-abi`: `{"abi": N}`, the kernel's Landlock ABI version (0 without Landlock).
pub(crate) fn landlock_abi() -> Value {
    // SAFETY: a NULL attribute with size 0 and LANDLOCK_CREATE_RULESET_VERSION (1) only
    // returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    json!({"abi": v.max(0)})
}

/// `proc-read PID ADDR LEN`: reads LEN bytes at ADDR of `/proc/PID/mem`, and the first bytes
/// of `/proc/PID/environ` (both guarded by a ptrace access check). Top-level `ok`/`err` are
/// those of opening `/proc/PID/mem`.
pub(crate) fn proc_read(pid: &str, addr: &str, len: &str) -> Result<Value, String> {
    let pid = pid_arg(pid)?;
    let addr = number(addr)?;
    let len = number(len)? as usize;
    if len > 4096 {
        return Err(format!("length {len} too large (at most 4096)"));
    }
    let mem = open(&format!("/proc/{pid}/mem"), libc::O_RDONLY);
    let mut out = result_json(mem.as_ref().map(drop).map_err(|&e| e));
    if let Ok(fd) = &mem {
        let mut buf = vec![0u8; len];
        // SAFETY: `buf` has room for `len` bytes.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                len,
                addr as libc::off_t,
            )
        };
        if n < 0 {
            out["read_err"] = json!(errno_name(errno()));
        } else {
            buf.truncate(n as usize);
            out["data"] = json!(String::from_utf8_lossy(&buf));
        }
    }
    let environ = open(&format!("/proc/{pid}/environ"), libc::O_RDONLY).and_then(|fd| {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` has room for 64 bytes.
        check(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } as _)
            .map(drop)
    });
    out["environ"] = json!(name(environ));
    Ok(out)
}

/// `signal PID SIG`: `kill(PID, SIG)`.
pub(crate) fn signal(pid: &str, sig: &str) -> Result<Value, String> {
    let pid = pid_arg(pid)?;
    let sig: i32 = sig.parse().map_err(|_| format!("bad signal {sig:?}"))?;
    Ok(result_json(crate::sys::kill(pid, sig)))
}

/// `signal-child SIG`: starts a child (`nj-probe idle 30`), sends it SIG, and reports how it
/// ended: `{"ok": true, "killed_by": SIG}` when the signal got there.
pub(crate) fn signal_child(sig: &str) -> Result<Value, String> {
    let sig: i32 = sig.parse().map_err(|_| format!("bad signal {sig:?}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .args(["idle", "30"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    let sent = crate::sys::kill(child.id() as i32, sig);
    if sent.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    let mut out = result_json(sent);
    out["killed_by"] = json!(status.signal());
    Ok(out)
}

// ---- J6: terminal and file ioctls ----------------------------------------------------------

const TIOCSTI: u64 = 0x5412;
const TIOCSWINSZ: u64 = 0x5414;
const TIOCGWINSZ: u64 = 0x5413;
const TCGETS: u64 = 0x5401;
const TIOCGPTN: u64 = 0x8004_5430;
const TIOCSPTLCK: u64 = 0x4004_5431;
const FIONREAD: u64 = 0x541b;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;
const SIOCGIFINDEX: u64 = 0x8933;
/// A bit the kernel drops (requests are 32-bit): the filter must drop it too.
const HIGH: u64 = 1 << 32;

/// `struct ifreq`, as far as these probes use it: the name and one int or short.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    value: libc::c_int,
    _pad: [u8; 20],
}

impl IfReq {
    fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            value: 0,
            _pad: [0; 20],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    fn ptr(&mut self) -> *mut libc::c_void {
        (self as *mut IfReq).cast()
    }
}

/// A new pseudo-terminal made the controlling terminal of this (new) session: the slave's fd.
fn controlling_pty() -> Result<(OwnedFd, OwnedFd), (&'static str, Errno)> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(("setsid", errno()));
    }
    let master = open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY).map_err(|e| ("ptmx", e))?;
    let mut unlock: libc::c_int = 0;
    ioctl_int(master.as_raw_fd(), TIOCSPTLCK, &mut unlock).map_err(|e| ("unlockpt", e))?;
    let mut n: libc::c_int = -1;
    ioctl_int(master.as_raw_fd(), TIOCGPTN, &mut n).map_err(|e| ("ptsname", e))?;
    // Without O_NOCTTY a session leader with no terminal acquires this one.
    let slave = open(&format!("/dev/pts/{n}"), libc::O_RDWR).map_err(|e| ("open pts", e))?;
    Ok((master, slave))
}

/// The table of `tty-ioctls`, run in the child that leads a new session.
fn tty_table() -> Value {
    let mut r = Map::new();
    let mut put = |k: &str, v: Result<(), Errno>| {
        r.insert(k.to_owned(), json!(name(v)));
    };
    // A pipe with 3 bytes in it.
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return json!({"setup": "pipe", "setup_err": errno_name(errno())});
    }
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: writes 3 bytes from a static.
    unsafe { libc::write(wr.as_raw_fd(), b"abc".as_ptr().cast(), 3) };
    let mut n: libc::c_int = 0;
    let fionread = ioctl_int(rd.as_raw_fd(), FIONREAD, &mut n);
    put("FIONREAD", fionread);
    let mut n_high: libc::c_int = 0;
    put(
        "FIONREAD_high_bits",
        ioctl_int(rd.as_raw_fd(), FIONREAD | HIGH, &mut n_high),
    );
    let mut one: libc::c_int = 1;
    put("FIONBIO", ioctl_int(rd.as_raw_fd(), FIONBIO, &mut one));
    put(
        "FIOCLEX",
        ioctl(rd.as_raw_fd(), FIOCLEX, std::ptr::null_mut()),
    );
    // SAFETY: socket takes integers only.
    let sock = check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) } as _)
        // SAFETY: a new fd that nothing else owns.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    match &sock {
        Ok(s) => {
            let mut req = IfReq::new("lo");
            put(
                "SIOCGIFINDEX",
                ioctl(s.as_raw_fd(), SIOCGIFINDEX, req.ptr()),
            );
        }
        Err(e) => put("SIOCGIFINDEX", Err(*e)),
    }
    let mut out = json!({"fionread_bytes": n, "fionread_high_bytes": n_high});
    match controlling_pty() {
        Ok((_master, slave)) => {
            let fd = slave.as_raw_fd();
            // SAFETY: an all-zero termios is valid; TCGETS fills it.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            put(
                "TCGETS",
                ioctl(fd, TCGETS, (&mut t as *mut libc::termios).cast()),
            );
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            put(
                "TIOCGWINSZ",
                ioctl(fd, TIOCGWINSZ, (&mut ws as *mut libc::winsize).cast()),
            );
            let mut set = libc::winsize {
                ws_row: 24,
                ws_col: 80,
                ..ws
            };
            put(
                "TIOCSWINSZ",
                ioctl(fd, TIOCSWINSZ, (&mut set as *mut libc::winsize).cast()),
            );
            let mut c = b'x';
            let cp = (&mut c as *mut u8).cast();
            put("TIOCSTI", ioctl(fd, TIOCSTI, cp));
            put("TIOCSTI_high_bits", ioctl(fd, TIOCSTI | HIGH, cp));
        }
        Err((stage, e)) => {
            out["setup"] = json!(stage);
            out["setup_err"] = json!(errno_name(e));
        }
    }
    out["results"] = Value::Object(r);
    out
}

/// `tty-ioctls`: in a child that leads a new session with a new pseudo-terminal as its
/// controlling terminal, a table of ioctls: the safe ones (`FIONREAD`, `FIONBIO`, `FIOCLEX`
/// on a pipe, `TCGETS`, `TIOCGWINSZ` on the terminal), and the unsafe ones (`TIOCSTI`, which
/// pushes input into the terminal, `TIOCSWINSZ`, and `SIOCGIFINDEX` of `lo` on a unix
/// socket). `_high_bits` entries set bit 32 of the request, which the kernel drops.
pub(crate) fn tty_ioctls() -> Result<Value, String> {
    use std::io::{Read, Write};
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", errno_name(errno())));
    }
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    let (mut rd, mut wr) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    // SAFETY: this process is single-threaded here (the probe starts no threads before), so
    // the child may allocate; it writes its JSON to the pipe and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", errno_name(errno())));
    }
    if pid == 0 {
        drop(rd);
        // Closing the terminal this session leader controls would hang it up.
        // SAFETY: ignoring a signal installs no handler.
        unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
        let v = tty_table();
        let _ = wr.write_all(v.to_string().as_bytes());
        drop(wr);
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut text = String::new();
    let _ = rd.read_to_string(&mut text);
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    serde_json::from_str(&text).map_err(|e| format!("child said {text:?}: {e}"))
}

// ---- N1: interface configuration -----------------------------------------------------------

const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCSIFFLAGS: u64 = 0x8914;
const SIOCGIFMTU: u64 = 0x8921;
const SIOCSIFMTU: u64 = 0x8922;
const SIOCBRADDBR: u64 = 0x89a0;
const SIOCBRDELBR: u64 = 0x89a1;
const TUNSETIFF: u64 = 0x4004_54ca;
const IFF_UP: libc::c_int = 0x1;
const IFF_TUN: libc::c_int = 0x1;
const IFF_NO_PI: libc::c_int = 0x1000;

/// `if-ioctls`: on a unix socket (any socket reaches the interface ioctls), read `lo`'s flags
/// and MTU, then try to bring it up (`SIOCSIFFLAGS`, also with bit 32 of the request set),
/// set its MTU (`SIOCSIFMTU`), create a bridge (`SIOCBRADDBR`, removed again when that
/// worked), and create a tun device (`TUNSETIFF` on `/dev/net/tun`, gone when the fd closes).
/// Run it in a network namespace of its own: it changes that namespace's interfaces.
pub(crate) fn if_ioctls() -> Result<Value, String> {
    // SAFETY: socket takes integers only.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) } as _)
        .map_err(|e| format!("socket: {}", errno_name(e)))?;
    // SAFETY: a new fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let s = sock.as_raw_fd();
    let mut r = Map::new();
    let mut put = |k: &str, v: Result<(), Errno>| {
        r.insert(k.to_owned(), json!(name(v)));
    };
    let mut flags = IfReq::new("lo");
    put("SIOCGIFFLAGS", ioctl(s, SIOCGIFFLAGS, flags.ptr()));
    let mut up = IfReq::new("lo");
    up.value = (flags.value & 0xffff) | IFF_UP;
    put("SIOCSIFFLAGS", ioctl(s, SIOCSIFFLAGS, up.ptr()));
    put(
        "SIOCSIFFLAGS_high_bits",
        ioctl(s, SIOCSIFFLAGS | HIGH, up.ptr()),
    );
    let mut mtu = IfReq::new("lo");
    put("SIOCGIFMTU", ioctl(s, SIOCGIFMTU, mtu.ptr()));
    let mut new_mtu = IfReq::new("lo");
    new_mtu.value = if mtu.value > 1500 {
        mtu.value - 1
    } else {
        1500
    };
    put("SIOCSIFMTU", ioctl(s, SIOCSIFMTU, new_mtu.ptr()));
    let bridge = CString::new("njbr0").expect("no NUL");
    let added = ioctl(s, SIOCBRADDBR, bridge.as_ptr() as *mut libc::c_void);
    put("SIOCBRADDBR", added);
    if added.is_ok() {
        put(
            "SIOCBRDELBR",
            ioctl(s, SIOCBRDELBR, bridge.as_ptr() as *mut libc::c_void),
        );
    }
    let tun = open("/dev/net/tun", libc::O_RDWR).and_then(|t| {
        let mut req = IfReq::new("njtun0");
        req.value = IFF_TUN | IFF_NO_PI;
        ioctl(t.as_raw_fd(), TUNSETIFF, req.ptr())
    });
    put("TUNSETIFF", tun);
    Ok(json!({"results": r, "lo_flags": flags.value & 0xffff, "lo_mtu": mtu.value}))
}

// ---- J7: F_SETOWN --------------------------------------------------------------------------

const F_SETOWN_EX: libc::c_int = 15;
const F_SETSIG: libc::c_int = 10;
const F_OWNER_PID: libc::c_int = 1;

/// `struct f_owner_ex`.
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}
const FIOSETOWN: u64 = 0x8901;
const SIOCSPGRP: u64 = 0x8902;

/// `setown`: on a unix socket, `fcntl` `F_SETOWN` (also with bit 32 of the command set),
/// `F_SETOWN_EX`, `F_SETSIG`, the ioctls `FIOSETOWN` and `SIOCSPGRP`, all naming this
/// process; and the harmless `F_GETOWN` and `F_SETFL(O_ASYNC)`.
pub(crate) fn setown() -> Result<Value, String> {
    // SAFETY: socket takes integers only.
    let fd = check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) } as _)
        .map_err(|e| format!("socket: {}", errno_name(e)))?;
    // SAFETY: a new fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let s = sock.as_raw_fd();
    let me = std::process::id() as libc::c_long;
    let fcntl = |cmd: u64, arg: libc::c_long| {
        // SAFETY: fcntl with integer arguments only.
        check(unsafe { libc::syscall(libc::SYS_fcntl, s, cmd, arg) }).map(drop)
    };
    let mut r = Map::new();
    let mut put = |k: &str, v: Result<(), Errno>| {
        r.insert(k.to_owned(), json!(name(v)));
    };
    put("F_SETOWN", fcntl(libc::F_SETOWN as u64, me));
    put(
        "F_SETOWN_high_bits",
        fcntl(libc::F_SETOWN as u64 | HIGH, me),
    );
    let mut owner = FOwnerEx {
        kind: F_OWNER_PID,
        pid: me as libc::pid_t,
    };
    let ownerp = &mut owner as *mut FOwnerEx as libc::c_long;
    put("F_SETOWN_EX", fcntl(F_SETOWN_EX as u64, ownerp));
    put(
        "F_SETSIG",
        fcntl(F_SETSIG as u64, libc::SIGUSR1 as libc::c_long),
    );
    let mut pid = me as libc::c_int;
    put("FIOSETOWN", ioctl_int(s, FIOSETOWN, &mut pid));
    put("SIOCSPGRP", ioctl_int(s, SIOCSPGRP, &mut pid));
    put("F_GETOWN", fcntl(libc::F_GETOWN as u64, 0));
    put(
        "F_SETFL_O_ASYNC",
        fcntl(libc::F_SETFL as u64, libc::O_ASYNC as libc::c_long),
    );
    Ok(json!({"results": r}))
}
