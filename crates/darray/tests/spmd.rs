//! SPMD over real worker processes (this test binary is its own worker executable):
//! every primitive, the seed's ring, FIFO order per sender, `recvfrom_any` fairness,
//! two concurrent contexts, context-local storage and its release, failures (errors
//! naming their pids, aborts, a worker killed mid-run) and the MasterWorker refusal.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cohort::darray::spmd::{self, FailureKind, SpmdError, SpmdOptions, SpmdStats};
use cohort::{AddProcs, Cluster, Pid, RemoteChannel, Topology};

/// The shared workers of the default cluster.
fn workers() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| cohort::blocking::addprocs(2).expect("addprocs"))
        .clone()
}

/// One test at a time on the shared workers: the stats assertions count contexts.
fn serial() -> MutexGuard<'static, ()> {
    static M: Mutex<()> = Mutex::new(());
    M.lock().unwrap_or_else(|e| e.into_inner())
}

fn stats_of(pid: Pid) -> SpmdStats {
    cohort::blocking::remotecall_fetch(spmd::local_stats, pid, ()).expect("stats")
}

/// Waits (polling the stats, bounded) until no SPMD state is left on `pids`.
fn wait_all_released(pids: &[Pid]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<SpmdStats> = pids.iter().map(|&p| stats_of(p)).collect();
        if left.iter().all(|s| *s == SpmdStats::default()) {
            return;
        }
        assert!(Instant::now() < deadline, "SPMD state left: {left:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The seed's `foo_spmd`: each process swaps values with both neighbours `n` times,
/// with a barrier in each round, and returns the sum of what it got.
fn foo_spmd(mine: i64, n: u32) -> Result<i64, SpmdError> {
    let pids = spmd::run_pids()?;
    let i = spmd::rank()?;
    let next = pids[(i + 1) % pids.len()];
    let prev = pids[(i + pids.len() - 1) % pids.len()];
    let mut sum = 0;
    let mut lp = mine;
    for _ in 0..n {
        spmd::sendto(next, &lp, ())?;
        spmd::sendto(prev, &lp, ())?;
        let from_prev: i64 = spmd::recvfrom(prev, ())?;
        let from_next: i64 = spmd::recvfrom(next, ())?;
        spmd::barrier(())?;
        lp = from_prev;
        sum += from_prev + from_next;
    }
    Ok(sum)
}

/// `foo_spmd` computed serially.
fn foo_serial(pids: &[Pid], n: u32) -> Vec<i64> {
    let m = pids.len();
    let mut lp: Vec<i64> = pids.iter().map(|p| *p as i64).collect();
    let mut sum = vec![0; m];
    for _ in 0..n {
        let from_prev: Vec<i64> = (0..m).map(|i| lp[(i + m - 1) % m]).collect();
        let from_next: Vec<i64> = (0..m).map(|i| lp[(i + 1) % m]).collect();
        for i in 0..m {
            sum[i] += from_prev[i] + from_next[i];
        }
        lp = from_prev;
    }
    sum
}

#[test]
fn ring_exchanges_with_both_neighbours() {
    let w = workers();
    let _s = serial();
    // Two workers, as the seed's example; then three processes with the driver.
    for pids in [w.clone(), cohort::procs()] {
        let r = spmd::blocking::spmd_with(
            |n: u32| foo_spmd(cohort::myid() as i64, n),
            (10u32,),
            SpmdOptions::new().pids(&pids),
        )
        .unwrap();
        assert_eq!(r, foo_serial(&pids, 10), "pids {pids:?}");
    }
    wait_all_released(&w);
}

type Collected = (Vec<u32>, u32, Option<Vec<u32>>, Option<u64>, u64, u32);

#[test]
fn collectives_on_driver_and_workers() {
    let w = workers();
    let _s = serial();
    let procs = cohort::procs();
    assert_eq!(procs.len(), 3);
    let root = procs[2];
    let r: Vec<Collected> = spmd::blocking::spmd(
        |root: Pid| -> Result<Collected, SpmdError> {
            let me = cohort::myid();
            spmd::barrier(())?;
            let b = spmd::bcast(if me == root { vec![7, 8, 9] } else { vec![] }, root, "b")?;
            let parts = if me == root {
                spmd::run_pids()?.iter().map(|p| p * 100).collect()
            } else {
                vec![]
            };
            let s = spmd::scatter(parts, root, "s")?;
            let g = spmd::gather(me, root, "g")?;
            let red = spmd::reduce(me as u64, |a, b| a * 10 + b, root, "r")?;
            let all = spmd::allreduce(spmd::rank()? as u64, |a, b| a + b, "a")?;
            // Consecutive collectives with one tag do not mix.
            spmd::barrier(1)?;
            spmd::barrier(1)?;
            let mx = spmd::allreduce(me, u32::max, ())?;
            Ok((b, s, g, red, all, mx))
        },
        (root,),
    )
    .unwrap();
    for (i, (b, s, g, red, all, mx)) in r.iter().enumerate() {
        let me = procs[i];
        assert_eq!(b, &vec![7, 8, 9]);
        assert_eq!(*s, me * 100);
        assert_eq!(*all, 3, "0 + 1 + 2");
        assert_eq!(*mx, *procs.iter().max().unwrap());
        if me == root {
            assert_eq!(g.as_ref().unwrap(), &procs);
            let folded = procs.iter().map(|p| *p as u64).reduce(|a, b| a * 10 + b);
            assert_eq!(*red, folded);
        } else {
            assert_eq!(*g, None);
            assert_eq!(*red, None);
        }
    }
    wait_all_released(&w);
}

#[test]
fn group_collectives_involve_only_the_group() {
    let w = workers();
    let _s = serial();
    type Out = Option<(u32, u32, Option<Vec<u32>>, u32)>;
    let r: Vec<Out> = spmd::blocking::spmd(
        |w0: Pid, w1: Pid| -> Result<Out, SpmdError> {
            let me = cohort::myid();
            // Julia's barrier(; pids=…): the driver (in the run) takes no part.
            if me != w0 && me != w1 {
                assert!(matches!(
                    spmd::group(&[w0, w1])?.barrier(()),
                    Err(SpmdError::NotAMember { .. })
                ));
                return Ok(None);
            }
            let g = spmd::group(&[w1, w0])?;
            g.barrier(())?;
            let b = g.bcast(me * 7, w1, ())?;
            let s = g.scatter(vec![10, 20], w1, ())?;
            let gathered = g.gather(me, w0, ())?;
            let sum = g.allreduce(me, |a, b| a + b, ())?;
            g.barrier(())?;
            Ok(Some((b, s, gathered, sum)))
        },
        (w[0], w[1]),
    )
    .unwrap();
    assert_eq!(r[0], None);
    assert_eq!(
        r[1],
        Some((w[1] * 7, 20, Some(vec![w[1], w[0]]), w[0] + w[1]))
    );
    assert_eq!(r[2], Some((w[1] * 7, 10, None, w[0] + w[1])));
    assert!(matches!(
        spmd::blocking::spmd(
            |x: Pid| -> Result<(), SpmdError> { spmd::group(&[x, 99]).map(drop) },
            (w[0],)
        ),
        Err(SpmdError::Run(_))
    ));
    wait_all_released(&w);
}

#[test]
fn mpi_sum_of_ranks_with_allreduce_and_reduce() {
    let w = workers();
    let _s = serial();
    let r = spmd::blocking::spmd_with(
        || -> Result<(usize, Option<usize>), SpmdError> {
            spmd::barrier(())?;
            let r = spmd::rank()?;
            let root = spmd::run_pids()?[0];
            let sr = spmd::reduce(r, |a, b| a + b, root, ())?;
            Ok((spmd::allreduce(r, |a, b| a + b, ())?, sr))
        },
        (),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    assert_eq!(r, vec![(1, Some(1)), (1, None)]);
}

#[test]
fn large_bcast_arrives_whole() {
    let w = workers();
    let _s = serial();
    let r = spmd::blocking::spmd_with(
        |root: Pid| -> Result<f64, SpmdError> {
            // 20 MB: three fragments of the default 8 MiB.
            let n = 2_500_000;
            let v = if cohort::myid() == root {
                cohort::Bulk((0..n).map(|i| i as f64).collect::<Vec<f64>>())
            } else {
                cohort::Bulk(Vec::new())
            };
            let v = spmd::bcast(v, root, ())?;
            assert_eq!(v.len(), n);
            Ok(v.iter().sum())
        },
        (w[0],),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    let want = (0..2_500_000).map(|i| i as f64).sum::<f64>();
    assert_eq!(r, vec![want, want]);
}

#[test]
fn bcast_into_fills_every_buffer_again_and_again_and_refuses_a_wrong_length() {
    let w = workers();
    let _s = serial();
    let r = spmd::blocking::spmd_with(
        |root: Pid| -> Result<Vec<f64>, SpmdError> {
            let me = cohort::myid();
            let mut sums = Vec::new();
            // Empty, small, and 20 MB (three fragments), each into the same buffers
            // twice; the root changes its buffer between the two.
            for n in [0usize, 3, 2_500_000] {
                let mut buf = vec![-1.0f64; n];
                for round in 0..2 {
                    if me == root {
                        buf.iter_mut()
                            .enumerate()
                            .for_each(|(i, x)| *x = (i + round) as f64);
                    }
                    spmd::bcast_into(&mut buf, root, "into")?;
                    sums.push(buf.iter().sum());
                }
            }
            // The message already here when the receiver asks for it: the root's
            // note comes after it from the same sender, and is waited for first.
            let mut early = vec![0u16; 70_000];
            if me == root {
                early.fill(3);
                spmd::bcast_into(&mut early, root, "early")?;
                for &p in spmd::run_pids()?.iter().filter(|&&p| p != root) {
                    spmd::sendto(p, &(), "sent")?;
                }
            } else {
                spmd::recvfrom::<()>(root, "sent")?;
                spmd::bcast_into(&mut early, root, "early")?;
            }
            assert!(early.iter().all(|&x| x == 3));
            // A buffer of another length than the root's: an error here only.
            let mut short = vec![0u32; if me == root { 10 } else { 9 }];
            match spmd::bcast_into(&mut short, root, "short") {
                Ok(()) => assert_eq!(me, root),
                Err(SpmdError::WrongLength {
                    root: r,
                    sent,
                    buffer,
                }) => {
                    assert_eq!((r, sent, buffer), (root, 40, 36));
                    assert!(short.iter().all(|&x| x == 0), "nothing written");
                }
                Err(e) => return Err(e),
            }
            Ok(sums)
        },
        (w[0],),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    let sum = |n: usize, round: usize| (0..n).map(|i| (i + round) as f64).sum::<f64>();
    let want: Vec<f64> = [0usize, 3, 2_500_000]
        .iter()
        .flat_map(|&n| [sum(n, 0), sum(n, 1)])
        .collect();
    assert_eq!(r, vec![want.clone(), want]);
}

#[test]
fn bcasts_at_the_fragment_size_arrive_whole() {
    let w = workers();
    let _s = serial();
    // The default fragment is 8 MiB; a `Bulk<u8>` of `n` bytes encodes as a 4-byte
    // length and its bytes: 8 MiB − 4 bytes is exactly one fragment, 8 MiB − 3 is one
    // whole fragment and one of a single byte.
    let r = spmd::blocking::spmd_with(
        |root: Pid| -> Result<Vec<u64>, SpmdError> {
            let mut sums = Vec::new();
            for n in [(8 << 20) - 4, (8 << 20) - 3, 0, 1] {
                let v = if cohort::myid() == root {
                    cohort::Bulk((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
                } else {
                    cohort::Bulk(Vec::new())
                };
                let v = spmd::bcast(v, root, ())?;
                assert_eq!(v.len(), n);
                sums.push(v.iter().map(|&b| b as u64).sum());
            }
            Ok(sums)
        },
        (w[0],),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    let want: Vec<u64> = [(8usize << 20) - 4, (8 << 20) - 3, 0, 1]
        .iter()
        .map(|&n| (0..n).map(|i| (i % 251) as u64).sum())
        .collect();
    assert_eq!(r, vec![want.clone(), want]);
}

#[test]
fn large_messages_of_several_sizes_in_a_row_arrive_whole() {
    let w = workers();
    let _s = serial();
    // Each process reuses the memory of the last large message for the next one
    // (larger, smaller, then a small one): every value must still arrive as sent.
    let sizes = [12usize << 20, 20 << 20, 5 << 20, 100];
    let r = spmd::blocking::spmd_with(
        |a: Pid, b: Pid| -> Result<Vec<u64>, SpmdError> {
            let sizes = [12usize << 20, 20 << 20, 5 << 20, 100];
            let mut sums = Vec::new();
            for (k, &n) in sizes.iter().enumerate() {
                let fill = |i: usize| ((i + k) % 253) as u8;
                if cohort::myid() == a {
                    spmd::sendto(b, &cohort::Bulk((0..n).map(fill).collect::<Vec<u8>>()), ())?;
                    let back: cohort::Bulk<u8> = spmd::recvfrom(b, ())?;
                    sums.push(back.iter().map(|&x| x as u64).sum());
                } else {
                    let got: cohort::Bulk<u8> = spmd::recvfrom(a, ())?;
                    assert_eq!(got.len(), n);
                    assert!(got.iter().enumerate().all(|(i, &x)| x == fill(i)));
                    if k == 0 {
                        // Reassembled from two fragments, then given back.
                        let spare = spmd::local_stats().spare_bytes;
                        assert!(spare >= 12 << 20, "spare {spare}");
                    }
                    spmd::sendto(a, &got, ())?;
                    sums.push(got.iter().map(|&x| x as u64).sum());
                }
            }
            Ok(sums)
        },
        (w[0], w[1]),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    let want: Vec<u64> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| ((i + k) % 253) as u64).sum())
        .collect();
    assert_eq!(r, vec![want.clone(), want]);
    // Nothing is kept after the run, the spare memory included.
    wait_all_released(&w);
}

#[test]
fn messages_from_one_sender_arrive_in_order_per_tag() {
    let w = workers();
    let _s = serial();
    const N: u32 = 3000;
    let r = spmd::blocking::spmd_with(
        |a: Pid, b: Pid| -> Result<bool, SpmdError> {
            let me = cohort::myid();
            if me == a {
                // Small messages in a burst: the receiver's call runners would run
                // their deliveries out of order without the sequence numbers.
                for i in 0..N {
                    spmd::sendto(b, &i, if i % 3 == 0 { "x" } else { "y" })?;
                }
                Ok(true)
            } else {
                // Take all of "y" first, then "x": each in the order sent.
                let mut ok = true;
                for want in (0..N).filter(|i| i % 3 != 0) {
                    ok &= spmd::recvfrom::<u32>(a, "y")? == want;
                }
                for want in (0..N).filter(|i| i % 3 == 0) {
                    ok &= spmd::recvfrom::<u32>(a, "x")? == want;
                }
                Ok(ok)
            }
        },
        (w[0], w[1]),
        SpmdOptions::new().pids(&w),
    )
    .unwrap();
    assert_eq!(r, vec![true, true]);
    wait_all_released(&w);
}

#[test]
fn recvfrom_any_serves_senders_in_turn() {
    let w = workers();
    let _s = serial();
    const N: usize = 50;
    let receiver = cohort::myid();
    let r = spmd::blocking::spmd(
        |receiver: Pid| -> Result<Vec<Pid>, SpmdError> {
            let me = cohort::myid();
            if me != receiver {
                for i in 0..N {
                    spmd::sendto(receiver, &i, "work")?;
                }
                spmd::sendto(receiver, &(), "done")?;
                return Ok(vec![]);
            }
            // Once "done" is taken from a sender, everything it sent before is here
            // (one sender's messages are taken in order across tags).
            for p in spmd::run_pids()? {
                if p != me {
                    spmd::recvfrom::<()>(p, "done")?;
                }
            }
            let mut order = Vec::new();
            for _ in 0..2 * N {
                let (from, _i): (Pid, usize) = spmd::recvfrom_any("work")?;
                order.push(from);
            }
            Ok(order)
        },
        (receiver,),
    )
    .unwrap();
    let order = &r[0];
    assert_eq!(order.len(), 2 * N);
    // Both senders had all their messages waiting: they are served alternately.
    for pair in order.chunks(2) {
        let mut p = pair.to_vec();
        p.sort_unstable();
        assert_eq!(p, w, "order {order:?}");
    }
}

#[test]
fn concurrent_runs_in_different_contexts_never_mix() {
    let w = workers();
    let _s = serial();
    let ctx_a = spmd::context(&w).unwrap();
    // More runs at once than cohort has runtime threads: every part blocks in its
    // waits on its own thread, none on a call runner.
    let runs: Vec<std::thread::JoinHandle<Vec<bool>>> = (0..10u32)
        .map(|label| {
            let w = w.clone();
            let ctx = ctx_a.clone();
            std::thread::spawn(move || {
                let f = |label: u32| -> Result<bool, SpmdError> {
                    let pids = spmd::run_pids()?;
                    let me = cohort::myid();
                    let other = if me == pids[0] { pids[1] } else { pids[0] };
                    let mut ok = true;
                    for i in 0..100u32 {
                        // Same tag in every run: only the context tells them apart.
                        spmd::sendto(other, &(label, i), 0)?;
                        ok &= spmd::recvfrom::<(u32, u32)>(other, 0)? == (label, i);
                        if i % 50 == 0 {
                            spmd::barrier(())?;
                        }
                    }
                    Ok(ok)
                };
                // One run in an explicit context, the others in fresh ones, all at once.
                let opts = if label == 0 {
                    SpmdOptions::new().context(&ctx)
                } else {
                    SpmdOptions::new().pids(&w)
                };
                spmd::blocking::spmd_with(f, (label,), opts).unwrap()
            })
        })
        .collect();
    for r in runs {
        assert_eq!(r.join().unwrap(), vec![true, true]);
    }
    spmd::blocking::close(&ctx_a).unwrap();
    wait_all_released(&w);
}

#[test]
fn context_local_storage_persists_until_close() {
    let w = workers();
    let _s = serial();
    let ctx = spmd::context(&w).unwrap();
    let opts = SpmdOptions::new().context(&ctx);
    let put = |x: u64| -> Result<(), SpmdError> {
        spmd::context_local_storage()?.insert("x", x + cohort::myid() as u64);
        Ok(())
    };
    spmd::blocking::spmd_with(put, (1000u64,), opts.clone()).unwrap();
    for &p in &w {
        let s = stats_of(p);
        assert_eq!(
            (s.contexts, s.stored_values, s.runs),
            (1, 1, 0),
            "{p}: {s:?}"
        );
    }
    let get = || -> Result<Option<u64>, SpmdError> { Ok(spmd::context_local_storage()?.get("x")) };
    let got = spmd::blocking::spmd_with(get, (), opts.clone()).unwrap();
    assert_eq!(
        got,
        w.iter().map(|p| Some(1000 + *p as u64)).collect::<Vec<_>>()
    );
    // A run in a fresh context sees nothing of it.
    let fresh = spmd::blocking::spmd_with(get, (), SpmdOptions::new().pids(&w)).unwrap();
    assert_eq!(fresh, vec![None, None]);
    spmd::blocking::close(&ctx).unwrap();
    for &p in &w {
        assert_eq!(stats_of(p), SpmdStats::default(), "{p}");
    }
    assert_eq!(
        spmd::blocking::spmd_with(get, (), opts).unwrap_err(),
        SpmdError::ContextClosed
    );
    // Dropping the last handle releases it too.
    let ctx = spmd::context(&w).unwrap();
    spmd::blocking::spmd_with(put, (1u64,), SpmdOptions::new().context(&ctx)).unwrap();
    drop(ctx);
    wait_all_released(&w);
}

#[test]
fn bad_options_and_calls_outside_a_run_are_typed_errors() {
    let w = workers();
    let _s = serial();
    let f = || -> Result<(), SpmdError> { Ok(()) };
    assert_eq!(
        spmd::blocking::spmd_with(f, (), SpmdOptions::new().pids(&[])).unwrap_err(),
        SpmdError::NoProcesses
    );
    assert_eq!(
        spmd::blocking::spmd_with(f, (), SpmdOptions::new().pids(&[w[0], w[0]])).unwrap_err(),
        SpmdError::DuplicatePid { pid: w[0] }
    );
    assert!(matches!(
        spmd::blocking::spmd_with(f, (), SpmdOptions::new().pids(&[99])).unwrap_err(),
        SpmdError::NoSuchProcess { pid: 99, .. }
    ));
    let ctx = spmd::context(&w).unwrap();
    assert!(matches!(
        spmd::blocking::spmd_with(f, (), SpmdOptions::new().pids(&[w[0]]).context(&ctx)),
        Err(SpmdError::ContextMismatch { .. })
    ));
    spmd::blocking::close(&ctx).unwrap();
    assert!(matches!(
        spmd::sendto(w[0], &1u8, ()),
        Err(SpmdError::NotInRun { what: "sendto" })
    ));
    assert!(matches!(spmd::barrier(()), Err(SpmdError::NotInRun { .. })));
    // A pid outside the run, and a scatter with the wrong number of values.
    let r = spmd::blocking::spmd_with(
        |outside: Pid| -> Result<(), SpmdError> {
            match spmd::sendto(outside, &1u8, ()) {
                Err(SpmdError::NotAMember { pid, .. }) if pid == outside => {}
                other => panic!("expected NotAMember, got {other:?}"),
            }
            spmd::scatter(vec![1u8; 5], cohort::myid(), ()).map(drop)
        },
        (w[1],),
        SpmdOptions::new().pids(&[w[0]]),
    )
    .unwrap_err();
    let SpmdError::Run(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.pids(), vec![w[0]]);
    assert!(
        matches!(&f.failures[0].kind, FailureKind::Returned(m) if m.contains("one value per process")),
        "{f}"
    );
    wait_all_released(&w);
}

#[test]
fn every_failure_comes_back_naming_its_pid_and_waiters_are_aborted() {
    let w = workers();
    let _s = serial();
    // A panic and an error on the workers; the driver's part succeeds.
    let r = spmd::blocking::spmd(
        |w0: Pid| -> Result<(), String> {
            let me = cohort::myid();
            if me == w0 {
                panic!("worker {me} panics");
            } else if me != 1 {
                return Err(format!("worker {me} fails"));
            }
            Ok(())
        },
        (w[0],),
    )
    .unwrap_err();
    let SpmdError::Run(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.pids(), w);
    assert!(
        matches!(&f.failures[0].kind, FailureKind::Panicked(m) if m.contains("panics")),
        "{f}"
    );
    let fails = format!("worker {} fails", w[1]);
    assert!(
        matches!(&f.failures[1].kind, FailureKind::Returned(m) if m.contains(&fails)),
        "{f}"
    );
    // One part fails at once; the other waits for it forever: it is aborted.
    let r = spmd::blocking::spmd_with(
        |w0: Pid| -> Result<(), SpmdError> {
            if cohort::myid() == w0 {
                return Err(SpmdError::WrongCount {
                    expected: 0,
                    got: 1,
                });
            }
            spmd::recvfrom::<u8>(w0, "never")?;
            Ok(())
        },
        (w[0],),
        SpmdOptions::new().pids(&w),
    )
    .unwrap_err();
    let SpmdError::Run(f) = r else {
        panic!("{r:?}")
    };
    assert_eq!(f.pids(), w);
    assert!(
        matches!(&f.failures[1].kind, FailureKind::Returned(m) if m.contains("aborted")),
        "{f}"
    );
    wait_all_released(&w);
}

#[test]
fn a_worker_killed_mid_run_fails_the_run_naming_it() {
    let _s = serial();
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(2)).unwrap();
    let victim = w[1];
    let os_pid: u32 = c
        .remotecall_fetch_blocking(cohort::builtins::getpid, victim, ())
        .unwrap();
    let started = c.install(|| RemoteChannel::<Pid>::new_blocking(1)).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let driver = {
        let c = c.clone();
        let started = started.clone();
        let w = w.clone();
        std::thread::spawn(move || {
            let r = c.install(|| {
                spmd::blocking::spmd_with(
                    |started: RemoteChannel<Pid>| -> Result<(), SpmdError> {
                        let pids = spmd::run_pids()?;
                        let me = cohort::myid();
                        let other = if me == pids[0] { pids[1] } else { pids[0] };
                        started
                            .put_blocking(me)
                            .map_err(|e| SpmdError::Serialization(e.to_string()))?;
                        // Nobody sends this: both wait until the victim dies.
                        spmd::recvfrom::<u8>(other, ())?;
                        Ok(())
                    },
                    (started,),
                    SpmdOptions::new().pids(&w),
                )
            });
            let _ = done_tx.send(r);
        })
    };
    // Both parts are running (and about to wait) before the kill.
    let mut up = vec![
        started.take_blocking().unwrap(),
        started.take_blocking().unwrap(),
    ];
    up.sort_unstable();
    assert_eq!(up, w);
    std::process::Command::new("kill")
        .args(["-9", &os_pid.to_string()])
        .status()
        .unwrap();
    // A guard against a hang, not a timing assertion: the run must end.
    let r = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the run ended after the kill");
    driver.join().unwrap();
    let SpmdError::Run(f) = r.unwrap_err() else {
        panic!("not a run failure")
    };
    let dead = f
        .failures
        .iter()
        .find(|x| x.pid == victim)
        .expect("the victim is named");
    assert!(matches!(dead.kind, FailureKind::Exited(_)), "{f}");
    let waiter = f
        .failures
        .iter()
        .find(|x| x.pid == w[0])
        .expect("the waiter failed too");
    let named = format!("process {victim}");
    assert!(
        matches!(&waiter.kind, FailureKind::Returned(m) if m.contains(&named) || m.contains("aborted")),
        "{f}"
    );
}

#[test]
fn master_worker_topology_is_refused() {
    let _s = serial();
    let c = Cluster::new();
    let w = c
        .launch_blocking(AddProcs::local(2).topology(Topology::MasterWorker))
        .unwrap();
    let r = c.install(|| {
        spmd::blocking::spmd_with(
            || -> Result<(), SpmdError> { spmd::barrier(()) },
            (),
            SpmdOptions::new().pids(&w),
        )
    });
    assert_eq!(
        r.unwrap_err(),
        SpmdError::TopologyForbids {
            topology: Topology::MasterWorker
        }
    );
    // The driver and one worker need no worker-to-worker link: that works.
    let r = c.install(|| {
        spmd::blocking::spmd_with(
            || -> Result<usize, SpmdError> {
                spmd::barrier(())?;
                spmd::allreduce(1usize, |a, b| a + b, ())
            },
            (),
            SpmdOptions::new().pids(&[1, w[0]]),
        )
    });
    assert_eq!(r.unwrap(), vec![2, 2]);
}
