//! Hot reload (`netjail reload`, SIGHUP to `netjaild`): the policy files the broker reads are
//! read again, and what parses is put in force for the sandboxes' next calls.
//!
//! Two kinds of files are read again: the overlay (operators' `--always` rules, one file per
//! scope) and the OCI agent's policies (`--policies DIR`) that running containers were
//! registered with. Each file is checked before anything changes and applied whole or not at
//! all: a file with a mistake is reported with its file, line and column and its old rules
//! stay; the other files apply.
//!
//! A running sandbox's seccomp filter was compiled from its policy when it started and cannot
//! change; nor can the counters of its `[limits]`. A policy whose `[sockets]`, confinement
//! keys, `[limits]` or name differ from the running one is refused for that sandbox, which
//! keeps the old policy until it is restarted. Sandboxes registered by `netjail run` or a
//! library carry the policy text their client sent (the broker never reads the client's
//! files): a reload cannot read them again, and says so.
//!
//! The hosts file is not part of a reload: the resolver reads it again whenever it changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netjail_protocol::control::{ReloadItem, ReloadOutcome};

use crate::sandbox::{PolicySource, Sandbox};
use crate::{daemon::oci, Broker};

/// Most sandbox ids named in the one item about sandboxes whose policy came from their client.
const MAX_NAMED: usize = 10;

impl Broker {
    /// Reads the overlay and the policies of running containers again and puts what parses,
    /// and what each running sandbox can take, in force for the next calls. One item per
    /// file or sandbox concerned, in words for operators.
    pub fn reload(&self) -> Vec<ReloadItem> {
        let mut out = self.operators.reload_overlay();
        let sandboxes = self.sandboxes_by_id();
        let mut by_file: BTreeMap<(PathBuf, String), Vec<Arc<Sandbox>>> = BTreeMap::new();
        let mut from_client = Vec::new();
        for s in sandboxes {
            match &s.source {
                PolicySource::Client | PolicySource::Owner => from_client.push(s),
                PolicySource::Directory { dir, name } => by_file
                    .entry((dir.clone(), name.clone()))
                    .or_default()
                    .push(s),
            }
        }
        for ((dir, name), sandboxes) in by_file {
            self.reload_file(&dir, &name, sandboxes, &mut out);
        }
        if !from_client.is_empty() {
            out.push(not_reloadable(&from_client));
        }
        out
    }

    /// Reads one policy file of the OCI agent again and offers it to each running sandbox
    /// registered with it: one item for the file if it does not parse (its sandboxes keep the
    /// old policy), else one item per sandbox. The host names of the new policy are looked up
    /// ahead once, when a first sandbox takes it.
    fn reload_file(
        &self,
        dir: &Path,
        name: &str,
        sandboxes: Vec<Arc<Sandbox>>,
        out: &mut Vec<ReloadItem>,
    ) {
        let subject = format!(
            "policy {name} ({})",
            dir.join(format!("{name}.toml")).display()
        );
        let policy = match oci::reload_policy(dir, name) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "policy rejected by the reload");
                out.push(ReloadItem {
                    subject,
                    outcome: ReloadOutcome::Rejected,
                    detail: format!("{e}; its {} sandboxes keep the old policy", sandboxes.len()),
                });
                return;
            }
        };
        let mut prefetched = false;
        for s in sandboxes {
            let subject = format!("sandbox {} ({}): {subject}", s.id, s.name);
            let (outcome, detail) = match s.replace_policy(policy.clone()) {
                Ok(true) => {
                    if !prefetched {
                        self.prefetch(&policy);
                        prefetched = true;
                    }
                    tracing::info!(sandbox = %s.id, policy = %name, "policy reloaded");
                    (ReloadOutcome::Reloaded, String::new())
                }
                Ok(false) => (ReloadOutcome::Unchanged, String::new()),
                Err(why) => {
                    tracing::warn!(sandbox = %s.id, policy = %name, reason = %why, "reload refused for a sandbox");
                    (
                        ReloadOutcome::Refused,
                        format!("{why}; it keeps the old policy"),
                    )
                }
            };
            out.push(ReloadItem {
                subject,
                outcome,
                detail,
            });
        }
    }
}

/// The one item about the sandboxes whose policy is the text their client sent: the first
/// `MAX_NAMED` of them by id, and how many more.
fn not_reloadable(from_client: &[Arc<Sandbox>]) -> ReloadItem {
    let mut ids: Vec<String> = from_client
        .iter()
        .take(MAX_NAMED)
        .map(|s| format!("{} ({})", s.id, s.name))
        .collect();
    if from_client.len() > MAX_NAMED {
        ids.push(format!("and {} more", from_client.len() - MAX_NAMED));
    }
    ReloadItem {
        subject: format!("sandboxes {}", ids.join(", ")),
        outcome: ReloadOutcome::NotReloadable,
        detail: "their policy is the text their client (`netjail run`, a library) sent \
                 when they registered, which the broker cannot read again: restart them \
                 to change it (operators' rules in the overlay do apply to them)"
            .into(),
    }
}
