//! One loaded zone and the lookup an authoritative server does in it (RFC 1034 §4.3.2, with
//! DNAME per RFC 6672, wildcards per RFC 4592, negative answers per RFC 2308 and DNSSEC records
//! per RFC 4035 §3.1).
//!
//! The zone is stored compactly, in a few flat arrays, so a zone of a million records takes
//! tens of megabytes rather than a gigabyte:
//!
//! - Every name is a *key* in canonical order (RFC 4034 §6.1): labels from the root down, lower
//!   case, each followed by a zero octet. The key of an ancestor is then a prefix of its
//!   descendant's key, so a query walks down from the apex by slicing one key built on the stack.
//!   Keys are stored relative to the apex (the apex's own key is left off every one of them) in
//!   one byte arena; an empty non-terminal's key points into its first descendant's bytes.
//! - `nodes` is sorted by key; a name is found through a hash index over the keys (`index`, five
//!   bytes a name), and the predecessor of a name (for NSEC) is the previous entry. Every ancestor of an owner up to the apex has a node, so empty
//!   non-terminals exist as nodes without sets.
//! - A node's RRsets are a run of small fixed records (type, TTL, count, offset) in `sets`, in
//!   type order; their RDATA is in wire form, names uncompressed (as RFC 3597 §4 and the
//!   canonical form allow), in one shared buffer, each record preceded by its length. A node's
//!   RRSIGs are one more set of type RRSIG, each record also preceded by its own TTL; the type a
//!   signature covers is the first field of its RDATA.
//! - `Rr` values are made only when a reply needs them, by parsing the stored RDATA with domain's
//!   parsers (names and octets are slices of the shared buffer, not copies).

use std::collections::{HashMap, HashSet};

use bytes::{Bytes, BytesMut};
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::name::{FlattenInto, Name, NameBuilder, ParsedName, ToLabelIter, ToName};
use domain::base::rdata::{ComposeRecordData, ParseRecordData, UnknownRecordData};
use domain::base::{Record, Ttl};
use domain::rdata::{Cname, ZoneRecordData};
use octseq::Parser;

use super::chunked::Chunked;
use super::index::Index;
use crate::plugin::{Reply, Request, Rr};

/// CNAME and DNAME links followed for one query, as Knot DNS bounds them.
const MAX_CHAIN: usize = 20;

/// Up to this many records in an RRset, duplicates are found by comparing the records as
/// domain compares them (names in RDATA case-insensitively); above it, by their octets.
const DEDUP_EXACT_ABOVE: usize = 64;

/// One name of the zone: where its key is, and its run of sets.
#[derive(Clone, Copy, Debug)]
struct NodeEntry {
    key: u32,
    sets: u32,
    key_len: u8,
    flags: u8,
    nsets: u16,
}

/// NS at a name other than the apex: the zone ends here (RFC 1034 §4.2.1).
const CUT: u8 = 1;
/// The owner was written with capitals (or octets a key cannot give back): its spelling is kept
/// in `Zone::cased`.
const CASED: u8 = 2;
/// An NSEC3 record's owner (a hash below the apex with nothing but NSEC3 and signatures): not a
/// name of the zone (RFC 5155 §7.2.8), only looked up through `Zone::nsec3`.
const HASHED: u8 = 4;

/// One RRset: `count` records from `off` in `Zone::rdata`. The TTL of an RRSIG set is unused
/// (each signature has its own).
#[derive(Clone, Copy, Debug)]
struct SetEntry {
    rtype: u16,
    count: u16,
    ttl: u32,
    off: u32,
}

pub struct Zone {
    pub origin: Name<Bytes>,
    pub serial: u32,
    apex_labels: usize,
    /// The length of the apex's key, which every stored key leaves off.
    apex_key_len: usize,
    soa: Rr,
    keys: Box<[u8]>,
    nodes: Box<[NodeEntry]>,
    sets: Box<[SetEntry]>,
    rdata: Bytes,
    /// Owner names as written, for the nodes flagged `CASED`, by node index.
    cased: Box<[(u32, Name<Bytes>)]>,
    signed: bool,
    /// The node of each key.
    index: Index,
    /// Set when the zone is signed with NSEC3 (its apex has an NSEC3PARAM).
    nsec3: Option<super::nsec3::Chain>,
    pub records: usize,
}

/// A name's canonical key, built without allocating; `ends[i]` is where the key of the
/// ancestor with `i + 1` labels below the root ends.
pub struct Key {
    buf: [u8; 256],
    ends: [u8; 128],
    labels: usize,
}

impl Key {
    pub fn new(name: &impl ToName) -> Key {
        // A name of at most 255 octets has at most 127 labels below the root and a key of at
        // most 254 octets (its wire form less the root label), so everything fits. The labels
        // are read from the left and written from the end of the key backwards.
        let (mut n, mut len) = (0, 0);
        for l in name.iter_labels().filter(|l| !l.is_root()) {
            n += 1;
            len += l.len() + 1;
        }
        let mut k = Key { buf: [0; 256], ends: [0; 128], labels: n.min(128) };
        if n > 128 || len > 255 {
            return k;
        }
        let mut end = len;
        for (depth, l) in (1..=n).rev().zip(name.iter_labels()) {
            k.ends[depth - 1] = end as u8;
            let start = end - l.len() - 1;
            for (d, &c) in k.buf[start..end - 1].iter_mut().zip(l.as_slice()) {
                *d = c.to_ascii_lowercase();
            }
            end = start;
        }
        k
    }

    /// The key of the ancestor with `depth` labels (0 is the root).
    pub fn prefix(&self, depth: usize) -> &[u8] {
        if depth == 0 {
            &[]
        } else {
            &self.buf[..self.ends[depth - 1] as usize]
        }
    }

    pub fn full(&self) -> &[u8] {
        self.prefix(self.labels)
    }
}

/// A zone that cannot be served, and why.
pub type LoadError = String;

/// `NodeEntry::sets` of a name read only as an ancestor of owners (or the apex), while loading.
const NO_RECORDS: u32 = u32::MAX;

