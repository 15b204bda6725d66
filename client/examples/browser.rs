//! A browser-style parent with three confined children and a broker in its own process.
//!
//! ```text
//! cargo run --example browser
//! ```
//!
//! The parent starts three "origins" (TCP servers on loopback, ports chosen by the kernel:
//! `app`, `ads`, `api`), an embedded broker with a decision hook, and three children, each
//! this same program run with `child`:
//!
//! - the renderer, whose policy (built in code) allows the `app` origin only;
//! - the plugin, with the built-in `deny-all` policy: no network at all;
//! - the worker, whose policy allows nothing, and whose connections the parent approves at
//!   run time in its decision hook (it approves `api`, and refuses the others).
//!
//! Each child tries every origin when the parent says `go`, and reports what it reached.
//! Then the parent grants the renderer the `ads` origin at run time
//! (`broker.sandbox(id).allow(..)`), and the renderer tries again. The parent prints a table
//! of what each child could reach, what its hook decided, and how many connections each
//! origin actually received. `docs/embedding.md` walks through this file.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netjail_broker::{Broker, HookCall, HookVerdict};
use netjail_client::sandbox::{Sandbox, SandboxedChild};
use netjail_policy::{builtin, Policy, Target};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1..]);
    }
    parent()
}

/// A TCP server on loopback that greets and counts its clients.
struct Origin {
    name: &'static str,
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Origin {
    fn start(name: &'static str) -> Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let _ = writeln!(stream, "hello from {name}");
            }
        });
        Ok(Origin {
            name,
            addr,
            accepted,
        })
    }
}

/// One confined child and the pipes the parent drives it with.
struct Child {
    label: &'static str,
    handle: SandboxedChild,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Child {
    /// Asks the child to try every origin once; returns its answer per origin.
    fn round(&mut self) -> Result<Vec<String>> {
        writeln!(self.stdin, "go")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(format!("{} ended without answering", self.label).into());
        }
        Ok(line.split_whitespace().map(str::to_string).collect())
    }
}

fn parent() -> Result<()> {
    let origins = [
        Origin::start("app")?,
        Origin::start("ads")?,
        Origin::start("api")?,
    ];
    let addr_of = |name: &str| origins.iter().find(|o| o.name == name).unwrap().addr;
    let name_of: BTreeMap<SocketAddr, &'static str> =
        origins.iter().map(|o| (o.addr, o.name)).collect();

    // The parent's run-time say: the worker may reach what the parent approves, here the
    // `api` origin. The hook runs on a thread of the broker's pool for every call the
    // policy's deny tables leave open; it could as well ask a user and wait.
    let approved = [addr_of("api")];
    let decisions = Arc::new(Mutex::new(Vec::new()));
    let log = decisions.clone();
    let hook_names = name_of.clone();
    let broker = Broker::builder()
        .hook(move |call: &HookCall<'_>| {
            if call.name != "worker" {
                return HookVerdict::Continue;
            }
            let Target::Inet { addr, .. } = &call.request.target else {
                return HookVerdict::DENY;
            };
            let origin = hook_names.get(addr).copied().unwrap_or("?");
            let verdict = if approved.contains(addr) {
                HookVerdict::Allow
            } else {
                HookVerdict::DENY
            };
            let word = if matches!(verdict, HookVerdict::Allow) {
                "approved"
            } else {
                "refused"
            };
            log.lock()
                .unwrap()
                .push(format!("worker -> {origin}: {word}"));
            verdict
        })
        .build()?;

    let renderer_policy = Policy::builder("renderer")
        .allow(|t| t.connect(format!("tcp://{}", addr_of("app"))))
        .build()?;
    let plugin_policy = Policy::from_toml(builtin("deny-all").unwrap(), "builtin:deny-all")?;
    let worker_policy = Policy::builder("worker").build()?;

    let targets: Vec<String> = origins.iter().map(|o| o.addr.to_string()).collect();
    let spawn = |label: &'static str, name: &str, policy: Policy| -> Result<Child> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("child")
            .args(&targets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // The children run as whoever runs the example; run by root they are root sandboxes,
        // which must be allowed by name (docs/security.md, "Root sandboxes").
        let mut handle = Sandbox::builder()
            .allow_root(true)
            .policy(policy)
            .broker(broker.broker().clone())
            .name(name)
            .command(cmd)
            .spawn()?;
        let stdin = handle.child_mut().stdin.take().unwrap();
        let stdout = BufReader::new(handle.child_mut().stdout.take().unwrap());
        Ok(Child {
            label,
            handle,
            stdin,
            stdout,
        })
    };
    let mut renderer = spawn("renderer (app only)", "renderer", renderer_policy)?;
    let mut plugin = spawn("plugin (no network)", "plugin", plugin_policy)?;
    let mut worker = spawn("worker (parent approves)", "worker", worker_policy)?;

    let mut rows = Vec::new();
    for child in [&mut renderer, &mut plugin, &mut worker] {
        rows.push((child.label.to_string(), child.round()?));
    }
    // A grant at run time, from the renderer's next call on.
    broker
        .sandbox(renderer.handle.sandbox())
        .ok_or("the renderer left the broker")?
        .allow(&format!("tcp://{}", addr_of("ads")))?;
    rows.push(("renderer, ads granted".to_string(), renderer.round()?));

    println!("netjail browser example: one embedded broker, three confined children");
    let row = |label: &str, cells: &[String]| {
        let mut line = format!("{label:<28}");
        for cell in cells {
            line.push_str(&format!("{cell:<10}"));
        }
        println!("{}", line.trim_end());
    };
    let header: Vec<String> = origins.iter().map(|o| o.name.to_string()).collect();
    row("child", &header);
    for (label, cells) in &rows {
        row(label, cells);
    }
    println!();
    println!("the parent's hook:");
    for line in decisions.lock().unwrap().iter() {
        println!("  {line}");
    }
    println!();
    print!("connections received:");
    for o in &origins {
        print!(" {} {}", o.name, o.accepted.load(Ordering::SeqCst));
    }
    println!();

    for mut child in [renderer, plugin, worker] {
        drop(child.stdin);
        let status = child.handle.wait()?;
        if !status.success() {
            return Err(format!("{} ended with {status}", child.label).into());
        }
    }
    Ok(())
}

/// The child: on each `go` line, tries every address given and prints one word per address
/// (`reached`, or the errno's name).
fn child(targets: &[String]) -> Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        if line?.trim() != "go" {
            continue;
        }
        let words: Vec<String> = targets.iter().map(|t| attempt(t)).collect();
        writeln!(out, "{}", words.join(" "))?;
        out.flush()?;
    }
    Ok(())
}

fn attempt(target: &str) -> String {
    let Ok(addr) = target.parse::<SocketAddr>() else {
        return "bad-address".into();
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => {
            let mut greeting = String::new();
            match BufReader::new(stream).read_line(&mut greeting) {
                Ok(_) if greeting.starts_with("hello from") => "reached".into(),
                _ => "no-greeting".into(),
            }
        }
        Err(e) => errno_name(&e),
    }
}

fn errno_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::ECONNREFUSED) => "ECONNREFUSED".into(),
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT".into(),
        Some(libc::ETIMEDOUT) => "ETIMEDOUT".into(),
        Some(n) => format!("errno{n}"),
        None => e.kind().to_string().replace(' ', "-"),
    }
}
