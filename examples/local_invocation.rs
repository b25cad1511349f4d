//! Local invocations: a call to the calling process itself runs on the very values
//! passed, with no serialization; a call to another process works on a copy (the
//! manual's "Local invocations" section).
//!
//! Run: `cargo run --release -p cohort-examples --example local_invocation`

use cohort::prelude::*;

/// Returns its argument, so the caller can see whether it got the same buffer back.
#[cohort::remote]
fn echo(v: Vec<u64>) -> Vec<u64> {
    v
}

#[cohort::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pids = blocking::addprocs(1)?;

    let v = vec![1u64, 2, 3];
    let addr = v.as_ptr();
    let back = blocking::remotecall_fetch(echo, myid(), (v,))?;
    println!(
        "call to myid() = {}: same buffer back? {}",
        myid(),
        back.as_ptr() == addr
    );
    assert_eq!(back.as_ptr(), addr);

    let v = vec![1u64, 2, 3];
    let addr = v.as_ptr();
    let back = blocking::remotecall_fetch(echo, pids[0], (v,))?;
    println!(
        "call to worker {}: same buffer back? {} (a copy, equal contents: {})",
        pids[0],
        back.as_ptr() == addr,
        back == [1, 2, 3]
    );
    assert_ne!(back.as_ptr(), addr);

    blocking::rmprocs(&pids, None)?;
    Ok(())
}
