//! A deterministic simulation of the credit protocol: one owner with a bounded
//! channel (a model with `Channel`'s reservation rules) and three putters, each with
//! a [`Wallet`], the owner with a [`Ledger`], over per-direction FIFO links delivered
//! in seeded random order; the owner takes values, may close the channel, and a
//! putter may stop (forget the channel) or die.
//!
//! Checked after every step: the channel's reserved places are exactly the credits
//! the ledger lends; values and reservations never exceed the capacity; every
//! credited put finds a credit; for each putter the ledger's count equals its
//! wallet's plus what is on the links (credited puts and returns one way, grants the
//! other). At the end, after delivering everything and taking what is there: no put
//! waits (a put held up by reservations got them back), nothing is reserved once
//! every putter stopped, every value whose put succeeded was taken exactly once and
//! in each putter's order, and no value whose put failed was.
//!
//! `COHORT_SIM_SEEDS` sets how many seeds run (default 2,000).

use std::collections::{HashMap, VecDeque};

use cohort_wire::ids::{Pid, RefId};

use super::super::sim::Rng;
use super::{Ledger, Wallet};

const OWNER: Pid = 1;
const PUTTERS: [Pid; 3] = [2, 3, 4];
const ID: RefId = RefId { whence: 1, id: 7 };

/// A value: who put it and its number in that putter's sequence.
type Value = (Pid, u32);

#[derive(Debug, Clone)]
enum Msg {
    /// Putter to owner.
    Put {
        v: Value,
        want: u32,
    },
    PutCredited {
        v: Value,
        topup: u32,
    },
    Return(u32),
    /// Owner to putter.
    Ack(bool),
    Grant(u32),
    Revoke,
    /// The putter's connection ended (after everything it sent).
    Lost,
}

/// The owner's channel, with `Channel`'s reservation rules.
struct Model {
    cap: usize,
    buffer: VecDeque<Value>,
    reserved: usize,
    closed: bool,
    wants_places: bool,
    /// Normal puts waiting for room, oldest first: (from, value).
    blocked: VecDeque<(Pid, Value)>,
}

impl Model {
    fn reserve(&mut self, max: u32) -> u32 {
        if self.closed || !self.blocked.is_empty() {
            return 0;
        }
        let free = self.cap.saturating_sub(self.buffer.len() + self.reserved) as u32;
        let n = free.min(max).min((free / 2).max(1));
        self.reserved += n as usize;
        if n < max {
            self.wants_places = true;
        }
        n
    }
    fn fits(&self) -> bool {
        self.buffer.len() + self.reserved < self.cap
    }
}

struct Putter {
    wallet: Wallet,
    next: u32,
    last: u32,
    /// A normal put waits for its answer: its value.
    waiting: Option<Value>,
    stopped: bool,
    dead: bool,
}

