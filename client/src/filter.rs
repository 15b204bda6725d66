//! Compiles a policy into the seccomp filter of a sandbox, with libseccomp.
//!
//! What scalars decide stays in the kernel (invariant 5): the socket allow-list, the denied
//! system calls, a second listener. What needs a look at memory goes to the broker
//! (`SECCOMP_RET_USER_NOTIF`). Other architectures (i386 `int 0x80` included) kill the process.
//!
//! libseccomp 2.5 cannot set `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`, so the program is only
//! exported here and loaded by the launcher with the raw `seccomp()` call.

use std::io::{Read, Seek};

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use netjail_policy::{Policy, SocketRule};

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
pub const NOTIFIED_SYSCALLS: &[&str] = &["connect", "bind", "listen", "sendmsg", "sendmmsg"];

/// Socket options that reach past the policy (J4): `(level, name)`. Binding to a device or an
/// interface index, marking packets for routing, headers or sources of the program's own
/// making, and TCP repair (which rewrites a connection's addresses and sequence numbers).
pub const REFUSED_SOCKOPTS: &[(i32, i32, &str)] = &[
    (libc::SOL_SOCKET, libc::SO_BINDTODEVICE, "SO_BINDTODEVICE"),
    (libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX, "SO_BINDTOIFINDEX"),
    (libc::SOL_SOCKET, libc::SO_MARK, "SO_MARK"),
    (libc::SOL_IP, libc::IP_HDRINCL, "IP_HDRINCL"),
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

/// Namespaces a sandbox may not create (N1, invariant 6): a new network namespace is a
/// network of the sandbox's own making, and a new user namespace hands it capabilities there.
pub const REFUSED_NAMESPACES: u64 = (libc::CLONE_NEWNET | libc::CLONE_NEWUSER) as u64;

/// Address families above this are refused outright (`AF_MAX` is 46 on Linux 6.18).
const MAX_FAMILY: u64 = 63;
/// `SOCK_TYPE_MASK`.
const SOCK_TYPE_MASK: u64 = 0xf;

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

fn deny(errno: i32) -> ScmpAction {
    ScmpAction::Errno(errno)
}

fn arg(index: u32, op: ScmpCompareOp, datum: u64) -> ScmpArgCompare {
    ScmpArgCompare::new(index, op, datum)
}

/// Builds the filter context for `policy` (native architecture only).
pub fn context(policy: &Policy) -> Result<ScmpFilterContext, FilterError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Allow)?;
    ctx.set_act_badarch(ScmpAction::KillProcess)?;
    for name in NOTIFIED_SYSCALLS {
        ctx.add_rule(ScmpAction::Notify, ScmpSyscall::from_name(name)?)?;
    }
    for name in DENIED_SYSCALLS {
        ctx.add_rule(deny(libc::EPERM), ScmpSyscall::from_name(name)?)?;
    }
    // A second listener would let the sandbox answer CONTINUE to its own calls. The op and the
    // flags are 32-bit in the kernel: compare only the low half so high garbage cannot hide.
    ctx.add_rule_conditional(
        deny(libc::EPERM),
        ScmpSyscall::from_name("seccomp")?,
        &[
            arg(
                0,
                ScmpCompareOp::MaskedEqual(0xffff_ffff),
                u64::from(libc::SECCOMP_SET_MODE_FILTER),
            ),
            arg(
                1,
                ScmpCompareOp::MaskedEqual(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER),
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            ),
        ],
    )?;
    // sendto(fd, buf, len, flags, dest, destlen): a NULL destination sends on a connected
    // socket, which the kernel may do alone; a destination is the broker's to decide (rule
    // L3), and so is TCP Fast Open (`MSG_FASTOPEN` with a destination), decided as a connect.
    // With a NULL destination MSG_FASTOPEN reaches nobody: the kernel answers EINVAL or
    // EISCONN. The pointer is 64 bits wide: any bit set is a destination.
    ctx.add_rule_conditional(
        ScmpAction::Notify,
        ScmpSyscall::from_name("sendto")?,
        &[arg(4, ScmpCompareOp::NotEqual, 0)],
    )?;
    // Level and name are ints: compare the low 32 bits only, so that high garbage (which the
    // kernel drops) cannot slip a refused option past an exact 64-bit comparison.
    for &(level, name, _) in REFUSED_SOCKOPTS {
        ctx.add_rule_conditional(
            deny(libc::EPERM),
            ScmpSyscall::from_name("setsockopt")?,
            &[
                arg(1, ScmpCompareOp::MaskedEqual(0xffff_ffff), level as u64),
                arg(2, ScmpCompareOp::MaskedEqual(0xffff_ffff), name as u64),
            ],
        )?;
    }
    // New network or user namespaces: by flag bit in clone and unshare, unless the policy
    // grants the kind (`namespaces = [...]`); clone3 carries its flags in memory, out of the
    // filter's sight, so it answers ENOSYS and the C libraries fall back to clone, where the
    // flags are visible. setns (joining a namespace) is in `hardening::add_rules`.
    let granted = policy.confinement().namespaces();
    for (bit, allowed) in [
        (libc::CLONE_NEWNET as u64, granted.net),
        (libc::CLONE_NEWUSER as u64, granted.user),
    ] {
        if allowed {
            continue;
        }
        for name in ["clone", "unshare"] {
            ctx.add_rule_conditional(
                deny(libc::EPERM),
                ScmpSyscall::from_name(name)?,
                &[arg(0, ScmpCompareOp::MaskedEqual(bit), bit)],
            )?;
        }
    }
    ctx.add_rule(deny(libc::ENOSYS), ScmpSyscall::from_name("clone3")?)?;
    crate::hardening::add_rules(&mut ctx, policy)?;
    for name in ["socket", "socketpair"] {
        socket_rules(&mut ctx, ScmpSyscall::from_name(name)?, policy.sockets())?;
    }
    Ok(ctx)
}

