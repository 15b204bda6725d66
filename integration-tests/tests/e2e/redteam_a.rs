//! Red team A (identity and the broker's own sockets): attacks that got out of a confined
//! program at a813f04. Each test shows the attack working unconfined first, then asserts
//! that the confined attack is REFUSED: these tests fail until the hole is closed.
//!
//! The sandboxed programs are python3 snippets run as nobody (`setpriv` inside the sandbox,
//! under `netjail run --allow-root`, the embedded broker or a root `netjaild`); the servers
//! on the other side run as root outside every sandbox.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{python3, spawn, unconfined};
use serde_json::Value;

use crate::{as_nobody, have_setpriv, need_root, Via};

/// A python3 that uid 65534 can run (not a shim under /root), or `None` after a SKIP line.
fn nobody_python(test: &str) -> Option<String> {
    if !need_root(test) || !have_setpriv(test) {
        return None;
    }
    let mut candidates: Vec<String> = vec!["/usr/bin/python3".to_owned()];
    candidates.extend(
        python3()
            .into_iter()
            .filter_map(|p| p.to_str().map(str::to_owned)),
    );
    let found = candidates.into_iter().find(|py| {
        let out = unconfined(&as_nobody(&[py.as_str(), "-c", "print('{\"ok\": true}')"]));
        out.json.as_ref().is_some_and(|v| v["ok"] == true)
    });
    if found.is_none() {
        netjail_integration_tests::skip(test, "no python3 that uid 65534 can run");
    }
    found
}

// ---- autobind + listen: an abstract server the policy refuses ---------------------------------

/// Tries a named abstract bind (refused by the policy), then autobinds another stream socket
/// (`bind` with only the family), listens on it, prints its abstract name and serves one
/// client.
const PY_AUTOBIND_SERVER: &str = r#"
import errno, json, socket
r = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(b"\0rt-a-named"); r["named"] = "ok"
except OSError as e:
    r["named"] = errno.errorcode.get(e.errno, str(e.errno))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(b"")
    s.listen(4)
    r["listening"] = s.getsockname().hex()
except OSError as e:
    r["listen_err"] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(r), flush=True)
if "listening" in r:
    s.settimeout(8)
    try:
        c, _ = s.accept(); c.sendall(b"from-the-sandbox"); c.close()
    except OSError:
        pass
"#;

/// **Under a policy that refuses abstract unix names (`disablenetwork`: "Abstract unix
/// sockets are refused"), a sandbox still serves on the abstract namespace: `bind` with only
/// the family (the autobind) is performed without a decision, and `listen` on the autobound
/// socket is performed without one too.** Any process of the network namespace (outside
/// every sandbox) then connects to it by the name `/proc/net/unix` lists.
///
/// The attack: `bind("\0rt-a-named")` gets EPERM (the policy refuses the abstract name), but
/// `bind(b"")` + `listen()` succeed (audit: `op="bind" endpoint="unix:(autobind)"
/// decision="pass" rule="autobind"`, then `op="listen" endpoint="unix:@xxxxx"
/// decision="pass" rule="bound"`), and a root client outside connects to the name and
/// reads what the sandbox sends.
///
/// Expected: the listen on an autobound socket (or the autobind itself) decided as a bind
/// of that abstract name: EPERM under a policy whose `unix` rules name no abstract socket,
/// as for the named bind. (The kernel's own autobind at a connect or send with `SO_PASSCRED`
/// makes a client name only; it is the `listen` that makes a server.)
///
/// Root cause: `broker/src/bind.rs:53-62` (`Reading::UnixAutobind` is performed with
/// `decided(None, "autobind", ...)`, no policy evaluation) and `broker/src/bind.rs:293-308`
/// (`decide_listen`: every socket that is not an unbound inet one is listened on with
/// `decided(None, "bound", ...)`, so an autobound unix socket becomes a server with no
/// decision). Suggested fix: in `decide_listen`, read the unix socket's name and decide an
/// abstract one as `Op::Bind` of `Target::UnixAbstract(name)` (refusing when the policy does),
/// or decide the autobind as a bind of `@*`.
fn autobind_listen(via: Via) {
    let test = "rt_a_autobind_listen_serves_a_refused_abstract_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let attack = as_nobody(&[py.as_str(), "-c", PY_AUTOBIND_SERVER]);

    // Unconfined: both binds work, and an outside client reaches the autobound listener.
    let reached = |running: netjail_integration_tests::Running| -> (Value, Option<String>) {
        let line = running
            .read_line(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no line from the sandbox: {}", running.stderr_so_far()));
        let v: Value = serde_json::from_str(line.trim()).expect("JSON line");
        let got = v["listening"].as_str().map(|hex| {
            let out = unconfined(&[
                py.as_str(),
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
                 s.settimeout(5)\ns.connect(bytes.fromhex(sys.argv[1]))\nprint(s.recv(64).decode())",
                hex,
            ]);
            out.stdout.trim().to_owned()
        });
        let _ = running.wait(Duration::from_secs(10));
        (v, got)
    };
    let mut cmd = Command::new(attack[0]);
    cmd.args(&attack[1..]);
    let (v, got) = reached(spawn(&mut cmd));
    assert_eq!(v["named"], "ok", "{v}");
    assert_eq!(got.as_deref(), Some("from-the-sandbox"), "{v}");

    // Confined: the named abstract bind is refused...
    let (v, got) = reached(spawn(&mut via.cmd("disablenetwork", &attack)));
    assert_eq!(v["named"], "EPERM", "{v}");
    // ...and so must be serving on an abstract name at all.
    assert_eq!(
        v["listen_err"], "EPERM",
        "the sandbox listens on the abstract name {} (an outside client read {got:?})",
        v["listening"]
    );
    assert_eq!(got, None);
}

both!(
    /// See [`autobind_listen`].
    rt_a_autobind_listen_serves_a_refused_abstract_name => autobind_listen
);
