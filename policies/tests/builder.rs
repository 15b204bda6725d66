//! A policy built in code (issue 6): the same model, entries and checks as a TOML policy.

use netjail_policy::{
    builtin, Action, AllowTable, BuilderKey, IoctlMode, LandlockMode, Policy, PolicyBuilder,
    PolicyError, PolicyErrorKind as K, TableBuilder,
};
use proptest::prelude::*;
use proptest::sample::select;

// ---- errors --------------------------------------------------------------------------------

fn err(b: PolicyBuilder) -> PolicyError {
    match b.build() {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    }
}

/// Asserts the key, value and kind of the error `b` gives, and that it has no line.
#[track_caller]
fn at(b: PolicyBuilder, key: &str, value: Option<&str>, kind: K) {
    let e = err(b);
    let want = BuilderKey {
        key: key.to_owned(),
        value: value.map(str::to_owned),
    };
    assert_eq!((e.at.as_deref(), &e.kind), (Some(&want), &kind), "{e}");
    assert_eq!((e.line, e.col), (0, 0), "{e}");
    assert_eq!(e.origin, "builder:t", "{e}");
}

fn b() -> PolicyBuilder {
    Policy::builder("t")
}

/// A builder with one `[[allow]]` connect entry.
fn connect(entry: &str) -> PolicyBuilder {
    b().allow(|t| t.connect(entry))
}

#[test]
fn display_is_origin_key_value_message() {
    let e = err(b().allow(|t| t.connect("tcp://loopback:1")).allow(|t| {
        t.connect("tcp://loopback:2")
            .connect("tcp://127.0.0.1:99999")
    }));
    assert_eq!(
        e.to_string(),
        "builder:t: allow[1].connect[1] `tcp://127.0.0.1:99999`: port 99999 is out of range (0-65535)"
    );
    // No value: the key alone. An empty name: the origin has no name either.
    let e = err(Policy::builder(""));
    assert_eq!(e.to_string(), "builder: name: `name` must not be empty");
    // A name or a value that holds a line break is escaped: the place stays on one line.
    let e = err(Policy::builder("a\nb").allow(|t| t.connect("tcp://*:1\n")));
    assert_eq!(
        e.to_string(),
        "builder:a\\nb: allow[0].connect[0] `tcp://*:1\\n`: invalid port `1\n`; expected a number 0-65535, a range FIRST-LAST or *"
    );
}

#[test]
fn toml_errors_keep_their_display() {
    let e = Policy::from_toml("name = \"x\"\nbogus = 1\n", "t.toml").unwrap_err();
    assert_eq!(e.at, None);
    assert_eq!(e.to_string(), "t.toml:2:1: unknown key `bogus`");
}

#[test]
fn empty_name() {
    let e = err(Policy::builder(""));
    assert_eq!(e.origin, "builder");
    assert_eq!(e.at.as_deref().map(|a| a.key.as_str()), Some("name"));
    assert_eq!(e.kind, K::EmptyName);
}

#[test]
fn bad_ask_timeout() {
    at(
        b().ask_timeout("30"),
        "ask_timeout",
        Some("30"),
        K::BadDuration {
            key: "ask_timeout",
            message: "`30` has no unit; write 30s, 30ms, 30m or 30h".to_owned(),
        },
    );
}

#[test]
fn ask_as_ask_fallback() {
    at(
        b().ask_fallback(Action::Ask),
        "ask_fallback",
        Some("ask"),
        K::UnknownAskFallback("ask".to_owned()),
    );
}

#[test]
fn jail_address_errors() {
    at(
        b().jail_address(["127.0.0.2", "0.0.0.0"]),
        "jail_address[1]",
        Some("0.0.0.0"),
        K::BadJailAddress("0.0.0.0".to_owned()),
    );
    // Indices count across calls; an IPv4-mapped address is IPv4.
    at(
        b().jail_address(["[fd00::2]", "127.0.0.2"])
            .jail_address(["::ffff:127.0.0.3"]),
        "jail_address[2]",
        Some("::ffff:127.0.0.3"),
        K::TwoJailAddresses("::ffff:127.0.0.3".to_owned()),
    );
}

#[test]
fn unknown_capability() {
    at(
        b().keep_capabilities(["CAP_NET_RAW"])
            .keep_capabilities(["CAP_SETUID"]),
        "keep_capabilities[1]",
        Some("CAP_SETUID"),
        K::UnknownCapability("CAP_SETUID".to_owned()),
    );
}

