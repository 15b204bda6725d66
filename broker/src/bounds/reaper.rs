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
//!
//! Shutting a socket down does not end every wait: a unix connect waits for room in the
//! *server's* backlog, a unix datagram send for room in the *receiver's* queue, and neither
//! looks at its own socket. So every system call the broker performs that may block (a
//! connect, a send) is also listed, while it runs, with the thread that makes it
//! ([`blocking`]), and the reaper interrupts that thread with a signal (`EINTR`) once nobody
//! waits for the result: when the sandbox has ended, at once, and when the caller alone is
//! gone (killed while the rest of the sandbox runs on), within [`CHECK_EVERY`] (it asks
//! `NOTIF_ID_VALID` of each listed call on a timer set while any is listed, which wakes no
//! thread when a call is listed). A blocked call whose caller
//! still waits is never interrupted: it waits as long as the kernel would have made the
//! caller wait.
//!
//! The signal ([`sys::interrupt_signal`]) has a handler that does nothing and no
//! `SA_RESTART`. A thread leaving the list blocks it first and unblocks it once it has left: a
//! signal sent just before the thread left is delivered as it unblocks it, in no system call,
//! never into a later one. One delivered before the blocking call starts is sent again at the
//! next check. Outside the list a thread's signal mask is as it was (a child a thread forks
//! inherits it).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use netjail_protocol::SandboxId;

use crate::sys;

/// What the reaper needs of a sandbox (`sandbox.rs` implements it): the listener whose
/// hang-up ends it, the connects performed for it, and its key here.
pub(crate) trait Watched: Send + Sync {
    /// Its seccomp listener: `EPOLLHUP` once every task of the sandbox has exited, and the
    /// descriptor `NOTIF_ID_VALID` asks about its callers.
    fn listener(&self) -> BorrowedFd<'_>;
    /// The connects the broker is performing for it.
    fn performing(&self) -> &Performing;
    /// Its key with the reaper ([`new_key`]).
    fn reaper_key(&self) -> u64;
    /// Its id, for the log.
    fn id(&self) -> SandboxId;
}

/// How often the reaper checks the callers of the blocking calls listed, while any is.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(200);

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

    /// Whether every task of the sandbox has exited.
    pub(crate) fn ended(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).ended
    }
}

/// A blocking system call being performed for a call.
struct Entry {
    entry: u64,
    tid: i32,
    /// The sandbox's reaper key.
    key: u64,
    sandbox: Weak<dyn Watched>,
    /// The notification id of the call.
    notif: u64,
    /// Nobody waits for its result: interrupted at every check until it leaves.
    cancelled: bool,
}

#[derive(Default)]
struct Blocked {
    next: u64,
    entries: Vec<Entry>,
    /// The reaper's timer is set: it checks the list at its next tick.
    armed: bool,
}

static BLOCKED: Mutex<Blocked> = Mutex::new(Blocked {
    next: 0,
    entries: Vec::new(),
    armed: false,
});

/// Whether blocking calls can be interrupted (the signal's handler is the broker's).
static INTERRUPTS: AtomicBool = AtomicBool::new(false);

fn blocked() -> MutexGuard<'static, Blocked> {
    BLOCKED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A blocking system call listed while the guard lives: make the call meanwhile, on the same
/// thread, and nothing else that may block.
pub(crate) struct Blocking {
    entry: Option<u64>,
    /// Whether the thread had the signal blocked before.
    was_blocked: bool,
}

/// Lists the calling thread as performing a system call for the call `notif` of `sandbox`
/// that may block, until the returned guard is dropped (`Call::blocking`).
pub(crate) fn blocking<S: Watched + 'static>(sandbox: &Arc<S>, notif: u64) -> Blocking {
    list_blocking(
        sandbox.as_ref(),
        || Arc::downgrade(sandbox) as Weak<dyn Watched>,
        notif,
    )
}

