//! The journal of a sandbox: the calls its broker has received and not answered yet, kept in a
//! small file of the broker's state directory, so that a broker started after this one stopped
//! or crashed can decide them (issue 8, restart without loss).
//!
//! Why a journal: once a broker has received a notification (`NOTIF_RECV`), the kernel marks
//! it sent and never hands it to anyone again; with `WAIT_KILLABLE_RECV` its caller waits until
//! it is answered or killed. A client that kept its own copy of the listener can register it
//! again with a new broker, but `NOTIF_ID_VALID` only says whether an id is still waiting: what
//! the call was (its thread, system call and arguments) is known only to the broker that
//! received it. So the receiver makes the kernel write each notification straight into slot 0
//! of a memory-mapped file ([`crate::sys::notif_recv_into`]): when the ioctl returns, the call
//! is on record, and a `SIGKILL` at any later instant loses nothing. A call that moves to the
//! blocking pool is copied into a slot of its own before the receiver takes the next one, and
//! that slot is cleared once the call is answered.
//!
//! A broker that is handed the same listener again ([`netjail_protocol::RegisterAgain`]) opens
//! the journal by the sandbox's earlier id and decides again every recorded call whose id is
//! still waiting on that listener (`NOTIF_ID_VALID`); the others were answered. The ids of a
//! listener start at a random 64-bit number and never repeat, so a record cannot match a call
//! of another listener. The file is the broker's own (mode 0600 in a directory of mode 0700);
//! the client never reads or writes it, and the broker takes it over only for the same pid and
//! the same user (or root) as before.
//!
//! Layout: a 64-byte header (`NJJRNL01`, the sandbox id, its pid, the registering user, the
//! number of slots), then [`SLOTS`] slots of one `struct seccomp_notif` each.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use netjail_protocol::SandboxId;

use crate::bounds::MAX_IN_FLIGHT;
use crate::sys::{self, RawNotification, SharedMap};

const MAGIC: [u8; 8] = *b"NJJRNL01";
const HEADER_LEN: usize = 64;
const SLOT_LEN: usize = std::mem::size_of::<libc::seccomp_notif>();
/// Slot 0 is the receiver's; the others hold calls on the blocking pool, of which a sandbox
/// has at most [`MAX_IN_FLIGHT`].
pub(crate) const SLOTS: usize = 1 + MAX_IN_FLIGHT;
/// The file's size: header and slots, rounded up to whole pages (8 KiB).
const FILE_LEN: usize = (HEADER_LEN + SLOTS * SLOT_LEN).div_ceil(4096) * 4096;

/// The broker's state directory, where the journals are.
#[derive(Debug)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

/// What [`StateDir::open`] found of an earlier broker.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// Journals kept for sandboxes whose process still runs.
    pub kept: usize,
    /// Journals removed, their process gone.
    pub removed: usize,
    /// The highest sandbox id among the kept journals.
    pub highest: u64,
}