struct World {
    rng: Rng,
    model: Model,
    ledger: Ledger,
    putters: HashMap<Pid, Putter>,
    /// (from, to) -> messages in order.
    links: HashMap<(Pid, Pid), VecDeque<Msg>>,
    ok: Vec<Value>,
    failed: Vec<Value>,
    taken: Vec<Value>,
    trace: Vec<String>,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let cap = 1 + rng.below(6);
        let putters = PUTTERS
            .iter()
            .map(|&p| {
                let last = 3 + rng.below(20) as u32;
                (
                    p,
                    Putter {
                        wallet: Wallet::default(),
                        next: 0,
                        last,
                        waiting: None,
                        stopped: false,
                        dead: false,
                    },
                )
            })
            .collect();
        World {
            rng,
            model: Model {
                cap,
                buffer: VecDeque::new(),
                reserved: 0,
                closed: false,
                wants_places: false,
                blocked: VecDeque::new(),
            },
            ledger: Ledger::default(),
            putters,
            links: HashMap::new(),
            ok: Vec::new(),
            failed: Vec::new(),
            taken: Vec::new(),
            trace: Vec::new(),
        }
    }

    fn send(&mut self, from: Pid, to: Pid, m: Msg) {
        self.trace.push(format!("{from}->{to} {m:?}"));
        self.links.entry((from, to)).or_default().push_back(m);
    }

    // ----- the owner -----

    fn grant(&mut self, holder: Pid, want: u32) {
        let room = self.ledger.room(ID, holder, want);
        if room > 0 {
            let g = self.model.reserve(room);
            if g > 0 {
                self.ledger.granted(ID, holder, g);
                self.send(OWNER, holder, Msg::Grant(g));
            }
        }
    }

    fn revoke_all(&mut self) {
        for pid in self.ledger.revoke_all(ID) {
            self.send(OWNER, pid, Msg::Revoke);
        }
    }

    /// Retries waiting puts in order; one that still does not fit only because of
    /// reservations asks for them back (`Reservations::Wanted`).
    fn retry_blocked(&mut self) {
        while let Some(&(from, v)) = self.model.blocked.front() {
            if self.model.closed {
                self.model.blocked.pop_front();
                self.send(OWNER, from, Msg::Ack(false));
            } else if self.model.fits() {
                self.model.blocked.pop_front();
                self.model.buffer.push_back(v);
                self.send(OWNER, from, Msg::Ack(true));
            } else {
                if self.model.buffer.len() < self.model.cap {
                    self.revoke_all();
                }
                return;
            }
        }
    }

    fn owner_gets(&mut self, from: Pid, m: Msg) {
        match m {
            Msg::Put { v, want } => {
                if self.model.closed {
                    self.send(OWNER, from, Msg::Ack(false));
                } else if self.model.blocked.is_empty() && self.model.fits() {
                    self.model.buffer.push_back(v);
                    // The grant before the answer, on the same link.
                    self.grant(from, want);
                    self.send(OWNER, from, Msg::Ack(true));
                } else {
                    self.model.blocked.push_back((from, v));
                    self.retry_blocked();
                }
            }
            Msg::PutCredited { v, topup } => {
                assert!(
                    self.ledger.spent(ID, from),
                    "a credited put of {from} found no credit"
                );
                assert!(self.model.reserved > 0, "a credited put found no place");
                self.model.reserved -= 1;
                self.model.buffer.push_back(v);
                if topup > 0 {
                    self.grant(from, topup);
                }
            }
            Msg::Return(n) => {
                let back = self.ledger.returned(ID, from, n);
                self.model.reserved -= back as usize;
                self.retry_blocked();
            }
            Msg::Lost => {
                for (id, n) in self.ledger.holder_gone(from) {
                    assert_eq!(id, ID);
                    self.model.reserved -= n as usize;
                }
                self.model.blocked.retain(|(p, _)| *p != from);
                self.retry_blocked();
            }
            Msg::Ack(_) | Msg::Grant(_) | Msg::Revoke => unreachable!("owner-bound only"),
        }
    }

    fn take(&mut self) {
        let Some(v) = self.model.buffer.pop_front() else {
            return;
        };
        self.trace.push(format!("take {v:?}"));
        self.taken.push(v);
        self.retry_blocked();
        if self.model.wants_places && !self.model.closed {
            self.model.wants_places = false;
            for (holder, more) in self.ledger.wanting(ID) {
                let g = self.model.reserve(more);
                if g > 0 {
                    self.ledger.granted(ID, holder, g);
                    self.send(OWNER, holder, Msg::Grant(g));
                }
            }
        }
    }

    fn close(&mut self) {
        self.trace.push("close".into());
        self.model.closed = true;
        self.retry_blocked();
        if self.model.reserved > 0 {
            self.revoke_all();
        }
    }

    // ----- a putter -----

    fn put(&mut self, p: Pid) {
        let pu = self.putters.get_mut(&p).unwrap();
        let v = (p, pu.next);
        pu.next += 1;
        match pu.wallet.spend(ID) {
            Some(topup) => {
                self.ok.push(v);
                self.send(p, OWNER, Msg::PutCredited { v, topup });
            }
            None => {
                let want = pu.wallet.asking(OWNER, ID);
                pu.waiting = Some(v);
                self.send(p, OWNER, Msg::Put { v, want });
            }
        }
    }

    fn putter_gets(&mut self, p: Pid, m: Msg) {
        let pu = self.putters.get_mut(&p).unwrap();
        match m {
            Msg::Ack(ok) => {
                let v = pu.waiting.take().expect("an answer to a waiting put");
                if ok {
                    self.ok.push(v);
                } else {
                    self.failed.push(v);
                }
            }
            Msg::Grant(n) => {
                if !pu.wallet.granted(OWNER, ID, n) {
                    self.send(p, OWNER, Msg::Return(n));
                }
            }
            Msg::Revoke => {
                let n = pu.wallet.revoke(ID);
                self.send(p, OWNER, Msg::Return(n));
            }
            _ => unreachable!("putter-bound only"),
        }
    }

    fn stop(&mut self, p: Pid) {
        let pu = self.putters.get_mut(&p).unwrap();
        pu.stopped = true;
        if let Some((owner, n)) = pu.wallet.forget(ID) {
            self.send(p, owner, Msg::Return(n));
        }
    }

    fn die(&mut self, p: Pid) {
        self.trace.push(format!("{p} dies"));
        let pu = self.putters.get_mut(&p).unwrap();
        pu.dead = true;
        if let Some(v) = pu.waiting.take() {
            // Its put may or may not have been stored: it is in neither list, and
            // the end check allows it either way.
            self.trace.push(format!("{v:?} in doubt"));
        }
        self.links.remove(&(OWNER, p));
        self.send(p, OWNER, Msg::Lost);
    }

    // ----- the world -----

    fn deliver(&mut self) -> bool {
        let mut keys: Vec<(Pid, Pid)> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return false;
        }
        keys.sort_unstable();
        let (from, to) = keys[self.rng.below(keys.len())];
        let m = self
            .links
            .get_mut(&(from, to))
            .unwrap()
            .pop_front()
            .unwrap();
        self.trace.push(format!("  deliver {from}->{to} {m:?}"));
        if to == OWNER {
            self.owner_gets(from, m);
        } else if !self.putters[&to].dead {
            self.putter_gets(to, m);
        }
        true
    }

    fn check(&self) {
        let m = &self.model;
        assert_eq!(m.reserved as u32, self.ledger.lent(ID), "reserved vs lent");
        assert!(m.buffer.len() + m.reserved <= m.cap, "over the capacity");
        for (&p, pu) in &self.putters {
            if pu.dead {
                continue;
            }
            let on = |from, to, f: &dyn Fn(&Msg) -> u32| -> u32 {
                self.links
                    .get(&(from, to))
                    .map_or(0, |q| q.iter().map(f).sum())
            };
            let up = on(p, OWNER, &|m| match m {
                Msg::PutCredited { .. } => 1,
                Msg::Return(n) => *n,
                _ => 0,
            });
            let down = on(OWNER, p, &|m| match m {
                Msg::Grant(n) => *n,
                _ => 0,
            });
            let lent = self
                .ledger
                .lent
                .get(&ID)
                .and_then(|h| h.get(&p))
                .map_or(0, |l| l.credits);
            assert_eq!(
                lent,
                pu.wallet.credits(ID) + up + down,
                "the books of {p} disagree"
            );
        }
    }

    fn run(&mut self) {
        let mut closed = false;
        let mut died = false;
        for _ in 0..400 {
            match self.rng.below(20) {
                0..=5 => {
                    let p = PUTTERS[self.rng.below(3)];
                    let pu = &self.putters[&p];
                    if !pu.dead && !pu.stopped && pu.waiting.is_none() && pu.next < pu.last {
                        self.put(p);
                    }
                }
                6..=8 => self.take(),
                9 if !closed && self.rng.below(8) == 0 => {
                    closed = true;
                    self.close();
                }
                10 if self.rng.below(6) == 0 => {
                    let p = PUTTERS[self.rng.below(3)];
                    if !self.putters[&p].dead && !self.putters[&p].stopped {
                        self.stop(p);
                    }
                }
                11 if !died && self.rng.below(10) == 0 => {
                    died = true;
                    let p = PUTTERS[self.rng.below(3)];
                    self.die(p);
                }
                _ => {
                    self.deliver();
                }
            }
            self.check();
        }
        // Quiesce with every putter still holding what it holds: a waiting put
        // must get its place back from them.
        loop {
            while self.deliver() {
                self.check();
            }
            if self.model.buffer.is_empty() {
                break;
            }
            while !self.model.buffer.is_empty() {
                self.take();
                self.check();
            }
        }
        assert!(self.model.blocked.is_empty(), "a put still waits");
        for pu in self.putters.values() {
            assert!(pu.dead || pu.waiting.is_none(), "a putter still waits");
        }
        // Every putter stops: nothing stays reserved.
        for p in PUTTERS {
            if !self.putters[&p].dead && !self.putters[&p].stopped {
                self.stop(p);
            }
        }
        while self.deliver() {
            self.check();
        }
        assert_eq!(self.model.reserved, 0, "places stay reserved");
        // Nothing lost, nothing twice, each putter's values in its order.
        let mut taken = self.taken.clone();
        for v in &self.failed {
            assert!(!taken.contains(v), "{v:?} failed but was taken");
        }
        for v in &self.ok {
            let n = taken.iter().filter(|t| *t == v).count();
            assert_eq!(n, 1, "{v:?} was put and taken {n} times");
        }
        taken.retain(|v| !self.ok.contains(v));
        for v in &taken {
            // Only the put a putter was waiting for when it died may be in doubt.
            assert!(self.putters[&v.0].dead, "{v:?} taken but never put");
        }
        for p in PUTTERS {
            let seq: Vec<u32> = self
                .taken
                .iter()
                .filter(|v| v.0 == p)
                .map(|v| v.1)
                .collect();
            assert!(
                seq.windows(2).all(|w| w[0] < w[1]),
                "{p}'s values out of order: {seq:?}"
            );
        }
    }
}

#[test]
fn credits_keep_every_value_and_free_every_place() {
    let seeds: u64 = std::env::var("COHORT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut credited = 0;
    for seed in 0..seeds {
        let mut w = World::new(seed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run()));
        if let Err(e) = result {
            eprintln!("seed {seed} failed; trace:\n{}", w.trace.join("\n"));
            std::panic::resume_unwind(e);
        }
        credited += w
            .trace
            .iter()
            .filter(|l| l.starts_with("  deliver") && l.contains("PutCredited"))
            .count();
    }
    // The runs must exercise the credited path, not only plain puts.
    assert!(credited > 0, "no credited put in {seeds} seeds");
}
