//! Abuse and overload against the real server: slow and half-written TCP clients, a thousand idle
//! connections, the connection and query caps, and a flood of queries that hang.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::upstreams::{Misbehaving, Mode, MOCK_ADDR};
use common::*;
use domain::base::iana::{OptRcode, Rtype};
use ferrite::message::Reply;


/// Raises this process's soft limit on open files to its hard limit (a thousand connections
/// need more than the common 1024).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// A framed query, as a TCP client sends it.
fn frame(q: Q) -> Vec<u8> {
    let w = q.wire();
    let mut f = (w.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&w);
    f
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes; the bytes
/// received and when the connection was closed, if it was.
fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, None);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return (got, Some(Instant::now())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (got, None);
            }
            Err(_) => return (got, Some(Instant::now())),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

const READ_1S: &str = ".:0 {\n    timeouts {\n        read 1s\n    }\n    whoami\n}\n";

#[test]
fn slowloris_is_closed_within_the_read_timeout() {
    let f = Ferrite::start(READ_1S);
    let mut s = connect(f.v4());
    let bytes = frame(Q::new("slow.example.", Rtype::A));
    // A byte every 300 ms: the whole query would take about 9 s, each byte well within 1 s.
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        for b in bytes {
            if w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let start = Instant::now();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(8));
    let closed = closed.expect("the server closes a slowloris connection").duration_since(start);
    assert!(got.is_empty(), "no reply to a query never completed in time: {got:?}");
    assert!(closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500), "closed after {closed:?}");
    writer.join().expect("writer");
}

#[test]
fn half_written_messages_are_closed_within_the_read_timeout() {
    let f = Ferrite::start(READ_1S);
    let q = Q::new("half.example.", Rtype::A).wire();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one byte of the length", vec![0]),
        ("a length and part of the message", {
            let mut v = (q.len() as u16).to_be_bytes().to_vec();
            v.extend_from_slice(&q[..q.len() / 2]);
            v
        }),
        ("a length promising 65535 bytes and ten", {
            let mut v = vec![0xff, 0xff];
            v.extend_from_slice(&[0u8; 10]);
            v
        }),
        ("a full query then one byte of the next", {
            let mut v = frame(Q::new("half.example.", Rtype::A));
            v.push(0);
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut s = connect(f.v4());
        let start = Instant::now();
        s.write_all(&bytes).expect("write");
        let (got, closed) = until_closed(&mut s, Duration::from_secs(6));
        let closed = closed.unwrap_or_else(|| panic!("{what}: not closed")).duration_since(start);
        assert!(closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500), "{what}: closed after {closed:?}");
        let complete = bytes.len() > q.len() + 2;
        assert_eq!(!got.is_empty(), complete, "{what}: only a complete query is answered");
    }
}