#[test]
fn unknown_unsafe_sockopt() {
    at(
        b().allow_unsafe_sockopts(["SO_ZEROCOPY", "SO_BINDTODEVICE"]),
        "allow_unsafe_sockopts[1]",
        Some("SO_BINDTODEVICE"),
        K::UnknownUnsafeSockopt {
            found: "SO_BINDTODEVICE".to_owned(),
            suggestion: None,
        },
    );
}

#[test]
fn unknown_namespace() {
    at(
        b().namespaces(["user", "pid"]),
        "namespaces[1]",
        Some("pid"),
        K::UnknownNamespace("pid".to_owned()),
    );
}

#[test]
fn source_cmsgs_with_jail() {
    at(
        b().jail_address(["127.0.0.2"]).source_cmsgs(true),
        "source_cmsgs",
        None,
        K::SourceCmsgsWithJail,
    );
    // As in a file, `jail_address = []` counts.
    at(
        b().jail_address([""; 0]).source_cmsgs(true),
        "source_cmsgs",
        None,
        K::SourceCmsgsWithJail,
    );
    assert!(b().jail_address(["127.0.0.2"]).build().is_ok());
    assert!(b().source_cmsgs(true).build().is_ok());
}

#[test]
fn socket_entry_errors() {
    for (entry, kind) in [
        ("inet", K::BadSocketEntry("inet".to_owned())),
        ("inet:*:tcp", K::BadSocketEntry("inet:*:tcp".to_owned())),
        ("ipx:stream", K::UnknownFamily("ipx".to_owned())),
        ("inet:stream:dccp", K::UnknownProtocol("dccp".to_owned())),
        ("inet:strem", K::UnknownSocketType("strem".to_owned())),
    ] {
        at(
            b().sockets(["unix:*"]).sockets([entry]),
            "sockets.allow[1]",
            Some(entry),
            kind,
        );
    }
}

#[test]
fn sockets_refuse_errors_and_values() {
    at(
        b().sockets(["unix:*"]).sockets_refuse("ENOENT"),
        "sockets.refuse",
        Some("ENOENT"),
        K::UnknownSocketsRefuse {
            found: "ENOENT".to_owned(),
            suggestion: None,
        },
    );
    at(
        b().sockets_refuse("eperm"),
        "sockets.refuse",
        Some("eperm"),
        K::UnknownSocketsRefuse {
            found: "eperm".to_owned(),
            suggestion: Some("EPERM"),
        },
    );
    // Checked after the list, as the parser meets `allow` before `refuse`.
    at(
        b().sockets_refuse("x").sockets(["inet"]),
        "sockets.allow[0]",
        Some("inet"),
        K::BadSocketEntry("inet".to_owned()),
    );
    assert_eq!(b().build().unwrap().sockets_refuse(), libc::EAFNOSUPPORT);
    // The last call wins.
    let p = b().sockets_refuse("EPERM").sockets_refuse("EAFNOSUPPORT");
    assert_eq!(p.build().unwrap().sockets_refuse(), libc::EAFNOSUPPORT);
    let p = b().sockets_refuse("EPERM").build().unwrap();
    assert_eq!(p.sockets_refuse(), libc::EPERM);
    assert_eq!(
        p,
        Policy::from_toml("name = \"t\"\n[sockets]\nrefuse = \"EPERM\"\n", "t").unwrap()
    );
}

#[test]
fn unknown_errno() {
    at(
        b().deny(|t| t.connect("tcp://*:25"))
            .deny(|t| t.errno("EPRM").connect("tcp://*:26")),
        "deny[1].errno",
        Some("EPRM"),
        K::UnknownErrno("EPRM".to_owned()),
    );
}

#[test]
fn empty_tables() {
    at(b().deny(|t| t), "deny[0]", None, K::EmptyRule("deny"));
    at(
        b().allow(|t| t.unix("/x")).allow(|t| t),
        "allow[1]",
        None,
        K::EmptyRule("allow"),
    );
    at(b().ask(|t| t), "ask[0]", None, K::EmptyRule("ask"));
    // An errno is no entry.
    at(
        b().deny(|t| t.errno("EACCES")),
        "deny[0]",
        None,
        K::EmptyRule("deny"),
    );
}

