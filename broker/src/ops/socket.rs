//! `socket(family, type, protocol)` and `socketpair(family, type, protocol, sv)`, the few that
//! reach the broker. The filter lets every socket the policy's `[sockets]` list allows be made
//! in the kernel (invariant 5) and sends the broker two kinds only:
//!
//! - a call the list refuses: answered with the policy's errno
//!   ([`netjail_policy::Policy::socket_refusal`]: `[sockets] refuse` for an unlisted family,
//!   `EPERM` for an unlisted type or protocol), so that the refusal is in the audit (op
//!   `socket`, the endpoint in the list's words, `inet6:dgram:udplite`, rule `sockets`);
//! - a netlink route socket the list allows: made here, as the caller but with no capability,
//!   in the caller's network namespace, and installed in the caller with
//!   `SECCOMP_IOCTL_NOTIF_ADDFD`, which answers the call with its number. The kernel checks
//!   the capabilities of the task that made a netlink socket for every message that would
//!   change the system and is sent on it without a destination, so whatever the sandbox
//!   holds, such a socket reads and never changes (rule N1, `ops/netlink.rs`).
//!
//! Both are rare (a program probing for a family, `getifaddrs`), so the round trip costs
//! little; a sandbox that loops on them meets the receiver's pace and its
//! `max_calls_per_second` like any other caller (a refused `socket()` past the limit still
//! gets its errno: the answer needs no work).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use netjail_policy::{describe_socket, Decision, Policy, SocketCall, Verdict, SOCK_TYPE_MASK};

use crate::bounds;
use crate::call::{Call, Step};
use crate::caller::{as_caller_in, Caller};
use crate::ops::decode::{self, Syscall};
use crate::reply::{errno_of, Outcome, Reply};
use crate::sys::{self, Become, RawNotification};

/// The audit rule of every decision made here.
pub(crate) const RULE: &str = "sockets";

/// Decides one notified `socket()`.
pub(crate) fn decide_socket(call: &Call) -> Step {
    Step::Done(decide(call, SocketCall::Socket))
}

/// Decides one notified `socketpair()`.
pub(crate) fn decide_socketpair(call: &Call) -> Step {
    Step::Done(decide(call, SocketCall::Pair))
}

fn decide(call: &Call, which: SocketCall) -> Outcome {
    let [family, sock_type, protocol, ..] = call.notif.args;
    let mut out = Outcome::new(match which {
        SocketCall::Socket => "socket",
        SocketCall::Pair => "socketpair",
    });
    out.endpoint = describe_socket(family, sock_type, protocol);
    if let Some(errno) = call
        .policy
        .socket_refusal(which, family, sock_type, protocol)
    {
        return out.decided(Some(refusal(errno, RULE)), "", Reply::Errno(errno));
    }
    if which == SocketCall::Socket && is_route(family, sock_type, protocol) {
        return make_route_socket(call, out, sock_type as i32);
    }
    // Never: the filter sends nothing else the list allows. Fail closed.
    let rule = "sockets.unexpected";
    out.decided(
        Some(refusal(libc::EPERM, rule)),
        "",
        Reply::Errno(libc::EPERM),
    )
}

/// The errno a `socket()` or `socketpair()` refused by `policy` gets: `None` for any other
/// call, and for a socket the broker would make. For a call past `max_calls_per_second`,
/// which gets this answer instead of `EAGAIN` when there is one.
pub(crate) fn refusal_of(policy: &Policy, notif: RawNotification) -> Option<i32> {
    let which = match decode::syscall(notif.arch, notif.nr)? {
        Syscall::Socket => SocketCall::Socket,
        Syscall::SocketPair => SocketCall::Pair,
        _ => return None,
    };
    let [family, sock_type, protocol, ..] = notif.args;
    policy.socket_refusal(which, family, sock_type, protocol)
}

/// `socket(AF_NETLINK, SOCK_RAW or SOCK_DGRAM, NETLINK_ROUTE)` as the filter matches it: the
/// family exactly, the type by its low four bits, the protocol on its 32 bits (the kernel's
/// `int`).
fn is_route(family: u64, sock_type: u64, protocol: u64) -> bool {
    family == libc::AF_NETLINK as u64
        && [libc::SOCK_RAW as u64, libc::SOCK_DGRAM as u64].contains(&(sock_type & SOCK_TYPE_MASK))
        && protocol & 0xffff_ffff == libc::NETLINK_ROUTE as u64
}

