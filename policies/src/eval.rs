//! The evaluator: `Request -> Decision`.

use std::os::unix::ffi::OsStrExt;

use std::net::SocketAddr;

use crate::endpoint::{Cover, Endpoint, FIRST_UNPRIVILEGED_PORT};
use crate::model::{Action, Decision, Policy, Rule, Verdict};
use crate::names::Names;
use crate::target::{canonical_bind_addr, embedded_ipv4, Op, Proto, Request, Target};

const EPERM: Verdict = Verdict::Deny { errno: libc::EPERM };

/// `CAP_NET_BIND_SERVICE`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The request in the form the tables are matched against: [`Target::canonical`], except
/// that a bind keeps its wildcard address (a wildcard bind is not a bind to loopback).
pub(crate) fn canonical_request(request: &Request) -> Request {
    let target = match (&request.target, request.op) {
        (Target::Inet { proto, addr }, Op::Bind) => Target::Inet {
            proto: *proto,
            addr: canonical_bind_addr(*addr),
        },
        (t, _) => t.canonical(),
    };
    Request {
        op: request.op,
        target,
    }
}

/// A layer consulted between the `[[deny]]` tables and the `[[allow]]` tables with the
/// canonical request; `Some` decides.
pub(crate) type Layer<'a> = &'a mut dyn FnMut(&Request) -> Option<Decision>;

pub(crate) fn evaluate(
    policy: &Policy,
    request: &Request,
    names: &dyn Names,
    layer: Option<Layer<'_>>,
) -> Decision {
    let op = request.op;
    let canonical = canonical_request(request);
    let target = canonical.target.clone();
    if let (Target::Inet { addr, .. }, Op::Bind) = (&target, op) {
        if let Some(d) = jail_check(policy, *addr) {
            return d;
        }
    }
    match &target {
        // Fail closed: the broker decodes an AF_UNSPEC address to what the kernel does with
        // it (a disconnect, an IPv4 destination, no destination) before it asks.
        Target::Unspec => return decision(EPERM, "unspec".to_owned()),
        // Fail closed: the kernel sends an unspecified destination to the socket's own source
        // address, which the broker reads from the socket and asks about instead.
        Target::Inet { addr, .. }
            if matches!(op, Op::Connect | Op::Send) && addr.ip().is_unspecified() =>
        {
            return decision(EPERM, "unspecified-destination".to_owned())
        }
        // A netlink socket talks to the kernel, not to a network; the policy consented to it
        // by listing the family in `[sockets]` (or every socket, `*:*`), so its bind and its
        // messages pass (the kernel checks the capabilities of the socket's opener and of the
        // sender for anything that changes the system, and the broker lets a route socket
        // read only). Other families fall to the default (rule L4).
        Target::OtherFamily(libc::AF_NETLINK)
            if matches!(op, Op::Bind | Op::Send)
                && policy
                    .sockets
                    .iter()
                    .any(|r| r.family.is_none_or(|f| f == libc::AF_NETLINK)) =>
        {
            return decision(Verdict::Allow, "sockets.netlink".to_owned())
        }
        Target::OtherFamily(_) => return default_decision(policy),
        Target::UnixPath(path) => {
            let bytes = path.as_os_str().as_bytes();
            // Fail closed: the broker hands over resolved absolute paths, so anything else
            // is a bug that must not be let through (invariant 1).
            if !bytes.starts_with(b"/") || bytes.split(|b| *b == b'/').any(|c| c == b"..") {
                return decision(EPERM, "invalid-target".to_owned());
            }
        }
        Target::Inet { .. } | Target::UnixAbstract(_) => {}
    }
    // Fail closed: a host name the broker could not resolve matches in a deny table only.
    let deny = Lookup {
        names,
        fail_closed: true,
    };
    for (t, rule) in policy.deny.iter().enumerate() {
        if let Some(hit) = deny_match(rule, op, &target, false, &deny) {
            let verdict = Verdict::Deny {
                errno: rule.errno.value(),
            };
            return hit.decision(verdict, "deny", t);
        }
    }
    if let Some(layer) = layer {
        if let Some(d) = layer(&canonical) {
            return d;
        }
    }
    let grant = Lookup {
        names,
        fail_closed: false,
    };
    let privileged = privileged_bind(policy, op, &target);
    for (t, rule) in policy.allow.iter().enumerate() {
        if let Some(hit) = first_match(rule, op, &target, privileged, &grant) {
            return hit.decision(Verdict::Allow, "allow", t);
        }
    }
    for (t, rule) in policy.ask.iter().enumerate() {
        if let Some(hit) = first_match(rule, op, &target, privileged, &grant) {
            return hit.decision(Verdict::Ask, "ask", t);
        }
    }
    if privileged {
        // Rule J8: the default never grants a privileged port, even `default = "allow"`, nor
        // asks for one: an operator answering a default ask would grant what no entry names.
        return decision(EPERM, "privileged-port".to_owned());
    }
    default_decision(policy)
}

/// Rule J2: with a jail address for the family, a bind goes to that address only (the
/// broker turns the wildcard into it before asking). A family without a jail address while
/// the other has one is refused altogether.
fn jail_check(policy: &Policy, addr: SocketAddr) -> Option<Decision> {
    let confine = &policy.confine;
    if !confine.has_jail() {
        return None;
    }
    match confine.jail_address_for(addr.is_ipv6()) {
        Some(jail) if jail == addr.ip() => None,
        _ => Some(decision(EPERM, "jail-address".to_owned())),
    }
}

/// A bind to a port from 1 to 1023 by a sandbox that does not keep `CAP_NET_BIND_SERVICE`.
fn privileged_bind(policy: &Policy, op: Op, target: &Target) -> bool {
    let Target::Inet { addr, .. } = target else {
        return false;
    };
    op == Op::Bind
        && addr.port() != 0
        && addr.port() < FIRST_UNPRIVILEGED_PORT
        && !policy
            .confine
            .keep_capabilities
            .contains(&CAP_NET_BIND_SERVICE)
}

