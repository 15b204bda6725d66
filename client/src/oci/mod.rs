//! Containers (issue 4): netjail's filter as the `linux.seccomp` object of an OCI runtime
//! spec, and the patch of a bundle's `config.json`, for runc (1.1) and crun (1.8).
//!
//! The runtime installs the filter in the container and hands the listener to a seccomp agent
//! at `listenerPath` (the broker), with `listenerMetadata` naming the policy. The rules are
//! those of [`filter::rules`], so a container gets the same in-kernel decisions as
//! `netjail run`; what the OCI path cannot carry (Landlock, dropping capabilities from a
//! running process, `WAIT_KILLABLE_RECV`) is listed in `docs/containers.md`.
//!
//! ```no_run
//! use netjail_client::oci;
//!
//! // What `netjail oci seccomp --policy loopback-only` prints.
//! let object = oci::seccomp("loopback-only", oci::DEFAULT_LISTENER)?;
//! println!("{object}");
//! // What `netjail oci patch bundle/config.json --policy loopback-only` does.
//! oci::patch_file("bundle/config.json".as_ref(), "loopback-only", oci::DEFAULT_LISTENER)?;
//! # Ok::<(), oci::OciError>(())
//! ```
//!
//! # Runtimes' reading of the object
//!
//! Both runtimes build the filter with libseccomp from `syscalls`, in order, one rule per name:
//! an entry whose action equals the default is skipped, a name libseccomp does not know is
//! skipped with a warning, an entry that compares one argument twice becomes one rule per
//! comparison, and `SCMP_CMP_MASKED_EQ` takes `value` as the mask and `valueTwo` as the datum
//! (`arg & value == valueTwo`). [`runtime_context`] does the same, and the unit tests check
//! that the program it exports is the one `netjail run` loads.
//!
//! # Merging with the container's own profile
//!
//! For every system call netjail has rules for, the merged filter decides as follows: where
//! the container's profile refuses the call (`SCMP_ACT_ERRNO`, `KILL*`, `TRAP`, `TRACE`), it
//! stays refused as the profile says; elsewhere, where a netjail rule matches, netjail's rule
//! decides (notify the broker, or refuse); elsewhere the profile decides (its allow rules, or
//! its default). `SCMP_ACT_ALLOW` and `SCMP_ACT_LOG` count as allowing. A rule may compare
//! each argument once and libseccomp drops the conditional rules of a call that also has an
//! unconditional one, so "allowed except these argument patterns" is written as allow rules
//! that cover exactly the rest: argument regions are unions of masked comparisons
//! (`arg & mask == value`), and the difference of two such regions is again one
//! (`Cube` below). System calls netjail has no rule for keep the profile's rules untouched.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use libseccomp::ScmpSyscall;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use netjail_policy::Policy;

use crate::filter::{self, Action, ArgCmp, CmpOp, FilterError, Rule};
use crate::policy::LoadError;

/// Where the broker listens for runtimes (`netjaild --oci-socket`), unless told otherwise.
pub const DEFAULT_LISTENER: &str = "/run/netjail/oci.sock";

/// The annotation that keeps the container's own `linux.seccomp` (a JSON string: the object,
/// or `null` when it had none), so that patching again starts from the original.
pub const ORIGINAL_SECCOMP_ANNOTATION: &str = "org.netjail.original-seccomp";

/// `BPF_MAXINSNS`: the kernel refuses longer filters.
const BPF_MAXINSNS: usize = 4096;

/// At most this many rules for one system call in a merged profile.
const MAX_RULES_PER_SYSCALL: usize = 1024;

