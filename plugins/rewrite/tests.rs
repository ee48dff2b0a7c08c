use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use domain::base::iana::{Class, OptRcode, Rcode, Rtype};
use domain::base::name::Name;

use super::*;
use crate::message::{Edns, EdnsOption};
use crate::plugin::{Directive, Plugin, ServerOptions, SetupCtx};
use crate::testing::{check_contract, query, rcode_reply, record_calls, run_cases, serve, setup, zone, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract {
        name: "rewrite",
        config: "rewrite name example.net example.org",
        passes: Some(("example.com.", Rtype::A, Class::IN)),
    });
}

/// Sets up several directives in one block, as a Corefile with several `rewrite` lines does.
fn block(lines: &[&str]) -> Vec<Arc<dyn Plugin>> {
    let zones = [Name::root_bytes()];
    let mut opts = ServerOptions::default();
    let mut ctx = SetupCtx::new(&zones, std::env::temp_dir(), &mut opts);
    for l in lines {
        let c = parse(&Directive::from_text(l).expect("well-formed")).unwrap_or_else(|e| panic!("{l}: {e}"));
        super::setup(&c, &mut ctx).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    ctx.into_handlers()
}

fn with(mut chain: Vec<Arc<dyn Plugin>>, next: Arc<dyn Plugin>) -> Vec<Arc<dyn Plugin>> {
    chain.push(next);
    chain
}

/// The name, type and class the rest of the chain was asked.
fn asked(lines: &[&str], qname: &str, qtype: Rtype) -> String {
    let rec = record_calls();
    let chain = with(block(lines), rec.clone());
    let mut req = query(qname, qtype);
    let reply = serve(&chain, &mut req).expect("answers");
    // The client's question comes back, whatever was asked below.
    let q = reply.question.expect("question");
    assert_eq!((q.qname().to_string(), q.qtype()), (Name::<Bytes>::from_str(qname).expect("name").to_string(), qtype));
    assert_eq!(req.qname.to_string(), Name::<Bytes>::from_str(qname).expect("name").to_string(), "request restored");
    let last = rec.last.lock().expect("lock").clone().expect("next called");
    format!("{} {} {}", last.name_lower(), last.qclass, last.qtype)
}

#[test]
fn parses_corefile_forms() {
    let name = |mode, matching, from: &str, to: &str, answer: Vec<Answer>| Rule::Name {
        mode,
        matching,
        from: from.into(),
        to: to.into(),
        answer,
    };
    let cases: Vec<(&str, Vec<Rule>)> = vec![
        ("rewrite name example.net example.org", vec![name(Mode::Stop, Match::Exact, "example.net", "example.org", vec![])]),
        (
            "rewrite continue name suffix .a. .b. answer auto",
            vec![name(Mode::Continue, Match::Suffix, ".a.", ".b.", vec![Answer::Auto])],
        ),
        (
            "rewrite stop name regex (.*)\\.a {1}.b answer name (.*)\\.b {1}.a value (.*)\\.b {1}.a",
            vec![name(
                Mode::Stop,
                Match::Regex,
                "(.*)\\.a",
                "{1}.b",
                vec![
                    Answer::Name { from: "(.*)\\.b".into(), to: "{1}.a".into() },
                    Answer::Value { from: "(.*)\\.b".into(), to: "{1}.a".into() },
                ],
            )],
        ),
        (
            "rewrite stop {\n    name regex (.*)\\.a {1}.b\n    answer name (.*)\\.b {1}.a\n}",
            vec![name(Mode::Stop, Match::Regex, "(.*)\\.a", "{1}.b", vec![Answer::Name { from: "(.*)\\.b".into(), to: "{1}.a".into() }])],
        ),
        ("rewrite type ANY HINFO", vec![Rule::Type { mode: Mode::Stop, from: "ANY".into(), to: "HINFO".into() }]),
        ("rewrite class CH IN", vec![Rule::Class { mode: Mode::Stop, from: "CH".into(), to: "IN".into() }]),
        (
            "rewrite continue {\n    ttl regex (.*)\\.example\\.org 15\n}",
            vec![Rule::Ttl { mode: Mode::Continue, matching: Match::Regex, name: "(.*)\\.example\\.org".into(), ttl: "15".into() }],
        ),
        ("rewrite ttl example.org 30-300", vec![Rule::Ttl { mode: Mode::Stop, matching: Match::Exact, name: "example.org".into(), ttl: "30-300".into() }]),
        (
            "rewrite rcode suffix example.org SERVFAIL 0",
            vec![Rule::Rcode { mode: Mode::Stop, matching: Match::Suffix, name: "example.org".into(), from: "SERVFAIL".into(), to: "0".into() }],
        ),
        ("rewrite cname a. b.", vec![Rule::Cname { mode: Mode::Stop, matching: Match::Exact, from: "a.".into(), to: "b.".into() }]),
        (
            "rewrite edns0 local set 0xffee 0x61626364",
            vec![Rule::Edns0 { mode: Mode::Stop, action: Action::Set, option: Edns0::Local { code: 0xffee, data: "0x61626364".into() } }],
        ),
        ("rewrite edns0 nsid append", vec![Rule::Edns0 { mode: Mode::Stop, action: Action::Append, option: Edns0::Nsid }]),
        ("rewrite edns0 subnet set 24 56", vec![Rule::Edns0 { mode: Mode::Stop, action: Action::Set, option: Edns0::Subnet { v4: 24, v6: 56 } }]),
        ("rewrite edns0 local unset 65518", vec![Rule::Edns0 { mode: Mode::Stop, action: Action::Unset, option: Edns0::Local { code: 65518, data: String::new() } }]),
    ];
    for (text, want) in cases {
        let got = parse(&Directive::from_text(text).expect("well-formed")).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(got.rules, want, "{text}");
    }
}

#[test]
fn rejects_bad_rules_with_their_place() {
    let cases = [
        ("rewrite", "a rewrite rule is expected"),
        ("rewrite name example.org", "needs FROM and TO"),
        ("rewrite name fuzzy a b", "unknown match type \"fuzzy\""),
        ("rewrite bogus a b", "invalid rule type \"bogus\""),
        ("rewrite answer name a b", "must begin with a name rule"),
        ("rewrite type ANY BOGUS", "invalid record type \"BOGUS\""),
        ("rewrite class XX IN", "invalid class \"XX\""),
        ("rewrite ttl example.org soon", "invalid TTL \"soon\""),
        ("rewrite ttl example.org 300-30", "invalid TTL"),
        ("rewrite rcode example.org SERVFAIL NOPE", "invalid rcode \"NOPE\""),
        ("rewrite name regex ( x", "invalid regex"),
        ("rewrite name regex (a) {1}{2}.b", "uses more groups"),
        ("rewrite name suffix .a. .b. answer", "answer needs auto"),
        ("rewrite name suffix .a. .b. answer sideways", "unknown answer rewrite \"sideways\""),
        ("rewrite edns0 local set 0xffee", "takes 2 more argument"),
        ("rewrite edns0 local set 0xzz abc", "invalid option code"),
        ("rewrite edns0 local set 1 0xabc", "odd number of digits"),
        ("rewrite edns0 subnet set 33 56", "at most 32"),
        ("rewrite edns0 cookie set", "unsupported EDNS0 option"),
        ("rewrite edns0 nsid toggle", "unknown action \"toggle\""),
        ("rewrite name a b {\n    name c d\n}", "unknown property"),
        ("rewrite {\n    answer auto\n}", "must follow a name rule"),
    ];
    for (text, want) in cases {
        let e = setup(text, &["."]).map(|_| ()).expect_err(text);
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.loc.is_some(), "{text}: no location in {e}");
    }
}

