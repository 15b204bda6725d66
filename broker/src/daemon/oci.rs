//! The OCI seccomp agent (M3): container runtimes (runc, crun) name this socket in a bundle's
//! `linux.seccomp.listenerPath`, connect once per container process, send one JSON document
//! (the "container process state") with the seccomp listener in `SCM_RIGHTS`, and close
//! without reading a reply. The listener is registered as a sandbox named after the container,
//! with the policy the bundle asks for.
//!
//! Everything on this socket is untrusted input: reads are bounded in size and time, the
//! document must parse and carry exactly one fd, the fd must be a seccomp listener, and the
//! policy name must resolve. Anything else is refused with an audit event and the connection
//! closed; the fds received are closed with it, so a container whose listener was refused
//! gets `ENOSYS` from every notified call (fail closed, M4). Other connections and sandboxes
//! are served on (invariant 8).

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netjail_policy::Policy;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::{receiver::audit, Broker};

/// Largest state document accepted. runc's and crun's are well under 4 KiB; annotations make
/// them grow, but not to this.
pub(crate) const MAX_STATE_LEN: usize = 64 * 1024;
/// Time a runtime has to send its whole document after connecting.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections read at once; further ones wait to be read (the runtime does not wait for a
/// reply, so this only delays the first call of a container, which waits in the kernel).
pub(crate) const MAX_CONCURRENT: usize = 16;
/// Most fds taken in one read; more are a refusal anyway.
const MAX_FDS_PER_READ: usize = 4;
/// The annotation that may name a container's policy.
pub(crate) const POLICY_ANNOTATION: &str = "org.netjail.policy";

/// Where the agent finds policies by name.
#[derive(Debug, Clone)]
pub(crate) struct OciConfig {
    /// Directory of `NAME.toml` policy files (built-in names come first and cannot be shadowed).
    pub policies_dir: PathBuf,
    /// Policy of a container that names none; `None` refuses such containers.
    pub default_policy: Option<String>,
}

/// Binds the agent's socket (`SOCK_STREAM`, the runtimes' side of the protocol) with mode 0660
/// (set as the file is created), replacing a stale socket file; refuses when something answers
/// there, or when its directory is one another user could write in (as the registration
/// socket, [`crate::bind_registration_socket`]).
pub(crate) fn bind_oci_socket(path: &Path) -> io::Result<UnixListener> {
    let fd = crate::ops::own::bind_unix(path, rustix::net::SocketType::STREAM, 0o660, None)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// Accepts runtime connections forever, reading each on the blocking pool (bounded by
/// [`MAX_CONCURRENT`]).
pub(crate) async fn serve_oci(
    broker: Arc<Broker>,
    listener: UnixListener,
    config: Arc<OciConfig>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                tracing::error!(error = %e, "out of fds; pausing OCI accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                pid: c.pid().map_or(-1, i64::from),
                uid: i64::from(c.uid()),
            },
            Err(_) => Peer { pid: -1, uid: -1 },
        };
        if crate::ops::own::is_this_process(visible_pid(peer)) {
            // A connection the broker made for a sandbox: closed unread, with its fds.
            let detail = "the broker itself is at the other end: a connection it made for a \
                          sandbox; the OCI socket is closed to sandboxes";
            audit::peer_refused("oci", "broker-itself", detail, peer.pid, peer.uid);
            continue;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        // tokio's sockets are non-blocking; this one is read with a timeout instead.
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        let (broker, config) = (broker.clone(), config.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let _enter = runtime.enter();
            connection(&broker, &config, stream, peer);
            drop(slot);
        });
    }
}

/// Who is on the other end: the runtime, by its peer credentials.
#[derive(Debug, Clone, Copy)]
struct Peer {
    pid: i64,
    uid: i64,
}

/// The pid of a peer as `SO_PEERCRED` gave it, when there was one.
fn visible_pid(peer: Peer) -> Option<i32> {
    i32::try_from(peer.pid).ok().filter(|&p| p > 0)
}

