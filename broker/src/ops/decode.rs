//! Turns a raw notification into an operation. Pure functions over numbers and bytes: no
//! system calls here. What an address means is `ops/address.rs`'s.

use netjail_policy::Proto;

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_AARCH64`.
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

/// Largest address the kernel accepts (`sizeof(struct sockaddr_storage)`).
pub const MAX_SOCKADDR_LEN: usize = 128;

/// An intercepted system call, by meaning rather than number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Syscall {
    /// `connect(fd, addr, addrlen)`.
    Connect,
    /// `bind(fd, addr, addrlen)`.
    Bind,
    /// `listen(fd, backlog)`.
    Listen,
    /// `sendto(fd, buf, len, flags, dest, destlen)`.
    SendTo,
    /// `sendmsg(fd, msg, flags)`.
    SendMsg,
    /// `sendmmsg(fd, msgvec, vlen, flags)`.
    SendMmsg,
    /// `socket(family, type, protocol)`: one the policy refuses, or a netlink route socket.
    Socket,
    /// `socketpair(family, type, protocol, sv)`: one the policy refuses.
    SocketPair,
    /// `setsockopt(fd, SOL_SOCKET, name, optval, optlen)` of a socket filter option
    /// (`ops/sockopt.rs`).
    SetSockOpt,
    /// A call that changes the limits, scheduling or CPUs of the thread or process its pid
    /// argument names, notified only when that pid is not 0 (`ops/process.rs`).
    Process(ProcessCall),
}

/// The calls of [`Syscall::Process`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessCall {
    /// `prlimit64(pid, resource, new, old)`, with a new limit.
    Prlimit64,
    /// `sched_setaffinity(pid, len, mask)`.
    SchedSetaffinity,
    /// `sched_setattr(pid, attr, flags)`.
    SchedSetattr,
    /// `sched_setparam(pid, param)`.
    SchedSetparam,
    /// `sched_setscheduler(pid, policy, param)`.
    SchedSetscheduler,
    /// `setpriority(PRIO_PROCESS, pid, nice)`.
    Setpriority,
    /// `ioprio_set(IOPRIO_WHO_PROCESS, pid, ioprio)`.
    IoprioSet,
}

impl ProcessCall {
    /// Every one of them.
    pub const ALL: [ProcessCall; 7] = [
        ProcessCall::Prlimit64,
        ProcessCall::SchedSetaffinity,
        ProcessCall::SchedSetattr,
        ProcessCall::SchedSetparam,
        ProcessCall::SchedSetscheduler,
        ProcessCall::Setpriority,
        ProcessCall::IoprioSet,
    ];

    /// The call of this [`ProcessCall::name`].
    pub fn from_name(name: &str) -> Option<ProcessCall> {
        ProcessCall::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The call's name, as the audit gives it.
    pub fn name(self) -> &'static str {
        match self {
            ProcessCall::Prlimit64 => "prlimit64",
            ProcessCall::SchedSetaffinity => "sched_setaffinity",
            ProcessCall::SchedSetattr => "sched_setattr",
            ProcessCall::SchedSetparam => "sched_setparam",
            ProcessCall::SchedSetscheduler => "sched_setscheduler",
            ProcessCall::Setpriority => "setpriority",
            ProcessCall::IoprioSet => "ioprio_set",
        }
    }

    /// Which argument is the pid; for `setpriority` and `ioprio_set` the first says what the
    /// second names, and only its "one process" value (`PRIO_PROCESS`, `IOPRIO_WHO_PROCESS`)
    /// is notified.
    pub fn pid_argument(self) -> usize {
        match self {
            ProcessCall::Setpriority | ProcessCall::IoprioSet => 1,
            _ => 0,
        }
    }

    /// The value of the first argument that makes the second name one process, for the calls
    /// that have such an argument.
    pub fn one_process(self) -> Option<u64> {
        match self {
            ProcessCall::Setpriority => Some(0),
            ProcessCall::IoprioSet => Some(1),
            _ => None,
        }
    }
}

/// Decodes `(arch, nr)` with the tables of x86_64 and aarch64. `None` for anything else: the
/// filter never sends other calls, so the broker refuses them.
pub fn syscall(arch: u32, nr: i32) -> Option<Syscall> {
    let call = match (arch, nr) {
        (AUDIT_ARCH_X86_64, 42) | (AUDIT_ARCH_AARCH64, 203) => Syscall::Connect,
        (AUDIT_ARCH_X86_64, 49) | (AUDIT_ARCH_AARCH64, 200) => Syscall::Bind,
        (AUDIT_ARCH_X86_64, 50) | (AUDIT_ARCH_AARCH64, 201) => Syscall::Listen,
        (AUDIT_ARCH_X86_64, 44) | (AUDIT_ARCH_AARCH64, 206) => Syscall::SendTo,
        (AUDIT_ARCH_X86_64, 46) | (AUDIT_ARCH_AARCH64, 211) => Syscall::SendMsg,
        (AUDIT_ARCH_X86_64, 307) | (AUDIT_ARCH_AARCH64, 269) => Syscall::SendMmsg,
        (AUDIT_ARCH_X86_64, 41) | (AUDIT_ARCH_AARCH64, 198) => Syscall::Socket,
        (AUDIT_ARCH_X86_64, 53) | (AUDIT_ARCH_AARCH64, 199) => Syscall::SocketPair,
        (AUDIT_ARCH_X86_64, 54) | (AUDIT_ARCH_AARCH64, 208) => Syscall::SetSockOpt,
        (AUDIT_ARCH_X86_64, 302) | (AUDIT_ARCH_AARCH64, 261) => {
            Syscall::Process(ProcessCall::Prlimit64)
        }
        (AUDIT_ARCH_X86_64, 203) | (AUDIT_ARCH_AARCH64, 122) => {
            Syscall::Process(ProcessCall::SchedSetaffinity)
        }
        (AUDIT_ARCH_X86_64, 314) | (AUDIT_ARCH_AARCH64, 274) => {
            Syscall::Process(ProcessCall::SchedSetattr)
        }
        (AUDIT_ARCH_X86_64, 142) | (AUDIT_ARCH_AARCH64, 118) => {
            Syscall::Process(ProcessCall::SchedSetparam)
        }
        (AUDIT_ARCH_X86_64, 144) | (AUDIT_ARCH_AARCH64, 119) => {
            Syscall::Process(ProcessCall::SchedSetscheduler)
        }
        (AUDIT_ARCH_X86_64, 141) | (AUDIT_ARCH_AARCH64, 140) => {
            Syscall::Process(ProcessCall::Setpriority)
        }
        (AUDIT_ARCH_X86_64, 251) | (AUDIT_ARCH_AARCH64, 30) => {
            Syscall::Process(ProcessCall::IoprioSet)
        }
        _ => return None,
    };
    Some(call)
}

/// The transport protocol a socket speaks, for matching `tcp://` and `udp://` rules.
pub fn proto_of(sock_type: i32, protocol: i32) -> Proto {
    match (sock_type, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Proto::Tcp,
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Proto::Udp,
        _ => Proto::Other,
    }
}

