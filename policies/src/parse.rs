//! From TOML text to a validated [`Policy`], with line/column errors.

use std::ops::Range;

use toml::Spanned;

use crate::bridge::{self, Bridge, BRIDGE_KEYS};
use crate::confine::{self, Confinement, IoctlMode, LandlockMode};
use crate::duration::parse_duration;
use crate::endpoint;
use crate::error::{suggest, PolicyError, PolicyErrorKind};
use crate::glob;
use crate::limits::Limits;
use crate::model::{Action, Errno, Policy, Rule, Verdict, DEFAULT_ASK_TIMEOUT};
use crate::sockets;
use crate::value::{line_col, Entries, Key, Source, Value};

/// Top-level keys of this slice of the format.
const TOP_KEYS: &[&str] = &[
    "name",
    "default",
    "sockets",
    "allow",
    "deny",
    "ask",
    "ask_timeout",
    "ask_fallback",
    "jail_address",
    "keep_capabilities",
    "ioctl",
    "namespaces",
    "scm_rights",
    "fcntl_setown",
    "source_cmsgs",
    "landlock",
    "allow_unsafe_sockopts",
    "limits",
    "bridge",
    "extends",
];
/// Keys of `[[allow]]` and `[[ask]]` tables.
const ALLOW_KEYS: &[&str] = &["connect", "send", "bind", "unix"];
const DENY_KEYS: &[&str] = &["connect", "send", "bind", "unix", "errno"];
/// Keys of `[sockets]`: `allow`, the `socket()` allow-list, and `refuse`, the errno of a
/// family it does not name.
const SOCKETS_KEYS: &[&str] = &["allow", "refuse"];

/// Where an entry or key was written: a file (or `builtin:NAME`, or `--set`) and a 1-based
/// line and character column, as in [`PolicyError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) origin: String,
    pub(crate) line: usize,
    pub(crate) col: usize,
}

impl Pos {
    fn at(src: &Source<'_>, span: &Range<usize>) -> Pos {
        let (line, col) = line_col(src.text, span.start);
        Pos {
            origin: src.origin.to_owned(),
            line,
            col,
        }
    }

    pub(crate) fn error(&self, kind: PolicyErrorKind) -> PolicyError {
        PolicyError {
            origin: self.origin.clone(),
            line: self.line,
            col: self.col,
            at: None,
            kind,
        }
    }
}

/// Where each entry of one rule table was written, in the order of the table's lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TablePos {
    pub(crate) connect: Vec<Pos>,
    pub(crate) send: Vec<Pos>,
    pub(crate) bind: Vec<Pos>,
    pub(crate) unix: Vec<Pos>,
}

/// Where the entries of a resolved policy were written: per table kind (deny, allow, ask),
/// per table, per key, in the order of the resolved policy; and the `[bridge]` entries (its
/// `connect` and `bind` lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    pub(crate) tables: [Vec<TablePos>; 3],
    pub(crate) bridge: TablePos,
}

/// The `extends` key of one file.
#[derive(Debug, Clone)]
pub(crate) struct Extends {
    /// The parent, as written.
    pub(crate) name: String,
    /// The `extends` key.
    pub(crate) key: Pos,
    /// Its value.
    pub(crate) value: Pos,
}

/// One policy file (or `--set` parameter) as written, before composition: `policy` holds
/// what it says, with the defaults for what it does not, and `set` which top-level keys it
/// gave (so that a child overrides only those of its parent).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) policy: Policy,
    /// The top-level keys given, by name (`sockets.allow`, `sockets.refuse` and
    /// `limits.KEY` for the keys of those tables, which override one by one; `bridge` for
    /// the whole `[bridge]` table; never the rule tables, which are concatenated).
    pub(crate) set: Vec<&'static str>,
    pub(crate) name_given: bool,
    pub(crate) extends: Option<Extends>,
    /// The `source_cmsgs` key, when given: checked against the composed jail address.
    pub(crate) source_cmsgs_at: Option<Pos>,
    /// The `allow_unsafe_sockopts` key, when given: checked against the composed jail address.
    pub(crate) unsafe_sockopts_at: Option<Pos>,
    /// Whether a `jail_address` key was given (even an empty list).
    pub(crate) jail_given: bool,
    pub(crate) deny_pos: Vec<TablePos>,
    pub(crate) allow_pos: Vec<TablePos>,
    pub(crate) ask_pos: Vec<TablePos>,
    /// Where the `[bridge]` entries were written.
    pub(crate) bridge_pos: TablePos,
}

