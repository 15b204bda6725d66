//! Ordinary programs (python3, curl, the probe) making ordinary connections, allowed and
//! denied, through the embedded broker and through `netjaild`.

use std::path::PathBuf;
use std::time::Duration;

use netjail_integration_tests::{
    allow_connect_policy, confined_with_broker, policy_file, python3, skip, unconfined, which,
    Broker, Canary, Outcome,
};

use crate::{assert_eperm, assert_ok, probe, Via};

const WAIT: Duration = Duration::from_secs(5);

/// `python3 -c PY_CONNECT PROTO HOST PORT [send]`: one connect, the probe's JSON shape.
const PY_CONNECT: &str = r#"
import errno, json, socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
ty = socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM
s = socket.socket(fam, ty)
try:
    s.connect((host, port))
    out = {'ok': True}
    if len(sys.argv) > 4:
        out['sent'] = s.send(b'ping') == 4
except OSError as e:
    out = {'ok': False, 'errno': e.errno, 'err': errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(out))
"#;

/// `python3 -c PY_UNIX path|abstract NAME`.
const PY_UNIX: &str = r#"
import errno, json, socket, sys
kind, name = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(name if kind == 'path' else '\0' + name)
    out = {'ok': True}
except OSError as e:
    out = {'ok': False, 'errno': e.errno, 'err': errno.errorcode.get(e.errno, str(e.errno))}
print(json.dumps(out))
"#;

fn need_python(test: &str) -> Option<PathBuf> {
    let py = python3();
    if py.is_none() {
        skip(test, "python3 not found");
    }
    py
}

fn need_curl(test: &str) -> Option<PathBuf> {
    let c = which("curl");
    if c.is_none() {
        skip(test, "curl not found");
    }
    c
}

/// Runs PY_CONNECT confined.
fn py_connect(via: &Via, py: &std::path::Path, policy: &str, rest: &[&str]) -> Outcome {
    let py = py.to_str().expect("utf-8 path");
    let mut args = vec![py, "-c", PY_CONNECT];
    args.extend_from_slice(rest);
    via.run(policy, &args)
}

// ---- TCP ------------------------------------------------------------------------------------

fn python_tcp_allowed(via: Via, v6: bool) {
    let Some(py) = need_python("s_d1_python_tcp_allowed") else {
        return;
    };
    let canary = if v6 { Canary::tcp6() } else { Canary::tcp4() };
    let host = if v6 { "::1" } else { "127.0.0.1" };
    let ep = if v6 { "[::1]" } else { "127.0.0.1" };
    let policy = allow_connect_policy(&[format!("tcp://{ep}:{}", canary.port())]);
    let out = py_connect(
        &via,
        &py,
        policy.as_str(),
        &["tcp", host, &canary.port_str()],
    );
    assert_ok(&out);
    assert_eq!(canary.wait_count(1, WAIT), 1, "canary: {}", out.describe());
}

fn python_tcp4_allowed(via: Via) {
    python_tcp_allowed(via, false);
}

fn python_tcp6_allowed(via: Via) {
    python_tcp_allowed(via, true);
}

both!(
    /// D1: an allowed TCP connect over IPv4 reaches its destination.
    s_d1_python_tcp4_allowed => python_tcp4_allowed
);
both!(
    /// D1: an allowed TCP connect over IPv6 reaches its destination.
    s_d1_python_tcp6_allowed => python_tcp6_allowed
);

fn python_tcp_denied(via: Via) {
    let Some(py) = need_python("s_d1_python_tcp_denied") else {
        return;
    };
    let allowed = Canary::tcp4();
    let denied4 = Canary::tcp4();
    let denied6 = Canary::tcp6();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
    // Unconfined, the same connects work: the probe can fail.
    let out = unconfined(&[
        py.to_str().unwrap_or("python3"),
        "-c",
        PY_CONNECT,
        "tcp",
        "127.0.0.1",
        &denied4.port_str(),
    ]);
    assert_ok(&out);
    assert_eq!(denied4.wait_count(1, WAIT), 1);

    let out = py_connect(
        &via,
        &py,
        policy.as_str(),
        &["tcp", "127.0.0.1", &denied4.port_str()],
    );
    assert_eperm(&out);
    let out = py_connect(
        &via,
        &py,
        policy.as_str(),
        &["tcp", "::1", &denied6.port_str()],
    );
    assert_eperm(&out);
    assert_eq!(denied4.settled_count(), 1, "denied IPv4 canary was reached");
    assert_eq!(denied6.count(), 0, "denied IPv6 canary was reached");
    assert_eq!(allowed.count(), 0);
}

