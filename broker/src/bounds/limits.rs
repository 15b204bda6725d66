//! The policy's `[limits]` (rule N3), enforced per sandbox.
//!
//! - `max_connections`: sockets the broker connected for the sandbox (`connect`, inet or unix,
//!   stream or datagram, and TCP Fast Open sends, which connect; the call succeeding or
//!   `EINPROGRESS`) that are still open. Past it a connect fails with `ENOBUFS` before it is
//!   performed.
//! - `max_binds`: sockets the broker bound for the sandbox (`bind`, unix autobind included,
//!   and the implicit bind of `listen`) that are still open. Past it, `ENOBUFS`.
//! - `max_pending`: calls held for operators at once (see `operators/mod.rs`); past it the
//!   policy's fallback applies at once.
//! - `max_calls_per_second`: a token bucket whose burst is the rate; a call past it fails
//!   with `EAGAIN` before it is decoded.
//!
//! The broker keeps no copy of a counted socket (a copy would keep the connection or the
//! port alive after the sandbox closed it). It adds each counted socket to an epoll instance
//! of the limit's, asking for no event, and closes its copy: the kernel removes an epoll entry
//! when the last reference to its file is closed (`eventpoll_release`), so the entries left,
//! which the broker reads from its own `/proc/self/fdinfo/EPOLL` (`ino:` of each), are
//! exactly the counted sockets still open somewhere: in the sandbox, passed to another
//! process, in whatever network namespace the socket or its caller is now. Only when a call
//! would pass the limit does it prune the sockets no longer watched. Nothing of the caller is
//! read for it, so nothing the caller changes (its network namespace, say) changes the count.
//! Failing closed, a socket that cannot be watched (no epoll instance, `max_user_watches`
//! reached) is kept until the sandbox ends, and so is every socket when the entries cannot be
//! read.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netjail_policy::{Decision, Limit, Limits};

use crate::reply::{refusal, Reply};
use crate::sys;

/// The errno of a connect or bind past `max_connections` or `max_binds`: "no buffer space
/// available", the network stack's own word for running out of a resource, which programs
/// treat as a failure (not a reason to retry at once, as `EAGAIN` would be), and which no
/// policy refusal (`EPERM`) or rate limit (`EAGAIN`) gives.
pub(crate) const COUNT_ERRNO: i32 = libc::ENOBUFS;

/// The errno of a call past `max_calls_per_second`: try again later.
pub(crate) const RATE_ERRNO: i32 = libc::EAGAIN;

/// Rule names of the decisions the limits make (the audit's `rule`).
pub(crate) const RULE_CONNECTIONS: &str = "limits.max_connections";
pub(crate) const RULE_BINDS: &str = "limits.max_binds";
pub(crate) const RULE_PENDING: &str = "limits.max_pending";
pub(crate) const RULE_RATE: &str = "limits.max_calls_per_second";

/// At most one audit line per sandbox per this long for calls refused by the rate limit.
const RATE_AUDIT_EVERY: Duration = Duration::from_secs(1);

/// The limits of one sandbox; `None` where the policy sets none (`-1`).
#[derive(Debug, Default)]
pub(crate) struct SandboxLimits {
    pub connections: Option<Arc<Live>>,
    pub binds: Option<Arc<Live>>,
    pub max_pending: Option<usize>,
    pub rate: Option<Mutex<Bucket>>,
}

impl SandboxLimits {
    pub(crate) fn new(limits: &Limits) -> SandboxLimits {
        let live = |limit: Limit, rule| limit.max().map(|max| Arc::new(Live::new(max, rule)));
        SandboxLimits {
            connections: live(limits.max_connections, RULE_CONNECTIONS),
            binds: live(limits.max_binds, RULE_BINDS),
            max_pending: limits
                .max_pending
                .max()
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            rate: limits
                .max_calls_per_second
                .max()
                .map(|r| Mutex::new(Bucket::new(r, Instant::now()))),
        }
    }
}

/// Takes a place under `live` (none to take when the policy sets no limit: `Ok(None)`), or
/// the decision refusing the call.
pub(crate) fn reserve(
    live: &Option<Arc<Live>>,
    sock: BorrowedFd<'_>,
) -> Result<Option<Slot>, Decision> {
    let Some(live) = live else {
        return Ok(None);
    };
    match live.reserve(sock) {
        Some(slot) => Ok(Some(slot)),
        None => Err(refusal(live.rule(), COUNT_ERRNO)),
    }
}

