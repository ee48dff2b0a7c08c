//! The sharded store behind the cache: a fixed number of shards, each a mutex over a slab of
//! entries and an index from key hash to slot. A query locks one shard, so queries for
//! different names rarely meet; a full shard evicts at random, preferring entries that expired
//! first among a few sampled (CoreDNS evicts at random).
//!
//! An entry keeps its records in uncompressed wire format in one shared buffer (with the query
//! name after them), not as parsed records: a parsed record is 184 bytes before its names, the
//! wire form of an A record 31. A hit takes a reference to the buffer under the lock and parses
//! it after; the records' names and data point into the buffer, so a hit allocates only the
//! vectors the reply's sections need.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use domain::base::iana::{Class, OptRcode, Rtype};
use domain::base::name::{FlattenInto, Name, ParsedName};
use domain::base::rdata::ParseRecordData;
use domain::base::{Header, Record, Ttl};
use domain::rdata::ZoneRecordData;
use octseq::parse::Parser;

use crate::plugin::Rr;

/// What is kept of one reply: flags, rcode and the three sections, without question or OPT.
pub struct Stored<'a> {
    pub header: Header,
    pub rcode: OptRcode,
    pub sections: [&'a [Rr]; 3],
}

/// An entry's reply, taken under the shard lock and turned into records after.
pub struct Snapshot {
    pub header: Header,
    pub rcode: OptRcode,
    data: Bytes,
    counts: [u16; 3],
}

impl Snapshot {
    /// The three sections, every record with `ttl`. `None` if the bytes do not parse (they
    /// were written by `encode`, so they do).
    pub fn sections(&self, ttl: Ttl) -> Option<[Vec<Rr>; 3]> {
        let buf = &self.data;
        let mut pos = 0usize;
        let mut out: [Vec<Rr>; 3] = Default::default();
        for (i, part) in out.iter_mut().enumerate() {
            part.reserve_exact(self.counts[i] as usize);
            for _ in 0..self.counts[i] {
                let start = pos;
                loop {
                    let len = *buf.get(pos)? as usize;
                    pos += 1 + len;
                    if len == 0 {
                        break;
                    }
                }
                let owner = Name::from_octets(buf.slice(start..pos)).ok()?;
                let fixed = buf.get(pos..pos + 10)?;
                let rtype = Rtype::from_int(u16::from_be_bytes([fixed[0], fixed[1]]));
                let class = Class::from_int(u16::from_be_bytes([fixed[2], fixed[3]]));
                let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
                pos += 10;
                let rdata = buf.slice(pos..pos.checked_add(rdlen).filter(|&e| e <= buf.len())?);
                pos += rdlen;
                let mut parser = Parser::from_ref(&rdata);
                let data: ZoneRecordData<Bytes, ParsedName<Bytes>> = ZoneRecordData::parse_rdata(rtype, &mut parser).ok()??;
                part.push(Record::new(owner, class, ttl, data.flatten_into()));
            }
        }
        Some(out)
    }
}

/// What a query is looked up by: the name without case, type, class, DO and CD.
pub struct Key<'a> {
    pub qname: &'a Name<Bytes>,
    pub qtype: Rtype,
    pub qclass: Class,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Key<'_> {
    fn flags(&self) -> u8 {
        u8::from(self.dnssec_ok) | (u8::from(self.checking_disabled) << 1)
    }
}

pub struct Entry {
    hash: u64,
    /// The records of the three sections in uncompressed wire format, then the query name.
    data: Bytes,
    counts: [u16; 3],
    qname_at: u32,
    qtype: Rtype,
    qclass: Class,
    flags: u8,
    header: Header,
    rcode: OptRcode,
    /// When it was stored, in seconds of the cache's clock.
    pub stored: u32,
    /// How long it is fresh, in seconds.
    pub ttl: u32,
    /// Prefetch bookkeeping: hits in the current run, and when the last hit was.
    pub hits: u32,
    pub last_hit: u32,
    /// A background refresh (prefetch, stale refresh) is under way.
    pub refreshing: bool,
}

impl Entry {
    fn matches(&self, k: &Key) -> bool {
        self.qtype == k.qtype
            && self.qclass == k.qclass
            && self.flags == k.flags()
            && self.data[self.qname_at as usize..].eq_ignore_ascii_case(k.qname.as_slice())
    }

    /// Seconds of freshness left at `now` (negative once expired).
    pub fn remaining(&self, now: u32) -> i64 {
        i64::from(self.stored) + i64::from(self.ttl) - i64::from(now)
    }

    /// The reply's bytes and flags, to be turned into records outside the lock.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { header: self.header, rcode: self.rcode, data: self.data.slice(..self.qname_at as usize), counts: self.counts }
    }
}

