//! The operations the broker intercepts, one module each: it reads the call's arguments,
//! decides on the destination the kernel will use, and performs the call as the caller
//! (`docs/architecture.md`, "The path of one call"). The receiver (`receiver/`) dispatches to
//! them and replies; they never reply themselves.
//!
//! - [`connect`], [`bind`] (and `listen`), [`send`] (`sendto`, `sendmsg`, `sendmmsg`, with the
//!   control messages of [`msg`]), [`socket`] (which sockets may be made), [`sockopt`] (a socket's filter), [`process`] (the
//!   calls on other processes that the filter sends here);
//! - by address family: [`unix`] (paths, resolved as the caller), [`netlink`];
//! - [`bridge`]: allowed connects served from another network namespace (`[bridge]`);
//!   [`served`]: connects the embedder's hook answered with a socket of its own; both put a
//!   socket in the caller with [`inject`];
//! - what they share: [`decode`] (a notification's numbers and bytes), [`address`] (the
//!   kernel's reading of an address), [`source`] (where a socket's traffic leaves from),
//!   [`own`] (the broker's own sockets, which no sandbox reaches).

pub(crate) mod address;
pub(crate) mod bind;
pub(crate) mod bridge;
pub(crate) mod connect;
pub(crate) mod decode;
pub(crate) mod inject;
pub(crate) mod msg;
pub(crate) mod netlink;
pub(crate) mod own;
pub(crate) mod process;
pub(crate) mod scaffold;
pub(crate) mod send;
pub(crate) mod served;
pub(crate) mod socket;
pub(crate) mod sockopt;
pub(crate) mod source;
pub(crate) mod unix;
