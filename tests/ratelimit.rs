//! ratelimit and amplification in the real server, over real UDP and TCP: limiting, slip with
//! TC (and a real client's retry over TCP), exemption, the query rate, max_amplification, and
//! minimal answers to ANY (RFC 8482).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use domain::base::iana::{OptRcode, Rtype};
use ferrite::message::Reply;

const ZONE: &str = "$ORIGIN example.test.\n$TTL 300\n\
    @ IN SOA ns.example.test. hostmaster.example.test. 1 7200 3600 1209600 60\n\
    @ IN NS ns.example.test.\n\
    ns IN A 127.0.0.1\n\
    www IN A 192.0.2.1\n\
    multi IN A 192.0.2.2\n\
    multi IN AAAA 2001:db8::2\n\
    multi IN MX 10 mail.example.test.\n";

/// The zone above plus `big`, eight TXT records of 100 characters, in a fresh directory.
fn zone_file() -> std::path::PathBuf {
    let dir = temp_dir("rrl");
    let mut z = ZONE.to_string();
    for i in 0..8 {
        z.push_str(&format!("big IN TXT \"{i:0>100}\"\n"));
        z.push_str(&format!("multi IN TXT \"{i:0>100}\"\n"));
    }
    let path = dir.join("db.example.test");
    std::fs::write(&path, z).expect("zone file");
    path
}

fn server(extra: &str) -> Ferrite {
    let zone = zone_file();
    Ferrite::start(&format!(
        ".:0 {{\n    prometheus 127.0.0.1:0\n{extra}    file {} example.test\n}}\n",
        zone.display()
    ))
}

#[derive(Default, Debug)]
struct Tally {
    full: usize,
    truncated: usize,
    silent: usize,
}

/// Sends `n` queries at once from `from` (an address of 127.0.0.0/8) and sorts the replies.
fn burst(server: SocketAddr, from: &str, name: &str, n: u16) -> Tally {
    let s = UdpSocket::bind(format!("{from}:0")).expect("bind");
    for id in 0..n {
        s.send_to(&Q::new(name, Rtype::A).id(id).wire(), server).expect("send");
    }
    let mut t = Tally::default();
    let mut buf = [0u8; 4096];
    // Replies come at once or never: collect until 500 ms pass without one.
    s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    let mut seen = 0;
    while let Ok((len, _)) = s.recv_from(&mut buf) {
        let r = Reply::from_wire(&buf[..len]).expect("parses");
        if r.header.tc() {
            assert!(r.answer.is_empty() && r.authority.is_empty(), "a slipped reply has no records");
            assert_eq!(r.question.as_ref().map(|q| q.qname().to_string()), Some(name.trim_end_matches('.').to_string()));
            t.truncated += 1;
        } else {
            assert_eq!(r.answer.len(), 1, "{r:?}");
            t.full += 1;
        }
        seen += 1;
    }
    t.silent = usize::from(n) - seen;
    t
}

fn metrics(f: &Ferrite) -> String {
    http_get(f.http[0], "/metrics").expect("metrics").1
}

