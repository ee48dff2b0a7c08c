//! The kubernetes plugin end to end: the real binary, a fake API server on 127.0.0.1 speaking
//! the real wire format, and queries through the DNS port.
#![cfg(feature = "plugin-kubernetes")]

mod common;
#[path = "common/fake_k8s.rs"]
mod fake_k8s;

use std::time::Duration;

use common::{eventually, http_get, tcp, udp, Ferrite, Q};
use domain::base::iana::{OptRcode, Rtype};
use fake_k8s::{external_name, namespace, pod, service, slice, with_external, FakeApi};
use ferrite::message::Reply;


fn cluster(api: &FakeApi) {
    for ns in ["default", "kube-system", "testns"] {
        api.apply(namespace(ns));
    }
    api.apply(service("testns", "svc1", &["10.0.0.1"], &[("http", "TCP", 80)]));
    api.apply(slice("testns", "svc1-abcde", "svc1", &[("172.0.0.7", None, "svc1-7d9f", true), ("172.0.0.8", None, "svc1-8a1b", false)], &[("http", "TCP", 8080)]));
    api.apply(service("testns", "dual", &["10.0.0.2", "fd00::2"], &[("https", "TCP", 443)]));
    api.apply(service("testns", "hdls1", &[], &[("http", "TCP", 80)]));
    api.apply(slice(
        "testns",
        "hdls1-xyz",
        "hdls1",
        &[("172.0.0.2", Some("web-0"), "web-0", true), ("172.0.0.3", None, "web-1", true)],
        &[("http", "TCP", 80)],
    ));
    api.apply(external_name("testns", "ext", "svc1.testns.svc.cluster.local"));
    api.apply(service("kube-system", "kube-dns", &["10.96.0.10"], &[("dns", "UDP", 53), ("dns-tcp", "TCP", 53), ("metrics", "TCP", 9153)]));
}

fn corefile(api: &FakeApi, extra: &str) -> String {
    format!(
        ".:0 {{\n    ready 127.0.0.1:0\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n        endpoint {}\n        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n{extra}    }}\n}}\n",
        api.url()
    )
}

fn answers(r: &Reply) -> Vec<String> {
    // Names in RDATA parsed from the wire print without their final dot.
    let mut v: Vec<String> = r
        .answer
        .iter()
        .map(|r| {
            let s = r.to_string();
            if [Rtype::SRV, Rtype::PTR, Rtype::CNAME].contains(&r.rtype()) && !s.ends_with('.') {
                s + "."
            } else {
                s
            }
        })
        .collect();
    v.sort();
    v
}

fn wait_synced(f: &Ferrite) {
    let ready = f.http[0];
    assert!(eventually(Duration::from_secs(10), || http_get(ready, "/ready").is_some_and(|r| r.0 == 200)), "never ready");
}

