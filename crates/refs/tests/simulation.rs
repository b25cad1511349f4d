//! Deterministic simulation of the reference-tracking protocol across several processes.
//!
//! Each run (one seed) models 3–6 processes, each with a `RefTracker`, connected by a
//! network of per-pair FIFO queues that are delivered in a random interleaving. Random
//! actions create references, clone, send (and forward) handles, drop them, release them
//! early (fetch / finalize), advance time (which drives batching) and kill processes.
//!
//! Checked after every step (safety): no value is freed while a live process holds a
//! handle to it or a handle to it is in flight to a live process; no value is freed
//! twice; the trackers' handle counts equal the model's.
//! Checked at the end (liveness): once every live process drops every handle and every
//! batch is delivered, every live process tracks nothing, and every value stored on a
//! live process has been freed — also those whose clients died.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use cohort_refs::{BatchPolicy, RefOp, RefTracker};
use cohort_wire::ids::{Pid, RefId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
enum Msg {
    /// A batch of reference ops.
    Ops(Vec<RefOp>),
    /// A message carrying one handle.
    Handle { id: RefId, owner: Pid },
    /// The creating call: the receiver stores the value and registers `client`.
    Insert { id: RefId, client: Pid },
    /// The end of the sender's connection: it died after sending everything before this.
    Died(Pid),
}

struct Proc {
    t: RefTracker<RefId>,
    alive: bool,
    /// The model: live handles per reference, with the owner.
    held: BTreeMap<RefId, (Pid, u64)>,
    next_id: u64,
}

/// What a simulation run can be asked to do differently.
#[derive(Clone, Copy)]
struct Config {
    steps: usize,
    max_deaths: usize,
    /// The runtime duty: flush the owner's queue before sending a handle.
    flush_before_send: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            steps: 400,
            max_deaths: 2,
            flush_before_send: true,
        }
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct Totals {
    created: u64,
    freed: u64,
    sends: u64,
    deaths: u64,
    batches: u64,
    ops: u64,
}

struct Sim {
    seed: u64,
    cfg: Config,
    rng: StdRng,
    now: Instant,
    procs: Vec<Proc>,
    net: BTreeMap<(Pid, Pid), VecDeque<Msg>>,
    freed: BTreeSet<RefId>,
    inserted: BTreeMap<RefId, Pid>,
    deaths: usize,
    trace: VecDeque<String>,
    totals: Totals,
}

type R = Result<(), String>;

impl Sim {
    fn new(seed: u64, cfg: Config) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=6);
        let policy = BatchPolicy {
            max_ops: rng.gen_range(1..=8),
            max_delay: Duration::from_micros(rng.gen_range(0..2000)),
        };
        let procs = (1..=n)
            .map(|pid| Proc {
                t: RefTracker::new(pid, policy),
                alive: true,
                held: BTreeMap::new(),
                next_id: 0,
            })
            .collect();
        Sim {
            seed,
            cfg,
            rng,
            now: Instant::now(),
            procs,
            net: BTreeMap::new(),
            freed: BTreeSet::new(),
            inserted: BTreeMap::new(),
            deaths: 0,
            trace: VecDeque::new(),
            totals: Totals::default(),
        }
    }

    fn p(&mut self, pid: Pid) -> &mut Proc {
        &mut self.procs[pid as usize - 1]
    }

    fn alive(&self, pid: Pid) -> bool {
        self.procs[pid as usize - 1].alive
    }

    fn alive_pids(&self) -> Vec<Pid> {
        (1..=self.procs.len() as Pid)
            .filter(|&p| self.alive(p))
            .collect()
    }

    fn log(&mut self, s: String) {
        if self.trace.len() == 60 {
            self.trace.pop_front();
        }
        self.trace.push_back(s);
    }

    fn fail(&self, what: String) -> String {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        format!(
            "seed {}: {what}\nlast actions:\n  {}",
            self.seed,
            trace.join("\n  ")
        )
    }

    fn send(&mut self, from: Pid, to: Pid, msg: Msg) {
        if self.alive(to) {
            self.net.entry((from, to)).or_default().push_back(msg);
        }
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            None
        } else {
            Some(v[self.rng.gen_range(0..v.len())])
        }
    }

    fn pick_held(&mut self, pid: Pid) -> Option<RefId> {
        let ids: Vec<RefId> = self.p(pid).held.keys().copied().collect();
        self.pick(&ids)
    }

    // ---- actions -------------------------------------------------------------------

    fn create(&mut self, p: Pid) -> R {
        let alive = self.alive_pids();
        let owner = self.pick(&alive).unwrap();
        let pr = self.p(p);
        pr.next_id += 1;
        let id = RefId::new(p, pr.next_id);
        pr.t.created(id, owner).map_err(|e| e.to_string())?;
        pr.held.insert(id, (owner, 1));
        if owner == p {
            pr.t.insert(id, id, p)
                .map_err(|_| "double insert".to_string())?;
            self.inserted.insert(id, p);
        } else {
            self.send(p, owner, Msg::Insert { id, client: p });
        }
        self.totals.created += 1;
        self.log(format!("{p} creates {id} on {owner}"));
        Ok(())
    }

    fn clone_handle(&mut self, p: Pid) -> R {
        let Some(id) = self.pick_held(p) else {
            return Ok(());
        };
        let pr = self.p(p);
        pr.t.cloned(id).map_err(|e| e.to_string())?;
        pr.held.get_mut(&id).unwrap().1 += 1;
        self.log(format!("{p} clones {id}"));
        Ok(())
    }

    fn send_handle(&mut self, p: Pid) -> R {
        let Some(id) = self.pick_held(p) else {
            return Ok(());
        };
        let alive = self.alive_pids();
        let dest = self.pick(&alive).unwrap();
        let now = self.now;
        let owner = self
            .p(p)
            .t
            .serialized(id, dest, now)
            .map_err(|e| e.to_string())?;
        if self.cfg.flush_before_send {
            if let Some(ops) = self.p(p).t.flush(owner) {
                self.count_batch(&ops);
                self.send(p, owner, Msg::Ops(ops));
            }
        }
        self.send(p, dest, Msg::Handle { id, owner });
        self.totals.sends += 1;
        self.log(format!("{p} sends {id} to {dest}"));
        // Half the time the send moves the handle.
        if self.rng.gen_bool(0.5) {
            self.drop_one(p, id)?;
        }
        Ok(())
    }

    fn drop_one(&mut self, p: Pid, id: RefId) -> R {
        let now = self.now;
        let pr = self.p(p);
        let last = pr.t.dropped(id, now).map_err(|e| e.to_string())?;
        let e = pr.held.get_mut(&id).unwrap();
        e.1 -= 1;
        let model_last = e.1 == 0;
        if model_last {
            pr.held.remove(&id);
        }
        self.log(format!(
            "{p} drops {id}{}",
            if last { " (last)" } else { "" }
        ));
        if last != model_last {
            return Err(self.fail(format!("dropped({id}) on {p} said last={last}")));
        }
        Ok(())
    }

    fn drop_handle(&mut self, p: Pid) -> R {
        match self.pick_held(p) {
            Some(id) => self.drop_one(p, id),
            None => Ok(()),
        }
    }

    fn release(&mut self, p: Pid) -> R {
        let Some(id) = self.pick_held(p) else {
            return Ok(());
        };
        let now = self.now;
        let pr = self.p(p);
        pr.t.released(id, now).map_err(|e| e.to_string())?;
        pr.held.remove(&id);
        self.log(format!("{p} releases (fetches) {id}"));
        Ok(())
    }

    fn deliver_one(&mut self) -> R {
        let busy: Vec<(Pid, Pid)> = self
            .net
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        let Some((from, to)) = self.pick(&busy) else {
            return Ok(());
        };
        let msg = self.net.get_mut(&(from, to)).unwrap().pop_front().unwrap();
        self.log(format!("{from}->{to} delivers {msg:?}"));
        let pr = self.p(to);
        match msg {
            Msg::Ops(ops) => pr.t.handle_ops(ops),
            Msg::Handle { id, owner } => {
                pr.t.deserialized(id, owner).map_err(|e| e.to_string())?;
                pr.held.entry(id).or_insert((owner, 0)).1 += 1;
            }
            Msg::Insert { id, client } => {
                pr.t.insert(id, id, client)
                    .map_err(|_| format!("double insert of {id}"))?;
                self.inserted.insert(id, to);
            }
            Msg::Died(pid) => pr.t.handle_peer_died(pid),
        }
        Ok(())
    }

    fn kill(&mut self, p: Pid) {
        self.log(format!("{p} dies"));
        let pr = self.p(p);
        pr.alive = false;
        pr.held.clear();
        self.net.retain(|&(_, to), _| to != p);
        for x in self.alive_pids() {
            self.net.entry((p, x)).or_default().push_back(Msg::Died(p));
        }
        self.deaths += 1;
        self.totals.deaths += 1;
    }

    fn count_batch(&mut self, ops: &[RefOp]) {
        self.totals.batches += 1;
        self.totals.ops += ops.len() as u64;
    }

    /// What the runtime does after every event: send due batches, drop freed values.
    fn pump(&mut self) -> R {
        let now = self.now;
        for p in self.alive_pids() {
            while let Some((to, ops)) = self.p(p).t.poll_transmit(now) {
                self.count_batch(&ops);
                self.send(p, to, Msg::Ops(ops));
            }
            while let Some((id, v)) = self.p(p).t.poll_freed() {
                if id != v {
                    return Err(self.fail(format!("freed {id} came with value {v}")));
                }
                if self.inserted.get(&id) != Some(&p) {
                    return Err(self.fail(format!("{p} freed {id}, which it does not own")));
                }
                if !self.freed.insert(id) {
                    return Err(self.fail(format!("{id} freed twice")));
                }
                self.totals.freed += 1;
                self.log(format!("{p} frees {id}"));
            }
        }
        Ok(())
    }

    fn check_safety(&self) -> R {
        for (i, pr) in self.procs.iter().enumerate() {
            if !pr.alive {
                continue;
            }
            let pid = i as Pid + 1;
            for (id, &(owner, n)) in &pr.held {
                if self.alive(owner) && self.freed.contains(id) {
                    return Err(self.fail(format!("{id} freed while {pid} holds it")));
                }
                if pr.t.client().handles(id) != n {
                    return Err(self.fail(format!(
                        "{pid} tracks {} handles to {id}, model says {n}",
                        pr.t.client().handles(id)
                    )));
                }
            }
            if pr.t.stats().held_refs != pr.held.len() {
                return Err(self.fail(format!("{pid} held_refs disagrees with the model")));
            }
        }
        for (&(_, to), q) in &self.net {
            for m in q {
                if let Msg::Handle { id, owner } = m {
                    if self.alive(to) && self.alive(*owner) && self.freed.contains(id) {
                        return Err(self.fail(format!("{id} freed while in flight to {to}")));
                    }
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> R {
        let alive = self.alive_pids();
        let p = self.pick(&alive).unwrap();
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=7 => self.create(p)?,
            8..=15 => self.clone_handle(p)?,
            16..=33 => self.send_handle(p)?,
            34..=47 => self.drop_handle(p)?,
            48..=50 => self.release(p)?,
            51..=89 => self.deliver_one()?,
            90..=98 => {
                self.now += Duration::from_micros(self.rng.gen_range(0..1500));
            }
            _ => {
                if self.deaths < self.cfg.max_deaths && alive.len() > 2 {
                    self.kill(p);
                }
            }
        }
        self.pump()?;
        self.check_safety()
    }

    /// Drop everything (also handles still arriving), then deliver until quiet, driving
    /// batches by their timers rather than by flushing.
    fn wind_down(&mut self) -> R {
        for _round in 0..100_000 {
            for p in self.alive_pids() {
                while let Some(id) = self.pick_held(p) {
                    self.drop_one(p, id)?;
                    self.pump()?;
                    self.check_safety()?;
                }
            }
            if self.net.values().any(|q| !q.is_empty()) {
                self.deliver_one()?;
                self.pump()?;
                self.check_safety()?;
                continue;
            }
            let deadline = self
                .alive_pids()
                .into_iter()
                .filter_map(|p| self.procs[p as usize - 1].t.poll_timeout())
                .min();
            match deadline {
                Some(d) => {
                    self.now = self.now.max(d);
                    self.pump()?;
                }
                None => break,
            }
        }
        for p in self.alive_pids() {
            let s = self.procs[p as usize - 1].t.stats();
            if !s.is_quiescent() {
                return Err(self.fail(format!("{p} still tracks something at the end: {s:?}")));
            }
        }
        for (id, owner) in &self.inserted {
            if self.alive(*owner) && !self.freed.contains(id) {
                return Err(self.fail(format!("{id} on {owner} never freed")));
            }
        }
        Ok(())
    }

    fn run(mut self) -> Result<Totals, String> {
        for _ in 0..self.cfg.steps {
            self.step()?;
        }
        self.wind_down()?;
        Ok(self.totals)
    }
}

fn seeds() -> u64 {
    std::env::var("COHORT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
}

fn run_many(cfg: Config, first_seed: u64) -> (Totals, Vec<String>) {
    let mut sum = Totals::default();
    let mut failures = Vec::new();
    for seed in first_seed..first_seed + seeds() {
        match Sim::new(seed, cfg).run() {
            Ok(t) => {
                sum.created += t.created;
                sum.freed += t.freed;
                sum.sends += t.sends;
                sum.deaths += t.deaths;
                sum.batches += t.batches;
                sum.ops += t.ops;
            }
            Err(e) => failures.push(e),
        }
    }
    (sum, failures)
}

#[test]
fn simulation_without_deaths_is_safe_and_leak_free() {
    let cfg = Config {
        max_deaths: 0,
        ..Config::default()
    };
    let (t, failures) = run_many(cfg, 0);
    assert!(
        failures.is_empty(),
        "{} failing seeds; first:\n{}",
        failures.len(),
        failures[0]
    );
    // Everything created was stored somewhere alive, so everything was freed.
    assert_eq!(t.created, t.freed, "{t:?}");
    assert!(t.sends > 1000, "the simulation exercises sends: {t:?}");
    println!("{t:?}");
}

#[test]
fn simulation_with_deaths_is_safe_and_releases_dead_registrations() {
    let (t, failures) = run_many(Config::default(), 1_000_000);
    assert!(
        failures.is_empty(),
        "{} failing seeds; first:\n{}",
        failures.len(),
        failures[0]
    );
    assert!(t.deaths > 0, "the simulation exercises deaths: {t:?}");
    println!("{t:?}");
}

#[test]
fn simulation_of_long_runs() {
    let cfg = Config {
        steps: 3000,
        ..Config::default()
    };
    let n = (seeds() / 10).max(1);
    let mut failures = Vec::new();
    for seed in 2_000_000..2_000_000 + n {
        if let Err(e) = Sim::new(seed, cfg).run() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds; first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// Replays one seed, for debugging: `COHORT_SIM_SEED=123 cargo test -p cohort-refs
/// --test simulation replay -- --nocapture`.
#[test]
fn replay() {
    if let Some(seed) = std::env::var("COHORT_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = Sim::new(seed, Config::default()).run() {
            panic!("{e}");
        }
    }
}

/// Without deaths, safety does not depend on flushing before a handle is sent: ordinary
/// batching by size and delay keeps a sender's add ahead of its own delete.
#[test]
fn without_deaths_adds_may_wait_in_batches() {
    let cfg = Config {
        max_deaths: 0,
        flush_before_send: false,
        ..Config::default()
    };
    let (_, failures) = run_many(cfg, 3_000_000);
    assert!(
        failures.is_empty(),
        "{} failing seeds; first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// With deaths and without the flush-before-send duty, a sender can die with the add for
/// a handle it already sent still queued; then the receiver's delete is never balanced
/// and the value can be freed under a holder. The simulation must catch that (this test
/// shows it has teeth, and why the runtime duty exists).
#[test]
fn deaths_without_flush_before_send_break_safety() {
    let cfg = Config {
        flush_before_send: false,
        max_deaths: 3,
        ..Config::default()
    };
    let caught = (4_000_000..4_000_200)
        .filter_map(|seed| Sim::new(seed, cfg).run().err())
        .find(|e| e.contains("freed while"));
    assert!(caught.is_some(), "no seed exposed the missing flush");
}
