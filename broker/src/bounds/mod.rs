//! The broker's own bounds on what sandboxes make it hold (invariant 7): calls on the blocking
//! pool and descriptors taken for `SCM_RIGHTS`. (Held calls are bounded the same way in
//! `operators/mod.rs`, under the lock of their table; the policy's own `[limits]` are in
//! `bounds/limits.rs`.)
//!
//! Each resource has a bound per sandbox and one for the whole process, and the last part of
//! the process's bound, its *reserve*, goes only to a sandbox that holds little of it (at most
//! its *floor*, what it asks for included). So a few sandboxes at their own bound cannot take
//! everything: once they have used the shared part, a sandbox that holds little still gets its
//! floor from the reserve, and the sandboxes that hold much are refused, not the others.
//!
//! A call that cannot have what it needs is answered with an error, never left waiting: a call
//! that needs the blocking pool waits at most [`POOL_WAIT`] for a place (a burst of a
//! sandbox's own calls frees places within milliseconds), then gets `EAGAIN`; after such a
//! refusal its sandbox's next calls are refused at once until a place is given back.
//!
//! | resource | per sandbox | process | reserve (floor) | past it |
//! | --- | --- | --- | --- | --- |
//! | calls on the blocking pool | [`MAX_IN_FLIGHT`] (64) | [`POOL`] (448) | 128 (8) | `EAGAIN`, `limit:in-flight` / `limit:pool` |
//! | descriptors taken for `SCM_RIGHTS` | 1,024 | a quarter of `RLIMIT_NOFILE`, at most 65,536 | a quarter (253) | `ETOOMANYREFS`, `limit:descriptors` |
//!
//! The broker's other descriptors and threads follow from these: a call holds at most a few
//! descriptors besides those it passes (its pidfd, its copy of the socket, a directory and a
//! node for a unix path) and at most one thread besides its pool thread (the one that takes the
//! caller's identity), and a sandbox's receiver performs one call at a time.

pub(crate) mod limits;
pub(crate) mod reaper;

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ops::msg::SCM_MAX_FD;

/// Calls of one sandbox that may be waiting on the blocking pool at once; past it the
/// sandbox's receiver waits a little for a place (its further calls wait in the kernel), then
/// answers `EAGAIN`, so that one sandbox cannot take every thread of the broker (invariant 7;
/// the whole broker's bound is [`crate::POOL`]).
pub const MAX_IN_FLIGHT: usize = 64;

/// Calls of all sandboxes of the process on the blocking pool at once. Tokio's pool has 512
/// threads unless the runtime says otherwise; the rest are left to the broker's own work
/// (reloads, the OCI agent, host name lookups).
pub const POOL: usize = 448;

/// The last places of [`POOL`], kept for sandboxes with at most [`POOL_FLOOR`] calls there.
const POOL_RESERVE: usize = 128;

/// Calls on the pool that any sandbox gets while the reserve lasts.
const POOL_FLOOR: usize = 8;

/// How long a call waits for a place on the blocking pool before it is refused.
pub(crate) const POOL_WAIT: Duration = Duration::from_secs(2);

/// Descriptors taken for `SCM_RIGHTS` that one sandbox's sends may hold at once (four full
/// messages and a few).
const DESCRIPTORS_PER_SANDBOX: usize = 1024;

/// The most descriptors in flight in the whole process, whatever `RLIMIT_NOFILE` allows.
const DESCRIPTORS_MOST: usize = 65_536;

/// The errno of a call refused for want of a place on the blocking pool: try again later, as
/// a blocking socket's send or connect says when its `SO_SNDTIMEO` runs out.
pub(crate) const POOL_ERRNO: i32 = libc::EAGAIN;

/// The errno of a send whose descriptors would pass a bound: what the kernel says when a user
/// has more descriptors in flight than its `RLIMIT_NOFILE`.
pub(crate) const DESCRIPTORS_ERRNO: i32 = libc::ETOOMANYREFS;

