use std::net::SocketAddr;
use std::sync::Arc;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::message::Edns;
use crate::plugin::Plugin;
use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "filter", config: "filter", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

const ZONE: &[&str] = &[
    "www.example.org. 60 IN A 192.0.2.1",
    "www.example.org. 60 IN AAAA 2001:db8::1",
    "www.example.org. 60 IN HTTPS 1 . alpn=h2",
    "alias.example.org. 60 IN CNAME www.example.org.",
    "v4.example.org. 60 IN A 192.0.2.4",
];

fn chain(text: &str, zones: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let mut c = setup(text, zones).unwrap_or_else(|e| panic!("{text}: {e}"));
    c.push(zone(ZONE));
    c
}

#[test]
fn readme_ipv4_only_cluster() {
    run_cases(
        &chain("filter", &["."]),
        &[
            Case { qname: "www.example.org.", qtype: Rtype::AAAA, ..Case::EMPTY },
            Case { qname: "www.example.org.", answer: &["www.example.org. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            // The CNAME stays, the AAAA at its end goes.
            Case { qname: "alias.example.org.", qtype: Rtype::AAAA, answer: &["alias.example.org. 60 IN CNAME www.example.org."], ..Case::EMPTY },
            // ANY answers lose their AAAA.
            Case {
                qname: "www.example.org.",
                qtype: Rtype::ANY,
                answer: &["www.example.org. 60 IN A 192.0.2.1", "www.example.org. 60 IN HTTPS 1 . alpn=h2"],
                ..Case::EMPTY
            },
            // A name that does not exist stays NXDOMAIN.
            Case { qname: "nothere.example.org.", qtype: Rtype::AAAA, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
}

#[test]
fn readme_immediate_with_https_in_a_zone() {
    let c = chain("filter cluster.local {\n    aaaa\n    type HTTPS\n    immediate\n}", &["."]);
    let rec = record_calls();
    let mut with_rec = setup("filter cluster.local {\n    aaaa\n    type HTTPS\n    immediate\n}", &["."]).expect("sets up");
    with_rec.push(rec.clone());
    let mut req = query("svc.cluster.local.", Rtype::AAAA);
    req.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![] });
    let reply = serve(&with_rec, &mut req).expect("answers");
    assert_eq!(rec.count(), 0, "answered without asking");
    assert!(reply.answer.is_empty() && reply.rcode.rcode() == Rcode::NOERROR);
    assert_eq!(reply.edns.expect("OPT").options[0].data.as_ref(), &[0, 17]);
    serve(&with_rec, &mut query("svc.cluster.local.", Rtype::A)).expect("answers");
    assert_eq!(rec.count(), 1, "A queries go on");
    // Outside cluster.local, nothing is filtered.
    run_cases(&c, &[Case { qname: "www.example.org.", qtype: Rtype::AAAA, answer: &["www.example.org. 60 IN AAAA 2001:db8::1"], ..Case::EMPTY }]);
}

#[test]
fn readme_one_network_only() {
    let c = chain("filter {\n    net 10.0.0.0/8\n}", &["."]);
    for (client, want) in [("10.1.2.3", 0), ("192.0.2.9", 1), ("2001:db8::9", 1)] {
        let mut req = query("www.example.org.", Rtype::AAAA);
        req.client = SocketAddr::new(client.parse().expect("ip"), 5000);
        let reply = serve(&c, &mut req).expect("answers");
        assert_eq!(reply.answer.len(), want, "{client}");
    }
}

#[test]
fn additional_and_signatures_are_filtered() {
    let mut c = setup("filter", &["."]).expect("sets up");
    c.push(crate::testing::fixed_reply(&[
        "example.org. 60 IN MX 10 www.example.org.",
        "www.example.org. 60 IN AAAA 2001:db8::1",
        "www.example.org. 60 IN RRSIG AAAA 8 3 60 20300101000000 20200101000000 12345 example.org. AAAA",
    ]));
    let reply = serve(&c, &mut query("example.org.", Rtype::MX)).expect("answers");
    let got: Vec<String> = reply.answer.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, ["example.org. 60 IN MX 10 www.example.org."]);
}

#[test]
fn rejects_bad_configuration() {
    for (text, want) in [
        ("filter {\n    type BOGUS\n}", "invalid record type"),
        ("filter {\n    type CNAME\n}", "cannot be filtered"),
        ("filter {\n    net 10.0.0.0/40\n}", "invalid network"),
        ("filter {\n    aaaa now\n}", "takes at most 0"),
        ("filter {\n    strip AAAA\n}", "unknown property \"strip\""),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: {e}");
    }
}
