//! `policy check`: entries that can never decide, because an entry checked before them covers
//! everything they match; and `[bridge]` patterns that can never bridge a call, because no
//! call they match can be allowed.
//!
//! "Covers" is decided conservatively: a finding is only reported when every request the
//! later entry matches is matched by the earlier one (tested as a property). Host names are
//! covered only by `*` or by the same name. "Overlaps" (some request matches both entries)
//! errs the other way: a bridge pattern is reported only when no `[[allow]]` or `[[ask]]`
//! entry shares a single request with it (also tested as a property); a host name overlaps
//! everything.

use std::fmt;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, HostMatch, ProtoMatch};
use crate::error::PolicyError;
use crate::glob::{Component, Tok, UnixPattern};
use crate::model::Action;
use crate::model::{Policy, Rule};
use crate::parse::{Pos, Positions, TablePos};

/// What is wrong with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// The same entry in a `[[deny]]` table and an `[[allow]]` or `[[ask]]` table, or in an
    /// `[[allow]]` table and an `[[ask]]` table: the first wins, the second does nothing.
    Contradiction,
    /// A wider entry checked first covers everything this one matches.
    Unreachable,
    /// A `[bridge]` pattern every call of which a `[[deny]]` entry refuses: it never
    /// bridges anything.
    BridgeDenied,
    /// A `[bridge]` pattern that no `[[allow]]` or `[[ask]]` entry shares a call with, under
    /// `default = "deny"`: the policy allows none of its calls, so it never bridges anything
    /// (unless an embedder's run-time rules allow one).
    BridgeUnallowed,
}

/// One entry of a resolved policy, where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAt {
    /// Its rule name, as decisions name it: `allow[1].connect[0]`.
    pub rule: String,
    /// The entry, canonical: `tcp://127.0.0.1:8080`.
    pub entry: String,
    /// The file (or `builtin:NAME`) it was written in.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl fmt::Display for EntryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` ({}:{}:{})",
            self.rule, self.entry, self.origin, self.line, self.col
        )
    }
}

/// An entry that can never decide a request, and the entry that decides instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Contradiction, unreachable, or a bridge pattern that never bridges.
    pub kind: FindingKind,
    /// The entry that never decides (or never bridges: `bridge.connect[0]`).
    pub entry: EntryAt,
    /// The entry checked before it that covers it; for [`FindingKind::BridgeDenied`] the
    /// `[[deny]]` entry that refuses every call of the pattern; for
    /// [`FindingKind::BridgeUnallowed`] the policy's default (`rule` `default`, `entry`
    /// `deny`, line and column 0: the default has no position of its own).
    pub by: EntryAt,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.entry;
        let table = |rule: &str| rule.split('[').next().unwrap_or("").to_owned();
        let (mine, theirs) = (table(&e.rule), table(&self.by.rule));
        write!(
            f,
            "{}:{}:{}: {} `{}` ",
            e.origin, e.line, e.col, e.rule, e.entry
        )?;
        match self.kind {
            FindingKind::Contradiction => write!(
                f,
                "is also in a [[{theirs}]] table, {}, which is checked first, so this entry does nothing; remove one of the two",
                self.by
            ),
            FindingKind::Unreachable => write!(
                f,
                "is unreachable: {} covers everything it matches and [[{theirs}]] tables are checked before [[{mine}]] tables; remove it, or narrow the entry that covers it",
                self.by
            ),
            FindingKind::BridgeDenied => write!(
                f,
                "never bridges anything: {} refuses every call it matches, and a bridge allows nothing; remove it, or narrow the [[deny]] entry",
                self.by
            ),
            FindingKind::BridgeUnallowed => f.write_str(
                "never bridges anything: no [[allow]] or [[ask]] entry allows a call it matches and the default is deny, and a bridge allows nothing (only an embedder's run-time rules could); add an [[allow]] entry for what it should bridge, or remove it",
            ),
        }
    }
}

