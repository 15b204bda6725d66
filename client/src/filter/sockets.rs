//! The rules for `socket()` and `socketpair()`: what the allow-list refuses, what the kernel
//! makes under another name, and netlink route sockets, all sent to the broker.

use netjail_policy::{allowed_protocols, SocketRule, MAX_FAMILY, SOCK_TYPE_MASK};

use super::rule::{Action, ArgCmp, CmpOp, Rule};

/// Sends the broker every `socket()` (or `socketpair()`) that the allow-list does not let
/// through, so that the broker answers it with the policy's errno
/// ([`Policy::socket_refusal`]) and writes it in the audit: each unlisted family by value and
/// any value above [`MAX_FAMILY`] (high bits included), in an allowed family each type it
/// does not list, and in an allowed type each protocol it does not list. What the list allows
/// stays in the kernel (invariant 5), except netlink route sockets, which the broker makes
/// itself so that they can read and never change ([`route_rules`]). Every rule here notifies:
/// none can contradict another.
pub(super) fn socket_rules(out: &mut Vec<Rule>, call: &'static str, allowed: &[SocketRule]) {
    if allowed.iter().any(|r| r.family.is_none()) {
        return; // `*:*`
    }
    out.push(Rule::when(
        call,
        Action::Notify,
        &[ArgCmp::new(0, CmpOp::Gt, MAX_FAMILY)],
    ));
    for family in 0..=MAX_FAMILY {
        let rules: Vec<&SocketRule> = allowed
            .iter()
            .filter(|r| r.family.map(|f| f as u64) == Some(family))
            .collect();
        if rules.is_empty() {
            out.push(Rule::when(call, Action::Notify, &[ArgCmp::eq(0, family)]));
            continue;
        }
        if rules.iter().any(|r| r.sock_type.is_none()) {
            continue;
        }
        for ty in 0..=SOCK_TYPE_MASK {
            let of_type: Vec<&SocketRule> = rules
                .iter()
                .copied()
                .filter(|r| r.sock_type == Some(ty as i32))
                .collect();
            if !of_type.is_empty() {
                protocol_rules(out, call, family, ty, &of_type);
                continue;
            }
            out.push(Rule::when(
                call,
                Action::Notify,
                &[
                    ArgCmp::eq(0, family),
                    ArgCmp::masked_eq(1, SOCK_TYPE_MASK, ty),
                ],
            ));
        }
    }
}

/// `SOCK_PACKET`, the type of the old packet interface: `socket(AF_INET, SOCK_PACKET, ...)` is
/// made an `AF_PACKET` socket by the kernel (`__sock_create`).
pub(super) const SOCK_PACKET: u64 = 10;
/// `IPPROTO_RAW`: a raw IP socket of this protocol sends headers of the program's making, as
/// `IP_HDRINCL` does (`inet_create`, `inet6_create` set it).
const IPPROTO_RAW: u64 = libc::IPPROTO_RAW as u64;

