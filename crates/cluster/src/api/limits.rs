//! The size limit of one message, checked by the sender: arguments on the caller's
//! side, results on the callee's, values put into remote channels.
//!
//! A receiver drops a connection whose frame is over its limit (it cannot tell a
//! peer that breaks the protocol from one that is merely too generous), and a frame
//! over 4 GiB cannot even be written (its length is a `u32`). So the sender checks
//! first and fails the one call with a typed error; the connection and the processes
//! at its ends go on.

use cohort_wire::frame::DEFAULT_MAX_FRAME;

use crate::error::{CallError, ErrorKind, Failure};
use crate::shell::node::Node;

/// The environment variable that sets the largest message (frame) a process sends or
/// accepts after the handshake, in bytes (default 1 GiB, at most 4 GiB − 1, at least
/// [`MIN_MAX_FRAME`]). Read when a cluster is made;
/// [`Cluster::set_max_frame`](crate::Cluster::set_max_frame) changes it, and the
/// workers a cluster launches get its value.
///
/// ```
/// assert_eq!(cohort_cluster::MAX_FRAME_ENV, "COHORT_MAX_FRAME");
/// ```
pub const MAX_FRAME_ENV: &str = "COHORT_MAX_FRAME";

/// The smallest frame limit accepted: room for [`PAYLOAD_ROOM`] and a payload of the
/// same size.
///
/// ```
/// assert_eq!(cohort_cluster::MIN_MAX_FRAME, 128 * 1024);
/// ```
pub const MIN_MAX_FRAME: usize = 2 * PAYLOAD_ROOM;

/// The largest frame limit: a frame's length is a 32-bit number.
pub(crate) const MAX_MAX_FRAME: usize = u32::MAX as usize;

/// What a message needs beside its payload (function name, ids, the frame header):
/// a payload may be at most the frame limit less this.
///
/// ```
/// assert_eq!(cohort_cluster::PAYLOAD_ROOM, 64 * 1024);
/// ```
pub const PAYLOAD_ROOM: usize = 64 * 1024;

/// `bytes` as a frame limit: within [`MIN_MAX_FRAME`] and 4 GiB − 1.
pub(crate) fn clamp_max_frame(bytes: usize) -> usize {
    bytes.clamp(MIN_MAX_FRAME, MAX_MAX_FRAME)
}

/// The frame limit `COHORT_MAX_FRAME` names, or 1 GiB.
pub(crate) fn max_frame_from_env() -> usize {
    std::env::var(MAX_FRAME_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(DEFAULT_MAX_FRAME, clamp_max_frame)
}

/// The largest payload `n` sends in one message.
pub(crate) fn payload_limit(n: &Node) -> usize {
    n.max_frame().saturating_sub(PAYLOAD_ROOM)
}

/// Fails with [`CallError::PayloadTooLarge`] if a payload of `size` bytes cannot go
/// in one of `n`'s messages.
pub(crate) fn check_payload(n: &Node, what: &'static str, size: usize) -> Result<(), CallError> {
    let limit = payload_limit(n);
    if size > limit {
        return Err(CallError::PayloadTooLarge { what, size, limit });
    }
    Ok(())
}

/// [`check_payload`] for a result computed here for another process: the failure
/// the caller gets instead of the result.
pub(crate) fn check_result(n: &Node, size: usize) -> Result<(), Failure> {
    check_payload(n, "result", size)
        .map_err(|e| Failure::new(ErrorKind::PayloadTooLarge, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped_to_what_a_frame_can_hold() {
        assert_eq!(clamp_max_frame(0), MIN_MAX_FRAME);
        assert_eq!(clamp_max_frame(usize::MAX), u32::MAX as usize);
        assert_eq!(clamp_max_frame(1 << 20), 1 << 20);
    }

    #[test]
    fn an_oversized_payload_is_refused_naming_its_size_and_the_limit() {
        let n = Node::new();
        n.set_max_frame(MIN_MAX_FRAME);
        assert!(check_payload(&n, "call arguments", PAYLOAD_ROOM).is_ok());
        let e = check_payload(&n, "call arguments", PAYLOAD_ROOM + 1).unwrap_err();
        assert_eq!(
            e,
            CallError::PayloadTooLarge {
                what: "call arguments",
                size: PAYLOAD_ROOM + 1,
                limit: PAYLOAD_ROOM
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("65537") && msg.contains("COHORT_MAX_FRAME"),
            "{msg}"
        );
        let f = check_result(&n, usize::MAX).unwrap_err();
        assert_eq!(f.kind, ErrorKind::PayloadTooLarge);
    }
}
