//! Netlink route sockets read, and never change (rule N1).
//!
//! A `NETLINK_ROUTE` socket is how a program reads the interfaces, addresses and routes
//! (`getifaddrs`, `if_nameindex`, `ip addr`), and how a privileged one changes them. The kernel
//! lets anyone send requests of the `GET` kind and wants `CAP_NET_ADMIN` over the socket's
//! network namespace for every other request: of the task that sends it and, when the message
//! names no destination, also of the task that made the socket. A sandbox keeps both sides
//! unprivileged:
//!
//! - the broker makes every route socket a sandbox asks for (`ops/socket.rs`), as the caller but
//!   with no capability at all, so that a message the sandbox sends itself (`send`, `write`,
//!   `sendto` without a destination, which stay in the kernel) can never change anything,
//!   whatever capabilities the sandbox holds;
//! - a message the broker sends for the sandbox (`sendto` with a destination, `sendmsg`,
//!   `sendmmsg`) is checked here, on the broker's own copy of the bytes it sends: every
//!   request the kernel would act on must read ([`first_change`]), and the destination must be
//!   the kernel ([`to_kernel`]), not another socket or a multicast group; anything else is
//!   refused with `EPERM` before it is sent. A `connect` of a route socket is held to the
//!   same destination.
//!
//! So reading stays reading even where the sandbox holds `CAP_NET_ADMIN` (a policy that keeps
//! it), and the broker never lends its own.

use netjail_policy::{Decision, Verdict};

use crate::sys::SocketKind;

/// `NLMSG_HDRLEN`: the aligned size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_MIN_TYPE`: types below are control messages (`NLMSG_NOOP`, `NLMSG_ERROR`,
/// `NLMSG_DONE`, `NLMSG_OVERRUN`), which the kernel skips.
const NLMSG_MIN_TYPE: u16 = 0x10;
/// `NLM_F_REQUEST`: only requests are acted on.
const NLM_F_REQUEST: u16 = 0x1;
/// `RTM_BASE`: the first rtnetlink message type.
const RTM_BASE: u16 = 16;
/// The kind of an rtnetlink type that reads (`RTM_GETLINK`, `RTM_GETADDR`, ...): the kernel
/// asks no capability for it (`rtnetlink_rcv_msg`).
const RTM_KIND_GET: u16 = 2;
/// `sizeof(struct sockaddr_nl)`.
const SOCKADDR_NL_LEN: usize = 12;

/// The audit rule of a message that would change the system.
pub(crate) const RULE_CHANGE: &str = "netlink-route:change";
/// The audit rule of a destination other than the kernel.
pub(crate) const RULE_DESTINATION: &str = "netlink-route:destination";

/// Whether `kind` is a netlink route socket.
pub(crate) fn is_route(kind: SocketKind) -> bool {
    kind.family == libc::AF_NETLINK && kind.protocol == libc::NETLINK_ROUTE
}

/// The type of the first message of the datagram `data` that the kernel would act on and
/// that does not read, or `None` when every such message reads. The messages are walked as
/// the kernel's `netlink_rcv_skb` walks them: it stops at a header whose length is below the
/// header's or beyond the data, skips messages without `NLM_F_REQUEST` and control messages,
/// and moves on by the aligned length.
pub(crate) fn first_change(data: &[u8]) -> Option<u16> {
    let mut rest = data;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        if len < NLMSG_HDRLEN || rest.len() < len {
            return None;
        }
        let acted_on = flags & NLM_F_REQUEST != 0 && kind >= NLMSG_MIN_TYPE;
        if acted_on && (kind - RTM_BASE) & 3 != RTM_KIND_GET {
            return Some(kind);
        }
        let step = len.saturating_add(3) & !3;
        rest = &rest[step.min(rest.len())..];
    }
    None
}

/// Whether a netlink destination `name` (a `sockaddr_nl`) is the kernel: port id 0 and no
/// multicast group. A name too short to be one, or of another family, is the kernel's to
/// refuse (`EINVAL`), and counts as no other destination here.
pub(crate) fn to_kernel(name: &[u8]) -> bool {
    if name.len() < SOCKADDR_NL_LEN
        || u16::from_ne_bytes([name[0], name[1]]) != libc::AF_NETLINK as u16
    {
        return true;
    }
    let pid = u32::from_ne_bytes([name[4], name[5], name[6], name[7]]);
    let groups = u32::from_ne_bytes([name[8], name[9], name[10], name[11]]);
    pid == 0 && groups == 0
}

/// What the broker answers a refused route message: `EPERM`, named by `rule`.
pub(crate) fn refusal(rule: &str) -> Decision {
    Decision {
        verdict: Verdict::Deny { errno: libc::EPERM },
        rule: rule.to_owned(),
        host: None,
    }
}

