//! The blocking API's guard: a blocking form called from async code on a thread that
//! drives tasks panics with a clear message; on other threads — plain, a
//! `spawn_blocking` one, a call a worker runs — it blocks and works. Real workers
//! (this test binary is its own worker executable).

use std::panic::{catch_unwind, AssertUnwindSafe};

use cohort::prelude::*;

fn message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cohort::remote]
fn fetch_from_peer(peer: Pid) -> Pid {
    // A call a worker runs may block (it runs under `block_in_place`).
    blocking::fetchfrom(peer, cohort::builtins::remote_myid).unwrap()
}

#[test]
fn blocking_in_async_code_on_cohorts_runtime_panics_clearly() {
    let r = cohort::runtime::block_on(async {
        catch_unwind(AssertUnwindSafe(|| blocking::fetchfrom(myid(), || 1u8)))
    });
    let m = message(r.unwrap_err());
    assert!(m.contains("blocking::fetchfrom"), "{m}");
    assert!(m.contains("`.await` the async form"), "{m}");
    // A method's blocking form says its own name.
    let f = remotecall(|| 2u8, myid(), ());
    let r =
        cohort::runtime::block_on(
            async move { catch_unwind(AssertUnwindSafe(|| f.fetch_blocking())) },
        );
    assert!(message(r.unwrap_err()).contains("fetch_blocking"));
}

#[test]
fn blocking_in_another_tokio_runtime_panics_clearly() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        catch_unwind(AssertUnwindSafe(|| {
            blocking::remotecall_fetch(|| 3u8, 1, ())
        }))
    });
    assert!(message(r.unwrap_err()).contains("`.await` the async form"));
}

#[test]
fn blocking_works_on_threads_that_may_block() {
    // A plain thread.
    assert_eq!(blocking::fetchfrom(myid(), || 4u8).unwrap(), 4);
    // A spawn_blocking thread of cohort's runtime.
    let v = cohort::runtime::block_on(async {
        cohort::runtime::handle()
            .spawn_blocking(|| blocking::fetchfrom(1, || 5u8).unwrap())
            .await
            .unwrap()
    });
    assert_eq!(v, 5);
    // Calls workers run, calling another worker with a blocking form.
    let c = Cluster::new();
    let w = c.addprocs_blocking(2).unwrap();
    assert_eq!(
        c.remotecall_fetch_blocking(fetch_from_peer, w[0], (w[1],))
            .unwrap(),
        w[1]
    );
    c.rmprocs_blocking(&w, None).unwrap();
}