/// How host names are looked up for one kind of table.
pub(crate) struct Lookup<'a> {
    pub(crate) names: &'a dyn Names,
    /// A `[[deny]]` table: an unknown answer matches.
    pub(crate) fail_closed: bool,
}

/// The entry of a table that covers a request.
struct Hit {
    /// `connect[i]`, `send[i]`, `bind[i]` or `unix[i]`.
    entry: String,
    /// The host name it covered the destination by, if it names one.
    host: Option<String>,
}

impl Hit {
    fn unnamed(entry: String) -> Hit {
        Hit { entry, host: None }
    }

    /// The decision of the `index`th table of kind `table` (`deny`, `allow`, `ask`).
    fn decision(self, verdict: Verdict, table: &str, index: usize) -> Decision {
        Decision {
            verdict,
            rule: format!("{table}[{index}].{}", self.entry),
            host: self.host,
        }
    }
}

/// The first entry of `rule` that covers the canonical target of `op`. For datagram sockets
/// a `connect` entry and a `send` entry grant the same thing (a connected UDP socket sends to
/// its peer with no further check), so either covers a UDP connect or a send. `privileged`:
/// the bind is to a privileged port, which only entries naming privileged ports cover.
fn first_match(
    rule: &Rule,
    op: Op,
    target: &Target,
    privileged: bool,
    lookup: &Lookup<'_>,
) -> Option<Hit> {
    match target {
        Target::Inet { proto, addr } => {
            let hit = |key: &str, list: &[Endpoint]| {
                list.iter().enumerate().find_map(|(i, e)| {
                    let cover = match op {
                        // Bind entries hold addresses only.
                        Op::Bind => {
                            let by_addr = if privileged {
                                e.matches_bind(*proto, *addr)
                            } else {
                                e.matches(*proto, *addr)
                            };
                            if by_addr {
                                Cover::Addr
                            } else {
                                Cover::No
                            }
                        }
                        Op::Connect | Op::Send => {
                            e.covers(*proto, *addr, lookup.names, lookup.fail_closed)
                        }
                    };
                    let entry = format!("{key}[{i}]");
                    match cover {
                        Cover::No => None,
                        Cover::Addr => Some(Hit::unnamed(entry)),
                        Cover::Name(name) => Some(Hit {
                            entry,
                            host: Some(name),
                        }),
                    }
                })
            };
            match op {
                Op::Connect if *proto != Proto::Udp => hit("connect", &rule.connect),
                Op::Connect | Op::Send => {
                    hit("connect", &rule.connect).or_else(|| hit("send", &rule.send))
                }
                Op::Bind => hit("bind", &rule.bind),
            }
        }
        Target::UnixPath(path) => {
            let bytes = path.as_os_str().as_bytes();
            rule.unix
                .iter()
                .position(|u| u.matches_path(bytes))
                .map(|i| Hit::unnamed(format!("unix[{i}]")))
        }
        Target::UnixAbstract(name) => rule
            .unix
            .iter()
            .position(|u| u.matches_abstract(name))
            .map(|i| Hit::unnamed(format!("unix[{i}]"))),
        Target::Unspec | Target::OtherFamily(_) => None,
    }
}

/// [`first_match`] for a `[[deny]]` table: a destination that embeds an IPv4 address by a
/// well-known translation (NAT64, IPv4-compatible, 6to4: [`embedded_ipv4`]) is covered by
/// an entry of either address (rule L11). Allow and ask tables match the IPv6 address only:
/// an IPv4 entry does not grant a path through a translator.
fn deny_match(
    rule: &Rule,
    op: Op,
    target: &Target,
    privileged: bool,
    lookup: &Lookup<'_>,
) -> Option<Hit> {
    first_match(rule, op, target, privileged, lookup).or_else(|| {
        let embedded = embedded_target(op, target)?;
        first_match(rule, op, &embedded, privileged, lookup)
    })
}

/// The IPv4 destination a connect or send `target` embeds, if any.
fn embedded_target(op: Op, target: &Target) -> Option<Target> {
    let Target::Inet {
        proto,
        addr: SocketAddr::V6(v6),
    } = target
    else {
        return None;
    };
    if !matches!(op, Op::Connect | Op::Send) {
        return None;
    }
    let v4 = embedded_ipv4(*v6.ip())?;
    Some(Target::Inet {
        proto: *proto,
        addr: SocketAddr::new(v4.into(), v6.port()),
    })
}

/// The entry of `rule` that covers the canonical `target` of `op`, as `connect[i]` (and the
/// host name it covered the destination by), for tables kept outside a policy. `deny`: the
/// table is a deny table, which also covers embedded IPv4 destinations ([`deny_match`]).
pub(crate) fn rule_match(
    rule: &Rule,
    op: Op,
    target: &Target,
    privileged: bool,
    lookup: &Lookup<'_>,
    deny: bool,
) -> Option<(String, Option<String>)> {
    let hit = if deny {
        deny_match(rule, op, target, privileged, lookup)
    } else {
        first_match(rule, op, target, privileged, lookup)
    };
    hit.map(|hit| (hit.entry, hit.host))
}

fn default_decision(policy: &Policy) -> Decision {
    let verdict = match policy.default {
        Action::Allow => Verdict::Allow,
        Action::Deny => EPERM,
        Action::Ask => Verdict::Ask,
    };
    decision(verdict, "default".to_owned())
}

fn decision(verdict: Verdict, rule: String) -> Decision {
    Decision {
        verdict,
        rule,
        host: None,
    }
}
