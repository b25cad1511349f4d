//! Pools, pmap, distributed loops and everywhere against real worker processes (this
//! test binary is its own worker executable).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cohort::{CallError, ErrorKind, Pid};
use cohort_pool::indicatif;
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
        0..64,
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
        0..20,
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
        0..40,
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
    let v =
        blocking::pmap_with(double_where, 0..10, PmapOptions::new().distributed(false)).unwrap();
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
    let v = blocking::pmap_with(double_where, 0..100, PmapOptions::new().pool(pool)).unwrap();
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
    blocking::pmap(|x: u64| x * 2, 0..n).unwrap().iter().sum()
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
        0..200,
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
    let v = blocking::pmap_with(square, 0..50, PmapOptions::new().progress(true)).unwrap();
    assert_eq!(v.len(), 50);
}

/// A terminal that keeps what a progress bar draws on it.
#[derive(Debug, Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<String>>);

impl indicatif::TermLike for Capture {
    fn width(&self) -> u16 {
        160
    }
    fn move_cursor_up(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _n: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut t = self.0.lock().unwrap();
        t.push_str(s);
        t.push('\n');
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.lock().unwrap().push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How many times `key` was attempted on this process (a worker).
fn attempts() -> &'static std::sync::Mutex<std::collections::HashMap<u64, u32>> {
    static A: OnceLock<std::sync::Mutex<std::collections::HashMap<u64, u32>>> = OnceLock::new();
    A.get_or_init(Default::default)
}

/// Fails the first `key / 1000` attempts at `key` on this process, then gives `2 key`.
fn flaky(key: u64) -> u64 {
    let n = {
        let mut a = attempts().lock().unwrap();
        let n = a.entry(key).or_default();
        *n += 1;
        *n
    };
    assert!(u64::from(n) > key / 1000, "attempt {n} at {key}");
    key * 2
}

fn attempts_at(key: u64) -> u32 {
    attempts().lock().unwrap().get(&key).copied().unwrap_or(0)
}

#[test]
fn pmap_pulls_a_lazy_input_as_batches_are_handed_out() {
    let w = cluster();
    // Each pull records how many items were done then (the caller's bar counts them).
    let bar = indicatif::ProgressBar::hidden();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (b, s) = (bar.clone(), seen.clone());
    let items = (0..40u64).inspect(move |_| s.lock().unwrap().push(b.position()));
    let v = blocking::pmap_with(
        square,
        items,
        PmapOptions::new()
            .pool(WorkerPool::new(w.clone()))
            .batch_size(1)
            .progress_bar(bar.clone()),
    )
    .unwrap();
    assert_eq!(v, (0..40u64).map(|x| x * x).collect::<Vec<_>>());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 40);
    // A batch is pulled only while fewer than one per member are queued, so when item
    // k is pulled at most `members - 1` items are queued and `members` running: the
    // others are done. Collected up front, every pull would have seen 0 done.
    let members = w.len() as u64;
    for (k, done) in seen.iter().enumerate() {
        assert!(
            done + 2 * members > k as u64,
            "item {k} pulled with {done} done"
        );
    }
    assert_eq!(bar.position(), 40);
}

#[test]
fn pmap_stream_yields_in_order_within_its_window() {
    let w = cluster();
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = pulled.clone();
    let items = (0..1000u64).inspect(move |_| {
        p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let window = STREAM_BATCHES_AHEAD * w.len();
    let mut out = Vec::new();
    for (k, r) in blocking::pmap_stream(
        square,
        items,
        PmapOptions::new()
            .pool(WorkerPool::new(w.clone()))
            .batch_size(1),
    )
    .enumerate()
    {
        // The engine pulls only while polled, and only `window` items ahead of those
        // handed out: when result k arrives, at most k + window items were pulled.
        let n = pulled.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n <= k + window, "result {k} with {n} items pulled");
        out.push(r.unwrap());
    }
    assert_eq!(out, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
    // An endless input, and a stream dropped early.
    let firsts: Vec<u64> = blocking::pmap_stream(square, 0u64.., PmapOptions::new())
        .take(5)
        .map(Result::unwrap)
        .collect();
    assert_eq!(firsts, vec![0, 1, 4, 9, 16]);
    // A failure ends the stream after the results before it (one batch: they arrive
    // together, the failure last).
    let got: Vec<Result<i64, PoolError>> = blocking::pmap_stream(
        fails_on_odd,
        vec![0, 2, 3, 4],
        PmapOptions::new().batch_size(10),
    )
    .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], Ok(0));
    assert_eq!(got[1], Ok(2));
    assert!(
        matches!(&got[2], Err(PoolError::Call(CallError::Remote(r))) if r.message.contains("odd 3"))
    );
}

