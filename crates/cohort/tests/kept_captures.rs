//! A closure's captured values cross to a worker once while they are unchanged, for
//! plain remote calls too (issue 12, point 16): the worker keeps the state and later
//! calls send its key. Each test has a cluster of its own (its settings and figures
//! are its own).

use std::sync::Arc;

use cohort::prelude::*;
use cohort::{Cluster, Prepared, RemoteChannel, Stats};

/// A worker's figures, read on the worker.
fn stats_on(c: &Cluster, w: Pid) -> Stats {
    c.remotecall_fetch_blocking(cohort::stats, w, ()).unwrap()
}

/// `n` bytes, different for each `seed`.
fn table(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn expected(t: &[u8], i: usize) -> u64 {
    t[i % t.len()] as u64 * 1000 + i as u64
}

#[test]
fn a_large_capture_crosses_once_per_worker_and_every_result_is_right() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let t = table(1 << 20, 1);
    let f = cohort::closure!([t] |i: usize| t[i % t.len()] as u64 * 1000 + i as u64);
    let t = &f.captures().0;
    for i in 0..20 {
        for &p in &w {
            assert_eq!(
                c.remotecall_fetch_blocking(f.clone(), p, (i,)).unwrap(),
                expected(t, i)
            );
        }
    }
    for &p in &w {
        let s = stats_on(&c, p);
        assert_eq!(s.kept_states_received, 1, "worker {p}: {s:?}");
        assert_eq!(s.kept_states, 1);
        assert!(s.kept_state_bytes_received >= 1 << 20);
        assert!(s.kept_state_bytes_received < (1 << 20) + 64);
    }
    c.rmprocs_blocking(&w, None).unwrap();
}