/// Errors of `netjail oci`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The policy could not be found or does not parse.
    #[error("{0}")]
    Policy(#[from] LoadError),
    /// The filter could not be built.
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// A policy file whose name cannot travel in `listenerMetadata`.
    #[error(
        "policy file `{0}`: the broker looks a policy up by its file name, which must be \
         letters, digits, `.`, `_` or `-`"
    )]
    PolicyName(String),
    /// libseccomp's native architecture has no OCI name netjail knows.
    #[error(
        "no OCI seccomp architecture for this machine ({0}); netjail supports x86_64 and aarch64"
    )]
    Architecture(String),
    /// The bundle's configuration could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is not valid JSON.
    #[error("{origin}:{line}:{column}: {message}")]
    Json {
        /// The file.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A part of the configuration that must be a JSON object is not one.
    #[error("{origin}: {what} is not a JSON object")]
    NotObject {
        /// The file.
        origin: String,
        /// Which part (`the document`, `linux`, `process`...).
        what: String,
    },
    /// The container's own seccomp profile (or netjail's annotation) is invalid.
    #[error("{origin}: {what}: {message}")]
    Profile {
        /// The file.
        origin: String,
        /// Which part.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The container already hands its listener to another seccomp agent.
    #[error(
        "{origin}: linux.seccomp already sends the container's listener to the seccomp agent at \
         `{theirs}`; netjail's broker listens at `{ours}`, and a container has one agent"
    )]
    OtherAgent {
        /// The file.
        origin: String,
        /// Their `listenerPath`.
        theirs: String,
        /// Ours.
        ours: String,
    },
    /// The merge needs more rules than a filter can hold.
    #[error(
        "{origin}: cannot merge netjail's rules into the container's seccomp profile for {}: \
         writing \"the profile's rules, except netjail's argument patterns\" takes more than \
         {MAX_RULES_PER_SYSCALL} rules for each",
        .syscalls.join(", ")
    )]
    Inexpressible {
        /// The file.
        origin: String,
        /// The system calls.
        syscalls: Vec<String>,
    },
    /// The merged filter is longer than the kernel accepts.
    #[error(
        "{origin}: the merged seccomp filter has {instructions} BPF instructions; the kernel \
         accepts at most {BPF_MAXINSNS}"
    )]
    TooLong {
        /// The file.
        origin: String,
        /// The length of the program.
        instructions: usize,
    },
    /// The patched configuration could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

mod json;
mod patch;
mod region;
#[cfg(test)]
mod tests;

use json::json_error;
pub use json::Json;
pub use patch::{patch_config, patch_file, Patched};
use region::*;

// ---------------------------------------------------------------------------------------------
// netjail's object

/// The OCI name of libseccomp's native architecture: the only one in netjail's objects.
/// System calls of other architectures (i386's `int 0x80`, x32) hit libseccomp's bad-arch
/// action in the runtime's filter; neither runc nor crun changes it from libseccomp's
/// default, which kills the calling thread (`netjail run` kills the process).
pub fn native_architecture() -> Result<&'static str, OciError> {
    match ScmpArch::native() {
        ScmpArch::X8664 => Ok("SCMP_ARCH_X86_64"),
        ScmpArch::Aarch64 => Ok("SCMP_ARCH_AARCH64"),
        other => Err(OciError::Architecture(format!("{other:?}"))),
    }
}

/// The name the broker finds a policy by: a built-in's name, or a file's stem (the broker
/// looks for `<policies dir>/NAME.toml`).
pub fn policy_label(spec: &str) -> Result<String, OciError> {
    if netjail_policy::builtin(spec).is_some() {
        return Ok(spec.to_owned());
    }
    let stem = Path::new(spec)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if stem.is_empty() || !stem.chars().all(fits) {
        return Err(OciError::PolicyName(spec.to_owned()));
    }
    Ok(stem.to_owned())
}

/// `listenerMetadata`: `policy=NAME fingerprint=HEX` ([`Policy::fingerprint`]).
pub fn listener_metadata(policy: &Policy, label: &str) -> String {
    format!("policy={label} fingerprint={}", policy.fingerprint())
}

/// Loads the policy `spec` (a built-in name or a file) and returns its `linux.seccomp`
/// object: what `netjail oci seccomp` prints.
pub fn seccomp(spec: &str, listener: &str) -> Result<Json, OciError> {
    let label = policy_label(spec)?;
    let (_, policy) = crate::policy::load(spec)?;
    seccomp_object(&policy, &label, listener)
}

/// The `linux.seccomp` object of `policy`: default `SCMP_ACT_ALLOW`, the native architecture,
/// the broker's `listenerPath` and `listenerMetadata`, and every rule of [`filter::rules`],
/// rules with the same action and arguments grouped into one entry.
pub fn seccomp_object(policy: &Policy, label: &str, listener: &str) -> Result<Json, OciError> {
    let rules = filter::rules(policy)?;
    let emitted: Vec<Emitted> = rules.iter().map(Emitted::from_rule).collect();
    Ok(Json::object(vec![
        ("defaultAction", Json::str("SCMP_ACT_ALLOW")),
        (
            "architectures",
            Json::Array(vec![Json::str(native_architecture()?)]),
        ),
        ("listenerPath", Json::str(listener)),
        (
            "listenerMetadata",
            Json::String(listener_metadata(policy, label)),
        ),
        ("syscalls", Json::Array(group(&emitted))),
    ]))
}