/// Counts `sock` under its slot when the call succeeded (or, for a connect, is under way:
/// `EINPROGRESS`).
pub(crate) fn settle(slot: Option<Slot>, sock: BorrowedFd<'_>, reply: Reply) {
    let ok = matches!(reply, Reply::Value(_) | Reply::Errno(libc::EINPROGRESS));
    if let (Some(slot), true) = (slot, ok) {
        slot.keep(sock);
    }
}

/// Performs a call that makes `sock` count under `live`: reserves a place (or refuses, and
/// nothing is performed), performs the call, and keeps the socket if it succeeded.
pub(crate) fn counted(
    live: &Option<Arc<Live>>,
    sock: BorrowedFd<'_>,
    perform: impl FnOnce() -> Reply,
) -> Result<Reply, Decision> {
    let slot = reserve(live, sock)?;
    let reply = perform();
    settle(slot, sock, reply);
    Ok(reply)
}

#[derive(Debug, Default)]
struct LiveState {
    /// The counted sockets, by inode, and whether each is watched (an entry of `watch`);
    /// one that is not is never pruned.
    sockets: HashMap<u64, bool>,
    /// Calls that passed the check and are being performed.
    reserved: u64,
    /// The epoll instance the counted sockets are entries of, made with the first one; `None`
    /// until then, or when it could not be made.
    watch: Option<OwnedFd>,
}

/// Sockets of one sandbox counted against one limit.
#[derive(Debug)]
pub(crate) struct Live {
    max: u64,
    rule: &'static str,
    state: Mutex<LiveState>,
}

/// A place under the limit, taken before the call is performed: [`Slot::keep`] counts the
/// socket once the call succeeded; dropped, the place is given back.
#[derive(Debug)]
pub(crate) struct Slot {
    live: Arc<Live>,
}

