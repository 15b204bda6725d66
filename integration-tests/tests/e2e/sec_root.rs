//! Gap 3: a sandbox running as root holds no power outside its network policy (R4, L3), and
//! the launcher's memory is out of a same-user sandbox's reach (F15).
//!
//! None of these tests changes the host: `kernel.core_pattern` and the hosts file are written
//! with the value they already hold (or only opened for writing), net sysctls are changed in a
//! network namespace the test makes, a device node is made in a temporary directory and
//! removed, and `/proc/sysrq-trigger` is only opened.

use std::process::Command;

use netjail_integration_tests::{
    confined_cmd, netjail_bin, run, skip, unconfined, TempDir, DEFAULT_TIMEOUT,
};
use serde_json::Value;

use crate::{have_setpriv, need_python, need_root};

/// One action per argument `ACTION:PATH`, printing `{"ACTION:PATH": "ok" | ERRNO}`:
/// `same` writes back what the file holds, `open` opens it for writing and writes nothing,
/// `read` opens it for reading, `mknod` makes a block device node (loop0's numbers) and
/// removes it, `set1` writes `1`.
const PY_ACTIONS: &str = r#"
import errno, json, os, stat, sys
out = {}
for spec in sys.argv[1:]:
    action, path = spec.split(":", 1)
    try:
        if action == "same":
            with open(path, "rb") as f:
                value = f.read()
            with open(path, "wb") as f:
                f.write(value)
        elif action == "open":
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
        elif action == "read":
            os.close(os.open(path, os.O_RDONLY))
        elif action == "set1":
            with open(path, "w") as f:
                f.write("1")
        elif action == "mknod":
            os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))
            os.unlink(path)
        out[spec] = "ok"
    except OSError as e:
        out[spec] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
"#;

fn confined_root(args: &[&str]) -> netjail_integration_tests::Outcome {
    run(&mut confined_cmd("deny-all", args), DEFAULT_TIMEOUT)
}

fn actions(confined: bool, py: &str, specs: &[String]) -> Value {
    let mut args = vec![py, "-c", PY_ACTIONS];
    args.extend(specs.iter().map(String::as_str));
    let out = if confined {
        confined_root(&args)
    } else {
        unconfined(&args)
    };
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    out.json().clone()
}