/// Every finding of a resolved policy with the positions of its entries, `[[deny]]` over
/// `[[allow]]` and `[[ask]]` first, then `[[allow]]` over `[[ask]]`, in table order; then
/// the `[bridge]` patterns that never bridge.
pub(crate) fn findings(policy: &Policy, pos: &Positions) -> Vec<Finding> {
    let [deny_pos, allow_pos, ask_pos] = &pos.tables;
    let mut out = Vec::new();
    let later = [
        ("allow", &policy.allow, allow_pos),
        ("ask", &policy.ask, ask_pos),
    ];
    for (name, rules, rule_pos) in later {
        for (t, rule) in rules.iter().enumerate() {
            let mut earlier = vec![("deny", &policy.deny, deny_pos)];
            if name == "ask" {
                earlier.push(("allow", &policy.allow, allow_pos));
            }
            for entry in entries(name, t, rule, rule_pos.get(t)) {
                let by = earlier.iter().find_map(|(by_name, by_rules, by_pos)| {
                    by_rules.iter().enumerate().find_map(|(bt, by_rule)| {
                        entries(by_name, bt, by_rule, by_pos.get(bt))
                            .into_iter()
                            .find(|b| b.item.covers(&entry.item))
                    })
                });
                if let Some(by) = by {
                    let kind = if by.item.same(&entry.item) {
                        FindingKind::Contradiction
                    } else {
                        FindingKind::Unreachable
                    };
                    out.push(Finding {
                        kind,
                        entry: entry.at,
                        by: by.at,
                    });
                }
            }
        }
    }
    out.extend(bridge_findings(policy, pos));
    out
}

/// `[bridge]` patterns that never bridge: every call of theirs denied by one `[[deny]]`
/// entry, or (under `default = "deny"`) none shared with an `[[allow]]` or `[[ask]]` entry.
fn bridge_findings(policy: &Policy, pos: &Positions) -> Vec<Finding> {
    let Some(bridge) = &policy.bridge else {
        return Vec::new();
    };
    let [deny_pos, allow_pos, ask_pos] = &pos.tables;
    let deny = located(&policy.deny, "deny", deny_pos);
    let mut grants = located(&policy.allow, "allow", allow_pos);
    grants.extend(located(&policy.ask, "ask", ask_pos));
    let bridged = bridge
        .connect
        .iter()
        .enumerate()
        .map(|(i, e)| ("connect", i, Item::Connect(e), pos.bridge.connect.get(i)))
        .chain(
            bridge
                .bind
                .iter()
                .enumerate()
                .map(|(i, e)| ("bind", i, Item::Bind(e), pos.bridge.bind.get(i))),
        );
    let mut out = Vec::new();
    for (key, i, item, at) in bridged {
        let entry = EntryAt {
            rule: format!("bridge.{key}[{i}]"),
            entry: match item {
                Item::Connect(e) | Item::Bind(e) | Item::Send(e) => e.to_string(),
                Item::Unix(u) => u.to_string(),
            },
            origin: at.map_or_else(String::new, |p| p.origin.clone()),
            line: at.map_or(0, |p| p.line),
            col: at.map_or(0, |p| p.col),
        };
        if let Some(by) = deny.iter().find(|d| d.item.covers(&item)) {
            out.push(Finding {
                kind: FindingKind::BridgeDenied,
                entry,
                by: by.at.clone(),
            });
        } else if policy.default == Action::Deny && !grants.iter().any(|g| g.item.overlaps(&item)) {
            let by = EntryAt {
                rule: "default".to_owned(),
                entry: "deny".to_owned(),
                origin: entry.origin.clone(),
                line: 0,
                col: 0,
            };
            out.push(Finding {
                kind: FindingKind::BridgeUnallowed,
                entry,
                by,
            });
        }
    }
    out
}

/// Every entry of the tables of one kind, located.
fn located<'a>(rules: &'a [Rule], name: &str, rule_pos: &[TablePos]) -> Vec<Located<'a>> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(t, rule)| entries(name, t, rule, rule_pos.get(t)))
        .collect()
}

/// The findings of a policy given as TOML, resolved as [`Policy::from_toml_with`] does.
pub(crate) fn check<S: AsRef<str>>(
    text: &str,
    origin: &str,
    sets: &[S],
    loader: &mut crate::ParentLoader<'_>,
) -> Result<(Policy, Vec<Finding>), PolicyError> {
    let (policy, pos) = crate::compose::resolve(text, origin, sets, loader)?;
    let found = findings(&policy, &pos);
    Ok((policy, found))
}