/// An action as the runtime spec names it, with its errno where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ActionSpec {
    /// `SCMP_ACT_*`; `SCMP_ACT_KILL` is written `SCMP_ACT_KILL_THREAD` (what it means).
    name: String,
    /// For `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`: `errnoRet`, `EPERM` when not given.
    errno: Option<u64>,
}

/// How an action counts in a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Allows,
    Refuses,
    Notifies,
}

const ACTIONS: &[(&str, Class)] = &[
    ("SCMP_ACT_ALLOW", Class::Allows),
    ("SCMP_ACT_LOG", Class::Allows),
    ("SCMP_ACT_ERRNO", Class::Refuses),
    ("SCMP_ACT_KILL", Class::Refuses),
    ("SCMP_ACT_KILL_THREAD", Class::Refuses),
    ("SCMP_ACT_KILL_PROCESS", Class::Refuses),
    ("SCMP_ACT_TRAP", Class::Refuses),
    ("SCMP_ACT_TRACE", Class::Refuses),
    ("SCMP_ACT_NOTIFY", Class::Notifies),
];

impl ActionSpec {
    fn parse(name: &str, errno: Option<u64>) -> Result<ActionSpec, String> {
        if !ACTIONS.iter().any(|(n, _)| *n == name) {
            return Err(format!("unknown action `{name}`"));
        }
        let takes_errno = matches!(name, "SCMP_ACT_ERRNO" | "SCMP_ACT_TRACE");
        if errno.is_some() && !takes_errno {
            return Err(format!("`{name}` takes no errnoRet"));
        }
        let name = if name == "SCMP_ACT_KILL" {
            "SCMP_ACT_KILL_THREAD"
        } else {
            name
        };
        Ok(ActionSpec {
            name: name.to_owned(),
            errno: takes_errno.then(|| errno.unwrap_or(libc::EPERM as u64)),
        })
    }

    fn ours(action: Action) -> ActionSpec {
        match action {
            Action::Notify => ActionSpec {
                name: "SCMP_ACT_NOTIFY".into(),
                errno: None,
            },
            Action::Errno(e) => ActionSpec {
                name: "SCMP_ACT_ERRNO".into(),
                errno: Some(e as u64),
            },
        }
    }

    fn class(&self) -> Class {
        ACTIONS
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or(Class::Refuses, |(_, c)| *c)
    }

    /// What libseccomp makes of it (`errnoRet` is 16 bits in the kernel's return value; the
    /// runtimes truncate it the same way).
    fn to_scmp(&self) -> ScmpAction {
        let errno = self.errno.unwrap_or(0) as u16 as i32;
        match self.name.as_str() {
            "SCMP_ACT_ALLOW" => ScmpAction::Allow,
            "SCMP_ACT_LOG" => ScmpAction::Log,
            "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno),
            "SCMP_ACT_TRACE" => ScmpAction::Trace(errno as u16),
            "SCMP_ACT_TRAP" => ScmpAction::Trap,
            "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
            "SCMP_ACT_NOTIFY" => ScmpAction::Notify,
            _ => ScmpAction::KillThread,
        }
    }