#[test]
fn calls_in_flight_together_send_the_state_once_and_all_succeed() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let t = Arc::new(table(256 << 10, 2));
    let f = {
        let t = (*t).clone();
        cohort::closure!([t] |i: usize| t[i % t.len()] as u64 * 1000 + i as u64)
    };
    // From four threads at once, 100 unanswered calls each, then the fetches.
    let threads: Vec<_> = (0..4)
        .map(|k| {
            let c = c.clone();
            let f = f.clone();
            std::thread::spawn(move || {
                let futures: Vec<_> = (0..100)
                    .map(|i| c.remotecall(f.clone(), w, (k * 100 + i,)))
                    .collect();
                futures
                    .into_iter()
                    .map(|fut| fut.fetch_blocking().unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    for (k, h) in threads.into_iter().enumerate() {
        let got = h.join().unwrap();
        let want: Vec<u64> = (0..100).map(|i| expected(&t, k * 100 + i)).collect();
        assert_eq!(got, want);
    }
    let s = stats_on(&c, w);
    assert_eq!(s.kept_states_received, 1, "{s:?}");
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn changed_captures_cross_again_and_only_the_newest_two_are_kept() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    for seed in 0..4u8 {
        let t = table(100_000, seed);
        let f = cohort::closure!([t] |i: usize| t[i % t.len()] as u64 * 1000 + i as u64);
        let t = &f.captures().0;
        for i in 0..3 {
            assert_eq!(
                c.remotecall_fetch_blocking(f.clone(), w, (i,)).unwrap(),
                expected(t, i)
            );
        }
        let s = stats_on(&c, w);
        assert_eq!(s.kept_states_received, u64::from(seed) + 1, "{s:?}");
        assert_eq!(s.kept_states, (seed as usize + 1).min(2));
    }
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn small_captures_and_a_zero_budget_send_the_state_with_every_call() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let small = table(cohort::CAPTURE_MIN / 2, 3);
    let f = cohort::closure!([small] |i: usize| small[i % small.len()] as u64 * 1000 + i as u64);
    let small = &f.captures().0;
    for i in 0..5 {
        assert_eq!(
            c.remotecall_fetch_blocking(f.clone(), w, (i,)).unwrap(),
            expected(small, i)
        );
    }
    c.set_capture_budget(0);
    let big = table(1 << 20, 4);
    let g = cohort::closure!([big] |i: usize| big[i % big.len()] as u64 * 1000 + i as u64);
    let big = &g.captures().0;
    for i in 0..5 {
        assert_eq!(
            c.remotecall_fetch_blocking(g.clone(), w, (i,)).unwrap(),
            expected(big, i)
        );
    }
    assert_eq!(stats_on(&c, w).kept_states_received, 0);
    // Back on: kept from the next call.
    c.set_capture_budget(cohort::DEFAULT_CAPTURE_BUDGET);
    assert_eq!(
        c.remotecall_fetch_blocking(g.clone(), w, (9,)).unwrap(),
        expected(big, 9)
    );
    assert_eq!(stats_on(&c, w).kept_states_received, 1);
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn a_capture_holding_a_remote_reference_is_never_kept() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let ch: RemoteChannel<u64> = c.channel_blocking(1, 100).unwrap();
    let t = table(256 << 10, 5);
    let (t_here, ch_here) = (t.clone(), ch.clone());
    let f = cohort::closure!([t, ch] |i: usize| {
        let v = t[i % t.len()] as u64 * 1000 + i as u64;
        ch.put_blocking(v).unwrap();
        v
    });
    for i in 0..10 {
        assert_eq!(
            c.remotecall_fetch_blocking(f.clone(), w, (i,)).unwrap(),
            expected(&t_here, i)
        );
        assert_eq!(ch_here.take_blocking().unwrap(), expected(&t_here, i));
    }
    assert_eq!(stats_on(&c, w).kept_states_received, 0);
    drop(f);
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn a_prepared_function_is_encoded_once_and_its_state_crosses_once_per_worker() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let t = table(1 << 20, 6);
    let f = Prepared::new({
        let t = t.clone();
        cohort::closure!([t] |i: usize| t[i % t.len()] as u64 * 1000 + i as u64)
    });
    let futures: Vec<_> = (0..200)
        .map(|i| (i, c.remotecall(f.clone(), w[i % 2], (i,))))
        .collect();
    for (i, fut) in futures {
        assert_eq!(fut.fetch_blocking().unwrap(), expected(&t, i));
    }
    for &p in &w {
        assert_eq!(stats_on(&c, p).kept_states_received, 1);
    }
    // A worker that leaves takes nothing with it: a new one gets the state.
    c.rmprocs_blocking(&[w[0]], None).unwrap();
    let fresh = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    assert_eq!(
        c.remotecall_fetch_blocking(f.clone(), fresh, (7,)).unwrap(),
        expected(&t, 7)
    );
    assert_eq!(stats_on(&c, fresh).kept_states_received, 1);
    c.rmprocs_blocking(&[w[1], fresh], None).unwrap();
}

#[test]
fn a_remote_do_and_a_remotecall_wait_use_the_kept_state_too() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let ch: RemoteChannel<u64> = c.channel_blocking(1, 100).unwrap();
    let t = table(128 << 10, 7);
    // The channel travels as an argument: the captures hold no reference.
    let f = cohort::closure!([t] |i: usize, ch: RemoteChannel<u64>| {
        ch.put_blocking(t[i % t.len()] as u64 * 1000 + i as u64).unwrap();
    });
    let t = &f.captures().0;
    for i in 0..5 {
        c.remote_do(f.clone(), w, (i, ch.clone())).unwrap();
        assert_eq!(ch.take_blocking().unwrap(), expected(t, i));
        c.remotecall_wait_blocking(f.clone(), w, (i + 100, ch.clone()))
            .unwrap();
        assert_eq!(ch.take_blocking().unwrap(), expected(t, i + 100));
    }
    assert_eq!(stats_on(&c, w).kept_states_received, 1);
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn a_pmap_sends_its_function_state_to_each_worker_once() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let t = table(1 << 20, 8);
    let f = cohort::closure!([t] |i: usize| t[i % t.len()] as u64 * 1000 + i as u64);
    let t = f.captures().0.clone();
    let pool = cohort::WorkerPool::new_in(&c, w.clone());
    let opts = cohort::PmapOptions::new().pool(pool).batch_size(1);
    let got = cohort::pool::blocking::pmap_with(f, 0..1000usize, opts).unwrap();
    assert_eq!(got, (0..1000).map(|i| expected(&t, i)).collect::<Vec<_>>());
    let mut total = 0;
    for &p in &w {
        let s = stats_on(&c, p);
        assert!(s.kept_states_received <= 1, "worker {p}: {s:?}");
        total += s.kept_states_received;
    }
    // Each worker that ran items got the state once (on a loaded machine one
    // worker may run them all).
    assert!(total >= 1);
    c.rmprocs_blocking(&w, None).unwrap();
}
