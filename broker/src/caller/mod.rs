//! Who the caller is (invariant 3, no confused deputy): its ids, groups, capabilities, umask,
//! namespaces and process ids, read from `/proc/TID` while the caller is blocked in its call
//! and taken as the caller's only when the call still waits after the read ([`Notified`]);
//! and a way to run work on a thread that has taken that identity, so that the kernel checks
//! the caller's rights, not the broker's, and records the caller's ids (`SO_PEERCRED`, the
//! credentials a receiver with `SO_PASSCRED` sees, the owner and mode of a file it creates).
//!
//! Capabilities count only in the user namespace that holds them and the ones below it. The
//! thread that acts for a caller lives in the broker's user namespace, so a caller from
//! another user namespace (a rootless container, `unshare -U`) lends it none: its `CapEff`
//! there means nothing here. Its claims in `SCM_CREDENTIALS` are read in its own namespaces
//! and translated through its `uid_map` and `gid_map`, as the kernel's `scm_check_creds` does.

pub(crate) mod pidfds;
pub(crate) mod view;

use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::OnceLock;

use crate::ops::msg::Ucred;
use crate::sys::{self, Become, Identity};

/// A notified call whose caller is read. The notification names the caller by its thread id,
/// which the kernel may give to another task once the caller is gone (killed while it waits,
/// or replaced by a sibling's `execve`). A task that goes ends its call first, so a read of
/// `/proc/TID` describes the caller when the call was still waiting after the read
/// (`SECCOMP_IOCTL_NOTIF_ID_VALID`, invariant 4): every read here is followed by that check,
/// and fails with `ESRCH` when it fails.
pub(crate) trait Notified {
    /// The caller's thread id, as the notification gives it.
    fn tid(&self) -> u32;
    /// Whether the caller still waits in this very call.
    fn still_waiting(&self) -> bool;
}

/// `Ok(value)` read of `call`'s caller when the caller still waits: the thread id named it
/// throughout the read.
fn checked<T>(call: &(impl Notified + ?Sized), value: T) -> io::Result<T> {
    if call.still_waiting() {
        Ok(value)
    } else {
        Err(io::Error::from_raw_os_error(libc::ESRCH))
    }
}

/// A caller as `/proc/TID` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// What a thread takes to act as the caller; its capabilities are those that count in the
    /// broker's user namespace (none for a caller from another one).
    pub identity: Identity,
    /// Thread-group id in the broker's pid namespace.
    pub tgid: i32,
    /// Thread-group id in the caller's own pid namespace (the last `NStgid` entry).
    pub own_tgid: i32,
    /// `CapEff` as the caller holds it, in its own user namespace.
    pub own_caps: u64,
    /// Whether the caller's user namespace is the broker's.
    pub same_user_ns: bool,
    /// Whether the caller's pid namespace is the broker's.
    pub same_pid_ns: bool,
}

/// `CAP_SETGID`, `CAP_SETUID`, `CAP_SYS_ADMIN` as bits.
const CAP_SETGID: u64 = 1 << 6;
const CAP_SETUID: u64 = 1 << 7;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// The ids of one of the caller's maps (`uid_map`, `gid_map`): `(inside, outside, count)`
/// lines, outside as the broker's user namespace sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct IdMap(Vec<(u32, u32, u32)>);

impl IdMap {
    fn parse(text: &str) -> IdMap {
        let lines = text.lines().filter_map(|l| {
            let mut it = l.split_whitespace().map(str::parse::<u32>);
            Some((it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?))
        });
        IdMap(lines.collect())
    }

    /// The id `inside` names in the broker's user namespace, if it is mapped.
    fn outside(&self, inside: u32) -> Option<u32> {
        self.0.iter().find_map(|&(first, lower, count)| {
            let offset = inside.checked_sub(first)?;
            (offset < count)
                .then(|| lower.checked_add(offset))
                .flatten()
        })
    }
}

/// Which namespace a namespace link (`/proc/TID/ns/user`) names: its target, `user:[INODE]`
/// (reading the link is cheaper than a `stat` of it).
fn namespace(path: &str) -> io::Result<std::path::PathBuf> {
    fs::read_link(path)
}

