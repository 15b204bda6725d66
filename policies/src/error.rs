//! Load-time errors: for a TOML policy with the line and column of the offending key or value,
//! for a policy built in code ([`crate::PolicyBuilder`]) with the key and value it was given.

use std::fmt;

/// A policy that could not be loaded or built: where, and what is wrong.
///
/// For a TOML policy, `line` and `col` are 1-based; `col` counts characters, not bytes. They
/// point at the offending key or value (for a bad entry inside an array, at that entry), and
/// `at` is `None`. It displays as `ORIGIN:LINE:COL: MESSAGE`.
///
/// For a policy built in code, `line` and `col` are 0 and `at` names the key and value in
/// the builder's terms. It displays as ``ORIGIN: KEY `VALUE`: MESSAGE``, as in
/// ``builder:web: allow[1].connect[0] `tcp://127.0.0.1:99999`: port 99999 is out of range
/// (0-65535)``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Display name of the source: a file path, `builtin:NAME`, or `builder:NAME` for a
    /// policy built in code (the name escaped as Rust's `escape_debug` does, `builder` for
    /// an empty name).
    pub origin: String,
    /// 1-based line; 0 for a policy built in code.
    pub line: usize,
    /// 1-based column, in characters; 0 for a policy built in code.
    pub col: usize,
    /// Where in a policy built in code; `None` for a TOML policy. (Boxed: errors stay
    /// small.)
    pub at: Option<Box<BuilderKey>>,
    /// What is wrong.
    pub kind: PolicyErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            None => write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.col, self.kind
            ),
            Some(at) => write!(f, "{}: {at}: {}", self.origin, self.kind),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The key and value of a policy built in code that an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderKey {
    /// The key as the TOML format names it, with 0-based indices counting the entries given
    /// for it (across calls, in call order): `name`, `ask_timeout`, `ask_fallback`,
    /// `jail_address[1]`, `keep_capabilities[0]`, `namespaces[0]`, `source_cmsgs`,
    /// `sockets.allow[2]`, `sockets.refuse`, `bridge.netns`, `bridge.connect[0]`, `bridge.bind[1]`,
    /// `bridge` for a bridge without a namespace, `deny[0].errno`, `allow[1].connect[0]`, or `ask[2]` for a table
    /// with no entries. Table indices count the tables of their kind, as in
    /// [`crate::Decision::rule`].
    pub key: String,
    /// The value given there, as given; `None` when the mistake is not in one value (an
    /// empty name, an empty table, `source_cmsgs` together with `jail_address`).
    pub value: Option<String>,
}

impl fmt::Display for BuilderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        match &self.value {
            // One line, whatever the value holds.
            Some(value) => write!(f, " `{}`", value.escape_debug()),
            None => Ok(()),
        }
    }
}

