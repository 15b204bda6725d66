//! The callers' pidfds, kept per sandbox by thread id so that a thread's every call after its
//! first costs no `pidfd_open` (and no `close`): one system call in five on the allowed
//! connect path.
//!
//! Why a kept pidfd is as good as one opened when the notification arrives (invariant 4):
//!
//! - A pidfd names a `struct pid`, not a number. The kernel gives every new task a new
//!   `struct pid`; the number is handed out again only after the old `struct pid` has let go of
//!   it, and from then on the old one names no task at all. So a kept pidfd names either the
//!   thread that holds the tid now (it was opened for that tid, and no two live threads share
//!   one) or nobody: `pidfd_getfd`, `pidfd_send_signal` on it fail with `ESRCH`. It never
//!   names the next thread that gets the same tid.
//! - Only the thread that holds the tid can be blocked in the call being handled, and
//!   `NOTIF_ID_VALID`, checked after the fd is taken and the memory read, says that it still
//!   is: what the kept pidfd gave belonged to the caller, as with a fresh one.
//! - A kept pidfd whose thread exited (`ESRCH`) is replaced at its first use: the tid is opened
//!   again, and `NOTIF_ID_VALID` is asked right after, so the new pidfd is known to name the
//!   caller whatever the handler does next ([`CallerPidfd::refresh`]).
//!
//! Bounded: [`PER_SANDBOX`] entries per sandbox (the oldest goes), and at most
//! [`PROCESS_WIDE`] kept in the whole process, so that 10,000 sandboxes do not double the
//! broker's open files; past that, calls open and close their pidfd as before.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sys;

/// Threads whose pidfd a sandbox keeps.
pub(crate) const PER_SANDBOX: usize = 8;

/// Pidfds kept by all sandboxes of the process together.
pub(crate) const PROCESS_WIDE: usize = 1024;

/// How many pidfds every cache of the process holds now.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// One sandbox's kept pidfds.
#[derive(Debug, Default)]
pub(crate) struct PidfdCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// `(tid, pidfd)`, at most [`PER_SANDBOX`].
    list: Vec<(u32, Arc<OwnedFd>)>,
    /// The entry replaced next when the list is full.
    next: usize,
}

impl PidfdCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pidfd kept for `tid`, if any.
    pub(crate) fn get(&self, tid: u32) -> Option<Arc<OwnedFd>> {
        let entries = self.entries();
        entries
            .list
            .iter()
            .find(|(t, _)| *t == tid)
            .map(|(_, fd)| fd.clone())
    }

    /// Keeps `pidfd` for `tid`, in place of what was kept for it, else in a free entry, else
    /// in place of the oldest; not at all when the process keeps [`PROCESS_WIDE`] already.
    pub(crate) fn put(&self, tid: u32, pidfd: &Arc<OwnedFd>) {
        let mut entries = self.entries();
        if let Some(slot) = entries.list.iter_mut().find(|(t, _)| *t == tid) {
            slot.1 = pidfd.clone();
            return;
        }
        if entries.list.len() < PER_SANDBOX {
            let taken = KEPT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < PROCESS_WIDE).then_some(n + 1)
            });
            if taken.is_ok() {
                entries.list.push((tid, pidfd.clone()));
            }
            return;
        }
        let at = entries.next % PER_SANDBOX;
        entries.list[at] = (tid, pidfd.clone());
        entries.next = at + 1;
    }

    /// Number of pidfds kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().list.len()
    }
}

impl Drop for PidfdCache {
    fn drop(&mut self) {
        let n = self.entries().list.len();
        KEPT.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The pidfd of the thread that made a call: the one kept for its tid, or one opened when the
/// notification arrived.
#[derive(Debug)]
pub(crate) struct CallerPidfd {
    tid: u32,
    first: Arc<OwnedFd>,
    /// Whether `first` came from the cache (so it may name a thread that has exited).
    kept: bool,
    /// The pidfd opened again when the kept one named nobody.
    fresh: OnceLock<Arc<OwnedFd>>,
}

impl CallerPidfd {
    /// The pidfd for the caller `tid` of a notification just received: the kept one, or
    /// `pidfd_open` at once (and kept).
    pub(crate) fn for_call(cache: &PidfdCache, tid: u32) -> io::Result<CallerPidfd> {
        if let Some(first) = cache.get(tid) {
            return Ok(CallerPidfd {
                tid,
                first,
                kept: true,
                fresh: OnceLock::new(),
            });
        }
        let first = Arc::new(sys::pidfd_open_thread(tid)?);
        cache.put(tid, &first);
        Ok(CallerPidfd {
            tid,
            first,
            kept: false,
            fresh: OnceLock::new(),
        })
    }

    /// After `ESRCH` from the pidfd: whether it was a kept one that named an exited thread,
    /// now replaced by a new pidfd of the tid, which `still_valid` (`NOTIF_ID_VALID`, asked
    /// after the open) shows to name the caller. `false`: the caller itself is gone.
    pub(crate) fn refresh(&self, cache: &PidfdCache, still_valid: impl FnOnce() -> bool) -> bool {
        if !self.kept || self.fresh.get().is_some() {
            return false;
        }
        let Ok(fd) = sys::pidfd_open_thread(self.tid) else {
            return false;
        };
        // The tid could name another thread by now if the caller died after its notification
        // arrived; the call is then no longer pending, and the new pidfd is not used.
        if !still_valid() {
            return false;
        }
        let fd = Arc::new(fd);
        cache.put(self.tid, &fd);
        self.fresh.set(fd).is_ok()
    }
}

impl AsFd for CallerPidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fresh.get().unwrap_or(&self.first).as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's tid, from `/proc/thread-self` (`PID/task/TID`).
    fn gettid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_str().unwrap().parse().unwrap()
    }

    /// What the cache relies on: the pidfd of a thread that has exited names nobody
    /// (`ESRCH`), it does not follow the tid.
    #[test]
    fn pidfd_of_an_exited_thread_names_nobody() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(gettid()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let cache = PidfdCache::default();
        let caller = CallerPidfd::for_call(&cache, tid).unwrap();
        assert!(!caller.kept);
        assert!(sys::pidfd_getfd(caller.as_fd(), 0).is_ok(), "live thread");
        let again = CallerPidfd::for_call(&cache, tid).unwrap();
        assert!(
            again.kept,
            "second call of the same thread uses the kept pidfd"
        );
        done_tx.send(()).unwrap();
        t.join().unwrap();
        let err = sys::pidfd_getfd(again.as_fd(), 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        // Refreshing an exited tid finds nobody (or, were the tid reused, the check fails).
        assert!(!again.refresh(&cache, || false));
    }

    #[test]
    fn bounded_per_sandbox() {
        let cache = PidfdCache::default();
        let me = gettid();
        let fd = Arc::new(sys::pidfd_open_thread(me).unwrap());
        for tid in 0..(PER_SANDBOX as u32 + 5) {
            cache.put(tid, &fd);
        }
        assert!(cache.len() <= PER_SANDBOX);
        assert!(cache.get(PER_SANDBOX as u32 + 4).is_some(), "newest kept");
        cache.put(3_000_000, &fd);
        cache.put(3_000_000, &fd);
        assert_eq!(
            cache
                .entries()
                .list
                .iter()
                .filter(|(t, _)| *t == 3_000_000)
                .count(),
            1
        );
    }
}
