//! Red team, eighth round, on rt5 E1's fix (A1): a datagram bind whose walk reaches the
//! decided directory by `..` at the root (`/../s`, or `../s` from `/`). In the kernel, `..` at
//! the root stays there and then crosses whatever is mounted on it; a sandbox granted user
//! and mount namespaces stacks a bind mount of a refused directory on its root, and a bind
//! made in the caller's root itself would land there. The bind must be made in a scaffold
//! whose root carries the clone of the decided directory and nothing else.

use std::process::Command;

use netjail_integration_tests::{policy_file, run, spawn, unconfined, DEFAULT_TIMEOUT};

use crate::redteam3::{attack_dir, result, SENDER};
use crate::{as_nobody, nobody_python};

/// Enters a user and mount namespace of its own, then binds datagram sockets at `PATH`
/// (`/../s` by default) for SECS seconds while a child stacks a bind mount of `SECRET` on
/// `/` and takes it off again without pause (or, with `direct`, with the mount left in
/// place), and reads whatever a socket whose file landed in `SECRET` received.
const OVERMOUNT: &str = r#"
import ctypes, json, os, signal, socket, sys, time
secret, secs, mode, path = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 0x10000000, 0x20000, 4096, 16384, 1 << 18, 2
uid, gid = os.getuid(), os.getgid()
if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
    print(json.dumps({"error": "unshare errno %d" % ctypes.get_errno()}), flush=True)
    sys.exit(0)
for f, v in (("setgroups", "deny"), ("uid_map", "0 %d 1\n" % uid), ("gid_map", "0 %d 1\n" % gid)):
    with open("/proc/self/" + f, "w") as fh:
        fh.write(v)
libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)
target = os.path.join(secret, "s")
flipper = 0
if mode == "direct":
    if libc.mount(secret.encode(), b"/", None, MS_BIND, None) != 0:
        print(json.dumps({"error": "mount errno %d" % ctypes.get_errno()}), flush=True)
        sys.exit(0)
else:
    flipper = os.fork()
    if flipper == 0:
        while True:
            if libc.mount(secret.encode(), b"/", None, MS_BIND, None) == 0:
                libc.umount2(b"/..", MNT_DETACH)
r = {"tries": 0, "bound": 0, "landed_in_secret": 0, "received": 0}
end = time.monotonic() + secs
while time.monotonic() < end:
    r["tries"] += 1
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(path)
        r["bound"] += 1
    except OSError:
        pass
    if mode == "direct":
        time.sleep(0.01)
    if os.path.lexists(target):
        r["landed_in_secret"] += 1
        s.setblocking(False)
        try:
            while s.recv(64):
                r["received"] += 1
        except OSError:
            pass
        os.unlink(target)
    s.close()
    if mode == "direct" and r["received"]:
        break
if flipper:
    os.kill(flipper, signal.SIGKILL)
    os.waitpid(flipper, 0)
print(json.dumps(r), flush=True)
"#;

#[test]
fn rt8_a1_a_mount_stacked_on_the_root_never_receives_a_datagram_bind() {
    let test = "rt8_a1_a_mount_stacked_on_the_root_never_receives_a_datagram_bind";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();
    let secret = format!("{base}/secret");

    // Unconfined, with the mount in place, `/../s` lands in the refused directory and reads.
    let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "5"]));
    let out = unconfined(&as_nobody(&[
        &py, "-c", OVERMOUNT, &secret, "3", "direct", "/../s",
    ]));
    drop(sender);
    let v = result(&out);
    if v.get("error").is_some() {
        netjail_integration_tests::skip(test, &format!("no user namespace here: {v}"));
        return;
    }
    assert!(
        v["received"].as_u64().unwrap_or(0) > 0,
        "unconfined, the attack read nothing: {}",
        out.describe()
    );

    // Confined (a root broker, the program as uid 65534, granted user and mount namespaces,
    // every unix name allowed but those in `secret/`), the mount flipping on its root.
    let policy = policy_file(&format!(
        "name = \"rt8\"\ndefault = \"deny\"\nnamespaces = [\"user\", \"mount\"]\n[sockets]\nallow = [\"unix:*\"]\n[[deny]]\nunix = [\"{secret}/*\"]\n[[allow]]\nunix = [\"/**\"]\n"
    ));
    for (path, cwd) in [("/../s", "/"), ("../s", "/")] {
        let sender = spawn(Command::new(&py).args(["-c", SENDER, &base, "8"]));
        let args = as_nobody(&[&py, "-c", OVERMOUNT, &secret, "5", "flip", path]);
        let mut cmd = netjail_integration_tests::confined_cmd(policy.as_str(), &args);
        cmd.current_dir(cwd);
        let out = run(&mut cmd, DEFAULT_TIMEOUT);
        drop(sender);
        let v = result(&out);
        assert!(
            v["tries"].as_u64().unwrap_or(0) > 100,
            "{path}: the attack did not run (nothing proven): {}",
            out.describe()
        );
        assert_eq!(
            v["landed_in_secret"].as_u64(),
            Some(0),
            "{path}: a bind landed in the mount stacked on the root: {}",
            out.describe()
        );
        assert_eq!(
            v["received"].as_u64(),
            Some(0),
            "{path}: {}",
            out.describe()
        );
    }
}

