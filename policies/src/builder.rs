//! A policy built in code: the model of the TOML format, its entries written as the same
//! strings, checked by the same functions.

use std::marker::PhantomData;

use crate::bridge::{self, Bridge};
use crate::confine::{Confinement, IoctlMode, LandlockMode};
use crate::endpoint;
use crate::error::{BuilderKey, PolicyError, PolicyErrorKind};
use crate::glob;
use crate::limits::Limits;
use crate::model::{Action, Policy, Rule, Verdict, DEFAULT_ASK_TIMEOUT};
use crate::parse;
use crate::sockets;

impl Policy {
    /// Starts a policy named `name`, built in code: see [`PolicyBuilder`].
    pub fn builder(name: impl Into<String>) -> PolicyBuilder {
        PolicyBuilder {
            name: name.into(),
            default: Action::Deny,
            ask_timeout: None,
            ask_fallback: None,
            jail_address: None,
            keep_capabilities: Vec::new(),
            ioctl: IoctlMode::default(),
            namespaces: Vec::new(),
            allow_unsafe_sockopts: Vec::new(),
            scm_rights: true,
            fcntl_setown: true,
            source_cmsgs: false,
            landlock: LandlockMode::default(),
            sockets: None,
            sockets_refuse: None,
            deny: Vec::new(),
            allow: Vec::new(),
            ask: Vec::new(),
            limits: Limits::default(),
            bridge: None,
        }
    }
}

/// A [`Policy`] built in code, with the model of the TOML format (see `docs/policy.md`).
///
/// Start one with [`Policy::builder`], set keys with its methods, add `[[deny]]`,
/// `[[allow]]` and `[[ask]]` tables with [`PolicyBuilder::deny`], [`PolicyBuilder::allow`]
/// and [`PolicyBuilder::ask`], and check it all with [`PolicyBuilder::build`].
///
/// Entries (endpoints, unix globs, socket entries, jail addresses, capability names, errno
/// names, the `ask_timeout` duration) are the strings the TOML format takes, read by the
/// parser's own functions: a builder accepts exactly what a policy file accepts, gives the
/// same [`Policy`] for it, and refuses the rest with the same [`PolicyErrorKind`]. Settings
/// that a type of this crate says completely ([`Action`], [`IoctlMode`], [`LandlockMode`],
/// the booleans) are given as that type.
///
/// Methods that set a single value replace an earlier call's value; methods that take
/// entries add them after those of earlier calls. Nothing is checked before
/// [`PolicyBuilder::build`].
///
/// A built policy prints as canonical TOML ([`Policy::to_toml`]) that parses back to an
/// equal policy, so it can be shipped to a broker as text.
///
/// ```
/// use netjail_policy::{Action, Op, Policy, Proto, Request, Target, Verdict};
///
/// let policy = Policy::builder("web-client")
///     .default(Action::Deny)
///     .ask_timeout("1m")
///     .sockets(["inet:stream", "inet:dgram", "unix:*"])
///     .deny(|t| t.connect("tcp://169.254.169.254:*").errno("ECONNREFUSED"))
///     .allow(|t| t.connect("tcp://127.0.0.1:8080").unix("/run/dbus/*"))
///     .ask(|t| t.connect("tcp://*:443"))
///     .build()?;
///
/// // The same policy as its TOML says.
/// assert_eq!(Policy::from_toml(&policy.to_toml(), "shipped")?, policy);
///
/// let d = policy.evaluate(&Request {
///     op: Op::Connect,
///     target: Target::Inet { proto: Proto::Tcp, addr: "169.254.169.254:80".parse().unwrap() },
/// });
/// assert_eq!(d.verdict, Verdict::Deny { errno: libc::ECONNREFUSED });
/// assert_eq!(d.rule, "deny[0].connect[0]");
///
/// // Mistakes are reported by key and value, with the parser's message.
/// let err = Policy::builder("web-client")
///     .allow(|t| t.connect("tcp://loopback:8080"))
///     .allow(|t| t.connect("tcp://127.0.0.1:99999"))
///     .build()
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "builder:web-client: allow[1].connect[0] `tcp://127.0.0.1:99999`: port 99999 is out of range (0-65535)"
/// );
///
/// // A list of entries: one call per entry.
/// let ports = [8080, 8081];
/// let policy = Policy::builder("ports")
///     .allow(|t| ports.iter().fold(t, |t, p| t.connect(format!("tcp://loopback:{p}"))))
///     .build()?;
/// assert!(policy.to_toml().contains(r#"connect = ["tcp://loopback:8080", "tcp://loopback:8081"]"#));
/// # Ok::<(), netjail_policy::PolicyError>(())
/// ```
///
/// # Errors
///
/// [`PolicyBuilder::build`] reports the first mistake, as the parser does, checking in the
/// order in which [`Policy::to_toml`] prints the keys: `name`, `ask_timeout`,
/// `ask_fallback`, `jail_address`, `keep_capabilities`, `namespaces`,
/// `allow_unsafe_sockopts`, `sockets.allow`,
/// `sockets.refuse`, `bridge.netns`, `bridge.connect`, `bridge.bind` (then that the bridge
/// has a namespace), then
/// the `[[deny]]`, `[[allow]]` and `[[ask]]` tables in the order they were added (in each
/// its `errno`, then its `connect`, `send`, `bind` and `unix` entries, then that it has
/// one), and last `source_cmsgs(true)` together with a `jail_address` call. That is the
/// order in which the parser meets the same policy written in that order, so the first
/// mistake is the same one. Fixing it may reveal the next.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder {
    name: String,
    default: Action,
    ask_timeout: Option<String>,
    ask_fallback: Option<Action>,
    /// `None` until `jail_address` is called (the key is present then, even if empty).
    jail_address: Option<Vec<String>>,
    keep_capabilities: Vec<String>,
    ioctl: IoctlMode,
    namespaces: Vec<String>,
    allow_unsafe_sockopts: Vec<String>,
    scm_rights: bool,
    fcntl_setown: bool,
    source_cmsgs: bool,
    landlock: LandlockMode,
    /// `None`: the default list.
    sockets: Option<Vec<String>>,
    /// `None`: `EAFNOSUPPORT`.
    sockets_refuse: Option<String>,
    deny: Vec<TableBuilder<DenyTable>>,
    allow: Vec<TableBuilder<AllowTable>>,
    ask: Vec<TableBuilder<AllowTable>>,
    limits: Limits,
    /// `None` until `bridge` is called.
    bridge: Option<BridgeBuilder>,
}

