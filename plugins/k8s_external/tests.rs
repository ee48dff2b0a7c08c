use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use domain::base::iana::{Class, Rcode, Rtype};

use super::K8sExternal;
use crate::plugin::{External, ExternalHit, Plugin};
use crate::testing::{check_contract, run_cases, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "k8s_external", config: "k8s_external example.org", passes: Some(("example.net.", Rtype::A, Class::IN)) });
}

#[test]
fn syntax() {
    assert!(setup("k8s_external example.org {\n    apex a.b\n}", &["."]).is_err(), "apex is one label");
    assert!(setup("k8s_external example.org {\n    ttl 0\n}", &["."]).is_err());
    assert!(setup("k8s_external example.org {\n    ttl 3601\n}", &["."]).is_err());
    assert!(setup("k8s_external example.org {\n    headless extra\n}", &["."]).is_err());
    assert!(setup("k8s_external example.org {\n    apex ns\n    ttl 30\n    headless\n    fallthrough\n}", &["."]).is_ok());
}

/// The kubernetes side as a table: `svc1.ns1` has two external addresses and two ports,
/// `hdls.ns1` two endpoints, `noext.ns1` none; namespace `ns1` exists, nothing else.
struct Cluster;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

impl External for Cluster {
    fn external(&self, base: &str, headless: bool) -> Result<Vec<ExternalHit>, ()> {
        let hit = |a: &str, port, target: &str| ExternalHit { ip: ip(a), port, target: target.into() };
        match base {
            "ns1" => Ok(vec![]),
            "svc1.ns1" => Ok(vec![hit("192.0.2.10", 80, "svc1.ns1"), hit("192.0.2.10", 443, "svc1.ns1"), hit("2001:db8::10", 80, "svc1.ns1")]),
            "_http._tcp.svc1.ns1" => Ok(vec![hit("192.0.2.10", 80, "svc1.ns1"), hit("2001:db8::10", 80, "svc1.ns1")]),
            "hdls.ns1" if headless => Ok(vec![hit("10.1.0.1", 80, "web-0.hdls.ns1"), hit("10.1.0.2", 80, "web-1.hdls.ns1")]),
            "web-0.hdls.ns1" if headless => Ok(vec![hit("10.1.0.1", 80, "web-0.hdls.ns1")]),
            _ => Err(()),
        }
    }
    fn external_reverse(&self, ip: IpAddr) -> Vec<String> {
        if ip == "192.0.2.10".parse::<IpAddr>().expect("ip") {
            vec!["svc1.ns1".into()]
        } else {
            vec![]
        }
    }
    fn external_ns_addrs(&self) -> Vec<IpAddr> {
        vec![ip("192.0.2.53")]
    }
    fn external_serial(&self) -> u32 {
        1_700_000_000
    }
    fn external_ready(&self) -> bool {
        true
    }
}

fn chain(config: &str) -> Vec<Arc<dyn Plugin>> {
    let c = super::parse(&crate::config::directive::Directive::from_text(config).expect("directive")).expect("parses");
    let slot = Arc::new(OnceLock::new());
    let _ = slot.set(Arc::new(Cluster) as Arc<dyn External>);
    vec![
        Arc::new(K8sExternal {
            zones: c.zones.iter().map(|z| crate::plugin::zone_text(z).expect("zone")).collect(),
            apex: c.apex.unwrap_or_else(|| "dns".into()),
            ttl: c.ttl.unwrap_or(5),
            headless: c.headless,
            fallthrough: c.fallthrough.map(|v| v.iter().map(|z| crate::plugin::zone_text(z).expect("zone")).collect()),
            source: slot,
        }),
        zone(&["other.example.org. 60 IN A 192.0.2.99", "outside.test. 60 IN A 192.0.2.98"]),
    ]
}

const SOA: &str = "example.org. 5 IN SOA ns1.dns.example.org. hostmaster.dns.example.org. 1700000000 7200 1800 86400 5";

