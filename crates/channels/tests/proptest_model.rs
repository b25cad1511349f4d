//! Random sequences of non-waiting operations on a buffered `Channel`,
//! checked against a `VecDeque` model. An operation that would wait is polled
//! once (it must be pending exactly when the model says so) and then dropped,
//! which also exercises cancellation: a dropped put must not have inserted,
//! a dropped take must not have removed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use cohort_channels::{Channel, ChannelError};
use futures::task::noop_waker_ref;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u16),
    Take,
    Fetch,
    Wait,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::Put),
        3 => Just(Op::Take),
        1 => Just(Op::Fetch),
        1 => Just(Op::Wait),
        // Rare, so that most sequences spend a while open.
        1 => Just(Op::Close),
    ]
}

fn poll_once<F: Future + Unpin>(mut fut: F) -> Poll<F::Output> {
    Pin::new(&mut fut).poll(&mut Context::from_waker(noop_waker_ref()))
}

proptest! {
    #[test]
    fn buffered_channel_matches_vecdeque(
        capacity in 1usize..6,
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let ch = Channel::new(capacity);
        let mut model: VecDeque<u16> = VecDeque::new();
        let mut open = true;

        for op in ops {
            match op {
                Op::Put(v) => {
                    let got = poll_once(ch.put(v));
                    if !open {
                        prop_assert!(matches!(got, Poll::Ready(Err(ref e)) if e.value == v));
                    } else if model.len() < capacity {
                        prop_assert!(matches!(got, Poll::Ready(Ok(()))));
                        model.push_back(v);
                    } else {
                        prop_assert!(got.is_pending());
                    }
                }
                Op::Take => {
                    let got = poll_once(ch.take());
                    match model.pop_front() {
                        Some(v) => prop_assert_eq!(got, Poll::Ready(Ok(v))),
                        None if !open => prop_assert_eq!(got, Poll::Ready(Err(ChannelError::Closed))),
                        None => prop_assert!(got.is_pending()),
                    }
                }
                Op::Fetch => {
                    let got = poll_once(ch.fetch());
                    match model.front() {
                        Some(&v) => prop_assert_eq!(got, Poll::Ready(Ok(v))),
                        None if !open => prop_assert_eq!(got, Poll::Ready(Err(ChannelError::Closed))),
                        None => prop_assert!(got.is_pending()),
                    }
                }
                Op::Wait => {
                    let got = poll_once(ch.wait());
                    if !model.is_empty() {
                        prop_assert_eq!(got, Poll::Ready(Ok(())));
                    } else if !open {
                        prop_assert_eq!(got, Poll::Ready(Err(ChannelError::Closed)));
                    } else {
                        prop_assert!(got.is_pending());
                    }
                }
                Op::Close => {
                    ch.close();
                    open = false;
                }
            }
            prop_assert_eq!(ch.len(), model.len());
            prop_assert_eq!(ch.isready(), !model.is_empty());
            prop_assert_eq!(ch.is_open(), open);
        }

        // Whatever is left drains in order once closed.
        ch.close();
        let rest: Vec<u16> = ch.iter().collect();
        prop_assert_eq!(rest, Vec::from(model));
    }
}
