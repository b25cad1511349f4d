//! The soak test (issue 13, point 7): a mixed workload for a set time over real
//! worker processes, with faults injected as it runs, and a check at the end that
//! every result was correct and that nothing was left behind.
//!
//! Each round runs, on a cluster of three workers (heartbeats every 200 ms, timeout
//! 2 s):
//!
//! - remote calls (blocking, and 200 `remotecall`s fetched afterwards) whose results
//!   are checked against the same function run here;
//! - a 1 MiB `Bulk` argument summed on a worker;
//! - a `RemoteChannel` on one worker filled by another and drained here, in order;
//! - a `pmap` of 300 items with retries over the default pool;
//! - a `SharedArray` filled by its participants and summed on a worker, then dropped;
//! - a `DArray` distributed over the workers, an element-wise expression evaluated
//!   where the chunks live, summed and gathered, then dropped;
//! - an SPMD run on every process: a barrier, an `allreduce` of the ranks and a ring
//!   of `sendto`/`recvfrom`;
//!
//! and every few rounds one fault: a worker is added and an old one removed; a
//! worker is killed (`SIGKILL`) while a `pmap` runs (its items are retried); a worker
//! is stopped (`SIGSTOP`) for less than the heartbeat timeout and resumed (it must
//! stay and answer), or for longer (the heartbeats declare it, the master kills it).
//! Killed and declared workers are replaced. One worker, the *anchor*, is never
//! touched: its memory, descriptors and threads at the end are compared with its
//! own after the first round, as are the driver's, and `/dev/shm` is checked for
//! segments left behind; every worker process that left must have exited.
//!
//! ```sh
//! cargo xtask soak --duration 10m     # release build; also: cargo run --release \
//!                                     #   -p cohort-examples --example soak -- 600
//! ```
//!
//! Exits with a failure status (after printing what differed) if anything is wrong.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cohort::darray::spmd::{self, SpmdError};
use cohort::pool::PmapOptions;
use cohort::prelude::*;
use cohort::shared::SharedArray;
use cohort::{blocking, Bulk, CallError, Heartbeat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a process holds: resident memory (after returning free heap pages), open
/// descriptors other than sockets, sockets (its connections, which vary with the
/// peers it talks to) and threads.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Probe {
    rss_kib: u64,
    fds: usize,
    /// The listeners and the connections' accepting ends: TCP sockets, and
    /// Unix-domain sockets named `@cohort-…` (the same-host socket and the
    /// connections it accepted).
    tcp: usize,
    /// Other sockets: Unix-domain ones the runtime and the launcher made, and the
    /// unnamed connecting end of each same-host connection this process opened.
    sockets: usize,
    threads: usize,
}

/// The inodes of this process's network namespace's TCP sockets, and of its
/// Unix-domain sockets named `@cohort-…` (a worker's same-host socket, and what it
/// accepted).
fn tcp_inodes() -> std::collections::HashMap<String, String> {
    let mut tcp = std::collections::HashMap::new();
    for line in std::fs::read_to_string("/proc/self/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
    {
        // Num RefCount Protocol Flags Type St Inode Path
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 7 && f[7].starts_with("@cohort-") {
            tcp.insert(f[6].to_string(), format!("unix {} state {}", f[7], f[5]));
        }
    }
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 {
                // local, remote, state (hex: 01 established, 0A listen, 06 time-wait…)
                tcp.insert(
                    f[9].to_string(),
                    format!("tcp {} -> {} state {}", f[1], f[2], f[3]),
                );
            }
        }
    }
    tcp
}

