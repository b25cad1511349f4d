//! SPMD `barrier` among 2 workers and `bcast` of 64 MiB from one worker to the
//! other, each beside Open MPI over TCP (`mpirun -np 2 --mca pml ob1 --mca btl
//! tcp,self`, the C program `spmd_mpi_baseline.c` beside this file, compiled with
//! `mpicc` at the start of the run) in the same run.
//!
//! `cargo bench -p cohort-darray --bench spmd`
//!
//! The cohort figures are timed inside the run, on the workers (the slower of the
//! two), so they leave out starting the run, as the MPI ones leave out `mpirun`.
//! Each bcast is followed by a barrier on both sides, so no sender runs ahead.
//! `cohort` broadcasts a `Bulk<u8>` (a new array on the receiver each time);
//! `cohort_bcast_into` broadcasts into a buffer each process keeps, as the MPI
//! program's `MPI_Bcast` does.
//! The `_bound` entries run on two workers bound to a CPU each
//! (`AddProcs::bind_cores`), as `mpirun` binds its ranks to cores by default.
//! Without `mpicc`/`mpirun` on the PATH the Open MPI entries are left out (and a
//! line says so).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cohort::darray::spmd::{self, SpmdError, SpmdOptions};
use cohort::{Bulk, Pid};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BCAST_BYTES: usize = 64 << 20;

fn noop() {}

/// `k` barriers after a warm-up; the time they took here, in ns.
fn barriers(k: u64) -> Result<u64, SpmdError> {
    for _ in 0..100 {
        spmd::barrier(())?;
    }
    let t = Instant::now();
    for _ in 0..k {
        spmd::barrier(())?;
    }
    Ok(t.elapsed().as_nanos() as u64)
}

/// `k` broadcasts of `bytes` bytes from the first process, each followed by a
/// barrier, after one warm-up; the time they took here, in ns.
fn bcasts(k: u64, bytes: usize) -> Result<u64, SpmdError> {
    let root = spmd::run_pids()?[0];
    let me = cohort::myid();
    // The root keeps its buffer: bcast hands it back.
    let mut data = Bulk(if me == root {
        vec![7u8; bytes]
    } else {
        Vec::new()
    });
    let step = |data: Bulk<u8>| -> Result<Bulk<u8>, SpmdError> {
        let got = spmd::bcast(data, root, ())?;
        assert_eq!(got.len(), bytes);
        spmd::barrier(())?;
        Ok(if me == root { got } else { Bulk(Vec::new()) })
    };
    data = step(data)?;
    let t = Instant::now();
    for _ in 0..k {
        data = step(data)?;
    }
    Ok(t.elapsed().as_nanos() as u64)
}

/// `k` broadcasts of `bytes` bytes into each process's buffer (`bcast_into`, as
/// `MPI_Bcast` does), each followed by a barrier, after one warm-up; the time they
/// took here, in ns.
fn bcasts_into(k: u64, bytes: usize) -> Result<u64, SpmdError> {
    let root = spmd::run_pids()?[0];
    let mut buf = vec![if cohort::myid() == root { 7u8 } else { 0 }; bytes];
    let mut step = || -> Result<(), SpmdError> {
        spmd::bcast_into(&mut buf, root, ())?;
        spmd::barrier(())
    };
    step()?;
    let t = Instant::now();
    for _ in 0..k {
        step()?;
    }
    let ns = t.elapsed().as_nanos() as u64;
    assert_eq!(buf[bytes - 1], 7);
    Ok(ns)
}

/// The slowest process's time of one run of `f(k, …)` on `pids`.
fn timed_run<F, Args>(f: F, args: Args, pids: &[Pid]) -> Duration
where
    F: cohort::RemoteFn<Args, Output = Result<u64, SpmdError>> + Clone,
    Args: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let ns = spmd::blocking::spmd_with(f, args, SpmdOptions::new().pids(pids)).expect("spmd run");
    Duration::from_nanos(ns.into_iter().max().unwrap_or(0))
}

/// The Open MPI baseline program, compiled into the target's temporary folder;
/// `None` (with a line saying why) without `mpicc`.
fn mpi_program() -> Option<PathBuf> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/spmd_mpi_baseline.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spmd_mpi_baseline");
    match Command::new("mpicc")
        .arg("-O2")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(out),
        Ok(s) => {
            eprintln!("Open MPI baseline left out: mpicc failed ({s})");
            None
        }
        Err(e) => {
            eprintln!("Open MPI baseline left out: no mpicc ({e}); apt-get install openmpi-bin libopenmpi-dev");
            None
        }
    }
}

/// Runs the baseline on 2 ranks over TCP and returns the time it reports.
fn mpirun(prog: &PathBuf, what: &str, iters: u64) -> Duration {
    let out = Command::new("mpirun")
        .args([
            "-np", "2", "--mca", "pml", "ob1", "--mca", "btl", "tcp,self",
        ])
        .arg(prog)
        .arg(what)
        .arg(iters.to_string())
        .arg(BCAST_BYTES.to_string())
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("mpirun");
    let text = String::from_utf8_lossy(&out.stdout);
    let ns: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{what}_ns ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "mpirun printed no {what}_ns: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Duration::from_nanos(ns as u64)
}

fn benches(c: &mut Criterion) {
    let w = cohort::blocking::addprocs(2).expect("addprocs");
    // Two more, bound to a CPU each, as `mpirun` binds its ranks by default.
    let bound = cohort::AddProcs::local(2)
        .bind_cores(true)
        .launch_blocking()
        .expect("addprocs, bound");
    let mpi = mpi_program();

    let mut g = c.benchmark_group("spmd_barrier_2_workers");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("cohort", |b| {
        b.iter_custom(|iters| timed_run(barriers, (iters,), &w))
    });
    g.bench_function("cohort_bound", |b| {
        b.iter_custom(|iters| timed_run(barriers, (iters,), &bound))
    });
    // For reference: one call round trip driver → worker in the same run (a
    // two-process barrier is one message each way).
    g.bench_function("cohort_call_roundtrip_reference", |b| {
        b.iter(|| cohort::blocking::remotecall_fetch(noop, w[0], ()).expect("call"))
    });
    if let Some(p) = &mpi {
        g.bench_function("openmpi_tcp", |b| {
            b.iter_custom(|iters| mpirun(p, "barrier", iters))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("spmd_bcast_64MiB_2_workers");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BCAST_BYTES as u64));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("cohort", |b| {
        b.iter_custom(|iters| timed_run(bcasts, (iters, BCAST_BYTES), &w))
    });
    // Into a buffer each process keeps, as the MPI program does.
    g.bench_function("cohort_bcast_into", |b| {
        b.iter_custom(|iters| timed_run(bcasts_into, (iters, BCAST_BYTES), &w))
    });
    g.bench_function("cohort_bcast_into_bound", |b| {
        b.iter_custom(|iters| timed_run(bcasts_into, (iters, BCAST_BYTES), &bound))
    });
    if let Some(p) = &mpi {
        g.bench_function("openmpi_tcp", |b| {
            b.iter_custom(|iters| mpirun(p, "bcast", iters))
        });
    }
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(spmd_benches, benches);
}
criterion_main!(group::spmd_benches);
