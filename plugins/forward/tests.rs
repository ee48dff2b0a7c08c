use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domain::base::iana::{Class, OptRcode, Rcode, Rtype};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::plugin::{Next, Plugin};
use crate::testing::{check_contract, query, record_calls, rr, setup, Contract};

#[test]
fn contract() {
    // An upstream nobody listens on: the contract's queries either pass or fail fast.
    check_contract(&Contract {
        name: "forward",
        config: "forward example.org 127.0.0.1:9",
        passes: Some(("example.net.", Rtype::A, Class::IN)),
    });
}

/// What the scripted upstream does with one query.
#[derive(Clone)]
enum Act {
    /// Answer with these records (zone-file text) and this rcode.
    Answer(Rcode, Vec<&'static str>),
    /// Send these datagrams first (not replies to this query), then answer.
    Noise(Vec<Noise>, Rcode, Vec<&'static str>),
    /// Answer with TC set and nothing in it (UDP only).
    Truncate,
    /// Say nothing.
    Drop,
}

#[derive(Clone, Copy)]
enum Noise {
    WrongId,
    WrongQuestion,
    Garbage,
    /// The right ID and question, from another port of the upstream's address.
    WrongSource,
}

/// A scripted upstream on 127.0.0.1 (UDP and TCP on one port); `script` decides per query.
struct Mock {
    addr: SocketAddr,
    udp_queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    tcp_conns: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<(u16, u16)>>>,
}

type Script = Arc<dyn Fn(&Request, crate::message::Proto) -> Act + Send + Sync>;

fn answer_wire(query: &[u8], rcode: Rcode, records: &[&str]) -> Vec<u8> {
    let msg = Reply::from_wire(query).expect("our query parses");
    let mut r = msg.clone();
    r.header.set_qr(true);
    r.rcode = rcode.into();
    r.answer = records.iter().map(|t| rr(t)).collect();
    r.authority = Vec::new();
    r.additional = Vec::new();
    r.edns = None;
    r.to_wire(65535)
}

fn as_request(wire: &[u8]) -> Request {
    crate::message::parse_query(wire, "127.0.0.1:1".parse().expect("addr"), crate::message::Proto::Udp)
        .unwrap_or_else(|_| panic!("upstream got a query that does not parse"))
}

async fn mock(script: Script) -> Mock {
    // The kernel picks a free UDP port; TCP may hold it already, then try another (bounded).
    let mut pair = None;
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = udp.local_addr().expect("addr");
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            pair = Some((udp, addr, tcp));
            break;
        }
    }
    let (udp, addr, tcp) = pair.expect("a port free for both UDP and TCP");
    let m = Mock {
        addr,
        udp_queries: Arc::new(AtomicUsize::new(0)),
        tcp_queries: Arc::new(AtomicUsize::new(0)),
        tcp_conns: Arc::new(AtomicUsize::new(0)),
        ids: Arc::new(Mutex::new(Vec::new())),
    };
    let (s, n, ids) = (script.clone(), m.udp_queries.clone(), m.ids.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, peer)) = udp.recv_from(&mut buf).await else { return };
            n.fetch_add(1, Ordering::SeqCst);
            let q = buf[..len].to_vec();
            ids.lock().expect("lock").push((u16::from_be_bytes([q[0], q[1]]), peer.port()));
            let req = as_request(&q);
            match s(&req, crate::message::Proto::Udp) {
                Act::Answer(rc, recs) => {
                    let _ = udp.send_to(&answer_wire(&q, rc, &recs), peer).await;
                }
                Act::Noise(noise, rc, recs) => {
                    let good = answer_wire(&q, rc, &recs);
                    for k in noise {
                        let bad = match k {
                            Noise::WrongSource => {
                                let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
                                let evil = answer_wire(&q, Rcode::NOERROR, &["example.org. 300 IN A 6.6.6.6"]);
                                let _ = other.send_to(&evil, peer).await;
                                continue;
                            }
                            Noise::WrongId => {
                                let mut b = answer_wire(&q, Rcode::NOERROR, &["evil.example. 300 IN A 6.6.6.6"]);
                                b[0] ^= 0x55;
                                b
                            }
                            Noise::WrongQuestion => {
                                let mut other = Reply::from_wire(&q).expect("parses");
                                other.question = Some(domain::base::question::Question::new(
                                    "evil.example.".parse().expect("name"),
                                    Rtype::A,
                                    Class::IN,
                                ));
                                other.header.set_qr(true);
                                other.answer = vec![rr("evil.example. 300 IN A 6.6.6.6")];
                                other.to_wire(512)
                            }
                            Noise::Garbage => {
                                let mut b = q[..2].to_vec();
                                b.extend_from_slice(&[0x81, 0x80, 0xff, 0xff, 0x13, 0x37]);
                                b
                            }
                        };
                        let _ = udp.send_to(&bad, peer).await;
                    }
                    let _ = udp.send_to(&good, peer).await;
                }
                Act::Truncate => {
                    let mut b = answer_wire(&q, Rcode::NOERROR, &[]);
                    b[2] |= 0x02;
                    let _ = udp.send_to(&b, peer).await;
                }
                Act::Drop => {}
            }
        }
    });
    let (s, n, c) = (script, m.tcp_queries.clone(), m.tcp_conns.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = tcp.accept().await else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let (s, n) = (s.clone(), n.clone());
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if stream.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    let req = as_request(&q);
                    let out = match s(&req, crate::message::Proto::Tcp) {
                        Act::Answer(rc, recs) | Act::Noise(_, rc, recs) => answer_wire(&q, rc, &recs),
                        Act::Truncate => answer_wire(&q, Rcode::SERVFAIL, &[]),
                        Act::Drop => continue,
                    };
                    let mut frame = (out.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&out);
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    m
}

