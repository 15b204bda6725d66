//! Probes of the broker's own sockets (issue 16): a program speaking the registration
//! protocol itself, confined (F2) or not (a listener registered twice).
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use netjail_protocol::{codec, BrokerMessage, ClientMessage, PolicySource, Register, RegisterSelf};
use serde_json::{json, Value};

use super::{count_arg, port_arg, tally};
use crate::sys::{self, errno_name};

/// How long the probe waits for each answer of the broker.
const ANSWER_MS: i32 = 15_000;

/// `register-self-fds SOCK POLICY FROM TO [PORT TRIES]`: for each fd number N from FROM to
/// TO (exclusive), a new connection to the registration socket SOCK says hello, sends
/// `RegisterSelf` with the policy text POLICY and then `ListenerFd N`: a number the broker
/// resolves in the table of whatever process is at the other end of the socket. When the
/// broker asks for the proof (`ProveListener`), the probe makes the proof call itself. Then
/// TRIES TCP connects to 127.0.0.1:PORT. Reports whether SOCK could be reached at all, how
/// many registrations the broker accepted, a tally of its answers, and how many connects
/// succeeded.
pub fn register_self_fds(
    sock: &str,
    policy: &str,
    from: &str,
    to: &str,
    tries: Option<(&str, &str)>,
) -> Result<Value, String> {
    let from = count_arg(from)? as i32;
    let to = count_arg(to)? as i32;
    let mut answers = serde_json::Map::new();
    let mut registered = 0u64;
    let mut reached: Value = json!({"ok": true});
    for n in from..to {
        let conn = match sys::seqpacket_connect(Path::new(sock)) {
            Ok(c) => c,
            Err(e) => {
                reached = json!({"ok": false, "err": errno_name(e)});
                break;
            }
        };
        let answer = register_self_one(&conn, policy, n);
        if answer == "registered" {
            registered += 1;
        }
        let slot = answers.entry(answer).or_insert(json!(0));
        *slot = json!(slot.as_u64().unwrap_or(0) + 1);
    }
    let mut out = json!({"reached": reached, "registered": registered, "answers": answers});
    if let Some((port, tries)) = tries {
        let port = port_arg(port)?;
        let tries = count_arg(tries)?;
        let (mut ok, mut errs) = (0u64, serde_json::Map::new());
        for _ in 0..tries {
            let r = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
                .and_then(|s| sys::connect(&s, &sys::SockAddr::ip([127, 0, 0, 1].into(), port)));
            match r {
                Ok(()) => ok += 1,
                Err(e) => tally(&mut errs, e),
            }
        }
        out["connects"] = json!({"ok": ok, "errors": errs});
    }
    Ok(out)
}

/// One self-registration naming fd `n`; the broker's last answer, in a word.
fn register_self_one(conn: &impl AsRawFd, policy: &str, n: i32) -> String {
    let hello = ClientMessage::Hello {
        version: netjail_protocol::PROTOCOL_VERSION,
        client: "nj-probe register-self-fds".into(),
    };
    if let Some(word) = exchange(conn, &hello, "welcome") {
        return word;
    }
    let register = ClientMessage::RegisterSelf(RegisterSelf {
        name: "rogue".into(),
        policy: PolicySource {
            origin: "nj-probe".into(),
            toml: policy.into(),
        },
    });
    if let Some(word) = exchange(conn, &register, "awaiting") {
        return word;
    }
    let fd = ClientMessage::ListenerFd { fd: n };
    match send_recv(conn, &fd) {
        Ok(BrokerMessage::ProveListener { nonce }) => {
            // The probe's own thread cannot be the process that holds this listener for
            // others: whatever answers its call, the broker must refuse.
            let _ = sys::connect_raw(-1, nonce as usize, 0);
            match recv(conn) {
                Ok(m) => word_of(&m),
                Err(e) => e,
            }
        }
        Ok(m) => word_of(&m),
        Err(e) => e,
    }
}

/// Sends `msg` and reads one answer; `None` when it is `want`, else the word of what came.
fn exchange(conn: &impl AsRawFd, msg: &ClientMessage, want: &str) -> Option<String> {
    let word = match send_recv(conn, msg) {
        Ok(m) => word_of(&m),
        Err(e) => e,
    };
    (word != want).then_some(word)
}

