//! Property tests: normalisation, canonical output, deny-beats-allow, parser robustness.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netjail_policy::{
    format_duration, parse_duration, Action, Decision, HostPattern, NameMatch, Names, Op, Policy,
    Proto, Request, SandboxRules, Target, Verdict,
};
use proptest::prelude::*;
use proptest::sample::select;

// ---- generators ----------------------------------------------------------------------------

/// IPv4 addresses biased towards the networks the generated policies name.
fn v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (
            select(vec![0u8, 1, 10, 127, 169, 192, 255]),
            select(vec![0u8, 1, 254, 255]),
            0..3u8,
            0..3u8
        )
            .prop_map(|(a, b, c, d)| Ipv4Addr::new(a, b, c, d)),
    ]
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        Just(Ipv6Addr::UNSPECIFIED),
        Just(Ipv6Addr::LOCALHOST),
        (select(vec![0xfd00u16, 0xfe80, 0x2001]), 0..3u16)
            .prop_map(|(a, b)| Ipv6Addr::new(a, 0, 0, 0, 0, 0, 0, b)),
        v4().prop_map(|a| a.to_ipv6_mapped()),
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        select(vec![0u16, 1, 22, 53, 80, 443, 1023, 1024, 8080, 65535]),
        any::<u16>()
    ]
}

fn proto() -> impl Strategy<Value = Proto> {
    select(vec![Proto::Tcp, Proto::Udp, Proto::Other])
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("loopback".to_owned()),
        v4().prop_filter("unspecified is refused", |a| !a.is_unspecified())
            .prop_map(|a| a.to_string()),
        (v4(), 0..=32u8).prop_filter_map("unspecified is refused", |(a, len)| {
            let net = ipnet::Ipv4Net::new(a, len).unwrap().trunc();
            (len < 32 || !a.is_unspecified()).then(|| net.to_string())
        }),
        v6().prop_filter("unspecified is refused", |a| !a.is_unspecified()
            && a.to_ipv4_mapped() != Some(Ipv4Addr::UNSPECIFIED))
            .prop_map(|a| format!("[{a}]")),
        (v6(), 0..=128u8).prop_filter_map("unspecified is refused", |(a, len)| v6_net(a, len)),
        (v4(), 96..=128u8).prop_filter_map("unspecified is refused", |(a, len)| v6_net(
            a.to_ipv6_mapped(),
            len
        )),
    ]
}

/// `[net]` for a truncated prefix, unless it is a single unspecified address (refused at load).
fn v6_net(a: Ipv6Addr, len: u8) -> Option<String> {
    let net = ipnet::Ipv6Net::new(a, len).unwrap().trunc();
    let unspecified =
        net.addr().is_unspecified() || net.addr().to_ipv4_mapped() == Some(Ipv4Addr::UNSPECIFIED);
    (len < 128 || !unspecified).then(|| format!("[{net}]"))
}

fn ports() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        port().prop_map(|p| p.to_string()),
        (port(), port()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
    ]
}

/// Host names, as written (any case, maybe a trailing dot).
fn host_name() -> impl Strategy<Value = String> {
    (
        select(vec!["", "*.", "API.", "a."]),
        select(vec![
            "example.com",
            "b.example.com",
            "Example.ORG",
            "x-1.test",
            "localhost",
        ]),
        select(vec!["", "."]),
    )
        .prop_map(|(head, domain, dot)| format!("{head}{domain}{dot}"))
}

/// A `bind` entry: addresses only.
fn endpoint() -> impl Strategy<Value = String> {
    (select(vec!["tcp", "udp", "any"]), host(), ports())
        .prop_map(|(p, h, ports)| format!("{p}://{h}:{ports}"))
}

/// A `connect` or `send` entry: an address or a host name.
fn dest_endpoint() -> impl Strategy<Value = String> {
    let host = prop_oneof![4 => host(), 1 => host_name()];
    (select(vec!["tcp", "udp", "any"]), host, ports())
        .prop_map(|(p, h, ports)| format!("{p}://{h}:{ports}"))
}

const COMPONENTS: &[&str] = &[
    "run",
    "tmp",
    "user",
    "1000",
    "bus",
    "x.sock",
    ".X11-unix",
    "X0",
    "é",
];

fn unix_pattern() -> impl Strategy<Value = String> {
    let comp = prop_oneof![
        select(COMPONENTS).prop_map(str::to_owned),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("X?".to_owned()),
        Just("*.sock".to_owned()),
    ];
    prop_oneof![
        prop::collection::vec(comp, 0..4).prop_map(|c| format!("/{}", c.join("/"))),
        "[a-z*?/-]{0,6}".prop_map(|s| format!("@{s}")),
    ]
}