both!(
    /// D1: a TCP connect no rule allows fails with EPERM and reaches nothing (IPv4 and IPv6).
    s_d1_python_tcp_denied => python_tcp_denied
);

// ---- UDP ------------------------------------------------------------------------------------

fn python_udp_allowed(via: Via, v6: bool) {
    let Some(py) = need_python("s_d1_python_udp_allowed") else {
        return;
    };
    let canary = if v6 { Canary::udp6() } else { Canary::udp4() };
    let host = if v6 { "::1" } else { "127.0.0.1" };
    let ep = if v6 { "[::1]" } else { "127.0.0.1" };
    let policy = allow_connect_policy(&[format!("udp://{ep}:{}", canary.port())]);
    let out = py_connect(
        &via,
        &py,
        policy.as_str(),
        &["udp", host, &canary.port_str(), "send"],
    );
    assert_ok(&out);
    assert_eq!(out.json()["sent"], true, "{}", out.describe());
    assert_eq!(
        canary.wait_count(1, WAIT),
        1,
        "datagram did not arrive: {}",
        out.describe()
    );

    // The probe's raw syscalls, same thing.
    let out = via.run(
        policy.as_str(),
        &[
            probe(),
            "connect",
            "udp",
            host,
            &canary.port_str(),
            "--send",
        ],
    );
    assert_ok(&out);
    assert_eq!(out.json()["sent"], true, "{}", out.describe());
    assert_eq!(
        canary.wait_count(2, WAIT),
        2,
        "datagram did not arrive: {}",
        out.describe()
    );
}

fn python_udp4_allowed(via: Via) {
    python_udp_allowed(via, false);
}

fn python_udp6_allowed(via: Via) {
    python_udp_allowed(via, true);
}

both!(
    /// D1/L3: an allowed UDP connect over IPv4, then a send on the connected socket (D3).
    s_d1_udp4_allowed_connect_and_send => python_udp4_allowed
);
both!(
    /// D1/L3: an allowed UDP connect over IPv6, then a send on the connected socket (D3).
    s_d1_udp6_allowed_connect_and_send => python_udp6_allowed
);

fn udp_denied(via: Via) {
    let allowed = Canary::udp4();
    let denied = Canary::udp4();
    let policy = allow_connect_policy(&[format!("udp://127.0.0.1:{}", allowed.port())]);
    let args = [
        probe(),
        "connect",
        "udp",
        "127.0.0.1",
        &denied.port_str(),
        "--send",
    ];
    let out = unconfined(&args);
    assert_ok(&out);
    assert_eq!(
        denied.wait_count(1, WAIT),
        1,
        "probe cannot reach the canary unconfined"
    );
    let out = via.run(policy.as_str(), &args);
    assert_eperm(&out);
    assert_eq!(
        denied.settled_count(),
        1,
        "denied UDP canary got a datagram"
    );
}

both!(
    /// D1/L3: a UDP connect no rule allows fails with EPERM and no datagram arrives.
    s_d1_udp_denied => udp_denied
);

// ---- non-blocking ---------------------------------------------------------------------------

fn nonblocking_connect(via: Via) {
    let canary = Canary::tcp4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", canary.port())]);
    let args = [
        probe(),
        "connect",
        "tcp",
        "127.0.0.1",
        &canary.port_str(),
        "--nonblock",
        "--send",
    ];
    let out = unconfined(&args);
    assert_eq!(
        out.json()["first"]["err"],
        "EINPROGRESS",
        "{}",
        out.describe()
    );
    assert_ok(&out);
    let out = via.run(policy.as_str(), &args);
    assert_eq!(
        out.json()["first"]["err"],
        "EINPROGRESS",
        "a non-blocking connect must answer EINPROGRESS like the kernel: {}",
        out.describe()
    );
    assert_ok(&out);
    assert_eq!(out.json()["sent"], true, "{}", out.describe());
    assert_eq!(canary.wait_count(2, WAIT), 2);
}

