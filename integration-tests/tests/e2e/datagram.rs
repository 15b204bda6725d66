//! Datagram destinations (L3), binds and listens (D1, L1, J8) and the jail address (J2).
//!
//! Each attack runs unconfined first and must work there, so that the probe is shown able to
//! fail; confined, the canary it aims at must stay silent.

use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use netjail_integration_tests::{confined, policy_file, unconfined, Canary};
use serde_json::{json, Value};

use crate::{probe, Via};

const WAIT: Duration = Duration::from_secs(5);

fn udp_policy(ports: &[u16]) -> netjail_integration_tests::TempPath {
    let list: Vec<String> = ports
        .iter()
        .map(|p| format!("\"udp://127.0.0.1:{p}\""))
        .collect();
    policy_file(&format!(
        "name = \"udp\"\n[[allow]]\nsend = [{}]\n",
        list.join(", ")
    ))
}

fn errors_only(v: &Value, allowed: &[&str]) -> bool {
    v["errors"]
        .as_object()
        .is_some_and(|m| m.keys().all(|k| allowed.contains(&k.as_str())))
}

// ---- msg_name rewritten by a second thread -------------------------------------------------

fn msgname_flip(via: Via) {
    let (a, d) = (Canary::udp4(), Canary::udp4());
    let out = unconfined(&[
        probe(),
        "msgname-flip",
        &a.port_str(),
        &d.port_str(),
        "3000",
    ]);
    assert_eq!(out.json()["sent"], 3000, "{}", out.describe());
    assert!(
        d.wait_count(1, WAIT) > 0,
        "unconfined flips never reached the denied port"
    );

    let (a, d) = (Canary::udp4(), Canary::udp4());
    let policy = udp_policy(&[a.port()]);
    let out = via.run_for(
        policy.as_str(),
        &[
            probe(),
            "msgname-flip",
            &a.port_str(),
            &d.port_str(),
            "3000",
        ],
        Duration::from_secs(60),
    );
    let v = out.json();
    assert!(
        v["sent"].as_u64() > Some(0),
        "nothing was sent: {}",
        out.describe()
    );
    assert!(errors_only(v, &["EPERM"]), "{}", out.describe());
    assert!(a.wait_count(1, WAIT) > 0);
    assert_eq!(
        d.settled_count(),
        0,
        "TOCTOU: a flipped msg_name reached the denied port"
    );
}

both!(
    /// L3 / M1: `sendmsg` whose `msg_name` another thread flips between NULL, an allowed and
    /// a denied address never sends to the denied one: the broker sends its own copy.
    s_l3_sendmsg_msg_name_flip_never_reaches_denied => msgname_flip
);

// ---- dup2 of a UDP socket over a connected TCP one ------------------------------------------

/// L3 / invariant 2: `sendmsg` to a denied UDP address on a fd that a second thread swaps
/// between a connected TCP socket (where the address is ignored) and an unconnected UDP
/// socket (where it is the destination). The broker acts on the socket it took, so a check
/// made on the TCP socket never sends on the UDP one.
#[test]
fn s_l3_dup2_udp_over_tcp_never_reaches_denied() {
    let run = |policy: Option<&str>| {
        // A TCP peer that keeps its connections open, so that the TCP sends keep working.
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let tcp_port = l.local_addr().expect("addr").port().to_string();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((c, _)) = l.accept() {
                held.push(c);
            }
        });
        let d = Canary::udp4();
        let args = [probe(), "dup2-flip", &tcp_port, &d.port_str(), "3000"];
        let out = match policy {
            None => unconfined(&args),
            Some(_) => {
                let p = policy_file(&format!(
                    "name = \"t\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:{tcp_port}\"]\n"
                ));
                Via::Embedded.run_for(p.as_str(), &args, Duration::from_secs(60))
            }
        };
        (out, d)
    };
    let (out, d) = run(None);
    assert!(out.json()["sent"].as_u64() > Some(0), "{}", out.describe());
    assert!(
        d.wait_count(1, WAIT) > 0,
        "unconfined: the UDP socket never sent to the canary"
    );

    let (out, d) = run(Some("confined"));
    let v = out.json();
    assert!(
        v["sent"].as_u64() > Some(0),
        "the TCP sends stopped: {}",
        out.describe()
    );
    assert!(errors_only(v, &["EPERM", "EAGAIN"]), "{}", out.describe());
    assert_eq!(
        d.settled_count(),
        0,
        "a swapped-in UDP socket reached the denied port"
    );
}

