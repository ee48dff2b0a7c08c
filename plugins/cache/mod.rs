//! cache: keeps the replies of the plugins after it and answers repeated queries from memory, as
//! CoreDNS's cache does: success and denial stores with their own capacities and TTL bounds,
//! negative answers cached per RFC 2308 (the SOA's TTL and MINIMUM), SERVFAIL for a short while,
//! prefetch of popular entries before they expire, stale answers when the source fails, and
//! `disable`/`keepttl`. DO and CD are part of the key.
//!
//! A hit is answered without waiting for anything: one shard lock, one clone of the stored
//! records with their TTLs set to what is left, the client's ID and question. Misses go down the
//! chain and the reply is stored on the way back.

mod store;

use std::str::FromStr;
use std::time::Duration;

use arc_swap::ArcSwap;
use domain::base::question::Question;
use domain::rdata::dnssec::Timestamp;
use metrics::{Counter, Gauge};
use tokio::time::Instant;

use crate::plugin::prelude::*;
use crate::plugin::parse_duration;
use crate::response::{typify, ResponseType};

pub use store::{Key, Snapshot, Store, Stored};

pub const ENTRIES: &str = "coredns_cache_entries";
pub const HITS: &str = "coredns_cache_hits_total";
pub const MISSES: &str = "coredns_cache_misses_total";
pub const REQUESTS: &str = "coredns_cache_requests_total";
pub const PREFETCH: &str = "coredns_cache_prefetch_total";
pub const DROPS: &str = "coredns_cache_drops_total";
pub const SERVED_STALE: &str = "coredns_cache_served_stale_total";
pub const EVICTIONS: &str = "coredns_cache_evictions_total";

/// CoreDNS's defaults.
pub const DEFAULT_CAPACITY: usize = 9984;
pub const MAX_SUCCESS_TTL: u32 = 3600;
pub const MAX_DENIAL_TTL: u32 = 1800;
pub const MIN_TTL: u32 = 5;
pub const DEFAULT_SERVFAIL: u32 = 5;
pub const MAX_SERVFAIL: u32 = 300;
/// TTL of a reply with no records at all (CoreDNS's failSafeTTL).
pub const FAIL_SAFE_TTL: u32 = 5;

/// `cache [TTL] [ZONES...] { ... }`, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The largest TTL of both kinds of entry.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Zones to cache; the server block's when empty.
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub success: Option<Capacity>,
    #[serde(default)]
    pub denial: Option<Capacity>,
    #[serde(default)]
    pub prefetch: Option<Prefetch>,
    #[serde(default)]
    pub serve_stale: Option<ServeStale>,
    /// How long SERVFAIL is cached; `0s` turns it off. Default 5s, at most 5m.
    #[serde(default)]
    pub servfail: Option<String>,
    #[serde(default)]
    pub disable: Vec<Disable>,
    #[serde(default)]
    pub keepttl: bool,
}

/// `success|denial CAPACITY [TTL] [MINTTL]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    pub capacity: usize,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub min_ttl: Option<u32>,
}

/// `prefetch AMOUNT [[DURATION] [PERCENTAGE%]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefetch {
    pub amount: u32,
    #[serde(default = "default_prefetch_duration")]
    pub duration: String,
    #[serde(default = "default_percentage")]
    pub percentage: u32,
}

fn default_prefetch_duration() -> String {
    "1m".into()
}

fn default_percentage() -> u32 {
    10
}

/// `serve_stale [DURATION] [immediate|verify]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeStale {
    #[serde(default = "default_stale")]
    pub duration: String,
    #[serde(default)]
    pub verify: bool,
}

fn default_stale() -> String {
    "1h".into()
}

/// `disable success|denial [ZONES...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disable {
    pub kind: Kind,
    #[serde(default)]
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Success,
    Denial,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Success => "success",
            Kind::Denial => "denial",
        }
    }
}

