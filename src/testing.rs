//! Test support for plugins and the server: records and cases written in zone-file text, stub
//! `next` plugins, and the contract every plugin passes.
//!
//! ```text
//! Case { qname: "example.org.", qtype: Rtype::MX,
//!        answer: &["example.org. 3600 IN MX 10 mx1.example.org."], ..Case::EMPTY }
//! ```
//! Sections are compared after sorting; a record written without a TTL matches any TTL.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::{Class, Rcode, Rtype};
use domain::base::name::{Name, ToName};

use crate::config::directive::Directive;
use crate::message::{Edns, Proto, Reply, Request, Rr};
use crate::plugin::{BoxFuture, Next, Plugin, ServeError, ServerOptions, SetupCtx, SetupError};
use crate::plugins::REGISTRY;

/// Parses one record in zone-file text (absolute names). Without a TTL, the TTL is 0.
pub fn rr(text: &str) -> Rr {
    try_rr(text).unwrap_or_else(|e| panic!("bad record {text:?}: {e}"))
}

pub fn try_rr(text: &str) -> Result<Rr, String> {
    crate::message::parse_rr(text, 0)
}

/// True when the record text gives a TTL (`name TTL [class] type ...`).
fn has_ttl(text: &str) -> bool {
    text.split_whitespace().nth(1).is_some_and(|t| t.parse::<u32>().is_ok())
}

fn show(r: &Rr, ttl: bool) -> String {
    let s = r.to_string();
    if ttl {
        return s;
    }
    let mut parts = s.splitn(3, ' ');
    let owner = parts.next().unwrap_or_default();
    let _ttl = parts.next();
    format!("{owner} {}", parts.next().unwrap_or_default())
}

/// One query and the reply expected for it.
#[derive(Clone, Debug)]
pub struct Case {
    pub qname: &'static str,
    pub qtype: Rtype,
    pub qclass: Class,
    pub dnssec_ok: bool,
    pub rcode: Rcode,
    pub answer: &'static [&'static str],
    pub authority: &'static [&'static str],
    pub additional: &'static [&'static str],
}

impl Case {
    pub const EMPTY: Case = Case {
        qname: ".",
        qtype: Rtype::A,
        qclass: Class::IN,
        dnssec_ok: false,
        rcode: Rcode::NOERROR,
        answer: &[],
        authority: &[],
        additional: &[],
    };

    pub fn request(&self) -> Request {
        let mut r = query(self.qname, self.qtype);
        r.qclass = self.qclass;
        if self.dnssec_ok {
            r.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true, options: vec![] });
        }
        r
    }

    /// Checks `reply` against the case, section by section; the error says what differs.
    pub fn check(&self, reply: &Reply) -> Result<(), String> {
        if reply.rcode.rcode() != self.rcode {
            return Err(format!("{} {}: rcode {} want {}", self.qname, self.qtype, reply.rcode, self.rcode));
        }
        for (name, want, got) in [
            ("answer", self.answer, &reply.answer),
            ("authority", self.authority, &reply.authority),
            ("additional", self.additional, &reply.additional),
        ] {
            compare_section(name, want, got).map_err(|e| format!("{} {}: {e}", self.qname, self.qtype))?;
        }
        Ok(())
    }
}

/// Compares a section to records in zone-file text, sorted, TTLs only where the text has one.
pub fn compare_section(name: &str, want: &[&str], got: &[Rr]) -> Result<(), String> {
    if want.len() != got.len() {
        let got: Vec<String> = got.iter().map(|r| r.to_string()).collect();
        return Err(format!("{name}: {} records, want {}: got {got:#?}", got.len(), want.len()));
    }
    let mut w: Vec<(String, bool)> = want.iter().map(|t| (show(&rr(t), has_ttl(t)), has_ttl(t))).collect();
    w.sort();
    let mut g: Vec<&Rr> = got.iter().collect();
    g.sort_by_key(|r| r.to_string());
    let mut unmatched: Vec<String> = Vec::new();
    let mut pool: Vec<&Rr> = g.clone();
    for (text, ttl) in &w {
        match pool.iter().position(|r| &show(r, *ttl) == text) {
            Some(i) => {
                pool.remove(i);
            }
            None => unmatched.push(text.clone()),
        }
    }
    if unmatched.is_empty() {
        Ok(())
    } else {
        let got: Vec<String> = g.iter().map(|r| r.to_string()).collect();
        Err(format!("{name}: missing {unmatched:?}; got {got:?}"))
    }
}

/// A query as a client on 127.0.0.1 sends it over UDP.
pub fn query(qname: &str, qtype: Rtype) -> Request {
    let name = Name::<Bytes>::from_str(qname).unwrap_or_else(|e| panic!("bad name {qname:?}: {e}"));
    Request::new_query(name, qtype, Class::IN)
}