fn unix_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        prop::collection::vec(select(COMPONENTS), 0..4)
            .prop_map(|c| Target::UnixPath(format!("/{}", c.join("/")).into())),
        "[a-z./-]{0,6}".prop_map(|s| Target::UnixAbstract(s.into_bytes())),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let target = prop_oneof![
        4 => (proto(), v4(), port()).prop_map(|(proto, a, p)| Target::Inet { proto, addr: SocketAddr::new(a.into(), p) }),
        4 => (proto(), v6(), port()).prop_map(|(proto, a, p)| Target::Inet { proto, addr: SocketAddr::new(a.into(), p) }),
        2 => unix_target(),
        1 => Just(Target::Unspec),
        1 => (0..64i32).prop_map(Target::OtherFamily),
    ];
    let op = select(vec![Op::Connect, Op::Send, Op::Bind]);
    (op, target).prop_map(|(op, target)| Request { op, target })
}

fn quoted(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(", "))
}

/// One rule table's body (never empty).
fn rule_body(deny: bool) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(dest_endpoint(), 0..4),
        prop::collection::vec(unix_pattern(), 0..3),
        select(vec![
            "",
            "EPERM",
            "ECONNREFUSED",
            "EACCES",
            "ENETUNREACH",
            "EHOSTUNREACH",
        ]),
        dest_endpoint(),
        prop::collection::vec(dest_endpoint(), 0..3),
        prop::collection::vec(
            prop_oneof![
                3 => endpoint(),
                1 => (port()).prop_map(|p| format!("tcp://0.0.0.0:{p}")),
                1 => (port()).prop_map(|p| format!("udp://[::]:{p}")),
            ],
            0..3,
        ),
    )
        .prop_map(move |(mut connect, unix, errno, fallback, send, bind)| {
            if connect.is_empty() && unix.is_empty() && send.is_empty() && bind.is_empty() {
                connect.push(fallback);
            }
            let mut body = String::new();
            if deny && !errno.is_empty() {
                body += &format!("errno = \"{errno}\"\n");
            }
            if !connect.is_empty() {
                body += &format!("connect = {}\n", quoted(&connect));
            }
            if !unix.is_empty() {
                body += &format!("unix = {}\n", quoted(&unix));
            }
            if !send.is_empty() {
                body += &format!("send = {}\n", quoted(&send));
            }
            if !bind.is_empty() {
                body += &format!("bind = {}\n", quoted(&bind));
            }
            body
        })
}

fn policy_src() -> impl Strategy<Value = String> {
    (
        select(vec![
            "",
            "default = \"deny\"\n",
            "default = \"allow\"\n",
            "default = \"ask\"\n",
        ]),
        prop::collection::vec(rule_body(true), 0..3),
        prop::collection::vec(rule_body(false), 0..4),
        prop::collection::vec(rule_body(false), 0..3),
        select(vec![
            "",
            "ask_timeout = \"1m30s\"\n",
            "ask_timeout = \"500ms\"\nask_fallback = \"allow\"\n",
            "ask_fallback = \"deny\"\n",
            "jail_address = \"127.0.0.2\"\n",
            "jail_address = [\"10.1.2.3\", \"[fd00::1]\"]\n",
            "keep_capabilities = [\"CAP_NET_BIND_SERVICE\"]\n",
            "ioctl = \"safe-list\"\nnamespaces = [\"user\"]\nscm_rights = false\n",
            "fcntl_setown = false\nsource_cmsgs = true\nlandlock = \"required\"\n",
        ]),
        limits(),
        sockets(),
        bridge(),
    )
        .prop_map(
            |(default, deny, allow, ask, confine, limits, sockets, bridge)| {
                let mut s = format!("name = \"prop\"\n{default}{confine}{limits}{sockets}{bridge}");
                // Tables of the three kinds, interleaved: their order in the file does not matter.
                for i in 0..deny.len().max(allow.len()).max(ask.len()) {
                    if let Some(a) = ask.get(i) {
                        s += &format!("\n[[ask]]\n{a}");
                    }
                    if let Some(a) = allow.get(i) {
                        s += &format!("\n[[allow]]\n{a}");
                    }
                    if let Some(d) = deny.get(i) {
                        s += &format!("\n[[deny]]\n{d}");
                    }
                }
                s
            },
        )
}

