//! Segments: the OS memory behind a `SharedArray`, its mapping in this process, and
//! the per-process table that lets a handle arriving from another process find the
//! mapping that is already here.
//!
//! ## Life cycle and release (also when processes die)
//!
//! 1. The creator makes a file in the shared-memory file system (`/dev/shm` on Linux,
//!    what `shm_open` uses) named `cohort-shm.<os pid>.<seq>.<nanos>`, with
//!    `O_CREAT | O_EXCL` and mode 0600, and reserves its blocks with
//!    `posix_fallocate`, so a segment over the limit is a clear error now rather than
//!    a `SIGBUS` on first touch. It maps it.
//! 2. Every other participant opens the file by name and maps it (a built-in call,
//!    [`attach`]); each keeps its mapping in its table on behalf of the creator.
//! 3. As soon as all have mapped it, **the creator unlinks the name**. Linux keeps the
//!    memory while any mapping exists; nothing is left in `/dev/shm` from then on, so
//!    a SIGKILL of the creator, a worker or all of them leaks no file: the kernel
//!    frees the memory when the last mapping process exits.
//! 4. When the creator's last handle goes, it tells the participants ([`release`]);
//!    each drops its table entry and unmaps when its own last handle goes.
//!
//! The only window where a kill leaves a file is between 1 and 3 (one round trip).
//! Covering it: every creation first sweeps `cohort-shm.<pid>.*` files whose creating
//! OS process no longer exists.
//!
//! File-backed arrays follow the same steps, except that the file is the user's and
//! is never unlinked.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use cohort_cluster::registry::{RemoteFnEntry, REMOTE_FUNCTIONS};
use cohort_cluster::{Cluster, Pid};
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{io, SharedError};

/// Names of anonymous segments start with this.
pub(crate) const PREFIX: &str = "cohort-shm.";

/// A segment's cluster-wide identity: the creating process and a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct SegId {
    pub creator: Pid,
    pub os_pid: u32,
    pub seq: u64,
}

/// What a participant needs to map a segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Desc {
    pub id: SegId,
    pub path: String,
    pub offset: u64,
    pub len: usize,
}

/// One mapping of a segment in this process.
pub(crate) struct Segment {
    pub id: SegId,
    map: Option<MmapRaw>,
    /// The participants the creator must release, and their cluster (set on the
    /// creator only).
    release_to: Option<(Cluster, Vec<Pid>)>,
    /// The per-process borrow flag: > 0 shared views, -1 one mutable view, and
    /// `-1 - n` for `n` > 0 live atomic views ([`crate::atomic`]).
    pub borrow: AtomicIsize,
}

// `Segment` is `Send + Sync` without any `unsafe impl`: every field is (memmap2's
// `MmapRaw` is), and the compiler proves it; `tests::segment_is_send_and_sync`
// keeps it so.

impl Segment {
    /// The first byte (dangling but aligned for an empty array).
    pub(crate) fn ptr(&self) -> *mut u8 {
        match &self.map {
            Some(m) => m.as_mut_ptr(),
            None => std::ptr::NonNull::<u64>::dangling().as_ptr().cast(),
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Unmapping happens when `map` drops, after this.
        {
            let mut t = table().lock();
            if let Some(e) = t.get(&self.id) {
                if e.weak.strong_count() == 0 && e.strong.is_none() {
                    t.remove(&self.id);
                }
            }
        }
        if let Some((cluster, pids)) = &self.release_to {
            for &p in pids {
                let _ = cluster.remote_do(release, p, (self.id,));
            }
        }
    }
}

/// A table entry: the creator keeps only a weak link; a participant also keeps the
/// mapping alive on behalf of the creator until it is released.
struct Entry {
    weak: Weak<Segment>,
    strong: Option<Arc<Segment>>,
}

fn table() -> &'static Mutex<HashMap<SegId, Entry>> {
    static T: OnceLock<Mutex<HashMap<SegId, Entry>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// The mapping of `id` in this process, if it has one.
pub(crate) fn lookup(id: &SegId) -> Option<Arc<Segment>> {
    table().lock().get(id).and_then(|e| e.weak.upgrade())
}

/// How many segments this process maps now.
pub(crate) fn mapped_count() -> usize {
    table()
        .lock()
        .values()
        .filter(|e| e.weak.strong_count() > 0)
        .count()
}

/// The directory anonymous segments live in.
pub(crate) fn shm_dir() -> PathBuf {
    if let Ok(d) = std::env::var("COHORT_SHM_DIR") {
        return PathBuf::from(d);
    }
    let dev = Path::new("/dev/shm");
    if dev.is_dir() {
        dev.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: `c` is a valid NUL-terminated path; `st` is written by statvfs.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            st.f_bavail as u64 * st.f_frsize as u64
        } else {
            0
        }
    }
}

fn process_alive(os_pid: u32) -> bool {
    Path::new(&format!("/proc/{os_pid}")).exists()
}

