//! The receiver of a sandbox, and the one place where replies are sent and audit events
//! written. Handlers of single operations (`ops/connect.rs`, `ops/unix.rs`) return a [`Step`].
//!
//! Each sandbox has a receiver thread of its own that waits in `poll` on the listener. With
//! `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP` the kernel hands the CPU straight from the caller to
//! that thread, which decides (non-blocking system calls only) and performs what cannot wait
//! long, so an allowed call costs one round trip and the call itself. Work that may wait (a
//! path lookup, a blocking connect to a remote host) goes to the runtime's blocking pool,
//! bounded per sandbox and for the whole broker (`bounds/mod.rs`). A sandbox can therefore slow
//! down only its own receiver (invariant 7), and every call it makes is answered: one that the
//! broker cannot serve for want of a resource gets an errno, never silence.

pub(crate) mod audit;

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use netjail_policy::{Decision, Verdict};
use netjail_protocol::control::{DecisionInfo, Event};

use crate::bounds::{self, Refused};
use crate::call::{self, Call, Replay, Step, Work};
use crate::caller::pidfds::CallerPidfd;
use crate::operators;
use crate::ops::decode::{self, Syscall};
use crate::reply::{Outcome, Reply};
use crate::restart::journal::Kept;
use crate::sandbox::Sandbox;
use crate::sys::{self, RawNotification};
use crate::{
    bounds::limits, ops::bind, ops::connect, ops::process, ops::send, ops::socket, ops::sockopt,
};

/// Stack of a receiver thread: decisions and audit formatting need little.
const RECEIVER_STACK: usize = 256 * 1024;

/// Starts the receiver thread of `sandbox`, which first hands the calls of `replays` to the
/// blocking pool; `on_exit` runs when every task of the sandbox has exited (`POLLHUP` on the
/// listener; with `true`) or the broker stops (`false`).
pub(crate) fn start(
    sandbox: Arc<Sandbox>,
    runtime: tokio::runtime::Handle,
    replays: Vec<Replay>,
    on_exit: impl FnOnce(bool) + Send + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("netjail-{}", sandbox.id))
        .stack_size(RECEIVER_STACK)
        .spawn(move || {
            call::mark_receiver_thread();
            for (notif, kept) in replays {
                replay(&sandbox, &runtime, notif, kept);
            }
            let ended = receive(&sandbox, &runtime);
            if ended {
                // Every task of the sandbox has exited: nothing of it can wait any more.
                if let Some(journal) = &sandbox.journal {
                    journal.remove();
                }
                sandbox.operators.sandbox_ended(sandbox.id);
            }
            drain(&sandbox, ended);
            audit::retired(
                sandbox.id,
                &sandbox.name,
                sandbox.container.as_deref().unwrap_or(""),
                sandbox.decisions(),
            );
            on_exit(ended);
        })?;
    Ok(())
}

/// How often a receiver that waits for its calls on the blocking pool looks again at how
/// many of them are held for operators (a call becoming held gives back no place).
const DRAIN_LOOK: Duration = Duration::from_millis(50);

/// Waits until the sandbox's calls on the blocking pool have been answered, so that their
/// decisions are audited before the sandbox's retirement (and before operators are told it is
/// gone). Once every task of the sandbox has exited (`ended`), that is within moments: a
/// held call ends at once (`Operators::sandbox_ended`), a connect or send in progress is
/// stopped (`bounds/reaper.rs`). A broker that stops does not wait for calls held for operators:
/// they stay on record for the next broker, and are never answered by this one.
fn drain(sandbox: &Sandbox, ended: bool) {
    let held = || {
        if ended {
            0
        } else {
            sandbox.operators.pending_of(sandbox.id) as usize
        }
    };
    sandbox.in_flight.wait_down_to(held, DRAIN_LOOK);
}