pub fn parse(d: &Directive) -> Result<Config, SetupError> {
    let mut c = Config::default();
    let mut args = d.args.as_slice();
    if let Some(first) = args.first() {
        if let Ok(ttl) = first.text.parse::<i64>() {
            if ttl <= 0 {
                return Err(first.err("cache TTL can not be zero or negative"));
            }
            c.ttl = Some(u32::try_from(ttl).map_err(|_| first.err("cache TTL too large"))?);
            args = &args[1..];
        }
    }
    c.zones = args.iter().map(fqdn).collect::<Result<_, _>>()?;
    for line in d.lines() {
        match line.key().as_str() {
            "success" | "denial" => {
                let a = line.nargs(1, 3)?;
                let capacity: usize = a[0].parse("a capacity")?;
                if capacity == 0 {
                    return Err(a[0].err("capacity must be above zero"));
                }
                let ttl = match a.get(1) {
                    Some(t) => {
                        let v: u32 = t.parse("a TTL in seconds")?;
                        if v == 0 {
                            return Err(t.err("TTL must be above zero"));
                        }
                        Some(v)
                    }
                    None => None,
                };
                let min_ttl = a.get(2).map(|t| t.parse("a minimum TTL in seconds")).transpose()?;
                let cap = Capacity { capacity, ttl, min_ttl };
                if line.key().as_str() == "success" {
                    c.success = Some(cap);
                } else {
                    c.denial = Some(cap);
                }
            }
            "prefetch" => {
                let a = line.nargs(1, 3)?;
                let amount: u32 = a[0].parse("a number of queries")?;
                if amount == 0 {
                    return Err(a[0].err("prefetch amount must be above zero"));
                }
                let mut p = Prefetch { amount, duration: default_prefetch_duration(), percentage: default_percentage() };
                for t in &a[1..] {
                    if let Some(pct) = t.text.strip_suffix('%') {
                        let v: u32 = pct.parse().map_err(|_| t.err(format!("expected a percentage such as 10%, got {:?}", t.text)))?;
                        if !(10..=90).contains(&v) {
                            return Err(t.err("prefetch percentage must be between 10% and 90%"));
                        }
                        p.percentage = v;
                    } else {
                        t.duration()?;
                        p.duration = t.text.clone();
                    }
                }
                c.prefetch = Some(p);
            }
            "serve_stale" => {
                let a = line.nargs(0, 2)?;
                let mut s = ServeStale { duration: default_stale(), verify: false };
                if let Some(t) = a.first() {
                    t.duration()?;
                    s.duration = t.text.clone();
                }
                if let Some(t) = a.get(1) {
                    s.verify = match t.as_str() {
                        "immediate" => false,
                        "verify" => true,
                        other => return Err(t.err(format!("unknown refresh mode {other:?}: expected immediate or verify"))),
                    };
                }
                c.serve_stale = Some(s);
            }
            "servfail" => {
                let t = &line.nargs(1, 1)?[0];
                if t.duration()? > Duration::from_secs(u64::from(MAX_SERVFAIL)) {
                    return Err(t.err("servfail duration may be at most 5m"));
                }
                c.servfail = Some(t.text.clone());
            }
            "disable" => {
                let a = line.nargs(1, usize::MAX)?;
                let kind = match a[0].as_str() {
                    "success" => Kind::Success,
                    "denial" => Kind::Denial,
                    other => return Err(a[0].err(format!("cannot disable {other:?}: expected success or denial"))),
                };
                c.disable.push(Disable { kind, zones: a[1..].iter().map(fqdn).collect::<Result<_, _>>()? });
            }
            "keepttl" => {
                line.nargs(0, 0)?;
                c.keepttl = true;
            }
            _ => return Err(line.unknown()),
        }
    }
    Ok(c)
}

fn fqdn(t: &Token) -> Result<String, SetupError> {
    let text = if t.text.ends_with('.') { t.text.clone() } else { format!("{}.", t.text) };
    let text = text.to_ascii_lowercase();
    Name::<Bytes>::from_str(&text).map_err(|e| t.err(format!("invalid zone {:?}: {e}", t.text)))?;
    Ok(text)
}

fn names(v: &[String]) -> Result<Vec<Name<Bytes>>, SetupError> {
    v.iter().map(|z| Name::from_str(z).map_err(|e| SetupError::new(format!("invalid zone {z:?}: {e}")))).collect()
}

pub fn setup(c: &Config, ctx: &mut SetupCtx) -> Result<(), SetupError> {
    let cache = build(c, ctx.zones)?;
    ctx.add_handler(Arc::new(cache));
    Ok(())
}