fn connection(broker: &Arc<Broker>, config: &OciConfig, stream: UnixStream, peer: Peer) {
    let (bytes, mut fds) = match read_message(&stream) {
        Ok(m) => m,
        Err(Refusal { reason, detail }) => return refuse(peer, "", reason, &detail),
    };
    let state = match parse_state(&bytes) {
        Ok(s) => s,
        Err(Refusal { reason, detail }) => return refuse(peer, "", reason, &detail),
    };
    let container = state.state.id.clone();
    if fds.len() != 1 {
        let reason = if fds.is_empty() {
            "no-fd"
        } else {
            "too-many-fds"
        };
        let detail = format!(
            "exactly one fd (the seccomp listener) is needed, got {}",
            fds.len()
        );
        return refuse(peer, &container, reason, &detail);
    }
    let (name, policy) = match choose_policy(config, &state) {
        Ok(p) => p,
        Err(Refusal { reason, detail }) => return refuse(peer, &container, reason, &detail),
    };
    let listener = fds.remove(0);
    let named = (config.policies_dir.as_path(), name.as_str(), policy);
    let uid = u32::try_from(peer.uid).unwrap_or(u32::MAX);
    match broker.register_container_from(&container, (state.pid, uid), named, listener) {
        Ok(id) => audit::container_registered(
            id,
            &container,
            &state.state.status,
            state.pid,
            &name,
            peer.uid,
        ),
        Err(e) => refuse(peer, &container, "not-a-listener", &e.to_string()),
    }
}

/// Why a connection was refused: a short token for the audit and a sentence for people.
#[derive(Debug)]
struct Refusal {
    reason: &'static str,
    detail: String,
}