    fn write(&self, entry: &mut Vec<(&'static str, Json)>) {
        entry.push(("action", Json::str(&self.name)));
        if let Some(errno) = self.errno {
            entry.push(("errnoRet", Json::u64(errno)));
        }
    }
}

/// The spec's name of a comparison, and its `value` and `valueTwo`.
fn arg_json(cmp: &ArgCmp) -> Json {
    let (op, value, value_two) = match cmp.op {
        CmpOp::Eq => ("SCMP_CMP_EQ", cmp.value, 0),
        CmpOp::Ne => ("SCMP_CMP_NE", cmp.value, 0),
        CmpOp::Lt => ("SCMP_CMP_LT", cmp.value, 0),
        CmpOp::Le => ("SCMP_CMP_LE", cmp.value, 0),
        CmpOp::Gt => ("SCMP_CMP_GT", cmp.value, 0),
        CmpOp::Ge => ("SCMP_CMP_GE", cmp.value, 0),
        // libseccomp's SCMP_CMP_MASKED_EQ takes the mask first: runc and crun pass `value`
        // as the mask and `valueTwo` as the datum.
        CmpOp::MaskedEq(mask) => ("SCMP_CMP_MASKED_EQ", mask, cmp.value),
    };
    Json::object(vec![
        ("index", Json::u64(cmp.index.into())),
        ("value", Json::u64(value)),
        ("valueTwo", Json::u64(value_two)),
        ("op", Json::str(op)),
    ])
}

/// Reads one `args` element back.
fn parse_arg(arg: &Json) -> Result<ArgCmp, String> {
    if !arg.is_object() {
        return Err("an args element is not an object".into());
    }
    let index = arg
        .get("index")
        .and_then(Json::as_u64)
        .filter(|i| *i < 6)
        .ok_or("args index must be 0 to 5")?;
    let value = arg
        .get("value")
        .and_then(Json::as_u64)
        .ok_or("args value must be an unsigned 64-bit number")?;
    let value_two = match arg.get("valueTwo") {
        None => 0,
        Some(v) => v
            .as_u64()
            .ok_or("args valueTwo must be an unsigned 64-bit number")?,
    };
    let op = arg
        .get("op")
        .and_then(Json::as_str)
        .ok_or("args op missing")?;
    let (op, value) = match op {
        "SCMP_CMP_EQ" => (CmpOp::Eq, value),
        "SCMP_CMP_NE" => (CmpOp::Ne, value),
        "SCMP_CMP_LT" => (CmpOp::Lt, value),
        "SCMP_CMP_LE" => (CmpOp::Le, value),
        "SCMP_CMP_GT" => (CmpOp::Gt, value),
        "SCMP_CMP_GE" => (CmpOp::Ge, value),
        "SCMP_CMP_MASKED_EQ" => (CmpOp::MaskedEq(value), value_two),
        other => return Err(format!("unknown args op `{other}`")),
    };
    Ok(ArgCmp {
        index: index as u32,
        op,
        value,
    })
}

/// One rule as it goes into the object.
#[derive(Debug, Clone)]
struct Emitted {
    name: String,
    action: ActionSpec,
    args: Vec<ArgCmp>,
}

impl Emitted {
    fn from_rule(rule: &Rule) -> Emitted {
        Emitted {
            name: rule.syscall.to_owned(),
            action: ActionSpec::ours(rule.action),
            args: rule.args.clone(),
        }
    }
}

/// Entries of `syscalls`: rules with the same action and arguments share an entry. A rule
/// joins an earlier entry only when no rule of the same system call sits in between, so that
/// each system call's rules keep their order (libseccomp builds each call's rules apart; the
/// order between calls does not matter). A rule already in the entry is not repeated.
fn group(rules: &[Emitted]) -> Vec<Json> {
    struct Group<'a> {
        names: Vec<&'a str>,
        action: &'a ActionSpec,
        args: &'a [ArgCmp],
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<(&ActionSpec, &[ArgCmp]), usize> = HashMap::new();
    let mut last_of: HashMap<&str, usize> = HashMap::new();
    for rule in rules {
        let key = (&rule.action, rule.args.as_slice());
        let floor = last_of.get(rule.name.as_str()).copied().unwrap_or(0);
        let at = match by_key.get(&key) {
            Some(&g) if g >= floor => g,
            _ => {
                groups.push(Group {
                    names: Vec::new(),
                    action: &rule.action,
                    args: &rule.args,
                });
                by_key.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        if !groups[at].names.contains(&rule.name.as_str()) {
            groups[at].names.push(&rule.name);
        }
        last_of.insert(&rule.name, at);
    }
    groups
        .into_iter()
        .map(|g| {
            let mut entry = vec![(
                "names",
                Json::Array(g.names.iter().map(|n| Json::str(n)).collect()),
            )];
            g.action.write(&mut entry);
            if !g.args.is_empty() {
                entry.push(("args", Json::Array(g.args.iter().map(arg_json).collect())));
            }
            Json::object(entry)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A profile as the runtimes read it

/// One rule of a profile, per name, as a runtime gives it to libseccomp.
#[derive(Debug, Clone)]
struct ProfileRule {
    /// Index of the entry in `syscalls`.
    entry: usize,
    name: String,
    action: ActionSpec,
    args: Vec<ArgCmp>,
}

/// A `linux.seccomp` object, checked.
#[derive(Debug, Clone)]
struct Profile {
    default: ActionSpec,
    architectures: Vec<String>,
    listener: Option<String>,
    entries: Vec<Json>,
    rules: Vec<ProfileRule>,
}

impl Profile {
    fn parse(object: &Json) -> Result<Profile, String> {
        if !object.is_object() {
            return Err("not a JSON object".into());
        }
        let default_name = object
            .get("defaultAction")
            .and_then(Json::as_str)
            .ok_or("defaultAction missing")?;
        let default_errno = match object.get("defaultErrnoRet") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or("defaultErrnoRet is not a number")?),
        };
        let default = ActionSpec::parse(default_name, default_errno)?;
        if default.class() == Class::Notifies {
            return Err("SCMP_ACT_NOTIFY cannot be the default action".into());
        }
        let mut architectures = Vec::new();
        if let Some(list) = object.get("architectures") {
            for arch in list.as_array().ok_or("architectures is not an array")? {
                let arch = arch.as_str().ok_or("an architecture is not a string")?;
                arch.parse::<ScmpArch>()
                    .map_err(|_| format!("unknown architecture `{arch}`"))?;
                architectures.push(arch.to_owned());
            }
        }
        let listener = match object.get("listenerPath") {
            None => None,
            Some(p) => Some(p.as_str().ok_or("listenerPath is not a string")?.to_owned()),
        };
        let entries = match object.get("syscalls") {
            None | Some(Json::Null) => Vec::new(),
            Some(list) => list.as_array().ok_or("syscalls is not an array")?.to_vec(),
        };
        let mut rules = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            rules.extend(Profile::entry_rules(i, entry)?);
        }
        if listener.is_none() && rules.iter().any(|r| r.action.class() == Class::Notifies) {
            return Err("SCMP_ACT_NOTIFY rules need a listenerPath".into());
        }
        Ok(Profile {
            default,
            architectures,
            listener,
            entries,
            rules,
        })
    }

    /// The rules of entry `i` of `syscalls`, one per name (and per comparison, where an
    /// argument is compared twice), as the runtimes read them.
    fn entry_rules(i: usize, entry: &Json) -> Result<Vec<ProfileRule>, String> {
        let mut rules = Vec::new();
        let bad = |m: &str| format!("syscalls[{i}]: {m}");
        if !entry.is_object() {
            return Err(bad("not an object"));
        }
        let names = entry
            .get("names")
            .and_then(Json::as_array)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("names must be a non-empty array"))?;
        let action = entry
            .get("action")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("action missing"))?;
        let errno = match entry.get("errnoRet") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| bad("errnoRet is not a number"))?),
        };
        let action = ActionSpec::parse(action, errno).map_err(|m| bad(&m))?;
        let mut args = Vec::new();
        if let Some(list) = entry.get("args") {
            for arg in list.as_array().ok_or_else(|| bad("args is not an array"))? {
                args.push(parse_arg(arg).map_err(|m| bad(&m))?);
            }
        }
        // Both runtimes: one argument compared twice makes one rule per comparison.
        let mut seen = [false; 6];
        let split = args
            .iter()
            .any(|a| std::mem::replace(&mut seen[a.index as usize], true));
        let sets: Vec<Vec<ArgCmp>> = if split {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args]
        };
        for name in names {
            let name = name.as_str().ok_or_else(|| bad("a name is not a string"))?;
            for args in &sets {
                rules.push(ProfileRule {
                    entry: i,
                    name: name.to_owned(),
                    action: action.clone(),
                    args: args.clone(),
                });
            }
        }
        Ok(rules)
    }
}