/// The plugin for one directive in a block serving `block_zones`.
pub fn build(c: &Config, block_zones: &[Name<Bytes>]) -> Result<Cache, SetupError> {
    describe();
    let zones = if c.zones.is_empty() { block_zones.to_vec() } else { names(&c.zones)? };
    let dur = |s: &str| parse_duration(s).ok_or_else(|| SetupError::new(format!("invalid duration {s:?}")));
    let bounds = |cap: &Option<Capacity>, max: u32| {
        let max = cap.as_ref().and_then(|p| p.ttl).or(c.ttl).unwrap_or(max);
        let min = cap.as_ref().and_then(|p| p.min_ttl).unwrap_or(MIN_TTL).min(max);
        (cap.as_ref().map_or(DEFAULT_CAPACITY, |p| p.capacity), min, max)
    };
    let (pcap, pmin, pmax) = bounds(&c.success, MAX_SUCCESS_TTL);
    let (ncap, nmin, nmax) = bounds(&c.denial, MAX_DENIAL_TTL);
    let prefetch = match &c.prefetch {
        Some(p) => Some((p.amount, dur(&p.duration)?.as_secs().max(1) as u32, p.percentage)),
        None => None,
    };
    let stale = match &c.serve_stale {
        Some(s) => Some((dur(&s.duration)?.as_secs() as u32, s.verify)),
        None => None,
    };
    let servfail = match &c.servfail {
        Some(s) => dur(s)?.as_secs().min(u64::from(MAX_SERVFAIL)) as u32,
        None => DEFAULT_SERVFAIL,
    };
    let mut disabled = Vec::new();
    for d in &c.disable {
        let z = if d.zones.is_empty() { zones.clone() } else { names(&d.zones)? };
        disabled.extend(z.into_iter().map(|z| (d.kind, z)));
    }
    // One seed for both stores: a key's hash is computed once per query.
    let hasher = std::collections::hash_map::RandomState::new();
    let zones_label = zones.iter().map(|z| z.fmt_with_dot().to_string()).collect::<Vec<_>>().join(",");
    Ok(Cache {
        inner: Arc::new(Inner {
            zones,
            success: Store::new(pcap, hasher.clone()),
            denial: Store::new(ncap, hasher),
            success_ttl: (pmin, pmax),
            denial_ttl: (nmin, nmax),
            prefetch,
            stale,
            servfail,
            disabled,
            keepttl: c.keepttl,
            epoch: Instant::now(),
            zones_label,
            first: std::sync::OnceLock::new(),
            handles: ArcSwap::from_pointee(Vec::new()),
        }),
    })
}

pub struct Cache {
    inner: Arc<Inner>,
}

pub struct Inner {
    zones: Vec<Name<Bytes>>,
    pub success: Store,
    pub denial: Store,
    /// (minimum, maximum) TTL of each kind.
    success_ttl: (u32, u32),
    denial_ttl: (u32, u32),
    /// (amount, window in seconds, percentage).
    prefetch: Option<(u32, u32, u32)>,
    /// (how long past expiry, verify first).
    stale: Option<(u32, bool)>,
    servfail: u32,
    disabled: Vec<(Kind, Name<Bytes>)>,
    keepttl: bool,
    epoch: Instant,
    zones_label: String,
    /// Metric handles per server label, made once for each server this chain serves: the
    /// first server's, then the others'.
    first: std::sync::OnceLock<(Arc<str>, Arc<Handles>)>,
    handles: ArcSwap<Vec<(Arc<str>, Arc<Handles>)>>,
}

/// A server's handles, borrowed for the first server, shared for the others.
enum HandlesRef<'a> {
    First(&'a Arc<Handles>),
    Other(Arc<Handles>),
}

impl HandlesRef<'_> {
    fn to_arc(&self) -> Arc<Handles> {
        match self {
            HandlesRef::First(h) => Arc::clone(h),
            HandlesRef::Other(h) => h.clone(),
        }
    }
}

impl std::ops::Deref for HandlesRef<'_> {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        match self {
            HandlesRef::First(h) => h,
            HandlesRef::Other(h) => h,
        }
    }
}

/// Label handles for one server.
pub struct Handles {
    hits: [Counter; 2],
    entries: [Gauge; 2],
    evictions: [Counter; 2],
    misses: Counter,
    requests: Counter,
    prefetch: Counter,
    drops: Counter,
    stale: Counter,
}

