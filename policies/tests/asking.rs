//! Evaluation of `[[ask]]` tables, `ask_timeout`/`ask_fallback`, host names through a
//! [`Names`] oracle, and operators' overlay policies (issue 5).

use netjail_policy::{
    Action, Decision, HostPattern, NameMatch, Names, NoNames, Op, Policy, Proto, Request, Target,
    Verdict,
};

mod common;

use common::{decides, op, path, policy, req, tcp, EPERM, WEB};

const ASKING: &str = r#"
name = "asking"
default = "deny"

[[ask]]
connect = ["tcp://*:443", "tcp://10.0.0.0/8:*"]
unix = ["/run/**"]

[[allow]]
connect = ["tcp://10.0.0.1:443"]

[[ask]]
send = ["udp://*:53"]
bind = ["tcp://*:8000-9000", "tcp://*:80"]

[[deny]]
connect = ["tcp://10.9.9.9:*"]
unix = ["/run/secret.sock"]
"#;

/// Issue 5: `[[deny]]`, then `[[allow]]`, then `[[ask]]`, then the default, wherever the
/// tables stand in the file; ask labels count the `[[ask]]` tables alone.
#[test]
fn deny_then_allow_then_ask_then_default() {
    let p = policy(ASKING);
    let ask = Verdict::Ask;
    decides(&p, &tcp("10.9.9.9:443"), EPERM, "deny[0].connect[0]");
    decides(
        &p,
        &tcp("10.0.0.1:443"),
        Verdict::Allow,
        "allow[0].connect[0]",
    );
    decides(&p, &tcp("10.0.0.2:443"), ask, "ask[0].connect[0]");
    decides(&p, &tcp("[2001:db8::1]:443"), ask, "ask[0].connect[0]");
    decides(&p, &tcp("10.0.0.2:22"), ask, "ask[0].connect[1]");
    decides(&p, &tcp("192.0.2.1:22"), EPERM, "default");
    decides(&p, &path("/run/user/1/bus"), ask, "ask[0].unix[0]");
    decides(&p, &path("/run/secret.sock"), EPERM, "deny[0].unix[0]");
    decides(
        &p,
        &op(Op::Send, Proto::Udp, "192.0.2.1:53"),
        ask,
        "ask[1].send[0]",
    );
    decides(
        &p,
        &op(Op::Connect, Proto::Udp, "192.0.2.1:53"),
        ask,
        "ask[1].send[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
        ask,
        "ask[1].bind[0]",
    );
    // J8: an ask entry naming a privileged port may ask for it, a broad one may not.
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:80"),
        ask,
        "ask[1].bind[1]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:443"),
        EPERM,
        "privileged-port",
    );
    let shown = p.to_toml();
    assert!(
        shown.ends_with(
            "\n[[ask]]\nconnect = [\"tcp://*:443\", \"tcp://10.0.0.0/8:*\"]\nunix = [\"/run/**\"]\n\
             \n[[ask]]\nsend = [\"udp://*:53\"]\nbind = [\"tcp://*:8000-9000\", \"tcp://*:80\"]\n"
        ),
        "{shown}"
    );
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), p);
}

/// Issue 5: `default = "ask"` holds what no rule decides, except a privileged bind (J8),
/// which the default never grants and so never asks for.
#[test]
fn s_j8_default_ask_never_asks_for_a_privileged_port() {
    let p = policy("name = \"a\"\ndefault = \"ask\"\n[[allow]]\nbind = [\"tcp://*:*\"]\n");
    assert_eq!(p.default_action(), Action::Ask);
    decides(&p, &tcp("192.0.2.1:443"), Verdict::Ask, "default");
    decides(&p, &path("/run/x"), Verdict::Ask, "default");
    decides(
        &p,
        &req(Target::OtherFamily(libc::AF_VSOCK)),
        Verdict::Ask,
        "default",
    );
    decides(&p, &req(Target::Unspec), EPERM, "unspec");
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:8080"),
        Verdict::Allow,
        "allow[0].bind[0]",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:80"),
        EPERM,
        "privileged-port",
    );
    decides(
        &p,
        &op(Op::Bind, Proto::Udp, "[::]:53"),
        EPERM,
        "privileged-port",
    );
    let kept =
        policy("name = \"k\"\ndefault = \"ask\"\nkeep_capabilities = [\"CAP_NET_BIND_SERVICE\"]\n");
    decides(
        &kept,
        &op(Op::Bind, Proto::Tcp, "0.0.0.0:80"),
        Verdict::Ask,
        "default",
    );
    assert!(p.to_toml().contains("\ndefault = \"ask\"\n"));
    assert_eq!(Policy::from_toml(&p.to_toml(), "shown").unwrap(), p);
}

