//! The evaluator: `Request -> Decision`.

use std::os::unix::ffi::OsStrExt;

use crate::model::{Action, Decision, Policy, Rule, Verdict};
use crate::target::{Op, Request, Target};

pub(crate) fn evaluate(policy: &Policy, request: &Request) -> Decision {
    match request.op {
        Op::Connect => {}
    }
    let target = request.target.canonical();
    match &target {
        Target::Unspec => return decision(Verdict::Allow, "unspec".to_owned()),
        Target::OtherFamily(_) => return default_decision(policy),
        Target::UnixPath(path) => {
            let bytes = path.as_os_str().as_bytes();
            // Fail closed: the broker hands over resolved absolute paths, so anything else
            // is a bug that must not be let through (invariant 1).
            if !bytes.starts_with(b"/") || bytes.split(|b| *b == b'/').any(|c| c == b"..") {
                let verdict = Verdict::Deny { errno: libc::EPERM };
                return decision(verdict, "invalid-target".to_owned());
            }
        }
        Target::Inet { .. } | Target::UnixAbstract(_) => {}
    }
    for (t, rule) in policy.deny.iter().enumerate() {
        if let Some(entry) = first_match(rule, &target) {
            let verdict = Verdict::Deny {
                errno: rule.errno.value(),
            };
            return decision(verdict, format!("deny[{t}].{entry}"));
        }
    }
    for (t, rule) in policy.allow.iter().enumerate() {
        if let Some(entry) = first_match(rule, &target) {
            return decision(Verdict::Allow, format!("allow[{t}].{entry}"));
        }
    }
    default_decision(policy)
}

/// `connect[i]` or `unix[i]` for the first entry of `rule` that covers the canonical target.
fn first_match(rule: &Rule, target: &Target) -> Option<String> {
    match target {
        Target::Inet { proto, addr } => rule
            .connect
            .iter()
            .position(|e| e.matches(*proto, *addr))
            .map(|i| format!("connect[{i}]")),
        Target::UnixPath(path) => {
            let bytes = path.as_os_str().as_bytes();
            rule.unix
                .iter()
                .position(|u| u.matches_path(bytes))
                .map(|i| format!("unix[{i}]"))
        }
        Target::UnixAbstract(name) => rule
            .unix
            .iter()
            .position(|u| u.matches_abstract(name))
            .map(|i| format!("unix[{i}]")),
        Target::Unspec | Target::OtherFamily(_) => None,
    }
}

fn default_decision(policy: &Policy) -> Decision {
    let verdict = match policy.default {
        Action::Allow => Verdict::Allow,
        Action::Deny => Verdict::Deny { errno: libc::EPERM },
    };
    decision(verdict, "default".to_owned())
}

fn decision(verdict: Verdict, rule: String) -> Decision {
    Decision { verdict, rule }
}
