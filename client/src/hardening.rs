//! Confinement rules the filter compiles from scalars, decided in the kernel with no broker
//! round trip (invariant 5): interface-configuring `ioctl`s (rule N1), the `ioctl` safe-list
//! (J6), `F_SETOWN` and its relatives (J7), `setns` (invariant 6), the mount calls, and the
//! calls that change another process's limits or scheduling (invariant 10), of which only
//! those naming a pid other than the caller's own (0) go to the broker.
//!
//! Every request number is compared on its low 32 bits only: the kernel takes `ioctl`'s
//! request, `fcntl`'s command and `setns`'s type as 32-bit values and drops the high half, so
//! a comparison of all 64 bits could be passed by setting bits the kernel ignores.
//!
//! The numbers are those of x86_64 and aarch64 (the asm-generic `_IOC` encoding); the unit
//! tests check them against `libc` where `libc` has them.
//!
//! # libseccomp and "everything but"
//!
//! The filter's default action is `Allow`, and libseccomp refuses a rule whose action is the
//! default (`EACCES`), so an `ioctl` safe-list cannot be written as "refuse `ioctl`, allow
//! these": there is no allow rule to make. An unconditional rule would also win over
//! conditional ones for the same call (libseccomp drops the conditional rules as redundant),
//! and a rule may compare each argument once only. So "everything but these values" is
//! compiled as refusals of the complement: [`complement_blocks`] covers every 32-bit value
//! outside the list with aligned blocks, each one masked comparison (`(arg & mask) == value`),
//! all with the same action, so that their order does not matter.

use netjail_policy::{IoctlMode, Policy};

use crate::filter::{Action, ArgCmp, CmpOp, Rule};

/// The low 32 bits of an argument.
const LOW32: u64 = 0xffff_ffff;

/// `ioctl` requests that create, remove or configure network interfaces, routes, ARP entries,
/// bridges, bonds, VLANs and tun/tap devices (rule N1). Refused with `EPERM` whatever the
/// policy says, also when it keeps `CAP_NET_ADMIN`. The read-only companions (`SIOCGIF*`,
/// `SIOCGIFCONF`, `SIOCGARP`...) stay allowed unless the safe-list applies.
///
/// `SIOCETHTOOL` is in the list although it also reads: its sub-command is in memory, out of
/// the filter's sight, and its writes reach the hardware (link settings, offloads, ring sizes,
/// firmware flashing). The tun/tap entries refuse attaching a file to a tun or tap device
/// (`TUNSETIFF`: with it a program could send and receive raw packets through a persistent
/// device its uid owns, which needs no capability) and the settings of such a device.
pub const INTERFACE_IOCTLS: &[(u32, &str)] = &[
    (0x890b, "SIOCADDRT"),
    (0x890c, "SIOCDELRT"),
    (0x8911, "SIOCSIFLINK"),
    (0x8914, "SIOCSIFFLAGS"),
    (0x8916, "SIOCSIFADDR"),
    (0x8918, "SIOCSIFDSTADDR"),
    (0x891a, "SIOCSIFBRDADDR"),
    (0x891c, "SIOCSIFNETMASK"),
    (0x891e, "SIOCSIFMETRIC"),
    (0x8920, "SIOCSIFMEM"),
    (0x8922, "SIOCSIFMTU"),
    (0x8923, "SIOCSIFNAME"),
    (0x8924, "SIOCSIFHWADDR"),
    (0x8926, "SIOCSIFENCAP"),
    (0x8930, "SIOCSIFSLAVE"),
    (0x8931, "SIOCADDMULTI"),
    (0x8932, "SIOCDELMULTI"),
    (0x8934, "SIOCSIFPFLAGS"),
    (0x8936, "SIOCDIFADDR"),
    (0x8937, "SIOCSIFHWBROADCAST"),
    (0x8941, "SIOCSIFBR"),
    (0x8943, "SIOCSIFTXQLEN"),
    (0x8946, "SIOCETHTOOL"),
    (0x8949, "SIOCSMIIREG"),
    (0x894a, "SIOCWANDEV"),
    (0x8953, "SIOCDARP"),
    (0x8955, "SIOCSARP"),
    (0x8960, "SIOCDRARP"),
    (0x8962, "SIOCSRARP"),
    (0x8971, "SIOCSIFMAP"),
    (0x8980, "SIOCADDDLCI"),
    (0x8981, "SIOCDELDLCI"),
    (0x8983, "SIOCSIFVLAN"),
    (0x8990, "SIOCBONDENSLAVE"),
    (0x8991, "SIOCBONDRELEASE"),
    (0x8992, "SIOCBONDSETHWADDR"),
    (0x8995, "SIOCBONDCHANGEACTIVE"),
    (0x89a0, "SIOCBRADDBR"),
    (0x89a1, "SIOCBRDELBR"),
    (0x89a2, "SIOCBRADDIF"),
    (0x89a3, "SIOCBRDELIF"),
    (0x89b0, "SIOCSHWTSTAMP"),
    (0x4004_54ca, "TUNSETIFF"),
    (0x4004_54cb, "TUNSETPERSIST"),
    (0x4004_54cc, "TUNSETOWNER"),
    (0x4004_54cd, "TUNSETLINK"),
    (0x4004_54ce, "TUNSETGROUP"),
    (0x4004_54e2, "TUNSETCARRIER"),
];