both!(
    /// D1: a non-blocking connect answers EINPROGRESS, then completes (SO_ERROR 0).
    s_d1_nonblocking_connect_einprogress_then_success => nonblocking_connect
);

// ---- curl -----------------------------------------------------------------------------------

fn curl_args<'a>(curl: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        curl,
        "--noproxy",
        "*",
        "-g",
        "-v",
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url,
    ]
}

fn curl_allowed(via: Via, v6: bool) {
    let Some(curl) = need_curl("s_d1_curl_allowed") else {
        return;
    };
    let canary = if v6 { Canary::http6() } else { Canary::http4() };
    let ep = if v6 { "[::1]" } else { "127.0.0.1" };
    let policy = allow_connect_policy(&[format!("tcp://{ep}:{}", canary.port())]);
    let url = format!("http://{ep}:{}/", canary.port());
    let curl = curl.to_str().expect("utf-8 path");
    let out = via.run(policy.as_str(), &curl_args(curl, &url));
    assert_eq!(out.code(), Some(0), "curl failed: {}", out.describe());
    assert_eq!(out.stdout.trim(), "200", "{}", out.describe());
    assert_eq!(canary.wait_count(1, WAIT), 1);
}

fn curl4_allowed(via: Via) {
    curl_allowed(via, false);
}

fn curl6_allowed(via: Via) {
    curl_allowed(via, true);
}

both!(
    /// D1: curl fetches a page from an allowed IPv4 loopback port.
    s_d1_curl4_allowed => curl4_allowed
);
both!(
    /// D1: curl fetches a page from an allowed IPv6 loopback port.
    s_d1_curl6_allowed => curl6_allowed
);

fn curl_denied(via: Via) {
    let Some(curl) = need_curl("s_d1_curl_denied") else {
        return;
    };
    let allowed = Canary::http4();
    let denied = Canary::http4();
    let policy = allow_connect_policy(&[format!("tcp://127.0.0.1:{}", allowed.port())]);
    let url = format!("http://127.0.0.1:{}/", denied.port());
    let curl = curl.to_str().expect("utf-8 path");
    let out = unconfined(&curl_args(curl, &url));
    assert_eq!(
        out.stdout.trim(),
        "200",
        "curl cannot fetch unconfined: {}",
        out.describe()
    );
    assert_eq!(denied.wait_count(1, WAIT), 1);

    let out = via.run(policy.as_str(), &curl_args(curl, &url));
    // curl's exit code 7 is CURLE_COULDNT_CONNECT; -v prints the connect errno's strerror.
    assert_eq!(
        out.code(),
        Some(7),
        "curl should fail to connect: {}",
        out.describe()
    );
    assert_eq!(out.stdout.trim(), "000", "{}", out.describe());
    assert!(
        out.stderr.contains("Operation not permitted"),
        "curl should report EPERM: {}",
        out.describe()
    );
    assert_eq!(denied.settled_count(), 1, "denied canary was reached");
}

both!(
    /// D1: curl to a port no rule allows fails to connect with "Operation not permitted".
    s_d1_curl_denied => curl_denied
);

// ---- AF_UNIX --------------------------------------------------------------------------------

const UNIX_POLICY: &str = r#"
name = "unix-test"
default = "deny"

[[allow]]
unix = ["/tmp/netjail-test-*/ok.sock"]
"#;

fn unix_path_allowed(via: Via) {
    let canary = Canary::unix_path("ok.sock");
    let policy = policy_file(UNIX_POLICY);
    let path = canary.path().to_str().expect("utf-8 path").to_owned();
    let out = via.run(policy.as_str(), &[probe(), "unix", &path]);
    assert_ok(&out);
    assert_eq!(canary.wait_count(1, WAIT), 1);
    if let Some(py) = python3() {
        let py = py.to_str().expect("utf-8 path");
        let out = via.run(policy.as_str(), &[py, "-c", PY_UNIX, "path", &path]);
        assert_ok(&out);
        assert_eq!(canary.wait_count(2, WAIT), 2);
    }
}

both!(
    /// D2: a filesystem unix socket the policy names can be connected to.
    s_d2_unix_path_allowed => unix_path_allowed
);

