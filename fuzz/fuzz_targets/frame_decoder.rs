//! Fuzzes `cohort_wire::frame::FrameDecoder` the way a socket drives it.
//!
//! The input picks a maximum frame size and a schedule of chunk sizes, and the rest is
//! the byte stream. The stream is fed to one decoder chunk by chunk, taking frames off
//! the front after every chunk, as the runtime does after every read. Checked:
//!
//! - it never panics;
//! - every frame returned is at most the maximum;
//! - `Ok(None)` consumes nothing and, once a header is in, reserves room for the rest
//!   of the frame; `Ok(Some(_))` consumes exactly the header and the payload;
//! - a `TooLarge` error names the length the header claims and the decoder's maximum,
//!   consumes nothing, and ends the stream (nothing is fed after it);
//! - the frames and the error do not depend on how the stream was chunked: they equal
//!   those of a straightforward reference parser run on the whole stream;
//! - re-encoding every frame with `encode_frame` decodes back to the same payload, and
//!   re-encoding them all reproduces the consumed bytes exactly (the framing is
//!   canonical).
#![no_main]

use bytes::{Bytes, BytesMut};
use cohort_wire::frame::{encode_frame, FrameDecoder, FrameError, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// The reference: frames of `stream` in order, the error that stops it if any, and how
/// many bytes the frames took.
fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, Option<FrameError>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        if rest.len() < HEADER_LEN {
            return (frames, None, pos);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len > max {
            return (frames, Some(FrameError::TooLarge { len, max }), pos);
        }
        if rest.len() < HEADER_LEN + len {
            return (frames, None, pos);
        }
        frames.push(&rest[HEADER_LEN..HEADER_LEN + len]);
        pos += HEADER_LEN + len;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // Small maxima only: below the maximum a header may legitimately make the decoder
    // reserve room for the whole claimed frame, and the fuzzer's memory limit would
    // report a 1 GiB reservation as a crash.
    let max = u16::from_le_bytes([data[0], data[1]]) as usize;
    let n_sizes = (data[2] % 8) as usize;
    if data.len() < 3 + n_sizes {
        return;
    }
    // A size of 0 means "everything that is left".
    let sizes = &data[3..3 + n_sizes];
    let stream = &data[3 + n_sizes..];

    let mut dec = FrameDecoder::new(max);
    assert_eq!(dec.max_frame(), max);
    let mut buf = BytesMut::new();
    let mut got: Vec<Bytes> = Vec::new();
    let mut error = None;
    let mut fed = 0;
    let mut turn = 0;
    'feed: while fed < stream.len() {
        let size = match sizes.get(turn % sizes.len().max(1)) {
            None | Some(0) => stream.len() - fed,
            Some(&s) => (s as usize).min(stream.len() - fed),
        };
        turn += 1;
        buf.extend_from_slice(&stream[fed..fed + size]);
        fed += size;
        loop {
            let before = buf.len();
            let header = (before >= HEADER_LEN)
                .then(|| u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize);
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max, "frame of {} > max {max}", frame.len());
                    assert_eq!(
                        header,
                        Some(frame.len()),
                        "frame length is not the header's"
                    );
                    assert_eq!(buf.len(), before - HEADER_LEN - frame.len());
                    got.push(frame);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    if let Some(len) = header {
                        assert!(len <= max);
                        assert!(
                            buf.capacity() >= HEADER_LEN + len,
                            "no room reserved for the rest of the frame"
                        );
                    }
                    break;
                }
                Err(e) => {
                    let len = header.expect("an error before a whole header");
                    assert!(len > max);
                    assert_eq!(e, FrameError::TooLarge { len, max });
                    assert_eq!(buf.len(), before, "an error consumed bytes");
                    error = Some(e);
                    // The stream cannot be resynchronised: a caller closes it here.
                    break 'feed;
                }
            }
        }
    }

    // Chunking must not matter.
    let (want, want_error, consumed) = reference(stream, max);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g[..], *w);
    }
    assert_eq!(error, want_error);
    if error.is_none() {
        assert_eq!(fed, stream.len());
        assert_eq!(
            &buf[..],
            &stream[consumed..],
            "leftover is not the unread tail"
        );
    }

    // Re-encode: each frame alone, and all of them as one stream.
    let mut all = BytesMut::new();
    for frame in &got {
        let mut one = BytesMut::new();
        encode_frame(frame, &mut one);
        assert_eq!(one.len(), HEADER_LEN + frame.len());
        let again = FrameDecoder::new(max)
            .decode(&mut one)
            .expect("a re-encoded frame within the maximum")
            .expect("a whole re-encoded frame");
        assert_eq!(again, *frame);
        assert!(one.is_empty());
        encode_frame(frame, &mut all);
    }
    assert_eq!(
        &all[..],
        &stream[..consumed],
        "re-encoding is not canonical"
    );
    let mut dec = FrameDecoder::new(max);
    for frame in &got {
        assert_eq!(dec.decode(&mut all), Ok(Some(frame.clone())));
    }
    assert_eq!(dec.decode(&mut all), Ok(None));
    assert!(all.is_empty());
});
