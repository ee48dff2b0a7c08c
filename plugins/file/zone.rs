//! One loaded zone and the lookup an authoritative server does in it (RFC 1034 §4.3.2, with
//! DNAME per RFC 6672, wildcards per RFC 4592, negative answers per RFC 2308 and DNSSEC records
//! per RFC 4035 §3.1).
//!
//! Nodes live in a sorted map keyed by the owner name in canonical order (RFC 4034 §6.1): labels
//! from the root down, lower case, each followed by a zero octet. The key of an ancestor is then
//! a prefix of its descendant's key, so a query walks down from the apex by slicing one key built
//! on the stack, and the predecessor of a name (for NSEC) is the map's previous entry. Every
//! ancestor of an owner up to the apex has a node, so empty non-terminals exist as empty nodes.

use std::collections::BTreeMap;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::name::{Name, ToLabelIter, ToName};
use domain::base::Record;
use domain::rdata::{Cname, ZoneRecordData};

use crate::plugin::{Reply, Request, Rr};

/// CNAME and DNAME links followed for one query, as Knot DNS bounds them.
const MAX_CHAIN: usize = 20;

/// Records of one type at one name, with the RRSIGs that cover them.
#[derive(Debug)]
pub struct RrSet {
    pub rtype: Rtype,
    pub records: Vec<Rr>,
    pub sigs: Vec<Rr>,
}

#[derive(Debug, Default)]
pub struct Node {
    pub sets: Vec<RrSet>,
    /// NS at a name other than the apex: the zone ends here (RFC 1034 §4.2.1).
    pub cut: bool,
}

