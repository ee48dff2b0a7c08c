//! Protocol compliance of the real server over UDP and TCP, with packets built byte by byte:
//! the checks of ISC's EDNS compliance tester (genreport) and RFC 8906 ("a common operational
//! problem in DNS servers: failure to communicate"), and DNS cookies (RFC 7873, RFC 9018).

mod common;

use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use common::{run_tool, tcp_read, tcp_send, temp_dir, udp_raw, Ferrite};
use domain::base::iana::{OptRcode, Rtype};
use domain::base::message::Message;
use ferrite::message::Reply;

const ZONE: &str = "$ORIGIN example.org.
$TTL 3600
@    IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300
     IN NS ns1
     IN A 192.0.2.1
ns1  IN A 192.0.2.53
";

const COOKIE: u16 = 10;
const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

/// A server for example.org from a zone file with a TXT set too large for 512 bytes, plus
/// `extra` in its block.
fn server(extra: &str) -> Ferrite {
    let dir = temp_dir("compliance");
    let zone = dir.join("db.example.org");
    let mut text = ZONE.to_string();
    for i in 0..12 {
        text.push_str(&format!("big  IN TXT \"{i:0>60}\"\n"));
    }
    std::fs::write(&zone, text).expect("zone file");
    Ferrite::start(&format!("example.org:0 {{\n{extra}\n    file {}\n}}\n", zone.display()))
}

/// A query built byte by byte, so that every field can be wrong on purpose.
#[derive(Clone)]
struct Pkt {
    id: u16,
    /// The second 16 bits of the header (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode).
    flags: u16,
    questions: Vec<(String, u16)>,
    answer: Vec<Vec<u8>>,
    authority: Vec<Vec<u8>>,
    additional: Vec<Vec<u8>>,
}

impl Pkt {
    fn query(name: &str, qtype: u16) -> Pkt {
        Pkt { id: 0x5a5a, flags: 0x0100, questions: vec![(name.into(), qtype)], answer: vec![], authority: vec![], additional: vec![] }
    }

    fn opt(mut self, opt: Vec<u8>) -> Pkt {
        self.additional.push(opt);
        self
    }

    fn wire(&self) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(&self.id.to_be_bytes());
        w.extend_from_slice(&self.flags.to_be_bytes());
        for n in [self.questions.len(), self.answer.len(), self.authority.len(), self.additional.len()] {
            w.extend_from_slice(&(n as u16).to_be_bytes());
        }
        for (name, qtype) in &self.questions {
            w.extend_from_slice(&name_wire(name));
            w.extend_from_slice(&qtype.to_be_bytes());
            w.extend_from_slice(&1u16.to_be_bytes());
        }
        for rr in self.answer.iter().chain(&self.authority).chain(&self.additional) {
            w.extend_from_slice(rr);
        }
        w
    }
}

fn name_wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// An OPT record: UDP size, version, the flags word (DO is 0x8000) and options.
fn opt(udp: u16, version: u8, flags: u16, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut rdata = Vec::new();
    for (code, data) in options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    let mut w = vec![0];
    w.extend_from_slice(&41u16.to_be_bytes());
    w.extend_from_slice(&udp.to_be_bytes());
    w.extend_from_slice(&[0, version]);
    w.extend_from_slice(&flags.to_be_bytes());
    w.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    w.extend_from_slice(&rdata);
    w
}

fn edns0() -> Vec<u8> {
    opt(4096, 0, 0, &[])
}

/// A reply with what the checks need of its OPT record beyond `Reply`: the raw flags word.
struct Got {
    wire: Vec<u8>,
    reply: Reply,
    /// The OPT record's TTL: extended rcode, version, flags.
    opt_ttl: Option<u32>,
}

impl Got {
    fn new(wire: Vec<u8>) -> Got {
        let reply = Reply::from_wire(&wire).expect("the reply parses");
        let msg = Message::from_octets(Bytes::from(wire.clone())).expect("message");
        let mut opt_ttl = None;
        for rec in msg.additional().expect("sections") {
            let rec = rec.expect("record");
            if rec.rtype() == Rtype::OPT {
                assert!(opt_ttl.is_none(), "at most one OPT record");
                opt_ttl = Some(rec.ttl().as_secs());
            }
        }
        Got { wire, reply, opt_ttl }
    }

    fn rcode(&self) -> OptRcode {
        self.reply.rcode
    }

