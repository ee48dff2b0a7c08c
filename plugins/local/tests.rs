use std::sync::Arc;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::plugin::Plugin;
use crate::testing::{capture_counters, check_contract, run_cases, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "local", config: "local", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

fn chain() -> Vec<Arc<dyn Plugin>> {
    let mut c = setup("local", &["."]).expect("sets up");
    c.push(zone(&["example.org. 60 IN A 192.0.2.1"]));
    c
}

const SOA: &str = "localhost. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800";

#[test]
fn localhost_names() {
    run_cases(
        &chain(),
        &[
            Case { qname: "localhost.", answer: &["localhost. 604800 IN A 127.0.0.1"], ..Case::EMPTY },
            Case { qname: "LocalHost.", qtype: Rtype::AAAA, answer: &["LocalHost. 604800 IN AAAA ::1"], ..Case::EMPTY },
            Case { qname: "localhost.", qtype: Rtype::SOA, answer: &[SOA], ..Case::EMPTY },
            Case { qname: "localhost.", qtype: Rtype::NS, answer: &["localhost. 604800 IN NS localhost."], ..Case::EMPTY },
            Case { qname: "localhost.", qtype: Rtype::MX, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "app.localhost.", answer: &["app.localhost. 604800 IN A 127.0.0.1"], ..Case::EMPTY },
            Case { qname: "app.localhost.", qtype: Rtype::TXT, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "localhost.example.org.", answer: &["localhost.example.org. 604800 IN A 127.0.0.1"], ..Case::EMPTY },
            Case { qname: "example.org.", answer: &["example.org. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "notlocalhost.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
}

#[test]
fn reverse_zones() {
    const SOA127: &str = "127.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800";
    run_cases(
        &chain(),
        &[
            Case { qname: "1.0.0.127.in-addr.arpa.", qtype: Rtype::PTR, answer: &["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."], ..Case::EMPTY },
            Case { qname: "2.0.0.127.in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, authority: &[SOA127], ..Case::EMPTY },
            Case { qname: "127.in-addr.arpa.", qtype: Rtype::SOA, answer: &[SOA127], ..Case::EMPTY },
            Case { qname: "127.in-addr.arpa.", qtype: Rtype::NS, answer: &["127.in-addr.arpa. 604800 IN NS localhost."], ..Case::EMPTY },
            Case {
                qname: "255.255.255.255.in-addr.arpa.",
                qtype: Rtype::PTR,
                rcode: Rcode::NXDOMAIN,
                authority: &["255.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"],
                ..Case::EMPTY
            },
            Case {
                qname: "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
                qtype: Rtype::PTR,
                answer: &["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 604800 IN PTR localhost."],
                ..Case::EMPTY
            },
            // Another reverse name goes on.
            Case { qname: "1.2.0.192.in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
}

#[test]
fn counts_localhost_domain_queries_only() {
    let c = chain();
    let ((), got) = capture_counters(|| {
        run_cases(
            &c,
            &[
                Case { qname: "localhost.corp.example.", answer: &["localhost.corp.example. 604800 IN A 127.0.0.1"], ..Case::EMPTY },
                Case { qname: "localhost.", answer: &["localhost. 604800 IN A 127.0.0.1"], ..Case::EMPTY },
            ],
        )
    });
    assert_eq!(got, [("coredns_local_localhost_requests_total{}".to_string(), 1)]);
}

#[test]
fn takes_no_arguments() {
    assert!(setup("local extra", &["."]).is_err());
    assert!(setup("local {\n    x\n}", &["."]).is_err());
}
