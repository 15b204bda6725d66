//! The listeners only the broker holds, kept in the service manager's file descriptor store,
//! so that the sandboxes of containers (`--oci-socket`) and of `confine_self` outlive a restart
//! of the broker as those of `netjail run` do (issue 8; `docs/operators.md`, "Restarting the
//! broker").
//!
//! A sandbox that `netjail run` registered comes back by itself: the launcher keeps a copy of
//! the listener and registers it again. A container runtime and a self-confined process hand
//! the broker their only copy, which dies with the broker, and the kernel then fails their
//! calls with `ENOSYS`. When a service manager accepts fds (systemd's `FDSTORE=1`,
//! sd_notify(3); the unit needs `FileDescriptorStoreMax=` above 0), the broker sends it a copy
//! of each such listener under the name `sb-N` (`FDNAME=`), and writes what it needs to serve
//! that sandbox again beside its journal: `sb-N.meta` (JSON, mode 0600, written to a temporary
//! file and renamed over, so that a reader finds the old file or the new one, never half).
//!
//! The service manager hands every stored fd back at each later start of the service, among
//! the fds of `LISTEN_FDS`, named in `LISTEN_FDNAMES`, and keeps them until it is told
//! `FDSTOREREMOVE=1` with the name: a broker that took them back must not store them again.
//! systemd also drops by itself a stored fd that polls `POLLHUP` or `POLLERR` (unless it was
//! stored with `FDPOLL=0`, which the broker does not send): a listener all of whose tasks have
//! exited. When a sandbox ends while the broker runs, the broker removes its fd from the
//! store and its meta file.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netjail_policy::Policy;
use netjail_protocol::SandboxId;
use serde::{Deserialize, Serialize};

use crate::sandbox::PolicySource;
use crate::{daemon::activation, sys, Broker, Comeback, Persist};

/// The version of the meta file's layout.
const META_VERSION: u32 = 1;

/// Where a stored sandbox's policy is read again from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case")]
pub(crate) enum StoredPolicy {
    /// The text the registering client sent, and the origin it named (a file name, for
    /// messages).
    Client {
        /// The policy's TOML text.
        toml: String,
        /// Where the client read it.
        origin: String,
    },
    /// The policy `name` of the OCI agent's policies directory `dir` (or a built-in).
    Directory {
        /// The policies directory.
        dir: PathBuf,
        /// The policy's name there.
        name: String,
    },
}

impl StoredPolicy {
    /// Where a reload reads the policy again.
    pub(crate) fn source(&self) -> PolicySource {
        match self {
            StoredPolicy::Client { .. } => PolicySource::Client,
            StoredPolicy::Directory { dir, name } => PolicySource::Directory {
                dir: dir.clone(),
                name: name.clone(),
            },
        }
    }

    /// The policy, read again: from the client's text, or by name from the directory. The
    /// error names the file, line and column.
    pub(crate) fn load(&self) -> Result<netjail_policy::Policy, String> {
        match self {
            StoredPolicy::Client { toml, origin } => {
                netjail_policy::Policy::from_toml(toml, origin).map_err(|e| e.to_string())
            }
            StoredPolicy::Directory { dir, name } => crate::daemon::oci::reload_policy(dir, name),
        }
    }
}

/// What the broker wrote of a stored sandbox: enough to serve it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// [`META_VERSION`].
    pub version: u32,
    /// The sandbox's id (N of `sb-N`).
    pub sandbox: u64,
    /// Its name.
    pub name: String,
    /// The container's id, for a container.
    pub container: Option<String>,
    /// The confined process's pid.
    pub pid: i32,
    /// Who registered it (the runtime's or the process's uid): the journal is taken over
    /// only for the same user.
    pub uid: u32,
    /// Its policy.
    pub policy: StoredPolicy,
}

/// The name a sandbox's listener has in the store.
pub(crate) fn fd_name(id: SandboxId) -> String {
    format!("sb-{}", id.0)
}