    fn id(&self) -> u16 {
        u16::from_be_bytes([self.wire[0], self.wire[1]])
    }

    fn cookie(&self) -> Option<Vec<u8>> {
        self.reply.edns.as_ref()?.option(COOKIE).map(|o| o.data.to_vec())
    }
}

fn over_udp(f: &Ferrite, p: &Pkt) -> Option<Got> {
    udp_raw(f.v4(), &p.wire(), Duration::from_secs(3)).map(Got::new)
}

fn over_tcp(f: &Ferrite, p: &Pkt) -> Got {
    let mut s = TcpStream::connect_timeout(&f.v4(), Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    tcp_send(&mut s, &p.wire());
    Got::new(tcp_read(&mut s).expect("a TCP reply"))
}

/// The reply over UDP and over TCP, which must agree on the rcode.
fn both(f: &Ferrite, p: &Pkt) -> [Got; 2] {
    let u = over_udp(f, p).expect("a UDP reply");
    let t = over_tcp(f, p);
    assert_eq!(u.rcode(), t.rcode(), "UDP and TCP agree");
    [u, t]
}

#[test]
fn plain_dns_gets_no_opt() {
    let f = server("");
    for g in both(&f, &Pkt::query("example.org", 1)) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        assert_eq!(g.id(), 0x5a5a);
        assert!(g.reply.header.qr() && g.reply.header.aa() && g.reply.header.rd());
        assert_eq!(g.reply.answer.len(), 1);
        assert!(g.opt_ttl.is_none(), "no OPT in the query, none in the reply");
    }
}

#[test]
fn edns0_is_answered_with_our_opt() {
    let f = server("");
    for g in both(&f, &Pkt::query("example.org", 1).opt(edns0())) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        assert_eq!(g.reply.answer.len(), 1);
        let e = g.reply.edns.as_ref().expect("OPT");
        assert_eq!((e.version, e.udp_size, e.dnssec_ok), (0, 1232, false));
        assert!(e.options.is_empty());
    }
}

#[test]
fn edns_version_1_gets_badvers_with_version_0() {
    let f = server("");
    for g in both(&f, &Pkt::query("example.org", 1).opt(opt(4096, 1, 0, &[]))) {
        assert_eq!(g.rcode(), OptRcode::BADVERS);
        assert_eq!(g.wire[3] & 0x0f, 0, "the header holds the low 4 bits of 16");
        let ttl = g.opt_ttl.expect("OPT");
        assert_eq!(ttl >> 24, 1, "the extended rcode");
        assert_eq!((ttl >> 16) & 0xff, 0, "our version");
        assert!(g.reply.answer.is_empty());
    }
}

#[test]
fn unknown_edns_option_is_ignored_and_not_echoed() {
    let f = server("");
    let p = Pkt::query("example.org", 1).opt(opt(4096, 0, 0, &[(100, b"hello"), (65001, b"")]));
    for g in both(&f, &p) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        assert_eq!(g.reply.answer.len(), 1);
        assert!(g.reply.edns.as_ref().expect("OPT").options.is_empty());
    }
}

#[test]
fn unknown_edns_flags_are_cleared_and_do_is_echoed() {
    let f = server("");
    // genreport's ednsflags sets an undefined flag (Z bits); do sets DO.
    for (flags, want) in [(0x0080u16, 0u16), (0x7fff, 0), (0x8000, 0x8000), (0xffff, 0x8000)] {
        for g in both(&f, &Pkt::query("example.org", 1).opt(opt(4096, 0, flags, &[]))) {
            assert_eq!(g.rcode(), OptRcode::NOERROR);
            assert_eq!(g.opt_ttl.expect("OPT") & 0xffff, u32::from(want), "flags {flags:#06x}");
        }
    }
}

#[test]
fn header_z_bit_is_cleared() {
    let f = server("");
    let mut p = Pkt::query("example.org", 1);
    p.flags |= 0x0040;
    for g in both(&f, &p) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        assert_eq!(g.wire[3] & 0x40, 0, "Z is zero in the reply");
    }
}

