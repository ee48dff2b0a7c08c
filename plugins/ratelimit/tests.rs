use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::table::{Table, Verdict};
use super::*;
use crate::plugin::Directive;
use crate::testing::{capture_counters, check_contract, fixed_reply, query, rcode_reply, record_calls, serve, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "ratelimit",
        config: "ratelimit {\n    responses_per_second 5\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

/// A ratelimit handler from Corefile text with a clock the test moves, and the clock.
fn limiter(text: &str) -> (Arc<RateLimit>, Arc<AtomicU64>) {
    let c = parse(&Directive::from_text(text).expect("well-formed")).unwrap_or_else(|e| panic!("{text}: {e}"));
    let exempt = c.exempt.iter().map(|t| t.parse().expect("checked")).collect();
    let ms = Arc::new(AtomicU64::new(1_000_000));
    (Arc::new(RateLimit::new(&c, exempt, Clock::Fake(ms.clone()))), ms)
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Got {
    Sent,
    Slipped,
    Dropped,
}

/// Asks `qname`/`qtype` from `client` over `proto` through ratelimit and `next`.
fn ask(rl: &Arc<RateLimit>, next: &Arc<dyn Plugin>, qname: &str, qtype: Rtype, client: &str, proto: Proto) -> Got {
    let chain: Vec<Arc<dyn Plugin>> = vec![rl.clone(), next.clone()];
    let mut req = query(qname, qtype);
    req.client = SocketAddr::new(client.parse().expect("address"), 5300);
    req.proto = proto;
    match serve(&chain, &mut req) {
        Err(e) if e.drop => Got::Dropped,
        Ok(r) if r.header.tc() && r.is_empty() => Got::Slipped,
        // An error is sent: the edge turns it into a reply with its rcode.
        Ok(_) | Err(_) => Got::Sent,
    }
}

fn answer() -> Arc<dyn Plugin> {
    fixed_reply(&["a.example.org. 60 IN A 192.0.2.1"])
}

fn counts(got: &[Got]) -> (usize, usize, usize) {
    let n = |g| got.iter().filter(|x| **x == g).count();
    (n(Got::Sent), n(Got::Slipped), n(Got::Dropped))
}

#[test]
fn token_bucket_with_window_as_bind() {
    // Rate 5, window 2: a burst of 5, then one more per 200 ms; debt is at most 10 responses.
    let t = Table::new(16);
    let at = |ms: u64| t.debit(1, 5, 2, ms).0;
    let burst: Vec<Verdict> = (0..7).map(|_| at(0)).collect();
    assert_eq!(&burst[..5], &[Verdict::Allowed; 5]);
    assert_eq!(&burst[5..], &[Verdict::Limited(1), Verdict::Limited(2)]);
    // 200 ms later the two owed plus one more are not yet paid back.
    assert_eq!(at(200), Verdict::Limited(3));
    // A flood runs the debt down to the floor of -10 and no further...
    for _ in 0..100 {
        at(200);
    }
    // ... so 2 s of silence pays it back (credit 10), and 200 ms more buys one response.
    assert_eq!(at(2200), Verdict::Limited(104), "balance 0 - 1 is still over");
    assert_eq!(at(2600), Verdict::Allowed);
    // Idle longer than the window: a full bucket again.
    let later: Vec<Verdict> = (0..6).map(|_| at(10_000)).collect();
    assert_eq!(later.iter().filter(|v| **v == Verdict::Allowed).count(), 5);
}

#[test]
fn table_is_bounded_and_evicts_the_unused() {
    let t = Table::new(64);
    let mut evicted = 0;
    for k in 0..10_000u64 {
        if t.debit(k, 1, 15, 0).1 {
            evicted += 1;
        }
    }
    assert_eq!(t.len(), 64, "the capacity holds");
    assert_eq!(evicted, 10_000 - 64);
    // A key used again is found, not reset: it keeps its debt.
    let t = Table::new(16);
    assert_eq!(t.debit(7, 1, 15, 0).0, Verdict::Allowed);
    assert_eq!(t.debit(7, 1, 15, 0).0, Verdict::Limited(1));
}

#[test]
fn slip_sends_every_nth_limited_reply_truncated() {
    let table: &[(&str, (usize, usize, usize))] = &[
        // 3 sent, then 9 limited: slip 2 sends every second one truncated.
        ("ratelimit 3", (3, 4, 5)),
        ("ratelimit 3 {\n    slip 1\n}", (3, 9, 0)),
        ("ratelimit 3 {\n    slip 0\n}", (3, 0, 9)),
        ("ratelimit 3 {\n    slip 3\n}", (3, 3, 6)),
    ];
    for &(conf, want) in table {
        let (rl, _) = limiter(conf);
        let next = answer();
        let got: Vec<Got> = (0..12).map(|_| ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp)).collect();
        assert_eq!(counts(&got), want, "{conf}: {got:?}");
        assert_eq!(&got[..3], &[Got::Sent; 3], "{conf}");
    }
}

#[test]
fn slipped_reply_keeps_question_and_rcode() {
    let (rl, _) = limiter("ratelimit {\n    nxdomains_per_second 1\n    slip 1\n}");
    let next = rcode_reply(Rcode::NXDOMAIN);
    let chain: Vec<Arc<dyn Plugin>> = vec![rl.clone(), next];
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut req = query("nx.example.org.", Rtype::A);
        replies.push(serve(&chain, &mut req).expect("a reply"));
    }
    assert!(!replies[0].header.tc());
    let s = &replies[1];
    assert!(s.header.tc() && s.is_empty());
    assert_eq!(s.rcode, OptRcode::NXDOMAIN);
    assert_eq!(s.question.as_ref().map(|q| q.qname().to_string()), Some("nx.example.org".to_string()));
}