/// Builds a zone from records handed over one at a time, so a loader need not hold them all.
///
/// What is read goes where the zone will keep it, so that loading needs little more memory than
/// the zone: `nodes` gets a node for each run of records with one owner, and `recs` a set of one
/// record for each record. `finish` sorts the nodes, merges repeats, moves the records into the
/// nodes' order and merges them into sets in place; RDATA stays where it was read unless an
/// RRset's records were not read one after another. The arrays grow in chunks (`Chunked`), so
/// growing never holds one twice.
pub struct Builder {
    origin: Name<Bytes>,
    apex_labels: usize,
    apex_key_len: usize,
    keys: Chunked<u8>,
    /// The apex, then for each run of records with one owner its node (`sets` is its first
    /// record in `recs`, `nsets` how many), and the owners' ancestors below the apex, which become
    /// empty non-terminals if nothing else (`sets` is `NO_RECORDS`).
    nodes: Chunked<NodeEntry>,
    /// The node of the current run.
    run: usize,
    /// The last owner's key (less the apex's), where its labels end in its full key
    /// (`Key::ends`), and how many it has.
    last_key: [u8; 256],
    last_key_len: usize,
    last_ends: [u8; 128],
    last_labels: usize,
    /// Owners written with capitals, by where their key starts in `keys`.
    cased: Vec<(u32, Name<Bytes>)>,
    /// One set of one record for each record read; `count` is where its TTL is in `ttls`.
    recs: Chunked<SetEntry>,
    /// The TTLs read, each once, as long as a `u16` tells them apart (`ttls_full` once not):
    /// with a record's TTL in `ttls`, `finish` can use its `ttl` for where it goes.
    ttls: Vec<u32>,
    ttl_places: HashMap<u32, u16>,
    ttls_full: bool,
    /// The records as `Zone::rdata` holds them, in the order read.
    data: Chunked<u8>,
    /// One record's RDATA as it is made.
    rdata: Vec<u8>,
    soa: Option<Rr>,
    signed: bool,
    error: Option<LoadError>,
}

/// A copy of `name` that does not keep a larger buffer (such as the scanner's) alive.
fn own_name(name: &Name<Bytes>) -> Name<Bytes> {
    Name::from_octets(Bytes::copy_from_slice(name.as_slice())).unwrap_or_else(|_| name.clone())
}

/// RDATA in wire form as domain's record data (names and octets slices of `data`).
fn parse_rdata(rtype: Rtype, data: Bytes) -> ZoneRecordData<Bytes, Name<Bytes>> {
    let mut p = Parser::from_ref(&data);
    let parsed = ZoneRecordData::<Bytes, ParsedName<Bytes>>::parse_rdata(rtype, &mut p);
    if let Ok(Some(d)) = parsed {
        return d.flatten_into();
    }
    // Not parseable as its type (it was read as RFC 3597 data): served as it was read.
    ZoneRecordData::Unknown(UnknownRecordData::from_octets(rtype, data.clone()).unwrap_or_else(|_| UnknownRecordData::from_octets(rtype, Bytes::new()).expect("empty data fits")))
}

/// Whether two records' RDATA are the same record (RFC 2181 §5: names compare without case).
fn same_rdata(rtype: Rtype, a: &[u8], b: &[u8]) -> bool {
    a == b || (a.eq_ignore_ascii_case(b) && parse_rdata(rtype, Bytes::copy_from_slice(a)) == parse_rdata(rtype, Bytes::copy_from_slice(b)))
}

impl Builder {
    pub fn new(origin: Name<Bytes>) -> Builder {
        let apex = Key::new(&origin);
        let mut b = Builder {
            origin,
            apex_labels: apex.labels,
            apex_key_len: apex.full().len(),
            keys: Chunked::new(),
            nodes: Chunked::new(),
            run: 0,
            last_key: [0; 256],
            last_key_len: 0,
            last_ends: [0; 128],
            last_labels: 0,
            cased: Vec::new(),
            recs: Chunked::new(),
            ttls: Vec::new(),
            ttl_places: HashMap::new(),
            ttls_full: false,
            data: Chunked::new(),
            rdata: Vec::new(),
            soa: None,
            signed: false,
            error: None,
        };
        b.nodes.push(NodeEntry { key: 0, sets: NO_RECORDS, key_len: 0, flags: 0, nsets: 0 });
        b
    }

    /// Adds a record; the first error is kept and returned by `finish`.
    pub fn push(&mut self, r: Rr) {
        if self.error.is_none() {
            if let Err(e) = self.add(&r) {
                self.error = Some(e);
            }
        }
    }

