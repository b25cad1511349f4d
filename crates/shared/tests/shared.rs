//! SharedArray across real worker processes (this test binary is its own worker).
//!
//! The tests take one lock so that counts of mapped segments and the contents of
//! `/dev/shm` are exact.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort_shared::{split_range, FileMode, SharedArray, SharedError, SEGMENT_PREFIX};
use ndarray::{Ix1, Ix2, Ix3, IxDyn};

fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// Three workers shared by the tests that do not add or kill their own.
fn cluster() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| blocking::addprocs(3).expect("addprocs"))
        .clone()
}

/// Segment files of OS process `os_pid` in the segment directory.
fn files_of(os_pid: u32) -> Vec<String> {
    let prefix = format!("{SEGMENT_PREFIX}{os_pid}.");
    std::fs::read_dir(cohort_shared::segment_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Lines of /proc/PID/maps naming a segment.
fn maps_of(os_pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{os_pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(SEGMENT_PREFIX))
        .count()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn fill_mine(s: SharedArray<i64, Ix2>) {
    let mine = s.localindices();
    s.view_mut().as_linear_mut()[mine].fill(cohort::myid() as i64);
}

#[cohort::remote]
fn fill_striped(s: SharedArray<i64, Ix2>) {
    let (k, n) = (s.indexpids(), s.procs().len());
    let mut v = s.view_mut();
    let lin = v.as_linear_mut();
    for i in (k - 1..lin.len()).step_by(n) {
        lin[i] = cohort::myid() as i64;
    }
}

#[cohort::remote]
fn read_at(s: SharedArray<i64, Ix2>, i: usize, j: usize) -> i64 {
    s.view()[[i, j]]
}

#[cohort::remote]
fn write_at(s: SharedArray<i64, Ix2>, i: usize, j: usize, v: i64) {
    s.set([i, j], v);
}

#[cohort::remote]
fn describe(s: SharedArray<u8, Ix1>) -> (usize, usize, usize, bool, Vec<u32>) {
    let r = s.localindices();
    (
        s.indexpids(),
        r.start,
        r.end,
        s.is_mapped(),
        s.procs().to_vec(),
    )
}

#[cohort::remote]
fn boom_on_second(s: SharedArray<u8, Ix1>) {
    if s.indexpids() == 2 {
        panic!("init failed on purpose");
    }
}

#[cohort::remote]
fn sum_dyn(s: SharedArray<f64, IxDyn>) -> f64 {
    s.view().sum()
}

#[cohort::remote]
fn bump_dyn(s: SharedArray<f64, IxDyn>) {
    let mine = s.localindices();
    for x in &mut s.view_mut().as_linear_mut()[mine] {
        *x += 1.0;
    }
}

#[test]
fn seed_init_fills_localindices_with_myid() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<i64, Ix2>::builder((3, 4))
        .pids(&w)
        .init(fill_mine)
        .build()
        .unwrap();
    // Julia's split: 12 elements over 3 processes, 4 each, column-major.
    let v = s.view();
    let expect: Vec<i64> = (0..12).map(|k| w[k / 4] as i64).collect();
    assert_eq!(v.as_linear(), &expect[..]);
    if w == [2, 3, 4] {
        // The seed's printout, row by row.
        assert_eq!(v.row(0).to_vec(), vec![2, 2, 3, 4]);
        assert_eq!(v.row(1).to_vec(), vec![2, 3, 3, 4]);
        assert_eq!(v.row(2).to_vec(), vec![2, 3, 4, 4]);
    }
    drop(v);
    // S[3,2] = 7 on the driver is seen by every worker: the same memory.
    s.set([2, 1], 7);
    for &p in &w {
        assert_eq!(
            blocking::remotecall_fetch(read_at, p, (s.clone(), 2, 1)).unwrap(),
            7
        );
    }
}

#[test]
fn seed_striped_indexpids_variant() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<i64, Ix2>::builder((3, 4))
        .pids(&w)
        .init(fill_striped)
        .build()
        .unwrap();
    let v = s.view();
    for (r, &p) in w.iter().enumerate() {
        assert_eq!(v.row(r).to_vec(), vec![p as i64; 4], "row {r}");
    }
}

#[test]
fn writes_on_workers_are_seen_everywhere_and_nothing_is_copied() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<i64, Ix2>::builder((64, 64))
        .pids(&w)
        .build()
        .unwrap();
    blocking::remotecall_fetch(write_at, w[0], (s.clone(), 5, 6, 42)).unwrap();
    assert_eq!(s.get([5, 6]), Some(42));
    assert_eq!(
        blocking::remotecall_fetch(read_at, w[2], (s.clone(), 5, 6)).unwrap(),
        42
    );
    // Every participant maps the one segment (as a deleted file: nothing in /dev/shm).
    for &p in &w {
        let os = blocking::remotecall_fetch(os_pid, p, ()).unwrap();
        assert!(maps_of(os) >= 1, "worker {p} does not map the segment");
    }
    assert!(files_of(std::process::id()).is_empty());
    // The handle travels as a small descriptor, not the 32 KiB of data.
    let encoded = postcard::to_stdvec(&s).unwrap().len();
    assert!(encoded < 128, "a SharedArray encodes to {encoded} bytes");
}