/// Runs a chain to completion on a fresh current-thread runtime.
pub fn serve(chain: &[Arc<dyn Plugin>], req: &mut Request) -> Result<Reply, ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(Next::new(chain).serve(req))
}

/// Runs every case through `chain`, panicking with every difference found.
pub fn run_cases(chain: &[Arc<dyn Plugin>], cases: &[Case]) {
    let mut errors = Vec::new();
    for c in cases {
        let mut req = c.request();
        match serve(chain, &mut req) {
            Ok(reply) => {
                if let Err(e) = c.check(&reply) {
                    errors.push(e);
                }
            }
            Err(e) if e.rcode == c.rcode && c.answer.is_empty() => {}
            Err(e) => errors.push(format!("{} {}: error {e}", c.qname, c.qtype)),
        }
    }
    assert!(errors.is_empty(), "{} case(s) failed:\n{}", errors.len(), errors.join("\n"));
}

/// A fresh, empty temporary directory for one test.
pub fn temp_dir_for(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferrite-unit-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Parses and sets up one directive (`"log . {name}"`) for a block serving `zones`.
pub fn setup(text: &str, zones: &[&str]) -> Result<Vec<Arc<dyn Plugin>>, SetupError> {
    setup_with_options(text, zones).map(|(h, _)| h)
}

/// Like [`setup`], and also returns the server options the plugin set.
pub fn setup_with_options(text: &str, zones: &[&str]) -> Result<(Vec<Arc<dyn Plugin>>, ServerOptions), SetupError> {
    let d = Directive::from_text(text)?;
    let reg = REGISTRY
        .iter()
        .find(|r| r.name == d.name.text)
        .ok_or_else(|| SetupError::new(format!("plugin {:?} is not compiled in", d.name.text)))?;
    let cfg = (reg.parse)(&d)?;
    let zones: Vec<Name<Bytes>> = zones.iter().map(|z| Name::from_str(z).expect("valid zone")).collect();
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&zones, std::env::temp_dir(), &mut opts);
    cfg.setup(&mut ctx)?;
    let handlers = ctx.into_handlers();
    Ok((handlers, opts))
}

/// The router of the first listener a server reading `corefile` would open (keys without a
/// port get 53): for tests of plugins that act on whole blocks (metadata, view).
pub fn corefile_router(corefile: &str) -> crate::server::chain::Router {
    let cfg = crate::config::from_corefile_str(corefile, "<test>").unwrap_or_else(|p| panic!("{p:?}"));
    let mut plan = crate::server::setup::build(&cfg, 53).unwrap_or_else(|p| panic!("{p:?}"));
    assert!(!plan.listeners.is_empty(), "no listener");
    plan.listeners.swap_remove(0).router
}

/// Routes `req` as the server does (collectors, then filters, block by block) and serves it
/// through the chosen block's chain. `None` is a dropped query; no block is REFUSED.
pub fn serve_routed(router: &crate::server::chain::Router, req: &mut Request) -> Option<Reply> {
    let Some(chain) = router.route(req) else { return Some(Reply::error(req, Rcode::REFUSED)) };
    chain.accept(req);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(chain.serve(req))
}

/// A `next` plugin that answers with fixed records (zone-file text) in the answer section.
pub fn fixed_reply(records: &[&str]) -> Arc<dyn Plugin> {
    Arc::new(Fixed { answer: records.iter().map(|t| rr(t)).collect(), rcode: Rcode::NOERROR })
}

/// A `next` plugin that answers with an rcode and nothing else.
pub fn rcode_reply(rcode: Rcode) -> Arc<dyn Plugin> {
    Arc::new(Fixed { answer: Vec::new(), rcode })
}

struct Fixed {
    answer: Vec<Rr>,
    rcode: Rcode,
}

impl Plugin for Fixed {
    fn name(&self) -> &'static str {
        "fixed_reply"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let mut r = Reply::for_request(req);
        r.rcode = self.rcode.into();
        r.answer = self.answer.clone();
        Box::pin(std::future::ready(Ok(r)))
    }
}

/// A `next` plugin that answers from records (zone-file text) as an authoritative server would:
/// records of the question's name and type, following CNAMEs among the records; NXDOMAIN for a
/// name with no records, NODATA for a name without that type. Names compare case-insensitively.
pub fn zone(records: &[&str]) -> Arc<dyn Plugin> {
    Arc::new(Zone { records: records.iter().map(|t| rr(t)).collect() })
}

struct Zone {
    records: Vec<Rr>,
}

