//! Helpers shared by the evaluation tests (`eval.rs`, `asking.rs`).
#![allow(dead_code)] // each test file uses its own share

use netjail_policy::{Decision, Op, Policy, Proto, Request, Target, Verdict};

pub const EPERM: Verdict = Verdict::Deny { errno: libc::EPERM };

pub fn policy(src: &str) -> Policy {
    Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

pub fn inet(proto: Proto, addr: &str) -> Request {
    Request {
        op: Op::Connect,
        target: Target::Inet {
            proto,
            addr: addr.parse().unwrap(),
        },
    }
}

pub fn tcp(addr: &str) -> Request {
    inet(Proto::Tcp, addr)
}

pub fn req(target: Target) -> Request {
    Request {
        op: Op::Connect,
        target,
    }
}

pub fn path(p: &str) -> Request {
    req(Target::UnixPath(p.into()))
}

pub fn abs(name: &[u8]) -> Request {
    req(Target::UnixAbstract(name.to_vec()))
}

#[track_caller]
pub fn decides(p: &Policy, r: &Request, verdict: Verdict, rule: &str) {
    assert_eq!(
        p.evaluate(r),
        Decision {
            verdict,
            rule: rule.into(),
            host: None,
        },
        "{}",
        r.target
    );
}

pub fn op(op: Op, proto: Proto, addr: &str) -> Request {
    Request {
        op,
        target: Target::Inet {
            proto,
            addr: addr.parse().unwrap(),
        },
    }
}

pub const WEB: &str = r#"
name = "web-client"
default = "deny"

[[deny]]
connect = ["tcp://169.254.169.254:*"]

[[deny]]
errno = "ECONNREFUSED"
connect = ["any://10.9.0.0/16:*", "tcp://10.0.0.0/8:22"]
unix = ["/run/docker.sock"]

[[allow]]
connect = ["tcp://127.0.0.1:8080", "tcp://[::1]:8080", "tcp://10.0.0.0/8:443", "udp://127.0.0.53:53"]

[[allow]]
connect = ["tcp://10.0.0.0/8:*"]
unix = ["/tmp/.X11-unix/X*", "/run/user/*/bus", "/run/**", "@dbus-*"]
"#;
