//! Panic locations for remote errors: a panic hook records where the last panic on
//! each thread happened, so a caught panic can report it as context.

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

/// Installs the hook once; it keeps the previous hook's behaviour (printing) too.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location() {
                let s = format!("panicked at {}:{}:{}", loc.file(), loc.line(), loc.column());
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