impl PolicyBuilder {
    /// `[limits]` (rule N3): every key [`crate::Limit::Unlimited`] unless set.
    ///
    /// ```
    /// use netjail_policy::{Limit, Limits, Policy};
    ///
    /// let mut limits = Limits::default();
    /// limits.max_connections = Limit::AtMost(8);
    /// let p = Policy::builder("capped").limits(limits).build()?;
    /// assert_eq!(p.limits().max_connections, Limit::AtMost(8));
    /// assert!(p.to_toml().contains("max_connections = 8\n"));
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// `default`: what happens to a request no table covers. [`Action::Deny`] unless set.
    pub fn default(mut self, action: Action) -> Self {
        self.default = action;
        self
    }

    /// `ask_timeout`: how long a held call waits for an operator, as the format writes a
    /// duration (`"30s"`, `"500ms"`, `"1m30s"`; see [`crate::parse_duration`]). `"30s"`
    /// unless set.
    pub fn ask_timeout(mut self, duration: impl Into<String>) -> Self {
        self.ask_timeout = Some(duration.into());
        self
    }

    /// `ask_fallback`: what a held call gets when no operator answers, [`Action::Deny`]
    /// (the default) or [`Action::Allow`]. [`Action::Ask`] is refused at
    /// [`PolicyBuilder::build`], as `ask_fallback = "ask"` is in a file.
    pub fn ask_fallback(mut self, action: Action) -> Self {
        self.ask_fallback = Some(action);
        self
    }

    /// `jail_address` entries: at most one IPv4 and one IPv6 unicast address (`"127.0.0.2"`,
    /// `"[fd00::2]"` or `"fd00::2"`). Calling it, even with no entries, sets the key, which
    /// `source_cmsgs(true)` is refused with.
    pub fn jail_address<S: Into<String>>(mut self, addresses: impl IntoIterator<Item = S>) -> Self {
        self.jail_address
            .get_or_insert_with(Vec::new)
            .extend(addresses.into_iter().map(Into::into));
        self
    }

    /// `keep_capabilities` entries: names from [`crate::NETWORK_CAPABILITIES`]
    /// (`"CAP_NET_BIND_SERVICE"`); a name given twice is kept once.
    pub fn keep_capabilities<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.keep_capabilities
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// `ioctl`: which `ioctl` requests the sandbox may make. [`IoctlMode::Any`] unless set.
    pub fn ioctl(mut self, mode: IoctlMode) -> Self {
        self.ioctl = mode;
        self
    }

