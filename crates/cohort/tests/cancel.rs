//! Cancel safety of `RemoteChannel::take` over real processes: a take that is given up
//! (`timeout`, `select!`, a dropped future) loses no value, whichever process owns the
//! channel, and wherever the value was when the take was given up.
//!
//! The timeouts here are only what gives a take up; no assertion depends on how long
//! anything takes.

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use cohort::prelude::*;
use cohort::RemoteChannel;

/// How long a take waits before it is given up (any length would do).
const GIVE_UP: Duration = Duration::from_millis(20);

/// Far more than anything here needs: a take that waits this long lost its value.
const LOST: Duration = Duration::from_secs(60);

/// Takes from `rc`, failing the test (instead of hanging) if no value comes.
async fn take(rc: &RemoteChannel<u64>) -> u64 {
    tokio::time::timeout(LOST, rc.take())
        .await
        .expect("the value was lost")
        .expect("take failed")
}

/// Starts a take on an empty `rc` and gives it up.
async fn give_up_a_take(rc: &RemoteChannel<u64>) {
    let r = tokio::time::timeout(GIVE_UP, rc.take()).await;
    assert!(r.is_err(), "the channel is empty: the take must wait");
}

/// Polls a take once, which sends its request. `None` if it waits, the value if it
/// completed at once (the reply can be that quick).
fn poll_once(
    t: &mut std::pin::Pin<Box<impl std::future::Future<Output = Result<u64, cohort::CallError>>>>,
) -> Option<u64> {
    match t.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => Some(r.expect("take failed")),
        Poll::Pending => None,
    }
}

