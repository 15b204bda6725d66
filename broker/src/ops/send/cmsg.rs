//! The control messages of a send: which pass as they are, which the broker reads as the
//! protocol would (`IP_PKTINFO`, credentials), and descriptors passed with `SCM_RIGHTS`.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::bounds::reaper::CallerFd;
use crate::bounds::{self, Taken};
use crate::call::Call;
use crate::caller::{nofile_limit, Caller};
use crate::ops::address::{self};
use crate::ops::msg::{self, Cmsg, CmsgReader};
use crate::reply::errno_of;
use crate::sys::{self, SocketKind};

/// Source- and route-choosing control messages (see the module documentation).
pub(super) const SOURCE_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_PKTINFO),
    (libc::SOL_IP, msg::IP_RETOPTS),
    (libc::SOL_IPV6, libc::IPV6_PKTINFO),
    (libc::SOL_IPV6, libc::IPV6_2292PKTINFO),
    (libc::SOL_IPV6, libc::IPV6_RTHDR),
    (libc::SOL_IPV6, libc::IPV6_2292RTHDR),
    (libc::SOL_IPV6, libc::IPV6_HOPOPTS),
    (libc::SOL_IPV6, libc::IPV6_2292HOPOPTS),
    (libc::SOL_IPV6, libc::IPV6_DSTOPTS),
    (libc::SOL_IPV6, libc::IPV6_2292DSTOPTS),
    (libc::SOL_IPV6, libc::IPV6_RTHDRDSTOPTS),
];

/// Control messages that change nothing about where a message goes or who sent it. (The
/// kernel checks their values when it sends them.)
const HARMLESS_CMSGS: &[(i32, i32)] = &[
    (libc::SOL_IP, libc::IP_TTL),
    (libc::SOL_IP, libc::IP_TOS),
    (libc::SOL_IP, msg::IP_PROTOCOL),
    (libc::SOL_IPV6, libc::IPV6_HOPLIMIT),
    (libc::SOL_IPV6, msg::IPV6_2292HOPLIMIT),
    (libc::SOL_IPV6, libc::IPV6_TCLASS),
    (libc::SOL_IPV6, libc::IPV6_DONTFRAG),
    (msg::SOL_UDP, msg::UDP_SEGMENT),
    (libc::SOL_SOCKET, msg::SO_TIMESTAMPING_OLD),
    (libc::SOL_SOCKET, msg::SO_TIMESTAMPING_NEW),
    (libc::SOL_SOCKET, msg::SCM_TS_OPT_ID),
    (libc::SOL_SOCKET, libc::SCM_TXTIME),
];

/// `TC_PRIO_INTERACTIVE`: the highest `SO_PRIORITY` a sender may set without `CAP_NET_ADMIN`
/// or `CAP_NET_RAW` (`sk_set_prio_allowed`).
const UNPRIVILEGED_PRIORITY: u32 = 6;

/// Whether a control message asks the kernel for something only a capability grants: an
/// `SO_PRIORITY` above [`UNPRIVILEGED_PRIORITY`]. Such a message is passed on and sent on a
/// thread with the caller's capabilities, so that the kernel grants or refuses it (`EPERM`)
/// as the caller's own send.
pub(super) fn wants_capability(c: &Cmsg) -> bool {
    if (c.level, c.kind) != (libc::SOL_SOCKET, libc::SO_PRIORITY) {
        return false;
    }
    let value = c
        .data
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match value {
        Some(p) => p > UNPRIVILEGED_PRIORITY,
        None => true,
    }
}

/// Which kernel code reads the control messages of a send on an IP socket: TCP's, or UDP's
/// for the destination's family (`dest_v6`; `None`: the socket's peer, read from it). `None`
/// for another protocol.
pub(super) fn ip_reader(
    sock: BorrowedFd<'_>,
    kind: SocketKind,
    dest_v6: Option<bool>,
) -> Option<CmsgReader> {
    if !matches!(kind.family, libc::AF_INET | libc::AF_INET6) {
        return None;
    }
    let v6_socket = kind.family == libc::AF_INET6;
    if address::is_udp(kind) {
        let v6_dest = dest_v6.unwrap_or_else(|| {
            v6_socket
                && !sys::peername(sock)
                    .ok()
                    .and_then(|p| address::local_address(&p))
                    .is_some_and(|p| match p.ip() {
                        std::net::IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
                        std::net::IpAddr::V4(_) => true,
                    })
        });
        return Some(if v6_dest {
            CmsgReader::Udp6
        } else {
            CmsgReader::Udp4 { v6_socket }
        });
    }
    let tcp = kind.sock_type == libc::SOCK_STREAM && matches!(kind.protocol, 0 | libc::IPPROTO_TCP);
    tcp.then_some(CmsgReader::Tcp)
}

/// The control messages the kernel's code `reader` takes, or `EINVAL` where it refuses them
/// (`msg::kernel_reads`); what it takes then goes through the broker's own rules
/// ([`control`]).
pub(super) fn ip_control(
    reader: CmsgReader,
    control: &Result<Vec<Cmsg>, i32>,
) -> Result<Vec<Cmsg>, i32> {
    if matches!(control, Ok(list) if list.is_empty()) {
        return Ok(Vec::new());
    }
    msg::kernel_reads(reader, control)
}