impl Layer {
    /// `self` over `parent`: the keys `self` gives replace the parent's (`[bridge]` as a
    /// whole, its namespace and both lists together); rule tables are the parent's followed
    /// by `self`'s; the name is `self`'s.
    pub(crate) fn over(self, parent: Layer) -> Layer {
        let mut out = parent;
        let child = self.policy;
        let c = &mut out.policy;
        for key in &self.set {
            match *key {
                "name" => c.name.clone_from(&child.name),
                "default" => c.default = child.default,
                "sockets.allow" => c.sockets.clone_from(&child.sockets),
                "sockets.refuse" => c.sockets_refuse = child.sockets_refuse,
                "ask_timeout" => c.ask_timeout = child.ask_timeout,
                "ask_fallback" => c.ask_fallback = child.ask_fallback,
                "jail_address" => {
                    c.confine.jail_v4 = child.confine.jail_v4;
                    c.confine.jail_v6 = child.confine.jail_v6;
                }
                "keep_capabilities" => c
                    .confine
                    .keep_capabilities
                    .clone_from(&child.confine.keep_capabilities),
                "ioctl" => c.confine.ioctl = child.confine.ioctl,
                "namespaces" => c.confine.namespaces = child.confine.namespaces,
                "scm_rights" => c.confine.scm_rights = child.confine.scm_rights,
                "fcntl_setown" => c.confine.fcntl_setown = child.confine.fcntl_setown,
                "source_cmsgs" => c.confine.source_cmsgs = child.confine.source_cmsgs,
                "landlock" => c.confine.landlock = child.confine.landlock,
                "bridge" => c.bridge.clone_from(&child.bridge),
                "allow_unsafe_sockopts" => c
                    .confine
                    .allow_unsafe_sockopts
                    .clone_from(&child.confine.allow_unsafe_sockopts),
                key => {
                    if let Some(name) = key.strip_prefix("limits.") {
                        if let (Some(to), Some(from)) =
                            (c.limits.slot(name), child.limits.get(name))
                        {
                            *to = from;
                        }
                    }
                }
            }
            if !out.set.contains(key) {
                out.set.push(key);
            }
        }
        if self.set.contains(&"bridge") {
            out.bridge_pos = self.bridge_pos;
        }
        c.deny.extend(child.deny);
        c.allow.extend(child.allow);
        c.ask.extend(child.ask);
        out.deny_pos.extend(self.deny_pos);
        out.allow_pos.extend(self.allow_pos);
        out.ask_pos.extend(self.ask_pos);
        // Whether the child named itself (a parent's name never stands for it).
        out.name_given = self.name_given;
        out.jail_given |= self.jail_given;
        if self.unsafe_sockopts_at.is_some() {
            out.unsafe_sockopts_at = self.unsafe_sockopts_at;
        }
        if self.source_cmsgs_at.is_some() {
            out.source_cmsgs_at = self.source_cmsgs_at;
        }
        out.extends = None;
        out
    }

    /// The checks that need the whole policy, once every layer is in.
    pub(crate) fn finish(self) -> Result<(Policy, Positions), PolicyError> {
        if let Some(at) = &self.unsafe_sockopts_at {
            check_unsafe_sockopts(&self.policy.confine, self.jail_given)
                .map_err(|k| at.error(k))?;
        }
        if let Some(at) = &self.source_cmsgs_at {
            check_source_cmsgs(&self.policy.confine, self.jail_given).map_err(|k| at.error(k))?;
        }
        let pos = Positions {
            tables: [self.deny_pos, self.allow_pos, self.ask_pos],
            bridge: self.bridge_pos,
        };
        Ok((self.policy, pos))
    }
}

/// Reads one file: every key checked, `extends` kept for the caller to resolve. `name` is
/// not required here (a parent may leave it out; see `crate::compose`).
pub(crate) fn parse_layer(src: &Source<'_>) -> Result<Layer, PolicyError> {
    let doc = src.read()?;
    let doc_span = doc.span();
    let Value::Table(entries) = doc.into_inner() else {
        let kind = PolicyErrorKind::Syntax("a policy must be a table".to_owned());
        return Err(src.error(doc_span, kind));
    };
    let src = *src;
    let mut layer = Layer::empty();
    for (key, value) in entries {
        let given = match layer.policy_key(&src, &key, value)? {
            Keyed::Given(name) => name,
            Keyed::Merged => continue,
            Keyed::Other(value) => layer.confine_key(&src, &key, value)?,
        };
        layer.set.push(given);
    }
    Ok(layer)
}

