//! Evaluation: which rule decides, normalisation, built-ins, canonical output.

use netjail_policy::{
    builtin, builtin_names, Action, Op, Policy, Proto, Request, SocketRule, Target, Verdict,
};

mod common;

use common::{abs, decides, inet, op, path, policy, req, tcp, EPERM, WEB};

#[test]
fn rule_names_give_table_and_entry_index() {
    let p = policy(WEB);
    decides(
        &p,
        &tcp("127.0.0.1:8080"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(
        &p,
        &tcp("[::1]:8080"),
        Verdict::Allow,
        "allow[0].connect[1]",
    );
    decides(
        &p,
        &tcp("10.1.1.1:443"),
        Verdict::Allow,
        "allow[0].connect[2]",
    );
    decides(
        &p,
        &inet(Proto::Udp, "127.0.0.53:53"),
        Verdict::Allow,
        "allow[0].connect[3]",
    );
    decides(
        &p,
        &tcp("10.1.1.1:444"),
        Verdict::Allow,
        "allow[1].connect[0]",
    );
    decides(
        &p,
        &path("/run/user/1000/bus"),
        Verdict::Allow,
        "allow[1].unix[1]",
    );
    decides(&p, &path("/run/a/b/c"), Verdict::Allow, "allow[1].unix[2]");
    decides(&p, &abs(b"dbus-xyz"), Verdict::Allow, "allow[1].unix[3]");
    decides(&p, &tcp("192.0.2.1:443"), EPERM, "default");
    decides(&p, &inet(Proto::Udp, "127.0.0.1:8080"), EPERM, "default");
}

#[test]
fn deny_beats_allow_with_its_errno() {
    let p = policy(WEB);
    decides(&p, &tcp("169.254.169.254:80"), EPERM, "deny[0].connect[0]");
    let refused = Verdict::Deny {
        errno: libc::ECONNREFUSED,
    };
    // Also listed in allow[0] / allow[1]: deny wins.
    decides(&p, &tcp("10.9.1.1:443"), refused, "deny[1].connect[0]");
    decides(&p, &tcp("10.1.1.1:22"), refused, "deny[1].connect[1]");
    decides(&p, &path("/run/docker.sock"), refused, "deny[1].unix[0]");
    decides(&p, &path("/run//./docker.sock"), refused, "deny[1].unix[0]");
}

#[test]
fn every_deny_errno() {
    for (name, errno) in [
        ("EPERM", libc::EPERM),
        ("ECONNREFUSED", libc::ECONNREFUSED),
        ("EACCES", libc::EACCES),
        ("ENETUNREACH", libc::ENETUNREACH),
        ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ] {
        let p = policy(&format!(
            "name = \"e\"\ndefault = \"allow\"\n[[deny]]\nerrno = \"{name}\"\nconnect = [\"tcp://*:*\"]\n"
        ));
        decides(
            &p,
            &tcp("1.2.3.4:5"),
            Verdict::Deny { errno },
            "deny[0].connect[0]",
        );
        assert!(p.to_toml().contains(&format!("errno = \"{name}\"")));
    }
}

#[test]
fn s_n4_default_is_deny_when_unset() {
    let p = policy("name = \"n\"\n");
    assert_eq!(p.default_action(), Action::Deny);
    decides(&p, &tcp("127.0.0.1:80"), EPERM, "default");
    decides(&p, &path("/run/x"), EPERM, "default");
}

#[test]
fn default_allow_audits_everything_else() {
    let p = policy("name = \"a\"\ndefault = \"allow\"\n");
    assert_eq!(p.default_action(), Action::Allow);
    decides(&p, &tcp("8.8.8.8:53"), Verdict::Allow, "default");
}

#[test]
fn s_n2_loopback_keyword_covers_mapped_v6() {
    let p = policy("name = \"l\"\n[[allow]]\nconnect = [\"tcp://loopback:*\"]\n");
    for a in [
        "127.0.0.1:1",
        "127.1.2.3:1",
        "[::1]:1",
        "[::ffff:127.0.0.1]:1",
        "[::ffff:127.200.0.1]:1",
    ] {
        decides(&p, &tcp(a), Verdict::Allow, "allow[0].connect[0]");
    }
    for a in [
        "10.0.0.1:1",
        "[::2]:1",
        "[::ffff:10.0.0.1]:1",
        "[fe80::1]:1",
    ] {
        decides(&p, &tcp(a), EPERM, "default");
    }
}

#[test]
fn s_n2_mapped_policy_prefix_is_the_v4_network() {
    let p = policy("name = \"l\"\n[[allow]]\nconnect = [\"tcp://[::ffff:127.0.0.0/104]:*\"]\n");
    assert!(
        p.to_toml().contains("\"tcp://127.0.0.0/8:*\""),
        "{}",
        p.to_toml()
    );
    decides(
        &p,
        &tcp("127.3.3.3:9"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(
        &p,
        &tcp("[::ffff:127.3.3.3]:9"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&p, &tcp("[::1]:9"), EPERM, "default");
}

#[test]
fn mapped_destinations_cannot_dodge_a_v4_deny() {
    let p = policy(
        "name = \"m\"\ndefault = \"allow\"\n[[deny]]\nconnect = [\"any://169.254.0.0/16:*\"]\n",
    );
    decides(
        &p,
        &tcp("[::ffff:169.254.169.254]:80"),
        EPERM,
        "deny[0].connect[0]",
    );
    decides(
        &p,
        &tcp("[::ffff:a9fe:a9fe]:80"),
        EPERM,
        "deny[0].connect[0]",
    );
}

/// R1: an unspecified destination goes to the socket's own source address, which only the
/// broker can read; one that reaches the evaluator is refused, whatever the tables say.
#[test]
fn r1_unspecified_destinations_are_refused() {
    let p = policy("name = \"u\"\ndefault = \"allow\"\n[[allow]]\nconnect = [\"any://*:*\", \"any://[::/0]:*\"]\n");
    for dest in ["0.0.0.0:80", "[::ffff:0.0.0.0]:80", "[::]:80"] {
        decides(&p, &tcp(dest), EPERM, "unspecified-destination");
        let send = op(Op::Send, Proto::Udp, dest);
        decides(&p, &send, EPERM, "unspecified-destination");
    }
    // A bind's wildcard is no destination: bind entries decide it.
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
        Verdict::Allow,
        "default",
    );
}

/// L11: a `[[deny]]` entry of an IPv4 address also covers the IPv6 forms that carry it by a
/// well-known translation (NAT64 `64:ff9b::/96`, IPv4-compatible, 6to4); allow entries of
/// the IPv4 address do not grant those IPv6 destinations.
#[test]
fn l11_deny_of_ipv4_covers_nat64_compat_and_6to4_forms() {
    let p = policy(
        "name = \"n\"\ndefault = \"deny\"\n[[deny]]\nconnect = [\"tcp://169.254.169.254:*\", \"any://loopback:22\"]\n\
         [[allow]]\nconnect = [\"tcp://[::/0]:*\", \"tcp://10.0.0.1:443\"]\n",
    );
    for dest in [
        "[64:ff9b::a9fe:a9fe]:80",
        "[::169.254.169.254]:80",
        "[2002:a9fe:a9fe::1]:80",
    ] {
        decides(&p, &tcp(dest), EPERM, "deny[0].connect[0]");
    }
    decides(
        &p,
        &tcp("[64:ff9b::7f00:1]:22"),
        EPERM,
        "deny[0].connect[1]",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "[::127.0.0.2]:22"),
        EPERM,
        "deny[0].connect[1]",
    );
    // Other IPv6 destinations are the allow entry's.
    decides(
        &p,
        &tcp("[64:ff9b::a00:2]:80"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(
        &p,
        &tcp("[64:ff9b:1::a9fe:a9fe]:80"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    // An IPv4 allow entry covers the IPv4 address only.
    let v4 = policy("name = \"v\"\n[[allow]]\nconnect = [\"tcp://10.0.0.1:443\"]\n");
    decides(
        &v4,
        &tcp("10.0.0.1:443"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&v4, &tcp("[64:ff9b::a00:1]:443"), EPERM, "default");
    decides(&v4, &tcp("[::10.0.0.1]:443"), EPERM, "default");
    // Binds are not destinations.
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "[::127.0.0.1]:2222"),
        EPERM,
        "default",
    );
}

#[test]
fn port_ranges_at_their_bounds() {
    let p = policy("name = \"p\"\n[[allow]]\nconnect = [\"tcp://*:1024-2048\", \"udp://*:0\", \"udp://*:65535\"]\n");
    decides(
        &p,
        &tcp("1.1.1.1:1024"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(
        &p,
        &tcp("1.1.1.1:2048"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&p, &tcp("1.1.1.1:1023"), EPERM, "default");
    decides(&p, &tcp("1.1.1.1:2049"), EPERM, "default");
    decides(
        &p,
        &inet(Proto::Udp, "1.1.1.1:0"),
        Verdict::Allow,
        "allow[0].connect[1]",
    );
    decides(
        &p,
        &inet(Proto::Udp, "1.1.1.1:65535"),
        Verdict::Allow,
        "allow[0].connect[2]",
    );
    decides(&p, &inet(Proto::Udp, "1.1.1.1:1"), EPERM, "default");
}

#[test]
fn proto_any_covers_other_transports() {
    let p = policy("name = \"p\"\n[[allow]]\nconnect = [\"tcp://*:1\", \"any://*:2\"]\n");
    decides(&p, &inet(Proto::Other, "1.1.1.1:1"), EPERM, "default");
    decides(
        &p,
        &inet(Proto::Other, "1.1.1.1:2"),
        Verdict::Allow,
        "allow[0].connect[1]",
    );
}

/// F1: `AF_UNSPEC` is never a destination the policy allows: the broker decodes it to what
/// the kernel does with it before it asks, and the evaluator refuses it even under
/// `default = "allow"`.
#[test]
fn f1_unspec_is_never_allowed_and_other_families_get_the_default() {
    let deny = policy("name = \"d\"\n");
    decides(&deny, &req(Target::Unspec), EPERM, "unspec");
    decides(
        &deny,
        &req(Target::OtherFamily(libc::AF_VSOCK)),
        EPERM,
        "default",
    );
    let allow = policy("name = \"a\"\ndefault = \"allow\"\n[[deny]]\nconnect = [\"any://*:*\"]\nunix = [\"/**\", \"@*\"]\n");
    decides(&allow, &req(Target::Unspec), EPERM, "unspec");
    decides(
        &allow,
        &req(Target::OtherFamily(38)),
        Verdict::Allow,
        "default",
    );
}

#[test]
fn s_d2_path_globs_and_abstract_names_are_separate() {
    let p = policy("name = \"u\"\n[[allow]]\nunix = [\"/**\"]\n[[allow]]\nunix = [\"@x*\"]\n");
    decides(
        &p,
        &path("/anything/at/all"),
        Verdict::Allow,
        "allow[0].unix[0]",
    );
    decides(&p, &abs(b"/anything"), EPERM, "default");
    decides(&p, &abs(b"xyz"), Verdict::Allow, "allow[1].unix[0]");
    decides(&p, &path("/xyz"), Verdict::Allow, "allow[0].unix[0]");
    let only_abs = policy("name = \"u\"\n[[allow]]\nunix = [\"@*\"]\n");
    decides(&only_abs, &path("/xyz"), EPERM, "default");
}

#[test]
fn unix_globs_star_question_and_double_star() {
    let p = policy(
        "name = \"g\"\n[[allow]]\nunix = [\"/tmp/.X11-unix/X?\", \"/run/user/*/bus\", \"/srv/**/sock\"]\n",
    );
    decides(
        &p,
        &path("/tmp/.X11-unix/X0"),
        Verdict::Allow,
        "allow[0].unix[0]",
    );
    decides(&p, &path("/tmp/.X11-unix/X10"), EPERM, "default");
    decides(
        &p,
        &path("/run/user/1000/bus"),
        Verdict::Allow,
        "allow[0].unix[1]",
    );
    decides(&p, &path("/run/user/1000/x/bus"), EPERM, "default");
    decides(&p, &path("/srv/sock"), Verdict::Allow, "allow[0].unix[2]");
    decides(
        &p,
        &path("/srv/a/b/c/sock"),
        Verdict::Allow,
        "allow[0].unix[2]",
    );
    decides(&p, &path("/srv/a/b/c/sock2"), EPERM, "default");
}

#[test]
fn unresolved_unix_paths_fail_closed() {
    let p = policy("name = \"a\"\ndefault = \"allow\"\n[[allow]]\nunix = [\"/**\"]\n");
    decides(&p, &path("relative.sock"), EPERM, "invalid-target");
    decides(
        &p,
        &path("/tmp/../run/docker.sock"),
        EPERM,
        "invalid-target",
    );
    decides(&p, &path("/tmp/..x/ok"), Verdict::Allow, "allow[0].unix[0]");
}

#[test]
fn s_l2_sockets_default_and_explicit() {
    let p = policy("name = \"s\"\n");
    let rule = |family, sock_type| SocketRule {
        family: Some(family),
        sock_type,
        protocol: None,
    };
    let route = |sock_type| SocketRule {
        family: Some(libc::AF_NETLINK),
        sock_type: Some(sock_type),
        protocol: Some(libc::NETLINK_ROUTE),
    };
    assert_eq!(
        p.sockets(),
        [
            rule(libc::AF_UNIX, None),
            rule(libc::AF_INET, Some(libc::SOCK_STREAM)),
            rule(libc::AF_INET, Some(libc::SOCK_DGRAM)),
            rule(libc::AF_INET6, Some(libc::SOCK_STREAM)),
            rule(libc::AF_INET6, Some(libc::SOCK_DGRAM)),
            route(libc::SOCK_RAW),
            route(libc::SOCK_DGRAM),
        ]
    );
    let p =
        policy("name = \"s\"\n[sockets]\nallow = [\"vsock:stream\", \"netlink:raw\", \"42:*\"]\n");
    assert_eq!(
        p.sockets(),
        [
            rule(libc::AF_VSOCK, Some(libc::SOCK_STREAM)),
            rule(libc::AF_NETLINK, Some(libc::SOCK_RAW)),
            rule(42, None),
        ]
    );
    let p = policy("name = \"s\"\n[sockets]\nallow = []\n");
    assert!(p.sockets().is_empty());
}

#[test]
fn builtins_parse_and_behave() {
    assert_eq!(
        builtin_names(),
        [
            "allow-all",
            "deny-all",
            "disablenetwork",
            "jail",
            "loopback-only",
            "tcp-ports"
        ]
    );
    for name in builtin_names() {
        let src = builtin(name).expect("listed built-in exists");
        let p =
            Policy::from_toml(src, &format!("builtin:{name}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), *name);
        let again = Policy::from_toml(&p.to_toml(), "shown").unwrap();
        assert_eq!(again, p);
    }
    let get = |n: &str| Policy::from_toml(builtin(n).unwrap(), n).unwrap();

    let deny_all = get("deny-all");
    assert_eq!(deny_all.default_action(), Action::Deny);
    decides(&deny_all, &tcp("127.0.0.1:80"), EPERM, "default");
    decides(&deny_all, &path("/run/x"), EPERM, "default");

    let lo = get("loopback-only");
    decides(
        &lo,
        &tcp("127.0.0.1:80"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(
        &lo,
        &inet(Proto::Udp, "[::1]:53"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&lo, &tcp("0.0.0.0:80"), EPERM, "unspecified-destination");
    decides(
        &lo,
        &tcp("[::ffff:127.0.0.1]:80"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&lo, &tcp("1.1.1.1:80"), EPERM, "default");
    decides(
        &lo,
        &path("/tmp/.X11-unix/X0"),
        Verdict::Allow,
        "allow[0].unix[0]",
    );
    decides(&lo, &abs(b"anything"), EPERM, "default");

    let all = get("allow-all");
    assert_eq!(all.default_action(), Action::Allow);
    decides(&all, &tcp("1.1.1.1:80"), Verdict::Allow, "default");
    assert!(builtin("nope").is_none());
}

fn bind(proto: Proto, addr: &str) -> Request {
    Request {
        op: Op::Bind,
        target: Target::Inet {
            proto,
            addr: addr.parse().unwrap(),
        },
    }
}

fn send(proto: Proto, addr: &str) -> Request {
    Request {
        op: Op::Send,
        ..inet(proto, addr)
    }
}

/// The seed profiles decide as `docs/profiles.md` says (the end-to-end proofs are
/// `integration-tests/tests/e2e/profiles.rs`).
#[test]
fn seed_profiles_decide_as_documented() {
    use netjail_policy::IoctlMode;
    let get = |n: &str| Policy::from_toml(builtin(n).unwrap(), n).unwrap();
    let unix_only = |p: &Policy| {
        p.sockets()
            .iter()
            .all(|r| r.family == Some(libc::AF_UNIX) && r.sock_type.is_none())
    };

    // D1-D3: nothing but filesystem unix sockets.
    let dn = get("disablenetwork");
    assert!(unix_only(&dn), "{:?}", dn.sockets());
    assert_eq!(
        dn.sockets_refuse(),
        libc::EPERM,
        "D1: socket() fails with EPERM"
    );
    decides(&dn, &tcp("127.0.0.1:80"), EPERM, "default");
    decides(&dn, &send(Proto::Udp, "127.0.0.1:53"), EPERM, "default");
    decides(&dn, &bind(Proto::Tcp, "127.0.0.1:0"), EPERM, "default");
    decides(
        &dn,
        &path("/tmp/.X11-unix/X0"),
        Verdict::Allow,
        "allow[0].unix[0]",
    );
    decides(&dn, &abs(b"/tmp/.X11-unix/X0"), EPERM, "default");
    assert!(dn.confinement().scm_rights() && dn.confinement().fcntl_setown());

    // J1-J8: one jail address, nothing reached unless allowed.
    let jail = get("jail");
    let c = jail.confinement();
    assert_eq!(
        c.jail_address_for(false),
        Some("127.0.0.2".parse().unwrap())
    );
    assert_eq!(c.jail_address_for(true), None);
    assert!(!c.scm_rights() && !c.fcntl_setown());
    assert_eq!(c.ioctl(), IoctlMode::SafeList);
    assert!(c.keep_capabilities().is_empty());
    decides(
        &jail,
        &bind(Proto::Tcp, "127.0.0.2:0"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
    decides(
        &jail,
        &bind(Proto::Udp, "127.0.0.2:8080"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
    decides(
        &jail,
        &bind(Proto::Tcp, "127.0.0.1:0"),
        EPERM,
        "jail-address",
    );
    decides(&jail, &bind(Proto::Tcp, "[::1]:0"), EPERM, "jail-address");
    decides(
        &jail,
        &bind(Proto::Tcp, "127.0.0.2:80"),
        EPERM,
        "privileged-port",
    );
    decides(&jail, &tcp("127.0.0.2:80"), EPERM, "default");
    decides(&jail, &send(Proto::Udp, "127.0.0.1:53"), EPERM, "default");
    decides(
        &jail,
        &path("/run/dbus/system_bus_socket"),
        EPERM,
        "default",
    );

    // L1-L4: TCP by port alone; no UDP socket, no datagram destination.
    let tp = get("tcp-ports");
    let listed: Vec<_> = tp
        .sockets()
        .iter()
        .map(|r| (r.family.unwrap_or(-1), r.sock_type))
        .collect();
    assert_eq!(
        listed,
        [
            (libc::AF_INET, Some(libc::SOCK_STREAM)),
            (libc::AF_INET6, Some(libc::SOCK_STREAM)),
            (libc::AF_UNIX, None)
        ]
    );
    for (dest, rule) in [
        ("127.0.0.1:80", "allow[0].connect[0]"),
        ("93.184.215.14:443", "allow[0].connect[1]"),
        ("[2001:db8::1]:443", "allow[0].connect[1]"),
    ] {
        decides(&tp, &tcp(dest), Verdict::Allow, rule);
    }
    decides(&tp, &tcp("127.0.0.1:8080"), EPERM, "default");
    decides(&tp, &inet(Proto::Udp, "127.0.0.1:443"), EPERM, "default");
    decides(&tp, &send(Proto::Udp, "127.0.0.1:443"), EPERM, "default");
    for addr in ["0.0.0.0:8080", "127.0.0.1:8080", "[::]:8080"] {
        decides(
            &tp,
            &bind(Proto::Tcp, addr),
            Verdict::Allow,
            "allow[0].bind[0]",
        );
    }
    decides(&tp, &bind(Proto::Tcp, "127.0.0.1:0"), EPERM, "default");
    decides(&tp, &bind(Proto::Udp, "127.0.0.1:8080"), EPERM, "default");
    decides(&tp, &path("/run/x"), EPERM, "default");
    decides(
        &tp,
        &req(Target::OtherFamily(libc::AF_VSOCK)),
        EPERM,
        "default",
    );
}

#[test]
fn to_toml_is_canonical_and_reparses() {
    let p = policy(WEB);
    let shown = p.to_toml();
    let expected = r#"name = "web-client"
default = "deny"
ask_timeout = "30s"
ask_fallback = "deny"
keep_capabilities = []
ioctl = "any"
namespaces = []
scm_rights = true
fcntl_setown = true
source_cmsgs = false
landlock = "best-effort"

[sockets]
allow = ["unix:*", "inet:stream", "inet:dgram", "inet6:stream", "inet6:dgram", "netlink:raw:route", "netlink:dgram:route"]
refuse = "EAFNOSUPPORT"

[limits]
max_connections = -1
max_binds = -1
max_pending = -1
max_calls_per_second = -1

[[deny]]
errno = "EPERM"
connect = ["tcp://169.254.169.254:*"]

[[deny]]
errno = "ECONNREFUSED"
connect = ["any://10.9.0.0/16:*", "tcp://10.0.0.0/8:22"]
unix = ["/run/docker.sock"]

[[allow]]
connect = ["tcp://127.0.0.1:8080", "tcp://[::1]:8080", "tcp://10.0.0.0/8:443", "udp://127.0.0.53:53"]

[[allow]]
connect = ["tcp://10.0.0.0/8:*"]
unix = ["/tmp/.X11-unix/X*", "/run/user/*/bus", "/run/**", "@dbus-*"]
"#;
    assert_eq!(shown, expected);
    let again = Policy::from_toml(&shown, "shown").unwrap();
    assert_eq!(again, p);
    assert_eq!(again.to_toml(), shown);
}

#[test]
fn to_toml_escapes_strange_names() {
    let p = policy(
        "name = \"a \\\"quoted\\\" \\\\ name\\u0001\"\n[[allow]]\nunix = [\"@a\\u0000b\"]\n",
    );
    let again = Policy::from_toml(&p.to_toml(), "shown").unwrap();
    assert_eq!(again, p);
    assert_eq!(again.name(), "a \"quoted\" \\ name\u{1}");
    decides(&again, &abs(b"a\0b"), Verdict::Allow, "allow[0].unix[0]");
}

#[test]
fn inline_rule_tables_are_accepted() {
    let p = policy("name = \"i\"\nallow = [{ connect = [\"tcp://*:1\"] }]\n");
    decides(&p, &tcp("1.1.1.1:1"), Verdict::Allow, "allow[0].connect[0]");
}

const DATAGRAMS: &str = r#"
name = "datagrams"

[[deny]]
send = ["udp://127.0.0.9:*"]

[[allow]]
connect = ["udp://127.0.0.53:53", "tcp://127.0.0.1:80"]
send = ["udp://127.0.0.1:5353", "any://[::1]:7000-7010"]
"#;

/// L3: every datagram destination is decided; `connect` and `send` entries grant the same
/// thing for datagram sockets, and a `send` entry never grants a TCP connect.
#[test]
fn s_l3_send_and_udp_connect_share_entries() {
    let p = policy(DATAGRAMS);
    let allow = Verdict::Allow;
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "127.0.0.1:5353"),
        allow,
        "allow[0].send[0]",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "127.0.0.53:53"),
        allow,
        "allow[0].connect[0]",
    );
    decides(
        &p,
        &op(Op::Connect, Proto::Udp, "127.0.0.1:5353"),
        allow,
        "allow[0].send[0]",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "[::ffff:127.0.0.1]:5353"),
        allow,
        "allow[0].send[0]",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "[::1]:7005"),
        allow,
        "allow[0].send[1]",
    );
    decides(
        &p,
        &op(Op::Connect, Proto::Tcp, "[::1]:7005"),
        EPERM,
        "default",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "127.0.0.1:5354"),
        EPERM,
        "default",
    );
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "127.0.0.9:5353"),
        EPERM,
        "deny[0].send[0]",
    );
    decides(
        &p,
        &op(Op::Connect, Proto::Udp, "127.0.0.9:1"),
        EPERM,
        "deny[0].send[0]",
    );
    // A TCP connect is granted by `connect` entries only.
    decides(
        &p,
        &op(Op::Connect, Proto::Tcp, "127.0.0.1:80"),
        allow,
        "allow[0].connect[1]",
    );
    decides(
        &p,
        &op(Op::Connect, Proto::Tcp, "127.0.0.1:5353"),
        EPERM,
        "default",
    );
}

const SERVER: &str = r#"
name = "server"

[[deny]]
bind = ["tcp://*:6000-6010"]

[[allow]]
bind = ["tcp://127.0.0.1:0", "tcp://0.0.0.0:8080", "udp://[::]:*", "tcp://*:6000-7000", "tcp://*:80"]
"#;

/// D1 and L1: a bind is allowed only by a `bind` entry; the wildcard address is matched as
/// the wildcard it is, not as loopback; port 0 is the ephemeral bind.
#[test]
fn s_d1_s_l1_bind_by_address_and_port() {
    let p = policy(SERVER);
    let allow = Verdict::Allow;
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.1:0"),
        allow,
        "allow[0].bind[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.1:8081"),
        EPERM,
        "default",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
        allow,
        "allow[0].bind[1]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.1:8080"),
        EPERM,
        "default",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "[::ffff:0.0.0.0]:8080"),
        allow,
        "allow[0].bind[1]",
    );
    decides(&p, &op(Op::Bind, Proto::Tcp, "0.0.0.0:0"), EPERM, "default");
    decides(
        &p,
        &op(Op::Bind, Proto::Udp, "[::]:5000"),
        allow,
        "allow[0].bind[2]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "10.0.0.1:6005"),
        EPERM,
        "deny[0].bind[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "10.0.0.1:6500"),
        allow,
        "allow[0].bind[3]",
    );
    // A connect is not a bind.
    decides(
        &p,
        &op(Op::Connect, Proto::Tcp, "127.0.0.1:8080"),
        EPERM,
        "default",
    );
}

/// J8: a privileged port is granted only by an entry that names privileged ports; `*` and
/// `default = "allow"` never grant one, unless the policy keeps CAP_NET_BIND_SERVICE.
#[test]
fn s_j8_privileged_ports_only_by_name() {
    let p = policy(SERVER);
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.1:80"),
        Verdict::Allow,
        "allow[0].bind[4]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Udp, "[::]:53"),
        EPERM,
        "privileged-port",
    );
    let all = policy("name = \"a\"\ndefault = \"allow\"\n");
    decides(
        &all,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:443"),
        EPERM,
        "privileged-port",
    );
    decides(
        &all,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:1024"),
        Verdict::Allow,
        "default",
    );
    decides(
        &all,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:0"),
        Verdict::Allow,
        "default",
    );
    let kept = policy(
        "name = \"k\"\ndefault = \"allow\"\nkeep_capabilities = [\"CAP_NET_BIND_SERVICE\"]\n",
    );
    decides(
        &kept,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:443"),
        Verdict::Allow,
        "default",
    );
    let ranged = policy("name = \"r\"\n[[allow]]\nbind = [\"tcp://*:1-1023\"]\n");
    decides(
        &ranged,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:22"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
}

/// J2: with a jail address a bind goes to it only; the other family, without a jail
/// address of its own, cannot bind at all.
#[test]
fn s_j2_bind_restricted_to_the_jail_address() {
    let p =
        policy("name = \"j\"\njail_address = \"127.0.0.2\"\n[[allow]]\nbind = [\"any://*:*\"]\n");
    let c = p.confinement();
    assert_eq!(
        c.jail_address_for(false),
        Some("127.0.0.2".parse().unwrap())
    );
    assert_eq!(c.jail_address_for(true), None);
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.2:8080"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Udp, "[::ffff:127.0.0.2]:0"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "127.0.0.1:8080"),
        EPERM,
        "jail-address",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
        EPERM,
        "jail-address",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "[::1]:8080"),
        EPERM,
        "jail-address",
    );
    // Connects are not restricted by the jail address (they leave from it).
    decides(
        &p,
        &op(Op::Connect, Proto::Tcp, "127.0.0.1:80"),
        EPERM,
        "default",
    );
}

#[test]
fn confinement_defaults_and_settings() {
    let d = policy("name = \"d\"\n");
    let c = d.confinement();
    assert!(c.scm_rights() && c.fcntl_setown() && !c.source_cmsgs() && !c.has_jail());
    assert_eq!(c.ioctl(), netjail_policy::IoctlMode::Any);
    assert_eq!(c.landlock(), netjail_policy::LandlockMode::BestEffort);
    assert_eq!(c.namespaces(), netjail_policy::NamespaceGrant::default());
    assert!(c.keep_capabilities().is_empty());
    let s = policy(
        r#"
name = "s"
keep_capabilities = ["CAP_NET_RAW", "CAP_NET_RAW", "CAP_SYS_PTRACE"]
ioctl = "safe-list"
namespaces = ["net"]
scm_rights = false
fcntl_setown = false
landlock = "required"
jail_address = ["[fd00::2]"]
"#,
    );
    let c = s.confinement();
    assert_eq!(c.keep_capabilities(), &[13, 19]);
    assert_eq!(c.ioctl(), netjail_policy::IoctlMode::SafeList);
    assert_eq!(c.landlock(), netjail_policy::LandlockMode::Required);
    assert!(c.namespaces().net && !c.namespaces().user && !c.namespaces().mount);
    assert!(!c.scm_rights() && !c.fcntl_setown());
    assert_eq!(c.jail_address_for(true), Some("fd00::2".parse().unwrap()));
    let shown = s.to_toml();
    assert!(
        shown.contains("keep_capabilities = [\"CAP_NET_RAW\", \"CAP_SYS_PTRACE\"]"),
        "{shown}"
    );
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), s);
}

/// rt_a_userns_bind_mount: `"mount"` is a namespace kind of its own, parsed, shown and read
/// back; `"user"` does not imply it.
#[test]
fn rt_a_mount_namespace_is_granted_by_name_only() {
    let user = policy("name = \"u\"\nnamespaces = [\"user\"]\n");
    assert!(user.confinement().namespaces().user && !user.confinement().namespaces().mount);
    let m = policy("name = \"m\"\nnamespaces = [\"user\", \"mount\"]\n");
    let ns = m.confinement().namespaces();
    assert!(ns.user && ns.mount && !ns.net);
    let shown = m.to_toml();
    assert!(
        shown.contains("namespaces = [\"user\", \"mount\"]"),
        "{shown}"
    );
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), m);
}

/// L4: a netlink socket the policy lists may bind and send (to the kernel); other families,
/// and netlink when it is not listed, fall to the default; a connect is never covered. The
/// default list names netlink route sockets (reading interfaces), and `*:*` every family.
#[test]
fn s_l4_listed_netlink_binds_and_sends() {
    let listed = policy("name = \"n\"\n[sockets]\nallow = [\"netlink:raw\", \"vsock:*\"]\n");
    let unlisted = policy("name = \"n\"\n[sockets]\nallow = [\"unix:*\", \"inet:stream\"]\n");
    let default_list = policy("name = \"n\"\n");
    let every = policy("name = \"n\"\n[sockets]\nallow = [\"*:*\"]\n");
    let req = |op, family| Request {
        op,
        target: Target::OtherFamily(family),
    };
    let nl = libc::AF_NETLINK;
    decides(
        &listed,
        &req(Op::Bind, nl),
        Verdict::Allow,
        "sockets.netlink",
    );
    decides(
        &listed,
        &req(Op::Send, nl),
        Verdict::Allow,
        "sockets.netlink",
    );
    decides(&listed, &req(Op::Connect, nl), EPERM, "default");
    decides(&listed, &req(Op::Send, libc::AF_VSOCK), EPERM, "default");
    decides(&unlisted, &req(Op::Bind, nl), EPERM, "default");
    for p in [&default_list, &every] {
        decides(p, &req(Op::Bind, nl), Verdict::Allow, "sockets.netlink");
        decides(p, &req(Op::Send, nl), Verdict::Allow, "sockets.netlink");
        decides(p, &req(Op::Connect, nl), EPERM, "default");
    }
}
