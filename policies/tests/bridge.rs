//! `[bridge]`: the table, its errors with their positions, canonical text, `extends`,
//! `--set`, `policy check`, and the builder's parity with the parser.

use std::collections::HashMap;
use std::path::PathBuf;

use netjail_policy::{
    no_files, BridgeNetns, BuilderKey, FindingKind, Op, Policy, PolicyError, PolicyErrorKind as K,
    Proto, Request, Target, Verdict,
};

fn policy(src: &str) -> Policy {
    Policy::from_toml(src, "t.toml").unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn err(src: &str) -> PolicyError {
    match Policy::from_toml(src, "t.toml") {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

/// Asserts kind, line and column of the error `src` produces.
#[track_caller]
fn at(src: &str, line: usize, col: usize, kind: K) {
    let e = err(src);
    assert_eq!((e.line, e.col, &e.kind), (line, col, &kind), "{e}");
}

fn request(op: Op, proto: Proto, addr: &str) -> Request {
    Request {
        op,
        target: Target::Inet {
            proto,
            addr: addr.parse().unwrap(),
        },
    }
}

const BRIDGED: &str = r#"name = "b"

[[allow]]
connect = ["tcp://127.0.0.1:*", "udp://127.0.0.1:53"]
bind = ["tcp://0.0.0.0:8080"]

[bridge]
netns = "/proc/1/ns/net"
connect = ["tcp://127.0.0.1:8080", "udp://127.0.0.1:53"]
bind = ["tcp://0.0.0.0:8080"]
"#;

#[test]
fn the_table_is_read() {
    let p = policy(BRIDGED);
    let b = p.bridge().expect("a bridge");
    assert_eq!(
        b.netns(),
        &BridgeNetns::Path(PathBuf::from("/proc/1/ns/net"))
    );
    assert_eq!(
        b.connect_patterns(),
        ["tcp://127.0.0.1:8080", "udp://127.0.0.1:53"]
    );
    assert_eq!(b.bind_patterns(), ["tcp://0.0.0.0:8080"]);
    assert!(b.bridges(&request(Op::Connect, Proto::Tcp, "127.0.0.1:8080")));
    assert!(b.bridges(&request(Op::Connect, Proto::Udp, "127.0.0.1:53")));
    assert!(b.bridges(&request(Op::Send, Proto::Udp, "127.0.0.1:53")));
    assert!(b.bridges(&request(Op::Bind, Proto::Tcp, "0.0.0.0:8080")));
    assert!(!b.bridges(&request(Op::Connect, Proto::Tcp, "127.0.0.1:8081")));
    assert!(!b.bridges(&request(Op::Bind, Proto::Tcp, "127.0.0.1:8080")));
    assert!(!b.bridges(&request(Op::Bind, Proto::Udp, "0.0.0.0:8080")));

    let p = policy("name = \"b\"\n[bridge]\nnetns = \"broker\"\n");
    let b = p.bridge().unwrap();
    assert_eq!(b.netns(), &BridgeNetns::Broker);
    assert!(b.connect_patterns().is_empty() && b.bind_patterns().is_empty());
    assert!(!b.bridges(&request(Op::Connect, Proto::Tcp, "127.0.0.1:80")));
    assert_eq!(policy("name = \"b\"\n").bridge(), None);
}

/// A bridge allows nothing: the policy's verdict is the same with and without the table.
#[test]
fn a_bridge_never_allows() {
    let with = policy(
        "name = \"b\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n\
         [bridge]\nnetns = \"broker\"\nconnect = [\"tcp://*:*\", \"udp://*:*\"]\nbind = [\"tcp://*:*\"]\n",
    );
    let without = policy("name = \"b\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n");
    for (op, proto, addr) in [
        (Op::Connect, Proto::Tcp, "127.0.0.1:22"),
        (Op::Connect, Proto::Tcp, "127.0.0.1:8080"),
        (Op::Send, Proto::Udp, "127.0.0.1:53"),
        (Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
    ] {
        let r = request(op, proto, addr);
        assert_eq!(with.evaluate(&r), without.evaluate(&r), "{r:?}");
        assert!(matches!(with.evaluate(&r).verdict, Verdict::Deny { .. }));
        assert!(with.bridge().unwrap().bridges(&r));
    }
}

#[test]
fn host_names_are_resolved_ahead_like_the_tables() {
    let p = policy(
        "name = \"b\"\n[[allow]]\nconnect = [\"tcp://api.example.com:443\"]\n\
         [bridge]\nnetns = \"broker\"\nconnect = [\"tcp://*.example.org:443\", \"tcp://api.example.com:443\"]\n",
    );
    let names: Vec<String> = p.host_patterns().iter().map(ToString::to_string).collect();
    assert_eq!(names, ["api.example.com", "*.example.org"]);
    assert!(p.has_host_names());
    let only_bridge = policy(
        "name = \"b\"\n[bridge]\nnetns = \"broker\"\nconnect = [\"tcp://api.example.com:443\"]\n",
    );
    assert!(only_bridge.has_host_names());
}

#[test]
fn errors_point_at_the_key_or_entry() {
    let head = "name = \"b\"\n[bridge]\n";
    at(
        &format!("{head}netns = \"broker\"\nconect = []\n"),
        4,
        1,
        K::UnknownKey {
            key: "conect".into(),
            suggestion: Some("connect"),
        },
    );
    at(
        &format!("{head}netn = \"broker\"\n"),
        3,
        1,
        K::UnknownKey {
            key: "netn".into(),
            suggestion: Some("netns"),
        },
    );
    // The table's header names the table; a bridge without `netns` is refused there.
    at(
        &format!("{head}connect = [\"tcp://127.0.0.1:80\"]\n"),
        2,
        1,
        K::MissingKey("bridge.netns"),
    );
    at(
        &format!("{head}netns = \"\"\n"),
        3,
        9,
        K::BadBridgeNetns {
            found: String::new(),
            reason: "it is empty",
        },
    );
    at(
        &format!("{head}netns = \"run/netns/x\"\n"),
        3,
        9,
        K::BadBridgeNetns {
            found: "run/netns/x".into(),
            reason: "it is neither `broker` nor an absolute path",
        },
    );
    at(
        &format!("{head}netns = \"/run/netns/../../proc/1/ns/net\"\n"),
        3,
        9,
        K::BadBridgeNetns {
            found: "/run/netns/../../proc/1/ns/net".into(),
            reason: "it has a `..` component",
        },
    );
    at(
        &format!("{head}netns = 1\n"),
        3,
        9,
        K::WrongType {
            key: "bridge.netns".into(),
            expected: "a string",
            found: "an integer",
        },
    );
    at(
        &format!(
            "{head}netns = \"broker\"\nconnect = [\"tcp://127.0.0.1:80\", \"unix:/run/x.sock\"]\n"
        ),
        4,
        34,
        K::BridgeNotTcpOrUdp("unix:/run/x.sock".into()),
    );
    at(
        &format!("{head}netns = \"broker\"\nbind = [\"any://*:8080\"]\n"),
        4,
        9,
        K::BridgeNotTcpOrUdp("any://*:8080".into()),
    );
    at(
        &format!("{head}netns = \"broker\"\nconnect = [\"sctp://*:1\"]\n"),
        4,
        12,
        K::BridgeNotTcpOrUdp("sctp://*:1".into()),
    );
    // Past the scheme, the endpoint errors of `[[allow]]` entries.
    at(
        &format!("{head}netns = \"broker\"\nconnect = [\"tcp://127.0.0.1:99999\"]\n"),
        4,
        12,
        K::PortOutOfRange("99999".into()),
    );
    at(
        &format!("{head}netns = \"broker\"\nbind = [\"tcp://example.com:80\"]\n"),
        4,
        9,
        K::HostNameInBind("example.com".into()),
    );
    at(
        &format!("{head}netns = \"broker\"\nbind = \"tcp://*:80\"\n"),
        4,
        8,
        K::WrongType {
            key: "bridge.bind".into(),
            expected: "an array of strings",
            found: "a single value; put it in [ ]",
        },
    );
    at(
        "name = \"b\"\nbridge = \"broker\"\n",
        2,
        10,
        K::WrongType {
            key: "bridge".into(),
            expected: "a table ([bridge])",
            found: "a string",
        },
    );
    at(
        "name = \"b\"\nbrige = 1\n",
        2,
        1,
        K::UnknownKey {
            key: "brige".into(),
            suggestion: Some("bridge"),
        },
    );
}

#[test]
fn messages_say_what_is_expected() {
    let e = err("name = \"b\"\n[bridge]\nnetns = \"blue\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:9: invalid `bridge.netns` \"blue\": it is neither `broker` nor an absolute path; \
         expected \"broker\" or an absolute path to a namespace file such as \"/proc/PID/ns/net\" or \"/run/netns/NAME\""
    );
    let e = err("name = \"b\"\n[bridge]\nnetns = \"broker\"\nconnect = [\"unix:@x\"]\n");
    assert_eq!(
        e.to_string(),
        "t.toml:4:12: bridge entry `unix:@x` must be a tcp:// or udp:// endpoint: only TCP and UDP \
         calls are bridged (unix sockets and other protocols stay in the sandbox's namespace)"
    );
    let e = err("name = \"b\"\n[bridge]\nconnect = []\n");
    assert_eq!(
        e.to_string(),
        "t.toml:2:1: missing required key `bridge.netns`"
    );
}

#[test]
fn canonical_text_prints_the_whole_table_and_round_trips() {
    let p = policy(
        "name = \"b\"\n[bridge]\nbind = [\"udp://[::ffff:0.0.0.0]:53\"]\nnetns = \"//run/netns/./host/\"\n",
    );
    let shown = p.to_toml();
    assert!(
        shown.contains(
            "\n[bridge]\nnetns = \"/run/netns/host\"\nconnect = []\nbind = [\"udp://0.0.0.0:53\"]\n"
        ),
        "{shown}"
    );
    let again = Policy::from_toml(&shown, "shown").unwrap();
    assert_eq!(again, p);
    assert_eq!(again.to_toml(), shown);

    let p = policy(BRIDGED);
    let shown = p.to_toml();
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), p);
    // The table is part of the fingerprint.
    let plain = policy(BRIDGED.split("[bridge]").next().unwrap());
    assert_ne!(plain.fingerprint(), p.fingerprint());
    assert!(!plain.to_toml().contains("[bridge]"));
}

/// A loader over an in-memory set of files.
fn files(map: &[(&str, &str)]) -> impl FnMut(&str, &str) -> Result<(String, String), String> {
    let map: HashMap<String, String> = map
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name: &str, _from: &str| {
        map.get(name)
            .map(|t| (name.to_owned(), t.clone()))
            .ok_or_else(|| format!("reading `{name}`: no such file"))
    }
}

fn load(map: &[(&str, &str)], top: &str, sets: &[&str]) -> Result<Policy, PolicyError> {
    let text = map.iter().find(|(k, _)| *k == top).expect("top file").1;
    Policy::from_toml_with(text, top, sets, &mut files(map))
}

#[test]
fn a_child_table_replaces_the_parents_whole() {
    let base = "name = \"base\"\n[bridge]\nnetns = \"/proc/1/ns/net\"\n\
                connect = [\"tcp://127.0.0.1:8080\"]\nbind = [\"tcp://0.0.0.0:80\"]\n";
    let inherits = "name = \"c\"\nextends = \"base.toml\"\n";
    let replaces = "name = \"c\"\nextends = \"base.toml\"\n[bridge]\nnetns = \"broker\"\n\
                    connect = [\"udp://127.0.0.1:53\"]\n";
    let off = "name = \"c\"\nextends = \"base.toml\"\n[bridge]\nnetns = \"broker\"\n";
    let map = [
        ("base.toml", base),
        ("inherits.toml", inherits),
        ("replaces.toml", replaces),
        ("off.toml", off),
    ];
    let p = load(&map, "inherits.toml", &[]).unwrap();
    let b = p.bridge().unwrap();
    assert_eq!(b.netns(), &BridgeNetns::Path("/proc/1/ns/net".into()));
    assert_eq!(b.connect_patterns(), ["tcp://127.0.0.1:8080"]);
    assert_eq!(b.bind_patterns(), ["tcp://0.0.0.0:80"]);

    // Nothing of the parent's table is kept: not its binds, not its connects.
    let p = load(&map, "replaces.toml", &[]).unwrap();
    let b = p.bridge().unwrap();
    assert_eq!(b.netns(), &BridgeNetns::Broker);
    assert_eq!(b.connect_patterns(), ["udp://127.0.0.1:53"]);
    assert!(b.bind_patterns().is_empty());
    assert!(!b.bridges(&request(Op::Connect, Proto::Tcp, "127.0.0.1:8080")));

    // A table with no patterns bridges nothing: how a child turns its parent's bridge off.
    let p = load(&map, "off.toml", &[]).unwrap();
    assert!(!p
        .bridge()
        .unwrap()
        .bridges(&request(Op::Bind, Proto::Tcp, "0.0.0.0:80")));

    // A parent without a table leaves the child's alone.
    let map = [
        ("base.toml", "name = \"base\"\n"),
        ("replaces.toml", replaces),
    ];
    let p = load(&map, "replaces.toml", &[]).unwrap();
    assert_eq!(p.bridge().unwrap().netns(), &BridgeNetns::Broker);
}

#[test]
fn errors_in_a_parents_table_name_the_parent() {
    let map = [
        ("base.toml", "name = \"base\"\n[bridge]\nnetns = \"x\"\n"),
        ("c.toml", "name = \"c\"\nextends = \"base.toml\"\n"),
    ];
    let e = load(&map, "c.toml", &[]).unwrap_err();
    assert_eq!((e.origin.as_str(), e.line, e.col), ("base.toml", 3, 9));
    assert!(matches!(e.kind, K::BadBridgeNetns { .. }), "{e}");
}

#[test]
fn set_does_not_take_the_table() {
    let map = [("c.toml", "name = \"c\"\n")];
    for set in [
        "bridge.netns=broker",
        "bridge.connect=[\"tcp://127.0.0.1:80\"]",
    ] {
        let e = load(&map, "c.toml", &[set]).unwrap_err();
        assert_eq!(e.kind, K::NotSettable("bridge".into()), "{set}");
        assert_eq!((e.origin.as_str(), e.line, e.col), ("--set", 1, 1));
    }
}

fn check(src: &str) -> Vec<(FindingKind, String, String, usize, usize)> {
    let (_, found) = Policy::check_toml(src, "t.toml", &[""; 0], &mut no_files).unwrap();
    found
        .into_iter()
        .map(|f| (f.kind, f.entry.rule, f.by.rule, f.entry.line, f.entry.col))
        .collect()
}

#[test]
fn check_reports_patterns_that_never_bridge() {
    let src = r#"name = "b"

[[deny]]
connect = ["tcp://127.0.0.0/8:22"]
send = ["udp://10.0.0.0/8:*"]

[[allow]]
connect = ["tcp://127.0.0.1:*"]
bind = ["tcp://127.0.0.1:9000"]

[[ask]]
send = ["udp://192.0.2.0/24:53"]

[bridge]
netns = "broker"
connect = ["tcp://127.0.0.1:22", "tcp://127.0.0.1:8080", "udp://10.1.0.0/16:53", "tcp://10.0.0.1:80", "udp://192.0.2.1:53", "tcp://api.example.com:443"]
bind = ["tcp://0.0.0.0:9000", "tcp://127.0.0.0/8:*"]
"#;
    let u = FindingKind::BridgeUnallowed;
    let d = FindingKind::BridgeDenied;
    let f =
        |kind, entry: &str, by: &str, line, col| (kind, entry.to_owned(), by.to_owned(), line, col);
    assert_eq!(
        check(src),
        [
            f(d, "bridge.connect[0]", "deny[0].connect[0]", 16, 12),
            f(d, "bridge.connect[2]", "deny[0].send[0]", 16, 58),
            f(u, "bridge.connect[3]", "default", 16, 82),
            f(u, "bridge.bind[0]", "default", 17, 9),
        ]
    );
    // A default that may allow anything (an operator's answer, or allow) leaves the
    // patterns that no entry allows alone; a deny still denies.
    for default in ["allow", "ask"] {
        let src = src.replace(
            "name = \"b\"\n",
            &format!("name = \"b\"\ndefault = \"{default}\"\n"),
        );
        let kinds: Vec<FindingKind> = check(&src).into_iter().map(|f| f.0).collect();
        assert_eq!(kinds, [d, d], "{default}");
    }
    let (_, found) = Policy::check_toml(src, "t.toml", &[""; 0], &mut no_files).unwrap();
    assert_eq!(
        found[0].to_string(),
        "t.toml:16:12: bridge.connect[0] `tcp://127.0.0.1:22` never bridges anything: \
         deny[0].connect[0] `tcp://127.0.0.0/8:22` (t.toml:4:12) refuses every call it matches, \
         and a bridge allows nothing; remove it, or narrow the [[deny]] entry"
    );
    assert_eq!(
        found[2].to_string(),
        "t.toml:16:82: bridge.connect[3] `tcp://10.0.0.1:80` never bridges anything: no [[allow]] \
         or [[ask]] entry allows a call it matches and the default is deny, and a bridge allows \
         nothing (only an embedder's run-time rules could); add an [[allow]] entry for what it \
         should bridge, or remove it"
    );
    assert!(check(BRIDGED).is_empty());
}

/// The findings of a parent's bridge point into the parent.
#[test]
fn check_positions_follow_extends() {
    let map = [
        (
            "base.toml",
            "name = \"base\"\n[bridge]\nnetns = \"broker\"\nconnect = [\"tcp://127.0.0.1:1\"]\n",
        ),
        (
            "c.toml",
            "name = \"c\"\nextends = \"base.toml\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:2\"]\n",
        ),
    ];
    let (_, found) = Policy::check_toml(map[1].1, "c.toml", &[""; 0], &mut files(&map)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0].entry;
    assert_eq!(
        (e.origin.as_str(), e.line, e.col, e.rule.as_str()),
        ("base.toml", 4, 12, "bridge.connect[0]")
    );
}

// ---- the builder ---------------------------------------------------------------------------

#[track_caller]
fn built_err(b: netjail_policy::PolicyBuilder, key: &str, value: Option<&str>, kind: K) {
    let e = b.build().expect_err("an error");
    let want = BuilderKey {
        key: key.to_owned(),
        value: value.map(str::to_owned),
    };
    assert_eq!((e.at.as_deref(), &e.kind), (Some(&want), &kind), "{e}");
    assert_eq!((e.line, e.col), (0, 0));
}

#[test]
fn the_builder_builds_what_the_parser_reads() {
    let built = Policy::builder("b")
        .allow(|t| {
            t.connect("tcp://127.0.0.1:*")
                .connect("udp://127.0.0.1:53")
                .bind("tcp://0.0.0.0:8080")
        })
        .bridge(|b| b.netns("/proc/1/ns/net").connect("tcp://127.0.0.1:8080"))
        // A second call goes on filling the same table.
        .bridge(|b| b.connect("udp://127.0.0.1:53").bind("tcp://0.0.0.0:8080"))
        .build()
        .unwrap();
    assert_eq!(built, policy(BRIDGED));
    assert_eq!(
        Policy::from_toml(&built.to_toml(), "shipped").unwrap(),
        built
    );
    let later = Policy::builder("b")
        .bridge(|b| b.netns("/run/netns/x"))
        .bridge(|b| b.netns("broker"))
        .build()
        .unwrap();
    assert_eq!(later.bridge().unwrap().netns(), &BridgeNetns::Broker);
    assert_eq!(Policy::builder("b").build().unwrap().bridge(), None);
}

#[test]
fn the_builder_refuses_what_the_parser_refuses() {
    let b = || Policy::builder("t");
    built_err(
        b().bridge(|b| b.connect("tcp://127.0.0.1:80")),
        "bridge",
        None,
        K::MissingKey("bridge.netns"),
    );
    built_err(
        b().bridge(|b| b.netns("/a/../b")),
        "bridge.netns",
        Some("/a/../b"),
        K::BadBridgeNetns {
            found: "/a/../b".into(),
            reason: "it has a `..` component",
        },
    );
    built_err(
        b().bridge(|b| b.netns("broker").connect("tcp://*:1").connect("any://*:1")),
        "bridge.connect[1]",
        Some("any://*:1"),
        K::BridgeNotTcpOrUdp("any://*:1".into()),
    );
    built_err(
        b().bridge(|b| b.netns("broker").bind("udp://x.example:53")),
        "bridge.bind[0]",
        Some("udp://x.example:53"),
        K::HostNameInBind("x.example".into()),
    );
    // In the parser's order: the namespace, the connects, the binds, then a missing
    // namespace; all after `[sockets]` and before the rule tables.
    built_err(
        b().bridge(|b| b.connect("unix:/x").bind("any://*:1")),
        "bridge.connect[0]",
        Some("unix:/x"),
        K::BridgeNotTcpOrUdp("unix:/x".into()),
    );
    built_err(
        b().sockets_refuse("ENOENT").bridge(|b| b.netns("x")),
        "sockets.refuse",
        Some("ENOENT"),
        K::UnknownSocketsRefuse {
            found: "ENOENT".into(),
            suggestion: None,
        },
    );
    built_err(
        b().allow(|t| t.connect("tcp://*:99999"))
            .bridge(|b| b.netns("x")),
        "bridge.netns",
        Some("x"),
        K::BadBridgeNetns {
            found: "x".into(),
            reason: "it is neither `broker` nor an absolute path",
        },
    );
    let e = b()
        .bridge(|b| b.netns("broker").connect("udp://[::1]:99999"))
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "builder:t: bridge.connect[0] `udp://[::1]:99999`: port 99999 is out of range (0-65535)"
    );
    // The same kind as the parser's for the same text.
    let parsed =
        err("name = \"t\"\n[bridge]\nnetns = \"broker\"\nconnect = [\"udp://[::1]:99999\"]\n");
    assert_eq!(parsed.kind, e.kind);
}

#[test]
fn the_verdicts_ignore_the_bridge() {
    // Under every built-in profile, adding a bridge changes no decision.
    for name in netjail_policy::builtin_names() {
        let text = netjail_policy::builtin(name).unwrap();
        let plain = Policy::from_toml(text, name).unwrap();
        let bridged = Policy::from_toml(
            &format!("{text}\n[bridge]\nnetns = \"broker\"\nconnect = [\"tcp://*:*\", \"udp://*:*\"]\nbind = [\"tcp://*:*\", \"udp://*:*\"]\n"),
            name,
        )
        .unwrap();
        for (op, proto, addr) in [
            (Op::Connect, Proto::Tcp, "127.0.0.1:8080"),
            (Op::Connect, Proto::Tcp, "192.0.2.1:443"),
            (Op::Send, Proto::Udp, "127.0.0.1:53"),
            (Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
            (Op::Bind, Proto::Udp, "127.0.0.1:0"),
        ] {
            let r = request(op, proto, addr);
            assert_eq!(bridged.evaluate(&r), plain.evaluate(&r), "{name} {r:?}");
        }
    }
}

/// The `[bridge]` example of `docs/policy.md` loads, and bridges what its comments say.
#[test]
fn the_doc_example_loads() {
    let doc = include_str!("../../docs/policy.md");
    let start = doc.find("```toml\n[bridge]\n").expect("the example") + "```toml\n".len();
    let len = doc[start..].find("```").expect("its end");
    let p = policy(&format!("name = \"doc\"\n{}", &doc[start..start + len]));
    let b = p.bridge().unwrap();
    assert_eq!(b.netns(), &BridgeNetns::Path("/proc/1/ns/net".into()));
    assert!(b.bridges(&request(Op::Connect, Proto::Tcp, "127.0.0.1:8080")));
    assert!(b.bridges(&request(Op::Send, Proto::Udp, "127.0.0.1:53")));
    assert!(b.bridges(&request(Op::Bind, Proto::Tcp, "127.0.0.1:8080")));
}