fn describe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_gauge!(ENTRIES, "The number of elements in the cache.");
        metrics::describe_counter!(HITS, "The count of cache hits.");
        metrics::describe_counter!(MISSES, "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.");
        metrics::describe_counter!(REQUESTS, "The count of cache requests.");
        metrics::describe_counter!(PREFETCH, "The number of times the cache has prefetched a cached item.");
        metrics::describe_counter!(DROPS, "The number responses that are not cached, because the reply is malformed.");
        metrics::describe_counter!(SERVED_STALE, "The number of requests served from stale cache entries.");
        metrics::describe_counter!(EVICTIONS, "The count of cache evictions.");
    });
}

/// How a lookup went.
enum Found {
    /// A fresh entry; `prefetch` when this hit should start a refresh in the background.
    Fresh { reply: Reply, prefetch: bool },
    /// Expired but inside the serve_stale window: the stale reply (TTL 0), and whether this
    /// query should start the refresh (one query does).
    Stale { reply: Reply, refresh: bool },
    Miss,
}

impl Inner {
    fn now(&self) -> u32 {
        Instant::now().saturating_duration_since(self.epoch).as_secs() as u32
    }

    /// The handles for `server`: the first server's without touching a reference count (the
    /// usual case: one server per chain), others from a list.
    fn handles(&self, server: &Arc<str>) -> HandlesRef<'_> {
        let (first, h) = self.first.get_or_init(|| (server.clone(), Arc::new(self.make_handles(server))));
        if Arc::ptr_eq(first, server) || **first == **server {
            return HandlesRef::First(h);
        }
        let list = self.handles.load();
        if let Some((_, h)) = list.iter().find(|(s, _)| Arc::ptr_eq(s, server) || **s == **server) {
            return HandlesRef::Other(h.clone());
        }
        let h = Arc::new(self.make_handles(server));
        self.handles.rcu(|old| {
            let mut v = (**old).clone();
            if !v.iter().any(|(s, _)| **s == **server) {
                v.push((server.clone(), h.clone()));
            }
            v
        });
        HandlesRef::Other(h)
    }

    fn make_handles(&self, server: &str) -> Handles {
        let (s, z) = (server.to_string(), self.zones_label.clone());
        // The view label is empty until ferrite has the view plugin, as CoreDNS without views.
        let typed = |name: &'static str, kind: Kind| {
            (s.clone(), z.clone(), kind.label(), name)
        };
        let counter = |(s, z, t, n): (String, String, &'static str, &'static str)| {
            metrics::counter!(n, "server" => s, "type" => t, "zones" => z, "view" => "")
        };
        let gauge = |(s, z, t, n): (String, String, &'static str, &'static str)| {
            metrics::gauge!(n, "server" => s, "type" => t, "zones" => z, "view" => "")
        };
        let plain = |n: &'static str| metrics::counter!(n, "server" => s.clone(), "zones" => z.clone(), "view" => "");
        Handles {
            hits: [counter(typed(HITS, Kind::Success)), counter(typed(HITS, Kind::Denial))],
            entries: [gauge(typed(ENTRIES, Kind::Success)), gauge(typed(ENTRIES, Kind::Denial))],
            evictions: [counter(typed(EVICTIONS, Kind::Success)), counter(typed(EVICTIONS, Kind::Denial))],
            misses: plain(MISSES),
            requests: plain(REQUESTS),
            prefetch: plain(PREFETCH),
            drops: plain(DROPS),
            stale: plain(SERVED_STALE),
        }
    }

    fn store(&self, kind: Kind) -> &Store {
        match kind {
            Kind::Success => &self.success,
            Kind::Denial => &self.denial,
        }
    }

    /// Looks `req` up in both stores. A fresh entry becomes a reply at once; an expired one is
    /// dropped, or served stale inside the serve_stale window.
    fn lookup(&self, req: &Request, h: &Handles, now: u32) -> Found {
        let key = key_of(req);
        let hash = self.success.hash(&key);
        for kind in [Kind::Success, Kind::Denial] {
            let store = self.store(kind);
            let found = store.with(hash, &key, |e| {
                let left = e.remaining(now);
                if left > 0 {
                    let prefetch = self.should_prefetch(e, now, left);
                    let ttl = if self.keepttl { e.ttl } else { left as u32 };
                    return Some((e.snapshot(), ttl, false, prefetch));
                }
                match self.stale {
                    Some((window, _)) if -left < i64::from(window) => {
                        let refresh = !e.refreshing;
                        e.refreshing = true;
                        Some((e.snapshot(), 0, true, refresh))
                    }
                    _ => None,
                }
            });
            match found {
                Some(Some((snap, ttl, stale, flag))) => {
                    let Some(reply) = to_reply(&snap, req, ttl) else { return Found::Miss };
                    if stale {
                        return Found::Stale { reply, refresh: flag };
                    }
                    h.hits[kind as usize].increment(1);
                    return Found::Fresh { reply, prefetch: flag };
                }
                // Expired and not to be served stale: make room.
                Some(None) if store.remove(hash, &key) => h.entries[kind as usize].set(store.len() as f64),
                _ => {}
            }
        }
        Found::Miss
    }

    /// CoreDNS's rule: AMOUNT hits with no gap of DURATION between them, and at most PERCENTAGE
    /// of the TTL left (at least one second's worth).
    fn should_prefetch(&self, e: &mut store::Entry, now: u32, left: i64) -> bool {
        let Some((amount, window, pct)) = self.prefetch else { return false };
        if now.saturating_sub(e.last_hit) > window {
            e.hits = 0;
        }
        e.hits = e.hits.saturating_add(1);
        e.last_hit = now;
        let threshold = (u64::from(e.ttl) * u64::from(pct)).div_ceil(100).max(1) as i64;
        if e.hits >= amount && left <= threshold && !e.refreshing {
            e.refreshing = true;
            return true;
        }
        false
    }

    /// Stores `reply` to `req` if it is cacheable; returns whether it was.
    fn insert(&self, req: &Request, reply: &Reply, h: &Handles, now: u32, hits: u32) -> bool {
        if reply.header.tc() {
            // A truncated reply is incomplete: the client asks again over TCP.
            return false;
        }
        let matches = reply
            .question
            .as_ref()
            .is_some_and(|q| q.qtype() == req.qtype && q.qclass() == req.qclass && *q.qname() == req.qname);
        if !matches {
            h.drops.increment(1);
            return false;
        }
        let (kind, ttl) = match typify(reply, req.dnssec_ok(), Timestamp::now()) {
            ResponseType::NoError | ResponseType::Delegation => {
                let (min, max) = self.success_ttl;
                (Kind::Success, min_ttl(reply).clamp(min, max))
            }
            ResponseType::NameError | ResponseType::NoData => {
                let (min, max) = self.denial_ttl;
                (Kind::Denial, negative_ttl(reply).clamp(min, max))
            }
            ResponseType::ServerError if self.servfail > 0 && reply.rcode.rcode() == Rcode::SERVFAIL => {
                (Kind::Denial, self.servfail)
            }
            _ => return false,
        };
        if self.disabled.iter().any(|(k, z)| *k == kind && req.qname.ends_with(z)) {
            return false;
        }
        let stored = Stored { header: reply.header, rcode: reply.rcode, sections: [&reply.answer, &reply.authority, &reply.additional] };
        let key = key_of(req);
        let store = self.store(kind);
        let Some(r) = store.insert(store.hash(&key), &key, stored, now, ttl, hits) else { return false };
        if r.evicted > 0 {
            h.evictions[kind as usize].increment(r.evicted as u64);
        }
        if r.new {
            h.entries[kind as usize].set(store.len() as f64);
        }
        true
    }

    /// Runs the rest of the chain for `req` in the background and stores what it answers: the
    /// refresh of a prefetched or stale entry.
    fn refresh(self: &Arc<Self>, req: &Request, next: &Next, h: Arc<Handles>, prefetch: bool) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let (inner, chain, mut req) = (self.clone(), next.to_owned(), req.clone());
        rt.spawn(async move {
            let result = chain.next().serve(&mut req).await;
            let now = inner.now();
            let stored = match &result {
                Ok(reply) if !failed(reply) => inner.insert(&req, reply, &h, now, 0),
                _ => false,
            };
            if stored && prefetch {
                h.prefetch.increment(1);
            }
            if !stored {
                // Let a later query try again.
                let key = key_of(&req);
                for kind in [Kind::Success, Kind::Denial] {
                    let s = inner.store(kind);
                    s.with(s.hash(&key), &key, |e| e.refreshing = false);
                }
            }
        });
    }
}

