//! The connection handshake, as a sans-IO state machine.
//!
//! Both ends run the same machine with opposite [`Role`]s:
//!
//! 1. each sends `Hello { protocol_version, build_fingerprint, nonce, role }`;
//! 2. on the peer's hello, each checks the version and sends
//!    `Proof { mac = HMAC-SHA256(cookie, "cohort-auth-v1" ‖ own role ‖ peer nonce ‖ own nonce) }`;
//! 3. on the peer's proof, each recomputes the MAC the peer must have made and compares
//!    in constant time. Both proofs checked ⇒ [`Handshake::is_established`].
//!
//! The cookie never crosses the wire; each side proves it knows the cookie by answering
//! the other's fresh challenge, and the role in the MAC stops a proof from being
//! reflected back to its maker. A failure queues a `Reject` with the reason (so the
//! peer can report it) and returns the error; the caller closes the connection.
//!
//! ```
//! use cohort_wire::cookie::Cookie;
//! use cohort_wire::handshake::Handshake;
//! use cohort_wire::proto::Role;
//!
//! let cookie = Cookie::new("secret").unwrap();
//! let mut a = Handshake::new(Role::Connector, cookie.clone(), b"exe-1".to_vec());
//! let mut b = Handshake::new(Role::Acceptor, cookie, b"exe-1".to_vec());
//! // Shuttle frames until neither side has anything to say.
//! loop {
//!     let mut moved = false;
//!     while let Some(f) = a.poll_transmit() { b.handle_payload(&f).unwrap(); moved = true; }
//!     while let Some(f) = b.poll_transmit() { a.handle_payload(&f).unwrap(); moved = true; }
//!     if !moved { break; }
//! }
//! assert!(a.is_established() && b.is_established());
//! assert_eq!(a.peer_fingerprint(), Some(&b"exe-1"[..]));
//! ```

use std::collections::VecDeque;

use hmac::{Hmac, Mac};
use prost::Message;
use rand::RngCore;
use sha2::Sha256;
use thiserror::Error;

use crate::cookie::Cookie;
use crate::proto::{handshake::Step, Handshake as HandshakeMsg, Hello, Proof, Reject, Role};
use crate::PROTOCOL_VERSION;

/// Bytes of a challenge nonce.
pub const NONCE_LEN: usize = 32;

/// The largest build fingerprint accepted from a peer.
pub const MAX_FINGERPRINT_LEN: usize = 64;

const LABEL: &[u8] = b"cohort-auth-v1";

/// Why a handshake failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// A frame was not a handshake message.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The peer claims the same role as we have (both connected, or both accepted).
    #[error("the peer claims our own role")]
    RoleConflict,
    /// The peer's proof does not match our cookie: it does not know the cluster cookie.
    #[error("authentication failed: the peer does not know the cluster cookie")]
    BadProof,
    /// The peer refused us, with its reason.
    #[error("the peer refused the connection: {0}")]
    Rejected(String),
    /// A message arrived out of order (a proof before a hello, a second hello…).
    #[error("unexpected handshake message: {0}")]
    Unexpected(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitProof,
    Established,
    Failed,
}

/// One side of a connection's handshake. Feed it the peer's frames with
/// [`handle_payload`](Self::handle_payload); send what [`poll_transmit`](Self::poll_transmit)
/// returns, each as one frame.
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    cookie: Cookie,
    nonce: [u8; NONCE_LEN],
    peer_nonce: Vec<u8>,
    /// The peer's build fingerprint, once its hello has arrived.
    peer_fingerprint: Option<Vec<u8>>,
    state: State,
    out: VecDeque<Vec<u8>>,
}