/// One entry of a table, by key.
enum Item<'a> {
    Connect(&'a Endpoint),
    Send(&'a Endpoint),
    Bind(&'a Endpoint),
    Unix(&'a UnixPattern),
}

impl Item<'_> {
    /// Every request `other` matches, `self` matches too. A `connect` entry covers UDP
    /// sends as well, and a `send` entry UDP connects (see `eval::first_match`).
    fn covers(&self, other: &Item<'_>) -> bool {
        match (self, other) {
            (Item::Connect(a), Item::Connect(b))
            | (Item::Send(a), Item::Send(b))
            | (Item::Bind(a), Item::Bind(b))
            | (Item::Connect(a), Item::Send(b)) => endpoint_covers(a, b),
            (Item::Send(a), Item::Connect(b)) => {
                b.proto == ProtoMatch::Udp && endpoint_covers(a, b)
            }
            (Item::Unix(a), Item::Unix(b)) => unix_covers(a, b),
            _ => false,
        }
    }

    /// Some request that `other`, a `[bridge]` pattern (a `connect` one, which stands for
    /// connects and sends, or a `bind` one), matches, `self` may match too (`true` when
    /// unsure). A `connect` or `send` entry can allow a connect or send, a `bind` entry a
    /// bind.
    fn overlaps(&self, other: &Item<'_>) -> bool {
        match (self, other) {
            (Item::Connect(a) | Item::Send(a), Item::Connect(b))
            | (Item::Bind(a), Item::Bind(b)) => endpoints_overlap(a, b),
            _ => false,
        }
    }

    /// The same key and entry.
    fn same(&self, other: &Item<'_>) -> bool {
        match (self, other) {
            (Item::Connect(a), Item::Connect(b))
            | (Item::Send(a), Item::Send(b))
            | (Item::Bind(a), Item::Bind(b)) => a == b,
            (Item::Unix(a), Item::Unix(b)) => a == b,
            _ => false,
        }
    }
}

struct Located<'a> {
    item: Item<'a>,
    at: EntryAt,
}

fn entries<'a>(
    table: &str,
    index: usize,
    rule: &'a Rule,
    pos: Option<&TablePos>,
) -> Vec<Located<'a>> {
    let mut out = Vec::new();
    let at = |key: &str, i: usize, entry: String, list: Option<&Vec<Pos>>| {
        let p = list.and_then(|l| l.get(i));
        EntryAt {
            rule: format!("{table}[{index}].{key}[{i}]"),
            entry,
            origin: p.map_or_else(String::new, |p| p.origin.clone()),
            line: p.map_or(0, |p| p.line),
            col: p.map_or(0, |p| p.col),
        }
    };
    for (i, e) in rule.connect.iter().enumerate() {
        let at = at("connect", i, e.to_string(), pos.map(|p| &p.connect));
        out.push(Located {
            item: Item::Connect(e),
            at,
        });
    }
    for (i, e) in rule.send.iter().enumerate() {
        let at = at("send", i, e.to_string(), pos.map(|p| &p.send));
        out.push(Located {
            item: Item::Send(e),
            at,
        });
    }
    for (i, e) in rule.bind.iter().enumerate() {
        let at = at("bind", i, e.to_string(), pos.map(|p| &p.bind));
        out.push(Located {
            item: Item::Bind(e),
            at,
        });
    }
    for (i, e) in rule.unix.iter().enumerate() {
        let at = at("unix", i, e.to_string(), pos.map(|p| &p.unix));
        out.push(Located {
            item: Item::Unix(e),
            at,
        });
    }
    out
}

/// Every (protocol, address, port) `b` matches, `a` matches. Exact for addresses, CIDRs,
/// `loopback`, `*`, port ranges and protocols; a host name is covered by `*` or by the same
/// name only.
pub(crate) fn endpoint_covers(a: &Endpoint, b: &Endpoint) -> bool {
    let proto = a.proto == ProtoMatch::Any || a.proto == b.proto;
    let ports = a.ports.0 <= b.ports.0 && b.ports.1 <= a.ports.1;
    proto && ports && host_covers(&a.host, &b.host)
}

