//! The wire format of one message, and the only place that knows it is bincode.
//!
//! A datagram is a 4-byte header followed by the body:
//!
//! ```text
//! +------+------+------------+------------+------------------------+
//! | 'N'  | 'J'  | version_hi | version_lo | bincode body (serde)   |
//! +------+------+------------+------------+------------------------+
//! ```
//!
//! The body is the message in bincode 2's standard configuration (little endian,
//! variable-length integers) with a decoding limit ([`DECODE_LIMIT`]), so a hostile
//! length prefix is refused before anything is allocated. The whole datagram,
//! header included, is at most [`MAX_MESSAGE_SIZE`] bytes, and the body must be consumed
//! exactly.
//!
//! ```
//! use netjail_protocol::{codec, ClientMessage, PROTOCOL_VERSION};
//!
//! let hello = ClientMessage::Hello { version: PROTOCOL_VERSION, client: "doc".into() };
//! let datagram = codec::encode(&hello)?;
//! assert_eq!(&datagram[..2], b"NJ");
//! assert_eq!(codec::decode::<ClientMessage>(&datagram)?, hello);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{DecodeError, EncodeError, MAX_MESSAGE_SIZE, PROTOCOL_VERSION};

/// The two bytes every datagram starts with.
pub const MAGIC: [u8; 2] = *b"NJ";

/// Length of the header: [`MAGIC`] and the big-endian protocol version.
pub const HEADER_LEN: usize = 4;

/// The most bytes bincode may claim while decoding one body.
///
/// bincode counts what it decodes at its in-memory size: a `u64` claims 8 bytes however
/// short its varint, a string claims its length. A body of `MAX_MESSAGE_SIZE` bytes can
/// therefore claim up to 16 times that (a `u128` in one byte), and the limit has to allow
/// it so that every message [`encode`] accepts also decodes. What matters is that a
/// hostile length prefix is refused before anything is allocated: no claim, and so no
/// allocation, can exceed this 1 MiB.
pub const DECODE_LIMIT: usize = 16 * MAX_MESSAGE_SIZE;

/// The bincode configuration of the body.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Turns a bincode error into our own, in words rather than bincode's `Debug` output.
fn decode_error(err: bincode::error::DecodeError, len: usize) -> DecodeError {
    use bincode::error::DecodeError as E;
    match err {
        E::UnexpectedEnd { .. } => DecodeError::Truncated { len },
        E::LimitExceeded => DecodeError::Malformed(format!(
            "a length prefix exceeds the decoding limit of {DECODE_LIMIT} bytes"
        )),
        E::UnexpectedVariant {
            type_name, found, ..
        } => DecodeError::Malformed(format!("unknown variant {found} of {type_name}")),
        E::Utf8 { .. } => DecodeError::Malformed("invalid utf-8 in a string".into()),
        other => DecodeError::Malformed(other.to_string()),
    }
}

/// The header of a datagram of [`PROTOCOL_VERSION`].
fn header() -> [u8; HEADER_LEN] {
    let [hi, lo] = PROTOCOL_VERSION.to_be_bytes();
    [MAGIC[0], MAGIC[1], hi, lo]
}

/// Encodes `msg` into one datagram, header included.
///
/// # Errors
///
/// [`EncodeError::TooLarge`] when the datagram would exceed [`MAX_MESSAGE_SIZE`] bytes,
/// [`EncodeError::Serialize`] when the serializer refuses the value.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut datagram = header().to_vec();
    bincode::serde::encode_into_std_write(msg, &mut datagram, config())
        .map_err(|err| EncodeError::Serialize(err.to_string()))?;
    if datagram.len() > MAX_MESSAGE_SIZE {
        return Err(EncodeError::TooLarge {
            len: datagram.len(),
        });
    }
    Ok(datagram)
}

/// Decodes one datagram, header included, into a message.
///
/// Never panics, whatever the bytes.
///
/// # Errors
///
/// A [`DecodeError`] saying what is wrong with the datagram.
pub fn decode<T: DeserializeOwned>(datagram: &[u8]) -> Result<T, DecodeError> {
    let len = datagram.len();
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    if len > MAX_MESSAGE_SIZE {
        return Err(DecodeError::TooLarge { len });
    }
    let Some((head, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Truncated { len });
    };
    if head[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_be_bytes([head[2], head[3]]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion { got: version });
    }
    let (msg, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|err| decode_error(err, len))?;
    let extra = body.len().saturating_sub(used);
    if extra != 0 {
        return Err(DecodeError::TrailingBytes { extra });
    }
    Ok(msg)
}
