use std::net::IpAddr;

use domain::base::iana::{Class, Rcode, Rtype};

use super::handler::{for_tests, Options, PodMode};
use super::store::{EndpointAddr, Port, Service, Slice, Store};
use crate::plugin::{Plugin, Request};
use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, Case, Contract};
use std::sync::Arc;

#[test]
fn contract() {
    check_contract(&Contract {
        name: "kubernetes",
        config: "kubernetes cluster.local {\n    endpoint http://127.0.0.1:1\n}",
        passes: Some(("example.org.", Rtype::A, Class::IN)),
    });
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

fn addr(a: &str, hostname: Option<&str>, target: Option<&str>) -> EndpointAddr {
    EndpointAddr { ip: ip(a), hostname: hostname.map(Into::into), target: target.map(Into::into) }
}

/// A small cluster, as the watchers would leave the store.
fn cluster(s: &mut Store) {
    for ns in ["default", "testns", "kube-system"] {
        s.upsert_namespace(ns);
    }
    s.upsert_service(
        "svc1",
        "testns",
        Service { cluster_ips: vec![ip("10.0.0.1")], ports: vec![Port::new("http", "TCP", 80)], ..Default::default() },
    );
    s.upsert_slice(
        "svc1-abcde",
        "testns",
        Slice { service: "svc1".into(), ports: vec![Port::new("http", "TCP", 8080)], addrs: vec![addr("172.0.0.7", None, Some("svc1-pod"))] },
    );
    s.upsert_service(
        "dual",
        "testns",
        Service { cluster_ips: vec![ip("10.0.0.2"), ip("fd00::2")], ports: vec![Port::new("https", "TCP", 443)], ..Default::default() },
    );
    s.upsert_service("hdls1", "testns", Service { headless: true, ports: vec![Port::new("http", "TCP", 80)], ..Default::default() });
    s.upsert_slice(
        "hdls1-xyz",
        "testns",
        Slice {
            service: "hdls1".into(),
            ports: vec![Port::new("http", "TCP", 80)],
            addrs: vec![addr("172.0.0.2", Some("dup-name"), Some("pod-2")), addr("172.0.0.3", None, Some("pod-3"))],
        },
    );
    s.upsert_service("ext", "testns", Service { external_name: Some("ext.interwebs.test".into()), ..Default::default() });
    s.upsert_service("internal", "testns", Service { external_name: Some("svc1.testns.svc.cluster.local".into()), ..Default::default() });
    s.upsert_service("noports", "testns", Service { cluster_ips: vec![ip("10.0.0.5")], ..Default::default() });
    s.upsert_service(
        "kube-dns",
        "kube-system",
        Service {
            cluster_ips: vec![ip("10.96.0.10")],
            ports: vec![Port::new("dns", "UDP", 53), Port::new("dns-tcp", "TCP", 53)],
            ..Default::default()
        },
    );
    s.upsert_slice(
        "kube-dns-1",
        "kube-system",
        Slice { service: "kube-dns".into(), ports: vec![Port::new("dns", "UDP", 53)], addrs: vec![addr("172.0.0.9", None, None)] },
    );
    s.modified = 1_700_000_000;
}

fn opts() -> Options {
    Options {
        zones: vec!["cluster.local.".into(), "in-addr.arpa.".into(), "ip6.arpa.".into()],
        pods: PodMode::Insecure,
        ttl: 5,
        local_ips: vec![ip("172.0.0.9")],
        ..Default::default()
    }
}

fn chain(o: Options) -> Vec<Arc<dyn Plugin>> {
    vec![Arc::new(for_tests(o, cluster))]
}

const SOA: &str = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 5";

#[test]
fn services_endpoints_and_srv() {
    run_cases(
        &chain(opts()),
        &[
            Case { qname: "svc1.testns.svc.cluster.local.", answer: &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"], ..Case::EMPTY },
            Case { qname: "svc1.testns.svc.cluster.local.", qtype: Rtype::AAAA, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "dual.testns.svc.cluster.local.", answer: &["dual.testns.svc.cluster.local. 5 IN A 10.0.0.2"], ..Case::EMPTY },
            Case {
                qname: "dual.testns.svc.cluster.local.",
                qtype: Rtype::AAAA,
                answer: &["dual.testns.svc.cluster.local. 5 IN AAAA fd00::2"],
                ..Case::EMPTY
            },
            // Headless: the ready endpoints.
            Case {
                qname: "hdls1.testns.svc.cluster.local.",
                answer: &["hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2", "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"],
                ..Case::EMPTY
            },
            Case {
                qname: "dup-name.hdls1.testns.svc.cluster.local.",
                answer: &["dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"],
                ..Case::EMPTY
            },
            Case {
                qname: "172-0-0-3.hdls1.testns.svc.cluster.local.",
                answer: &["172-0-0-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"],
                ..Case::EMPTY
            },
            // An endpoint of a ClusterIP service, by its dashed address.
            Case {
                qname: "172-0-0-7.svc1.testns.svc.cluster.local.",
                answer: &["172-0-0-7.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.7"],
                ..Case::EMPTY
            },
            Case { qname: "pod-3.hdls1.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case {
                qname: "_http._tcp.svc1.testns.svc.cluster.local.",
                qtype: Rtype::SRV,
                answer: &["_http._tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."],
                additional: &["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
                ..Case::EMPTY
            },
            Case {
                qname: "_http._tcp.hdls1.testns.svc.cluster.local.",
                qtype: Rtype::SRV,
                answer: &[
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 dup-name.hdls1.testns.svc.cluster.local.",
                    "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
                ],
                additional: &[
                    "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
                    "172-0-0-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
                ],
                ..Case::EMPTY
            },
            // SRV without a port name: every port of the service.
            Case {
                qname: "kube-dns.kube-system.svc.cluster.local.",
                qtype: Rtype::SRV,
                answer: &[
                    "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 53 kube-dns.kube-system.svc.cluster.local.",
                ],
                additional: &["kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"],
                ..Case::EMPTY
            },
            // Dual-stack SRV: one SRV, both addresses.
            Case {
                qname: "_https._tcp.dual.testns.svc.cluster.local.",
                qtype: Rtype::SRV,
                answer: &["_https._tcp.dual.testns.svc.cluster.local. 5 IN SRV 0 50 443 dual.testns.svc.cluster.local."],
                additional: &["dual.testns.svc.cluster.local. 5 IN A 10.0.0.2", "dual.testns.svc.cluster.local. 5 IN AAAA fd00::2"],
                ..Case::EMPTY
            },
            Case { qname: "_dns._tcp.kube-dns.kube-system.svc.cluster.local.", qtype: Rtype::SRV, rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // A service without ports has addresses but no SRV.
            Case { qname: "noports.testns.svc.cluster.local.", answer: &["noports.testns.svc.cluster.local. 5 IN A 10.0.0.5"], ..Case::EMPTY },
            Case { qname: "noports.testns.svc.cluster.local.", qtype: Rtype::SRV, authority: &[SOA], ..Case::EMPTY },
            // Case-insensitive, the question's case kept.
            Case { qname: "SVC1.TestNS.svc.Cluster.Local.", answer: &["SVC1.TestNS.svc.Cluster.Local. 5 IN A 10.0.0.1"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn nxdomain_nodata_and_the_zone() {
    run_cases(
        &chain(opts()),
        &[
            // An existing namespace is NODATA; one that does not exist NXDOMAIN.
            Case { qname: "testns.svc.cluster.local.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "nons.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "nosvc.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "svc.cluster.local.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "pod.cluster.local.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "cluster.local.", authority: &[SOA], ..Case::EMPTY },
            Case { qname: "other.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // No wildcard enumeration.
            Case { qname: "*.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "svc1.*.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "any.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // Too many labels.
            Case { qname: "a.b.c.svc1.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // Other types: NODATA for an existing name, NXDOMAIN otherwise.
            Case { qname: "svc1.testns.svc.cluster.local.", qtype: Rtype::MX, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "svc1.testns.svc.cluster.local.", qtype: Rtype::TXT, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "nosvc.testns.svc.cluster.local.", qtype: Rtype::HINFO, rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "dns-version.cluster.local.", qtype: Rtype::TXT, answer: &["dns-version.cluster.local. 28800 IN TXT \"1.1.0\""], ..Case::EMPTY },
            Case { qname: "cluster.local.", qtype: Rtype::SOA, answer: &[SOA], ..Case::EMPTY },
            Case {
                qname: "cluster.local.",
                qtype: Rtype::NS,
                answer: &["cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local."],
                additional: &["kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"],
                ..Case::EMPTY
            },
            Case { qname: "svc1.testns.svc.cluster.local.", qtype: Rtype::SOA, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "cluster.local.", qtype: Rtype::AXFR, rcode: Rcode::REFUSED, ..Case::EMPTY },
        ],
    );
}

#[test]
fn external_names_ptr_and_pods() {
    run_cases(
        &chain(opts()),
        &[
            Case { qname: "ext.testns.svc.cluster.local.", answer: &["ext.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."], ..Case::EMPTY },
            Case {
                qname: "ext.testns.svc.cluster.local.",
                qtype: Rtype::CNAME,
                answer: &["ext.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."],
                ..Case::EMPTY
            },
            // A target inside the zone is followed.
            Case {
                qname: "internal.testns.svc.cluster.local.",
                answer: &["internal.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.", "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
                ..Case::EMPTY
            },
            Case { qname: "ext.testns.svc.cluster.local.", qtype: Rtype::SRV, authority: &[SOA], ..Case::EMPTY },
            // As CoreDNS: port and protocol labels do not matter to an ExternalName service; an
            // endpoint label does (NXDOMAIN).
            Case {
                qname: "_http._tcp.ext.testns.svc.cluster.local.",
                qtype: Rtype::CNAME,
                answer: &["_http._tcp.ext.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."],
                ..Case::EMPTY
            },
            Case { qname: "ep.ext.testns.svc.cluster.local.", qtype: Rtype::CNAME, rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case {
                qname: "1.0.0.10.in-addr.arpa.",
                qtype: Rtype::PTR,
                answer: &["1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.cluster.local."],
                ..Case::EMPTY
            },
            Case {
                qname: "2.0.0.172.in-addr.arpa.",
                qtype: Rtype::PTR,
                answer: &["2.0.0.172.in-addr.arpa. 5 IN PTR dup-name.hdls1.testns.svc.cluster.local."],
                ..Case::EMPTY
            },
            Case {
                qname: "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                qtype: Rtype::PTR,
                answer: &["2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 5 IN PTR dual.testns.svc.cluster.local."],
                ..Case::EMPTY
            },
            Case { qname: "99.0.0.10.in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, authority: &["in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1700000000 7200 1800 86400 5"], ..Case::EMPTY },
            // pods insecure: any address in an existing namespace.
            Case { qname: "1-2-3-4.testns.pod.cluster.local.", answer: &["1-2-3-4.testns.pod.cluster.local. 5 IN A 1.2.3.4"], ..Case::EMPTY },
            Case { qname: "fd00--1.testns.pod.cluster.local.", qtype: Rtype::AAAA, answer: &["fd00--1.testns.pod.cluster.local. 5 IN AAAA fd00::1"], ..Case::EMPTY },
            Case { qname: "1-2-3-4.nons.pod.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "not-an-ip.testns.pod.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "testns.pod.cluster.local.", authority: &[SOA], ..Case::EMPTY },
        ],
    );
}

#[test]
fn pods_modes_endpoint_pod_names_and_filters() {
    let pod = Case { qname: "172-0-0-2.testns.pod.cluster.local.", answer: &["172-0-0-2.testns.pod.cluster.local. 5 IN A 172.0.0.2"], ..Case::EMPTY };
    let nx = Case { rcode: Rcode::NXDOMAIN, answer: &[], authority: &[SOA], ..pod.clone() };
    run_cases(&chain(Options { pods: PodMode::Disabled, ..opts() }), std::slice::from_ref(&nx));
    // verified: only a pod with that address in that namespace.
    let k = for_tests(Options { pods: PodMode::Verified, ..opts() }, |s| {
        cluster(s);
        s.upsert_pod("pod-2", "testns", Some(ip("172.0.0.2")), true);
        s.modified = 1_700_000_000;
    });
    let c: Vec<Arc<dyn Plugin>> = vec![Arc::new(k)];
    run_cases(&c, &[pod.clone(), Case { qname: "172-0-0-3.testns.pod.cluster.local.", ..nx.clone() }, Case { qname: "172-0-0-2.default.pod.cluster.local.", ..nx.clone() }]);
    // endpoint_pod_names: endpoints without a hostname are named after their pod.
    run_cases(
        &chain(Options { endpoint_pod_names: true, ..opts() }),
        &[
            Case { qname: "pod-3.hdls1.testns.svc.cluster.local.", answer: &["pod-3.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"], ..Case::EMPTY },
            Case { qname: "dup-name.hdls1.testns.svc.cluster.local.", answer: &["dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"], ..Case::EMPTY },
        ],
    );
    // namespaces: others are not exposed.
    run_cases(
        &chain(Options { namespaces: vec!["kube-system".into()], ..opts() }),
        &[Case { qname: "svc1.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY }],
    );
    // ignore empty_service: a ClusterIP service without ready endpoints is NXDOMAIN.
    run_cases(
        &chain(Options { ignore_empty_service: true, ttl: 30, ..opts() }),
        &[
            Case {
                qname: "dual.testns.svc.cluster.local.",
                rcode: Rcode::NXDOMAIN,
                authority: &["cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1700000000 7200 1800 86400 30"],
                ..Case::EMPTY
            },
            Case { qname: "svc1.testns.svc.cluster.local.", answer: &["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn fallthrough_and_out_of_zone() {
    let mut c = chain(Options { fallthrough: Some(vec!["in-addr.arpa.".into()]), ..opts() });
    let rec = record_calls();
    c.push(rec.clone());
    for (name, qtype) in [("99.0.0.10.in-addr.arpa.", Rtype::PTR), ("example.org.", Rtype::A)] {
        let mut req: Request = query(name, qtype);
        serve(&c, &mut req).expect("next answers");
    }
    assert_eq!(rec.count(), 2);
    let mut req = query("nosvc.testns.svc.cluster.local.", Rtype::A);
    assert_eq!(serve(&c, &mut req).expect("answers").rcode.rcode(), Rcode::NXDOMAIN);
    assert_eq!(rec.count(), 2, "no fallthrough for cluster.local");
}

#[test]
fn store_indexes_follow_changes() {
    let k = for_tests(opts(), cluster);
    {
        let mut s = k.shared.store.write().expect("lock");
        s.delete_service("svc1", "testns");
        s.delete_slice("hdls1-xyz", "testns");
        s.modified = 1_700_000_000;
    }
    let c: Vec<Arc<dyn Plugin>> = vec![Arc::new(k)];
    run_cases(
        &c,
        &[
            Case { qname: "svc1.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "1.0.0.10.in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, authority: &["in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1700000000 7200 1800 86400 5"], ..Case::EMPTY },
            Case { qname: "2.0.0.172.in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, authority: &["in-addr.arpa. 5 IN SOA ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. 1700000000 7200 1800 86400 5"], ..Case::EMPTY },
            Case { qname: "hdls1.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
        ],
    );
}

#[test]
fn unsynced_is_servfail_then_ready() {
    let k = for_tests(Options { startup_timeout: std::time::Duration::from_secs(60), ..opts() }, cluster);
    k.shared.synced.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(!k.ready());
    let c: Vec<Arc<dyn Plugin>> = vec![Arc::new(k)];
    let mut req = query("svc1.testns.svc.cluster.local.", Rtype::A);
    let e = serve(&c, &mut req).expect_err("servfail");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
}

#[test]
fn config_options_and_errors() {
    let ok = "kubernetes cluster.local in-addr.arpa ip6.arpa {
    endpoint http://127.0.0.1:1
    namespaces default kube-system
    labels environment in (production, qa),tier!=frontend
    namespace_labels team=dns
    pods verified
    endpoint_pod_names
    ttl 30
    noendpoints
    fallthrough in-addr.arpa ip6.arpa
    ignore empty_service
    apiserver_qps 50
    apiserver_burst 100
    startup_timeout 10s
}";
    let d = crate::plugin::Directive::from_text(ok).expect("directive");
    let c = super::parse(&d).expect("parses");
    assert_eq!(c.pods, PodMode::Verified);
    assert_eq!(c.ttl, Some(30));
    assert_eq!(c.labels.as_deref(), Some("environment in (production, qa),tier!=frontend"));
    assert_eq!(c.startup_timeout, Some(std::time::Duration::from_secs(10)));
    assert!(setup(ok, &["."]).is_ok());
    for (text, want) in [
        ("kubernetes {\n    ttl 3601\n}", "3:9"),
        ("kubernetes {\n    pods sometimes\n}", "3:10"),
        ("kubernetes {\n    endpoint ftp://x\n}", "3:14"),
        ("kubernetes {\n    ignore everything\n}", "3:12"),
        ("kubernetes {\n    labels a=(b\n}", "3:12"),
        ("kubernetes {\n    tls a b\n}", "3:5"),
        ("kubernetes {\n    startup_timeout soon\n}", "3:21"),
        ("kubernetes {\n    bogus\n}", "3:5"),
        ("kubernetes bad..zone", "2:12"),
        ("kubernetes {\n    endpoint http://a\n    kubeconfig /x\n}", ""),
    ] {
        let Err(e) = setup(text, &["."]) else { panic!("{text}: accepted") };
        let e = e.to_string();
        assert!(e.contains(want), "{text}: {e} should name {want}");
    }
}

#[test]
fn readme_examples_set_up() {
    for ex in crate::testing::readme_examples(include_str!("README.md")) {
        crate::config::from_corefile_str(&ex, "README.md").unwrap_or_else(|e| panic!("{ex}: {e:?}"));
    }
}

#[test]
fn ns_of_a_headless_dns_service_and_wildcards() {
    // This server (172.0.0.9) is an endpoint of a headless service: the NS names its endpoints,
    // as CoreDNS's nsAddrs does.
    let k = for_tests(opts(), |s| {
        cluster(s);
        s.upsert_service("kube-dns", "kube-system", Service { headless: true, ports: vec![Port::new("dns", "UDP", 53)], ..Default::default() });
        s.modified = 1_700_000_000;
    });
    let c: Vec<Arc<dyn Plugin>> = vec![Arc::new(k)];
    run_cases(
        &c,
        &[
            Case {
                qname: "cluster.local.",
                qtype: Rtype::NS,
                answer: &["cluster.local. 5 IN NS 172-0-0-9.kube-dns.kube-system.svc.cluster.local."],
                additional: &["172-0-0-9.kube-dns.kube-system.svc.cluster.local. 5 IN A 172.0.0.9"],
                ..Case::EMPTY
            },
            // No wildcards (CoreDNS dropped them in 1.9): `*` and `any` are names like others.
            Case { qname: "*.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "svc1.*.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "any.testns.svc.cluster.local.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "_*._*.svc1.testns.svc.cluster.local.", qtype: Rtype::SRV, rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
        ],
    );
}
