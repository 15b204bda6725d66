use super::process_chain::chain;
use super::process_chain::parent_of;
use super::process_chain::MAX_CHAIN;
use super::scope::Asking;
use super::*;
use netjail_policy::Policy;

/// L8: sandboxes at their own bound cannot take every place; one that holds little
/// still gets its floor.
#[test]
fn held_calls_keep_a_reserve_for_sandboxes_that_hold_little() {
    let mut held = 0;
    let mut full = 0;
    // Sandboxes each asking for as many as they may, one after another.
    loop {
        let mut mine = 0;
        while may_hold(held, mine) {
            held += 1;
            mine += 1;
        }
        if mine < MAX_HELD_PER_SANDBOX {
            break;
        }
        full += 1;
    }
    assert_eq!(full, (MAX_HELD - HELD_RESERVE) / MAX_HELD_PER_SANDBOX);
    // The next ones get their floor each, until the reserve is gone.
    let mut floors = 1;
    while may_hold(held, 0) {
        for mine in 0..HELD_FLOOR {
            assert!(may_hold(held, mine));
            held += 1;
        }
        assert!(!may_hold(held, HELD_FLOOR));
        floors += 1;
    }
    assert!(floors >= HELD_RESERVE / HELD_FLOOR, "{floors}");
    assert_eq!(held, MAX_HELD);
    assert!(!may_hold(MAX_HELD, 0));
    // The finding's eight sandboxes of sixteen leave room for a ninth.
    assert!(may_hold(8 * MAX_HELD_PER_SANDBOX, 0));
}

/// A sandbox whose policy asks about everything, holds a call 60 s, then `fallback`.
fn asking(id: u64, fallback: &str) -> (SandboxId, Arc<Policy>) {
    let text = format!(
        "name = \"asking\"\ndefault = \"ask\"\nask_timeout = \"60s\"\nask_fallback = \"{fallback}\"\n"
    );
    (
        SandboxId(id),
        Arc::new(Policy::from_toml(&text, "t").unwrap()),
    )
}

fn connect_to(port: u16) -> Request {
    Request {
        op: Op::Connect,
        target: netjail_policy::Target::Inet {
            proto: netjail_policy::Proto::Tcp,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        },
    }
}

/// Asks about a connect of `sandbox` on a thread of its own, as the blocking pool would:
/// its decision, its note, and how long it was held.
fn ask(
    ops: &Arc<Operators>,
    sandbox: &(SandboxId, Arc<Policy>),
    port: u16,
) -> std::thread::JoinHandle<(Decision, String, Duration)> {
    let (ops, (id, policy)) = (ops.clone(), sandbox.clone());
    std::thread::spawn(move || {
        let request = connect_to(port);
        let decision = policy.evaluate(&request);
        assert_eq!(decision.verdict, Verdict::Ask);
        let started = Instant::now();
        let alive = || true;
        let caller = CallerRef {
            pid: std::process::id() as i32,
            still_valid: &alive,
        };
        let sandbox = Asking {
            id,
            name: "asking",
            container: None,
            policy,
            tenant: None,
            max_pending: None,
        };
        let (d, note) = ops.decide(&sandbox, caller, &request, decision);
        (d, note, started.elapsed())
    })
}