/// Refuses every (family, type) that the allow-list does not name: each refused family by
/// value, any value above [`MAX_FAMILY`] (high bits included), and in an allowed family each
/// type it does not list.
fn socket_rules(
    ctx: &mut ScmpFilterContext,
    call: ScmpSyscall,
    allowed: &[SocketRule],
) -> Result<(), FilterError> {
    let refuse = deny(libc::EAFNOSUPPORT);
    ctx.add_rule_conditional(refuse, call, &[arg(0, ScmpCompareOp::Greater, MAX_FAMILY)])?;
    for family in 0..=MAX_FAMILY {
        let rules: Vec<&SocketRule> = allowed
            .iter()
            .filter(|r| r.family as u64 == family)
            .collect();
        if rules.is_empty() {
            ctx.add_rule_conditional(refuse, call, &[arg(0, ScmpCompareOp::Equal, family)])?;
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
                protocol_rules(ctx, call, family, ty, &of_type)?;
                continue;
            }
            ctx.add_rule_conditional(
                deny(libc::EPERM),
                call,
                &[
                    arg(0, ScmpCompareOp::Equal, family),
                    arg(1, ScmpCompareOp::MaskedEqual(SOCK_TYPE_MASK), ty),
                ],
            )?;
        }
    }
    Ok(())
}

/// In the IP families, `stream` means TCP and `dgram` means UDP: any other protocol of those
/// types (MPTCP, SCTP, UDP-Lite, ICMP "ping" sockets...) is a different way onto the network
/// with its own rules (SCTP sets up associations from `sendmsg` without `connect`), so it is
/// allowed only when an entry names it (`inet:stream:sctp`) or the policy allows every type of
/// the family (`inet:*`). Elsewhere an entry without a protocol allows any. Protocol 0 (the
/// type's default) passes with the default; every value not allowed, high bits included, is
/// EPERM.
fn protocol_rules(
    ctx: &mut ScmpFilterContext,
    call: ScmpSyscall,
    family: u64,
    ty: u64,
    rules: &[&SocketRule],
) -> Result<(), FilterError> {
    if call != ScmpSyscall::from_name("socket")? {
        return Ok(()); // socketpair: unix only, where the protocol is always 0
    }
    let inet = family == libc::AF_INET as u64 || family == libc::AF_INET6 as u64;
    let default = match ty as i32 {
        libc::SOCK_STREAM if inet => Some(libc::IPPROTO_TCP as u64),
        libc::SOCK_DGRAM if inet => Some(libc::IPPROTO_UDP as u64),
        _ => None,
    };
    let mut allowed = std::collections::BTreeSet::new();
    for r in rules {
        match (r.protocol, default) {
            (None, Some(d)) => {
                allowed.insert(0);
                allowed.insert(d);
            }
            (None, None) => return Ok(()), // any protocol
            (Some(p), d) => {
                allowed.insert(p as u64);
                if d == Some(p as u64) {
                    allowed.insert(0);
                }
            }
        }
    }
    let Some(&max) = allowed.iter().next_back() else {
        return Ok(());
    };
    let same = [
        arg(0, ScmpCompareOp::Equal, family),
        arg(1, ScmpCompareOp::MaskedEqual(SOCK_TYPE_MASK), ty),
    ];
    let refused = std::iter::once(arg(2, ScmpCompareOp::Greater, max)).chain(
        (0..max)
            .filter(|p| !allowed.contains(p))
            .map(|protocol| arg(2, ScmpCompareOp::Equal, protocol)),
    );
    for cmp in refused {
        let mut conds = same.to_vec();
        conds.push(cmp);
        ctx.add_rule_conditional(deny(libc::EPERM), call, &conds)?;
    }
    Ok(())
}

/// Compiles `policy` to a BPF program.
pub fn compile(policy: &Policy) -> Result<Program, FilterError> {
    let ctx = context(policy)?;
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
mod tests {
    use super::*;

    fn policy(src: &str) -> Policy {
        Policy::from_toml(src, "test").unwrap()
    }

    #[test]
    fn compiles_builtins() {
        for name in netjail_policy::builtin_names() {
            let p = policy(netjail_policy::builtin(name).unwrap());
            let prog = compile(&p).unwrap();
            assert!(prog.instructions.len() > 20, "{name}: too short");
        }
    }

    #[test]
    fn program_kills_foreign_arch_and_x32() {
        // The first instructions load the arch and jump to KILL_PROCESS for others; libseccomp
        // adds the x32 check itself (`jge 0x40000000` on the native arch, to the same kill).
        let p = policy("name = \"t\"\n");
        let prog = compile(&p).unwrap();
        let kill = prog
            .instructions
            .iter()
            .any(|i| i.code == 0x06 && i.k == libc::SECCOMP_RET_KILL_PROCESS);
        assert!(kill, "no KILL_PROCESS return in the program");
        let x32 = prog
            .instructions
            .iter()
            .any(|i| i.code == 0x35 && i.k == 0x4000_0000);
        assert!(x32, "no x32 syscall-number check in the program");
    }
}
