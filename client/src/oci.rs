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
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use libseccomp::ScmpSyscall;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use netjail_policy::Policy;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

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

// ---------------------------------------------------------------------------------------------
// JSON that keeps its key order

/// A JSON value that keeps object keys in the order they were read (`serde_json::Value` sorts
/// them), so that a patched `config.json` differs from the original only where it was
/// patched. A key given twice keeps the last value, at the place of the first.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, in key order.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The value of `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(pairs) => pairs.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key` in an object: in place when it is there, else at the end. No-op on other
    /// values.
    pub fn set(&mut self, key: &str, value: Json) {
        if let Json::Object(pairs) = self {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => pairs.push((key.to_owned(), value)),
            }
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    fn object(pairs: Vec<(&str, Json)>) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    fn str(s: &str) -> Json {
        Json::String(s.to_owned())
    }

    fn u64(n: u64) -> Json {
        Json::Number(n.into())
    }

    /// Compact text.
    pub fn to_compact(&self) -> String {
        // Serializing this type into a String cannot fail: every key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Indented text, with `indent` as one level (`b"  "` or `b"\t"`).
    pub fn to_pretty(&self, indent: &[u8]) -> String {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        if self.serialize(&mut ser).is_err() {
            return String::new(); // unreachable: see to_compact
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Display for Json {
    /// Indented by two spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_pretty(b"  "))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = Json::Object(Vec::new());
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            object.set(&k, v);
        }
        Ok(object)
    }
}

fn json_error(origin: &str, e: &serde_json::Error) -> OciError {
    let text = e.to_string();
    let message = match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    };
    OciError::Json {
        origin: origin.to_owned(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

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
// Argument regions

/// The values `v` of one argument with `v & mask == value` (`value` has no bit outside
/// `mask`; mask 0 is every value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Block {
    mask: u64,
    value: u64,
}

const ANY: Block = Block { mask: 0, value: 0 };

/// A product of one block per argument: the calls one rule of masked comparisons matches.
type Cube = [Block; 6];

const UNIVERSE: Cube = [ANY; 6];

fn block_and(a: Block, b: Block) -> Option<Block> {
    if (a.value ^ b.value) & a.mask & b.mask != 0 {
        return None;
    }
    Some(Block {
        mask: a.mask | b.mask,
        value: a.value | b.value,
    })
}

/// `a` without `b`, as disjoint blocks: one for each bit `b` fixes and `a` does not, from the
/// highest.
fn block_minus(a: Block, b: Block) -> Vec<Block> {
    if block_and(a, b).is_none() {
        return vec![a];
    }
    let mut fixed = a.mask;
    let mut value = a.value;
    let mut out = Vec::new();
    for bit in (0..64).rev().map(|i| 1u64 << i) {
        if b.mask & !a.mask & bit == 0 {
            continue;
        }
        out.push(Block {
            mask: fixed | bit,
            value: value | (!b.value & bit),
        });
        fixed |= bit;
        value |= b.value & bit;
    }
    out
}

/// `lo..=hi` as aligned blocks.
fn interval(lo: u64, hi: u64) -> Vec<Block> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u128::from(lo), u128::from(hi));
    while lo <= hi {
        let mut size: u128 = 1;
        while size < (1u128 << 64) && lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi {
            size *= 2;
        }
        out.push(Block {
            mask: !((size - 1) as u64),
            value: lo as u64,
        });
        lo += size;
    }
    out
}

/// The values a comparison matches, as disjoint blocks.
fn cmp_blocks(cmp: &ArgCmp) -> Vec<Block> {
    let v = cmp.value;
    match cmp.op {
        CmpOp::Eq => vec![Block {
            mask: u64::MAX,
            value: v,
        }],
        CmpOp::MaskedEq(mask) if v & !mask != 0 => Vec::new(),
        CmpOp::MaskedEq(mask) => vec![Block { mask, value: v }],
        CmpOp::Ne => block_minus(
            ANY,
            Block {
                mask: u64::MAX,
                value: v,
            },
        ),
        CmpOp::Lt if v == 0 => Vec::new(),
        CmpOp::Lt => interval(0, v - 1),
        CmpOp::Le => interval(0, v),
        CmpOp::Gt if v == u64::MAX => Vec::new(),
        CmpOp::Gt => interval(v + 1, u64::MAX),
        CmpOp::Ge => interval(v, u64::MAX),
    }
}

/// The calls a rule's comparisons match, as disjoint cubes.
fn rule_cubes(args: &[ArgCmp]) -> Vec<Cube> {
    let mut cubes = vec![UNIVERSE];
    for cmp in args {
        let i = cmp.index as usize;
        let blocks = cmp_blocks(cmp);
        cubes = cubes
            .iter()
            .flat_map(|c| {
                blocks.iter().filter_map(move |&b| {
                    let mut c = *c;
                    c[i] = block_and(c[i], b)?;
                    Some(c)
                })
            })
            .collect();
    }
    cubes
}

fn cube_and(a: &Cube, b: &Cube) -> Option<Cube> {
    let mut out = UNIVERSE;
    for i in 0..6 {
        out[i] = block_and(a[i], b[i])?;
    }
    Some(out)
}

/// `a` without `b`, as disjoint cubes.
fn cube_minus(a: &Cube, b: &Cube) -> Vec<Cube> {
    if cube_and(a, b).is_none() {
        return vec![*a];
    }
    let mut out = Vec::new();
    let mut rest = *a;
    for i in 0..6 {
        for piece in block_minus(rest[i], b[i]) {
            let mut c = rest;
            c[i] = piece;
            out.push(c);
        }
        // Cannot fail: a and b meet.
        rest[i] = block_and(rest[i], b[i]).unwrap_or(rest[i]);
    }
    out
}

/// A region without another; disjoint cubes stay disjoint.
fn region_minus(region: Vec<Cube>, minus: &[Cube]) -> Vec<Cube> {
    minus.iter().fold(region, |region, m| {
        region.iter().flat_map(|c| cube_minus(c, m)).collect()
    })
}

fn region_and(a: &[Cube], b: &[Cube]) -> Vec<Cube> {
    a.iter()
        .flat_map(|x| b.iter().filter_map(move |y| cube_and(x, y)))
        .collect()
}

/// The union of possibly overlapping cubes, as disjoint cubes.
fn disjoint(cubes: &[Cube]) -> Vec<Cube> {
    let mut out: Vec<Cube> = Vec::new();
    for c in cubes {
        let pieces = region_minus(vec![*c], &out);
        out.extend(pieces);
    }
    out
}

fn is_universe(region: &[Cube]) -> bool {
    region_minus(vec![UNIVERSE], region).is_empty()
}

/// Joins cubes that differ in one bit of one block, until none do: fewer, wider rules.
fn coalesce(region: Vec<Cube>) -> Vec<Cube> {
    let mut set: HashSet<Cube> = region.into_iter().collect();
    loop {
        let mut joined = None;
        'search: for c in &set {
            for i in 0..6 {
                let mut bits = c[i].mask;
                while bits != 0 {
                    let bit = bits & bits.wrapping_neg();
                    bits &= !bit;
                    let mut twin = *c;
                    twin[i].value ^= bit;
                    if set.contains(&twin) {
                        let mut wide = *c;
                        wide[i].mask &= !bit;
                        wide[i].value &= !bit;
                        joined = Some((*c, twin, wide));
                        break 'search;
                    }
                }
            }
        }
        match joined {
            Some((a, b, wide)) => {
                set.remove(&a);
                set.remove(&b);
                set.insert(wide);
            }
            None => break,
        }
    }
    let mut out: Vec<Cube> = set.into_iter().collect();
    out.sort_by_key(|c| c.map(|b| (b.mask, b.value)));
    out
}