/// Some (protocol, address, port) matches both `a` and `b`: exact for addresses, CIDRs,
/// `loopback`, `*`, port ranges and protocols; a host name may be any address, so it
/// overlaps every host.
pub(crate) fn endpoints_overlap(a: &Endpoint, b: &Endpoint) -> bool {
    let proto = a.proto == ProtoMatch::Any || b.proto == ProtoMatch::Any || a.proto == b.proto;
    let ports = a.ports.0 <= b.ports.1 && b.ports.0 <= a.ports.1;
    proto && ports && hosts_overlap(&a.host, &b.host)
}

fn hosts_overlap(a: &HostMatch, b: &HostMatch) -> bool {
    // Two networks share an address only when one holds the other.
    let nets = |n: &IpNet, m: &IpNet| n.contains(m) || m.contains(n);
    let loopback: [IpNet; 2] = [
        "127.0.0.0/8".parse().expect("a network"),
        "::1/128".parse().expect("a network"),
    ];
    match (a, b) {
        (HostMatch::Any | HostMatch::Name(_), _) | (_, HostMatch::Any | HostMatch::Name(_)) => true,
        (HostMatch::Loopback, HostMatch::Loopback) => true,
        (HostMatch::Loopback, HostMatch::Net(n)) | (HostMatch::Net(n), HostMatch::Loopback) => {
            loopback.iter().any(|l| nets(l, n))
        }
        (HostMatch::Net(n), HostMatch::Net(m)) => nets(n, m),
    }
}

fn host_covers(a: &HostMatch, b: &HostMatch) -> bool {
    let loopback: [IpNet; 2] = [
        "127.0.0.0/8".parse().expect("a network"),
        "::1/128".parse().expect("a network"),
    ];
    match (a, b) {
        (HostMatch::Any, _) => true,
        (HostMatch::Name(x), HostMatch::Name(y)) => x == y,
        (_, HostMatch::Name(_)) | (HostMatch::Name(_), _) => false,
        (_, HostMatch::Any) => false,
        (HostMatch::Loopback, HostMatch::Loopback) => true,
        (HostMatch::Loopback, HostMatch::Net(n)) => loopback.iter().any(|l| l.contains(n)),
        (HostMatch::Net(n), HostMatch::Loopback) => loopback.iter().all(|l| n.contains(l)),
        (HostMatch::Net(n), HostMatch::Net(m)) => n.contains(m),
    }
}

/// Every socket `b` matches, `a` matches (conservative: `false` when unsure).
pub(crate) fn unix_covers(a: &UnixPattern, b: &UnixPattern) -> bool {
    match (a, b) {
        (UnixPattern::Abstract(x), UnixPattern::Abstract(y)) => glob_covers(x, y),
        (UnixPattern::Path(x), UnixPattern::Path(y)) => components_cover(x, y),
        _ => false,
    }
}

/// `a`'s `**` takes any run of `b`'s components (its `**` included); `a`'s glob takes one
/// of `b`'s globs it covers; `b`'s `**` only goes into `a`'s `**`.
fn components_cover(a: &[Component], b: &[Component]) -> bool {
    fn go(a: &[Component], b: &[Component], i: usize, j: usize, memo: &mut Memo) -> bool {
        if let Some(v) = memo.get(i, j) {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(Component::AnyDepth), _) => {
                go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
            }
            (Some(Component::Glob(_)), None | Some(Component::AnyDepth)) => false,
            (Some(Component::Glob(x)), Some(Component::Glob(y))) => {
                glob_covers(x, y) && go(a, b, i + 1, j + 1, memo)
            }
        };
        memo.set(i, j, v);
        v
    }
    go(a, b, 0, 0, &mut Memo::new(a.len(), b.len()))
}

