//! Call arguments that hold shared buffers (`SharedBytes`, `serialize_shared`): the
//! message is written from the buffers where they are (spliced into the frame) and
//! must arrive exactly as a copied encoding would — at every size class, mixed with
//! small values in one argument tuple, many calls interleaved on one connection,
//! for `remotecall`, `remotecall_fetch`, `remotecall_wait` and `remote_do`, and
//! refused with a clear error over the message limit.

use std::sync::atomic::{AtomicU64, Ordering};

use cohort::bytes::Bytes;
use cohort::prelude::*;
use cohort::{CallError, Cluster, SharedBytes};

/// A checksum that sees every byte and its position.
fn sum(b: &[u8]) -> u64 {
    b.iter()
        .enumerate()
        .fold(0xcbf2_9ce4_8422_2325, |h, (i, &x)| {
            (h ^ (x as u64).wrapping_add(i as u64)).wrapping_mul(0x100_0000_01b3)
        })
}

fn pattern(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// What the worker saw: each buffer's length and checksum, and the small values.
fn digest(
    a: SharedBytes,
    k: u32,
    b: SharedBytes,
    note: String,
) -> (usize, u64, u32, usize, u64, String) {
    (a.len(), sum(&a), k, b.len(), sum(&b), note)
}

fn expected(a: &Bytes, k: u32, b: &Bytes, note: &str) -> (usize, u64, u32, usize, u64, String) {
    (a.len(), sum(a), k, b.len(), sum(b), note.to_string())
}

#[test]
fn shared_buffers_arrive_as_sent_at_every_size_and_offset() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let min = cohort_cluster::codec::SHARE_MIN;
    // Under the threshold (copied), exactly at it, just over, large, and empty.
    for n in [0, 10, min - 1, min, min + 1, 3 << 20, 40 << 20] {
        let a = pattern(n, 1);
        let b = pattern(n / 2 + 7, 2);
        let got = c
            .remotecall_fetch_blocking(
                digest,
                w,
                (
                    SharedBytes(a.clone()),
                    7,
                    SharedBytes(b.clone()),
                    "x".repeat(n % 100),
                ),
            )
            .unwrap();
        assert_eq!(got, expected(&a, 7, &b, &"x".repeat(n % 100)), "{n} bytes");
        // The caller's buffers are untouched, and still its own to use.
        assert_eq!(a, pattern(n, 1));
    }
    // A slice of a larger buffer: only that slice travels.
    let whole = pattern(5 << 20, 3);
    let part = whole.slice(1000..(1000 + (2 << 20)));
    let got = c
        .remotecall_fetch_blocking(
            digest,
            w,
            (
                SharedBytes(part.clone()),
                1,
                SharedBytes(whole.clone()),
                String::new(),
            ),
        )
        .unwrap();
    assert_eq!(got, expected(&part, 1, &whole, ""));
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn many_spliced_calls_interleave_with_small_ones_on_one_connection() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    // One buffer shared by every call, and one of each call's own.
    let common = pattern(1 << 20, 9);
    let mut calls = Vec::new();
    for i in 0..40u32 {
        let own = pattern(100_000 + i as usize * 4099, i as u8);
        let f = c.remotecall(
            digest,
            w,
            (
                SharedBytes(common.clone()),
                i,
                SharedBytes(own.clone()),
                i.to_string(),
            ),
        );
        let small = c.remotecall(
            digest,
            w,
            (
                SharedBytes::default(),
                i,
                SharedBytes::default(),
                String::new(),
            ),
        );
        calls.push((f, small, own, i));
    }
    for (f, small, own, i) in calls {
        assert_eq!(
            f.fetch_blocking().unwrap(),
            expected(&common, i, &own, &i.to_string())
        );
        assert_eq!(
            small.fetch_blocking().unwrap(),
            expected(&Bytes::new(), i, &Bytes::new(), "")
        );
    }
    c.rmprocs_blocking(&[w], None).unwrap();
}

static SEEN: AtomicU64 = AtomicU64::new(0);

fn note_sum(b: SharedBytes) {
    SEEN.store(sum(&b), Ordering::SeqCst);
}

fn seen() -> u64 {
    SEEN.load(Ordering::SeqCst)
}

fn len_of(b: SharedBytes) -> usize {
    b.len()
}

