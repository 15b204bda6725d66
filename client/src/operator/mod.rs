//! Operators: the client of the broker's control socket (`/run/netjail/control.sock`), the
//! commands behind `netjail pending | grant | deny | watch | status`, and `netjail top`.
//!
//! [`Control`] is one conversation with the broker: [`Control::connect`] says hello,
//! then requests go one at a time ([`Control::status`], [`Control::pending`],
//! [`Control::grant`], [`Control::deny`]), or the connection turns into a stream of events
//! with [`Control::watch`]. Every failure is an [`OperatorError`] whose message is one line
//! meant for the person at the terminal.
//!
//! ```no_run
//! use std::path::Path;
//! use netjail_client::operator::Control;
//! use netjail_protocol::control::{GrantDuration, GrantScope};
//!
//! # async fn example() -> Result<(), netjail_client::operator::OperatorError> {
//! let mut control = Control::connect(Path::new("/run/netjail/control.sock"), "example").await?;
//! for held in control.pending().await? {
//!     let resolution = control.grant(held.id, GrantDuration::Once, GrantScope::Sandbox).await?;
//!     println!("{} {}", resolution.outcome.as_str(), resolution.id);
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::path::Path;
use std::time::Duration;

use netjail_protocol::control::{
    Event, GrantDuration, GrantScope, OperatorReply, OperatorRequest, PendingInfo, ReloadItem,
    RequestId, Resolution, SandboxInfo, StatusReport,
};
use netjail_protocol::{
    recv, send, DecodeError, ErrorCode, ErrorReply, RecvError, SendError, PROTOCOL_VERSION,
};
use tokio_seqpacket::UnixSeqpacket;

pub mod commands;
mod duration;
pub mod format;
pub mod top;

#[cfg(test)]
mod fake;

/// Where the broker's control socket is unless `--control` or `NETJAIL_CONTROL` say otherwise.
pub const DEFAULT_CONTROL: &str = "/run/netjail/control.sock";

/// How long [`Control::connect`] waits for the connection and the broker's welcome.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for each datagram of its answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most items a list answer may have; a broker that sends more is broken.
const MAX_LIST: usize = 1 << 20;

/// Bytes of metrics text taken from the broker, at most: past it the answer is unexpected.
pub const MAX_METRICS: usize = 16 << 20;

/// Why a conversation with the broker failed. Each message is one line for a person.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// Nothing listens at the path (no file, or a stale socket).
    #[error(
        "no broker at {path} (is netjaild running? --control or NETJAIL_CONTROL name another socket)"
    )]
    NoBroker {
        /// The control socket's path.
        path: String,
    },
    /// The socket's permissions keep this user out (`EACCES` at connect).
    #[error("permission denied connecting to {path} (operators are root or members of the broker's operator group)")]
    PermissionDenied {
        /// The control socket's path.
        path: String,
    },
    /// Connecting failed for another reason.
    #[error("cannot connect to {path}: {reason}")]
    Connect {
        /// The control socket's path.
        path: String,
        /// What connect said.
        reason: String,
    },
    /// The broker does not take this user for an operator ([`ErrorCode::NotOperator`]).
    #[error("the broker refused this operator: {message}")]
    NotOperator {
        /// The broker's message.
        message: String,
    },
    /// A grant or deny named a call that is not held ([`ErrorCode::NotPending`]).
    #[error("{message}")]
    NotPending {
        /// The broker's message.
        message: String,
    },
    /// The broker understood the request but will not do it ([`ErrorCode::Refused`]).
    #[error("the broker refused: {message}")]
    Refused {
        /// The broker's message.
        message: String,
    },
    /// The broker and this client speak different protocol versions.
    #[error(
        "protocol version mismatch: {detail} (use the netjail of the same release as netjaild)"
    )]
    Version {
        /// Who speaks what, or the broker's message.
        detail: String,
    },
    /// Any other error the broker answered.
    #[error("the broker failed ({code:?}): {message}")]
    Broker {
        /// The broker's code.
        code: ErrorCode,
        /// The broker's message.
        message: String,
    },
    /// The broker did not answer in time.
    #[error("the broker did not answer {request} within {}s", .after.as_secs())]
    Timeout {
        /// The request that went unanswered (`hello`, `status`, ...).
        request: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// The broker closed the connection.
    #[error("broker closed the connection")]
    Closed,
    /// The broker answered something the conversation does not allow at this point.
    #[error("unexpected answer from the broker to {request}: {got}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// What came instead.
        got: String,
    },
    /// The socket failed.
    #[error("cannot talk to the broker: {0}")]
    Io(String),
    /// What listens at the control socket runs as another user than root or this one:
    /// nothing was sent to it (a look-alike could show false held calls, or take the grants
    /// meant for the broker).
    #[error(
        "the control socket is served by uid {uid}, neither root nor this user (uid {own}): \
         not talking to it (--control or NETJAIL_CONTROL may name a socket another user made)"
    )]
    UntrustedBroker {
        /// The uid of the process serving the socket.
        uid: u32,
        /// This process's effective uid.
        own: u32,
    },
}