fn refusal(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

fn refuse(peer: Peer, container: &str, reason: &'static str, detail: &str) {
    audit::container_refused(container, reason, detail, peer.pid, peer.uid);
}

/// Reads one document and the fds that came with it: until the bytes parse as a whole JSON
/// value or the runtime closes, at most [`MAX_STATE_LEN`] bytes within [`READ_TIMEOUT`].
fn read_message(stream: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), Refusal> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&bytes));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| refusal("io", e.to_string()))?;
        let mut space =
            [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_READ))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            stream,
            &mut [IoSliceMut::new(&mut chunk)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        let got = match got {
            Ok(g) => g,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Err(timed_out(&bytes)),
            Err(e) => return Err(refusal("io", format!("read failed: {e}"))),
        };
        if got.flags.contains(ReturnFlags::CTRUNC) {
            // The kernel closed the fds that did not fit: more than anyone needs.
            return Err(refusal(
                "too-many-fds",
                format!("more than {MAX_FDS_PER_READ} fds in one message"),
            ));
        }
        if got.bytes == 0 {
            if bytes.is_empty() {
                return Err(refusal("empty", "closed without sending anything"));
            }
            return Err(refusal(
                "truncated",
                format!(
                    "closed after {} bytes of an unfinished document",
                    bytes.len()
                ),
            ));
        }
        if bytes.len() + got.bytes > MAX_STATE_LEN {
            return Err(refusal(
                "too-long",
                format!("the document is longer than {MAX_STATE_LEN} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk[..got.bytes]);
        match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => return Ok((bytes, fds)),
            Err(e) if e.is_eof() => continue,
            Err(e) => return Err(refusal("bad-json", e.to_string())),
        }
    }
}

fn timed_out(bytes: &[u8]) -> Refusal {
    refusal(
        "timeout",
        format!(
            "no whole document within {} s ({} bytes received)",
            READ_TIMEOUT.as_secs(),
            bytes.len()
        ),
    )
}

/// The "container process state" of the OCI runtime spec (runtime.md, seccomp agent), as far
/// as the broker reads it. Unknown fields are ignored: the spec may grow.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState {
    oci_version: String,
    fds: Vec<String>,
    pid: i32,
    #[serde(default)]
    metadata: String,
    state: ContainerState,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerState {
    #[allow(dead_code)] // read to insist that it is there
    oci_version: String,
    id: String,
    status: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

/// Longest container id accepted (runc allows 1024).
const MAX_ID_LEN: usize = 1024;

fn parse_state(bytes: &[u8]) -> Result<ProcessState, Refusal> {
    let state: ProcessState =
        serde_json::from_slice(bytes).map_err(|e| refusal("bad-state", e.to_string()))?;
    if state.oci_version.is_empty() {
        return Err(refusal("bad-state", "ociVersion is empty"));
    }
    if state.fds != ["seccompFd"] {
        return Err(refusal(
            "bad-state",
            format!("fds must be [\"seccompFd\"], not {:?}", state.fds),
        ));
    }
    let id = &state.state.id;
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(refusal(
            "bad-state",
            "the container id is empty, too long or has control characters",
        ));
    }
    if state.pid <= 0 {
        return Err(refusal(
            "bad-state",
            format!("pid {} is not a process", state.pid),
        ));
    }
    Ok(state)
}

/// The policy named by the bundle: `listenerMetadata` (`policy=NAME [fingerprint=HEX]`), else
/// the annotation [`POLICY_ANNOTATION`], else the configured default. Both naming different
/// policies is a refusal, and so is a fingerprint that is not the policy's: the filter in the
/// kernel was compiled from a different policy than the broker would decide by.
fn choose_policy(config: &OciConfig, state: &ProcessState) -> Result<(String, Policy), Refusal> {
    let meta = Metadata::parse(&state.metadata)?;
    let annotated = state.state.annotations.get(POLICY_ANNOTATION);
    let name = match (&meta.policy, annotated) {
        (Some(m), Some(a)) if m != a => {
            return Err(refusal(
                "policy-conflict",
                format!("listenerMetadata names policy `{m}` but {POLICY_ANNOTATION} names `{a}`"),
            ))
        }
        (Some(m), _) => m.clone(),
        (None, Some(a)) => a.clone(),
        (None, None) => config.default_policy.clone().ok_or_else(|| {
            refusal(
                "no-policy",
                format!(
                    "the bundle names no policy (listenerMetadata policy=NAME or the \
                     annotation {POLICY_ANNOTATION}) and the broker has no default"
                ),
            )
        })?,
    };
    let policy = load_policy(&config.policies_dir, &name)?;
    if let Some(want) = &meta.fingerprint {
        let have = policy.fingerprint();
        if *want != have {
            return Err(refusal(
                "policy-changed",
                format!(
                    "policy `{name}` has fingerprint {have} here but the container's filter was \
                     made from {want}: run `netjail oci patch` again"
                ),
            ));
        }
    }
    Ok((name, policy))
}

/// `listenerMetadata`: `key=value` words separated by spaces. Unknown keys are refused, so
/// that a typo cannot quietly select the default policy.
#[derive(Debug, Default, PartialEq, Eq)]
struct Metadata {
    policy: Option<String>,
    fingerprint: Option<String>,
}

impl Metadata {
    fn parse(text: &str) -> Result<Metadata, Refusal> {
        let mut meta = Metadata::default();
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(refusal(
                    "bad-metadata",
                    format!("listenerMetadata word `{word}` is not key=value"),
                ));
            };
            let slot = match key {
                "policy" => &mut meta.policy,
                "fingerprint" => &mut meta.fingerprint,
                _ => {
                    return Err(refusal(
                        "bad-metadata",
                        format!(
                            "unknown listenerMetadata key `{key}` (known: policy, fingerprint)"
                        ),
                    ))
                }
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(refusal(
                    "bad-metadata",
                    format!("listenerMetadata gives `{key}` twice"),
                ));
            }
        }
        Ok(meta)
    }
}

/// The policy `name` of `dir`, read again for a reload: its error in words.
pub(crate) fn reload_policy(dir: &Path, name: &str) -> Result<Policy, String> {
    load_policy(dir, name).map_err(|r| r.detail)
}