/// Takes filesystem ids of its real ones (`setfsuid`, `setfsgid`), binds a datagram socket at
/// `PATH` and prints the owner of the file the bind made.
const FSIDS: &str = r#"
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.setfsuid(os.getuid())
libc.setfsgid(os.getgid())
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
st = os.lstat(sys.argv[1])
print(json.dumps({"owner": [st.st_uid, st.st_gid], "effective": [os.geteuid(), os.getegid()]}), flush=True)
"#;

/// A2: the file a bind makes belongs to the caller's filesystem ids, as the kernel makes it,
/// not its effective ones (the broker had taken only the real, effective and saved ids).
#[test]
fn rt8_a2_a_bind_makes_its_file_with_the_callers_filesystem_ids() {
    let test = "rt8_a2_a_bind_makes_its_file_with_the_callers_filesystem_ids";
    let Some(py) = nobody_python(test) else {
        return;
    };
    if !crate::have_setpriv(test) {
        return;
    }
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();
    let ids = |path: &str| -> Vec<String> {
        [
            "setpriv",
            "--ruid=65534",
            "--euid=1000",
            "--rgid=65534",
            "--egid=1000",
            "--clear-groups",
            "--",
            &py,
            "-c",
            FSIDS,
            path,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let unconfined_path = format!("{base}/allowed/u");
    let args = ids(&unconfined_path);
    let out = unconfined(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let v = result(&out);
    assert_eq!(
        v["effective"],
        serde_json::json!([1000, 1000]),
        "{}",
        out.describe()
    );
    assert_eq!(
        v["owner"],
        serde_json::json!([65534, 65534]),
        "unconfined: {}",
        out.describe()
    );

    let policy = policy_file(&format!(
        "name = \"rt8-ids\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/allowed/*\"]\n"
    ));
    let confined_path = format!("{base}/allowed/c");
    let args = ids(&confined_path);
    let mut cmd = netjail_integration_tests::confined_cmd(
        policy.as_str(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = run(&mut cmd, DEFAULT_TIMEOUT);
    let v = result(&out);
    assert_eq!(
        v["owner"],
        serde_json::json!([65534, 65534]),
        "confined: {}",
        out.describe()
    );
}

/// Binds a datagram socket at each path given and prints `{path: "ok" or errno}`.
const BIND_ERRNOS: &str = r#"
import json, socket, sys
r = {}
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(p)
        r[p] = "ok"
    except OSError as e:
        r[p] = e.errno
    s.close()
print(json.dumps(r), flush=True)
"#;

/// A4: a bind through a file (`ENOTDIR`), at `.` or `..`, or at an existing name with a
/// trailing slash (`EADDRINUSE`) fails as the kernel's does, unconfined and under a policy
/// that allows the directory.
#[test]
fn rt8_a4_binds_at_odd_paths_fail_with_the_kernels_errno() {
    let test = "rt8_a4_binds_at_odd_paths_fail_with_the_kernels_errno";
    let Some(py) = nobody_python(test) else {
        return;
    };
    let dir = attack_dir();
    let base = dir.path().to_str().unwrap().to_owned();
    std::fs::write(dir.path().join("allowed/file"), b"").unwrap();
    std::fs::create_dir(dir.path().join("allowed/sub")).unwrap();
    std::os::unix::fs::symlink("nowhere", dir.path().join("allowed/dangling")).unwrap();
    // The ninth red team's F1: a trailing slash on a name that exists.
    let paths: Vec<String> = ["file/s", ".", "..", "sub/", "dangling/", "none/"]
        .iter()
        .map(|p| format!("{base}/allowed/{p}"))
        .collect();
    let mut args = vec![py.as_str(), "-c", BIND_ERRNOS];
    args.extend(paths.iter().map(String::as_str));
    let native = result(&unconfined(&args));
    assert_eq!(native[&paths[0]], libc::ENOTDIR, "{native}");
    assert_eq!(native[&paths[1]], libc::EADDRINUSE, "{native}");
    let policy = policy_file(&format!(
        "name = \"rt8-errnos\"\n[sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{base}/**\"]\n"
    ));
    let out = run(
        &mut netjail_integration_tests::confined_cmd(policy.as_str(), &args),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(result(&out), native, "{}", out.describe());
}
