//! The policy's `[limits]` (rule N3), enforced per sandbox.
//!
//! - `max_connections`: sockets the broker connected for the sandbox (`connect`, inet or unix,
//!   stream or datagram, and TCP Fast Open sends, which connect; the call succeeding or
//!   `EINPROGRESS`) that are still open. Past it a connect fails with `ENOBUFS` before it is
//!   performed.
//! - `max_binds`: sockets the broker bound for the sandbox (`bind`, unix autobind included,
//!   and the implicit bind of `listen`) that are still open. Past it, `ENOBUFS`.
//! - `max_pending`: calls held for operators at once (see `operators.rs`); past it the
//!   policy's fallback applies at once.
//! - `max_calls_per_second`: a token bucket whose burst is the rate; a call past it fails
//!   with `EAGAIN` before it is decoded.
//!
//! The broker keeps no copy of a counted socket (a copy would keep the connection or the
//! port alive after the sandbox closed it): it records the socket's inode and which
//! `/proc/net` table lists it. Only when a call would pass the limit does it prune the
//! record, reading that table in the caller's network namespace (`/proc/TID/net/tcp`,
//! `tcp6`, `udp`, `udp6`, `udplite`, `udplite6`, `unix`; the caller is alive, waiting in its
//! call): a socket the sandbox closed is no longer listed (a closed TCP connection that
//! lingers in `TIME_WAIT` or `FIN_WAIT` is listed with inode 0, so it no longer counts).
//! Failing closed, a record that cannot be checked is kept: a socket of a kind without such
//! a table (SCTP, MPTCP...), a TCP socket bound and neither listening nor connected (the
//! kernel lists it nowhere in `/proc`), and every record when the tables cannot be read.

use std::collections::{HashMap, HashSet};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use netjail_policy::{Decision, Limit, Limits, Verdict};

use crate::handler::Reply;
use crate::sys::SocketKind;

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

/// The decision a limit makes: deny, by the limit's rule.
pub(crate) fn refusal(rule: &str, errno: i32) -> Decision {
    Decision {
        verdict: Verdict::Deny { errno },
        rule: rule.to_owned(),
        host: None,
    }
}

/// Takes a place under `live` (none to take when the policy sets no limit: `Ok(None)`), or
/// the decision refusing the call.
pub(crate) fn reserve(
    live: &Option<Arc<Live>>,
    tid: u32,
    sock: BorrowedFd<'_>,
) -> Result<Option<Slot>, Decision> {
    let Some(live) = live else {
        return Ok(None);
    };
    match live.reserve(tid, sock) {
        Some(slot) => Ok(Some(slot)),
        None => Err(refusal(live.rule(), COUNT_ERRNO)),
    }
}

/// Counts `sock` under its slot when the call succeeded (or, for a connect, is under way:
/// `EINPROGRESS`). `listed`: whether the kernel now lists the socket in `/proc/net`.
pub(crate) fn settle(
    slot: Option<Slot>,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    reply: Reply,
    listed: bool,
) {
    let ok = matches!(reply, Reply::Value(_) | Reply::Errno(libc::EINPROGRESS));
    if let (Some(slot), true) = (slot, ok) {
        slot.keep(sock, kind, listed);
    }
}

/// Performs a call that makes `sock` count under `live`: reserves a place (or refuses, and
/// nothing is performed), performs the call, and keeps the socket if it succeeded.
pub(crate) fn counted(
    live: &Option<Arc<Live>>,
    tid: u32,
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    listed: bool,
    perform: impl FnOnce() -> Reply,
) -> Result<Reply, Decision> {
    let slot = reserve(live, tid, sock)?;
    let reply = perform();
    settle(slot, sock, kind, reply, listed);
    Ok(reply)
}

/// Whether the kernel lists a socket of `kind` in `/proc/net` once it is bound: all but TCP
/// (listed once it listens or connects).
pub(crate) fn listed_when_bound(kind: SocketKind) -> bool {
    !matches!(Table::of(kind), Table::Tcp | Table::Tcp6)
}

/// A counted bound socket that listens or connects becomes listed.
pub(crate) fn now_listed(binds: &Option<Arc<Live>>, sock: BorrowedFd<'_>, reply: Reply) {
    if let Some(live) = binds {
        if matches!(reply, Reply::Value(_) | Reply::Errno(libc::EINPROGRESS)) {
            live.listed(sock);
        }
    }
}

/// Where the kernel lists a socket, to tell whether it is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
    UdpLite,
    UdpLite6,
    Unix,
    /// No table lists it: it is never pruned.
    None,
}

impl Table {
    fn of(kind: SocketKind) -> Table {
        let v6 = kind.family == libc::AF_INET6;
        match (kind.family, kind.sock_type, kind.protocol) {
            (libc::AF_UNIX, ..) => Table::Unix,
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => {
                if v6 {
                    Table::Tcp6
                } else {
                    Table::Tcp
                }
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => {
                if v6 {
                    Table::Udp6
                } else {
                    Table::Udp
                }
            }
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE) => {
                if v6 {
                    Table::UdpLite6
                } else {
                    Table::UdpLite
                }
            }
            _ => Table::None,
        }
    }

