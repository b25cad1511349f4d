//! Channel credits over real worker processes (issue 10, point 4): puts into a
//! bounded `RemoteChannel` within the places its owner reserved for the putter go
//! out without waiting for an answer (`docs/protocol.md`, "Channel credits"). Checked
//! here: values arrive complete and in order; a put held up by places reserved for
//! another process gets them back; a close by another process ends the credits and
//! loses none of the values put with them; a putter that dies gives its places back;
//! nothing stays reserved once the handles are gone.

mod common;

use std::time::Duration;

use cohort::{blocking, CallError, Cluster, Pid, RemoteChannel};
use common::{poll, signal};

/// A bound on waits that must end at once: a regression shows as `TimedOut`, not as
/// a test that never ends. Never reached when the code is right.
const NEVER: Duration = Duration::from_secs(120);

#[cohort::remote]
fn put_n(rc: RemoteChannel<u64>, from: u64, n: u64) -> Result<(), String> {
    for i in from..from + n {
        rc.put_blocking(i).map_err(|e| e.error.to_string())?;
    }
    Ok(())
}

/// Handles kept by a worker after the call that brought them.
static KEPT: std::sync::Mutex<Vec<RemoteChannel<u64>>> = std::sync::Mutex::new(Vec::new());

/// Puts `n` values and keeps the handle, and with it the credits left.
#[cohort::remote]
fn put_and_keep(rc: RemoteChannel<u64>, from: u64, n: u64) -> Result<(), String> {
    for i in from..from + n {
        rc.put_blocking(i).map_err(|e| e.error.to_string())?;
    }
    KEPT.lock().unwrap().push(rc);
    Ok(())
}

#[cohort::remote]
fn close_it(rc: RemoteChannel<u64>) -> Result<(), String> {
    rc.close_blocking().map_err(|e| e.to_string())
}

#[cohort::remote]
fn os_pid() -> u32 {
    std::process::id()
}

/// Waits until `pid` lends no credits (every putter returned its places or died).
fn nothing_lent(c: &Cluster, pid: Pid) {
    poll("the owner to lend no credits", 60, || {
        (c.stats_of_blocking(pid).unwrap().credits_lent == 0).then_some(())
    });
}

fn take_all(rc: &RemoteChannel<u64>, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| rc.take_timeout_blocking(NEVER).unwrap())
        .collect()
}

#[test]
fn puts_within_credits_arrive_in_order_and_their_places_go_back() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = c.channel_blocking::<u64>(owner, 1000).unwrap();
    let before = c.stats().credited_puts;
    for i in 0..1000 {
        rc.put_blocking(i).unwrap();
    }
    // The first put asked for credits, and its answer came after them: at least
    // the 256 puts after it went out within a credit.
    let credited = c.stats().credited_puts - before;
    assert!(credited >= 256, "only {credited} puts were credited");
    assert_eq!(take_all(&rc, 1000), (0..1000).collect::<Vec<_>>());
    assert_eq!(rc.len_blocking().unwrap(), Some(0));
    // Again, with the credits the takes freed.
    for i in 0..300 {
        rc.put_blocking(i).unwrap();
    }
    assert_eq!(take_all(&rc, 300), (0..300).collect::<Vec<_>>());
    drop(rc);
    nothing_lent(&c, owner);
    assert_eq!(c.stats().credits_held, 0);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn a_put_held_up_by_places_reserved_for_another_process_gets_them_back() {
    let c = Cluster::new();
    let ws = c.addprocs_blocking(2).unwrap();
    let (owner, other) = (ws[0], ws[1]);
    let rc = c.channel_blocking::<u64>(owner, 4).unwrap();
    rc.put_blocking(100).unwrap();
    // Half of the three free places is this process's now.
    assert_eq!(c.stats().credits_held, 1);
    // The other worker's third put would wait for ever if the owner did not call
    // that place back: three values are in a channel of four, one place reserved.
    let puts = c.remotecall(put_n, other, (rc.clone(), 0, 4));
    assert_eq!(take_all(&rc, 5), [100, 0, 1, 2, 3]);
    assert_eq!(puts.fetch_timeout_blocking(NEVER).unwrap(), Ok(()));
    assert_eq!(c.stats().credits_held, 0, "called back");
    drop(rc);
    drop(puts);
    nothing_lent(&c, owner);
    c.rmprocs_blocking(&ws, None).unwrap();
}

