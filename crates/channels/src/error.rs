//! Error types shared by [`Channel`](crate::Channel) and every
//! [`AbstractChannel`](crate::AbstractChannel) implementation.

use std::fmt;

/// Why a channel operation other than `put` failed.
///
/// This is the Rust counterpart of Julia's
/// `InvalidStateException("Channel is closed.", :closed)` plus the two cases
/// that Julia reports with a plain `ErrorException`.
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, ChannelError};
///
/// let ch = Channel::<i32>::new(1);
/// ch.close();
/// assert_eq!(ch.take_blocking(), Err(ChannelError::Closed));
/// assert_eq!(ChannelError::Closed.to_string(), "channel is closed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel is closed and (for reads) holds no more values.
    #[error("channel is closed")]
    Closed,
    /// `fetch` was called on an unbuffered (capacity 0) channel. Julia 1.x
    /// refuses this too: an unbuffered channel never holds a value that could
    /// be inspected without taking it.
    #[error("fetch is not supported on an unbuffered channel")]
    Unbuffered,
    /// The operation is not meaningful for this
    /// [`AbstractChannel`](crate::AbstractChannel) implementation (the default
    /// of [`AbstractChannel::fetch`](crate::AbstractChannel::fetch)).
    #[error("operation not supported by this channel")]
    Unsupported,
}

/// A failed `put`: the channel was closed, and the value is handed back so
/// that the caller does not lose it.
///
/// `Debug` does not require `T: Debug`, so `.unwrap()` works for any `T`.
///
/// # Examples
///
/// ```
/// use cohort_channels::{Channel, ChannelError};
///
/// let ch = Channel::new(2);
/// ch.close();
/// let err = ch.put_blocking(String::from("lost?")).unwrap_err();
/// assert_eq!(err.value, "lost?"); // not lost: the value comes back
/// assert_eq!(ChannelError::from(err), ChannelError::Closed);
/// ```
#[derive(thiserror::Error)]
#[error("channel is closed")]
pub struct PutError<T> {
    /// The value that could not be put.
    pub value: T,
}

impl<T> PutError<T> {
    /// Returns the value that could not be put.
    ///
    /// # Examples
    ///
    /// ```
    /// use cohort_channels::Channel;
    ///
    /// let ch = Channel::new(0);
    /// ch.close();
    /// assert_eq!(ch.put_blocking(7).unwrap_err().into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value may be large or not `Debug`; what failed is what matters.
        f.debug_struct("PutError").finish_non_exhaustive()
    }
}

impl<T> From<PutError<T>> for ChannelError {
    /// A `put` only ever fails because the channel is closed, so this drops
    /// the value and yields [`ChannelError::Closed`]; it lets `?` mix puts
    /// and takes in one function.
    fn from(_: PutError<T>) -> Self {
        ChannelError::Closed
    }
}
