//! `unix` entries: absolute path globs and `@name` globs for abstract sockets.
//!
//! In a path glob `*` matches within one component, `?` one character (never `/`), and a
//! component that is exactly `**` matches any number of components, zero included. In an
//! abstract glob there are no components: `*` matches anything, `/` included. A backslash
//! makes the next `*`, `?` or `\` an ordinary character (`\*`); before anything else it is an
//! error. There is no `[...]` class: `[` is an ordinary character.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::PolicyErrorKind;

/// One `unix` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnixPattern {
    /// An absolute path glob, stored normalised (no empty components).
    Path(Vec<Component>),
    /// An abstract-name glob, without the `@`.
    Abstract(Vec<Tok>),
}

/// One component of a path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Component {
    /// `**`
    AnyDepth,
    /// A glob for one component.
    Glob(Vec<Tok>),
}

/// One element of a glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// This byte, as written or escaped.
    Byte(u8),
    /// `*`: any run of characters (within a component, in a path glob).
    Star,
    /// `?`: one character.
    One,
}

/// Parses one `unix` entry.
pub(crate) fn parse(s: &str) -> Result<UnixPattern, PolicyErrorKind> {
    if let Some(name) = s.strip_prefix('@') {
        return Ok(UnixPattern::Abstract(tokens(name, s)?));
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
            c => {
                let glob = tokens(c, s)?;
                if glob.windows(2).any(|w| w == [Tok::Star, Tok::Star]) {
                    return Err(PolicyErrorKind::BadDoubleStar(s.to_owned()));
                }
                comps.push(Component::Glob(glob));
            }
        }
    }
    Ok(UnixPattern::Path(comps))
}

/// The glob `text` (a component, or an abstract name) of the entry `whole`.
fn tokens(text: &str, whole: &str) -> Result<Vec<Tok>, PolicyErrorKind> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'*' => Tok::Star,
            b'?' => Tok::One,
            b'\\' => match bytes.next() {
                Some(c @ (b'*' | b'?' | b'\\')) => Tok::Byte(c),
                _ => return Err(PolicyErrorKind::BadEscape(whole.to_owned())),
            },
            b => Tok::Byte(b),
        });
    }
    Ok(out)
}

