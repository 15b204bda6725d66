//! The overlay: rules operators made with `--always`, kept in policy files that survive a
//! broker restart.
//!
//! One file per scope in the state directory: `policy-NAME.toml` for the sandboxes of a
//! policy the administrator registered (root, the broker's user, the OCI agent's policies),
//! `user-UID-policy-NAME.toml` for those of a policy user UID registered, and
//! `container-ID.toml` for the processes of a container (bytes other than `[A-Za-z0-9._-]`
//! written `%XX`). A policy's name is chosen by whoever registers it: the user is part of the
//! scope so that one user's rules never cover another user's policy of that name.
//!
//! The directory must belong to root or the broker's user with mode 0700 (an existing one is
//! checked, and the broker refuses to start on one that is not): whoever may write there may
//! grant themselves anything a policy asks about. Files are written through a new temporary
//! file (`O_EXCL|O_NOFOLLOW`, mode 0600) renamed over the old one. Each file is a policy in the ordinary format with
//! `default = "ask"`, so that what no rule covers is left to the policy's own `ask`; a grant
//! adds an `[[allow]]` table and a denial a `[[deny]]` table, each naming one exact
//! destination, with a comment saying who made it and when. Operators may edit the files;
//! the broker reads them when it starts and refuses to start on a file with a mistake (its
//! file, line and column), rather than forget what operators decided. A reload
//! ([`Overlay::reload`]) reads them again: a file with a mistake is reported and keeps its old
//! rules, the others are put in force.
//!
//! The overlay is consulted only for calls the policy asks about: an operator can answer the
//! questions a policy leaves open, never widen what it allows or denies outright.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use netjail_policy::{
    escape_unix_abstract, escape_unix_path, Op, Policy, PolicyError, Request, Target, Verdict,
};
use netjail_protocol::control::{ReloadItem, ReloadOutcome};

/// Whom one overlay file covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ScopeKey {
    /// Every sandbox of the administrator's policy with this name.
    Policy(String),
    /// Every sandbox of the policy with this name that this user registered.
    UserPolicy {
        /// The registering user.
        uid: u32,
        /// The policy's name.
        name: String,
    },
    /// Every process of the container with this id.
    Container(String),
}

impl ScopeKey {
    fn file_name(&self) -> String {
        match self {
            ScopeKey::Policy(n) => format!("policy-{}.toml", encode(n)),
            ScopeKey::UserPolicy { uid, name } => {
                format!("user-{uid}-policy-{}.toml", encode(name))
            }
            ScopeKey::Container(c) => format!("container-{}.toml", encode(c)),
        }
    }

    fn from_file_name(name: &str) -> Option<ScopeKey> {
        let stem = name.strip_suffix(".toml")?;
        if let Some(n) = stem.strip_prefix("policy-") {
            return Some(ScopeKey::Policy(decode(n)?));
        }
        if let Some(rest) = stem.strip_prefix("user-") {
            let (uid, name) = rest.split_once("-policy-")?;
            if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return Some(ScopeKey::UserPolicy {
                uid: uid.parse().ok()?,
                name: decode(name)?,
            });
        }
        stem.strip_prefix("container-")
            .and_then(decode)
            .map(ScopeKey::Container)
    }

    fn describe(&self) -> String {
        match self {
            ScopeKey::Policy(n) => format!("policy `{n}`"),
            ScopeKey::UserPolicy { uid, name } => format!("policy `{name}` of uid {uid}"),
            ScopeKey::Container(c) => format!("container `{c}`"),
        }
    }
}

/// Errors of the overlay.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file has a mistake (with its file, line and column).
    #[error("{0}")]
    Parse(#[from] PolicyError),
    /// The destination cannot be written as an exact rule.
    #[error("no exact rule can name {0}")]
    Unwritable(String),
}

struct File {
    text: String,
    policy: Policy,
    rules: usize,
}

/// The overlay files of one state directory.
pub struct Overlay {
    dir: PathBuf,
    files: Mutex<HashMap<ScopeKey, File>>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay").field("dir", &self.dir).finish()
    }
}

