//! Rules a host program gives one sandbox while it runs ([`SandboxRules`]), on top of the
//! sandbox's policy.

use std::fmt;

use crate::endpoint::{self, Endpoint};
use crate::error::PolicyErrorKind;
use crate::eval::{self, Lookup};
use crate::glob::{self, UnixPattern};
use crate::model::{Decision, Errno, Rule, Verdict};
use crate::names::NoNames;
use crate::target::{Op, Request, Target};

/// Rules added to one sandbox at run time by the program that embeds the broker: "this
/// renderer may now reach `tcp://127.0.0.1:8443`".
///
/// Entries are written as in a policy file:
///
/// - a destination, `PROTO://HOST:PORT` (`tcp`, `udp` or `any`; an address, a CIDR,
///   `loopback` or `*`; a port, a range or `*`), covers connects and datagram sends to it;
/// - a unix socket, an absolute path glob (`/run/app/*.sock`) or `@abstract-name`, covers
///   every operation on it;
/// - a local address given to [`SandboxRules::allow_bind`] or [`SandboxRules::deny_bind`]
///   covers binds.
///
/// Host names are refused: the policy's resolver serves the names the policy was loaded
/// with, and a rule added later must not wait for a lookup on the call's path. Resolve the
/// name in the host program and add its addresses.
///
/// They are checked after the policy's `[[deny]]` tables and before its `[[allow]]` tables
/// (see [`crate::Policy::evaluate_layered`]): a run-time rule can narrow or widen what the
/// policy allows, never what it denies. Within the rules, a deny entry beats an allow entry.
/// A privileged port (1-1023) is covered by a bind entry only when the entry's whole port
/// range is privileged, as in a policy (rule J8).
///
/// A served entry ([`SandboxRules::serve`]) allows the IP connects to its destination that no
/// deny entry covers, and says that the host program serves them with a socket of its own
/// (the broker asks it for one); it is checked after the deny entries and before the allow
/// entries, and covers connects only, never sends or binds.
///
/// ```
/// use netjail_policy::{Op, Proto, Request, SandboxRules, Target, Verdict};
///
/// let mut rules = SandboxRules::new();
/// rules.allow("tcp://127.0.0.1:8443")?;
/// rules.deny("tcp://127.0.0.1:8443-8444")?; // deny beats allow
/// rules.allow("/run/app/*.sock")?;
/// assert!(rules.allow("tcp://example.com:443").is_err()); // names are refused
///
/// let connect = |addr: &str| Request {
///     op: Op::Connect,
///     target: Target::Inet { proto: Proto::Tcp, addr: addr.parse().unwrap() },
/// };
/// let d = rules.decide(&connect("127.0.0.1:8443")).unwrap();
/// assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
/// assert_eq!(d.rule, "sandbox.deny.connect[0]");
/// assert!(rules.revoke("tcp://127.0.0.1:8443-8444"));
/// assert_eq!(rules.decide(&connect("127.0.0.1:8443")).unwrap().verdict, Verdict::Allow);
/// assert_eq!(rules.decide(&connect("127.0.0.1:9")), None); // no opinion: the policy decides
/// # Ok::<(), netjail_policy::RuleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRules {
    deny: Rule,
    serve: Rule,
    allow: Rule,
}

impl Default for SandboxRules {
    fn default() -> Self {
        SandboxRules::new()
    }
}

/// A run-time rule that could not be added: the entry as given and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run-time rule `{entry}`: {kind}")]
pub struct RuleError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong, as a policy file would be told.
    pub kind: PolicyErrorKind,
}

/// Which list of a table an entry goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Destination,
    Bind,
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Connect(Endpoint),
    Bind(Endpoint),
    Unix(UnixPattern),
}

fn empty_rule() -> Rule {
    Rule {
        connect: Vec::new(),
        send: Vec::new(),
        bind: Vec::new(),
        unix: Vec::new(),
        errno: Errno::Eperm,
    }
}

