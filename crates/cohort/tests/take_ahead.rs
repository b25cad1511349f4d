//! Batched takes over real worker processes (issue 10, point 4):
//! `RemoteChannel::take_up_to` removes the oldest value and those behind it that are
//! there, in one round trip (a `TAKE` whose `credits` asks for more,
//! `docs/protocol.md`, "Take-ahead"); a `TakeAhead` hands such batches out one value
//! at a time and, when dropped, puts what it still holds back at the front of the
//! channel, in order. Checked here: order, bounds (count and bytes), closing, values
//! that encode to nothing, and nothing lost when a taker goes away.

mod common;

use std::time::Duration;

use cohort::{CallError, Cluster, Pid, RemoteChannel};
use common::poll;

/// A bound on waits that must end at once: a regression shows as `TimedOut`, not as
/// a test that never ends. Never reached when the code is right.
const NEVER: Duration = Duration::from_secs(120);

/// On a worker: takes `n` values through a take-ahead of `ahead`, then says how many
/// the taker still holds, and drops it (which puts those back).
#[cohort::remote]
fn take_some_ahead(rc: RemoteChannel<u64>, ahead: u64, n: u64) -> (Vec<u64>, u64) {
    let mut taker = rc.take_ahead(ahead as usize);
    let got = (0..n).map(|_| taker.take_blocking().unwrap()).collect();
    (got, taker.held() as u64)
}

fn channel_on(c: &Cluster, owner: Pid, capacity: usize) -> RemoteChannel<u64> {
    let rc = c.channel_blocking::<u64>(owner, capacity).unwrap();
    for i in 0..capacity as u64 {
        rc.put_blocking(i).unwrap();
    }
    rc
}

/// Waits until `rc` holds `n` values (values handed back travel without an answer).
fn holds(rc: &RemoteChannel<u64>, n: usize) {
    poll("the channel to hold the values put back", 60, || {
        (rc.len_blocking().unwrap() == Some(n)).then_some(())
    });
}

#[test]
fn a_batch_is_the_oldest_values_there_up_to_the_count_asked() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = channel_on(&c, owner, 10);
    assert_eq!(rc.take_up_to_blocking(0).unwrap(), Vec::<u64>::new());
    assert_eq!(rc.take_up_to_blocking(4).unwrap(), [0, 1, 2, 3]);
    assert_eq!(rc.len_blocking().unwrap(), Some(6));
    // Never waits for a second value: it returns what is there.
    assert_eq!(rc.take_up_to_blocking(100).unwrap(), [4, 5, 6, 7, 8, 9]);
    assert_eq!(rc.len_blocking().unwrap(), Some(0));
    // It waits for the first, as a take does.
    let later = {
        let rc = rc.clone();
        std::thread::spawn(move || rc.take_up_to_blocking(5).unwrap())
    };
    rc.put_blocking(42).unwrap();
    assert_eq!(later.join().unwrap(), [42]);
    drop(rc);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn a_take_ahead_hands_out_every_value_in_order_a_batch_per_round_trip() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = channel_on(&c, owner, 1000);
    let mut taker = rc.take_ahead(64);
    assert_eq!(taker.take_blocking().unwrap(), 0);
    // The first take brought 64 values: 63 held here, the rest left in the channel.
    assert_eq!(taker.held(), 63);
    assert_eq!(rc.len_blocking().unwrap(), Some(1000 - 64));
    let rest: Vec<u64> = (1..1000).map(|_| taker.take_blocking().unwrap()).collect();
    assert_eq!(rest, (1..1000).collect::<Vec<_>>());
    assert_eq!(taker.held(), 0);
    drop(taker);
    drop(rc);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn a_dropped_take_ahead_puts_what_it_holds_back_at_the_front_in_order() {
    let c = Cluster::new();
    let ws = c.addprocs_blocking(2).unwrap();
    let (owner, taker) = (ws[0], ws[1]);
    let rc = channel_on(&c, owner, 20);
    // The driver's taker: takes 0, holds 1..=7; meanwhile another value is put.
    let mut mine = rc.take_ahead(8);
    assert_eq!(mine.take_blocking().unwrap(), 0);
    assert_eq!(mine.held(), 7);
    rc.put_blocking(20).unwrap();
    drop(mine);
    holds(&rc, 20);
    // A worker's taker, the channel on a third process: takes 1 and 2, holds 3..=5.
    let (got, held) = c
        .remotecall_fetch_blocking(take_some_ahead, taker, (rc.clone(), 5, 2))
        .unwrap();
    assert_eq!((got, held), (vec![1, 2], 3));
    holds(&rc, 18);
    let all: Vec<u64> = (0..18)
        .map(|_| rc.take_timeout_blocking(NEVER).unwrap())
        .collect();
    assert_eq!(all, (3..=20).collect::<Vec<_>>());
    drop(rc);
    c.rmprocs_blocking(&ws, None).unwrap();
}