/// A cube as the comparisons of one rule: `SCMP_CMP_EQ` for a whole value, else
/// `SCMP_CMP_MASKED_EQ`.
fn cube_args(cube: &Cube) -> Vec<ArgCmp> {
    (0..6)
        .filter(|&i| cube[i].mask != 0)
        .map(|i| {
            let b = cube[i];
            if b.mask == u64::MAX {
                ArgCmp::eq(i as u32, b.value)
            } else {
                ArgCmp::masked_eq(i as u32, b.mask, b.value)
            }
        })
        .collect()
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
    let default_allows = profile.default.class() == Class::Allows;
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
            continue; // they refuse it whatever the arguments: theirs stands
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
        let whole = is_universe(&allowed);
        let mut count = 0;
        // Ours, where they allow the call. A refusal like their default's is left to the
        // default (the runtimes skip such rules anyway).
        for rule in &mine {
            if !default_allows && ActionSpec::ours(rule.action) == profile.default {
                continue;
            }
            if whole {
                emitted.push(Emitted::from_rule(rule));
                count += 1;
                continue;
            }
            let region = coalesce(region_and(&rule_cubes(&rule.args), &allowed));
            count += region.len();
            for cube in region {
                emitted.push(Emitted {
                    name: call.to_owned(),
                    action: ActionSpec::ours(rule.action),
                    args: cube_args(&cube),
                });
            }
        }
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

// ---------------------------------------------------------------------------------------------
// The patch

/// What [`patch_config`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The patched configuration.
    pub text: String,
    /// Whether netjail's rules were merged into a profile of the container's own.
    pub merged: bool,
    /// Capabilities taken out of `process.capabilities`.
    pub removed_capabilities: Vec<String>,
}

