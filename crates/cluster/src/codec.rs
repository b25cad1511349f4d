//! User payloads: serde values encoded with `postcard`.
//!
//! postcard is compact (varint integers, no field names), maintained, and serde-based;
//! bincode 3 is a deliberately broken release, and bincode 2's own format is larger
//! for small integers. Bulk numeric data should travel as byte buffers
//! (`serde_bytes`), which postcard copies as one block.
//!
//! Encoding also records which process the bytes are for, so that handles inside a
//! value (a `Future` sent to another process) can register that process with their
//! owner — see [`serializing_for`].

use std::cell::Cell;

use cohort_wire::ids::Pid;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ErrorKind, Failure};

/// Encodes a value.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if serde refuses the value.
///
/// ```
/// let b = cohort_cluster::codec::encode(&(1u8, "a")).unwrap();
/// let v: (u8, String) = cohort_cluster::codec::decode(&b).unwrap();
/// assert_eq!(v, (1, "a".to_string()));
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Failure> {
    postcard::to_stdvec(value).map_err(|e| Failure::new(ErrorKind::Serialization, e.to_string()))
}

/// Encodes a value at the end of `out`.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if serde refuses the value.
///
/// ```
/// let mut out = vec![9];
/// cohort_cluster::codec::encode_into(&1u8, &mut out).unwrap();
/// assert_eq!(out, vec![9, 1]);
/// ```
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Failure> {
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken)
        .map_err(|e| Failure::new(ErrorKind::Serialization, e.to_string()))?;
    Ok(())
}

/// Decodes a value.
///
/// # Errors
/// A [`Failure`] of kind `Serialization` if the bytes are not a `T`.
///
/// ```
/// assert!(cohort_cluster::codec::decode::<u64>(&[]).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    postcard::from_bytes(bytes).map_err(|e| {
        Failure::new(
            ErrorKind::Serialization,
            format!("cannot decode {}: {e}", std::any::type_name::<T>()),
        )
    })
}

thread_local! {
    static TARGET: Cell<Option<Pid>> = const { Cell::new(None) };
}

/// The process the value being serialized on this thread is for, if the runtime is
/// serializing a message (Julia's `worker_id_from_socket` during serialization). Custom
/// `Serialize` impls may use it; handles use it to register the receiver.
///
/// ```
/// assert_eq!(cohort_cluster::codec::serializing_for(), None);
/// ```
pub fn serializing_for() -> Option<Pid> {
    TARGET.with(|t| t.get())
}

/// Runs `f` with [`serializing_for`] reporting `pid`.
pub(crate) fn with_target<R>(pid: Pid, f: impl FnOnce() -> R) -> R {
    let prev = TARGET.with(|t| t.replace(Some(pid)));
    let r = f();
    TARGET.with(|t| t.set(prev));
    r
}