impl OperatorError {
    fn from_reply(reply: ErrorReply) -> OperatorError {
        let ErrorReply { code, message } = reply;
        match code {
            ErrorCode::NotOperator => OperatorError::NotOperator { message },
            ErrorCode::NotPending => OperatorError::NotPending { message },
            ErrorCode::Refused => OperatorError::Refused { message },
            ErrorCode::UnsupportedVersion => OperatorError::Version {
                detail: format!(
                    "this netjail speaks version {PROTOCOL_VERSION}, the broker says: {message}"
                ),
            },
            code => OperatorError::Broker { code, message },
        }
    }

    fn from_recv(err: RecvError) -> OperatorError {
        match err {
            RecvError::Closed => OperatorError::Closed,
            RecvError::Io(e) if is_gone(&e) => OperatorError::Closed,
            RecvError::Decode(DecodeError::UnsupportedVersion { got }) => OperatorError::Version {
                detail: format!(
                    "the broker speaks version {got}, this netjail speaks {PROTOCOL_VERSION}"
                ),
            },
            other => OperatorError::Io(chain(&other)),
        }
    }

    fn from_send(err: SendError) -> OperatorError {
        match err {
            SendError::Io(e) if is_gone(&e) => OperatorError::Closed,
            other => OperatorError::Io(chain(&other)),
        }
    }

    fn connect(path: &Path, err: io::Error) -> OperatorError {
        let path = path.display().to_string();
        match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                OperatorError::NoBroker { path }
            }
            io::ErrorKind::PermissionDenied => OperatorError::PermissionDenied { path },
            _ => OperatorError::Connect {
                path,
                reason: err.to_string(),
            },
        }
    }
}

fn is_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

/// An error and its sources on one line (`cannot receive message: Connection reset`).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The name of a reply, for [`OperatorError::Unexpected`].
fn reply_name(reply: &OperatorReply) -> String {
    match reply {
        OperatorReply::Welcome { .. } => "Welcome".into(),
        OperatorReply::Status(_) => "Status".into(),
        OperatorReply::Sandbox(_) => "Sandbox".into(),
        OperatorReply::Pending(_) => "Pending".into(),
        OperatorReply::End => "End".into(),
        OperatorReply::Resolved(_) => "Resolved".into(),
        OperatorReply::Event(_) => "Event".into(),
        OperatorReply::Error(e) => format!("Error ({:?}: {})", e.code, e.message),
        OperatorReply::Metrics(_) => "Metrics".into(),
        OperatorReply::Reloaded(_) => "Reloaded".into(),
    }
}

/// One conversation with the broker on its control socket, after the hello.
///
/// Requests go one at a time (each method takes `&mut self`); each datagram of an answer
/// is awaited at most [`REPLY_TIMEOUT`].
#[derive(Debug)]
pub struct Control {
    sock: UnixSeqpacket,
    broker: String,
    operator: String,
}

impl Control {
    /// Connects to the control socket at `path` and says hello as `client` (free-form, for
    /// the broker's audit: `netjail 0.1.0 watch`). The connection and the welcome together
    /// take at most [`HELLO_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`OperatorError::NoBroker`], [`OperatorError::PermissionDenied`] or
    /// [`OperatorError::Connect`] when the socket cannot be reached;
    /// [`OperatorError::NotOperator`] when the broker refuses this user;
    /// [`OperatorError::Version`], [`OperatorError::Timeout`], and the rest of
    /// [`OperatorError`] when the hello goes wrong.
    pub async fn connect(path: &Path, client: &str) -> Result<Control, OperatorError> {
        let sock = match tokio::time::timeout(HELLO_TIMEOUT, UnixSeqpacket::connect(path)).await {
            Ok(Ok(sock)) => sock,
            Ok(Err(e)) => return Err(OperatorError::connect(path, e)),
            Err(_) => {
                return Err(OperatorError::Timeout {
                    request: "connect",
                    after: HELLO_TIMEOUT,
                })
            }
        };
        Control::hello(sock, client).await
    }

