//! The cluster cookie: the shared secret every connection proves knowledge of.

use std::fmt;

use rand::distributions::Alphanumeric;
use rand::Rng;
use thiserror::Error;

/// The largest cookie accepted, in bytes.
pub const MAX_COOKIE_LEN: usize = 256;

/// Why a string cannot be a cookie.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CookieError {
    /// The cookie is empty.
    #[error("the cluster cookie must not be empty")]
    Empty,
    /// The cookie is longer than [`MAX_COOKIE_LEN`].
    #[error("the cluster cookie is {0} bytes; at most {MAX_COOKIE_LEN} are allowed")]
    TooLong(usize),
    /// The cookie contains whitespace or control characters (it travels as one line).
    #[error("the cluster cookie must not contain whitespace or control characters")]
    BadChar,
}

/// The cluster's shared secret. Its `Debug` output hides the value.
///
/// ```
/// use cohort_wire::cookie::Cookie;
/// let c = Cookie::new("s3cret").unwrap();
/// assert_eq!(c.expose(), "s3cret");
/// assert_eq!(format!("{c:?}"), "Cookie(<hidden>)");
/// assert!(Cookie::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie(String);

impl Cookie {
    /// Makes a cookie from a string.
    ///
    /// # Errors
    /// [`CookieError`] if the string is empty, longer than [`MAX_COOKIE_LEN`], or holds
    /// whitespace or control characters.
    ///
    /// ```
    /// assert!(cohort_wire::cookie::Cookie::new("a b").is_err());
    /// ```
    pub fn new(s: impl Into<String>) -> Result<Self, CookieError> {
        let s = s.into();
        if s.is_empty() {
            return Err(CookieError::Empty);
        }
        if s.len() > MAX_COOKIE_LEN {
            return Err(CookieError::TooLong(s.len()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CookieError::BadChar);
        }
        Ok(Cookie(s))
    }

    /// A fresh random cookie of 32 alphanumeric characters.
    ///
    /// ```
    /// let c = cohort_wire::cookie::Cookie::random();
    /// assert_eq!(c.expose().len(), 32);
    /// ```
    pub fn random() -> Self {
        let s: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        Cookie(s)
    }

    /// The secret itself, for handing to a worker on its stdin.
    ///
    /// ```
    /// let c = cohort_wire::cookie::Cookie::new("x").unwrap();
    /// assert_eq!(c.expose(), "x");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cookie(<hidden>)")
    }
}