impl Live {
    fn new(max: u64, rule: &'static str) -> Live {
        Live {
            max,
            rule,
            state: Mutex::new(LiveState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limit's rule name.
    pub(crate) fn rule(&self) -> &'static str {
        self.rule
    }

    /// Takes a place for a call on `sock`, or `None` when the sandbox is at the limit with
    /// sockets that are still open. A socket counted already (a datagram socket connected
    /// again) takes no new place.
    pub(crate) fn reserve(self: &Arc<Self>, sock: BorrowedFd<'_>) -> Option<Slot> {
        let mut state = self.lock();
        let again = inode(sock).is_some_and(|ino| state.sockets.contains_key(&ino));
        if !again && state.sockets.len() as u64 + state.reserved >= self.max {
            if self.max > 0 {
                prune(&mut state);
            }
            if state.sockets.len() as u64 + state.reserved >= self.max {
                return None;
            }
        }
        state.reserved += 1;
        Some(Slot { live: self.clone() })
    }
}

impl Slot {
    /// Counts `sock`, on which the call succeeded, and watches it.
    pub(crate) fn keep(self, sock: BorrowedFd<'_>) {
        let Some(ino) = inode(sock) else {
            return; // fstat of a socket we hold does not fail
        };
        let mut state = self.live.lock();
        if state.watch.is_none() {
            state.watch = sys::epoll_new()
                .map_err(|e| tracing::debug!(error = %e, "no epoll instance for a limit"))
                .ok();
        }
        let watched = match &state.watch {
            Some(epoll) => match sys::epoll_watch_file(epoll.as_fd(), sock) {
                Ok(()) => true,
                // This very copy was watched already (a socket counted again).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "a counted socket cannot be watched; kept");
                    false
                }
            },
            None => false,
        };
        let entry = state.sockets.entry(ino).or_insert(watched);
        *entry |= watched;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.live.lock();
        state.reserved = state.reserved.saturating_sub(1);
    }
}

fn inode(sock: BorrowedFd<'_>) -> Option<u64> {
    rustix::fs::fstat(sock).ok().map(|st| st.st_ino)
}

/// Forgets the watched sockets whose last reference was closed: those no longer entries of
/// the limit's epoll instance. Nothing is forgotten when the entries cannot be read.
fn prune(state: &mut LiveState) {
    let Some(epoll) = &state.watch else {
        return;
    };
    let path = format!("/proc/self/fdinfo/{}", epoll.as_raw_fd());
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let open = watched_inodes(&text);
    state
        .sockets
        .retain(|ino, watched| !*watched || open.contains(ino));
}

/// The inodes of the files an epoll instance watches, from its `fdinfo` (one
/// `tfd: ... ino:HEX sdev:...` line per entry).
fn watched_inodes(fdinfo: &str) -> HashSet<u64> {
    fdinfo
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .filter_map(|l| {
            let hex = l.split_whitespace().find_map(|w| w.strip_prefix("ino:"))?;
            u64::from_str_radix(hex, 16).ok()
        })
        .collect()
}

/// The token bucket of `max_calls_per_second`: `rate` tokens a second, at most `rate` kept.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Calls refused since the last audit line.
    refused: u64,
    last_audit: Option<Instant>,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        Bucket {
            rate: rate as f64,
            tokens: rate as f64,
            last: now,
            refused: 0,
            last_audit: None,
        }
    }

    /// Takes a token for a call at `now`. `Err(Some(n))`: refused, and an audit line is due
    /// for the `n` calls refused since the last one (this one included); `Err(None)`:
    /// refused, the line waits.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Option<u64>> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        self.refused += 1;
        let due = self
            .last_audit
            .is_none_or(|t| now.saturating_duration_since(t) >= RATE_AUDIT_EVERY);
        if !due {
            return Err(None);
        }
        self.last_audit = Some(now);
        Err(Some(std::mem::take(&mut self.refused)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_refuses_and_audits_once_a_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Ok(()));
        }
        assert_eq!(b.take(t0), Err(Some(1)));
        assert_eq!(b.take(t0), Err(None));
        assert_eq!(b.take(t0), Err(None));
        // A third of a second gives one token back.
        let t1 = t0 + Duration::from_millis(340);
        assert_eq!(b.take(t1), Ok(()));
        assert_eq!(b.take(t1), Err(None));
        // A second after the last line, the next one counts everything refused since.
        let t2 = t0 + Duration::from_millis(1000);
        assert_eq!(b.take(t2), Ok(()));
        assert_eq!(b.take(t2), Ok(()));
        assert_eq!(b.take(t2), Err(Some(4)));
        // The burst never exceeds the rate.
        let t3 = t2 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(t3), Ok(()));
        }
        assert!(b.take(t3).is_err());
    }

    #[test]
    fn bucket_of_zero_refuses_everything() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, t0);
        assert_eq!(b.take(t0), Err(Some(1)));
        assert_eq!(b.take(t0 + Duration::from_secs(5)), Err(Some(1)));
    }

    #[test]
    fn watched_inodes_are_read_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n\
            tfd:        9 events:       18 data:                0  pos:0 ino:3a7f2 sdev:8\n\
            tfd:       11 events:       18 data:                0  pos:0 ino:10 sdev:8\n";
        assert_eq!(watched_inodes(fdinfo), HashSet::from([0x3a7f2, 0x10]));
        assert!(watched_inodes("pos:\t0\nino:\t77\n").is_empty());
    }

    fn socket() -> OwnedFd {
        std::os::unix::net::UnixDatagram::unbound()
            .expect("a unix datagram socket")
            .into()
    }

    /// A counted socket stops counting when its last reference is closed, whoever holds it:
    /// not when the broker's copy is closed, not while another copy lives (a socket handed
    /// to another process), and nothing of the caller is asked.
    #[test]
    fn counted_sockets_stop_counting_when_their_last_reference_closes() {
        let live = Arc::new(Live::new(2, RULE_CONNECTIONS));
        let keep = |sock: &OwnedFd| {
            let copy = sock.try_clone().expect("dup");
            let slot = live.reserve(copy.as_fd()).expect("a place");
            slot.keep(copy.as_fd());
            // The broker's copy is closed after the call.
        };
        let (a, b, c) = (socket(), socket(), socket());
        keep(&a);
        keep(&b);
        assert!(
            live.reserve(c.as_fd()).is_none(),
            "two live sockets: at the limit"
        );
        // A socket counted already takes no new place (a datagram socket connected again).
        drop(live.reserve(a.as_fd()).expect("counted again"));
        // Another reference to `a` keeps it open.
        let elsewhere = a.try_clone().expect("dup");
        drop(a);
        assert!(
            live.reserve(c.as_fd()).is_none(),
            "a is still open elsewhere"
        );
        drop(elsewhere);
        let slot = live.reserve(c.as_fd()).expect("a closed: a place again");
        slot.keep(c.as_fd());
        assert!(live.reserve(socket().as_fd()).is_none());
        drop((b, c));
        assert!(live.reserve(socket().as_fd()).is_some());
    }

    /// A socket that could not be watched is never pruned (fail closed).
    #[test]
    fn unwatched_sockets_keep_counting() {
        let mut state = LiveState::default();
        state.sockets.insert(7, false);
        state.sockets.insert(8, true);
        prune(&mut state);
        assert_eq!(
            state.sockets.len(),
            2,
            "no epoll instance: nothing is pruned"
        );
        state.watch = Some(sys::epoll_new().expect("epoll"));
        prune(&mut state);
        assert_eq!(state.sockets, HashMap::from([(7, false)]));
    }
}