/// `a`'s `*` takes any run of `b`'s tokens; `a`'s `?` takes `b`'s `?` or one ASCII byte (a
/// character either way); a byte takes the same byte; `b`'s `*` only goes into `a`'s `*`.
fn glob_covers(a: &[Tok], b: &[Tok]) -> bool {
    fn go(a: &[Tok], b: &[Tok], i: usize, j: usize, memo: &mut Memo) -> bool {
        if let Some(v) = memo.get(i, j) {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(Tok::Star), _) => {
                go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
            }
            (Some(_), None) => false,
            (Some(Tok::One), Some(Tok::One)) => go(a, b, i + 1, j + 1, memo),
            (Some(Tok::One), Some(Tok::Byte(c))) if c.is_ascii() => go(a, b, i + 1, j + 1, memo),
            (Some(Tok::Byte(x)), Some(Tok::Byte(y))) if x == y => go(a, b, i + 1, j + 1, memo),
            _ => false,
        };
        memo.set(i, j, v);
        v
    }
    go(a, b, 0, 0, &mut Memo::new(a.len(), b.len()))
}

/// Answers for positions `(i, j)`, `i <= la`, `j <= lb`.
struct Memo {
    cols: usize,
    cells: Vec<Option<bool>>,
}

impl Memo {
    fn new(la: usize, lb: usize) -> Memo {
        Memo {
            cols: lb + 1,
            cells: vec![None; (la + 1) * (lb + 1)],
        }
    }
    fn get(&self, i: usize, j: usize) -> Option<bool> {
        self.cells[i * self.cols + j]
    }
    fn set(&mut self, i: usize, j: usize, v: bool) {
        self.cells[i * self.cols + j] = Some(v);
    }
}

