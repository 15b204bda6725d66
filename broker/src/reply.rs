//! What the caller's system call gets, and what the audit says of it: the leaf of the call
//! pipeline's vocabulary, which every operation and the receiver share.

use std::io;

use netjail_policy::{Decision, Verdict};

/// What the caller's system call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Success with this return value.
    Value(i64),
    /// Failure with this (positive) errno.
    Errno(i32),
    /// Success with this return value, already given to the caller by the kernel
    /// (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND` answers the call as it
    /// installs the descriptor): nothing is left to send but the audit event.
    Answered(i64),
    /// The kernel performs the call as the caller made it (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`):
    /// only for a call decided on scalar arguments alone, which the caller cannot change once
    /// it is notified (`ops/process.rs`); never for one that reads memory or a descriptor.
    Continue,
}

/// What a handler decided and what the caller gets.
pub(crate) struct Outcome {
    pub op: &'static str,
    pub endpoint: String,
    /// The policy's decision; `None` when the call failed before the policy ran.
    pub decision: Option<Decision>,
    /// Why the call failed before a decision (`bad-fd`, `bad-address`, ...).
    pub failure: &'static str,
    /// `None`: the caller is gone; there is nobody to answer.
    pub reply: Option<Reply>,
}

impl Outcome {
    pub(crate) fn new(op: &'static str) -> Self {
        Outcome {
            op,
            endpoint: String::new(),
            decision: None,
            failure: "",
            reply: None,
        }
    }

    /// The call failed before the policy ran (bad fd, bad pointer, ...).
    pub(crate) fn failed(mut self, errno: i32, why: &'static str) -> Self {
        self.decision = None;
        self.failure = why;
        self.reply = Some(Reply::Errno(errno));
        self
    }

    /// The caller went away while we looked.
    pub(crate) fn gone(mut self) -> Self {
        self.reply = None;
        self
    }

    pub(crate) fn decided(
        mut self,
        decision: Option<Decision>,
        failure: &'static str,
        reply: Reply,
    ) -> Self {
        self.decision = decision;
        self.failure = failure;
        self.reply = Some(reply);
        self
    }
}

/// The errno of an I/O error, `EIO` when it has none.
pub(crate) fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// A refusal decided by the broker itself (a limit, a bound, its own sockets): deny with
/// `errno`, by the rule named `rule`.
pub(crate) fn refusal(rule: &str, errno: i32) -> Decision {
    Decision {
        verdict: Verdict::Deny { errno },
        rule: rule.to_owned(),
        host: None,
    }
}
