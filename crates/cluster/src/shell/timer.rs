//! The one timer task of the shell: it calls the core's `handle_timeout` when the
//! reference-batch deadline the core asked for ([`Core::poll_timeout`]) comes.
//!
//! [`Core::poll_timeout`]: crate::core::Core::poll_timeout

use std::sync::OnceLock;
use std::time::Instant;

use tokio::sync::watch;

use super::node::node;

/// Arms the timer for `at` (the earliest deadline asked for wins).
pub(crate) fn arm(at: Instant) {
    static TIMER: OnceLock<watch::Sender<Option<Instant>>> = OnceLock::new();
    let tx = TIMER.get_or_init(|| {
        let (tx, mut rx) = watch::channel(None::<Instant>);
        super::runtime::handle().spawn(async move {
            loop {
                let next = *rx.borrow_and_update();
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {
                                node().handle_timeout();
                                // Sleep again only once re-armed (the timeout above may
                                // have re-armed already: then this returns at once).
                                if rx.changed().await.is_err() {
                                    break;
                                }
                            }
                            r = rx.changed() => if r.is_err() { break },
                        }
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        tx
    });
    tx.send_if_modified(|cur| {
        if cur.is_none_or(|c| at < c || c <= Instant::now()) {
            *cur = Some(at);
            true
        } else {
            false
        }
    });
}
