//! Conformance of the `jail` profile (David Wagner's jail() notes, rules J1-J8), one test per
//! rule id, as `profiles.rs` does for the other built-in profiles.

use crate::profiles::{
    assert_results, assert_socket, confined_set, jail_with, JAIL, JAIL_ADDRESS, WAIT,
};
use std::net::{TcpListener, UdpSocket};
use std::sync::mpsc;

use netjail_integration_tests::{confined, unconfined, Canary};

use crate::{assert_eperm, assert_ok, need_python, need_root, probe};

// ---- jail: J1-J8 --------------------------------------------------------------------------

/// J1: in the `jail` no raw IP socket (`EPERM`: a refused type of a listed family) and no
/// packet socket (`EAFNOSUPPORT`) can be made; unconfined root makes both.
#[test]
fn s_j1_jail_raw_and_packet_sockets_refused() {
    if !need_root("s_j1_jail_raw_and_packet_sockets_refused") {
        return;
    }
    let args = [probe(), "socket", "2:3:1", "10:3:58", "17:3", "17:2", "2:1"];
    let native = unconfined(&args);
    for spec in &args[2..] {
        assert_socket(&native, spec, "ok");
    }
    let out = confined(JAIL, &args);
    assert_socket(&out, "2:3:1", "EPERM");
    assert_socket(&out, "10:3:58", "EPERM");
    assert_socket(&out, "17:3", "EAFNOSUPPORT");
    assert_socket(&out, "17:2", "EAFNOSUPPORT");
    assert_socket(&out, "2:1", "ok");
}