/// What a top-level key did to a [`Layer`].
enum Keyed {
    /// A key that overrides its parent's as a whole, by this name.
    Given(&'static str),
    /// A key merged into [`Layer::set`] by parts, or kept apart (`extends`, the rule tables).
    Merged,
    /// Not a key of the policy's own: the value back, for the confinement's keys.
    Other(Spanned<Value>),
}

impl Layer {
    /// A layer that gives nothing: the defaults of every key.
    fn empty() -> Layer {
        Layer {
            policy: Policy {
                name: String::new(),
                default: Action::Deny, // rule N4
                sockets: sockets::default_list(),
                sockets_refuse: sockets::DEFAULT_REFUSE,
                deny: Vec::new(),
                allow: Vec::new(),
                ask: Vec::new(),
                ask_timeout: DEFAULT_ASK_TIMEOUT,
                ask_fallback: Verdict::Deny { errno: libc::EPERM },
                confine: Confinement::default(),
                limits: Limits::default(),
                bridge: None,
            },
            set: Vec::new(),
            name_given: false,
            extends: None,
            source_cmsgs_at: None,
            unsafe_sockopts_at: None,
            jail_given: false,
            deny_pos: Vec::new(),
            allow_pos: Vec::new(),
            ask_pos: Vec::new(),
            bridge_pos: TablePos::default(),
        }
    }

    /// The keys of the policy itself: its name, parent, default, socket list, rule tables and
    /// what a held call waits for.
    fn policy_key(
        &mut self,
        src: &Source<'_>,
        key: &Key,
        value: Spanned<Value>,
    ) -> Result<Keyed, PolicyError> {
        let p = &mut self.policy;
        let given = match key.get_ref().as_str() {
            "name" => {
                let (s, span) = string(src, "name", value)?;
                check_name(&s).map_err(|k| src.error(span, k))?;
                p.name = s;
                self.name_given = true;
                "name"
            }
            "extends" => {
                let key_pos = Pos::at(src, &key.span());
                let (s, span) = string(src, "extends", value)?;
                self.extends = Some(Extends {
                    name: s,
                    key: key_pos,
                    value: Pos::at(src, &span),
                });
                return Ok(Keyed::Merged);
            }
            "default" => {
                let (s, span) = string(src, "default", value)?;
                p.default = match s.as_str() {
                    "deny" => Action::Deny,
                    "allow" => Action::Allow,
                    "ask" => Action::Ask,
                    _ => return Err(src.error(span, PolicyErrorKind::UnknownDefault(s))),
                };
                "default"
            }
            "sockets" => {
                let (allow, refuse) = parse_sockets(src, value)?;
                // Each key of the table overrides its parent's on its own: a child that
                // lists more families keeps its parent's errno for the rest.
                if let Some(allow) = allow {
                    p.sockets = allow;
                    self.set.push("sockets.allow");
                }
                if let Some(refuse) = refuse {
                    p.sockets_refuse = refuse;
                    self.set.push("sockets.refuse");
                }
                return Ok(Keyed::Merged);
            }
            "bridge" => {
                (p.bridge, self.bridge_pos) = parse_bridge(src, value)?;
                // The table replaces its parent's as a whole: a child that names another
                // namespace does not inherit patterns written for its parent's.
                "bridge"
            }
            "allow" => {
                (p.allow, self.allow_pos) = parse_rules(src, "allow", value)?;
                return Ok(Keyed::Merged);
            }
            "deny" => {
                (p.deny, self.deny_pos) = parse_rules(src, "deny", value)?;
                return Ok(Keyed::Merged);
            }
            "ask" => {
                (p.ask, self.ask_pos) = parse_rules(src, "ask", value)?;
                return Ok(Keyed::Merged);
            }
            "ask_timeout" => {
                if !matches!(value.get_ref(), Value::String(_)) {
                    let expected = "a duration string such as \"30s\"";
                    return Err(wrong_type(src, "ask_timeout", expected, &value));
                }
                let (s, span) = string(src, "ask_timeout", value)?;
                p.ask_timeout = parse_ask_timeout(&s).map_err(|k| src.error(span, k))?;
                "ask_timeout"
            }
            "ask_fallback" => {
                let (s, span) = string(src, "ask_fallback", value)?;
                p.ask_fallback = parse_ask_fallback(&s).map_err(|k| src.error(span, k))?;
                "ask_fallback"
            }
            _ => return Ok(Keyed::Other(value)),
        };
        Ok(Keyed::Given(given))
    }

