//! The control socket's messages: round trips, hostile input, and the size of one list item.

use netjail_protocol::codec;
use netjail_protocol::control::{
    Counters, DecisionInfo, Event, GrantDuration, GrantScope, OperatorReply, OperatorRequest,
    Outcome, PendingInfo, ProcessInfo, ReloadItem, ReloadOutcome, RequestId, Resolution,
    SandboxInfo, StatusReport,
};
use netjail_protocol::{SandboxId, MAX_MESSAGE_SIZE};
use proptest::prelude::*;

fn scope() -> impl Strategy<Value = GrantScope> {
    prop_oneof![
        Just(GrantScope::Sandbox),
        Just(GrantScope::Policy),
        Just(GrantScope::Container)
    ]
}

fn duration() -> impl Strategy<Value = GrantDuration> {
    prop_oneof![
        Just(GrantDuration::Once),
        any::<u64>().prop_map(|millis| GrantDuration::For { millis }),
        Just(GrantDuration::Always),
    ]
}

fn request() -> impl Strategy<Value = OperatorRequest> {
    prop_oneof![
        (any::<u16>(), ".*")
            .prop_map(|(version, client)| OperatorRequest::Hello { version, client }),
        Just(OperatorRequest::Status),
        Just(OperatorRequest::Pending),
        (any::<u64>(), duration(), scope()).prop_map(|(id, duration, scope)| {
            OperatorRequest::Grant {
                id: RequestId(id),
                duration,
                scope,
            }
        }),
        (any::<u64>(), any::<bool>(), scope()).prop_map(|(id, always, scope)| {
            OperatorRequest::Deny {
                id: RequestId(id),
                always,
                scope,
            }
        }),
        any::<bool>().prop_map(|decisions| OperatorRequest::Watch { decisions }),
        Just(OperatorRequest::Metrics),
        Just(OperatorRequest::Reload),
    ]
}

fn pending(id: u64, text: String) -> PendingInfo {
    PendingInfo {
        id: RequestId(id),
        sandbox: SandboxId(id / 2),
        name: text.clone(),
        container: String::new(),
        policy: "web".into(),
        pid: 4242,
        chain: vec![
            ProcessInfo {
                pid: 4242,
                program: text.clone(),
            },
            ProcessInfo {
                pid: 1,
                program: "/sbin/init".into(),
            },
        ],
        op: "connect".into(),
        endpoint: "tcp://127.0.0.1:8080".into(),
        host: text,
        rule: "ask[0].connect[0]".into(),
        age_ms: id,
        remaining_ms: 30_000,
        fallback: "deny".into(),
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Granted),
        Just(Outcome::Denied),
        Just(Outcome::TimedOut),
        Just(Outcome::Unattended),
        Just(Outcome::Ruled),
        Just(Outcome::Gone),
    ]
}