impl Overlay {
    /// Opens the overlay in `dir` (created, mode 0700, when missing) and reads every file.
    /// An existing directory must belong to root or the broker's user, with mode 0700 or
    /// less, and the directories above it must be closed to writes by others
    /// (`OverlayError::Io` with `PermissionDenied` otherwise).
    pub fn open(dir: &Path) -> Result<Overlay, OverlayError> {
        let io_err = |source| OverlayError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err)?;
            }
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
        }
        crate::ops::own::check_dir(dir, true).map_err(io_err)?;
        let mut files = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(ScopeKey::from_file_name) else {
                continue;
            };
            let file = read_file(&entry.path())?;
            tracing::info!(file = %entry.path().display(), rules = file.rules, "overlay read");
            files.insert(key, file);
        }
        Ok(Overlay {
            dir: dir.to_path_buf(),
            files: Mutex::new(files),
        })
    }

    /// Reads every file again and puts each one that parses in force; a file with a mistake
    /// keeps its old rules (or none, for a new file) and is reported with its error; a file
    /// that is gone takes its rules with it. One item per file that was or is there.
    pub fn reload(&self) -> Vec<ReloadItem> {
        // Held throughout, so that a rule an operator adds meanwhile is not lost.
        let mut files = self.lock();
        let item = |path: &Path, outcome, detail: String| ReloadItem {
            subject: format!("overlay {}", path.display()),
            outcome,
            detail,
        };
        let mut seen = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                return vec![item(
                    &self.dir,
                    ReloadOutcome::Rejected,
                    format!("{e}: every overlay file keeps its rules"),
                )]
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(ScopeKey::from_file_name) else {
                continue;
            };
            let path = entry.path();
            seen.push(key.clone());
            match read_file(&path) {
                Ok(file) if files.get(&key).is_some_and(|old| old.text == file.text) => {
                    out.push(item(&path, ReloadOutcome::Unchanged, String::new()));
                }
                Ok(file) => {
                    let detail = format!("{} rules", file.rules);
                    tracing::info!(file = %path.display(), rules = file.rules, "overlay reloaded");
                    files.insert(key, file);
                    out.push(item(&path, ReloadOutcome::Reloaded, detail));
                }
                Err(e) => {
                    let keeps = if files.contains_key(&key) {
                        "its old rules stay"
                    } else {
                        "none of its rules are in force"
                    };
                    tracing::warn!(file = %path.display(), error = %e, "overlay file rejected");
                    out.push(item(
                        &path,
                        ReloadOutcome::Rejected,
                        format!("{e}; {keeps}"),
                    ));
                }
            }
        }
        let gone: Vec<ScopeKey> = files
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            let path = self.dir.join(key.file_name());
            tracing::info!(file = %path.display(), "overlay file removed");
            files.remove(&key);
            out.push(item(
                &path,
                ReloadOutcome::Removed,
                "its rules are no longer in force".into(),
            ));
        }
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rules in all files.
    pub fn rule_count(&self) -> usize {
        self.lock().values().map(|f| f.rules).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeKey, File>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the files of `keys` say of `request`: allow or deny and the rule's words, or
    /// nothing. A denial in any file beats a grant in another.
    pub fn decide(&self, keys: &[ScopeKey], request: &Request) -> Option<(bool, String)> {
        let files = self.lock();
        let mut granted = None;
        for key in keys {
            let Some(file) = files.get(key) else { continue };
            let d = file.policy.evaluate(request);
            let text = format!("{} of {} ({})", d.rule, key.describe(), key.file_name());
            // Only the tables are operators' rules: the evaluator's own answers (`unspec`,
            // `privileged-port`, the default) are not an opinion of theirs.
            match d.verdict {
                Verdict::Deny { .. } if d.rule.starts_with("deny[") => return Some((false, text)),
                Verdict::Allow if d.rule.starts_with("allow[") => {
                    granted = granted.or(Some((true, text)))
                }
                _ => {}
            }
        }
        granted
    }

    /// Adds a rule for `request` to the file of `key` and writes the file (whole, through a
    /// temporary file and a rename, so that a crash leaves the old file or the new one).
    pub fn add(
        &self,
        key: ScopeKey,
        request: &Request,
        allow: bool,
        note: &str,
    ) -> Result<(), OverlayError> {
        let (field, value) = entry_for(request)?;
        let mut files = self.lock();
        let old = files.get(&key).map(|f| f.text.clone()).unwrap_or_else(|| {
            format!(
                "# netjail overlay for {}: rules operators made with `--always`.\n\
                 # The broker reads it when it starts and on `netjail reload`. `default = \"ask\"`\n\
                 # leaves everything else to the policy; each table below names one exact\n\
                 # destination.\n\
                 name = \"overlay\"\ndefault = \"ask\"\n",
                key.describe()
            )
        });
        let table = if allow { "allow" } else { "deny" };
        let text = format!(
            "{old}\n# {table} {note}, {}\n[[{table}]]\n{field} = [{}]\n",
            timestamp(),
            toml_string(&value)
        );
        let path = self.dir.join(key.file_name());
        let policy = Policy::from_toml(&text, &path.display().to_string())?;
        write_atomically(&path, text.as_bytes()).map_err(|source| OverlayError::Io {
            path: path.clone(),
            source,
        })?;
        let rules = files.get(&key).map_or(0, |f| f.rules) + 1;
        files.insert(
            key,
            File {
                text,
                policy,
                rules,
            },
        );
        Ok(())
    }
}

