//! The built-in profiles as the evaluator decides them, and canonical output.

use netjail_policy::{builtin, builtin_names, Action, Op, Policy, Proto, Request, Target, Verdict};

mod common;

use common::{abs, decides, inet, path, policy, req, tcp, EPERM, WEB};

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
    common::op(Op::Bind, proto, addr)
}

fn send(proto: Proto, addr: &str) -> Request {
    common::op(Op::Send, proto, addr)
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