fn status_field(name: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cohort::remote]
fn probe() -> Probe {
    // SAFETY: malloc_trim only hands free pages of glibc's heap back to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
    let (mut fds, mut tcp, mut sockets) = (0, 0, 0);
    let tcp_inodes = tcp_inodes();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        match std::fs::read_link(e.path()) {
            Ok(l) if l.to_string_lossy().starts_with("socket:") => {
                let l = l.to_string_lossy().into_owned();
                let inode = l.trim_start_matches("socket:[").trim_end_matches(']');
                if tcp_inodes.contains_key(inode) {
                    tcp += 1;
                } else {
                    sockets += 1;
                }
            }
            Ok(_) => fds += 1,
            // The directory's own descriptor, closed by now.
            Err(_) => {}
        }
    }
    Probe {
        rss_kib: status_field("VmRSS:"),
        fds,
        tcp,
        sockets,
        threads: status_field("Threads:") as usize,
    }
}

/// This process's sockets, one line each (the inode, and for a TCP socket its
/// endpoints and state), then its threads by name: for a failure's report.
#[cohort::remote]
fn socket_report() -> Vec<String> {
    let tcp = tcp_inodes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(l) = std::fs::read_link(e.path()) {
            let l = l.to_string_lossy().into_owned();
            if let Some(inode) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                let what = tcp
                    .get(inode)
                    .cloned()
                    .unwrap_or_else(|| "not TCP, not a named cohort socket".into());
                out.push(format!("fd {:?} inode {inode}: {what}", e.file_name()));
            }
        }
    }
    let mut names = std::collections::BTreeMap::<String, usize>::new();
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        *names.entry(name.trim().to_string()).or_default() += 1;
    }
    out.push(format!("threads {names:?}"));
    out
}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

#[cohort::remote]
fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xC0_40_27
}

#[cohort::remote]
fn bulk_sum(b: Bulk<u64>) -> u64 {
    b.0.iter().fold(0u64, |a, x| a.wrapping_add(*x))
}

#[cohort::remote]
fn produce(ch: RemoteChannel<u64>, from: u64, n: u64) {
    for i in from..from + n {
        ch.put_blocking(i).expect("the channel takes the value");
    }
}

#[cohort::remote]
fn shared_sum(s: SharedArray<f64, ndarray::Ix1>) -> f64 {
    s.view().as_linear().iter().sum()
}

/// `/dev/shm` entries cohort made (SharedArray segments).
fn shm_entries() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cohort"))
                .collect()
        })
        .unwrap_or_default()
}

fn exited(os: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{os}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

fn signal(sig: i32, os: u32) {
    // SAFETY: sending a signal to a process this program started.
    let rc = unsafe { libc::kill(os as i32, sig) };
    assert_eq!(rc, 0, "kill({os}, {sig})");
}

/// Waits (polling) until `f` holds, failing after `secs`.
fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cohort::remote]
fn darray_chunks() -> usize {
    cohort::darray::local_chunks().chunks
}

#[cohort::remote]
fn spmd_state() -> usize {
    let s = spmd::local_stats();
    s.contexts + s.runs + s.queued_messages + s.stored_values
}

/// One rank's part of the SPMD round: the sum of the ranks on every rank, and the
/// rank that came round the ring.
fn ring_and_sum(seed: u64) -> Result<(usize, u64), SpmdError> {
    spmd::barrier(())?;
    let pids = spmd::run_pids()?;
    let r = spmd::rank()?;
    let n = pids.len();
    let total = spmd::allreduce(r, |a, b| a + b, ())?;
    spmd::sendto(pids[(r + 1) % n], &(seed + r as u64), "ring")?;
    let got: u64 = spmd::recvfrom(pids[(r + n - 1) % n], "ring")?;
    Ok((total, got))
}

#[derive(Debug, Default)]
struct Counts {
    rounds: u64,
    calls: u64,
    pmap_items: u64,
    channel_items: u64,
    shared_arrays: u64,
    darrays: u64,
    spmd_runs: u64,
    added: u64,
    removed: u64,
    killed: u64,
    stopped_short: u64,
    stopped_long: u64,
}

struct Soak {
    rng: StdRng,
    anchor: Pid,
    /// OS pids of every worker started, to check that those that left have exited.
    os: Vec<(Pid, u32)>,
    counts: Counts,
}

impl Soak {
    fn others(&self) -> Vec<Pid> {
        workers()
            .into_iter()
            .filter(|&w| w != self.anchor)
            .collect()
    }