    /// The keys of the confinement (jail address, capabilities, ioctls, Landlock, namespaces,
    /// socket options, control messages) and `[limits]`; any other key is unknown.
    fn confine_key(
        &mut self,
        src: &Source<'_>,
        key: &Key,
        value: Spanned<Value>,
    ) -> Result<&'static str, PolicyError> {
        let confine = &mut self.policy.confine;
        Ok(match key.get_ref().as_str() {
            "jail_address" => {
                self.jail_given = true;
                parse_jail(src, value, confine)?;
                "jail_address"
            }
            "keep_capabilities" => {
                for (s, span) in strings(src, "keep_capabilities", value)? {
                    keep_capability(&s, confine).map_err(|k| src.error(span, k))?;
                }
                "keep_capabilities"
            }
            "ioctl" => {
                let (s, span) = string(src, "ioctl", value)?;
                confine.ioctl = match s.as_str() {
                    "any" => IoctlMode::Any,
                    "safe-list" => IoctlMode::SafeList,
                    _ => return Err(src.error(span, PolicyErrorKind::UnknownIoctlMode(s))),
                };
                "ioctl"
            }
            "landlock" => {
                let (s, span) = string(src, "landlock", value)?;
                confine.landlock = match s.as_str() {
                    "best-effort" => LandlockMode::BestEffort,
                    "required" => LandlockMode::Required,
                    "off" => LandlockMode::Off,
                    _ => return Err(src.error(span, PolicyErrorKind::UnknownLandlockMode(s))),
                };
                "landlock"
            }
            "namespaces" => {
                for (s, span) in strings(src, "namespaces", value)? {
                    grant_namespace(&s, confine).map_err(|k| src.error(span, k))?;
                }
                "namespaces"
            }
            "allow_unsafe_sockopts" => {
                self.unsafe_sockopts_at = Some(Pos::at(src, &value.span()));
                for (s, span) in strings(src, "allow_unsafe_sockopts", value)? {
                    allow_unsafe_sockopt(&s, confine).map_err(|k| src.error(span, k))?;
                }
                "allow_unsafe_sockopts"
            }
            "scm_rights" => {
                confine.scm_rights = boolean(src, "scm_rights", value)?;
                "scm_rights"
            }
            "fcntl_setown" => {
                confine.fcntl_setown = boolean(src, "fcntl_setown", value)?;
                "fcntl_setown"
            }
            "source_cmsgs" => {
                self.source_cmsgs_at = Some(Pos::at(src, &value.span()));
                confine.source_cmsgs = boolean(src, "source_cmsgs", value)?;
                "source_cmsgs"
            }
            "limits" => {
                let (limits, given) = crate::limits::parse(src, value)?;
                self.policy.limits = limits;
                // Each key of the table overrides its parent's on its own.
                self.set.extend(given);
                "limits"
            }
            _ => return Err(unknown(src, key, TOP_KEYS)),
        })
    }
}

/// `jail_address = "127.0.0.2"` or `["127.0.0.2", "::1"]`: at most one address per family,
/// a unicast address (not the wildcard, not multicast).
fn parse_jail(
    src: &Source<'_>,
    value: Spanned<Value>,
    confine: &mut Confinement,
) -> Result<(), PolicyError> {
    let items = if matches!(value.get_ref(), Value::String(_)) {
        vec![string(src, "jail_address", value)?]
    } else {
        strings(src, "jail_address", value)?
    };
    for (s, span) in items {
        add_jail_address(&s, confine).map_err(|k| src.error(span, k))?;
    }
    Ok(())
}

// ---- one key or entry, from its text -------------------------------------------------------
//
// What the parser checks of one value, apart from its TOML type and position: the same
// functions validate a policy built in code (`crate::builder`), so both accept exactly the
// same values and refuse the rest with the same error kinds.

/// `name`: any string but the empty one.
pub(crate) fn check_name(name: &str) -> Result<(), PolicyErrorKind> {
    if name.is_empty() {
        return Err(PolicyErrorKind::EmptyName);
    }
    Ok(())
}

