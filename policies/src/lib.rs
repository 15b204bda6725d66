//! netjail's policy: the model, the TOML parser with line/column errors, the built-in
//! profiles, and the evaluator that turns a [`Request`] into a [`Decision`].
//!
//! The crate is pure: no I/O, no system calls. The broker decodes an intercepted call into a
//! [`Request`], asks [`Policy::evaluate`], and acts on the [`Verdict`]; the client compiles
//! [`Policy::sockets`] into its seccomp filter, which sends the calls the list refuses to the
//! broker, and the broker answers them with [`Policy::socket_refusal`].
//!
//! ```
//! use netjail_policy::{Op, Policy, Proto, Request, Target, Verdict};
//!
//! let policy = Policy::from_toml(
//!     r#"
//!     name = "web-client"
//!     default = "deny"
//!
//!     [[deny]]
//!     connect = ["tcp://169.254.169.254:*"]
//!
//!     [[allow]]
//!     connect = ["tcp://loopback:8080", "tcp://10.0.0.0/8:443"]
//!     "#,
//!     "example.toml",
//! )?;
//!
//! let to = |addr: &str| Request {
//!     op: Op::Connect,
//!     target: Target::Inet { proto: Proto::Tcp, addr: addr.parse().unwrap() },
//! };
//! // An IPv4-mapped address is matched as the IPv4 address it is.
//! let d = policy.evaluate(&to("[::ffff:10.1.2.3]:443"));
//! assert_eq!(d.verdict, Verdict::Allow);
//! assert_eq!(d.rule, "allow[0].connect[1]");
//! // Nothing matches: the default, which is deny with EPERM.
//! let d = policy.evaluate(&to("192.0.2.1:443"));
//! assert_eq!(d.verdict, Verdict::Deny { errno: libc::EPERM });
//! assert_eq!(d.rule, "default");
//!
//! // Mistakes are reported with their position.
//! let err = Policy::from_toml("name = \"x\"\n[[allow]]\nconect = []\n", "bad.toml").unwrap_err();
//! assert_eq!(err.to_string(), "bad.toml:3:1: unknown key `conect`; did you mean `connect`?");
//! # Ok::<(), netjail_policy::PolicyError>(())
//! ```
//!
//! The format is described in `docs/policy.md`.
//! [`Policy::builder`] builds the same policies in code ([`PolicyBuilder`]).
//! [`Policy::limits`] is the `[limits]` table (rule N3: `0` none, `-1` unlimited, the
//! default). Unknown keys are load errors with the nearest known key, never ignored.
//!
//! A policy may extend another (`extends = "NAME"`, a built-in or a file) and take
//! parameters (`--set KEY=VALUE`): [`Policy::from_toml_with`] resolves both, reading parent
//! files through a [`ParentLoader`] callback so that the crate stays free of I/O;
//! [`Policy::from_toml`] resolves built-in parents only. A child's `[limits]` and `[sockets]`
//! keys override its parent's one by one; its `[bridge]` replaces its parent's whole table.
//!
//! [`Policy::bridge`] is the `[bridge]` table: which allowed TCP and UDP calls the broker
//! serves from another network namespace (its own, or one named by path) instead of the
//! sandbox's. It never allows anything: [`Bridge::bridges`] is asked only about a call the
//! policy allowed.
//!
//! Endpoints of `connect` and `send` entries may name hosts (`tcp://api.example.com:443`, or
//! `tcp://*.example.com:443` for any name under the domain). The crate cannot resolve names:
//! [`Policy::evaluate_with`] asks a [`Names`] (the broker's resolver) whether the destination
//! is an address of a name an entry covers, failing closed (an unknown answer matches in
//! `[[deny]]` tables only); [`Policy::evaluate`] knows no names ([`NoNames`]).
//!
//! `[[ask]]` tables and `default = "ask"` give [`Verdict::Ask`]: the broker holds the call
//! for an operator, for [`Policy::ask_timeout`] at most, then applies
//! [`Policy::ask_fallback`]. Tables are checked `[[deny]]` first, then `[[allow]]`, then
//! `[[ask]]`, then the default. [`parse_duration`] and [`format_duration`] read and write
//! durations as policies (and the command line) spell them.
//!
//! [`Target::endpoint_string`], [`escape_unix_path`] and [`escape_unix_abstract`] write
//! entries that cover one target and nothing else, for policies written on an operator's
//! behalf (grants kept as a policy with `default = "ask"`: a decision by an `allow[` or
//! `deny[` rule is the operators'; any other is no opinion).
//!
//! # Modules
//!
//! A policy's way through the crate, from text to a decision; every module is private and
//! what embedders use is re-exported here.
//!
//! | module | what it holds |
//! | --- | --- |
//! | `value` | TOML values with their line and column |
//! | `parse` | one policy file's keys and tables, read into the model |
//! | `compose` | `extends` chains and `--set` parameters ([`Policy::from_toml_with`]) |
//! | `check` | entries that can never decide ([`Policy::check_toml`]) |
//! | `builder` | the same policies built in code ([`PolicyBuilder`]) |
//! | `builtin` | the built-in profiles (`policies/builtin/*.toml`) |
//! | `model` | [`Policy`], its rule tables, [`Verdict`] and [`Decision`]: the leaf the others share |
//! | `endpoint`, `glob`, `names` | one entry: an address and port range, a unix path pattern, a host name |
//! | `target` | what a call asks for ([`Request`]), as the broker decodes it |
//! | `eval` | [`Policy::evaluate`]: the tables in order, the seed rules before them |
//! | `rules` | per-sandbox rules an embedder changes at run time ([`SandboxRules`]) |
//! | `sockets` | the `socket()` allow-list and what the filter compiles from it |
//! | `confine`, `limits`, `duration` | `[confine]`, `[limits]`, durations |
//! | `bridge` | `[bridge]`: which allowed calls are served from another network namespace |
//! | `emit` | canonical TOML ([`Policy::to_toml`]) and the fingerprint |
//! | `error` | [`PolicyError`], with file, line and column |

#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

mod bridge;
mod builder;
mod builtin;
mod check;
mod compose;
mod confine;
mod duration;
mod emit;
mod endpoint;
mod error;
mod eval;
mod glob;
mod limits;
mod model;
mod names;
mod parse;
mod rules;
mod sockets;
mod target;
mod value;

pub use bridge::{Bridge, BridgeNetns};
pub use builder::{AllowTable, BridgeBuilder, DenyTable, PolicyBuilder, TableBuilder};
pub use builtin::{builtin, builtin_names};
pub use check::{EntryAt, Finding, FindingKind};
pub use compose::{no_files, ParentLoader, MAX_EXTENDS_DEPTH, SET_ORIGIN};
pub use confine::{
    Confinement, IoctlMode, LandlockMode, NamespaceGrant, NETWORK_CAPABILITIES, UNSAFE_SOCKOPTS,
    ZEROCOPY,
};
pub use duration::{format_duration, parse_duration, MAX_DURATION};
pub use error::{BuilderKey, PolicyError, PolicyErrorKind};
pub use glob::{escape_unix_abstract, escape_unix_path};
pub use limits::{Limit, Limits};
pub use model::{Action, Decision, Policy, Verdict};
pub use names::{HostPattern, NameMatch, Names, NoNames};
pub use rules::{RuleError, SandboxRules};
pub use sockets::{
    allowed_protocols, describe_socket, SocketCall, SocketRule, MAX_FAMILY, SOCK_TYPE_MASK,
};
pub use target::{embedded_ipv4, Op, Proto, Request, Target};