    fn add(&mut self, r: &Rr) -> Result<(), LoadError> {
        let origin = &self.origin;
        if r.class() != Class::IN {
            return Err(format!("{}: class {} is not served (only IN)", r.owner().fmt_with_dot(), r.class()));
        }
        if !r.owner().ends_with(origin) {
            return Err(format!("{} {}: out of zone data (zone {})", r.owner().fmt_with_dot(), r.rtype(), origin.fmt_with_dot()));
        }
        let rtype = r.rtype();
        let off = self.data.len();
        let off32 = u32::try_from(off).map_err(|_| "zone too large (RDATA)".to_string())?;
        let first = u32::try_from(self.recs.len()).map_err(|_| "zone too large (records)".to_string())?;
        let key = Key::new(r.owner());
        let rel = &key.full()[self.apex_key_len..];
        let run = self.nodes[self.run];
        if self.run > 0 && self.last_key[..self.last_key_len] == *rel {
            if run.nsets < u16::MAX {
                self.nodes[self.run].nsets += 1;
            } else {
                // `nsets` counts a run's records only up to 65535: more go on as another run.
                self.nodes.push(NodeEntry { sets: first, nsets: 1, ..run });
                self.run = self.nodes.len() - 1;
            }
        } else {
            let koff = u32::try_from(self.keys.len()).map_err(|_| "zone too large (names)".to_string())?;
            self.keys.extend_from_slice(rel);
            let cased = r.owner().iter_labels().any(|l| l.as_slice().iter().any(|&c| c == 0 || c.is_ascii_uppercase()));
            if cased {
                self.cased.push((koff, own_name(r.owner())));
            }
            self.nodes.push(NodeEntry { key: koff, sets: first, key_len: rel.len() as u8, flags: if cased { CASED } else { 0 }, nsets: 1 });
            self.run = self.nodes.len() - 1;
            // Empty non-terminals: every ancestor down from the apex gets a node (the apex is
            // the first node). Those the last owner shares have one already.
            let last = &self.last_key[..self.last_key_len];
            let mut shared = self.apex_labels;
            while shared < key.labels.min(self.last_labels) && self.last_ends[shared] == key.ends[shared] && key.prefix(shared + 1)[self.apex_key_len..] == last[..key.ends[shared] as usize - self.apex_key_len] {
                shared += 1;
            }
            for d in shared + 1..key.labels {
                self.nodes.push(NodeEntry { key: koff, sets: NO_RECORDS, key_len: (key.prefix(d).len() - self.apex_key_len) as u8, flags: 0, nsets: 0 });
            }
            self.last_key[..rel.len()].copy_from_slice(rel);
            self.last_key_len = rel.len();
            self.last_ends[..key.labels].copy_from_slice(&key.ends[..key.labels]);
            self.last_labels = key.labels;
        }
        self.rdata.clear();
        if r.data().compose_rdata(&mut self.rdata).is_err() {
            return Err(format!("{} {}: RDATA cannot be stored", r.owner().fmt_with_dot(), rtype));
        }
        let len = u16::try_from(self.rdata.len()).map_err(|_| format!("{} {}: RDATA too long", r.owner().fmt_with_dot(), rtype))?;
        if rtype == Rtype::RRSIG {
            self.signed = true;
            self.data.extend_from_slice(&r.ttl().as_secs().to_be_bytes());
        }
        self.data.extend_from_slice(&len.to_be_bytes());
        self.data.extend_from_slice(&self.rdata);
        if rtype == Rtype::SOA {
            if key.labels != self.apex_labels {
                return Err(format!("{}: SOA not at the zone apex {}", r.owner().fmt_with_dot(), origin.fmt_with_dot()));
            }
            if self.soa.is_some() {
                return Err(format!("{}: more than one SOA record", origin.fmt_with_dot()));
            }
            let data = parse_rdata(rtype, Bytes::copy_from_slice(&self.rdata));
            self.soa = Some(Record::new(own_name(r.owner()), r.class(), r.ttl(), data));
        }
        let ttl = r.ttl().as_secs();
        let place = match self.ttls.last() {
            // Most records have the TTL the one before had.
            Some(&last) if last == ttl => (self.ttls.len() - 1) as u16,
            _ => self.ttl_place(ttl),
        };
        self.recs.push(SetEntry { rtype: rtype.to_int(), count: place, ttl, off: off32 });
        Ok(())
    }

    /// Where `ttl` is in `ttls`, added if new and there is room.
    fn ttl_place(&mut self, ttl: u32) -> u16 {
        if let Some(&i) = self.ttl_places.get(&ttl) {
            return i;
        }
        match u16::try_from(self.ttls.len()) {
            Ok(i) => {
                self.ttls.push(ttl);
                self.ttl_places.insert(ttl, i);
                i
            }
            Err(_) => {
                self.ttls_full = true;
                0
            }
        }
    }

