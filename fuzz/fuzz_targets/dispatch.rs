//! Fuzzes the dispatch of envelopes on an established connection: one process's
//! cluster core (`cohort_cluster::fuzzing::Dispatch`, a worker of a small cluster or
//! its master) is fed what its peers could send — any bytes that decode as an
//! envelope, and envelopes built to be valid but wrong: set-up messages on an open
//! connection, no kind at all, call modes that do not exist, replies nobody asked
//! for, reference requests and batches naming ids and processes that do not exist,
//! membership updates adding or removing anyone — interleaved with time passing,
//! the calls it was asked to run finishing, requests and references of its own, and
//! connections ending.
//!
//! Checked (by the harness at every step, and here at the end):
//!
//! - no panic, whatever comes in;
//! - every request of its own is answered at most once, and nothing is sent to the
//!   process itself;
//! - nothing waits forever: once every peer stays silent past the heartbeat timeout,
//!   the core waits for no reply (each was answered or failed naming its peer), unless
//!   it asked to exit (a worker whose master went silent).
#![no_main]

use bytes::Bytes;
use cohort_cluster::fuzzing::{payload, Dispatch};
use cohort_wire::envelope::decode_envelope;
use cohort_wire::proto::{
    self, call_result::Outcome, envelope::Kind, function_ref::Target, Envelope, RefIdMsg,
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as a sequence of small numbers.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn small(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a
    }
    /// A pid among those of the cluster, itself, 0 and a few that never existed.
    fn pid(&mut self) -> u32 {
        u32::from(self.small() % 9)
    }
    fn ref_id(&mut self) -> RefIdMsg {
        RefIdMsg {
            whence: self.pid(),
            id: u64::from(self.small() % 8),
        }
    }
}

fn call(inp: &mut Input<'_>) -> proto::Call {
    let target = match inp.small() % 3 {
        0 => Some(Target::Name("echo".into())),
        1 => Some(Target::CodeOffset(i64::from(inp.small()) - 128)),
        _ => None,
    };
    proto::Call {
        call_id: u64::from(inp.small() % 16),
        // 0..=5 are the modes; more are unknown.
        mode: i32::from(inp.small() % 8),
        result_ref: (inp.small() % 2 == 0).then(|| inp.ref_id()),
        function: Some(proto::FunctionRef {
            target,
            display: "echo".into(),
        }),
        args: payload(usize::from(inp.small() % 4)),
        // The core passes a kept function state through to the shell untouched.
        capture: (inp.small() % 4 == 0).then(|| proto::Capture {
            key: payload(usize::from(inp.small() % 4)).to_vec(),
            forget: vec![payload(usize::from(inp.small() % 2)).to_vec()],
        }),
        capture_state: payload(usize::from(inp.small() % 4)),
    }
}