    /// `namespaces` entries: `"net"`, `"user"`, `"mount"`, the new namespaces the sandbox may
    /// create (and, for `"mount"`, the mount calls it may make).
    pub fn namespaces<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.namespaces.extend(names.into_iter().map(Into::into));
        self
    }

    /// `allow_unsafe_sockopts` entries: names from [`crate::UNSAFE_SOCKOPTS`]
    /// (`"IP_MULTICAST_IF"`), the socket options the filter otherwise refuses; a name given
    /// twice is kept once.
    pub fn allow_unsafe_sockopts<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allow_unsafe_sockopts
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// `scm_rights`: whether `sendmsg` may pass descriptors. `true` unless set.
    pub fn scm_rights(mut self, allowed: bool) -> Self {
        self.scm_rights = allowed;
        self
    }

    /// `fcntl_setown`: whether `F_SETOWN`, `F_SETOWN_EX` and `F_SETSIG` are allowed. `true`
    /// unless set.
    pub fn fcntl_setown(mut self, allowed: bool) -> Self {
        self.fcntl_setown = allowed;
        self
    }

    /// `source_cmsgs`: whether control messages that choose the source or the route are
    /// allowed. `false` unless set; `true` is refused together with `jail_address`.
    pub fn source_cmsgs(mut self, allowed: bool) -> Self {
        self.source_cmsgs = allowed;
        self
    }

    /// `landlock`: the Landlock mode. [`LandlockMode::BestEffort`] unless set.
    pub fn landlock(mut self, mode: LandlockMode) -> Self {
        self.landlock = mode;
        self
    }

    /// `[sockets] allow` entries, `FAMILY:TYPE[:PROTOCOL]` (`"inet:stream"`, `"unix:*"`,
    /// `"inet:stream:sctp"`). Without any call the policy has the default list (see
    /// [`Policy::sockets`]); a call with no entries (`.sockets([""; 0])`) gives the empty
    /// list, which refuses every `socket()`.
    pub fn sockets<S: Into<String>>(mut self, entries: impl IntoIterator<Item = S>) -> Self {
        self.sockets
            .get_or_insert_with(Vec::new)
            .extend(entries.into_iter().map(Into::into));
        self
    }

    /// `[sockets] refuse`: the errno `socket()` of a family the `sockets` list does not name
    /// fails with, `"EAFNOSUPPORT"` (the default: what a kernel without the family says) or
    /// `"EPERM"` (rule D1, as the `disablenetwork` profile has it). A second call replaces
    /// the first. See [`Policy::sockets_refuse`].
    ///
    /// ```
    /// use netjail_policy::Policy;
    ///
    /// let p = Policy::builder("quiet").sockets(["unix:*"]).sockets_refuse("EPERM").build()?;
    /// assert_eq!(p.sockets_refuse(), libc::EPERM);
    /// assert!(p.to_toml().contains("[sockets]\nallow = [\"unix:*\"]\nrefuse = \"EPERM\"\n"));
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn sockets_refuse(mut self, errno: impl Into<String>) -> Self {
        self.sockets_refuse = Some(errno.into());
        self
    }

    /// The `[bridge]` table, filled in by `table`: `.bridge(|b|
    /// b.netns("broker").connect("tcp://127.0.0.1:8080"))`. A policy has one bridge: a
    /// second call goes on filling the same table (its namespace replaces the first call's,
    /// its entries come after the first call's). See [`Policy::bridge`].
    ///
    /// ```
    /// use netjail_policy::{BridgeNetns, Policy};
    ///
    /// let p = Policy::builder("published")
    ///     .allow(|t| t.bind("tcp://0.0.0.0:8080"))
    ///     .bridge(|b| b.netns("/run/netns/host").bind("tcp://0.0.0.0:8080"))
    ///     .build()?;
    /// assert_eq!(p.bridge().unwrap().netns(), &BridgeNetns::Path("/run/netns/host".into()));
    /// assert_eq!(Policy::from_toml(&p.to_toml(), "shipped")?, p);
    ///
    /// // The parser's checks, and its messages.
    /// let err = Policy::builder("b").bridge(|b| b.netns("run/netns/host")).build().unwrap_err();
    /// assert_eq!(err.at.unwrap().key, "bridge.netns");
    /// let err = Policy::builder("b").bridge(|b| b.connect("unix:/run/x.sock")).build().unwrap_err();
    /// assert_eq!(err.at.unwrap().key, "bridge.connect[0]");
    /// # Ok::<(), netjail_policy::PolicyError>(())
    /// ```
    pub fn bridge(mut self, table: impl FnOnce(BridgeBuilder) -> BridgeBuilder) -> Self {
        let so_far = self.bridge.take().unwrap_or_else(BridgeBuilder::new);
        self.bridge = Some(table(so_far));
        self
    }

    /// Adds a `[[deny]]` table, filled in by `table`: `.deny(|t| t.connect("tcp://*:25"))`.
    pub fn deny(
        mut self,
        table: impl FnOnce(TableBuilder<DenyTable>) -> TableBuilder<DenyTable>,
    ) -> Self {
        self.deny.push(table(TableBuilder::new()));
        self
    }

    /// Adds an `[[allow]]` table, filled in by `table`: `.allow(|t| t.unix("/run/dbus/*"))`.
    pub fn allow(
        mut self,
        table: impl FnOnce(TableBuilder<AllowTable>) -> TableBuilder<AllowTable>,
    ) -> Self {
        self.allow.push(table(TableBuilder::new()));
        self
    }

    /// Adds an `[[ask]]` table, filled in by `table`: `.ask(|t| t.connect("tcp://*:443"))`.
    pub fn ask(
        mut self,
        table: impl FnOnce(TableBuilder<AllowTable>) -> TableBuilder<AllowTable>,
    ) -> Self {
        self.ask.push(table(TableBuilder::new()));
        self
    }

    /// Checks every key and entry as [`Policy::from_toml`] does and gives the policy, or the
    /// first mistake (see [the order](PolicyBuilder#errors)), with its origin
    /// `builder:NAME` and its place in [`PolicyError::at`].
    pub fn build(&self) -> Result<Policy, PolicyError> {
        let here = Here {
            origin: if self.name.is_empty() {
                "builder".to_owned()
            } else {
                format!("builder:{}", self.name.escape_debug())
            },
        };
        parse::check_name(&self.name).map_err(here.at("name", None))?;
        let ask_timeout = match &self.ask_timeout {
            None => DEFAULT_ASK_TIMEOUT,
            Some(text) => {
                parse::parse_ask_timeout(text).map_err(here.at("ask_timeout", Some(text)))?
            }
        };
        let ask_fallback = match self.ask_fallback {
            None => Verdict::Deny { errno: libc::EPERM },
            Some(action) => {
                let word = action_word(action);
                parse::parse_ask_fallback(word).map_err(here.at("ask_fallback", Some(word)))?
            }
        };
        let confine = self.confinement(&here)?;
        let sockets = match &self.sockets {
            None => sockets::default_list(),
            Some(entries) => entries
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    sockets::parse(text).map_err(here.at(format!("sockets.allow[{i}]"), Some(text)))
                })
                .collect::<Result<_, _>>()?,
        };
        let sockets_refuse = match &self.sockets_refuse {
            None => sockets::DEFAULT_REFUSE,
            Some(text) => {
                sockets::parse_refuse(text).map_err(here.at("sockets.refuse", Some(text)))?
            }
        };
        let bridge = match &self.bridge {
            None => None,
            Some(b) => Some(b.bridge(&here)?),
        };
        let deny = rules(&self.deny, "deny", &here)?;
        let allow = rules(&self.allow, "allow", &here)?;
        let ask = rules(&self.ask, "ask", &here)?;
        // Last, as in the parser.
        parse::check_unsafe_sockopts(&confine, self.jail_address.is_some())
            .map_err(here.at("allow_unsafe_sockopts", None))?;
        parse::check_source_cmsgs(&confine, self.jail_address.is_some())
            .map_err(here.at("source_cmsgs", None))?;
        Ok(Policy {
            name: self.name.clone(),
            default: self.default,
            sockets,
            sockets_refuse,
            deny,
            allow,
            ask,
            ask_timeout,
            ask_fallback,
            confine,
            limits: self.limits,
            bridge,
        })
    }

    /// The `[confine]` keys, each entry checked as the parser checks it.
    fn confinement(&self, here: &Here) -> Result<Confinement, PolicyError> {
        let mut confine = Confinement {
            ioctl: self.ioctl,
            scm_rights: self.scm_rights,
            fcntl_setown: self.fcntl_setown,
            source_cmsgs: self.source_cmsgs,
            landlock: self.landlock,
            ..Confinement::default()
        };
        for (i, text) in self.jail_address.iter().flatten().enumerate() {
            parse::add_jail_address(text, &mut confine)
                .map_err(here.at(format!("jail_address[{i}]"), Some(text)))?;
        }
        for (i, text) in self.keep_capabilities.iter().enumerate() {
            parse::keep_capability(text, &mut confine)
                .map_err(here.at(format!("keep_capabilities[{i}]"), Some(text)))?;
        }
        for (i, text) in self.namespaces.iter().enumerate() {
            parse::grant_namespace(text, &mut confine)
                .map_err(here.at(format!("namespaces[{i}]"), Some(text)))?;
        }
        for (i, text) in self.allow_unsafe_sockopts.iter().enumerate() {
            parse::allow_unsafe_sockopt(text, &mut confine)
                .map_err(here.at(format!("allow_unsafe_sockopts[{i}]"), Some(text)))?;
        }
        Ok(confine)
    }
}

