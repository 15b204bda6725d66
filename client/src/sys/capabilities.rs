//! Capabilities the sandbox loses, dropped with raw system calls between fork and exec.
#![allow(unsafe_code)]

/// Capabilities the sandbox loses (invariant 6): every one that acts on the network or on
/// other processes past the broker. `CAP_NET_ADMIN` configures interfaces, routes and
/// firewalls; `CAP_NET_RAW` forges packets; `CAP_NET_BIND_SERVICE` and `CAP_NET_BROADCAST`
/// reach privileged ports and broadcast; `CAP_SYS_PTRACE` reaches into other processes;
/// `CAP_SYS_ADMIN` does most of the rest. `CAP_PERFMON` passes the kernel's ptrace read check
/// on any process (measured on Linux 6.18: with it, root in a Landlock domain still opens
/// `/proc/PID/environ` and `/proc/PID/auxv` of an outside process, and `perf_event_open` can
/// sample another process's registers and stack), and `CAP_BPF` is its companion for tracing
/// programs that read any memory (rule D5). `CAP_SYS_MODULE` (loading kernel code) and
/// `CAP_SYS_RAWIO` (raw I/O ports and `/dev/mem`) would each undo every other confinement.
/// A policy may keep the first six (`keep_capabilities`, from
/// `netjail_policy::NETWORK_CAPABILITIES`), never the others.
///
/// The rest matter to a sandbox that runs as root (invariant 10), which keeps what ordinary
/// programs need (`CAP_CHOWN`, `CAP_DAC_OVERRIDE`, `CAP_FOWNER`, `CAP_FSETID`, `CAP_KILL`,
/// `CAP_SETUID`, `CAP_SETGID`, `CAP_SETPCAP`, `CAP_SYS_CHROOT`, `CAP_SYS_NICE`,
/// `CAP_SYS_RESOURCE`, `CAP_IPC_LOCK`, `CAP_LEASE`, `CAP_AUDIT_WRITE`) and loses: device
/// nodes (`CAP_MKNOD`), reboot and kexec (`CAP_SYS_BOOT`), other processes' state and pids
/// (`CAP_CHECKPOINT_RESTORE`), files by handle past every mount (`CAP_DAC_READ_SEARCH`:
/// `open_by_handle_at`), the clock, the kernel log and its accounting (`CAP_SYS_TIME`,
/// `CAP_SYSLOG`, `CAP_SYS_PACCT`), the LSMs and the audit rules (`CAP_MAC_OVERRIDE`,
/// `CAP_MAC_ADMIN`, `CAP_AUDIT_CONTROL`, `CAP_AUDIT_READ`), immutable files
/// (`CAP_LINUX_IMMUTABLE`), file capabilities (`CAP_SETFCAP`), other users' System V IPC
/// (`CAP_IPC_OWNER`), terminals' configuration (`CAP_SYS_TTY_CONFIG`), wake-up alarms and
/// suspend (`CAP_WAKE_ALARM`, `CAP_BLOCK_SUSPEND`).
pub(crate) const DROPPED_CAPABILITIES: &[(u32, &str)] = &[
    (10, "CAP_NET_BIND_SERVICE"),
    (11, "CAP_NET_BROADCAST"),
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
    (2, "CAP_DAC_READ_SEARCH"),
    (9, "CAP_LINUX_IMMUTABLE"),
    (15, "CAP_IPC_OWNER"),
    (20, "CAP_SYS_PACCT"),
    (22, "CAP_SYS_BOOT"),
    (25, "CAP_SYS_TIME"),
    (26, "CAP_SYS_TTY_CONFIG"),
    (27, "CAP_MKNOD"),
    (30, "CAP_AUDIT_CONTROL"),
    (31, "CAP_SETFCAP"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (40, "CAP_CHECKPOINT_RESTORE"),
];

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// The bit mask (bit N = capability N) of [`DROPPED_CAPABILITIES`] except those in `keep`:
/// what the child drops when the policy keeps `keep` (`keep_capabilities`). Computed before
/// the fork, so that the child needs no allocation.
pub(crate) fn dropped_capability_mask(keep: &[u32]) -> u64 {
    DROPPED_CAPABILITIES
        .iter()
        .filter(|(cap, _)| !keep.contains(cap))
        .fold(0, |mask, &(cap, _)| mask | (1u64 << cap))
}

/// Drops the capabilities of `dropped` (a mask from [`dropped_capability_mask`]) from this
/// thread's bounding, ambient, effective, permitted and inheritable sets with raw system calls
/// (async-signal-safe: the child calls it between fork and exec). Without `CAP_SETPCAP` the
/// bounding set cannot change, and then it does not matter: `no_new_privs` keeps exec from
/// granting anything. The ambient set is cleared except for the capabilities the policy keeps
/// (those stay raised if they were). Returns the errno of a failure.
///
/// # Safety
/// Raw system calls only; safe to call in a freshly forked child.
pub(super) unsafe fn drop_capabilities(dropped: u64) -> Result<(), i32> {
    let caps = || (0..64u32).filter(move |cap| dropped & (1u64 << cap) != 0);
    // SAFETY: prctl with integer arguments only; capget/capset with pointers to locals of the
    // layout the kernel expects for version 3.
    unsafe {
        for cap in caps() {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && errno() != libc::EPERM
            {
                return Err(errno());
            }
        }
        // Ambient capabilities need no_new_privs to be harmless; clear them anyway, except
        // the ones the policy keeps, which are raised again if they were raised.
        let mut kept_ambient = 0u64;
        for &(cap, _) in DROPPED_CAPABILITIES {
            let is_set = libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            );
            if dropped & (1u64 << cap) == 0 && is_set == 1 {
                kept_ambient |= 1u64 << cap;
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        clear_capability_sets(dropped)?;
        for cap in (0..64u32).filter(|cap| kept_ambient & (1u64 << cap) != 0) {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            );
        }
    }
    Ok(())
}

/// Takes the capabilities of `dropped` out of this thread's effective, permitted and
/// inheritable sets (`capget`, then `capset`). Returns the errno of a failure.
///
/// # Safety
/// Raw system calls only; safe to call in a freshly forked child.
unsafe fn clear_capability_sets(dropped: u64) -> Result<(), i32> {
    // SAFETY: capget and capset with pointers to locals of the layout the kernel expects for
    // version 3.
    unsafe {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(errno());
        }
        for cap in (0..64u32).filter(|cap| dropped & (1u64 << cap) != 0) {
            let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
            data[word].effective &= !bit;
            data[word].permitted &= !bit;
            data[word].inheritable &= !bit;
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(errno());
        }
    }
    Ok(())
}