/// Waits until `v` is the value a take would get next (failing the test if it never
/// is).
async fn wait_for_front(rc: &RemoteChannel<u64>, v: u64) {
    tokio::time::timeout(LOST, async {
        while rc.fetch().await.expect("fetch failed") != v {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{v} never came to the front"));
}

#[test]
fn a_take_given_up_on_a_worker_channel_loses_nothing_and_keeps_the_order() {
    let w = blocking::addprocs(1).unwrap();
    let owner = w[0];
    cohort::runtime::block_on(async move {
        let rc = RemoteChannel::<u64>::with_capacity(owner, 8).await.unwrap();
        for _ in 0..5 {
            give_up_a_take(&rc).await;
        }
        // Also a take given up by `select!` for something else that is ready.
        tokio::select! {
            biased;
            _ = rc.take() => panic!("nothing was put"),
            () = std::future::ready(()) => {}
        }
        for i in 0..8 {
            rc.put(i).await.unwrap();
        }
        // The owner stopped every given-up take before the puts arrived: none of
        // them took anything, and the values come out in order.
        for i in 0..8 {
            assert_eq!(take(&rc).await, i);
        }
        assert!(!rc.isready().await.unwrap());
    });
    blocking::rmprocs(&w, None).unwrap();
}

#[test]
fn a_take_given_up_after_it_removed_its_value_puts_it_back() {
    let w = blocking::addprocs(1).unwrap();
    let owner = w[0];
    cohort::runtime::block_on(async move {
        let rc = RemoteChannel::<u64>::with_capacity(owner, 4).await.unwrap();
        // Each round the value is put back from wherever it was when the take was
        // dropped: its reply on its way, or already arrived but not seen.
        for i in 0..30 {
            rc.put(i).await.unwrap();
            let mut t = Box::pin(rc.take());
            if let Some(v) = poll_once(&mut t) {
                assert_eq!(v, i, "round {i}: taken at once");
                continue;
            }
            // Once the owner has no value left, the value is with the take.
            while rc.isready().await.unwrap() {
                tokio::task::yield_now().await;
            }
            drop(t);
            assert_eq!(take(&rc).await, i, "round {i}");
        }
        // Put back at the front, ahead of the values behind it.
        loop {
            rc.put(100).await.unwrap();
            rc.put(101).await.unwrap();
            let mut t = Box::pin(rc.take());
            if let Some(v) = poll_once(&mut t) {
                assert_eq!(v, 100);
                assert_eq!(take(&rc).await, 101);
                continue; // again, with a take that waits for its reply
            }
            wait_for_front(&rc, 101).await; // 100 was removed
            drop(t);
            wait_for_front(&rc, 100).await; // and is back, at the front
            assert_eq!(take(&rc).await, 100);
            assert_eq!(take(&rc).await, 101);
            break;
        }
    });
    blocking::rmprocs(&w, None).unwrap();
}

#[cohort::remote]
fn give_up_then_take(given_up: RemoteChannel<u64>, rc: RemoteChannel<u64>) -> u64 {
    cohort::runtime::block_on(async move {
        give_up_a_take(&rc).await;
        given_up.put(1).await.unwrap();
        take(&rc).await
    })
}

#[test]
fn a_take_given_up_by_a_worker_on_another_workers_channel_loses_nothing() {
    let w = blocking::addprocs(2).unwrap();
    let given_up = RemoteChannel::<u64>::new_blocking(myid()).unwrap();
    let rc = RemoteChannel::<u64>::with_capacity_blocking(w[1], 2).unwrap();
    let f = remotecall(give_up_then_take, w[0], (given_up.clone(), rc.clone()));
    // Once `w[0]` has given up a take, the value must reach its second one.
    assert_eq!(given_up.take_blocking().unwrap(), 1);
    rc.put_blocking(7).unwrap();
    assert_eq!(f.fetch_blocking().unwrap(), 7);
    assert!(!rc.isready_blocking().unwrap());
    blocking::rmprocs(&w, None).unwrap();
}

#[test]
fn a_take_given_up_on_a_local_channel_loses_nothing() {
    cohort::runtime::block_on(async {
        let rc = RemoteChannel::<u64>::with_capacity(myid(), 4)
            .await
            .unwrap();
        give_up_a_take(&rc).await;
        // A local take that waits, is woken by a put, and is dropped before it runs
        // again takes nothing.
        {
            let mut t = Box::pin(rc.take());
            assert_eq!(poll_once(&mut t), None, "the channel is empty");
            rc.put(1).await.unwrap();
        }
        assert!(
            rc.isready().await.unwrap(),
            "the dropped local take removed nothing"
        );
        rc.put(2).await.unwrap();
        assert_eq!(take(&rc).await, 1);
        assert_eq!(take(&rc).await, 2);
    });
}

/// Sends a take on `rc`, then puts into `marker`, stored with `rc`: once the marker is
/// there, the owner has the take too (one connection keeps their order). Waits in the
/// take.
#[cohort::remote]
fn take_then_mark(marker: RemoteChannel<u64>, rc: RemoteChannel<u64>) {
    cohort::runtime::block_on(async move {
        let mut t = Box::pin(rc.take());
        assert_eq!(poll_once(&mut t), None, "the channel is empty");
        marker.put(1).await.unwrap();
        let _ = t.await;
    });
}

#[test]
fn the_take_of_a_worker_that_is_removed_loses_nothing() {
    let w = blocking::addprocs(2).unwrap();
    let (taker, owner) = (w[0], w[1]);
    let marker = RemoteChannel::<u64>::new_blocking(owner).unwrap();
    let rc = RemoteChannel::<u64>::with_capacity_blocking(owner, 2).unwrap();
    remote_do(take_then_mark, taker, (marker.clone(), rc.clone())).unwrap();
    assert_eq!(marker.take_blocking().unwrap(), 1);
    // The owner has the taker's take; it must not keep the value put after the taker
    // is gone.
    blocking::rmprocs(&[taker], None).unwrap();
    rc.put_blocking(5).unwrap();
    let r = rc.clone();
    cohort::runtime::block_on(async move { assert_eq!(take(&r).await, 5) });
    blocking::rmprocs(&[owner], None).unwrap();
}
