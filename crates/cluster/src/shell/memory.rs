//! A worker's memory after a burst: what glibc's allocator keeps, and giving it back.
//!
//! A million `remotecall`s made and dropped leave every table of the core and the
//! store empty again (they shrink when they fall far below their capacity), yet a
//! worker's resident memory used to stay several times its baseline, growing with the
//! burst. The memory was glibc's, not cohort's: every runtime thread that allocates
//! while another holds an arena's lock gets an arena of its own (up to 8 per core),
//! and when a burst is freed the free space at the top of a thread's arena is kept —
//! `malloc_trim` returns free pages of every arena but the top of the per-thread
//! ones, and the automatic trim on `free` waits until that top exceeds a threshold
//! that glibc raises (up to 64 MiB) after large blocks were freed. So a worker
//!
//! - caps glibc at **one arena** ([`tune_allocator`], in worker mode, unless
//!   `MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable says otherwise): every
//!   free page is then in the main arena, whose top glibc does trim; the per-thread
//!   caches (tcache) still spare the common small allocations its lock; and
//! - returns free pages once it goes **idle** after activity ([`start_idle_trim`]):
//!   `malloc_trim(0)` one tick after the reference table last changed.
//!
//! A worker whose own code allocates heavily from many threads at once may prefer
//! more arenas: `MALLOC_ARENA_MAX=8` in its environment
//! ([`AddProcs::env`](crate::AddProcs::env)) keeps glibc's choice.

use std::sync::Weak;
use std::time::Duration;

use super::node::Node;

/// How often the idle trimmer looks at the reference table.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Whether the environment already tells glibc how many arenas to use.
fn arenas_chosen_by_environment() -> bool {
    std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"))
}

/// Caps glibc's allocator at one arena (see the module docs), unless the environment
/// chose a number. Call before the worker's threads start allocating: arenas made
/// before stay.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if !arenas_chosen_by_environment() {
        // SAFETY: mallopt only changes a parameter of glibc's allocator; M_ARENA_MAX
        // limits the arenas made from now on and is safe to set at any time.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas_chosen_by_environment;
}

/// Returns the allocator's free pages to the OS (glibc; nothing elsewhere).
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts a task that trims the heap ([`trim`]) once `node` goes idle after activity:
/// one tick after its reference table last changed (a value stored or freed, a
/// handle made, reference messages sent). It ends with the node.
pub(crate) fn start_idle_trim(node: Weak<Node>) {
    super::runtime::handle().spawn(async move {
        let mut last = None;
        let mut dirty = false;
        loop {
            tokio::time::sleep(IDLE_TICK).await;
            let Some(n) = node.upgrade() else { return };
            let s = n.store().stats();
            drop(n);
            let now = (s.freed, s.handles, s.ops_sent, s.owned_values);
            if last != Some(now) {
                // Busy (or the first look): wait for a quiet tick.
                dirty = last.is_some();
                last = Some(now);
            } else if dirty {
                dirty = false;
                trim();
            }
        }
    });
}

/// Buffers at least this large are worth transparent huge pages.
pub(crate) const HUGE_MIN: usize = 4 << 20;

/// The environment variable that, set to `0`, keeps large buffers on ordinary pages.
pub(crate) const HUGE_PAGES_ENV: &str = "COHORT_HUGE_PAGES";

/// Whether large fresh buffers ask for huge pages (read once).
fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var(HUGE_PAGES_ENV).map_or(true, |v| v.trim() != "0"))
}

/// Asks the kernel to back the 2 MiB-aligned interior of a large, fresh,
/// not-yet-touched buffer with transparent huge pages. Filling fresh memory costs a
/// page fault and a zeroing per 4 KiB page; on a virtual machine, for a 256 MiB
/// array, that is several times the copy itself (a fresh 256 MiB copy took 140 ms
/// there, 47 ms with huge pages, against 21 ms into mapped memory). With huge pages
/// it is one fault per 2 MiB. Only advice: where the system's setting is `never`, or
/// the call fails, the buffer is used as it is; `COHORT_HUGE_PAGES=0` turns it off.
pub(crate) fn advise_huge(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < HUGE_MIN || !huge_pages_wanted() {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: advice on whole pages inside an allocation this process owns; it
        // changes no contents (MADV_HUGEPAGE only marks the range).
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The `VmFlags` line of the mapping that holds `addr`, from `/proc/self/smaps`.
    fn flags_at(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(f) = line.strip_prefix("VmFlags:") {
                    return f.to_string();
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn a_large_fresh_vector_is_marked_for_huge_pages_and_a_small_one_is_not() {
        let large: Vec<u8> = crate::codec::large_vec(16 << 20);
        let middle = large.as_ptr() as usize + (8 << 20);
        assert!(
            flags_at(middle).split_whitespace().any(|f| f == "hg"),
            "{}",
            flags_at(middle)
        );
        let small: Vec<u8> = crate::codec::large_vec(1 << 20);
        let at = small.as_ptr() as usize + (512 << 10);
        assert!(!flags_at(at).split_whitespace().any(|f| f == "hg"));
    }
}
