//! The measured loops of `nj-bench cost`, run in child processes (`nj-bench --child cost MODE
//! key=value...`), natively or under `netjail run`.
//!
//! Each mode connects once (the one call the broker decides when confined) and then only
//! sends and receives on the connected socket, which the filter keeps in the kernel. Each
//! prints one JSON line on stdout with `"mode"`, the CPU it ran on, and its figures.
//!
//! Run once (`--child cost MODE key=value... cpu=N [filter=allow-all]`) or as a worker
//! (`--child cost serve cpu=N [filter=allow-all]`, then `MODE key=value...` lines on stdin,
//! one JSON line answered each): a worker lets the bench alternate short measurements of a
//! native and a confined process that both stay up, so slow drifts of a noisy machine hit
//! both alike. `cpu=N` pins the process (`-1`: no pinning); `filter=allow-all` first installs
//! a one-instruction `RET ALLOW` filter (what having seccomp on at all costs, without netjail),
//! `filter=sendto-only` the least filter that keeps `send()` in the kernel (see
//! [`sys::OwnFilter`]).
//!
//! Modes:
//!
//! - `tcp-send port= bytes= chunk= warmup=`: `send()` `bytes` to the peer in `chunk`-sized
//!   calls, `shutdown(SHUT_WR)`, wait for the peer's 8-byte count; the clock starts after the
//!   first `warmup` bytes and stops at the count.
//! - `tcp-recv port= bytes= chunk= warmup=`: ask the peer for `bytes`, `recv()` them in
//!   `chunk`-sized calls to end of file; the clock starts after the first `warmup` bytes.
//! - `udp-rtt port= count= warmup= size=`: `send()` a `size`-byte datagram to the echo peer and
//!   `recv()` its echo, `warmup + count` times; each round trip is timed.
//! - `udp-stream port= count= warmup= size=`: `send()` `count` datagrams as fast as possible.
//! - `syscalls port= batches= batch=`: in alternation, batches of raw `getppid`, of 1-byte
//!   `write` + `read` on a pipe, and of 64-byte `send()` on a UDP socket connected to `port`
//!   (a peer that never reads, so the datagrams are dropped at its full queue); ns per call.
//! - `sendmsg port= count=`: `sendmsg()` with no destination on a connected UDP socket, each
//!   timed: the known cost (the filter cannot see `msg_name`, so every one goes to the broker).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;

use crate::sys;

/// The header a TCP child sends to the peer: `mode` (`S` the child sends, `R` it receives),
/// three zero bytes, the chunk size (u32 LE) and the byte count (u64 LE).
pub const TCP_HEADER_LEN: usize = 16;

/// Builds a [`TCP_HEADER_LEN`]-byte request.
pub fn tcp_header(mode: u8, chunk: u32, bytes: u64) -> [u8; TCP_HEADER_LEN] {
    let mut h = [0u8; TCP_HEADER_LEN];
    h[0] = mode;
    h[4..8].copy_from_slice(&chunk.to_le_bytes());
    h[8..16].copy_from_slice(&bytes.to_le_bytes());
    h
}

/// `key=value` arguments.
struct Args(BTreeMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut map = BTreeMap::new();
        for a in args {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| format!("--child cost: expected key=value, got `{a}`"))?;
            map.insert(k.to_owned(), v.to_owned());
        }
        Ok(Args(map))
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self
            .0
            .get(key)
            .ok_or_else(|| format!("--child cost: missing {key}="))?;
        v.parse()
            .map_err(|e| format!("--child cost: bad {key}={v}: {e}"))
    }
}

