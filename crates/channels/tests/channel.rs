//! Behaviour of the local `Channel<T>`: Julia's `Channel` semantics
//! (rendezvous, bounded buffer, FIFO, fetch, close, iteration), plus the
//! properties a runtime relies on (no lost or duplicated values under
//! contention, cancellation safety, blocking forms on plain threads).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use cohort_channels::{AbstractChannel, Channel, ChannelError};
use futures::task::noop_waker_ref;
use futures::{FutureExt, StreamExt};

/// Polls a future once with a no-op waker.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(noop_waker_ref()))
}

const SHORT: Duration = Duration::from_millis(50);

#[test]
fn unbuffered_put_waits_until_taken() {
    let ch = Channel::new(0);
    let done = Arc::new(AtomicBool::new(false));
    let putter = {
        let (ch, done) = (ch.clone(), done.clone());
        thread::spawn(move || {
            ch.put_blocking(7).unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    thread::sleep(SHORT);
    assert!(!done.load(Ordering::SeqCst), "put returned with no taker");
    assert!(
        ch.isready(),
        "a waiting putter makes an unbuffered channel ready"
    );
    assert_eq!(ch.len(), 0, "an offer is not buffered");
    assert_eq!(ch.take_blocking(), Ok(7));
    putter.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert!(!ch.isready());
}

#[test]
fn unbuffered_take_waits_for_put() {
    let ch = Channel::new(0);
    let taker = {
        let ch = ch.clone();
        thread::spawn(move || ch.take_blocking())
    };
    thread::sleep(SHORT);
    assert!(!taker.is_finished());
    ch.put_blocking("hi").unwrap();
    assert_eq!(taker.join().unwrap(), Ok("hi"));
}

#[test]
fn unbuffered_put_future_pending_until_taken() {
    let ch = Channel::new(0);
    let mut put = ch.put(1);
    assert!(poll_once(&mut put).is_pending());
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(ch.take().now_or_never(), Some(Ok(1)));
    assert!(matches!(poll_once(&mut put), Poll::Ready(Ok(()))));
}

#[test]
fn bounded_capacity_n_then_waits() {
    const N: usize = 5;
    let ch = Channel::new(N);
    for i in 0..N {
        assert!(matches!(ch.put(i).now_or_never(), Some(Ok(()))), "put {i}");
    }
    assert_eq!(ch.len(), N);
    let mut extra = ch.put(N);
    assert!(poll_once(&mut extra).is_pending(), "N+1th put must wait");
    assert_eq!(ch.len(), N);
    assert_eq!(ch.take_blocking(), Ok(0));
    assert!(matches!(poll_once(&mut extra), Poll::Ready(Ok(()))));
    let rest: Vec<_> = (0..N).map(|_| ch.take_blocking().unwrap()).collect();
    assert_eq!(rest, [1, 2, 3, 4, 5]);
}

#[test]
fn fifo_order() {
    let ch = Channel::new(100);
    for i in 0..100 {
        ch.put_blocking(i).unwrap();
    }
    for i in 0..100 {
        assert_eq!(ch.take_blocking(), Ok(i));
    }
}

#[test]
fn fifo_order_unbuffered_single_producer() {
    let ch = Channel::new(0);
    let producer = {
        let ch = ch.clone();
        thread::spawn(move || {
            for i in 0..200 {
                ch.put_blocking(i).unwrap();
            }
        })
    };
    for i in 0..200 {
        assert_eq!(ch.take_blocking(), Ok(i));
    }
    producer.join().unwrap();
}

#[test]
fn fetch_does_not_remove() {
    let ch = Channel::new(2);
    ch.put_blocking(String::from("a")).unwrap();
    ch.put_blocking(String::from("b")).unwrap();
    for _ in 0..3 {
        assert_eq!(ch.fetch_blocking().as_deref(), Ok("a"));
    }
    assert_eq!(ch.len(), 2);
    assert_eq!(ch.take_blocking().as_deref(), Ok("a"));
    assert_eq!(ch.fetch_blocking().as_deref(), Ok("b"));
}

#[test]
fn fetch_waits_for_a_value() {
    let ch = Channel::new(1);
    let fetcher = {
        let ch = ch.clone();
        thread::spawn(move || ch.fetch_blocking())
    };
    thread::sleep(SHORT);
    assert!(!fetcher.is_finished());
    ch.put_blocking(3).unwrap();
    assert_eq!(fetcher.join().unwrap(), Ok(3));
    assert_eq!(ch.len(), 1);
}

#[test]
fn fetch_on_unbuffered_is_an_error() {
    let ch = Channel::<i32>::new(0);
    assert_eq!(ch.fetch_blocking(), Err(ChannelError::Unbuffered));
    // ... even while a putter is waiting, and without disturbing it.
    let mut put = ch.put(1);
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(ch.fetch_blocking(), Err(ChannelError::Unbuffered));
    assert_eq!(ch.take_blocking(), Ok(1));
}

#[test]
fn close_drains_then_errors() {
    // The manual's example: c = Channel(2); put!(c, 1); close(c); ...
    let c = Channel::new(2);
    c.put_blocking(1).unwrap();
    c.close();
    assert!(!c.is_open());
    assert_eq!(c.put_blocking(2).unwrap_err().value, 2);
    assert_eq!(c.fetch_blocking(), Ok(1));
    assert_eq!(c.fetch_blocking(), Ok(1));
    assert!(c.isready());
    assert_eq!(c.wait_blocking(), Ok(()));
    assert_eq!(c.take_blocking(), Ok(1));
    assert_eq!(c.take_blocking(), Err(ChannelError::Closed));
    assert_eq!(c.fetch_blocking(), Err(ChannelError::Closed));
    assert_eq!(c.wait_blocking(), Err(ChannelError::Closed));
    c.close(); // idempotent
    assert_eq!(c.take_blocking(), Err(ChannelError::Closed));
}

#[test]
fn close_wakes_waiting_readers() {
    for cap in [0, 1, 4] {
        let ch = Channel::<i32>::new(cap);
        let taker = {
            let ch = ch.clone();
            thread::spawn(move || ch.take_blocking())
        };
        let waiter = {
            let ch = ch.clone();
            thread::spawn(move || ch.wait_blocking())
        };
        thread::sleep(SHORT);
        ch.close();
        assert_eq!(
            taker.join().unwrap(),
            Err(ChannelError::Closed),
            "cap {cap}"
        );
        assert_eq!(
            waiter.join().unwrap(),
            Err(ChannelError::Closed),
            "cap {cap}"
        );
    }
}

#[test]
fn waiting_put_gets_value_back_on_close() {
    // Full buffered channel: the waiting put fails, the buffered value stays.
    let ch = Channel::new(1);
    ch.put_blocking(vec![0]).unwrap();
    let putter = {
        let ch = ch.clone();
        thread::spawn(move || ch.put_blocking(vec![1, 2, 3]))
    };
    thread::sleep(SHORT);
    ch.close();
    assert_eq!(putter.join().unwrap().unwrap_err().value, vec![1, 2, 3]);
    assert_eq!(ch.take_blocking(), Ok(vec![0]));
    assert_eq!(ch.take_blocking(), Err(ChannelError::Closed));

    // Unbuffered channel: the untaken offer is withdrawn and handed back.
    let ch = Channel::new(0);
    let putter = {
        let ch = ch.clone();
        thread::spawn(move || ch.put_blocking(String::from("offer")))
    };
    thread::sleep(SHORT);
    assert!(ch.isready());
    ch.close();
    assert!(
        !ch.isready(),
        "a closed unbuffered channel has nothing to take"
    );
    assert_eq!(putter.join().unwrap().unwrap_err().value, "offer");
    assert_eq!(ch.take_blocking(), Err(ChannelError::Closed));
}

#[test]
fn put_on_closed_returns_value() {
    for cap in [0, 1, usize::MAX] {
        let ch = Channel::new(cap);
        ch.close();
        let err = futures::executor::block_on(ch.put(Box::new(5))).unwrap_err();
        assert_eq!(*err.into_inner(), 5);
    }
}

#[test]
fn wait_wakes_on_put_and_does_not_take() {
    let ch = Channel::new(3);
    let waiter = {
        let ch = ch.clone();
        thread::spawn(move || ch.wait_blocking())
    };
    thread::sleep(SHORT);
    assert!(!waiter.is_finished());
    ch.put_blocking(1).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    assert_eq!(ch.len(), 1);
}

#[test]
fn wait_on_unbuffered_waits_for_a_putter() {
    let ch = Channel::new(0);
    let mut wait = ch.wait();
    assert!(poll_once(&mut wait).is_pending());
    let mut put = ch.put(9);
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(poll_once(&mut wait), Poll::Ready(Ok(())));
    assert_eq!(ch.take_blocking(), Ok(9));
}

#[test]
fn blocking_iterator_ends_when_closed_and_empty() {
    // The manual: foreach(i->put!(c, i), 1:3); close(c); [i for i in c]
    let c = Channel::new(10);
    for i in 1..=3 {
        c.put_blocking(i).unwrap();
    }
    c.close();
    let data: Vec<i32> = (&c).into_iter().collect();
    assert_eq!(data, [1, 2, 3]);
    assert_eq!(c.iter().next(), None);
    assert_eq!(c.clone().into_iter().next(), None);
}

#[test]
fn blocking_iterator_waits_for_new_data() {
    let c = Channel::new(10);
    let reader = {
        let c = c.clone();
        thread::spawn(move || c.into_iter().collect::<Vec<i32>>())
    };
    for i in 1..=3 {
        c.put_blocking(i).unwrap();
    }
    thread::sleep(SHORT);
    assert!(
        !reader.is_finished(),
        "the loop waits while the channel is open"
    );
    c.put_blocking(4).unwrap();
    c.close();
    assert_eq!(reader.join().unwrap(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn stream_ends_when_closed_and_empty() {
    let c = Channel::new(0);
    let producer = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                c.put(i).await.unwrap();
            }
            c.close();
        })
    };
    let got: Vec<i32> = c.stream().collect().await;
    producer.await.unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>());

    let mut s = c.stream();
    assert_eq!(s.next().await, None);
    assert!(futures::stream::FusedStream::is_terminated(&s));
    assert_eq!(s.next().await, None);
}

/// `producers` × `per_producer` distinct values through a channel of the
/// given capacity, read by `consumers` threads; checks nothing is lost or
/// duplicated.
fn threads_exchange(capacity: usize, producers: u64, consumers: usize, per_producer: u64) {
    let ch = Channel::new(capacity);
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let ch = ch.clone();
            thread::spawn(move || {
                for i in 0..per_producer {
                    ch.put_blocking(p * per_producer + i).unwrap();
                }
            })
        })
        .collect();
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            let ch = ch.clone();
            thread::spawn(move || ch.iter().collect::<Vec<u64>>())
        })
        .collect();
    for p in prods {
        p.join().unwrap();
    }
    ch.close();
    let mut all: Vec<u64> = cons.into_iter().flat_map(|c| c.join().unwrap()).collect();
    let n = producers * per_producer;
    assert_eq!(
        all.len() as u64,
        n,
        "capacity {capacity}: lost or duplicated values"
    );
    assert_eq!(all.iter().sum::<u64>(), n * (n - 1) / 2);
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len() as u64,
        n,
        "capacity {capacity}: duplicated values"
    );
}