/// Ranges of interface-configuring requests, as `(mask, value)`: a request `r` is in the
/// range when `r & mask == value`.
///
/// - `SIOCDEVPRIVATE` to `SIOCDEVPRIVATE + 15` (`0x89f0..=0x89ff`): driver-private requests,
///   among them the tunnel ones (`SIOCADDTUNNEL`, `SIOCDELTUNNEL`, `SIOCCHGTUNNEL`, the 6rd
///   and PRL ones) that create and change ip-in-ip, GRE and sit interfaces.
/// - The wireless-extension setters `SIOCSIW*`: `0x8b00..=0x8bff` with an even number (the
///   getters are odd).
pub const INTERFACE_IOCTL_RANGES: &[(u32, u32, &str)] = &[
    (0xffff_fff0, 0x89f0, "SIOCDEVPRIVATE..SIOCDEVPRIVATE+15"),
    (
        0xffff_ff01,
        0x8b00,
        "SIOCSIW* (even numbers of 0x8b00..0x8bff)",
    ),
];

/// The `ioctl` requests a policy with `ioctl = "safe-list"` allows (rule J6); every other
/// request is refused with `EPERM`, like every other refusal of the sandbox (a policy
/// refusal, not a device that does not know the request: `ENOTTY` would tell a program "not
/// a terminal" where it is one). Each entry acts only on a file the program already holds,
/// and none reaches the network, an interface or another process:
///
/// - `FIONBIO`, `FIOASYNC`, `FIOCLEX`, `FIONCLEX`: the same as `fcntl(F_SETFL, O_NONBLOCK /
///   O_ASYNC)` and `fcntl(F_SETFD, FD_CLOEXEC)`, which are allowed anyway (the owner that
///   `O_ASYNC` signals is set with `F_SETOWN`, rule J7).
/// - `FIONREAD` (= `SIOCINQ`), `TIOCOUTQ` (= `SIOCOUTQ`): bytes queued to read or to send.
/// - `TCGETS`, `TCGETS2`: terminal attributes, which `isatty` and `tcgetattr` read.
/// - `TCSETS`, `TCSETSW`, `TCSETSF` and their `2` forms: `tcsetattr` on a terminal the
///   program holds (raw mode, echo off for a password prompt); only the line discipline of
///   that terminal changes.
/// - `TIOCGWINSZ`, `TIOCGPGRP`, `TIOCGSID`: window size, foreground process group and
///   session of a terminal (queries).
/// - `TIOCGPTN`, `TIOCSPTLCK`: `ptsname` and `unlockpt` of a pseudo-terminal the program
///   opened itself (`posix_openpt`).
///
/// Not in the list, on purpose: `TIOCSTI` (pushes input into a terminal: commands typed into
/// the operator's shell), `TIOCSCTTY`, `TIOCSPGRP`, `TIOCSWINSZ`, `TIOCLINUX`, `TIOCCONS`,
/// the `F*SETOWN` ones (J7), and every `SIOC*`, reads included: a jailed program does not
/// look at the host's interfaces (`if_nametoindex` then fails, so a scoped IPv6 address
/// `fe80::1%eth0` cannot be named).
pub const SAFE_IOCTLS: &[(u32, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x540f, "TIOCGPGRP"),
    (0x5411, "TIOCOUTQ"),
    (0x5413, "TIOCGWINSZ"),
    (0x541b, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5429, "TIOCGSID"),
    (0x802c_542a, "TCGETS2"),
    (0x402c_542b, "TCSETS2"),
    (0x402c_542c, "TCSETSW2"),
    (0x402c_542d, "TCSETSF2"),
    (0x8004_5430, "TIOCGPTN"),
    (0x4004_5431, "TIOCSPTLCK"),
    (0x5450, "FIONCLEX"),
    (0x5451, "FIOCLEX"),
    (0x5452, "FIOASYNC"),
];

