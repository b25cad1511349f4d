//! A future polled by whoever wakes it, not by a runtime thread.
//!
//! A remote `TAKE` that finds its channel empty waits for a value. Run as a tokio
//! task, the put that brings the value wakes a runtime thread, which polls the take
//! and writes its answer: one more thread hand-off on the path of every channel
//! round trip. An [`InlineTask`] is polled where it arrives and then, each time it
//! is woken, on the waking thread itself — the putter's, which has just released the
//! channel's lock (`cohort-channels` wakes its waiters after unlocking) — so the
//! answer leaves from there.
//!
//! Only for futures that do short work when polled and may run on any thread: the
//! channel operations of `channel_ops`. A waker must never be woken while its waker
//! holds a lock the future takes (the core's, a channel's, the running takes'); the
//! callers drop such guards before they wake.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

type Boxed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A future and whether it was woken since it was last polled.
pub(crate) struct InlineTask {
    future: Mutex<Option<Boxed>>,
    woken: AtomicBool,
}

impl InlineTask {
    /// Polls `future` now; if it must wait, it is polled again by whoever wakes it,
    /// until it is done. Dropped (unfinished) when every waker of it is gone.
    pub(crate) fn start(future: Boxed) {
        let task = Arc::new(InlineTask {
            future: Mutex::new(Some(future)),
            woken: AtomicBool::new(true),
        });
        task.run();
    }

    /// Polls while woken. A wake during a poll elsewhere finds the future locked
    /// and leaves its mark, which that poller sees before it lets go.
    fn run(self: &Arc<Self>) {
        loop {
            let Some(mut slot) = self.future.try_lock() else {
                // Being polled: the poller sees `woken` and polls again.
                return;
            };
            while self.woken.swap(false, Ordering::AcqRel) {
                let Some(future) = slot.as_mut() else {
                    return;
                };
                let waker = Waker::from(self.clone());
                if let Poll::Ready(()) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
                    *slot = None;
                    return;
                }
            }
            drop(slot);
            // A wake after the last look, whose lock attempt failed: look again.
            if !self.woken.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

impl Wake for InlineTask {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_task_runs_on_the_thread_that_wakes_it_until_it_is_done() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let done = Arc::new(AtomicUsize::new(0));
        let seen = done.clone();
        let main = std::thread::current().id();
        let ran_on = Arc::new(Mutex::new(None));
        let where_ = ran_on.clone();
        InlineTask::start(Box::pin(async move {
            let v = rx.await.unwrap();
            *where_.lock() = Some(std::thread::current().id());
            seen.store(v as usize, Ordering::SeqCst);
        }));
        assert_eq!(done.load(Ordering::SeqCst), 0, "waiting for the value");
        let t = std::thread::spawn(move || {
            tx.send(7).unwrap();
            std::thread::current().id()
        });
        let waker_thread = t.join().unwrap();
        // Done by the time the send returned, on the sender's thread.
        assert_eq!(done.load(Ordering::SeqCst), 7);
        assert_eq!(*ran_on.lock(), Some(waker_thread));
        assert_ne!(waker_thread, main);
    }

    #[test]
    fn wakes_from_many_threads_at_once_poll_it_to_the_end_exactly_once() {
        use std::sync::atomic::AtomicU32;
        // A future that needs 1,000 wakes, woken from 4 threads at once.
        struct Counter {
            left: Arc<AtomicU32>,
            wakers: Arc<Mutex<Vec<Waker>>>,
            finished: Arc<AtomicUsize>,
        }
        impl Future for Counter {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                if self.left.load(Ordering::SeqCst) == 0 {
                    self.finished.fetch_add(1, Ordering::SeqCst);
                    return Poll::Ready(());
                }
                self.wakers.lock().push(cx.waker().clone());
                Poll::Pending
            }
        }
        let left = Arc::new(AtomicU32::new(1000));
        let wakers = Arc::new(Mutex::new(Vec::new()));
        let finished = Arc::new(AtomicUsize::new(0));
        InlineTask::start(Box::pin(Counter {
            left: left.clone(),
            wakers: wakers.clone(),
            finished: finished.clone(),
        }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (left, wakers) = (left.clone(), wakers.clone());
                std::thread::spawn(move || loop {
                    let n = left.load(Ordering::SeqCst);
                    if n == 0 {
                        break;
                    }
                    if left
                        .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        let ws: Vec<Waker> = std::mem::take(&mut *wakers.lock());
                        ws.into_iter().for_each(Waker::wake);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // The last decrement's wake (or a later poll) finished it.
        let ws: Vec<Waker> = std::mem::take(&mut *wakers.lock());
        ws.into_iter().for_each(Waker::wake);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
