//! Canaries: loopback listeners that count who reached them.
//!
//! A test that expects a call to be denied checks not only the errno but also that the canary
//! it aimed at saw nothing; a test that expects it allowed checks that the canary saw it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::TempDir;

/// How long a canary waits before it says "nobody came".
const SETTLE: Duration = Duration::from_millis(250);

enum Where {
    Ip(SocketAddr),
    /// The socket's path, and the directory that holds it when the canary made it (kept
    /// alive, removed on drop).
    Path(PathBuf, #[allow(dead_code)] Option<TempDir>),
    Abstract(String),
}

/// A listener on loopback (TCP, UDP, HTTP, or `AF_UNIX`) with a background thread that
/// counts accepted connections (or, for UDP, received datagrams). Stopped on drop.
pub struct Canary {
    at: Where,
    tcp: bool,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Canary {
    /// A TCP canary on 127.0.0.1, port chosen by the kernel.
    pub fn tcp4() -> Canary {
        Self::tcp("127.0.0.1:0", false)
    }

    /// A TCP canary on `[::1]`, port chosen by the kernel.
    pub fn tcp6() -> Canary {
        Self::tcp("[::1]:0", false)
    }

    /// A TCP canary on 127.0.0.1 that answers every request with `HTTP/1.0 200 OK`.
    pub fn http4() -> Canary {
        Self::tcp("127.0.0.1:0", true)
    }

    /// A TCP canary on `[::1]` that answers every request with `HTTP/1.0 200 OK`.
    pub fn http6() -> Canary {
        Self::tcp("[::1]:0", true)
    }

    fn tcp(bind: &str, http: bool) -> Canary {
        let l = TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = l.local_addr().expect("local_addr");
        Self::stream(
            Where::Ip(addr),
            move || l.accept().map(|(s, _)| s),
            move |mut s| {
                if http {
                    answer_http(&mut s);
                }
            },
        )
    }

    /// A stream canary: a thread accepts with `accept` until the canary drops, counts each
    /// connection and hands it to `serve`.
    fn stream<S>(
        at: Where,
        mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
        mut serve: impl FnMut(S) + Send + 'static,
    ) -> Canary {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
            std::thread::spawn(move || loop {
                let conn = accept();
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(s) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                serve(s);
            })
        };
        Canary {
            at,
            tcp: true,
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// A UDP canary on 127.0.0.1 counting datagrams.
    pub fn udp4() -> Canary {
        Self::udp("127.0.0.1:0")
    }

    /// A UDP canary on `[::1]` counting datagrams.
    pub fn udp6() -> Canary {
        Self::udp("[::1]:0")
    }

    fn udp(bind: &str) -> Canary {
        let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set_read_timeout");
        let addr = s.local_addr().expect("local_addr");
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::SeqCst) {
                    if s.recv_from(&mut buf).is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        Canary {
            at: Where::Ip(addr),
            tcp: false,
            count,
            stop,
            thread: Some(thread),
        }
    }

    /// An `AF_UNIX` stream canary at `<fresh /tmp/netjail-test-*/ dir>/<file>`.
    pub fn unix_path(file: &str) -> Canary {
        let dir = TempDir::new();
        let path = dir.path().join(file);
        let l = UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        Self::unix(l, Where::Path(path, Some(dir)))
    }

    /// An `AF_UNIX` stream canary at `path`, in a directory the caller made (and removes).
    /// The socket file is removed on drop.
    pub fn unix_at(path: &Path) -> Canary {
        let l = UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {path:?}: {e}"));
        Self::unix(l, Where::Path(path.to_path_buf(), None))
    }

    /// An `AF_UNIX` stream canary at a fresh abstract name (`\0netjail-test-<unique>`).
    pub fn unix_abstract() -> Canary {
        let name = format!("netjail-test-{}", crate::unique());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let l = UnixListener::bind_addr(&addr).expect("bind abstract");
        Self::unix(l, Where::Abstract(name))
    }

    fn unix(l: UnixListener, at: Where) -> Canary {
        Self::stream(at, move || l.accept().map(|(s, _)| s), drop)
    }

    /// The socket address of an IP canary.
    pub fn addr(&self) -> SocketAddr {
        match &self.at {
            Where::Ip(a) => *a,
            _ => panic!("not an IP canary"),
        }
    }

    /// The port of an IP canary.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// The port as a string, for command lines.
    pub fn port_str(&self) -> String {
        self.port().to_string()
    }

    /// The filesystem path of a unix canary.
    pub fn path(&self) -> &Path {
        match &self.at {
            Where::Path(p, _) => p,
            _ => panic!("not a filesystem unix canary"),
        }
    }

    /// The abstract name (without the leading NUL) of an abstract unix canary.
    pub fn abstract_name(&self) -> &str {
        match &self.at {
            Where::Abstract(n) => n,
            _ => panic!("not an abstract unix canary"),
        }
    }

    /// Connections accepted (datagrams received, for UDP) so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `min` arrived or `timeout` passed; returns the count then.
    pub fn wait_count(&self, min: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.count() < min && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.count()
    }

    /// The count after a short pause that lets anything in flight arrive: the way to check
    /// that nothing came.
    pub fn settled_count(&self) -> u64 {
        std::thread::sleep(SETTLE);
        self.count()
    }
}

fn answer_http(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 65536 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    );
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept with one last connection (not counted: stop is set).
        match &self.at {
            Where::Ip(a) if self.tcp => {
                let _ = TcpStream::connect_timeout(a, Duration::from_secs(1));
            }
            Where::Ip(_) => {}
            Where::Path(p, dir) => {
                let _ = UnixStream::connect(p);
                if dir.is_none() {
                    let _ = std::fs::remove_file(p);
                }
            }
            Where::Abstract(n) => {
                if let Ok(a) = std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes()) {
                    let _ = UnixStream::connect_addr(&a);
                }
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