/// Receives and dispatches until the sandbox ends (true) or the broker stops or the listener
/// fails (false; a stopping broker leaves the journal for its successor).
fn receive(sandbox: &Arc<Sandbox>, runtime: &tokio::runtime::Handle) -> bool {
    let listener = sandbox.listener.as_fd();
    let mut pace = Pace::new();
    loop {
        // NOTIF_RECV blocks whatever O_NONBLOCK says: wait in poll, which also reports the
        // end of the sandbox; unless a call is known to be waiting already (`Pace`).
        let polled = if pace.skip_poll() {
            Ok(sys::PollState {
                readable: true,
                hangup: false,
                stopped: false,
            })
        } else {
            sys::poll_wait(listener, sandbox.stop.as_fd())
        };
        let state = match polled {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(sandbox = %sandbox.id, error = %e, "poll of listener failed");
                return false;
            }
        };
        if state.stopped {
            // The broker stops: leaving drops the last reference to the listener, and the
            // kernel then fails the sandbox's pending and later calls (fail closed).
            tracing::debug!(sandbox = %sandbox.id, "broker stopping; receiver leaves");
            return false;
        }
        if state.readable {
            let received = match &sandbox.journal {
                Some(journal) => journal.receive(listener),
                None => sys::notif_recv(listener),
            };
            match received {
                Ok(notif) => {
                    let check = pace.check_now();
                    let more = dispatch(sandbox, runtime, notif, check);
                    pace.after(check, more, sandbox.id);
                }
                // The caller was killed between poll and receive; with the hang-up also
                // reported, nobody is left to call again (a container's tasks all exited):
                // retire instead of polling a listener that stays readable-looking.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    pace.unknown();
                    if state.hangup {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => pace.unknown(),
                Err(e) => {
                    tracing::error!(sandbox = %sandbox.id, error = %e, "receive failed");
                    return false;
                }
            }
        } else if state.hangup {
            return true;
        }
    }
}

/// How a receiver keeps up with a deep queue: one sandbox with thousands of threads calling
/// at once (invariant 7).
///
/// The kernel's `poll` of a listener walks its pending notifications until it has seen one not
/// yet received and one received and not answered; with none of the latter (the receiver
/// answered the last one inline), it walks the whole queue, under the lock the sandbox's
/// callers need to queue more. So every eighth call, and every call while a queue is seen,
/// the receiver asks `poll` with no timeout *before* answering the call in hand, which stops
/// at the second entry; when another call waits, the next `NOTIF_RECV` cannot block (the
/// kernel counts one per notification queued), and the blocking `poll` is skipped, but for one
/// in [`Pace::FULL_POLL_EVERY`], which also sees the broker stopping.
///
/// A receiver that keeps finding a queue ([`Pace::YIELD_AFTER`] calls in a row) lowers its
/// own thread's priority to nice [`Pace::YIELD_NICE`] until the queue is gone: the CPUs go
/// to the other sandboxes' receivers first, and the flooding sandbox's calls wait in the
/// kernel, its threads blocked. Only a broker that may raise it again (root, `CAP_SYS_NICE`)
/// does so.
struct Pace {
    calls: u64,
    /// A call was seen waiting after the last one was received.
    more: bool,
    /// Calls in a row that found another waiting.
    queued_run: u32,
    /// Blocking polls skipped since the last one.
    skipped: u32,
    yielded: bool,
    may_yield: bool,
}

impl Pace {
    /// Without a queue seen, one call in this many checks for one.
    const CHECK_EVERY: u64 = 8;
    /// Calls in a row that found a queue before the receiver yields.
    const YIELD_AFTER: u32 = 32;
    /// The nice value of a receiver that yields.
    const YIELD_NICE: i32 = 19;
    /// With a queue, one blocking `poll` in this many (it sees the broker stopping).
    const FULL_POLL_EVERY: u32 = 64;

    fn new() -> Pace {
        Pace {
            calls: 0,
            more: false,
            queued_run: 0,
            skipped: 0,
            yielded: false,
            may_yield: sys::geteuid() == 0,
        }
    }

    fn skip_poll(&mut self) -> bool {
        if self.more && self.skipped < Pace::FULL_POLL_EVERY {
            self.skipped += 1;
            true
        } else {
            self.skipped = 0;
            false
        }
    }

    /// Whether the call just received should look for another waiting.
    fn check_now(&mut self) -> bool {
        self.calls += 1;
        self.more || self.calls.is_multiple_of(Pace::CHECK_EVERY)
    }