    /// Says hello on a socket that is already connected to a broker's control socket (see
    /// [`Control::connect`]).
    ///
    /// # Errors
    ///
    /// As [`Control::connect`], but for the connection itself.
    pub async fn hello(sock: UnixSeqpacket, client: &str) -> Result<Control, OperatorError> {
        use std::os::fd::AsFd;
        if let Err(uid) = crate::remote::check_broker_uid(sock.as_fd()) {
            let own = crate::sys::geteuid();
            return Err(OperatorError::UntrustedBroker { uid, own });
        }
        let hello = OperatorRequest::Hello {
            version: PROTOCOL_VERSION,
            client: client.to_string(),
        };
        send(&sock, &hello, &[])
            .await
            .map_err(OperatorError::from_send)?;
        let reply = match tokio::time::timeout(HELLO_TIMEOUT, recv::<OperatorReply>(&sock)).await {
            Ok(received) => received.map_err(OperatorError::from_recv)?.msg,
            Err(_) => {
                return Err(OperatorError::Timeout {
                    request: "hello",
                    after: HELLO_TIMEOUT,
                })
            }
        };
        match reply {
            OperatorReply::Welcome {
                version,
                broker,
                operator,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(OperatorError::Version {
                        detail: format!(
                            "the broker speaks version {version}, this netjail speaks {PROTOCOL_VERSION}"
                        ),
                    });
                }
                Ok(Control {
                    sock,
                    broker,
                    operator,
                })
            }
            OperatorReply::Error(e) => Err(OperatorError::from_reply(e)),
            other => Err(OperatorError::Unexpected {
                request: "hello",
                got: reply_name(&other),
            }),
        }
    }

    /// The broker's name and version, from its welcome.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// Who the broker took this operator to be (`uid 0`), from its welcome.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    async fn request(&self, msg: &OperatorRequest) -> Result<(), OperatorError> {
        send(&self.sock, msg, &[])
            .await
            .map_err(OperatorError::from_send)
    }

    async fn reply(&self, request: &'static str) -> Result<OperatorReply, OperatorError> {
        match tokio::time::timeout(REPLY_TIMEOUT, recv::<OperatorReply>(&self.sock)).await {
            Ok(received) => Ok(received.map_err(OperatorError::from_recv)?.msg),
            Err(_) => Err(OperatorError::Timeout {
                request,
                after: REPLY_TIMEOUT,
            }),
        }
    }

    /// The broker's metrics, in the Prometheus text format (the pieces the broker sends, put
    /// together), at most [`MAX_METRICS`] bytes.
    ///
    /// # Errors
    ///
    /// See [`OperatorError`].
    pub async fn metrics(&mut self) -> Result<String, OperatorError> {
        const REQUEST: &str = "metrics";
        self.request(&OperatorRequest::Metrics).await?;
        let mut text = String::new();
        loop {
            match self.reply(REQUEST).await? {
                OperatorReply::Metrics(piece) if text.len() + piece.len() <= MAX_METRICS => {
                    text.push_str(&piece)
                }
                OperatorReply::End => return Ok(text),
                OperatorReply::Error(e) => return Err(OperatorError::from_reply(e)),
                other => {
                    return Err(OperatorError::Unexpected {
                        request: REQUEST,
                        got: reply_name(&other),
                    })
                }
            }
        }
    }

    /// The broker's report, then every registered sandbox.
    ///
    /// # Errors
    ///
    /// See [`OperatorError`].
    pub async fn status(&mut self) -> Result<(StatusReport, Vec<SandboxInfo>), OperatorError> {
        const REQUEST: &str = "status";
        self.request(&OperatorRequest::Status).await?;
        let report = match self.reply(REQUEST).await? {
            OperatorReply::Status(report) => report,
            OperatorReply::Error(e) => return Err(OperatorError::from_reply(e)),
            other => {
                return Err(OperatorError::Unexpected {
                    request: REQUEST,
                    got: reply_name(&other),
                })
            }
        };
        let mut sandboxes = Vec::new();
        loop {
            match self.reply(REQUEST).await? {
                OperatorReply::Sandbox(info) if sandboxes.len() < MAX_LIST => sandboxes.push(info),
                OperatorReply::End => return Ok((report, sandboxes)),
                OperatorReply::Error(e) => return Err(OperatorError::from_reply(e)),
                other => {
                    return Err(OperatorError::Unexpected {
                        request: REQUEST,
                        got: reply_name(&other),
                    })
                }
            }
        }
    }

    /// Every call held now, oldest first.
    ///
    /// # Errors
    ///
    /// See [`OperatorError`].
    pub async fn pending(&mut self) -> Result<Vec<PendingInfo>, OperatorError> {
        const REQUEST: &str = "pending";
        self.request(&OperatorRequest::Pending).await?;
        let mut held = Vec::new();
        loop {
            match self.reply(REQUEST).await? {
                OperatorReply::Pending(info) if held.len() < MAX_LIST => held.push(info),
                OperatorReply::End => return Ok(held),
                OperatorReply::Error(e) => return Err(OperatorError::from_reply(e)),
                other => {
                    return Err(OperatorError::Unexpected {
                        request: REQUEST,
                        got: reply_name(&other),
                    })
                }
            }
        }
    }

    /// Asks the broker to read its policy files again; what it did, one item per file or
    /// sandbox concerned.
    ///
    /// # Errors
    ///
    /// See [`OperatorError`].
    pub async fn reload(&mut self) -> Result<Vec<ReloadItem>, OperatorError> {
        const REQUEST: &str = "reload";
        self.request(&OperatorRequest::Reload).await?;
        let mut items = Vec::new();
        loop {
            match self.reply(REQUEST).await? {
                OperatorReply::Reloaded(item) if items.len() < MAX_LIST => items.push(item),
                OperatorReply::End => return Ok(items),
                OperatorReply::Error(e) => return Err(OperatorError::from_reply(e)),
                other => {
                    return Err(OperatorError::Unexpected {
                        request: REQUEST,
                        got: reply_name(&other),
                    })
                }
            }
        }
    }

    /// Lets the held call `id` through, once or with a rule for later calls.
    ///
    /// # Errors
    ///
    /// [`OperatorError::NotPending`] when the call is not held (any more);
    /// [`OperatorError::Refused`] when the broker cannot make the rule; see [`OperatorError`].
    pub async fn grant(
        &mut self,
        id: RequestId,
        duration: GrantDuration,
        scope: GrantScope,
    ) -> Result<Resolution, OperatorError> {
        self.request(&OperatorRequest::Grant {
            id,
            duration,
            scope,
        })
        .await?;
        self.resolved("grant").await
    }

    /// Refuses the held call `id`; with `always`, later calls to the same destination too.
    ///
    /// # Errors
    ///
    /// As [`Control::grant`].
    pub async fn deny(
        &mut self,
        id: RequestId,
        always: bool,
        scope: GrantScope,
    ) -> Result<Resolution, OperatorError> {
        self.request(&OperatorRequest::Deny { id, always, scope })
            .await?;
        self.resolved("deny").await
    }

    async fn resolved(&mut self, request: &'static str) -> Result<Resolution, OperatorError> {
        match self.reply(request).await? {
            OperatorReply::Resolved(resolution) => Ok(resolution),
            OperatorReply::Error(e) => Err(OperatorError::from_reply(e)),
            other => Err(OperatorError::Unexpected {
                request,
                got: reply_name(&other),
            }),
        }
    }

    /// Turns the conversation into a stream of events: first one [`Event::Pending`] per call
    /// already held, then events as they happen; with `decisions`, every decision too. While
    /// the returned [`Watch`] lives, the broker counts this operator as present.
    ///
    /// # Errors
    ///
    /// See [`OperatorError`].
    pub async fn watch(self, decisions: bool) -> Result<Watch, OperatorError> {
        self.request(&OperatorRequest::Watch { decisions }).await?;
        Ok(Watch { sock: self.sock })
    }
}

/// A control connection that streams [`Event`]s (see [`Control::watch`]).
#[derive(Debug)]
pub struct Watch {
    sock: UnixSeqpacket,
}

impl Watch {
    /// The next event, however long it takes. Cancel-safe: dropping the future loses no
    /// event, so it can sit in a `select!`.
    ///
    /// # Errors
    ///
    /// [`OperatorError::Closed`] when the broker goes away; an error the broker sends; an
    /// [`OperatorError::Unexpected`] for anything that is not an event.
    pub async fn next(&mut self) -> Result<Event, OperatorError> {
        let received = recv::<OperatorReply>(&self.sock)
            .await
            .map_err(OperatorError::from_recv)?;
        match received.msg {
            OperatorReply::Event(event) => Ok(event),
            OperatorReply::Error(e) => Err(OperatorError::from_reply(e)),
            other => Err(OperatorError::Unexpected {
                request: "watch",
                got: reply_name(&other),
            }),
        }
    }
}

/// The name this client gives in its hello: `netjail 0.1.0 COMMAND`.
pub fn client_name(command: &str) -> String {
    format!("netjail {} {command}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests;
