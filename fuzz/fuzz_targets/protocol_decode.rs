//! Every message type of the registration and control sockets, decoded from arbitrary
//! datagrams: decoding never panics, and whatever decodes encodes again and decodes back to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netjail_protocol::codec;
use netjail_protocol::control::{Event, OperatorReply, OperatorRequest};
use netjail_protocol::{BrokerMessage, ClientMessage};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(datagram: &[u8]) {
    let Ok(msg) = codec::decode::<T>(datagram) else {
        return;
    };
    let again = codec::encode(&msg).expect("a decoded message encodes");
    assert!(
        again.len() <= datagram.len(),
        "re-encoding grew the message"
    );
    assert_eq!(codec::decode::<T>(&again).expect("re-encoded decodes"), msg);
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientMessage>(data);
    round_trip::<BrokerMessage>(data);
    round_trip::<OperatorRequest>(data);
    round_trip::<OperatorReply>(data);
    round_trip::<Event>(data);
});