/// The sum of the samples of `name` whose labels contain `label` ("" for all).
fn metric(body: &str, name: &str, label: &str) -> f64 {
    body.lines().filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[test]
fn identical_responses_are_limited_with_slip_and_tcp_is_not() {
    let f = server("    ratelimit 5 {\n        window 2\n        slip 2\n    }\n");
    let t = burst(f.v4(), "127.0.0.1", "www.example.test.", 40);
    // A burst of 5, perhaps one more if the burst took over 200 ms; of the rest about every
    // second one slipped, the others dropped.
    assert!((5..=7).contains(&t.full), "{t:?}");
    let limited = 40 - t.full;
    assert!(t.truncated >= limited / 2 - 1 && t.truncated <= limited / 2 + 1, "{t:?}");
    assert!(t.silent >= limited / 2 - 1, "{t:?}");
    // Another name is another bucket.
    assert_eq!(udp(f.v4(), Q::new("ns.example.test.", Rtype::A)).answer.len(), 1);
    // TCP is not limited.
    for _ in 0..10 {
        assert_eq!(tcp(f.v4(), Q::new("www.example.test.", Rtype::A)).answer.len(), 1);
    }
    let body = metrics(&f);
    assert!(metric(&body, "coredns_ratelimit_dropped_total", "") >= t.silent as f64, "{body}");
    assert!(metric(&body, "coredns_ratelimit_slipped_total", "") >= t.truncated as f64);
}

#[test]
fn a_real_client_gets_its_answer_over_tcp_after_a_slip() {
    let f = server("    ratelimit 1 {\n        window 10\n        slip 1\n    }\n");
    let port = f.port.to_string();
    // Use up the bucket: every UDP answer after the first is slipped.
    let t = burst(f.v4(), "127.0.0.1", "www.example.test.", 5);
    assert_eq!((t.full, t.truncated), (1, 4), "{t:?}");
    let out = run_tool("dig", &["@127.0.0.1", "-p", &port, "www.example.test", "A", "+tries=1", "+time=3"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("192.0.2.1"), "{out}");
}

/// A query for `name` A with an EDNS COOKIE option holding `cookie` (client, or client and server).
fn cookie_query(name: &str, id: u16, cookie: &[u8]) -> Vec<u8> {
    let mut w = Q::new(name, Rtype::A).id(id).wire();
    // ARCOUNT 1, then the OPT record: root owner, type 41, 1232 bytes, no flags, one option.
    w[11] = 1;
    w.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    w.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
    w.extend_from_slice(&[0, 10]);
    w.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    w.extend_from_slice(cookie);
    w
}

/// The COOKIE option's data in a reply (client and server cookie), if there is one.
fn reply_cookie(wire: &[u8]) -> Option<Vec<u8>> {
    let at = wire.windows(4).position(|w| w == [0, 10, 0, 24])?;
    wire.get(at + 4..at + 28).map(<[u8]>::to_vec)
}

#[test]
fn a_client_with_a_valid_server_cookie_is_not_limited() {
    let f = server("    ratelimit 1 {\n        window 10\n        slip 1\n    }\n");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let client = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut buf = [0u8; 4096];
    let mut ask = |cookie: &[u8], id: u16| {
        s.send_to(&cookie_query("www.example.test.", id, cookie), f.v4()).expect("send");
        let n = s.recv(&mut buf).expect("a reply: slip 1 truncates every limited one");
        let r = Reply::from_wire(&buf[..n]).expect("reply parses");
        (r.header.tc(), reply_cookie(&buf[..n]))
    };
    // A client cookie alone proves nothing: after the first answer every reply is slipped,
    // each with a fresh server cookie.
    let (tc, _) = ask(&client, 1);
    assert!(!tc, "the first query is within the rate");
    let (tc, full) = ask(&client, 2);
    assert!(tc, "the second is over the rate and slipped");
    let full = full.expect("the slipped reply carries a server cookie");
    assert_eq!(&full[..8], &client);
    // Sending that server cookie back proves the address: never limited.
    for id in 3..23 {
        let (tc, _) = ask(&full, id);
        assert!(!tc, "query {id} with a valid server cookie was limited");
    }
}

#[test]
fn exempt_clients_are_never_limited() {
    let f = server("    ratelimit 2 {\n        exempt 127.0.0.2/32\n        slip 0\n    }\n");
    let exempt = burst(f.v4(), "127.0.0.2", "www.example.test.", 40);
    assert_eq!(exempt.full, 40, "{exempt:?}");
    // The same /24, not exempt: limited.
    let other = burst(f.v4(), "127.0.0.3", "www.example.test.", 40);
    assert!(other.full <= 3 && other.truncated == 0, "{other:?}");
}

#[test]
fn queries_over_the_request_rate_are_dropped() {
    let f = server("    ratelimit {\n        requests_per_second 10\n        window 1\n    }\n");
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    // Different names and answers: only the query rate applies.
    for i in 0..50u16 {
        let name = if i % 2 == 0 { "www.example.test." } else { "ns.example.test." };
        s.send_to(&Q::new(name, Rtype::A).id(i).wire(), f.v4()).expect("send");
    }
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while s.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert!((10..=12).contains(&answered), "{answered} answered");
    assert!(metric(&metrics(&f), "coredns_ratelimit_dropped_total", "reason=\"requests\"") >= 38.0);
    // Within the rate again a second later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while udp_raw(f.v4(), &Q::new("www.example.test.", Rtype::A).wire(), Duration::from_millis(300)).is_none() {
        assert!(Instant::now() < deadline, "never answered again");
    }
}

#[test]
fn replies_over_the_amplification_ratio_are_truncated_over_udp_only() {
    let f = server("    ratelimit {\n        max_amplification 5\n    }\n");
    let q = Q::new("big.example.test.", Rtype::TXT).edns(4096);
    let query_len = q.wire().len();
    let r = udp(f.v4(), q);
    assert!(r.header.tc() && r.answer.is_empty(), "{r:?}");
    let full = tcp(f.v4(), q);
    assert_eq!(full.answer.len(), 8);
    assert!(full.answer.len() * 100 > 5 * query_len, "the full answer is over the ratio");
    // A small answer is well within it.
    let small = udp(f.v4(), Q::new("www.example.test.", Rtype::A).edns(4096));
    assert!(!small.header.tc() && small.answer.len() == 1);
    assert_eq!(metric(&metrics(&f), "coredns_ratelimit_amplification_truncated_total", ""), 1.0);
}

/// The cap holds on the final wire form: with the OPT record, a server cookie and an NSID option
/// added after ratelimit looked at the reply, a UDP reply is within RATIO times its query, or is
/// the truncated question alone.
#[test]
fn the_amplification_cap_holds_on_the_wire_with_opt_cookie_and_nsid() {
    for ratio in ["1.5", "2", "2.5", "3", "4"] {
        let f = server(&format!("    nsid a-rather-long-name-for-this-server-instance\n    ratelimit {{\n        max_amplification {ratio}\n    }}\n"));
        let ratio: f64 = ratio.parse().expect("ratio");
        for (i, name) in ["www.example.test.", "multi.example.test.", "ns.example.test.", "nope.example.test."].iter().enumerate() {
            for nsid in [false, true] {
                let mut q = cookie_query(name, i as u16, &[9, 8, 7, 6, 5, 4, 3, 2]);
                if nsid {
                    // An empty NSID option (code 3) after the cookie: the reply gets our NSID.
                    // The OPT's RDLENGTH sits before the cookie option (4 + 8 bytes).
                    let at = q.len() - 12 - 2;
                    let rdlen = u16::from_be_bytes([q[at], q[at + 1]]) + 4;
                    q[at..at + 2].copy_from_slice(&rdlen.to_be_bytes());
                    q.extend_from_slice(&[0, 3, 0, 0]);
                }
                let wire = udp_raw(f.v4(), &q, Duration::from_secs(2)).expect("a reply");
                let r = Reply::from_wire(&wire).expect("reply parses");
                let cap = (q.len() as f64 * ratio) as usize;
                assert!(
                    wire.len() <= cap || (r.header.tc() && r.answer.is_empty() && r.authority.is_empty()),
                    "ratio {ratio}, {name} nsid {nsid}: {} bytes for a {}-byte query: {r:?}",
                    wire.len(),
                    q.len()
                );
            }
        }
    }
}

#[test]
fn any_is_answered_minimally_by_file_and_any() {
    // file: one RRset of the name (RFC 8482 §4.2), not all four types with the big TXT set.
    let f = server("");
    let q = Q::new("multi.example.test.", Rtype::ANY).edns(4096);
    let wire = udp_raw(f.v4(), &q.wire(), Duration::from_secs(3)).expect("reply");
    let r = Reply::from_wire(&wire).expect("parses");
    assert_eq!(r.rcode, OptRcode::NOERROR);
    let types: std::collections::BTreeSet<String> = r.answer.iter().map(|a| a.rtype().to_string()).collect();
    assert_eq!(types.len(), 1, "{types:?}");
    assert!(wire.len() < 200, "{} bytes", wire.len());
    // any: one HINFO for every name.
    let zone = zone_file();
    let f = Ferrite::start(&format!(".:0 {{\n    any\n    file {} example.test\n}}\n", zone.display()));
    let r = udp(f.v4(), Q::new("multi.example.test.", Rtype::ANY).edns(4096));
    assert_eq!(r.answer.len(), 1);
    assert_eq!(r.answer[0].rtype(), Rtype::HINFO);
}