    /// After a call: whether it looked (`checked`) and found another waiting (`more`).
    fn after(&mut self, checked: bool, more: bool, sandbox: netjail_protocol::SandboxId) {
        if !checked {
            self.more = false;
            return;
        }
        self.more = more;
        if more {
            self.queued_run = self.queued_run.saturating_add(1);
            if !self.yielded && self.may_yield && self.queued_run >= Pace::YIELD_AFTER {
                match sys::set_thread_nice(Pace::YIELD_NICE) {
                    Ok(()) => {
                        self.yielded = true;
                        tracing::debug!(sandbox = %sandbox, "calls queue up: the receiver yields the CPU to other sandboxes");
                    }
                    Err(e) => {
                        self.may_yield = false;
                        tracing::debug!(sandbox = %sandbox, error = %e, "cannot lower the receiver's priority");
                    }
                }
            }
        } else {
            self.queued_run = 0;
            if self.yielded {
                self.yielded = false;
                if let Err(e) = sys::set_thread_nice(0) {
                    self.may_yield = false;
                    tracing::warn!(sandbox = %sandbox, error = %e, "cannot restore the receiver's priority");
                }
            }
        }
    }

    /// A receive that gave no call: nothing is known about the queue.
    fn unknown(&mut self) {
        self.more = false;
    }
}

/// Decides again, on the blocking pool, a call an earlier broker had received: it is still
/// waiting (the journal checked `NOTIF_ID_VALID`), and it is not counted against the rate
/// limit a second time.
fn replay(
    sandbox: &Arc<Sandbox>,
    runtime: &tokio::runtime::Handle,
    notif: RawNotification,
    kept: Kept,
) {
    let received = Instant::now();
    let Some(pidfd) = caller_pidfd(sandbox, notif, received) else {
        return;
    };
    let active = sandbox.active();
    let call = Call {
        sandbox: sandbox.clone(),
        policy: active.policy,
        notif,
        pidfd,
        received,
        note: Mutex::new(String::new()),
        replayed: true,
        kept: Some(kept),
        exe: OnceLock::new(),
        seen_after_exe: AtomicBool::new(false),
        served: Mutex::new(None),
    };
    let work: Work = Box::new(|call: &Call| match decide(call) {
        Step::Done(outcome) => outcome,
        Step::Blocking(work) => work(call),
    });
    run_blocking(sandbox, runtime, call, work);
}

/// Decides a call just received. With `check`, a call answered here looks first (before its
/// reply, see [`Pace`]) whether another one waits, and says so.
fn dispatch(
    sandbox: &Arc<Sandbox>,
    runtime: &tokio::runtime::Handle,
    notif: RawNotification,
    check: bool,
) -> bool {
    let received = Instant::now();
    if let Some(bucket) = &sandbox.limits.rate {
        let taken = bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(received);
        if let Err(due) = taken {
            let more = check && sys::poll_ready(sandbox.listener.as_fd());
            refuse_rate(sandbox, notif, received, due);
            return more;
        }
    }
    // Invariant 4: the pid becomes a pidfd at once (or is the tid's kept one: `caller/pidfds.rs`).
    let Some(pidfd) = caller_pidfd(sandbox, notif, received) else {
        return false;
    };
    let active = sandbox.active();
    let call = Call {
        sandbox: sandbox.clone(),
        policy: active.policy,
        notif,
        pidfd,
        received,
        note: Mutex::new(String::new()),
        replayed: false,
        kept: None,
        exe: OnceLock::new(),
        seen_after_exe: AtomicBool::new(false),
        served: Mutex::new(None),
    };
    if active.slow_path {
        // The policy may hold a call for an operator or look a name up: decide every call
        // of this sandbox on the blocking pool, so that its receiver keeps receiving.
        let work: Work = Box::new(|call: &Call| match decide(call) {
            Step::Done(outcome) => outcome,
            Step::Blocking(work) => work(call),
        });
        run_blocking(sandbox, runtime, call, work);
        return false;
    }
    match decide(&call) {
        Step::Done(outcome) => {
            // Asked while this call is unanswered: the kernel's walk stops at once.
            let more = check && sys::poll_ready(sandbox.listener.as_fd());
            finish(&call, outcome);
            more
        }
        Step::Blocking(work) => {
            run_blocking(sandbox, runtime, call, work);
            false
        }
    }
}