/// A `[sockets]` table with an `allow` list (maybe empty), a `refuse` errno, or both; or none.
fn sockets() -> impl Strategy<Value = String> {
    let entry = select(vec![
        "unix:*",
        "inet:stream",
        "inet6:dgram",
        "inet:stream:sctp",
        "netlink:raw",
        "packet:*",
        "40:seqpacket",
    ]);
    let allow = prop::option::of(prop::collection::vec(entry.prop_map(str::to_owned), 0..4));
    let refuse = prop::option::of(select(vec!["EAFNOSUPPORT", "EPERM"]));
    (allow, refuse).prop_map(|(allow, refuse)| {
        if allow.is_none() && refuse.is_none() {
            return String::new();
        }
        let mut s = "\n[sockets]\n".to_owned();
        if let Some(list) = allow {
            s += &format!("allow = {}\n", quoted(&list));
        }
        if let Some(errno) = refuse {
            s += &format!("refuse = \"{errno}\"\n");
        }
        s
    })
}

/// A `[bridge]` table with a namespace and some TCP and UDP patterns (maybe none); or none.
fn bridge() -> impl Strategy<Value = String> {
    let netns = select(vec![
        "broker",
        "/proc/1/ns/net",
        "/run/netns/host",
        "//run/./netns/x/",
    ]);
    let tcp_udp = || select(vec!["tcp", "udp"]);
    let connect = (
        tcp_udp(),
        prop_oneof![4 => host(), 1 => host_name()],
        ports(),
    )
        .prop_map(|(p, h, ports)| format!("{p}://{h}:{ports}"));
    let bind = (
        tcp_udp(),
        prop_oneof![3 => host(), 1 => select(vec!["0.0.0.0".to_owned(), "[::]".to_owned()])],
        ports(),
    )
        .prop_map(|(p, h, ports)| format!("{p}://{h}:{ports}"));
    prop_oneof![
        Just(String::new()),
        (
            netns,
            prop::option::of(prop::collection::vec(connect, 0..3)),
            prop::option::of(prop::collection::vec(bind, 0..3)),
        )
            .prop_map(|(netns, connect, bind)| {
                let mut s = format!("\n[bridge]\nnetns = \"{netns}\"\n");
                if let Some(list) = connect {
                    s += &format!("connect = {}\n", quoted(&list));
                }
                if let Some(list) = bind {
                    s += &format!("bind = {}\n", quoted(&list));
                }
                s
            }),
    ]
}