impl Node {
    fn get(&self, t: Rtype) -> Option<&RrSet> {
        self.sets.iter().find(|s| s.rtype == t && !s.records.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.sets.iter().all(|s| s.records.is_empty())
    }
}

pub struct Zone {
    pub origin: Name<Bytes>,
    pub serial: u32,
    apex_labels: usize,
    soa: Rr,
    nodes: BTreeMap<Box<[u8]>, Node>,
    signed: bool,
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
        let mut labels: [&[u8]; 128] = [&[]; 128];
        let mut n = 0;
        for l in name.iter_labels() {
            if !l.is_root() && n < 128 {
                labels[n] = l.as_slice();
                n += 1;
            }
        }
        let mut k = Key { buf: [0; 256], ends: [0; 128], labels: n };
        let mut pos = 0;
        for (i, l) in labels[..n].iter().rev().enumerate() {
            for &c in l.iter() {
                if pos < 255 {
                    k.buf[pos] = c.to_ascii_lowercase();
                    pos += 1;
                }
            }
            if pos < 255 {
                k.buf[pos] = 0;
                pos += 1;
            }
            k.ends[i] = pos as u8;
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

impl Zone {
    /// Builds the zone from its records; checks what RFC 1035 and RFC 2181 require of one.
    pub fn build(origin: Name<Bytes>, records: Vec<Rr>) -> Result<Zone, LoadError> {
        let apex = Key::new(&origin);
        let apex_labels = apex.labels;
        let mut nodes: BTreeMap<Box<[u8]>, Node> = BTreeMap::new();
        let mut soa = None;
        let mut count = 0;
        let mut signed = false;
        for r in records {
            if r.class() != Class::IN {
                return Err(format!("{}: class {} is not served (only IN)", r.owner().fmt_with_dot(), r.class()));
            }
            if !r.owner().ends_with(&origin) {
                return Err(format!("{} {}: out of zone data (zone {})", r.owner().fmt_with_dot(), r.rtype(), origin.fmt_with_dot()));
            }
            let key = Key::new(r.owner());
            // Empty non-terminals: every ancestor down from the apex gets a node.
            for d in apex_labels..key.labels {
                nodes.entry(key.prefix(d).into()).or_default();
            }
            let node = nodes.entry(key.full().into()).or_default();
            let (t, is_sig) = match r.data() {
                ZoneRecordData::Rrsig(s) => {
                    signed = true;
                    (s.type_covered(), true)
                }
                _ => (r.rtype(), false),
            };
            if r.rtype() == Rtype::SOA {
                if key.labels != apex_labels {
                    return Err(format!("{}: SOA not at the zone apex {}", r.owner().fmt_with_dot(), origin.fmt_with_dot()));
                }
                if soa.is_some() {
                    return Err(format!("{}: more than one SOA record", origin.fmt_with_dot()));
                }
                soa = Some(r.clone());
            }
            let set = match node.sets.iter_mut().position(|s| s.rtype == t) {
                Some(i) => &mut node.sets[i],
                None => {
                    node.sets.push(RrSet { rtype: t, records: Vec::new(), sigs: Vec::new() });
                    node.sets.last_mut().expect("just pushed")
                }
            };
            let list = if is_sig { &mut set.sigs } else { &mut set.records };
            // RFC 2181 §5: an RRset holds no duplicates, and §5.2 its records share one TTL
            // (the first one read, as Knot DNS does).
            if list.iter().any(|x| x.data() == r.data()) {
                continue;
            }
            let r = match list.first() {
                Some(f) if !is_sig && f.ttl() != r.ttl() => Record::new(r.owner().clone(), r.class(), f.ttl(), r.data().clone()),
                _ => r,
            };
            list.push(r);
            count += 1;
        }
        let soa = soa.ok_or_else(|| format!("{}: no SOA record at the zone apex", origin.fmt_with_dot()))?;
        let ZoneRecordData::Soa(s) = soa.data() else { unreachable!("an SOA record holds SOA data") };
        let serial = s.serial().into_int();
        for (k, node) in nodes.iter_mut() {
            let at_apex = k.len() == apex.full().len();
            node.cut = !at_apex && node.get(Rtype::NS).is_some();
            // RFC 1034 §3.6.2 / RFC 2181 §10.1: a CNAME has no other data beside it (DNSSEC's
            // own records excepted).
            if node.get(Rtype::CNAME).is_some() {
                if let Some(other) = node.sets.iter().find(|s| {
                    !s.records.is_empty() && !matches!(s.rtype, Rtype::CNAME | Rtype::RRSIG | Rtype::NSEC)
                }) {
                    let owner = other.records[0].owner().fmt_with_dot().to_string();
                    return Err(format!("{owner}: CNAME and {} at the same name", other.rtype));
                }
                if node.get(Rtype::CNAME).is_some_and(|s| s.records.len() > 1) {
                    return Err(format!("{}: more than one CNAME", node.sets[0].records[0].owner().fmt_with_dot()));
                }
            }
        }
        let mut origin_lower = origin.to_string().to_ascii_lowercase();
        origin_lower.push('.');
        let origin: Name<Bytes> = origin_lower.parse().unwrap_or(origin);
        Ok(Zone { origin, serial, apex_labels, soa, nodes, signed, records: count })
    }

    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The SOA for negative answers: RFC 2308 §3, its TTL is the smaller of its own and MINIMUM.
    fn negative_soa(&self, reply: &mut Reply, dnssec: bool) {
        let ZoneRecordData::Soa(s) = self.soa.data() else { return };
        let ttl = self.soa.ttl().min(s.minimum());
        reply.authority.push(Record::new(self.soa.owner().clone(), Class::IN, ttl, self.soa.data().clone()));
        if dnssec {
            if let Some(set) = self.apex().and_then(|n| n.sets.iter().find(|s| s.rtype == Rtype::SOA)) {
                reply.authority.extend(set.sigs.iter().map(|r| Record::new(r.owner().clone(), Class::IN, ttl, r.data().clone())));
            }
        }
    }

    fn apex(&self) -> Option<&Node> {
        self.nodes.get(Key::new(&self.origin).full())
    }

    /// The NSEC RRset (and its signatures) that covers `key`: the closest name before it in
    /// canonical order that has one (RFC 4034 §6.1).
    fn covering_nsec(&self, key: &[u8], out: &mut Vec<Rr>) {
        let hit = self.nodes.range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(key))).rev().find_map(|(_, n)| n.sets.iter().find(|s| s.rtype == Rtype::NSEC && !s.records.is_empty()));
        // Wrap around: a name after the last one is covered by the last NSEC (RFC 4034 §4.1.1).
        let hit = hit.or_else(|| self.nodes.values().rev().find_map(|n| n.sets.iter().find(|s| s.rtype == Rtype::NSEC && !s.records.is_empty())));
        if let Some(set) = hit {
            push_set(out, set, true, None);
        }
    }

    fn own_nsec(&self, node: &Node, out: &mut Vec<Rr>) {
        if let Some(set) = node.sets.iter().find(|s| s.rtype == Rtype::NSEC) {
            push_set(out, set, true, None);
        }
    }

