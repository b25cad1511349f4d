//! SPMD collectives over more processes than one level of their trees (the driver
//! and four workers: five ranks), where a process gets a broadcast or an allreduce
//! result from its parent in the tree rather than from the root — `allreduce` once
//! waited for the root there and hung. Its own binary: it needs five processes, the
//! other SPMD tests three.

use cohort::darray::spmd::{self, SpmdError};

/// Every collective, then a ring, checked on every rank.
fn all_collectives(seed: u64) -> Result<(), SpmdError> {
    spmd::barrier(())?;
    let pids = spmd::run_pids()?;
    let r = spmd::rank()?;
    let n = pids.len();
    assert_eq!(spmd::allreduce(r, |a, b| a + b, ())?, n * (n - 1) / 2);
    for (k, &root) in pids.iter().enumerate() {
        let v = spmd::bcast(seed + k as u64, root, "bcast")?;
        assert_eq!(v, seed + k as u64, "bcast from {root}");
        // Into buffers: inner ranks forward, leaves are written in place; 1 MiB
        // and a bit, so that it comes in fragments with `COHORT_SPMD_FRAGMENT`
        // small, and whole otherwise.
        let mut buf = vec![0u64; (1 << 17) + 3];
        if root == cohort::myid() {
            buf.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = seed * i as u64 + k as u64);
        }
        spmd::bcast_into(&mut buf, root, "into")?;
        assert!(
            buf.iter()
                .enumerate()
                .all(|(i, &x)| x == seed * i as u64 + k as u64),
            "bcast_into from {root}"
        );
        let sum = spmd::reduce(r as u64, |a, b| a + b, root, "reduce")?;
        assert_eq!(
            sum,
            (root == cohort::myid()).then_some((n * (n - 1) / 2) as u64)
        );
    }
    let root = pids[n - 1];
    let values: Vec<u64> = (0..n as u64).map(|i| seed * i).collect();
    let mine = spmd::scatter(values, root, "scatter")?;
    assert_eq!(mine, seed * r as u64);
    let all = spmd::gather(mine, root, "gather")?;
    if cohort::myid() == root {
        assert_eq!(all, Some((0..n as u64).map(|i| seed * i).collect()));
    }
    spmd::sendto(pids[(r + 1) % n], &(seed + r as u64), "ring")?;
    let got: u64 = spmd::recvfrom(pids[(r + n - 1) % n], "ring")?;
    assert_eq!(got, seed + ((r + n - 1) % n) as u64);
    spmd::barrier(())?;
    Ok(())
}

#[test]
fn collectives_over_five_ranks_go_down_the_tree_and_nothing_hangs() {
    cohort::blocking::addprocs(4).expect("addprocs");
    assert_eq!(cohort::nprocs(), 5);
    // On a thread, so that a hang fails the test (after a minute) instead of
    // holding up the run.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for seed in 1..=10 {
            let out = spmd::blocking::spmd(all_collectives, (seed,));
            let _ = tx.send(out.map(|o| o.len()));
        }
    });
    for seed in 1..=10 {
        let n = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("run {seed} did not end within 60 s"))
            .expect("the run");
        assert_eq!(n, 5);
    }
}