/// Issue 5: how long a held call waits, and what it gets when nobody answers.
#[test]
fn ask_timeout_and_fallback() {
    use std::time::Duration;
    let d = policy("name = \"d\"\n");
    assert_eq!(d.ask_timeout(), Duration::from_secs(30));
    assert_eq!(d.ask_fallback(), EPERM);
    let s = policy(
        "name = \"s\"\ndefault = \"ask\"\nask_timeout = \"90s\"\nask_fallback = \"allow\"\n",
    );
    assert_eq!(s.ask_timeout(), Duration::from_secs(90));
    assert_eq!(s.ask_fallback(), Verdict::Allow);
    let shown = s.to_toml();
    assert!(
        shown.starts_with(
            "name = \"s\"\ndefault = \"ask\"\nask_timeout = \"1m30s\"\nask_fallback = \"allow\"\n"
        ),
        "{shown}"
    );
    assert_eq!(Policy::from_toml(&shown, "shown").unwrap(), s);
    let ms = policy("name = \"m\"\nask_timeout = \"1s250ms\"\nask_fallback = \"deny\"\n");
    assert_eq!(ms.ask_timeout(), Duration::from_millis(1250));
    assert_eq!(ms.ask_fallback(), EPERM);
    // Both are part of what the fingerprint covers.
    assert_ne!(d.fingerprint(), ms.fingerprint());
    assert_ne!(
        policy("name = \"d\"\nask_fallback = \"allow\"\n").fingerprint(),
        d.fingerprint()
    );
}

/// A resolver for tests: names with their addresses, and patterns whose lookups fail. It
/// keeps the addresses it was asked about.
struct FakeDns {
    records: Vec<(&'static str, &'static str)>,
    broken: Vec<&'static str>,
    asked: std::cell::RefCell<Vec<std::net::IpAddr>>,
}

