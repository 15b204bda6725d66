//! A configuration file that is parsed again whenever it changes on disk (`/etc/hosts`,
//! `/etc/resolv.conf`).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::Failure;

/// Largest file read; anything past it is ignored (with a warning), so that a huge file cannot
/// take the broker's memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// What tells one version of a file from another without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

#[derive(Debug)]
struct State<T> {
    /// The stamp of the version parsed; `None` when the file did not exist.
    stamp: Option<Stamp>,
    parsed: Arc<T>,
    /// When the file was last looked at, and whether it could be read then.
    checked: Option<(Instant, bool)>,
}

/// A file parsed by `parse`, parsed again when its modification time, size or inode changes.
/// A file that does not exist parses as the empty text.
#[derive(Debug)]
pub(crate) struct Watched<T> {
    path: PathBuf,
    parse: fn(&str) -> T,
    state: Mutex<State<T>>,
}

impl<T> Watched<T> {
    /// Reads and parses the file once. Fails when it exists but cannot be read (a directory, no
    /// permission): a configuration error worth stopping for at start-up.
    pub(super) fn new(path: PathBuf, parse: fn(&str) -> T) -> io::Result<Watched<T>> {
        let (stamp, parsed) = match load(&path, parse) {
            Ok(loaded) => loaded,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "file does not exist; taken as empty");
                (None, parse(""))
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        Ok(Watched {
            path,
            parse,
            state: Mutex::new(State {
                stamp,
                parsed: Arc::new(parsed),
                checked: Some((Instant::now(), true)),
            }),
        })
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The current version: one `stat`, and a read when the file changed. `Err` when it exists
    /// but cannot be read now (the old version is kept for when it can again).
    pub(super) fn current(&self) -> Result<Arc<T>, Failure> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.failed(&mut state, now, &e)),
        };
        if stamp == state.stamp {
            state.checked = Some((now, true));
            return Ok(Arc::clone(&state.parsed));
        }
        let loaded = match stamp {
            None => Ok((None, (self.parse)(""))),
            Some(_) => load(&self.path, self.parse),
        };
        match loaded {
            Ok((stamp, parsed)) => {
                tracing::debug!(path = %self.path.display(), "file changed; parsed again");
                state.stamp = stamp;
                state.parsed = Arc::new(parsed);
                state.checked = Some((now, true));
                Ok(Arc::clone(&state.parsed))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                state.stamp = None;
                state.parsed = Arc::new((self.parse)(""));
                state.checked = Some((now, true));
                Ok(Arc::clone(&state.parsed))
            }
            Err(e) => Err(self.failed(&mut state, now, &e)),
        }
    }

    /// The version last seen, without any I/O, if the file was looked at less than `max_age`
    /// ago; `Some(Err)` if it could not be read then.
    pub(super) fn recent(&self, max_age: Duration) -> Option<Result<Arc<T>, Failure>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (at, ok) = state.checked?;
        if Instant::now().saturating_duration_since(at) >= max_age {
            return None;
        }
        Some(if ok {
            Ok(Arc::clone(&state.parsed))
        } else {
            Err(Failure::Unreadable)
        })
    }

    fn failed(&self, state: &mut State<T>, now: Instant, e: &io::Error) -> Failure {
        tracing::warn!(path = %self.path.display(), error = %e, "cannot read file");
        state.checked = Some((now, false));
        Failure::Unreadable
    }
}

/// Reads (at most [`MAX_FILE_BYTES`]) and parses `path`, with the stamp of what was read.
fn load<T>(path: &Path, parse: fn(&str) -> T) -> io::Result<(Option<Stamp>, T)> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    if meta.len() > MAX_FILE_BYTES {
        tracing::warn!(
            path = %path.display(),
            len = meta.len(),
            max = MAX_FILE_BYTES,
            "file too long; the rest is ignored"
        );
    }
    let text = String::from_utf8_lossy(&bytes);
    Ok((Some(Stamp::of(&meta)), parse(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> usize {
        text.lines().count()
    }

    #[test]
    fn parsed_again_when_changed_and_empty_when_missing() {
        let dir = std::env::temp_dir().join(format!("netjail-names-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let w = Watched::new(path.clone(), lines).unwrap();
        assert_eq!(*w.current().unwrap(), 0);
        fs::write(&path, "a\nb\n").unwrap();
        assert_eq!(*w.current().unwrap(), 2);
        // Replaced by another file (another inode) of the same size.
        let tmp = dir.join("g");
        fs::write(&tmp, "c\nd\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        fs::write(&tmp, "e\n").unwrap();
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(*w.current().unwrap(), 1);
        assert!(matches!(w.recent(Duration::from_secs(60)), Some(Ok(n)) if *n == 1));
        assert!(w.recent(Duration::ZERO).is_none());
        fs::remove_file(&path).unwrap();
        assert_eq!(*w.current().unwrap(), 0);
        // A directory cannot be read: an error at start, a failure later.
        assert!(Watched::new(dir.clone(), lines).is_err());
        fs::create_dir(&path).unwrap();
        assert!(w.current().is_err());
        assert!(matches!(w.recent(Duration::from_secs(60)), Some(Err(_))));
        fs::remove_dir_all(&dir).unwrap();
    }
}
