//! Where a unix bind with the program's own path lands by construction (rt5 E1).
//!
//! The kernel walks the program's bytes component by component. The broker has decided on a
//! directory `D` (resolved in the caller's root, symlinks followed) and binds on a thread whose
//! root is a tmpfs of its own mount namespace, holding a scaffold of real directories: the
//! program's path read lexically (an absolute one from the scaffold's root, a relative one
//! from the scaffold's copy of the caller's working directory; `..` steps to the parent,
//! staying at the root) reaches a scaffold directory `P`, on which a clone of `D` is mounted.
//! No symlink exists in the scaffold and no one else can reach it, so the kernel's walk
//! reaches `D` whatever the sandbox changes meanwhile.
//!
//! A walk crosses into the mount on `P` on every step that arrives at `P` (a name, or `..`),
//! but not where it starts (the thread's working directory, or its root, is the covered
//! scaffold directory). Two shapes follow:
//!
//! - the walk starts at `P` and never leaves it (`s`, `./s`, `/s`, `/../s`): the thread's
//!   working directory (and root, when the walk starts at the root) is `D` itself
//!   ([`Layout::InDirectory`]); no namespace is needed;
//! - otherwise the thread's start is the scaffold directory and the clone is mounted on `P`
//!   ([`Layout::Scaffold`]). A name looked up while the walk is in `D` would be looked up in
//!   the sandbox's own directory, where a symlink may lead anywhere: such a path
//!   (`/d/x/../s` where `/d` is decided on) has no layout ([`layout`] gives `None`).

/// How the thread that binds is placed (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// The walk starts in the directory decided on and stays there: it becomes the thread's
    /// working directory, and its root too when `root` (the walk starts at the root).
    InDirectory { root: bool },
    /// A scaffold: `dirs` to make, in order (paths relative to the scaffold's root); the
    /// thread's working directory `cwd` and `parent`, where the clone is mounted, relative to
    /// it too (empty: the root).
    Scaffold {
        dirs: Vec<Vec<u8>>,
        cwd: Vec<u8>,
        parent: Vec<u8>,
    },
}