#[test]
fn a_close_by_another_process_ends_the_credits_and_keeps_what_they_put() {
    let c = Cluster::new();
    let ws = c.addprocs_blocking(2).unwrap();
    let (owner, closer) = (ws[0], ws[1]);
    let rc = c.channel_blocking::<u64>(owner, 100).unwrap();
    rc.put_blocking(0).unwrap();
    assert_eq!(c.stats().credits_held, 49, "half of the free places");
    assert_eq!(
        c.remotecall_fetch_blocking(close_it, closer, (rc.clone(),))
            .unwrap(),
        Ok(())
    );
    // Puts made before the owner's call-back arrived are in the channel; the first
    // one after it fails, and it comes before the credits run out.
    let mut put = 1;
    let err = loop {
        match rc.put_blocking(put) {
            Ok(()) => put += 1,
            Err(e) => break e,
        }
        assert!(put <= 100, "puts went on past the credits");
    };
    assert_eq!(err.error, CallError::ChannelClosed);
    assert_eq!(err.value, put);
    assert_eq!(take_all(&rc, put as usize), (0..put).collect::<Vec<_>>());
    assert_eq!(
        rc.take_timeout_blocking(NEVER),
        Err(CallError::ChannelClosed)
    );
    drop(rc);
    nothing_lent(&c, owner);
    c.rmprocs_blocking(&ws, None).unwrap();
}

#[test]
fn a_putter_that_dies_gives_its_places_back() {
    let c = Cluster::new();
    let ws = c.addprocs_blocking(2).unwrap();
    let (owner, putter) = (ws[0], ws[1]);
    let putter_os = c.remotecall_fetch_blocking(os_pid, putter, ()).unwrap();
    let rc = c.channel_blocking::<u64>(owner, 5).unwrap();
    assert_eq!(
        c.remotecall_fetch_blocking(put_and_keep, putter, (rc.clone(), 0, 1))
            .unwrap(),
        Ok(())
    );
    // The putter keeps its handle, and the two credits its first put got (half of
    // the four free places).
    assert_eq!(c.stats_of_blocking(putter).unwrap().credits_held, 2);
    signal("-9", putter_os);
    // One value and two places reserved for the dead putter: the third of these
    // puts waits until the owner hears of its death.
    for v in [10, 11, 12] {
        let put = async { rc.put(v).await.map_err(|e| e.error) };
        blocking::with_timeout(NEVER, put).unwrap();
    }
    assert_eq!(take_all(&rc, 4), [0, 10, 11, 12]);
    drop(rc);
    nothing_lent(&c, owner);
    poll("the dead putter to leave", 60, || {
        (!c.workers().contains(&putter)).then_some(())
    });
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn a_process_with_credits_turned_off_waits_for_every_put() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let off = c
        .launch_blocking(cohort::AddProcs::local(1).env(cohort::CHANNEL_CREDITS_ENV, "off"))
        .unwrap()[0];
    let rc = c.channel_blocking::<u64>(owner, 100).unwrap();
    assert_eq!(
        c.remotecall_fetch_blocking(put_and_keep, off, (rc.clone(), 0, 20))
            .unwrap(),
        Ok(())
    );
    let s = c.stats_of_blocking(off).unwrap();
    assert_eq!((s.credited_puts, s.credits_held), (0, 0));
    assert_eq!(c.stats_of_blocking(owner).unwrap().credits_lent, 0);
    assert_eq!(take_all(&rc, 20), (0..20).collect::<Vec<_>>());
    drop(rc);
    c.rmprocs_blocking(&[owner, off], None).unwrap();
}
