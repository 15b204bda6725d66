//! `extends` chains and `--set` parameters.

use std::collections::HashMap;

use netjail_policy::{
    Action, IoctlMode, Limit, Op, Policy, PolicyError, PolicyErrorKind as K, Proto, Request,
    Target, Verdict,
};

/// A loader over an in-memory set of files, resolving names against the directory of the
/// file that names them, as the client does.
fn files(map: &[(&str, &str)]) -> impl FnMut(&str, &str) -> Result<(String, String), String> {
    let map: HashMap<String, String> = map
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str, from: &str| {
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        let name = name.trim_start_matches("./");
        let path = if dir.is_empty() || name.starts_with('/') {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        };
        map.get(&path)
            .map(|t| (path.clone(), t.clone()))
            .ok_or_else(|| format!("reading `{path}`: no such file"))
    }
}

fn load(map: &[(&str, &str)], top: &str, sets: &[&str]) -> Result<Policy, PolicyError> {
    let text = map.iter().find(|(k, _)| *k == top).expect("top file").1;
    Policy::from_toml_with(text, top, sets, &mut files(map))
}

fn connect(addr: &str) -> Request {
    Request {
        op: Op::Connect,
        target: Target::Inet {
            proto: Proto::Tcp,
            addr: addr.parse().unwrap(),
        },
    }
}

const BASE: &str = r#"name = "base"
default = "ask"
ask_timeout = "1m"
ioctl = "safe-list"

[[deny]]
connect = ["tcp://127.0.0.0/8:22"]

[[allow]]
connect = ["tcp://10.0.0.0/8:443"]
"#;

#[test]
fn child_keys_override_and_tables_concatenate_parent_first() {
    let child = r#"name = "web"
extends = "base.toml"
default = "deny"

[[deny]]
connect = ["tcp://10.0.0.1:443"]

[[allow]]
connect = ["tcp://127.0.0.1:*"]
"#;
    let p = load(&[("base.toml", BASE), ("web.toml", child)], "web.toml", &[]).unwrap();
    assert_eq!(p.name(), "web");
    assert_eq!(p.default_action(), Action::Deny); // the child's
    assert_eq!(p.ask_timeout().as_secs(), 60); // the parent's, kept
    assert_eq!(p.confinement().ioctl(), IoctlMode::SafeList);
    // Numbered as `policy show` prints them: the parent's tables first.
    let d = p.evaluate(&connect("127.0.0.1:22"));
    assert_eq!(d.rule, "deny[0].connect[0]");
    let d = p.evaluate(&connect("10.0.0.1:443"));
    assert_eq!(d.rule, "deny[1].connect[0]"); // the child's deny beats the parent's allow
    let d = p.evaluate(&connect("10.0.0.2:443"));
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Allow, "allow[0].connect[0]")
    );
    let d = p.evaluate(&connect("127.0.0.1:80"));
    assert_eq!(d.rule, "allow[1].connect[0]");
    // What `policy show` prints parses back to the same policy, with no `extends`.
    let shown = p.to_toml();
    assert!(!shown.contains("extends"));
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), p);
}

#[test]
fn chains_resolve_relative_to_each_file_and_built_ins_work() {
    let a = "name = \"a\"\nextends = \"sub/b.toml\"\n";
    let b = "name = \"b\"\nextends = \"c.toml\"\n[[allow]]\nunix = [\"/run/b\"]\n";
    let c = "extends = \"loopback-only\"\n[[deny]]\nunix = [\"/run/c\"]\n";
    let p = load(
        &[("d/a.toml", a), ("d/sub/b.toml", b), ("d/sub/c.toml", c)],
        "d/a.toml",
        &[],
    )
    .unwrap();
    let shown = p.to_toml();
    assert!(shown.starts_with("name = \"a\"\n"), "{shown}");
    assert!(
        shown.contains("connect = [\"any://loopback:*\"]"),
        "{shown}"
    );
    assert!(shown.contains("unix = [\"/run/c\"]"), "{shown}");
    // loopback-only's allow table comes before b's.
    let allow_at = shown.find("unix = [\"/**\"]").unwrap();
    assert!(
        allow_at < shown.find("unix = [\"/run/b\"]").unwrap(),
        "{shown}"
    );
}

