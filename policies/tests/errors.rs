//! Every load error, with its line and column.

use netjail_policy::{Policy, PolicyError, PolicyErrorKind as K};

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

#[test]
fn display_is_origin_line_col_message() {
    let e = err("name = \"x\"\nbogus = 1\n");
    assert_eq!(e.to_string(), "t.toml:2:1: unknown key `bogus`");
    let e = Policy::from_toml("name = 1", "builtin:x").unwrap_err();
    assert_eq!(
        e.to_string(),
        "builtin:x:1:8: `name` must be a string, found an integer"
    );
}

#[test]
fn syntax_errors_point_into_the_text() {
    let e = err("name = \"x\"\n[[allow]\nconnect = []\n");
    assert!(matches!(e.kind, K::Syntax(_)), "{e}");
    assert_eq!((e.line, e.col), (2, 8));
    assert!(!e.to_string().contains('\n'), "one line: {e}");

    let e = err("name = \"x\"\nname = \"y\"\n");
    assert!(
        matches!(e.kind, K::Syntax(ref m) if m.contains("duplicate")),
        "{e}"
    );
    assert_eq!((e.line, e.col), (2, 1));

    let e = err("name = \"x\"\ndefault = \"deny\n");
    assert!(matches!(e.kind, K::Syntax(_)), "{e}");
    assert_eq!(e.line, 2);
}

#[test]
fn datetime_value() {
    at("name = \"x\"\n  default = 1979-05-27\n", 2, 13, K::DateTime);
}

#[test]
fn unknown_keys_with_and_without_hint() {
    at(
        "name = \"x\"\ndefualt = \"deny\"\n",
        2,
        1,
        K::UnknownKey {
            key: "defualt".into(),
            suggestion: Some("default"),
        },
    );
    at(
        "name = \"x\"\n[[allow]]\n  conect = [\"tcp://*:1\"]\n",
        3,
        3,
        K::UnknownKey {
            key: "conect".into(),
            suggestion: Some("connect"),
        },
    );
    at(
        "name = \"x\"\n[[deny]]\nerrnoo = \"EPERM\"\n",
        3,
        1,
        K::UnknownKey {
            key: "errnoo".into(),
            suggestion: Some("errno"),
        },
    );
    at(
        "name = \"x\"\n[sockets]\nalow = []\n",
        3,
        1,
        K::UnknownKey {
            key: "alow".into(),
            suggestion: Some("allow"),
        },
    );
    at(
        "name = \"x\"\n[frobnicate]\n",
        2,
        2,
        K::UnknownKey {
            key: "frobnicate".into(),
            suggestion: None,
        },
    );
    // Inline and dotted keys point at the key too.
    at(
        "name = \"x\"\nallow = [{ connect = [\"tcp://*:1\"], porty = 1 }]\n",
        2,
        37,
        K::UnknownKey {
            key: "porty".into(),
            suggestion: None,
        },
    );
}

#[test]
fn extends_without_a_loader_takes_built_ins_only() {
    let e = err("name = \"x\"\nextends = \"./base.toml\"\n");
    assert_eq!((e.line, e.col), (2, 11));
    assert!(
        matches!(e.kind, K::UnknownParent { ref name, .. } if name == "./base.toml"),
        "{e}"
    );
    let p = Policy::from_toml("extends = \"deny-all\"\nname = \"x\"\n", "t.toml").unwrap();
    assert_eq!(p.name(), "x");
}

#[test]
fn s_n3_limit_errors() {
    let bad = |key: &str, found: &str| K::BadLimit {
        key: key.into(),
        found: found.into(),
    };
    at(
        "name = \"x\"\n[limits]\nmax_connections = -2\n",
        3,
        19,
        bad("max_connections", "-2"),
    );
    at(
        "name = \"x\"\n[limits]\nmax_binds = 1\nmax_calls_per_second = 0.5\n",
        4,
        24,
        bad("max_calls_per_second", "a float"),
    );
    at(
        "name = \"x\"\n[limits]\nmax_pendign = 1\n",
        3,
        1,
        K::UnknownKey {
            key: "max_pendign".into(),
            suggestion: Some("max_pending"),
        },
    );
}

