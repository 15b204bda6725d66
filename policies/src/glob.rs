//! `unix` entries: absolute path globs and `@name` globs for abstract sockets.
//!
//! In a path glob `*` matches within one component, `?` one character (never `/`), and a
//! component that is exactly `**` matches any number of components, zero included. In an
//! abstract glob there are no components: `*` matches anything, `/` included. There is no
//! escape syntax and no `[...]` class.

use std::fmt;

use crate::error::PolicyErrorKind;

/// One `unix` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnixPattern {
    /// An absolute path glob, stored normalised (no empty components).
    Path(Vec<Component>),
    /// An abstract-name glob, without the `@`.
    Abstract(Vec<u8>),
}

/// One component of a path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Component {
    /// `**`
    AnyDepth,
    /// A glob for one component.
    Glob(Vec<u8>),
}

/// Parses one `unix` entry.
pub(crate) fn parse(s: &str) -> Result<UnixPattern, PolicyErrorKind> {
    if let Some(name) = s.strip_prefix('@') {
        return Ok(UnixPattern::Abstract(name.as_bytes().to_vec()));
    }
    if !s.starts_with('/') {
        return Err(PolicyErrorKind::RelativeUnixPath(s.to_owned()));
    }
    let mut comps = Vec::new();
    for c in s.split('/').filter(|c| !c.is_empty()) {
        match c {
            "." | ".." => return Err(PolicyErrorKind::DotComponent(s.to_owned())),
            "**" => {
                // `/**/**` means the same as `/**`; keep one.
                if comps.last() != Some(&Component::AnyDepth) {
                    comps.push(Component::AnyDepth);
                }
            }
            c if c.contains("**") => return Err(PolicyErrorKind::BadDoubleStar(s.to_owned())),
            c => comps.push(Component::Glob(c.as_bytes().to_vec())),
        }
    }
    Ok(UnixPattern::Path(comps))
}

impl UnixPattern {
    /// Does this entry match a canonical absolute path (given as its bytes)?
    pub(crate) fn matches_path(&self, path: &[u8]) -> bool {
        let UnixPattern::Path(comps) = self else {
            return false;
        };
        let Some(rest) = path.strip_prefix(b"/") else {
            return false;
        };
        let parts: Vec<&[u8]> = rest
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        match_components(comps, &parts)
    }

    /// Does this entry match an abstract name (without its leading NUL)?
    pub(crate) fn matches_abstract(&self, name: &[u8]) -> bool {
        match self {
            UnixPattern::Abstract(glob) => match_glob(glob, name),
            UnixPattern::Path(_) => false,
        }
    }
}