/// Where the kernel makes a socket other than the one `socket()` names, the allow-list must
/// hold for what it makes. [`socket_rules`] decides by the arguments; this adds, for what
/// those let through:
///
/// - `(AF_INET, SOCK_PACKET)` is an `AF_PACKET` socket of type `SOCK_PACKET`: notified
///   unless the policy allows every type of `packet`;
/// - `(AF_INET or AF_INET6, SOCK_RAW, IPPROTO_RAW)` is a raw socket that writes its own IP
///   header (`IP_HDRINCL`, refused by name in [`REFUSED_SOCKOPTS`]), with a destination in it
///   that no broker reads: notified unless an entry names protocol 255;
/// - `(AF_UNIX, SOCK_RAW)` is a `SOCK_DGRAM` socket (`unix_create`): notified unless the
///   policy allows unix datagram sockets.
///
/// The broker answers each with the errno `Policy::socket_refusal` gives it (the family
/// errno for the packet socket, `EPERM` for the others) and writes it in the audit, as every
/// refused `socket()`.
///
/// The type is compared under `SOCK_TYPE_MASK` (flags are in the high bits) and the protocol
/// on its low 32 bits, as the kernel reads them. Each rule is added only where
/// [`socket_rules`] lets the arguments through.
pub(super) fn alias_rules(out: &mut Vec<Rule>, allowed: &[SocketRule]) {
    if allowed.iter().any(|r| r.family.is_none()) {
        return; // `*:*`
    }
    let of_family = |family: i32| -> Vec<&SocketRule> {
        allowed
            .iter()
            .filter(|r| r.family == Some(family))
            .collect()
    };
    let any_type = |rules: &[&SocketRule]| rules.iter().any(|r| r.sock_type.is_none());
    let inet = of_family(libc::AF_INET);
    if any_type(&inet) && !any_type(&of_family(libc::AF_PACKET)) {
        out.push(Rule::when(
            "socket",
            Action::Notify,
            &[
                ArgCmp::eq(0, libc::AF_INET as u64),
                ArgCmp::masked_eq(1, SOCK_TYPE_MASK, SOCK_PACKET),
            ],
        ));
    }
    for family in [libc::AF_INET, libc::AF_INET6] {
        let rules = of_family(family);
        let raw = libc::SOCK_RAW;
        let any_protocol = any_type(&rules)
            || rules
                .iter()
                .any(|r| r.sock_type == Some(raw) && r.protocol.is_none());
        let named = rules
            .iter()
            .any(|r| r.protocol.map(|p| p as u64) == Some(IPPROTO_RAW));
        if any_protocol && !named {
            out.push(Rule::when(
                "socket",
                Action::Notify,
                &[
                    ArgCmp::eq(0, family as u64),
                    ArgCmp::masked_eq(1, SOCK_TYPE_MASK, raw as u64),
                    ArgCmp::masked_eq(2, 0xffff_ffff, IPPROTO_RAW),
                ],
            ));
        }
    }
    let unix = of_family(libc::AF_UNIX);
    let listed = |ty: i32| unix.iter().any(|r| r.sock_type == Some(ty));
    if !any_type(&unix) && listed(libc::SOCK_RAW) && !listed(libc::SOCK_DGRAM) {
        for call in ["socket", "socketpair"] {
            out.push(Rule::when(
                call,
                Action::Notify,
                &[
                    ArgCmp::eq(0, libc::AF_UNIX as u64),
                    ArgCmp::masked_eq(1, SOCK_TYPE_MASK, libc::SOCK_RAW as u64),
                ],
            ));
        }
    }
}

/// In an allowed (family, type), notifies every protocol the entries do not allow
/// ([`allowed_protocols`]: in the IP families `stream` means TCP and `dgram` means UDP, and
/// MPTCP, SCTP, UDP-Lite, ICMP "ping" sockets... must be named), high bits included.
fn protocol_rules(
    out: &mut Vec<Rule>,
    call: &'static str,
    family: u64,
    ty: u64,
    rules: &[&SocketRule],
) {
    if call != "socket" {
        return; // socketpair: unix only, where the protocol is always 0
    }
    let Some(allowed) = allowed_protocols(family, ty, rules) else {
        return;
    };
    let Some(&max) = allowed.iter().next_back() else {
        return;
    };
    let same = [
        ArgCmp::eq(0, family),
        ArgCmp::masked_eq(1, SOCK_TYPE_MASK, ty),
    ];
    let refused = std::iter::once(ArgCmp::new(2, CmpOp::Gt, max)).chain(
        (0..max)
            .filter(|p| !allowed.contains(p))
            .map(|protocol| ArgCmp::eq(2, protocol)),
    );
    for cmp in refused {
        let mut conds = same.to_vec();
        conds.push(cmp);
        out.push(Rule::when(call, Action::Notify, &conds));
    }
}

/// `socket(AF_NETLINK, SOCK_RAW or SOCK_DGRAM, NETLINK_ROUTE)` goes to the broker whatever
/// the list says: where the list allows it, the broker makes the socket as the caller without
/// any capability, so that the kernel refuses every message that would change an interface,
/// an address or a route, whoever sends it on that socket (rule N1); where the list refuses
/// it, the broker refuses it. The protocol is compared on its 32 bits, as the kernel reads it.
pub(super) fn route_rules(out: &mut Vec<Rule>) {
    for ty in [libc::SOCK_RAW, libc::SOCK_DGRAM] {
        out.push(Rule::when(
            "socket",
            Action::Notify,
            &[
                ArgCmp::eq(0, libc::AF_NETLINK as u64),
                ArgCmp::masked_eq(1, SOCK_TYPE_MASK, ty as u64),
                ArgCmp::masked_eq(2, 0xffff_ffff, libc::NETLINK_ROUTE as u64),
            ],
        ));
    }
}
