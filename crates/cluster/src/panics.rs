//! Panic locations for remote errors: a panic hook records where the last panic on
//! each thread happened, so a caught panic can report it as context.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
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
            prev(info);
        }));
    });
}

pub(crate) fn take_last_location() -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
}
