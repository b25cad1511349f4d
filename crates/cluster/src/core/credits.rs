//! Channel credits, sans-IO: places of a bounded channel that its owner reserved for
//! one other process's puts, so that a put into one is sent without waiting for an
//! answer (`docs/protocol.md`, "Channel credits").
//!
//! Two books, one per side of the protocol:
//!
//! - [`Wallet`], on a process that puts into channels of others: how many credits it
//!   holds for each, and whether it asked for more.
//! - [`Ledger`], on an owner: how many credits each other process holds for each of
//!   its channels, how many it would like, and whether they are being called back.
//!
//! The channel itself counts the reserved places (`cohort_channels::Channel::reserve`);
//! the shell keeps the ledger and the channel in step (a grant reserves, a credited
//! put fills, a return or a holder's death gives back). Why nothing is lost or stuck:
//!
//! - An owner grants only places that are free and only while no put waits, so a
//!   credited put always finds its place, even in a channel closed meanwhile.
//! - A put that waits while places are reserved for others makes the owner call them
//!   back (`REVOKE`); each holder answers with `RETURN` after every credited put it
//!   sent, on the same connection, so the owner frees exactly the places not used.
//! - A grant sent before a `REVOKE` arrives before it (one connection, in order), and
//!   none is sent while one is outstanding: the `RETURN` covers every credit.
//! - A holder that dies gives its places back when its connection ends (after what
//!   it sent); an owner that dies takes the credits with it.
//!
//! The simulation at the bottom of this file drives both books and a model channel
//! over reordered links with random puts, takes, closes and deaths.

use std::collections::HashMap;

use cohort_wire::ids::{Pid, RefId};

/// How many credits a process asks to hold for one channel: enough that a stream of
/// puts rarely waits for a top-up, few enough that a bounded channel is shared.
pub(crate) const WANT: u32 = 256;

/// The credits a process holds for channels owned elsewhere.
#[derive(Debug, Default)]
pub(crate) struct Wallet {
    held: HashMap<RefId, Held>,
    /// Puts sent within a credit so far.
    spent: u64,
}

#[derive(Debug)]
struct Held {
    owner: Pid,
    credits: u32,
    /// A top-up was asked for and no grant came since.
    topping_up: bool,
}

impl Wallet {
    /// A put to channel `id` on `owner` without a credit is about to be sent: the
    /// number of credits to ask for with it (registers the channel).
    pub(crate) fn asking(&mut self, owner: Pid, id: RefId) -> u32 {
        let held = self.held.entry(id).or_insert(Held {
            owner,
            credits: 0,
            topping_up: false,
        });
        held.topping_up = false;
        WANT
    }

    /// Spends a credit for a put to `id`: `None` without one; else how many credits
    /// to ask for with the put (0: none; a top-up is asked for once the credits fall
    /// to half of [`WANT`]).
    pub(crate) fn spend(&mut self, id: RefId) -> Option<u32> {
        let held = self.held.get_mut(&id)?;
        if held.credits == 0 {
            return None;
        }
        held.credits -= 1;
        self.spent += 1;
        if held.credits <= WANT / 2 && !held.topping_up {
            held.topping_up = true;
            return Some(WANT);
        }
        Some(0)
    }

    /// `owner` granted `n` credits for `id`. `false` if this process no longer
    /// wants any for it (the caller gives them back).
    pub(crate) fn granted(&mut self, owner: Pid, id: RefId, n: u32) -> bool {
        match self.held.get_mut(&id) {
            Some(held) if held.owner == owner => {
                held.credits = held.credits.saturating_add(n);
                held.topping_up = false;
                true
            }
            _ => false,
        }
    }

    /// The owner calls the credits for `id` back: all of them, to be returned; the
    /// next put asks again.
    pub(crate) fn revoke(&mut self, id: RefId) -> u32 {
        self.held.remove(&id).map_or(0, |h| h.credits)
    }

    /// This process is done with `id` (its last handle went, or it closes the
    /// channel): the owner and the credits to give back, if it asked for any.
    pub(crate) fn forget(&mut self, id: RefId) -> Option<(Pid, u32)> {
        self.held.remove(&id).map(|h| (h.owner, h.credits))
    }

    /// `pid` is gone, and its channels with it.
    pub(crate) fn owner_gone(&mut self, pid: Pid) {
        self.held.retain(|_, h| h.owner != pid);
    }

    /// Credits held for `id` (tests).
    #[cfg(test)]
    pub(crate) fn credits(&self, id: RefId) -> u32 {
        self.held.get(&id).map_or(0, |h| h.credits)
    }

    /// Credits held now for all channels, and puts sent within one so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let held = self.held.values().map(|h| u64::from(h.credits)).sum();
        (held, self.spent)
    }
}