fn parse_entry(text: &str, kind: Kind) -> Result<Entry, RuleError> {
    let fail = |kind| RuleError {
        entry: text.to_owned(),
        kind,
    };
    if kind == Kind::Destination && (text.starts_with('/') || text.starts_with('@')) {
        return glob::parse(text).map(Entry::Unix).map_err(fail);
    }
    if kind == Kind::Destination {
        let e = endpoint::parse(text).map_err(fail)?;
        if e.host_pattern().is_some() {
            return Err(fail(PolicyErrorKind::NameInRuntimeRule(text.to_owned())));
        }
        return Ok(Entry::Connect(e));
    }
    endpoint::parse_bind(text).map(Entry::Bind).map_err(fail)
}

fn add(rule: &mut Rule, entry: Entry) {
    match entry {
        Entry::Connect(e) if !rule.connect.contains(&e) => rule.connect.push(e),
        Entry::Bind(e) if !rule.bind.contains(&e) => rule.bind.push(e),
        Entry::Unix(u) if !rule.unix.contains(&u) => rule.unix.push(u),
        _ => {}
    }
}

fn remove(rule: &mut Rule, entry: &Entry) -> bool {
    let before = rule.connect.len() + rule.bind.len() + rule.unix.len();
    match entry {
        Entry::Connect(e) => rule.connect.retain(|x| x != e),
        Entry::Bind(e) => rule.bind.retain(|x| x != e),
        Entry::Unix(u) => rule.unix.retain(|x| x != u),
    }
    before != rule.connect.len() + rule.bind.len() + rule.unix.len()
}

impl SandboxRules {
    /// No rules: [`SandboxRules::decide`] has no opinion on anything.
    pub fn new() -> SandboxRules {
        SandboxRules {
            deny: empty_rule(),
            serve: empty_rule(),
            allow: empty_rule(),
        }
    }

    /// Allows connects and sends to a destination, or every operation on a unix socket.
    /// Adding an entry that is already there changes nothing.
    pub fn allow(&mut self, entry: &str) -> Result<(), RuleError> {
        add(&mut self.allow, parse_entry(entry, Kind::Destination)?);
        Ok(())
    }

    /// Denies (with `EPERM`) connects and sends to a destination, or every operation on a
    /// unix socket, even where a run-time allow entry covers it.
    pub fn deny(&mut self, entry: &str) -> Result<(), RuleError> {
        add(&mut self.deny, parse_entry(entry, Kind::Destination)?);
        Ok(())
    }

    /// Allows the IP connects to a destination (`tcp://127.0.0.1:5432`) that no deny entry
    /// covers, served by the host program with a socket of its own; returns the entry in
    /// canonical form, as [`SandboxRules::entries`] and [`SandboxRules::serving`] give it. A
    /// unix socket is refused ([`PolicyErrorKind::UnixInServeRule`]).
    pub fn serve(&mut self, entry: &str) -> Result<String, RuleError> {
        match parse_entry(entry, Kind::Destination)? {
            Entry::Connect(e) => {
                let canonical = e.to_string();
                add(&mut self.serve, Entry::Connect(e));
                Ok(canonical)
            }
            _ => Err(RuleError {
                entry: entry.to_owned(),
                kind: PolicyErrorKind::UnixInServeRule(entry.to_owned()),
            }),
        }
    }

    /// The served entry (canonical) that covers `request`, an IP connect in canonical form,
    /// if one does: what the host program is asked to serve.
    pub fn serving(&self, request: &Request) -> Option<String> {
        let (Op::Connect, Target::Inet { proto, addr }) = (request.op, &request.target) else {
            return None;
        };
        self.serve
            .connect
            .iter()
            .find(|e| e.matches(*proto, *addr))
            .map(ToString::to_string)
    }

