//! The confinement settings of a policy: what the launcher compiles into the sandbox besides
//! the rules the broker evaluates (capabilities, ioctls, namespaces, Landlock, the jail
//! address, control messages).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The capabilities a sandbox loses unless the policy keeps them (invariant 6), with their
/// numbers from `linux/capability.h`.
pub const NETWORK_CAPABILITIES: &[(&str, u32)] = &[
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
];

/// Socket options (and, for `SO_ZEROCOPY`, the send flag `MSG_ZEROCOPY`) that route a
/// packet, pick an interface, change a socket's family, hand the kernel memory to transmit
/// later, or set up SCTP associations and addresses without a `connect` or `bind`. The filter
/// refuses each one (`EPERM`, `setsockopt` and `getsockopt` alike, level and name compared on
/// 32 bits) unless the policy names it in `allow_unsafe_sockopts`. Each entry is the name a
/// policy uses and the `(level, optname)` pairs it covers: the kernel's other spellings of the
/// same effect go with it (`IPV6_RTHDRDSTOPTS` with `IPV6_DSTOPTS`). The RFC 2292 numbers
/// `IPV6_2292RTHDR`, `IPV6_2292HOPOPTS` and `IPV6_2292DSTOPTS` are receive flags for
/// `setsockopt` (the sticky headers of that API are set through `IPV6_2292PKTOPTIONS`), and
/// the broker refuses them as control messages unless `source_cmsgs` is set.
///
/// - `IP_OPTIONS`: IPv4 options, among them loose and strict source routes (LSRR, SSRR),
///   which send the packet to a first hop no policy decided.
/// - `IPV6_RTHDR`, `IPV6_HOPOPTS`, `IPV6_DSTOPTS` (with `IPV6_RTHDRDSTOPTS`),
///   `IPV6_2292PKTOPTIONS`, `IPV6_NEXTHOP`: sticky IPv6 extension headers (a segment routing
///   header routes like a source route; a home-address destination option changes the
///   source), and the RFC 2292 option block that sets all of them and a next hop at once.
/// - `IP_UNICAST_IF`, `IPV6_UNICAST_IF`, `IP_MULTICAST_IF`, `IPV6_MULTICAST_IF`,
///   `IPV6_PKTINFO` (sticky: an interface index and a source address for every send): the
///   egress interface, as `SO_BINDTOIFINDEX` (always refused) chooses it.
/// - `IPV6_ADDRFORM`: turns an IPv6 socket into an IPv4 one, past an inet6-only `[sockets]`
///   list.
/// - `SO_ZEROCOPY`: transmission from the sender's pages after the call returned; also
///   allows `MSG_ZEROCOPY` in the flags of `sendto`, `sendmsg` and `sendmmsg` that stay in
///   the kernel. The broker never sends with `MSG_ZEROCOPY`: its copy of the data would be on
///   the wire after it reused the memory.
/// - `SCTP_SOCKOPT_BINDX` (`_ADD`, `_REM`), `SCTP_SOCKOPT_CONNECTX` (`_OLD`, `3`): SCTP
///   binds and connects to lists of addresses, which the broker does not see.
pub const UNSAFE_SOCKOPTS: &[(&str, &[(i32, i32)])] = &[
    ("IP_OPTIONS", &[(libc::SOL_IP, libc::IP_OPTIONS)]),
    ("IP_UNICAST_IF", &[(libc::SOL_IP, 50)]),
    ("IP_MULTICAST_IF", &[(libc::SOL_IP, libc::IP_MULTICAST_IF)]),
    ("IPV6_RTHDR", &[(libc::SOL_IPV6, 57)]),
    ("IPV6_HOPOPTS", &[(libc::SOL_IPV6, 54)]),
    (
        "IPV6_DSTOPTS",
        &[(libc::SOL_IPV6, 59), (libc::SOL_IPV6, 55)],
    ),
    ("IPV6_2292PKTOPTIONS", &[(libc::SOL_IPV6, 6)]),
    ("IPV6_NEXTHOP", &[(libc::SOL_IPV6, 9)]),
    ("IPV6_PKTINFO", &[(libc::SOL_IPV6, 50)]),
    ("IPV6_UNICAST_IF", &[(libc::SOL_IPV6, 76)]),
    (
        "IPV6_MULTICAST_IF",
        &[(libc::SOL_IPV6, libc::IPV6_MULTICAST_IF)],
    ),
    ("IPV6_ADDRFORM", &[(libc::SOL_IPV6, 1)]),
    ("SO_ZEROCOPY", &[(libc::SOL_SOCKET, 60)]),
    ("SCTP_SOCKOPT_BINDX", &[(SOL_SCTP, 100), (SOL_SCTP, 101)]),
    (
        "SCTP_SOCKOPT_CONNECTX",
        &[(SOL_SCTP, 107), (SOL_SCTP, 110), (SOL_SCTP, 111)],
    ),
];

/// The names of [`UNSAFE_SOCKOPTS`] that choose the source address of what is sent (a sticky
/// source, or a home-address option), refused together with a jail address as
/// `source_cmsgs` is.
pub const SOURCE_SOCKOPTS: &[&str] = &["IPV6_PKTINFO", "IPV6_2292PKTOPTIONS", "IPV6_DSTOPTS"];

/// `SOL_SCTP` (= `IPPROTO_SCTP`).
const SOL_SCTP: i32 = 132;

/// The name of [`UNSAFE_SOCKOPTS`] that allows `MSG_ZEROCOPY` in send flags too.
pub const ZEROCOPY: &str = "SO_ZEROCOPY";