#[test]
fn pmap_array_keeps_the_shape() {
    cluster();
    let a = ndarray::Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (100 * i + 10 * j + k) as u64);
    let b = blocking::pmap_array(square, &a, PmapOptions::new().batch_size(5)).unwrap();
    assert_eq!(b.shape(), &[2, 3, 4]);
    assert_eq!(b, a.mapv(|x| x * x));
    // A view in another memory order: logical order is kept.
    let t = a.t();
    let bt = blocking::pmap_array(square, &t, PmapOptions::new()).unwrap();
    assert_eq!(bt.shape(), &[4, 3, 2]);
    assert_eq!(bt, t.mapv(|x| x * x));
}

#[test]
fn a_put_does_not_free_a_worker_a_lease_still_holds() {
    let w = cluster();
    let pool = WorkerPool::new([w[0]]);
    let lease = pool.take_blocking().unwrap();
    // The old `put` freed a worker whenever some copy of it was lent, so a third
    // holder could take it while the lease still held it.
    pool.put(w[0]);
    assert!(!pool.isready());
    assert!(
        futures::FutureExt::now_or_never(pool.take()).is_none(),
        "a second holder got the leased worker"
    );
    drop(lease);
    assert!(pool.isready());
    // Julia's take!/put! pair: a detached lease stays lent until put, once.
    let pid = pool.take_blocking().unwrap().detach();
    assert_eq!(pid, w[0]);
    assert!(!pool.isready());
    pool.put(pid);
    pool.put(pid);
    let held = pool.take_blocking().unwrap();
    assert!(!pool.isready(), "one put of a worker freed it twice");
    drop(held);
    assert_eq!(
        pool.remotecall_fetch_blocking(cohort::myid, ()).unwrap(),
        w[0]
    );
}

#[test]
fn integer_ranges_of_every_type_split_at_their_edges() {
    let w = cluster();
    let add = |a: u64, b: u64| a + b;
    // A whole type, which no half-open range can cover.
    let s = blocking::distributed_reduce(0..=255, |i: u8| u64::from(i), add).unwrap();
    assert_eq!(s, 32_640);
    let s = blocking::distributed_reduce(
        i8::MIN..=i8::MAX,
        |i: i8| i64::from(i),
        |a: i64, b: i64| a + b,
    );
    assert_eq!(s.unwrap(), -128);
    let who = blocking::distributed_reduce(
        0..=255u8,
        |i: u8| vec![(i, cohort::myid())],
        |mut a: Vec<(u8, Pid)>, b: Vec<(u8, Pid)>| {
            a.extend(b);
            a
        },
    )
    .unwrap();
    assert_eq!(who.len(), 256);
    assert!(who
        .iter()
        .enumerate()
        .all(|(k, (i, _))| usize::from(*i) == k));
    assert_eq!(who[0].1, w[0]);
    assert_eq!(who[255].1, w[1]);
    // Near the edges of i64, u64, i128, u128.
    let n = blocking::distributed_reduce(i64::MAX - 9..=i64::MAX, |_i: i64| 1u64, add);
    assert_eq!(n.unwrap(), 10);
    let n = blocking::distributed_reduce(i64::MIN..i64::MIN + 10, |_i: i64| 1u64, add);
    assert_eq!(n.unwrap(), 10);
    let top = blocking::distributed_reduce(
        u64::MAX - 2..=u64::MAX,
        |i: u64| i,
        |a: u64, b: u64| a.max(b),
    );
    assert_eq!(top.unwrap(), u64::MAX);
    let n = blocking::distributed_reduce(i128::MAX - 4..=i128::MAX, |_i: i128| 1u64, add);
    assert_eq!(n.unwrap(), 5);
    let n = blocking::distributed_reduce(u128::MAX - 4..=u128::MAX, |_i: u128| 1u64, add);
    assert_eq!(n.unwrap(), 5);
    // Each of the other types.
    assert_eq!(
        blocking::distributed_reduce(0..10, |i: u16| u64::from(i), add).unwrap(),
        45
    );
    assert_eq!(
        blocking::distributed_reduce(0..10, |i: u32| u64::from(i), add).unwrap(),
        45
    );
    assert_eq!(
        blocking::distributed_reduce(0..10, |i: usize| i as u64, add).unwrap(),
        45
    );
    assert_eq!(
        blocking::distributed_reduce(-5..5, |i: i16| i64::from(i), |a: i64, b: i64| a + b).unwrap(),
        -5
    );
    assert_eq!(
        blocking::distributed_reduce(-5..5, |i: i32| i64::from(i), |a: i64, b: i64| a + b).unwrap(),
        -5
    );
    assert_eq!(
        blocking::distributed_reduce(-5..=5, |i: isize| i as i64, |a: i64, b: i64| a + b).unwrap(),
        0
    );
    // Empty ranges, half-open and inclusive.
    assert_eq!(
        blocking::distributed_reduce(5..5u8, |i: u8| u64::from(i), add),
        Err(PoolError::EmptyReduction)
    );
    #[allow(clippy::reversed_empty_ranges)]
    let e = blocking::distributed_reduce(5..=4i128, |_i: i128| 1u64, add);
    assert_eq!(e, Err(PoolError::EmptyReduction));
    assert!(distributed_for(u64::MAX..u64::MAX, |_i: u64| ()).is_empty());
    let futs = distributed_for(usize::MAX - 1..=usize::MAX, |i: usize| {
        assert!(i >= usize::MAX - 1)
    });
    assert_eq!(futs.len(), 2);
    for f in futs {
        f.wait_blocking().unwrap();
    }
    // Splitting whole 128-bit types, whose length does not fit in them.
    assert_eq!(
        splitrange(0, u128::MAX, 2),
        vec![0..=u128::MAX / 2, u128::MAX / 2 + 1..=u128::MAX]
    );
    let parts = splitrange(i128::MIN, i128::MAX, 3);
    assert_eq!(parts.len(), 3);
    assert_eq!(*parts[0].start(), i128::MIN);
    assert_eq!(*parts[2].end(), i128::MAX);
    assert_eq!(*parts[1].start(), parts[0].end() + 1);
    assert_eq!(*parts[2].start(), parts[1].end() + 1);
    assert_eq!(
        splitrange(-128i8, 127, 3),
        vec![-128..=-43, -42..=42, 43..=127]
    );
}