/// One variant per mistake a policy author can make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The text is not valid TOML.
    #[error("invalid toml: {0}")]
    Syntax(String),
    /// A date-time value, which no policy key takes.
    #[error("date-time values are not valid in a policy")]
    DateTime,
    /// A key this format does not know.
    #[error("unknown key `{key}`{hint}", hint = did_you_mean(*.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// A known key within edit distance 2, if any.
        suggestion: Option<&'static str>,
    },
    /// An `extends` parent that is no built-in policy and that the loader could not read.
    #[error("cannot extend `{name}`: it is no built-in policy ({list}), and {reason}{hint}", list = crate::builtin::builtin_names().join(", "), hint = did_you_mean(*.suggestion))]
    UnknownParent {
        /// The parent as written.
        name: String,
        /// Why the loader could not read it.
        reason: String,
        /// A built-in name within edit distance 2, if any.
        suggestion: Option<&'static str>,
    },
    /// A policy that extends itself, through its parents or directly.
    #[error("`extends` makes a cycle: {0}; remove one of these `extends`")]
    ExtendsCycle(String),
    /// An `extends` chain longer than [`crate::MAX_EXTENDS_DEPTH`].
    #[error("`extends` chain longer than {max} policies: {chain}")]
    ExtendsTooDeep {
        /// The most policies in one chain.
        max: usize,
        /// The chain, each policy's origin, first child first.
        chain: String,
    },
    /// A `--set` argument that is not `KEY=VALUE`.
    #[error("`--set` takes KEY=VALUE (e.g. `jail_address=127.0.0.2`), found `{0}`")]
    BadSet(String),
    /// A `--set` of a rule table or of `extends`.
    #[error(
        "`--set` sets top-level settings, not `{0}`; write tables and `extends` in a policy file"
    )]
    NotSettable(String),
    /// A required key is absent.
    #[error("missing required key `{0}`")]
    MissingKey(&'static str),
    /// A value of the wrong TOML type.
    #[error("`{key}` must be {expected}, found {found}")]
    WrongType {
        /// The key whose value (or one of whose entries) is wrong.
        key: String,
        /// What the format wants, e.g. "a string".
        expected: &'static str,
        /// The TOML type found, e.g. "an integer".
        found: &'static str,
    },
    /// A `[limits]` value that is not an integer of at least `-1` (rule N3).
    #[error("`limits.{key}` must be an integer: 0 for none, -1 for unlimited, or a positive count (found {found})")]
    BadLimit {
        /// The key of `[limits]`.
        key: String,
        /// The value found, or its TOML type when it is not an integer.
        found: String,
    },
    /// `name = ""`.
    #[error("`name` must not be empty")]
    EmptyName,
    /// `default` is not one of the supported actions.
    #[error("unknown default action `{0}`; expected \"deny\", \"ask\" or \"allow\"")]
    UnknownDefault(String),
    /// A duration (`ask_timeout`) that [`crate::parse_duration`] refuses.
    #[error("invalid `{key}`: {message}")]
    BadDuration {
        /// The key whose value is wrong.
        key: &'static str,
        /// What is wrong, as [`crate::parse_duration`] says it.
        message: String,
    },
    /// `ask_fallback` is neither `deny` nor `allow`.
    #[error("unknown ask_fallback `{0}`; expected \"deny\" or \"allow\"")]
    UnknownAskFallback(String),
    /// `errno` is not one of the supported names.
    #[error(
        "unknown errno `{0}`; expected one of EPERM, ECONNREFUSED, EACCES, ENETUNREACH, EHOSTUNREACH"
    )]
    UnknownErrno(String),
    /// `errno` inside an `[[allow]]` or `[[ask]]` table.
    #[error("`errno` is only valid in a [[deny]] table")]
    ErrnoOutsideDeny,
    /// A rule table without any `connect`, `send`, `bind` or `unix` entry.
    #[error("a [[{0}]] table needs at least one entry in `connect`, `send`, `bind` or `unix`")]
    EmptyRule(&'static str),
    /// A `keep_capabilities` entry that is not one of the capabilities netjail drops.
    #[error("unknown capability `{0}`; expected one of CAP_NET_BIND_SERVICE, CAP_NET_BROADCAST, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_SYS_ADMIN")]
    UnknownCapability(String),
    /// `ioctl` is not one of the modes.
    #[error("unknown ioctl mode `{0}`; expected \"any\" or \"safe-list\"")]
    UnknownIoctlMode(String),
    /// `landlock` is not one of the modes.
    #[error("unknown landlock mode `{0}`; expected \"best-effort\", \"required\" or \"off\"")]
    UnknownLandlockMode(String),
    /// An `allow_unsafe_sockopts` entry that names no option netjail refuses.
    #[error("unknown socket option `{found}` in `allow_unsafe_sockopts`; expected one of {list}{hint}", list = crate::confine::UNSAFE_SOCKOPTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "), hint = did_you_mean(*.suggestion))]
    UnknownUnsafeSockopt {
        /// The name as written.
        found: String,
        /// The name it probably means, if any.
        suggestion: Option<&'static str>,
    },
    /// A `namespaces` entry other than net, user and mount.
    #[error("unknown namespace `{0}`; expected \"net\", \"user\" or \"mount\"")]
    UnknownNamespace(String),
    /// A jail address that is not a unicast IP address.
    #[error("jail address `{0}` must be one IPv4 or IPv6 unicast address (not 0.0.0.0, ::, or multicast)")]
    BadJailAddress(String),
    /// Two jail addresses of one family.
    #[error("a second jail address of the same family (`{0}`); give at most one IPv4 and one IPv6 address")]
    TwoJailAddresses(String),
    /// `source_cmsgs = true` together with a jail address, which it would let the sandbox
    /// leave.
    #[error("`source_cmsgs = true` would let the sandbox choose a source other than its jail address; remove one of them")]
    SourceCmsgsWithJail,
    /// `allow_unsafe_sockopts` names an option that chooses the source, together with a jail
    /// address, which it would let the sandbox leave.
    #[error("`allow_unsafe_sockopts` names {0}, which would let the sandbox choose a source other than its jail address; remove one of them")]
    UnsafeSockoptWithJail(&'static str),
    /// A `[sockets] allow` entry that is not `FAMILY:TYPE`.
    #[error("socket entry `{0}` is not FAMILY:TYPE, FAMILY:TYPE:PROTOCOL or *:* (e.g. \"inet:stream\", \"unix:*\", \"inet:stream:sctp\", \"netlink:raw:route\")")]
    BadSocketEntry(String),
    /// `[sockets] refuse` is neither `EAFNOSUPPORT` nor `EPERM`.
    #[error("unknown `sockets.refuse` errno `{found}`; expected \"EAFNOSUPPORT\" or \"EPERM\"{hint}", hint = did_you_mean(*.suggestion))]
    UnknownSocketsRefuse {
        /// The value as written.
        found: String,
        /// The value it probably means (`EPERM` for `eperm`), if any.
        suggestion: Option<&'static str>,
    },
    /// An unknown socket family name.
    #[error(
        "unknown socket family `{0}`; expected unix, inet, inet6, netlink, packet, vsock or a number"
    )]
    UnknownFamily(String),
    /// An unknown protocol name in a socket entry of an IP family.
    #[error(
        "unknown protocol `{0}`; expected tcp, udp, sctp, mptcp, udplite, icmp, icmpv6 or a number"
    )]
    UnknownProtocol(String),
    /// An unknown protocol name in a netlink socket entry.
    #[error(
        "unknown netlink protocol `{0}`; expected route, audit, xfrm, netfilter, generic, sock_diag, kobject_uevent or another of the kernel's NETLINK_ names in lower case, or a number"
    )]
    UnknownNetlinkProtocol(String),
    /// A protocol name in a socket entry of a family whose protocols have no names here.
    #[error("protocol `{protocol}` of family `{family}` has no name here; write its number")]
    UnnamedProtocol {
        /// The family as written.
        family: String,
        /// The protocol as written.
        protocol: String,
    },
    /// An unknown socket type name.
    #[error("unknown socket type `{0}`; expected stream, dgram, seqpacket, raw or *")]
    UnknownSocketType(String),
    /// An endpoint that is not `PROTO://HOST:PORT`.
    #[error("endpoint `{0}` is not PROTO://HOST:PORT (e.g. \"tcp://127.0.0.1:80\")")]
    BadEndpoint(String),
    /// An endpoint protocol other than tcp, udp, any.
    #[error("unknown protocol `{0}`; expected tcp, udp or any")]
    UnknownProto(String),
    /// An endpoint without `:PORT`.
    #[error("endpoint `{0}` has no port; add :PORT, :FIRST-LAST or :*")]
    MissingPort(String),
    /// A port that is not a number, a range or `*`.
    #[error("invalid port `{0}`; expected a number 0-65535, a range FIRST-LAST or *")]
    BadPort(String),
    /// A port number above 65535.
    #[error("port {0} is out of range (0-65535)")]
    PortOutOfRange(String),
    /// A port range whose first port is greater than its last.
    #[error("port range {first}-{last} is reversed; write {last}-{first}")]
    ReversedPortRange {
        /// First port as written.
        first: u16,
        /// Last port as written.
        last: u16,
    },
    /// A host name that is not a valid DNS name, or a `*` elsewhere than as the whole first
    /// label.
    #[error("invalid host name `{name}`: {reason}")]
    BadHostName {
        /// The host as written.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A host name in a `bind` entry: a bind is to a local address.
    #[error(
        "`bind` takes addresses, not host names (`{0}`); use an address, a CIDR, `loopback` or `*`"
    )]
    HostNameInBind(String),
    /// A host name in a rule added to a sandbox at run time ([`crate::SandboxRules`]).
    #[error(
        "run-time rules take addresses, not host names (`{0}`); resolve the name first, or name it in the policy"
    )]
    NameInRuntimeRule(String),
    /// A unix socket given to [`crate::SandboxRules::serve`], which serves IP connects only.
    #[error("a served destination is an IP one (`tcp://ADDR:PORT`), not a unix socket (`{0}`)")]
    UnixInServeRule(String),
    /// An IPv6 address or prefix without brackets.
    #[error("IPv6 addresses must be in brackets, as in \"tcp://[::1]:80\" or \"any://[fd00::/8]:*\" (in `{0}`)")]
    UnbracketedIpv6(String),
    /// Something in the host position that is no address.
    #[error("invalid address `{0}` (IPv4 bare, IPv6 in brackets)")]
    BadAddress(String),
    /// A prefix length that is not a number or too long for the address family.
    #[error("invalid prefix length in `{0}`; IPv4 takes /0 to /32, IPv6 /0 to /128")]
    BadPrefix(String),
    /// A CIDR with bits set after the prefix.
    #[error("`{given}` has host bits set; did you mean `{suggestion}`?")]
    HostBitsSet {
        /// The CIDR as written.
        given: String,
        /// The network it probably means.
        suggestion: String,
    },
    /// `0.0.0.0` or `::` as a single destination address: the kernel sends there to the
    /// socket's own source address (loopback only when it has none), and the broker decides
    /// on that address, so a rule naming the unspecified address would never match.
    #[error("`{0}` is the unspecified address, which names no destination (the kernel sends it to the socket's own address); write `loopback` or `*`")]
    UnspecifiedAddress(String),
    /// A `unix` entry that is neither an absolute path nor `@name`.
    #[error(
        "unix path `{0}` is relative; use an absolute path glob, or @NAME for an abstract socket"
    )]
    RelativeUnixPath(String),
    /// `**` inside a path component, as in `/a/b**`.
    #[error("`**` must be a whole path component in `{0}`")]
    BadDoubleStar(String),
    /// A backslash in a `unix` entry that does not escape `*`, `?` or a backslash.
    #[error("in unix pattern `{0}` a `\\` must be followed by `*`, `?` or `\\` (in a TOML basic string write it `\\\\`)")]
    BadEscape(String),
    /// A `.` or `..` component in a path glob.
    #[error("unix path `{0}` must not contain `.` or `..` components")]
    DotComponent(String),
    /// A `[bridge]` entry that is not a `tcp://` or `udp://` endpoint: only TCP and UDP
    /// are bridged.
    #[error("bridge entry `{0}` must be a tcp:// or udp:// endpoint: only TCP and UDP calls are bridged (unix sockets and other protocols stay in the sandbox's namespace)")]
    BridgeNotTcpOrUdp(String),
    /// A `[bridge] netns` that is neither `broker` nor an absolute path without `..`.
    #[error("invalid `bridge.netns` {found:?}: {reason}; expected \"broker\" or an absolute path to a namespace file such as \"/proc/PID/ns/net\" or \"/run/netns/NAME\"")]
    BadBridgeNetns {
        /// The value as written.
        found: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn did_you_mean(suggestion: Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}`?"),
        None => String::new(),
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key`, if within edit distance 2.
pub(crate) fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("conect", "connect"), 1);
        assert_eq!(edit_distance("deby", "deny"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggest_picks_nearest_within_two() {
        assert_eq!(suggest("defualt", &["default", "deny"]), Some("default"));
        assert_eq!(suggest("zzzzzz", &["default", "deny"]), None);
    }

    #[test]
    fn unknown_key_message_has_hint() {
        let k = PolicyErrorKind::UnknownKey {
            key: "conect".into(),
            suggestion: Some("connect"),
        };
        assert_eq!(
            k.to_string(),
            "unknown key `conect`; did you mean `connect`?"
        );
        let k = PolicyErrorKind::UnknownKey {
            key: "zz".into(),
            suggestion: None,
        };
        assert_eq!(k.to_string(), "unknown key `zz`");
    }
}