/// Builds the filter a runtime builds from a `linux.seccomp` object, the way runc 1.1 and
/// crun 1.8 do: the default action, the architectures, then each entry's names in order
/// (entries with the default's action skipped, unknown names skipped, an argument compared
/// twice split into one rule per comparison). `badarch` replaces libseccomp's bad-arch
/// action (kill the thread), which the runtimes leave as it is. runc also turns on
/// libseccomp's binary-tree layout for more than 32 entries and, for a non-allowing default,
/// prepends its `-ENOSYS` stub; neither is done here.
pub fn runtime_context(
    object: &Json,
    badarch: Option<ScmpAction>,
) -> Result<ScmpFilterContext, String> {
    let profile = Profile::parse(object)?;
    let default = profile.default.to_scmp();
    let seccomp = |e: libseccomp::error::SeccompError| format!("libseccomp: {e}");
    let mut ctx = ScmpFilterContext::new(default).map_err(seccomp)?;
    if let Some(action) = badarch {
        ctx.set_act_badarch(action).map_err(seccomp)?;
    }
    for arch in &profile.architectures {
        let arch: ScmpArch = arch.parse().map_err(seccomp)?;
        ctx.add_arch(arch).map_err(seccomp)?;
    }
    for rule in &profile.rules {
        let action = rule.action.to_scmp();
        if action == default {
            continue;
        }
        let Ok(call) = ScmpSyscall::from_name(&rule.name) else {
            continue;
        };
        let added = if rule.args.is_empty() {
            ctx.add_rule(action, call).map(|_| ())
        } else {
            let args: Vec<ScmpArgCompare> = rule.args.iter().map(to_libseccomp).collect();
            ctx.add_rule_conditional(action, call, &args).map(|_| ())
        };
        added.map_err(|e| format!("{}: libseccomp: {e}", rule.name))?;
    }
    Ok(ctx)
}