const ZONE: &[&str] = &[
    "example.org. 300 IN A 192.0.2.1",
    "host.example.org. 300 IN CNAME web.example.org.",
    "web.example.org. 300 IN A 192.0.2.2",
    "_sip._udp.example.org. 300 IN SRV 0 0 5060 sip.example.org.",
    "short.example.org. 5 IN A 192.0.2.3",
    "ftp.service.us-west-1.consul. 0 IN A 10.10.10.10",
    "ftp.service.us-west-1.consul. 0 IN A 10.20.20.20",
];

fn run(lines: &[&str], cases: &[Case]) {
    run_cases(&with(block(lines), zone(ZONE)), cases);
}

#[test]
fn exact_name_maps_the_answer_back() {
    // README example 1.
    run(
        &["rewrite name example.net example.org"],
        &[
            Case { qname: "example.net.", answer: &["example.net. 300 IN A 192.0.2.1"], ..Case::EMPTY },
            Case { qname: "EXAMPLE.net.", answer: &["example.net. 300 IN A 192.0.2.1"], ..Case::EMPTY },
            // Not matched: passed on as it is.
            Case { qname: "web.example.org.", answer: &["web.example.org. 300 IN A 192.0.2.2"], ..Case::EMPTY },
            Case { qname: "www.example.net.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    assert_eq!(asked(&["rewrite name example.net example.org"], "Example.NET.", Rtype::A), "example.org. IN A");
}

#[test]
fn suffix_with_answer_auto_maps_owners_and_targets() {
    // README example 2, the rule of ../shared/corefiles/features.Corefile.
    let rule = ["rewrite name suffix .internal. .example.org. answer auto"];
    run(
        &rule,
        &[
            Case {
                qname: "host.internal.",
                answer: &["host.internal. 300 IN CNAME web.internal.", "web.internal. 300 IN A 192.0.2.2"],
                ..Case::EMPTY
            },
            Case {
                qname: "_sip._udp.internal.",
                qtype: Rtype::SRV,
                answer: &["_sip._udp.internal. 300 IN SRV 0 0 5060 sip.internal."],
                ..Case::EMPTY
            },
            Case { qname: "nothere.internal.", rcode: Rcode::NXDOMAIN, ..Case::EMPTY },
        ],
    );
    assert_eq!(asked(&rule, "host.internal.", Rtype::A), "host.example.org. IN A");
    // Without `answer`, the records keep the names they were found under.
    run(
        &["rewrite name suffix .internal. .example.org."],
        &[Case {
            qname: "host.internal.",
            answer: &["host.example.org. 300 IN CNAME web.example.org.", "web.example.org. 300 IN A 192.0.2.2"],
            ..Case::EMPTY
        }],
    );
}

#[test]
fn prefix_and_substring() {
    assert_eq!(asked(&["rewrite name prefix ftp. web."], "ftp.example.org.", Rtype::A), "web.example.org. IN A");
    assert_eq!(
        asked(&["rewrite name substring service.us-west-1.example.org service.us-west-1.consul"], "ftp.service.us-west-1.example.org.", Rtype::A),
        "ftp.service.us-west-1.consul. IN A"
    );
    run(
        &["rewrite name prefix www. web. answer auto"],
        &[Case { qname: "www.example.org.", answer: &["www.example.org. 300 IN A 192.0.2.2"], ..Case::EMPTY }],
    );
    run(
        &["rewrite name substring .corp. .example. answer auto"],
        &[Case { qname: "web.corp.org.", answer: &["web.corp.org. 300 IN A 192.0.2.2"], ..Case::EMPTY }],
    );
}

#[test]
fn regex_with_explicit_and_auto_answers() {
    // README example 3.
    let block_form = "rewrite stop {\n    name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul\n    answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org\n}";
    let want = &["ftp-us-west-1.example.org. 0 IN A 10.10.10.10", "ftp-us-west-1.example.org. 0 IN A 10.20.20.20"];
    run(&[block_form], &[Case { qname: "ftp-us-west-1.example.org.", answer: want, ..Case::EMPTY }]);
    // The one-line form and `answer auto` give the same.
    run(
        &["rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org"],
        &[Case { qname: "ftp-us-west-1.example.org.", answer: want, ..Case::EMPTY }],
    );
    run(
        &["rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul answer auto"],
        &[Case { qname: "ftp-us-west-1.example.org.", answer: want, ..Case::EMPTY }],
    );
    // `answer value` rewrites names inside records.
    run(
        &["rewrite name regex _sip\\._udp\\.corp\\. _sip._udp.example.org. answer auto answer value (.*)\\.example\\.org\\. {1}.corp."],
        &[Case {
            qname: "_sip._udp.corp.",
            qtype: Rtype::SRV,
            answer: &["_sip._udp.corp. 300 IN SRV 0 0 5060 sip.corp."],
            ..Case::EMPTY
        }],
    );
}

#[test]
fn type_and_class() {
    assert_eq!(asked(&["rewrite type ANY HINFO"], "example.org.", Rtype::ANY), "example.org. IN HINFO");
    assert_eq!(asked(&["rewrite type ANY HINFO"], "example.org.", Rtype::A), "example.org. IN A");
    let rec = record_calls();
    let chain = with(block(&["rewrite class CH IN"]), rec.clone());
    let mut req = query("version.bind.", Rtype::TXT);
    req.qclass = Class::CH;
    let reply = serve(&chain, &mut req).expect("answers");
    assert_eq!(reply.question.expect("q").qclass(), Class::CH, "the client's class comes back");
    assert_eq!(rec.last.lock().expect("lock").as_ref().expect("called").qclass, Class::IN);
}

#[test]
fn stop_and_continue_across_directives() {
    // One block, two rewrite lines: a stop rule that applies ends the evaluation.
    let stop = ["rewrite name a.example. b.example.", "rewrite name b.example. c.example."];
    assert_eq!(asked(&stop, "a.example.", Rtype::A), "b.example. IN A");
    assert_eq!(block(&stop).len(), 1, "one handler for the block");
    let cont = ["rewrite continue name a.example. b.example.", "rewrite name b.example. c.example."];
    assert_eq!(asked(&cont, "a.example.", Rtype::A), "c.example. IN A");
    // A rule that does not apply never stops the evaluation.
    let miss = ["rewrite name x.example. y.example.", "rewrite type A AAAA"];
    assert_eq!(asked(&miss, "a.example.", Rtype::A), "a.example. IN AAAA");
    // README example 4.
    let ex = ["rewrite continue name suffix .corp. .example.org.", "rewrite type ANY HINFO"];
    assert_eq!(asked(&ex, "host.corp.", Rtype::ANY), "host.example.org. IN HINFO");
}

#[test]
fn ttls_are_set_or_clamped() {
    run(
        &["rewrite ttl example.org 15"],
        &[Case { qname: "example.org.", answer: &["example.org. 15 IN A 192.0.2.1"], ..Case::EMPTY }],
    );
    // README example 5: at least 30 seconds; a longer TTL is kept.
    let ex = ["rewrite continue ttl suffix example.org. 30-", "rewrite rcode suffix example.org. SERVFAIL NOERROR"];
    run(
        &ex,
        &[
            Case { qname: "short.example.org.", answer: &["short.example.org. 30 IN A 192.0.2.3"], ..Case::EMPTY },
            Case { qname: "example.org.", answer: &["example.org. 300 IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
    run(
        &["rewrite ttl regex (.*)\\.example\\.org -60"],
        &[
            Case { qname: "web.example.org.", answer: &["web.example.org. 60 IN A 192.0.2.2"], ..Case::EMPTY },
            Case { qname: "example.org.", answer: &["example.org. 300 IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
}

#[test]
fn rcodes() {
    let chain = with(block(&["rewrite rcode suffix example.org. SERVFAIL NOERROR"]), rcode_reply(Rcode::SERVFAIL));
    run_cases(
        &chain,
        &[
            Case { qname: "a.example.org.", rcode: Rcode::NOERROR, ..Case::EMPTY },
            Case { qname: "a.example.net.", rcode: Rcode::SERVFAIL, ..Case::EMPTY },
        ],
    );
    let chain = with(block(&["rewrite rcode exact example.org 3 5"]), rcode_reply(Rcode::NXDOMAIN));
    let mut req = query("example.org.", Rtype::A);
    assert_eq!(serve(&chain, &mut req).expect("answers").rcode, OptRcode::REFUSED);
}

#[test]
fn cname_targets_are_rewritten_and_looked_up() {
    let records = &["a.example. 60 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1", "c.example. 60 IN A 192.0.2.9"];
    let chain = with(block(&["rewrite cname exact b.example. c.example."]), zone(records));
    run_cases(
        &chain,
        &[
            Case { qname: "a.example.", answer: &["a.example. 60 IN CNAME c.example.", "c.example. 60 IN A 192.0.2.9"], ..Case::EMPTY },
            Case { qname: "b.example.", answer: &["b.example. 60 IN A 192.0.2.1"], ..Case::EMPTY },
        ],
    );
    let chain = with(block(&["rewrite cname suffix .b.example. .c.example."]), zone(&["x.example. 60 IN CNAME www.b.example.", "www.c.example. 60 IN A 192.0.2.7"]));
    run_cases(
        &chain,
        &[Case { qname: "x.example.", answer: &["x.example. 60 IN CNAME www.c.example.", "www.c.example. 60 IN A 192.0.2.7"], ..Case::EMPTY }],
    );
}

fn edns_seen(lines: &[&str], edns: Option<Edns>) -> Option<Edns> {
    let rec = record_calls();
    let chain = with(block(lines), rec.clone());
    let mut req = query("example.org.", Rtype::A);
    req.edns = edns.clone();
    serve(&chain, &mut req).expect("answers");
    assert_eq!(req.edns, edns, "the client's EDNS is restored for the reply");
    let seen = rec.last.lock().expect("lock").clone().expect("called");
    seen.edns
}

fn opt(options: Vec<EdnsOption>) -> Option<Edns> {
    Some(Edns { udp_size: 1232, version: 0, dnssec_ok: false, options })
}

fn local(code: u16, data: &'static [u8]) -> EdnsOption {
    EdnsOption { code, data: Bytes::from_static(data) }
}

#[test]
fn edns0_local_nsid_and_subnet() {
    let e = edns_seen(&["rewrite edns0 local set 0xffee 0x61626364"], None).expect("OPT added");
    assert_eq!((e.udp_size, e.options.clone()), (4096, vec![local(0xffee, b"abcd")]));
    let e = edns_seen(&["rewrite edns0 local set 0xffee abcd"], opt(vec![local(0xffee, b"old")])).expect("OPT");
    assert_eq!(e.options, vec![local(0xffee, b"abcd")]);
    // append only adds; replace only changes.
    let e = edns_seen(&["rewrite edns0 local append 0xffee new"], opt(vec![local(0xffee, b"old")])).expect("OPT");
    assert_eq!(e.options, vec![local(0xffee, b"old")]);
    assert!(edns_seen(&["rewrite edns0 local replace 0xffee new"], None).is_none());
    let e = edns_seen(&["rewrite edns0 local unset 0xffee"], opt(vec![local(0xffee, b"old"), local(3, b"")])).expect("OPT");
    assert_eq!(e.options, vec![local(3, b"")]);
    // Variables (README example 6): the client is 127.0.0.1 port 53000.
    let e = edns_seen(&["rewrite continue edns0 local set 0xffee {client_ip}", "rewrite edns0 subnet set 24 56"], None).expect("OPT");
    assert_eq!(e.options, vec![local(0xffee, &[127, 0, 0, 1]), local(8, &[0, 1, 24, 0, 127, 0, 0])]);
    let e = edns_seen(&["rewrite edns0 local set 1 {client_port}"], None).expect("OPT");
    assert_eq!(e.options, vec![local(1, &[0xcf, 0x08])]);
    let e = edns_seen(&["rewrite edns0 local set 1 {qtype}"], None).expect("OPT");
    assert_eq!(e.options, vec![local(1, &[0, 1])]);
    let e = edns_seen(&["rewrite edns0 local set 1 {qname}"], None).expect("OPT");
    assert_eq!(e.options, vec![local(1, b"example.org.")]);
    // A metadata label: skipped while unset.
    assert!(edns_seen(&["rewrite edns0 local set 1 {metadata/vrf}"], None).is_none());
    let e = edns_seen(&["rewrite edns0 nsid set"], None).expect("OPT");
    assert_eq!(e.options, vec![local(3, b"")]);
    // A prefix off an octet boundary masks the last octet.
    let e = edns_seen(&["rewrite edns0 subnet set 20 56"], None).expect("OPT");
    assert_eq!(e.options, vec![local(8, &[0, 1, 20, 0, 127, 0, 0])]);
}

#[test]
fn an_invalid_name_after_a_rewrite_is_servfail() {
    let rec = record_calls();
    let chain = with(block(&["rewrite name substring example .."]), rec.clone());
    let mut req = query("www.example.org.", Rtype::A);
    let e = serve(&chain, &mut req).expect_err("invalid name");
    assert_eq!(e.rcode, Rcode::SERVFAIL);
    assert_eq!(rec.count(), 0);
    assert_eq!(req.name_lower(), "www.example.org.", "request restored");
}

#[test]
fn ron_rules_are_checked_at_setup() {
    for (ron, ok) in [
        ("rewrite((rules: [name(from: \"a.\", to: \"b.\")]))", true),
        ("rewrite((rules: [name(match: suffix, from: \".a.\", to: \".b.\", answer: [auto])]))", true),
        ("rewrite((rules: [type(from: \"ANY\", to: \"HINFO\")]))", true),
        ("rewrite((rules: [name(match: regex, from: \"(\", to: \"b.\")]))", false),
        ("rewrite((rules: [ttl(name: \"a.\", ttl: \"x\")]))", false),
    ] {
        let text = format!("(servers: [(keys: [\".\"], plugins: [{ron}])])");
        let cfg = crate::config::from_ron(&text, "t.ron").unwrap_or_else(|e| panic!("{ron}: {e:?}"));
        assert_eq!(crate::server::setup::build(&cfg, 0).is_ok(), ok, "{ron}");
    }
}

#[test]
fn edns0_local_from_metadata() {
    let rec = record_calls();
    let chain = with(block(&["rewrite edns0 local set 0xffee {metadata/vrf}"]), rec.clone());
    let mut req = query("example.org.", Rtype::A);
    req.metadata.enable();
    req.metadata.set("metadata/vrf", "VRF1");
    serve(&chain, &mut req).expect("answers");
    let seen = rec.last.lock().expect("lock").clone().expect("called");
    assert_eq!(seen.edns.expect("OPT").options, vec![local(0xffee, b"VRF1")]);
}
