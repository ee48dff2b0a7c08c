//! The real server over UDP and TCP, IPv4 and IPv6: answers, protocol hygiene, malformed input.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use domain::base::iana::{OptRcode, Rcode, Rtype};
use ferrite::message::Reply;

const WHOAMI: &str = ".:0 {\n    whoami\n}\n";

fn additional(r: &Reply) -> Vec<String> {
    r.additional.iter().map(|r| r.to_string()).collect()
}

#[test]
fn whoami_over_udp_and_tcp_ipv4_and_ipv6() {
    let f = Ferrite::start(WHOAMI);
    for (addr, ip) in [(f.v4(), "A 127.0.0.1"), (f.v6(), "AAAA ::1")] {
        let r = udp(addr, Q::new("whoami.example.", Rtype::A));
        assert_eq!(r.rcode, OptRcode::NOERROR);
        assert_eq!(r.header.id(), 0x4242);
        assert!(r.header.aa() && r.header.qr());
        let add = additional(&r);
        assert_eq!(add.len(), 2, "{add:?}");
        assert_eq!(add[0], format!("whoami.example. 0 IN {ip}"));
        assert!(add[1].starts_with("_udp.whoami.example. 0 IN SRV 0 0 "), "{add:?}");
        let r = tcp(addr, Q::new("whoami.example.", Rtype::A));
        let add = additional(&r);
        assert_eq!(add[0], format!("whoami.example. 0 IN {ip}"));
        assert!(add[1].starts_with("_tcp.whoami.example. 0 IN SRV 0 0 "), "{add:?}");
    }
}

