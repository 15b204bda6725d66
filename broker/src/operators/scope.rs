//! Whom an operator's rule covers: one sandbox, a policy (of one user, L5), or a container; and
//! the sandbox a held call comes from, as operators see it ([`Asking`]).

use std::sync::Arc;

use netjail_policy::Policy;
use netjail_protocol::SandboxId;

use crate::operators::overlay::ScopeKey;

/// Whom a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scope {
    Sandbox(SandboxId),
    Policy(PolicyKey),
    Container(String),
}

/// The sandbox a held call comes from, as operators see it and their rules name it (the
/// sandbox hands it over: `Sandbox::asking`).
#[derive(Debug, Clone)]
pub(crate) struct Asking<'a> {
    pub id: SandboxId,
    /// The name given at registration.
    pub name: &'a str,
    /// The OCI container id, for a sandbox a container runtime registered.
    pub container: Option<&'a str>,
    /// The policy the call was decided by.
    pub policy: Arc<Policy>,
    /// The user other than the administrator that registered the policy (L5).
    pub tenant: Option<u32>,
    /// The policy's `[limits] max_pending`.
    pub max_pending: Option<usize>,
}

/// A policy as operators' rules name it: by its name, and for a policy that a user other
/// than the administrator registered, by that user too (L5). The name is the registering
/// client's choice, so a rule made for one user's policy must never cover another user's
/// policy of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PolicyKey {
    name: String,
    tenant: Option<u32>,
}

impl PolicyKey {
    pub(super) fn of(sandbox: &Asking<'_>) -> PolicyKey {
        PolicyKey {
            name: sandbox.policy.name().to_string(),
            tenant: sandbox.tenant,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self.tenant {
            None => format!("policy {}", self.name),
            Some(uid) => format!("policy {} of uid {uid}", self.name),
        }
    }

    /// Its overlay file's scope.
    pub(super) fn scope_key(&self) -> ScopeKey {
        match self.tenant {
            None => ScopeKey::Policy(self.name.clone()),
            Some(uid) => ScopeKey::UserPolicy {
                uid,
                name: self.name.clone(),
            },
        }
    }
}

impl Scope {
    pub(super) fn covers(&self, sandbox: &Asking<'_>) -> bool {
        match self {
            Scope::Sandbox(id) => *id == sandbox.id,
            Scope::Policy(key) => *key == PolicyKey::of(sandbox),
            Scope::Container(id) => sandbox.container == Some(id.as_str()),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Scope::Sandbox(id) => format!("sandbox {id}"),
            Scope::Policy(key) => key.describe(),
            Scope::Container(id) => format!("container {id}"),
        }
    }
}