/// Removes anonymous segments left by processes killed while creating one.
/// Returns how many were removed.
pub(crate) fn sweep_stale(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some(rest) = name.to_str().and_then(|s| s.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !process_alive(pid) && std::fs::remove_file(ent.path()).is_ok() {
            n += 1;
        }
    }
    n
}

fn next_id(creator: Pid) -> SegId {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SegId {
        creator,
        os_pid: std::process::id(),
        seq: SEQ.fetch_add(1, Ordering::Relaxed),
    }
}

fn reserve(file: &File, offset: u64, len: usize) -> std::io::Result<()> {
    // SAFETY: plain system call on an open descriptor.
    let rc = unsafe {
        libc::posix_fallocate(file.as_raw_fd(), offset as libc::off_t, len as libc::off_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

fn map(file: &File, offset: u64, len: usize) -> std::io::Result<Option<MmapRaw>> {
    if len == 0 {
        return Ok(None);
    }
    MmapOptions::new()
        .offset(offset)
        .len(len)
        .map_raw(file)
        .map(Some)
}

/// A segment being made: mapped here, its name still in the file system.
pub(crate) struct Created {
    pub seg: Arc<Segment>,
    pub desc: Desc,
    /// `Some` for an anonymous segment: the name to unlink once all have mapped it.
    pub unlink: Option<PathBuf>,
}

impl Created {
    /// Removes the name (anonymous segments); the memory stays while mapped.
    pub(crate) fn unlink(&mut self) {
        if let Some(p) = self.unlink.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        self.unlink();
    }
}

/// How a file-backed array opens its file (Julia's `mode`).
///
/// ```
/// use cohort_shared::FileMode;
/// assert_ne!(FileMode::ReadWrite, FileMode::Create);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// `"r+"`: the file must exist and be large enough; its contents are the array's.
    ReadWrite,
    /// `"w+"`: create or truncate; the array starts zeroed.
    Create,
    /// `"a+"`: open or create, growing the file if it is too small; existing contents
    /// are kept.
    OpenOrCreate,
}

/// Makes and maps a segment here, for `pids` of `cluster`. `file` is `None` for
/// anonymous shared memory.
pub(crate) fn create(
    cluster: &Cluster,
    len: usize,
    pids: Vec<Pid>,
    file: Option<(&Path, FileMode, u64)>,
) -> Result<Created, SharedError> {
    let me = cluster.myid();
    let id = next_id(me);
    let (path, file_handle, offset, unlink) = match file {
        None => {
            let dir = shm_dir();
            sweep_stale(&dir);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = dir.join(format!("{PREFIX}{}.{}.{nanos}", id.os_pid, id.seq));
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(format!("creating {}", path.display())))?;
            // From here on, `guard` unlinks on every early return.
            let guard = Unlinker(Some(path.clone()));
            if len > 0 {
                reserve(&f, 0, len).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EFBIG) | Some(libc::ENOMEM) => {
                        SharedError::TooLarge {
                            bytes: len,
                            available: free_bytes(&dir),
                            dir: dir.clone(),
                        }
                    }
                    _ => SharedError::Io {
                        context: format!("reserving {len} bytes in {}", path.display()),
                        source: e,
                    },
                })?;
            }
            let p = guard.defuse();
            (p.clone(), f, 0, Some(p))
        }
        Some((path, mode, offset)) => {
            let needed = offset + len as u64;
            let mut o = OpenOptions::new();
            o.read(true).write(true);
            match mode {
                FileMode::ReadWrite => {}
                FileMode::Create => {
                    o.create(true).truncate(true);
                }
                FileMode::OpenOrCreate => {
                    o.create(true);
                }
            }
            let f = o
                .open(path)
                .map_err(io(format!("opening {}", path.display())))?;
            let cur = f
                .metadata()
                .map_err(io(format!("reading {}", path.display())))?
                .len();
            if cur < needed {
                if mode == FileMode::ReadWrite {
                    return Err(SharedError::FileTooSmall {
                        path: path.to_path_buf(),
                        len: cur,
                        offset,
                        needed,
                    });
                }
                f.set_len(needed)
                    .map_err(io(format!("growing {}", path.display())))?;
            }
            if len > 0 {
                if let Err(e) = reserve(&f, offset, len) {
                    // Some file systems cannot fallocate; their blocks come on write.
                    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EFBIG)) {
                        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                        return Err(SharedError::TooLarge {
                            bytes: len,
                            available: free_bytes(&dir),
                            dir,
                        });
                    }
                }
            }
            let abs =
                std::fs::canonicalize(path).map_err(io(format!("resolving {}", path.display())))?;
            (abs, f, offset, None)
        }
    };
    let map = map(&file_handle, offset, len).map_err(io(format!("mapping {}", path.display())))?;
    let seg = Arc::new(Segment {
        id,
        map,
        release_to: Some((
            cluster.clone(),
            pids.iter().copied().filter(|p| *p != me).collect(),
        )),
        borrow: AtomicIsize::new(0),
    });
    table().lock().insert(
        id,
        Entry {
            weak: Arc::downgrade(&seg),
            strong: None,
        },
    );
    Ok(Created {
        seg,
        desc: Desc {
            id,
            path: path.to_string_lossy().into_owned(),
            offset,
            len,
        },
        unlink,
    })
}