fn unix_path_not_listed(via: Via) {
    let canary = Canary::unix_path("other.sock");
    let policy = policy_file(UNIX_POLICY);
    let path = canary.path().to_str().expect("utf-8 path").to_owned();
    let args = [probe(), "unix", &path];
    assert_ok(&unconfined(&args));
    assert_eq!(canary.wait_count(1, WAIT), 1);
    let out = via.run(policy.as_str(), &args);
    assert_eperm(&out);
    assert_eq!(canary.settled_count(), 1);
}

both!(
    /// D2 with an explicit `unix` allow-list: a path the list does not name is denied.
    s_d2_unix_path_not_listed_denied => unix_path_not_listed
);

fn unix_abstract_denied(via: Via) {
    let canary = Canary::unix_abstract();
    // Even the broadest path rule does not cover abstract names.
    let policy =
        policy_file("name = \"unix-all\"\ndefault = \"deny\"\n\n[[allow]]\nunix = [\"/**\"]\n");
    let args = [probe(), "unix-abstract", canary.abstract_name()];
    let out = unconfined(&args);
    assert_ok(&out);
    assert_eq!(
        canary.wait_count(1, WAIT),
        1,
        "probe cannot reach the abstract canary"
    );
    let out = via.run(policy.as_str(), &args);
    assert_eperm(&out);
    if let Some(py) = python3() {
        let py = py.to_str().expect("utf-8 path");
        let out = via.run(
            policy.as_str(),
            &[py, "-c", PY_UNIX, "abstract", canary.abstract_name()],
        );
        assert_eperm(&out);
    }
    // Also under the built-in loopback-only profile, which allows unix paths "/**".
    let out = via.run("loopback-only", &args);
    assert_eperm(&out);
    assert_eq!(canary.settled_count(), 1, "abstract canary was reached");
}

both!(
    /// D2: abstract unix sockets (first byte of sun_path NUL) are not the filesystem exception.
    s_d2_abstract_unix_denied => unix_abstract_denied
);

// ---- audit log ------------------------------------------------------------------------------

/// netjaild's audit log has exactly one allow event and one deny event for our two connects,
/// with the right endpoint, rule, and errno.
#[test]
fn broker_audit_log_records_allow_and_deny() {
    let broker = Broker::start();
    let allowed = Canary::tcp4();
    let denied = Canary::tcp4();
    let rule = format!("tcp://127.0.0.1:{}", allowed.port());
    let policy = allow_connect_policy(std::slice::from_ref(&rule));
    let out = confined_with_broker(
        &broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &allowed.port_str()],
    );
    assert_ok(&out);
    let out = confined_with_broker(
        &broker,
        policy.as_str(),
        &[probe(), "connect", "tcp", "127.0.0.1", &denied.port_str()],
    );
    assert_eperm(&out);
    let about = |port: u16| {
        move |e: &serde_json::Value| {
            e["endpoint"]
                .to_string()
                .contains(&format!("127.0.0.1:{port}"))
        }
    };
    let allow = broker.wait_audit(1, WAIT, about(allowed.port()));
    let deny = broker.wait_audit(1, WAIT, about(denied.port()));
    assert_eq!(
        allow.len(),
        1,
        "one audit event for the allowed connect:\n{}",
        broker.log()
    );
    assert_eq!(
        deny.len(),
        1,
        "one audit event for the denied connect:\n{}",
        broker.log()
    );
    let (a, d) = (&allow[0], &deny[0]);
    for (e, decision) in [(a, "allow"), (d, "deny")] {
        assert_eq!(e["decision"], decision, "{e}");
        assert_eq!(e["op"], "connect", "{e}");
        for key in ["sandbox", "pid", "program", "latency_us"] {
            assert!(!e[key].is_null(), "audit event lacks {key}: {e}");
        }
    }
    // The rule is named either by its text or by its place in the policy
    // (`allow[0].connect[0]`); a default decision names the default.
    let arule = a["rule"].as_str().unwrap_or_default();
    assert!(
        arule.contains(&rule) || arule.starts_with("allow[0]"),
        "allow event should name the rule {rule} (allow[0].connect[0]): {a}"
    );
    assert!(
        d["rule"].as_str().is_some_and(|r| r.contains("default")),
        "deny event should name the default rule: {d}"
    );
    assert!(
        d["errno"] == "EPERM" || d["errno"] == libc::EPERM,
        "deny event errno should be EPERM: {d}"
    );
}