/// The broker's own user namespace, which does not change.
fn own_user_namespace() -> io::Result<&'static std::path::Path> {
    static OWN: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    OWN.get_or_init(|| namespace("/proc/self/ns/user").ok())
        .as_deref()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

impl Caller {
    /// Reads the caller of `call`; `ESRCH` when it no longer waits in the call.
    pub(crate) fn read(call: &(impl Notified + ?Sized)) -> io::Result<Caller> {
        let tid = call.tid();
        let status = fs::read_to_string(format!("/proc/{tid}/status"))?;
        let mut caller = parse(&status).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        caller.same_user_ns = namespace(&format!("/proc/{tid}/ns/user"))? == own_user_namespace()?;
        if !caller.same_user_ns {
            caller.identity.cap_effective = 0;
            caller.identity.cap_permitted = 0;
        }
        checked(call, caller)
    }

    /// The kernel's `scm_check_creds` for this caller: the `SCM_CREDENTIALS` it claims, read in
    /// its own user and pid namespaces, as the broker's namespaces name them; `Err` is the
    /// kernel's errno. It may claim its own process id, any of its real, effective and saved
    /// user and group ids, or what the matching capability in its own user namespace allows
    /// (`CAP_SETUID`, `CAP_SETGID`: any id mapped there). Another process id needs
    /// `CAP_SYS_ADMIN` over the pid namespace; the broker passes such a claim on only for a
    /// caller of its own user and pid namespaces, where no translation is needed.
    pub(crate) fn claim(
        &self,
        call: &(impl Notified + ?Sized),
        claimed: Ucred,
    ) -> Result<Ucred, i32> {
        let (uid, gid) = if self.same_user_ns {
            (claimed.uid, claimed.gid)
        } else {
            let tid = call.tid();
            let map = |file: &str, id: u32| {
                fs::read_to_string(format!("/proc/{tid}/{file}"))
                    .map_err(|_| libc::ESRCH)
                    .map(|t| IdMap::parse(&t).outside(id))
            };
            let read = (map("uid_map", claimed.uid)?, map("gid_map", claimed.gid)?);
            match checked(call, read).map_err(|_| libc::ESRCH)? {
                (Some(u), Some(g)) => (u, g),
                _ => return Err(libc::EINVAL),
            }
        };
        self.check_claim(claimed.pid, uid, gid)
    }
}

/// The soft and hard `RLIMIT_NOFILE` of the caller's process (`Max open files` in
/// `/proc/TID/limits`, which anyone may read; `unlimited` is `u64::MAX`); `ESRCH` when the
/// caller no longer waits in `call`.
pub(crate) fn nofile_limit(call: &(impl Notified + ?Sized)) -> io::Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{}/limits", call.tid()))?;
    let limit = parse_nofile(&text).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    checked(call, limit)
}

fn parse_nofile(limits: &str) -> Option<(u64, u64)> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    let mut it = rest.split_whitespace().map(|v| match v {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    });
    Some((it.next()??, it.next()??))
}

