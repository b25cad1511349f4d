//! The envelope: one protobuf [`Envelope`] per frame.
//!
//! Large user payloads (call arguments, results, values put into references) are not
//! copied into the frame: [`encode_envelope_split`] encodes everything around the
//! payload into a small head and hands the payload back as it is, to be written after
//! the head. On the receiving side, [`decode_envelope`] takes the frame as [`Bytes`]
//! and the payload fields are slices of it. Both ends therefore move a bulk array
//! without copying it in the protocol layer.
//!
//! A payload may also be written from several places: [`encode_envelope_spliced`]
//! takes the payload's own bytes and [`Splices`] — shared buffers the encoder of the
//! payload left out, each with the offset where it belongs — and writes them in
//! order. The frame on the wire is the same as if the payload had been one buffer.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use thiserror::Error;

use crate::frame::{encode_frame, HEADER_LEN};
use crate::proto::{call_result::Outcome, envelope::Kind, Call, CallResult, Envelope, RefRequest};

/// Payloads of at least this many bytes travel beside the frame head rather than
/// inside it (see [`encode_envelope_split`]); smaller ones are cheaper to copy than
/// to write separately.
pub const SPLIT_PAYLOAD_MIN: usize = 64 * 1024;

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
/// # Panics
/// If the encoded message is longer than `u32::MAX` bytes (no decoder accepts it).
///
/// ```
/// use cohort_wire::{envelope::encode_envelope, proto::{envelope::Kind, Envelope, Exit}};
/// let mut out = bytes::BytesMut::new();
/// encode_envelope(&Envelope { kind: Some(Kind::Exit(Exit {})) }, &mut out);
/// assert!(out.len() > 4);
/// ```
pub fn encode_envelope(msg: &Envelope, out: &mut BytesMut) {
    let len = msg.encoded_len();
    let header = u32::try_from(len).expect("frame payload over 4 GiB");
    out.reserve(HEADER_LEN + len);
    // Encode straight into `out` behind a header, rather than into a temporary buffer
    // copied afterwards.
    out.extend_from_slice(&header.to_le_bytes());
    msg.encode(out).expect("reserved enough capacity");
}

/// One encoded frame in parts: `head`, then `tail`, then each of `rest`, written in
/// that order.
///
/// `tail` is empty unless the message carries a payload of at least
/// [`SPLIT_PAYLOAD_MIN`] bytes; then it is that payload, shared with the message
/// rather than copied. `rest` is empty unless the payload was spliced
/// ([`encode_envelope_spliced`]): then `tail` and `rest` are the payload's pieces.
///
/// ```
/// use cohort_wire::envelope::encode_envelope_split;
/// use cohort_wire::proto::{envelope::Kind, Envelope, Exit};
/// let f = encode_envelope_split(&Envelope { kind: Some(Kind::Exit(Exit {})) });
/// assert!(f.tail.is_empty());
/// assert_eq!(f.len(), f.head.len());
/// ```
#[derive(Debug, Default)]
pub struct SplitFrame {
    /// The frame header and every byte of the envelope before the payload.
    pub head: BytesMut,
    /// The payload (or its first piece), to be written right after `head`.
    pub tail: Bytes,
    /// The payload's further pieces, in order, after `tail`.
    pub rest: VecDeque<Bytes>,
}