#[test]
fn endpoint_errors() {
    let s = str::to_owned;
    for (entry, kind) in [
        ("tcp:/x:1", K::BadEndpoint(s("tcp:/x:1"))),
        ("sctp://*:1", K::UnknownProto(s("sctp"))),
        ("tcp://127.0.0.1", K::MissingPort(s("tcp://127.0.0.1"))),
        ("tcp://*:http", K::BadPort(s("http"))),
        ("tcp://*:99999", K::PortOutOfRange(s("99999"))),
        (
            "tcp://*:90-80",
            K::ReversedPortRange {
                first: 90,
                last: 80,
            },
        ),
        (
            "tcp://a..b:1",
            K::BadHostName {
                name: s("a..b"),
                reason: "empty label",
            },
        ),
        ("tcp://::1:80", K::UnbracketedIpv6(s("tcp://::1:80"))),
        ("tcp://1.2.3:1", K::BadAddress(s("1.2.3"))),
        ("tcp://10.0.0.0/33:1", K::BadPrefix(s("10.0.0.0/33"))),
        (
            "tcp://10.0.0.1/8:1",
            K::HostBitsSet {
                given: s("10.0.0.1/8"),
                suggestion: s("10.0.0.0/8"),
            },
        ),
        ("tcp://0.0.0.0:1", K::UnspecifiedAddress(s("0.0.0.0"))),
    ] {
        let e = err(connect(entry));
        if let K::BadHostName { .. } = kind {
            // The reason's wording is the name parser's; the kind and the place are ours.
            assert!(matches!(e.kind, K::BadHostName { .. }), "{e}");
        } else {
            assert_eq!(e.kind, kind, "{e}");
        }
        let want = BuilderKey {
            key: "allow[0].connect[0]".to_owned(),
            value: Some(entry.to_owned()),
        };
        assert_eq!(e.at.as_deref(), Some(&want), "{e}");
        // `send` entries are read alike.
        let e2 = err(b().ask(|t| t.send(entry)));
        assert_eq!(e2.kind, e.kind, "{e2}");
        assert_eq!(e2.at.as_deref().unwrap().key, "ask[0].send[0]");
    }
    // `bind` takes addresses only, and the unspecified address is its wildcard.
    at(
        b().allow(|t| t.bind("tcp://0.0.0.0:80").bind("tcp://example.com:80")),
        "allow[0].bind[1]",
        Some("tcp://example.com:80"),
        K::HostNameInBind("example.com".to_owned()),
    );
}

#[test]
fn unix_entry_errors() {
    let s = str::to_owned;
    for (entry, kind) in [
        ("run/x", K::RelativeUnixPath(s("run/x"))),
        ("/run/x**", K::BadDoubleStar(s("/run/x**"))),
        ("/run/\\x", K::BadEscape(s("/run/\\x"))),
        ("/run/../x", K::DotComponent(s("/run/../x"))),
    ] {
        at(
            b().deny(|t| t.connect("tcp://*:1").unix("/ok").unix(entry)),
            "deny[0].unix[1]",
            Some(entry),
            kind,
        );
    }
}

/// The first mistake is the one the parser meets first in the canonical order: here the
/// table's, not `source_cmsgs` (checked last, as the parser does).
#[test]
fn first_mistake_wins() {
    let e = err(b()
        .jail_address(["127.0.0.2"])
        .source_cmsgs(true)
        .allow(|t| t.connect("tcp://*:0-").unix("rel"))
        .ask_timeout("0s"));
    assert_eq!(e.at.as_deref().unwrap().key, "ask_timeout", "{e}");
    let e = err(b()
        .jail_address(["127.0.0.2"])
        .source_cmsgs(true)
        .allow(|t| t.unix("rel").connect("tcp://*:0-")));
    assert_eq!(e.at.as_deref().unwrap().key, "allow[0].connect[0]", "{e}");
}

// ---- the same policies as TOML ------------------------------------------------------------