    fn pick(&mut self) -> Pid {
        let ws = workers();
        ws[self.rng.gen_range(0..ws.len())]
    }

    fn add(&mut self, n: usize) {
        for w in blocking::addprocs(n).expect("addprocs") {
            let os = blocking::remotecall_fetch(os_pid, w, ()).expect("a new worker answers");
            self.os.push((w, os));
            self.counts.added += 1;
        }
    }

    fn os_of(&self, w: Pid) -> u32 {
        self.os
            .iter()
            .find(|(p, _)| *p == w)
            .expect("a worker we started")
            .1
    }

    fn calls(&mut self) {
        for _ in 0..50 {
            let w = self.pick();
            let x: u64 = self.rng.gen();
            assert_eq!(blocking::remotecall_fetch(mix, w, (x,)).unwrap(), mix(x));
        }
        let xs: Vec<u64> = (0..200).map(|_| self.rng.gen()).collect();
        let ws = workers();
        let fs: Vec<_> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| remotecall(mix, ws[i % ws.len()], (x,)))
            .collect();
        for (f, x) in fs.iter().zip(&xs) {
            assert_eq!(f.fetch_blocking().unwrap(), mix(*x));
        }
        let v: Vec<u64> = (0..(1u64 << 17)).map(|_| self.rng.gen()).collect();
        let want = v.iter().fold(0u64, |a, x| a.wrapping_add(*x));
        let w = self.pick();
        assert_eq!(
            blocking::remotecall_fetch(bulk_sum, w, (Bulk(v),)).unwrap(),
            want
        );
        self.counts.calls += 251;
    }

    fn channel(&mut self) {
        let owner = self.pick();
        let producer = self.pick();
        let ch = RemoteChannel::<u64>::with_capacity_blocking(owner, 16).unwrap();
        let from: u64 = self.rng.gen_range(0..1 << 40);
        let n = 500;
        let done = remotecall(produce, producer, (ch.clone(), from, n));
        for i in from..from + n {
            assert_eq!(ch.take_blocking().unwrap(), i, "in order");
        }
        done.wait_blocking().unwrap();
        self.counts.channel_items += n;
    }

    fn pmap(&mut self) -> Vec<u64> {
        let items: Vec<u64> = (0..300).map(|_| self.rng.gen()).collect();
        let opts = PmapOptions::new()
            .retry_delays(vec![Duration::ZERO; 5])
            .retry_check(|e| matches!(e, CallError::WorkerExited { .. }));
        let out = blocking::pmap_with(mix, items.clone(), opts).expect("pmap");
        assert_eq!(out, items.iter().map(|&x| mix(x)).collect::<Vec<_>>());
        self.counts.pmap_items += items.len() as u64;
        out
    }

    fn shared(&mut self) {
        let n = 100_000;
        let s = SharedArray::<f64, ndarray::Ix1>::builder(n)
            .init(|s: SharedArray<f64, ndarray::Ix1>| {
                let mine = s.localindices();
                let start = mine.start;
                let mut v = s.view_mut();
                for (k, x) in v.as_linear_mut()[mine].iter_mut().enumerate() {
                    *x = (start + k) as f64;
                }
            })
            .build()
            .expect("a SharedArray");
        let w = self.pick();
        let want = (n * (n - 1) / 2) as f64;
        assert_eq!(
            blocking::remotecall_fetch(shared_sum, w, (s,)).unwrap(),
            want
        );
        self.counts.shared_arrays += 1;
    }

    fn darray(&mut self) {
        let n = 10_000 + self.rng.gen_range(0..1000);
        let a = ndarray::Array1::from_iter((0..n).map(|i| i as f64));
        let da = cohort::darray::blocking::distribute(&a).expect("distribute");
        let db = (2.0 * &da + 1.0).eval_blocking().expect("an expression");
        let want: f64 = a.iter().map(|x| 2.0 * x + 1.0).sum();
        let got = db.sum_blocking().expect("sum");
        assert!((got - want).abs() <= want * 1e-12, "{got} != {want}");
        assert_eq!(
            db.gather_blocking().expect("gather"),
            a.mapv(|x| 2.0 * x + 1.0)
        );
        self.counts.darrays += 2;
    }

    fn spmd(&mut self) {
        let seed: u64 = self.rng.gen_range(0..1 << 40);
        let out = spmd::blocking::spmd(ring_and_sum, (seed,)).expect("an SPMD run");
        let n = out.len();
        for (r, &(total, got)) in out.iter().enumerate() {
            assert_eq!(total, n * (n - 1) / 2);
            assert_eq!(got, seed + ((r + n - 1) % n) as u64);
        }
        self.counts.spmd_runs += 1;
    }

    /// A worker other than the anchor is added, and the oldest removed.
    fn churn(&mut self) {
        self.add(1);
        let old = self.others()[0];
        blocking::rmprocs(&[old], Some(Duration::from_secs(20))).expect("rmprocs");
        self.counts.removed += 1;
    }

    /// A worker is killed while a `pmap` runs; it is replaced.
    fn kill_during_pmap(&mut self) {
        let victim = self.others()[self.rng.gen_range(0..self.others().len())];
        let os = self.os_of(victim);
        let killer = std::thread::spawn(move || signal(libc::SIGKILL, os));
        self.pmap();
        killer.join().unwrap();
        until("the killed worker to leave", 30, || {
            !workers().contains(&victim)
        });
        self.counts.killed += 1;
        self.add(1);
    }

    /// A worker is stopped for less than the heartbeat timeout, or for longer.
    fn stop(&mut self, long: bool) {
        let victim = self.others()[self.rng.gen_range(0..self.others().len())];
        let os = self.os_of(victim);
        signal(libc::SIGSTOP, os);
        if long {
            // Its calls and pmap items meanwhile go elsewhere once it is declared.
            self.pmap();
            until("the stopped worker to be declared", 60, || {
                !workers().contains(&victim)
            });
            until("the declared worker to be killed", 60, || exited(os));
            self.counts.stopped_long += 1;
            self.add(1);
        } else {
            std::thread::sleep(Duration::from_millis(500));
            signal(libc::SIGCONT, os);
            assert!(
                workers().contains(&victim),
                "a short stop declared {victim}"
            );
            assert_eq!(blocking::remotecall_fetch(os_pid, victim, ()).unwrap(), os);
            self.counts.stopped_short += 1;
        }
    }
}