fn wait_held(ops: &Operators, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ops.pending_count() < n {
        assert!(Instant::now() < deadline, "never held");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Rule M4: with the last operator gone, nobody can answer what is held; every held call
/// gets its policy's fallback at once, not at the end of its 60 s.
#[test]
fn m4_the_last_watcher_leaving_gives_every_held_call_its_fallback() {
    let ops = Operators::new(None);
    let denying = asking(1, "deny");
    let allowing = asking(2, "allow");
    let (_rx1, first) = ops.watch(false);
    let (_rx2, second) = ops.watch(true);
    let held = [ask(&ops, &denying, 1), ask(&ops, &allowing, 2)];
    wait_held(&ops, 2);
    // One operator is still there: the calls wait for it.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ops.pending_count(), 2);
    drop(second);
    let [deny, allow] = held.map(|h| h.join().unwrap());
    assert_eq!(deny.0.verdict, Verdict::Deny { errno: libc::EPERM });
    assert_eq!(allow.0.verdict, Verdict::Allow);
    for (d, note, waited) in [&deny, &allow] {
        assert_eq!(d.rule, "default");
        assert!(
            note.starts_with("unattended: the last operator stopped watching"),
            "{note}"
        );
        assert!(*waited < Duration::from_secs(5), "{waited:?}");
    }
    assert_eq!(ops.pending_count(), 0);
    let c = ops.counters();
    assert_eq!((c.asked, c.unattended, c.timed_out), (2, 2, 0));
    // A late answer is told what happened.
    let late = ops.answer(
        RequestId(1),
        true,
        GrantDuration::Once,
        GrantScope::Sandbox,
        "uid 0",
    );
    let Err(AnswerError::NotPending(why)) = late else {
        panic!("{late:?}");
    };
    assert!(why.contains("no operator was watching any more"), "{why}");
}

/// A call asked while the last operator leaves is either held before the leaving, and then
/// ended by it, or sees nobody watching: never held with nobody left to answer.
#[test]
fn m4_a_call_asked_as_the_last_watcher_leaves_is_never_left_held() {
    let ops = Operators::new(None);
    let sandbox = asking(1, "deny");
    for round in 0..200 {
        let (_rx, presence) = ops.watch(false);
        let asked = ask(&ops, &sandbox, 1);
        if round % 2 == 1 {
            std::thread::yield_now();
        }
        drop(presence);
        let (d, note, waited) = asked.join().unwrap();
        assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM }, "{note}");
        assert!(note.starts_with("unattended: "), "{note}");
        assert!(waited < Duration::from_secs(5), "round {round}: {waited:?}");
    }
    assert_eq!(ops.pending_count(), 0);
}

/// An operator who comes as another leaves keeps the held calls waiting for an answer.
#[test]
fn a_watcher_that_comes_as_the_last_leaves_keeps_calls_held() {
    let ops = Operators::new(None);
    let sandbox = asking(1, "deny");
    let (_rx, leaving) = ops.watch(false);
    let held = ask(&ops, &sandbox, 1);
    wait_held(&ops, 1);
    let (_rx2, coming) = ops.watch(false);
    drop(leaving);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ops.pending_count(), 1);
    let id = ops.pending()[0].id;
    ops.answer(id, true, GrantDuration::Once, GrantScope::Sandbox, "uid 0")
        .unwrap();
    let (d, note, _) = held.join().unwrap();
    assert_eq!(d.verdict, Verdict::Allow, "{note}");
    drop(coming);
}

/// A sandbox whose every task exited has nobody to answer: its held calls end at once,
/// another sandbox's stay held.
#[test]
fn held_calls_of_a_sandbox_that_ended_end_at_once() {
    let ops = Operators::new(None);
    let (ended, other) = (asking(1, "allow"), asking(2, "deny"));
    let (_rx, presence) = ops.watch(false);
    let gone = ask(&ops, &ended, 1);
    let stays = ask(&ops, &other, 2);
    wait_held(&ops, 2);
    ops.sandbox_ended(SandboxId(1));
    let (d, note, waited) = gone.join().unwrap();
    assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
    assert!(note.starts_with("gone: "), "{note}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(ops.pending_of(SandboxId(2)), 1);
    drop(presence);
    let (d, _, _) = stays.join().unwrap();
    assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
}

#[test]
fn clip_keeps_char_boundaries() {
    assert_eq!(clip("abc", 5), "abc");
    assert_eq!(clip("ééé", 3), "é…");
}

#[test]
fn chain_of_this_process_reaches_its_parent() {
    let me = std::process::id() as i32;
    let c = chain(me);
    assert_eq!(c[0].pid, me);
    assert!(c[0].program.contains("broker"), "{c:?}");
    assert_eq!(c[1].pid, parent_of(me).unwrap());
    assert!(c.len() <= MAX_CHAIN);
    assert!(c.last().unwrap().pid == 1 || c.len() == MAX_CHAIN, "{c:?}");
}