#[test]
fn a_large_answer_for_a_small_buffer_is_truncated_and_whole_over_tcp() {
    let f = server("");
    for size in [512u16, 600, 0] {
        let p = Pkt::query("big.example.org", 16).opt(opt(size, 0, 0, &[]));
        let u = over_udp(&f, &p).expect("a UDP reply");
        assert!(u.reply.header.tc(), "TC for a buffer of {size}");
        assert!(u.wire.len() <= 512.max(usize::from(size)));
        assert!(u.reply.answer.is_empty(), "no partial RRset");
        assert!(u.reply.edns.is_some(), "OPT kept in a truncated reply");
        let t = over_tcp(&f, &p);
        assert!(!t.reply.header.tc());
        assert_eq!(t.reply.answer.len(), 12);
    }
    let big = over_udp(&f, &Pkt::query("big.example.org", 16).opt(opt(4096, 0, 0, &[]))).expect("reply");
    assert!(!big.reply.header.tc() && big.reply.answer.len() == 12, "4096 bytes hold it");
}

#[test]
fn two_opt_records_are_formerr() {
    let f = server("");
    for g in both(&f, &Pkt::query("example.org", 1).opt(edns0()).opt(edns0())) {
        assert_eq!(g.rcode(), OptRcode::FORMERR);
        assert!(g.reply.answer.is_empty());
    }
}

#[test]
fn opt_outside_the_additional_section_is_formerr() {
    let f = server("");
    let mut in_answer = Pkt::query("example.org", 1);
    in_answer.answer.push(edns0());
    let mut in_authority = Pkt::query("example.org", 1);
    in_authority.authority.push(edns0());
    let mut not_at_root = Pkt::query("example.org", 1);
    let mut o = name_wire("example.org");
    o.extend_from_slice(&edns0()[1..]);
    not_at_root.additional.push(o);
    for p in [in_answer, in_authority, not_at_root] {
        for g in both(&f, &p) {
            assert_eq!(g.rcode(), OptRcode::FORMERR);
        }
    }
}

#[test]
fn qdcount_other_than_one_is_formerr() {
    let f = server("");
    let mut none = Pkt::query("example.org", 1);
    none.questions.clear();
    let mut two = Pkt::query("example.org", 1);
    two.questions.push(("ns1.example.org".into(), 1));
    for p in [none.clone(), none.opt(edns0()), two.clone(), two.opt(edns0())] {
        for g in both(&f, &p) {
            assert_eq!(g.rcode(), OptRcode::FORMERR);
            assert_eq!(g.id(), 0x5a5a);
            assert!(g.reply.answer.is_empty());
            assert_eq!(g.opt_ttl.is_some(), !p.additional.is_empty(), "OPT echoed when the query had one");
        }
    }
}

#[test]
fn unknown_opcode_is_notimp() {
    let f = server("");
    // 3 is unassigned, 15 too; NOTIFY (4) and UPDATE (5) are not implemented.
    for opcode in [3u16, 4, 5, 15] {
        let mut p = Pkt::query("example.org", 6);
        p.flags = (opcode << 11) | 0x0100;
        for g in both(&f, &p.clone().opt(edns0())).into_iter().chain(both(&f, &p)) {
            assert_eq!(g.rcode(), OptRcode::NOTIMP, "opcode {opcode}");
            assert_eq!((g.wire[2] >> 3) & 0x0f, opcode as u8, "the opcode is echoed");
            assert!(g.reply.answer.is_empty());
        }
        let g = over_udp(&f, &p.opt(edns0())).expect("reply");
        assert!(g.opt_ttl.is_some(), "OPT echoed with NOTIMP");
    }
}

#[test]
fn unknown_qtype_is_nodata_not_an_error() {
    let f = server("");
    for qtype in [1000u16, 65000, 65534] {
        for g in both(&f, &Pkt::query("example.org", qtype).opt(edns0())) {
            assert_eq!(g.rcode(), OptRcode::NOERROR, "type {qtype}");
            assert!(g.reply.answer.is_empty());
            assert!(g.reply.authority.iter().any(|r| r.rtype() == Rtype::SOA), "NODATA has the SOA");
        }
    }
}

#[test]
fn a_response_is_never_answered() {
    let f = server("");
    let mut response = Pkt::query("example.org", 1);
    response.flags |= 0x8000;
    response.id = 1;
    let query = Pkt::query("example.org", 1);
    // UDP: a response, then a query from the same socket; the first datagram back answers the query.
    let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    s.send_to(&response.wire(), f.v4()).expect("send");
    s.send_to(&query.wire(), f.v4()).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).expect("a reply to the query");
    assert_eq!(Got::new(buf[..n].to_vec()).id(), 0x5a5a);
    // TCP: the same on one connection, so the server had both before the first reply.
    let mut c = TcpStream::connect_timeout(&f.v4(), Duration::from_secs(3)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    tcp_send(&mut c, &response.wire());
    tcp_send(&mut c, &query.wire());
    assert_eq!(Got::new(tcp_read(&mut c).expect("reply")).id(), 0x5a5a);
}