fn list_blocking(
    sandbox: &dyn Watched,
    weak: impl FnOnce() -> Weak<dyn Watched>,
    notif: u64,
) -> Blocking {
    if !INTERRUPTS.load(Ordering::Relaxed) {
        return Blocking {
            entry: None,
            was_blocked: false,
        };
    }
    let cancelled = sandbox.performing().ended();
    let mut list = blocked();
    let entry = list.next;
    list.next += 1;
    // The first call listed sets the reaper's timer; no thread is woken for it.
    let arm = !std::mem::replace(&mut list.armed, true);
    list.entries.push(Entry {
        entry,
        tid: sys::gettid(),
        key: sandbox.reaper_key(),
        sandbox: weak(),
        notif,
        cancelled,
    });
    drop(list);
    if arm {
        arm_timer();
    }
    // A signal sent from now on interrupts the call, or, sent before it starts, is sent again.
    let was_blocked = sys::set_interrupt_blocked(false);
    Blocking {
        entry: Some(entry),
        was_blocked,
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        let Some(entry) = self.entry else { return };
        // Blocked before the thread leaves the list: one sent until then is delivered when
        // it is unblocked, on the return of that call, and ends no later one.
        sys::set_interrupt_blocked(true);
        blocked().entries.retain(|e| e.entry != entry);
        if !self.was_blocked {
            sys::set_interrupt_blocked(false);
        }
    }
}

/// The broker's copy of a descriptor of the caller of one call (`pidfd_getfd`), closed as a
/// blocking call of that call ([`blocking`]).
///
/// Closing a copy can block when it is the last reference: a TCP socket with `SO_LINGER` and
/// data its peer does not read waits in `close` for the peer (`tcp_close`), with no bound the
/// broker sets. The program may close its own copies while the broker performs its call (the
/// caller's thread, or another, then exits), and the peer may be a socket only the broker
/// holds (another descriptor passed in the same `SCM_RIGHTS` message). Listed, the close ends
/// once nobody waits for the call, like a send that blocks
/// (`redteam2::rt2_linger_close_of_passed_sockets_holds_the_pool_for_ever`); while the caller
/// waits, it waits as the caller's own last close would have.
pub(crate) struct CallerFd {
    fd: Option<OwnedFd>,
    sandbox: Arc<dyn Watched>,
    notif: u64,
}

impl CallerFd {
    /// `fd`, a copy of a descriptor of the caller of the call `notif` of `sandbox`.
    pub(crate) fn new<S: Watched + 'static>(sandbox: &Arc<S>, notif: u64, fd: OwnedFd) -> CallerFd {
        CallerFd {
            fd: Some(fd),
            sandbox: Arc::clone(sandbox) as Arc<dyn Watched>,
            notif,
        }
    }
}

impl std::ops::Deref for CallerFd {
    type Target = OwnedFd;

    fn deref(&self) -> &OwnedFd {
        self.fd
            .as_ref()
            .expect("a CallerFd holds its fd until dropped")
    }
}

impl AsFd for CallerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        (**self).as_fd()
    }
}

impl AsRawFd for CallerFd {
    fn as_raw_fd(&self) -> RawFd {
        (**self).as_raw_fd()
    }
}

impl std::fmt::Debug for CallerFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallerFd({:?})", self.fd)
    }
}

impl Drop for CallerFd {
    fn drop(&mut self) {
        let listed = list_blocking(&*self.sandbox, || Arc::downgrade(&self.sandbox), self.notif);
        drop(self.fd.take());
        drop(listed);
    }
}

/// Interrupts the listed calls of the sandbox `key`, now and at every check until they leave.
fn cancel_sandbox(key: u64) -> usize {
    let mut list = blocked();
    let mut n = 0;
    for e in list.entries.iter_mut().filter(|e| e.key == key) {
        e.cancelled = true;
        let _ = sys::interrupt_thread(e.tid);
        n += 1;
    }
    let arm = n > 0 && !std::mem::replace(&mut list.armed, true);
    drop(list);
    if arm {
        arm_timer();
    }
    n
}

