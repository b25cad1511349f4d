//! The timer task of a node: it calls the core's `handle_timeout` when the
//! reference-batch deadline the core asked for ([`Core::poll_timeout`]) comes.
//!
//! [`Core::poll_timeout`]: crate::core::Core::poll_timeout

use std::time::Instant;

use tokio::sync::watch;

use super::node::Node;

/// Arms `node`'s timer for `at` (the earliest deadline asked for wins).
pub(crate) fn arm(node: &Node, at: Instant) {
    let tx = node.timer_task.get_or_init(|| {
        let (tx, mut rx) = watch::channel(None::<Instant>);
        // The task holds the node weakly: it ends when the node goes (its sender
        // goes with it, so `changed` fails).
        let weak = node.arc();
        let weak = std::sync::Arc::downgrade(&weak);
        super::runtime::handle().spawn(async move {
            loop {
                let next = *rx.borrow_and_update();
                match next {
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {
                                match weak.upgrade() {
                                    Some(n) => n.handle_timeout(),
                                    None => break,
                                }
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