/// Patches the bundle configuration `text` (`origin` names it in errors) for `policy`, known
/// to the broker as `label`:
///
/// - `linux.seccomp`: netjail's object, merged with the container's own profile if it has
///   one (see the module's docs). The container's profile is kept in the annotation
///   [`ORIGINAL_SECCOMP_ANNOTATION`]; when that annotation is there, the merge starts from
///   it, so patching again (with the same or another policy) gives what one patch of the
///   original gives.
/// - `process.noNewPrivileges`: true.
/// - `process.capabilities`: every set loses the capabilities `netjail run` drops
///   ([`crate::sys::DROPPED_CAPABILITIES`]) except those the policy keeps. Capabilities are
///   not given back by a later patch with a policy that keeps more.
///
/// Other keys and their order stay as they are.
pub fn patch_config(
    text: &str,
    origin: &str,
    policy: &Policy,
    label: &str,
    listener: &str,
) -> Result<Patched, OciError> {
    let not_object = |what: &str| OciError::NotObject {
        origin: origin.to_owned(),
        what: what.to_owned(),
    };
    let mut doc = Json::parse(text).map_err(|e| json_error(origin, &e))?;
    if !doc.is_object() {
        return Err(not_object("the document"));
    }
    if doc.get("annotations").is_some_and(|a| !a.is_object()) {
        return Err(not_object("annotations"));
    }
    if doc.get("linux").is_some_and(|a| !a.is_object()) {
        return Err(not_object("linux"));
    }
    if doc.get("process").is_some_and(|a| !a.is_object()) {
        return Err(not_object("process"));
    }
    let annotation = doc
        .get("annotations")
        .and_then(|a| a.get(ORIGINAL_SECCOMP_ANNOTATION));
    let original = match annotation {
        Some(kept) => {
            let bad = |message: String| OciError::Profile {
                origin: origin.to_owned(),
                what: format!("annotations.\"{ORIGINAL_SECCOMP_ANNOTATION}\""),
                message,
            };
            let kept = kept.as_str().ok_or_else(|| bad("not a string".into()))?;
            match Json::parse(kept).map_err(|e| bad(e.to_string()))? {
                Json::Null => None,
                object => Some(object),
            }
        }
        None => doc
            .get("linux")
            .and_then(|l| l.get("seccomp"))
            .filter(|s| **s != Json::Null)
            .cloned(),
    };
    let rules = filter::rules(policy)?;
    let metadata = listener_metadata(policy, label);
    let seccomp = match &original {
        None => seccomp_object(policy, label, listener)?,
        Some(theirs) => merge(theirs, &rules, listener, &metadata, origin)?,
    };
    check(&seccomp, origin)?;
    if doc.get("linux").is_none() {
        doc.set("linux", Json::Object(Vec::new()));
    }
    if let Some(linux) = doc.get_mut("linux") {
        linux.set("seccomp", seccomp);
    }
    if doc.get("annotations").is_none() {
        doc.set("annotations", Json::Object(Vec::new()));
    }
    let kept = original.as_ref().map_or("null".into(), Json::to_compact);
    if let Some(annotations) = doc.get_mut("annotations") {
        annotations.set(ORIGINAL_SECCOMP_ANNOTATION, Json::String(kept));
    }
    if doc.get("process").is_none() {
        doc.set("process", Json::Object(Vec::new()));
    }
    let keep = policy.confinement().keep_capabilities();
    let dropped: Vec<&str> = crate::sys::DROPPED_CAPABILITIES
        .iter()
        .filter(|(n, _)| !keep.contains(n))
        .map(|&(_, name)| name)
        .collect();
    let mut removed_capabilities = Vec::new();
    if let Some(process) = doc.get_mut("process") {
        process.set("noNewPrivileges", Json::Bool(true));
        if let Some(Json::Object(sets)) = process.get_mut("capabilities") {
            for (_, set) in sets.iter_mut() {
                if let Json::Array(caps) = set {
                    caps.retain(|c| {
                        let name = c.as_str().unwrap_or_default();
                        let drop = dropped.contains(&name);
                        if drop && !removed_capabilities.iter().any(|r| r == name) {
                            removed_capabilities.push(name.to_owned());
                        }
                        !drop
                    });
                }
            }
        }
    }
    // Keep the file's indentation (runc spec writes tabs) and final newline.
    let indent: &[u8] = match text.lines().nth(1) {
        Some(line) if line.starts_with('\t') => b"\t",
        Some(line) if line.starts_with("    ") && !line.starts_with("     ") => b"    ",
        _ => b"  ",
    };
    let mut out = doc.to_pretty(indent);
    if text.ends_with('\n') {
        out.push('\n');
    }
    Ok(Patched {
        text: out,
        merged: original.is_some(),
        removed_capabilities,
    })
}

/// Checks a `linux.seccomp` object the way a runtime would take it: libseccomp accepts
/// every rule, the program fits the kernel's limit, and no `write` is notified (runc refuses
/// that: it writes the listener's number to its parent after the filter is loaded).
fn check(seccomp: &Json, origin: &str) -> Result<(), OciError> {
    let profile_error = |message: String| OciError::Profile {
        origin: origin.to_owned(),
        what: "the merged linux.seccomp".into(),
        message,
    };
    let profile = Profile::parse(seccomp).map_err(profile_error)?;
    if profile
        .rules
        .iter()
        .any(|r| r.name == "write" && r.action.class() == Class::Notifies)
    {
        return Err(profile_error(
            "SCMP_ACT_NOTIFY on write (runc refuses it)".into(),
        ));
    }
    let ctx = runtime_context(seccomp, None).map_err(profile_error)?;
    let program = filter::export(&ctx)?;
    if program.instructions.len() > BPF_MAXINSNS {
        return Err(OciError::TooLong {
            origin: origin.to_owned(),
            instructions: program.instructions.len(),
        });
    }
    Ok(())
}