/// This thread's errno.
fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every capability a policy may keep is one the launcher drops otherwise.
    #[test]
    fn keepable_capabilities_are_dropped_ones() {
        for &(name, cap) in netjail_policy::NETWORK_CAPABILITIES {
            assert!(
                DROPPED_CAPABILITIES.contains(&(cap, name)),
                "{name} ({cap}) can be kept but is never dropped"
            );
        }
    }

    #[test]
    fn kept_capabilities_leave_the_mask() {
        let all = dropped_capability_mask(&[]);
        for &(cap, _) in DROPPED_CAPABILITIES {
            assert_ne!(all & (1 << cap), 0);
        }
        let mask = dropped_capability_mask(&[13, 10]);
        for (cap, name) in [
            (27, "CAP_MKNOD"),
            (22, "CAP_SYS_BOOT"),
            (40, "CAP_CHECKPOINT_RESTORE"),
        ] {
            assert!(DROPPED_CAPABILITIES.contains(&(cap, name)), "{name}");
            assert_ne!(mask & (1 << cap), 0, "{name} kept");
        }
        // What ordinary programs need stays: CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID.
        for cap in [0, 1, 3, 5, 6, 7] {
            assert_eq!(all & (1 << cap), 0, "capability {cap} dropped");
        }
        assert_eq!(mask, all & !(1 << 13) & !(1 << 10));
        assert_eq!(
            dropped_capability_mask(&[5]),
            all,
            "not ours to keep or drop"
        );
    }
}
