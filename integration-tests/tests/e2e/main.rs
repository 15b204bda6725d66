//! End-to-end tests of netjail: real programs under `netjail run`, against the real kernel.
//!
//! All of them build as this one test binary. They need the workspace's binaries
//! (`cargo build --workspace` in the same profile) and talk to loopback only. Attack tests run
//! each probe twice: unconfined (the attack must succeed, which proves the probe can fail) and
//! confined (it must not). Tests that prove a seed rule carry its id (`s_d1_...`): the ids are in
//! `docs/architecture.md`, each rule's tests in `docs/semantics.md`.

use std::process::Command;
use std::sync::OnceLock;

use netjail_integration_tests::{
    confined_cmd, confined_with_broker_cmd, python3, run, skip, unconfined, Broker, Outcome,
    DEFAULT_TIMEOUT,
};

/// Defines `mod $name { fn embedded(); fn broker(); }`: the same test body run once through the
/// launcher's embedded broker and once through a separate `netjaild`.
macro_rules! both {
    ($(#[$meta:meta])* $name:ident => $body:ident) => {
        $(#[$meta])*
        mod $name {
            #[test]
            fn embedded() {
                super::$body(crate::Via::Embedded);
            }

            #[test]
            fn broker() {
                super::$body(crate::Via::broker());
            }
        }
    };
}

mod activation;
mod attacks;
mod bridge;
mod bridge_oci;
mod cli;
mod confine_self;
mod confinement;
mod connect;
mod credentials;
mod datagram;
mod deputy;
mod embedding;
mod fairness;
mod faithful_calls;
mod faithful_operators;
mod faithful_profiles;
mod faithful_unix;
mod fdstore;
mod garbage;
mod global;
mod hardening;
mod harness;
mod hostnames;
mod library;
mod limits;
mod metrics;
mod oci;
mod oci_agent;
mod operators;
mod profiles;
mod profiles_jail;
mod redteam2;
mod redteam3;
mod redteam4;
mod redteam5;
mod redteam8;
mod reload;
mod restart;
mod sec_address;
mod sec_address_local;
mod sec_bounds;
mod sec_filter;
mod sec_identity;
mod sec_limits;
mod sec_metrics;
mod sec_options;
mod sec_root;
mod sec_sockets;
mod served;
mod signals;

/// The probe binary of this crate.
pub(crate) fn probe() -> &'static str {
    env!("CARGO_BIN_EXE_nj-probe")
}

/// Which broker a confined command talks to.
pub(crate) enum Via {
    /// `netjail run` with no broker listening: the launcher's embedded broker.
    Embedded,
    /// `netjail run --broker SOCK --no-embedded` against a `netjaild` started for the test.
    Broker(Broker),
}

impl Via {
    /// A fresh `netjaild` for this test.
    pub(crate) fn broker() -> Via {
        Via::Broker(Broker::start())
    }

    /// The confining command line for `args` under `policy`.
    pub(crate) fn cmd(&self, policy: &str, args: &[&str]) -> Command {
        match self {
            Via::Embedded => confined_cmd(policy, args),
            Via::Broker(b) => confined_with_broker_cmd(b, policy, args),
        }
    }

    /// Runs `args` confined by `policy`, bounded by [`DEFAULT_TIMEOUT`].
    pub(crate) fn run(&self, policy: &str, args: &[&str]) -> Outcome {
        run(&mut self.cmd(policy, args), DEFAULT_TIMEOUT)
    }

    /// Runs with a custom time bound.
    pub(crate) fn run_for(
        &self,
        policy: &str,
        args: &[&str],
        timeout: std::time::Duration,
    ) -> Outcome {
        run(&mut self.cmd(policy, args), timeout)
    }
}

/// Asserts that a probe/python result says "denied with EPERM".
#[track_caller]
pub(crate) fn assert_eperm(out: &Outcome) {
    let v = out.json();
    assert_eq!(
        v["ok"],
        false,
        "expected EPERM, got success: {}",
        out.describe()
    );
    assert_eq!(v["err"], "EPERM", "expected EPERM: {}", out.describe());
}

/// Asserts that a probe/python result says "connected".
#[track_caller]
pub(crate) fn assert_ok(out: &Outcome) {
    assert_eq!(
        out.json()["ok"],
        true,
        "expected success: {}",
        out.describe()
    );
}

/// The uid and gid the tests drop to: `nobody` / `nogroup` (65534).
pub(crate) const NOBODY: &str = "65534";

/// `setpriv --reuid=65534 --regid=65534 --clear-groups -- ARGS...`: `args` run as nobody, with
/// no supplementary groups. Confined, the `setpriv` runs inside the sandbox.
pub(crate) fn as_nobody<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    v.extend_from_slice(args);
    v
}

/// A field of `/proc/self/status` (`"Uid"`, `"NoNewPrivs"`...), whitespace-separated.
pub(crate) fn self_status(field: &str) -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// True when the tests run as root (effective uid 0); otherwise says `SKIP test: ...`.
pub(crate) fn need_root(test: &str) -> bool {
    let root = self_status("Uid").get(1).map(String::as_str) == Some("0");
    if !root {
        skip(test, "needs root (run the e2e tests as root, as CI does)");
    }
    root
}

/// True when `setpriv` (util-linux) is on `PATH`; otherwise says `SKIP test: ...`.
/// A python3 that uid 65534 can run (the system's when a python3 under `/root` is closed to
/// other users), with root and setpriv; or `None` after `SKIP test: ...`.
pub(crate) fn nobody_python(test: &str) -> Option<String> {
    if !need_root(test) || !have_setpriv(test) {
        return None;
    }
    static PY: OnceLock<Option<String>> = OnceLock::new();
    let found = PY.get_or_init(|| {
        let mut candidates: Vec<String> = python3()
            .into_iter()
            .filter_map(|p| p.to_str().map(str::to_owned))
            .collect();
        candidates.push("/usr/bin/python3".to_owned());
        candidates.into_iter().find(|py| {
            let out = unconfined(&as_nobody(&[py.as_str(), "-c", "print('{\"ok\": true}')"]));
            out.json.as_ref().is_some_and(|v| v["ok"] == true)
        })
    });
    if found.is_none() {
        skip(test, "no python3 that uid 65534 can run");
    }
    found.clone()
}

pub(crate) fn have_setpriv(test: &str) -> bool {
    let found = netjail_integration_tests::which("setpriv").is_some();
    if !found {
        skip(test, "setpriv (util-linux) not found");
    }
    found
}

/// The real python3 as a string, or `None` after saying `SKIP test: python3 not found`.
pub(crate) fn need_python(test: &str) -> Option<String> {
    match python3() {
        Some(p) => Some(p.to_string_lossy().into_owned()),
        None => {
            skip(test, "python3 not found");
            None
        }
    }
}

/// Asserts that a probe result failed with exactly `err` (an errno name).
#[track_caller]
pub(crate) fn assert_err(out: &Outcome, err: &str) {
    let v = out.json();
    assert_eq!(
        v["ok"],
        false,
        "expected {err}, got success: {}",
        out.describe()
    );
    assert_eq!(v["err"], err, "expected {err}: {}", out.describe());
}
