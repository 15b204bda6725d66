//! Framing over real `SOCK_SEQPACKET` pairs: fds, limits, errors, and no leaked fds.
//!
//! Tests run on parallel threads of one process, so a plain count of `/proc/self/fd`
//! would race with other tests. Each leak check counts only the entries of
//! `/proc/self/fd` that point at a pipe the test created itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use netjail_protocol::{
    recv, send, BrokerMessage, ClientMessage, DecodeError, ErrorCode, PolicySource, Received,
    RecvError, Register, SandboxId, SendError, MAX_FDS, MAX_MESSAGE_SIZE, PROTOCOL_VERSION,
};
use rustix::pipe::{pipe_with, PipeFlags};
use tokio_seqpacket::ancillary::AncillaryMessageWriter;
use tokio_seqpacket::UnixSeqpacket;

fn hello() -> ClientMessage {
    ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
    }
}

fn register() -> ClientMessage {
    ClientMessage::Register(Register {
        name: "curl".into(),
        pid: 4242,
        policy: PolicySource {
            origin: "builtin:deny-all".into(),
            toml: "default = \"deny\"\n".into(),
        },
    })
}

/// A pipe whose read end does not block: `(read, write)`.
fn pipe() -> (OwnedFd, OwnedFd) {
    pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC).expect("pipe2")
}

/// How many entries of `/proc/self/fd` point at the same object as `fd` (for a pipe:
/// both ends and every copy of them).
fn fds_pointing_at(fd: BorrowedFd<'_>) -> usize {
    use std::os::fd::AsRawFd;
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|link| *link == target)
        .count()
}

/// Drops `write` and checks that the read end then sees end-of-file, which it only does
/// when no copy of the write end is left open anywhere in the process.
fn assert_write_end_fully_closed(read: OwnedFd, write: OwnedFd) {
    drop(write);
    let mut buf = [0u8; 8];
    match rustix::io::read(&read, &mut buf) {
        Ok(0) => {}
        other => panic!("a copy of the pipe's write end is still open: read gave {other:?}"),
    }
}

/// Sends raw bytes with `fds`, bypassing our own `send` and its checks.
async fn send_raw(sock: &UnixSeqpacket, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut buffer = [0u8; 1024];
    let mut ancillary = AncillaryMessageWriter::new(&mut buffer);
    if !fds.is_empty() {
        ancillary
            .add_fds(fds.iter().copied())
            .map_err(|_| "ancillary buffer too small")
            .unwrap();
    }
    let sent = sock
        .send_with_ancillary(bytes, &mut ancillary)
        .await
        .unwrap();
    assert_eq!(sent, bytes.len());
}

#[tokio::test]
async fn hello_round_trips_without_fds() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    send(&client, &hello(), &[]).await.unwrap();
    let Received { msg, fds } = recv::<ClientMessage>(&broker).await.unwrap();
    assert_eq!(msg, hello());
    assert!(fds.is_empty());

    let welcome = BrokerMessage::Welcome {
        version: PROTOCOL_VERSION,
        broker: "netjaild test".into(),
    };
    send(&broker, &welcome, &[]).await.unwrap();
    assert_eq!(recv::<BrokerMessage>(&client).await.unwrap().msg, welcome);
}

#[tokio::test]
async fn messages_keep_their_boundaries_and_order() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    for n in 0..10 {
        let msg = BrokerMessage::Registered {
            sandbox: SandboxId(n),
        };
        send(&broker, &msg, &[]).await.unwrap();
    }
    for n in 0..10 {
        let msg = recv::<BrokerMessage>(&client).await.unwrap().msg;
        assert_eq!(
            msg,
            BrokerMessage::Registered {
                sandbox: SandboxId(n)
            }
        );
    }
}

#[tokio::test]
async fn register_carries_one_working_fd() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    send(&client, &register(), &[write.as_fd()]).await.unwrap();
    drop(write);

    let Received { msg, mut fds } = recv::<ClientMessage>(&broker).await.unwrap();
    assert_eq!(msg, register());
    assert_eq!(fds.len(), 1);
    let received = fds.pop().unwrap();
    assert_eq!(rustix::io::write(&received, b"ping").unwrap(), 4);
    let mut buf = [0u8; 8];
    assert_eq!(rustix::io::read(&read, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ping");
    assert_write_end_fully_closed(read, received);
}

#[tokio::test]
async fn max_fds_arrive_in_order() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let pipes: Vec<_> = (0..MAX_FDS).map(|_| pipe()).collect();
    let borrowed: Vec<_> = pipes.iter().map(|(_, write)| write.as_fd()).collect();
    send(&client, &hello(), &borrowed).await.unwrap();

    let Received { fds, .. } = recv::<ClientMessage>(&broker).await.unwrap();
    assert_eq!(fds.len(), MAX_FDS);
    for ((read, _), received) in pipes.iter().zip(&fds) {
        let sent = rustix::fs::fstat(read).unwrap();
        let got = rustix::fs::fstat(received).unwrap();
        assert_eq!((sent.st_dev, sent.st_ino), (got.st_dev, got.st_ino));
    }
}

#[tokio::test]
async fn send_refuses_too_many_fds() {
    let (client, _broker) = UnixSeqpacket::pair().unwrap();
    let (_read, write) = pipe();
    let fds = vec![write.as_fd(); MAX_FDS + 1];
    let err = send(&client, &hello(), &fds).await.unwrap_err();
    assert!(matches!(err, SendError::TooManyFds), "{err:?}");
}

#[tokio::test]
async fn send_refuses_too_large_a_message() {
    let (client, _broker) = UnixSeqpacket::pair().unwrap();
    let msg = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "x".repeat(MAX_MESSAGE_SIZE),
    };
    let err = send(&client, &msg, &[]).await.unwrap_err();
    assert!(matches!(err, SendError::Encode(_)), "{err:?}");
}

