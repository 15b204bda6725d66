//! The loaded policy and the decisions it gives.

use std::time::Duration;

use crate::bridge::Bridge;
use crate::confine::Confinement;
use crate::endpoint::Endpoint;
use crate::glob::UnixPattern;
use crate::limits::Limits;
use crate::names::HostPattern;
use crate::sockets::SocketRule;

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
    /// [`Names`](crate::Names) answered ([`crate::NameMatch::Yes`]), or, for a `[[deny]]` entry whose name
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
    /// `[bridge]`, when the policy has the table.
    pub(crate) bridge: Option<Bridge>,
}

impl Policy {
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

    /// The `[bridge]` table: which allowed calls the broker serves from another network
    /// namespace ([`Bridge::bridges`]), and which namespace ([`Bridge::netns`]). `None`
    /// when the policy has no such table: every call is performed in the sandbox's own
    /// namespace. A bridge never allows a call: the policy decides first.
    ///
    /// ```
    /// use netjail_policy::{BridgeNetns, Policy};
    ///
    /// let p = Policy::from_toml("name = \"p\"\n[bridge]\nnetns = \"broker\"\n", "p.toml")?;
    /// assert_eq!(p.bridge().map(|b| b.netns()), Some(&BridgeNetns::Broker));
    /// assert_eq!(Policy::from_toml("name = \"p\"\n", "p.toml")?.bridge(), None);
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref()
    }

    /// Every host name the policy's entries name, each once, in the order the evaluator meets
    /// them (the `[[deny]]` tables, then `[[allow]]`, then `[[ask]]`, each in file order;
    /// `connect` before `send` within a table; then `[bridge] connect`): what a broker
    /// resolves ahead of time.
    pub fn host_patterns(&self) -> Vec<HostPattern> {
        let mut out: Vec<HostPattern> = Vec::new();
        let tables = self
            .deny
            .iter()
            .chain(&self.allow)
            .chain(&self.ask)
            .flat_map(|r| r.connect.iter().chain(&r.send))
            .filter_map(|e| e.host_pattern());
        let bridge = self.bridge.iter().flat_map(|b| b.host_patterns());
        for p in tables.chain(bridge) {
            if !out.contains(p) {
                out.push(p.clone());
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
            || self
                .bridge
                .as_ref()
                .is_some_and(|b| b.host_patterns().next().is_some())
    }
}
