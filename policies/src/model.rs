//! The loaded policy and the decisions it gives.

use std::time::Duration;

use crate::confine::Confinement;
use crate::endpoint::Endpoint;
use crate::error::PolicyError;
use crate::glob::UnixPattern;
use crate::limits::Limits;
use crate::names::{HostPattern, Names, NoNames};
use crate::sockets::SocketRule;
use crate::target::Request;

/// What happens to a request that no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow it (the policy only audits).
    Allow,
    /// Refuse it with `EPERM` (rule N4: the default).
    Deny,
    /// Hold it for an operator (`default = "ask"`).
    Ask,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Perform the call.
    Allow,
    /// Refuse the call with this errno (positive, e.g. `libc::EPERM`).
    Deny {
        /// The errno the call fails with.
        errno: i32,
    },
    /// Hold the call for an operator, who allows or denies it; with no answer in time, or
    /// no operator connected, the policy's `ask_fallback` decides.
    Ask,
}

/// A verdict and the rule that gave it, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, deny, or ask an operator.
    pub verdict: Verdict,
    /// Which rule decided: `deny[0].connect[1]`, `allow[2].unix[0]`, `ask[1].send[0]` (table
    /// index, entry index, both from 0 in file order), `default`, `unspec` (an `AF_UNSPEC`
    /// connect), `invalid-target` (a unix path that is relative or still has `..`: refused),
    /// `jail-address` (rule J2), `privileged-port` (rule J8: no entry names the privileged
    /// port, and the default never grants one), or `sockets.netlink` (a listed netlink
    /// socket's bind or message, rule L4). The broker names in the same field what it decides
    /// without the tables, among them `sockets` (a `socket()` the list refuses, or a netlink
    /// route socket the broker made) and `netlink-route:change` and
    /// `netlink-route:destination` (a message on a netlink route socket that would change
    /// the system or reach another socket, rule N1).
    pub rule: String,
    /// The host name the deciding entry covered the destination by: the name the
    /// [`Names`] answered ([`crate::NameMatch::Yes`]), or, for a `[[deny]]` entry whose name
    /// could not be resolved ([`crate::NameMatch::Unknown`]), the entry's pattern as written
    /// (`*.example.com`). `None` when the entry names no host, or no entry decided.
    pub host: Option<String>,
}

/// The errnos a `[[deny]]` table may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Errno {
    Eperm,
    Econnrefused,
    Eacces,
    Enetunreach,
    Ehostunreach,
}

impl Errno {
    const ALL: [Errno; 5] = [
        Errno::Eperm,
        Errno::Econnrefused,
        Errno::Eacces,
        Errno::Enetunreach,
        Errno::Ehostunreach,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Errno::Eperm => "EPERM",
            Errno::Econnrefused => "ECONNREFUSED",
            Errno::Eacces => "EACCES",
            Errno::Enetunreach => "ENETUNREACH",
            Errno::Ehostunreach => "EHOSTUNREACH",
        }
    }

    pub(crate) fn value(self) -> i32 {
        match self {
            Errno::Eperm => libc::EPERM,
            Errno::Econnrefused => libc::ECONNREFUSED,
            Errno::Eacces => libc::EACCES,
            Errno::Enetunreach => libc::ENETUNREACH,
            Errno::Ehostunreach => libc::EHOSTUNREACH,
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// One `[[allow]]`, `[[deny]]` or `[[ask]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) connect: Vec<Endpoint>,
    /// Datagram destinations (`sendto`, `sendmsg`, `sendmmsg`).
    pub(crate) send: Vec<Endpoint>,
    /// Local addresses (`bind`, and the implicit bind of `listen`).
    pub(crate) bind: Vec<Endpoint>,
    /// Unix sockets, for every operation (connect, send, bind).
    pub(crate) unix: Vec<UnixPattern>,
    /// Only meaningful in `[[deny]]` tables.
    pub(crate) errno: Errno,
}

/// `ask_timeout` when the policy does not set it.
pub(crate) const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// A loaded, validated policy.
///
/// Build one with [`Policy::from_toml`] or [`Policy::builder`]; ask it with
/// [`Policy::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) default: Action,
    pub(crate) sockets: Vec<SocketRule>,
    /// `[sockets] refuse`: the errno of `socket()` of a family `sockets` does not name.
    pub(crate) sockets_refuse: i32,
    pub(crate) deny: Vec<Rule>,
    pub(crate) allow: Vec<Rule>,
    pub(crate) ask: Vec<Rule>,
    /// How long a held call waits for an operator.
    pub(crate) ask_timeout: Duration,
    /// `Allow` or `Deny { errno: EPERM }`.
    pub(crate) ask_fallback: Verdict,
    pub(crate) confine: Confinement,
    /// `[limits]` (rule N3).
    pub(crate) limits: Limits,
}