impl FakeDns {
    fn new(records: &[(&'static str, &'static str)], broken: &[&'static str]) -> FakeDns {
        FakeDns {
            records: records.to_vec(),
            broken: broken.to_vec(),
            asked: Default::default(),
        }
    }
}

impl Names for FakeDns {
    fn lookup(&self, pattern: &HostPattern, ip: std::net::IpAddr) -> NameMatch {
        self.asked.borrow_mut().push(ip);
        if self.broken.contains(&pattern.to_string().as_str()) {
            return NameMatch::Unknown;
        }
        self.records
            .iter()
            .find(|(name, addr)| addr.parse() == Ok(ip) && pattern.covers(name))
            .map_or(NameMatch::No, |(name, _)| {
                NameMatch::Yes((*name).to_owned())
            })
    }
}

#[track_caller]
fn decides_by_name(
    p: &Policy,
    names: &dyn Names,
    r: &Request,
    verdict: Verdict,
    rule: &str,
    host: Option<&str>,
) {
    assert_eq!(
        p.evaluate_with(r, names),
        Decision {
            verdict,
            rule: rule.into(),
            host: host.map(str::to_owned),
        },
        "{}",
        r.target
    );
}

const NAMED: &str = r#"
name = "named"
default = "deny"

[[deny]]
connect = ["tcp://*.evil.example:*"]

[[allow]]
connect = ["tcp://API.example.com.:443", "tcp://*.cdn.example.com:443", "tcp://10.0.0.1:443"]
send = ["udp://ntp.example.org:123"]

[[ask]]
connect = ["tcp://*.example.com:*", "tcp://api.example.com:*"]
"#;

const RECORDS: &[(&str, &str)] = &[
    ("api.example.com", "192.0.2.10"),
    ("a.cdn.example.com", "192.0.2.20"),
    ("x.y.cdn.example.com", "2001:db8::20"),
    ("cdn.example.com", "192.0.2.30"),
    ("www.example.com", "192.0.2.40"),
    ("bad.evil.example", "203.0.113.6"),
    ("ntp.example.org", "192.0.2.123"),
];

/// Issue 5: entries with host names match by the broker's answer; `*.domain` covers names
/// strictly under the domain, at any depth; the decision says which name.
#[test]
fn host_names_match_by_the_brokers_answer() {
    let p = policy(NAMED);
    let dns = FakeDns::new(RECORDS, &[]);
    let allow = Verdict::Allow;
    let ask = Verdict::Ask;
    let by = |r: &Request, v, rule: &str, host: Option<&str>| {
        decides_by_name(&p, &dns, r, v, rule, host);
    };
    by(
        &tcp("192.0.2.10:443"),
        allow,
        "allow[0].connect[0]",
        Some("api.example.com"),
    );
    by(
        &tcp("192.0.2.20:443"),
        allow,
        "allow[0].connect[1]",
        Some("a.cdn.example.com"),
    );
    by(
        &tcp("[2001:db8::20]:443"),
        allow,
        "allow[0].connect[1]",
        Some("x.y.cdn.example.com"),
    );
    // The domain itself is not under itself: cdn.example.com falls to the ask table.
    by(
        &tcp("192.0.2.30:443"),
        ask,
        "ask[0].connect[0]",
        Some("cdn.example.com"),
    );
    by(
        &tcp("192.0.2.10:80"),
        ask,
        "ask[0].connect[0]",
        Some("api.example.com"),
    );
    by(
        &tcp("192.0.2.40:22"),
        ask,
        "ask[0].connect[0]",
        Some("www.example.com"),
    );
    by(
        &tcp("203.0.113.6:443"),
        EPERM,
        "deny[0].connect[0]",
        Some("bad.evil.example"),
    );
    by(&tcp("10.0.0.1:443"), allow, "allow[0].connect[2]", None);
    by(&tcp("198.51.100.1:443"), EPERM, "default", None);
    by(
        &op(Op::Send, Proto::Udp, "192.0.2.123:123"),
        allow,
        "allow[0].send[0]",
        Some("ntp.example.org"),
    );
    by(
        &op(Op::Connect, Proto::Udp, "192.0.2.123:123"),
        allow,
        "allow[0].send[0]",
        Some("ntp.example.org"),
    );
    by(
        &op(Op::Send, Proto::Udp, "192.0.2.10:123"),
        EPERM,
        "default",
        None,
    );
    // Without names, entries with host names match nothing.
    decides(&p, &tcp("192.0.2.10:443"), EPERM, "default");
    decides(
        &p,
        &tcp("10.0.0.1:443"),
        Verdict::Allow,
        "allow[0].connect[2]",
    );
    assert_eq!(
        p.evaluate_with(&tcp("10.0.0.1:443"), &NoNames),
        p.evaluate(&tcp("10.0.0.1:443"))
    );
}

/// N2 for names: an IPv4-mapped destination is looked up as the IPv4 address it is; an
/// unspecified destination is refused before any lookup (the broker asks about the address
/// the kernel sends it to).
#[test]
fn s_n2_names_are_asked_about_canonical_addresses() {
    let p = policy(NAMED);
    let dns = FakeDns::new(RECORDS, &[]);
    decides_by_name(
        &p,
        &dns,
        &tcp("[::ffff:192.0.2.10]:443"),
        Verdict::Allow,
        "allow[0].connect[0]",
        Some("api.example.com"),
    );
    assert!(dns
        .asked
        .borrow()
        .iter()
        .all(|ip| *ip == "192.0.2.10".parse::<std::net::IpAddr>().unwrap()));
    dns.asked.borrow_mut().clear();
    let d = p.evaluate_with(&tcp("0.0.0.0:443"), &dns);
    assert_eq!(d.rule, "unspecified-destination");
    assert_eq!(d.verdict, EPERM);
    assert!(dns.asked.borrow().is_empty());
}

/// Fail closed: a name the broker could not resolve matches in a deny table, never in an
/// allow or ask table.
#[test]
fn unknown_names_deny_and_never_grant() {
    let evil = FakeDns::new(RECORDS, &["*.evil.example"]);
    let p = policy(NAMED);
    // The deny entry covers every port: whatever the address, it is denied.
    for dest in ["192.0.2.10:443", "10.0.0.1:443", "198.51.100.1:1"] {
        decides_by_name(
            &p,
            &evil,
            &tcp(dest),
            EPERM,
            "deny[0].connect[0]",
            Some("*.evil.example"),
        );
    }
    // A deny entry whose protocol or port does not match is not asked, and does not deny.
    decides_by_name(
        &p,
        &evil,
        &op(Op::Send, Proto::Udp, "192.0.2.123:123"),
        Verdict::Allow,
        "allow[0].send[0]",
        Some("ntp.example.org"),
    );
    let errno = policy(
        "name = \"e\"\ndefault = \"allow\"\n[[deny]]\nerrno = \"ECONNREFUSED\"\nconnect = [\"tcp://*.evil.example:443\"]\n",
    );
    decides_by_name(
        &errno,
        &evil,
        &tcp("192.0.2.1:443"),
        Verdict::Deny {
            errno: libc::ECONNREFUSED,
        },
        "deny[0].connect[0]",
        Some("*.evil.example"),
    );
    decides_by_name(
        &errno,
        &evil,
        &tcp("192.0.2.1:444"),
        Verdict::Allow,
        "default",
        None,
    );

    let broken = FakeDns::new(RECORDS, &["api.example.com", "*.example.com"]);
    decides_by_name(&p, &broken, &tcp("192.0.2.10:443"), EPERM, "default", None);
    let asking = policy(
        "name = \"a\"\ndefault = \"allow\"\n[[ask]]\nconnect = [\"tcp://*.example.com:*\"]\n",
    );
    decides_by_name(
        &asking,
        &broken,
        &tcp("192.0.2.40:443"),
        Verdict::Allow,
        "default",
        None,
    );
    decides_by_name(
        &asking,
        &FakeDns::new(RECORDS, &[]),
        &tcp("192.0.2.40:443"),
        Verdict::Ask,
        "ask[0].connect[0]",
        Some("www.example.com"),
    );
}

/// What the broker resolves ahead of time: each pattern once, deny tables first.
#[test]
fn host_patterns_in_evaluation_order() {
    let p = policy(NAMED);
    assert!(p.has_host_names());
    let shown: Vec<String> = p.host_patterns().iter().map(|h| h.to_string()).collect();
    assert_eq!(
        shown,
        [
            "*.evil.example",
            "api.example.com",
            "*.cdn.example.com",
            "ntp.example.org",
            "*.example.com"
        ]
    );
    assert_eq!(
        p.host_patterns()[0],
        HostPattern::Subdomains("evil.example".into())
    );
    assert_eq!(
        p.host_patterns()[1],
        HostPattern::Exact("api.example.com".into())
    );
    assert!(!policy(WEB).has_host_names());
    assert!(policy(WEB).host_patterns().is_empty());
    let again = Policy::from_toml(&p.to_toml(), "shown").unwrap();
    assert_eq!(again, p);
    assert!(p
        .to_toml()
        .contains("connect = [\"tcp://api.example.com:443\", \"tcp://*.cdn.example.com:443\""));
}

/// Issue 5: operator grants as an overlay policy (`default = "ask"`, exact entries written
/// with `Target::endpoint_string` and `escape_unix_path`). What the operators decided is
/// decided by an `allow[` or `deny[` rule; anything else is no opinion: `Ask` by `default`,
/// and the overlay's own rules that need no operator (J8's `privileged-port`, `unspec`).
#[test]
fn operator_overlay_decides_only_what_operators_granted() {
    let inet_t = |proto, addr: &str| Target::Inet {
        proto,
        addr: addr.parse().unwrap(),
    };
    let granted = inet_t(Proto::Tcp, "127.0.0.1:8080");
    let granted_dns = inet_t(Proto::Udp, "[::1]:53");
    let granted_mapped = inet_t(Proto::Tcp, "[::ffff:192.0.2.1]:443");
    let granted_other = inet_t(Proto::Other, "192.0.2.2:132");
    let refused = inet_t(Proto::Tcp, "192.0.2.7:443");
    let bound = inet_t(Proto::Tcp, "0.0.0.0:8080");
    let odd_path = "/tmp/odd*name?[1]\\x";
    let entry = |t: &Target| format!("{:?}", t.canonical().endpoint_string().unwrap());
    let overlay = format!(
        "name = \"operator-grants\"\ndefault = \"ask\"\n\
         [[deny]]\nconnect = [{}]\n\
         [[allow]]\nconnect = [{}, {}, {}]\nsend = [{}]\nbind = [{:?}]\nunix = [{:?}, {:?}]\n",
        entry(&refused),
        entry(&granted),
        entry(&granted_mapped),
        entry(&granted_other),
        entry(&granted_dns),
        bound.endpoint_string().unwrap(),
        netjail_policy::escape_unix_path(odd_path.as_ref()).unwrap(),
        netjail_policy::escape_unix_abstract(b"a*b").unwrap(),
    );
    let p = policy(&overlay);
    let at = |op, target: &Target| {
        p.evaluate(&Request {
            op,
            target: target.clone(),
        })
    };
    let no_opinion = |d: &Decision| !d.rule.starts_with("allow[") && !d.rule.starts_with("deny[");

    assert_eq!(at(Op::Connect, &granted).rule, "allow[0].connect[0]");
    assert_eq!(at(Op::Connect, &granted_mapped).rule, "allow[0].connect[1]");
    assert_eq!(
        at(Op::Connect, &inet_t(Proto::Tcp, "192.0.2.1:443")).rule,
        "allow[0].connect[1]"
    );
    assert_eq!(at(Op::Connect, &granted_other).rule, "allow[0].connect[2]");
    assert_eq!(at(Op::Send, &granted_dns).rule, "allow[0].send[0]");
    assert_eq!(at(Op::Connect, &granted_dns).rule, "allow[0].send[0]");
    assert_eq!(at(Op::Bind, &bound).rule, "allow[0].bind[0]");
    let d = at(Op::Connect, &refused);
    assert_eq!((d.verdict, d.rule.as_str()), (EPERM, "deny[0].connect[0]"));
    let path_t = Target::UnixPath(odd_path.into());
    assert_eq!(at(Op::Connect, &path_t).verdict, Verdict::Allow);
    assert_eq!(
        at(Op::Connect, &Target::UnixAbstract(b"a*b".to_vec())).verdict,
        Verdict::Allow
    );

    // Anything else: no opinion.
    for (o, t) in [
        (Op::Connect, inet_t(Proto::Tcp, "127.0.0.1:8081")),
        (Op::Connect, inet_t(Proto::Udp, "127.0.0.1:8080")),
        (Op::Send, inet_t(Proto::Udp, "[::1]:54")),
        (Op::Bind, inet_t(Proto::Tcp, "127.0.0.1:8080")),
        (Op::Connect, Target::UnixPath("/tmp/oddXnameY[1]\\x".into())),
        (Op::Connect, Target::UnixAbstract(b"axb".to_vec())),
        (Op::Connect, Target::OtherFamily(libc::AF_VSOCK)),
    ] {
        let d = at(o, &t);
        assert_eq!(
            (d.verdict, d.rule.as_str()),
            (Verdict::Ask, "default"),
            "{t}"
        );
        assert!(no_opinion(&d));
    }
    // The rules that need no operator are no opinion either, though not Ask: a privileged
    // bind the operators did not grant is refused by J8 here, and the broker must leave it to
    // the sandbox's own policy.
    let d = at(Op::Bind, &inet_t(Proto::Tcp, "0.0.0.0:80"));
    assert_eq!((d.verdict, d.rule.as_str()), (EPERM, "privileged-port"));
    assert!(no_opinion(&d));
    assert!(no_opinion(&at(Op::Connect, &Target::Unspec)));
    // A privileged bind the operators granted is granted.
    let p80 = policy(&format!(
        "name = \"g\"\ndefault = \"ask\"\n[[allow]]\nbind = [{:?}]\n",
        inet_t(Proto::Tcp, "0.0.0.0:80").endpoint_string().unwrap()
    ));
    let d = p80.evaluate(&op(Op::Bind, Proto::Tcp, "0.0.0.0:80"));
    assert_eq!(
        (d.verdict, d.rule.as_str()),
        (Verdict::Allow, "allow[0].bind[0]")
    );
}