/// `fcntl` commands refused with `fcntl_setown = false` (rule J7): choosing which process or
/// process group receives `SIGIO`/`SIGURG` for a file (`F_SETOWN`, `F_SETOWN_EX`), and which
/// signal that is (`F_SETSIG`, which makes any signal number deliverable that way).
pub const SETOWN_FCNTLS: &[(u32, &str)] = &[(8, "F_SETOWN"), (15, "F_SETOWN_EX"), (10, "F_SETSIG")];

/// The `ioctl` spellings of `F_SETOWN` on sockets, refused with it (rule J7).
pub const SETOWN_IOCTLS: &[(u32, &str)] = &[(0x8901, "FIOSETOWN"), (0x8902, "SIOCSPGRP")];

fn refuse() -> Action {
    Action::Errno(libc::EPERM)
}

fn low32_is(index: u32, value: u32) -> ArgCmp {
    ArgCmp::masked_eq(index, LOW32, u64::from(value))
}

/// The rules of this module for `policy`, for a filter whose default action is `Allow`.
pub fn rules(policy: &Policy) -> Vec<Rule> {
    let mut out = Vec::new();
    let confinement = policy.confinement();
    match confinement.ioctl() {
        // The complement of the safe list holds the interface and setown requests too.
        IoctlMode::SafeList => {
            let safe: Vec<u32> = SAFE_IOCTLS.iter().map(|&(r, _)| r).collect();
            refuse_all_but(&mut out, "ioctl", 1, &safe);
        }
        IoctlMode::Any => {
            for &(request, _) in INTERFACE_IOCTLS {
                out.push(Rule::when("ioctl", refuse(), &[low32_is(1, request)]));
            }
            for &(mask, value, _) in INTERFACE_IOCTL_RANGES {
                let cmp = ArgCmp::masked_eq(1, mask.into(), value.into());
                out.push(Rule::when("ioctl", refuse(), &[cmp]));
            }
            if !confinement.fcntl_setown() {
                for &(request, _) in SETOWN_IOCTLS {
                    out.push(Rule::when("ioctl", refuse(), &[low32_is(1, request)]));
                }
            }
        }
    }
    if !confinement.fcntl_setown() {
        for &(cmd, _) in SETOWN_FCNTLS {
            out.push(Rule::when("fcntl", refuse(), &[low32_is(1, cmd)]));
        }
    }
    setns_rules(&mut out, policy);
    mount_rules(&mut out, policy);
    process_rules(&mut out);
    out
}

/// The calls that mount, unmount or move file systems, or change a mount's flags, refused
/// (`EPERM`) unless the policy grants `"mount"`. A sandbox that may mount can put any file
/// under any name in its own view of the file system, which is where the broker would
/// otherwise read the names of unix sockets (`rt_a_userns_bind_mount_reaches_unlisted_unix_socket`).
/// The kernel lets a process mount only in a mount namespace whose user namespace it holds
/// `CAP_SYS_ADMIN` in: a new one (`CLONE_NEWNS`, refused with these in [`crate::filter::rules`])
/// or, for a root sandbox that keeps `CAP_SYS_ADMIN`, its own.
pub const MOUNT_SYSCALLS: &[&str] = &[
    "mount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
];

fn mount_rules(out: &mut Vec<Rule>, policy: &Policy) {
    if policy.confinement().namespaces().mount {
        return;
    }
    for &call in MOUNT_SYSCALLS {
        out.push(Rule::always(call, refuse()));
    }
}