#[test]
fn retries_come_before_on_error() {
    let w = cluster();
    // One member: every retry goes to the same worker, which counts the attempts.
    let pool = WorkerPool::new([w[0]]);
    let handled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let opts = |delays: usize, check: bool| {
        let h = handled.clone();
        PmapOptions::new()
            .pool(pool.clone())
            .batch_size(1)
            .retry_delays(vec![Duration::ZERO; delays])
            .retry_check(move |_| check)
            .on_error(move |e| {
                h.lock().unwrap().push(e.to_string());
                0
            })
    };
    // Two failures, three retries: the retries absorb them; on_error is not called.
    let keys: Vec<u64> = (2000..2004).collect();
    let v = blocking::pmap_with(flaky, keys.clone(), opts(3, true)).unwrap();
    assert_eq!(v, keys.iter().map(|k| k * 2).collect::<Vec<_>>());
    assert!(handled.lock().unwrap().is_empty());
    for &k in &keys {
        let n = cohort::blocking::remotecall_fetch(attempts_at, w[0], (k,)).unwrap();
        assert_eq!(n, 3, "key {k}");
    }
    // Five failures, two retries: on_error sees the third (last) attempt's error,
    // once per item.
    let keys: Vec<u64> = (5000..5004).collect();
    let v = blocking::pmap_with(flaky, keys.clone(), opts(2, true)).unwrap();
    assert_eq!(v, vec![0; 4]);
    let seen = std::mem::take(&mut *handled.lock().unwrap());
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter().all(|m| m.contains("attempt 3 at 500")),
        "{seen:?}"
    );
    for &k in &keys {
        let n = cohort::blocking::remotecall_fetch(attempts_at, w[0], (k,)).unwrap();
        assert_eq!(n, 3, "key {k}");
    }
    // A retry_check that refuses: on_error after the first attempt.
    let keys: Vec<u64> = (5100..5102).collect();
    let v = blocking::pmap_with(flaky, keys.clone(), opts(2, false)).unwrap();
    assert_eq!(v, vec![0; 2]);
    assert_eq!(handled.lock().unwrap().len(), 2);
    for &k in &keys {
        let n = cohort::blocking::remotecall_fetch(attempts_at, w[0], (k,)).unwrap();
        assert_eq!(n, 1, "key {k}");
    }
}

#[test]
fn the_progress_bar_shows_time_rate_eta_and_counts() {
    let w = cluster();
    let term = Capture::default();
    let target = indicatif::ProgressDrawTarget::term_like(Box::new(term.clone()));
    let bar = indicatif::ProgressBar::with_draw_target(None, target);
    // Key 3000 fails three attempts (two of them retried), then on_error; the rest pass.
    let keys: Vec<u64> = vec![10, 11, 3000, 12, 13];
    let v = blocking::pmap_with(
        flaky,
        keys,
        PmapOptions::new()
            .pool(WorkerPool::new([w[1]]))
            .batch_size(1)
            .retry_delays(vec![Duration::ZERO; 2])
            .on_error(|_| 0)
            .progress_bar(bar.clone()),
    )
    .unwrap();
    assert_eq!(v, vec![20, 22, 0, 24, 26]);
    assert_eq!(bar.position(), 5);
    assert_eq!(bar.length(), Some(5));
    assert_eq!(bar.message(), "3 failed, 2 retried");
    // The last frame drawn (at the finish): elapsed time, done/total, rate, eta, counts.
    let shown = term.0.lock().unwrap().clone();
    let last = shown.lines().last().expect("a frame was drawn").to_string();
    assert!(last.starts_with("[00:"), "{last}");
    assert!(last.contains(" 5/5 ("), "{last}");
    assert!(last.contains("/s, eta "), "{last}");
    assert!(last.ends_with("3 failed, 2 retried"), "{last}");
}