impl Caller {
    /// [`Caller::claim`] once the ids are the broker's namespace's.
    fn check_claim(&self, pid: i32, uid: u32, gid: u32) -> Result<Ucred, i32> {
        // `(uid_t)-1` is no id at all (`make_kuid` gives an invalid one).
        if uid == u32::MAX || gid == u32::MAX {
            return Err(libc::EINVAL);
        }
        let caps = self.own_caps;
        let pid = if pid == self.own_tgid {
            Some(self.tgid)
        } else if self.same_pid_ns && self.same_user_ns && caps & CAP_SYS_ADMIN != 0 {
            Some(pid)
        } else {
            None
        };
        let uid_ok = self.identity.uids[..3].contains(&uid) || caps & CAP_SETUID != 0;
        let gid_ok = self.identity.gids[..3].contains(&gid) || caps & CAP_SETGID != 0;
        match pid {
            Some(pid) if uid_ok && gid_ok => Ok(Ucred { pid, uid, gid }),
            _ => Err(libc::EPERM),
        }
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
    let (mut eff, mut prm, mut tgid, mut own, mut umask) = (None, None, None, None, None);
    let mut nested = false;
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
            "NStgid" => {
                // One id per pid namespace from the broker's (this procfs's) down to the
                // caller's own: a single one means they are the same.
                let ids: Vec<&str> = rest.split_whitespace().collect();
                nested = ids.len() > 1;
                own = ids.last()?.parse().ok();
            }
            "Umask" => umask = u32::from_str_radix(rest.trim(), 8).ok(),
            _ => {}
        }
    }
    let tgid = tgid?;
    let cap_effective = eff?;
    Some(Caller {
        identity: Identity {
            uids: uids?,
            gids: gids?,
            groups,
            cap_effective,
            cap_permitted: prm?,
            umask,
        },
        tgid,
        own_tgid: own.unwrap_or(tgid),
        own_caps: cap_effective,
        same_user_ns: true,
        same_pid_ns: !nested,
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
    as_caller_in(None, who, how, work)
}

/// [`as_caller`], in the network namespace `netns` when one is given (the caller's, where it
/// is not the broker's): the thread enters it first, while it still holds the broker's
/// `CAP_SYS_ADMIN`, which `setns` wants, then takes `who`'s identity. What the work makes, a
/// socket, is made in that namespace.
pub(crate) fn as_caller_in<T: Send>(
    netns: Option<BorrowedFd<'_>>,
    who: &Identity,
    how: Become,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    on_thread(netns, None, who, how, work)
}

/// The caller's root and working directory, for a thread that names paths as the caller.
pub(crate) struct Directories<'a> {
    /// An `O_PATH` descriptor of `/proc/TID/root`.
    pub root: BorrowedFd<'a>,
    /// An `O_PATH` descriptor of `/proc/TID/cwd`.
    pub cwd: BorrowedFd<'a>,
    /// Whether the thread must change its root (the caller's is not the broker's); this needs
    /// `CAP_SYS_CHROOT`, which the thread then drops with the rest of the broker's identity.
    pub chroot: bool,
}

/// [`as_caller`] on a thread that first takes the caller's root and working directory (while
/// it still holds the broker's capabilities), so that a path the work names is resolved by
/// the kernel as the caller's own call would resolve it.
pub(crate) fn as_caller_at<T: Send>(
    who: &Identity,
    how: Become,
    dirs: &Directories<'_>,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    on_thread(None, Some(dirs), who, how, work)
}

/// [`as_caller`] on a thread that first runs `enter` (while it still holds the broker's
/// capabilities: it places the thread in the file system, `sys::enter_scaffold` say); when
/// `enter` fails, the work does not run and its error is returned.
pub(crate) fn as_caller_placed<T: Send>(
    who: &Identity,
    how: Become,
    enter: impl FnOnce() -> io::Result<()> + Send,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new().spawn_scoped(s, || {
            enter()?;
            sys::become_caller(who, how)?;
            Ok(work())
        })?;
        spawned
            .join()
            .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(libc::EPERM)))
    })
}

fn on_thread<T: Send>(
    netns: Option<BorrowedFd<'_>>,
    dirs: Option<&Directories<'_>>,
    who: &Identity,
    how: Become,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        // A thread that cannot be made (EAGAIN: the broker's tasks or memory are exhausted)
        // is an error for this call, never a panic that leaves it unanswered.
        let spawned = std::thread::Builder::new().spawn_scoped(s, || {
            if let Some(netns) = netns {
                sys::enter_network_namespace(netns)?;
            }
            if let Some(d) = dirs {
                sys::enter_directories(d.root, d.cwd, d.chroot)?;
            }
            sys::become_caller(who, how)?;
            Ok(work())
        })?;
        spawned
            .join()
            .unwrap_or_else(|_| Err(io::Error::from_raw_os_error(libc::EPERM)))
    })
}