fn script(f: impl Fn(&Request, crate::message::Proto) -> Act + Send + Sync + 'static) -> Script {
    Arc::new(f)
}

fn a_record(_: &Request, _: crate::message::Proto) -> Act {
    Act::Answer(Rcode::NOERROR, vec!["example.org. 300 in a 192.0.2.1"])
}

async fn run(chain: &[Arc<dyn Plugin>], req: &mut Request) -> Result<Reply, ServeError> {
    Next::new(chain).serve(req).await
}

/// The answer in presentation format, names in lower case (the compressor may point an owner at
/// the question's spelling).
fn answers(r: &Reply) -> Vec<String> {
    r.answer.iter().map(|r| r.to_string().to_ascii_lowercase()).collect()
}

/// The plugin for `text`, kept typed so a test can look at its upstreams, and as a chain.
fn forward(text: &str) -> (Arc<Forward>, Vec<Arc<dyn Plugin>>) {
    let d = Directive::from_text(text).expect("directive");
    let c = parse(&d).expect("parses");
    let zones = [Name::root_bytes()];
    let mut opts = crate::plugin::ServerOptions::default();
    let ctx = SetupCtx::new(&zones, std::env::temp_dir(), &mut opts);
    let f = Arc::new(build(&c, &ctx).expect("sets up"));
    let chain: Vec<Arc<dyn Plugin>> = vec![f.clone()];
    (f, chain)
}

#[test]
fn parses_the_whole_syntax() {
    let d = Directive::from_text(
        "forward . 127.0.0.1 dns://127.0.0.2:5353 [::1]:53 tls://127.0.0.3%dns.example:8853 {
            except internal.example Corp.Example
            force_tcp
            prefer_udp
            expire 20s
            max_fails 3
            health_check 1s no_rec domain health.example
            policy round_robin
            max_concurrent 1000
            max_idle_conns 4
            tls
            next NXDOMAIN servfail
            failfast_all_unhealthy_upstreams
            failover SERVFAIL REFUSED
        }",
    )
    .expect("directive");
    let c = parse(&d).expect("parses");
    assert_eq!(c.from, ".");
    assert_eq!(c.to.len(), 4);
    assert_eq!(c.except, ["internal.example.", "corp.example."]);
    assert!(c.force_tcp && c.prefer_udp && c.failfast_all_unhealthy_upstreams);
    assert_eq!(c.max_fails, 3);
    assert_eq!(
        c.health_check,
        Some(HealthCheckConfig { interval: "1s".into(), no_rec: true, domain: Some("health.example.".into()) })
    );
    assert_eq!(c.policy, Policy::RoundRobin);
    assert_eq!(c.max_concurrent, Some(1000));
    assert_eq!(c.next, ["NXDOMAIN", "SERVFAIL"]);
    assert_eq!(c.failover, ["SERVFAIL", "REFUSED"]);
    assert_eq!(c.tls, Some(vec![]));
}