/// A call past `max_calls_per_second`: `EAGAIN` at once, nothing decoded or performed (a
/// `socket()` the policy refuses gets its refusal's errno instead, which costs nothing). The
/// audit line (and the operators' event) is written at most once a second per sandbox, with
/// the number of calls refused since the previous one (`due`).
fn refuse_rate(sandbox: &Sandbox, notif: RawNotification, received: Instant, due: Option<u64>) {
    // A socket() the policy refuses gets its refusal, which needs no work, not EAGAIN.
    let errno = socket::refusal_of(&sandbox.active().policy, notif).unwrap_or(limits::RATE_ERRNO);
    if let Err(e) = sys::notif_send(sandbox.listener.as_fd(), notif.id, 0, errno) {
        tracing::debug!(sandbox = %sandbox.id, error = %e, "reply not delivered");
    }
    sandbox.count_decision();
    let ops = &sandbox.operators;
    ops.count("deny");
    let op = op_of(notif);
    let latency_us = received.elapsed().as_micros() as u64;
    ops.metrics().observe(metrics_op(op), "deny", latency_us);
    let Some(refused) = due else {
        return;
    };
    let container = sandbox.container.as_deref().unwrap_or("");
    let rule = limits::RULE_RATE;
    let note = format!("{refused} calls refused since the last report");
    if ops.wants_decisions() {
        ops.publish(Event::Decision(DecisionInfo {
            time_ms: operators::now_ms(),
            sandbox: sandbox.id,
            name: sandbox.name.clone(),
            container: container.to_string(),
            pid: notif.pid as i32,
            program: String::new(),
            op: op.to_string(),
            endpoint: String::new(),
            host: String::new(),
            decision: "deny".to_string(),
            rule: format!("{rule} ({note})"),
            errno,
            latency_us: 0,
        }));
    }
    audit::rate_limited(&audit::RateLimitedEvent {
        sandbox: sandbox.id,
        name: &sandbox.name,
        container,
        pid: notif.pid,
        op,
        rule,
        errno,
        refused,
    });
}

/// The name of a notified call's operation, before anything of it is read.
fn op_of(notif: RawNotification) -> &'static str {
    match decode::syscall(notif.arch, notif.nr) {
        Some(Syscall::Connect) => "connect",
        Some(Syscall::Bind) => "bind",
        Some(Syscall::Listen) => "listen",
        Some(Syscall::SendTo) => "sendto",
        Some(Syscall::SendMsg) => "sendmsg",
        Some(Syscall::SendMmsg) => "sendmmsg",
        Some(Syscall::Socket) => "socket",
        Some(Syscall::SocketPair) => "socketpair",
        Some(Syscall::SetSockOpt) => "setsockopt",
        Some(Syscall::Process(call)) => call.name(),
        None => "unknown",
    }
}

/// The operation a call is counted under in the metrics: the process calls, which the audit
/// names one by one, as one (`process`).
fn metrics_op(op: &str) -> &str {
    if decode::ProcessCall::from_name(op).is_some() {
        "process"
    } else {
        op
    }
}

/// The caller's pidfd (invariant 4), or `None` when the call cannot go on: the caller is gone
/// (`ESRCH`: nobody to answer), or it was answered here: `EAGAIN` when the broker is out of
/// descriptors (`EMFILE`, `ENFILE`), `EPERM` when the pid names nobody the broker can see.
fn caller_pidfd(
    sandbox: &Sandbox,
    notif: RawNotification,
    received: Instant,
) -> Option<CallerPidfd> {
    let e = match CallerPidfd::for_call(&sandbox.pidfds, notif.pid) {
        Ok(fd) => return Some(fd),
        Err(e) => e,
    };
    let (rule, errno) = match e.raw_os_error() {
        Some(libc::ESRCH) => {
            tracing::debug!(sandbox = %sandbox.id, pid = notif.pid, error = %e, "caller gone");
            return None;
        }
        Some(libc::EMFILE | libc::ENFILE) => (bounds::RULE_FDS, bounds::FDS_ERRNO),
        _ => ("no-pidfd", libc::EPERM),
    };
    tracing::debug!(sandbox = %sandbox.id, pid = notif.pid, error = %e, rule, "cannot open the caller's pidfd; call refused");
    refuse_unread(sandbox, notif, received, rule, errno);
    None
}

