//! A filter rule as data: a system call, the comparisons of its arguments, and what the
//! kernel does when they hold.

use libseccomp::{ScmpArgCompare, ScmpCompareOp};

/// What a [`Rule`] does when it matches. Calls that no rule matches are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `SECCOMP_RET_USER_NOTIF`: the broker decides.
    Notify,
    /// `SECCOMP_RET_ERRNO`: the call fails with this errno (positive, e.g. `libc::EPERM`).
    Errno(i32),
}

/// How an argument is compared, as libseccomp's `SCMP_CMP_*` (all unsigned 64-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `arg == value`.
    Eq,
    /// `arg != value`.
    Ne,
    /// `arg < value`.
    Lt,
    /// `arg <= value`.
    Le,
    /// `arg > value`.
    Gt,
    /// `arg >= value`.
    Ge,
    /// `arg & mask == value`.
    MaskedEq(u64),
}

/// One comparison of a system call argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgCmp {
    /// The argument, from 0.
    pub index: u32,
    /// The comparison.
    pub op: CmpOp,
    /// The value compared with (after the mask for [`CmpOp::MaskedEq`]).
    pub value: u64,
}

impl ArgCmp {
    /// `arg[index] == value`.
    pub fn eq(index: u32, value: u64) -> ArgCmp {
        ArgCmp {
            index,
            op: CmpOp::Eq,
            value,
        }
    }

    /// `arg[index] & mask == value`.
    pub fn masked_eq(index: u32, mask: u64, value: u64) -> ArgCmp {
        ArgCmp {
            index,
            op: CmpOp::MaskedEq(mask),
            value,
        }
    }

    /// `arg[index] op value`.
    pub fn new(index: u32, op: CmpOp, value: u64) -> ArgCmp {
        ArgCmp { index, op, value }
    }

    /// Whether the comparison holds for the argument value `arg`.
    pub fn matches(&self, arg: u64) -> bool {
        match self.op {
            CmpOp::Eq => arg == self.value,
            CmpOp::Ne => arg != self.value,
            CmpOp::Lt => arg < self.value,
            CmpOp::Le => arg <= self.value,
            CmpOp::Gt => arg > self.value,
            CmpOp::Ge => arg >= self.value,
            CmpOp::MaskedEq(mask) => arg & mask == self.value,
        }
    }

    pub(super) fn to_libseccomp(self) -> ScmpArgCompare {
        let op = match self.op {
            CmpOp::Eq => ScmpCompareOp::Equal,
            CmpOp::Ne => ScmpCompareOp::NotEqual,
            CmpOp::Lt => ScmpCompareOp::Less,
            CmpOp::Le => ScmpCompareOp::LessOrEqual,
            CmpOp::Gt => ScmpCompareOp::Greater,
            CmpOp::Ge => ScmpCompareOp::GreaterEqual,
            CmpOp::MaskedEq(mask) => ScmpCompareOp::MaskedEqual(mask),
        };
        ScmpArgCompare::new(self.index, op, self.value)
    }
}

/// One rule of the filter: when `syscall` is made and every comparison of `args` holds
/// (always, with none), take `action`. A rule compares each argument at most once
/// (libseccomp refuses more).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The system call, by its name in libseccomp's tables.
    pub syscall: &'static str,
    /// What happens.
    pub action: Action,
    /// The conditions, all of which must hold.
    pub args: Vec<ArgCmp>,
}

impl Rule {
    /// An unconditional rule.
    pub fn always(syscall: &'static str, action: Action) -> Rule {
        Rule {
            syscall,
            action,
            args: Vec::new(),
        }
    }

    /// A conditional rule.
    pub fn when(syscall: &'static str, action: Action, args: &[ArgCmp]) -> Rule {
        Rule {
            syscall,
            action,
            args: args.to_vec(),
        }
    }

    /// Whether the rule matches a call with these six arguments.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        self.args
            .iter()
            .all(|cmp| cmp.matches(args[cmp.index as usize]))
    }
}
