//! `nj-zygote`: a process that confines itself with `netjail_client::confine_self` (issue 6),
//! the way a zygote does before it loads untrusted code, then shows what it and a later child
//! can reach.
//!
//! ```text
//! nj-zygote BROKER_SOCKET POLICY_FILE [--no-confine] [--timeout-ms N] [--gate PREFIX] PORT...
//! nj-zygote child PORT...
//! ```
//!
//! One JSON line per step on stdout:
//! `{"step":"confining"}`, then `{"step":"confine","ok":..,"confined":..,"sandbox"|"error":..}`,
//! one `{"step":"connect","who":"zygote","port":P,"result":"ok"|ERRNO}` per port (TCP to
//! 127.0.0.1), then the child (this program again, `child PORT...`, started with
//! `std::process::Command`) prints its own connect lines with `"who":"child"`, and
//! `{"step":"done","child":CODE}` ends. Right after `confine`, `{"step":"listeners","count":N}`
//! counts the seccomp listeners among the process's own fds (it must hold none). `--no-confine` skips `confine_self` (the unconfined run
//! that shows the probe can reach everything). With `--gate PREFIX`, the zygote waits before
//! its i-th connect (from 0) until the file `PREFIX-i` exists, so that a test can do something
//! (kill the broker) between two calls.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use netjail_integration_tests::sys::errno_name;
use serde_json::json;

fn say(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn connect_all(who: &str, ports: &[u16], gate: Option<&str>) {
    for (i, &port) in ports.iter().enumerate() {
        if let Some(prefix) = gate {
            let file = format!("{prefix}-{i}");
            while !std::path::Path::new(&file).exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let result = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .raw_os_error()
                .map(errno_name)
                .unwrap_or_else(|| e.to_string()),
        };
        say(json!({"step": "connect", "who": who, "port": port, "result": result}));
    }
}

/// How many of this process's fds are seccomp listeners.
fn own_listeners() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.to_string_lossy().contains("seccomp notify"))
                .count()
        })
        .unwrap_or(0)
}

fn ports(args: &[String]) -> Vec<u16> {
    args.iter()
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| usage(&format!("not a port: {a}")))
        })
        .collect()
}

fn usage(why: &str) -> ! {
    eprintln!("nj-zygote: {why}\nusage: nj-zygote BROKER_SOCKET POLICY_FILE [--no-confine] [--timeout-ms N] [--gate PREFIX] PORT...\n       nj-zygote child PORT...");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        connect_all("child", &ports(&args[1..]), None);
        return;
    }
    let [broker, policy_file, rest @ ..] = &args[..] else {
        usage("missing arguments");
    };
    let mut confine = true;
    let mut timeout = None;
    let mut gate = None;
    let mut port_args = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-confine" => confine = false,
            "--timeout-ms" => {
                let ms = it.next().and_then(|v| v.parse().ok());
                timeout = Some(Duration::from_millis(
                    ms.unwrap_or_else(|| usage("--timeout-ms needs a number")),
                ));
            }
            "--gate" => {
                gate = Some(
                    it.next()
                        .cloned()
                        .unwrap_or_else(|| usage("--gate needs a path")),
                )
            }
            _ => port_args.push(a.clone()),
        }
    }
    let ports = ports(&port_args);
    let (source, policy) = netjail_client::policy::load(policy_file)
        .unwrap_or_else(|e| usage(&format!("policy: {e}")));

    if confine {
        say(json!({"step": "confining"}));
        let mut options = netjail_client::ConfineSelf::new(&policy)
            .broker(broker)
            .name("zygote")
            .source(source)
            // The tests run as root in CI: the zygote is a root sandbox there.
            .allow_root(true);
        if let Some(t) = timeout {
            options = options.timeout(t);
        }
        match options.confine() {
            Ok(sandbox) => say(json!({
                "step": "confine", "ok": true, "confined": true, "sandbox": sandbox.to_string()
            })),
            Err(e) => say(json!({
                "step": "confine", "ok": false, "confined": e.is_confined(), "error": e.to_string()
            })),
        }
        say(json!({"step": "listeners", "count": own_listeners()}));
    }
    connect_all("zygote", &ports, gate.as_deref());
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("current_exe: {e}")));
    let code = match std::process::Command::new(exe)
        .arg("child")
        .args(&port_args)
        .status()
    {
        Ok(st) => st.code().unwrap_or(-1),
        Err(e) => {
            say(json!({"step": "child", "error": e.to_string()}));
            -1
        }
    };
    say(json!({"step": "done", "child": code}));
}