/// A question and the client asking it.
type Ask = (&'static str, Rtype, &'static str);

#[test]
fn buckets_group_clients_and_answers_as_bind() {
    // Rate 2, slip 0: the third reply in a bucket is dropped. Each case asks twice from the
    // first client and question, then once with the second: does the third share the bucket?
    let zone = crate::testing::zone(&[
        "example.org. 300 IN SOA ns.example.org. h.example.org. 1 7200 3600 1209600 300",
        "a.example.org. 60 IN A 192.0.2.1",
        "a.example.org. 60 IN TXT \"t\"",
        "b.example.org. 60 IN A 192.0.2.2",
    ]);
    let table: &[(&str, Ask, Ask, bool)] = &[
        ("same /24", ("a.example.org.", Rtype::A, "192.0.2.1"), ("a.example.org.", Rtype::A, "192.0.2.200"), true),
        ("another /24", ("a.example.org.", Rtype::A, "192.0.2.1"), ("a.example.org.", Rtype::A, "192.0.3.1"), false),
        ("same /56", ("a.example.org.", Rtype::A, "2001:db8:0:100::1"), ("a.example.org.", Rtype::A, "2001:db8:0:1ff::9"), true),
        ("another /56", ("a.example.org.", Rtype::A, "2001:db8:0:100::1"), ("a.example.org.", Rtype::A, "2001:db8:0:200::1"), false),
        ("mapped IPv4 is IPv4", ("a.example.org.", Rtype::A, "192.0.2.1"), ("a.example.org.", Rtype::A, "::ffff:192.0.2.7"), true),
        ("answers by name", ("a.example.org.", Rtype::A, "192.0.2.1"), ("b.example.org.", Rtype::A, "192.0.2.1"), false),
        ("answers by type", ("a.example.org.", Rtype::A, "192.0.2.1"), ("a.example.org.", Rtype::TXT, "192.0.2.1"), false),
        ("names without case", ("a.example.org.", Rtype::A, "192.0.2.1"), ("A.Example.ORG.", Rtype::A, "192.0.2.1"), true),
        ("NXDOMAIN by zone", ("x1.example.org.", Rtype::A, "192.0.2.1"), ("x2.example.org.", Rtype::AAAA, "192.0.2.1"), true),
        ("NODATA by name", ("b.example.org.", Rtype::AAAA, "192.0.2.1"), ("b.example.org.", Rtype::MX, "192.0.2.1"), true),
        ("NODATA is not NXDOMAIN", ("b.example.org.", Rtype::AAAA, "192.0.2.1"), ("x.example.org.", Rtype::A, "192.0.2.1"), false),
    ];
    for &(what, first, second, shared) in table {
        let (rl, _) = limiter("ratelimit 2 {\n    slip 0\n}");
        for _ in 0..2 {
            assert_eq!(ask(&rl, &zone, first.0, first.1, first.2, Proto::Udp), Got::Sent, "{what}");
        }
        let third = ask(&rl, &zone, second.0, second.1, second.2, Proto::Udp);
        assert_eq!(third == Got::Dropped, shared, "{what}: {third:?}");
    }
}