    /// Sorts what was read into a zone; checks what RFC 1035 and RFC 2181 require of one.
    pub fn finish(self) -> Result<Zone, LoadError> {
        let Builder { origin, apex_labels, apex_key_len, keys, nodes, cased, mut recs, ttls, ttls_full, data, soa, signed, error, .. } = self;
        if let Some(e) = error {
            return Err(e);
        }
        let soa = soa.ok_or_else(|| format!("{}: no SOA record at the zone apex", origin.fmt_with_dot()))?;
        let ZoneRecordData::Soa(s) = soa.data() else { unreachable!("an SOA record holds SOA data") };
        let serial = s.serial().into_int();
        // NOTE: one array at a time, each chunk freed once copied.
        let keys = keys.into_vec();
        let mut nodes = nodes.into_vec();
        let mut data = data.into_vec();
        let key_of = |n: &NodeEntry| key_at(&keys, n);

        // The names, sorted, each once: a name's runs in the order read, then its ancestor
        // entries. Each record's place is then known: by name, then as read.
        nodes.sort_unstable_by(|a, b| key_of(a).cmp(key_of(b)).then(a.sets.cmp(&b.sets)));
        // Where each record goes: in its `ttl` (its TTL is given back by its `count`), or with
        // more TTLs than a `count` tells apart, in an array of its own.
        let mut dest: Vec<u32> = if ttls_full { vec![0; recs.len()] } else { Vec::new() };
        let mut placed = 0u32;
        let mut cased_nodes: Vec<(u32, Name<Bytes>)> = Vec::new();
        let (mut i, mut w) = (0, 0);
        while i < nodes.len() {
            let head = nodes[i];
            let first = placed;
            let mut spelled = None;
            while i < nodes.len() && key_of(&nodes[i]) == key_of(&head) {
                let n = nodes[i];
                if n.sets != NO_RECORDS {
                    for r in n.sets as usize..n.sets as usize + usize::from(n.nsets) {
                        if ttls_full {
                            dest[r] = placed;
                        } else {
                            recs[r].ttl = placed;
                        }
                        placed += 1;
                    }
                }
                // The first spelling with capitals read is the one kept.
                if n.flags & CASED != 0 && spelled.is_none() {
                    spelled = cased.binary_search_by_key(&n.key, |c| c.0).ok();
                }
                i += 1;
            }
            if let Some(c) = spelled {
                cased_nodes.push((w as u32, cased[c].1.clone()));
            }
            // For now `sets` is the node's first record.
            nodes[w] = NodeEntry { key: head.key, sets: first, key_len: head.key_len, flags: if spelled.is_some() { CASED } else { 0 }, nsets: 0 };
            w += 1;
        }
        nodes.truncate(w);
        drop(cased);
        // Each record to its place, in place, one cycle of the permutation at a time: a record
        // goes where it belongs, the one there to where that belongs, and so on back to `i`.
        for i in 0..recs.len() {
            let mut to = if ttls_full { dest[i] } else { recs[i].ttl } as usize;
            if to == i {
                continue;
            }
            let mut r = recs[i];
            while to != i {
                let next = if ttls_full { std::mem::replace(&mut dest[to], to as u32) } else { recs[to].ttl } as usize;
                r = std::mem::replace(&mut recs[to], r);
                to = next;
            }
            recs[i] = r;
        }
        drop(dest);
        let ttl_of = |r: &SetEntry| if ttls_full { r.ttl } else { ttls[r.count as usize] };

        // The sets: a node's records by type, as read. Each set is written over the records it
        // was made from (there are never more sets than records before them).
        let mut sets = 0;
        let mut count = 0;
        let mut kept: Vec<(usize, usize)> = Vec::new();
        let mut seen: HashSet<&[u8]> = HashSet::new();
        // RDATA of sets whose records were not read one after another, gathered after `data`.
        let mut moved: Vec<u8> = Vec::new();
        // RDATA no set points at: of duplicates, and where moved sets were read.
        let mut unused = 0;
        let mut group: Vec<SetEntry> = Vec::new();
        for n in 0..nodes.len() {
            let (from, to) = (nodes[n].sets as usize, nodes.get(n + 1).map_or(recs.len(), |m| m.sets as usize));
            nodes[n].sets = sets as u32;
            if to - from > 1 {
                group.clear();
                group.extend((from..to).map(|k| recs[k]));
                group.sort_by_key(|r| r.rtype);
                for (k, r) in (from..to).zip(&group) {
                    recs[k] = *r;
                }
            }
            let mut i = from;
            while i < to {
                let t = recs[i].rtype;
                let mut j = i;
                while j < to && recs[j].rtype == t {
                    j += 1;
                }
                let rtype = Rtype::from_int(t);
                let head = if rtype == Rtype::RRSIG { 6 } else { 2 };
                // RFC 2181 §5: an RRset holds no duplicates, and §5.2 its records share one TTL
                // (the first one read, as Knot DNS does).
                let mut set = SetEntry { rtype: t, count: 1, ttl: ttl_of(&recs[i]), off: recs[i].off };
                if j - i == 1 {
                    // A set of one record is where it was read.
                    count += 1;
                } else {
                    set.count = 0;
                    kept.clear();
                    seen.clear();
                    let big = j - i > DEDUP_EXACT_ABOVE;
                    for r in (i..j).map(|k| recs[k]) {
                        let at = r.off as usize;
                        let end = at + head + u16::from_be_bytes([data[at + head - 2], data[at + head - 1]]) as usize;
                        let d = &data[at + head..end];
                        let dup = if big { !seen.insert(d) } else { kept.iter().any(|&(a, b)| same_rdata(rtype, &data[a + head..b], d)) };
                        if dup {
                            unused += end - at;
                            continue;
                        }
                        kept.push((at, end));
                        set.count = set.count.checked_add(1).ok_or_else(|| format!("{}: more than 65535 {rtype} records at one name", origin.fmt_with_dot()))?;
                        count += 1;
                    }
                    if !kept.windows(2).all(|w| w[0].1 == w[1].0) {
                        set.off = u32::try_from(data.len() + moved.len()).map_err(|_| "zone too large (RDATA)".to_string())?;
                        for &(a, b) in &kept {
                            moved.extend_from_slice(&data[a..b]);
                            unused += b - a;
                        }
                    }
                }
                nodes[n].nsets = nodes[n].nsets.checked_add(1).ok_or_else(|| format!("{}: more than 65535 types at one name", origin.fmt_with_dot()))?;
                recs[sets] = set;
                sets += 1;
                i = j;
            }
        }
        drop(seen);
        recs.truncate(sets);
        let mut sets = recs.into_vec();
        u32::try_from(data.len() + moved.len()).map_err(|_| "zone too large (RDATA)".to_string())?;
        data.extend_from_slice(&moved);
        drop(moved);
        // When more than an eighth of the RDATA is not pointed at, the sets' records are copied
        // to a buffer of their own.
        if unused > data.len() / 8 {
            data = compact(&mut sets, &data, data.len() - unused);
        }
        let mut origin_lower = origin.to_string().to_ascii_lowercase();
        origin_lower.push('.');
        let origin: Name<Bytes> = origin_lower.parse().unwrap_or(origin);
        let mut zone = Zone {
            origin,
            serial,
            apex_labels,
            apex_key_len,
            soa,
            keys: keys.into_boxed_slice(),
            nodes: nodes.into_boxed_slice(),
            sets: sets.into_boxed_slice(),
            rdata: Bytes::from(data),
            cased: cased_nodes.into_boxed_slice(),
            signed,
            index: Index::build(0, |_| &[]),
            nsec3: None,
            records: count,
        };
        zone.check()?;
        zone.index = Index::build(zone.nodes.len(), |i| key_at(&zone.keys, &zone.nodes[i]));
        Ok(zone)
    }
}

/// The records of `sets` copied from `data` to a buffer of their own, set after set; the sets'
/// offsets changed to match.
fn compact(sets: &mut [SetEntry], data: &[u8], live: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(live);
    for s in sets {
        let head = if s.rtype == Rtype::RRSIG.to_int() { 6 } else { 2 };
        let mut end = s.off as usize;
        for _ in 0..s.count {
            end += head + u16::from_be_bytes([data[end + head - 2], data[end + head - 1]]) as usize;
        }
        let off = out.len();
        out.extend_from_slice(&data[s.off as usize..end]);
        s.off = off as u32;
    }
    out
}

impl Zone {
    /// Builds the zone from its records; checks what RFC 1035 and RFC 2181 require of one.
    pub fn build(origin: Name<Bytes>, records: Vec<Rr>) -> Result<Zone, LoadError> {
        let mut b = Builder::new(origin);
        for r in records {
            b.push(r);
        }
        b.finish()
    }