impl SplitFrame {
    /// Bytes of the whole frame.
    ///
    /// ```
    /// assert_eq!(cohort_wire::envelope::SplitFrame::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// The next bytes to write: the head, then the tail, then the rest in order (an
    /// empty slice once all are written). Advancing past them with
    /// [`advance`](Self::advance) moves on.
    ///
    /// ```
    /// use cohort_wire::envelope::SplitFrame;
    /// let mut f = SplitFrame { head: "ab".into(), tail: "c".into(), rest: vec!["de".into()].into() };
    /// let mut out = Vec::new();
    /// while !f.is_empty() {
    ///     let n = f.chunk().len().min(1);
    ///     out.extend_from_slice(&f.chunk()[..n]);
    ///     f.advance(n);
    /// }
    /// assert_eq!(out, b"abcde");
    /// ```
    pub fn chunk(&self) -> &[u8] {
        if !self.head.is_empty() {
            &self.head
        } else if !self.tail.is_empty() {
            &self.tail
        } else {
            self.rest
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[], |b| &b[..])
        }
    }

    /// Marks `n` bytes of [`chunk`](Self::chunk) written.
    ///
    /// # Panics
    /// If `n` is more than `chunk().len()`.
    ///
    /// ```
    /// let mut f = cohort_wire::envelope::SplitFrame { head: "ab".into(), ..Default::default() };
    /// f.advance(2);
    /// assert!(f.is_empty());
    /// ```
    pub fn advance(&mut self, n: usize) {
        use bytes::Buf;
        if !self.head.is_empty() {
            self.head.advance(n);
            return;
        }
        while self.tail.is_empty() {
            match self.rest.pop_front() {
                Some(next) => self.tail = next,
                None => break,
            }
        }
        self.tail.advance(n);
    }

    /// The pieces of the frame in order (head, tail, rest), skipping empty ones.
    ///
    /// ```
    /// let f = cohort_wire::envelope::SplitFrame { head: "ab".into(), ..Default::default() };
    /// assert_eq!(f.parts().count(), 1);
    /// ```
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..])
            .chain(std::iter::once(&self.tail[..]))
            .chain(self.rest.iter().map(|b| &b[..]))
            .filter(|p| !p.is_empty())
    }

    /// Whether the frame has no bytes (only the default value).
    ///
    /// ```
    /// assert!(cohort_wire::envelope::SplitFrame::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes `msg` as one frame whose large payload, if any, is not copied: the frame
/// is `head` followed by `tail`, and equals what [`encode_envelope`] would produce up
/// to the order of fields (the payload field is moved last in its message, which
/// protobuf decoders accept).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use cohort_wire::envelope::{decode_envelope, encode_envelope_split, SPLIT_PAYLOAD_MIN};
/// use cohort_wire::frame::FrameDecoder;
/// use cohort_wire::proto::{envelope::Kind, Call, Envelope};
///
/// let args = Bytes::from(vec![7u8; SPLIT_PAYLOAD_MIN]);
/// let msg = Envelope { kind: Some(Kind::Call(Call { call_id: 1, args: args.clone(), ..Default::default() })) };
/// let f = encode_envelope_split(&msg);
/// assert_eq!(f.tail.as_ptr(), args.as_ptr()); // shared, not copied
/// let mut wire = BytesMut::new();
/// wire.extend_from_slice(&f.head);
/// wire.extend_from_slice(&f.tail);
/// let frame = FrameDecoder::new(1 << 20).decode(&mut wire).unwrap().unwrap();
/// assert_eq!(decode_envelope(frame).unwrap(), msg);
/// ```
pub fn encode_envelope_split(msg: &Envelope) -> SplitFrame {
    encode_envelope_spliced(msg, Splices::default())
}

/// Shared buffers spliced into a message's payload: each goes at its offset into the
/// payload bytes the message holds (offsets ascending, several may share one). What a
/// payload's encoder leaves out of its own buffer so that large blocks it did not
/// make are written from where they are (see `cohort_cluster::codec::serialize_shared`).
///
/// ```
/// use cohort_wire::envelope::Splices;
/// let mut s = Splices::default();
/// s.push(3, bytes::Bytes::from_static(b"xyz"));
/// assert_eq!(s.bytes(), 3);
/// assert_eq!(s.splice_into(b"abcdef"), b"abcxyzdef");
/// ```
#[derive(Debug, Default, Clone)]
pub struct Splices(Vec<(usize, Bytes)>);

impl Splices {
    /// Adds `piece` at offset `at` of the payload (not before the last one's offset).
    ///
    /// # Panics
    /// If `at` is before the offset of the piece added last.
    ///
    /// ```
    /// let mut s = cohort_wire::envelope::Splices::default();
    /// s.push(0, bytes::Bytes::from_static(b"a"));
    /// assert!(!s.is_empty());
    /// ```
    pub fn push(&mut self, at: usize, piece: Bytes) {
        assert!(
            self.0.last().is_none_or(|(last, _)| *last <= at),
            "splices out of order"
        );
        self.0.push((at, piece));
    }