/// R4: without the opt-in, `netjail run` refuses a program that would run as root, says why
/// and what to do, and runs nothing; the same program runs unconfined, and as another user
/// it is confined without the opt-in.
#[test]
fn r4_root_refused_without_opt_in() {
    let test = "r4_root_refused_without_opt_in";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let dir = TempDir::new();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    assert_eq!(unconfined(&["sh", "-c", &touch]).code(), Some(0));
    std::fs::remove_file(&marker).unwrap();
    let out = run(
        Command::new(netjail_bin())
            .env_remove("NETJAIL_BROKER")
            .args(["run", "--policy", "deny-all", "--", "sh", "-c", &touch]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    for words in [
        "root (uid 0)",
        "--allow-root",
        "another user",
        "docs/security.md",
    ] {
        assert!(out.stderr.contains(words), "{words}: {}", out.describe());
    }
    assert!(!marker.exists(), "the program ran");
    // Any one uid of the four: effective 0 with a real uid of nobody.
    let out = run(
        Command::new("setpriv")
            .args(["--ruid=65534", "--"])
            .arg(netjail_bin())
            .env_remove("NETJAIL_BROKER")
            .args(["run", "--policy", "deny-all", "--", "true"]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(125), "{}", out.describe());
    // Not root: no opt-in needed.
    let out = run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(netjail_bin())
            .env_remove("NETJAIL_BROKER")
            .args(["run", "--policy", "deny-all", "--", "id", "-u"]),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.stdout.trim(), "65534");
}

/// R4: the library refuses a root child without `SandboxBuilder::allow_root`, and spawns it
/// with it.
#[test]
fn r4_library_refuses_a_root_child_without_opt_in() {
    use netjail_client::sandbox::{BrokerRef, Sandbox, SpawnError};
    let test = "r4_library_refuses_a_root_child_without_opt_in";
    if !need_root(test) {
        return;
    }
    let broker = netjail_integration_tests::Broker::start();
    let spawn = |allow: bool| {
        Sandbox::builder()
            .allow_root(allow)
            .policy_spec("deny-all")
            .broker(BrokerRef::Socket(broker.socket().to_path_buf()))
            .command(Command::new("true"))
            .spawn()
    };
    match spawn(false) {
        Err(SpawnError::Root) => {}
        other => panic!("expected SpawnError::Root, got {other:?}"),
    }
    let mut child = spawn(true).expect("spawn with allow_root");
    assert!(child.wait().unwrap().success());
}

/// R4 (shown by a run): a root sandbox set `kernel.core_pattern` to a pipe, and the kernel ran
/// the helper outside every confinement. The write is tried with the value the file already
/// holds: unconfined it succeeds (nothing changes), confined it fails (`EROFS`: `/proc/sys`
/// is read-only). The same for `kernel.modprobe`, and `/proc/sysrq-trigger` where this kernel
/// has it is not even opened for writing.
#[test]
fn r4_kernel_tunables_read_only_in_a_root_sandbox() {
    let test = "r4_kernel_tunables_read_only_in_a_root_sandbox";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let mut specs = vec!["same:/proc/sys/kernel/core_pattern".to_owned()];
    // Where this kernel has them (no modules, no magic SysRq: not there).
    if std::path::Path::new("/proc/sys/kernel/modprobe").exists() {
        specs.push("same:/proc/sys/kernel/modprobe".to_owned());
    }
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        specs.push("open:/proc/sysrq-trigger".to_owned());
    }
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let native = actions(false, &py, &specs);
    let confined = actions(true, &py, &specs);
    for spec in &specs {
        assert_eq!(native[spec], "ok", "unconfined {spec}: {native}");
        assert_eq!(confined[spec], "EROFS", "confined {spec}: {confined}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before
    );
}

/// R4, L3 (D7): a root sandbox changed net sysctls (`ip_forward`, the unprivileged port
/// start). In a network namespace the test makes: unconfined root sets them, a root sandbox
/// in the same kind of namespace gets `EROFS`.
#[test]
fn r4_l3_net_sysctls_read_only_in_a_root_sandbox() {
    let test = "r4_l3_net_sysctls_read_only_in_a_root_sandbox";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let specs = [
        "set1:/proc/sys/net/ipv4/ip_forward",
        "set1:/proc/sys/net/ipv4/ip_unprivileged_port_start",
        "set1:/proc/sys/net/ipv4/conf/all/accept_source_route",
    ];
    let in_netns = |prefix: &[&str]| {
        let mut args = vec!["unshare", "-n"];
        args.extend_from_slice(prefix);
        args.extend_from_slice(&[&py, "-c", PY_ACTIONS]);
        args.extend_from_slice(&specs);
        let out = unconfined(&args);
        assert_eq!(out.code(), Some(0), "{}", out.describe());
        out.json().clone()
    };
    let native = in_netns(&[]);
    let netjail = netjail_bin();
    let netjail = netjail.to_string_lossy();
    let confined = in_netns(&[
        &netjail,
        "run",
        "--allow-root",
        "--policy",
        "deny-all",
        "--",
    ]);
    for spec in specs {
        assert_eq!(native[spec], "ok", "unconfined {spec}: {native}");
        assert_eq!(confined[spec], "EROFS", "confined {spec}: {confined}");
    }
}

/// R4 (shown by a run): a root sandbox rewrote the hosts file the broker resolves name rules
/// from. The files the broker trusts are opened for writing (nothing is written): unconfined
/// root may, a root sandbox gets `EROFS`.
#[test]
fn r4_files_the_broker_trusts_read_only_in_a_root_sandbox() {
    let test = "r4_files_the_broker_trusts_read_only_in_a_root_sandbox";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let specs: Vec<String> = ["/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf"]
        .iter()
        .filter(|p| std::path::Path::new(p).is_file())
        .map(|p| format!("open:{p}"))
        .collect();
    assert!(!specs.is_empty(), "no hosts file here");
    let native = actions(false, &py, &specs);
    let confined = actions(true, &py, &specs);
    for spec in &specs {
        assert_eq!(native[spec], "ok", "unconfined {spec}: {native}");
        assert_eq!(confined[spec], "EROFS", "confined {spec}: {confined}");
    }
}

/// R4: a root sandbox kept `CAP_MKNOD` (a block device node of its own making) and could open
/// the host's disks. Unconfined root makes a node (in a temporary directory, removed at once)
/// and opens a block device of `/dev` for reading; a root sandbox can do neither (`EPERM`, and
/// its `/dev` has no block device).
#[test]
fn r4_no_device_node_in_a_root_sandbox() {
    let test = "r4_no_device_node_in_a_root_sandbox";
    if !need_root(test) {
        return;
    }
    let Some(py) = need_python(test) else {
        return;
    };
    let Some(block) = first_block_device() else {
        skip(test, "no block device in /dev to try");
        return;
    };
    let dir = TempDir::new();
    let specs = vec![
        format!("mknod:{}", dir.path().join("blk").display()),
        format!("read:{block}"),
    ];
    let native = actions(false, &py, &specs);
    let confined = actions(true, &py, &specs);
    assert_eq!(native[&specs[0]], "ok", "{native}");
    assert_eq!(native[&specs[1]], "ok", "{native}");
    assert_eq!(confined[&specs[0]], "EPERM", "{confined}");
    assert_eq!(confined[&specs[1]], "ENOENT", "{confined}");
    let walk = "import os, stat\n\
                print(sum(1 for d, _, fs in os.walk('/dev') for f in fs \
                if stat.S_ISBLK(os.lstat(os.path.join(d, f)).st_mode)))";
    let out = confined_root(&[&py, "-c", walk]);
    assert_eq!(out.stdout.trim(), "0", "{}", out.describe());
    // What ordinary programs use is there.
    let out = confined_root(&[
        "sh",
        "-c",
        "head -c 4 /dev/urandom | wc -c; echo x > /dev/null",
    ]);
    assert_eq!(out.stdout.trim(), "4", "{}", out.describe());
}

fn first_block_device() -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    std::fs::read_dir("/dev")
        .ok()?
        .flatten()
        .find(|e| e.file_type().is_ok_and(|t| t.is_block_device()))
        .map(|e| e.path().display().to_string())
}

/// R4, L3: a root sandbox keeps what ordinary programs need (`CAP_CHOWN`, `CAP_DAC_OVERRIDE`,
/// `CAP_FOWNER`, `CAP_KILL`, `CAP_SETGID`, `CAP_SETUID`) and loses `CAP_MKNOD`,
/// `CAP_SYS_BOOT`, `CAP_CHECKPOINT_RESTORE`, `CAP_DAC_READ_SEARCH`, `CAP_SYS_TIME`,
/// `CAP_SYSLOG`, `CAP_LINUX_IMMUTABLE`, `CAP_MAC_ADMIN`, `CAP_AUDIT_CONTROL`,
/// `CAP_SYS_PACCT` from every set.
#[test]
fn r4_l3_capabilities_beyond_the_network_dropped() {
    let test = "r4_l3_capabilities_beyond_the_network_dropped";
    if !need_root(test) {
        return;
    }
    let mask = |out: &netjail_integration_tests::Outcome, set: &str| {
        let line = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {set}: {}", out.describe()));
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    let args = ["grep", "^Cap", "/proc/self/status"];
    let native = unconfined(&args);
    let confined = confined_root(&args);
    for cap in [27u32, 22, 40, 2, 25, 34, 9, 33, 30, 20] {
        if mask(&native, "CapBnd") & (1 << cap) == 0 {
            continue; // not the host's to lose
        }
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(mask(&confined, set) & (1 << cap), 0, "{set} keeps {cap}");
        }
    }
    for cap in [0u32, 1, 3, 5, 6, 7] {
        assert_ne!(
            mask(&confined, "CapEff") & (1 << cap),
            0,
            "cap {cap} dropped"
        );
    }
}

/// F15: without Landlock, a sandbox running as the launcher's user opened the launcher's
/// `/proc/PID/mem` for writing (the launcher holds the listener and the embedded broker).
/// As `nobody`: unconfined, a process opens its dumpable sibling's memory for writing; under
/// `landlock = "off"` the sandbox cannot open its launcher's (`EACCES`).
#[test]
fn f15_launcher_memory_out_of_reach_without_landlock() {
    let test = "f15_launcher_memory_out_of_reach_without_landlock";
    if !need_root(test) || !have_setpriv(test) {
        return;
    }
    let Some(py) = nobody_python() else {
        skip(test, "no python3 that uid 65534 can run");
        return;
    };
    // A copy of the launcher that nobody may run, whatever the permissions of the build tree.
    let dir = TempDir::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let netjail = dir.path().join("netjail");
    std::fs::copy(netjail_bin(), &netjail).unwrap();
    std::fs::set_permissions(&netjail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open_mem = "import errno, json, os, sys\n\
                    pid = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()\n\
                    try:\n    os.close(os.open('/proc/%d/mem' % pid, os.O_RDWR)); r = 'ok'\n\
                    except OSError as e:\n    r = errno.errorcode[e.errno]\n\
                    print(json.dumps({'mem': r}))";
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    // Unconfined: a dumpable process of the same user (a sleeping sibling) is open to it.
    let sibling = format!("sleep 30 & s=$!; {py} -c \"$0\" $s; kill $s",);
    let mut args = nobody.to_vec();
    args.extend_from_slice(&["sh", "-c", &sibling, open_mem]);
    let out = unconfined(&args);
    assert_eq!(out.json()["mem"], "ok", "{}", out.describe());
    // Confined without Landlock: the launcher is not dumpable.
    let netjail = netjail.to_string_lossy();
    let mut args = nobody.to_vec();
    args.extend_from_slice(&[
        &netjail,
        "run",
        "--policy",
        "deny-all",
        "--set",
        "landlock=off",
        "--",
        &py,
        "-c",
        open_mem,
    ]);
    let out = run(
        Command::new(args[0])
            .args(&args[1..])
            .env_remove("NETJAIL_BROKER"),
        DEFAULT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert_eq!(out.json()["mem"], "EACCES", "{}", out.describe());
}

/// A python3 that uid 65534 can run (a pyenv one under `/root` may be out of its reach).
fn nobody_python() -> Option<String> {
    let mut candidates: Vec<String> = vec!["/usr/bin/python3".to_owned()];
    candidates
        .extend(netjail_integration_tests::python3().map(|p| p.to_string_lossy().into_owned()));
    candidates.into_iter().find(|py| {
        let out = unconfined(&crate::as_nobody(&[py, "-c", r#"print('{"ok": true}')"#]));
        out.json.as_ref().is_some_and(|v| v["ok"] == true)
    })
}