/// Answers `errno` to a call refused by `rule` before anything of it was read (no caller
/// pidfd), with its audit event and metrics.
fn refuse_unread(
    sandbox: &Sandbox,
    notif: RawNotification,
    received: Instant,
    rule: &'static str,
    errno: i32,
) {
    if let Err(e) = sys::notif_send(sandbox.listener.as_fd(), notif.id, 0, errno) {
        tracing::debug!(sandbox = %sandbox.id, error = %e, "reply not delivered");
    }
    sandbox.count_decision();
    let ops = &sandbox.operators;
    let op = op_of(notif);
    let latency_us = received.elapsed().as_micros() as u64;
    // No decision was made: the call failed before the policy ran.
    let verdict = "error";
    ops.count(verdict);
    ops.metrics().observe(metrics_op(op), verdict, latency_us);
    ops.metrics().refused(rule);
    let container = sandbox.container.as_deref().unwrap_or("");
    if ops.wants_decisions() {
        ops.publish(Event::Decision(DecisionInfo {
            time_ms: operators::now_ms(),
            sandbox: sandbox.id,
            name: sandbox.name.clone(),
            container: container.to_string(),
            pid: notif.pid as i32,
            program: String::new(),
            op: op.to_string(),
            endpoint: String::new(),
            host: String::new(),
            decision: verdict.to_string(),
            rule: rule.to_string(),
            errno,
            latency_us,
        }));
    }
    audit::decision(&audit::DecisionEvent {
        sandbox: sandbox.id,
        name: &sandbox.name,
        container,
        pid: notif.pid,
        program: "",
        op,
        endpoint: "",
        decision: verdict,
        rule,
        host: "",
        operator: "",
        errno,
        latency_us,
    });
}

fn decide(call: &Call) -> Step {
    call.read_exe();
    let notif = call.notif;
    match decode::syscall(notif.arch, notif.nr) {
        Some(Syscall::Connect) => connect::decide(call),
        Some(Syscall::Bind) => bind::decide_bind(call),
        Some(Syscall::Listen) => bind::decide_listen(call),
        Some(Syscall::SendTo) => send::decide_sendto(call),
        Some(Syscall::SendMsg) => send::decide_sendmsg(call),
        Some(Syscall::SendMmsg) => send::decide_sendmmsg(call),
        Some(Syscall::Socket) => socket::decide_socket(call),
        Some(Syscall::SocketPair) => socket::decide_socketpair(call),
        Some(Syscall::SetSockOpt) => sockopt::decide_setsockopt(call),
        Some(Syscall::Process(which)) => process::decide(call, which),
        None => Step::Done(Outcome::new("unknown").failed(libc::ENOSYS, "unknown-syscall")),
    }
}

fn run_blocking(
    sandbox: &Arc<Sandbox>,
    runtime: &tokio::runtime::Handle,
    mut call: Call,
    work: Work,
) {
    // A place on the pool within the sandbox's bound and its share of the broker's
    // (`bounds/mod.rs`); this receiver waits for one a little, and meanwhile the sandbox's further
    // calls wait in the kernel. A call that gets none is answered `EAGAIN`.
    let place = match sandbox.in_flight.take(1, bounds::POOL_WAIT) {
        Ok(place) => place,
        Err(refused) => {
            let rule = match refused {
                Refused::Sandbox => bounds::RULE_IN_FLIGHT,
                Refused::Broker => bounds::RULE_POOL,
            };
            let errno = bounds::POOL_ERRNO;
            let outcome = Outcome::new(op_of(call.notif)).decided(
                Some(crate::reply::refusal(rule, errno)),
                "",
                Reply::Errno(errno),
            );
            finish(&call, outcome);
            return;
        }
    };
    // On record in a slot of its own before the receiver's slot takes the next call.
    if call.kept.is_none() {
        if let Some(journal) = &sandbox.journal {
            call.kept = journal.keep(&call.notif);
            if call.kept.is_some() {
                journal.clear_receiver();
            }
        }
    }
    let in_use = sandbox.in_flight.in_use();
    sandbox.operators.metrics().in_flight_started(in_use as u64);
    runtime.spawn_blocking(move || {
        let outcome = work(&call);
        finish(&call, outcome);
        call.sandbox.operators.metrics().in_flight_ended();
        // The record goes before the place: the next call to take one finds a free slot.
        drop(call);
        drop(place);
    });
}

