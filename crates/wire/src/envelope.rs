//! The envelope: one protobuf [`Envelope`] per frame.

use bytes::BytesMut;
use prost::Message;
use thiserror::Error;

use crate::frame::{encode_frame, HEADER_LEN};
use crate::proto::Envelope;

/// Why a frame's payload is not a valid envelope.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The payload is not valid protobuf for an envelope.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// The envelope holds no message, or one of a kind this version does not know.
    #[error("envelope holds no message of a known kind")]
    UnknownKind,
}

/// Appends `msg` to `out` as one frame.
///
/// ```
/// use cohort_wire::{envelope::encode_envelope, proto::{envelope::Kind, Envelope, Exit}};
/// let mut out = bytes::BytesMut::new();
/// encode_envelope(&Envelope { kind: Some(Kind::Exit(Exit {})) }, &mut out);
/// assert!(out.len() > 4);
/// ```
pub fn encode_envelope(msg: &Envelope, out: &mut BytesMut) {
    let len = msg.encoded_len();
    out.reserve(HEADER_LEN + len);
    // Encode straight into `out` behind a header, rather than into a temporary buffer
    // copied afterwards: calls carry user payloads that may be large.
    out.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(out).expect("reserved enough capacity");
}

/// Appends any prost message to `out` as one frame (the handshake uses this).
///
/// ```
/// use cohort_wire::{envelope::encode_message, proto::Proof};
/// let mut out = bytes::BytesMut::new();
/// encode_message(&Proof { mac: vec![1, 2] }, &mut out);
/// assert_eq!(out[0], 4);
/// ```
pub fn encode_message<M: Message>(msg: &M, out: &mut BytesMut) {
    encode_frame(&msg.encode_to_vec(), out);
}

/// Decodes a frame's payload into an envelope and checks that it holds a message.
///
/// # Errors
/// [`EnvelopeError::Malformed`] for bytes that are not an envelope;
/// [`EnvelopeError::UnknownKind`] for an envelope with no message of a known kind.
///
/// ```
/// use cohort_wire::envelope::{decode_envelope, EnvelopeError};
/// assert_eq!(decode_envelope(&[]), Err(EnvelopeError::UnknownKind));
/// assert!(matches!(decode_envelope(&[0xff, 0xff]), Err(EnvelopeError::Malformed(_))));
/// ```
pub fn decode_envelope(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
    let env = Envelope::decode(payload).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if env.kind.is_none() {
        return Err(EnvelopeError::UnknownKind);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use crate::proto::{envelope::Kind, *};
    use proptest::prelude::*;

    fn round_trip(msg: Envelope) {
        let mut out = BytesMut::new();
        encode_envelope(&msg, &mut out);
        let f = FrameDecoder::new(1 << 20)
            .decode(&mut out)
            .unwrap()
            .unwrap();
        assert_eq!(decode_envelope(&f).unwrap(), msg);
    }

    #[test]
    fn every_kind_round_trips() {
        let r = RefIdMsg { whence: 1, id: 9 };
        let kinds = vec![
            Kind::Call(Call {
                call_id: 5,
                mode: CallMode::Wait as i32,
                result_ref: Some(r),
                function: Some(FunctionRef {
                    target: Some(function_ref::Target::Name("m::f".into())),
                    display: "m::f".into(),
                }),
                args: vec![1, 2, 3],
            }),
            Kind::Result(CallResult {
                call_id: 5,
                outcome: Some(call_result::Outcome::Error(RemoteError {
                    pid: 2,
                    kind: ErrorKind::Panic as i32,
                    function: "f".into(),
                    message: "boom".into(),
                    context: "src/lib.rs:1".into(),
                })),
            }),
            Kind::Identify(Identify { pid: 4 }),
            Kind::Join(Join {
                pid: 2,
                topology: Topology::AllToAll as i32,
                lazy: true,
                known: vec![WorkerInfo {
                    pid: 3,
                    host: "127.0.0.1".into(),
                    port: 9000,
                    hostname: "h".into(),
                    ident: String::new(),
                }],
                ..Default::default()
            }),
            Kind::JoinComplete(JoinComplete {
                os_pid: 77,
                cpu_threads: 2,
                hostname: "h".into(),
            }),
            Kind::RefBatch(RefBatch {
                ops: vec![RefOp {
                    ref_id: Some(r),
                    client: 3,
                    delta: -2,
                }],
            }),
            Kind::RefRequest(RefRequest {
                call_id: 1,
                ref_id: Some(r),
                kind: RefRequestKind::Put as i32,
                value: vec![0],
                creator: 1,
            }),
            Kind::PeerUpdate(PeerUpdate {
                added: vec![],
                removed: vec![3],
            }),
            Kind::Exit(Exit {}),
            Kind::Interrupt(Interrupt {}),
        ];
        for k in kinds {
            round_trip(Envelope { kind: Some(k) });
        }
    }

    proptest! {
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_envelope(&bytes);
        }

        #[test]
        fn truncated_envelopes_never_panic(id in any::<u64>(), args in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..100) {
            let msg = Envelope { kind: Some(Kind::Call(Call { call_id: id, args, ..Default::default() })) };
            let bytes = prost::Message::encode_to_vec(&msg);
            let cut = cut.min(bytes.len());
            let _ = decode_envelope(&bytes[..cut]);
        }
    }
}