#[test]
fn every_record_kind_through_the_dns_port() {
    let api = FakeApi::start();
    cluster(&api);
    let f = Ferrite::start(&corefile(&api, ""));
    wait_synced(&f);
    let s = f.v4();
    let a = udp(s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A));
    assert_eq!(answers(&a), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
    assert!(a.header.aa());
    assert_eq!(answers(&udp(s, Q::new("dual.testns.svc.cluster.local.", Rtype::AAAA))), ["dual.testns.svc.cluster.local. 5 IN AAAA fd00::2"]);
    assert_eq!(
        answers(&tcp(s, Q::new("hdls1.testns.svc.cluster.local.", Rtype::A))),
        ["hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2", "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"]
    );
    assert_eq!(answers(&udp(s, Q::new("web-0.hdls1.testns.svc.cluster.local.", Rtype::A))), ["web-0.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"]);
    // The endpoint that is not ready is not served.
    assert_eq!(udp(s, Q::new("172-0-0-8.svc1.testns.svc.cluster.local.", Rtype::A)).rcode, OptRcode::NXDOMAIN);
    let srv = udp(s, Q::new("_http._tcp.hdls1.testns.svc.cluster.local.", Rtype::SRV));
    assert_eq!(
        answers(&srv),
        [
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 172-0-0-3.hdls1.testns.svc.cluster.local.",
            "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 web-0.hdls1.testns.svc.cluster.local."
        ]
    );
    assert_eq!(srv.additional.iter().filter(|r| r.rtype() == Rtype::A).count(), 2);
    let srv = udp(s, Q::new("kube-dns.kube-system.svc.cluster.local.", Rtype::SRV));
    // SRV without a port name: every port, one SRV per (target, port) as CoreDNS (dns and
    // dns-tcp share port 53).
    assert_eq!(srv.answer.len(), 2, "{srv:?}");
    assert_eq!(
        answers(&udp(s, Q::new("1.0.0.10.in-addr.arpa.", Rtype::PTR))),
        ["1.0.0.10.in-addr.arpa. 5 IN PTR svc1.testns.svc.cluster.local."]
    );
    assert_eq!(
        answers(&udp(s, Q::new("2.0.0.172.in-addr.arpa.", Rtype::PTR))),
        ["2.0.0.172.in-addr.arpa. 5 IN PTR web-0.hdls1.testns.svc.cluster.local."]
    );
    assert_eq!(
        answers(&udp(s, Q::new("ext.testns.svc.cluster.local.", Rtype::A))),
        ["ext.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.", "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]
    );
    assert_eq!(answers(&udp(s, Q::new("dns-version.cluster.local.", Rtype::TXT))), ["dns-version.cluster.local. 28800 IN TXT \"1.1.0\""]);
    assert_eq!(answers(&udp(s, Q::new("10-244-1-5.testns.pod.cluster.local.", Rtype::A))), ["10-244-1-5.testns.pod.cluster.local. 5 IN A 10.244.1.5"]);
    let soa = udp(s, Q::new("cluster.local.", Rtype::SOA));
    assert_eq!(soa.answer.len(), 1);
    assert!(soa.answer[0].to_string().contains("ns.dns.cluster.local. hostmaster.cluster.local."));
    // NODATA for an existing namespace, NXDOMAIN for one that does not exist; both with the SOA.
    let nodata = udp(s, Q::new("testns.svc.cluster.local.", Rtype::A));
    assert_eq!((nodata.rcode, nodata.answer.len(), nodata.authority.len()), (OptRcode::NOERROR, 0, 1));
    let nx = udp(s, Q::new("nons.svc.cluster.local.", Rtype::A));
    assert_eq!((nx.rcode, nx.authority.len()), (OptRcode::NXDOMAIN, 1));
    // Case-insensitive.
    assert_eq!(udp(s, Q::new("SVC1.TestNS.SVC.cluster.local.", Rtype::A)).answer.len(), 1);
    // LIST was paged and WATCH was used.
    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r.contains("limit=")), "{reqs:?}");
    assert!(reqs.iter().any(|r| r.contains("watch=true") || r.contains("watch=1")), "{reqs:?}");
}

#[test]
fn changes_are_served_within_a_second() {
    let api = FakeApi::start();
    cluster(&api);
    let f = Ferrite::start(&corefile(&api, ""));
    wait_synced(&f);
    let s = f.v4();
    let q = || udp(s, Q::new("new.testns.svc.cluster.local.", Rtype::A));
    assert_eq!(q().rcode, OptRcode::NXDOMAIN);
    api.apply(service("testns", "new", &["10.0.0.77"], &[("http", "TCP", 80)]));
    assert!(eventually(Duration::from_secs(1), || answers(&q()) == ["new.testns.svc.cluster.local. 5 IN A 10.0.0.77"]), "added service served");
    api.apply(service("testns", "new", &["10.0.0.78"], &[("http", "TCP", 80)]));
    assert!(eventually(Duration::from_secs(1), || answers(&q()) == ["new.testns.svc.cluster.local. 5 IN A 10.0.0.78"]), "modified service served");
    api.delete("Service", "testns", "new");
    assert!(eventually(Duration::from_secs(1), || q().rcode == OptRcode::NXDOMAIN), "deleted service gone");
    // Endpoints too.
    api.apply(slice("testns", "hdls1-xyz", "hdls1", &[("172.0.0.4", None, "web-2", true)], &[("http", "TCP", 80)]));
    assert!(eventually(Duration::from_secs(1), || answers(&udp(s, Q::new("hdls1.testns.svc.cluster.local.", Rtype::A))) == ["hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.4"]));
}

