//! What a broker has registered, for the checks a new registration must pass (invariant 3 and
//! 7): each seccomp listener is registered once, and each user registers at most so many
//! sandboxes.
//!
//! Two receivers on one listener would each answer some of its calls, the second one by a
//! policy of whoever registered it again. A listener is told apart by its open file, which
//! every copy of the fd shares: the broker's sandboxes are kept in the order `kcmp(KCMP_FILE)`
//! gives their listeners' files, and a new listener is looked up by a binary search, about
//! 14 `kcmp` calls among 10,000 sandboxes. A kernel without `kcmp` cannot tell, and then no
//! listener is registered (fail closed).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use netjail_protocol::SandboxId;

use crate::sandbox::Sandbox;
use crate::sys;

/// Sandboxes one user may have registered at once unless the broker is told otherwise
/// ([`crate::Broker::max_sandboxes_per_user`]); root is not counted.
pub const DEFAULT_MAX_SANDBOXES_PER_USER: usize = 1024;

/// The registered sandboxes of one broker by listener, and their count by user.
#[derive(Default)]
pub(crate) struct Registry {
    /// In the order of their listeners' files.
    by_listener: Vec<Arc<Sandbox>>,
    per_owner: HashMap<u32, usize>,
}

impl Registry {
    /// Where `listener` would go: `Ok(index)`, or `Err(id)` when the sandbox `id` has it
    /// registered already.
    ///
    /// # Errors
    /// When `kcmp` fails (`ENOSYS` on a kernel without it).
    pub(crate) fn position(
        &self,
        listener: BorrowedFd<'_>,
    ) -> io::Result<Result<usize, SandboxId>> {
        Ok(self
            .search(listener)?
            .map_err(|index| self.by_listener[index].id))
    }

    /// A binary search by `kcmp`: `Ok(index)` where `listener` would go, `Err(index)` of the
    /// sandbox that has it.
    fn search(&self, listener: BorrowedFd<'_>) -> io::Result<Result<usize, usize>> {
        let (mut low, mut high) = (0, self.by_listener.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match sys::kcmp_files(listener, self.by_listener[mid].listener.as_fd())? {
                Ordering::Equal => return Ok(Err(mid)),
                Ordering::Less => high = mid,
                Ordering::Greater => low = mid + 1,
            }
        }
        Ok(Ok(low))
    }

    /// Records `sandbox` at the `index` [`Registry::position`] gave for its listener.
    pub(crate) fn insert(&mut self, index: usize, sandbox: Arc<Sandbox>) {
        if let Some(uid) = sandbox.owner {
            *self.per_owner.entry(uid).or_default() += 1;
        }
        self.by_listener.insert(index, sandbox);
    }

    /// Forgets `sandbox` (its listener is still open: the caller holds it).
    pub(crate) fn remove(&mut self, sandbox: &Sandbox) {
        let index = match self.search(sandbox.listener.as_fd()) {
            Ok(Err(i)) if self.by_listener[i].id == sandbox.id => Some(i),
            // Not where the order says (kcmp failed): look everywhere.
            _ => self.by_listener.iter().position(|s| s.id == sandbox.id),
        };
        let Some(index) = index else { return };
        self.by_listener.remove(index);
        if let Some(uid) = sandbox.owner {
            if let Some(n) = self.per_owner.get_mut(&uid) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_owner.remove(&uid);
                }
            }
        }
    }

    /// Sandboxes user `uid` has registered now.
    pub(crate) fn owned_by(&self, uid: u32) -> usize {
        self.per_owner.get(&uid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn files(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect()
    }

    #[test]
    fn kcmp_orders_files_and_knows_copies() {
        let f = files(2);
        let copy = f[0].try_clone().unwrap();
        assert_eq!(
            sys::kcmp_files(f[0].as_fd(), copy.as_fd()).unwrap(),
            Ordering::Equal
        );
        let ab = sys::kcmp_files(f[0].as_fd(), f[1].as_fd()).unwrap();
        let ba = sys::kcmp_files(f[1].as_fd(), f[0].as_fd()).unwrap();
        assert_ne!(ab, Ordering::Equal);
        assert_eq!(ab, ba.reverse());
    }
}
