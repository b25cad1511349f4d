//! Julia's handle semantics over real processes (issue 12): finalized handles are
//! dead everywhere, `isready` of a dead owner's future fails naming it, a remote
//! value is read in part on its owner (`fetch_with`), handles written outside a
//! cluster message are inert, and a `RemoteChannel` reports its state and holds a
//! keyed channel (the manual's `DictChannel`).

use std::sync::OnceLock;
use std::time::Duration;

use cohort::prelude::*;
use cohort::{CallError, ErrorKind, Future, RemoteChannel};

/// The channels crate's port of Julia's `dictchannel.jl`, used here behind a
/// `RemoteChannel` as the manual uses it.
#[allow(dead_code, unreachable_pub)]
#[path = "../../channels/examples/dict_channel.rs"]
mod dict_channel;
use dict_channel::DictChannel;

/// Two workers shared by the tests that kill none.
fn workers() -> Vec<Pid> {
    static W: OnceLock<Vec<Pid>> = OnceLock::new();
    W.get_or_init(|| blocking::addprocs(2).expect("addprocs"))
        .clone()
}

/// A bound on waits that must end at once: a regression shows as `TimedOut`, not
/// as a test that never ends. Never reached when the code is right.
const NEVER: Duration = Duration::from_secs(120);

#[cohort::remote]
fn make_values(n: u64) -> Vec<u64> {
    (0..n).collect()
}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

/// On the owner of `f`: stores a large value in it there, so that it crosses no
/// connection of the caller's.
#[cohort::remote]
fn fill_here(f: Future<Vec<u64>>, n: u64) {
    f.put_blocking((0..n).collect()).unwrap();
}

/// On the owner of `rc`: puts a large value into it there.
#[cohort::remote]
fn put_here(rc: RemoteChannel<Vec<u64>>, n: u64) {
    rc.put_blocking((0..n).collect()).unwrap();
}