/// The wire form of `sections` followed by `qname`, and the record counts; `None` if a section
/// holds more than 65535 records.
fn encode(sections: [&[Rr]; 3], qname: &Name<Bytes>) -> Option<(Bytes, [u16; 3], u32)> {
    let mut v = Vec::with_capacity(64);
    let mut counts = [0u16; 3];
    for (i, s) in sections.iter().enumerate() {
        counts[i] = u16::try_from(s.len()).ok()?;
        for r in s.iter() {
            // NOTE: a Vec target never compresses names, so the bytes parse on their own.
            r.compose(&mut v).ok()?;
        }
    }
    let at = u32::try_from(v.len()).ok()?;
    v.extend_from_slice(qname.as_slice());
    Some((Bytes::from(v), counts, at))
}

/// A key hash is already well mixed: the index uses it as it is.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Shard {
    entries: Vec<Entry>,
    index: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    /// xorshift state for picking eviction candidates.
    rng: u64,
}

/// One of the cache's two stores (success, denial), with its own capacity.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    len: AtomicUsize,
    hasher: std::collections::hash_map::RandomState,
}

/// The result of an insert: whether the key was new, and how many entries were evicted.
pub struct Inserted {
    pub new: bool,
    pub evicted: usize,
}

impl Store {
    /// A store for about `capacity` entries (rounded up to fill every shard equally), hashing
    /// keys with `hasher` (stores that share it share key hashes).
    pub fn new(capacity: usize, hasher: std::collections::hash_map::RandomState) -> Store {
        let capacity = capacity.max(1);
        // Enough shards that two cores rarely meet, few enough that each holds a useful number.
        let n = (capacity / 64).clamp(1, 256).next_power_of_two().min(256);
        let per_shard = capacity.div_ceil(n);
        let shards = (0..n)
            .map(|i| {
                let seed = hasher.hash_one(i) | 1;
                Mutex::new(Shard { entries: Vec::new(), index: HashMap::default(), rng: seed })
            })
            .collect();
        Store { shards, per_shard, len: AtomicUsize::new(0), hasher }
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key's hash: SipHash with this store's random seed over the lower-cased name, so a
    /// client cannot aim many names at one shard.
    pub fn hash(&self, k: &Key) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut buf = [0u8; 255];
        let wire = k.qname.as_slice();
        let n = wire.len().min(255);
        for (d, s) in buf[..n].iter_mut().zip(wire) {
            *d = s.to_ascii_lowercase();
        }
        h.write(&buf[..n]);
        h.write_u16(k.qtype.to_int());
        h.write_u16(k.qclass.to_int());
        h.write_u8(k.flags());
        h.finish()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // NOTE: the index uses the low bits for the bucket and the top 7 for its tag; the shard
        // takes middle bits so neither is constant within a shard.
        let i = (hash >> 32) as usize % self.shards.len();
        self.shards[i].lock().expect("a shard lock is never poisoned: nothing panics while holding it")
    }

    /// Runs `f` on the entry for `k`, if there is one.
    pub fn with<T>(&self, hash: u64, k: &Key, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut s = self.shard(hash);
        let slot = *s.index.get(&hash)? as usize;
        let e = &mut s.entries[slot];
        if !e.matches(k) {
            return None;
        }
        Some(f(e))
    }

