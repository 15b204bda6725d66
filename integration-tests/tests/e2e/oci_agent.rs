//! The OCI agent against bad input, patch errors, attacks from inside a runc container, and a
//! policy reloaded between two connects (M3).

use crate::oci::{
    allow_policy, events_of, have_runc, oci_broker, oci_socket, policies, with_log, Bundle,
};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netjail_integration_tests::{
    fds_back_to, netjail_bin, run, settled_fd_count, sys, Broker, Canary, Outcome, TempDir,
};
use serde_json::{json, Value};

use crate::need_root;

/// Sends `bytes` (in one write, with `fds`) on a fresh connection to the OCI socket and
/// closes it.
fn send_oci(broker: &Broker, bytes: &[u8], fds: &[i32]) {
    let conn = UnixStream::connect(oci_socket(broker)).expect("connect to the OCI socket");
    if !bytes.is_empty() || !fds.is_empty() {
        let chunk = &bytes[..bytes.len().min(60 * 1024)];
        match sys::send_with_fds(&conn, if chunk.is_empty() { b" " } else { chunk }, fds) {
            Ok(_) => {}
            // The broker refused and closed already: fine, the audit says why.
            Err(libc::EPIPE | libc::ECONNRESET) => return,
            Err(e) => panic!("send on the OCI socket: {}", sys::errno_name(e)),
        }
        let mut rest = &bytes[chunk.len()..];
        let mut conn_w = &conn;
        while !rest.is_empty() {
            match conn_w.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(_) => break, // the broker refused and closed: fine
            }
        }
    }
}

/// A valid runc-style state document for container `id`.
fn state(id: &str) -> Vec<u8> {
    json!({
        "ociVersion": "1.0.2", "fds": ["seccompFd"], "pid": std::process::id(),
        "metadata": "policy=deny-all",
        "state": {"ociVersion": "1.0.2", "id": id, "status": "creating",
                  "pid": std::process::id(), "bundle": "/nonexistent"}
    })
    .to_string()
    .into_bytes()
}

/// Invariant 8 on the OCI socket: no fd, two fds, a pipe instead of a listener, 1 MiB of
/// JSON, truncated JSON and a connection closed at once are each refused with an audit event
/// naming why, the fds are not kept, and a container started afterwards is served.
#[test]
fn s_m3_oci_socket_refuses_bad_input_and_serves_on() {
    let test = "s_m3_oci_socket_refuses_bad_input_and_serves_on";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let dir = TempDir::new();
    let broker = oci_broker(&[], dir.path());
    let fds_before = settled_fd_count(broker.pid());
    let (r, w) = sys::pipe().expect("pipe");
    let (r2, w2) = sys::pipe().expect("pipe");
    let huge = {
        let mut v = b"{\"ociVersion\":\"".to_vec();
        v.extend_from_slice(&vec![b'x'; 1 << 20]);
        v.extend_from_slice(b"\"}");
        v
    };
    let whole = state("bad-truncated");
    let cases: Vec<(&str, Vec<u8>, Vec<i32>, &str)> = vec![
        ("no fd", state("bad-nofd"), vec![], "no-fd"),
        (
            "two fds",
            state("bad-twofds"),
            vec![r.as_raw_fd(), w.as_raw_fd()],
            "too-many-fds",
        ),
        (
            "a pipe",
            state("bad-pipe"),
            vec![r2.as_raw_fd()],
            "not-a-listener",
        ),
        ("1 MiB", huge, vec![w2.as_raw_fd()], "too-long"),
        (
            "truncated",
            whole[..whole.len() / 2].to_vec(),
            vec![w2.as_raw_fd()],
            "truncated",
        ),
        (
            "not JSON",
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            vec![],
            "bad-json",
        ),
        ("closed at once", vec![], vec![], "empty"),
    ];
    for (what, bytes, fds, reason) in &cases {
        send_oci(&broker, bytes, fds);
        let seen = broker.wait_audit(1, Duration::from_secs(10), |e| {
            e["message"] == "container refused" && e["reason"] == *reason
        });
        assert_eq!(
            seen.len(),
            1,
            "{what}: no `{reason}` refusal in {}",
            broker.log()
        );
    }
    drop((r, w, r2, w2));
    let now = fds_back_to(broker.pid(), fds_before, Duration::from_secs(10));
    assert!(
        now <= fds_before,
        "the broker keeps {} more fds",
        now - fds_before
    );
    assert!(broker
        .audit_events()
        .iter()
        .all(|e| e["message"] != "sandbox registered"));

    // Still serving: a real container registers and is decided.
    let canary = Canary::tcp4();
    let policy = policies(
        dir.path(),
        "web",
        &allow_policy("web", &format!("127.0.0.1:{}", canary.port())),
    );
    let bundle = Bundle::new(
        &[
            "sh",
            "-c",
            &format!("nc 127.0.0.1 {} </dev/null; echo rc=$?", canary.port()),
        ],
        false,
        None,
    );
    bundle.patch(&policy, &oci_socket(&broker));
    let out = bundle.run();
    assert!(
        out.stdout.contains("rc=0"),
        "after the garbage: {}\n--- broker ---\n{}",
        out.describe(),
        broker.log()
    );
    assert_eq!(canary.wait_count(1, Duration::from_secs(5)), 1);
}