/// 8 bytes of client cookie and whatever server cookie follows.
fn with_cookie(name: &str, cookie: &[u8]) -> Pkt {
    Pkt::query(name, 1).opt(opt(4096, 0, 0, &[(COOKIE, cookie)]))
}

const CLIENT: [u8; 8] = [0x24, 0x64, 0xc4, 0xab, 0xcf, 0x10, 0xc9, 0x57];

#[test]
fn a_client_cookie_gets_a_server_cookie_that_is_then_recognised() {
    let f = server("");
    for g in both(&f, &with_cookie("example.org", &CLIENT)) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        let c = g.cookie().expect("a COOKIE option");
        assert_eq!(c.len(), 24);
        assert_eq!(c[..8], CLIENT, "the client cookie comes back");
        assert_eq!(c[8..12], [1, 0, 0, 0], "RFC 9018 version 1, reserved zero");
    }
    let first = over_udp(&f, &with_cookie("example.org", &CLIENT)).expect("reply").cookie().expect("cookie");
    // Sent back: valid and young, so the same cookie comes back.
    let again = over_udp(&f, &with_cookie("example.org", &first)).expect("reply");
    assert_eq!(again.rcode(), OptRcode::NOERROR);
    assert_eq!(again.cookie().expect("cookie"), first);
    // Another client cookie with that server cookie is not valid: a fresh one comes back.
    let mut other = first.clone();
    other[0] ^= 0xff;
    let g = over_udp(&f, &with_cookie("example.org", &other)).expect("reply");
    assert_eq!(g.rcode(), OptRcode::NOERROR, "answered without require");
    let c = g.cookie().expect("cookie");
    assert_eq!(c[..8], other[..8]);
    assert_ne!(c[16..], other[16..], "a fresh hash");
    // A query without a cookie gets none.
    assert!(over_udp(&f, &Pkt::query("example.org", 1).opt(edns0())).expect("reply").cookie().is_none());
}

#[test]
fn a_malformed_cookie_option_is_formerr() {
    let f = server("");
    for len in [0usize, 1, 7, 9, 12, 15, 41, 64] {
        for g in both(&f, &with_cookie("example.org", &vec![7u8; len])) {
            assert_eq!(g.rcode(), OptRcode::FORMERR, "a COOKIE option of {len} bytes");
            assert!(g.cookie().is_none());
        }
    }
    for len in [8usize, 16, 24, 40] {
        let g = over_udp(&f, &with_cookie("example.org", &vec![7u8; len])).expect("reply");
        assert_eq!(g.rcode(), OptRcode::NOERROR, "a COOKIE option of {len} bytes is well formed");
    }
}

#[test]
fn a_cookie_only_query_gets_a_server_cookie() {
    // RFC 7873 §5.4: no question, a COOKIE option.
    let f = server("");
    let mut p = with_cookie("example.org", &CLIENT);
    p.questions.clear();
    for g in both(&f, &p) {
        assert_eq!(g.rcode(), OptRcode::NOERROR);
        assert!(g.reply.question.is_none() && g.reply.answer.is_empty());
        assert_eq!(g.cookie().expect("cookie")[..8], CLIENT);
    }
}

#[test]
fn require_answers_badcookie_over_udp_until_the_client_has_a_valid_cookie() {
    let f = server(&format!("    cookie {{\n        secret {SECRET}\n        require\n    }}"));
    let g = over_udp(&f, &with_cookie("example.org", &CLIENT)).expect("reply");
    assert_eq!(g.rcode(), OptRcode::BADCOOKIE);
    assert!(g.reply.answer.is_empty());
    let cookie = g.cookie().expect("a fresh cookie with BADCOOKIE");
    // The retry with that cookie is answered.
    let g = over_udp(&f, &with_cookie("example.org", &cookie)).expect("reply");
    assert_eq!(g.rcode(), OptRcode::NOERROR);
    assert_eq!(g.reply.answer.len(), 1);
    // A forged server cookie is refused again.
    let mut forged = cookie.clone();
    forged[23] ^= 1;
    assert_eq!(over_udp(&f, &with_cookie("example.org", &forged)).expect("reply").rcode(), OptRcode::BADCOOKIE);
    // TCP proves the address by itself; a client without cookies is answered as ever.
    assert_eq!(over_tcp(&f, &with_cookie("example.org", &CLIENT)).rcode(), OptRcode::NOERROR);
    for p in [Pkt::query("example.org", 1), Pkt::query("example.org", 1).opt(edns0())] {
        let g = over_udp(&f, &p).expect("reply");
        assert_eq!((g.rcode(), g.reply.answer.len()), (OptRcode::NOERROR, 1));
    }
}

