//! Operations: health, ready and metrics endpoints, reload, lameduck shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;
use domain::base::iana::{Class, OptRcode, Rtype};

fn txt(f: &Ferrite, name: &str) -> Vec<String> {
    let r = udp(f.v4(), Q::new(name, Rtype::TXT).class(Class::CH));
    r.answer.iter().map(|r| r.to_string()).collect()
}


#[test]
fn health_ready_and_metrics_share_a_port_or_not() {
    let f = Ferrite::start(
        ".:0 {\n    health 127.0.0.1:0\n    ready 127.0.0.2:0\n    prometheus 127.0.0.2:0\n    whoami\n}\n",
    );
    assert_eq!(f.http.len(), 2, "health alone, ready and prometheus together: {:?}", f.http);
    let (health, shared) = (f.http[0], f.http[1]);
    assert_eq!(http_get(health, "/health"), Some((200, "OK".into())));
    assert_eq!(http_get(health, "/ready").map(|r| r.0), Some(404));
    assert_eq!(http_get(shared, "/ready"), Some((200, "OK".into())));
    let (code, body) = http_get(shared, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("coredns_build_info{"), "{body}");
}

#[test]
fn metrics_have_coredns_names_and_labels_after_traffic() {
    let f = Ferrite::start(".:0 {\n    prometheus 127.0.0.1:0\n    any\n    whoami\n}\nexample.org:0 {\n    whoami\n}\n");
    for addr in [f.v4(), f.v6()] {
        udp(addr, Q::new("a.example.", Rtype::A));
        tcp(addr, Q::new("b.example.", Rtype::AAAA));
    }
    let mut q = Q::new("c.example.", Rtype::ANY).edns(1232);
    q.dnssec_ok = true;
    udp(f.v4(), q);
    // A malformed query is answered but counted nowhere (it never reached a block).
    let _ = udp_raw(f.v4(), &[0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], Duration::from_secs(2));
    let metrics = f.http[0];
    let (_, body) = http_get(metrics, "/metrics").expect("metrics");
    let want = [
        r#"coredns_dns_requests_total{server="dns://:0",zone=".",view="",proto="udp",family="1",type="A"} 1"#,
        r#"coredns_dns_requests_total{server="dns://:0",zone=".",view="",proto="tcp",family="2",type="AAAA"} 1"#,
        r#"coredns_dns_requests_total{server="dns://:0",zone=".",view="",proto="udp",family="1",type="ANY"} 1"#,
        r#"coredns_dns_responses_total{server="dns://:0",zone=".",view="",rcode="NOERROR",plugin="whoami"} 4"#,
        r#"coredns_dns_responses_total{server="dns://:0",zone=".",view="",rcode="NOERROR",plugin="any"} 1"#,
        r#"coredns_dns_do_requests_total{server="dns://:0",view="",zone="."} 1"#,
        r#"coredns_dns_request_duration_seconds_bucket{server="dns://:0",zone=".",view="",type="A",le="0.00025"}"#,
        r#"coredns_dns_request_size_bytes_bucket{server="dns://:0",zone=".",view="",proto="udp",le="100"}"#,
        r#"coredns_dns_response_size_bytes_bucket{server="dns://:0",zone=".",view="",proto="tcp",le="511"}"#,
        r#"coredns_plugin_enabled{server="dns://:0",zone=".",view="",name="whoami"} 1"#,
        r#"coredns_plugin_enabled{server="dns://:0",zone=".",view="",name="any"} 1"#,
        r#"coredns_build_info{version=""#,
        "coredns_panics_total 0",
        "coredns_reload_failed_total 0",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
    ];
    let missing: Vec<&str> = want.iter().copied().filter(|w| !body.contains(w)).collect();
    assert!(missing.is_empty(), "missing {missing:#?} in\n{body}");
    // The example.org block has no prometheus: none of its queries are counted.
    assert!(!body.contains("zone=\"example.org.\""), "{body}");
}

#[test]
fn health_self_check_is_timed() {
    let f = Ferrite::start(".:0 {\n    health 127.0.0.1:0\n    prometheus 127.0.0.1:0\n    whoami\n}\n");
    let addr = f.http[0];
    assert!(
        eventually(Duration::from_secs(5), || http_get(addr, "/metrics")
            .is_some_and(|(_, b)| b.contains("coredns_health_request_duration_seconds_count 1")
                || b.contains("coredns_health_request_duration_seconds_count 2"))),
        "the self-check runs once a second"
    );
}