/// A reply that says the source could not answer: not worth replacing a stale entry with.
fn failed(r: &Reply) -> bool {
    matches!(r.rcode.rcode(), Rcode::SERVFAIL | Rcode::REFUSED)
}

fn key_of(req: &Request) -> Key<'_> {
    Key {
        qname: &req.qname,
        qtype: req.qtype,
        qclass: req.qclass,
        dnssec_ok: req.dnssec_ok(),
        checking_disabled: req.header.cd(),
    }
}

/// A reply from a stored entry: its flags and records with every TTL set to `ttl`, the client's
/// question (its case) and RD/CD bits.
fn to_reply(s: &Snapshot, req: &Request, ttl: u32) -> Option<Reply> {
    let [answer, authority, additional] = s.sections(Ttl::from_secs(ttl))?;
    let mut header = s.header;
    header.set_id(req.header.id());
    header.set_rd(req.header.rd());
    header.set_cd(req.header.cd());
    Some(Reply {
        header,
        rcode: s.rcode,
        question: Some(Question::new(req.qname.clone(), req.qtype, req.qclass)),
        answer,
        authority,
        additional,
        edns: None,
        // Credited to the cache in coredns_dns_responses_total, as CoreDNS does for hits.
        plugin: "cache",
        raw: None,
    })
}