    /// The file under `/proc/TID/net/` and the column of the inode.
    fn file(self) -> Option<(&'static str, usize)> {
        Some(match self {
            Table::Tcp => ("tcp", 9),
            Table::Tcp6 => ("tcp6", 9),
            Table::Udp => ("udp", 9),
            Table::Udp6 => ("udp6", 9),
            Table::UdpLite => ("udplite", 9),
            Table::UdpLite6 => ("udplite6", 9),
            Table::Unix => ("unix", 6),
            Table::None => return None,
        })
    }
}

/// One counted socket.
#[derive(Debug, Clone, Copy)]
struct Record {
    table: Table,
    /// Whether the table lists the socket while it is open. A TCP socket that is only bound
    /// is listed nowhere until it listens or connects.
    listed: bool,
}

#[derive(Debug, Default)]
struct LiveState {
    sockets: HashMap<u64, Record>,
    /// Calls that passed the check and are being performed.
    reserved: u64,
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

    /// Takes a place for a call of thread `tid`, or `None` when the sandbox is at the limit
    /// with sockets that are still open. `sock` is the socket of the call: one counted
    /// already (a datagram socket connected again) takes no new place.
    pub(crate) fn reserve(self: &Arc<Self>, tid: u32, sock: BorrowedFd<'_>) -> Option<Slot> {
        let mut state = self.lock();
        let again = inode(sock).is_some_and(|ino| state.sockets.contains_key(&ino));
        if !again && state.sockets.len() as u64 + state.reserved >= self.max {
            if self.max > 0 {
                prune(&mut state, tid);
            }
            if state.sockets.len() as u64 + state.reserved >= self.max {
                return None;
            }
        }
        state.reserved += 1;
        Some(Slot { live: self.clone() })
    }

    /// Marks a counted socket as one the kernel now lists (a bound TCP socket that listens
    /// or connects).
    pub(crate) fn listed(&self, sock: BorrowedFd<'_>) {
        if let Some(ino) = inode(sock) {
            if let Some(r) = self.lock().sockets.get_mut(&ino) {
                r.listed = true;
            }
        }
    }
}

impl Slot {
    /// Counts `sock`, on which the call succeeded. `listed`: whether the kernel lists it now
    /// (false for a TCP socket that was only bound).
    pub(crate) fn keep(self, sock: BorrowedFd<'_>, kind: SocketKind, listed: bool) {
        let table = Table::of(kind);
        let Some(ino) = inode(sock) else {
            return; // fstat of a socket we hold does not fail
        };
        self.live
            .lock()
            .sockets
            .insert(ino, Record { table, listed });
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

/// Forgets the recorded sockets the kernel no longer lists in the network namespace of
/// thread `tid`.
fn prune(state: &mut LiveState, tid: u32) {
    let mut tables: HashMap<Table, Option<HashSet<u64>>> = HashMap::new();
    for r in state.sockets.values() {
        if r.listed {
            if let Some((file, column)) = r.table.file() {
                tables
                    .entry(r.table)
                    .or_insert_with(|| read_inodes(tid, file, column));
            }
        }
    }
    state.sockets.retain(|ino, r| {
        if !r.listed {
            return true;
        }
        match tables.get(&r.table) {
            Some(Some(open)) => open.contains(ino),
            // Unreadable table, or none for this kind: keep (fail closed).
            _ => true,
        }
    });
}

/// The inodes a `/proc/TID/net/FILE` table lists (0, a socket no process holds, left out).
fn read_inodes(tid: u32, file: &str, column: usize) -> Option<HashSet<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/net/{file}")).ok()?;
    Some(inodes_in(&text, column))
}

fn inodes_in(text: &str, column: usize) -> HashSet<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(column)?.parse().ok())
        .filter(|&ino: &u64| ino != 0)
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
    fn inodes_are_read_from_their_column() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 06 00000000:00000000 03:00000F9B 00000000     0        0 0 3 0000000000000000\n";
        assert_eq!(inodes_in(tcp, 9), HashSet::from([12345]));
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 777 /run/x.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 778\n";
        assert_eq!(inodes_in(unix, 6), HashSet::from([777, 778]));
    }

    #[test]
    fn table_of_kind() {
        let k = |family, sock_type, protocol| SocketKind {
            family,
            sock_type,
            protocol,
        };
        assert_eq!(
            Table::of(k(libc::AF_INET, libc::SOCK_STREAM, 6)),
            Table::Tcp
        );
        assert_eq!(
            Table::of(k(libc::AF_INET6, libc::SOCK_DGRAM, 17)),
            Table::Udp6
        );
        assert_eq!(
            Table::of(k(libc::AF_UNIX, libc::SOCK_DGRAM, 0)),
            Table::Unix
        );
        assert_eq!(
            Table::of(k(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP)),
            Table::None
        );
    }
}
