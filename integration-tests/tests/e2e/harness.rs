//! The harness itself: time bounds kill what they started, canaries count.

use std::process::Command;
use std::time::{Duration, Instant};

use netjail_integration_tests::{spawn, sys, Canary};

/// A child that outlives its time bound is killed by pid (with the process group it leads)
/// and the test fails with a clear message.
#[test]
fn harness_kills_child_on_timeout() {
    let mut cmd = Command::new("sh");
    // A grandchild in the same process group must go too.
    cmd.args(["-c", "sleep 30 & sleep 30"]);
    let child = spawn(&mut cmd);
    let pid = child.pid();
    let started = Instant::now();
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        child.wait(Duration::from_millis(300))
    }))
    .expect_err("wait must fail on timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("timed out"), "unclear message: {msg}");
    assert_eq!(sys::kill(pid, 0), Err(libc::ESRCH), "child still exists");
    // The grandchild was killed too; it may linger as a zombie until init reaps it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !live_group_members(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        live_group_members(pid),
        Vec::<i32>::new(),
        "its process group lives on"
    );
}

/// Pids of processes in process group `pgid` that are not zombies.
fn live_group_members(pgid: i32) -> Vec<i32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            live.push(pid);
        }
    }
    live
}

/// Canaries count what reaches them, and only that.
#[test]
fn harness_canaries_count() {
    let t4 = Canary::tcp4();
    let t6 = Canary::tcp6();
    let u4 = Canary::udp4();
    let un = Canary::unix_path("ok.sock");
    let ab = Canary::unix_abstract();
    for _ in 0..3 {
        drop(std::net::TcpStream::connect(t4.addr()).expect("connect v4"));
    }
    drop(std::net::TcpStream::connect(t6.addr()).expect("connect v6"));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.send_to(b"x", u4.addr()).expect("send");
    drop(std::os::unix::net::UnixStream::connect(un.path()).expect("connect unix"));
    assert_eq!(t4.wait_count(3, Duration::from_secs(5)), 3);
    assert_eq!(t6.wait_count(1, Duration::from_secs(5)), 1);
    assert_eq!(u4.wait_count(1, Duration::from_secs(5)), 1);
    assert_eq!(un.wait_count(1, Duration::from_secs(5)), 1);
    assert_eq!(ab.settled_count(), 0);
}