/// The layout for the program's path `path` (the bytes of its `sockaddr_un` up to the first
/// NUL), the caller's working directory being `cwd` as the caller names it (an absolute path
/// in its root); `None` when the walk would look a name up in the directory decided on before
/// its final component, or `path` has no final name.
pub(crate) fn layout(cwd: &[u8], path: &[u8]) -> Option<Layout> {
    let slash = path.iter().rposition(|b| *b == b'/');
    let (dir, name) = match slash {
        Some(s) => (&path[..s], &path[s + 1..]),
        None => (&b""[..], path),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    let absolute = path.first() == Some(&b'/');
    let start: Vec<&[u8]> = if absolute {
        Vec::new()
    } else {
        components(cwd).collect()
    };
    // The walk: where it is after each step that arrives somewhere (a name, or `..`).
    let mut at = start.clone();
    let mut arrivals: Vec<(Vec<&[u8]>, bool)> = Vec::new();
    let mut dirs: Vec<Vec<u8>> = Vec::new();
    let note = |at: &[&[u8]], dirs: &mut Vec<Vec<u8>>| {
        let joined = join(at);
        if !at.is_empty() && !dirs.contains(&joined) {
            dirs.push(joined);
        }
    };
    for i in 1..=start.len() {
        note(&start[..i], &mut dirs);
    }
    for c in dir.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                at.pop();
                arrivals.push((at.clone(), false));
            }
            name => {
                at.push(name);
                note(&at, &mut dirs);
                arrivals.push((at.clone(), true));
            }
        }
    }
    let parent = at;
    // Only a walk that never steps (`s`, `./s`, `/s`) may start in `D` itself: a `..` at the
    // root of a walk stays on that directory and then crosses whatever is mounted on it, in
    // the caller's own mount namespace (a sandbox granted mount namespaces stacks one there:
    // the eighth red team's A1); in a scaffold nothing else is mounted on the clone.
    if arrivals.is_empty() && start == parent {
        return Some(Layout::InDirectory {
            root: parent.is_empty(),
        });
    }
    // In `D` after an arrival at `P`; a name taken from there is looked up in `D`.
    let mut in_d = false;
    for (a, by_name) in &arrivals {
        if in_d && *by_name {
            return None;
        }
        in_d = *a == parent;
    }
    if !in_d {
        return None;
    }
    Some(Layout::Scaffold {
        dirs,
        cwd: join(&start),
        parent: join(&parent),
    })
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaffold(dirs: &[&str], cwd: &str, parent: &str) -> Option<Layout> {
        Some(Layout::Scaffold {
            dirs: dirs.iter().map(|d| d.as_bytes().to_vec()).collect(),
            cwd: cwd.as_bytes().to_vec(),
            parent: parent.as_bytes().to_vec(),
        })
    }

    #[test]
    fn walks_that_stay_in_the_decided_directory() {
        let here = Some(Layout::InDirectory { root: false });
        let root = Some(Layout::InDirectory { root: true });
        assert_eq!(layout(b"/w", b"s"), here);
        assert_eq!(layout(b"/w", b"./s"), here);
        assert_eq!(layout(b"/w", b".//./s"), here);
        assert_eq!(layout(b"/w", b"/s"), root);
    }

    #[test]
    fn a_dotdot_at_the_root_arrives_at_the_clone_on_the_scaffolds_root() {
        // `..` at the root stays there and crosses what is mounted on it: the clone of `D`,
        // mounted on the scaffold's root, never `D` itself (which the caller may cover).
        let on_root = scaffold(&[], "", "");
        assert_eq!(layout(b"/w", b"//../s"), on_root);
        assert_eq!(
            layout(b"/", b"../s"),
            on_root,
            "`..` at the root stays there"
        );
        assert_eq!(layout(b"/", b"./.././s"), on_root);
    }

    #[test]
    fn scaffolds_follow_the_bytes() {
        assert_eq!(
            layout(b"/w", b"/tmp/x/s"),
            scaffold(&["tmp", "tmp/x"], "", "tmp/x"),
            "an absolute path does not start at the working directory"
        );
        assert_eq!(
            layout(b"/a/b", b"../s"),
            scaffold(&["a", "a/b"], "a/b", "a")
        );
        assert_eq!(
            layout(b"/a", b"x/../s"),
            scaffold(&["a", "a/x"], "a", "a"),
            "left and came back by `..`"
        );
        assert_eq!(
            layout(b"/a", b"sub/s"),
            scaffold(&["a", "a/sub"], "a", "a/sub")
        );
        assert_eq!(layout(b"/", b"/x/../s"), scaffold(&["x"], "", ""));
        assert_eq!(
            layout(b"/a", b"/d/../d/s"),
            scaffold(&["d"], "", "d"),
            "`..` from the decided directory leaves it"
        );
    }

    #[test]
    fn names_looked_up_in_the_decided_directory_have_no_layout() {
        assert_eq!(layout(b"/a", b"/d/x/../s"), None);
        assert_eq!(layout(b"/a/b", b"../b/../s"), None);
        assert_eq!(layout(b"/a", b"s/"), None);
        assert_eq!(layout(b"/a", b"x/.."), None);
    }
}

/// The kernel lands a bind made in a scaffold where the layout says, and what it costs: each
/// bind on a thread of its own (as the broker binds) placed in the caller's directories, then
/// in a scaffold. The figures are printed, not asserted (`--nocapture`).
#[cfg(test)]
mod kernel {
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    use std::time::Instant;

    use super::*;
    use crate::ops::decode;
    use crate::sys;