#[test]
fn builtins_built_in_code_are_equal() {
    let from = |name: &str| Policy::from_toml(builtin(name).unwrap(), name).unwrap();
    assert_eq!(
        Policy::builder("allow-all")
            .default(Action::Allow)
            .sockets(["*:*"])
            .build()
            .unwrap(),
        from("allow-all")
    );
    assert_eq!(
        Policy::builder("deny-all").build().unwrap(),
        from("deny-all")
    );
    let loopback = Policy::builder("loopback-only")
        .default(Action::Deny)
        .allow(|t| {
            t.connect("any://loopback:*")
                .bind("any://loopback:*")
                .unix("/**")
        })
        .build()
        .unwrap();
    assert_eq!(loopback, from("loopback-only"));
    let disablenetwork = Policy::builder("disablenetwork")
        .sockets(["unix:*"])
        .sockets_refuse("EPERM")
        .allow(|t| t.unix("/**"))
        .build()
        .unwrap();
    assert_eq!(disablenetwork, from("disablenetwork"));
    let jail = Policy::builder("jail")
        .jail_address(["127.0.0.2"])
        .scm_rights(false)
        .fcntl_setown(false)
        .ioctl(IoctlMode::SafeList)
        .sockets([
            "inet:stream",
            "inet:dgram",
            "inet6:stream",
            "inet6:dgram",
            "unix:*",
        ])
        .allow(|t| t.bind("any://*:*"))
        .build()
        .unwrap();
    assert_eq!(jail, from("jail"));
    let tcp_ports = Policy::builder("tcp-ports")
        .sockets(["inet:stream", "inet6:stream", "unix:*"])
        .allow(|t| {
            t.connect("tcp://*:80")
                .connect("tcp://*:443")
                .bind("tcp://*:8080")
        })
        .build()
        .unwrap();
    assert_eq!(tcp_ports, from("tcp-ports"));
}