    /// Allows binds to a local address (`tcp://127.0.0.1:8080`, `udp://*:5353`).
    pub fn allow_bind(&mut self, entry: &str) -> Result<(), RuleError> {
        add(&mut self.allow, parse_entry(entry, Kind::Bind)?);
        Ok(())
    }

    /// Denies binds to a local address.
    pub fn deny_bind(&mut self, entry: &str) -> Result<(), RuleError> {
        add(&mut self.deny, parse_entry(entry, Kind::Bind)?);
        Ok(())
    }

    /// Removes a destination or unix entry (as [`SandboxRules::allow`] and
    /// [`SandboxRules::deny`] take it) from both lists; `true` if there was one. Entries are
    /// compared as parsed, so `tcp://[::ffff:127.0.0.1]:80` removes `tcp://127.0.0.1:80`.
    /// An entry that does not parse removes nothing.
    pub fn revoke(&mut self, entry: &str) -> bool {
        self.revoke_kind(entry, Kind::Destination)
    }

    /// Removes a bind entry from both lists; `true` if there was one.
    pub fn revoke_bind(&mut self, entry: &str) -> bool {
        self.revoke_kind(entry, Kind::Bind)
    }

    fn revoke_kind(&mut self, entry: &str, kind: Kind) -> bool {
        let Ok(entry) = parse_entry(entry, kind) else {
            return false;
        };
        let a = remove(&mut self.allow, &entry);
        let d = remove(&mut self.deny, &entry);
        let s = remove(&mut self.serve, &entry);
        a || d || s
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        *self = SandboxRules::new();
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        let empty = |r: &Rule| r.connect.is_empty() && r.bind.is_empty() && r.unix.is_empty();
        empty(&self.allow) && empty(&self.deny) && empty(&self.serve)
    }

    /// The rules in canonical form, deny entries first: `deny connect tcp://127.0.0.1:9`,
    /// `allow unix /run/app/*.sock`, `allow bind udp://*:5353`.
    pub fn entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, rule) in [
            ("deny", &self.deny),
            ("serve", &self.serve),
            ("allow", &self.allow),
        ] {
            out.extend(rule.connect.iter().map(|e| format!("{name} connect {e}")));
            out.extend(rule.unix.iter().map(|u| format!("{name} unix {u}")));
            out.extend(rule.bind.iter().map(|e| format!("{name} bind {e}")));
        }
        out
    }

    /// What the rules say about a request: `Some` decision when an entry covers it (deny
    /// entries first; the rule is reported as `sandbox.deny.connect[0]`,
    /// `sandbox.allow.unix[1]`, ...), `None` when none does. The request is canonicalised
    /// first, as [`crate::Policy::evaluate`] does.
    pub fn decide(&self, request: &Request) -> Option<Decision> {
        let canonical = eval::canonical_request(request);
        self.decide_canonical(&canonical)
    }

    /// As [`SandboxRules::decide`], for a request already in canonical form.
    pub(crate) fn decide_canonical(&self, request: &Request) -> Option<Decision> {
        if self.is_empty() {
            return None;
        }
        if matches!(request.target, Target::Unspec | Target::OtherFamily(_)) {
            return None;
        }
        let lookup = Lookup {
            names: &NoNames,
            fail_closed: true,
        };
        // Conservative: a privileged port needs an entry naming privileged ports only,
        // whatever capabilities the sandbox keeps.
        let privileged = match (&request.target, request.op) {
            (Target::Inet { addr, .. }, Op::Bind) => {
                addr.port() != 0 && addr.port() < endpoint::FIRST_UNPRIVILEGED_PORT
            }
            _ => false,
        };
        let tables = [
            (
                "deny",
                &self.deny,
                Verdict::Deny { errno: libc::EPERM },
                true,
            ),
            ("serve", &self.serve, Verdict::Allow, false),
            ("allow", &self.allow, Verdict::Allow, false),
        ];
        for (name, rule, verdict, deny) in tables {
            if name == "serve" && self.serving(request).is_none() {
                continue;
            }
            if let Some((entry, host)) =
                eval::rule_match(rule, request.op, &request.target, privileged, &lookup, deny)
            {
                return Some(Decision {
                    verdict,
                    rule: format!("sandbox.{name}.{entry}"),
                    host,
                });
            }
        }
        None
    }
}

