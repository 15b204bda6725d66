//! `second-listener`, `pidfd-getfd` and `scan-fds`: attacks on the confinement itself.
#![allow(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{port_arg, result_json};
use crate::sys::{self, errno, errno_name, Errno, SockAddr};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_long = 1 << 3;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// An x86_64 syscall number that is not implemented (`getpmsg`), for a harmless filter.
const NR_UNUSED: u32 = 181;

#[repr(C)]
#[derive(Clone, Copy)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Sets no_new_privs and installs a filter that sends syscall `nr` (native arch only) to a new
/// user-notification listener; returns the listener.
fn install_listener(nr: u32) -> Result<OwnedFd, Errno> {
    let prog = [
        insn(BPF_LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        insn(BPF_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
        insn(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        insn(BPF_JEQ_K, 0, 1, nr),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ];
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(errno());
    }
    // SAFETY: fprog points to `prog`, which outlives the call; the kernel copies the program.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const fprog,
        )
    };
    if ret < 0 {
        return Err(errno());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// Answers every notification on `listener` with CONTINUE, forever.
fn continue_everything(listener: OwnedFd, handled: Arc<AtomicU64>) {
    loop {
        // SAFETY: seccomp_notif is plain old data; the kernel requires it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: req is a valid, writable seccomp_notif for NOTIF_RECV.
        let r = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV,
                &raw mut req,
            )
        };
        if r != 0 {
            match errno() {
                libc::EINTR | libc::ENOENT => continue,
                _ => return,
            }
        }
        let mut resp = libc::seccomp_notif_resp {
            id: req.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        handled.fetch_add(1, Ordering::Relaxed);
        // SAFETY: resp is a valid seccomp_notif_resp for NOTIF_SEND.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &raw mut resp,
            )
        };
    }
}

/// `second-listener PORT`: intercept our own `connect` and CONTINUE it past the broker.
pub(crate) fn second_listener(port: u16) -> Value {
    let handled = Arc::new(AtomicU64::new(0));
    let mut out = match install_listener(libc::SYS_connect as u32) {
        Ok(listener) => {
            let h = Arc::clone(&handled);
            std::thread::spawn(move || continue_everything(listener, h));
            json!({"listener_ok": true})
        }
        Err(e) => json!({"listener_ok": false, "listener_errno": e, "listener_err": errno_name(e)}),
    };
    let r = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
        .and_then(|fd| sys::connect(&fd, &SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port)));
    out["connect_ok"] = json!(r.is_ok());
    if let Err(e) = r {
        out["errno"] = json!(e);
        out["err"] = json!(errno_name(e));
    }
    out["notifications"] = json!(handled.load(Ordering::Relaxed));
    out
}

/// `pidfd-getfd PID FD PORT`: take a socket out of another process and connect it.
pub(crate) fn pidfd_getfd(pid: &str, fd: &str, port: &str) -> Result<Value, String> {
    let pid: i32 = pid.parse().map_err(|_| format!("bad pid {pid:?}"))?;
    let target_fd: i32 = fd.parse().map_err(|_| format!("bad fd {fd:?}"))?;
    let port = port_arg(port)?;
    // SAFETY: pidfd_open takes integers only.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), 0) };
    if ret < 0 {
        let e = errno();
        return Ok(
            json!({"pidfd_ok": false, "pidfd_errno": e, "pidfd_err": errno_name(e),
                         "getfd_ok": false, "connect_ok": false}),
        );
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(ret as RawFd) };
    // SAFETY: pidfd_getfd takes integers only.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(target_fd),
            0,
        )
    };
    if ret < 0 {
        let e = errno();
        return Ok(
            json!({"pidfd_ok": true, "getfd_ok": false, "getfd_errno": e,
                         "getfd_err": errno_name(e), "connect_ok": false}),
        );
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    let stolen = unsafe { OwnedFd::from_raw_fd(ret as RawFd) };
    let r = sys::connect(
        &stolen,
        &SockAddr::ip(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
    );
    let mut out = json!({"pidfd_ok": true, "getfd_ok": true, "connect_ok": r.is_ok()});
    out["connect"] = result_json(r);
    Ok(out)
}

/// `scan-fds [--make-listener]`: list our fds and look for a seccomp listener among them.
/// With `--make-listener` we first install a harmless filter with a listener of our own, as a
/// positive control that the scan recognises one.
pub(crate) fn scan_fds(make_listener: bool) -> Value {
    let mut out = json!({});
    let _keep = if make_listener {
        match install_listener(NR_UNUSED) {
            Ok(fd) => Some(fd),
            Err(e) => {
                out["make_listener_err"] = json!(errno_name(e));
                None
            }
        }
    } else {
        None
    };
    let mut fds = Vec::new();
    let mut found = false;
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let link = std::fs::read_link(entry.path())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|e| format!("?{e}"));
            found |= link.contains("seccomp notify");
            fds.push(json!({"fd": name, "link": link}));
        }
    }
    out["fds"] = json!(fds);
    out["seccomp_listener_found"] = json!(found);
    out
}