fn to_libseccomp(cmp: &ArgCmp) -> ScmpArgCompare {
    let op = match cmp.op {
        CmpOp::Eq => ScmpCompareOp::Equal,
        CmpOp::Ne => ScmpCompareOp::NotEqual,
        CmpOp::Lt => ScmpCompareOp::Less,
        CmpOp::Le => ScmpCompareOp::LessOrEqual,
        CmpOp::Gt => ScmpCompareOp::Greater,
        CmpOp::Ge => ScmpCompareOp::GreaterEqual,
        CmpOp::MaskedEq(mask) => ScmpCompareOp::MaskedEqual(mask),
    };
    ScmpArgCompare::new(cmp.index, op, cmp.value)
}

// ---------------------------------------------------------------------------------------------
// The merge

/// Merges netjail's rules into the container's own profile (see the module's docs).
fn merge(
    theirs: &Json,
    ours: &[Rule],
    listener: &str,
    metadata: &str,
    origin: &str,
) -> Result<Json, OciError> {
    let profile_error = |message: String| OciError::Profile {
        origin: origin.to_owned(),
        what: "linux.seccomp".into(),
        message,
    };
    let profile = Profile::parse(theirs).map_err(profile_error)?;
    if let Some(theirs) = &profile.listener {
        if theirs != listener {
            return Err(OciError::OtherAgent {
                origin: origin.to_owned(),
                theirs: theirs.clone(),
                ours: listener.to_owned(),
            });
        }
    }
    // Names to take out of the profile's entries: (entry, name).
    let mut removed: HashSet<(usize, String)> = HashSet::new();
    // With the broker's own listener, the profile's notifications are netjail's (an object
    // from `netjail oci seccomp` pasted in): ours replace them.
    for r in &profile.rules {
        if r.action.class() == Class::Notifies {
            removed.insert((r.entry, r.name.clone()));
        }
    }
    let mut emitted: Vec<Emitted> = Vec::new();
    let mut too_many = Vec::new();
    let mut calls: Vec<&str> = Vec::new();
    for r in ours {
        if !calls.contains(&r.syscall) {
            calls.push(r.syscall);
        }
    }
    for call in calls {
        let count = merge_call(call, ours, &profile, &mut emitted, &mut removed);
        if count > MAX_RULES_PER_SYSCALL {
            too_many.push(call.to_owned());
        }
    }
    if !too_many.is_empty() {
        return Err(OciError::Inexpressible {
            origin: origin.to_owned(),
            syscalls: too_many,
        });
    }
    let mut syscalls = kept_entries(&profile, &removed);
    syscalls.extend(group(&emitted));
    let mut merged = theirs.clone();
    merged.set(
        "architectures",
        Json::Array(vec![Json::str(native_architecture()?)]),
    );
    merged.set("listenerPath", Json::str(listener));
    merged.set("listenerMetadata", Json::str(metadata));
    merged.set("syscalls", Json::Array(syscalls));
    Ok(merged)
}