#[test]
fn remote_do_and_remotecall_wait_splice_too() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let a = pattern(2 << 20, 5);
    c.remote_do(note_sum, w, (SharedBytes(a.clone()),)).unwrap();
    // Calls to one worker arrive in order: the next call runs after the delivery,
    // but may run before `note_sum` has finished on its runner — wait for its mark.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.remotecall_fetch_blocking(seen, w, ()).unwrap() != sum(&a) {
        assert!(
            std::time::Instant::now() < deadline,
            "remote_do's argument never seen"
        );
    }
    let f = c
        .remotecall_wait_blocking(len_of, w, (SharedBytes(a.clone()),))
        .unwrap();
    assert_eq!(f.fetch_blocking().unwrap(), a.len());
    c.rmprocs_blocking(&[w], None).unwrap();
}

#[test]
fn spliced_arguments_over_the_message_limit_are_refused_before_anything_is_sent() {
    let c = Cluster::new();
    c.set_max_frame(1 << 20).unwrap();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let big = pattern(2 << 20, 1);
    let e = c
        .remotecall_fetch_blocking(len_of, w, (SharedBytes(big),))
        .unwrap_err();
    assert!(matches!(e, CallError::PayloadTooLarge { .. }), "{e}");
    // The connection is fine: the next call goes through.
    assert_eq!(
        c.remotecall_fetch_blocking(len_of, w, (SharedBytes(pattern(1000, 2)),))
            .unwrap(),
        1000
    );
    c.rmprocs_blocking(&[w], None).unwrap();
}

/// What the worker saw of `Bulk` arguments: each array's length and checksum.
fn bulk_digest(
    a: cohort::Bulk<f64>,
    k: u32,
    b: Box<cohort::Bulk<u32>>,
    c: cohort::Bulk<u8>,
) -> (usize, u64, u32, usize, u64, usize, u64) {
    let bytes = |x: &[u8]| (x.len(), sum(x));
    let (al, asum) = bytes(bytemuck::cast_slice(&a));
    let (bl, bsum) = bytes(bytemuck::cast_slice(&b));
    let (cl, csum) = bytes(&c);
    (al, asum, k, bl, bsum, cl, csum)
}

fn f64s(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.25 + seed).collect()
}

/// `Bulk` arrays among a call's owned arguments are written from where they are
/// (lent to the message, not copied into it): they arrive as copied ones would, at
/// every size class — under the threshold, exactly at it, large — beside a boxed
/// `Bulk` (not inline in the arguments, so copied) and small values, and many such
/// calls interleave on one connection.
#[test]
fn owned_bulk_arguments_arrive_as_sent_at_every_size() {
    let c = Cluster::new();
    let w = c.launch_blocking(AddProcs::local(1)).unwrap()[0];
    let min = cohort_cluster::codec::SHARE_MIN / 8;
    for n in [0, 3, min - 1, min, min + 1, 5 << 20] {
        let a = f64s(n, 1.0);
        let b: Vec<u32> = (0..(n / 3 + 17) as u32).collect();
        let small = vec![9u8; n % 1000];
        let want = bulk_digest(
            cohort::Bulk(a.clone()),
            n as u32,
            Box::new(cohort::Bulk(b.clone())),
            cohort::Bulk(small.clone()),
        );
        let got = c
            .remotecall_fetch_blocking(
                bulk_digest,
                w,
                (
                    cohort::Bulk(a),
                    n as u32,
                    Box::new(cohort::Bulk(b)),
                    cohort::Bulk(small),
                ),
            )
            .unwrap();
        assert_eq!(got, want, "{n} elements");
    }
    let mut calls = Vec::new();
    for i in 0..30u32 {
        let a = f64s(20_000 + i as usize * 1013, i as f64);
        let want = bulk_digest(
            cohort::Bulk(a.clone()),
            i,
            Box::default(),
            cohort::Bulk(vec![i as u8]),
        );
        let f = c.remotecall(
            bulk_digest,
            w,
            (
                cohort::Bulk(a),
                i,
                Box::default(),
                cohort::Bulk(vec![i as u8]),
            ),
        );
        calls.push((f, want));
    }
    for (f, want) in calls {
        assert_eq!(f.fetch_blocking().unwrap(), want);
    }
    c.rmprocs_blocking(&[w], None).unwrap();
}