/// What an allowed call that an earlier broker may already have performed (`Call::replayed`)
/// answers when performing it again finds it done: a socket connected to the very address the
/// call names, or already bound, is the call's own success; a connect still in progress is
/// what the first attempt said (`EINPROGRESS`). A datagram sent again is sent twice: sends are
/// delivered at least once across a broker restart.
fn replayed_reply(call: &Call, op: &str, reply: Reply) -> Reply {
    match (op, reply) {
        ("connect", Reply::Errno(libc::EISCONN)) if connected_as_asked(call) => Reply::Value(0),
        ("connect", Reply::Errno(libc::EALREADY)) => Reply::Errno(libc::EINPROGRESS),
        ("bind", Reply::Errno(libc::EINVAL)) if bound(call) => Reply::Value(0),
        _ => reply,
    }
}

/// Whether the socket of a `connect` call is connected to the inet address the call names.
fn connected_as_asked(call: &Call) -> bool {
    let (Ok(sock), Ok(asked)) = (
        call.take_fd(call.notif.args[0] as i32),
        call.copy_sockaddr(call.notif.args[1], call.notif.args[2] as i32),
    ) else {
        return false;
    };
    match (sys::peername(sock.as_fd()), inet_of(&asked)) {
        (Ok(peer), Some(asked)) => inet_of(&peer) == Some(asked),
        _ => false,
    }
}

/// Whether the socket of a `bind` call is bound (an inet port other than 0).
fn bound(call: &Call) -> bool {
    let Ok(sock) = call.take_fd(call.notif.args[0] as i32) else {
        return false;
    };
    sys::sockname(sock.as_fd())
        .ok()
        .and_then(|name| inet_of(&name))
        .is_some_and(|a| a.port() != 0)
}

