//! The listener task of a sandbox, and the one place where replies are sent and audit events
//! written. Handlers of single operations (`connect.rs`, `unix.rs`) return an [`Outcome`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use netjail_policy::{Decision, Verdict};

use crate::decode::{self, Syscall};
use crate::sandbox::Sandbox;
use crate::sys::{self, RawNotification};
use crate::{audit, connect};

/// What the caller's system call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Success with this return value.
    Value(i64),
    /// Failure with this (positive) errno.
    Errno(i32),
}

/// One notification being handled.
pub(crate) struct Call<'a> {
    pub sandbox: &'a Sandbox,
    pub notif: RawNotification,
    /// A pidfd of the calling thread, opened as soon as the notification arrived.
    pub pidfd: OwnedFd,
}

impl Call<'_> {
    /// `NOTIF_ID_VALID`: the caller is still blocked in this very call.
    pub fn still_valid(&self) -> bool {
        sys::notif_id_valid(self.sandbox.listener.get_ref().as_fd(), self.notif.id)
    }
}

/// What a handler decided and what the caller gets.
pub(crate) struct Outcome {
    pub op: &'static str,
    pub endpoint: String,
    /// The policy's decision; `None` when the call failed before the policy ran.
    pub decision: Option<Decision>,
    /// Why the call failed before a decision (`bad-fd`, `bad-address`, ...).
    pub failure: &'static str,
    /// `None`: the caller is gone; there is nobody to answer.
    pub reply: Option<Reply>,
}

impl Outcome {
    pub fn new(op: &'static str) -> Self {
        Outcome {
            op,
            endpoint: String::new(),
            decision: None,
            failure: "",
            reply: None,
        }
    }

    /// The call failed before the policy ran (bad fd, bad pointer, ...).
    pub fn failed(mut self, errno: i32, why: &'static str) -> Self {
        self.decision = None;
        self.failure = why;
        self.reply = Some(Reply::Errno(errno));
        self
    }

    /// The caller went away while we looked.
    pub fn gone(mut self) -> Self {
        self.reply = None;
        self
    }

    pub fn decided(
        mut self,
        decision: Option<Decision>,
        failure: &'static str,
        reply: Reply,
    ) -> Self {
        self.decision = decision;
        self.failure = failure;
        self.reply = Some(reply);
        self
    }
}

/// The errno of an I/O error, `EIO` when it has none.
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Runs `f`, which may block (a connect on a blocking socket, a path lookup), without
/// stalling a runtime worker: on a multi-thread runtime the worker hands its other tasks to
/// another thread and this one runs `f` at once, so the call pays no thread hop. Elsewhere (a
/// blocking-pool thread) it just runs `f`.
pub(crate) fn may_block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn multi_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        .unwrap_or(false)
}

/// Runs until every task of the sandbox has exited (`POLLHUP` on the listener).
pub(crate) async fn listen(sandbox: Arc<Sandbox>) {
    loop {
        let mut guard = match sandbox.listener.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(sandbox = %sandbox.id, error = %e, "listener failed");
                break;
            }
        };
        // NOTIF_RECV blocks whatever O_NONBLOCK says: ask poll first, every time.
        let state = match sys::poll_in(sandbox.listener.get_ref().as_fd()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(sandbox = %sandbox.id, error = %e, "poll of listener failed");
                break;
            }
        };
        if state.readable {
            // Bound the calls in flight before taking one more from the kernel.
            let permit = match sandbox.in_flight.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => break,
            };
            match sys::notif_recv(sandbox.listener.get_ref().as_fd()) {
                Ok(notif) => {
                    let received = Instant::now();
                    let sb = sandbox.clone();
                    // Deciding makes only non-blocking system calls: it runs on a task of its
                    // own, and only the call it performs leaves the worker (`may_block`). A
                    // current-thread runtime has no worker to spare: the blocking pool does all.
                    if multi_thread() {
                        tokio::spawn(async move {
                            handle(&sb, notif, received);
                            drop(permit);
                        });
                    } else {
                        tokio::task::spawn_blocking(move || {
                            handle(&sb, notif, received);
                            drop(permit);
                        });
                    }
                }
                // The caller was killed between poll and receive.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    tracing::error!(sandbox = %sandbox.id, error = %e, "receive failed");
                    break;
                }
            }
            continue;
        }
        if state.hangup {
            break;
        }
        guard.clear_ready();
    }
    audit::retired(sandbox.id, &sandbox.name, sandbox.decisions());
}

/// Handles one notification from start to reply.
fn handle(sandbox: &Sandbox, notif: RawNotification, received: Instant) {
    let listener = sandbox.listener.get_ref().as_fd();
    // Invariant 4: the pid becomes a pidfd at once.
    let pidfd = match sys::pidfd_open_thread(notif.pid) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(sandbox = %sandbox.id, pid = notif.pid, error = %e, "caller gone");
            return;
        }
    };
    let call = Call {
        sandbox,
        notif,
        pidfd,
    };
    let outcome = match decode::syscall(notif.arch, notif.nr) {
        Some(Syscall::Connect) => connect::handle(&call),
        None => Outcome::new("unknown").failed(libc::ENOSYS, "unknown-syscall"),
    };
    let Some(reply) = outcome.reply else {
        return;
    };
    let (val, errno) = match reply {
        Reply::Value(v) => (v, 0),
        Reply::Errno(e) => (0, e),
    };
    if let Err(e) = sys::notif_send(listener, notif.id, val, errno) {
        // ENOENT: the caller was killed while we worked.
        tracing::debug!(sandbox = %sandbox.id, error = %e, "reply not delivered");
    }
    let latency_us = received.elapsed().as_micros() as u64;
    // Reading the exe costs the caller nothing, but CPU all the same: only when someone listens.
    let program = if tracing::enabled!(target: audit::TARGET, tracing::Level::INFO) {
        program_of(&call)
    } else {
        String::new()
    };
    sandbox.count_decision();
    let decision = outcome.decision.as_ref();
    let verdict = match decision.map(|d| d.verdict) {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Deny { .. }) => "deny",
        None => "error",
    };
    audit::decision(&audit::DecisionEvent {
        sandbox: sandbox.id,
        name: &sandbox.name,
        pid: notif.pid,
        program: &program,
        op: outcome.op,
        endpoint: &outcome.endpoint,
        decision: verdict,
        rule: decision.map(|d| d.rule.as_str()).unwrap_or(outcome.failure),
        errno,
        latency_us,
    });
}

/// The caller's executable, read after the reply so that the caller does not wait for it. The
/// pid names the caller only while the caller lives: the pidfd is asked after the read, and a
/// caller that died meanwhile is reported as `?`.
fn program_of(call: &Call<'_>) -> String {
    let exe = std::fs::read_link(format!("/proc/{}/exe", call.notif.pid));
    match (exe, sys::pidfd_alive(call.pidfd.as_fd())) {
        (Ok(p), true) => p.display().to_string(),
        _ => "?".to_string(),
    }
}
