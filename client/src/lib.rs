//! netjail's client side: the confine step, the launcher behind `netjail run`, and the
//! registration of a sandbox with a broker (or with a broker embedded in the launcher when
//! none runs), and the `linux.seccomp` object that gives containers the same filter under an
//! OCI runtime ([`oci`]); and the operators' side of the broker's control socket
//! ([`operator`]: `netjail pending`, `grant`, `deny`, `watch`, `status`, `top`). Programs
//! with threads and a runtime of their own spawn confined children with [`sandbox`]
//! (`Sandbox::builder()`); the launcher below is for a process that has one thread. A process
//! can also confine itself and hand its own listener to a running broker
//! ([`confine_self()`], for a zygote before it loads untrusted code).
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

pub mod confine_self;
pub mod filter;
pub mod hardening;
pub mod landlock;
pub mod launch;
pub mod oci;
pub mod operator;
pub mod policy;
pub mod remote;
pub mod root;
pub mod sandbox;
pub mod sys;

pub use confine_self::{confine_self, ConfineError, ConfineSelf};
