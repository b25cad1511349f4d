//! The build fingerprint: identifies the executable a process runs, so code offsets
//! are only ever resolved between identical executables.
//!
//! It hashes the executable's identity as the file system reports it — device, inode,
//! size and modification time — rather than its contents: hashing a 100 MB debug
//! binary would cost milliseconds at every worker start, and a rebuilt executable gets
//! a new modification time (cargo writes a new file). Copies of one binary on several
//! machines therefore count as different executables: closures are refused there with
//! a clear error, and registered functions, which travel by name, still work.

use std::sync::OnceLock;

use xxhash_rust::xxh3::xxh3_128;

/// This process's build fingerprint (16 bytes).
///
/// ```
/// let f = cohort_cluster::fingerprint::build_fingerprint();
/// assert_eq!(f.len(), 16);
/// assert_eq!(f, cohort_cluster::fingerprint::build_fingerprint());
/// ```
pub fn build_fingerprint() -> &'static [u8] {
    static FP: OnceLock<Vec<u8>> = OnceLock::new();
    FP.get_or_init(|| {
        let id = identity().unwrap_or_else(|| format!("pid:{}", std::process::id()));
        xxh3_128(id.as_bytes()).to_le_bytes().to_vec()
    })
}

fn identity() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::canonicalize("/proc/self/exe")
        .ok()
        .or_else(|| std::env::current_exe().ok())?;
    let m = std::fs::metadata(&exe).ok()?;
    Some(format!(
        "{}|{}|{}|{}|{}.{}",
        exe.display(),
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}