/// A unix socket's control messages as `__scm_send` takes them, before it looks at the
/// destination, in order: a malformed buffer or a `SOL_SOCKET` type other than
/// `SCM_RIGHTS` and `SCM_CREDENTIALS` is `EINVAL`; the descriptors of `SCM_RIGHTS` blocks are
/// counted (`EINVAL` past `SCM_MAX_FD` in all; a block without a whole descriptor is
/// skipped) and each must be open in the caller (`EBADF`); `SCM_CREDENTIALS` must be a
/// `ucred` (`EINVAL`) that the caller may claim (`EPERM`, `ESRCH`). Other levels are
/// skipped. Returns what is left to send; the policy's say and the copies come later
/// ([`control`]).
pub(super) fn unix_control(
    call: &Call,
    control: &Result<Vec<Cmsg>, i32>,
) -> Result<Vec<Cmsg>, (i32, &'static str)> {
    let list = msg::kernel_reads(CmsgReader::Unix, control).map_err(|e| (e, "bad-control"))?;
    let mut out = Vec::with_capacity(list.len());
    let mut total = 0;
    let mut caller: Option<Caller> = None;
    for c in list {
        if c.kind == libc::SCM_RIGHTS {
            let fds = msg::rights(&c.data).map_err(|e| (e, "bad-control"))?;
            if fds.is_empty() {
                continue;
            }
            if total + fds.len() > msg::SCM_MAX_FD {
                return Err((libc::EINVAL, "too-many-fds"));
            }
            total += fds.len();
            for &fd in &fds {
                if fd < 0 {
                    return Err((libc::EBADF, "bad-control"));
                }
                // Open in the caller: the copy goes at once (the one sent is taken later).
                drop(call.take_fd(fd)?);
            }
            out.push(Cmsg {
                data: c.data[..fds.len() * 4].to_vec(),
                ..c
            });
        } else {
            let claimed = msg::ucred(&c.data).map_err(|e| (e, "bad-control"))?;
            caller_of(call, &mut caller)?
                .claim(call, claimed)
                .map_err(|errno| (errno, "credentials"))?;
            out.push(c);
        }
    }
    Ok(out)
}

/// The broker's copies of the descriptors one message passes, and their place under the
/// bounds of `bounds/mod.rs`; both go when the message has been sent.
#[derive(Default)]
pub(super) struct Passed {
    fds: Vec<CallerFd>,
    place: Option<Taken>,
}

/// How many descriptors the kernel takes from `given` before it refuses the message: the
/// `SCM_RIGHTS` messages in order, up to the one that would bring the message past
/// [`msg::SCM_MAX_FD`] in all (`EINVAL` there).
fn passed_count(given: &[Cmsg]) -> usize {
    let mut total = 0;
    for c in given {
        if (c.level, c.kind) != (libc::SOL_SOCKET, libc::SCM_RIGHTS) {
            continue;
        }
        let n = c.data.len() / 4;
        if total + n > msg::SCM_MAX_FD {
            break;
        }
        total += n;
    }
    total
}

/// The control messages the broker sends: checked against the policy, `SCM_RIGHTS`
/// translated to the broker's copies of the caller's descriptors (kept alive in `held`),
/// `SCM_CREDENTIALS` checked against the caller, and on a unix socket the caller's own
/// credentials attached when it gave none.
///
/// Descriptors are counted per message, as the kernel counts them (`SCM_MAX_FD` in all,
/// `EINVAL` past it), and their place under the sandbox's and the broker's bounds is taken
/// before the first is copied (`ETOOMANYREFS` without one).
pub(super) fn control(
    call: &Call,
    kind: SocketKind,
    given: &[Cmsg],
    held: &mut Passed,
) -> Result<Vec<u8>, (i32, &'static str)> {
    let confine = call.policy.confinement();
    let unix = kind.family == libc::AF_UNIX;
    let mut out = Vec::with_capacity(given.len() + 1);
    let mut caller: Option<Caller> = None;
    let mut creds_given = false;
    let mut passed = 0;
    let mut rights_given = Vec::new();
    for c in given {
        match (c.level, c.kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                if !confine.scm_rights() {
                    return Err((libc::EPERM, "scm-rights"));
                }
                let rights = copy_rights(call, given, c, &mut passed, held)?;
                rights_given.push(rights.clone());
                out.push(rights);
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                let claimed = msg::ucred(&c.data).map_err(|e| (e, "bad-control"))?;
                let who = caller_of(call, &mut caller)?;
                // Checked and translated as the kernel would for the caller, in its own user
                // and pid namespaces; the broker sends what they name in its own.
                let named = who
                    .claim(call, claimed)
                    .map_err(|errno| (errno, "credentials"))?;
                creds_given = true;
                out.push(Cmsg {
                    level: c.level,
                    kind: c.kind,
                    data: msg::encode_ucred(named),
                });
            }
            key if SOURCE_CMSGS.contains(&key) => {
                if !confine.source_cmsgs() {
                    return Err((libc::EPERM, "source-cmsg"));
                }
                out.push(c.clone());
            }
            key if HARMLESS_CMSGS.contains(&key) => out.push(c.clone()),
            // Granted or refused by the kernel as the caller's own (`wants_capability`).
            (libc::SOL_SOCKET, libc::SO_PRIORITY) => out.push(c.clone()),
            _ => return Err((libc::EPERM, "cmsg")),
        }
    }
    if unix && !rights_given.is_empty() {
        // Descriptors in flight are limited as the caller's: its user's count against its
        // own RLIMIT_NOFILE, unless it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (the send
        // itself, on a thread with the caller's real user id, is charged to that user).
        let who = caller_of(call, &mut caller)?;
        let nofile = nofile_limit(call).map_err(|e| (errno_of(&e), "in-flight"))?;
        sys::rights_within_limit(&who.identity, nofile, &msg::encode_cmsgs(&rights_given))
            .map_err(|e| (errno_of(&e), "in-flight"))?;
    }
    if unix && !creds_given {
        if let Some(credentials) = callers_credentials(call, kind, &mut caller)? {
            out.push(credentials);
        }
    }
    Ok(msg::encode_cmsgs(&out))
}

