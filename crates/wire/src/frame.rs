//! Length-prefixed frames.
//!
//! A frame is a 4-byte little-endian payload length followed by the payload. The
//! decoder refuses a header that claims more than its maximum *before* reading or
//! allocating anything for it, so a peer cannot make us reserve more than the maximum
//! by lying. Below the maximum it does reserve what the header claims (so a large
//! payload is read in place, without regrowing the buffer): before authentication the
//! maximum is 4 KiB; after it, an authenticated peer — which may run code here anyway —
//! can make a connection reserve up to the post-handshake maximum (1 GiB).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default largest payload accepted after the handshake: 1 GiB (a 256 MiB array
/// fetch fits with room to spare).
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// The largest payload accepted during the handshake, before the peer is
/// authenticated: handshake messages are tiny.
pub const HANDSHAKE_MAX_FRAME: usize = 4096;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The header claims a payload larger than the decoder accepts.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The length the header claimed.
        len: usize,
        /// The decoder's maximum.
        max: usize,
    },
}

/// Cuts a byte stream into frames. Feed it the bytes read so far; it takes whole frames
/// off the front.
///
/// ```
/// use bytes::BytesMut;
/// use cohort_wire::frame::{encode_frame, FrameDecoder};
///
/// let mut buf = BytesMut::new();
/// encode_frame(b"hello", &mut buf);
/// let mut half = buf.split_to(6); // a partial frame
/// let mut dec = FrameDecoder::new(1024);
/// assert_eq!(dec.decode(&mut half).unwrap(), None);
/// half.unsplit(buf);
/// assert_eq!(&dec.decode(&mut half).unwrap().unwrap()[..], b"hello");
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
}

impl FrameDecoder {
    /// A decoder that accepts payloads of at most `max` bytes.
    ///
    /// ```
    /// let dec = cohort_wire::frame::FrameDecoder::new(64);
    /// assert_eq!(dec.max_frame(), 64);
    /// ```
    pub fn new(max: usize) -> Self {
        FrameDecoder { max }
    }

    /// The largest payload this decoder accepts.
    ///
    /// ```
    /// let dec = cohort_wire::frame::FrameDecoder::new(64);
    /// assert_eq!(dec.max_frame(), 64);
    /// ```
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Changes the largest payload accepted (the runtime raises it after the handshake).
    ///
    /// ```
    /// let mut dec = cohort_wire::frame::FrameDecoder::new(64);
    /// dec.set_max_frame(1 << 20);
    /// assert_eq!(dec.max_frame(), 1 << 20);
    /// ```
    pub fn set_max_frame(&mut self, max: usize) {
        self.max = max;
    }

    /// Takes one whole frame's payload off the front of `buf`, or returns `Ok(None)`
    /// if `buf` does not hold a whole frame yet. When the header is complete but the
    /// payload is not, it reserves room for the rest (bounded by the maximum) so the
    /// caller's next read lands in place.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the header claims more than the maximum; the stream
    /// cannot be resynchronised after that and the connection should be closed.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use cohort_wire::frame::{FrameDecoder, FrameError};
    /// let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0x7f][..]);
    /// let err = FrameDecoder::new(1024).decode(&mut buf).unwrap_err();
    /// assert!(matches!(err, FrameError::TooLarge { .. }));
    /// ```
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let total = HEADER_LEN + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// Appends one frame holding `payload` to `out`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes, which no decoder would accept.
///
/// ```
/// let mut out = bytes::BytesMut::new();
/// cohort_wire::frame::encode_frame(b"ab", &mut out);
/// assert_eq!(&out[..], &[2, 0, 0, 0, b'a', b'b']);
/// ```
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) {
    let len = u32::try_from(payload.len()).expect("frame payload over 4 GiB");
    out.reserve(HEADER_LEN + payload.len());
    out.put_u32_le(len);
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_payload_is_a_frame() {
        let mut buf = BytesMut::new();
        encode_frame(b"", &mut buf);
        let f = FrameDecoder::new(10).decode(&mut buf).unwrap().unwrap();
        assert!(f.is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_header_does_not_allocate_the_claim() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let cap = buf.capacity();
        assert!(FrameDecoder::new(1 << 20).decode(&mut buf).is_err());
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn exactly_max_is_accepted() {
        let mut buf = BytesMut::new();
        encode_frame(&[7; 16], &mut buf);
        assert!(FrameDecoder::new(16).decode(&mut buf).unwrap().is_some());
        let mut buf = BytesMut::new();
        encode_frame(&[7; 17], &mut buf);
        assert_eq!(
            FrameDecoder::new(16).decode(&mut buf),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
    }

    proptest! {
        #[test]
        fn round_trip_any_split(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
                                cut in 0usize..4000) {
            let mut wire = BytesMut::new();
            for p in &payloads { encode_frame(p, &mut wire); }
            let cut = cut.min(wire.len());
            let mut rest = wire.split_off(cut);
            let mut dec = FrameDecoder::new(1000);
            let mut got = Vec::new();
            while let Some(f) = dec.decode(&mut wire).unwrap() { got.push(f.to_vec()); }
            wire.unsplit(rest.split());
            while let Some(f) = dec.decode(&mut wire).unwrap() { got.push(f.to_vec()); }
            prop_assert_eq!(got, payloads);
            prop_assert!(wire.is_empty());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut dec = FrameDecoder::new(512);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
