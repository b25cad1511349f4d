//! Panic locations for remote errors: a panic hook records where the last panic on
//! each thread happened — and its stack backtrace when backtraces are on — so a
//! caught panic can report it as context.
//!
//! Backtraces are on where Rust's own are (`RUST_LIB_BACKTRACE`, else
//! `RUST_BACKTRACE`, set and not `0`) or where [`BACKTRACE_ENV`] is `1`.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while a panic is expected and caught (a probe): the hook stays silent.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panics not printed (they are caught by the caller).
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(QUIET.with(|q| q.replace(true)));
    f()
}

/// The environment variable that turns on stack backtraces in remote panics
/// (`COHORT_BACKTRACE=1`, on the workers: `AddProcs::env(BACKTRACE_ENV, "1")`), also
/// where `RUST_BACKTRACE` is not set. `0` turns them off even where it is.
///
/// ```
/// assert_eq!(cohort_cluster::BACKTRACE_ENV, "COHORT_BACKTRACE");
/// ```
pub const BACKTRACE_ENV: &str = "COHORT_BACKTRACE";

/// This panic's stack backtrace, if backtraces are on here.
fn backtrace() -> Option<String> {
    use std::backtrace::{Backtrace, BacktraceStatus};
    let bt = match std::env::var(BACKTRACE_ENV).as_deref() {
        Ok("0") => return None,
        Ok(v) if !v.is_empty() => Backtrace::force_capture(),
        _ => Backtrace::capture(),
    };
    (bt.status() == BacktraceStatus::Captured).then(|| bt.to_string())
}

/// Installs the hook once; it keeps the previous hook's behaviour (printing) too.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                let mut s = format!("panicked at {}:{}:{}", loc.file(), loc.line(), loc.column());
                if let Some(bt) = backtrace() {
                    s.push_str("\nstack backtrace:\n");
                    s.push_str(bt.trim_end());
                }
                LAST.with(|l| *l.borrow_mut() = Some(s));
            }
            if !QUIET.with(|q| q.get()) {
                prev(info);
            }
        }));
    });
}

pub(crate) fn take_last_location() -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
}