#[test]
fn procs_indexpids_localindices_everywhere() {
    let _g = serial();
    let w = cluster();
    // 10 elements over 3 participants: 3, 3, 4 (the last takes the remainder).
    let s = SharedArray::<u8, Ix1>::builder(10)
        .pids(&w)
        .build()
        .unwrap();
    for (k, &p) in w.iter().enumerate() {
        let (idx, lo, hi, mapped, procs) =
            blocking::remotecall_fetch(describe, p, (s.clone(),)).unwrap();
        assert_eq!(idx, k + 1);
        assert_eq!(lo..hi, split_range(10, 3, k + 1));
        assert!(mapped);
        assert_eq!(procs, w);
    }
    assert_eq!(
        [
            split_range(10, 3, 1),
            split_range(10, 3, 2),
            split_range(10, 3, 3)
        ],
        [0..3, 3..6, 6..10]
    );
    // The driver is not a participant: indexpids 0, no local indices, but it maps.
    assert_eq!(s.indexpids(), 0);
    assert_eq!(s.localindices(), 0..0);
    assert!(s.is_mapped());
    // More participants than elements: one each, then none.
    let t = SharedArray::<u8, Ix1>::builder(2).pids(&w).build().unwrap();
    let got: Vec<(usize, usize)> = w
        .iter()
        .map(|&p| {
            let (_, lo, hi, _, _) = blocking::remotecall_fetch(describe, p, (t.clone(),)).unwrap();
            (lo, hi)
        })
        .collect();
    assert_eq!(got, vec![(0, 1), (1, 2), (0, 0)]);
    // A process outside the participants gets a handle that maps nothing.
    let u = SharedArray::<u8, Ix1>::builder(4)
        .pids(&w[..2])
        .build()
        .unwrap();
    let (idx, lo, hi, mapped, _) =
        blocking::remotecall_fetch(describe, w[2], (u.clone(),)).unwrap();
    assert_eq!((idx, lo, hi, mapped), (0, 0, 0, false));
}

#[test]
fn default_pids_are_the_workers_on_this_host() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<u8, Ix1>::new(4).unwrap();
    assert!(!s.procs().contains(&1));
    for p in &w {
        assert!(s.procs().contains(p));
    }
}

#[test]
fn any_number_of_dimensions() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<f64, IxDyn>::builder(IxDyn(&[2, 3, 4, 5]))
        .pids(&w)
        .build()
        .unwrap();
    for &p in &w {
        blocking::remotecall_fetch(bump_dyn, p, (s.clone(),)).unwrap();
    }
    assert_eq!(s.view().sum(), 120.0);
    assert_eq!(
        blocking::remotecall_fetch(sum_dyn, w[1], (s.clone(),)).unwrap(),
        120.0
    );
    let t = SharedArray::<u16, Ix3>::builder((2, 2, 2)).build().unwrap();
    t.set([1, 1, 1], 3);
    assert_eq!(t.view().as_linear()[7], 3, "column-major: (1,1,1) is last");
}

