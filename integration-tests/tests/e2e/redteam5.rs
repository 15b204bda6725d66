//! Red team, fifth round (E1): a second sandbox, served by another broker process, changes the
//! filter of a datagram socket the first is binding through a flipping symlink.
//!
//! The first sandbox (A) passes each new datagram socket to the second (B) by `SCM_RIGHTS`
//! and binds it at `link/s` while a child flips `link` between `allowed` and `secret`; B,
//! under its own `netjail run` (its own embedded broker), detaches or attaches the socket's
//! filter without pause meanwhile. A broker's hold on the socket's filter is its own process's:
//! with the bind made where the path happened to lead and checked afterwards, A read at the
//! refused name what was sent there. The bind must land in the directory decided on, so that
//! no socket of A is ever bound in `secret/`. Unconfined (A binds straight at `secret/s`), A
//! reads.

use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    confined, confined_cmd, policy_file, spawn, unconfined, Outcome, Running,
};
use serde_json::Value;

use crate::redteam3::{attack_dir, result, SENDER};
use crate::{as_nobody, nobody_python};

/// B: listens at `DIR/allowed/chan`, takes each socket A passes, and changes its filter in a
/// loop (`detach`: `SO_DETACH_FILTER`; `attach`: `SO_ATTACH_FILTER` with a program that
/// accepts everything) until A says its bind is done.
const HELPER: &str = r#"
import array, ctypes, json, os, select, socket, struct, sys
base, mode = sys.argv[1], sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF), 8)
fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", 1, ctypes.addressof(insn)), 16)
zero = ctypes.c_int(0)
p = os.path.join(base, "allowed", "chan")
l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); l.bind(p); os.chmod(p, 0o777); l.listen(1)
print("listening", flush=True)
c, _ = l.accept()
st = {"socks": 0, "tried": 0, "changed": 0}
while True:
    msg, anc, _, _ = c.recvmsg(16, socket.CMSG_SPACE(4))
    if msg == b"q" or not msg: break
    fd = array.array("i", anc[0][2][:4])[0]; st["socks"] += 1
    c.send(b"k")
    while True:
        if mode == "detach": rc = libc.setsockopt(fd, 1, 27, ctypes.byref(zero), 4)
        else: rc = libc.setsockopt(fd, 1, 26, fprog, 16)
        st["tried"] += 1; st["changed"] += rc == 0
        if st["tried"] % 8 == 0 and select.select([c], [], [], 0)[0]: break
    c.recv(1); os.close(fd); c.send(b"k")
print(json.dumps(st), flush=True)
"#;

/// A: binds datagram sockets at `DIR/link/s` while a child flips `link` (with `direct`,
/// straight at `secret/s`), each one passed to B first, and reads whatever any of them
/// received while its file was in `secret`.
const ATTACK: &str = r#"
import array, json, os, socket, sys, time
base, secs = sys.argv[1], float(sys.argv[2])
direct = len(sys.argv) > 3
link, secret, allowed = (os.path.join(base, x) for x in ("link", "secret", "allowed"))
ch = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
for _ in range(200):
    try: ch.connect(os.path.join(allowed, "chan")); break
    except OSError: time.sleep(0.05)
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
r = {"tries": 0, "landed_in_secret": 0, "received": 0, "refused": 0, "bound": 0}
end = time.monotonic() + secs
while time.monotonic() < end:
    r["tries"] += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ch.sendmsg([b"s"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno()]).tobytes())])
    ch.recv(1)
    try:
        s.bind(os.path.join(secret, "s") if direct else os.path.join(link, "s"))
        r["bound"] += 1
    except OSError as e:
        if e.errno == 1: r["refused"] += 1
    if direct: time.sleep(0.01)
    ch.send(b"d")
    ch.recv(1)
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
ch.send(b"q")
if flipper: os.kill(flipper, 9); os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
"#;

/// B's counts, once A is done.
fn helper_result(helper: Running) -> (Value, Outcome) {
    let out = helper.wait(Duration::from_secs(30));
    (result(&out), out)
}

/// Waits for B's `listening`.
fn listening(helper: &Running) {
    let line = helper.read_line(Duration::from_secs(20));
    assert_eq!(
        line.as_deref(),
        Some("listening"),
        "B never listened: {}",
        helper.stderr_so_far()
    );
}

#[test]
fn rt5_e1_a_filter_changed_through_another_broker_reads_nothing_at_a_refused_name() {
    let test = "rt5_e1_a_filter_changed_through_another_broker_reads_nothing_at_a_refused_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();

    // Unconfined, bound straight at the name, A reads what is sent there.
    let args = as_nobody(&[&py, "-c", HELPER, &base, "detach"]);
    let helper = spawn(Command::new(args[0]).args(&args[1..]));
    listening(&helper);
    let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "5"]));
    let out = unconfined(&as_nobody(&[&py, "-c", ATTACK, &base, "3", "direct"]));
    drop(sender);
    let (b, b_out) = helper_result(helper);
    let v = result(&out);
    assert!(
        v["received"].as_u64().unwrap_or(0) > 0,
        "unconfined, the attack read nothing: {}",
        out.describe()
    );
    assert!(
        b["socks"].as_u64().unwrap_or(0) > 0,
        "unconfined, B was passed no socket: {}",
        b_out.describe()
    );
    std::fs::remove_file(dir.path().join("allowed/chan")).ok();

    // Confined, each under its own `netjail run`: only `allowed/` may be bound.
    let policy = policy_file(&format!(
        "name = \"rt5\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    for mode in ["detach", "attach"] {
        let helper = spawn(&mut confined_cmd(
            policy.as_str(),
            &as_nobody(&[&py, "-c", HELPER, &base, mode]),
        ));
        listening(&helper);
        let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "10"]));
        let out = confined(
            policy.as_str(),
            &as_nobody(&[&py, "-c", ATTACK, &base, "6"]),
        );
        drop(sender);
        let (b, b_out) = helper_result(helper);
        let v: Value = result(&out);
        eprintln!("{mode}: A {v} B {b}");
        assert!(
            v["tries"].as_u64().unwrap_or(0) > 0 && b["tried"].as_u64().unwrap_or(0) > 0,
            "{mode}: A bound nothing or B changed no filter (nothing proven): {}\n{}",
            out.describe(),
            b_out.describe()
        );
        assert_eq!(
            v["received"].as_u64(),
            Some(0),
            "{mode}: a socket bound at a refused name received datagrams: {}",
            out.describe()
        );
        assert_eq!(
            v["landed_in_secret"].as_u64(),
            Some(0),
            "{mode}: a bind through the flipping link landed in secret/: {}",
            out.describe()
        );
        std::fs::remove_file(dir.path().join("allowed/chan")).ok();
    }
}