/// The errno of a call the broker cannot serve for want of a descriptor of its own (`EMFILE`,
/// `ENFILE` in the broker): temporary, as the pool's.
pub(crate) const FDS_ERRNO: i32 = libc::EAGAIN;

/// What the rule names of refusals by these bounds start with (the audit's `rule`;
/// `netjail metrics` counts them by the part after it).
pub(crate) const RULE_PREFIX: &str = "limit:";

/// Rule names of refusals by these bounds.
pub(crate) const RULE_IN_FLIGHT: &str = "limit:in-flight";
pub(crate) const RULE_POOL: &str = "limit:pool";
pub(crate) const RULE_DESCRIPTORS: &str = "limit:descriptors";
pub(crate) const RULE_HELD: &str = "limit:held";
pub(crate) const RULE_FDS: &str = "limit:fds";

/// The shape of a bound shared by the sandboxes of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The most one sandbox may hold.
    pub per_sandbox: usize,
    /// The most all sandboxes may hold together.
    pub total: usize,
    /// The last part of `total`, only for a sandbox that would hold at most `floor`.
    pub reserve: usize,
    pub floor: usize,
}

/// Which bound refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The sandbox's own.
    Sandbox,
    /// The process's, or its reserve.
    Broker,
}

impl Shape {
    /// Whether a sandbox holding `held` may take `n` more while all hold `used`.
    pub(crate) fn allows(&self, used: usize, held: usize, n: usize) -> Result<(), Refused> {
        if held + n > self.per_sandbox {
            return Err(Refused::Sandbox);
        }
        let after = used + n;
        if after > self.total {
            return Err(Refused::Broker);
        }
        if after > self.total.saturating_sub(self.reserve) && held + n > self.floor {
            return Err(Refused::Broker);
        }
        Ok(())
    }
}

/// A bound shared by the sandboxes of the process.
#[derive(Debug)]
pub(crate) struct Budget {
    shape: Shape,
    used: Mutex<usize>,
    freed: Condvar,
    /// Places given back so far.
    releases: AtomicU64,
}

impl Budget {
    pub(crate) fn new(shape: Shape) -> Arc<Budget> {
        Arc::new(Budget {
            shape,
            used: Mutex::new(0),
            freed: Condvar::new(),
            releases: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, usize> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What all sandboxes hold now.
    pub(crate) fn used(&self) -> usize {
        *self.lock()
    }
}

/// The calls of all sandboxes on the blocking pool.
pub(crate) static POOL_BUDGET: LazyLock<Arc<Budget>> = LazyLock::new(|| {
    Budget::new(Shape {
        per_sandbox: MAX_IN_FLIGHT,
        total: POOL,
        reserve: POOL_RESERVE,
        floor: POOL_FLOOR,
    })
});

/// The descriptors all sandboxes' sends hold for `SCM_RIGHTS`, sized from the broker's
/// `RLIMIT_NOFILE` when the first sandbox registers (`netjaild` raises it to the hard limit at
/// its start): a quarter of it, so that the broker keeps most of its descriptors whatever the
/// sandboxes pass.
pub(crate) static DESCRIPTORS_BUDGET: LazyLock<Arc<Budget>> =
    LazyLock::new(|| Budget::new(descriptors_shape(open_file_limit())));

/// The descriptors bound for a broker whose open-file limit is `nofile`.
pub(crate) fn descriptors_shape(nofile: usize) -> Shape {
    let total = (nofile / 4).clamp(SCM_MAX_FD, DESCRIPTORS_MOST);
    Shape {
        per_sandbox: DESCRIPTORS_PER_SANDBOX.min(total),
        total,
        reserve: total / 4,
        floor: SCM_MAX_FD,
    }
}

fn open_file_limit() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.map_or(DESCRIPTORS_MOST * 4, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    })
}

/// No refusal recorded.
const NOT_STARVED: u8 = 0;

/// One sandbox's share of a [`Budget`].
#[derive(Debug)]
pub(crate) struct Account {
    budget: Arc<Budget>,
    /// What the sandbox holds (changed under the budget's lock).
    held: AtomicUsize,
    /// Places the sandbox gave back so far.
    releases: AtomicU64,
    /// The last refusal after a wait: which bound (`1 + Refused as u8`, or [`NOT_STARVED`])
    /// and the count of releases of that bound then. Until that count moves, a refusal does
    /// not wait again.
    starved: AtomicU8,
    starved_at: AtomicU64,
}

/// Units of an [`Account`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Taken {
    account: Arc<Account>,
    n: usize,
}

