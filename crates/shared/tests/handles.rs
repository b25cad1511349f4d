//! SharedArray handles as Julia's (issue 12) across real worker processes (this
//! test binary is its own worker): `reshape` shares the memory, `deep_copy` is an
//! array of its own, `finalize` gives the claim up, and a handle written outside a
//! cluster message is inert.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cohort::prelude::*;
use cohort_shared::{SharedArray, SharedError};
use ndarray::{Ix1, Ix2};

/// The tests count mapped segments on the workers: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

fn workers() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| blocking::addprocs(2).expect("addprocs"))
        .clone()
}

/// Waits for a release that travels as a message (no timing is asserted: the
/// bound only turns a regression into a failure instead of a hang).
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cohort::remote]
fn write_2d(s: SharedArray<i64, Ix2>, i: usize, j: usize, v: i64) {
    s.set([i, j], v);
}

#[cohort::remote]
fn read_1d(s: SharedArray<i64, Ix1>, i: usize) -> i64 {
    s.get(i).unwrap()
}

#[cohort::remote]
fn view_error(s: SharedArray<i64, Ix1>) -> String {
    s.try_view()
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[cohort::remote]
fn view_error_of_json(json: String) -> String {
    let s: SharedArray<i64, Ix1> = serde_json::from_str(&json).unwrap();
    s.try_view()
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn reshape_shares_the_memory_with_every_participant() {
    let _g = serial();
    let w = workers();
    let s = SharedArray::<i64, Ix1>::builder(12)
        .pids(&w)
        .build()
        .unwrap();
    let m = s.reshape::<Ix2>((3, 4)).unwrap();
    assert_eq!(m.shape(), &[3, 4]);
    assert_eq!(m.procs(), s.procs());
    // A worker writes through the reshaped handle; the other reads through the
    // original one: column-major, [2, 1] is element 2 + 1 * 3.
    blocking::remotecall_wait(write_2d, w[0], (m.clone(), 2, 1, 77)).unwrap();
    assert_eq!(
        blocking::remotecall_fetch(read_1d, w[1], (s.clone(), 5)).unwrap(),
        77
    );
    assert_eq!(s.get(5), Some(77));
    // Another number of elements is refused.
    match s.reshape::<Ix2>((5, 3)) {
        Err(SharedError::ShapeMismatch { from, to }) => {
            assert_eq!((from, to), (vec![12], vec![5, 3]));
        }
        other => panic!("reshape to 15 elements: {other:?}"),
    }
}

#[test]
fn deep_copy_is_independent_and_clone_is_not() {
    let _g = serial();
    let w = workers();
    let s = SharedArray::<i64, Ix1>::builder(8)
        .pids(&w)
        .build()
        .unwrap();
    s.view_mut()
        .as_linear_mut()
        .copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let c = s.deep_copy().unwrap();
    assert_eq!(c.procs(), s.procs());
    assert_eq!(c.view().to_vec(), s.view().to_vec());
    // Writes to the copy, on a participant, leave the original alone.
    let c2 = c.reshape::<Ix2>((8, 1)).unwrap();
    blocking::remotecall_wait(write_2d, w[1], (c2, 0, 0, -1)).unwrap();
    assert_eq!(c.get(0), Some(-1));
    assert_eq!(s.get(0), Some(1));
    assert_eq!(
        blocking::remotecall_fetch(read_1d, w[0], (s.clone(), 0)).unwrap(),
        1
    );
    // A clone is the same memory.
    let same = s.clone();
    same.set(0, 9);
    assert_eq!(s.get(0), Some(9));
    assert_eq!(c.get(0), Some(-1));
}

#[test]
fn finalize_gives_up_the_claim_and_the_handle_is_dead_where_it_goes() {
    let _g = serial();
    let w = workers();
    // The arrays of the tests before this one are released by messages: wait for
    // the workers to map none.
    for &p in &w {
        wait_until("the earlier tests' arrays are released", || {
            cohort_shared::blocking::mapped_segments_on(p).unwrap() == 0
        });
    }
    let before = vec![0; w.len()];
    let mut s = SharedArray::<i64, Ix1>::builder(4)
        .pids(&w)
        .build()
        .unwrap();
    for (k, &p) in w.iter().enumerate() {
        assert_eq!(
            cohort_shared::blocking::mapped_segments_on(p).unwrap(),
            before[k] + 1
        );
    }
    let keep = s.clone();
    s.finalize();
    assert!(!s.is_mapped());
    assert!(matches!(s.try_view(), Err(SharedError::Finalized)));
    assert!(matches!(s.reshape::<Ix1>(4), Err(SharedError::Finalized)));
    // Sent to a participant, it arrives finalized.
    let e = blocking::remotecall_fetch(view_error, w[0], (s.clone(),)).unwrap();
    assert!(e.contains("finalized"), "{e}");
    // The clone kept its own claim: the array is still there.
    assert_eq!(
        blocking::remotecall_fetch(read_1d, w[1], (keep.clone(), 0)).unwrap(),
        0
    );
    // Finalizing the last live handle here releases the participants, before any
    // handle is dropped.
    let mut keep = keep;
    keep.finalize();
    for (k, &p) in w.iter().enumerate() {
        wait_until("the participants unmap", || {
            cohort_shared::blocking::mapped_segments_on(p).unwrap() == before[k]
        });
    }
    drop((s, keep));
}

#[test]
fn a_shared_array_written_outside_a_message_is_inert() {
    let _g = serial();
    let w = workers();
    let s = SharedArray::<i64, Ix1>::builder(4)
        .pids(&w)
        .build()
        .unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let copy: SharedArray<i64, Ix1> = serde_json::from_str(&json).unwrap();
    assert!(!copy.is_mapped());
    assert!(matches!(copy.try_view(), Err(SharedError::Inert)));
    assert!(SharedError::Inert.to_string().contains("inert"));
    // Read by a participant, which maps the live array: still inert.
    let e = blocking::remotecall_fetch(view_error_of_json, w[0], (json,)).unwrap();
    assert!(e.contains("inert"), "{e}");
    // The original is untouched.
    s.set(1, 5);
    assert_eq!(
        blocking::remotecall_fetch(read_1d, w[1], (s.clone(), 1)).unwrap(),
        5
    );
}