#[test]
fn api_outage_keeps_answers_and_410_relists() {
    let api = FakeApi::start();
    cluster(&api);
    let f = Ferrite::start(&corefile(&api, ""));
    wait_synced(&f);
    let s = f.v4();
    api.down_for(Duration::from_secs(2));
    for _ in 0..10 {
        assert_eq!(answers(&udp(s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A))), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(f.wait_line("answering from the last state", Duration::from_secs(5)).is_some(), "the outage is logged");
    // Back up: the watch reconnects (with backoff) and sees a change made meanwhile.
    api.apply(service("testns", "after", &["10.0.0.99"], &[]));
    assert!(
        eventually(Duration::from_secs(20), || udp(s, Q::new("after.testns.svc.cluster.local.", Rtype::A)).answer.len() == 1),
        "reconnected after the outage"
    );
    // 410 Gone: history is lost, the watchers relist and see what changed.
    api.expire();
    api.delete("Service", "testns", "after");
    api.expire();
    assert!(
        eventually(Duration::from_secs(20), || udp(s, Q::new("after.testns.svc.cluster.local.", Rtype::A)).rcode == OptRcode::NXDOMAIN),
        "relisted after 410"
    );
    assert_eq!(udp(s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A)).answer.len(), 1);
}

#[test]
fn startup_servfail_until_synced_and_ready_names_the_plugin() {
    let api = FakeApi::start();
    cluster(&api);
    api.down_for(Duration::from_secs(3));
    let f = Ferrite::start(&corefile(&api, "        startup_timeout 30s\n"));
    let s = f.v4();
    let ready = f.http[0];
    let r = udp(s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
    let (code, body) = http_get(ready, "/ready").expect("ready answers");
    assert_eq!(code, 503);
    assert!(body.contains("kubernetes"), "{body}");
    assert!(
        eventually(Duration::from_secs(20), || udp(s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A)).answer.len() == 1),
        "answers after the first sync"
    );
    assert_eq!(http_get(ready, "/ready").map(|r| r.0), Some(200));
}

/// One query over UDP from `from` (any 127.0.0.0/8 address is this host's): a pod's address.
fn udp_from(from: &str, server: std::net::SocketAddr, q: Q) -> Reply {
    let s = std::net::UdpSocket::bind((from, 0)).expect("client socket");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    s.send_to(&q.wire(), server).expect("send");
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).unwrap_or_else(|e| panic!("no reply to {from}: {e}"));
    Reply::from_wire(&buf[..n]).expect("reply parses")
}

