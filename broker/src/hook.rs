//! The decision hook of an embedding program ([`DecisionHook`]): asked about every call the
//! policy's `[[deny]]` tables and run-time rules leave open, it answers allow, deny, ask, no
//! opinion, or, for an IP connect, a socket of its own that the broker puts in place of the
//! program's ([`HookVerdict::Serve`], `ops/served.rs`). A panic or a nonsense errno fails
//! closed.

use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use netjail_policy::{Decision, Op, Request, Target, Verdict};
use netjail_protocol::SandboxId;

/// What a [`DecisionHook`] is asked about: one call of one sandbox.
#[derive(Debug)]
#[non_exhaustive]
pub struct HookCall<'a> {
    /// The sandbox that made the call.
    pub sandbox: SandboxId,
    /// The name it was registered with.
    pub name: &'a str,
    /// The thread that made the call (a tid, as the kernel reports it).
    pub pid: i32,
    /// The operation and its destination, in canonical form (an IPv4-mapped address is the
    /// IPv4 address it is; see [`netjail_policy::Target::canonical`]).
    pub request: &'a Request,
}

/// What a [`DecisionHook`] answers.
#[derive(Debug)]
pub enum HookVerdict {
    /// No opinion: the policy's `[[allow]]` tables, `[[ask]]` tables and default decide.
    Continue,
    /// Perform the call.
    Allow,
    /// Refuse the call with this errno (positive, e.g. `libc::EPERM`; anything outside
    /// 1..=4095 becomes `EPERM`).
    Deny {
        /// The errno the call fails with.
        errno: i32,
    },
    /// Hold the call for an operator, as an `[[ask]]` rule does (the policy's
    /// `ask_timeout` and `ask_fallback` apply; with no operator watching, the fallback
    /// decides at once).
    Ask,
    /// Answer an IP `connect()` with this socket, made by the host program (a connected TCP
    /// socket, one end of a `socketpair`, any socket): the broker puts it at the program's
    /// descriptor number in place of the program's own socket, with the program's blocking
    /// mode and close-on-exec flag, and the connect returns 0. The broker takes the
    /// descriptor: it is closed once it is in the program (or the call failed), so the
    /// connection ends when the program closes its copy, unless the host program kept
    /// another (`dup`) — which then shares the program's blocking mode, as duplicates do.
    ///
    /// Only an IP connect can be served; any other call answered so is refused (`EPERM`,
    /// rule `hook-serve:not-an-ip-connect`), and so is a descriptor that is not a socket
    /// (`hook-serve:not-a-socket`). What the program reads of the socket afterwards
    /// (`getsockname`, `getpeername`, its family) is the served socket's: docs/embedding.md,
    /// "Serving a connect".
    Serve(OwnedFd),
}

impl HookVerdict {
    /// Refuse with `EPERM`.
    pub const DENY: HookVerdict = HookVerdict::Deny { errno: libc::EPERM };
}

/// A host program's say in each call, asked after the policy's `[[deny]]` tables and the
/// sandbox's run-time rules, and before the policy's `[[allow]]` tables.
///
/// Any `Fn(&HookCall) -> HookVerdict + Send + Sync + 'static` is one. It runs on a thread of
/// the broker's blocking pool, never on a sandbox's receiver thread, so it may wait (for the
/// user, for another thread of the program): while it waits, only that call waits; the
/// sandbox's other calls and other sandboxes go on. A hook that panics denies the call
/// (`EPERM`, rule `hook-panicked`).
///
/// With a hook, every call of every sandbox of the broker takes the blocking pool, which
/// costs a thread hand-off per call: about 30 µs / 1.5x per allowed loopback connect on this
/// machine, against the policy-only fast path (`nj-bench embedded`, see `BENCHMARKS.md`); a
/// program that only needs rules it sets itself can use [`SandboxHandle::allow`](crate::embed::SandboxHandle::allow) and keep the
/// fast path (run-time rules measured no slower than the policy alone).
pub trait DecisionHook: Send + Sync + 'static {
    /// Decides one call, or says [`HookVerdict::Continue`].
    fn decide(&self, call: &HookCall<'_>) -> HookVerdict;
}

