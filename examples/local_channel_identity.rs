//! Local invocations with a `RemoteChannel` (the manual's example): a channel stored on
//! this process holds the very value put three times — one shared instance — while a
//! channel stored on a worker holds three copies, one per `put`.
//!
//! ```julia
//! rc = RemoteChannel(()->Channel(3));   # on the local node
//! v = [0];
//! for i in 1:3
//!     v[1] = i                          # reusing `v`
//!     put!(rc, v)
//! end;
//! result = [take!(rc) for _ in 1:3];
//! println(result);                      # [[3], [3], [3]]
//! addprocs(1);
//! rc = RemoteChannel(()->Channel(3), workers()[1]);   # on a remote node
//! ...                                   # [[1], [2], [3]]
//! ```
//!
//! Run: `cargo run --release -p cohort-examples --example local_channel_identity`

use std::sync::{Arc, Mutex};

use cohort::channels::Channel;
use cohort::prelude::*;

type Shared = Arc<Mutex<Vec<i64>>>;

fn fill_and_drain(rc: &RemoteChannel<Shared>) -> Vec<Shared> {
    let v: Shared = Arc::new(Mutex::new(vec![0]));
    for i in 1..=3 {
        v.lock().unwrap()[0] = i; // reusing `v`
        rc.put_blocking(v.clone()).unwrap();
    }
    (0..3).map(|_| rc.take_blocking().unwrap()).collect()
}

fn show(result: &[Shared]) -> String {
    let items: Vec<String> = result
        .iter()
        .map(|v| format!("{:?}", v.lock().unwrap()))
        .collect();
    format!("[{}]", items.join(", "))
}

fn unique(result: &[Shared]) -> usize {
    let mut ptrs: Vec<*const Mutex<Vec<i64>>> = result.iter().map(Arc::as_ptr).collect();
    ptrs.sort();
    ptrs.dedup();
    ptrs.len()
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rc = RemoteChannel::<Shared>::with_factory_blocking(myid(), || Channel::new(3))?;
    let result = fill_and_drain(&rc);
    println!("{}", show(&result));
    println!("Num Unique objects : {}", unique(&result));
    assert_eq!(unique(&result), 1);

    let pids = blocking::addprocs(1)?;
    let rc = RemoteChannel::<Shared>::with_factory_blocking(pids[0], || Channel::new(3))?;
    let result = fill_and_drain(&rc);
    println!("{}", show(&result));
    println!("Num Unique objects : {}", unique(&result));
    assert_eq!(unique(&result), 3);
    blocking::rmprocs(&pids, None)?;
    Ok(())
}