/// The smallest TTL of the reply's records (OPT is never among them); FAIL_SAFE_TTL when there
/// are none.
fn min_ttl(r: &Reply) -> u32 {
    [&r.answer, &r.authority, &r.additional]
        .into_iter()
        .flatten()
        .map(|rr| rr.ttl().as_secs())
        .min()
        .unwrap_or(FAIL_SAFE_TTL)
}

/// RFC 2308 §5: a negative answer is cached for the smaller of the SOA record's TTL and its
/// MINIMUM field.
fn negative_ttl(r: &Reply) -> u32 {
    r.authority
        .iter()
        .filter_map(|rr| match rr.data() {
            ZoneRecordData::Soa(soa) => Some(rr.ttl().as_secs().min(soa.minimum().as_secs())),
            _ => None,
        })
        .min()
        .unwrap_or(FAIL_SAFE_TTL)
}

impl Cache {
    /// The shared state, for tests that look at the stores.
    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Plugin for Cache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let inner = &self.inner;
        if !inner.zones.iter().any(|z| req.qname.ends_with(z)) {
            return next.serve(req);
        }
        let h = inner.handles(&req.server);
        h.requests.increment(1);
        let now = inner.now();
        match inner.lookup(req, &h, now) {
            Found::Fresh { reply, prefetch } => {
                if prefetch {
                    inner.refresh(req, &next, h.to_arc(), true);
                }
                Box::pin(std::future::ready(Ok(reply)))
            }
            Found::Stale { reply, refresh } => {
                let verify = inner.stale.is_some_and(|(_, v)| v);
                if !verify {
                    h.stale.increment(1);
                    if refresh {
                        inner.refresh(req, &next, h.to_arc(), false);
                    }
                    return Box::pin(std::future::ready(Ok(reply)));
                }
                // verify: ask the source first; serve the stale reply only if it fails.
                Box::pin(async move {
                    let result = next.serve(req).await;
                    let now = inner.now();
                    match result {
                        Ok(r) if !failed(&r) => {
                            inner.insert(req, &r, &h, now, 0);
                            Ok(r)
                        }
                        _ => {
                            h.stale.increment(1);
                            clear_refreshing(inner, req);
                            Ok(reply)
                        }
                    }
                })
            }
            Found::Miss => {
                h.misses.increment(1);
                Box::pin(async move {
                    let result = next.serve(req).await;
                    if let Ok(reply) = &result {
                        inner.insert(req, reply, &h, inner.now(), 0);
                    }
                    result
                })
            }
        }
    }
}

fn clear_refreshing(inner: &Inner, req: &Request) {
    let key = key_of(req);
    for kind in [Kind::Success, Kind::Denial] {
        let s = inner.store(kind);
        s.with(s.hash(&key), &key, |e| e.refreshing = false);
    }
}

#[cfg(test)]
mod tests;
