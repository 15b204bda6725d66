//! One message per `SOCK_SEQPACKET` datagram, with fds in `SCM_RIGHTS`.

use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_seqpacket::ancillary::{AncillaryMessageWriter, OwnedAncillaryMessage};
use tokio_seqpacket::UnixSeqpacket;

use crate::{codec, RecvError, SendError, MAX_FDS, MAX_MESSAGE_SIZE};

/// Size of a `struct cmsghdr` rounded up to its alignment, on every Linux target
/// (16 bytes on 64-bit, 12 on 32-bit: 16 is enough for both).
const CMSG_HEADER_SPACE: usize = 16;

/// `CMSG_SPACE(n)`, rounded up generously to 8-byte alignment.
const fn cmsg_space(data_len: usize) -> usize {
    CMSG_HEADER_SPACE + data_len.next_multiple_of(8)
}

/// Room for one `SCM_RIGHTS` message of `MAX_FDS + 1` fds, so that one fd too many is
/// still received whole (and reported as [`RecvError::TooManyFds`]) rather than
/// truncated.
const ANCILLARY_LEN: usize = cmsg_space((MAX_FDS + 1) * size_of::<i32>());

/// An ancillary buffer aligned for `struct cmsghdr`, which the kernel and the parser of
/// `tokio-seqpacket` read in place.
#[repr(C, align(8))]
struct AncillaryBuffer([u8; ANCILLARY_LEN]);

impl AncillaryBuffer {
    fn new() -> Self {
        AncillaryBuffer([0; ANCILLARY_LEN])
    }
}

/// One received message and the fds that came with it.
#[derive(Debug)]
pub struct Received<T> {
    /// The decoded message.
    pub msg: T,
    /// The fds of the datagram's `SCM_RIGHTS`, in the order they were sent (at most
    /// [`MAX_FDS`]). They are closed when dropped.
    pub fds: Vec<OwnedFd>,
}

/// Sends `msg` as one datagram, with `fds` in `SCM_RIGHTS`.
///
/// The fds are duplicated into the receiver; the caller keeps its own.
/// Like the `send` of `tokio-seqpacket`, this is cancel-safe: a datagram is sent whole
/// or not at all.
///
/// # Errors
///
/// [`SendError::TooManyFds`] for more than [`MAX_FDS`] fds, [`SendError::Encode`] when
/// the message cannot be encoded (e.g. it is too large), [`SendError::Io`] when the
/// socket fails (`EPIPE` when the peer is gone).
pub async fn send<T: Serialize>(
    sock: &UnixSeqpacket,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), SendError> {
    if fds.len() > MAX_FDS {
        return Err(SendError::TooManyFds);
    }
    let datagram = codec::encode(msg)?;
    let sent = if fds.is_empty() {
        sock.send(&datagram).await?
    } else {
        let mut buffer = AncillaryBuffer::new();
        let mut ancillary = AncillaryMessageWriter::new(&mut buffer.0);
        ancillary.add_fds(fds.iter().copied()).map_err(|_| {
            std::io::Error::other(
                "ancillary buffer too small for the fds (a bug in netjail-protocol)",
            )
        })?;
        sock.send_with_ancillary(&datagram, &mut ancillary).await?
    };
    if sent != datagram.len() {
        return Err(SendError::Io(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", datagram.len()),
        )));
    }
    Ok(())
}

/// Receives one datagram and decodes it as a `T`.
///
/// Every fd that arrives is owned at once, so on any error all of them are closed and
/// nothing leaks. A read of 0 bytes without fds is the end of the connection
/// ([`RecvError::Closed`]); `SOCK_SEQPACKET` cannot tell it from an empty datagram, and
/// this protocol never sends one.
///
/// Cancel-safe: if the future is dropped before it completes, no datagram was consumed.
///
/// # Errors
///
/// See [`RecvError`]; in order of precedence: `Io`, `TooLarge` (the datagram was
/// longer than [`MAX_MESSAGE_SIZE`]), `AncillaryTruncated`, `UnexpectedControl`,
/// `TooManyFds`, `Closed`, `Decode`.
pub async fn recv<T: DeserializeOwned>(sock: &UnixSeqpacket) -> Result<Received<T>, RecvError> {
    let mut data = vec![0u8; MAX_MESSAGE_SIZE + 1];
    let mut buffer = AncillaryBuffer::new();
    let (info, ancillary) = sock.recv_with_ancillary(&mut data, &mut buffer.0).await?;

    // Own every fd before looking at anything else, so that each error path closes them.
    let ancillary_truncated = info.ancillary_truncated() || ancillary.is_truncated();
    let mut fds = Vec::new();
    let mut unexpected_control = false;
    for message in ancillary.into_messages() {
        match message {
            OwnedAncillaryMessage::FileDescriptors(received) => fds.extend(received),
            // Anything else, whatever variants `tokio-seqpacket` has with its features.
            _ => unexpected_control = true,
        }
    }

    let len = info.bytes_read();
    if info.truncated() || len > MAX_MESSAGE_SIZE {
        return Err(RecvError::TooLarge);
    }
    if ancillary_truncated {
        return Err(RecvError::AncillaryTruncated);
    }
    if unexpected_control {
        return Err(RecvError::UnexpectedControl);
    }
    if fds.len() > MAX_FDS {
        return Err(RecvError::TooManyFds { got: fds.len() });
    }
    if len == 0 && fds.is_empty() {
        return Err(RecvError::Closed);
    }
    let msg = codec::decode(&data[..len])?;
    Ok(Received { msg, fds })
}
