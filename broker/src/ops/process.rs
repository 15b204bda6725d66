//! Calls that change the resource limits, scheduling or CPUs of the thread or process their
//! pid argument names (invariant 10: a sandbox holds no power outside its network policy).
//!
//! `prlimit64` with a new limit, `sched_setaffinity`, `sched_setattr`, `sched_setparam`,
//! `sched_setscheduler`, and `setpriority` / `ioprio_set` of one process: the kernel lets a
//! process change them for any process of its own user (and, with `CAP_SYS_NICE` or
//! `CAP_SYS_RESOURCE`, which root sandboxes keep, for any process), and no Landlock scope
//! covers them, so a sandbox could kill the broker (`RLIMIT_CPU` of 0), starve it of
//! descriptors, or put it at the bottom of the scheduler. The filter keeps a pid of 0 (the
//! caller itself) in the kernel; every other pid comes here, and the call goes on only when
//! the pid names a thread of the caller's own thread group. A call that names another process
//! is refused with `EPERM`, one that names no process with the kernel's `ESRCH` where the
//! broker can tell (a caller of its own pid namespace).

use std::fs;
use std::io;
use std::path::Path;

use netjail_policy::{Decision, Verdict};

use crate::call::{Call, Step};
use crate::ops::decode::ProcessCall;
use crate::reply::{errno_of, Outcome, Reply};

/// Audit rule of a call that names a thread of the caller's own thread group.
pub(crate) const RULE_OWN: &str = "process:own-thread-group";
/// Audit rule of a call that names a process outside the caller's thread group.
pub(crate) const RULE_OTHER: &str = "process:other-process";

/// Where the pid of a call points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A thread of the caller's thread group.
    Own,
    /// Another process, or one the broker cannot place.
    Other,
    /// No process at all (a caller of the broker's pid namespace only).
    Nobody,
}

/// Decides `which`, a call the filter notified because its pid argument is not 0.
pub(crate) fn decide(call: &Call, which: ProcessCall) -> Step {
    let notif = call.notif;
    let mut outcome = Outcome::new(which.name());
    // The filter notifies setpriority and ioprio_set of one process only; anything else here
    // is a filter this broker did not compile: refuse.
    if let Some(one) = which.one_process() {
        if notif.args[0] & 0xffff_ffff != one {
            return Step::Done(outcome.failed(libc::EPERM, "not-one-process"));
        }
    }
    // A pid is an `int` in the kernel, which drops the high half of the register.
    let pid = notif.args[which.pid_argument()] as u32 as i32;
    outcome.endpoint = format!("pid:{pid}");
    if pid == 0 {
        // 0 with garbage in the high half: the caller itself, as the kernel reads it.
        return Step::Done(outcome.decided(None, "self", Reply::Continue));
    }
    if pid < 0 {
        // No task has a negative pid: the kernel answers EINVAL or ESRCH and changes nothing.
        return Step::Done(outcome.decided(None, "no-process", Reply::Continue));
    }
    let target = match target_of(call.notif.pid, pid) {
        Ok(t) => t,
        Err(e) if !call.still_valid() => {
            tracing::debug!(error = %e, "caller gone while its thread group was read");
            return Step::Done(outcome.gone());
        }
        Err(e) => return Step::Done(outcome.failed(errno_of(&e), "no-thread-group")),
    };
    // What was read names the caller's thread group only if the caller still waits in this
    // very call (invariant 4): its tid was not given to another thread meanwhile.
    if !call.still_valid() {
        return Step::Done(outcome.gone());
    }
    let step = match target {
        Target::Own => outcome.decided(Some(allowed()), "", Reply::Continue),
        Target::Other => {
            let refusal = crate::reply::refusal(RULE_OTHER, libc::EPERM);
            outcome.decided(Some(refusal), "", Reply::Errno(libc::EPERM))
        }
        Target::Nobody => outcome.decided(None, "no-process", Reply::Errno(libc::ESRCH)),
    };
    Step::Done(step)
}

fn allowed() -> Decision {
    Decision {
        verdict: Verdict::Allow,
        rule: RULE_OWN.to_owned(),
        host: None,
    }
}

/// Where `pid`, as the caller `tid` names it in its own pid namespace, points.
///
/// A caller of the broker's pid namespace names threads by the ids `/proc` uses:
/// `/proc/TGID/task/PID` exists exactly when `PID` is a thread of the group `TGID` (the kernel's
/// lookup there checks the thread group). A caller of a pid namespace below it names them by
/// the last `NSpid` entry of each thread, which the threads of one group share the namespace
/// of: the group's threads are read one by one.
fn target_of(tid: u32, pid: i32) -> io::Result<Target> {
    let status = fs::read_to_string(format!("/proc/{tid}/status"))?;
    let (tgid, nested) =
        thread_group(&status).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    if !nested {
        if Path::new(&format!("/proc/{tgid}/task/{pid}")).exists() {
            return Ok(Target::Own);
        }
        return Ok(if Path::new(&format!("/proc/{pid}")).exists() {
            Target::Other
        } else {
            Target::Nobody
        });
    }
    for entry in fs::read_dir(format!("/proc/{tgid}/task"))? {
        let name = entry?.file_name();
        let Some(thread) = name.to_str() else {
            continue;
        };
        // A thread that exited meanwhile is not the one named.
        let Ok(status) = fs::read_to_string(format!("/proc/{tgid}/task/{thread}/status")) else {
            continue;
        };
        if own_pid(&status) == Some(pid) {
            return Ok(Target::Own);
        }
    }
    Ok(Target::Other)
}

/// `Tgid`, and whether `NSpid` names more than one pid namespace (the caller's is below the
/// broker's), from a `/proc/TID/status`.
fn thread_group(status: &str) -> Option<(i32, bool)> {
    let mut tgid = None;
    let mut nested = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Tgid:") {
            tgid = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("NSpid:") {
            nested = Some(rest.split_whitespace().count() > 1);
        }
    }
    Some((tgid?, nested?))
}

/// The thread's id in its own pid namespace: the last `NSpid` entry.
fn own_pid(status: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let nested = "Name:\tx\nTgid:\t4242\nPid:\t4243\nNSpid:\t4243\t7\n";
        assert_eq!(thread_group(nested), Some((4242, true)));
        assert_eq!(own_pid(nested), Some(7));
        let flat = "Tgid:\t10\nNSpid:\t11\n";
        assert_eq!(thread_group(flat), Some((10, false)));
        assert_eq!(own_pid(flat), Some(11));
        assert_eq!(thread_group("Tgid:\t10\n"), None);
    }

    /// The broker's own threads: this test's thread is in its group, pid 1 is not, and a
    /// pid past `pid_max` names nobody.
    #[test]
    fn own_threads_and_others() {
        let me = std::process::id();
        let tid = crate::sys::gettid();
        assert_eq!(target_of(tid as u32, me as i32).unwrap(), Target::Own);
        assert_eq!(target_of(me, tid).unwrap(), Target::Own);
        assert_eq!(target_of(me, 1).unwrap(), Target::Other);
        assert_eq!(target_of(me, i32::MAX).unwrap(), Target::Nobody);
    }
}