impl StateDir {
    /// Makes `dir` (mode 0700) if needed and looks at the journals an earlier broker left:
    /// those of processes that are gone are removed.
    pub(crate) fn open(dir: &Path) -> io::Result<(StateDir, Found)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::symlink_metadata(dir)?;
        let euid = sys::geteuid();
        if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o077 != 0 {
            return Err(io::Error::other(format!(
                "{} must be a directory of uid {euid} that nobody else may read or write \
                 (it is mode {:o}, uid {})",
                dir.display(),
                meta.mode() & 0o7777,
                meta.uid()
            )));
        }
        let mut found = Found::default();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(journal_id) else {
                continue;
            };
            let path = entry.path();
            let alive = read_header(&path)
                .map(|h| sys::process_exists(h.pid))
                .unwrap_or(false);
            if alive {
                found.kept += 1;
                found.highest = found.highest.max(id);
            } else {
                let _ = std::fs::remove_file(&path);
                found.removed += 1;
            }
        }
        Ok((
            StateDir {
                dir: dir.to_path_buf(),
            },
            found,
        ))
    }

    fn path(&self, id: SandboxId) -> PathBuf {
        self.dir.join(format!("sb-{}.journal", id.0))
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty journal for sandbox `id`.
    pub(crate) fn create(&self, id: SandboxId, pid: i32, uid: u32) -> io::Result<Arc<Journal>> {
        let path = self.path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        file.set_len(FILE_LEN as u64)?;
        let journal = Journal::map(&file, path)?;
        journal.write_header(id, pid, uid);
        journal
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(1..SLOTS as u16);
        Ok(Arc::new(journal))
    }

    /// Takes over the journal an earlier broker kept for sandbox `previous`, registered again
    /// with `listener` for process `pid` by user `uid`: returns it with the calls it recorded
    /// that still wait on `listener`, each in a pool slot of its own. Refused, with the
    /// reason, when there is no such journal or it was made for another process or user.
    pub(crate) fn adopt(
        &self,
        previous: SandboxId,
        pid: i32,
        uid: u32,
        listener: BorrowedFd<'_>,
    ) -> Result<(Arc<Journal>, Vec<Waiting>), String> {
        let journal = self.open_for(previous, pid, uid)?;
        // What still waits: ids the listener knows. Everything else is cleared; a call found
        // in the receiver's slot moves to a free pool slot.
        // A call moved to the pool may also still be in the receiver's slot (a kill between
        // the copy and the clear): each id counts once, the pool slot's copy first.
        let mut waiting: Vec<(usize, RawNotification)> = Vec::new();
        let mut free = Vec::new();
        for slot in (0..SLOTS).rev() {
            let notif = journal.read(slot);
            let seen = waiting.iter().any(|(_, w)| w.id == notif.id);
            if notif.id != 0 && !seen && sys::notif_id_valid(listener, notif.id) {
                waiting.push((slot, notif));
            } else {
                journal.clear(slot);
                if slot != 0 {
                    free.push(slot as u16);
                }
            }
        }
        let journal = Arc::new(journal);
        let mut calls = Vec::with_capacity(waiting.len());
        for (slot, notif) in waiting {
            let slot = if slot == 0 {
                let Some(to) = free.pop() else {
                    // Every pool slot is taken: impossible with at most MAX_IN_FLIGHT calls
                    // on the pool; the call stays in slot 0 and is decided from there.
                    calls.push((notif, Kept::at(&journal, 0)));
                    continue;
                };
                journal.write(to as usize, &notif);
                journal.clear(0);
                to
            } else {
                slot as u16
            };
            calls.push((notif, Kept::at(&journal, slot)));
        }
        *journal.free.lock().unwrap_or_else(|p| p.into_inner()) = free;
        Ok((journal, calls))
    }

    /// Maps the journal of `previous`, once checked to be this broker's, for that sandbox,
    /// for the process `pid` and (unless root asks) made for `uid`.
    fn open_for(&self, previous: SandboxId, pid: i32, uid: u32) -> Result<Journal, String> {
        let path = self.path(previous);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| format!("no journal of {previous}: {e}"))?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        let euid = sys::geteuid();
        if !meta.is_file() || meta.uid() != euid || meta.len() != FILE_LEN as u64 {
            return Err(format!(
                "{} is not a journal of this broker",
                path.display()
            ));
        }
        let journal = Journal::map(&file, path)
            .map_err(|e| format!("cannot map the journal of {previous}: {e}"))?;
        let header = journal.header();
        if header.magic != MAGIC || header.slots as usize != SLOTS || header.sandbox != previous.0 {
            return Err(format!(
                "{} is not a journal of {previous}",
                journal.path.display()
            ));
        }
        if header.pid != pid {
            return Err(format!(
                "the journal of {previous} is for pid {}, not {pid}",
                header.pid
            ));
        }
        if uid != 0 && header.uid != uid {
            return Err(format!(
                "the journal of {previous} was made for uid {}, not {uid}",
                header.uid
            ));
        }
        Ok(journal)
    }
}