/// The meta files of a state directory, and the messages to the service manager.
#[derive(Debug)]
pub(crate) struct FdStore {
    dir: PathBuf,
}

impl FdStore {
    /// The store whose meta files are in the state directory `dir`.
    pub(crate) fn new(dir: &Path) -> FdStore {
        FdStore {
            dir: dir.to_path_buf(),
        }
    }

    fn meta_path(&self, id: SandboxId) -> PathBuf {
        self.dir.join(format!("sb-{}.meta", id.0))
    }

    /// Writes the meta file of `meta`'s sandbox, then sends `listener` to the service manager
    /// as `sb-N`. The file is removed again if the listener could not be sent.
    pub(crate) fn store(&self, meta: &Meta, listener: BorrowedFd<'_>) -> io::Result<()> {
        let id = SandboxId(meta.sandbox);
        self.write_meta(meta)?;
        let state = format!("FDSTORE=1\nFDNAME={}", fd_name(id));
        match activation::notify_with_fds(&state, &[listener]) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.remove_meta(id);
                Err(io::Error::other("NOTIFY_SOCKET is not set"))
            }
            Err(e) => {
                self.remove_meta(id);
                Err(e)
            }
        }
    }

    /// Tells the service manager to close its copy of `id`'s listener, and removes the meta
    /// file: the sandbox has ended (or cannot be served).
    pub(crate) fn remove(&self, id: SandboxId) {
        let state = format!("FDSTOREREMOVE=1\nFDNAME={}", fd_name(id));
        if let Err(e) = activation::notify_with_fds(&state, &[]) {
            tracing::warn!(sandbox = %id, error = %e, "cannot remove the listener from the service manager's store");
        }
        self.remove_meta(id);
    }

    fn remove_meta(&self, id: SandboxId) {
        let path = self.meta_path(id);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), error = %e, "cannot remove the meta file");
            }
        }
    }

    /// Writes `meta` to a temporary file (mode 0600) and renames it over `sb-N.meta`.
    fn write_meta(&self, meta: &Meta) -> io::Result<()> {
        let path = self.meta_path(SandboxId(meta.sandbox));
        let temp = self.dir.join(format!("sb-{}.meta.tmp", meta.sandbox));
        let text = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)?;
        let written = file.write_all(&text).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &path)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(())
    }

    /// The meta file of sandbox `id`: the reason in words when it is missing or unreadable.
    pub(crate) fn read_meta(&self, id: SandboxId) -> Result<Meta, String> {
        let path = self.meta_path(id);
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta: Meta =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.version != META_VERSION || meta.sandbox != id.0 {
            return Err(format!(
                "{} is not the meta file of {id} (version {}, sandbox {})",
                path.display(),
                meta.version,
                meta.sandbox
            ));
        }
        Ok(meta)
    }

    /// Removes the meta files (and their journals) of sandboxes whose listener did not come
    /// back from the service manager: nobody can serve them any more. Returns how many.
    pub(crate) fn remove_others(&self, kept: &[SandboxId]) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".meta"))
                .and_then(activation::stored_id)
            else {
                continue;
            };
            if kept.contains(&SandboxId(id)) {
                continue;
            }
            let _ = std::fs::remove_file(entry.path());
            let _ = std::fs::remove_file(self.dir.join(format!("sb-{id}.journal")));
            removed += 1;
        }
        removed
    }
}

impl Meta {
    /// The meta of a sandbox registered now.
    pub(crate) fn new(
        id: SandboxId,
        (name, container): (&str, Option<&str>),
        pid: i32,
        uid: u32,
        policy: StoredPolicy,
    ) -> Meta {
        Meta {
            version: META_VERSION,
            sandbox: id.0,
            name: name.to_string(),
            container: container.map(str::to_string),
            pid,
            uid,
            policy,
        }
    }
}

