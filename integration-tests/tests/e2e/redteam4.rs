//! Red team, fourth round: a thread of the program lifts the filter that keeps a raced unix
//! datagram bind from receiving, and the socket filter options as the kernel answers them.
//!
//! While the broker checked where a datagram socket's bind landed, the socket dropped every
//! datagram (a filter of the broker's). The program holds the same socket: a second thread
//! that detached that filter, or attached one of its own, during the check let datagrams sent
//! to a refused name queue up, and the program read them after its bind was refused. The fix
//! of that round made such changes wait for the check; since rt5 E1's fix the bind lands in
//! the directory decided on by construction and no filter of the broker's is ever on the
//! socket, so the attack must still read nothing, now because nothing is bound at the refused
//! name. The attack runs unconfined first (binding straight at the refused name, it reads;
//! its thread changes the filter), then confined under a policy that refuses the name.

use std::process::Command;

use netjail_integration_tests::{confined, policy_file, spawn, unconfined};
use serde_json::Value;

use crate::redteam3::{attack_dir, result, SENDER};
use crate::{as_nobody, nobody_python};

/// The third round's race (`redteam3::ATTACK`) with a thread that, on a duplicate of the
/// socket being bound, detaches its filter (`detach`) or attaches one that accepts
/// everything (`attach`) without pause; `direct` binds straight at `secret/s`.
const ATTACK: &str = r#"
import ctypes, json, os, socket, struct, sys, threading, time
base, secs, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
SOL_SOCKET, SO_ATTACH_FILTER, SO_DETACH_FILTER = 1, 26, 27
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF), 8)
fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", 1, ctypes.addressof(insn)), 16)
zero = ctypes.c_int(0)
link, secret, allowed = (os.path.join(base, x) for x in ("link", "secret", "allowed"))
flipper = 0
if mode != "direct":
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
r = {"tries": 0, "landed_in_secret": 0, "received": 0, "tried": 0, "changed": 0}
current, done = [-1], [False]
def change():
    while not done[0]:
        fd = current[0]
        if fd < 0: continue
        if mode == "attach":
            rc = libc.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16)
        else:
            rc = libc.setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, ctypes.byref(zero), 4)
        r["tried"] += 1
        if rc == 0: r["changed"] += 1
threading.Thread(target=change, daemon=True).start()
end = time.monotonic() + secs
while time.monotonic() < end:
    r["tries"] += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if mode == "direct":
        libc.setsockopt(s.fileno(), SOL_SOCKET, SO_ATTACH_FILTER, fprog, 16)
    current[0] = os.dup(s.fileno())
    try:
        s.bind(os.path.join(secret, "s") if mode == "direct" else os.path.join(link, "s"))
    except OSError:
        pass
    # Unconfined, the thread gets the whole pause to change the filter: on a loaded machine
    # it may not run in the instant of the bind alone.
    if mode == "direct": time.sleep(0.01)
    fd, current[0] = current[0], -1
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
    os.close(fd); s.close()
    if mode == "direct" and r["received"] and r["changed"]: break
done[0] = True
if flipper: os.kill(flipper, 9); os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
"#;

#[test]
fn rt4_a_thread_lifting_the_bind_filter_reads_nothing_at_a_refused_name() {
    let test = "rt4_a_thread_lifting_the_bind_filter_reads_nothing_at_a_refused_name";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();

    // Unconfined, bound straight at the name, the attacker reads what is sent there, and its
    // thread changes the socket's filter.
    let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "5"]));
    let out = unconfined(&as_nobody(&[&py, "-c", ATTACK, &base, "3", "direct"]));
    drop(sender);
    let v = result(&out);
    assert!(
        v["received"].as_u64().unwrap_or(0) > 0 && v["changed"].as_u64().unwrap_or(0) > 0,
        "unconfined, the attack read nothing or changed no filter: {}",
        out.describe()
    );

    let policy = policy_file(&format!(
        "name = \"rt4\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    for mode in ["detach", "attach"] {
        let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "10"]));
        let out = confined(
            policy.as_str(),
            &as_nobody(&[&py, "-c", ATTACK, &base, "6", mode]),
        );
        drop(sender);
        let v: Value = result(&out);
        // The bind lands in the directory decided on by construction (rt5 E1's fix): no
        // socket is ever bound in `secret/`.
        assert_eq!(
            v["landed_in_secret"].as_u64(),
            Some(0),
            "{mode}: a bind through the flipping link landed in secret/: {}",
            out.describe()
        );
        // With no filter of the broker's ever on the socket, a detach finds none to take off
        // (`ENOENT`): the thread must have tried; an attach of its own succeeds.
        let changed = if mode == "attach" { "changed" } else { "tried" };
        assert!(
            v[changed].as_u64().unwrap_or(0) > 0,
            "{mode}: the thread never changed a filter (nothing proven): {}",
            out.describe()
        );
        assert_eq!(
            v["received"].as_u64(),
            Some(0),
            "{mode}: a socket bound at a refused name received datagrams: {}",
            out.describe()
        );
    }
}

