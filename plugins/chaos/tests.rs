use domain::base::iana::{Class, Rcode, Rtype};

use crate::testing::{check_contract, query, record_calls, run_cases, serve, setup, Case, Contract};

#[test]
fn contract() {
    check_contract(&Contract { name: "chaos", config: "chaos", passes: Some(("example.org.", Rtype::A, Class::IN)) });
}

const CH: Case = Case { qtype: Rtype::TXT, qclass: Class::CH, ..Case::EMPTY };

#[test]
fn answers_version_and_authors() {
    let chain = setup("chaos CoreDNS-001 miek@miek.nl \"Miek Gieben\" miek@miek.nl", &["."]).expect("sets up");
    run_cases(
        &chain,
        &[
            Case { qname: "version.bind.", answer: &["version.bind. 0 CH TXT \"CoreDNS-001\""], ..CH },
            Case { qname: "version.server.", answer: &["version.server. 0 CH TXT \"CoreDNS-001\""], ..CH },
            // Each author once, one TXT record each.
            Case {
                qname: "authors.bind.",
                answer: &["authors.bind. 0 CH TXT \"Miek Gieben\"", "authors.bind. 0 CH TXT \"miek@miek.nl\""],
                ..CH
            },
        ],
    );
}

#[test]
fn defaults() {
    let chain = setup("chaos", &["."]).expect("sets up");
    let mut req = CH.request();
    req.qname = "version.server.".parse().expect("name");
    let reply = serve(&chain, &mut req).expect("answers");
    assert_eq!(reply.answer.len(), 1);
    assert!(reply.answer[0].to_string().ends_with(&format!("CH TXT \"{}\"", crate::VERSION)), "{}", reply.answer[0]);

    let mut req = CH.request();
    req.qname = "authors.bind.".parse().expect("name");
    let reply = serve(&chain, &mut req).expect("answers");
    assert!(!reply.answer.is_empty(), "default authors");

    // One argument sets the version and keeps the default authors, as in CoreDNS.
    let chain = setup("chaos ferrite-test", &["."]).expect("sets up");
    let reply = serve(&chain, &mut req).expect("answers");
    assert!(!reply.answer.is_empty(), "default authors with a version given");
}

#[test]
fn hostname_and_id() {
    let chain = setup("chaos", &["."]).expect("sets up");
    let host = crate::plugin::hostname();
    for name in ["hostname.bind.", "id.server."] {
        let mut req = CH.request();
        req.qname = name.parse().expect("name");
        let reply = serve(&chain, &mut req).expect("answers");
        let got: Vec<String> = reply.answer.iter().map(|r| r.to_string()).collect();
        assert_eq!(got, [format!("{name} 0 CH TXT \"{host}\"")]);
    }
}

#[test]
fn names_keep_their_case_and_no_aa() {
    let chain = setup("chaos v1", &["."]).expect("sets up");
    let mut req = CH.request();
    req.qname = "Version.BIND.".parse().expect("name");
    let reply = serve(&chain, &mut req).expect("answers");
    let got: Vec<String> = reply.answer.iter().map(|r| r.to_string()).collect();
    assert_eq!(got, ["Version.BIND. 0 CH TXT \"v1\""]);
    assert!(!reply.header.aa(), "CoreDNS's chaos does not set AA");
    assert_eq!(reply.rcode.rcode(), Rcode::NOERROR);
}

#[test]
fn long_version_is_split_not_lost() {
    let long = "v".repeat(300);
    let chain = setup(&format!("chaos {long}"), &["."]).expect("sets up");
    let mut req = CH.request();
    req.qname = "version.bind.".parse().expect("name");
    let reply = serve(&chain, &mut req).expect("answers");
    let crate::plugin::prelude::ZoneRecordData::Txt(t) = reply.answer[0].data() else { panic!("not TXT") };
    let text: Vec<u8> = t.iter().flatten().copied().collect();
    assert_eq!(t.iter().count(), 2, "two character strings");
    assert_eq!(text.len(), 300);
}

#[test]
fn passes_everything_else() {
    let h = setup("chaos", &["."]).expect("sets up");
    for (name, qtype, class) in [
        ("version.bind.", Rtype::TXT, Class::IN),
        ("version.bind.", Rtype::A, Class::CH),
        ("example.org.", Rtype::TXT, Class::CH),
        ("bind.", Rtype::TXT, Class::CH),
    ] {
        let rec = record_calls();
        let mut chain = h.clone();
        chain.push(rec.clone());
        let mut req = query(name, qtype);
        req.qclass = class;
        serve(&chain, &mut req).expect("next answers");
        assert_eq!(rec.count(), 1, "{name} {class} {qtype} reaches next");
    }
}

#[test]
fn rejects_a_block() {
    let e = setup("chaos v1 {\n    authors me\n}", &["."]).map(|_| ()).expect_err("no block");
    assert!(e.to_string().contains("unknown property \"authors\""), "{e}");
}
