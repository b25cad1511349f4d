//! Cancel safety of channel takes, core by core: a take whose caller gives up is
//! stopped at its owner, and a value it removed anyway goes back to the front of the
//! channel — from the requester when the reply comes after it gave up, from the owner
//! when the requester is gone.

use std::time::Instant;

use bytes::Bytes;
use cohort_transport::Topology;
use cohort_wire::ids::{Pid, RefId, MASTER};
use cohort_wire::proto::{
    self, call_result::Outcome, envelope::Kind, Envelope, RefRequestKind, WorkerInfo,
};

use super::{Core, Joined, Output};
use crate::error::{CallError, ErrorKind, RemoteException};

/// Waiters are names; a stored channel is a number.
type TestCore = Core<&'static str, u8>;

const OWNER: Pid = 2;
const OTHER: Pid = 3;
/// The channel `OWNER` stores (made by the master).
const CHANNEL: RefId = RefId { whence: 1, id: 1 };

fn info(pid: Pid) -> WorkerInfo {
    WorkerInfo {
        pid,
        host: "test".into(),
        port: pid,
        ..Default::default()
    }
}

fn drain(core: &mut TestCore) -> Vec<Output<&'static str, u8>> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// The master, connected to `OWNER`.
fn requester() -> TestCore {
    let mut m = TestCore::new();
    m.handle_connected(OWNER, Some(info(OWNER)), false);
    drain(&mut m);
    m
}

/// Worker `OWNER`, storing the channel `CHANNEL` (as 7), connected to `OTHER`.
fn owner() -> TestCore {
    let mut w = TestCore::new();
    w.handle_joined(
        Joined {
            pid: OWNER,
            topology: Topology::AllToAll,
            lazy: true,
            known: vec![],
            connect_now: vec![],
            custom: false,
            heartbeat: None,
        },
        Instant::now(),
    );
    w.handle_connected(OTHER, Some(info(OTHER)), false);
    w.install_channel(CHANNEL, 7);
    drain(&mut w);
    w
}

fn request(call_id: u64, id: RefId, kind: RefRequestKind, value: &'static [u8]) -> Envelope {
    Envelope {
        kind: Some(Kind::RefRequest(proto::RefRequest {
            call_id,
            ref_id: Some(id.into()),
            kind: kind as i32,
            value: Bytes::from_static(value),
            creator: id.whence,
            credits: 0,
        })),
    }
}

fn result(call_id: u64, outcome: Outcome) -> Envelope {
    Envelope {
        kind: Some(Kind::Result(proto::CallResult {
            call_id,
            outcome: Some(outcome),
        })),
    }
}

/// The one output, a `RefRequest` transmitted to `to`.
fn one_ref_request(outs: Vec<Output<&'static str, u8>>, to: Pid) -> proto::RefRequest {
    let [Output::Transmit { to: t, env, .. }] =
        <[_; 1]>::try_from(outs).unwrap_or_else(|o| panic!("one output expected, got {}", o.len()))
    else {
        panic!("a transmit expected");
    };
    assert_eq!(t, to);
    let Some(Kind::RefRequest(r)) = env.kind else {
        panic!("a RefRequest expected, got {:?}", env.kind);
    };
    r
}

/// The one output, a channel operation: (from, call_id, kind, value).
fn one_channel_op(outs: Vec<Output<&'static str, u8>>) -> (Pid, u64, RefRequestKind, Bytes) {
    let [Output::Channel(op)] =
        <[_; 1]>::try_from(outs).unwrap_or_else(|o| panic!("one output expected, got {}", o.len()))
    else {
        panic!("a channel operation expected");
    };
    assert_eq!(op.channel, 7);
    (op.from, op.call_id, op.kind, op.value)
}

fn interrupted() -> CallError {
    CallError::Remote(RemoteException {
        pid: OWNER,
        kind: ErrorKind::Interrupted,
        function: String::new(),
        message: "take cancelled".into(),
        context: String::new(),
    })
}