impl fmt::Display for SandboxRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries();
        if entries.is_empty() {
            return f.write_str("(no run-time rules)");
        }
        f.write_str(&entries.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Proto;
    use std::path::PathBuf;

    fn inet(op: Op, proto: Proto, addr: &str) -> Request {
        Request {
            op,
            target: Target::Inet {
                proto,
                addr: addr.parse().unwrap(),
            },
        }
    }

    #[test]
    fn empty_rules_have_no_opinion() {
        let rules = SandboxRules::new();
        assert!(rules.is_empty());
        assert_eq!(
            rules.decide(&inet(Op::Connect, Proto::Tcp, "127.0.0.1:80")),
            None
        );
        assert_eq!(rules.to_string(), "(no run-time rules)");
    }

    #[test]
    fn allow_covers_connect_and_udp_send_only_to_its_destination() {
        let mut rules = SandboxRules::new();
        rules.allow("udp://127.0.0.53:53").unwrap();
        rules.allow("tcp://127.0.0.1:8080").unwrap();
        let d = rules
            .decide(&inet(Op::Send, Proto::Udp, "127.0.0.53:53"))
            .unwrap();
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.rule, "sandbox.allow.connect[0]");
        let d = rules
            .decide(&inet(Op::Connect, Proto::Tcp, "[::ffff:127.0.0.1]:8080"))
            .unwrap();
        assert_eq!(d.rule, "sandbox.allow.connect[1]");
        assert_eq!(
            rules.decide(&inet(Op::Connect, Proto::Tcp, "127.0.0.1:8081")),
            None
        );
        // A destination entry does not grant a bind.
        assert_eq!(
            rules.decide(&inet(Op::Bind, Proto::Tcp, "127.0.0.1:8080")),
            None
        );
    }

    #[test]
    fn deny_beats_allow_and_revoke_removes_from_both_lists() {
        let mut rules = SandboxRules::new();
        rules.allow("tcp://127.0.0.0/8:*").unwrap();
        rules.deny("tcp://127.0.0.1:22").unwrap();
        let d = rules
            .decide(&inet(Op::Connect, Proto::Tcp, "127.0.0.1:22"))
            .unwrap();
        assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
        assert_eq!(d.rule, "sandbox.deny.connect[0]");
        assert!(rules.revoke("tcp://127.0.0.1:22"));
        assert!(!rules.revoke("tcp://127.0.0.1:22"));
        assert!(!rules.revoke("not an entry"));
        assert_eq!(
            rules
                .decide(&inet(Op::Connect, Proto::Tcp, "127.0.0.1:22"))
                .unwrap()
                .verdict,
            Verdict::Allow
        );
        rules.clear();
        assert!(rules.is_empty());
    }

    #[test]
    fn served_entries_cover_ip_connects_only_after_the_deny_entries() {
        let mut rules = SandboxRules::new();
        assert_eq!(
            rules.serve("tcp://[::ffff:127.0.0.1]:5432").unwrap(),
            "tcp://127.0.0.1:5432"
        );
        rules.allow("tcp://127.0.0.1:*").unwrap();
        let connect = inet(Op::Connect, Proto::Tcp, "127.0.0.1:5432");
        let d = rules.decide(&connect).unwrap();
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Allow, "sandbox.serve.connect[0]")
        );
        assert_eq!(
            rules.serving(&connect).as_deref(),
            Some("tcp://127.0.0.1:5432")
        );
        // A send to it, or a connect elsewhere, is the allow entry's, not served.
        let send = inet(Op::Send, Proto::Udp, "127.0.0.1:5432");
        assert_eq!(rules.serving(&send), None);
        let other = inet(Op::Connect, Proto::Tcp, "127.0.0.1:5433");
        assert_eq!(
            rules.decide(&other).unwrap().rule,
            "sandbox.allow.connect[0]"
        );
        // A deny entry comes first.
        rules.deny("tcp://127.0.0.1:5432").unwrap();
        assert_eq!(
            rules.decide(&connect).unwrap().verdict,
            Verdict::Deny { errno: libc::EPERM }
        );
        assert_eq!(
            rules.entries(),
            vec![
                "deny connect tcp://127.0.0.1:5432",
                "serve connect tcp://127.0.0.1:5432",
                "allow connect tcp://127.0.0.1:*"
            ]
        );
        assert!(rules.revoke("tcp://127.0.0.1:5432"));
        assert_eq!(rules.serving(&connect), None);
        let e = rules.serve("/run/app.sock").unwrap_err();
        assert!(matches!(e.kind, PolicyErrorKind::UnixInServeRule(_)), "{e}");
    }

    #[test]
    fn adding_twice_keeps_one_entry() {
        let mut rules = SandboxRules::new();
        rules.allow("tcp://127.0.0.1:80").unwrap();
        rules.allow("tcp://[::ffff:127.0.0.1]:80").unwrap();
        assert_eq!(rules.entries(), vec!["allow connect tcp://127.0.0.1:80"]);
    }

    #[test]
    fn unix_entries_cover_paths_and_abstract_names() {
        let mut rules = SandboxRules::new();
        rules.allow("/run/app/*.sock").unwrap();
        rules.deny("@private").unwrap();
        let path = Request {
            op: Op::Connect,
            target: Target::UnixPath(PathBuf::from("/run/app/x.sock")),
        };
        assert_eq!(rules.decide(&path).unwrap().rule, "sandbox.allow.unix[0]");
        let abs = Request {
            op: Op::Bind,
            target: Target::UnixAbstract(b"private".to_vec()),
        };
        assert_eq!(
            rules.decide(&abs).unwrap().verdict,
            Verdict::Deny { errno: libc::EPERM }
        );
        assert_eq!(
            rules.entries(),
            vec!["deny unix @private", "allow unix /run/app/*.sock"]
        );
    }

    #[test]
    fn bind_entries_and_privileged_ports() {
        let mut rules = SandboxRules::new();
        rules.allow_bind("tcp://127.0.0.1:*").unwrap();
        let d = rules
            .decide(&inet(Op::Bind, Proto::Tcp, "127.0.0.1:8080"))
            .unwrap();
        assert_eq!(d.rule, "sandbox.allow.bind[0]");
        // `*` never grants a privileged port (rule J8).
        assert_eq!(
            rules.decide(&inet(Op::Bind, Proto::Tcp, "127.0.0.1:80")),
            None
        );
        rules.allow_bind("tcp://127.0.0.1:80").unwrap();
        assert_eq!(
            rules
                .decide(&inet(Op::Bind, Proto::Tcp, "127.0.0.1:80"))
                .unwrap()
                .rule,
            "sandbox.allow.bind[1]"
        );
        assert!(rules.revoke_bind("tcp://127.0.0.1:80"));
        assert_eq!(
            rules.decide(&inet(Op::Bind, Proto::Tcp, "127.0.0.1:80")),
            None
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_and_the_reason() {
        let mut rules = SandboxRules::new();
        let e = rules.allow("tcp://example.com:443").unwrap_err();
        assert_eq!(e.entry, "tcp://example.com:443");
        assert!(e.to_string().contains("host name"), "{e}");
        let e = rules.allow("tcp://127.0.0.1:99999").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("run-time rule `tcp://127.0.0.1:99999`: "),
            "{e}"
        );
        assert!(rules.allow("relative/path").is_err());
        assert!(rules.allow("/run/../etc").is_err());
        assert!(rules.allow_bind("tcp://example.com:80").is_err());
        assert!(rules.is_empty());
    }
}
