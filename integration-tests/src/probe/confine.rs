//! `idle`, `ptrace`, `vm-read`, `socket`, `touch`, `chroot-unix`: probes of the confinement
//! around the network calls (D4, D5, L2/J1, M4, invariant 3).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{result_json, result_name};
use crate::sys::{self, errno_name};

/// The secret an idling probe holds in a static buffer, for `vm-read` and `ptrace` to steal.
pub const SECRET: &[u8; 32] = b"netjail-secret-7f3a9c2e51d08b64!";

static SECRET_BUF: [u8; 32] = *SECRET;

/// Parses a number written in decimal or as `0x` hex.
fn number(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("bad number {s:?}"))
}

fn pid_arg(s: &str) -> Result<i32, String> {
    s.parse().map_err(|_| format!("bad pid {s:?}"))
}

/// `idle [SECONDS]`: prints its pid and where [`SECRET`] lies in its memory, then sleeps
/// (30 s unless told) and exits.
pub(crate) fn idle(seconds: Option<&str>) -> Result<Value, String> {
    let secs = seconds.map(number).transpose()?.unwrap_or(30);
    let buf = std::hint::black_box(&SECRET_BUF);
    println!(
        "{}",
        json!({
            "pid": std::process::id(),
            "addr": format!("{:#x}", buf.as_ptr() as usize),
            "len": buf.len(),
        })
    );
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(json!({"idle": "done", "secret_intact": std::hint::black_box(&SECRET_BUF) == SECRET}))
}

/// `ptrace PID [ADDR]`: `PTRACE_SEIZE`; when that works, stop the tracee, read one word at
/// ADDR with `PTRACE_PEEKDATA`, and detach.
pub(crate) fn ptrace(pid: &str, addr: Option<&str>) -> Result<Value, String> {
    let pid = pid_arg(pid)?;
    let addr = addr.map(number).transpose()?;
    let seized = sys::ptrace_seize(pid);
    let mut out = result_json(seized);
    if seized.is_err() {
        return Ok(out);
    }
    let stopped = sys::ptrace_interrupt(pid).and_then(|()| sys::wait_stopped(pid, 5000));
    out["stopped"] = json!(stopped == Ok(true));
    if stopped == Ok(true) {
        if let Some(addr) = addr {
            match sys::ptrace_peek(pid, addr as usize) {
                Ok(word) => out["peek"] = json!(String::from_utf8_lossy(&word)),
                Err(e) => out["peek_err"] = json!(errno_name(e)),
            }
        }
        out["detach"] = json!(result_name(sys::ptrace_detach(pid)));
    }
    // Not stopped: our exit detaches.
    Ok(out)
}

/// `vm-read PID ADDR LEN`: `process_vm_readv` of another process's memory.
pub(crate) fn vm_read(pid: &str, addr: &str, len: &str) -> Result<Value, String> {
    let pid = pid_arg(pid)?;
    let addr = number(addr)? as usize;
    let len = number(len)? as usize;
    if len > 4096 {
        return Err(format!("length {len} too large (at most 4096)"));
    }
    Ok(match sys::vm_read(pid, addr, len) {
        Ok(data) => json!({"ok": true, "data": String::from_utf8_lossy(&data)}),
        Err(e) => result_json(Err(e)),
    })
}

/// `socket SPEC...`, each SPEC `FAMILY:TYPE[:PROTO]` in numbers (decimal or `0x` hex, all
/// 64 bits passed to the kernel): one raw `socket()` per SPEC, in order. Prints
/// `{"results": {SPEC: "ok"|"ENAME"}}`, plus `ok`/`err` of the first one at top level.
pub(crate) fn socket(specs: &[&str]) -> Result<Value, String> {
    if specs.is_empty() {
        return Err("socket needs at least one FAMILY:TYPE[:PROTO]".into());
    }
    let mut results = serde_json::Map::new();
    let mut first = None;
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let (family, ty, proto) = match parts.as_slice() {
            [f, t] => (number(f)?, number(t)?, 0),
            [f, t, p] => (number(f)?, number(t)?, number(p)?),
            _ => return Err(format!("bad socket spec {spec:?} (FAMILY:TYPE[:PROTO])")),
        };
        let r = sys::socket_raw(family, ty, proto).map(drop);
        first.get_or_insert(r);
        results.insert((*spec).to_owned(), json!(result_name(r)));
    }
    let mut out = result_json(first.unwrap_or(Ok(())));
    out["results"] = Value::Object(results);
    Ok(out)
}

/// `touch PATH`: creates a file (a marker that the command ran).
pub(crate) fn touch(path: &str) -> Value {
    match std::fs::write(path, b"ran\n") {
        Ok(()) => json!({"ok": true}),
        Err(e) => result_json(Err(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

/// `chroot-unix DIR PATH [--chdir SUB]`: `chroot(DIR)`, `chdir("/")` (then `chdir(SUB)`),
/// and one `AF_UNIX` stream connect to PATH as seen from there.
pub(crate) fn chroot_unix(dir: &str, path: &str, flags: &[&str]) -> Result<Value, String> {
    let sub = match flags {
        [] => None,
        ["--chdir", sub] => Some(*sub),
        _ => return Err(format!("unknown flags {flags:?}")),
    };
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    if let Err(e) = std::os::unix::fs::chroot(dir) {
        let mut v = result_json(Err(errno(e)));
        v["stage"] = json!("chroot");
        return Ok(v);
    }
    for d in ["/"].into_iter().chain(sub) {
        if let Err(e) = std::env::set_current_dir(d) {
            let mut v = result_json(Err(errno(e)));
            v["stage"] = json!("chdir");
            return Ok(v);
        }
    }
    Ok(super::net::unix(path.as_bytes(), false))
}