/// `netjail oci patch` refuses bad input with a clear message and leaves the bundle alone: a
/// policy with a typo (file, line and column), a config.json that is not JSON (line and
/// column), a missing file.
#[test]
fn m3_oci_patch_errors_are_clear_and_change_nothing() {
    let dir = TempDir::new();
    let config = dir.path().join("config.json");
    let original = "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\"args\": [\"sh\"]}\n}\n";
    std::fs::write(&config, original).unwrap();
    let typo = policies(dir.path(), "typo", "name = \"typo\"\ndefualt = \"deny\"\n");
    let patch = |policy: &Path, config: &Path| {
        run(
            Command::new(netjail_bin())
                .args(["oci", "patch"])
                .arg(config)
                .arg("--policy")
                .arg(policy),
            Duration::from_secs(20),
        )
    };
    let out = patch(&typo, &config);
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("{}:2:1", typo.display())),
        "no file:line:column: {}",
        out.describe()
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}\n").unwrap();
    let out = patch(Path::new("deny-all"), &broken);
    assert!(!out.status.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&format!("{}:3:3", broken.display())),
        "no file:line:column: {}",
        out.describe()
    );

    let out = patch(Path::new("deny-all"), &dir.path().join("missing.json"));
    assert!(!out.status.success(), "{}", out.describe());
    assert!(out.stderr.contains("missing.json"), "{}", out.describe());

    let out = patch(Path::new("deny-all"), &config);
    assert!(out.status.success(), "{}", out.describe());
    let patched: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        patched["linux"]["seccomp"]["listenerPath"],
        "/run/netjail/oci.sock"
    );
    assert!(patched["linux"]["seccomp"]["listenerMetadata"]
        .as_str()
        .unwrap()
        .starts_with("policy=deny-all fingerprint="));
}