/// An inet socket address from its bytes, IPv4-mapped IPv6 addresses as IPv4.
fn inet_of(bytes: &[u8]) -> Option<std::net::SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    let ip = match i32::from(family) {
        libc::AF_INET => {
            let o: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            std::net::IpAddr::from(o)
        }
        libc::AF_INET6 => {
            let o: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            std::net::Ipv6Addr::from(o).to_canonical()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// Reasons (`Outcome::failure`) of a call that needed no decision and went through as the
/// caller made it: a send on a connected socket (`no-destination`, or `""` from the kernel),
/// a listen on a socket bound to a path or an address, the autobind of a socket that has a
/// name (`bound`), an `AF_UNSPEC` disconnect, a TCP connect the kernel answered from the
/// socket's state without reading its address (`state`). What it returned is the kernel's
/// answer, an errno included.
const PASSED: [&str; 5] = ["", "no-destination", "bound", "disconnect", "state"];

/// The audit's `decision` for an answered call, by what was decided and never by what the
/// call returned: `allow` or `deny` as the policy (an operator, a fallback, a bound) said,
/// `pass` for a call that needed no decision (whatever the kernel answered it), `error` for
/// one that failed before the policy could look (`failure` says why).
fn verdict_of(decision: Option<&Decision>, failure: &str, errno: i32) -> &'static str {
    match decision.map(|d| d.verdict) {
        Some(Verdict::Allow) => "allow",
        Some(Verdict::Deny { .. }) => "deny",
        // Never: `Call::evaluate` has operators decide what the policy asks; fail closed.
        Some(Verdict::Ask) => "deny",
        None if errno == 0 || PASSED.contains(&failure) => "pass",
        None => "error",
    }
}

/// Sends the reply and writes the audit event: the only place that does either.
fn finish(call: &Call, outcome: Outcome) {
    let Some(reply) = outcome.reply else {
        return;
    };
    let decision = outcome.decision.as_ref();
    let allowed = matches!(decision.map(|d| d.verdict), Some(Verdict::Allow));
    let reply = if call.replayed && allowed {
        replayed_reply(call, outcome.op, reply)
    } else {
        reply
    };
    let ops = &call.sandbox.operators;
    let audited = tracing::enabled!(target: audit::TARGET, tracing::Level::INFO);
    let reported = audited || ops.wants_decisions();
    // A call answered without a decision has not read it yet: now, before the answer, after
    // which the caller may exit at once.
    call.read_exe();
    let (delivered, errno) = send_reply(call, reply);
    if let Err(e) = &delivered {
        // ENOENT: the caller was killed while we worked.
        tracing::debug!(sandbox = %call.sandbox.id, error = %e, "reply not delivered");
    }
    let latency_us = call.received.elapsed().as_micros() as u64;
    call.sandbox.count_decision();
    let verdict = verdict_of(decision, outcome.failure, errno);
    ops.count(verdict);
    ops.metrics()
        .observe(metrics_op(outcome.op), verdict, latency_us);
    let rule = decision.map(|d| d.rule.as_str()).unwrap_or(outcome.failure);
    if rule.starts_with(bounds::RULE_PREFIX) {
        ops.metrics().refused(rule);
    }
    if !reported {
        return;
    }
    let decided = Decided {
        verdict,
        rule,
        errno,
        latency_us,
        delivered: delivered.is_ok(),
    };
    report(call, &outcome, &decided, audited);
}

/// Answers the caller: the one place a reply reaches the kernel. Returns whether it was
/// delivered, and the errno the caller got (0 for a value).
fn send_reply(call: &Call, reply: Reply) -> (std::io::Result<()>, i32) {
    let (val, errno) = match reply {
        Reply::Value(v) => (v, 0),
        Reply::Errno(e) => (0, e),
        Reply::Answered(v) => (v, 0),
        Reply::Continue => (0, 0),
    };
    let listener = call.sandbox.listener.as_fd();
    let delivered = match reply {
        // A call answered already (`ADDFD` with `SEND` did both) was delivered to a caller
        // that still waited, after its program was read.
        Reply::Answered(_) => Ok(()),
        // The one place that lets the kernel perform a call (invariant 2 allows it here, and
        // nowhere else): only `ops/process.rs` answers `Continue`, for calls whose decision rests
        // on the pid argument alone, a register value the caller cannot change after it was
        // notified. The memory those calls read (a CPU mask, a `sched_param`, a limit) does
        // not bear on the decision, and the kernel checks everything else as it would for
        // the caller, who makes the call. A call that reads an address or uses a descriptor
        // is never continued: another thread can change those after the check.
        Reply::Continue => sys::notif_continue(listener, call.notif.id),
        Reply::Value(_) | Reply::Errno(_) => sys::notif_send(listener, call.notif.id, val, errno),
    };
    (delivered, errno)
}

/// What came of a call, as operators and the audit are told.
struct Decided<'a> {
    verdict: &'static str,
    rule: &'a str,
    errno: i32,
    latency_us: u64,
    /// The reply reached a caller that still waited.
    delivered: bool,
}

/// Tells operators watching decisions, and the audit, what came of `call`.
fn report(call: &Call, outcome: &Outcome, decided: &Decided<'_>, audited: bool) {
    let ops = &call.sandbox.operators;
    // The pid named the caller when it was read if the caller still waited after: the
    // kernel delivers an answer only to a call still waiting, and `NOTIF_ID_VALID` says the
    // same. Otherwise the pid may have been another thread's by then: never name another
    // program.
    let seen = decided.delivered || call.seen_after_exe.load(Ordering::Relaxed);
    let program = match call.exe.get() {
        Some(Some(exe)) if seen => exe.clone(),
        _ => "?".to_string(),
    };
    let note = call.note.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let decision = outcome.decision.as_ref();
    let host = decision.and_then(|d| d.host.as_deref()).unwrap_or("");
    let rule = decided.rule;
    if ops.wants_decisions() {
        ops.publish(Event::Decision(DecisionInfo {
            time_ms: operators::now_ms(),
            sandbox: call.sandbox.id,
            name: call.sandbox.name.clone(),
            container: call.sandbox.container.clone().unwrap_or_default(),
            pid: call.notif.pid as i32,
            program: program.clone(),
            op: outcome.op.to_string(),
            endpoint: outcome.endpoint.clone(),
            host: host.to_string(),
            decision: decided.verdict.to_string(),
            rule: if note.is_empty() {
                rule.to_string()
            } else {
                format!("{rule} ({note})")
            },
            errno: decided.errno,
            latency_us: decided.latency_us,
        }));
    }
    if !audited {
        return;
    }
    audit::decision(&audit::DecisionEvent {
        sandbox: call.sandbox.id,
        name: &call.sandbox.name,
        container: call.sandbox.container.as_deref().unwrap_or(""),
        pid: call.notif.pid,
        program: &program,
        op: outcome.op,
        endpoint: &outcome.endpoint,
        decision: decided.verdict,
        rule,
        host,
        operator: &note,
        errno: decided.errno,
        latency_us: decided.latency_us,
    });
}