/// The name `sb-N.journal` gives N.
fn journal_id(name: &str) -> Option<u64> {
    name.strip_prefix("sb-")?
        .strip_suffix(".journal")?
        .parse()
        .ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    magic: [u8; 8],
    sandbox: u64,
    pid: i32,
    uid: u32,
    slots: u32,
}

impl Header {
    fn parse(b: &[u8]) -> Header {
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        Header {
            magic: b[0..8].try_into().expect("8 bytes"),
            sandbox: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            pid: u32_at(16) as i32,
            uid: u32_at(20),
            slots: u32_at(24),
        }
    }
}

fn read_header(path: &Path) -> io::Result<Header> {
    use std::io::Read;
    let mut b = [0u8; HEADER_LEN];
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.read_exact(&mut b)?;
    Ok(Header::parse(&b))
}

/// A sandbox's journal, mapped into the broker.
#[derive(Debug)]
pub(crate) struct Journal {
    map: SharedMap,
    path: PathBuf,
    /// Pool slots not in use.
    free: Mutex<Vec<u16>>,
}

impl Journal {
    fn map(file: &File, path: PathBuf) -> io::Result<Journal> {
        Ok(Journal {
            map: SharedMap::new(file.as_fd(), FILE_LEN)?,
            path,
            free: Mutex::new(Vec::new()),
        })
    }

    fn header(&self) -> Header {
        let mut b = [0u8; HEADER_LEN];
        self.map.read_bytes(0, &mut b);
        Header::parse(&b)
    }

    fn write_header(&self, id: SandboxId, pid: i32, uid: u32) {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..16].copy_from_slice(&id.0.to_le_bytes());
        b[16..20].copy_from_slice(&pid.to_le_bytes());
        b[20..24].copy_from_slice(&uid.to_le_bytes());
        b[24..28].copy_from_slice(&(SLOTS as u32).to_le_bytes());
        self.map.write_bytes(0, &b);
    }

    /// Where slot `i` is (the header keeps slots 8-byte aligned).
    fn offset(i: usize) -> usize {
        assert!(i < SLOTS, "journal slot {i} out of range");
        HEADER_LEN + i * SLOT_LEN
    }

    /// Receives the next notification of `listener` into the receiver's slot (only the
    /// receiver thread calls this).
    pub(crate) fn receive(&self, listener: BorrowedFd<'_>) -> io::Result<RawNotification> {
        self.map.notif_recv_into(listener, Journal::offset(0))
    }

    fn read(&self, i: usize) -> RawNotification {
        self.map.read_notif(Journal::offset(i))
    }

    fn write(&self, i: usize, notif: &RawNotification) {
        self.map.write_notif(Journal::offset(i), notif);
    }

    fn clear(&self, i: usize) {
        self.map.clear_notif(Journal::offset(i));
    }

    /// Records `notif` in a free pool slot until the returned [`Kept`] is dropped (after the
    /// call is answered). `None` when every pool slot is taken, which the in-flight bound
    /// prevents; the call is then on record only in the receiver's slot, until the next one.
    pub(crate) fn keep(self: &Arc<Self>, notif: &RawNotification) -> Option<Kept> {
        let slot = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        self.write(slot as usize, notif);
        Some(Kept::at(self, slot))
    }

    /// Clears the receiver's slot, once its call is on record in a pool slot (only the
    /// receiver thread calls this).
    pub(crate) fn clear_receiver(&self) {
        self.clear(0);
    }

    /// Removes the file: the sandbox has ended, nothing of it can be waiting.
    pub(crate) fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remove the journal");
        }
    }
}

/// A call an earlier broker had received and not answered, with its record in the journal.
pub(crate) type Waiting = (RawNotification, Kept);

/// A call on record in a slot of the journal; dropping it clears the slot.
#[derive(Debug)]
pub(crate) struct Kept {
    journal: Arc<Journal>,
    slot: u16,
}

