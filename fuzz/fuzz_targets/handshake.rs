//! Fuzzes the `cohort_wire::handshake::Handshake` state machine against a peer that
//! does not know the cluster cookie.
//!
//! Two paths run for every input:
//!
//! 1. Sanity: a real exchange between a `Connector` and an `Acceptor` that share a
//!    cookie, with the delivery order and the build fingerprints taken from the input,
//!    must establish both sides and hand each the other's fingerprint. This keeps the
//!    success path exercised (and proves the harness can tell success from failure).
//! 2. Attack: one side (its role taken from the input) talks to the fuzzer, who does
//!    not know the cookie. The rest of the input is a sequence of operations, each
//!    delivering one payload to that side's `handle_payload`, after which the side's
//!    own `poll_transmit` output is drained (as a connection would send it):
//!    - a byte `n < 0xf0` followed by `n` bytes: those bytes, as they are;
//!    - `0xf0..=0xf7`: a frame the side itself sent earlier, reflected back to it;
//!    - `0xf8..=0xfb`: the next frame of an adversary `Handshake` of the opposite role
//!      holding a *different* cookie, which receives everything the side sends;
//!    - `0xfc..=0xff` then two bytes `i`, `x`: a frame the side sent, with byte `i`
//!      (modulo its length) XORed with `x`.
//!
//!    Checked: no panic; the side never reports `is_established()` (establishing
//!    without the cookie would be an authentication bypass — a bug in cohort-wire, not
//!    something to filter out here); once `handle_payload` has failed it keeps failing;
//!    everything the side sends is a well-formed handshake message within
//!    `HANDSHAKE_MAX_FRAME`, at most one hello, one proof and one reject, nothing after
//!    the reject, and never the cookie itself; a peer fingerprint, once known, is at most
//!    `MAX_FINGERPRINT_LEN` bytes.
#![no_main]

use cohort_wire::cookie::Cookie;
use cohort_wire::frame::HANDSHAKE_MAX_FRAME;
use cohort_wire::handshake::{Handshake, MAX_FINGERPRINT_LEN};
use cohort_wire::proto::{handshake::Step, Handshake as HandshakeMsg, Role};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn opposite(role: Role) -> Role {
    match role {
        Role::Connector => Role::Acceptor,
        _ => Role::Connector,
    }
}