/// Calls that change the resource limits, scheduling or CPUs of the thread or process their
/// pid argument names, with the index of that argument: `prlimit64` (with a new limit: an
/// `RLIMIT_CPU` of 0 is a `SIGKILL` at the next tick, an `RLIMIT_NOFILE` of 0 stops a broker
/// from serving anyone), the `sched_set*` calls, `setpriority` and `ioprio_set` of one
/// process. The kernel lets a process of the same user (and, with `CAP_SYS_NICE` or
/// `CAP_SYS_RESOURCE`, which a root sandbox keeps, any process) do them, and no Landlock scope
/// covers them. A pid of 0 is the caller itself, decided here; any other is notified, and the
/// broker lets the kernel go on only when it names a thread of the caller's own thread group
/// (`broker/src/process.rs`). Calls that reach another process only past the kernel's ptrace
/// access check (`migrate_pages`, `move_pages`, `process_madvise`, `kcmp`, `get_robust_list`,
/// `perf_event_open`, `PR_SCHED_CORE`) are kept inside the sandbox by Landlock's domain.
pub const PROCESS_CALLS: &[(&str, u32)] = &[
    ("prlimit64", 0),
    ("sched_setaffinity", 0),
    ("sched_setattr", 0),
    ("sched_setparam", 0),
    ("sched_setscheduler", 0),
    ("setpriority", 1),
    ("ioprio_set", 1),
];

/// `setpriority`'s `which` (`PRIO_PROCESS`, `PRIO_PGRP`, `PRIO_USER`) and `ioprio_set`'s
/// (`IOPRIO_WHO_PROCESS`, `IOPRIO_WHO_PGRP`, `IOPRIO_WHO_USER`).
const PRIO_WHICH: [(&str, u32, u32, u32); 2] = [("setpriority", 0, 1, 2), ("ioprio_set", 1, 2, 3)];

/// The rules of [`PROCESS_CALLS`]. `setpriority` and `ioprio_set` of a process group or of a
/// user are refused outright (`EPERM`): a user's processes include the broker of a root
/// sandbox and every other process of the sandbox's user, and the sandbox's own process
/// group holds the launcher that started it (which does not make a group of its own, so that
/// job control keeps working), whatever group number names it. The pid and `which` are
/// `int`s in the kernel: `which` is compared on its low 32 bits, and a pid whose low half is
/// 0 but whose high half is not goes to the broker, which reads it as the kernel does.
fn process_rules(out: &mut Vec<Rule>) {
    let named = |index: u32| ArgCmp::new(index, CmpOp::Ne, 0);
    for &(call, pid) in PROCESS_CALLS {
        match call {
            // Without a new limit, prlimit64 only reads (as /proc/PID/limits does).
            "prlimit64" => out.push(Rule::when(call, Action::Notify, &[named(pid), named(2)])),
            "setpriority" | "ioprio_set" => {}
            _ => out.push(Rule::when(call, Action::Notify, &[named(pid)])),
        }
    }
    for (call, process, group, user) in PRIO_WHICH {
        out.push(Rule::when(
            call,
            Action::Notify,
            &[low32_is(0, process), named(1)],
        ));
        out.push(Rule::when(call, refuse(), &[low32_is(0, group)]));
        out.push(Rule::when(call, refuse(), &[low32_is(0, user)]));
    }
}

/// `setns(fd, nstype)` joins an existing namespace. Refused outright unless the policy grants
/// a namespace kind (`namespaces = [...]`); then allowed for exactly the granted kinds, named
/// by `nstype` (`CLONE_NEWNET`, `CLONE_NEWUSER`, `CLONE_NEWNS`). `nstype = 0` ("whatever the
/// fd is"), other kinds and pidfd flag sets stay refused: the filter cannot see what the fd
/// is, only what the caller says it is, and the kernel checks that the two agree. Joining needs
/// `CAP_SYS_ADMIN` over the target namespace, which the sandbox has only in namespaces of its
/// own making: the capabilities of the namespace it started in are dropped, and Landlock keeps
/// it from opening other processes' `/proc/PID/ns/*`.
fn setns_rules(out: &mut Vec<Rule>, policy: &Policy) {
    let granted = policy.confinement().namespaces();
    let mut kinds = Vec::new();
    if granted.net {
        kinds.push(libc::CLONE_NEWNET as u32);
    }
    if granted.user {
        kinds.push(libc::CLONE_NEWUSER as u32);
    }
    if granted.mount {
        kinds.push(libc::CLONE_NEWNS as u32);
    }
    if kinds.is_empty() {
        out.push(Rule::always("setns", refuse()));
    } else {
        refuse_all_but(out, "setns", 1, &kinds);
    }
}