impl Policy {
    /// Parses and validates a policy. `origin` names the source in errors (a file path or
    /// `builtin:NAME`). Keys the broker does not enforce yet are errors, never ignored.
    ///
    /// A policy that `extends` a built-in policy is resolved with it; one that extends a file
    /// is refused (this reads no files: see [`Policy::from_toml_with`]).
    pub fn from_toml(source: &str, origin: &str) -> Result<Policy, PolicyError> {
        Self::from_toml_with(source, origin, &[""; 0], &mut crate::compose::no_files)
    }

    /// Parses, resolves and validates a policy that may extend others and take parameters.
    ///
    /// `extends = "NAME"` names a built-in policy, or else a file that `loader` reads (see
    /// [`ParentLoader`](crate::ParentLoader)); parents are resolved first, at most
    /// [`MAX_EXTENDS_DEPTH`](crate::MAX_EXTENDS_DEPTH) policies in a chain, and a cycle is an
    /// error at the `extends` key that closes it. The child's top-level keys replace its
    /// parent's, its rule tables follow its parent's, and the name is the child's. Then each
    /// of `sets` (`KEY=VALUE`, as `--set` takes them) replaces one top-level key, in order.
    /// An error inside a parent names the parent's origin, line and column; one in a `--set`
    /// has origin `--set`, the parameter's place as its line and its column within it.
    ///
    /// ```
    /// use netjail_policy::{Op, Policy, Proto, Request, Target, Verdict};
    ///
    /// let base = "name = \"base\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n";
    /// let mut loader = |name: &str, _from: &str| match name {
    ///     "base.toml" => Ok(("base.toml".to_owned(), base.to_owned())),
    ///     _ => Err(format!("no file `{name}`")),
    /// };
    /// let child = "name = \"web\"\nextends = \"base.toml\"\n[[allow]]\nconnect = [\"tcp://127.0.0.1:*\"]\n";
    /// let p = Policy::from_toml_with(child, "web.toml", &["default=allow"], &mut loader)?;
    /// assert_eq!(p.name(), "web");
    /// let connect = |port| Request {
    ///     op: Op::Connect,
    ///     target: Target::Inet { proto: Proto::Tcp, addr: ([127, 0, 0, 1], port).into() },
    /// };
    /// // The parent's deny beats the child's allow.
    /// assert_eq!(p.evaluate(&connect(22)).rule, "deny[0].connect[0]");
    /// assert_eq!(p.evaluate(&connect(80)).verdict, Verdict::Allow);
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn from_toml_with<S: AsRef<str>>(
        source: &str,
        origin: &str,
        sets: &[S],
        loader: &mut crate::ParentLoader<'_>,
    ) -> Result<Policy, PolicyError> {
        crate::compose::resolve(source, origin, sets, loader).map(|(policy, _)| policy)
    }

    /// As [`Policy::from_toml_with`], and also what `netjail policy check` reports beyond
    /// errors: entries that can never decide because an entry checked before them covers
    /// them ([`crate::Finding`]), with the file, line and column of both. A policy with
    /// findings still loads; they are mistakes of intent, not of form.
    ///
    /// ```
    /// use netjail_policy::{no_files, FindingKind, Policy};
    ///
    /// let text = "name = \"p\"\n[[deny]]\nconnect = [\"tcp://127.0.0.0/8:*\"]\n\
    ///             [[allow]]\nconnect = [\"tcp://127.0.0.1:8080\"]\n";
    /// let (_, found) = Policy::check_toml(text, "p.toml", &[""; 0], &mut no_files)?;
    /// assert_eq!(found[0].kind, FindingKind::Unreachable);
    /// assert_eq!((found[0].entry.line, found[0].entry.col), (5, 12));
    /// assert_eq!(found[0].by.rule, "deny[0].connect[0]");
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn check_toml<S: AsRef<str>>(
        source: &str,
        origin: &str,
        sets: &[S],
        loader: &mut crate::ParentLoader<'_>,
    ) -> Result<(Policy, Vec<crate::Finding>), PolicyError> {
        crate::check::check(source, origin, sets, loader)
    }

    /// The policy's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What happens when no rule matches (`deny` unless the policy says otherwise).
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// How long the broker holds a call that the policy asks about ([`Verdict::Ask`]) for an
    /// operator's answer: `ask_timeout`, 30 seconds unless the policy says otherwise, at most
    /// 24 hours. After it [`Policy::ask_fallback`] decides.
    pub fn ask_timeout(&self) -> Duration {
        self.ask_timeout
    }