/// `ask_timeout`: a duration as [`parse_duration`] reads it.
pub(crate) fn parse_ask_timeout(text: &str) -> Result<std::time::Duration, PolicyErrorKind> {
    parse_duration(text).map_err(|message| PolicyErrorKind::BadDuration {
        key: "ask_timeout",
        message,
    })
}

/// `ask_fallback`: `deny` or `allow`.
pub(crate) fn parse_ask_fallback(text: &str) -> Result<Verdict, PolicyErrorKind> {
    match text {
        "deny" => Ok(Verdict::Deny { errno: libc::EPERM }),
        "allow" => Ok(Verdict::Allow),
        _ => Err(PolicyErrorKind::UnknownAskFallback(text.to_owned())),
    }
}

/// One `jail_address` entry: a unicast address, at most one per family (an IPv4-mapped IPv6
/// address is IPv4).
pub(crate) fn add_jail_address(
    text: &str,
    confine: &mut Confinement,
) -> Result<(), PolicyErrorKind> {
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<std::net::IpAddr>() else {
        return Err(PolicyErrorKind::BadJailAddress(text.to_owned()));
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(PolicyErrorKind::BadJailAddress(text.to_owned()));
    }
    let taken = match ip {
        std::net::IpAddr::V4(v4) => confine.jail_v4.replace(v4).is_some(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => confine.jail_v4.replace(v4).is_some(),
            None => confine.jail_v6.replace(v6).is_some(),
        },
    };
    if taken {
        return Err(PolicyErrorKind::TwoJailAddresses(text.to_owned()));
    }
    Ok(())
}

/// One `keep_capabilities` entry; a capability named twice is kept once.
pub(crate) fn keep_capability(
    text: &str,
    confine: &mut Confinement,
) -> Result<(), PolicyErrorKind> {
    let Some(cap) = confine::capability(text) else {
        return Err(PolicyErrorKind::UnknownCapability(text.to_owned()));
    };
    if !confine.keep_capabilities.contains(&cap) {
        confine.keep_capabilities.push(cap);
    }
    Ok(())
}

/// One `allow_unsafe_sockopts` entry: a name of [`confine::UNSAFE_SOCKOPTS`]; a name given
/// twice is kept once.
pub(crate) fn allow_unsafe_sockopt(
    text: &str,
    confine: &mut Confinement,
) -> Result<(), PolicyErrorKind> {
    let Some(name) = confine::unsafe_sockopt(text) else {
        let known: Vec<&'static str> = confine::UNSAFE_SOCKOPTS.iter().map(|(n, _)| *n).collect();
        return Err(PolicyErrorKind::UnknownUnsafeSockopt {
            found: text.to_owned(),
            suggestion: suggest(text, &known),
        });
    };
    if !confine.allow_unsafe_sockopts.contains(&name) {
        confine.allow_unsafe_sockopts.push(name);
    }
    Ok(())
}

/// One `namespaces` entry: `net`, `user` or `mount`.
pub(crate) fn grant_namespace(
    text: &str,
    confine: &mut Confinement,
) -> Result<(), PolicyErrorKind> {
    match text {
        "net" => confine.namespaces.net = true,
        "user" => confine.namespaces.user = true,
        "mount" => confine.namespaces.mount = true,
        _ => return Err(PolicyErrorKind::UnknownNamespace(text.to_owned())),
    }
    Ok(())
}

/// `source_cmsgs = true` is refused when the policy has a `jail_address` key (even an empty
/// list of them).
pub(crate) fn check_source_cmsgs(
    confine: &Confinement,
    jail_given: bool,
) -> Result<(), PolicyErrorKind> {
    if confine.source_cmsgs && jail_given {
        return Err(PolicyErrorKind::SourceCmsgsWithJail);
    }
    Ok(())
}

/// `allow_unsafe_sockopts` naming an option that chooses the source address
/// ([`confine::SOURCE_SOCKOPTS`]) is refused when the policy has a `jail_address` key, as
/// `source_cmsgs` is.
pub(crate) fn check_unsafe_sockopts(
    confine: &Confinement,
    jail_given: bool,
) -> Result<(), PolicyErrorKind> {
    if !jail_given {
        return Ok(());
    }
    match confine
        .allow_unsafe_sockopts
        .iter()
        .find(|n| confine::SOURCE_SOCKOPTS.contains(n))
    {
        Some(name) => Err(PolicyErrorKind::UnsafeSockoptWithJail(name)),
        None => Ok(()),
    }
}