#[test]
fn confinement_key_errors() {
    at(
        "name = \"x\"\nkeep_capabilities = [\"CAP_NET_RAW\", \"CAP_SETUID\"]\n",
        2,
        37,
        K::UnknownCapability("CAP_SETUID".into()),
    );
    at(
        "name = \"x\"\nioctl = \"safelist\"\n",
        2,
        9,
        K::UnknownIoctlMode("safelist".into()),
    );
    at(
        "name = \"x\"\nlandlock = \"on\"\n",
        2,
        12,
        K::UnknownLandlockMode("on".into()),
    );
    at(
        "name = \"x\"\nnamespaces = [\"mnt\"]\n",
        2,
        15,
        K::UnknownNamespace("mnt".into()),
    );
    at(
        "name = \"x\"\njail_address = \"0.0.0.0\"\n",
        2,
        16,
        K::BadJailAddress("0.0.0.0".into()),
    );
    at(
        "name = \"x\"\njail_address = [\"127.0.0.2\", \"::ffff:127.0.0.3\"]\n",
        2,
        30,
        K::TwoJailAddresses("::ffff:127.0.0.3".into()),
    );
    at(
        "name = \"x\"\njail_address = \"127.0.0.2\"\nsource_cmsgs = true\n",
        3,
        16,
        K::SourceCmsgsWithJail,
    );
    at(
        "name = \"x\"\nscm_rights = \"no\"\n",
        2,
        14,
        K::WrongType {
            key: "scm_rights".into(),
            expected: "true or false",
            found: "a string",
        },
    );
    at(
        "name = \"x\"\nallow_unsafe_sockopts = [\"IP_MULTICAST_IF\", \"IP_MULTICAST_FI\"]\n",
        2,
        45,
        K::UnknownUnsafeSockopt {
            found: "IP_MULTICAST_FI".into(),
            suggestion: Some("IP_MULTICAST_IF"),
        },
    );
    at(
        "name = \"x\"\njail_address = \"127.0.0.2\"\nallow_unsafe_sockopts = [\"IPV6_PKTINFO\"]\n",
        3,
        25,
        K::UnsafeSockoptWithJail("IPV6_PKTINFO"),
    );
    at(
        "name = \"x\"\nallow_unsafe_sockopt = []\n",
        2,
        1,
        K::UnknownKey {
            key: "allow_unsafe_sockopt".into(),
            suggestion: Some("allow_unsafe_sockopts"),
        },
    );
    at(
        "name = \"x\"\nkeep_capabilites = []\n",
        2,
        1,
        K::UnknownKey {
            key: "keep_capabilites".into(),
            suggestion: Some("keep_capabilities"),
        },
    );
}

#[test]
fn bind_entries_take_the_wildcard_and_connect_entries_do_not() {
    assert!(Policy::from_toml(
        "name = \"x\"\n[[allow]]\nbind = [\"tcp://0.0.0.0:8080\", \"udp://[::]:0\"]\n",
        "t"
    )
    .is_ok());
    at(
        "name = \"x\"\n[[allow]]\nsend = [\"udp://0.0.0.0:53\"]\n",
        3,
        9,
        K::UnspecifiedAddress("0.0.0.0".into()),
    );
}

#[test]
fn missing_and_empty_name() {
    at("default = \"deny\"\n", 1, 1, K::MissingKey("name"));
    at("", 1, 1, K::MissingKey("name"));
    at("name = \"\"\n", 1, 8, K::EmptyName);
}

#[test]
fn wrong_types() {
    let wt = |key: &str, expected: &'static str, found: &'static str| K::WrongType {
        key: key.into(),
        expected,
        found,
    };
    at("name = true\n", 1, 8, wt("name", "a string", "a boolean"));
    at(
        "name = \"x\"\ndefault = 1.5\n",
        2,
        11,
        wt("default", "a string", "a float"),
    );
    at(
        "name = \"x\"\n[[allow]]\nconnect = [\"tcp://*:1\", 7]\n",
        3,
        25,
        wt("connect[1]", "a string", "an integer"),
    );
    at(
        "name = \"x\"\n[[allow]]\nunix = \"/run/x\"\n",
        3,
        8,
        wt(
            "unix",
            "an array of strings",
            "a single value; put it in [ ]",
        ),
    );
    at(
        "name = \"x\"\n[allow]\nconnect = []\n",
        2,
        1,
        wt("allow", "an array of tables ([[allow]])", "a table"),
    );
    at(
        "name = \"x\"\ndeny = [1]\n",
        2,
        9,
        wt("deny[0]", "a table", "an integer"),
    );
    at(
        "name = \"x\"\nsockets = []\n",
        2,
        11,
        wt("sockets", "a table ([sockets])", "an array"),
    );
    at(
        "name = \"x\"\n[[deny]]\nconnect = [\"tcp://*:1\"]\nerrno = 1\n",
        4,
        9,
        wt("errno", "a string", "an integer"),
    );
}