/// Patches the bundle configuration at `path` in place for the policy `spec` (a built-in name
/// or a file): [`patch_config`], written to a temporary file in the same directory and
/// renamed over the original (same permissions).
pub fn patch_file(path: &Path, spec: &str, listener: &str) -> Result<Patched, OciError> {
    let label = policy_label(spec)?;
    let (_, policy) = crate::policy::load(spec)?;
    let text = std::fs::read_to_string(path).map_err(|source| OciError::Read {
        path: path.to_owned(),
        source,
    })?;
    let origin = path.display().to_string();
    let patched = patch_config(&text, &origin, &policy, &label, listener)?;
    let write_error = |source| OciError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.netjail-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(patched.text.as_bytes())?;
        let permissions = std::fs::metadata(path)?.permissions();
        file.set_permissions(permissions)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(write_error(e));
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::tests::RICH_POLICIES;

    const LISTENER: &str = "/run/netjail/oci.sock";

    fn policy(src: &str) -> Policy {
        Policy::from_toml(src, "test").unwrap()
    }

    /// Every built-in policy and the rich ones of the filter's tests.
    fn all_policies() -> Vec<(String, Policy)> {
        netjail_policy::builtin_names()
            .iter()
            .map(|n| (n.to_string(), policy(netjail_policy::builtin(n).unwrap())))
            .chain(
                RICH_POLICIES
                    .iter()
                    .map(|(n, s)| (n.to_string(), policy(s))),
            )
            .collect()
    }

    fn same(a: &filter::Program, b: &filter::Program) -> bool {
        a.instructions.len() == b.instructions.len()
            && a.instructions
                .iter()
                .zip(&b.instructions)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    // -- a classic BPF interpreter, enough for libseccomp's programs ---------------------------

    const RET_KILL_THREAD: u32 = 0;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_NOTIFY: u32 = 0x7fc0_0000;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    fn native_audit_arch() -> u32 {
        match ScmpArch::native() {
            ScmpArch::X8664 => 0xc000_003e,
            ScmpArch::Aarch64 => 0xc000_00b7,
            other => panic!("no audit arch for {other:?}"),
        }
    }

    fn run_bpf(prog: &filter::Program, arch: u32, nr: i32, args: &[u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let word = |k: u32| {
            let k = k as usize;
            u32::from_ne_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]])
        };
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let i = prog.instructions[pc];
            pc += 1;
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            match i.code {
                0x20 => a = word(i.k),            // ld [k]
                0x00 => a = i.k,                  // ld #k
                0x01 => x = i.k,                  // ldx #k
                0x60 => a = mem[i.k as usize],    // ld M[k]
                0x61 => x = mem[i.k as usize],    // ldx M[k]
                0x02 => mem[i.k as usize] = a,    // st M[k]
                0x03 => mem[i.k as usize] = x,    // stx M[k]
                0x54 => a &= i.k,                 // and #k
                0x44 => a |= i.k,                 // or #k
                0x07 => x = a,                    // tax
                0x87 => a = x,                    // txa
                0x05 => pc += i.k as usize,       // ja
                0x15 => pc += jump(a == i.k),     // jeq #k
                0x25 => pc += jump(a > i.k),      // jgt #k
                0x35 => pc += jump(a >= i.k),     // jge #k
                0x45 => pc += jump(a & i.k != 0), // jset #k
                0x1d => pc += jump(a == x),       // jeq x
                0x2d => pc += jump(a > x),        // jgt x
                0x3d => pc += jump(a >= x),       // jge x
                0x06 => return i.k,               // ret #k
                0x16 => return a,                 // ret a
                code => panic!("BPF opcode {code:#x} not simulated"),
            }
        }
    }

    fn nr(name: &str) -> i32 {
        ScmpSyscall::from_name(name).unwrap().as_raw_syscall()
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// Argument values worth trying for calls compared with `cmps`: each constant, its
    /// neighbours, with and without high garbage, and a few extremes.
    fn pools(cmps: &[ArgCmp]) -> [Vec<u64>; 6] {
        let mut pools: [Vec<u64>; 6] = Default::default();
        for p in pools.iter_mut() {
            p.extend([0, 1, 2, 8, u64::MAX, 1 << 32, 0xffff_ffff]);
        }
        for c in cmps {
            let mut values = vec![c.value];
            if let CmpOp::MaskedEq(m) = c.op {
                values.extend([m, !m, c.value | !m, c.value ^ m]);
            }
            for v in values {
                pools[c.index as usize].extend([
                    v,
                    v.wrapping_add(1),
                    v.wrapping_sub(1),
                    v | (0xdead_u64 << 40),
                    v ^ 0xf,
                ]);
            }
        }
        pools
    }

    fn sample(rng: &mut Rng, pools: &[Vec<u64>; 6]) -> [u64; 6] {
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = match rng.next() % 8 {
                0 => rng.next(),
                1 => rng.next() & 0xffff,
                _ => *rng.pick(&pools[i]),
            };
        }
        args
    }

    fn ret_of(action: &ActionSpec) -> u32 {
        let errno = action.errno.unwrap_or(0) as u32 & 0xffff;
        match action.name.as_str() {
            "SCMP_ACT_ALLOW" => RET_ALLOW,
            "SCMP_ACT_LOG" => 0x7ffc_0000,
            "SCMP_ACT_ERRNO" => 0x0005_0000 | errno,
            "SCMP_ACT_TRACE" => 0x7ff0_0000 | errno,
            "SCMP_ACT_TRAP" => 0x0003_0000,
            "SCMP_ACT_KILL_PROCESS" => RET_KILL_PROCESS,
            "SCMP_ACT_NOTIFY" => RET_NOTIFY,
            _ => RET_KILL_THREAD,
        }
    }

    fn our_ret(action: Action) -> u32 {
        ret_of(&ActionSpec::ours(action))
    }

    fn all_match(args: &[ArgCmp], x: &[u64; 6]) -> bool {
        args.iter().all(|c| c.matches(x[c.index as usize]))
    }

    /// What the merge promises for one call: the profile's refusals, then netjail's rules,
    /// then the profile's allow rules or default. Returns every acceptable return value.
    fn promised(theirs: &Profile, ours: &[Rule], call: &str, x: &[u64; 6]) -> Vec<u32> {
        let rules: Vec<&ProfileRule> = theirs
            .rules
            .iter()
            .filter(|r| r.name == call && r.action.class() != Class::Notifies)
            .filter(|r| all_match(&r.args, x))
            .collect();
        let refusing: Vec<u32> = rules
            .iter()
            .filter(|r| r.action.class() == Class::Refuses)
            .map(|r| ret_of(&r.action))
            .collect();
        if !refusing.is_empty() {
            return refusing;
        }
        let allowing: Vec<u32> = rules.iter().map(|r| ret_of(&r.action)).collect();
        if allowing.is_empty() && theirs.default.class() != Class::Allows {
            return vec![ret_of(&theirs.default)]; // netjail's rules do not reach here
        }
        let mine: Vec<u32> = ours
            .iter()
            .filter(|r| r.syscall == call && r.matches(x))
            .map(|r| our_ret(r.action))
            .collect();
        if !mine.is_empty() {
            return mine;
        }
        if !allowing.is_empty() {
            return allowing;
        }
        vec![ret_of(&theirs.default)]
    }

    /// Runs the merged object's program (as a runtime builds it) against the promise, on
    /// many calls of every system call either side names.
    fn check_merge_semantics(original: &Json, merged: &Json, policy: &Policy) {
        let theirs = Profile::parse(original).unwrap();
        let ours = filter::rules(policy).unwrap();
        let ctx = runtime_context(merged, Some(ScmpAction::KillProcess)).unwrap();
        let prog = filter::export(&ctx).unwrap();
        let mut calls: Vec<String> = ours.iter().map(|r| r.syscall.to_owned()).collect();
        calls.extend(theirs.rules.iter().map(|r| r.name.clone()));
        calls.extend(["read".to_owned(), "mount".to_owned()]);
        calls.sort();
        calls.dedup();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let arch = native_audit_arch();
        for call in calls {
            // Names of other architectures (socketcall) resolve to negative pseudo-numbers.
            let Some(n) = ScmpSyscall::from_name(&call)
                .ok()
                .filter(|n| n.as_raw_syscall() >= 0)
            else {
                continue;
            };
            let mut cmps: Vec<ArgCmp> = ours
                .iter()
                .filter(|r| r.syscall == call)
                .flat_map(|r| r.args.clone())
                .collect();
            cmps.extend(
                theirs
                    .rules
                    .iter()
                    .filter(|r| r.name == call)
                    .flat_map(|r| r.args.clone()),
            );
            let pools = pools(&cmps);
            for _ in 0..2500 {
                let x = sample(&mut rng, &pools);
                let got = run_bpf(&prog, arch, n.as_raw_syscall(), &x);
                let want = promised(&theirs, &ours, &call, &x);
                assert!(
                    want.contains(&got),
                    "{call}{x:x?}: program returns {got:#x}, the merge promises {want:x?}"
                );
            }
        }
    }

    // -- netjail's object ---------------------------------------------------------------------

    /// The object, read back and built as a runtime builds it, compiles to exactly the
    /// program `netjail run` loads (with the same bad-arch action): nothing is lost on the
    /// way through JSON.
    #[test]
    fn issue_4_object_compiles_to_the_run_program() {
        for (name, p) in all_policies() {
            let object = seccomp_object(&p, &name, LISTENER).unwrap();
            let text = object.to_string();
            let back = Json::parse(&text).unwrap();
            assert_eq!(back, object);
            let ctx = runtime_context(&back, Some(ScmpAction::KillProcess)).unwrap();
            let from_json = filter::export(&ctx).unwrap();
            let direct = filter::compile(&p).unwrap();
            assert!(same(&from_json, &direct), "{name}: programs differ");
        }
    }

    /// runc lays the same rules out as a binary tree (more than 32 entries) and keeps
    /// libseccomp's bad-arch action (kill the thread): the decisions are the same for the
    /// native architecture, and a foreign one is killed either way.
    #[test]
    fn issue_4_runc_layout_decides_the_same() {
        let arch = native_audit_arch();
        let mut rng = Rng(7);
        for (name, p) in all_policies() {
            let object = seccomp_object(&p, &name, LISTENER).unwrap();
            let entries = object.get("syscalls").unwrap().as_array().unwrap().len();
            assert!(entries > 32, "{name}: {entries} entries");
            let mut ctx = runtime_context(&object, None).unwrap();
            ctx.set_ctl_optimize(2).unwrap();
            let runc = filter::export(&ctx).unwrap();
            let ours = filter::compile(&p).unwrap();
            assert!(!same(&runc, &ours));
            let rules = filter::rules(&p).unwrap();
            let mut calls: Vec<&str> = rules.iter().map(|r| r.syscall).collect();
            calls.extend(["read", "write", "openat", "mount", "accept4"]);
            calls.dedup();
            for call in calls {
                let cmps: Vec<ArgCmp> = rules
                    .iter()
                    .filter(|r| r.syscall == call)
                    .flat_map(|r| r.args.clone())
                    .collect();
                let pools = pools(&cmps);
                for _ in 0..1500 {
                    let x = sample(&mut rng, &pools);
                    let a = run_bpf(&runc, arch, nr(call), &x);
                    let b = run_bpf(&ours, arch, nr(call), &x);
                    assert_eq!(a, b, "{name}: {call}{x:x?}");
                    let want = rules
                        .iter()
                        .find(|r| r.syscall == call && r.matches(&x))
                        .map_or(RET_ALLOW, |r| our_ret(r.action));
                    assert_eq!(b, want, "{name}: {call}{x:x?}");
                }
            }
            let x = [0; 6];
            assert_eq!(run_bpf(&runc, AUDIT_ARCH_I386, 3, &x), RET_KILL_THREAD);
            assert_eq!(run_bpf(&ours, AUDIT_ARCH_I386, 3, &x), RET_KILL_PROCESS);
        }
    }

    #[test]
    fn issue_4_object_fields() {
        let p = policy(netjail_policy::builtin("loopback-only").unwrap());
        let object = seccomp_object(&p, "loopback-only", "/run/x.sock").unwrap();
        assert_eq!(
            object.get("defaultAction").unwrap().as_str(),
            Some("SCMP_ACT_ALLOW")
        );
        let arch = object.get("architectures").unwrap().as_array().unwrap();
        assert_eq!(arch, [Json::str(native_architecture().unwrap())]);
        assert_eq!(
            object.get("listenerPath").unwrap().as_str(),
            Some("/run/x.sock")
        );
        let metadata = object.get("listenerMetadata").unwrap().as_str().unwrap();
        assert_eq!(
            metadata,
            format!("policy=loopback-only fingerprint={}", p.fingerprint())
        );
        assert!(object.get("flags").is_none());
        let entries = object.get("syscalls").unwrap().as_array().unwrap();
        let names = |e: &Json| -> Vec<String> {
            e.get("names")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect()
        };
        // The notified calls in one entry; write never notified.
        let first = &entries[0];
        assert_eq!(
            names(first),
            ["connect", "bind", "listen", "sendmsg", "sendmmsg"]
        );
        assert_eq!(
            first.get("action").unwrap().as_str(),
            Some("SCMP_ACT_NOTIFY")
        );
        assert!(first.get("errnoRet").is_none() && first.get("args").is_none());
        for e in entries {
            let notify = e.get("action").unwrap().as_str() == Some("SCMP_ACT_NOTIFY");
            assert!(!(notify && names(e).iter().any(|n| n == "write")));
        }
        // MASKED_EQ: value is the mask, valueTwo the datum (seccomp's NEW_LISTENER flag).
        let seccomp = entries.iter().find(|e| names(e) == ["seccomp"]).unwrap();
        let flags = &seccomp.get("args").unwrap().as_array().unwrap()[1];
        assert_eq!(
            flags.get("op").unwrap().as_str(),
            Some("SCMP_CMP_MASKED_EQ")
        );
        assert_eq!(flags.get("value").unwrap().as_u64(), Some(8));
        assert_eq!(flags.get("valueTwo").unwrap().as_u64(), Some(8));
        assert_eq!(
            seccomp.get("errnoRet").unwrap().as_u64(),
            Some(libc::EPERM as u64)
        );
        // socket and socketpair refuse the same families: one entry each family.
        assert!(entries.iter().any(|e| names(e) == ["socket", "socketpair"]));
    }

    #[test]
    fn issue_4_policy_label() {
        assert_eq!(policy_label("loopback-only").unwrap(), "loopback-only");
        assert_eq!(
            policy_label("/etc/netjail/policies/web_1.toml").unwrap(),
            "web_1"
        );
        assert_eq!(policy_label("web.client.toml").unwrap(), "web.client");
        for bad in ["my policy.toml", "a=b.toml", "/", ""] {
            let e = policy_label(bad).unwrap_err();
            assert!(matches!(e, OciError::PolicyName(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn issue_4_json_keeps_key_order_and_last_duplicate() {
        let text = "{\"z\": 1, \"a\": {\"y\": [true, null, 1.5, -2], \"b\": \"s\"}, \"z\": 2}";
        let j = Json::parse(text).unwrap();
        assert_eq!(
            j.to_compact(),
            "{\"z\":2,\"a\":{\"y\":[true,null,1.5,-2],\"b\":\"s\"}}"
        );
        assert_eq!(Json::parse(&j.to_pretty(b"\t")).unwrap(), j);
    }

    // -- regions ------------------------------------------------------------------------------

    #[test]
    fn issue_4_regions_are_exact() {
        let mut rng = Rng(42);
        let cmps = [
            ArgCmp::new(0, CmpOp::Gt, 63),
            ArgCmp::new(0, CmpOp::Lt, 5),
            ArgCmp::new(0, CmpOp::Le, 0x1_0000_0000),
            ArgCmp::new(0, CmpOp::Ge, u64::MAX - 3),
            ArgCmp::new(0, CmpOp::Ne, 0),
            ArgCmp::eq(0, 40),
            ArgCmp::masked_eq(0, 0xffff_ff01, 0x8b00),
            ArgCmp::masked_eq(0, 0xf, 0x10), // never matches
        ];
        let values = pools(&cmps);
        for c in &cmps {
            let blocks = cmp_blocks(c);
            for _ in 0..3000 {
                let v = sample(&mut rng, &values)[0];
                let hits = blocks.iter().filter(|b| v & b.mask == b.value).count();
                assert_eq!(hits, usize::from(c.matches(v)), "{c:?} {v:#x}");
            }
        }
        // a \ b and a & b partition a; coalescing keeps the set.
        let a = rule_cubes(&[ArgCmp::new(0, CmpOp::Le, 100), ArgCmp::new(1, CmpOp::Ne, 7)]);
        let b = rule_cubes(&[
            ArgCmp::masked_eq(0, 0xf0, 0x20),
            ArgCmp::new(2, CmpOp::Gt, 9),
        ]);
        let minus = coalesce(region_minus(a.clone(), &b));
        let both = region_and(&a, &b);
        let inside = |r: &[Cube], x: &[u64; 6]| {
            r.iter()
                .filter(|c| (0..6).all(|i| x[i] & c[i].mask == c[i].value))
                .count()
        };
        let pools = pools(&[
            ArgCmp::new(0, CmpOp::Le, 100),
            ArgCmp::new(1, CmpOp::Ne, 7),
            ArgCmp::masked_eq(0, 0xf0, 0x20),
            ArgCmp::new(2, CmpOp::Gt, 9),
        ]);
        for _ in 0..20000 {
            let x = sample(&mut rng, &pools);
            let (ia, ib) = (inside(&a, &x), inside(&b, &x));
            assert!(ia <= 1 && ib <= 1);
            assert_eq!(
                inside(&minus, &x),
                usize::from(ia == 1 && ib == 0),
                "{x:x?}"
            );
            assert_eq!(inside(&both, &x), usize::from(ia == 1 && ib == 1), "{x:x?}");
        }
        assert!(is_universe(&[UNIVERSE]));
        assert!(!is_universe(&rule_cubes(&[ArgCmp::new(3, CmpOp::Ne, 0)])));
        let halves = [
            rule_cubes(&[ArgCmp::new(3, CmpOp::Ne, 0)]),
            rule_cubes(&[ArgCmp::eq(3, 0)]),
        ];
        assert!(is_universe(&halves.concat()));
    }

    // -- the patch ----------------------------------------------------------------------------

    /// A bundle configuration like `runc spec` writes (abridged), with `seccomp` spliced in.
    fn config(seccomp: Option<&str>) -> String {
        let seccomp = seccomp.map_or(String::new(), |s| format!(",\n\t\t\"seccomp\": {s}"));
        format!(
            "{{\n\t\"ociVersion\": \"1.0.2-dev\",\n\t\"process\": {{\n\t\t\"terminal\": false,\n\
             \t\t\"args\": [\"/bin/busybox\", \"true\"],\n\t\t\"capabilities\": {{\n\
             \t\t\t\"bounding\": [\"CAP_AUDIT_WRITE\", \"CAP_KILL\", \"CAP_NET_BIND_SERVICE\", \
             \"CAP_NET_RAW\"],\n\t\t\t\"effective\": [\"CAP_KILL\", \"CAP_NET_RAW\", \
             \"CAP_SYS_ADMIN\"],\n\t\t\t\"ambient\": []\n\t\t}}\n\t}},\n\
             \t\"root\": {{\"path\": \"rootfs\", \"readonly\": true}},\n\t\"hostname\": \"runc\",\n\
             \t\"linux\": {{\n\t\t\"namespaces\": [{{\"type\": \"network\"}}]{seccomp}\n\t}}\n}}\n"
        )
    }

    fn patch(text: &str, p: &Policy) -> Result<Patched, OciError> {
        patch_config(text, "config.json", p, "t", LISTENER)
    }

    fn seccomp_of(text: &str) -> Json {
        Json::parse(text)
            .unwrap()
            .get("linux")
            .unwrap()
            .get("seccomp")
            .unwrap()
            .clone()
    }

    fn keys(j: &Json) -> Vec<&str> {
        match j {
            Json::Object(pairs) => pairs.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn caps(doc: &Json, set: &str) -> Vec<String> {
        doc.get("process")
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| c.get(set))
            .and_then(Json::as_array)
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn issue_4_patch_without_seccomp() {
        let p = policy(netjail_policy::builtin("loopback-only").unwrap());
        let text = config(None);
        let patched = patch(&text, &p).unwrap();
        assert!(!patched.merged);
        let doc = Json::parse(&patched.text).unwrap();
        assert_eq!(
            keys(&doc),
            [
                "ociVersion",
                "process",
                "root",
                "hostname",
                "linux",
                "annotations"
            ]
        );
        assert_eq!(keys(doc.get("linux").unwrap()), ["namespaces", "seccomp"]);
        assert_eq!(
            seccomp_of(&patched.text),
            seccomp_object(&p, "t", LISTENER).unwrap()
        );
        let kept = doc
            .get("annotations")
            .unwrap()
            .get(ORIGINAL_SECCOMP_ANNOTATION);
        assert_eq!(kept, Some(&Json::str("null")));
        let process = doc.get("process").unwrap();
        assert_eq!(process.get("noNewPrivileges"), Some(&Json::Bool(true)));
        assert_eq!(caps(&doc, "bounding"), ["CAP_AUDIT_WRITE", "CAP_KILL"]);
        assert_eq!(caps(&doc, "effective"), ["CAP_KILL"]);
        assert_eq!(
            patched.removed_capabilities,
            ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
        );
        // The file's tab indentation and final newline stay.
        assert!(patched.text.starts_with("{\n\t\"ociVersion\""));
        assert!(patched.text.ends_with("}\n"));
        // A policy that keeps CAP_NET_RAW keeps it in the container.
        let raw = policy("name = \"r\"\nkeep_capabilities = [\"CAP_NET_RAW\"]\n");
        let doc = Json::parse(&patch(&text, &raw).unwrap().text).unwrap();
        assert_eq!(
            caps(&doc, "bounding"),
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_RAW"]
        );
    }

    #[test]
    fn issue_4_patch_twice_is_patch_once() {
        let a = policy(netjail_policy::builtin("loopback-only").unwrap());
        let b = policy(RICH_POLICIES[1].1);
        for original in [None, Some(ALLOW_PROFILE), Some(DENY_PROFILE)] {
            let text = config(original);
            let once = patch(&text, &a).unwrap().text;
            let twice = patch(&once, &a).unwrap();
            assert_eq!(twice.text, once);
            assert_eq!(twice.merged, original.is_some());
            // Another policy over a patched file: as if the original had been patched.
            let other = patch(&once, &b).unwrap().text;
            assert_eq!(other, patch(&text, &b).unwrap().text);
        }
    }

    /// A profile that allows by default and refuses a few calls.
    const ALLOW_PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["connect", "mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["socket"], "action": "SCMP_ACT_LOG"},
            {"names": ["ioctl"], "action": "SCMP_ACT_KILL_PROCESS",
             "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_EQ"}]},
            {"names": ["sendto"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 65536, "op": "SCMP_CMP_GT"}]},
            {"names": ["bind"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_LE"}]},
            {"names": ["ptrace", "getpid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }"#;

    /// A profile in the style of Docker's and podman's: refuse by default, allow a list.
    const DENY_PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "close", "exit_group", "socket", "socketpair",
                       "connect", "bind", "listen", "accept4", "sendto", "recvfrom",
                       "sendmsg", "recvmsg", "setsockopt", "getsockopt", "fcntl", "seccomp",
                       "openat", "socketcall"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 35090, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["sendmmsg"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 3, "value": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 3, "value": 64, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;

    fn names_with(seccomp: &Json, action: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in seccomp.get("syscalls").unwrap().as_array().unwrap() {
            if e.get("action").unwrap().as_str() == Some(action) {
                for n in e.get("names").unwrap().as_array().unwrap() {
                    out.push(n.as_str().unwrap().to_owned());
                }
            }
        }
        out
    }

    fn unconditional(seccomp: &Json, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in seccomp.get("syscalls").unwrap().as_array().unwrap() {
            let named = e
                .get("names")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n.as_str() == Some(name));
            if named && e.get("args").is_none() {
                out.push(e.get("action").unwrap().as_str().unwrap().to_owned());
            }
        }
        out
    }

    #[test]
    fn issue_4_merge_into_an_allowing_profile() {
        for (name, p) in all_policies() {
            let patched = patch(&config(Some(ALLOW_PROFILE)), &p).unwrap();
            assert!(patched.merged);
            let merged = seccomp_of(&patched.text);
            let original = Json::parse(ALLOW_PROFILE).unwrap();
            // Theirs kept: flags, default; ours: listener, metadata, native arch only.
            assert_eq!(merged.get("flags"), original.get("flags"));
            assert_eq!(merged.get("listenerPath").unwrap().as_str(), Some(LISTENER));
            assert_eq!(
                merged.get("architectures").unwrap().as_array().unwrap(),
                [Json::str(native_architecture().unwrap())]
            );
            // Their unconditional refusal of connect wins over our notification.
            assert_eq!(unconditional(&merged, "connect"), ["SCMP_ACT_ERRNO"]);
            assert!(!names_with(&merged, "SCMP_ACT_NOTIFY").contains(&"connect".into()));
            assert!(names_with(&merged, "SCMP_ACT_ERRNO").contains(&"mount".into()));
            // Their allowing ptrace (the default anyway) gives way to our refusal.
            assert_eq!(unconditional(&merged, "ptrace"), ["SCMP_ACT_ERRNO"]);
            assert_eq!(unconditional(&merged, "getpid"), ["SCMP_ACT_ALLOW"]);
            // Their unconditional LOG of socket is narrowed to what we allow.
            assert!(unconditional(&merged, "socket").is_empty(), "{name}");
            let logged = names_with(&merged, "SCMP_ACT_LOG").contains(&"socket".into());
            assert_eq!(logged, name != "nosock", "{name}"); // nosock refuses every socket
                                                            // Their conditional refusal of bind stays; our notification covers the rest.
            assert!(names_with(&merged, "SCMP_ACT_NOTIFY").contains(&"bind".into()));
            check_merge_semantics(&original, &merged, &p);
        }
    }

    #[test]
    fn issue_4_merge_into_a_refusing_profile() {
        for (name, p) in all_policies() {
            let patched = patch(&config(Some(DENY_PROFILE)), &p).unwrap();
            let merged = seccomp_of(&patched.text);
            let original = Json::parse(DENY_PROFILE).unwrap();
            assert_eq!(merged.get("defaultErrnoRet").unwrap().as_u64(), Some(1));
            // Our notification replaces their unconditional allow.
            for call in ["connect", "bind", "listen", "sendmsg"] {
                assert_eq!(unconditional(&merged, call), ["SCMP_ACT_NOTIFY"], "{call}");
            }
            // They do not allow unshare, setns or ptrace at all: those stay refused by
            // their default, and no rule of ours is left for them.
            for call in ["unshare", "setns", "ptrace", "io_uring_setup"] {
                assert!(
                    !names_with(&merged, "SCMP_ACT_ERRNO").contains(&call.into()),
                    "{name}: {call}"
                );
            }
            // clone: their masked allow already excludes the namespace bits; it stays.
            let clone_allow = names_with(&merged, "SCMP_ACT_ALLOW");
            assert!(clone_allow.contains(&"clone".into()));
            assert_eq!(unconditional(&merged, "clone3"), ["SCMP_ACT_ERRNO"]);
            // socket: allowed only where our allow-list allows, by positive rules.
            assert!(unconditional(&merged, "socket").is_empty());
            assert_eq!(
                clone_allow.contains(&"socket".into()),
                name != "nosock",
                "{name}"
            );
            check_merge_semantics(&original, &merged, &p);
        }
    }

    #[test]
    fn issue_4_one_agent_per_container() {
        let p = policy(netjail_policy::builtin("deny-all").unwrap());
        let theirs = r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/other.sock",
            "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        let e = patch(&config(Some(theirs)), &p).unwrap_err();
        assert!(matches!(e, OciError::OtherAgent { .. }), "{e}");
        assert!(e.to_string().contains("/run/other.sock"), "{e}");
        // Notifications without a listener are not a valid profile.
        let theirs = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        let e = patch(&config(Some(theirs)), &p).unwrap_err();
        assert!(e.to_string().contains("need a listenerPath"), "{e}");
        // Our own listener (an object of `netjail oci seccomp` pasted in): ours replace it.
        let pasted = seccomp_object(&p, "old", LISTENER).unwrap().to_compact();
        let merged = seccomp_of(&patch(&config(Some(&pasted)), &p).unwrap().text);
        let fresh = seccomp_of(&patch(&config(None), &p).unwrap().text);
        assert_eq!(
            names_with(&merged, "SCMP_ACT_NOTIFY"),
            names_with(&fresh, "SCMP_ACT_NOTIFY")
        );
        check_merge_semantics(&Json::parse(&pasted).unwrap(), &merged, &p);
    }

    #[test]
    fn issue_4_patch_errors() {
        let p = policy(netjail_policy::builtin("deny-all").unwrap());
        let e = patch("{\n  \"ociVersion\": \"1\",\n  \"process\": {,\n}", &p).unwrap_err();
        assert_eq!(e.to_string(), "config.json:3:15: key must be a string");
        for (text, what) in [
            ("[1, 2]", "the document"),
            ("{\"linux\": 5}", "linux"),
            ("{\"process\": []}", "process"),
            ("{\"annotations\": \"x\"}", "annotations"),
        ] {
            let e = patch(text, &p).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("config.json: {what} is not a JSON object")
            );
        }
        let bad = [
            (r#"{"syscalls": []}"#, "defaultAction missing"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOWED"}"#,
                "unknown action `SCMP_ACT_ALLOWED`",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
                "syscalls[0]: names must be a non-empty array",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0]: args index must be 0 to 5",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
                "cannot be the default",
            ),
        ];
        for (theirs, message) in bad {
            let e = patch(&config(Some(theirs)), &p).unwrap_err();
            assert!(
                e.to_string().starts_with("config.json: linux.seccomp: ")
                    && e.to_string().contains(message),
                "{e}"
            );
        }
        let annotated = "{\"annotations\": {\"org.netjail.original-seccomp\": 3}}";
        let e = patch(annotated, &p).unwrap_err();
        assert!(
            e.to_string().contains("original-seccomp\": not a string"),
            "{e}"
        );
    }

    #[test]
    fn issue_4_patch_file_errors_and_writes_in_place() {
        let dir = std::env::temp_dir().join(format!("netjail-oci-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        let e = patch_file(&missing, "deny-all", LISTENER).unwrap_err();
        assert!(matches!(e, OciError::Read { .. }), "{e}");
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        let bad_policy = dir.join("bad.toml");
        std::fs::write(&bad_policy, "name = \"x\"\n[[allow]]\nconect = []\n").unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, config(None)).unwrap();
        let e = patch_file(&path, bad_policy.to_str().unwrap(), LISTENER).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3:1: unknown key `conect`; did you mean `connect`?",
                bad_policy.display()
            )
        );
        let e = patch_file(&path, "no-such-policy", LISTENER).unwrap_err();
        assert!(e.to_string().starts_with("no built-in policy"), "{e}");
        let patched = patch_file(&path, "loopback-only", LISTENER).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), patched.text);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
