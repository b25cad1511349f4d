//! The progress bar of [`PmapOptions::progress`](crate::PmapOptions): indicatif's with
//! the `progress` feature; without it a stand-in that shows nothing (and that `pmap`
//! never makes, since the options that ask for a bar do not exist then).
//!
//! The bar shows the elapsed time, the items done of the items pulled from the input
//! (the total once it is known), the rate, the time left, and how many items failed
//! and how many were retried (the message).

#[cfg(feature = "progress")]
mod bar {
    use std::sync::atomic::{AtomicU64, Ordering};

    use indicatif::{ProgressBar, ProgressStyle};

    /// The template of a map's bar: elapsed time, bar, done/total, rate, time left, and
    /// the failed/retried counts (the message).
    pub(crate) const TEMPLATE: &str =
        "[{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta}) {msg}";

    /// The message: how many items failed (an attempt that raised) and how many
    /// attempts were retries.
    pub(crate) fn counts_message(failed: u64, retried: u64) -> String {
        format!("{failed} failed, {retried} retried")
    }

    /// A map's bar: indicatif's, styled with [`TEMPLATE`], counting failures and
    /// retries into its message.
    pub(crate) struct MapBar {
        bar: ProgressBar,
        /// Made by the map (cleared at the end), or the caller's (left as it ends).
        own: bool,
        failed: AtomicU64,
        retried: AtomicU64,
    }

    impl MapBar {
        /// A bar on stderr; `len` when the input's length is known.
        pub(crate) fn new(len: Option<u64>) -> Self {
            Self::with(ProgressBar::new(len.unwrap_or(0)), len, true)
        }

        /// The caller's bar, restyled and given the map's length.
        pub(crate) fn from_caller(bar: ProgressBar, len: Option<u64>) -> Self {
            Self::with(bar, len, false)
        }

        fn with(bar: ProgressBar, len: Option<u64>, own: bool) -> Self {
            let style = ProgressStyle::with_template(TEMPLATE).expect("the template parses");
            bar.set_style(style);
            bar.set_position(0);
            bar.set_length(len.unwrap_or(0));
            bar.set_message(counts_message(0, 0));
            MapBar {
                bar,
                own,
                failed: AtomicU64::new(0),
                retried: AtomicU64::new(0),
            }
        }

        /// `k` more items were pulled from an input of unknown length.
        pub(crate) fn pulled(&self, k: u64) {
            self.bar.inc_length(k);
        }

        /// `k` more items have their final value.
        pub(crate) fn inc(&self, k: u64) {
            self.bar.inc(k);
        }

        /// An attempt failed; `retried` when it is tried again.
        pub(crate) fn failure(&self, retried: bool) {
            let f = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            let r = self.retried.load(Ordering::Relaxed) + u64::from(retried);
            if retried {
                self.retried.fetch_add(1, Ordering::Relaxed);
            }
            self.bar.set_message(counts_message(f, r));
        }

        /// The map ended (`ok`: every item has its value).
        pub(crate) fn finish(&self, ok: bool) {
            if self.own {
                self.bar.finish_and_clear();
            } else if ok {
                self.bar.finish();
            } else {
                self.bar.abandon();
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use std::sync::Arc;

        use indicatif::{ProgressBar, ProgressDrawTarget, TermLike};
        use parking_lot::Mutex;

        use super::*;

        /// A terminal that keeps what is written to it.
        #[derive(Debug, Clone, Default)]
        struct Capture(Arc<Mutex<String>>);

        impl TermLike for Capture {
            fn width(&self) -> u16 {
                120
            }
            fn move_cursor_up(&self, _n: usize) -> std::io::Result<()> {
                Ok(())
            }
            fn move_cursor_down(&self, _n: usize) -> std::io::Result<()> {
                Ok(())
            }
            fn move_cursor_right(&self, _n: usize) -> std::io::Result<()> {
                Ok(())
            }
            fn move_cursor_left(&self, _n: usize) -> std::io::Result<()> {
                Ok(())
            }
            fn write_line(&self, s: &str) -> std::io::Result<()> {
                let mut t = self.0.lock();
                t.push_str(s);
                t.push('\n');
                Ok(())
            }
            fn write_str(&self, s: &str) -> std::io::Result<()> {
                self.0.lock().push_str(s);
                Ok(())
            }
            fn clear_line(&self) -> std::io::Result<()> {
                Ok(())
            }
            fn flush(&self) -> std::io::Result<()> {
                Ok(())
            }
        }

        #[test]
        fn the_bar_shows_time_rate_eta_and_counts() {
            let term = Capture::default();
            let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
            let bar = MapBar::from_caller(ProgressBar::with_draw_target(None, target), Some(300));
            bar.inc(190);
            bar.failure(true);
            bar.failure(false);
            bar.inc(1);
            bar.finish(true);
            let shown = term.0.lock().clone();
            let last = shown.lines().last().expect("a frame was drawn");
            // "[00:00:00] ███… 300/300 (12345.6789/s, eta 0s) 2 failed, 1 retried"
            assert!(last.starts_with("[00:00:0"), "{last}");
            assert!(last.contains("300/300"), "{last}");
            assert!(last.contains("/s, eta "), "{last}");
            assert!(last.ends_with("2 failed, 1 retried"), "{last}");
            assert_eq!(bar.bar.message(), "2 failed, 1 retried");
        }

        #[test]
        fn an_unknown_length_grows_as_items_are_pulled() {
            let bar = MapBar::from_caller(ProgressBar::hidden(), None);
            bar.pulled(4);
            bar.pulled(3);
            assert_eq!(bar.bar.length(), Some(7));
            assert_eq!(bar.bar.message(), counts_message(0, 0));
        }
    }
}

#[cfg(feature = "progress")]
pub(crate) use bar::MapBar;

/// Without the `progress` feature: a bar that shows nothing.
#[cfg(not(feature = "progress"))]
pub(crate) struct MapBar;

#[cfg(not(feature = "progress"))]
impl MapBar {
    pub(crate) fn pulled(&self, _k: u64) {}

    pub(crate) fn inc(&self, _k: u64) {}

    pub(crate) fn failure(&self, _retried: bool) {}

    pub(crate) fn finish(&self, _ok: bool) {}
}