#[test]
fn autopath_completes_a_pods_search_path() {
    let api = FakeApi::start();
    cluster(&api);
    api.apply(pod("testns", "client", "127.0.0.5", "Running"));
    api.apply(pod("default", "pending", "127.0.0.6", "Pending"));
    let f = Ferrite::start(&format!(
        ".:0 {{\n    ready 127.0.0.1:0\n    prometheus 127.0.0.1:0\n    autopath @kubernetes\n    hosts {{\n        192.0.2.1 example.org\n        fallthrough cluster.local\n    }}\n    kubernetes cluster.local {{\n        endpoint {}\n        pods verified\n    }}\n}}\n",
        api.url()
    ));
    wait_synced(&f);
    let s = f.v4();
    // The pod in testns asks for svc1 as its resolver would first: completed with `svc.cluster.local`.
    assert!(eventually(Duration::from_secs(5), || udp_from("127.0.0.5", s, Q::new("svc1.testns.testns.svc.cluster.local.", Rtype::A)).answer.len() == 2), "pod indexed");
    assert_eq!(
        answers(&udp_from("127.0.0.5", s, Q::new("svc1.testns.testns.svc.cluster.local.", Rtype::A))),
        ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1", "svc1.testns.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local."]
    );
    // A name outside the cluster: found as asked, the last element of the path.
    let r = udp_from("127.0.0.5", s, Q::new("example.org.testns.svc.cluster.local.", Rtype::A));
    assert_eq!(answers(&r), ["example.org. 3600 IN A 192.0.2.1", "example.org.testns.svc.cluster.local. 3600 IN CNAME example.org."]);
    assert_eq!(r.question.as_ref().map(|q| q.qname().to_string()), Some("example.org.testns.svc.cluster.local".to_string()));
    // Found with the first element: no CNAME.
    assert_eq!(answers(&udp_from("127.0.0.5", s, Q::new("svc1.testns.svc.cluster.local.", Rtype::A))), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
    // Nothing anywhere: the NXDOMAIN of the name as asked.
    let nx = udp_from("127.0.0.5", s, Q::new("nothing.testns.svc.cluster.local.", Rtype::A));
    assert_eq!((nx.rcode, nx.answer.len()), (OptRcode::NXDOMAIN, 0));
    // A pod that is not running, and an address that is no pod's: no completion.
    for from in ["127.0.0.6", "127.0.0.1"] {
        let r = udp_from(from, s, Q::new("example.org.default.svc.cluster.local.", Rtype::A));
        assert_eq!((r.rcode, r.answer.len()), (OptRcode::NXDOMAIN, 0), "{from}");
    }
    let (_, metrics) = http_get(f.http[0], "/metrics").expect("metrics");
    let line = metrics.lines().find(|l| l.starts_with("coredns_autopath_success_total")).unwrap_or_else(|| panic!("no autopath metric in {metrics}"));
    // Every answer found on the path counts, also with its first element (as in CoreDNS): the
    // first query above, svc1, example.org and svc1 again.
    assert!(line.contains("server=\"dns://:0\"") && line.ends_with(" 4"), "{line}");
}

#[test]
fn k8s_external_answers_external_and_load_balancer_addresses() {
    let api = FakeApi::start();
    cluster(&api);
    api.apply(with_external(service("testns", "web", &["10.0.0.20"], &[("http", "TCP", 80)]), &["192.0.2.10"], &["198.51.100.7"]));
    let f = Ferrite::start(&format!(
        ".:0 {{\n    ready 127.0.0.1:0\n    k8s_external example.org {{\n        headless\n    }}\n    kubernetes cluster.local {{\n        endpoint {}\n    }}\n}}\n",
        api.url()
    ));
    wait_synced(&f);
    let s = f.v4();
    assert_eq!(answers(&udp(s, Q::new("web.testns.example.org.", Rtype::A))), ["web.testns.example.org. 5 IN A 192.0.2.10", "web.testns.example.org. 5 IN A 198.51.100.7"]);
    let srv = udp(s, Q::new("_http._tcp.web.testns.example.org.", Rtype::SRV));
    assert_eq!(answers(&srv), ["_http._tcp.web.testns.example.org. 5 IN SRV 0 50 80 web.testns.example.org."]);
    assert_eq!(srv.additional.len(), 2);
    // Headless: the endpoints; a ClusterIP service without external addresses does not exist here.
    assert_eq!(
        answers(&udp(s, Q::new("hdls1.testns.example.org.", Rtype::A))),
        ["hdls1.testns.example.org. 5 IN A 172.0.0.2", "hdls1.testns.example.org. 5 IN A 172.0.0.3"]
    );
    assert_eq!(answers(&udp(s, Q::new("web-0.hdls1.testns.example.org.", Rtype::A))), ["web-0.hdls1.testns.example.org. 5 IN A 172.0.0.2"]);
    let nx = udp(s, Q::new("svc1.testns.example.org.", Rtype::A));
    assert_eq!((nx.rcode, nx.authority.len()), (OptRcode::NXDOMAIN, 1));
    let nodata = udp(s, Q::new("testns.example.org.", Rtype::A));
    assert_eq!((nodata.rcode, nodata.answer.len(), nodata.authority.len()), (OptRcode::NOERROR, 0, 1));
    let soa = udp(s, Q::new("example.org.", Rtype::SOA));
    assert!(soa.answer[0].to_string().contains("ns1.dns.example.org. hostmaster.dns.example.org."), "{soa:?}");
    assert_eq!(answers(&udp(s, Q::new("example.org.", Rtype::NS))), ["example.org. 5 IN NS ns1.dns.example.org."]);
    // Changes through the API are served: the LoadBalancer gets another address.
    api.apply(with_external(service("testns", "web", &["10.0.0.20"], &[("http", "TCP", 80)]), &[], &["198.51.100.8"]));
    assert!(
        eventually(Duration::from_secs(1), || answers(&udp(s, Q::new("web.testns.example.org.", Rtype::A))) == ["web.testns.example.org. 5 IN A 198.51.100.8"]),
        "changed address served"
    );
    // The cluster zone is the kubernetes plugin's, as before.
    assert_eq!(answers(&udp(s, Q::new("web.testns.svc.cluster.local.", Rtype::A))), ["web.testns.svc.cluster.local. 5 IN A 10.0.0.20"]);
}