// ---- sendmmsg ----------------------------------------------------------------------------------

/// L3: each entry of a `sendmmsg` is decided on its own. With entries (allowed, denied,
/// allowed) the first is sent, the second refused, and the call stops there as the kernel's
/// sendmmsg stops at the first failure: it returns 1 and sets only the first `msg_len`.
#[test]
fn s_l3_sendmmsg_stops_at_a_denied_entry() {
    let (a1, d, a2) = (Canary::udp4(), Canary::udp4(), Canary::udp4());
    let ports = [a1.port_str(), d.port_str(), a2.port_str()];
    let out = unconfined(&[probe(), "sendmmsg", &ports[0], &ports[1], &ports[2]]);
    assert_eq!(out.json()["result"]["sent"], 3, "{}", out.describe());
    assert_eq!(d.wait_count(1, WAIT), 1);

    let (a1, d, a2) = (Canary::udp4(), Canary::udp4(), Canary::udp4());
    let ports = [a1.port_str(), d.port_str(), a2.port_str()];
    let policy = udp_policy(&[a1.port(), a2.port()]);
    let out = confined(
        policy.as_str(),
        &[probe(), "sendmmsg", &ports[0], &ports[1], &ports[2]],
    );
    let v = out.json();
    assert_eq!(
        v["result"],
        json!({"ok": true, "sent": 1}),
        "{}",
        out.describe()
    );
    assert_eq!(
        v["msg_len"],
        json!([4, 0xdead, 0xdead]),
        "{}",
        out.describe()
    );
    assert_eq!(a1.wait_count(1, WAIT), 1);
    assert_eq!(d.settled_count(), 0, "the denied entry was sent");
    assert_eq!(
        a2.settled_count(),
        0,
        "entries after the denied one were sent"
    );

    // All denied: the error itself, as the kernel reports a failure of the first entry.
    let out = confined(policy.as_str(), &[probe(), "sendmmsg", &ports[1]]);
    assert_eq!(out.json()["result"]["err"], "EPERM", "{}", out.describe());
}

// ---- connected UDP sending elsewhere ---------------------------------------------------------

/// L3 / D3: a UDP socket connected to an allowed peer sends to it with no broker round trip,
/// but `sendto`/`sendmsg` naming another destination is decided, and refused.
#[test]
fn s_l3_connected_udp_sendto_elsewhere_is_decided() {
    let (a, d) = (Canary::udp4(), Canary::udp4());
    let out = unconfined(&[probe(), "udp-connected", &a.port_str(), &d.port_str()]);
    let v = out.json();
    assert_eq!(v["sendto_denied"]["ok"], true, "{}", out.describe());
    assert_eq!(v["sendmsg_denied"]["ok"], true, "{}", out.describe());
    assert_eq!(d.wait_count(2, WAIT), 2);

    let (a, d) = (Canary::udp4(), Canary::udp4());
    let policy = udp_policy(&[a.port()]);
    let out = confined(
        policy.as_str(),
        &[probe(), "udp-connected", &a.port_str(), &d.port_str()],
    );
    let v = out.json();
    assert_eq!(v["connect"]["ok"], true, "{}", out.describe());
    assert_eq!(v["send"]["sent"], 3, "{}", out.describe());
    assert_eq!(v["sendto_denied"]["err"], "EPERM", "{}", out.describe());
    assert_eq!(v["sendmsg_denied"]["err"], "EPERM", "{}", out.describe());
    assert_eq!(v["sendto_allowed"]["sent"], 4, "{}", out.describe());
    assert_eq!(a.wait_count(2, WAIT), 2);
    assert_eq!(
        d.settled_count(),
        0,
        "a connected UDP socket sent elsewhere"
    );
}

