//! Every message that crosses a netjail socket, and how it crosses.
//!
//! A sandboxed process hands its seccomp listener fd to the broker over a unix
//! `SOCK_SEQPACKET` socket. This crate defines what is said on that socket:
//!
//! - the messages: [`ClientMessage`] (client to broker) and [`BrokerMessage`] (broker to
//!   client), versioned by [`PROTOCOL_VERSION`];
//! - the wire format of one message, in [`codec`]: a 4-byte header (`NJ` and the version)
//!   then a bincode body, at most [`MAX_MESSAGE_SIZE`] bytes in all;
//! - the framing over a socket, [`send`] and [`recv`]: one message per datagram, with at
//!   most [`MAX_FDS`] fds in `SCM_RIGHTS`. Received fds are [`OwnedFd`](std::os::fd::OwnedFd)s
//!   from the first moment, so no error path leaks one.
//!
//! A conversation: the client sends [`ClientMessage::Hello`], the broker answers
//! [`BrokerMessage::Welcome`]; the client sends [`ClientMessage::Register`] with the
//! listener fd, the broker answers [`BrokerMessage::Registered`] or
//! [`BrokerMessage::Error`].
//!
//! A process that confines itself (a zygote) registers without an fd:
//! [`ClientMessage::RegisterSelf`], answered with [`BrokerMessage::AwaitingListener`]; it then
//! installs its filter and names its new listener with [`ClientMessage::ListenerFd`] (written
//! with plain `write(2)`, since its `sendmsg` is trapped by then); the broker takes the
//! listener with `pidfd_getfd` and answers [`BrokerMessage::ProveListener`]; the process closes
//! its own copy and makes the call of [`PROOF_SYSCALL`], which its filter hands to the
//! listener, showing that the listener is its own; the broker answers that call, then
//! [`BrokerMessage::Registered`] or [`BrokerMessage::Error`].
//!
//! A client that keeps its own copy of the listener (`netjail run`) registers with
//! [`ClientMessage::RegisterKeeping`] instead, and when the broker goes away, sends the same
//! listener to the next broker with [`ClientMessage::RegisterAgain`], naming the id the first
//! one gave: that broker decides the calls the first had received and not answered.
//!
//! Operators speak the same framing on the control socket, with the messages of
//! [`control`].
//!
//! # Example
//!
//! ```
//! use std::os::fd::AsFd;
//! use netjail_protocol::{recv, send, ClientMessage, PolicySource, Register};
//! use tokio_seqpacket::UnixSeqpacket;
//!
//! # async fn example(listener: std::os::fd::OwnedFd) -> Result<(), Box<dyn std::error::Error>> {
//! let (client, broker) = UnixSeqpacket::pair()?;
//! let register = ClientMessage::Register(Register {
//!     name: "curl".into(),
//!     pid: 4242,
//!     policy: PolicySource { origin: "builtin:deny-all".into(), toml: String::new() },
//! });
//! send(&client, &register, &[listener.as_fd()]).await?;
//!
//! let received = recv::<ClientMessage>(&broker).await?;
//! assert_eq!(received.msg, register);
//! assert_eq!(received.fds.len(), 1); // the broker's own copy of the listener
//! # Ok(()) }
//! ```

#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod control;
mod error;
mod message;
mod transport;

pub use error::{DecodeError, EncodeError, RecvError, SendError};
pub use message::{
    BrokerMessage, ClientMessage, ErrorCode, ErrorReply, PolicySource, Register, RegisterAgain,
    RegisterSelf, SandboxId, PROOF_SYSCALL,
};
pub use transport::{recv, send, Received};

/// The protocol version this crate speaks; it is in the header of every datagram.
pub const PROTOCOL_VERSION: u16 = 1;

/// The largest datagram, header included, that is sent or accepted.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The most fds accepted with one message; with more, the message is refused and all of
/// its fds are closed.
pub const MAX_FDS: usize = 4;