/// The JSON lines a container printed, in order.
fn json_lines(out: &Outcome) -> Vec<Value> {
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// M1 and D2 under runc: attacks run inside a container confined through the OCI agent get
/// what they get under `netjail run`. The sockaddr flip (3000 connects while a second thread
/// rewrites the port) never reaches the denied port; io_uring is refused; a unix path is
/// resolved in the container's root, so a path that names an allowed socket on the host but
/// nothing in the container reaches nothing, while the container's own view of a socket
/// works. Unconfined, the same container reaches the denied port and sets up io_uring.
#[test]
fn s_m1_d2_attacks_inside_a_runc_container() {
    let test = "s_m1_d2_attacks_inside_a_runc_container";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let (allowed, denied) = (Canary::tcp4(), Canary::tcp4());
    let sock_dir = TempDir::new();
    let inside = Canary::unix_at(&sock_dir.path().join("in.sock"));
    let host_only = Canary::unix_path("host.sock");
    let script = format!(
        "/probe flip {a} {d} 3000; /probe io-uring; /probe unix /sock/in.sock; /probe unix {h}",
        a = allowed.port(),
        d = denied.port(),
        h = host_only.path().display()
    );

    let plain = Bundle::new(&["sh", "-c", &script], false, None);
    plain.with_probe(sock_dir.path());
    let out = plain.run();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "unconfined: {}", out.describe());
    assert!(
        lines[0]["reached_denied"].as_u64() > Some(0),
        "unconfined flip never reached the denied port: {}",
        out.describe()
    );
    assert_eq!(
        lines[1]["setup_ok"],
        true,
        "unconfined io_uring: {}",
        out.describe()
    );
    assert_eq!(
        lines[2]["ok"],
        true,
        "unconfined unix in the container: {}",
        out.describe()
    );
    assert_eq!(
        lines[3]["ok"],
        false,
        "the host path exists in the container: {}",
        out.describe()
    );
    drop(plain);
    let denied_before = denied.wait_count(1, Duration::from_secs(5));
    assert!(denied_before > 0);
    let host_before = host_only.settled_count();

    let dir = TempDir::new();
    let policy = policies(
        dir.path(),
        "attacks",
        &format!(
            "name = \"attacks\"\ndefault = \"deny\"\n[sockets]\nallow = [\"inet:stream\", \"unix:*\"]\n\
             [[allow]]\nconnect = [\"tcp://127.0.0.1:{}\"]\nunix = [\"/sock/*\", \"{}\"]\n",
            allowed.port(),
            host_only.path().display()
        ),
    );
    let broker = oci_broker(&[], dir.path());
    let bundle = Bundle::new(&["sh", "-c", &script], false, None);
    bundle.with_probe(sock_dir.path());
    bundle.patch(&policy, &oci_socket(&broker));
    let out = bundle.run();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "confined: {}", with_log(&out, &broker));
    assert_eq!(
        lines[0]["reached_denied"],
        0,
        "TOCTOU in a container: {}",
        with_log(&out, &broker)
    );
    assert!(
        lines[0]["reached_allowed"].as_u64() > Some(0),
        "{}",
        with_log(&out, &broker)
    );
    assert_eq!(
        lines[1]["setup_ok"],
        false,
        "io_uring in a container: {}",
        out.describe()
    );
    assert_eq!(lines[1]["err"], "EPERM", "{}", out.describe());
    assert_eq!(
        lines[2]["ok"],
        true,
        "the container's own socket: {}",
        with_log(&out, &broker)
    );
    assert_eq!(
        lines[3]["ok"],
        false,
        "a host-only path was reached: {}",
        with_log(&out, &broker)
    );
    assert_eq!(
        denied.settled_count(),
        denied_before,
        "denied port reached from the container"
    );
    assert_eq!(
        host_only.settled_count(),
        host_before,
        "host-only socket reached"
    );
    assert!(
        inside.settled_count() >= 2,
        "the container's socket was not reached"
    );
}

/// A container that connects on demand: each port written to the FIFO `<dir>/in` is one
/// `nc 127.0.0.1 PORT` in the container's own process tree, whose exit status is appended to
/// `<dir>/out` as `PORT rc=N`.
///
/// A `read` that finds the FIFO's writer gone before it wrote (the test's non-blocking open
/// raced the shell's reopening) reads nothing: the loop opens the FIFO again instead of
/// ending the container, for as long as the FIFO exists.
pub(crate) const ON_DEMAND_SCRIPT: &str = "exec </dev/null >/dev/null 2>&1; \
     while [ -p /sock/in ]; do read p < /sock/in || continue; nc 127.0.0.1 $p </dev/null; \
     echo \"$p rc=$?\" >> /sock/out; done";