#[cohort::remote]
fn sum_ix1(s: SharedArray<f64, Ix1>) -> f64 {
    s.view().sum()
}

#[test]
fn the_last_handle_passed_to_a_call_keeps_the_array_mapped_until_it_is_answered() {
    // The caller drops a call's arguments once they are encoded; the creator's last
    // handle among them must not release the participants' mappings before the
    // callee has used it.
    let _l = serial();
    let ws = cluster();
    for round in 0..20 {
        let s = SharedArray::<f64, Ix1>::builder(1000)
            .init(|s: SharedArray<f64, Ix1>| {
                let mine = s.localindices();
                s.view_mut().as_linear_mut()[mine].fill(1.0);
            })
            .build()
            .unwrap();
        let w = ws[round % ws.len()];
        assert_eq!(
            blocking::remotecall_fetch(sum_ix1, w, (s,)).unwrap(),
            1000.0
        );
        let s = SharedArray::<f64, Ix1>::builder(10).build().unwrap();
        s.view_mut().as_linear_mut().fill(2.0);
        let f = blocking::remotecall_wait(sum_ix1, w, (s,)).unwrap();
        assert_eq!(f.fetch_blocking().unwrap(), 20.0);
    }
}

#[test]
fn not_on_this_host_is_a_clear_error() {
    let _g = serial();
    let e = SharedArray::<u8, Ix1>::builder(4)
        .pids(&[1, 999])
        .build()
        .unwrap_err();
    assert!(matches!(e, SharedError::NotOnThisHost { pid: 999 }), "{e}");
    assert!(e.to_string().contains("not on this host"));
}

#[test]
fn too_large_is_a_clear_error_at_creation() {
    let _g = serial();
    let before = files_of(std::process::id());
    // Twice the size of the whole shared-memory file system.
    let total = fs_total(&cohort_shared::segment_dir());
    let e = SharedArray::<u8, Ix1>::new(total as usize * 2).unwrap_err();
    assert!(matches!(e, SharedError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("shared-memory limit"), "{e}");
    assert_eq!(files_of(std::process::id()), before, "no file left behind");
}

fn fs_total(dir: &std::path::Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn init_failures_are_collected_and_nothing_leaks() {
    let _g = serial();
    let w = cluster();
    let e = SharedArray::<u8, Ix1>::builder(6)
        .pids(&w)
        .init(boom_on_second)
        .build()
        .unwrap_err();
    match &e {
        SharedError::Init { failures } => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0, w[1]);
        }
        other => panic!("{other}"),
    }
    wait_until("workers unmap the failed array", || {
        w.iter()
            .all(|&p| cohort_shared::blocking::mapped_segments_on(p).unwrap() == 0)
    });
}

#[test]
fn release_unmaps_everywhere_when_the_last_handle_goes() {
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<i64, Ix2>::builder((100, 100))
        .pids(&w)
        .init(fill_mine)
        .build()
        .unwrap();
    for &p in &w {
        assert_eq!(cohort_shared::blocking::mapped_segments_on(p).unwrap(), 1);
    }
    assert_eq!(cohort_shared::mapped_segments(), 1);
    let os: Vec<u32> = w
        .iter()
        .map(|&p| blocking::remotecall_fetch(os_pid, p, ()).unwrap())
        .collect();
    drop(s);
    assert_eq!(cohort_shared::mapped_segments(), 0);
    assert_eq!(maps_of(std::process::id()), 0);
    wait_until("participants unmap", || {
        w.iter()
            .all(|&p| cohort_shared::blocking::mapped_segments_on(p).unwrap() == 0)
            && os.iter().all(|&o| maps_of(o) == 0)
    });
}

