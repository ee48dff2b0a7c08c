use std::sync::Arc;

use domain::base::iana::{Class, Rcode, Rtype};

use crate::message::Edns;
use crate::plugin::Plugin;
use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "template",
        config: "template IN A example.org {\n    answer \"{{ .Name }} 60 IN A 192.0.2.1\"\n}",
        passes: Some(("example.net.", Rtype::A, Class::IN)),
    });
}

/// The template's handlers followed by a stub that answers `fallthrough.` names.
fn chain(text: &str, zones: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let mut c = setup(text, zones).unwrap_or_else(|e| panic!("{text}: {e}"));
    c.push(zone(&["passed.example. 60 IN A 192.0.2.99", "web.example. 60 IN A 192.0.2.80"]));
    c
}

/// Several template directives in one block, in order.
fn chain_of(texts: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let mut c: Vec<Arc<dyn Plugin>> = texts.iter().flat_map(|t| setup(t, &["."]).unwrap_or_else(|e| panic!("{t}: {e}"))).collect();
    c.push(zone(&["passed.example. 60 IN A 192.0.2.99"]));
    c
}

const FEATURES: &str = r#"template IN A example.com {
    match "^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]example[.]com[.]$"
    answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    fallthrough
}"#;

#[test]
fn the_shared_features_corefile_template() {
    let mut c = setup(FEATURES, &["."]).expect("sets up");
    c.push(zone(&["www.example.com. 60 IN A 192.0.2.5"]));
    run_cases(
        &c,
        &[
            Case { qname: "ip-10-1-2-3.example.com.", answer: &["ip-10-1-2-3.example.com. 60 IN A 10.1.2.3"], ..Case::EMPTY },
            Case { qname: "IP-192-0-2-1.Example.COM.", answer: &["ip-192-0-2-1.example.com. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            // No match: fallthrough to the next plugin.
            Case { qname: "www.example.com.", answer: &["www.example.com. 60 IN A 192.0.2.5"], ..Case::EMPTY },
            // Another type or zone: not the template's; the stub knows no such name.
            Case { qname: "ip-10-1-2-3.example.com.", qtype: Rtype::AAAA, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
            Case { qname: "www.example.com.", qtype: Rtype::AAAA, ..Case::EMPTY },
            Case { qname: "ip-10-1-2-3.example.net.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    let mut req = query("ip-1-2-3-4.example.com.", Rtype::A);
    let reply = serve(&c, &mut req).expect("answers");
    assert!(reply.header.aa(), "templated replies are authoritative");
    // An address out of range renders, but is not a record: SERVFAIL.
    let mut req = query("ip-999-2-3-4.example.com.", Rtype::A);
    assert_eq!(serve(&c, &mut req).expect_err("bad record").rcode, Rcode::SERVFAIL);
}

#[test]
fn readme_everything_nxdomain_and_invalid() {
    run_cases(
        &chain("template ANY ANY {\n    rcode NXDOMAIN\n}", &["."]),
        &[
            Case { qname: "example.org.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
            Case { qname: "version.bind.", qtype: Rtype::TXT, qclass: Class::CH, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    let c = chain(
        "template ANY ANY invalid {\n    rcode NXDOMAIN\n    authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n}",
        &["."],
    );
    run_cases(
        &c,
        &[
            Case {
                qname: "www.invalid.",
                rcode: Rcode::NXDOMAIN,
                authority: &["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"],
                ..Case::EMPTY
            },
            Case {
                qname: "www.invalid.",
                qclass: Class::CH,
                rcode: Rcode::NXDOMAIN,
                authority: &["invalid. 60 CH SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"],
                ..Case::EMPTY
            },
            Case { qname: "passed.example.", answer: &["passed.example. 60 IN A 192.0.2.99"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn readme_search_path_completions() {
    let soa = &["example.com.dc1.example.com. 60 IN SOA ns.example.com. hostmaster.example.com. 1 60 60 60 60"];
    let by_zone = chain(
        "template IN ANY example.com.dc1.example.com {\n    rcode NXDOMAIN\n    authority \"{{ .Zone }} 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)\"\n}",
        &["."],
    );
    run_cases(
        &by_zone,
        &[
            Case { qname: "www.example.com.dc1.example.com.", rcode: Rcode::NXDOMAIN, authority: soa, ..Case::EMPTY },
            Case { qname: "www.example.com.dc1.example.com.", qtype: Rtype::MX, rcode: Rcode::NXDOMAIN, authority: soa, ..Case::EMPTY },
        ],
    );
    let by_regex = chain(
        "template IN ANY example.com {\n    match \"example\\.com\\.(dc1\\.example\\.com\\.)$\"\n    rcode NXDOMAIN\n    authority \"{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.{{ index .Match 1 }} (1 60 60 60 60)\"\n    fallthrough\n}",
        &["."],
    );
    run_cases(
        &by_regex,
        &[
            Case {
                qname: "www.example.com.dc1.example.com.",
                rcode: Rcode::NXDOMAIN,
                authority: &["dc1.example.com. 60 IN SOA ns.dc1.example.com. hostmaster.dc1.example.com. 1 60 60 60 60"],
                ..Case::EMPTY
            },
            // In the zone, not matched, falls through: the stub has no such name.
            Case { qname: "www.example.com.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
}

#[test]
fn readme_forward_and_reverse_addresses() {
    let c = chain_of(&[
        "template IN A example {\n    match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n    answer \"{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n    fallthrough\n}",
        "template IN PTR in-addr.arpa {\n    match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$\n    answer \"{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example.\"\n}",
    ]);
    run_cases(
        &c,
        &[
            Case { qname: "ip-10-0-0-1.example.", answer: &["ip-10-0-0-1.example. 60 IN A 10.0.0.1"], ..Case::EMPTY },
            // A wildcard: any name below the address name.
            Case { qname: "www.ip-10-0-0-1.example.", answer: &["www.ip-10-0-0-1.example. 60 IN A 10.0.0.1"], ..Case::EMPTY },
            Case { qname: "passed.example.", answer: &["passed.example. 60 IN A 192.0.2.99"], ..Case::EMPTY },
            Case {
                qname: "1.0.0.10.in-addr.arpa.",
                qtype: Rtype::PTR,
                answer: &["1.0.0.10.in-addr.arpa. 60 IN PTR ip-10-0-0-1.example."],
                ..Case::EMPTY
            },
            // No fallthrough on the PTR template: a name it does not match is NXDOMAIN.
            Case { qname: "in-addr.arpa.", qtype: Rtype::PTR, rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
}

#[test]
fn readme_several_patterns_and_sections() {
    let c = chain(
        "template IN A example {\n    match \"^ip-(?P<a>10)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]dc[.]example[.]$\"\n    match \"^(?P<a>[0-9]*)[.](?P<b>[0-9]*)[.](?P<c>[0-9]*)[.](?P<d>[0-9]*)[.]ext[.]example[.]$\"\n    answer \"{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n    fallthrough\n}",
        &["."],
    );
    run_cases(
        &c,
        &[
            Case { qname: "ip-10-1-2-3.dc.example.", answer: &["ip-10-1-2-3.dc.example. 60 IN A 10.1.2.3"], ..Case::EMPTY },
            Case { qname: "192.0.2.1.ext.example.", answer: &["192.0.2.1.ext.example. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "ip-11-1-2-3.dc.example.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    let c = chain_of(&[
        "template IN A example {\n    match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n    answer \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n    authority \"example. 60 IN NS ns0.example.\"\n    additional \"ns0.example. 60 IN A 203.0.113.8\"\n    fallthrough\n}",
        "template IN MX example {\n    match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n    answer \"{{ .Name }} 60 IN MX 10 {{ .Name }}\"\n    additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n    fallthrough\n}",
    ]);
    run_cases(
        &c,
        &[
            Case {
                qname: "ip-10-0-0-7.example.",
                answer: &["ip-10-0-0-7.example. 60 IN A 10.0.0.7"],
                authority: &["example. 60 IN NS ns0.example."],
                additional: &["ns0.example. 60 IN A 203.0.113.8"],
                ..Case::EMPTY
            },
            Case {
                qname: "ip-10-0-0-7.example.",
                qtype: Rtype::MX,
                answer: &["ip-10-0-0-7.example. 60 IN MX 10 ip-10-0-0-7.example."],
                additional: &["ip-10-0-0-7.example. 60 IN A 10.0.0.7"],
                ..Case::EMPTY
            },
        ],
    );
}

#[test]
fn readme_blocked_with_an_extended_error() {
    let c = chain("template ANY ANY ads.example {\n    rcode REFUSED\n    ederror 15 \"blocked by policy\"\n}", &["."]);
    let mut req = query("x.ads.example.", Rtype::A);
    req.edns = Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options: vec![] });
    let reply = serve(&c, &mut req).expect("answers");
    assert_eq!(reply.rcode.rcode(), Rcode::REFUSED);
    let ede = reply.edns.expect("OPT").options;
    assert_eq!(ede.len(), 1);
    assert_eq!(ede[0].code, 15);
    assert_eq!(&ede[0].data[..], b"\x00\x0fblocked by policy");
}

#[test]
fn any_questions_servfail_and_fallthrough_zones() {
    let c = chain("template IN TXT example {\n    answer \"{{ .Name }} 5 {{ .Class }} TXT \\\"{{ .Type }} {{ .Remote }}\\\"\"\n}", &["."]);
    run_cases(
        &c,
        &[
            Case { qname: "a.example.", qtype: Rtype::TXT, answer: &["a.example. 5 IN TXT \"TXT 127.0.0.1\""], ..Case::EMPTY },
            // ANY in the question takes the template's type.
            Case { qname: "a.example.", qtype: Rtype::ANY, answer: &["a.example. 5 IN TXT \"TXT 127.0.0.1\""], ..Case::EMPTY },
        ],
    );
    let c = chain("template IN A example {\n    rcode SERVFAIL\n}", &["."]);
    run_cases(&c, &[Case { qname: "a.example.", rcode: Rcode::SERVFAIL, ..Case::EMPTY }]);
    // Fallthrough only for names in web.example.
    let c = chain("template IN A example {\n    match ^x[.]\n    answer \"{{ .Name }} 60 A 192.0.2.1\"\n    fallthrough web.example\n}", &["."]);
    run_cases(
        &c,
        &[
            Case { qname: "x.example.", answer: &["x.example. 60 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "web.example.", answer: &["web.example. 60 IN A 192.0.2.80"], ..Case::EMPTY },
            Case { qname: "passed.example.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    // Without zones, the server block's.
    let c = chain("template IN A {\n    answer \"{{ .Name }} A 192.0.2.1\"\n}", &["example.org."]);
    run_cases(
        &c,
        &[
            Case { qname: "a.example.org.", answer: &["a.example.org. 3600 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "passed.example.", answer: &["passed.example. 60 IN A 192.0.2.99"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn upstream_follows_templated_cnames() {
    let c = chain("template IN A alias.example {\n    answer \"{{ .Name }} 60 IN CNAME web.example.\"\n    upstream\n}", &["."]);
    run_cases(
        &c,
        &[Case { qname: "alias.example.", answer: &["alias.example. 60 IN CNAME web.example.", "web.example. 60 IN A 192.0.2.80"], ..Case::EMPTY }],
    );
    let rec = record_calls();
    let mut c = setup("template IN A alias.example {\n    answer \"{{ .Name }} 60 IN CNAME web.example.\"\n}", &["."]).expect("sets up");
    c.push(rec.clone());
    serve(&c, &mut query("alias.example.", Rtype::A)).expect("answers");
    assert_eq!(rec.count(), 0, "no lookup without upstream");
}

#[test]
fn rejects_bad_configuration_with_its_place() {
    let cases = [
        ("template", "needs a class and a type"),
        ("template IN", "needs a class and a type"),
        ("template XX A", "invalid query class \"XX\""),
        ("template IN BOGUS", "invalid query type \"BOGUS\""),
        ("template IN A {\n    match\n}", "needs at least 1 argument"),
        ("template IN A {\n    match (\n    rcode NXDOMAIN\n}", "could not parse regex"),
        ("template IN A {\n    answer \"{{ if .Name }}x{{ end }}\"\n}", "could not compile template"),
        ("template IN A {\n    rcode WHATEVER\n}", "unknown rcode \"WHATEVER\""),
        ("template IN A {\n    ederror big\n    rcode REFUSED\n}", "expected an extended error code"),
        ("template IN A {\n    match .*\n}", "needs an answer, an authority or an rcode"),
        ("template IN A {\n    rcode NOERROR\n}", "needs an answer"),
        ("template IN A {\n    edns local 1=2\n}", "unknown property \"edns\""),
    ];
    for (text, want) in cases {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: no location in {e}");
    }
}

#[test]
fn meta_reads_the_request_metadata() {
    let c = chain("template IN TXT example {\n    answer \"{{ .Name }} 5 IN TXT \\\"{{ .Meta \\\"metadata/vrf\\\" }}\\\"\"\n}", &["."]);
    let mut req = query("a.example.", Rtype::TXT);
    req.metadata.enable();
    req.metadata.set("metadata/vrf", "VRF1");
    let reply = serve(&c, &mut req).expect("answers");
    assert_eq!(reply.answer[0].to_string(), "a.example. 5 IN TXT \"VRF1\"");
}

/// Query names with characters that zone-file text gives a meaning (`(` opens a group, `;` a
/// comment, `"` a string) read back as themselves, as in CoreDNS.
#[test]
fn names_with_zone_file_specials_are_escaped() {
    let c = chain("template IN TXT example {\n    answer \"{{ .Name }} 60 IN TXT ok\"\n}", &["."]);
    for qname in ["(a.example.", "a;b.example.", "a\"b.example.", "a)@'.example."] {
        let mut req = query(qname, Rtype::TXT);
        let reply = serve(&c, &mut req).unwrap_or_else(|e| panic!("{qname}: {e}"));
        assert_eq!(reply.answer.len(), 1, "{qname}");
        assert_eq!(reply.answer[0].owner(), &req.qname, "{qname}");
    }
}
