//! Helpers shared by the integration tests that include this module (`mod common;`).

/// Whether OS process `os` is gone (or a zombie nobody reaped: it has exited).
pub(crate) fn exited(os: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{os}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}