/// The word the TOML format writes an action with.
fn action_word(action: Action) -> &'static str {
    match action {
        Action::Deny => "deny",
        Action::Allow => "allow",
        Action::Ask => "ask",
    }
}

/// Turns an error kind into an error at a key of the builder.
struct Here {
    origin: String,
}

impl Here {
    fn at<'a>(
        &'a self,
        key: impl Into<String>,
        value: Option<&'a str>,
    ) -> impl FnOnce(PolicyErrorKind) -> PolicyError + 'a {
        let key = key.into();
        move |kind| PolicyError {
            origin: self.origin.clone(),
            line: 0,
            col: 0,
            at: Some(Box::new(BuilderKey {
                key,
                value: value.map(str::to_owned),
            })),
            kind,
        }
    }
}

fn rules<K>(
    tables: &[TableBuilder<K>],
    table_name: &'static str,
    here: &Here,
) -> Result<Vec<Rule>, PolicyError> {
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| t.rule(&format!("{table_name}[{i}]"), table_name, here))
        .collect()
}

/// The `[[deny]]` kind of [`TableBuilder`]: it takes an `errno`.
#[derive(Debug, Clone, Copy)]
pub enum DenyTable {}

/// The `[[allow]]` and `[[ask]]` kind of [`TableBuilder`]: no `errno`.
#[derive(Debug, Clone, Copy)]
pub enum AllowTable {}