/// An `SCM_RIGHTS` message `c` of `given`, with the broker's copies of the caller's
/// descriptors in place of the caller's numbers (the copies kept in `held`). Counted as
/// `scm_fp_copy` counts them: `passed` descriptors in the message so far, `EINVAL` past
/// `SCM_MAX_FD`. The message's place under the sandbox's and the broker's bounds is taken
/// before the first copy (`ETOOMANYREFS` without one); a descriptor not open in the caller is
/// `EBADF`, and one the broker has no descriptor of its own for is refused by its bound on
/// descriptors (`EAGAIN`).
fn copy_rights(
    call: &Call,
    given: &[Cmsg],
    c: &Cmsg,
    passed: &mut usize,
    held: &mut Passed,
) -> Result<Cmsg, (i32, &'static str)> {
    let fds = msg::rights(&c.data).map_err(|e| (e, "bad-control"))?;
    if *passed + fds.len() > msg::SCM_MAX_FD {
        return Err((libc::EINVAL, "too-many-fds"));
    }
    *passed += fds.len();
    if held.place.is_none() {
        let n = passed_count(given);
        let place = call.sandbox.descriptors.take(n, Duration::ZERO);
        held.place =
            Some(place.map_err(|_| (bounds::DESCRIPTORS_ERRNO, bounds::RULE_DESCRIPTORS))?);
    }
    let mut data = Vec::with_capacity(fds.len() * 4);
    for fd in fds {
        let copy =
            sys::pidfd_getfd(call.pidfd.as_fd(), fd).map_err(|e| match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => (bounds::FDS_ERRNO, bounds::RULE_FDS),
                _ => (libc::EBADF, "bad-control"),
            })?;
        data.extend_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&copy).to_ne_bytes());
        held.fds.push(call.copied(copy));
    }
    Ok(Cmsg {
        level: c.level,
        kind: c.kind,
        data,
    })
}

/// The caller's own credentials, for a unix send that gives none: an `SCM_CREDENTIALS`
/// message naming the caller, which the broker attaches so that a receiver that asks sees
/// the caller. `None` where the broker cannot attach them (no `CAP_SYS_ADMIN`) and the
/// message may go as it is; refused where it may not.
fn callers_credentials(
    call: &Call,
    kind: SocketKind,
    caller: &mut Option<Caller>,
) -> Result<Option<Cmsg>, (i32, &'static str)> {
    if !sys::may_forge_credentials() {
        // The kernel would attach the broker's own process id (and, for another user,
        // its ids) for a receiver that asks. A datagram receiver takes each message's
        // credentials as its sender's identity (sd_notify, journald): refused. On a
        // connection the peer was told the broker's pid already when it connected
        // (`SO_PEERCRED`), so a message with the caller's own ids is sent as it is.
        let who = caller_of(call, caller)?;
        let same_ids = (who.identity.uids[0], who.identity.gids[0]) == sys::real_ids();
        if kind.sock_type == libc::SOCK_DGRAM || !same_ids {
            return Err((libc::EPERM, "credentials-unforgeable"));
        }
        return Ok(None);
    }
    let who = caller_of(call, caller)?;
    Ok(Some(Cmsg {
        level: libc::SOL_SOCKET,
        kind: libc::SCM_CREDENTIALS,
        data: msg::encode_ucred(msg::Ucred {
            pid: who.tgid,
            uid: who.identity.uids[0],
            gid: who.identity.gids[0],
        }),
    }))
}

fn caller_of<'a>(
    call: &Call,
    cache: &'a mut Option<Caller>,
) -> Result<&'a Caller, (i32, &'static str)> {
    if cache.is_none() {
        let c = Caller::read(call).map_err(|e| (errno_of(&e), "no-identity"))?;
        *cache = Some(c);
    }
    cache.as_ref().ok_or((libc::ESRCH, "no-identity"))
}
