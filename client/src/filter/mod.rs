//! Compiles a policy into the seccomp filter of a sandbox, with libseccomp.
//!
//! What scalars decide stays in the kernel (invariant 5): the sockets the allow-list lets
//! through, the denied system calls, a second listener. What needs a look at memory goes to
//! the broker (`SECCOMP_RET_USER_NOTIF`), and so does a `socket()` the list refuses, so that
//! the refusal is audited, and a netlink route socket, which the broker makes. Other
//! architectures (i386 `int 0x80` included) kill the process.
//!
//! libseccomp 2.5 cannot set `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, so the program is only
//! exported here and loaded by the launcher with the raw `seccomp()` call.

use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpFilterContext, ScmpSyscall};
use netjail_policy::{Policy, UNSAFE_SOCKOPTS, ZEROCOPY};

pub mod rule;
mod sockets;

pub use rule::{Action, ArgCmp, CmpOp, Rule};
use sockets::{alias_rules, route_rules, socket_rules};

/// Calls the sandbox may never make: each would let it act outside its confinement
/// (io_uring performs socket operations without system calls; the others reach into other
/// processes' memory or fds).
pub const DENIED_SYSCALLS: &[&str] = &[
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
];

/// Calls the broker always decides: each takes an address or a message header in memory, or
/// (`listen`) depends on whether the socket is bound. `sendto` is notified only when it names
/// a destination; with a NULL destination it stays in the kernel (invariant 5, rule D3).
/// `socket` and `socketpair` are notified when the policy refuses them or the broker makes
/// the socket (see `socket_rules`).
pub const NOTIFIED_SYSCALLS: &[&str] = &["connect", "bind", "listen", "sendmsg", "sendmmsg"];

