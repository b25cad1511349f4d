//! Fuzzes `cohort_wire::envelope::decode_envelope` on arbitrary frame payloads.
//!
//! Checked:
//!
//! - `decode_envelope` never panics, whatever the bytes;
//! - when it accepts them, the envelope holds a message (`kind` is set), and
//!   re-encoding it with `encode_envelope` and with `encode_envelope_split` (head then
//!   tail) gives frames of the same length that a `FrameDecoder` takes whole and that
//!   decode back to an equal envelope;
//! - so that the split path (payloads of at least `SPLIT_PAYLOAD_MIN` bytes, which
//!   fuzz inputs are too short to hold) is exercised too, a decoded `Call`,
//!   `CallResult` value or `RefRequest` is also re-encoded with its payload grown past
//!   `SPLIT_PAYLOAD_MIN`: the tail must then be that payload itself (shared, not
//!   copied), and the frame must decode back to the grown envelope.
#![no_main]

use bytes::{Bytes, BytesMut};
use cohort_wire::envelope::{
    decode_envelope, encode_envelope, encode_envelope_split, SPLIT_PAYLOAD_MIN,
};
use cohort_wire::frame::{FrameDecoder, DEFAULT_MAX_FRAME, HEADER_LEN};
use cohort_wire::proto::{call_result::Outcome, envelope::Kind, Envelope};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Takes exactly one whole frame off `wire` and decodes it as an envelope.
fn decode_one_frame(mut wire: BytesMut) -> Envelope {
    let frame = FrameDecoder::new(DEFAULT_MAX_FRAME)
        .decode(&mut wire)
        .expect("a re-encoded envelope fits the maximum")
        .expect("a whole frame");
    assert!(wire.is_empty(), "bytes left after the frame");
    decode_envelope(frame).expect("a re-encoded envelope decodes")
}

/// Both encodings of `env` decode back to `env`; returns the split frame's tail.
fn round_trip(env: &Envelope) -> Bytes {
    let mut plain = BytesMut::new();
    encode_envelope(env, &mut plain);
    assert_eq!(plain.len(), HEADER_LEN + env.encoded_len());
    let plain_len = plain.len();
    assert_eq!(&decode_one_frame(plain), env, "encode_envelope round trip");

    let split = encode_envelope_split(env);
    assert_eq!(
        split.len(),
        plain_len,
        "split frame length differs from the plain one"
    );
    let mut wire = BytesMut::with_capacity(split.len());
    wire.extend_from_slice(&split.head);
    wire.extend_from_slice(&split.tail);
    assert_eq!(
        &decode_one_frame(wire),
        env,
        "encode_envelope_split round trip"
    );
    split.tail
}

/// `payload` grown to at least `SPLIT_PAYLOAD_MIN` bytes (its bytes repeated, or a
/// filler when it is empty).
fn grow(payload: &Bytes) -> Bytes {
    let mut v = Vec::with_capacity(SPLIT_PAYLOAD_MIN + payload.len());
    while v.len() < SPLIT_PAYLOAD_MIN {
        if payload.is_empty() {
            v.push(0xa5);
        } else {
            v.extend_from_slice(payload);
        }
    }
    Bytes::from(v)
}

fuzz_target!(|data: &[u8]| {
    let env = match decode_envelope(Bytes::copy_from_slice(data)) {
        Ok(env) => env,
        Err(_) => return,
    };
    assert!(
        env.kind.is_some(),
        "decode_envelope accepted an envelope without a message"
    );
    let tail = round_trip(&env);
    // The fuzzer's inputs are shorter than SPLIT_PAYLOAD_MIN, so nothing is split off.
    if data.len() < SPLIT_PAYLOAD_MIN {
        assert!(tail.is_empty(), "a small envelope was split");
    }

    // The split path, with the same surrounding fields.
    let mut big = env.clone();
    let payload = match &mut big.kind {
        Some(Kind::Call(c)) => {
            c.args = grow(&c.args);
            c.args.clone()
        }
        Some(Kind::Result(r)) => match &mut r.outcome {
            Some(Outcome::Value(v)) => {
                *v = grow(v);
                v.clone()
            }
            _ => return,
        },
        Some(Kind::RefRequest(r)) => {
            r.value = grow(&r.value);
            r.value.clone()
        }
        _ => return,
    };
    let tail = round_trip(&big);
    assert_eq!(tail.len(), payload.len());
    assert_eq!(
        tail.as_ptr(),
        payload.as_ptr(),
        "the split payload was copied"
    );
});