// ---- bind and listen -----------------------------------------------------------------------------

/// D1 / L1: `listen()` on a socket that was never bound binds it to the wildcard address
/// and an ephemeral port; without a bind rule that allows it, it is refused, so no server
/// appears on 0.0.0.0 past the bind rules.
#[test]
fn s_d1_listen_without_bind_is_refused() {
    let out = unconfined(&[probe(), "listen-unbound", "inet"]);
    assert_eq!(out.json()["listen"]["ok"], true, "{}", out.describe());
    assert_ne!(out.json()["local"]["port"], 0, "{}", out.describe());

    let deny = policy_file("name = \"t\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:1\"]\n");
    for family in ["inet", "inet6"] {
        let out = confined(deny.as_str(), &[probe(), "listen-unbound", family]);
        assert_eq!(out.json()["listen"]["err"], "EPERM", "{}", out.describe());
        assert_eq!(
            out.json()["local"]["port"],
            0,
            "{family}: {}",
            out.describe()
        );
    }

    // An explicit wildcard, ephemeral bind rule allows it.
    let allow = policy_file("name = \"t\"\n[[allow]]\nbind = [\"tcp://0.0.0.0:0\"]\n");
    let out = confined(allow.as_str(), &[probe(), "listen-unbound", "inet"]);
    assert_eq!(out.json()["listen"]["ok"], true, "{}", out.describe());
    assert_ne!(out.json()["local"]["port"], 0, "{}", out.describe());
}

