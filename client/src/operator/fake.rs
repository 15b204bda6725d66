//! A broker's control socket played by the tests: it answers from a [`FakeState`] the test
//! sets up, and sample values of every message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use netjail_protocol::control::{
    Counters, DecisionInfo, Event, OperatorReply, OperatorRequest, Outcome, PendingInfo,
    ProcessInfo, ReloadItem, ReloadOutcome, RequestId, Resolution, SandboxInfo, StatusReport,
};
use netjail_protocol::{recv, send, ErrorCode, ErrorReply, SandboxId, PROTOCOL_VERSION};
use tokio_seqpacket::{UnixSeqpacket, UnixSeqpacketListener};

/// What the fake broker knows and how it misbehaves.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Calls held now.
    pub pending: Vec<PendingInfo>,
    /// Sandboxes for a status answer.
    pub sandboxes: Vec<SandboxInfo>,
    /// Events sent to a watcher after the held calls.
    pub events: Vec<Event>,
    /// Close a watch after its events instead of keeping it open.
    pub close_watch: bool,
    /// Answer the hello with this error and close.
    pub refuse_hello: Option<ErrorReply>,
    /// Never answer the hello.
    pub silent_hello: bool,
    /// Answer the hello with this protocol version.
    pub welcome_version: Option<u16>,
    /// Every request received, in order (hellos included).
    pub requests: Vec<OperatorRequest>,
    /// The pieces of a metrics answer.
    pub metrics: Vec<String>,
}

/// A fake broker listening on a socket in its own temporary directory.
pub struct FakeBroker {
    dir: PathBuf,
    path: PathBuf,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

fn temp_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netjail-control-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

impl FakeBroker {
    /// Starts serving `state` (call from inside a tokio runtime).
    pub fn start(state: FakeState) -> FakeBroker {
        let dir = temp_dir();
        FakeBroker::start_at(dir.join("control.sock"), dir, state)
    }