impl Handshake {
    /// Starts a handshake for the given end of the connection, queueing our hello.
    ///
    /// ```
    /// use cohort_wire::{cookie::Cookie, handshake::Handshake, proto::Role};
    /// let mut h = Handshake::new(Role::Acceptor, Cookie::new("c").unwrap(), vec![1]);
    /// assert!(h.poll_transmit().is_some()); // the hello
    /// assert!(!h.is_established());
    /// ```
    pub fn new(role: Role, cookie: Cookie, build_fingerprint: Vec<u8>) -> Self {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let hello = HandshakeMsg {
            step: Some(Step::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                build_fingerprint,
                nonce: nonce.to_vec(),
                role: role as i32,
            })),
        };
        Handshake {
            role,
            cookie,
            nonce,
            peer_nonce: Vec::new(),
            peer_fingerprint: None,
            state: State::AwaitHello,
            out: VecDeque::from([hello.encode_to_vec()]),
        }
    }

    /// The next payload to send as one frame, if any.
    ///
    /// ```
    /// use cohort_wire::{cookie::Cookie, handshake::Handshake, proto::Role};
    /// let mut h = Handshake::new(Role::Connector, Cookie::new("c").unwrap(), vec![]);
    /// assert!(h.poll_transmit().is_some());
    /// assert!(h.poll_transmit().is_none());
    /// ```
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Whether both proofs have been exchanged and checked.
    ///
    /// ```
    /// use cohort_wire::{cookie::Cookie, handshake::Handshake, proto::Role};
    /// assert!(!Handshake::new(Role::Connector, Cookie::new("c").unwrap(), vec![]).is_established());
    /// ```
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// The build fingerprint the peer sent, once its hello has arrived.
    ///
    /// ```
    /// use cohort_wire::{cookie::Cookie, handshake::Handshake, proto::Role};
    /// let mut h = Handshake::new(Role::Connector, Cookie::new("c").unwrap(), vec![]);
    /// assert_eq!(h.peer_fingerprint(), None);
    /// assert!(h.handle_payload(b"garbage").is_err());
    /// assert_eq!(h.peer_fingerprint(), None); // failed before any hello
    /// ```
    pub fn peer_fingerprint(&self) -> Option<&[u8]> {
        self.peer_fingerprint.as_deref()
    }

    /// Handles one frame's payload from the peer.
    ///
    /// # Errors
    /// Any [`HandshakeError`]; the handshake is then failed for good, a `Reject` naming
    /// the reason may be queued for the peer, and the connection should be closed once
    /// [`poll_transmit`](Self::poll_transmit) is drained.
    ///
    /// ```
    /// use cohort_wire::{cookie::Cookie, handshake::{Handshake, HandshakeError}, proto::Role};
    /// let mut h = Handshake::new(Role::Connector, Cookie::new("c").unwrap(), vec![]);
    /// assert!(matches!(h.handle_payload(&[0xff]), Err(HandshakeError::Malformed(_))));
    /// ```
    pub fn handle_payload(&mut self, payload: &[u8]) -> Result<(), HandshakeError> {
        let result = self.step(payload);
        if let Err(e) = &result {
            if !matches!(e, HandshakeError::Rejected(_)) && self.state != State::Failed {
                self.out.push_back(
                    HandshakeMsg {
                        step: Some(Step::Reject(Reject {
                            reason: e.to_string(),
                        })),
                    }
                    .encode_to_vec(),
                );
            }
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, payload: &[u8]) -> Result<(), HandshakeError> {
        let msg =
            HandshakeMsg::decode(payload).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        match (self.state, msg.step) {
            (State::Failed, _) => Err(HandshakeError::Unexpected("message after failure")),
            (_, Some(Step::Reject(r))) => Err(HandshakeError::Rejected(r.reason)),
            (State::AwaitHello, Some(Step::Hello(h))) => {
                if h.protocol_version != PROTOCOL_VERSION {
                    return Err(HandshakeError::VersionMismatch {
                        ours: PROTOCOL_VERSION,
                        theirs: h.protocol_version,
                    });
                }
                if h.role != opposite(self.role) as i32 {
                    return Err(HandshakeError::RoleConflict);
                }
                if h.nonce.len() != NONCE_LEN {
                    return Err(HandshakeError::Malformed("nonce of wrong length".into()));
                }
                if h.build_fingerprint.len() > MAX_FINGERPRINT_LEN {
                    return Err(HandshakeError::Malformed("fingerprint too long".into()));
                }
                self.peer_nonce = h.nonce;
                self.peer_fingerprint = Some(h.build_fingerprint);
                let mac = self.mac(self.role, &self.peer_nonce, &self.nonce);
                self.out.push_back(
                    HandshakeMsg {
                        step: Some(Step::Proof(Proof { mac })),
                    }
                    .encode_to_vec(),
                );
                self.state = State::AwaitProof;
                Ok(())
            }
            (State::AwaitProof, Some(Step::Proof(p))) => {
                let mut expected = self.keyed();
                expected.update(&[opposite(self.role) as u8]);
                expected.update(&self.nonce);
                expected.update(&self.peer_nonce);
                expected
                    .verify_slice(&p.mac)
                    .map_err(|_| HandshakeError::BadProof)?;
                self.state = State::Established;
                Ok(())
            }
            (State::Established, _) => Err(HandshakeError::Unexpected("message after handshake")),
            (State::AwaitHello, _) => Err(HandshakeError::Unexpected("expected a hello")),
            (State::AwaitProof, _) => Err(HandshakeError::Unexpected("expected a proof")),
        }
    }

    fn keyed(&self) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.cookie.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        m.update(LABEL);
        m
    }

    fn mac(&self, role: Role, challenge: &[u8], own: &[u8]) -> Vec<u8> {
        let mut m = self.keyed();
        m.update(&[role as u8]);
        m.update(challenge);
        m.update(own);
        m.finalize().into_bytes().to_vec()
    }
}