/// A policy by name: a built-in, else `DIR/NAME.toml`. Names are plain words so that they
/// cannot walk out of the directory.
fn load_policy(dir: &Path, name: &str) -> Result<Policy, Refusal> {
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain {
        return Err(refusal(
            "bad-policy-name",
            format!(
                "policy name {name:?} is not a plain name ([A-Za-z0-9._-], not starting with .)"
            ),
        ));
    }
    if let Some(source) = netjail_policy::builtin(name) {
        return Policy::from_toml(source, &format!("builtin:{name}"))
            .map_err(|e| refusal("bad-policy", e.to_string()));
    }
    let path = dir.join(format!("{name}.toml"));
    let source = std::fs::read_to_string(&path).map_err(|e| {
        refusal(
            "unknown-policy",
            format!("no built-in policy `{name}` and {}: {e}", path.display()),
        )
    })?;
    let mut parents = |parent: &str, _from: &str| parent_in(dir, parent);
    Policy::from_toml_with(&source, &path.display().to_string(), &[""; 0], &mut parents)
        .map_err(|e| refusal("bad-policy", e.to_string()))
}

/// An `extends` parent of a policy in `dir`: a file of `dir` itself, named as the client
/// would find it next to the policy (`base.toml`, `./base.toml`); no path leaves `dir`.
fn parent_in(dir: &Path, name: &str) -> Result<(String, String), String> {
    let file = name.strip_prefix("./").unwrap_or(name);
    let plain = !file.is_empty() && !file.starts_with('.') && !file.contains('/');
    if !plain {
        return Err(format!(
            "the broker reads parents from {} only, named by file name (`base.toml`)",
            dir.display()
        ));
    }
    let path = dir.join(file);
    let origin = path.display().to_string();
    std::fs::read_to_string(&path)
        .map(|text| (origin.clone(), text))
        .map_err(|e| format!("reading `{origin}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection from the broker's own process is closed unread at once (without this
    /// check it would be read for up to READ_TIMEOUT and taken for a runtime's).
    #[tokio::test]
    async fn the_broker_itself_is_not_a_runtime() {
        use tokio::io::AsyncReadExt;
        let dir = crate::testing::fresh_dir("oci", "itself");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("oci.sock");
        let listener = bind_oci_socket(&path).unwrap();
        let config = Arc::new(OciConfig {
            policies_dir: dir.clone(),
            default_policy: None,
        });
        let task = tokio::spawn(serve_oci(Broker::new(), listener, config));
        let started = Instant::now();
        let mut conn = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
            .await
            .expect("closed at once")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() < READ_TIMEOUT);
        task.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn state(json: &str) -> Result<ProcessState, Refusal> {
        parse_state(json.as_bytes())
    }

    const RUNC: &str = r#"{"ociVersion":"1.0.2-dev","fds":["seccompFd"],"pid":4242,"metadata":"policy=deny-all","state":{"ociVersion":"1.0.2-dev","id":"web1","status":"creating","pid":4242,"bundle":"/b","annotations":{"x":"y"}}}"#;

    #[test]
    fn m3_parses_a_runc_document() {
        let s = state(RUNC).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.state.id, "web1");
        assert_eq!(s.metadata, "policy=deny-all");
    }

    #[test]
    fn m3_refuses_bad_documents() {
        for (json, why) in [
            (
                r#"{"ociVersion":"1","fds":[],"pid":1,"state":{"ociVersion":"1","id":"a","status":"s"}}"#,
                "fds",
            ),
            (
                r#"{"ociVersion":"1","fds":["seccompFd","x"],"pid":1,"state":{"ociVersion":"1","id":"a","status":"s"}}"#,
                "fds",
            ),
            (
                r#"{"ociVersion":"1","fds":["seccompFd"],"pid":0,"state":{"ociVersion":"1","id":"a","status":"s"}}"#,
                "pid",
            ),
            (
                r#"{"ociVersion":"1","fds":["seccompFd"],"pid":1,"state":{"ociVersion":"1","id":"","status":"s"}}"#,
                "id",
            ),
            (
                r#"{"ociVersion":"1","fds":["seccompFd"],"pid":1,"state":{"ociVersion":"1","id":"a\nb","status":"s"}}"#,
                "id",
            ),
            (r#"{"ociVersion":"1","fds":["seccompFd"],"pid":1}"#, "state"),
            (r#"[1,2]"#, "object"),
        ] {
            let e = state(json).expect_err(why);
            assert_eq!(e.reason, "bad-state", "{why}: {}", e.detail);
        }
    }

    #[test]
    fn m3_metadata_words() {
        assert_eq!(Metadata::parse("").unwrap(), Metadata::default());
        let m = Metadata::parse(" policy=web  fingerprint=00ff ").unwrap();
        assert_eq!(m.policy.as_deref(), Some("web"));
        assert_eq!(m.fingerprint.as_deref(), Some("00ff"));
        assert_eq!(
            Metadata::parse("polcy=web").unwrap_err().reason,
            "bad-metadata"
        );
        assert_eq!(Metadata::parse("web").unwrap_err().reason, "bad-metadata");
        assert_eq!(
            Metadata::parse("policy=a policy=b").unwrap_err().reason,
            "bad-metadata"
        );
    }

    #[test]
    fn m3_policy_names_stay_in_their_directory() {
        let dir = Path::new("/nonexistent-netjail-policies");
        for bad in ["../etc/passwd", "/etc/x", ".hidden", "a/b", "", "a b"] {
            assert_eq!(
                load_policy(dir, bad).unwrap_err().reason,
                "bad-policy-name",
                "{bad}"
            );
        }
        assert_eq!(
            load_policy(dir, "nope").unwrap_err().reason,
            "unknown-policy"
        );
        assert!(load_policy(dir, "deny-all").is_ok());
    }

    #[test]
    fn m3_parents_come_from_the_directory_or_the_built_ins() {
        let dir = std::env::temp_dir().join(format!("netjail-oci-extends-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write(
            "base.toml",
            "name = \"base\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n",
        );
        write("web.toml", "name = \"web\"\nextends = \"./base.toml\"\n");
        write("lo.toml", "name = \"lo\"\nextends = \"loopback-only\"\n");
        write("out.toml", "name = \"out\"\nextends = \"../base.toml\"\n");
        write("abs.toml", "name = \"abs\"\nextends = \"/etc/passwd\"\n");
        let web = load_policy(&dir, "web").unwrap();
        assert!(web.to_toml().contains("tcp://127.0.0.1:22"));
        assert!(load_policy(&dir, "lo").is_ok());
        for escaping in ["out", "abs"] {
            let r = load_policy(&dir, escaping).unwrap_err();
            assert_eq!(r.reason, "bad-policy");
            assert!(r.detail.contains("reads parents from"), "{}", r.detail);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn m3_choice_of_policy() {
        let config = OciConfig {
            policies_dir: PathBuf::from("/nonexistent-netjail-policies"),
            default_policy: None,
        };
        let mut s = state(RUNC).unwrap();
        assert_eq!(choose_policy(&config, &s).unwrap().0, "deny-all");
        s.state
            .annotations
            .insert(POLICY_ANNOTATION.into(), "allow-all".into());
        assert_eq!(
            choose_policy(&config, &s).unwrap_err().reason,
            "policy-conflict"
        );
        s.metadata.clear();
        assert_eq!(choose_policy(&config, &s).unwrap().0, "allow-all");
        s.state.annotations.clear();
        assert_eq!(choose_policy(&config, &s).unwrap_err().reason, "no-policy");
        let config = OciConfig {
            default_policy: Some("loopback-only".into()),
            ..config
        };
        assert_eq!(choose_policy(&config, &s).unwrap().0, "loopback-only");
        s.metadata = "policy=deny-all fingerprint=0000000000000000".into();
        assert_eq!(
            choose_policy(&config, &s).unwrap_err().reason,
            "policy-changed"
        );
        let fp = load_policy(Path::new("/"), "deny-all")
            .unwrap()
            .fingerprint();
        s.metadata = format!("policy=deny-all fingerprint={fp}");
        assert_eq!(choose_policy(&config, &s).unwrap().0, "deny-all");
    }
}
