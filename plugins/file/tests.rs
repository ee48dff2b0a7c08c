use std::sync::Arc;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::plugin::Plugin;
use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, temp_dir_for, Case, Contract};

fn testdata(name: &str) -> String {
    format!("{}/plugins/file/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn contract() {
    let config: &'static str = Box::leak(format!("file {} example.org", testdata("db.example.org")).into_boxed_str());
    check_contract(&Contract { name: "file", config, passes: Some(("example.net.", Rtype::A, Class::IN)) });
}

fn chain() -> Vec<Arc<dyn Plugin>> {
    setup(&format!("file {} example.org", testdata("db.example.org")), &["."]).expect("zone loads")
}

const SOA: &str = "example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 3600 1209600 300";

#[test]
fn answers_like_an_authoritative_server() {
    run_cases(
        &chain(),
        &[
            Case { qname: "www.example.org.", answer: &["www.example.org. 300 IN A 192.0.2.80"], ..Case::EMPTY },
            Case { qname: "www.example.org.", qtype: Rtype::TXT, answer: &["www.example.org. 3600 IN TXT \"hello\" \"world\""], ..Case::EMPTY },
            // NODATA and NXDOMAIN: the SOA with TTL min(SOA TTL, MINIMUM).
            Case { qname: "www.example.org.", qtype: Rtype::MX, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "nope.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            // An empty non-terminal exists: NODATA, not NXDOMAIN.
            Case { qname: "a.ent.example.org.", authority: &[SOA], ..Case::EMPTY },
            // CNAME chains inside the zone are followed.
            Case {
                qname: "chain1.example.org.",
                answer: &[
                    "chain1.example.org. 3600 IN CNAME chain2.example.org.",
                    "chain2.example.org. 3600 IN CNAME alias.example.org.",
                    "alias.example.org. 3600 IN CNAME www.example.org.",
                    "www.example.org. 300 IN A 192.0.2.80",
                ],
                ..Case::EMPTY
            },
            Case { qname: "alias.example.org.", qtype: Rtype::CNAME, answer: &["alias.example.org. 3600 IN CNAME www.example.org."], ..Case::EMPTY },
            Case { qname: "outside.example.org.", answer: &["outside.example.org. IN CNAME www.example.net."], ..Case::EMPTY },
            Case {
                qname: "dangling.example.org.",
                rcode: Rcode::NXDOMAIN,
                answer: &["dangling.example.org. IN CNAME nothing.example.org."],
                authority: &[SOA],
                ..Case::EMPTY
            },
            Case {
                qname: "loop1.example.org.",
                answer: &["loop1.example.org. IN CNAME loop2.example.org.", "loop2.example.org. IN CNAME loop1.example.org."],
                ..Case::EMPTY
            },
            // Wildcards: synthesized under the closest encloser, not below an existing name.
            Case { qname: "x.wild.example.org.", answer: &["x.wild.example.org. 3600 IN A 192.0.2.100"], ..Case::EMPTY },
            Case { qname: "x.y.wild.example.org.", answer: &["x.y.wild.example.org. 3600 IN A 192.0.2.100"], ..Case::EMPTY },
            Case { qname: "x.wild.example.org.", qtype: Rtype::AAAA, authority: &[SOA], ..Case::EMPTY },
            Case { qname: "exact.wild.example.org.", answer: &["exact.wild.example.org. IN A 192.0.2.101"], ..Case::EMPTY },
            Case { qname: "x.exact.wild.example.org.", rcode: Rcode::NXDOMAIN, authority: &[SOA], ..Case::EMPTY },
            Case {
                qname: "x.wild.example.org.",
                qtype: Rtype::MX,
                answer: &["x.wild.example.org. IN MX 10 mail.example.org."],
                additional: &["mail.example.org. IN A 192.0.2.25", "mail.example.org. IN AAAA 2001:db8::25"],
                ..Case::EMPTY
            },
            Case {
                qname: "q.cname.example.org.",
                answer: &["q.cname.example.org. IN CNAME www.example.org.", "www.example.org. IN A 192.0.2.80"],
                ..Case::EMPTY
            },
            // DNAME: the DNAME and a synthesized CNAME, then the target.
            Case {
                qname: "a.dname.example.org.",
                answer: &[
                    "dname.example.org. IN DNAME target.example.org.",
                    "a.dname.example.org. IN CNAME a.target.example.org.",
                    "a.target.example.org. IN A 192.0.2.110",
                ],
                ..Case::EMPTY
            },
            Case { qname: "dname.example.org.", qtype: Rtype::DNAME, answer: &["dname.example.org. IN DNAME target.example.org."], ..Case::EMPTY },
            // Delegations: a referral with glue; DS from the parent side.
            Case {
                qname: "www.sub.example.org.",
                authority: &["sub.example.org. IN NS ns.sub.example.org.", "sub.example.org. IN NS ns.example.net."],
                additional: &["ns.sub.example.org. IN A 192.0.2.200", "ns.sub.example.org. IN AAAA 2001:db8::200"],
                ..Case::EMPTY
            },
            Case {
                qname: "secure.example.org.",
                qtype: Rtype::DS,
                answer: &["secure.example.org. IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"],
                ..Case::EMPTY
            },
            Case { qname: "sub.example.org.", qtype: Rtype::DS, authority: &[SOA], ..Case::EMPTY },
            // Additional addresses for MX and SRV targets in the zone only.
            Case {
                qname: "example.org.",
                qtype: Rtype::MX,
                answer: &["example.org. IN MX 10 mail.example.org.", "example.org. IN MX 20 mail.example.net."],
                additional: &["mail.example.org. IN A 192.0.2.25", "mail.example.org. IN AAAA 2001:db8::25"],
                ..Case::EMPTY
            },
            Case {
                qname: "_sip._udp.example.org.",
                qtype: Rtype::SRV,
                answer: &["_sip._udp.example.org. IN SRV 10 60 5060 sip.example.org."],
                additional: &["sip.example.org. IN A 192.0.2.60"],
                ..Case::EMPTY
            },
            // $INCLUDE with an origin, and $GENERATE.
            Case { qname: "inc.example.org.", answer: &["inc.example.org. IN A 192.0.2.150"], ..Case::EMPTY },
            Case { qname: "deep.inc.example.org.", qtype: Rtype::TXT, answer: &["deep.inc.example.org. IN TXT \"included\""], ..Case::EMPTY },
            Case { qname: "webmixed.example.org.", answer: &["webmixed.example.org. IN A 192.0.2.81"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn flags_case_and_outside_names() {
    let mut c = chain();
    let rec = record_calls();
    c.push(rec.clone());
    let mut req = query("WWW.Example.ORG.", Rtype::A);
    let r = serve(&c, &mut req).expect("answers");
    assert!(r.header.aa());
    assert_eq!(r.answer[0].owner().to_string(), "WWW.Example.ORG", "the question's case is kept");
    let mut req = query("www.sub.example.org.", Rtype::A);
    assert!(!serve(&c, &mut req).expect("referral").header.aa(), "a referral is not authoritative");
    let mut req = query("www.example.net.", Rtype::A);
    serve(&c, &mut req).expect("next answers");
    assert_eq!(rec.count(), 1, "names outside the zone go on");
}

#[test]
fn fallthrough_passes_nxdomain() {
    let mut c = setup(&format!("file {} example.org {{\n    fallthrough\n}}", testdata("db.example.org")), &["."]).expect("loads");
    let rec = record_calls();
    c.push(rec.clone());
    let mut req = query("nope.example.org.", Rtype::A);
    serve(&c, &mut req).expect("next answers");
    assert_eq!(rec.count(), 1);
    let mut req = query("www.example.org.", Rtype::MX);
    serve(&c, &mut req).expect("nodata");
    assert_eq!(rec.count(), 1, "NODATA does not fall through");
}

#[test]
fn errors_name_file_line_and_column() {
    let dir = temp_dir_for("file");
    let f = dir.join("db.bad");
    std::fs::write(&f, "$TTL 60\n@ IN SOA ns h 1 2 3 4 5\n$GENERATE 1-3 h$ A 192.0.2.$\nwww IN A 999.0.0.1\n").expect("write");
    let e = setup(&format!("file {} example.org", f.display()), &["."]).map(|_| ()).expect_err("bad address");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{}:4:", f.display())) && msg.contains("IPv4"), "{msg}");
    std::fs::write(&f, "www IN A 192.0.2.1\n").expect("write");
    let e = setup(&format!("file {} example.org", f.display()), &["."]).map(|_| ()).expect_err("no SOA");
    assert!(e.to_string().contains("no SOA"), "{e}");
    std::fs::write(&f, "@ IN SOA ns h 1 2 3 4 5\nwww.example.net. IN A 192.0.2.1\n").expect("write");
    let e = setup(&format!("file {} example.org", f.display()), &["."]).map(|_| ()).expect_err("out of zone");
    assert!(e.to_string().contains("out of zone"), "{e}");
    let e = setup("file /nonexistent/db example.org", &["."]).map(|_| ()).expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/db"), "{e}");
}

#[test]
fn reloads_on_a_new_serial_and_keeps_the_old_zone_on_errors() {
    let dir = temp_dir_for("file");
    let f = dir.join("db.example.org");
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.1\n").expect("write");
    let c = setup(&format!("file {} example.org {{\n    reload 20ms\n}}", f.display()), &["."]).expect("loads");
    let wait_for = |want: &'static str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut req = query("www.example.org.", Rtype::A);
            let r = serve(&c, &mut req).expect("answers");
            if r.answer.first().map(|r| r.to_string()).as_deref() == Some(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never saw {want}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for("www.example.org. 60 IN A 192.0.2.1");
    // A broken file is not served.
    std::fs::write(&f, "@ 60 IN SOA ns h 2 2 3 4 5\nwww 60 IN A bogus\n").expect("write");
    std::thread::sleep(std::time::Duration::from_millis(100));
    wait_for("www.example.org. 60 IN A 192.0.2.1");
    std::fs::write(&f, "@ 60 IN SOA ns h 3 2 3 4 5\nwww 60 IN A 192.0.2.3\n").expect("write");
    wait_for("www.example.org. 60 IN A 192.0.2.3");
}

#[test]
fn a_changed_file_replaces_the_zone_on_a_new_serial_or_with_mtime() {
    let dir = temp_dir_for("file-mtime");
    let f = dir.join("db.example.org");
    let origin: domain::base::Name<bytes::Bytes> = "example.org.".parse().expect("name");
    let www = |z: &super::Served| {
        let req = query("www.example.org.", Rtype::A);
        let mut reply = crate::message::Reply::for_request(&req);
        z.zone.load().answer(&req, &mut reply);
        reply.answer.first().map(|r| r.to_string()).unwrap_or_default()
    };
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.1\n").expect("write");
    let mut z = super::Served::load(f.clone(), origin).expect("loads");
    // The same serial with other data (and another size, so the change is seen whatever the
    // file system's time resolution): not a new version of the zone.
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.22\n").expect("write");
    z.reload();
    assert_eq!(www(&z), "www.example.org. 60 IN A 192.0.2.1");
    // With `reload ... mtime`, any change is.
    z.on_mtime = true;
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.222\n").expect("write");
    z.reload();
    assert_eq!(www(&z), "www.example.org. 60 IN A 192.0.2.222");
}

#[test]
fn reload_mtime_replaces_the_zone_without_a_new_serial() {
    let dir = temp_dir_for("file-mtime");
    let f = dir.join("db.example.org");
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.1\n").expect("write");
    let c = setup(&format!("file {} example.org {{\n    reload 20ms mtime\n}}", f.display()), &["."]).expect("loads");
    std::fs::write(&f, "@ 60 IN SOA ns h 1 2 3 4 5\nwww 60 IN A 192.0.2.200\n").expect("write");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut req = query("www.example.org.", Rtype::A);
        let r = serve(&c, &mut req).expect("answers");
        if r.answer.first().map(|r| r.to_string()).as_deref() == Some("www.example.org. 60 IN A 192.0.2.200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the changed file was never served");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(setup("file db {\n    reload 1s sometimes\n}", &["."]).is_err());
}

#[test]
fn generate_in_a_zone_file() {
    let c = setup(&format!("file {} generate.example.org", testdata("db.generate.example.org")), &["."]).expect("loads");
    run_cases(
        &c,
        &[
            Case { qname: "host-3.generate.example.org.", answer: &["host-3.generate.example.org. IN A 192.0.2.13"], ..Case::EMPTY },
            Case {
                qname: "rev2.generate.example.org.",
                qtype: Rtype::PTR,
                answer: &["rev2.generate.example.org. IN PTR host-2.generate.example.org."],
                ..Case::EMPTY
            },
        ],
    );
}

#[test]
fn generate_expands_modifiers() {
    let (text, map) = super::loader::expand_generate("a\n$GENERATE 1-2 x${0,3,x} A 10.0.0.$\nb\n").expect("expands");
    assert_eq!(text, "a\nx001 A 10.0.0.1\nx002 A 10.0.0.2\nb\n");
    assert_eq!(&map[..4], &[1, 2, 2, 3]);
    assert!(super::loader::expand_generate("$GENERATE 5-1 x A 1.2.3.4\n").is_err());
}

#[test]
fn rejects_bad_options() {
    for text in ["file", "file db {\n    reload x\n}", "file db {\n    bogus\n}"] {
        assert!(setup(text, &["."]).is_err(), "{text}");
    }
}

/// A zone whose entries straddle any cut: parentheses across lines, quoted strings holding `;`
/// and `(`, lines that take the last owner, `$ORIGIN` and `$TTL` changes, `$INCLUDE` and
/// `$GENERATE`.
const STRADDLING: &str = "$ORIGIN example.org.
@ 3600 IN SOA ns1 hostmaster ( 2024010101 ; serial (
        7200 3600
        1209600 300 )
        NS ns1
ns1 A 192.0.2.1
a 60 A 192.0.2.2
b A 192.0.2.3
txt TXT \"a ; b ( c\" \"d\\\"e\" ( \"two\"
lines )
    TXT \"the last owner\"
  ; a comment with \" and (
esc\\ aped A 192.0.2.4
bs TXT \"x\\\\\" \"y\"
$TTL 300
c A 192.0.2.5
i A 192.0.2.6
$TTL 120
  A 192.0.2.7
$ORIGIN sub.example.org.
d A 192.0.2.8
   AAAA 2001:db8::1
$ORIGIN example.org.
$INCLUDE inc.zone
$INCLUDE inc.zone other.example.org.
e A 192.0.2.9
$GENERATE 1-3 g$ A 192.0.2.$
h TXT ( \"a\" ; inside (
       \"b\" )
last A 192.0.2.10";

#[test]
fn scanning_in_pieces_reads_what_scanning_whole_reads() {
    use domain::base::Name;
    let dir = temp_dir_for("file");
    std::fs::write(dir.join("inc.zone"), "inc A 192.0.2.20\n  TXT \"included\"\n$ORIGIN x.example.org.\ny A 192.0.2.21\n").expect("write");
    let path = dir.join("db.pieces");
    let origin: Name<bytes::Bytes> = "example.org.".parse().expect("name");
    let read = |text: &str, piece: usize| {
        let mut out = Vec::new();
        super::loader::parse_text_in_pieces(text, &path, &origin, &mut out, 0, piece).map(|()| out.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    };
    let whole = read(STRADDLING, STRADDLING.len() + 1).expect("reads");
    for want in [
        "txt.example.org. 60 IN TXT \"a ; b ( c\" \"d\\\"e\" \"two\" \"lines\"",
        "txt.example.org. 60 IN TXT \"the last owner\"",
        "b.example.org. 60 IN A 192.0.2.3",
        "i.example.org. 120 IN A 192.0.2.7",
        "d.sub.example.org. 120 IN AAAA 2001:db8::1",
        "inc.example.org. 3600 IN TXT \"included\"",
        "inc.other.example.org. 3600 IN A 192.0.2.20",
        "e.example.org. 120 IN A 192.0.2.9",
        "g3.example.org. 120 IN A 192.0.2.3",
        "last.example.org. 120 IN A 192.0.2.10",
    ] {
        assert!(whole.contains(&want.to_string()), "{want} not in {whole:#?}");
    }
    for piece in [1, 2, 3, 5, 8, 13, 40, 100] {
        assert_eq!(read(STRADDLING, piece).expect("reads"), whole, "pieces of {piece}");
    }
    // Errors name the same place, however the text was cut.
    for bad in [format!("{STRADDLING}\n  A 999.0.0.1\nz A 192.0.2.1\n"), format!("{STRADDLING}\nz TXT ( \"open\n"), format!("$GENERATE 1-2\n{STRADDLING}")] {
        let whole = read(&bad, bad.len() + 1).expect_err("an error");
        assert!(whole.contains("db.pieces:"), "{whole}");
        for piece in [1, 3, 8, 40] {
            assert_eq!(read(&bad, piece).expect_err("an error"), whole, "pieces of {piece}");
        }
    }
}

const PARTS_SOA: &str = "example.org. 300 IN SOA ns.example.org. h.example.org. 1 2 3 4 300";

#[test]
fn an_rrset_read_in_parts_is_served_whole() {
    let dir = temp_dir_for("file");
    let f = dir.join("db.parts");
    // Records of one RRset apart from each other, a duplicate, names that share ancestors. The
    // filler names make what the moved and duplicate records leave behind a small part of the
    // zone, as against the whole of it without them: both ways of storing the rest are served.
    for filler in [0, 200] {
        let mut text = String::from("$TTL 300\n@ IN SOA ns h 1 2 3 4 300\nwww A 192.0.2.1\nwww 60 AAAA 2001:db8::1\nmail A 192.0.2.9\n");
        text += "www 120 A 192.0.2.2\nwww A 192.0.2.1\na.b.deep A 192.0.2.3\nx.b.deep A 192.0.2.4\nx.c.deep A 192.0.2.5\n";
        for i in 0..filler {
            text += &format!("f{i} TXT \"filler {i}\"\n");
        }
        std::fs::write(&f, text).expect("write");
        let c = setup(&format!("file {} example.org", f.display()), &["."]).expect("loads");
        run_cases(
            &c,
            &[
                // RFC 2181 §5.2: one TTL, the first read.
                Case { qname: "www.example.org.", answer: &["www.example.org. 300 IN A 192.0.2.1", "www.example.org. 300 IN A 192.0.2.2"], ..Case::EMPTY },
                Case { qname: "www.example.org.", qtype: Rtype::AAAA, answer: &["www.example.org. 60 IN AAAA 2001:db8::1"], ..Case::EMPTY },
                Case { qname: "mail.example.org.", answer: &["mail.example.org. 300 IN A 192.0.2.9"], ..Case::EMPTY },
                Case { qname: "x.b.deep.example.org.", answer: &["x.b.deep.example.org. 300 IN A 192.0.2.4"], ..Case::EMPTY },
                Case { qname: "x.c.deep.example.org.", answer: &["x.c.deep.example.org. 300 IN A 192.0.2.5"], ..Case::EMPTY },
                // Empty non-terminals, each once.
                Case { qname: "b.deep.example.org.", authority: &[PARTS_SOA], ..Case::EMPTY },
                Case { qname: "c.deep.example.org.", authority: &[PARTS_SOA], ..Case::EMPTY },
                Case { qname: "deep.example.org.", authority: &[PARTS_SOA], ..Case::EMPTY },
                Case { qname: "d.deep.example.org.", rcode: Rcode::NXDOMAIN, authority: &[PARTS_SOA], ..Case::EMPTY },
            ],
        );
    }
}

#[test]
fn more_records_at_one_name_than_a_run_counts() {
    use domain::base::{Name, Record, Ttl};
    use domain::rdata::{Aaaa, ZoneRecordData, A};
    let origin: Name<bytes::Bytes> = "example.org.".parse().expect("name");
    let owner: Name<bytes::Bytes> = "many.example.org.".parse().expect("name");
    let mut records = Vec::new();
    let soa = super::loader::parse_text_in_pieces("@ 300 IN SOA ns h 1 2 3 4 5\n", std::path::Path::new("soa"), &origin, &mut records, 0, 1 << 10);
    soa.expect("an SOA");
    // 80,000 records in one run of one owner: more than a run's count of 65,535.
    for i in 0..40_000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        records.push(Record::new(owner.clone(), Class::IN, Ttl::from_secs(60), ZoneRecordData::A(A::from_octets(10, 0, hi, lo))));
        records.push(Record::new(owner.clone(), Class::IN, Ttl::from_secs(60), ZoneRecordData::Aaaa(Aaaa::new(std::net::Ipv6Addr::from(u128::from(i))))));
    }
    let zone = super::zone::Zone::build(origin, records).expect("builds");
    assert_eq!(zone.records, 80_001);
    for t in [Rtype::A, Rtype::AAAA] {
        let req = query("many.example.org.", t);
        let mut reply = crate::message::Reply::for_request(&req);
        zone.answer(&req, &mut reply);
        assert_eq!(reply.answer.len(), 40_000, "{t}");
    }
}

#[test]
fn more_ttls_than_a_count_tells_apart() {
    use domain::base::{Name, Record, Ttl};
    use domain::rdata::{ZoneRecordData, A};
    let origin: Name<bytes::Bytes> = "example.org.".parse().expect("name");
    let mut records = Vec::new();
    super::loader::parse_text("@ 300 IN SOA ns h 1 2 3 4 5\n", std::path::Path::new("soa"), &origin, &mut records, 0).expect("an SOA");
    // 70,000 names, each with a TTL of its own, read in the reverse of the zone's order.
    for i in (0..70_000u32).rev() {
        let owner: Name<bytes::Bytes> = format!("n{i}.example.org.").parse().expect("name");
        let [_, _, hi, lo] = i.to_be_bytes();
        records.push(Record::new(owner, Class::IN, Ttl::from_secs(1000 + i), ZoneRecordData::A(A::from_octets(10, 0, hi, lo))));
    }
    let zone = super::zone::Zone::build(origin, records).expect("builds");
    for i in [0u32, 1, 9_999, 65_535, 65_536, 69_999] {
        let req = query(&format!("n{i}.example.org."), Rtype::A);
        let mut reply = crate::message::Reply::for_request(&req);
        zone.answer(&req, &mut reply);
        let [_, _, hi, lo] = i.to_be_bytes();
        assert_eq!(reply.answer.iter().map(|r| r.to_string()).collect::<Vec<_>>(), [format!("n{i}.example.org. {} IN A 10.0.{hi}.{lo}", 1000 + i)]);
    }
}

#[test]
fn a_key_is_the_labels_from_the_root_down_in_lower_case() {
    use super::zone::Key;
    let name: domain::base::Name<bytes::Bytes> = "A.b.Example.".parse().expect("name");
    let k = Key::new(&name);
    assert_eq!(k.full(), b"example\0b\0a\0");
    assert_eq!(k.prefix(0), b"");
    assert_eq!(k.prefix(1), b"example\0");
    assert_eq!(k.prefix(2), b"example\0b\0");
    assert_eq!(Key::new(&domain::base::Name::root_bytes()).full(), b"");
    let long: domain::base::Name<bytes::Bytes> = format!("{}x.", "a.".repeat(126)).parse().expect("127 labels");
    let k = Key::new(&long);
    assert_eq!(k.full().len(), 254);
    assert_eq!(k.prefix(1), b"x\0");
}
