//! The wire format: round trips, every decoding error, hostile input.

use netjail_protocol::codec::{self, DECODE_LIMIT, HEADER_LEN, MAGIC};
use netjail_protocol::{
    BrokerMessage, ClientMessage, DecodeError, EncodeError, ErrorCode, ErrorReply, PolicySource,
    Register, RegisterAgain, RegisterSelf, SandboxId, MAX_MESSAGE_SIZE, PROTOCOL_VERSION,
};
use proptest::prelude::*;

fn header() -> Vec<u8> {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    header
}

/// A datagram with a valid header and `body`.
fn with_header(body: &[u8]) -> Vec<u8> {
    let mut datagram = header();
    datagram.extend_from_slice(body);
    datagram
}

fn hello() -> ClientMessage {
    ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "test".into(),
    }
}

fn register(toml: String) -> ClientMessage {
    ClientMessage::Register(Register {
        name: "curl".into(),
        pid: 4242,
        policy: PolicySource {
            origin: "builtin:deny-all".into(),
            toml,
        },
    })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (any::<u16>(), ".*").prop_map(|(version, client)| ClientMessage::Hello { version, client }),
        (".*", any::<i32>(), ".*", ".*").prop_map(|(name, pid, origin, toml)| {
            ClientMessage::Register(Register {
                name,
                pid,
                policy: PolicySource { origin, toml },
            })
        }),
        (".*", ".*", ".*").prop_map(|(name, origin, toml)| {
            ClientMessage::RegisterSelf(RegisterSelf {
                name,
                policy: PolicySource { origin, toml },
            })
        }),
        any::<i32>().prop_map(|fd| ClientMessage::ListenerFd { fd }),
        (".*", any::<i32>(), ".*", ".*", any::<u64>()).prop_map(
            |(name, pid, origin, toml, previous)| {
                ClientMessage::RegisterAgain(RegisterAgain {
                    register: Register {
                        name,
                        pid,
                        policy: PolicySource { origin, toml },
                    },
                    previous: SandboxId(previous),
                })
            }
        ),
        (".*", any::<i32>(), ".*", ".*").prop_map(|(name, pid, origin, toml)| {
            ClientMessage::RegisterKeeping(Register {
                name,
                pid,
                policy: PolicySource { origin, toml },
            })
        }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::UnsupportedVersion),
        Just(ErrorCode::Malformed),
        Just(ErrorCode::BadPolicy),
        Just(ErrorCode::MissingFd),
        Just(ErrorCode::TooManyFds),
        Just(ErrorCode::NotHello),
        Just(ErrorCode::Internal),
        Just(ErrorCode::NotOperator),
        Just(ErrorCode::NotPending),
        Just(ErrorCode::Refused),
        Just(ErrorCode::CannotTakeListener),
        Just(ErrorCode::TimedOut),
    ]
}

fn broker_message() -> impl Strategy<Value = BrokerMessage> {
    prop_oneof![
        (any::<u16>(), ".*")
            .prop_map(|(version, broker)| BrokerMessage::Welcome { version, broker }),
        any::<u64>().prop_map(|n| BrokerMessage::Registered {
            sandbox: SandboxId(n)
        }),
        (error_code(), ".*")
            .prop_map(|(code, message)| BrokerMessage::Error(ErrorReply { code, message })),
        any::<i32>().prop_map(|broker_pid| BrokerMessage::AwaitingListener { broker_pid }),
        any::<u64>().prop_map(|nonce| BrokerMessage::ProveListener { nonce }),
    ]
}

proptest! {
    #[test]
    fn client_messages_round_trip(msg in client_message()) {
        let datagram = codec::encode(&msg).unwrap();
        prop_assert_eq!(&datagram[..HEADER_LEN], &header()[..]);
        prop_assert_eq!(codec::decode::<ClientMessage>(&datagram).unwrap(), msg);
    }

    #[test]
    fn broker_messages_round_trip(msg in broker_message()) {
        let datagram = codec::encode(&msg).unwrap();
        prop_assert_eq!(codec::decode::<BrokerMessage>(&datagram).unwrap(), msg);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<ClientMessage>(&bytes);
        let _ = codec::decode::<BrokerMessage>(&bytes);
    }

    /// Past the header, so that the body decoder sees the garbage.
    #[test]
    fn decode_never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let datagram = with_header(&body);
        let _ = codec::decode::<ClientMessage>(&datagram);
        let _ = codec::decode::<BrokerMessage>(&datagram);
    }

    /// Every valid message with one byte flipped or cut short still decodes without panic.
    #[test]
    fn decode_never_panics_on_damaged_messages(msg in client_message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut datagram = codec::encode(&msg).unwrap();
        let i = at.index(datagram.len());
        let _ = codec::decode::<ClientMessage>(&datagram[..i]);
        datagram[i] = byte;
        let _ = codec::decode::<ClientMessage>(&datagram);
    }
}