/// Which `ioctl` requests the sandbox may make (rule J6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoctlMode {
    /// Every request the kernel itself permits, except the interface-configuring ones
    /// (`SIOCSIF*` and friends, rule N1), which are always refused. The default.
    #[default]
    Any,
    /// Only a list of known-safe requests (`FIONBIO`, `FIONREAD`, terminal queries...).
    SafeList,
}

/// Whether the launcher applies a Landlock domain (ptrace, abstract unix sockets and signals
/// scoped to the sandbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LandlockMode {
    /// Apply what the kernel supports and say what it does not. The default.
    #[default]
    BestEffort,
    /// Refuse to start the program when the kernel cannot apply every scope.
    Required,
    /// Do not apply Landlock (the seccomp filter still refuses ptrace).
    Off,
}

/// New namespaces the sandbox may create (refused by default: a new network namespace is a
/// network of its own making, a new user namespace hands it capabilities there, a new mount
/// namespace lets it put any file under any name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceGrant {
    /// `CLONE_NEWNET` allowed.
    pub net: bool,
    /// `CLONE_NEWUSER` allowed.
    pub user: bool,
    /// `CLONE_NEWNS` allowed, and the mount calls (`mount`, `umount2`, `pivot_root`, the
    /// `fsopen`/`open_tree` family, `mount_setattr`). The broker then decides unix paths in
    /// the mount namespace the sandbox registered in, whatever view a caller made itself.
    pub mount: bool,
}

/// Everything of a policy that is not an allow or deny rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    pub(crate) jail_v4: Option<Ipv4Addr>,
    pub(crate) jail_v6: Option<Ipv6Addr>,
    /// Capability numbers, in file order, without duplicates.
    pub(crate) keep_capabilities: Vec<u32>,
    pub(crate) ioctl: IoctlMode,
    pub(crate) namespaces: NamespaceGrant,
    pub(crate) scm_rights: bool,
    pub(crate) fcntl_setown: bool,
    pub(crate) source_cmsgs: bool,
    pub(crate) landlock: LandlockMode,
    /// Names from [`UNSAFE_SOCKOPTS`], in file order, without duplicates.
    pub(crate) allow_unsafe_sockopts: Vec<&'static str>,
}

impl Default for Confinement {
    fn default() -> Self {
        Confinement {
            jail_v4: None,
            jail_v6: None,
            keep_capabilities: Vec::new(),
            ioctl: IoctlMode::Any,
            namespaces: NamespaceGrant::default(),
            scm_rights: true,
            fcntl_setown: true,
            source_cmsgs: false,
            landlock: LandlockMode::BestEffort,
            allow_unsafe_sockopts: Vec::new(),
        }
    }
}

impl Confinement {
    /// The jail address of the family of `ip` (rule J2), if the policy sets one.
    pub fn jail_address_for(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.jail_v6.map(IpAddr::V6)
        } else {
            self.jail_v4.map(IpAddr::V4)
        }
    }

    /// Whether any jail address is set.
    pub fn has_jail(&self) -> bool {
        self.jail_v4.is_some() || self.jail_v6.is_some()
    }

    /// Capability numbers the sandbox keeps (`keep_capabilities`).
    pub fn keep_capabilities(&self) -> &[u32] {
        &self.keep_capabilities
    }

    /// The `ioctl` mode.
    pub fn ioctl(&self) -> IoctlMode {
        self.ioctl
    }

    /// The namespaces the sandbox may create.
    pub fn namespaces(&self) -> NamespaceGrant {
        self.namespaces
    }

    /// Whether `sendmsg` may pass file descriptors (`SCM_RIGHTS`, rule J5). Default true.
    pub fn scm_rights(&self) -> bool {
        self.scm_rights
    }

    /// Whether `fcntl(F_SETOWN)`, `F_SETOWN_EX` and `F_SETSIG` are allowed (rule J7). Default
    /// true.
    pub fn fcntl_setown(&self) -> bool {
        self.fcntl_setown
    }

    /// Whether `sendmsg` control messages that choose the source or the route
    /// (`IP_PKTINFO`, `IPV6_PKTINFO`, `IP_RETOPTS`, `IPV6_RTHDR`, ...) are allowed. Default
    /// false; never with a jail address.
    pub fn source_cmsgs(&self) -> bool {
        self.source_cmsgs
    }

    /// The Landlock mode.
    pub fn landlock(&self) -> LandlockMode {
        self.landlock
    }

    /// The names of [`UNSAFE_SOCKOPTS`] the policy allows (`allow_unsafe_sockopts`).
    pub fn allow_unsafe_sockopts(&self) -> &[&'static str] {
        &self.allow_unsafe_sockopts
    }

    /// Whether the policy allows the option group `name` of [`UNSAFE_SOCKOPTS`].
    pub fn allows_unsafe_sockopt(&self, name: &str) -> bool {
        self.allow_unsafe_sockopts.contains(&name)
    }
}

/// The entry of [`UNSAFE_SOCKOPTS`] named `name`.
pub(crate) fn unsafe_sockopt(name: &str) -> Option<&'static str> {
    UNSAFE_SOCKOPTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
}

/// The number of a capability name from [`NETWORK_CAPABILITIES`].
pub(crate) fn capability(name: &str) -> Option<u32> {
    NETWORK_CAPABILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

/// The name of a capability number from [`NETWORK_CAPABILITIES`].
pub(crate) fn capability_name(number: u32) -> &'static str {
    NETWORK_CAPABILITIES
        .iter()
        .find(|(_, v)| *v == number)
        .map_or("?", |(n, _)| n)
}