/// J2: in the `jail` a wildcard bind and a `listen` without bind land on the jail address
/// (127.0.0.2), a bind to another address is refused; unconfined the wildcard stays the
/// wildcard. The address is the profile's parameter: set to 127.0.0.3, binds land there.
#[test]
fn s_j2_jail_wildcard_bind_lands_on_the_jail_address() {
    let out = unconfined(&[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"]);
    assert_eq!(out.json()["local"]["ip"], "0.0.0.0", "{}", out.describe());

    let out = confined(JAIL, &[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"]);
    let v = out.json();
    assert_eq!(v["bind"]["ok"], true, "{}", out.describe());
    assert_eq!(v["listen"]["ok"], true, "{}", out.describe());
    assert_eq!(v["local"]["ip"], JAIL_ADDRESS, "{}", out.describe());
    let out = confined(JAIL, &[probe(), "bind", "udp", "0.0.0.0", "0"]);
    assert_eq!(
        out.json()["local"]["ip"],
        JAIL_ADDRESS,
        "{}",
        out.describe()
    );
    let out = confined(JAIL, &[probe(), "listen-unbound", "inet"]);
    assert_eq!(out.json()["listen"]["ok"], true, "{}", out.describe());
    assert_eq!(
        out.json()["local"]["ip"],
        JAIL_ADDRESS,
        "{}",
        out.describe()
    );
    let out = confined(JAIL, &[probe(), "bind", "tcp", "127.0.0.1", "0"]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());

    // The jail address is the profile's parameter: `--set` on the command line...
    let other = ["jail_address=127.0.0.3"];
    let out = confined_set(
        JAIL,
        &other,
        &[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"],
    );
    assert_eq!(out.json()["local"]["ip"], "127.0.0.3", "{}", out.describe());
    let out = confined_set(JAIL, &other, &[probe(), "bind", "tcp", JAIL_ADDRESS, "0"]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
    // ... or `extends = "jail"` in a file of the user's own.
    let own = jail_with("127.0.0.4", "");
    let out = confined(
        own.as_str(),
        &[probe(), "bind", "tcp", "0.0.0.0", "0", "--listen"],
    );
    assert_eq!(out.json()["local"]["ip"], "127.0.0.4", "{}", out.describe());
}

/// J2: connections and datagrams from the `jail` (with a connect rule of the user's own)
/// leave from the jail address, as the peer sees them; unconfined from 127.0.0.1.
#[test]
fn s_j2_jail_outgoing_traffic_leaves_from_the_jail_address() {
    for (proto, confine) in [("tcp", false), ("tcp", true), ("udp", false), ("udp", true)] {
        let (port, peer) = if proto == "tcp" {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                if let Ok((_, peer)) = l.accept() {
                    let _ = tx.send(peer.ip().to_string());
                }
            });
            (port, rx)
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let port = s.local_addr().expect("addr").port();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = tx.send(peer.ip().to_string());
                }
            });
            (port, rx)
        };
        let p = port.to_string();
        let args = [probe(), "source", proto, &p];
        let out = if confine {
            let policy = jail_with(
                JAIL_ADDRESS,
                &format!("[[allow]]\nconnect = [\"{proto}://127.0.0.1:{port}\"]"),
            );
            confined(policy.as_str(), &args)
        } else {
            unconfined(&args)
        };
        assert_eq!(out.json()["result"]["ok"], true, "{}", out.describe());
        let seen = peer.recv_timeout(WAIT).expect("the peer saw the traffic");
        let expected = if confine { JAIL_ADDRESS } else { "127.0.0.1" };
        assert_eq!(seen, expected, "{proto} confined={confine}");
    }
}

/// J3: the `jail` refuses `connect` and datagram destinations (`sendto`) unless the user
/// allows them; the canaries hear nothing. Unconfined both reach their canary.
#[test]
fn s_j3_jail_connect_and_sendto_refused() {
    let (tcp, udp) = (Canary::tcp4(), Canary::udp4());
    let connect = [probe(), "connect", "tcp", "127.0.0.1", &tcp.port_str()];
    let sendto = [probe(), "source", "udp", &udp.port_str()];
    assert_ok(&unconfined(&connect));
    assert_eq!(tcp.wait_count(1, WAIT), 1);
    let out = unconfined(&sendto);
    assert_eq!(out.json()["result"]["ok"], true, "{}", out.describe());
    assert_eq!(udp.wait_count(1, WAIT), 1);

    assert_eperm(&confined(JAIL, &connect));
    let out = confined(JAIL, &sendto);
    assert_eq!(out.json()["result"]["err"], "EPERM", "{}", out.describe());
    // The jail's own address is no exception.
    let out = confined(
        JAIL,
        &[probe(), "connect", "udp", JAIL_ADDRESS, "9", "--send"],
    );
    assert_eperm(&out);
    assert_eq!(
        tcp.settled_count(),
        1,
        "a jailed connect reached the canary"
    );
    assert_eq!(
        udp.settled_count(),
        1,
        "a jailed datagram reached the canary"
    );
}

/// Socket options that reach past the jail; prints a JSON object of outcome names.
const PY_OPTIONS: &str = r#"
import errno, json, socket
r = {}
def t(name, f):
    try:
        f(); r[name] = "ok"
    except OSError as e:
        r[name] = errno.errorcode.get(e.errno, str(e.errno))
s = socket.socket()
t("SO_BINDTODEVICE", lambda: s.setsockopt(socket.SOL_SOCKET, 25, b"lo"))
t("SO_MARK", lambda: s.setsockopt(socket.SOL_SOCKET, 36, 7))
t("IP_TRANSPARENT", lambda: s.setsockopt(socket.SOL_IP, 19, 1))
t("IP_HDRINCL", lambda: s.setsockopt(socket.SOL_IP, 3, 1))
t("SO_KEEPALIVE", lambda: s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1))
print(json.dumps(r))
"#;

/// J4: in the `jail`, `SO_BINDTODEVICE`, `SO_MARK`, `IP_TRANSPARENT` and `IP_HDRINCL` are
/// refused with `EPERM` before the kernel looks at them; `SO_KEEPALIVE` works. Unconfined root
/// sets the first three (`IP_HDRINCL` on a TCP socket is the kernel's `ENOPROTOOPT`, on a raw
/// one, which the jail refuses anyway (J1), it works).
#[test]
fn s_j4_jail_refused_socket_options() {
    if !need_root("s_j4_jail_refused_socket_options") {
        return;
    }
    let Some(py) = need_python("s_j4_jail_refused_socket_options") else {
        return;
    };
    let args = [py.as_str(), "-c", PY_OPTIONS];
    let refused = ["SO_BINDTODEVICE", "SO_MARK", "IP_TRANSPARENT"];
    let native = unconfined(&args);
    assert_results(&native, &refused, "ok", "unconfined");
    assert_results(&native, &["SO_KEEPALIVE"], "ok", "unconfined");
    assert_results(&native, &["IP_HDRINCL"], "ENOPROTOOPT", "unconfined");

    let out = confined(JAIL, &args);
    assert_results(&out, &refused, "EPERM", "jail");
    assert_results(&out, &["IP_HDRINCL"], "EPERM", "jail");
    assert_results(&out, &["SO_KEEPALIVE"], "ok", "jail");
}