/// Pins the wire format: a change here breaks every deployed client.
#[test]
fn wire_format_of_hello_is_stable() {
    let msg = ClientMessage::Hello {
        version: 1,
        client: "x".into(),
    };
    assert_eq!(codec::encode(&msg).unwrap(), b"NJ\x00\x01\x00\x01\x01x");
    let msg = BrokerMessage::Registered {
        sandbox: SandboxId(7),
    };
    assert_eq!(codec::encode(&msg).unwrap(), b"NJ\x00\x01\x01\x07");
}

/// The self-registration messages came after the others (issue 6), so the variants that
/// existed before keep their tags: old clients and brokers still understand each other.
#[test]
fn self_registration_messages_are_appended() {
    let msg = ClientMessage::ListenerFd { fd: 5 };
    // Variant 3 (after Hello, Register, RegisterSelf), fd 5 as a zigzag varint.
    assert_eq!(codec::encode(&msg).unwrap(), b"NJ\x00\x01\x03\x0a");
    let msg = ClientMessage::RegisterSelf(RegisterSelf {
        name: "z".into(),
        policy: PolicySource {
            origin: "o".into(),
            toml: "t".into(),
        },
    });
    assert_eq!(
        codec::encode(&msg).unwrap(),
        b"NJ\x00\x01\x02\x01z\x01o\x01t"
    );
    let msg = BrokerMessage::AwaitingListener { broker_pid: 1 };
    assert_eq!(codec::encode(&msg).unwrap(), b"NJ\x00\x01\x03\x02");
    let msg = BrokerMessage::Error(ErrorReply {
        code: ErrorCode::TimedOut,
        message: String::new(),
    });
    assert_eq!(codec::encode(&msg).unwrap(), b"NJ\x00\x01\x02\x0b\x00");
}

/// Registering again after a broker restart came after everything else (issue 8): variant 4,
/// the earlier tags unchanged.
#[test]
fn register_again_is_appended() {
    let msg = ClientMessage::RegisterAgain(RegisterAgain {
        register: Register {
            name: "n".into(),
            pid: 3,
            policy: PolicySource {
                origin: "o".into(),
                toml: "t".into(),
            },
        },
        previous: SandboxId(9),
    });
    // pid 3 as a zigzag varint is 6.
    assert_eq!(
        codec::encode(&msg).unwrap(),
        b"NJ\x00\x01\x04\x01n\x06\x01o\x01t\x09"
    );
}

/// Registering with a kept copy came last (issue 8): variant 5, the earlier tags unchanged.
#[test]
fn register_keeping_is_appended() {
    let msg = ClientMessage::RegisterKeeping(Register {
        name: "n".into(),
        pid: 3,
        policy: PolicySource {
            origin: "o".into(),
            toml: "t".into(),
        },
    });
    assert_eq!(
        codec::encode(&msg).unwrap(),
        b"NJ\x00\x01\x05\x01n\x06\x01o\x01t"
    );
}

#[test]
fn sandbox_id_displays_as_sb_n() {
    assert_eq!(SandboxId(42).to_string(), "sb-42");
}

#[test]
fn encode_refuses_a_message_larger_than_the_limit() {
    let err = codec::encode(&register("#".repeat(MAX_MESSAGE_SIZE))).unwrap_err();
    assert!(
        matches!(err, EncodeError::TooLarge { len } if len > MAX_MESSAGE_SIZE),
        "{err:?}"
    );
}

#[test]
fn a_message_of_exactly_the_limit_round_trips() {
    let overhead = codec::encode(&register(String::new())).unwrap().len();
    // The length prefix of a TOML of ~64 KiB takes 3 bytes instead of 1.
    let toml = "#".repeat(MAX_MESSAGE_SIZE - overhead - 2);
    let msg = register(toml);
    let datagram = codec::encode(&msg).unwrap();
    assert_eq!(datagram.len(), MAX_MESSAGE_SIZE);
    assert_eq!(codec::decode::<ClientMessage>(&datagram).unwrap(), msg);
}

#[test]
fn empty_datagram_is_empty() {
    let err = codec::decode::<ClientMessage>(b"").unwrap_err();
    assert!(matches!(err, DecodeError::Empty), "{err:?}");
}

#[test]
fn short_header_is_truncated() {
    for len in 1..HEADER_LEN {
        let err = codec::decode::<ClientMessage>(&header()[..len]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { len: l } if l == len),
            "{err:?}"
        );
    }
}

#[test]
fn short_body_is_truncated() {
    let datagram = codec::encode(&hello()).unwrap();
    for len in HEADER_LEN..datagram.len() {
        let err = codec::decode::<ClientMessage>(&datagram[..len]).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { len: l } if l == len),
            "{err:?}"
        );
    }
}

#[test]
fn wrong_magic_is_bad_magic() {
    let mut datagram = codec::encode(&hello()).unwrap();
    datagram[0] = b'X';
    let err = codec::decode::<ClientMessage>(&datagram).unwrap_err();
    assert!(matches!(err, DecodeError::BadMagic), "{err:?}");
}

