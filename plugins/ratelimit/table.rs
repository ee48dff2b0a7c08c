//! The rate-limit table: one token bucket per key (a client prefix and what it is sent), in a
//! fixed number of entries split over shards, as BIND's RRL keeps its table.
//!
//! A bucket holds credit of at most one second's worth of its rate and debt of at most
//! `window` seconds' worth: a client whose responses are limited stays limited while it keeps
//! asking, and is free again `window` seconds after it stopped at the latest (BIND's semantics).
//! Credit is counted in thousandths of a response so that it accrues per millisecond.
//!
//! Memory is fixed at setup: each shard holds at most its share of `capacity` entries and
//! evicts with the clock algorithm (an entry used since the hand last passed gets a second
//! chance). An evicted bucket starts again full if its key comes back, which is what a bucket
//! idle for `window` seconds holds anyway.

use std::collections::HashMap;
use std::sync::Mutex;

/// Shards of the table, each with its own lock.
pub const SHARDS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: u64,
    /// Credit in thousandths of a response; negative is debt.
    balance: i64,
    /// When the bucket was last debited, in milliseconds of the table's clock.
    last: u64,
    /// Limited responses so far, for `slip`.
    limited: u32,
    /// Used since the clock hand last passed.
    referenced: bool,
}

struct Shard {
    index: HashMap<u64, u32>,
    entries: Vec<Entry>,
    hand: usize,
    capacity: usize,
}

/// What a debit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the rate: this is the bucket's Nth limited response (from 1), for `slip`.
    Limited(u32),
}

pub struct Table {
    shards: Vec<Mutex<Shard>>,
}

impl Table {
    /// A table of at most `capacity` entries (rounded up to fill the shards equally).
    pub fn new(capacity: usize) -> Table {
        let per = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard { index: HashMap::with_capacity(per), entries: Vec::with_capacity(per), hand: 0, capacity: per }))
            .collect();
        Table { shards }
    }

    /// Entries held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.entries.len())).sum()
    }

    /// Debits one response from the bucket of `key` at `rate` per second, with debt of at most
    /// `window` seconds, at time `now_ms`; the second value is true when an entry was evicted.
    pub fn debit(&self, key: u64, rate: u32, window: u32, now_ms: u64) -> (Verdict, bool) {
        let shard = &self.shards[(key as usize) % SHARDS];
        let Ok(mut s) = shard.lock() else {
            // A panic while the lock was held cannot leave a bucket half-written that matters
            // more than not limiting: let the response through.
            return (Verdict::Allowed, false);
        };
        let rate_milli = i64::from(rate) * 1000;
        let (i, evicted) = match s.index.get(&key) {
            Some(&i) => (i as usize, false),
            None => {
                let fresh = Entry { key, balance: rate_milli, last: now_ms, limited: 0, referenced: true };
                s.insert(fresh)
            }
        };
        let e = &mut s.entries[i];
        e.referenced = true;
        let elapsed = now_ms.saturating_sub(e.last);
        if elapsed > u64::from(window) * 1000 {
            // Idle longer than the window: whatever it owed is forgiven (BIND resets it too).
            e.balance = rate_milli;
            e.limited = 0;
        } else {
            let credit = i64::from(rate).saturating_mul(elapsed as i64);
            e.balance = e.balance.saturating_add(credit).min(rate_milli);
        }
        e.last = now_ms;
        e.balance -= 1000;
        let floor = -rate_milli.saturating_mul(i64::from(window));
        e.balance = e.balance.max(floor);
        if e.balance >= 0 {
            (Verdict::Allowed, evicted)
        } else {
            e.limited = e.limited.saturating_add(1);
            (Verdict::Limited(e.limited), evicted)
        }
    }
}

impl Shard {
    /// Adds an entry, evicting one if the shard is full; its position and whether one went.
    fn insert(&mut self, e: Entry) -> (usize, bool) {
        if self.entries.len() < self.capacity {
            self.entries.push(e);
            let i = self.entries.len() - 1;
            self.index.insert(e.key, i as u32);
            return (i, false);
        }
        // The clock: pass over entries used since the last round, clearing their mark, and take
        // the first that was not. Two rounds at most.
        loop {
            let h = self.hand;
            self.hand = (self.hand + 1) % self.entries.len();
            let victim = &mut self.entries[h];
            if victim.referenced {
                victim.referenced = false;
                continue;
            }
            self.index.remove(&victim.key);
            *victim = e;
            self.index.insert(e.key, h as u32);
            return (h, true);
        }
    }
}