/// Asks the on-demand container in `dir` for one connect to `port`; its exit status.
pub(crate) fn nc_on_demand(dir: &Path, port: u16) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let before = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
    let asked = before.matches(&format!("{port} rc=")).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Non-blocking: ENXIO until the container has the FIFO open for reading.
    let mut fifo = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("in"))
        {
            Ok(f) => break f,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the container never read its FIFO for port {port}: {e}; its answers so far: {:?}",
                    std::fs::read_to_string(dir.join("out")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    writeln!(fifo, "{port}").expect("write the FIFO");
    drop(fifo);
    loop {
        let out = std::fs::read_to_string(dir.join("out")).unwrap_or_default();
        let answers: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{port} rc=")))
            .collect();
        if answers.len() > asked {
            return answers[asked].to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer from the container: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 8: a policy of `--policies DIR` edited while its container runs and reloaded with
/// `netjail reload`: the container's next connect is decided by the new rules. A version
/// whose `[sockets]` differ is refused for the container (its filter was compiled from the
/// old one) and a broken one is rejected with file:line:column; the container keeps the last
/// good policy.
#[test]
fn runc_container_policy_reloaded_for_its_next_connect() {
    let test = "runc_container_policy_reloaded_for_its_next_connect";
    if !need_root(test) || !have_runc(test) {
        return;
    }
    let (a, b) = (Canary::tcp4(), Canary::tcp4());
    let policies_dir = TempDir::new();
    let sockets = "[sockets]\nallow = [\"inet:stream\", \"inet:dgram\", \"unix:*\"]\n";
    let version = |sockets: &str, ports: &[u16]| {
        let list: Vec<String> = ports
            .iter()
            .map(|p| format!("\"tcp://127.0.0.1:{p}\""))
            .collect();
        format!(
            "name = \"web\"\ndefault = \"deny\"\n{sockets}[[allow]]\nconnect = [{}]\n",
            list.join(", ")
        )
    };
    let policy = policies(policies_dir.path(), "web", &version(sockets, &[a.port()]));
    let broker = oci_broker(&[], policies_dir.path());
    let io = TempDir::new();
    let out = run(
        Command::new("mkfifo").arg(io.path().join("in")),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "mkfifo: {}", out.describe());
    let bundle = Bundle::new(&["sh", "-c", ON_DEMAND_SCRIPT], false, None);
    bundle.with_probe(io.path());
    bundle.patch(&policy, &oci_socket(&broker));
    bundle.start_detached();
    assert_eq!(nc_on_demand(io.path(), a.port()), "0");
    assert_eq!(nc_on_demand(io.path(), b.port()), "1");

    let reload = || {
        run(
            Command::new(netjail_bin())
                .arg("reload")
                .arg("--control")
                .arg(broker.control()),
            Duration::from_secs(20),
        )
    };
    std::fs::write(&policy, version(sockets, &[a.port(), b.port()])).expect("edit the policy");
    let out = reload();
    assert!(out.status.success(), "{}", with_log(&out, &broker));
    assert!(
        out.stdout.contains("reloaded: sandbox sb-") && out.stdout.contains("policy web ("),
        "{}",
        with_log(&out, &broker)
    );
    assert_eq!(nc_on_demand(io.path(), b.port()), "0");

    // [sockets] differ: refused for the running container, which keeps the last policy.
    let narrower = "[sockets]\nallow = [\"inet:stream\"]\n";
    std::fs::write(&policy, version(narrower, &[a.port()])).expect("edit the policy");
    let out = reload();
    assert!(!out.status.success(), "{}", with_log(&out, &broker));
    assert!(
        out.stdout.contains("refused: sandbox sb-") && out.stdout.contains("[sockets] changed"),
        "{}",
        with_log(&out, &broker)
    );
    assert_eq!(nc_on_demand(io.path(), b.port()), "0");

    // A mistake: rejected with its position; the container keeps the last policy.
    std::fs::write(
        &policy,
        "name = \"web\"\ndefault = \"deny\"\n[[allow]]\nconect = []\n",
    )
    .expect("edit the policy");
    let out = reload();
    assert!(!out.status.success(), "{}", with_log(&out, &broker));
    assert!(
        out.stdout.contains("rejected: policy web (")
            && out.stdout.contains(&format!("{}:4:1", policy.display())),
        "{}",
        with_log(&out, &broker)
    );
    assert_eq!(nc_on_demand(io.path(), b.port()), "0");
    assert!(a.wait_count(1, Duration::from_secs(5)) >= 1);
    // The container's own sandbox decided each of them, first denied, then allowed.
    let endpoint = format!("tcp://127.0.0.1:{}", b.port());
    let verdicts: Vec<String> = events_of(&broker, &bundle.id, "decision")
        .iter()
        .filter(|d| d["endpoint"] == endpoint.as_str())
        .map(|d| d["decision"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        verdicts,
        ["deny", "allow", "allow", "allow"],
        "{}",
        broker.log()
    );
    let registered = events_of(&broker, &bundle.id, "sandbox registered");
    assert_eq!(
        registered.len(),
        1,
        "one sandbox throughout: {}",
        broker.log()
    );
}
