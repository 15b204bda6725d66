//! Errors of the codec and of the socket framing.

use crate::{ErrorCode, MAX_FDS, MAX_MESSAGE_SIZE};

/// Why a datagram could not be decoded into a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram has no bytes at all.
    #[error("empty datagram")]
    Empty,
    /// The datagram ends before the message does (inside the header or the body).
    #[error("truncated datagram of {len} bytes")]
    Truncated {
        /// Length of the whole datagram.
        len: usize,
    },
    /// The datagram does not start with the `NJ` magic.
    #[error("bad magic, not a netjail datagram")]
    BadMagic,
    /// The header names a protocol version this crate does not speak.
    #[error("unsupported protocol version {got}, expected {expected}", expected = crate::PROTOCOL_VERSION)]
    UnsupportedVersion {
        /// The version in the header.
        got: u16,
    },
    /// The datagram is longer than [`MAX_MESSAGE_SIZE`].
    #[error("datagram of {len} bytes exceeds the limit of {MAX_MESSAGE_SIZE} bytes")]
    TooLarge {
        /// Length of the whole datagram.
        len: usize,
    },
    /// The body is not a valid message of the expected type (unknown variant, invalid
    /// UTF-8, a length beyond the limit, ...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The body holds a complete message followed by more bytes.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes follow the message.
        extra: usize,
    },
}

/// Why a message could not be encoded into a datagram.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded datagram would be longer than [`MAX_MESSAGE_SIZE`].
    #[error("encoded message of {len} bytes exceeds the limit of {MAX_MESSAGE_SIZE} bytes")]
    TooLarge {
        /// Length the datagram would have had, header included.
        len: usize,
    },
    /// The serializer refused the value.
    #[error("cannot serialize message: {0}")]
    Serialize(String),
}

/// Why [`crate::send`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The socket failed (e.g. `EPIPE` when the peer is gone).
    #[error("cannot send message")]
    Io(#[source] std::io::Error),
    /// The message could not be encoded.
    #[error("cannot encode message")]
    Encode(#[source] EncodeError),
    /// More than [`MAX_FDS`] fds were given; nothing was sent.
    #[error("more than {MAX_FDS} fds in one message")]
    TooManyFds,
}

/// Why [`crate::recv`] failed.
///
/// Whatever the error, every fd that arrived with the datagram has been closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer closed the connection (a read of 0 bytes with no fds).
    #[error("connection closed by peer")]
    Closed,
    /// The socket failed.
    #[error("cannot receive message")]
    Io(#[source] std::io::Error),
    /// The datagram was longer than [`MAX_MESSAGE_SIZE`]; the rest of it is lost.
    #[error("datagram exceeds the limit of {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    /// The datagram carried more than [`MAX_FDS`] fds.
    #[error("{got} fds with one message, at most {MAX_FDS} allowed")]
    TooManyFds {
        /// How many fds arrived.
        got: usize,
    },
    /// The kernel dropped ancillary data (`MSG_CTRUNC`): more fds than the receive buffer
    /// holds, or a receiver with no fd numbers left (`RLIMIT_NOFILE`) to put them in.
    #[error(
        "ancillary data truncated: more fds than expected, or the receiver is out of fds (RLIMIT_NOFILE)"
    )]
    AncillaryTruncated,
    /// A control message other than `SCM_RIGHTS` arrived (e.g. `SCM_CREDENTIALS`).
    #[error("unexpected control message")]
    UnexpectedControl,
    /// The datagram could not be decoded.
    #[error("cannot decode message")]
    Decode(#[source] DecodeError),
}

impl RecvError {
    /// The [`ErrorCode`] to answer this error with, or `None` when there is nobody to
    /// answer (the connection is closed or broken).
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            RecvError::Closed | RecvError::Io(_) => None,
            RecvError::TooManyFds { .. } | RecvError::AncillaryTruncated => {
                Some(ErrorCode::TooManyFds)
            }
            RecvError::Decode(DecodeError::UnsupportedVersion { .. }) => {
                Some(ErrorCode::UnsupportedVersion)
            }
            RecvError::TooLarge | RecvError::UnexpectedControl | RecvError::Decode(_) => {
                Some(ErrorCode::Malformed)
            }
        }
    }
}

impl From<DecodeError> for RecvError {
    fn from(err: DecodeError) -> Self {
        RecvError::Decode(err)
    }
}

impl From<std::io::Error> for RecvError {
    fn from(err: std::io::Error) -> Self {
        RecvError::Io(err)
    }
}

impl From<EncodeError> for SendError {
    fn from(err: EncodeError) -> Self {
        SendError::Encode(err)
    }
}

impl From<std::io::Error> for SendError {
    fn from(err: std::io::Error) -> Self {
        SendError::Io(err)
    }
}