/// Whether `end` is back near `base`, with `peers` other processes in the cluster.
fn near(what: &str, base: Probe, end: Probe, peers: usize) -> Vec<String> {
    let mut bad = Vec::new();
    if end.rss_kib > base.rss_kib + base.rss_kib / 10 + 16 * 1024 {
        bad.push(format!(
            "{what}: RSS {} KiB, baseline {} KiB",
            end.rss_kib, base.rss_kib
        ));
    }
    if end.fds > base.fds {
        bad.push(format!(
            "{what}: {} descriptors, baseline {}",
            end.fds, base.fds
        ));
    }
    // Two listeners (TCP and same-host), and at most two connections (one made
    // each way) per peer.
    if end.tcp > 2 + 2 * peers {
        bad.push(format!(
            "{what}: {} TCP and same-host sockets for {peers} peers",
            end.tcp
        ));
    }
    // A same-host connection this process opened has an unnamed end here: at most
    // one per peer above the baseline.
    if end.sockets > base.sockets + peers {
        bad.push(format!(
            "{what}: {} other sockets, baseline {}",
            end.sockets, base.sockets
        ));
    }
    if end.threads > base.threads + 4 {
        bad.push(format!(
            "{what}: {} threads, baseline {}",
            end.threads, base.threads
        ));
    }
    bad
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(60);
    let seed: u64 = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1);
    let duration = Duration::from_secs(secs);
    Cluster::global().set_heartbeat(Some(Heartbeat::new(
        Duration::from_millis(200),
        Duration::from_secs(2),
    )?))?;
    let shm_before = shm_entries();
    let mut s = Soak {
        rng: StdRng::seed_from_u64(seed),
        anchor: 0,
        os: Vec::new(),
        counts: Counts::default(),
    };
    s.add(3);
    s.anchor = workers()[0];
    // One round of everything, then the baselines.
    s.calls();
    s.channel();
    s.pmap();
    s.shared();
    s.darray();
    s.spmd();
    let base_driver = probe();
    let base_anchor = blocking::remotecall_fetch(probe, s.anchor, ())?;
    let start = Instant::now();
    let mut last_report = Instant::now();
    while start.elapsed() < duration {
        s.counts.rounds += 1;
        let r = s.counts.rounds;
        s.calls();
        s.channel();
        s.pmap();
        s.shared();
        s.darray();
        s.spmd();
        match r % 12 {
            3 => s.churn(),
            6 => s.kill_during_pmap(),
            8 => s.stop(false),
            11 => s.stop(true),
            _ => {}
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            println!(
                "soak: {:>5.0} s, {:?}, workers {:?}",
                start.elapsed().as_secs_f64(),
                s.counts,
                workers()
            );
        }
    }
    // Back to three workers (the anchor and two others), as at the baselines.
    let others = s.others();
    if others.len() > 2 {
        blocking::rmprocs(&others[2..], Some(Duration::from_secs(20)))?;
    }
    while workers().len() < 3 {
        s.add(1);
    }
    // Idle threads of the runtimes go after 2 s (later on a loaded machine: up to 30 s
    // is allowed, as a leak stays); the heaps are trimmed by `probe`.
    let mut bad = Vec::new();
    for _ in 0..150 {
        bad = near("driver", base_driver, probe(), 3);
        bad.extend(near(
            &format!("anchor worker {}", s.anchor),
            base_anchor,
            blocking::remotecall_fetch(probe, s.anchor, ())?,
            3,
        ));
        if bad.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if bad
        .iter()
        .any(|b| b.contains("sockets") || b.contains("threads"))
    {
        eprintln!("soak: processes {:?}, anchor {}", procs(), s.anchor);
        for w in workers() {
            for l in blocking::remotecall_fetch(socket_report, w, ())? {
                eprintln!("soak: worker {w} {l}");
            }
        }
        for l in socket_report() {
            eprintln!("soak: driver {l}");
        }
    }
    // Nothing of the DArrays and SPMD runs stays on any process.
    for p in procs() {
        let chunks = blocking::remotecall_fetch(darray_chunks, p, ())?;
        let state = blocking::remotecall_fetch(spmd_state, p, ())?;
        if chunks != 0 || state != 0 {
            bad.push(format!(
                "process {p}: {chunks} DArray chunks, {state} SPMD contexts/runs/messages/values left"
            ));
        }
    }
    let end_driver = probe();
    let end_anchor = blocking::remotecall_fetch(probe, s.anchor, ())?;
    blocking::rmprocs(&workers(), Some(Duration::from_secs(20)))?;
    for &(w, os) in &s.os {
        until(&format!("worker {w} (OS pid {os}) to exit"), 30, || {
            exited(os)
        });
    }
    let shm_after = shm_entries();
    if shm_after != shm_before {
        bad.push(format!(
            "/dev/shm: {:?} before, {:?} after",
            shm_before, shm_after
        ));
    }
    println!("soak: {secs} s, seed {seed}: {:?}", s.counts);
    println!(
        "soak: driver   {:?} -> {:?}\nsoak: anchor   {:?} -> {:?}\nsoak: /dev/shm {} -> {} cohort entries; {} worker processes, all exited",
        base_driver,
        end_driver,
        base_anchor,
        end_anchor,
        shm_before.len(),
        shm_after.len(),
        s.os.len()
    );
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("soak: FAILED: {b}");
        }
        std::process::exit(1);
    }
    println!("soak: ok");
    Ok(())
}