#[test]
fn a_client_that_keeps_pipelining_is_not_cut_off() {
    // Each write ends one query and begins the next, so the buffer is never empty; each query is
    // still whole within the read timeout, and the connection must outlive several timeouts.
    let f = Ferrite::start(READ_1S);
    let mut s = connect(f.v4());
    let frames: Vec<Vec<u8>> = (0..16).map(|i| frame(Q::new("pipe.example.", Rtype::A).id(i))).collect();
    let stream: Vec<u8> = frames.concat();
    let len = frames[0].len();
    let mut w = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        // Cut the stream into pieces that straddle message boundaries, one every 200 ms (3.2 s).
        let mut at = 0;
        while at < stream.len() {
            let end = (at + len).min(stream.len());
            let cut = if end == stream.len() { end } else { end - 3 };
            let cut = cut.max(at + 1);
            w.write_all(&stream[at..cut]).expect("the connection stays open");
            at = cut;
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let ids: Vec<u16> = (0..16).map(|i| {
        let b = tcp_read(&mut s).unwrap_or_else(|| panic!("reply {i}"));
        Reply::from_wire(&b).expect("parses").header.id()
    }).collect();
    assert_eq!(ids, (0..16).collect::<Vec<u16>>());
    writer.join().expect("writer");
}

#[test]
fn a_thousand_idle_connections_neither_starve_others_nor_outlive_their_timeouts() {
    assert!(raise_nofile() >= 2200, "this test needs 2200 open files");
    let f = Ferrite::start(
        ".:0 {\n    limits {\n        tcp_connections 1100\n    }\n    timeouts {\n        read 3s\n        idle 3s\n    }\n    whoami\n}\n",
    );
    let opened = Instant::now();
    let mut conns: Vec<TcpStream> = (0..1000).map(|_| connect(f.v4())).collect();
    // Half of them ask one query first, so both timeouts are at work: the first query's (read)
    // and the one after an answer (idle).
    for (i, s) in conns.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        tcp_send(s, &Q::new("idle.example.", Rtype::A).id(i as u16).wire());
    }
    for (i, s) in conns.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        let r = Reply::from_wire(&tcp_read(s).unwrap_or_else(|| panic!("connection {i} answered"))).expect("parses");
        assert_eq!(r.header.id(), i as u16);
    }
    // While all thousand are open: UDP and new TCP clients are answered at once.
    let t = Instant::now();
    assert_eq!(udp(f.v4(), Q::new("udp.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    assert_eq!(tcp(f.v4(), Q::new("tcp.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    assert!(opened.elapsed() < Duration::from_millis(2500), "the checks ran while the connections were open");
    // Then each is closed by the server after its 3 s, none much later.
    for (i, s) in conns.iter_mut().enumerate() {
        let (_, closed) = until_closed(s, Duration::from_secs(10));
        let closed = closed.unwrap_or_else(|| panic!("connection {i} was not closed"));
        assert!(closed.duration_since(opened) < Duration::from_secs(7), "connection {i} closed late");
    }
    assert!(opened.elapsed() >= Duration::from_millis(2900), "not closed early");
    // And the server takes new connections again.
    assert_eq!(tcp(f.v4(), Q::new("after.example.", Rtype::A)).rcode, OptRcode::NOERROR);
}

#[test]
fn idle_timeout_of_limits_and_of_timeouts_both_close_on_time() {
    for conf in [
        ".:0 {\n    limits {\n        tcp_idle_timeout 1s\n    }\n    whoami\n}\n",
        ".:0 {\n    timeouts {\n        idle 1s\n    }\n    whoami\n}\n",
    ] {
        let f = Ferrite::start(conf);
        let mut s = connect(f.v4());
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        tcp_send(&mut s, &Q::new("idle.example.", Rtype::A).wire());
        assert!(tcp_read(&mut s).is_some(), "{conf}");
        let answered = Instant::now();
        let (_, closed) = until_closed(&mut s, Duration::from_secs(5));
        let after = closed.unwrap_or_else(|| panic!("{conf}: not closed")).duration_since(answered);
        assert!(after >= Duration::from_millis(900) && after < Duration::from_millis(2000), "{conf}: closed after {after:?}");
    }
}

#[test]
fn connection_cap_holds_and_frees_up() {
    let f = Ferrite::start(".:0 {\n    limits {\n        tcp_connections 20\n    }\n    timeouts {\n        read 10s\n    }\n    whoami\n}\n");
    let mut conns: Vec<TcpStream> = (0..50).map(|_| connect(f.v4())).collect();
    let mut answered = 0;
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        // A closed connection may fail the write or the read: either way it is not answered.
        let _ = s.write_all(&frame(Q::new("cap.example.", Rtype::A).id(i as u16)));
        if tcp_read(s).is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "exactly the cap is served");
    drop(conns);
    // Closed connections give their places back.
    assert!(eventually(Duration::from_secs(5), || {
        let mut s = connect(f.v4());
        s.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        let _ = s.write_all(&frame(Q::new("again.example.", Rtype::A)));
        tcp_read(&mut s).is_some()
    }));
}

#[test]
fn query_cap_of_limits_and_of_timeouts_hold() {
    for conf in [
        ".:0 {\n    limits {\n        tcp_queries 5\n    }\n    whoami\n}\n",
        ".:0 {\n    timeouts {\n        maxtcpqueries 5\n    }\n    whoami\n}\n",
    ] {
        let f = Ferrite::start(conf);
        let mut s = connect(f.v4());
        let all: Vec<u8> = (0..10).flat_map(|i| frame(Q::new("q.example.", Rtype::A).id(i))).collect();
        s.write_all(&all).expect("write");
        let (got, closed) = until_closed(&mut s, Duration::from_secs(5));
        assert!(closed.is_some(), "{conf}: closed after the last allowed query");
        let mut n = 0;
        let mut at = 0;
        while at + 2 <= got.len() {
            at += 2 + u16::from_be_bytes([got[at], got[at + 1]]) as usize;
            n += 1;
        }
        assert_eq!(n, 5, "{conf}");
    }
}

/// The sum of the samples whose line starts with `prefix`, if there is one.
fn metric(body: &str, prefix: &str) -> Option<f64> {
    let values: Vec<f64> = body
        .lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn metrics(f: &Ferrite) -> String {
    http_get(f.http[0], "/metrics").expect("metrics").1
}

#[test]
fn a_flood_of_hanging_queries_is_shed_and_the_server_recovers() {
    let up = Misbehaving::start(Mode::Drop);
    let f = Ferrite::start(&format!(
        ".:0 {{\n    prometheus 127.0.0.1:0\n    limits {{\n        in_flight 50\n    }}\n    hosts {{\n        192.0.2.9 local.test\n        fallthrough\n    }}\n    forward . {}\n}}\n",
        up.addr
    ));
    let server = f.v4();
    let rss_before = metric(&metrics(&f), "process_resident_memory_bytes").expect("rss");
    // 5,000 queries for names the upstream never answers, in well under a second.
    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood.set_nonblocking(true).expect("nonblocking");
    let started = Instant::now();
    let mut refused = 0;
    let mut buf = [0u8; 512];
    for i in 0..5000u32 {
        let q = Q::new(&format!("h{i}.hang.test."), Rtype::A).id(i as u16).wire();
        flood.send_to(&q, server).expect("send");
        if i % 50 == 49 {
            // Paced a little, so the kernel's socket buffers do not drop most of the flood.
            std::thread::sleep(Duration::from_millis(5));
        }
        while let Ok((n, _)) = flood.recv_from(&mut buf) {
            if Reply::from_wire(&buf[..n]).is_ok_and(|r| r.rcode == OptRcode::REFUSED) {
                refused += 1;
            }
        }
        if i == 2500 {
            // In the middle of the flood: a name answered locally is answered at once.
            let t = Instant::now();
            let r = udp(server, Q::new("local.test.", Rtype::A));
            assert_eq!(r.answer.len(), 1);
            assert!(t.elapsed() < Duration::from_millis(500), "local answer took {:?}", t.elapsed());
            assert_eq!(tcp(server, Q::new("local.test.", Rtype::A)).answer.len(), 1);
            // A query over the bound is refused at once over TCP too (the first queries hang
            // for forward's 5 s, so their slots are still taken).
            assert!(started.elapsed() < Duration::from_secs(4), "the flood was too slow to test this");
            let t = Instant::now();
            assert_eq!(tcp(server, Q::new("one-more.hang.test.", Rtype::A)).rcode, OptRcode::REFUSED);
            assert!(t.elapsed() < Duration::from_millis(500));
        }
    }
    let body = metrics(&f);
    let in_flight = metric(&body, "coredns_dns_requests_in_flight").expect("in-flight gauge");
    assert!(in_flight <= 50.0, "in flight {in_flight}");
    let shed = metric(&body, "coredns_dns_requests_shed_total{").expect("shed counter");
    // How many of the 5,000 reach the server depends on the kernel's buffers and the machine's
    // load; every one beyond the first 50 that does is shed.
    assert!(shed >= 500.0, "shed {shed}");
    assert!(refused > 0 && refused as f64 <= shed, "shed queries are answered REFUSED: {refused} of {shed}");
    let rss = metric(&body, "process_resident_memory_bytes").expect("rss");
    assert!(rss < rss_before + 64.0 * 1024.0 * 1024.0, "RSS {rss_before} -> {rss}");
    // The flood ends: the waiting queries time out, and the server forwards again by itself.
    assert!(eventually(Duration::from_secs(15), || metric(&metrics(&f), "coredns_dns_requests_in_flight") == Some(0.0)));
    up.set(Mode::Answer);
    assert!(eventually(Duration::from_secs(10), || {
        udp_raw(server, &Q::new("back.hang.test.", Rtype::A).wire(), Duration::from_secs(2))
            .and_then(|b| Reply::from_wire(&b).ok())
            .is_some_and(|r| r.answer.first().is_some_and(|a| a.data().to_string() == MOCK_ADDR))
    }));
}

#[test]
fn hanging_queries_pipelined_over_tcp_are_shed_too() {
    let up = Misbehaving::start(Mode::Drop);
    let f = Ferrite::start(&format!(
        ".:0 {{\n    prometheus 127.0.0.1:0\n    limits {{\n        in_flight 20\n    }}\n    hosts {{\n        192.0.2.9 local.test\n        fallthrough\n    }}\n    forward . {}\n}}\n",
        up.addr
    ));
    // 60 queries that hang, pipelined on one connection: 20 wait, 40 are refused at once.
    let mut s = connect(f.v4());
    let all: Vec<u8> = (0..60u16).flat_map(|i| frame(Q::new(&format!("p{i}.hang.test."), Rtype::A).id(i))).collect();
    s.write_all(&all).expect("write");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let t = Instant::now();
    let refused = (0..40)
        .filter_map(|_| tcp_read(&mut s))
        .filter(|b| Reply::from_wire(b).is_ok_and(|r| r.rcode == OptRcode::REFUSED))
        .count();
    assert_eq!(refused, 40);
    assert!(t.elapsed() < Duration::from_secs(1), "refused at once, took {:?}", t.elapsed());
    let body = metrics(&f);
    assert_eq!(metric(&body, "coredns_dns_requests_in_flight"), Some(20.0));
    assert_eq!(metric(&body, "coredns_dns_requests_shed_total{"), Some(40.0));
    // Meanwhile a local name is answered on another connection and over UDP.
    assert_eq!(tcp(f.v4(), Q::new("local.test.", Rtype::A)).answer.len(), 1);
    assert_eq!(udp(f.v4(), Q::new("local.test.", Rtype::A)).answer.len(), 1);
    // The 20 that waited are answered (SERVFAIL) when forward gives up, and the slots are free.
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let failed = (0..20)
        .filter_map(|_| tcp_read(&mut s))
        .filter(|b| Reply::from_wire(b).is_ok_and(|r| r.rcode == OptRcode::SERVFAIL))
        .count();
    assert_eq!(failed, 20);
    assert!(eventually(Duration::from_secs(5), || metric(&metrics(&f), "coredns_dns_requests_in_flight") == Some(0.0)));
}