fn refusal(errno: i32, rule: &str) -> Decision {
    Decision {
        verdict: Verdict::Deny { errno },
        rule: rule.to_owned(),
        host: None,
    }
}

/// Makes the route socket in the caller's network namespace on a thread with the caller's
/// ids and no capability, and installs it in the caller, which the kernel answers with its
/// descriptor. `sock_type` carries the caller's `SOCK_NONBLOCK` and `SOCK_CLOEXEC` (and
/// anything else it passed, which the kernel refuses with `EINVAL` as it would have).
fn make_route_socket(call: &Call, out: Outcome, sock_type: i32) -> Outcome {
    let allowed = || Decision {
        verdict: Verdict::Allow,
        rule: RULE.to_owned(),
        host: None,
    };
    let netns = match std::fs::File::open(format!("/proc/{}/ns/net", call.notif.pid)) {
        Ok(f) => f,
        Err(e) => return out.failed(errno_of(&e), "no-netns"),
    };
    let who = match Caller::read(call) {
        Ok(c) => c,
        Err(e) => return out.failed(errno_of(&e), "identity"),
    };
    // Invariant 4: the namespace and the identity just read are the caller's, which still
    // waits (neither changes while it does: only a task itself enters a namespace or sets
    // its own ids and capabilities).
    if !call.still_valid() {
        return out.gone();
    }
    let foreign = match (
        netns.metadata(),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) {
        (Ok(theirs), Ok(ours)) => (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
        (Err(e), _) | (_, Err(e)) => return out.failed(errno_of(&e), "no-netns"),
    };
    let netns = OwnedFd::from(netns);
    let made = as_caller_in(
        foreign.then(|| netns.as_fd()),
        &who.identity,
        Become::Full,
        || {
            sys::drop_all_capabilities()?;
            sys::socket_raw(libc::AF_NETLINK, sock_type, libc::NETLINK_ROUTE)
        },
    )
    .and_then(|made| made);
    let sock = match made {
        Ok(s) => s,
        // The broker has no descriptor to spare: not the caller's fault, and temporary.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            let reply = Reply::Errno(bounds::FDS_ERRNO);
            return out.decided(
                Some(refusal(bounds::FDS_ERRNO, bounds::RULE_FDS)),
                "",
                reply,
            );
        }
        Err(e) => return out.decided(Some(allowed()), "", Reply::Errno(errno_of(&e))),
    };
    let cloexec = sock_type & libc::SOCK_CLOEXEC != 0;
    let listener = call.sandbox.listener.as_fd();
    // The program is read while the caller still waits: the answer below releases it.
    call.read_exe();
    match sys::notif_addfd_send(listener, call.notif.id, sock.as_fd(), cloexec) {
        Ok(fd) => out.decided(Some(allowed()), "", Reply::Answered(i64::from(fd))),
        // The caller's own limit (EMFILE), as its own socket() would have met it; or the
        // caller is gone.
        Err(e) => out.decided(Some(allowed()), "", Reply::Errno(errno_of(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_sockets_as_the_filter_matches_them() {
        let (netlink, raw, dgram) = (16u64, 3u64, 2u64);
        assert!(is_route(netlink, raw, 0));
        assert!(is_route(netlink, dgram | 0x80800, 0));
        assert!(is_route(netlink, raw, 1 << 32), "the kernel reads an int");
        assert!(!is_route(netlink, 1, 0));
        assert!(!is_route(netlink, raw, 9));
        assert!(!is_route(1 << 32 | 16, raw, 0));
    }

    #[test]
    fn refusals_of_unread_calls() {
        let p = Policy::from_toml(netjail_policy::builtin("jail").unwrap(), "jail").unwrap();
        let notif = |nr: i32, args: [u64; 3]| RawNotification {
            id: 1,
            pid: 1,
            nr,
            arch: decode::AUDIT_ARCH_X86_64,
            args: [args[0], args[1], args[2], 0, 0, 0],
        };
        assert_eq!(
            refusal_of(&p, notif(41, [17, 3, 768])),
            Some(libc::EAFNOSUPPORT)
        );
        assert_eq!(refusal_of(&p, notif(53, [10, 1, 0])), None, "listed");
        assert_eq!(refusal_of(&p, notif(41, [2, 3, 1])), Some(libc::EPERM));
        assert_eq!(refusal_of(&p, notif(42, [17, 3, 768])), None, "a connect");
    }
}