/// Passes a descriptor over a socketpair with `SCM_RIGHTS`, then sends plain data.
const PY_SCM_RIGHTS: &str = r#"
import errno, json, os, socket
a, b = socket.socketpair()
r = {}
def t(name, f):
    try:
        f(); r[name] = "ok"
    except OSError as e:
        r[name] = errno.errorcode.get(e.errno, str(e.errno))
t("scm_rights", lambda: socket.send_fds(a, [b"fd"], [os.open("/dev/null", os.O_RDONLY)]))
t("plain", lambda: a.sendmsg([b"data"]))
print(json.dumps(r))
"#;

/// J5: the `jail` sets `scm_rights = false`: passing a descriptor over a unix socket fails with
/// `EPERM`, plain messages pass. Unconfined both work.
#[test]
fn s_j5_jail_scm_rights_refused() {
    let Some(py) = need_python("s_j5_jail_scm_rights_refused") else {
        return;
    };
    let args = [py.as_str(), "-c", PY_SCM_RIGHTS];
    let native = unconfined(&args);
    assert_results(&native, &["scm_rights", "plain"], "ok", "unconfined");
    let out = confined(JAIL, &args);
    assert_results(&out, &["scm_rights"], "EPERM", "jail");
    assert_results(&out, &["plain"], "ok", "jail");
}

/// J6: the `jail` sets `ioctl = "safe-list"`: `FIONREAD`, `FIONBIO`, `FIOCLEX`, `TCGETS`,
/// `TIOCGWINSZ` work, `TIOCSTI`, `TIOCSWINSZ` and `SIOCGIFINDEX` fail with `EPERM`; unconfined
/// every one works.
#[test]
fn s_j6_jail_ioctl_safe_list() {
    use crate::hardening::{assert_table, SAFE, UNSAFE};
    let out = unconfined(&[probe(), "tty-ioctls"]);
    assert_table(&out, &SAFE, "ok", "unconfined");
    assert_table(&out, &UNSAFE, "ok", "unconfined");
    let out = confined(JAIL, &[probe(), "tty-ioctls"]);
    assert_table(&out, &SAFE, "ok", "jail");
    assert_table(&out, &UNSAFE, "EPERM", "jail");
}

/// J7: the `jail` sets `fcntl_setown = false`: `F_SETOWN`, `F_SETOWN_EX`, `F_SETSIG`,
/// `FIOSETOWN` and `SIOCSPGRP` fail with `EPERM`, `F_GETOWN` and `O_ASYNC` work; unconfined
/// every one works.
#[test]
fn s_j7_jail_setown_refused() {
    use crate::hardening::{assert_table, SETOWN};
    let out = unconfined(&[probe(), "setown"]);
    assert_table(&out, &SETOWN, "ok", "unconfined");
    let out = confined(JAIL, &[probe(), "setown"]);
    assert_table(&out, &SETOWN, "EPERM", "jail");
    assert_table(&out, &["F_GETOWN", "F_SETFL_O_ASYNC"], "ok", "jail");
}

/// J8: root in the `jail` cannot bind a privileged port on the jail address (the profile's
/// `any://*:*` never grants one); a rule of the user's own that names the port does, and the
/// broker binds it. Unconfined root binds it.
#[test]
fn s_j8_jail_privileged_port_only_where_named() {
    if !need_root("s_j8_jail_privileged_port_only_where_named") {
        return;
    }
    let port = (900..1000)
        .find(|p| TcpListener::bind((JAIL_ADDRESS, *p)).is_ok())
        .expect("a free port between 900 and 999 on the jail address");
    let p = port.to_string();
    let bind = [probe(), "bind", "tcp", JAIL_ADDRESS, &p];
    let out = unconfined(&bind);
    assert_eq!(out.json()["bind"]["ok"], true, "{}", out.describe());

    let out = confined(JAIL, &bind);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());
    let out = confined(JAIL, &[probe(), "bind", "tcp", "0.0.0.0", &p]);
    assert_eq!(out.json()["bind"]["err"], "EPERM", "{}", out.describe());

    let named = jail_with(
        JAIL_ADDRESS,
        &format!("[[allow]]\nbind = [\"tcp://*:{port}\"]"),
    );
    let out = confined(named.as_str(), &[probe(), "bind", "tcp", "0.0.0.0", &p]);
    assert_eq!(out.json()["bind"]["ok"], true, "{}", out.describe());
    assert_eq!(
        out.json()["local"]["ip"],
        JAIL_ADDRESS,
        "{}",
        out.describe()
    );
    assert_eq!(out.json()["local"]["port"], port, "{}", out.describe());
}
