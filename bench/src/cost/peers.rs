//! The loopback peers of the workers: a TCP sink and source, a UDP echo, a UDP sink and a
//! UDP socket nobody reads, threads of the bench pinned to their own CPU.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{cost_child, sys};

/// Pins the calling thread, if asked; a failure is reported once, not fatal.
pub fn pin_thread(cpu: Option<usize>, who: &str) {
    if let Some(cpu) = cpu {
        if let Err(e) = sys::pin_to_cpu(cpu) {
            eprintln!("nj-bench cost: cannot pin {who} to CPU {cpu}: errno {e}");
        }
    }
}

pub fn spawn_peer<F: FnOnce() + Send + 'static>(name: &str, f: F) -> Result<(), String> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(|e| format!("{name} thread: {e}"))
}

/// The loopback peers; their threads run until this process exits.
pub struct Peers {
    pub tcp: u16,
    pub echo: u16,
    pub sink: u16,
    /// Datagrams the sink received.
    pub sink_count: Arc<AtomicU64>,
    pub blackhole: u16,
    _blackhole: UdpSocket,
}

impl Peers {
    pub fn start(cpu: Option<usize>) -> Result<Peers, String> {
        let bind_err = |e: std::io::Error| format!("bind 127.0.0.1:0: {e}");
        let port_err = |e: std::io::Error| format!("local address: {e}");

        let listener = TcpListener::bind("127.0.0.1:0").map_err(bind_err)?;
        let tcp = listener.local_addr().map_err(port_err)?.port();
        spawn_peer("tcp-peer", move || {
            pin_thread(cpu, "the TCP peer");
            for stream in listener.incoming().flatten() {
                let _ = serve_tcp(stream);
            }
        })?;

        let echo_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let echo = echo_socket.local_addr().map_err(port_err)?.port();
        spawn_peer("udp-echo", move || {
            pin_thread(cpu, "the UDP echo peer");
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo_socket.recv_from(&mut buf) {
                let _ = echo_socket.send_to(&buf[..n], from);
            }
        })?;

        let sink_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let sink = sink_socket.local_addr().map_err(port_err)?.port();
        let _ = sys::set_rcvbuf(&sink_socket, 4 << 20);
        let sink_count = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sink_count);
        spawn_peer("udp-sink", move || {
            pin_thread(cpu, "the UDP sink");
            let mut buf = [0u8; 2048];
            while sink_socket.recv(&mut buf).is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })?;

        // Never read: its queue fills and every later datagram is dropped on arrival, so
        // the sender's cost does not depend on a receiving thread.
        let blackhole_socket = UdpSocket::bind("127.0.0.1:0").map_err(bind_err)?;
        let blackhole = blackhole_socket.local_addr().map_err(port_err)?.port();
        let _ = sys::set_rcvbuf(&blackhole_socket, 4096);
        Ok(Peers {
            tcp,
            echo,
            sink,
            sink_count,
            blackhole,
            _blackhole: blackhole_socket,
        })
    }
}

/// One TCP request of a child (see [`cost_child::tcp_header`]).
pub fn serve_tcp(mut s: TcpStream) -> std::io::Result<()> {
    let mut h = [0u8; cost_child::TCP_HEADER_LEN];
    s.read_exact(&mut h)?;
    let chunk = (u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize).clamp(1, 16 << 20);
    let bytes = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    match h[0] {
        b'S' => {
            let mut buf = vec![0u8; chunk];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            s.write_all(&total.to_le_bytes())
        }
        b'R' => {
            let buf = vec![0xa5u8; chunk];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(chunk as u64) as usize;
                s.write_all(&buf[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