    /// Binds a new datagram socket to `path` on a thread placed by `enter`; the socket.
    fn bind_on_thread(
        enter: impl FnOnce() -> std::io::Result<()> + Send,
        path: &[u8],
    ) -> UnixDatagram {
        let sock = UnixDatagram::unbound().expect("socket");
        let addr = decode::sockaddr_un(path).expect("address");
        std::thread::scope(|s| {
            s.spawn(|| {
                enter().expect("placed");
                sys::bind_raw(sock.as_fd(), &addr).expect("bind");
            })
            .join()
            .expect("thread")
        });
        sock
    }

    #[test]
    fn a_scaffold_bind_lands_in_the_decided_directory_and_what_it_costs() {
        if !sys::has_capability(21) {
            eprintln!("SKIP a_scaffold_bind_lands_in_the_decided_directory_and_what_it_costs: needs CAP_SYS_ADMIN");
            return;
        }
        let base = crate::testing::fresh_dir("scaffold", "cost");
        let decided = base.join("decided");
        std::fs::create_dir_all(&decided).expect("dir");
        std::fs::create_dir_all(base.join("elsewhere")).expect("dir");
        let dir = sys::open_dir_path(decided.to_str().unwrap()).expect("dir fd");
        let ns = std::fs::File::open("/proc/self/ns/mnt").expect("ns");
        // The program names `elsewhere`: the bind lands in `decided` all the same, and keeps
        // the program's bytes.
        let mut own = base.join("elsewhere").as_os_str().as_bytes().to_vec();
        own.extend_from_slice(b"/s");
        let Some(Layout::Scaffold { dirs, cwd, parent }) = layout(b"/", &own) else {
            panic!("no scaffold");
        };
        let userns = sys::new_user_namespace_for_tests().expect("user namespace");
        let dir_id = sys::stat_fd(dir.as_fd()).expect("stat").id;
        let runs = 200u32;
        let (mut built, mut child, mut plain) = (0u128, 0u128, 0u128);
        let landed = |sock: &UnixDatagram| {
            let name = sys::sockname(sock.as_fd()).expect("name");
            let name = name[2..].strip_suffix(b"\0").unwrap_or(&name[2..]);
            assert_eq!(name, &own[..], "the program's bytes");
            assert!(decided.join("s").exists() && !base.join("elsewhere/s").exists());
            std::fs::remove_file(decided.join("s")).expect("unlink");
        };
        for _ in 0..runs {
            let t = Instant::now();
            let sock = bind_on_thread(
                || sys::enter_scaffold(ns.as_fd(), dir.as_fd(), &dirs, &cwd, &parent),
                &own,
            );
            built += t.elapsed().as_nanos();
            landed(&sock);
            // As a broker without CAP_SYS_ADMIN binds: a forked child of a user namespace.
            let sock = UnixDatagram::unbound().expect("socket");
            let addr = decode::sockaddr_un(&own).expect("address");
            let t = Instant::now();
            let bound = sys::bind_in_child(&sys::ChildBind {
                userns: userns.as_fd(),
                dir_path: decided.as_os_str().as_bytes(),
                dir_id,
                dirs: &dirs,
                cwd: &cwd,
                parent: &parent,
                sock: sock.as_fd(),
                addr: &addr,
            });
            child += t.elapsed().as_nanos();
            assert_eq!(bound, Ok(()));
            landed(&sock);
            let t = Instant::now();
            let sock = bind_on_thread(|| sys::enter_directory(dir.as_fd(), false), b"s");
            plain += t.elapsed().as_nanos();
            drop(sock);
            std::fs::remove_file(decided.join("s")).expect("unlink");
        }
        let us = |ns: u128| ns / u128::from(runs) / 1000;
        eprintln!(
            "bind: {} us in a scaffold on a thread, {} us in a forked child's, {} us on a thread in the directory (mean of {runs})",
            us(built),
            us(child),
            us(plain)
        );
        std::fs::remove_dir_all(&base).ok();
    }
}
