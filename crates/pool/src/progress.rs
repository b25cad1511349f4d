//! The progress bar of [`PmapOptions::progress`](crate::PmapOptions): indicatif's with
//! the `progress` feature; without it a stand-in that shows nothing (and that `pmap`
//! never makes, since the option that asks for a bar does not exist then).

#[cfg(feature = "progress")]
pub(crate) use indicatif::ProgressBar;

/// Without the `progress` feature: a bar that shows nothing.
#[cfg(not(feature = "progress"))]
pub(crate) struct ProgressBar;

#[cfg(not(feature = "progress"))]
impl ProgressBar {
    pub(crate) fn new(_len: u64) -> Self {
        ProgressBar
    }

    pub(crate) fn inc(&self, _delta: u64) {}

    pub(crate) fn finish_and_clear(&self) {}
}