#[test]
fn a_value_that_comes_for_an_abandoned_take_is_put_back_at_its_owner() {
    let mut m = requester();
    let now = Instant::now();
    let call_id = m.new_call_id();
    m.request(
        OWNER,
        call_id,
        request(call_id, CHANNEL, RefRequestKind::Take, b""),
        "taker",
    )
    .unwrap();
    let sent = one_ref_request(drain(&mut m), OWNER);
    assert_eq!(sent.kind(), RefRequestKind::Take);

    // The caller gives up: the owner is told to stop the take.
    assert!(m.abandon(call_id));
    let cancel = one_ref_request(drain(&mut m), OWNER);
    assert_eq!(cancel.kind(), RefRequestKind::Cancel);
    assert_eq!(cancel.call_id, call_id, "names the take it stops");
    assert_eq!(cancel.ref_id, Some(CHANNEL.into()));
    assert!(!m.abandon(call_id), "given up once");
    assert_eq!(m.pending_replies(), 0);
    assert_eq!(m.abandoned_takes(), 1);

    // The owner had removed a value before it heard: it goes back, to the front.
    m.handle_envelope(
        OWNER,
        result(call_id, Outcome::Value(Bytes::from_static(b"item"))),
        now,
    );
    let back = one_ref_request(drain(&mut m), OWNER);
    assert_eq!(back.kind(), RefRequestKind::PutFront);
    assert_eq!(back.call_id, 0, "not answered");
    assert_eq!(back.ref_id, Some(CHANNEL.into()));
    assert_eq!(&back.value[..], b"item");
    assert_eq!(m.abandoned_takes(), 0);

    // A second reply for the same call (there is none in the protocol) is dropped.
    m.handle_envelope(
        OWNER,
        result(call_id, Outcome::Value(Bytes::from_static(b"item"))),
        now,
    );
    assert!(drain(&mut m).is_empty());
}

#[test]
fn an_abandoned_take_answered_with_an_error_and_other_requests_put_nothing_back() {
    let mut m = requester();
    let now = Instant::now();
    let take = m.new_call_id();
    m.request(
        OWNER,
        take,
        request(take, CHANNEL, RefRequestKind::Take, b""),
        "taker",
    )
    .unwrap();
    let fetch = m.new_call_id();
    m.request(
        OWNER,
        fetch,
        request(fetch, CHANNEL, RefRequestKind::Fetch, b""),
        "fetcher",
    )
    .unwrap();
    drain(&mut m);
    assert!(m.abandon(take));
    assert_eq!(
        one_ref_request(drain(&mut m), OWNER).kind(),
        RefRequestKind::Cancel
    );
    assert!(m.abandon(fetch));
    assert!(
        drain(&mut m).is_empty(),
        "a fetch removes nothing: no cancel"
    );

    // The stopped take is answered with an error: nothing to put back.
    let stopped = RemoteException {
        pid: OWNER,
        kind: ErrorKind::Interrupted,
        function: String::new(),
        message: "take cancelled".into(),
        context: String::new(),
    };
    m.handle_envelope(OWNER, result(take, Outcome::Error(stopped.to_wire())), now);
    m.handle_envelope(
        OWNER,
        result(fetch, Outcome::Value(Bytes::from_static(b"copy"))),
        now,
    );
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.abandoned_takes(), 0);
}

#[test]
fn an_abandoned_take_is_forgotten_when_its_owner_is_lost() {
    let mut m = requester();
    let call_id = m.new_call_id();
    m.request(
        OWNER,
        call_id,
        request(call_id, CHANNEL, RefRequestKind::Take, b""),
        "taker",
    )
    .unwrap();
    drain(&mut m);
    assert!(m.abandon(call_id));
    drain(&mut m);
    m.handle_peer_lost(OWNER, "gone", Instant::now());
    assert_eq!(m.abandoned_takes(), 0, "the channel went with its owner");
    let outs = drain(&mut m);
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::Transmit { to: OWNER, .. })),
        "nothing is sent to a lost owner"
    );
}

#[test]
fn a_value_that_reached_the_waiter_but_not_the_caller_is_put_back() {
    let mut m = requester();
    m.put_back(OWNER, CHANNEL, Bytes::from_static(b"item"));
    let back = one_ref_request(drain(&mut m), OWNER);
    assert_eq!(back.kind(), RefRequestKind::PutFront);
    assert_eq!(back.call_id, 0);
    assert_eq!(&back.value[..], b"item");
}

#[test]
fn the_owner_stops_a_take_its_requester_cancels_and_puts_back_what_comes_back() {
    let mut w = owner();
    let now = Instant::now();
    w.handle_envelope(MASTER, request(5, CHANNEL, RefRequestKind::Take, b""), now);
    assert_eq!(
        one_channel_op(drain(&mut w)),
        (MASTER, 5, RefRequestKind::Take, Bytes::new())
    );
    w.handle_envelope(
        MASTER,
        request(5, CHANNEL, RefRequestKind::Cancel, b""),
        now,
    );
    assert_eq!(
        one_channel_op(drain(&mut w)),
        (MASTER, 5, RefRequestKind::Cancel, Bytes::new())
    );
    // The stopped take is answered (the requester forgets it then).
    w.reply(MASTER, 5, Err(interrupted()));
    let outs = drain(&mut w);
    assert!(matches!(
        &outs[..],
        [Output::Transmit { to: MASTER, env: Envelope { kind: Some(Kind::Result(r)) }, .. }]
            if r.call_id == 5
    ));
    // A cancel for a take that was answered already has nothing to stop.
    w.handle_envelope(
        MASTER,
        request(5, CHANNEL, RefRequestKind::Cancel, b""),
        now,
    );
    assert!(drain(&mut w).is_empty());

    // A value handed back goes to the channel, unanswered.
    w.handle_envelope(
        MASTER,
        request(0, CHANNEL, RefRequestKind::PutFront, b"item"),
        now,
    );
    assert_eq!(
        one_channel_op(drain(&mut w)),
        (
            MASTER,
            0,
            RefRequestKind::PutFront,
            Bytes::from_static(b"item")
        )
    );
    w.reply(MASTER, 0, Ok(Bytes::new()));
    assert!(drain(&mut w).is_empty(), "call id 0 is never answered");
}