/// [`as_caller`] for the caller of `call`, whose identity is read first ([`Caller::read`]).
pub(crate) fn as_thread<T: Send>(
    call: &(impl Notified + ?Sized),
    how: Become,
    work: impl FnOnce() -> T + Send,
) -> io::Result<T> {
    let who = Caller::read(call)?;
    as_caller(&who.identity, how, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tx\nTgid:\t4242\nNgid:\t0\nPid:\t4243\nNStgid:\t4242\t7\n\
        Uid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t4 24 27 \n\
        Umask:\t0077\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000c0\nCapEff:\t0000000000000080\n";

    #[test]
    fn status_fields() {
        let c = parse(STATUS).unwrap();
        assert_eq!(c.tgid, 4242);
        assert_eq!(c.own_tgid, 7);
        assert!(!c.same_pid_ns, "NStgid names two pid namespaces");
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
        assert_eq!(c.identity.umask, Some(0o077));
        c.same_pid_ns = true;
        c.own_caps = 0;
        let ok = |pid, uid, gid| Ok(Ucred { pid, uid, gid });
        assert_eq!(c.check_claim(7, 1001, 22), ok(4242, 1001, 22));
        assert_eq!(
            c.check_claim(4242, 1001, 22),
            Err(libc::EPERM),
            "the broker's view of the pid"
        );
        assert_eq!(c.check_claim(7, 0, 22), Err(libc::EPERM));
        assert_eq!(c.check_claim(7, 1000, 0), Err(libc::EPERM));
        assert_eq!(c.check_claim(7, u32::MAX, 22), Err(libc::EINVAL));
        c.own_caps = CAP_SETUID;
        assert_eq!(c.check_claim(7, 0, 22), ok(4242, 0, 22));
        assert_eq!(c.check_claim(1, 0, 22), Err(libc::EPERM));
        c.own_caps = CAP_SYS_ADMIN;
        assert_eq!(c.check_claim(1, 1000, 20), ok(1, 1000, 20));
        // Another pid namespace: its pids mean nothing here.
        c.same_pid_ns = false;
        assert_eq!(c.check_claim(1, 1000, 20), Err(libc::EPERM));
    }

    /// A call of this very thread, waiting or not.
    struct Own(bool);

    impl Notified for Own {
        fn tid(&self) -> u32 {
            sys::gettid() as u32
        }
        fn still_waiting(&self) -> bool {
            self.0
        }
    }

    /// Invariant 4 for identities: what `/proc/TID` says is the caller's only if the call
    /// still waits after it was read. A call that no longer waits (its thread id may name
    /// another task by now) lends no identity, no claim, no limit, and no work runs as it.
    #[test]
    fn an_identity_is_the_callers_only_while_its_call_waits() {
        let me = Caller::read(&Own(true)).expect("own status");
        assert_eq!(me.identity.uids[0], sys::real_ids().0);
        assert_eq!(me.tgid, std::process::id() as i32);
        let gone = |e: io::Error| e.raw_os_error();
        assert_eq!(
            Caller::read(&Own(false)).map_err(gone),
            Err(Some(libc::ESRCH))
        );
        assert!(nofile_limit(&Own(true)).is_ok());
        assert_eq!(
            nofile_limit(&Own(false)).map_err(gone),
            Err(Some(libc::ESRCH))
        );
        let ran = std::sync::atomic::AtomicBool::new(false);
        let out = as_thread(&Own(false), Become::Filesystem, || {
            ran.store(true, std::sync::atomic::Ordering::Relaxed)
        });
        assert_eq!(out.map_err(gone), Err(Some(libc::ESRCH)));
        assert!(!ran.load(std::sync::atomic::Ordering::Relaxed));
        // A caller of another user namespace: its maps are read, then the call checked.
        let mut other = me.clone();
        other.same_user_ns = false;
        let claim = Ucred {
            pid: other.own_tgid,
            uid: 0,
            gid: 0,
        };
        assert_eq!(other.claim(&Own(false), claim), Err(libc::ESRCH));
        assert_ne!(other.claim(&Own(true), claim), Err(libc::ESRCH));
    }

    #[test]
    fn open_files_limit() {
        let text =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63432                63432                processes \n\
            Max open files            32                   unlimited            files     \n";
        assert_eq!(parse_nofile(text), Some((32, u64::MAX)));
        assert_eq!(parse_nofile("Max open files  x 1 files\n"), None);
    }

    #[test]
    fn id_maps_translate_inside_ids() {
        let map = IdMap::parse("         0     100000      65536\n  65536  1000  1\n");
        assert_eq!(map.outside(0), Some(100_000));
        assert_eq!(map.outside(65_535), Some(165_535));
        assert_eq!(map.outside(65_536), Some(1000));
        assert_eq!(map.outside(65_537), None);
        assert_eq!(IdMap::parse("0 4294967295 2\n").outside(1), None);
    }
}
