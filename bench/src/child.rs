//! The measured loops, run in child processes of the bench (`nj-bench --child ...`).
//!
//! Each prints exactly one JSON line on stdout:
//! `{"mode":..., "lat_ns":[...], "ok":N, "errors":{"ERRNO":count}}`, where `lat_ns` holds the
//! timed calls only (the warm-up calls before them are not timed), `ok` counts the timed calls
//! that succeeded and `errors` the others by raw errno value.

use std::collections::BTreeMap;
use std::io::Write;

use crate::sys;

/// A child's result, as printed.
struct Samples {
    mode: &'static str,
    lat_ns: Vec<u64>,
    ok: usize,
    errors: BTreeMap<i32, usize>,
}

impl Samples {
    fn new(mode: &'static str, count: usize) -> Self {
        Samples {
            mode,
            lat_ns: Vec::with_capacity(count),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, ns: u64, result: Result<(), sys::Errno>) {
        self.lat_ns.push(ns);
        match result {
            Ok(()) => self.ok += 1,
            Err(e) => *self.errors.entry(e).or_default() += 1,
        }
    }

    fn print(&self) -> std::io::Result<()> {
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(e, n)| (e.to_string(), (*n).into()))
            .collect();
        let line = serde_json::json!({
            "mode": self.mode,
            "lat_ns": self.lat_ns,
            "ok": self.ok,
            "errors": errors,
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }
}

/// `--child connect PORT COUNT WARMUP [gate]`: `WARMUP` untimed then `COUNT` timed blocking
/// `connect()` calls of fresh sockets to `127.0.0.1:PORT`. Only `connect()` is timed; the
/// socket is created before and closed after. With `gate`, it first reads its stdin to the
/// end, so that the parent can get ready (give the sandbox run-time rules) after the exec and
/// before the first call.
pub fn connect(port: u16, count: usize, warmup: usize, gate: bool) -> Result<(), String> {
    if gate {
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut Vec::new())
            .map_err(|e| format!("stdin: {e}"))?;
    }
    let sin = sys::loopback4(port);
    let mut samples = Samples::new("connect", count);
    for i in 0..warmup + count {
        let fd = sys::tcp4_socket().map_err(|e| format!("socket: errno {e}"))?;
        let t0 = sys::now_ns();
        let result = sys::connect4(&fd, &sin);
        let t1 = sys::now_ns();
        // Close with RST: no TIME_WAIT on either side, and the listener's socket for this
        // 4-tuple is gone before the next connect can pick the same ephemeral port. Best
        // effort: a policy may refuse the option, and a plain close works too.
        let _ = sys::set_linger_zero(&fd);
        drop(fd);
        if i >= warmup {
            samples.record(t1 - t0, result);
        }
    }
    samples.print().map_err(|e| format!("stdout: {e}"))
}

/// `--child floor COUNT WARMUP`: the bare seccomp user-notification round trip.
///
/// This process forks. The child installs a filter that sends `getppid` to a listener, passes
/// the listener's fd *number* up a pipe, and times `WARMUP + COUNT` raw `getppid` calls (the
/// last `COUNT` are kept). This process takes the listener with `pidfd_getfd` and answers each
/// notification with `NOTIF_RECV` / `NOTIF_SEND` (val 0, error 0, no flags) in a tight loop: the
/// least any broker pays per call. With `sync_wake_up` it first sets the listener's
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` flag. An `alarm` bounds the whole thing.
pub fn floor(
    count: usize,
    warmup: usize,
    sync_wake_up: bool,
    timeout_secs: u32,
) -> Result<(), String> {
    sys::alarm(timeout_secs);
    let (rx, tx) = sys::pipe().map_err(|e| format!("pipe: errno {e}"))?;
    let pid = sys::fork().map_err(|e| format!("fork: errno {e}"))?;
    if pid == 0 {
        drop(rx);
        let code = match floor_child(tx, count, warmup) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("nj-bench floor child: {e}");
                1
            }
        };
        sys::exit_now(code);
    }
    drop(tx);
    let answered = floor_answer(rx, pid, warmup + count, sync_wake_up);
    if answered.is_err() {
        // The child may be blocked on a call nobody answers any more.
        let _ = sys::kill(pid as u32, libc::SIGKILL);
    }
    let status = sys::waitpid(pid).map_err(|e| format!("waitpid: errno {e}"))?;
    answered?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("floor child ended with wait status {status:#x}"));
    }
    Ok(())
}

/// The forked child of [`floor`]: confine itself, hand the listener up, time the calls.
fn floor_child(tx: std::os::fd::OwnedFd, count: usize, warmup: usize) -> Result<(), String> {
    use std::os::fd::AsRawFd;

    sys::die_with_parent().map_err(|e| format!("PR_SET_PDEATHSIG: errno {e}"))?;
    sys::no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: errno {e}"))?;
    let listener =
        sys::install_getppid_notify_filter().map_err(|e| format!("seccomp: errno {e}"))?;
    let number = listener.as_raw_fd();
    sys::write_all(&tx, &number.to_le_bytes()).map_err(|e| format!("pipe write: errno {e}"))?;
    drop(tx);
    let mut samples = Samples::new("floor", count);
    for i in 0..warmup + count {
        let t0 = sys::now_ns();
        let ret = sys::raw_getppid();
        let t1 = sys::now_ns();
        if i >= warmup {
            // The answer is val 0; anything else means the call did not go to the listener.
            let result = if ret == 0 { Ok(()) } else { Err(-1) };
            samples.record(t1 - t0, result);
        }
    }
    samples.print().map_err(|e| format!("stdout: {e}"))?;
    // Keep the listener open until the end (the parent holds its own copy anyway).
    drop(listener);
    Ok(())
}

/// The answering side of [`floor`]: exactly `total` notifications, all `getppid`.
fn floor_answer(
    rx: std::os::fd::OwnedFd,
    pid: libc::pid_t,
    total: usize,
    sync_wake_up: bool,
) -> Result<(), String> {
    let mut number = [0u8; 4];
    sys::read_exact(&rx, &mut number).map_err(|e| format!("pipe read: errno {e}"))?;
    let pidfd = sys::pidfd_open(pid).map_err(|e| format!("pidfd_open: errno {e}"))?;
    let listener = sys::pidfd_getfd(&pidfd, i32::from_le_bytes(number))
        .map_err(|e| format!("pidfd_getfd: errno {e}"))?;
    if sync_wake_up {
        sys::notif_set_sync_wake_up(&listener)
            .map_err(|e| format!("NOTIF_SET_FLAGS(SYNC_WAKE_UP): errno {e}"))?;
    }
    for _ in 0..total {
        let (id, nr) = sys::notif_recv(&listener).map_err(|e| format!("NOTIF_RECV: errno {e}"))?;
        if i64::from(nr) != libc::SYS_getppid {
            return Err(format!("notified of syscall {nr}, expected getppid"));
        }
        sys::notif_send_zero(&listener, id).map_err(|e| format!("NOTIF_SEND: errno {e}"))?;
    }
    Ok(())
}

/// The entry point of a measured child: `--child connect PORT COUNT [WARMUP [gate]]`, `--child floor COUNT [WARMUP]`,
/// `--child hold PORT N [LIMIT]` (see [`crate::held::hold_child`]), `--child flood PORT T
/// [LIMIT]` (see [`crate::flood::flood_child`]), `--child bridge ...` and `--child netns` (see
/// [`crate::bridge::bridge_child`], [`crate::bridge::netns_child`]) and
/// `--child cost MODE key=value...` (see [`crate::cost_child`]); `args` follow `--child`. These
/// arguments are the bench talking to itself, not a command line for people.
pub fn main(args: &[String]) -> Result<bool, String> {
    let num = |i: usize, what: &str| -> Result<usize, String> {
        args.get(i)
            .ok_or_else(|| format!("--child: missing {what}"))?
            .parse()
            .map_err(|e| format!("--child: bad {what}: {e}"))
    };
    match args.first().map(String::as_str) {
        Some("connect") => {
            let port = u16::try_from(num(1, "PORT")?).map_err(|e| format!("bad PORT: {e}"))?;
            let count = num(2, "COUNT")?;
            let warmup = if args.len() > 3 { num(3, "WARMUP")? } else { 0 };
            let gate = args.get(4).map(String::as_str) == Some("gate");
            connect(port, count, warmup, gate)?;
        }
        Some("cost") => crate::cost_child::main(&args[1..])?,
        Some("bridge") => crate::bridge::bridge_child(&args[1..])?,
        Some("netns") => crate::bridge::netns_child()?,
        Some("hold") => {
            let port = u16::try_from(num(1, "PORT")?).map_err(|e| format!("bad PORT: {e}"))?;
            let limit = if args.len() > 3 { num(3, "LIMIT")? } else { 600 };
            crate::held::hold_child(port, num(2, "N")?, u32::try_from(limit).unwrap_or(u32::MAX))?;
        }
        Some("flood") => {
            let port = u16::try_from(num(1, "PORT")?).map_err(|e| format!("bad PORT: {e}"))?;
            let limit = if args.len() > 3 { num(3, "LIMIT")? } else { 600 };
            crate::flood::flood_child(port, num(2, "T")?, u32::try_from(limit).unwrap_or(u32::MAX))?;
        }
        Some("floor") => {
            let count = num(1, "COUNT")?;
            let warmup = if args.len() > 2 { num(2, "WARMUP")? } else { 0 };
            let sync = args.get(3).map(String::as_str) == Some("sync");
            let limit = crate::process::timeout_for(warmup + count).as_secs() as u32 + 5;
            floor(count, warmup, sync, limit)?;
        }
        _ => {
            return Err(
                "--child: expected `connect PORT COUNT [WARMUP [gate]]`, `floor COUNT [WARMUP [sync]]`, `hold PORT N [LIMIT]`, `flood PORT T [LIMIT]`, `bridge ...`, `netns` or `cost MODE ...`"
                    .into(),
            )
        }
    }
    Ok(true)
}