#[test]
fn out_of_zone_is_refused_and_longest_zone_wins() {
    let f = Ferrite::start("example.org:0 {\n    whoami\n}\n");
    let r = udp(f.v4(), Q::new("www.example.org.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::NOERROR);
    let r = udp(f.v4(), Q::new("example.net.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::REFUSED);
    assert!(r.is_empty());
}

#[test]
fn edns_is_echoed_and_versions_checked() {
    let f = Ferrite::start(WHOAMI);
    // No OPT in, no OPT out.
    let r = udp(f.v4(), Q::new("a.example.", Rtype::A));
    assert!(r.edns.is_none());
    // OPT in: OPT out with our size, version 0, DO echoed.
    let mut q = Q::new("a.example.", Rtype::A).edns(4096);
    q.dnssec_ok = true;
    let r = udp(f.v4(), q);
    let e = r.edns.expect("OPT echoed");
    assert_eq!((e.udp_size, e.version, e.dnssec_ok), (1232, 0, true));
    // EDNS version 1: BADVERS with an OPT of version 0 (RFC 6891 §6.1.3).
    let mut wire = Q::new("a.example.", Rtype::A).edns(1232).wire();
    let n = wire.len();
    wire[n - 5] = 1; // the OPT TTL's version byte
    let b = udp_raw(f.v4(), &wire, Duration::from_secs(3)).expect("a reply");
    let r = Reply::from_wire(&b).expect("parses");
    assert_eq!(r.rcode, OptRcode::BADVERS);
    assert_eq!(r.edns.expect("OPT").version, 0);
    // An unknown option is ignored and not echoed.
    let mut wire = Q::new("a.example.", Rtype::A).edns(1232).wire();
    let n = wire.len();
    wire[n - 2..].copy_from_slice(&8u16.to_be_bytes());
    wire.extend_from_slice(&[0xfd, 0xe9, 0, 4, 1, 2, 3, 4]);
    let r = Reply::from_wire(&udp_raw(f.v4(), &wire, Duration::from_secs(3)).expect("reply")).expect("parses");
    assert_eq!(r.rcode, OptRcode::NOERROR);
    assert!(r.edns.expect("OPT").options.is_empty());
}

/// A header with the given ID, flags and counts.
fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar].iter().flat_map(|v| v.to_be_bytes()).collect()
}

const QUESTION: &[u8] = b"\x07example\x03org\x00\x00\x01\x00\x01";
const OPT: &[u8] = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";

fn rcode_of(f: &Ferrite, wire: &[u8]) -> Option<OptRcode> {
    udp_raw(f.v4(), wire, Duration::from_millis(1500)).map(|b| Reply::from_wire(&b).expect("reply parses").rcode)
}

#[test]
fn protocol_hygiene() {
    let f = Ferrite::start(WHOAMI);
    let q = |h: Vec<u8>, rest: &[&[u8]]| -> Vec<u8> { [h.as_slice()].iter().copied().chain(rest.iter().copied()).flatten().copied().collect() };
    // QDCOUNT 0 and 2.
    assert_eq!(rcode_of(&f, &header(1, 0x0100, 0, 0, 0, 0)), Some(OptRcode::FORMERR));
    assert_eq!(rcode_of(&f, &q(header(2, 0x0100, 2, 0, 0, 0), &[QUESTION, QUESTION])), Some(OptRcode::FORMERR));
    // Unknown opcode (STATUS = 2) gets NOTIMP.
    assert_eq!(rcode_of(&f, &q(header(3, 0x1100, 1, 0, 0, 0), &[QUESTION])), Some(OptRcode::NOTIMP));
    // Two OPT records, OPT in the answer section, OPT with a non-root owner: FORMERR.
    assert_eq!(rcode_of(&f, &q(header(4, 0x0100, 1, 0, 0, 2), &[QUESTION, OPT, OPT])), Some(OptRcode::FORMERR));
    assert_eq!(rcode_of(&f, &q(header(5, 0x0100, 1, 1, 0, 0), &[QUESTION, OPT])), Some(OptRcode::FORMERR));
    let bad_owner = b"\x01a\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00";
    assert_eq!(rcode_of(&f, &q(header(6, 0x0100, 1, 0, 0, 1), &[QUESTION, bad_owner])), Some(OptRcode::FORMERR));
    // OPT whose option runs past its RDATA.
    let bad_rdata = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x08";
    assert_eq!(rcode_of(&f, &q(header(7, 0x0100, 1, 0, 0, 1), &[QUESTION, bad_rdata])), Some(OptRcode::FORMERR));
    // A compression pointer to itself.
    assert_eq!(rcode_of(&f, &q(header(8, 0x0100, 1, 0, 0, 0), &[b"\xc0\x0c\x00\x01\x00\x01"])), Some(OptRcode::FORMERR));
    // A question cut short.
    assert_eq!(rcode_of(&f, &q(header(9, 0x0100, 1, 0, 0, 0), &[&QUESTION[..8]])), Some(OptRcode::FORMERR));
    // Responses (QR=1) and runt packets are never answered.
    assert_eq!(rcode_of(&f, &q(header(10, 0x8100, 1, 0, 0, 0), &[QUESTION])), None);
    assert_eq!(rcode_of(&f, &[0x12, 0x34, 0x01]), None);
    // And the server still answers.
    assert_eq!(udp(f.v4(), Q::new("example.org.", Rtype::A)).rcode, OptRcode::NOERROR);
    // The FORMERR keeps the client's ID.
    let b = udp_raw(f.v4(), &header(0xbeef, 0x0100, 0, 0, 0, 0), Duration::from_secs(2)).expect("reply");
    assert_eq!(&b[..2], &[0xbe, 0xef]);
}

/// A fixed-seed generator, so a failing flood can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn malformed(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let good = Q::new("flood.example.org.", Rtype::A).edns(1232).wire();
    match i % 8 {
        0 => good[..(rng.next() as usize % 12)].to_vec(),
        1 => header(i as u16, 0x0100, 0, 0, 0, 0),
        2 => [header(i as u16, 0x0100, 2, 0, 0, 0), QUESTION.to_vec(), QUESTION.to_vec()].concat(),
        3 => [header(i as u16, 0x0100, 1, 0, 0, 0), b"\xc0\x0c\x00\x01\x00\x01".to_vec()].concat(),
        4 => [header(i as u16, 0x0100, 1, 0, 0, 2), QUESTION.to_vec(), OPT.to_vec(), OPT.to_vec()].concat(),
        5 => {
            // The good query with random bytes flipped.
            let mut w = good.clone();
            for _ in 0..3 {
                let at = 12 + rng.next() as usize % (w.len() - 12);
                w[at] = rng.next() as u8;
            }
            w
        }
        6 => (0..(rng.next() % 600) as usize).map(|_| rng.next() as u8).collect(),
        _ => {
            let mut w = good.clone();
            w.truncate(good.len() - 1 - rng.next() as usize % 10);
            w
        }
    }
}

#[test]
fn malformed_flood_leaves_server_answering() {
    let f = Ferrite::start(WHOAMI);
    let mut rng = XorShift(0x5eed_f00d);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    for i in 0..4000 {
        let _ = sock.send_to(&malformed(&mut rng, i), f.v4());
        if i % 500 == 0 {
            assert_eq!(udp(f.v4(), Q::new("ok.example.", Rtype::A)).rcode, OptRcode::NOERROR);
        }
    }
    // The same kinds of garbage over TCP, one connection each.
    for i in 0..64 {
        let mut s = TcpStream::connect(f.v4()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        tcp_send(&mut s, &malformed(&mut rng, i));
        // Half-close so the server sees EOF and hangs up once it has answered (or dropped) it.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = tcp_read(&mut s);
    }
    // A length prefix promising more than is sent, then hang up.
    {
        let mut s = TcpStream::connect(f.v4()).expect("connect");
        use std::io::Write;
        s.write_all(&[0x01, 0x00, 0x12]).expect("write");
    }
    for addr in [f.v4(), f.v6()] {
        assert_eq!(udp(addr, Q::new("ok.example.", Rtype::A)).rcode, OptRcode::NOERROR);
        assert_eq!(tcp(addr, Q::new("ok.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    }
}

#[test]
fn tcp_pipelined_queries_all_answered() {
    let f = Ferrite::start(WHOAMI);
    let mut s = TcpStream::connect(f.v4()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let mut all = Vec::new();
    for id in 1..=20u16 {
        let w = Q::new("pipe.example.", Rtype::A).id(id).wire();
        all.extend_from_slice(&(w.len() as u16).to_be_bytes());
        all.extend_from_slice(&w);
    }
    use std::io::Write;
    s.write_all(&all).expect("write all at once");
    let mut ids: Vec<u16> = (0..20).map(|_| Reply::from_wire(&tcp_read(&mut s).expect("reply")).expect("parses").header.id()).collect();
    ids.sort();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
}

#[test]
fn dig_and_kdig_as_a_user_would() {
    let f = Ferrite::start(WHOAMI);
    let port = f.port.to_string();
    for (tool, server, extra) in [
        ("dig", "@127.0.0.1", "+notcp"),
        ("dig", "@::1", "+tcp"),
        ("kdig", "@127.0.0.1", "+notcp"),
        ("kdig", "@::1", "+tcp"),
    ] {
        let limits: &[&str] = if tool == "dig" { &["+time=3", "+tries=1"] } else { &["+timeout=3", "+retry=0"] };
        let mut args = vec![server, "-p", &port, "whoami.example", "A", extra];
        args.extend_from_slice(limits);
        let out = run_tool(tool, &args);
        assert!(out.contains("NOERROR"), "{tool} {server} {extra}:\n{out}");
        assert!(out.contains("whoami.example."), "{tool} {server} {extra}:\n{out}");
        let ip = if server == "@::1" { "::1" } else { "127.0.0.1" };
        assert!(out.contains(ip), "{tool} {server} {extra}:\n{out}");
    }
}

#[test]
fn reply_ids_and_case_are_the_clients() {
    let f = Ferrite::start(WHOAMI);
    let r = udp(f.v4(), Q::new("MiXeD.Example.", Rtype::A).id(777));
    assert_eq!(r.header.id(), 777);
    assert_eq!(r.question.expect("question").qname().to_string(), "MiXeD.Example");
    assert_eq!(r.rcode.rcode(), Rcode::NOERROR);
}

#[test]
fn tcp_idle_connections_are_closed_on_time() {
    let f = Ferrite::start(".:0 {\n    limits {\n        tcp_idle_timeout 300ms\n    }\n    whoami\n}\n");
    let mut s = TcpStream::connect(f.v4()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    tcp_send(&mut s, &Q::new("idle.example.", Rtype::A).wire());
    assert!(tcp_read(&mut s).is_some());
    let t = std::time::Instant::now();
    // Nothing more is sent: the server closes the connection (EOF) after the idle timeout.
    assert!(tcp_read(&mut s).is_none());
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(4), "closed after {waited:?}");
}

#[test]
fn tcp_connection_and_query_caps_hold() {
    let f = Ferrite::start(".:0 {\n    limits {\n        tcp_connections 2\n        tcp_queries 3\n    }\n    whoami\n}\n");
    // Per-connection cap: three queries answered, then the connection is closed.
    let mut s = TcpStream::connect(f.v4()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    for id in 0..5u16 {
        tcp_send(&mut s, &Q::new("cap.example.", Rtype::A).id(id).wire());
    }
    let answered = (0..5).filter_map(|_| tcp_read(&mut s)).count();
    assert_eq!(answered, 3);
    drop(s);
    // Connection cap: two held open, the third is closed at once; UDP still answers.
    // NOTE: the server releases the closed connection's slot asynchronously; until it has, a
    // new connection may still be over the cap, so each held one is retried (bounded).
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let mut c = TcpStream::connect(f.v4()).expect("connect");
                c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                tcp_send(&mut c, &Q::new("hold.example.", Rtype::A).wire());
                if tcp_read(&mut c).is_some() {
                    return c;
                }
                assert!(std::time::Instant::now() < deadline, "held connection never answered");
            }
        })
        .collect();
    let mut third = TcpStream::connect(f.v4()).expect("the kernel still accepts");
    third.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    tcp_send(&mut third, &Q::new("third.example.", Rtype::A).wire());
    assert!(tcp_read(&mut third).is_none(), "a connection over the cap is closed unanswered");
    assert_eq!(udp(f.v4(), Q::new("udp.example.", Rtype::A)).rcode, OptRcode::NOERROR);
    drop(hold);
    // Once the held connections close, new ones are served again (the count is released).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(f.v4()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        tcp_send(&mut c, &Q::new("again.example.", Rtype::A).wire());
        if tcp_read(&mut c).is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections never released");
    }
}

#[test]
fn chaos_and_any_over_udp_and_tcp_ipv4_and_ipv6() {
    let f = Ferrite::start(".:0 {\n    chaos ferrite-test alice@example.org bob@example.org\n    any\n    whoami\n}\n");
    for addr in [f.v4(), f.v6()] {
        for over_tcp in [false, true] {
            let ask = |q: Q| if over_tcp { tcp(addr, q) } else { udp(addr, q) };
            let r = ask(Q::new("version.bind.", Rtype::TXT).class(domain::base::iana::Class::CH));
            assert_eq!(r.rcode, OptRcode::NOERROR);
            let answer: Vec<String> = r.answer.iter().map(|r| r.to_string()).collect();
            assert_eq!(answer, ["version.bind. 0 CH TXT \"ferrite-test\""], "{addr} tcp={over_tcp}");
            let r = ask(Q::new("authors.bind.", Rtype::TXT).class(domain::base::iana::Class::CH));
            assert_eq!(r.answer.len(), 2, "{addr} tcp={over_tcp}");
            let r = ask(Q::new("example.org.", Rtype::ANY));
            let answer: Vec<String> = r.answer.iter().map(|r| r.to_string()).collect();
            assert_eq!(answer, ["example.org. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\""], "{addr} tcp={over_tcp}");
            // Other queries go on down the chain to whoami.
            let r = ask(Q::new("example.org.", Rtype::A));
            assert_eq!(r.additional.len(), 2);
        }
    }
    let port = f.port.to_string();
    let out = run_tool("dig", &["@127.0.0.1", "-p", &port, "version.bind", "TXT", "CH", "+short", "+time=3", "+tries=1"]);
    assert_eq!(out.trim(), "\"ferrite-test\"");
    let out = run_tool("kdig", &["@::1", "-p", &port, "example.org", "ANY", "+tcp", "+short", "+timeout=3", "+retry=0"]);
    assert_eq!(out.trim(), "\"ANY obsoleted\" \"See RFC 8482\"");
}

#[test]
fn large_replies_are_truncated_to_the_clients_size_over_udp_only() {
    // Sixty authors make an authors.bind answer of well over 512 bytes.
    let authors: Vec<String> = (0..60).map(|i| format!("author-number-{i:02}@example.org")).collect();
    let f = Ferrite::start(&format!(".:0 {{\n    chaos v1 {}\n}}\n", authors.join(" ")));
    let q = Q::new("authors.bind.", Rtype::TXT).class(domain::base::iana::Class::CH);
    let r = udp(f.v4(), q);
    assert!(r.header.tc(), "no EDNS: 512 bytes, truncated");
    assert!(r.answer.is_empty());
    let b = udp_raw(f.v4(), &q.edns(4096).wire(), Duration::from_secs(3)).expect("reply");
    let r = Reply::from_wire(&b).expect("parses");
    assert!(!r.header.tc(), "4096 bytes fit, {} bytes", b.len());
    assert_eq!(r.answer.len(), 60);
    let b = udp_raw(f.v4(), &q.edns(1232).wire(), Duration::from_secs(3)).expect("reply");
    assert!(b.len() <= 1232);
    let r = tcp(f.v4(), q);
    assert!(!r.header.tc());
    assert_eq!(r.answer.len(), 60);
}
