//! Calls held for operators (policy action `ask`), and the rules operators make.
//!
//! A call whose policy says `ask` is decided here, on the blocking-pool thread that handles
//! it (never on a sandbox's receiver thread, see `receiver::dispatch`):
//!
//! 1. a rule an operator made earlier (`--for`, `--always`) for this destination decides it
//!    at once;
//! 2. with no operator watching, or too many calls held already, the policy's fallback
//!    applies at once (invariant 1: fail closed, rule M4);
//! 3. otherwise the call is published to the watching operators and the thread waits for the
//!    first answer, the policy's `ask_timeout`, or the caller's exit, whichever comes first;
//!    when the last operator stops watching, every held call gets the fallback at once, as
//!    it would had nobody been watching when it was asked (rule M4).
//!
//! Every held call ends exactly once: whoever removes it from the table (an operator's
//! answer, the timeout, the caller's exit, the last operator leaving) decides it, under one
//! lock; an answer that comes later is told the call is no longer held, and by whom it was
//! decided.
//!
//! Whether anyone watches is checked under that lock too when a call is held: a call is held
//! only while an operator watches, and the operator's leaving, which takes the lock after it
//! is counted, finds every call held before it (`Presence`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netjail_policy::{Decision, Op, Request, Verdict};
use netjail_protocol::control::{
    Counters, Event, GrantDuration, GrantScope, Outcome, PendingInfo, RequestId, Resolution,
};
use netjail_protocol::SandboxId;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::operators::overlay::{Overlay, OverlayError, ScopeKey};

pub(crate) mod control;
pub(crate) mod overlay;
mod process_chain;
mod scope;

use process_chain::chain;
pub(crate) use scope::Asking;
use scope::PolicyKey;
use scope::Scope;

/// Calls held at once in the whole broker. Each holds a thread of the blocking pool, so the
/// bound keeps held calls from taking the threads other sandboxes need (invariant 7); it is
/// well below the pool's own bound ([`crate::POOL`]).
pub(crate) const MAX_HELD: usize = 256;

/// Calls of one sandbox held at once; past it the fallback applies at once. A policy's
/// `[limits] max_pending` may only lower it: a larger value (or `-1`) leaves this cap.
pub(crate) const MAX_HELD_PER_SANDBOX: usize = 16;

/// The last places of [`MAX_HELD`], kept for sandboxes that hold fewer than
/// [`HELD_FLOOR`] calls: twelve sandboxes holding their sixteen each cannot make everyone
/// else's asks fall back.
pub(crate) const HELD_RESERVE: usize = 64;

/// Calls any sandbox may have held while the reserve lasts.
pub(crate) const HELD_FLOOR: usize = 4;

/// Whether a sandbox that has `of_sandbox` calls held may hold one more while the broker
/// holds `held` (the shape of `bounds/mod.rs`).
fn may_hold(held: usize, of_sandbox: usize) -> bool {
    of_sandbox < MAX_HELD_PER_SANDBOX
        && held < MAX_HELD
        && (held < MAX_HELD - HELD_RESERVE || of_sandbox < HELD_FLOOR)
}

/// How often a held call checks that its caller still waits.
const CALLER_CHECK: Duration = Duration::from_millis(200);

/// Events kept for a slow watcher before it is told it lagged.
const EVENT_BACKLOG: usize = 4096;

/// Resolutions remembered for the error of a late answer.
const RECENT: usize = 256;

/// Bytes of an endpoint or name in a report (keeps one item within one datagram).
const MAX_TEXT: usize = 4096;

/// What an operator answered.
#[derive(Debug, Clone)]
struct Answer {
    allow: bool,
    by: String,
    rule: String,
    outcome: Outcome,
}

impl Answer {
    /// The audit's note of a call an operator answered: how, by whom, and the rule made.
    fn note(&self) -> String {
        if self.rule.is_empty() {
            format!("{} by {}", self.outcome.as_str(), self.by)
        } else {
            format!("{} by {}; {}", self.outcome.as_str(), self.by, self.rule)
        }
    }
}

/// How the wait of a held call ended.
enum Waited {
    /// The answer sent to it: an operator's, or its end by another (`end_held`).
    Answered(Answer),
    /// The policy's `ask_timeout` passed first.
    TimedOut,
    /// Its caller exited first.
    Gone,
    /// The channel closed without an answer.
    Lost,
}

