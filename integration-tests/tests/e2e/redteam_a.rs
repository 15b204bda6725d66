//! Red team A (identity and the broker's own sockets): attacks that got out of a confined
//! program at a813f04. Each test shows the attack working unconfined first, then asserts
//! that the confined attack is REFUSED: these tests fail until the hole is closed.
//!
//! The sandboxed programs are python3 snippets run as nobody (`setpriv` inside the sandbox,
//! under `netjail run --allow-root`, the embedded broker or a root `netjaild`); the servers
//! on the other side run as root outside every sandbox.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use netjail_integration_tests::{policy_file, python3, unconfined, which, Outcome, TempDir};
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

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

#[track_caller]
fn json(out: &Outcome) -> &Value {
    out.json
        .as_ref()
        .unwrap_or_else(|| panic!("no JSON: {}", out.describe()))
}

/// A root unix stream server at `argv[1]` (mode 0666, so that nobody may connect to it
/// unconfined) that writes `SECRET` to every client, for 20 s.
const PY_PATH_SERVER: &str = r#"
import os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(p); os.chmod(p, 0o666); s.listen(8); s.settimeout(20)
print("ready", flush=True)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.sendall(b"SECRET"); c.close()
"#;

/// Connects to the unix path `argv[1]` and reads what the server says.
const PY_PATH_CLIENT: &str = r#"
import errno, json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
    print(json.dumps({"ok": True, "got": s.recv(64).decode()}))
except OSError as e:
    print(json.dumps({"ok": False, "err": errno.errorcode.get(e.errno, str(e.errno))}))
"#;

/// A server outside every sandbox; killed by pid when dropped.
struct Server(Child);

impl Server {
    fn start(py: &str, code: &str, args: &[&str]) -> Server {
        let mut child = Command::new(py)
            .args(["-c", code])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("server output");
        assert_eq!(line.trim(), "ready", "the server did not start");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- a user namespace grant defeats every unix path rule -------------------------------------

/// **A sandbox granted `namespaces = ["user"]` reaches any unix socket whose file it may
/// write, whatever its `unix` rules say, through a bind mount in a mount namespace of its
/// own.**
///
/// The attack: the policy allows unix connects under `DIR/allowed/*` only; a root agent
/// listens at `DIR/secret/agent.sock` (mode 0666). Inside the sandbox, as nobody,
/// `unshare -Urm` makes a user namespace (granted) and a mount namespace (`CLONE_NEWNS` is
/// never refused by the filter, and the new user namespace gives `CAP_SYS_ADMIN` over it),
/// bind-mounts `DIR/secret` onto `DIR/allowed` and connects to `DIR/allowed/agent.sock`.
/// The broker resolves the path under `/proc/TID/root`, which is the root of the sandbox's
/// mount namespace, so it walks the sandbox's own bind mount, decides on the name the
/// sandbox gave (`allow[0].unix[0]`: the audit names `DIR/allowed/agent.sock`) and connects
/// to the agent. The direct connect to `DIR/secret/agent.sock` is refused (EPERM), which
/// shows that the policy refuses the socket.
///
/// The same works with an exact-path rule in a root-owned directory the sandbox cannot
/// write (the mitigation docs/security.md gives for F7): `mount -t tmpfs` over the directory,
/// `touch` the allowed name, `mount --bind` the refused socket file onto it (shown by hand:
/// `unix = ["/tmp/rta/ro/x11.sock"]`, audit `rule="allow[0].unix[0]"`, the agent's bytes read).
///
/// Expected (the policy's promise): EPERM, as for the direct connect. The kernel alone
/// would let the nobody process connect (the file is 0666), so this is the policy being
/// bypassed, not the kernel's check.
///
/// Root cause: `broker/src/unix.rs:54-110` (`act_on_path`) resolves in the caller's root and
/// decides on the resolved path *string inside the caller's mount namespace*
/// (`resolve_existing`, `unix.rs:154-168`), which the caller controls once it may mount; and
/// `client/src/filter.rs:56` (`REFUSED_NAMESPACES`) refuses only `CLONE_NEWNET` and
/// `CLONE_NEWUSER`, so a `"user"` grant also grants mount namespaces (and `mount`, which the
/// filter never refuses). Suggested fix: refuse `CLONE_NEWNS` (and `mount`, `open_tree`,
/// `move_mount`, `fsmount`, `pivot_root`) in the filter unless a policy grants `"mount"`
/// explicitly; or decide unix paths on the mount the node lies on (refuse a resolved node
/// whose mount is not in the broker's mount namespace, or compare `st_dev`/`mnt_id` of the
/// node with the same path resolved in the broker's namespace); and document the grant.
fn userns_bind_mount_unix_path(via: Via) {
    let test = "rt_a_userns_bind_mount_reaches_unlisted_unix_socket";
    let Some(py) = nobody_python(test) else {
        return;
    };
    if which("unshare").is_none() || which("mount").is_none() {
        netjail_integration_tests::skip(test, "unshare or mount (util-linux) not found");
        return;
    }
    let dir = TempDir::new();
    chmod(dir.path(), 0o755);
    let secret = dir.path().join("secret");
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&secret).unwrap();
    std::fs::create_dir(&allowed).unwrap();
    chmod(&secret, 0o755);
    chmod(&allowed, 0o755);
    let agent = secret.join("agent.sock");
    let _server = Server::start(&py, PY_PATH_SERVER, &[utf8(&agent)]);
    let through = allowed.join("agent.sock");
    let script = format!(
        "mount --bind {} {} && exec {py} -c \"$1\" {}",
        utf8(&secret),
        utf8(&allowed),
        utf8(&through)
    );
    let attack_args = |prefix: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        v.extend(
            [
                "unshare",
                "-Urm",
                "sh",
                "-c",
                script.as_str(),
                "sh",
                PY_PATH_CLIENT,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    };
    let nobody: Vec<&str> = as_nobody(&[]);
    let direct = as_nobody(&[py.as_str(), "-c", PY_PATH_CLIENT, utf8(&agent)]);

    // Unconfined: nobody reaches the agent, directly and through the bind mount.
    let out = unconfined(&direct);
    assert_eq!(json(&out)["got"], "SECRET", "{}", out.describe());
    let args = attack_args(&nobody);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = unconfined(&args);
    assert_eq!(json(&out)["got"], "SECRET", "{}", out.describe());

    let policy = policy_file(&format!(
        "name = \"rt-userns\"\ndefault = \"deny\"\nnamespaces = [\"user\"]\n\
         [sockets]\nallow = [\"unix:*\"]\n[[allow]]\nunix = [\"{}/*\"]\n",
        utf8(&allowed)
    ));
    // Confined: the policy refuses the agent by its name...
    let out = via.run(policy.as_str(), &direct);
    assert_eq!(json(&out)["err"], "EPERM", "{}", out.describe());
    // ...and must refuse it under any other name the sandbox gives it.
    let out = via.run(policy.as_str(), &args);
    assert_eq!(
        json(&out)["err"],
        "EPERM",
        "a bind mount in the sandbox's own mount namespace took the policy's refused socket \
         to an allowed name: {}",
        out.describe()
    );
}

both!(
    /// See [`userns_bind_mount_unix_path`].
    rt_a_userns_bind_mount_reaches_unlisted_unix_socket => userns_bind_mount_unix_path
);