impl Plugin for Zone {
    fn name(&self) -> &'static str {
        "zone"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        let mut r = Reply::for_request(req);
        let mut name = req.qname.clone();
        if !self.records.iter().any(|x| x.owner().name_eq(&name)) {
            r.rcode = Rcode::NXDOMAIN.into();
        }
        // A bound on the chain, so a CNAME loop among the records ends.
        for _ in 0..8 {
            let here: Vec<&Rr> = self.records.iter().filter(|x| x.owner().name_eq(&name)).collect();
            let cname = here.iter().find(|x| x.rtype() == Rtype::CNAME && req.qtype != Rtype::CNAME);
            match cname {
                Some(c) => {
                    r.answer.push((*c).clone());
                    let domain::rdata::ZoneRecordData::Cname(t) = c.data() else { break };
                    name = t.cname().clone();
                }
                None => {
                    r.answer.extend(here.into_iter().filter(|x| x.rtype() == req.qtype || req.qtype == Rtype::ANY).cloned());
                    break;
                }
            }
        }
        Box::pin(std::future::ready(Ok(r)))
    }
}

/// A `next` plugin that fails with an error of `rcode`.
pub fn fail_with(rcode: Rcode, message: &'static str) -> Arc<dyn Plugin> {
    Arc::new(Fail(rcode, message))
}

struct Fail(Rcode, &'static str);

impl Plugin for Fail {
    fn name(&self) -> &'static str {
        "fail_with"
    }

    fn serve<'a>(&'a self, _req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        Box::pin(std::future::ready(Err(ServeError::new("fail_with", self.0, self.1))))
    }
}

/// A `next` plugin that counts the requests reaching it and keeps the last one; answers NOERROR.
#[derive(Default)]
pub struct RecordCalls {
    pub calls: AtomicUsize,
    pub last: std::sync::Mutex<Option<Request>>,
}

impl RecordCalls {
    pub fn count(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub fn record_calls() -> Arc<RecordCalls> {
    Arc::new(RecordCalls::default())
}

impl Plugin for RecordCalls {
    fn name(&self) -> &'static str {
        "record_calls"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.last.lock().expect("not poisoned") = Some(req.clone());
        Box::pin(std::future::ready(Ok(Reply::for_request(req))))
    }
}

/// Runs `f` with a recorder that keeps counters, and returns them as `name{label=value,...}`
/// (labels sorted) with their totals, sorted: to check a plugin's metrics by name and label.
pub fn capture_counters<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, u64)>) {
    let rec = Counters::default();
    let out = metrics::with_local_recorder(&rec, f);
    let mut got: Vec<(String, u64)> =
        rec.0.lock().expect("not poisoned").iter().map(|(k, v)| (k.clone(), v.load(Ordering::SeqCst))).collect();
    got.sort();
    (out, got)
}

#[derive(Default)]
struct Counters(std::sync::Mutex<Vec<(String, Arc<AtomicU64>)>>);

struct CounterCell(Arc<AtomicU64>);

impl metrics::CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut all = self.0.lock().expect("not poisoned");
        let cell = match all.iter().find(|(n, _)| *n == name) {
            Some((_, c)) => c.clone(),
            None => {
                let c = Arc::new(AtomicU64::new(0));
                all.push((name, c.clone()));
                c
            }
        };
        metrics::Counter::from_arc(Arc::new(CounterCell(cell)))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// What the shared contract test needs to know about one plugin.
pub struct Contract {
    pub name: &'static str,
    /// A directive that sets the plugin up, e.g. `"chaos"`.
    pub config: &'static str,
    /// A query the plugin passes on to `next` (for zoned or type-specific plugins), or `None`
    /// for plugins that answer every query by design (whoami) or add no handler.
    pub passes: Option<(&'static str, Rtype, Class)>,
}

/// The contract every plugin passes: its name matches plugin.cfg; unknown configuration is
/// rejected (Corefile and RON); a packet with no question gets FORMERR without a panic; a query
/// outside its remit reaches `next`.
pub fn check_contract(c: &Contract) {
    assert!(crate::plugins::KNOWN.contains(&c.name), "{} is not in plugin.cfg", c.name);
    let reg = REGISTRY.iter().find(|r| r.name == c.name).expect("compiled in");
    let handlers = setup(c.config, &["."]).unwrap_or_else(|e| panic!("{}: {e}", c.config));
    for h in &handlers {
        assert_eq!(h.name(), c.name, "handler name matches plugin.cfg");
    }
    // Unknown keys, in a block and in RON.
    let bogus = format!("{} {{\n    no_such_property_xyz 1\n}}", c.name);
    let d = Directive::from_text(&bogus).expect("well-formed directive");
    assert!((reg.parse)(&d).is_err(), "{}: an unknown property must be rejected", c.name);
    let ron = format!("(servers: [(keys: [\".\"], plugins: [{}((no_such_property_xyz: 1))])])", c.name);
    assert!(crate::config::from_ron(&ron, "t.ron").is_err(), "{}: an unknown RON field must be rejected", c.name);
    // A packet without a question, through the real packet path with this plugin's chain.
    let mut router = crate::server::chain::Router::default();
    router
        .insert(
            Name::root_bytes(),
            Arc::new(crate::server::chain::Chain::new(Name::root_bytes(), Arc::from("dns://:53"), handlers.clone())),
        )
        .expect("one zone");
    let client: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let empty = [0x12u8, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        match crate::server::chain::handle(&empty, client, Proto::Udp, &router) {
            crate::server::chain::Outcome::Reply(b) => {
                let r = Reply::from_wire(&b).expect("parseable reply");
                assert_eq!(r.rcode.rcode(), Rcode::FORMERR, "{}: empty question", c.name);
            }
            _ => panic!("{}: an empty question must get FORMERR", c.name),
        }
    });
    if let Some((qname, qtype, qclass)) = c.passes {
        let rec = record_calls();
        let mut chain = handlers.clone();
        chain.push(rec.clone());
        let mut req = query(qname, qtype);
        req.qclass = qclass;
        serve(&chain, &mut req).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(rec.count(), 1, "{}: {qname} {qtype} must reach next", c.name);
    }
}