#[test]
fn many_threads_no_loss_buffered() {
    threads_exchange(16, 4, 4, 10_000);
}

#[test]
fn many_threads_no_loss_capacity_one() {
    threads_exchange(1, 4, 4, 2_000);
}

#[test]
fn many_threads_no_loss_unbuffered() {
    threads_exchange(0, 4, 4, 2_000);
}

#[test]
fn many_threads_no_loss_unbounded() {
    threads_exchange(usize::MAX, 4, 4, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_no_loss() {
    for capacity in [0, 4, 64] {
        let ch = Channel::new(capacity);
        let prods: Vec<_> = (0..4u64)
            .map(|p| {
                let ch = ch.clone();
                tokio::spawn(async move {
                    for i in 0..10_000 {
                        ch.put(p * 10_000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        let cons: Vec<_> = (0..4)
            .map(|_| {
                let ch = ch.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = ch.take().await {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        for p in prods {
            p.await.unwrap();
        }
        ch.close();
        let mut all = Vec::new();
        for c in cons {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..40_000).collect::<Vec<u64>>(),
            "capacity {capacity}"
        );
    }
}

#[test]
fn dropped_pending_take_loses_nothing() {
    let ch = Channel::new(1);
    let mut take = ch.take();
    assert!(poll_once(&mut take).is_pending());
    ch.put_blocking(1).unwrap(); // wakes the pending take ...
    drop(take); // ... which is cancelled before it runs
    assert_eq!(ch.take_blocking(), Ok(1), "the value is still there");
}

#[test]
fn dropped_pending_put_inserts_nothing() {
    // Full buffered channel: a cancelled put never inserted its value.
    let ch = Channel::new(1);
    ch.put_blocking(1).unwrap();
    let mut put = ch.put(2);
    assert!(poll_once(&mut put).is_pending());
    drop(put);
    assert_eq!(ch.take_blocking(), Ok(1));
    assert!(!ch.isready());

    // Unbuffered: a cancelled offer is withdrawn.
    let ch = Channel::new(0);
    let mut put = ch.put(3);
    assert!(poll_once(&mut put).is_pending());
    assert!(ch.isready());
    drop(put);
    assert!(!ch.isready());
    assert!(ch.take().now_or_never().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_with_timeouts_loses_nothing() {
    // Consumers keep abandoning takes (timeouts) while producers put; every
    // value must still arrive exactly once.
    for capacity in [0, 8] {
        let ch = Channel::new(capacity);
        let prods: Vec<_> = (0..2u64)
            .map(|p| {
                let ch = ch.clone();
                tokio::spawn(async move {
                    for i in 0..2_000 {
                        ch.put(p * 2_000 + i).await.unwrap();
                        if i % 100 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                })
            })
            .collect();
        let cons: Vec<_> = (0..3)
            .map(|_| {
                let ch = ch.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        match tokio::time::timeout(Duration::from_micros(100), ch.take()).await {
                            Ok(Ok(v)) => got.push(v),
                            Ok(Err(_)) => break,
                            Err(_elapsed) => continue,
                        }
                    }
                    got
                })
            })
            .collect();
        for p in prods {
            p.await.unwrap();
        }
        ch.close();
        let mut all = Vec::new();
        for c in cons {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..4_000).collect::<Vec<u64>>(), "capacity {capacity}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_forms_from_spawn_blocking() {
    let ch = Channel::new(0);
    let blocking_taker = {
        let ch = ch.clone();
        tokio::task::spawn_blocking(move || ch.iter().sum::<i32>())
    };
    for i in 1..=10 {
        ch.put(i).await.unwrap();
    }
    ch.close();
    assert_eq!(blocking_taker.await.unwrap(), 55);

    let ch = Channel::new(2);
    let blocking_putter = {
        let ch = ch.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..10 {
                ch.put_blocking(i).unwrap();
            }
            ch.close();
        })
    };
    let got: Vec<i32> = ch.stream().collect().await;
    blocking_putter.await.unwrap();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn handles_are_shared_and_debug_prints() {
    let a = Channel::new(3);
    let b = a.clone();
    a.put_blocking(1).unwrap();
    assert_eq!(b.len(), 1);
    b.close();
    assert!(!a.is_open());
    let dbg = format!("{a:?}");
    assert!(
        dbg.contains("capacity: 3") && dbg.contains("open: false"),
        "{dbg}"
    );
}

#[test]
fn channel_as_dyn_abstract_channel() {
    use futures::executor::block_on;
    let ch: Arc<dyn AbstractChannel<u32>> = Arc::new(Channel::new(1));
    assert!(ch.is_open());
    assert!(!ch.isready(()));
    block_on(ch.put((), 5)).unwrap();
    assert!(ch.isready(()));
    assert_eq!(block_on(ch.wait(())), Ok(()));
    assert_eq!(block_on(ch.fetch(())), Ok(5));
    assert_eq!(block_on(ch.take(())), Ok(5));
    ch.close();
    assert_eq!(block_on(ch.put((), 6)).unwrap_err().value, 6);
    assert_eq!(block_on(ch.take(())), Err(ChannelError::Closed));

    let unbuffered: Box<dyn AbstractChannel<u32>> = Box::new(Channel::new(0));
    assert_eq!(
        block_on(unbuffered.fetch(())),
        Err(ChannelError::Unbuffered)
    );
}

#[test]
fn default_fetch_is_unsupported() {
    use cohort_channels::PutError;
    use futures::future::BoxFuture;

    /// A sink that accepts everything and never has anything to read.
    struct Sink;
    impl AbstractChannel<u8> for Sink {
        fn put(&self, _: (), _: u8) -> BoxFuture<'_, Result<(), PutError<u8>>> {
            Box::pin(async { Ok(()) })
        }
        fn take(&self, _: ()) -> BoxFuture<'_, Result<u8, ChannelError>> {
            Box::pin(async { Err(ChannelError::Closed) })
        }
        fn isready(&self, _: ()) -> bool {
            false
        }
        fn wait(&self, _: ()) -> BoxFuture<'_, Result<(), ChannelError>> {
            Box::pin(async { Err(ChannelError::Closed) })
        }
        fn close(&self) {}
        fn is_open(&self) -> bool {
            true
        }
    }
    let s: Box<dyn AbstractChannel<u8>> = Box::new(Sink);
    assert_eq!(
        futures::executor::block_on(s.fetch(())),
        Err(ChannelError::Unsupported)
    );
}

#[test]
fn put_front_is_taken_first_and_may_exceed_the_capacity() {
    let ch = Channel::new(2);
    ch.put_blocking(1).unwrap();
    ch.put_blocking(2).unwrap();
    let first = ch.take_blocking().unwrap();
    ch.put_blocking(3).unwrap();
    ch.put_front(first);
    assert_eq!(ch.len(), 3, "a value handed back may exceed the capacity");
    // Puts wait until the channel is below its capacity again.
    let mut put = ch.put(4);
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(ch.take_blocking(), Ok(1));
    assert!(poll_once(&mut put).is_pending(), "still at capacity");
    assert_eq!(ch.take_blocking(), Ok(2));
    assert!(matches!(poll_once(&mut put), Poll::Ready(Ok(()))));
    assert_eq!(ch.take_blocking(), Ok(3));
    assert_eq!(ch.take_blocking(), Ok(4));
}

#[test]
fn put_front_wakes_a_waiting_taker() {
    let ch = Channel::<u8>::new(1);
    let mut take = ch.take();
    assert!(poll_once(&mut take).is_pending());
    ch.put_front(9);
    assert_eq!(poll_once(&mut take), Poll::Ready(Ok(9)));
}

#[test]
fn put_front_on_a_closed_channel_is_drained_before_closed() {
    let ch = Channel::new(1);
    ch.put_blocking(1).unwrap();
    ch.close();
    let v = ch.take_blocking().unwrap();
    assert_eq!(ch.take_blocking(), Err(ChannelError::Closed));
    ch.put_front(v);
    assert!(ch.isready());
    assert_eq!(ch.take_blocking(), Ok(1));
    assert_eq!(ch.take_blocking(), Err(ChannelError::Closed));
}

#[test]
fn put_front_on_an_unbuffered_channel_comes_before_offers() {
    let ch = Channel::new(0);
    let mut put = ch.put(2);
    assert!(
        poll_once(&mut put).is_pending(),
        "offered, waiting for a taker"
    );
    ch.put_front(1);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch.take_blocking(), Ok(1));
    assert!(poll_once(&mut put).is_pending(), "the offer is still there");
    assert_eq!(ch.take_blocking(), Ok(2));
    assert!(matches!(poll_once(&mut put), Poll::Ready(Ok(()))));
    assert_eq!(
        ch.fetch_blocking(),
        Err(ChannelError::Unbuffered),
        "fetch still refuses an unbuffered channel"
    );
}

#[test]
fn put_front_through_the_trait_and_its_default() {
    /// A channel that implements only the required methods, so `put_front`
    /// is the default (a `put` at the back).
    struct Plain(Channel<u8>);
    impl AbstractChannel<u8> for Plain {
        fn put(
            &self,
            key: (),
            v: u8,
        ) -> futures::future::BoxFuture<'_, Result<(), cohort_channels::PutError<u8>>> {
            AbstractChannel::put(&self.0, key, v)
        }
        fn take(&self, key: ()) -> futures::future::BoxFuture<'_, Result<u8, ChannelError>> {
            AbstractChannel::take(&self.0, key)
        }
        fn isready(&self, key: ()) -> bool {
            AbstractChannel::isready(&self.0, key)
        }
        fn wait(&self, key: ()) -> futures::future::BoxFuture<'_, Result<(), ChannelError>> {
            AbstractChannel::wait(&self.0, key)
        }
        fn close(&self) {
            self.0.close()
        }
        fn is_open(&self) -> bool {
            self.0.is_open()
        }
    }
    use futures::executor::block_on;
    let ch: Box<dyn AbstractChannel<u8>> = Box::new(Channel::new(4));
    block_on(ch.put((), 1)).unwrap();
    // Channel's put_front acts when called, even if its future is dropped.
    drop(ch.put_front((), 0));
    assert_eq!(block_on(ch.take(())), Ok(0));

    let plain = Plain(Channel::new(4));
    block_on(plain.put((), 1)).unwrap();
    block_on(plain.put_front((), 0)).unwrap();
    assert_eq!(
        block_on(plain.take(())),
        Ok(1),
        "the default puts at the back"
    );
    assert_eq!(block_on(plain.take(())), Ok(0));
    plain.close();
    assert_eq!(
        block_on(plain.put_front((), 5)).unwrap_err().into_inner(),
        5
    );
}

// ----- reservations (the places a remote putter's credits stand for) -----

#[test]
fn reserved_places_count_as_taken_and_a_waiting_put_asks_for_them() {
    use cohort_channels::Reservations;
    use std::sync::Mutex;
    let ch = Channel::new(3);
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    ch.on_reservations(move |e| log.lock().unwrap().push(e));
    ch.put_blocking(1).unwrap();
    assert_eq!(ch.reserve(10), 1, "half of the two free places");
    assert_eq!(ch.reserve(10), 1, "the last one");
    assert_eq!(ch.reserve(1), 0, "none left");
    // A put now waits although only one value is in: the reservations are asked for.
    let mut put = ch.put(2);
    assert!(poll_once(&mut put).is_pending());
    assert_eq!(*events.lock().unwrap(), [Reservations::Wanted]);
    assert_eq!(ch.reserve(1), 0, "nothing is reserved while a put waits");
    // Filling one reserved place does not make room; giving one back does.
    ch.put_reserved(10);
    assert!(poll_once(&mut put).is_pending());
    ch.unreserve(1);
    assert!(matches!(poll_once(&mut put), Poll::Ready(Ok(()))));
    assert_eq!(ch.reserved(), 0);
    ch.close();
    assert_eq!(ch.iter().collect::<Vec<_>>(), [1, 10, 2]);
}

#[test]
fn a_take_that_frees_a_place_tells_who_got_too_few() {
    use cohort_channels::Reservations;
    use std::sync::Mutex;
    let ch = Channel::new(1);
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    ch.on_reservations(move |e| log.lock().unwrap().push(e));
    ch.put_blocking(1).unwrap();
    assert_eq!(ch.reserve(4), 0);
    assert!(events.lock().unwrap().is_empty());
    assert_eq!(ch.take_blocking(), Ok(1));
    assert_eq!(*events.lock().unwrap(), [Reservations::Freed]);
    // Once only: the flag is set again by the next reserve that gets too few.
    ch.put_blocking(2).unwrap();
    assert_eq!(ch.take_blocking(), Ok(2));
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[test]
fn a_closed_channel_waits_for_its_reserved_values_before_it_ends() {
    let ch = Channel::<u32>::new(2);
    assert_eq!(ch.reserve(2) + ch.reserve(2), 2);
    ch.close();
    assert!(ch.put_blocking(9).is_err(), "a plain put still fails");
    let mut take = ch.take();
    assert!(
        poll_once(&mut take).is_pending(),
        "two values are on their way"
    );
    ch.put_reserved(5);
    assert_eq!(poll_once(&mut take), Poll::Ready(Ok(5)));
    let mut take = ch.take();
    assert!(
        poll_once(&mut take).is_pending(),
        "one place still reserved"
    );
    ch.unreserve(1);
    assert_eq!(poll_once(&mut take), Poll::Ready(Err(ChannelError::Closed)));
    assert_eq!(ch.reserve(1), 0, "a closed channel reserves nothing");
}

#[test]
fn unbuffered_channels_reserve_nothing_and_unbounded_ones_anything() {
    assert_eq!(Channel::<u8>::new(0).reserve(5), 0);
    let u = Channel::<u8>::unbounded();
    assert_eq!(u.reserve(1_000_000), 1_000_000);
    u.put_blocking(1).unwrap();
    assert_eq!(u.len(), 1);
}