#[test]
fn bad_default_and_errno() {
    at(
        "name = \"x\"\ndefault = \"Deny\"\n",
        2,
        11,
        K::UnknownDefault("Deny".into()),
    );
    at(
        "name = \"x\"\n[[deny]]\nconnect = [\"tcp://*:1\"]\nerrno = \"ENOENT\"\n",
        4,
        9,
        K::UnknownErrno("ENOENT".into()),
    );
    at(
        "name = \"x\"\n[[allow]]\nconnect = [\"tcp://*:1\"]\nerrno = \"EPERM\"\n",
        4,
        1,
        K::ErrnoOutsideDeny,
    );
}

#[test]
fn ask_tables_take_the_allow_keys() {
    at(
        "name = \"x\"\n[[ask]]\nconnect = [\"tcp://*:1\"]\nerrno = \"EPERM\"\n",
        4,
        1,
        K::ErrnoOutsideDeny,
    );
    at("name = \"x\"\n[[ask]]\n", 2, 1, K::EmptyRule("ask"));
    at(
        "name = \"x\"\n[[ask]]\nconect = [\"tcp://*:1\"]\n",
        3,
        1,
        K::UnknownKey {
            key: "conect".into(),
            suggestion: Some("connect"),
        },
    );
    at(
        "name = \"x\"\n[ask]\nconnect = []\n",
        2,
        1,
        K::WrongType {
            key: "ask".into(),
            expected: "an array of tables ([[ask]])",
            found: "a table",
        },
    );
    at(
        "name = \"x\"\n[[ask]]\nunix = [\"rel\"]\n",
        3,
        9,
        K::RelativeUnixPath("rel".into()),
    );
    let e = err("name = \"x\"\ndefault = \"prompt\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:2:11: unknown default action `prompt`; expected \"deny\", \"ask\" or \"allow\""
    );
}

#[test]
fn ask_timeout_errors_point_at_the_value() {
    let bad = |value: &str, message: &str| {
        let src = format!("name = \"x\"\n\nask_timeout = {value}\n");
        let e = err(&src);
        assert_eq!((e.line, e.col), (3, 15), "{e}");
        assert_eq!(
            e.kind,
            K::BadDuration {
                key: "ask_timeout",
                message: message.into()
            },
            "{e}"
        );
    };
    bad("\"30\"", "`30` has no unit; write 30s, 30ms, 30m or 30h");
    bad(
        "\"\"",
        "empty duration; write one such as 30s, 500ms, 2m or 1h",
    );
    bad("\"0s\"", "`0s` is zero; a duration is positive");
    bad("\"-1s\"", "`-1s` is negative; a duration is positive");
    bad("\"25h\"", "`25h` is longer than 24h");
    bad("\"3d\"", "unknown unit `d` in `3d`; use h, m, s or ms");
    bad(
        "'1.5s'",
        "`1.5s` has a fraction; write whole units, as in 1s500ms",
    );
    let e = err("name = \"x\"\nask_timeout = \"30\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:2:15: invalid `ask_timeout`: `30` has no unit; write 30s, 30ms, 30m or 30h"
    );
    at(
        "name = \"x\"\nask_timeout = 30\n",
        2,
        15,
        K::WrongType {
            key: "ask_timeout".into(),
            expected: "a duration string such as \"30s\"",
            found: "an integer",
        },
    );
    at(
        "name = \"x\"\nask_fallback = \"ask\"\n",
        2,
        16,
        K::UnknownAskFallback("ask".into()),
    );
    at(
        "name = \"x\"\nask_fallback = false\n",
        2,
        16,
        K::WrongType {
            key: "ask_fallback".into(),
            expected: "a string",
            found: "a boolean",
        },
    );
    at(
        "name = \"x\"\nask_timout = \"1s\"\n",
        2,
        1,
        K::UnknownKey {
            key: "ask_timout".into(),
            suggestion: Some("ask_timeout"),
        },
    );
}