/// A `[limits]` table (rule N3) with some of its keys, each `-1`, `0` or a count; or none.
fn limits() -> impl Strategy<Value = String> {
    let value = prop_oneof![Just(-1i64), Just(0), 1..10i64, Just(i64::MAX)];
    let keys = [
        "max_connections",
        "max_binds",
        "max_pending",
        "max_calls_per_second",
    ];
    prop_oneof![
        Just(String::new()),
        prop::collection::vec(prop::option::of(value), 4).prop_map(move |values| {
            let mut s = "\n[limits]\n".to_owned();
            for (key, v) in keys.iter().zip(values) {
                if let Some(v) = v {
                    s += &format!("{key} = {v}\n");
                }
            }
            s
        }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    policy_src().prop_map(|s| Policy::from_toml(&s, "prop").unwrap_or_else(|e| panic!("{e}\n{s}")))
}

/// Answers every lookup alike: `Yes` with a name the pattern covers, `No`, or `Unknown`.
struct Always(NameMatch);

impl Names for Always {
    fn lookup(&self, pattern: &HostPattern, _: IpAddr) -> NameMatch {
        match (&self.0, pattern) {
            (NameMatch::Yes(_), HostPattern::Exact(name)) => NameMatch::Yes(name.clone()),
            (NameMatch::Yes(_), HostPattern::Subdomains(domain)) => {
                NameMatch::Yes(format!("x.{domain}"))
            }
            (answer, _) => answer.clone(),
        }
    }
}

/// Answers by a hash of the question, so that the same question gets the same answer.
struct Mixed(u64);

impl Names for Mixed {
    fn lookup(&self, pattern: &HostPattern, ip: IpAddr) -> NameMatch {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.0, pattern, ip).hash(&mut h);
        match h.finish() % 3 {
            0 => NameMatch::No,
            1 => NameMatch::Unknown,
            _ => Always(NameMatch::Yes(String::new())).lookup(pattern, ip),
        }
    }
}

fn connect(proto: Proto, addr: SocketAddr) -> Request {
    Request {
        op: Op::Connect,
        target: Target::Inet { proto, addr },
    }
}

// ---- properties ----------------------------------------------------------------------------

proptest! {
    /// A layer with no opinion changes nothing; a layer that decides everything decides
    /// exactly what no `[[deny]]` entry (and nothing settled before the tables) covers; and
    /// the layer sees the canonical request.
    #[test]
    fn layers_sit_between_deny_and_allow(p in policy(), r in request(), seed in any::<u64>()) {
        let names = Mixed(seed);
        let plain = p.evaluate_with(&r, &names);
        let mut seen = Vec::new();
        let mut silent = |c: &Request| { seen.push(c.clone()); None };
        prop_assert_eq!(p.evaluate_layered(&r, &names, &mut silent), plain.clone());
        let mut everything = |_: &Request| Some(Decision { verdict: Verdict::Allow, rule: "layer".into(), host: None });
        let layered = p.evaluate_layered(&r, &names, &mut everything);
        if layered.rule == "layer" {
            // Only asked when nothing came before: a deny table never lost to the layer.
            prop_assert!(!plain.rule.starts_with("deny["), "{:?} overrode {:?}", layered, plain);
            prop_assert_eq!(seen.len(), 1);
            if r.op != Op::Bind {
                prop_assert_eq!(&seen[0].target, &r.target.canonical());
            }
        } else {
            prop_assert_eq!(&layered, &plain);
            prop_assert!(seen.is_empty() || plain.rule.starts_with("deny["));
        }
        if plain.rule.starts_with("deny[") {
            prop_assert_eq!(layered, plain);
        }
    }

    /// Run-time rules decide only what one of their entries covers, deny entries first, and
    /// an IPv4-mapped destination as its IPv4 address (rule N2).
    #[test]
    fn s_n2_sandbox_rules_match_mapped_as_v4(allow in dest_endpoint(), deny in dest_endpoint(), a in v4(), port in port(), proto in proto()) {
        let mut rules = SandboxRules::new();
        if rules.allow(&allow).is_err() || rules.deny(&deny).is_err() {
            // Host names are refused in run-time rules; nothing else to check.
            return Ok(());
        }
        let plain = connect(proto, SocketAddr::new(a.into(), port));
        let mapped = connect(proto, SocketAddr::new(a.to_ipv6_mapped().into(), port));
        let d = rules.decide(&plain);
        prop_assert_eq!(&d, &rules.decide(&mapped));
        if let Some(d) = d {
            let denied = d.rule.starts_with("sandbox.deny.");
            prop_assert_eq!(denied, d.verdict == Verdict::Deny { errno: libc::EPERM });
        }
    }

    /// N2: an IPv4 address and its IPv4-mapped IPv6 form are the same destination.
    #[test]
    fn s_n2_mapped_v6_evaluates_as_v4(p in policy(), a in v4(), port in port(), proto in proto(), seed in any::<u64>()) {
        let plain = connect(proto, SocketAddr::new(a.into(), port));
        let mapped = connect(proto, SocketAddr::new(a.to_ipv6_mapped().into(), port));
        prop_assert_eq!(p.evaluate(&plain), p.evaluate(&mapped));
        // Names are asked about the IPv4 address too.
        let names = Mixed(seed);
        prop_assert_eq!(p.evaluate_with(&plain, &names), p.evaluate_with(&mapped, &names));
    }

    /// R1 and F1: the kernel sends an unspecified destination to the socket's own source
    /// address, which the broker decides on instead; the evaluator itself refuses one, and
    /// `AF_UNSPEC`, whatever the policy says.
    #[test]
    fn unspecified_destinations_are_never_allowed(p in policy(), port in port(), proto in proto()) {
        let v4 = |ip: Ipv4Addr| p.evaluate(&connect(proto, SocketAddr::new(ip.into(), port)));
        let v6 = |ip: Ipv6Addr| p.evaluate(&connect(proto, SocketAddr::new(ip.into(), port)));
        for d in [v4(Ipv4Addr::UNSPECIFIED), v6(Ipv6Addr::UNSPECIFIED), v6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped())] {
            prop_assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
        }
        let unspec = Request { op: Op::Send, target: Target::Unspec };
        prop_assert!(p.evaluate(&unspec).verdict != Verdict::Allow);
    }

    /// L11: a destination embedding an IPv4 address (NAT64, IPv4-compatible, 6to4) is
    /// refused wherever its IPv4 address is, and allowed only where the IPv6 address is.
    #[test]
    fn l11_embedded_ipv4_is_denied_with_its_ipv4_address(
        p in policy(), a in any::<[u8; 4]>(), port in port(), proto in proto(), form in 0..3u8,
    ) {
        let v4 = Ipv4Addr::from(a);
        let v6 = match form {
            0 => Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([a[0], a[1]]), u16::from_be_bytes([a[2], a[3]])),
            1 => Ipv6Addr::new(0, 0, 0, 0, 0, 0, u16::from_be_bytes([a[0], a[1]]), u16::from_be_bytes([a[2], a[3]])),
            _ => Ipv6Addr::new(0x2002, u16::from_be_bytes([a[0], a[1]]), u16::from_be_bytes([a[2], a[3]]), 0, 0, 0, 0, 1),
        };
        prop_assume!(netjail_policy::embedded_ipv4(v6) == Some(v4));
        let plain = p.evaluate(&connect(proto, SocketAddr::new(v4.into(), port)));
        let embedded = p.evaluate(&connect(proto, SocketAddr::new(v6.into(), port)));
        if plain.rule.starts_with("deny[") {
            prop_assert!(matches!(embedded.verdict, Verdict::Deny { .. }), "{:?} {:?}", plain, embedded);
        }
    }

    /// A bridge decides where an allowed call is performed, never whether: the same policy
    /// without its `[bridge]` table gives every request the same decision.
    #[test]
    fn a_bridge_never_changes_a_decision(p in policy(), r in request(), seed in any::<u64>()) {
        let shown = p.to_toml();
        let (plain, bridged) = match shown.find("\n[bridge]\n") {
            Some(cut) => {
                let end = shown[cut + 1..].find("\n[").map_or(shown.len(), |i| cut + 1 + i);
                (format!("{}{}", &shown[..cut], &shown[end..]), shown.clone())
            }
            None => (
                shown.clone(),
                format!("{shown}\n[bridge]\nnetns = \"broker\"\nconnect = [\"tcp://*:*\", \"udp://*:*\"]\nbind = [\"tcp://*:*\", \"udp://*:*\"]\n"),
            ),
        };
        let load = |text: &str| Policy::from_toml(text, "p").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")));
        let (plain, bridged) = (load(&plain)?, load(&bridged)?);
        prop_assert_eq!(plain.bridge(), None);
        prop_assert!(bridged.bridge().is_some());
        prop_assert_eq!(plain.evaluate(&r), bridged.evaluate(&r));
        let names = Mixed(seed);
        prop_assert_eq!(plain.evaluate_with(&r, &names), bridged.evaluate_with(&r, &names));
    }

    /// `policy show` output parses back to the same policy and is a fixed point.
    #[test]
    fn to_toml_round_trips(p in policy(), requests in prop::collection::vec(request(), 16)) {
        let shown = p.to_toml();
        let again = Policy::from_toml(&shown, "shown").map_err(|e| TestCaseError::fail(format!("{e}\n{shown}")))?;
        prop_assert_eq!(&again, &p);
        prop_assert_eq!(again.to_toml(), shown);
        for (i, r) in requests.iter().enumerate() {
            prop_assert_eq!(again.evaluate(r), p.evaluate(r));
            let names = Mixed(i as u64);
            prop_assert_eq!(again.evaluate_with(r, &names), p.evaluate_with(r, &names));
        }
        prop_assert_eq!(again.host_patterns(), p.host_patterns());
        prop_assert_eq!(again.fingerprint(), p.fingerprint());
    }

    /// Fail closed: when no name can be resolved, an entry with a host name only ever denies;
    /// everything else is decided as if the names matched nothing.
    #[test]
    fn unknown_names_only_deny(p in policy(), r in request()) {
        let none = p.evaluate_with(&r, &Always(NameMatch::No));
        prop_assert_eq!(&none, &p.evaluate(&r));
        prop_assert_eq!(&none.host, &None);
        let unknown = p.evaluate_with(&r, &Always(NameMatch::Unknown));
        if unknown.host.is_some() {
            prop_assert!(unknown.rule.starts_with("deny["), "{:?}", unknown);
            let denied = matches!(unknown.verdict, Verdict::Deny { .. });
            prop_assert!(denied, "{:?}", unknown);
        } else {
            prop_assert_eq!(unknown, none);
        }
    }

    /// Names only add matches: what a deny table denies without them it still denies, and a
    /// decision by name is by a table entry.
    #[test]
    fn names_only_add_matches(p in policy(), r in request(), seed in any::<u64>()) {
        let none = p.evaluate(&r);
        for names in [&Always(NameMatch::Yes(String::new())) as &dyn Names, &Mixed(seed), &Always(NameMatch::Unknown)] {
            let d = p.evaluate_with(&r, names);
            if none.rule.starts_with("deny[") {
                prop_assert!(d.rule.starts_with("deny["), "{:?} then {:?}", none, d);
            }
            if d.host.is_some() {
                prop_assert!(["deny[", "allow[", "ask["].iter().any(|t| d.rule.starts_with(t)), "{:?}", d);
                prop_assert!(d.rule.contains(".connect[") || d.rule.contains(".send["), "{:?}", d);
            }
        }
    }

    /// `*.domain` covers exactly the valid names that end in `.domain` with something before.
    #[test]
    fn subdomain_patterns_cover_names_strictly_under(
        labels in prop::collection::vec("[a-z0-9]{1,5}", 0..4),
        domain in prop::collection::vec("[a-z]{1,5}", 1..3),
    ) {
        let domain = domain.join(".");
        let name = labels.iter().map(|l| format!("{l}.")).collect::<String>() + &domain;
        let sub = HostPattern::Subdomains(domain.clone());
        prop_assert_eq!(sub.covers(&name), !labels.is_empty());
        prop_assert_eq!(sub.covers(&name.to_uppercase()), !labels.is_empty());
        prop_assert_eq!(sub.covers(&format!("{name}.")), !labels.is_empty());
        let glued = format!("x{domain}");
        prop_assert!(!sub.covers(&glued), "{}", glued);
        prop_assert!(HostPattern::Exact(name.clone()).covers(&name));
        let p = Policy::from_toml(&format!("name = \"n\"\n[[allow]]\nconnect = [\"tcp://*.{domain}:1\"]\n"), "n").unwrap();
        prop_assert_eq!(p.host_patterns(), vec![sub]);
    }

    /// Matching is on the canonical form, and canonicalising twice changes nothing.
    #[test]
    fn canonical_is_idempotent_and_what_is_matched(p in policy(), r in request()) {
        // A bind keeps the wildcard address it names.
        prop_assume!(r.op != Op::Bind);
        let c = r.target.canonical();
        prop_assert_eq!(c.canonical(), c.clone());
        prop_assert_eq!(p.evaluate(&Request { op: r.op, target: c }), p.evaluate(&r));
    }

    /// A rule in a [[deny]] table always beats the same rule in [[allow]] and [[ask]].
    #[test]
    fn deny_beats_allow(body in rule_body(false), default in select(vec!["deny", "allow", "ask"]), r in request()) {
        let src = format!("name = \"d\"\ndefault = \"{default}\"\n[[ask]]\n{body}\n[[allow]]\n{body}\n[[deny]]\n{body}");
        let p = Policy::from_toml(&src, "d").unwrap();
        let d = p.evaluate(&r);
        prop_assert!(!d.rule.starts_with("allow") && !d.rule.starts_with("ask"), "{} -> {:?}", r.target, d);
        if d.rule.starts_with("deny") {
            prop_assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
        }
    }

    /// A rule in an [[allow]] table always beats the same rule in [[ask]]; and an [[ask]]
    /// entry decides exactly what the same [[allow]] entry would allow.
    #[test]
    fn allow_beats_ask(body in rule_body(false), default in select(vec!["deny", "allow", "ask"]), r in request()) {
        let both = format!("name = \"b\"\ndefault = \"{default}\"\n[[ask]]\n{body}\n[[allow]]\n{body}");
        let d = Policy::from_toml(&both, "b").unwrap().evaluate(&r);
        prop_assert!(!d.rule.starts_with("ask"), "{} -> {:?}", r.target, d);
        let allow = Policy::from_toml(&format!("name = \"a\"\ndefault = \"{default}\"\n[[allow]]\n{body}"), "a").unwrap().evaluate(&r);
        let ask = Policy::from_toml(&format!("name = \"q\"\ndefault = \"{default}\"\n[[ask]]\n{body}"), "q").unwrap().evaluate(&r);
        prop_assert_eq!(allow.rule.starts_with("allow["), ask.rule.starts_with("ask["));
        if ask.rule.starts_with("ask[") {
            prop_assert_eq!(ask.verdict, Verdict::Ask);
            prop_assert_eq!(&ask.rule[3..], &allow.rule[5..]);
        } else {
            prop_assert_eq!(ask, allow);
        }
    }

    /// The verdict agrees with the rule that is named.
    #[test]
    fn rule_name_agrees_with_verdict(p in policy(), r in request()) {
        let d = p.evaluate(&r);
        match d.verdict {
            Verdict::Allow => prop_assert!(d.rule.starts_with("allow[") || d.rule == "default" || d.rule == "sockets.netlink", "{:?}", d),
            Verdict::Deny { .. } => prop_assert!(
                d.rule.starts_with("deny[")
                    || ["default", "invalid-target", "jail-address", "privileged-port", "unspec", "unspecified-destination"].contains(&d.rule.as_str()),
                "{:?}", d),
            Verdict::Ask => prop_assert!(d.rule.starts_with("ask[") || d.rule == "default", "{:?}", d),
        }
        if d.rule == "sockets.netlink" {
            // Only a netlink socket's bind or message, of a policy that lists the family (L4).
            prop_assert_eq!(&r.target, &Target::OtherFamily(libc::AF_NETLINK));
            prop_assert!(matches!(r.op, Op::Bind | Op::Send), "{:?}", r);
            prop_assert!(p.sockets().iter().any(|s| s.family.is_none_or(|f| f == libc::AF_NETLINK)), "{:?}", p);
        }
        if d.rule == "default" {
            let expected = match p.default_action() {
                Action::Allow => Verdict::Allow,
                Action::Deny => Verdict::Deny { errno: libc::EPERM },
                Action::Ask => Verdict::Ask,
            };
            prop_assert_eq!(d.verdict, expected);
        }
    }

    /// A path glob without wildcards matches exactly that path.
    #[test]
    fn literal_unix_path_matches_only_itself(comps in prop::collection::vec("[a-z0-9._-]{1,5}", 1..4), other in prop::collection::vec("[a-z0-9._-]{1,5}", 1..4)) {
        prop_assume!(comps.iter().chain(&other).all(|c| c != "." && c != ".."));
        let path = format!("/{}", comps.join("/"));
        let p = Policy::from_toml(&format!("name = \"u\"\n[[allow]]\nunix = [{path:?}]\n"), "u").unwrap();
        let decide = |s: &str| p.evaluate(&Request { op: Op::Connect, target: Target::UnixPath(s.into()) }).verdict;
        prop_assert_eq!(decide(&path), Verdict::Allow);
        let other = format!("/{}", other.join("/"));
        prop_assert_eq!(decide(&other) == Verdict::Allow, other == path);
        prop_assert_ne!(decide(&format!("{path}/x")), Verdict::Allow);
    }

    /// An entry written with `Target::endpoint_string` covers its target, and of the other
    /// targets of the same operation exactly those at the same address and port, of the same
    /// transport (any transport for `any://`, the endpoint of `Proto::Other`).
    #[test]
    fn endpoint_string_covers_exactly_its_target(
        op in select(vec![Op::Connect, Op::Send, Op::Bind]),
        (proto1, a1, p1) in (proto(), prop_oneof![v4().prop_map(IpAddr::from), v6().prop_map(IpAddr::from)], port()),
        same_addr in any::<bool>(),
        (proto2, a2, p2) in (proto(), prop_oneof![v4().prop_map(IpAddr::from), v6().prop_map(IpAddr::from)], port()),
    ) {
        let t1 = Target::Inet { proto: proto1, addr: SocketAddr::new(a1, p1) };
        let t2 = if same_addr {
            Target::Inet { proto: proto2, addr: SocketAddr::new(a1, p1) }
        } else {
            Target::Inet { proto: proto2, addr: SocketAddr::new(a2, p2) }
        };
        // The form the evaluator matches: canonical for a destination, as given for a bind.
        let form = |t: &Target| if op == Op::Bind { t.clone() } else { t.canonical() };
        // An unspecified destination names no endpoint: the evaluator refuses it.
        let unspecified = |t: &Target| op != Op::Bind && matches!(form(t), Target::Inet { addr, .. } if addr.ip().is_unspecified());
        prop_assume!(!unspecified(&t1));
        let key = match op { Op::Connect => "connect", Op::Send => "send", _ => "bind" };
        let entry = form(&t1).endpoint_string().unwrap();
        let src = format!("name = \"g\"\ndefault = \"ask\"\n[[allow]]\n{key} = [{entry:?}]\n");
        let p = Policy::from_toml(&src, "g").map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let d = p.evaluate(&Request { op, target: t1.clone() });
        prop_assert_eq!(d.verdict, Verdict::Allow, "{} -> {:?}", entry, d);
        let ip_port = |t: &Target| match form(t) {
            Target::Inet { addr, .. } => match addr.ip() {
                IpAddr::V6(v6) => (v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4), addr.port()),
                ip => (ip, addr.port()),
            },
            _ => unreachable!("inet"),
        };
        let expected = ip_port(&t1) == ip_port(&t2) && (proto1 == proto2 || proto1 == Proto::Other) && !unspecified(&t2);
        let d2 = p.evaluate(&Request { op, target: t2.clone() });
        prop_assert_eq!(d2.verdict == Verdict::Allow, expected, "{} for {} -> {:?}", entry, t2, d2);
    }

    /// A unix entry written with `escape_unix_path` matches its path and no other, whatever
    /// glob characters the path holds.
    #[test]
    fn escaped_unix_path_matches_only_itself(
        comps in prop::collection::vec("[ab*?\\\\\\[\\]]{1,4}", 0..4),
        other in prop::collection::vec("[ab*?\\\\\\[\\]]{1,4}", 0..4),
    ) {
        let path = format!("/{}", comps.join("/"));
        let written = netjail_policy::escape_unix_path(path.as_ref()).unwrap();
        let src = format!("name = \"u\"\n[[allow]]\nunix = [{written:?}]\n");
        let p = Policy::from_toml(&src, "u").map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let again = Policy::from_toml(&p.to_toml(), "shown");
        prop_assert_eq!(again.as_ref(), Ok(&p));
        let decide = |s: &str| p.evaluate(&Request { op: Op::Connect, target: Target::UnixPath(s.into()) }).verdict;
        prop_assert_eq!(decide(&path), Verdict::Allow);
        let other = format!("/{}", other.join("/"));
        prop_assert_eq!(decide(&other) == Verdict::Allow, other == path, "{} vs {}", written, other);
        let name = netjail_policy::escape_unix_abstract(path.as_bytes()).unwrap();
        let q = Policy::from_toml(&format!("name = \"a\"\n[[allow]]\nunix = [{name:?}]\n"), "a").unwrap();
        let abs = |b: &[u8]| q.evaluate(&Request { op: Op::Connect, target: Target::UnixAbstract(b.to_vec()) }).verdict;
        prop_assert_eq!(abs(path.as_bytes()), Verdict::Allow);
        prop_assert_eq!(abs(other.as_bytes()) == Verdict::Allow, other == path);
    }

    /// `*` never crosses a `/`.
    #[test]
    fn star_stays_within_a_component(comps in prop::collection::vec("[a-z]{1,4}", 2..5)) {
        let p = Policy::from_toml("name = \"s\"\n[[allow]]\nunix = [\"/*\", \"@*\"]\n", "s").unwrap();
        let decide = |s: String| p.evaluate(&Request { op: Op::Connect, target: Target::UnixPath(s.into()) }).verdict;
        prop_assert_eq!(decide(format!("/{}", comps[0])), Verdict::Allow);
        prop_assert_ne!(decide(format!("/{}", comps.join("/"))), Verdict::Allow);
    }

    /// Every duration from 1 ms to 24 h prints in a form that reads back as itself, and
    /// reading then printing any accepted text gives its canonical form.
    #[test]
    fn durations_round_trip(ms in 1..=86_400_000u64, h in 0..25u64, m in 0..200u64, s in 0..200u64, sub in 0..2000u64) {
        let d = Duration::from_millis(ms);
        let text = format_duration(d);
        prop_assert_eq!(parse_duration(&text), Ok(d));
        let mut written = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (sub, "ms")] {
            if n > 0 {
                written += &format!("{n}{unit}");
            }
        }
        prop_assume!(!written.is_empty());
        let total = ((h * 60 + m) * 60 + s) * 1000 + sub;
        match parse_duration(&written) {
            Ok(d) => {
                prop_assert_eq!(d, Duration::from_millis(total));
                prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
            }
            Err(e) => {
                prop_assert!(total > 86_400_000, "{} -> {}", written, e);
                prop_assert!(e.ends_with("is longer than 24h"), "{}", e);
            }
        }
    }

    /// Duration-shaped noise is accepted or refused with a message, never a panic.
    #[test]
    fn duration_noise_never_panics(text in "[0-9hmsd. -]{0,12}") {
        if let Err(e) = parse_duration(&text) {
            prop_assert!(!e.is_empty() && !e.ends_with('.'));
        }
    }

    /// The parser never panics, and any error points inside (or just past) the text.
    #[test]
    fn parser_never_panics_on_arbitrary_text(s in any::<String>()) {
        check_error_position(&s);
    }

    /// Nor on policy-shaped text with arbitrary entries.
    #[test]
    fn parser_never_panics_on_arbitrary_entries(
        key in select(vec!["connect", "unix", "errno", "bind", "conect"]),
        table in select(vec!["allow", "deny", "ask", "sockets"]),
        entry in "[ -~é\u{0}]{0,40}",
    ) {
        let s = format!("name = \"x\"\n[[{table}]]\n{key} = [{entry:?}]\n");
        check_error_position(&s);
        let s = format!("name = \"x\"\n[sockets]\nallow = [{entry:?}]\n");
        check_error_position(&s);
        let s = format!("name = \"x\"\n[bridge]\nnetns = {entry:?}\n{key} = [{entry:?}]\n");
        check_error_position(&s);
    }

    /// Endpoint-shaped noise is either accepted or refused, never a panic.
    #[test]
    fn parser_never_panics_on_endpoint_noise(entry in "(tcp|udp|any|x)://[\\[\\]0-9a-f:./*-]{0,30}:[0-9*-]{0,12}") {
        let s = format!("name = \"x\"\n[[allow]]\nconnect = [{entry:?}]\n");
        check_error_position(&s);
        let s = format!("name = \"x\"\n[bridge]\nnetns = \"broker\"\nconnect = [{entry:?}]\nbind = [{entry:?}]\n");
        check_error_position(&s);
    }
}

fn check_error_position(s: &str) {
    if let Err(e) = Policy::from_toml(s, "noise") {
        let lines = s.split('\n').count();
        assert!(e.line >= 1 && e.line <= lines, "{e} (lines {lines})");
        let line_chars = s
            .split('\n')
            .nth(e.line - 1)
            .map_or(0, |l| l.chars().count());
        assert!(
            e.col >= 1 && e.col <= line_chars + 1,
            "{e} (line has {line_chars} chars)"
        );
        assert!(!e.to_string().is_empty());
    }
}