#[test]
fn a_cycle_is_named_at_the_extends_that_closes_it() {
    let a = "name = \"a\"\nextends = \"b.toml\"\n";
    let b = "name = \"b\"\n\n  extends = \"a.toml\"\n";
    let e = load(&[("a.toml", a), ("b.toml", b)], "a.toml", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "b.toml:3:3: `extends` makes a cycle: a.toml -> b.toml -> a.toml; remove one of these `extends`"
    );
    let selfish = "name = \"s\"\nextends = \"./s.toml\"\n";
    let e = load(&[("s.toml", selfish)], "s.toml", &[]).unwrap_err();
    assert!(matches!(e.kind, K::ExtendsCycle(_)), "{e}");
}

#[test]
fn depth_is_bounded() {
    let texts: Vec<(String, String)> = (0..12)
        .map(|i| {
            (
                format!("p{i}.toml"),
                format!("name = \"p{i}\"\nextends = \"p{}.toml\"\n", i + 1),
            )
        })
        .collect();
    let map: Vec<(&str, &str)> = texts
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let e = load(&map, "p0.toml", &[]).unwrap_err();
    assert!(matches!(e.kind, K::ExtendsTooDeep { max: 8, .. }), "{e}");
    assert_eq!((e.origin.as_str(), e.line, e.col), ("p7.toml", 2, 1));
}

#[test]
fn errors_in_a_parent_name_the_parent() {
    let base = "name = \"base\"\n[[allow]]\nconnect = [\"tcp://10.0.0.1/8:1\"]\n";
    let child = "name = \"c\"\nextends = \"base.toml\"\n";
    let e = load(&[("base.toml", base), ("c.toml", child)], "c.toml", &[]).unwrap_err();
    assert_eq!((e.origin.as_str(), e.line, e.col), ("base.toml", 3, 12));
    assert!(matches!(e.kind, K::HostBitsSet { .. }), "{e}");
}

#[test]
fn unknown_parents_say_why_and_suggest_a_built_in() {
    let child = "name = \"c\"\nextends = \"loopback-onyl\"\n";
    let e = load(&[("c.toml", child)], "c.toml", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "c.toml:2:11: cannot extend `loopback-onyl`: it is no built-in policy (allow-all, deny-all, disablenetwork, jail, loopback-only, tcp-ports), and reading `loopback-onyl`: no such file; did you mean `loopback-only`?"
    );
}

#[test]
fn the_child_needs_a_name_a_parent_does_not() {
    let e = load(&[("c.toml", "extends = \"deny-all\"\n")], "c.toml", &[]).unwrap_err();
    assert_eq!(e.kind, K::MissingKey("name"));
}

#[test]
fn sets_override_after_composition() {
    let child = "name = \"c\"\nextends = \"base.toml\"\n";
    let map = [("base.toml", BASE), ("c.toml", child)];
    let p = load(
        &map,
        "c.toml",
        &[
            "default=allow",
            "jail_address=127.0.0.2",
            "scm_rights=false",
            "ask_timeout=2s",
            "sockets.allow=[\"inet:stream\"]",
            "keep_capabilities=[\"CAP_NET_RAW\"]",
        ],
    )
    .unwrap();
    assert_eq!(p.default_action(), Action::Allow);
    assert_eq!(
        p.confinement().jail_address_for(false),
        Some("127.0.0.2".parse().unwrap())
    );
    assert!(!p.confinement().scm_rights());
    assert_eq!(p.ask_timeout().as_secs(), 2);
    assert_eq!(p.sockets().len(), 1);
    // Two addresses: a TOML array.
    let p = load(&map, "c.toml", &["jail_address=[\"127.0.0.2\", \"::1\"]"]).unwrap();
    assert!(p.confinement().jail_address_for(true).is_some());
    // The last of two sets wins.
    let p = load(&map, "c.toml", &["default=allow", "default=deny"]).unwrap();
    assert_eq!(p.default_action(), Action::Deny);
}

