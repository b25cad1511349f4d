//! Peak memory of a large round trip (issue 13 point 5): a 512 MiB argument sent to a
//! worker and returned by it costs each side at most one copy beyond the value itself
//! — so a worker with 2 GB of memory can take and return a 512 MiB array.
//!
//! And a 256 MiB `SharedBytes` argument costs the sender no copy at all: the message
//! is written from the caller's buffer.
//!
//! Its own test binary, with one test: it reads this process's peak RSS (`VmHWM`),
//! which no other test may raise meanwhile.

use cohort::prelude::*;
use cohort::Bulk;

const MIB: u64 = 1 << 20;

/// This process's peak resident memory, in bytes.
fn hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[cohort::remote]
fn worker_hwm() -> u64 {
    hwm()
}

#[cohort::remote]
fn echo(b: Bulk<f64>) -> Bulk<f64> {
    b
}

#[cohort::remote]
fn length(b: cohort::SharedBytes) -> usize {
    b.len()
}

#[test]
fn a_512_mib_round_trip_costs_each_side_one_copy_at_most() {
    let c = Cluster::new();
    let w = c.addprocs_blocking(1).unwrap()[0];
    let n = 64 << 20; // 512 MiB of f64
    let size = n as u64 * 8;
    // First (the peak only grows): a shared buffer spliced into its message.
    let shared = cohort::bytes::Bytes::from(vec![3u8; 256 << 20]);
    let base_s = hwm();
    let len = c
        .remotecall_fetch_blocking(length, w, (cohort::SharedBytes(shared.clone()),))
        .unwrap();
    assert_eq!(len, 256 << 20);
    let peak_s = hwm();
    eprintln!(
        "driver: with the shared buffer {} MiB, peak {} MiB",
        base_s / MIB,
        peak_s / MIB
    );
    assert!(
        peak_s <= base_s + 32 * MIB,
        "driver peak {} MiB: the 256 MiB shared buffer was copied (base {} MiB)",
        peak_s / MIB,
        base_s / MIB
    );
    drop(shared);
    let base_w = c.remotecall_fetch_blocking(worker_hwm, w, ()).unwrap();
    let data = Bulk(vec![1.5f64; n]);
    // The input is resident now (every page written).
    let base_d = hwm();
    let back = c.remotecall_fetch_blocking(echo, w, (data,)).unwrap();
    let peak_d = hwm();
    assert_eq!(back.0.len(), n);
    assert!(back.0.iter().all(|&x| x == 1.5));
    let peak_w = c.remotecall_fetch_blocking(worker_hwm, w, ()).unwrap();
    eprintln!(
        "driver: with the input {} MiB, peak {} MiB; worker: base {} MiB, peak {} MiB",
        base_d / MIB,
        peak_d / MIB,
        base_w / MIB,
        peak_w / MIB
    );
    // The driver holds the input (then the result) and one encoded or received copy.
    let slack = 64 * MIB;
    assert!(
        peak_d <= base_d + size + slack,
        "driver peak {} MiB: more than one copy beyond the {} MiB value",
        peak_d / MIB,
        size / MIB
    );
    // The worker holds the argument (which it returns) and one received or encoded
    // copy.
    assert!(
        peak_w <= base_w + 2 * size + slack,
        "worker peak {} MiB: more than one copy beyond the {} MiB value",
        peak_w / MIB,
        size / MIB
    );
    c.rmprocs_blocking(&[w], None).unwrap();
}