impl<F> DecisionHook for F
where
    F: Fn(&HookCall<'_>) -> HookVerdict + Send + Sync + 'static,
{
    fn decide(&self, call: &HookCall<'_>) -> HookVerdict {
        self(call)
    }
}

impl std::fmt::Debug for dyn DecisionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionHook")
    }
}

/// What serves the connects a run-time rule names
/// ([`SandboxHandle::serve`](crate::embed::SandboxHandle::serve)): asked, on a thread of the
/// broker's blocking pool, for the socket to put in place of the program's; an error fails
/// the connect with its errno (`ECONNREFUSED` when it has none).
pub type ConnectServer = dyn Fn(&HookCall<'_>) -> std::io::Result<OwnedFd> + Send + Sync;

/// The servers of a sandbox's served entries, by the entry in canonical form.
#[derive(Default)]
pub(crate) struct Servers(pub std::collections::HashMap<String, Arc<ConnectServer>>);

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// How an allowed connect is served by the host program: with the socket its hook answered,
/// or by the server of the run-time rule that covers it (asked once the call is off the
/// receiver thread).
pub(crate) enum Served {
    Socket(OwnedFd),
    By(Arc<ConnectServer>),
}

/// The rule of a connect the hook served with a socket of its own.
pub(crate) const RULE_SERVED: &str = "hook-served";
/// The rule of a call other than an IP connect that the hook answered with a socket.
pub(crate) const RULE_SERVE_NOT_CONNECT: &str = "hook-serve:not-an-ip-connect";

/// Asks `hook` about a canonical request of the sandbox `sandbox` named `name`; `None` is no
/// opinion. A socket the hook serves the call with is left in `served`.
pub(crate) fn ask_hook(
    hook: &dyn DecisionHook,
    sandbox: SandboxId,
    name: &str,
    pid: i32,
    request: &Request,
    served: &Mutex<Option<Served>>,
) -> Option<Decision> {
    hook_decision(
        hook,
        &HookCall {
            sandbox,
            name,
            pid,
            request,
        },
        served,
    )
}

/// The decision `hook` gives `call`: a panic or a nonsense errno fails closed. A socket it
/// serves an IP connect with is left in `served` (the decision is then an allow, rule
/// [`RULE_SERVED`]).
pub(crate) fn hook_decision(
    hook: &dyn DecisionHook,
    call: &HookCall<'_>,
    served: &Mutex<Option<Served>>,
) -> Option<Decision> {
    let decision = |verdict, rule: &str| {
        Some(Decision {
            verdict,
            rule: rule.to_string(),
            host: None,
        })
    };
    match catch_unwind(AssertUnwindSafe(|| hook.decide(call))) {
        Ok(HookVerdict::Continue) => None,
        Ok(HookVerdict::Allow) => decision(Verdict::Allow, "hook"),
        Ok(HookVerdict::Deny { errno }) => {
            let errno = if (1..=4095).contains(&errno) {
                errno
            } else {
                libc::EPERM
            };
            decision(Verdict::Deny { errno }, "hook")
        }
        Ok(HookVerdict::Ask) => decision(Verdict::Ask, "hook"),
        Ok(HookVerdict::Serve(socket)) => {
            let ip_connect = call.request.op == Op::Connect
                && matches!(call.request.target, Target::Inet { .. });
            if !ip_connect {
                return decision(Verdict::Deny { errno: libc::EPERM }, RULE_SERVE_NOT_CONNECT);
            }
            *served.lock().unwrap_or_else(|p| p.into_inner()) = Some(Served::Socket(socket));
            decision(Verdict::Allow, RULE_SERVED)
        }
        Err(_) => {
            // Fail closed, and keep serving: the panic message went to stderr already.
            tracing::error!(sandbox = %call.sandbox, "the decision hook panicked; call denied");
            decision(Verdict::Deny { errno: libc::EPERM }, "hook-panicked")
        }
    }
}