/// An envelope that is well formed, whatever the state it arrives in.
fn structured(inp: &mut Input<'_>) -> Envelope {
    let kind = match inp.small() % 13 {
        0 => None,
        1 => Some(Kind::Call(call(inp))),
        2 => Some(Kind::Result(proto::CallResult {
            call_id: u64::from(inp.small() % 16),
            outcome: match inp.small() % 4 {
                0 => Some(Outcome::Value(payload(2))),
                1 => Some(Outcome::Error(proto::RemoteError {
                    pid: inp.pid(),
                    kind: i32::from(inp.small() % 12),
                    function: "f".into(),
                    message: "m".into(),
                    context: String::new(),
                })),
                2 => Some(Outcome::Stored(true)),
                _ => None,
            },
        })),
        3 => Some(Kind::Identify(proto::Identify { pid: inp.pid() })),
        4 => Some(Kind::Join(proto::Join {
            pid: inp.pid(),
            ..Default::default()
        })),
        5 => Some(Kind::JoinComplete(proto::JoinComplete::default())),
        6 => {
            let n = inp.small() % 4;
            Some(Kind::RefBatch(proto::RefBatch {
                ops: (0..n)
                    .map(|_| proto::RefOp {
                        ref_id: (inp.small() % 8 != 0).then(|| inp.ref_id()),
                        client: inp.pid(),
                        delta: i64::from(inp.small() as i8),
                    })
                    .collect(),
            }))
        }
        7 => Some(Kind::RefRequest(proto::RefRequest {
            call_id: u64::from(inp.small() % 16),
            ref_id: (inp.small() % 8 != 0).then(|| inp.ref_id()),
            // The kinds (credit messages included), and some that do not exist.
            kind: i32::from(inp.small() % 15),
            value: payload(usize::from(inp.small() % 3)),
            creator: inp.pid(),
            credits: u32::from(inp.small() % 4),
        })),
        8 => {
            let added = (0..inp.small() % 3)
                .map(|_| proto::WorkerInfo {
                    pid: inp.pid(),
                    host: "h".into(),
                    port: 1,
                    ..Default::default()
                })
                .collect();
            let removed = (0..inp.small() % 3).map(|_| inp.pid()).collect();
            Some(Kind::PeerUpdate(proto::PeerUpdate { added, removed }))
        }
        9 => Some(Kind::Exit(proto::Exit {})),
        10 => Some(Kind::Interrupt(proto::Interrupt {})),
        _ => Some(Kind::Heartbeat(proto::Heartbeat {})),
    };
    Envelope { kind }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let setup = inp.small();
    let workers = u32::from(setup % 4) + 1;
    let mut d = if setup & 0x80 == 0 {
        Dispatch::worker(2 + u32::from((setup >> 2) % 4) % workers, workers)
    } else {
        Dispatch::master(workers)
    };
    let mut steps = 0;
    while let Some(op) = inp.byte() {
        steps += 1;
        if steps > 512 || d.exited() {
            break;
        }
        match op % 9 {
            0 => {
                let n = usize::from(inp.small());
                let raw = Bytes::copy_from_slice(inp.bytes(n));
                let from = inp.pid();
                // What a reader hands over: only what decodes (the rest ends the
                // connection before the core sees it).
                if let Ok(env) = decode_envelope(raw) {
                    d.deliver(from, env);
                }
            }
            1 | 2 => {
                let from = inp.pid();
                let env = structured(&mut inp);
                d.deliver(from, env);
            }
            3 => {
                d.tick(u64::from(inp.small() % 40));
            }
            4 => {
                let (i, ok) = (usize::from(inp.small()), inp.small() % 2 == 0);
                d.finish(i, ok);
            }
            5 => {
                let to = inp.pid();
                let mut c = call(&mut inp);
                c.mode = proto::CallMode::Fetch as i32;
                let id = c.call_id;
                let env = if inp.small() % 2 == 0 {
                    Envelope {
                        kind: Some(Kind::Call(c)),
                    }
                } else {
                    Envelope {
                        kind: Some(Kind::RefRequest(proto::RefRequest {
                            call_id: id,
                            ref_id: Some(inp.ref_id()),
                            kind: proto::RefRequestKind::Fetch as i32,
                            value: Bytes::new(),
                            creator: inp.pid(),
                            credits: 0,
                        })),
                    }
                };
                d.request(to, id, env);
            }
            6 => {
                let owner = inp.pid();
                d.create_ref(owner);
            }
            7 => {
                d.drop_ref(usize::from(inp.small()));
            }
            _ => {
                let pid = inp.pid();
                d.lose(pid);
            }
        }
    }
    // Everyone falls silent: within a few heartbeat timeouts every peer is declared
    // and nothing may still wait for a reply.
    for _ in 0..30 {
        if d.exited() {
            return;
        }
        d.tick(10);
    }
    assert!(
        d.exited() || d.pending_replies() == 0,
        "{} replies still awaited after every peer fell silent: {d:?}",
        d.pending_replies()
    );
});
