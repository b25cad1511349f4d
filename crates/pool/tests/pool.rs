//! Pools, pmap, distributed loops and everywhere against real worker processes (this
//! test binary is its own worker executable).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cohort::{CallError, ErrorKind, Pid};
use cohort_pool::*;

fn cluster() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| cohort::blocking::addprocs(2).expect("addprocs"))
        .clone()
}

#[cohort::remote]
fn square(x: u64) -> u64 {
    x * x
}

fn double_where(x: u64) -> (u64, Pid) {
    (x * 2, cohort::myid())
}

#[test]
fn pmap_keeps_order_for_every_batch_size() {
    cluster();
    let items: Vec<u64> = (0..1000).collect();
    let want: Vec<u64> = items.iter().map(|x| x * x).collect();
    for bs in [
        BatchSize::Auto,
        BatchSize::Fixed(1),
        BatchSize::Fixed(7),
        BatchSize::Fixed(5000),
    ] {
        let v =
            blocking::pmap_with(square, items.clone(), PmapOptions::new().batch_size(bs)).unwrap();
        assert_eq!(v, want, "{bs:?}");
    }
}

#[test]
fn pmap_spreads_over_every_worker() {
    let w = cluster();
    let slow = |x: u64| {
        std::thread::sleep(Duration::from_millis(5));
        double_where(x)
    };
    let v = blocking::pmap_with(
        slow,
        (0..64).collect(),
        PmapOptions::new()
            .pool(WorkerPool::new(w.clone()))
            .batch_size(BatchSize::Fixed(1)),
    )
    .unwrap();
    let mut seen: Vec<Pid> = v.iter().map(|r| r.1).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, w);
    assert!(v.iter().enumerate().all(|(i, r)| r.0 == 2 * i as u64));
}

#[test]
fn empty_collections_give_empty_results() {
    cluster();
    assert!(blocking::pmap(square, Vec::new()).unwrap().is_empty());
    assert!(blocking::asyncmap(square, Vec::new()).unwrap().is_empty());
    assert!(distributed_for(0..0, |_i: i64| ()).is_empty());
    assert_eq!(
        blocking::distributed_reduce(5..5, |i: i64| i, |a: i64, b: i64| a + b),
        Err(PoolError::EmptyReduction)
    );
}

fn fails_on_odd(x: i64) -> i64 {
    assert!(x % 2 == 0, "odd {x}");
    x
}

#[test]
fn on_error_values_appear_inline() {
    cluster();
    let v = blocking::pmap_with(
        fails_on_odd,
        (0..20).collect(),
        PmapOptions::new()
            .batch_size(BatchSize::Fixed(3))
            .on_error(|e| match e {
                CallError::Remote(r) if r.kind == ErrorKind::Panic => -1,
                _ => -2,
            }),
    )
    .unwrap();
    let want: Vec<i64> = (0..20).map(|x| if x % 2 == 0 { x } else { -1 }).collect();
    assert_eq!(v, want);
}

#[test]
fn first_failure_is_returned_without_on_error() {
    cluster();
    let err = blocking::pmap(fails_on_odd, vec![0, 2, 3, 4]).unwrap_err();
    match err {
        PoolError::Call(CallError::Remote(r)) => {
            assert_eq!(r.kind, ErrorKind::Panic);
            assert!(r.message.contains("odd 3"), "{r}");
        }
        e => panic!("unexpected {e}"),
    }
}

fn fails_on_first_worker(x: u64) -> (u64, Pid) {
    let me = cohort::myid();
    assert!(me != 2, "worker 2 is unhealthy");
    (x, me)
}