#[tokio::test]
async fn too_many_fds_are_refused_and_closed() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    let datagram = netjail_protocol::codec::encode(&register()).unwrap();
    let before = fds_pointing_at(read.as_fd());
    assert_eq!(before, 2);

    send_raw(&client, &datagram, &[write.as_fd(); MAX_FDS + 1]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(
        matches!(err, RecvError::TooManyFds { got } if got == MAX_FDS + 1),
        "{err:?}"
    );
    assert_eq!(err.error_code(), Some(ErrorCode::TooManyFds));

    assert_eq!(fds_pointing_at(read.as_fd()), before);
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn far_too_many_fds_are_truncated_and_closed() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    let datagram = netjail_protocol::codec::encode(&register()).unwrap();
    let before = fds_pointing_at(read.as_fd());

    send_raw(&client, &datagram, &[write.as_fd(); 64]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::AncillaryTruncated), "{err:?}");

    assert_eq!(fds_pointing_at(read.as_fd()), before);
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn datagram_one_byte_too_large_is_too_large() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    send_raw(&client, &vec![0u8; MAX_MESSAGE_SIZE + 1], &[]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::TooLarge), "{err:?}");
    assert_eq!(err.error_code(), Some(ErrorCode::Malformed));
}

#[tokio::test]
async fn truncated_datagram_is_too_large_and_its_fds_closed() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    send_raw(&client, &vec![0u8; 3 * MAX_MESSAGE_SIZE], &[write.as_fd()]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::TooLarge), "{err:?}");

    // The connection stays usable: the rest of the big datagram is gone.
    send(&client, &hello(), &[]).await.unwrap();
    assert_eq!(recv::<ClientMessage>(&broker).await.unwrap().msg, hello());
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn garbage_is_a_decode_error_and_its_fds_closed() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    send_raw(&client, b"GET / HTTP/1.1\r\n\r\n", &[write.as_fd()]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(
        matches!(err, RecvError::Decode(DecodeError::BadMagic)),
        "{err:?}"
    );
    assert_eq!(err.error_code(), Some(ErrorCode::Malformed));
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn other_version_is_an_unsupported_version() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let mut datagram = netjail_protocol::codec::encode(&hello()).unwrap();
    datagram[3] = 2;
    send_raw(&client, &datagram, &[]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(
        matches!(
            err,
            RecvError::Decode(DecodeError::UnsupportedVersion { got: 2 })
        ),
        "{err:?}"
    );
    assert_eq!(err.error_code(), Some(ErrorCode::UnsupportedVersion));
}

#[tokio::test]
async fn empty_datagram_with_an_fd_is_not_eof() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    let (read, write) = pipe();
    send_raw(&client, b"", &[write.as_fd()]).await;
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(
        matches!(err, RecvError::Decode(DecodeError::Empty)),
        "{err:?}"
    );
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn credentials_are_an_unexpected_control_message() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    // With SO_PASSCRED the kernel attaches SCM_CREDENTIALS to every datagram.
    rustix::net::sockopt::set_socket_passcred(&broker, true).unwrap();
    send(&client, &hello(), &[]).await.unwrap();
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::UnexpectedControl), "{err:?}");
    assert_eq!(err.error_code(), Some(ErrorCode::Malformed));

    // Credentials and an fd: the credentials come first and leave no room for the fd in
    // a buffer sized for fds alone, so this one is truncated; either way it is refused
    // and the fd does not leak.
    let (read, write) = pipe();
    send(&client, &register(), &[write.as_fd()]).await.unwrap();
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(
        matches!(
            err,
            RecvError::UnexpectedControl | RecvError::AncillaryTruncated
        ),
        "{err:?}"
    );
    assert_write_end_fully_closed(read, write);
}

#[tokio::test]
async fn peer_close_is_closed() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    send(&client, &hello(), &[]).await.unwrap();
    drop(client);
    // What was sent before the close is still delivered, then the end.
    assert_eq!(recv::<ClientMessage>(&broker).await.unwrap().msg, hello());
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::Closed), "{err:?}");
    assert_eq!(err.error_code(), None);
    // And it stays closed.
    let err = recv::<ClientMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::Closed), "{err:?}");
}

#[tokio::test]
async fn send_to_a_closed_peer_is_an_io_error() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    drop(broker);
    // EPIPE, without a SIGPIPE that would kill the test process.
    let err = send(&client, &hello(), &[]).await.unwrap_err();
    assert!(
        matches!(err, SendError::Io(ref e) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_message_type_is_a_decode_error() {
    let (client, broker) = UnixSeqpacket::pair().unwrap();
    send(&client, &register(), &[]).await.unwrap();
    let err = recv::<BrokerMessage>(&broker).await.unwrap_err();
    assert!(matches!(err, RecvError::Decode(_)), "{err:?}");
}

#[test]
fn error_messages_are_lower_case_without_period() {
    let io = || std::io::Error::other("x");
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(RecvError::Closed),
        Box::new(RecvError::Io(io())),
        Box::new(RecvError::TooLarge),
        Box::new(RecvError::TooManyFds { got: 5 }),
        Box::new(RecvError::AncillaryTruncated),
        Box::new(RecvError::UnexpectedControl),
        Box::new(RecvError::Decode(DecodeError::Empty)),
        Box::new(SendError::Io(io())),
        Box::new(SendError::TooManyFds),
    ];
    for err in errors {
        let text = err.to_string();
        assert!(!text.ends_with('.'), "{text}");
        assert!(!text.starts_with(|c: char| c.is_uppercase()), "{text}");
    }
}
