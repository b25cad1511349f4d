//! The manual's captured-data example with a `CachingPool`: the closure's captured
//! array goes to each worker once, not once per item.
//!
//! ```julia
//! let foo = ones(10^4)
//!     wp = CachingPool(workers())
//!     pmap(x -> sum(foo) + x, wp, 1:100)
//! end
//! ```
//!
//! `cargo run --release -p cohort-pool --example caching_pool`

use cohort_pool::{blocking, CachingPool, PmapOptions};

fn main() {
    let workers = cohort::blocking::addprocs(2).expect("addprocs");
    let results = {
        let ones = vec![1.0f64; 10_000];
        let wp = CachingPool::new(cohort::workers());
        let f = cohort::closure!([ones] |x: u32| ones.iter().sum::<f64>() + f64::from(x));
        // One item per call, so that the 100 calls would each carry foo without the cache.
        let opts = PmapOptions::new().caching_pool(wp.clone()).batch_size(1);
        let r = blocking::pmap_with(f, 1..=100, opts).unwrap();
        for &p in &workers {
            let s = blocking::cache_stats_of(p).unwrap();
            println!(
                "worker {p}: the captured data arrived {} time(s), {} bytes",
                s.puts, s.bytes
            );
        }
        r
        // wp dropped here: the cache is cleared on every worker.
    };
    println!("first results: {:?}", &results[..3]);
}
