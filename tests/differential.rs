//! The file plugin against Knot DNS: both load the same zone file, get the same several hundred
//! queries (names × types, without EDNS, with EDNS, with EDNS and DO, over UDP and TCP), and
//! their replies are compared section by section. Needs `knotd` (Debian's `knot`).
//!
//! Normalised, and why: records are compared as a sorted list per section (the order of RRsets
//! in a section and of records in an RRset carries no meaning, RFC 2181 §5), and owner names in
//! lower case (names compare without case, RFC 4343; both keep the question's case for the
//! answer, checked by the file plugin's unit tests). Everything else is compared as sent: rcode,
//! AA and TC, TTLs, record data, and whether an OPT record came back.

mod common;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{tcp, udp_raw, Ferrite, Q};
use domain::base::iana::Rtype;
use ferrite::message::Reply;

/// A knotd serving `zones` (domain, absolute file path) on 127.0.0.1; killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP right now; knotd binds it a moment later.
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Knot {
    fn start(zones: &[(&str, &Path)]) -> Knot {
        let dir = common::temp_dir("knot");
        let port = free_port();
        let mut conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\ndatabase:\n    storage: {d}\nlog:\n  - target: stderr\n    any: warning\nzone:\n",
            d = dir.display()
        );
        for (z, f) in zones {
            conf.push_str(&format!(
                "  - domain: {z}\n    file: {}\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n",
                f.display()
            ));
        }
        std::fs::write(dir.join("knot.conf"), conf).expect("write knot.conf");
        let child = Command::new("knotd")
            .arg("-c")
            .arg(dir.join("knot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("knotd is needed for this test (apt-get install knot)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let k = Knot { child, addr, dir };
        // Poll, bounded, until the zone answers with its SOA.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let q = Q::new(zones[0].0, Rtype::SOA);
            if let Some(b) = udp_raw(addr, &q.wire(), Duration::from_millis(200)) {
                if Reply::from_wire(&b).is_ok_and(|r| r.answer.len() == 1) {
                    return k;
                }
            }
            assert!(Instant::now() < deadline, "knotd did not serve {} within 20s", zones[0].0);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What is compared of one reply.
fn summary(r: &Reply) -> String {
    let section = |rs: &[ferrite::message::Rr]| {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| {
                let s = r.to_string();
                match s.split_once(' ') {
                    Some((owner, rest)) => format!("{} {rest}", owner.to_ascii_lowercase()),
                    None => s,
                }
            })
            .collect();
        v.sort();
        v
    };
    format!(
        "rcode {} aa {} tc {} opt {}\nanswer {:#?}\nauthority {:#?}\nadditional {:#?}",
        r.rcode,
        r.header.aa(),
        r.header.tc(),
        r.edns.is_some(),
        section(&r.answer),
        section(&r.authority),
        section(&r.additional)
    )
}

fn ask(addr: SocketAddr, q: Q, over_tcp: bool) -> String {
    if over_tcp {
        return summary(&tcp(addr, q));
    }
    let b = udp_raw(addr, &q.wire(), Duration::from_secs(3)).unwrap_or_else(|| panic!("no reply from {addr} for {}", q.name));
    summary(&Reply::from_wire(&b).expect("reply parses"))
}

/// Fails listing every differing query, and the first few replies side by side.
fn assert_no_diffs(diffs: &[String], n: usize) {
    let heads: Vec<&str> = diffs.iter().filter_map(|d| d.lines().next()).collect();
    assert!(
        diffs.is_empty(),
        "{} of {n} replies differ:\n{}\n\n{}",
        diffs.len(),
        heads.join("\n"),
        diffs.iter().take(6).cloned().collect::<Vec<_>>().join("\n\n")
    );
}

const NAMES: &[&str] = &[
    "example.org.", "EXAMPLE.org.", "www.example.org.", "WWW.Example.ORG.", "webmixed.example.org.", "ns1.example.org.",
    "mail.example.org.", "alias.example.org.", "chain1.example.org.", "chain2.example.org.", "outside.example.org.",
    "dangling.example.org.", "loop1.example.org.", "_sip._udp.example.org.", "_ldap._tcp.example.org.", "sip.example.org.",
    "a.ent.example.org.", "ent.example.org.", "b.a.ent.example.org.", "x.wild.example.org.", "x.y.wild.example.org.",
    "wild.example.org.", "*.wild.example.org.", "exact.wild.example.org.", "x.exact.wild.example.org.",
    "sub.exact.wild.example.org.", "q.cname.example.org.", "dname.example.org.", "a.dname.example.org.",
    "nope.dname.example.org.", "a.target.example.org.", "x.dnout.example.org.", "sub.example.org.", "www.sub.example.org.",
    "ns.sub.example.org.", "secure.example.org.", "a.secure.example.org.", "naptr.example.org.", "sshfp.example.org.",
    "_443._tcp.www.example.org.", "svc.example.org.", "https.example.org.", "ptr.example.org.", "hinfo.example.org.",
    "unknown.example.org.", "inc.example.org.", "deep.inc.example.org.", "nope.example.org.", "a.b.nope.example.org.",
];

const TYPES: &[Rtype] = &[
    Rtype::A, Rtype::AAAA, Rtype::NS, Rtype::SOA, Rtype::MX, Rtype::TXT, Rtype::CNAME, Rtype::DNAME, Rtype::DS,
    Rtype::SRV, Rtype::PTR, Rtype::CAA, Rtype::NAPTR, Rtype::SSHFP, Rtype::TLSA, Rtype::SVCB, Rtype::HTTPS, Rtype::HINFO,
    Rtype::ANY, Rtype::from_int(65280),
];

#[test]
fn file_answers_as_knot_does() {
    if Command::new("knotd").arg("--version").output().is_err() {
        panic!("knotd is needed for this test: apt-get install knot");
    }
    let zone = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/file/testdata/db.example.org");
    let knot = Knot::start(&[("example.org", &zone)]);
    let ours = Ferrite::start(&format!("example.org:0 {{\n    file {}\n}}\n", zone.display()));
    let mut diffs = Vec::new();
    let mut n = 0;
    for (i, name) in NAMES.iter().enumerate() {
        for (j, &t) in TYPES.iter().enumerate() {
            // Every pair without EDNS, with EDNS, with EDNS and DO; every third one over TCP too.
            let mut variants = vec![(Q::new(name, t), false), (Q::new(name, t).edns(1232), false)];
            let mut d = Q::new(name, t).edns(4096);
            d.dnssec_ok = true;
            variants.push((d, false));
            if (i + j) % 3 == 0 {
                variants.push((Q::new(name, t).edns(1232), true));
            }
            for (q, over_tcp) in variants {
                n += 1;
                let k = ask(knot.addr, q, over_tcp);
                let f = ask(ours.v4(), q, over_tcp);
                if k != f {
                    let how = format!("edns {:?} do {} {}", q.edns, q.dnssec_ok, if over_tcp { "tcp" } else { "udp" });
                    diffs.push(format!("{name} {t} ({how}):\n--- knot\n{k}\n--- ferrite\n{f}"));
                }
            }
        }
    }
    assert!(n >= 500, "{n} queries");
    assert_no_diffs(&diffs, n);
}

const SIGNED_NAMES: &[&str] = &[
    "", "www.", "WWW.", "alias.", "out.", "a.ent.", "ent.", "c.ent.", "b.c.ent.", "x.c.ent.", "x.wild.", "a.b.wild.",
    "wild.", "exact.wild.", "x.exact.wild.", "q.cw.", "secure.", "a.secure.", "ns.secure.", "insecure.", "x.insecure.",
    "dn.", "x.dn.", "y.dn.", "x.target.", "_sip._udp.", "mail.", "z.", "zz.", "nope.", "a.nope.", "0.", "~.",
    // The NSEC3 owner of alias.nsec3.example: not a name of the zone (RFC 5155 §7.2.8).
    "a1snt4tovlocb7h53il4gumucldbuvdg.", "x.a1snt4tovlocb7h53il4gumucldbuvdg.",
];

const SIGNED_TYPES: &[Rtype] = &[
    Rtype::A, Rtype::AAAA, Rtype::NS, Rtype::SOA, Rtype::MX, Rtype::TXT, Rtype::CNAME, Rtype::DS, Rtype::DNSKEY,
    Rtype::NSEC, Rtype::NSEC3, Rtype::NSEC3PARAM, Rtype::RRSIG, Rtype::SRV, Rtype::ANY,
];

/// Signed zones (NSEC, NSEC3, NSEC3 with opt-out; plugins/file/testdata/sign.sh made them): every
/// name × type with the DO bit, over UDP, and without it for a third of them.
#[test]
fn signed_zones_answer_as_knot_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/file/testdata");
    let zones = ["signed.example", "nsec3.example", "nsec3opt.example"];
    let files: Vec<PathBuf> = zones.iter().map(|z| dir.join(format!("db.{z}"))).collect();
    let pairs: Vec<(&str, &Path)> = zones.iter().zip(&files).map(|(z, f)| (*z, f.as_path())).collect();
    let knot = Knot::start(&pairs);
    let mut corefile = String::new();
    for (z, f) in &pairs {
        corefile.push_str(&format!("{z}:0 {{\n    file {}\n}}\n", f.display()));
    }
    let ours = Ferrite::start(&corefile);
    let mut diffs = Vec::new();
    let mut n = 0;
    for zone in zones {
        for (i, label) in SIGNED_NAMES.iter().enumerate() {
            let name = format!("{label}{zone}.");
            for (j, &t) in SIGNED_TYPES.iter().enumerate() {
                let mut d = Q::new(&name, t).edns(4096);
                d.dnssec_ok = true;
                let mut variants = vec![(d, false)];
                if (i + j) % 3 == 0 {
                    variants.push((Q::new(&name, t).edns(1232), false));
                    variants.push((d, true));
                }
                for (q, over_tcp) in variants {
                    n += 1;
                    let k = ask(knot.addr, q, over_tcp);
                    let f = ask(ours.v4(), q, over_tcp);
                    if k != f {
                        let how = format!("do {} {}", q.dnssec_ok, if over_tcp { "tcp" } else { "udp" });
                        diffs.push(format!("{name} {t} ({how}):\n--- knot\n{k}\n--- ferrite\n{f}"));
                    }
                }
            }
        }
    }
    assert!(n >= 1000, "{n} queries");
    assert_no_diffs(&diffs, n);
}
