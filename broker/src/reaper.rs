//! The end of a sandbox while the broker performs its calls (invariant 7: a sandbox that exits
//! with calls in flight leaves nothing behind).
//!
//! A connect the broker performs on its copy of a blocking TCP socket can wait a long time: a
//! full accept queue drops the SYNs, and the kernel retries for about two minutes
//! (`tcp_syn_retries`). Killing the sandbox does not end that wait, because the broker holds a
//! copy of the socket: its receiver thread (or the pool threads with its calls) would stay
//! blocked, with the sockets, pidfds and listener they hold, and the sandbox would stay
//! registered, for minutes after its last task exited.
//!
//! So every connect the broker performs is listed, while it runs, in its sandbox's
//! [`Performing`]; one thread per process (the reaper) waits in `epoll` for the hang-up of
//! every sandbox's listener (`EPOLLHUP`: every task of the sandbox has exited; no readiness
//! event is asked for, so calls cost it nothing) and then shuts down (`SHUT_RDWR`) the sockets
//! still listed. The connects return at once, nobody is left to answer, and the sandbox
//! retires as usual. A connect that starts after the hang-up is shut down as it is listed.
//! Only a sandbox with no task left is reaped: its callers cannot see the result of those
//! connects any more, and a socket passed outside the sandbox is left unconnected rather than
//! connected in the name of a process that is gone.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::sandbox::Sandbox;
use crate::sys;

/// The connects being performed for one sandbox.
#[derive(Debug, Default)]
pub(crate) struct Performing {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every task of the sandbox has exited.
    ended: bool,
    next: u64,
    /// `(entry, fd)`: each fd is open while it is listed ([`Listed`] removes it before the
    /// socket it borrows can be closed).
    fds: Vec<(u64, RawFd)>,
}

impl Performing {
    /// Lists `sock` while the returned guard lives (perform the connect meanwhile). When the
    /// sandbox has already ended, the socket is shut down at once.
    pub(crate) fn list<'a>(&'a self, sock: BorrowedFd<'a>) -> Listed<'a> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = state.next;
        state.next += 1;
        if state.ended {
            let _ = sys::shutdown_both(sock.as_raw_fd());
        }
        state.fds.push((entry, sock.as_raw_fd()));
        Listed {
            performing: self,
            entry,
            _sock: sock,
        }
    }

    /// Every task of the sandbox has exited: shuts down the sockets listed now and later.
    /// Returns how many were listed.
    pub(crate) fn end(&self) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.ended = true;
        for &(_, fd) in &state.fds {
            // ENOTCONN and the like: nothing was waiting.
            let _ = sys::shutdown_both(fd);
        }
        state.fds.len()
    }
}

/// A socket listed in [`Performing`]; unlisted on drop, before the socket can be closed.
pub(crate) struct Listed<'a> {
    performing: &'a Performing,
    entry: u64,
    _sock: BorrowedFd<'a>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        let mut state = self
            .performing
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.fds.retain(|&(e, _)| e != self.entry);
    }
}

/// The process's reaper: an epoll instance watching listeners for their hang-up.
struct Reaper {
    epoll: OwnedFd,
    watched: Mutex<HashMap<u64, Weak<Sandbox>>>,
}

static REAPER: OnceLock<Option<Arc<Reaper>>> = OnceLock::new();

/// A key for each sandbox the reaper watches, never reused in the process.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// A fresh reaper key for a new sandbox.
pub(crate) fn new_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// Starts the process's reaper if it is not running yet.
pub(crate) fn start() {
    let _ = reaper();
}

fn reaper() -> Option<&'static Arc<Reaper>> {
    REAPER
        .get_or_init(|| {
            let epoll = match sys::epoll_new() {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "no reaper (epoll_create1 failed): a sandbox that exits with connects in flight keeps them until they time out");
                    return None;
                }
            };
            let reaper = Arc::new(Reaper {
                epoll,
                watched: Mutex::new(HashMap::new()),
            });
            let r = reaper.clone();
            let spawned = std::thread::Builder::new()
                .name("netjail-reaper".into())
                .stack_size(128 * 1024)
                .spawn(move || run(&r));
            match spawned {
                Ok(_) => Some(reaper),
                Err(e) => {
                    tracing::error!(error = %e, "no reaper thread: a sandbox that exits with connects in flight keeps them until they time out");
                    None
                }
            }
        })
        .as_ref()
}

/// Watches `sandbox`'s listener for its hang-up (once).
pub(crate) fn watch(sandbox: &Arc<Sandbox>) {
    let Some(reaper) = reaper() else { return };
    let key = sandbox.reaper_key;
    reaper
        .watched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Arc::downgrade(sandbox));
    if let Err(e) = sys::epoll_watch_hangup(reaper.epoll.as_fd(), sandbox.listener.as_fd(), key) {
        tracing::warn!(sandbox = %sandbox.id, error = %e, "the reaper cannot watch this sandbox");
        forget(key);
    }
}

/// The sandbox `key` retired: the reaper need not know it any more.
pub(crate) fn forget(key: u64) {
    if let Some(Some(reaper)) = REAPER.get() {
        reaper
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

fn run(reaper: &Reaper) {
    loop {
        let keys = match sys::epoll_wait_keys(reaper.epoll.as_fd()) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "the reaper stops (epoll_wait failed)");
                return;
            }
        };
        for key in keys {
            let sandbox = reaper
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key)
                .and_then(|w| w.upgrade());
            if let Some(sandbox) = sandbox {
                let n = sandbox.performing.end();
                if n > 0 {
                    tracing::debug!(sandbox = %sandbox.id, connects = n, "sandbox ended: its connects in flight are stopped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn end_shuts_down_what_is_listed_and_what_comes_after() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let a = std::net::TcpStream::connect(addr).unwrap();
        let b = std::net::TcpStream::connect(addr).unwrap();
        let p = Performing::default();
        {
            let _listed = p.list(a.as_fd());
            assert_eq!(p.end(), 1);
        }
        // Shut down: reading gives end of file at once.
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &a, &mut buf).unwrap(), 0);
        // Listed after the end: shut down as it is listed.
        let listed = p.list(b.as_fd());
        assert_eq!(std::io::Read::read(&mut &b, &mut buf).unwrap(), 0);
        drop(listed);
        assert!(p.state.lock().unwrap().fds.is_empty());
    }
}