/// One held call.
struct Held {
    info: PendingInfo,
    created: Instant,
    deadline: Instant,
    sandbox: SandboxId,
    policy: PolicyKey,
    container: Option<String>,
    op: Op,
    key: String,
    request: Request,
    /// What the policy's `ask_fallback` gives the call when nobody answers.
    fallback_allows: bool,
    answer: mpsc::SyncSender<Answer>,
}

/// A rule an operator made that lives in memory: `--for` grants, and `--always` ones of a
/// scope that cannot outlive the broker.
#[derive(Debug, Clone)]
struct TimedRule {
    scope: Scope,
    op: Op,
    key: String,
    allow: bool,
    until: Option<Instant>,
    text: String,
}

#[derive(Default)]
struct Table {
    held: BTreeMap<RequestId, Held>,
    /// The last resolutions, for the error a late answer gets.
    recent: VecDeque<Resolution>,
}

#[derive(Default)]
struct AtomicCounters {
    allowed: AtomicU64,
    denied: AtomicU64,
    passed: AtomicU64,
    errors: AtomicU64,
    asked: AtomicU64,
    granted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    unattended: AtomicU64,
}

/// The operators' side of the broker.
pub struct Operators {
    started: Instant,
    next_id: AtomicU64,
    table: Mutex<Table>,
    rules: Mutex<Vec<TimedRule>>,
    overlay: Option<Overlay>,
    events: broadcast::Sender<Event>,
    watchers: AtomicU32,
    decision_watchers: AtomicU32,
    counters: AtomicCounters,
    metrics: Metrics,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("watchers", &self.watchers.load(Ordering::Relaxed))
            .field("held", &self.lock().held.len())
            .finish_non_exhaustive()
    }
}

/// Why an operator's answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The call is not held (see the message for why).
    #[error("{0}")]
    NotPending(String),
    /// The answer asks for something impossible.
    #[error("{0}")]
    Refused(String),
}

/// A registration of a watching operator: counts as present until dropped.
#[derive(Debug)]
pub struct Presence {
    operators: Arc<Operators>,
    decisions: bool,
}

impl Drop for Presence {
    fn drop(&mut self) {
        if self.decisions {
            self.operators
                .decision_watchers
                .fetch_sub(1, Ordering::SeqCst);
        }
        if self.operators.watchers.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: nobody is left to answer what is held.
            self.operators.unattended();
        }
    }
}

