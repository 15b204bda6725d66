//! `unix-names`: the names unix sockets read back, the way ordinary programs use them: a
//! server that tells its clients the name `getsockname` gives, a client that connects to it,
//! and the names each side sees of the other (invariant 11).

use std::os::fd::OwnedFd;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::sys::{self, errno_name, SockAddr};

/// The name of a unix address as a string: the path, `""` for an unnamed socket, `@NAME` for
/// an abstract one.
fn name(addr: &SocketAddr) -> Value {
    if let Some(path) = addr.as_pathname() {
        return json!(path.to_string_lossy());
    }
    if addr.is_unnamed() {
        return json!("");
    }
    json!(format!("@{addr:?}"))
}

fn errno_of(e: &std::io::Error) -> String {
    errno_name(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `unix-names DIR SERVER CLIENT DGRAM_A DGRAM_B [--chroot ROOT] [--hold FILE]`: (after
/// `chroot(ROOT)`) changes to DIR; binds a stream server to SERVER; binds a stream client to
/// CLIENT and connects it to the name the server reads back; accepts; binds datagram sockets
/// to DGRAM_A and DGRAM_B and sends from B to the name A reads back. Reports every name read
/// back (`server`, `client`, `client_peer`, `accepted_peer`, `accepted_name`, `dgram_a`,
/// `dgram_b`, `dgram_from`) and each failed step's errno under `errors`. With `--hold`, prints
/// that line at once and keeps the sockets open until FILE exists (at most 30 s), then prints
/// it again.
pub(crate) fn run(
    dir: &str,
    server: &str,
    client: &str,
    a: &str,
    b: &str,
    flags: &[&str],
) -> Result<Value, String> {
    let (mut root, mut hold) = (None, None);
    let mut rest = flags;
    while let [flag, value, more @ ..] = rest {
        match *flag {
            "--chroot" => root = Some(*value),
            "--hold" => hold = Some(*value),
            _ => return Err(format!("unknown flag {flag:?}")),
        }
        rest = more;
    }
    if !rest.is_empty() {
        return Err(format!("malformed flags {flags:?}"));
    }
    let mut names = Map::new();
    let mut errors = Map::new();
    let mut fail = |step: &str, e: String| {
        errors.insert(step.to_owned(), json!(e));
    };
    if let Some(root) = root {
        if let Err(e) =
            std::os::unix::fs::chroot(root).and_then(|()| std::env::set_current_dir("/"))
        {
            fail("chroot", errno_of(&e));
        }
    }
    if let Err(e) = std::env::set_current_dir(dir) {
        fail("chdir", errno_of(&e));
    }
    // Every socket stays open until the end (`--hold`).
    let mut keep: Vec<OwnedFd> = Vec::new();
    match UnixListener::bind(server) {
        Err(e) => fail("bind_server", errno_of(&e)),
        Ok(listener) => {
            let read_back = listener.local_addr();
            if let Ok(addr) = &read_back {
                names.insert("server".into(), name(addr));
            }
            // Accepted only once the client is connected: never waits for nobody.
            let connected = connect_from(client, read_back)
                .and_then(|s| Ok((s, listener.accept().map_err(|e| ("accept", errno_of(&e)))?)));
            match connected {
                Err((step, e)) => fail(step, e),
                Ok((stream, (accepted, peer))) => {
                    for (key, addr) in [
                        ("client", stream.local_addr()),
                        ("client_peer", stream.peer_addr()),
                        ("accepted_name", accepted.local_addr()),
                    ] {
                        match addr {
                            Ok(addr) => names.insert(key.into(), name(&addr)),
                            Err(e) => {
                                fail(key, errno_of(&e));
                                None
                            }
                        };
                    }
                    names.insert("accepted_peer".into(), name(&peer));
                    keep.extend([stream.into(), accepted.into()]);
                }
            }
            keep.push(listener.into());
        }
    }
    match (UnixDatagram::bind(a), UnixDatagram::bind(b)) {
        (Err(e), _) => fail("bind_dgram_a", errno_of(&e)),
        (_, Err(e)) => fail("bind_dgram_b", errno_of(&e)),
        (Ok(da), Ok(db)) => {
            let (a_name, b_name) = (da.local_addr(), db.local_addr());
            if let (Ok(x), Ok(y)) = (&a_name, &b_name) {
                names.insert("dgram_a".into(), name(x));
                names.insert("dgram_b".into(), name(y));
            }
            let sent = a_name.and_then(|to| db.send_to_addr(b"names", &to));
            let _ = da.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 16];
            match sent.and_then(|_| da.recv_from(&mut buf)) {
                Ok((_, from)) => {
                    names.insert("dgram_from".into(), name(&from));
                }
                Err(e) => fail("dgram", errno_of(&e)),
            }
            keep.extend([da.into(), db.into()]);
        }
    }
    let out = json!({"ok": errors.is_empty(), "names": names, "errors": errors});
    if let Some(file) = hold {
        println!("{out}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(file).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(keep);
    Ok(out)
}

/// A stream socket bound to `path` and connected to `to` (the name a server read back).
fn connect_from(
    path: &str,
    to: std::io::Result<SocketAddr>,
) -> Result<UnixStream, (&'static str, String)> {
    let to = to.map_err(|e| ("server_name", errno_of(&e)))?;
    let to = to
        .as_pathname()
        .ok_or(("server_name", "not a path".to_owned()))?;
    let fd =
        sys::socket(libc::AF_UNIX, libc::SOCK_STREAM).map_err(|e| ("socket", errno_name(e)))?;
    use std::os::unix::ffi::OsStrExt;
    sys::bind(&fd, &SockAddr::unix_path(path.as_bytes()))
        .map_err(|e| ("bind_client", errno_name(e)))?;
    sys::connect(&fd, &SockAddr::unix_path(to.as_os_str().as_bytes()))
        .map_err(|e| ("connect", errno_name(e)))?;
    Ok(UnixStream::from(fd))
}
