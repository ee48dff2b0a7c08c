//! forward, cache, loop and loadbalance in the real server, against real upstreams: Knot DNS
//! serving a zone, and a misbehaving upstream of our own.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::upstreams::{free_port, Knot, Misbehaving, Mode, MOCK_ADDR};
use common::*;
use domain::base::iana::{OptRcode, Rtype};
use ferrite::message::Reply;

fn addrs(r: &Reply) -> Vec<String> {
    let mut v: Vec<String> = r.answer.iter().map(|r| r.data().to_string()).collect();
    v.sort();
    v
}

fn ttl(r: &Reply) -> u32 {
    r.answer.iter().chain(&r.authority).map(|r| r.ttl().as_secs()).min().unwrap_or(0)
}


#[test]
fn forwards_to_knot_over_udp_and_tcp() {
    let knot = Knot::start();
    let f = Ferrite::start(&format!(".:0 {{\n    forward . {}\n}}\n", knot.addr));
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert_eq!(addrs(&r), ["192.0.2.1", "192.0.2.2"]);
    assert!(r.header.aa(), "Knot's AA bit is passed on");
    let r = tcp(f.v4(), Q::new("alias.example.test.", Rtype::A));
    assert_eq!(r.answer.len(), 3, "CNAME and its target");
    let r = udp(f.v4(), Q::new("nope.example.test.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    assert_eq!(r.authority.len(), 1, "the SOA comes along");
    // kdig agrees.
    let out = run_tool("kdig", &["-p", &f.port.to_string(), "@127.0.0.1", "+tcp", "www.example.test", "A"]);
    assert!(out.contains("192.0.2.1"), "{out}");
}

#[test]
fn relayed_replies_are_the_same_passed_through_or_parsed() {
    let knot = Knot::start();
    // Nothing before forward reads replies: Knot's records go to the client as they came.
    let through = Ferrite::start(&format!(".:0 {{\n    errors\n    log\n    nsid relay\n    forward . {}\n}}\n", knot.addr));
    // cache reads replies: forward parses them (each name asked once, so each is a miss).
    let parsed = Ferrite::start(&format!(".:0 {{\n    cache\n    forward . {}\n}}\n", knot.addr));
    for (name, qtype, edns) in [
        ("WwW.Example.TEST.", Rtype::A, None),
        ("alias.EXAMPLE.test.", Rtype::A, Some(1232)),
        ("nope.example.test.", Rtype::AAAA, Some(1232)),
        ("example.test.", Rtype::NS, None),
        ("BIG.example.test.", Rtype::TXT, Some(8192)),
        ("big.example.test.", Rtype::TXT, None),
    ] {
        let mut q = Q::new(name, qtype);
        q.edns = edns;
        let a = udp_raw(through.v4(), &q.wire(), Duration::from_secs(3)).expect("a reply");
        let b = udp_raw(parsed.v4(), &q.wire(), Duration::from_secs(3)).expect("a reply");
        let (ra, rb) = (Reply::from_wire(&a).expect("parses"), Reply::from_wire(&b).expect("parses"));
        assert_eq!((ra.rcode, ra.header.flags()), (rb.rcode, rb.header.flags()), "{name}");
        assert_eq!((&ra.answer, &ra.authority, &ra.additional), (&rb.answer, &rb.authority, &rb.additional), "{name}");
        assert_eq!(ra.edns.is_some(), edns.is_some(), "{name}: OPT only for a client that sent one");
        // The question as the client wrote it, case and all.
        let asked = q.wire();
        let qlen = asked.len() - 12 - if edns.is_some() { 11 } else { 0 };
        assert_eq!(&a[12..12 + qlen], &asked[12..12 + qlen], "{name}");
        if name.starts_with("BIG") {
            assert_eq!(ra.answer.len(), 30, "a large answer whole for a client with room");
        }
        if name == "big.example.test." {
            assert!(ra.header.tc() && ra.answer.is_empty(), "truncated for a client of 512 bytes");
        }
    }
    // nsid adds its option to a reply passed through.
    let out = run_tool("kdig", &["-p", &through.port.to_string(), "@127.0.0.1", "+nsid", "www.example.test", "A"]);
    assert!(out.contains("relay") && out.contains("192.0.2.1"), "{out}");
}

#[test]
fn a_truncated_udp_answer_is_fetched_again_over_tcp() {
    let knot = Knot::start();
    let f = Ferrite::start(&format!(".:0 {{\n    forward . {}\n}}\n", knot.addr));
    // Knot truncates the big TXT RRset at our 1232 bytes; ferrite asks again over TCP and the
    // client, with room for it, gets it whole over UDP.
    let r = udp(f.v4(), Q::new("big.example.test.", Rtype::TXT).edns(8192));
    assert!(!r.header.tc());
    assert_eq!(r.answer.len(), 30);
    // A client with 512 bytes gets TC and finds the whole answer over TCP.
    let r = udp(f.v4(), Q::new("big.example.test.", Rtype::TXT));
    assert!(r.header.tc() && r.answer.is_empty());
    let r = tcp(f.v4(), Q::new("big.example.test.", Rtype::TXT));
    assert_eq!(r.answer.len(), 30);
    // The same with the misbehaving upstream, whose UDP answers are always truncated.
    let m = Misbehaving::start(Mode::Truncate);
    let f = Ferrite::start(&format!(".:0 {{\n    forward . {}\n}}\n", m.addr));
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
    assert_eq!(addrs(&r), [MOCK_ADDR]);
    assert_eq!((m.udp_queries.load(Ordering::SeqCst), m.tcp_queries.load(Ordering::SeqCst)), (1, 1));
}

#[test]
fn negative_answers_are_cached_and_served_when_the_upstream_is_gone() {
    let mut knot = Knot::start();
    let f = Ferrite::start(&format!(".:0 {{\n    cache\n    forward . {}\n}}\n", knot.addr));
    let r = udp(f.v4(), Q::new("nope.example.test.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    // RFC 2308: min(SOA TTL 3600, MINIMUM 60).
    assert!(ttl(&r) <= 60, "negative TTL {}", ttl(&r));
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::MX));
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.answer.is_empty(), "NODATA");
    knot.kill();
    let r = udp(f.v4(), Q::new("NOPE.example.test.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NXDOMAIN, "from the cache");
    assert_eq!(r.question.as_ref().expect("question").qname().to_string(), "NOPE.example.test", "the client's case");
    assert_eq!(r.authority.len(), 1);
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::MX));
    assert!(r.rcode == OptRcode::NOERROR && r.answer.is_empty(), "NODATA from the cache");
}

#[test]
fn serve_stale_answers_while_every_upstream_is_down() {
    let mut knot = Knot::start();
    let m = Misbehaving::start(Mode::Drop);
    let f = Ferrite::start(&format!(
        ".:0 {{\n    cache {{\n        success 1024 3600 1\n        serve_stale 1h\n    }}\n    forward . {} {} {{\n        max_fails 1\n        health_check 100ms\n    }}\n}}\n",
        knot.addr, m.addr
    ));
    // `short` has TTL 2: cached for 2s.
    let mut first = None;
    assert!(eventually(Duration::from_secs(10), || {
        first = udp_raw(f.v4(), &Q::new("short.example.test.", Rtype::A).wire(), Duration::from_secs(3)).and_then(|b| Reply::from_wire(&b).ok());
        first.as_ref().is_some_and(|r| !r.answer.is_empty())
    }));
    knot.kill();
    std::thread::sleep(Duration::from_millis(2500));
    let start = Instant::now();
    let r = udp(f.v4(), Q::new("short.example.test.", Rtype::A));
    assert_eq!(addrs(&r), ["192.0.2.3"]);
    assert_eq!(ttl(&r), 0, "stale answers carry TTL 0");
    assert!(start.elapsed() < Duration::from_millis(500), "served at once, not after the upstream timeouts");
}

#[test]
fn popular_names_are_prefetched() {
    let m = Misbehaving::start(Mode::Answer);
    // The mock answers with TTL 30; cap it at 4s and prefetch at 50% after 2 hits.
    let f = Ferrite::start(&format!(
        ".:0 {{\n    cache 4 {{\n        prefetch 2 1m 50%\n    }}\n    forward . {}\n}}\n",
        m.addr
    ));
    udp(f.v4(), Q::new("hot.example.test.", Rtype::A));
    assert_eq!(m.queries(), 1);
    // Hits until the TTL drops to 2s or less: then a hit starts a prefetch.
    let prefetched = eventually(Duration::from_secs(4), || {
        let r = udp(f.v4(), Q::new("hot.example.test.", Rtype::A));
        assert_eq!(addrs(&r), [MOCK_ADDR]);
        m.queries() >= 2
    });
    assert!(prefetched, "the upstream saw {} queries", m.queries());
    // Fetched before it expired: the entry is fresh again (TTL back near 4), records and all.
    assert!(eventually(Duration::from_secs(1), || {
        let r = udp(f.v4(), Q::new("hot.example.test.", Rtype::A));
        assert_eq!(addrs(&r), [MOCK_ADDR], "the refreshed entry keeps its records");
        ttl(&r) >= 3
    }));
}

#[test]
fn fail_over_when_an_upstream_dies_under_load() {
    let a = Misbehaving::start(Mode::Answer);
    let knot = Knot::start();
    let f = Ferrite::start(&format!(
        ".:0 {{\n    forward . {} {} {{\n        policy round_robin\n        max_fails 2\n        health_check 100ms\n    }}\n}}\n",
        a.addr, knot.addr
    ));
    let server = f.v4();
    // Four clients send 150 queries each; a third of the way in, one upstream goes silent.
    let handles: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..150 {
                    let name = format!("h{}.example.test.", (c * 150 + i) % 100);
                    match udp_raw(server, &Q::new(&name, Rtype::A).wire(), Duration::from_secs(3)).map(|b| Reply::from_wire(&b)) {
                        Some(Ok(r)) if r.rcode == OptRcode::NOERROR && !r.answer.is_empty() => {}
                        other => failures.push(format!("{name}: {other:?}")),
                    }
                }
                failures
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    a.set(Mode::Drop);
    let failures: Vec<String> = handles.into_iter().flat_map(|h| h.join().expect("client")).collect();
    assert!(failures.is_empty(), "{} queries failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    // Health probes mark the silent upstream down (bounded wait): then queries are answered by
    // Knot without waiting for it.
    let fast = |i: usize| {
        let start = Instant::now();
        udp(server, Q::new(&format!("h{i}.example.test."), Rtype::A));
        start.elapsed() < Duration::from_millis(100)
    };
    assert!(eventually(Duration::from_secs(5), || fast(0) && fast(1)), "the silent upstream is never marked down");
    let slow: Vec<usize> = (0..20).filter(|&i| !fast(i)).collect();
    assert!(slow.is_empty(), "slow queries after fail-over: {slow:?}");
}

#[test]
fn a_recovered_upstream_is_used_again_after_a_health_probe() {
    let m = Misbehaving::start(Mode::Drop);
    let knot = Knot::start();
    let f = Ferrite::start(&format!(
        ".:0 {{\n    forward . {} {} {{\n        policy sequential\n        max_fails 2\n        health_check 100ms\n    }}\n}}\n",
        m.addr, knot.addr
    ));
    // The first upstream is silent: answers come from Knot.
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
    assert_eq!(addrs(&r), ["192.0.2.1", "192.0.2.2"]);
    assert!(eventually(Duration::from_secs(5), || m.probes.load(Ordering::SeqCst) >= 2), "probes are sent");
    // It recovers: a probe is answered and sequential order prefers it again.
    m.set(Mode::Answer);
    assert!(
        eventually(Duration::from_secs(5), || addrs(&udp(f.v4(), Q::new("www.example.test.", Rtype::A))) == [MOCK_ADDR]),
        "the recovered upstream answers again"
    );
}

#[test]
fn over_max_concurrent_is_refused_at_once() {
    let m = Misbehaving::start(Mode::Delay);
    m.set_delay(Duration::from_millis(1500));
    let f = Ferrite::start(&format!(".:0 {{\n    forward . {} {{\n        max_concurrent 4\n    }}\n}}\n", m.addr));
    let server = f.v4();
    let handles: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                // Stagger so the first four are in flight before the rest arrive.
                std::thread::sleep(Duration::from_millis(if i < 4 { 0 } else { 300 }));
                let start = Instant::now();
                let r = udp_raw(server, &Q::new(&format!("q{i}.example.test."), Rtype::A).wire(), Duration::from_secs(5))
                    .and_then(|b| Reply::from_wire(&b).ok());
                (r.map(|r| r.rcode), start.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("client")).collect();
    let refused: Vec<_> = results.iter().filter(|(r, _)| *r == Some(OptRcode::REFUSED)).collect();
    let answered = results.iter().filter(|(r, _)| *r == Some(OptRcode::NOERROR)).count();
    assert_eq!(answered, 4, "{results:?}");
    assert_eq!(refused.len(), 8, "{results:?}");
    assert!(refused.iter().all(|(_, t)| *t < Duration::from_millis(500)), "REFUSED comes at once: {results:?}");
}

#[test]
fn except_names_are_not_forwarded() {
    let m = Misbehaving::start(Mode::Answer);
    let f = Ferrite::start(&format!(".:0 {{\n    forward . {} {{\n        except internal.test\n    }}\n}}\n", m.addr));
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
    assert_eq!(addrs(&r), [MOCK_ADDR]);
    // An excepted name goes on down the chain; with nothing after forward that is SERVFAIL,
    // as in CoreDNS, and the upstream never sees it.
    let r = udp(f.v4(), Q::new("host.internal.test.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
    assert_eq!(m.queries(), 1);
}

#[test]
fn spoofed_and_garbage_replies_are_never_answers_nor_cached() {
    let m = Misbehaving::start(Mode::SpoofThenAnswer);
    let f = Ferrite::start(&format!(".:0 {{\n    cache\n    forward . {} {{\n        max_fails 0\n    }}\n}}\n", m.addr));
    // Wrong ID, wrong question and garbage arrive first: only the real answer is taken.
    let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
    assert_eq!(addrs(&r), [MOCK_ADDR]);
    // Only garbage: no answer (SERVFAIL after the try times out), and nothing cached.
    for mode in [Mode::Garbage, Mode::WrongId, Mode::WrongQuestion] {
        m.set(mode);
        let name = format!("g{}.example.test.", mode as u8);
        let r = udp_raw(f.v4(), &Q::new(&name, Rtype::A).wire(), Duration::from_secs(6)).map(|b| Reply::from_wire(&b).expect("parses"));
        let r = r.expect("a reply");
        assert_eq!(r.rcode, OptRcode::SERVFAIL, "{mode:?}");
        assert!(r.answer.is_empty(), "{mode:?}: {r:?}");
        m.set(Mode::Answer);
        let r = udp(f.v4(), Q::new(&name, Rtype::A));
        assert_eq!(addrs(&r), [MOCK_ADDR], "{mode:?}: the next query asks again and gets the real answer");
    }
}

#[test]
fn loadbalance_shuffles_cached_answers() {
    let knot = Knot::start();
    let f = Ferrite::start(&format!(".:0 {{\n    loadbalance\n    cache\n    forward . {}\n}}\n", knot.addr));
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..40 {
        let r = udp(f.v4(), Q::new("www.example.test.", Rtype::A));
        firsts.insert(r.answer[0].data().to_string());
    }
    assert_eq!(firsts.len(), 2, "both addresses come first: {firsts:?}");
}

#[test]
fn a_forwarding_loop_stops_the_server_with_an_error() {
    let port = free_port();
    let dir = temp_dir("loop");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, format!(".:{port} {{\n    bind 127.0.0.1\n    loop\n    forward . 127.0.0.1:{port}\n}}\n")).expect("write");
    let out = std::process::Command::new(BIN)
        .args(["-conf", &conf.display().to_string()])
        .env("FERRITE_WORKERS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let pid = out.id();
    // Bounded: the loop is seen within a second; kill it after 20s whatever happens.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
    });
    let out = out.wait_with_output().expect("exits");
    drop(killer);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("plugin/loop: loop (127.0.0.1:") && text.contains("-> 127.0.0.1:"), "{text}");
    assert!(text.contains("resolv.conf"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