/// Refuses `call` with `EPERM` whenever the low 32 bits of argument `index` are not one of
/// `allowed`.
fn refuse_all_but(out: &mut Vec<Rule>, call: &'static str, index: u32, allowed: &[u32]) {
    for (mask, value) in complement_blocks(allowed) {
        let cmp = ArgCmp::masked_eq(index, mask.into(), value.into());
        out.push(Rule::when(call, refuse(), &[cmp]));
    }
}

/// Aligned blocks `(mask, value)` that together cover exactly the 32-bit values not in
/// `allowed`: `x` is outside `allowed` if and only if `x & mask == value` for one block. The
/// blocks are the empty subtrees of the binary trie of `allowed` (at most 32 per value).
pub fn complement_blocks(allowed: &[u32]) -> Vec<(u32, u32)> {
    fn walk(prefix: u32, depth: u32, values: &[u32], out: &mut Vec<(u32, u32)>) {
        if values.is_empty() {
            let mask = if depth == 0 {
                0
            } else {
                u32::MAX << (32 - depth)
            };
            out.push((mask, prefix));
            return;
        }
        if depth == 32 {
            return; // a value of the list
        }
        let bit = 1u32 << (31 - depth);
        let (zero, one): (Vec<u32>, Vec<u32>) = values.iter().partition(|&&v| v & bit == 0);
        walk(prefix, depth + 1, &zero, out);
        walk(prefix | bit, depth + 1, &one, out);
    }
    let mut values = allowed.to_vec();
    values.sort_unstable();
    values.dedup();
    let mut out = Vec::new();
    walk(0, 0, &values, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outside(blocks: &[(u32, u32)], x: u32) -> bool {
        blocks.iter().any(|&(mask, value)| x & mask == value)
    }

    /// The safe list costs about 500 instructions: with every option on, the program stays far
    /// below the kernel's limit of 4096 (`BPF_MAXINSNS`).
    #[test]
    fn every_option_fits_in_one_program() {
        let src = "name = \"t\"\nioctl = \"safe-list\"\nfcntl_setown = false\n\
                   namespaces = [\"net\", \"user\"]\n";
        let policy = Policy::from_toml(src, "t").unwrap();
        let len = crate::filter::compile(&policy).unwrap().instructions.len();
        assert!(len < 2048, "{len} instructions");
    }

    #[test]
    fn complement_blocks_cover_exactly_the_rest() {
        let safe: Vec<u32> = SAFE_IOCTLS.iter().map(|&(r, _)| r).collect();
        let blocks = complement_blocks(&safe);
        for &v in &safe {
            assert!(!outside(&blocks, v), "{v:#x} refused");
        }
        for &(r, name) in INTERFACE_IOCTLS.iter().chain(SETOWN_IOCTLS) {
            assert!(outside(&blocks, r), "{name} allowed by the safe list");
        }
        for x in [
            0,
            1,
            0x5412,
            0x5400,
            0x541a,
            0x541c,
            0x8933,
            u32::MAX,
            0x802c_542b,
        ] {
            assert!(outside(&blocks, x), "{x:#x} allowed");
        }
        // Neighbours of every allowed value, and the blocks do not overlap.
        for &v in &safe {
            for x in [v.wrapping_sub(1), v.wrapping_add(1), v ^ 0x8000_0000] {
                assert_eq!(outside(&blocks, x), !safe.contains(&x), "{x:#x}");
            }
        }
        for (i, &(m1, v1)) in blocks.iter().enumerate() {
            for &(m2, v2) in &blocks[i + 1..] {
                let common = m1 & m2;
                assert_ne!(v1 & common, v2 & common, "blocks overlap");
            }
        }
        assert!(blocks.len() <= 32 * safe.len());
        assert_eq!(complement_blocks(&[]), vec![(0, 0)]);
    }

    #[test]
    // `libc`'s request type is `c_ulong` with glibc and `c_int` with musl: cast either way.
    #[allow(clippy::unnecessary_cast)]
    fn numbers_match_libc() {
        let find = |list: &[(u32, &str)], name: &str| {
            list.iter()
                .find(|(_, n)| *n == name)
                .map(|&(v, _)| v)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        let safe = |name| u64::from(find(SAFE_IOCTLS, name));
        assert_eq!(safe("TCGETS"), libc::TCGETS as u64);
        assert_eq!(safe("TCSETS"), libc::TCSETS as u64);
        assert_eq!(safe("TCSETSW"), libc::TCSETSW as u64);
        assert_eq!(safe("TCSETSF"), libc::TCSETSF as u64);
        assert_eq!(safe("TCGETS2"), libc::TCGETS2 as u64);
        assert_eq!(safe("TCSETS2"), libc::TCSETS2 as u64);
        assert_eq!(safe("TCSETSW2"), libc::TCSETSW2 as u64);
        assert_eq!(safe("TCSETSF2"), libc::TCSETSF2 as u64);
        assert_eq!(safe("TIOCGPGRP"), libc::TIOCGPGRP as u64);
        assert_eq!(safe("TIOCOUTQ"), libc::TIOCOUTQ as u64);
        assert_eq!(safe("TIOCGWINSZ"), libc::TIOCGWINSZ as u64);
        assert_eq!(safe("FIONREAD"), libc::FIONREAD as u64);
        assert_eq!(safe("FIONBIO"), libc::FIONBIO as u64);
        assert_eq!(safe("TIOCGSID"), libc::TIOCGSID as u64);
        assert_eq!(safe("TIOCGPTN"), libc::TIOCGPTN as u64);
        assert_eq!(safe("TIOCSPTLCK"), libc::TIOCSPTLCK as u64);
        assert_eq!(safe("FIONCLEX"), libc::FIONCLEX as u64);
        assert_eq!(safe("FIOCLEX"), libc::FIOCLEX as u64);
        assert_eq!(safe("FIOASYNC"), libc::FIOASYNC as u64);
        let n1 = |name| u64::from(find(INTERFACE_IOCTLS, name));
        assert_eq!(n1("SIOCADDRT"), libc::SIOCADDRT as u64);
        assert_eq!(n1("SIOCDELRT"), libc::SIOCDELRT as u64);
        assert_eq!(n1("SIOCSIFFLAGS"), libc::SIOCSIFFLAGS as u64);
        assert_eq!(n1("SIOCSIFADDR"), libc::SIOCSIFADDR as u64);
        assert_eq!(n1("SIOCSIFMTU"), libc::SIOCSIFMTU as u64);
        assert_eq!(n1("SIOCSIFNAME"), libc::SIOCSIFNAME as u64);
        assert_eq!(n1("SIOCSIFHWADDR"), libc::SIOCSIFHWADDR as u64);
        assert_eq!(n1("SIOCDIFADDR"), libc::SIOCDIFADDR as u64);
        assert_eq!(n1("SIOCETHTOOL"), libc::SIOCETHTOOL as u64);
        assert_eq!(n1("SIOCSARP"), libc::SIOCSARP as u64);
        assert_eq!(n1("TUNSETIFF"), libc::TUNSETIFF as u64);
        assert_eq!(n1("TUNSETPERSIST"), libc::TUNSETPERSIST as u64);
        assert_eq!(n1("TUNSETOWNER"), libc::TUNSETOWNER as u64);
        assert_eq!(n1("TUNSETLINK"), libc::TUNSETLINK as u64);
        assert_eq!(n1("TUNSETGROUP"), libc::TUNSETGROUP as u64);
        assert_eq!(n1("TUNSETCARRIER"), libc::TUNSETCARRIER as u64);
        let setown = |name| i64::from(find(SETOWN_FCNTLS, name));
        assert_eq!(setown("F_SETOWN"), i64::from(libc::F_SETOWN));
        // libc has no F_SETOWN_EX / F_SETSIG for glibc x86_64: asm-generic/fcntl.h says 15, 10.
        assert_eq!((setown("F_SETOWN_EX"), setown("F_SETSIG")), (15, 10));
    }
}