#[test]
fn rejects_bad_configurations() {
    for (text, want) in [
        ("forward .", "at least one TO"),
        ("forward . https://9.9.9.9", "https:// is not supported"),
        ("forward . 127.0.0.1 {\n failover NOERROR\n}", "NOERROR cannot be used"),
        ("forward . 127.0.0.1 {\n policy fastest\n}", "unknown policy"),
        ("forward . 127.0.0.1 {\n next NOSUCH\n}", "unknown rcode"),
        ("forward . 127.0.0.1 {\n max_concurrent 0\n}", "above zero"),
        ("forward . 127.0.0.1 {\n health_check 1s sometimes\n}", "unknown health_check option"),
        ("forward . 127.0.0.1:99999", "bad port"),
        ("forward . 127.0.0.1%name", "needs tls://"),
        ("forward . tls://127.0.0.1%a {\n tls_servername b\n}", "cannot be combined"),
    ] {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
    let sixteen: Vec<String> = (1..=16).map(|i| format!("127.0.0.{i}")).collect();
    let e = setup(&format!("forward . {}", sixteen.join(" ")), &["."]).map(|_| ()).expect_err("16 upstreams");
    assert!(e.to_string().contains("more than 15"), "{e}");
}

#[test]
fn resolv_conf_nameservers_are_the_upstreams() {
    let dir = std::env::temp_dir().join(format!("ferrite-fwd-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "# comment\nsearch example.org\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions ndots:5\nnameserver ::1\n")
        .expect("write");
    let (f, _) = forward(&format!("forward . {}", path.display()));
    let got: Vec<String> = f.upstreams.iter().map(|u| u.label.clone()).collect();
    assert_eq!(got, ["127.0.0.53:53", "[fe80::1]:53", "[::1]:53"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// As in CoreDNS, an upstream is an IP address or a file: a host name is not looked up (a static
/// binary has no NSS modules for glibc's resolver) but refused at start-up, at the directive.
#[test]
fn host_names_are_refused_with_the_position() {
    for to in ["dns.example", "dns.example:5353", "dns://dns.example", "tls://dns.example%dns.example", "localhost", "/no/such/resolv.conf"] {
        let text = format!(".:53 {{\n    forward . 127.0.0.1 {to}\n}}\n");
        let cfg = crate::config::from_corefile_str(&text, "Corefile").expect("parses: the TO is well-formed");
        let problems = crate::server::setup::build(&cfg, 53).map(|_| ()).expect_err(&text);
        let got: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("Corefile:2:5: plugin/forward: not an IP address or file: \""), "{to}: {}", got[0]);
        assert!(!problems[0].unavailable, "{to}: an error, not a missing feature");
    }
}

#[tokio::test]
async fn forwards_and_keeps_the_clients_question() {
    let m = mock(script(a_record)).await;
    let chain = setup(&format!("forward . {}", m.addr), &["."]).expect("sets up");
    let mut req = query("Example.ORG.", Rtype::A);
    req.header.set_id(777);
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.1"]);
    assert_eq!(r.question.as_ref().expect("question").qname().to_string(), "Example.ORG");
    assert!(r.edns.is_none(), "the upstream's OPT is not passed on");
}

#[test]
fn the_query_for_the_longest_name_is_whole() {
    // 255 octets on the wire: three labels of 63, one of 61, the root.
    let longest = format!("{0}.{0}.{0}.{1}.", "a".repeat(63), "b".repeat(61));
    let mut req = query(&longest, Rtype::TXT);
    req.edns = Some(crate::message::Edns { udp_size: 4096, version: 0, dnssec_ok: true, options: vec![] });
    let wire = encode_query(&req);
    assert_eq!(wire.len(), 12 + 255 + 4 + 11, "header, the longest question, an OPT record");
    let sent = as_request(&wire);
    assert_eq!(sent.qname, req.qname);
    assert_eq!(sent.qtype, Rtype::TXT);
    assert!(sent.dnssec_ok(), "the client's DO bit is asked for");
}

#[tokio::test]
async fn every_udp_query_has_a_fresh_port_and_a_random_id() {
    let m = mock(script(a_record)).await;
    let chain = setup(&format!("forward . {}", m.addr), &["."]).expect("sets up");
    for _ in 0..20 {
        let mut req = query("example.org.", Rtype::A);
        req.header.set_id(1);
        run(&chain, &mut req).await.expect("answer");
    }
    let ids = m.ids.lock().expect("lock").clone();
    let mut distinct_ids: Vec<u16> = ids.iter().map(|x| x.0).collect();
    distinct_ids.sort();
    distinct_ids.dedup();
    let mut ports: Vec<u16> = ids.iter().map(|x| x.1).collect();
    ports.sort();
    ports.dedup();
    assert!(distinct_ids.len() >= 18, "IDs repeat: {ids:?}");
    assert!(ports.len() >= 18, "source ports repeat: {ids:?}");
}

#[tokio::test]
async fn spoofed_and_garbled_datagrams_are_ignored() {
    let m = mock(script(|_, _| {
        Act::Noise(
            vec![Noise::WrongSource, Noise::WrongId, Noise::WrongQuestion, Noise::Garbage],
            Rcode::NOERROR,
            vec!["example.org. 300 in a 192.0.2.1"],
        )
    }))
    .await;
    let chain = setup(&format!("forward . {}", m.addr), &["."]).expect("sets up");
    let mut req = query("example.org.", Rtype::A);
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.1"], "only the matching reply is taken");
}

#[tokio::test]
async fn truncated_udp_is_asked_again_over_tcp() {
    let m = mock(script(|_, proto| match proto {
        crate::message::Proto::Udp => Act::Truncate,
        crate::message::Proto::Tcp => Act::Answer(Rcode::NOERROR, vec!["example.org. 300 in txt \"big\""]),
    }))
    .await;
    let chain = setup(&format!("forward . {}", m.addr), &["."]).expect("sets up");
    let mut req = query("example.org.", Rtype::TXT);
    let r = run(&chain, &mut req).await.expect("answer");
    assert!(!r.header.tc());
    assert_eq!(answers(&r), ["example.org. 300 in txt \"big\""]);
    assert_eq!(m.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(m.tcp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tcp_connections_are_reused_and_pipelined() {
    let m = mock(script(a_record)).await;
    let chain = setup(&format!("forward . {} {{\n force_tcp\n}}", m.addr), &["."]).expect("sets up");
    let chain = Arc::new(chain);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let chain = chain.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = query("example.org.", Rtype::A);
            run(&chain, &mut req).await.map(|r| answers(&r))
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("answer"), ["example.org. 300 in a 192.0.2.1"]);
    }
    assert_eq!(m.tcp_queries.load(Ordering::SeqCst), 20);
    assert_eq!(m.tcp_conns.load(Ordering::SeqCst), 1, "one connection carries every query");
    assert_eq!(m.udp_queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tcp_client_is_forwarded_over_tcp_unless_prefer_udp() {
    let m = mock(script(a_record)).await;
    for (extra, udp, tcp) in [("", 0, 1), ("prefer_udp", 1, 1)] {
        let chain = setup(&format!("forward . {} {{\n {extra}\n}}", m.addr), &["."]).expect("sets up");
        let mut req = query("example.org.", Rtype::A);
        req.proto = crate::message::Proto::Tcp;
        run(&chain, &mut req).await.expect("answer");
        assert_eq!(m.udp_queries.load(Ordering::SeqCst), udp, "{extra:?}");
        assert_eq!(m.tcp_queries.load(Ordering::SeqCst), tcp, "{extra:?}");
    }
}

#[tokio::test]
async fn over_max_concurrent_is_refused_at_once() {
    let m = mock(script(|_, _| Act::Drop)).await;
    let chain = setup(&format!("forward . {} {{\n max_concurrent 2\n max_fails 0\n}}", m.addr), &["."]).expect("sets up");
    let chain = Arc::new(chain);
    let mut held = Vec::new();
    for _ in 0..2 {
        let chain = chain.clone();
        held.push(tokio::spawn(async move {
            let mut req = query("example.org.", Rtype::A);
            run(&chain, &mut req).await.map(|_| ())
        }));
    }
    // Let both start and wait on the silent upstream.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut req = query("example.org.", Rtype::A);
    let fut = chain[0].serve(&mut req, Next::new(&[]));
    let e = futures_util::FutureExt::now_or_never(fut).expect("answered without waiting").expect_err("refused");
    assert_eq!(e.rcode, Rcode::REFUSED);
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn except_and_other_zones_go_to_next() {
    let m = mock(script(a_record)).await;
    let chain = setup(&format!("forward example.org {} {{\n except private.example.org\n}}", m.addr), &["."]).expect("sets up");
    for (name, forwarded) in [("www.example.org.", true), ("a.private.example.org.", false), ("example.net.", false)] {
        let rec = record_calls();
        let mut c = chain.clone();
        c.push(rec.clone());
        let mut req = query(name, Rtype::A);
        run(&c, &mut req).await.expect("answer");
        assert_eq!(rec.count(), usize::from(!forwarded), "{name}");
    }
    assert_eq!(m.udp_queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failover_rcodes_try_the_next_upstream() {
    let bad = mock(script(|_, _| Act::Answer(Rcode::SERVFAIL, vec![]))).await;
    let good = mock(script(a_record)).await;
    let chain = setup(
        &format!("forward . {} {} {{\n policy sequential\n failover SERVFAIL REFUSED\n}}", bad.addr, good.addr),
        &["."],
    )
    .expect("sets up");
    let mut req = query("example.org.", Rtype::A);
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.1"]);
    // Without failover, SERVFAIL from the first upstream is the answer.
    let chain = setup(&format!("forward . {} {} {{\n policy sequential\n}}", bad.addr, good.addr), &["."]).expect("sets up");
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
    // Every upstream fails over: the last answer stands.
    let chain = setup(&format!("forward . {} {{\n failover SERVFAIL\n}}", bad.addr), &["."]).expect("sets up");
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
}

#[tokio::test]
async fn next_rcode_hands_over_to_the_next_forward() {
    let nx = mock(script(|_, _| Act::Answer(Rcode::NXDOMAIN, vec![]))).await;
    let good = mock(script(a_record)).await;
    let mut chain = setup(&format!("forward . {} {{\n next NXDOMAIN\n}}", nx.addr), &["."]).expect("sets up");
    chain.extend(setup(&format!("forward . {}", good.addr), &["."]).expect("sets up"));
    let mut req = query("example.org.", Rtype::A);
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.1"]);
    // `next` with a plugin other than forward after it is ignored, as in CoreDNS.
    let mut chain = setup(&format!("forward . {} {{\n next NXDOMAIN\n}}", nx.addr), &["."]).expect("sets up");
    let rec = record_calls();
    chain.push(rec.clone());
    let r = run(&chain, &mut req).await.expect("answer");
    assert_eq!(r.rcode, OptRcode::NXDOMAIN);
    assert_eq!(rec.count(), 0);
}

#[tokio::test]
async fn policies_order_the_upstreams() {
    let a = mock(script(a_record)).await;
    let b = mock(script(a_record)).await;
    let chain = setup(&format!("forward . {} {} {{\n policy sequential\n}}", a.addr, b.addr), &["."]).expect("sets up");
    for _ in 0..4 {
        run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    }
    assert_eq!((a.udp_queries.load(Ordering::SeqCst), b.udp_queries.load(Ordering::SeqCst)), (4, 0));
    let chain = setup(&format!("forward . {} {} {{\n policy round_robin\n}}", a.addr, b.addr), &["."]).expect("sets up");
    for _ in 0..4 {
        run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    }
    assert_eq!((a.udp_queries.load(Ordering::SeqCst), b.udp_queries.load(Ordering::SeqCst)), (6, 2));
}

#[tokio::test(start_paused = true)]
async fn a_silent_upstream_fails_over_health_checks_mark_it_down_and_up_again() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let u = up.clone();
    let flaky = mock(script(move |_, _| if u.load(Ordering::SeqCst) { a_record_act() } else { Act::Drop })).await;
    let good = mock(script(|_, _| Act::Answer(Rcode::NOERROR, vec!["example.org. 300 in a 192.0.2.2"]))).await;
    let (f, chain) =
        forward(&format!("forward . {} {} {{\n policy sequential\n max_fails 2\n health_check 1s\n}}", flaky.addr, good.addr));
    // The first query waits out the silent upstream's timeout, then the second answers.
    let start = tokio::time::Instant::now();
    let r = run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.2"]);
    assert!(start.elapsed() >= MAX_TIMEOUT, "the first try waited {:?}", start.elapsed());
    // The error started probes; after two failed probes the upstream is down and skipped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(f.upstreams[0].down(2), "fails: {}", f.upstreams[0].fails());
    let before = flaky.udp_queries.load(Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    assert!(start.elapsed() < Duration::from_millis(100), "a down upstream is not tried");
    // Only probes reach the silent upstream now (at most one in that instant).
    assert!(flaky.udp_queries.load(Ordering::SeqCst) <= before + 1);
    // It comes back: the next probe is answered and queries go to it again.
    up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!f.upstreams[0].down(2), "recovered after a successful probe");
    let r = run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.1"]);
}

fn a_record_act() -> Act {
    Act::Answer(Rcode::NOERROR, vec!["example.org. 300 in a 192.0.2.1"])
}

#[tokio::test(start_paused = true)]
async fn all_down_tries_a_random_one_or_fails_fast() {
    let silent = mock(script(|_, _| Act::Drop)).await;
    for (failfast, want_tries) in [(false, true), (true, false)] {
        let extra = if failfast { "failfast_all_unhealthy_upstreams" } else { "" };
        let (f, chain) = forward(&format!("forward . {} {{\n max_fails 1\n {extra}\n}}", silent.addr));
        let _ = run(&chain, &mut query("example.org.", Rtype::A)).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(f.upstreams[0].down(1));
        let before = silent.udp_queries.load(Ordering::SeqCst);
        let e = run(&chain, &mut query("example.org.", Rtype::A)).await.expect_err("no answer");
        assert_eq!(e.rcode, Rcode::SERVFAIL);
        let tried = silent.udp_queries.load(Ordering::SeqCst) > before + 1;
        assert_eq!(tried, want_tries, "failfast {failfast}");
    }
}

#[test]
fn the_per_try_timeout_follows_the_observed_latency() {
    let u = Upstream::new("127.0.0.1:53".parse().expect("addr"), "127.0.0.1:53".into(), Connector::Tcp, StreamPool::new(Duration::from_secs(10), 0));
    assert_eq!(u.timeout(), MAX_TIMEOUT, "no sample yet");
    for _ in 0..20 {
        u.observe_rtt(Duration::from_millis(1));
    }
    assert_eq!(u.timeout(), MIN_TIMEOUT, "a fast upstream gets the floor");
    for _ in 0..20 {
        u.observe_rtt(Duration::from_millis(300));
    }
    let t = u.timeout();
    assert!(t > Duration::from_millis(300) && t < MAX_TIMEOUT, "{t:?}");
}

#[tokio::test]
async fn a_garbage_reply_over_tcp_is_an_error_not_an_answer() {
    // A TCP upstream that answers every query with a frame of junk carrying the right ID.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while s.read_exact(&mut len).await.is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let junk = [q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xde, 0xad];
                    let mut frame = (junk.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&junk);
                    let _ = s.write_all(&frame).await;
                }
            });
        }
    });
    let chain = setup(&format!("forward . {addr} {{\n force_tcp\n max_fails 0\n}}"), &["."]).expect("sets up");
    let e = run(&chain, &mut query("example.org.", Rtype::A)).await.expect_err("garbage is no answer");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
}

/// A DNS-over-TLS upstream with a certificate for `dns.test`, signed by a CA of the test's own.
#[cfg(feature = "forward-tls")]
async fn tls_upstream(dir: &std::path::Path) -> SocketAddr {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = KeyPair::generate().expect("key");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = CertificateParams::new(vec!["dns.test".to_string()]).expect("params").signed_by(&key, &issuer).expect("cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else { return };
                let mut len = [0u8; 2];
                while s.read_exact(&mut len).await.is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let out = answer_wire(&q, Rcode::NOERROR, &["example.org. 300 in a 192.0.2.53"]);
                    let mut frame = (out.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&out);
                    let _ = s.write_all(&frame).await;
                }
            });
        }
    });
    addr
}