/// Path 1: an honest exchange with a shared cookie establishes both sides, whatever
/// the order in which the two sides' frames are delivered. `order` picks, bit by bit,
/// which side delivers its next frame.
fn sanity(order: u8, fp_a: &[u8], fp_b: &[u8]) {
    let cookie = Cookie::new("fuzz-shared-cookie").expect("a valid cookie");
    let mut a = Handshake::new(Role::Connector, cookie.clone(), fp_a.to_vec());
    let mut b = Handshake::new(Role::Acceptor, cookie, fp_b.to_vec());
    let mut bits = order;
    for _ in 0..64 {
        let a_first = bits & 1 == 1;
        bits = bits.rotate_right(1);
        let (from, to) = if a_first {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let frame = match from.poll_transmit() {
            Some(f) => f,
            None => match to.poll_transmit() {
                // The other side speaks instead.
                Some(f) => {
                    from.handle_payload(&f)
                        .expect("an honest frame is accepted");
                    continue;
                }
                None => break,
            },
        };
        to.handle_payload(&frame)
            .expect("an honest frame is accepted");
    }
    assert!(a.poll_transmit().is_none() && b.poll_transmit().is_none());
    assert!(
        a.is_established(),
        "the connector did not establish with the right cookie"
    );
    assert!(
        b.is_established(),
        "the acceptor did not establish with the right cookie"
    );
    assert_eq!(a.peer_fingerprint(), Some(fp_b));
    assert_eq!(b.peer_fingerprint(), Some(fp_a));
}

/// What the attacked side has sent so far, and the checks on it.
#[derive(Default)]
struct Sent {
    frames: Vec<Vec<u8>>,
    hellos: usize,
    proofs: usize,
    rejects: usize,
}

impl Sent {
    fn record(&mut self, frame: Vec<u8>, cookie: &Cookie) {
        assert!(
            frame.len() <= HANDSHAKE_MAX_FRAME,
            "sent a handshake frame of {} bytes, over HANDSHAKE_MAX_FRAME",
            frame.len()
        );
        assert_eq!(self.rejects, 0, "sent a frame after a reject");
        let secret = cookie.expose().as_bytes();
        assert!(
            !frame.windows(secret.len()).any(|w| w == secret),
            "the cookie crossed the wire"
        );
        let msg = HandshakeMsg::decode(&frame[..]).expect("we send well-formed messages");
        match msg.step.expect("we send a message with a step") {
            Step::Hello(_) => self.hellos += 1,
            Step::Proof(p) => {
                assert_eq!(p.mac.len(), 32, "an HMAC-SHA256 proof is 32 bytes");
                self.proofs += 1;
            }
            Step::Reject(_) => self.rejects += 1,
        }
        assert!(self.hellos <= 1 && self.proofs <= 1, "sent a step twice");
        self.frames.push(frame);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (flags, order) = (data[0], data[1]);
    let mut input = &data[2..];

    // Fingerprints of up to MAX_FINGERPRINT_LEN bytes from the input.
    let fp_len = ((flags >> 1) as usize % 8) * 8;
    let fp_len = fp_len.min(input.len()).min(MAX_FINGERPRINT_LEN);
    let (fp, rest) = input.split_at(fp_len);
    input = rest;
    sanity(order, fp, &[order; 3]);

    // Path 2. A fresh random cookie each run: nothing the fuzzer learns carries over.
    let role = if flags & 1 == 0 {
        Role::Connector
    } else {
        Role::Acceptor
    };
    let cookie = Cookie::random();
    let mut side = Handshake::new(role, cookie.clone(), fp.to_vec());
    let mut adversary = Handshake::new(
        opposite(role),
        Cookie::new("not-the-cluster-cookie").expect("a valid cookie"),
        b"adversary".to_vec(),
    );
    let mut sent = Sent::default();
    let mut failed = false;

    let drain = |side: &mut Handshake, adversary: &mut Handshake, sent: &mut Sent| {
        while let Some(frame) = side.poll_transmit() {
            // The adversary hears everything; its own failures do not matter.
            let _ = adversary.handle_payload(&frame);
            sent.record(frame, &cookie);
        }
    };
    drain(&mut side, &mut adversary, &mut sent);
    assert_eq!(sent.hellos, 1, "a new handshake sends its hello first");

    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let payload: Vec<u8> = match op {
            0x00..=0xef => {
                let n = (op as usize).min(input.len());
                let (p, rest) = input.split_at(n);
                input = rest;
                p.to_vec()
            }
            0xf0..=0xf7 => match sent.frames.get((op & 7) as usize) {
                Some(f) => f.clone(),
                None => continue,
            },
            0xf8..=0xfb => match adversary.poll_transmit() {
                Some(f) => f,
                None => continue,
            },
            0xfc..=0xff => {
                let (i, x) = match input {
                    [i, x, rest @ ..] => {
                        input = rest;
                        (*i as usize, *x)
                    }
                    _ => break,
                };
                match sent.frames.get((op & 3) as usize) {
                    Some(f) if !f.is_empty() => {
                        let mut f = f.clone();
                        let at = i % f.len();
                        f[at] ^= x;
                        f
                    }
                    _ => continue,
                }
            }
        };
        let result = side.handle_payload(&payload);
        if failed {
            assert!(result.is_err(), "a failed handshake accepted a message");
        }
        failed |= result.is_err();
        drain(&mut side, &mut adversary, &mut sent);
        assert!(
            !side.is_established(),
            "AUTHENTICATION BYPASS: a {role:?} established with a peer that does not know the cookie"
        );
        if let Some(fp) = side.peer_fingerprint() {
            assert!(fp.len() <= MAX_FINGERPRINT_LEN);
        }
    }
});