#[test]
fn services_apex_and_name_servers() {
    run_cases(
        &chain("k8s_external example.org"),
        &[
            Case { qname: "svc1.ns1.example.org.", answer: &["svc1.ns1.example.org. 5 IN A 192.0.2.10"], ..Case::EMPTY },
            Case { qname: "svc1.ns1.example.org.", qtype: Rtype::AAAA, answer: &["svc1.ns1.example.org. 5 IN AAAA 2001:db8::10"], ..Case::EMPTY },
            Case {
                qname: "svc1.ns1.example.org.",
                qtype: Rtype::SRV,
                answer: &[
                    "svc1.ns1.example.org. 5 IN SRV 0 33 80 svc1.ns1.example.org.",
                    "svc1.ns1.example.org. 5 IN SRV 0 33 443 svc1.ns1.example.org.",
                ],
                additional: &["svc1.ns1.example.org. 5 IN A 192.0.2.10", "svc1.ns1.example.org. 5 IN AAAA 2001:db8::10"],
                ..Case::EMPTY
            },
            Case {
                qname: "_http._tcp.svc1.ns1.example.org.",
                qtype: Rtype::SRV,
                answer: &["_http._tcp.svc1.ns1.example.org. 5 IN SRV 0 50 80 svc1.ns1.example.org."],
                additional: &["svc1.ns1.example.org. 5 IN A 192.0.2.10", "svc1.ns1.example.org. 5 IN AAAA 2001:db8::10"],
                ..Case::EMPTY
            },
            // Other types of an existing name, and the namespace: NODATA.
            Case { qname: "svc1.ns1.example.org.", qtype: Rtype::TXT, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "ns1.example.org.", authority: &[SOA], ..Case::EMPTY },
            // Unknown service, or headless without the option: NXDOMAIN.
            Case { qname: "nope.ns1.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "hdls.ns1.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // The apex and the name servers.
            Case { qname: "example.org.", qtype: Rtype::SOA, answer: &[SOA], ..Case::EMPTY },
            Case {
                qname: "example.org.",
                qtype: Rtype::NS,
                answer: &["example.org. 5 IN NS ns1.dns.example.org."],
                additional: &["ns1.dns.example.org. 5 IN A 192.0.2.53"],
                ..Case::EMPTY
            },
            Case { qname: "example.org.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "ns1.dns.example.org.", answer: &["ns1.dns.example.org. 5 IN A 192.0.2.53"], ..Case::EMPTY },
            Case { qname: "ns1.dns.example.org.", qtype: Rtype::AAAA, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "dns.example.org.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "ns2.dns.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // Out of the zone: the next plugin.
            Case { qname: "outside.test.", answer: &["outside.test. 60 IN A 192.0.2.98"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn headless_apex_ttl_and_fallthrough() {
    const SOA2: &str = "example.org. 30 IN SOA ns1.ns.example.org. hostmaster.ns.example.org. 1700000000 7200 1800 86400 30";
    run_cases(
        &chain("k8s_external example.org {\n    apex ns\n    ttl 30\n    headless\n    fallthrough\n}"),
        &[
            Case { qname: "hdls.ns1.example.org.", answer: &["hdls.ns1.example.org. 30 IN A 10.1.0.1", "hdls.ns1.example.org. 30 IN A 10.1.0.2"], ..Case::EMPTY },
            Case { qname: "web-0.hdls.ns1.example.org.", answer: &["web-0.hdls.ns1.example.org. 30 IN A 10.1.0.1"], ..Case::EMPTY },
            Case {
                qname: "hdls.ns1.example.org.",
                qtype: Rtype::SRV,
                answer: &["hdls.ns1.example.org. 30 IN SRV 0 50 80 web-0.hdls.ns1.example.org.", "hdls.ns1.example.org. 30 IN SRV 0 50 80 web-1.hdls.ns1.example.org."],
                additional: &["web-0.hdls.ns1.example.org. 30 IN A 10.1.0.1", "web-1.hdls.ns1.example.org. 30 IN A 10.1.0.2"],
                ..Case::EMPTY
            },
            Case { qname: "example.org.", qtype: Rtype::SOA, answer: &[SOA2], ..Case::EMPTY },
            // fallthrough: a name that does not exist goes on.
            Case { qname: "other.example.org.", answer: &["other.example.org. 60 IN A 192.0.2.99"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn ptr_of_external_addresses() {
    run_cases(
        &chain("k8s_external example.org 2.0.192.in-addr.arpa"),
        &[
            Case { qname: "10.2.0.192.in-addr.arpa.", qtype: Rtype::PTR, answer: &["10.2.0.192.in-addr.arpa. 5 IN PTR svc1.ns1.example.org."], ..Case::EMPTY },
            Case {
                qname: "11.2.0.192.in-addr.arpa.",
                qtype: Rtype::PTR,
                rcode: Rcode::NXDOMAIN,
                authority: &["2.0.192.in-addr.arpa. 5 IN SOA ns1.dns.2.0.192.in-addr.arpa. hostmaster.dns.2.0.192.in-addr.arpa. 1700000000 7200 1800 86400 5"],
                ..Case::EMPTY
            },
        ],
    );
}