#[test]
fn rule_tables_need_an_entry() {
    at("name = \"x\"\n\n[[allow]]\n", 3, 1, K::EmptyRule("allow"));
    at(
        "name = \"x\"\n[[deny]]\nerrno = \"EACCES\"\n",
        2,
        1,
        K::EmptyRule("deny"),
    );
    at(
        "name = \"x\"\n[[deny]]\nconnect = []\nunix = []\n",
        2,
        1,
        K::EmptyRule("deny"),
    );
}

#[test]
fn s_l2_socket_entry_errors() {
    at(
        "name = \"x\"\n[sockets]\nallow = [\"inet:stream\", \"bluetooth:*\"]\n",
        3,
        25,
        K::UnknownFamily("bluetooth".into()),
    );
    at(
        "name = \"x\"\n[sockets]\nallow = [\"inet:rdm\"]\n",
        3,
        10,
        K::UnknownSocketType("rdm".into()),
    );
    at(
        "name = \"x\"\n[sockets]\nallow = [\"inet\"]\n",
        3,
        10,
        K::BadSocketEntry("inet".into()),
    );
    at(
        "name = \"x\"\n\n[sockets]\n",
        3,
        1,
        K::MissingKey("sockets.allow"),
    );
}

/// D1: `[sockets] refuse` takes `EAFNOSUPPORT` or `EPERM`; a mistake is reported at the value
/// (or key) with the nearest right one.
#[test]
fn s_d1_sockets_refuse_errors() {
    at(
        "name = \"x\"\n[sockets]\nallow = [\"unix:*\"]\nrefuse = \"ECONNREFUSED\"\n",
        4,
        10,
        K::UnknownSocketsRefuse {
            found: "ECONNREFUSED".into(),
            suggestion: None,
        },
    );
    let e = err("name = \"x\"\n[sockets]\nrefuse = \"EPRM\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:10: unknown `sockets.refuse` errno `EPRM`; expected \"EAFNOSUPPORT\" or \"EPERM\"; did you mean `EPERM`?"
    );
    at(
        "name = \"x\"\n[sockets]\nrefuse = \"eafnosupport\"\n",
        3,
        10,
        K::UnknownSocketsRefuse {
            found: "eafnosupport".into(),
            suggestion: Some("EAFNOSUPPORT"),
        },
    );
    at(
        "name = \"x\"\n[sockets]\nrefuse = 1\n",
        3,
        10,
        K::WrongType {
            key: "sockets.refuse".into(),
            expected: "a string",
            found: "an integer",
        },
    );
    let e = err("name = \"x\"\n[sockets]\nrefuze = \"EPERM\"\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:1: unknown key `refuze`; did you mean `refuse`?"
    );
    // `refuse` alone is a table: the default list, refused families with EPERM.
    let p = Policy::from_toml("name = \"x\"\n[sockets]\nrefuse = \"EPERM\"\n", "t.toml").unwrap();
    assert_eq!(p.sockets_refuse(), libc::EPERM);
    assert_eq!(
        p.sockets(),
        Policy::from_toml("name = \"x\"\n", "t.toml")
            .unwrap()
            .sockets()
    );
}

/// One endpoint error: `entry` is the second entry of line 3, which starts at column 25.
#[track_caller]
fn endpoint_err(entry: &str, kind: K) {
    let src = format!("name = \"x\"\n[[allow]]\nconnect = [\"tcp://*:1\", \"{entry}\"]\n");
    at(&src, 3, 25, kind);
}

#[test]
fn endpoint_errors_point_at_the_entry() {
    endpoint_err(
        "tcp://10.0.0.1/8:443",
        K::HostBitsSet {
            given: "10.0.0.1/8".into(),
            suggestion: "10.0.0.0/8".into(),
        },
    );
    endpoint_err("tcp://10.0.0.0/33:443", K::BadPrefix("10.0.0.0/33".into()));
    endpoint_err("tcp://[fd00::/129]:443", K::BadPrefix("fd00::/129".into()));
    endpoint_err("tcp://*:70000", K::PortOutOfRange("70000".into()));
    endpoint_err(
        "tcp://*:80-79",
        K::ReversedPortRange {
            first: 80,
            last: 79,
        },
    );
    endpoint_err("tcp://*:http", K::BadPort("http".into()));
    endpoint_err(
        "tcp://*.*.example.com:443",
        K::BadHostName {
            name: "*.*.example.com".into(),
            reason: "`*` must be the whole first label, as in `*.example.com`",
        },
    );
    endpoint_err(
        "tcp://a_b.example.com:80",
        K::BadHostName {
            name: "a_b.example.com".into(),
            reason: "a label takes only letters, digits and `-`",
        },
    );
    endpoint_err("tcp://::1:80", K::UnbracketedIpv6("tcp://::1:80".into()));
    endpoint_err("tcp://999.1.1.1:80", K::BadAddress("999.1.1.1".into()));
    endpoint_err("tcp://0.0.0.0:80", K::UnspecifiedAddress("0.0.0.0".into()));
    endpoint_err("quic://*:443", K::UnknownProto("quic".into()));
    endpoint_err("tcp://1.2.3.4", K::MissingPort("tcp://1.2.3.4".into()));
    endpoint_err("1.2.3.4:80", K::BadEndpoint("1.2.3.4:80".into()));
}