impl Account {
    pub(crate) fn new(budget: &Arc<Budget>) -> Arc<Account> {
        Arc::new(Account {
            budget: budget.clone(),
            held: AtomicUsize::new(0),
            releases: AtomicU64::new(0),
            starved: AtomicU8::new(NOT_STARVED),
            starved_at: AtomicU64::new(0),
        })
    }

    /// What the sandbox holds now.
    pub(crate) fn in_use(&self) -> usize {
        let _used = self.budget.lock();
        self.held.load(Ordering::Relaxed)
    }

    /// Waits until the sandbox holds at most `left()` units, `left` asked again at every
    /// release and at least every `every` (what it counts may change without a release).
    pub(crate) fn wait_down_to(&self, left: impl Fn() -> usize, every: Duration) {
        let budget = &self.budget;
        loop {
            let floor = left();
            let used = budget.lock();
            if self.held.load(Ordering::Relaxed) <= floor {
                return;
            }
            drop(
                budget
                    .freed
                    .wait_timeout(used, every)
                    .unwrap_or_else(|p| p.into_inner()),
            );
        }
    }

    /// Takes `n` units, waiting at most `wait` for them unless the last refusal of the same
    /// bound waited and nothing was given back since.
    pub(crate) fn take(self: &Arc<Self>, n: usize, wait: Duration) -> Result<Taken, Refused> {
        let budget = &self.budget;
        let deadline = Instant::now() + wait;
        let mut used = budget.lock();
        loop {
            let held = self.held.load(Ordering::Relaxed);
            let which = match budget.shape.allows(*used, held, n) {
                Ok(()) => {
                    *used += n;
                    self.held.store(held + n, Ordering::Relaxed);
                    self.starved.store(NOT_STARVED, Ordering::Relaxed);
                    return Ok(Taken {
                        account: self.clone(),
                        n,
                    });
                }
                Err(which) => which,
            };
            let releases = match which {
                Refused::Sandbox => self.releases.load(Ordering::Relaxed),
                Refused::Broker => budget.releases.load(Ordering::Relaxed),
            };
            let code = 1 + which as u8;
            let starved = self.starved.load(Ordering::Relaxed) == code
                && self.starved_at.load(Ordering::Relaxed) == releases;
            let now = Instant::now();
            if starved || now >= deadline {
                if !wait.is_zero() {
                    self.starved.store(code, Ordering::Relaxed);
                    self.starved_at.store(releases, Ordering::Relaxed);
                }
                return Err(which);
            }
            used = budget
                .freed
                .wait_timeout(used, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let account = &self.account;
        let budget = &account.budget;
        let mut used = budget.lock();
        *used = used.saturating_sub(self.n);
        let held = account.held.load(Ordering::Relaxed);
        account
            .held
            .store(held.saturating_sub(self.n), Ordering::Relaxed);
        account.releases.fetch_add(1, Ordering::Relaxed);
        budget.releases.fetch_add(1, Ordering::Relaxed);
        drop(used);
        budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Arc<Budget> {
        Budget::new(Shape {
            per_sandbox: 4,
            total: 10,
            reserve: 4,
            floor: 1,
        })
    }

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn each_sandbox_is_held_to_its_own_bound() {
        let budget = small();
        let a = Account::new(&budget);
        let taken: Vec<Taken> = (0..4).map(|_| a.take(1, NOW).unwrap()).collect();
        assert_eq!(a.take(1, NOW).unwrap_err(), Refused::Sandbox);
        assert_eq!(a.in_use(), 4);
        drop(taken);
        assert_eq!(a.in_use(), 0);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_reserve_goes_to_sandboxes_that_hold_little() {
        let budget = small();
        let (a, b, c, d, e) = (
            Account::new(&budget),
            Account::new(&budget),
            Account::new(&budget),
            Account::new(&budget),
            Account::new(&budget),
        );
        // The shared part (6) goes to whoever comes first.
        let mut held: Vec<Taken> = (0..4).map(|_| a.take(1, NOW).unwrap()).collect();
        held.extend((0..2).map(|_| b.take(1, NOW).unwrap()));
        // B holds more than its floor: the reserve is not for it.
        assert_eq!(b.take(1, NOW).unwrap_err(), Refused::Broker);
        // Sandboxes that hold nothing get their floor, one each, while the reserve lasts.
        for s in [&c, &d, &e] {
            held.push(s.take(1, NOW).unwrap());
            assert_eq!(s.take(1, NOW).unwrap_err(), Refused::Broker);
        }
        let f = Account::new(&budget);
        held.push(f.take(1, NOW).unwrap());
        assert_eq!(budget.used(), 10);
        let g = Account::new(&budget);
        assert_eq!(g.take(1, NOW).unwrap_err(), Refused::Broker, "all taken");
        // What A gives back goes to the next that asks.
        held.remove(0);
        assert!(g.take(1, NOW).is_ok());
    }

    #[test]
    fn a_request_larger_than_the_floor_needs_the_shared_part() {
        let budget = Budget::new(Shape {
            per_sandbox: 6,
            total: 10,
            reserve: 4,
            floor: 3,
        });
        let a = Account::new(&budget);
        let b = Account::new(&budget);
        let _a = a.take(5, NOW).unwrap();
        assert_eq!(b.take(4, NOW).unwrap_err(), Refused::Broker);
        let _b = b.take(3, NOW).unwrap();
    }

    #[test]
    fn a_refused_call_waits_once_then_not_until_something_is_given_back() {
        let budget = small();
        let a = Account::new(&budget);
        let mut held: Vec<Taken> = (0..4).map(|_| a.take(1, NOW).unwrap()).collect();
        let wait = Duration::from_millis(50);
        let t = Instant::now();
        assert_eq!(a.take(1, wait).unwrap_err(), Refused::Sandbox);
        assert!(t.elapsed() >= wait);
        let t = Instant::now();
        assert_eq!(
            a.take(1, Duration::from_secs(5)).unwrap_err(),
            Refused::Sandbox
        );
        assert!(t.elapsed() < Duration::from_secs(1), "waited again");
        // A place given back: taken at once, and the next refusal may wait again.
        drop(held.pop());
        held.push(a.take(1, NOW).unwrap());
        let back = held.pop().unwrap();
        let a2 = a.clone();
        let waiter = std::thread::spawn(move || a2.take(1, Duration::from_secs(10)).is_ok());
        std::thread::sleep(Duration::from_millis(50));
        drop(back);
        assert!(
            waiter.join().unwrap(),
            "the waiting call got the place given back"
        );
    }

    #[test]
    fn descriptors_follow_the_open_file_limit() {
        let s = descriptors_shape(2048);
        assert_eq!((s.total, s.reserve, s.per_sandbox), (512, 128, 512));
        let s = descriptors_shape(1 << 20);
        assert_eq!((s.total, s.per_sandbox, s.floor), (65_536, 1024, 253));
        // A small limit still lets one full message through.
        let s = descriptors_shape(256);
        assert_eq!(s.total, 253);
        assert!(s.allows(0, 0, 253).is_ok());
    }
}