impl Operators {
    /// No operators yet; `--always` rules go to `overlay` (none: they are kept in memory).
    pub fn new(overlay: Option<Overlay>) -> Arc<Operators> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Arc::new(Operators {
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            rules: Mutex::new(Vec::new()),
            overlay,
            events,
            watchers: AtomicU32::new(0),
            decision_watchers: AtomicU32::new(0),
            counters: AtomicCounters::default(),
            metrics: Metrics::default(),
        })
    }

    /// Reads the overlay's files again ([`Overlay::reload`]); nothing for a broker without an
    /// overlay directory.
    pub fn reload_overlay(&self) -> Vec<netjail_protocol::control::ReloadItem> {
        self.overlay.as_ref().map_or_else(Vec::new, Overlay::reload)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Time since the broker started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Operators watching now.
    pub fn watching(&self) -> u32 {
        self.watchers.load(Ordering::SeqCst)
    }

    /// Whether anyone wants every decision (so that building the event is worth it).
    pub fn wants_decisions(&self) -> bool {
        self.decision_watchers.load(Ordering::Relaxed) > 0
    }

    /// Subscribes a watcher: the receiver of events, and its presence.
    pub fn watch(self: &Arc<Self>, decisions: bool) -> (broadcast::Receiver<Event>, Presence) {
        let rx = self.events.subscribe();
        self.watchers.fetch_add(1, Ordering::SeqCst);
        if decisions {
            self.decision_watchers.fetch_add(1, Ordering::SeqCst);
        }
        let presence = Presence {
            operators: self.clone(),
            decisions,
        };
        (rx, presence)
    }

    /// Sends an event to the watchers (nobody listening is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Counts an answered call by what was decided: `verdict` is the audit's `decision`
    /// (`allow`, `deny`, `pass`, `error`; anything else counts as `error`), never what the
    /// call returned.
    pub fn count(&self, verdict: &str) {
        let c = match verdict {
            "allow" => &self.counters.allowed,
            "deny" => &self.counters.denied,
            "pass" => &self.counters.passed,
            _ => &self.counters.errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions by op and verdict and their latency, for `netjail metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            allowed: get(&c.allowed),
            denied: get(&c.denied),
            asked: get(&c.asked),
            granted: get(&c.granted),
            refused: get(&c.refused),
            timed_out: get(&c.timed_out),
            unattended: get(&c.unattended),
            passed: get(&c.passed),
            errors: get(&c.errors),
        }
    }

    /// Calls held now, oldest first, as operators see them.
    pub fn pending(&self) -> Vec<PendingInfo> {
        let table = self.lock();
        table.held.values().map(report).collect()
    }

    /// Number of calls held now.
    pub fn pending_count(&self) -> usize {
        self.lock().held.len()
    }

    /// Calls of `sandbox` held now.
    pub fn pending_of(&self, sandbox: SandboxId) -> u32 {
        let table = self.lock();
        table.held.values().filter(|h| h.sandbox == sandbox).count() as u32
    }

    /// Rules made by operators in force now.
    pub fn rule_count(&self) -> u32 {
        let now = Instant::now();
        let timed = self
            .rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.until.is_none_or(|u| u > now))
            .count();
        let always = self.overlay.as_ref().map_or(0, Overlay::rule_count);
        (timed + always) as u32
    }

    /// Decides a call the policy asks about (its `decision` says `Ask`). Blocks the calling
    /// thread while the call is held: call it from the blocking pool only.
    ///
    /// Returns the decision and, for the audit, what the operators' side did.
    pub(crate) fn decide(
        self: &Arc<Self>,
        sandbox: &Asking<'_>,
        caller: CallerRef<'_>,
        request: &Request,
        decision: Decision,
    ) -> (Decision, String) {
        let key = key_of(request);
        let rule = decision.rule.clone();
        if let Some((allow, text)) = self.ruled(sandbox, request, &key) {
            return (
                with_verdict(decision, allow, &rule),
                format!("ruled: {text}"),
            );
        }
        self.counters.asked.fetch_add(1, Ordering::Relaxed);
        let policy = &sandbox.policy;
        let fallback_allows = policy.ask_fallback() == Verdict::Allow;
        let fallback = |outcome: Outcome, why: &str| {
            self.fallback(&decision, &rule, fallback_allows, outcome, why)
        };
        if self.watching() == 0 {
            return fallback(Outcome::Unattended, "no operator watching");
        }
        let now = Instant::now();
        let timeout = policy.ask_timeout();
        let (tx, rx) = mpsc::sync_channel(1);
        let id = RequestId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let info = pending_info(id, sandbox, caller.pid, request, &decision, &key);
        let held = Held {
            info: info.clone(),
            created: now,
            deadline: now + timeout,
            sandbox: sandbox.id,
            policy: PolicyKey::of(sandbox),
            container: sandbox.container.map(str::to_string),
            op: request.op,
            key: key.clone(),
            request: request.clone(),
            fallback_allows,
            answer: tx,
        };
        if let Err(not_held) = self.hold(held, sandbox.max_pending, fallback) {
            return not_held;
        }
        tracing::info!(target: crate::receiver::audit::TARGET, request = %id, sandbox = %sandbox.id, pid = caller.pid, endpoint = %key, rule = %rule, "call held for operators");
        self.publish(Event::Pending(info));
        match self.wait(id, &rx, now + timeout, &caller, fallback_allows) {
            // Nobody is left to answer: the fallback, as if nobody had been watching.
            Waited::Answered(a) if a.outcome == Outcome::Unattended => {
                fallback(Outcome::Unattended, "the last operator stopped watching")
            }
            Waited::Answered(a) if a.outcome == Outcome::Gone => (
                with_verdict(decision, false, &rule),
                "gone: the caller exited while held".to_string(),
            ),
            Waited::Answered(a) => (with_verdict(decision, a.allow, &rule), a.note()),
            Waited::TimedOut => fallback(Outcome::TimedOut, "no answer in time"),
            Waited::Gone => (
                with_verdict(decision, false, &rule),
                "gone: the caller exited while held".to_string(),
            ),
            // Cannot happen (the sender lives in the table until it answers): fail closed.
            Waited::Lost => (
                with_verdict(decision, false, &rule),
                "lost: no answer".to_string(),
            ),
        }
    }

    /// What the policy's fallback gives a call it asks about that no operator decides, and
    /// the audit's note; counted as timed out or, for any other `outcome`, unattended.
    fn fallback(
        &self,
        decision: &Decision,
        rule: &str,
        allows: bool,
        outcome: Outcome,
        why: &str,
    ) -> (Decision, String) {
        let counter = match outcome {
            Outcome::TimedOut => &self.counters.timed_out,
            _ => &self.counters.unattended,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let verdict = if allows { "allow" } else { "deny" };
        (
            with_verdict(decision.clone(), allows, rule),
            format!("{}: {why}, fallback {verdict}", outcome.as_str()),
        )
    }

    /// Puts `held` in the table, where operators' answers find it, if an operator watches and
    /// the bounds of held calls allow one more (the policy's `max_pending`, then the broker's
    /// own, [`may_hold`]). Else the call gets `fallback`, with the rule of the bound that
    /// refused it.
    fn hold(
        &self,
        held: Held,
        max_pending: Option<usize>,
        fallback: impl Fn(Outcome, &str) -> (Decision, String),
    ) -> Result<(), (Decision, String)> {
        let mut table = self.lock();
        // Under the lock the last operator's leaving takes: either that finds this call in
        // the table, or this finds nobody watching (see `Presence`).
        if self.watching() == 0 {
            drop(table);
            return Err(fallback(Outcome::Unattended, "no operator watching"));
        }
        let of_sandbox = table
            .held
            .values()
            .filter(|h| h.sandbox == held.sandbox)
            .count();
        if max_pending.is_some_and(|max| of_sandbox >= max) {
            // The policy's `max_pending` (below the broker's own cap): its rule decides.
            drop(table);
            let (mut d, note) = fallback(Outcome::Unattended, "too many calls held");
            d.rule = crate::bounds::limits::RULE_PENDING.to_string();
            return Err((d, format!("{note} ({of_sandbox} held, the policy's limit)")));
        }
        let in_all = table.held.len();
        if !may_hold(in_all, of_sandbox) {
            drop(table);
            let (mut d, note) = fallback(Outcome::Unattended, "too many calls held");
            d.rule = crate::bounds::RULE_HELD.to_string();
            return Err((
                d,
                format!("{note} ({of_sandbox} of this sandbox, {in_all} in all)"),
            ));
        }
        table.held.insert(held.info.id, held);
        Ok(())
    }

    /// Waits for the end of held call `id`: an answer (an operator's, or the end of the call
    /// by the last operator's leaving or its caller's exit), else `deadline`, else its
    /// caller's exit, which it looks for every [`CALLER_CHECK`]. A call that times out or
    /// whose caller exited is taken out of the table here and its end is published (allowed
    /// if the caller still waits and `fallback_allows`), unless an answer took it first.
    fn wait(
        &self,
        id: RequestId,
        rx: &mpsc::Receiver<Answer>,
        deadline: Instant,
        caller: &CallerRef<'_>,
        fallback_allows: bool,
    ) -> Waited {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(CALLER_CHECK)) {
                Ok(a) => return Waited::Answered(a),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Lost,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let expired = Instant::now() >= deadline;
            let gone = !(caller.still_valid)();
            if !(expired || gone) {
                continue;
            }
            // Take the call out of the table, unless an operator took it first: then the
            // answer is in the channel already (it is sent under the same lock).
            let taken = self.lock().held.remove(&id);
            if taken.is_none() {
                return rx.try_recv().map_or(Waited::Lost, Waited::Answered);
            }
            let (outcome, by) = if gone {
                (Outcome::Gone, "the caller exited")
            } else {
                (Outcome::TimedOut, "timeout")
            };
            self.resolved(Resolution {
                id,
                outcome,
                allowed: !gone && fallback_allows,
                by: by.to_string(),
                rule: String::new(),
            });
            return if gone { Waited::Gone } else { Waited::TimedOut };
        }
    }

    /// A rule operators made earlier that covers this request: allow or deny, and its text.
    fn ruled(&self, sandbox: &Asking<'_>, request: &Request, key: &str) -> Option<(bool, String)> {
        let now = Instant::now();
        {
            let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
            rules.retain(|r| r.until.is_none_or(|u| u > now));
            // Denials first: an operator's "never" beats an earlier "for a while".
            let mut hits: Vec<&TimedRule> = rules
                .iter()
                .filter(|r| r.op == request.op && r.key == key && r.scope.covers(sandbox))
                .collect();
            hits.sort_by_key(|r| r.allow);
            if let Some(r) = hits.first() {
                return Some((r.allow, r.text.clone()));
            }
        }
        let overlay = self.overlay.as_ref()?;
        let mut keys = vec![PolicyKey::of(sandbox).scope_key()];
        if let Some(c) = sandbox.container {
            keys.push(ScopeKey::Container(c.to_string()));
        }
        overlay.decide(&keys, request)
    }

    /// An operator's answer to held call `id`.
    pub fn answer(
        &self,
        id: RequestId,
        allow: bool,
        duration: GrantDuration,
        scope: GrantScope,
        by: &str,
    ) -> Result<Resolution, AnswerError> {
        let mut table = self.lock();
        let Some(held) = table.held.get(&id) else {
            return Err(AnswerError::NotPending(self.why_not_pending(&table, id)));
        };
        let scope = scope_of(id, held, scope, duration)?;
        check_duration(duration)?;
        let rule = self.make_rule(id, held, allow, duration, scope, by)?;
        let outcome = if allow {
            Outcome::Granted
        } else {
            Outcome::Denied
        };
        let Some(held) = table.held.remove(&id) else {
            unreachable_fail_closed();
            return Err(AnswerError::NotPending(format!("request {id} vanished")));
        };
        let answer = Answer {
            allow,
            by: by.to_string(),
            rule: rule.clone(),
            outcome,
        };
        // Sent under the lock: the waiting thread either sees it, or finds the call gone from
        // the table and then reads it.
        let _ = held.answer.try_send(answer);
        let resolution = Resolution {
            id,
            outcome,
            allowed: allow,
            by: by.to_string(),
            rule,
        };
        let counter = if allow {
            &self.counters.granted
        } else {
            &self.counters.refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        remember(&mut table, resolution.clone());
        drop(table);
        tracing::info!(target: crate::receiver::audit::TARGET, request = %id, sandbox = %held.sandbox, outcome = outcome.as_str(), by, rule = %resolution.rule, endpoint = %held.key, "held call answered");
        self.publish(Event::Resolved(resolution.clone()));
        Ok(resolution)
    }

    /// Makes the rule of an answer to held call `id` and returns its text (empty for an
    /// answer once): a rule for a while is kept in memory; one for always goes to the overlay
    /// when the broker has one and the scope is a policy or a container (if it cannot be
    /// saved, the call stays held), else to memory.
    fn make_rule(
        &self,
        id: RequestId,
        held: &Held,
        allow: bool,
        duration: GrantDuration,
        scope: Scope,
        by: &str,
    ) -> Result<String, AnswerError> {
        let verb = if allow { "allow" } else { "deny" };
        let what = format!("{verb} {} {}", op_name(held.op), held.key);
        let rule = match duration {
            GrantDuration::Once => String::new(),
            GrantDuration::For { millis } => {
                let until = Instant::now() + Duration::from_millis(millis);
                let text = format!(
                    "{what} for {} until {}",
                    scope.describe(),
                    clock_in(Duration::from_millis(millis))
                );
                self.rules
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(TimedRule {
                        scope,
                        op: held.op,
                        key: held.key.clone(),
                        allow,
                        until: Some(until),
                        text: text.clone(),
                    });
                text
            }
            GrantDuration::Always => {
                let text = format!("{what} for {} always", scope.describe());
                let note = format!("by {by} for request {id} (sandbox {})", held.sandbox);
                match (&self.overlay, &scope) {
                    (Some(overlay), Scope::Policy(key)) => overlay
                        .add(key.scope_key(), &held.request, allow, &note)
                        .map_err(refused)?,
                    (Some(overlay), Scope::Container(c)) => overlay
                        .add(ScopeKey::Container(c.clone()), &held.request, allow, &note)
                        .map_err(refused)?,
                    _ => self
                        .rules
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(TimedRule {
                            scope,
                            op: held.op,
                            key: held.key.clone(),
                            allow,
                            until: None,
                            text: text.clone(),
                        }),
                }
                text
            }
        };
        Ok(rule)
    }

    /// The last operator stopped watching: every held call gets its fallback at once (the
    /// threads waiting in them wake with it), unless an operator has come meanwhile.
    fn unattended(&self) {
        let table = self.lock();
        if self.watching() != 0 {
            return;
        }
        self.end_held(
            table,
            |_| true,
            Outcome::Unattended,
            "the last operator leaving",
        );
    }

    /// Every task of `sandbox` has exited: its held calls end at once, refused, instead of
    /// at their next look at their callers.
    pub(crate) fn sandbox_ended(&self, sandbox: SandboxId) {
        let table = self.lock();
        self.end_held(
            table,
            |h| h.sandbox == sandbox,
            Outcome::Gone,
            "the caller exited",
        );
    }

    /// Takes the held calls `which` picks out of `table` and ends them by `outcome`
    /// (`Unattended`: the fallback; `Gone`: refused), as the waiting thread would at its
    /// timeout; then says so in the audit and to watchers.
    fn end_held(
        &self,
        mut table: MutexGuard<'_, Table>,
        which: impl Fn(&Held) -> bool,
        outcome: Outcome,
        by: &str,
    ) {
        let ids: Vec<RequestId> = table
            .held
            .iter()
            .filter(|(_, h)| which(h))
            .map(|(id, _)| *id)
            .collect();
        let mut ended = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(held) = table.held.remove(&id) else {
                continue;
            };
            let allow = outcome == Outcome::Unattended && held.fallback_allows;
            // Sent under the lock, as an operator's answer is.
            let _ = held.answer.try_send(Answer {
                allow,
                by: by.to_string(),
                rule: String::new(),
                outcome,
            });
            let resolution = Resolution {
                id,
                outcome,
                allowed: allow,
                by: by.to_string(),
                rule: String::new(),
            };
            remember(&mut table, resolution.clone());
            ended.push(resolution);
        }
        drop(table);
        for resolution in ended {
            tracing::info!(target: crate::receiver::audit::TARGET, request = %resolution.id, outcome = resolution.outcome.as_str(), by = %resolution.by, "held call ended");
            self.publish(Event::Resolved(resolution));
        }
    }

    fn resolved(&self, resolution: Resolution) {
        tracing::info!(target: crate::receiver::audit::TARGET, request = %resolution.id, outcome = resolution.outcome.as_str(), by = %resolution.by, "held call ended");
        remember(&mut self.lock(), resolution.clone());
        self.publish(Event::Resolved(resolution));
    }

    fn why_not_pending(&self, table: &Table, id: RequestId) -> String {
        if let Some(r) = table.recent.iter().rev().find(|r| r.id == id) {
            let verb = match r.outcome {
                Outcome::Granted => format!("it was granted by {}", r.by),
                Outcome::Denied => format!("it was denied by {}", r.by),
                Outcome::TimedOut => "it timed out".to_string(),
                Outcome::Gone => "its caller exited".to_string(),
                Outcome::Unattended => {
                    "it got the fallback: no operator was watching any more".to_string()
                }
                Outcome::Ruled => "it was decided without asking".to_string(),
            };
            format!("request {id} is no longer held: {verb}")
        } else if id.0 >= self.next_id.load(Ordering::Relaxed) || id.0 == 0 {
            format!("there is no request {id} (see `netjail pending`)")
        } else {
            format!("request {id} is no longer held")
        }
    }
}

/// Whom the rule of an answer to held call `id` covers: the `scope` the operator named,
/// except that a sandbox's rule for always is kept for its policy (a sandbox does not
/// outlive the broker; its policy does). A container's rule needs a call from a container.
fn scope_of(
    id: RequestId,
    held: &Held,
    scope: GrantScope,
    duration: GrantDuration,
) -> Result<Scope, AnswerError> {
    Ok(match (scope, duration) {
        (GrantScope::Sandbox, GrantDuration::Always) => {
            // A sandbox instance does not outlive the broker; "always" is kept for its
            // policy, which does.
            Scope::Policy(held.policy.clone())
        }
        (GrantScope::Sandbox, _) => Scope::Sandbox(held.sandbox),
        (GrantScope::Policy, _) => Scope::Policy(held.policy.clone()),
        (GrantScope::Container, _) => match &held.container {
            Some(c) => Scope::Container(c.clone()),
            None => {
                return Err(AnswerError::Refused(format!(
                    "request {id} does not come from a container (sandbox {})",
                    held.sandbox
                )))
            }
        },
    })
}

/// Refuses a grant for a while that lasts no time, or longer than a policy's durations may
/// ([`netjail_policy::MAX_DURATION`]).
fn check_duration(duration: GrantDuration) -> Result<(), AnswerError> {
    if let GrantDuration::For { millis } = duration {
        let max = netjail_policy::MAX_DURATION.as_millis() as u64;
        if millis == 0 || millis > max {
            return Err(AnswerError::Refused(format!(
                "a grant lasts from 1 ms to {}, not {millis} ms",
                netjail_policy::format_duration(netjail_policy::MAX_DURATION)
            )));
        }
    }
    Ok(())
}

fn refused(e: OverlayError) -> AnswerError {
    AnswerError::Refused(format!(
        "the rule was not saved, and the call is still held: {e}"
    ))
}

/// Keeps the table consistent if the impossible happens (an entry checked under the lock
/// vanished under the same lock).
fn unreachable_fail_closed() {
    tracing::error!("a held call vanished under its lock");
}

fn remember(table: &mut Table, resolution: Resolution) {
    if table.recent.len() >= RECENT {
        table.recent.pop_front();
    }
    table.recent.push_back(resolution);
}

/// What the decision of a held call needs from its caller.
pub(crate) struct CallerRef<'a> {
    /// The calling thread.
    pub pid: i32,
    /// `NOTIF_ID_VALID`: the caller still waits in this call.
    pub still_valid: &'a dyn Fn() -> bool,
}

/// The destination of `request` as rules made by operators name it: canonical, except that a
/// bind keeps its wildcard address.
fn key_of(request: &Request) -> String {
    match (request.op, request.target.endpoint_string()) {
        (Op::Bind, Some(bind)) => bind,
        _ => request.target.canonical().to_string(),
    }
}

fn with_verdict(mut decision: Decision, allow: bool, rule: &str) -> Decision {
    decision.verdict = if allow {
        Verdict::Allow
    } else {
        Verdict::Deny { errno: libc::EPERM }
    };
    decision.rule = rule.to_string();
    decision
}

/// Held call `id` as operators see it when it is published: where it comes from (the
/// sandbox, and the caller `pid` with its parents), what it asks for, and what the policy's
/// `ask_timeout` and `ask_fallback` give it.
fn pending_info(
    id: RequestId,
    sandbox: &Asking<'_>,
    pid: i32,
    request: &Request,
    decision: &Decision,
    key: &str,
) -> PendingInfo {
    let policy = &sandbox.policy;
    let fallback_allows = policy.ask_fallback() == Verdict::Allow;
    PendingInfo {
        id,
        sandbox: sandbox.id,
        name: clip(sandbox.name, MAX_TEXT),
        container: clip(sandbox.container.unwrap_or(""), MAX_TEXT),
        policy: clip(policy.name(), MAX_TEXT),
        pid,
        chain: chain(pid),
        op: op_name(request.op).to_string(),
        endpoint: clip(key, MAX_TEXT),
        host: clip(decision.host.as_deref().unwrap_or(""), MAX_TEXT),
        rule: decision.rule.clone(),
        age_ms: 0,
        remaining_ms: policy.ask_timeout().as_millis() as u64,
        fallback: if fallback_allows { "allow" } else { "deny" }.to_string(),
    }
}

fn report(held: &Held) -> PendingInfo {
    let mut info = held.info.clone();
    let now = Instant::now();
    info.age_ms = now.duration_since(held.created).as_millis() as u64;
    info.remaining_ms = held.deadline.saturating_duration_since(now).as_millis() as u64;
    info
}

/// The word for an operation in reports.
pub(crate) fn op_name(op: Op) -> &'static str {
    match op {
        Op::Connect => "connect",
        Op::Send => "send",
        Op::Bind => "bind",
        _ => "other",
    }
}

pub(super) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Wall-clock time `after` from now, as `HH:MM:SS` UTC, for rule texts.
fn clock_in(after: Duration) -> String {
    let t = SystemTime::now() + after;
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        (day % 3600) / 60,
        day % 60
    )
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