/// What [`Broker::take_back_stored`] did with the listeners the service manager handed back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakenBack {
    /// Sandboxes served again, under their earlier ids.
    pub served: usize,
    /// Of those, sandboxes whose policy no longer parses: every call they make is refused.
    pub denying: usize,
    /// Fds refused and closed: not a seccomp listener, a second fd under one name, or a
    /// listener without its meta file.
    pub refused: usize,
    /// Meta files removed because their listener did not come back.
    pub forgotten: usize,
}

/// The policy a stored sandbox is served with when its own no longer parses: every call is
/// refused with `EPERM`.
fn deny_all() -> Policy {
    let text = netjail_policy::builtin("deny-all").expect("deny-all is a built-in");
    Policy::from_toml(text, "builtin:deny-all").expect("built-ins parse")
}

impl Broker {
    /// Sends the listener of the sandbox `meta` describes to the service manager's store;
    /// false (logged) when the broker does not store listeners or the store refused it.
    pub(crate) fn store_listener(&self, meta: &Meta, listener: BorrowedFd<'_>) -> bool {
        let Some(store) = self.fd_store.get() else {
            return false;
        };
        let id = SandboxId(meta.sandbox);
        match store.store(meta, listener) {
            Ok(()) => {
                tracing::info!(sandbox = %id, fdname = %fd_name(id), "listener kept in the service manager's fd store");
                true
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "cannot keep the listener in the service manager's fd store: if the broker stops, the sandbox's calls fail with ENOSYS");
                false
            }
        }
    }

    /// Serves again the sandboxes whose listeners the service manager handed back from its
    /// file descriptor store (`LISTEN_FDNAMES` `sb-N`; `Inherited::take_stored` in `daemon/activation.rs`):
    /// each under its earlier id, with the policy of its meta file read again, and the calls
    /// its journal recorded that still wait decided again. Call it after
    /// [`Broker::keep_journals`] and before serving the registration socket.
    ///
    /// An fd that is not a seccomp listener is refused, logged and closed; so is a listener
    /// without its meta file (its calls then fail with `ENOSYS` once the service manager's
    /// copy goes: fail closed). Both are removed from the store (`FDSTOREREMOVE=1`). A policy
    /// that no longer parses is logged with its file, line and column, and the sandbox is
    /// served with `deny-all`: every call it makes is refused with `EPERM` until the policy is
    /// mended and the broker restarted, or the sandbox restarted. The listeners taken back
    /// are not stored again: the store keeps them until they are removed.
    pub fn take_back_stored(self: &Arc<Self>, fds: Vec<(String, OwnedFd)>) -> TakenBack {
        let mut report = TakenBack::default();
        let Some(state) = self.state.get() else {
            for (name, fd) in fds {
                tracing::error!(fdname = %name, kind = %sys::fd_kind(fd.as_fd()), "a stored listener cannot be served without the state directory (its meta file is there): closed");
                let _ = activation::notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"));
                report.refused += 1;
            }
            return report;
        };
        let store = FdStore::new(state.dir());
        let mut served: Vec<SandboxId> = Vec::new();
        let mut refused: Vec<SandboxId> = Vec::new();
        for (name, fd) in fds {
            let Some(id) = activation::stored_id(&name).map(SandboxId) else {
                continue;
            };
            let kind = sys::fd_kind(fd.as_fd());
            if kind != sys::SECCOMP_LISTENER_KIND {
                tracing::error!(fdname = %name, kind = %kind, "an fd the service manager handed back is not a seccomp listener: refused and closed");
                report.refused += 1;
                refused.push(id);
                continue;
            }
            if served.contains(&id) {
                tracing::error!(fdname = %name, "a second listener stored under one name: refused and closed");
                report.refused += 1;
                continue;
            }
            let meta = match store.read_meta(id) {
                Ok(m) => m,
                Err(why) => {
                    tracing::error!(fdname = %name, reason = %why, "a stored listener without its meta file cannot be served: closed (its calls fail with ENOSYS)");
                    report.refused += 1;
                    refused.push(id);
                    continue;
                }
            };
            let (policy, source, denying) = match meta.policy.load() {
                Ok(p) => (p, meta.policy.source(), false),
                Err(e) => {
                    tracing::error!(sandbox = %id, name = %meta.name, error = %e, "the policy of a stored sandbox no longer parses: every call it makes is refused (deny-all) until the policy is mended and the broker restarted");
                    (deny_all(), PolicySource::Client, true)
                }
            };
            let persist = Persist {
                uid: meta.uid,
                previous: Some(id),
                comeback: Comeback::FromStore,
            };
            let added = self.add(
                &meta.name,
                meta.container.as_deref(),
                meta.pid,
                policy,
                source,
                fd,
                Some(persist),
                Some(meta.uid),
            );
            match added {
                Ok((got, waiting)) => {
                    tracing::info!(sandbox = %got, name = %meta.name, pid = meta.pid, waiting, "sandbox taken back from the service manager's fd store");
                    served.push(got);
                    report.served += 1;
                    report.denying += usize::from(denying);
                }
                Err(e) => {
                    tracing::error!(sandbox = %id, error = %e, "cannot serve a stored listener: closed");
                    report.refused += 1;
                    refused.push(id);
                }
            }
        }
        for id in refused.iter().filter(|id| !served.contains(id)) {
            store.remove(*id);
        }
        report.forgotten = store.remove_others(&served);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = crate::testing::fresh_dir("fdstore", tag);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn meta_files_round_trip_with_mode_0600() {
        let dir = temp_dir("round");
        let store = FdStore::new(&dir);
        let client = Meta::new(
            SandboxId(4),
            ("zygote", None),
            1234,
            1000,
            StoredPolicy::Client {
                toml: "name = \"z\"\ndefault = \"deny\"\n".into(),
                origin: "z.toml".into(),
            },
        );
        let container = Meta::new(
            SandboxId(5),
            ("c1", Some("c1")),
            99,
            0,
            StoredPolicy::Directory {
                dir: "/etc/netjail/policies".into(),
                name: "web".into(),
            },
        );
        for meta in [&client, &container] {
            store.write_meta(meta).unwrap();
            assert_eq!(&store.read_meta(SandboxId(meta.sandbox)).unwrap(), meta);
        }
        let mode = std::fs::metadata(dir.join("sb-4.meta"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.join("sb-4.meta.tmp").exists());
        // Written again: replaced whole.
        let mut moved = client.clone();
        moved.pid = 4321;
        store.write_meta(&moved).unwrap();
        assert_eq!(store.read_meta(SandboxId(4)).unwrap().pid, 4321);
        assert_eq!(
            client.policy.load().unwrap().name(),
            "z",
            "the client's text parses again"
        );
        assert_eq!(client.policy.source(), PolicySource::Client);
        // A meta file under another sandbox's name, and one that is not JSON, are refused.
        std::fs::copy(dir.join("sb-4.meta"), dir.join("sb-6.meta")).unwrap();
        let err = store.read_meta(SandboxId(6)).unwrap_err();
        assert!(err.contains("is not the meta file of sb-6"), "{err}");
        std::fs::write(dir.join("sb-7.meta"), "{").unwrap();
        assert!(store.read_meta(SandboxId(7)).is_err());
        assert!(store
            .read_meta(SandboxId(8))
            .unwrap_err()
            .contains("sb-8.meta"));
        // Only the kept ones stay.
        assert_eq!(store.remove_others(&[SandboxId(4), SandboxId(5)]), 2);
        assert!(dir.join("sb-4.meta").exists() && dir.join("sb-5.meta").exists());
        assert!(!dir.join("sb-6.meta").exists() && !dir.join("sb-7.meta").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_policy_that_no_longer_parses_says_where() {
        let bad = StoredPolicy::Client {
            toml: "name = \"z\"\ndefault = \"sometimes\"\n".into(),
            origin: "zygote.toml".into(),
        };
        let err = bad.load().unwrap_err();
        assert!(err.contains("zygote.toml:2:"), "{err}");
    }
}