fn reply() -> impl Strategy<Value = OperatorReply> {
    prop_oneof![
        (any::<u16>(), ".*", ".*").prop_map(|(version, broker, operator)| {
            OperatorReply::Welcome {
                version,
                broker,
                operator,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(uptime_ms, n, c)| {
            OperatorReply::Status(StatusReport {
                broker: "netjaild".into(),
                uptime_ms,
                operators: n,
                sandboxes: n,
                pending: n,
                grants: n,
                counters: Counters {
                    allowed: c,
                    denied: c,
                    asked: c,
                    ..Counters::default()
                },
            })
        }),
        (any::<u64>(), ".*").prop_map(|(n, name)| OperatorReply::Sandbox(SandboxInfo {
            sandbox: SandboxId(n),
            name,
            container: "c1".into(),
            pid: 7,
            policy: "p".into(),
            decisions: n,
            pending: 0,
            age_ms: n,
        })),
        (any::<u64>(), ".*").prop_map(|(id, text)| OperatorReply::Pending(pending(id, text))),
        Just(OperatorReply::End),
        (any::<u64>(), outcome(), any::<bool>(), ".*").prop_map(|(id, outcome, allowed, by)| {
            OperatorReply::Resolved(Resolution {
                id: RequestId(id),
                outcome,
                allowed,
                by,
                rule: String::new(),
            })
        }),
        (any::<u64>(), ".*").prop_map(|(n, endpoint)| OperatorReply::Event(Event::Decision(
            DecisionInfo {
                time_ms: n,
                sandbox: SandboxId(n),
                name: "curl".into(),
                container: String::new(),
                pid: 9,
                program: "/usr/bin/curl".into(),
                op: "connect".into(),
                endpoint,
                host: String::new(),
                decision: "allow".into(),
                rule: "allow[0].connect[0]".into(),
                errno: 0,
                latency_us: n,
            }
        ))),
        any::<u64>().prop_map(|missed| OperatorReply::Event(Event::Lagged { missed })),
        ".*".prop_map(OperatorReply::Metrics),
        (".*", ".*").prop_map(|(subject, detail)| OperatorReply::Reloaded(ReloadItem {
            subject,
            outcome: ReloadOutcome::Rejected,
            detail,
        })),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(msg in request()) {
        let datagram = codec::encode(&msg).unwrap();
        prop_assert_eq!(codec::decode::<OperatorRequest>(&datagram).unwrap(), msg);
    }

    #[test]
    fn replies_round_trip(msg in reply()) {
        let datagram = codec::encode(&msg).unwrap();
        prop_assert_eq!(codec::decode::<OperatorReply>(&datagram).unwrap(), msg);
    }

    #[test]
    fn damaged_requests_never_panic(msg in request(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut datagram = codec::encode(&msg).unwrap();
        let i = at.index(datagram.len());
        let _ = codec::decode::<OperatorRequest>(&datagram[..i]);
        datagram[i] = byte;
        let _ = codec::decode::<OperatorRequest>(&datagram);
    }
}

/// A held call whose chain is deep and whose names are long still fits one datagram when the
/// broker bounds what it reports (at most 16 processes of at most 256 bytes each, endpoint and
/// names of at most 4 KiB): the broker's bounds are what make "one item per datagram" hold.
#[test]
fn a_bounded_pending_item_fits_one_datagram() {
    let long = "x".repeat(4096);
    let mut item = pending(u64::MAX, long.clone());
    item.endpoint = long.clone();
    item.container = long.clone();
    item.policy = long;
    item.chain = (0..16)
        .map(|pid| ProcessInfo {
            pid,
            program: "p".repeat(256),
        })
        .collect();
    let datagram = codec::encode(&OperatorReply::Pending(item)).unwrap();
    assert!(
        datagram.len() < MAX_MESSAGE_SIZE,
        "{} bytes",
        datagram.len()
    );
}

/// `Metrics` came after the other control messages (issue 8): the variants that existed
/// before keep their tags, so old clients and brokers still understand each other.
#[test]
fn metrics_messages_are_appended() {
    let encode = |r: &OperatorRequest| codec::encode(r).unwrap();
    assert_eq!(encode(&OperatorRequest::Status), b"NJ\x00\x01\x01");
    assert_eq!(
        encode(&OperatorRequest::Watch { decisions: true }),
        b"NJ\x00\x01\x05\x01"
    );
    assert_eq!(encode(&OperatorRequest::Metrics), b"NJ\x00\x01\x06");
    let encode = |r: &OperatorReply| codec::encode(r).unwrap();
    assert_eq!(encode(&OperatorReply::End), b"NJ\x00\x01\x04");
    assert_eq!(
        encode(&OperatorReply::Metrics("a".into())),
        b"NJ\x00\x01\x08\x01a"
    );
}

/// The broker cuts the metrics text into pieces of at most 32 KiB: one fits a datagram.
#[test]
fn a_metrics_piece_fits_one_datagram() {
    let piece = "x".repeat(32 * 1024);
    let datagram = codec::encode(&OperatorReply::Metrics(piece)).unwrap();
    assert!(datagram.len() < MAX_MESSAGE_SIZE, "{}", datagram.len());
}