#[test]
fn file_backed_array_outlives_the_processes() {
    let _g = serial();
    let w = cluster();
    let path = std::env::temp_dir().join(format!("cohort-shared-test-{}.bin", std::process::id()));
    {
        let s = SharedArray::<i64, Ix2>::builder((3, 4))
            .pids(&w)
            .file(&path, FileMode::Create)
            .init(fill_mine)
            .build()
            .unwrap();
        s.set([0, 0], -1);
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 12 * 8);
    let vals: Vec<i64> = bytes
        .chunks(8)
        .map(|c| i64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals[0], -1);
    assert_eq!(vals[11], w[2] as i64);
    // Reopen an existing file: its contents are the array's.
    let again = SharedArray::<i64, Ix2>::from_file(&path, (3, 4), FileMode::ReadWrite).unwrap();
    assert_eq!(again.get([2, 3]), Some(w[2] as i64));
    // Too small for the asked shape.
    let e = SharedArray::<i64, Ix2>::from_file(&path, (30, 4), FileMode::ReadWrite).unwrap_err();
    assert!(matches!(e, SharedError::FileTooSmall { .. }), "{e}");
    // OpenOrCreate grows it and keeps the data.
    let grown = SharedArray::<i64, Ix1>::from_file(&path, 20, FileMode::OpenOrCreate).unwrap();
    assert_eq!(grown.get(0), Some(-1));
    assert_eq!(grown.get(19), Some(0));
    drop((again, grown));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn views_are_borrow_checked_per_process() {
    let _g = serial();
    let s = SharedArray::<u8, Ix1>::builder(4)
        .pids(&[1])
        .build()
        .unwrap();
    let t = s.clone();
    let v = s.view();
    assert!(matches!(t.try_view_mut(), Err(SharedError::Borrowed(_))));
    assert!(t.try_view().is_ok());
    drop(v);
    let m = t.view_mut();
    assert!(s.try_view().is_err());
    drop(m);
    s.set(3, 9);
    assert_eq!(t.get(3), Some(9));
}

#[test]
fn a_killed_worker_leaves_no_file_and_the_rest_go_on() {
    let _g = serial();
    let pids = blocking::addprocs(2).unwrap();
    let s = SharedArray::<i64, Ix2>::builder((50, 50))
        .pids(&pids)
        .build()
        .unwrap();
    let victim = blocking::remotecall_fetch(os_pid, pids[0], ()).unwrap();
    let survivor = blocking::remotecall_fetch(os_pid, pids[1], ()).unwrap();
    Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .unwrap();
    wait_until("victim exits", || {
        !std::path::Path::new(&format!("/proc/{victim}")).exists()
    });
    assert!(files_of(std::process::id()).is_empty());
    s.set([1, 1], 5);
    assert_eq!(
        blocking::remotecall_fetch(read_at, pids[1], (s.clone(), 1, 1)).unwrap(),
        5
    );
    drop(s); // releasing a dead participant is harmless
    wait_until("survivor unmaps", || maps_of(survivor) == 0);
    let _ = blocking::rmprocs(&pids[1..], Some(Duration::from_secs(10)));
}

#[test]
fn a_killed_driver_leaves_no_file_and_its_workers_release_the_memory() {
    let _g = serial();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_driver_scenario",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("COHORT_SHARED_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let ready = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
        // libtest prints "test NAME ... " before the test's own output.
        if let Some(rest) = line.trim().split_once("READY ").map(|(_, r)| r) {
            break rest
                .split(' ')
                .map(|x| x.parse::<u32>().unwrap())
                .collect::<Vec<_>>();
        }
    };
    let (driver, workers) = (ready[0], &ready[1..]);
    for &w in workers {
        assert!(maps_of(w) >= 1, "worker maps the segment");
    }
    assert!(files_of(driver).is_empty(), "name already unlinked");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_until("workers of the killed driver exit", || {
        workers
            .iter()
            .all(|w| !std::path::Path::new(&format!("/proc/{w}")).exists())
    });
    assert!(files_of(driver).is_empty());
}

