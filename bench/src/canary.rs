//! Loopback listeners that count: the destinations of the measured connects.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sys;

/// A loopback TCP listener on port 0 whose thread accepts, counts and closes every connection
/// (the client closes first, with RST, so that no `TIME_WAIT` piles up).
pub struct Canary {
    pub port: u16,
    pub accepted: Arc<AtomicU64>,
    _threads: Vec<JoinHandle<()>>,
}

impl Canary {
    pub fn start() -> Result<Canary, String> {
        Canary::start_with(1, None)
    }

    /// A canary whose listener `acceptors` threads accept on (one thread cannot keep up with
    /// many unconfined clients: its accept queue overflows, and a dropped handshake costs its
    /// client a 1 s SYN retransmission). With `nice`, each accepting thread first sets its own
    /// nice value (best effort; a negative value needs `CAP_SYS_NICE`), so that hundreds of
    /// busy clients do not starve it of CPU.
    pub fn start_with(acceptors: usize, nice: Option<i32>) -> Result<Canary, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        sys::listen(&listener, 4096).map_err(|e| format!("listen: errno {e}"))?;
        let accepted = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::with_capacity(acceptors);
        for i in 0..acceptors.max(1) {
            let listener = listener
                .try_clone()
                .map_err(|e| format!("listener copy: {e}"))?;
            let counter = Arc::clone(&accepted);
            let thread = std::thread::Builder::new()
                .name(format!("accept-{port}-{i}"))
                .spawn(move || {
                    if let Some(n) = nice {
                        let _ = sys::set_thread_nice(n);
                    }
                    for stream in listener.incoming().flatten() {
                        counter.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                })
                .map_err(|e| format!("accept thread: {e}"))?;
            threads.push(thread);
        }
        Ok(Canary {
            port,
            accepted,
            _threads: threads,
        })
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until at least `n` connections were accepted; returns the count.
    pub fn wait_for(&self, n: u64, limit: Duration) -> u64 {
        let deadline = Instant::now() + limit;
        while self.accepted() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.accepted()
    }
}