/// Reads and parses one overlay file.
fn read_file(path: &Path) -> Result<File, OverlayError> {
    let text = fs::read_to_string(path).map_err(|source| OverlayError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let policy = Policy::from_toml(&text, &path.display().to_string())?;
    let rules = text.matches("\n[[").count() + usize::from(text.starts_with("[["));
    Ok(File {
        text,
        policy,
        rules,
    })
}

/// The policy key and entry naming exactly the destination of `request`.
fn entry_for(request: &Request) -> Result<(&'static str, String), OverlayError> {
    // A bind keeps its wildcard (`0.0.0.0` is not loopback there); `endpoint_string` makes
    // the rest canonical.
    let target = match request.op {
        Op::Bind => request.target.clone(),
        _ => request.target.canonical(),
    };
    let unwritable = || OverlayError::Unwritable(target.to_string());
    match &target {
        // No destination of its own: the broker asks about the address the kernel sends an
        // unspecified destination to, never about the unspecified address.
        Target::Inet { addr, .. } if request.op != Op::Bind && addr.ip().is_unspecified() => {
            Err(unwritable())
        }
        Target::Inet { .. } => {
            let field = match request.op {
                Op::Connect => "connect",
                Op::Send => "send",
                Op::Bind => "bind",
                _ => return Err(unwritable()),
            };
            Ok((field, target.endpoint_string().ok_or_else(unwritable)?))
        }
        Target::UnixPath(p) => Ok(("unix", escape_unix_path(p).ok_or_else(unwritable)?)),
        Target::UnixAbstract(name) => {
            Ok(("unix", escape_unix_abstract(name).ok_or_else(unwritable)?))
        }
        _ => Err(unwritable()),
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `path` whole: a new temporary file beside it (created with `O_EXCL|O_NOFOLLOW` and
/// mode 0600, so that nothing already there, a symlink least of all, is written through),
/// then a rename over `path`. A temporary file a crash left behind is removed first.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or("overlay".into(), |n| n.to_string_lossy())
    ));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `2026-11-22T10:00:00Z`.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netjail_policy::Proto;

    fn connect(addr: &str) -> Request {
        Request {
            op: Op::Connect,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: addr.parse().unwrap(),
            },
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nj-overlay-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn names_round_trip() {
        for s in ["web", "a b/c%", "é", "..", ""] {
            let k = ScopeKey::Policy(s.to_string());
            assert_eq!(ScopeKey::from_file_name(&k.file_name()), Some(k.clone()));
            assert!(!k.file_name().contains('/'));
        }
        assert_eq!(ScopeKey::from_file_name("other.toml"), None);
        assert_eq!(ScopeKey::from_file_name("policy-%G1.toml"), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn rules_survive_reopening_and_deny_beats_allow() {
        let dir = tempdir("reopen");
        let key = ScopeKey::Policy("web".into());
        let overlay = Overlay::open(&dir).unwrap();
        assert_eq!(
            overlay.decide(std::slice::from_ref(&key), &connect("127.0.0.1:80")),
            None
        );
        overlay
            .add(key.clone(), &connect("127.0.0.1:80"), true, "by uid 0")
            .unwrap();
        overlay
            .add(key.clone(), &connect("[::1]:81"), false, "by uid 0")
            .unwrap();
        let reopened = Overlay::open(&dir).unwrap();
        assert_eq!(reopened.rule_count(), 2);
        let keys = [key.clone()];
        assert!(matches!(
            reopened.decide(&keys, &connect("127.0.0.1:80")),
            Some((true, _))
        ));
        assert!(matches!(
            reopened.decide(&keys, &connect("[::1]:81")),
            Some((false, _))
        ));
        assert_eq!(reopened.decide(&keys, &connect("127.0.0.1:81")), None);
        // Another scope sees nothing.
        let other = [ScopeKey::Policy("mail".into())];
        assert_eq!(reopened.decide(&other, &connect("127.0.0.1:80")), None);
        // A denial beats a grant of another scope.
        let c = ScopeKey::Container("c1".into());
        reopened
            .add(c.clone(), &connect("127.0.0.1:80"), false, "by uid 0")
            .unwrap();
        let both = [key, c];
        assert!(matches!(
            reopened.decide(&both, &connect("127.0.0.1:80")),
            Some((false, _))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn l5_user_scopes_have_files_of_their_own() {
        let user = ScopeKey::UserPolicy {
            uid: 1000,
            name: "web".into(),
        };
        assert_eq!(user.file_name(), "user-1000-policy-web.toml");
        assert_eq!(
            ScopeKey::from_file_name("user-1000-policy-web.toml"),
            Some(user)
        );
        let odd = ScopeKey::UserPolicy {
            uid: 7,
            name: "a-policy-b".into(),
        };
        assert_eq!(ScopeKey::from_file_name(&odd.file_name()), Some(odd));
        assert_eq!(ScopeKey::from_file_name("user-x-policy-web.toml"), None);
        assert_eq!(
            ScopeKey::from_file_name("policy-web.toml"),
            Some(ScopeKey::Policy("web".into()))
        );
    }

    #[test]
    fn l5_an_overlay_directory_others_may_read_or_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("open-mode");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = Overlay::open(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 0755") && err.contains("0700"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(Overlay::open(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
        // A missing one is made 0700.
        let made = Overlay::open(&dir).unwrap();
        let mode = fs::metadata(made.dir()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn l5_a_rule_is_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("symlink");
        let overlay = Overlay::open(&dir).unwrap();
        let victim = dir.with_extension("victim");
        fs::write(&victim, "untouched").unwrap();
        let key = ScopeKey::Policy("web".into());
        let tmp = dir.join(format!(".{}.tmp", key.file_name()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        overlay
            .add(key.clone(), &connect("127.0.0.1:80"), true, "test")
            .unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let written = dir.join(key.file_name());
        let meta = fs::symlink_metadata(&written).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        fs::remove_file(&victim).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_file_is_an_error_with_its_position() {
        let dir = tempdir("broken");
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::write(
            dir.join("policy-web.toml"),
            "name = \"overlay\"\ndefault = \"ask\"\n[[allow]]\nconect = []\n",
        )
        .unwrap();
        let err = Overlay::open(&dir).unwrap_err().to_string();
        assert!(err.contains("policy-web.toml:4:1"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_takes_good_files_and_keeps_the_old_rules_of_broken_ones() {
        let dir = tempdir("reload");
        let (web, mail) = (
            ScopeKey::Policy("web".into()),
            ScopeKey::Policy("mail".into()),
        );
        let overlay = Overlay::open(&dir).unwrap();
        overlay
            .add(web.clone(), &connect("127.0.0.1:80"), true, "t")
            .unwrap();
        overlay
            .add(mail.clone(), &connect("127.0.0.1:25"), true, "t")
            .unwrap();
        let head = "name = \"overlay\"\ndefault = \"ask\"\n";
        fs::write(
            dir.join("policy-web.toml"),
            format!("{head}[[allow]]\nconnect = [\"tcp://127.0.0.1:81\"]\n"),
        )
        .unwrap();
        fs::write(
            dir.join("policy-mail.toml"),
            format!("{head}[[allow]]\nconect = []\n"),
        )
        .unwrap();
        let items = overlay.reload();
        let outcome = |file: &str| {
            items
                .iter()
                .find(|i| i.subject.ends_with(file))
                .map(|i| (i.outcome, i.detail.clone()))
                .unwrap()
        };
        assert_eq!(outcome("policy-web.toml").0, ReloadOutcome::Reloaded);
        let (o, detail) = outcome("policy-mail.toml");
        assert_eq!(o, ReloadOutcome::Rejected);
        assert!(detail.contains("policy-mail.toml:4:1"), "{detail}");
        let web = [web];
        assert!(matches!(
            overlay.decide(&web, &connect("127.0.0.1:81")),
            Some((true, _))
        ));
        assert_eq!(overlay.decide(&web, &connect("127.0.0.1:80")), None);
        // The broken file's old rule still decides.
        let mail = [mail];
        assert!(matches!(
            overlay.decide(&mail, &connect("127.0.0.1:25")),
            Some((true, _))
        ));
        // A file removed takes its rules; an unchanged one says so.
        fs::remove_file(dir.join("policy-mail.toml")).unwrap();
        let items = overlay.reload();
        assert!(
            items.iter().any(|i| i.outcome == ReloadOutcome::Removed),
            "{items:?}"
        );
        assert!(
            items.iter().any(|i| i.outcome == ReloadOutcome::Unchanged),
            "{items:?}"
        );
        assert_eq!(overlay.decide(&mail, &connect("127.0.0.1:25")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_paths_with_glob_characters_match_only_themselves() {
        let dir = tempdir("globs");
        let key = ScopeKey::Policy("p".into());
        let overlay = Overlay::open(&dir).unwrap();
        let unix = |p: &str| Request {
            op: Op::Connect,
            target: Target::UnixPath(p.into()),
        };
        overlay
            .add(key.clone(), &unix("/tmp/a*b"), true, "t")
            .unwrap();
        overlay
            .add(key.clone(), &unix("/run/x.sock"), true, "t")
            .unwrap();
        let keys = [key];
        assert!(matches!(
            overlay.decide(&keys, &unix("/tmp/a*b")),
            Some((true, _))
        ));
        assert_eq!(overlay.decide(&keys, &unix("/tmp/aXb")), None);
        assert!(matches!(
            overlay.decide(&keys, &unix("/run/x.sock")),
            Some((true, _))
        ));
        let reopened = Overlay::open(&dir).unwrap();
        assert!(matches!(
            reopened.decide(&keys, &unix("/tmp/a*b")),
            Some((true, _))
        ));
        assert_eq!(reopened.decide(&keys, &unix("/tmp/a-b")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn evaluator_answers_are_not_operators_rules() {
        let dir = tempdir("unspec");
        let key = ScopeKey::Policy("p".into());
        let overlay = Overlay::open(&dir).unwrap();
        overlay
            .add(key.clone(), &connect("127.0.0.1:80"), true, "t")
            .unwrap();
        let unspec = Request {
            op: Op::Connect,
            target: Target::Unspec,
        };
        let privileged = Request {
            op: Op::Bind,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: "127.0.0.1:81".parse().unwrap(),
            },
        };
        assert_eq!(overlay.decide(std::slice::from_ref(&key), &unspec), None);
        assert_eq!(overlay.decide(&[key], &privileged), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_wildcard_bind_is_kept_as_the_wildcard() {
        let bind = |a: &str| Request {
            op: Op::Bind,
            target: Target::Inet {
                proto: Proto::Tcp,
                addr: a.parse().unwrap(),
            },
        };
        assert_eq!(
            entry_for(&bind("0.0.0.0:8080")).unwrap(),
            ("bind", "tcp://0.0.0.0:8080".to_string())
        );
        assert!(matches!(
            entry_for(&connect("0.0.0.0:8080")),
            Err(OverlayError::Unwritable(_))
        ));
        let dir = tempdir("wildcard");
        let key = ScopeKey::Policy("p".into());
        let overlay = Overlay::open(&dir).unwrap();
        overlay
            .add(key.clone(), &bind("0.0.0.0:8080"), true, "t")
            .unwrap();
        let keys = [key];
        assert!(matches!(
            overlay.decide(&keys, &bind("0.0.0.0:8080")),
            Some((true, _))
        ));
        assert_eq!(overlay.decide(&keys, &bind("127.0.0.1:8080")), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