/// The check of one datagram the broker is about to send on the route socket `kind`, to
/// `name` (empty: the socket's own destination, `peer`, which the kernel uses then): the
/// refusal, or `None` when it may go.
pub(crate) fn check_send(
    name: &[u8],
    peer: impl FnOnce() -> Vec<u8>,
    data: &[u8],
) -> Option<Decision> {
    let destination = if name.is_empty() {
        peer()
    } else {
        name.to_vec()
    };
    if !to_kernel(&destination) {
        return Some(refusal(RULE_DESTINATION));
    }
    first_change(data).map(|_| refusal(RULE_CHANGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTM_NEWLINK: u16 = 16;
    const RTM_GETLINK: u16 = 18;
    const RTM_NEWADDR: u16 = 20;
    const RTM_GETADDR: u16 = 22;
    const RTM_NEWROUTE: u16 = 24;
    const RTM_DELROUTE: u16 = 25;
    const RTM_GETROUTE: u16 = 26;
    const RTM_SETLINK: u16 = 19;
    const NLM_F_DUMP: u16 = 0x300;

    /// One message: header (length, type, flags, sequence, port id) and `payload` bytes.
    fn msg(kind: u16, flags: u16, payload: usize) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.resize(len as usize, 0);
        m.resize((len as usize + 3) & !3, 0);
        m
    }

    /// N1: requests that read pass, alone and in batches; a request that changes (a new
    /// address, route or link, a deleted route, a link set) is found wherever it stands.
    #[test]
    fn s_n1_reads_pass_changes_are_found() {
        let req = NLM_F_REQUEST;
        for kind in [RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, 30, 34, 74, 94, 122] {
            assert_eq!(
                first_change(&msg(kind, req | NLM_F_DUMP, 4)),
                None,
                "{kind}"
            );
        }
        for kind in [
            RTM_NEWLINK,
            RTM_SETLINK,
            RTM_NEWADDR,
            RTM_NEWROUTE,
            RTM_DELROUTE,
            17,
            79,
        ] {
            assert_eq!(first_change(&msg(kind, req, 16)), Some(kind), "{kind}");
        }
        let mut batch = msg(RTM_GETLINK, req | NLM_F_DUMP, 4);
        batch.extend(msg(RTM_GETADDR, req | NLM_F_DUMP, 5));
        assert_eq!(first_change(&batch), None);
        batch.extend(msg(RTM_NEWADDR, req, 24));
        assert_eq!(
            first_change(&batch),
            Some(RTM_NEWADDR),
            "the third of three"
        );
    }

    /// What the kernel does not act on is not a change: messages without `NLM_F_REQUEST`,
    /// control messages, and everything after a header whose length stops the walk.
    #[test]
    fn s_n1_walked_as_the_kernel_walks() {
        assert_eq!(first_change(&msg(RTM_NEWADDR, 0, 8)), None, "not a request");
        assert_eq!(first_change(&msg(3, NLM_F_REQUEST, 0)), None, "NLMSG_DONE");
        assert_eq!(first_change(&[]), None);
        assert_eq!(first_change(&[0u8; 15]), None, "shorter than a header");
        // A length below the header's, or past the data: the kernel stops there.
        let mut short = msg(RTM_GETLINK, NLM_F_REQUEST, 0);
        short[..4].copy_from_slice(&8u32.to_ne_bytes());
        short.extend(msg(RTM_NEWADDR, NLM_F_REQUEST, 8));
        assert_eq!(first_change(&short), None);
        let mut long = msg(RTM_NEWADDR, NLM_F_REQUEST, 8);
        long[..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(first_change(&long), None);
        // An unaligned length moves on by the aligned one, as NLMSG_ALIGN does.
        let mut odd = msg(RTM_GETLINK, NLM_F_REQUEST, 1);
        assert_eq!(odd.len(), 20);
        odd.extend(msg(RTM_NEWROUTE, NLM_F_REQUEST, 12));
        assert_eq!(first_change(&odd), Some(RTM_NEWROUTE));
        // A last message whose aligned length passes the end of the data.
        let mut tail = msg(RTM_GETLINK, NLM_F_REQUEST, 4);
        tail.extend(msg(RTM_NEWLINK, NLM_F_REQUEST, 1));
        tail.truncate(tail.len() - 3);
        assert_eq!(first_change(&tail), Some(RTM_NEWLINK));
    }

    fn sockaddr_nl(family: i32, pid: u32, groups: u32) -> Vec<u8> {
        let mut a = (family as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&[0, 0]);
        a.extend_from_slice(&pid.to_ne_bytes());
        a.extend_from_slice(&groups.to_ne_bytes());
        a
    }

    /// N1: only the kernel (port 0, no group) is a destination; another port or a multicast
    /// group is not. What is not a `sockaddr_nl` is the kernel's to refuse.
    #[test]
    fn s_n1_destination_is_the_kernel() {
        assert!(to_kernel(&sockaddr_nl(libc::AF_NETLINK, 0, 0)));
        assert!(!to_kernel(&sockaddr_nl(libc::AF_NETLINK, 4242, 0)));
        assert!(!to_kernel(&sockaddr_nl(libc::AF_NETLINK, 0, 1)));
        assert!(to_kernel(&sockaddr_nl(libc::AF_INET, 4242, 0)));
        assert!(to_kernel(&[16, 0, 0, 0]));
        let get = msg(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 4);
        let kernel = sockaddr_nl(libc::AF_NETLINK, 0, 0);
        assert_eq!(check_send(&kernel, Vec::new, &get), None);
        let other = sockaddr_nl(libc::AF_NETLINK, 7, 0);
        let d = check_send(&[], || other.clone(), &get).expect("refused");
        assert_eq!(d.rule, RULE_DESTINATION);
        let d = check_send(&kernel, Vec::new, &msg(RTM_NEWADDR, NLM_F_REQUEST, 8)).unwrap();
        assert_eq!(
            (d.rule.as_str(), d.verdict),
            (RULE_CHANGE, Verdict::Deny { errno: libc::EPERM })
        );
    }
}
