//! Who the caller is (invariant 3, no confused deputy): its ids, groups, capabilities and
//! process ids, read from `/proc/TID/status` while the caller is blocked in its call; and a
//! way to run work on a thread that has taken that identity, so that the kernel checks the
//! caller's rights, not the broker's, and records the caller's ids (`SO_PEERCRED`, the
//! credentials a receiver with `SO_PASSCRED` sees).

use std::fs;
use std::io;

use crate::sys::{self, Become, Identity};

/// A caller as `/proc/TID/status` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub identity: Identity,
    /// Thread-group id in the broker's pid namespace.
    pub tgid: i32,
    /// Thread-group id in the caller's own pid namespace (the last `NStgid` entry).
    pub own_tgid: i32,
}

/// `CAP_SETGID`, `CAP_SETUID`, `CAP_SYS_ADMIN` as bits.
const CAP_SETGID: u64 = 1 << 6;
const CAP_SETUID: u64 = 1 << 7;
const CAP_SYS_ADMIN: u64 = 1 << 21;

impl Caller {
    /// Reads the caller `tid`.
    pub fn read(tid: u32) -> io::Result<Caller> {
        let status = fs::read_to_string(format!("/proc/{tid}/status"))?;
        parse(&status).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
    }

    /// The kernel's `scm_check_creds` for this caller: may it claim `claimed` in an
    /// `SCM_CREDENTIALS` message? Its own process id (as it sees it), any of its user and
    /// group ids, or anything the matching capability allows.
    pub fn may_claim(&self, pid: i32, uid: u32, gid: u32) -> bool {
        let caps = self.identity.cap_effective;
        let pid_ok = pid == self.own_tgid || caps & CAP_SYS_ADMIN != 0;
        let uid_ok = self.identity.uids[..3].contains(&uid) || caps & CAP_SETUID != 0;
        let gid_ok = self.identity.gids[..3].contains(&gid) || caps & CAP_SETGID != 0;
        pid_ok && uid_ok && gid_ok
    }
}

fn ids(rest: &str) -> Option<[u32; 4]> {
    let mut it = rest.split_whitespace().map(str::parse::<u32>);
    Some([
        it.next()?.ok()?,
        it.next()?.ok()?,
        it.next()?.ok()?,
        it.next()?.ok()?,
    ])
}

fn parse(status: &str) -> Option<Caller> {
    let (mut uids, mut gids, mut groups) = (None, None, Vec::new());
    let (mut eff, mut prm, mut tgid, mut own) = (None, None, None, None);
    for line in status.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        match key {
            "Uid" => uids = ids(rest),
            "Gid" => gids = ids(rest),
            "Groups" => {
                groups = rest
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?
            }
            "CapEff" => eff = u64::from_str_radix(rest.trim(), 16).ok(),
            "CapPrm" => prm = u64::from_str_radix(rest.trim(), 16).ok(),
            "Tgid" => tgid = rest.trim().parse().ok(),
            "NStgid" => own = rest.split_whitespace().last()?.parse().ok(),
            _ => {}
        }
    }
    let tgid = tgid?;
    Some(Caller {
        identity: Identity {
            uids: uids?,
            gids: gids?,
            groups,
            cap_effective: eff?,
            cap_permitted: prm?,
        },
        tgid,
        own_tgid: own.unwrap_or(tgid),
    })
}

/// Runs `work` on a thread of its own that has taken `who`'s identity as `how` says; the
/// thread exits afterwards, so the broker's other threads keep theirs. When the identity
/// cannot be taken the work does not run and the error is returned.
pub(crate) fn as_caller<T: Send>(
    who: &Identity,
    how: Become,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        // A thread that cannot be made (EAGAIN: the broker's tasks or memory are exhausted)
        // is an error for this call, never a panic that leaves it unanswered.
        let spawned = std::thread::Builder::new().spawn_scoped(s, || {
            sys::become_caller(who, how)?;
            Ok(work())
        })?;
        spawned
            .join()
            .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(libc::EPERM)))
    })
}

/// [`as_caller`] for the caller `tid`, whose identity is read first.
pub(crate) fn as_thread<T: Send>(
    tid: u32,
    how: Become,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    let who = Caller::read(tid)?;
    as_caller(&who.identity, how, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nTgid:\t4242\nNgid:\t0\nPid:\t4243\nNStgid:\t4242\t7\n\
        Uid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t4 24 27 \n\
        CapInh:\t0000000000000000\nCapPrm:\t00000000000000c0\nCapEff:\t0000000000000080\n";

    #[test]
    fn status_fields() {
        let c = parse(STATUS).unwrap();
        assert_eq!(c.tgid, 4242);
        assert_eq!(c.own_tgid, 7);
        assert_eq!(c.identity.uids, [1000, 1001, 1002, 1003]);
        assert_eq!(c.identity.gids, [20, 21, 22, 23]);
        assert_eq!(c.identity.groups, vec![4, 24, 27]);
        assert_eq!(c.identity.cap_permitted, 0xc0);
        assert_eq!(c.identity.cap_effective, 0x80);
        assert_eq!(parse("Uid:\t1\n"), None);
    }

    #[test]
    fn claims_follow_the_kernels_rule() {
        let mut c = parse(STATUS).unwrap();
        c.identity.cap_effective = 0;
        assert!(c.may_claim(7, 1001, 22));
        assert!(!c.may_claim(4242, 1001, 22), "the broker's view of the pid");
        assert!(!c.may_claim(7, 0, 22));
        assert!(!c.may_claim(7, 1000, 0));
        c.identity.cap_effective = CAP_SETUID;
        assert!(c.may_claim(7, 0, 22));
        assert!(!c.may_claim(1, 0, 22));
    }
}
