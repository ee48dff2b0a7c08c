use std::net::SocketAddr;
use std::sync::Arc;

use domain::base::iana::{Class, Rcode, Rtype};

use super::embed;
use crate::plugin::{Cidr, Plugin};
use crate::testing::{capture_counters, check_contract, query, serve, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "dns64", config: "dns64", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

const ZONE: &[&str] = &[
    "v4.example. 300 IN A 192.0.2.33",
    "v4.example. 300 IN A 198.51.100.7",
    "both.example. 300 IN A 192.0.2.1",
    "both.example. 300 IN AAAA 2001:db8::1",
    "alias.example. 300 IN CNAME v4.example.",
    "soa.example. 30 IN A 192.0.2.44",
];

fn chain(text: &str) -> Vec<Arc<dyn Plugin>> {
    let mut c = setup(text, &["."]).unwrap_or_else(|e| panic!("{text}: {e}"));
    c.push(zone(ZONE));
    c
}

/// Runs cases as asked by a client at `client`.
fn run_from(chain: &[Arc<dyn Plugin>], client: &str, cases: &[Case]) {
    for c in cases {
        let mut req = c.request();
        req.client = SocketAddr::new(client.parse().expect("ip"), 5000);
        let reply = serve(chain, &mut req).expect("answers");
        c.check(&reply).unwrap_or_else(|e| panic!("from {client}: {e}"));
    }
}

#[test]
fn readme_well_known_prefix() {
    let c = chain("dns64");
    run_from(
        &c,
        "2001:db8::99",
        &[
            Case {
                qname: "v4.example.",
                qtype: Rtype::AAAA,
                answer: &["v4.example. 300 IN AAAA 64:ff9b::c000:221", "v4.example. 300 IN AAAA 64:ff9b::c633:6407"],
                ..Case::EMPTY
            },
            // An AAAA record of its own: passed on.
            Case { qname: "both.example.", qtype: Rtype::AAAA, answer: &["both.example. 300 IN AAAA 2001:db8::1"], ..Case::EMPTY },
            // CNAMEs are kept.
            Case {
                qname: "alias.example.",
                qtype: Rtype::AAAA,
                answer: &["alias.example. 300 IN CNAME v4.example.", "v4.example. 300 IN AAAA 64:ff9b::c000:221", "v4.example. 300 IN AAAA 64:ff9b::c633:6407"],
                ..Case::EMPTY
            },
            Case { qname: "nothere.example.", qtype: Rtype::AAAA, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
            // A queries are not touched.
            Case { qname: "both.example.", answer: &["both.example. 300 IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
    // IPv4 clients are not translated.
    run_from(&c, "192.0.2.200", &[Case { qname: "v4.example.", qtype: Rtype::AAAA, ..Case::EMPTY }]);
}

#[test]
fn readme_custom_prefixes() {
    let want = &["soa.example. 30 IN AAAA 64:1337::c000:22c"];
    for text in ["dns64 64:1337::/96", "dns64 {\n    prefix 64:1337::/96\n}"] {
        run_from(&chain(text), "::1", &[Case { qname: "soa.example.", qtype: Rtype::AAAA, answer: want, ..Case::EMPTY }]);
    }
    run_from(
        &chain("dns64 {\n    prefix 2001:db8:64::/48\n}"),
        "::1",
        &[Case { qname: "soa.example.", qtype: Rtype::AAAA, answer: &["soa.example. 30 IN AAAA 2001:db8:64:c000:2:2c00::"], ..Case::EMPTY }],
    );
}

#[test]
fn readme_translate_all_and_ipv4() {
    let c = chain("dns64 {\n    translate_all\n    allow_ipv4\n}");
    run_from(
        &c,
        "192.0.2.200",
        &[Case { qname: "both.example.", qtype: Rtype::AAAA, answer: &["both.example. 300 IN AAAA 64:ff9b::c000:201"], ..Case::EMPTY }],
    );
}

#[test]
fn rfc6052_layouts() {
    // RFC 6052 §2.4's table: 192.0.2.33 in each prefix length.
    let cases = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::c000:221"),
    ];
    for (p, want) in cases {
        let p: Cidr = p.parse().expect("prefix");
        assert_eq!(embed(&p, "192.0.2.33".parse().expect("ip")).to_string(), want, "{p}");
    }
}

#[test]
fn counts_translations() {
    let c = chain("dns64");
    let ((), got) = capture_counters(|| {
        let mut req = query("v4.example.", Rtype::AAAA);
        req.client = "[::1]:5000".parse().expect("addr");
        serve(&c, &mut req).expect("answers");
    });
    assert_eq!(got, [("coredns_dns64_requests_translated_total{server=dns://:53}".to_string(), 1)]);
}

#[test]
fn rejects_bad_prefixes() {
    for (text, want) in [
        ("dns64 64:ff9b::/80", "RFC 6052 allows"),
        ("dns64 10.0.0.0/8", "not an IPv6 prefix"),
        ("dns64 nonsense", "invalid network"),
        ("dns64 64:ff9b::/96 extra", "unexpected argument"),
        ("dns64 64:ff9b::/96 {\n    prefix 64:ff9b::/96\n}", "given twice"),
        ("dns64 {\n    translate_all yes\n}", "takes at most 0"),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

#[test]
fn an_error_answer_counts_as_empty() {
    // The first plugin has no AAAA and fails for it; the A comes from further down.
    let mut c = setup("dns64", &["."]).expect("sets up");
    c.push(Arc::new(FailAaaa));
    c.push(zone(ZONE));
    run_from(&c, "::1", &[Case { qname: "soa.example.", qtype: Rtype::AAAA, answer: &["soa.example. 30 IN AAAA 64:ff9b::c000:22c"], ..Case::EMPTY }]);
}

/// Fails AAAA queries with SERVFAIL, passes the rest on.
struct FailAaaa;

impl Plugin for FailAaaa {
    fn name(&self) -> &'static str {
        "fail_aaaa"
    }

    fn serve<'a>(&'a self, req: &'a mut crate::plugin::Request, next: crate::plugin::Next<'a>) -> crate::plugin::BoxFuture<'a, Result<crate::plugin::Reply, crate::plugin::ServeError>> {
        if req.qtype == Rtype::AAAA {
            return Box::pin(std::future::ready(Err(crate::plugin::ServeError::servfail("fail_aaaa", "no"))));
        }
        next.serve(req)
    }
}
