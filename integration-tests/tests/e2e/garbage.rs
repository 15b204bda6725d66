//! Bad input on the broker's registration socket: each bad connection is closed, and the
//! broker keeps serving a sandbox that is busy at the same time (invariant 8).

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use netjail_integration_tests::garbage::{expect_closed, junk, HEADER};
use netjail_integration_tests::sys;
use netjail_integration_tests::{
    allow_connect_policy, confined_with_broker, confined_with_broker_cmd, fd_count, python3,
    settled_fd_count, skip, spawn, Broker, Canary,
};

use crate::{assert_ok, probe};

/// 60 connects to an allowed port, 50 ms apart; prints `{"ok": k, "errors": {...}}`.
const PY_LOOP: &str = r#"
import errno, json, socket, sys, time
port = int(sys.argv[1]); ok = 0; errors = {}
for i in range(60):
    s = socket.socket()
    try:
        s.connect(('127.0.0.1', port)); ok += 1
    except OSError as e:
        k = errno.errorcode.get(e.errno, str(e.errno)); errors[k] = errors.get(k, 0) + 1
    s.close()
    time.sleep(0.05)
print(json.dumps({'ok': ok, 'errors': errors}))
"#;

/// Invariant 8: garbage on the registration socket closes that connection only; a sandbox
/// registered with the same broker keeps getting its connects served, and the broker lives.
#[test]
fn broker_survives_garbage_while_serving_a_sandbox() {
    let Some(py) = python3() else {
        skip(
            "broker_survives_garbage_while_serving_a_sandbox",
            "python3 not found",
        );
        return;
    };
    let py = py.to_str().expect("utf-8 path").to_owned();
    let mut broker = Broker::start();
    let canary = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", canary.port())]);
    let port = canary.port_str();
    let sandbox = spawn(&mut confined_with_broker_cmd(
        &broker,
        policy.as_str(),
        &[&py, "-c", PY_LOOP, &port],
    ));
    // Let the sandbox register and get going.
    assert!(
        canary.wait_count(3, Duration::from_secs(15)) >= 3,
        "the sandbox did not start connecting:\n{}",
        broker.log()
    );

    let devnull: Vec<std::fs::File> = (0..5)
        .map(|_| std::fs::File::open("/dev/null").expect("open /dev/null"))
        .collect();
    let fds: Vec<i32> = devnull.iter().map(AsRawFd::as_raw_fd).collect();
    let mut bad_version = vec![b'N', b'J', 0xff, 0xff];
    bad_version.extend(junk(64, 3));
    let mut truncated = HEADER.to_vec();
    truncated.push(251); // bincode varint: "a u16 follows", and nothing does
    let mut huge = HEADER.to_vec();
    huge.extend(junk(70_000 - 4, 4));
    let mut with_fds = HEADER.to_vec();
    with_fds.extend(junk(32, 5));
    let cases: Vec<(&str, Vec<u8>, &[i32])> = vec![
        ("random bytes", junk(256, 1), &[]),
        ("shorter than the header", b"NJ".to_vec(), &[]),
        ("truncated body", truncated, &[]),
        ("unknown version 0xFFFF", bad_version, &[]),
        ("70000-byte datagram", huge, &[]),
        ("5 fds with garbage", with_fds, &fds),
        ("empty datagram", Vec::new(), &[]),
    ];
    let fds_before = settled_fd_count(broker.pid());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(what, msg, fds)| expect_closed(&broker, what, msg, fds).err())
        .collect();

    // The five fds that came with garbage were closed, not kept (small slack for the
    // short-lived fds the broker holds while it performs a call).
    std::thread::sleep(Duration::from_millis(200));
    let fds_after = fd_count(broker.pid());
    assert!(
        fds_after <= fds_before + 2,
        "the broker kept fds from garbage messages: {fds_before} before, {fds_after} after"
    );

    let out = sandbox.wait(Duration::from_secs(40));
    assert!(broker.is_alive(), "the broker died:\n{}", broker.log());
    assert!(
        failures.is_empty(),
        "{}\n--- broker log ---\n{}",
        failures.join("\n"),
        broker.log()
    );
    assert_eq!(
        out.json()["ok"],
        60,
        "the sandbox's connects failed during the garbage: {}\n--- broker log ---\n{}",
        out.describe(),
        broker.log()
    );
    // And a new sandbox can still register.
    let out = confined_with_broker(
        &broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &port],
    );
    assert_ok(&out);
    assert!(broker.is_alive(), "the broker died:\n{}", broker.log());
}

/// Invariant 8: a well-formed registration whose fd is not a seccomp listener (here, a pipe) is
/// refused with a clear error and the connection is closed; the broker lives on.
#[test]
fn register_with_a_non_listener_fd_is_refused() {
    use netjail_protocol::{codec, BrokerMessage, ClientMessage, PolicySource, Register};

    let mut broker = Broker::start();
    let conn: OwnedFd = sys::seqpacket_connect(broker.socket()).expect("connect to broker");
    let mut buf = vec![0u8; 1 << 17];
    let hello = codec::encode(&ClientMessage::Hello {
        version: netjail_protocol::PROTOCOL_VERSION,
        client: "e2e".into(),
    })
    .unwrap();
    sys::send(&conn, &hello).expect("send hello");
    let n = sys::recv_timeout(&conn, &mut buf, 5000)
        .expect("recv welcome")
        .expect("welcome within 5 s");
    assert!(
        matches!(
            codec::decode::<BrokerMessage>(&buf[..n]),
            Ok(BrokerMessage::Welcome { .. })
        ),
        "no welcome"
    );

    let (r, w) = std::io::pipe().expect("pipe");
    let register = codec::encode(&ClientMessage::Register(Register {
        name: "impostor".into(),
        pid: std::process::id() as i32,
        policy: PolicySource {
            origin: "builtin:allow-all".into(),
            toml: netjail_policy::builtin("allow-all").unwrap().into(),
        },
    }))
    .unwrap();
    sys::send_with_fds(&conn, &register, &[r.as_raw_fd()]).expect("send register");
    let n = sys::recv_timeout(&conn, &mut buf, 5000)
        .expect("recv reply")
        .expect("a reply within 5 s");
    match codec::decode::<BrokerMessage>(&buf[..n]) {
        Ok(BrokerMessage::Error(e)) => assert!(
            e.message.contains("not a seccomp listener"),
            "unclear refusal: {}",
            e.message
        ),
        other => panic!("a pipe was accepted as a listener: {other:?}"),
    }
    assert_eq!(
        sys::recv_timeout(&conn, &mut buf, 5000).expect("recv eof"),
        Some(0),
        "the connection stays open after the refusal"
    );
    drop(w);
    assert!(broker.is_alive(), "broker died");
}