#[cfg(feature = "forward-tls")]
#[tokio::test]
async fn dns_over_tls_upstream_with_a_verified_name() {
    let dir = std::env::temp_dir().join(format!("ferrite-fwd-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let addr = tls_upstream(&dir).await;
    let ca = dir.join("ca.pem");
    let (f, chain) = forward(&format!("forward . tls://{}%dns.test:{} {{\n tls {}\n}}", addr.ip(), addr.port(), ca.display()));
    for _ in 0..3 {
        let r = run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer over TLS");
        assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.53"]);
    }
    assert_eq!(f.upstreams[0].pool.open_count(), 1, "one TLS connection, reused");
    // The wrong name fails verification: no answer.
    let chain = setup(
        &format!("forward . tls://{} {{\n tls {}\n tls_servername other.test\n max_fails 0\n}}", addr, ca.display()),
        &["."],
    )
    .expect("sets up");
    let e = run(&chain, &mut query("example.org.", Rtype::A)).await.expect_err("name mismatch");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
    assert!(e.message.contains("tls"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_have_coredns_names_and_labels() {
    let m = crate::testing::MetricsCapture::default();
    let addr = m.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let up = mock(script(|req, _| {
                if req.qname.to_string().starts_with("nx") {
                    Act::Answer(Rcode::NXDOMAIN, vec![])
                } else {
                    Act::Drop
                }
            }))
            .await;
            let (_, chain) = forward(&format!("forward . {} {{\n max_concurrent 1\n max_fails 0\n}}", up.addr));
            run(&chain, &mut query("nx.example.org.", Rtype::A)).await.expect("answer");
            run(&chain, &mut query("nx2.example.org.", Rtype::A)).await.expect("answer");
            // One query waits on the silent upstream; the next is over max_concurrent.
            let chain = Arc::new(chain);
            let c = chain.clone();
            let held = tokio::spawn(async move { run(&c, &mut query("silent.example.org.", Rtype::A)).await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let e = run(&chain, &mut query("x.example.org.", Rtype::A)).await.expect_err("refused");
            assert_eq!(e.rcode, Rcode::REFUSED);
            held.abort();
            up.addr.to_string()
        })
    });
    let to = [("to", addr.as_str())];
    assert_eq!(m.counter(upstream::REQUESTS, &to), Some(3));
    assert_eq!(m.counter(upstream::RESPONSES, &[("to", addr.as_str()), ("rcode", "NXDOMAIN")]), Some(2));
    assert_eq!(m.histogram_count(upstream::DURATION, &[("to", addr.as_str()), ("rcode", "NXDOMAIN")]), Some(2));
    assert_eq!(m.counter(upstream::MAX_CONCURRENT_REJECTS, &[]), Some(1));
}

#[tokio::test(start_paused = true)]
async fn idle_connections_expire() {
    let m = mock(script(a_record)).await;
    let (f, chain) = forward(&format!("forward . {} {{\n force_tcp\n expire 2s\n}}", m.addr));
    run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    assert_eq!(f.upstreams[0].pool.open_count(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(f.upstreams[0].pool.open_count(), 1, "still within expire");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(f.upstreams[0].pool.open_count(), 0, "closed after 2s without a query");
    // The next query opens a new one.
    run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer");
    assert_eq!(m.tcp_conns.load(Ordering::SeqCst), 2);
}

#[cfg(feature = "forward-tls")]
#[tokio::test]
async fn tls_with_a_client_certificate_sets_up_and_answers() {
    let dir = std::env::temp_dir().join(format!("ferrite-fwd-tls-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let addr = tls_upstream(&dir).await;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("params").self_signed(&key).expect("cert");
    std::fs::write(dir.join("client.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("client.key"), key.serialize_pem()).expect("write");
    let (_, chain) = forward(&format!(
        "forward . tls://{} {{\n tls {d}/client.pem {d}/client.key {d}/ca.pem\n tls_servername dns.test\n}}",
        addr,
        d = dir.display()
    ));
    let r = run(&chain, &mut query("example.org.", Rtype::A)).await.expect("answer over TLS");
    assert_eq!(answers(&r), ["example.org. 300 in a 192.0.2.53"]);
    // A key that does not exist is a setup error naming the file.
    let e = setup(&format!("forward . tls://{addr} {{\n tls {d}/client.pem {d}/missing.key\n}}", d = dir.display()), &["."])
        .map(|_| ())
        .expect_err("missing key");
    assert!(e.to_string().contains("missing.key"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A query for `qname` A with `id`, as `UdpPool::exchange` takes it.
fn a_query(qname: &domain::base::Name<Bytes>, id: u16) -> Vec<u8> {
    let mut query = domain::base::MessageBuilder::new_vec();
    query.header_mut().set_id(id);
    let mut b = query.question();
    b.push((qname, Rtype::A, Class::IN)).expect("fits");
    b.finish()
}

/// A kept socket is rebound before each query, over IPv6 as over IPv4: the upstream sees a new
/// source port every time (the kernel draws it at random, so two may rarely coincide).
#[tokio::test]
async fn kept_sockets_leave_from_a_new_port_each_query_over_ipv6_too() {
    let Ok(up) = tokio::net::UdpSocket::bind("[::1]:0").await else { return }; // no IPv6 here
    let addr = up.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = up.recv_from(&mut buf).await {
            log.lock().expect("lock").push(from.port());
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR
            let _ = up.send_to(&reply, from).await;
        }
    });
    let pool = transport::UdpPool::default();
    let qname: domain::base::Name<Bytes> = "example.org.".parse().expect("name");
    let q = transport::Question { qname: &qname, qtype: Rtype::A, qclass: Class::IN };
    for id in 0..5u16 {
        pool.exchange(addr, &a_query(&qname, id), &q, TryLimit::from_now(Duration::from_secs(2))).await.expect("answered");
    }
    let mut ports = seen.lock().expect("lock").clone();
    assert_eq!(ports.len(), 5);
    ports.sort();
    ports.dedup();
    assert!(ports.len() >= 4, "source ports repeat: {ports:?}");
}

/// A refused UDP try (ICMP port unreachable from an upstream that is down) fails at once, not
/// when its time is up, on a fresh socket and on a kept one.
#[tokio::test]
async fn a_refused_udp_try_fails_at_once() {
    let up = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let live = up.local_addr().expect("addr");
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr")
    };
    let answer = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, from) = up.recv_from(&mut buf).expect("query");
        buf[2] |= 0x80; // QR
        up.send_to(&buf[..n], from).expect("reply");
    });
    let pool = transport::UdpPool::default();
    let qname: domain::base::Name<Bytes> = "example.org.".parse().expect("name");
    let q = transport::Question { qname: &qname, qtype: Rtype::A, qclass: Class::IN };
    let wire = a_query(&qname, 0);
    // The first exchange leaves a kept socket behind; the refused tries use it, then a new one.
    pool.exchange(live, &wire, &q, TryLimit::from_now(Duration::from_secs(5))).await.expect("answered");
    answer.join().expect("upstream thread");
    for _ in 0..2 {
        match pool.exchange(closed, &wire, &q, TryLimit::from_now(Duration::from_secs(30))).await {
            Err(transport::ExchangeError::Io(_)) => {}
            other => panic!("expected a refused try, got {other:?}"),
        }
    }
}
