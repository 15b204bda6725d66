//! A policy built in code and the same policy written as TOML are equal, for generated
//! inputs; a mistake in either gives the same error.

use netjail_policy::{
    Action, AllowTable, IoctlMode, LandlockMode, Policy, PolicyBuilder, TableBuilder,
};
use proptest::prelude::*;
use proptest::sample::select;

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
    bridge: Option<Bridge>,
    deny: Vec<Table>,
    allow: Vec<Table>,
    ask: Vec<Table>,
}

/// A `[bridge]` table: `netns` may be left out (a mistake) when bad values are wanted.
#[derive(Debug, Clone)]
struct Bridge {
    netns: Option<String>,
    connect: Vec<String>,
    bind: Vec<String>,
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
        if let Some(br) = &self.bridge {
            b = b.bridge(|mut bb| {
                if let Some(n) = &br.netns {
                    bb = bb.netns(n);
                }
                let bb = br.connect.iter().fold(bb, |bb, e| bb.connect(e));
                br.bind.iter().fold(bb, |bb, e| bb.bind(e))
            });
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
        if let Some(br) = &self.bridge {
            s += "\n[bridge]\n";
            if let Some(n) = &br.netns {
                s += &format!("netns = {}\n", q(n));
            }
            for (key, entries) in [("connect", &br.connect), ("bind", &br.bind)] {
                if !entries.is_empty() {
                    s += &format!("{key} = {}\n", list(entries));
                }
            }
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

fn bridge(bad: u32) -> impl Strategy<Value = Bridge> {
    let netns = pick(
        &[
            "broker",
            "/proc/1/ns/net",
            "/run/netns/host",
            "//run/./netns/x/",
        ],
        &["", "x", "/a/../b", "/", "Broker"],
        bad,
    );
    let netns = if bad == 0 {
        netns.prop_map(Some).boxed()
    } else {
        prop_oneof![20 => netns.prop_map(Some), bad => Just(None)].boxed()
    };
    let tcp_udp = || select(vec!["tcp", "udp"]);
    let connect = (
        tcp_udp(),
        prop_oneof![3 => host(), 1 => host_name()],
        ports(),
    )
        .prop_map(|(p, h, n)| format!("{p}://{h}:{n}"));
    let bind = (tcp_udp(), host(), ports()).prop_map(|(p, h, n)| format!("{p}://{h}:{n}"));
    (
        netns,
        entries(
            connect,
            &["any://*:1", "unix:/run/x.sock", "tcp://127.0.0.1:99999", ""],
            bad,
            3,
        ),
        entries(
            bind,
            &["tcp://example.com:80", "unix:@x", "udp://*:70000"],
            bad,
            3,
        ),
    )
        .prop_map(|(netns, connect, bind)| Bridge {
            netns,
            connect,
            bind,
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
        prop::option::of(bridge(bad)),
    );
    (top, more).prop_map(
        move |(
            (name, default, ask_timeout, ask_fallback, jail, caps, ioctl, namespaces),
            (
                scm,
                fcntl,
                mut source_cmsgs,
                landlock,
                (sockets, sockets_refuse),
                deny,
                allow,
                ask,
                bridge,
            ),
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
                bridge,
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