/// D1 / L1: a bind is allowed by address and port only. The wildcard address with no rule
/// for it is refused even when loopback is allowed; port 0 is the ephemeral bind.
#[test]
fn s_l1_bind_by_address_and_port() {
    let out = unconfined(&[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"]);
    assert_eq!(out.json()["bind"]["ok"], true, "{}", out.describe());

    let policy = policy_file("name = \"t\"\n[[allow]]\nbind = [\"tcp://127.0.0.1:0\"]\n");
    let out = confined(
        policy.as_str(),
        &[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"],
    );
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
    // A refused bind leaves the socket unbound, so listen is refused too.
    assert_eq!(out.json()["listen"]["err"], "EPERM", "{}", out.describe());

    let out = confined(
        policy.as_str(),
        &[probe(), "bind", "tcp", "127.0.0.1", "0", "--listen"],
    );
    let v = out.json();
    assert_eq!(v["bind"]["ok"], true, "{}", out.describe());
    assert_eq!(v["listen"]["ok"], true, "{}", out.describe());
    assert_eq!(v["local"]["ip"], "127.0.0.1", "{}", out.describe());

    // Port 0 in a rule is the ephemeral bind, not every port.
    let free = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let port = free.port().to_string();
    let out = confined(
        policy.as_str(),
        &[probe(), "bind", "tcp", "127.0.0.1", &port],
    );
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
    let out = confined(policy.as_str(), &[probe(), "bind", "udp", "127.0.0.1", "0"]);
    assert_eq!(
        out.json()["bind"]["err"],
        "EPERM",
        "udp is not tcp: {}",
        out.describe()
    );
}

/// A privileged port below 1024 that is free on loopback.
fn free_privileged_port() -> u16 {
    (900..1000)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port between 900 and 999")
}

/// J8: the sandbox has lost CAP_NET_BIND_SERVICE; the broker, root, binds a privileged port
/// for it only where the policy names that port. A broad rule (`*`) does not grant it.
#[test]
fn s_j8_privileged_port_only_where_named() {
    if !crate::need_root("s_j8_privileged_port_only_where_named") {
        return;
    }
    let port = free_privileged_port();
    let p = port.to_string();
    let out = unconfined(&[probe(), "bind", "tcp", "127.0.0.1", &p]);
    assert_eq!(
        out.json()["bind"]["ok"],
        true,
        "root binds it unconfined: {}",
        out.describe()
    );

    let broad = policy_file("name = \"t\"\n[[allow]]\nbind = [\"tcp://127.0.0.1:*\"]\n");
    let out = confined(broad.as_str(), &[probe(), "bind", "tcp", "127.0.0.1", &p]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());

    let named = policy_file(&format!(
        "name = \"t\"\n[[allow]]\nbind = [\"tcp://127.0.0.1:{port}\"]\n"
    ));
    let out = confined(named.as_str(), &[probe(), "bind", "tcp", "127.0.0.1", &p]);
    assert_eq!(out.json()["bind"]["ok"], true, "{}", out.describe());
    assert_eq!(out.json()["local"]["port"], port, "{}", out.describe());
}

// ---- the jail address -------------------------------------------------------------------------

const JAIL: &str = "127.0.0.2";

fn jail_policy(extra: &str) -> netjail_integration_tests::TempPath {
    policy_file(&format!(
        "name = \"jail\"\njail_address = \"{JAIL}\"\n[[allow]]\nbind = [\"any://*:*\"]\n{extra}"
    ))
}

/// J2: a server inside a jail that binds the wildcard address, or listens without binding,
/// ends up on the jail address; a bind to another address is refused.
#[test]
fn s_j2_wildcard_bind_lands_on_the_jail_address() {
    let out = unconfined(&[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"]);
    assert_eq!(out.json()["local"]["ip"], "0.0.0.0", "{}", out.describe());

    let policy = jail_policy("");
    let out = confined(
        policy.as_str(),
        &[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"],
    );
    let v = out.json();
    assert_eq!(v["bind"]["ok"], true, "{}", out.describe());
    assert_eq!(v["listen"]["ok"], true, "{}", out.describe());
    assert_eq!(v["local"]["ip"], JAIL, "{}", out.describe());

    let out = confined(policy.as_str(), &[probe(), "bind", "udp", "0.0.0.0", "0"]);
    assert_eq!(out.json()["local"]["ip"], JAIL, "{}", out.describe());

    let out = confined(policy.as_str(), &[probe(), "listen-unbound", "inet"]);
    assert_eq!(out.json()["listen"]["ok"], true, "{}", out.describe());
    assert_eq!(out.json()["local"]["ip"], JAIL, "{}", out.describe());

    let out = confined(policy.as_str(), &[probe(), "bind", "tcp", "127.0.0.1", "0"]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
    // No IPv6 jail address: an IPv6 socket cannot bind anything but the mapped jail address.
    let out = confined(policy.as_str(), &[probe(), "bind", "tcp", "::1", "0"]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
}

/// The peer address of the first TCP connection or UDP datagram to arrive, seen from the
/// listening side.
fn first_peer_tcp(l: TcpListener) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((_, peer)) = l.accept() {
            let _ = tx.send(peer.ip().to_string());
        }
    });
    rx
}

fn first_peer_udp(s: UdpSocket) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((_, peer)) = s.recv_from(&mut buf) {
            let _ = tx.send(peer.ip().to_string());
        }
    });
    rx
}

/// J2: outgoing connections and datagrams from a jail leave from the jail address, as the
/// peer sees them; `IP_PKTINFO` cannot pick another source.
#[test]
fn s_j2_outgoing_traffic_leaves_from_the_jail_address() {
    for (proto, confine) in [("tcp", false), ("tcp", true), ("udp", false), ("udp", true)] {
        let (port, peer) = if proto == "tcp" {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            (l.local_addr().expect("addr").port(), first_peer_tcp(l))
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            (s.local_addr().expect("addr").port(), first_peer_udp(s))
        };
        let p = port.to_string();
        let args = [probe(), "source", proto, &p];
        let out = if confine {
            let policy = jail_policy(&format!("connect = [\"{proto}://127.0.0.1:{port}\"]\n"));
            confined(policy.as_str(), &args)
        } else {
            unconfined(&args)
        };
        assert_eq!(
            out.json()["result"]["ok"],
            true,
            "{proto}: {}",
            out.describe()
        );
        let seen = peer.recv_timeout(WAIT).expect("the peer saw the traffic");
        let expected = if confine { JAIL } else { "127.0.0.1" };
        assert_eq!(
            seen,
            expected,
            "{proto} confined={confine}: {}",
            out.describe()
        );
        // An unbound UDP socket is bound to the wildcard by its first send; TCP to the source
        // the route chose.
        let local = match (proto, confine) {
            ("udp", false) => "0.0.0.0",
            _ => expected,
        };
        assert_eq!(out.json()["local"]["ip"], local, "{}", out.describe());
    }

    // IP_PKTINFO asking for another source: works unconfined, refused in the jail.
    let c = Canary::udp4();
    let out = unconfined(&[probe(), "pktinfo", &c.port_str(), "127.0.0.3"]);
    assert_eq!(out.json()["result"]["ok"], true, "{}", out.describe());
    assert_eq!(c.wait_count(1, WAIT), 1);
    let policy = jail_policy(&format!("connect = [\"udp://127.0.0.1:{}\"]\n", c.port()));
    let out = confined(
        policy.as_str(),
        &[probe(), "pktinfo", &c.port_str(), "127.0.0.3"],
    );
    assert_eq!(out.json()["result"]["err"], "EPERM", "{}", out.describe());
    assert_eq!(
        c.settled_count(),
        1,
        "a datagram with a chosen source left the jail"
    );
}

// ---- netlink ----------------------------------------------------------------------------------

/// L4 / N1: a policy that lists netlink sockets lets `ip` read the interfaces (its bind and
/// its messages to the kernel go through the broker), and still cannot change them: the
/// broker made the route socket without any capability and sends only requests that read,
/// and the sandbox has lost `CAP_NET_ADMIN`; the root broker's own never counts. A policy
/// whose list names no netlink socket cannot read them. Run in a network namespace made for
/// the test, where the same change works unconfined.
#[test]
fn s_l4_n1_listed_netlink_reads_but_cannot_configure() {
    if netjail_integration_tests::which("ip").is_none() {
        netjail_integration_tests::skip(
            "s_l4_n1_listed_netlink_reads_but_cannot_configure",
            "no ip",
        );
        return;
    }
    let netjail = netjail_integration_tests::netjail_bin();
    let netjail = netjail.to_str().expect("utf-8 path");
    let listed = policy_file("name = \"nl\"\n[sockets]\nallow = [\"netlink:raw\", \"unix:*\"]\n");
    let unlisted = policy_file("name = \"nl\"\n[sockets]\nallow = [\"unix:*\", \"inet:stream\"]\n");
    let in_netns = |args: &[&str]| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-n", "--"]).args(args);
        netjail_integration_tests::run(&mut cmd, netjail_integration_tests::DEFAULT_TIMEOUT)
    };
    let change = ["ip", "link", "set", "lo", "mtu", "1400"];
    let show = ["ip", "-o", "link", "show", "lo"];

    let out = in_netns(&change);
    assert_eq!(
        out.code(),
        Some(0),
        "unconfined change in a new namespace: {}",
        out.describe()
    );

    let mut read = vec![
        netjail,
        "run",
        "--allow-root",
        "--policy",
        listed.as_str(),
        "--",
    ];
    read.extend(show);
    let out = in_netns(&read);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stdout.contains("lo"), "{}", out.describe());

    let mut write = vec![
        netjail,
        "run",
        "--allow-root",
        "--policy",
        listed.as_str(),
        "--",
        "sh",
        "-c",
    ];
    let script = "ip link set lo mtu 1400; r=$?; ip -o link show lo; exit $r";
    write.push(script);
    let out = in_netns(&write);
    assert_ne!(
        out.code(),
        Some(0),
        "a confined ip changed an interface: {}",
        out.describe()
    );
    assert!(!out.stdout.contains("mtu 1400"), "{}", out.describe());

    let mut unlisted_read = vec![
        netjail,
        "run",
        "--allow-root",
        "--policy",
        unlisted.as_str(),
        "--",
    ];
    unlisted_read.extend(show);
    let out = in_netns(&unlisted_read);
    assert_ne!(
        out.code(),
        Some(0),
        "netlink is not in the list: {}",
        out.describe()
    );
}