/// A `unix` entry that matches this socket path and no other: the path with `*`, `?` and `\`
/// escaped, in the form the evaluator matches (no empty or `.` components). `None` when no
/// entry can: a path that is relative, has a `..` component (the evaluator refuses those), or
/// is not UTF-8 (entries are TOML strings).
///
/// ```
/// use netjail_policy::escape_unix_path;
///
/// assert_eq!(escape_unix_path("/tmp/a*b?".as_ref()).as_deref(), Some(r"/tmp/a\*b\?"));
/// assert_eq!(escape_unix_path("/run//x/./y.sock".as_ref()).as_deref(), Some("/run/x/y.sock"));
/// assert_eq!(escape_unix_path("rel/x".as_ref()), None);
/// ```
pub fn escape_unix_path(path: &Path) -> Option<String> {
    let bytes = path.as_os_str().as_bytes();
    let rest = bytes.strip_prefix(b"/")?;
    let mut out = String::with_capacity(bytes.len() + 1);
    for comp in rest.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return None,
            _ => {
                out.push('/');
                escape_into(&mut out, std::str::from_utf8(comp).ok()?);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// A `unix` entry that matches this abstract socket name (without its leading NUL) and no
/// other: `@` and the name with `*`, `?` and `\` escaped. `None` when the name is not UTF-8.
///
/// ```
/// use netjail_policy::escape_unix_abstract;
///
/// assert_eq!(escape_unix_abstract(b"dbus-*").as_deref(), Some(r"@dbus-\*"));
/// ```
pub fn escape_unix_abstract(name: &[u8]) -> Option<String> {
    let mut out = String::from("@");
    escape_into(&mut out, std::str::from_utf8(name).ok()?);
    Some(out)
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
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
fn match_glob(pat: &[Tok], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            Some(Tok::One) => {
                p += 1;
                i += char_len(&s[i..]);
            }
            Some(Tok::Byte(c)) if *c == s[i] => {
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
    pat[p..].iter().all(|c| *c == Tok::Star)
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

/// The glob as written, with `*`, `?` and `\\` escaped where they are ordinary characters.
fn write_glob(f: &mut fmt::Formatter<'_>, glob: &[Tok]) -> fmt::Result {
    let mut bytes = Vec::with_capacity(glob.len());
    for t in glob {
        match t {
            Tok::Star => bytes.push(b'*'),
            Tok::One => bytes.push(b'?'),
            Tok::Byte(b @ (b'*' | b'?' | b'\\')) => bytes.extend([b'\\', *b]),
            Tok::Byte(b) => bytes.push(*b),
        }
    }
    // Parsed from a string: the bytes are UTF-8.
    f.write_str(&String::from_utf8_lossy(&bytes))
}

impl fmt::Display for UnixPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixPattern::Abstract(g) => {
                f.write_str("@")?;
                write_glob(f, g)
            }
            UnixPattern::Path(comps) if comps.is_empty() => f.write_str("/"),
            UnixPattern::Path(comps) => {
                for c in comps {
                    match c {
                        Component::AnyDepth => f.write_str("/**")?,
                        Component::Glob(g) => {
                            f.write_str("/")?;
                            write_glob(f, g)?;
                        }
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
    fn escapes_make_metacharacters_ordinary() {
        assert!(path_hit(r"/tmp/a\*", "/tmp/a*"));
        assert!(!path_hit(r"/tmp/a\*", "/tmp/ab"));
        assert!(path_hit(r"/tmp/a\?", "/tmp/a?"));
        assert!(!path_hit(r"/tmp/a\?", "/tmp/ab"));
        assert!(path_hit(r"/tmp/a\\b", r"/tmp/a\b"));
        assert!(path_hit(r"/tmp/\*\*", "/tmp/**"));
        assert!(!path_hit(r"/tmp/\*\*", "/tmp/x/y"));
        assert!(path_hit(r"/tmp/\**", "/tmp/*abc"));
        assert!(!path_hit(r"/tmp/\**", "/tmp/abc"));
        assert!(path_hit("/tmp/[ab]", "/tmp/[ab]"));
        assert!(!path_hit("/tmp/[ab]", "/tmp/a"));
        assert!(pat(r"@x\*").matches_abstract(b"x*"));
        assert!(!pat(r"@x\*").matches_abstract(b"xy"));
        for written in [r"/a/\*\?\\[", r"@x\*\?\\", "/a/b*c?", "/**/x"] {
            assert_eq!(pat(written).to_string(), written);
        }
        for bad in [r"/a\b", r"/a\", r"@x\", r"/a\/b", r"@\n"] {
            assert_eq!(
                parse(bad),
                Err(PolicyErrorKind::BadEscape(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse(r"/a/\***"),
            Err(PolicyErrorKind::BadDoubleStar(r"/a/\***".into()))
        );
    }

    #[test]
    fn escaped_paths_match_only_themselves() {
        for path in [
            "/tmp/a*", "/tmp/?", r"/x\y", "/**", "/a/b/c", "/", "/é*/[x]",
        ] {
            let written = escape_unix_path(Path::new(path)).unwrap();
            let p = pat(&written);
            assert!(p.matches_path(path.as_bytes()), "{path} as {written}");
            assert_eq!(p.to_string(), written);
        }
        assert!(!pat(&escape_unix_path(Path::new("/tmp/a*")).unwrap()).matches_path(b"/tmp/ab"));
        assert!(!pat(&escape_unix_path(Path::new("/**")).unwrap()).matches_path(b"/a"));
        assert_eq!(
            escape_unix_path(Path::new("//a/./b/")).as_deref(),
            Some("/a/b")
        );
        assert_eq!(escape_unix_path(Path::new("/a/../b")), None);
        assert_eq!(escape_unix_path(Path::new("a/b")), None);
        assert_eq!(escape_unix_path(Path::new("")), None);
        let not_utf8 = std::ffi::OsStr::from_bytes(b"/a/\xff");
        assert_eq!(escape_unix_path(Path::new(not_utf8)), None);
        let name = escape_unix_abstract(b"a*\0b").unwrap();
        assert!(pat(&name).matches_abstract(b"a*\0b"));
        assert!(!pat(&name).matches_abstract(b"ax\0b"));
        assert_eq!(escape_unix_abstract(b"\xff"), None);
    }

    #[test]
    fn relative_subject_never_matches() {
        assert!(!path_hit("/**", "a/b"));
    }
}