/// Run by the test above in a child process (ignored otherwise).
#[test]
#[ignore]
fn child_driver_scenario() {
    if std::env::var("COHORT_SHARED_CHILD").is_err() {
        return;
    }
    let pids = blocking::addprocs(2).unwrap();
    let s = SharedArray::<f64, Ix1>::builder(1 << 20)
        .pids(&pids)
        .build()
        .unwrap();
    s.view_mut().fill(1.0);
    let os: Vec<String> = pids
        .iter()
        .map(|&p| {
            blocking::remotecall_fetch(os_pid, p, ())
                .unwrap()
                .to_string()
        })
        .collect();
    println!("READY {} {}", std::process::id(), os.join(" "));
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn stale_segments_of_dead_creators_are_swept() {
    let _g = serial();
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = cohort_shared::segment_dir().join(format!("{SEGMENT_PREFIX}{dead_pid}.0.0"));
    std::fs::write(&stale, [0u8; 16]).unwrap();
    let _s = SharedArray::<u8, Ix1>::builder(4)
        .pids(&[1])
        .build()
        .unwrap();
    assert!(
        !stale.exists(),
        "a new creation sweeps the dead creator's file"
    );
}

#[cohort::remote]
fn create_on_worker(n: usize) -> Result<(Vec<u32>, usize), String> {
    let s = SharedArray::<u8, Ix1>::builder(n)
        .pids(&[cohort::myid()])
        .build()
        .map_err(|e| e.to_string())?;
    s.view_mut().fill(1);
    let sum = s.view().iter().map(|x| *x as usize).sum();
    Ok((s.procs().to_vec(), sum))
}

#[test]
fn a_worker_can_create_one_for_itself() {
    let _g = serial();
    let w = cluster();
    let (procs, sum) = blocking::remotecall_fetch(create_on_worker, w[0], (5,))
        .unwrap()
        .unwrap();
    assert_eq!((procs, sum), (vec![w[0]], 5));
}

/// Bumps element 0 of `s` `n` times, atomically.
#[cohort::remote]
fn bump_counter(s: SharedArray<u64, Ix1>, n: u64) {
    let c = s.atomic::<std::sync::atomic::AtomicU64>(0).unwrap();
    for _ in 0..n {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits (bounded) until element 1 is set, then writes element 2 and publishes it
/// with element 3. Returns whether the flag came.
#[cohort::remote]
fn await_flag_then_answer(s: SharedArray<u64, Ix1>) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    let a = s.atomic_view::<AtomicU64>();
    let t = Instant::now();
    while a[1].load(Ordering::Acquire) == 0 {
        if t.elapsed() > Duration::from_secs(20) {
            return false;
        }
        std::thread::yield_now();
    }
    a[2].store(a[1].load(Ordering::Relaxed) * 2, Ordering::Relaxed);
    a[3].store(1, Ordering::Release);
    true
}

#[test]
fn atomics_synchronise_processes() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let _g = serial();
    let w = cluster();
    let s = SharedArray::<u64, Ix1>::builder(4)
        .pids(&w)
        .build()
        .unwrap();
    // Every worker bumps one counter at the same time.
    let bumps: Vec<_> = w
        .iter()
        .map(|&p| remotecall(bump_counter, p, (s.clone(), 10_000)))
        .collect();
    for b in bumps {
        b.fetch_blocking().unwrap();
    }
    assert_eq!(s.get(0), Some(10_000 * w.len() as u64));
    // A flag set here releases a worker polling it; its answer is published back.
    let answer = remotecall(await_flag_then_answer, w[0], (s.clone(),));
    {
        let a = s.atomic_view::<AtomicU64>();
        a[1].store(21, Ordering::Release);
        let t = Instant::now();
        while a[3].load(Ordering::Acquire) == 0 {
            assert!(t.elapsed() < Duration::from_secs(20), "no answer");
            std::thread::yield_now();
        }
        assert_eq!(a[2].load(Ordering::Relaxed), 42);
    }
    assert!(answer.fetch_blocking().unwrap());
}