    /// Serves `state` at `path` (and removes `dir` when dropped).
    pub fn start_at(path: PathBuf, dir: PathBuf, state: FakeState) -> FakeBroker {
        let mut listener =
            UnixSeqpacketListener::bind(&path).expect("bind the fake control socket");
        let state = Arc::new(Mutex::new(state));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok(sock) = listener.accept().await {
                tokio::spawn(serve(sock, Arc::clone(&shared)));
            }
        });
        FakeBroker {
            dir,
            path,
            state,
            task,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state, to change it or to look at the requests.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do about one request, decided with the state locked (and no await).
enum Plan {
    Reply(Vec<OperatorReply>),
    Silence,
    RefuseAndClose(ErrorReply),
    Stream { events: Vec<Event>, close: bool },
}

fn plan(st: &mut FakeState, request: &OperatorRequest, said_hello: &mut bool) -> Plan {
    st.requests.push(request.clone());
    match request {
        OperatorRequest::Hello { .. } if !*said_hello => {
            *said_hello = true;
            if st.silent_hello {
                return Plan::Silence;
            }
            if let Some(e) = st.refuse_hello.clone() {
                return Plan::RefuseAndClose(e);
            }
            Plan::Reply(vec![OperatorReply::Welcome {
                version: st.welcome_version.unwrap_or(PROTOCOL_VERSION),
                broker: "netjaild 0.1.0 (fake)".into(),
                operator: "uid 0".into(),
            }])
        }
        OperatorRequest::Status => Plan::Reply(
            std::iter::once(OperatorReply::Status(sample_report()))
                .chain(st.sandboxes.iter().cloned().map(OperatorReply::Sandbox))
                .chain([OperatorReply::End])
                .collect(),
        ),
        OperatorRequest::Pending => Plan::Reply(
            st.pending
                .iter()
                .cloned()
                .map(OperatorReply::Pending)
                .chain([OperatorReply::End])
                .collect(),
        ),
        OperatorRequest::Grant { id, .. } | OperatorRequest::Deny { id, .. } => {
            let granted = matches!(request, OperatorRequest::Grant { .. });
            let reply = match st.pending.iter().position(|p| p.id == *id) {
                Some(i) => {
                    st.pending.remove(i);
                    OperatorReply::Resolved(Resolution {
                        id: *id,
                        outcome: if granted {
                            Outcome::Granted
                        } else {
                            Outcome::Denied
                        },
                        allowed: granted,
                        by: "uid 0".into(),
                        rule: String::new(),
                    })
                }
                None => OperatorReply::Error(ErrorReply {
                    code: ErrorCode::NotPending,
                    message: format!(
                        "call {id} is not held (answered, timed out, or its caller exited)"
                    ),
                }),
            };
            Plan::Reply(vec![reply])
        }
        OperatorRequest::Watch { .. } => Plan::Stream {
            events: st
                .pending
                .iter()
                .cloned()
                .map(Event::Pending)
                .chain(st.events.iter().cloned())
                .collect(),
            close: st.close_watch,
        },
        OperatorRequest::Metrics => Plan::Reply(
            st.metrics
                .iter()
                .cloned()
                .map(OperatorReply::Metrics)
                .chain([OperatorReply::End])
                .collect(),
        ),
        OperatorRequest::Hello { .. } => Plan::Reply(vec![OperatorReply::Error(ErrorReply {
            code: ErrorCode::Malformed,
            message: "a second hello".into(),
        })]),
        OperatorRequest::Reload => Plan::Reply(vec![
            OperatorReply::Reloaded(ReloadItem {
                subject: "overlay /o/policy-web.toml".into(),
                outcome: ReloadOutcome::Reloaded,
                detail: "2 rules".into(),
            }),
            OperatorReply::Reloaded(ReloadItem {
                subject: "overlay /o/policy-mail.toml".into(),
                outcome: ReloadOutcome::Rejected,
                detail: "/o/policy-mail.toml:4:1: unknown key `conect`; its old rules stay".into(),
            }),
            OperatorReply::End,
        ]),
    }
}

async fn serve(sock: UnixSeqpacket, state: Arc<Mutex<FakeState>>) {
    let mut said_hello = false;
    while let Ok(received) = recv::<OperatorRequest>(&sock).await {
        let plan = plan(&mut lock(&state), &received.msg, &mut said_hello);
        match plan {
            Plan::Reply(replies) => {
                for reply in replies {
                    if send(&sock, &reply, &[]).await.is_err() {
                        return;
                    }
                }
            }
            Plan::Silence => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Plan::RefuseAndClose(e) => {
                let _ = send(&sock, &OperatorReply::Error(e), &[]).await;
                return;
            }
            Plan::Stream { events, close } => {
                for event in events {
                    if send(&sock, &OperatorReply::Event(event), &[])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if close {
                    return;
                }
                // Keep the watch open until the client goes.
                while recv::<OperatorRequest>(&sock).await.is_ok() {}
                return;
            }
        }
    }
}

/// A held call: `curl(412) < sh(400) < netjail(390)` connecting to `tcp://127.0.0.1:8080`.
pub fn sample_pending(id: u64) -> PendingInfo {
    PendingInfo {
        id: RequestId(id),
        sandbox: SandboxId(3),
        name: "curl".into(),
        container: String::new(),
        policy: "web".into(),
        pid: 412,
        chain: vec![
            ProcessInfo {
                pid: 412,
                program: "/usr/bin/curl".into(),
            },
            ProcessInfo {
                pid: 400,
                program: "/bin/sh".into(),
            },
            ProcessInfo {
                pid: 390,
                program: "/usr/local/bin/netjail".into(),
            },
        ],
        op: "connect".into(),
        endpoint: "tcp://127.0.0.1:8080".into(),
        host: String::new(),
        rule: "ask[0].connect[0]".into(),
        age_ms: 4_000,
        remaining_ms: 26_000,
        fallback: "deny".into(),
    }
}

/// A sandbox `sb-3 curl`.
pub fn sample_sandbox() -> SandboxInfo {
    SandboxInfo {
        sandbox: SandboxId(3),
        name: "curl".into(),
        container: String::new(),
        pid: 390,
        policy: "web".into(),
        decisions: 12,
        pending: 1,
        age_ms: 65_000,
    }
}

/// A broker up for two hours.
pub fn sample_report() -> StatusReport {
    StatusReport {
        broker: "netjaild 0.1.0".into(),
        uptime_ms: 7_380_000,
        operators: 1,
        sandboxes: 1,
        pending: 1,
        grants: 0,
        counters: Counters {
            allowed: 10,
            denied: 2,
            asked: 1,
            passed: 3,
            ..Counters::default()
        },
    }
}

/// A denied connect to the metadata address at 12:00:01.234 UTC.
pub fn sample_decision() -> DecisionInfo {
    DecisionInfo {
        time_ms: 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000 + 43_201_234,
        sandbox: SandboxId(3),
        name: "curl".into(),
        container: String::new(),
        pid: 412,
        program: "/usr/bin/curl".into(),
        op: "connect".into(),
        endpoint: "tcp://169.254.169.254:80".into(),
        host: String::new(),
        decision: "deny".into(),
        rule: "deny[0].connect[0]".into(),
        errno: libc::EPERM,
        latency_us: 12,
    }
}
