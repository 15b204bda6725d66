//! The control client and the commands against a fake broker.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use netjail_protocol::control::{
    Event, GrantDuration, GrantScope, OperatorReply, OperatorRequest, Outcome, RequestId,
};
use netjail_protocol::{codec, ErrorCode, ErrorReply};
use serde_json::Value;
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

use super::commands::{self, Answer, CommandError, PendingOptions, ResolveOptions};
use super::fake::{sample_decision, sample_pending, sample_sandbox, FakeBroker, FakeState};
use super::*;

fn held(ids: &[u64]) -> FakeState {
    FakeState {
        pending: ids.iter().map(|&id| sample_pending(id)).collect(),
        sandboxes: vec![sample_sandbox()],
        ..FakeState::default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn no_broker_names_the_path_and_the_ways_to_name_another() {
    let path = std::env::temp_dir().join(format!("netjail-nothing-{}.sock", std::process::id()));
    let e = Control::connect(&path, "test")
        .await
        .expect_err("nothing there");
    assert_eq!(
        e.to_string(),
        format!(
            "no broker at {} (is netjaild running? --control or NETJAIL_CONTROL name another socket)",
            path.display()
        )
    );

    // A socket file nobody listens on any more is the same to an operator.
    let broker = FakeBroker::start(FakeState::default());
    let stale = broker.path().with_file_name("stale.sock");
    drop(UnixSeqpacketListener::bind(&stale).expect("bind"));
    let e = Control::connect(&stale, "test").await.expect_err("stale");
    assert!(matches!(e, OperatorError::NoBroker { .. }), "{e}");
}

#[test]
fn permission_denied_says_so_with_the_path() {
    let e = OperatorError::connect(
        std::path::Path::new("/run/netjail/control.sock"),
        io::Error::from(io::ErrorKind::PermissionDenied),
    );
    assert_eq!(
        e.to_string(),
        "permission denied connecting to /run/netjail/control.sock (operators are root or members of the broker's operator group)"
    );
}

#[tokio::test]
async fn hello_welcome_and_the_broker_refusing_an_operator() {
    let broker = FakeBroker::start(FakeState::default());
    let control = Control::connect(broker.path(), "netjail test")
        .await
        .expect("connect");
    assert_eq!(control.broker(), "netjaild 0.1.0 (fake)");
    assert_eq!(control.operator(), "uid 0");
    assert_eq!(
        broker.state().requests,
        [OperatorRequest::Hello {
            version: PROTOCOL_VERSION,
            client: "netjail test".into()
        }]
    );

    let refusing = FakeBroker::start(FakeState {
        refuse_hello: Some(ErrorReply {
            code: ErrorCode::NotOperator,
            message: "uid 1000 is neither root nor in group netjail".into(),
        }),
        ..FakeState::default()
    });
    let e = Control::connect(refusing.path(), "t")
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "the broker refused this operator: uid 1000 is neither root nor in group netjail"
    );
}

#[tokio::test]
async fn a_broker_of_another_version() {
    let broker = FakeBroker::start(FakeState {
        welcome_version: Some(PROTOCOL_VERSION + 1),
        ..FakeState::default()
    });
    let e = Control::connect(broker.path(), "t")
        .await
        .expect_err("version");
    assert!(matches!(e, OperatorError::Version { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("protocol version mismatch: the broker speaks version 2"),
        "{e}"
    );

    // The same in the datagram's header.
    let (client, fake) = UnixSeqpacket::pair().expect("pair");
    let answer = tokio::spawn(async move {
        let _ = recv::<OperatorRequest>(&fake).await;
        let mut datagram = codec::encode(&OperatorReply::End).expect("encode");
        datagram[3] = 9;
        fake.send(&datagram).await.expect("send");
        fake
    });
    let e = Control::hello(client, "t").await.expect_err("version");
    assert!(e.to_string().contains("the broker speaks version 9"), "{e}");
    drop(answer.await);
}

#[tokio::test]
async fn a_wrong_answer_is_named() {
    let (client, fake) = UnixSeqpacket::pair().expect("pair");
    let answer = tokio::spawn(async move {
        let _ = recv::<OperatorRequest>(&fake).await;
        send(&fake, &OperatorReply::End, &[]).await.expect("send");
        fake
    });
    let e = Control::hello(client, "t").await.expect_err("unexpected");
    assert_eq!(
        e.to_string(),
        "unexpected answer from the broker to hello: End"
    );
    drop(answer.await);
}

#[tokio::test]
async fn a_hello_without_answer_times_out() {
    let broker = FakeBroker::start(FakeState {
        silent_hello: true,
        ..FakeState::default()
    });
    let start = Instant::now();
    let e = Control::connect(broker.path(), "t")
        .await
        .expect_err("silence");
    assert!(start.elapsed() >= HELLO_TIMEOUT);
    assert!(start.elapsed() < HELLO_TIMEOUT + Duration::from_secs(3));
    assert_eq!(e.to_string(), "the broker did not answer hello within 5s");
}

#[tokio::test]
async fn status_pending_grant_deny() {
    let broker = FakeBroker::start(held(&[7, 8, 9]));
    let mut control = Control::connect(broker.path(), "t").await.expect("connect");

    let (report, sandboxes) = control.status().await.expect("status");
    assert_eq!(report.broker, "netjaild 0.1.0");
    assert_eq!(sandboxes, [sample_sandbox()]);

    let ids: Vec<u64> = control
        .pending()
        .await
        .expect("pending")
        .iter()
        .map(|p| p.id.0)
        .collect();
    assert_eq!(ids, [7, 8, 9]);

    let r = control
        .grant(
            RequestId(7),
            GrantDuration::For { millis: 2000 },
            GrantScope::Policy,
        )
        .await
        .expect("grant");
    assert_eq!(
        (r.id, r.outcome, r.allowed),
        (RequestId(7), Outcome::Granted, true)
    );
    let r = control
        .deny(RequestId(8), true, GrantScope::Sandbox)
        .await
        .expect("deny");
    assert_eq!(
        (r.id, r.outcome, r.allowed),
        (RequestId(8), Outcome::Denied, false)
    );

    let e = control
        .grant(RequestId(7), GrantDuration::Once, GrantScope::Sandbox)
        .await
        .expect_err("no longer held");
    assert!(matches!(e, OperatorError::NotPending { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "call 7 is not held (answered, timed out, or its caller exited)"
    );
    // The conversation goes on after an error.
    assert_eq!(control.pending().await.expect("pending").len(), 1);

    let requests = broker.state().requests.clone();
    assert!(requests.contains(&OperatorRequest::Grant {
        id: RequestId(7),
        duration: GrantDuration::For { millis: 2000 },
        scope: GrantScope::Policy,
    }));
    assert!(requests.contains(&OperatorRequest::Deny {
        id: RequestId(8),
        always: true,
        scope: GrantScope::Sandbox,
    }));
}

#[tokio::test]
async fn watch_streams_held_calls_then_events_then_says_the_broker_left() {
    let broker = FakeBroker::start(FakeState {
        events: vec![Event::Decision(sample_decision())],
        close_watch: true,
        ..held(&[7])
    });
    let control = Control::connect(broker.path(), "t").await.expect("connect");
    let mut watch = control.watch(true).await.expect("watch");
    assert!(matches!(watch.next().await, Ok(Event::Pending(p)) if p.id == RequestId(7)));
    assert!(matches!(watch.next().await, Ok(Event::Decision(_))));
    let e = watch.next().await.expect_err("closed");
    assert_eq!(e.to_string(), "broker closed the connection");
    assert_eq!(
        broker.state().requests.last(),
        Some(&OperatorRequest::Watch { decisions: true })
    );
}

// The commands, as `netjail` runs them.

fn pending_opts(broker: &FakeBroker) -> PendingOptions {
    PendingOptions {
        control: broker.path().to_path_buf(),
        json: false,
        wait: false,
        timeout: None,
    }
}

#[tokio::test]
async fn pending_prints_a_table_or_json_lines() {
    let broker = FakeBroker::start(held(&[7, 8]));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    commands::pending(&pending_opts(&broker), &mut out, &mut err)
        .await
        .expect("pending");
    let table = text(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ID  AGE  SANDBOX    PID  PROGRAM"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("7   4s   sb-3 curl  412  curl(412) < sh(400) < netjail(390)"),
        "{table}"
    );
    assert!(err.is_empty());

    let mut out = Vec::new();
    let opts = PendingOptions {
        json: true,
        ..pending_opts(&broker)
    };
    commands::pending(&opts, &mut out, &mut err)
        .await
        .expect("pending");
    let ids: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["id"].clone())
        .collect();
    assert_eq!(ids, [7, 8]);
}

#[tokio::test]
async fn pending_with_nothing_held() {
    let broker = FakeBroker::start(held(&[]));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    commands::pending(&pending_opts(&broker), &mut out, &mut err)
        .await
        .expect("pending");
    assert!(out.is_empty());
    assert_eq!(text(&err), "no calls held\n");

    // --wait --timeout: nothing comes.
    let opts = PendingOptions {
        wait: true,
        timeout: Some(Duration::from_millis(300)),
        ..pending_opts(&broker)
    };
    let e = commands::pending(&opts, &mut out, &mut err)
        .await
        .expect_err("timeout");
    assert_eq!(e.to_string(), "no call held within 300ms");
    assert_eq!(
        broker.state().requests.last(),
        Some(&OperatorRequest::Watch { decisions: false })
    );
}

#[tokio::test]
async fn pending_wait_prints_the_first_held_call() {
    let broker = FakeBroker::start(FakeState {
        events: vec![
            Event::Decision(sample_decision()),
            Event::Pending(sample_pending(11)),
            Event::Pending(sample_pending(12)),
        ],
        ..held(&[])
    });
    let opts = PendingOptions {
        wait: true,
        json: true,
        timeout: Some(Duration::from_secs(10)),
        ..pending_opts(&broker)
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    commands::pending(&opts, &mut out, &mut err)
        .await
        .expect("pending");
    let lines: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], 11);
}

#[tokio::test]
async fn grant_and_deny_print_one_line_and_the_brokers_refusal() {
    let broker = FakeBroker::start(held(&[7, 8]));
    let opts = |id, answer| ResolveOptions {
        control: broker.path().to_path_buf(),
        id: RequestId(id),
        answer,
        scope: GrantScope::Sandbox,
    };
    let mut out = Vec::new();
    commands::resolve(&opts(7, Answer::Grant(GrantDuration::Once)), &mut out)
        .await
        .expect("grant");
    commands::resolve(&opts(8, Answer::Deny { always: false }), &mut out)
        .await
        .expect("deny");
    assert_eq!(
        text(&out),
        "granted 7: connect tcp://127.0.0.1:8080 from sb-3 curl curl(412) < sh(400) < netjail(390)\n\
         denied 8: connect tcp://127.0.0.1:8080 from sb-3 curl curl(412) < sh(400) < netjail(390)\n"
    );
    let e = commands::resolve(&opts(7, Answer::Grant(GrantDuration::Always)), &mut out)
        .await
        .expect_err("not held");
    assert_eq!(
        e.to_string(),
        "call 7 is not held (answered, timed out, or its caller exited)"
    );
}

/// A writer whose reader went away.
struct Closed;

impl Write for Closed {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn watch_prints_a_line_per_event_until_the_broker_leaves() {
    let broker = FakeBroker::start(FakeState {
        events: vec![Event::Decision(sample_decision())],
        close_watch: true,
        ..held(&[7])
    });
    let opts = |json| commands::WatchOptions {
        control: broker.path().to_path_buf(),
        json,
        pending_only: false,
    };
    let mut out = Vec::new();
    let e = commands::watch(&opts(false), &mut out)
        .await
        .expect_err("closed");
    assert_eq!(e.to_string(), "broker closed the connection");
    let lines = text(&out);
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("PENDING #7"), "{lines:?}");
    assert!(lines[1].starts_with("12:00:01.234Z  deny"), "{lines:?}");

    let mut out = Vec::new();
    let _ = commands::watch(&opts(true), &mut out).await;
    let kinds: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["event"].clone())
        .collect();
    assert_eq!(kinds, ["pending", "decision"]);

    // A reader that went away ends the watch quietly.
    commands::watch(&opts(false), &mut Closed)
        .await
        .expect("quiet");
    assert!(matches!(
        CommandError::from(io::Error::from(io::ErrorKind::BrokenPipe)),
        CommandError::OutputClosed
    ));
}

#[tokio::test]
async fn status_prints_the_report_and_the_sandboxes() {
    let broker = FakeBroker::start(held(&[]));
    let opts = |json| commands::StatusOptions {
        control: broker.path().to_path_buf(),
        json,
    };
    let mut out = Vec::new();
    commands::status(&opts(false), &mut out)
        .await
        .expect("status");
    let report = text(&out);
    assert!(
        report.starts_with("broker netjaild 0.1.0, up 2h03m"),
        "{report}"
    );
    assert!(report.contains("\nsb-3  curl  -"), "{report}");

    let mut out = Vec::new();
    commands::status(&opts(true), &mut out)
        .await
        .expect("status");
    let kinds: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["kind"].clone())
        .collect();
    assert_eq!(kinds, ["broker", "sandbox"]);
}

#[tokio::test]
async fn metrics_prints_the_pieces_put_together() {
    let broker = FakeBroker::start(FakeState {
        metrics: vec![
            "# TYPE netjail_sandboxes gauge\n".into(),
            "netjail_sandboxes 2\n".into(),
        ],
        ..FakeState::default()
    });
    let opts = commands::MetricsOptions {
        control: broker.path().to_path_buf(),
    };
    let mut out = Vec::new();
    commands::metrics(&opts, &mut out).await.expect("metrics");
    assert_eq!(
        text(&out),
        "# TYPE netjail_sandboxes gauge\nnetjail_sandboxes 2\n"
    );
    assert_eq!(
        broker.state().requests.last(),
        Some(&OperatorRequest::Metrics)
    );
}

#[tokio::test]
async fn reload_prints_every_item_and_fails_when_a_file_was_rejected() {
    let broker = FakeBroker::start(held(&[]));
    let opts = |json| commands::ReloadOptions {
        control: broker.path().to_path_buf(),
        json,
    };
    let mut out = Vec::new();
    let err = commands::reload(&opts(false), &mut out)
        .await
        .expect_err("a rejected file fails the command");
    assert!(
        err.to_string().contains("1 item of the reload failed"),
        "{err}"
    );
    let report = text(&out);
    assert!(
        report.contains("reloaded: overlay /o/policy-web.toml: 2 rules\n"),
        "{report}"
    );
    assert!(
        report.contains("rejected: overlay /o/policy-mail.toml: /o/policy-mail.toml:4:1"),
        "{report}"
    );
    let mut out = Vec::new();
    let _ = commands::reload(&opts(true), &mut out).await;
    let items: Vec<Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["outcome"], "rejected");
    assert_eq!(
        broker.state().requests.last(),
        Some(&OperatorRequest::Reload)
    );
}
