//! The build fingerprint: identifies the executable a process runs, so code offsets
//! are only ever resolved between identical executables.
//!
//! It hashes the executable's GNU build ID — the note the linker derives from the
//! linked output (GNU ld and lld with `--build-id`, which Debian's and most
//! distributions' toolchains pass by default) — read from the loaded program's
//! headers in memory: no file is read, so it costs nothing at a worker's start, and a
//! copy of the binary (the one [`SshManager`](cohort_transport::SshManager) puts on a
//! host that lacks it) has the same fingerprint, while a rebuild gets a new one.
//!
//! A binary without a build ID falls back to the file's identity as the file system
//! reports it (path, device, inode, size, modification time): hashing a 100 MB debug
//! binary would cost milliseconds at every worker start. Copies of such a binary
//! count as different executables: closures are refused there with a clear error, and
//! registered functions, which travel by name, still work.

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
        let id = match build_id() {
            Some(id) => format!("build-id:{}", hex(&id)),
            None => file_identity().unwrap_or_else(|| format!("pid:{}", std::process::id())),
        };
        xxh3_128(id.as_bytes()).to_le_bytes().to_vec()
    })
}

/// The running program's GNU build ID, if its linker wrote one.
///
/// ```
/// // Debian's toolchain links every binary with a build ID.
/// if let Some(id) = cohort_cluster::fingerprint::build_id() {
///     assert!(id.len() >= 8);
/// }
/// ```
pub fn build_id() -> Option<Vec<u8>> {
    #[cfg(target_os = "linux")]
    {
        loaded::main_program_build_id()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_identity() -> Option<String> {
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

/// Reading the build ID from the program headers the dynamic loader keeps
/// (`dl_iterate_phdr`): the `PT_NOTE` segments of the main program, already mapped.
/// Written here rather than with an ELF crate because it reads memory the loader
/// describes, not the file, and needs nothing but libc.
#[cfg(target_os = "linux")]
mod loaded {
    use std::ffi::c_void;

    /// `NT_GNU_BUILD_ID`.
    const NT_GNU_BUILD_ID: u32 = 3;

    pub(super) fn main_program_build_id() -> Option<Vec<u8>> {
        let mut found: Option<Vec<u8>> = None;
        // SAFETY: `dl_iterate_phdr` calls `visit` with valid `dl_phdr_info` pointers
        // for the duration of each call; `found` outlives the iteration.
        unsafe {
            libc::dl_iterate_phdr(Some(visit), (&mut found as *mut Option<Vec<u8>>).cast());
        }
        found
    }

    /// Called for each loaded object; the first is the main program. Returns 1 to
    /// stop after it.
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `info`; `data` is the `found` above.
        let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<Vec<u8>>>()) };
        if info.dlpi_phdr.is_null() {
            return 1;
        }
        // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
        for h in headers.iter().filter(|h| h.p_type == libc::PT_NOTE) {
            let start = (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize);
            // SAFETY: a PT_NOTE segment is mapped, readable, `p_memsz` bytes at
            // `dlpi_addr + p_vaddr`.
            let notes =
                unsafe { std::slice::from_raw_parts(start as *const u8, h.p_memsz as usize) };
            if let Some(id) = gnu_build_id(notes) {
                *found = Some(id.to_vec());
                break;
            }
        }
        1
    }

    /// The descriptor of the GNU build-ID note among `notes` (a sequence of ELF notes:
    /// namesz, descsz, type, then the name and the descriptor, each padded to 4 bytes).
    pub(super) fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
        let word = |b: &[u8], i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let pad = |n: usize| (n + 3) & !3;
        while notes.len() >= 12 {
            let namesz = word(notes, 0)? as usize;
            let descsz = word(notes, 4)? as usize;
            let kind = word(notes, 8)?;
            let name_end = 12usize.checked_add(pad(namesz))?;
            let desc_end = name_end.checked_add(pad(descsz))?;
            let name = notes.get(12..12 + namesz)?;
            let desc = notes.get(name_end..name_end + descsz)?;
            if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
                return Some(desc);
            }
            notes = notes.get(desc_end..)?;
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::gnu_build_id;

        fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend((name.len() as u32).to_ne_bytes());
            v.extend((desc.len() as u32).to_ne_bytes());
            v.extend(kind.to_ne_bytes());
            v.extend(name);
            v.resize(v.len().div_ceil(4) * 4, 0);
            v.extend(desc);
            v.resize(v.len().div_ceil(4) * 4, 0);
            v
        }

        #[test]
        fn finds_the_build_id_among_other_notes_and_survives_garbage() {
            let mut notes = note(b"GNU\0", 1, &[0; 16]); // an ABI tag
            notes.extend(note(b"GNU\0", 3, &[0xab; 20]));
            assert_eq!(gnu_build_id(&notes), Some(&[0xab; 20][..]));
            assert_eq!(gnu_build_id(&note(b"XYZ\0", 3, &[1; 8])), None);
            let mut truncated = note(b"GNU\0", 3, &[1; 20]);
            truncated.truncate(20);
            assert_eq!(gnu_build_id(&truncated), None);
            assert_eq!(gnu_build_id(&[0xff; 12]), None);
        }

        #[test]
        fn this_test_binary_has_one() {
            // Debian's toolchain (what CI runs) links with a build ID.
            assert!(super::main_program_build_id().is_some());
        }
    }
}