    /// Marks the zone cuts; a CNAME has no other data beside it (RFC 1034 §3.6.2 / RFC 2181
    /// §10.1, DNSSEC's own records excepted).
    fn check(&mut self) -> Result<(), LoadError> {
        for i in 0..self.nodes.len() {
            if i > 0 && self.get(i, Rtype::NS).is_some() {
                self.nodes[i].flags |= CUT;
            }
            if let Some(c) = self.get(i, Rtype::CNAME) {
                let many = c.count > 1;
                if let Some(other) = self.node_sets(i).iter().find(|s| !matches!(Rtype::from_int(s.rtype), Rtype::CNAME | Rtype::RRSIG | Rtype::NSEC)) {
                    return Err(format!("{}: CNAME and {} at the same name", self.owner_name(i).fmt_with_dot(), Rtype::from_int(other.rtype)));
                }
                if many {
                    return Err(format!("{}: more than one CNAME", self.owner_name(i).fmt_with_dot()));
                }
            }
        }
        self.nsec3 = self.nsec3_chain();
        Ok(())
    }

    /// The NSEC3 chain of the parameters in the apex's NSEC3PARAM; its owners are marked `HASHED`.
    fn nsec3_chain(&mut self) -> Option<super::nsec3::Chain> {
        use super::nsec3::{owner_hash, Chain};
        let param = self.get(0, Rtype::NSEC3PARAM)?;
        let (_, p) = self.rdatas(param).next()?;
        if p.len() < 5 || p[0] != 1 {
            return None;
        }
        let iterations = u16::from_be_bytes([p[2], p[3]]);
        let salt = p.get(5..5 + p[4] as usize)?.to_vec();
        let mut hashes = Vec::new();
        for i in 1..self.nodes.len() {
            let key = self.key_at(&self.nodes[i]);
            // A child of the apex: its relative key is one label and its terminator.
            let Some((&0, label)) = key.split_last() else { continue };
            if label.contains(&0) {
                continue;
            }
            let Some(set) = self.get(i, Rtype::NSEC3) else { continue };
            if !self.rdatas(set).any(|(_, d)| Chain::same_params(iterations, &salt, &d)) {
                continue;
            }
            let Some(h) = owner_hash(label) else { continue };
            hashes.push((h, i as u32));
            if self.node_sets(i).iter().all(|s| matches!(Rtype::from_int(s.rtype), Rtype::NSEC3 | Rtype::RRSIG)) {
                self.nodes[i].flags |= HASHED;
            }
        }
        Some(Chain::new(iterations, &salt, hashes))
    }

    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Bytes the zone's arrays take (not counting the allocator's own overhead).
    pub fn heap_size(&self) -> usize {
        self.keys.len()
            + std::mem::size_of_val(&*self.nodes)
            + std::mem::size_of_val(&*self.sets)
            + self.rdata.len()
            + self.cased.len() * 64
            + self.index.heap_size()
    }

    fn key_at(&self, n: &NodeEntry) -> &[u8] {
        key_at(&self.keys, n)
    }

    /// The node of a full key (one that starts with the apex's).
    fn find(&self, key: &[u8]) -> Option<usize> {
        let rel = key.get(self.apex_key_len..)?;
        let i = match self.index.get(rel, |i| key_at(&self.keys, &self.nodes[i])) {
            Some(found) => found?,
            None => self.nodes.binary_search_by(|n| self.key_at(n).cmp(rel)).ok()?,
        };
        (self.nodes[i].flags & HASHED == 0).then_some(i)
    }

    fn node_sets(&self, i: usize) -> &[SetEntry] {
        let n = &self.nodes[i];
        &self.sets[n.sets as usize..n.sets as usize + n.nsets as usize]
    }

    /// The RRset of type `t` at node `i` (signatures are not an RRset of their own here).
    fn get(&self, i: usize, t: Rtype) -> Option<&SetEntry> {
        if t == Rtype::RRSIG {
            return None;
        }
        let t = t.to_int();
        self.node_sets(i).iter().find(|s| s.rtype == t)
    }

    /// A node without data: an empty non-terminal (or one with only signatures).
    fn is_empty(&self, i: usize) -> bool {
        self.node_sets(i).iter().all(|s| s.rtype == Rtype::RRSIG.to_int())
    }

    fn is_cut(&self, i: usize) -> bool {
        self.nodes[i].flags & CUT != 0
    }

    /// The RDATA of a set's records, with each one's TTL (the set's, but a signature's own).
    fn rdatas<'a>(&'a self, s: &SetEntry) -> impl Iterator<Item = (u32, Bytes)> + 'a {
        let sig = s.rtype == Rtype::RRSIG.to_int();
        let mut p = s.off as usize;
        let ttl = s.ttl;
        (0..s.count).map(move |_| {
            let d = &self.rdata[..];
            let ttl = if sig {
                let t = u32::from_be_bytes([d[p], d[p + 1], d[p + 2], d[p + 3]]);
                p += 4;
                t
            } else {
                ttl
            };
            let len = u16::from_be_bytes([d[p], d[p + 1]]) as usize;
            let b = self.rdata.slice(p + 2..p + 2 + len);
            p += 2 + len;
            (ttl, b)
        })
    }

    /// The owner name of node `i`, as written in the zone file (lower case unless it had
    /// capitals).
    fn owner_name(&self, i: usize) -> Name<Bytes> {
        if self.nodes[i].flags & CASED != 0 {
            if let Ok(k) = self.cased.binary_search_by_key(&(i as u32), |c| c.0) {
                return self.cased[k].1.clone();
            }
        }
        let key = self.key_at(&self.nodes[i]);
        let mut labels: [&[u8]; 128] = [&[]; 128];
        let mut n = 0;
        for l in key.split(|&c| c == 0) {
            if n < 128 && !l.is_empty() {
                labels[n] = l;
                n += 1;
            }
        }
        let mut b = NameBuilder::<BytesMut>::new();
        for l in labels[..n].iter().rev() {
            if b.append_label(l).is_err() {
                return self.origin.clone();
            }
        }
        b.append_origin(&self.origin).unwrap_or_else(|_| self.origin.clone())
    }

    /// Appends the records of type `t` at node `i` (and the RRSIGs that cover them when
    /// `dnssec`), named `owner` when given, else by the node's own name.
    fn push(&self, out: &mut Vec<Rr>, i: usize, t: Rtype, dnssec: bool, owner: Option<&Name<Bytes>>) {
        let owner = match owner {
            Some(o) => o.clone(),
            None => self.owner_name(i),
        };
        if let Some(s) = self.get(i, t) {
            out.extend(self.rdatas(s).map(|(ttl, d)| Record::new(owner.clone(), Class::IN, Ttl::from_secs(ttl), parse_rdata(t, d))));
        }
        if dnssec {
            self.push_sigs(out, i, t, &owner, None);
        }
    }

    /// Appends the RRSIGs at node `i` that cover `t`, with `ttl` instead of their own if given.
    fn push_sigs(&self, out: &mut Vec<Rr>, i: usize, t: Rtype, owner: &Name<Bytes>, ttl: Option<u32>) {
        let Some(s) = self.node_sets(i).iter().find(|s| s.rtype == Rtype::RRSIG.to_int()) else { return };
        let covered = t.to_int().to_be_bytes();
        for (own, d) in self.rdatas(s) {
            if d.len() >= 2 && d[..2] == covered {
                out.push(Record::new(owner.clone(), Class::IN, Ttl::from_secs(ttl.unwrap_or(own)), parse_rdata(Rtype::RRSIG, d)));
            }
        }
    }

    /// The first record of a set, parsed.
    fn first(&self, s: &SetEntry) -> Option<(u32, ZoneRecordData<Bytes, Name<Bytes>>)> {
        self.rdatas(s).next().map(|(ttl, d)| (ttl, parse_rdata(Rtype::from_int(s.rtype), d)))
    }

    /// The SOA for negative answers: RFC 2308 §3, its TTL is the smaller of its own and MINIMUM.
    fn negative_soa(&self, reply: &mut Reply, dnssec: bool) {
        let ZoneRecordData::Soa(s) = self.soa.data() else { return };
        let ttl = self.soa.ttl().min(s.minimum());
        reply.authority.push(Record::new(self.soa.owner().clone(), Class::IN, ttl, self.soa.data().clone()));
        if dnssec {
            self.push_sigs(&mut reply.authority, 0, Rtype::SOA, self.soa.owner(), Some(ttl.as_secs()));
        }
    }

    /// The NSEC RRset (and its signatures) that covers `key`: the closest name before it in
    /// canonical order that has one (RFC 4034 §6.1).
    fn covering_nsec(&self, key: &[u8], out: &mut Vec<Rr>) {
        if let Some(i) = self.covering_node(key) {
            self.push(out, i, Rtype::NSEC, true, None);
        }
    }

    /// Proves that the name a wildcard answered for does not exist (RFC 4035 §3.1.3.3): the NSEC
    /// that covers it, or the NSEC3 that covers the next closer name (RFC 5155 §7.2.6).
    fn wildcard_proof(&self, name: &Name<Bytes>, key: &Key, ce: usize, out: &mut Vec<Rr>) {
        match &self.nsec3 {
            Some(c) => {
                let (labels, n) = labels_of(name);
                if let Some(i) = c.covering(&c.hash(false, &labels[n - (ce + 1).min(n)..n])) {
                    self.push_nsec3(i, out);
                }
            }
            None => self.covering_nsec(key.full(), out),
        }
    }

    /// Proves NXDOMAIN: with NSEC the records that cover the name and the wildcard (`wild`, the
    /// key of `*.` the closest encloser); with NSEC3 the closest encloser proof and the NSEC3
    /// that covers the wildcard (RFC 5155 §7.2.2).
    fn nxdomain_proof(&self, name: &Name<Bytes>, key: &Key, ce: usize, wild: &[u8], out: &mut Vec<Rr>) {
        match &self.nsec3 {
            Some(c) => {
                let (labels, n) = labels_of(name);
                let ce = self.nsec3_encloser(c, &labels[..n], ce, out);
                if let Some(i) = c.covering(&c.hash(true, &labels[n - ce..n])) {
                    self.push_nsec3(i, out);
                }
            }
            None => {
                self.covering_nsec(key.full(), out);
                let mut more = Vec::new();
                self.covering_nsec(wild, &mut more);
                for r in more {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
        }
    }

    /// The closest provable encloser proof (RFC 5155 §7.2.1) of the name made of `labels`,
    /// starting at its ancestor with `from` labels: the NSEC3 that matches the deepest ancestor
    /// that has one and, below it, the NSEC3 that covers the next closer name. When the ancestor
    /// at `from` is the name itself and matches, its NSEC3 alone. Returns the encloser's depth.
    fn nsec3_encloser(&self, c: &super::nsec3::Chain, labels: &[&[u8]], from: usize, out: &mut Vec<Rr>) -> usize {
        let n = labels.len();
        let mut d = from.min(n);
        while d > self.apex_labels {
            if c.matching(&c.hash(false, &labels[n - d..])).is_some() {
                break;
            }
            d -= 1;
        }
        if let Some(m) = c.matching(&c.hash(false, &labels[n - d..])) {
            self.push_nsec3(m, out);
        }
        if d < n {
            if let Some(i) = c.covering(&c.hash(false, &labels[n - d - 1..])) {
                self.push_nsec3(i, out);
            }
        }
        d
    }

    /// The NSEC3 RRset at node `i` and its signatures, unless already in `out`.
    fn push_nsec3(&self, i: u32, out: &mut Vec<Rr>) {
        let mut rrs = Vec::new();
        self.push(&mut rrs, i as usize, Rtype::NSEC3, true, None);
        if rrs.first().is_some_and(|r| !out.contains(r)) {
            out.extend(rrs);
        }
    }

    /// The node whose NSEC covers `key`.
    fn covering_node(&self, key: &[u8]) -> Option<usize> {
        let rel = key.get(self.apex_key_len..).unwrap_or_default();
        let end = self.nodes.partition_point(|n| self.key_at(n) < rel);
        let has = |i: &usize| self.get(*i, Rtype::NSEC).is_some();
        // Wrap around: a name after the last one is covered by the last NSEC (RFC 4034 §4.1.1).
        (0..end).rev().find(has).or_else(|| (0..self.nodes.len()).rev().find(has))
    }

    /// The lowest type at node `i` that has a signature.
    fn lowest_signed_type(&self, i: usize) -> Option<Rtype> {
        let sigs = self.node_sets(i).iter().find(|s| s.rtype == Rtype::RRSIG.to_int())?;
        self.rdatas(sigs).filter(|(_, d)| d.len() >= 2).map(|(_, d)| u16::from_be_bytes([d[0], d[1]])).min().map(Rtype::from_int)
    }

    fn own_nsec(&self, i: usize, out: &mut Vec<Rr>) {
        self.push(out, i, Rtype::NSEC, true, None);
    }

    /// Answers `req`, which is in this zone, into `reply` (rcode, AA and the three sections).
    pub fn answer(&self, req: &Request, reply: &mut Reply) {
        let dnssec = req.dnssec_ok() && self.signed;
        let qtype = req.qtype;
        let mut name = req.qname.clone();
        reply.header.set_aa(true);
        let mut links = 0;
        'chain: loop {
            if !crate::message::is_within(&name, &self.origin) {
                // A CNAME or DNAME out of the zone: the client follows it (RFC 1034 §4.3.2 3.a).
                return;
            }
            let key = Key::new(&name);
            let mut found: Option<usize> = None;
            let mut ce = self.apex_labels;
            if key.labels == self.apex_labels {
                found = self.find(key.full());
            }
            for d in self.apex_labels + 1..=key.labels {
                let Some(node) = self.find(key.prefix(d)) else { break };
                ce = d;
                // RFC 4035 §3.1.4.1 / RFC 4034 §5: DS is answered from the parent side of a cut.
                if self.is_cut(node) && (d < key.labels || qtype != Rtype::DS) {
                    self.referral(node, &name, d, dnssec, reply);
                    return;
                }
                if d < key.labels {
                    if let Some(dn) = self.get(node, Rtype::DNAME) {
                        // RFC 6672 §3.2: the DNAME, then a CNAME synthesized from it.
                        self.push(&mut reply.answer, node, Rtype::DNAME, dnssec, None);
                        let Some((ttl, ZoneRecordData::Dname(target))) = self.first(dn) else { return };
                        let owner_len = key.labels - d;
                        let Some(new) = replace_suffix(&name, owner_len, target.dname()) else {
                            // RFC 6672 §2.2: the result would be longer than a name may be.
                            reply.rcode = Rcode::YXDOMAIN.into();
                            return;
                        };
                        let cname = Record::new(name.clone(), Class::IN, Ttl::from_secs(ttl), ZoneRecordData::Cname(Cname::new(new.clone())));
                        reply.answer.push(cname);
                        links += 1;
                        // The synthesized CNAME is itself the answer to a CNAME query.
                        if links > MAX_CHAIN || qtype == Rtype::CNAME {
                            return;
                        }
                        name = new;
                        continue 'chain;
                    }
                } else {
                    found = Some(node);
                }
            }
            let (node, wildcard) = match found {
                Some(n) => (n, false),
                None => {
                    // RFC 4592 §3.3.1: the source of synthesis is `*.` the closest encloser.
                    let mut wk = [0u8; 256];
                    let p = key.prefix(ce);
                    let len = p.len();
                    if len + 2 > 256 {
                        return;
                    }
                    wk[..len].copy_from_slice(p);
                    wk[len] = b'*';
                    wk[len + 1] = 0;
                    match self.find(&wk[..len + 2]) {
                        Some(w) => (w, true),
                        None => {
                            reply.rcode = Rcode::NXDOMAIN.into();
                            self.negative_soa(reply, dnssec);
                            if dnssec {
                                self.nxdomain_proof(&name, &key, ce, &wk[..len + 2], &mut reply.authority);
                            }
                            return;
                        }
                    }
                }
            };
            if qtype == Rtype::RRSIG {
                // As Knot DNS (and like ANY, RFC 8482): the signatures of one RRset, the one of
                // the lowest type, DO bit or not; a name with none is NODATA.
                if let Some(t) = self.lowest_signed_type(node) {
                    self.push_sigs(&mut reply.answer, node, t, &name, None);
                    if wildcard && dnssec {
                        self.wildcard_proof(&name, &key, ce, &mut reply.authority);
                    }
                    return;
                }
            }
            if qtype == Rtype::NSEC {
                // NSEC (and RRSIG) live beside a CNAME (RFC 4035 §2.3): answered, not followed;
                // as Knot DNS, a name without one (in a zone signed with NSEC3) is NODATA.
                if self.get(node, Rtype::NSEC).is_none() {
                    self.nodata(node, wildcard, &name, &key, ce, dnssec, reply);
                    return;
                }
                self.push(&mut reply.answer, node, Rtype::NSEC, dnssec, Some(&name));
                // The NSEC that proves a wildcard's source is often this very one: once is enough.
                if wildcard && dnssec && self.covering_node(key.full()) != Some(node) {
                    self.wildcard_proof(&name, &key, ce, &mut reply.authority);
                }
                return;
            }
            if qtype != Rtype::CNAME && qtype != Rtype::ANY {
                if let Some(c) = self.get(node, Rtype::CNAME) {
                    self.push(&mut reply.answer, node, Rtype::CNAME, dnssec, Some(&name));
                    if wildcard && dnssec {
                        self.wildcard_proof(&name, &key, ce, &mut reply.authority);
                    }
                    let Some((_, ZoneRecordData::Cname(t))) = self.first(c) else { return };
                    links += 1;
                    if links > MAX_CHAIN {
                        return;
                    }
                    // A CNAME to a name already seen is a loop: stop here.
                    if reply.answer.iter().filter(|r| r.rtype() == Rtype::CNAME).any(|r| r.owner().name_eq(t.cname())) {
                        return;
                    }
                    name = t.cname().clone();
                    continue 'chain;
                }
            }
            if qtype == Rtype::ANY {
                // RFC 8482 §4.2: answer with one RRset, not all of them; as Knot DNS, the one of
                // the lowest type (a CNAME is answered as it is, not followed). Sets are in
                // type order.
                match self.node_sets(node).iter().find(|s| s.rtype != Rtype::RRSIG.to_int()) {
                    Some(s) => {
                        let t = Rtype::from_int(s.rtype);
                        self.push(&mut reply.answer, node, t, dnssec, Some(&name));
                        if wildcard && dnssec {
                            self.wildcard_proof(&name, &key, ce, &mut reply.authority);
                        }
                        self.additional(s, dnssec, reply);
                    }
                    None => self.nodata(node, wildcard, &name, &key, ce, dnssec, reply),
                }
                return;
            }
            match self.get(node, qtype) {
                Some(set) => {
                    self.push(&mut reply.answer, node, qtype, dnssec, Some(&name));
                    if wildcard && dnssec {
                        // RFC 4035 §3.1.3.3: prove the name itself does not exist.
                        self.wildcard_proof(&name, &key, ce, &mut reply.authority);
                    }
                    self.additional(set, dnssec, reply);
                }
                None => self.nodata(node, wildcard, &name, &key, ce, dnssec, reply),
            }
            return;
        }
    }

    /// RFC 2308 §2.2 NODATA, with RFC 4035 §3.1.3.1/3.1.3.4 proofs when signed.
    #[allow(clippy::too_many_arguments)]
    fn nodata(&self, node: usize, wildcard: bool, name: &Name<Bytes>, key: &Key, ce: usize, dnssec: bool, reply: &mut Reply) {
        self.negative_soa(reply, dnssec);
        if !dnssec {
            return;
        }
        if let Some(c) = &self.nsec3 {
            // RFC 5155 §7.2.3-7.2.5: the name's own NSEC3; for a wildcard, the closest encloser
            // proof and the wildcard's NSEC3; where opt-out left the name without one, the
            // closest provable encloser proof.
            let (labels, n) = labels_of(name);
            if wildcard {
                self.nsec3_encloser(c, &labels[..n], ce, &mut reply.authority);
                if let Some(m) = c.matching(&c.hash(true, &labels[n - ce..n])) {
                    self.push_nsec3(m, &mut reply.authority);
                }
            } else {
                self.nsec3_encloser(c, &labels[..n], n, &mut reply.authority);
            }
            return;
        }
        if self.is_empty(node) {
            self.covering_nsec(key.full(), &mut reply.authority);
        } else {
            self.own_nsec(node, &mut reply.authority);
        }
        if wildcard {
            let mut more = Vec::new();
            self.covering_nsec(key.full(), &mut more);
            for r in more {
                if !reply.authority.contains(&r) {
                    reply.authority.push(r);
                }
            }
        }
    }

    /// A referral to the zone cut at `node` (RFC 1034 §4.3.2 3.b): not authoritative, the NS
    /// RRset in authority, addresses of the name servers in additional; when signed, the DS
    /// RRset or the NSEC proving there is none (RFC 4035 §3.1.4).
    fn referral(&self, node: usize, name: &Name<Bytes>, depth: usize, dnssec: bool, reply: &mut Reply) {
        if reply.answer.is_empty() {
            reply.header.set_aa(false);
        }
        let Some(ns) = self.get(node, Rtype::NS) else { return };
        self.push(&mut reply.authority, node, Rtype::NS, false, None);
        if dnssec {
            match (self.get(node, Rtype::DS), &self.nsec3) {
                (Some(_), _) => self.push(&mut reply.authority, node, Rtype::DS, true, None),
                // RFC 5155 §7.2.7: the cut's NSEC3, or with opt-out the closest provable
                // encloser proof.
                (None, Some(c)) => {
                    let (labels, n) = labels_of(name);
                    self.nsec3_encloser(c, &labels[n - depth..n], depth, &mut reply.authority);
                }
                (None, None) => self.own_nsec(node, &mut reply.authority),
            }
        }
        self.additional(ns, dnssec, reply);
    }

    /// RFC 1035 §3.3.9/§3.3.11, RFC 2782, RFC 9460: addresses of MX, NS, SRV, SVCB and HTTPS
    /// targets in the zone.
    fn additional(&self, set: &SetEntry, dnssec: bool, reply: &mut Reply) {
        let rtype = Rtype::from_int(set.rtype);
        if !matches!(rtype, Rtype::MX | Rtype::NS | Rtype::SRV | Rtype::SVCB | Rtype::HTTPS) {
            return;
        }
        for (_, d) in self.rdatas(set) {
            let data = parse_rdata(rtype, d);
            let target = match &data {
                ZoneRecordData::Mx(mx) => mx.exchange(),
                ZoneRecordData::Ns(ns) => ns.nsdname(),
                ZoneRecordData::Srv(srv) => srv.target(),
                // RFC 9460 §4.1: addresses of a service binding's target, as Knot DNS adds them.
                ZoneRecordData::Svcb(s) => s.target(),
                ZoneRecordData::Https(s) => s.target(),
                _ => continue,
            };
            if !target.ends_with(&self.origin) {
                continue;
            }
            let Some(node) = self.find(Key::new(target).full()) else { continue };
            for t in [Rtype::A, Rtype::AAAA] {
                if self.get(node, t).is_some() && !reply.additional.iter().any(|x| x.rtype() == t && x.owner().name_eq(target)) {
                    // Glue below a cut is not signed by this zone: no RRSIGs either way.
                    self.push(&mut reply.additional, node, t, dnssec, None);
                }
            }
        }
    }

    pub fn soa(&self) -> &Rr {
        &self.soa
    }
}

/// The labels of `name`, leftmost first, the root left off.
fn key_at<'a>(keys: &'a [u8], n: &NodeEntry) -> &'a [u8] {
    &keys[n.key as usize..n.key as usize + n.key_len as usize]
}

fn labels_of(name: &impl ToName) -> ([&[u8]; 128], usize) {
    let mut labels: [&[u8]; 128] = [&[]; 128];
    let mut n = 0;
    for l in name.iter_labels() {
        if !l.is_root() && n < 128 {
            labels[n] = l.as_slice();
            n += 1;
        }
    }
    (labels, n)
}

/// The first `keep` labels of `name` followed by `target` (RFC 6672 §2.2); `None` when the
/// result is longer than a name may be.
fn replace_suffix(name: &Name<Bytes>, keep: usize, target: &Name<Bytes>) -> Option<Name<Bytes>> {
    let mut b = domain::base::name::NameBuilder::<bytes::BytesMut>::new();
    for l in name.iter_labels().take(keep) {
        b.append_label(l.as_slice()).ok()?;
    }
    b.append_origin(target).ok()
}