/// One `[[deny]]` ([`DenyTable`]), `[[allow]]` or `[[ask]]` ([`AllowTable`]) table of a
/// [`PolicyBuilder`], filled in by the closure given to [`PolicyBuilder::deny`],
/// [`PolicyBuilder::allow`] or [`PolicyBuilder::ask`].
///
/// Each call adds one entry, after those of earlier calls: the second `connect` call gives
/// the entry a decision names `connect[1]`. A table needs at least one entry.
#[derive(Debug, Clone)]
#[must_use = "a table builder is returned to the policy builder"]
pub struct TableBuilder<K> {
    connect: Vec<String>,
    send: Vec<String>,
    bind: Vec<String>,
    unix: Vec<String>,
    errno: Option<String>,
    kind: PhantomData<K>,
}

impl<K> TableBuilder<K> {
    fn new() -> Self {
        TableBuilder {
            connect: Vec::new(),
            send: Vec::new(),
            bind: Vec::new(),
            unix: Vec::new(),
            errno: None,
            kind: PhantomData,
        }
    }

    /// A `connect` entry, `PROTO://HOST:PORT` (`"tcp://127.0.0.1:8080"`,
    /// `"tcp://*.example.com:443"`, `"udp://[::1]:53"`): `connect()` to the destinations it
    /// covers.
    pub fn connect(mut self, entry: impl Into<String>) -> Self {
        self.connect.push(entry.into());
        self
    }

    /// A `send` entry, `PROTO://HOST:PORT`: datagram destinations (`sendto`, `sendmsg`,
    /// `sendmmsg`).
    pub fn send(mut self, entry: impl Into<String>) -> Self {
        self.send.push(entry.into());
        self
    }

    /// A `bind` entry, `PROTO://ADDRESS:PORT` (addresses only, no host names;
    /// `"tcp://0.0.0.0:8080"` is the wildcard address, port `0` the ephemeral bind).
    pub fn bind(mut self, entry: impl Into<String>) -> Self {
        self.bind.push(entry.into());
        self
    }

