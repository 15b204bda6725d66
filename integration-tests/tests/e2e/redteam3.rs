//! Red team, third round: a unix datagram bind raced to a name the policy refuses.
//!
//! The broker binds with the program's own address and checks afterwards that the socket's
//! file landed in the directory it decided on. A datagram socket raced elsewhere (a symlink
//! flipped between the decision and the kernel's walk) was a receiver at the refused name
//! until the broker shut it down, and what was queued there could be read after the bind was
//! answered `EPERM`. The attack runs unconfined first (binding straight at the refused name,
//! it reads what is sent there), then confined with the race: it must read nothing.

use std::process::Command;

use netjail_integration_tests::{confined, policy_file, spawn, unconfined, TempDir};
use serde_json::Value;

use crate::{as_nobody, nobody_python};

/// Sends `SECRET` to `DIR/secret/s` without pause for `SECS` seconds: another program's
/// traffic to a unix name the sandbox may not bind.
pub(crate) const SENDER: &str = r#"
import os, socket, sys, time
target = os.path.join(sys.argv[1], "secret", "s")
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try: c.sendto(b"SECRET", socket.MSG_DONTWAIT, target)
    except OSError: time.sleep(0.0005)
"#;

/// Binds datagram sockets at `DIR/link/s` while a child flips `link` between `allowed` and
/// `secret` (or, with a third argument, straight at `secret/s`), and reads whatever any of
/// them received while its file was in `secret`.
const ATTACK: &str = r#"
import json, os, socket, sys, time
base, secs = sys.argv[1], float(sys.argv[2])
direct = len(sys.argv) > 3
link, secret, allowed = (os.path.join(base, x) for x in ("link", "secret", "allowed"))
flipper = 0
if not direct:
    flipper = os.fork()
    if flipper == 0:
        try:
            while True:
                for tmp, to in (("tmp-a", "allowed"), ("tmp-s", "secret")):
                    tmp = os.path.join(base, tmp)
                    try: os.unlink(tmp)
                    except FileNotFoundError: pass
                    os.symlink(to, tmp); os.rename(tmp, link)
        finally:
            os._exit(0)
r = {"tries": 0, "landed_in_secret": 0, "received": 0, "refused": 0}
end = time.monotonic() + secs
while time.monotonic() < end:
    r["tries"] += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(os.path.join(secret, "s") if direct else os.path.join(link, "s"))
    except OSError as e:
        if e.errno == 1: r["refused"] += 1
    if direct: time.sleep(0.01)
    if os.path.lexists(os.path.join(secret, "s")):
        r["landed_in_secret"] += 1
        s.setblocking(False)
        try:
            while True:
                s.recv(100); r["received"] += 1
        except OSError: pass
        os.unlink(os.path.join(secret, "s"))
    try: os.unlink(os.path.join(allowed, "s"))
    except FileNotFoundError: pass
    s.close()
    if direct and r["received"]: break
if flipper: os.kill(flipper, 9); os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
"#;

pub(crate) fn attack_dir() -> TempDir {
    let dir = TempDir::new();
    for sub in ["", "allowed", "secret"] {
        let p = dir.path().join(sub);
        std::fs::create_dir_all(&p).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(&p, mode).unwrap();
    }
    std::os::unix::fs::symlink("allowed", dir.path().join("link")).unwrap();
    dir
}

pub(crate) fn result(out: &netjail_integration_tests::Outcome) -> Value {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no result: {}", out.describe()))
}

#[test]
fn rt3_raced_datagram_bind_reads_nothing_at_a_refused_name() {
    let test = "rt3_raced_datagram_bind_reads_nothing_at_a_refused_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();

    // Unconfined, bound straight at the name, the attacker reads what is sent there.
    let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "5"]));
    let out = unconfined(&as_nobody(&[&py, "-c", ATTACK, &base, "3", "direct"]));
    drop(sender);
    let v = result(&out);
    assert!(
        v["received"].as_u64().unwrap_or(0) > 0,
        "unconfined, the attack read nothing: {}",
        out.describe()
    );

    // Confined, only `allowed/` may be bound: the race lands sockets in `secret/`, which
    // must read nothing.
    let policy = policy_file(&format!(
        "name = \"rt3\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "12"]));
    let out = confined(
        policy.as_str(),
        &as_nobody(&[&py, "-c", ATTACK, &base, "8"]),
    );
    drop(sender);
    let v = result(&out);
    // The bind lands in the directory decided on by construction (rt5 E1's fix): no
    // socket is ever bound in `secret/`.
    assert_eq!(
        v["landed_in_secret"].as_u64(),
        Some(0),
        "a bind through the flipping link landed in secret/: {}",
        out.describe()
    );
    assert_eq!(
        v["received"].as_u64(),
        Some(0),
        "a socket bound at a refused name received datagrams: {}",
        out.describe()
    );
}