fn opposite(role: Role) -> Role {
    match role {
        Role::Connector => Role::Acceptor,
        _ => Role::Connector,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair(ca: &str, cb: &str) -> (Handshake, Handshake) {
        (
            Handshake::new(Role::Connector, Cookie::new(ca).unwrap(), b"fa".to_vec()),
            Handshake::new(Role::Acceptor, Cookie::new(cb).unwrap(), b"fb".to_vec()),
        )
    }

    /// Runs the exchange; returns each side's first error.
    fn run(
        a: &mut Handshake,
        b: &mut Handshake,
    ) -> (Option<HandshakeError>, Option<HandshakeError>) {
        let (mut ea, mut eb) = (None, None);
        for _ in 0..10 {
            while let Some(f) = a.poll_transmit() {
                if let Err(e) = b.handle_payload(&f) {
                    eb.get_or_insert(e);
                }
            }
            while let Some(f) = b.poll_transmit() {
                if let Err(e) = a.handle_payload(&f) {
                    ea.get_or_insert(e);
                }
            }
        }
        (ea, eb)
    }

    #[test]
    fn same_cookie_establishes_and_exchanges_fingerprints() {
        let (mut a, mut b) = pair("k", "k");
        assert_eq!(run(&mut a, &mut b), (None, None));
        assert!(a.is_established() && b.is_established());
        assert_eq!(a.peer_fingerprint(), Some(&b"fb"[..]));
        assert_eq!(b.peer_fingerprint(), Some(&b"fa"[..]));
    }

    #[test]
    fn wrong_cookie_fails_on_both_sides() {
        let (mut a, mut b) = pair("k", "other");
        let (ea, eb) = run(&mut a, &mut b);
        assert_eq!(eb, Some(HandshakeError::BadProof));
        assert!(matches!(
            ea,
            Some(HandshakeError::BadProof | HandshakeError::Rejected(_))
        ));
        assert!(!a.is_established() && !b.is_established());
    }

    #[test]
    fn cookie_never_on_the_wire() {
        let (mut a, _) = pair("supersecretcookie", "x");
        let hello = a.poll_transmit().unwrap();
        assert!(!hello.windows(17).any(|w| w == b"supersecretcookie"));
    }

    #[test]
    fn reflected_proof_is_refused() {
        // An attacker without the cookie replays our own hello and proof back at us.
        let mut a = Handshake::new(Role::Acceptor, Cookie::new("k").unwrap(), vec![]);
        let mut b = Handshake::new(Role::Connector, Cookie::new("k").unwrap(), vec![]);
        let hello_b = b.poll_transmit().unwrap();
        let _ = a.poll_transmit();
        a.handle_payload(&hello_b).unwrap();
        let proof_a = a.poll_transmit().unwrap();
        // Reflect a's proof back to a.
        assert_eq!(a.handle_payload(&proof_a), Err(HandshakeError::BadProof));
    }

    #[test]
    fn version_and_role_checked() {
        let mut a = Handshake::new(Role::Acceptor, Cookie::new("k").unwrap(), vec![]);
        let bad = HandshakeMsg {
            step: Some(Step::Hello(Hello {
                protocol_version: 99,
                build_fingerprint: vec![],
                nonce: vec![0; NONCE_LEN],
                role: Role::Connector as i32,
            })),
        };
        assert_eq!(
            a.handle_payload(&bad.encode_to_vec()),
            Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 99
            })
        );
        let mut a = Handshake::new(Role::Acceptor, Cookie::new("k").unwrap(), vec![]);
        let same_role = HandshakeMsg {
            step: Some(Step::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                build_fingerprint: vec![],
                nonce: vec![0; NONCE_LEN],
                role: Role::Acceptor as i32,
            })),
        };
        assert_eq!(
            a.handle_payload(&same_role.encode_to_vec()),
            Err(HandshakeError::RoleConflict)
        );
    }

    #[test]
    fn proof_before_hello_is_unexpected() {
        let mut a = Handshake::new(Role::Acceptor, Cookie::new("k").unwrap(), vec![]);
        let p = HandshakeMsg {
            step: Some(Step::Proof(Proof { mac: vec![0; 32] })),
        };
        assert!(matches!(
            a.handle_payload(&p.encode_to_vec()),
            Err(HandshakeError::Unexpected(_))
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics_or_establishes(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 0..6)) {
            let mut a = Handshake::new(Role::Acceptor, Cookie::new("k").unwrap(), vec![]);
            for f in frames { let _ = a.handle_payload(&f); }
            prop_assert!(!a.is_established());
        }
    }
}