#[test]
fn messages_are_helpful() {
    let e = err("name = \"x\"\n[[allow]]\nconnect = [\"tcp://10.0.0.1/8:443\"]\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:12: `10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?"
    );
    let e = err("name = \"x\"\n[[allow]]\nconnect = [\"tcp://ex ample.com:443\"]\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:12: invalid host name `ex ample.com`: a label takes only letters, digits and `-`"
    );
    let e = err("name = \"x\"\n[[ask]]\nbind = [\"tcp://*:1\", \"tcp://example.com:80\"]\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:22: `bind` takes addresses, not host names (`example.com`); use an address, a CIDR, `loopback` or `*`"
    );
    let e = err("name = \"x\"\n[[allow]]\nconnect = [\"tcp://fd00::1:443\"]\n");
    assert!(e.to_string().contains("must be in brackets"), "{e}");
}

#[test]
fn host_names_are_accepted_in_destinations_of_every_table() {
    for table in ["allow", "deny", "ask"] {
        for key in ["connect", "send"] {
            let src = format!(
                "name = \"x\"\n[[{table}]]\n{key} = [\"tcp://api.example.com:443\", \"udp://*.example.com.:53\"]\n"
            );
            let p = Policy::from_toml(&src, "t").unwrap_or_else(|e| panic!("{e}"));
            assert!(p.has_host_names());
        }
        at(
            &format!("name = \"x\"\n[[{table}]]\n  bind = [\"tcp://*.example.com:80\"]\n"),
            3,
            11,
            K::HostNameInBind("*.example.com".into()),
        );
    }
    at(
        "name = \"x\"\n[[deny]]\nconnect = [\n  \"tcp://*.:443\",\n]\n",
        4,
        3,
        K::BadHostName {
            name: "*.".into(),
            reason: "`*.` needs a domain after it, as in `*.example.com`",
        },
    );
}

#[test]
fn unix_entry_errors_point_at_the_entry() {
    at(
        "name = \"x\"\n[[allow]]\nunix = [\"/ok\", \"run/x.sock\"]\n",
        3,
        16,
        K::RelativeUnixPath("run/x.sock".into()),
    );
    at(
        "name = \"x\"\n[[allow]]\nunix = [\"/a/b**\"]\n",
        3,
        9,
        K::BadDoubleStar("/a/b**".into()),
    );
    at(
        "name = \"x\"\n[[allow]]\nunix = [\"/a/../b\"]\n",
        3,
        9,
        K::DotComponent("/a/../b".into()),
    );
    at(
        "name = \"x\"\n[[allow]]\nunix = [\"/ok\", '/a\\b']\n",
        3,
        16,
        K::BadEscape("/a\\b".into()),
    );
    let e = err("name = \"x\"\n[[allow]]\nunix = ['@x\\']\n");
    assert_eq!(
        e.to_string(),
        "t.toml:3:9: in unix pattern `@x\\` a `\\` must be followed by `*`, `?` or `\\` (in a TOML basic string write it `\\\\`)"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    at(
        "name = \"é\"\n[[allow]]\nunix = [\"/é\", \"x\"]\n",
        3,
        15,
        K::RelativeUnixPath("x".into()),
    );
}

#[test]
fn the_first_error_in_file_order_wins() {
    at(
        "name = \"x\"\n[[allow]]\nconnect = [\"bad\"]\n[[deny]]\nbogus = 1\n",
        3,
        12,
        K::BadEndpoint("bad".into()),
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let src = format!(
        "name = \"x\"\nk = {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let e = err(&src);
    assert_eq!(e.line, 2, "{e}");
}
