//! Invariant 3, no confused deputy: the broker (root) connects unix sockets on the sandbox's
//! behalf only where the sandbox itself could, in the sandbox's own root and working
//! directory, with its credentials, and decides on what the path really names.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netjail_integration_tests::{policy_file, unconfined, Canary, Outcome, TempDir, TempPath};

use crate::{
    as_nobody, assert_eperm, assert_err, assert_ok, have_setpriv, need_root, probe, Via, NOBODY,
};

/// A policy that allows exactly the given unix paths (or globs).
fn allow_unix_policy(paths: &[&str]) -> TempPath {
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    policy_file(&format!(
        "name = \"unix-test\"\ndefault = \"deny\"\n\n[[allow]]\nunix = [{}]\n",
        list.join(", ")
    ))
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// Asserts that a canary's count is `n` once anything in flight has arrived.
#[track_caller]
fn assert_count(c: &Canary, n: u64, what: &str, out: &Outcome) {
    assert_eq!(
        c.wait_count(n, Duration::from_secs(5)),
        n,
        "{what}: {}",
        out.describe()
    );
    assert_eq!(c.settled_count(), n, "{what}: {}", out.describe());
}

// ---- permissions are the caller's -------------------------------------------------------------

fn unix_permission(via: Via) {
    if !need_root("s_inv3_unix_permission_checked_as_caller")
        || !have_setpriv("s_inv3_unix_permission_checked_as_caller")
    {
        return;
    }
    // root-only.sock: root:root 0600, in a 0755 directory.
    let root_only = Canary::unix_path("root-only.sock");
    chmod(root_only.path().parent().expect("dir"), 0o755);
    chmod(root_only.path(), 0o600);
    // group.sock: root:nogroup 0660, so nobody may connect through its group (fsgid).
    let group = Canary::unix_path("group.sock");
    chmod(group.path().parent().expect("dir"), 0o755);
    let nogroup = NOBODY.parse().expect("gid");
    std::os::unix::fs::chown(group.path(), Some(0), Some(nogroup)).expect("chown");
    chmod(group.path(), 0o660);
    let (root_only_path, group_path) = (utf8(root_only.path()), utf8(group.path()));
    let policy = allow_unix_policy(&[root_only_path, group_path]);

    // Unconfined as nobody: the kernel refuses the root-only socket, allows the group one.
    let out = unconfined(&as_nobody(&[probe(), "unix", root_only_path]));
    assert_err(&out, "EACCES");
    let out = unconfined(&as_nobody(&[probe(), "unix", group_path]));
    assert_ok(&out);
    assert_count(&group, 1, "unconfined group connect", &out);

    // Confined as nobody (setpriv inside the sandbox): the same answers, although the broker
    // that performs the connect is root.
    let out = via.run(
        policy.as_str(),
        &as_nobody(&[probe(), "unix", root_only_path]),
    );
    assert_err(&out, "EACCES");
    assert_count(
        &root_only,
        0,
        "nobody's connects reached the root-only socket",
        &out,
    );
    let out = via.run(policy.as_str(), &as_nobody(&[probe(), "unix", group_path]));
    assert_ok(&out);
    assert_count(&group, 2, "confined group connect (fsgid)", &out);

    // Positive control: confined as root, the policy allows it and it arrives.
    let out = via.run(policy.as_str(), &[probe(), "unix", root_only_path]);
    assert_ok(&out);
    assert_count(&root_only, 1, "confined root connect", &out);
}

both!(
    /// Invariant 3: the broker connects a unix path with the caller's fsuid, fsgid and groups:
    /// nobody gets EACCES for a root-only 0600 socket, confined as unconfined, and reaches a
    /// root:nogroup 0660 one; root reaches both.
    s_inv3_unix_permission_checked_as_caller => unix_permission
);

// ---- the caller's root and working directory ---------------------------------------------------

/// `<jail>` and the host `/tmp/netjail-test-*` directory `d` mirrored inside it.
struct Jail {
    _dir: TempDir,
    /// `d` as a path (the same string names `d` on the host and `<jail>/d` inside the jail).
    d: PathBuf,
    jail: PathBuf,
}

impl Jail {
    fn new() -> Jail {
        let dir = TempDir::new();
        let d = dir.path().to_path_buf();
        let jail = d.join("jail");
        let inner = jail.join(d.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(inner.join("sub")).expect("create the jail");
        Jail { _dir: dir, d, jail }
    }

    /// `d/NAME` as the chrooted caller writes it.
    fn caller_path(&self, name: &str) -> PathBuf {
        self.d.join(name)
    }

    /// The host path of what the chrooted caller calls `path`.
    fn host_path(&self, path: &Path) -> PathBuf {
        self.jail
            .join(path.strip_prefix("/").expect("absolute caller path"))
    }
}

fn chroot_connect(jail: &Jail, path: &str, chdir: Option<&str>) -> Vec<String> {
    let mut v = vec![
        probe().to_owned(),
        "chroot-unix".to_owned(),
        utf8(&jail.jail).to_owned(),
        path.to_owned(),
    ];
    if let Some(sub) = chdir {
        v.extend(["--chdir".to_owned(), sub.to_owned()]);
    }
    v
}

fn unix_in_callers_root(via: Via) {
    // chroot needs CAP_SYS_CHROOT.
    if !need_root("s_inv3_unix_path_resolved_in_callers_root") {
        return;
    }
    let jail = Jail::new();
    // The caller (chrooted into <jail>) connects to `d/inner.sock`: that is
    // <jail>/d/inner.sock. A broker resolving in its own root would land on the host's
    // d/inner.sock, the decoy.
    let name = jail.caller_path("inner.sock");
    let inner = Canary::unix_at(&jail.host_path(&name));
    let decoy = Canary::unix_at(&name);
    let outside = Canary::unix_at(&jail.d.join("outside.sock"));
    let name = utf8(&name);
    let sub = jail.caller_path("sub");
    let sub = utf8(&sub);
    // The policy names the socket as the sandbox's registered root does: the chroot is one
    // the sandbox made itself, which gives no socket another name
    // (`sec_filter::rt_a_chroot_names_sockets_in_the_registered_root`).
    let host_view = jail.host_path(Path::new(name));
    let policy = allow_unix_policy(&[utf8(&host_view)]);

    let cases: [(&str, Vec<String>); 2] = [
        ("absolute", chroot_connect(&jail, name, None)),
        (
            "relative",
            chroot_connect(&jail, "../inner.sock", Some(sub)),
        ),
    ];
    let mut reached = 0;
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = unconfined(&args);
        assert_ok(&out);
        reached += 1;
        assert_count(&inner, reached, &format!("{what}, unconfined"), &out);
        let out = via.run(policy.as_str(), &args);
        assert_ok(&out);
        reached += 1;
        assert_count(&inner, reached, &format!("{what}, confined"), &out);
    }
    assert_eq!(decoy.count(), 0, "a connect landed outside the jail");

    // Not as the chrooted caller sees them: its name of the socket allows nothing.
    let policy = allow_unix_policy(&[name]);
    let args = chroot_connect(&jail, name, None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = via.run(policy.as_str(), &args);
    assert_eperm(&out);
    assert_count(&inner, reached, "allowed by the host's name", &out);

    // Escapes: an absolute symlink and `..` both stay in the jail, where nothing listens, so
    // the kernel and the sandbox both answer ENOENT and the outside socket sees nothing.
    std::os::unix::fs::symlink(outside.path(), jail.jail.join("link.sock")).expect("symlink");
    let dotdot = format!("/../../../..{}", outside.path().display());
    let policy = allow_unix_policy(&["/**"]);
    for path in ["/link.sock", dotdot.as_str()] {
        let args = chroot_connect(&jail, path, None);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = unconfined(&args);
        assert_err(&out, "ENOENT");
        let out = via.run(policy.as_str(), &args);
        assert_err(&out, "ENOENT");
        assert_count(&outside, 0, &format!("{path} escaped the jail"), &out);
    }
    assert_eq!(decoy.count(), 0);
}

both!(
    /// Invariant 3: a unix path is resolved in the caller's root (a chroot) and, when
    /// relative, its working directory; the policy sees the socket by its path under the root
    /// the sandbox registered with, not as a chroot it made since names it; an absolute
    /// symlink or `..` does not leave the caller's root.
    s_inv3_unix_path_resolved_in_callers_root => unix_in_callers_root
);

// ---- symlinks are followed before the decision ---------------------------------------------

fn symlink_to_denied(via: Via) {
    let dir = TempDir::new();
    let public = dir.path().join("public");
    let private = dir.path().join("private");
    std::fs::create_dir(&public).expect("mkdir public");
    std::fs::create_dir(&private).expect("mkdir private");
    let secret = Canary::unix_at(&private.join("secret.sock"));
    let fine = Canary::unix_at(&public.join("ok.sock"));
    let link = public.join("link.sock");
    std::os::unix::fs::symlink(secret.path(), &link).expect("symlink");
    let rel_link = public.join("rel.sock");
    std::os::unix::fs::symlink("../private/secret.sock", &rel_link).expect("symlink");
    let glob = format!("{}/*", public.display());
    let policy = allow_unix_policy(&[&glob]);

    for (n, l) in [(1, &link), (2, &rel_link)] {
        let args = [probe(), "unix", utf8(l)];
        let out = unconfined(&args);
        assert_ok(&out);
        assert_count(&secret, n, "unconfined connect via the link", &out);
        let out = via.run(policy.as_str(), &args);
        assert_eperm(&out);
        assert_count(
            &secret,
            n,
            "the link led the broker to a denied socket",
            &out,
        );
    }

    // Positive control: a socket that really is in public/ is allowed.
    let out = via.run(policy.as_str(), &[probe(), "unix", utf8(fine.path())]);
    assert_ok(&out);
    assert_count(&fine, 1, "allowed socket", &out);
}

both!(
    /// Invariant 3: the broker decides on the path a symlink resolves to: a link under an
    /// allowed directory to a socket elsewhere is denied (absolute or relative link).
    s_inv3_symlink_to_denied_socket_denied => symlink_to_denied
);