    /// What a held call gets when no operator answers within [`Policy::ask_timeout`], or when
    /// no operator is connected: `Deny { errno: EPERM }` (`ask_fallback = "deny"`, the
    /// default) or `Allow` (`ask_fallback = "allow"`). Never [`Verdict::Ask`].
    pub fn ask_fallback(&self) -> Verdict {
        self.ask_fallback
    }

    /// Whether some request can get [`Verdict::Ask`]: the policy has `[[ask]]` tables or
    /// `default = "ask"`. A broker serves such a sandbox so that a held call never stops its
    /// other calls.
    pub fn may_ask(&self) -> bool {
        self.default == Action::Ask || !self.ask.is_empty()
    }

    /// The `socket()` allow-list (rule L2): the `[sockets] allow` entries, or the default
    /// list (`unix:*`, `inet:stream`, `inet:dgram`, `inet6:stream`, `inet6:dgram`,
    /// `netlink:raw:route`, `netlink:dgram:route`) when the policy has no `[sockets] allow`
    /// key.
    pub fn sockets(&self) -> &[SocketRule] {
        &self.sockets
    }

    /// The errno (positive) that `socket()` and `socketpair()` of a family
    /// [`Policy::sockets`] does not name fail with: `[sockets] refuse`,
    /// `libc::EAFNOSUPPORT` (what a kernel without the family says, so that programs fall
    /// back quietly) unless the policy says `"EPERM"` (rule D1: the `disablenetwork`
    /// profile). A type or protocol the list does not name, of a family it does, is always
    /// `EPERM`.
    ///
    /// ```
    /// use netjail_policy::{builtin, Policy};
    ///
    /// let p = Policy::from_toml("name = \"p\"\n[sockets]\nrefuse = \"EPERM\"\n", "p.toml")?;
    /// assert_eq!(p.sockets_refuse(), libc::EPERM);
    /// // The default list, as without the table.
    /// assert_eq!(p.sockets().len(), 7);
    /// let dn = Policy::from_toml(builtin("disablenetwork").unwrap(), "disablenetwork")?;
    /// assert_eq!(dn.sockets_refuse(), libc::EPERM);
    /// let jail = Policy::from_toml(builtin("jail").unwrap(), "jail")?;
    /// assert_eq!(jail.sockets_refuse(), libc::EAFNOSUPPORT);
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn sockets_refuse(&self) -> i32 {
        self.sockets_refuse
    }

    /// What a `socket()` or `socketpair()` (`call`) with these raw system call arguments
    /// fails with under [`Policy::sockets`]: the errno (positive), or `None` when the list
    /// allows it. The arguments are read as the seccomp filter compiled from the list reads
    /// them, so that the broker answers each call the filter sends it exactly as the list
    /// says: an unlisted family (one above [`crate::MAX_FAMILY`] or with high bits set too)
    /// fails with [`Policy::sockets_refuse`], an unlisted type or protocol of a listed family
    /// with `EPERM`.
    ///
    /// ```
    /// use netjail_policy::{builtin, Policy, SocketCall};
    ///
    /// let lo = Policy::from_toml(builtin("loopback-only").unwrap(), "loopback-only")?;
    /// let udplite = (libc::AF_INET6 as u64, libc::SOCK_DGRAM as u64, libc::IPPROTO_UDPLITE as u64);
    /// let refused = lo.socket_refusal(SocketCall::Socket, udplite.0, udplite.1, udplite.2);
    /// assert_eq!(refused, Some(libc::EPERM));
    /// let all = Policy::from_toml(builtin("allow-all").unwrap(), "allow-all")?;
    /// assert_eq!(all.socket_refusal(SocketCall::Socket, udplite.0, udplite.1, udplite.2), None);
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn socket_refusal(
        &self,
        call: crate::SocketCall,
        family: u64,
        sock_type: u64,
        protocol: u64,
    ) -> Option<i32> {
        crate::sockets::socket_refusal(
            &self.sockets,
            self.sockets_refuse,
            call,
            family,
            sock_type,
            protocol,
        )
    }

    /// The settings the launcher compiles into the sandbox and the broker applies besides the
    /// rules: jail address, kept capabilities, ioctl mode, namespaces, Landlock, control
    /// messages.
    pub fn confinement(&self) -> &Confinement {
        &self.confine
    }