/// The first TOML example of `docs/policy.md`.
fn doc_example() -> &'static str {
    let doc = include_str!("../../docs/policy.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = doc[start..].find("```").expect("its end");
    &doc[start..start + len]
}

#[test]
fn doc_example_built_in_code_is_equal() {
    let built = Policy::builder("web-server")
        .default(Action::Deny)
        .ask_timeout("30s")
        .ask_fallback(Action::Deny)
        .sockets(["inet:stream", "inet:dgram", "unix:*"])
        .deny(|t| t.errno("ECONNREFUSED").connect("tcp://169.254.169.254:*"))
        .allow(|t| {
            t.connect("tcp://loopback:5432")
                .connect("tcp://api.example.com:443")
                .send("udp://127.0.0.53:53")
                .bind("tcp://0.0.0.0:8080")
                .bind("tcp://127.0.0.1:0")
                .unix("/run/user/*/bus")
                .unix("@abstract-name")
        })
        .ask(|t| t.connect("tcp://*.example.com:443").connect("tcp://*:22"))
        .build()
        .unwrap();
    let parsed = Policy::from_toml(doc_example(), "docs/policy.md").unwrap();
    assert_eq!(built, parsed);
}

/// Every confinement key, against its TOML.
#[test]
fn confinement_built_in_code_is_equal() {
    let built = Policy::builder("c")
        .jail_address(["10.0.0.2", "[fd00::2]"])
        .keep_capabilities([
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_NET_BIND_SERVICE",
        ])
        .ioctl(IoctlMode::SafeList)
        .namespaces(["net"])
        .namespaces(["user"])
        .scm_rights(false)
        .fcntl_setown(false)
        .allow_unsafe_sockopts(["IPV6_MULTICAST_IF", "IP_MULTICAST_IF"])
        .allow_unsafe_sockopts(["IPV6_MULTICAST_IF"])
        .landlock(LandlockMode::Required)
        .build()
        .unwrap();
    let parsed = Policy::from_toml(
        r#"
        name = "c"
        jail_address = ["10.0.0.2", "[fd00::2]"]
        keep_capabilities = ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
        ioctl = "safe-list"
        namespaces = ["net", "user"]
        scm_rights = false
        fcntl_setown = false
        allow_unsafe_sockopts = ["IPV6_MULTICAST_IF", "IP_MULTICAST_IF"]
        landlock = "required"
        "#,
        "c",
    )
    .unwrap();
    assert_eq!(built, parsed);
    assert_eq!(built.confinement().keep_capabilities(), &[10, 13]);
    assert_eq!(
        built.confinement().allow_unsafe_sockopts(),
        &["IPV6_MULTICAST_IF", "IP_MULTICAST_IF"]
    );
    let again = Policy::from_toml(&built.to_toml(), "shown").unwrap();
    assert_eq!(again, built);
    let other = Policy::builder("c")
        .source_cmsgs(true)
        .landlock(LandlockMode::Off)
        .ask_fallback(Action::Allow)
        .build()
        .unwrap();
    let parsed = Policy::from_toml(
        "name = \"c\"\nsource_cmsgs = true\nlandlock = \"off\"\nask_fallback = \"allow\"\n",
        "c",
    )
    .unwrap();
    assert_eq!(other, parsed);
}

#[test]
fn no_sockets_call_is_the_default_list_and_an_empty_call_the_empty_one() {
    let default = Policy::builder("s").build().unwrap();
    assert_eq!(default, Policy::from_toml("name = \"s\"\n", "s").unwrap());
    let none = Policy::builder("s").sockets([""; 0]).build().unwrap();
    assert!(none.sockets().is_empty());
    assert_eq!(
        none,
        Policy::from_toml("name = \"s\"\n[sockets]\nallow = []\n", "s").unwrap()
    );
}

#[test]
fn a_builder_can_build_twice_and_be_extended() {
    let base = Policy::builder("b").allow(|t| t.connect("tcp://loopback:1"));
    let one = base.build().unwrap();
    assert_eq!(one, base.build().unwrap());
    let two = base
        .clone()
        .allow(|t| t.connect("tcp://loopback:2"))
        .build()
        .unwrap();
    assert_ne!(one, two);
    // Single values: the last call wins.
    let p = Policy::builder("b")
        .default(Action::Allow)
        .default(Action::Ask)
        .ask_timeout("bad")
        .ask_timeout("2m")
        .build()
        .unwrap();
    assert_eq!(p.default_action(), Action::Ask);
    assert_eq!(p.ask_timeout(), std::time::Duration::from_secs(120));
}

// ---- properties ----------------------------------------------------------------------------

/// What a builder is given, in a form that can be written as TOML too.
#[derive(Debug, Clone)]
struct Input {
    name: String,
    default: Option<Action>,
    ask_timeout: Option<String>,
    ask_fallback: Option<Action>,
    jail_address: Option<Vec<String>>,
    keep_capabilities: Option<Vec<String>>,
    ioctl: Option<IoctlMode>,
    namespaces: Option<Vec<String>>,
    scm_rights: Option<bool>,
    fcntl_setown: Option<bool>,
    source_cmsgs: Option<bool>,
    landlock: Option<LandlockMode>,
    sockets: Option<Vec<String>>,
    sockets_refuse: Option<String>,
    deny: Vec<Table>,
    allow: Vec<Table>,
    ask: Vec<Table>,
}

#[derive(Debug, Clone)]
struct Table {
    errno: Option<String>,
    connect: Vec<String>,
    send: Vec<String>,
    bind: Vec<String>,
    unix: Vec<String>,
}

impl Input {
    fn builder(&self) -> PolicyBuilder {
        let mut b = Policy::builder(self.name.clone());
        if let Some(a) = self.default {
            b = b.default(a);
        }
        if let Some(t) = &self.ask_timeout {
            b = b.ask_timeout(t.clone());
        }
        if let Some(a) = self.ask_fallback {
            b = b.ask_fallback(a);
        }
        if let Some(j) = &self.jail_address {
            b = b.jail_address(j);
        }
        if let Some(c) = &self.keep_capabilities {
            b = b.keep_capabilities(c);
        }
        if let Some(m) = self.ioctl {
            b = b.ioctl(m);
        }
        if let Some(n) = &self.namespaces {
            b = b.namespaces(n);
        }
        if let Some(v) = self.scm_rights {
            b = b.scm_rights(v);
        }
        if let Some(v) = self.fcntl_setown {
            b = b.fcntl_setown(v);
        }
        if let Some(v) = self.source_cmsgs {
            b = b.source_cmsgs(v);
        }
        if let Some(m) = self.landlock {
            b = b.landlock(m);
        }
        if let Some(s) = &self.sockets {
            b = b.sockets(s);
        }
        if let Some(r) = &self.sockets_refuse {
            b = b.sockets_refuse(r);
        }
        for t in &self.deny {
            b = b.deny(|mut tb| {
                if let Some(e) = &t.errno {
                    tb = tb.errno(e);
                }
                let tb = t.connect.iter().fold(tb, |tb, e| tb.connect(e));
                let tb = t.send.iter().fold(tb, |tb, e| tb.send(e));
                let tb = t.bind.iter().fold(tb, |tb, e| tb.bind(e));
                t.unix.iter().fold(tb, |tb, e| tb.unix(e))
            });
        }
        for (tables, ask) in [(&self.allow, false), (&self.ask, true)] {
            for t in tables {
                let fill = |tb: TableBuilder<AllowTable>| {
                    let tb = t.connect.iter().fold(tb, |tb, e| tb.connect(e));
                    let tb = t.send.iter().fold(tb, |tb, e| tb.send(e));
                    let tb = t.bind.iter().fold(tb, |tb, e| tb.bind(e));
                    t.unix.iter().fold(tb, |tb, e| tb.unix(e))
                };
                b = if ask { b.ask(fill) } else { b.allow(fill) };
            }
        }
        b
    }

    /// The same policy as TOML, keys in the order the builder checks them.
    fn toml(&self) -> String {
        let word = |a: Action| match a {
            Action::Deny => "deny",
            Action::Allow => "allow",
            Action::Ask => "ask",
        };
        let mut s = format!("name = {}\n", q(&self.name));
        if let Some(a) = self.default {
            s += &format!("default = \"{}\"\n", word(a));
        }
        if let Some(t) = &self.ask_timeout {
            s += &format!("ask_timeout = {}\n", q(t));
        }
        if let Some(a) = self.ask_fallback {
            s += &format!("ask_fallback = \"{}\"\n", word(a));
        }
        if let Some(j) = &self.jail_address {
            s += &format!("jail_address = {}\n", list(j));
        }
        if let Some(c) = &self.keep_capabilities {
            s += &format!("keep_capabilities = {}\n", list(c));
        }
        if let Some(m) = self.ioctl {
            let m = match m {
                IoctlMode::Any => "any",
                IoctlMode::SafeList => "safe-list",
            };
            s += &format!("ioctl = \"{m}\"\n");
        }
        if let Some(n) = &self.namespaces {
            s += &format!("namespaces = {}\n", list(n));
        }
        for (key, v) in [
            ("scm_rights", self.scm_rights),
            ("fcntl_setown", self.fcntl_setown),
            ("source_cmsgs", self.source_cmsgs),
        ] {
            if let Some(v) = v {
                s += &format!("{key} = {v}\n");
            }
        }
        if let Some(m) = self.landlock {
            let m = match m {
                LandlockMode::BestEffort => "best-effort",
                LandlockMode::Required => "required",
                LandlockMode::Off => "off",
            };
            s += &format!("landlock = \"{m}\"\n");
        }
        if self.sockets.is_some() || self.sockets_refuse.is_some() {
            s += "\n[sockets]\n";
        }
        if let Some(l) = &self.sockets {
            s += &format!("allow = {}\n", list(l));
        }
        if let Some(r) = &self.sockets_refuse {
            s += &format!("refuse = {}\n", q(r));
        }
        for (name, tables) in [
            ("deny", &self.deny),
            ("allow", &self.allow),
            ("ask", &self.ask),
        ] {
            for t in tables {
                s += &format!("\n[[{name}]]\n");
                if let Some(e) = &t.errno {
                    s += &format!("errno = {}\n", q(e));
                }
                for (key, entries) in [
                    ("connect", &t.connect),
                    ("send", &t.send),
                    ("bind", &t.bind),
                    ("unix", &t.unix),
                ] {
                    if !entries.is_empty() {
                        s += &format!("{key} = {}\n", list(entries));
                    }
                }
            }
        }
        s
    }
}

/// A TOML string, written by the toml crate (any text, escaped as TOML wants).
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", q.join(", "))
}

/// A value from `good`, or with weight `bad_weight` (against 20) from `bad`.
fn pick(good: &[&'static str], bad: &[&'static str], bad_weight: u32) -> BoxedStrategy<String> {
    let good = select(good.to_vec()).prop_map(str::to_owned);
    if bad_weight == 0 || bad.is_empty() {
        return good.boxed();
    }
    let bad = select(bad.to_vec()).prop_map(str::to_owned);
    prop_oneof![20 => good, bad_weight => bad].boxed()
}

fn entries(
    good: impl Strategy<Value = String> + Clone + 'static,
    bad: &[&'static str],
    bad_weight: u32,
    max: usize,
) -> BoxedStrategy<Vec<String>> {
    let one = if bad_weight == 0 {
        good.boxed()
    } else {
        let bad = select(bad.to_vec()).prop_map(str::to_owned);
        prop_oneof![20 => good, bad_weight => bad].boxed()
    };
    prop::collection::vec(one, 0..max).boxed()
}

fn host() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        select(vec![
            "*",
            "loopback",
            "127.0.0.1",
            "10.0.0.0/8",
            "192.0.2.7",
            "[::1]",
            "[fd00::/8]",
            "[::ffff:10.0.0.1]",
            "[::ffff:10.0.0.0/104]",
            "[::/0]",
        ])
        .prop_map(str::to_owned),
        (any::<[u8; 4]>(), 1..=32u8).prop_map(|(a, len)| {
            let net = ipnet::Ipv4Net::new(a.into(), len).unwrap().trunc();
            if len == 32 && net.addr().is_unspecified() {
                "loopback".to_owned()
            } else {
                net.to_string()
            }
        }),
    ]
}

fn host_name() -> impl Strategy<Value = String> + Clone {
    select(vec![
        "example.com",
        "*.example.com",
        "API.Example.ORG.",
        "x-1.test",
        "localhost",
    ])
    .prop_map(str::to_owned)
}

fn ports() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just("*".to_owned()),
        any::<u16>().prop_map(|p| p.to_string()),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ]
}

fn dest() -> impl Strategy<Value = String> + Clone {
    let h = prop_oneof![3 => host(), 1 => host_name()];
    (select(vec!["tcp", "udp", "any"]), h, ports()).prop_map(|(p, h, n)| format!("{p}://{h}:{n}"))
}

fn bind() -> impl Strategy<Value = String> + Clone {
    let h = prop_oneof![3 => host(), 1 => select(vec!["0.0.0.0", "[::]"]).prop_map(str::to_owned)];
    (select(vec!["tcp", "udp", "any"]), h, ports()).prop_map(|(p, h, n)| format!("{p}://{h}:{n}"))
}

fn unix() -> impl Strategy<Value = String> + Clone {
    let comp = select(vec!["run", "tmp", "*", "**", "X?", "*.sock", "a\\*b", "é"]);
    prop_oneof![
        prop::collection::vec(comp, 0..4).prop_map(|c| format!("/{}", c.join("/"))),
        "[a-z*?/-]{0,6}".prop_map(|s| format!("@{s}")),
    ]
}

const BAD_ENDPOINTS: &[&str] = &[
    "tcp://127.0.0.1:99999",
    "tcp://1.2.3.4",
    "tcp://::1:80",
    "tcp://10.0.0.1/8:1",
    "tcp://0.0.0.0:1",
    "ftp://x:1",
    "tcp://a..b:1",
    "tcp://[::1]:5-1",
    "",
];

fn table(deny: bool, bad: u32) -> impl Strategy<Value = Table> {
    let errno = if deny {
        prop::option::of(pick(
            &[
                "EPERM",
                "ECONNREFUSED",
                "EACCES",
                "ENETUNREACH",
                "EHOSTUNREACH",
            ],
            &["EPRM", "eperm"],
            bad,
        ))
        .boxed()
    } else {
        Just(None).boxed()
    };
    (
        errno,
        entries(dest(), BAD_ENDPOINTS, bad, 3),
        entries(dest(), BAD_ENDPOINTS, bad, 2),
        entries(bind(), &["tcp://example.com:80", "udp://*:70000"], bad, 2),
        entries(unix(), &["rel", "/a/../b", "/a**", "/a\\b"], bad, 3),
        dest(),
        // Now and then an empty table, when bad values are wanted.
        prop::bool::weighted(if bad == 0 { 0.0 } else { 0.02 }),
    )
        .prop_map(|(errno, mut connect, send, bind, unix, fallback, empty)| {
            if !empty && connect.is_empty() && send.is_empty() && bind.is_empty() && unix.is_empty()
            {
                connect.push(fallback);
            }
            Table {
                errno,
                connect,
                send,
                bind,
                unix,
            }
        })
}

fn action() -> impl Strategy<Value = Action> {
    select(vec![Action::Deny, Action::Allow, Action::Ask])
}

/// Builder inputs; with `bad` > 0 some values are mistakes (weight `bad` against 20).
fn input(bad: u32) -> impl Strategy<Value = Input> {
    let names = select(vec!["prop", "a b", "é\"\\\n\t\u{7f}\u{0}"]);
    let fallbacks = select(vec![Action::Deny, Action::Allow]);
    let (name, fallback) = if bad == 0 {
        (names.boxed(), fallbacks.boxed())
    } else {
        (
            prop_oneof![20 => names, bad => Just("")].boxed(),
            prop_oneof![20 => fallbacks, bad => Just(Action::Ask)].boxed(),
        )
    };
    let jail = prop_oneof![
        Just(vec![]),
        Just(vec!["127.0.0.2".to_owned()]),
        Just(vec!["10.1.2.3".to_owned(), "[fd00::1]".to_owned()]),
        Just(vec!["fd00::1".to_owned(), "::ffff:127.0.0.3".to_owned()]),
    ];
    let jail = if bad == 0 {
        jail.boxed()
    } else {
        prop_oneof![
            10 => jail,
            1 => select(vec![
                vec!["0.0.0.0".to_owned()],
                vec!["224.0.0.1".to_owned()],
                vec!["x".to_owned()],
                vec!["127.0.0.2".to_owned(), "127.0.0.3".to_owned()],
            ]),
        ]
        .boxed()
    };
    let caps = entries(
        select(vec![
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_SYS_PTRACE",
            "CAP_SYS_ADMIN",
        ])
        .prop_map(str::to_owned),
        &["CAP_SETUID", "cap_net_raw"],
        bad,
        4,
    );
    let sockets = entries(
        select(vec![
            "unix:*",
            "inet:stream",
            "inet:dgram",
            "inet6:stream",
            "inet6:dgram",
            "inet:stream:sctp",
            "netlink:raw",
            "inet:*",
            "40:stream",
            "inet:raw:icmp",
        ])
        .prop_map(str::to_owned),
        &[
            "inet",
            "bogus:stream",
            "inet:bogus",
            "inet:*:tcp",
            "inet:stream:bogus",
        ],
        bad,
        5,
    );
    let top = (
        name,
        prop::option::of(action()),
        prop::option::of(pick(
            &["30s", "1m30s", "500ms", "24h", "1h5s"],
            &["30", "0s", "25h", "1.5s"],
            bad,
        )),
        prop::option::of(fallback),
        prop::option::of(jail),
        prop::option::of(caps),
        prop::option::of(select(vec![IoctlMode::Any, IoctlMode::SafeList])),
        prop::option::of(entries(
            select(vec!["net", "user", "mount"]).prop_map(str::to_owned),
            &["pid"],
            bad,
            3,
        )),
    );
    let more = (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(select(vec![
            LandlockMode::BestEffort,
            LandlockMode::Required,
            LandlockMode::Off,
        ])),
        (
            prop::option::of(sockets),
            prop::option::of(pick(
                &["EAFNOSUPPORT", "EPERM"],
                &["ENOENT", "eperm", ""],
                bad,
            )),
        ),
        prop::collection::vec(table(true, bad), 0..3),
        prop::collection::vec(table(false, bad), 0..3),
        prop::collection::vec(table(false, bad), 0..3),
    );
    (top, more).prop_map(
        move |(
            (name, default, ask_timeout, ask_fallback, jail, caps, ioctl, namespaces),
            (scm, fcntl, mut source_cmsgs, landlock, (sockets, sockets_refuse), deny, allow, ask),
        )| {
            if bad == 0 && jail.is_some() && source_cmsgs == Some(true) {
                source_cmsgs = Some(false);
            }
            Input {
                name: name.to_owned(),
                default,
                ask_timeout,
                ask_fallback,
                jail_address: jail,
                keep_capabilities: caps,
                ioctl,
                namespaces,
                scm_rights: scm,
                fcntl_setown: fcntl,
                source_cmsgs,
                landlock,
                sockets,
                sockets_refuse,
                deny,
                allow,
                ask,
            }
        },
    )
}

proptest! {
    /// The invariant of issue 6: a policy built in code ships as its canonical TOML, which
    /// parses back to an equal policy (and prints the same again).
    #[test]
    fn built_policies_round_trip_through_toml(input in input(0)) {
        let p = input.builder().build().map_err(|e| TestCaseError::fail(format!("{e}\n{input:?}")))?;
        let shown = p.to_toml();
        let again = Policy::from_toml(&shown, "shipped").map_err(|e| TestCaseError::fail(format!("{e}\n{shown}")))?;
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.to_toml(), shown);
        prop_assert_eq!(again.fingerprint(), p.fingerprint());
    }

    /// A builder and the parser agree on the same keys and entries: the same policy, or the
    /// same first mistake (by kind), the builder's named by key and value.
    #[test]
    fn builder_and_parser_agree(input in input(1)) {
        let built = input.builder().build();
        let text = input.toml();
        let parsed = Policy::from_toml(&text, "t.toml");
        match (&built, &parsed) {
            (Ok(b), Ok(p)) => prop_assert_eq!(b, p),
            (Err(b), Err(p)) => {
                prop_assert_eq!(&b.kind, &p.kind, "{}\n{}\n{}", b, p, text);
                let at = b.at.as_deref().expect("a builder error has a key");
                prop_assert!(!at.key.is_empty());
                prop_assert_eq!((b.line, b.col), (0, 0));
            }
            _ => prop_assert!(false, "builder {:?}\nparser {:?}\n{}", built, parsed, text),
        }
    }
}
