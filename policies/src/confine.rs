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
/// network of its own making, a new user namespace hands it capabilities there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceGrant {
    /// `CLONE_NEWNET` allowed.
    pub net: bool,
    /// `CLONE_NEWUSER` allowed.
    pub user: bool,
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