#[test]
fn other_version_is_unsupported() {
    let mut datagram = codec::encode(&hello()).unwrap();
    datagram[2..4].copy_from_slice(&0x0102u16.to_be_bytes());
    let err = codec::decode::<ClientMessage>(&datagram).unwrap_err();
    assert!(
        matches!(err, DecodeError::UnsupportedVersion { got: 0x0102 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unsupported protocol version 258, expected 1"
    );
}

#[test]
fn oversized_datagram_is_too_large() {
    let mut datagram = codec::encode(&hello()).unwrap();
    datagram.resize(MAX_MESSAGE_SIZE + 1, 0);
    let err = codec::decode::<ClientMessage>(&datagram).unwrap_err();
    assert!(
        matches!(err, DecodeError::TooLarge { len } if len == MAX_MESSAGE_SIZE + 1),
        "{err:?}"
    );
}

#[test]
fn unknown_variant_is_malformed() {
    let err = codec::decode::<ClientMessage>(&with_header(&[7])).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
}

#[test]
fn invalid_utf8_is_malformed() {
    // Hello { version: 1, client: [0xff] }
    let err = codec::decode::<ClientMessage>(&with_header(&[0, 1, 1, 0xff])).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
}

#[test]
fn bytes_after_the_message_are_trailing() {
    let mut datagram = codec::encode(&hello()).unwrap();
    datagram.extend_from_slice(b"xyz");
    let err = codec::decode::<ClientMessage>(&datagram).unwrap_err();
    assert!(
        matches!(err, DecodeError::TrailingBytes { extra: 3 }),
        "{err:?}"
    );
}

#[test]
fn a_client_message_is_not_a_broker_message() {
    // Registered's SandboxId is a varint; Hello's string makes it trail or fail.
    let datagram = codec::encode(&register("x".into())).unwrap();
    assert!(codec::decode::<BrokerMessage>(&datagram).is_err());
}

/// A `Hello` whose client string claims `len` bytes, followed by only a few.
fn hello_claiming(len: u64) -> Vec<u8> {
    // variant 0 (Hello), version 1, then the string length as a u64 varint (tag 253).
    let mut body = vec![0, 1, 253];
    body.extend_from_slice(&len.to_le_bytes());
    body.extend_from_slice(b"abc");
    with_header(&body)
}

/// A length prefix claiming far more than a datagram can hold is refused by the limit
/// before anything is allocated: an attempt to allocate 2^60 or 2^40 bytes would abort
/// the test process, so reaching the assertions proves no such allocation happened.
#[test]
fn hostile_length_prefix_is_a_clean_error() {
    for len in [1u64 << 60, 1 << 40, u64::MAX, DECODE_LIMIT as u64 + 1] {
        let err = codec::decode::<ClientMessage>(&hello_claiming(len)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed(ref m) if m.contains("limit")),
            "claim of {len} bytes: {err:?}"
        );
    }
}

/// A claim within the limit but beyond the datagram is merely truncated.
#[test]
fn length_prefix_beyond_the_datagram_is_truncated() {
    for len in [1000, MAX_MESSAGE_SIZE as u64, DECODE_LIMIT as u64 - 64] {
        let err = codec::decode::<ClientMessage>(&hello_claiming(len)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { .. }),
            "{len}: {err:?}"
        );
    }
}

#[test]
fn error_messages_are_lower_case_without_period() {
    let errors: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(DecodeError::Empty),
        Box::new(DecodeError::Truncated { len: 2 }),
        Box::new(DecodeError::BadMagic),
        Box::new(DecodeError::UnsupportedVersion { got: 2 }),
        Box::new(DecodeError::TooLarge { len: 70000 }),
        Box::new(DecodeError::Malformed("x".into())),
        Box::new(DecodeError::TrailingBytes { extra: 1 }),
        Box::new(EncodeError::TooLarge { len: 70000 }),
        Box::new(EncodeError::Serialize("x".into())),
    ];
    for err in errors {
        let text = err.to_string();
        assert!(!text.ends_with('.'), "{text}");
        assert!(!text.starts_with(|c: char| c.is_uppercase()), "{text}");
    }
}

/// The seeds of the `protocol_decode` fuzz target (fuzz/corpus/protocol_decode) are real
/// messages: each `client-*` file decodes as a [`ClientMessage`], each `broker-*` file as a
/// [`BrokerMessage`], and encodes back to the same bytes. Runs on stable, without the fuzzer.
#[test]
fn fuzz_seeds_are_real_messages() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/protocol_decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the fuzz corpus is in the repository") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        if name.starts_with("client-") {
            let msg =
                codec::decode::<ClientMessage>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(codec::encode(&msg).unwrap(), bytes, "{name}");
        } else if name.starts_with("broker-") {
            let msg =
                codec::decode::<BrokerMessage>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(codec::encode(&msg).unwrap(), bytes, "{name}");
        } else {
            continue;
        }
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} seeds in {}", dir.display());
}