/// `--child cost MODE key=value...` (one measurement, then exit) or `--child cost serve
/// cpu=N [filter=allow-all]` (one measurement per line of stdin, `MODE key=value...`, one JSON
/// line each on stdout, until end of file; first a `{"mode":"ready","pid":N}` line).
pub fn main(args: &[String]) -> Result<(), String> {
    let mode = args.first().map(String::as_str).unwrap_or("");
    let a = Args::parse(args.get(1..).unwrap_or_default())?;
    let cpu: i64 = a.num("cpu")?;
    if cpu >= 0 {
        sys::pin_to_cpu(cpu as usize)
            .map_err(|e| format!("sched_setaffinity({cpu}): errno {e}"))?;
    }
    match a.0.get("filter").map(String::as_str) {
        None | Some("none") => {}
        Some("allow-all") => sys::install_own_filter(sys::OwnFilter::AllowAll)
            .map_err(|e| format!("allow-all filter: errno {e}"))?,
        Some("sendto-only") => sys::install_own_filter(sys::OwnFilter::SendtoOnly)
            .map_err(|e| format!("sendto-only filter: errno {e}"))?,
        Some(other) => return Err(format!("--child cost: unknown filter={other}")),
    }
    if mode != "serve" {
        return print_line(&measure(mode, &a)?.into());
    }
    print_line(&serde_json::json!({ "mode": "ready", "pid": std::process::id() }))?;
    for line in std::io::stdin().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let Some((mode, rest)) = words.split_first() else {
            continue;
        };
        let out = Args::parse(rest).and_then(|a| measure(mode, &a));
        let out: serde_json::Value = match out {
            Ok(f) => f.into(),
            Err(e) => serde_json::json!({ "mode": mode, "error": e }),
        };
        print_line(&out)?;
    }
    Ok(())
}

/// One measurement: its JSON fields, with `mode` and the CPU it ended on.
fn measure(mode: &str, a: &Args) -> Result<Fields, String> {
    let mut out = match mode {
        "tcp-send" => tcp_send(
            a.num("port")?,
            a.num("bytes")?,
            a.num("chunk")?,
            a.num("warmup")?,
        )?,
        "tcp-recv" => tcp_recv(
            a.num("port")?,
            a.num("bytes")?,
            a.num("chunk")?,
            a.num("warmup")?,
        )?,
        "udp-rtt" => udp_rtt(
            a.num("port")?,
            a.num("count")?,
            a.num("warmup")?,
            a.num("size")?,
        )?,
        "udp-stream" => udp_stream(
            a.num("port")?,
            a.num("count")?,
            a.num("warmup")?,
            a.num("size")?,
        )?,
        "syscalls" => syscalls(a.num("port")?, a.num("batches")?, a.num("batch")?)?,
        "sendmsg" => sendmsg(a.num("port")?, a.num("count")?)?,
        other => return Err(format!("--child cost: unknown mode `{other}`")),
    };
    out.insert("mode".into(), mode.into());
    out.insert("cpu".into(), sys::current_cpu().into());
    Ok(out)
}

type Fields = serde_json::Map<String, serde_json::Value>;