    /// Whether there are none.
    ///
    /// ```
    /// assert!(cohort_wire::envelope::Splices::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes in all the pieces.
    ///
    /// ```
    /// assert_eq!(cohort_wire::envelope::Splices::default().bytes(), 0);
    /// ```
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|(_, b)| b.len()).sum()
    }

    /// The whole payload, `own` with the pieces in their places, in one new buffer
    /// (to check a spliced encoding against a copied one).
    ///
    /// # Panics
    /// If an offset is past the end of `own`.
    ///
    /// ```
    /// let s = cohort_wire::envelope::Splices::default();
    /// assert_eq!(s.splice_into(b"ab"), b"ab");
    /// ```
    pub fn splice_into(&self, own: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(own.len() + self.bytes());
        let mut from = 0;
        for (at, piece) in &self.0 {
            out.extend_from_slice(&own[from..*at]);
            out.extend_from_slice(piece);
            from = *at;
        }
        out.extend_from_slice(&own[from..]);
        out
    }

    /// The pieces with their offsets, in order.
    ///
    /// ```
    /// let mut s = cohort_wire::envelope::Splices::default();
    /// s.push(1, bytes::Bytes::from_static(b"a"));
    /// assert_eq!(s.iter().next().unwrap().0, 1);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Bytes)> {
        self.0.iter().map(|(at, b)| (*at, b))
    }

    /// The payload's pieces in order: slices of `own` between the spliced buffers.
    fn into_parts(self, own: &Bytes) -> VecDeque<Bytes> {
        let mut out = VecDeque::with_capacity(2 * self.0.len() + 1);
        let mut from = 0;
        for (at, piece) in self.0 {
            if at > from {
                out.push_back(own.slice(from..at));
            }
            out.push_back(piece);
            from = at;
        }
        if own.len() > from {
            out.push_back(own.slice(from..));
        }
        out
    }
}