struct Unlinker(Option<PathBuf>);
impl Unlinker {
    fn defuse(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}
impl Drop for Unlinker {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The built-in a participant runs to map a segment (`cohort_shared::attach`).
/// Returns what failed instead of failing the call, so the creator can name it.
pub(crate) fn attach(desc: Desc) -> Result<(), AttachFailure> {
    let mut t = table().lock();
    if t.get(&desc.id).is_some_and(|e| e.weak.strong_count() > 0) {
        return Ok(());
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&desc.path)
        .map_err(|e| AttachFailure::new(AttachStep::Open, &desc.path, &e))?;
    let map = map(&f, desc.offset, desc.len)
        .map_err(|e| AttachFailure::new(AttachStep::Map, &desc.path, &e))?;
    let seg = Arc::new(Segment {
        id: desc.id,
        map,
        release_to: None,
        borrow: AtomicIsize::new(0),
    });
    t.insert(
        desc.id,
        Entry {
            weak: Arc::downgrade(&seg),
            strong: Some(seg),
        },
    );
    Ok(())
}

/// Why a participant could not map a segment, as it travels back to the creator
/// (an `io::Error` does not serialize: its OS error code and text do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttachFailure {
    pub step: AttachStep,
    pub path: String,
    pub os_code: Option<i32>,
    pub message: String,
}

impl AttachFailure {
    fn new(step: AttachStep, path: &str, e: &std::io::Error) -> Self {
        AttachFailure {
            step,
            path: path.to_string(),
            os_code: e.raw_os_error(),
            message: e.to_string(),
        }
    }

    /// The error as the creator reports it.
    pub(crate) fn into_cause(self) -> crate::error::AttachCause {
        let source = match self.os_code {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(self.message),
        };
        crate::error::AttachCause::Os {
            step: self.step,
            path: PathBuf::from(self.path),
            source,
        }
    }
}

pub(crate) use crate::error::AttachStep;

/// The built-in the creator calls when its last handle goes (`cohort_shared::release`):
/// this process stops holding the mapping on the creator's behalf.
pub(crate) fn release(id: SegId) {
    let held = table().lock().get_mut(&id).and_then(|e| e.strong.take());
    // Dropped outside the lock: unmaps here unless local handles remain, and the
    // segment's drop removes the table entry.
    drop(held);
}

/// How many segments this process maps (a built-in, `cohort_shared::mapped_segments`).
pub(crate) fn remote_mapped_count() -> usize {
    mapped_count()
}

/// The segments this process maps and their bytes, for a dashboard's objects panel
/// (`cohort_cluster::observe::OBJECT_COUNTS`).
fn object_count() -> cohort_cluster::observe::ObjectCount {
    let live: Vec<Arc<Segment>> = table()
        .lock()
        .values()
        .filter_map(|e| e.weak.upgrade())
        .collect();
    // `live` is dropped after the table's lock is let go (a segment's drop takes it).
    let bytes = live
        .iter()
        .map(|s| s.map.as_ref().map_or(0, |m| m.len() as u64))
        .sum();
    cohort_cluster::observe::ObjectCount {
        kind: "shared_segments".into(),
        count: live.len() as u64,
        bytes: Some(bytes),
        detail: String::new(),
    }
}

#[cohort_cluster::__private::linkme::distributed_slice(cohort_cluster::observe::OBJECT_COUNTS)]
#[linkme(crate = cohort_cluster::__private::linkme)]
static OBJECTS: fn() -> cohort_cluster::observe::ObjectCount = object_count;

#[cohort_cluster::__private::linkme::distributed_slice(REMOTE_FUNCTIONS)]
#[linkme(crate = cohort_cluster::__private::linkme)]
static ATTACH: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (Desc,)>("cohort_shared::attach", &attach);
#[cohort_cluster::__private::linkme::distributed_slice(REMOTE_FUNCTIONS)]
#[linkme(crate = cohort_cluster::__private::linkme)]
static RELEASE: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, (SegId,)>("cohort_shared::release", &release);
#[cohort_cluster::__private::linkme::distributed_slice(REMOTE_FUNCTIONS)]
#[linkme(crate = cohort_cluster::__private::linkme)]
static MAPPED: fn() -> RemoteFnEntry =
    || RemoteFnEntry::of::<_, ()>("cohort_shared::mapped_segments", &remote_mapped_count);

#[cfg(test)]
mod tests {
    use super::Segment;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn segment_is_send_and_sync() {
        send_sync::<Segment>();
        send_sync::<crate::SharedArray<f64, ndarray::Ix1>>();
        send_sync::<crate::SharedArray<u8, ndarray::IxDyn>>();
    }
}
