//! Binding workers to CPUs (`LocalManager::bind_cores`): which CPUs this process may
//! run on, which one the next bound worker gets, and the binding itself, made in the
//! child between `fork` and `exec` so that every thread the worker starts inherits it.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::process::Command;

/// The CPUs this process may run on (its affinity mask), in ascending order.
///
/// # Errors
/// The OS error of `sched_getaffinity`; [`io::ErrorKind::Unsupported`] off Linux.
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// let cpus = cohort_transport::cpus::allowed().unwrap();
/// assert!(!cpus.is_empty());
/// # }
/// ```
pub fn allowed() -> io::Result<Vec<usize>> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the kernel writes at
        // most its size.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let max = 8 * std::mem::size_of_val(&set);
        // SAFETY: `cpu < max`, the set's size in bits.
        Ok((0..max)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "binding workers to CPUs is supported on Linux only",
        ))
    }
}

/// Bound workers started by this process so far: the next one gets the CPU after
/// the last one's, round the allowed set (so separate launches do not pile their
/// workers onto the first CPUs).
static BOUND: AtomicUsize = AtomicUsize::new(0);

/// The CPUs for the next `count` bound workers: the allowed CPUs in turn (the mask
/// read once for all of them).
///
/// # Errors
/// As [`allowed`], and an error if the mask is empty.
pub(crate) fn take(count: usize) -> io::Result<Vec<usize>> {
    let cpus = allowed()?;
    if cpus.is_empty() {
        return Err(io::Error::other("this process may run on no CPU"));
    }
    let first = BOUND.fetch_add(count, Ordering::Relaxed);
    Ok((first..first + count)
        .map(|k| cpus[k % cpus.len()])
        .collect())
}

/// Makes the process `cmd` starts run on `cpu` only, from before its first
/// instruction (its threads inherit the binding).
pub(crate) fn bind(cmd: &mut Command, cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the closure runs in the child between `fork` and `exec`; it only
        // fills a set on the stack and makes one system call (async-signal-safe),
        // and builds its error from `errno` without allocating.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (cmd, cpu);
    }
}
