use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use domain::base::iana::{Class, OptRcode, Rcode, Rtype};
use futures_util::FutureExt;

use super::*;
use crate::plugin::{Next, Plugin};
use crate::testing::{check_contract, query, rr, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "cache", config: "cache example.org", passes: Some(("example.net.", Rtype::A, Class::IN)) });
}

/// A scripted `next`: answers from a table by name, counts calls; `fail` makes it SERVFAIL
/// (`Err`), as forward does with every upstream down.
struct Upstream {
    calls: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
    answers: Mutex<Vec<(&'static str, Reply)>>,
}

impl Upstream {
    fn new() -> Arc<Upstream> {
        Arc::new(Upstream { calls: AtomicUsize::new(0), fail: Default::default(), answers: Mutex::new(Vec::new()) })
    }

    fn set(&self, name: &'static str, rcode: Rcode, answer: &[&str], authority: &[&str]) {
        let req = query(name, Rtype::A);
        let mut r = Reply::for_request(&req);
        r.header.set_ra(true);
        r.rcode = rcode.into();
        r.answer = answer.iter().map(|t| rr(t)).collect();
        r.authority = authority.iter().map(|t| rr(t)).collect();
        let mut a = self.answers.lock().expect("lock");
        a.retain(|(n, _)| *n != name);
        a.push((name, r));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Plugin for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(ServeError::servfail("upstream", "every upstream is down"))));
        }
        let name = req.name_lower();
        let found = self.answers.lock().expect("lock").iter().find(|(n, _)| *n == name).map(|(_, r)| r.clone());
        let mut r = found.unwrap_or_else(|| Reply::error(req, Rcode::REFUSED));
        r.question = Some(Question::new(req.qname.clone(), req.qtype, req.qclass));
        r.header.set_id(req.header.id());
        // Answer after a yield, as a real upstream does: a miss must wait, a hit must not.
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(r)
        })
    }
}

fn cached(config: &str, up: &Arc<Upstream>) -> (Arc<Cache>, Vec<Arc<dyn Plugin>>) {
    let d = Directive::from_text(config).expect("directive");
    let c = parse(&d).expect("parses");
    let cache = Arc::new(build(&c, &[Name::root_bytes()]).expect("builds"));
    (cache.clone(), vec![cache, up.clone()])
}

async fn ask(chain: &[Arc<dyn Plugin>], name: &str) -> Reply {
    let mut req = query(name, Rtype::A);
    Next::new(chain).serve(&mut req).await.expect("an answer")
}

/// Asks and insists the answer comes without waiting (a cache hit).
fn ask_now(chain: &[Arc<dyn Plugin>], req: &mut Request) -> Reply {
    Next::new(chain).serve(req).now_or_never().expect("a hit answers without waiting").expect("an answer")
}

fn ttls(r: &Reply) -> Vec<u32> {
    r.answer.iter().chain(&r.authority).map(|r| r.ttl().as_secs()).collect()
}

const SOA: &str = "example.org. 600 IN SOA ns.example.org. host.example.org. 1 7200 3600 1209600 120";