fn send_recv(conn: &impl AsRawFd, msg: &ClientMessage) -> Result<BrokerMessage, String> {
    let datagram = codec::encode(msg).map_err(|e| e.to_string())?;
    sys::send(conn, &datagram).map_err(|e| format!("send:{}", errno_name(e)))?;
    recv(conn)
}

fn recv(conn: &impl AsRawFd) -> Result<BrokerMessage, String> {
    let mut buf = vec![0u8; 1 << 17];
    match sys::recv_timeout(conn, &mut buf, ANSWER_MS) {
        Ok(Some(0)) => Err("closed".into()),
        Ok(Some(n)) => codec::decode(&buf[..n]).map_err(|e| format!("undecodable:{e}")),
        Ok(None) => Err("silence".into()),
        Err(e) => Err(format!("recv:{}", errno_name(e))),
    }
}

/// A broker message in a word: `welcome`, `awaiting`, `registered`, `prove`, or the error's
/// code with its message (`Refused: ...`).
fn word_of(msg: &BrokerMessage) -> String {
    match msg {
        BrokerMessage::Welcome { .. } => "welcome".into(),
        BrokerMessage::AwaitingListener { .. } => "awaiting".into(),
        BrokerMessage::Registered { .. } => "registered".into(),
        BrokerMessage::ProveListener { .. } => "prove".into(),
        BrokerMessage::Error(e) => format!("{:?}", e.code),
    }
}

/// `register-fd-of SOCK POLICY PID`: takes the first seccomp listener of process PID (a
/// launcher keeps a copy of its sandbox's) with `pidfd_getfd` and registers it on SOCK with
/// the policy text POLICY, as any user who may register and may trace that process can.
/// Reports the broker's answer in a word.
pub fn register_fd_of(sock: &str, policy: &str, pid: &str) -> Result<Value, String> {
    let pid: i32 = pid.parse().map_err(|_| format!("bad pid {pid:?}"))?;
    let listener = (|| {
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
            let link = std::fs::read_link(entry.path()).ok()?;
            if link.as_os_str() == "anon_inode:seccomp notify" {
                let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
                return take_fd(pid, fd).ok();
            }
        }
        None
    })()
    .ok_or_else(|| format!("process {pid} holds no seccomp listener this probe can take"))?;
    let conn = sys::seqpacket_connect(Path::new(sock))
        .map_err(|e| format!("connect {sock}: {}", errno_name(e)))?;
    let hello = ClientMessage::Hello {
        version: netjail_protocol::PROTOCOL_VERSION,
        client: "nj-probe register-fd-of".into(),
    };
    if let Some(word) = exchange(&conn, &hello, "welcome") {
        return Ok(json!({"answer": word}));
    }
    let register = ClientMessage::Register(Register {
        name: "again".into(),
        pid,
        policy: PolicySource {
            origin: "nj-probe".into(),
            toml: policy.into(),
        },
    });
    let datagram = codec::encode(&register).map_err(|e| e.to_string())?;
    sys::send_with_fds(&conn, &datagram, &[listener.as_raw_fd()])
        .map_err(|e| format!("send: {}", errno_name(e)))?;
    let (word, message) = match recv(&conn) {
        Ok(BrokerMessage::Error(e)) => (format!("{:?}", e.code), e.message),
        Ok(m) => (word_of(&m), String::new()),
        Err(e) => (e, String::new()),
    };
    Ok(json!({"answer": word, "message": message}))
}

/// A copy of fd `fd` of process `pid` (`pidfd_open`, `pidfd_getfd`).
fn take_fd(pid: i32, fd: RawFd) -> Result<OwnedFd, sys::Errno> {
    // SAFETY: pidfd_open takes integers only.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), 0) };
    if pidfd < 0 {
        return Err(sys::errno());
    }
    // SAFETY: a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd takes integers only.
    let got = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            libc::c_long::from(pidfd.as_raw_fd()),
            libc::c_long::from(fd),
            0,
        )
    };
    if got < 0 {
        return Err(sys::errno());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(got as RawFd) })
}