fn print_line(v: &serde_json::Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// A socket connected to `127.0.0.1:port`: the broker's decision when confined.
fn connected(port: u16, tcp: bool) -> Result<OwnedFd, String> {
    let fd = if tcp {
        sys::tcp4_socket()
    } else {
        sys::udp4_socket()
    }
    .map_err(|e| format!("socket: errno {e}"))?;
    sys::connect4(&fd, &sys::loopback4(port))
        .map_err(|e| format!("connect 127.0.0.1:{port}: errno {e}"))?;
    Ok(fd)
}

fn send_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<usize, String> {
    let mut calls = 0;
    while !buf.is_empty() {
        match sys::send(fd, buf, libc::MSG_NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(libc::EINTR) => {}
            Err(e) => return Err(format!("send: errno {e}")),
        }
        calls += 1;
    }
    Ok(calls)
}

fn throughput(bytes: u64, ns: u64) -> f64 {
    if ns == 0 {
        return 0.0;
    }
    bytes as f64 / (1024.0 * 1024.0) / (ns as f64 / 1e9)
}

fn tcp_send(port: u16, bytes: u64, chunk: usize, warmup: u64) -> Result<Fields, String> {
    if chunk == 0 || warmup >= bytes {
        return Err("tcp-send: need chunk > 0 and warmup < bytes".into());
    }
    let fd = connected(port, true)?;
    send_all(&fd, &tcp_header(b'S', chunk as u32, bytes))?;
    let buf = vec![0x5au8; chunk];
    let (mut sent, mut calls, mut t0, mut timed_from) = (0u64, 0u64, 0u64, 0u64);
    while sent < bytes {
        if t0 == 0 && sent >= warmup {
            t0 = sys::now_ns();
            timed_from = sent;
        }
        let len = (bytes - sent).min(chunk as u64) as usize;
        match sys::send(&fd, &buf[..len], libc::MSG_NOSIGNAL) {
            Ok(n) => sent += n as u64,
            Err(libc::EINTR) => {}
            Err(e) => return Err(format!("send after {sent} bytes: errno {e}")),
        }
        calls += 1;
    }
    sys::shutdown_write(&fd).map_err(|e| format!("shutdown: errno {e}"))?;
    let mut ack = [0u8; 8];
    let mut got = 0;
    while got < ack.len() {
        match sys::recv(&fd, &mut ack[got..], 0) {
            Ok(0) => return Err("the peer closed before its count".into()),
            Ok(n) => got += n,
            Err(libc::EINTR) => {}
            Err(e) => return Err(format!("recv of the count: errno {e}")),
        }
    }
    let t1 = sys::now_ns();
    let acked = u64::from_le_bytes(ack);
    if acked != bytes {
        return Err(format!("the peer counted {acked} bytes, sent {bytes}"));
    }
    let timed = bytes - timed_from;
    let mut f = Fields::new();
    f.insert("bytes".into(), bytes.into());
    f.insert("timed_bytes".into(), timed.into());
    f.insert("ns".into(), (t1 - t0).into());
    f.insert("calls".into(), calls.into());
    f.insert("mib_s".into(), throughput(timed, t1 - t0).into());
    Ok(f)
}

fn tcp_recv(port: u16, bytes: u64, chunk: usize, warmup: u64) -> Result<Fields, String> {
    if chunk == 0 || warmup >= bytes {
        return Err("tcp-recv: need chunk > 0 and warmup < bytes".into());
    }
    let fd = connected(port, true)?;
    send_all(&fd, &tcp_header(b'R', chunk as u32, bytes))?;
    let mut buf = vec![0u8; chunk];
    let (mut got, mut calls, mut t0, mut timed_from) = (0u64, 0u64, 0u64, 0u64);
    loop {
        if t0 == 0 && got >= warmup {
            t0 = sys::now_ns();
            timed_from = got;
        }
        match sys::recv(&fd, &mut buf, 0) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(libc::EINTR) => {}
            Err(e) => return Err(format!("recv after {got} bytes: errno {e}")),
        }
        calls += 1;
    }
    let t1 = sys::now_ns();
    if got != bytes {
        return Err(format!("received {got} bytes, expected {bytes}"));
    }
    let timed = bytes - timed_from;
    let mut f = Fields::new();
    f.insert("bytes".into(), bytes.into());
    f.insert("timed_bytes".into(), timed.into());
    f.insert("ns".into(), (t1 - t0).into());
    f.insert("calls".into(), calls.into());
    f.insert("mib_s".into(), throughput(timed, t1 - t0).into());
    Ok(f)
}

fn udp_rtt(port: u16, count: usize, warmup: usize, size: usize) -> Result<Fields, String> {
    let fd = connected(port, false)?;
    let msg = vec![0x42u8; size.max(1)];
    let mut back = vec![0u8; msg.len() + 1];
    let mut lat = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let t0 = sys::now_ns();
        let n = sys::send(&fd, &msg, 0).map_err(|e| format!("send #{i}: errno {e}"))?;
        let m = sys::recv(&fd, &mut back, 0).map_err(|e| format!("recv #{i}: errno {e}"))?;
        let t1 = sys::now_ns();
        if n != msg.len() || m != msg.len() {
            return Err(format!("round trip #{i}: sent {n}, received {m} bytes"));
        }
        if i >= warmup {
            lat.push(t1 - t0);
        }
    }
    let mut f = Fields::new();
    summary_into(&mut f, &mut lat);
    f.insert("count".into(), count.into());
    Ok(f)
}

/// `median_ns`, `p99_ns`, `min_ns`, `mean_ns` of `samples` (sorted in place).
fn summary_into(f: &mut Fields, samples: &mut [u64]) {
    samples.sort_unstable();
    let q = |p: f64| -> u64 {
        if samples.is_empty() {
            return 0;
        }
        let rank = (p * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1]
    };
    let mean = if samples.is_empty() {
        0.0
    } else {
        samples.iter().map(|&v| v as f64).sum::<f64>() / samples.len() as f64
    };
    f.insert("median_ns".into(), q(0.5).into());
    f.insert("p99_ns".into(), q(0.99).into());
    f.insert("min_ns".into(), q(0.0).into());
    f.insert("mean_ns".into(), mean.into());
}