/// The credits other processes hold for the channels an owner stores.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    lent: HashMap<RefId, HashMap<Pid, Lent>>,
}

#[derive(Debug, Default)]
struct Lent {
    /// Places reserved for the holder's puts, not yet filled or given back.
    credits: u32,
    /// How many it would like to hold.
    want: u32,
    /// A `REVOKE` was sent and its `RETURN` has not come: grant nothing meanwhile.
    revoking: bool,
}

impl Ledger {
    /// `holder` would like `want` credits for `id`: how many more it may be granted
    /// (none while its credits are being called back).
    pub(crate) fn room(&mut self, id: RefId, holder: Pid, want: u32) -> u32 {
        let lent = self.lent.entry(id).or_default().entry(holder).or_default();
        lent.want = want;
        if lent.revoking {
            0
        } else {
            want.saturating_sub(lent.credits)
        }
    }

    /// `n` places were reserved for `holder`'s puts to `id` (a `GRANT` goes out).
    pub(crate) fn granted(&mut self, id: RefId, holder: Pid, n: u32) {
        let lent = self.lent.entry(id).or_default().entry(holder).or_default();
        lent.credits = lent.credits.saturating_add(n);
    }

    /// A put of `holder` into `id` came with a credit: `false` if it held none (a
    /// peer out of step; the put is stored all the same).
    pub(crate) fn spent(&mut self, id: RefId, holder: Pid) -> bool {
        match self.lent.get_mut(&id).and_then(|m| m.get_mut(&holder)) {
            Some(lent) if lent.credits > 0 => {
                lent.credits -= 1;
                true
            }
            _ => false,
        }
    }

    /// Reserved places of `id` are wanted back: the holders to send `REVOKE` to
    /// (each once until it answers).
    pub(crate) fn revoke_all(&mut self, id: RefId) -> Vec<Pid> {
        let Some(holders) = self.lent.get_mut(&id) else {
            return Vec::new();
        };
        let mut pids: Vec<Pid> = holders
            .iter_mut()
            .filter(|(_, l)| l.credits > 0 && !l.revoking)
            .map(|(pid, l)| {
                l.revoking = true;
                *pid
            })
            .collect();
        pids.sort_unstable();
        pids
    }

    /// `holder` gave back `n` credits for `id` (and wants none until it asks
    /// again): how many places to give back to the channel.
    pub(crate) fn returned(&mut self, id: RefId, holder: Pid, n: u32) -> u32 {
        let Some(holders) = self.lent.get_mut(&id) else {
            return 0;
        };
        let Some(lent) = holders.get_mut(&holder) else {
            return 0;
        };
        let back = n.min(lent.credits);
        lent.credits -= back;
        lent.revoking = false;
        lent.want = 0;
        if lent.credits == 0 {
            holders.remove(&holder);
            if holders.is_empty() {
                self.lent.remove(&id);
            }
        }
        back
    }

    /// Holders of `id` that would like more credits, and how many more (a place was
    /// freed).
    pub(crate) fn wanting(&self, id: RefId) -> Vec<(Pid, u32)> {
        let Some(holders) = self.lent.get(&id) else {
            return Vec::new();
        };
        let mut w: Vec<(Pid, u32)> = holders
            .iter()
            .filter(|(_, l)| !l.revoking && l.want > l.credits)
            .map(|(pid, l)| (*pid, l.want - l.credits))
            .collect();
        w.sort_unstable();
        w
    }

    /// `pid` is gone (its connection ended, after everything it sent): the places
    /// reserved for it, per channel, to give back.
    pub(crate) fn holder_gone(&mut self, pid: Pid) -> Vec<(RefId, u32)> {
        let mut back = Vec::new();
        self.lent.retain(|id, holders| {
            if let Some(lent) = holders.remove(&pid) {
                if lent.credits > 0 {
                    back.push((*id, lent.credits));
                }
            }
            !holders.is_empty()
        });
        back.sort_unstable();
        back
    }

    /// Channel `id` was freed: nothing is lent on it any more.
    pub(crate) fn channel_gone(&mut self, id: RefId) {
        self.lent.remove(&id);
    }

    /// Credits lent now on all channels.
    pub(crate) fn total(&self) -> u64 {
        self.lent
            .values()
            .flat_map(|h| h.values())
            .map(|l| u64::from(l.credits))
            .sum()
    }

    /// Credits lent on `id` in all (tests).
    #[cfg(test)]
    pub(crate) fn lent(&self, id: RefId) -> u32 {
        self.lent
            .get(&id)
            .map_or(0, |h| h.values().map(|l| l.credits).sum())
    }
}

#[cfg(test)]
mod sim;