/// Every answer of the socket filter options that a program can tell apart, run unconfined
/// and confined (the broker now sets them), on unix, TCP and UDP sockets: a filter attached,
/// read back and detached, the errors of bad lengths, bad pointers (a value whose first int
/// is readable and the rest not, instructions that cannot be read), a bad program, a bad
/// descriptor, a negative length with a bad descriptor, and a locked filter (the fifth red
/// team's F1 and F2: the kernel's order of errors, which the broker must not guess).
const FILTER_OPTIONS: &str = r#"
import ctypes, json, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
SOL_SOCKET, ATTACH, DETACH, LOCK, BPF, GET = 1, 26, 27, 44, 50, 26
def call(fd, name, buf, n):
    rc = libc.setsockopt(fd, SOL_SOCKET, name, buf, n)
    return 0 if rc == 0 else ctypes.get_errno()
def fprog(insns, at=None):
    data = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns) or b"\0", max(8, 8 * len(insns)))
    keep.append(data)
    return ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(insns), ctypes.addressof(data) if at is None else at), 16)
keep = []
accept = [(0x06, 0, 0, 0xFFFFFFFF)]
# Two pages, the second unreadable: values that end where readable memory ends.
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
pages = libc.mmap(None, 8192, 3, 0x22, -1, 0)
libc.mprotect(pages + 4096, 4096, 0)
cut = pages + 4092
ctypes.memmove(cut, struct.pack("I", 1), 4)
out = {}
kinds = {"dgram": (socket.AF_UNIX, socket.SOCK_DGRAM), "stream": (socket.AF_UNIX, socket.SOCK_STREAM),
         "tcp": (socket.AF_INET, socket.SOCK_STREAM), "udp": (socket.AF_INET, socket.SOCK_DGRAM)}
for label, (family, kind) in sorted(kinds.items()):
    s = socket.socket(family, kind)
    fd = s.fileno()
    r = {}
    r["attach"] = call(fd, ATTACH, fprog(accept), 16)
    r["read_back"] = len(s.getsockopt(SOL_SOCKET, GET, 64))
    r["attach_short"] = call(fd, ATTACH, fprog(accept), 8)
    r["attach_long"] = call(fd, ATTACH, fprog(accept), 24)
    r["attach_3"] = call(fd, ATTACH, fprog(accept), 3)
    r["attach_empty"] = call(fd, ATTACH, fprog([]), 16)
    r["attach_null"] = call(fd, ATTACH, fprog(accept, at=0), 16)
    r["attach_fault"] = call(fd, ATTACH, fprog(accept, at=8), 16)
    r["attach_bad_program"] = call(fd, ATTACH, fprog([(0xFFFF, 0, 0, 0)]), 16)
    r["attach_value_fault"] = call(fd, ATTACH, ctypes.c_void_p(8), 16)
    r["attach_value_cut"] = call(fd, ATTACH, ctypes.c_void_p(cut), 16)
    r["attach_insns_unreadable"] = call(fd, ATTACH, fprog(accept, at=pages + 4096), 16)
    bad = ctypes.c_int(987)
    r["bpf_bad_fd"] = call(fd, BPF, ctypes.byref(bad), 4)
    r["bpf_not_bpf"] = call(fd, BPF, ctypes.byref(ctypes.c_int(fd)), 4)
    r["bpf_len_8"] = call(fd, BPF, ctypes.byref(bad), 8)
    one = ctypes.c_int(1)
    r["detach"] = call(fd, DETACH, ctypes.byref(one), 4)
    r["detach_none"] = call(fd, DETACH, ctypes.byref(one), 4)
    r["attach_again"] = call(fd, ATTACH, fprog(accept), 16)
    r["lock"] = call(fd, LOCK, ctypes.byref(one), 4)
    r["unlock"] = call(fd, LOCK, ctypes.byref(ctypes.c_int(0)), 4)
    r["attach_locked"] = call(fd, ATTACH, fprog(accept), 16)
    r["attach_locked_fault"] = call(fd, ATTACH, fprog(accept, at=8), 16)
    r["bpf_locked_bad_fd"] = call(fd, BPF, ctypes.byref(bad), 4)
    r["detach_locked"] = call(fd, DETACH, ctypes.byref(one), 4)
    r["bad_fd"] = call(999, ATTACH, fprog(accept), 16)
    r["negative_len"] = call(fd, DETACH, ctypes.byref(one), -1)
    r["negative_len_bad_fd"] = call(999, DETACH, ctypes.byref(one), -1)
    r["negative_len_not_socket"] = call(0, DETACH, ctypes.byref(one), -1)
    out[label] = r
    s.close()
print(json.dumps(out, sort_keys=True), flush=True)
"#;

#[test]
fn rt4_filter_options_answer_as_the_kernel_does() {
    let test = "rt4_filter_options_answer_as_the_kernel_does";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let native = unconfined(&as_nobody(&[&py, "-c", FILTER_OPTIONS]));
    let want = result(&native);
    assert_eq!(
        want["dgram"]["attach"].as_i64(),
        Some(0),
        "unconfined, no filter was attached: {}",
        native.describe()
    );
    for policy in ["allow-all", "loopback-only"] {
        let out = confined(policy, &as_nobody(&[&py, "-c", FILTER_OPTIONS]));
        assert_eq!(
            result(&out),
            want,
            "{policy}: the filter options answered otherwise than the kernel: {}",
            out.describe()
        );
    }
}