/// The ```corefile blocks of a README's Examples section.
pub fn readme_examples(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut cur = String::new();
    for line in readme.lines() {
        if in_block {
            if line.trim_start().starts_with("```") {
                out.push(std::mem::take(&mut cur));
                in_block = false;
            } else {
                cur.push_str(line);
                cur.push('\n');
            }
        } else if line.trim_start().starts_with("```corefile") {
            in_block = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_sections() {
        let r = rr("example.org. 3600 IN MX 10 mx1.example.org.");
        assert_eq!(r.to_string(), "example.org. 3600 IN MX 10 mx1.example.org.");
        assert!(compare_section("answer", &["example.org. IN MX 10 mx1.example.org."], std::slice::from_ref(&r)).is_ok());
        assert!(compare_section("answer", &["example.org. 60 IN MX 10 mx1.example.org."], std::slice::from_ref(&r)).is_err());
        assert!(compare_section("answer", &[], &[r]).is_err());
    }
}

/// Metrics recorded while a test runs, by name and labels: counters and gauges by value,
/// histograms by the number of samples.
#[derive(Default)]
pub struct MetricsCapture {
    values: std::sync::Mutex<Vec<Captured>>,
}

/// One metric: name, labels, value (f64 bits for gauges, sample count for histograms), kind.
type Captured = (String, Vec<(String, String)>, Arc<std::sync::atomic::AtomicU64>, MetricKind);

#[derive(Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

struct Samples(Arc<std::sync::atomic::AtomicU64>);

impl metrics::HistogramFn for Samples {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl MetricsCapture {
    /// Runs `f` with this capture as the thread's recorder (handles made inside bind to it).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(self, f)
    }

    fn find(&self, name: &str, labels: &[(&str, &str)], kind: MetricKind) -> Option<u64> {
        let v = self.values.lock().expect("not poisoned");
        v.iter()
            .filter(|(n, l, _, k)| {
                n == name && *k == kind && labels.iter().all(|(a, b)| l.iter().any(|(x, y)| x == a && y == b))
            })
            .map(|(_, _, a, _)| a.load(Ordering::SeqCst))
            .reduce(|a, b| a + b)
    }

    /// The sum of the counters named `name` that carry at least `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.find(name, labels, MetricKind::Counter)
    }

    /// The value of the gauge named `name` with at least `labels`.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels, MetricKind::Gauge).map(f64::from_bits)
    }

    /// The number of samples of the histogram named `name` with at least `labels`.
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        self.find(name, labels, MetricKind::Histogram)
    }

    /// Every label set recorded under `name`.
    pub fn labels(&self, name: &str) -> Vec<Vec<(String, String)>> {
        let v = self.values.lock().expect("not poisoned");
        v.iter().filter(|(n, ..)| n == name).map(|(_, l, ..)| l.clone()).collect()
    }

    fn register(&self, key: &metrics::Key, kind: MetricKind) -> Arc<std::sync::atomic::AtomicU64> {
        let name = key.name().to_string();
        let labels: Vec<(String, String)> = key.labels().map(|l| (l.key().to_string(), l.value().to_string())).collect();
        let mut v = self.values.lock().expect("not poisoned");
        if let Some((.., a, _)) = v.iter().find(|(n, l, _, k)| *n == name && *l == labels && *k == kind) {
            return a.clone();
        }
        let a = Arc::new(std::sync::atomic::AtomicU64::new(0));
        v.push((name, labels, a.clone(), kind));
        a
    }
}

impl metrics::Recorder for MetricsCapture {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.register(key, MetricKind::Counter))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.register(key, MetricKind::Gauge))
    }

    fn register_histogram(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Samples(self.register(key, MetricKind::Histogram))))
    }
}