impl Kept {
    fn at(journal: &Arc<Journal>, slot: u16) -> Kept {
        Kept {
            journal: journal.clone(),
            slot,
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.journal.clear(self.slot as usize);
        if self.slot != 0 {
            self.journal
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn temp_dir(tag: &str) -> PathBuf {
        crate::testing::fresh_dir("journal", tag)
    }

    fn notif(id: u64) -> RawNotification {
        RawNotification {
            id,
            pid: 77,
            nr: 42,
            arch: 0xc000_003e,
            args: [1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn names_give_ids() {
        assert_eq!(journal_id("sb-12.journal"), Some(12));
        assert_eq!(journal_id("sb-.journal"), None);
        assert_eq!(journal_id("sb-1.journal.tmp"), None);
        assert_eq!(journal_id("xb-1.journal"), None);
    }

    #[test]
    fn a_state_dir_others_may_read_is_refused() {
        let dir = temp_dir("mode");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let err = StateDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("nobody else may read or write"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn journals_of_live_processes_are_kept_and_others_removed() {
        let dir = temp_dir("found");
        let (state, found) = StateDir::open(&dir).unwrap();
        assert_eq!(found, Found::default());
        let me = std::process::id() as i32;
        drop(state.create(SandboxId(9), me, 0).unwrap());
        // A pid no process has: above the kernel's largest.
        drop(state.create(SandboxId(11), i32::MAX, 0).unwrap());
        let (_, found) = StateDir::open(&dir).unwrap();
        assert_eq!(
            found,
            Found {
                kept: 1,
                removed: 1,
                highest: 9
            }
        );
        assert!(dir.join("sb-9.journal").exists());
        assert!(!dir.join("sb-11.journal").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kept_calls_take_pool_slots_and_give_them_back() {
        let dir = temp_dir("keep");
        let (state, _) = StateDir::open(&dir).unwrap();
        let journal = state.create(SandboxId(1), 5, 0).unwrap();
        let kept: Vec<Kept> = (1..=MAX_IN_FLIGHT as u64)
            .map(|id| journal.keep(&notif(id)).expect("a free slot"))
            .collect();
        assert!(
            journal.keep(&notif(999)).is_none(),
            "every pool slot is taken"
        );
        let slot = kept[3].slot as usize;
        let got = journal.read(slot);
        assert_eq!(
            (got.id, got.pid, got.nr, got.arch, got.args),
            (4, 77, 42, 0xc000_003e, [1, 2, 3, 4, 5, 6])
        );
        drop(kept);
        assert_eq!(journal.read(slot).id, 0, "cleared on drop");
        assert!(journal.keep(&notif(1000)).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_is_taken_over_only_for_its_pid_and_user() {
        let dir = temp_dir("adopt");
        let (state, _) = StateDir::open(&dir).unwrap();
        let journal = state.create(SandboxId(3), 4242, 1000).unwrap();
        let _kept = journal.keep(&notif(7)).unwrap();
        // Not a listener: no id is valid there, so nothing waits.
        let devnull = File::open("/dev/null").unwrap();
        let fd = devnull.as_fd();
        let err = state.adopt(SandboxId(4), 4242, 1000, fd).unwrap_err();
        assert!(err.starts_with("no journal of sb-4"), "{err}");
        let err = state.adopt(SandboxId(3), 4243, 1000, fd).unwrap_err();
        assert_eq!(err, "the journal of sb-3 is for pid 4242, not 4243");
        let err = state.adopt(SandboxId(3), 4242, 1001, fd).unwrap_err();
        assert_eq!(err, "the journal of sb-3 was made for uid 1000, not 1001");
        // Root may take over any; with nothing waiting on that fd, every slot is cleared.
        let (adopted, waiting) = state.adopt(SandboxId(3), 4242, 0, fd).unwrap();
        assert!(waiting.is_empty());
        assert!((0..SLOTS).all(|i| adopted.read(i).id == 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