/// What a fetch of `f` gives on this process, as text.
#[cohort::remote]
fn fetch_there(f: Future<Vec<u64>>) -> Result<usize, String> {
    f.fetch_timeout_blocking(NEVER)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// What a take from `rc` gives on this process, as text.
#[cohort::remote]
fn take_there(rc: RemoteChannel<u64>) -> Result<u64, String> {
    rc.take_timeout_blocking(NEVER).map_err(|e| e.to_string())
}

/// Decodes a `Future` from JSON made elsewhere and fetches it here.
#[cohort::remote]
fn fetch_from_json(json: String) -> Result<usize, String> {
    let f: Future<Vec<u64>> = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    f.fetch_timeout_blocking(NEVER)
        .map(|v| v.len())
        .map_err(|e| e.to_string())
}

/// Takes the value under "answer" from a keyed channel (waits for it).
#[cohort::remote]
fn take_answer(rr: RemoteChannel<i64, String>) -> i64 {
    rr.take_key_blocking("answer".into()).unwrap()
}

/// Element 1 of a vector: what `fetch_with` runs on the owner. (`&Vec`: the
/// stored value is a `Vec<u64>`, and `fetch_with` hands the function a `&T`.)
#[allow(clippy::ptr_arg)]
fn second(v: &Vec<u64>) -> u64 {
    v[1]
}

/// Element `i` (Julia's `v[i + 1]`).
#[allow(clippy::ptr_arg)]
fn at(v: &Vec<u64>, i: usize) -> u64 {
    v[i]
}

#[cohort::remote]
fn block_on_channel(rc: RemoteChannel<u8>) -> u8 {
    // Never answered: nobody puts into `rc`.
    rc.take_blocking().unwrap_or(0)
}

/// Bytes this process has received from `pid` on its current connection.
fn bytes_in_from(pid: Pid) -> u64 {
    cohort::observe::peers(&Cluster::global())
        .into_iter()
        .find(|p| p.pid == pid)
        .map_or(0, |p| p.bytes_in)
}

#[test]
fn a_finalized_future_is_dead_here_and_where_it_is_sent() {
    let w = workers();
    // Fetched (so cached here), then finalized: every use fails, as Julia drops the
    // cache on finalize.
    let f = remotecall(make_values, w[0], (10,));
    assert_eq!(f.fetch_blocking().unwrap().len(), 10);
    let clone = f.clone();
    f.finalize();
    assert_eq!(f.fetch_blocking(), Err(CallError::Finalized));
    assert_eq!(clone.fetch_blocking(), Err(CallError::Finalized));
    assert_eq!(f.wait_blocking(), Err(CallError::Finalized));
    assert_eq!(f.isready_blocking(), Err(CallError::Finalized));
    assert_eq!(f.put_blocking(vec![1]), Err(CallError::Finalized));
    assert_eq!(
        f.fetch_with_blocking(|v: &Vec<u64>| v.len()),
        Err(CallError::Finalized)
    );
    // Sent to another process, the cached one arrives finalized: no value with it.
    let there = blocking::remotecall_fetch(fetch_there, w[1], (f.clone(),)).unwrap();
    assert!(
        there.clone().unwrap_err().contains("finalized"),
        "{there:?}"
    );

    // Not fetched, finalized, then sent: the fetch there fails at once instead of
    // waiting for a value the owner has freed.
    let g = remotecall(make_values, w[0], (10,));
    g.wait_blocking().unwrap();
    g.finalize();
    let there = blocking::remotecall_fetch(fetch_there, w[1], (g.clone(),)).unwrap();
    let e = there.unwrap_err();
    assert!(e.contains("finalized"), "{e}");
    // And to its owner itself.
    let there = blocking::remotecall_fetch(fetch_there, w[0], (g,)).unwrap();
    assert!(there.unwrap_err().contains("finalized"));
}

#[test]
fn a_finalized_remote_channel_is_dead_here_and_where_it_is_sent() {
    let w = workers();
    let rc = RemoteChannel::<u64>::with_capacity_blocking(w[0], 4).unwrap();
    rc.put_blocking(1).unwrap();
    rc.finalize();
    assert_eq!(rc.take_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.fetch_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.isready_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.wait_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.close_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.is_open_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.len_blocking(), Err(CallError::Finalized));
    assert_eq!(rc.put_blocking(2).unwrap_err().error, CallError::Finalized);
    let there = blocking::remotecall_fetch(take_there, w[1], (rc.clone(),)).unwrap();
    assert!(
        there.clone().unwrap_err().contains("finalized"),
        "{there:?}"
    );
}

#[test]
fn isready_of_a_future_whose_owner_died_names_it() {
    // Workers of its own: one is killed.
    let w = blocking::addprocs(1).unwrap();
    let doomed = w[0];
    // A remotecall result that never comes (it pushes its result back, when there
    // is one), and a future stored on the worker.
    let never = RemoteChannel::<u8>::new_blocking(cohort::myid()).unwrap();
    let call = remotecall(block_on_channel, doomed, (never.clone(),));
    let stored = Future::<u64>::new(doomed);
    assert_eq!(call.isready_blocking(), Ok(false));
    assert_eq!(stored.isready_blocking(), Ok(false));
    let os = blocking::remotecall_fetch(os_pid, doomed, ()).unwrap();
    std::process::Command::new("kill")
        .arg("-9")
        .arg(os.to_string())
        .status()
        .unwrap();
    // The death is seen: the call's wait fails naming the worker.
    match call.wait_blocking() {
        Err(CallError::WorkerExited { pid, .. }) => assert_eq!(pid, doomed),
        other => panic!("wait after the owner's death: {other:?}"),
    }
    let named = |r: Result<bool, CallError>| match r {
        Err(CallError::WorkerExited { pid, .. }) | Err(CallError::NoSuchProcess { pid }) => {
            assert_eq!(pid, doomed)
        }
        other => panic!("isready after the owner's death: {other:?}"),
    };
    named(call.isready_blocking());
    named(stored.isready_blocking());
    assert!(call.fetch_blocking().is_err());
}

#[test]
fn fetch_with_reads_part_of_a_remote_value_on_its_owner() {
    let w = workers();
    let owner = w[0];
    const N: u64 = 1_000_000;
    let f = Future::<Vec<u64>>::new(owner);
    blocking::remotecall_wait(fill_here, owner, (f.clone(), N)).unwrap();
    let before = bytes_in_from(owner);
    // A function, a closure, and a function shipped with an index (Julia's
    // `f[123457]`): each runs on the owner, and only its result crosses.
    assert_eq!(f.fetch_with_blocking(second).unwrap(), 1);
    assert_eq!(
        f.fetch_with_blocking(|v: &Vec<u64>| v.len()).unwrap(),
        N as usize
    );
    assert_eq!(f.fetch_with_args_blocking(at, 123_456).unwrap(), 123_456);
    let small = bytes_in_from(owner) - before;
    assert!(small < 64 * 1024, "fetch_with brought {small} bytes");
    // The claim stays: a full fetch still works, and brings the megabytes (the
    // counter counts; postcard's varints take 1 to 3 bytes per element here).
    assert_eq!(f.fetch_blocking().unwrap().len(), N as usize);
    let full = bytes_in_from(owner) - before;
    assert!(full > N, "a full fetch brought only {full} bytes");
    // Cached now: fetch_with runs here.
    assert_eq!(f.fetch_with_blocking(second).unwrap(), 1);

    // The same for a RemoteChannel: the value stays in the channel.
    let rc = RemoteChannel::<Vec<u64>>::new_blocking(owner).unwrap();
    blocking::remotecall_wait(put_here, owner, (rc.clone(), N)).unwrap();
    let before = bytes_in_from(owner);
    assert_eq!(rc.fetch_with_blocking(second).unwrap(), 1);
    let small = bytes_in_from(owner) - before;
    assert!(small < 64 * 1024, "fetch_with brought {small} bytes");
    assert_eq!(rc.len_blocking().unwrap(), Some(1));

    // The function's panic comes back as the owner's.
    let fresh = Future::<Vec<u64>>::new(owner);
    blocking::remotecall_wait(fill_here, owner, (fresh.clone(), 3)).unwrap();
    match fresh.fetch_with_blocking(|v: &Vec<u64>| v[usize::MAX]) {
        Err(CallError::Remote(r)) => {
            assert_eq!(r.pid, owner);
            assert_eq!(r.kind, ErrorKind::Panic);
        }
        other => panic!("a panicking fetch_with: {other:?}"),
    }
    let rc_panic = rc.fetch_with_blocking(|v: &Vec<u64>| v[usize::MAX]);
    match rc_panic {
        Err(CallError::Remote(r)) => {
            assert_eq!(r.pid, owner);
            assert_eq!(r.kind, ErrorKind::Panic);
        }
        other => panic!("a panicking fetch_with: {other:?}"),
    }
}

#[test]
fn handles_written_outside_a_message_are_inert() {
    let w = workers();
    // A fetched future: its JSON carries neither a live id nor the value.
    let f = remotecall(make_values, w[0], (1000,));
    assert_eq!(f.fetch_blocking().unwrap().len(), 1000);
    let json = serde_json::to_string(&f).unwrap();
    assert!(json.len() < 100, "the JSON carries the value: {json}");
    let g: Future<Vec<u64>> = serde_json::from_str(&json).unwrap();
    assert_eq!(g.id(), f.id());
    let inert = CallError::Inert { id: f.id() };
    assert_eq!(g.fetch_blocking(), Err(inert.clone()));
    assert_eq!(g.isready_blocking(), Err(inert.clone()));
    assert_eq!(g.wait_blocking(), Err(inert.clone()));
    assert_eq!(g.put_blocking(vec![]), Err(inert.clone()));
    assert!(inert.to_string().contains("inert"));
    // The original is untouched.
    assert_eq!(f.fetch_blocking().unwrap().len(), 1000);

    // A pending future written to a "file" and read by another process, after the
    // writer let go of it: inert there too, not a fetch that never returns.
    let p = Future::<Vec<u64>>::new(w[0]);
    let json = serde_json::to_string(&p).unwrap();
    drop(p);
    let there = blocking::remotecall_fetch(fetch_from_json, w[1], (json,)).unwrap();
    assert!(there.clone().unwrap_err().contains("inert"), "{there:?}");

    // An inert handle sent inside a message stays inert.
    let there = blocking::remotecall_fetch(fetch_there, w[1], (g,)).unwrap();
    assert!(there.unwrap_err().contains("inert"));

    // A RemoteChannel the same way.
    let rc = RemoteChannel::<u64>::new_blocking(w[0]).unwrap();
    let json = serde_json::to_string(&rc).unwrap();
    let copy: RemoteChannel<u64> = serde_json::from_str(&json).unwrap();
    let inert = CallError::Inert { id: rc.id() };
    assert_eq!(copy.put_blocking(1).unwrap_err().error, inert);
    assert_eq!(copy.take_blocking(), Err(inert.clone()));
    assert_eq!(copy.isready_blocking(), Err(inert.clone()));
    assert_eq!(copy.is_open_blocking(), Err(inert));
    rc.put_blocking(5).unwrap();
    assert_eq!(rc.take_blocking().unwrap(), 5);
    // And cohort's own codec, called by hand, is outside a message too.
    let bytes = cohort_cluster::codec::encode(&rc).unwrap();
    let copy: RemoteChannel<u64> = cohort_cluster::codec::decode(&bytes).unwrap();
    assert!(matches!(
        copy.fetch_blocking(),
        Err(CallError::Inert { .. })
    ));
}

#[test]
fn a_remote_channel_says_whether_it_is_open_and_how_full() {
    let w = workers();
    let rc = RemoteChannel::<u64>::with_capacity_blocking(w[0], 3).unwrap();
    assert_eq!(rc.is_open_blocking(), Ok(true));
    assert_eq!(rc.len_blocking(), Ok(Some(0)));
    assert_eq!(rc.is_empty_blocking(), Ok(true));
    rc.put_blocking(1).unwrap();
    rc.put_blocking(2).unwrap();
    assert_eq!(rc.len_blocking(), Ok(Some(2)));
    assert_eq!(rc.is_empty_blocking(), Ok(false));
    rc.close_blocking().unwrap();
    assert_eq!(rc.is_open_blocking(), Ok(false));
    assert_eq!(rc.take_blocking(), Ok(1));
    assert_eq!(rc.len_blocking(), Ok(Some(1)));
    // On the owner itself, the same answers without a message.
    let local = RemoteChannel::<u64>::with_capacity_blocking(cohort::myid(), 2).unwrap();
    local.put_blocking(7).unwrap();
    assert_eq!(local.len_blocking(), Ok(Some(1)));
    assert_eq!(local.is_open_blocking(), Ok(true));
}

#[test]
fn a_remote_channel_holds_the_manuals_dict_channel() {
    let w = workers();
    // Julia: rr = RemoteChannel(() -> DictChannel(), w1)
    let rr =
        RemoteChannel::<i64, String>::with_factory_blocking(w[0], DictChannel::<String, i64>::new)
            .unwrap();
    // A taker on a third process waits for its own key only.
    let taker = remotecall(take_answer, w[1], (rr.clone(),));
    rr.put_key_blocking("noise".into(), 1).unwrap();
    assert_eq!(rr.isready_key_blocking("noise".into()), Ok(true));
    assert_eq!(rr.isready_key_blocking("answer".into()), Ok(false));
    assert_eq!(taker.isready_blocking(), Ok(false));
    rr.put_key_blocking("answer".into(), 42).unwrap();
    assert_eq!(taker.fetch_blocking().unwrap(), 42);
    // fetch reads without removing; take removes.
    assert_eq!(rr.fetch_key_blocking("noise".into()), Ok(1));
    rr.wait_key_blocking("noise".into()).unwrap();
    assert_eq!(rr.len_blocking(), Ok(Some(1)));
    assert_eq!(rr.is_empty_blocking(), Ok(false));
    assert_eq!(
        rr.fetch_key_with_blocking("noise".into(), |v: &i64| v + 1),
        Ok(2)
    );
    assert_eq!(rr.take_key_blocking("noise".into()), Ok(1));
    assert_eq!(rr.isready_key_blocking("noise".into()), Ok(false));
    assert_eq!(rr.is_empty_blocking(), Ok(true));
    // A take given up leaves the key's value for the next take.
    let late = cohort::runtime::block_on({
        let rr = rr.clone();
        async move { cohort::with_timeout(Duration::from_millis(50), rr.take_key("late".into())).await }
    });
    assert!(matches!(late, Err(CallError::TimedOut { .. })), "{late:?}");
    rr.put_key_blocking("late".into(), 3).unwrap();
    assert_eq!(rr.take_key_blocking("late".into()), Ok(3));
    rr.close_blocking().unwrap();
    assert_eq!(rr.is_open_blocking(), Ok(false));
    assert!(rr.put_key_blocking("x".into(), 0).is_err());
}
