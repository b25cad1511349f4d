//! `Future::fetch_into`: a remote array fetched into the caller's buffer (issue 10,
//! point 1), over real worker processes, for values pushed back with the result
//! (small) and values fetched from the worker's store (large).

use cohort::prelude::*;
use cohort::{BufferError, Bulk};
use cohort::{CallError, Cluster};

fn ramp(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.25).collect()
}

fn ramp_bulk(n: usize) -> Bulk<f32> {
    Bulk((0..n).map(|i| i as f32).collect())
}

fn counts(n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect()
}

#[test]
fn large_and_small_arrays_land_in_the_callers_buffer_again_and_again() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    for n in [0, 10, 100_000, 1 << 20] {
        let f = c.remotecall(ramp, w, (n,));
        let mut buf = vec![-1.0; n];
        f.fetch_into_blocking(&mut buf).unwrap();
        assert_eq!(buf, ramp(n), "{n} elements");
        // The claim is kept: the value can be fetched again, into the buffer or not.
        buf.fill(-1.0);
        f.fetch_into_blocking(&mut buf).unwrap();
        assert_eq!(buf, ramp(n));
        assert_eq!(f.fetch_blocking().unwrap(), ramp(n));
        // Once cached here, it is copied from here.
        buf.fill(-1.0);
        f.fetch_into_blocking(&mut buf).unwrap();
        assert_eq!(buf, ramp(n));
    }
    let b = c.remotecall(ramp_bulk, w, (300_000,));
    let mut out = vec![0.0f32; 300_000];
    b.fetch_into_blocking(&mut out).unwrap();
    assert_eq!(out, ramp_bulk(300_000).0);
    let v = c.remotecall(counts, w, (50_000,));
    let mut out = vec![0u32; 50_000];
    v.fetch_into_blocking(&mut out).unwrap();
    assert_eq!(out, counts(50_000));
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn a_buffer_of_another_length_is_an_error_and_stays_as_it_was() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    for n in [10, 200_000] {
        let f = c.remotecall(ramp, w, (n,));
        let mut short = vec![7.0; n - 1];
        assert_eq!(
            f.fetch_into_blocking(&mut short).unwrap_err(),
            CallError::Buffer(BufferError::Length {
                value: n,
                buffer: n - 1
            })
        );
        assert!(short.iter().all(|&x| x == 7.0));
        // The handle is still good.
        let mut buf = vec![0.0; n];
        f.fetch_into_blocking(&mut buf).unwrap();
        assert_eq!(buf, ramp(n));
    }
    c.rmprocs_blocking(&[w], None).unwrap();
}

fn fails(n: usize) -> Vec<f64> {
    panic!("no array of {n} today")
}

#[test]
fn a_failed_call_and_a_dead_owner_are_errors() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let f = c.remotecall(fails, w, (3,));
    let mut buf = [0.0; 3];
    assert!(matches!(
        f.fetch_into_blocking(&mut buf).unwrap_err(),
        CallError::Remote(e) if e.message.contains("no array of 3 today")
    ));
    let big = c.remotecall(ramp, w, (100_000,));
    big.wait_blocking().unwrap();
    c.rmprocs_blocking(&[w], None).unwrap();
    let mut buf = vec![0.0; 100_000];
    assert!(matches!(
        big.fetch_into_blocking(&mut buf).unwrap_err(),
        CallError::WorkerExited { .. } | CallError::NoSuchProcess { .. }
    ));
}

fn pattern(n: usize, seed: u64) -> Vec<u64> {
    (0..n as u64).map(|i| i.wrapping_mul(seed) ^ seed).collect()
}

#[test]
fn large_fetches_from_two_workers_at_once_never_mix_their_bytes() {
    // Each fetch's message lands in the memory a previous one gave back: from either
    // worker, in either thread, the bytes must be that array's.
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let n = 1 << 19; // 4 MiB each
    let held: Vec<_> = w
        .iter()
        .enumerate()
        .map(|(k, &p)| c.remotecall(pattern, p, (n, k as u64 + 3)))
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let held = held.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u64; n];
                for i in 0..20 {
                    let k = (i + t) % 2;
                    buf.fill(0);
                    held[k].fetch_into_blocking(&mut buf).unwrap();
                    assert!(buf == pattern(n, k as u64 + 3), "fetch {i} of thread {t}");
                    // Plain fetches of fresh values in between.
                    let v = held[1 - k]
                        .fetch_with_blocking(|v: &Vec<u64>| v[7])
                        .unwrap();
                    assert_eq!(v, pattern(8, (1 - k) as u64 + 3)[7]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    c.rmprocs_blocking(&w, None).unwrap();
}
