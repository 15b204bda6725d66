//! One notification being handled ([`Call`]): the caller, its policy, the broker's copies of
//! what it named, and what a handler returns ([`Step`]). Operations take a `Call` and return a
//! `Step`; the receiver (`receiver/mod.rs`) makes the `Call` and sends the reply.

use std::cell::Cell;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use netjail_policy::{Decision, Policy, Request, Verdict};

use crate::bounds;
use crate::bounds::reaper::{self, Blocking, CallerFd};
use crate::caller::pidfds::CallerPidfd;
use crate::operators::CallerRef;
use crate::ops::decode::MAX_SOCKADDR_LEN;
use crate::receiver::audit;
use crate::reply::{errno_of, Outcome};
use crate::restart::journal::Kept;
use crate::sandbox::Sandbox;
use crate::sys::{self, RawNotification, SocketKind};

thread_local! {
    /// Set on receiver threads, which must never wait for an operator.
    static RECEIVER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a sandbox's receiver: a call it decides never waits for an
/// operator there.
pub(crate) fn mark_receiver_thread() {
    RECEIVER.with(|r| r.set(true));
}

/// One notification being handled.
pub(crate) struct Call {
    pub sandbox: Arc<Sandbox>,
    /// The sandbox's policy when the call arrived: a reload in the middle of the call does
    /// not change what decides it.
    pub policy: Arc<Policy>,
    pub notif: RawNotification,
    /// A pidfd of the calling thread: the one the sandbox keeps for its tid, or one opened as
    /// soon as the notification arrived (see `caller/pidfds.rs` for why both are as good).
    pub pidfd: CallerPidfd,
    /// When the notification was received.
    pub received: Instant,
    /// What the operators' side did with the call (held and answered, ruled...), for the
    /// audit; empty when the policy decided alone.
    pub note: Mutex<String>,
    /// An earlier broker had received this call and may have performed it before it stopped
    /// (`restart/journal.rs`): performing it again must accept finding it done.
    pub replayed: bool,
    /// Its record in the sandbox's journal while it is on the blocking pool; cleared when the
    /// call is dropped, after its reply.
    pub kept: Option<Kept>,
    /// The caller's executable for the audit, read when the call is decided (or, for a call
    /// refused before that, when it is answered): while the caller waits in it, for a caller
    /// may exit as soon as it has its answer, or be killed while its call is held. Empty
    /// while not read; `None` when it could not be.
    pub exe: OnceLock<Option<String>>,
    /// `NOTIF_ID_VALID` said the caller still waited after `exe` was read: the pid named the
    /// caller when it was read.
    pub seen_after_exe: AtomicBool,
    /// How the host program serves this call: the socket its hook answered with
    /// (`HookVerdict::Serve`), or the server of the run-time rule that covers it, until
    /// `ops/served.rs` puts a socket in the caller; dropped with the call otherwise.
    pub served: Mutex<Option<crate::hook::Served>>,
}

/// A call an earlier broker had received and not answered, with its record in the journal.
pub(crate) use crate::restart::journal::Waiting as Replay;

impl Call {
    /// Decides `request` by the sandbox's policy; a call the policy asks about is decided by
    /// operators (held until one answers), so that the decision returned is never `Ask`.
    pub(crate) fn evaluate(&self, request: &Request) -> Decision {
        let sandbox = &self.sandbox;
        let decision = if sandbox.hook.is_none() && sandbox.rules_empty() {
            self.policy.evaluate_with(request, &sandbox.names)
        } else {
            let mut layer = |canonical: &Request| {
                // The lock is not held while the hook runs: the hook may wait for the very
                // program that is changing the rules.
                if let Some(d) = sandbox.rules_decide(canonical, &self.served) {
                    return Some(d);
                }
                let hook = sandbox.hook.as_ref()?;
                crate::hook::ask_hook(
                    hook.as_ref(),
                    sandbox.id,
                    &sandbox.name,
                    self.notif.pid as i32,
                    canonical,
                    &self.served,
                )
            };
            self.policy
                .evaluate_layered(request, &sandbox.names, &mut layer)
        };
        if decision.verdict != Verdict::Ask {
            return decision;
        }
        let still_valid = || self.still_valid();
        let caller = CallerRef {
            pid: self.notif.pid as i32,
            still_valid: &still_valid,
        };
        let (decision, note) = if RECEIVER.with(Cell::get) {
            // Never reached: a sandbox whose policy may ask is served off its receiver.
            // Should it be, waiting here would stop every call of the sandbox: fail closed.
            tracing::error!(sandbox = %self.sandbox.id, "ask on a receiver thread; denied");
            let mut d = decision;
            d.verdict = Verdict::Deny { errno: libc::EPERM };
            (d, "refused: asked on the receiver thread".to_string())
        } else {
            self.sandbox
                .operators
                .decide(&self.sandbox.asking(), caller, request, decision)
        };
        let mut n = self.note.lock().unwrap_or_else(|p| p.into_inner());
        if !n.is_empty() {
            n.push_str("; ");
        }
        n.push_str(&note);
        decision
    }

    /// Whether the host program serves this call (its hook answered with a socket, or a
    /// run-time rule's server covers it) now that `decision` allows it.
    pub(crate) fn is_served(&self, decision: &Decision) -> bool {
        decision.verdict == Verdict::Allow
            && self
                .served
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }

    /// How the host program serves this call ([`Call::is_served`]), taken.
    pub(crate) fn take_served(&self) -> Option<crate::hook::Served> {
        self.served.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// `NOTIF_ID_VALID`: the caller is still blocked in this very call.
    pub(crate) fn still_valid(&self) -> bool {
        let valid = sys::notif_id_valid(self.sandbox.listener.as_fd(), self.notif.id);
        if valid && self.exe.get().is_some() {
            self.seen_after_exe.store(true, Ordering::Relaxed);
        }
        valid
    }

    /// Reads the caller's executable (`/proc/TID/exe`) when an audit event or a watcher
    /// will name it, unless it was read already.
    pub(crate) fn read_exe(&self) {
        let ops = &self.sandbox.operators;
        if self.exe.get().is_none()
            && (tracing::enabled!(target: audit::TARGET, tracing::Level::INFO)
                || ops.wants_decisions())
        {
            let _ = self.exe.set(caller_exe(self.notif.pid));
        }
    }

    /// The broker's copy of the caller's fd (`pidfd_getfd`; `EBADF` for a closed one), closed
    /// as a blocking call of this call ([`CallerFd`]).
    pub(crate) fn take_fd(&self, fd: i32) -> Result<CallerFd, (i32, &'static str)> {
        match sys::pidfd_getfd(self.pidfd.as_fd(), fd) {
            // A kept pidfd whose thread exited: its tid is the caller's again.
            Err(e)
                if e.raw_os_error() == Some(libc::ESRCH)
                    && self
                        .pidfd
                        .refresh(&self.sandbox.pidfds, || self.still_valid()) =>
            {
                sys::pidfd_getfd(self.pidfd.as_fd(), fd)
            }
            taken => taken,
        }
        .map_err(|e| match e.raw_os_error() {
            // The broker has no descriptor to spare: not the caller's fault, and temporary.
            Some(libc::EMFILE | libc::ENFILE) => (bounds::FDS_ERRNO, bounds::RULE_FDS),
            _ => (errno_of(&e), "bad-fd"),
        })
        .map(|copy| self.copied(copy))
    }

    /// `fd`, a copy the broker took of one of the caller's descriptors ([`CallerFd`]).
    pub(crate) fn copied(&self, fd: std::os::fd::OwnedFd) -> CallerFd {
        CallerFd::new(&self.sandbox, self.notif.id, fd)
    }

    /// Lists the calling thread as performing a system call for this call that may block
    /// (`bounds/reaper.rs`), until the returned guard is dropped.
    pub(crate) fn blocking(&self) -> Blocking {
        reaper::blocking(&self.sandbox, self.notif.id)
    }

    /// The broker's copy of the caller's socket and what it is, with the errnos of the
    /// kernel's `sockfd_lookup`: `EBADF`, then `ENOTSOCK`.
    pub(crate) fn socket(&self, fd: i32) -> Result<(CallerFd, SocketKind), (i32, &'static str)> {
        let sock = self.take_fd(fd)?;
        let kind = sys::socket_kind(sock.as_fd()).map_err(|e| (errno_of(&e), "not-a-socket"))?;
        Ok((sock, kind))
    }

    /// Copies the `len`-byte address at `ptr` out of the caller, with the errnos of the
    /// kernel's `move_addr_to_kernel`: `EINVAL` for a negative or too long length, `EFAULT`
    /// for memory that cannot be read.
    pub(crate) fn copy_sockaddr(&self, ptr: u64, len: i32) -> Result<Vec<u8>, (i32, &'static str)> {
        if len < 0 || len as usize > MAX_SOCKADDR_LEN {
            return Err((libc::EINVAL, "bad-length"));
        }
        let mut addr = vec![0u8; len as usize];
        sys::read_memory(self.notif.pid, ptr, &mut addr)
            .map_err(|e| (errno_of(&e), "bad-address"))?;
        Ok(addr)
    }
}

impl crate::caller::Notified for Call {
    fn tid(&self) -> u32 {
        self.notif.pid
    }

    fn still_waiting(&self) -> bool {
        self.still_valid()
    }
}

/// Work that may wait, run on the blocking pool.
pub(crate) type Work = Box<dyn FnOnce(&Call) -> Outcome + Send>;

/// What a handler returns.
pub(crate) enum Step {
    /// Decided, and performed if allowed.
    Done(Outcome),
    /// The rest may wait: run it off the receiver thread.
    Blocking(Work),
}

/// The executable of thread `tid` (`/proc/TID/exe`), or `None` when it cannot be read.
fn caller_exe(tid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{tid}/exe"))
        .ok()
        .map(|p| p.display().to_string())
}