/// The `errno` of a `[[deny]]` table.
pub(crate) fn parse_errno(text: &str) -> Result<Errno, PolicyErrorKind> {
    Errno::from_name(text).ok_or_else(|| PolicyErrorKind::UnknownErrno(text.to_owned()))
}

/// A rule table with no entries yet, and `errno = "EPERM"`.
pub(crate) fn empty_rule() -> Rule {
    Rule {
        connect: Vec::new(),
        send: Vec::new(),
        bind: Vec::new(),
        unix: Vec::new(),
        errno: Errno::Eperm,
    }
}

/// A rule table needs at least one entry.
pub(crate) fn check_rule(rule: &Rule, table_name: &'static str) -> Result<(), PolicyErrorKind> {
    if rule.connect.is_empty()
        && rule.send.is_empty()
        && rule.bind.is_empty()
        && rule.unix.is_empty()
    {
        return Err(PolicyErrorKind::EmptyRule(table_name));
    }
    Ok(())
}

fn boolean(src: &Source<'_>, key: &str, value: Spanned<Value>) -> Result<bool, PolicyError> {
    match value.get_ref() {
        Value::Boolean(b) => Ok(*b),
        _ => Err(wrong_type(src, key, "true or false", &value)),
    }
}

/// The error for a key that is not taken here, with the nearest known key as a hint.
fn unknown(src: &Source<'_>, key: &Key, known: &[&'static str]) -> PolicyError {
    let kind = PolicyErrorKind::UnknownKey {
        key: key.get_ref().clone(),
        suggestion: suggest(key.get_ref(), known),
    };
    src.error(key.span(), kind)
}

fn wrong_type(
    src: &Source<'_>,
    key: &str,
    expected: &'static str,
    value: &Spanned<Value>,
) -> PolicyError {
    let kind = PolicyErrorKind::WrongType {
        key: key.to_owned(),
        expected,
        found: value.get_ref().type_name(),
    };
    src.error(value.span(), kind)
}

fn string(
    src: &Source<'_>,
    key: &str,
    value: Spanned<Value>,
) -> Result<(String, Range<usize>), PolicyError> {
    let span = value.span();
    match value.into_inner() {
        Value::String(s) => Ok((s, span)),
        other => Err(wrong_type(src, key, "a string", &Spanned::new(span, other))),
    }
}