#[test]
fn errors_share_one_bucket_per_client_and_have_their_own_rate() {
    let (rl, _) = limiter("ratelimit 100 {\n    errors_per_second 2\n    slip 0\n}");
    let refused = rcode_reply(Rcode::REFUSED);
    let servfail = crate::testing::fail_with(Rcode::SERVFAIL, "upstream down");
    let got = [
        ask(&rl, &refused, "a.example.", Rtype::A, "192.0.2.1", Proto::Udp),
        ask(&rl, &servfail, "b.example.", Rtype::MX, "192.0.2.1", Proto::Udp),
        ask(&rl, &refused, "c.example.", Rtype::TXT, "192.0.2.1", Proto::Udp),
        ask(&rl, &servfail, "d.example.", Rtype::A, "192.0.2.1", Proto::Udp),
    ];
    assert_eq!(got, [Got::Sent, Got::Sent, Got::Dropped, Got::Dropped]);
    // Answers have their own, larger rate.
    assert_eq!(ask(&rl, &answer(), "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp), Got::Sent);
}

#[test]
fn rate_zero_does_not_limit_that_kind() {
    let (rl, _) = limiter("ratelimit 1 {\n    nxdomains_per_second 0\n    slip 0\n}");
    let nx = rcode_reply(Rcode::NXDOMAIN);
    assert!((0..50).all(|_| ask(&rl, &nx, "x.example.org.", Rtype::A, "192.0.2.1", Proto::Udp) == Got::Sent));
    let next = answer();
    assert_eq!(ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp), Got::Sent);
    assert_eq!(ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp), Got::Dropped);
}

