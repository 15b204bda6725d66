//! A policy built in code (issue 6): the same model, entries and checks as a TOML policy.

use netjail_policy::{
    builtin, Action, BuilderKey, IoctlMode, LandlockMode, Policy, PolicyBuilder, PolicyError,
    PolicyErrorKind as K,
};

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