#[test]
fn set_errors_are_positioned_in_the_parameter() {
    let map = [("c.toml", "name = \"c\"\n")];
    let e = load(&map, "c.toml", &["default=deny", "jail_adress=127.0.0.2"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--set:2:1: unknown key `jail_adress`; did you mean `jail_address`?"
    );
    let e = load(&map, "c.toml", &["jail_address=127.0.0.300"]).unwrap_err();
    assert_eq!((e.line, e.col), (1, 14));
    assert!(matches!(e.kind, K::BadJailAddress(_)), "{e}");
    let e = load(&map, "c.toml", &["ask_timeout=30"]).unwrap_err();
    assert!(matches!(e.kind, K::WrongType { .. }), "{e}");
    let e = load(&map, "c.toml", &["default"]).unwrap_err();
    assert_eq!(e.kind, K::BadSet("default".into()));
    let e = load(&map, "c.toml", &["allow=[]"]).unwrap_err();
    assert_eq!(e.kind, K::NotSettable("allow".into()));
    let e = load(&map, "c.toml", &["extends=deny-all"]).unwrap_err();
    assert_eq!(e.kind, K::NotSettable("extends".into()));
    // A newline cannot smuggle a second key in: the value is one string.
    let p = load(&map, "c.toml", &["name=x\ndefault = \"allow\""]).unwrap();
    assert_eq!(p.name(), "x\ndefault = \"allow\"");
    assert_eq!(p.default_action(), Action::Deny);
    // Errors in a dotted key's value keep the parameter's column.
    let e = load(&map, "c.toml", &["sockets.allow=[\"inet:strem\"]"]).unwrap_err();
    assert_eq!((e.line, e.col), (1, 16), "{e}");
}

#[test]
fn source_cmsgs_is_checked_against_the_composed_jail() {
    let base = "name = \"b\"\nsource_cmsgs = true\n";
    let child = "name = \"c\"\nextends = \"b.toml\"\n";
    let map = [("b.toml", base), ("c.toml", child)];
    load(&map, "c.toml", &[]).unwrap();
    let e = load(&map, "c.toml", &["jail_address=127.0.0.2"]).unwrap_err();
    assert_eq!(e.kind, K::SourceCmsgsWithJail);
    assert_eq!((e.origin.as_str(), e.line, e.col), ("b.toml", 2, 16));
}

#[test]
fn check_finds_contradictions_and_shadows_across_files() {
    use netjail_policy::FindingKind;
    let base =
        "name = \"b\"\n[[deny]]\nconnect = [\"any://127.0.0.0/8:*\"]\nunix = [\"/run/**\"]\n";
    let child = r#"name = "c"
extends = "b.toml"
[[allow]]
connect = ["tcp://127.0.0.1:8080", "tcp://10.0.0.1:1"]
unix = ["/run/user/*/bus"]
[[ask]]
connect = ["tcp://10.0.0.1:1", "tcp://10.0.0.0/8:*"]
send = ["udp://127.0.0.53:53"]
"#;
    let map = [("b.toml", base), ("c.toml", child)];
    let (_, found) = Policy::check_toml(child, "c.toml", &[""; 0], &mut files(&map)).unwrap();
    let short: Vec<_> = found
        .iter()
        .map(|f| (f.kind, f.entry.rule.as_str(), f.by.rule.as_str()))
        .collect();
    assert_eq!(
        short,
        [
            (
                FindingKind::Unreachable,
                "allow[0].connect[0]",
                "deny[0].connect[0]"
            ),
            (
                FindingKind::Unreachable,
                "allow[0].unix[0]",
                "deny[0].unix[0]"
            ),
            (
                FindingKind::Contradiction,
                "ask[0].connect[0]",
                "allow[0].connect[1]"
            ),
            (
                FindingKind::Unreachable,
                "ask[0].send[0]",
                "deny[0].connect[0]"
            ),
        ]
    );
    assert_eq!(
        found[0].to_string(),
        "c.toml:4:12: allow[0].connect[0] `tcp://127.0.0.1:8080` is unreachable: deny[0].connect[0] `any://127.0.0.0/8:*` (b.toml:3:12) covers everything it matches and [[deny]] tables are checked before [[allow]] tables; remove it, or narrow the entry that covers it"
    );
    assert_eq!(
        found[2].to_string(),
        "c.toml:7:12: ask[0].connect[0] `tcp://10.0.0.1:1` is also in a [[allow]] table, allow[0].connect[1] `tcp://10.0.0.1:1` (c.toml:4:36), which is checked first, so this entry does nothing; remove one of the two"
    );
}

/// Rule N3 through composition: each key of `[limits]` a child writes (or `--set` gives)
/// replaces its parent's, and the keys it leaves out keep the parent's value.
#[test]
fn s_n3_limits_override_key_by_key() {
    let base = "name = \"base\"\n[limits]\nmax_connections = 2\nmax_binds = 3\n";
    let child = "name = \"c\"\nextends = \"base.toml\"\n[limits]\nmax_binds = -1\n";
    let map = [("base.toml", base), ("c.toml", child)];
    let p = load(&map, "c.toml", &[]).unwrap();
    assert_eq!(p.limits().max_connections, Limit::AtMost(2));
    assert_eq!(p.limits().max_binds, Limit::Unlimited);
    assert_eq!(p.limits().max_pending, Limit::Unlimited);
    let p = load(&map, "c.toml", &["limits.max_pending=0"]).unwrap();
    assert_eq!(p.limits().max_pending, Limit::AtMost(0));
    assert_eq!(p.limits().max_connections, Limit::AtMost(2));
    let e = load(&map, "c.toml", &["limits.max_conections=1"]).unwrap_err();
    assert!(
        e.to_string().contains("did you mean `max_connections`"),
        "{e}"
    );
    let e = load(&map, "c.toml", &["limits.max_binds=-2"]).unwrap_err();
    assert!(e.to_string().starts_with("--set:1:"), "{e}");
}

/// D1 through composition: `[sockets] refuse` and `[sockets] allow` override their parent's
/// each on its own, in a child file and with `--set sockets.refuse=...`.
#[test]
fn s_d1_sockets_refuse_overrides_on_its_own() {
    let listed = |p: &Policy| {
        p.sockets()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    // A child that lists more families keeps disablenetwork's EPERM for the rest.
    let wider = "name = \"w\"\nextends = \"disablenetwork\"\n[sockets]\nallow = [\"unix:*\", \"inet:stream\"]\n";
    // A child that sets only the errno keeps the parent's list.
    let quiet =
        "name = \"q\"\nextends = \"disablenetwork\"\n[sockets]\nrefuse = \"EAFNOSUPPORT\"\n";
    let base = "name = \"b\"\n[sockets]\nallow = [\"inet:stream\"]\n";
    let map = [("w.toml", wider), ("q.toml", quiet), ("b.toml", base)];
    let p = load(&map, "w.toml", &[]).unwrap();
    assert_eq!(p.sockets_refuse(), libc::EPERM);
    assert_eq!(listed(&p), ["unix:*", "inet:stream"]);
    let p = load(&map, "q.toml", &[]).unwrap();
    assert_eq!(p.sockets_refuse(), libc::EAFNOSUPPORT);
    assert_eq!(listed(&p), ["unix:*"]);

    // --set, bare or quoted; the list stays.
    for set in ["sockets.refuse=EPERM", "sockets.refuse=\"EPERM\""] {
        let p = load(&map, "b.toml", &[set]).unwrap();
        assert_eq!(p.sockets_refuse(), libc::EPERM, "{set}");
        assert_eq!(listed(&p), ["inet:stream"], "{set}");
        assert!(
            p.to_toml()
                .contains("[sockets]\nallow = [\"inet:stream\"]\nrefuse = \"EPERM\"\n"),
            "{}",
            p.to_toml()
        );
    }
    // --set of the list keeps the errno, and of the errno over the profile by name.
    let p = load(&map, "w.toml", &["sockets.allow=[\"unix:*\"]"]).unwrap();
    assert_eq!((p.sockets_refuse(), listed(&p).len()), (libc::EPERM, 1));
    let dn = netjail_policy::builtin("disablenetwork").unwrap();
    let p = Policy::from_toml_with(
        dn,
        "disablenetwork",
        &["sockets.refuse=EAFNOSUPPORT"],
        &mut netjail_policy::no_files,
    )
    .unwrap();
    assert_eq!(p.sockets_refuse(), libc::EAFNOSUPPORT);
    // The last of two sets wins.
    let p = load(
        &map,
        "b.toml",
        &["sockets.refuse=EPERM", "sockets.refuse=EAFNOSUPPORT"],
    )
    .unwrap();
    assert_eq!(p.sockets_refuse(), libc::EAFNOSUPPORT);

    // Errors at the value's column in the parameter, with the nearest value or key.
    let e = load(&map, "b.toml", &["default=deny", "sockets.refuse=eperm"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--set:2:16: unknown `sockets.refuse` errno `eperm`; expected \"EAFNOSUPPORT\" or \"EPERM\"; did you mean `EPERM`?"
    );
    let e = load(&map, "b.toml", &["sockets.refuze=EPERM"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "--set:1:9: unknown key `refuze`; did you mean `refuse`?"
    );
}