#[test]
fn tcp_and_exempt_clients_are_never_limited() {
    let (rl, _) = limiter("ratelimit 1 {\n    requests_per_second 1\n    exempt 192.0.2.0/28 2001:db8::1\n    slip 0\n}");
    let next = answer();
    for (client, proto) in [("192.0.2.1", Proto::Tcp), ("192.0.2.9", Proto::Udp), ("2001:db8::1", Proto::Udp), ("::ffff:192.0.2.3", Proto::Udp)] {
        assert!((0..20).all(|_| ask(&rl, &next, "a.example.org.", Rtype::A, client, proto) == Got::Sent), "{client} {proto:?}");
    }
    // Outside the exempt /28, in the same /24: limited.
    assert_eq!(ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.100", Proto::Udp), Got::Sent);
    assert_eq!(ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.100", Proto::Udp), Got::Dropped);
}

#[test]
fn clients_with_a_valid_server_cookie_are_never_limited() {
    let (rl, _) = limiter("ratelimit 1 {\n    requests_per_second 1\n    slip 0\n}");
    let next = answer();
    let chain: Vec<Arc<dyn Plugin>> = vec![rl.clone(), next.clone()];
    let with = |state: crate::cookie::CookieState| {
        let mut req = query("a.example.org.", Rtype::A);
        req.client = SocketAddr::new("192.0.2.77".parse().expect("address"), 5300);
        req.proto = Proto::Udp;
        req.cookie = state;
        !matches!(serve(&chain, &mut req), Err(e) if e.drop)
    };
    assert!((0..20).all(|_| with(crate::cookie::CookieState::Valid)), "a valid server cookie exempts");
    // Without one (or with a bad one, or only a client cookie) the same client is limited.
    let others = [crate::cookie::CookieState::None, crate::cookie::CookieState::ClientOnly, crate::cookie::CookieState::Bad];
    let sent = (0..20).filter(|i| with(others[i % 3])).count();
    assert_eq!(sent, 1, "one query a second without a valid server cookie");
}

#[test]
fn requests_over_their_rate_never_reach_next() {
    let (rl, ms) = limiter("ratelimit {\n    requests_per_second 3\n    window 1\n}");
    let rec = record_calls();
    let next: Arc<dyn Plugin> = rec.clone();
    // Different names: the response limit is off, only the query rate counts.
    let got: Vec<Got> = (0..10).map(|i| ask(&rl, &next, &format!("n{i}.example."), Rtype::A, "192.0.2.1", Proto::Udp)).collect();
    assert_eq!(counts(&got), (3, 0, 7), "queries over the rate are dropped, never slipped");
    assert_eq!(rec.count(), 3);
    // The debt is at most one second's worth (window 1): 1.5 s later the client may ask again.
    ms.fetch_add(1500, Ordering::SeqCst);
    assert_eq!(ask(&rl, &next, "again.example.", Rtype::A, "192.0.2.1", Proto::Udp), Got::Sent);
    assert_eq!(rec.count(), 4);
}

#[test]
fn credit_comes_back_with_time() {
    let (rl, ms) = limiter("ratelimit 2 {\n    window 5\n    slip 0\n}");
    let next = answer();
    let ask1 = || ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp);
    assert_eq!([ask1(), ask1(), ask1()], [Got::Sent, Got::Sent, Got::Dropped]);
    ms.fetch_add(500, Ordering::SeqCst);
    assert_eq!(ask1(), Got::Dropped, "500 ms at 2/s pays back the one owed, no more");
    ms.fetch_add(1000, Ordering::SeqCst);
    assert_eq!(ask1(), Got::Sent, "a second more buys two, less the one owed");
    assert_eq!(ask1(), Got::Dropped);
}

#[test]
fn amplification_over_the_ratio_is_truncated() {
    let big: Vec<String> = (0..8).map(|i| format!("a.example.org. 60 IN TXT \"{i:0>100}\"")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let next = fixed_reply(&big);
    let (rl, _) = limiter("ratelimit {\n    max_amplification 5\n}");
    let chain: Vec<Arc<dyn Plugin>> = vec![rl.clone(), next.clone()];
    let mut req = query("a.example.org.", Rtype::TXT);
    req.size = 40;
    req.edns = Some(crate::plugin::Edns { udp_size: 4096, version: 0, dnssec_ok: false, options: vec![] });
    let ((), got) = capture_counters(|| {
        let r = serve(&chain, &mut req).expect("reply");
        assert!(r.header.tc() && r.is_empty(), "{r:?}");
    });
    assert_eq!(got, [("coredns_ratelimit_amplification_truncated_total{server=dns://:53}".to_string(), 1)]);
    // Over TCP the whole answer goes.
    req.proto = Proto::Tcp;
    assert_eq!(serve(&chain, &mut req).expect("reply").answer.len(), 8);
    // A small answer is within the ratio.
    let small = answer();
    let chain: Vec<Arc<dyn Plugin>> = vec![rl, small];
    let mut req = query("a.example.org.", Rtype::A);
    req.size = 40;
    assert_eq!(serve(&chain, &mut req).expect("reply").answer.len(), 1);
}

#[test]
fn counts_drops_and_slips_by_reason() {
    let (rl, _) = limiter("ratelimit 1 {\n    requests_per_second 4\n    slip 2\n}");
    let next = answer();
    let ((), got) = capture_counters(|| {
        for _ in 0..6 {
            ask(&rl, &next, "a.example.org.", Rtype::A, "192.0.2.1", Proto::Udp);
        }
    });
    // 4 queries pass the request rate (2 more dropped); of those 1 is sent, 3 are over the
    // response rate: the second of them slipped, the others dropped.
    assert_eq!(
        got,
        [
            ("coredns_ratelimit_dropped_total{reason=requests,server=dns://:53}".to_string(), 2),
            ("coredns_ratelimit_dropped_total{reason=responses,server=dns://:53}".to_string(), 2),
            ("coredns_ratelimit_slipped_total{server=dns://:53}".to_string(), 1),
        ]
    );
}

#[test]
fn corefile_and_ron_agree() {
    let text = "ratelimit 10 {\n    nxdomains-per-second 5\n    errors_per_second 2\n    requests_per_second 50\n    window 5\n    slip 3\n    ipv4-prefix-length 32\n    ipv6_prefix_length 64\n    exempt 10.0.0.0/8 ::1\n    max_amplification 2.5\n    table_size 1000\n}";
    let c = parse(&Directive::from_text(text).expect("well-formed")).expect("parses");
    assert_eq!(
        c,
        Config {
            responses_per_second: 10,
            nxdomains_per_second: Some(5),
            errors_per_second: Some(2),
            requests_per_second: 50,
            window: 5,
            slip: 3,
            ipv4_prefix_length: 32,
            ipv6_prefix_length: 64,
            exempt: vec!["10.0.0.0/8".into(), "::1".into()],
            max_amplification: Some(2.5),
            table_size: 1000,
        }
    );
    // The rate may come after the other properties.
    let later = parse(&Directive::from_text("ratelimit {\n    window 5\n    slip 0\n    responses_per_second 3\n}").expect("well-formed"));
    assert_eq!(later.map(|c| (c.window, c.slip, c.responses_per_second)), Ok((5, 0, 3)));
    let ron = "(servers: [(keys: [\".\"], plugins: [ratelimit((responses_per_second: 10, exempt: [\"10.0.0.0/8\"]))])])";
    let cfg = crate::config::from_ron(ron, "t.ron").expect("well-formed");
    assert!(crate::server::setup::build(&cfg, 0).is_ok());
    for bad in ["ratelimit((window: 0, responses_per_second: 1))", "ratelimit((exempt: [\"10.0.0.0/33\"], responses_per_second: 1))", "ratelimit(())"] {
        let text = format!("(servers: [(keys: [\".\"], plugins: [{bad}])])");
        let cfg = crate::config::from_ron(&text, "t.ron").expect("well-formed");
        assert!(crate::server::setup::build(&cfg, 0).is_err(), "{bad}");
    }
}

#[test]
fn rejects_bad_values_with_locations() {
    let table: &[(&str, &str)] = &[
        ("ratelimit", "nothing to limit"),
        ("ratelimit 0", "nothing to limit"),
        ("ratelimit 5 6", "unexpected argument \"6\""),
        ("ratelimit many", "expected a number of responses per second"),
        ("ratelimit 5 {\n    window 0\n}", "window must be between 1 and 3600"),
        ("ratelimit 5 {\n    slip 11\n}", "slip must be between 0 and 10"),
        ("ratelimit 5 {\n    ipv4_prefix_length 33\n}", "at most 32"),
        ("ratelimit 5 {\n    ipv6_prefix_length 129\n}", "at most 128"),
        ("ratelimit 5 {\n    exempt 10.0.0.0/40\n}", "10.0.0.0/40"),
        ("ratelimit 5 {\n    exempt\n}", "needs at least 1 argument"),
        ("ratelimit {\n    max_amplification 0.5\n}", "at least 1"),
        ("ratelimit {\n    max_amplification lots\n}", "expected a ratio"),
        ("ratelimit 5 {\n    table_size 0\n}", "table_size must be at least 1"),
        ("ratelimit 5 {\n    slip 1\n    slip 2\n}", "\"slip\" is given twice"),
        ("ratelimit 5 {\n    qps 5\n}", "unknown property \"qps\""),
    ];
    for &(text, want) in table {
        let e = crate::testing::setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