#[cfg(test)]
mod tests {
    use super::{verdict_of, Pace};
    use netjail_policy::{Decision, Verdict};
    use netjail_protocol::SandboxId;

    fn decision(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            rule: "allow[0].connect[0]".into(),
            host: None,
        }
    }

    /// Issue 17: a call is counted and audited by what was decided, never by what it
    /// returned: an allowed non-blocking connect (`EINPROGRESS`), an allowed connect to a
    /// closed port (`ECONNREFUSED`), a send on a connected socket the kernel refuses.
    #[test]
    fn verdicts_follow_the_decision_not_the_errno() {
        let allow = decision(Verdict::Allow);
        for errno in [0, libc::EINPROGRESS, libc::ECONNREFUSED, libc::EAGAIN] {
            assert_eq!(verdict_of(Some(&allow), "", errno), "allow", "{errno}");
        }
        let deny = decision(Verdict::Deny { errno: libc::EPERM });
        assert_eq!(verdict_of(Some(&deny), "", libc::EPERM), "deny");
        // A denial carries its own errno, and a decision made before a later failure stays.
        assert_eq!(verdict_of(Some(&deny), "", 0), "deny");
        assert_eq!(
            verdict_of(Some(&allow), "linked-socket", libc::EPERM),
            "allow"
        );
        for (failure, errno) in [
            ("no-destination", libc::ECONNREFUSED),
            ("no-destination", libc::EAGAIN),
            ("", libc::EPIPE),
            ("bound", libc::EADDRINUSE),
            ("bound", libc::EINVAL),
            ("disconnect", 0),
            ("state", libc::EISCONN),
            ("state", 0),
            // A `sendmmsg` that sent messages before one failed returns their count.
            ("bad-message", 0),
        ] {
            assert_eq!(
                verdict_of(None, failure, errno),
                "pass",
                "{failure} {errno}"
            );
        }
        for (failure, errno) in [
            ("bad-fd", libc::EBADF),
            ("not-a-socket", libc::ENOTSOCK),
            ("bad-address", libc::EFAULT),
            ("unknown-syscall", libc::ENOSYS),
        ] {
            assert_eq!(verdict_of(None, failure, errno), "error", "{failure}");
        }
    }

    fn pace() -> Pace {
        Pace {
            may_yield: false,
            ..Pace::new()
        }
    }

    #[test]
    fn without_a_queue_one_call_in_eight_looks_and_every_poll_blocks() {
        let mut p = pace();
        let looked: Vec<bool> = (0..16)
            .map(|_| {
                assert!(!p.skip_poll());
                let check = p.check_now();
                p.after(check, false, SandboxId(1));
                check
            })
            .collect();
        assert_eq!(looked.iter().filter(|&&c| c).count(), 2);
    }

    #[test]
    fn with_a_queue_every_call_looks_and_one_poll_in_64_still_blocks() {
        let mut p = pace();
        let check = (0..8).map(|_| p.check_now()).last().unwrap();
        assert!(check, "the eighth call looks");
        p.after(true, true, SandboxId(1));
        let mut blocking = 0;
        for _ in 0..130 {
            if !p.skip_poll() {
                blocking += 1;
            }
            assert!(p.check_now(), "a call looks while a queue is seen");
            p.after(true, true, SandboxId(1));
        }
        assert_eq!(blocking, 2, "one blocking poll in 65 iterations");
        // The queue is gone: the next poll blocks, and only every eighth call looks again.
        p.after(true, false, SandboxId(1));
        assert!(!p.skip_poll());
        // A receive that gave nothing forgets the queue too.
        p.after(true, true, SandboxId(1));
        p.unknown();
        assert!(!p.skip_poll());
    }

    #[test]
    fn a_call_that_did_not_look_knows_nothing_of_the_queue() {
        let mut p = pace();
        p.after(true, true, SandboxId(1));
        p.after(false, false, SandboxId(1));
        assert!(!p.skip_poll());
    }
}