#[test]
fn retries_land_on_a_healthy_worker() {
    let w = cluster();
    assert!(w.contains(&2));
    let v = blocking::pmap_with(
        fails_on_first_worker,
        (0..40).collect(),
        PmapOptions::new()
            .batch_size(BatchSize::Fixed(2))
            .retry_delays(vec![Duration::ZERO; 3]),
    )
    .unwrap();
    for (i, (x, p)) in v.iter().enumerate() {
        assert_eq!(*x, i as u64);
        assert_ne!(*p, 2);
    }
    // retry_check can refuse: then the failure stands. The pool holds only worker 2, so the
    // first attempt fails for certain (with every worker in the pool, other workers may take
    // all items before worker 2 gets one), and the check is consulted exactly once.
    let consulted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = consulted.clone();
    let err = blocking::pmap_with(
        fails_on_first_worker,
        vec![7],
        PmapOptions::new()
            .pool(WorkerPool::new(vec![2]))
            .batch_size(BatchSize::Fixed(1))
            .retry_delays(vec![Duration::ZERO; 3])
            .retry_check(move |e| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                matches!(e, CallError::WorkerExited { .. })
            }),
    );
    assert!(err.is_err());
    assert_eq!(consulted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn local_asyncmap_runs_here() {
    cluster();
    let v = blocking::pmap_with(
        double_where,
        (0..10).collect(),
        PmapOptions::new().distributed(false),
    )
    .unwrap();
    assert!(v.iter().all(|r| r.1 == 1));
}

#[test]
fn several_collections_map_elementwise() {
    cluster();
    let v = blocking::pmap_args(
        |a: i32, b: String| format!("{b}{a}"),
        zip2(vec![1, 2, 3], vec!["a".to_string(), "b".to_string()]),
        PmapOptions::new(),
    )
    .unwrap();
    assert_eq!(v, vec!["a1", "b2"]);
}

#[test]
fn one_worker_pool() {
    let w = cluster();
    let pool = WorkerPool::new([w[1]]);
    let v = blocking::pmap_with(
        double_where,
        (0..100).collect(),
        PmapOptions::new().pool(pool),
    )
    .unwrap();
    assert!(v.iter().all(|r| r.1 == w[1]));
}

#[test]
fn a_worker_is_held_until_its_call_finishes() {
    let w = cluster();
    let pool = WorkerPool::new([w[0]]);
    let f = pool
        .remotecall_blocking(cohort::builtins::sleep, (0.4,))
        .unwrap();
    assert!(!pool.isready());
    let t = Instant::now();
    let pid = pool.remotecall_fetch_blocking(cohort::myid, ()).unwrap();
    assert_eq!(pid, w[0]);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    f.wait_blocking().unwrap();
    assert_eq!(
        blocking::timedwait(
            || pool.isready(),
            Duration::from_secs(5),
            Duration::from_millis(5)
        ),
        TimedWait::Ok
    );
    // remote_do holds it too.
    pool.remote_do_blocking(cohort::builtins::sleep, (0.3,))
        .unwrap();
    assert!(!pool.isready());
    let r = pool.remote(|x: u8| x + 1);
    assert_eq!(r.call_blocking((1,)).unwrap(), 2);
    let f = pool.remotecall_wait_blocking(|| 3u8, ()).unwrap();
    assert_eq!(f.fetch_blocking().unwrap(), 3);
}

#[test]
fn default_pool_holds_the_workers() {
    let w = cluster();
    assert_eq!(default_worker_pool().workers(), w);
    assert!(remote(|| cohort::myid() > 1).call_blocking(()).unwrap());
}

fn nested(n: u64) -> u64 {
    blocking::pmap(|x: u64| x * 2, (0..n).collect())
        .unwrap()
        .iter()
        .sum()
}

#[test]
fn nested_pmap_from_a_worker_does_not_deadlock() {
    cluster();
    let v = blocking::pmap_with(
        nested,
        vec![10; 8],
        PmapOptions::new().batch_size(BatchSize::Fixed(1)),
    )
    .unwrap();
    assert_eq!(v, vec![90; 8]);
}

#[test]
fn caching_pool_sends_captured_data_once_per_worker() {
    let w = cluster();
    let pool = CachingPool::new(w.clone());
    let before: Vec<CacheStats> = w
        .iter()
        .map(|&p| blocking::cache_stats_of(p).unwrap())
        .collect();
    let table: Vec<u64> = (0..100_000).collect();
    let f = cohort::closure!([table] |i: usize| table[i] * 2);
    let v = blocking::pmap_with(
        f.clone(),
        (0..200).collect(),
        PmapOptions::new()
            .caching_pool(pool.clone())
            .batch_size(BatchSize::Fixed(1)),
    )
    .unwrap();
    assert_eq!(v[199], 398);
    for _ in 0..5 {
        assert_eq!(pool.remotecall_fetch_blocking(f.clone(), (7,)).unwrap(), 14);
    }
    let cached = pool.cached();
    // One pmap wrapper and one plain function, on each worker used.
    assert!(cached.iter().all(|(_, n)| *n <= 2), "{cached:?}");
    for (i, &p) in w.iter().enumerate() {
        let s = blocking::cache_stats_of(p).unwrap();
        assert!(s.puts - before[i].puts <= 2, "{s:?}");
    }
    pool.clear_blocking();
    assert!(pool.cached().is_empty());
    for &p in &w {
        assert_eq!(blocking::cache_stats_of(p).unwrap().entries, 0);
    }
    // Works again after clear (sent again).
    assert_eq!(pool.remotecall_fetch_blocking(f, (3,)).unwrap(), 6);
}

fn heads(_i: i64) -> u64 {
    u64::from(rand::random::<bool>())
}

#[test]
fn distributed_reduce_and_for() {
    let w = cluster();
    let total = blocking::distributed_reduce(1..1001, |i: i64| i, |a: i64, b: i64| a + b).unwrap();
    assert_eq!(total, 500_500);
    let h = blocking::distributed_reduce(0..10_000, heads, |a: u64, b: u64| a + b).unwrap();
    assert!(h > 4000 && h < 6000);
    // Chunks follow splitrange: one per worker, remainder first.
    let who = blocking::distributed_reduce(
        0..5,
        |_i: i64| vec![cohort::myid()],
        |mut a: Vec<Pid>, b: Vec<Pid>| {
            a.extend(b);
            a
        },
    )
    .unwrap();
    assert_eq!(who, vec![w[0], w[0], w[0], w[1], w[1]]);
    let futs = distributed_for(0..10, |i: i64| assert!(i < 10));
    assert_eq!(futs.len(), 2);
    let mut g = SyncGroup::new();
    for f in futs {
        g.add(f);
    }
    g.wait_blocking().unwrap();
}

#[test]
fn splitrange_matches_julia() {
    assert_eq!(splitrange(1, 10, 4), vec![1..=3, 4..=6, 7..=8, 9..=10]);
    assert_eq!(splitrange(1, 3, 4), vec![1..=1, 2..=2, 3..=3]);
    assert_eq!(splitrange(0, 99, 1), vec![0..=99]);
}

#[test]
fn sync_group_collects_every_failure() {
    let w = cluster();
    let err = sync(|g| {
        for &p in &w {
            g.add(cohort::remotecall(fails_on_odd, p, (1,)));
            g.add(cohort::remotecall(fails_on_odd, p, (2,)));
        }
        g.spawn(async { Err(PoolError::EmptyPool) });
    })
    .unwrap_err();
    assert_eq!(err.errors.len(), w.len() + 1);
}

#[allow(clippy::disallowed_names)]
fn read_bar() -> Result<Vec<i32>, String> {
    cohort_pool::global::<Vec<i32>>("bar").map_err(|e| e.to_string())
}

#[test]
fn everywhere_and_named_values() {
    let w = cluster();
    let ids = blocking::everywhere(cohort::myid).unwrap();
    assert_eq!(ids, cohort::procs());
    let foo = vec![1, 2, 3];
    blocking::set_global_everywhere("bar", &foo, &cohort::procs()).unwrap();
    for &p in &w {
        assert_eq!(
            cohort::blocking::remotecall_fetch(read_bar, p, ()).unwrap(),
            Ok(foo.clone())
        );
    }
    blocking::clear(&["bar"], &[w[0]]).unwrap();
    let gone = cohort::blocking::remotecall_fetch(read_bar, w[0], ()).unwrap();
    assert!(gone.unwrap_err().contains("not defined"));
    assert!(cohort::blocking::remotecall_fetch(read_bar, w[1], ())
        .unwrap()
        .is_ok());
    // Errors are collected from every process.
    let err = blocking::everywhere_on(&w, || -> u8 { panic!("everywhere boom") }).unwrap_err();
    assert_eq!(err.errors.len(), 2);
}

#[test]
fn progress_option_runs() {
    cluster();
    let v =
        blocking::pmap_with(square, (0..50).collect(), PmapOptions::new().progress(true)).unwrap();
    assert_eq!(v.len(), 50);
}