    /// Removes the entry for `k`; true if there was one.
    pub fn remove(&self, hash: u64, k: &Key) -> bool {
        let mut s = self.shard(hash);
        let Some(&slot) = s.index.get(&hash) else { return false };
        if !s.entries[slot as usize].matches(k) {
            return false;
        }
        remove_slot(&mut s, slot as usize);
        self.len.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Stores `reply` for `k`, replacing what was there, evicting if the shard is full.
    /// Returns `None` when the reply cannot be stored (a section of more than 65535 records).
    pub fn insert(&self, hash: u64, k: &Key, reply: Stored, now: u32, ttl: u32, hits: u32) -> Option<Inserted> {
        let (data, counts, qname_at) = encode(reply.sections, k.qname)?;
        let entry = Entry {
            hash,
            data,
            counts,
            qname_at,
            qtype: k.qtype,
            qclass: k.qclass,
            flags: k.flags(),
            header: reply.header,
            rcode: reply.rcode,
            stored: now,
            ttl,
            hits,
            last_hit: now,
            refreshing: false,
        };
        let mut s = self.shard(hash);
        if let Some(&slot) = s.index.get(&hash) {
            s.entries[slot as usize] = entry;
            return Some(Inserted { new: false, evicted: 0 });
        }
        let mut evicted = 0;
        if s.entries.len() >= self.per_shard {
            let victim = pick_victim(&mut s, now);
            remove_slot(&mut s, victim);
            evicted = 1;
        }
        let slot = s.entries.len() as u32;
        s.entries.push(entry);
        s.index.insert(hash, slot);
        if evicted == 0 {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        Some(Inserted { new: true, evicted })
    }
}

fn remove_slot(s: &mut Shard, slot: usize) {
    let gone = s.entries.swap_remove(slot);
    s.index.remove(&gone.hash);
    if let Some(moved) = s.entries.get(slot) {
        let h = moved.hash;
        s.index.insert(h, slot as u32);
    }
}

/// Samples a few slots at random and picks the one that expires first (an expired one, when
/// there is one among them): random eviction, as CoreDNS's, that rarely throws out a fresh entry
/// while a dead one waits.
fn pick_victim(s: &mut Shard, now: u32) -> usize {
    let n = s.entries.len();
    let mut best = 0;
    let mut best_left = i64::MAX;
    for _ in 0..4 {
        s.rng ^= s.rng << 13;
        s.rng ^= s.rng >> 7;
        s.rng ^= s.rng << 17;
        let i = (s.rng % n as u64) as usize;
        let left = s.entries[i].remaining(now);
        if left < best_left {
            best = i;
            best_left = left;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn stored() -> Stored<'static> {
        Stored { header: Header::new(), rcode: OptRcode::NOERROR, sections: [&[], &[], &[]] }
    }

    #[test]
    fn capacity_bounds_the_store_and_eviction_keeps_the_index_consistent() {
        let s = Store::new(1000, Default::default());
        assert!(s.capacity() >= 1000 && s.capacity() < 1100, "{}", s.capacity());
        let names: Vec<Name<Bytes>> = (0..5000).map(|i| Name::from_str(&format!("n{i}.example.")).expect("name")).collect();
        let mut evicted = 0;
        for (i, n) in names.iter().enumerate() {
            let k = Key { qname: n, qtype: Rtype::A, qclass: Class::IN, dnssec_ok: false, checking_disabled: false };
            let h = s.hash(&k);
            evicted += s.insert(h, &k, stored(), i as u32, 60, 0).expect("fits").evicted;
        }
        assert!(s.len() <= s.capacity());
        assert_eq!(s.len() + evicted, 5000);
        // Every entry still in the store is found by its own key.
        let found = names
            .iter()
            .filter(|n| {
                let k = Key { qname: n, qtype: Rtype::A, qclass: Class::IN, dnssec_ok: false, checking_disabled: false };
                s.with(s.hash(&k), &k, |_| ()).is_some()
            })
            .count();
        assert_eq!(found, s.len());
    }

    #[test]
    fn case_and_flags() {
        let s = Store::new(100, Default::default());
        let a = Name::from_str("Example.ORG.").expect("name");
        let b = Name::from_str("example.org.").expect("name");
        let k = |n, cd| Key { qname: n, qtype: Rtype::A, qclass: Class::IN, dnssec_ok: false, checking_disabled: cd };
        s.insert(s.hash(&k(&a, false)), &k(&a, false), stored(), 0, 60, 0);
        assert!(s.with(s.hash(&k(&b, false)), &k(&b, false), |_| ()).is_some(), "case does not matter");
        assert!(s.with(s.hash(&k(&b, true)), &k(&b, true), |_| ()).is_none(), "CD is part of the key");
    }
}
#[cfg(test)]
#[test]
fn records_survive_the_round_trip_through_wire_form() {
    use crate::testing::rr;
    use std::str::FromStr;
    let answer = [
        rr("www.Example.org. 300 IN CNAME web.example.org."),
        rr("web.example.org. 300 IN A 192.0.2.1"),
        rr("web.example.org. 300 IN AAAA 2001:db8::1"),
        rr("web.example.org. 300 IN TXT \"a b\" \"c\""),
        rr("web.example.org. 300 IN MX 10 mx.example.org."),
    ];
    let authority = [rr("example.org. 300 IN SOA ns.example.org. h.example.org. 1 2 3 4 5")];
    let additional = [rr("mx.example.org. 300 IN A 192.0.2.9"), rr("x.example.org. 300 IN TYPE65280 \\# 2 abcd")];
    let q = Name::from_str("www.example.org.").expect("name");
    let k = Key { qname: &q, qtype: Rtype::A, qclass: Class::IN, dnssec_ok: false, checking_disabled: false };
    let s = Store::new(10, Default::default());
    let stored = Stored { header: Header::new(), rcode: OptRcode::NOERROR, sections: [&answer, &authority, &additional] };
    s.insert(s.hash(&k), &k, stored, 0, 60, 0).expect("fits");
    let snap = s.with(s.hash(&k), &k, |e| e.snapshot()).expect("found");
    let [a, ns, ad] = snap.sections(Ttl::from_secs(42)).expect("parses");
    let show = |v: &[Rr]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let want = |v: &[Rr]| v.iter().map(|r| r.to_string().replace(" 300 ", " 42 ")).collect::<Vec<_>>();
    assert_eq!(show(&a), want(&answer));
    assert_eq!(show(&ns), want(&authority));
    assert_eq!(show(&ad), want(&additional));
}