/// Socket options that reach past the policy (J4): `(level, name)`. Binding to a device or an
/// interface index, marking packets for routing, headers or sources of the program's own
/// making, and TCP repair (which rewrites a connection's addresses and sequence numbers).
pub const REFUSED_SOCKOPTS: &[(i32, i32, &str)] = &[
    (libc::SOL_SOCKET, libc::SO_BINDTODEVICE, "SO_BINDTODEVICE"),
    (libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX, "SO_BINDTOIFINDEX"),
    (libc::SOL_SOCKET, libc::SO_MARK, "SO_MARK"),
    (libc::SOL_IP, libc::IP_HDRINCL, "IP_HDRINCL"),
    (libc::SOL_IPV6, IPV6_HDRINCL, "IPV6_HDRINCL"),
    (libc::SOL_IP, libc::IP_TRANSPARENT, "IP_TRANSPARENT"),
    (libc::SOL_IPV6, libc::IPV6_TRANSPARENT, "IPV6_TRANSPARENT"),
    (libc::SOL_TCP, libc::TCP_REPAIR, "TCP_REPAIR"),
    (libc::SOL_TCP, libc::TCP_REPAIR_QUEUE, "TCP_REPAIR_QUEUE"),
    (libc::SOL_TCP, libc::TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"),
    (
        libc::SOL_TCP,
        libc::TCP_REPAIR_OPTIONS,
        "TCP_REPAIR_OPTIONS",
    ),
    (libc::SOL_TCP, libc::TCP_REPAIR_WINDOW, "TCP_REPAIR_WINDOW"),
];

/// The socket options that change a socket's filter, which the broker sets as the caller
/// (`SOL_SOCKET`; broker `ops/sockopt.rs`). They came there so that no confined thread could
/// lift a filter the broker kept on a socket while it checked a unix datagram bind; no bind
/// uses one now (rt5 E1), and they still come, so that this filter and those of sandboxes
/// already running are the same.
pub const FILTER_SOCKOPTS: &[(i32, &str)] = &[
    (libc::SO_ATTACH_FILTER, "SO_ATTACH_FILTER"),
    (libc::SO_ATTACH_BPF, "SO_ATTACH_BPF"),
    (libc::SO_DETACH_FILTER, "SO_DETACH_FILTER"),
    (libc::SO_LOCK_FILTER, "SO_LOCK_FILTER"),
];

/// `IPV6_HDRINCL` (`linux/in6.h`; not in `libc`): a raw IPv6 socket sends headers of the
/// program's making, as `IP_HDRINCL` does for IPv4.
const IPV6_HDRINCL: i32 = 36;

/// Namespaces a sandbox may not create unless its policy grants the kind (N1, invariant 6): a
/// new network namespace is a network of the sandbox's own making, a new user namespace hands
/// it capabilities there, and a new mount namespace is a view of the file system it may
/// remake (any file under any name, `hardening::MOUNT_SYSCALLS`).
pub const REFUSED_NAMESPACES: u64 =
    (libc::CLONE_NEWNET | libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64;

/// Errors building a filter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// libseccomp refused a rule or the export.
    #[error("libseccomp: {0}")]
    Seccomp(#[from] libseccomp::error::SeccompError),
    /// The exported program could not be read back.
    #[error("cannot read the exported filter: {0}")]
    Io(#[from] std::io::Error),
    /// The program is not a whole number of BPF instructions, or too long.
    #[error("exported filter has a bad size ({0} bytes)")]
    BadSize(usize),
}

/// A compiled BPF program, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
#[derive(Debug, Clone)]
pub struct Program {
    /// The instructions.
    pub instructions: Vec<libc::sock_filter>,
}

fn deny(errno: i32) -> Action {
    Action::Errno(errno)
}

/// The whole rule set of `policy`'s filter, in the order it is given to libseccomp: the one
/// source of truth for [`context`] (and so for `netjail run`) and for the `linux.seccomp`
/// object of `netjail oci seccomp`. Fails when a system call name is unknown to libseccomp
/// on this architecture (a runtime would skip such a rule silently).
pub fn rules(policy: &Policy) -> Result<Vec<Rule>, FilterError> {
    let mut rules = Vec::new();
    for &name in NOTIFIED_SYSCALLS {
        rules.push(Rule::always(name, Action::Notify));
    }
    for &name in DENIED_SYSCALLS {
        rules.push(Rule::always(name, deny(libc::EPERM)));
    }
    // A second listener would let the sandbox answer CONTINUE to its own calls. The op and the
    // flags are 32-bit in the kernel: compare only the low half so high garbage cannot hide.
    rules.push(Rule::when(
        "seccomp",
        deny(libc::EPERM),
        &[
            ArgCmp::masked_eq(0, 0xffff_ffff, u64::from(libc::SECCOMP_SET_MODE_FILTER)),
            ArgCmp::masked_eq(
                1,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            ),
        ],
    ));
    send_rules(&mut rules, policy);
    // Level and name are ints: compare the low 32 bits only, so that high garbage (which the
    // kernel drops) cannot slip a refused option past an exact 64-bit comparison.
    for &(level, name, _) in REFUSED_SOCKOPTS {
        rules.push(Rule::when(
            "setsockopt",
            deny(libc::EPERM),
            &[
                ArgCmp::masked_eq(1, 0xffff_ffff, level as u64),
                ArgCmp::masked_eq(2, 0xffff_ffff, name as u64),
            ],
        ));
    }
    for &(name, _) in FILTER_SOCKOPTS {
        rules.push(Rule::when(
            "setsockopt",
            Action::Notify,
            &[
                ArgCmp::masked_eq(1, 0xffff_ffff, libc::SOL_SOCKET as u64),
                ArgCmp::masked_eq(2, 0xffff_ffff, name as u64),
            ],
        ));
    }
    unsafe_sockopt_rules(&mut rules, policy);
    namespace_rules(&mut rules, policy);
    rules.extend(crate::hardening::rules(policy));
    for name in ["socket", "socketpair"] {
        socket_rules(&mut rules, name, policy.sockets());
    }
    route_rules(&mut rules);
    alias_rules(&mut rules, policy.sockets());
    let mut checked = std::collections::HashSet::new();
    for rule in &rules {
        if checked.insert(rule.syscall) {
            ScmpSyscall::from_name(rule.syscall)?;
        }
    }
    Ok(rules)
}

/// `sendto`: a destination goes to the broker, and `MSG_ZEROCOPY` on a send that stays in
/// the kernel is refused unless the policy names `SO_ZEROCOPY`.
fn send_rules(out: &mut Vec<Rule>, policy: &Policy) {
    // sendto(fd, buf, len, flags, dest, destlen): a NULL destination sends on a connected
    // socket, which the kernel may do alone; a destination is the broker's to decide (rule
    // L3), and so is TCP Fast Open (`MSG_FASTOPEN` with a destination), decided as a connect.
    // With a NULL destination MSG_FASTOPEN reaches nobody: the kernel answers EINVAL or
    // EISCONN. The pointer is 64 bits wide: any bit set is a destination.
    out.push(Rule::when(
        "sendto",
        Action::Notify,
        &[ArgCmp::new(4, CmpOp::Ne, 0)],
    ));
    // MSG_ZEROCOPY on a send that stays in the kernel (no destination), unless the policy
    // names SO_ZEROCOPY. The sends the broker performs (sendto with a destination, sendmsg,
    // sendmmsg) it refuses itself, whatever the policy: this rule never overlaps the one above.
    if !policy.confinement().allows_unsafe_sockopt(ZEROCOPY) {
        out.push(Rule::when(
            "sendto",
            deny(libc::EPERM),
            &[
                ArgCmp::masked_eq(3, MSG_ZEROCOPY, MSG_ZEROCOPY),
                ArgCmp::eq(4, 0),
            ],
        ));
    }
}

/// New namespaces in `clone` and `unshare`, unless the policy grants the kind; `clone3`.
fn namespace_rules(out: &mut Vec<Rule>, policy: &Policy) {
    // New network, user or mount namespaces: by flag bit in clone and unshare, unless the
    // policy grants the kind (`namespaces = [...]`); clone3 carries its flags in memory, out
    // of the filter's sight, so it answers ENOSYS and the C libraries fall back to clone,
    // where the flags are visible. setns (joining a namespace) is in `hardening::rules`.
    let granted = policy.confinement().namespaces();
    for (bit, allowed) in [
        (libc::CLONE_NEWNET as u64, granted.net),
        (libc::CLONE_NEWUSER as u64, granted.user),
        (libc::CLONE_NEWNS as u64, granted.mount),
    ] {
        if allowed {
            continue;
        }
        for name in ["clone", "unshare"] {
            out.push(Rule::when(
                name,
                deny(libc::EPERM),
                &[ArgCmp::masked_eq(0, bit, bit)],
            ));
        }
    }
    out.push(Rule::always("clone3", deny(libc::ENOSYS)));
}

/// `MSG_ZEROCOPY`: the send flag that makes the kernel transmit from the sender's pages
/// after the call has returned.
const MSG_ZEROCOPY: u64 = libc::MSG_ZEROCOPY as u64;

/// Refuses the socket options of [`UNSAFE_SOCKOPTS`] that the policy does not name in
/// `allow_unsafe_sockopts`: `setsockopt` of every one, level and name compared on their 32
/// bits (as `REFUSED_SOCKOPTS`), and `getsockopt` of the SCTP ones, where
/// `SCTP_SOCKOPT_CONNECTX3` connects through `getsockopt`. The filter refuses them before the
/// kernel looks at the socket, whatever its family: on a kernel without SCTP too.
fn unsafe_sockopt_rules(out: &mut Vec<Rule>, policy: &Policy) {
    let confinement = policy.confinement();
    for &(name, options) in UNSAFE_SOCKOPTS {
        if confinement.allows_unsafe_sockopt(name) {
            continue;
        }
        for &(level, optname) in options {
            let calls: &[&'static str] = if level == libc::IPPROTO_SCTP {
                &["setsockopt", "getsockopt"]
            } else {
                &["setsockopt"]
            };
            for &call in calls {
                out.push(Rule::when(
                    call,
                    deny(libc::EPERM),
                    &[
                        ArgCmp::masked_eq(1, 0xffff_ffff, level as u64),
                        ArgCmp::masked_eq(2, 0xffff_ffff, optname as u64),
                    ],
                ));
            }
        }
    }
}

/// Adds `rules` to `ctx`, in order.
pub fn apply(ctx: &mut ScmpFilterContext, rules: &[Rule]) -> Result<(), FilterError> {
    for rule in rules {
        let action = match rule.action {
            Action::Notify => ScmpAction::Notify,
            Action::Errno(errno) => ScmpAction::Errno(errno),
        };
        let call = ScmpSyscall::from_name(rule.syscall)?;
        if rule.args.is_empty() {
            ctx.add_rule(action, call)?;
        } else {
            let args: Vec<ScmpArgCompare> = rule.args.iter().map(|a| a.to_libseccomp()).collect();
            ctx.add_rule_conditional(action, call, &args)?;
        }
    }
    Ok(())
}

/// Builds the filter context for `policy` (native architecture only): default action
/// `Allow`, other architectures (and x32) `KillProcess`, then [`rules`].
pub fn context(policy: &Policy) -> Result<ScmpFilterContext, FilterError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    ctx.set_act_badarch(ScmpAction::KillProcess)?;
    apply(&mut ctx, &rules(policy)?)?;
    Ok(ctx)
}

/// Compiles `policy` to a BPF program.
pub fn compile(policy: &Policy) -> Result<Program, FilterError> {
    export(&context(policy)?)
}

/// Exports the BPF program of a filter context.
pub fn export(ctx: &ScmpFilterContext) -> Result<Program, FilterError> {
    // libseccomp 2.5 exports to an fd only.
    let mut file = memfd()?;
    ctx.export_bpf(&file)?;
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 || bytes.len() / size > u16::MAX as usize {
        return Err(FilterError::BadSize(bytes.len()));
    }
    let instructions = bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Ok(Program { instructions })
}

fn memfd() -> std::io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create("netjail-filter", rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
pub(crate) mod tests;
