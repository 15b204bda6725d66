//! Canonical TOML output of a [`Policy`].

use std::fmt::{Display, Write};

use crate::confine::{capability_name, IoctlMode, LandlockMode};
use crate::duration::format_duration;
use crate::model::{Action, Policy, Rule, Verdict};

pub(crate) fn to_toml(p: &Policy) -> String {
    let mut out = String::new();
    out.push_str("name = ");
    quote(&mut out, &p.name);
    out.push('\n');
    out.push_str(match p.default {
        Action::Deny => "default = \"deny\"\n",
        Action::Allow => "default = \"allow\"\n",
        Action::Ask => "default = \"ask\"\n",
    });
    let _ = writeln!(out, "ask_timeout = \"{}\"", format_duration(p.ask_timeout));
    out.push_str(match p.ask_fallback {
        Verdict::Allow => "ask_fallback = \"allow\"\n",
        Verdict::Deny { .. } | Verdict::Ask => "ask_fallback = \"deny\"\n",
    });
    confinement(&mut out, p);
    out.push_str("\n[sockets]\nallow = ");
    list(&mut out, &p.sockets);
    let _ = writeln!(
        out,
        "refuse = \"{}\"",
        crate::sockets::refuse_name(p.sockets_refuse)
    );
    out.push_str("\n[limits]\n");
    for (key, limit) in p.limits.entries() {
        let _ = writeln!(out, "{key} = {limit}");
    }
    if let Some(bridge) = &p.bridge {
        out.push_str("\n[bridge]\nnetns = ");
        quote(&mut out, &crate::bridge::netns_text(bridge.netns()));
        out.push_str("\nconnect = ");
        list(&mut out, &bridge.connect);
        out.push_str("bind = ");
        list(&mut out, &bridge.bind);
    }
    for rule in &p.deny {
        out.push_str("\n[[deny]]\n");
        // Infallible: writing to a String.
        let _ = writeln!(out, "errno = \"{}\"", rule.errno.name());
        entries(&mut out, rule);
    }
    for rule in &p.allow {
        out.push_str("\n[[allow]]\n");
        entries(&mut out, rule);
    }
    for rule in &p.ask {
        out.push_str("\n[[ask]]\n");
        entries(&mut out, rule);
    }
    out
}

/// Every confinement key, defaults included, so that `policy show` tells the whole story.
fn confinement(out: &mut String, p: &Policy) {
    let c = &p.confine;
    let jail: Vec<String> = [
        c.jail_v4.map(|a| a.to_string()),
        c.jail_v6.map(|a| a.to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !jail.is_empty() {
        out.push_str("jail_address = ");
        list(out, &jail);
    }
    let caps: Vec<&str> = c
        .keep_capabilities
        .iter()
        .map(|n| capability_name(*n))
        .collect();
    out.push_str("keep_capabilities = ");
    list(out, &caps);
    out.push_str(match c.ioctl {
        IoctlMode::Any => "ioctl = \"any\"\n",
        IoctlMode::SafeList => "ioctl = \"safe-list\"\n",
    });
    let mut ns = Vec::new();
    if c.namespaces.net {
        ns.push("net");
    }
    if c.namespaces.user {
        ns.push("user");
    }
    if c.namespaces.mount {
        ns.push("mount");
    }
    out.push_str("namespaces = ");
    list(out, &ns);
    let _ = writeln!(out, "scm_rights = {}", c.scm_rights);
    let _ = writeln!(out, "fcntl_setown = {}", c.fcntl_setown);
    let _ = writeln!(out, "source_cmsgs = {}", c.source_cmsgs);
    // Printed only when it names something: most policies never do.
    if !c.allow_unsafe_sockopts.is_empty() {
        out.push_str("allow_unsafe_sockopts = ");
        list(out, &c.allow_unsafe_sockopts);
    }
    out.push_str(match c.landlock {
        LandlockMode::BestEffort => "landlock = \"best-effort\"\n",
        LandlockMode::Required => "landlock = \"required\"\n",
        LandlockMode::Off => "landlock = \"off\"\n",
    });
}

fn entries(out: &mut String, rule: &Rule) {
    if !rule.connect.is_empty() {
        out.push_str("connect = ");
        list(out, &rule.connect);
    }
    if !rule.send.is_empty() {
        out.push_str("send = ");
        list(out, &rule.send);
    }
    if !rule.bind.is_empty() {
        out.push_str("bind = ");
        list(out, &rule.bind);
    }
    if !rule.unix.is_empty() {
        out.push_str("unix = ");
        list(out, &rule.unix);
    }
}

fn list<T: Display>(out: &mut String, items: &[T]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quote(out, &item.to_string());
    }
    out.push_str("]\n");
}

/// A TOML basic string.
pub(crate) fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Policy {
    /// The policy in canonical TOML (what `netjail policy show` prints): every key explicit,
    /// endpoints and paths normalised. It parses back to an equivalent policy.
    pub fn to_toml(&self) -> String {
        to_toml(self)
    }

    /// A short fingerprint of the policy: 16 lowercase hex digits, the 64-bit FNV-1a hash of
    /// its canonical text ([`Policy::to_toml`]). Two policies that print the same have the
    /// same fingerprint, whatever their source looked like (comments, key order, spelling).
    ///
    /// It lets a broker check that it holds the policy a filter was compiled from (`netjail
    /// oci seccomp` writes it into the container's `listenerMetadata`). It is not a security
    /// hash: anyone can make two policies with the same fingerprint on purpose.
    pub fn fingerprint(&self) -> String {
        format!("{:016x}", fnv1a64(self.to_toml().as_bytes()))
    }
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_what_toml_requires() {
        let mut s = String::new();
        quote(&mut s, "a\"b\\c\nd\u{0}e\u{7f}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0000e\u007Fé""#);
        let v: toml::Table = toml::from_str(&format!("k = {s}")).unwrap();
        assert_eq!(v["k"].as_str(), Some("a\"b\\c\nd\u{0}e\u{7f}é"));
    }

    #[test]
    fn fnv1a64_known_values() {
        // The reference values of the FNV specification.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprint_is_of_the_canonical_text() {
        let a = Policy::from_toml("name = \"x\"\n# a comment\ndefault = \"deny\"\n", "a").unwrap();
        let b = Policy::from_toml("default = \"deny\"\nname = \"x\"\n", "b").unwrap();
        let c = Policy::from_toml("name = \"x\"\ndefault = \"allow\"\n", "c").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let f = a.fingerprint();
        assert_eq!(f.len(), 16);
        assert!(f
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(f, format!("{:016x}", fnv1a64(a.to_toml().as_bytes())));
    }
}
