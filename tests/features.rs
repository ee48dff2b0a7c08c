//! The shared features.Corefile: its `.:1053` block served by the real binary, answering its
//! rewrite, template and acl rules as written.

mod common;

use std::path::Path;

use common::*;
use domain::base::iana::{Class, OptRcode, Rtype};

/// The `(common)` snippet and the `.:1053` block of features.Corefile, on port 0, without the
/// plugins this build does not have (forward, cache, loadbalance, file, hosts). `extra` lines
/// are added to the block.
fn features_block(extra: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corefiles/features.Corefile");
    let text = std::fs::read_to_string(&path).expect("features.Corefile");
    let mut out = String::new();
    let mut keep = false;
    let mut skip_depth = 0usize;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("(common)") || t == ".:1053 {" {
            keep = true;
        }
        if !keep {
            continue;
        }
        if skip_depth > 0 {
            skip_depth += t.matches('{').count();
            skip_depth -= t.matches('}').count();
            continue;
        }
        let word = t.split_whitespace().next().unwrap_or("");
        if ["forward", "cache", "loadbalance", "file", "hosts"].contains(&word) {
            skip_depth = t.matches('{').count().saturating_sub(t.matches('}').count());
            continue;
        }
        if t == ".:1053 {" {
            out.push_str(".:0 {\n");
            out.push_str(extra);
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "}" {
            keep = false;
        }
    }
    assert!(out.contains("rewrite name suffix") && out.contains("template IN A") && out.contains("acl {"), "{out}");
    assert!(!out.contains("forward") && !out.contains("cache"), "{out}");
    out
}

#[test]
fn features_block_answers_its_template_acl_and_rewrite_rules() {
    // whoami answers what the rewrite passes on, so its mapping back can be seen.
    let f = Ferrite::start(&features_block("    whoami\n"));
    for over_tcp in [false, true] {
        let ask = |q: Q| if over_tcp { tcp(f.v4(), q) } else { udp(f.v4(), q) };
        // template: the address in the name.
        let r = ask(Q::new("ip-10-1-2-3.example.com.", Rtype::A));
        assert_eq!(r.rcode, OptRcode::NOERROR);
        let answer: Vec<String> = r.answer.iter().map(|r| r.to_string()).collect();
        assert_eq!(answer, ["ip-10-1-2-3.example.com. 60 IN A 10.1.2.3"], "tcp={over_tcp}");
        assert!(r.header.aa());
        // acl: ANY is refused even from an allowed network.
        let r = ask(Q::new("example.org.", Rtype::ANY));
        assert_eq!(r.rcode, OptRcode::REFUSED, "tcp={over_tcp}");
        // rewrite: host.internal. is asked as host.example.org. and mapped back.
        let r = ask(Q::new("host.internal.", Rtype::A));
        assert_eq!(r.rcode, OptRcode::NOERROR);
        assert_eq!(r.question.as_ref().expect("question").qname().to_string(), "host.internal");
        let extra: Vec<String> = r.additional.iter().map(|r| r.to_string()).collect();
        assert_eq!(extra[0], "host.internal. 0 IN A 127.0.0.1", "tcp={over_tcp}: {extra:?}");
        // chaos, from the same block.
        let r = ask(Q::new("version.bind.", Rtype::TXT).class(Class::CH));
        let answer: Vec<String> = r.answer.iter().map(|r| r.to_string()).collect();
        assert_eq!(answer, ["version.bind. 0 CH TXT \"ferrite-test\""]);
    }
    // acl: ::1 is not in the allowed networks, so the final `block` refuses it.
    let r = udp(f.v6(), Q::new("ip-10-1-2-3.example.com.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::REFUSED);
    assert!(r.answer.is_empty());
    // Extended DNS Error 15 (Blocked) for an EDNS client.
    let r = udp(f.v6(), Q::new("ip-10-1-2-3.example.com.", Rtype::A).edns(1232));
    let ede = &r.edns.expect("OPT").options;
    assert_eq!(ede.iter().map(|o| (o.code, o.data.to_vec())).collect::<Vec<_>>(), [(15, vec![0, 15])]);
    // And dig sees the same as a user would.
    let port = f.port.to_string();
    let out = run_tool("dig", &["@127.0.0.1", "-p", &port, "ip-192-0-2-44.example.com", "A", "+short", "+time=3", "+tries=1"]);
    assert_eq!(out.trim(), "192.0.2.44");
    let out = run_tool("dig", &["@::1", "-p", &port, "ip-192-0-2-44.example.com", "A", "+time=3", "+tries=1"]);
    assert!(out.contains("status: REFUSED"), "{out}");
}

#[test]
fn features_block_as_written_falls_off_the_chain_without_forward() {
    // Without forward (another build's plugin), a name nothing answers is SERVFAIL, as in
    // CoreDNS when no plugin answers; the template and the acl still act.
    let f = Ferrite::start(&features_block(""));
    let r = udp(f.v4(), Q::new("www.example.net.", Rtype::A));
    assert_eq!(r.rcode, OptRcode::SERVFAIL);
    let r = udp(f.v4(), Q::new("ip-10-9-8-7.example.com.", Rtype::A));
    assert_eq!(r.answer.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["ip-10-9-8-7.example.com. 60 IN A 10.9.8.7"]);
    assert_eq!(udp(f.v4(), Q::new("example.com.", Rtype::ANY)).rcode, OptRcode::REFUSED);
}