    /// A `unix` entry: an absolute path glob (`"/run/user/*/bus"`, `"/tmp/**"`) or an
    /// abstract name glob (`"@name"`).
    pub fn unix(mut self, entry: impl Into<String>) -> Self {
        self.unix.push(entry.into());
        self
    }

    /// The table as the model has it, checked as the parser checks a table: its `errno`,
    /// then its entries, then that it has one.
    fn rule(&self, at: &str, table_name: &'static str, here: &Here) -> Result<Rule, PolicyError> {
        let mut rule = parse::empty_rule();
        if let Some(text) = &self.errno {
            rule.errno =
                parse::parse_errno(text).map_err(here.at(format!("{at}.errno"), Some(text)))?;
        }
        rule.connect = entries(&self.connect, at, "connect", endpoint::parse, here)?;
        rule.send = entries(&self.send, at, "send", endpoint::parse, here)?;
        rule.bind = entries(&self.bind, at, "bind", endpoint::parse_bind, here)?;
        rule.unix = entries(&self.unix, at, "unix", glob::parse, here)?;
        parse::check_rule(&rule, table_name).map_err(here.at(at, None))?;
        Ok(rule)
    }
}

/// The entries of one key of a table, each read by `parse`.
fn entries<T>(
    texts: &[String],
    at: &str,
    key: &str,
    parse: fn(&str) -> Result<T, PolicyErrorKind>,
    here: &Here,
) -> Result<Vec<T>, PolicyError> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| parse(text).map_err(here.at(format!("{at}.{key}[{i}]"), Some(text))))
        .collect()
}

impl TableBuilder<DenyTable> {
    /// The table's `errno`: `"EPERM"` (the default), `"ECONNREFUSED"`, `"EACCES"`,
    /// `"ENETUNREACH"` or `"EHOSTUNREACH"`. A second call replaces the first.
    pub fn errno(mut self, name: impl Into<String>) -> Self {
        self.errno = Some(name.into());
        self
    }
}

/// The `[bridge]` table of a [`PolicyBuilder`], filled in by the closure given to
/// [`PolicyBuilder::bridge`]: the namespace (required) and the `connect` and `bind`
/// patterns, each entry the string the TOML format takes.
#[derive(Debug, Clone)]
#[must_use = "a bridge builder is returned to the policy builder"]
pub struct BridgeBuilder {
    netns: Option<String>,
    connect: Vec<String>,
    bind: Vec<String>,
}

impl BridgeBuilder {
    fn new() -> Self {
        BridgeBuilder {
            netns: None,
            connect: Vec::new(),
            bind: Vec::new(),
        }
    }

    /// `netns`: `"broker"` (the broker's own network namespace) or an absolute path to a
    /// namespace file (`"/proc/1/ns/net"`, `"/run/netns/NAME"`). Required; a second call
    /// replaces the first.
    pub fn netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }

    /// A `connect` pattern, `tcp://` or `udp://` (`"tcp://127.0.0.1:8080"`): allowed
    /// connects (and datagram sends) to what it covers are served from the namespace.
    pub fn connect(mut self, entry: impl Into<String>) -> Self {
        self.connect.push(entry.into());
        self
    }

    /// A `bind` pattern, `tcp://` or `udp://` with an address (`"tcp://0.0.0.0:8080"`):
    /// allowed binds (published ports) to what it covers are served from the namespace.
    pub fn bind(mut self, entry: impl Into<String>) -> Self {
        self.bind.push(entry.into());
        self
    }

    /// The table as the model has it, checked as the parser checks it: `netns`, the
    /// entries, then that `netns` was given.
    fn bridge(&self, here: &Here) -> Result<Bridge, PolicyError> {
        let netns = match &self.netns {
            None => None,
            Some(text) => {
                Some(bridge::parse_netns(text).map_err(here.at("bridge.netns", Some(text)))?)
            }
        };
        let connect = entries(
            &self.connect,
            "bridge",
            "connect",
            bridge::parse_connect,
            here,
        )?;
        let bind = entries(&self.bind, "bridge", "bind", bridge::parse_bind, here)?;
        let Some(netns) = netns else {
            return Err(here.at("bridge", None)(PolicyErrorKind::MissingKey(
                "bridge.netns",
            )));
        };
        let mut bridge = Bridge::new(netns);
        bridge.connect = connect;
        bridge.bind = bind;
        Ok(bridge)
    }
}