/// `**` against whole components, with the usual single-backtrack-point star algorithm.
fn match_components(pat: &[Component], parts: &[&[u8]]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < parts.len() {
        match pat.get(p) {
            Some(Component::AnyDepth) => {
                star = Some((p, s));
                p += 1;
            }
            Some(Component::Glob(g)) if match_glob(g, parts[s]) => {
                p += 1;
                s += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    p = sp + 1;
                    s = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|c| *c == Component::AnyDepth)
}

/// `*` (any run of characters) and `?` (one character) against bytes. A character is one
/// valid UTF-8 sequence, or one byte where the bytes are not valid UTF-8.
fn match_glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                i += char_len(&s[i..]);
            }
            Some(&c) if c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    let next = si + char_len(&s[si..]);
                    p = sp + 1;
                    i = next;
                    star = Some((sp, next));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

/// Length of the character at the start of `s` (which is not empty).
fn char_len(s: &[u8]) -> usize {
    let n = match s[0] {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    };
    if n > 1 && s.len() >= n && std::str::from_utf8(&s[..n]).is_ok() {
        n
    } else {
        1
    }
}

impl fmt::Display for UnixPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixPattern::Abstract(g) => write!(f, "@{}", String::from_utf8_lossy(g)),
            UnixPattern::Path(comps) if comps.is_empty() => f.write_str("/"),
            UnixPattern::Path(comps) => {
                for c in comps {
                    match c {
                        Component::AnyDepth => f.write_str("/**")?,
                        Component::Glob(g) => write!(f, "/{}", String::from_utf8_lossy(g))?,
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> UnixPattern {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn path_hit(p: &str, path: &str) -> bool {
        pat(p).matches_path(path.as_bytes())
    }

    #[test]
    fn literal_paths() {
        assert!(path_hit("/run/x.sock", "/run/x.sock"));
        assert!(!path_hit("/run/x.sock", "/run/x.sockx"));
        assert!(!path_hit("/run/x.sock", "/run"));
        assert!(path_hit("//run//x.sock/", "/run/x.sock"));
    }

    #[test]
    fn star_stays_in_one_component() {
        assert!(path_hit("/tmp/.X11-unix/X*", "/tmp/.X11-unix/X0"));
        assert!(path_hit("/tmp/.X11-unix/X*", "/tmp/.X11-unix/X"));
        assert!(!path_hit("/tmp/.X11-unix/X*", "/tmp/.X11-unix/X0/y"));
        assert!(path_hit("/run/user/*/bus", "/run/user/1000/bus"));
        assert!(!path_hit("/run/user/*/bus", "/run/user/1000/x/bus"));
        assert!(!path_hit("/run/user/*/bus", "/run/user/bus"));
        assert!(path_hit("/a/*b*c", "/a/xxbyyc"));
        assert!(!path_hit("/a/*b*c", "/a/xxbyy"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(path_hit("/a/?", "/a/x"));
        assert!(path_hit("/a/?", "/a/é"));
        assert!(!path_hit("/a/?", "/a/xy"));
        assert!(!path_hit("/a/?", "/a/"));
        assert!(!path_hit("/a?b", "/a/b"));
        assert!(pat("/a/?").matches_path(b"/a/\xff"));
        assert!(pat("@?").matches_abstract("é".as_bytes()));
    }

    #[test]
    fn double_star_spans_components() {
        assert!(path_hit("/**", "/"));
        assert!(path_hit("/**", "/a/b/c"));
        assert!(path_hit("/run/**", "/run"));
        assert!(path_hit("/run/**", "/run/a/b.sock"));
        assert!(!path_hit("/run/**", "/var/run/a"));
        assert!(path_hit("/run/**/bus", "/run/bus"));
        assert!(path_hit("/run/**/bus", "/run/user/1000/bus"));
        assert!(!path_hit("/run/**/bus", "/run/user/1000/bus2"));
        assert!(path_hit("/a/**/b/**/c", "/a/x/b/y/z/c"));
        assert!(!path_hit("/a/**/b/**/c", "/a/x/y/z/c"));
        assert_eq!(pat("/a/**/**/b").to_string(), "/a/**/b");
    }

    #[test]
    fn path_globs_and_abstract_globs_never_cross() {
        assert!(!pat("/**").matches_abstract(b"/x"));
        assert!(!pat("@*").matches_path(b"/x"));
        assert!(pat("@*").matches_abstract(b"/x/y"));
    }

    #[test]
    fn abstract_globs() {
        assert!(pat("@dbus-*").matches_abstract(b"dbus-abc/def"));
        assert!(!pat("@dbus-*").matches_abstract(b"xdbus-abc"));
        assert!(pat("@").matches_abstract(b""));
        assert!(!pat("@").matches_abstract(b"a"));
        assert!(pat("@a?c").matches_abstract(b"a\0c"));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(
            parse("run/x"),
            Err(PolicyErrorKind::RelativeUnixPath("run/x".into()))
        );
        assert_eq!(
            parse(""),
            Err(PolicyErrorKind::RelativeUnixPath(String::new()))
        );
        assert_eq!(
            parse("/a/b**"),
            Err(PolicyErrorKind::BadDoubleStar("/a/b**".into()))
        );
        assert_eq!(
            parse("/a/../b"),
            Err(PolicyErrorKind::DotComponent("/a/../b".into()))
        );
        assert_eq!(
            parse("/a/./b"),
            Err(PolicyErrorKind::DotComponent("/a/./b".into()))
        );
    }

    #[test]
    fn relative_subject_never_matches() {
        assert!(!path_hit("/**", "a/b"));
    }
}