/// An array of strings, each with its own span.
fn strings(
    src: &Source<'_>,
    key: &str,
    value: Spanned<Value>,
) -> Result<Vec<(String, Range<usize>)>, PolicyError> {
    let span = value.span();
    let Value::Array(items) = value.into_inner() else {
        return Err(src.error(
            span.clone(),
            PolicyErrorKind::WrongType {
                key: key.to_owned(),
                expected: "an array of strings",
                found: "a single value; put it in [ ]",
            },
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| string(src, &format!("{key}[{i}]"), item))
        .collect()
}

fn table(
    src: &Source<'_>,
    key: &str,
    expected: &'static str,
    value: Spanned<Value>,
) -> Result<(Entries, Range<usize>), PolicyError> {
    let span = value.span();
    match value.into_inner() {
        Value::Table(entries) => Ok((entries, span)),
        other => Err(wrong_type(src, key, expected, &Spanned::new(span, other))),
    }
}

/// The `[sockets]` table: its `allow` list and its `refuse` errno, each `None` when not
/// given. A table with neither key is an error (it says nothing, and the list is what one
/// forgets).
fn parse_sockets(
    src: &Source<'_>,
    value: Spanned<Value>,
) -> Result<(Option<Vec<sockets::SocketRule>>, Option<i32>), PolicyError> {
    let (entries, span) = table(src, "sockets", "a table ([sockets])", value)?;
    let mut list = None;
    let mut refuse = None;
    for (key, value) in entries {
        match key.get_ref().as_str() {
            "allow" => {
                let mut rules = Vec::new();
                for (s, span) in strings(src, "allow", value)? {
                    rules.push(sockets::parse(&s).map_err(|k| src.error(span, k))?);
                }
                list = Some(rules);
            }
            "refuse" => {
                let (s, span) = string(src, "sockets.refuse", value)?;
                refuse = Some(sockets::parse_refuse(&s).map_err(|k| src.error(span, k))?);
            }
            _ => return Err(unknown(src, &key, SOCKETS_KEYS)),
        }
    }
    if list.is_none() && refuse.is_none() {
        return Err(src.error(span, PolicyErrorKind::MissingKey("sockets.allow")));
    }
    Ok((list, refuse))
}

/// The `[bridge]` table: `netns` (required), `connect` and `bind` (each optional, TCP and
/// UDP endpoints only).
fn parse_bridge(
    src: &Source<'_>,
    value: Spanned<Value>,
) -> Result<(Option<Bridge>, TablePos), PolicyError> {
    let (entries, span) = table(src, "bridge", "a table ([bridge])", value)?;
    let mut netns = None;
    let mut connect = Vec::new();
    let mut bind = Vec::new();
    let mut pos = TablePos::default();
    for (key, value) in entries {
        match key.get_ref().as_str() {
            "netns" => {
                let (s, span) = string(src, "bridge.netns", value)?;
                netns = Some(bridge::parse_netns(&s).map_err(|k| src.error(span, k))?);
            }
            "connect" => {
                for (s, span) in strings(src, "bridge.connect", value)? {
                    connect
                        .push(bridge::parse_connect(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.connect.push(Pos::at(src, &span));
                }
            }
            "bind" => {
                for (s, span) in strings(src, "bridge.bind", value)? {
                    bind.push(bridge::parse_bind(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.bind.push(Pos::at(src, &span));
                }
            }
            _ => return Err(unknown(src, &key, BRIDGE_KEYS)),
        }
    }
    let Some(netns) = netns else {
        return Err(src.error(span, PolicyErrorKind::MissingKey("bridge.netns")));
    };
    let mut bridge = Bridge::new(netns);
    bridge.connect = connect;
    bridge.bind = bind;
    Ok((Some(bridge), pos))
}

fn parse_rules(
    src: &Source<'_>,
    table_name: &'static str,
    value: Spanned<Value>,
) -> Result<(Vec<Rule>, Vec<TablePos>), PolicyError> {
    let expected = match table_name {
        "deny" => "an array of tables ([[deny]])",
        "ask" => "an array of tables ([[ask]])",
        _ => "an array of tables ([[allow]])",
    };
    let span = value.span();
    let items = match value.into_inner() {
        Value::Array(items) => items,
        other => {
            return Err(wrong_type(
                src,
                table_name,
                expected,
                &Spanned::new(span, other),
            ))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let (entries, span) = table(src, &format!("{table_name}[{i}]"), "a table", item)?;
            parse_rule(src, table_name, entries, span)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.into_iter().unzip())
}

fn parse_rule(
    src: &Source<'_>,
    table_name: &'static str,
    entries: Entries,
    span: Range<usize>,
) -> Result<(Rule, TablePos), PolicyError> {
    let is_deny = table_name == "deny";
    let mut rule = empty_rule();
    let mut pos = TablePos::default();
    for (key, value) in entries {
        match key.get_ref().as_str() {
            "connect" => {
                for (s, span) in strings(src, "connect", value)? {
                    rule.connect
                        .push(endpoint::parse(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.connect.push(Pos::at(src, &span));
                }
            }
            "send" => {
                for (s, span) in strings(src, "send", value)? {
                    rule.send
                        .push(endpoint::parse(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.send.push(Pos::at(src, &span));
                }
            }
            "bind" => {
                for (s, span) in strings(src, "bind", value)? {
                    rule.bind
                        .push(endpoint::parse_bind(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.bind.push(Pos::at(src, &span));
                }
            }
            "unix" => {
                for (s, span) in strings(src, "unix", value)? {
                    rule.unix
                        .push(glob::parse(&s).map_err(|k| src.error(span.clone(), k))?);
                    pos.unix.push(Pos::at(src, &span));
                }
            }
            "errno" if is_deny => {
                let (s, span) = string(src, "errno", value)?;
                rule.errno = parse_errno(&s).map_err(|k| src.error(span, k))?;
            }
            "errno" => return Err(src.error(key.span(), PolicyErrorKind::ErrnoOutsideDeny)),
            _ => {
                let known = if is_deny { DENY_KEYS } else { ALLOW_KEYS };
                return Err(unknown(src, &key, known));
            }
        }
    }
    check_rule(&rule, table_name).map_err(|k| src.error(span, k))?;
    Ok((rule, pos))
}