impl Policy {
    /// As [`Policy::from_toml_with`], and also what `netjail policy check` reports beyond
    /// errors: entries that can never decide because an entry checked before them covers
    /// them, and `[bridge]` patterns that can never bridge a call ([`crate::Finding`]), with
    /// the file, line and column of both. A policy with
    /// findings still loads; they are mistakes of intent, not of form.
    ///
    /// ```
    /// use netjail_policy::{no_files, FindingKind, Policy};
    ///
    /// let text = "name = \"p\"\n[[deny]]\nconnect = [\"tcp://127.0.0.0/8:*\"]\n\
    ///             [[allow]]\nconnect = [\"tcp://127.0.0.1:8080\"]\n";
    /// let (_, found) = Policy::check_toml(text, "p.toml", &[""; 0], &mut no_files)?;
    /// assert_eq!(found[0].kind, FindingKind::Unreachable);
    /// assert_eq!((found[0].entry.line, found[0].entry.col), (5, 12));
    /// assert_eq!(found[0].by.rule, "deny[0].connect[0]");
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn check_toml<S: AsRef<str>>(
        source: &str,
        origin: &str,
        sets: &[S],
        loader: &mut crate::ParentLoader<'_>,
    ) -> Result<(Policy, Vec<crate::Finding>), PolicyError> {
        check(source, origin, sets, loader)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::endpoint;
    use crate::glob;
    use crate::target::{canonical_ip, Proto};

    fn ep(s: &str) -> Endpoint {
        endpoint::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn un(s: &str) -> UnixPattern {
        glob::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn endpoints_cover_exactly() {
        let yes = [
            ("tcp://127.0.0.0/8:*", "tcp://127.0.0.1:8080"),
            ("any://*:*", "udp://api.example.com:53"),
            ("any://loopback:1-100", "tcp://127.0.0.0/9:50-60"),
            ("tcp://loopback:80", "tcp://[::1]:80"),
            ("tcp://api.example.com:*", "tcp://api.example.com:443"),
            ("tcp://0.0.0.0/0:*", "tcp://10.0.0.0/8:1"),
        ];
        for (a, b) in yes {
            assert!(endpoint_covers(&ep(a), &ep(b)), "{a} covers {b}");
        }
        let no = [
            ("tcp://127.0.0.1:8080", "tcp://127.0.0.0/8:*"),
            ("udp://*:*", "tcp://127.0.0.1:1"),
            ("tcp://*:*", "any://127.0.0.1:1"),
            ("tcp://10.0.0.0/8:*", "tcp://api.example.com:443"),
            ("tcp://*.example.com:*", "tcp://api.example.com:443"),
            ("tcp://loopback:*", "tcp://126.0.0.0/7:1"),
            ("tcp://0.0.0.0/0:*", "tcp://loopback:1"),
            ("tcp://[::/0]:*", "tcp://loopback:80"),
            ("tcp://*:1-10", "tcp://*:10-11"),
        ];
        for (a, b) in no {
            assert!(!endpoint_covers(&ep(a), &ep(b)), "{a} does not cover {b}");
        }
    }

    #[test]
    fn endpoints_overlap_exactly() {
        let yes = [
            ("tcp://127.0.0.0/8:*", "tcp://127.0.0.1:8080"),
            ("tcp://127.0.0.1:8080", "tcp://127.0.0.0/8:*"),
            ("any://10.0.0.0/8:1-10", "udp://10.1.0.0/16:10-20"),
            ("tcp://loopback:80", "tcp://127.1.0.0/16:80"),
            ("tcp://[::/0]:80", "tcp://loopback:80"),
            ("tcp://api.example.com:443", "tcp://192.0.2.1:443"),
            ("udp://*:53", "udp://[::1]:53"),
        ];
        for (a, b) in yes {
            assert!(endpoints_overlap(&ep(a), &ep(b)), "{a} overlaps {b}");
            assert!(endpoints_overlap(&ep(b), &ep(a)), "{b} overlaps {a}");
        }
        let no = [
            ("tcp://127.0.0.1:*", "udp://127.0.0.1:*"),
            ("tcp://*:1-10", "tcp://*:11-20"),
            ("tcp://10.0.0.0/8:*", "tcp://11.0.0.0/8:*"),
            ("tcp://loopback:*", "tcp://10.0.0.0/8:*"),
            ("tcp://[fd00::/8]:*", "tcp://loopback:*"),
            ("tcp://0.0.0.0/0:*", "tcp://[::/0]:*"),
            ("tcp://api.example.com:443", "tcp://*:80"),
        ];
        for (a, b) in no {
            assert!(
                !endpoints_overlap(&ep(a), &ep(b)),
                "{a} does not overlap {b}"
            );
            assert!(
                !endpoints_overlap(&ep(b), &ep(a)),
                "{b} does not overlap {a}"
            );
        }
    }

    #[test]
    fn unix_globs_cover_conservatively() {
        let yes = [
            ("/**", "/run/user/*/bus"),
            ("/run/**", "/run/**/x"),
            ("/run/*", "/run/a?c"),
            ("/run/*/bus", "/run/1000/bus"),
            ("/tmp/*.sock", "/tmp/a*.sock"),
            ("/a/?", "/a/b"),
            ("@*", "@dbus-*"),
            ("@a*", "@a/b*"),
        ];
        for (a, b) in yes {
            assert!(unix_covers(&un(a), &un(b)), "{a} covers {b}");
        }
        let no = [
            ("/run/*", "/run/**"),
            ("/run/*", "/run/a/b"),
            ("/a/?", "/a/é"), // `?` is one character, but this check takes ASCII only
            ("/a/b", "/a/?"),
            ("@*", "/x"),
            ("/**", "@x"),
            ("/tmp/a\\*", "/tmp/ab"),
        ];
        for (a, b) in no {
            assert!(!unix_covers(&un(a), &un(b)), "{a} does not cover {b}");
        }
    }

    fn endpoint_text() -> impl Strategy<Value = String> {
        let proto = prop::sample::select(vec!["tcp", "udp", "any"]);
        let host = prop::sample::select(vec![
            "*",
            "loopback",
            "127.0.0.1",
            "127.0.0.0/8",
            "127.0.0.0/24",
            "10.0.0.0/8",
            "10.1.2.3",
            "0.0.0.0/0",
            "[::1]",
            "[::/0]",
            "[fd00::/8]",
            "[::ffff:127.0.0.1]",
            "a.example.com",
        ]);
        let ports = prop::sample::select(vec!["*", "0", "1", "3", "1-3", "2-6", "0-65535"]);
        (proto, host, ports).prop_map(|(p, h, n)| format!("{p}://{h}:{n}"))
    }

    fn request() -> impl Strategy<Value = (Proto, SocketAddr)> {
        let proto = prop::sample::select(vec![Proto::Tcp, Proto::Udp, Proto::Other]);
        let addr = prop::sample::select(vec![
            "127.0.0.1",
            "127.0.0.9",
            "127.1.0.1",
            "10.1.2.3",
            "10.9.9.9",
            "192.0.2.1",
            "::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
        ]);
        (proto, addr, 0u16..8).prop_map(|(p, a, port)| {
            let ip = canonical_ip(a.parse().unwrap());
            (p, SocketAddr::new(ip, port))
        })
    }

    /// Path glob texts over a small alphabet, and paths made from one pattern by filling in
    /// its wildcards.
    fn glob_text() -> impl Strategy<Value = String> {
        let comp = prop::sample::select(vec![
            "a", "b", "ab", "*", "a*", "*b", "?", "a?", "é", "?é", "*é*", "**", "\\*",
        ]);
        prop::collection::vec(comp, 0..4).prop_map(|c| format!("/{}", c.join("/")))
    }

    fn fill(p: &UnixPattern, choices: &[u8]) -> Vec<u8> {
        let mut next = choices.iter().copied().cycle();
        let mut pick =
            |opts: &[&[u8]]| opts[usize::from(next.next().unwrap_or(0)) % opts.len()].to_vec();
        let mut out = Vec::new();
        let UnixPattern::Path(comps) = p else {
            return out;
        };
        for c in comps {
            match c {
                Component::AnyDepth => {
                    let n = pick(&[b"", b"x", b"xx"]).len();
                    for _ in 0..n {
                        out.push(b'/');
                        out.extend(pick(&[b"a", b"b", b"\xff", "é".as_bytes()]));
                    }
                }
                Component::Glob(toks) => {
                    out.push(b'/');
                    let start = out.len();
                    for t in toks {
                        match t {
                            Tok::Byte(b) => out.push(*b),
                            Tok::One => out.extend(pick(&[b"a", b"b", b"\xff", "é".as_bytes()])),
                            Tok::Star => {
                                out.extend(pick(&[b"", b"a", b"ab", b"\xc3", "é".as_bytes()]))
                            }
                        }
                    }
                    if out.len() == start {
                        out.push(b'a');
                    }
                }
            }
        }
        if out.is_empty() {
            out.push(b'/');
        }
        out
    }

    proptest! {
        #[test]
        fn endpoint_cover_is_sound(a in endpoint_text(), b in endpoint_text(), reqs in prop::collection::vec(request(), 1..16)) {
            let (a, b) = (ep(&a), ep(&b));
            if endpoint_covers(&a, &b) {
                for (proto, addr) in reqs {
                    if b.matches(proto, addr) {
                        prop_assert!(a.matches(proto, addr), "{a} covers {b} but not {proto:?} {addr}");
                    }
                }
            }
        }

        #[test]
        fn endpoint_overlap_is_sound(a in endpoint_text(), b in endpoint_text(), reqs in prop::collection::vec(request(), 1..16)) {
            let (a, b) = (ep(&a), ep(&b));
            prop_assert_eq!(endpoints_overlap(&a, &b), endpoints_overlap(&b, &a));
            for (proto, addr) in reqs {
                if a.matches(proto, addr) && b.matches(proto, addr) {
                    prop_assert!(endpoints_overlap(&a, &b), "{a} and {b} both match {proto:?} {addr}");
                }
            }
        }

        #[test]
        fn unix_cover_is_sound(a in glob_text(), b in glob_text(), choices in prop::collection::vec(any::<u8>(), 1..12)) {
            let (a, b) = (un(&a), un(&b));
            let path = fill(&b, &choices);
            if unix_covers(&a, &b) && b.matches_path(&path) {
                prop_assert!(a.matches_path(&path), "{a} covers {b} but not {:?}", String::from_utf8_lossy(&path));
            }
        }

        #[test]
        fn unix_cover_is_reflexive(a in glob_text()) {
            let a = un(&a);
            prop_assert!(unix_covers(&a, &a));
        }
    }
}
