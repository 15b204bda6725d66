//! The measured children of `nj-bench bridge`: the holder of a network namespace, and the child
//! that connects from it and sends.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys;

/// `--child netns`: the holder of a namespace (see the module's doc). Prints
/// `{"mode":"netns","pid":PID}` once ready, then reads its stdin to the end.
pub fn netns_child() -> Result<(), String> {
    sys::die_with_parent().map_err(|e| format!("PR_SET_PDEATHSIG: errno {e}"))?;
    sys::unshare_net().map_err(|e| format!("unshare(CLONE_NEWNET): errno {e}"))?;
    sys::set_loopback_up().map_err(|e| format!("lo up: errno {e}"))?;
    sys::drop_all_capabilities().map_err(|e| format!("capset: errno {e}"))?;
    let line = serde_json::json!({ "mode": "netns", "pid": std::process::id() });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    drop(out);
    let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
    Ok(())
}

/// `--child bridge NETNS ADDR CONNECT BULK COUNT WARMUP BYTES CHUNK`: enters the network
/// namespace NETNS (`-`: stays), then the measurements of the module's doc against
/// `ADDR:CONNECT` and `ADDR:BULK`. Prints one JSON line: `connect_ns` and `first_byte_ns`
/// (COUNT each), `bulk_bytes`, `bulk_ns`. Any failed call ends it with an error.
pub fn bridge_child(args: &[String]) -> Result<(), String> {
    let [netns, addr, connect, bulk, count, warmup, bytes, chunk] = args else {
        return Err(
            "--child bridge: expected NETNS ADDR CONNECT BULK COUNT WARMUP BYTES CHUNK".into(),
        );
    };
    fn num<T: std::str::FromStr>(what: &str, v: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        v.parse()
            .map_err(|e| format!("--child bridge: bad {what} {v:?}: {e}"))
    }
    if netns != "-" && !already_in(Path::new(netns)) {
        sys::enter_net_namespace(Path::new(netns))
            .map_err(|e| format!("setns({netns}): errno {e}"))?;
    }
    let addr: Ipv4Addr = num("ADDR", addr)?;
    let (count, warmup): (usize, usize) = (num("COUNT", count)?, num("WARMUP", warmup)?);
    let (bytes, chunk): (u64, usize) = (num("BYTES", bytes)?, num("CHUNK", chunk)?);
    let sin = sys::sockaddr4(addr, num("CONNECT", connect)?);
    let mut connect_ns = Vec::with_capacity(count);
    let mut first_byte_ns = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let call = |what: &str, e: sys::Errno| {
            format!("connect {} of {}: {what}: errno {e}", i + 1, warmup + count)
        };
        let fd = sys::tcp4_socket().map_err(|e| call("socket", e))?;
        let t0 = sys::now_ns();
        sys::connect4(&fd, &sin).map_err(|e| call("connect", e))?;
        let t1 = sys::now_ns();
        let mut byte = [0u8; 1];
        match sys::read(&fd, &mut byte) {
            Ok(1) => {}
            Ok(_) => return Err(call("the server's byte", libc::EPIPE)),
            Err(e) => return Err(call("the server's byte", e)),
        }
        let t2 = sys::now_ns();
        let _ = sys::set_linger_zero(&fd);
        drop(fd);
        if i >= warmup {
            connect_ns.push(t1 - t0);
            first_byte_ns.push(t2 - t0);
        }
    }
    let bulk_addr = (addr, num::<u16>("BULK", bulk)?);
    let mut s = TcpStream::connect(bulk_addr).map_err(|e| format!("bulk connect: {e}"))?;
    let block = vec![0x5au8; chunk.max(1)];
    let t0 = sys::now_ns();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        s.write_all(&block[..k])
            .map_err(|e| format!("bulk send: {e}"))?;
        left -= k as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("bulk shutdown: {e}"))?;
    let mut count_le = [0u8; 8];
    s.read_exact(&mut count_le)
        .map_err(|e| format!("bulk: the server's count: {e}"))?;
    let bulk_ns = sys::now_ns() - t0;
    let got = u64::from_le_bytes(count_le);
    if got != bytes {
        return Err(format!("bulk: the server read {got} bytes of {bytes}"));
    }
    let line = serde_json::json!({
        "mode": "bridge",
        "connect_ns": connect_ns,
        "first_byte_ns": first_byte_ns,
        "bulk_bytes": bytes,
        "bulk_ns": bulk_ns,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// Whether this process is in the network namespace `path` already (started there by a
/// launcher): then it does not call `setns`.
fn already_in(path: &Path) -> bool {
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    id(path).is_some() && id(path) == id(Path::new("/proc/self/ns/net"))
}