#[test]
fn cancel_and_put_front_for_something_not_a_channel_are_ignored() {
    let mut w = owner();
    let now = Instant::now();
    let before = w.ref_stats();
    let elsewhere = RefId { whence: 1, id: 99 };
    w.handle_envelope(
        MASTER,
        request(5, elsewhere, RefRequestKind::Cancel, b""),
        now,
    );
    w.handle_envelope(
        MASTER,
        request(0, elsewhere, RefRequestKind::PutFront, b"item"),
        now,
    );
    assert!(drain(&mut w).is_empty(), "not answered, nothing run");
    assert_eq!(w.ref_stats(), before, "no slot made for them");
}

#[test]
fn the_owner_stops_the_takes_of_a_lost_requester_and_puts_back_what_they_took() {
    let mut w = owner();
    let now = Instant::now();
    w.handle_envelope(OTHER, request(9, CHANNEL, RefRequestKind::Take, b""), now);
    w.handle_envelope(OTHER, request(10, CHANNEL, RefRequestKind::Take, b""), now);
    w.handle_envelope(MASTER, request(9, CHANNEL, RefRequestKind::Take, b""), now);
    assert_eq!(drain(&mut w).len(), 3);

    w.handle_peer_lost(OTHER, "gone", now);
    let stops: Vec<(Pid, u64)> = drain(&mut w)
        .into_iter()
        .filter_map(|o| match o {
            Output::Channel(op) if op.kind == RefRequestKind::Cancel => Some((op.from, op.call_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops,
        vec![(OTHER, 9), (OTHER, 10)],
        "only the lost one's takes"
    );

    // Take 9 had removed a value before it was stopped: it goes back to the channel
    // here, since its requester cannot get it.
    w.reply(OTHER, 9, Ok(Bytes::from_static(b"item")));
    assert_eq!(
        one_channel_op(drain(&mut w)),
        (
            OWNER,
            0,
            RefRequestKind::PutFront,
            Bytes::from_static(b"item")
        )
    );
    // Take 10 was stopped: nothing to put back, nobody to answer.
    w.reply(OTHER, 10, Err(interrupted()));
    assert!(drain(&mut w).is_empty());
    // The live requester's take is answered as usual.
    w.reply(MASTER, 9, Ok(Bytes::from_static(b"other")));
    assert!(matches!(
        &drain(&mut w)[..],
        [Output::Transmit { to: MASTER, .. }]
    ));
}

#[test]
fn a_removed_requester_still_connected_has_its_takes_stopped_and_put_back() {
    let mut w = owner();
    let now = Instant::now();
    w.handle_envelope(OTHER, request(9, CHANNEL, RefRequestKind::Take, b""), now);
    drain(&mut w);
    // The master says `OTHER` is gone; its connection here has not ended yet.
    let removed = Envelope {
        kind: Some(Kind::PeerUpdate(proto::PeerUpdate {
            added: vec![],
            removed: vec![OTHER],
        })),
    };
    w.handle_envelope(MASTER, removed, now);
    let stops: Vec<_> = drain(&mut w)
        .into_iter()
        .filter_map(|o| match o {
            Output::Channel(op) => Some((op.from, op.call_id, op.kind)),
            _ => None,
        })
        .collect();
    assert_eq!(stops, vec![(OTHER, 9, RefRequestKind::Cancel)]);
    // A take it sent before it died, still on the connection, starts — and what it
    // removes goes back, since its requester has left.
    w.handle_envelope(OTHER, request(10, CHANNEL, RefRequestKind::Take, b""), now);
    drain(&mut w);
    for call_id in [9, 10] {
        w.reply(OTHER, call_id, Ok(Bytes::from_static(b"item")));
        assert_eq!(
            one_channel_op(drain(&mut w)),
            (
                OWNER,
                0,
                RefRequestKind::PutFront,
                Bytes::from_static(b"item")
            )
        );
    }
    // The end of the connection stops nothing twice.
    w.handle_peer_lost(OTHER, "gone", now);
    assert!(!drain(&mut w)
        .iter()
        .any(|o| matches!(o, Output::Channel(_) | Output::Transmit { to: OTHER, .. })));
}