#[test]
fn a_closed_channel_gives_its_last_values_then_says_closed() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = channel_on(&c, owner, 3);
    rc.close_blocking().unwrap();
    let mut taker = rc.take_ahead(100);
    let got: Vec<u64> = (0..3).map(|_| taker.take_blocking().unwrap()).collect();
    assert_eq!(got, [0, 1, 2]);
    assert_eq!(taker.take_blocking(), Err(CallError::ChannelClosed));
    assert_eq!(rc.take_up_to_blocking(5), Err(CallError::ChannelClosed));
    drop(taker);
    drop(rc);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn a_batch_stays_within_its_bytes_and_leaves_the_rest_in_the_channel() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = c.channel_blocking::<Vec<u8>>(owner, 10).unwrap();
    for i in 0..10u8 {
        rc.put_blocking(vec![i; 300 << 10]).unwrap();
    }
    // 300 KiB each: the first and at most four more (about 1 MiB past the first);
    // the rest stays for the next batch.
    let mut next = 0u8;
    while next < 10 {
        let batch = rc.take_up_to_blocking(10).unwrap();
        assert!(
            (1..=5).contains(&batch.len()),
            "{} values in one batch",
            batch.len()
        );
        assert!(
            batch.len() >= 2 || next == 9,
            "a batch of one before the end"
        );
        for v in &batch {
            assert_eq!(v, &vec![next; 300 << 10]);
            next += 1;
        }
    }
    assert_eq!(rc.len_blocking().unwrap(), Some(0));
    drop(rc);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn values_that_encode_to_nothing_come_one_at_a_time() {
    let c = Cluster::new();
    let owner = c.addprocs_blocking(1).unwrap()[0];
    let rc = c.channel_blocking::<()>(owner, 3).unwrap();
    for _ in 0..3 {
        rc.put_blocking(()).unwrap();
    }
    assert_eq!(rc.take_up_to_blocking(3).unwrap(), [()]);
    assert_eq!(rc.len_blocking().unwrap(), Some(2));
    let mut taker = rc.take_ahead(3);
    taker.take_blocking().unwrap();
    taker.take_blocking().unwrap();
    assert_eq!(rc.len_blocking().unwrap(), Some(0));
    drop(taker);
    drop(rc);
    c.rmprocs_blocking(&[owner], None).unwrap();
}

#[test]
fn on_the_owner_a_batch_and_a_dropped_taker_act_on_the_channel_itself() {
    let c = Cluster::new();
    let rc = channel_on(&c, c.myid(), 6);
    assert_eq!(rc.take_up_to_blocking(2).unwrap(), [0, 1]);
    let mut taker = rc.take_ahead(3);
    assert_eq!(taker.take_blocking().unwrap(), 2);
    assert_eq!(taker.held(), 2);
    drop(taker);
    assert_eq!(rc.take_up_to_blocking(10).unwrap(), [3, 4, 5]);
}