    /// Answers `req`, which is in this zone, into `reply` (rcode, AA and the three sections).
    pub fn answer(&self, req: &Request, reply: &mut Reply) {
        let dnssec = req.dnssec_ok() && self.signed;
        let qtype = req.qtype;
        let mut name = req.qname.clone();
        reply.header.set_aa(true);
        let mut links = 0;
        'chain: loop {
            if !name.ends_with(&self.origin) {
                // A CNAME or DNAME out of the zone: the client follows it (RFC 1034 §4.3.2 3.a).
                return;
            }
            let key = Key::new(&name);
            let mut found: Option<&Node> = None;
            let mut ce = self.apex_labels;
            if key.labels == self.apex_labels {
                found = self.nodes.get(key.full());
            }
            for d in self.apex_labels + 1..=key.labels {
                let Some(node) = self.nodes.get(key.prefix(d)) else { break };
                ce = d;
                // RFC 4035 §3.1.4.1 / RFC 4034 §5: DS is answered from the parent side of a cut.
                if node.cut && (d < key.labels || qtype != Rtype::DS) {
                    self.referral(node, dnssec, reply);
                    return;
                }
                if d < key.labels {
                    if let Some(dn) = node.get(Rtype::DNAME) {
                        // RFC 6672 §3.2: the DNAME, then a CNAME synthesized from it.
                        push_set(&mut reply.answer, dn, dnssec, None);
                        let ZoneRecordData::Dname(target) = dn.records[0].data() else { return };
                        let owner_len = key.labels - d;
                        let Some(new) = replace_suffix(&name, owner_len, target.dname()) else {
                            // RFC 6672 §2.2: the result would be longer than a name may be.
                            reply.rcode = Rcode::YXDOMAIN.into();
                            return;
                        };
                        let cname = Record::new(name.clone(), Class::IN, dn.records[0].ttl(), ZoneRecordData::Cname(Cname::new(new.clone())));
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
                    match self.nodes.get(&wk[..len + 2]) {
                        Some(w) => (w, true),
                        None => {
                            reply.rcode = Rcode::NXDOMAIN.into();
                            self.negative_soa(reply, dnssec);
                            if dnssec {
                                self.covering_nsec(key.full(), &mut reply.authority);
                                let mut more = Vec::new();
                                self.covering_nsec(&wk[..len + 2], &mut more);
                                for r in more {
                                    if !reply.authority.contains(&r) {
                                        reply.authority.push(r);
                                    }
                                }
                            }
                            return;
                        }
                    }
                }
            };
            if qtype != Rtype::CNAME && qtype != Rtype::ANY {
                if let Some(c) = node.get(Rtype::CNAME) {
                    push_set(&mut reply.answer, c, dnssec, Some(&name));
                    if wildcard && dnssec {
                        self.covering_nsec(key.full(), &mut reply.authority);
                    }
                    let ZoneRecordData::Cname(t) = c.records[0].data() else { return };
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
                // the lowest type (a CNAME is answered as it is, not followed).
                match node.sets.iter().filter(|s| !s.records.is_empty() && s.rtype != Rtype::RRSIG).min_by_key(|s| s.rtype.to_int()) {
                    Some(s) => {
                        push_set(&mut reply.answer, s, dnssec, Some(&name));
                        self.additional(s, dnssec, reply);
                    }
                    None => self.nodata(node, wildcard, &key, dnssec, reply),
                }
                return;
            }
            match node.get(qtype) {
                Some(set) => {
                    push_set(&mut reply.answer, set, dnssec, Some(&name));
                    if wildcard && dnssec {
                        // RFC 4035 §3.1.3.3: prove the name itself does not exist.
                        self.covering_nsec(key.full(), &mut reply.authority);
                    }
                    self.additional(set, dnssec, reply);
                }
                None => self.nodata(node, wildcard, &key, dnssec, reply),
            }
            return;
        }
    }

    /// RFC 2308 §2.2 NODATA, with RFC 4035 §3.1.3.1/3.1.3.4 proofs when signed.
    fn nodata(&self, node: &Node, wildcard: bool, key: &Key, dnssec: bool, reply: &mut Reply) {
        self.negative_soa(reply, dnssec);
        if !dnssec {
            return;
        }
        if node.is_empty() {
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
    fn referral(&self, node: &Node, dnssec: bool, reply: &mut Reply) {
        if reply.answer.is_empty() {
            reply.header.set_aa(false);
        }
        let Some(ns) = node.get(Rtype::NS) else { return };
        push_set(&mut reply.authority, ns, false, None);
        if dnssec {
            match node.get(Rtype::DS) {
                Some(ds) => push_set(&mut reply.authority, ds, true, None),
                None => self.own_nsec(node, &mut reply.authority),
            }
        }
        self.additional(ns, dnssec, reply);
    }

    /// RFC 1035 §3.3.9/§3.3.11, RFC 2782, RFC 9460: addresses of MX, NS, SRV, SVCB and HTTPS
/// targets in the zone.
    fn additional(&self, set: &RrSet, dnssec: bool, reply: &mut Reply) {
        for r in &set.records {
            let target = match r.data() {
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
            let Some(node) = self.nodes.get(Key::new(target).full()) else { continue };
            for t in [Rtype::A, Rtype::AAAA] {
                if let Some(a) = node.get(t) {
                    if !reply.additional.iter().any(|x| x.rtype() == t && x.owner().name_eq(target)) {
                        // Glue below a cut is not signed by this zone: no RRSIGs either way.
                        push_set(&mut reply.additional, a, dnssec, None);
                    }
                }
            }
        }
    }

    pub fn soa(&self) -> &Rr {
        &self.soa
    }
}

/// Appends an RRset (and its RRSIGs when `dnssec`), renamed to `owner` when given.
fn push_set(out: &mut Vec<Rr>, set: &RrSet, dnssec: bool, owner: Option<&Name<Bytes>>) {
    let rename = |r: &Rr| match owner {
        Some(o) => Record::new(o.clone(), r.class(), r.ttl(), r.data().clone()),
        None => r.clone(),
    };
    out.extend(set.records.iter().map(rename));
    if dnssec {
        out.extend(set.sigs.iter().map(rename));
    }
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