fn udp_stream(port: u16, count: usize, warmup: usize, size: usize) -> Result<Fields, String> {
    let fd = connected(port, false)?;
    let msg = vec![0x42u8; size.max(1)];
    let mut refused = 0u64;
    let mut t0 = 0;
    for i in 0..warmup + count {
        if i == warmup {
            t0 = sys::now_ns();
        }
        match sys::send(&fd, &msg, 0) {
            Ok(_) => {}
            // A drop seen earlier by the peer's ICMP: counted, never expected on loopback.
            Err(libc::ECONNREFUSED) => refused += 1,
            Err(e) => return Err(format!("send #{i}: errno {e}")),
        }
    }
    let ns = sys::now_ns() - t0;
    let mut f = Fields::new();
    f.insert("count".into(), count.into());
    f.insert("ns".into(), ns.into());
    f.insert("refused".into(), refused.into());
    f.insert(
        "msgs_s".into(),
        (count as f64 / (ns.max(1) as f64 / 1e9)).into(),
    );
    Ok(f)
}

fn syscalls(port: u16, batches: usize, batch: usize) -> Result<Fields, String> {
    if batches == 0 || batch == 0 {
        return Err("syscalls: need batches > 0 and batch > 0".into());
    }
    let sock = connected(port, false)?;
    let (rx, tx) = sys::pipe().map_err(|e| format!("pipe: errno {e}"))?;
    let msg = [0x42u8; 64];
    let mut byte = [0u8; 1];
    // A tenth of the batches (at least one) warm caches and branch predictors, untimed.
    let warm = (batches / 10).max(1);
    let (mut getppid, mut pipe, mut send) = (Vec::new(), Vec::new(), Vec::new());
    let per_call = |t0: u64, calls: usize| (sys::now_ns() - t0) as f64 / calls as f64;
    for b in 0..warm + batches {
        let t0 = sys::now_ns();
        for _ in 0..batch {
            std::hint::black_box(sys::raw_getppid());
        }
        let g = per_call(t0, batch);
        let t0 = sys::now_ns();
        for _ in 0..batch {
            sys::write(&tx, &msg[..1]).map_err(|e| format!("pipe write: errno {e}"))?;
            sys::read(&rx, &mut byte).map_err(|e| format!("pipe read: errno {e}"))?;
        }
        let p = per_call(t0, 2 * batch);
        let t0 = sys::now_ns();
        for _ in 0..batch {
            match sys::send(&sock, &msg, 0) {
                Ok(_) | Err(libc::ECONNREFUSED) => {}
                Err(e) => return Err(format!("send: errno {e}")),
            }
        }
        let s = per_call(t0, batch);
        if b >= warm {
            getppid.push(g);
            pipe.push(p);
            send.push(s);
        }
    }
    let mut f = Fields::new();
    for (key, v) in [("getppid", getppid), ("pipe", pipe), ("send", send)] {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        f.insert(format!("{key}_ns"), v[v.len() / 2].into());
        f.insert(format!("{key}_min_ns"), v[0].into());
    }
    f.insert("batches".into(), batches.into());
    f.insert("batch".into(), batch.into());
    Ok(f)
}

fn sendmsg(port: u16, count: usize) -> Result<Fields, String> {
    let sock = connected(port, false)?;
    let msg = [0x42u8; 64];
    let mut lat = Vec::with_capacity(count);
    let mut errors: BTreeMap<i32, u64> = BTreeMap::new();
    let mut ok = 0u64;
    for _ in 0..count {
        let t0 = sys::now_ns();
        let r = sys::sendmsg_connected(&sock, &msg);
        lat.push(sys::now_ns() - t0);
        match r {
            Ok(_) => ok += 1,
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    let mut f = Fields::new();
    summary_into(&mut f, &mut lat);
    f.insert("count".into(), count.into());
    f.insert("ok".into(), ok.into());
    let errors: Fields = errors
        .into_iter()
        .map(|(e, n)| (e.to_string(), n.into()))
        .collect();
    f.insert("errors".into(), errors.into());
    Ok(f)
}