/// Merges netjail's rules for one system call `call` into the profile's: pushes the rules of
/// the merged filter to `emitted`, the profile's rules it replaces to `removed`, and returns
/// how many rules the call now has (0 when the profile refuses it whatever the arguments).
fn merge_call(
    call: &str,
    ours: &[Rule],
    profile: &Profile,
    emitted: &mut Vec<Emitted>,
    removed: &mut HashSet<(usize, String)>,
) -> usize {
    let default_allows = profile.default.class() == Class::Allows;
    let mine: Vec<&Rule> = ours.iter().filter(|r| r.syscall == call).collect();
    let theirs: Vec<&ProfileRule> = profile
        .rules
        .iter()
        .filter(|r| r.name == call && r.action.class() != Class::Notifies)
        .collect();
    let refused: Vec<Cube> = theirs
        .iter()
        .filter(|r| r.action.class() == Class::Refuses)
        .flat_map(|r| rule_cubes(&r.args))
        .collect();
    if is_universe(&refused) {
        return 0; // they refuse it whatever the arguments: theirs stands
    }
    let allowing: Vec<&ProfileRule> = theirs
        .iter()
        .copied()
        .filter(|r| r.action.class() == Class::Allows)
        .collect();
    let allowed = if default_allows {
        vec![UNIVERSE]
    } else {
        disjoint(
            &allowing
                .iter()
                .flat_map(|r| rule_cubes(&r.args))
                .collect::<Vec<_>>(),
        )
    };
    let allowed = region_minus(allowed, &refused);
    let mut count = emit_ours(call, &mine, profile, &allowed, emitted);
    // Theirs that allow it, without what they refuse and what ours decide.
    let mine_cubes: Vec<Cube> = mine.iter().flat_map(|r| rule_cubes(&r.args)).collect();
    let mut taken: Vec<Cube> = refused.clone();
    taken.extend(mine_cubes);
    for rule in allowing {
        let cubes = rule_cubes(&rule.args);
        if default_allows && rule.action == profile.default {
            removed.insert((rule.entry, rule.name.clone()));
            continue;
        }
        if region_and(&cubes, &taken).is_empty() {
            continue; // untouched: stays in its entry
        }
        removed.insert((rule.entry, rule.name.clone()));
        let region = coalesce(region_minus(cubes, &taken));
        count += region.len();
        for cube in region {
            emitted.push(Emitted {
                name: call.to_owned(),
                action: rule.action.clone(),
                args: cube_args(&cube),
            });
        }
    }
    count
}

/// Netjail's rules for `call` where the profile allows it (`allowed`), pushed to `emitted`; a
/// refusal like the profile's default is left to the default (the runtimes skip such rules
/// anyway). Returns how many rules it pushed.
fn emit_ours(
    call: &str,
    mine: &[&Rule],
    profile: &Profile,
    allowed: &[Cube],
    emitted: &mut Vec<Emitted>,
) -> usize {
    let default_allows = profile.default.class() == Class::Allows;
    let whole = is_universe(allowed);
    let mut count = 0;
    for rule in mine {
        if !default_allows && ActionSpec::ours(rule.action) == profile.default {
            continue;
        }
        if whole {
            emitted.push(Emitted::from_rule(rule));
            count += 1;
            continue;
        }
        let region = coalesce(region_and(&rule_cubes(&rule.args), allowed));
        count += region.len();
        for cube in region {
            emitted.push(Emitted {
                name: call.to_owned(),
                action: ActionSpec::ours(rule.action),
                args: cube_args(&cube),
            });
        }
    }
    count
}

/// The profile's own entries, without the names `removed` takes out of each.
fn kept_entries(profile: &Profile, removed: &HashSet<(usize, String)>) -> Vec<Json> {
    let mut syscalls: Vec<Json> = Vec::new();
    for (i, entry) in profile.entries.iter().enumerate() {
        let names: Vec<Json> = entry
            .get("names")
            .and_then(Json::as_array)
            .unwrap_or_default()
            .iter()
            .filter(|n| !removed.contains(&(i, n.as_str().unwrap_or_default().to_owned())))
            .cloned()
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut entry = entry.clone();
        entry.set("names", Json::Array(names));
        syscalls.push(entry);
    }
    syscalls
}