#[test]
fn servers_sharing_a_secret_accept_each_others_cookies() {
    let cfg = |require: &str| format!("    cookie {{\n        secret {SECRET}\n{require}    }}");
    let a = server(&cfg(""));
    let b = server(&cfg("        require\n"));
    let other = server("    cookie {\n        require\n    }");
    let cookie = over_udp(&a, &with_cookie("example.org", &CLIENT)).expect("reply").cookie().expect("cookie");
    assert_eq!(over_udp(&b, &with_cookie("example.org", &cookie)).expect("reply").rcode(), OptRcode::NOERROR, "same secret");
    assert_eq!(over_udp(&other, &with_cookie("example.org", &cookie)).expect("reply").rcode(), OptRcode::BADCOOKIE, "another secret");
}

/// What dig and kdig users see.
#[test]
fn dig_and_kdig_see_good_cookies_and_compliant_edns() {
    let f = server(&format!("    cookie {{\n        secret {SECRET}\n        require\n    }}"));
    let port = f.port.to_string();
    let dig = |args: &[&str]| {
        let mut all = vec!["@127.0.0.1", "-p", &port, "+time=3", "+tries=1"];
        all.extend_from_slice(args);
        run_tool("dig", &all)
    };
    // dig sends a client cookie by default; with require it gets BADCOOKIE and retries with the
    // server cookie it got, by itself.
    let out = dig(&["example.org", "A"]);
    assert!(out.contains("status: NOERROR") && out.contains("192.0.2.1"), "{out}");
    assert!(out.contains("; COOKIE: ") && out.contains("(good)"), "{out}");
    let out = dig(&["+nocookie", "example.org", "A"]);
    assert!(out.contains("status: NOERROR") && !out.contains("COOKIE"), "{out}");
    let out = dig(&["+nocookie", "+edns=1", "+noednsneg", "example.org", "A"]);
    assert!(out.contains("status: BADVERS") && out.contains("EDNS: version: 0"), "{out}");
    let out = dig(&["+nocookie", "+ednsopt=100", "+ednsflags=0x80", "example.org", "A"]);
    assert!(out.contains("status: NOERROR") && out.contains("flags:; udp: 1232") && !out.contains("OPT=100"), "{out}");
    let out = dig(&["+nocookie", "+dnssec", "example.org", "A"]);
    assert!(out.contains("flags: do; udp: 1232"), "{out}");
    let out = dig(&["+nocookie", "+opcode=15", "+noedns", "example.org", "A"]);
    assert!(out.contains("status: NOTIMP"), "{out}");
    let out = dig(&["+nocookie", "+bufsize=512", "+ignore", "big.example.org", "TXT"]);
    assert!(out.contains(" tc") && out.contains("ANSWER: 0"), "{out}");
    // kdig shows the BADCOOKIE reply, retries with the cookie it got and shows the answer.
    let server_arg = format!("@127.0.0.1 -p {port}");
    let kdig = |args: &[&str]| {
        let mut all: Vec<&str> = server_arg.split(' ').collect();
        all.extend_from_slice(&["+timeout=3", "+retry=0"]);
        all.extend_from_slice(args);
        run_tool("kdig", &all)
    };
    let out = kdig(&["+cookie", "example.org", "A"]);
    let bad = out.find("status: BADCOOKIE").unwrap_or_else(|| panic!("{out}"));
    assert!(out[bad..].contains("status: NOERROR") && out.contains("192.0.2.1"), "{out}");
    let cookie = out.lines().rev().find_map(|l| l.trim().strip_prefix(";; COOKIE: ")).expect("kdig shows the cookie");
    assert_eq!(cookie.len(), 48, "{out}");
    // A cookie the client kept is answered at once.
    let out = kdig(&[&format!("+cookie={cookie}"), "example.org", "A"]);
    assert!(out.contains("status: NOERROR") && out.contains("192.0.2.1") && !out.contains("BADCOOKIE"), "{out}");
}