/// Marks the listed calls whose caller no longer waits (or whose sandbox ended) and
/// interrupts every marked one; sets the timer again while any call is listed.
fn check_blocked() {
    let mut list = blocked();
    for e in list.entries.iter_mut() {
        if !e.cancelled {
            e.cancelled = match e.sandbox.upgrade() {
                Some(s) => s.performing().ended() || !sys::notif_id_valid(s.listener(), e.notif),
                None => true,
            };
        }
        if e.cancelled {
            // The lock is held: the thread is still in the list, so in its call or about to
            // make it, or blocking the signal on its way out (then it takes it back).
            let _ = sys::interrupt_thread(e.tid);
        }
    }
    list.armed = !list.entries.is_empty();
    let arm = list.armed;
    drop(list);
    if arm {
        arm_timer();
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

/// The process's reaper: an epoll instance watching listeners for their hang-up, and a timer
/// that makes it check the listed blocking calls (key [`TICK`]).
struct Reaper {
    epoll: OwnedFd,
    timer: OwnedFd,
    watched: Mutex<HashMap<u64, Weak<dyn Watched>>>,
}

/// The epoll key of the reaper's timer; sandboxes' keys start at 1.
const TICK: u64 = 0;

/// Sets the reaper's timer to fire once, [`CHECK_EVERY`] from now.
fn arm_timer() {
    if let Some(Some(reaper)) = REAPER.get() {
        if let Err(e) = sys::timer_set(reaper.timer.as_fd(), CHECK_EVERY) {
            tracing::warn!(error = %e, "cannot set the reaper's timer: blocked calls whose caller is gone are not checked");
        }
    }
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
            let made = sys::epoll_new().and_then(|epoll| {
                let timer = sys::timer_new()?;
                sys::epoll_watch_readable(epoll.as_fd(), timer.as_fd(), TICK)?;
                Ok((epoll, timer))
            });
            let (epoll, timer) = match made {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "no reaper (epoll or timerfd failed): a sandbox that exits with calls in flight keeps them until they end");
                    return None;
                }
            };
            match sys::install_interrupt_handler() {
                Ok(true) => INTERRUPTS.store(true, Ordering::Relaxed),
                Ok(false) => tracing::warn!(
                    signal = sys::interrupt_signal(),
                    "the process has its own handler for the broker's interrupt signal: blocked calls whose caller is gone are not interrupted"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot install the interrupt handler: blocked calls whose caller is gone are not interrupted"),
            }
            let reaper = Arc::new(Reaper {
                epoll,
                timer,
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
pub(crate) fn watch<S: Watched + 'static>(sandbox: &Arc<S>) {
    let Some(reaper) = reaper() else { return };
    let key = sandbox.reaper_key();
    reaper
        .watched
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, Arc::downgrade(sandbox) as Weak<dyn Watched>);
    if let Err(e) = sys::epoll_watch_hangup(reaper.epoll.as_fd(), sandbox.listener(), key) {
        tracing::warn!(sandbox = %sandbox.id(), error = %e, "the reaper cannot watch this sandbox");
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
        let keys = match sys::epoll_wait_keys(reaper.epoll.as_fd(), -1) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "the reaper stops (epoll_wait failed)");
                return;
            }
        };
        for key in keys {
            if key == TICK {
                sys::timer_drain(reaper.timer.as_fd());
                check_blocked();
                continue;
            }
            let sandbox = reaper
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key)
                .and_then(|w| w.upgrade());
            if let Some(sandbox) = sandbox {
                let n = sandbox.performing().end();
                let interrupted = cancel_sandbox(key);
                if n + interrupted > 0 {
                    tracing::debug!(sandbox = %sandbox.id(), connects = n, interrupted, "sandbox ended: its calls in flight are stopped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::os::unix::net::UnixStream;

    /// What `blocking` relies on: the signal ends a blocked system call of the thread it is
    /// sent to (`EINTR`, no restart), and one sent while the thread blocks it is taken back
    /// and never ends a later call.
    #[test]
    fn an_interrupt_ends_a_blocked_call_and_never_a_later_one() {
        assert!(sys::install_interrupt_handler().unwrap());
        let (a, _b) = UnixStream::pair().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(sys::gettid()).unwrap();
            let was = sys::set_interrupt_blocked(false);
            let first = (&a).read(&mut [0u8; 1]).map_err(|e| e.kind());
            // Leaving: blocked, then a signal arrives, then it is unblocked again.
            sys::set_interrupt_blocked(true);
            tx.send(sys::gettid()).unwrap();
            sent_rx.recv().unwrap();
            sys::set_interrupt_blocked(was);
            a.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let later = (&a).read(&mut [0u8; 1]).map_err(|e| e.kind());
            (first, later)
        });
        let tid = rx.recv().unwrap();
        // Sent again until the read returns: the first may come before the read starts.
        let mut leaving = None;
        while leaving.is_none() {
            sys::interrupt_thread(tid).unwrap();
            leaving = rx.recv_timeout(Duration::from_millis(20)).ok();
        }
        sys::interrupt_thread(tid).unwrap();
        sent_tx.send(()).unwrap();
        let (first, later) = t.join().unwrap();
        assert_eq!(first, Err(std::io::ErrorKind::Interrupted));
        assert_eq!(
            later,
            Err(std::io::ErrorKind::WouldBlock),
            "a stray signal ended the later read"
        );
    }

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