#[test]
fn parses_the_whole_syntax() {
    let d = Directive::from_text(
        "cache 300 example.org Example.NET {
            success 5000 600 10
            denial 2500 60
            prefetch 10 2m 20%
            serve_stale 2h verify
            servfail 10s
            disable denial sub.example.org
            disable success
            keepttl
        }",
    )
    .expect("directive");
    let c = parse(&d).expect("parses");
    assert_eq!(c.ttl, Some(300));
    assert_eq!(c.zones, ["example.org.", "example.net."]);
    assert_eq!(c.success, Some(Capacity { capacity: 5000, ttl: Some(600), min_ttl: Some(10) }));
    assert_eq!(c.denial, Some(Capacity { capacity: 2500, ttl: Some(60), min_ttl: None }));
    assert_eq!(c.prefetch, Some(Prefetch { amount: 10, duration: "2m".into(), percentage: 20 }));
    assert_eq!(c.serve_stale, Some(ServeStale { duration: "2h".into(), verify: true }));
    assert_eq!(c.servfail.as_deref(), Some("10s"));
    assert_eq!(c.disable.len(), 2);
    assert!(c.keepttl);
    for (text, want) in [
        ("cache 0", "zero or negative"),
        ("cache {\n prefetch 0\n}", "above zero"),
        ("cache {\n prefetch 5 1m 5%\n}", "between 10% and 90%"),
        ("cache {\n serve_stale 1h later\n}", "unknown refresh mode"),
        ("cache {\n servfail 10m\n}", "at most 5m"),
        ("cache {\n disable everything\n}", "cannot disable"),
        ("cache {\n success 0\n}", "above zero"),
    ] {
        let e = parse(&Directive::from_text(text).expect("directive")).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

#[tokio::test(start_paused = true)]
async fn hits_are_immediate_with_decremented_ttls_and_the_clients_id_and_case() {
    let up = Upstream::new();
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 300 IN A 192.0.2.1", "www.example.org. 200 IN A 192.0.2.2"], &[]);
    let (_, chain) = cached("cache", &up);
    let first = ask(&chain, "www.example.org.").await;
    assert_eq!(ttls(&first), [300, 200], "the first answer is the upstream's");
    tokio::time::sleep(Duration::from_secs(50)).await;
    let mut req = query("WWW.Example.ORG.", Rtype::A);
    req.header.set_id(4321);
    let r = ask_now(&chain, &mut req);
    assert_eq!(up.calls(), 1);
    assert_eq!(r.header.id(), 4321);
    assert_eq!(r.question.as_ref().expect("question").qname().to_string(), "WWW.Example.ORG");
    // Cached for the smallest TTL (200s), served with what is left of it.
    assert_eq!(ttls(&r), [150, 150]);
    assert!(r.header.ra(), "the upstream's flags are kept");
    tokio::time::sleep(Duration::from_secs(151)).await;
    ask(&chain, "www.example.org.").await;
    assert_eq!(up.calls(), 2, "expired entries are fetched again");
}

#[tokio::test(start_paused = true)]
async fn keepttl_serves_the_ttl_it_stored() {
    let up = Upstream::new();
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 300 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache {\n keepttl\n}", &up);
    ask(&chain, "www.example.org.").await;
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(ttls(&ask_now(&chain, &mut query("www.example.org.", Rtype::A))), [300]);
}

#[tokio::test(start_paused = true)]
async fn ttls_are_bounded_by_the_configured_maximum_and_minimum() {
    let up = Upstream::new();
    up.set("long.example.org.", Rcode::NOERROR, &["long.example.org. 86400 IN A 192.0.2.1"], &[]);
    up.set("zero.example.org.", Rcode::NOERROR, &["zero.example.org. 0 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache 30", &up);
    ask(&chain, "long.example.org.").await;
    assert_eq!(ttls(&ask_now(&chain, &mut query("long.example.org.", Rtype::A))), [30]);
    ask(&chain, "zero.example.org.").await;
    // TTL 0 is cached for MINTTL (5s), as CoreDNS does.
    assert_eq!(ttls(&ask_now(&chain, &mut query("zero.example.org.", Rtype::A))), [5]);
}

#[tokio::test(start_paused = true)]
async fn negative_answers_are_cached_for_the_soa_minimum_rfc2308() {
    let up = Upstream::new();
    up.set("nx.example.org.", Rcode::NXDOMAIN, &[], &[SOA]);
    up.set("nodata.example.org.", Rcode::NOERROR, &[], &["example.org. 60 IN SOA ns.example.org. host.example.org. 1 7200 3600 1209600 300"]);
    let (cache, chain) = cached("cache", &up);
    let r = ask(&chain, "nx.example.org.").await;
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    let r = ask_now(&chain, &mut query("nx.example.org.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    // min(SOA TTL 600, MINIMUM 120) = 120.
    assert_eq!(ttls(&r), [120]);
    ask(&chain, "nodata.example.org.").await;
    // min(SOA TTL 60, MINIMUM 300) = 60.
    assert_eq!(ttls(&ask_now(&chain, &mut query("nodata.example.org.", Rtype::A))), [60]);
    assert_eq!(cache.inner().denial.len(), 2);
    assert_eq!(cache.inner().success.len(), 0);
    tokio::time::sleep(Duration::from_secs(121)).await;
    ask(&chain, "nx.example.org.").await;
    assert_eq!(up.calls(), 3, "the negative entry expired after 120s");
}

#[tokio::test(start_paused = true)]
async fn do_and_cd_are_part_of_the_key() {
    let up = Upstream::new();
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 300 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache", &up);
    let mut cd = query("www.example.org.", Rtype::A);
    cd.header.set_cd(true);
    Next::new(&chain).serve(&mut cd).await.expect("answer");
    assert_eq!(up.calls(), 1);
    // A CD=0 client is not served the CD=1 answer.
    ask(&chain, "www.example.org.").await;
    assert_eq!(up.calls(), 2);
    let mut dnssec = Case { dnssec_ok: true, ..Case::EMPTY };
    dnssec.qname = "www.example.org.";
    let mut req = dnssec.request();
    Next::new(&chain).serve(&mut req).await.expect("answer");
    assert_eq!(up.calls(), 3, "DO=1 is a key of its own");
    let mut req = query("www.example.org.", Rtype::A);
    req.header.set_cd(true);
    let r = ask_now(&chain, &mut req);
    assert!(r.header.cd());
}

use crate::testing::Case;

#[tokio::test(start_paused = true)]
async fn servfail_is_cached_briefly_and_errors_not_at_all() {
    let up = Upstream::new();
    up.set("bad.example.org.", Rcode::SERVFAIL, &[], &[]);
    let (_, chain) = cached("cache", &up);
    ask(&chain, "bad.example.org.").await;
    let r = ask_now(&chain, &mut query("bad.example.org.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
    tokio::time::sleep(Duration::from_secs(6)).await;
    ask(&chain, "bad.example.org.").await;
    assert_eq!(up.calls(), 2, "SERVFAIL is kept 5s by default");
    // servfail 0 turns it off; REFUSED and errors are never cached.
    let up = Upstream::new();
    up.set("bad.example.org.", Rcode::SERVFAIL, &[], &[]);
    let (_, chain) = cached("cache {\n servfail 0s\n}", &up);
    ask(&chain, "bad.example.org.").await;
    ask(&chain, "bad.example.org.").await;
    ask(&chain, "refused.example.org.").await;
    ask(&chain, "refused.example.org.").await;
    assert_eq!(up.calls(), 4);
    up.fail.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let mut req = query("down.example.org.", Rtype::A);
        assert!(Next::new(&chain).serve(&mut req).await.is_err());
    }
    assert_eq!(up.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn truncated_and_mismatched_replies_are_not_cached() {
    struct Odd;
    impl Plugin for Odd {
        fn name(&self) -> &'static str {
            "odd"
        }
        fn serve<'a>(&'a self, req: &'a mut Request, _next: Next<'a>) -> BoxFuture<'a, Result<Reply, ServeError>> {
            let mut r = Reply::for_request(req);
            r.answer = vec![rr("x.example.org. 300 IN A 192.0.2.1")];
            if req.qname.to_string().starts_with("tc") {
                r.header.set_tc(true);
            } else {
                r.question = Some(Question::new("other.example.org.".parse().expect("name"), Rtype::A, Class::IN));
            }
            Box::pin(std::future::ready(Ok(r)))
        }
    }
    let cache = Arc::new(build(&Config::default(), &[Name::root_bytes()]).expect("builds"));
    let chain: Vec<Arc<dyn Plugin>> = vec![cache.clone(), Arc::new(Odd)];
    for name in ["tc.example.org.", "mismatch.example.org."] {
        let mut req = query(name, Rtype::A);
        Next::new(&chain).serve(&mut req).await.expect("answer");
    }
    assert_eq!(cache.inner().success.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn disable_and_zones_limit_what_is_cached() {
    let up = Upstream::new();
    up.set("a.example.org.", Rcode::NOERROR, &["a.example.org. 300 IN A 192.0.2.1"], &[]);
    up.set("nx.example.org.", Rcode::NXDOMAIN, &[], &[SOA]);
    up.set("a.example.net.", Rcode::NOERROR, &["a.example.net. 300 IN A 192.0.2.1"], &[]);
    let (cache, chain) = cached("cache example.org {\n disable denial\n}", &up);
    for _ in 0..2 {
        for n in ["a.example.org.", "nx.example.org.", "a.example.net."] {
            ask(&chain, n).await;
        }
    }
    // a.example.org once; nx (denial disabled) and example.net (outside ZONES) twice each.
    assert_eq!(up.calls(), 5);
    assert_eq!(cache.inner().success.len(), 1);
    assert_eq!(cache.inner().denial.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn serve_stale_answers_while_the_source_is_down_and_refreshes_later() {
    let up = Upstream::new();
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 60 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache {\n serve_stale 1h\n}", &up);
    ask(&chain, "www.example.org.").await;
    up.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(120)).await;
    // Expired: served at once with TTL 0, and a refresh starts in the background.
    let r = ask_now(&chain, &mut query("www.example.org.", Rtype::A));
    assert_eq!(ttls(&r), [0]);
    assert_eq!(r.answer[0].to_string(), "www.example.org. 0 IN A 192.0.2.1");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(up.calls(), 2, "one refresh was tried");
    let r = ask_now(&chain, &mut query("www.example.org.", Rtype::A));
    assert_eq!(ttls(&r), [0], "still stale while the source is down");
    // The source is back with a new address: the next refresh replaces the entry.
    up.fail.store(false, Ordering::SeqCst);
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 60 IN A 192.0.2.9"], &[]);
    tokio::time::sleep(Duration::from_millis(10)).await;
    ask_now(&chain, &mut query("www.example.org.", Rtype::A));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let r = ask_now(&chain, &mut query("www.example.org.", Rtype::A));
    assert_eq!(r.answer[0].to_string(), "www.example.org. 60 IN A 192.0.2.9");
    // Beyond the stale window an entry is gone.
    up.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3700)).await;
    let mut req = query("www.example.org.", Rtype::A);
    assert!(Next::new(&chain).serve(&mut req).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn serve_stale_verify_asks_the_source_first() {
    let up = Upstream::new();
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 60 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache {\n serve_stale 1h verify\n}", &up);
    ask(&chain, "www.example.org.").await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 60 IN A 192.0.2.2"], &[]);
    let r = ask(&chain, "www.example.org.").await;
    assert_eq!(r.answer[0].to_string(), "www.example.org. 60 IN A 192.0.2.2", "the source answered: fresh data");
    tokio::time::sleep(Duration::from_secs(120)).await;
    up.fail.store(true, Ordering::SeqCst);
    let r = ask(&chain, "www.example.org.").await;
    assert_eq!(r.answer[0].to_string(), "www.example.org. 0 IN A 192.0.2.2", "the source failed: stale data");
}

#[tokio::test(start_paused = true)]
async fn popular_entries_are_prefetched_before_they_expire() {
    let up = Upstream::new();
    up.set("hot.example.org.", Rcode::NOERROR, &["hot.example.org. 100 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache {\n prefetch 3 1m 10%\n}", &up);
    ask(&chain, "hot.example.org.").await;
    // Three hits, the last with 10s (10%) or less left: that hit starts a prefetch.
    for t in [30, 30, 31] {
        tokio::time::sleep(Duration::from_secs(t)).await;
        ask_now(&chain, &mut query("hot.example.org.", Rtype::A));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(up.calls(), 2, "prefetched");
    // The entry is fresh again: 100s from the prefetch, no miss when the old one would expire.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let r = ask_now(&chain, &mut query("hot.example.org.", Rtype::A));
    assert!(ttls(&r)[0] > 70, "{:?}", ttls(&r));
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn unpopular_entries_are_not_prefetched() {
    let up = Upstream::new();
    up.set("cold.example.org.", Rcode::NOERROR, &["cold.example.org. 100 IN A 192.0.2.1"], &[]);
    let (_, chain) = cached("cache {\n prefetch 3 10s\n}", &up);
    ask(&chain, "cold.example.org.").await;
    // Hits more than 10s apart never add up to 3.
    for t in [30, 30, 31] {
        tokio::time::sleep(Duration::from_secs(t)).await;
        ask_now(&chain, &mut query("cold.example.org.", Rtype::A));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn capacity_bounds_the_entries() {
    let up = Upstream::new();
    let names: Vec<&'static str> = (0..3000).map(|i| &*Box::leak(format!("n{i}.example.org.").into_boxed_str())).collect();
    for n in &names {
        up.set(n, Rcode::NOERROR, &["x.example.org. 300 IN A 192.0.2.1"], &[]);
    }
    let (cache, chain) = cached("cache {\n success 1024\n}", &up);
    for n in &names {
        ask(&chain, n).await;
    }
    let s = &cache.inner().success;
    assert!(s.len() <= s.capacity() && s.capacity() < 1100, "{} of {}", s.len(), s.capacity());
    assert!(s.len() > 900, "the store fills up: {}", s.len());
}

#[test]
fn metrics_have_coredns_names_and_labels() {
    let m = crate::testing::MetricsCapture::default();
    m.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let up = Upstream::new();
            up.set("www.example.org.", Rcode::NOERROR, &["www.example.org. 300 IN A 192.0.2.1"], &[]);
            up.set("nx.example.org.", Rcode::NXDOMAIN, &[], &[SOA]);
            let (_, chain) = cached("cache", &up);
            for _ in 0..3 {
                ask(&chain, "www.example.org.").await;
            }
            for _ in 0..2 {
                ask(&chain, "nx.example.org.").await;
            }
        });
    });
    let l = |t: &'static str| [("server", "dns://:53"), ("type", t), ("zones", "."), ("view", "")];
    let plain = [("server", "dns://:53"), ("zones", "."), ("view", "")];
    assert_eq!(m.counter(HITS, &l("success")), Some(2));
    assert_eq!(m.counter(HITS, &l("denial")), Some(1));
    assert_eq!(m.counter(MISSES, &plain), Some(2));
    assert_eq!(m.counter(REQUESTS, &plain), Some(5));
    assert_eq!(m.gauge(ENTRIES, &l("success")), Some(1.0));
    assert_eq!(m.gauge(ENTRIES, &l("denial")), Some(1.0));
    assert_eq!(m.labels(MISSES), [vec![
        ("server".to_string(), "dns://:53".to_string()),
        ("zones".to_string(), ".".to_string()),
        ("view".to_string(), String::new()),
    ]]);
}