/// Builds a `sockaddr_un` for a filesystem path (used to connect through `/proc/self/fd/N`).
pub fn sockaddr_un(path: &[u8]) -> Option<Vec<u8>> {
    if path.len() >= 108 || path.contains(&0) {
        return None;
    }
    let mut v = Vec::with_capacity(2 + path.len() + 1);
    v.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    v.extend_from_slice(path);
    v.push(0);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_tables() {
        assert_eq!(syscall(AUDIT_ARCH_X86_64, 42), Some(Syscall::Connect));
        assert_eq!(syscall(AUDIT_ARCH_AARCH64, 203), Some(Syscall::Connect));
        // aarch64's connect is x86_64's sched_setaffinity: the architecture picks the table.
        assert_eq!(
            syscall(AUDIT_ARCH_X86_64, 203),
            Some(Syscall::Process(ProcessCall::SchedSetaffinity))
        );
        assert_eq!(syscall(AUDIT_ARCH_X86_64, 200), None);
        for (x86, arm, call) in [
            (49, 200, Syscall::Bind),
            (50, 201, Syscall::Listen),
            (44, 206, Syscall::SendTo),
            (46, 211, Syscall::SendMsg),
            (307, 269, Syscall::SendMmsg),
            (41, 198, Syscall::Socket),
            (53, 199, Syscall::SocketPair),
            (54, 208, Syscall::SetSockOpt),
        ] {
            assert_eq!(syscall(AUDIT_ARCH_X86_64, x86), Some(call));
            assert_eq!(syscall(AUDIT_ARCH_AARCH64, arm), Some(call));
        }
        assert_eq!(syscall(0x4000_0003, 102), None);
    }

    /// The numbers of the process calls: x86_64's from `libc` on that architecture, aarch64's
    /// from the asm-generic table (`include/uapi/asm-generic/unistd.h`).
    #[test]
    fn process_call_tables() {
        let all = [
            (ProcessCall::Prlimit64, 302, 261),
            (ProcessCall::SchedSetaffinity, 203, 122),
            (ProcessCall::SchedSetattr, 314, 274),
            (ProcessCall::SchedSetparam, 142, 118),
            (ProcessCall::SchedSetscheduler, 144, 119),
            (ProcessCall::Setpriority, 141, 140),
            (ProcessCall::IoprioSet, 251, 30),
        ];
        for (call, x86, arm) in all {
            assert_eq!(
                syscall(AUDIT_ARCH_X86_64, x86),
                Some(Syscall::Process(call))
            );
            assert_eq!(
                syscall(AUDIT_ARCH_AARCH64, arm),
                Some(Syscall::Process(call))
            );
        }
        #[cfg(target_arch = "x86_64")]
        for (call, nr) in [
            (ProcessCall::Prlimit64, libc::SYS_prlimit64),
            (ProcessCall::SchedSetaffinity, libc::SYS_sched_setaffinity),
            (ProcessCall::SchedSetattr, libc::SYS_sched_setattr),
            (ProcessCall::SchedSetparam, libc::SYS_sched_setparam),
            (ProcessCall::SchedSetscheduler, libc::SYS_sched_setscheduler),
            (ProcessCall::Setpriority, libc::SYS_setpriority),
            (ProcessCall::IoprioSet, libc::SYS_ioprio_set),
        ] {
            assert_eq!(
                syscall(AUDIT_ARCH_X86_64, nr as i32),
                Some(Syscall::Process(call))
            );
        }
    }

    #[test]
    fn sockaddr_un_builder() {
        let v = sockaddr_un(b"/proc/self/fd/7").unwrap();
        assert_eq!(&v[2..], b"/proc/self/fd/7\0");
        assert!(sockaddr_un(&[b'a'; 108]).is_none());
    }
}
