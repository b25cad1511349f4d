//! The timer task of a node: it calls the core's `handle_timeout` when the next
//! deadline the core asks for ([`Core::poll_timeout`]: reference batches, the next
//! liveness check) comes.
//!
//! The task takes its deadline from the core itself each time round, and publishes
//! it (in `Node::timer`) under the same lock as it reads it; a thread that gives the
//! core an earlier deadline wakes the task (`Node::arm_timer`). So the chain of
//! deadlines never depends on who armed what last: after each timeout the task sleeps
//! to whatever the core asks for next. (An earlier design re-armed from the steps
//! that changed the core and could be left with no timer at all when a step ran just
//! as the timer fired — the heartbeats then stopped.)
//!
//! [`Core::poll_timeout`]: crate::core::Core::poll_timeout

use std::sync::Arc;

use tokio::sync::Notify;

use super::node::Node;

/// Wakes `node`'s timer task (starting it on first use) to look at the core's
/// deadline again.
pub(crate) fn wake(node: &Node) {
    node.timer_wake
        .get_or_init(|| {
            let wake = Arc::new(Notify::new());
            // The task holds the node weakly: it ends when the node goes.
            let weak = Arc::downgrade(&node.arc());
            let w = wake.clone();
            super::runtime::handle().spawn(async move {
                loop {
                    let next = {
                        let Some(n) = weak.upgrade() else { break };
                        // Read and published under one lock, so that a step giving the
                        // core an earlier deadline after the read sees this one and
                        // wakes the task (see `Node::arm_timer`).
                        let mut armed = n.timer.lock();
                        let next = n.peek(|c| c.poll_timeout());
                        *armed = next;
                        next
                    };
                    match next {
                        Some(at) => {
                            tokio::select! {
                                _ = tokio::time::sleep_until(at.into()) => {
                                    match weak.upgrade() {
                                        Some(n) => n.handle_timeout(),
                                        None => break,
                                    }
                                }
                                _ = w.notified() => {}
                            }
                        }
                        None => w.notified().await,
                    }
                }
            });
            wake
        })
        .notify_one();
}