    /// The `[limits]` table (rule N3): every key [`crate::Limit::Unlimited`] unless the
    /// policy says otherwise. The broker enforces them per sandbox.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decides one request, knowing no host names ([`NoNames`]): entries with a host name
    /// match nothing, in `[[deny]]` tables too, which is not failing closed. A broker that
    /// enforces a policy with host names ([`Policy::has_host_names`]) decides with
    /// [`Policy::evaluate_with`]. Pure and cheap; see [`Decision::rule`] for what it reports.
    pub fn evaluate(&self, request: &Request) -> Decision {
        crate::eval::evaluate(self, request, &NoNames, None)
    }

    /// Decides one request, asking `names` about the entries with a host name (`connect` and
    /// `send` entries only). Tables are checked in the order of [`Policy::evaluate`];
    /// `names` is asked only for an entry whose protocol and ports cover the request, with
    /// the canonical destination address. Failing closed, an entry of a `[[deny]]` table
    /// matches when the answer is [`crate::NameMatch::Yes`] or [`crate::NameMatch::Unknown`];
    /// one of an `[[allow]]` or `[[ask]]` table only on [`crate::NameMatch::Yes`].
    /// [`Decision::host`] tells which name decided.
    pub fn evaluate_with(&self, request: &Request, names: &dyn Names) -> Decision {
        crate::eval::evaluate(self, request, names, None)
    }

    /// As [`Policy::evaluate_with`], with a layer of decisions between the policy's
    /// `[[deny]]` tables and its `[[allow]]` tables: what an embedding program decides per
    /// sandbox at run time ([`crate::SandboxRules`], a decision hook).
    ///
    /// `layer` is called with the canonical request (see [`crate::Target::canonical`]; a
    /// bind keeps its wildcard address) once nothing before it decided: not for what the
    /// policy settles before its tables (a jail-address bind, an `AF_UNSPEC` connect, a
    /// relative unix path, another address family, a listed netlink socket), nor when a
    /// `[[deny]]` entry covers the request. A `Some` decision is final; `None` lets the
    /// policy go on with `[[allow]]`, `[[ask]]` and the default. So a layer may allow what
    /// the policy would refuse or ask about, but never what it denies.
    ///
    /// ```
    /// use netjail_policy::{Decision, NoNames, Op, Policy, Proto, Request, Target, Verdict};
    ///
    /// let policy = Policy::from_toml(
    ///     "name = \"p\"\n[[deny]]\nconnect = [\"tcp://127.0.0.1:22\"]\n",
    ///     "p.toml",
    /// )?;
    /// let connect = |addr: &str| Request {
    ///     op: Op::Connect,
    ///     target: Target::Inet { proto: Proto::Tcp, addr: addr.parse().unwrap() },
    /// };
    /// let mut allow_all = |_: &Request| {
    ///     Some(Decision { verdict: Verdict::Allow, rule: "hook".into(), host: None })
    /// };
    /// let d = policy.evaluate_layered(&connect("127.0.0.1:80"), &NoNames, &mut allow_all);
    /// assert_eq!((d.verdict, d.rule.as_str()), (Verdict::Allow, "hook"));
    /// // The policy's deny table comes first.
    /// let d = policy.evaluate_layered(&connect("127.0.0.1:22"), &NoNames, &mut allow_all);
    /// assert_eq!(d.rule, "deny[0].connect[0]");
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn evaluate_layered(
        &self,
        request: &Request,
        names: &dyn Names,
        layer: &mut dyn FnMut(&Request) -> Option<Decision>,
    ) -> Decision {
        crate::eval::evaluate(self, request, names, Some(layer))
    }

    /// Every host name the policy's entries name, each once, in the order the evaluator meets
    /// them (the `[[deny]]` tables, then `[[allow]]`, then `[[ask]]`, each in file order;
    /// `connect` before `send` within a table): what a broker resolves ahead of time.
    pub fn host_patterns(&self) -> Vec<HostPattern> {
        let mut out: Vec<HostPattern> = Vec::new();
        for rule in self.deny.iter().chain(&self.allow).chain(&self.ask) {
            for e in rule.connect.iter().chain(&rule.send) {
                if let Some(p) = e.host_pattern() {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// Whether any entry names a host (see [`Policy::host_patterns`]).
    pub fn has_host_names(&self) -> bool {
        self.deny
            .iter()
            .chain(&self.allow)
            .chain(&self.ask)
            .flat_map(|r| r.connect.iter().chain(&r.send))
            .any(|e| e.host_pattern().is_some())
    }

    /// The policy in canonical TOML (what `netjail policy show` prints): every key explicit,
    /// endpoints and paths normalised. It parses back to an equivalent policy.
    pub fn to_toml(&self) -> String {
        crate::emit::to_toml(self)
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
