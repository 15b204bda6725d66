use netjail_protocol::control::{Event, Outcome, RequestId, Resolution};
use netjail_protocol::SandboxId;
use serde_json::Value;

use super::*;
use crate::operator::fake::{sample_decision, sample_pending, sample_report, sample_sandbox};

fn parse(line: &str) -> Value {
    assert!(!line.contains('\n'), "one line: {line}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn chain_names_each_process_by_its_program() {
    let held = sample_pending(7);
    assert_eq!(chain(&held), "curl(412) < sh(400) < netjail(390)");
    let alone = PendingInfo {
        chain: Vec::new(),
        ..sample_pending(7)
    };
    assert_eq!(chain(&alone), "?(412)");
    assert_eq!(program_name("/usr/bin/curl"), "curl");
    assert_eq!(program_name("curl"), "curl");
    assert_eq!(program_name("/weird/dir/"), "dir");
    assert_eq!(program_name(""), "?");
}

#[test]
fn a_pending_row_and_table() {
    let held = sample_pending(7);
    assert_eq!(
        pending_row(&held, 0),
        [
            "7",
            "4s",
            "sb-3 curl",
            "412",
            "curl(412) < sh(400) < netjail(390)",
            "connect",
            "tcp://127.0.0.1:8080",
            "-",
            "26s",
        ]
    );
    // Aged by the UI: older, less time left, never below zero.
    let aged = pending_row(&held, 30_000);
    assert_eq!((aged[1].as_str(), aged[8].as_str()), ("34s", "0s"));

    let in_container = PendingInfo {
        container: "0123456789abcdef0123".into(),
        host: "example.com".into(),
        ..sample_pending(12)
    };
    let table = pending_table(&[held, in_container]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID  AGE  SANDBOX"), "{table}");
    assert!(lines[0].ends_with("HOST         LEFT"), "{table}");
    assert!(lines[1].starts_with("7   4s   sb-3 curl "), "{table}");
    assert!(lines[2].contains("sb-3 curl [0123456789ab]"), "{table}");
    assert!(lines[2].contains("example.com"), "{table}");
    // Every row's ENDPOINT starts in the same column as its header.
    let column = lines[0].find("ENDPOINT").expect("ENDPOINT");
    for line in &lines[1..] {
        assert_eq!(line.find("tcp://"), Some(column), "{table}");
    }
}

#[test]
fn status_text_has_the_report_the_counters_and_a_sandbox_row() {
    let text = status_text(&sample_report(), &[sample_sandbox()]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "broker netjaild 0.1.0, up 2h03m, 1 operator watching, 1 sandbox, 1 pending, 0 grants"
    );
    assert!(
        lines[1].starts_with("calls: 10 allowed, 2 denied, 3 passed, 0 errors, 1 asked"),
        "{text}"
    );
    assert!(lines[3].starts_with("ID    NAME  CONTAINER  PID"), "{text}");
    assert!(lines[4].starts_with("sb-3  curl  -          390"), "{text}");
    assert!(lines[4].ends_with("1m05s"), "{text}");
    assert!(status_text(&sample_report(), &[]).contains("no sandboxes"));
}

#[test]
fn watch_lines_mark_held_and_resolved_calls() {
    let decision = Event::Decision(sample_decision());
    assert_eq!(
        event_line(&decision, 0),
        "12:00:01.234Z  deny   sb-3 curl  curl(412)  connect tcp://169.254.169.254:80  rule deny[0].connect[0]  EPERM"
    );
    let held = event_line(&Event::Pending(sample_pending(7)), 1_000);
    assert_eq!(
        held,
        "00:00:01.000Z  PENDING #7  sb-3 curl  curl(412) < sh(400) < netjail(390)  connect tcp://127.0.0.1:8080  rule ask[0].connect[0], 26s left then deny"
    );
    let resolved = Event::Resolved(Resolution {
        id: RequestId(7),
        outcome: Outcome::TimedOut,
        allowed: false,
        by: "timeout".into(),
        rule: String::new(),
    });
    assert_eq!(
        event_line(&resolved, 0),
        "00:00:00.000Z  RESOLVED #7  timed-out by timeout (refused)"
    );
    let retired = Event::Retired {
        sandbox: SandboxId(3),
        name: "curl".into(),
    };
    assert!(event_line(&retired, 0).ends_with("- sb-3 curl  retired"));
    assert!(event_line(&Event::Registered(sample_sandbox()), 0)
        .contains("+ sb-3 curl  pid 390, policy web"));
    assert!(event_line(&Event::Lagged { missed: 4 }, 0).contains("LAGGED  missed 4 events"));
}

#[test]
fn resolution_lines() {
    let held = sample_pending(7);
    let granted = Resolution {
        id: RequestId(7),
        outcome: Outcome::Granted,
        allowed: true,
        by: "uid 0".into(),
        rule: "allow tcp://127.0.0.1:8080 for sandbox sb-3 until 12:00:02".into(),
    };
    assert_eq!(
        resolution_line(&granted, Some(&held)),
        "granted 7: connect tcp://127.0.0.1:8080 from sb-3 curl curl(412) < sh(400) < netjail(390) (rule: allow tcp://127.0.0.1:8080 for sandbox sb-3 until 12:00:02)"
    );
    let denied = Resolution {
        outcome: Outcome::Denied,
        allowed: false,
        rule: String::new(),
        ..granted.clone()
    };
    assert_eq!(resolution_line(&denied, None), "denied 7");
    let fallback = Resolution {
        outcome: Outcome::Unattended,
        allowed: true,
        rule: String::new(),
        ..granted
    };
    assert_eq!(
        resolution_line(&fallback, None),
        "unattended 7 (call allowed)"
    );
}

#[test]
fn pending_json_is_the_pending_info() {
    let line = pending_json(&sample_pending(7)).expect("json");
    let v = parse(&line);
    assert_eq!(v["id"], 7);
    assert_eq!(v["sandbox"], 3);
    assert_eq!(v["endpoint"], "tcp://127.0.0.1:8080");
    assert_eq!(v["chain"][1]["program"], "/bin/sh");
    assert_eq!(v["remaining_ms"], 26_000);
    let back: PendingInfo = serde_json::from_str(&line).expect("parses back");
    assert_eq!(back, sample_pending(7));
}

#[test]
fn watch_json_says_which_event_beside_its_fields() {
    let cases = [
        (Event::Pending(sample_pending(7)), "pending"),
        (Event::Decision(sample_decision()), "decision"),
        (Event::Registered(sample_sandbox()), "registered"),
        (
            Event::Resolved(Resolution {
                id: RequestId(7),
                outcome: Outcome::Granted,
                allowed: true,
                by: "uid 0".into(),
                rule: String::new(),
            }),
            "resolved",
        ),
        (
            Event::Retired {
                sandbox: SandboxId(3),
                name: "curl".into(),
            },
            "retired",
        ),
        (Event::Lagged { missed: 4 }, "lagged"),
    ];
    for (event, kind) in cases {
        let v = parse(&event_json(&event).expect("json"));
        assert_eq!(v["event"], kind, "{v}");
        match kind {
            "pending" => assert_eq!(
                (v["id"].clone(), v["op"].clone()),
                (7.into(), "connect".into())
            ),
            "decision" => {
                assert_eq!(v["decision"], "deny");
                assert_eq!(v["errno"], libc::EPERM);
                assert_eq!(v["endpoint"], "tcp://169.254.169.254:80");
            }
            "registered" => assert_eq!(v["policy"], "web"),
            "resolved" => {
                assert_eq!(v["id"], 7);
                assert_eq!(v["outcome"], "Granted");
                assert_eq!(v["allowed"], true);
            }
            "retired" => assert_eq!(
                (v["sandbox"].clone(), v["name"].clone()),
                (3.into(), "curl".into())
            ),
            "lagged" => assert_eq!(v["missed"], 4),
            _ => unreachable!(),
        }
    }
}

#[test]
fn status_json_is_the_report_then_each_sandbox() {
    let lines = status_json(&sample_report(), &[sample_sandbox(), sample_sandbox()]).expect("json");
    assert_eq!(lines.len(), 3);
    let report = parse(&lines[0]);
    assert_eq!(report["kind"], "broker");
    assert_eq!(report["uptime_ms"], 7_380_000);
    assert_eq!(report["counters"]["allowed"], 10);
    assert_eq!(report["counters"]["passed"], 3);
    assert_eq!(report["counters"]["errors"], 0);
    for line in &lines[1..] {
        let sandbox = parse(line);
        assert_eq!(sandbox["kind"], "sandbox");
        assert_eq!(sandbox["sandbox"], 3);
        assert_eq!(sandbox["name"], "curl");
    }
}

#[test]
fn clock_and_errno() {
    assert_eq!(clock(0), "00:00:00.000Z");
    assert_eq!(clock(86_400_000 + 3_723_004), "01:02:03.004Z");
    assert_eq!(errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
    assert_eq!(errno_name(4242), "errno 4242");
}
