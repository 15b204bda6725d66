//! netjail's client side: everything that runs in or next to the confined program.
//!
//! # Modules
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`launch`] | `netjail run`: load the policy, build the filter, fork, confine, exec, register the listener with a broker (or one embedded in this process), wait |
//! | [`sandbox`] | `Sandbox::builder()`: the same from a program with threads and a runtime of its own |
//! | [`confine_self()`] | a process that confines itself (a zygote) and hands its own listener to a running broker |
//! | [`filter`] | the policy compiled to the seccomp program: which calls notify the broker, which the kernel refuses |
//! | `hardening` | the rules of that program decided on scalars alone: `ioctl`s, `F_SETOWN`, `setns`, mounts, other processes' limits |
//! | [`landlock`] | the Landlock ruleset of a sandbox |
//! | [`root`] | what a sandbox that runs as root gets and keeps |
//! | [`oci`] | the filter as the `linux.seccomp` object of an OCI runtime, and the patch of a bundle |
//! | [`policy`] | a policy found by built-in name or file path, with its parents and `--set` parameters |
//! | `remote` | the registration socket: hello, register, reconnect to a restarted broker |
//! | `operator` (feature `cli`) | `netjail pending`, `grant`, `deny`, `watch`, `status`, `top` over the broker's control socket |
//! | `sys` | every raw system call of the crate, with its `unsafe` (the fork-to-exec path allocates nothing) |
//!
//! The `netjail` binary (`src/main.rs`, feature `cli`, on by default) parses the command line
//! and calls these. Programs with threads and a runtime of their own spawn confined children
//! with [`sandbox`]; [`launch`] is for a process that has one thread.
//!
//! ```no_run
//! use netjail_client::launch::{run, Embedded, RunOptions};
//!
//! let status = run(RunOptions {
//!     policy: "loopback-only".into(),
//!     sets: Vec::new(),
//!     // The broker at `launch::DEFAULT_BROKER`, else one embedded in this process.
//!     broker: None,
//!     embedded: Embedded::WhenNoBroker,
//!     name: None,
//!     reconnect_for: netjail_client::launch::DEFAULT_RECONNECT_FOR,
//!     allow_root: false,
//!     command: vec!["curl".into(), "http://127.0.0.1:8080/".into()],
//! })
//! .expect("launch");
//! println!("{status:?}");
//! ```

#![warn(unreachable_pub)]

pub mod confine_self;
pub mod filter;
mod hardening;
pub mod landlock;
pub mod launch;
pub mod oci;
#[cfg(feature = "cli")]
pub mod operator;
pub mod policy;
mod remote;
pub mod root;
pub mod sandbox;
mod sys;

pub use confine_self::{confine_self, ConfineError, ConfineSelf};