/// Encodes `msg` as one frame whose payload is the payload field `msg` holds with
/// `splices` in their places, written from where each piece is (nothing copied): the
/// frame equals what [`encode_envelope`] would produce for the message with the
/// whole payload, up to the order of fields. The payload field is a call's
/// arguments, a channel or reference request's value, or a call result's value.
/// With no splices this is [`encode_envelope_split`].
///
/// # Panics
/// If `splices` is not empty and `msg` has no such payload field, or a splice's
/// offset is past the end of the payload bytes `msg` holds.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use cohort_wire::envelope::{decode_envelope, encode_envelope_spliced, Splices};
/// use cohort_wire::frame::FrameDecoder;
/// use cohort_wire::proto::{envelope::Kind, Call, Envelope};
///
/// let call = |args: Bytes| Envelope { kind: Some(Kind::Call(Call { call_id: 1, args, ..Default::default() })) };
/// let big = Bytes::from(vec![7u8; 100_000]);
/// let mut s = Splices::default();
/// s.push(2, big.clone());
/// let f = encode_envelope_spliced(&call(Bytes::from_static(b"abcd")), s);
/// let mut wire = BytesMut::new();
/// for part in f.parts() {
///     wire.extend_from_slice(part);
/// }
/// let frame = FrameDecoder::new(1 << 20).decode(&mut wire).unwrap().unwrap();
/// let whole = [&b"ab"[..], &big[..], &b"cd"[..]].concat();
/// assert_eq!(decode_envelope(frame).unwrap(), call(whole.into()));
/// ```
pub fn encode_envelope_spliced(msg: &Envelope, splices: Splices) -> SplitFrame {
    // The kind's field number in `Envelope`, the payload's field number in that
    // message, the payload, and the message's other fields encoded (small).
    let spliced = !splices.is_empty();
    let (kind_tag, payload_tag, payload, rest): (u32, u32, &Bytes, Vec<u8>) = match &msg.kind {
        // A kept function state crosses once and may be far larger than the
        // arguments: the larger of the two goes out from where it is.
        Some(Kind::Call(c))
            if !spliced
                && c.capture_state.len() > c.args.len()
                && c.capture_state.len() >= SPLIT_PAYLOAD_MIN =>
        {
            let rest = Call {
                capture_state: Bytes::new(),
                ..c.clone()
            };
            (1, 7, &c.capture_state, rest.encode_to_vec())
        }
        Some(Kind::Call(c)) if spliced || c.args.len() >= SPLIT_PAYLOAD_MIN => {
            let rest = Call {
                args: Bytes::new(),
                ..c.clone()
            };
            (1, 5, &c.args, rest.encode_to_vec())
        }
        Some(Kind::Result(CallResult {
            call_id,
            outcome: Some(Outcome::Value(v)),
        })) if spliced || v.len() >= SPLIT_PAYLOAD_MIN => {
            let rest = CallResult {
                call_id: *call_id,
                outcome: None,
            };
            (2, 2, v, rest.encode_to_vec())
        }
        Some(Kind::RefRequest(r)) if spliced || r.value.len() >= SPLIT_PAYLOAD_MIN => {
            let rest = RefRequest {
                value: Bytes::new(),
                ..r.clone()
            };
            (7, 4, &r.value, rest.encode_to_vec())
        }
        _ => {
            assert!(!spliced, "splices for a message without a payload field");
            let mut head = BytesMut::new();
            encode_envelope(msg, &mut head);
            return SplitFrame {
                head,
                ..Default::default()
            };
        }
    };
    // The envelope is key(kind_tag) varint(inner_len) inner, where inner is `rest`
    // followed by the payload field.
    let payload_len = payload.len() + splices.bytes();
    let payload_prefix = key_len(payload_tag) + encoded_len_varint(payload_len as u64);
    let inner_len = rest.len() + payload_prefix + payload_len;
    let env_len = key_len(kind_tag) + encoded_len_varint(inner_len as u64) + inner_len;
    let frame_len = u32::try_from(env_len).expect("frame payload over 4 GiB");
    let mut head = BytesMut::with_capacity(HEADER_LEN + env_len - payload_len);
    head.put_u32_le(frame_len);
    encode_key(kind_tag, WireType::LengthDelimited, &mut head);
    encode_varint(inner_len as u64, &mut head);
    head.extend_from_slice(&rest);
    encode_key(payload_tag, WireType::LengthDelimited, &mut head);
    encode_varint(payload_len as u64, &mut head);
    // With no splices the one part is the payload itself, shared.
    let mut rest = splices.into_parts(payload);
    SplitFrame {
        head,
        tail: rest.pop_front().unwrap_or_default(),
        rest,
    }
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
/// Payload fields (call arguments, results, put values) are slices of `payload`, not
/// copies.
///
/// # Errors
/// [`EnvelopeError::Malformed`] for bytes that are not an envelope;
/// [`EnvelopeError::UnknownKind`] for an envelope with no message of a known kind.
///
/// ```
/// use bytes::Bytes;
/// use cohort_wire::envelope::{decode_envelope, EnvelopeError};
/// assert_eq!(decode_envelope(Bytes::new()), Err(EnvelopeError::UnknownKind));
/// assert!(matches!(decode_envelope(Bytes::from_static(&[0xff, 0xff])), Err(EnvelopeError::Malformed(_))));
/// ```
pub fn decode_envelope(payload: Bytes) -> Result<Envelope, EnvelopeError> {
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

    /// The split encoding of `msg` decodes to `msg`, and shares a large payload.
    fn split_round_trip(msg: Envelope) {
        let f = encode_envelope_split(&msg);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&f.head);
        wire.extend_from_slice(&f.tail);
        assert!(f.rest.is_empty());
        let frame = FrameDecoder::new(1 << 24)
            .decode(&mut wire)
            .unwrap()
            .expect("one whole frame");
        assert!(wire.is_empty());
        assert_eq!(decode_envelope(frame).unwrap(), msg);
        if !f.tail.is_empty() {
            assert!(f.tail.len() >= SPLIT_PAYLOAD_MIN);
            assert!(
                f.head.len() < 128 + smaller_payload(&msg),
                "the head holds no large payload"
            );
        }
    }

    /// A call's smaller payload (the head carries it when both are large).
    fn smaller_payload(msg: &Envelope) -> usize {
        match &msg.kind {
            Some(Kind::Call(c)) => c.args.len().min(c.capture_state.len()),
            _ => 0,
        }
    }

    /// The spliced encoding of `msg`'s payload with `splices`, written piece by piece
    /// in odd sizes, decodes to `whole` (the message with the whole payload), and
    /// every spliced buffer is written from where it is.
    fn spliced_round_trip(msg: &Envelope, splices: Splices, whole: &Envelope) {
        let shared: Vec<usize> = splices.0.iter().map(|(_, b)| b.as_ptr() as usize).collect();
        let mut f = encode_envelope_spliced(msg, splices);
        assert_eq!(f.len(), whole.encoded_len() + HEADER_LEN);
        for at in &shared {
            assert!(
                f.parts().any(|p| p.as_ptr() as usize == *at),
                "a spliced piece is written from where it is"
            );
        }
        let mut wire = BytesMut::new();
        let mut step = 1;
        while !f.is_empty() {
            let n = f.chunk().len().min(step);
            wire.extend_from_slice(&f.chunk()[..n]);
            f.advance(n);
            step = step * 7 % 100_003 + 1;
        }
        let frame = FrameDecoder::new(1 << 24)
            .decode(&mut wire)
            .unwrap()
            .expect("one whole frame");
        assert_eq!(&decode_envelope(frame).unwrap(), whole);
    }

    #[test]
    fn spliced_payloads_of_every_kind_decode_as_the_whole_payload() {
        let own = big(1000, 1);
        let a = big(SPLIT_PAYLOAD_MIN, 2);
        let b = big(70_000, 3);
        // Offsets at the start, inside, twice at one place, at the end.
        for offsets in [
            vec![0],
            vec![500],
            vec![500, 500],
            vec![0, 1000],
            vec![1000],
        ] {
            let mut s = Splices::default();
            let mut whole = Vec::new();
            let mut from = 0;
            for (i, at) in offsets.iter().enumerate() {
                let piece = if i % 2 == 0 { a.clone() } else { b.clone() };
                whole.extend_from_slice(&own[from..*at]);
                whole.extend_from_slice(&piece);
                from = *at;
                s.push(*at, piece);
            }
            whole.extend_from_slice(&own[from..]);
            assert_eq!(s.splice_into(&own), whole);
            let whole = Bytes::from(whole);
            let call = |args: Bytes| Envelope {
                kind: Some(Kind::Call(Call {
                    call_id: 9,
                    capture: Some(Capture {
                        key: vec![1; 16],
                        forget: vec![],
                    }),
                    capture_state: big(100, 4),
                    args,
                    ..Default::default()
                })),
            };
            spliced_round_trip(&call(own.clone()), s.clone(), &call(whole.clone()));
            let request = |value: Bytes| Envelope {
                kind: Some(Kind::RefRequest(RefRequest {
                    call_id: 3,
                    value,
                    ..Default::default()
                })),
            };
            spliced_round_trip(&request(own.clone()), s.clone(), &request(whole.clone()));
            let result = |v: Bytes| Envelope {
                kind: Some(Kind::Result(CallResult {
                    call_id: 4,
                    outcome: Some(call_result::Outcome::Value(v)),
                })),
            };
            spliced_round_trip(&result(own.clone()), s, &result(whole));
        }
        // An empty payload of its own: the frame is the pieces.
        let mut s = Splices::default();
        s.push(0, a.clone());
        let req = |value: Bytes| Envelope {
            kind: Some(Kind::RefRequest(RefRequest {
                value,
                ..Default::default()
            })),
        };
        spliced_round_trip(&req(Bytes::new()), s, &req(a));
    }

    #[test]
    #[should_panic(expected = "splices out of order")]
    fn splices_out_of_order_are_refused() {
        let mut s = Splices::default();
        s.push(5, Bytes::new());
        s.push(4, Bytes::new());
    }

    #[test]
    fn a_call_with_a_large_state_and_large_arguments_sends_the_larger_beside_the_head() {
        for (state, args) in [
            (3 * SPLIT_PAYLOAD_MIN, SPLIT_PAYLOAD_MIN),
            (SPLIT_PAYLOAD_MIN, 2 * SPLIT_PAYLOAD_MIN),
        ] {
            let msg = Envelope {
                kind: Some(Kind::Call(Call {
                    capture: Some(Capture {
                        key: vec![1; 16],
                        forget: vec![],
                    }),
                    capture_state: big(state, 3),
                    args: big(args, 5),
                    ..Default::default()
                })),
            };
            let f = encode_envelope_split(&msg);
            assert_eq!(f.tail.len(), state.max(args));
            split_round_trip(msg);
        }
    }

    fn big(n: usize, seed: u8) -> Bytes {
        (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect()
    }

    #[test]
    fn large_payloads_of_every_kind_travel_beside_the_head() {
        let r = RefIdMsg {
            whence: 2,
            id: u64::MAX,
        };
        for n in [
            SPLIT_PAYLOAD_MIN - 1,
            SPLIT_PAYLOAD_MIN,
            3 * SPLIT_PAYLOAD_MIN + 5,
        ] {
            let kinds = vec![
                Kind::Call(Call {
                    call_id: 9,
                    mode: CallMode::Fetch as i32,
                    result_ref: Some(r),
                    function: Some(FunctionRef {
                        target: Some(function_ref::Target::CodeOffset(-77)),
                        display: "closure".into(),
                    }),
                    args: big(n, 3),
                    ..Default::default()
                }),
                // A kept function state beside small arguments, and beside large ones.
                Kind::Call(Call {
                    call_id: 10,
                    capture: Some(Capture {
                        key: vec![7; 16],
                        forget: vec![vec![1; 16]],
                    }),
                    capture_state: big(n, 17),
                    args: big(8, 19),
                    ..Default::default()
                }),
                Kind::Result(CallResult {
                    call_id: 1 << 40,
                    outcome: Some(call_result::Outcome::Value(big(n, 5))),
                }),
                Kind::Result(CallResult {
                    call_id: 0,
                    outcome: Some(call_result::Outcome::Value(big(n, 7))),
                }),
                Kind::RefRequest(RefRequest {
                    call_id: 3,
                    ref_id: Some(r),
                    kind: RefRequestKind::Put as i32,
                    value: big(n, 11),
                    creator: 4,
                    credits: 256,
                }),
            ];
            for k in kinds {
                split_round_trip(Envelope { kind: Some(k) });
            }
        }
    }

    fn round_trip(msg: Envelope) {
        let mut out = BytesMut::new();
        encode_envelope(&msg, &mut out);
        let f = FrameDecoder::new(1 << 20)
            .decode(&mut out)
            .unwrap()
            .unwrap();
        assert_eq!(decode_envelope(f).unwrap(), msg.clone());
        split_round_trip(msg);
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
                args: vec![1, 2, 3].into(),
                ..Default::default()
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
                    local: String::new(),
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
                value: vec![0].into(),
                creator: 1,
                credits: 3,
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
        fn split_frames_decode_to_the_message(call_id in any::<u64>(), creator in any::<u32>(), n in 0usize..200_000, which in 0u8..4) {
            let payload = big(n, 13);
            let kind = match which {
                0 => Kind::Call(Call { call_id, args: payload, ..Default::default() }),
                3 => Kind::Call(Call { call_id, capture: Some(Capture { key: vec![2; 16], forget: vec![] }), capture_state: payload, args: big(n / 2, 3), ..Default::default() }),
                1 => Kind::Result(CallResult { call_id, outcome: Some(call_result::Outcome::Value(payload)) }),
                _ => Kind::RefRequest(RefRequest { call_id, value: payload, creator, ..Default::default() }),
            };
            split_round_trip(Envelope { kind: Some(kind) });
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_envelope(Bytes::from(bytes));
        }

        #[test]
        fn truncated_envelopes_never_panic(id in any::<u64>(), args in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..100) {
            let msg = Envelope { kind: Some(Kind::Call(Call { call_id: id, args: args.into(), ..Default::default() })) };
            let bytes = prost::Message::encode_to_vec(&msg);
            let cut = cut.min(bytes.len());
            let _ = decode_envelope(Bytes::copy_from_slice(&bytes[..cut]));
        }
    }
}