fn write(f: &Ferrite, text: &str) {
    let path = f.dir.join("Corefile");
    let tmp = f.dir.join("Corefile.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(tmp, path).expect("rename");
}

#[test]
fn reload_by_sigusr1_good_then_broken() {
    let conf = |v: &str| format!(".:0 {{\n    prometheus 127.0.0.1:0\n    chaos {v}\n}}\n");
    let f = Ferrite::start(&conf("one"));
    let metrics = f.http[0];
    assert_eq!(txt(&f, "version.bind."), ["version.bind. 0 CH TXT \"one\""]);
    // A good configuration: same listener (same port), new chain.
    write(&f, &conf("two"));
    f.signal(libc::SIGUSR1);
    assert!(eventually(Duration::from_secs(10), || txt(&f, "version.bind.") == ["version.bind. 0 CH TXT \"two\""]));
    // A broken one: logged with its location, counted, and the old one keeps serving.
    write(&f, ".:0 {\n    prometheus 127.0.0.1:0\n    chaos three\n    nosuchplugin\n}\n");
    f.signal(libc::SIGUSR1);
    let line = f.wait_line("plugin/reload", Duration::from_secs(10)).expect("a reload log line");
    let line = if line.contains("nosuchplugin") { line } else { f.wait_line("nosuchplugin", Duration::from_secs(10)).expect("error line") };
    assert!(line.contains("Corefile:4:5: unknown plugin \"nosuchplugin\""), "{line}");
    assert!(eventually(Duration::from_secs(5), || http_get(metrics, "/metrics")
        .is_some_and(|(_, b)| b.contains("coredns_reload_failed_total 1"))));
    assert_eq!(txt(&f, "version.bind."), ["version.bind. 0 CH TXT \"two\""]);
    // TCP still works on the kept listener.
    assert_eq!(tcp(f.v4(), Q::new("version.bind.", Rtype::TXT).class(Class::CH)).rcode, OptRcode::NOERROR);
}

#[test]
fn reload_plugin_notices_changes_in_imports() {
    // A glob import may match nothing; the file appears after start-up.
    let f = Ferrite::start(".:0 {\n    reload 2s 1s\n    whoami\n    import extra*.conf\n}\n");
    std::fs::write(f.dir.join("extra.conf"), "chaos first\n").expect("write");
    f.signal(libc::SIGUSR1);
    assert!(eventually(Duration::from_secs(10), || txt(&f, "version.bind.") == ["version.bind. 0 CH TXT \"first\""]));
    std::fs::write(f.dir.join("extra.conf"), "chaos second\n").expect("write");
    // Only the imported file changed; the poll (every 2-3 s) sees it.
    assert!(eventually(Duration::from_secs(15), || txt(&f, "version.bind.") == ["version.bind. 0 CH TXT \"second\""]));
}

#[test]
fn reload_adds_and_removes_listeners() {
    let f = Ferrite::start(".:0 {\n    whoami\n}\n");
    write(&f, ".:0 {\n    whoami\n}\n.:0 {\n    bind 127.0.0.3\n    chaos added\n}\n");
    f.signal(libc::SIGUSR1);
    let line = f.wait_line("listening on dns://127.0.0.3:", Duration::from_secs(10)).expect("new listener");
    let addr: std::net::SocketAddr = line.trim_start_matches("listening on dns://").split_whitespace().next().expect("addr").parse().expect("addr");
    let r = udp(addr, Q::new("version.bind.", Rtype::TXT).class(Class::CH));
    assert_eq!(r.answer.len(), 1);
    // The first listener kept its port.
    assert_eq!(udp(f.v4(), Q::new("w.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    write(&f, ".:0 {\n    whoami\n}\n");
    f.signal(libc::SIGUSR1);
    assert!(f.wait_line("stopped listening on dns://127.0.0.3", Duration::from_secs(10)).is_some());
    assert!(udp_raw(addr, &Q::new("version.bind.", Rtype::TXT).class(Class::CH).wire(), Duration::from_millis(500)).is_none());
}

#[test]
fn sigterm_fails_readiness_first_then_lameduck_then_exit() {
    let mut f = Ferrite::start(".:0 {\n    health 127.0.0.1:0 {\n        lameduck 2s\n    }\n    ready 127.0.0.1:0\n    whoami\n}\n");
    let http = f.http[0];
    assert_eq!(http_get(http, "/ready"), Some((200, "OK".into())));
    let t = Instant::now();
    f.signal(libc::SIGTERM);
    assert!(eventually(Duration::from_secs(1), || http_get(http, "/ready").is_some_and(|r| r.0 == 503)), "ready fails first");
    // During lameduck: health still OK, DNS still answers over UDP and TCP.
    assert_eq!(http_get(http, "/health"), Some((200, "OK".into())));
    assert_eq!(udp(f.v4(), Q::new("lame.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    assert_eq!(tcp(f.v4(), Q::new("lame.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    assert!(t.elapsed() < Duration::from_secs(2), "checked within the lameduck period");
    assert_eq!(f.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(t.elapsed() >= Duration::from_secs(2), "not before the lameduck period ended");
}

#[test]
fn debug_logs_each_query_of_its_block() {
    let f = Ferrite::start(".:0 {\n    debug\n    whoami\n}\n");
    udp(f.v4(), Q::new("debug.example.", Rtype::A));
    let line = f.wait_line("[DEBUG]", Duration::from_secs(5)).expect("a debug line");
    assert!(line.contains("debug.example. IN A from 127.0.0.1:"), "{line}");
    assert!(line.contains("NOERROR by plugin/whoami"), "{line}");
}
